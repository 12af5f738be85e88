//! Property tests: random sequences of grants, consumes, purchases, trades,
//! corrections and duplicated requests against the real embedded store, first
//! one at a time (compared with an in-memory model, exactly), then concurrently
//! (every request spawned twice at once): the audit is clean, balances equal the
//! fold of the events, trades conserve every asset, no balance is negative or
//! over its limit, and every idempotency key is applied at most once.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::tests::Delayed;
use super::tests::CATALOG;
use super::*;
use crate::store::embedded::{EmbeddedStore, PersistMode};

const PLAYERS: usize = 3;
const ASSETS: [(AssetKind, &str); 7] = [
    (AssetKind::Currency, "gold"),
    (AssetKind::Currency, "gems"),
    (AssetKind::Item, "potion"),
    (AssetKind::Item, "sword"),
    (AssetKind::Item, "dust"),
    (AssetKind::Item, "ore"),
    (AssetKind::Item, "rune"),
];
const OFFERS: [&str; 2] = ["potion_pack", "gold_bag"];

fn player(i: usize) -> String {
    format!("{:032x}", i + 1)
}

fn asset(i: usize) -> Asset {
    let (kind, id) = ASSETS[i];
    Asset { kind, id: id.into() }
}

fn qty(i: usize, n: u64) -> Quantity {
    Quantity {
        asset: asset(i),
        amount: n,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Grant(usize, usize, u64),
    Consume(usize, usize, u64),
    Purchase(usize, usize),
    Trade(usize, usize, (usize, u64), Option<(usize, u64)>),
    Admin(usize, usize, i64),
    /// Repeat an earlier request (index modulo the ops so far), same key.
    Repeat(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PLAYERS;
    let a = 0..ASSETS.len();
    prop_oneof![
        4 => (p.clone(), a.clone(), 1u64..150).prop_map(|(p, a, n)| Op::Grant(p, a, n)),
        2 => (p.clone(), a.clone(), 1u64..150).prop_map(|(p, a, n)| Op::Consume(p, a, n)),
        1 => (p.clone(), 0..OFFERS.len()).prop_map(|(p, o)| Op::Purchase(p, o)),
        2 => (p.clone(), p.clone(), (a.clone(), 1u64..100), proptest::option::of((a.clone(), 1u64..100)))
            .prop_map(|(x, y, ga, gb)| Op::Trade(x, y, ga, gb)),
        1 => (p, a, -80i64..80).prop_map(|(p, a, d)| Op::Admin(p, a, if d == 0 { 1 } else { d })),
        2 => any::<usize>().prop_map(Op::Repeat),
    ]
}

async fn run_op(l: &Ledger<Delayed>, op: &Op, key: &str) -> Result<Outcome, LedgerError> {
    match *op {
        Op::Grant(p, a, n) => l.grant(&player(p), key, "match_reward", &[qty(a, n)]).await,
        Op::Consume(p, a, n) => l.consume(&player(p), key, "use", &[qty(a, n)]).await,
        Op::Purchase(p, o) => l.purchase(&player(p), key, OFFERS[o]).await,
        Op::Trade(x, y, (ga, na), gb) => {
            let side = |p: usize, gives| TradeSide {
                player: player(p),
                home_region: "eu".into(),
                gives,
            };
            let b_gives = gb.map(|(a, n)| vec![qty(a, n)]).unwrap_or_default();
            l.trade(&side(x, vec![qty(ga, na)]), &side(y, b_gives), key).await
        }
        Op::Admin(p, a, d) => {
            let changes = [Change {
                asset: asset(a),
                delta: d,
            }];
            l.admin_correction(&player(p), key, "support ticket", &changes)
                .await
        }
        Op::Repeat(_) => unreachable!("resolved by the caller"),
    }
}

/// The in-memory model: balances and the rules.
#[derive(Default)]
struct Model {
    bal: BTreeMap<(usize, Asset), i64>,
}

impl Model {
    /// Applies per-player net changes if every rule holds; returns whether it did.
    fn apply(&mut self, catalog: &Catalog, changes: &[(usize, Asset, i64)]) -> bool {
        let ok = changes.iter().all(|(p, a, d)| {
            let b = self.bal.get(&(*p, a.clone())).copied().unwrap_or(0) + d;
            let limit = catalog
                .rule(a)
                .expect("known")
                .limit
                .map_or(i64::MAX, |l| l as i64);
            (0..=limit).contains(&b)
        });
        if ok {
            for (p, a, d) in changes {
                *self.bal.entry((*p, a.clone())).or_default() += d;
            }
        }
        ok
    }

    /// The net changes `op` asks for, or `None` if it is malformed.
    fn changes(catalog: &Catalog, op: &Op) -> Option<Vec<(usize, Asset, i64)>> {
        let mut net: BTreeMap<(usize, Asset), i64> = BTreeMap::new();
        match *op {
            Op::Grant(p, a, n) => *net.entry((p, asset(a))).or_default() += n as i64,
            Op::Consume(p, a, n) => *net.entry((p, asset(a))).or_default() -= n as i64,
            Op::Purchase(p, o) => {
                let (price, goods) = catalog.offer(OFFERS[o]).expect("known offer");
                for q in price {
                    *net.entry((p, q.asset)).or_default() -= q.amount as i64;
                }
                for q in goods {
                    *net.entry((p, q.asset)).or_default() += q.amount as i64;
                }
            }
            Op::Trade(x, y, (ga, na), gb) => {
                if x == y {
                    return None;
                }
                let mut moves = vec![(x, y, ga, na)];
                moves.extend(gb.map(|(a, n)| (y, x, a, n)));
                for (from, to, a, n) in moves {
                    *net.entry((from, asset(a))).or_default() -= n as i64;
                    *net.entry((to, asset(a))).or_default() += n as i64;
                }
            }
            Op::Admin(p, a, d) => *net.entry((p, asset(a))).or_default() += d,
            Op::Repeat(_) => unreachable!(),
        }
        net.retain(|_, d| *d != 0);
        (!net.is_empty()).then(|| net.into_iter().map(|((p, a), d)| (p, a, d)).collect())
    }
}

async fn totals(l: &Ledger<Delayed>) -> anyhow::Result<BTreeMap<Asset, u64>> {
    let mut out = BTreeMap::new();
    for p in 0..PLAYERS {
        for (a, n) in l.balances(&player(p)).await? {
            *out.entry(a).or_default() += n;
        }
    }
    Ok(out)
}

async fn check_case(seq: Vec<Op>, conc: Vec<Op>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = crate::store::testing::config(dir.path());
    config.persist = PersistMode::Buffered; // same semantics, faster tests
    let inner = EmbeddedStore::open(config).await?;
    let store = Delayed {
        inner,
        delay: std::time::Duration::from_millis(1),
    };
    let catalog = Catalog::from_toml_str(&format!(
        "{CATALOG}\n[items.rune]\nmax_stack = 300\nescrow_shards = 6\n"
    ))?;
    let l = Ledger::new(store, "eu", catalog.clone())?;

    // 1. One at a time, against the model.
    let mut model = Model::default();
    let mut applied: HashMap<String, Receipt> = HashMap::new();
    let mut resolved: Vec<(Op, String)> = Vec::new();
    for (i, op) in seq.iter().enumerate() {
        let (op, key) = match op {
            Op::Repeat(j) if !resolved.is_empty() => resolved[j % resolved.len()].clone(),
            Op::Repeat(_) => continue,
            op => (op.clone(), format!("s{i}")),
        };
        let res = run_op(&l, &op, &key).await;
        if let Some(orig) = applied.get(&key) {
            let out = res?;
            anyhow::ensure!(
                out.duplicate && &out.receipt == orig,
                "{op:?}: duplicate not replayed: {out:?}"
            );
        } else {
            let expect = Model::changes(&catalog, &op).is_some_and(|c| model.apply(&catalog, &c));
            match res {
                Ok(out) => {
                    anyhow::ensure!(expect && !out.duplicate, "{op:?} applied, model refused");
                    applied.insert(key.clone(), out.receipt);
                }
                Err(e) => anyhow::ensure!(
                    !expect
                        && matches!(
                            e,
                            LedgerError::Insufficient { .. }
                                | LedgerError::LimitExceeded { .. }
                                | LedgerError::InvalidTrade(_)
                        ),
                    "{op:?} refused ({e}), model expected {expect}"
                ),
            }
        }
        resolved.push((op, key));
    }
    for p in 0..PLAYERS {
        let got = l.balances(&player(p)).await?;
        let want: Balances = model
            .bal
            .iter()
            .filter(|((q, _), v)| *q == p && **v > 0)
            .map(|((_, a), v)| (a.clone(), *v as u64))
            .collect();
        anyhow::ensure!(got == want, "player {p}: {got:?} != model {want:?}");
    }

    // 2. Concurrently, every request twice at once (plus repeats of step 1).
    let before = totals(&l).await?;
    let mut tasks = Vec::new();
    for (i, op) in conc.iter().enumerate() {
        let (op, key) = match op {
            Op::Repeat(j) if !resolved.is_empty() => resolved[j % resolved.len()].clone(),
            Op::Repeat(_) => continue,
            op => (op.clone(), format!("c{i}")),
        };
        for _ in 0..2 {
            let (l, op, key) = (l.clone(), op.clone(), key.clone());
            tasks.push(tokio::spawn(
                async move { (key.clone(), run_op(&l, &op, &key).await) },
            ));
        }
    }
    let mut fresh: HashMap<String, Receipt> = HashMap::new();
    let mut seen: HashMap<String, Receipt> = applied.clone();
    for t in tasks {
        let (key, res) = t.await?;
        let out = match res {
            Ok(out) => out,
            Err(
                LedgerError::Insufficient { .. }
                | LedgerError::LimitExceeded { .. }
                | LedgerError::InvalidTrade(_),
            ) => continue,
            Err(e) => return Err(e.into()),
        };
        if !out.duplicate {
            anyhow::ensure!(
                fresh.insert(key.clone(), out.receipt.clone()).is_none() && !applied.contains_key(&key),
                "key {key} applied twice"
            );
        }
        if let Some(r) = seen.get(&key) {
            anyhow::ensure!(r == &out.receipt, "key {key}: two different receipts");
        }
        seen.insert(key, out.receipt);
    }
    // Conservation: totals move only by the non-trade receipts' changes.
    let mut expect: BTreeMap<Asset, i64> = before.iter().map(|(a, n)| (a.clone(), *n as i64)).collect();
    for r in fresh.values().filter(|r| r.kind != EventKind::Trade) {
        for c in &r.changes {
            *expect.entry(c.asset.clone()).or_default() += c.delta;
        }
    }
    expect.retain(|_, v| *v != 0);
    let after: BTreeMap<Asset, i64> = totals(&l)
        .await?
        .into_iter()
        .map(|(a, n)| (a, n as i64))
        .collect();
    anyhow::ensure!(after == expect, "not conserved: {after:?} != {expect:?}");

    // The audit folds every event to the projection (also: nothing negative or
    // over its limit).
    let audit = l.audit_region(PLAYERS, |_| {}).await?;
    anyhow::ensure!(audit.is_clean(), "{audit:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_ledger_traffic_keeps_every_invariant(
        seq in proptest::collection::vec(op(), 1..30),
        conc in proptest::collection::vec(op(), 0..12),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let res = rt.block_on(check_case(seq, conc));
        prop_assert!(res.is_ok(), "{:?}", res.err());
    }
}

//! The players of the rolling-restart test: what each player's game code
//! believes from acknowledged calls ([`Model`]), its SDK handles ([`Player`]),
//! the shared counts ([`Stats`]) and the game loop ([`play`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_client::{
    AssetAmount, AssetKind, Client, ClientError, Event, InventoryClient, MatchmakingClient, StateClient,
    TicketStatus,
};

use super::DOC;

/// What one player's game code believes, from acknowledged calls only.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Last acknowledged save: version and bytes.
    pub(crate) doc: Option<(u64, Vec<u8>)>,
    pub(crate) balances: BTreeMap<String, u64>,
    /// Idempotency keys of acknowledged inventory writes.
    pub(crate) acked_keys: Vec<String>,
    /// Keys of writes that failed (outcome unknown to the game).
    pub(crate) doubtful_keys: Vec<String>,
    /// The matchmaking ticket the player queued, if any.
    pub(crate) ticket: Option<u64>,
}

/// One player's SDK handles.
pub(crate) struct Player {
    pub(crate) id: String,
    pub(crate) client: Client,
    pub(crate) state: StateClient,
    pub(crate) inv: InventoryClient,
    pub(crate) mm: Option<MatchmakingClient>,
    /// GoAways this player's SDK reported.
    pub(crate) goaways: Arc<AtomicU64>,
}

/// Counts shared by the workers and the restart driver.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) ops: AtomicU64,
    /// Operations acknowledged while some gateway was draining or restarting.
    pub(crate) ops_during_restarts: AtomicU64,
    pub(crate) goaways: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) restarting: AtomicBool,
    pub(crate) failures: Mutex<Vec<String>>,
}

impl Stats {
    pub(crate) fn fail(&self, player: &str, what: &str, e: &dyn std::fmt::Display) {
        let line = format!("player {}: {what}: {e}", &player[..8]);
        eprintln!("FAILURE {line}");
        self.failures.lock().unwrap().push(line);
    }

    pub(crate) fn ok(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        if self.restarting.load(Ordering::Relaxed) {
            self.ops_during_restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) fn currency(id: &str, amount: u64) -> AssetAmount {
    AssetAmount {
        kind: AssetKind::Currency,
        id: id.into(),
        amount,
    }
}

pub(crate) fn item(id: &str, amount: u64) -> AssetAmount {
    AssetAmount {
        kind: AssetKind::Item,
        id: id.into(),
        amount,
    }
}

pub(crate) fn as_map(b: &[AssetAmount]) -> BTreeMap<String, u64> {
    b.iter()
        .filter(|a| a.amount > 0)
        .map(|a| (a.id.clone(), a.amount))
        .collect()
}

pub(crate) fn add(m: &mut BTreeMap<String, u64>, id: &str, delta: i64) {
    let v = m.entry(id.to_owned()).or_default();
    *v = v
        .checked_add_signed(delta)
        .expect("model balance stays non-negative");
    if *v == 0 {
        m.remove(id);
    }
}

/// The game loop of one player: state saves and loads, grants, consumes,
/// purchases, balance reads and (matchmaking players) ticket status, until `stop`.
/// Every call's error is a failure; the model is re-synchronised after one so the
/// run keeps counting.
pub(crate) async fn play(p: Arc<Player>, model: Arc<Mutex<Model>>, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let step = n % 6;
        match step {
            // Save: compare-and-set on the last acknowledged version.
            0 | 3 => {
                let expected = model.lock().unwrap().doc.as_ref().map_or(0, |d| d.0);
                let value = format!("{}:{n}", p.id).into_bytes();
                match p.state.set(DOC, expected, value.clone()).await {
                    Ok(v) if v == expected + 1 => {
                        model.lock().unwrap().doc = Some((v, value));
                        stats.ok();
                    }
                    Ok(v) => stats.fail(&p.id, "save", &format!("version {v} after {expected}")),
                    Err(e) => {
                        stats.fail(&p.id, "save", &e);
                        resync_doc(&p, &model).await;
                    }
                }
            }
            // Load: must return the last acknowledged save.
            1 => match p.state.get(DOC).await {
                Ok(doc) => {
                    let got = doc.map(|d| (d.version, d.value));
                    let want = model.lock().unwrap().doc.clone();
                    if got == want {
                        stats.ok();
                    } else {
                        stats.fail(&p.id, "load", &format!("{got:?} != acknowledged {want:?}"));
                        model.lock().unwrap().doc = got;
                    }
                }
                Err(e) => stats.fail(&p.id, "load", &e),
            },
            // Grant gold and gems with a key the game keeps.
            2 => {
                let key = outpost_client::new_idempotency_key();
                let gold = 1 + n % 50;
                let r = p
                    .inv
                    .grant_with_key(
                        &key,
                        "match_reward",
                        vec![currency("gold", gold), currency("gems", 5)],
                    )
                    .await;
                inventory_result(&p, &model, &stats, key, r, &[("gold", gold as i64), ("gems", 5)]).await;
            }
            // Spend: a purchase when there are gems for it, else a consume of gold.
            4 => {
                let (gems, gold, potions) = {
                    let m = model.lock().unwrap();
                    let b = |id: &str| m.balances.get(id).copied().unwrap_or(0);
                    (b("gems"), b("gold"), b("potion"))
                };
                let key = outpost_client::new_idempotency_key();
                if potions + 5 > 99 {
                    // A potion stack holds 99 (dev catalog): drink some first.
                    let r = p
                        .inv
                        .consume_with_key(&key, "drink", vec![item("potion", 10)])
                        .await;
                    inventory_result(&p, &model, &stats, key, r, &[("potion", -10)]).await;
                } else if gems >= 10 {
                    let r = p.inv.purchase_with_key(&key, "potion_pack").await;
                    inventory_result(&p, &model, &stats, key, r, &[("gems", -10), ("potion", 5)]).await;
                } else if gold > 0 {
                    let amount = 1 + gold / 3;
                    let r = p
                        .inv
                        .consume_with_key(&key, "craft", vec![currency("gold", amount)])
                        .await;
                    inventory_result(&p, &model, &stats, key, r, &[("gold", -(amount as i64))]).await;
                }
            }
            // Read: balances equal the model; the ticket is still waiting; a ping.
            _ => {
                match p.client.ping().await {
                    Ok(_) => stats.ok(),
                    Err(e) => stats.fail(&p.id, "ping", &e),
                }
                match p.inv.balances().await {
                    Ok(b) => {
                        let want = model.lock().unwrap().balances.clone();
                        if as_map(&b) == want {
                            stats.ok();
                        } else {
                            stats.fail(&p.id, "balances", &format!("{:?} != {want:?}", as_map(&b)));
                            model.lock().unwrap().balances = as_map(&b);
                        }
                    }
                    Err(e) => stats.fail(&p.id, "balances", &e),
                }
                if let Some(mm) = &p.mm {
                    match mm.status().await {
                        Ok(t) => {
                            let want = model.lock().unwrap().ticket;
                            if t.status == TicketStatus::Waiting && Some(t.ticket_id) == want {
                                stats.ok();
                            } else {
                                stats.fail(&p.id, "ticket status", &format!("{t:?}, queued {want:?}"));
                            }
                        }
                        Err(e) => stats.fail(&p.id, "ticket status", &e),
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(15 + n % 20)).await;
    }
}

pub(crate) async fn inventory_result(
    p: &Player,
    model: &Mutex<Model>,
    stats: &Stats,
    key: String,
    r: Result<outpost_client::InventoryReceipt, ClientError>,
    deltas: &[(&str, i64)],
) {
    match r {
        Ok(receipt) => {
            let mut m = model.lock().unwrap();
            for (id, d) in deltas {
                add(&mut m.balances, id, *d);
            }
            m.acked_keys.push(key);
            drop(m);
            if receipt.duplicate {
                // The game sent each key once; the SDK's own retry of a write whose
                // answer was lost is answered as a duplicate, which is fine.
                eprintln!("player {}: write answered as a duplicate (SDK retry)", &p.id[..8]);
            }
            stats.ok();
        }
        Err(e) => {
            stats.fail(&p.id, "inventory write", &e);
            model.lock().unwrap().doubtful_keys.push(key);
            if let Ok(b) = p.inv.balances().await {
                model.lock().unwrap().balances = as_map(&b);
            }
        }
    }
}

pub(crate) async fn resync_doc(p: &Player, model: &Mutex<Model>) {
    if let Ok(doc) = p.state.get(DOC).await {
        model.lock().unwrap().doc = doc.map(|d| (d.version, d.value));
    }
}

/// Counts the moves a player's SDK reports.
pub(crate) async fn watch_events(client: Client, stats: Arc<Stats>, mine: Arc<AtomicU64>) {
    let mut events = client.events();
    while let Some(ev) = events.recv().await {
        match ev {
            Event::GoAway { .. } => {
                stats.goaways.fetch_add(1, Ordering::Relaxed);
                mine.fetch_add(1, Ordering::Relaxed);
            }
            Event::Connected { resumed } => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if resumed {
                    stats.resumed.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}

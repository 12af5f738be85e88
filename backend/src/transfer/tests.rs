//! Transfer tests against real embedded stores (one per region plus a global one,
//! each in its own temporary directory), including the crash-injection test.

use std::future::Future;
use std::task::Poll;

use super::*;
use crate::state::{self, PlayerState, StateError};
use crate::store::embedded::EmbeddedStore;

const SECRET: &[u8] = b"transfer-test-secret-0123456789";

struct Env {
    _dirs: Vec<tempfile::TempDir>,
    identity: Identity<EmbeddedStore>,
    eu: PlayerState<EmbeddedStore>,
    us: PlayerState<EmbeddedStore>,
    transfer: Transfer<EmbeddedStore, EmbeddedStore>,
}

async fn open_store() -> anyhow::Result<(tempfile::TempDir, EmbeddedStore)> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    Ok((dir, store))
}

/// Three separate stores (global, eu, us), or one shared by all if `shared`.
async fn env(shared: bool) -> anyhow::Result<Env> {
    let (d1, global) = open_store().await?;
    let (mut dirs, eu_store, us_store) = if shared {
        (vec![d1], global.clone(), global.clone())
    } else {
        let (d2, eu) = open_store().await?;
        let (d3, us) = open_store().await?;
        (vec![d1, d2, d3], eu, us)
    };
    let identity = Identity::open(global).await?;
    let transfer = Transfer::new(
        identity.clone(),
        [
            ("eu".to_string(), eu_store.clone()),
            ("us".to_string(), us_store.clone()),
        ],
    );
    let env = Env {
        _dirs: std::mem::take(&mut dirs),
        identity,
        eu: PlayerState::new(eu_store, "eu")?,
        us: PlayerState::new(us_store, "us")?,
        transfer,
    };
    Ok(env)
}

type Docs = Vec<(String, u64, Vec<u8>)>;

/// Creates a player homed in eu with a few documents at various versions.
async fn seed(env: &Env, device: &str) -> anyhow::Result<(String, Docs)> {
    let player = env
        .identity
        .login_device(device, SECRET, "eu")
        .await?
        .account
        .player;
    let st = &env.eu;
    st.compare_and_set(&player, "profile", 0, b"p1").await?;
    st.compare_and_set(&player, "profile", 1, b"p2").await?;
    st.compare_and_set(&player, "profile", 2, device.as_bytes())
        .await?;
    st.compare_and_set(&player, "progression", 0, &vec![7u8; state::MAX_DOC_BYTES])
        .await?;
    st.compare_and_set(&player, "loadout", 0, b"sword").await?;
    st.compare_and_set(&player, "loadout", 1, b"bow").await?;
    let docs = docs_of(st.list(&player).await?);
    Ok((player, docs))
}

fn docs_of(docs: Vec<state::Document>) -> Docs {
    docs.into_iter().map(|d| (d.name, d.version, d.value)).collect()
}

/// The player's documents as stored in `st`'s region, read raw (past any fence).
async fn raw_docs(st: &PlayerState<EmbeddedStore>, player: &str) -> anyhow::Result<Docs> {
    let sub = state::keys::docs(&RegionName::new(st.region())?, player);
    let kvs = st
        .store_for_tests()
        .run(|tx| {
            let sub = sub.clone();
            async move {
                let (b, e) = sub.range();
                Ok::<_, TxError<StateError>>(tx.get_range(&b, &e, None, false).await?)
            }
        })
        .await?;
    let mut out = Vec::new();
    for kv in kvs {
        let (name,): (String,) = sub.unpack(&kv.key)?;
        let (version, _, value) = state::types::decode(&kv.value)?;
        out.push((name, version, value));
    }
    Ok(out)
}

/// Whether the region holds any key of the player's state family.
async fn family_is_empty(st: &PlayerState<EmbeddedStore>, player: &str) -> anyhow::Result<bool> {
    let (b, e) = state::keys::player(&RegionName::new(st.region())?, player).range();
    let kvs = st
        .store_for_tests()
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move { Ok::<_, TxError<StateError>>(tx.get_range(&b, &e, Some(1), false).await?) }
        })
        .await?;
    Ok(kvs.is_empty())
}

fn fenced(r: Result<u64, StateError>) -> bool {
    matches!(
        r,
        Err(StateError::TransferInProgress { .. } | StateError::PlayerMoved { .. })
    )
}

/// At any point: identity names one home, and that region holds the complete data.
async fn assert_home_intact(env: &Env, player: &str, docs: &Docs) -> anyhow::Result<String> {
    let home = env.identity.home_region(player).await?;
    let st = if home == "eu" { &env.eu } else { &env.us };
    assert_eq!(&raw_docs(st, player).await?, docs, "home {home} lost data");
    Ok(home)
}

/// After completion: home is us, the data is in us only, eu refuses the player.
async fn assert_finished(env: &Env, id: &str, player: &str, docs: &Docs) -> anyhow::Result<()> {
    let rec = env.transfer.status(id).await?;
    assert_eq!(rec.step, TransferStep::Done);
    assert_eq!(env.transfer.active_for_player(player).await?, None);
    assert!(env.transfer.pending().await?.iter().all(|r| r.id != id));
    assert_eq!(env.identity.home_region(player).await?, "us");
    assert_eq!(&docs_of(env.us.list(player).await?), docs);
    assert!(family_is_empty(&env.eu, player).await?, "source still holds data");
    assert!(matches!(
        env.eu.get(player, "profile").await,
        Err(StateError::PlayerMoved { to }) if to == "us"
    ));
    // Resuming again changes nothing.
    let again = env.transfer.resume(id).await?;
    assert_eq!(again.step, TransferStep::Done);
    assert_eq!(&docs_of(env.us.list(player).await?), docs);
    Ok(())
}

#[tokio::test]
async fn transfer_moves_data_and_home_and_fences_the_source() -> anyhow::Result<()> {
    let env = env(false).await?;
    let (player, docs) = seed(&env, "dev-basic").await?;
    let (other, other_docs) = seed(&env, "dev-bystander").await?;
    let id = env.transfer.start(&player, "us").await?;
    assert_eq!(env.transfer.status(&id).await?.step, TransferStep::Started);
    assert_eq!(env.transfer.active_for_player(&player).await?, Some(id.clone()));
    let rec = env.transfer.resume(&id).await?;
    assert_eq!((rec.from.as_str(), rec.to.as_str()), ("eu", "us"));
    assert_finished(&env, &id, &player, &docs).await?;

    // Versions continue in the new home; the old one refuses writes.
    assert_eq!(env.us.compare_and_set(&player, "profile", 3, b"new").await?, 4);
    assert!(matches!(
        env.eu.compare_and_set(&player, "profile", 3, b"x").await,
        Err(StateError::PlayerMoved { .. })
    ));
    // Another player in eu is untouched.
    assert_eq!(docs_of(env.eu.list(&other).await?), other_docs);
    assert_eq!(env.identity.home_region(&other).await?, "eu");
    Ok(())
}

#[tokio::test]
async fn start_is_refused_for_same_or_unknown_region_and_when_busy() -> anyhow::Result<()> {
    let env = env(false).await?;
    let (player, _) = seed(&env, "dev-refuse").await?;
    assert!(matches!(
        env.transfer.start(&player, "eu").await,
        Err(TransferError::SameRegion(r)) if r == "eu"
    ));
    assert!(matches!(
        env.transfer.start(&player, "mars").await,
        Err(TransferError::UnknownRegion(r)) if r == "mars"
    ));
    assert!(matches!(
        env.transfer.start("00000000000000000000000000000000", "us").await,
        Err(TransferError::UnknownPlayer(_))
    ));
    let id = env.transfer.start(&player, "us").await?;
    assert!(matches!(
        env.transfer.start(&player, "us").await,
        Err(TransferError::AlreadyInProgress(busy)) if busy == id
    ));
    assert!(matches!(
        env.transfer.resume("nope").await,
        Err(TransferError::UnknownTransfer(_))
    ));
    assert_eq!(env.transfer.pending().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn round_trip_on_one_shared_store() -> anyhow::Result<()> {
    let env = env(true).await?;
    let (player, docs) = seed(&env, "dev-round").await?;
    let id = env.transfer.start(&player, "us").await?;
    env.transfer.resume(&id).await?;
    assert_finished(&env, &id, &player, &docs).await?;
    let v = env.us.compare_and_set(&player, "loadout", 2, b"axe").await?;
    assert_eq!(v, 3);
    let back = env.transfer.start(&player, "eu").await?;
    env.transfer.resume(&back).await?;
    assert_eq!(env.identity.home_region(&player).await?, "eu");
    assert_eq!(env.eu.get(&player, "loadout").await?.unwrap().value, b"axe");
    assert_eq!(env.eu.get(&player, "loadout").await?.unwrap().version, 3);
    assert!(family_is_empty(&env.us, &player).await?);
    assert!(matches!(
        env.us.get(&player, "loadout").await,
        Err(StateError::PlayerMoved { to }) if to == "eu"
    ));
    assert_eq!(env.eu.compare_and_set(&player, "loadout", 3, b"bow").await?, 4);
    Ok(())
}

#[tokio::test]
async fn copy_pages_through_many_keys() -> anyhow::Result<()> {
    let env = env(false).await?;
    let player = env
        .identity
        .login_device("dev-many", SECRET, "eu")
        .await?
        .account
        .player;
    for i in 0..state::MAX_DOCS_PER_PLAYER {
        env.eu
            .compare_and_set(&player, &format!("doc{i:02}"), 0, &vec![i as u8; 20_000])
            .await?;
    }
    // 64 documents + the change counter: more than one copy page.
    const { assert!(state::MAX_DOCS_PER_PLAYER + 1 > COPY_PAGE_KEYS) };
    let docs = docs_of(env.eu.list(&player).await?);
    let id = env.transfer.start(&player, "us").await?;
    env.transfer.resume(&id).await?;
    assert_finished(&env, &id, &player, &docs).await?;
    Ok(())
}

#[tokio::test]
async fn concurrent_writes_in_the_source_are_either_copied_or_refused() -> anyhow::Result<()> {
    let env = env(false).await?;
    let (player, _) = seed(&env, "dev-race").await?;
    let writer = {
        let (eu, player) = (env.eu.clone(), player.clone());
        tokio::spawn(async move {
            let mut version = 3; // "profile" after seeding
            loop {
                match eu
                    .compare_and_set(&player, "profile", version, &version.to_be_bytes())
                    .await
                {
                    Ok(v) => version = v,
                    Err(StateError::TransferInProgress { .. } | StateError::PlayerMoved { .. }) => {
                        return Ok::<_, StateError>(version)
                    }
                    Err(e) => return Err(e),
                }
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::task::yield_now().await;
    let id = env.transfer.start(&player, "us").await?;
    env.transfer.resume(&id).await?;
    let last_ok = writer.await??;
    eprintln!("writer's last acknowledged version: {last_ok}");
    // Every acknowledged write made it; none slipped in after the copy.
    let doc = env.us.get(&player, "profile").await?.unwrap();
    assert_eq!(doc.version, last_ok);
    Ok(())
}

/// The ten points at which a transfer can be interrupted.
fn hook_points() -> Vec<HookPoint> {
    TransferStep::COMPLETED
        .iter()
        .flat_map(|&s| [HookPoint::AfterEffect(s), HookPoint::AfterRecord(s)])
        .collect()
}

#[tokio::test]
async fn crash_after_every_step_then_resume() -> anyhow::Result<()> {
    let env = env(false).await?;
    for (i, point) in hook_points().into_iter().enumerate() {
        let (player, docs) = seed(&env, &format!("dev-crash-{i}")).await?;
        let id = env.transfer.start(&player, "us").await?;
        let mut hook = |p: HookPoint| {
            if p == point {
                Err(TransferError::Interrupted(p))
            } else {
                Ok(())
            }
        };
        let res = env.transfer.resume_with_hook(&id, &mut hook).await;
        assert!(
            matches!(res, Err(TransferError::Interrupted(p)) if p == point),
            "{point:?}: {res:?}"
        );

        // While interrupted: one home, complete data there.
        assert_home_intact(&env, &player, &docs).await?;
        let step = match point {
            HookPoint::AfterEffect(s) | HookPoint::AfterRecord(s) => s,
        };
        if step < TransferStep::Done {
            // Both regions refuse writes (the destination from `copied` on).
            assert!(
                fenced(env.eu.compare_and_set(&player, "profile", 3, b"x").await),
                "{point:?}"
            );
            if step >= TransferStep::Copied {
                assert!(
                    fenced(env.us.compare_and_set(&player, "profile", 3, b"x").await),
                    "{point:?}"
                );
            }
        }
        // A second start is refused until the first finishes.
        assert!(matches!(
            env.transfer.start(&player, "us").await,
            Err(TransferError::AlreadyInProgress(_) | TransferError::SameRegion(_))
        ));

        // Recovery as after a restart: find it among the pending, resume.
        // (Only a crash after the final record update leaves nothing pending.)
        let pending = env.transfer.pending().await?;
        let finished = point == HookPoint::AfterRecord(TransferStep::Done);
        assert_eq!(pending.iter().any(|r| r.id == id), !finished, "{point:?}");
        env.transfer.resume(&id).await?;
        assert_finished(&env, &id, &player, &docs).await?;
    }
    Ok(())
}

/// Polls `fut` until it has returned `Pending` `n` times, then drops it (a crash
/// in the middle of a step: between a transaction's reads, during its commit...).
async fn drop_after_pendings<F: Future>(fut: F, mut n: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending if n == 0 => Poll::Ready(None),
        Poll::Pending => {
            n -= 1;
            Poll::Pending
        }
    })
    .await
}

#[tokio::test]
async fn dropping_the_resume_future_mid_step_then_resume() -> anyhow::Result<()> {
    let env = env(false).await?;
    let mut completed_without_drop = false;
    let mut drops = 0;
    for n in 0..2_000 {
        let (player, docs) = seed(&env, &format!("dev-drop-{n}")).await?;
        let id = env.transfer.start(&player, "us").await?;
        match drop_after_pendings(env.transfer.resume(&id), n).await {
            Some(res) => {
                res?;
                completed_without_drop = true;
            }
            None => drops += 1,
        }
        assert_home_intact(&env, &player, &docs).await?;
        env.transfer.resume(&id).await?;
        assert_finished(&env, &id, &player, &docs).await?;
        if completed_without_drop {
            break;
        }
    }
    assert!(
        completed_without_drop,
        "resume never completed within 2000 pendings"
    );
    eprintln!("resume dropped at {drops} points before one ran to completion");
    assert!(drops > 5, "only {drops} drop points exercised");
    Ok(())
}

#[test]
fn resume_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let env = env(false).await.unwrap();
        let fut = env.transfer.resume("x");
        assert_send(&fut);
    });
}

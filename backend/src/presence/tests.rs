//! Presence against the real embedded store.

use std::time::Duration;

use super::*;
use crate::store::embedded::EmbeddedStore;

async fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = crate::store::testing::open_store(dir.path()).await.unwrap();
    (dir, s)
}

fn claim(id: u64) -> Claim {
    Claim::new(1_000 * id, id, format!("gw-{id}"))
}

/// Session `mine`'s displacement watch, running; checked to be still waiting.
async fn watch_in_background(
    p: &Presence<EmbeddedStore>,
    player: &'static str,
    mine: Claim,
) -> tokio::task::JoinHandle<Result<Displacement, PresenceError>> {
    let p = p.clone();
    let waiter = tokio::spawn(async move { p.displaced(player, &mine).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    waiter
}

#[tokio::test]
async fn a_newer_claim_displaces_the_older_session() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    p.claim("p1", &claim(1)).await.unwrap();
    let waiter = watch_in_background(&p, "p1", claim(1)).await;
    assert!(!waiter.is_finished(), "no newer claim yet");
    // Another player's claim does not disturb it.
    p.claim("p2", &claim(9)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    p.claim("p1", &claim(2)).await.unwrap();
    let by = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(by, Displacement::NewerLogin(claim(2)));
}

#[tokio::test]
async fn the_watch_registered_by_the_claim_resolves_on_a_newer_claim_or_an_end_only() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    let watch = p.claim_watched("p1", &claim(2)).await.unwrap().expect("written");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.displaced_after("p1", &claim(2), watch).await });
    // An older, late claim is refused and changes nothing; another player's
    // claim does not touch the key.
    assert!(!p.claim("p1", &claim(1)).await.unwrap());
    p.claim("p2", &claim(9)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "the key still holds claim 2");
    p.claim("p1", &claim(3)).await.unwrap();
    let by = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(by, Displacement::NewerLogin(claim(3)));
    assert!(
        p.claim_watched("p1", &claim(1)).await.unwrap().is_none(),
        "a newer login holds it: no claim, no watch"
    );

    // A resume's watch resolves when its session is ended (a logout).
    let mut resumed = claim(4);
    let watch = p
        .resume_watched("p1", 3, &mut resumed)
        .await
        .unwrap()
        .expect("claim 3 is current");
    let p2 = p.clone();
    let mine = resumed.clone();
    let waiter = tokio::spawn(async move { p2.displaced_after("p1", &mine, watch).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    assert!(p
        .end("p1", resumed.session_id, SessionEnd::LoggedOut)
        .await
        .unwrap());
    let by = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(by, Displacement::Ended(SessionEnd::LoggedOut));
}

#[tokio::test]
async fn release_only_clears_its_own_claim() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    p.claim("p1", &claim(1)).await.unwrap();
    p.claim("p1", &claim(2)).await.unwrap();
    p.release("p1", 1).await.unwrap();
    assert_eq!(
        p.current("p1").await.unwrap(),
        Some(claim(2)),
        "a stale release is a no-op"
    );
    p.release("p1", 2).await.unwrap();
    assert_eq!(p.current("p1").await.unwrap(), None);
    assert_eq!(
        p.displaced("p1", &claim(2)).await.unwrap(),
        Displacement::Released,
        "no claim: resolve at once"
    );
}

#[tokio::test]
async fn an_older_login_arriving_late_does_not_displace_a_newer_one() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    assert!(p.claim("p1", &claim(5)).await.unwrap());
    assert!(!p.claim("p1", &claim(3)).await.unwrap(), "older claim refused");
    assert_eq!(p.current("p1").await.unwrap(), Some(claim(5)));
    // The late, older session learns at once that it is displaced.
    assert_eq!(
        p.displaced("p1", &claim(3)).await.unwrap(),
        Displacement::NewerLogin(claim(5))
    );
}

#[test]
fn claims_roundtrip_and_garbage_is_an_error() {
    let c = claim(77);
    assert_eq!(Claim::decode(&c.encode()).unwrap(), c);
    assert_eq!(c.encode()[0], 1, "a live claim keeps the v1 bytes");
    for end in [SessionEnd::KickedByOperator, SessionEnd::LoggedOut] {
        let ended = Claim {
            ended: Some(end),
            ..claim(78)
        };
        assert_eq!(Claim::decode(&ended.encode()).unwrap(), ended);
    }
    assert!(
        matches!(Claim::decode(&[2; 17]), Err(PresenceError::Corrupt)),
        "v2 needs its end byte"
    );
    let mut bad_end = Claim {
        ended: Some(SessionEnd::LoggedOut),
        ..claim(1)
    }
    .encode();
    bad_end[17] = 9;
    assert!(matches!(Claim::decode(&bad_end), Err(PresenceError::Corrupt)));
    assert!(matches!(Claim::decode(&[]), Err(PresenceError::Corrupt)));
    assert!(matches!(Claim::decode(&[1, 2, 3]), Err(PresenceError::Corrupt)));
    assert!(matches!(
        Claim::decode(&[9; 20]),
        Err(PresenceError::UnsupportedSchema(9))
    ));
    assert!(matches!(Claim::decode(&[1; 12]), Err(PresenceError::Corrupt)));
    assert!(Claim::new(1, 1, "x".repeat(200)).check().is_err());
}

#[tokio::test]
async fn resume_accepts_only_the_current_unended_session_and_replaces_it() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    p.claim("p1", &claim(1)).await.unwrap();
    // Resuming session 1 as session 2: accepted, and the new claim is newer
    // even though its clock reads earlier (another gateway, behind).
    let mut resumed = Claim::new(10, 2, "gw-b");
    assert_eq!(p.resume("p1", 1, &mut resumed).await.unwrap(), Ok(()));
    assert_eq!(resumed.since_ms, 1_001, "raised above the replaced claim");
    assert_eq!(p.current("p1").await.unwrap(), Some(resumed.clone()));
    // The same resume again (a retry whose first commit's result was unknown)
    // is recognised as done, not refused as replaced.
    let mut retried = resumed.clone();
    assert_eq!(p.resume("p1", 1, &mut retried).await.unwrap(), Ok(()));
    assert_eq!(retried.since_ms, resumed.since_ms);
    // Session 1's tokens are revoked by the resume itself.
    let mut again = Claim::new(5_000, 3, "gw-c");
    assert_eq!(
        p.resume("p1", 1, &mut again).await.unwrap(),
        Err(ResumeRefused::Replaced)
    );
    // A new login replaces session 2: its tokens are revoked too.
    p.claim("p1", &claim(9)).await.unwrap();
    assert_eq!(
        p.resume("p1", 2, &mut again).await.unwrap(),
        Err(ResumeRefused::Replaced)
    );
    // No claim at all: nothing to resume.
    assert_eq!(
        p.resume("nobody", 1, &mut again).await.unwrap(),
        Err(ResumeRefused::Unknown)
    );
}

#[tokio::test]
async fn an_ended_session_cannot_be_resumed_and_its_watch_learns_why() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    p.claim("p1", &claim(1)).await.unwrap();
    let waiter = watch_in_background(&p, "p1", claim(1)).await;
    assert!(!waiter.is_finished());
    // An operator on another gateway ends whatever session is current.
    let ended = p.end_current("p1", SessionEnd::KickedByOperator).await.unwrap();
    assert_eq!(ended.map(|c| c.session_id), Some(1));
    let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen, Displacement::Ended(SessionEnd::KickedByOperator));
    let mut resumed = Claim::new(2_000, 2, "gw-b");
    assert_eq!(
        p.resume("p1", 1, &mut resumed).await.unwrap(),
        Err(ResumeRefused::Ended(SessionEnd::KickedByOperator))
    );
    // Ending again is idempotent (what a retry after an unknown commit result
    // needs); another kind of end is not recorded over it; a new login
    // replaces the ended claim.
    let again = p.end_current("p1", SessionEnd::KickedByOperator).await.unwrap();
    assert_eq!(again.and_then(|c| c.ended), Some(SessionEnd::KickedByOperator));
    assert!(!p.end("p1", 1, SessionEnd::LoggedOut).await.unwrap());
    assert!(p.claim("p1", &claim(3)).await.unwrap());
    assert_eq!(p.current("p1").await.unwrap(), Some(claim(3)));
}

#[tokio::test]
async fn a_session_ends_only_its_own_claim() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    p.claim("p1", &claim(1)).await.unwrap();
    p.claim("p1", &claim(2)).await.unwrap();
    assert!(
        !p.end("p1", 1, SessionEnd::LoggedOut).await.unwrap(),
        "not its claim any more"
    );
    assert_eq!(p.current("p1").await.unwrap(), Some(claim(2)));
    assert!(p.end("p1", 2, SessionEnd::LoggedOut).await.unwrap());
    assert_eq!(
        p.current("p1").await.unwrap().and_then(|c| c.ended),
        Some(SessionEnd::LoggedOut)
    );
}

#[test]
fn claims_with_an_incarnation_use_v3_and_v4_and_older_records_still_decode() {
    let c = Claim {
        incarnation: 0xabcdef,
        ..claim(5)
    };
    let raw = c.encode();
    assert_eq!(
        (raw[0], raw.len()),
        (3, 1 + 24 + 4),
        "v3: v1 plus the incarnation"
    );
    assert_eq!(Claim::decode(&raw).unwrap(), c);
    let ended = Claim {
        ended: Some(SessionEnd::KickedByOperator),
        ..c.clone()
    };
    let raw = ended.encode();
    assert_eq!(raw[0], 4);
    assert_eq!(Claim::decode(&raw).unwrap(), ended);
    assert!(matches!(Claim::decode(&raw[..25]), Err(PresenceError::Corrupt)));
    // A v1 record written by an older gateway: incarnation unknown (0).
    let mut v1 = vec![1];
    v1.extend_from_slice(&7u64.to_be_bytes());
    v1.extend_from_slice(&8u64.to_be_bytes());
    v1.extend_from_slice(b"gw-old");
    assert_eq!(Claim::decode(&v1).unwrap(), Claim::new(7, 8, "gw-old"));
}

#[tokio::test]
async fn the_holder_index_follows_the_claim() -> anyhow::Result<()> {
    let (_d, s) = store().await;
    let (a, b) = (
        Presence::new(s.clone()).with_incarnation(1),
        Presence::new(s.clone()).with_incarnation(2),
    );
    let p = "0123456789abcdef0123456789abcdef";
    assert!(a.claim(p, &claim(1)).await?);
    assert_eq!(a.current(p).await?.unwrap().incarnation, 1, "stamped");
    // A newer login on another incarnation moves the index entry.
    assert!(b.claim(p, &claim(2)).await?);
    // The counts are what this call did; under the fault mode a retried sweep
    // whose first commit applied finds the work done and counts less. The
    // effect (what is left) is checked in every mode.
    let exact = !crate::store::testing::faults_enabled();
    let (swept, done) = a.sweep_incarnation(1, 10).await?;
    assert!(done && (swept == 0 || !exact), "nothing left on 1: {swept}");
    b.end(p, 2, SessionEnd::LoggedOut).await?;
    let (swept, done) = a.sweep_incarnation(2, 10).await?;
    assert!(
        done && (swept == 1 || !exact),
        "the ended claim of 2 is swept: {swept}"
    );
    assert_eq!(a.current(p).await?, None);
    Ok(())
}

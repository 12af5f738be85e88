//! Presence against the real embedded store.

use std::time::Duration;

use super::*;
use crate::store::embedded::{EmbeddedConfig, EmbeddedStore};

async fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(EmbeddedConfig::new(dir.path()))
        .await
        .unwrap();
    (dir, s)
}

fn claim(id: u64) -> Claim {
    Claim {
        since_ms: 1_000 * id,
        session_id: id,
        gateway: format!("gw-{id}"),
    }
}

#[tokio::test]
async fn a_newer_claim_displaces_the_older_session() {
    let (_d, s) = store().await;
    let p = Presence::new(s);
    p.claim("p1", &claim(1)).await.unwrap();
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.displaced("p1", &claim(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
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
    assert_eq!(by, Some(claim(2)));
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
        None,
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
    assert_eq!(p.displaced("p1", &claim(3)).await.unwrap(), Some(claim(5)));
}

#[test]
fn claims_roundtrip_and_garbage_is_an_error() {
    let c = claim(77);
    assert_eq!(Claim::decode(&c.encode()).unwrap(), c);
    assert!(matches!(Claim::decode(&[]), Err(PresenceError::Corrupt)));
    assert!(matches!(Claim::decode(&[1, 2, 3]), Err(PresenceError::Corrupt)));
    assert!(matches!(
        Claim::decode(&[9; 20]),
        Err(PresenceError::UnsupportedSchema(9))
    ));
    assert!(matches!(Claim::decode(&[1; 12]), Err(PresenceError::Corrupt)));
    assert!(Claim {
        since_ms: 1,
        session_id: 1,
        gateway: "x".repeat(200)
    }
    .check()
    .is_err());
}

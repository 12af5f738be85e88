//! Fleet liveness over real QUIC: queueing again after a reconnect re-attaches
//! to the waiting ticket (one MatchFound), and a gateway killed without a drain
//! leaves nothing behind once its heartbeat expired and a resume window passed,
//! while players who came back through another gateway keep their tickets
//! (and, with the login queue on, the region's slots in use come back to the
//! sessions that are live).

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use outpost_backend::matchmaker::{Matchmaker, TicketState};
use outpost_backend::presence::Presence;
use outpost_client::{ChannelKind, Client, ClientError, ErrorCode, Event, MatchInfo, PushBody, TicketStatus};
use outpost_gateway::GatewayConfig;

/// Counts MatchFound pushes until `quiet` passes without another after the
/// first (or `limit` without any).
async fn match_pushes(
    events: &mut outpost_client::Events,
    limit: Duration,
    quiet: Duration,
) -> Vec<MatchInfo> {
    let mut got = Vec::new();
    loop {
        let wait = if got.is_empty() { limit } else { quiet };
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(Event::Push {
                channel: ChannelKind::Matchmaking,
                body: PushBody::MatchFound { matched, .. },
            })) => got.push(matched),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return got,
        }
    }
}

fn pool() -> outpost_backend::matchmaker::MatchmakerConfig {
    outpost_gateway::config::MatchmakingConfig::default()
        .pool("local")
        .expect("default pool")
}

fn fast_liveness(c: &mut GatewayConfig) {
    c.session.resume_window_secs = 2;
    c.liveness.heartbeat_interval_ms = 100;
    c.liveness.expiry_ms = 500;
    c.liveness.sweep_interval_ms = 100;
    c.liveness.sweep_lease_ttl_ms = 400;
    c.liveness.ledger_pass_budget_ms = 100;
}

/// The login queue on, with short graces (the budget is large: nobody waits).
fn fast_queue(c: &mut GatewayConfig) {
    c.queue.enabled = true;
    c.queue.reentry_grace_secs = 2;
    c.queue.place_grace_secs = 2;
    c.queue.update_interval_ms = 500;
}

/// The region's slots in use (the login queue's `used` counter).
async fn slots_used(store: &outpost_backend::store::AnyStore) -> Result<u64> {
    use outpost_backend::queue::{Queue, QueueKeys, QueueSettings};
    let keys = QueueKeys::new("k", [("k", &[1u8; 32])])?;
    let region = outpost_backend::keyspace::RegionName::new("local")?;
    let q = Queue::new(store.clone(), region, QueueSettings::default(), keys)?;
    Ok(q.view().await?.used)
}

#[tokio::test]
async fn queueing_again_after_a_reconnect_gets_the_same_ticket_and_one_match() -> Result<()> {
    let world = World::new().await?;
    // The first gateway dies under the player (so the old session can never
    // come back and race the new one).
    let mut c1 = world.config();
    c1.matchmaking.workers = 0;
    let gw1 = Crashable::start(c1, world.store.clone())?;
    let gw2 = world.gateway(|_| {}).await?;
    let creds = device();
    let mut cfg = client_config(vec![gw1.addr], &gw1.ca_pem, creds.clone());
    cfg.reconnect.max_attempts = Some(1);
    let first = Client::connect(cfg).await?;
    let first_mm = first.matchmaking().await?;
    let t1 = first_mm.queue_here("duel").await?;
    assert_eq!(t1.status, TicketStatus::Waiting);
    // Another queue while it waits: a clear Conflict naming the queue.
    match first_mm.queue_here("squad").await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::Conflict);
            assert!(e.message.contains("\"duel\""), "{}", e.message);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    // The connection drops; the player logs in again through another gateway
    // and queues again.
    gw1.kill();
    let again = Client::connect(gw2.client_config(creds)).await?;
    let mut events = again.events();
    let mm = again.matchmaking().await?;
    let t2 = mm.queue_here("duel").await?;
    assert_eq!(
        (t2.ticket_id, t2.status),
        (t1.ticket_id, TicketStatus::Waiting),
        "re-attached"
    );
    assert_eq!(mm.queue_here("duel").await?.ticket_id, t1.ticket_id, "idempotent");
    drop((first_mm, first));

    let other = Client::connect(gw2.client_config(device())).await?;
    other.matchmaking().await?.queue_here("duel").await?;
    let pushes = match_pushes(&mut events, Duration::from_secs(20), Duration::from_millis(1500)).await;
    assert_eq!(pushes.len(), 1, "exactly one MatchFound: {pushes:?}");
    let status = mm.status().await?;
    assert_eq!(
        (status.ticket_id, status.status),
        (t1.ticket_id, TicketStatus::Matched)
    );
    // Cancelling a matched ticket says so instead of failing.
    let c = mm.cancel().await?;
    assert_eq!(c.status, TicketStatus::Matched);
    assert_eq!(c.matched.map(|m| m.match_id), Some(pushes[0].match_id.clone()));
    Ok(())
}

#[tokio::test]
async fn a_killed_gateway_leaves_nothing_behind_and_returning_players_keep_their_tickets() -> Result<()> {
    let world = World::new().await?;
    let mut ca = world.config();
    fast_liveness(&mut ca);
    fast_queue(&mut ca);
    ca.matchmaking.workers = 0;
    let a = Crashable::start(ca, world.store.clone())?;
    let b = world
        .gateway(|c| {
            fast_liveness(c);
            fast_queue(c);
            c.matchmaking.workers = 1;
        })
        .await?;

    // Four players queue for squad (10 per match: nothing matches yet) on A.
    let creds: Vec<_> = (0..4).map(|_| device()).collect();
    let mut on_a = Vec::new();
    for c in &creds {
        let mut cfg = client_config(vec![a.addr], &a.ca_pem, c.clone());
        cfg.reconnect.max_attempts = Some(1);
        let client = Client::connect(cfg).await?;
        let t = client.matchmaking().await?.queue_here("squad").await?;
        on_a.push((client.player_id(), t.ticket_id));
        std::mem::forget(client); // its connection dies with A
    }
    assert_eq!(slots_used(&world.store).await?, 4);
    a.kill();

    // Players 0 and 1 come back through B in time: 0 queues again (re-attach),
    // 1 only logs in (the sweep hands its ticket to B). 2 and 3 never return.
    let back0 = Client::connect(b.client_config(creds[0].clone())).await?;
    let mut ev0 = back0.events();
    // (A channel stays open, and gets its pushes, while its handle lives.)
    let mm0 = back0.matchmaking().await?;
    let t0 = mm0.queue_here("squad").await?;
    assert_eq!(t0.ticket_id, on_a[0].1, "re-attached after the crash");
    let back1 = Client::connect(b.client_config(creds[1].clone())).await?;
    let mut ev1 = back1.events();
    let _mm1 = back1.matchmaking().await?;

    // Resume window (2 s) + expiry (0.5 s) + sweep slack.
    let mm = Matchmaker::new(world.store.clone(), "local", pool())?;
    let presence = Presence::new(world.store.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let mut states = Vec::new();
        for (p, _) in &on_a {
            states.push(mm.ticket_status(p).await?.map(|t| t.state));
        }
        let claims_gone =
            presence.current(&on_a[2].0).await?.is_none() && presence.current(&on_a[3].0).await?.is_none();
        if states[2] == Some(TicketState::Removed) && states[3] == Some(TicketState::Removed) && claims_gone {
            assert_eq!(states[0], Some(TicketState::Waiting));
            assert_eq!(states[1], Some(TicketState::Waiting), "came back: kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "orphans not swept: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (p, _) in &on_a[2..] {
        assert_eq!(presence.current(p).await?, None, "orphaned claim swept");
    }
    for (p, _) in &on_a[..2] {
        assert!(
            presence.current(p).await?.is_some(),
            "returning players keep presence"
        );
    }
    // The sweep turned A's two orphaned sessions into re-entry reservations;
    // after the re-entry grace (2 s) their slots are back: the two who came
    // back hold the only slots (their logins through B took over theirs).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while slots_used(&world.store).await? != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots leaked: {} in use",
            slots_used(&world.store).await?
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Eight more players fill the match: the two who came back are in it,
    // the swept ones never are.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let c = Client::connect(b.client_config(device())).await?;
        c.matchmaking().await?.queue_here("squad").await?;
        fillers.push(c);
    }
    let m0 = match_pushes(&mut ev0, Duration::from_secs(30), Duration::from_millis(500)).await;
    let m1 = match_pushes(&mut ev1, Duration::from_secs(10), Duration::from_millis(500)).await;
    assert_eq!((m0.len(), m1.len()), (1, 1));
    assert_eq!(m0[0].match_id, m1[0].match_id);
    let players: Vec<&String> = m0[0].teams.iter().flatten().collect();
    for (p, _) in &on_a[2..] {
        assert!(!players.contains(&p), "a swept ticket was matched");
        assert_eq!(
            mm.ticket_status(p).await?.map(|t| t.state),
            Some(TicketState::Removed)
        );
    }
    Ok(())
}

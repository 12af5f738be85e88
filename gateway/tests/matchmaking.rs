//! Matchmaking end to end: clients queue through the SDK and receive their match
//! push; disconnected players' tickets are removed after the resume window,
//! resumed players keep theirs.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use outpost_backend::matchmaker::{Matchmaker, TicketState};
use outpost_client::{
    ChannelKind, Client, ClientError, ErrorCode, Event, MatchInfo, NoMatchReason, PushBody, TicketStatus,
};

async fn match_push(events: &mut outpost_client::Events) -> MatchInfo {
    let wait = async {
        loop {
            if let Some(Event::Push {
                channel: ChannelKind::Matchmaking,
                body: PushBody::MatchFound { matched, .. },
            }) = events.recv().await
            {
                return matched;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("a MatchFound push")
}

#[tokio::test]
async fn two_players_queue_and_both_get_the_match_push() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let a = Client::connect(gw.client_config(device())).await?;
    let b = Client::connect(gw.client_config(device())).await?;
    let (mut ea, mut eb) = (a.events(), b.events());
    let (ma, mb) = (a.matchmaking().await?, b.matchmaking().await?);

    let ta = ma.queue_here("duel").await?;
    assert_eq!(ta.status, TicketStatus::Waiting);
    // Queueing twice for the same queue returns the waiting ticket.
    assert_eq!(ma.queue_here("duel").await?.ticket_id, ta.ticket_id);
    mb.queue_here("duel").await?;

    let (pa, pb) = (match_push(&mut ea).await, match_push(&mut eb).await);
    assert_eq!(pa.match_id, pb.match_id);
    assert_eq!(pa.server, "127.0.0.1:7777");
    assert_eq!(pa.teams.len(), 2);
    assert_ne!(pa.team, pb.team, "a duel puts them on opposite teams");
    assert!(pa.teams[pa.team as usize].contains(&a.player_id()));
    let status = ma.status().await?;
    assert_eq!(
        (status.status, status.matched.map(|m| m.match_id)),
        (TicketStatus::Matched, Some(pa.match_id))
    );
    // The match shows up in the gateway's metrics.
    let admin = gw.admin;
    let metrics = tokio::task::spawn_blocking(move || http(admin, "GET", "/metrics")).await??;
    assert!(
        metrics.contains(r#"outpost_mm_matches_total{queue="duel",region="local"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outpost_mm_pool_depth{queue="duel",region="local"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("outpost_mm_wait_ms_count{queue=\"duel\",region=\"local\"} 2"),
        "{metrics}"
    );
    // Unknown queues are invalid requests.
    match mb.queue("no-such-queue", vec![], 0).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::InvalidRequest),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn cancel_leaves_the_pool() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.matchmaking.workers = 0).await?;
    let a = Client::connect(gw.client_config(device())).await?;
    let mm = a.matchmaking().await?;
    mm.queue_here("squad").await?;
    assert_eq!(mm.cancel().await?.status, TicketStatus::Cancelled);
    assert_eq!(mm.status().await?.status, TicketStatus::Cancelled);
    Ok(())
}

#[tokio::test]
async fn disconnected_tickets_are_removed_after_the_resume_window_resumed_ones_kept() -> Result<()> {
    let world = World::new().await?;
    // No workers: tickets stay waiting, so only disconnect handling changes them.
    let gw = world
        .gateway(|c| {
            c.matchmaking.workers = 0;
            c.session.resume_window_secs = 2;
        })
        .await?;
    let leaver = Client::connect(gw.client_config(device())).await?;
    let stayer = Client::connect(gw.client_config(device())).await?;
    let (leaver_id, stayer_id) = (leaver.player_id(), stayer.player_id());
    leaver.matchmaking().await?.queue_here("squad").await?;
    stayer.matchmaking().await?.queue_here("squad").await?;
    let mut events = stayer.events();

    leaver.close().await; // gone for good
    stayer.debug_kill_connection(); // network loss; the SDK resumes
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
            // Back within the window. (Usually a resume; on a slow machine the
            // 2 s resume token may have expired and the SDK logs in with its
            // session token instead: the player is back either way.)
            Some(Event::Connected { .. }) => break,
            Some(_) => continue,
            None => panic!("no resume"),
        }
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let mm = Matchmaker::new(world.store.clone(), "local", gw_pool())?;
    let state = |p: &str| {
        let mm = mm.clone();
        let p = p.to_owned();
        async move { mm.ticket_status(&p).await.map(|t| t.map(|t| t.state)) }
    };
    assert_eq!(
        state(&leaver_id).await?,
        Some(TicketState::Removed),
        "the leaver's ticket is removed"
    );
    assert_eq!(
        state(&stayer_id).await?,
        Some(TicketState::Waiting),
        "the resumed player keeps the ticket"
    );
    Ok(())
}

fn gw_pool() -> outpost_backend::matchmaker::MatchmakerConfig {
    outpost_gateway::config::MatchmakingConfig::default()
        .pool("local")
        .expect("default pool")
}

#[tokio::test]
async fn a_ticket_at_its_deadline_gets_one_match_not_found_push() -> Result<()> {
    let world = World::new().await?;
    let mut pool = gw_pool();
    // A queue nobody else joins, with a short deadline.
    let mut lonely = pool.queues[0].clone();
    lonely.name = "lonely".into();
    lonely.expansions.truncate(1);
    lonely.deadline_ms = Some(600);
    pool.queues.push(lonely);
    let gw = world.gateway(move |c| c.matchmaking.pool = Some(pool)).await?;
    let a = Client::connect(gw.client_config(device())).await?;
    let mut events = a.events();
    let mm = a.matchmaking().await?;
    let ticket = mm.queue_here("lonely").await?;
    assert_eq!(ticket.status, TicketStatus::Waiting);
    let reason = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Some(Event::Push {
                    channel: ChannelKind::Matchmaking,
                    body: PushBody::MatchNotFound { ticket_id, reason },
                }) => {
                    assert_eq!(ticket_id, ticket.ticket_id);
                    return reason;
                }
                Some(_) => continue,
                None => panic!("client closed"),
            }
        }
    })
    .await
    .expect("a MatchNotFound push");
    assert_eq!(reason, NoMatchReason::Deadline);
    assert_eq!(mm.status().await?.status, TicketStatus::TimedOut);
    // Exactly once: nothing more arrives for this ticket while the workers go
    // on running rounds.
    let more = tokio::time::timeout(Duration::from_millis(1_500), async {
        loop {
            if let Some(Event::Push {
                body: PushBody::MatchNotFound { .. } | PushBody::MatchFound { .. },
                ..
            }) = events.recv().await
            {
                return;
            }
        }
    })
    .await;
    assert!(more.is_err(), "a second outcome push");
    // The player may queue again.
    assert_eq!(mm.queue_here("lonely").await?.status, TicketStatus::Waiting);
    Ok(())
}

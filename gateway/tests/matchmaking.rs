//! Matchmaking end to end: clients queue through the SDK and receive their match
//! push; disconnected players' tickets are removed after the resume window,
//! resumed players keep theirs.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use outpost_backend::matchmaker::{Matchmaker, TicketState};
use outpost_client::{ChannelKind, Client, ClientError, ErrorCode, Event, MatchInfo, PushBody, TicketStatus};

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

fn admin_call(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, serde_json::Value)> {
    let r = http_json(admin, method, path, body)?;
    let status = r
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((
        status,
        serde_json::from_str(http_body(&r)).unwrap_or(serde_json::Value::Null),
    ))
}

async fn admin(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, serde_json::Value)> {
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
    tokio::task::spawn_blocking(move || admin_call(admin, &method, &path, &body)).await?
}

#[tokio::test]
async fn a_game_server_backfills_its_match_and_the_new_player_is_pushed_that_match() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let a = Client::connect(gw.client_config(device())).await?;
    let b = Client::connect(gw.client_config(device())).await?;
    let mut ea = a.events();
    let (ma, mb) = (a.matchmaking().await?, b.matchmaking().await?);
    ma.queue_here("duel").await?;
    mb.queue_here("duel").await?;
    let m = match_push(&mut ea).await;
    // Player a left; the game server asks for one player on a's team.
    let mut slots = [0u32, 0];
    slots[m.team as usize] = 1;
    let body = format!(r#"{{"slots":[{},{}],"ttl_ms":30000}}"#, slots[0], slots[1]);
    let (status, req) = admin(
        gw.admin,
        "POST",
        &format!("/matches/{}/backfill", m.match_id),
        &body,
    )
    .await?;
    assert_eq!(status, 201, "{req}");
    assert_eq!(
        (req["state"].as_str(), req["match_id"].as_str()),
        (Some("open"), Some(m.match_id.as_str()))
    );
    let id = req["id"].as_str().expect("id").to_owned();

    let c = Client::connect(gw.client_config(device())).await?;
    let mut ec = c.events();
    let mc = c.matchmaking().await?;
    mc.queue_here("duel").await?;
    let pc = match_push(&mut ec).await;
    assert_eq!(
        pc.match_id, m.match_id,
        "the backfilled player joins the existing match"
    );
    assert_eq!(pc.team, m.team);
    assert!(pc.teams[pc.team as usize].contains(&c.player_id()));
    assert_eq!(pc.server, m.server);
    let (status, got) = admin(gw.admin, "GET", &format!("/backfills/{id}"), "").await?;
    assert_eq!((status, got["state"].as_str()), (200, Some("filled")), "{got}");
    assert_eq!(got["tickets"].as_array().map(Vec::len), Some(1));
    // Filled requests cannot be cancelled; hostile input gets documented codes.
    let (status, e) = admin(gw.admin, "DELETE", &format!("/backfills/{id}"), "").await?;
    assert_eq!((status, e["error"].as_str()), (409, Some("backfill_filled")));
    for (path, body, want) in [
        (
            format!("/matches/{}/backfill", m.match_id),
            r#"{"slots":[1]}"#,
            (400, "invalid_backfill"),
        ),
        (
            format!("/matches/{}/backfill", m.match_id),
            r#"{"slots":[2,0]}"#,
            (400, "invalid_backfill"),
        ),
        (
            format!("/matches/{}/backfill", m.match_id),
            r#"{"slots":[1,0],"ttl_ms":1}"#,
            (400, "invalid_backfill"),
        ),
        (
            format!("/matches/{}/backfill", m.match_id),
            r#"{"slots":[1,0],"x":1}"#,
            (400, "invalid_json"),
        ),
        (
            "/matches/xyz/backfill".to_owned(),
            r#"{"slots":[1,0]}"#,
            (400, "invalid_id"),
        ),
        (
            format!("/matches/{:032x}/backfill", 7),
            r#"{"slots":[1,0]}"#,
            (404, "match_not_found"),
        ),
    ] {
        let (status, e) = admin(gw.admin, "POST", &path, body).await?;
        assert_eq!((status, e["error"].as_str().unwrap_or("")), want, "{path} {body}");
    }
    // An open request can be cancelled (idempotently); it is then never filled.
    let (_, open) = admin(
        gw.admin,
        "POST",
        &format!("/matches/{}/backfill", m.match_id),
        r#"{"slots":[1,0]}"#,
    )
    .await?;
    let oid = open["id"].as_str().expect("id");
    for _ in 0..2 {
        let (status, r) = admin(gw.admin, "DELETE", &format!("/backfills/{oid}"), "").await?;
        assert_eq!((status, r["state"].as_str()), (200, Some("cancelled")));
    }
    let (status, e) = admin(gw.admin, "GET", &format!("/backfills/{:016x}", 9), "").await?;
    assert_eq!((status, e["error"].as_str()), (404, Some("not_found")));
    Ok(())
}

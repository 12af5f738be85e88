//! Backfill through the admin API, end to end: a game server asks for a
//! replacement player for a match in progress, and a real QUIC client queueing
//! afterwards is pushed `MatchFound` naming that match. (Its own test binary:
//! `matchmaking.rs`'s first test counts the process's matches in the metrics.)

mod common;

use anyhow::Result;
use common::*;

async fn match_push(events: &mut outpost_client::Events) -> outpost_client::MatchInfo {
    use outpost_client::{ChannelKind, Event, PushBody};
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
    tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .expect("a MatchFound push")
}

#[tokio::test]
async fn a_game_server_backfills_its_match_and_the_new_player_is_pushed_that_match() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let a = outpost_client::Client::connect(gw.client_config(device())).await?;
    let b = outpost_client::Client::connect(gw.client_config(device())).await?;
    let mut ea = a.events();
    let (ma, mb) = (a.matchmaking().await?, b.matchmaking().await?);
    ma.queue_here("duel").await?;
    mb.queue_here("duel").await?;
    let m = match_push(&mut ea).await;
    // Player a left; the game server asks for one player on a's team.
    let mut slots = [0u32, 0];
    slots[m.team as usize] = 1;
    let body = format!(r#"{{"slots":[{},{}],"ttl_ms":30000}}"#, slots[0], slots[1]);
    let (status, req) = admin_json(
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

    let c = outpost_client::Client::connect(gw.client_config(device())).await?;
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
    let (status, got) = admin_json(gw.admin, "GET", &format!("/backfills/{id}"), "").await?;
    assert_eq!((status, got["state"].as_str()), (200, Some("filled")), "{got}");
    assert_eq!(got["tickets"].as_array().map(Vec::len), Some(1));
    // Filled requests cannot be cancelled; hostile input gets documented codes.
    let (status, e) = admin_json(gw.admin, "DELETE", &format!("/backfills/{id}"), "").await?;
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
        let (status, e) = admin_json(gw.admin, "POST", &path, body).await?;
        assert_eq!((status, e["error"].as_str().unwrap_or("")), want, "{path} {body}");
    }
    // An open request can be cancelled (idempotently); it is then never filled.
    let (_, open) = admin_json(
        gw.admin,
        "POST",
        &format!("/matches/{}/backfill", m.match_id),
        r#"{"slots":[1,0]}"#,
    )
    .await?;
    let oid = open["id"].as_str().expect("id");
    for _ in 0..2 {
        let (status, r) = admin_json(gw.admin, "DELETE", &format!("/backfills/{oid}"), "").await?;
        assert_eq!((status, r["state"].as_str()), (200, Some("cancelled")));
    }
    let (status, e) = admin_json(gw.admin, "GET", &format!("/backfills/{:016x}", 9), "").await?;
    assert_eq!((status, e["error"].as_str()), (404, Some("not_found")));
    Ok(())
}

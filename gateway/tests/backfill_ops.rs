//! Backfill operations end to end (its own test binary, so the process's
//! metrics count only what this test does): a backfill request naming the
//! player who left (`leaving`) is filled and the replacement's `MatchFound`
//! lists the match without the leaver; hostile `leaving` lists get
//! `invalid_leaving`; `/metrics` shows the backfill counters (requested,
//! filled, cancelled; fill latency; open gauge) and the deadline counters
//! (tickets timed out, `MatchNotFound` pushes) move.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use outpost_client::{ChannelKind, Client, Event, MatchInfo, PushBody};

async fn push(events: &mut outpost_client::Events, found: bool) -> Option<MatchInfo> {
    let wait = async {
        loop {
            match events.recv().await {
                Some(Event::Push {
                    channel: ChannelKind::Matchmaking,
                    body: PushBody::MatchFound { matched, .. },
                }) if found => return Some(matched),
                Some(Event::Push {
                    channel: ChannelKind::Matchmaking,
                    body: PushBody::MatchNotFound { .. },
                }) if !found => return None,
                Some(_) => continue,
                None => panic!("client closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("a matchmaking push")
}

#[tokio::test]
async fn a_backfill_with_leavers_and_a_deadline_expiry_show_in_the_match_and_the_metrics() -> Result<()> {
    let world = World::new().await?;
    let mut pool = outpost_gateway::config::MatchmakingConfig::default()
        .pool("local")
        .context("default pool")?;
    let mut lonely = pool.queues[0].clone();
    lonely.name = "lonely".into();
    lonely.expansions.truncate(1);
    lonely.deadline_ms = Some(600);
    pool.queues.push(lonely);
    let gw = world.gateway(move |c| c.matchmaking.pool = Some(pool)).await?;

    let before = scrape(gw.admin).await?;
    let duel = [r#"queue="duel""#, r#"region="local""#];
    for (name, labels) in [
        ("outpost_mm_backfills_requested_total", &duel[..]),
        (
            "outpost_mm_backfills_closed_total",
            &[duel[0], duel[1], r#"outcome="filled""#][..],
        ),
        (
            "outpost_mm_tickets_timed_out_total",
            &[r#"queue="lonely""#, r#"reason="deadline""#][..],
        ),
        (
            "outpost_mm_match_not_found_pushed_total",
            &[r#"reason="deadline""#][..],
        ),
    ] {
        assert_eq!(
            sample(&before, name, labels),
            Some(0.0),
            "{name} registered at zero"
        );
    }

    // A duel match; player a leaves it.
    let a = Client::connect(gw.client_config(device())).await?;
    let b = Client::connect(gw.client_config(device())).await?;
    let mut ea = a.events();
    let (ma, mb) = (a.matchmaking().await?, b.matchmaking().await?);
    ma.queue_here("duel").await?;
    mb.queue_here("duel").await?;
    let m = push(&mut ea, true).await.expect("match");
    let path = format!("/matches/{}/backfill", m.match_id);
    let mut slots = [0u32, 0];
    slots[m.team as usize] = 1;
    let leaver = a.player_id();
    let other = b.player_id();

    // Hostile `leaving` lists: documented code, nothing stored.
    let too_many: Vec<String> = (0..201).map(|i| format!("\"{i:032x}\"")).collect();
    for leaving in [
        format!(r#"["{:032x}"]"#, 12345),
        format!(r#"["{leaver}","{leaver}"]"#),
        format!("[{}]", too_many.join(",")),
    ] {
        let body = format!(r#"{{"slots":[{},{}],"leaving":{leaving}}}"#, slots[0], slots[1]);
        let (status, e) = admin_json(gw.admin, "POST", &path, &body).await?;
        assert_eq!(
            (status, e["error"].as_str().unwrap_or("")),
            (400, "invalid_leaving"),
            "{body}"
        );
    }
    let (status, e) = admin_json(gw.admin, "POST", &path, r#"{"slots":[1,0],"leaving":"x"}"#).await?;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_json")), "{e}");

    // A request cancelled, then one naming the leaver, filled by player c.
    let (_, cancelled) = admin_json(gw.admin, "POST", &path, r#"{"slots":[1,0]}"#).await?;
    let cid = cancelled["id"].as_str().context("id")?;
    let (status, _) = admin_json(gw.admin, "DELETE", &format!("/backfills/{cid}"), "").await?;
    assert_eq!(status, 200);
    let body = format!(
        r#"{{"slots":[{},{}],"ttl_ms":30000,"leaving":["{leaver}"]}}"#,
        slots[0], slots[1]
    );
    let (status, req) = admin_json(gw.admin, "POST", &path, &body).await?;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["leaving"], serde_json::json!([leaver.clone()]));
    let c = Client::connect(gw.client_config(device())).await?;
    let mut ec = c.events();
    // (The channel stays open while the push is awaited.)
    let mc = c.matchmaking().await?;
    mc.queue_here("duel").await?;
    let pc = push(&mut ec, true).await.expect("match");
    assert_eq!(pc.match_id, m.match_id);
    let roster: Vec<&String> = pc.teams.iter().flatten().collect();
    assert!(roster.contains(&&c.player_id()), "{roster:?}");
    assert!(roster.contains(&&other), "{roster:?}");
    assert!(
        !roster.contains(&&leaver),
        "the leaver is off the roster: {roster:?}"
    );
    // On reopening the matchmaking channel, a player still in the match is
    // pushed it again (a recent match), the leaver is not.
    let mut eb = b.events();
    drop((ma, mb));
    let (_ma, _mb) = (a.matchmaking().await?, b.matchmaking().await?);
    assert_eq!(
        push(&mut eb, true).await.map(|x| x.match_id),
        Some(m.match_id.clone()),
        "a player still in the match gets it again on reopen"
    );
    let again = tokio::time::timeout(Duration::from_millis(1_000), push(&mut ea, true)).await;
    assert!(again.is_err(), "the leaver was pushed the match again");

    // A lonely ticket reaches its deadline.
    let d = Client::connect(gw.client_config(device())).await?;
    let mut ed = d.events();
    let md = d.matchmaking().await?;
    md.queue_here("lonely").await?;
    assert!(push(&mut ed, false).await.is_none());

    let after = scrape(gw.admin).await?;
    let closed = |outcome: &str| {
        let o = format!(r#"outcome="{outcome}""#);
        sample(
            &after,
            "outpost_mm_backfills_closed_total",
            &[duel[0], duel[1], &o],
        )
    };
    assert_eq!(
        sample(&after, "outpost_mm_backfills_requested_total", &duel),
        Some(2.0),
        "{after}"
    );
    assert_eq!(closed("filled"), Some(1.0), "{after}");
    assert_eq!(closed("cancelled"), Some(1.0), "{after}");
    assert_eq!(closed("expired"), Some(0.0), "{after}");
    assert_eq!(
        sample(&after, "outpost_mm_backfill_fill_seconds_count", &duel),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "outpost_mm_backfills_open", &[]),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "outpost_mm_tickets_timed_out_total",
            &[r#"queue="lonely""#, r#"reason="deadline""#]
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "outpost_mm_match_not_found_pushed_total",
            &[r#"reason="deadline""#]
        ),
        Some(1.0),
        "{after}"
    );
    Ok(())
}

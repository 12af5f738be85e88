//! Frames that arrive in many small pieces while the SDK's loops are busy
//! with other work: the session actor and the channel tasks read their
//! streams inside `select!` loops (no reader tasks, issue 21), so a frame
//! half-read when another branch wins must be continued, not lost.

mod support;

use std::time::Duration;

use anyhow::{bail, Result};
use outpost_client::{ChannelKind, Client, Event, Events, PushBody};
use outpost_schema::{ControlMsg, ErrorCode, GoAway};
use support::{MockGateway, TokenSet};

/// Collects events until `pred` matches one (within 10 s); all of them, in order.
async fn events_until(events: &mut Events, pred: impl Fn(&Event) -> bool) -> Result<Vec<Event>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) => {
                let done = pred(&ev);
                seen.push(ev);
                if done {
                    return Ok(seen);
                }
            }
            Ok(None) => bail!("event stream ended; saw {seen:?}"),
            Err(_) => bail!("timed out; saw {seen:?}"),
        }
    }
}

/// Control frames written one byte at a time, while heartbeats tick every
/// 200 ms and pings from the game go out: each frame is handled whole and in
/// order, and the connection stays up.
#[tokio::test]
async fn control_frames_split_into_single_bytes_arrive_whole_and_in_order() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    gw.state
        .heartbeat_ms
        .store(200, std::sync::atomic::Ordering::SeqCst);
    let client = Client::connect(gw.config("dev-split")).await?;
    let mut events = client.events();

    let msgs = [
        ControlMsg::ResumeTokenRefresh {
            resume_token: "rt-split-first-refresh-of-the-session".into(),
        },
        ControlMsg::ResumeTokenRefresh {
            resume_token: "rt-split-second-refresh-of-the-session".into(),
        },
        ControlMsg::GoAway(GoAway {
            reason: ErrorCode::Draining,
            reconnect_after_ms: 60_000,
            message: "split goaway".into(),
        }),
    ];
    let pinger = async {
        let mut pings = 0;
        for _ in 0..40 {
            client.ping().await?;
            pings += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(pings)
    };
    let started = std::time::Instant::now();
    let (pings, ()) = tokio::join!(pinger, gw.send_all_split(&msgs, Duration::from_millis(1)));
    assert_eq!(pings?, 40, "every ping answered while the frames trickled in");
    let seen = events_until(&mut events, |e| matches!(e, Event::GoAway { .. })).await?;
    assert_eq!(
        seen,
        vec![
            Event::Connected { resumed: false },
            Event::GoAway {
                reconnect_after: Duration::from_secs(60)
            }
        ],
        "no disconnect before the GoAway"
    );
    assert_eq!(
        client.welcome().resume_token,
        "rt-split-second-refresh-of-the-session",
        "both refreshes handled, in order"
    );
    assert!(client.is_connected());
    // The frames took long enough for heartbeats to tick meanwhile.
    assert!(
        started.elapsed() > Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

/// Responses and pushes written one byte at a time while the channel keeps
/// sending other requests (more than the gateway's in-flight limit of 4):
/// every request gets its own answer and the pushes arrive whole.
#[tokio::test]
async fn channel_frames_split_into_single_bytes_arrive_whole() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-split-ch")).await?;
    let mut events = client.events();
    let ch = client.open_channel(ChannelKind::Echo).await?;
    let calls = (0..24u32).map(|i| {
        let ch = ch.clone();
        let payload = if i % 6 == 0 {
            format!("split-{i}").into_bytes()
        } else {
            i.to_le_bytes().to_vec()
        };
        let pushes = if i % 6 == 0 { 2 } else { 0 };
        async move { ch.echo(payload.clone(), pushes).await.map(|p| (payload, p)) }
    });
    for r in futures::future::join_all(calls).await {
        let (sent, got) = r?;
        assert_eq!(got, sent);
    }
    let mut pushes = Vec::new();
    while pushes.len() < 8 {
        let seen = events_until(&mut events, |e| matches!(e, Event::Push { .. })).await?;
        match seen.last() {
            Some(Event::Push {
                channel: ChannelKind::Echo,
                body: PushBody::Echo { payload, sequence },
            }) => pushes.push((String::from_utf8(payload.clone())?, *sequence)),
            other => bail!("unexpected event {other:?}"),
        }
    }
    pushes.sort();
    let mut want: Vec<(String, u32)> = [0, 6, 12, 18]
        .iter()
        .flat_map(|i| [(format!("split-{i}"), 0), (format!("split-{i}"), 1)])
        .collect();
    want.sort();
    assert_eq!(pushes, want);
    assert!(client.is_connected());
    Ok(())
}

//! End-to-end tests of the SDK over real QUIC on loopback against a scripted
//! mock gateway (`support/`): login, ping, channel requests and pushes, gateway
//! fallback, reconnect + resume after network loss, Reject/GoAway delays,
//! Kick, heartbeat loss, protocol errors.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use outpost_client::{
    Channel, ChannelKind, Client, ClientError, Credentials, ErrorCode, Event, Events, PushBody,
};
use outpost_schema::ControlMsg;
use support::{MockGateway, TokenSet};

/// Waits for the first event matching `pred`, returning it and the events skipped.
async fn wait_for(events: &mut Events, pred: impl Fn(&Event) -> bool) -> Result<(Event, Vec<Event>)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return Ok((ev, seen)),
            Ok(Some(ev)) => seen.push(ev),
            Ok(None) => bail!("event stream ended; saw {seen:?}"),
            Err(_) => bail!("timed out; saw {seen:?}"),
        }
    }
}

/// The `(attempt, delay)` of every `Reconnecting` among `events`.
fn reconnect_delays(events: &[Event]) -> Vec<(u32, Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reconnecting { attempt, delay } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn login_ping_echo_and_pushes() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-a")).await?;
    let mut events = client.events();
    assert_eq!(
        wait_for(&mut events, |e| matches!(e, Event::Connected { .. }))
            .await?
            .0,
        Event::Connected { resumed: false }
    );
    assert_eq!(client.player_id(), "player-dev-a");
    let w = client.welcome();
    assert_eq!(w.region, "mock-1");
    assert_eq!(w.gateway, gw.addr);
    assert_eq!(w.max_frame_size, 131_072, "the protocol default");
    assert!(!w.resumed);
    let rtt = client.ping().await?;
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");

    assert_eq!(client.echo(b"hello".to_vec(), 3).await?, b"hello");
    for seq in 0..3 {
        let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Push { .. })).await?;
        assert_eq!(
            ev,
            Event::Push {
                channel: ChannelKind::Echo,
                body: PushBody::Echo {
                    payload: b"hello".to_vec(),
                    sequence: seq
                }
            }
        );
    }

    // Many concurrent requests on one channel: more than the gateway's in-flight
    // limit of 4, all matched to their own response.
    let ch = client.open_channel(ChannelKind::Echo).await?;
    let calls = (0..50u32).map(|i| {
        let ch = ch.clone();
        async move { ch.echo(i.to_le_bytes().to_vec(), 0).await.map(|p| (i, p)) }
    });
    for r in futures::future::join_all(calls).await {
        let (i, p) = r?;
        assert_eq!(p, i.to_le_bytes());
    }

    // Error frames become typed server errors.
    match ch.echo(b"busy".to_vec(), 0).await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert_eq!(e.retry_after, Some(Duration::from_millis(250)));
        }
        other => bail!("expected a server error, got {other:?}"),
    }
    client.close().await;
    assert_eq!(client.ping().await, Err(ClientError::Closed));
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Closed { .. })).await?;
    assert_eq!(
        ev,
        Event::Closed {
            reason: ClientError::Closed
        }
    );
    assert!(events.recv().await.is_none());
    Ok(())
}

#[tokio::test]
async fn unknown_channel_is_a_typed_channel_error() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-b")).await?;
    let ch = client.open_channel(ChannelKind::Telemetry).await?;
    match ch.request(outpost_client::RequestBody::Unknown(9)).await {
        Err(ClientError::ChannelClosed(e)) => assert_eq!(e.code, ErrorCode::UnknownChannel),
        other => bail!("expected ChannelClosed, got {other:?}"),
    }
    assert!(ch.is_closed());
    // the session itself is fine
    client.ping().await?;
    Ok(())
}

#[tokio::test]
async fn rejected_login_is_typed() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    gw.state
        .reject_next
        .lock()
        .unwrap()
        .push_back((ErrorCode::BadCredentials, 0));
    match Client::connect(gw.config("dev-c")).await {
        Err(ClientError::Rejected {
            code, retry_after, ..
        }) => {
            assert_eq!(code, ErrorCode::BadCredentials);
            assert_eq!(retry_after, None);
        }
        other => bail!("expected Rejected, got {other:?}"),
    }
    gw.state
        .reject_next
        .lock()
        .unwrap()
        .push_back((ErrorCode::ServerBusy, 1500));
    match Client::connect(gw.config("dev-c")).await {
        Err(e @ ClientError::Rejected { .. }) => {
            assert!(e.is_retryable());
            assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        }
        other => bail!("expected Rejected, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn falls_back_to_a_gateway_that_accepts() -> Result<()> {
    let tokens = TokenSet::default();
    let draining = MockGateway::start(tokens.clone()).await?;
    let good = MockGateway::start(tokens).await?;
    *draining.state.reject_all.lock().unwrap() = Some((ErrorCode::Draining, 100));
    let mut cfg = good.config("dev-d");
    cfg.gateways = vec![draining.addr, good.addr];
    // both mocks use their own self-signed cert: trust both
    let mut pem = draining.ca_pem.clone();
    pem.extend(&good.ca_pem);
    cfg.trust = outpost_client::Trust::DevCa { pem };
    let client = Client::connect(cfg).await?;
    assert_eq!(client.welcome().gateway, good.addr);
    client.ping().await?;
    Ok(())
}

#[tokio::test]
async fn resumes_after_network_loss_and_channels_keep_working() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-e")).await?;
    let mut events = client.events();
    let ch = client.open_channel(ChannelKind::Echo).await?;
    assert_eq!(ch.echo(b"one".to_vec(), 0).await?, b"one");

    // a request the gateway never answers is in flight when the network dies
    let held = tokio::spawn({
        let ch = ch.clone();
        async move { ch.echo(b"hold".to_vec(), 0).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.debug_kill_connection();

    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await?;
    assert!(matches!(
        ev,
        Event::Disconnected {
            reason: ClientError::ConnectionLost(_)
        }
    ));
    let (ev, skipped) = wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(ev, Event::Connected { resumed: true });
    assert!(skipped
        .iter()
        .any(|e| matches!(e, Event::Reconnecting { attempt: 1, .. })));
    assert!(client.welcome().resumed);

    // the in-flight request failed with a retryable error, it was not re-sent
    let held = held.await?;
    assert!(matches!(held, Err(ClientError::ConnectionLost(_))), "{held:?}");
    assert!(held.unwrap_err().is_retryable());

    // the same channel handle works on the new connection, pushes included
    assert_eq!(ch.echo(b"two".to_vec(), 1).await?, b"two");
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Push { .. })).await?;
    assert!(matches!(
        ev,
        Event::Push {
            channel: ChannelKind::Echo,
            ..
        }
    ));

    // the second Hello presented the resume token and the session token
    let hellos = gw.hellos();
    assert_eq!(hellos.len(), 2);
    assert!(hellos[0].resume_token.is_none());
    assert!(hellos[1].resume_token.is_some());
    assert_eq!(
        hellos[1].credentials,
        Some(Credentials::Token("session-player-dev-e".into()))
    );
    Ok(())
}

/// PROTOCOL.md 3.4: the SDK asks for resume-token refreshes, keeps the newest
/// token (an empty one is ignored), and presents it on reconnect.
#[tokio::test]
async fn keeps_the_newest_refreshed_resume_token_and_resumes_with_it() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-refresh")).await?;
    let mut events = client.events();
    let welcome_token = client.welcome().resume_token;
    assert!(gw.hellos()[0].accepts_resume_refresh);

    for token in ["rt-refreshed-1", "rt-refreshed-2", ""] {
        gw.send_all(ControlMsg::ResumeTokenRefresh {
            resume_token: token.into(),
        })
        .await;
    }
    // The Pong comes after the refreshes on the same stream: they were handled.
    client.ping().await?;
    assert_ne!(client.welcome().resume_token, welcome_token);
    assert_eq!(client.welcome().resume_token, "rt-refreshed-2");

    client.debug_kill_connection();
    wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await?;
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    let hellos = gw.hellos();
    assert_eq!(hellos.len(), 2);
    assert_eq!(hellos[1].resume_token.as_deref(), Some("rt-refreshed-2"));
    Ok(())
}

#[tokio::test]
async fn reconnect_honours_reject_retry_after() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-f")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    gw.state
        .reject_next
        .lock()
        .unwrap()
        .push_back((ErrorCode::ServerBusy, 600));
    let killed = Instant::now();
    client.debug_kill_connection();
    let (_, skipped) = wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert!(
        killed.elapsed() >= Duration::from_millis(600),
        "{:?}",
        killed.elapsed()
    );
    let delays = reconnect_delays(&skipped);
    assert_eq!(delays.len(), 2, "{skipped:?}");
    assert!(delays[1].1 >= Duration::from_millis(600), "{delays:?}");
    // a request issued while reconnecting waits for the new connection
    client.ping().await?;
    Ok(())
}

/// A gateway that refuses the connection (QUIC CONNECTION_REFUSED, its
/// receive path overloaded) makes `connect` fail with `ServerBusy` and a
/// `retry_after` of 1-3 s, unless another gateway of the list lets it in.
#[tokio::test]
async fn a_refused_connect_is_server_busy_for_at_least_a_second() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    gw.state.refuse_next.store(1, Ordering::SeqCst);
    let err = Client::connect(gw.config("dev-r")).await.unwrap_err();
    assert_eq!(gw.state.refused.load(Ordering::SeqCst), 1);
    let ClientError::Rejected {
        code, retry_after, ..
    } = &err
    else {
        bail!("expected Rejected, got {err:?}");
    };
    assert_eq!(*code, ErrorCode::ServerBusy);
    let wait = retry_after.expect("a suggested delay");
    assert!(
        wait >= Duration::from_secs(1) && wait < Duration::from_secs(3),
        "{wait:?}"
    );
    assert!(err.is_retryable());

    let other = MockGateway::start(TokenSet::default()).await?;
    gw.state.refuse_next.store(1, Ordering::SeqCst);
    let mut config = gw.config("dev-r");
    config.gateways.push(other.addr);
    // Each mock has its own self-signed certificate: trust both.
    let mut pem = gw.ca_pem.clone();
    pem.extend(&other.ca_pem);
    config.trust = outpost_client::Trust::DevCa { pem };
    let client = Client::connect(config).await?;
    assert_eq!(client.welcome().gateway, other.addr);
    assert_eq!(gw.state.refused.load(Ordering::SeqCst), 2);
    Ok(())
}

/// After a refused connection the reconnect loop waits at least a second
/// (with a 50 ms backoff it would otherwise be back at once).
#[tokio::test]
async fn reconnect_after_a_refused_connection_waits_at_least_a_second() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-s")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    gw.state.refuse_next.store(1, Ordering::SeqCst);
    let killed = Instant::now();
    client.debug_kill_connection();
    let (_, skipped) = wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(gw.state.refused.load(Ordering::SeqCst), 1);
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    let delays = reconnect_delays(&skipped);
    assert_eq!(delays.len(), 2, "{skipped:?}");
    assert!(delays[0].1 <= Duration::from_millis(50), "{delays:?}");
    assert!(
        delays[1].1 >= Duration::from_secs(1) && delays[1].1 < Duration::from_secs(3),
        "{delays:?}"
    );
    client.ping().await?;
    Ok(())
}

#[tokio::test]
async fn goaway_moves_to_another_gateway_with_resume() -> Result<()> {
    let tokens = TokenSet::default();
    let a = MockGateway::start(tokens.clone()).await?;
    let b = MockGateway::start(tokens).await?;
    let mut cfg = a.config("dev-g");
    cfg.gateways = vec![a.addr, b.addr];
    let mut pem = a.ca_pem.clone();
    pem.extend(&b.ca_pem);
    cfg.trust = outpost_client::Trust::DevCa { pem };
    // make sure the session starts on a
    *b.state.reject_all.lock().unwrap() = Some((ErrorCode::Draining, 100));
    let client = Client::connect(cfg).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    let ch = client.open_channel(ChannelKind::Echo).await?;
    assert_eq!(client.welcome().gateway, a.addr);

    // a drains: it refuses new logins, b accepts again.
    *b.state.reject_all.lock().unwrap() = None;
    *a.state.reject_all.lock().unwrap() = Some((ErrorCode::Draining, 5000));
    let sent = Instant::now();
    a.goaway_all(300).await;
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::GoAway { .. })).await?;
    assert_eq!(
        ev,
        Event::GoAway {
            reconnect_after: Duration::from_millis(300)
        }
    );
    // requests keep working on a until the delay elapses
    assert_eq!(ch.echo(b"still".to_vec(), 0).await?, b"still");
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(ev, Event::Connected { resumed: true });
    assert_eq!(client.welcome().gateway, b.addr);
    // the channel followed the session to b
    assert_eq!(ch.echo(b"moved".to_vec(), 0).await?, b"moved");
    assert!(b.hellos().iter().any(|h| h.resume_token.is_some()));
    Ok(())
}

/// A Welcome without a session token leaves the previous one in use: the
/// logins after it still present it (not the configured device credentials).
#[tokio::test]
async fn a_welcome_without_a_session_token_keeps_the_previous_one() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-keep")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(client.welcome().session_token, "session-player-dev-keep");
    gw.state.no_session_token.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        client.debug_kill_connection();
        wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await?;
        wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
        assert_eq!(client.welcome().session_token, "", "what the last Welcome said");
    }
    let hellos = gw.hellos();
    assert_eq!(hellos.len(), 3);
    for h in &hellos[1..] {
        assert_eq!(
            h.credentials,
            Some(Credentials::Token("session-player-dev-keep".into()))
        );
    }
    Ok(())
}

/// A GoAway with a request in flight that is never answered: the session
/// leaves one request timeout after the GoAway's delay (not before), and
/// with nothing in flight it leaves right at the delay.
#[tokio::test]
async fn goaway_waits_for_requests_in_flight_at_most_a_request_timeout() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let mut cfg = gw.config("dev-move");
    cfg.request_timeout = Duration::from_millis(800);
    let client = Client::connect(cfg).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    let ch = client.open_channel(ChannelKind::Echo).await?;
    let held = tokio::spawn({
        let ch = ch.clone();
        async move { ch.echo(b"hold".to_vec(), 0).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let sent = Instant::now();
    gw.goaway_all(100).await;
    wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await?;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(850) && waited < Duration::from_secs(3),
        "left {waited:?} after the GoAway (delay 100 ms + request timeout 800 ms)"
    );
    assert!(matches!(held.await?, Err(ClientError::Timeout)));
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(ev, Event::Connected { resumed: true });

    // Nothing in flight now: the move follows the delay at once.
    assert_eq!(ch.echo(b"moved".to_vec(), 0).await?, b"moved");
    let sent = Instant::now();
    gw.goaway_all(100).await;
    wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await?;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(700),
        "left {waited:?} after the GoAway (delay 100 ms, nothing in flight)"
    );
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(ch.echo(b"again".to_vec(), 0).await?, b"again");
    Ok(())
}

#[tokio::test]
async fn replaced_by_new_login_ends_the_session_without_reconnect() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-h")).await?;
    let mut events = client.events();
    let ch = client.open_channel(ChannelKind::Echo).await?;
    gw.kick_all(ErrorCode::ReplacedByNewLogin).await;
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Kicked { .. })).await?;
    assert!(matches!(
        ev,
        Event::Kicked {
            code: ErrorCode::ReplacedByNewLogin,
            ..
        }
    ));
    let (ev, skipped) = wait_for(&mut events, |e| matches!(e, Event::Closed { .. })).await?;
    assert!(matches!(
        ev,
        Event::Closed {
            reason: ClientError::Kicked {
                code: ErrorCode::ReplacedByNewLogin,
                ..
            }
        }
    ));
    assert!(!skipped.iter().any(|e| matches!(e, Event::Reconnecting { .. })));
    assert!(matches!(
        ch.echo(b"x".to_vec(), 0).await,
        Err(ClientError::Kicked { .. })
    ));
    assert!(matches!(client.ping().await, Err(ClientError::Kicked { .. })));
    assert_eq!(gw.hellos().len(), 1);
    Ok(())
}

#[tokio::test]
async fn other_kicks_reconnect_with_a_full_login() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-i")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    gw.kick_all(ErrorCode::SlowConsumer).await;
    wait_for(&mut events, |e| matches!(e, Event::Kicked { .. })).await?;
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(ev, Event::Connected { resumed: false });
    // PROTOCOL.md 3.4: no resume token after a Kick
    let hellos = gw.hellos();
    assert!(hellos.last().unwrap().resume_token.is_none());
    Ok(())
}

#[tokio::test]
async fn missing_pongs_mean_a_dead_connection() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    gw.state.heartbeat_ms.store(150, Ordering::SeqCst);
    let client = Client::connect(gw.config("dev-j")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    gw.state.silent_pongs.store(true, Ordering::SeqCst);
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await?;
    match ev {
        Event::Disconnected {
            reason: ClientError::ConnectionLost(m),
        } => assert!(m.contains("Pong"), "{m}"),
        other => bail!("unexpected {other:?}"),
    }
    gw.state.silent_pongs.store(false, Ordering::SeqCst);
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(ev, Event::Connected { resumed: true });
    Ok(())
}

/// A pause of the client's own process (here the whole runtime blocks, as a
/// loading hitch on the game's thread or a suspended app would) longer than
/// two heartbeat intervals is not the gateway's silence: the connection,
/// which QUIC keeps for 30 s, stays up and is not replaced by a reconnect.
#[tokio::test]
async fn a_paused_client_keeps_its_connection() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    gw.state.heartbeat_ms.store(150, Ordering::SeqCst);
    let client = Client::connect(gw.config("dev-pause")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    client.ping().await?;
    for _ in 0..3 {
        // Blocks this test's single-threaded runtime: nothing runs, neither
        // the SDK nor the mock gateway, for almost five heartbeat intervals.
        std::thread::sleep(Duration::from_millis(700));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rtt = client.ping().await?;
        assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    }
    let mut seen = Vec::new();
    while let Some(ev) = events.try_recv() {
        seen.push(ev);
    }
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. } | Event::Connected { .. })),
        "the connection was replaced: {seen:?}"
    );
    assert!(client.is_connected());
    Ok(())
}

/// Echoes `payload`, which the mock gateway answers with a frame the SDK must
/// refuse: the call fails with a `BadFrame` protocol error, the client resumes
/// its session, and the same channel echoes again.
async fn bad_frame_then_resume(ch: &Channel, events: &mut Events, payload: &[u8]) -> Result<()> {
    match ch.echo(payload.to_vec(), 0).await {
        Err(ClientError::Protocol { code, .. }) => assert_eq!(code, ErrorCode::BadFrame),
        other => bail!("expected a protocol error, got {other:?}"),
    }
    let (ev, _) = wait_for(events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(ev, Event::Connected { resumed: true });
    assert_eq!(ch.echo(b"ok".to_vec(), 0).await?, b"ok");
    Ok(())
}

#[tokio::test]
async fn a_garbage_frame_is_a_protocol_error_then_the_client_recovers() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-k")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    let ch = client.open_channel(ChannelKind::Echo).await?;
    bad_frame_then_resume(&ch, &mut events, b"garbage").await
}

/// Hostile `MatchNotFound` pushes (PROTOCOL.md §4.4): one with a reason code
/// this SDK does not know and no ticket id is delivered as it is
/// (`reason` keeps the raw code, which a game shows like `Unknown`;
/// `ticket_id` reads 0, "no ticket"); one cut short is a `BadFrame` protocol
/// error, after which the client resumes and the channel works again. Neither
/// panics.
#[tokio::test]
async fn malformed_match_not_found_pushes_are_delivered_or_refused_without_panic() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let client = Client::connect(gw.config("dev-k")).await?;
    let mut events = client.events();
    wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    let ch = client.open_channel(ChannelKind::Echo).await?;
    assert_eq!(ch.echo(b"mnf-unknown".to_vec(), 0).await?, b"mnf-unknown");
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Push { .. })).await?;
    match ev {
        Event::Push {
            body: PushBody::MatchNotFound { ticket_id, reason },
            ..
        } => {
            assert_eq!(ticket_id, 0, "an absent ticket id reads 0");
            assert_eq!(reason, outpost_schema::NoMatchReason(200), "the raw code is kept");
            assert!(reason.variant_name().is_none(), "not a reason this SDK knows");
        }
        other => bail!("expected MatchNotFound, got {other:?}"),
    }
    bad_frame_then_resume(&ch, &mut events, b"mnf-truncated").await
}

#[tokio::test]
async fn no_auto_reconnect_means_the_loss_is_final() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let mut cfg = gw.config("dev-l");
    cfg.auto_reconnect = false;
    let client = Client::connect(cfg).await?;
    let mut events = client.events();
    client.debug_kill_connection();
    let (ev, _) = wait_for(&mut events, |e| matches!(e, Event::Closed { .. })).await?;
    assert!(matches!(
        ev,
        Event::Closed {
            reason: ClientError::ConnectionLost(_)
        }
    ));
    assert!(client.ping().await.is_err());
    assert_eq!(gw.hellos().len(), 1);
    Ok(())
}

#[test]
fn blocking_facade_works_without_a_runtime() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let gw = rt.block_on(MockGateway::start(TokenSet::default()))?;
    let cfg = gw.config("dev-m");
    let client = std::thread::spawn(move || -> Result<()> {
        let client = outpost_client::blocking::Client::connect(cfg)?;
        let mut events = client.events();
        client.ping()?;
        let ch = client.open_channel(ChannelKind::Echo)?;
        assert_eq!(ch.echo(b"sync".to_vec(), 1)?, b"sync");
        let mut got_push = false;
        while let Some(ev) = events.recv_timeout(Duration::from_secs(5)) {
            if matches!(ev, Event::Push { .. }) {
                got_push = true;
                break;
            }
        }
        assert!(got_push);
        client.close();
        Ok(())
    });
    client.join().expect("blocking client thread")?;
    drop(gw);
    Ok(())
}

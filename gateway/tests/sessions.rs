//! Sessions end to end: real gateways over QUIC on loopback, the real SDK, the
//! real embedded store. No transport mocks.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use outpost_backend::identity::Identity;
use outpost_client::{ChannelKind, Client, ClientError, Credentials, Event};
use outpost_schema::{ErrorCode, PushBody};

async fn next_event(events: &mut outpost_client::Events, what: &str, f: impl Fn(&Event) -> bool) -> Event {
    let wait = async {
        loop {
            match events.recv().await {
                Some(ev) if f(&ev) => return ev,
                Some(_) => continue,
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn device_login_ping_echo_and_pushes() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let creds = device();
    let client = Client::connect(gw.client_config(creds.clone())).await?;
    let mut events = client.events();
    let welcome = client.welcome();
    assert_eq!(
        welcome.player_id.len(),
        32,
        "player ids are 16 random bytes in hex"
    );
    assert!(!welcome.resumed);
    assert_eq!(welcome.region, "local");
    assert!(!welcome.session_token.is_empty());

    let rtt = client.ping().await?;
    assert!(rtt < Duration::from_secs(2), "loopback ping took {rtt:?}");

    let echo = client.open_channel(ChannelKind::Echo).await?;
    assert_eq!(echo.echo(b"hello".to_vec(), 3).await?, b"hello");
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        if let Event::Push {
            channel,
            body: PushBody::Echo { payload, sequence },
        } = next_event(&mut events, "echo pushes", |e| matches!(e, Event::Push { .. })).await
        {
            assert_eq!(channel, ChannelKind::Echo);
            assert_eq!(payload, b"hello");
            seqs.push(sequence);
        }
    }
    assert_eq!(seqs, vec![0, 1, 2], "pushes arrive in order on their channel");

    // The same device logs in again later and gets the same player.
    client.close().await;
    let again = Client::connect(gw.client_config(creds)).await?;
    assert_eq!(again.player_id(), welcome.player_id);
    again.close().await;
    Ok(())
}

#[tokio::test]
async fn wrong_device_secret_is_bad_credentials() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let creds = device();
    Client::connect(gw.client_config(creds.clone()))
        .await?
        .close()
        .await;
    let Credentials::Device { device_id, .. } = creds else {
        unreachable!()
    };
    let wrong = Credentials::Device {
        device_id,
        secret: "x".repeat(24),
    };
    match Client::connect(gw.client_config(wrong)).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, ErrorCode::BadCredentials),
        other => panic!("expected BadCredentials, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn tokens_bad_forged_expired_and_unknown_key_get_distinct_codes() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let good = client.welcome().session_token;
    let player = client.player_id();
    client.close().await;

    // The session token from Welcome logs in (verified locally, no device secret).
    let c = Client::connect(gw.client_config(Credentials::Token(good.clone()))).await?;
    assert_eq!(c.player_id(), player);
    c.close().await;

    let identity = Identity::open(world.store.clone()).await?;
    let expired = identity
        .issue_token_at(&player, Duration::from_secs(60), 1_000_000)
        .await?
        .token;
    // Same claims, signature bytes altered.
    let mut forged = good.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged)?;
    // A token from another region's identity: a key this gateway never saw.
    let other = World::new().await?;
    let other_identity = Identity::open(other.store.clone()).await?;
    let foreign_player = other_identity
        .login_device("foreign-device", &[7u8; 20], "elsewhere")
        .await?;
    let unknown = other_identity
        .issue_token(&foreign_player.account.player, Duration::from_secs(60))
        .await?
        .token;

    for (token, want) in [
        ("not a token".to_owned(), ErrorCode::TokenMalformed),
        (forged, ErrorCode::TokenBadSignature),
        (expired, ErrorCode::TokenExpired),
        (unknown, ErrorCode::TokenUnknownKey),
    ] {
        match Client::connect(gw.client_config(Credentials::Token(token))).await {
            Err(ClientError::Rejected { code, .. }) => assert_eq!(code, want),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_second_login_replaces_the_first_which_is_kicked() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let creds = device();
    let first = Client::connect(gw.client_config(creds.clone())).await?;
    let mut events = first.events();
    let second = Client::connect(gw.client_config(creds)).await?;
    assert_eq!(first.player_id(), second.player_id());
    let ev = next_event(&mut events, "Kick", |e| matches!(e, Event::Kicked { .. })).await;
    assert!(
        matches!(
            ev,
            Event::Kicked {
                code: ErrorCode::ReplacedByNewLogin,
                ..
            }
        ),
        "{ev:?}"
    );
    // The replaced client does not fight back: it stays closed, the second works.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_connected());
    second.ping().await?;
    assert!(eventually(Duration::from_secs(5), || gw.handle.sessions_live() == 1).await);
    Ok(())
}

#[tokio::test]
async fn resume_after_the_connection_is_killed() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let mut events = client.events();
    let echo = client.open_channel(ChannelKind::Echo).await?;
    echo.echo(b"before".to_vec(), 0).await?;
    let player = client.player_id();

    next_event(&mut events, "first Connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    client.debug_kill_connection();
    next_event(&mut events, "Disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let ev = next_event(&mut events, "reconnect", |e| matches!(e, Event::Connected { .. })).await;
    assert_eq!(ev, Event::Connected { resumed: true });
    assert_eq!(client.player_id(), player);
    assert!(client.welcome().resumed);
    // The channel handle survives: the SDK re-opened it on the new connection.
    assert_eq!(echo.echo(b"after".to_vec(), 0).await?, b"after");
    Ok(())
}

/// Issue #2: a session older than the resume window still resumes, because the
/// gateway sends a fresh resume token every half window (ResumeTokenRefresh)
/// and the SDK keeps the newest. Without the refresh, Welcome's token has long
/// expired when the connection dies and the SDK falls back to a full login
/// (`resumed: false`).
#[tokio::test]
async fn a_session_older_than_the_resume_window_still_resumes() -> Result<()> {
    const WINDOW_SECS: u64 = 4;
    let world = World::new().await?;
    let gw = world
        .gateway(|c| c.session.resume_window_secs = WINDOW_SECS)
        .await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let mut events = client.events();
    let echo = client.open_channel(ChannelKind::Echo).await?;
    let player = client.player_id();
    let welcome_token = client.welcome().resume_token;
    next_event(&mut events, "first Connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;

    // Connected for over three resume windows: Welcome's token expired long ago
    // (tokens expire WINDOW_SECS after they were issued, rounded down to seconds).
    tokio::time::sleep(Duration::from_secs(3 * WINDOW_SECS + 1)).await;
    assert_ne!(
        client.welcome().resume_token,
        welcome_token,
        "the SDK holds a refreshed resume token"
    );
    client.debug_kill_connection();
    next_event(&mut events, "Disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let ev = next_event(&mut events, "reconnect", |e| matches!(e, Event::Connected { .. })).await;
    assert_eq!(
        ev,
        Event::Connected { resumed: true },
        "resumed, not a fresh login"
    );
    assert!(client.welcome().resumed);
    assert_eq!(client.player_id(), player);
    assert_eq!(echo.echo(b"after".to_vec(), 0).await?, b"after");
    Ok(())
}

/// ResumeTokenRefresh at the protocol level: only a client whose Hello set
/// `accepts_resume_refresh` gets it (older clients would take an unknown control
/// message for a protocol error); the refreshed token resumes after Welcome's
/// own token expired.
#[tokio::test]
async fn resume_token_refresh_goes_only_to_clients_that_ask_for_it() -> Result<()> {
    use outpost_schema::ControlMsg;

    let world = World::new().await?;
    // Refresh every second.
    let gw = world.gateway(|c| c.session.resume_window_secs = 2).await?;

    // A client that asks for refreshes gets them, every half window.
    let conn = raw_connect(&gw).await?;
    let (_send, mut recv, welcome) = raw_hello(&conn, Some(wire_device()), None, true).await?;
    let ControlMsg::Welcome(welcome) = welcome else {
        anyhow::bail!("expected Welcome, got {welcome:?}");
    };
    let mut refreshed = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3_300) {
        let frame =
            tokio::time::timeout(Duration::from_secs(3), read_raw_frame(&mut recv, 1 << 16)).await??;
        match ControlMsg::decode(&frame)? {
            ControlMsg::ResumeTokenRefresh { resume_token } => refreshed.push(resume_token),
            other => anyhow::bail!("unexpected control frame {other:?}"),
        }
    }
    assert!(
        (2..=4).contains(&refreshed.len()),
        "one refresh per second, got {}",
        refreshed.len()
    );
    let newest = refreshed.pop().unwrap();

    // Welcome's token (issued over 3 s ago, valid 2 s) is expired; the newest
    // refreshed one resumes the session, without credentials.
    let again = raw_connect(&gw).await?;
    let (_, _, answer) = raw_hello(&again, None, Some(welcome.resume_token.clone()), true).await?;
    assert!(
        matches!(&answer, ControlMsg::Reject(r) if r.reason == ErrorCode::ResumeRejected),
        "{answer:?}"
    );
    let again = raw_connect(&gw).await?;
    let (_s, _r, answer) = raw_hello(&again, None, Some(newest), true).await?;
    match answer {
        ControlMsg::Welcome(w) => {
            assert!(w.resumed);
            assert_eq!(w.player_id, welcome.player_id);
        }
        other => anyhow::bail!("expected a resumed Welcome, got {other:?}"),
    }

    // A client that did not ask (every client before the message existed) never
    // gets one: after three refresh intervals its next frame is the Pong.
    let old = raw_connect(&gw).await?;
    let (mut send, mut recv, welcome) = raw_hello(&old, Some(wire_device()), None, false).await?;
    assert!(matches!(welcome, ControlMsg::Welcome(_)), "{welcome:?}");
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    send.write_all(&ControlMsg::Ping { nonce: 7 }.encode()).await?;
    let frame = tokio::time::timeout(Duration::from_secs(3), read_raw_frame(&mut recv, 1 << 16)).await??;
    assert_eq!(ControlMsg::decode(&frame)?, ControlMsg::Pong { nonce: 7 });
    Ok(())
}

#[tokio::test]
async fn drain_moves_clients_to_another_gateway_with_resume() -> Result<()> {
    let world = World::new().await?;
    let a = world
        .gateway(|c| {
            c.drain.window_ms = 500;
            c.drain.deadline_ms = 10_000;
        })
        .await?;
    // B's port is reserved now and B starts after the clients logged in, so they
    // all land on A (the only gateway answering) but know B's address.
    let b_addr = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let mut on_a = Vec::new();
    for _ in 0..3 {
        let c = Client::connect(client_config(vec![a.addr, b_addr], &a.ca_pem, device())).await?;
        assert_eq!(c.welcome().gateway, a.addr);
        let mut events = c.events();
        next_event(&mut events, "first Connected", |e| {
            matches!(e, Event::Connected { .. })
        })
        .await;
        on_a.push((events, c));
    }
    let b = world.gateway(|c| c.listen = b_addr).await?;
    let players: Vec<_> = on_a.iter().map(|(_, c)| c.player_id()).collect();

    let admin = a.admin;
    let drained = tokio::task::spawn_blocking(move || http_post(admin, "/drain")).await??;
    assert!(drained.starts_with("HTTP/1.1 202"), "{drained}");
    for (events, client) in &mut on_a {
        next_event(events, "GoAway", |e| matches!(e, Event::GoAway { .. })).await;
        let ev = next_event(events, "reconnect", |e| matches!(e, Event::Connected { .. })).await;
        assert_eq!(ev, Event::Connected { resumed: true });
        assert_eq!(client.welcome().gateway, b.addr, "resumed on the other gateway");
        client.ping().await?;
    }
    for ((_, c), p) in on_a.iter().zip(&players) {
        assert_eq!(&c.player_id(), p, "same player after the move");
    }
    // A empties and stops well before its deadline.
    let running = { a }.running.take().unwrap();
    tokio::time::timeout(Duration::from_secs(8), running.wait()).await?;
    Ok(())
}

#[tokio::test]
async fn above_capacity_logins_get_server_busy_with_jittered_retry_after() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.limits.max_sessions = 2;
            c.admission.busy_retry_after_ms = 1_000;
            c.admission.busy_retry_jitter_ms = 2_000;
        })
        .await?;
    let _a = Client::connect(gw.client_config(device())).await?;
    let _b = Client::connect(gw.client_config(device())).await?;
    let mut retry_afters = Vec::new();
    for _ in 0..5 {
        match Client::connect(gw.client_config(device())).await {
            Err(ClientError::Rejected {
                code: ErrorCode::ServerBusy,
                retry_after: Some(r),
                ..
            }) => {
                assert!((1_000..=3_000).contains(&r.as_millis()), "{r:?}");
                retry_afters.push(r);
            }
            other => panic!("expected ServerBusy, got {other:?}"),
        }
    }
    retry_afters.dedup();
    assert!(
        retry_afters.len() > 1,
        "retry_after must be jittered, got {retry_afters:?}"
    );
    Ok(())
}

#[tokio::test]
async fn admin_http_serves_health_readiness_and_metrics() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let _c = Client::connect(gw.client_config(device())).await?;
    let admin = gw.admin;
    let (health, ready, metrics) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            http_get(admin, "/healthz")?,
            http_get(admin, "/readyz")?,
            http_get(admin, "/metrics")?,
        ))
    })
    .await??;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    // Registered at zero at startup; the login above counted.
    let welcomed = metrics.lines().find_map(|l| {
        l.strip_prefix("outpost_logins_total{result=\"welcome\"} ")?
            .parse::<u64>()
            .ok()
    });
    assert!(welcomed.is_some_and(|n| n >= 1), "{metrics}");
    assert!(metrics.contains("outpost_sessions_live"), "{metrics}");
    Ok(())
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String> {
    http(addr, "GET", path)
}

fn http_post(addr: std::net::SocketAddr, path: &str) -> Result<String> {
    http(addr, "POST", path)
}

#[tokio::test]
async fn logins_work_with_quic_retry_forced_on() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| c.admission.quic_retry = outpost_gateway::config::QuicRetry::On)
        .await?;
    let client = Client::connect(gw.client_config(device())).await?;
    client.ping().await?;
    let admin = gw.admin;
    let metrics = tokio::task::spawn_blocking(move || http(admin, "GET", "/metrics")).await??;
    assert!(
        metrics.contains("outpost_quic_retries_total"),
        "a Retry was sent: {metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_login_on_another_gateway_kicks_the_first_session() -> Result<()> {
    let world = World::new().await?;
    let a = world.gateway(|_| {}).await?;
    let b = world.gateway(|_| {}).await?;
    let creds = device();
    let first = Client::connect(a.client_config(creds.clone())).await?;
    let mut events = first.events();
    // Let the first session's presence claim land before the second login.
    assert!(eventually(Duration::from_secs(5), || a.handle.sessions_live() == 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = Client::connect(b.client_config(creds)).await?;
    let ev = next_event(&mut events, "Kick", |e| matches!(e, Event::Kicked { .. })).await;
    match ev {
        Event::Kicked { code, message } => {
            assert_eq!(code, ErrorCode::ReplacedByNewLogin);
            assert!(
                message.contains(&b.addr.to_string()),
                "names the other gateway: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(eventually(Duration::from_secs(5), || a.handle.sessions_live() == 0).await);
    second.ping().await?;
    assert_eq!(b.handle.sessions_live(), 1);
    Ok(())
}

//! Bad input over real QUIC: every frame from the network is untrusted. Each case
//! must get its documented code, never a panic, and never unbounded memory.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::*;
use outpost_schema::{
    ChannelKind, ChannelMsg, ControlMsg, ErrorCode, ErrorFrame, Hello, Request, RequestBody, PROTOCOL_VERSION,
};

fn app_close_code(e: &quinn::ConnectionError) -> Option<u16> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => u16::try_from(c.error_code.into_inner()).ok(),
        _ => None,
    }
}

async fn expect_channel_error(recv: &mut quinn::RecvStream) -> Result<ErrorFrame> {
    let frame = tokio::time::timeout(Duration::from_secs(5), read_raw_frame(recv, 1 << 16)).await??;
    match ChannelMsg::decode(&frame)? {
        ChannelMsg::Error(e) => Ok(e),
        other => bail!("expected Error, got {other:?}"),
    }
}

async fn ping(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, nonce: u64) -> Result<()> {
    send.write_all(&ControlMsg::Ping { nonce }.encode()).await?;
    let frame = tokio::time::timeout(Duration::from_secs(5), read_raw_frame(recv, 1 << 16)).await??;
    assert_eq!(ControlMsg::decode(&frame)?, ControlMsg::Pong { nonce });
    Ok(())
}

#[tokio::test]
async fn wrong_alpn_is_refused_in_the_handshake() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let ep = raw_endpoint(&gw.ca_pem, b"outpost/0")?;
    let err = ep
        .connect(gw.addr, "localhost")?
        .await
        .expect_err("handshake must fail");
    // TLS alert no_application_protocol (120) is QUIC crypto error 0x178.
    match &err {
        quinn::ConnectionError::ConnectionClosed(c) => assert_eq!(u64::from(c.error_code), 0x178, "{err}"),
        other => panic!("expected a TLS alert, got {other}"),
    }
    Ok(())
}

#[tokio::test]
async fn garbage_or_oversized_hello_is_rejected_with_its_code() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    // Garbage of a plausible length: fails verification -> Reject { BadFrame }.
    let conn = raw_connect(&gw).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut junk = 64u32.to_le_bytes().to_vec();
    junk.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    send.write_all(&junk).await?;
    let reject = ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)?;
    assert!(
        matches!(reject, ControlMsg::Reject(ref r) if r.reason == ErrorCode::BadFrame),
        "{reject:?}"
    );
    assert_eq!(app_close_code(&conn.closed().await), Some(ErrorCode::BadFrame.0));

    // A length over the 16 KiB handshake limit -> FrameTooLarge, body never read.
    let conn = raw_connect(&gw).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&(10u32 << 20).to_le_bytes()).await?;
    let reject = ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)?;
    assert!(
        matches!(reject, ControlMsg::Reject(ref r) if r.reason == ErrorCode::FrameTooLarge),
        "{reject:?}"
    );

    // A valid frame of the wrong kind first -> UnexpectedFrame.
    let conn = raw_connect(&gw).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ControlMsg::Ping { nonce: 1 }.encode()).await?;
    let reject = ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)?;
    assert!(
        matches!(reject, ControlMsg::Reject(ref r) if r.reason == ErrorCode::UnexpectedFrame),
        "{reject:?}"
    );

    // An unsupported protocol version, and no credentials at all.
    for (hello, want) in [
        (
            Hello {
                protocol_version: 99,
                credentials: Some(device()),
                ..Default::default()
            },
            ErrorCode::UnsupportedProtocolVersion,
        ),
        (
            Hello {
                protocol_version: PROTOCOL_VERSION,
                ..Default::default()
            },
            ErrorCode::MissingCredentials,
        ),
    ] {
        let conn = raw_connect(&gw).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&ControlMsg::Hello(hello).encode()).await?;
        let reject = ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)?;
        assert!(
            matches!(reject, ControlMsg::Reject(ref r) if r.reason == want),
            "{reject:?}"
        );
    }
    // The gateway is still fine.
    let conn = raw_connect(&gw).await?;
    raw_login(&conn, device()).await?;
    Ok(())
}

#[tokio::test]
async fn hello_timeout_closes_a_silent_connection() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.session.hello_timeout_ms = 300).await?;
    let conn = raw_connect(&gw).await?;
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await?;
    assert_eq!(app_close_code(&closed), Some(ErrorCode::HelloTimeout.0));
    Ok(())
}

#[tokio::test]
async fn oversized_and_unverifiable_channel_frames_get_errors_and_the_session_lives() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.limits.max_frame_size = 8192).await?;
    let conn = raw_connect(&gw).await?;
    let (mut csend, mut crecv, welcome) = raw_login(&conn, device()).await?;
    assert_eq!(welcome.max_frame_size, 8192);

    // Oversized: a length prefix over the negotiated maximum.
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    send.write_all(&(8193u32).to_le_bytes()).await?;
    let e = expect_channel_error(&mut recv).await?;
    assert_eq!((e.request_id, e.code), (0, ErrorCode::FrameTooLarge));

    // Fails verification: right length, wrong bytes.
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    let mut junk = 32u32.to_le_bytes().to_vec();
    junk.extend(std::iter::repeat_n(0xEEu8, 32));
    send.write_all(&junk).await?;
    let e = expect_channel_error(&mut recv).await?;
    assert_eq!((e.request_id, e.code), (0, ErrorCode::BadFrame));

    // A channel the gateway does not serve, and a first frame that is not OpenChannel.
    let (mut send, mut recv) = conn.open_bi().await?;
    // (a kind number from a newer client that this gateway does not know)
    send.write_all(&ChannelMsg::Open(ChannelKind(200)).encode())
        .await?;
    assert_eq!(
        expect_channel_error(&mut recv).await?.code,
        ErrorCode::UnknownChannel
    );
    let (mut send, mut recv) = conn.open_bi().await?;
    let req = ChannelMsg::Request(Request {
        request_id: 1,
        body: RequestBody::Echo {
            payload: vec![],
            push_count: 0,
            delay_ms: 0,
        },
    });
    send.write_all(&req.encode()).await?;
    assert_eq!(
        expect_channel_error(&mut recv).await?.code,
        ErrorCode::UnexpectedFrame
    );

    // An unknown request body (a newer client): InvalidRequest for that id, channel lives.
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    send.write_all(
        &ChannelMsg::Request(Request {
            request_id: 7,
            body: RequestBody::Unknown(42),
        })
        .encode(),
    )
    .await?;
    let e = expect_channel_error(&mut recv).await?;
    assert_eq!((e.request_id, e.code), (7, ErrorCode::InvalidRequest));
    send.write_all(&req.encode()).await?;
    let frame = read_raw_frame(&mut recv, 1 << 16).await?;
    assert!(matches!(ChannelMsg::decode(&frame)?, ChannelMsg::Response(r) if r.request_id == 1));

    // The session itself is unharmed.
    ping(&mut csend, &mut crecv, 5).await?;
    Ok(())
}

#[tokio::test]
async fn garbage_on_the_control_stream_closes_with_bad_frame() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let conn = raw_connect(&gw).await?;
    let (mut csend, _crecv, _) = raw_login(&conn, device()).await?;
    let mut junk = 16u32.to_le_bytes().to_vec();
    junk.extend([0xAB; 16]);
    csend.write_all(&junk).await?;
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await?;
    assert_eq!(app_close_code(&closed), Some(ErrorCode::BadFrame.0));
    Ok(())
}

#[tokio::test]
async fn rate_limited_requests_get_rate_limited_with_retry_after() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.limits.request_rate_per_sec = 1.0;
            c.limits.request_burst = 3.0;
        })
        .await?;
    let conn = raw_connect(&gw).await?;
    let (_cs, _cr, _) = raw_login(&conn, device()).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    for id in 1..=5u64 {
        let req = ChannelMsg::Request(Request {
            request_id: id,
            body: RequestBody::Echo {
                payload: vec![1],
                push_count: 0,
                delay_ms: 0,
            },
        });
        send.write_all(&req.encode()).await?;
    }
    let mut limited = Vec::new();
    for _ in 0..5 {
        match ChannelMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)? {
            ChannelMsg::Response(_) => {}
            ChannelMsg::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert!(e.retry_after_ms > 0);
                limited.push(e.request_id);
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    assert_eq!(limited, vec![4, 5], "burst of 3, then rate limited");
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_memory_stays_bounded() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let conn = raw_connect(&gw).await?;
    let (_cs, _cr, _) = raw_login(&conn, device()).await?;
    let (mut send, _recv_never_read) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    let before = rss_bytes();
    // Each request asks for 1,024 pushes of 32 KiB: 32 MiB of output per request,
    // 2 GiB in total if the gateway buffered everything it was asked for.
    let payload = vec![0x5Au8; 32 * 1024];
    for id in 1..=64u64 {
        let req = ChannelMsg::Request(Request {
            request_id: id,
            body: RequestBody::Echo {
                payload: payload.clone(),
                push_count: 1024,
                delay_ms: 0,
            },
        });
        if send.write_all(&req.encode()).await.is_err() {
            break; // already disconnected
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(20), conn.closed()).await?;
    assert_eq!(
        app_close_code(&closed),
        Some(ErrorCode::SlowConsumer.0),
        "{closed}"
    );
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 128 << 20, "process RSS grew by {} MiB", grown >> 20);
    assert!(eventually(Duration::from_secs(5), || gw.handle.sessions_live() == 0).await);
    Ok(())
}

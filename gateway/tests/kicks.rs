//! Issue #12, defect 2: every Kick ends with CONNECTION_CLOSE carrying the
//! kick's reason (PROTOCOL.md §3.5, §6), promptly, not after the client's own
//! idle timeout. A raw quinn client with small flow-control windows that
//! withholds stream credit (never reads its channel stream) but keeps reading
//! its control stream, as a careful independent client would.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::*;
use outpost_schema::{ChannelKind, ChannelMsg, ControlMsg, ErrorCode, Request, RequestBody};

/// A raw endpoint whose connections grant the gateway little credit: 64 KiB
/// per stream, 1 MiB per connection, and an idle timeout long enough (60 s)
/// that only the gateway's CONNECTION_CLOSE can end the test in time.
fn stingy_endpoint(gw: &TestGateway) -> Result<quinn::Endpoint> {
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(64 * 1024));
    transport.receive_window(quinn::VarInt::from_u32(1 << 20));
    transport.max_idle_timeout(Some(Duration::from_secs(60).try_into()?));
    let mut config = raw_client_config(&gw.ca_pem, outpost_schema::ALPN)?;
    config.transport_config(Arc::new(transport));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(config);
    Ok(ep)
}

#[tokio::test]
async fn a_slow_consumer_kick_is_followed_by_connection_close() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let ep = stingy_endpoint(&gw)?;
    let conn = ep.connect(gw.addr, "localhost")?.await?;
    let (mut control_send, mut control_recv, _welcome) = raw_login(&conn, wire_device()).await?;

    // An echo channel whose answers are never read: 32 requests for 64 pushes
    // of 16 KiB each, far more than the gateway may queue for one channel.
    let (mut send, _never_read) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    for id in 1..=32u64 {
        let req = ChannelMsg::Request(Request {
            request_id: id,
            body: RequestBody::Echo {
                payload: vec![0x5A; 16 * 1024],
                push_count: 64,
                delay_ms: 0,
            },
        });
        if send.write_all(&req.encode()).await.is_err() {
            break;
        }
    }

    // The control stream is read, and pinged, as a live client does: the Kick
    // arrives on it.
    let kick = tokio::time::timeout(Duration::from_secs(20), async {
        let mut nonce = 0;
        loop {
            nonce += 1;
            let _ = control_send.write_all(&ControlMsg::Ping { nonce }.encode()).await;
            let next = tokio::time::timeout(
                Duration::from_millis(500),
                read_raw_frame(&mut control_recv, 1 << 16),
            )
            .await;
            match next {
                Ok(frame) => match ControlMsg::decode(&frame?)? {
                    ControlMsg::Kick(k) => return Ok::<_, anyhow::Error>(k),
                    _ => continue,
                },
                Err(_) => continue, // no frame within 500 ms: ping again
            }
        }
    })
    .await??;
    assert_eq!(kick.reason, ErrorCode::SlowConsumer, "{kick:?}");
    let kicked_at = Instant::now();

    // Then CONNECTION_CLOSE with the same code, well before any idle timeout
    // (the gateway waits at most 500 ms for the Kick to be acknowledged).
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    let closed = match closed {
        Ok(c) => c,
        Err(_) => bail!("no CONNECTION_CLOSE within 5 s of Kick {{ SlowConsumer }}"),
    };
    match &closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(ErrorCode::SlowConsumer.0))
        }
        other => bail!("expected an application close with SlowConsumer, got {other:?}"),
    }
    assert!(
        kicked_at.elapsed() < Duration::from_secs(2),
        "{:?}",
        kicked_at.elapsed()
    );
    assert!(eventually(Duration::from_secs(5), || gw.handle.sessions_live() == 0).await);
    Ok(())
}

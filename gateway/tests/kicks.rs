//! Issue #12, defect 2: every Kick ends with CONNECTION_CLOSE carrying the
//! kick's reason (PROTOCOL.md §3.5, §6), promptly, not after the client's own
//! idle timeout. A raw quinn client with small flow-control windows that
//! withholds stream credit (never reads its channel stream) but keeps reading
//! its control stream, as a careful independent client would.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
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

/// How many sessions the test kicks: the lost close depended on timing (it
/// showed in 2 of 5 runs of one session), so several rounds make the test
/// fail reliably without the fix.
const ROUNDS: usize = 8;

#[tokio::test]
async fn a_slow_consumer_kick_is_followed_by_connection_close() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    for round in 0..ROUNDS {
        slow_consumer_round(&gw)
            .await
            .map_err(|e| e.context(format!("round {round}")))?;
    }
    Ok(())
}

/// One session that stops reading its channels until the gateway kicks it.
async fn slow_consumer_round(gw: &TestGateway) -> Result<()> {
    let ep = stingy_endpoint(gw)?;
    let conn = ep.connect(gw.addr, "localhost")?.await?;
    let (mut control_send, mut control_recv, _welcome) = raw_login(&conn, wire_device()).await?;
    let live_before = gw.handle.sessions_live();

    // Echo channels whose answers are never read: on each, 32 requests for 64
    // pushes of 16 KiB, far more than the gateway may queue for one channel.
    // Several channels, so that plenty of stream data is still sendable
    // (within each stream's credit) when the session closes.
    let mut unread = Vec::new();
    'open: for _ in 0..8 {
        let Ok((mut send, recv)) = conn.open_bi().await else {
            break;
        };
        if send
            .write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
            .await
            .is_err()
        {
            break;
        }
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
                break 'open; // the gateway already closed the connection
            }
        }
        unread.push((send, recv));
    }

    // The control stream is read, and pinged, as a live client does, until
    // the connection ends: the Kick arrives on it, unless the close overtakes
    // it (then its code carries the reason, PROTOCOL.md §6).
    let started = Instant::now();
    let mut kick = None;
    let mut nonce = 0;
    let closed = loop {
        if let Some(reason) = conn.close_reason() {
            break reason;
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("no CONNECTION_CLOSE within 10 s (Kick seen: {kick:?})");
        }
        nonce += 1;
        let _ = control_send.write_all(&ControlMsg::Ping { nonce }.encode()).await;
        let next = tokio::time::timeout(
            Duration::from_millis(200),
            read_raw_frame(&mut control_recv, 1 << 16),
        )
        .await;
        if let Ok(Ok(frame)) = next {
            if let ControlMsg::Kick(k) = ControlMsg::decode(&frame)? {
                kick = Some(k);
            }
        }
    };
    if let Some(k) = &kick {
        assert_eq!(k.reason, ErrorCode::SlowConsumer, "{k:?}");
    }
    // CONNECTION_CLOSE with the kick's code, not a stateless reset (the
    // gateway had forgotten the connection without telling the client) and
    // not the client's own idle timeout.
    expect_closed_with(&closed, ErrorCode::SlowConsumer).with_context(|| format!("Kick seen: {kick:?}"))?;
    assert!(eventually(Duration::from_secs(5), || gw.handle.sessions_live() < live_before).await);
    Ok(())
}

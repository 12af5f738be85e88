//! The vendored quinn-proto's patch (third_party/README.md) as the gateway uses
//! it: sessions drop rustls's connection once the handshake is complete, and
//! derive the next key phase's packet keys only when a key update needs them.
//! It also issues each client only `transport.issued_connection_ids` connection
//! IDs (the patch's `max_issued_cids`). Real QUIC on loopback; the first test
//! drives the gateway's own QUIC server config, the others a running gateway.

mod common;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::*;
use outpost_gateway::tls::ServerIdentity;
use outpost_schema::{ChannelKind, ChannelMsg};

/// A connection of the gateway's QUIC server config has released its TLS
/// session by the time it is established: the exporter is gone with it
/// (the client's, not released, still works), while what quinn and the
/// gateway read later (ALPN, server name) is kept.
#[tokio::test]
async fn a_gateway_connection_releases_tls_after_the_handshake_and_keeps_its_alpn() -> Result<()> {
    let world = World::new().await?;
    let cfg = world.config();
    let identity = ServerIdentity::load(&cfg.tls)?;
    let ca_pem = identity.dev_ca_pem.clone().context("dev CA")?;
    let server_config = outpost_gateway::endpoint::server_config(&cfg, identity.rustls_config()?)?;
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;

    let client = raw_endpoint(&ca_pem, outpost_schema::ALPN)?;
    let (client_conn, server_conn) = tokio::try_join!(
        async { Ok::<_, anyhow::Error>(client.connect(addr, "localhost")?.await?) },
        async { Ok(server.accept().await.context("no incoming connection")?.await?) },
    )?;

    let mut key = [0u8; 32];
    client_conn
        .export_keying_material(&mut key, b"outpost test", b"")
        .map_err(|e| anyhow::anyhow!("the client keeps rustls (raw client config): {e:?}"))?;
    assert!(
        server_conn
            .export_keying_material(&mut key, b"outpost test", b"")
            .is_err(),
        "the gateway's connection must have released its TLS session (quic_crypto)"
    );
    let data = server_conn
        .handshake_data()
        .context("handshake data")?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .map_err(|_| anyhow::anyhow!("rustls handshake data"))?;
    assert_eq!(data.protocol.as_deref(), Some(outpost_schema::ALPN));
    assert_eq!(data.server_name.as_deref(), Some("localhost"));

    // The connection still carries data both ways.
    let (mut send, mut recv) = client_conn.open_bi().await?;
    send.write_all(b"hello").await?;
    send.finish()?;
    let (mut s_send, mut s_recv) = server_conn.accept_bi().await?;
    assert_eq!(s_recv.read_to_end(64).await?, b"hello");
    s_send.write_all(b"world").await?;
    s_send.finish()?;
    assert_eq!(recv.read_to_end(64).await?, b"world");
    Ok(())
}

/// A session that lives through a QUIC key update. quinn starts one once it
/// has sent a random 10–999 packets under the first 1-RTT keys (its
/// `key_phase_size`; after an update, by either side, the next is millions of
/// packets away), so 1,200 request/answer round trips make whichever side gets
/// there first start it. Each run goes through both of the patch's paths: the
/// side that starts the update derives the new keys then (`update_keys`), the
/// other when the first packet of the new phase arrives (`needs_next_keys`).
/// Were the keys not derived there, that packet could not be decrypted, and
/// the answers would stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lives_through_a_key_update() -> Result<()> {
    let world = World::new().await?;
    // As fast as round trips go: no request may meet the rate limit.
    let gw = world
        .gateway(|c| {
            c.limits.request_rate_per_sec = 1e6;
            c.limits.request_burst = 1e6;
        })
        .await?;
    let conn = raw_connect(&gw).await?;
    let (_control_send, _control_recv, _) = raw_login(&conn, wire_device()).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;

    const ROUND_TRIPS: u64 = 1_200;
    for id in 1..=ROUND_TRIPS {
        echo(&conn, &mut send, &mut recv, id).await?;
    }
    // Each request went out in a datagram of its own (one round trip at a
    // time), so the client alone sent more than any `key_phase_size`.
    let stats = conn.stats();
    assert!(
        stats.udp_tx.datagrams > 1_000,
        "too few packets for a key update: {stats:?}"
    );
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    Ok(())
}

/// With the default `transport.issued_connection_ids` (2: one spare), the
/// gateway issues a client one NEW_CONNECTION_ID at the handshake, where
/// quinn's client, which accepts 5, would get 4 without the setting. A client
/// that changes address moves to its spare and retires the old ID, and the
/// gateway issues a new spare: the session answers from every new address.
/// (After a move, a replacement may be received twice: a frame sent towards
/// the old address is lost and sent again. So the moves check that one came,
/// not how many frames carried it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_address_again_and_again_with_one_spare_connection_id() -> Result<()> {
    let world = World::new().await?;
    assert_eq!(world.config().transport.issued_connection_ids, 2, "the default");
    let gw = world.gateway(|_| {}).await?;
    let ep = raw_endpoint(&gw.ca_pem, outpost_schema::ALPN)?;
    let conn = ep.connect(gw.addr, "localhost")?.await?;
    let (_control_send, _control_recv, _) = raw_login(&conn, wire_device()).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;

    let new_ids = |conn: &quinn::Connection| conn.stats().frame_rx.new_connection_id;
    let await_new_ids = |n: u64| {
        let conn = conn.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while new_ids(&conn) < n {
                if tokio::time::Instant::now() > deadline {
                    bail!("{} NEW_CONNECTION_ID frames, expected {n}", new_ids(&conn));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        }
    };
    echo(&conn, &mut send, &mut recv, 1).await?;
    await_new_ids(1).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(new_ids(&conn), 1, "one spare at the handshake");

    let mut addrs = vec![ep.local_addr()?];
    for id in 2..=4u64 {
        let before = new_ids(&conn);
        ep.rebind(std::net::UdpSocket::bind("127.0.0.1:0")?)?;
        addrs.push(ep.local_addr()?);
        // The old socket is closed: the answer comes to the new address.
        echo(&conn, &mut send, &mut recv, id).await?;
        // The gateway replaced the spare the client used.
        await_new_ids(before + 1).await?;
    }
    addrs.dedup();
    assert_eq!(addrs.len(), 4, "every move is to a new address: {addrs:?}");
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    Ok(())
}

/// One echo request on an open Echo channel, and its answer.
async fn echo(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    id: u64,
) -> Result<()> {
    send.write_all(&echo_requests(id, 1)).await?;
    let frame = tokio::time::timeout(Duration::from_secs(10), read_raw_frame(recv, 1 << 16))
        .await
        .with_context(|| format!("no answer to request {id}: {:?}", conn.close_reason()))??;
    match ChannelMsg::decode(&frame)? {
        ChannelMsg::Response(r) if r.request_id == id => Ok(()),
        other => bail!("request {id}: unexpected {other:?}"),
    }
}

//! The floor under QUIC's probe timeout (the vendored quinn-proto's
//! `min_probe_timeout`, third_party/README.md), as the gateway's server config
//! (`transport.min_probe_timeout_ms`, default 200 ms) and the SDK's transport
//! settings (`outpost_client::MIN_PROBE_TIMEOUT`) set it. Real QUIC on
//! loopback through a UDP relay that can stop forwarding one direction: when
//! a side's packets stop being acknowledged, it must not probe before the
//! floor, where RFC 9002's own timeout on loopback is ≈ 26 ms (so it would
//! send three rounds of probes in the same time), and it must probe after it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::*;
use outpost_gateway::tls::ServerIdentity;
use tokio::net::UdpSocket;

/// What the relay saw arrive from one side, and whether it still forwards it.
#[derive(Default)]
struct Direction {
    arrivals: Mutex<Vec<Instant>>,
    blocked: AtomicBool,
}

impl Direction {
    /// Datagrams that arrived from this side in `(from, from + within]`.
    fn arrived(&self, from: Instant, within: Duration) -> usize {
        let arrivals = self.arrivals.lock().expect("relay lock");
        arrivals
            .iter()
            .filter(|&&t| t > from && t <= from + within)
            .count()
    }
}

/// A UDP relay between one client and `server`; the client dials the relay.
struct Relay {
    addr: SocketAddr,
    from_client: Arc<Direction>,
    from_server: Arc<Direction>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(server: SocketAddr) -> Result<Relay> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let from_client = Arc::new(Direction::default());
        let from_server = Arc::new(Direction::default());
        let task = tokio::spawn({
            let (from_client, from_server) = (from_client.clone(), from_server.clone());
            async move {
                let mut client = None;
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                    let (dir, to) = if peer == server {
                        (&from_server, client)
                    } else {
                        client = Some(peer);
                        (&from_client, Some(server))
                    };
                    dir.arrivals.lock().expect("relay lock").push(Instant::now());
                    if let (false, Some(to)) = (dir.blocked.load(Ordering::SeqCst), to) {
                        let _ = socket.send_to(&buf[..n], to).await;
                    }
                }
            }
        });
        Ok(Relay {
            addr,
            from_client,
            from_server,
            task,
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `msg` on `send` while `dir` is blocked, and returns how many
/// datagrams that side sent in the 190 ms after it (the message and any
/// probes) and how many within 2 s.
async fn sent_while_unacknowledged(
    dir: &Direction,
    send: &mut quinn::SendStream,
    msg: &[u8],
) -> Result<(usize, usize)> {
    // Let acknowledgements of earlier traffic settle first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    dir.blocked.store(true, Ordering::SeqCst);
    let from = Instant::now();
    send.write_all(msg).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = (
        dir.arrived(from, Duration::from_millis(190)),
        dir.arrived(from, Duration::from_secs(2)),
    );
    dir.blocked.store(false, Ordering::SeqCst);
    Ok(counts)
}

/// A round trip on the stream pair: `a` sends, `b` echoes back.
async fn round_trip(
    a: (&mut quinn::SendStream, &mut quinn::RecvStream),
    b: (&mut quinn::SendStream, &mut quinn::RecvStream),
    msg: &[u8],
) -> Result<()> {
    let mut got = vec![0u8; msg.len()];
    a.0.write_all(msg).await?;
    tokio::time::timeout(Duration::from_secs(10), b.1.read_exact(&mut got))
        .await
        .context("no echo request")??;
    b.0.write_all(&got).await?;
    tokio::time::timeout(Duration::from_secs(10), a.1.read_exact(&mut got))
        .await
        .context("no echo answer")??;
    anyhow::ensure!(got == msg, "the echo came back changed");
    Ok(())
}

/// Neither the gateway nor an SDK client probes before the floor while the
/// other side is silent, and both probe after it; traffic resumes when the
/// path does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_side_probes_before_the_floor_and_both_probe_after_it() -> Result<()> {
    let world = World::new().await?;
    let cfg = world.config();
    assert_eq!(
        cfg.transport.min_probe_timeout_ms, 200,
        "the default this test is about"
    );
    assert_eq!(outpost_client::MIN_PROBE_TIMEOUT, Duration::from_millis(200));
    let identity = ServerIdentity::load(&cfg.tls)?;
    let ca_pem = identity.dev_ca_pem.clone().context("dev CA")?;
    let server_config = outpost_gateway::endpoint::server_config(&cfg, identity.rustls_config()?)?;
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let relay = Relay::start(server.local_addr()?).await?;

    let mut client_config = raw_client_config(&ca_pem, outpost_schema::ALPN)?;
    client_config.transport_config(Arc::new(outpost_client::quic_transport_config(false)));
    let client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let (client_conn, server_conn) = tokio::try_join!(
        async {
            Ok::<_, anyhow::Error>(
                client
                    .connect_with(client_config, relay.addr, "localhost")?
                    .await?,
            )
        },
        async { Ok(server.accept().await.context("no incoming connection")?.await?) },
    )?;
    let (mut c_send, mut c_recv) = client_conn.open_bi().await?;
    c_send.write_all(b"open").await?;
    let (mut s_send, mut s_recv) = server_conn.accept_bi().await?;
    let mut open = [0u8; 4];
    s_recv.read_exact(&mut open).await?;
    // RTT samples of a loopback path (well under a millisecond) on both sides.
    for i in 0..20u8 {
        round_trip((&mut c_send, &mut c_recv), (&mut s_send, &mut s_recv), &[i; 8]).await?;
    }

    let (early, late) = sent_while_unacknowledged(&relay.from_client, &mut c_send, b"client!!").await?;
    assert!(
        early <= 1,
        "the client probed before the floor: {early} datagrams in 190 ms"
    );
    assert!(late >= 2, "the client never probed: {late} datagrams in 2 s");
    let mut got = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(10), s_recv.read_exact(&mut got))
        .await
        .context("the client's data never arrived once the path was back")??;
    assert_eq!(&got, b"client!!");

    let (early, late) = sent_while_unacknowledged(&relay.from_server, &mut s_send, b"server!!").await?;
    assert!(
        early <= 1,
        "the gateway probed before the floor: {early} datagrams in 190 ms"
    );
    assert!(late >= 2, "the gateway never probed: {late} datagrams in 2 s");
    tokio::time::timeout(Duration::from_secs(10), c_recv.read_exact(&mut got))
        .await
        .context("the gateway's data never arrived once the path was back")??;
    assert_eq!(&got, b"server!!");
    Ok(())
}

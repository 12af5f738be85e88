//! Refusing new connections while the receive path is behind
//! (`admission.refuse_while_dropping`, on by default; `gateway/src/overload.rs`),
//! end to end: a gateway whose QUIC socket keeps overflowing refuses SDK
//! clients (QUIC CONNECTION_REFUSED, which the SDK reports as `ServerBusy`
//! with a `retry_after` of at least 1 s), not before the drops have lasted
//! about 3 s, and accepts them again once it has caught up.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use common::*;
use outpost_client::{Client, ClientConfig, ClientError, ErrorCode};
use outpost_gateway::GatewayConfig;

/// Junk datagrams in bursts: each burst overflows a receive buffer of a few
/// KB (so every 250 ms sample sees hundreds of new drops), and the gap lets
/// the gateway empty it, so a client's handshake still gets in between.
fn overflow(target: std::net::SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let source = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Fixed bit clear: quinn drops these without answering.
        let junk = [0u8; 1200];
        while !stop.load(Ordering::SeqCst) {
            for _ in 0..20 {
                let _ = source.send_to(&junk, target);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// One login: `Ok(true)` logged in (and out), `Ok(false)` refused as busy.
async fn login(config: &ClientConfig) -> Result<bool> {
    match Client::connect(config.clone()).await {
        Ok(client) => {
            client.close().await;
            Ok(true)
        }
        Err(ClientError::Rejected {
            code: ErrorCode::ServerBusy,
            retry_after: Some(wait),
            message,
        }) => {
            ensure!(wait >= Duration::from_secs(1), "{wait:?}: {message}");
            ensure!(message.contains("CONNECTION_REFUSED"), "{message}");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_socket_keeps_overflowing_refuses_until_it_catches_up() -> Result<()> {
    ensure!(GatewayConfig::default().admission.refuse_while_dropping);
    let world = World::new().await?;
    let gw = world
        .gateway(|c| c.transport.udp_recv_buffer_bytes = 4096)
        .await?;
    let mut config = gw.client_config(device());
    config.request_timeout = Duration::from_secs(2);
    ensure!(login(&config).await?, "a quiet gateway lets the client in");

    let stop = Arc::new(AtomicBool::new(false));
    let flood = overflow(gw.addr, stop.clone());
    let started = Instant::now();
    let mut refused_after = None;
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // A handshake lost to the overflow times out: try again.
        if let Ok(false) = login(&config).await {
            refused_after = Some(started.elapsed());
            break;
        }
    }
    // While the drops go on, so does the refusal (a handshake lost to the
    // overflow is tried again).
    let mut still_refused = None;
    for _ in 0..5 {
        match login(&config).await {
            Ok(refused) => {
                still_refused = Some(!refused);
                break;
            }
            Err(_) => continue,
        }
    }
    stop.store(true, Ordering::SeqCst);
    flood.join().expect("flood thread");
    let Some(refused_after) = refused_after else {
        bail!("no refusal within 20 s of an overflowing socket");
    };
    // 12 overflowing samples 250 ms apart, the first of which can come just
    // after the flood began: 11 intervals (2.75 s, less a few ms of timer
    // slack) at least. The old trigger refused after one sample.
    ensure!(
        refused_after >= Duration::from_millis(2_500),
        "refused {refused_after:?} after the drops began: a burst that short must not trip it"
    );
    ensure!(
        still_refused == Some(true),
        "still refused while the drops go on: {still_refused:?}"
    );

    let stopped = Instant::now();
    let mut back = false;
    while stopped.elapsed() < Duration::from_secs(15) {
        if login(&config).await? {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(back, "accepted again after the drops stopped");
    eprintln!(
        "refused {refused_after:?} after the drops began; accepted again {:?} after they stopped",
        stopped.elapsed()
    );
    ensure!(
        stopped.elapsed() >= Duration::from_millis(1_500),
        "not before 2 s without drops (8 samples): {:?}",
        stopped.elapsed()
    );
    Ok(())
}

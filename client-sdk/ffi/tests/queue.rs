//! The login queue through the C ABI: a real gateway on loopback (embedded
//! store in a temp dir) with the queue on and a budget of one session; a
//! first C-ABI client takes the slot, a second one waits in the queue and
//! `outpost_poll` hands it `QUEUE_POSITION` while its connect waits; when the
//! first logs out it gets `QUEUE_ADMITTED`, then `CONNECTED`. A third one,
//! closed while queued, ends with `CLOSED`. The ABI is called in-process (the
//! crate is also an rlib), as a game would call it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use outpost_client_ffi::handles::OutpostClient;
use outpost_client_ffi::*;
use outpost_gateway::GatewayConfig;

fn ok(s: OutpostStatus, what: &str) -> Result<()> {
    ensure!(s == OutpostStatus::Ok, "{what}: {s:?}");
    Ok(())
}

const SECRET: &[u8] = b"ffi-queue-test-secret";

fn connect(gw: SocketAddr, ca: &[u8], device: &str) -> Result<OutpostClient> {
    let mut cfg = 0;
    ok(outpost_config_new(&mut cfg), "config_new")?;
    let addr = gw.to_string();
    ok(
        outpost_config_add_gateway(cfg, addr.as_ptr(), addr.len()),
        "add_gateway",
    )?;
    ok(outpost_config_set_ca_pem(cfg, ca.as_ptr(), ca.len()), "ca")?;
    ok(
        outpost_config_set_device(cfg, device.as_ptr(), device.len(), SECRET.as_ptr(), SECRET.len()),
        "device",
    )?;
    ok(outpost_config_set_queue(cfg, 1, 60), "queue")?;
    ok(outpost_config_set_telemetry(cfg, 0), "telemetry")?;
    let mut client = 0;
    ok(outpost_client_connect(cfg, &mut client), "connect")?;
    ok(outpost_config_free(cfg), "config_free")?;
    Ok(client)
}

/// Event kinds and their `num0`, `num1`, `data` (copied), `status`.
type Seen = Vec<(u32, u64, u64, Vec<u8>, i32)>;

/// Polls `client` until an event of `kind` arrived (or `limit` passed).
async fn poll_until(
    client: OutpostClient,
    kind: OutpostEventKind,
    seen: &mut Seen,
    limit: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut evs = [OutpostEvent {
            kind: 0,
            status: 0,
            request_id: 0,
            num0: 0,
            num1: 0,
            code: 0,
            retry_after_ms: 0,
            text: std::ptr::null(),
            text_len: 0,
            data: std::ptr::null(),
            data_len: 0,
        }; 16];
        let mut n = 0;
        ok(outpost_poll(client, evs.as_mut_ptr(), evs.len(), &mut n), "poll")?;
        for e in &evs[..n] {
            let data = if e.data.is_null() {
                Vec::new()
            } else {
                // SAFETY: valid until the next poll of this client, per the ABI.
                unsafe { std::slice::from_raw_parts(e.data, e.data_len) }.to_vec()
            };
            seen.push((e.kind, e.num0, e.num1, data, e.status));
            if e.kind == OutpostEventKind::Closed as u32 && kind != OutpostEventKind::Closed {
                let text = if e.text.is_null() {
                    Vec::new()
                } else {
                    // SAFETY: as `data`.
                    unsafe { std::slice::from_raw_parts(e.text, e.text_len) }.to_vec()
                };
                bail!(
                    "closed ({}, code {}: {}) while waiting for {kind:?}: {seen:?}",
                    e.status,
                    e.code,
                    String::from_utf8_lossy(&text)
                );
            }
        }
        if seen.iter().any(|e| e.0 == kind as u32) {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("no {kind:?} within {limit:?}: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_c_client_sees_its_position_then_admission_then_login() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut gc = GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("data"),
        ..GatewayConfig::default()
    };
    gc.tls.dev_certs_dir = dir.path().join("certs");
    gc.queue.enabled = true;
    gc.queue.max_sessions = 1;
    gc.queue.max_admissions_per_sec = 100;
    gc.queue.update_interval_ms = 500;
    gc.queue.admit_tick_ms = 50;
    gc.queue.max_places_per_address = 0;
    let gw = outpost_gateway::start(gc).await?;
    let ca = gw.dev_ca_pem.clone().context("dev CA PEM")?;
    let limit = Duration::from_secs(20);

    let holder = connect(gw.quic_addr, &ca, "ffi-queue-holder")?;
    let mut holder_seen = Seen::new();
    poll_until(holder, OutpostEventKind::Connected, &mut holder_seen, limit).await?;

    let waiter = connect(gw.quic_addr, &ca, "ffi-queue-waiter")?;
    let mut seen = Seen::new();
    poll_until(waiter, OutpostEventKind::QueuePosition, &mut seen, limit).await?;
    let mut state = 9;
    ok(outpost_client_state(waiter, &mut state), "state")?;
    ensure!(state == 0, "still connecting while queued: {state}");
    let (_, position, _, data, _) = seen
        .iter()
        .find(|e| e.0 == OutpostEventKind::QueuePosition as u32)
        .context("queue position")?;
    ensure!(*position == 0, "the only one waiting is next: {position}");
    let json: serde_json::Value = serde_json::from_slice(data)?;
    ensure!(json["queue_length"] == 1, "{json}");
    ensure!(json["gateway"] == gw.quic_addr.to_string(), "{json}");

    // A third client queues behind, then gives up: closing it ends its
    // connect with CLOSED (status CLOSED) while it waits.
    let leaver = connect(gw.quic_addr, &ca, "ffi-queue-leaver")?;
    let mut leaver_seen = Seen::new();
    poll_until(leaver, OutpostEventKind::QueuePosition, &mut leaver_seen, limit).await?;
    ok(outpost_client_close(leaver), "close leaver")?;
    poll_until(leaver, OutpostEventKind::Closed, &mut leaver_seen, limit).await?;
    let closed = leaver_seen.last().context("closed")?;
    ensure!(
        closed.0 == OutpostEventKind::Closed as u32 && closed.4 == OutpostStatus::Closed as i32,
        "{leaver_seen:?}"
    );
    ok(outpost_client_state(leaver, &mut state), "state")?;
    ensure!(state == 3, "closed: {state}");

    ok(outpost_client_close(holder), "close holder")?;
    poll_until(waiter, OutpostEventKind::Connected, &mut seen, limit).await?;
    let kinds: Vec<u32> = seen.iter().map(|e| e.0).collect();
    let admitted = OutpostEventKind::QueueAdmitted as u32;
    let connected = OutpostEventKind::Connected as u32;
    ensure!(
        kinds.ends_with(&[admitted, connected]),
        "admitted, then connected: {kinds:?}"
    );
    ok(outpost_client_state(waiter, &mut state), "state")?;
    ensure!(state == 1, "connected after admission: {state}");

    // Off the test's runtime: free blocks (it stops the client's runtime).
    tokio::task::spawn_blocking(move || {
        ok(outpost_client_free(waiter), "free waiter")?;
        ok(outpost_client_free(leaver), "free leaver")?;
        ok(outpost_client_free(holder), "free holder")
    })
    .await??;
    gw.handle().shutdown();
    gw.wait().await;
    Ok(())
}

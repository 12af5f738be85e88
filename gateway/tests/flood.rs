//! A client that keeps its streams readable (pipelining many small valid
//! frames) must not hold up its own session's writes nor other sessions. quinn's
//! stream reads do not use tokio's cooperative budget, so a read loop that never
//! ran out of frames never yielded (`driver::READ_BURST`).
//!
//! The gateway runs alone on a runtime with one worker thread (so whatever one
//! of its tasks does without yielding holds up every other one), or two; the
//! clients run on the test's own runtime. Nothing here asserts on wall-clock times (the
//! machine is shared): how long a ping waits is counted in the flooding
//! client's requests the gateway handled meanwhile.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::*;
use outpost_schema::{ChannelKind, ChannelMsg, ControlMsg};

/// The metric tests here read is process-wide: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The id an answer on a channel is for (a response or an error).
fn answered_id(frame: &[u8]) -> Result<u64> {
    Ok(match ChannelMsg::decode(frame)? {
        ChannelMsg::Response(r) => r.request_id,
        ChannelMsg::Error(e) => e.request_id,
        other => bail!("unexpected {other:?}"),
    })
}

/// Echo requests the gateway has answered or refused so far (every gateway
/// of the process; one test at a time uses Echo here).
fn echo_requests_handled() -> u64 {
    outpost_gateway::metrics::render()
        .lines()
        .filter(|l| l.starts_with("outpost_requests_total{") && l.contains("channel=\"Echo\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn ping(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, nonce: u64) -> Result<()> {
    send.write_all(&ControlMsg::Ping { nonce }.encode()).await?;
    let frame = tokio::time::timeout(Duration::from_secs(30), read_raw_frame(recv, 1 << 16)).await??;
    match ControlMsg::decode(&frame)? {
        ControlMsg::Pong { nonce: n } if n == nonce => Ok(()),
        other => bail!("expected Pong {nonce}, got {other:?}"),
    }
}

/// PROTOCOL.md 4: a request over the in-flight bound or the rate gets an error
/// for its own id and the channel stays open. Before `READ_BURST` the channel's
/// read loop handled a pipelined batch in one go, its writer (a task of its
/// own) never ran meanwhile, and the answers overflowed the outbound queue (256
/// frames): the session was closed as a slow consumer although the client read
/// everything. With two worker threads the loop's yields alone were not enough
/// (the other thread ran the loop again before the writer had its turn; about
/// 1 run in 10): reading now also waits while half the queue is unwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_answered_and_the_session_lives() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let world = World::new().await?;
    for workers in [1, 2] {
        let gw = GatewayThread::start(world.config(), world.store.clone(), workers)?;
        pipelined_requests(&gw)
            .await
            .with_context(|| format!("gateway on {workers} worker threads"))?;
    }
    Ok(())
}

async fn pipelined_requests(gw: &GatewayThread) -> Result<()> {
    let (conn, mut csend, mut crecv) = gw.login().await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    const N: u64 = 2000;
    send.write_all(&echo_requests(1, N)).await?;

    let mut seen = vec![false; N as usize + 1];
    for i in 0..N {
        let frame = tokio::time::timeout(Duration::from_secs(30), read_raw_frame(&mut recv, 1 << 16))
            .await
            .context("answers stopped")?
            .with_context(|| format!("after {i} answers of {N}: {:?}", conn.close_reason()))?;
        let id = answered_id(&frame)?;
        assert!(
            (1..=N).contains(&id) && !std::mem::replace(&mut seen[id as usize], true),
            "answer for {id}"
        );
    }
    // The session is still there and answers on its control stream.
    ping(&mut csend, &mut crecv, 1).await?;
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    Ok(())
}

/// Client A floods its channel with requests (each refused or answered at
/// once), reading its answers; client B pings. On the gateway's one thread, A's
/// channel task handled whatever was buffered in a row: B's ping waited for
/// thousands of A's requests. The outbound queue is raised so that A is not
/// closed as a slow consumer meanwhile (what the test above is about).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_session_does_not_hold_up_another() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let world = World::new().await?;
    let mut config = world.config();
    config.limits.outbound_queue_frames = 1 << 20;
    config.limits.outbound_queue_bytes = 1 << 30;
    // A's refusals would close it within a second (PROTOCOL.md §4, refused
    // requests; tests/strikes.rs): this test needs it flooding throughout.
    config.limits.max_refused_requests_per_window = u32::MAX;
    let gw = GatewayThread::start(config, world.store.clone(), 1)?;
    let (b, mut bsend, mut brecv) = gw.login().await?;
    let mut baseline = Vec::new();
    for nonce in 0..10 {
        let t = Instant::now();
        ping(&mut bsend, &mut brecv, nonce).await?;
        baseline.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    let (a, _acsend, _acrecv) = gw.login().await?;
    let (mut asend, mut arecv) = a.open_bi().await?;
    asend
        .write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(AtomicU64::new(0));
    let flood = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut next = 1;
            while !stop.load(Ordering::Relaxed) {
                asend.write_all(&echo_requests(next, 500)).await?;
                next += 500;
            }
            anyhow::Ok(next - 1)
        }
    });
    let reader = tokio::spawn({
        let answers = answers.clone();
        async move {
            while read_raw_frame(&mut arecv, 1 << 16).await.is_ok() {
                answers.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // A is well under way.
    while answers.load(Ordering::Relaxed) < 2000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(a.close_reason().is_none(), "{:?}", a.close_reason());
    }

    // How many of A's requests the gateway handled while each ping of B's waited.
    let mut waits = Vec::new();
    let mut rtts = Vec::new();
    for nonce in 100..120 {
        let before = echo_requests_handled();
        let t = Instant::now();
        ping(&mut bsend, &mut brecv, nonce).await?;
        rtts.push(t.elapsed());
        waits.push(echo_requests_handled() - before);
        // B stays within its control rate (20/s).
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.await??;
    reader.abort();
    assert!(a.close_reason().is_none(), "A: {:?}", a.close_reason());
    assert!(b.close_reason().is_none(), "B: {:?}", b.close_reason());

    waits.sort_unstable();
    baseline.sort_unstable();
    rtts.sort_unstable();
    eprintln!(
        "A sent {sent} requests, {} answers read; A's requests handled per ping of B: {waits:?}; \
         B's ping RTT idle p50 {:?} max {:?}, during the flood p50 {:?} p95 {:?} max {:?}",
        answers.load(Ordering::Relaxed),
        baseline[baseline.len() / 2],
        baseline[baseline.len() - 1],
        rtts[rtts.len() / 2],
        rtts[rtts.len() * 95 / 100],
        rtts[rtts.len() - 1],
    );
    let median = waits[waits.len() / 2];
    assert!(
        median < 400,
        "B's ping waited for {median} of A's requests (median)"
    );
    Ok(())
}

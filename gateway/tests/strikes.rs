//! A client that keeps sending requests the gateway refuses (over the rate,
//! over the in-flight bound) and ignores the errors: what it costs the
//! gateway, and (PROTOCOL.md §4) that it is disconnected with `Kick {
//! RateLimited }` while a well-behaved session on the same gateway is not.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::*;
use outpost_client::Event;
use outpost_schema::{ChannelKind, ChannelMsg, ErrorCode};

/// What a flooding client read back.
#[derive(Default)]
struct Answers {
    responses: AtomicU64,
    rate_limited: AtomicU64,
    too_many_in_flight: AtomicU64,
    other_errors: AtomicU64,
}

impl Answers {
    fn refused(&self) -> u64 {
        [&self.rate_limited, &self.too_many_in_flight, &self.other_errors]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

/// Opens an Echo channel on `conn` and sends requests on it as fast as flow
/// control lets it, reading and counting the answers, until `stop` is set
/// or the stream fails. Returns the writer and reader tasks.
async fn flood(
    conn: &quinn::Connection,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
) -> Result<(tokio::task::JoinHandle<Result<u64>>, tokio::task::JoinHandle<()>)> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Echo).encode())
        .await?;
    let writer = tokio::spawn(async move {
        let mut next = 1;
        while !stop.load(Ordering::Relaxed) {
            if send.write_all(&echo_requests(next, 500)).await.is_err() {
                break;
            }
            next += 500;
        }
        anyhow::Ok(next - 1)
    });
    let reader = tokio::spawn(async move {
        while let Ok(frame) = read_raw_frame(&mut recv, 1 << 16).await {
            let counter = match ChannelMsg::decode(&frame) {
                Ok(ChannelMsg::Response(_)) => &answers.responses,
                Ok(ChannelMsg::Error(e)) if e.code == ErrorCode::RateLimited => &answers.rate_limited,
                Ok(ChannelMsg::Error(e)) if e.code == ErrorCode::TooManyInFlight => {
                    &answers.too_many_in_flight
                }
                _ => &answers.other_errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok((writer, reader))
}

/// What a refusal flood costs without the bound, kept to measure again: one
/// client that floods refused requests for 5 s, on a gateway with one worker
/// thread of its own and the bound lifted. Prints the refusals it got
/// answered per second and the gateway threads' CPU. Not a pass/fail test
/// (the machine is shared): run with
/// `cargo test -p outpost-gateway --test strikes -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints numbers, asserts nothing about them"]
async fn measure_what_a_refusal_flood_costs() -> Result<()> {
    let world = World::new().await?;
    let mut config = world.config();
    // What the flood costs for as long as it goes on (the bound would
    // close it within a second).
    config.limits.max_refused_requests_per_window = u32::MAX;
    let gw = GatewayThread::start(config, world.store.clone(), 1)?;
    let (conn, _csend, _crecv) = gw.login().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Answers::default());
    let cpu0 = gateway_thread_cpu();
    let t0 = Instant::now();
    let (writer, reader) = flood(&conn, stop.clone(), answers.clone()).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let (wall, cpu) = (t0.elapsed(), gateway_thread_cpu() - cpu0);
    let sent = writer.await??;
    reader.abort();
    let refused = answers.refused();
    eprintln!(
        "in {wall:.2?}: {sent} requests written, {} answered ok, {} RateLimited, {} TooManyInFlight, {} other; \
         {:.0} refusals/s; gateway threads' CPU {cpu:?} ({:.0}% of one core, {:.1} µs per refusal); \
         connection: {:?}",
        answers.responses.load(Ordering::Relaxed),
        answers.rate_limited.load(Ordering::Relaxed),
        answers.too_many_in_flight.load(Ordering::Relaxed),
        answers.other_errors.load(Ordering::Relaxed),
        refused as f64 / wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / refused.max(1) as f64,
        conn.close_reason(),
    );
    if refused == 0 {
        bail!("nothing was refused");
    }
    Ok(())
}

/// A well-behaved SDK session: `callers` concurrent callers that each send
/// Echo requests one after another and, when refused, wait the
/// `retry_after_ms` the gateway asked for. Counts answers and refusals until
/// `stop` is set.
async fn well_behaved(
    client: &outpost_client::Client,
    callers: usize,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
) -> Result<Vec<tokio::task::JoinHandle<Result<()>>>> {
    let channel = client.open_channel(ChannelKind::Echo).await?;
    Ok((0..callers)
        .map(|_| {
            let (channel, stop, answers) = (channel.clone(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match channel.echo(b"hi".to_vec(), 0).await {
                        Ok(_) => answers.responses.fetch_add(1, Ordering::Relaxed),
                        Err(outpost_client::ClientError::Server(e)) if e.code == ErrorCode::RateLimited => {
                            tokio::time::sleep(e.retry_after.unwrap_or_default()).await;
                            answers.rate_limited.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => bail!("the well-behaved session's request failed: {e}"),
                    };
                }
                Ok(())
            })
        })
        .collect())
}

/// PROTOCOL.md §4 "Refused requests": a client that floods requests and
/// ignores the refusals is kicked with `RateLimited` and its connection is
/// closed with that code; an SDK session on the same gateway, which goes
/// over the request rate as well (two callers, a rate of 20/s) but honours
/// `retry_after_ms`, is neither kicked nor disconnected, and is still served
/// after the flooder is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_keeps_sending_refused_requests_is_kicked_and_another_is_not() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.limits.request_rate_per_sec = 20.0;
            c.limits.request_burst = 20.0;
        })
        .await?;
    let good = outpost_client::Client::connect(gw.client_config(device())).await?;
    let mut good_events = good.events();
    let (stop_good, good_answers) = (Arc::new(AtomicBool::new(false)), Arc::new(Answers::default()));
    let callers = well_behaved(&good, 2, stop_good.clone(), good_answers.clone()).await?;

    let conn = raw_connect(&gw).await?;
    let (_csend, mut crecv, _) = raw_login(&conn, wire_device()).await?;
    let (stop, answers) = (Arc::new(AtomicBool::new(false)), Arc::new(Answers::default()));
    let started = Instant::now();
    let (writer, reader) = flood(&conn, stop.clone(), answers.clone()).await?;
    let kick = expect_kick(&mut crecv, Duration::from_secs(30)).await;
    let kicked_after = started.elapsed();
    let kick = kick.map_err(|e| {
        e.context(format!(
            "no Kick; the flooder had {} refusals answered",
            answers.refused()
        ))
    })?;
    assert_eq!(kick.reason, ErrorCode::RateLimited, "{kick:?}");
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await?;
    expect_closed_with(&closed, ErrorCode::RateLimited)?;
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await?;
    reader.await?;
    // Operators tell this kick from the other RateLimited ones (the gateways
    // of this test binary share one metrics registry, and no other test here
    // is kicked).
    let metrics = scrape(gw.admin).await?;
    let kicks = |cause: &str| {
        sample(
            &metrics,
            "outpost_rate_limit_kicks_total",
            &[&format!("cause=\"{cause}\"")],
        )
    };
    assert_eq!(kicks("refused_requests"), Some(1.0), "{metrics}");
    assert_eq!(kicks("failed_channels"), Some(0.0));
    assert_eq!(kicks("control_frames"), Some(0.0));
    let bound = u64::from(world.config().limits.max_refused_requests_per_window);
    eprintln!(
        "the flooder was kicked after {kicked_after:?}: {} answers read ({} refusals, bound {bound})",
        answers.refused() + answers.responses.load(Ordering::Relaxed),
        answers.refused(),
    );
    // The flooder read at most the bound's worth of refusals, plus the one
    // that kicked it.
    assert!(answers.refused() <= bound + 1, "{}", answers.refused());

    // The well-behaved session is still served: more answers arrive after
    // the flooder's kick.
    let served_at_kick = good_answers.responses.load(Ordering::Relaxed);
    let more = || good_answers.responses.load(Ordering::Relaxed) >= served_at_kick + 20;
    assert!(
        eventually(Duration::from_secs(20), more).await,
        "the good session stalled"
    );
    stop_good.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await??;
    }
    assert!(
        good_answers.rate_limited.load(Ordering::Relaxed) > 0,
        "the good session was never refused, so it proves nothing"
    );
    while let Some(ev) = good_events.try_recv() {
        assert!(
            !matches!(
                ev,
                Event::Kicked { .. } | Event::Disconnected { .. } | Event::Closed { .. }
            ),
            "the well-behaved session: {ev:?}"
        );
    }
    good.close().await;
    Ok(())
}

//! Issue-4 measurement: durable inventory grants through the gateway.
//!
//! The gateway child runs with `inventory.client_grants = true` (durable embedded
//! store, the default) and the per-session request rate limit lifted (it measures
//! the ledger path, not the limiter). The client opens `Inventory` channels and
//! sends `InventoryGrant { gold 1 }` requests in closed loops, each with a fresh
//! idempotency key, for `OUTPOST_BENCH_GRANT_SECS` after a 1 s unrecorded warm-up:
//!
//! - **many players**: `OUTPOST_BENCH_GRANT_PLAYERS` (64) sessions, each its own
//!   player with one channel and one request in flight;
//! - **one hot player**: one session with `OUTPOST_BENCH_HOT_CHANNELS` (4)
//!   channels × `OUTPOST_BENCH_HOT_IN_FLIGHT` (16) requests in flight each.
//!
//! Latency is per request (sent → `InventoryWrite` response) in an HDR histogram.
//! After the clock stops, every loop drains its outstanding requests and each
//! player's gold balance is read back and must equal its acknowledged grants.
//!
//! CPU per grant is reported for each side apart: the gateway child's and this
//! client process's (QUIC, TLS and the protocol on the client side share the
//! same cores), from `/proc/<pid>/stat` over the measured window, divided by
//! the grants sent in it.

use std::collections::HashMap;

use outpost_schema::{
    AssetAmount, AssetKind, ChannelKind, ChannelMsg, PushBody, Request, RequestBody, Response, ResponseBody,
};

use super::server::server_and_own_cpu_us;
use super::*;

/// Which of the two workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantCase {
    ManyPlayers,
    HotPlayer,
}

pub struct GrantRun {
    pub per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Error frames, unexpected replies and lost streams.
    pub errors: u64,
    /// Players whose final gold balance differed from their acknowledged grants.
    pub mismatches: usize,
    /// `InventoryChanged` pushes received per acknowledged grant (every open
    /// `Inventory` channel of the player is pushed its balances on a change;
    /// pushes coalesce).
    pub pushes_per_grant: f64,
    /// The gateway child's CPU time (user + system) per grant in the window, µs.
    pub gateway_cpu_us: f64,
    /// This (client) process's CPU time per grant in the window, µs.
    pub client_cpu_us: f64,
}

/// One in-flight-bounded closed loop on one `Inventory` channel.
struct Loop {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Distinguishes this loop's idempotency keys and request ids.
    tag: String,
}

struct LoopResult {
    hist: Histogram<u64>,
    /// Grants acknowledged (whole run, warm-up and drain included).
    acked: u64,
    errors: u64,
    pushes: u64,
}

fn gold(amount: u64) -> AssetAmount {
    AssetAmount {
        kind: AssetKind::Currency,
        id: "gold".into(),
        amount,
    }
}

async fn open_inventory(conn: &quinn::Connection) -> Result<(quinn::SendStream, quinn::RecvStream)> {
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(&ChannelMsg::Open(ChannelKind::Inventory).encode())
        .await?;
    Ok((send, recv))
}

/// `in_flight` grants outstanding at all times until `stop_at`, then drains.
async fn grant_loop(mut l: Loop, in_flight: usize, warm_until: Instant, stop_at: Instant) -> LoopResult {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut acked, mut errors, mut pushes) = (0u64, 0u64, 0u64);
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(in_flight);
    let mut next_id = 1u64;
    let result = async {
        loop {
            while sent.len() < in_flight && Instant::now() < stop_at {
                let id = next_id;
                next_id += 1;
                let frame = ChannelMsg::Request(Request {
                    request_id: id,
                    body: RequestBody::InventoryGrant {
                        idempotency_key: format!("bench-{}-{id}", l.tag),
                        source: "bench".into(),
                        items: vec![gold(1)],
                    },
                })
                .encode();
                sent.insert(id, Instant::now());
                l.send.write_all(&frame).await?;
            }
            if sent.is_empty() {
                return Ok::<(), anyhow::Error>(());
            }
            let reply = ChannelMsg::decode(&read_frame(&mut l.recv).await?)?;
            let (id, ok) = match reply {
                ChannelMsg::Push(PushBody::InventoryChanged { .. }) => {
                    pushes += 1;
                    continue;
                }
                ChannelMsg::Response(r) => match r.body {
                    ResponseBody::InventoryWrite { receipt } if !receipt.duplicate => (r.request_id, true),
                    other => {
                        if errors == 0 {
                            eprintln!("  grant: unexpected response {other:?}");
                        }
                        (r.request_id, false)
                    }
                },
                ChannelMsg::Error(e) if e.request_id != 0 => {
                    if errors == 0 {
                        eprintln!("  grant: error {:?} {}", e.code, e.message);
                    }
                    (e.request_id, false)
                }
                other => bail!("unexpected channel frame {other:?}"),
            };
            let t0 = sent.remove(&id).context("response to an unknown request id")?;
            if ok {
                acked += 1;
                if t0 >= warm_until && t0 < stop_at {
                    hist.record(t0.elapsed().as_micros().max(1) as u64)
                        .expect("in range");
                }
            } else {
                errors += 1;
            }
        }
    }
    .await;
    if let Err(e) = result {
        eprintln!("  grant loop {}: {e:#}", l.tag);
        errors += 1 + sent.len() as u64;
    }
    let _ = l.send.finish();
    LoopResult {
        hist,
        acked,
        errors,
        pushes,
    }
}

/// The player's gold balance, read on a fresh `Inventory` channel.
async fn gold_balance(conn: &quinn::Connection) -> Result<u64> {
    let (mut send, mut recv) = open_inventory(conn).await?;
    let req = ChannelMsg::Request(Request {
        request_id: 1,
        body: RequestBody::InventoryBalances,
    });
    send.write_all(&req.encode()).await?;
    loop {
        match ChannelMsg::decode(&read_frame(&mut recv).await?)? {
            ChannelMsg::Push(_) => continue,
            ChannelMsg::Response(Response {
                body: ResponseBody::InventoryBalances { balances },
                ..
            }) => {
                let _ = send.finish();
                return Ok(balances.iter().find(|a| a.id == "gold").map_or(0, |a| a.amount));
            }
            other => bail!("expected InventoryBalances, got {other:?}"),
        }
    }
}

/// One measurement of `case` against a gateway child (process `gateway_pid`)
/// started with grants enabled.
pub async fn grant_run(
    client: &Arc<Client>,
    addr: SocketAddr,
    gateway_pid: u32,
    case: GrantCase,
    secs: f64,
    tag: &str,
) -> Result<GrantRun> {
    let players: usize = env_or("OUTPOST_BENCH_GRANT_PLAYERS", 64);
    let hot_channels: usize = env_or("OUTPOST_BENCH_HOT_CHANNELS", 4);
    let hot_in_flight: usize = env_or("OUTPOST_BENCH_HOT_IN_FLIGHT", 16);
    let (sessions, channels, in_flight) = match case {
        GrantCase::ManyPlayers => (players, 1, 1),
        GrantCase::HotPlayer => (1, hot_channels, hot_in_flight),
    };

    // Log in and open every channel first; only then start the clock. The control
    // streams stay open (finishing one ends the session); the run is shorter than
    // the idle timeout, and channel traffic counts as activity anyway.
    let tag = tag.to_owned();
    let c = client.clone();
    let setup = bounded(sessions, 64, move |i| {
        let (c, tag) = (c.clone(), tag.clone());
        async move {
            let conn = c.connect(addr).await?;
            let (ctl_send, ctl_recv, _) = login(&conn, device(&tag, i)).await?;
            let mut loops = Vec::new();
            for ch in 0..channels {
                let (send, recv) = open_inventory(&conn).await?;
                loops.push(Loop {
                    send,
                    recv,
                    tag: format!("{tag}-{i}-{ch}"),
                });
            }
            Ok((conn, ctl_send, ctl_recv, loops))
        }
    })
    .await;
    let mut ready = Vec::new();
    for s in setup {
        ready.push(s?);
    }

    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + Duration::from_secs_f64(secs);
    let mut per_session = Vec::new();
    for (_, _, _, loops) in ready.iter_mut() {
        let tasks: Vec<_> = std::mem::take(loops)
            .into_iter()
            .map(|l| tokio::spawn(grant_loop(l, in_flight, warm_until, stop_at)))
            .collect();
        per_session.push(tasks);
    }

    // CPU of both processes over the measured window.
    let window_cpu = tokio::spawn(async move {
        tokio::time::sleep_until(warm_until.into()).await;
        let start = server_and_own_cpu_us(gateway_pid)?;
        tokio::time::sleep_until(stop_at.into()).await;
        let end = server_and_own_cpu_us(gateway_pid)?;
        Ok::<_, anyhow::Error>((end[0] - start[0], end[1] - start[1]))
    });

    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut errors, mut mismatches) = (0u64, 0usize);
    let (mut all_acked, mut pushes) = (0u64, 0u64);
    for ((conn, _ctl_send, _ctl_recv, _), tasks) in ready.into_iter().zip(per_session) {
        let mut acked = 0;
        for t in tasks {
            let r = t.await?;
            total.add(r.hist)?;
            acked += r.acked;
            errors += r.errors;
            pushes += r.pushes;
        }
        all_acked += acked;
        // Every acknowledged grant is in the balance exactly once.
        match gold_balance(&conn).await {
            Ok(b) if b == acked => {}
            Ok(b) => {
                if mismatches == 0 {
                    eprintln!("  grant: balance {b} ≠ {acked} acknowledged grants");
                }
                mismatches += 1;
            }
            Err(e) => {
                eprintln!("  grant: balance read failed: {e:#}");
                mismatches += 1;
            }
        }
        conn.close(0u32.into(), b"bench grants done");
    }
    let (gw_cpu, client_cpu) = window_cpu.await??;
    let in_window = total.len().max(1) as f64;
    Ok(GrantRun {
        gateway_cpu_us: gw_cpu as f64 / in_window,
        client_cpu_us: client_cpu as f64 / in_window,
        per_sec: total.len() as f64 / secs,
        p50_us: total.value_at_quantile(0.50),
        p99_us: total.value_at_quantile(0.99),
        errors,
        mismatches,
        pushes_per_grant: pushes as f64 / all_acked.max(1) as f64,
    })
}

/// The grants table (gateway only: bare quinn has no ledger), medians over rounds.
pub fn print_table(runs: &[Vec<GrantRun>; 2], rounds: usize, secs: f64) {
    let players: usize = env_or("OUTPOST_BENCH_GRANT_PLAYERS", 64);
    let hot_channels: usize = env_or("OUTPOST_BENCH_HOT_CHANNELS", 4);
    let hot_in_flight: usize = env_or("OUTPOST_BENCH_HOT_IN_FLIGHT", 16);
    println!();
    println!("## durable grants through the gateway (medians of {rounds} rounds, {secs} s each)");
    println!();
    println!(
        "| workload | grants/s | p50 (ms) | p99 (ms) | pushes per grant | errors | balance mismatches | per-round grants/s | gateway CPU µs/grant | client CPU µs/grant |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    let names = [
        format!("many players: {players} sessions × 1 channel × 1 in flight"),
        format!(
            "one hot player: 1 session × {hot_channels} channels × {hot_in_flight} in flight = {}",
            hot_channels * hot_in_flight
        ),
    ];
    for (name, v) in names.iter().zip(runs) {
        let rate: Vec<f64> = v.iter().map(|r| r.per_sec).collect();
        let p50 = median(v.iter().map(|r| r.p50_us as f64 / 1000.0).collect());
        let p99 = median(v.iter().map(|r| r.p99_us as f64 / 1000.0).collect());
        let pushes = median(v.iter().map(|r| r.pushes_per_grant).collect());
        let gw_cpu = median(v.iter().map(|r| r.gateway_cpu_us).collect());
        let client_cpu = median(v.iter().map(|r| r.client_cpu_us).collect());
        println!(
            "| {name} | {:.0} | {p50:.1} | {p99:.1} | {pushes:.2} | {} | {} | {} | {gw_cpu:.0} | {client_cpu:.0} |",
            median(rate.clone()),
            v.iter().map(|r| r.errors).sum::<u64>(),
            v.iter().map(|r| r.mismatches).sum::<usize>(),
            fmt_runs(&rate)
        );
    }
}

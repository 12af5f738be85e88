//! Issue-2 benchmark: the gateway beside bare quinn 0.11, measured in the same run
//! on the same machine. "Bare quinn" is the quinn the workspace builds, i.e.
//! quinn 0.11.12 with `third_party/quinn.patch` (two memory patches per
//! connection, third_party/README.md): the gateway and the bare server share
//! it, so a comparison between them is like for like, and a comparison with
//! unpatched quinn needs a bench binary built from before that patch.
//!
//! ```sh
//! CARGO_TARGET_DIR=target-bench cargo bench -p outpost-gateway --bench gateway
//! ```
//!
//! What it reports (medians over rounds that alternate gateway and bare quinn):
//! 1. logins per second and server CPU per login: fresh device logins (first use
//!    creates an account, a durable store write), device re-logins (store reads
//!    only) and session-token logins, beside the handshake rate and CPU of a bare
//!    quinn server with default `ServerConfig`/`TransportConfig` (same
//!    certificate, same concurrency); every gateway phase is paired with a bare
//!    phase run right beside it and the report gives medians of the per-pair
//!    ratios (`login.rs`);
//! 2. Ping/Pong round trips per second on the control stream with p50/p99
//!    latency, beside a bare quinn server echoing the same frame on a bidi stream;
//! 3. server RSS per idle session at 10,000 and 100,000 sessions, gateway and bare
//!    quinn with default and with the gateway's transport settings, and the
//!    servers' CPU while 100,000 sessions idle (`rss.rs`);
//! 4. durable inventory grants per second with p50/p99 through the gateway, many
//!    players and one hot player (issue 4; `grants.rs`, gateway only);
//! 5. only when `OUTPOST_BENCH_ONLY` names `queued`: server RSS per queued
//!    connection (issue 15; `queued.rs`), beside the idle-session figure when
//!    `rss` runs too;
//! 6. only when `OUTPOST_BENCH_ONLY` names `departures`: server and client
//!    CPU per session end (logout, and a telemetry report then logout),
//!    paired with bare quinn's close, and the SDK's own `Client::close`
//!    (issue 21; `departures.rs`).
//!
//! Servers always run in a child process (this binary re-executed with
//! `OUTPOST_BENCH_ROLE=gateway|bare`), so the child's `VmRSS` is the server's
//! alone and the parent is purely the load generator. The child prints
//! `READY <addr>` on stdout and exits when its stdin closes.
//!
//! The client speaks the real protocol (`outpost-schema` frames over raw quinn) to
//! the real gateway; it skips the SDK only because the SDK's per-session machinery
//! would make 10,000 sessions from one process needlessly expensive.
//!
//! Layout (one file per concern): `main.rs` (entry, the run and the report),
//! `children.rs` (the server children), `server.rs` (the parent's handle on a
//! child), `client.rs` (load-generator client, login, bounded concurrency),
//! `login.rs`, `ping.rs`, `rss.rs` (idle sessions), `grants.rs`, `queued.rs`,
//! `departures.rs`.
//!
//! Sizes (environment overrides):
//! `OUTPOST_BENCH_ROUNDS` (3), `OUTPOST_BENCH_LOGINS` (6000),
//! `OUTPOST_BENCH_LOGIN_CONCURRENCY` (128), `OUTPOST_BENCH_PING_SESSIONS` (100),
//! `OUTPOST_BENCH_PING_SECS` (5), `OUTPOST_BENCH_SESSIONS` (`10000,100000`),
//! `OUTPOST_BENCH_IDLE_CPU_SECS` (180), `OUTPOST_BENCH_IDLE` (`bare,matched,gateway`),
//! `OUTPOST_BENCH_IDLE_KEEPALIVE` (unset; `1`: idle gateway sessions send QUIC keep-alives too),
//! `OUTPOST_BENCH_OPEN_CONCURRENCY` (200), `OUTPOST_BENCH_GRANT_SECS` (5),
//! `OUTPOST_BENCH_GRANT_PLAYERS` (64), `OUTPOST_BENCH_HOT_CHANNELS` (4),
//! `OUTPOST_BENCH_HOT_IN_FLIGHT` (16), `OUTPOST_BENCH_ONLY` (`login,ping,rss,grants`;
//! also `queued`, `departures`), `OUTPOST_BENCH_QUEUED` (10000),
//! `OUTPOST_BENCH_DEPARTURES` (6000 sessions per departure phase),
//! `OUTPOST_BENCH_CHILD_WRAPPER` (e.g. `heaptrack`: profile the server children),
//! `OUTPOST_BENCH_LOGIN_ENDPOINTS` (`own`: each login connection on a client
//! endpoint of its own, as game clients; `shared`: all on one endpoint) and
//! `OUTPOST_BENCH_CLIENT_CIDS` (`zero`: the SDK's zero-length client connection
//! ids; `default`: quinn's), see `gateway/own_endpoints.rs`; both servers get the
//! same client,
//! `OUTPOST_BENCH_GROUP_COMMIT_LINGER_US` (the gateway child's store setting),
//! `OUTPOST_BENCH_GROUP_COMMIT_FIXED` (set: the child's group commit always waits
//! the whole linger, the behaviour before it adapted),
//! `OUTPOST_BENCH_BACKGROUND_NICE` (the child's `background_nice`: the nice value
//! of its store's flush and compaction threads, default 10),
//! `OUTPOST_BENCH_SYNC_REPORT` (set: the gateway child prints its store's journal
//! syncs, commits per sync and sync time every second, to stderr),
//! `OUTPOST_BENCH_PUSH_MIN_INTERVAL_MS` (the child's `session.push_min_interval_ms`).

/// The gateway binary's allocator (see `src/main.rs`); both server children run in
/// this binary, so the bare-quinn baseline gets the same one.
/// `--features bench-system-alloc` swaps it for the system allocator, for heap
/// profilers that hook malloc.
#[cfg(not(feature = "bench-system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use outpost_gateway::tls::ServerIdentity;
use outpost_gateway::GatewayConfig;
use outpost_schema::{
    ControlMsg, Credentials, FrameHeader, Hello, Welcome, LENGTH_PREFIX_BYTES, PROTOCOL_VERSION,
};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Semaphore;

const ROLE_ENV: &str = "OUTPOST_BENCH_ROLE";
const DIR_ENV: &str = "OUTPOST_BENCH_CHILD_DIR";
const CERTS_ENV: &str = "OUTPOST_BENCH_CHILD_CERTS";
const UNLIMITED_PINGS_ENV: &str = "OUTPOST_BENCH_CHILD_UNLIMITED_PINGS";
const GRANTS_ENV: &str = "OUTPOST_BENCH_CHILD_GRANTS";
const QUEUE_ENV: &str = "OUTPOST_BENCH_CHILD_QUEUE";

mod children;
mod client;
mod departures;
mod grants;
mod login;
mod own_endpoints;
mod ping;
mod queued;
mod rss;
mod server;

use children::{child_bare, child_gateway};
use client::{bounded, count_errors, device, login, read_frame, Client};
use ping::{ping_run, PingRun};
use rss::{idle_run, Idle};
use server::{Kind, Server};

fn main() -> Result<()> {
    let role = std::env::var(ROLE_ENV).unwrap_or_default();
    // Both sides use tokio's default multi-thread runtime, as the gateway binary does.
    let rt = tokio::runtime::Runtime::new()?;
    match role.as_str() {
        "gateway" => rt.block_on(child_gateway()),
        "bare" => rt.block_on(child_bare()),
        "" => rt.block_on(parent()),
        other => bail!("unknown {ROLE_ENV}={other}"),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- report --------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_runs(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
}

async fn parent() -> Result<()> {
    let rounds: usize = env_or("OUTPOST_BENCH_ROUNDS", 3);
    // 6,000 per kind: about 2 s per phase on the 2-core machine. With 2,000 a
    // phase lasted under a second and start-up transients (first connections,
    // runtime warm-up) weighed on every rate.
    let logins: usize = env_or("OUTPOST_BENCH_LOGINS", 6000);
    let login_conc: usize = env_or("OUTPOST_BENCH_LOGIN_CONCURRENCY", 128);
    let ping_sessions: usize = env_or("OUTPOST_BENCH_PING_SESSIONS", 100);
    let ping_secs: f64 = env_or("OUTPOST_BENCH_PING_SECS", 5.0);
    let sessions = rss::session_points();
    // 180 s: long enough for idle sessions to pass quinn's 32-event channel
    // block (about two minutes at one heartbeat per 10 s; rss.rs).
    let idle_cpu_secs: f64 = env_or("OUTPOST_BENCH_IDLE_CPU_SECS", 180.0);
    let open_conc: usize = env_or("OUTPOST_BENCH_OPEN_CONCURRENCY", 200);
    let grant_secs: f64 = env_or("OUTPOST_BENCH_GRANT_SECS", 5.0);
    let only = std::env::var("OUTPOST_BENCH_ONLY").unwrap_or_else(|_| "login,ping,rss,grants".into());

    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    let dev = outpost_gateway::tls::ensure_dev_certs(&certs)?;
    let ca = std::fs::read(&dev.ca_cert)?;
    let client = Arc::new(Client::new(&ca)?);
    eprintln!(
        "outpost gateway bench: {rounds} rounds, {logins} logins at {login_conc} in flight, \
         {ping_sessions} ping sessions × {ping_secs} s, idle sessions at {sessions:?}"
    );

    // Logins first, paired and interleaved with bare quinn (login.rs).
    let login_pairs = if only.contains("login") {
        Some(login::login_pairs(&client, dir.path(), &certs, rounds, logins, login_conc).await?)
    } else {
        None
    };
    // Departures: only when named (paired with bare quinn like the logins).
    let departures_n: usize = env_or("OUTPOST_BENCH_DEPARTURES", 6000);
    let departure_pairs = if only.contains("departures") {
        Some(
            departures::departure_rounds(&client, &ca, dir.path(), &certs, rounds, departures_n, login_conc)
                .await?,
        )
    } else {
        None
    };
    let mut ping: [Vec<PingRun>; 2] = [Vec::new(), Vec::new()];
    let mut grant_runs: [Vec<grants::GrantRun>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        if only.contains("grants") {
            // A fresh gateway child per round; the two cases alternate order.
            let data = dir.path().join(format!("grants-{round}"));
            let server = Server::spawn_with(Kind::Gateway, &data, &certs, &[GRANTS_ENV]).await?;
            let cases = if round % 2 == 0 {
                [grants::GrantCase::ManyPlayers, grants::GrantCase::HotPlayer]
            } else {
                [grants::GrantCase::HotPlayer, grants::GrantCase::ManyPlayers]
            };
            for case in cases {
                let r = grants::grant_run(
                    &client,
                    server.addr,
                    server.pid,
                    case,
                    grant_secs,
                    &format!("r{round}-{case:?}"),
                )
                .await?;
                eprintln!(
                    "round {round} grants {case:?}: {:.0}/s (p50 {} µs, p99 {} µs, {:.2} pushes/grant, {} errors, {} balance mismatches, CPU/grant gateway {:.0} µs, client {:.0} µs)",
                    r.per_sec, r.p50_us, r.p99_us, r.pushes_per_grant, r.errors, r.mismatches, r.gateway_cpu_us, r.client_cpu_us
                );
                grant_runs[(case == grants::GrantCase::HotPlayer) as usize].push(r);
            }
            server.stop().await;
        }
        // Alternate which server goes first, so slow drift in machine load does
        // not always favour the same side.
        let order = if round % 2 == 0 {
            [Kind::Bare, Kind::Gateway]
        } else {
            [Kind::Gateway, Kind::Bare]
        };
        for kind in order {
            let data = dir.path().join(format!("{}-{round}", kind.role()));
            let tag = format!("r{round}");
            if only.contains("ping") {
                let server = Server::spawn(kind, &data.with_extension("ping"), &certs, true).await?;
                let r = ping_run(
                    &client,
                    server.addr,
                    kind,
                    ping_sessions,
                    ping_secs,
                    &format!("{tag}-ping"),
                )
                .await?;
                eprintln!(
                    "round {round} {} pings/s: {:.0} (p50 {} µs, p99 {} µs, {} errors)",
                    kind.role(),
                    r.per_sec,
                    r.p50_us,
                    r.p99_us,
                    r.errors
                );
                ping[(kind == Kind::Gateway) as usize].push(r);
                server.stop().await;
            }
        }
    }

    let mut rss = Vec::new();
    if only.contains("rss") {
        for who in rss::idle_servers() {
            let data = dir.path().join(format!("{who:?}-rss"));
            rss.push(idle_run(&ca, who, &data, &certs, 100, &sessions, open_conc, idle_cpu_secs).await?);
        }
    }

    let queued_n: usize = env_or("OUTPOST_BENCH_QUEUED", 10_000);
    let queued_run = if only.contains("queued") {
        let data = dir.path().join("gateway-queued");
        Some(queued::queued_run(&client, &data, &certs, queued_n, open_conc).await?)
    } else {
        None
    };

    // ---- the table ----
    if let Some(p) = &login_pairs {
        login::print_login_pairs(p, login_conc);
    }
    if let Some(p) = &departure_pairs {
        departures::print_departures(p, login_conc);
    }
    if ["ping", "rss"].iter().any(|m| only.contains(m)) {
        println!();
        println!("## outpost gateway vs bare quinn 0.11 + third_party patch (medians of {rounds} rounds)");
        println!();
        println!(
            "| measurement | gateway | bare quinn | gateway / bare | target | per-round (gateway; bare) |"
        );
        println!("|---|---:|---:|---:|---|---|");
    }
    if only.contains("ping") {
        ping::print_rows(&ping, ping_sessions);
    }
    rss::print_rows(&rss);
    if let Some(q) = &queued_run {
        let idle = rss
            .iter()
            .find(|r| r.who == Idle::Gateway)
            .map_or("not run".to_owned(), |r| {
                format!("{:.1} KiB", r.per_session_kib(0))
            });
        println!(
            "\n| RSS per queued connection at {queued_n} (KiB) | {:.1} | idle session, same run: {idle} | gateway {}→{} KiB | errors {} |",
            q.per_session_kib(),
            q.baseline_kib,
            q.after_kib,
            q.errors
        );
    }
    if only.contains("grants") {
        grants::print_table(&grant_runs, rounds, grant_secs);
    }
    Ok(())
}

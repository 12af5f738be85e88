//! What a session's end costs (issue 21: in one of live-50k's drains, where
//! 1,667 players leave per second, each process took about half a core more
//! than in the hold): server and client CPU per departure, the gateway beside
//! bare quinn.
//!
//! Two departure kinds, as the SDK's `Client::close` does them:
//! - **logout**: the client finishes its control stream and closes the
//!   connection with code 0 (the gateway then ends the session's presence
//!   claim, a durable store write, and tears the session down);
//! - **report + logout**: first one telemetry report on the already open
//!   `Telemetry` channel, answered by `TelemetryAck` (the SDK flushes pending
//!   telemetry before it closes), then the logout.
//!
//! Bare quinn does the same on the wire: the close alone, or one frame echoed on
//! an already open bidi stream and then the close. A third kind runs the SDK
//! itself (`Client::close` with telemetry pending) against the gateway, beside
//! the raw client's report + logout, for the client side of a departure (the
//! load simulator's players are SDK clients).
//!
//! Each phase first opens `n` sessions (not measured), lets them settle, reads
//! the server's idle CPU for [`IDLE_WINDOW`], then ends all `n` at the login
//! run's concurrency and waits [`SETTLE`] for the server to finish closing.
//! Server CPU per departure = (CPU over departures and settle − the idle rate
//! × that time) / departures; this process's CPU likewise, for the client's
//! share. Phases are paired like the login run's: one gateway child and one
//! bare child for the whole run, the bare phase right beside each gateway
//! phase, the order alternating by round, and the report gives medians of the
//! per-round ratios.

use std::sync::Mutex;

use outpost_schema::{ChannelKind, ChannelMsg, Request, RequestBody, ResponseBody};

use super::server::server_and_own_cpu_us;
use super::*;

/// How long the idle rate is measured before the departures.
const IDLE_WINDOW: Duration = Duration::from_secs(1);
/// How long after the last close the server gets to finish (close frames,
/// presence writes, task teardown); its idle rate is subtracted for it.
const SETTLE: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DepartureKind {
    Logout,
    ReportThenLogout,
    /// The SDK's `Client::close` with telemetry pending (gateway only; the
    /// "bare" side of its pair is the raw client's `ReportThenLogout` against
    /// the same gateway, so the pair compares the clients' CPU).
    SdkClose,
}

const KINDS: [DepartureKind; 3] = [
    DepartureKind::Logout,
    DepartureKind::ReportThenLogout,
    DepartureKind::SdkClose,
];

/// One open session waiting to leave.
enum Held {
    /// The bench's raw quinn client.
    Raw {
        conn: quinn::Connection,
        control: quinn::SendStream,
        /// The telemetry channel (gateway) or echo stream (bare), when the kind reports.
        report: Option<(quinn::SendStream, quinn::RecvStream)>,
    },
    /// The SDK, on the bench client's shared endpoint (as the sim's players
    /// share a few endpoints).
    Sdk(outpost_client::Client),
}

/// A telemetry report like the SDK's flush sends: a few latency samples.
fn report_frame(request_id: u64) -> Vec<u8> {
    ChannelMsg::Request(Request {
        request_id,
        body: RequestBody::Telemetry {
            errors: Vec::new(),
            latencies_ms: vec![12.5, 31.0, 18.25],
        },
    })
    .encode()
}

/// Sends one report on `report` and waits for its answer (gateway: the
/// `TelemetryAck`; bare: the echo).
async fn report_once(kind: Kind, report: &mut (quinn::SendStream, quinn::RecvStream), id: u64) -> Result<()> {
    report.0.write_all(&report_frame(id)).await?;
    let frame = read_frame(&mut report.1).await?;
    if kind == Kind::Gateway {
        match ChannelMsg::decode(&frame)? {
            ChannelMsg::Response(r) if matches!(r.body, ResponseBody::TelemetryAck { .. }) => {}
            other => bail!("expected TelemetryAck, got {other:?}"),
        }
    }
    Ok(())
}

/// Three latency samples pending, as a player's requests leave them.
fn record_samples(c: &outpost_client::Client) {
    let t = c.telemetry();
    for ms in [12, 31, 18] {
        t.report_latency(Duration::from_millis(ms));
    }
}

async fn open_sdk(client: &Client, addr: SocketAddr, ca: &[u8], tag: &str, i: usize) -> Result<Held> {
    let trust = outpost_client::Trust::DevCa { pem: ca.to_vec() };
    let mut config = outpost_client::ClientConfig::new(vec![addr], trust, device(tag, i));
    config.endpoint = Some(client.endpoint.clone());
    // A departure is a logout, not a loss to recover from.
    config.auto_reconnect = false;
    let c = outpost_client::Client::connect(config).await?;
    // The channel is opened by a first flush, as the periodic one will have;
    // then samples are pending again for the close to flush.
    record_samples(&c);
    c.telemetry().flush().await;
    anyhow::ensure!(c.telemetry().stats().sent > 0, "first telemetry flush not sent");
    record_samples(&c);
    Ok(Held::Sdk(c))
}

async fn open_held(
    client: &Client,
    addr: SocketAddr,
    ca: &[u8],
    kind: Kind,
    depart: DepartureKind,
    tag: &str,
    i: usize,
) -> Result<Held> {
    if depart == DepartureKind::SdkClose {
        return open_sdk(client, addr, ca, tag, i).await;
    }
    let conn = client.connect(addr).await?;
    let (control, mut report) = match kind {
        Kind::Gateway => {
            let (send, _recv, _welcome) = login(&conn, device(tag, i)).await?;
            let report = if depart != DepartureKind::Logout {
                let (mut send, recv) = conn.open_bi().await?;
                send.write_all(&ChannelMsg::Open(ChannelKind::Telemetry).encode())
                    .await?;
                Some((send, recv))
            } else {
                None
            };
            (send, report)
        }
        Kind::Bare => {
            let (control, _recv) = conn.open_bi().await?;
            let report = match depart {
                DepartureKind::Logout => None,
                _ => Some(conn.open_bi().await?),
            };
            (control, report)
        }
    };
    // The channel has been used once before the departure, as the SDK's
    // periodic flush will have (a channel is opened on first use).
    if let Some(r) = report.as_mut() {
        report_once(kind, r, 1).await?;
    }
    Ok(Held::Raw {
        conn,
        control,
        report,
    })
}

/// Ends one session the way its kind does.
async fn leave(kind: Kind, h: Held) -> Result<()> {
    match h {
        Held::Raw {
            conn,
            mut control,
            mut report,
        } => {
            if let Some(r) = report.as_mut() {
                report_once(kind, r, 2).await?;
            }
            // As the SDK's `Command::Close`: finish the control stream, close with 0.
            let _ = control.finish();
            conn.close(0u32.into(), b"logout");
        }
        Held::Sdk(c) => {
            let sent = c.telemetry().stats().sent;
            c.close().await;
            anyhow::ensure!(c.telemetry().stats().sent > sent, "close did not flush telemetry");
        }
    }
    Ok(())
}

pub(super) struct DepartureRun {
    pub(super) per_sec: f64,
    /// Server CPU µs per departure, idle rate subtracted.
    pub(super) server_cpu_us: f64,
    /// This (client) process's CPU µs per departure, idle rate subtracted.
    pub(super) client_cpu_us: f64,
    pub(super) errors: usize,
}

/// What every phase of a run shares: the load generator and its sizes.
struct Load {
    client: Arc<Client>,
    /// The development CA, for the SDK's clients.
    ca: Arc<Vec<u8>>,
    /// Sessions opened and ended per phase.
    n: usize,
    concurrency: usize,
}

/// Opens `n` sessions on `server`, then ends them all (see the module docs).
async fn departure_run(
    load: &Load,
    server: &Server,
    kind: Kind,
    depart: DepartureKind,
    tag: &str,
) -> Result<DepartureRun> {
    let opened = {
        let (client, tag, ca) = (load.client.clone(), tag.to_owned(), load.ca.clone());
        let addr = server.addr;
        bounded(load.n, load.concurrency, move |i| {
            let (client, tag, ca) = (client.clone(), tag.clone(), ca.clone());
            async move { open_held(&client, addr, &ca, kind, depart, &tag, i).await }
        })
        .await
    };
    let mut errors = count_errors(&opened, &format!("{depart:?} open ({})", kind.role()));
    let held: Arc<Vec<Mutex<Option<Held>>>> = Arc::new(
        opened
            .into_iter()
            .flatten()
            .map(|h| Mutex::new(Some(h)))
            .collect(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // [server, this process]: the idle window ends where the departures start.
    let (idle_start, idle_cpu) = (Instant::now(), server_and_own_cpu_us(server.pid)?);
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_secs = idle_start.elapsed().as_secs_f64();
    let before = server_and_own_cpu_us(server.pid)?;
    let idle_rate = [0, 1].map(|i| (before[i] - idle_cpu[i]) as f64 / idle_secs);

    let start = Instant::now();
    let sessions = held.clone();
    let results = bounded(held.len(), load.concurrency, move |i| {
        let h = sessions[i].lock().expect("not poisoned").take();
        async move { leave(kind, h.context("taken twice")?).await }
    })
    .await;
    let closing = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    let span = start.elapsed().as_secs_f64();
    let after = server_and_own_cpu_us(server.pid)?;
    let [cpu, own] = [0, 1].map(|i| after[i].saturating_sub(before[i]) as f64 - idle_rate[i] * span);
    errors += count_errors(&results, &format!("{depart:?} ({})", kind.role()));
    let ok = results.iter().filter(|r| r.is_ok()).count();
    Ok(DepartureRun {
        per_sec: ok as f64 / closing.as_secs_f64(),
        server_cpu_us: cpu.max(0.0) / ok.max(1) as f64,
        client_cpu_us: own.max(0.0) / ok.max(1) as f64,
        errors,
    })
}

/// Every phase of a departure run, per round.
pub(super) struct DepartureRounds {
    /// Per round: the gateway's and bare quinn's runs of `Logout` and
    /// `ReportThenLogout`, and the gateway's `SdkClose`.
    rounds: Vec<Round>,
    n: usize,
}

struct Round {
    gateway: [DepartureRun; 3],
    bare: [DepartureRun; 2],
}

/// `rounds` rounds; one gateway and one bare child for the whole run. In a
/// round, each raw kind runs on both servers back to back (the order
/// alternating by round), then the SDK's close against the gateway.
pub(super) async fn departure_rounds(
    client: &Arc<Client>,
    ca: &[u8],
    dir: &Path,
    certs: &Path,
    rounds: usize,
    n: usize,
    concurrency: usize,
) -> Result<DepartureRounds> {
    let bare = Server::spawn(Kind::Bare, &dir.join("bare-departures"), certs, false).await?;
    let gateway = Server::spawn(Kind::Gateway, &dir.join("gateway-departures"), certs, false).await?;
    let load = Load {
        client: client.clone(),
        ca: Arc::new(ca.to_vec()),
        n,
        concurrency,
    };
    let mut out = DepartureRounds {
        rounds: Vec::new(),
        n,
    };
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Kind::Bare, Kind::Gateway]
        } else {
            [Kind::Gateway, Kind::Bare]
        };
        // Filled by kind: `KINDS` order on the gateway, the two raw kinds on bare quinn.
        let mut gateway_runs: [Option<DepartureRun>; 3] = Default::default();
        let mut bare_runs: [Option<DepartureRun>; 2] = Default::default();
        for (k, depart) in KINDS.into_iter().enumerate() {
            let servers: &[Kind] = if depart == DepartureKind::SdkClose {
                &[Kind::Gateway]
            } else {
                &order
            };
            for &kind in servers {
                let server = if kind == Kind::Gateway { &gateway } else { &bare };
                let tag = format!("dep-r{round}-{k}");
                let r = departure_run(&load, server, kind, depart, &tag).await?;
                eprintln!(
                    "round {round} {depart:?} {}: {:.0} departures/s, CPU per departure: server {:.0} µs, client {:.0} µs{}",
                    kind.role(),
                    r.per_sec,
                    r.server_cpu_us,
                    r.client_cpu_us,
                    if r.errors > 0 { format!(", {} errors", r.errors) } else { String::new() }
                );
                let slot = match kind {
                    Kind::Gateway => &mut gateway_runs[k],
                    Kind::Bare => &mut bare_runs[k],
                };
                *slot = Some(r);
            }
        }
        out.rounds.push(Round {
            gateway: gateway_runs.map(|r| r.expect("ran")),
            bare: bare_runs.map(|r| r.expect("ran")),
        });
    }
    gateway.stop().await;
    bare.stop().await;
    Ok(out)
}

pub(super) fn print_departures(p: &DepartureRounds, concurrency: usize) {
    let rounds = &p.rounds;
    println!();
    println!(
        "## departures: CPU per session end ({} rounds, {} sessions per phase, {concurrency} in flight; medians)",
        rounds.len(),
        p.n
    );
    println!();
    println!(
        "| departure | server | server CPU µs | **server CPU ratio (median of rounds)** | client | client CPU µs | per-round server µs (this; baseline) |"
    );
    println!("|---|---|---:|---:|---|---:|---|");
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let per_round = |f: &dyn Fn(&Round) -> (f64, f64)| {
        rounds
            .iter()
            .map(|r| {
                let (a, b) = f(r);
                format!("{a:.0}; {b:.0}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = [
        "logout (finish control stream, close 0)",
        "telemetry report, then logout",
    ];
    for (k, name) in names.iter().enumerate() {
        for (who, this) in [("bare quinn", false), ("gateway", true)] {
            fn pick(r: &Round, this: bool, k: usize) -> &DepartureRun {
                if this {
                    &r.gateway[k]
                } else {
                    &r.bare[k]
                }
            }
            println!(
                "| {name} | {who} | {:.0} | {} | raw quinn | {:.0} | {} |",
                med(&|r| pick(r, this, k).server_cpu_us),
                if this {
                    format!(
                        "**{:.2}× bare**",
                        med(&|r| r.gateway[k].server_cpu_us / r.bare[k].server_cpu_us)
                    )
                } else {
                    String::new()
                },
                med(&|r| pick(r, this, k).client_cpu_us),
                if this {
                    per_round(&|r| (r.gateway[k].server_cpu_us, r.bare[k].server_cpu_us))
                } else {
                    String::new()
                }
            );
        }
    }
    println!(
        "| the SDK's `Client::close` (report, then logout) | gateway | {:.0} | **{:.2}× raw client's** | SDK | {:.0} (**{:.2}×** raw client's) | {} |",
        med(&|r| r.gateway[2].server_cpu_us),
        med(&|r| r.gateway[2].server_cpu_us / r.gateway[1].server_cpu_us),
        med(&|r| r.gateway[2].client_cpu_us),
        med(&|r| r.gateway[2].client_cpu_us / r.gateway[1].client_cpu_us),
        per_round(&|r| (r.gateway[2].server_cpu_us, r.gateway[1].server_cpu_us))
    );
    let errors: usize = rounds
        .iter()
        .flat_map(|r| r.gateway.iter().chain(&r.bare))
        .map(|r| r.errors)
        .sum();
    if errors > 0 {
        println!(
            "
departure errors: {errors}"
        );
    }
}

//! RSS per idle session: the server child's resident memory before and after
//! opening many idle sessions that only heartbeat, at several session counts
//! (default 10,000 and 100,000: `OUTPOST_BENCH_SESSIONS=10000,100000`), for the
//! gateway and for bare quinn with default and with the gateway's transport
//! and TLS-release settings; then the server's CPU while the largest count idles, and its RSS
//! again at the end of that idle window.
//!
//! Why the second RSS reading: quinn keeps an event channel per connection,
//! and a tokio channel that has carried more than 32 events keeps a second
//! block of 32 slots for reuse. With one heartbeat every 10 s, an idle session
//! passes that point about two minutes after it opened, so a reading taken
//! seconds after opening understates a long-lived session (by 7.3 KiB per
//! session with unpatched quinn; docs/PERFORMANCE.md, "quinn patched"). The
//! default idle window (180 s) is long enough for the second reading to show it.

use super::*;
use crate::client::{bench_hello, hello_welcome};

/// The bare child uses the gateway's `TransportConfig`
/// (`outpost_gateway::endpoint::transport_config`) instead of quinn's default,
/// and releases rustls after the handshake as the gateway does
/// (`outpost_gateway::endpoint::quic_crypto`).
pub(super) const MATCHED_ENV: &str = "OUTPOST_BENCH_CHILD_MATCHED";

/// Sessions held per client endpoint (one UDP socket each): spreads the load
/// generator's receive path over several endpoint drivers.
const SESSIONS_PER_CLIENT: usize = 25_000;

pub(super) struct RssRun {
    pub(super) baseline_kib: u64,
    pub(super) after_kib: u64,
    pub(super) sessions: usize,
    pub(super) errors: usize,
}

impl RssRun {
    pub(super) fn per_session_kib(&self) -> f64 {
        (self.after_kib as f64 - self.baseline_kib as f64) / self.sessions as f64
    }
}

/// The servers the idle figures are taken for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Idle {
    Gateway,
    /// Quinn's default `ServerConfig`/`TransportConfig`.
    BareDefault,
    /// Quinn with the gateway's `TransportConfig` (streams, windows, timeouts).
    BareMatched,
}

impl Idle {
    fn kind(self) -> Kind {
        match self {
            Idle::Gateway => Kind::Gateway,
            Idle::BareDefault | Idle::BareMatched => Kind::Bare,
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Idle::BareMatched => &[MATCHED_ENV],
            Idle::Gateway | Idle::BareDefault => &[],
        }
    }
}

/// One server's idle run: RSS at each session count, then its CPU while idle.
pub(super) struct IdleRun {
    pub(super) who: Idle,
    pub(super) warmup: usize,
    pub(super) baseline_kib: u64,
    /// (sessions opened in total, sessions live: opened less failed and
    /// lost, RSS in KiB).
    pub(super) points: Vec<(usize, usize, u64)>,
    /// Server CPU while the last point's sessions idled: (µs used, seconds,
    /// sessions live at the end of the window).
    pub(super) idle_cpu: (u64, f64, usize),
    /// RSS in KiB at the end of that idle window (sessions live as above).
    pub(super) aged_kib: u64,
    /// Sessions that failed to open.
    pub(super) errors: usize,
    /// Sessions lost after they opened (idle timeouts under load).
    pub(super) lost: usize,
}

impl IdleRun {
    /// KiB per session added since the warm-up baseline.
    pub(super) fn per_session_kib(&self, i: usize) -> f64 {
        let (_, live, kib) = self.points[i];
        self.kib_per_session(kib, live)
    }

    /// KiB per session at the end of the idle window.
    pub(super) fn aged_per_session_kib(&self) -> f64 {
        self.kib_per_session(self.aged_kib, self.idle_cpu.2)
    }

    fn kib_per_session(&self, kib: u64, live: usize) -> f64 {
        (kib as f64 - self.baseline_kib as f64) / live.saturating_sub(self.warmup).max(1) as f64
    }

    /// Server CPU while idle, in % of one core, scaled to 100,000 sessions.
    pub(super) fn cpu_pct_per_100k(&self) -> f64 {
        let (us, secs, n) = self.idle_cpu;
        100.0 * (us as f64 / 1e6) / secs * 100_000.0 / n.max(1) as f64
    }
}

/// Hello → Welcome as a current SDK client sends it (it accepts resume-token
/// refreshes, so the gateway's refresh timer runs as in production).
async fn idle_login(
    conn: &quinn::Connection,
    credentials: Credentials,
) -> Result<(quinn::SendStream, quinn::RecvStream, Welcome)> {
    let hello = Hello {
        accepts_resume_refresh: true,
        ..bench_hello(credentials)
    };
    hello_welcome(conn, hello).await
}

/// Opens one idle session and keeps it alive until `stop` closes: a gateway
/// session pings at the heartbeat interval its Welcome asked for (and takes
/// the resume-token refreshes that arrive in between) and, like the SDK, sends
/// no QUIC keep-alive; a bare connection relies on the client's QUIC
/// keep-alive. A session lost before `stop`
/// (e.g. an idle timeout when the machine is too loaded to deliver
/// keep-alives in time) counts in `lost`.
pub(super) async fn hold_session(
    client: Arc<Client>,
    addr: SocketAddr,
    kind: Kind,
    credentials: Credentials,
    stop: Arc<Semaphore>,
    lost: Arc<AtomicUsize>,
) -> Result<tokio::task::JoinHandle<()>> {
    // Gateway sessions heartbeat as the SDK does, without QUIC keep-alives
    // (`OUTPOST_BENCH_IDLE_KEEPALIVE=1`: with them too, as before session 10).
    let conn = match kind {
        Kind::Gateway if !keepalive_on_gateway_sessions() => client.connect_as_sdk(addr).await?,
        _ => client.connect(addr).await?,
    };
    let control = match kind {
        Kind::Gateway => {
            let (send, recv, w) = idle_login(&conn, credentials).await?;
            Some((send, recv, Duration::from_millis(w.heartbeat_interval_ms.into())))
        }
        Kind::Bare => None,
    };
    Ok(tokio::spawn(async move {
        let stopped = stop.acquire();
        tokio::pin!(stopped);
        match control {
            Some((mut send, mut recv, every)) => {
                let mut nonce = 0;
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(every) => {
                            nonce += 1;
                            let f = ControlMsg::Ping { nonce }.encode();
                            if send.write_all(&f).await.is_err() || !pong(&mut recv, nonce).await {
                                if lost.fetch_add(1, Ordering::Relaxed) == 0 {
                                    eprintln!("  held session lost (first of the run)");
                                }
                                break;
                            }
                        }
                    }
                }
            }
            None => {
                tokio::select! {
                    _ = &mut stopped => {}
                    _ = conn.closed() => {
                        if lost.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("  held connection lost (first of the run)");
                        }
                    }
                }
            }
        }
        conn.close(0u32.into(), b"bench rss done");
    }))
}

/// `OUTPOST_BENCH_IDLE_KEEPALIVE=1`: idle gateway sessions also send QUIC
/// keep-alives (the bench's behaviour before session 10), for an A/B.
fn keepalive_on_gateway_sessions() -> bool {
    std::env::var("OUTPOST_BENCH_IDLE_KEEPALIVE").as_deref() == Ok("1")
}

/// Reads control frames until the Pong for `nonce` (a resume-token refresh
/// may come first); `false` if the stream fails.
async fn pong(recv: &mut quinn::RecvStream, nonce: u64) -> bool {
    loop {
        let Ok(frame) = read_frame(recv).await else {
            return false;
        };
        match ControlMsg::decode(&frame) {
            Ok(ControlMsg::Pong { nonce: n }) if n == nonce => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// Session counts to measure at, from `OUTPOST_BENCH_SESSIONS` (comma-separated
/// totals, warm-up included; default `10000,100000`).
pub(super) fn session_points() -> Vec<usize> {
    let spec = std::env::var("OUTPOST_BENCH_SESSIONS").unwrap_or_else(|_| "10000,100000".into());
    let mut v: Vec<usize> = spec.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Creates `n` device accounts in a separate gateway process on `data`, so the
/// measured process only reads them: store memory for 100,000 new accounts
/// (memtable, journal) is not session memory.
async fn create_accounts(
    clients: &[Arc<Client>],
    data: &Path,
    certs: &Path,
    n: usize,
    conc: usize,
) -> Result<()> {
    let prep = Server::spawn(Kind::Gateway, data, certs, false).await?;
    let (cs, addr) = (clients.to_vec(), prep.addr);
    let t0 = Instant::now();
    let results = bounded(n, conc, move |i| {
        let c = cs[i % cs.len()].clone();
        async move {
            let conn = c.connect(addr).await?;
            login(&conn, device("rss", i)).await?;
            conn.close(0u32.into(), b"account created");
            Ok(())
        }
    })
    .await;
    let errors = count_errors(&results, "rss account creation");
    prep.stop().await;
    eprintln!("  {n} accounts created in {:.1} s", t0.elapsed().as_secs_f64());
    if errors > 0 {
        bail!("{errors} accounts could not be created");
    }
    Ok(())
}

/// Opens sessions up to each of `points` (totals) on a fresh server child,
/// sampling its RSS at each, then its CPU over `cpu_secs` of idling.
#[allow(clippy::too_many_arguments)]
pub(super) async fn idle_run(
    ca: &[u8],
    who: Idle,
    data: &Path,
    certs: &Path,
    warmup: usize,
    points: &[usize],
    concurrency: usize,
    cpu_secs: f64,
) -> Result<IdleRun> {
    let total = *points.last().context("no session counts")?;
    let clients = (0..total.div_ceil(SESSIONS_PER_CLIENT).max(1))
        .map(|_| Client::new(ca).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let kind = who.kind();
    if kind == Kind::Gateway {
        create_accounts(&clients, data, certs, total, concurrency).await?;
    }
    let server = Server::spawn_with(kind, data, certs, who.flags()).await?;
    let stop = Arc::new(Semaphore::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let open = |range: std::ops::Range<usize>| {
        let (cs, stop, lost) = (clients.clone(), stop.clone(), lost.clone());
        let (start, addr) = (range.start, server.addr);
        bounded(range.len(), concurrency, move |i| {
            let (c, stop, lost) = (cs[(start + i) % cs.len()].clone(), stop.clone(), lost.clone());
            hold_session(c, addr, kind, device("rss", start + i), stop, lost)
        })
    };
    let mut held = open(0..warmup).await;
    let mut errors = count_errors(&held, "rss warm-up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline_kib = server.rss_kib_settled().await?;
    let mut points_kib = Vec::new();
    let mut open_now = warmup;
    for &n in points {
        let open_before = open_now;
        let t0 = Instant::now();
        let more = open(open_now..n).await;
        let e = count_errors(&more, "rss sessions");
        errors += e;
        held.extend(more);
        let opened_in = t0.elapsed();
        open_now = n;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let kib = server.rss_kib_settled().await?;
        // Sessions that failed to open or were lost since hold no memory of
        // their own any more: the per-session figure divides by those alive.
        let gone = lost.load(Ordering::Relaxed);
        let opened = n - open_before;
        eprintln!(
            "  {who:?}: {n} sessions ({e} failed, {gone} lost so far; {opened} opened in {:.1} s, {:.0}/s), \
             RSS {baseline_kib} → {kib} KiB, load average {}",
            opened_in.as_secs_f64(),
            opened as f64 / opened_in.as_secs_f64().max(1e-9),
            load_average(),
        );
        points_kib.push((n, n.saturating_sub(errors + gone), kib));
    }
    let cpu0 = server.cpu_us()?;
    tokio::time::sleep(Duration::from_secs_f64(cpu_secs)).await;
    let idle_cpu = (server.cpu_us()? - cpu0, cpu_secs);
    let alive = open_now.saturating_sub(errors + lost.load(Ordering::Relaxed));
    let aged_kib = server.rss_kib_settled().await?;
    eprintln!(
        "  {who:?}: server CPU {:.2} s over {cpu_secs} s idle at {alive} live sessions ({open_now} opened), \
         RSS then {aged_kib} KiB, load average {}",
        idle_cpu.0 as f64 / 1e6,
        load_average(),
    );
    stop.close();
    for h in held.into_iter().flatten() {
        let _ = h.await;
    }
    server.stop().await;
    for c in &clients {
        c.endpoint.wait_idle().await;
    }
    Ok(IdleRun {
        who,
        warmup,
        baseline_kib,
        points: points_kib,
        idle_cpu: (idle_cpu.0, idle_cpu.1, alive),
        aged_kib,
        errors,
        lost: lost.load(Ordering::Relaxed),
    })
}

/// `/proc/loadavg`'s three averages, for the log: the machine is shared.
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The servers to run, from `OUTPOST_BENCH_IDLE` (comma-separated `bare`,
/// `matched`, `gateway`; default all three, in that order).
pub(super) fn idle_servers() -> Vec<Idle> {
    let spec = std::env::var("OUTPOST_BENCH_IDLE").unwrap_or_else(|_| "bare,matched,gateway".into());
    spec.split(',')
        .filter_map(|w| match w.trim() {
            "bare" => Some(Idle::BareDefault),
            "matched" => Some(Idle::BareMatched),
            "gateway" => Some(Idle::Gateway),
            _ => None,
        })
        .collect()
}

/// The idle rows of the bench's table.
pub(super) fn print_rows(runs: &[IdleRun]) {
    if runs.is_empty() {
        return;
    }
    let cols =
        [Idle::Gateway, Idle::BareDefault, Idle::BareMatched].map(|w| runs.iter().find(|r| r.who == w));
    let points = runs.iter().map(|r| r.points.len()).max().unwrap_or(0);
    println!();
    println!(
        "| idle sessions | gateway | bare quinn, default transport | bare quinn, gateway's transport | target | RSS KiB (baseline→after): gateway; bare default; bare matched |"
    );
    println!("|---|---:|---:|---:|---|---|");
    for i in 0..points {
        let n = runs.iter().find_map(|r| r.points.get(i)).map_or(0, |p| p.0);
        let per = |r: &Option<&IdleRun>| match r {
            Some(r) if i < r.points.len() => format!("{:.1}", r.per_session_kib(i)),
            _ => "—".into(),
        };
        let kib = |r: &Option<&IdleRun>| match r {
            Some(r) if i < r.points.len() => {
                let (_, live, kib) = r.points[i];
                format!("{}→{kib} ({live} live)", r.baseline_kib)
            }
            _ => "—".into(),
        };
        println!(
            "| RSS per idle session at {n} (KiB) | {} | {} | {} | ≤ 16 KiB | {}; {}; {} |",
            per(&cols[0]),
            per(&cols[1]),
            per(&cols[2]),
            kib(&cols[0]),
            kib(&cols[1]),
            kib(&cols[2])
        );
    }
    let aged = |r: &Option<&IdleRun>| r.map_or("—".into(), |r| format!("{:.1}", r.aged_per_session_kib()));
    let aged_kib = |r: &Option<&IdleRun>| {
        r.map_or("—".into(), |r| {
            format!("{}→{} ({} live)", r.baseline_kib, r.aged_kib, r.idle_cpu.2)
        })
    };
    let secs = runs.iter().map(|r| r.idle_cpu.1).fold(0.0, f64::max);
    println!(
        "| RSS per idle session after {secs:.0} s idle at the last count (KiB) | {} | {} | {} | ≤ 16 KiB | {}; {}; {} |",
        aged(&cols[0]),
        aged(&cols[1]),
        aged(&cols[2]),
        aged_kib(&cols[0]),
        aged_kib(&cols[1]),
        aged_kib(&cols[2])
    );
    let cpu = |r: &Option<&IdleRun>| r.map_or("—".into(), |r| format!("{:.2}", r.cpu_pct_per_100k()));
    let at = |r: &Option<&IdleRun>| {
        r.map_or("—".into(), |r| {
            format!("{} sessions, {:.0} s", r.idle_cpu.2, r.idle_cpu.1)
        })
    };
    println!(
        "| server CPU while idle, % of one core per 100,000 sessions | {} | {} | {} | measured | {}; {}; {} |",
        cpu(&cols[0]),
        cpu(&cols[1]),
        cpu(&cols[2]),
        at(&cols[0]),
        at(&cols[1]),
        at(&cols[2])
    );
    let errors: Vec<String> = runs
        .iter()
        .filter(|r| r.errors + r.lost > 0)
        .map(|r| {
            format!(
                "{:?} {} failed to open, {} lost while held",
                r.who, r.errors, r.lost
            )
        })
        .collect();
    if !errors.is_empty() {
        println!("\nidle-session errors: {}", errors.join(", "));
    }
}

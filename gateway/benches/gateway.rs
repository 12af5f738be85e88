//! Issue-2 benchmark: the gateway beside bare quinn 0.11, measured in the same run
//! on the same machine.
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
//!    `rss` runs too.
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
//! Sizes (environment overrides):
//! `OUTPOST_BENCH_ROUNDS` (3), `OUTPOST_BENCH_LOGINS` (6000),
//! `OUTPOST_BENCH_LOGIN_CONCURRENCY` (128), `OUTPOST_BENCH_PING_SESSIONS` (100),
//! `OUTPOST_BENCH_PING_SECS` (5), `OUTPOST_BENCH_SESSIONS` (`10000,100000`),
//! `OUTPOST_BENCH_IDLE_CPU_SECS` (60), `OUTPOST_BENCH_IDLE` (`bare,matched,gateway`),
//! `OUTPOST_BENCH_OPEN_CONCURRENCY` (200), `OUTPOST_BENCH_GRANT_SECS` (5),
//! `OUTPOST_BENCH_GRANT_PLAYERS` (64), `OUTPOST_BENCH_HOT_CHANNELS` (4),
//! `OUTPOST_BENCH_HOT_IN_FLIGHT` (16), `OUTPOST_BENCH_ONLY` (`login,ping,rss,grants`;
//! also `queued`), `OUTPOST_BENCH_QUEUED` (10000),
//! `OUTPOST_BENCH_CHILD_WRAPPER` (e.g. `heaptrack`: profile the server children),
//! `OUTPOST_BENCH_LOGIN_ENDPOINTS` (`own`: each login connection on a client
//! endpoint of its own, as game clients; `shared`: all on one endpoint) and
//! `OUTPOST_BENCH_CLIENT_CIDS` (`zero`: the SDK's zero-length client connection
//! ids; `default`: quinn's), see `gateway/own_endpoints.rs`; both servers get the
//! same client,
//! `OUTPOST_BENCH_GROUP_COMMIT_LINGER_US` (the gateway child's store setting),
//! `OUTPOST_BENCH_GROUP_COMMIT_FIXED` (set: the child's group commit always waits
//! the whole linger, the behaviour before it adapted).

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

#[path = "gateway/grants.rs"]
mod grants;
#[path = "gateway/login.rs"]
mod login;
#[path = "gateway/own_endpoints.rs"]
mod own_endpoints;
#[path = "gateway/queued.rs"]
mod queued;
#[path = "gateway/rss.rs"]
mod rss;

use own_endpoints::{client_socket_config, Lease, OwnEndpoints};
use rss::{idle_run, Idle};

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

// ---- server children ---------------------------------------------------------

fn child_paths() -> Result<(PathBuf, PathBuf)> {
    let dir = std::env::var_os(DIR_ENV).context("child data dir")?;
    let certs = std::env::var_os(CERTS_ENV).context("child certs dir")?;
    Ok((dir.into(), certs.into()))
}

/// Waits until the parent closes our stdin (or the parent dies).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

fn server_config(data: &Path, certs: &Path) -> GatewayConfig {
    // Defaults throughout (socket buffers, transport windows, limits, timeouts),
    // only the addresses and directories are the bench's.
    let mut c = GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("literal"),
        admin_listen: "127.0.0.1:0".parse().expect("literal"),
        data_dir: data.to_owned(),
        ..GatewayConfig::default()
    };
    c.tls.dev_certs_dir = certs.to_owned();
    if std::env::var_os("OUTPOST_BENCH_NO_GSO").is_some() {
        // A/B of `transport.segmentation_offload` (gateway and matched bare quinn).
        c.transport.segmentation_offload = false;
    }
    c
}

async fn child_gateway() -> Result<()> {
    let (data, certs) = child_paths()?;
    let mut config = server_config(&data, &certs);
    if std::env::var_os(UNLIMITED_PINGS_ENV).is_some() {
        // The ping-throughput run measures the control-stream round trip, so the
        // per-session control rate limit (default 20/s, kick above it) is lifted.
        config.limits.control_rate_per_sec = 1e9;
        config.limits.control_burst = 1e9;
    }
    if std::env::var_os(GRANTS_ENV).is_some() {
        // The grants run measures the ledger path through the gateway: client
        // grants on (development setting), per-session request rate limit
        // (default 200/s, burst 400) lifted. In-flight limits stay at defaults.
        config.inventory.client_grants = true;
        config.limits.request_rate_per_sec = 1e9;
        config.limits.request_burst = 1e9;
    }
    if std::env::var_os("OUTPOST_BENCH_NO_PRESENCE").is_some() {
        // Attribution experiment: the login path without the cross-gateway
        // presence claim/release (two durable store writes per session).
        config.session.cross_gateway_presence = false;
    }
    if let Ok(us) = std::env::var("OUTPOST_BENCH_GROUP_COMMIT_LINGER_US") {
        // A/B of the embedded store's group-commit linger (default 1,000 µs).
        let mut store = config.region_store();
        if let Some(e) = store.embedded.as_mut() {
            e.group_commit_linger_us = us.parse()?;
        }
        config.store = Some(store);
    }
    if std::env::var_os("OUTPOST_BENCH_GROUP_COMMIT_FIXED").is_some() {
        // A/B of the adaptive group commit: the fixed linger it replaced.
        let mut store = config.region_store();
        if let Some(e) = store.embedded.as_mut() {
            e.group_commit_adaptive = false;
        }
        config.store = Some(store);
    }
    if std::env::var_os(QUEUE_ENV).is_some() {
        // The queued-connection run: the region login queue on, a budget the
        // warm-up sessions fill, so every later login waits in the queue.
        config.queue.enabled = true;
        config.queue.max_sessions = queued::QUEUE_BUDGET;
        // Every bench client comes from 127.0.0.1: the per-address bound
        // (default 32) would refuse all but the first few.
        config.queue.max_places_per_address = 0;
    }
    let running = outpost_gateway::start(config).await?;
    println!("READY {}", running.quic_addr);
    let handle = running.handle();
    stdin_closed().await;
    handle.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), running.wait()).await;
    Ok(())
}

/// Bare quinn: default `ServerConfig` and `TransportConfig`, the gateway's
/// certificate and TLS settings (TLS 1.3, ALPN `outpost/1`), and the same UDP
/// socket sizing as the gateway (socket buffers are a kernel setting, not quinn's;
/// with the kernel's 208 KiB default a login burst drops packets, see DESIGN.md).
/// It accepts connections and echoes length-prefixed frames on any bidi stream.
async fn child_bare() -> Result<()> {
    let (data, certs) = child_paths()?;
    let config = server_config(&data, &certs);
    let tls = ServerIdentity::load(&config.tls)?.rustls_config()?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    if std::env::var_os(rss::MATCHED_ENV).is_some() {
        // Bare quinn with the gateway's transport parameters (streams, windows,
        // idle timeout), for the idle-session memory comparison.
        server.transport_config(Arc::new(outpost_gateway::endpoint::transport_config(&config)));
    }
    let (socket, _) = outpost_gateway::endpoint::bind_udp(&config)?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    println!("READY {}", endpoint.local_addr()?);
    let ep = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        while let Ok(frame) = read_frame(&mut recv).await {
                            if send.write_all(&frame).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
    });
    stdin_closed().await;
    endpoint.close(0u32.into(), b"bench done");
    Ok(())
}

// ---- the parent: load generator ------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Gateway,
    Bare,
}

impl Kind {
    fn role(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Bare => "bare",
        }
    }
}

/// A server child process.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    pid: u32,
}

impl Server {
    async fn spawn(kind: Kind, data: &Path, certs: &Path, unlimited_pings: bool) -> Result<Server> {
        let env: &[&str] = if unlimited_pings {
            &[UNLIMITED_PINGS_ENV]
        } else {
            &[]
        };
        Server::spawn_with(kind, data, certs, env).await
    }

    /// `flags`: environment variables set to `1` in the child.
    async fn spawn_with(kind: Kind, data: &Path, certs: &Path, flags: &[&str]) -> Result<Server> {
        // `OUTPOST_BENCH_CHILD_WRAPPER="heaptrack"` (or `valgrind --tool=massif`)
        // runs the server children under a profiler; their RSS then includes it.
        let wrapper = std::env::var("OUTPOST_BENCH_CHILD_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(std::env::current_exe()?);
                c
            }
            None => Command::new(std::env::current_exe()?),
        };
        cmd.env(ROLE_ENV, kind.role())
            .env(DIR_ENV, data)
            .env(CERTS_ENV, certs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for flag in flags {
            cmd.env(flag, "1");
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().context("child pid")?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        // Skip what a profiler wrapper may print first.
        let ready = async {
            loop {
                match lines.next_line().await? {
                    Some(line) => match line.strip_prefix("READY ") {
                        Some(addr) => return Ok::<SocketAddr, anyhow::Error>(addr.parse()?),
                        None => eprintln!("  child: {line}"),
                    },
                    None => bail!("child exited before READY"),
                }
            }
        };
        let addr = tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .context("child did not start in 60 s")??;
        Ok(Server {
            child,
            stdin,
            addr,
            pid,
        })
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS")
    }

    /// CPU time the server process has used so far (user + system, all threads),
    /// in microseconds, from `/proc/<pid>/stat` (clock ticks of 1/100 s: the
    /// kernel's USER_HZ on Linux x86_64 and aarch64).
    fn cpu_us(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the parenthesised command name; utime and stime are the
        // 14th and 15th fields of the whole line.
        let rest = stat.rsplit_once(')').context("stat format")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
        Ok(ticks * 10_000)
    }

    /// Median of a few samples, so one sample taken mid-allocation does not decide.
    async fn rss_kib_settled(&self) -> Result<u64> {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(self.rss_kib()?);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        v.sort_unstable();
        Ok(v[v.len() / 2])
    }

    async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

struct Client {
    endpoint: quinn::Endpoint,
    /// Login runs: endpoints of their own, one connection each (see
    /// [`Client::connect_own`]); `None` when `OUTPOST_BENCH_LOGIN_ENDPOINTS=shared`.
    own: Option<OwnEndpoints>,
}

impl Client {
    fn new(ca_pem: &[u8]) -> Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![outpost_schema::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        // The SDK's transport settings, so the bench client puts the same datagrams
        // on the wire as a game client (e.g. no MTU probes by default).
        let mut transport = outpost_client::quic_transport_config(false);
        // Keeps idle connections alive at the QUIC level (both servers' idle
        // timeout is 30 s); gateway sessions also send Ping as Welcome asks.
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
        cc.transport_config(Arc::new(transport));
        let (socket, _) = outpost_gateway::endpoint::bind_udp(&client_socket_config()?)?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(cc.clone());
        let own = match std::env::var("OUTPOST_BENCH_LOGIN_ENDPOINTS").as_deref() {
            Ok("shared") => None,
            Ok("own") | Err(_) => Some(OwnEndpoints {
                zero_length_cids: std::env::var("OUTPOST_BENCH_CLIENT_CIDS").as_deref() != Ok("default"),
                cc,
                idle: Default::default(),
            }),
            Ok(other) => bail!("OUTPOST_BENCH_LOGIN_ENDPOINTS={other}: own or shared"),
        };
        Ok(Client { endpoint, own })
    }

    async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection> {
        Ok(self.endpoint.connect(addr, "localhost")?.await?)
    }

    /// A login run's connection: on an endpoint of its own (see [`OwnEndpoints`]),
    /// held until the returned lease drops, or on the shared endpoint.
    async fn connect_own(&self, addr: SocketAddr) -> Result<(quinn::Connection, Option<Lease<'_>>)> {
        let Some(pool) = &self.own else {
            return Ok((self.connect(addr).await?, None));
        };
        let lease = pool.lease()?;
        let e = lease.endpoint.as_ref().expect("leased");
        let conn = e.connect(addr, "localhost")?.await?;
        Ok((conn, Some(lease)))
    }

    /// What the login runs' client endpoints are, for the report.
    fn login_endpoints(&self) -> &'static str {
        match &self.own {
            None => "one shared client endpoint, quinn's default 8-byte connection ids",
            Some(p) if p.zero_length_cids => {
                "an endpoint per client connection with the SDK's zero-length connection ids"
            }
            Some(_) => "an endpoint per client connection with quinn's default 8-byte connection ids",
        }
    }
}

async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    recv.read_exact(&mut prefix).await?;
    let h = FrameHeader::parse(prefix, 1 << 20)?;
    let mut frame = vec![0u8; LENGTH_PREFIX_BYTES + h.len as usize];
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
    recv.read_exact(&mut frame[LENGTH_PREFIX_BYTES..]).await?;
    Ok(frame)
}

fn device(tag: &str, i: usize) -> Credentials {
    Credentials::Device {
        device_id: format!("bench-{tag}-{i:06}"),
        secret: "bench-secret-0123456789".into(),
    }
}

/// Hello → Welcome on a fresh control stream.
async fn login(
    conn: &quinn::Connection,
    credentials: Credentials,
) -> Result<(quinn::SendStream, quinn::RecvStream, Welcome)> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "outpost-bench".into(),
        credentials: Some(credentials),
        ..Default::default()
    });
    send.write_all(&hello.encode()).await?;
    match ControlMsg::decode(&read_frame(&mut recv).await?)? {
        ControlMsg::Welcome(w) => Ok((send, recv, w)),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// Runs `work(i)` for i in 0..n with at most `concurrency` in flight.
async fn bounded<F, Fut, T>(n: usize, concurrency: usize, work: F) -> Vec<Result<T>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send,
    T: Send + 'static,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(n.max(1)) {
        let (work, next) = (work.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                out.push((i, work(i).await));
            }
            out
        }));
    }
    let mut all: Vec<(usize, Result<T>)> = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await.expect("worker panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

fn count_errors<T>(results: &[Result<T>], what: &str) -> usize {
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = errors.first() {
        eprintln!("  {what}: {} failed, first error: {e:#}", errors.len());
    }
    errors.len()
}

// ---- 2. ping RPCs --------------------------------------------------------------

struct PingRun {
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    errors: usize,
}

/// `sessions` closed loops of one request frame → one reply frame, for `secs`
/// (after a 1 s warm-up that is not recorded).
async fn ping_run(
    client: &Arc<Client>,
    addr: SocketAddr,
    kind: Kind,
    sessions: usize,
    secs: f64,
    tag: &str,
) -> Result<PingRun> {
    // Set up every session first; only then start the clock.
    let tag = tag.to_owned();
    let c = client.clone();
    let streams = bounded(sessions, 64, move |i| {
        let (c, tag) = (c.clone(), tag.clone());
        async move {
            let conn = c.connect(addr).await?;
            let (send, recv) = match kind {
                Kind::Gateway => {
                    let (s, r, _) = login(&conn, device(&tag, i)).await?;
                    (s, r)
                }
                Kind::Bare => conn.open_bi().await?,
            };
            Ok((conn, send, recv))
        }
    })
    .await;
    let mut ready = Vec::new();
    for s in streams {
        ready.push(s?);
    }
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + Duration::from_secs_f64(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (conn, mut send, mut recv)) in ready.into_iter().enumerate() {
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut nonce = (i as u64) << 32;
            while Instant::now() < stop_at {
                nonce += 1;
                let frame = ControlMsg::Ping { nonce }.encode();
                let t0 = Instant::now();
                let ok = async {
                    send.write_all(&frame).await?;
                    let reply = read_frame(&mut recv).await?;
                    match kind {
                        Kind::Bare if reply == frame => Ok(()),
                        Kind::Gateway if ControlMsg::decode(&reply)? == (ControlMsg::Pong { nonce }) => {
                            Ok(())
                        }
                        _ => bail!("unexpected reply"),
                    }
                }
                .await;
                if let Err(e) = ok {
                    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("  ping {kind:?}: {e:#}");
                    }
                    break;
                }
                if t0 >= warm_until {
                    hist.record(t0.elapsed().as_micros().max(1) as u64)
                        .expect("in range");
                }
            }
            conn.close(0u32.into(), b"bench ping done");
            hist
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        total.add(t.await?)?;
    }
    Ok(PingRun {
        per_sec: total.len() as f64 / secs,
        p50_us: total.value_at_quantile(0.50),
        p99_us: total.value_at_quantile(0.99),
        errors: errors.load(Ordering::Relaxed) as usize,
    })
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
    let idle_cpu_secs: f64 = env_or("OUTPOST_BENCH_IDLE_CPU_SECS", 60.0);
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
                    case,
                    grant_secs,
                    &format!("r{round}-{case:?}"),
                )
                .await?;
                eprintln!(
                    "round {round} grants {case:?}: {:.0}/s (p50 {} µs, p99 {} µs, {:.2} pushes/grant, {} errors, {} balance mismatches)",
                    r.per_sec, r.p50_us, r.p99_us, r.pushes_per_grant, r.errors, r.mismatches
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
    if ["ping", "rss"].iter().any(|m| only.contains(m)) {
        println!();
        println!("## outpost gateway vs bare quinn 0.11 (medians of {rounds} rounds)");
        println!();
        println!(
            "| measurement | gateway | bare quinn | gateway / bare | target | per-round (gateway; bare) |"
        );
        println!("|---|---:|---:|---:|---|---|");
    }
    if only.contains("ping") {
        let col = |k: usize, f: fn(&PingRun) -> f64| -> (f64, Vec<f64>) {
            let v: Vec<f64> = ping[k].iter().map(f).collect();
            (median(v.clone()), v)
        };
        type Pick = fn(&PingRun) -> f64;
        let rows: [(&str, Pick); 3] = [
            ("Ping RPCs/s", |r| r.per_sec),
            ("Ping p50 latency (µs)", |r| r.p50_us as f64),
            ("Ping p99 latency (µs)", |r| r.p99_us as f64),
        ];
        for (name, f) in rows {
            let ((g, gv), (b, bv)) = (col(1, f), col(0, f));
            println!(
                "| {name}, {ping_sessions} sessions | {g:.0} | {b:.0} | {:.0}% | — | {}; {} |",
                100.0 * g / b,
                fmt_runs(&gv),
                fmt_runs(&bv)
            );
        }
        let errs: usize = ping.iter().flatten().map(|r| r.errors).sum();
        if errs > 0 {
            println!("\nping errors: {errs}");
        }
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

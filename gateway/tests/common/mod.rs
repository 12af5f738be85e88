//! Test harness: real gateways on loopback with the real embedded store in a temp
//! dir, the real SDK, and a raw quinn client for sending what the SDK never would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use outpost_backend::store::{AnyStore, StoreConfig};
use outpost_client::{ClientConfig, Credentials, ReconnectPolicy, Trust};
use outpost_gateway::admin::client::AdminClient;
use outpost_gateway::{GatewayConfig, GatewayHandle, RunningGateway};
use outpost_schema::{ControlMsg, FrameHeader, Hello, Welcome, LENGTH_PREFIX_BYTES, PROTOCOL_VERSION};
use tempfile::TempDir;

/// The admin token of every gateway made from [`World::config`]; [`http`] and
/// [`http_json`] send it.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

/// One test's world: a temp dir with the store and dev certificates.
pub struct World {
    pub dir: TempDir,
    pub store: AnyStore,
}

impl World {
    pub async fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = AnyStore::open(&StoreConfig::embedded(dir.path().join("store"))).await?;
        Ok(World { dir, store })
    }

    /// A config for a gateway of this world on free loopback ports.
    pub fn config(&self) -> GatewayConfig {
        let mut c = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: self.dir.path().join("data"),
            ..GatewayConfig::default()
        };
        c.tls.dev_certs_dir = self.dir.path().join("certs");
        c.admin_token = Some(TEST_ADMIN_TOKEN.into());
        c.transport.udp_recv_buffer_bytes = 1 << 20;
        c.transport.udp_send_buffer_bytes = 1 << 20;
        c
    }

    pub async fn gateway(&self, tweak: impl FnOnce(&mut GatewayConfig)) -> Result<TestGateway> {
        let mut c = self.config();
        tweak(&mut c);
        let running = outpost_gateway::start_with_store(c, self.store.clone()).await?;
        Ok(TestGateway {
            addr: running.quic_addr,
            admin: running.admin_addr,
            ca_pem: running.dev_ca_pem.clone().context("dev CA")?,
            handle: running.handle(),
            running: Some(running),
        })
    }
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca_pem: Vec<u8>,
    pub handle: GatewayHandle,
    pub running: Option<RunningGateway>,
}

impl TestGateway {
    pub fn client_config(&self, credentials: Credentials) -> ClientConfig {
        client_config(vec![self.addr], &self.ca_pem, credentials)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

pub fn client_config(gateways: Vec<SocketAddr>, ca_pem: &[u8], credentials: Credentials) -> ClientConfig {
    let mut c = ClientConfig::new(gateways, Trust::DevCa { pem: ca_pem.to_vec() }, credentials);
    c.request_timeout = Duration::from_secs(10);
    c.reconnect = ReconnectPolicy {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        ..ReconnectPolicy::default()
    };
    c
}

/// A gateway on its own runtime in its own thread; [`Crashable::kill`] drops
/// that runtime, stopping every task of the gateway at once (no drain, no
/// close frames, no last heartbeat), like a SIGKILL.
pub struct Crashable {
    pub addr: SocketAddr,
    pub ca_pem: Vec<u8>,
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Crashable {
    pub fn start(config: GatewayConfig, store: AnyStore) -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let running = rt.block_on(outpost_gateway::start_with_store(config, store));
            let running = match running {
                Ok(r) => r,
                Err(e) => return ready_tx.send(Err(e.to_string())).expect("send"),
            };
            ready_tx
                .send(Ok((
                    running.quic_addr,
                    running.dev_ca_pem.clone().expect("dev CA"),
                )))
                .expect("send");
            let _ = killed.recv();
            // No shutdown, no drain: the tasks just stop.
            std::mem::forget(running);
            rt.shutdown_background();
        });
        let (addr, ca_pem) = ready_rx.recv()?.map_err(anyhow::Error::msg)?;
        Ok(Crashable {
            addr,
            ca_pem,
            kill,
            thread,
        })
    }

    pub fn kill(self) {
        let _ = self.kill.send(());
        self.thread.join().expect("gateway thread");
    }
}

/// The name of every thread of a [`GatewayThread`]'s runtime
/// ([`gateway_thread_cpu`] sums their CPU).
pub const GATEWAY_THREAD_NAME: &str = "outpost-gw-test";

/// A gateway on a runtime of its own with `workers` worker threads, named
/// [`GATEWAY_THREAD_NAME`]: whatever one of its tasks does without yielding
/// holds up only the gateway, and its CPU can be told from the clients'.
pub struct GatewayThread {
    pub addr: SocketAddr,
    pub ca_pem: Vec<u8>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GatewayThread {
    pub fn start(config: GatewayConfig, store: AnyStore, workers: usize) -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(GATEWAY_THREAD_NAME.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name(GATEWAY_THREAD_NAME)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let running = match rt.block_on(outpost_gateway::start_with_store(config, store)) {
                    Ok(r) => r,
                    Err(e) => return ready_tx.send(Err(e.to_string())).expect("send"),
                };
                let ca = running.dev_ca_pem.clone().expect("dev CA");
                ready_tx.send(Ok((running.quic_addr, ca))).expect("send");
                let _ = stopped.recv();
                running.handle().shutdown();
                drop(running);
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        let (addr, ca_pem) = ready_rx.recv()?.map_err(anyhow::Error::msg)?;
        Ok(GatewayThread {
            addr,
            ca_pem,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub async fn login(&self) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream)> {
        let ep = raw_endpoint(&self.ca_pem, outpost_schema::ALPN)?;
        let conn = ep.connect(self.addr, "localhost")?.await?;
        let (send, recv, _) = raw_login(&conn, wire_device()).await?;
        Ok((conn, send, recv))
    }
}

impl Drop for GatewayThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU time (user + system) used so far by this process's threads named
/// [`GATEWAY_THREAD_NAME`] that are still alive (Linux; zero elsewhere).
pub fn gateway_thread_cpu() -> Duration {
    let ticks_per_sec = 100; // USER_HZ, 100 on every Linux the tests run on
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != GATEWAY_THREAD_NAME {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 3rd field of the
        // line, utime and stime the 14th and 15th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_millis(ticks * 1000 / ticks_per_sec)
}

/// Fresh device credentials (a new account on first login).
pub fn device() -> Credentials {
    Credentials::Device {
        device_id: format!("dev-{:016x}", rand::random::<u64>()),
        secret: "s".repeat(24),
    }
}

// ---- raw client: speaks the protocol frame by frame ----------------------

pub fn raw_endpoint(ca_pem: &[u8], alpn: &[u8]) -> Result<quinn::Endpoint> {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(raw_client_config(ca_pem, alpn)?);
    Ok(ep)
}

/// The raw client's QUIC config (TLS 1.3 trusting `ca_pem`, ALPN `alpn`,
/// quinn's default transport): attach a transport config to test flow control.
pub fn raw_client_config(ca_pem: &[u8], alpn: &[u8]) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

use rustls_pki_types::pem::PemObject;

pub async fn raw_connect(gw: &TestGateway) -> Result<quinn::Connection> {
    let ep = raw_endpoint(&gw.ca_pem, outpost_schema::ALPN)?;
    Ok(ep.connect(gw.addr, "localhost")?.await?)
}

pub async fn read_raw_frame(recv: &mut quinn::RecvStream, max: u32) -> Result<Vec<u8>> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    recv.read_exact(&mut prefix).await?;
    let h = FrameHeader::parse(prefix, max)?;
    let mut frame = vec![0u8; LENGTH_PREFIX_BYTES + h.len as usize];
    frame[..4].copy_from_slice(&prefix);
    recv.read_exact(&mut frame[4..]).await?;
    Ok(frame)
}

/// Checks that the gateway closed a connection with `code` (a QUIC
/// CONNECTION_CLOSE with the kick's code, not a stateless reset nor the
/// client's own idle timeout).
pub fn expect_closed_with(closed: &quinn::ConnectionError, code: outpost_schema::ErrorCode) -> Result<()> {
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(code.0));
            Ok(())
        }
        other => bail!("expected an application close with {code:?}, got {other:?}"),
    }
}

/// Reads the raw control stream until a `Kick` arrives (within `limit`).
pub async fn expect_kick(control: &mut quinn::RecvStream, limit: Duration) -> Result<outpost_schema::Kick> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame = tokio::time::timeout_at(deadline, read_raw_frame(control, 1 << 16)).await??;
        if let ControlMsg::Kick(k) = ControlMsg::decode(&frame)? {
            return Ok(k);
        }
    }
}

/// Sends a `Hello` on a new control stream; returns the stream and the gateway's
/// answer (Welcome or Reject), whatever it is.
pub async fn raw_hello(
    conn: &quinn::Connection,
    credentials: Option<Credentials>,
    resume_token: Option<String>,
    accepts_resume_refresh: bool,
) -> Result<(quinn::SendStream, quinn::RecvStream, ControlMsg)> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "raw-test".into(),
        credentials,
        resume_token,
        accepts_resume_refresh,
        ..Default::default()
    });
    send.write_all(&hello.encode()).await?;
    let answer = ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)?;
    Ok((send, recv, answer))
}

/// Closes a raw connection without logging out: an application close with a
/// non-zero code (1), which the gateway treats like a lost connection (the
/// session stays resumable), whereas code 0 is a logout that revokes the
/// session's resume tokens (PROTOCOL.md §6).
pub fn abandon(conn: &quinn::Connection) {
    conn.close(1u32.into(), b"abandoned");
}

/// Wire device credentials with a random, unused device id.
pub fn wire_device() -> Credentials {
    Credentials::Device {
        device_id: format!("dev-{:016x}", rand::random::<u64>()),
        secret: "s".repeat(24),
    }
}

/// Logs in over a raw connection; returns the control stream and the Welcome.
pub async fn raw_login(
    conn: &quinn::Connection,
    credentials: Credentials,
) -> Result<(quinn::SendStream, quinn::RecvStream, Welcome)> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "raw-test".into(),
        credentials: Some(credentials),
        ..Default::default()
    });
    send.write_all(&hello.encode()).await?;
    match ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)? {
        ControlMsg::Welcome(w) => Ok((send, recv, w)),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Waits until `f` is true, polling, for at most `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// A blocking request to the admin API with [`TEST_ADMIN_TOKEN`], through the
/// CLI's own client ([`AdminClient`], ureq); returns the answer as
/// `"HTTP/1.1 <status> <reason>\r\n\r\n<body>"` (the status line and body
/// the assertions read).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> Result<String> {
    http_json(addr, method, path, "")
}

/// [`http`] with a JSON body.
pub fn http_json(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<String> {
    http_with_token(addr, method, path, body, Some(TEST_ADMIN_TOKEN))
}

/// [`http_json`] with another admin token, or none (no `Authorization` header).
pub fn http_with_token(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Result<String> {
    let client = AdminClient::with_token(addr, token.map(str::to_owned), Duration::from_secs(10));
    let answer = client.request(method, path, Some(body.as_bytes()))?;
    Ok(format!(
        "HTTP/1.1 {} {}\r\n\r\n{}",
        answer.status,
        answer.reason(),
        answer.body
    ))
}

/// The body of a whole HTTP response (what [`http`] returns).
pub fn http_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// An admin request with the test token, off the runtime's threads (the admin
/// client blocks): the status and the JSON body, as [`status_and_json`].
pub async fn admin_json(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, serde_json::Value)> {
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
    let r = tokio::task::spawn_blocking(move || http_json(admin, &method, &path, &body)).await??;
    Ok(status_and_json(&r))
}

/// The status code (0 if none) and the JSON body (`Null` if not JSON) of a
/// whole HTTP response (what [`http`] returns).
pub fn status_and_json(response: &str) -> (u16, serde_json::Value) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(http_body(response)).unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Echo requests `first..first + n`, as one buffer of frames.
pub fn echo_requests(first: u64, n: u64) -> Vec<u8> {
    let mut frames = Vec::new();
    for request_id in first..first + n {
        let req = outpost_schema::ChannelMsg::Request(outpost_schema::Request {
            request_id,
            body: outpost_schema::RequestBody::Echo {
                payload: vec![],
                push_count: 0,
                delay_ms: 0,
            },
        });
        frames.extend(req.encode());
    }
    frames
}

/// The value of the sample of `name` carrying every label of `labels`
/// (`k="v"` pairs), from a Prometheus text exposition.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|kv| l.contains(kv)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The admin listener's `/metrics` exposition.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    tokio::task::spawn_blocking(move || http(addr, "GET", "/metrics")).await?
}

//! The load generator's QUIC client (raw quinn with the SDK's transport settings),
//! the protocol's login exchange and the bounded-concurrency driver.

use super::*;
use crate::own_endpoints::{client_socket_config, Lease, OwnEndpoints};

pub(crate) struct Client {
    pub(crate) endpoint: quinn::Endpoint,
    /// Login runs: endpoints of their own, one connection each (see
    /// [`Client::connect_own`]); `None` when `OUTPOST_BENCH_LOGIN_ENDPOINTS=shared`.
    own: Option<OwnEndpoints>,
    /// The SDK's transport exactly (no QUIC keep-alive): idle gateway
    /// sessions are kept alive by their protocol heartbeat, as a game's are
    /// (see [`Client::connect_as_sdk`]).
    sdk: quinn::ClientConfig,
}

impl Client {
    pub(crate) fn new(ca_pem: &[u8]) -> Result<Client> {
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
        let crypto = Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?);
        let mut sdk = quinn::ClientConfig::new(crypto.clone());
        sdk.transport_config(Arc::new(outpost_client::quic_transport_config(false)));
        // The SDK's transport settings, so the bench client puts the same datagrams
        // on the wire as a game client (e.g. no MTU probes by default).
        let mut transport = outpost_client::quic_transport_config(false);
        // Keeps idle connections alive at the QUIC level (both servers' idle
        // timeout is 30 s); gateway sessions also send Ping as Welcome asks.
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        let mut cc = quinn::ClientConfig::new(crypto);
        cc.transport_config(Arc::new(transport));
        // Same socket sizing as the servers: the client sees the same bursts.
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
        Ok(Client { endpoint, own, sdk })
    }

    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection> {
        Ok(self.endpoint.connect(addr, "localhost")?.await?)
    }

    /// A connection with the SDK's transport settings exactly: no QUIC
    /// keep-alive. The SDK sets none (its heartbeat `Ping` keeps the
    /// connection alive), and a keep-alive on top would put up to one more
    /// packet each way per heartbeat on the wire, which a game does not.
    pub(crate) async fn connect_as_sdk(&self, addr: SocketAddr) -> Result<quinn::Connection> {
        Ok(self
            .endpoint
            .connect_with(self.sdk.clone(), addr, "localhost")?
            .await?)
    }

    /// A login run's connection: on an endpoint of its own (see [`OwnEndpoints`]),
    /// held until the returned lease drops, or on the shared endpoint.
    pub(crate) async fn connect_own(
        &self,
        addr: SocketAddr,
    ) -> Result<(quinn::Connection, Option<Lease<'_>>)> {
        let Some(pool) = &self.own else {
            return Ok((self.connect(addr).await?, None));
        };
        let lease = pool.lease()?;
        let e = lease.endpoint.as_ref().expect("leased");
        let conn = e.connect(addr, "localhost")?.await?;
        Ok((conn, Some(lease)))
    }

    /// What the login runs' client endpoints are, for the report.
    pub(crate) fn login_endpoints(&self) -> &'static str {
        match &self.own {
            None => "one shared client endpoint, quinn's default 8-byte connection ids",
            Some(p) if p.zero_length_cids => {
                "an endpoint per client connection with the SDK's zero-length connection ids"
            }
            Some(_) => "an endpoint per client connection with quinn's default 8-byte connection ids",
        }
    }
}

pub(crate) async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    recv.read_exact(&mut prefix).await?;
    let h = FrameHeader::parse(prefix, 1 << 20)?;
    let mut frame = vec![0u8; LENGTH_PREFIX_BYTES + h.len as usize];
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
    recv.read_exact(&mut frame[LENGTH_PREFIX_BYTES..]).await?;
    Ok(frame)
}

pub(crate) fn device(tag: &str, i: usize) -> Credentials {
    Credentials::Device {
        device_id: format!("bench-{tag}-{i:06}"),
        secret: "bench-secret-0123456789".into(),
    }
}

/// Hello → Welcome on a fresh control stream.
pub(crate) async fn login(
    conn: &quinn::Connection,
    credentials: Credentials,
) -> Result<(quinn::SendStream, quinn::RecvStream, Welcome)> {
    hello_welcome(conn, bench_hello(credentials)).await
}

/// The bench client's `Hello` with `credentials`.
pub(crate) fn bench_hello(credentials: Credentials) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "outpost-bench".into(),
        credentials: Some(credentials),
        ..Default::default()
    }
}

/// Sends `hello` on a fresh control stream and reads the `Welcome`.
pub(crate) async fn hello_welcome(
    conn: &quinn::Connection,
    hello: Hello,
) -> Result<(quinn::SendStream, quinn::RecvStream, Welcome)> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&ControlMsg::Hello(hello).encode()).await?;
    match ControlMsg::decode(&read_frame(&mut recv).await?)? {
        ControlMsg::Welcome(w) => Ok((send, recv, w)),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// Runs `work(i)` for i in 0..n with at most `concurrency` in flight.
pub(crate) async fn bounded<F, Fut, T>(n: usize, concurrency: usize, work: F) -> Vec<Result<T>>
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

pub(crate) fn count_errors<T>(results: &[Result<T>], what: &str) -> usize {
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = errors.first() {
        eprintln!("  {what}: {} failed, first error: {e:#}", errors.len());
    }
    errors.len()
}

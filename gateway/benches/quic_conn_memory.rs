//! Heap per idle QUIC connection, quinn-proto alone: what the vendored
//! quinn-proto patch (third_party/README.md) is measured with.
//!
//! `N` clients (default 2,000), each on its own endpoint with the SDK's
//! endpoint and transport settings (`outpost_client::quic_endpoint_config`,
//! `quic_transport_config`), handshake with one server endpoint on the
//! gateway's QUIC server config (`outpost_gateway::endpoint::server_config`,
//! dev certificates in a temp dir). Datagrams go between the endpoints in
//! memory and time is a fake clock, so nothing but quinn-proto, rustls and
//! ring is measured: no sockets, no tokio, no quinn. After the handshakes the
//! connections idle for 10 s of fake time (acknowledgements and
//! `NEW_CONNECTION_ID`s settle); then the heap is read, the clients are
//! dropped, and it is read again.
//!
//! ```sh
//! cargo bench -p outpost-gateway --bench quic_conn_memory -- [N] [--keep-tls]
//! ```
//! `--keep-tls`: neither side releases rustls after the handshake (quinn's
//! default), for the comparison. Live heap is counted by `stats_alloc` around
//! the system allocator; "server" is what the server endpoint holds per
//! connection, "client" what a client holds with its endpoint.

use std::alloc::System;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::BytesMut;
use quinn_proto::{ClientConfig, Connection, ConnectionHandle, DatagramEvent, Endpoint, Event, Transmit};
use rustls_pki_types::pem::PemObject;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed (`stats_alloc` counts a reallocation's
/// growth as allocated and its shrinking as freed).
fn live_heap() -> isize {
    let s = INSTRUMENTED_SYSTEM.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4433);

/// A datagram in flight: (from, to, bytes).
type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

struct Client {
    endpoint: Endpoint,
    conn: (ConnectionHandle, Box<Connection>),
    addr: SocketAddr,
}

/// Every endpoint and connection, the datagrams between them, and the clock.
struct Net {
    now: Instant,
    server: Endpoint,
    server_conns: HashMap<ConnectionHandle, Box<Connection>>,
    clients: Vec<Client>,
    client_at: HashMap<SocketAddr, usize>,
    in_flight: VecDeque<Datagram>,
    connected: usize,
}

fn queue(t: &Transmit, buf: &[u8], from: SocketAddr, q: &mut VecDeque<Datagram>) {
    for d in buf[..t.size].chunks(t.segment_size.unwrap_or(t.size).max(1)) {
        q.push_back((from, t.destination, d.to_vec()));
    }
}

/// Timers, endpoint events and transmits of one connection.
fn drive(
    conn: &mut Connection,
    handle: ConnectionHandle,
    endpoint: &mut Endpoint,
    now: Instant,
    from: SocketAddr,
    q: &mut VecDeque<Datagram>,
    connected: &mut usize,
) {
    if conn.poll_timeout().is_some_and(|t| t <= now) {
        conn.handle_timeout(now);
    }
    while let Some(ev) = conn.poll_endpoint_events() {
        if let Some(back) = endpoint.handle_event(handle, ev) {
            conn.handle_event(back);
        }
    }
    let mut buf = Vec::new();
    while let Some(t) = conn.poll_transmit(now, 10, &mut buf) {
        queue(&t, &buf, from, q);
        buf.clear();
    }
    while let Some(ev) = conn.poll() {
        if matches!(ev, Event::Connected) {
            *connected += 1;
        }
    }
}

impl Net {
    /// Runs every connection and delivers every datagram until nothing moves.
    fn settle(&mut self) -> Result<()> {
        let mut buf = Vec::new();
        loop {
            for c in &mut self.clients {
                let (h, conn) = &mut c.conn;
                drive(
                    conn,
                    *h,
                    &mut c.endpoint,
                    self.now,
                    c.addr,
                    &mut self.in_flight,
                    &mut self.connected,
                );
            }
            for (h, conn) in &mut self.server_conns {
                drive(
                    conn,
                    *h,
                    &mut self.server,
                    self.now,
                    SERVER,
                    &mut self.in_flight,
                    &mut self.connected,
                );
            }
            if self.in_flight.is_empty() {
                return Ok(());
            }
            while let Some((from, to, d)) = self.in_flight.pop_front() {
                buf.clear();
                let data = BytesMut::from(&d[..]);
                if to == SERVER {
                    match self.server.handle(self.now, from, None, None, data, &mut buf) {
                        Some(DatagramEvent::NewConnection(incoming)) => {
                            let mut response = Vec::new();
                            let (h, conn) = self
                                .server
                                .accept(incoming, self.now, &mut response, None)
                                .map_err(|e| anyhow::anyhow!("accept: {:?}", e.cause))?;
                            self.server_conns.insert(h, Box::new(conn));
                        }
                        Some(DatagramEvent::ConnectionEvent(h, ev)) => {
                            if let Some(conn) = self.server_conns.get_mut(&h) {
                                conn.handle_event(ev);
                            }
                        }
                        Some(DatagramEvent::Response(t)) => queue(&t, &buf, SERVER, &mut self.in_flight),
                        None => {}
                    }
                } else if let Some(&i) = self.client_at.get(&to) {
                    let c = &mut self.clients[i];
                    match c.endpoint.handle(self.now, from, None, None, data, &mut buf) {
                        Some(DatagramEvent::ConnectionEvent(h, ev)) if h == c.conn.0 => {
                            c.conn.1.handle_event(ev)
                        }
                        Some(DatagramEvent::Response(t)) => queue(&t, &buf, c.addr, &mut self.in_flight),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Advances the clock by `step` until `d` has passed, settling after each step.
    fn run_for(&mut self, d: Duration, step: Duration) -> Result<()> {
        let end = self.now + d;
        while self.now < end {
            self.now += step;
            self.settle()?;
        }
        Ok(())
    }
}

/// The SDK's client config (its TLS settings as in `client-sdk/src/tls.rs`).
fn client_config(ca_pem: &[u8], release: bool) -> Result<ClientConfig> {
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
    let mut crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls)?;
    crypto.set_release_after_handshake(release);
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(outpost_client::quic_transport_config(false)));
    Ok(config)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let keep_tls = args.iter().any(|a| a == "--keep-tls");
    let n: usize = match args.iter().find(|a| !a.starts_with("--")) {
        Some(a) => a.parse().context("N: a number of connections")?,
        None => 2_000,
    };
    ensure!((1..=60_000).contains(&n), "N: 1 to 60,000 connections");

    let dir = tempfile::tempdir()?;
    let mut cfg = outpost_gateway::GatewayConfig::default();
    cfg.tls.dev_certs_dir = dir.path().join("certs");
    cfg.data_dir = dir.path().join("data");
    let identity = outpost_gateway::tls::ServerIdentity::load(&cfg.tls)?;
    let ca_pem = identity.dev_ca_pem.clone().context("dev CA")?;
    let mut server_config = outpost_gateway::endpoint::server_config(&cfg, identity.rustls_config()?)?;
    if keep_tls {
        let mut crypto = quinn_proto::crypto::rustls::QuicServerConfig::try_from(identity.rustls_config()?)?;
        crypto.set_release_after_handshake(false);
        server_config.crypto = Arc::new(crypto);
    }
    let client_config = client_config(&ca_pem, !keep_tls)?;
    let client_endpoint = Arc::new(outpost_client::quic_endpoint_config());

    let mut net = Net {
        now: Instant::now(),
        server: Endpoint::new(
            Arc::new(quinn_proto::EndpointConfig::default()),
            Some(Arc::new(server_config)),
            false,
            None,
        ),
        server_conns: HashMap::with_capacity(n),
        clients: Vec::with_capacity(n),
        client_at: HashMap::with_capacity(n),
        in_flight: VecDeque::with_capacity(16 * n),
        connected: 0,
    };
    let before = live_heap();
    for i in 0..n {
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(11, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
            5000,
        );
        let mut endpoint = Endpoint::new(client_endpoint.clone(), None, false, None);
        let (h, conn) = endpoint.connect(net.now, client_config.clone(), SERVER, "localhost")?;
        net.client_at.insert(addr, i);
        net.clients.push(Client {
            endpoint,
            conn: (h, Box::new(conn)),
            addr,
        });
        if i % 64 == 63 {
            net.settle()?;
        }
    }
    net.run_for(Duration::from_secs(2), Duration::from_millis(5))?;
    ensure!(
        net.connected == 2 * n,
        "{} of {} handshakes completed",
        net.connected,
        2 * n
    );
    net.run_for(Duration::from_secs(10), Duration::from_millis(100))?;
    ensure!(
        net.server_conns.len() == n,
        "every server connection is still there"
    );
    let both = live_heap();
    // Drops every client's endpoint and connection; the vector keeps its
    // buffer, which was counted before the handshakes.
    net.clients.clear();
    let server = live_heap();

    println!(
        "quinn-proto alone, {n} idle connections, rustls {} after the handshake",
        if keep_tls {
            "kept (quinn's default)"
        } else {
            "released (the gateway's and the SDK's setting)"
        }
    );
    println!(
        "size_of::<quinn_proto::Connection>() = {} B",
        std::mem::size_of::<Connection>()
    );
    println!(
        "heap per connection, server: {:.0} B",
        (server - before) as f64 / n as f64
    );
    println!(
        "heap per connection, client with its endpoint: {:.0} B",
        (both - server) as f64 / n as f64
    );
    Ok(())
}

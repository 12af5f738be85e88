//! TLS certificate hot reload over real QUIC on loopback (issue #6): the
//! certificate files are replaced, new handshakes present the new certificate,
//! established sessions keep their connection; an invalid pair is never
//! installed; SIGHUP reloads the real binary with polling off.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::*;
use outpost_client::{Client, Event};
use outpost_gateway::tls::TlsError;
use outpost_schema::ControlMsg;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;

/// A test CA that signs `localhost` certificates, each with a fresh key.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Result<Self> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tls reload test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = ca.self_signed(&key)?;
        Ok(Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(ca, key),
        })
    }

    fn leaf(&self, name: &str) -> Result<Leaf> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

/// Where the gateway under test reads its certificate and key.
struct CertFilesAt {
    cert: PathBuf,
    key: PathBuf,
}

impl CertFilesAt {
    fn in_dir(dir: &Path) -> Self {
        CertFilesAt {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    /// Replaces both files, each atomically (write aside, rename into place):
    /// the certificate first, so a check may well see the new certificate with
    /// the old key in between.
    fn install(&self, leaf: &Leaf) -> Result<()> {
        write_atomically(&self.cert, &leaf.cert_pem)?;
        write_atomically(&self.key, &leaf.key_pem)
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A gateway of `world` serving the files `at`, trusted through `pki`.
async fn gateway(world: &World, pki: &Pki, at: &CertFilesAt, poll_ms: u64) -> Result<TestGateway> {
    let mut c = world.config();
    c.tls.cert_path = Some(at.cert.clone());
    c.tls.key_path = Some(at.key.clone());
    c.tls.reload_check_interval_ms = poll_ms;
    let running = outpost_gateway::start_with_store(c, world.store.clone()).await?;
    assert!(
        running.dev_ca_pem.is_none(),
        "configured certificates are not dev certs"
    );
    Ok(TestGateway {
        addr: running.quic_addr,
        admin: running.admin_addr,
        ca_pem: pki.ca_pem.clone().into_bytes(),
        handle: running.handle(),
        running: Some(running),
    })
}

/// The leaf certificate a fresh handshake with `addr` presents (DER).
async fn presented_leaf(addr: SocketAddr, ca_pem: &[u8]) -> Result<Vec<u8>> {
    let ep = raw_endpoint(ca_pem, outpost_schema::ALPN)?;
    let conn = tokio::time::timeout(Duration::from_secs(5), ep.connect(addr, "localhost")?)
        .await
        .context("handshake timed out")??;
    let chain = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .context("no peer certificates")?;
    let leaf = chain.first().context("empty chain")?.to_vec();
    conn.close(0u32.into(), b"probe done");
    ep.wait_idle().await;
    Ok(leaf)
}

/// Waits (at most 15 s) until new handshakes present `want`.
async fn wait_presenting(addr: SocketAddr, ca_pem: &[u8], want: &[u8]) -> Result<()> {
    let start = Instant::now();
    loop {
        if presented_leaf(addr, ca_pem).await? == want {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("new handshakes still present another certificate after 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn raw_ping(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, nonce: u64) -> Result<()> {
    send.write_all(&ControlMsg::Ping { nonce }.encode()).await?;
    let frame = tokio::time::timeout(Duration::from_secs(5), read_raw_frame(recv, 1 << 16)).await??;
    assert_eq!(ControlMsg::decode(&frame)?, ControlMsg::Pong { nonce });
    Ok(())
}

/// `GET path` on the admin HTTP listener.
async fn admin_get(admin: SocketAddr, path: &'static str) -> Result<String> {
    tokio::task::spawn_blocking(move || http(admin, "GET", path)).await?
}

/// A fresh CA, and its certificate "A" installed as the gateway's files in `dir`.
fn pki_serving_a(dir: &Path) -> Result<(Pki, CertFilesAt, Leaf)> {
    let pki = Pki::new()?;
    let at = CertFilesAt::in_dir(dir);
    let a = pki.leaf("certificate A")?;
    at.install(&a)?;
    Ok((pki, at, a))
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_handshakes_and_sessions_stay() -> Result<()> {
    let world = World::new().await?;
    let (pki, at, a) = pki_serving_a(world.dir.path())?;
    let gw = gateway(&world, &pki, &at, 100).await?;
    assert_eq!(presented_leaf(gw.addr, &gw.ca_pem).await?, a.der);

    // Two sessions established on certificate A: the SDK (no automatic
    // reconnect, so a dropped connection would end it) and a raw connection.
    let mut config = gw.client_config(device());
    config.auto_reconnect = false;
    let client = Client::connect(config).await?;
    let mut events = client.events();
    client.ping().await?;
    let raw = raw_connect(&gw).await?;
    let (mut send, mut recv, _) = raw_login(&raw, device()).await?;
    raw_ping(&mut send, &mut recv, 1).await?;
    assert_eq!(gw.handle.tls_status().reloads, 0);

    let b = pki.leaf("certificate B")?;
    assert_ne!(a.der, b.der);
    at.install(&b)?;
    wait_presenting(gw.addr, &gw.ca_pem, &b.der).await?;
    let status = gw.handle.tls_status();
    assert!(status.reloads >= 1, "{status:?}");
    assert!(status.not_after_unix.is_some(), "{status:?}");
    assert_eq!(status.last_error, None);

    // The sessions from before the swap: same connections, still answering.
    client.ping().await?;
    assert!(client.is_connected());
    let mut seen = Vec::new();
    while let Some(ev) = events.try_recv() {
        seen.push(ev);
    }
    assert!(
        seen.iter()
            .all(|ev| matches!(ev, Event::Connected { resumed: false })),
        "the SDK session must not have reconnected: {seen:?}"
    );
    assert_eq!(seen.len(), 1, "exactly the first login: {seen:?}");
    raw_ping(&mut send, &mut recv, 2).await?;
    assert!(raw.close_reason().is_none());
    assert_eq!(gw.handle.sessions_live(), 2);

    // A new SDK session handshakes with certificate B under the same CA.
    let fresh = Client::connect(gw.client_config(device())).await?;
    fresh.ping().await?;
    let m = admin_get(gw.admin, "/metrics").await?;
    for name in ["outpost_tls_reloads_total", "outpost_tls_cert_not_after_seconds"] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    let status = admin_get(gw.admin, "/status").await?;
    assert!(
        status.contains(r#""reloads":1"#),
        "/status must show the reload: {status}"
    );
    Ok(())
}

#[tokio::test]
async fn an_invalid_pair_is_never_installed_and_a_fixed_one_is() -> Result<()> {
    let world = World::new().await?;
    let (pki, at, a) = pki_serving_a(world.dir.path())?;
    let gw = gateway(&world, &pki, &at, 100).await?;
    let client = Client::connect(gw.client_config(device())).await?;

    // Garbage in the certificate file: new handshakes still get A; the failure
    // is counted and retried on the next checks.
    std::fs::write(&at.cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n")?;
    let failing = eventually(Duration::from_secs(15), || gw.handle.tls_status().failures >= 2).await;
    let status = gw.handle.tls_status();
    assert!(failing, "the broken file was not (re)tried: {status:?}");
    assert_eq!(status.reloads, 0, "{status:?}");
    assert!(status.last_error.is_some(), "{status:?}");
    assert_eq!(presented_leaf(gw.addr, &gw.ca_pem).await?, a.der);
    client.ping().await?;
    let health = admin_get(gw.admin, "/healthz").await?;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(admin_get(gw.admin, "/metrics")
        .await?
        .contains("outpost_tls_reload_failures_total"));

    // Half a rotation: B's certificate with A's key. Valid PEM, wrong key: still A.
    let b = pki.leaf("certificate B")?;
    write_atomically(&at.cert, &b.cert_pem)?;
    let garbage_error = status.last_error.clone();
    let mismatch_seen = eventually(Duration::from_secs(15), || {
        let s = gw.handle.tls_status();
        s.last_error.is_some() && s.last_error != garbage_error
    })
    .await;
    let status = gw.handle.tls_status();
    assert!(mismatch_seen, "{status:?}");
    assert_eq!(status.reloads, 0, "a mismatched pair must not load: {status:?}");
    assert_eq!(presented_leaf(gw.addr, &gw.ca_pem).await?, a.der);

    // The key follows: the pair is whole and loads.
    write_atomically(&at.key, &b.key_pem)?;
    wait_presenting(gw.addr, &gw.ca_pem, &b.der).await?;
    let status = gw.handle.tls_status();
    assert_eq!(status.reloads, 1, "{status:?}");
    assert_eq!(status.last_error, None);
    client.ping().await?;
    Ok(())
}

#[tokio::test]
async fn reload_on_request_with_polling_off() -> Result<()> {
    let world = World::new().await?;
    let (pki, at, a) = pki_serving_a(world.dir.path())?;
    let mut gw = gateway(&world, &pki, &at, 0).await?;
    let b = pki.leaf("certificate B")?;
    at.install(&b)?;
    // Nothing polls: A stays until asked.
    assert_eq!(presented_leaf(gw.addr, &gw.ca_pem).await?, a.der);
    let report = gw.handle.reload_tls()?;
    assert!(report.not_after_unix.is_some());
    assert_eq!(presented_leaf(gw.addr, &gw.ca_pem).await?, b.der);
    // A requested reload of a broken pair reports the error and keeps B.
    std::fs::write(&at.key, "garbage")?;
    assert!(gw.handle.reload_tls().is_err());
    assert_eq!(presented_leaf(gw.addr, &gw.ca_pem).await?, b.der);

    // Once stopped, the gateway's socket closes although a handle (holding the
    // reloader) lives on, and reloads of a valid pair say why they cannot happen.
    at.install(&a)?;
    let (handle, addr) = (gw.handle.clone(), gw.addr);
    let running = gw.running.take().context("running")?;
    handle.shutdown();
    running.wait().await;
    assert!(matches!(handle.reload_tls(), Err(TlsError::Stopped)));
    let rebound = eventually(Duration::from_secs(10), || {
        std::net::UdpSocket::bind(addr).is_ok()
    })
    .await;
    assert!(rebound, "the stopped gateway still holds {addr}");
    Ok(())
}

/// A free loopback port for `udp` or TCP (bound, read, released).
fn free_port(udp: bool) -> Result<u16> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
    })
}

#[tokio::test]
async fn the_binary_reloads_on_sighup() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (pki, at, a) = pki_serving_a(dir.path())?;
    let quic: SocketAddr = format!("127.0.0.1:{}", free_port(true)?).parse()?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port(false)?).parse()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{quic}\"\nadmin_listen = \"{admin}\"\ndata_dir = {:?}\n\
             [tls]\ncert_path = {:?}\nkey_path = {:?}\nreload_check_interval_ms = 0\n",
            dir.path().join("data"),
            at.cert,
            at.key
        ),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost-gateway"))
        .args(["--config", config.to_str().context("utf-8 path")?])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let result = sighup_scenario(&mut child, &pki, &at, &a, quic, admin).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn sighup_scenario(
    child: &mut std::process::Child,
    pki: &Pki,
    at: &CertFilesAt,
    a: &Leaf,
    quic: SocketAddr,
    admin: SocketAddr,
) -> Result<()> {
    let started = Instant::now();
    while tokio::task::spawn_blocking(move || http(admin, "GET", "/healthz"))
        .await?
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) || child.try_wait()?.is_some() {
            bail!("gateway did not come up on {admin}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ca = pki.ca_pem.as_bytes();
    assert_eq!(presented_leaf(quic, ca).await?, a.der);
    let mut config = client_config(vec![quic], ca, device());
    config.auto_reconnect = false;
    let client = Client::connect(config).await?;

    let b = pki.leaf("certificate B")?;
    at.install(&b)?;
    assert_eq!(
        presented_leaf(quic, ca).await?,
        a.der,
        "polling is off: only SIGHUP reloads"
    );
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    wait_presenting(quic, ca, &b.der).await?;
    assert!(child.try_wait()?.is_none(), "SIGHUP must not end the process");
    client.ping().await?;
    let m = admin_get(admin, "/metrics").await?;
    assert!(
        m.lines()
            .any(|l| l.starts_with("outpost_tls_reloads_total") && l.ends_with(" 1")),
        "{m}"
    );
    Ok(())
}

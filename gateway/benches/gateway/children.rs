//! Server children: this bench binary re-executed with `OUTPOST_BENCH_ROLE=gateway`
//! (the real gateway, default config plus the bench's flags) or `=bare` (bare quinn
//! echoing frames). Each prints `READY <addr>` and exits when its stdin closes.

use super::*;

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

/// Changes the settings of the child's region store, if it is the embedded one
/// (an A/B knob).
fn set_embedded(
    config: &mut GatewayConfig,
    set: impl FnOnce(&mut outpost_backend::store::embedded::EmbeddedConfig),
) {
    let mut store = config.region_store();
    if let Some(e) = store.embedded.as_mut() {
        set(e);
    }
    config.store = Some(store);
}

pub(crate) fn server_config(data: &Path, certs: &Path) -> GatewayConfig {
    // Defaults throughout (socket buffers, transport windows, limits, timeouts),
    // only the addresses and directories are the bench's.
    let mut c = GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("literal"),
        admin_listen: "127.0.0.1:0".parse().expect("literal"),
        data_dir: data.to_owned(),
        ..GatewayConfig::default()
    };
    c.tls.dev_certs_dir = certs.to_owned();
    // The admission cap (`limits.max_sessions`, default 100,000) counts the
    // idle run's warm-up and any session still closing, so a 100,000-session
    // run would sit exactly at it: room for the largest count of
    // `OUTPOST_BENCH_SESSIONS` (inherited from the parent) plus 10%.
    let largest = rss::session_points().last().copied().unwrap_or(0);
    c.limits.max_sessions = c.limits.max_sessions.max(largest + largest / 10);
    if std::env::var_os("OUTPOST_BENCH_NO_GSO").is_some() {
        // A/B of `transport.segmentation_offload` (gateway and matched bare quinn).
        c.transport.segmentation_offload = false;
    }
    c
}

pub(crate) async fn child_gateway() -> Result<()> {
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
    if let Ok(ms) = std::env::var("OUTPOST_BENCH_PUSH_MIN_INTERVAL_MS") {
        // A/B of `session.push_min_interval_ms` (0: a push after every change).
        config.session.push_min_interval_ms = ms.parse()?;
    }
    if std::env::var_os("OUTPOST_BENCH_NO_PRESENCE").is_some() {
        // Attribution experiment: the login path without the cross-gateway
        // presence claim/release (two durable store writes per session).
        config.session.cross_gateway_presence = false;
    }
    if let Ok(us) = std::env::var("OUTPOST_BENCH_GROUP_COMMIT_LINGER_US") {
        // A/B of the embedded store's group-commit linger (default 1,000 µs).
        let us = us.parse()?;
        set_embedded(&mut config, |e| e.group_commit_linger_us = us);
    }
    if std::env::var_os("OUTPOST_BENCH_GROUP_COMMIT_FIXED").is_some() {
        // A/B of the adaptive group commit: the fixed linger it replaced.
        set_embedded(&mut config, |e| e.group_commit_adaptive = false);
    }
    if let Ok(nice) = std::env::var("OUTPOST_BENCH_BACKGROUND_NICE") {
        // A/B of the store's background threads at a lower priority (default 10).
        let nice = nice.parse()?;
        set_embedded(&mut config, |e| e.background_nice = nice);
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
    if std::env::var_os("OUTPOST_BENCH_SYNC_REPORT").is_some() {
        tokio::spawn(report_journal_syncs());
    }
    println!("READY {}", running.quic_addr);
    let handle = running.handle();
    stdin_closed().await;
    handle.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), running.wait()).await;
    Ok(())
}

/// `OUTPOST_BENCH_SYNC_REPORT`: every second with syncs, prints to stderr what
/// the store's group commit did in it, from the child's own metrics: journal
/// syncs, commits per sync, mean sync time (what a durable commit's fsync share
/// is under the bench's load).
async fn report_journal_syncs() {
    use outpost_backend::store::metrics::{JOURNAL_SYNCS, JOURNAL_SYNC_SECONDS, SYNC_BATCH};
    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
    let read = || {
        let t = outpost_gateway::metrics::render();
        [
            value(&t, JOURNAL_SYNCS),
            value(&t, &format!("{SYNC_BATCH}_sum")),
            value(&t, &format!("{JOURNAL_SYNC_SECONDS}_sum")),
        ]
    };
    let mut last = read();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read();
        let syncs = now[0] - last[0];
        if syncs > 0.0 {
            eprintln!(
                "  store: {syncs:.0} journal syncs/s, {:.1} commits per sync, {:.0} µs per sync",
                (now[1] - last[1]) / syncs,
                1e6 * (now[2] - last[2]) / syncs
            );
        }
        last = now;
    }
}

/// Set (to anything) to give the bare-quinn child the gateway's cipher-suite
/// order (AES-128-GCM picked by the server) instead of the client's choice.
pub(crate) const BARE_GATEWAY_SUITES_ENV: &str = "OUTPOST_BENCH_BARE_GATEWAY_SUITES";

/// Bare quinn: default `ServerConfig` and `TransportConfig`, the gateway's
/// certificate and TLS settings (TLS 1.3, ALPN `outpost/1`), and the same UDP
/// socket sizing as the gateway (socket buffers are a kernel setting, not quinn's;
/// with the kernel's 208 KiB default a login burst drops packets, see DESIGN.md).
/// It accepts connections and echoes length-prefixed frames on any bidi stream.
///
/// The cipher suite is rustls's default choice, the client's first (AES-256-GCM
/// for the SDK's client), not the gateway's server-side preference for AES-128
/// (`SERVER_CIPHER_SUITES`): that preference is a gateway optimisation, so the
/// baseline does without it. [`BARE_GATEWAY_SUITES_ENV`] gives bare quinn the
/// gateway's order too, to show how much of a difference the suite makes.
pub(crate) async fn child_bare() -> Result<()> {
    let (data, certs) = child_paths()?;
    let config = server_config(&data, &certs);
    let mut tls = ServerIdentity::load(&config.tls)?.rustls_config()?;
    if std::env::var_os(BARE_GATEWAY_SUITES_ENV).is_none() {
        Arc::make_mut(&mut tls).ignore_client_order = false;
    }
    let matched = std::env::var_os(rss::MATCHED_ENV).is_some();
    let mut crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    // Matched: rustls released after the handshake, as the gateway's
    // (`endpoint::quic_crypto`); default: kept, as quinn does by default.
    crypto.set_release_after_handshake(matched);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    if matched {
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

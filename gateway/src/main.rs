//! `outpost-gateway`: run a gateway, or generate development certificates.
//!
//! ```text
//! outpost-gateway                      # defaults: UDP 0.0.0.0:4433, admin 127.0.0.1:9433, ./data
//! outpost-gateway --config gw.toml     # a TOML file (see GatewayConfig); flags and env override it
//! outpost-gateway gen-certs            # development CA + localhost certificate in certs/dev
//! ```
//!
//! Logs: standard error, text or JSON (`[log] format`), colours only on a
//! terminal; `RUST_LOG` replaces the default filter (`[log] filter`: Outpost at
//! info, third-party crates at warn).
//!
//! Signals: SIGTERM/SIGINT drain (a second one stops at once); SIGHUP reloads the
//! TLS certificate and key files (they are also polled; see `tls.reload_check_interval_ms`).

/// mimalloc instead of the system allocator: a login allocates and frees a few
/// hundred small objects (QUIC and TLS state, frames, futures, store values) on
/// whichever worker thread runs it. Profiled, glibc's malloc/free took ~100 µs
/// of a login, mimalloc's ~30 µs; the gateway's CPU per login fell 4–12%. It
/// costs ~3 KiB of RSS per idle session (38.5 KiB at 10,000, within the 40 KiB
/// budget). Figures and commands: docs/PERFORMANCE.md, "Login target met".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use outpost_gateway::config::{GatewayConfig, LogConfig};
use outpost_gateway::logging;

#[derive(Debug, Parser)]
#[command(name = "outpost-gateway", version, about = "Outpost QUIC session gateway")]
struct Cli {
    /// TOML configuration file; missing keys keep their defaults.
    #[arg(long, env = "OUTPOST_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address of the QUIC endpoint (overrides `listen`).
    #[arg(long, env = "OUTPOST_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin HTTP address (overrides `admin_listen`).
    #[arg(long, env = "OUTPOST_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Address of the metrics-only listener (overrides `metrics.listen`; off by default).
    #[arg(long, env = "OUTPOST_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// File holding the admin API token (overrides `admin_token_file` and
    /// `OUTPOST_ADMIN_TOKEN`). The token itself comes only from the config file
    /// or the environment, never from the command line, where `ps` shows it.
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Region name (overrides `region`).
    #[arg(long, env = "OUTPOST_REGION")]
    region: Option<String>,
    /// Data directory of the embedded store (overrides `data_dir`).
    #[arg(long, env = "OUTPOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Session capacity (overrides `limits.max_sessions`).
    #[arg(long, env = "OUTPOST_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// Development certificate directory (overrides `tls.dev_certs_dir`).
    #[arg(long, env = "OUTPOST_DEV_CERTS_DIR")]
    dev_certs_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a development CA and a `localhost` gateway certificate.
    GenCerts {
        /// Output directory.
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::GenCerts { out }) = &cli.command {
        logging::init(&LogConfig::default()).map_err(anyhow::Error::msg)?;
        let paths = outpost_gateway::tls::generate_dev_certs(out)?;
        println!("development CA:          {}", paths.ca_cert.display());
        println!("gateway certificate:     {}", paths.cert.display());
        println!("gateway key:             {}", paths.key.display());
        return Ok(());
    }
    let mut config = match &cli.config {
        Some(path) => GatewayConfig::from_file(path)?,
        None => GatewayConfig::default(),
    };
    if let Some(v) = cli.listen {
        config.listen = v;
    }
    if let Some(v) = cli.admin_listen {
        config.admin_listen = v;
    }
    if let Some(v) = cli.metrics_listen {
        config.metrics.listen = Some(v);
    }
    // The environment's token overrides the file's settings; the command line's
    // token file overrides both.
    if let Some(v) = std::env::var("OUTPOST_ADMIN_TOKEN")
        .ok()
        .filter(|v| !v.is_empty())
    {
        config.admin_token = Some(v.into());
        config.admin_token_file = None;
    }
    if let Some(v) = cli.admin_token_file {
        config.admin_token = None;
        config.admin_token_file = Some(v);
    }
    if let Some(v) = cli.region {
        config.region = v;
    }
    if let Some(v) = cli.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = cli.max_sessions {
        config.limits.max_sessions = v;
    }
    if let Some(v) = cli.dev_certs_dir {
        config.tls.dev_certs_dir = v;
    }
    // Logging starts once the config (its `[log]` section) is known; errors
    // before this point are printed by `main`'s error return.
    logging::init(&config.log).map_err(anyhow::Error::msg)?;
    // The FoundationDB network runs once per process, started before any store
    // opens and stopped (by dropping the guard) when `main` returns.
    #[cfg(feature = "fdb")]
    let _fdb_network = if config.uses_fdb() {
        Some(boot_fdb()?)
    } else {
        None
    };
    tokio::runtime::Runtime::new()?.block_on(run(config))
}

/// Starts FoundationDB's network thread (client API 7.3).
#[cfg(feature = "fdb")]
fn boot_fdb() -> anyhow::Result<foundationdb::api::NetworkAutoStop> {
    let builder = foundationdb::api::FdbApiBuilder::default()
        .build()
        .context("selecting the FoundationDB client API version (is libfdb_c 7.3 installed?)")?;
    // SAFETY: called once, before any FoundationDB use; the guard lives in `main`
    // and is dropped (stopping the network) before the process exits.
    let network = unsafe { builder.boot() }.context("starting the FoundationDB network")?;
    tracing::info!("FoundationDB network started");
    Ok(network)
}

async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before starting: the default actions of SIGHUP, SIGTERM and
    // SIGINT end the process, and an orchestrator may stop the gateway as soon as
    // its admin port answers (before a handler installed later would be there).
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let gateway = outpost_gateway::start(config)
        .await
        .context("starting the gateway")?;
    let reloader = gateway.handle();
    tokio::spawn(async move {
        // SIGHUP: re-read the TLS certificate and key (the reload logs its outcome;
        // a failed one keeps the current certificate).
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the TLS certificate");
            let h = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || h.reload_tls()).await;
        }
    });
    let handle = gateway.handle();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received: draining (send it again to stop at once)");
        handle.drain();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        handle.shutdown();
    });
    gateway.wait().await;
    Ok(())
}

//! `outpost-sim gateway` and `outpost-sim-gateway`: the `--local` gateway as a
//! process of its own, so that a live run measures the sim and the gateway
//! apart (`live SCENARIO --gateway ADDR --ca CA_OUT --gateway-pid PID`).
//!
//! This file is a module of both binaries (not of the library, which forbids
//! `unsafe`: booting FoundationDB's network needs it). The two differ only in
//! their allocator: `outpost-sim` runs on the system allocator, which keeps the
//! live sim's memory per simulated player low (docs/PERFORMANCE.md, "The sim
//! on mimalloc?"); `outpost-sim-gateway` runs on mimalloc, as the
//! `outpost-gateway` binary does, so that a gateway measured beside the sim
//! allocates as a production gateway does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use outpost_sim::local::{local_pool, GatewayKnobs, LocalGateway};
use outpost_sim::scenario::Scenario;

/// Arguments of the gateway command (both binaries).
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Scenario whose matchmaking queue the gateway serves.
    scenario: PathBuf,
    /// QUIC address to listen on.
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Where to write the development CA (PEM) for `live --ca`.
    #[arg(long)]
    ca_out: PathBuf,
    /// Sessions admitted. Default: twice live.max_players, at least 1,000.
    #[arg(long)]
    max_sessions: Option<usize>,
    /// TOML file of a store config (`backend = "fdb"` with `[fdb] cluster_file`
    /// needs a build with `--features fdb`) used for the region's and the global
    /// keyspace. Default: an embedded store in a temporary directory.
    #[arg(long)]
    store_config: Option<PathBuf>,
    /// Turn the gateway's `admission.refuse_while_dropping` off (on by
    /// default): for an A/B of how it rides out a receive path that fell
    /// behind.
    #[arg(long)]
    no_refuse_while_dropping: bool,
    /// SO_RCVBUF the gateway asks for on its UDP socket, bytes (its
    /// `transport.udp_recv_buffer_bytes`; default 8 MiB). The kernel caps it at
    /// `net.core.rmem_max` (and doubles it): raise that first. For an A/B of
    /// how much of a burst the socket absorbs before it drops.
    #[arg(long)]
    udp_recv_buffer_bytes: Option<usize>,
}

/// Runs the gateway until Ctrl-C (SIGINT). `allocator` names the binary's
/// allocator in the first line it prints, so that a run's log says which
/// gateway it measured.
pub fn serve_gateway(a: &GatewayArgs, allocator: &str) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::from_file(&a.scenario).with_context(|| a.scenario.display().to_string())?;
    raise_open_file_limit(false);
    let max_sessions = a
        .max_sessions
        .unwrap_or(scenario.live.max_players.saturating_mul(2).max(1_000));
    let store = match &a.store_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            let store: outpost_backend::store::StoreConfig =
                toml::from_str(&text).with_context(|| path.display().to_string())?;
            // Without the `fdb` feature this names the feature; checked before booting.
            store.validate().with_context(|| path.display().to_string())?;
            Some(store)
        }
        None => None,
    };
    // The FoundationDB network runs once per process; the guard stops it when
    // this function returns.
    #[cfg(feature = "fdb")]
    let _fdb_network = match &store {
        Some(s) if s.backend == outpost_backend::store::BackendKind::Fdb => Some(boot_fdb()?),
        _ => None,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let gw = LocalGateway::start_on(
            a.listen,
            max_sessions,
            local_pool(&scenario),
            store,
            GatewayKnobs {
                refuse_while_dropping: !a.no_refuse_while_dropping,
                udp_recv_buffer_bytes: a.udp_recv_buffer_bytes,
            },
        )
        .await?;
        std::fs::write(&a.ca_out, &gw.ca_pem).with_context(|| format!("writing {}", a.ca_out.display()))?;
        println!(
            "gateway on {} (max {max_sessions} sessions; CA in {}; metrics on {}; allocator: {allocator}); Ctrl-C stops it",
            gw.addr,
            a.ca_out.display(),
            gw.metrics_addr.map_or("-".into(), |m| m.to_string())
        );
        tokio::signal::ctrl_c().await?;
        gw.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts FoundationDB's network thread (client API 7.3).
#[cfg(feature = "fdb")]
fn boot_fdb() -> anyhow::Result<foundationdb::api::NetworkAutoStop> {
    let builder = foundationdb::api::FdbApiBuilder::default()
        .build()
        .context("selecting the FoundationDB client API version (is libfdb_c 7.3 installed?)")?;
    // SAFETY: called once per process, before any FoundationDB use; the guard is
    // dropped (stopping the network) before the process exits.
    let network = unsafe { builder.boot() }.context("starting the FoundationDB network")?;
    Ok(network)
}

/// Raises the soft open-file limit to the hard limit: without shared endpoints
/// every live player holds a UDP socket, and the usual soft limit (1,024) ends
/// a run of more players with "too many open files". Best effort: on failure
/// the run goes on with the limit it has.
pub fn raise_open_file_limit(verbose: bool) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if verbose => eprintln!("open-file limit: {n}"),
        Ok(_) => {}
        Err(e) => eprintln!("outpost-sim: could not raise the open-file limit: {e}"),
    }
}

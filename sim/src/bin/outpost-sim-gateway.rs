//! `outpost-sim-gateway`: `outpost-sim gateway` (the `--local` gateway as a
//! process of its own) on mimalloc, the `outpost-gateway` binary's allocator.
//!
//! ```text
//! outpost-sim-gateway sim/scenarios/live-50k.toml --listen 127.0.0.1:4433 --ca-out /tmp/ca.pem &
//! outpost-sim live sim/scenarios/live-50k.toml --gateway 127.0.0.1:4433 --ca /tmp/ca.pem --gateway-pid $!
//! ```
//!
//! Why a binary of its own: a process has one allocator, chosen when it is
//! built. The live sim stays on the system allocator (mimalloc costs it
//! ≈ 4.7 KiB per simulated player), while a gateway on the system allocator
//! spends far more of its CPU in malloc than a production gateway does
//! (docs/PERFORMANCE.md, "The sim's gateway on mimalloc").

use std::process::ExitCode;

use clap::Parser;

#[path = "../gateway_cmd.rs"]
mod gateway_cmd;

/// Allocator of the `outpost-gateway` binary (see `gateway/src/main.rs` for
/// why it is mimalloc there).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "outpost-sim-gateway",
    version,
    about = "The sim's gateway (outpost-sim gateway) on the gateway binary's allocator"
)]
struct Cli {
    #[command(flatten)]
    args: gateway_cmd::GatewayArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match gateway_cmd::serve_gateway(&cli.args, "mimalloc") {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outpost-sim-gateway: {e:#}");
            ExitCode::from(1)
        }
    }
}

//! `outpost-sim`: run a scenario in live or model mode, write the JSON result
//! and the HTML report, exit 2 when an SLO is missed.
//!
//! ```text
//! outpost-sim live sim/scenarios/mini-launch.toml --local           # one in-process gateway on loopback
//! outpost-sim live SCENARIO --gateway 127.0.0.1:4433 --ca certs/dev/ca.pem
//! outpost-sim live SCENARIO --gateway eu-west=127.0.0.1:4433 --gateway us-east=127.0.0.1:4434 --ca ca.pem
//! outpost-sim model sim/scenarios/launch-day.toml                   # virtual time, matchmaker core
//! outpost-sim queue sim/scenarios/launch-queue.toml                 # virtual time, the real login queue
//! outpost-sim check sim/scenarios/*.toml                            # validate scenario files
//! outpost-sim gateway SCENARIO --ca-out /tmp/ca.pem                  # the --local gateway as its own process
//! outpost-sim-gateway SCENARIO --ca-out /tmp/ca.pem                  # the same, on the gateway binary's allocator
//! outpost-sim render target/sim/smoke-live/result.json              # re-render report.html
//! outpost-sim compare BASE/result.json NEW/result.json              # differences; exit 2 on a regression
//! ```
//!
//! Exit status: 0 all SLOs met (or none set), 2 an SLO missed, 1 the run
//! could not be done (bad scenario, unreachable setup). `compare`: 0 no
//! regression, 2 a regression beyond the thresholds, 1 could not compare.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use outpost_sim::compare::Thresholds;
use outpost_sim::gateway_probe::GatewayProbe;
use outpost_sim::live::LiveTarget;
use outpost_sim::local::local_pool;
use outpost_sim::local::LocalGateway;
use outpost_sim::results::Results;
use outpost_sim::scenario::Scenario;
use outpost_sim::RunOptions;

mod gateway_cmd;
mod summary;

use gateway_cmd::{raise_open_file_limit, serve_gateway, GatewayArgs};
use summary::print_summary;

#[derive(Debug, Parser)]
#[command(
    name = "outpost-sim",
    version,
    about = "Launch-curve simulations against Outpost"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive real gateways over QUIC with virtual players.
    Live(LiveArgs),
    /// Run the matchmaker core (or, with --store, the store-backed pool) on
    /// virtual time (no sockets).
    Model(ModelArgs),
    /// Run the backend's login queue on an embedded store and virtual time
    /// (scenarios with a `[login_queue]` section).
    Queue(CommonArgs),
    /// Run the `--local` gateway as a process of its own (the scenario's
    /// matchmaking queue, client grants on, temporary store) until Ctrl-C, to
    /// measure sim and gateway apart: `live SCENARIO --gateway ADDR --ca CA_OUT`.
    /// On the system allocator; `outpost-sim-gateway` runs the same gateway on
    /// mimalloc, as the `outpost-gateway` binary does.
    Gateway(GatewayArgs),
    /// Re-render report.html next to an existing result.json.
    Render { result: PathBuf },
    /// Compare two result.json files: print the differences, write an HTML
    /// diff, exit 2 on a regression beyond the thresholds.
    Compare(CompareArgs),
    /// Parse and validate scenario files.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// Scenario file (TOML; see sim/README.md).
    scenario: PathBuf,
    /// Multiply every player count of the curves by this.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Stop after this many seconds even if the curves go on.
    #[arg(long)]
    duration: Option<f64>,
    /// Output folder for result.json and report.html. Default
    /// target/sim/<scenario>-<mode>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct ModelArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Run the real store-backed pool (embedded store in a temporary
    /// directory, leased partitions, one worker each) instead of the core
    /// alone; its work runs on real time (sets `[matchmaking.store]`).
    #[arg(long)]
    store: bool,
    /// With --store: skill-band partitions per region (default: the
    /// scenario's, else 1).
    #[arg(long, requires = "store")]
    partitions: Option<u32>,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The reference run's result.json.
    base: PathBuf,
    /// The run to judge.
    new: PathBuf,
    /// TOML file of thresholds (keys as the flags, with `_`: latency_pct,
    /// latency_floor_ms, wait_pct, wait_floor_s, error_rate_abs,
    /// success_rate_abs, min_count, slo_verdicts). Flags win over it.
    #[arg(long)]
    thresholds: Option<PathBuf>,
    /// Latency percentiles: relative growth that is a regression, percent (default 20).
    #[arg(long)]
    latency_pct: Option<f64>,
    /// ... and the absolute growth also needed, ms (default 5).
    #[arg(long)]
    latency_floor_ms: Option<f64>,
    /// Waits (match, queue): relative growth, percent (default 20).
    #[arg(long)]
    wait_pct: Option<f64>,
    /// ... and the absolute growth also needed, seconds (default 1).
    #[arg(long)]
    wait_floor_s: Option<f64>,
    /// Error rates: absolute growth that is a regression (default 0.005).
    #[arg(long)]
    error_rate_abs: Option<f64>,
    /// Login success rate: absolute fall that is a regression (default 0.01).
    #[arg(long)]
    success_rate_abs: Option<f64>,
    /// Fewest samples in both runs for a metric to be judged (default 20).
    #[arg(long)]
    min_count: Option<u64>,
    /// Do not count SLOs met in BASE and missed in NEW as regressions.
    #[arg(long)]
    ignore_slo_verdicts: bool,
    /// Where to write the HTML diff. Default: compare.html next to NEW.
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LiveArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Gateway address: `HOST:PORT` for every region, or `REGION=HOST:PORT`.
    /// Repeat for several gateways (the SDK picks the lowest RTT).
    #[arg(long = "gateway")]
    gateways: Vec<String>,
    /// PEM CA file that signed the gateways' certificates (e.g. certs/dev/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Name the gateway certificates are valid for.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Start one gateway inside this process on 127.0.0.1 (temporary store and
    /// certificates) and send every region's players to it.
    #[arg(long, alias = "spawn-gateway", conflicts_with_all = ["gateways", "ca"])]
    local: bool,
    /// Override live.max_players.
    #[arg(long)]
    max_players: Option<usize>,
    /// Read the gateway's CPU and RSS at every sample from its `/metrics`
    /// (`HOST:PORT` of its metrics or admin listener). With `--local` the
    /// in-process gateway is measured without this.
    #[arg(long, conflicts_with_all = ["local", "gateway_pid"])]
    gateway_metrics: Option<SocketAddr>,
    /// Read the gateway's CPU and RSS at every sample from `/proc/PID` (a
    /// gateway process on this machine, e.g. `outpost-sim gateway`).
    #[arg(long, conflicts_with = "local")]
    gateway_pid: Option<u32>,
    /// Pause the `--gateway-pid` process once, `AT_S:FOR_MS` (e.g. `250:1000`:
    /// SIGSTOP 250 s into the run, SIGCONT a second later), to see how the
    /// gateway and its clients recover from a stall. Needs `kill` and
    /// `setsid` (util-linux): if the sim dies during the pause, a backstop
    /// process resumes the gateway half a second after the pause's end.
    #[arg(long, requires = "gateway_pid", value_name = "AT_S:FOR_MS")]
    pause_gateway: Option<outpost_sim::pause::GatewayPause>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outpost-sim: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (mode, common) = match &cli.command {
        Command::Check { scenarios } => {
            for path in scenarios {
                let s = Scenario::from_file(path).with_context(|| path.display().to_string())?;
                println!(
                    "{}: ok ({} regions, {:.0} s, peak {:.0} players)",
                    path.display(),
                    s.regions.len(),
                    s.duration_s(),
                    s.curves(1.0).iter().map(|c| c.peak()).sum::<f64>()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Render { result } => {
            let r = Results::read(result).with_context(|| result.display().to_string())?;
            let html = result.with_file_name("report.html");
            std::fs::write(&html, outpost_sim::report::render(&r))?;
            println!("report: {}", html.display());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Gateway(a) => return serve_gateway(a, "system"),
        Command::Compare(a) => return compare(a),
        Command::Live(a) => ("live", &a.common),
        Command::Model(a) => ("model", &a.common),
        Command::Queue(a) => ("queue", a),
    };
    let mut scenario =
        Scenario::from_file(&common.scenario).with_context(|| common.scenario.display().to_string())?;
    if let Command::Model(a) = &cli.command {
        store_option(&mut scenario, a)?;
    }
    if !(common.scale.is_finite() && common.scale > 0.0) {
        bail!("--scale must be a positive number");
    }
    let mut opts = RunOptions {
        scale: common.scale,
        max_players: None,
        max_duration: common.duration.map(Duration::from_secs_f64),
        progress: !common.quiet,
        progress_log: None,
        gateway_probe: None,
        gateway_pause: None,
    };
    let results = match &cli.command {
        Command::Live(a) => {
            opts.max_players = a.max_players;
            opts.gateway_pause = a.pause_gateway.zip(a.gateway_pid).map(|(p, pid)| (pid, p));
            opts.gateway_probe = if a.local {
                Some(GatewayProbe::Threads(outpost_sim::local::THREAD_NAME.into()))
            } else if let Some(pid) = a.gateway_pid {
                Some(GatewayProbe::Pid(pid))
            } else {
                a.gateway_metrics.map(GatewayProbe::Metrics)
            };
            raise_open_file_limit(opts.progress);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(run_live(&scenario, a, &opts))?
        }
        Command::Queue(_) => outpost_sim::queue_model::run(&scenario, &opts)?,
        _ => outpost_sim::model::run(&scenario, &opts)?,
    };
    let out = common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/sim").join(format!("{}-{mode}", scenario.name)));
    let (json, html) = results.write(&out)?;
    print_summary(&results);
    println!("result: {}\nreport: {}", json.display(), html.display());
    Ok(if results.slo_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `model --store [--partitions N]`: the scenario's `[matchmaking.store]`.
fn store_option(scenario: &mut Scenario, a: &ModelArgs) -> anyhow::Result<()> {
    if !a.store {
        return Ok(());
    }
    let Some(m) = scenario.matchmaking.as_mut() else {
        bail!("--store needs a [matchmaking] section");
    };
    let st = m.store.get_or_insert_with(Default::default);
    if let Some(p) = a.partitions {
        st.partitions = p;
    }
    scenario.validate()?;
    Ok(())
}

async fn run_live(scenario: &Scenario, a: &LiveArgs, opts: &RunOptions) -> anyhow::Result<Results> {
    if a.local {
        let cap = opts.max_players.unwrap_or(scenario.live.max_players);
        let pool = local_pool(scenario);
        let gw = LocalGateway::start(cap.saturating_mul(2).max(1_000), pool).await?;
        if opts.progress {
            eprintln!("local gateway on {} (in-process; temporary store)", gw.addr);
        }
        let target = LiveTarget {
            gateways: vec![vec![gw.addr]; scenario.regions.len()],
            ca_pem: gw.ca_pem.clone(),
            server_name: "localhost".into(),
        };
        let r = outpost_sim::live::run(scenario, target, opts).await;
        gw.stop().await;
        return r;
    }
    let Some(ca) = &a.ca else {
        bail!("live mode needs --local, or --gateway addresses and --ca (the CA PEM that signed them)");
    };
    let ca_pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let target = LiveTarget {
        gateways: parse_gateways(scenario, &a.gateways)?,
        ca_pem,
        server_name: a.server_name.clone(),
    };
    outpost_sim::live::run(scenario, target, opts).await
}

/// `outpost-sim gateway`: the local gateway until Ctrl-C.
/// `ADDR` applies to every region; `REGION=ADDR` to one (and wins over the former).
fn parse_gateways(scenario: &Scenario, args: &[String]) -> anyhow::Result<Vec<Vec<SocketAddr>>> {
    let mut all = Vec::new();
    let mut by_region: HashMap<&str, Vec<SocketAddr>> = HashMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some((region, addr)) => {
                let Some(spec) = scenario.regions.iter().find(|r| r.name == region) else {
                    bail!("--gateway {arg}: the scenario has no region {region:?}");
                };
                let addr: SocketAddr = addr.parse().with_context(|| format!("--gateway {arg}"))?;
                by_region.entry(spec.name.as_str()).or_default().push(addr);
            }
            None => all.push(
                arg.parse::<SocketAddr>()
                    .with_context(|| format!("--gateway {arg}"))?,
            ),
        }
    }
    scenario
        .regions
        .iter()
        .map(|r| {
            let g = by_region
                .get(r.name.as_str())
                .cloned()
                .unwrap_or_else(|| all.clone());
            if g.is_empty() {
                bail!("no --gateway for region {:?}", r.name);
            }
            Ok(g)
        })
        .collect()
}

/// `outpost-sim compare`.
fn compare(a: &CompareArgs) -> anyhow::Result<ExitCode> {
    let mut th = match &a.thresholds {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            toml::from_str::<Thresholds>(&text).with_context(|| path.display().to_string())?
        }
        None => Thresholds::default(),
    };
    let set = |v: Option<f64>, into: &mut f64| {
        if let Some(v) = v {
            *into = v;
        }
    };
    set(a.latency_pct, &mut th.latency_pct);
    set(a.latency_floor_ms, &mut th.latency_floor_ms);
    set(a.wait_pct, &mut th.wait_pct);
    set(a.wait_floor_s, &mut th.wait_floor_s);
    set(a.error_rate_abs, &mut th.error_rate_abs);
    set(a.success_rate_abs, &mut th.success_rate_abs);
    if let Some(n) = a.min_count {
        th.min_count = n;
    }
    if a.ignore_slo_verdicts {
        th.slo_verdicts = false;
    }
    th.validate().map_err(anyhow::Error::msg)?;
    let base = Results::read(&a.base).with_context(|| a.base.display().to_string())?;
    let new = Results::read(&a.new).with_context(|| a.new.display().to_string())?;
    let c = outpost_sim::compare::compare(&base, &new, &th);
    print!("{}", c.text());
    let html = a
        .html
        .clone()
        .unwrap_or_else(|| a.new.with_file_name("compare.html"));
    std::fs::write(&html, outpost_sim::compare::render(&c)).with_context(|| html.display().to_string())?;
    println!("compare report: {}", html.display());
    Ok(if c.regressions().next().is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

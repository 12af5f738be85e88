//! `outpost-sim-gateway` as a process of its own, as the live-50k figures run
//! it: it listens where it is told, writes the CA, serves a live run of the
//! smoke scenario over real QUIC, is measured from `/proc/PID`, and stops
//! cleanly on SIGINT. Its first line names its allocator (mimalloc), so that
//! a run's log says which gateway was measured. The run pauses it for 300 ms
//! (`RunOptions::gateway_pause`, the CLI's `--pause-gateway`), and the
//! run's notes say so.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_sim::gateway_probe::GatewayProbe;
use outpost_sim::live::LiveTarget;
use outpost_sim::scenario::Scenario;
use outpost_sim::RunOptions;

/// Kills the child if the test fails before it stopped it.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mimalloc_gateway_binary_serves_a_live_run_and_stops_on_sigint() {
    let scenario_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let dir = tempfile::tempdir().unwrap();
    let ca_out = dir.path().join("ca.pem");
    let child = Command::new(env!("CARGO_BIN_EXE_outpost-sim-gateway"))
        .arg(&scenario_path)
        .args(["--listen", "127.0.0.1:0", "--ca-out"])
        .arg(&ca_out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let pid = child.0.id();

    // Its first line: where it listens, and on which allocator.
    let stdout = child.0.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(banner.contains("allocator: mimalloc"), "{banner}");
    let addr: SocketAddr = banner
        .strip_prefix("gateway on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .parse()
        .unwrap();
    assert_ne!(addr.port(), 0, "the bound port is printed: {banner}");

    let scenario = Scenario::from_file(&scenario_path).unwrap();
    let target = LiveTarget {
        gateways: vec![vec![addr]; scenario.regions.len()],
        ca_pem: std::fs::read(&ca_out).unwrap(),
        server_name: "localhost".into(),
    };
    let opts = RunOptions {
        gateway_probe: Some(GatewayProbe::Pid(pid)),
        // A stall of the gateway process in the middle of the run.
        gateway_pause: Some((pid, "3:300".parse().unwrap())),
        ..RunOptions::default()
    };
    let results = outpost_sim::live::run(&scenario, target, &opts).await.unwrap();
    let t = &results.totals;
    // The smoke curves peak at 20 + 10 players.
    assert!(t.logins_ok >= 30, "{t:?}; errors {:?}", results.errors);
    assert!(t.requests > 100, "{t:?}");
    let source = results.gateway_source.as_ref().expect("the gateway was measured");
    assert_eq!(source.how, format!("/proc/{pid}"));
    let measured = results
        .timeline
        .iter()
        .filter_map(|s| s.gateway.as_ref())
        .filter(|g| g.rss_bytes.is_some_and(|b| b > 0))
        .count();
    assert!(measured >= 2, "the gateway process's RSS was sampled");
    let paused = format!("The gateway (pid {pid}) was paused (SIGSTOP) from 3.");
    assert!(
        results
            .notes
            .iter()
            .any(|n| n.starts_with(&paused) && n.ends_with(" s (300 ms).")),
        "{:?}",
        results.notes
    );

    // Ctrl-C stops it, with a clean exit.
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}

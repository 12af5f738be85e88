//! The HTML report as a browser shows it: headless Chromium (Debian's
//! `chromium` package; `.ci/run` installs it) loads reports of the smoke
//! scenario, in model mode and in a short live run against an in-process
//! gateway, and the test checks the DOM Chromium built (every main section
//! present, its charts drawn with data, one tab per region, the phases, the
//! SLO lines, the gateway's CPU and memory) and that a screenshot of the page
//! is a real picture, not a blank one.
//!
//! Without Chromium the test fails and names the package: it does not pass
//! without having looked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_sim::gateway_probe::{GatewayProbe, Prober};
use outpost_sim::live::LiveTarget;
use outpost_sim::local::LocalGateway;
use outpost_sim::results::Results;
use outpost_sim::scenario::Scenario;
use outpost_sim::RunOptions;

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("headless Chromium not found: install Debian's `chromium` package (apt-get install chromium); .ci/run does");
}

/// Runs Chromium headless on `html` with `args`; returns its stdout.
fn run_chromium(html: &Path, args: &[&str], profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

/// The text between `<tag ... id="id"` and the next `<h2` (a section's body).
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("section {id} missing"));
    let rest = &dom[start..];
    let end = rest[1..].find("<h2").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// Paths with at least two points (a drawn line, not an empty chart).
fn drawn_lines(s: &str) -> usize {
    s.split("<path d=\"")
        .skip(1)
        .filter(|p| p.split('"').next().is_some_and(|d| d.contains('L')))
        .count()
}

/// Checks a screenshot is a PNG of the asked size with real content: many
/// distinct byte values after inflating, not a page of one colour.
fn check_png(png: &[u8], width: u32, height: u32) {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut pos = 8;
    let mut idat = Vec::new();
    let mut size = None;
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &png[pos + 4..pos + 8];
        let data = &png[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                size = Some((
                    u32::from_be_bytes(data[0..4].try_into().unwrap()),
                    u32::from_be_bytes(data[4..8].try_into().unwrap()),
                ))
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    assert_eq!(size, Some((width, height)));
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(idat.as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    let mut seen = [false; 256];
    for b in &raw {
        seen[*b as usize] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    // Filtered scanlines of a blank page are nearly all zeros.
    let busy = raw.iter().filter(|b| **b != 0).count() as f64 / raw.len() as f64;
    assert!(
        distinct >= 64 && busy > 0.01,
        "the screenshot looks blank: {distinct} distinct bytes, {:.3}% non-zero",
        busy * 100.0
    );
}

fn check_report(dir: &Path, r: &Results) -> String {
    let html = dir.join("report.html");
    let profile = dir.join("chromium-profile");
    let dom = run_chromium(&html, &["--dump-dom"], &profile);
    // Main sections, each drawn.
    let over = section(&dom, "over-time");
    assert!(
        drawn_lines(over) >= 4,
        "players (actual and target) and more: {over}"
    );
    assert!(over.contains("class=\"target\"") && over.contains("class=\"actual\""));
    assert!(
        over.contains("data-kind=\"retry_storm\"") && over.contains("retry storm 50% lockstep"),
        "the storm is shaded and labelled"
    );
    let regions = section(&dom, "regions");
    for (i, name) in r.regions.iter().enumerate() {
        let start = regions
            .find(&format!("id=\"rp{i}\" data-region=\"{name}\""))
            .unwrap_or_else(|| panic!("tab of {name}"));
        let panel = &regions[start..];
        let panel = &panel[..panel[1..].find("class=\"panel\"").map_or(panel.len(), |e| e + 1)];
        assert!(drawn_lines(panel) >= 2, "{name}: players and target drawn");
    }
    let latency = section(&dom, "latency");
    assert!(latency.contains("<td>") && !latency.contains("no operations recorded"));
    // One unit per column: the header names it, the cells are bare numbers.
    assert!(latency.contains("p99 ("), "{latency}");
    // The screenshot.
    let png = dir.join("report.png");
    run_chromium(
        &html,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1000,1600",
        ],
        &profile,
    );
    check_png(&std::fs::read(&png).unwrap(), 1000, 1600);
    dom
}

fn smoke() -> Scenario {
    Scenario::from_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml")).unwrap()
}

#[test]
fn model_report_renders_in_chromium() {
    let scenario = smoke();
    let r = outpost_sim::model::run(&scenario, &RunOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    r.write(dir.path()).unwrap();
    let dom = check_report(dir.path(), &r);
    let tail = section(&dom, "tail");
    assert!(tail.contains("peak concurrent players") && tail.contains("Worst tickets"));
    assert!(tail.matches("<tr>").count() >= 2, "worst tickets listed: {tail}");
    assert!(
        section(&dom, "over-time").contains("match wait p95 SLO"),
        "the SLO line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_report_renders_in_chromium() {
    let scenario = smoke();
    let gw = LocalGateway::start(1_000, outpost_sim::local::local_pool(&scenario))
        .await
        .unwrap();
    let target = LiveTarget {
        gateways: vec![vec![gw.addr]; scenario.regions.len()],
        ca_pem: gw.ca_pem.clone(),
        server_name: "localhost".into(),
    };
    let opts = RunOptions {
        gateway_probe: Some(GatewayProbe::Threads(outpost_sim::local::THREAD_NAME.into())),
        // Past the storm (4–6 s); the drain is not needed.
        max_duration: Some(Duration::from_secs(7)),
        ..RunOptions::default()
    };
    let r = outpost_sim::live::run(&scenario, target, &opts).await.unwrap();
    // The `/metrics` probe reads the same gateway's listener (its process
    // figures are this test process's: the gateway runs inside it).
    let mut scrape = Prober::new(GatewayProbe::Metrics(gw.metrics_addr.expect("metrics listener")));
    let first = scrape.sample().await.expect("GET /metrics answered");
    assert!(first.rss_bytes.unwrap_or(0) > 1 << 20, "{first:?}");
    let second = scrape.sample().await.expect("GET /metrics answered");
    assert!(
        second.cpu_cores.is_some(),
        "a CPU rate from two scrapes: {second:?}"
    );
    gw.stop().await;
    let dir = tempfile::tempdir().unwrap();
    r.write(dir.path()).unwrap();
    // The per-region series were recorded.
    let logins: f64 = r
        .timeline
        .iter()
        .flat_map(|s| s.regions.iter())
        .filter_map(|x| x.logins_per_s)
        .sum();
    assert!(logins > 0.0, "per-region logins recorded");
    let dir_path = dir.path().to_owned();
    let r2 = r.clone();
    let dom = tokio::task::spawn_blocking(move || check_report(&dir_path, &r2))
        .await
        .unwrap();
    let gateway = section(&dom, "gateway");
    assert!(gateway.contains("in-process gateway"), "{gateway}");
    // The gateway's CPU and the sim's, RSS, and the sim's timer lateness (worst, p99).
    assert!(
        drawn_lines(gateway) >= 5,
        "CPU, RSS and the sim's figures drawn: {gateway}"
    );
    assert!(gateway.contains("the sim's CPU") && gateway.contains("How late the sim's own timers"));
    assert!(gateway.contains("MiB"), "RSS scaled to MiB: {gateway}");
    let regions = section(&dom, "regions");
    assert!(regions.contains("request latency") && regions.contains("logins per second"));
}

//! The gateway's own CPU and resident memory over a live run, read at every
//! timeline sample:
//!
//! - [`GatewayProbe::Metrics`]: `GET /metrics` of a gateway's metrics (or
//!   admin) listener, reading `process_cpu_seconds_total` and
//!   `process_resident_memory_bytes` (any gateway the sim can reach; CPU is
//!   counted in whole seconds there, so short intervals read 0 or 1 core: a
//!   coarse curve);
//! - [`GatewayProbe::Pid`]: `/proc/PID` of a gateway process on this machine
//!   (e.g. `outpost-sim gateway`; CPU in 10 ms ticks);
//! - [`GatewayProbe::Threads`]: the threads of this process whose name starts
//!   with a prefix: the `--local` gateway's runtime (`local-gateway`), plus
//!   the threads it started (they inherit the name unless they set one). The
//!   in-process gateway shares the sim's memory, so its RSS is the whole
//!   process's, and [`GatewaySource::rss_scope`] says so.
//!
//! A probe that fails (process gone, listener unreachable) yields `None` for
//! that sample: the chart shows a gap, the run goes on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_gateway::metrics::process::{parse, Figures};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::annotations::{GatewaySample, GatewaySource};

/// `/proc` CPU times are in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_S: f64 = 100.0;
/// How long a `/metrics` scrape may take before the sample is skipped.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(500);
/// Most bytes read from `/metrics`.
const SCRAPE_MAX_BYTES: u64 = 4 << 20;

/// Where live mode reads the gateway's CPU and memory.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayProbe {
    /// The gateway's metrics listener (`HOST:PORT`, path `/metrics`).
    Metrics(SocketAddr),
    /// A gateway process on this machine.
    Pid(u32),
    /// Threads of this process whose name starts with the prefix.
    Threads(String),
}

impl GatewayProbe {
    /// What the figures cover, for the report.
    pub fn source(&self) -> GatewaySource {
        match self {
            GatewayProbe::Metrics(a) => GatewaySource {
                how: format!("metrics http://{a}/metrics (CPU in whole seconds)"),
                rss_scope: "the gateway process".into(),
            },
            GatewayProbe::Pid(p) => GatewaySource {
                how: format!("/proc/{p}"),
                rss_scope: "the gateway process".into(),
            },
            GatewayProbe::Threads(prefix) => GatewaySource {
                how: format!("in-process gateway: CPU of this process's threads named {prefix}*"),
                rss_scope: "the whole sim process (the gateway runs inside it)".into(),
            },
        }
    }
}

/// A probe with the previous CPU reading, to turn CPU time into cores.
#[derive(Debug)]
pub struct Prober {
    probe: GatewayProbe,
    last: Option<(Instant, f64)>,
}

impl Prober {
    pub fn new(probe: GatewayProbe) -> Prober {
        Prober { probe, last: None }
    }

    /// Reads the figures now. The first sample has no CPU rate (nothing to
    /// compare with) unless the probe counts from the process's start.
    pub async fn sample(&mut self) -> Option<GatewaySample> {
        let now = Instant::now();
        let (cpu_s, rss) = match &self.probe {
            GatewayProbe::Metrics(addr) => {
                let text = tokio::time::timeout(SCRAPE_TIMEOUT, scrape(*addr))
                    .await
                    .ok()?
                    .ok()?;
                metrics_figures(&text)
            }
            GatewayProbe::Pid(pid) => {
                let f = proc_figures(&format!("/proc/{pid}"))?;
                (f.cpu_ticks.map(|t| t as f64 / TICKS_PER_S), f.rss_bytes)
            }
            GatewayProbe::Threads(prefix) => {
                let rss = proc_figures("/proc/self").and_then(|f| f.rss_bytes);
                (threads_cpu_s(prefix), rss)
            }
        };
        let cpu_cores = cpu_s.and_then(|c| {
            let prev = self.last.replace((now, c));
            prev.map(|(t0, c0)| ((c - c0) / now.duration_since(t0).as_secs_f64().max(1e-3)).max(0.0))
        });
        Some(GatewaySample {
            cpu_cores,
            rss_bytes: rss,
        })
    }
}

fn proc_figures(dir: &str) -> Option<Figures> {
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    Some(parse(&status, &stat))
}

/// CPU seconds of this process's threads named `prefix*`.
fn threads_cpu_s(prefix: &str) -> Option<f64> {
    let mut ticks = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        if let Some(t) = parse("", &stat).cpu_ticks {
            ticks += t;
            found = true;
        }
    }
    found.then(|| ticks as f64 / TICKS_PER_S)
}

/// `GET /metrics` over HTTP/1.0 (the listener closes after the answer).
async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.take(SCRAPE_MAX_BYTES).read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `process_cpu_seconds_total` and `process_resident_memory_bytes` from a
/// Prometheus text exposition (an HTTP head before it is skipped).
pub fn metrics_figures(text: &str) -> (Option<f64>, Option<u64>) {
    let value = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name value` or `name{labels} value`, not `name_suffix`.
            let rest = match rest.chars().next()? {
                ' ' => rest,
                '{' => rest.split_once('}')?.1,
                _ => return None,
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    (
        value("process_cpu_seconds_total"),
        value("process_resident_memory_bytes").map(|v| v as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_figures_from_an_exposition() {
        let text = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n\
# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\n\
process_cpu_seconds_total_extra 99\nprocess_cpu_seconds_total 12\n\
process_resident_memory_bytes{instance=\"a\"} 4.2e7\n";
        assert_eq!(metrics_figures(text), (Some(12.0), Some(42_000_000)));
        assert_eq!(metrics_figures("nothing here"), (None, None));
    }

    #[tokio::test]
    async fn this_process_is_a_gateway_too() {
        // The test process stands in for a gateway process.
        let mut p = Prober::new(GatewayProbe::Pid(std::process::id()));
        let first = p.sample().await.unwrap();
        assert!(first.rss_bytes.unwrap() > 0);
        assert_eq!(first.cpu_cores, None, "no rate before a second reading");
        let second = p.sample().await.unwrap();
        assert!(second.cpu_cores.unwrap() >= 0.0);
        let mut none = Prober::new(GatewayProbe::Threads("no-such-thread-name".into()));
        assert_eq!(none.sample().await.unwrap().cpu_cores, None);
    }
}

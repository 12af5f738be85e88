//! The load generator's own health in live mode: how late the sim's runtime
//! runs a timer ([`LagProbe`]), and how much CPU the sim itself uses.
//!
//! Why: a latency the sim records runs from the moment a player's task sends
//! to the moment it sees the answer. When the sim is short of CPU (on one box
//! shared with the gateway, in a collapse both processes fight for the same
//! cores), its tasks run late, and that delay lands in the recorded latency
//! as if the gateway had spent it. These figures say when that happened, so a
//! report can tell the gateway's slowness from the load generator's.
//!
//! [`LagProbe`] is one task that asks for a wake-up every [`PERIOD`] and
//! records how late each one came, in an HDR histogram per sample interval:
//! the same runtime, timer wheel and workers as the players' tasks. Tokio's
//! timer has millisecond resolution, so lateness of about a millisecond is the
//! floor, not a problem.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::gateway_probe::{GatewayProbe, Prober};

/// How often the probe asks to be woken.
pub const PERIOD: Duration = Duration::from_millis(10);

/// Lateness above this in a sample interval is named in the run's notes.
pub const NOTE_ABOVE_MS: f64 = 100.0;

/// The sim's own figures at one sample time (live mode).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimSample {
    /// How late the probe's timer fired over the interval: 99th percentile
    /// and worst, ms.
    pub lag_p99_ms: Option<f64>,
    pub lag_max_ms: Option<f64>,
    /// The sim's CPU over the interval, in cores; `None` where `/proc`
    /// cannot be read. With an in-process gateway probed by its thread
    /// names (`--local`), those threads' CPU is taken out (its store's
    /// threads, named by the store, still count here); without a gateway
    /// probe it is the whole process's.
    pub cpu_cores: Option<f64>,
}

/// Measures the runtime's timer lateness until dropped.
#[derive(Debug)]
pub struct LagProbe {
    interval: Arc<Mutex<Histogram<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LagProbe {
    /// Starts the probe on the current runtime.
    pub fn start() -> LagProbe {
        // 1 µs to 10 min, 3 significant figures.
        let h = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
        let interval = Arc::new(Mutex::new(h));
        let rec = interval.clone();
        let task = tokio::spawn(async move {
            loop {
                let due = Instant::now() + PERIOD;
                tokio::time::sleep_until(due).await;
                let late = Instant::now().saturating_duration_since(due);
                let us = (late.as_micros() as u64).max(1);
                rec.lock().expect("not poisoned").saturating_record(us);
            }
        });
        LagProbe { interval, task }
    }

    /// The lateness since the last call: (p99, max) in ms, or `None` if the
    /// probe never woke in the interval (a runtime stalled for all of it
    /// shows at the next call, as one long lateness).
    pub fn take_interval(&self) -> Option<(f64, f64)> {
        let mut h = self.interval.lock().expect("not poisoned");
        let out =
            (!h.is_empty()).then(|| (h.value_at_quantile(0.99) as f64 / 1000.0, h.max() as f64 / 1000.0));
        h.reset();
        out
    }
}

impl Drop for LagProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sim's figures for the timeline: [`LagProbe`] and the process's CPU.
#[derive(Debug)]
pub struct SelfProbe {
    lag: LagProbe,
    cpu: Prober,
    /// The gateway runs inside this process: its threads' CPU is taken out.
    gateway_inside: bool,
}

impl SelfProbe {
    /// Starts the lag probe and takes the first CPU reading (the base of the
    /// first interval's rate).
    pub async fn start(gateway_inside: bool) -> SelfProbe {
        let mut cpu = Prober::new(GatewayProbe::Pid(std::process::id()));
        let _ = cpu.sample().await;
        SelfProbe {
            lag: LagProbe::start(),
            cpu,
            gateway_inside,
        }
    }

    /// The figures since the last call. `gateway_cores`: an in-process
    /// gateway's CPU over the same interval (without it, the sim's own CPU
    /// is not known).
    pub async fn sample(&mut self, gateway_cores: Option<f64>) -> SimSample {
        let lag = self.lag.take_interval();
        let process = self.cpu.sample().await.and_then(|s| s.cpu_cores);
        let cpu_cores = match (self.gateway_inside, process) {
            (false, p) => p,
            (true, Some(p)) => gateway_cores.map(|g| (p - g).max(0.0)),
            (true, None) => None,
        };
        SimSample {
            lag_p99_ms: lag.map(|l| l.0),
            lag_max_ms: lag.map(|l| l.1),
            cpu_cores,
        }
    }
}

/// The run's note about the sim's own lateness, if any interval's worst
/// exceeded [`NOTE_ABOVE_MS`]: `samples` are (time s, worst lateness ms).
pub fn lag_note(samples: impl IntoIterator<Item = (f64, f64)>) -> Option<String> {
    let late: Vec<(f64, f64)> = samples
        .into_iter()
        .filter(|(_, max)| *max > NOTE_ABOVE_MS)
        .collect();
    let (worst_t, worst) = late.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let first = late.first().map_or(worst_t, |x| x.0);
    let last = late.last().map_or(worst_t, |x| x.0);
    Some(format!(
        "The sim's own timers ran more than {NOTE_ABOVE_MS:.0} ms late in {} sample intervals \
         ({first:.0}–{last:.0} s), worst {} at {worst_t:.0} s: latencies recorded then include \
         the load generator's own delay, not only the gateway's (the timeline's `sim` figures).",
        late.len(),
        crate::units::fmt_ms(worst),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose only worker is blocked for 300 ms runs the probe's
    /// timer at least that late; an idle one runs it on time.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_shows_as_lateness() {
        let probe = LagProbe::start();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, calm_max) = probe.take_interval().expect("the probe woke");
        assert!(calm_max < 50.0, "an idle runtime's timer was {calm_max} ms late");

        // Let the probe register its next wake-up, then hold the only worker.
        tokio::time::sleep(Duration::from_millis(15)).await;
        std::thread::sleep(Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (_, blocked_max) = probe.take_interval().expect("the probe woke");
        assert!(
            blocked_max >= 280.0,
            "a 300 ms block showed as only {blocked_max} ms of lateness"
        );
    }

    #[test]
    fn the_note_names_late_intervals_only() {
        assert_eq!(lag_note([(2.0, 3.0), (4.0, 99.0)]), None);
        let note = lag_note([(2.0, 3.0), (4.0, 250.0), (6.0, 1800.0), (8.0, 120.0)]).expect("late");
        assert!(note.contains("in 3 sample intervals"), "{note}");
        assert!(note.contains("(4–8 s)"), "{note}");
        assert!(note.contains("at 6 s"), "{note}");
    }
}

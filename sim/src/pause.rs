//! A scripted pause of the gateway process during a live run
//! (`live --gateway-pid PID --pause-gateway AT_S:FOR_MS`): SIGSTOP at `AT_S`
//! seconds into the run, SIGCONT `FOR_MS` later.
//!
//! Why: the breaks of live-50k began at a store flush or a journal rotation,
//! at times that vary from run to run, and most runs did not break at all, so
//! whether a change helped took ten runs per side to judge. A pause is the
//! same kind of event (the gateway stops reading its socket while clients go
//! on sending) made exact: at a chosen time, population and length, so two
//! builds can be compared on how long they take to recover from it
//! (docs/PERFORMANCE.md, "Session 25"). It also stands for what a production
//! gateway meets now and then: a VM migration, a noisy neighbour, a stalled
//! disk.
//!
//! Signals are sent with the `kill` command (the sim has no `unsafe`; three
//! process spawns per run cost nothing). The gateway is always resumed, even
//! when the run ends during the pause: [`Paused::finish`] waits for it. And
//! when the sim itself dies during the pause (Ctrl-C, SIGKILL, a panic), a
//! **backstop** resumes it: with the SIGSTOP the sim starts a process of its
//! own, in a session of its own (`setsid`, so a terminal's Ctrl-C does not
//! reach it), that sends SIGCONT [`BACKSTOP_LATE`] after the pause should
//! end. Normally the sim's own SIGCONT comes first and the backstop's finds
//! the process running, which does nothing.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The longest pause accepted: longer ones outlast the clients' idle timeout
/// (30 s) and test nothing but reconnection.
pub const MAX_PAUSE: Duration = Duration::from_secs(20);

/// The latest start accepted (a day into the run): no run lasts longer, and
/// the bound keeps the deadline's arithmetic far from overflowing.
pub const MAX_AT: Duration = Duration::from_secs(86_400);

/// How long after the pause's end the backstop resumes the gateway if the
/// sim did not: late enough that the sim's own SIGCONT comes first unless
/// its runtime is more than half a second behind.
pub const BACKSTOP_LATE: Duration = Duration::from_millis(500);

/// When and how long to pause the gateway (`AT_S:FOR_MS`, e.g. `250:1000`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatewayPause {
    /// Seconds into the run.
    pub at: Duration,
    /// How long the process stays stopped.
    pub length: Duration,
}

impl FromStr for GatewayPause {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (at, ms) = s.split_once(':').context("expected AT_S:FOR_MS, e.g. 250:1000")?;
        let at: f64 = at.trim().parse().context("AT_S: seconds into the run")?;
        let ms: u64 = ms.trim().parse().context("FOR_MS: milliseconds")?;
        let at = Duration::try_from_secs_f64(at)
            .ok()
            .filter(|at| *at <= MAX_AT)
            .context("AT_S must be a time in the run, in seconds (at most a day)")?;
        let length = Duration::from_millis(ms);
        if length.is_zero() || length > MAX_PAUSE {
            bail!("FOR_MS must be 1 to {}", MAX_PAUSE.as_millis());
        }
        Ok(GatewayPause { at, length })
    }
}

/// A pause scheduled against a running process.
pub struct Paused {
    task: tokio::task::JoinHandle<String>,
    /// Whether SIGSTOP is being or was sent (then the task must finish, to
    /// resume the process), or the pause was called off before it began.
    state: Arc<Mutex<Stage>>,
}

#[derive(Default)]
struct Stage {
    begun: bool,
    called_off: bool,
}

impl Paused {
    /// Schedules `pause` of process `pid`, counted from `run_start`.
    pub fn schedule(pid: u32, pause: GatewayPause, run_start: Instant) -> Paused {
        let state = Arc::new(Mutex::new(Stage::default()));
        let stage = state.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(run_start + pause.at)).await;
            {
                let mut stage = stage.lock().expect("pause stage");
                if stage.called_off {
                    return String::new();
                }
                stage.begun = true;
            }
            let stopped = run_start.elapsed();
            // The backstop before the SIGSTOP: at no moment may the process
            // be stopped with only the sim left to resume it.
            if let Err(e) = backstop(pid, pause.length + BACKSTOP_LATE) {
                return format!("The gateway (pid {pid}) was not paused: no backstop to resume it: {e:#}.");
            }
            if let Err(e) = signal(pid, "-STOP").await {
                return format!(
                    "The gateway (pid {pid}) could not be paused at {:.1} s: {e:#}.",
                    stopped.as_secs_f64()
                );
            }
            tokio::time::sleep(pause.length).await;
            let resumed = run_start.elapsed();
            match signal(pid, "-CONT").await {
                Ok(()) => format!(
                    "The gateway (pid {pid}) was paused (SIGSTOP) from {:.1} s to {:.1} s ({} ms).",
                    stopped.as_secs_f64(),
                    resumed.as_secs_f64(),
                    pause.length.as_millis()
                ),
                Err(e) => format!(
                    "The gateway (pid {pid}) was paused at {:.1} s and could not be resumed: {e:#}.",
                    stopped.as_secs_f64()
                ),
            }
        });
        Paused { task, state }
    }

    /// The run's note about the pause: waits until the process is resumed
    /// when the pause has begun, and calls it off when it has not.
    pub async fn finish(self) -> String {
        {
            let mut stage = self.state.lock().expect("pause stage");
            if !stage.begun {
                stage.called_off = true;
                self.task.abort();
                return "The gateway pause was scheduled past the run's end: the gateway was not paused."
                    .into();
            }
        }
        self.task
            .await
            .unwrap_or_else(|e| format!("The gateway pause failed: {e}."))
    }
}

/// Starts a process, in a session of its own, that sends SIGCONT to `pid`
/// after `after`, whatever becomes of the sim. It is not waited for (tokio
/// reaps it when it ends); a SIGCONT to a running process does nothing.
fn backstop(pid: u32, after: Duration) -> anyhow::Result<()> {
    tokio::process::Command::new("setsid")
        .args(["sh", "-c", r#"sleep "$0" && exec kill -CONT "$1""#])
        .arg(format!("{:.3}", after.as_secs_f64()))
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting the backstop (setsid sh -c 'sleep; kill -CONT')")?;
    Ok(())
}

/// Sends `sig` (`-STOP`, `-CONT`) to `pid` with the `kill` command.
async fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .await
        .context("running kill")?;
    if !status.success() {
        bail!("kill {sig} {pid}: {status}");
    }
    Ok(())
}

/// The state letter of `/proc/PID/stat` (`T`: stopped).
#[cfg(test)]
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.chars().next().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_is_seconds_then_milliseconds() {
        let p: GatewayPause = "250:1000".parse().unwrap();
        assert_eq!(p.at, Duration::from_secs(250));
        assert_eq!(p.length, Duration::from_millis(1000));
        assert_eq!(
            "0.5:20".parse::<GatewayPause>().unwrap().at,
            Duration::from_millis(500)
        );
        for bad in [
            "250",
            "250:0",
            "250:20001",
            "-1:100",
            "x:100",
            "250:y",
            "nan:100",
            "inf:100",
            "1e30:100",
            "86401:100",
        ] {
            assert!(bad.parse::<GatewayPause>().is_err(), "{bad}");
        }
    }

    /// A `sleep 30` process, killed (stopped or not) and reaped when
    /// dropped, also when a test fails.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start() -> Sleeper {
            Sleeper(std::process::Command::new("sleep").arg("30").spawn().unwrap())
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A real process is stopped for the pause and running again after it.
    #[tokio::test]
    async fn a_process_is_stopped_for_the_pause_and_resumed() {
        let child = Sleeper::start();
        let pid = child.0.id();
        let start = Instant::now();
        let pause = GatewayPause {
            at: Duration::from_millis(100),
            length: Duration::from_millis(600),
        };
        let paused = Paused::schedule(pid, pause, start);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(proc_state(pid), 'T', "stopped during the pause");
        let note = paused.finish().await;
        assert!(
            start.elapsed() >= Duration::from_millis(700),
            "finish waits for the resume"
        );
        assert_ne!(proc_state(pid), 'T', "running again after it");
        assert!(
            note.contains(&format!("pid {pid}")) && note.contains("(600 ms)"),
            "{note}"
        );
    }

    /// When the sim dies during the pause (here: its pause task is
    /// aborted, so its own SIGCONT never comes), the backstop, a process of
    /// its own, resumes the gateway `BACKSTOP_LATE` after the pause's end.
    #[tokio::test]
    async fn the_backstop_resumes_the_process_when_the_sim_does_not() {
        let child = Sleeper::start();
        let pid = child.0.id();
        let start = Instant::now();
        let pause = GatewayPause {
            at: Duration::from_millis(50),
            length: Duration::from_millis(300),
        };
        let paused = Paused::schedule(pid, pause, start);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(proc_state(pid), 'T', "stopped during the pause");
        paused.task.abort();
        let deadline = start + Duration::from_secs(10);
        while proc_state(pid) == 'T' {
            assert!(
                Instant::now() < deadline,
                "the backstop never resumed the process"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The aborted task would have resumed it at 350 ms; the backstop,
        // started just before the SIGSTOP (at 50 ms or later), sleeps 800.
        let resumed = start.elapsed();
        assert!(
            resumed >= pause.at + pause.length + BACKSTOP_LATE,
            "resumed at {resumed:?}: by the aborted task, not the backstop"
        );
    }

    /// A pause that has not begun when the run ends is cancelled, and the
    /// process is never stopped.
    #[tokio::test]
    async fn a_pause_past_the_end_of_the_run_never_stops_the_process() {
        let child = Sleeper::start();
        let pid = child.0.id();
        let pause = GatewayPause {
            at: Duration::from_secs(3600),
            length: Duration::from_millis(600),
        };
        let paused = Paused::schedule(pid, pause, Instant::now());
        let started = Instant::now();
        let note = paused.finish().await;
        assert!(started.elapsed() < Duration::from_secs(1), "not waited for");
        assert!(note.contains("past the run's end"), "{note}");
        assert_ne!(proc_state(pid), 'T');
    }
}

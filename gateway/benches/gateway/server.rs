//! The parent's handle on a server child process: spawn (optionally under a
//! profiler wrapper), RSS and CPU time from `/proc`, stop.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Gateway,
    Bare,
}

impl Kind {
    pub(crate) fn role(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Bare => "bare",
        }
    }
}

/// A server child process.
pub(crate) struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
}

impl Server {
    pub(crate) async fn spawn(
        kind: Kind,
        data: &Path,
        certs: &Path,
        unlimited_pings: bool,
    ) -> Result<Server> {
        let env: &[&str] = if unlimited_pings {
            &[UNLIMITED_PINGS_ENV]
        } else {
            &[]
        };
        Server::spawn_with(kind, data, certs, env).await
    }

    /// `flags`: environment variables set to `1` in the child.
    pub(crate) async fn spawn_with(kind: Kind, data: &Path, certs: &Path, flags: &[&str]) -> Result<Server> {
        // `OUTPOST_BENCH_CHILD_WRAPPER="heaptrack"` (or `valgrind --tool=massif`)
        // runs the server children under a profiler; their RSS then includes it.
        let wrapper = std::env::var("OUTPOST_BENCH_CHILD_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(std::env::current_exe()?);
                c
            }
            None => Command::new(std::env::current_exe()?),
        };
        cmd.env(ROLE_ENV, kind.role())
            .env(DIR_ENV, data)
            .env(CERTS_ENV, certs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for flag in flags {
            cmd.env(flag, "1");
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().context("child pid")?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        // Skip what a profiler wrapper may print first.
        let ready = async {
            loop {
                match lines.next_line().await? {
                    Some(line) => match line.strip_prefix("READY ") {
                        Some(addr) => return Ok::<SocketAddr, anyhow::Error>(addr.parse()?),
                        None => eprintln!("  child: {line}"),
                    },
                    None => bail!("child exited before READY"),
                }
            }
        };
        let addr = tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .context("child did not start in 60 s")??;
        Ok(Server {
            child,
            stdin,
            addr,
            pid,
        })
    }

    pub(crate) fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS")
    }

    /// CPU time the server process has used so far (user + system, all threads),
    /// in microseconds, from `/proc/<pid>/stat` (clock ticks of 1/100 s: the
    /// kernel's USER_HZ on Linux x86_64 and aarch64).
    pub(crate) fn cpu_us(&self) -> Result<u64> {
        proc_cpu_us(&self.pid.to_string())
    }

    /// Median of a few samples, so one sample taken mid-allocation does not decide.
    pub(crate) async fn rss_kib_settled(&self) -> Result<u64> {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(self.rss_kib()?);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        v.sort_unstable();
        Ok(v[v.len() / 2])
    }

    pub(crate) async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// CPU time (user + system, all threads) of `/proc/<pid>/stat` so far, in µs
/// (clock ticks of 1/100 s, Linux's USER_HZ on x86_64 and aarch64); `pid` may
/// be `self`.
pub(crate) fn proc_cpu_us(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks * 10_000)
}

/// CPU time so far of the server process `pid` and of this (client) process,
/// µs: read together at the edges of a measured window.
pub(crate) fn server_and_own_cpu_us(pid: u32) -> Result<[u64; 2]> {
    Ok([proc_cpu_us(&pid.to_string())?, proc_cpu_us("self")?])
}

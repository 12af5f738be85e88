//! Process metrics with the names every Prometheus client library uses
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), read
//! from Linux's `/proc/self` at each scrape. Elsewhere they are absent.
//!
//! CPU time is in whole seconds (a `metrics` counter is an integer); `/proc`
//! counts it in USER_HZ ticks, which Linux fixes at 100 per second for user
//! space on every architecture this runs on.

use std::fs;

/// Resident set size, bytes.
pub const RSS: &str = "process_resident_memory_bytes";
/// Virtual memory size, bytes.
pub const VSIZE: &str = "process_virtual_memory_bytes";
/// User plus system CPU time, seconds.
pub const CPU: &str = "process_cpu_seconds_total";
/// Open file descriptors.
pub const OPEN_FDS: &str = "process_open_fds";
/// The soft limit of open file descriptors.
pub const MAX_FDS: &str = "process_max_fds";
/// OS threads.
pub const THREADS: &str = "process_threads";
/// Start time of the process, Unix seconds.
pub const START_TIME: &str = "process_start_time_seconds";

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ).
const USER_HZ: u64 = 100;

pub(super) fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(RSS, "Resident memory of the gateway process, bytes.");
    describe_gauge!(VSIZE, "Virtual memory of the gateway process, bytes.");
    describe_counter!(
        CPU,
        "User and system CPU time of the gateway process, whole seconds."
    );
    describe_gauge!(
        OPEN_FDS,
        "Open file descriptors of the gateway process (sockets, store files)."
    );
    describe_gauge!(MAX_FDS, "Soft limit of open file descriptors (RLIMIT_NOFILE).");
    describe_gauge!(THREADS, "OS threads of the gateway process.");
    describe_gauge!(START_TIME, "Start time of the gateway process, Unix seconds.");
}

/// The figures read from `/proc`.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub rss_bytes: Option<u64>,
    pub vsize_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub cpu_ticks: Option<u64>,
    pub start_ticks_after_boot: Option<u64>,
}

/// Parses `/proc/self/status` (VmRSS, VmSize, Threads) and `/proc/self/stat`
/// (utime, stime, starttime).
pub fn parse(status: &str, stat: &str) -> Figures {
    let kib = |key: &str| {
        status.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim();
            v.parse::<u64>().ok().map(|k| k * 1024)
        })
    };
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok());
    // The command name (field 2) is in parentheses and may hold spaces: fields
    // are counted after the last `)`. There, field 3 (state) is index 0, so
    // utime (14) is 11, stime (15) is 12 and starttime (22) is 19.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Figures {
        rss_bytes: kib("VmRSS:"),
        vsize_bytes: kib("VmSize:"),
        threads,
        cpu_ticks: field(11).zip(field(12)).map(|(u, s)| u + s),
        start_ticks_after_boot: field(19),
    }
}

/// The soft `Max open files` limit from `/proc/self/limits`.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Boot time, Unix seconds, from `/proc/stat`.
fn boot_time() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// Reads `/proc/self` and sets the process metrics (nothing where it is absent).
pub(super) fn refresh() {
    let (Ok(status), Ok(stat)) = (
        fs::read_to_string("/proc/self/status"),
        fs::read_to_string("/proc/self/stat"),
    ) else {
        return;
    };
    let f = parse(&status, &stat);
    let set = |name: &'static str, v: Option<u64>| {
        if let Some(v) = v {
            metrics::gauge!(name).set(v as f64);
        }
    };
    set(RSS, f.rss_bytes);
    set(VSIZE, f.vsize_bytes);
    set(THREADS, f.threads);
    if let Some(t) = f.cpu_ticks {
        metrics::counter!(CPU).absolute(t / USER_HZ);
    }
    set(
        START_TIME,
        f.start_ticks_after_boot
            .zip(boot_time())
            .map(|(t, b)| b + t / USER_HZ),
    );
    set(
        OPEN_FDS,
        fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
    );
    set(
        MAX_FDS,
        fs::read_to_string("/proc/self/limits")
            .ok()
            .as_deref()
            .and_then(parse_max_fds),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let status = "Name:\tgateway\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\nThreads:\t7\n";
        let stat = "4242 (outpost gw) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 9000 1000 500";
        let f = parse(status, stat);
        assert_eq!(
            f,
            Figures {
                rss_bytes: Some(2048 * 1024),
                vsize_bytes: Some(123456 * 1024),
                threads: Some(7),
                cpu_ticks: Some(300),
                start_ticks_after_boot: Some(9000),
            }
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(parse("", ""), Figures::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_figures() {
        let f = parse(
            &fs::read_to_string("/proc/self/status").unwrap(),
            &fs::read_to_string("/proc/self/stat").unwrap(),
        );
        assert!(f.rss_bytes.is_some_and(|b| b > 0), "{f:?}");
        assert!(f.threads.is_some_and(|t| t >= 1), "{f:?}");
        assert!(
            f.cpu_ticks.is_some() && f.start_ticks_after_boot.is_some(),
            "{f:?}"
        );
    }
}

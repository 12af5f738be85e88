//! The QUIC socket's kernel receive queue and drops (Linux; elsewhere they
//! are absent), for the metrics at each scrape and for the receive-path
//! overload monitor ([`crate::overload`]).
//!
//! Why: when the endpoint's receive path falls behind (a CPU-starved box, a
//! burst of handshakes), datagrams wait in the socket's receive buffer and,
//! once it is full, the kernel drops them. Neither quinn nor the gateway sees
//! that happen; clients see lost pings, retransmit, and the extra datagrams
//! deepen the backlog. docs/PERFORMANCE.md ("live-20k on a loaded machine")
//! has a run where the queue filled in seconds and sessions then died by idle
//! timeout. `outpost_udp_receive_drops_total` rising is the earliest sign.
//!
//! The figures are asked of the kernel for the one socket over netlink
//! (`metrics/sock_diag.rs`), which costs the same whatever else is on the box.
//! Where that is refused (a kernel without UDP sock_diag, a sandbox that
//! forbids netlink), they are read from `/proc/net/udp{,6}`, whose cost grows
//! faster than the number of UDP sockets on the box (50 ms at 8,000 sockets,
//! 217 ms at 19,000); a warning says so once. The netlink query runs where it
//! is called (microseconds); the `/proc` read runs on tokio's blocking pool,
//! as it would otherwise stop a runtime worker, and every task queued on it,
//! for as long ([`read_one`], [`read`]).
//! The socket is named by its local address and its inode (`/proc/self/fd/N`
//! names it), recorded when the gateway binds it ([`watch`]).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Datagrams the kernel dropped at the socket (receive buffer full), summed
/// over the watched sockets.
pub const DROPS: &str = "outpost_udp_receive_drops_total";
/// Bytes waiting in the socket's receive buffer, summed over the watched sockets.
pub const QUEUE: &str = "outpost_udp_receive_queue_bytes";

/// The QUIC sockets this process serves on. A process normally has one;
/// tests start many gateways, so only the latest few are kept.
static WATCHED: Mutex<Vec<SocketId>> = Mutex::new(Vec::new());
const MAX_WATCHED: usize = 16;

pub(super) fn describe() {
    metrics::describe_counter!(
        DROPS,
        "Datagrams the kernel dropped at the QUIC socket because its receive buffer was full (Linux)."
    );
    metrics::describe_gauge!(
        QUEUE,
        "Bytes waiting in the QUIC socket's kernel receive buffer (Linux)."
    );
}

/// Starts reporting `socket`'s queue and drops. Does nothing where the socket's
/// inode cannot be read (no `/proc`).
pub fn watch(socket: &UdpSocket) {
    let Some(id) = SocketId::of(socket) else {
        return;
    };
    let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    if watched.len() == MAX_WATCHED {
        watched.remove(0);
    }
    watched.push(id);
}

/// What names a UDP socket to the kernel: its local address (for the netlink
/// lookup) and its inode (which proves the kernel found this socket, and is
/// the key of `/proc/net/udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId {
    pub local: SocketAddr,
    pub inode: u64,
}

impl SocketId {
    /// `None` where the address or the inode cannot be read (no `/proc`).
    pub fn of(socket: &UdpSocket) -> Option<SocketId> {
        Some(SocketId {
            local: socket.local_addr().ok()?,
            inode: inode_of(socket)?,
        })
    }
}

/// The socket's inode, as `/proc/net/udp` lists it; `None` without `/proc`.
pub(crate) fn inode_of(socket: &impl AsRawFd) -> Option<u64> {
    let link = format!("/proc/self/fd/{}", socket.as_raw_fd());
    std::fs::metadata(link).ok().map(|m| m.ino())
}

/// One socket's figures from a `/proc/net/udp` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketFigures {
    pub queue_bytes: u64,
    pub drops: u64,
}

/// Finds the socket with `inode` in the text of `/proc/net/udp` or
/// `/proc/net/udp6`. Columns: `sl local rem st tx_queue:rx_queue tr:tm
/// retrnsmt uid timeout inode ref pointer drops` (queues in hex).
pub fn parse(table: &str, inode: u64) -> Option<SocketFigures> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        let rx = f.get(4)?.split_once(':')?.1;
        Some(SocketFigures {
            queue_bytes: u64::from_str_radix(rx, 16).ok()?,
            drops: f.get(12)?.parse().ok()?,
        })
    })
}

/// The watched sockets' figures, summed; `None` where none of them is found
/// (no netlink and no `/proc/net`). See [`read_one`] for where they are read.
pub async fn read() -> Option<SocketFigures> {
    let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let found = read_many(watched, from_proc).await;
    found.into_iter().fold(None, |sum, (s, _)| {
        let acc = sum.unwrap_or_default();
        Some(SocketFigures {
            queue_bytes: acc.queue_bytes + s.queue_bytes,
            drops: acc.drops + s.drops,
        })
    })
}

/// One socket's figures (the receive-path overload monitor's reading):
/// asked of the kernel over netlink on the calling task, or, where that
/// fails, read from `/proc/net/udp{,6}` on tokio's blocking pool, the task
/// waiting for it without holding its worker.
pub async fn read_one(id: &SocketId) -> Option<SocketFigures> {
    let found = read_many(vec![*id], from_proc).await;
    found.into_iter().next().map(|(figures, _)| figures)
}

/// Where a reading's figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    #[cfg(target_os = "linux")]
    Netlink,
    Proc,
}

/// The figures of those of `ids` that were found, with where each came
/// from. Netlink is asked here, one socket at a time; the sockets it gave no
/// figures for are handed together to `proc` (which reads the tables once for
/// all of them: [`from_proc`]) on tokio's blocking pool.
async fn read_many<P>(ids: Vec<SocketId>, proc: P) -> Vec<(SocketFigures, Source)>
where
    P: FnOnce(&[SocketId]) -> Vec<SocketFigures> + Send + 'static,
{
    let mut found = Vec::with_capacity(ids.len());
    #[cfg(target_os = "linux")]
    let ids: Vec<SocketId> = ids
        .into_iter()
        .filter(|id| match super::sock_diag::query(id.local, id.inode) {
            Ok(figures) => {
                found.push((figures, Source::Netlink));
                false
            }
            Err(e) => {
                warn_proc_fallback(&e);
                true
            }
        })
        .collect();
    if ids.is_empty() {
        return found;
    }
    // A blocking-pool thread rather than the worker: tasks queued on the
    // worker would wait out the read (up to hundreds of ms on a busy box).
    // The pool keeps an idle thread for 10 s, so a fallback sampled four
    // times a second reuses one. `Err`: the runtime is shutting down.
    if let Ok(figures) = tokio::task::spawn_blocking(move || proc(&ids)).await {
        found.extend(figures.into_iter().map(|f| (f, Source::Proc)));
    }
    found
}

/// The figures of those of `ids` found in `/proc/net/udp{,6}`, read once for
/// all of them. Blocking: see [`read_many`].
fn from_proc(ids: &[SocketId]) -> Vec<SocketFigures> {
    let tables = tables();
    ids.iter()
        .filter_map(|id| tables.iter().find_map(|t| parse(t, id.inode)))
        .collect()
}

/// Says once per process that the figures come from `/proc/net/udp`, and why.
#[cfg(target_os = "linux")]
fn warn_proc_fallback(e: &super::sock_diag::DiagError) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %e,
            "UDP socket figures: the kernel's sock_diag query failed; reading /proc/net/udp instead \
             (its cost grows faster than the number of UDP sockets on the box)"
        );
    }
}

/// The texts of `/proc/net/udp` and `/proc/net/udp6` that exist.
fn tables() -> Vec<String> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Sets the metrics from [`read`].
pub(super) async fn refresh() {
    if let Some(s) = read().await {
        metrics::counter!(DROPS).absolute(s.drops);
        metrics::gauge!(QUEUE).set(s.queue_bytes as f64);
    }
}

/// A loopback socket whose receive buffer overflows on demand, for the tests
/// of this module and of `crate::overload`.
#[cfg(test)]
pub(crate) mod test_support {
    /// A UDP socket on loopback with a receive buffer of a few KB.
    pub fn small_sink() -> std::net::UdpSocket {
        let sink = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        sink.set_recv_buffer_size(4096).unwrap();
        sink.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        sink.into()
    }

    /// Sends 200 KB to `sink` in 1,000-byte datagrams: far more than it holds.
    pub fn flood(sink: &std::net::UdpSocket) {
        let source = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            source.send_to(&[7u8; 1000], sink.local_addr().unwrap()).unwrap();
        }
    }

    /// Reads `sink` until nothing is left in its receive queue.
    pub fn drain(sink: &std::net::UdpSocket) {
        sink.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while sink.recv(&mut buf).is_ok() {}
        sink.set_nonblocking(false).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_the_kernel_table() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1187: 0100007F:1172 00000000:0000 07 00000000:00A99840 00:00000000 00000000     0        0 778899 2 0000000000000000 139148\n\
            1188: 0100007F:1173 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 778900 2 0000000000000000 0\n";
        assert_eq!(
            parse(table, 778899),
            Some(SocketFigures {
                queue_bytes: 0xA99840,
                drops: 139148
            })
        );
        assert_eq!(parse(table, 778900), Some(SocketFigures::default()));
        assert_eq!(parse(table, 1), None);
        assert_eq!(parse("garbage\nmore garbage", 1), None);
    }

    /// A real socket on loopback that nobody reads: the kernel queues, then drops.
    #[tokio::test]
    async fn a_socket_nobody_reads_shows_its_queue_and_drops() {
        let sink = test_support::small_sink();
        let inode = inode_of(&sink).expect("/proc/self/fd names the socket");
        let table = || std::fs::read_to_string("/proc/net/udp").unwrap();
        assert_eq!(parse(&table(), inode), Some(SocketFigures::default()));

        test_support::flood(&sink);
        let after = parse(&table(), inode).unwrap();
        assert!(after.queue_bytes > 0, "{after:?}");
        assert!(after.drops > 0, "200 KB into a buffer of a few KB: {after:?}");

        watch(&sink);
        let summed = read().await.unwrap();
        assert!(summed.drops >= after.drops, "{summed:?}");
    }

    /// A socket id netlink finds nothing for (the address of a socket since
    /// closed), naming `socket`'s inode, which `/proc/net/udp` still lists.
    #[cfg(target_os = "linux")]
    fn unknown_to_netlink(socket: &UdpSocket) -> SocketId {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        SocketId {
            local: gone,
            inode: inode_of(socket).unwrap(),
        }
    }

    /// The monitor's reading comes from the kernel's per-socket query, not
    /// from `/proc/net/udp` (whose cost grows with every UDP socket on the
    /// box); only a socket the query gives nothing for goes to `/proc`.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn proc_is_read_only_for_what_netlink_does_not_answer() {
        let sink = test_support::small_sink();
        let id = SocketId::of(&sink).unwrap();
        test_support::flood(&sink);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let proc_reader = |asked: Arc<Mutex<Vec<SocketId>>>| {
            move |ids: &[SocketId]| {
                asked.lock().unwrap().extend_from_slice(ids);
                from_proc(ids)
            }
        };
        let found = read_many(vec![id], proc_reader(asked.clone())).await;
        let [(figures, source)] = found[..] else {
            panic!("{found:?}")
        };
        assert!(figures.drops > 0 && figures.queue_bytes > 0, "{figures:?}");
        assert_eq!(source, Source::Netlink);
        assert!(
            asked.lock().unwrap().is_empty(),
            "/proc read for a socket netlink found"
        );

        let other = unknown_to_netlink(&sink);
        let found = read_many(vec![other, id], proc_reader(asked.clone())).await;
        let sources: Vec<Source> = found.iter().map(|(_, s)| *s).collect();
        assert_eq!(sources, [Source::Netlink, Source::Proc], "{found:?}");
        assert_eq!(*asked.lock().unwrap(), [other]);
    }

    /// The fallback still reads the socket's figures, from `/proc/net/udp`,
    /// through the blocking pool and the public readings.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn where_netlink_gives_nothing_the_figures_come_from_proc() {
        let sink = test_support::small_sink();
        test_support::flood(&sink);
        let id = unknown_to_netlink(&sink);
        let found = read_many(vec![id], from_proc).await;
        let [(figures, Source::Proc)] = found[..] else {
            panic!("{found:?}")
        };
        assert!(figures.drops > 0 && figures.queue_bytes > 0, "{figures:?}");
        assert_eq!(read_one(&id).await, Some(figures));
    }

    /// The `/proc` read does not hold the runtime's worker: on a runtime with
    /// one thread, a reader that waits for a task spawned beside it finishes
    /// (run on the worker, it would wait for that task in vain).
    #[tokio::test(flavor = "current_thread")]
    async fn the_proc_fallback_runs_off_the_worker() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::spawn(async move { tx.send(()).unwrap() });
        let waits_for_the_task = move |ids: &[SocketId]| match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(()) => vec![SocketFigures::default(); ids.len()],
            Err(_) => Vec::new(),
        };
        let id = SocketId {
            local: "127.0.0.1:9".parse().unwrap(),
            inode: 0,
        };
        let found = read_many(vec![id], waits_for_the_task).await;
        assert_eq!(found, [(SocketFigures::default(), Source::Proc)]);
    }
}

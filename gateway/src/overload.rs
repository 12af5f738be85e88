//! Receive-path overload: whether the gateway's QUIC socket has fallen behind
//! (the kernel keeps dropping datagrams at it), so that new connections can be
//! refused until it catches up.
//!
//! Why: when the gateway reads its socket slower than clients send (a
//! CPU-starved box), the receive buffer fills and the kernel drops datagrams.
//! Established sessions then lose heartbeats and retransmit, new handshakes
//! add the most expensive work there is (TLS key exchange and signature), and
//! the backlog feeds itself until sessions die by idle timeout
//! (docs/PERFORMANCE.md, "live-20k on a loaded machine": 16,500 live sessions
//! down to 367 in 90 s). Refusing new connections while that lasts
//! (`admission.refuse_while_dropping`) costs a refused client one small packet
//! (CONNECTION_REFUSED under the Initial keys, no TLS) and a retry after at
//! least a second (the SDK reports it as `ServerBusy` with a `retry_after`),
//! and leaves the receive path to the sessions already in.
//!
//! A login burst is not that: it overflows the buffer too, but for a moment.
//! Measured on the 1,000-client launch-queue test (`gateway/tests/queue_sdk.rs`,
//! three debug-build gateways in one process, 2 MiB buffers): each socket
//! dropped for 2–6 consecutive 250 ms samples (≤ 1.5 s), twice per run (the
//! arrival, then the admissions); its queue was under half full within 1 s
//! of the last drop and empty within 2.5 s. In
//! the collapses this guards against, drops ran at thousands per second for
//! tens of seconds. So [`Trend`] refuses only once drops have lasted
//! [`ENGAGE_SAMPLES`] of the last [`WINDOW`] samples (3 s of the last 4: twice
//! the longest burst seen), and stops only after [`RELEASE_QUIET_SAMPLES`]
//! quiet samples in a row (2 s) with the receive queue below
//! [`DRAINED_PERCENT`] of the buffer: a queue still near full would drop again
//! as soon as the refused clients came back.
//!
//! [`ReceivePressure`] samples the socket's drop counter and queue (asked of
//! the kernel for this one socket, as for the metrics in
//! [`crate::metrics::udp`]) every [`SAMPLE_EVERY`]. Where the socket cannot
//! be named (no `/proc`) it never reads "behind". Where the kernel refuses
//! the netlink query, the sample's `/proc/net/udp` read runs on tokio's
//! blocking pool ([`udp::read_one`]), not on the worker running the monitor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::udp::{self, SocketFigures, SocketId};

/// How often the drop counter is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// New drops in one sample below which the sample counts as quiet: a few
/// datagrams lost to a momentary overflow (which QUIC retransmits) say
/// nothing about the receive path. In the collapse this guards against,
/// drops ran at thousands per second.
pub const MIN_DROPS_PER_SAMPLE: u64 = 32;

/// Samples the engage decision looks back over (4 s at [`SAMPLE_EVERY`]);
/// at most 32 (one bit each in [`Trend`]).
pub const WINDOW: u32 = 16;

/// Samples with drops, among the last [`WINDOW`], that start the refusal:
/// 3 s of drops within 4 s. The longest login burst measured dropped for
/// 1.5 s (see the module docs); a window rather than a strict run, because a
/// receive path that fell behind can have a quiet sample between two
/// overflows (the queue drains a little, then fills again).
pub const ENGAGE_SAMPLES: u32 = 12;

/// Quiet samples in a row that end the refusal (2 s), with the queue drained
/// (see [`DRAINED_PERCENT`]). Long enough for the retransmissions of the
/// backlog to have arrived; one quiet sample between overflows does not end it.
pub const RELEASE_QUIET_SAMPLES: u32 = 8;

/// The receive queue, in percent of the socket's buffer, under which it
/// counts as drained. A queue still above it after the drops stopped is a
/// receive path only just keeping up: the refused clients' return would
/// overflow it again. (After the bursts above the queue was under half
/// within 1 s of the last drop.)
pub const DRAINED_PERCENT: u64 = 50;

/// Whether the QUIC socket's receive path is behind (see the module docs).
#[derive(Debug)]
pub struct ReceivePressure {
    /// The socket as the kernel names it; `None` where it cannot be read.
    socket: Option<SocketId>,
    /// The socket's receive buffer as the kernel granted it (`SO_RCVBUF`, the
    /// figure the socket's receive queue is counted against).
    buffer_bytes: u64,
    /// Set by the sampler, read by the accept loop on every new connection.
    behind: AtomicBool,
}

/// The refusal decision over successive readings of the socket: a pure state
/// machine, fed by [`ReceivePressure`] (and by the tests with made-up ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trend {
    /// The socket's receive buffer in bytes; 0 when unknown (the queue is
    /// then not looked at).
    buffer_bytes: u64,
    last_drops: Option<u64>,
    /// Bit `i` set: the sample `i` samples ago had drops (bit 0 the latest).
    history: u32,
    /// Quiet samples since the last one with drops.
    quiet: u32,
    refusing: bool,
}

impl Trend {
    /// A trend of a socket whose receive buffer is `buffer_bytes` (0: unknown).
    pub fn new(buffer_bytes: u64) -> Trend {
        Trend {
            buffer_bytes,
            last_drops: None,
            history: 0,
            quiet: 0,
            refusing: false,
        }
    }

    /// Takes one reading; returns whether new connections are refused until
    /// the next one.
    pub fn observe(&mut self, now: SocketFigures) -> bool {
        // The first reading has nothing to compare with: a counter seen first
        // at a high value (drops before the gateway started) is not a rise.
        let dropped = self
            .last_drops
            .is_some_and(|last| now.drops >= last.saturating_add(MIN_DROPS_PER_SAMPLE));
        self.last_drops = Some(now.drops);
        let window = u32::MAX >> (32 - WINDOW);
        self.history = ((self.history << 1) | u32::from(dropped)) & window;
        self.quiet = if dropped { 0 } else { self.quiet.saturating_add(1) };
        if self.refusing {
            let drained = self.buffer_bytes == 0
                || now.queue_bytes.saturating_mul(100) < self.buffer_bytes.saturating_mul(DRAINED_PERCENT);
            self.refusing = !(self.quiet >= RELEASE_QUIET_SAMPLES && drained);
        } else {
            self.refusing = self.history.count_ones() >= ENGAGE_SAMPLES;
        }
        self.refusing
    }
}

impl ReceivePressure {
    /// A monitor of `socket`, whose receive buffer the kernel granted as
    /// `buffer_bytes` (`crate::endpoint::SocketBuffers::recv_bytes`); not
    /// yet sampling: see [`run`](Self::run).
    pub fn of(socket: &std::net::UdpSocket, buffer_bytes: usize) -> Arc<ReceivePressure> {
        Arc::new(ReceivePressure {
            socket: SocketId::of(socket),
            buffer_bytes: buffer_bytes as u64,
            behind: AtomicBool::new(false),
        })
    }

    /// Whether the receive path is behind: new connections are to be refused.
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    /// Samples until `stop` fires (or forever without `/proc`: returns at once).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::broadcast::Receiver<()>) {
        let Some(socket) = self.socket else {
            return;
        };
        let mut trend = Trend::new(self.buffer_bytes);
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.recv() => return,
            }
            self.sample(&socket, &mut trend).await;
        }
    }

    /// One sample: reads the socket's figures and updates the flag.
    async fn sample(&self, socket: &SocketId, trend: &mut Trend) {
        let Some(figures) = udp::read_one(socket).await else {
            return;
        };
        let behind = trend.observe(figures);
        if behind != self.behind.swap(behind, Ordering::Relaxed) {
            tracing::warn!(
                behind,
                drops = figures.drops,
                queue_bytes = figures.queue_bytes,
                buffer_bytes = self.buffer_bytes,
                "QUIC socket receive path: {}",
                if behind {
                    "behind (the kernel kept dropping datagrams); new connections are refused until it catches up"
                } else {
                    "caught up (no drops, queue drained); new connections are accepted again"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test sockets' buffer: 1 MiB asked for, reported doubled.
    const BUFFER: u64 = 2 << 20;

    /// A trend fed with new drops per sample and the queue in percent of the
    /// buffer, as a socket's cumulative counter would show them.
    struct Feed {
        trend: Trend,
        drops: u64,
    }

    impl Feed {
        fn new(buffer_bytes: u64) -> Feed {
            let mut f = Feed {
                trend: Trend::new(buffer_bytes),
                drops: 0,
            };
            assert!(!f.step(0, 0), "the first reading has nothing to compare with");
            f
        }

        fn step(&mut self, new_drops: u64, queue_percent: u64) -> bool {
            self.drops += new_drops;
            self.trend.observe(SocketFigures {
                drops: self.drops,
                queue_bytes: BUFFER * queue_percent / 100,
            })
        }

        /// `n` samples with `new_drops` each and a full queue; what the last said.
        fn run(&mut self, n: u32, new_drops: u64) -> Vec<bool> {
            (0..n).map(|_| self.step(new_drops, 90)).collect()
        }
    }

    #[test]
    fn a_login_burst_is_not_a_receive_path_behind() {
        // Gateway 0 of the 1,000-client launch-queue test, sample by sample
        // (new drops, queue %): the arrival, 13 s of queueing, the admissions.
        let arrival = [
            (0, 3),
            (0, 13),
            (64, 88),
            (377, 85),
            (323, 86),
            (798, 83),
            (571, 59),
        ];
        let calm = [
            (0, 56),
            (0, 45),
            (0, 38),
            (0, 44),
            (0, 48),
            (0, 29),
            (0, 4),
            (0, 0),
        ];
        let admissions = [
            (0, 50),
            (0, 75),
            (201, 73),
            (134, 83),
            (206, 84),
            (412, 80),
            (293, 72),
        ];
        let mut f = Feed::new(BUFFER);
        for (drops, queue) in arrival.iter().chain(&calm).chain(&admissions).chain(&calm) {
            assert!(!f.step(*drops, *queue), "{drops} new drops, queue {queue}%");
        }
        // A burst almost twice as long as the longest measured still is not.
        let mut f = Feed::new(BUFFER);
        assert!(!f.run(ENGAGE_SAMPLES - 1, 1_000).contains(&true));
        assert!(!f.run(WINDOW, 0).contains(&true));
        // Nor are drops under the threshold, however long they last.
        assert!(!f.run(100, MIN_DROPS_PER_SAMPLE - 1).contains(&true));
    }

    #[test]
    fn drops_during_three_seconds_of_the_last_four_engage() {
        let mut f = Feed::new(BUFFER);
        let said = f.run(ENGAGE_SAMPLES, MIN_DROPS_PER_SAMPLE);
        assert_eq!(said.iter().position(|b| *b), Some(ENGAGE_SAMPLES as usize - 1));
        // With a quiet sample after every three overflowing ones: the 12th
        // overflowing sample is the 15th.
        let mut f = Feed::new(BUFFER);
        let said: Vec<bool> = (0..WINDOW)
            .map(|i| f.step(if i % 4 == 3 { 0 } else { 500 }, 95))
            .collect();
        assert_eq!(said.iter().position(|b| *b), Some(WINDOW as usize - 2));
        // Too sparse: one sample in two, for ever.
        let mut f = Feed::new(BUFFER);
        assert!(!(0..200).any(|i| f.step(if i % 2 == 0 { 500 } else { 0 }, 95)));
        // A counter seen first at a high value (drops before the gateway
        // started) is not a rise; one that goes back is not either.
        let mut t = Trend::new(BUFFER);
        for drops in [1_000_000, 1_000_000, 5, 5] {
            assert!(!t.observe(SocketFigures {
                drops,
                queue_bytes: 0
            }));
        }
    }

    #[test]
    fn the_refusal_ends_after_two_quiet_seconds_with_the_queue_drained() {
        let mut f = Feed::new(BUFFER);
        f.run(ENGAGE_SAMPLES, 1_000);
        assert!(
            f.run(40, 1_000).iter().all(|b| *b),
            "drops go on: so does the refusal"
        );
        for _ in 0..RELEASE_QUIET_SAMPLES - 1 {
            assert!(f.step(0, 10), "fewer than RELEASE_QUIET_SAMPLES quiet samples");
        }
        assert!(f.step(40, 10), "one overflow starts the count again");
        for _ in 0..RELEASE_QUIET_SAMPLES {
            assert!(f.step(0, 60), "quiet, but the queue is still over half full");
        }
        assert!(f.step(0, DRAINED_PERCENT), "at half: not drained yet");
        assert!(!f.step(0, DRAINED_PERCENT - 1), "quiet for 2 s and drained");
        // Leaving forgets nothing it needs: a new burst must last as long again.
        assert!(!f.run(ENGAGE_SAMPLES - 1, 1_000).contains(&true));
        assert!(f.step(1_000, 90));
    }

    #[test]
    fn without_a_known_buffer_the_queue_is_not_looked_at() {
        let mut f = Feed::new(0);
        f.run(ENGAGE_SAMPLES, 1_000);
        let said: Vec<bool> = (0..RELEASE_QUIET_SAMPLES).map(|_| f.step(0, 100)).collect();
        assert_eq!(
            said.iter().position(|b| !*b),
            Some(RELEASE_QUIET_SAMPLES as usize - 1)
        );
    }

    /// A real loopback socket that nobody reads: flooded before every sample
    /// it reads "behind" from the ENGAGE_SAMPLES-th on; with the floods over it
    /// stays so while its queue is full, and clears once the queue is read.
    #[tokio::test]
    async fn a_socket_flooded_for_three_seconds_is_behind_until_its_queue_drains() {
        let sink = udp::test_support::small_sink();
        let granted = socket2::SockRef::from(&sink).recv_buffer_size().unwrap();
        let pressure = ReceivePressure::of(&sink, granted);
        let socket = pressure.socket.expect("/proc/self/fd names the socket");
        let mut trend = Trend::new(pressure.buffer_bytes);
        pressure.sample(&socket, &mut trend).await;
        assert!(!pressure.is_behind());

        for n in 1..ENGAGE_SAMPLES {
            udp::test_support::flood(&sink);
            pressure.sample(&socket, &mut trend).await;
            assert!(!pressure.is_behind(), "{n} overflowing samples are a burst");
        }
        udp::test_support::flood(&sink);
        pressure.sample(&socket, &mut trend).await;
        assert!(pressure.is_behind(), "200 KB into a buffer of a few KB, 12 times");

        for _ in 0..RELEASE_QUIET_SAMPLES {
            pressure.sample(&socket, &mut trend).await;
            assert!(pressure.is_behind(), "no new drops, but the queue is full");
        }
        udp::test_support::drain(&sink);
        pressure.sample(&socket, &mut trend).await;
        assert!(!pressure.is_behind(), "quiet and drained");
    }
}

//! Receive-path overload: whether the kernel is dropping datagrams at the QUIC
//! socket right now, so that new connections can be refused while it does.
//!
//! Why: when the gateway reads its socket slower than clients send (a
//! CPU-starved box, a burst of handshakes), the receive buffer fills and the
//! kernel drops datagrams. Established sessions then lose heartbeats and
//! retransmit, new handshakes add the most expensive work there is (TLS key
//! exchange and signature), and the backlog feeds itself until sessions die by
//! idle timeout (docs/PERFORMANCE.md, "live-20k on a loaded machine": 16,500
//! live sessions down to 367 in 90 s). Refusing new connections while drops
//! continue (`admission.refuse_while_dropping`, off by default: see its doc
//! for when a login burst makes it do harm) costs a refused client one small
//! packet (CONNECTION_REFUSED under the Initial keys, no TLS) and a retry,
//! and leaves the receive path to the sessions already in.
//!
//! [`ReceivePressure`] samples the socket's drop counter in `/proc/net/udp{,6}`
//! (found by the socket's inode, as for the metrics in
//! [`crate::metrics::udp`]) every [`SAMPLE_EVERY`]; it reads "dropping" while
//! the counter rose by at least [`MIN_DROPS_PER_SAMPLE`] in the last sample,
//! or in the one before it (so a refusal covers at least one full interval
//! after the last drop seen). Without `/proc` it never reads "dropping".

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::udp;

/// How often the drop counter is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// New drops in one sample below which the socket does not count as dropping:
/// a login burst that overflows the buffer for an instant (a few datagrams,
/// which QUIC retransmits) is not a receive path that fell behind. In the
/// collapse this guards against, drops ran at thousands per second.
pub const MIN_DROPS_PER_SAMPLE: u64 = 32;

/// Whether the QUIC socket is dropping datagrams (see the module docs).
#[derive(Debug)]
pub struct ReceivePressure {
    /// The socket's inode in `/proc/net/udp`; `None` where it cannot be read.
    inode: Option<u64>,
    /// Set by the sampler, read by the accept loop on every new connection.
    dropping: AtomicBool,
}

/// The sampler's memory between two reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trend {
    last_drops: Option<u64>,
    /// Whether the previous sample saw new drops.
    rose_before: bool,
}

impl Trend {
    /// Takes one reading of the drop counter; returns whether the socket
    /// counts as dropping (new drops in this sample or the previous one).
    pub fn observe(&mut self, drops: u64) -> bool {
        let rose = self
            .last_drops
            .is_some_and(|last| drops >= last.saturating_add(MIN_DROPS_PER_SAMPLE));
        let dropping = rose || self.rose_before;
        self.last_drops = Some(drops);
        self.rose_before = rose;
        dropping
    }
}

impl ReceivePressure {
    /// A monitor of `socket` (not yet sampling: see [`run`](Self::run)).
    pub fn of(socket: &impl AsRawFd) -> Arc<ReceivePressure> {
        Arc::new(ReceivePressure {
            inode: udp::inode_of(socket),
            dropping: AtomicBool::new(false),
        })
    }

    /// Whether the kernel dropped datagrams at the socket in the last one or
    /// two samples.
    pub fn is_dropping(&self) -> bool {
        self.dropping.load(Ordering::Relaxed)
    }

    /// Samples until `stop` fires (or forever without `/proc`: returns at once).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::broadcast::Receiver<()>) {
        let Some(inode) = self.inode else {
            return;
        };
        let mut trend = Trend::default();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.recv() => return,
            }
            self.sample(inode, &mut trend);
        }
    }

    /// One sample: reads the counter and updates the flag.
    fn sample(&self, inode: u64, trend: &mut Trend) {
        let Some(figures) = udp::read_one(inode) else {
            return;
        };
        let dropping = trend.observe(figures.drops);
        if dropping != self.dropping.swap(dropping, Ordering::Relaxed) {
            tracing::warn!(
                dropping,
                drops = figures.drops,
                queue_bytes = figures.queue_bytes,
                "QUIC socket receive path: {}",
                if dropping {
                    "the kernel is dropping datagrams; new connections are refused while it does"
                } else {
                    "no more drops"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_while_the_counter_rose_in_this_sample_or_the_previous_one() {
        let mut t = Trend::default();
        assert!(!t.observe(0), "the first reading has nothing to compare with");
        assert!(!t.observe(0));
        assert!(!t.observe(31), "fewer than MIN_DROPS_PER_SAMPLE new drops");
        assert!(t.observe(100), "new drops");
        assert!(t.observe(100), "one more sample after the last rise");
        assert!(!t.observe(100), "two quiet samples: over");
        assert!(t.observe(132));
        assert!(t.observe(200));
        assert!(
            t.observe(210),
            "10 new drops: only the previous sample's rise counts"
        );
        assert!(!t.observe(220));
        // A counter seen first at a high value (drops before the gateway
        // started, or another process's) is not a rise.
        let mut fresh = Trend::default();
        assert!(!fresh.observe(1_000_000));
        assert!(!fresh.observe(1_000_000));
    }

    /// A real loopback socket that nobody reads: flooding it makes the monitor
    /// read "dropping", and two quiet samples later it clears.
    #[test]
    fn a_flooded_socket_reads_dropping_until_the_drops_stop() {
        let sink = udp::test_support::small_sink();
        let pressure = ReceivePressure::of(&sink);
        let inode = pressure.inode.expect("/proc/self/fd names the socket");
        let mut trend = Trend::default();
        pressure.sample(inode, &mut trend);
        assert!(!pressure.is_dropping());

        udp::test_support::flood(&sink);
        pressure.sample(inode, &mut trend);
        assert!(pressure.is_dropping(), "200 KB into a buffer of a few KB");
        pressure.sample(inode, &mut trend);
        assert!(pressure.is_dropping(), "still within one sample of the drops");
        pressure.sample(inode, &mut trend);
        assert!(!pressure.is_dropping(), "no new drops for two samples");
    }
}

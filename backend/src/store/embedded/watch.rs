//! Watches for the embedded backend: a registry of (key, value at registration)
//! checked by every commit that writes the key, under the commit lock.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

/// A watch waiting to fire: the value the key had when it was registered.
struct Waiter {
    seen: Option<Vec<u8>>,
    fire: oneshot::Sender<()>,
}

/// Keys of the registry each registration sweeps for dropped watches.
const SWEEP_KEYS_PER_REGISTER: usize = 4;

/// Watches by key. Only touched with the commit lock held.
///
/// A watch whose future was dropped (e.g. the session that watched a presence key
/// ended) leaves its entry behind until something visits its key. Keys that are
/// never written again (players who never come back) would keep such entries
/// forever, so every registration also sweeps the next few keys in key order,
/// wrapping around: the sweep visits keys faster than registrations add them, so
/// the registry stays bounded by the live watches plus a small lag.
#[derive(Default)]
pub(super) struct WatchRegistry {
    by_key: BTreeMap<Vec<u8>, Vec<Waiter>>,
    /// Where the incremental sweep resumes (empty: from the first key).
    sweep_from: Vec<u8>,
}

impl WatchRegistry {
    /// Registers a watch on `key`, whose value is now `current`. Fires at once if
    /// it already differs from what the transaction saw (`seen`).
    pub(super) fn register(
        &mut self,
        key: Vec<u8>,
        seen: Option<Vec<u8>>,
        current: Option<&[u8]>,
        fire: oneshot::Sender<()>,
    ) {
        self.sweep_some();
        if seen.as_deref() != current {
            let _ = fire.send(());
            return;
        }
        let waiters = self.by_key.entry(key).or_default();
        // Forget watches whose futures were dropped, so the registry stays bounded
        // by the number of live watches.
        waiters.retain(|w| !w.fire.is_closed());
        waiters.push(Waiter { seen, fire });
    }

    /// Drops dead watches from the next [`SWEEP_KEYS_PER_REGISTER`] keys.
    fn sweep_some(&mut self) {
        let mut empty = Vec::new();
        let mut next = None;
        for (i, (key, waiters)) in self.by_key.range_mut(self.sweep_from.clone()..).enumerate() {
            if i == SWEEP_KEYS_PER_REGISTER {
                next = Some(key.clone());
                break;
            }
            waiters.retain(|w| !w.fire.is_closed());
            if waiters.is_empty() {
                empty.push(key.clone());
            }
        }
        for key in empty {
            self.by_key.remove(&key);
        }
        self.sweep_from = next.unwrap_or_default();
    }

    /// Watches registered and not yet fired or swept (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    /// Called for every key a commit wrote, with its new value.
    pub(super) fn key_written(&mut self, key: &[u8], new: Option<&[u8]>) {
        if self.by_key.is_empty() {
            return;
        }
        let Some(waiters) = self.by_key.get_mut(key) else {
            return;
        };
        let mut kept = Vec::with_capacity(waiters.len());
        for w in waiters.drain(..) {
            if w.fire.is_closed() {
                continue;
            }
            if w.seen.as_deref() != new {
                let _ = w.fire.send(());
            } else {
                kept.push(w);
            }
        }
        if kept.is_empty() {
            self.by_key.remove(key);
        } else {
            *waiters = kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_watches_on_keys_never_written_again_do_not_accumulate() {
        let mut reg = WatchRegistry::default();
        let mut live = Vec::new();
        for i in 0..10_000u32 {
            let (fire, rx) = oneshot::channel();
            reg.register(format!("k{i:05}").into_bytes(), None, None, fire);
            if i % 100 == 0 {
                live.push((i, rx)); // kept: must survive every sweep
            } // else dropped at once, as when a session ends
        }
        assert!(
            reg.len() <= live.len() + 2 * SWEEP_KEYS_PER_REGISTER,
            "{} watches left for {} live ones",
            reg.len(),
            live.len()
        );
        for (i, _) in &live {
            reg.key_written(format!("k{i:05}").as_bytes(), Some(b"x"));
        }
        for (i, mut rx) in live {
            assert!(rx.try_recv().is_ok(), "live watch k{i:05} did not fire");
        }
        // Only dropped watches within the sweep's lag are left.
        assert!(reg.len() <= 2 * SWEEP_KEYS_PER_REGISTER, "{}", reg.len());
    }
}

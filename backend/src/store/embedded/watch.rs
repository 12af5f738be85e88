//! Watches for the embedded backend: a registry of (key, value at registration)
//! checked by every commit that writes the key, under the commit lock.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

/// A watch waiting to fire: the value the key had when it was registered.
struct Waiter {
    seen: Option<Vec<u8>>,
    fire: oneshot::Sender<()>,
}

/// Watches by key. Only touched with the commit lock held.
#[derive(Default)]
pub(super) struct WatchRegistry {
    by_key: BTreeMap<Vec<u8>, Vec<Waiter>>,
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

//! A small bounded multi-producer queue for the per-client traffic between
//! handles and the SDK's tasks (commands to the session actor, requests to a
//! channel task).
//!
//! Why not `tokio::sync::mpsc`: every tokio channel costs 512 bytes of
//! cache-padded state plus a first block of 32 slots (544 bytes for session
//! commands) as soon as it exists, and a client has one queue for its session
//! and one per open channel: ~1 KiB each, thousands of times over in the load
//! simulator (memory per client, issue 21). Traffic on these queues is light
//! (a ping, a close, a request every few seconds), so a mutex around a
//! `VecDeque` and two `Notify`s do the job in ~150 bytes.
//!
//! Semantics are those of tokio's bounded channel as the SDK used it: `send`
//! waits while the queue is full and fails once the receiver is closed or
//! gone; `recv` hands out what is queued, then `None` once every sender is
//! gone (or the receiver was closed). `recv` is cancel-safe: an item is taken
//! only when it is returned.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// A queue of at most `capacity` items.
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            senders: 1,
            closed: false,
        }),
        item: Notify::new(),
        room: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver: an item arrived, or the last sender left.
    item: Notify,
    /// Wakes senders waiting for room: an item was taken, or the queue closed.
    room: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// Live `Sender`s; at 0 the receiver gets `None` once the queue is empty.
    senders: usize,
    /// The receiver closed the queue or is gone: sending fails.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; clones share the queue.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `value`, waiting while the queue is full; gives it back if the
    /// receiver is closed or gone.
    pub(crate) async fn send(&self, value: T) -> Result<(), T> {
        loop {
            // Registered before the check, so room made after it wakes us.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if st.closed {
                    return Err(value);
                }
                if st.items.len() < st.capacity {
                    st.items.push_back(value);
                    drop(st);
                    self.shared.item.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Queues `value` if there is room now; gives it back if not (or closed).
    pub(crate) fn try_send(&self, value: T) -> Result<(), T> {
        let mut st = self.shared.lock();
        if st.closed || st.items.len() >= st.capacity {
            return Err(value);
        }
        st.items.push_back(value);
        drop(st);
        self.shared.item.notify_one();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.item.notify_one();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mailbox::Sender").finish_non_exhaustive()
    }
}

/// The receiving side (one task).
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is empty and every sender is gone
    /// or the queue was closed. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            let item = self.shared.item.notified();
            tokio::pin!(item);
            item.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if let Some(v) = st.items.pop_front() {
                    drop(st);
                    self.shared.room.notify_one();
                    return Some(v);
                }
                if st.senders == 0 || st.closed {
                    return None;
                }
            }
            item.await;
        }
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let v = self.shared.lock().items.pop_front();
        if v.is_some() {
            self.shared.room.notify_one();
        }
        v
    }

    /// Refuses further sends (waiting senders get their value back); what is
    /// queued can still be received.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closed = true;
        self.shared.room.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
        // Drop what is queued now (replies fail at once), outside the lock.
        let items = std::mem::take(&mut self.shared.lock().items);
        drop(items);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mailbox::Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "mailbox_tests.rs"]
mod tests;

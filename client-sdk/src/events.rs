//! Session events and server pushes, delivered through a bounded queue.
//!
//! The queue is a ring buffer of `ClientConfig::event_capacity` entries shared
//! by all subscribers. A subscriber that falls behind loses the **oldest**
//! events and is told how many with [`Event::Lagged`]; the SDK never blocks on
//! a slow consumer and never grows memory because of one.
//!
//! The ring holds each event behind an `Arc`: a slot then costs a pointer,
//! not a whole [`Event`] (144 bytes), and the ring is allocated in full for
//! every client whether events come or not (memory per client, issue 21).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use outpost_schema::{ChannelKind, ErrorCode, PushBody};
use tokio::sync::broadcast;

use crate::error::ClientError;
use crate::live::LiveEvent;

/// Something that happened to the session, or a push from the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A login succeeded. `resumed`: the gateway restored the previous session
    /// (server-side state kept); otherwise this is a fresh session.
    Connected { resumed: bool },
    /// The login waits in the region's login queue (PROTOCOL.md 3.7), at
    /// `connect` or at a reconnect; repeated at the gateway's update interval
    /// (default 5 s) until [`Event::Admitted`]. `position`: places ahead (0:
    /// next); it never increases for one place, across the SDK's reconnects
    /// too (the SDK keeps the queue token). `eta`: the gateway's estimate
    /// from its measured admission rate (`None` while admission is paused or
    /// unknown). `queue_length`: places waiting in the region. `paused`: the
    /// operators paused admission; the place is kept. `gateway`: the one
    /// the place is held through right now.
    Queued {
        position: u32,
        eta: Option<Duration>,
        queue_length: u32,
        paused: bool,
        gateway: std::net::SocketAddr,
    },
    /// The queued login was admitted after `waited` (from its first
    /// `Queued`); `Connected` follows. A wait that ends otherwise (over
    /// `QueuePolicy::max_wait`, a refusal) ends the `connect` call with the
    /// error, or, at a reconnect, is retried or ends with `Closed`.
    Admitted { waited: Duration },
    /// The connection was lost. Followed by `Reconnecting` when the SDK
    /// reconnects by itself, or by `Closed`.
    Disconnected { reason: ClientError },
    /// The SDK waits `delay` and then makes reconnect attempt `attempt` (1-based).
    Reconnecting { attempt: u32, delay: Duration },
    /// The gateway is draining; the SDK moves after `reconnect_after`.
    GoAway { reconnect_after: Duration },
    /// The gateway ended the session.
    Kicked { code: ErrorCode, message: String },
    /// A server push on a channel of kind `channel`.
    Push { channel: ChannelKind, body: PushBody },
    /// This subscriber fell behind and `missed` older events were dropped.
    Lagged { missed: u64 },
    /// A live-ops change (flags, content), emitted once [`crate::Client::live`]
    /// was called, after the [`crate::LiveClient`] cache was updated.
    Live(LiveEvent),
    /// The session ended for good (the last event).
    Closed { reason: ClientError },
}

/// A subscription to the client's events. Obtain it with
/// [`crate::Client::events`]; the first subscription receives everything since
/// `connect` (including the first `Connected`), later ones from their creation.
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Arc<Event>>,
    done: bool,
}

impl Events {
    /// The next event; `None` after [`Event::Closed`] was delivered.
    pub async fn recv(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let ev = match self.rx.recv().await {
            Ok(ev) => Arc::unwrap_or_clone(ev),
            Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
            Err(broadcast::error::RecvError::Closed) => {
                self.done = true;
                return None;
            }
        };
        self.done = matches!(ev, Event::Closed { .. });
        Some(ev)
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let ev = match self.rx.try_recv() {
            Ok(ev) => Arc::unwrap_or_clone(ev),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Event::Lagged { missed },
            Err(_) => return None,
        };
        self.done = matches!(ev, Event::Closed { .. });
        Some(ev)
    }

    /// The subscription as a `futures::Stream`.
    pub fn into_stream(self) -> impl Stream<Item = Event> + Send + Unpin {
        Box::pin(futures::stream::unfold(self, |mut s| async move {
            s.recv().await.map(|ev| (ev, s))
        }))
    }
}

/// The sending side, owned by the session.
#[derive(Debug)]
pub(crate) struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
    first: Mutex<Option<broadcast::Receiver<Arc<Event>>>>,
}

impl EventHub {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = broadcast::channel(capacity.max(1));
        Self {
            tx,
            first: Mutex::new(Some(rx)),
        }
    }

    pub(crate) fn emit(&self, ev: Event) {
        // No subscriber is fine: the event is simply not observed.
        let _ = self.tx.send(Arc::new(ev));
    }

    /// A subscription from now on that leaves the early events to the first
    /// [`subscribe`](Self::subscribe) (used by the SDK's own followers).
    pub(crate) fn subscribe_from_now(&self) -> Events {
        Events {
            rx: self.tx.subscribe(),
            done: false,
        }
    }

    pub(crate) fn subscribe(&self) -> Events {
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        Events {
            rx: first.unwrap_or_else(|| self.tx.subscribe()),
            done: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_subscriber_sees_early_events_and_laggards_are_told() {
        let hub = EventHub::new(4);
        hub.emit(Event::Connected { resumed: false });
        let mut first = hub.subscribe();
        let mut second = hub.subscribe();
        assert_eq!(first.recv().await, Some(Event::Connected { resumed: false }));
        for i in 0..10 {
            hub.emit(Event::Lagged { missed: i });
        }
        // capacity 4: the 6 oldest are gone, the subscriber is told
        assert_eq!(second.recv().await, Some(Event::Lagged { missed: 6 }));
        assert_eq!(second.recv().await, Some(Event::Lagged { missed: 6 }));
        hub.emit(Event::Closed {
            reason: ClientError::Closed,
        });
        let mut n = 0;
        while let Some(_ev) = first.recv().await {
            n += 1;
        }
        assert!(n >= 5, "lag report + 4 kept events + Closed, got {n}");
        assert_eq!(first.recv().await, None);
    }
}

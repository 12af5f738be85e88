//! Outpost patch (third_party/README.md): the queue of events from the endpoint to one
//! connection.
//!
//! quinn used a tokio unbounded channel per connection. Such a channel is made of a shared
//! `Chan` (≈ 0.5 KB, padded to cache lines) and a first block of 32 slots allocated with it
//! (≈ 0.8 KB), so every connection paid ≈ 1.25 KB for it, idle or not (a heap profile of the
//! gateway and of the load simulator). The endpoint is the only sender and the connection's
//! driver the only receiver, and neither side needs more than a mutex-guarded `VecDeque`:
//! this queue costs ≈ 100 bytes while it is empty, and gives back what a burst made it hold
//! once it is drained.
//!
//! Semantics kept from the channel: events arrive in the order sent; once the sender is
//! dropped the receiver gets what was queued, then `None`; once the receiver is dropped a send
//! fails and hands the event back. One difference: tokio's channel counted each receive against
//! the task's cooperative-scheduling budget, and this queue does not, so a connection's driver
//! drains in one poll whatever the endpoint queued for it since it last ran (which the
//! endpoint read from the socket, at most `IO_LOOP_BOUND` datagrams per endpoint poll).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use crate::ConnectionEvent;

/// Events a drained queue may keep room for; more is given back (a burst of datagrams can
/// queue hundreds, and an idle connection would keep that room for its life).
const KEEP_CAPACITY: usize = 8;

/// The two ends of a new queue.
pub(crate) fn event_queue() -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared(Mutex::new(State {
        events: VecDeque::new(),
        waker: None,
        sender_alive: true,
        receiver_alive: true,
    })));
    (EventSender(shared.clone()), EventReceiver(shared))
}

#[derive(Debug)]
struct Shared(Mutex<State>);

#[derive(Debug)]
struct State {
    events: VecDeque<ConnectionEvent>,
    /// The receiver's waker, set while it waits for an event.
    waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned lock still has a consistent queue.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The endpoint's end (one per connection).
#[derive(Debug)]
pub(crate) struct EventSender(Arc<Shared>);

impl EventSender {
    /// Queues `event`, or gives it back if the connection's driver is gone.
    pub(crate) fn send(&self, event: ConnectionEvent) -> Result<(), ConnectionEvent> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            return Err(event);
        }
        state.events.push_back(event);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_alive = false;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The connection driver's end.
#[derive(Debug)]
pub(crate) struct EventReceiver(Arc<Shared>);

impl EventReceiver {
    /// The next event; `None` once the sender is gone and the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        let mut state = self.0.lock();
        if let Some(event) = state.events.pop_front() {
            if state.events.is_empty() && state.events.capacity() > KEEP_CAPACITY {
                state.events = VecDeque::new();
            }
            return Poll::Ready(Some(event));
        }
        if !state.sender_alive {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_alive = false;
        state.waker = None;
        // Dropped outside the lock: an event can own a socket.
        let events = std::mem::take(&mut state.events);
        drop(state);
        drop(events);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;
    use crate::VarInt;

    /// A waker that counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn close(code: u32) -> ConnectionEvent {
        ConnectionEvent::Close(Box::new((VarInt::from_u32(code), bytes::Bytes::new())))
    }

    fn code(event: Option<ConnectionEvent>) -> u32 {
        match event {
            Some(ConnectionEvent::Close(close)) => close.0.into_inner() as u32,
            other => panic!("expected a close event, got {other:?}"),
        }
    }

    fn poll(rx: &mut EventReceiver, waker: &Waker) -> Poll<Option<ConnectionEvent>> {
        rx.poll_recv(&mut Context::from_waker(waker))
    }

    #[test]
    fn events_arrive_in_order_and_wake_the_waiting_receiver() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let (tx, mut rx) = event_queue();
        assert!(poll(&mut rx, &waker).is_pending());
        tx.send(close(1)).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "a send wakes the receiver"
        );
        tx.send(close(2)).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "woken once until it polls again"
        );
        for expected in [1, 2] {
            match poll(&mut rx, &waker) {
                Poll::Ready(event) => assert_eq!(code(event), expected),
                Poll::Pending => panic!("event {expected} is queued"),
            }
        }
        assert!(poll(&mut rx, &waker).is_pending());
        tx.send(close(3)).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_dropped_sender_ends_the_queue_after_what_it_sent() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let (tx, mut rx) = event_queue();
        tx.send(close(7)).unwrap();
        drop(tx);
        match poll(&mut rx, &waker) {
            Poll::Ready(event) => assert_eq!(code(event), 7),
            Poll::Pending => panic!("the queued event comes first"),
        }
        assert!(matches!(poll(&mut rx, &waker), Poll::Ready(None)));

        // A receiver waiting when the sender goes is woken, and sees the end.
        let (tx, mut rx) = event_queue();
        assert!(poll(&mut rx, &waker).is_pending());
        let before = counter.0.load(Ordering::SeqCst);
        drop(tx);
        assert_eq!(counter.0.load(Ordering::SeqCst), before + 1);
        assert!(matches!(poll(&mut rx, &waker), Poll::Ready(None)));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_gives_the_event_back() {
        let (tx, rx) = event_queue();
        tx.send(close(1)).unwrap();
        drop(rx);
        assert_eq!(code(tx.send(close(2)).err()), 2);
    }

    #[test]
    fn a_drained_queue_gives_back_what_a_burst_made_it_hold() {
        let waker = Waker::from(Arc::new(Counter(AtomicUsize::new(0))));
        let (tx, mut rx) = event_queue();
        for i in 0..500 {
            tx.send(close(i)).unwrap();
        }
        for i in 0..500 {
            match poll(&mut rx, &waker) {
                Poll::Ready(event) => assert_eq!(code(event), i),
                Poll::Pending => panic!("event {i} is queued"),
            }
        }
        assert_eq!(rx.0.lock().events.capacity(), 0);
        // A queue that never held more than a few keeps its room.
        tx.send(close(1)).unwrap();
        tx.send(close(2)).unwrap();
        let _ = poll(&mut rx, &waker);
        let _ = poll(&mut rx, &waker);
        assert!(rx.0.lock().events.capacity() > 0);
    }

    #[test]
    fn sender_and_receiver_on_two_threads_lose_nothing() {
        let (tx, mut rx) = event_queue();
        const N: u32 = 100_000;
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                tx.send(close(i)).unwrap();
            }
        });
        let waker = Waker::from(Arc::new(Counter(AtomicUsize::new(0))));
        let mut next = 0;
        loop {
            match poll(&mut rx, &waker) {
                Poll::Ready(Some(event)) => {
                    assert_eq!(code(Some(event)), next);
                    next += 1;
                }
                Poll::Ready(None) => break,
                Poll::Pending => std::thread::yield_now(),
            }
        }
        sender.join().unwrap();
        assert_eq!(next, N);
    }
}

//! When the SDK sends its telemetry batch (see `telemetry.rs`): every flush
//! interval, or at once when the batch fills; one report at a time, sent by a
//! short task of its own.
//!
//! The schedule is driven by the session actor's loop (`session/drive.rs`),
//! which wakes for heartbeats anyway, instead of a flusher task per client
//! that lived as long as the session (memory per client, issue 21). While
//! the session is reconnecting the schedule waits: a report sent then would
//! wait for the connection too.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::telemetry::{Recorder, Sink};

pub(crate) struct FlushSchedule {
    sink: Weak<Sink>,
    interval: Duration,
    /// When the interval next elapses.
    next: Instant,
    /// The report being sent, if any.
    running: Option<JoinHandle<()>>,
    /// Asked to flush while a report was being sent: flush again after it.
    again: bool,
}

impl FlushSchedule {
    /// The schedule for a client's telemetry; `None` when telemetry is off.
    pub(crate) fn new(recorder: &Recorder, sink: &Arc<Sink>) -> Option<FlushSchedule> {
        let config = recorder.config();
        config.enabled.then(|| FlushSchedule {
            sink: Arc::downgrade(sink),
            interval: config.flush_interval,
            next: Instant::now() + config.flush_interval,
            running: None,
            again: false,
        })
    }

    /// When the interval next elapses.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// The interval elapsed (`now` ≥ [`next`](Self::next)): flush.
    pub(crate) fn tick(&mut self, recorder: &Recorder, now: Instant) {
        self.next += self.interval;
        self.flush(recorder, now);
    }

    /// Sends the pending batch (nothing if it is empty), unless a report is
    /// being sent: then right after it.
    pub(crate) fn flush(&mut self, recorder: &Recorder, now: Instant) {
        if self.running.is_some() {
            self.again = true;
            return;
        }
        let sink = match self.sink.upgrade() {
            Some(sink) if !recorder.is_empty() => sink,
            // The client is gone, or nothing to send.
            _ => return self.sent(now),
        };
        self.running = Some(tokio::spawn(async move { sink.flush().await }));
    }

    /// The report ended ([`report_done`] completed).
    pub(crate) fn finished(&mut self, recorder: &Recorder, now: Instant) {
        self.running = None;
        self.sent(now);
        if std::mem::take(&mut self.again) {
            self.flush(recorder, now);
        }
    }

    /// A flush is over: an interval that elapsed meanwhile is not made up.
    fn sent(&mut self, now: Instant) {
        if self.next <= now {
            self.next = now + self.interval;
        }
    }
}

/// Completes when the report being sent ends; pending while none is (or
/// telemetry is off). Cancel-safe: the report goes on.
pub(crate) async fn report_done(schedule: &mut Option<FlushSchedule>) {
    match schedule.as_mut().and_then(|s| s.running.as_mut()) {
        Some(h) => {
            let _ = h.await;
        }
        None => std::future::pending().await,
    }
}

//! SDK self-telemetry: the client reports the errors and request latencies it
//! sees to the gateway's `Telemetry` channel (PROTOCOL.md §4.6), batched and
//! bounded, best effort.
//!
//! # What is reported
//! - **Automatically**, every request made through a [`Channel`] (so every typed
//!   call: state, inventory, matchmaking, live ops), except on the `Telemetry`
//!   channel itself: on success one latency sample (milliseconds), on failure one
//!   error occurrence with the code `"<channel>.<operation>.<error>"`, e.g.
//!   `state.StateSet.Conflict` or `inventory.InventoryPurchase.ClientTimeout`
//!   (see [`error_name`]). [`ClientError::Closed`] (the game closed the client)
//!   is not recorded.
//! - **By the game**, through [`TelemetryReporter`] ([`crate::Client::telemetry`]):
//!   its own errors (code + context) and latency samples.
//!
//! The gateway labels every report with the session's client version and
//! platform (from `Hello`, never from the report) and its rollout cohorts; error
//! rates feed the health gates of progressive rollouts, so SDK-seen failures of a
//! build that got a new flag value can roll that flag back by themselves.
//!
//! # Bounds
//! One pending batch at a time: at most [`TelemetryConfig::max_error_entries`]
//! distinct error codes, each counting at most [`MAX_COUNT_PER_ERROR`]
//! occurrences, and [`TelemetryConfig::max_latency_samples`] latency samples —
//! within what the gateway reads from one report (64 entries, 1,000 per entry,
//! 256 samples). A batch is sent every [`TelemetryConfig::flush_interval`], or at
//! once when it fills. While it is full, further events are **dropped and
//! counted** ([`TelemetryStats::dropped`]); memory never grows.
//!
//! # Best effort
//! A report is sent once, within the client's `request_timeout` (which covers a
//! short reconnect). If it fails it is dropped and counted
//! ([`TelemetryStats::failed_reports`], [`TelemetryStats::lost`]): never retried,
//! never surfaced to game code as an error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use outpost_schema::{ChannelKind, RequestBody, ResponseBody, TelemetryErrorCount};
use tokio::sync::Notify;

use crate::channel::Channel;
use crate::error::ClientError;
use crate::mailbox;
use crate::session::{Command, Shared};

/// Most error entries the gateway reads from one report (PROTOCOL.md §4.6).
pub const MAX_ERRORS_PER_REPORT: usize = 64;
/// Most latency samples the gateway reads from one report.
pub const MAX_LATENCIES_PER_REPORT: usize = 256;
/// Most occurrences one error entry may claim.
pub const MAX_COUNT_PER_ERROR: u32 = 1000;
/// Longest error code the gateway accepts (longer codes are counted as `other`).
pub const MAX_CODE_BYTES: usize = 64;
/// Shortest allowed [`TelemetryConfig::flush_interval`].
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Longest allowed [`TelemetryConfig::flush_interval`].
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(3600);

/// How the SDK reports its own telemetry. Part of [`crate::ClientConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    /// Record and send telemetry at all. Default `true`. When `false` nothing is
    /// recorded (the game's reports too) and the `Telemetry` channel is never opened.
    pub enabled: bool,
    /// How often the pending batch is sent. Default 10 s; 100 ms..=1 h. Shorter
    /// makes rollout health gates react sooner and costs one small request per
    /// interval per client (only when something was recorded); longer batches
    /// more per report but a burst is more likely to fill the batch (which is
    /// then sent at once) or be dropped.
    pub flush_interval: Duration,
    /// Distinct error codes one batch holds, 1..=64. Default 64. A batch
    /// with this many codes is sent at once; further new codes are dropped.
    pub max_error_entries: usize,
    /// Latency samples one batch holds, 1..=256. Default 256. A batch with
    /// this many samples is sent at once; further samples are dropped.
    pub max_latency_samples: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: true,
            flush_interval: Duration::from_secs(10),
            max_error_entries: MAX_ERRORS_PER_REPORT,
            max_latency_samples: MAX_LATENCIES_PER_REPORT,
        }
    }
}

impl TelemetryConfig {
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let bad = |m: String| Err(ClientError::Config(format!("telemetry: {m}")));
        if !(MIN_FLUSH_INTERVAL..=MAX_FLUSH_INTERVAL).contains(&self.flush_interval) {
            return bad(format!(
                "flush_interval {:?} not in {MIN_FLUSH_INTERVAL:?}..={MAX_FLUSH_INTERVAL:?}",
                self.flush_interval
            ));
        }
        if !(1..=MAX_ERRORS_PER_REPORT).contains(&self.max_error_entries) {
            return bad(format!(
                "max_error_entries must be in 1..={MAX_ERRORS_PER_REPORT}"
            ));
        }
        if !(1..=MAX_LATENCIES_PER_REPORT).contains(&self.max_latency_samples) {
            return bad(format!(
                "max_latency_samples must be in 1..={MAX_LATENCIES_PER_REPORT}"
            ));
        }
        Ok(())
    }
}

/// Counters of the client's telemetry since `connect` (events are error
/// occurrences and latency samples).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryStats {
    /// Events put into a batch.
    pub recorded: u64,
    /// Events dropped because the batch was full, or invalid (a latency that is
    /// negative or not finite).
    pub dropped: u64,
    /// Events in reports the gateway acknowledged.
    pub sent: u64,
    /// Reports that failed (timeout, connection lost, refused); not retried.
    pub failed_reports: u64,
    /// Events in failed reports.
    pub lost: u64,
}

/// One report's worth of events.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Batch {
    errors: BTreeMap<String, u32>,
    latencies_ms: Vec<f64>,
    events: u64,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events == 0
    }

    fn into_request(self) -> RequestBody {
        RequestBody::Telemetry {
            errors: self
                .errors
                .into_iter()
                .map(|(code, count)| TelemetryErrorCount { code, count })
                .collect(),
            latencies_ms: self.latencies_ms,
        }
    }
}

#[derive(Debug, Default)]
struct RecState {
    batch: Batch,
    stats: TelemetryStats,
}

/// The bounded buffer every recording goes into. Synchronous and cheap: a
/// mutex held for a map insert.
#[derive(Debug)]
pub(crate) struct Recorder {
    config: TelemetryConfig,
    state: Mutex<RecState>,
    /// Signalled when the batch fills (the session sends it at once, see
    /// `telemetry_flush.rs`).
    full: Notify,
}

/// Keeps `[A-Za-z0-9_.-]`, maps anything else to `_`, at most [`MAX_CODE_BYTES`].
fn sanitize(code: &str) -> String {
    let mut s: String = code
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(MAX_CODE_BYTES);
    if s.is_empty() {
        s.push_str("unknown");
    }
    s
}

/// The name of an error as reported: the gateway's code name for server
/// errors (`Conflict`, `NotFound`, ...), else the kind of client-side failure
/// (`ClientTimeout`, `ConnectionLost`, `Protocol`, ...).
pub fn error_name(e: &ClientError) -> String {
    let code = |c: outpost_schema::ErrorCode| match c.variant_name() {
        Some(n) => n.to_owned(),
        None => format!("E{}", c.0),
    };
    match e {
        ClientError::Server(s) => code(s.code),
        ClientError::ChannelClosed(s) => format!("ChannelClosed-{}", code(s.code)),
        ClientError::Rejected { code: c, .. } => format!("Rejected-{}", code(*c)),
        ClientError::Kicked { code: c, .. } => format!("Kicked-{}", code(*c)),
        ClientError::Protocol { code: c, .. } => format!("Protocol-{}", code(*c)),
        ClientError::Timeout => "ClientTimeout".into(),
        ClientError::ConnectionLost(_) => "ConnectionLost".into(),
        ClientError::Closed => "ClientClosed".into(),
        ClientError::RequestTooLarge { .. } => "RequestTooLarge".into(),
        ClientError::Connect(_) => "ConnectFailed".into(),
        ClientError::Config(_) => "Config".into(),
    }
}

/// The operation a request performs, as named in telemetry codes.
pub(crate) fn operation(body: &RequestBody) -> &'static str {
    body.operation_name()
}

fn channel_name(kind: ChannelKind) -> String {
    format!("{kind:?}").to_ascii_lowercase()
}

impl Recorder {
    pub(crate) fn new(config: TelemetryConfig) -> Self {
        Recorder {
            config,
            state: Mutex::new(RecState::default()),
            full: Notify::new(),
        }
    }

    pub(crate) fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one occurrence of error `code` (sanitized first).
    pub(crate) fn error(&self, code: &str) {
        if !self.config.enabled {
            return;
        }
        let code = sanitize(code);
        let mut st = self.lock();
        let max = self.config.max_error_entries;
        let entries = st.batch.errors.len();
        let fits = match st.batch.errors.get_mut(&code) {
            Some(n) if *n < MAX_COUNT_PER_ERROR => {
                *n += 1;
                true
            }
            Some(_) => false,
            None if entries < max => {
                st.batch.errors.insert(code, 1);
                true
            }
            None => false,
        };
        self.account(&mut st, fits, |b| {
            b.errors.len() >= max || b.errors.values().any(|n| *n >= MAX_COUNT_PER_ERROR)
        });
    }

    /// Records one latency sample, in milliseconds (negative or non-finite
    /// values are dropped).
    pub(crate) fn latency_ms(&self, ms: f64) {
        if !self.config.enabled {
            return;
        }
        let mut st = self.lock();
        let max = self.config.max_latency_samples;
        let fits = ms.is_finite() && ms >= 0.0 && st.batch.latencies_ms.len() < max;
        if fits {
            st.batch.latencies_ms.push(ms);
        }
        self.account(&mut st, fits, |b| b.latencies_ms.len() >= max);
    }

    fn account(&self, st: &mut RecState, fits: bool, is_full: impl Fn(&Batch) -> bool) {
        if fits {
            st.batch.events += 1;
            st.stats.recorded += 1;
        } else {
            st.stats.dropped += 1;
        }
        if is_full(&st.batch) {
            self.full.notify_one();
        }
    }

    /// Records the outcome of a request made on a channel of `kind`.
    pub(crate) fn request(
        &self,
        kind: ChannelKind,
        op: &'static str,
        result: &Result<ResponseBody, ClientError>,
        elapsed: Duration,
    ) {
        if kind == ChannelKind::Telemetry || !self.config.enabled {
            return;
        }
        match result {
            Ok(_) => self.latency_ms(elapsed.as_secs_f64() * 1000.0),
            Err(ClientError::Closed) => {}
            Err(e) => self.error(&format!("{}.{op}.{}", channel_name(kind), error_name(e))),
        }
    }

    /// Notified when the batch fills (it is then sent at once).
    pub(crate) fn filled(&self) -> &Notify {
        &self.full
    }

    /// Whether nothing is waiting to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().batch.is_empty()
    }

    /// Takes the pending batch (an empty one if nothing was recorded).
    pub(crate) fn take(&self) -> Batch {
        std::mem::take(&mut self.lock().batch)
    }

    fn sent(&self, events: u64, ok: bool) {
        let mut st = self.lock();
        if ok {
            st.stats.sent += events;
        } else {
            st.stats.failed_reports += 1;
            st.stats.lost += events;
        }
    }

    pub(crate) fn stats(&self) -> TelemetryStats {
        self.lock().stats
    }
}

/// Where reports go: the `Telemetry` channel, opened on first use. Owned by the
/// client (so it never keeps a session alive on its own); the session's flush
/// schedule (`telemetry_flush.rs`) and
/// [`TelemetryReporter`] handles hold it weakly.
#[derive(Debug)]
pub(crate) struct Sink {
    shared: Arc<Shared>,
    cmds: mailbox::Sender<Command>,
    channel: tokio::sync::Mutex<Option<Channel>>,
}

impl Sink {
    pub(crate) fn new(shared: Arc<Shared>, cmds: mailbox::Sender<Command>) -> Arc<Sink> {
        Arc::new(Sink {
            shared,
            cmds,
            channel: tokio::sync::Mutex::new(None),
        })
    }

    /// Sends the pending batch once (nothing if it is empty). Never fails:
    /// a failed report is counted and dropped.
    pub(crate) async fn flush(&self) {
        let rec = &self.shared.telemetry;
        let batch = rec.take();
        if batch.is_empty() {
            return;
        }
        let events = batch.events;
        let ok = match self.send(batch.into_request()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, events, "telemetry report dropped");
                false
            }
        };
        rec.sent(events, ok);
    }

    async fn send(&self, body: RequestBody) -> Result<(), ClientError> {
        let channel = {
            let mut slot = self.channel.lock().await;
            match slot.as_ref() {
                Some(c) if !c.is_closed() => c.clone(),
                _ => {
                    let c =
                        Channel::open(self.shared.clone(), self.cmds.clone(), ChannelKind::Telemetry).await?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        match channel.request(body).await? {
            ResponseBody::TelemetryAck { .. } => Ok(()),
            other => Err(ClientError::unexpected(&format!(
                "unexpected response on the telemetry channel: {other:?}"
            ))),
        }
    }
}

/// The game's handle to the client's telemetry ([`crate::Client::telemetry`]).
/// Cheap to clone; recording is synchronous and never fails; it does not keep
/// the session alive.
#[derive(Clone, Debug)]
pub struct TelemetryReporter {
    shared: Arc<Shared>,
    sink: Weak<Sink>,
}

impl TelemetryReporter {
    pub(crate) fn new(shared: Arc<Shared>, sink: &Arc<Sink>) -> Self {
        TelemetryReporter {
            shared,
            sink: Arc::downgrade(sink),
        }
    }

    /// Records one error the game saw: `code` (e.g. `E_DOWNLOAD`) in `context`
    /// (e.g. `shop`), reported as `"<context>.<code>"` (just `code` when
    /// `context` is empty). Characters outside `[A-Za-z0-9_.-]` become `_`, and
    /// the whole is cut to 64 bytes. Keep both from small fixed sets: the gateway
    /// bounds its metric series and counts the excess as `other`.
    pub fn report_error(&self, code: &str, context: &str) {
        if context.is_empty() {
            self.shared.telemetry.error(code);
        } else {
            self.shared.telemetry.error(&format!("{context}.{code}"));
        }
    }

    /// Records one latency sample the game measured (e.g. an asset download).
    pub fn report_latency(&self, latency: Duration) {
        self.shared.telemetry.latency_ms(latency.as_secs_f64() * 1000.0);
    }

    /// Sends what is pending now, without waiting for the flush interval
    /// (e.g. before the game quits). Returns when the report was acknowledged
    /// or dropped; never fails.
    pub async fn flush(&self) {
        if let Some(sink) = self.sink.upgrade() {
            sink.flush().await;
        }
    }

    /// Counters since `connect`: recorded, dropped, sent, failed.
    pub fn stats(&self) -> TelemetryStats {
        self.shared.telemetry.stats()
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;

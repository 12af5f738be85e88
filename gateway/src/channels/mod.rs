//! Channel routing: which service answers which channel, and the sink through
//! which a service's responses and pushes reach the client.
//!
//! A service implements [`ChannelService`] with plain wire-level request and
//! response bodies (`outpost_schema` owned types). Services adapt backend calls
//! (which know nothing of the wire) and map their errors to [`ServiceError`]
//! codes by the errors' class, in [`errors::wire_error`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use outpost_schema::{ChannelKind, ChannelMsg, ErrorCode, PushBody, RequestBody, ResponseBody};
use tokio::sync::mpsc;

use crate::session::{ChannelId, SlowConsumer};

pub mod content;
pub mod echo;
pub mod errors;
pub mod inventory;
pub mod matchmaking;
mod pacing;
pub mod region_services;
pub mod state;
pub mod telemetry;

/// What a service answers to one request.
pub struct Reply {
    pub body: ResponseBody,
    /// Pushes to send right after the response, in order. Produced lazily, one at
    /// a time, so a long series never sits in memory at once; sending stops as
    /// soon as the client's queue is full.
    pub pushes: Box<dyn Iterator<Item = PushBody> + Send>,
}

impl Reply {
    pub fn new(body: ResponseBody) -> Self {
        Reply {
            body,
            pushes: Box::new(std::iter::empty()),
        }
    }
}

/// A failed request, as the client will see it in `Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// What the session's client said about itself in `Hello` (for flag targeting
/// and telemetry labels).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client's build version (`0.0.0` if it sent none or garbage).
    pub version: outpost_backend::content::ClientVersion,
    /// Lowercase platform name (`windows`, `ps5`, ... see [`platform_name`]).
    pub platform: &'static str,
}

impl ClientInfo {
    pub fn from_hello(client_version: &str, platform: outpost_schema::Platform) -> Self {
        let version = client_version
            .parse()
            .unwrap_or_else(|_| "0.0.0".parse().expect("valid literal"));
        ClientInfo {
            version,
            platform: platform_name(platform),
        }
    }
}

/// The lowercase name flag rules and metrics use for a platform.
pub fn platform_name(p: outpost_schema::Platform) -> &'static str {
    use outpost_schema::Platform as P;
    match p {
        P::Windows => "windows",
        P::MacOS => "macos",
        P::Linux => "linux",
        P::IOS => "ios",
        P::Android => "android",
        P::PlayStation => "playstation",
        P::Xbox => "xbox",
        P::Switch => "switch",
        _ => "unknown",
    }
}

/// Who is asking, and where pushes for them go.
#[derive(Clone)]
pub struct RequestContext {
    pub player_id: Arc<str>,
    /// The region of the gateway serving the session.
    pub region: Arc<str>,
    /// What the client said about itself.
    pub client: Arc<ClientInfo>,
    /// The player's home region: where their data lives.
    pub home_region: Arc<str>,
    pub session_id: u64,
    /// The channel's outbound sink, for pushes the service sends later.
    pub sink: ChannelSink,
}

/// A backend service reachable over one channel kind.
pub trait ChannelService: Send + Sync + 'static {
    /// Answers one request. Runs concurrently with other requests of the same
    /// channel, up to the in-flight limit.
    fn handle(
        &self,
        ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>>;

    /// A background task that runs while the channel is open (live pushes through
    /// `ctx.sink`); aborted when the channel closes. Default: none.
    fn subscribe(&self, ctx: RequestContext) -> Option<BoxFuture<'static, ()>> {
        let _ = ctx;
        None
    }
}

/// Channel kinds this gateway serves.
#[derive(Clone, Default)]
pub struct Router {
    services: HashMap<ChannelKind, Arc<dyn ChannelService>>,
}

impl Router {
    /// A router with the services every gateway has: `Echo`, `State` and
    /// `Inventory`, which share the gateway's one
    /// [`ServiceCache`](region_services::ServiceCache) (the per-region service
    /// objects, built once).
    ///
    /// `push_min_interval`: the least time between two pushes of one `State`
    /// or `Inventory` subscription (`session.push_min_interval_ms`).
    pub fn with_defaults(
        max_frame_size: u32,
        services: Arc<region_services::ServiceCache>,
        client_grants: bool,
        push_min_interval: Duration,
    ) -> Self {
        let mut r = Router::default();
        r.insert(ChannelKind::Echo, Arc::new(echo::Echo::new(max_frame_size)));
        r.insert(
            ChannelKind::State,
            Arc::new(state::StateService::new(services.clone(), push_min_interval)),
        );
        r.insert(
            ChannelKind::Inventory,
            Arc::new(inventory::InventoryService::new(
                services,
                client_grants,
                push_min_interval,
            )),
        );
        r
    }

    /// Adds the live-ops channels: `Content` (manifests, flags) and `Telemetry`.
    pub fn with_live(mut self, live: Arc<crate::live::Live>) -> Self {
        self.insert(
            ChannelKind::Content,
            Arc::new(content::ContentService::new(live.clone())),
        );
        self.insert(
            ChannelKind::Telemetry,
            Arc::new(telemetry::TelemetryService::new(live)),
        );
        self
    }

    pub fn insert(&mut self, kind: ChannelKind, service: Arc<dyn ChannelService>) {
        self.services.insert(kind, service);
    }

    pub fn get(&self, kind: ChannelKind) -> Option<Arc<dyn ChannelService>> {
        self.services.get(&kind).cloned()
    }
}

/// What a channel's sink needs of its session: the per-channel queue
/// accounting of the session's state machine (`crate::session`) and a way to
/// wake the session's driver. The driver implements it; channels never see the
/// driver's types.
pub trait SessionQueues: Send + Sync + 'static {
    /// Counts a frame of `len` bytes into channel `id`'s queue. `Err`: the
    /// session is closing with `SlowConsumer` (or already closed), and the
    /// frame must be dropped.
    fn enqueue(&self, id: ChannelId, len: usize) -> Result<(), SlowConsumer>;
    /// Takes a frame of `len` bytes back out of channel `id`'s count.
    fn dequeued(&self, id: ChannelId, len: usize);
    /// Whether a paced push of `len` bytes may be queued on channel `id` now
    /// (see [`ChannelSink::push_paced`]).
    fn has_room_for_paced(&self, id: ChannelId, len: usize) -> bool;
    /// Wakes the session's driver, to act on what the machine decided (a
    /// close).
    fn wake(&self);
}

/// The outbound side of one channel: frames go through the session's queue
/// accounting, so a client that does not read is disconnected instead of growing
/// the gateway's memory.
#[derive(Clone)]
pub struct ChannelSink {
    pub(crate) id: ChannelId,
    pub(crate) tx: mpsc::Sender<Vec<u8>>,
    pub(crate) core: Arc<dyn SessionQueues>,
    pub(crate) max_frame_size: u32,
    /// Signalled by the channel's writer whenever it hands a frame to QUIC.
    pub(crate) room: Arc<tokio::sync::Notify>,
}

impl ChannelSink {
    /// Queues a frame for the client. `Err` means the session is closing with
    /// `SlowConsumer` (or already closed); the frame was dropped.
    pub fn send(&self, msg: &ChannelMsg) -> Result<(), SlowConsumer> {
        self.send_frame(self.encode(msg))
    }

    /// The message's frame, or an `Internal` error in its place if it exceeds
    /// the negotiated frame size.
    fn encode(&self, msg: &ChannelMsg) -> Vec<u8> {
        let mut frame = msg.encode();
        if frame.len() - outpost_schema::LENGTH_PREFIX_BYTES > self.max_frame_size as usize {
            // A service produced more than the client agreed to receive: a server
            // bug, reported as such rather than breaking the client's framing.
            let request_id = match msg {
                ChannelMsg::Response(r) => r.request_id,
                _ => 0,
            };
            frame = ChannelMsg::Error(outpost_schema::ErrorFrame {
                request_id,
                code: ErrorCode::Internal,
                message: "response larger than the negotiated frame size".into(),
                retry_after_ms: 0,
            })
            .encode();
        }
        frame
    }

    fn send_frame(&self, frame: Vec<u8>) -> Result<(), SlowConsumer> {
        let len = frame.len();
        let admitted = self.core.enqueue(self.id, len);
        if admitted.is_err() {
            self.core.wake();
            return Err(SlowConsumer);
        }
        if self.tx.try_send(frame).is_err() {
            // The writer is gone (stream closed) or its queue is full; the machine's
            // own bound is the same size, so this only happens while closing.
            self.core.dequeued(self.id, len);
            return Err(SlowConsumer);
        }
        Ok(())
    }

    /// Queues a push.
    pub fn push(&self, body: PushBody) -> Result<(), SlowConsumer> {
        self.send(&ChannelMsg::Push(body))
    }

    /// Queues a push once the channel's queue is at most half full, waiting for
    /// the client to read if needed: for a series of large pushes the gateway
    /// makes on its own (a state snapshot of many big documents), which would
    /// otherwise overflow the queue of a client that reads normally and close
    /// its session as `SlowConsumer`. The other half stays free for responses.
    /// A client that stops reading holds the series here (bounded: one push),
    /// until the idle timeout or another frame's overflow ends the session.
    pub async fn push_paced(&self, body: PushBody) -> Result<(), SlowConsumer> {
        let frame = self.encode(&ChannelMsg::Push(body));
        let len = frame.len();
        loop {
            let notified = self.room.notified();
            if self.core.has_room_for_paced(self.id, len) {
                return self.send_frame(frame);
            }
            notified.await;
        }
    }
}

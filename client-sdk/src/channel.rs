//! Channels: one QUIC stream per service, requests matched to responses by
//! request id, pushes forwarded to the event queue.
//!
//! Every [`Channel`] is served by its own task that follows the session's
//! connection state: on each new connection (after a reconnect, resumed or
//! not) it re-opens its stream with `OpenChannel`, so a `Channel` handle keeps
//! working across reconnects.
//!
//! **In-flight requests when a connection dies fail** with
//! [`ClientError::ConnectionLost`] (retryable). They are never re-sent by the
//! SDK: the gateway may already have executed them, and only the caller knows
//! whether a request is idempotent (or carries an idempotency key). Requests
//! *queued* while the client is reconnecting have not been sent yet; they are
//! sent on the next connection if their timeout has not expired.
//!
//! A GoAway does not make requests fail: once the session starts moving
//! (see `session.rs`), new requests are held for the next connection and the
//! old connection is closed only after those already sent were answered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use outpost_schema::{ChannelKind, ChannelMsg, ErrorCode, Request, RequestBody, ResponseBody};
use tokio::sync::{oneshot, watch};

use crate::error::{ClientError, ServerError};
use crate::events::Event;
use crate::framing::{body_len, write_frame, FrameReader, ReadError};
use crate::mailbox;
use crate::session::{Command, ConnState, LiveConn, Shared};

/// Requests accepted by a channel but not yet sent (while at the in-flight
/// limit or reconnecting). Callers beyond this wait (within their timeout).
const REQUEST_QUEUE: usize = 64;

/// Inbound frames the channel loop handles in a row before its writes get a
/// turn and the task yields to the runtime. Reads come first in the loop, so
/// without this a flood of pushes that keeps the stream readable (a server
/// faster than the game handles its frames) would hold requests back for as
/// long as it lasts; and a task that never returns `Pending` also keeps the
/// connection's driver (which puts written bytes on the wire) and the
/// session's heartbeats from running on its thread.
const READ_BURST: u32 = 16;

type Reply = oneshot::Sender<Result<ResponseBody, ClientError>>;

/// Boxed in the queue: its buffer keeps the capacity it once grew to, so
/// inline requests would keep room for up to 64 of them per channel.
struct Pending {
    body: RequestBody,
    reply: Reply,
}

/// A handle to one channel (one service stream). Cheap to clone; clones share
/// the stream. The channel closes when the last clone is dropped. A channel
/// keeps its client session alive.
#[derive(Clone, Debug)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

#[derive(Debug)]
struct ChannelInner {
    kind: ChannelKind,
    shared: Arc<Shared>,
    tx: mailbox::Sender<Box<Pending>>,
    dead: Arc<Mutex<Option<ClientError>>>,
    _session: mailbox::Sender<Command>,
}

impl Channel {
    /// Opens a channel of `kind`. Waits (within the request timeout) for a
    /// connection if the client is reconnecting.
    pub(crate) async fn open(
        shared: Arc<Shared>,
        session: mailbox::Sender<Command>,
        kind: ChannelKind,
    ) -> Result<Channel, ClientError> {
        let (tx, rx) = mailbox::channel(REQUEST_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let dead = Arc::new(Mutex::new(None));
        let task = ChannelTask {
            kind,
            shared: shared.clone(),
            rx,
            dead: dead.clone(),
            backlog: VecDeque::new(),
            next_id: 0,
            ready: Some(ready_tx),
        };
        // Boxed: as an argument of `run` the task would be held twice in
        // its future (the argument and the local it is moved into).
        tokio::spawn(Box::new(task).run());
        let timeout = shared.config.request_timeout;
        let channel = Channel {
            inner: Arc::new(ChannelInner {
                kind,
                shared,
                tx,
                dead,
                _session: session,
            }),
        };
        match tokio::time::timeout(timeout, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(channel),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(channel.dead_error()),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// The service this channel talks to.
    pub fn kind(&self) -> ChannelKind {
        self.inner.kind
    }

    /// Sends a request and waits for its response, within the configured
    /// request timeout (which includes waiting for a reconnect and for a free
    /// in-flight slot). An `Error` answer becomes [`ClientError::Server`].
    /// The outcome (latency, or the error) is recorded in the client's
    /// telemetry (see [`crate::TelemetryReporter`]).
    pub async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let (op, started) = (crate::telemetry::operation(&body), std::time::Instant::now());
        let result = self.request_inner(body).await;
        let telemetry = &self.inner.shared.telemetry;
        telemetry.request(self.inner.kind, op, &result, started.elapsed());
        result
    }

    async fn request_inner(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let (reply, rx) = oneshot::channel();
        let fut = async {
            if self
                .inner
                .tx
                .send(Box::new(Pending { body, reply }))
                .await
                .is_err()
            {
                return Err(self.dead_error());
            }
            rx.await.unwrap_or_else(|_| Err(self.dead_error()))
        };
        tokio::time::timeout(self.inner.shared.config.request_timeout, fut)
            .await
            .unwrap_or(Err(ClientError::Timeout))
    }

    /// Echo request (diagnostics): returns the echoed payload; `push_count`
    /// `EchoPush` events follow on the event queue.
    pub async fn echo(&self, payload: impl Into<Vec<u8>>, push_count: u16) -> Result<Vec<u8>, ClientError> {
        match self
            .request(RequestBody::Echo {
                payload: payload.into(),
                push_count,
                delay_ms: 0,
            })
            .await?
        {
            ResponseBody::Echo { payload } => Ok(payload),
            // A different response type (later services append more).
            #[allow(unreachable_patterns)]
            other => Err(ClientError::unexpected(&format!(
                "expected EchoResponse, got {other:?}"
            ))),
        }
    }

    /// Whether the channel can no longer be used (closed by the gateway or the
    /// session ended).
    pub fn is_closed(&self) -> bool {
        self.inner
            .dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn dead_error(&self) -> ClientError {
        self.inner
            .dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(ClientError::Closed)
    }
}

/// How serving one connection ended.
enum Served {
    /// The connection went away; wait for the next one.
    Reconnect,
    /// The channel is finished for good.
    Dead(ClientError),
}

/// Requests sent on one stream and not yet answered, by request id.
type InFlight = HashMap<u64, Reply>;

/// A request frame being written: the loop keeps reading (and watching the
/// connection) while the stream's flow control holds the write back.
struct Outgoing {
    frame: Vec<u8>,
    written: usize,
}

pub(crate) struct ChannelTask {
    kind: ChannelKind,
    shared: Arc<Shared>,
    rx: mailbox::Receiver<Box<Pending>>,
    dead: Arc<Mutex<Option<ClientError>>>,
    /// Requests taken from `rx` while no connection was available.
    backlog: VecDeque<Box<Pending>>,
    next_id: u64,
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
}

impl ChannelTask {
    pub(crate) async fn run(mut self: Box<Self>) {
        let mut state = self.shared.state.subscribe();
        let mut last_gen = 0;
        let end = loop {
            let live = match self.wait_for_connection(&mut state, last_gen).await {
                Ok(l) => l,
                Err(e) => break e,
            };
            last_gen = live.generation;
            match self.serve(&live, &mut state).await {
                Served::Reconnect => continue,
                Served::Dead(e) => break e,
            }
        };
        *self.dead.lock().unwrap_or_else(|p| p.into_inner()) = Some(end.clone());
        if let Some(r) = self.ready.take() {
            let _ = r.send(Err(end.clone()));
        }
        self.rx.close();
        for p in self.backlog.drain(..) {
            let _ = p.reply.send(Err(end.clone()));
        }
        while let Some(p) = self.rx.try_recv() {
            let _ = p.reply.send(Err(end.clone()));
        }
    }

    async fn wait_for_connection(
        &mut self,
        state: &mut watch::Receiver<ConnState>,
        last_gen: u64,
    ) -> Result<Arc<LiveConn>, ClientError> {
        loop {
            let s = state.borrow_and_update().clone();
            match s {
                ConnState::Connected(l) if l.generation != last_gen => return Ok(l),
                ConnState::Closed(e) => return Err(e),
                _ => {}
            }
            tokio::select! {
                r = state.changed() => if r.is_err() { return Err(ClientError::Closed) },
                p = self.rx.recv(), if self.backlog.len() < REQUEST_QUEUE => match p {
                    Some(p) => self.backlog.push_back(p),
                    None => return Err(ClientError::Closed),
                },
            }
        }
    }

    /// Serves one connection: one stream, opened here, read and written by
    /// this task (no reader task of its own: memory per client, issue 21).
    async fn serve(&mut self, live: &Arc<LiveConn>, state: &mut watch::Receiver<ConnState>) -> Served {
        let open = async {
            let (mut send, recv) = live.conn.open_bi().await.map_err(|e| e.to_string())?;
            write_frame(&mut send, &ChannelMsg::Open(self.kind).encode()).await?;
            Ok::<_, String>((send, recv))
        };
        // Boxed: opening is live once per connection, the loop below for
        // its whole life; inline, the loop's future would keep room for both.
        let (mut send, mut recv) = tokio::select! {
            r = Box::pin(open) => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "opening channel stream failed");
                    return Served::Reconnect;
                }
            },
            _ = state.changed() => return Served::Reconnect,
        };
        if let Some(r) = self.ready.take() {
            let _ = r.send(Ok(()));
        }
        let mut inflight = InFlight::new();
        // Keeps a half-read frame when another branch of the select wins.
        let mut reader = FrameReader::default();
        let mut out: Option<Outgoing> = None;
        // Inbound frames handled since the last turn of the writes.
        let mut reads = 0;

        let served = loop {
            if reads == READ_BURST {
                reads = 0;
                if let Err(e) = self.write_turn(&mut send, &mut out, &mut inflight, live) {
                    tracing::debug!(error = %e, "channel write failed");
                    break Served::Reconnect;
                }
                // Lets the connection send what was written, and other tasks run.
                tokio::task::yield_now().await;
            }
            let can_send = out.is_none() && inflight.len() < live.max_in_flight && !live.is_moving();
            tokio::select! {
                biased;
                m = reader.channel(&mut recv, live.max_frame) => {
                    reads += 1;
                    if let Some(end) = self.on_frame(m, &mut inflight, live) {
                        break end;
                    }
                }
                r = state.changed() => {
                    let same = matches!(&*state.borrow(), ConnState::Connected(l) if l.generation == live.generation);
                    if r.is_err() || !same {
                        break Served::Reconnect;
                    }
                }
                // Cancel-safe (quinn): bytes count as written only when it completes.
                r = write_some(&mut send, out.as_ref()), if out.is_some() => match r {
                    Ok(n) => advance(&mut out, n),
                    Err(e) => {
                        tracing::debug!(error = %e, "channel write failed");
                        break Served::Reconnect;
                    }
                },
                p = next_pending(&mut self.backlog, &mut self.rx), if can_send => {
                    let Some(p) = p else {
                        // Every handle is gone (and nothing is being written:
                        // `can_send`): finish the stream politely.
                        let _ = send.finish();
                        break Served::Dead(ClientError::Closed);
                    };
                    out = self.start_request(p, &mut inflight, live);
                }
            }
        };
        let err = match &served {
            Served::Dead(e) => e.clone(),
            Served::Reconnect => ClientError::ConnectionLost(
                "the connection was lost with the request in flight; it may or may not have been executed"
                    .into(),
            ),
        };
        fail_all(&mut inflight, live, &err);
        served
    }

    /// The writes' turn after a burst of inbound frames (see [`READ_BURST`]):
    /// takes a waiting request if one may be sent, and writes what the stream
    /// accepts right now of the frame being written. Never waits: a write held
    /// back by flow control is continued by the loop's `select!`.
    fn write_turn(
        &mut self,
        send: &mut quinn::SendStream,
        out: &mut Option<Outgoing>,
        inflight: &mut InFlight,
        live: &LiveConn,
    ) -> Result<(), String> {
        let can_send = out.is_none() && inflight.len() < live.max_in_flight && !live.is_moving();
        if can_send {
            // `None` also when every handle is gone: the `select!` sees that.
            if let Some(p) = self.backlog.pop_front().or_else(|| self.rx.try_recv()) {
                *out = self.start_request(p, inflight, live);
            }
        }
        // Polled once: cancel-safe as in the loop (bytes count only when written).
        if let Some(n) = write_some(send, out.as_ref()).now_or_never().transpose()? {
            advance(out, n);
        }
        Ok(())
    }

    /// Takes a request for sending: its frame to write (`None` if it is not
    /// sent here: the caller gave up, the session is moving, or it is too large).
    fn start_request(
        &mut self,
        p: Box<Pending>,
        inflight: &mut InFlight,
        live: &LiveConn,
    ) -> Option<Outgoing> {
        if p.reply.is_closed() {
            return None; // the caller gave up (timeout) before it was sent
        }
        if !live.try_claim() {
            // The session is leaving this connection after a GoAway: keep the
            // request for the next one.
            self.backlog.push_front(p);
            return None;
        }
        let Pending { body, reply } = *p;
        self.next_id += 1;
        let id = self.next_id;
        let frame = ChannelMsg::Request(Request { request_id: id, body }).encode();
        if body_len(&frame) > live.max_frame as usize {
            live.release(1);
            let _ = reply.send(Err(ClientError::RequestTooLarge {
                len: body_len(&frame),
                max: live.max_frame,
            }));
            return None;
        }
        inflight.insert(id, reply);
        Some(Outgoing { frame, written: 0 })
    }

    /// A frame read from the stream (or its end): responses and errors go to
    /// their waiting request, pushes to the event queue. `Some` when serving
    /// this stream is over.
    fn on_frame(
        &self,
        m: Result<Option<ChannelMsg>, ReadError>,
        inflight: &mut InFlight,
        live: &LiveConn,
    ) -> Option<Served> {
        let mut complete = |id: u64, result: Result<ResponseBody, ClientError>| match inflight.remove(&id) {
            Some(r) => {
                live.release(1);
                let _ = r.send(result);
            }
            // Not in flight (e.g. a stale id): ignore, never panic.
            None => tracing::debug!(request_id = id, "answer for a request that is not in flight"),
        };
        match m {
            Ok(Some(ChannelMsg::Response(r))) => complete(r.request_id, Ok(r.body)),
            Ok(Some(ChannelMsg::Error(e))) if e.request_id == 0 => {
                return Some(Served::Dead(ClientError::ChannelClosed(e.into())))
            }
            Ok(Some(ChannelMsg::Error(e))) => complete(e.request_id, Err(ClientError::Server(e.into()))),
            Ok(Some(ChannelMsg::Push(body))) => self.shared.events.emit(Event::Push {
                channel: self.kind,
                body,
            }),
            Ok(Some(ChannelMsg::Open(_) | ChannelMsg::Request(_))) => {
                let e = ClientError::unexpected("client-only frame on a channel");
                return Some(protocol_error(e, inflight, live));
            }
            Err(ReadError::Decode(e)) => {
                return Some(protocol_error(ClientError::protocol(&e), inflight, live))
            }
            Ok(None) if live.conn.close_reason().is_none() => {
                return Some(Served::Dead(ClientError::ChannelClosed(ServerError {
                    code: ErrorCode::Unspecified,
                    message: "the gateway finished the channel".into(),
                    retry_after: None,
                })))
            }
            // The stream or connection failed.
            Ok(None) | Err(ReadError::Io(_)) => return Some(Served::Reconnect),
        }
        None
    }
}

/// The gateway sent something invalid on the channel: the connection is
/// closed with the error's code and the requests in flight fail with it.
fn protocol_error(e: ClientError, inflight: &mut InFlight, live: &LiveConn) -> Served {
    if let ClientError::Protocol { code, .. } = &e {
        live.conn.close(code.0.into(), b"bad channel frame");
    }
    fail_all(inflight, live, &e);
    Served::Reconnect
}

/// Writes what the stream takes of the request being written.
async fn write_some(send: &mut quinn::SendStream, out: Option<&Outgoing>) -> Result<usize, String> {
    match out {
        Some(o) => send.write(&o.frame[o.written..]).await.map_err(|e| e.to_string()),
        None => std::future::pending().await,
    }
}

/// Counts `n` more bytes of the request being written; done once all are.
fn advance(out: &mut Option<Outgoing>, n: usize) {
    if let Some(o) = out.as_mut() {
        o.written += n;
        if o.written == o.frame.len() {
            *out = None;
        }
    }
}

fn fail_all(inflight: &mut InFlight, live: &LiveConn, err: &ClientError) {
    live.release(inflight.len());
    for (_, r) in inflight.drain() {
        let _ = r.send(Err(err.clone()));
    }
}

async fn next_pending(
    backlog: &mut VecDeque<Box<Pending>>,
    rx: &mut mailbox::Receiver<Box<Pending>>,
) -> Option<Box<Pending>> {
    match backlog.pop_front() {
        Some(p) => Some(p),
        None => rx.recv().await,
    }
}

//! One channel stream: OpenChannel, then requests dispatched to the channel's
//! service (concurrently, up to the in-flight limit), responses and pushes out
//! through a bounded writer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use outpost_schema::{ChannelKind, ChannelMsg, ErrorCode, ErrorFrame, Request, Response};
use quinn::{RecvStream, SendStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{var_code, SessionCore, SessionDeps, READ_BURST};
use crate::channels::{ChannelService, ChannelSink, Reply, RequestContext, ServiceError};
use crate::frame_io::{read_frame, FrameReadError};
use crate::metrics::catalogue::{CHANNELS_REFUSED, EMPTY_STREAM};
use crate::metrics::requests;
use crate::session::{retry_after_ms, ChannelId, ChannelStream, FrameError, StreamInput, StreamStep};

type ReadResult = Result<Option<Vec<u8>>, FrameReadError>;
type ReadFuture = Pin<Box<dyn Future<Output = (RecvStream, ReadResult)> + Send>>;

/// What a frame read means for the channel-stream machine; `None` when the
/// stream or connection itself failed (nothing more to say to the client),
/// but for a reset by the client, which the machine counts before the
/// channel opened (the caller decides what it means after).
fn stream_input(read: ReadResult) -> Option<StreamInput> {
    match read {
        Ok(Some(frame)) => Some(StreamInput::Frame(frame)),
        Ok(None) => Some(StreamInput::Finished),
        Err(FrameReadError::Stream(quinn::ReadError::Reset(_))) => Some(StreamInput::Reset),
        Err(FrameReadError::Stream(_)) => None,
        Err(e) => Some(StreamInput::BadFrame(FrameError {
            code: e.code(),
            message: e.to_string(),
        })),
    }
}

/// Reads the next frame; owns the stream so the read survives `select!` turns
/// (a half-read frame is never dropped).
fn next_frame(mut recv: RecvStream, max: u32) -> ReadFuture {
    Box::pin(async move {
        let r = read_frame(&mut recv, max).await;
        (recv, r)
    })
}

/// A helper task of one channel (its writer, its push subscription), aborted
/// when dropped. The session ends its channel tasks by aborting them; without
/// this their helpers would live on detached, and the writer's `SendStream`
/// would keep the QUIC connection, and with it the gateway's UDP socket, open
/// after the gateway stopped (a restart on the same port then fails to bind).
struct Helper<T>(Option<JoinHandle<T>>);

impl<T> Helper<T> {
    fn spawn(f: impl Future<Output = T> + Send + 'static) -> Self
    where
        T: Send + 'static,
    {
        Helper(Some(tokio::spawn(f)))
    }

    /// Waits for the task to finish by itself.
    async fn join(mut self) {
        if let Some(task) = self.0.take() {
            let _ = task.await;
        }
    }

    /// Stops the task and waits until it is gone.
    async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl<T> Drop for Helper<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

pub(super) struct ChannelTask {
    pub shared: Arc<SessionDeps>,
    pub core: Arc<SessionCore>,
    pub player_id: Arc<str>,
    pub home_region: Arc<str>,
    pub region: Arc<str>,
    pub client: Arc<crate::channels::ClientInfo>,
    pub session_id: u64,
    pub max_frame_size: u32,
    /// Moved into the channel's writer, which drops it once it has stopped:
    /// the session waits for every clone to be gone before it closes the
    /// connection (see `WriterStop`).
    pub writer_done: mpsc::Sender<()>,
    /// The session's close code once it closes with one (see `WriterStop`).
    pub closing: watch::Receiver<Option<quinn::VarInt>>,
}

/// A channel once opened: its service, the context its requests run in, the
/// sink its answers go out through, and the helper tasks behind them.
struct OpenChannel {
    id: ChannelId,
    /// The `channel` label of its metrics.
    name: &'static str,
    service: Arc<dyn ChannelService>,
    ctx: RequestContext,
    sink: ChannelSink,
    writer: Helper<()>,
    subscription: Option<Helper<()>>,
}

/// What a dispatched request yields: its id, operation name and start (for
/// the metrics), and the service's answer.
type Answered = (u64, &'static str, Instant, Result<Reply, ServiceError>);

impl ChannelTask {
    /// Drives one channel stream (the state machine is [`ChannelStream`]; this
    /// is only its pump): opens it from the first frame, serves it, then
    /// closes it once its writer has flushed.
    pub async fn run(self, send: SendStream, mut recv: RecvStream) {
        let mut stream = ChannelStream::new(recv.id().index());
        let id = stream.id();
        let router = &self.shared.router;
        // A closed session's stream is refused before anything is read.
        let first = match self.core.with_machine(|m| stream.refuse_unread(m)) {
            Some(refusal) => refusal,
            None => {
                let Some(input) = stream_input(read_frame(&mut recv, self.max_frame_size).await) else {
                    return;
                };
                let (step, has_action) = self.core.with_machine(|m| {
                    let step =
                        stream.handle_input(Instant::now(), m, input, |kind| router.get(kind).is_some());
                    (step, m.has_action())
                });
                if has_action {
                    // A refusal (or a stream ended before any frame) one too
                    // many kicked the session (`Session::channel_failed`).
                    self.core.wake();
                }
                step
            }
        };
        let (kind, service) = match first {
            StreamStep::Opened(kind) => match router.get(kind) {
                Some(service) => (kind, service),
                None => return, // checked by the machine a moment ago
            },
            StreamStep::Refuse { code, message } => return refuse(send, recv, code, &message).await,
            StreamStep::Finish => {
                // The client finished or reset the stream before its first
                // frame: nothing to answer, but a failed channel all the same
                // (PROTOCOL.md §4), so it shows beside the refused ones.
                metrics::counter!(CHANNELS_REFUSED, "code" => EMPTY_STREAM).increment(1);
                return;
            }
            _ => return, // not a first frame's step
        };
        let channel = self.open(id, kind, service, send);
        if let Some(code) = self.serve(&mut stream, &channel, recv).await {
            metrics::counter!("outpost_frames_rejected_total", "code" => format!("{code:?}")).increment(1);
        }
        channel.close().await;
        self.core.with_machine(|m| m.close_channel(id));
    }

    /// Starts an opened channel's writer and push subscription.
    fn open(
        &self,
        id: ChannelId,
        kind: ChannelKind,
        service: Arc<dyn ChannelService>,
        send: SendStream,
    ) -> OpenChannel {
        let name = channel_name(kind);
        metrics::counter!("outpost_channels_opened_total", "channel" => name).increment(1);
        let (tx, rx) = mpsc::channel(self.shared.limits.outbound_queue_frames);
        let room = Arc::new(tokio::sync::Notify::new());
        let stop = WriterStop {
            closing: self.closing.clone(),
            _done: self.writer_done.clone(),
        };
        let writer = Helper::spawn(write_frames(self.core.clone(), id, send, rx, room.clone(), stop));
        let sink = ChannelSink {
            id,
            tx,
            core: self.core.clone(),
            max_frame_size: self.max_frame_size,
            room,
        };
        let ctx = RequestContext {
            player_id: self.player_id.clone(),
            home_region: self.home_region.clone(),
            region: self.region.clone(),
            client: self.client.clone(),
            session_id: self.session_id,
            sink: sink.clone(),
        };
        let subscription = service.subscribe(ctx.clone()).map(Helper::spawn);
        OpenChannel {
            id,
            name,
            service,
            ctx,
            sink,
            writer,
            subscription,
        }
    }

    /// Serves an open channel: feeds each frame read to the stream machine and
    /// does what it decides, and sends each dispatched request's answer as it
    /// finishes, until reading has stopped and every request is answered (or
    /// the stream or the client's queue failed). Returns the code of the
    /// channel-level protocol error that stopped the reading, if any.
    async fn serve(
        &self,
        stream: &mut ChannelStream,
        ch: &OpenChannel,
        recv: RecvStream,
    ) -> Option<ErrorCode> {
        let mut pending = FuturesUnordered::new();
        let mut reading: Option<ReadFuture> = Some(next_frame(recv, self.max_frame_size));
        let mut stop_code: Option<ErrorCode> = None;
        // Frames read since the task last yielded (see `READ_BURST`).
        let mut reads = 0;
        loop {
            if reading.is_none() && pending.is_empty() {
                break;
            }
            if reads == READ_BURST {
                reads = 0;
                // The read in progress stays in `reading` (it owns the stream),
                // so nothing read is lost; the writer, which sends what the
                // frames just read were answered with, gets the thread.
                tokio::task::yield_now().await;
            }
            // Made before the check, so the writer's progress in between wakes it.
            let room = ch.sink.room.notified();
            let backlogged = reading.is_some() && !self.core.with_machine(|m| m.has_room_for_paced(ch.id, 0));
            tokio::select! {
                // Frames are read while the channel's queue is within half its
                // bounds. Beyond, reading waits for the writer: on a busy
                // runtime (another worker thread takes this task between its
                // yields) the writer may not have run, and what one turn of
                // reading adds would otherwise overflow the queue and close the
                // session as a slow consumer although the client reads. Of a
                // client that does not read, nothing more is read (bounded by
                // the QUIC windows): the answers it is already due still
                // overflow the queue, or it idles out, or the channel stalls.
                () = room, if backlogged => {}
                (mut recv, result) = async { reading.as_mut().expect("guarded").await }, if reading.is_some() && !backlogged => {
                    reading = None;
                    reads += 1;
                    // A reset after the opening stops the channel at once,
                    // uncounted (a client may abandon a channel it used).
                    let Some(input) = stream_input(result).filter(|i| !matches!(i, StreamInput::Reset)) else {
                        break;
                    };
                    let (step, has_action) = self.core.with_machine(|m| {
                        (stream.handle_input(Instant::now(), m, input, |_| true), m.has_action())
                    });
                    if has_action {
                        // The frame made the session act (a refusal or a
                        // channel failure over its bound kicked it): the
                        // session loop sends the Kick
                        // and closes the connection. (The refusal's answer,
                        // which a closed session no longer queues, wakes it
                        // too; the kick does not rely on that.)
                        self.core.wake();
                    }
                    match step {
                        StreamStep::Dispatch(req) => pending.push(dispatch(ch, req)),
                        StreamStep::Answer { request_id, code, retry_after, message } => {
                            requests::refused_or_ok(ch.name, requests::UNDISPATCHED, Some(code));
                            let e = ServiceError { code, message: message.into(), retry_after };
                            if send_error(&ch.sink, request_id, &e).is_err() {
                                break;
                            }
                        }
                        StreamStep::Fail { code, message } => {
                            stop_code = Some(channel_error(&ch.sink, &mut recv, code, &message));
                        }
                        StreamStep::Finish | StreamStep::Opened(_) | StreamStep::Refuse { .. } => {}
                    }
                    if stream.wants_frames() {
                        reading = Some(next_frame(recv, self.max_frame_size));
                    }
                }
                Some(answered) = pending.next(), if !pending.is_empty() => {
                    if self.answer(ch, answered).is_err() {
                        break;
                    }
                }
            }
        }
        stop_code
    }

    /// Sends a finished request's answer (the response and its pushes, or its
    /// error) and reports the request done. `Err`: the client's queue is full.
    fn answer(&self, ch: &OpenChannel, answered: Answered) -> Result<(), crate::session::SlowConsumer> {
        let (request_id, op, started, result) = answered;
        self.core.with_machine(|m| m.request_done(ch.id, request_id));
        requests::answered(
            ch.name,
            op,
            started.elapsed(),
            result.as_ref().err().map(|e| e.code),
        );
        match result {
            Ok(reply) => ch
                .sink
                .send(&ChannelMsg::Response(Response {
                    request_id,
                    body: reply.body,
                }))
                .and_then(|()| {
                    let mut pushes = reply.pushes;
                    pushes.try_for_each(|p| ch.sink.push(p))
                }),
            Err(e) => send_error(&ch.sink, request_id, &e),
        }
    }
}

/// Runs an admitted request on the channel's service.
fn dispatch(ch: &OpenChannel, req: Request) -> impl Future<Output = Answered> {
    let (request_id, started) = (req.request_id, Instant::now());
    let op = requests::operation_name(&req.body);
    ch.service
        .handle(ch.ctx.clone(), req.body)
        .map(move |r| (request_id, op, started, r))
}

impl OpenChannel {
    /// Stops the push subscription and lets the writer flush what is queued
    /// and finish the stream.
    async fn close(self) {
        let OpenChannel {
            ctx,
            sink,
            writer,
            subscription,
            ..
        } = self;
        if let Some(task) = subscription {
            task.stop().await;
        }
        drop(ctx);
        drop(sink);
        // The writer flushes what is queued, then finishes the stream.
        writer.join().await;
    }
}

fn send_error(
    sink: &ChannelSink,
    request_id: u64,
    e: &ServiceError,
) -> Result<(), crate::session::SlowConsumer> {
    sink.send(&ChannelMsg::Error(ErrorFrame {
        request_id,
        code: e.code,
        message: e.message.clone(),
        retry_after_ms: retry_after_ms(e.retry_after),
    }))
}

/// A channel-level protocol error: `Error { request_id: 0 }`, stop reading.
fn channel_error(sink: &ChannelSink, recv: &mut RecvStream, code: ErrorCode, message: &str) -> ErrorCode {
    let _ = send_error(sink, 0, &ServiceError::new(code, message));
    let _ = recv.stop(var_code(code));
    code
}

/// Refuses a channel before it was opened: `Error { request_id: 0 }`, finish.
async fn refuse(mut send: SendStream, mut recv: RecvStream, code: ErrorCode, message: &str) {
    metrics::counter!(CHANNELS_REFUSED, "code" => format!("{code:?}")).increment(1);
    let frame = ChannelMsg::Error(ErrorFrame {
        request_id: 0,
        code,
        message: message.into(),
        retry_after_ms: 0,
    });
    let _ = recv.stop(var_code(code));
    if send.write_all(&frame.encode()).await.is_ok() {
        let _ = send.finish();
    }
}

/// How a writer learns that its session is closing, and how the session
/// learns that the writer is done.
pub(super) struct WriterStop {
    /// Set (to the close code) when the session closes with a code.
    closing: watch::Receiver<Option<quinn::VarInt>>,
    /// Dropped when the writer returns.
    _done: mpsc::Sender<()>,
}

impl WriterStop {
    /// Resolves with the close code once the session is closing.
    async fn closing(&mut self) -> quinn::VarInt {
        let code = self.closing.wait_for(Option::is_some).await.ok().and_then(|c| *c);
        match code {
            Some(code) => code,
            // The session is gone without a close code: wait to be aborted.
            None => std::future::pending().await,
        }
    }
}

/// Writes queued frames in order; each written frame leaves the session's
/// outbound accounting. Ends when every sender is gone, then finishes the stream.
///
/// When the session closes with a code first, the stream is **reset** with it,
/// discarding whatever is still queued in quinn. Why: a closed quinn
/// connection processes no more ACKs, yet quinn-proto 0.11 still treats
/// stream data it could send as ack-eliciting and so holds the
/// CONNECTION_CLOSE behind the congestion window, which that data (written for
/// a client that stopped reading) has filled. The close then never left, the
/// connection was forgotten after 3 PTO, and the client only learnt from a
/// stateless reset or its own idle timeout (issue #12, defect 2;
/// `tests/kicks.rs`). With nothing left to send, the close goes out at once.
async fn write_frames(
    core: Arc<SessionCore>,
    id: ChannelId,
    mut send: SendStream,
    mut rx: mpsc::Receiver<Vec<u8>>,
    room: Arc<tokio::sync::Notify>,
    mut stop: WriterStop,
) {
    loop {
        let frame = tokio::select! {
            biased;
            code = stop.closing() => {
                let _ = send.reset(code);
                return;
            }
            frame = rx.recv() => frame,
        };
        let Some(frame) = frame else { break };
        let len = frame.len();
        tokio::select! {
            biased;
            code = stop.closing() => {
                let _ = send.reset(code);
                return;
            }
            written = send.write_all(&frame) => if written.is_err() {
                return;
            },
        }
        core.with_machine(|m| m.dequeued(id, len));
        room.notify_one();
    }
    let _ = send.finish();
}

fn channel_name(kind: ChannelKind) -> &'static str {
    kind.variant_name().unwrap_or("unknown")
}

//! Client lifecycle for the C ABI: connect, poll, close, free, and the
//! plumbing that turns an async SDK call into a request id now and an
//! `OUTPOST_EVENT_KIND_RESPONSE` later.
//!
//! Threads: each client owns a private tokio runtime with one worker thread
//! (named `outpost-sdk`) plus tokio's blocking pool, started by
//! `outpost_client_connect` and shut down by `outpost_client_free`. All network
//! I/O, timers, reconnects and request tasks run there. Results reach the game
//! only through `outpost_poll`, on the thread that polls: no SDK code ever
//! calls into foreign code.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_client::{Client, Event, Events, InventoryClient, LiveClient, MatchmakingClient, StateClient};
use tokio::sync::{watch, Notify, OnceCell};

use crate::abi;
use crate::event::{from_sdk, OutpostEvent, OutpostEventKind, OwnedEvent};
use crate::handles::{self, OutpostClient, OutpostConfig};
use crate::status::{guard, FfiError, FfiResult, OutpostStatus};

/// Requests of one client that may be in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 1024;
/// How long `outpost_client_free` waits for a clean logout.
const FREE_CLOSE_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub(crate) enum Conn {
    Pending,
    Ready(Client),
    Failed(FfiError),
}

/// What request tasks share with the handle.
pub(crate) struct Shared {
    pub conn: watch::Sender<Conn>,
    events: Mutex<Option<Events>>,
    completions: Mutex<VecDeque<OwnedEvent>>,
    in_flight: AtomicUsize,
    next_request: AtomicU64,
    closing: AtomicBool,
    /// Ends a connect still under way (e.g. waiting in the login queue).
    stop_connect: Notify,
    pub state: OnceCell<StateClient>,
    pub inventory: OnceCell<InventoryClient>,
    pub matchmaking: OnceCell<MatchmakingClient>,
    pub live: Mutex<Option<LiveClient>>,
}

impl Shared {
    /// A client's shared state before its connect started.
    fn new() -> Arc<Self> {
        let (conn, _) = watch::channel(Conn::Pending);
        Arc::new(Shared {
            conn,
            events: Mutex::new(None),
            completions: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            next_request: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            stop_connect: Notify::new(),
            state: OnceCell::new(),
            inventory: OnceCell::new(),
            matchmaking: OnceCell::new(),
            live: Mutex::new(None),
        })
    }

    /// The connected client, once the first login finished.
    pub async fn client(&self) -> FfiResult<Client> {
        let mut rx = self.conn.subscribe();
        let conn = rx
            .wait_for(|c| !matches!(c, Conn::Pending))
            .await
            .map_err(|_| FfiError::new(OutpostStatus::Closed, "client freed"))?
            .clone();
        match conn {
            Conn::Ready(c) => Ok(c),
            Conn::Failed(e) => Err(e),
            Conn::Pending => unreachable!("waited for a non-pending state"),
        }
    }

    fn complete(&self, ev: OwnedEvent) {
        self.completions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(ev);
    }
}

/// A client as the handle table keeps it.
pub(crate) struct ClientHandle {
    /// Taken by `outpost_client_free`.
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    spawner: tokio::runtime::Handle,
    pub shared: Arc<Shared>,
    /// Events not yet handed out (one SDK event can become several).
    pending: Mutex<VecDeque<OwnedEvent>>,
    /// The first `Connected`, when it was read before its client was handed
    /// over (it names the player); delivered with the next poll after that.
    held: Mutex<Option<Event>>,
    /// The memory behind the pointers of the last `outpost_poll`.
    batch: Mutex<Vec<OwnedEvent>>,
}

/// What a successful request puts into its Response event.
#[derive(Debug, Default)]
pub(crate) struct Payload {
    pub num0: u64,
    pub num1: u64,
    pub text: Vec<u8>,
    pub data: Vec<u8>,
}

impl ClientHandle {
    fn new(rt: tokio::runtime::Runtime, shared: Arc<Shared>) -> Self {
        ClientHandle {
            spawner: rt.handle().clone(),
            rt: Mutex::new(Some(rt)),
            shared,
            pending: Mutex::new(VecDeque::new()),
            held: Mutex::new(None),
            batch: Mutex::new(Vec::new()),
        }
    }

    /// Starts `work` on the client's runtime and writes its request id to
    /// `out_id`; the result arrives as `OUTPOST_EVENT_KIND_RESPONSE`.
    pub fn request<F, Fut>(&self, out_id: *mut u64, work: F) -> FfiResult<()>
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = FfiResult<Payload>> + Send + 'static,
    {
        abi::check_out(out_id, "request_id")?;
        let shared = self.shared.clone();
        if shared.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(FfiError::new(
                OutpostStatus::TooManyRequests,
                format!("{MAX_IN_FLIGHT} requests in flight: poll for their responses first"),
            ));
        }
        let id = shared.next_request.fetch_add(1, Ordering::Relaxed);
        abi::write(out_id, id, "request_id")?;
        let fut = work(shared.clone());
        self.spawner.spawn(async move {
            let ev = match fut.await {
                Ok(p) => OwnedEvent {
                    request_id: id,
                    num0: p.num0,
                    num1: p.num1,
                    text: p.text,
                    data: p.data,
                    ..OwnedEvent::new(OutpostEventKind::Response)
                },
                Err(e) => OwnedEvent {
                    request_id: id,
                    ..OwnedEvent::error(OutpostEventKind::Response, &e)
                },
            };
            shared.complete(ev);
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        Ok(())
    }

    /// The connected client, now, without waiting.
    pub fn ready(&self) -> FfiResult<Client> {
        match &*self.shared.conn.borrow() {
            Conn::Ready(c) => Ok(c.clone()),
            Conn::Pending => Err(FfiError::new(OutpostStatus::NotReady, "not logged in yet")),
            Conn::Failed(e) => Err(e.clone()),
        }
    }

    fn next_event(&self, pending: &mut VecDeque<OwnedEvent>) -> Option<OwnedEvent> {
        if let Some(ev) = pending.pop_front() {
            return Some(ev);
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let sdk = held.take().or_else(|| {
            self.shared
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|e| e.try_recv())
        });
        if let Some(ev) = sdk {
            if matches!(ev, Event::Connected { .. }) && matches!(*self.shared.conn.borrow(), Conn::Pending) {
                // The login finished; the connect task hands its client over
                // in a moment.
                *held = Some(ev);
                return None;
            }
            drop(held);
            let client = self.ready().ok();
            let events = from_sdk(ev, || client.map(|c| c.player_id()).unwrap_or_default());
            if events.iter().any(|e| e.kind == OutpostEventKind::Closed as u32) {
                // The session ended for good (kicked, gave up reconnecting, closed).
                self.shared.closing.store(true, Ordering::Release);
            }
            pending.extend(events);
            return pending.pop_front().or_else(|| self.next_event(pending));
        }
        self.shared
            .completions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

/// Starts connecting with `config` (which stays owned by the caller) and
/// writes the new client's handle to `*out`. Returns at once: the QUIC
/// handshake and login run on the client's own runtime thread; the result
/// arrives through `outpost_poll` as `OUTPOST_EVENT_KIND_CONNECTED` (logged in) or
/// `OUTPOST_EVENT_KIND_CLOSED` (failed: `status` `OUTPOST_STATUS_CONNECT`,
/// `_REJECTED` with the gateway's `code`, `_CONFIG`, ...). Requests may be
/// started before the login finished: they wait for it. Errors returned here
/// directly: an invalid or incomplete configuration (`OUTPOST_STATUS_CONFIG`,
/// `_INVALID_HANDLE`), `_NULL_POINTER`. Ownership: the caller owns the client
/// handle and must free it with `outpost_client_free`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_client_connect(config: OutpostConfig, out: *mut OutpostClient) -> OutpostStatus {
    guard(|| {
        abi::check_out(out, "out")?;
        let cfg = handles::config(config)?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .build()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("outpost-sdk")
            .enable_all()
            .build()
            .map_err(|e| {
                FfiError::new(
                    OutpostStatus::Internal,
                    format!("cannot start the SDK runtime: {e}"),
                )
            })?;
        let shared = Shared::new();
        let task_shared = shared.clone();
        // The event subscription is taken before the login starts, so that
        // queue positions reach `outpost_poll` while the login waits; a login
        // that fails delivers its `Closed` through it as well.
        let connect = {
            let _rt = rt.enter();
            Client::connect_with_events(cfg)
        };
        match connect {
            Ok((events, connect)) => {
                *shared.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(events);
                rt.spawn(async move {
                    let connected = tokio::select! {
                        r = connect => r,
                        () = task_shared.stop_connect.notified() => {
                            let e = FfiError::new(OutpostStatus::Closed, "closed while connecting");
                            task_shared.complete(OwnedEvent::error(OutpostEventKind::Closed, &e));
                            task_shared.conn.send_replace(Conn::Failed(e));
                            return;
                        }
                    };
                    match connected {
                        Ok(client) => {
                            task_shared.conn.send_replace(Conn::Ready(client.clone()));
                            if task_shared.closing.load(Ordering::Acquire) {
                                client.close().await;
                            }
                        }
                        Err(e) => {
                            task_shared.conn.send_replace(Conn::Failed(FfiError::from(e)));
                        }
                    }
                });
            }
            Err(e) => {
                let e = FfiError::from(e);
                shared.complete(OwnedEvent::error(OutpostEventKind::Closed, &e));
                shared.conn.send_replace(Conn::Failed(e));
            }
        }
        let handle = ClientHandle::new(rt, shared);
        abi::write(out, handles::insert_client(Arc::new(handle)), "out")
    })
}

/// Moves up to `capacity` queued events into `events[0..]` and their number
/// into `*count`; never waits. Call it once per frame (more often is fine).
/// The `text`/`data` pointers of the events written stay valid until the next
/// `outpost_poll` or `outpost_client_free` of this client (the SDK owns that
/// memory). `events` may be NULL when `capacity` is 0. Thread-safety: any
/// thread, but poll a client from one thread at a time (a second poll
/// invalidates the pointers the first handed out).
#[no_mangle]
pub extern "C" fn outpost_poll(
    client: OutpostClient,
    events: *mut OutpostEvent,
    capacity: usize,
    count: *mut usize,
) -> OutpostStatus {
    guard(|| {
        abi::check_out(count, "count")?;
        if capacity > 0 {
            abi::check_out(events, "events")?;
        }
        let h = handles::client(client)?;
        let mut batch = h.batch.lock().unwrap_or_else(|p| p.into_inner());
        batch.clear();
        {
            let mut pending = h.pending.lock().unwrap_or_else(|p| p.into_inner());
            while batch.len() < capacity {
                match h.next_event(&mut pending) {
                    Some(ev) => batch.push(ev),
                    None => break,
                }
            }
        }
        let views: Vec<OutpostEvent> = batch.iter().map(OwnedEvent::view).collect();
        abi::write_array(&views, events, capacity, "events")?;
        abi::write(count, views.len(), "count")
    })
}

/// Starts logging out: pending telemetry is sent (at most 1 s), the connection
/// is closed cleanly and no reconnect follows (a connect still under way, e.g.
/// waiting in the login queue, stops waiting); `OUTPOST_EVENT_KIND_CLOSED` (status
/// `OUTPOST_STATUS_CLOSED`) arrives through `outpost_poll` when done. Requests
/// still in flight fail with `OUTPOST_STATUS_CLOSED`. Returns at once;
/// idempotent. The handle stays valid until `outpost_client_free`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_client_close(client: OutpostClient) -> OutpostStatus {
    guard(|| {
        let h = handles::client(client)?;
        h.shared.closing.store(true, Ordering::Release);
        if let Ok(c) = h.ready() {
            h.spawner.spawn(async move { c.close().await });
        } else {
            // A connect still under way (in the login queue, say) stops.
            h.shared.stop_connect.notify_one();
        }
        Ok(())
    })
}

/// Frees a client: logs out if still connected (blocking for at most about
/// 2 s; call `outpost_client_close` and wait for `OUTPOST_EVENT_KIND_CLOSED` first to
/// avoid that), stops its runtime thread, and releases all its memory,
/// including the event data of the last poll. The handle is invalid afterwards
/// (`OUTPOST_STATUS_INVALID_HANDLE`). Freeing 0 is a no-op. Thread-safety: any
/// thread, except that no other call on this client may still be using the
/// pointers of its last poll.
#[no_mangle]
pub extern "C" fn outpost_client_free(client: OutpostClient) -> OutpostStatus {
    guard(|| {
        if client == 0 {
            return Ok(());
        }
        let h = handles::remove_client(client)?;
        let rt = h.rt.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rt) = rt {
            if let Ok(c) = h.ready() {
                rt.block_on(async {
                    let _ = tokio::time::timeout(FREE_CLOSE_LIMIT, c.close()).await;
                });
            }
            // Drop every SDK object before the runtime goes away.
            h.shared
                .conn
                .send_replace(Conn::Failed(FfiError::new(OutpostStatus::Closed, "client freed")));
            *h.shared.events.lock().unwrap_or_else(|p| p.into_inner()) = None;
            *h.shared.live.lock().unwrap_or_else(|p| p.into_inner()) = None;
            rt.shutdown_timeout(Duration::from_millis(500));
        }
        Ok(())
    })
}

/// Where a client is: 0 connecting (first login under way), 1 connected,
/// 2 reconnecting (a login was made before; requests wait for the next one),
/// 3 closed (closed, failed, or ended for good as of the last `outpost_poll`).
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_client_state(client: OutpostClient, out: *mut u32) -> OutpostStatus {
    guard(|| {
        abi::check_out(out, "out")?;
        let h = handles::client(client)?;
        let state = match &*h.shared.conn.borrow() {
            Conn::Pending => 0,
            Conn::Failed(_) => 3,
            Conn::Ready(c) if c.is_connected() => 1,
            Conn::Ready(_) if h.shared.closing.load(Ordering::Acquire) => 3,
            Conn::Ready(_) => 2,
        };
        abi::write(out, state, "out")
    })
}

/// Copies the logged-in player's id (UTF-8, not NUL-terminated) into `buf`
/// (`cap` bytes) and its length into `*len`. `OUTPOST_STATUS_NOT_READY` before
/// the first login; `OUTPOST_STATUS_BUFFER_TOO_SMALL` (with the required length
/// in `*len`) when `cap` is too small: pass `buf` NULL, `cap` 0 to ask the
/// length. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_client_player_id(
    client: OutpostClient,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> OutpostStatus {
    guard(|| {
        let h = handles::client(client)?;
        let id = h.ready()?.player_id();
        abi::copy_out(id.as_bytes(), buf, cap, len, "player id")
    })
}

/// Measures one round trip to the gateway. Writes the request id to
/// `*request_id`; the Response's `num0` is the round-trip time in microseconds.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_ping(client: OutpostClient, request_id: *mut u64) -> OutpostStatus {
    guard(|| {
        handles::client(client)?.request(request_id, |s| async move {
            let rtt = s.client().await?.ping().await?;
            Ok(Payload {
                num0: u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
                ..Payload::default()
            })
        })
    })
}

/// Test hook: drops the current connection abruptly, as a network loss would;
/// with auto-reconnect the SDK reconnects and resumes (`OUTPOST_EVENT_KIND_DISCONNECTED`,
/// `_RECONNECTING`, `_CONNECTED` with `num0` 1). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_debug_kill_connection(client: OutpostClient) -> OutpostStatus {
    guard(|| {
        handles::client(client)?.ready()?.debug_kill_connection();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outpost_client::{ClientError, ErrorCode};

    use super::*;
    use crate::{outpost_last_error, outpost_last_retry_after_ms};

    /// A client handle whose login the gateway refused with `e`.
    fn refused(e: ClientError) -> OutpostClient {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let shared = Shared::new();
        shared.conn.send_replace(Conn::Failed(FfiError::from(e)));
        handles::insert_client(Arc::new(ClientHandle::new(rt, shared)))
    }

    fn last_error() -> String {
        let mut buf = [0u8; 512];
        let mut len = 0;
        assert_eq!(
            outpost_last_error(buf.as_mut_ptr(), buf.len(), &mut len),
            OutpostStatus::Ok
        );
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }

    /// A synchronous call that returns REJECTED after a refused login exposes
    /// the refusal's retry hint as `outpost_last_retry_after_ms`, beside its
    /// message; the next failed call replaces both, successful calls neither,
    /// and each thread has its own.
    #[test]
    fn a_rejected_synchronous_call_exposes_the_retry_hint_until_the_next_error() {
        let busy = refused(ClientError::Rejected {
            code: ErrorCode::ServerBusy,
            message: "gateway at capacity".into(),
            retry_after: Some(Duration::from_millis(2_345)),
        });
        let mut len = 0;
        let player_id =
            |client, len: &mut usize| outpost_client_player_id(client, std::ptr::null_mut(), 0, len);
        assert_eq!(player_id(busy, &mut len), OutpostStatus::Rejected);
        assert_eq!(outpost_last_retry_after_ms(), 2_345);
        assert!(last_error().contains("gateway at capacity"), "{}", last_error());
        // Another thread has its own (none yet).
        assert_eq!(
            std::thread::spawn(|| outpost_last_retry_after_ms())
                .join()
                .unwrap(),
            0
        );
        // A successful call changes neither the hint nor the message; nor does
        // an error of outpost_last_error itself.
        let mut buf = [0u8; 64];
        assert_eq!(
            crate::outpost_new_idempotency_key(buf.as_mut_ptr(), buf.len(), &mut len),
            OutpostStatus::Ok
        );
        assert_eq!(
            outpost_last_error(std::ptr::null_mut(), 0, std::ptr::null_mut()),
            OutpostStatus::NullPointer
        );
        assert_eq!(outpost_last_retry_after_ms(), 2_345);
        // A failed call without a hint resets it, with its own message.
        assert_eq!(player_id(0, &mut len), OutpostStatus::InvalidHandle);
        assert_eq!(outpost_last_retry_after_ms(), 0);
        // A refusal without a hint (a bad credential) is REJECTED with 0.
        let denied = refused(ClientError::Rejected {
            code: ErrorCode::BadCredentials,
            message: "bad credentials".into(),
            retry_after: None,
        });
        assert_eq!(player_id(busy, &mut len), OutpostStatus::Rejected);
        assert_eq!(outpost_last_retry_after_ms(), 2_345);
        assert_eq!(player_id(denied, &mut len), OutpostStatus::Rejected);
        assert_eq!(outpost_last_retry_after_ms(), 0);
        for client in [busy, denied] {
            assert_eq!(outpost_client_free(client), OutpostStatus::Ok);
        }
    }
}

//! Status codes every fallible call returns, and the thread-local last error
//! message and retry hint behind `outpost_last_error` and
//! `outpost_last_retry_after_ms`.

use std::cell::{Cell, RefCell};

use outpost_client::{ClientError, ErrorCode};

/// What a call (or an asynchronous request, in its `OUTPOST_EVENT_KIND_RESPONSE`)
/// came to. `OUTPOST_STATUS_OK` is 0; every other value is an error whose
/// message `outpost_last_error` returns on the calling thread (for a request
/// answered later, the message is the event's `text`). Codes below 100 are
/// caller mistakes detected at the boundary; 100 and above are outcomes of the
/// SDK or the gateway. New codes may be appended; treat unknown ones as errors.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutpostStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL (or a NULL buffer with a non-zero length).
    NullPointer = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// An argument was out of range or malformed (e.g. an unparsable gateway address).
    InvalidArgument = 3,
    /// The handle is 0, was never issued, or was already freed.
    InvalidHandle = 4,
    /// The output buffer is too small; the required length was written to the
    /// length out-parameter and nothing else was written.
    BufferTooSmall = 5,
    /// The call needs a state the handle is not in yet (e.g. flag reads before
    /// `outpost_live_start` completed, the player id before login).
    NotReady = 6,
    /// Too many requests of this client are in flight (limit 1024); poll and retry.
    TooManyRequests = 7,
    /// The configuration is unusable (no gateways, bad CA PEM, ...).
    Config = 100,
    /// No QUIC/TLS connection could be established to any gateway. Retryable.
    Connect = 101,
    /// The gateway refused the login; `code` is the gateway's error code, and
    /// an event's `retry_after_ms` the wait it asked for (e.g. `ServerBusy`,
    /// `Draining`), 0 if none. Also a gateway that refused the connection
    /// itself, overloaded (QUIC CONNECTION_REFUSED): `code` 300 ServerBusy,
    /// and `retry_after_ms` the delay (1-3 s) to wait before trying again.
    /// Synchronous calls that need the login (`outpost_client_player_id`,
    /// ...) return it too once the login was refused; their hint is
    /// `outpost_last_retry_after_ms()`.
    Rejected = 102,
    /// The gateway ended the session; `code` says why.
    Kicked = 103,
    /// The gateway answered the request with an error; `code` says which
    /// (`retry_after_ms` on the event: the wait it asked for, e.g. `RateLimited`).
    Server = 104,
    /// A compare-and-set found another version, or a consume found too small a
    /// balance (the gateway's `Conflict`): re-read and retry.
    Conflict = 105,
    /// The gateway closed the channel of the request.
    ChannelClosed = 106,
    /// No answer within the configured request timeout. Retryable.
    Timeout = 107,
    /// The connection was lost while the request was under way; whether it
    /// was executed is unknown. Retryable (the SDK reconnects by itself).
    ConnectionLost = 108,
    /// The client was closed.
    Closed = 109,
    /// The gateway violated the protocol.
    Protocol = 110,
    /// The request exceeds the negotiated maximum frame size.
    RequestTooLarge = 111,
    /// A bug in the SDK (a caught panic). Please report it with the message.
    Internal = 199,
}

/// An error at the boundary: a status and its message.
#[derive(Debug, Clone)]
pub(crate) struct FfiError {
    pub status: OutpostStatus,
    pub code: u32,
    pub message: String,
    /// [`ClientError::retry_after`] in ms (at least 1), 0 for none.
    pub retry_after_ms: u32,
}

impl FfiError {
    pub fn new(status: OutpostStatus, message: impl Into<String>) -> Self {
        FfiError {
            status,
            code: 0,
            message: message.into(),
            retry_after_ms: 0,
        }
    }
}

/// A retry hint in ms for the ABI: 0 means none, so a hint under 1 ms is 1,
/// and one beyond `u32::MAX` ms (49 days) is `u32::MAX`.
fn retry_after_ms(d: Option<std::time::Duration>) -> u32 {
    d.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1))
}

impl From<ClientError> for FfiError {
    fn from(e: ClientError) -> Self {
        let message = e.to_string();
        let retry_after_ms = retry_after_ms(e.retry_after());
        let (status, code) = match &e {
            ClientError::Rejected { code, .. } => (OutpostStatus::Rejected, *code),
            ClientError::Kicked { code, .. } => (OutpostStatus::Kicked, *code),
            ClientError::Server(s) if s.code == ErrorCode::Conflict => (OutpostStatus::Conflict, s.code),
            ClientError::Server(s) => (OutpostStatus::Server, s.code),
            ClientError::ChannelClosed(s) => (OutpostStatus::ChannelClosed, s.code),
            ClientError::Timeout => (OutpostStatus::Timeout, ErrorCode(0)),
            ClientError::ConnectionLost(_) => (OutpostStatus::ConnectionLost, ErrorCode(0)),
            ClientError::Closed => (OutpostStatus::Closed, ErrorCode(0)),
            ClientError::Protocol { code, .. } => (OutpostStatus::Protocol, *code),
            ClientError::RequestTooLarge { .. } => (OutpostStatus::RequestTooLarge, ErrorCode(0)),
            ClientError::Connect(_) => (OutpostStatus::Connect, ErrorCode(0)),
            ClientError::Config(_) => (OutpostStatus::Config, ErrorCode(0)),
        };
        FfiError {
            status,
            code: u32::from(code.0),
            message,
            retry_after_ms,
        }
    }
}

pub(crate) type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The `retry_after_ms` of the error behind `LAST_ERROR`: always set with it.
    static LAST_RETRY_AFTER_MS: Cell<u32> = const { Cell::new(0) };
}

/// Records the calling thread's last error: its message and its retry hint
/// (0 for none), both replaced, so a hint never outlives its error.
pub(crate) fn set_last_error(message: &str, retry_after_ms: u32) {
    LAST_ERROR.with(|m| {
        let mut m = m.borrow_mut();
        m.clear();
        m.extend_from_slice(message.as_bytes());
    });
    LAST_RETRY_AFTER_MS.with(|r| r.set(retry_after_ms));
}

pub(crate) fn with_last_error<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    LAST_ERROR.with(|m| f(&m.borrow()))
}

/// The retry hint of the calling thread's last error, 0 for none.
pub(crate) fn last_retry_after_ms() -> u32 {
    LAST_RETRY_AFTER_MS.with(Cell::get)
}

/// Runs the body of an exported function: turns its error into a status and
/// the thread's last error message, and a panic into `Internal` (a panic must
/// never unwind into foreign code).
pub(crate) fn guard(body: impl FnOnce() -> FfiResult<()>) -> OutpostStatus {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => OutpostStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.message, e.retry_after_ms);
            e.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(
                &format!("internal error in the Outpost SDK (please report): {what}"),
                0,
            );
            OutpostStatus::Internal
        }
    }
}

/// The constant name of a status (`"OUTPOST_STATUS_CONFLICT"`), for logs.
pub(crate) fn status_name(status: i32) -> &'static str {
    match status {
        0 => "OUTPOST_STATUS_OK\0",
        1 => "OUTPOST_STATUS_NULL_POINTER\0",
        2 => "OUTPOST_STATUS_INVALID_UTF8\0",
        3 => "OUTPOST_STATUS_INVALID_ARGUMENT\0",
        4 => "OUTPOST_STATUS_INVALID_HANDLE\0",
        5 => "OUTPOST_STATUS_BUFFER_TOO_SMALL\0",
        6 => "OUTPOST_STATUS_NOT_READY\0",
        7 => "OUTPOST_STATUS_TOO_MANY_REQUESTS\0",
        100 => "OUTPOST_STATUS_CONFIG\0",
        101 => "OUTPOST_STATUS_CONNECT\0",
        102 => "OUTPOST_STATUS_REJECTED\0",
        103 => "OUTPOST_STATUS_KICKED\0",
        104 => "OUTPOST_STATUS_SERVER\0",
        105 => "OUTPOST_STATUS_CONFLICT\0",
        106 => "OUTPOST_STATUS_CHANNEL_CLOSED\0",
        107 => "OUTPOST_STATUS_TIMEOUT\0",
        108 => "OUTPOST_STATUS_CONNECTION_LOST\0",
        109 => "OUTPOST_STATUS_CLOSED\0",
        110 => "OUTPOST_STATUS_PROTOCOL\0",
        111 => "OUTPOST_STATUS_REQUEST_TOO_LARGE\0",
        199 => "OUTPOST_STATUS_INTERNAL\0",
        _ => "OUTPOST_STATUS_UNKNOWN\0",
    }
}

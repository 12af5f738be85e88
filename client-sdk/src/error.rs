//! The SDK's one error type. Every failure a caller can see is a
//! [`ClientError`] value; the SDK never panics on what a gateway sends.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_schema::{DecodeError, ErrorCode, ErrorFrame};
use thiserror::Error;

/// An `Error { code, message, retry_after_ms }` frame the gateway answered a
/// request with (or, with request id 0, a whole channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: ErrorCode,
    pub message: String,
    /// Do not retry before this (from `retry_after_ms`; `None` when 0).
    pub retry_after: Option<Duration>,
}

impl From<ErrorFrame> for ServerError {
    fn from(e: ErrorFrame) -> Self {
        Self {
            code: e.code,
            message: e.message,
            retry_after: ms(e.retry_after_ms),
        }
    }
}

pub(crate) fn ms(v: u32) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(u64::from(v)))
}

/// Everything that can go wrong in the SDK.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ClientError {
    /// The gateway refused the login (`Reject`). `retry_after` is the earliest
    /// time a new attempt is allowed.
    ///
    /// Also a gateway that refused the connection itself, before any TLS
    /// (QUIC CONNECTION_REFUSED: its receive path is overloaded, PROTOCOL.md
    /// 1), when no other gateway of the list let the client in: `code` is
    /// `ServerBusy` and `retry_after` a delay the SDK picked, at least 1 s
    /// (1–3 s, jittered so that clients refused together come back apart).
    #[error("login rejected ({code:?}): {message}")]
    Rejected {
        code: ErrorCode,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The gateway ended the session (`Kick`).
    #[error("kicked by the gateway ({code:?}): {message}")]
    Kicked { code: ErrorCode, message: String },
    /// The gateway answered a request with an `Error` frame.
    ///
    /// `RateLimited` (the session's request rate) is not retried by the SDK
    /// (inventory writes aside): retry after [`ClientError::retry_after`].
    /// A session that keeps sending requests the gateway refuses, thousands
    /// a second, is kicked with `RateLimited` (PROTOCOL.md section 4,
    /// "Refused requests"). The SDK never gets `TooManyInFlight`: it queues
    /// requests beyond the channel's in-flight limit.
    #[error("server error ({:?}): {}", .0.code, .0.message)]
    Server(ServerError),
    /// The channel was closed by the gateway (`Error` with request id 0, e.g.
    /// `UnknownChannel`); the `Channel` handle is unusable from now on.
    #[error("channel closed by the gateway ({:?}): {}", .0.code, .0.message)]
    ChannelClosed(ServerError),
    /// No answer within the configured time limit.
    #[error("timed out")]
    Timeout,
    /// The connection was lost while the operation was under way, or no
    /// connection was available. Retryable: the SDK reconnects by itself
    /// (when `auto_reconnect` is on); whether the request was executed by the
    /// gateway is unknown.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The client was closed (`close()`, all handles dropped, or the session
    /// ended for good).
    #[error("client closed")]
    Closed,
    /// The gateway violated the protocol; the connection was closed with `code`.
    #[error("protocol error ({code:?}): {detail}")]
    Protocol { code: ErrorCode, detail: String },
    /// A request was too large for the negotiated maximum frame size.
    #[error("request of {len} bytes exceeds the negotiated maximum frame size of {max}")]
    RequestTooLarge { len: usize, max: u32 },
    /// No QUIC/TLS connection could be established to any gateway.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The configuration is unusable (no gateways, bad CA file, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Timeout | ClientError::ConnectionLost(_) | ClientError::Connect(_) => true,
            ClientError::Rejected { code, .. } => retryable_code(*code),
            ClientError::Server(e) => retryable_code(e.code),
            _ => false,
        }
    }

    /// The minimum wait the gateway asked for before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Rejected { retry_after, .. } => *retry_after,
            ClientError::Server(e) | ClientError::ChannelClosed(e) => e.retry_after,
            _ => None,
        }
    }

    pub(crate) fn protocol(e: &DecodeError) -> Self {
        ClientError::Protocol {
            code: e.code(),
            detail: e.to_string(),
        }
    }

    pub(crate) fn unexpected(what: &str) -> Self {
        ClientError::Protocol {
            code: ErrorCode::UnexpectedFrame,
            detail: what.to_owned(),
        }
    }
}

/// The least a client waits after a gateway refused its connection (QUIC
/// CONNECTION_REFUSED): the gateway's receive path is behind, and a retry
/// within the same second only adds to what it cannot read.
pub(crate) const REFUSED_RETRY_FLOOR: Duration = Duration::from_secs(1);
/// Uniform jitter on top of [`REFUSED_RETRY_FLOOR`]: a refused crowd comes
/// back spread over this much instead of all at once.
pub(crate) const REFUSED_RETRY_JITTER: Duration = Duration::from_secs(2);

/// The error of a connection `gateway` refused (QUIC CONNECTION_REFUSED):
/// `ServerBusy` with a `retry_after` of [`REFUSED_RETRY_FLOOR`] plus `unit`
/// (uniform in `[0, 1)`) of [`REFUSED_RETRY_JITTER`].
pub(crate) fn refused(gateway: SocketAddr, unit: f64) -> ClientError {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let retry_after = REFUSED_RETRY_FLOOR + REFUSED_RETRY_JITTER.mul_f64(unit);
    ClientError::Rejected {
        code: ErrorCode::ServerBusy,
        message: format!(
            "{gateway} refused the connection: the gateway is overloaded (QUIC CONNECTION_REFUSED); retry after {} ms",
            retry_after.as_millis()
        ),
        retry_after: Some(retry_after),
    }
}

/// Codes after which the same request may succeed later (PROTOCOL.md section 5).
pub(crate) fn retryable_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ServerBusy
            | ErrorCode::RateLimited
            | ErrorCode::TooManyInFlight
            | ErrorCode::SlowConsumer
            | ErrorCode::Draining
            | ErrorCode::IdleTimeout
            | ErrorCode::ShuttingDown
            | ErrorCode::Internal
            | ErrorCode::Unavailable
            | ErrorCode::Timeout
            | ErrorCode::ResumeRejected
    )
}

/// Kick reasons after which the SDK must not reconnect by itself (PROTOCOL.md 3.5).
pub(crate) fn is_final_kick(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::ReplacedByNewLogin | ErrorCode::KickedByOperator)
}

/// Reject reasons a different attempt with the same credentials at the same
/// gateways cannot fix: every authentication code (2xx, including codes appended
/// later such as a wrong-region refusal) except `ResumeRejected`, and an
/// unsupported protocol version.
pub(crate) fn is_fatal_reject(code: ErrorCode) -> bool {
    code == ErrorCode::UnsupportedProtocolVersion
        || ((200..300).contains(&code.0) && code != ErrorCode::ResumeRejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        assert!(is_fatal_reject(ErrorCode::BadCredentials));
        assert!(is_fatal_reject(ErrorCode::TokenExpired));
        assert!(
            is_fatal_reject(ErrorCode(207)),
            "codes appended to 2xx are auth failures too"
        );
        assert!(!is_fatal_reject(ErrorCode::ResumeRejected));
        assert!(!is_fatal_reject(ErrorCode::ServerBusy));
        assert!(is_final_kick(ErrorCode::ReplacedByNewLogin));
        assert!(!is_final_kick(ErrorCode::SlowConsumer));
        let busy = ClientError::Rejected {
            code: ErrorCode::ServerBusy,
            message: String::new(),
            retry_after: Some(Duration::from_millis(5)),
        };
        assert!(busy.is_retryable());
        assert_eq!(busy.retry_after(), Some(Duration::from_millis(5)));
        assert!(ClientError::ConnectionLost(String::new()).is_retryable());
        assert!(!ClientError::Closed.is_retryable());
    }

    #[test]
    fn a_refused_connection_is_busy_for_one_to_three_seconds() {
        let gateway: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let e = refused(gateway, 0.0);
        assert!(e.is_retryable());
        assert!(matches!(&e, ClientError::Rejected { code, .. } if *code == ErrorCode::ServerBusy));
        assert!(!is_fatal_reject(ErrorCode::ServerBusy));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        assert!(e.to_string().contains("127.0.0.1:4433"), "{e}");
        assert_eq!(refused(gateway, 0.5).retry_after(), Some(Duration::from_secs(2)));
        let top = refused(gateway, 0.999_999).retry_after().unwrap();
        assert!(
            top < Duration::from_secs(3) && top > Duration::from_millis(2_990),
            "{top:?}"
        );
        // Out-of-range randomness is clamped, never below the floor.
        for unit in [f64::NAN, -1.0, f64::NEG_INFINITY] {
            assert_eq!(refused(gateway, unit).retry_after(), Some(REFUSED_RETRY_FLOOR));
        }
        assert_eq!(refused(gateway, 7.0).retry_after(), Some(Duration::from_secs(3)));
    }
}

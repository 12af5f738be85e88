//! Presence values.

use super::errors::PresenceError;

/// A live claim: the original layout, kept byte for byte so gateways of the
/// previous release keep reading live claims during a rolling upgrade.
const SCHEMA_V1: u8 = 1;
/// An ended claim: v1's fields plus one byte naming how the session ended.
const SCHEMA_V2: u8 = 2;

/// Longest gateway name stored with a claim, in bytes.
pub const MAX_GATEWAY_BYTES: usize = 128;

/// How a session ended in a way that forbids resuming it. A session whose
/// connection was merely lost ends with no record at all: it stays resumable
/// for the resume window. So do sessions the gateway kicked for the health of
/// their connection (idle timeout, slow consumer, rate limit): their server
/// state is intact, and the client may never have seen the Kick (an idle
/// timeout during a network outage is exactly what resume exists for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    /// An operator kicked it (admin API), from any gateway of the region.
    KickedByOperator,
    /// The client logged out (closed its connection with code 0, or finished
    /// its control stream).
    LoggedOut,
}

impl SessionEnd {
    fn to_byte(self) -> u8 {
        match self {
            SessionEnd::KickedByOperator => 1,
            SessionEnd::LoggedOut => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Self, PresenceError> {
        match b {
            1 => Ok(SessionEnd::KickedByOperator),
            2 => Ok(SessionEnd::LoggedOut),
            _ => Err(PresenceError::Corrupt),
        }
    }
}

/// A session's claim on its player's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// When the session logged in (unix milliseconds, the gateway's clock). The
    /// newer login wins, whatever order the claims reach the store in.
    pub since_ms: u64,
    /// The session's id (random per session); breaks ties of `since_ms`. Resume
    /// tokens name it: a resume is accepted only while the claim holding the
    /// presence key has this id and has not ended.
    pub session_id: u64,
    /// Which gateway holds the session (for operators; e.g. its address).
    pub gateway: String,
    /// `Some` once an operator kicked the session or it logged out: its resume
    /// tokens are revoked. `None` while it is live or merely disconnected.
    pub ended: Option<SessionEnd>,
}

impl Claim {
    /// A live claim.
    pub fn new(since_ms: u64, session_id: u64, gateway: impl Into<String>) -> Self {
        Claim {
            since_ms,
            session_id,
            gateway: gateway.into(),
            ended: None,
        }
    }

    /// Whether this claim belongs to a later login than `other`.
    pub fn is_newer_than(&self, other: &Claim) -> bool {
        (self.since_ms, self.session_id) > (other.since_ms, other.session_id)
    }

    pub(crate) fn check(&self) -> Result<(), PresenceError> {
        if self.gateway.len() > MAX_GATEWAY_BYTES {
            return Err(PresenceError::GatewayNameTooLong(self.gateway.len()));
        }
        Ok(())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(18 + self.gateway.len());
        v.push(if self.ended.is_some() {
            SCHEMA_V2
        } else {
            SCHEMA_V1
        });
        v.extend_from_slice(&self.since_ms.to_be_bytes());
        v.extend_from_slice(&self.session_id.to_be_bytes());
        if let Some(end) = self.ended {
            v.push(end.to_byte());
        }
        v.extend_from_slice(self.gateway.as_bytes());
        v
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self, PresenceError> {
        let (rest, ended) = match raw {
            [SCHEMA_V1, rest @ ..] if rest.len() >= 16 => (rest, None),
            [SCHEMA_V2, rest @ ..] if rest.len() >= 17 => (rest, Some(SessionEnd::from_byte(rest[16])?)),
            [SCHEMA_V1 | SCHEMA_V2, ..] | [] => return Err(PresenceError::Corrupt),
            [v, ..] => return Err(PresenceError::UnsupportedSchema(*v)),
        };
        let (since, rest) = rest.split_at(8);
        let (id, rest) = rest.split_at(8);
        let gw = if ended.is_some() { &rest[1..] } else { rest };
        Ok(Claim {
            since_ms: u64::from_be_bytes(since.try_into().expect("8 bytes")),
            session_id: u64::from_be_bytes(id.try_into().expect("8 bytes")),
            gateway: String::from_utf8(gw.to_vec()).map_err(|_| PresenceError::Corrupt)?,
            ended,
        })
    }
}

/// What became of a session's claim, as [`Presence::displaced`] reports it.
///
/// [`Presence::displaced`]: super::Presence::displaced
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Displacement {
    /// A later login holds the presence now.
    NewerLogin(Claim),
    /// This session's own claim was ended (kicked, possibly by an operator on
    /// another gateway, or logged out).
    Ended(SessionEnd),
    /// Nobody holds the presence any more.
    Released,
}

/// Why [`Presence::resume`] refused a resume.
///
/// [`Presence::resume`]: super::Presence::resume
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeRefused {
    /// A later login (or resume) of the player holds the presence.
    #[error("the session was replaced by a newer login")]
    Replaced,
    /// The session was kicked or logged out.
    #[error("the session ended ({0:?}) and cannot be resumed")]
    Ended(SessionEnd),
    /// No claim at all: the session never reached the store or was swept.
    #[error("no resumable session")]
    Unknown,
}

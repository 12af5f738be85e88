//! Presence values.

use super::errors::PresenceError;

/// A live claim: the original layout, kept byte for byte so gateways of the
/// previous release keep reading live claims during a rolling upgrade.
const SCHEMA_V1: u8 = 1;
/// An ended claim: v1's fields plus one byte naming how the session ended.
const SCHEMA_V2: u8 = 2;
/// A live claim that names its gateway incarnation: v1 plus the incarnation
/// after the session id. Written only when the incarnation is known (non-zero),
/// so gateways without liveness keep writing v1 / v2. Gateways of releases
/// before v3 cannot read v3 / v4 (`UnsupportedSchema`): during a rolling
/// upgrade their claims and displacement watches on players last seen by a new
/// gateway fail (logged; one session per player then holds per gateway only)
/// until they are replaced.
const SCHEMA_V3: u8 = 3;
/// An ended claim that names its gateway incarnation: v2 plus the incarnation
/// after the session id.
const SCHEMA_V4: u8 = 4;

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
    /// The gateway incarnation ([`crate::liveness`]) holding the session; 0 if
    /// unknown (claims written before liveness, or by a presence service
    /// without an incarnation). The orphan sweep releases claims whose
    /// incarnation died.
    pub incarnation: u64,
}

impl Claim {
    /// A live claim (incarnation unknown: [`super::Presence`] stamps its own).
    pub fn new(since_ms: u64, session_id: u64, gateway: impl Into<String>) -> Self {
        Claim {
            since_ms,
            session_id,
            gateway: gateway.into(),
            ended: None,
            incarnation: 0,
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
        let mut v = Vec::with_capacity(26 + self.gateway.len());
        v.push(match (self.ended.is_some(), self.incarnation != 0) {
            (false, false) => SCHEMA_V1,
            (true, false) => SCHEMA_V2,
            (false, true) => SCHEMA_V3,
            (true, true) => SCHEMA_V4,
        });
        v.extend_from_slice(&self.since_ms.to_be_bytes());
        v.extend_from_slice(&self.session_id.to_be_bytes());
        if self.incarnation != 0 {
            v.extend_from_slice(&self.incarnation.to_be_bytes());
        }
        if let Some(end) = self.ended {
            v.push(end.to_byte());
        }
        v.extend_from_slice(self.gateway.as_bytes());
        v
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self, PresenceError> {
        let (version, rest) = raw.split_first().ok_or(PresenceError::Corrupt)?;
        let (with_inc, with_end) = match *version {
            SCHEMA_V1 => (false, false),
            SCHEMA_V2 => (false, true),
            SCHEMA_V3 => (true, false),
            SCHEMA_V4 => (true, true),
            v => return Err(PresenceError::UnsupportedSchema(v)),
        };
        let fixed = 16 + if with_inc { 8 } else { 0 } + usize::from(with_end);
        if rest.len() < fixed {
            return Err(PresenceError::Corrupt);
        }
        let u64_at = |i: usize| u64::from_be_bytes(rest[i..i + 8].try_into().expect("8 bytes"));
        let incarnation = if with_inc { u64_at(16) } else { 0 };
        let ended = if with_end {
            Some(SessionEnd::from_byte(rest[fixed - 1])?)
        } else {
            None
        };
        Ok(Claim {
            since_ms: u64_at(0),
            session_id: u64_at(8),
            gateway: String::from_utf8(rest[fixed..].to_vec()).map_err(|_| PresenceError::Corrupt)?,
            ended,
            incarnation,
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

//! Presence values.

use super::errors::PresenceError;

const SCHEMA_V1: u8 = 1;

/// Longest gateway name stored with a claim, in bytes.
pub const MAX_GATEWAY_BYTES: usize = 128;

/// A session's claim on its player's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// When the session logged in (unix milliseconds, the gateway's clock). The
    /// newer login wins, whatever order the claims reach the store in.
    pub since_ms: u64,
    /// The session's id (random per session); breaks ties of `since_ms`.
    pub session_id: u64,
    /// Which gateway holds the session (for operators; e.g. its address).
    pub gateway: String,
}

impl Claim {
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
        let mut v = Vec::with_capacity(17 + self.gateway.len());
        v.push(SCHEMA_V1);
        v.extend_from_slice(&self.since_ms.to_be_bytes());
        v.extend_from_slice(&self.session_id.to_be_bytes());
        v.extend_from_slice(self.gateway.as_bytes());
        v
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self, PresenceError> {
        match raw {
            [SCHEMA_V1, rest @ ..] if rest.len() >= 16 => {
                let (since, rest) = rest.split_at(8);
                let (id, gw) = rest.split_at(8);
                Ok(Claim {
                    since_ms: u64::from_be_bytes(since.try_into().expect("8 bytes")),
                    session_id: u64::from_be_bytes(id.try_into().expect("8 bytes")),
                    gateway: String::from_utf8(gw.to_vec()).map_err(|_| PresenceError::Corrupt)?,
                })
            }
            [SCHEMA_V1, ..] | [] => Err(PresenceError::Corrupt),
            [v, ..] => Err(PresenceError::UnsupportedSchema(*v)),
        }
    }
}

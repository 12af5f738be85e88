//! Queue tokens: a MAC'd name of a place, like resume tokens
//! ([`crate::identity::resume`]), under a key derived from the same signing
//! key seeds with its own label.
//!
//! # Format (normative; `schema/PROTOCOL.md` treats it as opaque)
//!
//! ```text
//! token  = "q1." claims "." mac
//! claims = base64url-nopad( UTF-8 JSON {kid, sub, home, iat, exp, sid} )
//!          sub: the player id; home: the region; sid: the place id
//! mac    = base64url-nopad( HMAC-SHA256(queue_key(kid), "q1." claims), 32 bytes )
//! queue_key(kid) = HMAC-SHA256(key = the Ed25519 secret seed of signing key `kid`,
//!                              message = "outpost/queue-token/v1")
//! ```
//!
//! The prefix and label keep queue, resume and session tokens apart. A token
//! that verifies still has to name the account's current place (checked in
//! the store by [`super::Queue::enter`]): a replayed token of a place already
//! admitted, expired or replaced is refused as [`QueueTokenError::PlaceGone`].

use std::collections::HashMap;
use std::time::Duration;

use ring::hmac;

use super::errors::{QueueError, QueueTokenError};
use crate::identity::tokens::{assemble, check_expiry, parse, SessionClaims, TokenError};

const PREFIX: &str = "q1.";
const KEY_LABEL: &[u8] = b"outpost/queue-token/v1";

/// The queue-token keys of every live signing key, and which one mints.
#[derive(Clone)]
pub struct QueueKeys {
    active: String,
    keys: HashMap<String, hmac::Key>,
}

impl std::fmt::Debug for QueueKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueKeys").field("active", &self.active).finish()
    }
}

/// The claims of a verified queue token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueClaims {
    /// The player.
    pub player: String,
    /// The region.
    pub region: String,
    /// The place id.
    pub place: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
}

impl QueueKeys {
    /// Keys derived from `(kid, Ed25519 secret seed)` pairs; `active` mints.
    pub fn new<'a>(
        active: &str,
        seeds: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>,
    ) -> Result<Self, QueueError> {
        let keys = crate::identity::resume::derive_mac_keys(seeds, KEY_LABEL);
        if !keys.contains_key(active) {
            return Err(QueueError::InvalidSettings("active queue-token key is missing"));
        }
        Ok(QueueKeys {
            active: active.to_owned(),
            keys,
        })
    }

    /// A token naming `place` of `player` in `region`, valid for `ttl`.
    pub fn issue(&self, player: &str, region: &str, place: u64, ttl: Duration, now_unix_secs: u64) -> String {
        let claims = SessionClaims {
            kid: self.active.clone(),
            sub: player.to_owned(),
            home: region.to_owned(),
            iat: now_unix_secs,
            exp: now_unix_secs.saturating_add(ttl.as_secs().max(1)),
            sid: Some(place),
        };
        let key = &self.keys[&self.active];
        assemble(PREFIX, &claims, |signed| {
            hmac::sign(key, signed).as_ref().to_vec()
        })
    }

    /// Checks format, key, MAC, then expiry (in that order).
    pub fn verify(&self, token: &str, now_unix_secs: u64) -> Result<QueueClaims, QueueTokenError> {
        let parsed = parse(token, PREFIX).map_err(map_token_error)?;
        if parsed.tag.len() != 32 {
            return Err(QueueTokenError::Malformed("MAC is not 32 bytes"));
        }
        let Some(place) = parsed.claims.sid else {
            return Err(QueueTokenError::Malformed("queue token names no place"));
        };
        let key = self.keys.get(&parsed.claims.kid).ok_or(QueueTokenError::Forged)?;
        hmac::verify(key, parsed.signed, &parsed.tag).map_err(|_| QueueTokenError::Forged)?;
        let claims = check_expiry(parsed.claims, now_unix_secs).map_err(map_token_error)?;
        Ok(QueueClaims {
            player: claims.sub,
            region: claims.home,
            place,
            exp: claims.exp,
        })
    }
}

fn map_token_error(e: TokenError) -> QueueTokenError {
    match e {
        TokenError::Malformed(m) => QueueTokenError::Malformed(m),
        TokenError::BadSignature | TokenError::UnknownKey(_) => QueueTokenError::Forged,
        TokenError::Expired { exp, now } => QueueTokenError::Expired { exp, now },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> QueueKeys {
        QueueKeys::new("k1", [("k1", &[1u8; 32])]).unwrap()
    }

    #[test]
    fn round_trip_forgery_expiry_and_prefixes() {
        let k = keys();
        let t = k.issue("p1", "eu", 42, Duration::from_secs(100), 1_000);
        assert!(t.starts_with("q1."));
        let c = k.verify(&t, 1_050).unwrap();
        assert_eq!((c.player.as_str(), c.region.as_str(), c.place), ("p1", "eu", 42));
        assert!(matches!(
            k.verify(&t, 1_100),
            Err(QueueTokenError::Expired { .. })
        ));
        let other = QueueKeys::new("k1", [("k1", &[9u8; 32])]).unwrap();
        assert_eq!(other.verify(&t, 1_050), Err(QueueTokenError::Forged));
        assert!(matches!(
            k.verify(&t.replacen("q1.", "r1.", 1), 1_050),
            Err(QueueTokenError::Malformed(_))
        ));
        assert!(matches!(
            k.verify("garbage", 1_050),
            Err(QueueTokenError::Malformed(_))
        ));
    }
}

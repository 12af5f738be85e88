//! Resume tokens: a MAC under a key only the region's gateways hold.
//!
//! A resume token lets a client that lost its connection (or was moved by a drain)
//! get its session back at any gateway of the region without a full login. Unlike
//! a session token ([`super::tokens`]), it is never checked by anyone but a
//! gateway, and every gateway already holds the signing keys' private halves (it
//! signs session tokens with them). So a resume token is authenticated with
//! HMAC-SHA256 instead of an Ed25519 signature: ~0.5–0.7 µs to mint or check a
//! whole token (claims JSON and base64 included) instead of ~16 µs to sign and
//! ~41 µs to verify (`cargo bench -p outpost-backend --bench tokens` on the 2-core
//! CI machine; see docs/PERFORMANCE.md). That is paid on every login (each `Welcome` carries a
//! resume token), on every refresh (one per session per half resume window), and
//! on every resume — after a gateway restart, by all of its clients at once.
//!
//! # Format (normative; `schema/PROTOCOL.md` treats it as opaque)
//!
//! ```text
//! token  = "r1." claims "." mac
//! claims = base64url-nopad( UTF-8 JSON object, the same members as a session token )
//! mac    = base64url-nopad( HMAC-SHA256(resume_key(kid), "r1." claims), 32 bytes )
//! resume_key(kid) = HMAC-SHA256(key = the Ed25519 secret seed of signing key `kid`,
//!                               message = "outpost/resume-token/v1")
//! ```
//!
//! - Keys rotate with the signing keys: a token minted under key `kid` verifies
//!   while `kid` is not retired, exactly like a session token.
//! - The distinct prefix keeps the two kinds apart: a session token is not
//!   accepted as a resume token, nor the other way round.
//! - Length bound, base64url rules and expiry are those of session tokens.
//! - The MAC is compared in constant time (`ring::hmac::verify`).

use std::collections::HashMap;
use std::time::Duration;

use ring::hmac;

use super::errors::IdentityError;
use super::tokens::{assemble, check_expiry, check_ttls, parse, SessionClaims, TokenError};
use super::types::IssuedToken;

/// The format prefix, including its separator.
const PREFIX: &str = "r1.";

/// Domain separation: what the resume key of a signing key is derived under.
const KEY_LABEL: &[u8] = b"outpost/resume-token/v1";

/// The resume-token keys of every non-retired signing key, and which one mints.
/// `Debug` shows key ids only.
#[derive(Clone)]
pub struct ResumeKeys {
    active: String,
    keys: HashMap<String, hmac::Key>,
}

impl std::fmt::Debug for ResumeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("ResumeKeys")
            .field("active", &self.active)
            .field("kids", &kids)
            .finish()
    }
}

/// HMAC-SHA256 keys derived from `(kid, Ed25519 secret seed)` pairs, one per
/// key id: `HMAC-SHA256(key = seed, message = label)`. Resume tokens and queue
/// tokens (`crate::queue::token`) each use their own `label`, so a key of one
/// kind never verifies a token of the other.
pub(crate) fn derive_mac_keys<'a>(
    seeds: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>,
    label: &[u8],
) -> HashMap<String, hmac::Key> {
    seeds
        .into_iter()
        .map(|(kid, seed)| {
            let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, seed), label);
            (
                kid.to_owned(),
                hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            )
        })
        .collect()
}

impl ResumeKeys {
    /// Keys derived from `(kid, Ed25519 secret seed)` pairs; `active` mints.
    /// Errors if `active` is not among them.
    pub(crate) fn new<'a>(
        active: &str,
        seeds: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>,
    ) -> Result<Self, IdentityError> {
        let keys = derive_mac_keys(seeds, KEY_LABEL);
        if !keys.contains_key(active) {
            return Err(IdentityError::CorruptRecord {
                family: "signing key",
                detail: format!("active key {active} is missing or retired"),
            });
        }
        Ok(ResumeKeys {
            active: active.to_owned(),
            keys,
        })
    }

    /// The id of the key new tokens are minted under.
    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// A resume token for session `session` of `player` (home region `home`),
    /// valid for `ttl` from `now_unix_secs`.
    pub fn issue(
        &self,
        player: &str,
        home: &str,
        session: u64,
        ttl: Duration,
        now_unix_secs: u64,
    ) -> Result<IssuedToken, IdentityError> {
        check_ttls(&[ttl])?;
        let claims = SessionClaims {
            kid: self.active.clone(),
            sub: player.to_owned(),
            home: home.to_owned(),
            iat: now_unix_secs,
            exp: now_unix_secs.saturating_add(ttl.as_secs()),
            sid: Some(session),
        };
        let key = &self.keys[&self.active];
        let token = assemble(PREFIX, &claims, |signed| {
            hmac::sign(key, signed).as_ref().to_vec()
        });
        Ok(IssuedToken { token, claims })
    }

    /// Checks `token` at `now_unix_secs` and returns its claims, whose `sid`
    /// is always set. Checks, in order: length and format (a token without a
    /// session id is malformed), that the key is known, the MAC, then expiry.
    /// Whether the session is still resumable (not replaced, kicked or logged
    /// out) is the caller's to check against presence.
    pub fn verify(&self, token: &str, now_unix_secs: u64) -> Result<SessionClaims, TokenError> {
        let parsed = parse(token, PREFIX)?;
        if parsed.tag.len() != 32 {
            return Err(TokenError::Malformed("MAC is not 32 bytes"));
        }
        if parsed.claims.sid.is_none() {
            return Err(TokenError::Malformed("resume token names no session"));
        }
        let key = self
            .keys
            .get(&parsed.claims.kid)
            .ok_or_else(|| TokenError::UnknownKey(parsed.claims.kid.clone()))?;
        hmac::verify(key, parsed.signed, &parsed.tag).map_err(|_| TokenError::BadSignature)?;
        check_expiry(parsed.claims, now_unix_secs)
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    const PLAYER: &str = "00112233445566778899aabbccddeeff";

    fn keys() -> ResumeKeys {
        ResumeKeys::new("k1", [("k1", &[1u8; 32]), ("k2", &[2u8; 32])]).unwrap()
    }

    fn mint(k: &ResumeKeys) -> String {
        k.issue(PLAYER, "eu-west", 7, Duration::from_secs(120), 1_000)
            .unwrap()
            .token
    }

    #[test]
    fn minted_token_verifies_until_expiry() {
        let k = keys();
        let token = mint(&k);
        assert!(token.starts_with("r1."));
        let claims = k.verify(&token, 1_119).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.home.as_str(), claims.kid.as_str()),
            (PLAYER, "eu-west", "k1")
        );
        assert_eq!(claims.exp, 1_120);
        assert_eq!(claims.sid, Some(7), "bound to the session it was issued to");
        assert_eq!(
            k.verify(&token, 1_120),
            Err(TokenError::Expired {
                exp: 1_120,
                now: 1_120
            })
        );
    }

    #[test]
    fn any_holder_of_the_same_seeds_verifies_and_others_do_not() {
        let token = mint(&keys());
        // Another gateway of the region loaded the same key records.
        let peer = ResumeKeys::new("k2", [("k2", &[2u8; 32]), ("k1", &[1u8; 32])]).unwrap();
        assert!(peer.verify(&token, 1_050).is_ok());
        // Same kid, different secret: a forgery.
        let forger = ResumeKeys::new("k1", [("k1", &[9u8; 32])]).unwrap();
        assert_eq!(forger.verify(&token, 1_050), Err(TokenError::BadSignature));
        // The key was retired: unknown.
        let rotated = ResumeKeys::new("k2", [("k2", &[2u8; 32])]).unwrap();
        assert_eq!(
            rotated.verify(&token, 1_050),
            Err(TokenError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn tampered_claims_or_mac_are_rejected() {
        let k = keys();
        let token = mint(&k);
        let (head, mac) = token.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(mac).unwrap();
        raw[0] ^= 1;
        let bad_mac = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(k.verify(&bad_mac, 1_050), Err(TokenError::BadSignature));

        let evil = SessionClaims {
            kid: "k1".into(),
            sub: "ffffffffffffffffffffffffffffffff".into(),
            home: "eu-west".into(),
            iat: 1_000,
            exp: u64::MAX,
            sid: Some(7),
        };
        let evil_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        let forged = format!("r1.{evil_claims}.{mac}");
        assert_eq!(k.verify(&forged, 1_050), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_correctly_macd_token_without_a_session_id_is_malformed() {
        // What a gateway from before session binding minted: it cannot be
        // checked against presence, so it does not resume (the client falls
        // back to its credentials).
        let k = keys();
        let claims = SessionClaims {
            kid: "k1".into(),
            sub: PLAYER.into(),
            home: "eu-west".into(),
            iat: 1_000,
            exp: 2_000,
            sid: None,
        };
        let key = &k.keys["k1"];
        let token = assemble(PREFIX, &claims, |signed| {
            hmac::sign(key, signed).as_ref().to_vec()
        });
        assert_eq!(
            k.verify(&token, 1_050),
            Err(TokenError::Malformed("resume token names no session"))
        );
    }

    #[test]
    fn session_tokens_and_resume_tokens_are_not_interchangeable() {
        let k = keys();
        let resume = mint(&k);
        // The same bytes behind the session-token prefix: wrong prefix for both.
        let as_session = resume.replacen("r1.", "v1.", 1);
        assert!(matches!(
            k.verify(&as_session, 1_050),
            Err(TokenError::Malformed(_))
        ));
        let mut verifier = super::super::TokenVerifier::new();
        verifier.insert(
            "k1",
            ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]).verifying_key(),
        );
        assert!(matches!(
            verifier.verify(&resume, 1_050),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn an_active_key_missing_from_the_set_is_an_error() {
        assert!(ResumeKeys::new("k3", [("k1", &[1u8; 32])]).is_err());
    }

    #[test]
    fn garbage_is_malformed() {
        let k = keys();
        let good = mint(&k);
        for bad in [
            "",
            "r1.",
            "r1..",
            "v1.abc.def",
            "r1.abc",
            "r1.!!!.AAAA",
            &format!("{good}.x"),
        ] {
            assert!(
                matches!(k.verify(bad, 1_050), Err(TokenError::Malformed(_))),
                "{bad:?}"
            );
        }
        let short_mac = format!("{}.AAAA", good.rsplit_once('.').unwrap().0);
        assert_eq!(
            k.verify(&short_mac, 1_050),
            Err(TokenError::Malformed("MAC is not 32 bytes"))
        );
    }

    proptest! {
        #[test]
        fn verify_never_panics_and_never_accepts_a_changed_token(
            pos in 0usize..400, byte in any::<u8>(), now in any::<u64>()
        ) {
            let k = keys();
            let token = mint(&k);
            if let Some(s) = super::super::tokens::with_byte(&token, pos, byte) {
                let r = k.verify(&s, now);
                if s != token {
                    prop_assert!(r.is_err());
                }
            }
        }
    }
}

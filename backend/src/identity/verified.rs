//! A bounded memory of the session tokens a [`TokenVerifier`](super::TokenVerifier)
//! has already authenticated, so that presenting the same token again costs a
//! SHA-256 instead of an Ed25519 verification.
//!
//! # What is remembered, and why that is safe
//!
//! An entry is the first 16 bytes of `SHA-256(token)` of a token whose
//! signature verified under the key its `kid` named in **this** verifier (or
//! that the process itself signed with that key: [`TokenVerifier::remember_issued`](super::TokenVerifier::remember_issued)).
//! On a hit the verifier still parses the token, still requires the `kid` to be
//! one of its keys and still checks expiry; only the signature check is
//! skipped, for a byte-identical token. Threat model:
//!
//! - *Forgery.* Getting an unsigned token accepted needs a string whose
//!   truncated digest equals that of a token this process authenticated: a
//!   second preimage of 128-bit SHA-256, about 2^128 work. A collision search
//!   (2^64) does not help, since the attacker cannot have the server sign or
//!   verify a string of their choosing (the remembered token's bytes are fixed by
//!   the signer: canonical base64url, signed claims).
//! - *Rotation and retirement.* The memory belongs to one verifier. A gateway
//!   builds a new verifier (with an empty memory) whenever the signing keys
//!   change, and [`TokenVerifier::insert`](super::TokenVerifier::insert) starts an
//!   empty memory, so a token of a retired or replaced key goes through the full
//!   check again (and fails it). A hit also requires the `kid` to be known.
//! - *Revocation.* Session tokens are not revocable before `exp` (PROTOCOL.md
//!   §3.6); expiry is checked on every hit. Resume tokens, which a kick or a
//!   newer login revokes, are not session tokens and never pass through here.
//!
//! # Bounds
//!
//! Two generations of at most [`GENERATION`] digests each: when the current one
//! is full the previous one is dropped and the current one becomes the
//! previous. At most 2 × 16,384 entries of 16 bytes (≈ 1.1 MiB with the hash
//! tables' slack), whatever the login rate; a token is remembered for the next
//! 16,384–32,768 tokens the process signs or verifies. A hit in the previous
//! generation moves the digest into the current one.

use std::collections::HashSet;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

/// Digests per generation (two generations are kept).
pub(crate) const GENERATION: usize = 16_384;

/// A remembered token: the first 16 bytes of its SHA-256.
pub(crate) type TokenDigest = [u8; 16];

/// The digest a token is remembered by.
pub(crate) fn digest(token: &str) -> TokenDigest {
    let full = Sha256::digest(token.as_bytes());
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// The memory itself; see the module docs. `Debug` shows how many digests it
/// holds, not the digests.
#[derive(Default)]
pub(crate) struct Verified {
    gens: Mutex<Generations>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .gens
            .lock()
            .map(|g| g.current.len() + g.previous.len())
            .unwrap_or(0);
        f.debug_struct("Verified").field("tokens", &n).finish()
    }
}

#[derive(Default)]
struct Generations {
    current: HashSet<TokenDigest>,
    previous: HashSet<TokenDigest>,
}

impl Generations {
    fn insert(&mut self, d: TokenDigest) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(d);
    }
}

impl Verified {
    /// Whether `d` is remembered (a hit in the previous generation is moved
    /// into the current one, so a token in use stays remembered).
    pub(crate) fn contains(&self, d: &TokenDigest) -> bool {
        let mut g = self.gens.lock().expect("verified tokens lock");
        if g.current.contains(d) {
            return true;
        }
        if g.previous.remove(d) {
            g.insert(*d);
            return true;
        }
        false
    }

    /// Remembers `d`: only for a token authenticated under this verifier's keys.
    pub(crate) fn insert(&self, d: TokenDigest) {
        self.gens.lock().expect("verified tokens lock").insert(d);
    }

    /// How many digests are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let g = self.gens.lock().expect("verified tokens lock");
        g.current.len() + g.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_bounded_by_two_generations_and_keeps_what_is_in_use() {
        let v = Verified::default();
        let first = digest("token-0");
        v.insert(first);
        for i in 1..(3 * GENERATION) {
            v.insert(digest(&format!("token-{i}")));
            if i % 1000 == 0 {
                // In use: every hit keeps it in the current generation.
                assert!(v.contains(&first), "a token in use is forgotten at {i}");
            }
        }
        assert!(v.len() <= 2 * GENERATION, "{} digests remembered", v.len());
        assert!(
            !v.contains(&digest("token-1")),
            "an old, unused token is remembered"
        );
        assert!(v.contains(&digest(&format!("token-{}", 3 * GENERATION - 1))));
    }
}

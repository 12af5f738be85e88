//! Identity's keys in the **global** keyspace, and the subspace helpers that build
//! them.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under the global subspace `("g")`, then the
//! identity subspace `("g", "id")`. Every value starts with a one-byte schema
//! version (currently `1`) followed by a JSON document.
//!
//! ```text
//! ("g", "id", "acct", player_id)       -> v1 AccountRecord  { player, home, created_unix }
//! ("g", "id", "dev", device_id)        -> v1 DeviceRecord   { player, salt, hash, created_unix }
//! ("g", "id", "sigkey", kid)           -> v1 SigningKeyRecord { kid, secret, public, created_unix, retired_unix }
//! ("g", "id", "sigkey_active")         -> v1 ActiveKeyRecord { kid }
//! ("g", "id", "sigkey_gen")            -> 8-byte little-endian counter (atomic add; no schema byte),
//!                                         bumped whenever the key set changes; watched by gateways
//! ```
//!
//! - `player_id`: 32 lowercase hex characters (16 random bytes).
//! - `device_id`: the client's device id, 1..=128 bytes of UTF-8.
//! - `kid`: `k` followed by 16 lowercase hex characters (8 random bytes).
//!
//! Written only by [`Identity`](super::Identity) (and the cross-region transfer,
//! which rewrites an account's home region through identity's own helper, in the
//! same transaction as its transfer record).

use foundationdb_tuple::Subspace;

/// Identity's subspace `("g", "id")`.
pub fn identity() -> Subspace {
    crate::keyspace::global_family("id")
}

/// `("g", "id", "acct", player)`: an account.
pub fn account(player: &str) -> Vec<u8> {
    identity().pack(&("acct", player))
}

/// `("g", "id", "dev", device_id)`: a device credential.
pub fn device(device_id: &str) -> Vec<u8> {
    identity().pack(&("dev", device_id))
}

/// The subspace of all signing keys, `("g", "id", "sigkey")`.
pub fn signing_keys() -> Subspace {
    identity().subspace(&("sigkey",))
}

/// `("g", "id", "sigkey", kid)`: one signing key.
pub fn signing_key(kid: &str) -> Vec<u8> {
    signing_keys().pack(&(kid,))
}

/// `("g", "id", "sigkey_active")`: which key signs new tokens.
pub fn active_signing_key() -> Vec<u8> {
    identity().pack(&("sigkey_active",))
}

/// `("g", "id", "sigkey_gen")`: bumped on every key-set change.
pub fn signing_key_generation() -> Vec<u8> {
    identity().pack(&("sigkey_gen",))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_disjoint_and_inside_identity() {
        let (begin, end) = identity().range();
        let keys = [
            account("p"),
            device("p"),
            signing_key("p"),
            active_signing_key(),
            signing_key_generation(),
        ];
        for (i, k) in keys.iter().enumerate() {
            assert!(k.as_slice() > begin.as_slice() && k.as_slice() < end.as_slice());
            for (j, other) in keys.iter().enumerate() {
                if i != j {
                    assert_ne!(k, other);
                }
            }
        }
        // The signing-key subspace holds keys, not the active pointer or counter.
        let (sb, se) = signing_keys().range();
        assert!(signing_key("k1").as_slice() > sb.as_slice());
        assert!(signing_key("k1").as_slice() < se.as_slice());
        assert!(
            !(active_signing_key().as_slice() > sb.as_slice()
                && active_signing_key().as_slice() < se.as_slice())
        );
    }
}

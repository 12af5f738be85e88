//! The stored-value encodings every service shares: the versioned record codec
//! (`[schema version byte] ++ JSON`) and the decoder of atomic-add counters.
//!
//! Services keep their own record types and their own error types; this module
//! only owns the bytes. A service maps [`CodecError`] into its error where it
//! decodes (each keeps the messages it always had).
//!
//! - **Records**: [`encode_v1`] writes [`SCHEMA_V1`] followed by the record's
//!   `serde_json` form; [`decode_v1`] reads it back and refuses any other version
//!   byte. Every JSON family in `backend/KEYSPACE.md` ("v1: `[1] ++ JSON`") is
//!   written by it.
//! - **Counters**: families written with `atomic_add` hold raw 8-byte
//!   little-endian integers without a schema byte; [`decode_counter`] reads one
//!   (a missing key is 0, a short value is zero-extended as FoundationDB's `ADD`
//!   does).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The schema version byte in front of every v1 stored value (JSON records and
/// the binary v1 layouts of player state and the ledger generation record).
pub const SCHEMA_V1: u8 = 1;

/// Why a stored v1 record did not decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value is empty (not even a version byte).
    #[error("empty value")]
    Empty,
    /// The leading version byte is not one this build reads.
    #[error("unsupported schema version {0}")]
    UnsupportedVersion(u8),
    /// The version byte is right and the JSON after it does not decode as the
    /// expected record.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Encodes `record` as `[SCHEMA_V1] ++ JSON`.
///
/// # Panics
///
/// If `record`'s `Serialize` fails, which the plain structs and enums stored by
/// the services never do (no maps with non-string keys, no failing impls).
pub fn encode_v1<T: Serialize + ?Sized>(record: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_V1];
    serde_json::to_writer(&mut out, record).expect("stored records serialize");
    out
}

/// Decodes a record written by [`encode_v1`].
pub fn decode_v1<T: DeserializeOwned>(raw: &[u8]) -> Result<T, CodecError> {
    match raw.split_first() {
        Some((&SCHEMA_V1, json)) => Ok(serde_json::from_slice(json)?),
        Some((&v, _)) => Err(CodecError::UnsupportedVersion(v)),
        None => Err(CodecError::Empty),
    }
}

/// Reads an atomic-add counter: 8-byte little-endian `i64` (missing: 0; a
/// shorter value is zero-extended, bytes past the eighth are ignored).
///
/// Counters that only grow (change counters, sizes) are read as `u64` with
/// `as u64`, which keeps the same bit pattern; gauges that may dip below zero
/// under races (pool depth, cohort counts) clamp with `.max(0)` first.
pub fn decode_counter(raw: Option<&[u8]>) -> i64 {
    let mut b = [0u8; 8];
    if let Some(v) = raw {
        let n = v.len().min(8);
        b[..n].copy_from_slice(&v[..n]);
    }
    i64::from_le_bytes(b)
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

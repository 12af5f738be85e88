//! Player state's plain types, bounds, and the stored document encoding.

use super::errors::StateError;

/// Longest document name, in bytes.
pub const MAX_DOC_NAME_BYTES: usize = 64;
/// Largest document value, in bytes (64 KiB, under the store's 100,000-byte value
/// limit with room for the header).
pub const MAX_DOC_BYTES: usize = 64 * 1024;
/// Most documents one player may have (bounds a player's data at 4 MiB, so a
/// transfer copies it well inside one 10 MB transaction per page).
pub const MAX_DOCS_PER_PLAYER: usize = 64;

/// The schema version byte in front of every stored document.
pub(crate) use crate::codec::SCHEMA_V1;
const HEADER: usize = 1 + 8 + 8;

/// One versioned document of a player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its name (e.g. `profile`, `progression`, `loadout`).
    pub name: String,
    /// Its version: 1 after the first write, +1 per successful update.
    pub version: u64,
    /// When it was last written (unix milliseconds).
    pub updated_ms: u64,
    /// Its bytes, opaque to the backend.
    pub value: Vec<u8>,
}

/// Checks a document name: 1..=64 bytes of lowercase ASCII letters, digits, `_`,
/// `-` or `.`.
pub fn check_doc_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_DOC_NAME_BYTES
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        let mut end = name.len().min(MAX_DOC_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        Err(StateError::InvalidDocName(name[..end].to_string()))
    }
}

/// Encodes a stored document value.
pub(crate) fn encode(version: u64, updated_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.push(SCHEMA_V1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&updated_ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a stored document value into `(version, updated_ms, value)`.
pub(crate) fn decode(raw: &[u8]) -> Result<(u64, u64, Vec<u8>), StateError> {
    match raw.first() {
        Some(&SCHEMA_V1) if raw.len() >= HEADER => {
            let version = u64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
            let updated = u64::from_be_bytes(raw[9..17].try_into().expect("8 bytes"));
            Ok((version, updated, raw[HEADER..].to_vec()))
        }
        Some(&SCHEMA_V1) => Err(StateError::CorruptDocument("shorter than its header")),
        Some(&v) => Err(StateError::UnsupportedSchema(v)),
        None => Err(StateError::CorruptDocument("empty value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_checks_schema() {
        let raw = encode(7, 1234, b"hello");
        assert_eq!(raw[0], SCHEMA_V1);
        assert_eq!(decode(&raw).unwrap(), (7, 1234, b"hello".to_vec()));
        assert_eq!(decode(&encode(1, 0, b"")).unwrap(), (1, 0, vec![]));
        let mut v2 = raw.clone();
        v2[0] = 2;
        assert!(matches!(decode(&v2), Err(StateError::UnsupportedSchema(2))));
        assert!(matches!(decode(&raw[..10]), Err(StateError::CorruptDocument(_))));
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn doc_names() {
        for ok in ["profile", "loadout.v2", "a", &"x".repeat(64)] {
            assert!(check_doc_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Profile", "a b", "é", &"x".repeat(65)] {
            assert!(check_doc_name(bad).is_err(), "{bad}");
        }
    }
}

//! Framing: every frame on every stream is a little-endian `u32` byte length
//! followed by exactly that many bytes of FlatBuffer (the standard FlatBuffers
//! "size-prefixed" layout, so other languages' `size_prefixed_root` reads it).
//!
//! Limits exist so that a peer can never make us allocate or verify more than
//! we agreed to: the length is checked against the negotiated maximum *before*
//! the body is read, and the body then goes through the FlatBuffers verifier
//! with bounded depth and table count.

use flatbuffers::VerifierOptions;
use thiserror::Error;

use crate::ErrorCode;

/// Size of the length prefix in bytes.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// The smallest length a frame's prefix may give: a FlatBuffer's root offset
/// and file identifier (PROTOCOL.md §2, "under 8 is a protocol error").
pub const MIN_FRAME_LEN: u32 = 8;

/// Maximum frame size before `Welcome` has negotiated one: applies to `Hello`,
/// `Welcome` and `Reject`, and to the first frame of a channel.
pub const HANDSHAKE_MAX_FRAME_SIZE: u32 = 16 * 1024;

/// Maximum frame size a peer proposes when it has no reason to choose another
/// (128 KiB): a `StateSetRequest` carrying the largest state document (64 KiB,
/// PROTOCOL.md 4.2) plus its envelope must fit one frame.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 128 * 1024;

/// No negotiation goes below this, so every protocol message always fits.
pub const MIN_MAX_FRAME_SIZE: u32 = 4 * 1024;

/// No negotiation goes above this (16 MiB).
pub const MAX_FRAME_SIZE_CEILING: u32 = 16 * 1024 * 1024;

/// Deepest table nesting the verifier accepts. Our schema nests at most 4 deep;
/// the slack is for appended fields.
pub const VERIFIER_MAX_DEPTH: usize = 16;

/// Most tables the verifier walks in one frame. Bounds CPU spent on a hostile
/// frame full of tiny tables; generous for any legitimate message.
pub const VERIFIER_MAX_TABLES: usize = 4096;

/// The verifier options every inbound frame is checked with.
pub fn verifier_options(frame_len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: VERIFIER_MAX_DEPTH,
        max_tables: VERIFIER_MAX_TABLES,
        max_apparent_size: frame_len.max(1) * 4,
        ignore_missing_null_terminator: false,
    }
}

/// The effective maximum frame size: the smaller of the two proposals, where
/// 0 means "the default", clamped to `[MIN_MAX_FRAME_SIZE, MAX_FRAME_SIZE_CEILING]`.
pub fn negotiate_max_frame_size(client: u32, server: u32) -> u32 {
    let pick = |v: u32| if v == 0 { DEFAULT_MAX_FRAME_SIZE } else { v };
    pick(client)
        .min(pick(server))
        .clamp(MIN_MAX_FRAME_SIZE, MAX_FRAME_SIZE_CEILING)
}

/// A parsed length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Length of the FlatBuffer that follows, in bytes.
    pub len: u32,
}

impl FrameHeader {
    /// Parses a length prefix and checks it against `max` before anything is
    /// read or allocated for the body. An empty frame is invalid.
    pub fn parse(prefix: [u8; LENGTH_PREFIX_BYTES], max: u32) -> Result<Self, DecodeError> {
        let len = u32::from_le_bytes(prefix);
        if len > max {
            return Err(DecodeError::FrameTooLarge { len, max });
        }
        if len < MIN_FRAME_LEN {
            return Err(DecodeError::TooShort { len });
        }
        Ok(Self { len })
    }
}

/// Why an inbound frame was refused. Never a panic: every malformed input ends
/// here, and [`DecodeError::code`] gives the wire code to answer with.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge { len: u32, max: u32 },
    #[error(
        "frame of {len} bytes is too short to hold a FlatBuffer (the least is {})",
        MIN_FRAME_LEN
    )]
    TooShort { len: u32 },
    #[error("length prefix says {prefix} bytes but the frame holds {actual}")]
    LengthMismatch { prefix: u32, actual: u32 },
    #[error("frame does not carry file identifier {expected:?}")]
    WrongIdentifier { expected: &'static str },
    #[error("frame failed FlatBuffers verification: {0}")]
    Invalid(#[from] flatbuffers::InvalidFlatbuffer),
    #[error("frame is missing required field `{0}`")]
    Missing(&'static str),
    #[error("frame carries a message type this peer does not know ({0})")]
    UnknownBody(u8),
}

impl DecodeError {
    /// The error code a receiver answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::UnknownBody(_) => ErrorCode::UnexpectedFrame,
            DecodeError::TooShort { .. }
            | DecodeError::LengthMismatch { .. }
            | DecodeError::WrongIdentifier { .. }
            | DecodeError::Invalid(_)
            | DecodeError::Missing(_) => ErrorCode::BadFrame,
        }
    }
}

/// A union member or required table, or `Missing(what)` when it is absent;
/// shared by both decoders.
pub(crate) fn need<T>(v: Option<T>, what: &'static str) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::Missing(what))
}

/// Checks the prefix matches the frame and the file identifier; shared by both root types.
pub(crate) fn check_identifier(buf: &[u8], ident: &'static str) -> Result<(), DecodeError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Err(DecodeError::TooShort {
            len: buf.len() as u32,
        });
    };
    let len = u32::from_le_bytes(*prefix);
    // What follows the prefix, compared as it is rather than the prefix plus
    // its own size: that sum overflows a 32-bit `usize` for a prefix near
    // `u32::MAX`. Saturated: a buffer over 4 GiB cannot match any prefix.
    let body = u32::try_from(buf.len() - LENGTH_PREFIX_BYTES).unwrap_or(u32::MAX);
    if len != body {
        return Err(DecodeError::LengthMismatch {
            prefix: len,
            actual: body,
        });
    }
    // Checked apart from the mismatch: a short frame whose prefix is right
    // (8 bytes, prefix 4) used to be reported as a mismatch of 4 against 4.
    if len < MIN_FRAME_LEN {
        return Err(DecodeError::TooShort { len });
    }
    if !flatbuffers::buffer_has_identifier(buf, ident, true) {
        return Err(DecodeError::WrongIdentifier { expected: ident });
    }
    Ok(())
}

/// Finishes a builder as a size-prefixed buffer and returns the frame bytes.
pub(crate) fn finish_frame<T>(
    mut fbb: flatbuffers::FlatBufferBuilder<'_>,
    root: flatbuffers::WIPOffset<T>,
    ident: &'static str,
) -> Vec<u8> {
    fbb.finish_size_prefixed(root, Some(ident));
    fbb.finished_data().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_smaller_and_clamps() {
        assert_eq!(negotiate_max_frame_size(0, 0), DEFAULT_MAX_FRAME_SIZE);
        assert_eq!(negotiate_max_frame_size(8192, 65536), 8192);
        assert_eq!(negotiate_max_frame_size(1, 65536), MIN_MAX_FRAME_SIZE);
        assert_eq!(
            negotiate_max_frame_size(u32::MAX, u32::MAX),
            MAX_FRAME_SIZE_CEILING
        );
    }

    /// A short frame is reported for what is wrong with it: an 8-byte buffer
    /// whose prefix (4) matches what follows it is too short for a FlatBuffer,
    /// not a mismatch of 4 against 4; a prefix that does not match names both.
    #[test]
    fn short_or_mismatched_frames_say_what_differs() {
        let err = |buf: &[u8]| check_identifier(buf, "OPH1").unwrap_err();
        let short = err(&[4, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(short, DecodeError::TooShort { len: 4 });
        assert_eq!(
            short.to_string(),
            "frame of 4 bytes is too short to hold a FlatBuffer (the least is 8)"
        );
        let mismatch = err(&[9, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            mismatch.to_string(),
            "length prefix says 9 bytes but the frame holds 4"
        );
        // A prefix near u32::MAX: a mismatch, with no overflow on the way.
        assert_eq!(
            err(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]),
            DecodeError::LengthMismatch {
                prefix: u32::MAX,
                actual: 4
            }
        );
        for e in [short, mismatch] {
            assert_eq!(e.code(), ErrorCode::BadFrame, "wire code unchanged: {e}");
        }
    }

    #[test]
    fn header_rejects_oversized_and_tiny_frames_before_reading_them() {
        let max = 1024;
        assert_eq!(
            FrameHeader::parse(1024u32.to_le_bytes(), max),
            Ok(FrameHeader { len: 1024 })
        );
        assert_eq!(
            FrameHeader::parse(1025u32.to_le_bytes(), max),
            Err(DecodeError::FrameTooLarge { len: 1025, max })
        );
        assert_eq!(
            FrameHeader::parse(u32::MAX.to_le_bytes(), max)
                .unwrap_err()
                .code(),
            ErrorCode::FrameTooLarge
        );
        assert_eq!(
            FrameHeader::parse(0u32.to_le_bytes(), max).unwrap_err().code(),
            ErrorCode::BadFrame
        );
    }
}

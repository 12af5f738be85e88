//! Reading and writing whole frames on quinn streams, with the size check done
//! before anything is allocated for the body.

use outpost_schema::{DecodeError, ErrorCode, FrameHeader, LENGTH_PREFIX_BYTES};
use quinn::{ReadExactError, RecvStream};
use thiserror::Error;

/// Why a frame could not be read.
#[derive(Debug, Error)]
pub enum FrameReadError {
    /// The length prefix or body was invalid; answer with `code()`.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The stream or connection failed (reset, closed, lost).
    #[error("stream failed: {0}")]
    Stream(#[from] quinn::ReadError),
}

impl FrameReadError {
    /// The error code to answer with, when the peer is still there to hear it.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameReadError::Decode(e) => e.code(),
            FrameReadError::Truncated => ErrorCode::BadFrame,
            FrameReadError::Stream(_) => ErrorCode::Unspecified,
        }
    }
}

/// Reads one whole frame (prefix included), or `None` if the stream ended cleanly
/// between frames. Frames longer than `max` are refused before their body is read.
pub async fn read_frame(recv: &mut RecvStream, max: u32) -> Result<Option<Vec<u8>>, FrameReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(_)) => return Err(FrameReadError::Truncated),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let header = FrameHeader::parse(prefix, max)?;
    let mut frame = vec![0u8; LENGTH_PREFIX_BYTES + header.len as usize];
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
    match recv.read_exact(&mut frame[LENGTH_PREFIX_BYTES..]).await {
        Ok(()) => Ok(Some(frame)),
        Err(ReadExactError::FinishedEarly(_)) => Err(FrameReadError::Truncated),
        Err(ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

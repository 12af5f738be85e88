//! Async reading and writing of whole frames over QUIC streams.
//!
//! Reading checks the length prefix against the negotiated maximum with
//! [`FrameHeader::parse`] *before* allocating or reading the body, then hands the
//! whole frame (prefix included) to the schema's verifying `decode`.

use outpost_schema::{ChannelMsg, ControlMsg, DecodeError, FrameHeader, LENGTH_PREFIX_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream or connection failed (or ended in the middle of a frame).
    Io(String),
    /// The bytes violate the framing or verification rules.
    Decode(DecodeError),
}

/// Reads one whole frame (length prefix included). `Ok(None)` is a clean end
/// of stream at a frame boundary.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let mut got = 0;
    while got < prefix.len() {
        let n = r
            .read(&mut prefix[got..])
            .await
            .map_err(|e| ReadError::Io(e.to_string()))?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ReadError::Io("stream ended inside a length prefix".into()))
            };
        }
        got += n;
    }
    let header = FrameHeader::parse(prefix, max).map_err(ReadError::Decode)?;
    let mut frame = vec![0u8; LENGTH_PREFIX_BYTES + header.len as usize];
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
    r.read_exact(&mut frame[LENGTH_PREFIX_BYTES..])
        .await
        .map_err(|e| ReadError::Io(format!("stream ended inside a frame: {e}")))?;
    Ok(Some(frame))
}

/// Reads and decodes one control-stream frame.
pub(crate) async fn read_control<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<ControlMsg>, ReadError> {
    match read_frame(r, max).await? {
        None => Ok(None),
        Some(f) => ControlMsg::decode(&f).map(Some).map_err(ReadError::Decode),
    }
}

/// Reads and decodes one channel-stream frame.
pub(crate) async fn read_channel<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<ChannelMsg>, ReadError> {
    match read_frame(r, max).await? {
        None => Ok(None),
        Some(f) => ChannelMsg::decode(&f).map(Some).map_err(ReadError::Decode),
    }
}

/// Writes one already-encoded frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), String> {
    w.write_all(frame).await.map_err(|e| e.to_string())
}

/// Size of an encoded frame's FlatBuffer (what the maximum applies to).
pub(crate) fn body_len(frame: &[u8]) -> usize {
    frame.len().saturating_sub(LENGTH_PREFIX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_schema::{ErrorCode, HANDSHAKE_MAX_FRAME_SIZE};

    fn ping(nonce: u64) -> Vec<u8> {
        ControlMsg::Ping { nonce }.encode()
    }

    #[tokio::test]
    async fn reads_consecutive_frames_then_clean_end() {
        let mut bytes = ping(1);
        bytes.extend(ping(2));
        let mut r = &bytes[..];
        let max = HANDSHAKE_MAX_FRAME_SIZE;
        assert_eq!(
            read_control(&mut r, max).await.unwrap(),
            Some(ControlMsg::Ping { nonce: 1 })
        );
        assert_eq!(
            read_control(&mut r, max).await.unwrap(),
            Some(ControlMsg::Ping { nonce: 2 })
        );
        assert_eq!(read_control(&mut r, max).await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_the_body_is_read() {
        // A prefix announcing 4 GiB and no body: must fail on the prefix alone,
        // without allocating or waiting for the body.
        let bytes = u32::MAX.to_le_bytes();
        let mut r = &bytes[..];
        match read_frame(&mut r, 4096).await {
            Err(ReadError::Decode(e)) => assert_eq!(e.code(), ErrorCode::FrameTooLarge),
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        // one byte over the maximum
        let frame = ping(7);
        let max = body_len(&frame) as u32 - 1;
        let mut r = &frame[..];
        assert!(matches!(
            read_frame(&mut r, max).await,
            Err(ReadError::Decode(DecodeError::FrameTooLarge { .. }))
        ));
        // exactly the maximum is fine
        let mut r = &frame[..];
        assert!(read_frame(&mut r, max + 1).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn tiny_truncated_and_garbage_frames_are_errors_not_panics() {
        let bytes = 3u32.to_le_bytes();
        let mut r = &bytes[..];
        assert!(matches!(
            read_frame(&mut r, 4096).await,
            Err(ReadError::Decode(DecodeError::TooShort { .. }))
        ));

        let frame = ping(9);
        let mut r = &frame[..frame.len() - 1];
        assert!(matches!(read_frame(&mut r, 4096).await, Err(ReadError::Io(_))));

        let mut r = &frame[..2];
        assert!(matches!(read_frame(&mut r, 4096).await, Err(ReadError::Io(_))));

        let mut garbage = 32u32.to_le_bytes().to_vec();
        garbage.extend([0xAB; 32]);
        let mut r = &garbage[..];
        assert!(matches!(
            read_control(&mut r, 4096).await,
            Err(ReadError::Decode(_))
        ));

        // a valid channel frame on the control stream: wrong file identifier
        let chan = ChannelMsg::Open(outpost_schema::ChannelKind::Echo).encode();
        let mut r = &chan[..];
        assert!(matches!(
            read_control(&mut r, 4096).await,
            Err(ReadError::Decode(DecodeError::WrongIdentifier { .. }))
        ));
    }
}

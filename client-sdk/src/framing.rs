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

/// Reads frames from a stream inside a `select!` loop: the frame being read is
/// kept here, not in the future, so a read dropped half-way (another branch
/// won) loses no byte and the next call continues the same frame.
///
/// That holds because every await is one `AsyncRead::read`, which is
/// cancel-safe (no byte is taken unless it completes), and progress is stored
/// in `self` as soon as it completes. After an error the stream's position is
/// undefined: callers stop reading it.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    prefix: [u8; LENGTH_PREFIX_BYTES],
    /// Bytes of the current frame read so far, prefix included.
    got: usize,
    /// The current frame (prefix included), allocated once its prefix was
    /// read and checked.
    frame: Vec<u8>,
}

impl FrameReader {
    /// Reads the rest of the current frame (length prefix included). `Ok(None)`
    /// is a clean end of stream at a frame boundary.
    pub(crate) async fn frame<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        max: u32,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        while self.got < LENGTH_PREFIX_BYTES {
            let n = r
                .read(&mut self.prefix[self.got..])
                .await
                .map_err(|e| ReadError::Io(e.to_string()))?;
            if n == 0 {
                return if self.got == 0 {
                    Ok(None)
                } else {
                    Err(ReadError::Io("stream ended inside a length prefix".into()))
                };
            }
            self.got += n;
            if self.got == LENGTH_PREFIX_BYTES {
                // Checked before anything is allocated for the body.
                let header = FrameHeader::parse(self.prefix, max).map_err(ReadError::Decode)?;
                self.frame = vec![0u8; LENGTH_PREFIX_BYTES + header.len as usize];
                self.frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&self.prefix);
            }
        }
        while self.got < self.frame.len() {
            let n = r
                .read(&mut self.frame[self.got..])
                .await
                .map_err(|e| ReadError::Io(format!("stream ended inside a frame: {e}")))?;
            if n == 0 {
                return Err(ReadError::Io("stream ended inside a frame: early eof".into()));
            }
            self.got += n;
        }
        self.got = 0;
        Ok(Some(std::mem::take(&mut self.frame)))
    }

    /// Reads and decodes the next control-stream frame.
    pub(crate) async fn control<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        max: u32,
    ) -> Result<Option<ControlMsg>, ReadError> {
        match self.frame(r, max).await? {
            None => Ok(None),
            Some(f) => ControlMsg::decode(&f).map(Some).map_err(ReadError::Decode),
        }
    }

    /// Reads and decodes the next channel-stream frame.
    pub(crate) async fn channel<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        max: u32,
    ) -> Result<Option<ChannelMsg>, ReadError> {
        match self.frame(r, max).await? {
            None => Ok(None),
            Some(f) => ChannelMsg::decode(&f).map(Some).map_err(ReadError::Decode),
        }
    }
}

/// Reads and decodes one control-stream frame.
pub(crate) async fn read_control<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<ControlMsg>, ReadError> {
    FrameReader::default().control(r, max).await
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
        match FrameReader::default().frame(&mut r, 4096).await {
            Err(ReadError::Decode(e)) => assert_eq!(e.code(), ErrorCode::FrameTooLarge),
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        // one byte over the maximum
        let frame = ping(7);
        let max = body_len(&frame) as u32 - 1;
        let mut r = &frame[..];
        assert!(matches!(
            FrameReader::default().frame(&mut r, max).await,
            Err(ReadError::Decode(DecodeError::FrameTooLarge { .. }))
        ));
        // exactly the maximum is fine
        let mut r = &frame[..];
        assert!(FrameReader::default()
            .frame(&mut r, max + 1)
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn tiny_truncated_and_garbage_frames_are_errors_not_panics() {
        let bytes = 3u32.to_le_bytes();
        let mut r = &bytes[..];
        assert!(matches!(
            FrameReader::default().frame(&mut r, 4096).await,
            Err(ReadError::Decode(DecodeError::TooShort { .. }))
        ));

        let frame = ping(9);
        let mut r = &frame[..frame.len() - 1];
        assert!(matches!(
            FrameReader::default().frame(&mut r, 4096).await,
            Err(ReadError::Io(_))
        ));

        let mut r = &frame[..2];
        assert!(matches!(
            FrameReader::default().frame(&mut r, 4096).await,
            Err(ReadError::Io(_))
        ));

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

    /// Hands out one byte per completed read, and makes every other poll
    /// pending (waking itself): a stream whose frames arrive in pieces.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        pending_next: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let this = &mut *self;
            this.pending_next = !this.pending_next;
            if this.pending_next {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            if this.pos < this.data.len() && buf.remaining() > 0 {
                buf.put_slice(&this.data[this.pos..=this.pos]);
                this.pos += 1;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Every read future is polled once and dropped when pending (as a
    /// `select!` does when another branch wins): the frames still come out
    /// whole and in order, and the stream's clean end after them.
    #[test]
    fn a_frame_reader_keeps_a_half_read_frame_when_its_future_is_dropped() {
        use futures::FutureExt;
        let msgs = [
            ControlMsg::Pong { nonce: 1 },
            ControlMsg::ResumeTokenRefresh {
                resume_token: "a resume token long enough to span many reads".into(),
            },
            ControlMsg::Pong { nonce: 3 },
        ];
        let mut data = Vec::new();
        for m in &msgs {
            data.extend(m.encode());
        }
        let total = data.len();
        let mut r = Trickle {
            data,
            pos: 0,
            pending_next: false,
        };
        let mut reader = FrameReader::default();
        let (mut got, mut dropped) = (Vec::new(), 0);
        let end = loop {
            match reader.control(&mut r, 4096).now_or_never() {
                None => dropped += 1,
                Some(Ok(Some(m))) => got.push(m),
                Some(other) => break other,
            }
            assert!(dropped <= 4 * total, "no progress");
        };
        assert!(matches!(end, Ok(None)), "{end:?}");
        assert_eq!(got, msgs);
        assert!(dropped >= total, "the reads were cut {dropped} times");
    }

    /// The same split stream through a real `select!` loop whose other branch
    /// (as a heartbeat tick would) wins whenever the read has to wait, so the
    /// read is dropped in the middle of a frame again and again.
    ///
    /// The other branch is a future that is always ready, polled after the
    /// read: deterministic, unlike a fast timer, which tokio fires only when
    /// its driver turns (so a loop that never parked saw it fire 0 times on
    /// some runs). Its arm yields, so the writer on the same thread runs.
    #[tokio::test]
    async fn a_frame_reader_in_a_select_loop_reads_split_frames_whole() {
        let msgs: Vec<ControlMsg> = (0..20).map(|nonce| ControlMsg::Pong { nonce }).collect();
        let (mut w, mut r) = tokio::io::duplex(64);
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| m.encode()).collect();
        let total = bytes.len();
        let writer = tokio::spawn(async move {
            for b in bytes {
                w.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let (mut reader, mut got, mut cut) = (FrameReader::default(), Vec::new(), 0usize);
        loop {
            tokio::select! {
                biased;
                m = reader.control(&mut r, 4096) => match m.unwrap() {
                    Some(m) => got.push(m),
                    None => break,
                },
                () = std::future::ready(()) => {
                    cut += 1;
                    tokio::task::yield_now().await;
                }
            }
            assert!(cut <= 4 * total, "no progress");
        }
        writer.await.unwrap();
        assert_eq!(got, msgs);
        assert!(cut > msgs.len(), "the reads were cut {cut} times");
    }
}

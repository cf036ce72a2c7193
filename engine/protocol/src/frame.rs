//! Framing: a frame is a 4-byte big-endian length followed by that many bytes, one MessagePack value.
//!
//! Invariant: [`decode_frame`] accepts exactly the frames [`encode_frame`] can write for messages within the size
//! limit, and decoding an encoded message gives the message back. [`FrameReader`] refuses an oversized frame as soon
//! as its prefix arrives, before buffering its payload.

use serde::Serialize;
use thiserror::Error;

/// Largest frame payload a client may send (bytes after the length prefix). A larger length prefix closes the
/// connection with [`crate::ErrorCode::FrameTooLarge`].
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Largest frame payload an operator's session (the admin identity) may send: a `Publish` carries a module.
pub const MAX_ADMIN_FRAME: usize = 64 * 1024 * 1024;

/// Largest frame payload the server sends. A tick's rows for one client that would exceed it are split over
/// several `Tick` frames of the same tick.
pub const MAX_SERVER_FRAME: usize = 4 * 1024 * 1024;

/// Length of the frame prefix.
pub const FRAME_PREFIX: usize = 4;

/// Why bytes are not a frame.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The length prefix exceeds the limit.
    #[error("a frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a well-formed message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Append one frame holding `message` to `out`.
///
/// # Panics
///
/// If the message encodes to more than `u32::MAX` bytes (far beyond any limit).
pub fn encode_frame<M: Serialize>(message: &M, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX]);
    rmp_serde::encode::write(out, message).expect("writing to a Vec cannot fail");
    let len = u32::try_from(out.len() - start - FRAME_PREFIX).expect("frame below 4 GiB");
    out[start..start + FRAME_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// The payload length announced by a frame prefix, checked against `max`.
///
/// # Errors
///
/// [`FrameError::TooLarge`].
pub fn frame_len(prefix: [u8; FRAME_PREFIX], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decode one frame's payload (the bytes after the prefix) as a message: exactly one MessagePack value.
///
/// # Errors
///
/// [`FrameError::Malformed`] if it is not one well-formed message (trailing bytes included).
pub fn decode_frame<M: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<M, FrameError> {
    let mut rest = payload;
    let message = rmp_serde::decode::from_read(&mut rest)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} bytes follow the message",
            rest.len()
        )));
    }
    Ok(message)
}

/// A sans-IO reader of frames from a byte stream: feed it bytes as they arrive, take whole payloads out.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl FrameReader {
    /// A reader accepting payloads of at most `max` bytes.
    #[must_use]
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Change the largest payload accepted from the next frame on (e.g. once a session is known to be the
    /// operator's).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        // Drop consumed frames when they are all consumed or many, so the buffer does not grow with the stream.
        if self.start > 0 && (self.start == self.buf.len() || self.start >= 64 * 1024) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, if one has arrived.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as a prefix announces more than the limit (before the payload arrives).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(prefix) = avail.first_chunk::<FRAME_PREFIX>() else {
            return Ok(None);
        };
        let len = frame_len(*prefix, self.max)?;
        if avail.len() < FRAME_PREFIX + len {
            return Ok(None);
        }
        let from = self.start + FRAME_PREFIX;
        self.start = from + len;
        Ok(Some(&self.buf[from..self.start]))
    }

    /// Bytes received but not yet returned as a frame.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMessage, Filter, Token};

    fn frames(messages: &[ClientMessage]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            encode_frame(m, &mut out);
        }
        out
    }

    #[test]
    fn the_documented_bytes_of_a_call() {
        let call = ClientMessage::Call {
            request: 7,
            reducer: "mv".into(),
            args: vec![0x90],
        };
        let bytes = frames(std::slice::from_ref(&call));
        // Length 14, then {"Call": [7, "mv", bin [0x90]]}.
        assert_eq!(
            bytes,
            [
                0, 0, 0, 14, 0x81, 0xa4, b'C', b'a', b'l', b'l', 0x93, 0x07, 0xa2, b'm', b'v',
                0xc4, 0x01, 0x90
            ]
        );
        assert_eq!(decode_frame::<ClientMessage>(&bytes[4..]).unwrap(), call);
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let messages = vec![
            ClientMessage::Hello {
                versions: vec![1],
                token: Some(Token([3; 32])),
            },
            ClientMessage::Subscribe {
                request: 1,
                table: "player".into(),
                filter: Filter::Eq {
                    column: "zone".into(),
                    value: vec![0x05],
                },
            },
            ClientMessage::Unsubscribe {
                request: 2,
                table: "player".into(),
            },
        ];
        let bytes = frames(&messages);
        for chunk in 1..bytes.len() {
            let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                reader.push(piece);
                while let Some(payload) = reader.next_frame().unwrap() {
                    got.push(decode_frame::<ClientMessage>(payload).unwrap());
                }
            }
            assert_eq!(got, messages, "chunk size {chunk}");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_its_payload_arrives() {
        let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
        reader.push(&(MAX_CLIENT_FRAME as u32 + 1).to_be_bytes());
        assert!(matches!(
            reader.next_frame(),
            Err(FrameError::TooLarge { len, .. }) if len == MAX_CLIENT_FRAME + 1
        ));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        assert!(matches!(
            decode_frame::<ClientMessage>(&[0xc1]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_frame::<ClientMessage>(&[0xa4, b'N', b'o', b'p', b'e']),
            Err(FrameError::Malformed(_))
        ));
        let mut ok = Vec::new();
        encode_frame(
            &ClientMessage::Unsubscribe {
                request: 1,
                table: "t".into(),
            },
            &mut ok,
        );
        ok.push(0xc0);
        assert!(matches!(
            decode_frame::<ClientMessage>(&ok[4..]),
            Err(FrameError::Malformed(m)) if m.contains("1 bytes follow")
        ));
    }
}

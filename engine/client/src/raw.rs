//! A connection that speaks no protocol of its own: bytes in, bytes out on the one stream.
//!
//! For testing servers and writing tools (the server's tests send malformed, oversized and out-of-order frames
//! with it). It opens the session like [`crate::Connection`] (either transport, the same certificate checks) but
//! sends no `Hello`. Native builds only.

use crate::connection::{ClientConfig, ConnectError, WriteError};
use crate::wire::{self, RecvHalf, SendHalf, Session};

/// A connection to a Locus server (QUIC, or a WebTransport session) with its bidirectional stream open, and
/// nothing sent yet.
#[derive(Debug)]
pub struct RawConnection {
    session: Session,
    send: SendHalf,
    recv: RecvHalf,
    buf: Box<[u8]>,
}

impl RawConnection {
    /// Connect (handshakes, certificate checked, the WebTransport `CONNECT` if WebTransport) and open the
    /// stream. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConnectError`].
    pub async fn open(config: &ClientConfig) -> Result<RawConnection, ConnectError> {
        let wire::Opened {
            session,
            send,
            recv,
            ..
        } = wire::open(config).await?;
        Ok(RawConnection {
            session,
            send,
            recv,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
        })
    }

    /// Send bytes as they are.
    ///
    /// # Errors
    ///
    /// The stream's write error (e.g. the server closed the connection).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.send.write_all(bytes).await
    }

    /// The next bytes received, or `None` once the stream or the connection has ended.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        match self.recv.read(&mut self.buf).await {
            Ok(Some(n)) => Some(self.buf[..n].to_vec()),
            Ok(None) | Err(_) => None,
        }
    }

    /// The QUIC connection (to see why it closed, or to close it). Over WebTransport, the QUIC connection the
    /// session runs on: closing it ends the session without a WebTransport close code.
    #[must_use]
    pub fn connection(&self) -> &quinn::Connection {
        self.session.quic()
    }
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        self.session.endpoint().close(0u32.into(), b"done");
    }
}

//! A connection that speaks no protocol of its own: bytes in, bytes out on the one stream.
//!
//! For testing servers and writing tools (the server's tests send malformed, oversized and out-of-order frames
//! with it). It pins the certificate like [`crate::Connection`] but sends no `Hello`.

use crate::connection::{ClientConfig, ConnectError, Quic, quic_connect};

/// A QUIC connection to a Locus server with its bidirectional stream open, and nothing sent yet.
#[derive(Debug)]
pub struct RawConnection {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Box<[u8]>,
}

impl RawConnection {
    /// Connect (QUIC handshake, pinned certificate) and open the stream. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConnectError`].
    pub async fn open(config: &ClientConfig) -> Result<RawConnection, ConnectError> {
        let quic = Quic::new(config)?;
        let (conn, _) = quic_connect(&quic.endpoint, quic.config.clone(), config).await?;
        // Opening a stream waits for nothing from the server.
        let (send, recv) = conn.open_bi().await?;
        Ok(RawConnection {
            endpoint: quic.endpoint,
            conn,
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
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), quinn::WriteError> {
        self.send.write_all(bytes).await
    }

    /// The next bytes received, or `None` once the stream or the connection has ended.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        match self.recv.read(&mut self.buf).await {
            Ok(Some(n)) => Some(self.buf[..n].to_vec()),
            Ok(None) | Err(_) => None,
        }
    }

    /// The QUIC connection (to see why it closed, or to close it).
    #[must_use]
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"done");
    }
}

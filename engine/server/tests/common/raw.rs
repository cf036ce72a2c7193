//! A raw protocol connection over either transport, for sending what a well-behaved client never would (used by
//! `server.rs`).
//!
//! [`Via::Quic`] is the Rust SDK's [`locus_client::RawConnection`]: a QUIC connection (ALPN `locus/1`) pinning the
//! server's certificate. [`Via::Web`] is a WebTransport session (ALPN `h3`, `CONNECT` to
//! `https://127.0.0.1:PORT/locus`) opened with `web-transport-quinn`'s client, which speaks the HTTP/3 a browser
//! does, trusting the server's web certificate by its hash as a page does. It is not the SDK's `RawConnection`
//! over WebTransport because that hides the session (its `recv` turns every error into `None`, and `connection()`
//! is the QUIC connection underneath, whose close says nothing of the session's close code, which arrives in a
//! `CloseWebTransportSession` capsule on the `CONNECT` stream): [`Raw::close_code`] needs the session.

use std::time::Duration;

use locus_client::{ClientConfig, Trust};
use locus_protocol::{
    ClientMessage, ErrorCode, FrameReader, MAX_SERVER_FRAME, PROTOCOL_VERSION, ServerMessage,
};
use locus_server::Server;
use web_transport_quinn as wt;

use crate::common::WAIT;

/// The transport a raw connection reaches the server over (protocol.md §1): the same UDP port, and from the first
/// frame on the same protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// A native QUIC connection, ALPN `locus/1`.
    Quic,
    /// A browser's way: a WebTransport session, ALPN `h3`, `CONNECT /locus`.
    Web,
}

/// Define, for a function `$body(Via)`, a module `$body` of two tests that run it once per transport:
/// `$body::quic` and `$body::web_transport` (the latter with the attributes given after `web:`, e.g. an `ignore`).
macro_rules! over_both_transports {
    ($body:ident $(, web: #[$web:meta])?) => {
        mod $body {
            #[test]
            fn quic() {
                super::$body(crate::raw::Via::Quic);
            }

            #[test]
            $(#[$web])?
            fn web_transport() {
                super::$body(crate::raw::Via::Web);
            }
        }
    };
}
pub(crate) use over_both_transports;

/// The session and its one bidirectional stream.
#[expect(
    clippy::large_enum_variant,
    reason = "one per test connection, made once and never moved in bulk"
)]
enum Wire {
    Quic(locus_client::RawConnection),
    Web(WebWire),
}

/// A WebTransport session with its stream open.
struct WebWire {
    session: wt::Session,
    send: wt::SendStream,
    recv: wt::RecvStream,
    buf: Box<[u8]>,
}

impl Drop for WebWire {
    fn drop(&mut self) {
        // Close the QUIC connection underneath at once (HTTP/3's H3_NO_ERROR), as `RawConnection` does when
        // dropped, so the server hears of it now rather than after its idle timeout. (`wt::Session::close` would
        // send a capsule from a task on the test's runtime, which may never run again.)
        quinn::Connection::close(&self.session, quinn::VarInt::from_u32(0x100), b"done");
    }
}

/// A raw protocol connection: bytes in and out of the session's one stream, nothing sent yet.
pub(crate) struct Raw {
    pub(crate) rt: tokio::runtime::Runtime,
    wire: Wire,
    reader: FrameReader,
}

impl Raw {
    /// Connect to `server` over `via` and open the stream.
    pub(crate) fn open(server: &Server, via: Via) -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = server.local_addr();
        let wire = match via {
            Via::Quic => {
                let config = ClientConfig::new(addr, Trust::Fingerprint(server.fingerprint()));
                let conn = rt
                    .block_on(locus_client::RawConnection::open(&config))
                    .expect("raw connect");
                Wire::Quic(conn)
            }
            Via::Web => {
                let hashes = server.web_certificate_hashes();
                let url =
                    url::Url::parse(&format!("https://127.0.0.1:{}/locus", addr.port())).unwrap();
                let (session, send, recv) = rt.block_on(async {
                    let client = wt::ClientBuilder::new()
                        .with_server_certificate_hashes(hashes.iter().map(|h| h.to_vec()).collect())
                        .expect("a WebTransport client");
                    let session = tokio::time::timeout(WAIT, client.connect(url))
                        .await
                        .expect("the session opens in time")
                        .expect("a WebTransport session");
                    let (send, recv) = session.open_bi().await.expect("the session's stream");
                    (session, send, recv)
                });
                Wire::Web(WebWire {
                    session,
                    send,
                    recv,
                    buf: vec![0; 64 * 1024].into_boxed_slice(),
                })
            }
        };
        Raw {
            rt,
            wire,
            reader: FrameReader::new(MAX_SERVER_FRAME),
        }
    }

    /// The QUIC connection (over WebTransport, the one the session runs on).
    pub(crate) fn quic(&self) -> &quinn::Connection {
        match &self.wire {
            Wire::Quic(conn) => conn.connection(),
            Wire::Web(web) => &web.session,
        }
    }

    /// The WebTransport session. Panics over QUIC.
    pub(crate) fn web(&self) -> &wt::Session {
        match &self.wire {
            Wire::Quic(_) => panic!("a QUIC connection has no WebTransport session"),
            Wire::Web(web) => &web.session,
        }
    }

    /// Send bytes as they are; an error once the server stopped taking them (e.g. it closed the session).
    pub(crate) fn try_send_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.wire {
            Wire::Quic(conn) => self
                .rt
                .block_on(conn.send(bytes))
                .map_err(|e| e.to_string()),
            Wire::Web(web) => self
                .rt
                .block_on(web.send.write_all(bytes))
                .map_err(|e| e.to_string()),
        }
    }

    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) {
        self.try_send_bytes(bytes).expect("send");
    }

    pub(crate) fn send(&mut self, message: &ClientMessage) {
        let mut out = Vec::new();
        locus_protocol::encode_frame(message, &mut out);
        self.send_bytes(&out);
    }

    /// The next bytes received, or `None` once the stream or the session has ended. Panics after [`WAIT`].
    fn recv(&mut self) -> Option<Vec<u8>> {
        let received = match &mut self.wire {
            Wire::Quic(conn) => self
                .rt
                .block_on(async { tokio::time::timeout(WAIT, conn.recv()).await }),
            Wire::Web(web) => self.rt.block_on(async {
                tokio::time::timeout(WAIT, async {
                    match web.recv.read(&mut web.buf).await {
                        Ok(Some(n)) => Some(web.buf[..n].to_vec()),
                        Ok(None) | Err(_) => None,
                    }
                })
                .await
            }),
        };
        received.expect("the server answers in time")
    }

    /// The next server message, or `None` once the stream or connection ends.
    pub(crate) fn next(&mut self) -> Option<ServerMessage> {
        loop {
            if let Some(payload) = self
                .reader
                .next_frame()
                .expect("server frames are well-formed")
            {
                return Some(
                    locus_protocol::decode_frame(payload).expect("server messages decode"),
                );
            }
            let chunk = self.recv()?;
            self.reader.push(&chunk);
        }
    }

    /// The next `Error` (skipping other messages).
    pub(crate) fn next_error(&mut self) -> Option<(ErrorCode, bool, String)> {
        loop {
            match self.next()? {
                ServerMessage::Error {
                    code,
                    fatal,
                    message,
                    ..
                } => return Some((code, fatal, message)),
                _ => continue,
            }
        }
    }

    pub(crate) fn hello(&mut self) {
        self.send(&ClientMessage::Hello {
            versions: vec![PROTOCOL_VERSION],
            token: None,
        });
        assert!(matches!(self.next(), Some(ServerMessage::Welcome(_))));
    }

    /// How the server closed the connection (waiting up to [`WAIT`] for it): over QUIC its application close
    /// (`CONNECTION_CLOSE` of type 0x1d), over WebTransport the session's close (the `CloseWebTransportSession`
    /// capsule, what a browser reads as `WebTransportCloseInfo`): the close code and the reason. `Err` says how it
    /// ended otherwise.
    pub(crate) fn close(&self) -> Result<(u64, String), String> {
        match &self.wire {
            Wire::Quic(conn) => {
                let conn = conn.connection().clone();
                let closed = self
                    .rt
                    .block_on(async { tokio::time::timeout(WAIT, conn.closed()).await })
                    .expect("the connection closes");
                match closed {
                    quinn::ConnectionError::ApplicationClosed(close) => Ok((
                        close.error_code.into_inner(),
                        String::from_utf8_lossy(&close.reason).into_owned(),
                    )),
                    e => Err(format!("not an application close: {e}")),
                }
            }
            Wire::Web(web) => {
                let session = web.session.clone();
                let closed = self
                    .rt
                    .block_on(async { tokio::time::timeout(WAIT, session.closed()).await })
                    .expect("the session closes");
                match closed {
                    wt::SessionError::WebTransportError(wt::WebTransportError::Closed(
                        code,
                        reason,
                    )) => Ok((u64::from(code), reason)),
                    e => Err(format!("no session close code: {e}")),
                }
            }
        }
    }

    /// The close code of [`Raw::close`].
    pub(crate) fn close_code(&self) -> Result<u64, String> {
        self.close().map(|(code, _)| code)
    }

    /// Close the connection now (code 0: the server hears of it at once, not after its idle timeout).
    pub(crate) fn leave(self) {
        match &self.wire {
            Wire::Quic(conn) => conn.connection().close(0u32.into(), b"gone"),
            Wire::Web(web) => {
                quinn::Connection::close(&web.session, quinn::VarInt::from_u32(0x100), b"gone")
            }
        }
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    }

    /// Stop answering anything at all: the runtime goes first, so not even a close goes out.
    pub(crate) fn go_silent(self) {
        let Raw { rt, wire, .. } = self;
        drop(rt);
        std::mem::forget(wire);
    }
}

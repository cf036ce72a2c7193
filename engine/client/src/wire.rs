//! The transports underneath a connection: open a session and its one bidirectional stream, read and write the
//! stream, read datagrams, close. Everything above (frames, `Hello`/`Welcome`, the token, the cache) is transport-
//! agnostic and lives in [`crate::connection`].
//!
//! Three kinds of session, each in the builds that have it:
//! - QUIC (native): a quinn connection, ALPN `locus/1`, pinning [`Trust`](crate::Trust).
//! - WebTransport over quinn (native): an HTTP/3 connection (ALPN `h3`) and a session in it
//!   (`web-transport-quinn`), pinning the given certificate hashes. The connection's transport parameters are the
//!   same as QUIC's (keep-alive, idle timeout, datagrams accepted, 4-byte connection IDs).
//! - WebTransport in the browser (`wasm32`): the browser's `WebTransport` (`web-transport-wasm`); the browser
//!   checks the certificate hashes (`serverCertificateHashes`).

use std::fmt;

use crate::connection::{ClientConfig, ConnectError, ReceiveError, WriteError};
#[cfg(target_arch = "wasm32")]
use crate::rt;
use crate::rt::Instant;
use crate::transport::{Transport, WebTransportConfig};

#[cfg(not(target_arch = "wasm32"))]
use web_transport_quinn as wtq;
#[cfg(target_arch = "wasm32")]
use web_transport_wasm as wtw;

/// An open session: QUIC connection or WebTransport session.
pub(crate) enum Session {
    /// Native QUIC.
    #[cfg(not(target_arch = "wasm32"))]
    Quic {
        endpoint: quinn::Endpoint,
        conn: quinn::Connection,
    },
    /// Native WebTransport.
    #[cfg(not(target_arch = "wasm32"))]
    Web {
        endpoint: quinn::Endpoint,
        session: Box<wtq::Session>,
    },
    /// The browser's WebTransport.
    #[cfg(target_arch = "wasm32")]
    Browser(wtw::Session),
}

/// The sending half of the session's one stream.
pub(crate) enum SendHalf {
    #[cfg(not(target_arch = "wasm32"))]
    Quic(quinn::SendStream),
    #[cfg(not(target_arch = "wasm32"))]
    Web(wtq::SendStream),
    #[cfg(target_arch = "wasm32")]
    Browser(wtw::SendStream),
}

/// The receiving half of the session's one stream.
pub(crate) enum RecvHalf {
    #[cfg(not(target_arch = "wasm32"))]
    Quic(quinn::RecvStream),
    #[cfg(not(target_arch = "wasm32"))]
    Web(wtq::RecvStream),
    #[cfg(target_arch = "wasm32")]
    Browser(wtw::RecvStream),
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Session::Quic { conn, .. } => f.debug_tuple("Quic").field(conn).finish(),
            #[cfg(not(target_arch = "wasm32"))]
            Session::Web { session, .. } => f.debug_tuple("WebTransport").field(session).finish(),
            #[cfg(target_arch = "wasm32")]
            Session::Browser(session) => f
                .debug_tuple("WebTransport")
                .field(&session.url().as_str())
                .finish(),
        }
    }
}

impl fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendHalf")
    }
}

impl fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecvHalf")
    }
}

/// A session with its stream open, and the deadline left for the rest of the connect.
pub(crate) struct Opened {
    pub(crate) session: Session,
    pub(crate) send: SendHalf,
    pub(crate) recv: RecvHalf,
    pub(crate) deadline: Instant,
}

/// Open the session `config` names and its one bidirectional stream, within `config.connect_timeout`: QUIC or
/// HTTP/3 handshake ([`ConnectError::NoServer`] if nobody answers in time), the WebTransport `CONNECT` if
/// WebTransport, then the stream (opening it waits for nothing from the server).
pub(crate) async fn open(config: &ClientConfig) -> Result<Opened, ConnectError> {
    let deadline = Instant::now() + config.connect_timeout;
    match &config.transport {
        #[cfg(not(target_arch = "wasm32"))]
        Transport::Quic => native::open_quic(config, deadline).await,
        Transport::WebTransport(web) => {
            web.check()?;
            open_web(config, web, deadline).await
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
async fn open_web(
    config: &ClientConfig,
    web: &WebTransportConfig,
    deadline: Instant,
) -> Result<Opened, ConnectError> {
    native::open_web(config, web, deadline).await
}

#[cfg(target_arch = "wasm32")]
async fn open_web(
    config: &ClientConfig,
    web: &WebTransportConfig,
    deadline: Instant,
) -> Result<Opened, ConnectError> {
    let builder = wtw::ClientBuilder::new()
        .with_unreliable(true)
        .with_pooling(false);
    let client = if web.certificate_hashes.is_empty() {
        builder.with_system_roots()
    } else {
        builder.with_server_certificate_hashes(
            web.certificate_hashes.iter().map(|h| h.to_vec()).collect(),
        )
    };
    let session = match rt::timeout_at(deadline, client.connect(web.url.clone())).await {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => return Err(ConnectError::WebTransport(e.to_string())),
        Err(rt::Elapsed) => return Err(ConnectError::Timeout(config.connect_timeout)),
    };
    match rt::timeout_at(deadline, session.open_bi()).await {
        Ok(Ok((send, recv))) => Ok(Opened {
            session: Session::Browser(session),
            send: SendHalf::Browser(send),
            recv: RecvHalf::Browser(recv),
            deadline,
        }),
        Ok(Err(e)) => Err(ConnectError::WebTransport(e.to_string())),
        Err(rt::Elapsed) => Err(ConnectError::Timeout(config.connect_timeout)),
    }
}

impl RecvHalf {
    /// Read some bytes into `buf`; `None` once the server finished the stream. Cancel-safe.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReceiveError> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            RecvHalf::Quic(recv) => Ok(recv.read(buf).await?),
            #[cfg(not(target_arch = "wasm32"))]
            RecvHalf::Web(recv) => recv.read(buf).await.map_err(native::read_error),
            #[cfg(target_arch = "wasm32")]
            RecvHalf::Browser(recv) => std::future::poll_fn(|cx| recv.poll_read(cx, buf))
                .await
                .map_err(browser_error),
        }
    }
}

impl SendHalf {
    /// Write all of `bytes`.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            SendHalf::Quic(send) => Ok(send.write_all(bytes).await?),
            #[cfg(not(target_arch = "wasm32"))]
            SendHalf::Web(send) => send
                .write_all(bytes)
                .await
                .map_err(|e| WriteError::WebTransport(e.to_string())),
            #[cfg(target_arch = "wasm32")]
            SendHalf::Browser(send) => send
                .write(bytes)
                .await
                .map_err(|e| WriteError::WebTransport(e.to_string())),
        }
    }

    /// Finish the stream (nothing more will be written).
    pub(crate) fn finish(&mut self) {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            SendHalf::Quic(send) => {
                let _ = send.finish();
            }
            #[cfg(not(target_arch = "wasm32"))]
            SendHalf::Web(send) => {
                let _ = send.finish();
            }
            #[cfg(target_arch = "wasm32")]
            SendHalf::Browser(send) => {
                let _ = send.finish();
            }
        }
    }
}

impl Session {
    /// The next datagram's payload (over WebTransport, without the session's prefix). Cancel-safe.
    pub(crate) async fn read_datagram(&self) -> Result<Vec<u8>, ReceiveError> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Session::Quic { conn, .. } => Ok(conn.read_datagram().await?.to_vec()),
            #[cfg(not(target_arch = "wasm32"))]
            Session::Web { session, .. } => session
                .read_datagram()
                .await
                .map(|bytes| bytes.to_vec())
                .map_err(native::session_error),
            #[cfg(target_arch = "wasm32")]
            Session::Browser(session) => session
                .recv_datagram()
                .await
                .map(|bytes| bytes.to_vec())
                .map_err(browser_error),
        }
    }

    /// Close with application close code `code` (QUIC) or session close code `code` (WebTransport).
    pub(crate) fn close(&self, code: u32, reason: &[u8]) {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Session::Quic { conn, .. } => conn.close(code.into(), reason),
            #[cfg(not(target_arch = "wasm32"))]
            Session::Web { session, .. } => session.close(code, reason),
            #[cfg(target_arch = "wasm32")]
            Session::Browser(session) => session.close(code, &String::from_utf8_lossy(reason)),
        }
    }

    /// Wait (at most `linger`) until the close has reached the server.
    pub(crate) async fn linger(self, linger: std::time::Duration) {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Session::Quic { endpoint, .. } | Session::Web { endpoint, .. } => {
                let _ = tokio::time::timeout(linger, endpoint.wait_idle()).await;
            }
            #[cfg(target_arch = "wasm32")]
            Session::Browser(session) => {
                let _ = rt::timeout_at(Instant::now() + linger, session.closed()).await;
            }
        }
    }

    /// Why a WebTransport session ended, once its stream failed: the session's close code and reason if the
    /// server closed it with one (the stream's own error says less). `None` for QUIC, whose stream errors carry
    /// the connection's close already.
    pub(crate) async fn close_reason(&self) -> Option<ReceiveError> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Session::Quic { .. } => None,
            #[cfg(not(target_arch = "wasm32"))]
            Session::Web { session, .. } => session.close_reason().map(native::session_error),
            #[cfg(target_arch = "wasm32")]
            Session::Browser(session) => {
                // The browser settles `closed` after the stream's error; give it a moment.
                let wait = Instant::now() + std::time::Duration::from_millis(200);
                match rt::timeout_at(wait, session.closed()).await {
                    Ok(e @ wtw::Error::Session { .. }) => Some(browser_error(e)),
                    _ => None,
                }
            }
        }
    }

    /// The QUIC connection underneath (both native transports have one).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn quic(&self) -> &quinn::Connection {
        match self {
            Session::Quic { conn, .. } => conn,
            Session::Web { session, .. } => session,
        }
    }

    /// The local QUIC endpoint (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        match self {
            Session::Quic { endpoint, .. } | Session::Web { endpoint, .. } => endpoint,
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn browser_error(e: wtw::Error) -> ReceiveError {
    match e {
        wtw::Error::Session { code, reason } => ReceiveError::Closed { code, reason },
        e => ReceiveError::WebTransport(e.to_string()),
    }
}

/// The native transports: quinn endpoints and their TLS.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::sync::Arc;

    use locus_protocol::ALPN;
    use web_transport_quinn as wtq;

    use super::{Opened, RecvHalf, SendHalf, Session};
    use crate::connection::{
        ClientConfig, ConnectError, DATAGRAM_RECEIVE_BUFFER, IDLE_TIMEOUT, KEEP_ALIVE,
        ReceiveError, SERVER_NAME, endpoint_config,
    };
    use crate::rt::{self, Instant};
    use crate::transport::WebTransportConfig;
    use crate::trust::{PinnedCertVerifier, fingerprint_hex};

    /// WebTransport's ALPN (HTTP/3).
    const H3: &[u8] = b"h3";

    pub(super) async fn open_quic(
        config: &ClientConfig,
        deadline: Instant,
    ) -> Result<Opened, ConnectError> {
        let pinned = config.trust.pinned()?;
        let (quic, verifier) = pinned_config(vec![pinned], ALPN).map_err(ConnectError::Tls)?;
        let endpoint = endpoint(bind_for(config.addr)).map_err(ConnectError::Socket)?;
        let result = async {
            let conn =
                handshake(&endpoint, quic, config.addr, SERVER_NAME, deadline, config).await?;
            let (send, recv) = conn.open_bi().await?;
            Ok((conn, send, recv))
        }
        .await;
        match result {
            Ok((conn, send, recv)) => Ok(Opened {
                session: Session::Quic { endpoint, conn },
                send: SendHalf::Quic(send),
                recv: RecvHalf::Quic(recv),
                deadline,
            }),
            Err(e) => {
                endpoint.close(0u32.into(), b"connect failed");
                Err(mismatch(e, &verifier, &[pinned]))
            }
        }
    }

    pub(super) async fn open_web(
        config: &ClientConfig,
        web: &WebTransportConfig,
        deadline: Instant,
    ) -> Result<Opened, ConnectError> {
        if web.certificate_hashes.is_empty() {
            return Err(ConnectError::WebTransport(
                "a native client trusts the server's web certificate by its hashes only, and none were given"
                    .into(),
            ));
        }
        let port = web.url.port_or_known_default().unwrap_or(443);
        let (server_name, addr) = match web.url.host() {
            Some(url::Host::Domain(domain)) => {
                let mut found = tokio::net::lookup_host((domain, port)).await.map_err(|e| {
                    ConnectError::Resolve {
                        host: domain.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
                let addr = found.next().ok_or_else(|| ConnectError::Resolve {
                    host: domain.to_owned(),
                    reason: "no address".into(),
                })?;
                (domain.to_owned(), addr)
            }
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), SocketAddr::new(IpAddr::V4(ip), port)),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), SocketAddr::new(IpAddr::V6(ip), port)),
            // `check` refused a URL without a host.
            None => return Err(crate::transport::ParseWebTransportError::NoHost.into()),
        };
        let hashes = web.certificate_hashes.clone();
        let (quic, verifier) = pinned_config(hashes.clone(), H3).map_err(ConnectError::Tls)?;
        let endpoint = endpoint(bind_for(addr)).map_err(ConnectError::Socket)?;
        let result = async {
            let conn = handshake(&endpoint, quic, addr, &server_name, deadline, config).await?;
            let session = match rt::timeout_at(
                deadline,
                wtq::Session::connect(conn, web.url.clone()),
            )
            .await
            {
                Ok(Ok(session)) => session,
                Ok(Err(wtq::ClientError::Connection(e))) => return Err(e.into()),
                Ok(Err(e)) => return Err(ConnectError::WebTransport(e.to_string())),
                Err(rt::Elapsed) => return Err(ConnectError::Timeout(config.connect_timeout)),
            };
            let (send, recv) = session.open_bi().await.map_err(|e| match e {
                wtq::SessionError::ConnectionError(e) => ConnectError::Connection(e),
                e => ConnectError::WebTransport(e.to_string()),
            })?;
            Ok((session, send, recv))
        }
        .await;
        match result {
            Ok((session, send, recv)) => Ok(Opened {
                session: Session::Web {
                    endpoint,
                    session: Box::new(session),
                },
                send: SendHalf::Web(send),
                recv: RecvHalf::Web(recv),
                deadline,
            }),
            Err(e) => {
                endpoint.close(0u32.into(), b"connect failed");
                Err(mismatch(e, &verifier, &hashes))
            }
        }
    }

    /// A failed TLS handshake after the verifier refused a certificate is a [`ConnectError::FingerprintMismatch`].
    fn mismatch(
        e: ConnectError,
        verifier: &PinnedCertVerifier,
        pinned: &[[u8; 32]],
    ) -> ConnectError {
        match (e, verifier.refused()) {
            (ConnectError::Connection(_), Some(found)) => ConnectError::FingerprintMismatch {
                expected: pinned
                    .iter()
                    .map(fingerprint_hex)
                    .collect::<Vec<_>>()
                    .join(", "),
                found: fingerprint_hex(&found),
            },
            (e, _) => e,
        }
    }

    /// The QUIC (or HTTP/3) handshake with `addr` before `deadline`: [`ConnectError::NoServer`] if nobody
    /// answers in time.
    async fn handshake(
        endpoint: &quinn::Endpoint,
        quic: quinn::ClientConfig,
        addr: SocketAddr,
        server_name: &str,
        deadline: Instant,
        config: &ClientConfig,
    ) -> Result<quinn::Connection, ConnectError> {
        let connecting = endpoint.connect_with(quic, addr, server_name)?;
        match rt::timeout_at(deadline, connecting).await {
            Ok(conn) => Ok(conn?),
            Err(rt::Elapsed) => Err(ConnectError::NoServer {
                addr,
                timeout: config.connect_timeout,
            }),
        }
    }

    /// The wildcard address of `addr`'s family.
    fn bind_for(addr: SocketAddr) -> SocketAddr {
        if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        }
    }

    /// A client endpoint bound to `bind`, with [`endpoint_config`]. Must be called inside a tokio runtime.
    fn endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
        let socket = std::net::UdpSocket::bind(bind)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("no async runtime found"))?;
        quinn::Endpoint::new(endpoint_config(), None, socket, runtime)
    }

    /// The QUIC client configuration for ALPN `alpn`, accepting exactly the certificates whose fingerprints are
    /// `pinned`, with the transport parameters of [`transport_config`].
    pub(crate) fn pinned_config(
        pinned: Vec<[u8; 32]>,
        alpn: &[u8],
    ) -> Result<(quinn::ClientConfig, Arc<PinnedCertVerifier>), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedCertVerifier::new(pinned, provider.clone()));
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut quic = quinn::ClientConfig::new(Arc::new(quic_tls));
        quic.transport_config(Arc::new(transport_config()));
        Ok((quic, verifier))
    }

    fn transport_config() -> quinn::TransportConfig {
        let mut transport = quinn::TransportConfig::default();
        // Accept datagrams (quinn's default, stated): a version-4 server sends positions in them only then.
        transport.datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("10 s is a valid idle timeout"),
        ));
        transport
    }

    pub(super) fn session_error(e: wtq::SessionError) -> ReceiveError {
        match e {
            wtq::SessionError::ConnectionError(e) => ReceiveError::Connection(e),
            wtq::SessionError::WebTransportError(wtq::WebTransportError::Closed(code, reason)) => {
                ReceiveError::Closed { code, reason }
            }
            e => ReceiveError::WebTransport(e.to_string()),
        }
    }

    pub(super) fn read_error(e: wtq::ReadError) -> ReceiveError {
        match e {
            wtq::ReadError::SessionError(e) => session_error(e),
            e => ReceiveError::WebTransport(e.to_string()),
        }
    }
}

//! One connection to a Locus server, async, over QUIC or WebTransport (see [`crate::transport`]).
//!
//! [`Connection::connect`] opens the session the config names — natively a QUIC connection (ALPN `locus/1`, server
//! name [`SERVER_NAME`], TLS 1.3 with a pinned certificate, see [`Trust`]) or a WebTransport session (ALPN `h3`,
//! certificate hashes); in the browser a WebTransport session —, opens the one bidirectional stream, sends
//! `Hello` and waits for `Welcome`. After that, requests go out through a [`Sender`] (cheap to clone, never
//! blocks) and server messages come in through [`Connection::next_message`]. Which transport carries them makes
//! no difference above this point.
//!
//! Outgoing frames are queued to a writer task: natively spawned on the tokio runtime that called `connect`, so
//! that runtime must keep running while the connection is used; in the browser spawned on the page's event loop.
//!
//! A connection is to one server. When the server moves the client's player to another region it sends
//! [`ServerMessage::Redirect`] and closes the connection ([`locus_protocol::CLOSE_REDIRECTED`]); following it is
//! the caller's: connect again with [`ClientConfig::redirected`] (QUIC) or the target's `/locus.json`
//! (WebTransport), subscribe again, and, with a [`crate::Cache`], [`crate::Cache::begin_redirect`] to keep the
//! view without a gap. [`Client`](crate::Client) does all of that by itself.
//!
//! [`Trust`]: crate::Trust

#[cfg(not(target_arch = "wasm32"))]
use std::net::SocketAddr;
#[cfg(not(target_arch = "wasm32"))]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
use locus_protocol::ALPN;
#[cfg(not(target_arch = "wasm32"))]
use locus_protocol::Redirect;
use locus_protocol::{
    AdminCommand, ClientMessage, ErrorCode, Filter, FrameError, FrameReader, MAX_CLIENT_FRAME,
    MAX_SERVER_FRAME, SUPPORTED_VERSIONS, ServerMessage, TickView, Token,
};
use locus_types::{Identity, ReducerCall};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::Welcome;
use crate::rt::{self, Instant};
#[cfg(not(target_arch = "wasm32"))]
use crate::token_file::TokenFileError;
use crate::token_store::{self, TokenStore};
use crate::transport::{ParseWebTransportError, Transport, WebTransportConfig};
#[cfg(not(target_arch = "wasm32"))]
use crate::trust::{CertFileError, Trust};
#[cfg(target_arch = "wasm32")]
use crate::web_storage::TokenStorageError;
use crate::wire::{self, RecvHalf, SendHalf, Session};

/// The TLS server name a native QUIC client asks for (the certificate is pinned, so the name is not checked).
/// WebTransport asks for the URL's host.
pub const SERVER_NAME: &str = "locus";

/// Interval between QUIC keep-alive packets (the server uses the same). Native builds; a browser chooses its own.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// A connection with no packet for this long is dead (the server uses the same).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of QUIC datagrams received but not yet read that a connection keeps (older ones are dropped beyond):
/// quinn's default, about a thousand full position datagrams (`protocol.md` §5, "Version 4").
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const DATAGRAM_RECEIVE_BUFFER: usize = 1_250_000;

/// Close code of a protocol violation (`engine/docs/protocol.md` §6): QUIC's application close code, or
/// WebTransport's session close code.
const CLOSE_PROTOCOL_VIOLATION: u32 = 2;

/// How long closing waits for the close to reach the server.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Identifies one request of a client (a call or a (un)subscription); the server echoes it in its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u32);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How to reach a server and who to be there.
///
/// Natively, [`ClientConfig::new`] makes a QUIC config (the default transport) and
/// [`ClientConfig::web_transport`] a WebTransport one; in the browser only the latter exists.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The transport. Default: [`Transport::Quic`] from [`ClientConfig::new`], [`Transport::WebTransport`] from
    /// [`ClientConfig::web_transport`].
    pub transport: Transport,
    /// The server's UDP address, for [`Transport::Quic`]. WebTransport does not use it (it connects to the host
    /// and port of its URL). No default; [`ClientConfig::web_transport`] sets the unspecified address
    /// `0.0.0.0:0`. Native builds only.
    #[cfg(not(target_arch = "wasm32"))]
    pub addr: SocketAddr,
    /// How to recognise the server's certificate, for [`Transport::Quic`]. WebTransport does not use it (it trusts
    /// [`WebTransportConfig::certificate_hashes`]). No default; [`ClientConfig::web_transport`] sets an all-zero
    /// fingerprint. Native builds only.
    #[cfg(not(target_arch = "wasm32"))]
    pub trust: Trust,
    /// A file keeping the identity token: read at connect when [`token`](Self::token) is `None`, and written
    /// (atomically, parent directories created) when the server hands out a token it does not hold yet.
    /// Default: none (a new identity per process, unless `token` is set). Native builds only.
    #[cfg(not(target_arch = "wasm32"))]
    pub token_file: Option<PathBuf>,
    /// The `localStorage` key keeping the identity token (the value is 64 hex digits): read at connect when
    /// [`token`](Self::token) is `None`, and written when the server hands out a token it does not hold yet.
    /// Default: none (a new identity per page load, unless `token` is set). Browser builds only.
    #[cfg(target_arch = "wasm32")]
    pub token_key: Option<String>,
    /// The token to present; it takes precedence over the stored one. Default: none.
    pub token: Option<Token>,
    /// How long the handshakes plus `Hello`/`Welcome` may take. Default: 5 s.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// A QUIC config for `addr` trusted by `trust`, with the defaults above. Native builds only.
    #[cfg(not(target_arch = "wasm32"))]
    #[must_use]
    pub fn new(addr: SocketAddr, trust: Trust) -> ClientConfig {
        ClientConfig {
            transport: Transport::Quic,
            addr,
            trust,
            token_file: None,
            token: None,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// A WebTransport config for the session `web` names, with the defaults above.
    #[must_use]
    pub fn web_transport(web: WebTransportConfig) -> ClientConfig {
        ClientConfig {
            transport: Transport::WebTransport(web),
            #[cfg(not(target_arch = "wasm32"))]
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            #[cfg(not(target_arch = "wasm32"))]
            trust: Trust::Fingerprint([0; 32]),
            #[cfg(not(target_arch = "wasm32"))]
            token_file: None,
            #[cfg(target_arch = "wasm32")]
            token_key: None,
            token: None,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The server this config reaches, for people: the UDP address (QUIC) or the URL (WebTransport).
    #[must_use]
    pub fn server(&self) -> String {
        match &self.transport {
            #[cfg(not(target_arch = "wasm32"))]
            Transport::Quic => self.addr.to_string(),
            Transport::WebTransport(web) => web.url.to_string(),
        }
    }

    /// This config, redirected ([`ServerMessage::Redirect`]) to `to` over QUIC as identity `token`: the transport
    /// [`Transport::Quic`], [`addr`](Self::addr) the target's, [`trust`](Self::trust) its fingerprint,
    /// [`token`](Self::token) `token`; the rest (the token file, the timeout) as this one. Native builds.
    ///
    /// # Errors
    ///
    /// [`RedirectConfigError`] if the target's address is not `ip:port`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn redirected(
        &self,
        to: &Redirect,
        token: Token,
    ) -> Result<ClientConfig, RedirectConfigError> {
        let addr = to
            .addr
            .parse()
            .map_err(|source| RedirectConfigError::Address {
                addr: to.addr.clone(),
                source,
            })?;
        Ok(ClientConfig {
            transport: Transport::Quic,
            addr,
            trust: Trust::Fingerprint(to.fingerprint),
            token: Some(token),
            ..self.clone()
        })
    }
}

/// Why [`ClientConfig::redirected`] cannot make a config.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Error)]
pub enum RedirectConfigError {
    /// The redirect's address is not an `ip:port` socket address.
    #[error("the redirect's address `{addr}` is not ip:port: {source}")]
    Address {
        /// The address as sent.
        addr: String,
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
}

/// Why connecting failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The WebTransport URL is not usable (a [`WebTransportConfig`] whose fields were set by hand).
    #[error("bad WebTransport target: {0}")]
    Config(#[from] ParseWebTransportError),
    /// The certificate file of [`Trust::CertFile`] cannot be used.
    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    CertFile(#[from] CertFileError),
    /// The token file cannot be read, or the new token cannot be saved to it.
    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    /// The token cannot be read from `localStorage`, or the new token cannot be saved there.
    #[cfg(target_arch = "wasm32")]
    #[error(transparent)]
    TokenStorage(#[from] TokenStorageError),
    /// The TLS configuration cannot be built (should not happen with the ring provider).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("cannot configure TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The local UDP socket cannot be opened.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The WebTransport URL's host name does not resolve.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        reason: String,
    },
    /// The background thread or its runtime cannot be started (blocking [`Client`](crate::Client) only).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("cannot start the network thread: {0}")]
    Thread(#[source] std::io::Error),
    /// quinn refused to start the connection (e.g. an unusable address).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("cannot start connecting: {0}")]
    Start(#[from] quinn::ConnectError),
    /// The server presented a certificate other than the pinned one (QUIC), or one whose hash is not among the
    /// given ones (native WebTransport).
    #[cfg(not(target_arch = "wasm32"))]
    #[error(
        "the server's certificate is not the pinned one: expected fingerprint {expected}, found {found}"
    )]
    FingerprintMismatch {
        /// The pinned fingerprint (hex); for WebTransport the accepted hashes, separated by `, `.
        expected: String,
        /// The fingerprint of the certificate the server presented (hex).
        found: String,
    },
    /// The QUIC or TLS handshake failed, or the connection failed before `Welcome`.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The WebTransport session could not be opened: natively, the HTTP/3 exchange failed or the server refused
    /// the `CONNECT` (status 404 for a path other than `/locus`), or no certificate hashes were given; in a
    /// browser, any failure to open the session (no server, a certificate whose hash was not given, a refused
    /// `CONNECT`: browsers do not say which).
    #[error("cannot open the WebTransport session: {0}")]
    WebTransport(String),
    /// `Hello` could not be sent.
    #[error("cannot send Hello: {0}")]
    Hello(#[from] WriteError),
    /// The server refused the `Hello` with an error (e.g. [`ErrorCode::UnsupportedVersion`]).
    #[error("the server refused the connection: {code:?}: {message}")]
    Refused {
        /// The server's error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// No `Welcome` came: the stream ended or broke first, or a frame was malformed.
    #[error("no Welcome from the server: {0}")]
    NoWelcome(#[source] ReceiveError),
    /// The server's first message was not `Welcome`, or chose a protocol version not offered.
    #[error("protocol violation before Welcome: {0}")]
    Protocol(String),
    /// No server answered the QUIC handshake within [`ClientConfig::connect_timeout`]: nothing listens at the
    /// address (a closed UDP port does not refuse, it stays silent), or a firewall drops the packets. Native
    /// builds (a browser reports this as [`ConnectError::WebTransport`] or [`ConnectError::Timeout`]).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("no server answered at {addr} within {timeout:?}")]
    NoServer {
        /// The address tried.
        addr: SocketAddr,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The server completed the handshake but sent no `Welcome` (or, WebTransport, did not answer the `CONNECT`)
    /// before [`ClientConfig::connect_timeout`] ran out (counted from the start of the connect).
    #[error("the server accepted the connection but sent no Welcome within {0:?}")]
    Timeout(Duration),
}

/// Why bytes could not be written to the stream.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The QUIC stream's error (e.g. the server closed the connection).
    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    Quic(#[from] quinn::WriteError),
    /// The WebTransport stream's error, as the library or browser describes it.
    #[error("{0}")]
    WebTransport(String),
}

/// Why a request could not be sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closed (or, for [`Client`](crate::Client), not connected).
    #[error("the connection is closed")]
    Closed,
    /// The message would exceed [`MAX_CLIENT_FRAME`] (e.g. huge reducer arguments).
    #[error("a message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The encoded message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why no further server message can be received. After any of these the connection is finished.
#[derive(Debug, Error)]
pub enum ReceiveError {
    /// The connection ended: closed by the server (with its reason), by this client, timed out, or reset.
    /// Native builds (QUIC, and the QUIC connection under a native WebTransport session).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("connection ended: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The QUIC stream broke (e.g. reset by the server).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("the stream broke: {0}")]
    Stream(quinn::ReadError),
    /// The WebTransport session was closed with session close code `code` (the server's close codes are those
    /// of `engine/docs/protocol.md` §6).
    #[error("the session was closed with code {code}: {reason}")]
    Closed {
        /// The session close code.
        code: u32,
        /// The reason given.
        reason: String,
    },
    /// The WebTransport session or stream failed otherwise, as the library or browser describes it.
    #[error("the WebTransport session failed: {0}")]
    WebTransport(String),
    /// The server finished the stream.
    #[error("the server finished the stream")]
    Finished,
    /// The server sent a frame that is too large or not a message; the client closes the connection (close
    /// code 2), as its view could no longer be trusted.
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
}

/// What a server close code (`engine/docs/protocol.md` §6) means.
fn close_code_meaning(code: u64) -> &'static str {
    match code {
        0 => "closed",
        1 => "the server is shutting down",
        2 => "protocol violation",
        3 => "this client read too slowly",
        4 => "the server failed",
        5 => "redirected to another region",
        _ => "unknown close code",
    }
}

impl ReceiveError {
    /// Why the connection ended, for people: the server's close codes (`engine/docs/protocol.md` §6) are spelled
    /// out, over either transport.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            ReceiveError::Connection(quinn::ConnectionError::ApplicationClosed(close)) => {
                let reason = String::from_utf8_lossy(&close.reason);
                format!(
                    "the server closed the connection (code {}: {}): {reason}",
                    close.error_code,
                    close_code_meaning(close.error_code.into_inner())
                )
            }
            ReceiveError::Closed { code, reason } => format!(
                "the server closed the session (code {code}: {}): {reason}",
                close_code_meaning(u64::from(*code))
            ),
            e => e.to_string(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl From<quinn::ReadError> for ReceiveError {
    fn from(e: quinn::ReadError) -> ReceiveError {
        match e {
            quinn::ReadError::ConnectionLost(e) => ReceiveError::Connection(e),
            e => ReceiveError::Stream(e),
        }
    }
}

/// The sending half of a connection: encodes requests and queues them, in order, for the connection's writer
/// task. Cheap to clone; never blocks.
#[derive(Clone, Debug)]
pub struct Sender {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    next_request: Arc<AtomicU32>,
}

impl Sender {
    /// Call a reducer with typed arguments (`my_reducer::call(args…)` of a module crate).
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn call(&self, call: &ReducerCall) -> Result<RequestId, SendError> {
        self.call_raw(call.reducer, &call.args)
    }

    /// Call reducer `reducer` with encoded `args` (one MessagePack array, one element per parameter).
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn call_raw(&self, reducer: &str, args: &[u8]) -> Result<RequestId, SendError> {
        self.request(|request| ClientMessage::Call {
            request,
            reducer: reducer.to_owned(),
            args: args.to_vec(),
        })
    }

    /// Subscribe to public table `table` (replacing an earlier subscription to it).
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn subscribe(&self, table: &str, filter: Filter) -> Result<RequestId, SendError> {
        self.request(|request| ClientMessage::Subscribe {
            request,
            table: table.to_owned(),
            filter,
        })
    }

    /// End the subscription to `table`.
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn unsubscribe(&self, table: &str) -> Result<RequestId, SendError> {
        self.request(|request| ClientMessage::Unsubscribe {
            request,
            table: table.to_owned(),
        })
    }

    /// Send an operator's command (only the server's admin identity may: see `locus`'s admin commands). The
    /// answer comes as [`ServerMessage::Admin`] with the returned request id.
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn admin(&self, command: AdminCommand) -> Result<RequestId, SendError> {
        // A command may be larger than other messages (a module); the server accepts that only from its admin.
        self.request_up_to(locus_protocol::MAX_ADMIN_FRAME, |request| {
            ClientMessage::Admin { request, command }
        })
    }

    /// Whether the connection's writer has stopped (sending would fail).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }

    /// A sender whose frames go to the returned queue instead of a connection's writer (the blocking
    /// [`Client`](crate::Client)'s, which hands them to whichever connection is current), taking request ids from
    /// `next_request`.
    pub(crate) fn queue(
        next_request: Arc<AtomicU32>,
    ) -> (Sender, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (frames, queue) = mpsc::unbounded_channel();
        (
            Sender {
                frames,
                next_request,
            },
            queue,
        )
    }

    /// Queue a frame made by another sender ([`Sender::queue`]) as it is.
    pub(crate) fn send_frame(&self, frame: Vec<u8>) -> Result<(), SendError> {
        self.frames.send(frame).map_err(|_| SendError::Closed)
    }

    fn request(&self, message: impl FnOnce(u32) -> ClientMessage) -> Result<RequestId, SendError> {
        self.request_up_to(MAX_CLIENT_FRAME, message)
    }

    fn request_up_to(
        &self,
        max: usize,
        message: impl FnOnce(u32) -> ClientMessage,
    ) -> Result<RequestId, SendError> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        locus_protocol::encode_frame(&message(request), &mut frame);
        let len = frame.len() - locus_protocol::FRAME_PREFIX;
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        self.frames.send(frame).map_err(|_| SendError::Closed)?;
        Ok(RequestId(request))
    }
}

/// A server message as [`Connection::next_received`] hands it on.
#[derive(Debug)]
pub(crate) enum Received {
    /// A `Tick` left in its frame's payload, already checked by [`TickView::parse`]: the cache applies it in
    /// place ([`crate::Cache::apply_tick`]), without decoding a `Vec` per row.
    Tick(Vec<u8>),
    /// Any other message, decoded.
    Message(ServerMessage),
    /// A QUIC datagram (protocol version 4: positions, [`crate::Cache::apply_datagram`]), unchecked.
    Datagram(Vec<u8>),
}

/// What [`Connection::next_incoming`] returns.
#[derive(Debug)]
pub enum Incoming {
    /// A message from the stream.
    Message(ServerMessage),
    /// A QUIC datagram, unchecked: protocol version 4's positions ([`crate::Cache::apply_datagram`]).
    Datagram(Vec<u8>),
}

/// Reads whole server messages from the stream.
#[derive(Debug)]
struct Inbound {
    recv: RecvHalf,
    frames: FrameReader,
    buf: Box<[u8]>,
}

impl Inbound {
    /// The next message, decoded. Cancel-safe: partial frames stay buffered.
    async fn next(&mut self) -> Result<ServerMessage, ReceiveError> {
        self.next_with(locus_protocol::decode_frame).await
    }

    /// The next message, a `Tick` left in its bytes. Cancel-safe.
    async fn next_received(&mut self) -> Result<Received, ReceiveError> {
        self.next_with(|payload| match TickView::parse(payload)? {
            Some(_) => Ok(Received::Tick(payload.to_vec())),
            None => Ok(Received::Message(locus_protocol::decode_frame(payload)?)),
        })
        .await
    }

    /// `read` the next whole frame's payload. Cancel-safe: `read` runs only once a whole frame is buffered.
    async fn next_with<T>(
        &mut self,
        read: impl Fn(&[u8]) -> Result<T, FrameError>,
    ) -> Result<T, ReceiveError> {
        loop {
            if let Some(payload) = self.frames.next_frame()? {
                return Ok(read(payload)?);
            }
            match self.recv.read(&mut self.buf).await? {
                Some(n) => self.frames.push(&self.buf[..n]),
                None => return Err(ReceiveError::Finished),
            }
        }
    }
}

/// A connection to a Locus server that has answered `Hello` with `Welcome`. See the [module docs](self).
///
/// Dropping it closes the connection abruptly; [`Connection::close`] says goodbye properly.
#[derive(Debug)]
pub struct Connection {
    session: Session,
    inbound: Inbound,
    sender: Sender,
    welcome: Welcome,
}

impl Connection {
    /// Connect: open the session ([`ClientConfig::transport`]) and its stream, send `Hello` with the token (from
    /// the config, else the stored one: the token file natively, `localStorage` in a browser), wait for
    /// `Welcome`; then store the token if it is new. Natively it must run inside a tokio runtime (with time and
    /// I/O enabled), which must keep running while the connection is used.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]; natively a wrong certificate is [`ConnectError::FingerprintMismatch`].
    pub async fn connect(config: &ClientConfig) -> Result<Connection, ConnectError> {
        Connection::connect_counting(config, Arc::new(AtomicU32::new(1))).await
    }

    /// [`Connection::connect`], taking request ids from `next_request`.
    pub(crate) async fn connect_counting(
        config: &ClientConfig,
        next_request: Arc<AtomicU32>,
    ) -> Result<Connection, ConnectError> {
        let store = token_store::store_of(config);
        let store: Option<&dyn TokenStore> = store.as_deref();
        let (token, stored) = token_store::token_to_present(config.token, store)?;
        let wire::Opened {
            session,
            send,
            recv,
            deadline,
        } = wire::open(config).await?;
        let (inbound, send, welcome) = match hello(send, recv, token, deadline, config).await {
            Ok(parts) => parts,
            Err(e) => {
                session.close(0, b"connect failed");
                return Err(e);
            }
        };
        if let Err(e) = token_store::keep_token(store, stored, &welcome.token) {
            session.close(0, b"cannot save the token");
            return Err(e);
        }
        info!(
            server = %config.server(),
            identity = %welcome.identity,
            tick = welcome.tick,
            "connected"
        );
        let (frames, queue) = mpsc::unbounded_channel();
        rt::spawn(write_frames(send, queue));
        Ok(Connection {
            session,
            inbound,
            sender: Sender {
                frames,
                next_request,
            },
            welcome,
        })
    }

    /// What the server said in `Welcome`.
    #[must_use]
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The client's identity.
    #[must_use]
    pub fn identity(&self) -> Identity {
        self.welcome.identity
    }

    /// A sending handle for this connection.
    #[must_use]
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Queue a frame made by another sender ([`Sender::queue`]) on this connection, as it is.
    pub(crate) fn send_frame(&self, frame: Vec<u8>) -> Result<(), SendError> {
        self.sender.send_frame(frame)
    }

    /// Call a reducer with typed arguments; the answer is a [`ServerMessage::Result`] with the returned id.
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn call(&self, call: &ReducerCall) -> Result<RequestId, SendError> {
        self.sender.call(call)
    }

    /// Call reducer `reducer` with encoded `args`.
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn call_raw(&self, reducer: &str, args: &[u8]) -> Result<RequestId, SendError> {
        self.sender.call_raw(reducer, args)
    }

    /// Subscribe to public table `table`; answered by [`ServerMessage::Subscribed`] (or an error), rows follow
    /// in `Tick`s.
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn subscribe(&self, table: &str, filter: Filter) -> Result<RequestId, SendError> {
        self.sender.subscribe(table, filter)
    }

    /// End the subscription to `table`; answered by [`ServerMessage::Unsubscribed`].
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn unsubscribe(&self, table: &str) -> Result<RequestId, SendError> {
        self.sender.unsubscribe(table)
    }

    /// Send an operator's command; answered by [`ServerMessage::Admin`] (see [`Sender::admin`]).
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn admin(&self, command: AdminCommand) -> Result<RequestId, SendError> {
        self.sender.admin(command)
    }

    /// The QUIC connection's statistics (UDP datagrams and bytes each way, packets, path RTT): what went over the
    /// wire, headers and acknowledgements included. Native builds, either transport (a native WebTransport
    /// session runs on a QUIC connection of its own).
    #[cfg(not(target_arch = "wasm32"))]
    #[must_use]
    pub fn stats(&self) -> quinn::ConnectionStats {
        self.session.quic().stats()
    }

    /// The next message from the server. Cancel-safe (e.g. in `tokio::select!`): a partly received frame stays
    /// buffered for the next call.
    ///
    /// Only the stream is read: the positions a version-4 session gets in datagrams are not returned (the
    /// blocking [`Client`](crate::Client) applies them to its cache; [`Connection::next_incoming`] returns both).
    ///
    /// # Errors
    ///
    /// [`ReceiveError`] once the connection has ended; every later call fails too.
    pub async fn next_message(&mut self) -> Result<ServerMessage, ReceiveError> {
        let result = self.inbound.next().await;
        self.check(result).await
    }

    /// The next message from the server's stream or the next datagram, whichever comes first (the stream when
    /// both are ready). A version-4 session is sent walking rows' positions in datagrams (QUIC datagrams, or the
    /// WebTransport session's): give each to [`crate::Cache::apply_datagram`] beside the messages to
    /// [`crate::Cache::apply`]. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`ReceiveError`] once the connection has ended; every later call fails too.
    pub async fn next_incoming(&mut self) -> Result<Incoming, ReceiveError> {
        let result = tokio::select! {
            biased;
            result = self.inbound.next() => result.map(Incoming::Message),
            datagram = self.session.read_datagram() => datagram.map(Incoming::Datagram),
        };
        self.check(result).await
    }

    /// [`Connection::next_message`], but a `Tick` stays in its frame's bytes (checked) for
    /// [`crate::Cache::apply_tick`], and datagrams (protocol version 4's positions) come too, in the order they
    /// arrived among the stream's messages (the stream first when both are ready). Cancel-safe.
    pub(crate) async fn next_received(&mut self) -> Result<Received, ReceiveError> {
        let result = tokio::select! {
            biased;
            result = self.inbound.next_received() => result,
            datagram = self.session.read_datagram() => datagram.map(Received::Datagram),
        };
        self.check(result).await
    }

    /// A bad frame closes the connection: the view could no longer be trusted. A WebTransport stream that failed
    /// because the server closed the session reports the session's close code.
    async fn check<T>(&self, result: Result<T, ReceiveError>) -> Result<T, ReceiveError> {
        match result {
            Ok(value) => Ok(value),
            Err(ReceiveError::Frame(e)) => {
                warn!("closing the connection: {e}");
                self.session.close(CLOSE_PROTOCOL_VIOLATION, b"bad frame");
                Err(ReceiveError::Frame(e))
            }
            Err(e) => Err(self.session.close_reason().await.unwrap_or(e)),
        }
    }

    /// Close the connection and wait (briefly) until the server was told.
    pub async fn close(self) {
        self.session.close(0, b"bye");
        self.session.linger(CLOSE_LINGER).await;
    }
}

/// How many bytes the connection IDs are that Locus endpoints (clients, the server, the load tester) choose for
/// themselves; quinn's default is 8. Every QUIC packet carries its receiver's ID, so each packet is 4 bytes
/// shorter (at 20 packets a second each way, 80 bytes a second per client each way). Four bytes tell apart four
/// billion connections, and an endpoint never gives two of its connections the same ID (quinn draws again).
/// Native clients use it for both transports (a browser chooses its own).
pub const CID_LEN: usize = 4;

/// The QUIC endpoint configuration of Locus endpoints: quinn's defaults with [`CID_LEN`]-byte connection IDs.
#[cfg(not(target_arch = "wasm32"))]
#[must_use]
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(|| Box::new(quinn_proto::RandomConnectionIdGenerator::new(CID_LEN)));
    config
}

/// The QUIC client configuration a native Locus client uses: TLS 1.3 with ALPN [`ALPN`], accepting exactly the
/// server certificate whose SHA-256 fingerprint is `pinned` (handshake signatures still checked), keep-alive every
/// [`KEEP_ALIVE`], an idle timeout of [`IDLE_TIMEOUT`], and datagrams accepted (so a version-4 session is sent
/// positions in them). For tools that open many raw connections (the load tester); [`Connection::connect`] uses it
/// too (and the same with ALPN `h3` and the certificate hashes for WebTransport).
///
/// # Errors
///
/// A `rustls` error if TLS cannot be configured (not expected with the ring provider).
#[cfg(not(target_arch = "wasm32"))]
pub fn quic_client_config(pinned: [u8; 32]) -> Result<quinn::ClientConfig, rustls::Error> {
    wire::native::pinned_config(vec![pinned], ALPN).map(|(config, _)| config)
}

/// Send `Hello` on the stream and wait for `Welcome`, before `deadline`.
async fn hello(
    mut send: SendHalf,
    recv: RecvHalf,
    token: Option<Token>,
    deadline: Instant,
    config: &ClientConfig,
) -> Result<(Inbound, SendHalf, Welcome), ConnectError> {
    let exchange = async {
        let mut hello = Vec::new();
        locus_protocol::encode_frame(
            &ClientMessage::Hello {
                // Newest first; the cache applies either version's ticks.
                versions: SUPPORTED_VERSIONS.iter().rev().copied().collect(),
                token,
            },
            &mut hello,
        );
        send.write_all(&hello).await?;
        let mut inbound = Inbound {
            recv,
            frames: FrameReader::new(MAX_SERVER_FRAME),
            buf: vec![0; 64 * 1024].into_boxed_slice(),
        };
        let first = inbound.next().await.map_err(ConnectError::NoWelcome)?;
        let welcome = match first {
            ServerMessage::Error { code, message, .. } => {
                return Err(ConnectError::Refused { code, message });
            }
            ServerMessage::Welcome(welcome) => welcome,
            message => {
                return Err(ConnectError::Protocol(format!(
                    "expected Welcome, got {message:?}"
                )));
            }
        };
        if !SUPPORTED_VERSIONS.contains(&welcome.version) {
            return Err(ConnectError::Protocol(format!(
                "the server chose protocol version {}, this client offered only {SUPPORTED_VERSIONS:?}",
                welcome.version
            )));
        }
        Ok((inbound, welcome))
    };
    match rt::timeout_at(deadline, exchange).await {
        Ok(Ok((inbound, welcome))) => Ok((inbound, send, welcome)),
        Ok(Err(e)) => Err(e),
        Err(rt::Elapsed) => Err(ConnectError::Timeout(config.connect_timeout)),
    }
}

/// Write queued frames in order until every [`Sender`] is gone or the stream fails.
async fn write_frames(mut send: SendHalf, mut queue: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(frame) = queue.recv().await {
        if let Err(e) = send.write_all(&frame).await {
            debug!("stopped sending: {e}");
            return;
        }
    }
    send.finish();
}

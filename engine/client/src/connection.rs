//! One connection to a Locus server, async (tokio + quinn).
//!
//! [`Connection::connect`] opens a QUIC connection (ALPN [`ALPN`], server name [`SERVER_NAME`], TLS 1.3 with a
//! pinned certificate, see [`Trust`]), opens the one bidirectional stream, sends `Hello` and waits for `Welcome`.
//! After that, requests go out through a [`Sender`] (cheap to clone, usable from any thread, never blocks) and
//! server messages come in through [`Connection::next_message`].
//!
//! Outgoing frames are queued to a writer task spawned on the tokio runtime that called `connect`, so that
//! runtime must keep running while the connection is used.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use locus_protocol::{
    ALPN, AdminCommand, ClientMessage, ErrorCode, Filter, FrameError, FrameReader,
    MAX_CLIENT_FRAME, MAX_SERVER_FRAME, SUPPORTED_VERSIONS, ServerMessage, TickView, Token,
};
use locus_types::{Identity, ReducerCall};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::Welcome;
use crate::token_file::{self, TokenFileError};
use crate::trust::{CertFileError, PinnedCertVerifier, Trust, fingerprint_hex};

/// The TLS server name a client asks for (the certificate is pinned, so the name is not checked).
pub const SERVER_NAME: &str = "locus";

/// Interval between QUIC keep-alive packets (the server uses the same).
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// A connection with no packet for this long is dead (the server uses the same).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of QUIC datagrams received but not yet read that a connection keeps (older ones are dropped beyond):
/// quinn's default, about a thousand full position datagrams (`protocol.md` §5, "Version 4").
const DATAGRAM_RECEIVE_BUFFER: usize = 1_250_000;

/// QUIC close code of a protocol violation (`engine/docs/protocol.md` §6).
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
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's UDP address. No default.
    pub addr: SocketAddr,
    /// How to recognise the server's certificate. No default.
    pub trust: Trust,
    /// A file keeping the identity token: read at connect when [`token`](Self::token) is `None`, and written
    /// (atomically, parent directories created) when the server hands out a token it does not hold yet.
    /// Default: none (a new identity per process, unless `token` is set).
    pub token_file: Option<PathBuf>,
    /// The token to present; it takes precedence over the token file. Default: none.
    pub token: Option<Token>,
    /// How long QUIC handshake plus `Hello`/`Welcome` may take. Default: 5 s.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// A config for `addr` trusted by `trust`, with the defaults above.
    #[must_use]
    pub fn new(addr: SocketAddr, trust: Trust) -> ClientConfig {
        ClientConfig {
            addr,
            trust,
            token_file: None,
            token: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why connecting failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The certificate file of [`Trust::CertFile`] cannot be used.
    #[error(transparent)]
    CertFile(#[from] CertFileError),
    /// The token file cannot be read, or the new token cannot be saved to it.
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    /// The TLS configuration cannot be built (should not happen with the ring provider).
    #[error("cannot configure TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The local UDP socket cannot be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The background thread or its runtime cannot be started (blocking [`Client`](crate::Client) only).
    #[error("cannot start the network thread: {0}")]
    Thread(#[source] std::io::Error),
    /// quinn refused to start the connection (e.g. an unusable address).
    #[error("cannot start connecting: {0}")]
    Start(#[from] quinn::ConnectError),
    /// The server presented a certificate other than the pinned one.
    #[error(
        "the server's certificate is not the pinned one: expected fingerprint {expected}, found {found}"
    )]
    FingerprintMismatch {
        /// The pinned fingerprint (hex).
        expected: String,
        /// The fingerprint of the certificate the server presented (hex).
        found: String,
    },
    /// The QUIC or TLS handshake failed, or the connection failed before `Welcome`.
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// `Hello` could not be sent.
    #[error("cannot send Hello: {0}")]
    Hello(#[from] quinn::WriteError),
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
    /// address (a closed UDP port does not refuse, it stays silent), or a firewall drops the packets.
    #[error("no server answered at {addr} within {timeout:?}")]
    NoServer {
        /// The address tried.
        addr: SocketAddr,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The server completed the QUIC handshake but sent no `Welcome` before [`ClientConfig::connect_timeout`] ran
    /// out (counted from the start of the connect).
    #[error("the server accepted the connection but sent no Welcome within {0:?}")]
    Timeout(Duration),
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
    #[error("connection ended: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The stream broke (e.g. reset by the server).
    #[error("the stream broke: {0}")]
    Stream(quinn::ReadError),
    /// The server finished the stream.
    #[error("the server finished the stream")]
    Finished,
    /// The server sent a frame that is too large or not a message; the client closes the connection (QUIC
    /// code 2), as its view could no longer be trusted.
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
}

impl ReceiveError {
    /// Why the connection ended, for people: the server's QUIC close codes (`engine/docs/protocol.md` §6) are
    /// spelled out.
    #[must_use]
    pub fn describe(&self) -> String {
        let ReceiveError::Connection(quinn::ConnectionError::ApplicationClosed(close)) = self
        else {
            return self.to_string();
        };
        let why = match close.error_code.into_inner() {
            0 => "closed",
            1 => "the server is shutting down",
            2 => "protocol violation",
            3 => "this client read too slowly",
            4 => "the server failed",
            _ => "unknown close code",
        };
        let reason = String::from_utf8_lossy(&close.reason);
        format!(
            "the server closed the connection (code {}: {why}): {reason}",
            close.error_code
        )
    }
}

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

/// A QUIC client endpoint set up to pin the server's certificate (shared by [`Connection`] and
/// [`crate::RawConnection`]).
pub(crate) struct Quic {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) config: quinn::ClientConfig,
    pub(crate) verifier: Arc<PinnedCertVerifier>,
    pub(crate) pinned: [u8; 32],
}

impl Quic {
    pub(crate) fn new(config: &ClientConfig) -> Result<Quic, ConnectError> {
        let pinned = config.trust.pinned()?;
        let (quic, verifier) = pinned_config(pinned).map_err(ConnectError::Tls)?;
        let bind: SocketAddr = if config.addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = endpoint(bind).map_err(ConnectError::Socket)?;
        Ok(Quic {
            endpoint,
            config: quic,
            verifier,
            pinned,
        })
    }
}

/// Reads whole server messages from the stream.
#[derive(Debug)]
struct Inbound {
    recv: quinn::RecvStream,
    frames: FrameReader,
    buf: Box<[u8]>,
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
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    inbound: Inbound,
    sender: Sender,
    welcome: Welcome,
}

impl Connection {
    /// Connect: QUIC handshake with the pinned certificate, `Hello` with the token (from the config or its token
    /// file), `Welcome`; then save the token to the token file if it is new. Must run inside a tokio runtime
    /// (with time and I/O enabled), which must keep running while the connection is used.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]; a wrong certificate is [`ConnectError::FingerprintMismatch`].
    pub async fn connect(config: &ClientConfig) -> Result<Connection, ConnectError> {
        Connection::connect_counting(config, Arc::new(AtomicU32::new(1))).await
    }

    /// [`Connection::connect`], taking request ids from `next_request`.
    pub(crate) async fn connect_counting(
        config: &ClientConfig,
        next_request: Arc<AtomicU32>,
    ) -> Result<Connection, ConnectError> {
        let file_token = match &config.token_file {
            Some(path) => token_file::load(path)?,
            None => None,
        };
        let token = config.token.or(file_token);
        let Quic {
            endpoint,
            config: quic,
            verifier,
            pinned,
        } = Quic::new(config)?;
        let result = handshake(&endpoint, quic, config, token).await;
        let (conn, inbound, send, welcome) = match result {
            Ok(parts) => parts,
            Err(e) => {
                endpoint.close(0u32.into(), b"connect failed");
                return Err(match (e, verifier.refused()) {
                    (ConnectError::Connection(_), Some(found)) => {
                        ConnectError::FingerprintMismatch {
                            expected: fingerprint_hex(&pinned),
                            found: fingerprint_hex(&found),
                        }
                    }
                    (e, _) => e,
                });
            }
        };
        if let Some(path) = &config.token_file
            && file_token != Some(welcome.token)
        {
            if let Err(e) = token_file::save(path, &welcome.token) {
                conn.close(0u32.into(), b"cannot save the token");
                return Err(e.into());
            }
            debug!(path = %path.display(), "saved the identity token");
        }
        info!(
            addr = %config.addr,
            identity = %welcome.identity,
            tick = welcome.tick,
            "connected"
        );
        let (frames, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(send, queue));
        Ok(Connection {
            endpoint,
            conn,
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
    /// wire, headers and acknowledgements included.
    #[must_use]
    pub fn stats(&self) -> quinn::ConnectionStats {
        self.conn.stats()
    }

    /// The next message from the server. Cancel-safe (e.g. in `tokio::select!`): a partly received frame stays
    /// buffered for the next call.
    ///
    /// Only the stream is read: the positions a version-4 session gets in QUIC datagrams are not returned (the
    /// blocking [`Client`](crate::Client) applies them to its cache; [`Connection::next_incoming`] returns both).
    ///
    /// # Errors
    ///
    /// [`ReceiveError`] once the connection has ended; every later call fails too.
    pub async fn next_message(&mut self) -> Result<ServerMessage, ReceiveError> {
        let result = self.inbound.next().await;
        self.close_on_bad_frame(&result);
        result
    }

    /// The next message from the server's stream or the next QUIC datagram, whichever comes first (the stream when
    /// both are ready). A version-4 session is sent walking rows' positions in datagrams: give each to
    /// [`crate::Cache::apply_datagram`] beside the messages to [`crate::Cache::apply`]. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`ReceiveError`] once the connection has ended; every later call fails too.
    pub async fn next_incoming(&mut self) -> Result<Incoming, ReceiveError> {
        let result = tokio::select! {
            biased;
            result = self.inbound.next() => result.map(Incoming::Message),
            datagram = self.conn.read_datagram() => Ok(Incoming::Datagram(datagram?.to_vec())),
        };
        self.close_on_bad_frame(&result);
        result
    }

    /// [`Connection::next_message`], but a `Tick` stays in its frame's bytes (checked) for
    /// [`crate::Cache::apply_tick`], and QUIC datagrams (protocol version 4's positions) come too, in the order
    /// they arrived among the stream's messages (the stream first when both are ready). Cancel-safe.
    pub(crate) async fn next_received(&mut self) -> Result<Received, ReceiveError> {
        let result = tokio::select! {
            biased;
            result = self.inbound.next_received() => result,
            datagram = self.conn.read_datagram() => Ok(Received::Datagram(datagram?.to_vec())),
        };
        self.close_on_bad_frame(&result);
        result
    }

    /// A bad frame closes the connection: the view could no longer be trusted.
    fn close_on_bad_frame<T>(&self, result: &Result<T, ReceiveError>) {
        if let Err(ReceiveError::Frame(e)) = result {
            warn!("closing the connection: {e}");
            self.conn
                .close(CLOSE_PROTOCOL_VIOLATION.into(), b"bad frame");
        }
    }

    /// Close the connection and wait (briefly) until the server was told.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(CLOSE_LINGER, self.endpoint.wait_idle()).await;
    }
}

/// How many bytes the connection IDs are that Locus endpoints (clients, the server, the load tester) choose for
/// themselves; quinn's default is 8. Every QUIC packet carries its receiver's ID, so each packet is 4 bytes
/// shorter (at 20 packets a second each way, 80 bytes a second per client each way). Four bytes tell apart four
/// billion connections, and an endpoint never gives two of its connections the same ID (quinn draws again).
pub const CID_LEN: usize = 4;

/// The QUIC endpoint configuration of Locus endpoints: quinn's defaults with [`CID_LEN`]-byte connection IDs.
#[must_use]
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(|| Box::new(quinn_proto::RandomConnectionIdGenerator::new(CID_LEN)));
    config
}

/// A client endpoint bound to `bind`, with [`endpoint_config`]. Must be called inside a tokio runtime.
fn endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime found"))?;
    quinn::Endpoint::new(endpoint_config(), None, socket, runtime)
}

/// The QUIC client configuration a Locus client uses: TLS 1.3 with ALPN [`ALPN`], accepting exactly the server
/// certificate whose SHA-256 fingerprint is `pinned` (handshake signatures still checked), keep-alive every
/// [`KEEP_ALIVE`], an idle timeout of [`IDLE_TIMEOUT`], and datagrams accepted (so a version-4 session is sent
/// positions in them). For tools that open many raw connections (the load tester); [`Connection::connect`] uses it
/// too.
///
/// # Errors
///
/// A `rustls` error if TLS cannot be configured (not expected with the ring provider).
pub fn quic_client_config(pinned: [u8; 32]) -> Result<quinn::ClientConfig, rustls::Error> {
    pinned_config(pinned).map(|(config, _)| config)
}

fn pinned_config(
    pinned: [u8; 32],
) -> Result<(quinn::ClientConfig, Arc<PinnedCertVerifier>), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertVerifier::new(pinned, provider.clone()));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
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

/// QUIC handshake, open the stream, `Hello`, `Welcome`.
/// Open a QUIC connection to `config.addr` within `config.connect_timeout`: [`ConnectError::NoServer`] if nobody
/// answers in time. Returns the connection and the deadline of the rest of the connect.
pub(crate) async fn quic_connect(
    endpoint: &quinn::Endpoint,
    quic: quinn::ClientConfig,
    config: &ClientConfig,
) -> Result<(quinn::Connection, tokio::time::Instant), ConnectError> {
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let connecting = endpoint.connect_with(quic, config.addr, SERVER_NAME)?;
    match tokio::time::timeout_at(deadline, connecting).await {
        Ok(conn) => Ok((conn?, deadline)),
        Err(_) => Err(ConnectError::NoServer {
            addr: config.addr,
            timeout: config.connect_timeout,
        }),
    }
}

async fn handshake(
    endpoint: &quinn::Endpoint,
    quic: quinn::ClientConfig,
    config: &ClientConfig,
    token: Option<Token>,
) -> Result<(quinn::Connection, Inbound, quinn::SendStream, Welcome), ConnectError> {
    let (conn, deadline) = quic_connect(endpoint, quic, config).await?;
    match tokio::time::timeout_at(deadline, hello(conn, token)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(config.connect_timeout)),
    }
}

/// Send `Hello` on a new stream of `conn` and wait for `Welcome`.
async fn hello(
    conn: quinn::Connection,
    token: Option<Token>,
) -> Result<(quinn::Connection, Inbound, quinn::SendStream, Welcome), ConnectError> {
    let (mut send, recv) = conn.open_bi().await?;
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
    Ok((conn, inbound, send, welcome))
}

/// Write queued frames in order until every [`Sender`] is gone or the stream fails.
async fn write_frames(mut send: quinn::SendStream, mut queue: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(frame) = queue.recv().await {
        if let Err(e) = send.write_all(&frame).await {
            debug!("stopped sending: {e}");
            return;
        }
    }
    let _ = send.finish();
}

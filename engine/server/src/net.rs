//! The network shell: QUIC connections (quinn), frames in and out, and the per-client limits.
//!
//! One UDP port takes two kinds of client, told apart by the ALPN they choose in the QUIC handshake: native
//! clients (`locus/1`) speak the protocol on a QUIC stream of their own, and browsers (`h3`) open a WebTransport
//! session (HTTP/3 `CONNECT` to [`WEB_PATH`], by `web-transport-quinn`) and speak it on one of the session's
//! streams. Both become a [`wt::Session`] (a plain QUIC connection through [`wt::Session::raw`]) with one
//! bidirectional stream, so everything from the first frame on is the same code for both.
//!
//! Each connection is a task that moves the bytes of the client's stream into its [`Session`] (the sans-IO state
//! machine of `locus-protocol` that applies the session rules: hello first, version, frame size, rate, calls per
//! tick, admin check) and carries out what the session says: queue an input into the world's bounded inbox (so a
//! full inbox slows readers down instead of growing), write an error frame, close. Frames out go through the
//! connection's [`Outlet`]: straight into the QUIC stream from the thread that hands them over (the release thread,
//! once per tick) when nothing is queued ahead of them and the stream takes them whole, else in order through a
//! bounded queue to the connection's writer task. Whatever one client does, the effect stays with its own
//! connection: an error frame, a dropped message, or its connection closed.
//!
//! With [`PositionDatagrams::OnLoss`] (the default) one more task, [`watch_links`], looks at every version-4
//! connection four times a second and tells the world ([`Input::Link`]) when one starts or stops losing packets
//! ([`LinkWatch`]): only then are its walking rows' positions sent in datagrams.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use locus_protocol::{
    self as protocol, ALPN, AdminCommand, AdminReply, ClientMessage, ErrorCode, ServerMessage,
    Session, SessionEvent, error_frame,
};
use quinn::VarInt;
use tokio::sync::mpsc;
use web_transport_quinn as wt;

use crate::cert;
use crate::identity::{identity_of, new_token};
use crate::metrics::Metrics;
use crate::server::{Limits, PositionDatagrams, StartError};
use crate::webcert::{ByAlpn, WebCerts};
use crate::world::{AdminFrom, Closing, Input, SessionId, SessionIds};
use locus_host::Runtime;
use locus_types::Identity;

/// Application close codes (the reason text says more): a native client's QUIC connection is closed with them,
/// a browser's WebTransport session with them as its close code. `engine/docs/protocol.md` §6 lists which fatal
/// error goes with which ([`close_code`]).
pub(crate) const CLOSE_SHUTDOWN: u32 = 1;
const CLOSE_PROTOCOL: u32 = 2;
const CLOSE_TOO_SLOW: u32 = 3;
const CLOSE_INTERNAL: u32 = 4;

/// The path of the WebTransport `CONNECT` a browser sends (`https://HOST:PORT/locus`); others are refused with
/// 404.
pub const WEB_PATH: &str = "/locus";
/// The ALPN of HTTP/3, which browsers offer for WebTransport.
const H3: &[u8] = b"h3";

/// How long a connection closing for a fatal error waits for the answers to its earlier inputs (released once
/// durable) before it closes without them.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The QUIC close code a connection closed for fatal error `code` gets.
fn close_code(code: ErrorCode) -> u32 {
    match code {
        ErrorCode::ShuttingDown => CLOSE_SHUTDOWN,
        ErrorCode::TooSlow => CLOSE_TOO_SLOW,
        ErrorCode::Internal => CLOSE_INTERNAL,
        _ => CLOSE_PROTOCOL,
    }
}

/// The world's inbox, and the number of the tick that started last (to count calls per tick).
pub(crate) struct Inbox {
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) ticks: Arc<AtomicU64>,
    /// The operator's identity: the one session kind that may send `Admin` commands.
    pub(crate) admin: Identity,
    /// Compiles published modules (off the tick thread).
    pub(crate) runtime: Runtime,
    /// Session ids: allocated here when a `Hello` is accepted, freed by the release thread ([`SessionId`]).
    pub(crate) ids: Arc<Mutex<SessionIds>>,
}

/// What the writer task of a connection is given.
#[derive(Debug)]
pub(crate) enum Out {
    /// Frames to write.
    Data(Vec<u8>),
    /// A last (error) frame, then close the connection with this code and reason.
    Close(Vec<u8>, u32, String),
}

/// A connected session, as the release thread reaches it.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    out: Outlet,
    /// The session: a native client's QUIC connection, or a browser's WebTransport session.
    session: wt::Session,
    /// Its QUIC connection.
    conn: quinn::Connection,
    /// Whether its connection loses packets, for a session sent positions in datagrams only then
    /// ([`PositionDatagrams::OnLoss`]; [`watch_links`]).
    link: Option<LinkWatch>,
}

/// How often [`watch_links`] looks at the connections.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Whether a connection loses packets, from the count of packets QUIC declared lost on it (sans-IO: the count and
/// the time are given). Lossy from the first loss until `quiet` passes without another.
///
/// Invariant: [`LinkWatch::observe`] asks for a change only between the states the session is in
/// ([`LinkWatch::lossy`]) and the other; the state changes only by [`LinkWatch::set`], once the world was told.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkWatch {
    lost: u64,
    last_loss: Option<Instant>,
    lossy: bool,
    quiet: Duration,
}

impl LinkWatch {
    /// A clean link whose count of lost packets is `lost` now.
    pub(crate) fn new(lost: u64, quiet: Duration) -> LinkWatch {
        LinkWatch {
            lost,
            last_loss: None,
            lossy: false,
            quiet,
        }
    }

    /// The connection's count of lost packets at `now` (it never falls): `Some(lossy)` if the session should be
    /// told the link changed state ([`Input::Link`]); call [`LinkWatch::set`] once it was.
    pub(crate) fn observe(&mut self, lost: u64, now: Instant) -> Option<bool> {
        if lost > self.lost {
            (self.lost, self.last_loss) = (lost, Some(now));
        }
        let lossy = self
            .last_loss
            .is_some_and(|t| now.saturating_duration_since(t) < self.quiet);
        (lossy != self.lossy).then_some(lossy)
    }

    /// The session was told the link is (not) lossy.
    pub(crate) fn set(&mut self, lossy: bool) {
        self.lossy = lossy;
    }

    /// Whether the session was last told the link is lossy.
    pub(crate) fn lossy(&self) -> bool {
        self.lossy
    }
}

/// Four times a second, tell the world which sessions' connections started or stopped losing packets
/// ([`LinkWatch`], [`Input::Link`]), and count the lossy ones. Ends with the world's inbox.
async fn watch_links(registry: Registry, tx: mpsc::Sender<Input>, metrics: Arc<Metrics>) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !tx.is_closed() {
        every.tick().await;
        let now = Instant::now();
        let mut registry = registry.lock().expect("registry lock");
        let mut lossy = 0;
        for (&session, handle) in registry.iter_mut() {
            let Some(link) = handle.link.as_mut() else {
                continue;
            };
            if let Some(places) = link.observe(handle.conn.stats().path.lost_packets, now) {
                // Queued under the registry's lock, so before the session's `Disconnect` (which its connection
                // sends after leaving the registry). A full inbox: told at a later look.
                if tx.try_send(Input::Link { session, places }).is_ok() {
                    link.set(places);
                }
            }
            lossy += u64::from(link.lossy());
        }
        metrics.lossy_links.store(lossy, Ordering::Relaxed);
    }
}

/// Where a connection's frames are handed over (by the release thread, the connection's read loop, a publish being
/// compiled), keeping their order.
///
/// The common case costs one write into quinn's stream buffer and one wake-up (of quinn's connection driver, which
/// sends): a frame goes straight into the stream when nothing is queued ahead of it and the stream takes it whole
/// without waiting. Otherwise (the client's flow-control window is full, an earlier frame is still queued, or it is
/// a [`Out::Close`]) it goes into a bounded queue that the connection's writer task empties in order; a full queue
/// means the client does not read, which the caller answers by closing it.
///
/// # Invariants
///
/// - [`Stream::queued`] counts the items handed to the queue and not yet written; the writer task holds the stream
///   ([`Stream::send`] is `None`) only while it writes one of them, so `queued == 0` implies `send` is `Some` while
///   the writer runs.
/// - Every decision to write directly or to queue, and every queueing, is made under the [`Stream`]'s lock, and the
///   writer takes the stream and gives it back under it: so frames reach the stream in the order they were handed
///   over.
#[derive(Debug, Clone)]
pub(crate) struct Outlet {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Out>,
}

/// The stream, shared by an [`Outlet`] and its writer task (which holds no sender, so the queue closes when the
/// last [`Outlet`] is dropped).
type Shared = Mutex<Stream>;

/// A connection's send stream and the count of items queued for it (see [`Outlet`]'s invariants).
#[derive(Debug)]
struct Stream {
    send: Option<wt::SendStream>,
    queued: usize,
}

impl Outlet {
    /// An outlet writing into `send`, with a queue of `capacity` items, and the queue's receiving end for
    /// [`writer`].
    fn new(send: wt::SendStream, capacity: usize) -> (Outlet, Arc<Shared>, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Mutex::new(Stream {
            send: Some(send),
            queued: 0,
        }));
        (
            Outlet {
                shared: shared.clone(),
                tx,
            },
            shared,
            rx,
        )
    }

    /// Hand `out` over. `Err(Full)` if the queue is full (the client does not read), `Err(Closed)` once the writer
    /// has stopped (the connection is done).
    fn push(&self, out: Out) -> Result<(), mpsc::error::TrySendError<Out>> {
        let mut stream = self.shared.lock().expect("outlet lock");
        let out = match (out, stream.queued, stream.send.as_mut()) {
            (Out::Data(bytes), 0, Some(send)) => {
                match send.write(&bytes).now_or_never() {
                    Some(Ok(n)) if n == bytes.len() => return Ok(()),
                    // Part of it: the rest is queued (still under the lock, so nothing overtakes it).
                    Some(Ok(n)) => Out::Data(bytes[n..].to_vec()),
                    // The stream is gone: the connection is ending and its read loop will see it.
                    Some(Err(_)) => return Ok(()),
                    // No room in the client's window now: the writer task waits for it.
                    None => Out::Data(bytes),
                }
            }
            (out, _, _) => out,
        };
        let sent = self.tx.try_send(out);
        if sent.is_ok() {
            stream.queued += 1;
        }
        sent
    }
}

/// Sessions by id.
pub(crate) type Registry = Arc<Mutex<HashMap<SessionId, SessionHandle>>>;

/// Start listening: TLS 1.3 with the server's certificate for ALPN `locus/1` and the browsers' one for `h3`
/// ([`ByAlpn`]), the accept loop, and the task that rotates the browsers' certificate.
pub(crate) fn listen(
    addr: SocketAddr,
    identity: &cert::Identity,
    web: Arc<RwLock<WebCerts>>,
    limits: Limits,
    inbox: Inbox,
    registry: Registry,
    metrics: Arc<Metrics>,
) -> Result<quinn::Endpoint, StartError> {
    let tls = |e: &dyn std::fmt::Display| StartError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let native = rustls::sign::CertifiedKey::from_der(
        vec![identity.cert.clone()],
        identity.key.clone_key(),
        &provider,
    )
    .map_err(|e| tls(&e))?;
    let resolver = ByAlpn {
        native: Arc::new(native),
        web: web.clone(),
    };
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    crypto.alpn_protocols = vec![ALPN.to_vec(), H3.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(|e| tls(&e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(|e| tls(&e))?,
    ));
    // One stream per client is all the protocol uses. A browser's HTTP/3 needs more: Chromium refuses a server
    // that grants fewer than 3 unidirectional streams at the handshake (before the ALPN is known), and the rest is
    // given once it is (`web_session`). A native client that opens a unidirectional stream is closed
    // (`refuse_uni_streams`). Datagrams go one way: the server sends version-4 sessions positions in them, and takes none.
    // quinn sends datagrams only with a receive buffer set; one of 0 bytes advertises `max_datagram_frame_size` 0
    // (RFC 9221: takes no DATAGRAM frame), so a client's quinn refuses to send any (`SendDatagramError::TooLarge`),
    // and one sent anyway closes the connection (a protocol violation).
    transport.max_concurrent_bidi_streams(VarInt::from_u32(1));
    transport.max_concurrent_uni_streams(VarInt::from_u32(3));
    transport.datagram_receive_buffer_size(Some(0));
    config.transport_config(Arc::new(transport));
    let listen = |source| StartError::Listen { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(listen)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| listen(std::io::Error::other("no async runtime found")))?;
    // Short connection IDs (`locus_client::CID_LEN`): every packet from a client carries the server's.
    let endpoint = quinn::Endpoint::new(
        locus_client::endpoint_config(),
        Some(config),
        socket,
        runtime,
    )
    .map_err(listen)?;
    tokio::spawn(rotate_web_certs(web, provider));
    if limits.datagrams == PositionDatagrams::OnLoss {
        tokio::spawn(watch_links(
            registry.clone(),
            inbox.tx.clone(),
            metrics.clone(),
        ));
    }
    tokio::spawn(accept_loop(
        endpoint.clone(),
        limits,
        Arc::new(inbox),
        registry,
        metrics,
    ));
    Ok(endpoint)
}

/// How often the browsers' certificate is looked at for rotation ([`WebCerts::rotate`]).
const ROTATE_EVERY: Duration = Duration::from_secs(3600);

/// Rotate the browsers' certificate when due, for as long as the runtime runs.
async fn rotate_web_certs(
    web: Arc<RwLock<WebCerts>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) {
    let mut every = tokio::time::interval(ROTATE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let rotated = web
            .write()
            .expect("web certificates lock")
            .rotate(std::time::SystemTime::now(), &provider);
        match rotated {
            Ok(true) => tracing::info!("the browsers' certificate was rotated"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(%e, "cannot rotate the browsers' certificate (trying again in an hour)")
            }
        }
    }
}

/// Connections in their handshake or waiting for their `Hello`, in all and per IP address, bounded by
/// [`Limits::max_pending`] and [`Limits::pending_per_ip`].
#[derive(Debug, Default)]
pub(crate) struct Pending {
    by_ip: Mutex<PendingCounts>,
}

/// The counts behind [`Pending`]'s lock.
#[derive(Debug, Default)]
struct PendingCounts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One pending connection's place; given back when dropped (its `Hello` came, or it ended).
#[derive(Debug)]
pub(crate) struct PendingGuard {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Pending {
    /// A place for a connection from `ip`, if both limits allow one more.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Option<PendingGuard> {
        let mut counts = self.by_ip.lock().expect("pending lock");
        let here = counts.by_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= limits.max_pending || here >= limits.pending_per_ip {
            return None;
        }
        counts.total += 1;
        *counts.by_ip.entry(ip).or_default() += 1;
        Some(PendingGuard {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut counts = self.pending.by_ip.lock().expect("pending lock");
        counts.total -= 1;
        if let Some(n) = counts.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    limits: Limits,
    inbox: Arc<Inbox>,
    registry: Registry,
    metrics: Arc<Metrics>,
) {
    let pending = Arc::new(Pending::default());
    while let Some(incoming) = endpoint.accept().await {
        let connected = registry.lock().expect("registry lock").len();
        if connected >= limits.max_clients {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        // Refused before the handshake: a flood that never says Hello costs a packet, not a TLS handshake.
        let Some(place) = pending.admit(incoming.remote_address().ip(), &limits) else {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            metrics.refused_pending.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        };
        tokio::spawn(connection(
            incoming,
            place,
            limits,
            inbox.clone(),
            registry.clone(),
            metrics.clone(),
        ));
    }
}

async fn connection(
    incoming: quinn::Incoming,
    place: PendingGuard,
    limits: Limits,
    inbox: Arc<Inbox>,
    registry: Registry,
    metrics: Arc<Metrics>,
) {
    let Ok(conn) = incoming.await else {
        return;
    };
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    let mut rules = Session::new(limits.session(), inbox.admin, Instant::now());
    let deadline = tokio::time::Instant::from_std(
        rules
            .hello_deadline()
            .expect("a new session waits for its Hello"),
    );
    // Nothing is owed to a connection that sends no first frame in time, or ends before one: it is closed with no
    // frame (protocol.md section 6).
    let gone = |reason: &str| {
        metrics.refused.fetch_add(1, Ordering::Relaxed);
        conn.close(CLOSE_PROTOCOL.into(), reason.as_bytes());
    };
    let web = conn
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .is_some_and(|data| data.protocol.as_deref() == Some(H3));
    let wire = if web {
        match tokio::time::timeout_at(deadline, web_session(&conn)).await {
            Ok(Ok(Some(session))) => session,
            // Refused with an HTTP status (another path).
            Ok(Ok(None)) => {
                metrics.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(e)) => return gone(&e.to_string()),
            Err(_) => return gone("no WebTransport session in time"),
        }
    } else {
        wt::Session::raw(conn.clone())
    };
    tokio::spawn(refuse_uni_streams(wire.clone()));
    // From here a browser's session is closed as a session (its close code, protocol.md section 1), and a native
    // connection as before.
    let gone = |reason: &str| {
        metrics.refused.fetch_add(1, Ordering::Relaxed);
        wire.close(CLOSE_PROTOCOL, reason.as_bytes());
    };
    let (mut send, mut recv) = match tokio::time::timeout_at(deadline, wire.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => return gone(&e.to_string()),
        Err(_) => return gone("no Hello in time"),
    };
    let mut buf = vec![0; 64 * 1024];
    let (token, version) = loop {
        match rules.poll_event() {
            Some(SessionEvent::Hello { token, version }) => break (token, version),
            // Before the session exists, a fatal error is told at once: an error frame, then the close.
            Some(SessionEvent::Fatal {
                code,
                message,
                frame,
                ..
            }) => {
                metrics.refused.fetch_add(1, Ordering::Relaxed);
                metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                write_out(
                    &mut send,
                    &wire,
                    Out::Close(frame, close_code(code), message),
                )
                .await;
                return;
            }
            // Nothing else comes before the Hello.
            Some(SessionEvent::Input(_) | SessionEvent::Error(_)) => {}
            None => match tokio::time::timeout_at(deadline, recv.read(&mut buf)).await {
                Ok(Ok(Some(n))) => {
                    metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    let tick = inbox.ticks.load(Ordering::Acquire);
                    rules.receive(&buf[..n], Instant::now(), tick);
                }
                Ok(Ok(None)) => return gone("the stream ended before a Hello"),
                Ok(Err(e)) => return gone(&e.to_string()),
                Err(_) => return gone("no Hello in time"),
            },
        }
    };
    // No longer pending: it said Hello.
    drop(place);
    let token = token.unwrap_or_else(new_token);
    let identity = identity_of(&token);
    rules.open(
        identity,
        Instant::now(),
        inbox.ticks.load(Ordering::Acquire),
    );
    // The session exists from here: it gets an id (freed by the release thread after its `Disconnect`).
    let session = inbox.ids.lock().expect("session ids lock").allocate();
    let (out, shared, rx) = Outlet::new(send, limits.outbound);
    let datagrams = version >= 4
        && limits.datagrams != PositionDatagrams::Never
        && wire.max_datagram_size() > 0;
    let watched = datagrams && limits.datagrams == PositionDatagrams::OnLoss;
    registry.lock().expect("registry lock").insert(
        session,
        SessionHandle {
            out: out.clone(),
            session: wire.clone(),
            conn: conn.clone(),
            // Set once the world has the `Connect`: an `Input::Link` must not overtake it.
            link: None,
        },
    );
    let connect = Input::Connect {
        session,
        identity,
        token,
        version,
        datagrams,
        places: datagrams && limits.datagrams == PositionDatagrams::Always,
    };
    if inbox.tx.send(connect).await.is_err() {
        registry.lock().expect("registry lock").remove(&session);
        // The world never heard of it.
        inbox.ids.lock().expect("session ids lock").release(session);
        wire.close(CLOSE_SHUTDOWN, b"the server is shutting down");
        return;
    }
    if watched && let Some(handle) = registry.lock().expect("registry lock").get_mut(&session) {
        handle.link = Some(LinkWatch::new(
            conn.stats().path.lost_packets,
            limits.loss_quiet,
        ));
    }
    tracing::debug!(session, "connected");
    let mut writer = tokio::spawn(writer(shared, rx, wire.clone()));
    // Each publish being compiled holds a clone of `compiling`: the `Disconnect` waits for them (below).
    let (compiling, mut compiled) = mpsc::channel::<()>(1);
    let peer = Peer { session, compiling };
    let fatal = read_loop(&peer, rules, recv, buf, &inbox, &out, &metrics).await;
    let mut writer_done = false;
    if let Some((code, message)) = fatal {
        metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
        writer_done =
            close_after_answers(session, code, message, &inbox, &out, &wire, &mut writer).await;
    }
    registry.lock().expect("registry lock").remove(&session);
    // A publish still compiling queues its `Publish` (answered to this session) first: the `Disconnect` must follow
    // every input of the session, or the id could be freed and reused before that answer is made.
    drop(peer);
    let _ = compiled.recv().await;
    let _ = inbox.tx.send(Input::Disconnect { session }).await;
    drop(out);
    if !writer_done {
        let _ = writer.await;
    }
    tracing::debug!(session, "disconnected");
}

/// Why a browser's WebTransport session could not be set up.
#[derive(Debug, thiserror::Error)]
enum WebSessionError {
    /// The HTTP/3 exchange failed.
    #[error("WebTransport: {0}")]
    Server(#[from] wt::ServerError),
}

/// Set up a browser's WebTransport session on a connection that chose ALPN `h3`: HTTP/3's settings, then its
/// `CONNECT`, accepted for [`WEB_PATH`] only (`None`: refused with 404). The connection was given one
/// bidirectional stream and no unidirectional one at the handshake (the native protocol's rules, before the ALPN
/// is known); HTTP/3 needs its control and QPACK streams and the `CONNECT` stream as well, so those are given
/// here. Still only one stream of the session can be opened: the one its protocol runs on.
async fn web_session(conn: &quinn::Connection) -> Result<Option<wt::Session>, WebSessionError> {
    // The client's control, QPACK encoder and decoder streams, and room for HTTP/3's greasing streams.
    conn.set_max_concurrent_uni_streams(VarInt::from_u32(8));
    // The CONNECT stream and the session's one stream.
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(2));
    let request = wt::Request::accept(conn.clone()).await?;
    if request.url.path() != WEB_PATH {
        request.reject(wt::http::StatusCode::NOT_FOUND).await?;
        // Let the answer arrive before the connection goes (the client closes it on reading it).
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
        conn.close(CLOSE_PROTOCOL.into(), b"no such path");
        return Ok(None);
    }
    Ok(Some(request.ok().await?))
}

/// Close a session that opens a unidirectional stream (the protocol has none; the 3 the handshake grants a native
/// connection are for browsers' HTTP/3, and a browser's session is granted some for HTTP/3's own streams, which
/// `wt::Session::accept_uni` keeps or drops, returning only the session's): it is closed as for any protocol error
/// (close code 2). Ends with the connection.
async fn refuse_uni_streams(wire: wt::Session) {
    if wire.accept_uni().await.is_ok() {
        wire.close(
            CLOSE_PROTOCOL,
            b"unidirectional streams are not part of the protocol",
        );
    }
}

/// Write one [`Out`] item; false once the connection is done.
async fn write_out(send: &mut wt::SendStream, wire: &wt::Session, out: Out) -> bool {
    match out {
        Out::Data(bytes) => send.write_all(&bytes).await.is_ok(),
        Out::Close(frame, code, reason) => {
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
            // Give the error frame a moment to arrive before the connection goes.
            let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
            wire.close(code, reason.as_bytes());
            false
        }
    }
}

/// Write what an [`Outlet`] queued, in order, until the last outlet is dropped (then finish the stream) or the
/// connection is done.
async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Out>, wire: wt::Session) {
    let lock = || shared.lock().expect("outlet lock");
    while let Some(out) = rx.recv().await {
        // `queued` counts this item, so no one writes directly while the stream is out.
        let Some(mut send) = lock().send.take() else {
            return;
        };
        let open = write_out(&mut send, &wire, out).await;
        let mut stream = lock();
        stream.queued -= 1;
        if !open {
            return;
        }
        stream.send = Some(send);
    }
    if let Some(mut send) = lock().send.take() {
        let _ = send.finish();
    }
}

/// End a session for a fatal error in its input, after the answers to what it sent before: the world puts the
/// error frame behind them ([`Input::Close`]), and the release thread hands it to the writer once the tick is
/// durable, which writes it and closes the connection. A client that does not read is closed without it: by
/// [`deliver`] when its queue is full, or here after [`CLOSE_WAIT`]. Returns whether `writer` ended (and was
/// awaited).
async fn close_after_answers(
    session: SessionId,
    code: ErrorCode,
    message: String,
    inbox: &Inbox,
    out: &Outlet,
    wire: &wt::Session,
    writer: &mut tokio::task::JoinHandle<()>,
) -> bool {
    let close = close_code(code);
    let input = Input::Close {
        session,
        code,
        message: message.clone(),
        close_code: close,
    };
    if inbox.tx.send(input).await.is_err() {
        // The world has stopped: nothing more will be answered; say it now.
        let frame = error_frame(code, &message, None, true);
        if out.push(Out::Close(frame, close, message.clone())).is_err() {
            wire.close(close, message.as_bytes());
        }
        return false;
    }
    tokio::select! {
        _ = writer => true,
        _ = wire.closed() => false,
        () = tokio::time::sleep(CLOSE_WAIT) => {
            wire.close(close, message.as_bytes());
            false
        }
    }
}

/// Who is on a connection.
struct Peer {
    session: SessionId,
    /// Cloned into each publish being compiled (see [`compile_and_publish`]).
    compiling: mpsc::Sender<()>,
}

/// Carry out the session's events and feed it the stream's bytes until the stream ends (`None`) or a fatal error
/// in the input (its code and message). After a fatal error nothing more is read.
async fn read_loop(
    peer: &Peer,
    mut session: Session,
    mut recv: wt::RecvStream,
    mut buf: Vec<u8>,
    inbox: &Inbox,
    out: &Outlet,
    metrics: &Metrics,
) -> Option<(ErrorCode, String)> {
    let id = peer.session;
    loop {
        while let Some(event) = session.poll_event() {
            let message = match event {
                SessionEvent::Input(message) => message,
                // Errors about the client's own input go straight to the writer (they report no world state, so
                // they need not wait for durability); if its queue is full the client is not reading and loses
                // them.
                SessionEvent::Error(frame) => {
                    metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    let _ = out.push(Out::Data(frame));
                    continue;
                }
                SessionEvent::Fatal { code, message, .. } => return Some((code, message)),
                // Only before the session opened.
                SessionEvent::Hello { .. } => continue,
            };
            let input = match message {
                ClientMessage::Call {
                    request,
                    reducer,
                    args,
                } => Input::Call {
                    session: id,
                    request,
                    reducer,
                    args,
                },
                ClientMessage::Subscribe {
                    request,
                    table,
                    filter,
                } => Input::Subscribe {
                    session: id,
                    request,
                    table,
                    filter,
                },
                ClientMessage::Unsubscribe { request, table } => Input::Unsubscribe {
                    session: id,
                    request,
                    table,
                },
                ClientMessage::Admin {
                    request,
                    command: AdminCommand::Publish { wasm },
                } => {
                    compile_and_publish(peer, request, wasm, inbox, out.clone());
                    continue;
                }
                // The session lets admin commands through from the admin only.
                ClientMessage::Admin { request, command } => Input::Admin {
                    from: AdminFrom::Session {
                        session: id,
                        request,
                    },
                    command,
                },
                // The session never passes a Hello on.
                ClientMessage::Hello { .. } => continue,
            };
            if inbox.tx.send(input).await.is_err() {
                return None;
            }
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => {
                metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                let tick = inbox.ticks.load(Ordering::Acquire);
                session.receive(&buf[..n], Instant::now(), tick);
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Compile a published module on a blocking thread (seconds, for a large module), then queue it for the tick
/// thread; a module that does not load is refused at once.
fn compile_and_publish(peer: &Peer, request: u32, wasm: Vec<u8>, inbox: &Inbox, out: Outlet) {
    let (runtime, inputs) = (inbox.runtime.clone(), inbox.tx.clone());
    let (session, compiling) = (peer.session, peer.compiling.clone());
    tokio::spawn(async move {
        // Held until the `Publish` is queued (or refused): the session's `Disconnect` waits for it.
        let _compiling = compiling;
        let compiled = tokio::task::spawn_blocking(move || {
            let module = runtime.load(&wasm);
            (module, wasm)
        })
        .await;
        let from = AdminFrom::Session { session, request };
        let refusal = match compiled {
            Ok((Ok(module), wasm)) => {
                let _ = inputs
                    .send(Input::Publish {
                        from,
                        module: Box::new(module),
                        wasm,
                    })
                    .await;
                return;
            }
            Ok((Err(e), _)) => format!("the module cannot be loaded: {e}"),
            Err(e) => format!("compiling the module failed: {e}"),
        };
        let mut frame = Vec::new();
        protocol::encode_frame(
            &ServerMessage::Admin {
                request,
                reply: AdminReply::Refused { message: refusal },
            },
            &mut frame,
        );
        // A client whose queue is full does not read, and is being closed: it loses the refusal.
        let _ = out.push(Out::Data(frame));
    });
}

/// Hand each session its frames, then its position datagrams (version 4), one session after the other (both lists
/// in session order), so quinn's driver usually finds a session's tick whole and sends it in one packet. A session
/// whose queue is full is too slow and is disconnected. A datagram the connection cannot take (larger than the path
/// carries, or the connection is closing) is dropped, as one lost on the way would be: its rows are sent on the
/// stream once at rest (`protocol.md` §5, "Version 4").
pub(crate) fn deliver(
    registry: &Registry,
    frames: Vec<(SessionId, Vec<u8>)>,
    datagrams: Vec<(SessionId, Vec<Vec<u8>>)>,
    metrics: &Metrics,
) {
    let registry = registry.lock().expect("registry lock");
    let mut datagrams = datagrams.into_iter().peekable();
    let send_datagrams = |session: SessionId, dgrams: Vec<Vec<u8>>| {
        let Some(handle) = registry.get(&session) else {
            return;
        };
        for d in dgrams {
            let len = d.len() as u64;
            match handle.session.send_datagram(d.into()) {
                Ok(()) => {
                    metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
                    metrics.datagrams_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(session, %e, "a position datagram was not sent"),
            }
        }
    };
    for (session, bytes) in frames {
        while let Some((s, d)) = datagrams.next_if(|(s, _)| *s < session) {
            send_datagrams(s, d);
        }
        let own = datagrams.next_if(|(s, _)| *s == session);
        if let Some(handle) = registry.get(&session) {
            let len = bytes.len() as u64;
            match handle.out.push(Out::Data(bytes)) {
                Ok(()) => {
                    metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics.too_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(session, "a client reads too slowly: disconnected");
                    handle.session.close(
                        CLOSE_TOO_SLOW,
                        b"the client did not read its messages fast enough",
                    );
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        if let Some((s, d)) = own {
            send_datagrams(s, d);
        }
    }
    for (s, d) in datagrams {
        send_datagrams(s, d);
    }
}

/// Close the sessions the world closed for a fatal error ([`crate::world::Input::Close`]) or redirected to another
/// region ([`crate::world::Input::Redirect`]), after their frames of the same tick (handed over by [`deliver`]
/// just before): the writer sends the last frame (`Error` or `Redirect`), finishes the stream, then closes. A
/// session whose queue is full is not reading: it is closed without the frame. Nothing handed over after it is
/// written.
pub(crate) fn close_after(registry: &Registry, closes: Vec<Closing>) {
    let registry = registry.lock().expect("registry lock");
    for closing in closes {
        let Some(handle) = registry.get(&closing.session) else {
            continue;
        };
        let out = Out::Close(closing.frame, closing.close_code, closing.reason);
        if let Err(mpsc::error::TrySendError::Full(Out::Close(_, code, reason))) =
            handle.out.push(out)
        {
            handle.session.close(code, reason.as_bytes());
        }
    }
}

/// Close every connection with a fatal error (`ShuttingDown`, or `Internal` when the world has stopped).
pub(crate) fn close_all(registry: &Registry, code: ErrorCode, message: &str) {
    let close = close_code(code);
    for handle in registry.lock().expect("registry lock").values() {
        let frame = error_frame(code, message, None, true);
        if handle
            .out
            .push(Out::Close(frame, close, message.to_owned()))
            .is_err()
        {
            handle.session.close(close, message.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pending places are bounded per address and in all, and given back when their guard drops.
    #[test]
    fn pending_connections_are_bounded_per_address_and_in_all() {
        let limits = Limits {
            max_pending: 5,
            pending_per_ip: 3,
            ..Limits::default()
        };
        let pending = Arc::new(Pending::default());
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let from_a: Vec<_> = (0..3)
            .map(|_| pending.admit(a, &limits).expect("a place"))
            .collect();
        assert!(
            pending.admit(a, &limits).is_none(),
            "a fourth from one address"
        );
        let from_b: Vec<_> = (0..2)
            .map(|_| pending.admit(b, &limits).expect("a place"))
            .collect();
        assert!(pending.admit(c, &limits).is_none(), "a sixth in all");
        drop(from_b);
        assert!(pending.admit(c, &limits).is_some(), "places given back");
        drop(from_a);
        let again: Vec<_> = (0..3)
            .map(|_| pending.admit(a, &limits).expect("a place"))
            .collect();
        assert_eq!(again.len(), 3);
        let counts = pending.by_ip.lock().unwrap();
        assert!(
            !counts.by_ip.contains_key(&b),
            "no entry left for an address with none"
        );
        assert_eq!(counts.total, 3);
    }

    /// A link is lossy from its first lost packet until `quiet` passes without another, and the world is told
    /// each change once, until it was told.
    #[test]
    fn a_link_is_lossy_from_a_loss_until_a_quiet_spell() {
        let quiet = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut link = LinkWatch::new(3, quiet);
        assert_eq!(link.observe(3, at(250)), None, "no new loss");
        assert!(!link.lossy());
        assert_eq!(link.observe(4, at(500)), Some(true));
        // Not told yet (the inbox was full): asked again.
        assert_eq!(link.observe(4, at(750)), Some(true));
        link.set(true);
        assert_eq!(link.observe(4, at(1_000)), None);
        // Another loss restarts the quiet spell.
        assert_eq!(link.observe(6, at(9_000)), None);
        assert_eq!(
            link.observe(6, at(18_999)),
            None,
            "within 10 s of the last loss"
        );
        assert_eq!(link.observe(6, at(19_000)), Some(false));
        link.set(false);
        assert!(!link.lossy());
        assert_eq!(link.observe(6, at(30_000)), None);
        // A loss and a quiet spell both between two looks: told nothing.
        let mut link = LinkWatch::new(0, quiet);
        assert_eq!(link.observe(1, at(0)), Some(true));
        assert_eq!(link.observe(1, at(20_000)), None);
    }

    /// The table "Closing" of `engine/docs/protocol.md` §6: each fatal error a row names is closed with that row's
    /// QUIC close code, and every fatal error is named.
    #[test]
    fn close_codes_are_the_documented_ones() {
        let doc = include_str!("../../docs/protocol.md");
        let table = doc
            .split("| QUIC close code |")
            .nth(1)
            .expect("protocol.md has the close code table");
        let mut named = Vec::new();
        for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code: u32 = cells[1].parse().expect("a close code");
            for c in ErrorCode::ALL {
                if cells[3].contains(&format!("`{c:?}`")) {
                    assert_eq!(close_code(c), code, "{c:?}");
                    named.push(c);
                }
            }
        }
        use ErrorCode::*;
        let fatal = [
            UnsupportedVersion,
            MalformedFrame,
            FrameTooLarge,
            HelloRequired,
            HelloTwice,
            RateLimited,
            TooSlow,
            ShuttingDown,
            Internal,
        ];
        for c in fatal {
            assert!(named.contains(&c), "protocol.md gives {c:?} no close code");
        }
        assert_eq!(named.len(), fatal.len(), "only fatal errors close");
    }
}

//! The network shell: QUIC connections (quinn), frames in and out, and the per-client limits.
//!
//! Each connection is a task that reads the client's stream, checks each message (hello first, frame size, rate,
//! calls per tick) and queues what passes into the world's bounded inbox (so a full inbox slows readers down
//! instead of growing), and a task that writes what the release thread hands it. Whatever one client does, the
//! effect stays with its own connection: an error frame, a dropped message, or its connection closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_types::protocol::{
    self, AdminCommand, AdminReply, ClientMessage, ErrorCode, FrameError, FrameReader,
    MAX_ADMIN_FRAME, MAX_CLIENT_FRAME, SUPPORTED_VERSIONS, ServerMessage,
};
use quinn::VarInt;
use tokio::sync::mpsc;

use crate::cert;
use crate::identity::{identity_of, new_token};
use crate::metrics::Metrics;
use crate::server::{Limits, StartError};
use crate::world::{AdminFrom, Input, SessionId};
use locus_host::Runtime;
use locus_types::Identity;

/// The ALPN protocol id of protocol version 1.
pub const ALPN: &[u8] = b"locus/1";

/// QUIC close codes (the reason text says more).
pub(crate) const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(1);
const CLOSE_PROTOCOL: VarInt = VarInt::from_u32(2);
const CLOSE_TOO_SLOW: VarInt = VarInt::from_u32(3);
const CLOSE_INTERNAL: VarInt = VarInt::from_u32(4);

/// The world's inbox, and the number of the tick that started last (to count calls per tick).
pub(crate) struct Inbox {
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) ticks: Arc<AtomicU64>,
    /// The operator's identity: the one session kind that may send `Admin` commands.
    pub(crate) admin: Identity,
    /// Compiles published modules (off the tick thread).
    pub(crate) runtime: Runtime,
}

/// What the writer task of a connection is given.
#[derive(Debug)]
pub(crate) enum Out {
    /// Frames to write.
    Data(Vec<u8>),
    /// A last (error) frame, then close the connection with this code and reason.
    Close(Vec<u8>, VarInt, String),
}

/// A connected session, as the release thread reaches it.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    tx: mpsc::Sender<Out>,
    conn: quinn::Connection,
}

/// Sessions by id.
pub(crate) type Registry = Arc<Mutex<HashMap<SessionId, SessionHandle>>>;

fn error_frame(code: ErrorCode, message: &str, request: Option<u32>, fatal: bool) -> Vec<u8> {
    let mut out = Vec::new();
    protocol::encode_frame(
        &ServerMessage::Error {
            code,
            message: message.to_owned(),
            request,
            fatal,
        },
        &mut out,
    );
    out
}

/// Start listening: TLS 1.3 with the server's certificate, ALPN `locus/1`, and the accept loop.
pub(crate) fn listen(
    addr: SocketAddr,
    identity: &cert::Identity,
    limits: Limits,
    inbox: Inbox,
    registry: Registry,
    metrics: Arc<Metrics>,
) -> Result<quinn::Endpoint, StartError> {
    let tls = |e: &dyn std::fmt::Display| StartError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| tls(&e))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(|e| tls(&e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(|e| tls(&e))?,
    ));
    // One stream per client is all the protocol uses.
    transport.max_concurrent_bidi_streams(VarInt::from_u32(1));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, addr)
        .map_err(|source| StartError::Listen { addr, source })?;
    tokio::spawn(accept_loop(
        endpoint.clone(),
        limits,
        Arc::new(inbox),
        registry,
        metrics,
    ));
    Ok(endpoint)
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    limits: Limits,
    inbox: Arc<Inbox>,
    registry: Registry,
    metrics: Arc<Metrics>,
) {
    let next = AtomicU32::new(1);
    while let Some(incoming) = endpoint.accept().await {
        let connected = registry.lock().expect("registry lock").len();
        if connected >= limits.max_clients {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        let session = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(
            incoming,
            session,
            limits,
            inbox.clone(),
            registry.clone(),
            metrics.clone(),
        ));
    }
}

/// A token bucket: `rate` per second, at most `burst` saved up.
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            last: Instant::now(),
            rate: f64::from(rate),
            burst: f64::from(burst),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Read the first frame (the `Hello`) of a new connection.
async fn hello(
    conn: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream, FrameReader, Vec<u8>), String> {
    let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
    let mut buf = vec![0; 4096];
    loop {
        match reader.next_frame() {
            Ok(Some(payload)) => {
                let payload = payload.to_vec();
                return Ok((send, recv, reader, payload));
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => reader.push(&buf[..n]),
            Ok(None) => return Err("the stream ended before a Hello".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn connection(
    incoming: quinn::Incoming,
    session: SessionId,
    limits: Limits,
    inbox: Arc<Inbox>,
    registry: Registry,
    metrics: Arc<Metrics>,
) {
    let Ok(conn) = incoming.await else {
        return;
    };
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    let first = tokio::time::timeout(limits.hello_timeout, hello(&conn)).await;
    let (mut send, recv, mut reader, payload) = match first {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            conn.close(CLOSE_PROTOCOL, e.as_bytes());
            return;
        }
        Err(_) => {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            conn.close(CLOSE_PROTOCOL, b"no Hello in time");
            return;
        }
    };
    // The Hello: anything else first, or no common version, ends the connection with an error frame.
    let refuse = |code: ErrorCode, message: String| {
        Out::Close(
            error_frame(code, &message, None, true),
            CLOSE_PROTOCOL,
            message,
        )
    };
    // The highest version both speak.
    let common = |versions: &[u16]| {
        SUPPORTED_VERSIONS
            .iter()
            .rev()
            .copied()
            .find(|v| versions.contains(v))
    };
    let verdict = match protocol::decode_frame::<ClientMessage>(&payload) {
        Ok(ClientMessage::Hello { versions, token }) if common(&versions).is_some() => {
            Ok((token, common(&versions).expect("checked")))
        }
        Ok(ClientMessage::Hello { versions, .. }) => Err(refuse(
            ErrorCode::UnsupportedVersion,
            format!(
                "the server speaks protocol versions {SUPPORTED_VERSIONS:?}; the client offered {versions:?}"
            ),
        )),
        Ok(_) => Err(refuse(
            ErrorCode::HelloRequired,
            "the first message must be Hello".into(),
        )),
        Err(e) => Err(refuse(
            ErrorCode::MalformedFrame,
            format!("the Hello is malformed: {e}"),
        )),
    };
    let (token, version) = match verdict {
        Ok((token, version)) => (token.unwrap_or_else(new_token), version),
        Err(out) => {
            metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
            write_out(&mut send, &conn, out).await;
            return;
        }
    };
    let identity = identity_of(&token);
    let is_admin = identity == inbox.admin;
    if is_admin {
        reader.set_max(MAX_ADMIN_FRAME);
    }
    let (tx, rx) = mpsc::channel(limits.outbound);
    registry.lock().expect("registry lock").insert(
        session,
        SessionHandle {
            tx: tx.clone(),
            conn: conn.clone(),
        },
    );
    let connect = Input::Connect {
        session,
        identity,
        token,
        version,
    };
    if inbox.tx.send(connect).await.is_err() {
        registry.lock().expect("registry lock").remove(&session);
        conn.close(CLOSE_SHUTDOWN, b"the server is shutting down");
        return;
    }
    tracing::debug!(session, "connected");
    let writer = tokio::spawn(writer(send, rx, conn.clone()));
    let peer = Peer {
        session,
        is_admin,
        conn: &conn,
    };
    read_loop(&peer, recv, reader, &limits, &inbox, &tx, &metrics).await;
    registry.lock().expect("registry lock").remove(&session);
    let _ = inbox.tx.send(Input::Disconnect { session }).await;
    drop(tx);
    let _ = writer.await;
    tracing::debug!(session, "disconnected");
}

/// Write one [`Out`] item; false once the connection is done.
async fn write_out(send: &mut quinn::SendStream, conn: &quinn::Connection, out: Out) -> bool {
    match out {
        Out::Data(bytes) => send.write_all(&bytes).await.is_ok(),
        Out::Close(frame, code, reason) => {
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
            // Give the error frame a moment to arrive before the connection goes.
            let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
            conn.close(code, reason.as_bytes());
            false
        }
    }
}

async fn writer(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Out>, conn: quinn::Connection) {
    while let Some(out) = rx.recv().await {
        if !write_out(&mut send, &conn, out).await {
            return;
        }
    }
    let _ = send.finish();
}

/// Who is on a connection.
struct Peer<'a> {
    session: SessionId,
    is_admin: bool,
    conn: &'a quinn::Connection,
}

async fn read_loop(
    peer: &Peer<'_>,
    mut recv: quinn::RecvStream,
    mut reader: FrameReader,
    limits: &Limits,
    inbox: &Inbox,
    tx: &mpsc::Sender<Out>,
    metrics: &Metrics,
) {
    let (session, conn) = (peer.session, peer.conn);
    let mut buf = vec![0; 64 * 1024];
    let mut bucket = Bucket::new(limits.messages_per_second, limits.burst);
    let mut dropped_in_a_row = 0u32;
    let (mut calls_tick, mut calls) = (0u64, 0u32);
    // Non-fatal errors go straight to the writer (they report on the client's own input, not on world state, so
    // they need not wait for durability); if its queue is full the client is not reading and loses them.
    let error = |code: ErrorCode, message: &str, request: Option<u32>| {
        metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
        let _ = tx.try_send(Out::Data(error_frame(code, message, request, false)));
    };
    let fatal = |code: ErrorCode, message: String| {
        metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
        let frame = error_frame(code, &message, None, true);
        if let Err(e) = tx.try_send(Out::Close(frame, CLOSE_PROTOCOL, message)) {
            // The client is not reading: close without the frame.
            let Out::Close(_, code, reason) = e.into_inner() else {
                unreachable!("sent a Close")
            };
            conn.close(code, reason.as_bytes());
        }
    };
    // While messages are dropped for rate, one error frame a second says so (not one per message: a flood must
    // not turn into a flood of answers).
    let mut rate_told: Option<Instant> = None;
    loop {
        // Every whole frame received so far.
        loop {
            let payload = match reader.next_frame() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e @ FrameError::TooLarge { .. }) => {
                    return fatal(ErrorCode::FrameTooLarge, e.to_string());
                }
                Err(e) => return fatal(ErrorCode::MalformedFrame, e.to_string()),
            };
            let message = match protocol::decode_frame::<ClientMessage>(payload) {
                Ok(m) => m,
                Err(e) => {
                    // The framing is intact, so the connection can go on.
                    error(ErrorCode::MalformedFrame, &e.to_string(), None);
                    continue;
                }
            };
            let request = match &message {
                ClientMessage::Hello { .. } => None,
                ClientMessage::Call { request, .. }
                | ClientMessage::Subscribe { request, .. }
                | ClientMessage::Unsubscribe { request, .. }
                | ClientMessage::Admin { request, .. } => Some(*request),
            };
            if !bucket.take() {
                dropped_in_a_row += 1;
                if dropped_in_a_row >= limits.flood_disconnect {
                    return fatal(
                        ErrorCode::RateLimited,
                        format!(
                            "over {} messages dropped for rate in a row: disconnected",
                            limits.flood_disconnect
                        ),
                    );
                }
                if rate_told.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    rate_told = Some(Instant::now());
                    error(
                        ErrorCode::RateLimited,
                        "too many messages per second: dropping messages",
                        request,
                    );
                }
                continue;
            }
            dropped_in_a_row = 0;
            let input = match message {
                ClientMessage::Hello { .. } => {
                    return fatal(ErrorCode::HelloTwice, "a second Hello".into());
                }
                ClientMessage::Call {
                    request,
                    reducer,
                    args,
                } => {
                    let tick = inbox.ticks.load(Ordering::Acquire);
                    if tick != calls_tick {
                        (calls_tick, calls) = (tick, 0);
                    }
                    if calls >= limits.calls_per_tick {
                        error(
                            ErrorCode::Busy,
                            &format!(
                                "more than {} calls in one tick: dropped",
                                limits.calls_per_tick
                            ),
                            Some(request),
                        );
                        continue;
                    }
                    calls += 1;
                    Input::Call {
                        session,
                        request,
                        reducer,
                        args,
                    }
                }
                ClientMessage::Subscribe {
                    request,
                    table,
                    filter,
                } => Input::Subscribe {
                    session,
                    request,
                    table,
                    filter,
                },
                ClientMessage::Unsubscribe { request, table } => Input::Unsubscribe {
                    session,
                    request,
                    table,
                },
                ClientMessage::Admin { request, .. } if !peer.is_admin => {
                    error(
                        ErrorCode::Forbidden,
                        "only the world's admin (the token in the data directory's admin.token) may send \
                         admin commands",
                        Some(request),
                    );
                    continue;
                }
                ClientMessage::Admin {
                    request,
                    command: AdminCommand::Publish { wasm },
                } => {
                    compile_and_publish(session, request, wasm, inbox, tx.clone());
                    continue;
                }
                ClientMessage::Admin { request, command } => Input::Admin {
                    from: AdminFrom::Session { session, request },
                    command,
                },
            };
            if inbox.tx.send(input).await.is_err() {
                return;
            }
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => {
                metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                reader.push(&buf[..n]);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Compile a published module on a blocking thread (seconds, for a large module), then queue it for the tick
/// thread; a module that does not load is refused at once.
fn compile_and_publish(
    session: SessionId,
    request: u32,
    wasm: Vec<u8>,
    inbox: &Inbox,
    out: mpsc::Sender<Out>,
) {
    let (runtime, inputs) = (inbox.runtime.clone(), inbox.tx.clone());
    tokio::spawn(async move {
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
        let _ = out.send(Out::Data(frame)).await;
    });
}

/// Hand each session its frames; a session whose queue is full is too slow and is disconnected.
pub(crate) fn deliver(registry: &Registry, frames: Vec<(SessionId, Vec<u8>)>, metrics: &Metrics) {
    let registry = registry.lock().expect("registry lock");
    for (session, bytes) in frames {
        let Some(handle) = registry.get(&session) else {
            continue;
        };
        let len = bytes.len() as u64;
        match handle.tx.try_send(Out::Data(bytes)) {
            Ok(()) => {
                metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.too_slow.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(session, "a client reads too slowly: disconnected");
                handle.conn.close(
                    CLOSE_TOO_SLOW,
                    b"the client did not read its messages fast enough",
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Close every connection with an `Internal` error (the world has stopped).
pub(crate) fn close_all(registry: &Registry, code: ErrorCode, message: &str) {
    let close = if code == ErrorCode::ShuttingDown {
        CLOSE_SHUTDOWN
    } else {
        CLOSE_INTERNAL
    };
    for handle in registry.lock().expect("registry lock").values() {
        let frame = error_frame(code, message, None, true);
        if handle
            .tx
            .try_send(Out::Close(frame, close, message.to_owned()))
            .is_err()
        {
            handle.conn.close(close, message.as_bytes());
        }
    }
}

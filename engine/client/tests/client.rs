//! The client against a tiny in-test server over real QUIC on loopback, and over WebTransport (HTTP/3) on the
//! same port: the server serves `web-transport-quinn` sessions, raw ones for ALPN `locus/1` and HTTP/3 ones at
//! `/locus` for ALPN `h3`, with the same code. The client tests that matter for both transports run over both.
//!
//! The server speaks just enough protocol: it reads `Hello` (recording the token presented), answers `Welcome`
//! with one table (`player`) and an identity derived from the token (a fixed token for new clients), and serves
//! `Subscribe` and a few reducers:
//! - `spawn(name)`: inserts a player; `Result` Ok, then a `Tick` inserting the row.
//! - `hurt(id, hp)`: sets a player's hp; `Result` Ok, then a `Tick` updating the row.
//! - `fail()`: `Result` with `ReducerFailed`.
//! - `die()`: a fatal `Error`, then the connection is closed.
//! - `shutdown()`: the connection is closed with QUIC code 1 (the server is stopping), without a frame.
//! - `spawn_mob()`: a `Tick` (7) inserting mob 1 of the spatial table `mob` at (1, 2) with handle 0.
//! - `walk(x, y)`: a position datagram (protocol version 4) of tick 8 placing handle 0 of `mob` at (x, y) cm;
//!   `Result` Ok once it is sent, Err with quinn's reason if it cannot be.
//! - `redirect(addr, fingerprint, web)`: a `Redirect` to region `elsewhere` (protocol version 5), then, once the
//!   client closed the connection or after 2 s, the close with `CLOSE_REDIRECTED`. The players are the server's,
//!   not the connection's: a client redirected to the same server finds the same rows there.

#![cfg(not(target_arch = "wasm32"))]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_client::WebTransportConfig;
use locus_client::{
    CallOutcome, Client, ClientConfig, ConnectError, Connection, ErrorCode, Event, Filter,
    Redirect, ReducerCall, RequestId, SendError, ServerMessage, Token, Transport, Trust, Welcome,
    fingerprint,
};
use locus_protocol::{
    ClientMessage, FrameReader, MAX_CLIENT_FRAME, TableDelta, WireRow, WireTable,
};
use locus_types::{ColumnType, Identity, IndexKind, TableDef, TableId};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use web_transport_quinn as wt;

/// Which transport a test's client uses.
#[derive(Clone, Copy, Debug)]
enum Via {
    Quic,
    Web,
}

const VIAS: [Via; 2] = [Via::Quic, Via::Web];

const PLAYER: TableId = TableId(2);
const MOB: TableId = TableId(3);
/// The token the server issues to a client that presents none.
const ISSUED: Token = Token([0x42; 32]);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Player {
    id: u64,
    name: String,
    hp: i32,
}

/// The identity the test server derives from a token.
fn identity_of(token: &Token) -> Identity {
    Identity(token.0.map(|b| !b))
}

#[derive(Default)]
struct State {
    /// The token of each `Hello`, in order.
    hellos: Mutex<Vec<Option<Token>>>,
    /// Rows of `player`, by id.
    players: Mutex<Vec<Player>>,
    /// Complete QUIC handshakes but never answer `Hello`.
    silent: std::sync::atomic::AtomicBool,
}

struct TestServer {
    addr: SocketAddr,
    cert_der: Vec<u8>,
    cert_pem: String,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start() -> TestServer {
        let certified = rcgen::generate_simple_self_signed(vec!["locus".into()]).unwrap();
        let cert_der = certified.cert.der().to_vec();
        let cert_pem = certified.cert.pem();
        let key =
            rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone().into()], key.into())
            .unwrap();
        tls.alpn_protocols = vec![locus_protocol::ALPN.to_vec(), b"h3".to_vec()];
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap(),
        ));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(2)));
        config.transport_config(Arc::new(transport));

        let state = Arc::new(State::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let server_state = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let endpoint =
                    quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
                addr_tx.send(endpoint.local_addr().unwrap()).unwrap();
                let accept = async {
                    while let Some(incoming) = endpoint.accept().await {
                        let state = server_state.clone();
                        tokio::spawn(async move {
                            if let Ok(conn) = incoming.await {
                                serve(conn, state).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
                endpoint.close(0u32.into(), b"test over");
            });
        });
        TestServer {
            addr: addr_rx.recv().unwrap(),
            cert_der,
            cert_pem,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config =
            ClientConfig::new(self.addr, Trust::Fingerprint(fingerprint(&self.cert_der)));
        config.connect_timeout = Duration::from_secs(3);
        config
    }

    /// A WebTransport config for `path` on this server, trusting `hashes`.
    fn web_config(&self, path: &str, hashes: Vec<[u8; 32]>) -> ClientConfig {
        let url = format!("https://{}{path}", self.addr);
        let mut config =
            ClientConfig::web_transport(WebTransportConfig::new(&url, hashes).unwrap());
        config.connect_timeout = Duration::from_secs(3);
        config
    }

    fn config_via(&self, via: Via) -> ClientConfig {
        match via {
            Via::Quic => self.config(),
            Via::Web => self.web_config("/locus", vec![fingerprint(&self.cert_der)]),
        }
    }

    fn hellos(&self) -> Vec<Option<Token>> {
        self.state.hellos.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

fn schema() -> Vec<WireTable> {
    let def = TableDef::builder("player")
        .column("id", ColumnType::U64)
        .column("name", ColumnType::String)
        .column("hp", ColumnType::I32)
        .primary_key("id")
        .build()
        .unwrap();
    let mob = TableDef::builder("mob")
        .column("id", ColumnType::U64)
        .column("pos", ColumnType::Vec2)
        .column("hp", ColumnType::I32)
        .primary_key("id")
        .index("pos", IndexKind::Spatial)
        .build()
        .unwrap();
    vec![
        WireTable { id: PLAYER, def },
        WireTable { id: MOB, def: mob },
    ]
}

fn row(p: &Player) -> WireRow {
    WireRow(rmp_serde::to_vec(p).unwrap())
}

fn rows_tick(inserts: Vec<WireRow>, updates: Vec<WireRow>) -> ServerMessage {
    ServerMessage::Tick {
        tick: 7,
        time: 350_000,
        tables: vec![TableDelta {
            table: PLAYER,
            inserts,
            updates,
            deletes: vec![],
            patches: vec![],
            handles: None,
            moves: None,
        }],
    }
}

async fn read_message(
    recv: &mut wt::RecvStream,
    frames: &mut FrameReader,
) -> Option<ClientMessage> {
    let mut buf = [0; 4096];
    loop {
        if let Some(payload) = frames.next_frame().unwrap() {
            return Some(locus_protocol::decode_frame(payload).unwrap());
        }
        let n = recv.read(&mut buf).await.ok()??;
        frames.push(&buf[..n]);
    }
}

async fn send(stream: &mut wt::SendStream, messages: &[ServerMessage]) {
    let mut out = Vec::new();
    for m in messages {
        locus_protocol::encode_frame(m, &mut out);
    }
    stream.write_all(&out).await.unwrap();
}

async fn serve(conn: quinn::Connection, state: Arc<State>) {
    if state.silent.load(std::sync::atomic::Ordering::SeqCst) {
        conn.closed().await;
        return;
    }
    let h3 = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|alpn| alpn == b"h3");
    let conn = if h3 {
        let Ok(request) = wt::Request::accept(conn).await else {
            return;
        };
        if request.url.path() != "/locus" {
            let conn = request.conn().clone();
            let _ = request.reject(wt::http::StatusCode::NOT_FOUND).await;
            // Let the response arrive before the connection goes.
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
            return;
        }
        match request.ok().await {
            Ok(session) => session,
            Err(_) => return,
        }
    } else {
        wt::Session::raw(conn)
    };
    let Ok((mut tx, mut rx)) = conn.accept_bi().await else {
        return;
    };
    let mut frames = FrameReader::new(MAX_CLIENT_FRAME);
    let Some(ClientMessage::Hello { versions, token }) = read_message(&mut rx, &mut frames).await
    else {
        panic!("Hello must come first");
    };
    assert_eq!(versions, [5, 4, 3, 2, 1], "newest first");
    state.hellos.lock().unwrap().push(token);
    let token = token.unwrap_or(ISSUED);
    let welcome = ServerMessage::Welcome(Welcome {
        version: 1,
        identity: identity_of(&token),
        token,
        tick_rate: 20,
        tick: 5,
        tables: schema(),
        reducers: vec![],
    });
    send(&mut tx, &[welcome]).await;
    while let Some(message) = read_message(&mut rx, &mut frames).await {
        match message {
            ClientMessage::Subscribe { request, table, .. } => {
                assert_eq!(table, "player");
                let inserts = state.players.lock().unwrap().iter().map(row).collect();
                let answer = ServerMessage::Subscribed {
                    request,
                    table: PLAYER,
                };
                send(&mut tx, &[answer, rows_tick(inserts, vec![])]).await;
            }
            ClientMessage::Call {
                request,
                reducer,
                args,
            } => {
                let ok = ServerMessage::Result {
                    request,
                    tick: 7,
                    outcome: CallOutcome::Ok,
                };
                match reducer.as_str() {
                    "spawn" => {
                        let (name,): (String,) = rmp_serde::from_slice(&args).unwrap();
                        let player = {
                            let mut players = state.players.lock().unwrap();
                            let player = Player {
                                id: players.len() as u64 + 1,
                                name,
                                hp: 100,
                            };
                            players.push(player.clone());
                            player
                        };
                        send(&mut tx, &[ok, rows_tick(vec![row(&player)], vec![])]).await;
                    }
                    "hurt" => {
                        let (id, hp): (u64, i32) = rmp_serde::from_slice(&args).unwrap();
                        let player = {
                            let mut players = state.players.lock().unwrap();
                            let player = &mut players[id as usize - 1];
                            player.hp = hp;
                            player.clone()
                        };
                        send(&mut tx, &[ok, rows_tick(vec![], vec![row(&player)])]).await;
                    }
                    "fail" => {
                        let failed = ServerMessage::Result {
                            request,
                            tick: 7,
                            outcome: CallOutcome::Err {
                                code: ErrorCode::ReducerFailed,
                                message: "nope".into(),
                            },
                        };
                        send(&mut tx, &[failed]).await;
                    }
                    "die" => {
                        let fatal = ServerMessage::Error {
                            code: ErrorCode::Internal,
                            message: "the disk is on fire".into(),
                            request: Some(request),
                            fatal: true,
                        };
                        send(&mut tx, &[fatal]).await;
                        let _ = tx.finish();
                        // Let the frame arrive before closing (closing drops unsent stream data).
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                        conn.close(0, b"fatal");
                        return;
                    }
                    "bad_tick" => {
                        // A Tick inserting a whole row, its payload cut short by its last byte.
                        let mut frame = Vec::new();
                        let player = Player {
                            id: 9,
                            name: "cut".into(),
                            hp: 1,
                        };
                        locus_protocol::encode_frame(
                            &rows_tick(vec![row(&player)], vec![]),
                            &mut frame,
                        );
                        frame.pop();
                        let len = (frame.len() - locus_protocol::FRAME_PREFIX) as u32;
                        frame[..locus_protocol::FRAME_PREFIX].copy_from_slice(&len.to_be_bytes());
                        tx.write_all(&frame).await.unwrap();
                        conn.closed().await;
                        return;
                    }
                    "spawn_mob" => {
                        let tick = ServerMessage::Tick {
                            tick: 7,
                            time: 350_000,
                            tables: vec![TableDelta {
                                table: MOB,
                                inserts: vec![WireRow(
                                    rmp_serde::to_vec(&(1u64, [1.0f32, 2.0], 3i32)).unwrap(),
                                )],
                                updates: vec![],
                                deletes: vec![],
                                patches: vec![],
                                handles: Some(WireRow(vec![0])),
                                moves: Some(WireRow(vec![])),
                            }],
                        };
                        send(&mut tx, &[ok, tick]).await;
                    }
                    "walk" => {
                        let (x, y): (i32, i32) = rmp_serde::from_slice(&args).unwrap();
                        let mut places = locus_protocol::places::PlacesWriter::default();
                        places.push(MOB, 0, [x, y]);
                        let mut datagrams = Vec::new();
                        places.write(8, 400_000, &mut datagrams);
                        let sent = datagrams
                            .into_iter()
                            .try_for_each(|d| conn.send_datagram(d.into()));
                        let answer = match sent {
                            Ok(()) => ok,
                            Err(e) => ServerMessage::Result {
                                request,
                                tick: 7,
                                outcome: CallOutcome::Err {
                                    code: ErrorCode::ReducerFailed,
                                    message: e.to_string(),
                                },
                            },
                        };
                        send(&mut tx, &[answer]).await;
                    }
                    "redirect" => {
                        let (addr, fingerprint, web): (String, Vec<u8>, Option<String>) =
                            rmp_serde::from_slice(&args).unwrap();
                        let redirect = ServerMessage::Redirect(Redirect {
                            region: "elsewhere".into(),
                            addr,
                            fingerprint: fingerprint.try_into().unwrap(),
                            web,
                        });
                        send(&mut tx, &[redirect]).await;
                        let _ = tx.finish();
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                        conn.close(locus_protocol::CLOSE_REDIRECTED, b"redirected");
                        return;
                    }
                    "shutdown" => {
                        // As a stopping server does: QUIC close code 1, no frame.
                        conn.close(1, b"stopping");
                        return;
                    }
                    other => panic!("unexpected reducer {other}"),
                }
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn spawn_call(name: &str) -> ReducerCall {
    ReducerCall::new("spawn", rmp_serde::to_vec(&(name,)).unwrap())
}

/// Poll until an event satisfies `done`; returns every event polled.
fn poll_until(client: &mut Client, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    loop {
        let events = client.poll();
        let finished = events.iter().any(&done);
        all.extend(events);
        if finished {
            return all;
        }
        assert!(Instant::now() < deadline, "timed out; events: {all:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test]
async fn connects_by_pinned_fingerprint_and_exchanges_messages() {
    let server = TestServer::start();
    let mut conn = Connection::connect(&server.config()).await.unwrap();
    assert_eq!(conn.identity(), identity_of(&ISSUED));
    assert_eq!(conn.welcome().token, ISSUED);
    assert_eq!(conn.welcome().tables, schema());
    assert_eq!(server.hellos(), [None]);

    let sub = conn.subscribe("player", Filter::All).unwrap();
    assert_eq!(
        conn.next_message().await.unwrap(),
        ServerMessage::Subscribed {
            request: sub.0,
            table: PLAYER
        }
    );
    assert!(matches!(
        conn.next_message().await.unwrap(),
        ServerMessage::Tick { .. }
    ));

    let call = conn.call(&spawn_call("ann")).unwrap();
    assert_ne!(call, sub, "request ids are distinct");
    assert_eq!(
        conn.next_message().await.unwrap(),
        ServerMessage::Result {
            request: call.0,
            tick: 7,
            outcome: CallOutcome::Ok
        }
    );
    let ann = Player {
        id: 1,
        name: "ann".into(),
        hp: 100,
    };
    assert_eq!(
        conn.next_message().await.unwrap(),
        rows_tick(vec![row(&ann)], vec![])
    );
    conn.close().await;
}

#[tokio::test]
async fn a_wrong_fingerprint_is_refused_with_a_clear_error() {
    let server = TestServer::start();
    let mut config = server.config();
    config.trust = Trust::Fingerprint([0xee; 32]);
    let err = Connection::connect(&config).await.unwrap_err();
    let expected_hex = "ee".repeat(32);
    let found_hex = locus_client::fingerprint_hex(&fingerprint(&server.cert_der));
    match &err {
        ConnectError::FingerprintMismatch { expected, found } => {
            assert_eq!(expected, &expected_hex);
            assert_eq!(found, &found_hex);
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("not the pinned one") && text.contains(&found_hex),
        "{text}"
    );
    // The handshake never finished, so no Hello reached the server.
    assert!(server.hellos().is_empty());
}

#[tokio::test]
async fn a_certificate_file_in_der_or_pem_pins_its_fingerprint() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let der = dir.path().join("server.der");
    let pem = dir.path().join("server.pem");
    std::fs::write(&der, &server.cert_der).unwrap();
    std::fs::write(&pem, &server.cert_pem).unwrap();
    for file in [der, pem] {
        let mut config = server.config();
        config.trust = Trust::CertFile(file);
        let conn = Connection::connect(&config).await.unwrap();
        assert_eq!(conn.identity(), identity_of(&ISSUED));
        conn.close().await;
    }
    let mut config = server.config();
    config.trust = Trust::CertFile(dir.path().join("missing.pem"));
    assert!(matches!(
        Connection::connect(&config).await,
        Err(ConnectError::CertFile(_))
    ));
}

#[test]
fn the_token_is_saved_and_presented_on_the_next_connect() {
    for via in VIAS {
        let server = TestServer::start();
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("profiles/ann/token");
        let mut config = server.config_via(via);
        config.token_file = Some(token_file.clone());

        let first = Client::connect(config.clone()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&token_file).unwrap().trim(),
            ISSUED.to_hex()
        );
        let identity = first.identity();
        drop(first);

        let second = Client::connect(config).unwrap();
        assert_eq!(second.identity(), identity, "the identity is restored");
        assert_eq!(server.hellos(), [None, Some(ISSUED)]);
    }
}

#[test]
fn callbacks_fire_for_rows_and_results() {
    for via in VIAS {
        let server = TestServer::start();
        let mut client = Client::connect(server.config_via(via)).unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = |prefix: &'static str| {
            let seen = seen.clone();
            move |p: &Player| {
                seen.lock()
                    .unwrap()
                    .push(format!("{prefix} {} {}", p.name, p.hp))
            }
        };
        client.on_insert::<Player>("player", log("insert"));
        let updates = seen.clone();
        client.on_update::<Player>("player", move |old: &Player, new: &Player| {
            updates
                .lock()
                .unwrap()
                .push(format!("update {} {}->{}", new.name, old.hp, new.hp));
        });
        client.on_delete::<Player>("player", log("delete"));
        let results = seen.clone();
        client.on_result(move |request, outcome| {
            results
                .lock()
                .unwrap()
                .push(format!("result {} {outcome:?}", request.0));
        });

        let events = client.poll();
        assert!(matches!(events[..], [Event::Connected { .. }]));
        let spawn = client.call(&spawn_call("ann")).unwrap();
        poll_until(&mut client, |e| matches!(e, Event::Inserted { .. }));
        let hurt = client
            .call_raw("hurt", &rmp_serde::to_vec(&(1u64, 40i32)).unwrap())
            .unwrap();
        poll_until(&mut client, |e| matches!(e, Event::Updated { .. }));
        let fail = client.call_raw("fail", &[0x90]).unwrap();
        let events = poll_until(&mut client, |e| matches!(e, Event::CallResult { .. }));
        assert!(events.contains(&Event::CallResult {
            request: fail,
            tick: 7,
            outcome: CallOutcome::Err {
                code: ErrorCode::ReducerFailed,
                message: "nope".into()
            }
        }));

        assert_eq!(
            *seen.lock().unwrap(),
            [
                format!("result {} Ok", spawn.0),
                "insert ann 100".to_owned(),
                format!("result {} Ok", hurt.0),
                "update ann 100->40".to_owned(),
                format!(
                    "result {} Err {{ code: ReducerFailed, message: \"nope\" }}",
                    fail.0
                ),
            ]
        );
        assert_eq!(
            client.cache().rows::<Player>("player").unwrap(),
            [Player {
                id: 1,
                name: "ann".into(),
                hp: 40
            }]
        );
        assert!(client.is_connected());
    }
}

#[test]
fn a_fatal_error_closes_the_client_cleanly() {
    for via in VIAS {
        let server = TestServer::start();
        let mut client = Client::connect(server.config_via(via)).unwrap();
        let die = client.call_raw("die", &[0x90]).unwrap();
        let events = poll_until(&mut client, |e| matches!(e, Event::Disconnected { .. }));
        let fatal = events
            .iter()
            .position(|e| {
                *e == Event::ServerError {
                    code: ErrorCode::Internal,
                    message: "the disk is on fire".into(),
                    request: Some(die),
                    fatal: true,
                }
            })
            .expect("the fatal error is reported");
        assert!(
            matches!(&events[fatal + 1], Event::Disconnected { reason } if reason.contains("disk is on fire")),
            "{events:?}"
        );
        assert!(!client.is_connected());
        assert_eq!(client.call(&spawn_call("bob")), Err(SendError::Closed));
        // Nothing more happens, and dropping the client does not hang.
        assert!(client.poll().is_empty());
        let started = Instant::now();
        drop(client);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn a_malformed_tick_closes_the_connection_and_changes_nothing() {
    for via in VIAS {
        let server = TestServer::start();
        let mut client = Client::connect(server.config_via(via)).unwrap();
        client.call_raw("bad_tick", &[0x90]).unwrap();
        let events = poll_until(&mut client, |e| matches!(e, Event::Disconnected { .. }));
        assert!(
            matches!(&events[..], [Event::Connected { .. }, Event::Disconnected { reason }]
            if reason.contains("bad frame") && reason.contains("malformed Tick")),
            "{events:?}"
        );
        assert_eq!(client.cache().len("player"), 0);
        assert!(!client.is_connected());
    }
}

#[test]
fn a_connection_closed_by_the_server_is_reported_with_its_reason() {
    for via in VIAS {
        let server = TestServer::start();
        let mut client = Client::connect(server.config_via(via)).unwrap();
        client.call_raw("shutdown", &[0x90]).unwrap();
        let events = poll_until(&mut client, |e| matches!(e, Event::Disconnected { .. }));
        assert!(
            matches!(events.last(), Some(Event::Disconnected { reason })
            if reason.contains("shutting down") && reason.contains("stopping")),
            "{events:?}"
        );
        assert!(!client.is_connected());
        // The client can come back (here the test server is still up).
        client.reconnect().unwrap();
        assert!(client.is_connected());
        assert_eq!(server.hellos(), [None, Some(ISSUED)]);
    }
}

#[test]
fn reconnect_keeps_the_identity_and_subscriptions_and_refills_the_cache() {
    for via in VIAS {
        let server = TestServer::start();
        let mut client = Client::connect(server.config_via(via)).unwrap();
        client.subscribe("player", Filter::All).unwrap();
        client.call(&spawn_call("ann")).unwrap();
        poll_until(&mut client, |e| matches!(e, Event::Inserted { .. }));
        assert_eq!(client.cache().len("player"), 1);
        let identity = client.identity();

        client.reconnect().unwrap();
        assert!(client.is_connected());
        let events = poll_until(&mut client, |e| matches!(e, Event::Inserted { .. }));
        let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
        assert_eq!(kinds, ["deleted", "connected", "subscribed", "inserted"]);
        assert_eq!(client.identity(), identity);
        assert_eq!(server.hellos(), [None, Some(ISSUED)]);
        assert_eq!(client.cache().len("player"), 1);
        let request = client.call(&spawn_call("bob")).unwrap();
        assert!(
            request > RequestId(2),
            "request ids keep counting across reconnects"
        );
    }
}

/// Ask the test server to redirect the client to `server` itself (`web`: its `/locus.json` URL, if any).
fn redirect_to(client: &Client, server: &TestServer, web: Option<&str>) {
    let args = rmp_serde::to_vec(&(
        server.addr.to_string(),
        fingerprint(&server.cert_der).to_vec(),
        web,
    ))
    .unwrap();
    client.call_raw("redirect", &args).unwrap();
}

/// Poll until the client's cache has no redirect in progress; returns every event polled.
fn poll_until_settled(client: &mut Client) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    loop {
        all.extend(client.poll());
        if !client.cache().is_redirecting() {
            return all;
        }
        assert!(Instant::now() < deadline, "timed out; events: {all:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Over QUIC the client follows a redirect by itself: it connects to the address the redirect names, pinning its
/// fingerprint, presents its token, subscribes again, and keeps its view: here the new server's view is the same,
/// so the application sees the redirect and no row event at all; requests go to the new connection, and its
/// config names the new server.
#[test]
fn a_redirect_over_quic_is_followed_by_the_client_keeping_its_identity_subscriptions_and_view() {
    let server = TestServer::start();
    let mut client = Client::connect(server.config()).unwrap();
    client.subscribe("player", Filter::All).unwrap();
    client.call(&spawn_call("ann")).unwrap();
    poll_until(&mut client, |e| matches!(e, Event::Inserted { .. }));
    let identity = client.identity();
    redirect_to(&client, &server, None);
    let mut events = poll_until(&mut client, |e| matches!(e, Event::Redirected { .. }));
    assert!(client.cache().is_redirecting());
    events.extend(poll_until_settled(&mut client));
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    // The redirect call's own result never comes: the redirect is the old connection's last frame.
    assert_eq!(kinds, ["redirected"], "{events:?}");
    assert_eq!(
        events[0],
        Event::Redirected {
            region: "elsewhere".into(),
            web: None,
            followed: true
        }
    );
    assert!(client.is_connected());
    assert_eq!(client.identity(), identity);
    assert_eq!(server.hellos(), [None, Some(ISSUED)]);
    assert_eq!(client.cache().len("player"), 1);
    assert_eq!(client.config().token, Some(ISSUED));
    assert_eq!(
        client.config().trust,
        Trust::Fingerprint(fingerprint(&server.cert_der))
    );
    client
        .call(&ReducerCall::new(
            "hurt",
            rmp_serde::to_vec(&(1u64, 50i32)).unwrap(),
        ))
        .unwrap();
    let events = poll_until(&mut client, |e| matches!(e, Event::Updated { .. }));
    assert_eq!(
        events.iter().map(Event::kind).collect::<Vec<_>>(),
        ["call_result", "updated"]
    );
}

/// Over WebTransport the client cannot follow a redirect by itself (the new region's certificate hashes are in
/// its `/locus.json`): it reports it with that URL, then the end of the connection, keeping its view;
/// `follow_redirect` then connects there as the same identity, subscribes again, and keeps the view as a followed
/// redirect does.
#[test]
fn a_redirect_over_webtransport_is_reported_and_followed_by_the_application_keeping_the_view() {
    let server = TestServer::start();
    let mut client = Client::connect(server.config_via(Via::Web)).unwrap();
    client.subscribe("player", Filter::All).unwrap();
    client.call(&spawn_call("ann")).unwrap();
    poll_until(&mut client, |e| matches!(e, Event::Inserted { .. }));
    let web = "http://127.0.0.1:1/locus.json";
    redirect_to(&client, &server, Some(web));
    let events = poll_until(&mut client, |e| matches!(e, Event::Disconnected { .. }));
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds, ["redirected", "disconnected"], "{events:?}");
    assert_eq!(
        events[0],
        Event::Redirected {
            region: "elsewhere".into(),
            web: Some(web.into()),
            followed: false
        }
    );
    assert_eq!(client.cache().len("player"), 1, "the view is kept");
    assert!(!client.is_connected());
    // What the application would read from the `/locus.json` at `web`.
    let Transport::WebTransport(target) = server.config_via(Via::Web).transport else {
        unreachable!()
    };
    client.follow_redirect(target.clone()).unwrap();
    assert!(client.is_connected() && client.cache().is_redirecting());
    let events = poll_until_settled(&mut client);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(client.cache().len("player"), 1);
    assert_eq!(server.hellos(), [None, Some(ISSUED)]);
    assert_eq!(client.config().transport, Transport::WebTransport(target));
}

/// Protocol version 4: a position datagram moves the row in the client's cache, with the event a move gives, and
/// nothing changes for the code using the client.
#[test]
fn positions_in_datagrams_reach_the_cache() {
    for via in VIAS {
        let server = TestServer::start();
        let mut client = Client::connect(server.config_via(via)).unwrap();
        client.call_raw("spawn_mob", &[0x90]).unwrap();
        poll_until(&mut client, |e| {
            matches!(e, Event::Inserted { table: MOB, .. })
        });
        let walk = client
            .call_raw("walk", &rmp_serde::to_vec(&(150i32, -250i32)).unwrap())
            .unwrap();
        // The datagram and the stream's Result may arrive in either order.
        let mut events = poll_until(&mut client, |e| matches!(e, Event::CallResult { .. }));
        assert!(
            events.contains(&Event::CallResult {
                request: walk,
                tick: 7,
                outcome: CallOutcome::Ok
            }),
            "the client accepts datagrams: {events:?}"
        );
        if !events.iter().any(|e| matches!(e, Event::Updated { .. })) {
            events.extend(poll_until(&mut client, |e| {
                matches!(e, Event::Updated { .. })
            }));
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Updated { table: MOB, old, new, .. }
            if **old == *rmp_serde::to_vec(&(1u64, [1.0f32, 2.0], 3i32)).unwrap()
                && **new == *rmp_serde::to_vec(&(1u64, [1.5f32, -2.5], 3i32)).unwrap())),
            "{events:?}"
        );
        assert_eq!(
            client
                .cache()
                .get::<(u64, [f32; 2], i32), _>("mob", &1u64)
                .unwrap(),
            Some((1, [1.5, -2.5], 3))
        );
        assert_eq!(client.cache().datagram_stats().applied, 1);
    }
}

#[test]
fn connecting_to_a_silent_address_says_no_server_answered() {
    // A UDP socket that never answers, and a port nothing listens on (closed ports stay silent too).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for addr in [silent.local_addr().unwrap(), free] {
        let mut config = ClientConfig::new(addr, Trust::Fingerprint([0; 32]));
        config.connect_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = Client::connect(config).unwrap_err();
        assert!(
            matches!(err, ConnectError::NoServer { addr: a, .. } if a == addr),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("no server answered at {addr} within 300ms")
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn a_server_that_completes_the_handshake_but_sends_no_welcome_is_a_timeout() {
    for via in VIAS {
        let server = TestServer::start();
        server
            .state
            .silent
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut config = server.config_via(via);
        config.connect_timeout = Duration::from_millis(500);
        let err = Client::connect(config).unwrap_err();
        assert!(matches!(err, ConnectError::Timeout(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the server accepted the connection but sent no Welcome within 500ms"
        );
    }
}

#[tokio::test]
async fn webtransport_carries_the_same_protocol_and_its_stats_are_quic_stats() {
    let server = TestServer::start();
    let mut conn = Connection::connect(&server.config_via(Via::Web))
        .await
        .unwrap();
    assert_eq!(conn.identity(), identity_of(&ISSUED));
    assert_eq!(conn.welcome().tables, schema());
    let sub = conn.subscribe("player", Filter::All).unwrap();
    assert_eq!(
        conn.next_message().await.unwrap(),
        ServerMessage::Subscribed {
            request: sub.0,
            table: PLAYER
        }
    );
    conn.call_raw("spawn_mob", &[0x90]).unwrap();
    conn.call_raw("walk", &rmp_serde::to_vec(&(150i32, -250i32)).unwrap())
        .unwrap();
    // The session's datagram comes through `next_incoming`, without the session's prefix.
    let mut datagram = None;
    while datagram.is_none() {
        match tokio::time::timeout(Duration::from_secs(5), conn.next_incoming())
            .await
            .expect("in time")
            .unwrap()
        {
            locus_client::Incoming::Datagram(bytes) => datagram = Some(bytes),
            locus_client::Incoming::Message(_) => {}
        }
    }
    let mut places = locus_protocol::places::PlacesWriter::default();
    places.push(MOB, 0, [150, -250]);
    let mut expected = Vec::new();
    places.write(8, 400_000, &mut expected);
    assert_eq!(datagram.unwrap(), expected[0]);
    assert!(conn.stats().udp_rx.datagrams > 0);
    conn.close().await;
}

#[tokio::test]
async fn webtransport_refuses_a_certificate_whose_hash_was_not_given_and_names_both() {
    let server = TestServer::start();
    let found_hex = locus_client::fingerprint_hex(&fingerprint(&server.cert_der));
    let err = Connection::connect(&server.web_config("/locus", vec![[0xee; 32], [0xdd; 32]]))
        .await
        .unwrap_err();
    match &err {
        ConnectError::FingerprintMismatch { expected, found } => {
            assert_eq!(
                *expected,
                format!("{}, {}", "ee".repeat(32), "dd".repeat(32))
            );
            assert_eq!(*found, found_hex);
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    // Either of two hashes (a rotation's overlap) is accepted.
    let both = server.web_config("/locus", vec![[0xee; 32], fingerprint(&server.cert_der)]);
    Connection::connect(&both).await.unwrap().close().await;
    // No hashes: a native client has nothing else to trust.
    let err = Connection::connect(&server.web_config("/locus", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::WebTransport(_)), "{err:?}");
    assert_eq!(server.hellos(), [None]);
}

#[tokio::test]
async fn webtransport_to_another_path_is_refused_with_the_status() {
    let server = TestServer::start();
    let err =
        Connection::connect(&server.web_config("/other", vec![fingerprint(&server.cert_der)]))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, ConnectError::WebTransport(text) if text.contains("404")),
        "{err:?}"
    );
    assert!(server.hellos().is_empty());
}

#[test]
fn webtransport_to_a_silent_address_says_no_server_answered() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let web = WebTransportConfig::new(&format!("https://{addr}/locus"), vec![[0; 32]]).unwrap();
    let mut config = ClientConfig::web_transport(web);
    config.connect_timeout = Duration::from_millis(300);
    let err = Client::connect(config).unwrap_err();
    assert!(
        matches!(err, ConnectError::NoServer { addr: a, .. } if a == addr),
        "{err:?}"
    );
}

/// Async programs spawn connections on multi-threaded runtimes (the load tester, the server's examples).
#[test]
fn connecting_is_a_send_future() {
    fn assert_send<T: Send>(_: &T) {}
    let quic = ClientConfig::new("127.0.0.1:1".parse().unwrap(), Trust::Fingerprint([0; 32]));
    let web = ClientConfig::web_transport(
        WebTransportConfig::new("https://127.0.0.1:1/locus", vec![[0; 32]]).unwrap(),
    );
    for config in [quic, web] {
        let connect = Connection::connect(&config);
        assert_send(&connect);
    }
}

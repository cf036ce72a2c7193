//! End-to-end tests: the real server (wasmtime, the commit log with fsync, QUIC on loopback) running the demo
//! module (`game-module`, built to wasm by the test), with real clients (`locus-client`).
//!
//! The world's own behaviour (views, results and errors, protocol versions, keys, fatal closes, the operator's
//! commands) is tested without sockets in `world.rs`; these keep smoke tests of the whole, and what only the
//! network and the process show: the first message and framing, rate limits, timeouts, `kill -9`, and ids reused
//! only once the release thread delivered their old session's frames.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
#[path = "common/keys.rs"]
mod keys;
#[path = "common/raw.rs"]
mod raw;

use common::{DEMO, WAIT, free_port, result_of, wait_for};
use game_module as gm;
use keys::keys_module;
use locus_client::{Client, ClientConfig, Trust};
use locus_protocol::{
    CallOutcome, ClientMessage, ErrorCode, FrameReader, MAX_SERVER_FRAME, PROTOCOL_VERSION,
    ServerMessage,
};
use locus_server::{Server, ServerConfig};
use locus_types::Identity;
use raw::{Raw, Via, over_both_transports};

fn start(dir: &Path) -> Server {
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    Server::start(config).expect("the server starts")
}

fn connect(addr: SocketAddr, fingerprint: [u8; 32], token_file: Option<PathBuf>) -> Client {
    let mut config = ClientConfig::new(addr, Trust::Fingerprint(fingerprint));
    config.token_file = token_file;
    Client::connect(config).expect("the client connects")
}

fn players(client: &Client) -> Vec<gm::Player> {
    client
        .cache()
        .rows::<gm::Player>("player")
        .expect("player rows decode")
}

fn sees(client: &Client, identity: Identity) -> bool {
    players(client).iter().any(|p| p.identity == identity)
}

fn call_ok(client: &mut Client, call: &locus_module::ReducerCall) {
    let request = client.call(call).expect("send");
    let events = wait_for(client, "a call result", |_, ev| {
        result_of(ev, request).is_some()
    });
    assert_eq!(result_of(&events, request), Some(&CallOutcome::Ok));
}

#[test]
fn two_clients_see_each_other_when_near_and_stop_when_far() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (addr, fp) = (server.local_addr(), server.fingerprint());
    let mut a = connect(addr, fp, None);
    let mut b = connect(addr, fp, None);
    assert_ne!(a.identity(), b.identity());
    for c in [&mut a, &mut b] {
        c.subscribe("player", locus_protocol::Filter::All).unwrap();
    }
    call_ok(&mut a, &gm::teleport::call(1000.0, 1000.0));
    call_ok(&mut b, &gm::teleport::call(1010.0, 1000.0));
    let (ia, ib) = (a.identity(), b.identity());
    wait_for(&mut a, "a to see b", |c, _| sees(c, ib) && sees(c, ia));
    wait_for(&mut b, "b to see a", |c, _| sees(c, ia) && sees(c, ib));
    // b goes far away (beyond the 72 m leave radius): each loses the other, and still sees itself.
    call_ok(&mut b, &gm::teleport::call(3000.0, 3000.0));
    wait_for(&mut a, "a to lose b", |c, _| !sees(c, ib) && sees(c, ia));
    wait_for(&mut b, "b to lose a", |c, _| !sees(c, ia) && sees(c, ib));
    // And back within the 64 m enter radius.
    call_ok(&mut b, &gm::teleport::call(1000.0, 1050.0));
    wait_for(&mut a, "a to see b again", |c, _| sees(c, ib));
    let m = server.metrics();
    assert!(m.ticks > 0 && m.sessions == 2, "{m:?}");
    server.shutdown();
}

/// A UDP relay on loopback between one client and a server, which drops every 4th packet from the server to the
/// client while `lossy` is set.
struct Relay {
    addr: SocketAddr,
    lossy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        use std::net::UdpSocket;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let (lossy, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let client = Arc::new(Mutex::new(None));
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        let up = {
            let (stop, client) = (stop.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        let _ = back.send(&buf[..n]);
                    }
                }
            })
        };
        let down = {
            let (stop, lossy) = (stop.clone(), lossy.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0; 65_536];
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = back2.recv(&mut buf) else {
                        continue;
                    };
                    count += 1;
                    if lossy.load(Ordering::Relaxed) && count.is_multiple_of(4) {
                        continue;
                    }
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = front2.send_to(&buf[..n], to);
                    }
                }
            })
        };
        Relay {
            addr,
            lossy,
            stop,
            threads: vec![up, down],
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Positions in datagrams follow the link (`PositionDatagrams::OnLoss`, the default): on a clean link a walking
/// player reaches a near client as moves on the stream, no datagram sent; once the client's link loses packets (a
/// relay dropping every 4th packet to it), in datagrams. Either way the client ends holding the exact row.
#[test]
fn a_walking_player_reaches_a_near_client_in_datagrams_once_its_link_loses_packets() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (addr, fp) = (server.local_addr(), server.fingerprint());
    let relay = Relay::start(addr);
    let mut a = connect(relay.addr, fp, None);
    let mut b = connect(addr, fp, None);
    for c in [&mut a, &mut b] {
        c.subscribe("player", locus_protocol::Filter::All).unwrap();
    }
    call_ok(&mut a, &gm::teleport::call(1000.0, 1000.0));
    call_ok(&mut b, &gm::teleport::call(1010.0, 1000.0));
    let ib = b.identity();
    wait_for(&mut a, "a to see b", |c, _| sees(c, ib));
    let at = |c: &Client| {
        players(c)
            .into_iter()
            .find(|p| p.identity == ib)
            .expect("b in view")
            .pos
    };
    let arrived = |a: &mut Client, b: &mut Client, y: f32| {
        wait_for(b, "b to arrive", |c, _| (at(c).y - y).abs() < 1e-3);
        let truth = players(b).into_iter().find(|p| p.identity == ib).unwrap();
        wait_for(a, "a to hold b's exact row", |c, _| {
            players(c).into_iter().find(|p| p.identity == ib).as_ref() == Some(&truth)
        });
    };
    call_ok(&mut b, &gm::move_to::call(1010.0, 1005.0));
    wait_for(&mut a, "a to see b walk", |c, _| at(c).y > 1002.0);
    arrived(&mut a, &mut b, 1005.0);
    assert_eq!(a.cache().datagram_stats().applied, 0, "a clean link: moves");
    assert_eq!(server.metrics().datagrams_out, 0);
    relay
        .lossy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    call_ok(&mut b, &gm::move_to::call(1010.0, 1030.0));
    wait_for(&mut a, "a to be sent b's positions in datagrams", |c, _| {
        c.cache().datagram_stats().applied > 0
    });
    assert_eq!(server.metrics().lossy_links, 1);
    arrived(&mut a, &mut b, 1030.0);
    server.shutdown();
}

/// A client that stops reading: once its stream's flow-control window is full, the server queues its frames
/// (after the part of a frame the stream took, nothing overtaking it), and a client that reads again gets every
/// frame whole and in order; once `Limits::outbound` batches wait, it is closed as too slow (QUIC code 3) and the
/// world and a reading client go on.
#[test]
fn a_client_that_stops_reading_is_queued_in_order_then_closed_as_too_slow() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.path().to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Two seconds of ticks.
    config.limits.outbound = 40;
    let server = Server::start(config).expect("the server starts");
    let (addr, fp) = (server.local_addr(), server.fingerprint());
    let mut walker = connect(addr, fp, None);
    walker
        .subscribe("player", locus_protocol::Filter::All)
        .unwrap();
    call_ok(&mut walker, &gm::teleport::call(1005.0, 1000.0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A client whose stream window is 1 KiB: a few ticks fill it.
    let (_endpoint, conn, mut send, mut recv) = rt.block_on(async {
        let mut quic = locus_client::quic_client_config(fp).unwrap();
        let mut transport = quinn::TransportConfig::default();
        transport.stream_receive_window(quinn::VarInt::from_u32(1024));
        quic.transport_config(std::sync::Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        endpoint.set_default_client_config(quic);
        let conn = endpoint
            .connect(addr, locus_client::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        (endpoint, conn, send, recv)
    });
    let mut out = Vec::new();
    for message in [
        // Version 3: walking goes on the stream (version 4 would send it in datagrams, outside the window).
        ClientMessage::Hello {
            versions: vec![3],
            token: None,
        },
        ClientMessage::Subscribe {
            request: 1,
            table: "player".into(),
            filter: locus_protocol::Filter::All,
        },
        ClientMessage::Subscribe {
            request: 2,
            table: "creature".into(),
            filter: locus_protocol::Filter::All,
        },
        ClientMessage::Call {
            request: 3,
            reducer: "teleport".into(),
            args: gm::teleport::call(1000.0, 1000.0).args,
        },
    ] {
        locus_protocol::encode_frame(&message, &mut out);
    }
    rt.block_on(send.write_all(&out)).unwrap();
    // The walker walks back and forth beside it: something to send every tick.
    call_ok(&mut walker, &gm::move_to::call(1005.0, 1060.0));
    // Not reading for a second (20 batches, half the queue), then reading: every frame whole, ticks in order.
    std::thread::sleep(Duration::from_secs(1));
    let mut reader = FrameReader::new(MAX_SERVER_FRAME);
    let (mut frames, mut last_tick) = (0, 0);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let mut buf = vec![0; 64 * 1024];
        let n = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(200), recv.read(&mut buf)).await
        });
        let Ok(n) = n else { continue };
        let n = n.expect("the stream reads").expect("the stream stays open");
        reader.push(&buf[..n]);
        while let Some(payload) = reader.next_frame().expect("frames are whole") {
            let message: ServerMessage =
                locus_protocol::decode_frame(payload).expect("every frame decodes");
            frames += 1;
            if let ServerMessage::Tick { tick, .. } = message {
                assert!(tick >= last_tick, "tick {tick} after {last_tick}");
                last_tick = tick;
            }
        }
    }
    assert!(
        frames > 20 && last_tick > 0,
        "{frames} frames, last tick {last_tick}"
    );
    assert_eq!(server.metrics().too_slow, 0, "read in time: not dropped");
    // Now it never reads again: closed as too slow.
    let closed = rt.block_on(async { tokio::time::timeout(WAIT, conn.closed()).await });
    let closed = closed.expect("the server closes it in time");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(3)),
        "{closed:?}"
    );
    assert_eq!(server.metrics().too_slow, 1);
    // The world and the reading client go on.
    call_ok(&mut walker, &gm::move_to::call(1005.0, 1000.0));
    server.shutdown();
}

/// After `raw` was sent a fatal `Error` frame with `message`: nothing more comes on the stream, and the
/// connection (QUIC) or session (WebTransport) is closed with a reason that repeats the message (protocol.md §6,
/// "Closing"). Returns the close code.
fn closed_after(raw: &mut Raw, message: &str) -> Result<u64, String> {
    assert!(raw.next().is_none(), "something after the fatal error");
    let (code, reason) = raw.close()?;
    assert_eq!(
        reason, message,
        "the close's reason repeats the Error's message"
    );
    Ok(code)
}

/// Each kind of bad input gets its error, fatal or not, over either transport (protocol.md §1: everything from
/// section 2 on is the same for both), and only the client that sent it is affected.
fn bad_input_gets_a_clear_error_for_that_client_only_and_the_world_keeps_ticking(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.path().to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // The flood below must make 1,000 drops in a row: at the default 200 messages/s a loaded machine can stall the
    // reader long enough for a token to come back mid-flood and reset the run. At 10/s one comes back every 100 ms.
    config.limits.messages_per_second = 10;
    let server = Server::start(config).expect("the server starts");
    let (addr, fp) = (server.local_addr(), server.fingerprint());
    // A well-behaved client watches its own avatar move throughout.
    let mut good = connect(addr, fp, None);
    good.subscribe("player", locus_protocol::Filter::All)
        .unwrap();
    call_ok(&mut good, &gm::teleport::call(500.0, 500.0));

    // A call before Hello: fatal HelloRequired.
    let mut raw = Raw::open(&server, via);
    raw.send(&ClientMessage::Call {
        request: 1,
        reducer: "move_to".into(),
        args: vec![0x90],
    });
    let (code, fatal, message) = raw.next_error().expect("an error frame");
    assert_eq!((code, fatal), (ErrorCode::HelloRequired, true));
    assert_eq!(closed_after(&mut raw, &message), Ok(2));

    // No common version: fatal UnsupportedVersion.
    let mut raw = Raw::open(&server, via);
    raw.send(&ClientMessage::Hello {
        versions: vec![99],
        token: None,
    });
    let (code, fatal, message) = raw.next_error().expect("an error frame");
    assert_eq!((code, fatal), (ErrorCode::UnsupportedVersion, true));
    assert_eq!(closed_after(&mut raw, &message), Ok(2));

    // A malformed frame: an error, and the connection goes on.
    let mut raw = Raw::open(&server, via);
    raw.hello();
    raw.send_bytes(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]);
    assert_eq!(
        raw.next_error().map(|e| (e.0, e.1)),
        Some((ErrorCode::MalformedFrame, false))
    );
    raw.send(&ClientMessage::Subscribe {
        request: 5,
        table: "no_such_table".into(),
        filter: locus_protocol::Filter::All,
    });
    assert_eq!(
        raw.next_error().map(|e| (e.0, e.1)),
        Some((ErrorCode::NoSuchTable, false))
    );
    // A second Hello: fatal.
    raw.send(&ClientMessage::Hello {
        versions: vec![PROTOCOL_VERSION],
        token: None,
    });
    let (code, fatal, message) = raw.next_error().expect("an error frame");
    assert_eq!((code, fatal), (ErrorCode::HelloTwice, true));
    assert_eq!(closed_after(&mut raw, &message), Ok(2));

    // An oversized frame: fatal FrameTooLarge, told before the payload is read.
    let mut raw = Raw::open(&server, via);
    raw.hello();
    raw.send_bytes(&(locus_protocol::MAX_CLIENT_FRAME as u32 + 1).to_be_bytes());
    let (code, fatal, message) = raw.next_error().expect("an error frame");
    assert_eq!((code, fatal), (ErrorCode::FrameTooLarge, true));
    assert_eq!(closed_after(&mut raw, &message), Ok(2));

    // A flood: rate-limited, then disconnected.
    let mut raw = Raw::open(&server, via);
    raw.hello();
    let mut burst = Vec::new();
    for i in 0..3_000 {
        locus_protocol::encode_frame(
            &ClientMessage::Unsubscribe {
                request: i,
                table: "player".into(),
            },
            &mut burst,
        );
    }
    raw.send_bytes(&burst);
    let mut codes = Vec::new();
    let mut last = String::new();
    while let Some((code, fatal, message)) = raw.next_error() {
        codes.push((code, fatal));
        if fatal {
            last = message;
            break;
        }
    }
    assert!(
        codes.contains(&(ErrorCode::RateLimited, false)),
        "{codes:?}"
    );
    assert_eq!(
        codes.last(),
        Some(&(ErrorCode::RateLimited, true)),
        "a persistent flood is disconnected"
    );
    assert_eq!(closed_after(&mut raw, &last), Ok(2));

    // Through all of it the world ticked, and the good client is served: its move arrives.
    call_ok(&mut good, &gm::teleport::call(520.0, 500.0));
    let me = good.identity();
    wait_for(&mut good, "its own moved avatar", |c, _| {
        players(c)
            .iter()
            .any(|p| p.identity == me && (p.pos.x - 520.0).abs() < 1e-3)
    });
    let m = server.metrics();
    assert!(m.protocol_errors >= 6, "{m:?}");
    server.shutdown();
}
over_both_transports!(
    bad_input_gets_a_clear_error_for_that_client_only_and_the_world_keeps_ticking
);

/// `locus serve` as a child process; returns it once it prints its address.
fn spawn_locus(dir: &Path, wasm: &Path, addr: SocketAddr) -> (std::process::Child, [u8; 32]) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["serve", "--data-dir"])
        .arg(dir)
        .arg("--module")
        .arg(wasm)
        .args(["--listen", &addr.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn locus");
    let stdout = child.stdout.take().unwrap();
    let mut fingerprint = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(hex) = line.trim().strip_prefix("fingerprint") {
            let t = Trust::parse_fingerprint(hex.trim()).expect("a fingerprint");
            if let Trust::Fingerprint(f) = t {
                fingerprint = Some(f);
            }
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    (child, fingerprint.expect("locus printed its fingerprint"))
}

#[test]
fn after_kill_9_and_a_restart_state_and_identities_are_intact_and_clients_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("game_module.wasm");
    std::fs::write(&wasm, &*DEMO).unwrap();
    let data = dir.path().join("data");
    let token_file = dir.path().join("client/token");
    let addr = free_port();

    let (mut server, fp) = spawn_locus(&data, &wasm, addr);
    let mut client = connect(addr, fp, Some(token_file.clone()));
    let identity = client.identity();
    assert!(token_file.exists(), "the token was saved");
    client
        .subscribe("player", locus_protocol::Filter::All)
        .unwrap();
    // Confirmed: the result arrives only once the tick is durable.
    call_ok(&mut client, &gm::teleport::call(1234.0, 567.0));
    call_ok(&mut client, &gm::set_name::call("survivor".into()));
    let before: gm::Player = players(&client)
        .into_iter()
        .find(|p| p.identity == identity)
        .unwrap();
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    wait_for(&mut client, "the client to notice", |c, _| {
        !c.is_connected()
    });

    let (mut server, fp2) = spawn_locus(&data, &wasm, addr);
    assert_eq!(fp2, fp, "the certificate is kept in the data directory");
    client.reconnect().expect("reconnect with the saved token");
    assert_eq!(client.identity(), identity, "the same identity");
    wait_for(&mut client, "its player again", |c, _| {
        players(c).iter().any(|p| {
            p.identity == identity
                && p.name == "survivor"
                && p.id == before.id
                && (p.pos.x - 1234.0).abs() < 1e-3
        })
    });
    // A brand-new client process with the token file is the same identity too.
    let again = connect(addr, fp, Some(token_file));
    assert_eq!(again.identity(), identity);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_client_that_goes_silent_times_out_and_client_disconnected_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.path().to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.limits.idle_timeout = Duration::from_secs(1);
    let server = Server::start(config).unwrap();
    let (addr, fp) = (server.local_addr(), server.fingerprint());
    // The demo world generates its terrain in its first ticks (about a second on a loaded 2-core machine). The raw
    // client sends nothing while it waits for its Welcome, so with a 1 s idle timeout it must not wait through
    // them: start once those ticks are behind.
    let started = Instant::now();
    while server.metrics().ticks < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the world does not tick"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The silent one: a raw connection that says hello, walks to (1000, 1000), then stops answering anything
    // (its runtime is dropped first, so not even a QUIC close goes out).
    let mut raw = Raw::open(&server, Via::Quic);
    raw.send(&ClientMessage::Hello {
        versions: vec![PROTOCOL_VERSION],
        token: None,
    });
    let Some(ServerMessage::Welcome(welcome)) = raw.next() else {
        panic!("a welcome")
    };
    let silent = welcome.identity;
    let teleport = gm::teleport::call(1000.0, 1000.0);
    raw.send(&ClientMessage::Call {
        request: 1,
        reducer: teleport.reducer.to_string(),
        args: teleport.args.clone(),
    });
    assert!(std::iter::from_fn(|| raw.next()).any(|m| matches!(
        m,
        ServerMessage::Result {
            request: 1,
            outcome: CallOutcome::Ok,
            ..
        }
    )));

    let mut watcher = connect(addr, fp, None);
    watcher
        .subscribe("player", locus_protocol::Filter::All)
        .unwrap();
    call_ok(&mut watcher, &gm::teleport::call(1005.0, 1000.0));
    let online = |c: &Client| {
        players(c)
            .iter()
            .find(|p| p.identity == silent)
            .map(|p| p.online)
    };
    wait_for(&mut watcher, "the silent player, online", |c, _| {
        online(c) == Some(true)
    });

    raw.go_silent();
    let went = Instant::now();
    wait_for(&mut watcher, "the silent player to go offline", |c, _| {
        online(c) == Some(false)
    });
    assert!(
        went.elapsed() < Duration::from_secs(5),
        "detected within the idle timeout and a tick"
    );
    assert_eq!(server.metrics().sessions, 1);
    server.shutdown();
}

fn start_module(dir: &Path, wasm: Vec<u8>) -> Server {
    let mut config = ServerConfig::new(wasm);
    config.data_dir = dir.to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    Server::start(config).expect("the server starts")
}

/// Calls accepted before a fatal error are answered before it: a client sends 20 calls, then floods until it is
/// disconnected for rate; it gets the 20 results, then the fatal `RateLimited`, then the close (code 2), and the
/// world holds the 20 calls' rows. Over either transport.
fn a_flooding_client_gets_the_results_of_its_earlier_calls_before_the_fatal_error(via: Via) {
    const N: u32 = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(keys_module());
    config.data_dir = dir.path().to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Room for exactly the N calls, then a flood: with the default 200 messages/s a loaded machine can stall the
    // reader long enough for tokens to come back mid-flood, resetting the run of drops, so the flood never became
    // fatal and the client waited in vain. At 1 message/s a run of 100 drops is read long before a token returns.
    config.limits.messages_per_second = 1;
    config.limits.burst = N;
    config.limits.flood_disconnect = 100;
    let server = Server::start(config).expect("the server starts");
    let (addr, fp) = (server.local_addr(), server.fingerprint());
    let mut raw = Raw::open(&server, via);
    raw.hello();
    let mut burst = Vec::new();
    for i in 0..N {
        locus_protocol::encode_frame(
            &ClientMessage::Call {
                request: i,
                reducer: "put".into(),
                args: vec![0x91, i as u8 + 1],
            },
            &mut burst,
        );
    }
    for i in 0..1_000 {
        locus_protocol::encode_frame(
            &ClientMessage::Unsubscribe {
                request: 1_000 + i,
                table: "thing".into(),
            },
            &mut burst,
        );
    }
    // The server stops reading at the fatal error, so the end of the burst may be refused.
    let _ = raw.try_send_bytes(&burst);
    let mut results = Vec::new();
    let fatal = loop {
        match raw.next() {
            Some(ServerMessage::Result {
                request, outcome, ..
            }) => results.push((request, outcome)),
            Some(ServerMessage::Error {
                code,
                fatal: true,
                message,
                ..
            }) => break (code, message),
            Some(_) => {}
            None => panic!("closed without a fatal error; results: {results:?}"),
        }
    };
    assert_eq!(fatal.0, ErrorCode::RateLimited);
    let expected: Vec<_> = (0..N).map(|i| (i, CallOutcome::Ok)).collect();
    assert_eq!(results, expected, "every accepted call's result, in order");
    assert_eq!(closed_after(&mut raw, &fatal.1), Ok(2));
    let mut watcher = connect(addr, fp, None);
    watcher
        .subscribe("thing", locus_protocol::Filter::All)
        .unwrap();
    wait_for(&mut watcher, "the 20 rows", |c, _| {
        c.cache().len("thing") == N as usize
    });
    server.shutdown();
}
over_both_transports!(
    a_flooding_client_gets_the_results_of_its_earlier_calls_before_the_fatal_error
);

/// What §3.1 and §1 of protocol.md say about a connection's first message and its streams, each checked, over
/// either transport. The streams and datagrams a client cannot open are checked for each in its own terms.
fn the_first_message_and_the_streams_behave_as_documented(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_module(dir.path(), keys_module());
    let refused = |first: &[u8]| {
        let mut raw = Raw::open(&server, via);
        raw.send_bytes(first);
        let (code, fatal, message) = raw.next_error().expect("an error frame");
        ((code, fatal), closed_after(&mut raw, &message))
    };
    let fatal = |code| ((code, true), Ok(2));
    // Bytes that are no client message: fatal MalformedFrame.
    assert_eq!(
        refused(&[0, 0, 0, 1, 0xc1]),
        fatal(ErrorCode::MalformedFrame)
    );
    // A Hello whose token is 31 bytes: fatal MalformedFrame.
    let mut hello = vec![
        0x81, 0xa5, b'H', b'e', b'l', b'l', b'o', 0x92, 0x91, 0x02, 0xc4, 31,
    ];
    hello.extend([7; 31]);
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend(&hello);
    assert_eq!(refused(&frame), fatal(ErrorCode::MalformedFrame));
    // A well-formed message other than Hello: fatal HelloRequired.
    let mut unsubscribe = Vec::new();
    locus_protocol::encode_frame(
        &ClientMessage::Unsubscribe {
            request: 1,
            table: "thing".into(),
        },
        &mut unsubscribe,
    );
    assert_eq!(refused(&unsubscribe), fatal(ErrorCode::HelloRequired));
    // An oversized first frame: fatal FrameTooLarge, with its error frame as after a Hello.
    let too_large = (locus_protocol::MAX_CLIENT_FRAME as u32 + 1).to_be_bytes();
    assert_eq!(refused(&too_large), fatal(ErrorCode::FrameTooLarge));
    // A session speaks the highest version both sides offer (what each version is sent: `tests/world.rs`).
    for (offered, chosen) in [(vec![1], 1), (vec![2, 1], 2), (vec![99, 1], 1)] {
        let mut raw = Raw::open(&server, via);
        raw.send(&ClientMessage::Hello {
            versions: offered.clone(),
            token: None,
        });
        let welcome = raw.next();
        assert!(
            matches!(&welcome, Some(ServerMessage::Welcome(w)) if w.version == chosen),
            "offered {offered:?}: {welcome:?}"
        );
    }

    let mut raw = Raw::open(&server, via);
    raw.hello();
    // No datagrams to the server (it advertises a `max_datagram_frame_size` of 0) and no second bidirectional
    // stream: neither transport lets the client open them, and the session goes on over its one stream.
    let wait = Duration::from_millis(300);
    let conn = raw.quic().clone();
    assert_eq!(conn.max_datagram_size(), Some(0));
    match via {
        Via::Quic => {
            assert!(matches!(
                conn.send_datagram(vec![1, 2, 3].into()),
                Err(quinn::SendDatagramError::TooLarge)
            ));
            let bi = raw
                .rt
                .block_on(async { tokio::time::timeout(wait, conn.open_bi()).await });
            assert!(bi.is_err(), "a second bidirectional stream opened");
        }
        Via::Web => {
            // The session's datagrams are QUIC datagrams with the session's id in front.
            let session = raw.web().clone();
            assert_eq!(session.max_datagram_size(), 0);
            let sent = session.send_datagram(vec![1, 2, 3].into());
            assert!(
                matches!(
                    sent,
                    Err(web_transport_quinn::SessionError::SendDatagramError(
                        quinn::SendDatagramError::TooLarge
                    ))
                ),
                "{sent:?}"
            );
            // HTTP/3's CONNECT stream and the session's stream took the two bidirectional streams granted.
            let bi = raw
                .rt
                .block_on(async { tokio::time::timeout(wait, session.open_bi()).await });
            assert!(
                bi.is_err(),
                "a second bidirectional stream of the session opened"
            );
        }
    }
    // A refused Subscribe keeps the subscription it would have replaced.
    raw.send(&ClientMessage::Subscribe {
        request: 1,
        table: "thing".into(),
        filter: locus_protocol::Filter::All,
    });
    assert!(matches!(
        raw.next(),
        Some(ServerMessage::Subscribed { request: 1, .. })
    ));
    raw.send(&ClientMessage::Subscribe {
        request: 2,
        table: "thing".into(),
        filter: locus_protocol::Filter::Eq {
            column: "no_such_column".into(),
            value: vec![0x01],
        },
    });
    assert_eq!(
        raw.next_error().map(|e| (e.0, e.1)),
        Some((ErrorCode::BadSubscription, false))
    );
    // Trailing bytes after the arguments' array: BadArguments, nothing run.
    raw.send(&ClientMessage::Call {
        request: 3,
        reducer: "put".into(),
        args: vec![0x91, 0x05, 0xc0],
    });
    raw.send(&ClientMessage::Call {
        request: 4,
        reducer: "put".into(),
        args: vec![0x91, 0x06],
    });
    let mut inserted = Vec::new();
    let mut outcomes = Vec::new();
    while outcomes.len() < 2 || inserted.is_empty() {
        match raw.next().expect("the session goes on") {
            ServerMessage::Result {
                request, outcome, ..
            } => outcomes.push((request, outcome)),
            ServerMessage::Tick { tables, .. } => {
                inserted.extend(tables.into_iter().flat_map(|t| t.inserts).map(|r| r.0));
            }
            _ => {}
        }
    }
    assert!(
        matches!(
            &outcomes[0],
            (
                3,
                CallOutcome::Err {
                    code: ErrorCode::BadArguments,
                    ..
                }
            )
        ),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], (4, CallOutcome::Ok));
    // Row [6, 6] reached the client: the `All` subscription is still in force.
    assert_eq!(inserted, vec![vec![0x92, 0x06, 0x06]]);

    server.shutdown();
}
over_both_transports!(the_first_message_and_the_streams_behave_as_documented);

/// A unidirectional stream: the protocol has none, so the connection (QUIC) or session (WebTransport) is closed as
/// for a protocol error, code 2. Over QUIC the handshake grants 3 (for browsers' HTTP/3 on the same port); over
/// WebTransport HTTP/3 grants the session some too (8, less the client's own control and QPACK streams).
fn a_unidirectional_stream_is_closed_as_a_protocol_error(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_module(dir.path(), keys_module());
    let mut raw = Raw::open(&server, via);
    raw.hello();
    match via {
        Via::Quic => {
            let conn = raw.quic().clone();
            raw.rt.block_on(async {
                let mut uni = conn.open_uni().await.expect("QUIC grants the stream");
                uni.write_all(b"x").await.expect("written");
            });
        }
        Via::Web => {
            let session = raw.web().clone();
            raw.rt.block_on(async {
                let mut uni = session.open_uni().await.expect("HTTP/3 grants the stream");
                uni.write_all(b"x").await.expect("written");
            });
        }
    }
    assert_eq!(raw.close_code(), Ok(2));
    server.shutdown();
}
over_both_transports!(a_unidirectional_stream_is_closed_as_a_protocol_error);

/// A client that sends no first frame in time is closed with code 2 and no frame (protocol.md §3 item 1, §6
/// "Closing"): over QUIC the connection, over WebTransport the session (§1: the session's close code).
fn a_client_that_sends_no_first_frame_in_time_is_closed_with_code_2(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(keys_module());
    config.data_dir = dir.path().to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.limits.hello_timeout = Duration::from_secs(1);
    let server = Server::start(config).expect("the server starts");
    let mut raw = Raw::open(&server, via);
    assert!(raw.next().is_none(), "no frame");
    assert_eq!(raw.close(), Ok((2, "no Hello in time".into())));
    server.shutdown();
}
over_both_transports!(a_client_that_sends_no_first_frame_in_time_is_closed_with_code_2);

// ---- session ids ----------------------------------------------------------------------------------------------

#[test]
fn a_reconnecting_client_reuses_a_session_id_and_never_gets_the_old_sessions_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.path().to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // A slow disk: a tick's answers wait up to 600 ms for durability, so the old session's are still waiting when
    // the new one connects.
    config.log.sync = locus_log::SyncPolicy::Interval(Duration::from_millis(600));
    let server = Server::start(config).expect("the server starts");
    let hello = ClientMessage::Hello {
        versions: vec![PROTOCOL_VERSION],
        token: Some(locus_protocol::Token([7; 32])),
    };
    let walk = gm::move_dir::call(1.0, 0.0);
    for round in 0..4 {
        // The old session asks for a lot and is gone before its answers are released.
        let mut old = Raw::open(&server, Via::Quic);
        old.send(&hello);
        assert!(matches!(old.next(), Some(ServerMessage::Welcome(_))));
        old.send(&ClientMessage::Subscribe {
            request: 9_000,
            table: "player".into(),
            filter: locus_protocol::Filter::All,
        });
        for request in 9_001..9_020 {
            old.send(&ClientMessage::Call {
                request,
                reducer: walk.reducer.into(),
                args: walk.args.clone(),
            });
        }
        // Refused at once, not after durability: once it is here, the server has read the calls before it.
        old.send(&ClientMessage::Admin {
            request: 9_999,
            command: locus_protocol::AdminCommand::Snapshot,
        });
        assert!(matches!(
            old.next_error(),
            Some((ErrorCode::Forbidden, false, _))
        ));
        // Gone a few ticks later: its calls' answers are made (in an earlier tick than its end) but not yet released.
        std::thread::sleep(Duration::from_millis(150));
        old.leave();
        // The same player reconnects at once: it hears only about what it asked.
        let mut new = Raw::open(&server, Via::Quic);
        new.send(&hello);
        new.send(&ClientMessage::Call {
            request: 1,
            reducer: walk.reducer.into(),
            args: walk.args.clone(),
        });
        let mut welcomes = 0;
        loop {
            match new.next().expect("the session goes on") {
                ServerMessage::Welcome(_) => welcomes += 1,
                ServerMessage::Result { request: 1, .. } if welcomes == 1 => break,
                m => panic!("round {round}: a message meant for the old session: {m:?}"),
            }
        }
        new.leave();
        // Both ids are given back once their sessions' frames are out: the next round uses the same ones.
        let start = Instant::now();
        while server.session_slots() != 0 {
            assert!(
                start.elapsed() < WAIT,
                "round {round}: {} slots",
                server.session_slots()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    server.shutdown();
}

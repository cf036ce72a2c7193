//! Measure the server end to end on loopback: reducer round trip with many clients, bytes on the wire per
//! position update, and tick start jitter.
//!
//! ```sh
//! cargo run --release -p locus-server --example roundtrip            # 100 clients, 40 calls each
//! cargo run --release -p locus-server --example roundtrip -- 200 20  # 200 clients, 20 calls each
//! ```
//!
//! The server runs in this process (its own threads) with the demo module, a fresh data directory in a temporary
//! directory and the default configuration (20 Hz, fsync per tick). The clients are `locus_client::Connection`s on
//! one tokio runtime. Each client subscribes to `player`, then calls `move_to` toward a random point near its
//! avatar, waits for the result, sleeps 0 to 100 ms, and again. So every player walks, and each client sees the
//! players within 64 m of it move.
//!
//! - **Round trip**: from sending `Call` to receiving its `Result`. The result is released only once the tick it
//!   ran in is durable (fsync), so this includes waiting for the next tick (up to 50 ms at 20 Hz), running it, and
//!   the fsync.
//! - **Bytes per position update**: the UDP payload bytes the clients received (QUIC headers, encryption, acks
//!   and every frame included) during the measured phase, divided by the row updates they received. It is
//!   printed beside the size of the row itself and of a `Tick` frame with one update, so the overhead is visible.
//! - **Tick jitter**: how late each tick started after its slot, from the server's own accounting.

#![allow(
    clippy::print_stdout,
    reason = "an example that reports what it measured"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use game_module as gm;
use locus_client::{ClientConfig, Connection, Incoming, Trust};
use locus_protocol::{CallOutcome, Filter, ServerMessage, TableDelta, WireRow};
use locus_server::{Server, ServerConfig};
use locus_types::{TableId, Vec2};

#[derive(Debug, Default)]
struct ClientTally {
    rtts: Vec<Duration>,
    updates: u64,
    inserts: u64,
    deletes: u64,
    udp_bytes: u64,
    udp_datagrams: u64,
    failures: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn client(
    config: ClientConfig,
    calls: usize,
    seed: u64,
    start_measuring: Instant,
) -> ClientTally {
    let mut conn = Connection::connect(&config).await.expect("connect");
    conn.subscribe("player", Filter::All).expect("subscribe");
    let mut tally = ClientTally::default();
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64: enough for spreading calls and targets.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Wait until every client is connected, so the measured phase is the steady state.
    tokio::time::sleep_until(start_measuring.into()).await;
    let before = conn.stats().udp_rx;
    let mut me = None;
    for _ in 0..calls {
        let target = Vec2::new(
            1900.0 + (next() % 300) as f32,
            1900.0 + (next() % 300) as f32,
        );
        let sent = Instant::now();
        let request = conn
            .call(&gm::move_to::call(target.x, target.y))
            .expect("call");
        loop {
            let message = match conn.next_incoming().await.expect("the connection stays up") {
                Incoming::Message(message) => message,
                // Protocol version 4: walking rows' positions, each place an update.
                Incoming::Datagram(bytes) => {
                    if let Ok(d) = locus_protocol::places::Datagram::parse(&bytes) {
                        tally.updates += d.sections().map(|(_, p)| p.count() as u64).sum::<u64>();
                    }
                    continue;
                }
            };
            match message {
                ServerMessage::Result {
                    request: r,
                    outcome,
                    ..
                } if r == request.0 => {
                    tally.rtts.push(sent.elapsed());
                    if outcome != CallOutcome::Ok {
                        tally.failures += 1;
                    }
                    break;
                }
                ServerMessage::Tick { tables, .. } => {
                    for t in tables {
                        // Whole rows, patches (version 2 on) and moves (version 3 on).
                        let moves = t
                            .moves
                            .as_ref()
                            .map_or(0, |m| locus_protocol::compact::Moves::new(&m.0).count());
                        tally.updates += (t.updates.len() + t.patches.len() + moves) as u64;
                        tally.inserts += t.inserts.len() as u64;
                        tally.deletes += t.deletes.len() as u64;
                    }
                }
                _ => {}
            }
        }
        me.get_or_insert(conn.identity());
        tokio::time::sleep(Duration::from_millis(next() % 100)).await;
    }
    let after = conn.stats().udp_rx;
    tally.udp_bytes = after.bytes - before.bytes;
    tally.udp_datagrams = after.datagrams - before.datagrams;
    conn.close().await;
    tally
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).map_or(100, |a| a.parse().expect("clients"));
    let calls: usize = args.get(2).map_or(40, |a| a.parse().expect("calls"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = locus_host::build::build_module(
        &workspace,
        "game-module",
        &locus_host::build::module_target_dir(&workspace, "wasm-modules"),
    )
    .expect("build the demo module");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = ServerConfig::new(wasm);
    config.data_dir = dir.path().to_owned();
    config.listen = "127.0.0.1:0".parse().expect("address");
    let server = Server::start(config).expect("the server starts");
    let client_config = ClientConfig::new(
        server.local_addr(),
        Trust::Fingerprint(server.fingerprint()),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let start_measuring = Instant::now() + Duration::from_secs(3);
    let tallies: Vec<ClientTally> = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let config = client_config.clone();
                tokio::spawn(client(
                    config,
                    calls,
                    0x9e37_79b9 * (i as u64 + 1),
                    start_measuring,
                ))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let measured = start_measuring.elapsed();
    let m = server.metrics();
    server.shutdown();

    let mut rtts: Vec<Duration> = tallies
        .iter()
        .flat_map(|t| t.rtts.iter().copied())
        .collect();
    rtts.sort_unstable();
    let updates: u64 = tallies.iter().map(|t| t.updates).sum();
    let inserts: u64 = tallies.iter().map(|t| t.inserts).sum();
    let deletes: u64 = tallies.iter().map(|t| t.deletes).sum();
    let udp_bytes: u64 = tallies.iter().map(|t| t.udp_bytes).sum();
    let datagrams: u64 = tallies.iter().map(|t| t.udp_datagrams).sum();
    let failures: u64 = tallies.iter().map(|t| t.failures).sum();

    // The bytes of one player row and of a Tick frame carrying just its update.
    let row = rmp_serde::to_vec(&gm::Player {
        id: 1234,
        pos: Vec2::new(2048.5, 2047.25),
        identity: locus_types::Identity([7; 32]),
        name: "player-1234".into(),
        target: Vec2::new(2100.0, 2000.0),
        dir: Vec2::ZERO,
        moving: true,
        online: true,
        hp: 100,
        level: 1,
        xp: 0,
        busy_until: locus_types::Timestamp(1_700_000_000_000_000),
    })
    .expect("encode");
    let mut frame = Vec::new();
    locus_protocol::encode_frame(
        &ServerMessage::Tick {
            tick: 123_456,
            time: 1_700_000_000_000_000,
            tables: vec![TableDelta {
                table: TableId(1),
                inserts: vec![],
                updates: vec![WireRow(row.clone())],
                deletes: vec![],
                patches: vec![],
                ..TableDelta::default()
            }],
        },
        &mut frame,
    );

    println!(
        "locus-server roundtrip: {clients} clients x {calls} calls of move_to, loopback, 20 Hz, fsync per tick"
    );
    println!("  measured phase          {:.1} s", measured.as_secs_f64());
    println!(
        "  reducer round trip      p50 {}  p99 {}  max {}  ({} calls, {failures} failed)",
        ms(percentile(&rtts, 0.5)),
        ms(percentile(&rtts, 0.99)),
        ms(*rtts.last().expect("calls")),
        rtts.len()
    );
    println!("  rows received           {updates} updates, {inserts} inserts, {deletes} deletes",);
    println!(
        "  bytes per update        {:.1} B of UDP payload per row update received ({} B in {} datagrams; QUIC \
         headers, acks, results and all frames included; IP+UDP headers add 28 B per datagram: {:.1} B)",
        udp_bytes as f64 / updates.max(1) as f64,
        udp_bytes,
        datagrams,
        (udp_bytes + 28 * datagrams) as f64 / updates.max(1) as f64,
    );
    println!(
        "  for scale               a player row is {} B; a Tick frame holding just its update is {} B",
        row.len(),
        frame.len()
    );
    println!(
        "  tick start jitter       p50 {}  p99 {}  max {}  (last {} ticks); overruns {}",
        ms(m.jitter.p50),
        ms(m.jitter.p99),
        ms(m.jitter.max),
        m.jitter.samples,
        m.overruns
    );
    println!(
        "  tick time               p50 {}  p99 {}  max {}",
        ms(m.tick_time.p50),
        ms(m.tick_time.p99),
        ms(m.tick_time.max)
    );
    println!(
        "  server totals           {} ticks, {} calls ({} failed), {} rows sent, {} B of frames out",
        m.ticks, m.calls, m.failed_calls, m.rows_sent, m.bytes_out
    );
}

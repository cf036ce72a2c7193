//! `loadtest torture`: crash torture under load. A server (the `serve-child` process, on one data directory for
//! the whole run) is SIGKILLed at random moments, over and over, while bots call reducers; after each restart every
//! effect the bots were told was done must be in the world.
//!
//! ```sh
//! cargo run --release -p loadtest -- torture --players 100 --cycles 50 --json target/loadtest/torture.json
//! cargo run --release -p loadtest -- torture --world-rows 1000000 --cycles 10   # recovery of a large world
//! ```
//!
//! # What the bots do, and what is checked
//!
//! Each bot keeps one identity across the whole run (it reconnects with its token after each restart) and, ten
//! times a second, alternates `move_to` toward a random point near the spawn (load: the tick moves it, its view
//! streams) with `set_name("t<bot>x<seq>")`, `seq` counting up. Its ledger keeps, per bot, the highest `seq` sent
//! and the highest `seq` whose `Result` was `Ok`: the server answers a call only once the tick it ran in is
//! durable, so an acknowledged rename must survive any crash. After each restart an admin query reads every
//! player's name, and for each bot the name must be `t<bot>x<k>` with `acked ≤ k ≤ sent` (a later call may have
//! become durable without its answer arriving, but nothing never sent may appear); its player must exist, once.
//!
//! # How the server dies
//!
//! Each cycle, once every bot is connected, the server runs for a random time in `--min-uptime..--max-uptime`
//! and is killed with SIGKILL. Every third cycle the kill comes during a snapshot (the admin command is sent, the
//! kill follows after a random 0–`--max-uptime`/4), every third+1 during a `publish` of the demo module with the
//! `upgrade-demo` feature (a compatible schema change: a migration and a snapshot). An acknowledged publish must
//! survive: after the restart the world runs the new module. The restart's recovery time — from starting the
//! process to its listening — is measured each cycle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use locus_protocol::{
    CallOutcome, ClientMessage, Filter, FrameReader, MAX_SERVER_FRAME, ServerMessage, Token,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::child::{self, ChildServer, Options};
use crate::wire;

/// Command line of `loadtest torture`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct TortureArgs {
    /// Bots calling reducers while the server is killed.
    #[arg(long, default_value_t = 50)]
    pub(crate) players: u32,
    /// Kills (and restarts).
    #[arg(long, default_value_t = 20)]
    pub(crate) cycles: u32,
    /// Shortest time the server runs, with every bot connected, before it is killed.
    #[arg(long, default_value = "500ms", value_parser = crate::parse_duration)]
    pub(crate) min_uptime: std::time::Duration,
    /// Longest time the server runs before it is killed.
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    pub(crate) max_uptime: std::time::Duration,
    /// Creatures added to the world before the first kill (`admin_spawn_creatures_in`), to measure recovery of a
    /// large world: the demo world has about 30,000 rows of its own.
    #[arg(long, default_value_t = 0)]
    pub(crate) world_rows: u32,
    /// No kills during snapshots or publishes: plain kills only.
    #[arg(long)]
    pub(crate) plain: bool,
    /// Seed of the kill times and the bots' choices.
    #[arg(long, default_value_t = 0x10c05)]
    pub(crate) seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Keep the data directory here (created; must not exist) instead of a temporary one.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

/// What one bot was told, across all its sessions.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The token that keeps its identity.
    token: Option<Token>,
    /// Its identity, as the query shows it (hex).
    identity: Option<String>,
    /// Highest rename sequence number sent.
    sent: u64,
    /// Highest rename sequence number answered `Ok`.
    acked: u64,
    /// Renames answered `Ok`, in all.
    acked_calls: u64,
    /// Calls of any kind answered `Ok`, in all.
    ok_calls: u64,
    /// What the server last told it when refusing or ending its session (an `Error` frame's message, or the
    /// close reason).
    pub(crate) told: Option<String>,
}

impl Ledger {
    /// The highest rename sent and the highest acknowledged.
    pub(crate) fn renames(&self) -> (u64, u64) {
        (self.sent, self.acked)
    }

    /// Renames answered `Ok`, in all.
    pub(crate) fn acked_calls(&self) -> u64 {
        self.acked_calls
    }

    /// Its identity, once welcomed.
    pub(crate) fn identity(&self) -> Option<&String> {
        self.identity.as_ref()
    }
}

/// How a cycle's kill was timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kill {
    /// At a random moment.
    Plain,
    /// While a snapshot is being written.
    DuringSnapshot,
    /// While a module is being published.
    DuringPublish,
}

/// One kill and restart.
#[derive(Clone, Debug, Serialize)]
struct Cycle {
    kill: Kill,
    /// How long the server ran with every bot connected, ms.
    uptime_ms: u64,
    /// Whether the snapshot or publish was answered before the kill.
    command_answered: bool,
    /// From starting the process to its listening, after the kill, ms.
    recovery_ms: u64,
    /// Renames acknowledged since the previous kill, whose effect (or a later rename's) was checked after this one.
    acked_renames: u64,
}

/// The report.
#[derive(Debug, Serialize)]
struct Report {
    players: u32,
    cycles: Vec<Cycle>,
    world_rows_added: u32,
    /// Rows in the world at the end.
    rows: u64,
    /// Renames acknowledged, each checked after the kill that followed it.
    acked_calls_checked: u64,
    /// The first start, of an empty data directory (compiling the module, creating the world), ms: what a
    /// recovery costs beyond it is reading the data.
    first_start_ms: u64,
    /// Calls of any kind answered `Ok`.
    ok_calls: u64,
    recovery_p50_ms: u64,
    recovery_p99_ms: u64,
    recovery_max_ms: u64,
    violations: Vec<String>,
}

/// `loadtest torture`.
pub(crate) fn torture(args: &TortureArgs) -> anyhow::Result<()> {
    let temp;
    let data_dir: &Path = match &args.data_dir {
        Some(d) => {
            if d.exists() {
                bail!("{} exists; torture wants a new data directory", d.display());
            }
            d
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("locus-torture-")
                .tempdir()?;
            temp.path()
        }
    };
    let scratch = tempfile::tempdir()?;
    let demo = scratch.path().join("demo.wasm");
    std::fs::write(&demo, child::build_demo_module()?)?;
    let upgrade = scratch.path().join("upgrade.wasm");
    if !args.plain {
        let ws = child::workspace();
        let wasm = locus_host::build::build_module_with_features(
            &ws,
            "game-module",
            &["upgrade-demo"],
            &locus_host::build::module_target_dir(&ws, "wasm-modules-upgrade-demo"),
        )
        .context("building the demo module with `upgrade-demo`")?;
        std::fs::write(&upgrade, wasm)?;
    }
    let options = server_options();
    let module_of = |dir: &Path| module_of(dir, &demo);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..args.players)
        .map(|_| Arc::new(Mutex::new(Ledger::default())))
        .collect();

    let first = Instant::now();
    let mut server = ChildServer::start_in(data_dir, Some(&module_of(data_dir)), &options)?;
    // The baseline of a recovery: a start with nothing to recover (compiling the module, creating the world).
    let first_start_ms = first.elapsed().as_millis() as u64;
    if args.world_rows > 0 {
        let started = Instant::now();
        let mut left = args.world_rows;
        while left > 0 {
            let n = left.min(20_000);
            server.command(
                &format!("spawn {n} 0 0 4096 4096"),
                Duration::from_secs(600),
            )?;
            left -= n;
        }
        say(format!(
            "added {} creatures in {:.1} s",
            args.world_rows,
            started.elapsed().as_secs_f64()
        ));
    }
    let mut cycles = Vec::new();
    let mut recovery: Vec<u64> = Vec::new();
    let mut acked_before = 0u64;
    let mut violations = Vec::new();
    let mut publish_acked = false;
    for cycle in 0..args.cycles {
        // Bots in.
        let stop = Arc::new(AtomicBool::new(false));
        let welcomed = Arc::new(AtomicUsize::new(0));
        let fingerprint = server.fingerprint;
        let addr = server.addr;
        let handles: Vec<_> = ledgers
            .iter()
            .enumerate()
            .map(|(i, ledger)| {
                let ledger = ledger.clone();
                let stop = stop.clone();
                let welcomed = welcomed.clone();
                let seed = args.seed ^ ((u64::from(cycle) << 32) | i as u64);
                rt.spawn(
                    async move { bot(i, addr, fingerprint, ledger, stop, welcomed, seed).await },
                )
            })
            .collect();
        let connected = Instant::now();
        while welcomed.load(Ordering::Relaxed) < ledgers.len() {
            if handles.iter().any(tokio::task::JoinHandle::is_finished) {
                bail!("cycle {cycle}: a bot's session ended before every bot was in");
            }
            if connected.elapsed() > Duration::from_secs(60) {
                bail!("cycle {cycle}: the bots did not all connect within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Run, then kill.
        let kill = match (args.plain, cycle % 3) {
            (false, 1) => Kill::DuringSnapshot,
            (false, 2) => Kill::DuringPublish,
            _ => Kill::Plain,
        };
        let uptime = rng.random_range(args.min_uptime..=args.max_uptime);
        let up = Instant::now();
        std::thread::sleep(uptime);
        match kill {
            Kill::Plain => {}
            Kill::DuringSnapshot => server.send("snapshot")?,
            Kill::DuringPublish => server.send(&format!("publish {}", upgrade.display()))?,
        }
        // A snapshot of the demo world takes tens of milliseconds, of a million rows about a second; a publish
        // compiles the module first (about a second), then migrates and snapshots.
        match kill {
            Kill::Plain => {}
            Kill::DuringSnapshot => {
                std::thread::sleep(rng.random_range(Duration::ZERO..=Duration::from_millis(1500)))
            }
            Kill::DuringPublish => {
                std::thread::sleep(rng.random_range(Duration::ZERO..=Duration::from_millis(3000)))
            }
        }
        // What the bots were told before the kill: their ledgers, frozen now (the kill ends every answer).
        let answered = match kill {
            Kill::Plain => false,
            _ => server.reply(Duration::ZERO).is_some_and(|r| r.is_ok()),
        };
        let uptime_ms = up.elapsed().as_millis() as u64;
        let frozen: Vec<(u64, u64, u64)> = ledgers
            .iter()
            .map(|l| {
                let l = lock(l);
                (l.sent, l.acked, l.acked_calls)
            })
            .collect();
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = rt.block_on(h);
        }
        if kill == Kill::DuringPublish && answered {
            publish_acked = true;
        }
        // Restart and check.
        let started = Instant::now();
        server = ChildServer::start_in(data_dir, Some(&module_of(data_dir)), &options)
            .with_context(|| format!("restarting after kill {cycle}"))?;
        let recovery_ms = started.elapsed().as_millis() as u64;
        recovery.push(recovery_ms);
        let names = player_names(&mut server)?;
        let acked_total: u64 = frozen.iter().map(|f| f.2).sum();
        let acked_renames = acked_total - acked_before;
        acked_before = acked_total;
        for (i, ledger) in ledgers.iter().enumerate() {
            let (sent, acked, _) = frozen[i];
            let l = lock(ledger);
            let Some(identity) = &l.identity else {
                violations.push(format!("cycle {cycle}: bot {i} was never welcomed"));
                continue;
            };
            let found: Vec<&String> = names.get(identity).into_iter().flatten().collect();
            if let Err(why) = check_player(i, &found, acked, sent) {
                violations.push(format!("cycle {cycle}: {why}"));
            }
        }
        if publish_acked
            && !std::fs::read(data_dir.join(locus_server::MODULE_FILE))
                .is_ok_and(|m| m == std::fs::read(&upgrade).unwrap_or_default())
        {
            violations.push(format!("cycle {cycle}: an acknowledged publish was lost"));
        }
        say(format!(
            "cycle {cycle:>3}: {kill:?} after {uptime_ms} ms{}; recovered in {recovery_ms} ms; {acked_renames} acknowledged renames checked; {} violations so far",
            if kill == Kill::Plain {
                String::new()
            } else {
                format!(" (answered: {answered})")
            },
            violations.len()
        ));
        cycles.push(Cycle {
            kill,
            uptime_ms,
            command_answered: answered,
            recovery_ms,
            acked_renames,
        });
    }
    let rows = count_rows(&mut server).unwrap_or(0);
    server.stop();
    recovery.sort_unstable();
    let rank = |p: f64| {
        recovery
            .get(((recovery.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    let ok_calls = ledgers.iter().map(|l| lock(l).ok_calls).sum();
    let report = Report {
        ok_calls,
        first_start_ms,
        players: args.players,
        acked_calls_checked: cycles.iter().map(|c| c.acked_renames).sum(),
        cycles,
        world_rows_added: args.world_rows,
        rows,
        recovery_p50_ms: rank(0.5),
        recovery_p99_ms: rank(0.99),
        recovery_max_ms: recovery.last().copied().unwrap_or(0),
        violations,
    };
    say(format!(
        "torture: {} kills ({} during snapshots, {} during publishes), {} acknowledged renames checked, {} rows; recovery p50 {} ms, p99 {} ms, max {} ms (a first start, with nothing to recover: {} ms); {} violations",
        report.cycles.len(),
        report
            .cycles
            .iter()
            .filter(|c| c.kill == Kill::DuringSnapshot)
            .count(),
        report
            .cycles
            .iter()
            .filter(|c| c.kill == Kill::DuringPublish)
            .count(),
        report.acked_calls_checked,
        report.rows,
        report.recovery_p50_ms,
        report.recovery_p99_ms,
        report.recovery_max_ms,
        report.first_start_ms,
        report.violations.len()
    ));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    if !report.violations.is_empty() {
        for v in &report.violations {
            say(format!("VIOLATION {v}"));
        }
        bail!("{} acknowledged effects were lost", report.violations.len());
    }
    Ok(())
}

/// Whether bot `index`'s players after a restart (`names`: the names of the players with its identity) hold what it
/// was told: one player, named by a rename from `acked` (the last acknowledged) to `sent` (the last sent), or the
/// generated name if no rename was acknowledged yet.
pub(crate) fn check_player(
    index: usize,
    names: &[&String],
    acked: u64,
    sent: u64,
) -> Result<(), String> {
    match names {
        [name] => {
            let seq = name
                .strip_prefix(&format!("t{index}x"))
                .and_then(|s| s.parse::<u64>().ok());
            let ok = match seq {
                Some(k) => acked <= k && k <= sent,
                None => acked == 0,
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "bot {index} is named {name:?}; acknowledged up to t{index}x{acked}, sent up to t{index}x{sent}"
                ))
            }
        }
        [] => Err(format!("bot {index}'s player is gone")),
        more => Err(format!("bot {index} has {} players", more.len())),
    }
}

/// How the tortured server runs: the defaults of a load test (20 Hz, the server's byte budget).
pub(crate) fn server_options() -> Options {
    Options {
        tick_rate: 20,
        byte_budget: None,
        every_move: false,
        datagrams: locus_server::PositionDatagrams::OnLoss,
    }
}

/// The module a world in `dir` runs: the one stored with it once it has one (a publish replaces it), else `demo`.
pub(crate) fn module_of(dir: &Path, demo: &Path) -> PathBuf {
    let stored = dir.join(locus_server::MODULE_FILE);
    if stored.exists() {
        stored
    } else {
        demo.to_owned()
    }
}

/// A line on standard output, flushed (the report of a long run, as it goes).
pub(crate) fn say(line: String) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub(crate) fn lock(l: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every player's names by identity (hex), from an admin query.
pub(crate) fn player_names(
    server: &mut ChildServer,
) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let json = server.command(
        "query SELECT identity, name FROM player LIMIT ALL",
        Duration::from_secs(60),
    )?;
    let result: serde_json::Value = serde_json::from_str(&json).context("the query's JSON")?;
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for row in result["rows"].as_array().context("rows")? {
        let (Some(identity), Some(name)) = (row[0].as_str(), row[1].as_str()) else {
            bail!("an unexpected row {row}");
        };
        names
            .entry(identity.to_owned())
            .or_default()
            .push(name.to_owned());
    }
    if result["truncated"].as_bool() == Some(true) {
        bail!("the query of the players was truncated");
    }
    Ok(names)
}

fn count_rows(server: &mut ChildServer) -> anyhow::Result<u64> {
    let mut total = 0;
    for table in [
        "player",
        "creature",
        "creature_mind",
        "chunk",
        "resource_node",
        "inventory_item",
    ] {
        let json = server.command(
            &format!("query SELECT COUNT(*) FROM {table}"),
            Duration::from_secs(60),
        )?;
        let v: serde_json::Value = serde_json::from_str(&json)?;
        total += v["rows"][0][0].as_u64().unwrap_or(0);
    }
    Ok(total)
}

/// One bot's session: connect with its token, subscribe to players, then call until told to stop or the
/// connection ends.
pub(crate) async fn bot(
    index: usize,
    addr: std::net::SocketAddr,
    fingerprint: [u8; 32],
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    welcomed_count: Arc<AtomicUsize>,
    seed: u64,
) -> anyhow::Result<()> {
    let endpoint = wire::endpoint(addr)?;
    let conn = endpoint
        .connect_with(
            wire::client_config(fingerprint)?,
            addr,
            locus_client::SERVER_NAME,
        )?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut out = Vec::new();
    let token = lock(&ledger).token;
    locus_protocol::encode_frame(
        &ClientMessage::Hello {
            versions: vec![locus_protocol::PROTOCOL_VERSION],
            token,
        },
        &mut out,
    );
    locus_protocol::encode_frame(
        &ClientMessage::Subscribe {
            request: 0,
            table: "player".into(),
            filter: Filter::All,
        },
        &mut out,
    );
    send.write_all(&out).await?;
    let mut frames = FrameReader::new(MAX_SERVER_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let spawn = game_module::Vec2::from(game_module::content().world.spawn.center);
    let mut pending: HashMap<u32, Option<u64>> = HashMap::new();
    let mut request = 1u32;
    let mut welcomed = false;
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        if stop.load(Ordering::Relaxed) {
            conn.close(0u32.into(), b"done");
            return Ok(());
        }
        tokio::select! {
            _ = every.tick(), if welcomed => {
                request += 1;
                out.clear();
                let (call, rename) = if request.is_multiple_of(2) {
                    let p = spawn + game_module::Vec2::new(rng.random_range(-30.0..30.0), rng.random_range(-30.0..30.0));
                    (game_module::move_to::call(p.x, p.y), None)
                } else {
                    let mut l = lock(&ledger);
                    l.sent += 1;
                    (game_module::set_name::call(format!("t{index}x{}", l.sent)), Some(l.sent))
                };
                locus_protocol::encode_frame(
                    &ClientMessage::Call { request, reducer: call.reducer.into(), args: call.args },
                    &mut out,
                );
                pending.insert(request, rename);
                if send.write_all(&out).await.is_err() {
                    return Ok(());
                }
            }
            read = recv.read(&mut buf) => {
                let Ok(Some(n)) = read else {
                    if let Some(reason) = conn.close_reason() {
                        lock(&ledger).told = Some(reason.to_string());
                    }
                    return Ok(());
                };
                frames.push(&buf[..n]);
                while let Some(payload) = frames.next_frame()? {
                    if locus_protocol::TickView::parse(payload)?.is_some() {
                        continue;
                    }
                    match locus_protocol::decode_frame::<ServerMessage>(payload)? {
                        ServerMessage::Welcome(w) => {
                            let mut l = lock(&ledger);
                            l.token = Some(w.token);
                            l.identity = Some(w.identity.to_string());
                            welcomed = true;
                            welcomed_count.fetch_add(1, Ordering::Relaxed);
                        }
                        ServerMessage::Result { request, outcome, .. } => {
                            if let Some(rename) = pending.remove(&request)
                                && outcome == CallOutcome::Ok
                            {
                                let mut l = lock(&ledger);
                                l.ok_calls += 1;
                                if let Some(seq) = rename {
                                    l.acked = l.acked.max(seq);
                                    l.acked_calls += 1;
                                }
                            }
                        }
                        ServerMessage::Error { message, .. } => lock(&ledger).told = Some(message),
                        _ => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_player;

    #[test]
    fn a_player_must_hold_a_rename_from_the_last_acknowledged_to_the_last_sent() {
        let name = |s: &str| s.to_owned();
        let (n5, n7, n9) = (name("t3x5"), name("t3x7"), name("t3x9"));
        assert!(check_player(3, &[&n5], 5, 8).is_ok());
        assert!(
            check_player(3, &[&n7], 5, 8).is_ok(),
            "sent, unanswered, durable: allowed"
        );
        assert!(
            check_player(3, &[&n5], 6, 8)
                .unwrap_err()
                .contains("acknowledged up to t3x6")
        );
        assert!(check_player(3, &[&n9], 5, 8).is_err(), "never sent");
        let generated = name("player-12");
        assert!(check_player(3, &[&generated], 0, 4).is_ok());
        assert!(
            check_player(3, &[&generated], 1, 4).is_err(),
            "an acknowledged rename lost"
        );
        assert!(check_player(4, &[&n5], 5, 8).is_err(), "another bot's name");
        assert!(check_player(3, &[], 0, 0).unwrap_err().contains("gone"));
        assert!(
            check_player(3, &[&n5, &n7], 5, 8)
                .unwrap_err()
                .contains("2 players")
        );
    }
}

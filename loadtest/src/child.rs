//! The server under test, in its own process: `loadtest serve-child` runs the real `locus_server::Server` with the
//! demo module, so the server's CPU time is its own (bots run in the parent) and the parent can read it from
//! `/proc/<pid>/stat`.
//!
//! The child speaks lines on its standard streams:
//! - stdout `LISTEN <addr> <fingerprint hex>` once it listens, then `METRICS <json>` ([`ServerMetrics`]) once a
//!   second, and `REPLY ok [<answer>]` / `REPLY err <why>` after each command;
//! - stdin, one command per line: `spawn <count> <x0> <y0> <x1> <y1>`: add NPCs in that rectangle (the admin
//!   reducer `admin_spawn_creatures_in`, run as the server); `window`: start the recent-tick percentiles afresh;
//!   `query <sql>`: a `locus query` (answer: its JSON); `snapshot`: write a snapshot (answer: its tick, once
//!   durable); `publish <path>`: publish the module in that file (answer: the changes). End of input: shut down
//!   and exit.
//!
//! Its logs go to stderr.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::ValueEnum as _;
use locus_protocol::CallOutcome;
use locus_server::{MetricsSnapshot, Percentiles, PositionDatagrams, Server, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::scenario::Arena;

/// NPCs spawned per admin call (one call runs in one reducer, under the host's time budget; a call that runs out of
/// it is tried again with half as many).
const SPAWN_BATCH: u32 = 500;

/// [`Percentiles`] in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pct {
    /// Median, µs.
    pub(crate) p50_us: u64,
    /// 99th percentile, µs.
    pub(crate) p99_us: u64,
    /// Largest, µs.
    pub(crate) max_us: u64,
    /// Samples (the server keeps the last 4096 ticks).
    pub(crate) samples: u64,
}

impl From<Percentiles> for Pct {
    fn from(p: Percentiles) -> Pct {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Pct {
            p50_us: us(p.p50),
            p99_us: us(p.p99),
            max_us: us(p.max),
            samples: p.samples as u64,
        }
    }
}

/// A serde mirror of [`MetricsSnapshot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServerMetrics {
    /// Ticks run.
    pub(crate) ticks: u64,
    /// The last tick run.
    pub(crate) last_tick: u64,
    /// Tick slots skipped.
    pub(crate) overruns: u64,
    /// Connected sessions.
    pub(crate) sessions: u64,
    /// Client reducer calls run.
    pub(crate) calls: u64,
    /// Of which failed.
    pub(crate) failed_calls: u64,
    /// Row changes committed.
    pub(crate) row_changes: u64,
    /// Rows sent to clients.
    pub(crate) rows_sent: u64,
    /// Bytes of frames out (and of position datagrams).
    pub(crate) bytes_out: u64,
    /// Position datagrams handed to connections (protocol version 4).
    #[serde(default)]
    pub(crate) datagrams_out: u64,
    /// Sessions sent positions in datagrams because their connection loses packets (last counted).
    #[serde(default)]
    pub(crate) lossy_links: u64,
    /// Bytes of frames in.
    pub(crate) bytes_in: u64,
    /// Connections accepted.
    pub(crate) connections: u64,
    /// Connections refused.
    pub(crate) refused: u64,
    /// Protocol violations.
    pub(crate) protocol_errors: u64,
    /// Clients dropped for reading too slowly.
    pub(crate) too_slow: u64,
    /// Tick start lateness, recent ticks.
    pub(crate) jitter: Pct,
    /// Tick duration, recent ticks.
    pub(crate) tick_time: Pct,
}

impl From<MetricsSnapshot> for ServerMetrics {
    fn from(m: MetricsSnapshot) -> ServerMetrics {
        ServerMetrics {
            ticks: m.ticks,
            last_tick: m.last_tick,
            overruns: m.overruns,
            sessions: m.sessions,
            calls: m.calls,
            failed_calls: m.failed_calls,
            row_changes: m.row_changes,
            rows_sent: m.rows_sent,
            bytes_out: m.bytes_out,
            datagrams_out: m.datagrams_out,
            lossy_links: m.lossy_links,
            bytes_in: m.bytes_in,
            connections: m.connections,
            refused: m.refused,
            protocol_errors: m.protocol_errors,
            too_slow: m.too_slow,
            jitter: m.jitter.into(),
            tick_time: m.tick_time.into(),
        }
    }
}

/// One `METRICS` line: the server's counters, and the process's CPU time read at the same moment (so CPU per tick
/// divides matching figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChildMetrics {
    /// `Server::metrics()`.
    pub(crate) metrics: ServerMetrics,
    /// The server process's CPU time (all threads: ticks, durability, QUIC), s.
    pub(crate) cpu_s: Option<f64>,
    /// The tick thread's CPU time, s.
    pub(crate) tick_cpu_s: Option<f64>,
    /// The load tester's own process CPU time (the bots; not the server, a separate process) when the parent
    /// read this line, s. Set by the parent's reader, never sent by the child: bot CPU differenced between two
    /// lines spans the same window as the server's tick count (see `report::interval`).
    #[serde(skip)]
    pub(crate) bots_cpu_s: Option<f64>,
    /// A region's border and JetStream traffic (`Server::region_stats`).
    #[serde(default)]
    pub(crate) region: Option<RegionLine>,
}

/// A serde mirror of [`locus_server::region::RegionStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegionLine {
    /// Border messages published.
    pub(crate) border_sent: u64,
    /// Border messages received.
    pub(crate) border_received: u64,
    /// Whole copies asked of neighbours.
    pub(crate) resyncs_asked: u64,
    /// Copies of neighbours' rows held.
    pub(crate) copies_held: u64,
    /// Messages to other regions JetStream stored.
    pub(crate) messages_sent: u64,
    /// Messages from other regions taken.
    pub(crate) messages_received: u64,
    /// A neighbour making a border message to this region queueing it.
    pub(crate) border_latency: Pct,
    /// Another region publishing a message to this region taking it from JetStream.
    pub(crate) message_latency: Pct,
}

impl From<locus_server::region::RegionStats> for RegionLine {
    fn from(s: locus_server::region::RegionStats) -> RegionLine {
        RegionLine {
            border_sent: s.sent,
            border_received: s.received,
            resyncs_asked: s.resyncs_asked,
            copies_held: s.copies_held,
            messages_sent: s.messages_sent,
            messages_received: s.messages_received,
            border_latency: s.latency.into(),
            message_latency: s.message_latency.into(),
        }
    }
}

/// The workspace this binary was built from (for building the demo module).
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build the demo module into `target/wasm-modules`, the wasm target directory that `locus serve` and the tests
/// use too (its own target directory: an outer cargo may hold the lock of `target/`), so whichever runs first
/// builds it for the others.
pub(crate) fn build_demo_module() -> anyhow::Result<Vec<u8>> {
    let ws = workspace();
    locus_host::build::build_module(
        &ws,
        "game-module",
        &locus_host::build::module_target_dir(&ws, "wasm-modules"),
    )
    .context("building the demo module (game-module) to wasm")
}

/// How the started server runs (the options `loadtest` passes on to `serve-child`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Ticks per second.
    pub(crate) tick_rate: u16,
    /// Bytes per client per tick (0: no limit); the server's default if `None`.
    pub(crate) byte_budget: Option<usize>,
    /// Every move of every row every tick.
    pub(crate) every_move: bool,
    /// When version-4 sessions are sent positions in datagrams.
    pub(crate) datagrams: PositionDatagrams,
}

/// `loadtest serve-child`: run the server until standard input ends.
pub(crate) fn serve_child(
    data_dir: &Path,
    listen: SocketAddr,
    module: Option<&Path>,
    options: &Options,
    region: Option<(&str, &Path)>,
) -> anyhow::Result<()> {
    let wasm = match module {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => build_demo_module()?,
    };
    let mut config = ServerConfig::new(wasm);
    config.data_dir = data_dir.to_owned();
    config.listen = listen;
    config.tick_rate = options.tick_rate;
    if let Some(bytes) = options.byte_budget {
        config.interest.byte_budget = (bytes > 0).then_some(bytes);
    }
    if options.every_move {
        config.move_rates = None;
    }
    config.limits.datagrams = options.datagrams;
    if let Some((name, file)) = region {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let layout = locus_region::WorldLayout::from_toml(&text)?;
        let own = layout
            .region_id(name)
            .with_context(|| format!("no region {name} in {}", file.display()))?;
        config.region = Some(locus_server::region::RegionSetup { layout, own });
    }
    let server = Arc::new(Server::start(config).context("starting the server")?);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = |line: &str| {
        let mut o = out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    say(&format!(
        "LISTEN {} {}",
        server.local_addr(),
        locus_client::fingerprint_hex(&server.fingerprint())
    ));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let commands = {
        let server = server.clone();
        let out = out.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                let reply = match run_command(&server, &line) {
                    Ok(answer) if answer.is_empty() => "REPLY ok".to_owned(),
                    Ok(answer) => format!("REPLY ok {answer}"),
                    Err(e) => format!("REPLY err {e:#}").replace('\n', " "),
                };
                let mut o = out.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = writeln!(o, "{reply}");
                let _ = o.flush();
            }
            let _ = done_tx.send(());
        })
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(Duration::from_secs(1)) {
        let line = ChildMetrics {
            metrics: server.metrics().into(),
            cpu_s: process_cpu_seconds(std::process::id()),
            tick_cpu_s: thread_cpu_seconds(std::process::id(), "locus-tick"),
            bots_cpu_s: None,
            region: server.region_stats().map(Into::into),
        };
        say(&format!("METRICS {}", serde_json::to_string(&line)?));
        if server.has_failed() {
            bail!("the server failed (its commit log)");
        }
    }
    let _ = commands.join();
    match Arc::try_unwrap(server) {
        Ok(server) => server.shutdown(),
        Err(server) => drop(server),
    }
    Ok(())
}

/// One command of the parent (see the module docs); its answer, on one line.
fn run_command(server: &Server, line: &str) -> anyhow::Result<String> {
    use locus_protocol::{AdminCommand, AdminReply};
    let words: Vec<&str> = line.split_whitespace().collect();
    if words == ["window"] {
        server.clear_recent_ticks();
        return Ok(String::new());
    }
    let admin = |command| match server.admin(command) {
        Some(AdminReply::Refused { message }) => bail!("refused: {message}"),
        Some(reply) => Ok(reply),
        None => bail!("the server stopped"),
    };
    if let Some(sql) = line.strip_prefix("query ") {
        return match admin(AdminCommand::Query { sql: sql.into() })? {
            AdminReply::Rows { json } => Ok(json.replace('\n', " ")),
            other => bail!("unexpected answer {other:?}"),
        };
    }
    if words == ["snapshot"] {
        return match admin(AdminCommand::Snapshot)? {
            AdminReply::Snapshot { tick } => Ok(tick.to_string()),
            other => bail!("unexpected answer {other:?}"),
        };
    }
    if let Some(path) = line.strip_prefix("publish ") {
        let wasm = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        return Ok(server.publish(&wasm)?.join("; "));
    }
    let ["spawn", count, x0, y0, x1, y1] = words.as_slice() else {
        bail!("unknown command {line:?}");
    };
    let mut left: u32 = count.parse()?;
    let (x0, y0, x1, y1): (f32, f32, f32, f32) =
        (x0.parse()?, y0.parse()?, x1.parse()?, y1.parse()?);
    let mut batch = SPAWN_BATCH;
    while left > 0 {
        let n = left.min(batch);
        let call = game_module::admin::admin_spawn_creatures_in::call(n, x0, y0, x1, y1);
        match server.admin_call(&call)? {
            CallOutcome::Ok => left -= n,
            // A busy machine: smaller batches (the call wrote nothing).
            CallOutcome::Err {
                code: locus_protocol::ErrorCode::ReducerAborted,
                ..
            } if batch > 10 => batch /= 2,
            CallOutcome::Err { code, message } => bail!("{code:?}: {message}"),
        }
    }
    Ok(String::new())
}

/// The parent's handle on a `serve-child` process.
#[derive(Debug)]
pub(crate) struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its certificate's fingerprint.
    pub(crate) fingerprint: [u8; 32],
    latest: Arc<Mutex<Option<ChildMetrics>>>,
    replies: mpsc::Receiver<Result<String, String>>,
    /// The data directory, if it is the child's own (removed when it is dropped).
    _data_dir: Option<tempfile::TempDir>,
}

impl ChildServer {
    /// Start `<this binary> serve-child` in a new temporary data directory and wait until it listens (the first
    /// start builds the demo module, which may take minutes).
    pub(crate) fn start(module: Option<&Path>, options: &Options) -> anyhow::Result<ChildServer> {
        let data_dir = tempfile::Builder::new()
            .prefix("locus-loadtest-")
            .tempdir()
            .context("a temporary data directory")?;
        let mut child = Self::start_in(data_dir.path(), module, options)?;
        child._data_dir = Some(data_dir);
        Ok(child)
    }

    /// Start `<this binary> serve-child` on the data directory `data_dir` (which outlives it: a restart recovers
    /// it) and wait until it listens.
    pub(crate) fn start_in(
        data_dir: &Path,
        module: Option<&Path>,
        options: &Options,
    ) -> anyhow::Result<ChildServer> {
        Self::start_logging(data_dir, module, options, None)
    }

    /// As [`ChildServer::start_in`], its standard error (its log) appended to `log` instead of this process's.
    pub(crate) fn start_logging(
        data_dir: &Path,
        module: Option<&Path>,
        options: &Options,
        log: Option<&Path>,
    ) -> anyhow::Result<ChildServer> {
        Self::spawn(data_dir, module, options, log, None)
    }

    /// Start `<this binary> serve-child` as region `region` of the layout in `config`, listening where the
    /// layout says, on the data directory `data_dir`.
    pub(crate) fn start_region(
        data_dir: &Path,
        module: Option<&Path>,
        options: &Options,
        region: &str,
        config: &Path,
        listen: SocketAddr,
    ) -> anyhow::Result<ChildServer> {
        Self::spawn(
            data_dir,
            module,
            options,
            None,
            Some((region, config, listen)),
        )
    }

    fn spawn(
        data_dir: &Path,
        module: Option<&Path>,
        options: &Options,
        log: Option<&Path>,
        region: Option<(&str, &Path, SocketAddr)>,
    ) -> anyhow::Result<ChildServer> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut cmd = Command::new(exe);
        let listen = region.map_or_else(|| "127.0.0.1:0".to_owned(), |(_, _, a)| a.to_string());
        cmd.arg("serve-child")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .arg("--tick-rate")
            .arg(options.tick_rate.to_string())
            .arg("--datagrams")
            .arg(
                options
                    .datagrams
                    .to_possible_value()
                    .expect("no variant is skipped")
                    .get_name(),
            );
        if let Some(m) = module {
            cmd.arg("--module").arg(m);
        }
        if let Some(bytes) = options.byte_budget {
            cmd.arg("--byte-budget").arg(bytes.to_string());
        }
        if options.every_move {
            cmd.arg("--every-move");
        }
        if let Some((name, config, _)) = region {
            cmd.arg("--region").arg(name).arg("--config").arg(config);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("opening {}", path.display()))?,
                ),
                None => Stdio::inherit(),
            })
            .spawn()
            .context("starting the server process")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stdin = child.stdin.take();
        let (listen_tx, listen_rx) = mpsc::channel::<(SocketAddr, [u8; 32])>();
        let (replies_tx, replies) = mpsc::channel();
        let latest = Arc::new(Mutex::new(None));
        {
            let latest = latest.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("METRICS ") {
                        if let Ok(mut m) = serde_json::from_str::<ChildMetrics>(rest) {
                            m.bots_cpu_s = process_cpu_seconds(std::process::id());
                            *latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(m);
                        }
                    } else if let Some(rest) = line.strip_prefix("LISTEN ") {
                        let mut parts = rest.split_whitespace();
                        let addr = parts.next().and_then(|a| a.parse().ok());
                        let fp =
                            parts.next().and_then(
                                |f| match locus_client::Trust::parse_fingerprint(f) {
                                    Ok(locus_client::Trust::Fingerprint(fp)) => Some(fp),
                                    _ => None,
                                },
                            );
                        if let (Some(addr), Some(fp)) = (addr, fp) {
                            let _ = listen_tx.send((addr, fp));
                        }
                    } else if let Some(rest) = line.strip_prefix("REPLY ") {
                        let r = match rest.strip_prefix("ok") {
                            Some(answer) => Ok(answer.trim_start().to_owned()),
                            None => Err(rest.trim_start_matches("err ").to_owned()),
                        };
                        let _ = replies_tx.send(r);
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(900);
        let (addr, fingerprint) = loop {
            match listen_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(x) => break x,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        bail!("the server process exited before listening: {status}");
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        bail!("the server process did not start listening within 15 minutes");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    bail!("the server process exited before listening");
                }
            }
        };
        Ok(ChildServer {
            child,
            stdin,
            addr,
            fingerprint,
            latest,
            replies,
            _data_dir: None,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The latest metrics line.
    pub(crate) fn metrics(&self) -> Option<ChildMetrics> {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Send one command (see the module docs) and wait up to `timeout` for its answer.
    pub(crate) fn command(&mut self, line: &str, timeout: Duration) -> anyhow::Result<String> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the server's input is closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        let what = line.split_whitespace().next().unwrap_or_default();
        match self.replies.recv_timeout(timeout) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => bail!("{what}: {e}"),
            Err(_) => bail!("{what}: no answer from the server process"),
        }
    }

    /// Spawn `count` NPCs in `arena`, waiting until they are durable.
    pub(crate) fn spawn_npcs(&mut self, count: u32, arena: &Arena) -> anyhow::Result<()> {
        let line = format!(
            "spawn {count} {} {} {} {}",
            arena.min.x, arena.min.y, arena.max.x, arena.max.y
        );
        self.command(&line, Duration::from_secs(300))
            .context("spawning NPCs")
            .map(drop)
    }

    /// Start the server's recent-tick percentiles afresh (the measurement starts), waiting until it has.
    pub(crate) fn start_window(&mut self) -> anyhow::Result<()> {
        self.command("window", Duration::from_secs(30))
            .context("starting the tick window")
            .map(drop)
    }

    /// Send a command without waiting for its answer (the parent may kill the server while it runs).
    pub(crate) fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the server's input is closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// The answer to a command sent with [`ChildServer::send`], if it came within `timeout`.
    pub(crate) fn reply(&mut self, timeout: Duration) -> Option<Result<String, String>> {
        self.replies.recv_timeout(timeout).ok()
    }

    /// Whether the process has exited, with its status.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kill it with SIGKILL (no shutdown, no last sync) and reap it.
    pub(crate) fn kill(mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Close its input (it shuts down) and wait for it, killing it after 20 s.
    pub(crate) fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time of a process, from `/proc/<pid>/stat` (Linux): user + system, in seconds. Fields 14 and 15 count
/// clock ticks of `USER_HZ`, which Linux fixes at 100 for this interface.
pub(crate) fn process_cpu_seconds(pid: u32) -> Option<f64> {
    cpu_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of the process's thread named `name` (e.g. `locus-tick`), from `/proc/<pid>/task/*/stat`.
pub(crate) fn thread_cpu_seconds(pid: u32, name: &str) -> Option<f64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return cpu_of_stat(&std::fs::read_to_string(path.join("stat")).ok()?);
        }
    }
    None
}

/// utime + stime of a `stat` line, in seconds.
pub(crate) fn cpu_of_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_a_stat_line() {
        let line =
            "4242 (locus tick) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 7 0 100 0 0";
        assert_eq!(cpu_of_stat(line), Some(3.0));
        assert_eq!(cpu_of_stat("garbage"), None);
        let me = process_cpu_seconds(std::process::id());
        assert!(me.is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn metrics_survive_a_json_round_trip() {
        let m = ServerMetrics {
            ticks: 5,
            tick_time: Pct {
                p50_us: 1,
                p99_us: 2,
                max_us: 3,
                samples: 5,
            },
            ..ServerMetrics::default()
        };
        let line = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ServerMetrics>(&line).unwrap(), m);
    }
}

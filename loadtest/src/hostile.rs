//! Hostile and unlucky clients beside the bots (`--flood`, `--slow-readers`, `--subscribers`, `--spammers`):
//! each must cost only itself, so the run's service level (the bots' tick and update latency) is judged as usual
//! while they run, and what each of them got is reported.
//!
//! - **flood**: QUIC handshakes at a fixed rate from one socket, none of which ever opens a stream or sends
//!   `Hello`; each is held until the server closes it. Reported: handshakes tried, completed and refused, the
//!   most held open at once, how the server closed them.
//! - **slow readers**: clients that say `Hello`, subscribe to every table the bots do, and never read their
//!   stream. Reported: how long until the server closed them, and why.
//! - **subscribers**: clients that subscribe to every public table with `Filter::All` and read everything.
//!   Reported: the bytes they received per second.
//! - **spammers**: clients that call `teleport` back and forth between two far points twice as fast as the
//!   session's limits allow (400 calls a second against 200). Each teleport that lands moves the client's whole
//!   area of interest: every row around it leaves its view and every row around the other point enters.
//!   Reported: calls sent, answered `Ok`, refused, dropped for rate.
//!
//! The server process's resident memory is sampled throughout (`VmRSS` of `/proc/<pid>/status`), so memory per
//! held connection can be read off a flood run against a run without one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use locus_protocol::{
    CallOutcome, ClientMessage, ErrorCode, Filter, FrameReader, MAX_SERVER_FRAME, ServerMessage,
};
use serde::Serialize;

use crate::wire;

/// The hostile clients of a run.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct HostileArgs {
    /// QUIC handshakes per second that never send `Hello` (0: none).
    #[arg(long, default_value_t = 0)]
    pub(crate) flood: u32,
    /// Clients that subscribe to everything and never read their stream.
    #[arg(long, default_value_t = 0)]
    pub(crate) slow_readers: u32,
    /// Clients that subscribe to every public table and read everything.
    #[arg(long, default_value_t = 0)]
    pub(crate) subscribers: u32,
    /// Clients that teleport back and forth as fast as the limits allow.
    #[arg(long, default_value_t = 0)]
    pub(crate) spammers: u32,
}

impl HostileArgs {
    /// Whether any hostile client runs.
    pub(crate) fn any(&self) -> bool {
        self.flood > 0 || self.slow_readers > 0 || self.subscribers > 0 || self.spammers > 0
    }
}

/// Counters of the hostile clients.
#[derive(Debug, Default)]
struct Counters {
    flood_tried: AtomicU64,
    flood_completed: AtomicU64,
    flood_failed: AtomicU64,
    flood_open: AtomicU64,
    flood_open_peak: AtomicU64,
    flood_closed_by_server: AtomicU64,
    slow_closed: AtomicU64,
    slow_closed_after_ms: AtomicU64,
    subscriber_bytes: AtomicU64,
    spam_sent: AtomicU64,
    spam_ok: AtomicU64,
    spam_refused: AtomicU64,
    spam_limited: AtomicU64,
    spam_disconnected: AtomicU64,
    rss_start_kb: AtomicU64,
    rss_peak_kb: AtomicU64,
}

/// What the hostile clients got, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct HostileReport {
    /// The hostile clients asked for.
    pub(crate) flood_per_second: u32,
    pub(crate) slow_readers: u32,
    pub(crate) subscribers: u32,
    pub(crate) spammers: u32,
    /// Seconds they ran.
    pub(crate) seconds: f64,
    /// Flood: handshakes started, completed, failed (refused or timed out), most held at once, closed by the
    /// server (its `Hello` deadline).
    pub(crate) flood_tried: u64,
    pub(crate) flood_completed: u64,
    pub(crate) flood_failed: u64,
    pub(crate) flood_open_peak: u64,
    pub(crate) flood_closed_by_server: u64,
    /// Slow readers the server closed, and the mean time until it did, ms.
    pub(crate) slow_readers_closed: u64,
    pub(crate) slow_reader_mean_close_ms: Option<u64>,
    /// Bytes per second each subscriber received.
    pub(crate) subscriber_bytes_per_second: f64,
    /// Spammers' calls: sent, answered `Ok`, refused by the game; the `RateLimited`/`Busy` errors they were sent
    /// (the session drops calls past its rate with one such error a second, so the calls dropped are the sent ones
    /// never answered); spammers disconnected.
    pub(crate) spam_sent: u64,
    pub(crate) spam_ok: u64,
    pub(crate) spam_refused: u64,
    pub(crate) spam_limited: u64,
    pub(crate) spam_disconnected: u64,
    /// The server process's resident memory when they started and at its peak, KiB.
    pub(crate) server_rss_start_kb: Option<u64>,
    pub(crate) server_rss_peak_kb: Option<u64>,
}

/// The running hostile clients.
pub(crate) struct Hostile {
    args: HostileArgs,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sampler: Option<std::thread::JoinHandle<()>>,
    has_rss: bool,
}

/// Resident memory of process `pid`, KiB (Linux).
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Hostile {
    /// Start the hostile clients against `addr` on `rt`; `server_pid` (a started server) for its memory.
    pub(crate) fn start(
        args: &HostileArgs,
        rt: &tokio::runtime::Runtime,
        addr: SocketAddr,
        fingerprint: [u8; 32],
        tables: &[String],
        server_pid: Option<u32>,
    ) -> anyhow::Result<Hostile> {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        // The server's memory before any hostile client exists: the baseline of the per-connection figure.
        if let Some(kb) = server_pid.and_then(rss_kb) {
            counters.rss_start_kb.store(kb, Ordering::Relaxed);
            counters.rss_peak_kb.store(kb, Ordering::Relaxed);
        }
        let config = wire::client_config(fingerprint)?;
        let mut tasks = Vec::new();
        let _guard = rt.enter();
        if args.flood > 0 {
            let endpoint = wire::endpoint(addr)?;
            tasks.push(rt.spawn(flood(
                endpoint,
                config.clone(),
                addr,
                args.flood,
                counters.clone(),
                stop.clone(),
            )));
        }
        let kinds = [
            (Kind::SlowReader, args.slow_readers),
            (Kind::Subscriber, args.subscribers),
            (Kind::Spammer, args.spammers),
        ];
        for (kind, n) in kinds {
            for i in 0..n {
                let endpoint = wire::endpoint(addr)?;
                let (config, counters, stop, all) = (
                    config.clone(),
                    counters.clone(),
                    stop.clone(),
                    tables.to_vec(),
                );
                tasks.push(rt.spawn(async move {
                    let _ = client(endpoint, config, addr, kind, &all, i, counters, stop).await;
                }));
            }
        }
        let sampler = server_pid.map(|pid| {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = rss_kb(pid) {
                        counters.rss_peak_kb.fetch_max(kb, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        Ok(Hostile {
            args: args.clone(),
            counters,
            stop,
            started: Instant::now(),
            tasks,
            has_rss: server_pid.is_some(),
            sampler,
        })
    }

    /// Stop them and report what they got.
    pub(crate) fn finish(mut self, rt: &tokio::runtime::Runtime) -> HostileReport {
        self.stop.store(true, Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64();
        for t in self.tasks.drain(..) {
            let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), t).await });
        }
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let closed = get(&c.slow_closed);
        HostileReport {
            flood_per_second: self.args.flood,
            slow_readers: self.args.slow_readers,
            subscribers: self.args.subscribers,
            spammers: self.args.spammers,
            seconds,
            flood_tried: get(&c.flood_tried),
            flood_completed: get(&c.flood_completed),
            flood_failed: get(&c.flood_failed),
            flood_open_peak: get(&c.flood_open_peak),
            flood_closed_by_server: get(&c.flood_closed_by_server),
            slow_readers_closed: closed,
            slow_reader_mean_close_ms: (closed > 0).then(|| get(&c.slow_closed_after_ms) / closed),
            subscriber_bytes_per_second: if self.args.subscribers > 0 {
                get(&c.subscriber_bytes) as f64 / seconds / f64::from(self.args.subscribers)
            } else {
                0.0
            },
            spam_sent: get(&c.spam_sent),
            spam_ok: get(&c.spam_ok),
            spam_refused: get(&c.spam_refused),
            spam_limited: get(&c.spam_limited),
            spam_disconnected: get(&c.spam_disconnected),
            server_rss_start_kb: self.has_rss.then(|| get(&c.rss_start_kb)),
            server_rss_peak_kb: self.has_rss.then(|| get(&c.rss_peak_kb)),
        }
    }
}

impl HostileReport {
    /// Lines for the printed report.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.flood_per_second > 0 {
            out.push(format!(
                "flood: {}/s for {:.0} s: {} handshakes tried, {} completed, {} failed; at most {} held open; {} closed by the server",
                self.flood_per_second,
                self.seconds,
                self.flood_tried,
                self.flood_completed,
                self.flood_failed,
                self.flood_open_peak,
                self.flood_closed_by_server
            ));
        }
        if self.slow_readers > 0 {
            out.push(format!(
                "slow readers: {} of {} closed by the server{}",
                self.slow_readers_closed,
                self.slow_readers,
                self.slow_reader_mean_close_ms
                    .map_or_else(String::new, |ms| format!(", after {ms} ms on average"))
            ));
        }
        if self.subscribers > 0 {
            out.push(format!(
                "subscribers to everything: {} receiving {:.0} bytes/s each",
                self.subscribers, self.subscriber_bytes_per_second
            ));
        }
        if self.spammers > 0 {
            out.push(format!(
                "spammers: {} sent {} teleports ({:.0}/s each): {} ok ({:.0}/s each), {} refused by the game, {} never answered (dropped by the rate limit, announced by {} RateLimited errors, or in flight at the end); {} disconnected",
                self.spammers,
                self.spam_sent,
                self.spam_sent as f64 / self.seconds.max(1e-9) / f64::from(self.spammers),
                self.spam_ok,
                self.spam_ok as f64 / self.seconds.max(1e-9) / f64::from(self.spammers),
                self.spam_refused,
                self.spam_sent.saturating_sub(self.spam_ok + self.spam_refused),
                self.spam_limited,
                self.spam_disconnected
            ));
        }
        if let (Some(start), Some(peak)) = (self.server_rss_start_kb, self.server_rss_peak_kb) {
            out.push(format!(
                "server memory: {:.1} MiB before they started, {:.1} MiB at its peak ({:+.1} MiB)",
                start as f64 / 1024.0,
                peak as f64 / 1024.0,
                (peak as f64 - start as f64) / 1024.0
            ));
        }
        out
    }
}

/// Handshakes at `rate` per second, each held (no stream, no `Hello`) until the server closes it.
async fn flood(
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    rate: u32,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while !stop.load(Ordering::Relaxed) {
        every.tick().await;
        counters.flood_tried.fetch_add(1, Ordering::Relaxed);
        let Ok(connecting) = endpoint.connect_with(config.clone(), addr, locus_client::SERVER_NAME)
        else {
            counters.flood_failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (counters, stop) = (counters.clone(), stop.clone());
        tokio::spawn(async move {
            let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(10), connecting).await
            else {
                counters.flood_failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            counters.flood_completed.fetch_add(1, Ordering::Relaxed);
            let open = counters.flood_open.fetch_add(1, Ordering::Relaxed) + 1;
            counters.flood_open_peak.fetch_max(open, Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = conn.closed() => {
                        counters.flood_closed_by_server.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stop.load(Ordering::Relaxed) {
                            conn.close(0u32.into(), b"done");
                            break;
                        }
                    }
                }
            }
            counters.flood_open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    SlowReader,
    Subscriber,
    Spammer,
}

/// One hostile client with a session.
#[expect(clippy::too_many_arguments, reason = "one client's whole setting")]
async fn client(
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    kind: Kind,
    tables: &[String],
    index: u32,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let conn = endpoint
        .connect_with(config, addr, locus_client::SERVER_NAME)?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut out = Vec::new();
    locus_protocol::encode_frame(
        &ClientMessage::Hello {
            versions: vec![locus_protocol::PROTOCOL_VERSION],
            token: None,
        },
        &mut out,
    );
    if kind != Kind::Spammer {
        for (i, table) in tables.iter().enumerate() {
            locus_protocol::encode_frame(
                &ClientMessage::Subscribe {
                    request: i as u32,
                    table: table.clone(),
                    filter: Filter::All,
                },
                &mut out,
            );
        }
    }
    send.write_all(&out).await?;
    let start = Instant::now();
    if kind == Kind::SlowReader {
        // Never read: wait until the server gives up on it, or the run ends.
        loop {
            tokio::select! {
                _ = conn.closed() => {
                    counters.slow_closed.fetch_add(1, Ordering::Relaxed);
                    counters.slow_closed_after_ms.fetch_add(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        conn.close(0u32.into(), b"done");
                        return Ok(());
                    }
                }
            }
        }
    }
    let mut frames = FrameReader::new(MAX_SERVER_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let mut request = 1000u32;
    // 400 calls a second: twice the session's sustained rate (200 a second, bursts of 400), so its limit engages.
    let mut every = tokio::time::interval(Duration::from_micros(2_500));
    let spawn = game_module::Vec2::from(game_module::content().world.spawn.center);
    // Two walkable points 300 m either side of the spawn (the nearest walkable ones along the line), so that every
    // teleport lands and moves the whole view.
    let walkable = |dir: f32| {
        (0..200)
            .map(|k| spawn + game_module::Vec2::new(dir * (300.0 + k as f32 * 5.0), 0.0))
            .find(|p| game_module::terrain::is_walkable(*p))
            .unwrap_or(spawn)
    };
    let far = [walkable(1.0), walkable(-1.0)];
    let mut welcomed = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            conn.close(0u32.into(), b"done");
            return Ok(());
        }
        tokio::select! {
            _ = every.tick(), if kind == Kind::Spammer && welcomed => {
                request = request.wrapping_add(1);
                let to = far[(request as usize + index as usize) % 2];
                let call = game_module::teleport::call(to.x, to.y);
                out.clear();
                locus_protocol::encode_frame(
                    &ClientMessage::Call { request, reducer: call.reducer.into(), args: call.args },
                    &mut out,
                );
                counters.spam_sent.fetch_add(1, Ordering::Relaxed);
                if send.write_all(&out).await.is_err() {
                    counters.spam_disconnected.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
            read = recv.read(&mut buf) => {
                let Ok(Some(n)) = read else {
                    if kind == Kind::Spammer {
                        counters.spam_disconnected.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(());
                };
                if kind == Kind::Subscriber {
                    counters.subscriber_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                frames.push(&buf[..n]);
                while let Some(payload) = frames.next_frame()? {
                    if locus_protocol::TickView::parse(payload)?.is_some() {
                        continue;
                    }
                    match locus_protocol::decode_frame::<ServerMessage>(payload)? {
                        ServerMessage::Welcome(_) => welcomed = true,
                        ServerMessage::Result { outcome, .. } => {
                            let c = if outcome == CallOutcome::Ok { &counters.spam_ok } else { &counters.spam_refused };
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        ServerMessage::Error { code: ErrorCode::Busy | ErrorCode::RateLimited, .. } => {
                            counters.spam_limited.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

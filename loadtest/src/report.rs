//! What a run measured: marks (counters at one instant), intervals between two marks, the service level, the
//! JSON report and the terminal table. Pure functions of the marks, unit-tested without a server.

use std::io::Write;

use serde::Serialize;

use crate::child::ChildMetrics;
use crate::histogram::{Histogram, Summary};
use crate::net::CallKind;

/// The service level a player count must hold (`BENCHMARKS.md`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Sla {
    /// p99 tick time at most this, ms.
    pub(crate) tick_p99_ms: f64,
    /// p99 update latency at most this, ms.
    pub(crate) latency_p99_ms: f64,
    /// Disconnects at most this (0).
    pub(crate) disconnects: u64,
}

impl Default for Sla {
    fn default() -> Self {
        Sla {
            tick_p99_ms: 50.0,
            latency_p99_ms: 150.0,
            disconnects: 0,
        }
    }
}

/// Counters at one instant.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mark {
    /// Seconds since the run started.
    pub(crate) t: f64,
    /// Bot sessions up.
    pub(crate) connected: u64,
    /// Update latency so far.
    pub(crate) latency: Histogram,
    /// Update latency per player row change so far.
    pub(crate) row_latency: Histogram,
    /// Reducer round trip so far.
    pub(crate) rtt: Histogram,
    /// UDP bytes received by all bots.
    pub(crate) rx_bytes: u64,
    /// UDP bytes sent by all bots.
    pub(crate) tx_bytes: u64,
    /// UDP datagrams received.
    pub(crate) rx_packets: u64,
    /// UDP datagrams sent.
    pub(crate) tx_packets: u64,
    /// Errors so far.
    pub(crate) errors: u64,
    /// Disconnects so far (sessions lost + connections that never got `Welcome`).
    pub(crate) disconnects: u64,
    /// Calls sent so far.
    pub(crate) calls: u64,
    /// Calls refused so far, per [`CallKind::ALL`].
    pub(crate) refused: [u64; 5],
    /// Updates of other players received so far.
    pub(crate) other_updates: u64,
    /// Position datagrams received so far (protocol version 4), malformed ones included.
    pub(crate) datagrams: u64,
    /// Malformed position datagrams so far.
    pub(crate) malformed_datagrams: u64,
    /// Places dropped by the client's rule so far.
    pub(crate) places_dropped: u64,
    /// Rows received per table: (name, rows, row bytes).
    pub(crate) tables: Vec<(String, u64, u64)>,
    /// The server's latest line, if it reports one.
    pub(crate) server: Option<ChildMetrics>,
    /// The load tester's own process CPU time (user + system, `/proc/self/stat`), s: the bots, their QUIC and
    /// the brains. The server is never in it: a started server is a separate process (and its CPU is not counted
    /// in its parent's utime/stime), an external one runs elsewhere.
    pub(crate) bot_cpu_s: Option<f64>,
}

/// Tick figures from the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct TickFigures {
    /// Ticks run in the interval.
    pub(crate) ticks: u64,
    /// Tick time p50 over the server's recent-ticks window, ms: the measured interval's ticks for a server child
    /// (started afresh when the measurement starts), the last ≤ 4096 ticks of an external server.
    pub(crate) p50_ms: f64,
    /// Tick time p99 over that window, ms.
    pub(crate) p99_ms: f64,
    /// Tick time max over that window, ms.
    pub(crate) max_ms: f64,
    /// Ticks in the window.
    pub(crate) window: u64,
    /// Tick-thread CPU per tick in the interval (mean, from `/proc`), ms.
    pub(crate) cpu_mean_ms: Option<f64>,
    /// Tick slots skipped in the interval.
    pub(crate) overruns: u64,
    /// Tick start jitter p99 over the window, ms.
    pub(crate) jitter_p99_ms: f64,
    /// Server process CPU per player per tick in the interval, µs.
    pub(crate) cpu_us_per_player_tick: Option<f64>,
    /// Server process CPU in the interval, in cores (1.0 = one core busy).
    pub(crate) cpu_cores: Option<f64>,
}

/// What happened between two marks.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Interval {
    /// Start, s since the run started.
    pub(crate) from_s: f64,
    /// End.
    pub(crate) to_s: f64,
    /// Bot sessions up at the end.
    pub(crate) players: u64,
    /// Reducer round trip (call → result), ms.
    pub(crate) reducer_rtt: Summary,
    /// Update latency (tick timestamp → frame at a bot that sees another player move), ms: one sample per frame
    /// or datagram. The service level's figure.
    pub(crate) update_latency: Summary,
    /// Update latency per player row change, ms: the same tick timestamp → arrival, one sample per change of
    /// another player's row a bot applied (insert, update, patch, move, place), so a datagram of ten players'
    /// places weighs ten times a frame of one patch. `count` is the changes. Not judged by the service level.
    pub(crate) row_update_latency: Summary,
    /// UDP payload bytes per second per client, server → client.
    pub(crate) down_bytes_per_s: f64,
    /// Client → server.
    pub(crate) up_bytes_per_s: f64,
    /// UDP datagrams per second per client, server → client.
    pub(crate) down_packets_per_s: f64,
    /// Client → server.
    pub(crate) up_packets_per_s: f64,
    /// Row updates of other players received per second per client (moves and places included).
    pub(crate) other_updates_per_s: f64,
    /// Position datagrams (protocol version 4) received per second per client. Their bytes are in
    /// `down_bytes_per_s` (counted at the bots' UDP sockets), their places in `tables`.
    pub(crate) datagrams_per_s: f64,
    /// Position datagrams the server handed to its connections per second per client; `None` without server
    /// metrics. Above `datagrams_per_s` by those lost on the way (or dropped by a connection that could not take
    /// them).
    pub(crate) server_datagrams_per_s: Option<f64>,
    /// Sessions the server sent positions in datagrams at the end because their connection lost packets
    /// (`locus serve --datagrams on-loss`, the default); `None` without server metrics.
    pub(crate) lossy_links: Option<u64>,
    /// Position datagrams received malformed (ignored whole).
    pub(crate) malformed_datagrams: u64,
    /// Places dropped by the client's rule (`protocol.md`, "Applying a place"): stale, of a handle naming no row
    /// since their tick, or too far ahead of the stream.
    pub(crate) places_dropped: u64,
    /// Server figures; `None` for an external server (no metrics endpoint yet).
    pub(crate) server: Option<TickFigures>,
    /// The load tester's process CPU (bots, their QUIC, the brains; never the server) per connected bot (at the
    /// interval's end) per tick, µs: next to the server's `cpu_us_per_player_tick`, the cost of the clients on
    /// this box. Ticks are the server's own count when it reports one that advanced, with the bots' CPU read as
    /// each of those two server lines arrived (the same window); otherwise (an external server, or no new
    /// server line) the interval's seconds × the nominal tick rate, with the bots' CPU read at the marks.
    /// `None` without bots or without `/proc`.
    pub(crate) bot_cpu_us_per_bot_tick: Option<f64>,
    /// The load tester's process CPU in the interval, in cores (1.0 = one core busy).
    pub(crate) bot_cpu_cores: Option<f64>,
    /// Errors (error frames, malformed frames).
    pub(crate) errors: u64,
    /// Disconnects and failed connects.
    pub(crate) disconnects: u64,
    /// Calls sent.
    pub(crate) calls: u64,
    /// Calls refused by the game rules (water, too far, busy, dead, chat limit), by reducer.
    pub(crate) refused: std::collections::BTreeMap<&'static str, u64>,
    /// Per table: rows and row bytes (the module's row encoding, before framing and QUIC; for moves and places,
    /// their records' length) per second per client.
    pub(crate) tables: std::collections::BTreeMap<String, TableRate>,
}

/// Rows of one table arriving at a client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct TableRate {
    /// Rows (inserts, updates, deletes, patches, moves, places) per second per client.
    pub(crate) rows_per_s: f64,
    /// Their bytes per second per client.
    pub(crate) bytes_per_s: f64,
}

/// The interval from `a` to `b` (`b` later), for a server ticking `tick_rate` times a second (the nominal rate:
/// the bots' CPU per tick divides by it when the server reports no tick count).
pub(crate) fn interval(a: &Mark, b: &Mark, tick_rate: f64) -> Interval {
    let secs = (b.t - a.t).max(1e-9);
    let clients = b.connected.max(1) as f64;
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs / clients;
    let server = match (&a.server, &b.server) {
        (Some(sa), Some(sb)) => {
            let (ma, mb) = (&sa.metrics, &sb.metrics);
            let ticks = mb.ticks.saturating_sub(ma.ticks);
            let ms = |us: u64| us as f64 / 1e3;
            let cpu = match (sa.cpu_s, sb.cpu_s) {
                (Some(x), Some(y)) => Some(y - x),
                _ => None,
            };
            let players = b.connected.max(1) as f64;
            TickFigures {
                ticks,
                p50_ms: ms(mb.tick_time.p50_us),
                p99_ms: ms(mb.tick_time.p99_us),
                max_ms: ms(mb.tick_time.max_us),
                window: mb.tick_time.samples,
                cpu_mean_ms: match (sa.tick_cpu_s, sb.tick_cpu_s) {
                    (Some(x), Some(y)) if ticks > 0 => Some((y - x) * 1e3 / ticks as f64),
                    _ => None,
                },
                overruns: mb.overruns.saturating_sub(ma.overruns),
                jitter_p99_ms: ms(mb.jitter.p99_us),
                cpu_us_per_player_tick: cpu
                    .filter(|_| ticks > 0)
                    .map(|c| c * 1e6 / (players * ticks as f64)),
                cpu_cores: cpu.map(|c| c / secs),
            }
            .into()
        }
        _ => None,
    };
    let bot_cpu = match (a.bot_cpu_s, b.bot_cpu_s) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    // Against the server's ticks, the bots' CPU read when those two server lines arrived; else the marks'.
    let from_server = match (&a.server, &b.server) {
        (Some(sa), Some(sb)) if sb.metrics.ticks > sa.metrics.ticks => {
            match (sa.bots_cpu_s, sb.bots_cpu_s) {
                (Some(x), Some(y)) => Some((y - x, (sb.metrics.ticks - sa.metrics.ticks) as f64)),
                _ => None,
            }
        }
        _ => None,
    };
    let (bot_cpu_per_tick, bot_ticks) = match from_server {
        Some((cpu, ticks)) => (Some(cpu), ticks),
        None => (bot_cpu, secs * tick_rate),
    };
    Interval {
        from_s: a.t,
        to_s: b.t,
        players: b.connected,
        reducer_rtt: b.rtt.since(&a.rtt).summary(),
        update_latency: b.latency.since(&a.latency).summary(),
        row_update_latency: b.row_latency.since(&a.row_latency).summary(),
        down_bytes_per_s: per(a.rx_bytes, b.rx_bytes),
        up_bytes_per_s: per(a.tx_bytes, b.tx_bytes),
        down_packets_per_s: per(a.rx_packets, b.rx_packets),
        up_packets_per_s: per(a.tx_packets, b.tx_packets),
        other_updates_per_s: per(a.other_updates, b.other_updates),
        datagrams_per_s: per(a.datagrams, b.datagrams),
        server_datagrams_per_s: match (&a.server, &b.server) {
            (Some(sa), Some(sb)) => Some(per(sa.metrics.datagrams_out, sb.metrics.datagrams_out)),
            _ => None,
        },
        lossy_links: b.server.as_ref().map(|s| s.metrics.lossy_links),
        malformed_datagrams: b.malformed_datagrams.saturating_sub(a.malformed_datagrams),
        places_dropped: b.places_dropped.saturating_sub(a.places_dropped),
        server,
        bot_cpu_us_per_bot_tick: bot_cpu_per_tick
            .filter(|_| b.connected > 0 && bot_ticks > 0.0)
            .map(|c| c * 1e6 / (b.connected as f64 * bot_ticks)),
        bot_cpu_cores: bot_cpu.map(|c| c / secs),
        errors: b.errors.saturating_sub(a.errors),
        disconnects: b.disconnects.saturating_sub(a.disconnects),
        calls: b.calls.saturating_sub(a.calls),
        refused: CallKind::ALL
            .iter()
            .zip(a.refused.iter().zip(&b.refused))
            .map(|(k, (x, y))| (k.name(), y.saturating_sub(*x)))
            .collect(),
        tables: b
            .tables
            .iter()
            .map(|(name, rows, bytes)| {
                let (r0, b0) = a
                    .tables
                    .iter()
                    .find(|t| &t.0 == name)
                    .map_or((0, 0), |t| (t.1, t.2));
                (
                    name.clone(),
                    TableRate {
                        rows_per_s: per(r0, *rows),
                        bytes_per_s: per(b0, *bytes),
                    },
                )
            })
            .filter(|(_, r)| r.rows_per_s > 0.0)
            .collect(),
    }
}

/// Whether an interval held the service level, and if not why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Verdict {
    /// Held.
    pub(crate) held: bool,
    /// What broke it (empty when held).
    pub(crate) broken_by: Vec<String>,
    /// What could not be checked (tick time without server metrics).
    pub(crate) unchecked: Vec<String>,
}

/// Judge `m` (with `disconnects` counted over the whole step, connecting included) against `sla`.
pub(crate) fn evaluate(m: &Interval, disconnects: u64, sla: &Sla) -> Verdict {
    let mut v = Verdict::default();
    match &m.server {
        Some(s) if s.p99_ms > sla.tick_p99_ms => v.broken_by.push(format!(
            "tick p99 {:.1} ms > {} ms",
            s.p99_ms, sla.tick_p99_ms
        )),
        Some(_) => {}
        None => v
            .unchecked
            .push("tick time (no server metrics for an external server)".into()),
    }
    if m.update_latency.count == 0 {
        v.broken_by
            .push("no update latency samples (no bot saw another move)".into());
    } else if m.update_latency.p99_ms > sla.latency_p99_ms {
        v.broken_by.push(format!(
            "update latency p99 {:.1} ms > {} ms",
            m.update_latency.p99_ms, sla.latency_p99_ms
        ));
    }
    if disconnects > sla.disconnects {
        v.broken_by.push(format!("{disconnects} disconnects"));
    }
    v.held = v.broken_by.is_empty();
    v
}

/// The largest player count of consecutive held steps from the first (ramp mode): the step before the first
/// broken one.
pub(crate) fn largest_held(steps: &[StepReport]) -> Option<u32> {
    steps
        .iter()
        .take_while(|s| s.verdict.held)
        .map(|s| s.players)
        .last()
}

/// One step: a player count held for a while and measured.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StepReport {
    /// Players asked for.
    pub(crate) players: u32,
    /// Side of the arena, m.
    pub(crate) arena_side_m: f32,
    /// Seconds from the step's start until every bot was placed (or gone).
    pub(crate) connect_s: f64,
    /// The measured interval.
    pub(crate) measured: Interval,
    /// Disconnects over the whole step (connecting included).
    pub(crate) step_disconnects: u64,
    /// Against the service level.
    pub(crate) verdict: Verdict,
}

/// Did each bot hear about the others near it?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Visibility {
    /// Pairs of bots standing within the check distance of each other at the end.
    pub(crate) pairs_checked: u64,
    /// Of which the first did not have the second in view.
    pub(crate) pairs_missing: u64,
    /// Bots with another bot within the check distance.
    pub(crate) bots_with_neighbours: u64,
    /// Of which received no update or insert of another player in the whole run.
    pub(crate) bots_with_neighbours_but_no_updates: u64,
    /// Active bots.
    pub(crate) bots: u64,
    /// Active bots that received at least one update of another player.
    pub(crate) bots_with_updates: u64,
}

/// For bots at `positions` (`None`: not placed), each seeing the player ids `sees(i)`, with player ids `ids` and
/// `heard(i)` other-player rows received: check every pair within `distance` metres.
pub(crate) fn check_visibility(
    bots: &[(Option<u64>, Option<game_module::Vec2>, u64)],
    sees: impl Fn(usize, u64) -> bool,
    distance: f32,
) -> Visibility {
    let mut v = Visibility::default();
    for (i, (_, pi, heard)) in bots.iter().enumerate() {
        let Some(pi) = pi else { continue };
        v.bots += 1;
        if *heard > 0 {
            v.bots_with_updates += 1;
        }
        let mut neighbours = false;
        for (j, (idj, pj, _)) in bots.iter().enumerate() {
            let (Some(idj), Some(pj)) = (idj, pj) else {
                continue;
            };
            if i == j || pi.distance(*pj) > distance {
                continue;
            }
            neighbours = true;
            v.pairs_checked += 1;
            if !sees(i, *idj) {
                v.pairs_missing += 1;
            }
        }
        if neighbours {
            v.bots_with_neighbours += 1;
            if *heard == 0 {
                v.bots_with_neighbours_but_no_updates += 1;
            }
        }
    }
    v
}

/// One line of the time series (one second).
pub(crate) type Sample = Interval;

/// Where the server ran.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ServerInfo {
    /// `child` (started by the load test) or `external`.
    pub(crate) kind: &'static str,
    /// Its address.
    pub(crate) addr: String,
    /// Whether server-side figures (tick time, CPU) are in the report.
    pub(crate) metrics_available: bool,
    /// How they were obtained, or why not.
    pub(crate) note: String,
}

/// The machine.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Machine {
    /// Logical CPUs.
    pub(crate) cpus: usize,
    /// Memory, MiB (from `/proc/meminfo`).
    pub(crate) memory_mib: Option<u64>,
}

impl Machine {
    /// This machine.
    pub(crate) fn this() -> Machine {
        let memory_mib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb / 1024)
        });
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            memory_mib,
        }
    }
}

/// Whole-run counts.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Totals {
    /// Bot sessions that reached `Welcome`.
    pub(crate) sessions: u64,
    /// Errors.
    pub(crate) errors: u64,
    /// Disconnects (lost sessions).
    pub(crate) disconnects: u64,
    /// Connections that never reached `Welcome`.
    pub(crate) connect_failures: u64,
    /// Calls sent.
    pub(crate) calls: u64,
    /// Position datagrams received (protocol version 4), malformed ones included.
    pub(crate) datagrams: u64,
    /// Malformed position datagrams (ignored whole; not in `errors`).
    pub(crate) malformed_datagrams: u64,
    /// Places dropped by the client's rule (`protocol.md`, "Applying a place").
    pub(crate) places_dropped: u64,
    /// Refused calls, by reducer.
    pub(crate) refused: std::collections::BTreeMap<&'static str, u64>,
    /// Bots that teleported into the arena.
    pub(crate) placed: u64,
    /// NPCs spawned for the run.
    pub(crate) npcs_spawned: u64,
    /// The first error and disconnect reasons.
    pub(crate) reasons: Vec<String>,
}

/// The JSON report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    /// `run` or `ramp`.
    pub(crate) mode: &'static str,
    /// The scenario.
    pub(crate) scenario: String,
    /// The seed.
    pub(crate) seed: u64,
    /// The protocol version the bots spoke (1: whole rows only; 2: patches of changed columns; 3: also moves and
    /// handles; 4: walking rows' positions in QUIC datagrams instead of moves on the stream).
    pub(crate) protocol: u16,
    /// The service level steps are judged by.
    pub(crate) sla: Sla,
    /// The server.
    pub(crate) server: ServerInfo,
    /// The machine (bots and server share it).
    pub(crate) machine: Machine,
    /// Each player count measured (one in `run` mode).
    pub(crate) steps: Vec<StepReport>,
    /// Ramp mode: the largest player count that held the service level.
    pub(crate) max_players_held: Option<u32>,
    /// Whole-run counts.
    pub(crate) totals: Totals,
    /// The end-of-run check that bots saw their neighbours.
    pub(crate) visibility: Visibility,
    /// Once a second.
    pub(crate) samples: Vec<Sample>,
    /// What the hostile clients got, if any ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hostile: Option<crate::hostile::HostileReport>,
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

/// The final table.
pub(crate) fn print_table(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "\nlocus loadtest: {} scenario, {} mode, seed {}, protocol version {}, server {} ({}), {} CPUs",
        report.scenario,
        report.mode,
        report.seed,
        report.protocol,
        report.server.kind,
        report.server.addr,
        report.machine.cpus
    )?;
    if !report.server.metrics_available {
        writeln!(out, "server metrics: unavailable ({})", report.server.note)?;
    }
    writeln!(
        out,
        "{:>7} {:>6} | {:>22} {:>4} {:>7} | {:>15} | {:>15} | {:>8} {:>8} {:>9} | {:>10} {:>8} | {:>4} {:>4} | service level",
        "players",
        "up",
        "tick p50/p99/max ms",
        "ovr",
        "cpu/t",
        "rtt p50/p99",
        "lat p50/p99",
        "down B/s",
        "up B/s",
        "pkt dn/up",
        "µs/pl/tick",
        "bot µs/t",
        "err",
        "disc",
    )?;
    for s in &report.steps {
        let m = &s.measured;
        let (tick, ovr, cpu_t, cpu) = match &m.server {
            Some(t) => (
                format!("{:.1}/{:.1}/{:.1}", t.p50_ms, t.p99_ms, t.max_ms),
                t.overruns.to_string(),
                opt(t.cpu_mean_ms, 1),
                opt(t.cpu_us_per_player_tick, 2),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into(), "n/a".into()),
        };
        let verdict = if s.verdict.held {
            "held".to_owned()
        } else {
            format!("BROKEN: {}", s.verdict.broken_by.join("; "))
        };
        writeln!(
            out,
            "{:>7} {:>6} | {:>22} {:>4} {:>7} | {:>15} | {:>15} | {:>8.0} {:>8.0} {:>9} | {:>10} {:>8} | {:>4} {:>4} | {}",
            s.players,
            m.players,
            tick,
            ovr,
            cpu_t,
            format!("{:.1}/{:.1}", m.reducer_rtt.p50_ms, m.reducer_rtt.p99_ms),
            format!(
                "{:.1}/{:.1}",
                m.update_latency.p50_ms, m.update_latency.p99_ms
            ),
            m.down_bytes_per_s,
            m.up_bytes_per_s,
            format!("{:.0}/{:.0}", m.down_packets_per_s, m.up_packets_per_s),
            cpu,
            opt(m.bot_cpu_us_per_bot_tick, 2),
            m.errors,
            s.step_disconnects,
            verdict
        )?;
    }
    for s in &report.steps {
        let rates: Vec<String> = s
            .measured
            .tables
            .iter()
            .map(|(name, r)| format!("{name} {:.0} rows/s {:.0} B/s", r.rows_per_s, r.bytes_per_s))
            .collect();
        writeln!(
            out,
            "{:>7} players, rows per client: {}",
            s.players,
            rates.join(", ")
        )?;
        let m = &s.measured;
        let r = &m.row_update_latency;
        writeln!(
            out,
            "{:>7} players, update latency per player row change: p50 {:.1} ms, p99 {:.1} ms ({} changes)",
            s.players, r.p50_ms, r.p99_ms, r.count
        )?;
        if report.protocol >= 4 || m.datagrams_per_s > 0.0 || m.malformed_datagrams > 0 {
            writeln!(
                out,
                "{:>7} players, position datagrams: {:.1}/s per client received ({} sent by the server; {} sessions on a \
                 lossy link), {} malformed, {} places dropped (stale)",
                s.players,
                m.datagrams_per_s,
                opt(m.server_datagrams_per_s, 1),
                m.lossy_links
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                m.malformed_datagrams,
                m.places_dropped
            )?;
        }
    }
    writeln!(
        out,
        "columns: up = bot sessions at the end; tick = server tick time over the measured interval (an external server: its last ≤4096 ticks); ovr = skipped \
         tick slots; cpu/t = tick-thread CPU per tick (ms); rtt = reducer round trip (ms); lat = update latency \
         (ms; one sample per frame or datagram carrying an update of another player, however many; per row \
         change under the table); B/s and packets per client per second; µs/pl/tick = server process CPU per player per tick; bot µs/t = \
         the load tester's own process CPU (bots, their QUIC, the brains; not the server) per bot per tick"
    )?;
    let t = &report.totals;
    writeln!(
        out,
        "totals: {} sessions, {} calls ({} refused by the rules: {}), {} errors, {} disconnects, {} failed connects, \
         {} NPCs spawned",
        t.sessions,
        t.calls,
        t.refused.values().sum::<u64>(),
        t.refused
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        t.errors,
        t.disconnects,
        t.connect_failures,
        t.npcs_spawned
    )?;
    let v = &report.visibility;
    writeln!(
        out,
        "visibility: {}/{} bots received other players' updates; {} pairs within check distance, {} missing",
        v.bots_with_updates, v.bots, v.pairs_checked, v.pairs_missing
    )?;
    for r in &t.reasons {
        writeln!(out, "  reason: {r}")?;
    }
    for s in &report.steps {
        let m = &s.measured;
        let server = m.server.and_then(|t| t.cpu_us_per_player_tick);
        let sum = server.zip(m.bot_cpu_us_per_bot_tick).map(|(x, y)| x + y);
        writeln!(
            out,
            "server + bots CPU per player per tick on this box, {} players: {} + {} = {} µs ({} + {} cores of {})",
            s.players,
            opt(server, 2),
            opt(m.bot_cpu_us_per_bot_tick, 2),
            opt(sum, 2),
            opt(m.server.and_then(|t| t.cpu_cores), 2),
            opt(m.bot_cpu_cores, 2),
            report.machine.cpus
        )?;
    }
    if let Some(n) = report.max_players_held {
        writeln!(out, "largest player count holding the service level: {n}")?;
    } else if report.mode == "ramp" {
        writeln!(out, "no player count held the service level")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use game_module::Vec2;

    use super::*;
    use crate::child::{Pct, ServerMetrics};

    /// A report of one step of 10 players that measured `measured`, for the table and the JSON.
    fn one_step(
        protocol: u16,
        measured: Interval,
        totals: Totals,
        samples: Vec<Interval>,
    ) -> Report {
        Report {
            mode: "run",
            scenario: "standard".into(),
            seed: 1,
            protocol,
            sla: Sla::default(),
            server: ServerInfo {
                kind: "child",
                addr: "127.0.0.1:1".into(),
                metrics_available: true,
                note: String::new(),
            },
            machine: Machine {
                cpus: 2,
                memory_mib: None,
            },
            steps: vec![StepReport {
                players: 10,
                arena_side_m: 0.0,
                connect_s: 0.0,
                verdict: evaluate(&measured, 0, &Sla::default()),
                measured,
                step_disconnects: 0,
            }],
            max_players_held: None,
            totals,
            visibility: Visibility::default(),
            samples,
            hostile: None,
        }
    }
    fn mark(t: f64, ticks: u64, cpu: f64, rx: u64, lat: &[u64]) -> Mark {
        Mark {
            t,
            connected: 10,
            latency: Histogram::of(lat),
            rx_bytes: rx,
            server: Some(ChildMetrics {
                metrics: ServerMetrics {
                    ticks,
                    tick_time: Pct {
                        p50_us: 2_000,
                        p99_us: 9_000,
                        max_us: 20_000,
                        samples: ticks,
                    },
                    ..ServerMetrics::default()
                },
                cpu_s: Some(cpu),
                tick_cpu_s: Some(cpu / 2.0),
                bots_cpu_s: None,
                region: None,
            }),
            ..Mark::default()
        }
    }

    #[test]
    fn intervals_divide_per_client_second_and_tick() {
        let a = mark(10.0, 200, 1.0, 1_000, &[1_000; 5]);
        let mut lat = vec![1_000; 5];
        lat.extend([100_000; 5]);
        let b = mark(20.0, 400, 3.0, 201_000, &lat);
        let i = interval(&a, &b, 20.0);
        assert!((i.down_bytes_per_s - 2_000.0).abs() < 1e-9); // 200 kB / 10 s / 10 clients
        let s = i.server.unwrap();
        assert_eq!(s.ticks, 200);
        // 2 s of CPU over 10 players x 200 ticks = 1 ms each
        assert!((s.cpu_us_per_player_tick.unwrap() - 1_000.0).abs() < 1e-6);
        assert!((s.cpu_mean_ms.unwrap() - 5.0).abs() < 1e-9);
        assert!((s.cpu_cores.unwrap() - 0.2).abs() < 1e-9);
        // only the interval's latencies
        assert_eq!(i.update_latency.count, 5);
        assert!(i.update_latency.p50_ms > 95.0);
    }

    #[test]
    fn the_per_row_latency_weighs_each_change_and_is_not_judged() {
        // Ten datagrams of ten players' places each at 10.24 ms, one frame of one patch at 102.4 ms.
        let mut frames = vec![10_240; 10];
        frames.push(102_400);
        let a = mark(10.0, 200, 1.0, 0, &[]);
        let mut b = mark(20.0, 400, 2.0, 0, &frames);
        let mut changes = vec![10_240; 100];
        changes.push(102_400);
        b.row_latency = Histogram::of(&changes);
        let m = interval(&a, &b, 20.0);
        // Per frame the patch is the p99; per row change it is one in 101.
        assert_eq!(
            (m.update_latency.count, m.update_latency.p99_ms),
            (11, 102.4)
        );
        let r = m.row_update_latency;
        assert_eq!(
            (r.count, r.p50_ms, r.p99_ms, r.max_ms),
            (101, 10.24, 10.24, 102.4)
        );
        // Only the interval's changes.
        let later = Mark {
            t: 30.0,
            row_latency: Histogram::of(&[changes.as_slice(), &[20_480; 3]].concat()),
            ..b.clone()
        };
        assert_eq!(interval(&b, &later, 20.0).row_update_latency.count, 3);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["row_update_latency"]["count"], 101);
        assert_eq!(json["row_update_latency"]["p50_ms"], 10.24);
        assert_eq!(json["row_update_latency"]["p99_ms"], 10.24);
        assert_eq!(json["update_latency"]["count"], 11);
        // The service level reads the frame measure only.
        let mut slow_rows = m.clone();
        slow_rows.row_update_latency.p99_ms = 500.0;
        assert!(evaluate(&slow_rows, 0, &Sla::default()).held);
        // Printed under the table, for every protocol version.
        for protocol in [1, 4] {
            let report = one_step(protocol, m.clone(), Totals::default(), vec![m.clone()]);
            let mut out = Vec::new();
            print_table(&report, &mut out).unwrap();
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.contains(
                    "10 players, update latency per player row change: p50 10.2 ms, p99 10.2 ms (101 changes)"
                ),
                "{out}"
            );
            // The table's column is still the frame measure.
            assert!(out.contains("10.2/102.4"), "{out}");
            let json = serde_json::to_value(&report).unwrap();
            assert_eq!(
                json["samples"][0]["row_update_latency"]["count"], 101,
                "{json}"
            );
        }
    }

    /// Marks 10 s apart; the server ran 150 ticks (not the nominal 200); 4 bots at the start, 10 at the end;
    /// the bots' CPU grew 0.3 s between the two server lines and 0.5 s between the marks.
    fn bot_marks() -> (Mark, Mark) {
        let mut a = mark(10.0, 200, 1.0, 0, &[]);
        let mut b = mark(20.0, 350, 2.5, 0, &[]);
        a.connected = 4;
        (a.bot_cpu_s, b.bot_cpu_s) = (Some(2.1), Some(2.6));
        a.server.as_mut().unwrap().bots_cpu_s = Some(2.0);
        b.server.as_mut().unwrap().bots_cpu_s = Some(2.3);
        (a, b)
    }

    #[test]
    fn bot_cpu_is_per_bot_at_the_end_per_server_tick() {
        let (a, b) = bot_marks();
        let i = interval(&a, &b, 20.0);
        // 0.3 s (between the server lines) over 10 bots x 150 server ticks = 200 µs; dividing by the first mark's
        // 4 bots gives 500, by the nominal 200 ticks 150, by 10 s 3,000, the marks' 0.5 s 333.
        let bot = i.bot_cpu_us_per_bot_tick.unwrap();
        assert!((bot - 200.0).abs() < 1e-6, "{bot}");
        // Cores from the marks' own window: 0.5 s over 10 s.
        assert!((i.bot_cpu_cores.unwrap() - 0.05).abs() < 1e-9);
        // The server's figure beside it: 1.5 s over 10 players x 150 ticks = 1,000 µs.
        let server = i.server.unwrap().cpu_us_per_player_tick.unwrap();
        assert!((server - 1_000.0).abs() < 1e-6, "{server}");
    }

    #[test]
    fn bot_cpu_without_server_ticks_uses_the_nominal_rate() {
        let (mut a, mut b) = bot_marks();
        // An external server: 0.5 s (the marks') over 10 bots x 10 s x 20 ticks/s = 250 µs.
        (a.server, b.server) = (None, None);
        let i = interval(&a, &b, 20.0);
        assert!((i.bot_cpu_us_per_bot_tick.unwrap() - 250.0).abs() < 1e-6);
        assert!((i.bot_cpu_cores.unwrap() - 0.05).abs() < 1e-9);
        // At 25 ticks/s: 200 µs.
        let i = interval(&a, &b, 25.0);
        assert!((i.bot_cpu_us_per_bot_tick.unwrap() - 200.0).abs() < 1e-6);
        // A started server whose line has not advanced (a one-second sample): the nominal rate too.
        let (a, mut b) = bot_marks();
        b.server = a.server;
        let i = interval(&a, &b, 20.0);
        assert!((i.bot_cpu_us_per_bot_tick.unwrap() - 250.0).abs() < 1e-6);
        // No bots: no figure per bot.
        b.connected = 0;
        assert_eq!(interval(&a, &b, 20.0).bot_cpu_us_per_bot_tick, None);
    }

    #[test]
    fn the_table_shows_bot_cpu_beside_the_server_and_their_sum() {
        let (a, b) = bot_marks();
        let measured = interval(&a, &b, 20.0);
        let report = one_step(2, measured, Totals::default(), Vec::new());
        let mut out = Vec::new();
        print_table(&report, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("µs/pl/tick bot µs/t"), "{out}");
        assert!(out.contains("   1000.00   200.00 |"), "{out}");
        assert!(
            out.contains("10 players: 1000.00 + 200.00 = 1200.00 µs (0.15 + 0.05 cores of 2)"),
            "{out}"
        );
    }

    #[test]
    fn position_datagrams_are_counted_per_interval_printed_and_in_the_json() {
        let mut a = mark(10.0, 200, 1.0, 0, &[]);
        let mut b = mark(20.0, 400, 2.0, 0, &[]);
        (a.datagrams, a.malformed_datagrams, a.places_dropped) = (1_000, 1, 5);
        (b.datagrams, b.malformed_datagrams, b.places_dropped) = (5_000, 3, 12);
        b.server.as_mut().unwrap().metrics.datagrams_out = 4_100;
        b.server.as_mut().unwrap().metrics.lossy_links = 9;
        let measured = interval(&a, &b, 20.0);
        // 4,000 datagrams over 10 s and 10 clients; the counts are the interval's.
        assert!((measured.datagrams_per_s - 40.0).abs() < 1e-9);
        assert_eq!(
            (measured.malformed_datagrams, measured.places_dropped),
            (2, 7)
        );
        let json = serde_json::to_value(&measured).unwrap();
        assert_eq!(json["places_dropped"], 7);
        assert_eq!(json["malformed_datagrams"], 2);
        assert_eq!(json["lossy_links"], 9);
        let mut report = one_step(
            4,
            measured,
            Totals {
                datagrams: 5_000,
                places_dropped: 12,
                ..Totals::default()
            },
            Vec::new(),
        );
        let totals = serde_json::to_value(&report.totals).unwrap();
        assert_eq!(
            (
                totals["datagrams"].as_u64(),
                totals["places_dropped"].as_u64()
            ),
            (Some(5_000), Some(12))
        );
        let table = |report: &Report| {
            let mut out = Vec::new();
            print_table(report, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let out = table(&report);
        assert!(
            out.contains(
                "10 players, position datagrams: 40.0/s per client received (41.0 sent by the server; 9 sessions on a \
                 lossy link), 2 malformed, 7 places dropped (stale)"
            ),
            "{out}"
        );
        // Not for an older version that received none.
        report.protocol = 3;
        report.steps[0].measured = interval(&a, &a, 20.0);
        assert!(!table(&report).contains("position datagrams"));
    }

    #[test]
    fn the_service_level_names_what_broke_it() {
        let sla = Sla::default();
        let mut m = interval(
            &mark(0.0, 0, 0.0, 0, &[]),
            &mark(10.0, 200, 1.0, 0, &[20_000; 100]),
            20.0,
        );
        assert!(evaluate(&m, 0, &sla).held);
        let v = evaluate(&m, 3, &sla);
        assert!(!v.held);
        assert_eq!(v.broken_by, vec!["3 disconnects".to_owned()]);
        m.update_latency.p99_ms = 151.0;
        m.server.as_mut().unwrap().p99_ms = 60.0;
        let v = evaluate(&m, 0, &sla);
        assert_eq!(v.broken_by.len(), 2, "{v:?}");
        m.server = None;
        m.update_latency.p99_ms = 10.0;
        let v = evaluate(&m, 0, &sla);
        assert!(v.held);
        assert_eq!(v.unchecked.len(), 1);
    }

    #[test]
    fn the_ramp_reports_the_last_held_step_before_the_first_broken_one() {
        let step = |players, held| StepReport {
            players,
            arena_side_m: 0.0,
            connect_s: 0.0,
            measured: Interval::default(),
            step_disconnects: 0,
            verdict: Verdict {
                held,
                ..Verdict::default()
            },
        };
        assert_eq!(
            largest_held(&[step(500, true), step(1000, true), step(1500, false)]),
            Some(1000)
        );
        assert_eq!(largest_held(&[step(500, false), step(1000, true)]), None);
        assert_eq!(largest_held(&[]), None);
    }

    #[test]
    fn visibility_counts_pairs_in_range() {
        let bots = [
            (Some(1), Some(Vec2::new(0.0, 0.0)), 5),
            (Some(2), Some(Vec2::new(10.0, 0.0)), 0),
            (Some(3), Some(Vec2::new(500.0, 0.0)), 0),
            (None, None, 0),
        ];
        // bot 0 sees player 2; bot 1 does not see player 1
        let v = check_visibility(&bots, |i, id| i == 0 && id == 2, 50.0);
        assert_eq!(v.bots, 3);
        assert_eq!(v.pairs_checked, 2);
        assert_eq!(v.pairs_missing, 1);
        assert_eq!(v.bots_with_neighbours, 2);
        assert_eq!(v.bots_with_neighbours_but_no_updates, 1);
        assert_eq!(v.bots_with_updates, 1);
    }
}

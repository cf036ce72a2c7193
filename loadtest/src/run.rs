//! One load test from start to report: the server (started or external), the bots' runtime and ECS world, the
//! steps (one for a fixed count, several for `--ramp`), the once-a-second samples, the progress bar, and at the
//! end the visibility check, the table, the JSON and the plot.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bevy_ecs::entity::Entity;
use indicatif::{ProgressBar, ProgressStyle};
use locus_client::Trust;

use crate::bots::{ArenaRes, Bot, Brain, Brains, Tally};
use crate::child::{self, ChildServer, process_cpu_seconds};
use crate::histogram::Summary;
use crate::net::{self, Command, NetContext, Stats, View};
use crate::report::{
    self, Interval, Machine, Mark, Report, Sample, ServerInfo, Sla, StepReport, Totals,
};
use crate::scenario::Arena;
use crate::{RunArgs, Scenario, wire};

/// The brains' rate.
const BRAIN_PERIOD: Duration = Duration::from_millis(50);

/// Pairs of bots closer than this at the end must see each other (they enter each other's view at 64 m and
/// leave at 72 m).
const VISIBILITY_CHECK_M: f32 = 56.0;

/// Everything a run holds while it runs.
struct Runner<'a> {
    args: &'a RunArgs,
    rt: tokio::runtime::Runtime,
    ctx: Arc<NetContext>,
    stats: Arc<Stats>,
    brains: Brains,
    bots: Vec<(Entity, net::SharedView)>,
    endpoints: Vec<quinn::Endpoint>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    child: Option<ChildServer>,
    start: Instant,
    next_brain: Instant,
    next_sample: Instant,
    last_mark: Mark,
    samples: Vec<Sample>,
    progress: ProgressBar,
    phase: String,
    target: u32,
    npcs: u64,
    /// The server's certificate fingerprint (for the hostile clients).
    fingerprint: [u8; 32],
    /// The hostile clients, started once the first step's bots are in.
    hostile: Option<crate::hostile::Hostile>,
}

impl Runner<'_> {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn mark(&self) -> Mark {
        let s = &self.stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (rx_bytes, tx_bytes, rx_packets, tx_packets) = s.udp_totals();
        Mark {
            t: self.now(),
            connected: get(&s.connected),
            latency: s.latency.snapshot(),
            row_latency: s.row_latency.snapshot(),
            rtt: s.rtt.snapshot(),
            rx_bytes,
            tx_bytes,
            rx_packets,
            tx_packets,
            errors: get(&s.errors),
            disconnects: get(&s.disconnects) + get(&s.connect_failures),
            calls: get(&s.calls),
            refused: std::array::from_fn(|i| get(&s.refused[i])),
            other_updates: get(&s.other_updates),
            datagrams: get(&s.datagrams),
            malformed_datagrams: get(&s.malformed_datagrams),
            places_dropped: get(&s.places_dropped),
            tables: s
                .table_names
                .lock()
                .map(|names| {
                    names
                        .iter()
                        .filter(|(id, _)| (*id as usize) < net::MAX_TABLES)
                        .map(|(id, name)| {
                            let i = *id as usize;
                            (name.clone(), get(&s.table_rows[i]), get(&s.table_bytes[i]))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            server: self.child.as_ref().and_then(ChildServer::metrics),
            bot_cpu_s: process_cpu_seconds(std::process::id()),
        }
    }

    /// One turn of the main loop: run the brains, take a sample when one is due, then sleep until the next turn.
    fn pump(&mut self) {
        let now = self.now();
        self.brains.step(now);
        let now_i = Instant::now();
        if now_i >= self.next_sample {
            // After a stall (the main loop waits for NPCs to spawn), start counting seconds again from now.
            self.next_sample = (self.next_sample + Duration::from_secs(1)).max(now_i);
            let m = self.mark();
            let sample = report::interval(&self.last_mark, &m, f64::from(self.args.tick_rate));
            self.progress.set_position(m.t as u64);
            self.progress
                .set_message(progress_message(&self.phase, self.target, &sample));
            self.samples.push(sample);
            self.last_mark = m;
        }
        self.next_brain += BRAIN_PERIOD;
        let now = Instant::now();
        if self.next_brain > now {
            std::thread::sleep(self.next_brain - now);
        } else if now - self.next_brain > Duration::from_secs(1) {
            // Far behind (a stall): do not run the brains back to back to catch up.
            self.next_brain = now;
        }
    }

    fn spawn_bot(&mut self) -> anyhow::Result<()> {
        let index = u32::try_from(self.bots.len())?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let view: net::SharedView = Arc::new(Mutex::new(View::default()));
        let now = self.now();
        let entity = self
            .brains
            .world
            .spawn((
                Bot {
                    commands: tx,
                    view: view.clone(),
                },
                Brain::new(self.args.seed, index, now),
            ))
            .id();
        let e = (index / self.args.bots_per_endpoint.max(1)) as usize;
        while self.endpoints.len() <= e {
            let _guard = self.rt.enter();
            self.endpoints
                .push(wire::endpoint(self.ctx.addr).context("a bot endpoint")?);
        }
        let endpoint = self.endpoints[e].clone();
        self.tasks.push(self.rt.spawn(net::run_bot(
            self.ctx.clone(),
            endpoint,
            entity,
            view.clone(),
            rx,
        )));
        self.bots.push((entity, view));
        Ok(())
    }

    /// Bring the bot count to `target` at the connect rate, then wait until every bot is placed or gone (or a
    /// deadline passes). Returns the seconds it took.
    fn connect_to(&mut self, target: u32) -> anyhow::Result<f64> {
        let started = Instant::now();
        let from = self.bots.len();
        let rate = self.args.connect_rate.max(1.0);
        let deadline = started + Duration::from_secs_f64(f64::from(target) / rate + 60.0);
        self.phase = "connecting".into();
        loop {
            let due = from + (started.elapsed().as_secs_f64() * rate) as usize;
            while self.bots.len() < (target as usize).min(due.max(from + 1)) {
                self.spawn_bot()?;
            }
            self.pump();
            let (connecting, placing, _, _) = self.brains.phases();
            if self.bots.len() >= target as usize && connecting + placing == 0 {
                break;
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    connecting,
                    placing,
                    "not every bot got in before the deadline"
                );
                break;
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// Keep running for `d`.
    fn hold(&mut self, d: Duration, phase: &str) {
        self.phase = phase.into();
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.pump();
        }
    }

    /// Spawn the NPCs for `new_players` more players in the arena (started server only).
    fn spawn_npcs(&mut self, new_players: u32, arena: &Arena) -> anyhow::Result<()> {
        let count = new_players * self.args.npcs_per_player;
        if count == 0 {
            return Ok(());
        }
        if let Some(child) = self.child.as_mut() {
            child.spawn_npcs(count, arena)?;
            self.npcs += u64::from(count);
        }
        Ok(())
    }

    /// One step: `players` bots in, settled, measured.
    fn step(&mut self, players: u32, measure: Duration) -> anyhow::Result<StepReport> {
        self.target = players;
        let arena = match self.args.arena {
            Some(side) => Arena::centred(side),
            None => Arena::standard(players),
        };
        self.brains.world.resource_mut::<ArenaRes>().0 = arena;
        let before = self.mark();
        let added = players.saturating_sub(u32::try_from(self.bots.len())?);
        self.phase = "spawning NPCs".into();
        self.spawn_npcs(added, &arena)?;
        let connect_s = self.connect_to(players)?;
        // Hostile clients come to a running world: after the bots are in, before the warm-up.
        if self.args.hostile.any() && self.hostile.is_none() {
            self.hostile = Some(crate::hostile::Hostile::start(
                &self.args.hostile,
                &self.rt,
                self.ctx.addr,
                self.fingerprint,
                &self.args.tables,
                self.child.as_ref().map(ChildServer::pid),
            )?);
        }
        self.hold(self.args.warmup, "warm-up");
        // The server's tick percentiles cover the measured interval only (not the joining and warm-up before it).
        if let Some(child) = self.child.as_mut() {
            child.start_window()?;
        }
        let a = self.mark();
        self.hold(measure, "measuring");
        let b = self.mark();
        let measured = report::interval(&a, &b, f64::from(self.args.tick_rate));
        let step_disconnects = b.disconnects - before.disconnects;
        let verdict = report::evaluate(&measured, step_disconnects, &Sla::default());
        Ok(StepReport {
            players,
            arena_side_m: arena.side(),
            connect_s,
            measured,
            step_disconnects,
            verdict,
        })
    }

    /// The end-of-run check: pairs of bots close together must see each other.
    fn visibility(&self) -> report::Visibility {
        let known: Vec<(Option<u64>, Option<game_module::Vec2>, u64)> = self
            .bots
            .iter()
            .map(|(_, v)| {
                let v = net::lock(v);
                let pos = if v.connected { v.pos } else { None };
                (v.me, pos, v.other_updates + v.other_inserts)
            })
            .collect();
        report::check_visibility(
            &known,
            |i, id| net::lock(&self.bots[i].1).players.contains_key(&id),
            VISIBILITY_CHECK_M,
        )
    }

    /// Close every bot's session and wait (briefly) for the tasks.
    fn close(&mut self) {
        for (entity, _) in &self.bots {
            if let Some(bot) = self.brains.world.get::<Bot>(*entity) {
                let _ = bot.commands.send(Command::Close);
            }
        }
        let tasks = std::mem::take(&mut self.tasks);
        let endpoints = self.endpoints.clone();
        self.rt.block_on(async {
            let all = async {
                for t in tasks {
                    let _ = t.await;
                }
                for e in endpoints {
                    e.wait_idle().await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
        });
    }
}

fn progress_message(phase: &str, target: u32, s: &Interval) -> String {
    let tick = s
        .server
        .map_or_else(|| "n/a".into(), |t| format!("{:.1} ms", t.p99_ms));
    format!(
        "{phase}: {}/{target} players | tick p99 {tick} | update p99 {:.0} ms | {:.0} B/s down | err {} disc {}",
        s.players, s.update_latency.p99_ms, s.down_bytes_per_s, s.errors, s.disconnects
    )
}

/// The player counts of the run's steps.
fn plan(args: &RunArgs) -> Vec<u32> {
    if args.ramp {
        let start = args.ramp_start.max(1);
        let step = args.ramp_step.max(1);
        (0..)
            .map(|k| start.saturating_add(k * step))
            .take_while(|&n| n <= args.ramp_max.max(start))
            .collect()
    } else {
        vec![args.players]
    }
}

/// Run the load test `args` describes, print the table, write the JSON and the plot.
pub(crate) fn run(args: &RunArgs) -> anyhow::Result<()> {
    // `--netem` by namespace: the run happens in a re-run of this command inside one; this process only waits.
    if let Some(status) = crate::netem::enter_namespace(args)? {
        std::process::exit(status.code().unwrap_or(1));
    }
    let (child, addr, fingerprint, server_info) = match args.server {
        Some(addr) => {
            let fp = match (&args.fingerprint, &args.cert) {
                (Some(f), _) => match Trust::parse_fingerprint(f)? {
                    Trust::Fingerprint(fp) => fp,
                    Trust::CertFile(_) => unreachable!("parse_fingerprint gives a fingerprint"),
                },
                (None, Some(path)) => wire::cert_file_fingerprint(path)?,
                (None, None) => bail!("--server needs --fingerprint HEX or --cert PATH"),
            };
            let info = ServerInfo {
                kind: "external",
                addr: addr.to_string(),
                metrics_available: false,
                note: "an external server's tick time and CPU are not read by the load tester (watch them on \
                       `locus serve --metrics ADDR`); NPCs are not spawned"
                    .into(),
            };
            (None, addr, fp, info)
        }
        None => {
            eprintln_flush("starting the server (the first run builds the demo module to wasm)…");
            let child = ChildServer::start(
                args.module.as_deref(),
                &child::Options {
                    tick_rate: args.tick_rate,
                    byte_budget: args.byte_budget,
                    every_move: args.every_move,
                    datagrams: args.datagrams,
                },
            )?;
            let info = ServerInfo {
                kind: "child",
                addr: child.addr.to_string(),
                metrics_available: true,
                note: "`loadtest serve-child` process: Server::metrics() once a second; CPU from /proc/<pid>/stat \
                       (utime+stime, Linux)"
                    .into(),
            };
            let (addr, fp) = (child.addr, child.fingerprint);
            (Some(child), addr, fp, info)
        }
    };
    let relay = match args.netem {
        Some(netem) if args.netem_via == crate::netem::NetemVia::Relay => Some(
            crate::netem::Relay::start(addr, netem, args.seed)
                .context("starting the --netem relay")?,
        ),
        _ => None,
    };
    let addr = relay.as_ref().map_or(addr, crate::netem::Relay::addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .thread_name("loadtest-bots")
        .enable_all()
        .build()?;
    let stats = Arc::new(Stats::default());
    let (events_tx, events_rx) = std::sync::mpsc::channel();
    let ctx = Arc::new(NetContext {
        addr,
        config: wire::client_config(fingerprint)?,
        tables: args.tables.clone(),
        protocol: args.protocol,
        stats: stats.clone(),
        events: events_tx,
    });
    let steps = plan(args);
    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        let estimate: f64 = steps.len() as f64
            * (args.warmup.as_secs_f64()
                + if args.ramp {
                    args.ramp_measure.as_secs_f64()
                } else {
                    args.duration.as_secs_f64()
                })
            + f64::from(*steps.last().unwrap_or(&0)) / args.connect_rate.max(1.0);
        let bar = ProgressBar::new(estimate as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/~{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    };
    let start = Instant::now();
    let arena = Arena::standard(steps.first().copied().unwrap_or(1));
    let mut runner = Runner {
        args,
        rt,
        ctx,
        stats: stats.clone(),
        brains: Brains::new(arena, args.scenario == Scenario::Standard, events_rx),
        bots: Vec::new(),
        endpoints: Vec::new(),
        tasks: Vec::new(),
        child,
        start,
        next_brain: start,
        next_sample: start + Duration::from_secs(1),
        last_mark: Mark::default(),
        samples: Vec::new(),
        progress,
        phase: String::new(),
        target: 0,
        npcs: 0,
        fingerprint,
        hostile: None,
    };
    runner.last_mark = runner.mark();
    let mut reports = Vec::new();
    for players in steps {
        let measure = if args.ramp {
            args.ramp_measure
        } else {
            args.duration
        };
        let step = runner.step(players, measure)?;
        let held = step.verdict.held;
        reports.push(step);
        if args.ramp && !held {
            break;
        }
    }
    runner.progress.finish_and_clear();
    let hostile = runner.hostile.take().map(|h| h.finish(&runner.rt));
    let visibility = runner.visibility();
    let tally = runner.brains.world.resource::<Tally>();
    let placed = tally.placed;
    runner.close();
    if let Some(child) = runner.child.take() {
        child.stop();
    }
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let end = runner.mark();
    let totals = Totals {
        sessions: get(&stats.sessions),
        errors: get(&stats.errors),
        disconnects: get(&stats.disconnects),
        connect_failures: get(&stats.connect_failures),
        calls: get(&stats.calls),
        datagrams: get(&stats.datagrams),
        malformed_datagrams: get(&stats.malformed_datagrams),
        places_dropped: get(&stats.places_dropped),
        refused: net::CallKind::ALL
            .iter()
            .zip(&end.refused)
            .map(|(k, n)| (k.name(), *n))
            .collect(),
        placed,
        npcs_spawned: runner.npcs,
        reasons: stats.reasons.lock().map(|r| r.clone()).unwrap_or_default(),
    };
    let report = Report {
        mode: if args.ramp { "ramp" } else { "run" },
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        seed: args.seed,
        protocol: args.protocol,
        sla: Sla::default(),
        server: server_info,
        machine: Machine::this(),
        max_players_held: if args.ramp {
            report::largest_held(&reports)
        } else {
            None
        },
        steps: reports,
        totals,
        visibility,
        samples: std::mem::take(&mut runner.samples),
        hostile,
    };
    let mut out = std::io::stdout().lock();
    report::print_table(&report, &mut out)?;
    if let Some(netem) = args.netem {
        writeln!(out, "{}", netem.describe(args.netem_via))?;
    }
    if let Some(h) = &report.hostile {
        for line in h.lines() {
            writeln!(out, "{line}")?;
        }
    }
    if let Some(relay) = relay {
        writeln!(out, "{}", relay.describe())?;
    }
    if let Some(path) = &args.json {
        create_parent(path)?;
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "report: {}", path.display())?;
    }
    if let Some(path) = &args.plot {
        create_parent(path)?;
        crate::plot::draw(&report, path)?;
        writeln!(out, "plot: {}", path.display())?;
    }
    Ok(())
}

fn create_parent(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

fn eprintln_flush(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
    let _ = e.flush();
}

/// A summary's p99, or `None` without samples (for the plot).
pub(crate) fn p99(s: &Summary) -> Option<f64> {
    (s.count > 0).then_some(s.p99_ms)
}

/// A summary's p50, or `None` without samples.
pub(crate) fn p50(s: &Summary) -> Option<f64> {
    (s.count > 0).then_some(s.p50_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn ramp_steps_grow_to_the_maximum() {
        let cli = crate::Cli::try_parse_from([
            "loadtest",
            "--ramp",
            "--ramp-start",
            "500",
            "--ramp-step",
            "250",
            "--ramp-max",
            "1400",
        ])
        .unwrap();
        assert_eq!(plan(&cli.run), vec![500, 750, 1000, 1250]);
        let cli = crate::Cli::try_parse_from(["loadtest", "--players", "42"]).unwrap();
        assert_eq!(plan(&cli.run), vec![42]);
    }
}

//! `loadtest regions`: a world split into four regions — four `serve-child` processes, each a region of a 2 × 2
//! layout meeting at a corner of the demo world, and a `nats-server` with JetStream — and bots (the SDK's `Client`,
//! which follows redirects) around that corner. Every `--move-every` each bot teleports: every other time into
//! another region (a handoff), otherwise within its own.
//!
//! Measured, on one clock (every bot is in this process):
//! - **handoff**: from sending the teleport that crosses a border to the client settled in the new region (its
//!   avatar there, the redirect followed and the new view in), and from the call's answer to the `Redirect`;
//! - **visibility**: from a bot's teleport being acknowledged to another bot seeing the bot at its new place, for
//!   observers in the same region (the single-process path) and in another region (across the border: the border
//!   feed, NATS, the neighbour's tick);
//! - the handoffs completed per second;
//! - per region: tick time, CPU, and its servers' view of the JetStream leg (publish to take) and border messages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use game_module::Vec2;
use locus_client::{CallOutcome, Client, ClientConfig, Event, Filter, RequestId, Trust};
use locus_server::nats_server::NatsServer;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

use crate::child::{ChildMetrics, ChildServer, Options};

/// The options of `loadtest regions`.
#[derive(Debug, clap::Args)]
pub(crate) struct RegionsArgs {
    /// Bots.
    #[arg(long, default_value_t = 120)]
    players: usize,
    /// How long to measure, once every bot is in.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// How often each bot teleports; every other teleport crosses into another region.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    move_every: Duration,
    /// How far from the corner where the regions meet the bots stand, in metres (within the 80 m border band,
    /// so that bots see each other across the borders).
    #[arg(long, default_value_t = 50.0)]
    spread: f32,
    /// Seed of the bots' choices.
    #[arg(long, default_value_t = 0x10c05)]
    seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The baseline: the same bots and moves against one server holding the whole world (no regions, no NATS),
    /// on the same machine.
    #[arg(long)]
    whole: bool,
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Ms {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

impl Ms {
    fn of(v: &mut [Duration]) -> Ms {
        if v.is_empty() {
            return Ms::default();
        }
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
        Ms {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
            samples: v.len(),
        }
    }
}

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            self.p50, self.p99, self.max, self.samples
        )
    }
}

/// One region's figures over the measurement.
#[derive(Debug, Serialize)]
struct RegionReport {
    name: String,
    sessions: u64,
    tick_p50_ms: f64,
    tick_p99_ms: f64,
    cpu_percent: f64,
    border_sent: u64,
    border_received: u64,
    resyncs_asked: u64,
    copies_held: u64,
    messages_sent: u64,
    messages_received: u64,
    /// Another region publishing a message to this one taking it (JetStream), ms.
    jetstream_p50_ms: f64,
    jetstream_p99_ms: f64,
    /// A neighbour making a border message to this region queueing it (core NATS), ms.
    border_p50_ms: f64,
    border_p99_ms: f64,
}

/// The report.
#[derive(Debug, Serialize)]
struct Report {
    players: usize,
    duration_s: f64,
    move_every_s: f64,
    /// One server for the whole world (the baseline), or four regions.
    whole: bool,
    handoffs: usize,
    handoffs_per_s: f64,
    failed_crossings: usize,
    /// After the run, players of the bots missing from every region, and held by more than one.
    players_missing: usize,
    players_duplicated: usize,
    /// Sending the crossing teleport to settled in the new region.
    handoff: Ms,
    /// The call's answer (the source's tick durable) to the `Redirect`.
    handoff_ack_to_redirect: Ms,
    /// A teleport acknowledged to an observer in the same region seeing it.
    visible_same_region: Ms,
    /// A teleport acknowledged to an observer in another region seeing it (across the border).
    visible_across_border: Ms,
    regions: Vec<RegionReport>,
}

/// The quadrants, in layout order: south-west, south-east, north-west, north-east.
const QUADRANTS: [Vec2; 4] = [
    Vec2::new(-1.0, -1.0),
    Vec2::new(1.0, -1.0),
    Vec2::new(-1.0, 1.0),
    Vec2::new(1.0, 1.0),
];

/// A corner of the demo world with walkable ground in all four quadrants within `spread` of it: many points on a
/// 4 m grid per quadrant, each at least 3 m from the borders.
fn corner(spread: f32) -> anyhow::Result<(Vec2, Vec<Vec<Vec2>>)> {
    use game_module::terrain::is_walkable;
    for ring in 0..60 {
        for k in 0..(8 * ring.max(1)) {
            let angle = k as f32 / (8 * ring.max(1)) as f32 * std::f32::consts::TAU;
            let c = (Vec2::splat(2048.0) + Vec2::from_angle(angle) * (ring as f32 * 64.0)).round();
            let points: Vec<Vec<Vec2>> = QUADRANTS
                .iter()
                .map(|q| {
                    let mut v = Vec::new();
                    let mut d = 3.0;
                    while d < spread {
                        let mut e = 3.0;
                        while e < spread {
                            let p = c + *q * Vec2::new(d, e);
                            if is_walkable(p) {
                                v.push(p);
                            }
                            e += 4.0;
                        }
                        d += 4.0;
                    }
                    v
                })
                .collect();
            let full = ((spread - 3.0) / 4.0).ceil().powi(2) as usize;
            if points.iter().all(|v| v.len() * 10 >= full * 7) {
                return Ok((c, points));
            }
        }
    }
    bail!("no corner of the demo world is walkable enough around it")
}

struct Pending {
    request: RequestId,
    target: Vec2,
    to: usize,
    sent: Instant,
    crossing: bool,
}

struct Crossing {
    to: usize,
    target: Vec2,
    sent: Instant,
    acked: Instant,
    redirected: Option<Instant>,
}

struct Bot {
    /// Its number: its player is named `b<id>`.
    id: usize,
    client: Client,
    region: usize,
    pending: Option<Pending>,
    crossing: Option<Crossing>,
    next_move: Instant,
    crossing_next: bool,
    /// Since when the bot has been settled in its region (its view is that region's, or a copy of its
    /// neighbours'): sightings of moves acknowledged before then are not counted.
    settled_at: Instant,
}

/// The region whose server `addr` is.
fn region_of(addrs: &[std::net::SocketAddr], addr: std::net::SocketAddr) -> Option<usize> {
    addrs.iter().position(|a| *a == addr)
}

#[expect(clippy::print_stdout, reason = "the report")]
pub(crate) fn regions(args: &RegionsArgs) -> anyhow::Result<()> {
    if !args.whole && locus_server::nats_server::find().is_none() {
        bail!(
            "{}",
            locus_server::nats_server::NatsStartError::NotInstalled
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("locus-regions-")
        .tempdir()
        .context("a temporary directory")?;
    let module = scratch.path().join("demo.wasm");
    std::fs::write(&module, crate::child::build_demo_module()?)?;
    let nats = NatsServer::start(&scratch.path().join("nats"), 0)?;
    let (c, points) = corner(args.spread)?;
    let size = game_module::WORLD_SIZE;
    let addrs: Vec<std::net::SocketAddr> = (0..4)
        .map(|_| {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .context("a free port")
        })
        .collect::<anyhow::Result<_>>()?;
    let names = ["sw", "se", "nw", "ne"];
    let rects = [
        [0.0, 0.0, c.x, c.y],
        [c.x, 0.0, size, c.y],
        [0.0, c.y, c.x, size],
        [c.x, c.y, size, size],
    ];
    let mut toml = format!(
        "world = \"loadtest\"\nsize = {size}\nborder = 80.0\nnats = \"{}\"\n",
        nats.url()
    );
    for i in 0..4 {
        let r = rects[i];
        toml.push_str(&format!(
            "[[region]]\nname = \"{}\"\nrect = [{}, {}, {}, {}]\nlisten = \"{}\"\n",
            names[i], r[0], r[1], r[2], r[3], addrs[i]
        ));
    }
    let config = scratch.path().join("world.toml");
    std::fs::write(&config, toml)?;
    let options = Options {
        tick_rate: 20,
        byte_budget: None,
        every_move: false,
        datagrams: locus_server::PositionDatagrams::OnLoss,
    };
    let mut servers = Vec::new();
    if args.whole {
        let dir = scratch.path().join("whole");
        std::fs::create_dir_all(&dir)?;
        servers.push(ChildServer::start_in(&dir, Some(&module), &options)?);
        println!(
            "one server for the whole world (the baseline) around ({}, {}); {} bots",
            c.x, c.y, args.players
        );
    } else {
        for i in 0..4 {
            let dir = scratch.path().join(names[i]);
            std::fs::create_dir_all(&dir)?;
            servers.push(ChildServer::start_region(
                &dir,
                Some(&module),
                &options,
                names[i],
                &config,
                addrs[i],
            )?);
        }
        println!(
            "4 regions meeting at ({}, {}), NATS at {}; {} bots",
            c.x,
            c.y,
            nats.url(),
            args.players
        );
    }
    let addrs: Vec<std::net::SocketAddr> = servers.iter().map(|s| s.addr).collect();
    // The region (quadrant) whose server a client talks to: in the baseline, the one server holds every quadrant,
    // and a client counts as in the quadrant its player stands in.
    let whole = args.whole;
    let region_of = move |addrs: &[std::net::SocketAddr], addr, quadrant: Option<usize>| {
        if whole {
            quadrant
        } else {
            region_of(addrs, addr)
        }
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    // Connect every bot to the south-west region; each follows its avatar to wherever it spawned, then goes home.
    let mut bots = Vec::with_capacity(args.players);
    for i in 0..args.players {
        let home = i % 4;
        let s = &servers[0];
        let mut client =
            Client::connect(ClientConfig::new(s.addr, Trust::Fingerprint(s.fingerprint)))
                .with_context(|| format!("bot {i} connecting"))?;
        client.subscribe("player", Filter::All)?;
        let target = points[home][rng.random_range(0..points[home].len())];
        bots.push((i, home, target, client));
    }
    let mut ready: Vec<Bot> = Vec::with_capacity(args.players);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut waiting: Vec<(usize, usize, Vec2, Client, Option<RequestId>)> = bots
        .into_iter()
        .map(|(i, h, t, c)| (i, h, t, c, None))
        .collect();
    while !waiting.is_empty() {
        if Instant::now() > deadline {
            bail!("{} bots did not settle in their regions", waiting.len());
        }
        let mut still = Vec::new();
        for (i, home, target, mut client, mut request) in waiting {
            client.poll();
            let me = client.identity();
            let mine = client
                .cache()
                .rows::<game_module::Player>("player")
                .ok()
                .and_then(|ps| ps.into_iter().find(|p| p.identity == me));
            let settled = client.is_connected() && !client.cache().is_redirecting();
            let here = region_of(
                &addrs,
                client.config().addr,
                mine.as_ref().and_then(|p| region_at(&rects, p.pos)),
            );
            match (settled, mine, request) {
                (true, Some(p), _) if p.pos.distance(target) < 0.01 && here == Some(home) => {
                    ready.push(Bot {
                        id: i,
                        client,
                        region: home,
                        pending: None,
                        crossing: None,
                        next_move: Instant::now()
                            + args.move_every.mul_f64(rng.random_range(0.0..1.0)),
                        crossing_next: i % 2 == 0,
                        settled_at: Instant::now(),
                    });
                    continue;
                }
                (true, Some(p), None)
                    if here.is_some_and(|r| Some(r) == region_at(&rects, p.pos)) =>
                {
                    let name = format!("b{i:04}");
                    let _ = client.call_raw("set_name", &rmp_serde::to_vec(&(name,))?);
                    request = client
                        .call_raw("teleport", &rmp_serde::to_vec(&(target.x, target.y))?)
                        .ok();
                }
                _ => {}
            }
            still.push((i, home, target, client, request));
        }
        waiting = still;
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "every bot is in its region; measuring for {:?}",
        args.duration
    );
    // Every server's first metrics line (one a second).
    let wait = Instant::now();
    while servers.iter().any(|s| s.metrics().is_none()) && wait.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let start_metrics: Vec<Option<ChildMetrics>> =
        servers.iter().map(ChildServer::metrics).collect();
    let started = Instant::now();
    let mut handoff = Vec::new();
    let mut ack_to_redirect = Vec::new();
    let mut same = Vec::new();
    let mut across = Vec::new();
    let mut failed = 0usize;
    // Each bot's latest acknowledged teleport: where to, when, into which region, and whether it crossed.
    let mut latest: Vec<Option<(Vec2, Instant, usize, bool)>> = vec![None; ready.len()];
    let mut seen: HashMap<(usize, usize), Vec2> = HashMap::new();
    let by_id: HashMap<usize, usize> = ready.iter().enumerate().map(|(k, b)| (b.id, k)).collect();
    while started.elapsed() < args.duration {
        let now = Instant::now();
        for b in 0..ready.len() {
            let bot = &mut ready[b];
            for event in bot.client.poll() {
                match event {
                    Event::CallResult {
                        request, outcome, ..
                    } if bot.pending.as_ref().is_some_and(|p| p.request == request) => {
                        let p = bot.pending.take().expect("matched");
                        if outcome == CallOutcome::Ok {
                            latest[b] = Some((p.target, Instant::now(), p.to, p.crossing));
                            if p.crossing {
                                bot.crossing = Some(Crossing {
                                    to: p.to,
                                    target: p.target,
                                    sent: p.sent,
                                    acked: Instant::now(),
                                    redirected: None,
                                });
                            } else {
                                bot.next_move = Instant::now() + args.move_every;
                            }
                        } else {
                            failed += 1;
                            bot.next_move = Instant::now() + args.move_every;
                        }
                    }
                    Event::Redirected { .. } => {
                        if let Some(c) = &mut bot.crossing
                            && c.redirected.is_none()
                        {
                            c.redirected = Some(Instant::now());
                            ack_to_redirect.push(c.redirected.expect("set") - c.acked);
                        }
                    }
                    _ => {}
                }
            }
            // A crossing is done once the client is settled in the new region with its avatar there.
            if let Some(c) = &bot.crossing {
                let me = bot.client.identity();
                let arrived = (c.redirected.is_some() || args.whole)
                    && bot.client.is_connected()
                    && !bot.client.cache().is_redirecting()
                    && region_of(&addrs, bot.client.config().addr, Some(c.to)) == Some(c.to)
                    && bot
                        .client
                        .cache()
                        .rows::<game_module::Player>("player")
                        .is_ok_and(|ps| {
                            ps.iter()
                                .any(|p| p.identity == me && p.pos.distance(c.target) < 0.01)
                        });
                if arrived {
                    handoff.push(Instant::now() - c.sent);
                    bot.settled_at = Instant::now();
                    bot.region = c.to;
                    bot.crossing = None;
                    bot.next_move = Instant::now() + args.move_every;
                } else if now - c.sent > Duration::from_secs(10) {
                    failed += 1;
                    bot.crossing = None;
                    bot.next_move = Instant::now() + args.move_every;
                }
            }
            if bot.pending.is_none()
                && bot.crossing.is_none()
                && now >= bot.next_move
                && bot.client.is_connected()
                && !bot.client.cache().is_redirecting()
            {
                let to = if bot.crossing_next {
                    (bot.region + 1 + rng.random_range(0..3)) % 4
                } else {
                    bot.region
                };
                let target = points[to][rng.random_range(0..points[to].len())];
                if let Ok(request) = bot
                    .client
                    .call_raw("teleport", &rmp_serde::to_vec(&(target.x, target.y))?)
                {
                    bot.pending = Some(Pending {
                        request,
                        target,
                        to,
                        sent: now,
                        crossing: to != bot.region,
                    });
                    bot.crossing_next = !bot.crossing_next;
                }
            }
        }
        // Who sees whom where: the first time an observer holds a bot at its latest acknowledged place.
        for (o, observer) in ready.iter().enumerate() {
            if observer.crossing.is_some() || observer.client.cache().is_redirecting() {
                continue;
            }
            let Ok(rows) = observer
                .client
                .cache()
                .rows::<game_module::Player>("player")
            else {
                continue;
            };
            for p in rows {
                let Some(&s) = p
                    .name
                    .strip_prefix('b')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|id| by_id.get(&id))
                else {
                    continue;
                };
                if s == o {
                    continue;
                }
                let Some((target, acked, region, crossed)) = latest[s] else {
                    continue;
                };
                if p.pos.distance(target) > 0.01 || seen.get(&(o, s)) == Some(&target) {
                    continue;
                }
                seen.insert((o, s), target);
                if crossed || observer.settled_at > acked {
                    continue;
                }
                let latency = now.saturating_duration_since(acked);
                if observer.region == region {
                    same.push(latency);
                } else {
                    across.push(latency);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    let end_metrics: Vec<Option<ChildMetrics>> = servers.iter().map(ChildServer::metrics).collect();
    // Every bot's player exactly once in the world, once the last handoffs are through.
    let (mut missing, mut duplicated);
    let settle = Instant::now();
    loop {
        let mut held: HashMap<String, usize> = HashMap::new();
        for s in &mut servers {
            let json = s.command("query SELECT name FROM player", Duration::from_secs(10))?;
            let v: serde_json::Value = serde_json::from_str(&json)?;
            for r in v["rows"].as_array().into_iter().flatten() {
                if let Some(name) = r[0].as_str() {
                    *held.entry(name.to_owned()).or_default() += 1;
                }
            }
        }
        (missing, duplicated) = (0, 0);
        for b in &ready {
            match held.get(&format!("b{:04}", b.id)) {
                None => missing += 1,
                Some(1) => {}
                Some(_) => duplicated += 1,
            }
        }
        if missing + duplicated == 0 || settle.elapsed() > Duration::from_secs(15) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut regions = Vec::new();
    for i in 0..servers.len() {
        let (Some(a), Some(b)) = (start_metrics[i], end_metrics[i]) else {
            bail!("region {} sent no metrics", names[i]);
        };
        let r = b.region.unwrap_or_default();
        let cpu = match (a.cpu_s, b.cpu_s) {
            (Some(x), Some(y)) => (y - x) / elapsed.as_secs_f64() * 100.0,
            _ => f64::NAN,
        };
        regions.push(RegionReport {
            name: if args.whole {
                "whole".into()
            } else {
                names[i].into()
            },
            sessions: b.metrics.sessions,
            tick_p50_ms: b.metrics.tick_time.p50_us as f64 / 1e3,
            tick_p99_ms: b.metrics.tick_time.p99_us as f64 / 1e3,
            cpu_percent: cpu,
            border_sent: r.border_sent,
            border_received: r.border_received,
            resyncs_asked: r.resyncs_asked,
            copies_held: r.copies_held,
            messages_sent: r.messages_sent,
            messages_received: r.messages_received,
            jetstream_p50_ms: r.message_latency.p50_us as f64 / 1e3,
            jetstream_p99_ms: r.message_latency.p99_us as f64 / 1e3,
            border_p50_ms: r.border_latency.p50_us as f64 / 1e3,
            border_p99_ms: r.border_latency.p99_us as f64 / 1e3,
        });
    }
    let report = Report {
        whole: args.whole,
        players_missing: missing,
        players_duplicated: duplicated,
        players: ready.len(),
        duration_s: elapsed.as_secs_f64(),
        move_every_s: args.move_every.as_secs_f64(),
        handoffs: handoff.len(),
        handoffs_per_s: handoff.len() as f64 / elapsed.as_secs_f64(),
        failed_crossings: failed,
        handoff: Ms::of(&mut handoff),
        handoff_ack_to_redirect: Ms::of(&mut ack_to_redirect),
        visible_same_region: Ms::of(&mut same),
        visible_across_border: Ms::of(&mut across),
        regions,
    };
    println!(
        "handoffs: {} in {:.1} s ({:.1}/s), {} failed or timed out; players missing {}, held twice {}",
        report.handoffs,
        report.duration_s,
        report.handoffs_per_s,
        report.failed_crossings,
        report.players_missing,
        report.players_duplicated
    );
    println!("  send to settled in the new region: {}", report.handoff);
    println!(
        "  answer to redirect:               {}",
        report.handoff_ack_to_redirect
    );
    println!("visibility after an acknowledged teleport:");
    println!(
        "  same region (one process):        {}",
        report.visible_same_region
    );
    println!(
        "  across a border:                  {}",
        report.visible_across_border
    );
    for r in &report.regions {
        println!(
            "region {}: {} sessions, tick p50 {:.1} / p99 {:.1} ms, CPU {:.0}%, copies {}, border in {} (p50 {:.1} / p99 {:.1} ms), JetStream in {} (p50 {:.1} / p99 {:.1} ms), resyncs {}",
            r.name,
            r.sessions,
            r.tick_p50_ms,
            r.tick_p99_ms,
            r.cpu_percent,
            r.copies_held,
            r.border_received,
            r.border_p50_ms,
            r.border_p99_ms,
            r.messages_received,
            r.jetstream_p50_ms,
            r.jetstream_p99_ms,
            r.resyncs_asked
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    for s in servers {
        s.stop();
    }
    drop(nats);
    Ok(())
}

/// The quadrant (region index) holding `p`.
fn region_at(rects: &[[f32; 4]; 4], p: Vec2) -> Option<usize> {
    rects
        .iter()
        .position(|r| p.x >= r[0] && p.x < r[2] && p.y >= r[1] && p.y < r[3])
}

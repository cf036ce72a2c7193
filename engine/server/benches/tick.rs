//! Benchmark of a world's whole tick pipeline without a network: milliseconds per [`World::run_tick`], on the
//! calling thread alone and with a pool of 2 worker threads, beside how well the machine itself scales a trivially
//! parallel job from 1 to 2 threads.
//!
//! `server/tick`: the standard crowd of BENCHMARKS.md as the load tester (`loadtest/`) makes it from the demo
//! module, driven through a [`World`] over the real `game-module` wasm (wasmtime) with fake sessions in place of
//! QUIC connections. A timed tick is one whole `run_tick`: the tick's client reducer calls, the `tick` reducer and
//! the due scheduled and periodic ones, the log record, the interest stage and every session's frame encoding —
//! what the server's tick thread does between draining its inbox and handing the frames to the release thread.
//! The log's fsync and the network are not in it (`cargo bench -p locus-log`, `loadtest`).
//!
//! - **The world**: the demo world as `init` makes it (4096 × 4096 m with sea along the edges; 10,800 resource
//!   nodes, 3,800 creatures and 16,384 terrain chunks), plus 2 creatures per player spawned with
//!   `admin_spawn_creatures_in` in the *arena*: the square of side `4096 · sqrt(N / 10,000)` m centred on the
//!   world, at most the world — what `loadtest` does. At 10k the arena is the whole world (the standard density,
//!   but players and creatures stand on land only, so the land is denser than the nominal figure); the demo world
//!   cannot grow past 4096 m, so 50k players live at 5 × the standard density. The setup line prints the rows
//!   actually within 64 m of a player (sampled).
//! - **The sessions**: N, connected 1,000 per tick (untimed): each `Connect`s (`client_connected` makes its player
//!   and sets its area of interest, 64 m enter / 72 m leave), subscribes with `Filter::All` to the load tester's
//!   default tables (`player`, `creature`, `resource_node`, `ground_item`, `local_message`, `chunk`,
//!   `inventory_item`), and `teleport`s to a random walkable point of the arena.
//! - **The bots**: each session then behaves as `loadtest/src/bots.rs`'s bots, with the same choices, delays and
//!   argument encoding (`game_module::move_to::call` and friends, sent as [`Input::Call`]): a new waypoint (a
//!   random walkable point of the arena, `move_to`) on arrival within 2 m or after 10–20 s; `say` one of six lines
//!   every 10–40 s; every 20–60 s, half the time walk to the nearest resource node within 40 m and `gather` there
//!   (within 2.5 m; given up after 20 s), else chase the nearest creature within 40 m (`move_to` it once a second)
//!   and `attack` it once a second in reach, at most 3 hits (given up after 20 s or when it is gone). A bot's
//!   timers start at a random point of their period, so the calls come at their steady rate from the first tick
//!   (the load tester's bots get there by connecting over a minute). A bot reads its own position and the nodes
//!   and creatures near it from the database after the previous tick (a real bot reads them from the frames it
//!   was sent, which carry the same rows).
//! - **Settling**, untimed: [`SETTLE_TICKS`] ticks of that behaviour (the views fill their hysteresis band, the
//!   creatures near players wake up: a dormant creature decides every 5 to 7.5 s).
//! - **Timed**: `players_<N>_1_worker` (no pool: everything on the calling thread), then
//!   `players_<N>_2_workers` ([`World::set_pool`] with a 2-thread rayon pool: the interest stage's updates
//!   of changed rows and per-client work, and the frame encoding, on it), continuing on the same world. One iteration is one tick: the bots' calls
//!   made (untimed), `run_tick` (timed), its output dropped (untimed).
//!
//! Reported per N and worker count, over every tick criterion ran (its warm-up included): mean, p50, p99 and max
//! ms per tick against the goal (10,000 players in <= 20 ms per tick on the 2 cores of the dev machine); the
//! calls, row changes, rows and bytes sent per tick; where a tick's time goes ([`TickStats`]'s phase times); and
//! the 1 → 2 speedup of the whole tick and of its parallel phases.
//!
//! The control: SHA-256 of disjoint 128 KiB buffers, one after the other on one thread vs spread over a 2-thread
//! rayon pool (the same total work): the machine's own 1 → 2 speedup on a job with no serial part and no shared
//! data, to read the pipeline's speedup against. The second vCPU of the dev machine comes and goes (the ratio
//! swings between ~1x and ~2x from one second to the next, and the guest sees no steal time), so besides 20 rounds
//! of 64 buffers before and after the crowds, one round of 64 buffers (untimed) follows every timed tick, and each
//! variant reports the ratio over its own ticks.
//!
//! The reducer time budget is [`REDUCER_BUDGET`], not the server's default 100 ms: at 50,000 walking players the
//! demo world's `tick` reducer takes longer than that here, and the default would stop it (rolling the tick's
//! movement back).
//!
//! Run with `cargo bench -p locus-server --bench tick [-- FILTER]` (builds the demo module first). Every summary
//! line starts with `server/tick`; they are repeated at the end with a scaling table. Under
//! `cargo test --benches` (no `--bench` flag) it runs once with 300 players and the figures are not measurements.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark's report is printed on stdout"
)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion, SamplingMode};
use game_module::{self as gm, Vec2};
use locus_host::{Budget, CallContext, HostConfig, Runtime};
use locus_interest::InterestConfig;
use locus_module::ReducerCall;
use locus_protocol::{Filter, PROTOCOL_VERSION, Token};
use locus_server::World;
use locus_server::world::{Input, SessionId, TickOutput, TickStats};
use locus_store::{Database, StoreConfig, Table};
use locus_types::{Identity, Tick, Timestamp, Value};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

#[path = "../../bench_cli.rs"]
mod bench_cli;
use bench_cli::{filter_arg, wanted};

// ---------------------------------------------------------------------------------------------------------------
// The crowd (as loadtest/src/scenario.rs and run.rs make it)
// ---------------------------------------------------------------------------------------------------------------

/// Players at the standard density on the whole world.
const STANDARD_PLAYERS: usize = 10_000;
/// Creatures spawned per player (`loadtest --npcs-per-player`'s default).
const NPCS_PER_PLAYER: usize = 2;
/// The tables every bot subscribes to (`loadtest --tables`' default), all with `Filter::All`.
const TABLES: [&str; 7] = [
    "player",
    "creature",
    "resource_node",
    "ground_item",
    "local_message",
    "chunk",
    "inventory_item",
];
const TICK_RATE: u16 = 20;
const DT: f32 = 0.05;
const TICK_MICROS: u64 = 50_000;
/// The world time of tick 0.
const START: Timestamp = Timestamp(1_700_000_000_000_000);
const SEED: u64 = 0x10c0_5eed;
/// Sessions connecting per setup tick.
const CONNECTS_PER_TICK: usize = 1_000;
/// Creatures per `admin_spawn_creatures_in` call (well inside the reducer time budget).
const SPAWN_BATCH: usize = 1_000;
/// Untimed ticks of bot behaviour between the last connect and the timing.
const SETTLE_TICKS: u64 = 200;
/// Worker threads of the parallel variant.
const THREADS: usize = 2;
/// The reducer time budget: the server's default (100 ms) stops the demo world's `tick` reducer at about 50,000
/// walking players on the dev machine, which would roll the tick's movement back; the bench measures it instead.
const REDUCER_BUDGET: Duration = Duration::from_secs(10);
/// The goal of issue 18, for 10,000 players on the 2 cores of the dev machine.
const TARGET_MS: f64 = 20.0;

/// The square the bots live in (`loadtest`'s `Arena`).
#[derive(Clone, Copy, Debug)]
struct Arena {
    min: Vec2,
    max: Vec2,
}

impl Arena {
    /// The square that keeps `players` at the standard density, centred on the world, at most the world.
    fn standard(players: usize) -> Arena {
        let side = (gm::WORLD_SIZE * (players as f32 / STANDARD_PLAYERS as f32).sqrt())
            .clamp(1.0, gm::WORLD_SIZE);
        let c = Vec2::splat(gm::WORLD_SIZE / 2.0);
        Arena {
            min: c - Vec2::splat(side / 2.0),
            max: c + Vec2::splat(side / 2.0),
        }
    }

    fn side(&self) -> f32 {
        self.max.x - self.min.x
    }

    fn random_point(&self, rng: &mut ChaCha8Rng) -> Vec2 {
        Vec2::new(
            rng.random_range(self.min.x..=self.max.x),
            rng.random_range(self.min.y..=self.max.y),
        )
    }

    /// A bot's next waypoint: a random walkable point (any point, if 16 tries find none).
    fn waypoint(&self, rng: &mut ChaCha8Rng) -> Vec2 {
        (0..16)
            .find_map(|_| Some(self.random_point(rng)).filter(|&p| gm::terrain::is_walkable(p)))
            .unwrap_or_else(|| self.random_point(rng))
    }

    /// A walkable point to teleport to (a bot retries a refused teleport; here none is refused).
    fn land(&self, rng: &mut ChaCha8Rng) -> Vec2 {
        loop {
            let p = self.random_point(rng);
            if gm::terrain::is_walkable(p) {
                return p;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The bots (as loadtest/src/bots.rs)
// ---------------------------------------------------------------------------------------------------------------

/// A bot counts as arrived within this many metres of its waypoint.
const ARRIVED: f32 = 2.0;
/// How near a bot must be to gather or attack (the game allows 3 m).
const REACH: f32 = 2.5;
/// How far a bot looks for something to gather or fight.
const LOOK: f32 = 40.0;
/// Seconds before a bot gives up gathering or fighting.
const GIVE_UP: f64 = 20.0;
const CHAT_LINES: [&str; 6] = [
    "hello",
    "anyone seen iron around here?",
    "wolves to the north",
    "lfg trolls",
    "nice weather",
    "selling wood",
];

fn patience(rng: &mut ChaCha8Rng) -> f64 {
    rng.random_range(10.0..20.0)
}

fn chat_delay(rng: &mut ChaCha8Rng) -> f64 {
    rng.random_range(10.0..40.0)
}

fn action_delay(rng: &mut ChaCha8Rng) -> f64 {
    rng.random_range(20.0..60.0)
}

/// What a bot is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Goal {
    Wander,
    Gather {
        node: u64,
        pos: Vec2,
        since: f64,
    },
    Attack {
        creature: u64,
        since: f64,
        last_move: f64,
        hits: u32,
    },
}

/// A fake session and its brain.
struct Bot {
    session: SessionId,
    identity: Identity,
    /// Its player's id, once connected.
    player: u64,
    rng: ChaCha8Rng,
    goal: Goal,
    waypoint: Option<Vec2>,
    waypoint_since: f64,
    patience: f64,
    next_chat: f64,
    next_action: f64,
    next_request: u32,
}

/// What bots read of the world: the three tables they look at.
struct View<'a> {
    players: &'a Table,
    creatures: &'a Table,
    nodes: &'a Table,
}

impl View<'_> {
    fn of(world: &World) -> View<'_> {
        let db = world.db();
        let table = |name: &str| {
            db.table(db.table_id(name).expect("a demo table"))
                .expect("the table exists")
        };
        View {
            players: table("player"),
            creatures: table("creature"),
            nodes: table("resource_node"),
        }
    }
}

/// The position of row `id` of a spatial table with a `u64` key.
fn position(table: &Table, id: u64) -> Option<Vec2> {
    table.position(&Value::U64(id)).expect("a spatial table")
}

/// The nearest row of `table` to `from` within `range` metres: its key and position.
fn nearest(table: &Table, from: Vec2, range: f32) -> Option<(u64, Vec2)> {
    table
        .within_radius(from, range)
        .expect("a spatial table")
        .filter_map(|row| match table.primary_key_of(row) {
            Ok(Value::U64(id)) => position(table, id).map(|p| (id, p)),
            _ => None,
        })
        .min_by(|a, b| {
            a.1.distance_squared(from)
                .total_cmp(&b.1.distance_squared(from))
                .then(a.0.cmp(&b.0))
        })
}

impl Bot {
    fn new(session: SessionId, now: f64) -> Bot {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        rng.set_stream(u64::from(session));
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&(session + 1).to_le_bytes());
        bytes[31] = 0xb0;
        // The timers start at a random point of their period: the steady rate from the first tick.
        let patience = patience(&mut rng);
        let waypoint_since = now - rng.random_range(0.0..patience);
        let chat = chat_delay(&mut rng);
        let next_chat = now + rng.random_range(0.0..chat);
        let action = action_delay(&mut rng);
        let next_action = now + rng.random_range(0.0..action);
        Bot {
            session,
            identity: Identity(bytes),
            player: 0,
            rng,
            goal: Goal::Wander,
            waypoint: None,
            waypoint_since,
            patience,
            next_chat,
            next_action,
            next_request: 1,
        }
    }

    fn call(&mut self, call: ReducerCall, out: &mut Vec<Input>) {
        out.push(Input::Call {
            session: self.session,
            request: self.next_request,
            reducer: call.reducer.to_owned(),
            args: call.args,
        });
        self.next_request += 1;
    }

    /// The connect of a new session: `Hello` accepted, subscriptions, a teleport into the arena.
    fn connect(&mut self, arena: &Arena, out: &mut Vec<Input>) {
        out.push(Input::Connect {
            session: self.session,
            identity: self.identity,
            token: Token(self.identity.0),
            version: PROTOCOL_VERSION,
            datagrams: false,
            places: false,
        });
        for table in TABLES {
            out.push(Input::Subscribe {
                session: self.session,
                request: self.next_request,
                table: table.to_owned(),
                filter: Filter::All,
            });
            self.next_request += 1;
        }
        let p = arena.land(&mut self.rng);
        self.call(gm::teleport::call(p.x, p.y), out);
    }

    fn back_to_wandering(&mut self) {
        self.goal = Goal::Wander;
        self.waypoint = None;
    }

    /// The bot's systems for one tick at `now` (seconds): wander, chat, act.
    fn think(&mut self, now: f64, view: &View<'_>, arena: &Arena, out: &mut Vec<Input>) {
        let Some(pos) = position(view.players, self.player) else {
            return;
        };
        // wander
        let new_waypoint = match self.waypoint {
            None => true,
            Some(w) => pos.distance(w) <= ARRIVED || now - self.waypoint_since >= self.patience,
        };
        if self.goal == Goal::Wander && new_waypoint {
            let w = arena.waypoint(&mut self.rng);
            self.waypoint = Some(w);
            self.waypoint_since = now;
            self.patience = patience(&mut self.rng);
            self.call(gm::move_to::call(w.x, w.y), out);
        }
        // chat
        if now >= self.next_chat {
            self.next_chat = now + chat_delay(&mut self.rng);
            let line = CHAT_LINES[self.rng.random_range(0..CHAT_LINES.len())];
            self.call(gm::say::call(line.to_owned()), out);
        }
        // act
        match self.goal {
            Goal::Wander => {
                if now < self.next_action {
                    return;
                }
                self.next_action = now + action_delay(&mut self.rng);
                if self.rng.random_bool(0.5) {
                    if let Some((node, p)) = nearest(view.nodes, pos, LOOK) {
                        self.goal = Goal::Gather {
                            node,
                            pos: p,
                            since: now,
                        };
                        self.call(gm::move_to::call(p.x, p.y), out);
                    }
                } else if let Some((creature, _)) = nearest(view.creatures, pos, LOOK) {
                    self.goal = Goal::Attack {
                        creature,
                        since: now,
                        last_move: f64::NEG_INFINITY,
                        hits: 0,
                    };
                }
            }
            Goal::Gather {
                node,
                pos: p,
                since,
            } => {
                if pos.distance(p) <= REACH {
                    self.call(gm::gather::call(node), out);
                    self.back_to_wandering();
                } else if now - since > GIVE_UP {
                    self.back_to_wandering();
                }
            }
            Goal::Attack {
                creature,
                since,
                last_move,
                hits,
            } => {
                let Some(target) = position(view.creatures, creature) else {
                    self.back_to_wandering();
                    return;
                };
                if hits >= 3 || now - since > GIVE_UP {
                    self.back_to_wandering();
                } else if now - last_move >= 1.0 {
                    let hits = if pos.distance(target) <= REACH {
                        self.call(gm::attack::call(creature), out);
                        hits + 1
                    } else {
                        self.call(gm::move_to::call(target.x, target.y), out);
                        hits
                    };
                    self.goal = Goal::Attack {
                        creature,
                        since,
                        last_move: now,
                        hits,
                    };
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The world under test
// ---------------------------------------------------------------------------------------------------------------

/// A world, its bots and its clock.
struct Crowd {
    world: World,
    bots: Vec<Bot>,
    arena: Arena,
    /// The last tick run.
    tick: u64,
}

impl Crowd {
    /// Seconds of world time at tick `n`.
    fn seconds(n: u64) -> f64 {
        n as f64 * DT as f64
    }

    /// The bots' calls for the next tick (untimed work).
    fn inputs(&mut self) -> Vec<Input> {
        let now = Crowd::seconds(self.tick + 1);
        let view = View::of(&self.world);
        let mut out = Vec::new();
        for bot in &mut self.bots {
            bot.think(now, &view, &self.arena, &mut out);
        }
        out
    }

    /// Run the next tick with `inputs`: its output and how long `run_tick` took.
    fn run(&mut self, inputs: Vec<Input>) -> (Duration, TickOutput) {
        self.tick += 1;
        let now = Timestamp(START.0 + self.tick * TICK_MICROS);
        let started = Instant::now();
        let out = self.world.run_tick(Tick(self.tick), now, DT, inputs);
        (started.elapsed(), out)
    }

    /// An untimed tick of bot behaviour; panics if a server-run reducer failed.
    fn settle_tick(&mut self) {
        let inputs = self.inputs();
        let (_, out) = self.run(inputs);
        assert!(
            out.server_failures.is_empty(),
            "tick {}: server-run reducers failed: {:?}",
            self.tick,
            out.server_failures
        );
    }
}

/// What the setup made, for the report.
struct Setup {
    players: usize,
    creatures: usize,
    nodes: usize,
    chunks: usize,
    /// Average rows within 64 m of a player, per table (the player's own row not counted), over a sample.
    within: [f64; 4],
    /// Seconds: module and world, connects, settling.
    times: [f64; 3],
}

fn build(wasm: &[u8], players: usize, settle: u64) -> (Crowd, Setup) {
    let started = Instant::now();
    let arena = Arena::standard(players);
    let module = Runtime::new(HostConfig {
        budget: Budget::Time(REDUCER_BUDGET),
        ..HostConfig::default()
    })
    .expect("a wasm engine")
    .load(wasm)
    .expect("the demo module loads");
    let mut db = Database::new(StoreConfig::default());
    let mut instance = module
        .instantiate(&mut db)
        .expect("the demo module instantiates");
    // The new world's `init`, its generation (scheduled at once), then the crowd's creatures, as the server and
    // `loadtest` make them, before the world starts (its interest stage mirrors the rows then).
    let ctx = |n: u64| CallContext::server(Tick(0), START, SEED ^ n);
    instance.init(&mut db, &ctx(0)).expect("init");
    for run in instance.run_due(&mut db, START, &ctx(1)) {
        assert!(run.error.is_none(), "{}: {:?}", run.reducer, run.error);
    }
    let mut left = players * NPCS_PER_PLAYER;
    let mut batch = 2;
    while left > 0 {
        let n = left.min(SPAWN_BATCH);
        let call = gm::admin::admin_spawn_creatures_in::call(
            n as u32,
            arena.min.x,
            arena.min.y,
            arena.max.x,
            arena.max.y,
        );
        instance
            .call(&mut db, call.reducer, &call.args, &ctx(batch))
            .expect("admin_spawn_creatures_in");
        left -= n;
        batch += 1;
    }
    // Without the byte budget (on by default since issue 19), so the figures compare with issue 18's.
    let config = InterestConfig {
        byte_budget: None,
        ..InterestConfig::default()
    };
    let world = World::new(db, instance, config, TICK_RATE, SEED);
    let built = started.elapsed().as_secs_f64();

    let mut crowd = Crowd {
        world,
        bots: Vec::new(),
        arena,
        tick: 0,
    };
    while crowd.bots.len() < players {
        let mut inputs = Vec::new();
        let first = crowd.bots.len();
        let n = (players - first).min(CONNECTS_PER_TICK);
        let now = Crowd::seconds(crowd.tick + 1);
        for session in first..first + n {
            let mut bot = Bot::new(session as SessionId, now);
            bot.connect(&arena, &mut inputs);
            crowd.bots.push(bot);
        }
        let (_, out) = crowd.run(inputs);
        assert_eq!(
            out.stats.failed_calls, 0,
            "tick {}: a teleport failed",
            crowd.tick
        );
        assert!(
            out.server_failures.is_empty(),
            "tick {}: server-run reducers failed: {:?}",
            crowd.tick,
            out.server_failures
        );
    }
    // Each bot's player, by identity.
    let view = View::of(&crowd.world);
    let columns = &view.players.def().columns;
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| c.name == name)
            .expect("a player column")
    };
    let (id_col, identity_col) = (col("id"), col("identity"));
    let mut ids: HashMap<Identity, u64> = HashMap::new();
    for row in view.players.iter() {
        let values = view.players.decode(row).expect("a valid row");
        if let (Value::U64(id), Value::Identity(who)) = (&values[id_col], &values[identity_col]) {
            ids.insert(*who, *id);
        }
    }
    for bot in &mut crowd.bots {
        bot.player = ids[&bot.identity];
    }
    let connected = started.elapsed().as_secs_f64();
    assert_eq!(crowd.world.session_count(), players);

    for _ in 0..settle {
        crowd.settle_tick();
    }
    let settled = started.elapsed().as_secs_f64();

    let view = View::of(&crowd.world);
    let db = crowd.world.db();
    let chunks = db
        .table(db.table_id("chunk").expect("a demo table"))
        .expect("the table exists");
    let every = players.div_ceil(256).max(1);
    let mut within = [0.0; 4];
    let mut sampled = 0;
    for bot in crowd.bots.iter().step_by(every) {
        let pos = position(view.players, bot.player).expect("every player exists");
        for (i, table) in [view.players, view.creatures, view.nodes, chunks]
            .into_iter()
            .enumerate()
        {
            let n = table
                .within_radius(pos, gm::VIEW_ENTER)
                .expect("spatial")
                .count();
            within[i] += n as f64 - if i == 0 { 1.0 } else { 0.0 };
        }
        sampled += 1;
    }
    for w in &mut within {
        *w /= f64::from(sampled);
    }
    let setup = Setup {
        players,
        creatures: view.creatures.len(),
        nodes: view.nodes.len(),
        chunks: chunks.len(),
        within,
        times: [built, connected - built, settled - connected],
    };
    (crowd, setup)
}

// ---------------------------------------------------------------------------------------------------------------
// Timing and tallies
// ---------------------------------------------------------------------------------------------------------------

/// The phases of [`TickStats`], in tick order.
const PHASES: [&str; 6] = [
    "client calls",
    "server reducers",
    "log record",
    "interest handle",
    "interest poll",
    "encode frames",
];

fn phases(s: &TickStats) -> [Duration; 6] {
    [
        s.inputs_time,
        s.server_reducers_time,
        s.record_time,
        s.interest_handle_time,
        s.interest_poll_time,
        s.encode_time,
    ]
}

/// The phases that use the pool when one is set (`handle_changesets_on` applies updates in runs of rows on it).
fn parallel_phase(i: usize) -> bool {
    i >= 3
}

/// Everything measured over the timed ticks of one variant.
#[derive(Default)]
struct Tally {
    times: Vec<Duration>,
    phases: [Duration; 6],
    calls: u64,
    failed: u64,
    row_changes: u64,
    rows_sent: u64,
    bytes_out: u64,
    server_failures: u64,
    /// Per reducer: calls, failed.
    by_reducer: BTreeMap<Arc<str>, (u64, u64)>,
    /// The control job, a round after each tick.
    control: Control,
}

impl Tally {
    fn add(&mut self, took: Duration, out: &TickOutput) {
        self.times.push(took);
        for (sum, t) in self.phases.iter_mut().zip(phases(&out.stats)) {
            *sum += t;
        }
        self.calls += u64::from(out.stats.calls);
        self.failed += u64::from(out.stats.failed_calls);
        self.row_changes += out.stats.row_changes;
        self.rows_sent += out.stats.rows_sent;
        self.bytes_out += out.stats.bytes_out;
        self.server_failures += out.server_failures.len() as u64;
        for (reducer, failed) in &out.calls {
            let e = self.by_reducer.entry(reducer.clone()).or_default();
            e.0 += 1;
            e.1 += u64::from(*failed);
        }
    }

    fn ran(&self) -> bool {
        !self.times.is_empty()
    }

    fn ticks(&self) -> f64 {
        self.times.len().max(1) as f64
    }

    fn per_tick(&self, n: u64) -> f64 {
        n as f64 / self.ticks()
    }

    fn mean_ms(&self) -> f64 {
        self.times.iter().sum::<Duration>().as_secs_f64() * 1e3 / self.ticks()
    }

    /// The `q` quantile (0..=1) of the tick times, in ms (nearest rank).
    fn quantile_ms(&self, q: f64) -> f64 {
        let mut t = self.times.clone();
        t.sort_unstable();
        let rank = ((q * t.len() as f64).ceil() as usize).clamp(1, t.len().max(1));
        t.get(rank - 1).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    fn phase_ms(&self, i: usize) -> f64 {
        self.phases[i].as_secs_f64() * 1e3 / self.ticks()
    }

    /// Ms per tick in the pool's phases (interest handle and poll, encoding) and in the rest.
    fn split_ms(&self) -> (f64, f64) {
        let parallel: f64 = (0..PHASES.len())
            .filter(|&i| parallel_phase(i))
            .map(|i| self.phase_ms(i))
            .sum();
        (self.mean_ms() - parallel, parallel)
    }
}

/// Timed ticks: each iteration the bots' calls (untimed), `run_tick` (timed), the output dropped (untimed).
/// Timed ticks: each iteration the bots' calls (untimed), `run_tick` (timed), its output dropped and a round of
/// the control job (untimed).
fn timed_ticks(b: &mut Bencher<'_>, crowd: &mut Crowd, job: &ControlJob, tally: &mut Tally) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let inputs = crowd.inputs();
            let (took, out) = crowd.run(inputs);
            total += took;
            tally.add(took, &out);
            drop(black_box(out));
            tally.control.add(job.round());
        }
        total
    });
}

// ---------------------------------------------------------------------------------------------------------------
// The control: the machine's own 1 -> 2 thread scaling
// ---------------------------------------------------------------------------------------------------------------

/// Buffers hashed by one round of the control (8 MiB in all: a round of a few ms, so that waking the pool's
/// threads does not dominate it, as it does a 1 MiB round here), and the rounds of the standalone control.
const CONTROL_BUFFERS: usize = 64;
const CONTROL_ROUNDS: usize = 20;
/// Buffers of a test run's control (unoptimized, SHA-256 runs at tens of MB/s).
const TEST_CONTROL_BUFFERS: usize = 8;
/// Bytes per control buffer.
const CONTROL_BUFFER: usize = 128 << 10;

/// The control job: SHA-256 of disjoint buffers, one after the other on one thread, then spread over the pool.
struct ControlJob {
    data: Vec<Vec<u8>>,
    pool: rayon::ThreadPool,
}

impl ControlJob {
    fn new(buffers: usize, size: usize) -> ControlJob {
        ControlJob {
            data: (0..buffers)
                .map(|i| (0..size).map(|j| (i * 31 + j) as u8).collect())
                .collect(),
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(THREADS)
                .build()
                .expect("a thread pool"),
        }
    }

    /// One round: the job's time on one thread and on the pool.
    fn round(&self) -> [Duration; 2] {
        let hash = |b: &Vec<u8>| Sha256::digest(b)[0];
        let t = Instant::now();
        black_box(self.data.iter().map(hash).fold(0u8, u8::wrapping_add));
        let one = t.elapsed();
        let t = Instant::now();
        black_box(self.pool.install(|| {
            self.data
                .par_iter()
                .map(hash)
                .reduce(|| 0, u8::wrapping_add)
        }));
        [one, t.elapsed()]
    }
}

/// What a control measured: the job and its total time on one thread and on the pool.
#[derive(Default)]
struct Control {
    buffers: usize,
    rounds: usize,
    one: Duration,
    two: Duration,
}

impl Control {
    fn add(&mut self, [one, two]: [Duration; 2]) {
        self.rounds += 1;
        self.one += one;
        self.two += two;
    }

    fn speedup(&self) -> f64 {
        self.one.as_secs_f64() / self.two.as_secs_f64().max(1e-9)
    }

    fn describe(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / self.rounds.max(1) as f64;
        format!(
            "SHA-256 of {} disjoint {} KiB buffers, mean of {} rounds: 1 thread {:.2} ms, {THREADS}-thread rayon pool \
             {:.2} ms = {:.2}x",
            self.buffers,
            CONTROL_BUFFER >> 10,
            self.rounds,
            ms(self.one),
            ms(self.two),
            self.speedup()
        )
    }
}

/// The standalone control: `rounds` rounds of a job of `buffers` buffers.
fn control(buffers: usize, rounds: usize) -> Control {
    let job = ControlJob::new(buffers, CONTROL_BUFFER);
    let mut c = Control {
        buffers,
        ..Control::default()
    };
    for _ in 0..rounds {
        c.add(job.round());
    }
    c
}

fn say_control(report: &mut Vec<String>, when: &str, c: &Control) {
    say(
        report,
        format!(
            "server/tick  control ({when}): {}: how the machine scales a trivially parallel job from 1 to \
             {THREADS} threads (ideal {THREADS}x; it varies from second to second here, so each variant below also \
             runs a round after every tick)",
            c.describe()
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------------------------

/// What one crowd size measured, for the summary.
struct Outcome {
    players: usize,
    one: Tally,
    two: Tally,
}

fn label(players: usize) -> String {
    if players.is_multiple_of(1000) {
        format!("{}k", players / 1000)
    } else {
        players.to_string()
    }
}

/// Print a summary line now and keep it for the final recap.
fn say(report: &mut Vec<String>, line: String) {
    println!("{line}");
    report.push(line);
}

fn verdict(players: usize, t: &Tally) -> String {
    if !t.ran() {
        "n/a".to_owned()
    } else if players != STANDARD_PLAYERS {
        format!("(the goal is for {STANDARD_PLAYERS} players)")
    } else if t.mean_ms() <= TARGET_MS && t.quantile_ms(0.99) <= TARGET_MS {
        "met (mean and p99)".to_owned()
    } else if t.mean_ms() <= TARGET_MS {
        format!(
            "mean met, p99 MISSED by {:.2}x",
            t.quantile_ms(0.99) / TARGET_MS
        )
    } else {
        format!("MISSED by {:.2}x (mean)", t.mean_ms() / TARGET_MS)
    }
}

fn variant_line(name: &str, workers: &str, players: usize, t: &Tally) -> String {
    if !t.ran() {
        return format!("server/tick  players_{name}_{workers}: (not run)");
    }
    let phases: Vec<String> = PHASES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{p} {:.2} ms ({:.0}%)",
                t.phase_ms(i),
                100.0 * t.phase_ms(i) / t.mean_ms()
            )
        })
        .collect();
    let other = t.mean_ms() - (0..PHASES.len()).map(|i| t.phase_ms(i)).sum::<f64>();
    let reducers: Vec<String> = t
        .by_reducer
        .iter()
        .map(|(r, (n, failed))| {
            format!(
                "{r} {:.1} ({:.1} refused)",
                t.per_tick(*n),
                t.per_tick(*failed)
            )
        })
        .collect();
    format!(
        "server/tick  players_{name}_{workers}: {players} players, {} ticks: mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms per tick; target <= {TARGET_MS} ms at {STANDARD_PLAYERS} players: {}; per tick: {:.1} client \
         calls ({}), {:.0} row changes, {:.0} rows sent ({:.1} per client), {:.0} KB of frames, {} server-run reducer \
         failures in all; where a tick goes: {}, between phases {other:.2} ms; the control after each of these ticks: \
         {}",
        t.times.len(),
        t.mean_ms(),
        t.quantile_ms(0.5),
        t.quantile_ms(0.99),
        t.quantile_ms(1.0),
        verdict(players, t),
        t.per_tick(t.calls),
        reducers.join(", "),
        t.per_tick(t.row_changes),
        t.per_tick(t.rows_sent),
        t.per_tick(t.rows_sent) / players as f64,
        t.per_tick(t.bytes_out) / 1e3,
        t.server_failures,
        phases.join(", "),
        t.control.describe(),
    )
}

fn speedup_line(name: &str, o: &Outcome) -> String {
    if !(o.one.ran() && o.two.ran()) {
        return format!("server/tick  players_{name} speedup: n/a (both variants must run)");
    }
    let (s1, p1) = o.one.split_ms();
    let (s2, p2) = o.two.split_ms();
    format!(
        "server/tick  players_{name} speedup 1 -> {THREADS} workers: mean {:.2} -> {:.2} ms = {:.2}x, p99 {:.2} -> {:.2} \
         ms = {:.2}x (the machine's control over the same ticks: {:.2}x); the pool's phases (interest handle + poll, encode frames) {p1:.2} -> \
         {p2:.2} ms = {:.2}x; the tick thread's own phases (client calls, server reducers, log record, between \
         phases) {s1:.2} -> {s2:.2} ms",
        o.one.mean_ms(),
        o.two.mean_ms(),
        o.one.mean_ms() / o.two.mean_ms(),
        o.one.quantile_ms(0.99),
        o.two.quantile_ms(0.99),
        o.one.quantile_ms(0.99) / o.two.quantile_ms(0.99),
        o.two.control.speedup(),
        p1 / p2,
    )
}

/// Criterion settings for a crowd of `players`: (warm-up, measurement) times.
fn times(players: usize) -> (Duration, Duration) {
    if players <= 20_000 {
        (Duration::from_secs(2), Duration::from_secs(10))
    } else {
        (Duration::from_secs(2), Duration::from_secs(20))
    }
}

fn bench_crowd(
    c: &mut Criterion,
    wasm: &[u8],
    players: usize,
    settle: u64,
    control_buffers: usize,
    filter: Option<&str>,
    report: &mut Vec<String>,
) -> Outcome {
    let name = label(players);
    let (one_id, two_id) = (
        format!("players_{name}_1_worker"),
        format!("players_{name}_{THREADS}_workers"),
    );
    let (mut crowd, setup) = build(wasm, players, settle);
    let arena = crowd.arena;
    // Players per square metre of the arena, against the standard crowd's.
    let density = players as f64
        / f64::from(arena.side()).powi(2)
        / (STANDARD_PLAYERS as f64 / f64::from(gm::WORLD_SIZE).powi(2));
    say(
        report,
        format!(
            "server/tick  setup {name}: the demo world with {} players, {} creatures ({} spawned in the arena, the rest \
             generated), {} resource nodes, {} terrain chunks; arena {:.0} m square centred on the 4096 m world \
             ({:.2}x the standard density of {STANDARD_PLAYERS} players on 4096 m, before the sea's share); within \
             64 m of a player on average (sampled): {:.1} players, {:.1} creatures, {:.1} resource nodes, {:.1} chunks \
             = {:.1} rows; world + creatures in {:.1} s, {} sessions connected ({CONNECTS_PER_TICK} per tick) in \
             {:.1} s, {settle} untimed ticks in {:.1} s",
            setup.players,
            setup.creatures,
            players * NPCS_PER_PLAYER,
            setup.nodes,
            setup.chunks,
            arena.side(),
            density,
            setup.within[0],
            setup.within[1],
            setup.within[2],
            setup.within[3],
            setup.within.iter().sum::<f64>(),
            setup.times[0],
            players,
            setup.times[1],
            setup.times[2],
        ),
    );

    let (warm_up, measurement) = times(players);
    let mut group = c.benchmark_group("server/tick");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(warm_up)
        .measurement_time(measurement);
    let job = ControlJob::new(control_buffers, CONTROL_BUFFER);
    let mut one = Tally::default();
    one.control.buffers = control_buffers;
    if wanted(filter, &[&format!("server/tick/{one_id}")]) {
        group.bench_function(&one_id, |b| timed_ticks(b, &mut crowd, &job, &mut one));
    }
    let mut two = Tally::default();
    two.control.buffers = control_buffers;
    if wanted(filter, &[&format!("server/tick/{two_id}")]) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(THREADS)
            .build()
            .expect("a thread pool");
        crowd.world.set_pool(Arc::new(pool));
        group.bench_function(&two_id, |b| timed_ticks(b, &mut crowd, &job, &mut two));
    }
    group.finish();
    say(report, variant_line(&name, "1_worker", players, &one));
    say(
        report,
        variant_line(&name, &format!("{THREADS}_workers"), players, &two),
    );
    Outcome { players, one, two }
}

fn scaling_table(outcomes: &[Outcome], report: &mut Vec<String>) {
    say(
        report,
        format!(
            "server/tick  scaling | N players | ms/tick 1 worker (mean / p99) | ms/tick {THREADS} workers (mean / p99) \
             | speedup (mean) | pool phases speedup | control speedup (over the {THREADS}-worker ticks) | target <= {TARGET_MS} ms at 10k on \
             {THREADS} workers"
        ),
    );
    for o in outcomes {
        let ms = |t: &Tally| {
            if t.ran() {
                format!("{:.2} / {:.2}", t.mean_ms(), t.quantile_ms(0.99))
            } else {
                "(not run)".to_owned()
            }
        };
        let (speedup, pool) = if o.one.ran() && o.two.ran() {
            (
                format!("{:.2}x", o.one.mean_ms() / o.two.mean_ms()),
                format!("{:.2}x", o.one.split_ms().1 / o.two.split_ms().1),
            )
        } else {
            ("n/a".to_owned(), "n/a".to_owned())
        };
        say(
            report,
            format!(
                "server/tick  scaling | {} | {} | {} | {speedup} | {pool} | {:.2}x | {}",
                o.players,
                ms(&o.one),
                ms(&o.two),
                o.two.control.speedup(),
                verdict(o.players, &o.two),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let measuring = bench_cli::measuring(&args);
    let filter = filter_arg(&args);
    let mut report = Vec::new();
    let (sizes, settle): (&[usize], u64) = if measuring {
        (&[10_000, 50_000], SETTLE_TICKS)
    } else {
        say(
            &mut report,
            "server/tick  (a test run: 300 players, one tick each, unoptimized; the figures are not measurements)"
                .to_owned(),
        );
        (&[300], 5)
    };
    let runs: Vec<usize> = sizes
        .iter()
        .copied()
        .filter(|&n| {
            let name = label(n);
            wanted(
                filter,
                &[
                    &format!("server/tick/players_{name}_1_worker"),
                    &format!("server/tick/players_{name}_{THREADS}_workers"),
                ],
            )
        })
        .collect();
    let (control_buffers, control_rounds) = if measuring {
        (CONTROL_BUFFERS, CONTROL_ROUNDS)
    } else {
        (TEST_CONTROL_BUFFERS, 1)
    };
    let before = control(control_buffers, control_rounds);
    say_control(&mut report, "before the crowds", &before);
    let mut outcomes = Vec::new();
    if !runs.is_empty() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let wasm = locus_host::build::build_module(
            &workspace,
            "game-module",
            &locus_host::build::module_target_dir(&workspace, "wasm-modules"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut c = Criterion::default().configure_from_args();
        for players in runs {
            let outcome = bench_crowd(
                &mut c,
                &wasm,
                players,
                settle,
                control_buffers,
                filter,
                &mut report,
            );
            say(&mut report, speedup_line(&label(players), &outcome));
            outcomes.push(outcome);
        }
        c.final_summary();
    }
    let after = control(control_buffers, control_rounds);
    say_control(&mut report, "after the crowds", &after);
    if !outcomes.is_empty() {
        println!();
        scaling_table(&outcomes, &mut report);
    }
    println!("\n==== locus-server tick benchmark summary ====");
    for line in &report {
        println!("{line}");
    }
}

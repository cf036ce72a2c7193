//! What one call of the demo world's `tick` reducer costs with 10,000 players and 20,000 creatures, run by the real
//! host (`locus-host`, wasmtime) over the real module, beside a naive baseline.
//!
//! The world is the real one (`init` and its generation), topped up to 20,000 creatures with
//! `admin_spawn_creatures` (spread over the world like the spawn table's kinds). 10,000 clients connect
//! (`client_connected`), each `teleport`s to a random land point and `move_to`s a point 500 m away, so every player
//! walks and every creature near one is awake — the expensive case. After 40 ticks of warm-up, each tick is a
//! `tick(0.05)` call at the next tick number and a timestamp 50 ms later, followed (untimed) by the due scheduled
//! and periodic reducers, as the server runs them.
//!
//! - `spatial`: the `tick` reducer: creatures find the nearest player with one `nearest` query on the player
//!   table's R-tree.
//! - `naive`: `admin_tick_naive`, the same tick with creatures finding the nearest player by scanning a list of
//!   all online players (read once per tick) — what the R-tree saves.
//!
//! Run with `cargo bench -p game-module --bench tick`. It first prints a summary (median, 90th percentile and mean
//! ms per tick over 100 ticks of each, rows written per tick), then lets criterion measure both. Under
//! `cargo test --benches` it runs once at a small scale.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark's report is printed on stdout"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use game_module::{self as gm, Vec2, terrain};
use locus_host::{Budget, CallContext, HostConfig, Hosted, Runtime};
use locus_module::ReducerCall;
use locus_store::Database;
use locus_types::{Identity, Tick, Timestamp};

/// The world under test and its clock.
struct Bench {
    inst: Hosted,
    tick: u64,
    now: Timestamp,
}

impl Bench {
    fn ctx(&self, sender: Identity) -> CallContext {
        CallContext {
            sender,
            tick: Tick(self.tick),
            timestamp: self.now,
            rng_seed: self.tick.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    fn call(&mut self, sender: Identity, call: &ReducerCall) {
        let ctx = self.ctx(sender);
        if let Err(e) = self.inst.call(call.reducer, &call.args, &ctx) {
            panic!("{}: {e}", call.reducer);
        }
    }

    fn count(&self, table: &str) -> usize {
        let db = self.inst.db();
        db.table(db.table_id(table).unwrap()).unwrap().len()
    }

    /// Advance the clock one tick and run `tick` (or the naive baseline); returns its duration and rows written.
    /// Then runs what is due, untimed.
    fn tick(&mut self, naive: bool) -> (Duration, usize) {
        self.tick += 1;
        self.now = self.now.add_micros(50_000);
        let ctx = self.ctx(Identity::SERVER);
        let start = Instant::now();
        let changes = if naive {
            let call = gm::admin::admin_tick_naive::call(0.05);
            self.inst.call(call.reducer, &call.args, &ctx)
        } else {
            self.inst.tick(0.05, &ctx)
        }
        .unwrap_or_else(|e| panic!("tick: {e}"));
        let took = start.elapsed();
        for run in self.inst.run_due(self.now, &ctx) {
            assert!(run.error.is_none(), "{}: {:?}", run.reducer, run.error);
        }
        (took, changes.row_count())
    }
}

/// A client identity for player `i` (never the all-zero server identity).
fn identity(i: u32) -> Identity {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&(i + 1).to_le_bytes());
    bytes[31] = 0xbe;
    Identity(bytes)
}

/// A random land point, from a xorshift generator with a fixed seed.
fn land_point(rng: &mut u64) -> Vec2 {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng >> 40) as f32 / (1u64 << 24) as f32
    };
    loop {
        let p = Vec2::new(next(), next()) * gm::WORLD_SIZE;
        if terrain::is_walkable(p) {
            return p;
        }
    }
}

fn setup(players: u32, creatures: u32) -> Bench {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = locus_host::build::build_module(
        &workspace,
        "game-module",
        &locus_host::build::module_target_dir(&workspace, "wasm-modules"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // A generous budget, so that neither the setup calls nor the naive baseline are cut off: the point is to
    // measure them.
    let runtime = Runtime::new(HostConfig {
        budget: Budget::Time(Duration::from_secs(30)),
        ..HostConfig::default()
    })
    .unwrap();
    let inst = runtime
        .load(&wasm)
        .unwrap()
        .hosted(Database::default())
        .unwrap();
    let mut bench = Bench {
        inst,
        tick: 0,
        now: Timestamp(1_700_000_000_000_000),
    };
    let ctx = bench.ctx(Identity::SERVER);
    bench.inst.init(&ctx).unwrap();
    bench.tick(false);
    while bench.count("creature") < creatures as usize {
        let missing = creatures as usize - bench.count("creature");
        let call = gm::admin::admin_spawn_creatures::call(missing.min(2_000) as u32);
        bench.call(Identity::SERVER, &call);
    }
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..players {
        let who = identity(i);
        let ctx = bench.ctx(who);
        bench.inst.client_connected(&ctx).unwrap();
        let at = land_point(&mut rng);
        bench.call(who, &gm::teleport::call(at.x, at.y));
        let to = gm::clamp_to_world(at + Vec2::from_angle(i as f32) * 500.0);
        bench.call(who, &gm::move_to::call(to.x, to.y));
    }
    for _ in 0..40 {
        bench.tick(false);
    }
    bench
}

struct Summary {
    median: f64,
    p90: f64,
    mean: f64,
    rows: f64,
}

fn measure(bench: &mut Bench, ticks: usize, naive: bool) -> Summary {
    let mut ms = Vec::with_capacity(ticks);
    let mut rows = 0;
    for _ in 0..ticks {
        let (took, written) = bench.tick(naive);
        ms.push(took.as_secs_f64() * 1e3);
        rows += written;
    }
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    Summary {
        median: ms[ms.len() / 2],
        p90: ms[(ms.len() * 9 / 10).min(ms.len() - 1)],
        mean,
        rows: rows as f64 / ticks as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let measuring = has("--bench") && !has("--test") && !has("--list");
    let (players, creatures, ticks) = if measuring {
        (10_000, 20_000, 100)
    } else {
        (200, 4_000, 3)
    };
    let mut c = Criterion::default().sample_size(10).configure_from_args();

    let started = Instant::now();
    let mut bench = setup(players, creatures);
    let setup_time = started.elapsed();
    let spatial = measure(&mut bench, ticks, false);
    let naive = measure(&mut bench, ticks, true);
    let walking = bench
        .inst
        .db()
        .table(bench.inst.db().table_id("player").unwrap())
        .unwrap()
        .iter()
        .filter(|row| rmp_serde::from_slice::<gm::Player>(row).unwrap().moving)
        .count();
    println!(
        "game/tick: {players} players ({walking} walking at the end), {} creatures, {ticks} ticks of 50 ms each \
         (setup {:.1} s)",
        bench.count("creature"),
        setup_time.as_secs_f64()
    );
    for (name, s) in [
        ("tick reducer (R-tree nearest)", &spatial),
        ("naive baseline (scan players)", &naive),
    ] {
        println!(
            "  {name}: median {:.2} ms  p90 {:.2} ms  mean {:.2} ms per tick  ({:.0} rows written per tick)",
            s.median, s.p90, s.mean, s.rows
        );
    }
    println!(
        "  naive/tick {:.1}x; a 20 Hz tick has 50 ms",
        naive.median / spatial.median
    );

    let mut g = c.benchmark_group("game/tick");
    g.bench_function("spatial", |b| b.iter(|| bench.tick(false)));
    g.bench_function("naive", |b| b.iter(|| bench.tick(true)));
    g.finish();
    c.final_summary();
}

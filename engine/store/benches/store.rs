//! Benchmarks of `locus-store`, each printed beside a naive baseline so the ratio is visible in one run.
//!
//! - `store/move`: update a spatial row's position by primary key, 1000 moves per transaction (a tick's worth),
//!   with fat envelopes (`StoreConfig::default()`, margin 2 m) against re-inserting into the R-tree on every move
//!   (margin 0).
//! - `store/radius`: `within_radius` (r = 64 m), `nearest_neighbors` (k = 50) and `locate_in_envelope` over
//!   100k rows against brute-force scans of a plain `Vec<Vec2>`; radius queries also after the rows have moved.
//! - `store/memory`: heap bytes per row above the rows' own encoded bytes for 1M rows, measured with a counting
//!   global allocator and as an RSS delta, against a naive layout.
//!
//! Run with `cargo bench -p locus-store [-- FILTER]`. The memory report runs (in child processes of this
//! executable, so that each layout's RSS is measured in a fresh heap) when no filter is given or the filter
//! mentions `memory`. Every summary line starts with `store/`; all of them are repeated at the end of the run.
//! Under `cargo test --benches` (no `--bench` flag) everything runs once at a small scale and the memory report is
//! skipped.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark's report is printed on stdout"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion, Throughput};
use locus_store::spatial::{distance_2, in_box};
use locus_store::{Changeset, Database, StoreConfig, Table};
use locus_types::{
    ColumnDef, ColumnId, ColumnType, Identity, IndexKind, TableDef, TableId, Value, Vec2, codec,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rstar::RTree;
use rstar::primitives::GeomWithData;

#[path = "../../bench_cli.rs"]
mod bench_cli;
use bench_cli::{filter_arg, wanted};

// ---------------------------------------------------------------------------------------------------------------
// Counting global allocator
// ---------------------------------------------------------------------------------------------------------------

/// Whether allocations are counted; only the memory child processes turn it on, so the timed benchmarks pay one
/// relaxed load per allocation and nothing more.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes requested and not yet freed (requested sizes, so malloc's per-chunk header and rounding are not in it).
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
/// Allocations not yet freed.
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

/// `System`, plus counters of live bytes and allocations.
struct CountingAlloc;

#[inline]
fn note(bytes: isize, allocs: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
        LIVE_ALLOCS.fetch_add(allocs, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments to `System` unchanged and returns its result; the counters only
// observe.
#[expect(
    unsafe_code,
    reason = "counting global allocator for the memory benchmark"
)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `GlobalAlloc::alloc`'s contract, which is what `System.alloc` needs.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`; our caller upholds the rest of the contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------------------------

/// Side of the square world, in metres.
const WORLD: f32 = 4096.0;
/// One move: 5 m/s at 20 Hz.
const STEP: f32 = 0.25;
/// Moves per transaction in `store/move` (a tick's worth).
const TICK_MOVES: usize = 1000;
/// Radius of the `within_radius` queries.
const RADIUS: f32 = 64.0;
/// The radius at which the standard density gives ~50 hits, the hit count BENCHMARKS.md's target is stated for
/// (64 m at 100k rows over 4096² m gives ~77).
const RADIUS_50: f32 = 51.7;
/// Half the side of the `locate_in_envelope` box.
const BOX_HALF: f32 = 64.0;
/// `k` of the `nearest_neighbors` queries.
const KNN: usize = 50;
/// The naive baseline's configuration: re-insert into the R-tree on every move.
const MARGIN_0: StoreConfig = StoreConfig {
    spatial_margin: 0.0,
};
/// Rows of the timed benchmarks.
const ROWS: usize = 100_000;
/// Rows of the memory report.
const MEM_ROWS: usize = 1_000_000;
const SEED: u64 = 0x10c0_5eed;
/// Set (to `store` or `naive`) in the memory report's child processes.
const MEMORY_CHILD_ENV: &str = "LOCUS_STORE_BENCH_MEMORY_CHILD";

/// The 5-column spatial table every benchmark uses.
fn player_def() -> TableDef {
    TableDef::builder("player")
        .column("id", ColumnType::U64)
        .column("owner", ColumnType::Identity)
        .column("pos", ColumnType::Vec2)
        .column("hp", ColumnType::I32)
        .column("name", ColumnType::String)
        .primary_key("id")
        .index("pos", IndexKind::Spatial)
        .owner("owner")
        .build()
        .expect("valid table definition")
}

/// Player `id`'s row (deterministic given the RNG state) and its position, uniform over the world.
fn player_row(columns: &[ColumnDef], rng: &mut ChaCha8Rng, id: u64) -> (Vec<u8>, Vec2) {
    let pos = Vec2::new(rng.random_range(0.0..WORLD), rng.random_range(0.0..WORLD));
    let owner = Identity(rng.random());
    let hp = rng.random_range(1..=100_i64);
    let row = codec::encode_row(
        columns,
        &[
            Value::U64(id),
            Value::Identity(owner),
            Value::Vec2(pos),
            Value::I64(hp),
            Value::String(format!("player-{id}").into()),
        ],
    )
    .expect("valid row");
    (row, pos)
}

/// Write `pos` into a row's encoded `Vec2` (`[0x92, 0xca, x BE, 0xca, y BE]`, see `locus_types::codec`) at `at`.
fn patch_pos(row: &mut [u8], at: usize, pos: Vec2) {
    row[at + 2..at + 6].copy_from_slice(&pos.x.to_be_bytes());
    row[at + 7..at + 11].copy_from_slice(&pos.y.to_be_bytes());
}

/// Advance `pos` by `vel`, bouncing off the world's edges so it stays in `[0, WORLD]`.
fn step(pos: &mut Vec2, vel: &mut Vec2) {
    let mut next = *pos + *vel;
    if !(0.0..=WORLD).contains(&next.x) {
        vel.x = -vel.x;
        next.x = pos.x + vel.x;
    }
    if !(0.0..=WORLD).contains(&next.y) {
        vel.y = -vel.y;
        next.y = pos.y + vel.y;
    }
    *pos = next;
}

/// A database with one player table whose rows walk, each along its own fixed random heading.
///
/// Moves re-send a row's whole bytes, as a module does. The bytes are **not** re-encoded per move: each row's
/// encoding is cached and its 8 position bytes patched in place, which is the realistic "module sends a new row"
/// cost (a memcpy-sized write) and keeps encoding out of the measurement.
struct World {
    db: Database,
    table: TableId,
    rows: Vec<Vec<u8>>,
    /// Offset of the `pos` column's bytes in each row.
    pos_at: Vec<usize>,
    /// Every row's current position (row `i` has primary key `i + 1`); also the brute-force baseline's data.
    pos: Vec<Vec2>,
    vel: Vec<Vec2>,
    cursor: usize,
    moves: u64,
}

impl World {
    fn new(config: StoreConfig, n: usize) -> World {
        let def = player_def();
        let pos_column = def.column_id("pos").expect("pos column").index();
        let mut db = Database::new(config);
        let table = db.create_table(def.clone()).expect("create table");
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let mut world = World {
            db,
            table,
            rows: Vec::with_capacity(n),
            pos_at: Vec::with_capacity(n),
            pos: Vec::with_capacity(n),
            vel: Vec::with_capacity(n),
            cursor: 0,
            moves: 0,
        };
        let mut offsets = Vec::new();
        for start in (0..n).step_by(TICK_MOVES) {
            let mut tx = world.db.begin();
            for i in start..n.min(start + TICK_MOVES) {
                let (row, pos) = player_row(&def.columns, &mut rng, i as u64 + 1);
                codec::validate_row(&def.columns, &row, &mut offsets).expect("valid row");
                let at = offsets[pos_column] as usize;
                assert_eq!(
                    codec::read_vec2(&row[at..at + 11]),
                    Some(pos),
                    "Vec2 layout"
                );
                tx.insert(table, &row).expect("insert");
                world.rows.push(row);
                world.pos_at.push(at);
                world.pos.push(pos);
            }
            black_box(tx.commit());
        }
        for _ in 0..n {
            let angle = rng.random_range(0.0..std::f32::consts::TAU);
            world.vel.push(Vec2::from_angle(angle) * STEP);
        }
        world
    }

    fn table(&self) -> &Table {
        self.db.table(self.table).expect("table exists")
    }

    /// One transaction of `moves` moves, round-robin over the rows; returns its changeset.
    fn tick(&mut self, moves: usize) -> Changeset {
        let World {
            db,
            table,
            rows,
            pos_at,
            pos,
            vel,
            cursor,
            moves: total,
        } = self;
        let mut tx = db.begin();
        for _ in 0..moves {
            let i = *cursor;
            *cursor = if i + 1 == rows.len() { 0 } else { i + 1 };
            step(&mut pos[i], &mut vel[i]);
            patch_pos(&mut rows[i], pos_at[i], pos[i]);
            tx.update(*table, &rows[i]).expect("move");
        }
        *total += moves as u64;
        tx.commit()
    }

    /// Move every row `rounds` times, 1000 moves per transaction.
    fn walk(&mut self, rounds: usize) {
        for _ in 0..(rounds * self.rows.len()).div_ceil(TICK_MOVES) {
            black_box(self.tick(TICK_MOVES));
        }
    }

    /// Assert (outside any timing) that the index still answers exactly: every row's indexed position is its
    /// current one, and radius, box and k-nearest queries at `queries` random centers match brute force over
    /// `self.pos` with the same distance function.
    fn check_exact(&self, queries: usize) {
        let table = self.table();
        assert_eq!(table.len(), self.pos.len());
        for (i, p) in self.pos.iter().enumerate() {
            let key = Value::U64(i as u64 + 1);
            assert_eq!(table.position(&key).expect("spatial"), Some(*p));
        }
        let id_of = |row: &[u8]| match table.primary_key_of(row) {
            Ok(Value::U64(id)) => id,
            other => panic!("unexpected key {other:?}"),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0xc4ec);
        for _ in 0..queries {
            let c = Vec2::new(rng.random_range(0.0..WORLD), rng.random_range(0.0..WORLD));
            let mut got: Vec<u64> = table
                .within_radius(c, RADIUS)
                .expect("spatial")
                .map(id_of)
                .collect();
            got.sort_unstable();
            let want: Vec<u64> = (1..)
                .zip(&self.pos)
                .filter(|(_, p)| distance_2(**p, c) <= RADIUS * RADIUS)
                .map(|(id, _)| id)
                .collect();
            assert_eq!(got, want, "within_radius({c}, {RADIUS})");

            let (min, max) = (c - Vec2::splat(BOX_HALF), c + Vec2::splat(BOX_HALF));
            let mut got: Vec<u64> = table
                .locate_in_envelope(min, max)
                .expect("spatial")
                .map(id_of)
                .collect();
            got.sort_unstable();
            let want: Vec<u64> = (1..)
                .zip(&self.pos)
                .filter(|(_, p)| in_box(**p, min, max))
                .map(|(id, _)| id)
                .collect();
            assert_eq!(got, want, "locate_in_envelope({min}, {max})");

            let got: Vec<f32> = table
                .nearest_neighbors(c, KNN)
                .expect("spatial")
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            let mut want: Vec<f32> = self.pos.iter().map(|p| distance_2(*p, c)).collect();
            want.sort_by(f32::total_cmp);
            want.truncate(KNN);
            assert_eq!(got, want, "nearest_neighbors({c}, {KNN})");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Timing helpers
// ---------------------------------------------------------------------------------------------------------------

/// Total time and iterations of one benchmark as criterion ran it (warm-up included), for the summary lines.
#[derive(Default)]
struct Tally {
    time: Cell<Duration>,
    iters: Cell<u64>,
}

impl Tally {
    /// Mean seconds per iteration, `None` if the benchmark did not run (filtered out).
    fn mean(&self) -> Option<f64> {
        let iters = self.iters.get();
        (iters > 0).then(|| self.time.get().as_secs_f64() / iters as f64)
    }
}

/// Time `f` with `iter_custom`, recording the totals in `tally`.
fn timed<T>(b: &mut Bencher<'_>, tally: &Tally, mut f: impl FnMut() -> T) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        let elapsed = start.elapsed();
        tally.time.set(tally.time.get() + elapsed);
        tally.iters.set(tally.iters.get() + iters);
        elapsed
    });
}

fn micros(secs: Option<f64>) -> String {
    secs.map_or_else(|| "(not run)".to_owned(), |s| format!("{:.2} µs", s * 1e6))
}

fn ratio(baseline: Option<f64>, real: Option<f64>) -> String {
    match (baseline, real) {
        (Some(b), Some(r)) if r > 0.0 => format!("{:.1}x", b / r),
        _ => "n/a".to_owned(),
    }
}

/// Print a summary line now and keep it for the final recap.
fn say(report: &mut Vec<String>, line: String) {
    println!("{line}");
    report.push(line);
}

// ---------------------------------------------------------------------------------------------------------------
// store/move
// ---------------------------------------------------------------------------------------------------------------

fn bench_move(c: &mut Criterion, rows: usize, warm_rounds: usize, report: &mut Vec<String>) {
    let mut real = World::new(StoreConfig::default(), rows);
    let mut naive = World::new(MARGIN_0, rows);
    // Age both worlds equally, so that every row has left its first fat envelope and the reinsert rate is the
    // steady one.
    real.walk(warm_rounds);
    naive.walk(warm_rounds);

    let mut group = c.benchmark_group("store/move");
    group
        .throughput(Throughput::Elements(TICK_MOVES as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut results = Vec::new();
    for (name, world) in [
        ("real default margin", &mut real),
        ("baseline margin 0", &mut naive),
    ] {
        let tally = Tally::default();
        let (moves0, reinserts0) = (world.moves, world.table().spatial_reinserts());
        group.bench_function(name, |b| timed(b, &tally, || world.tick(TICK_MOVES)));
        let moves = world.moves - moves0;
        let reinserts = world.table().spatial_reinserts() - reinserts0;
        let per_move = (moves > 0).then(|| reinserts as f64 / moves as f64);
        results.push((tally.mean(), per_move));
    }
    group.finish();
    real.check_exact(20);
    naive.check_exact(20);

    let rate = |mean: Option<f64>| {
        mean.map_or_else(
            || "(not run)".to_owned(),
            |s| format!("{:.2} M moves/s", TICK_MOVES as f64 / s / 1e6),
        )
    };
    let per_move = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}"));
    let [(real_mean, real_ri), (naive_mean, naive_ri)] = [results[0], results[1]];
    say(
        report,
        format!(
            "store/move  real: {} (spatial_reinserts/move {})  baseline (margin 0): {} (spatial_reinserts/move {})  ratio {}",
            rate(real_mean),
            per_move(real_ri),
            rate(naive_mean),
            per_move(naive_ri),
            ratio(naive_mean, real_mean),
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// store/radius
// ---------------------------------------------------------------------------------------------------------------

/// Brute-force `k` nearest: squared distances of every point, partially sorted.
fn brute_knn(points: &[Vec2], c: Vec2, k: usize, scratch: &mut Vec<(f32, u32)>) -> f32 {
    scratch.clear();
    scratch.extend((0..).zip(points).map(|(i, p)| (distance_2(*p, c), i)));
    let k = k.min(scratch.len());
    if k == 0 {
        return 0.0;
    }
    scratch.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
    scratch[..k].sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    scratch[k - 1].0
}

fn bench_queries(c: &mut Criterion, rows: usize, report: &mut Vec<String>) {
    let mut world = World::new(StoreConfig::default(), rows);
    let exact = World::new(MARGIN_0, rows);
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0x5ea2c4);
    let centers: Vec<Vec2> = (0..1024)
        .map(|_| Vec2::new(rng.random_range(0.0..WORLD), rng.random_range(0.0..WORLD)))
        .collect();
    let mean_hits = |points: &[Vec2]| {
        let hits: usize = centers
            .iter()
            .map(|c| {
                points
                    .iter()
                    .filter(|p| distance_2(**p, *c) <= RADIUS * RADIUS)
                    .count()
            })
            .sum();
        hits as f64 / centers.len() as f64
    };
    let fresh_hits = mean_hits(&world.pos);
    world.check_exact(20);

    let mut group = c.benchmark_group("store/radius");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));

    let next = Cell::new(0_usize);
    let center = || {
        let i = next.get();
        next.set((i + 1) % centers.len());
        centers[i]
    };

    let fresh = Tally::default();
    group.bench_function("within_radius fresh", |b| {
        timed(b, &fresh, || {
            world
                .table()
                .within_radius(center(), RADIUS)
                .expect("spatial")
                .count()
        });
    });
    let hits_50 = {
        let n: usize = centers
            .iter()
            .map(|c| {
                world
                    .pos
                    .iter()
                    .filter(|p| distance_2(**p, *c) <= RADIUS_50 * RADIUS_50)
                    .count()
            })
            .sum();
        n as f64 / centers.len() as f64
    };
    let fresh_50 = Tally::default();
    group.bench_function("within_radius r51.7", |b| {
        timed(b, &fresh_50, || {
            world
                .table()
                .within_radius(center(), RADIUS_50)
                .expect("spatial")
                .count()
        });
    });
    let brute_50 = Tally::default();
    let points_50 = world.pos.clone();
    group.bench_function("within_radius r51.7 brute force", |b| {
        timed(b, &brute_50, || {
            let c = center();
            points_50
                .iter()
                .filter(|p| distance_2(**p, c) <= RADIUS_50 * RADIUS_50)
                .count()
        });
    });
    let margin0 = Tally::default();
    group.bench_function("within_radius margin 0", |b| {
        timed(b, &margin0, || {
            exact
                .table()
                .within_radius(center(), RADIUS)
                .expect("spatial")
                .count()
        });
    });
    // The fastest brute force: positions in a plain `Vec<Vec2>`, no row decoding.
    let brute = Tally::default();
    let points = world.pos.clone();
    group.bench_function("within_radius brute force", |b| {
        timed(b, &brute, || {
            let c = center();
            points
                .iter()
                .filter(|p| distance_2(**p, c) <= RADIUS * RADIUS)
                .count()
        });
    });

    // 20 ticks in which every row takes one step (5 m in all, about two fat-envelope re-inserts per row).
    let before = world.table().spatial_reinserts();
    world.walk(20);
    let moved_reinserts =
        (world.table().spatial_reinserts() - before) as f64 / world.pos.len() as f64;
    world.check_exact(20);
    let moved_hits = mean_hits(&world.pos);
    let moved = Tally::default();
    group.bench_function("within_radius after 20 ticks", |b| {
        timed(b, &moved, || {
            world
                .table()
                .within_radius(center(), RADIUS)
                .expect("spatial")
                .count()
        });
    });

    let points = world.pos.clone();
    let knn = Tally::default();
    group.bench_function("nearest_neighbors k50", |b| {
        timed(b, &knn, || {
            world
                .table()
                .nearest_neighbors(center(), KNN)
                .expect("spatial")
                .len()
        });
    });
    let knn_brute = Tally::default();
    let mut scratch = Vec::with_capacity(points.len());
    group.bench_function("nearest_neighbors brute force", |b| {
        timed(b, &knn_brute, || {
            brute_knn(&points, center(), KNN, &mut scratch)
        });
    });

    let half = Vec2::splat(BOX_HALF);
    let env = Tally::default();
    group.bench_function("locate_in_envelope 128m", |b| {
        timed(b, &env, || {
            let c = center();
            world
                .table()
                .locate_in_envelope(c - half, c + half)
                .expect("spatial")
                .count()
        });
    });
    let env_brute = Tally::default();
    group.bench_function("locate_in_envelope brute force", |b| {
        timed(b, &env_brute, || {
            let c = center();
            let (min, max) = (c - half, c + half);
            points.iter().filter(|p| in_box(**p, min, max)).count()
        });
    });
    group.finish();

    let (fresh, margin0, brute, moved) = (fresh.mean(), margin0.mean(), brute.mean(), moved.mean());
    let (fresh_50, brute_50) = (fresh_50.mean(), brute_50.mean());
    say(
        report,
        format!(
            "store/radius  real: {}/query ({rows} rows, r {RADIUS_50} m, {hits_50:.1} hits avg)  baseline (brute force over Vec<Vec2>): {}/query  ratio {}",
            micros(fresh_50),
            micros(brute_50),
            ratio(brute_50, fresh_50),
        ),
    );
    say(
        report,
        format!(
            "store/radius  real: {}/query ({rows} rows, r {RADIUS} m, {fresh_hits:.1} hits avg)  baseline (brute force over Vec<Vec2>): {}/query  ratio {}",
            micros(fresh),
            micros(brute),
            ratio(brute, fresh),
        ),
    );
    say(
        report,
        format!(
            "store/radius  after 20 ticks of moves (default margin, {moved_reinserts:.2} reinserts/row, {moved_hits:.1} hits avg): {}/query  vs fresh: {}/query (moved/fresh {})  vs margin 0 exact points: {}/query  baseline brute force: {}/query  ratio {}",
            micros(moved),
            micros(fresh),
            moved
                .zip(fresh)
                .map_or_else(|| "n/a".to_owned(), |(m, f)| format!("{:.2}", m / f)),
            micros(margin0),
            micros(brute),
            ratio(brute, moved),
        ),
    );
    let (knn, knn_brute) = (knn.mean(), knn_brute.mean());
    say(
        report,
        format!(
            "store/radius  nearest_neighbors k={KNN}  real: {}/query  baseline (brute force + select_nth_unstable): {}/query  ratio {}",
            micros(knn),
            micros(knn_brute),
            ratio(knn_brute, knn),
        ),
    );
    let (env, env_brute) = (env.mean(), env_brute.mean());
    say(
        report,
        format!(
            "store/radius  locate_in_envelope {}x{} m box  real: {}/query  baseline (brute force in_box): {}/query  ratio {}",
            2.0 * BOX_HALF,
            2.0 * BOX_HALF,
            micros(env),
            micros(env_brute),
            ratio(env_brute, env),
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// store/memory
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Snapshot {
    live: isize,
    allocs: isize,
    rss: isize,
}

/// Resident set size in bytes: `/proc/self/statm`'s second field, in pages of 4 KiB (cross-checked against
/// `VmRSS` of `/proc/self/status`, which is in kB, when that is available).
fn rss_bytes() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let vm_rss_kb: Option<isize> = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
    match vm_rss_kb {
        // Page size other than 4 KiB: trust VmRSS.
        Some(kb) if (kb * 1024 - pages * 4096).abs() > 64 * 1024 => kb * 1024,
        _ => pages * 4096,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        live: LIVE_BYTES.load(Ordering::Relaxed),
        allocs: LIVE_ALLOCS.load(Ordering::Relaxed),
        rss: rss_bytes(),
    }
}

/// Run in a child process: load `MEM_ROWS` rows into one layout and print its figures as `key=value` pairs.
fn memory_child(which: &str) {
    COUNTING.store(true, Ordering::Relaxed);
    let def = player_def();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let n = MEM_ROWS;
    let mut row_bytes = 0_usize;
    let mut out = format!("LOCUS_MEM layout={which} rows={n}");
    let mut put = |k: &str, v: isize| out.push_str(&format!(" {k}={v}"));
    match which {
        "store" => {
            let mut db = Database::new(StoreConfig::default());
            let table = db.create_table(def.clone()).expect("create table");
            let s0 = snapshot();
            for start in (0..n).step_by(TICK_MOVES) {
                let mut tx = db.begin();
                for i in start..n.min(start + TICK_MOVES) {
                    let (row, _) = player_row(&def.columns, &mut rng, i as u64 + 1);
                    row_bytes += row.len();
                    tx.insert(table, &row).expect("insert");
                }
                black_box(tx.commit());
            }
            let s1 = snapshot();
            db.rebuild_spatial_indexes();
            let s2 = snapshot();
            black_box(&db);
            put("live", s1.live - s0.live);
            put("allocs", s1.allocs - s0.allocs);
            put("rss", s1.rss - s0.rss);
            put("rebuilt_live", s2.live - s0.live);
            put("rebuilt_allocs", s2.allocs - s0.allocs);
            put("rebuilt_rss", s2.rss - s0.rss);
        }
        "naive" => {
            // The naive layout: decoded rows (`Vec<Value>` each), an ordered pk index to their position, and an
            // R-tree of exact points (which would be re-inserted on every move).
            let pk_column = ColumnId(0);
            let mut rows: Vec<Vec<Value>> = Vec::new();
            let mut pk: BTreeMap<u64, usize> = BTreeMap::new();
            let mut tree: RTree<GeomWithData<[f32; 2], usize>> = RTree::new();
            let s0 = snapshot();
            for i in 0..n {
                let (row, pos) = player_row(&def.columns, &mut rng, i as u64 + 1);
                row_bytes += row.len();
                let values = codec::decode_row(&def.columns, &row).expect("valid row");
                let Value::U64(id) = values[pk_column.index()] else {
                    unreachable!("u64 key")
                };
                pk.insert(id, rows.len());
                tree.insert(GeomWithData::new(pos.to_array(), rows.len()));
                rows.push(values);
            }
            let s1 = snapshot();
            black_box((&rows, &pk, &tree));
            put("live", s1.live - s0.live);
            put("allocs", s1.allocs - s0.allocs);
            put("rss", s1.rss - s0.rss);
        }
        other => panic!("unknown memory layout {other:?}"),
    }
    put("row_bytes", row_bytes as isize);
    println!("{out}");
}

/// Run one memory child and parse its `key=value` line.
fn run_memory_child(which: &str) -> Option<BTreeMap<String, f64>> {
    let exe = std::env::current_exe().ok()?;
    let output = Command::new(exe)
        .env(MEMORY_CHILD_ENV, which)
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        println!(
            "store/memory  child `{which}` failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let line = stdout.lines().find(|l| l.starts_with("LOCUS_MEM "))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect(),
    )
}

fn memory_report(report: &mut Vec<String>) {
    let (Some(store), Some(naive)) = (run_memory_child("store"), run_memory_child("naive")) else {
        say(report, "store/memory  (failed, see above)".to_owned());
        return;
    };
    let n = store["rows"];
    // Bytes per row above the rows' own encoded bytes.
    let above = |m: &BTreeMap<String, f64>, key: &str| (m[key] - m["row_bytes"]) / n;
    let per_row = |m: &BTreeMap<String, f64>, key: &str| m[key] / n;
    let (real, base) = (above(&store, "live"), above(&naive, "live"));
    say(
        report,
        format!(
            "store/memory  real: {real:.1} B/row above row bytes (live heap, counting allocator; {n} rows of {:.1} B avg; total {:.1} B/row; {:.2} live allocs/row)  baseline (Vec<Vec<Value>> + BTreeMap<u64, usize> + RTree of points): {base:.1} B/row (total {:.1} B/row; {:.2} live allocs/row)  ratio {:.1}x",
            per_row(&store, "row_bytes"),
            per_row(&store, "live"),
            per_row(&store, "allocs"),
            per_row(&naive, "live"),
            per_row(&naive, "allocs"),
            base / real,
        ),
    );
    let (real_rss, base_rss) = (above(&store, "rss"), above(&naive, "rss"));
    say(
        report,
        format!(
            "store/memory  RSS delta (/proc/self/statm, includes malloc headers and freed-but-retained memory): real: {real_rss:.1} B/row above row bytes  baseline: {base_rss:.1} B/row  ratio {:.1}x",
            base_rss / real_rss,
        ),
    );
    let (rebuilt, rebuilt_rss) = (above(&store, "rebuilt_live"), above(&store, "rebuilt_rss"));
    say(
        report,
        format!(
            "store/memory  after rebuild_spatial_indexes: real: {rebuilt:.1} B/row above row bytes (live heap; {:.2} live allocs/row)  RSS delta: {rebuilt_rss:.1} B/row (the freed incremental tree stays resident)  baseline: {base:.1} B/row  ratio {:.1}x",
            per_row(&store, "rebuilt_allocs"),
            base / rebuilt,
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------------------------

fn main() {
    if let Ok(which) = std::env::var(MEMORY_CHILD_ENV) {
        memory_child(&which);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let measuring = bench_cli::measuring(&args);
    let filter = filter_arg(&args);
    let (rows, warm_rounds) = if measuring { (ROWS, 12) } else { (5_000, 2) };
    let mut report = Vec::new();

    if measuring && filter.is_none_or(|f| f.contains("memory") || "store/memory".contains(f)) {
        memory_report(&mut report);
    }
    let mut c = Criterion::default().configure_from_args();
    if wanted(
        filter,
        &[
            "store/move/real default margin",
            "store/move/baseline margin 0",
        ],
    ) {
        bench_move(&mut c, rows, warm_rounds, &mut report);
    }
    if wanted(
        filter,
        &[
            "store/radius/within_radius fresh",
            "store/radius/within_radius r51.7",
            "store/radius/within_radius r51.7 brute force",
            "store/radius/within_radius margin 0",
            "store/radius/within_radius brute force",
            "store/radius/within_radius after 20 ticks",
            "store/radius/nearest_neighbors k50",
            "store/radius/nearest_neighbors brute force",
            "store/radius/locate_in_envelope 128m",
            "store/radius/locate_in_envelope brute force",
        ],
    ) {
        bench_queries(&mut c, rows, &mut report);
    }
    c.final_summary();
    if !report.is_empty() {
        println!("\n==== locus-store benchmark summary ====");
        for line in &report {
            println!("{line}");
        }
    }
}

//! Benchmarks of `locus-log`, each printed beside the naive baseline it replaces so the ratio is visible in one run.
//!
//! The workload is a `mover` table (`id u64` primary key, `pos Vec2` with a spatial index, `hp i32`, `name` of 12
//! characters; ~40-byte rows) of 10,000 rows that walk 0.25 m per move. Every changeset is real: it comes from a
//! committed transaction on a [`locus_store::Database`], one transaction per move (one reducer call each).
//!
//! - `log/append`, on the real file system (a temporary directory under `target/tmp`, not tmpfs), throughput in
//!   row changes:
//!   - `tick_1000_rows_fsync_per_record`: the tick thread's work plus the durability thread's, serially: encode one
//!     tick record of 1,000 single-row transactions, [`Log::append`] it, [`Log::sync`] (one `fsync`).
//!   - `fsync_per_transaction` (baseline): the same 1,000 transactions, each in a record of its own (its own
//!     tick), each followed by a sync: what committing every transaction durably would cost.
//!   - `durability_thread_1000_rows`: the same tick records handed to [`Durability`] (group commit on its own
//!     thread); a sample hands over N records and then waits for [`Durability::flush`], so the figure is the
//!     pipelined durable rate.
//! - `log/recover`: [`Log::open`] of a data directory holding a snapshot of 10,000 rows and 1,000 tick records of
//!   1,000 transactions each (1,000,000 transactions: moves, and one despawn/respawn in a hundred), i.e. read,
//!   checksum, replay and rebuild the indexes; throughput in transactions. Baselines, fed the same transactions
//!   as owned in-memory [`Changeset`]s (so without any reading, checksumming or decoding, which favours them):
//!   `naive_apply_1m` replays them with [`Database::apply`] (a checked store transaction per changeset), and
//!   `naive_tx_1m` with ordinary store transactions (`db.begin()`, `tx.update` / `tx.delete` / `tx.insert`,
//!   `tx.commit()`).
//!
//! - `log/snapshot`, a `mover` table of 1,000,000 rows: what a snapshot costs the tick thread. Real:
//!   `freeze_1m_rows`, [`Database::freeze`] (the images [`Durability::snapshot_frozen`] hands to the durability
//!   thread, which encodes them there). Baseline: `encode_1m_rows`, [`EncodedSnapshot::new`] (what the tick thread
//!   paid before). And what the images cost the writes that follow while the durability thread still holds them
//!   (copy-on-write): `moves_100k_while_frozen` against `moves_100k` (100,000 move transactions each).
//!
//! Run with `cargo bench -p locus-log [-- FILTER]`. Every summary line starts with `log/`; all of them are repeated
//! at the end of the run. Under `cargo test --benches` (no `--bench` flag) everything runs once at a small scale.
//! Recovery reads its files from the page cache (they were just written): the figure is the CPU cost of recovery,
//! not a cold disk's read rate.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark's report is printed on stdout"
)]

use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion, SamplingMode, Throughput};
use locus_log::storage::FsStorage;
use locus_log::{Durability, EncodedRecord, EncodedSnapshot, Log, LogConfig};
use locus_store::{Changeset, Database, StoreConfig};
use locus_types::{ColumnDef, ColumnType, IndexKind, TableDef, TableId, Tick, Value, Vec2, codec};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tempfile::TempDir;

#[path = "../../bench_cli.rs"]
mod bench_cli;
use bench_cli::{filter_arg, wanted};

// ---------------------------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------------------------

/// Side of the square world, in metres.
const WORLD: f32 = 4096.0;
/// One move: 5 m/s at 20 Hz.
const STEP: f32 = 0.25;
/// Rows of the `mover` table.
const MOVERS: usize = 10_000;
/// Row changes (single-row transactions) per tick record.
const TICK_ROWS: usize = 1_000;
/// Distinct ticks of changesets the append benchmarks cycle through.
const POOL_TICKS: usize = 16;
/// Tick records in the recovery benchmark's log.
const RECOVER_TICKS: usize = 1_000;
/// One transaction in this many of the recovery log is a despawn/respawn (a delete and an insert), not a move.
const RESPAWN_EVERY: usize = 100;
const SEED: u64 = 0x10c0_5eed;

/// The append benchmarks snapshot (outside the timing) once this many log bytes have been written, so the old
/// segments are removed and the disk use stays bounded.
const SNAPSHOT_BYTES: u64 = 128 << 20;

/// The `mover` table: what a game's moving entities look like.
fn mover_def() -> TableDef {
    TableDef::builder("mover")
        .column("id", ColumnType::U64)
        .column("pos", ColumnType::Vec2)
        .column("hp", ColumnType::I32)
        .column("name", ColumnType::String)
        .primary_key("id")
        .index("pos", IndexKind::Spatial)
        .build()
        .expect("valid table definition")
}

/// The log configuration of every benchmark: the defaults, except that snapshots are due by bytes only (the
/// benchmarks take them themselves, outside the timing; the log never snapshots on its own).
fn log_config() -> LogConfig {
    LogConfig {
        snapshot_every_ticks: None,
        snapshot_every_bytes: Some(SNAPSHOT_BYTES),
        ..LogConfig::default()
    }
}

struct Mover {
    id: u64,
    pos: Vec2,
    vel: Vec2,
    hp: i64,
}

impl Mover {
    fn spawn(rng: &mut ChaCha8Rng, id: u64) -> Mover {
        let angle = rng.random_range(0.0..std::f32::consts::TAU);
        Mover {
            id,
            pos: Vec2::new(rng.random_range(0.0..WORLD), rng.random_range(0.0..WORLD)),
            vel: Vec2::from_angle(angle) * STEP,
            hp: rng.random_range(1..=100_i64),
        }
    }

    /// The row, encoded as a module would send it.
    fn row(&self, columns: &[ColumnDef]) -> Vec<u8> {
        codec::encode_row(
            columns,
            &[
                Value::U64(self.id),
                Value::Vec2(self.pos),
                Value::I64(self.hp),
                Value::String(format!("mover-{:06}", self.id % 1_000_000).into()),
            ],
        )
        .expect("valid row")
    }

    /// Advance by one step, bouncing off the world's edges so it stays in `[0, WORLD]`.
    fn step(&mut self) {
        let mut next = self.pos + self.vel;
        if !(0.0..=WORLD).contains(&next.x) {
            self.vel.x = -self.vel.x;
            next.x = self.pos.x + self.vel.x;
        }
        if !(0.0..=WORLD).contains(&next.y) {
            self.vel.y = -self.vel.y;
            next.y = self.pos.y + self.vel.y;
        }
        self.pos = next;
    }
}

/// A database with one `mover` table whose rows walk; every method call is one committed transaction.
struct World {
    db: Database,
    table: TableId,
    def: TableDef,
    movers: Vec<Mover>,
    cursor: usize,
    next_id: u64,
    rng: ChaCha8Rng,
}

impl World {
    fn new(n: usize) -> World {
        let def = mover_def();
        let mut db = Database::new(StoreConfig::default());
        let table = db.create_table(def.clone()).expect("create table");
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let movers: Vec<Mover> = (1..=n as u64)
            .map(|id| Mover::spawn(&mut rng, id))
            .collect();
        for chunk in movers.chunks(TICK_ROWS) {
            let mut tx = db.begin();
            for m in chunk {
                tx.insert(table, &m.row(&def.columns)).expect("insert");
            }
            black_box(tx.commit());
        }
        World {
            db,
            table,
            def,
            movers,
            cursor: 0,
            next_id: n as u64 + 1,
            rng,
        }
    }

    /// Move the next mover (round-robin) one step.
    fn move_tx(&mut self) -> Changeset {
        let i = self.cursor;
        self.cursor = (i + 1) % self.movers.len();
        let m = &mut self.movers[i];
        m.step();
        let row = m.row(&self.def.columns);
        let mut tx = self.db.begin();
        tx.update(self.table, &row).expect("move");
        tx.commit()
    }

    /// Despawn a random mover and spawn a new one (with a new id) in its place.
    fn respawn_tx(&mut self) -> Changeset {
        let i = self.rng.random_range(0..self.movers.len());
        let id = self.next_id;
        self.next_id += 1;
        let old = std::mem::replace(&mut self.movers[i], Mover::spawn(&mut self.rng, id));
        let row = self.movers[i].row(&self.def.columns);
        let mut tx = self.db.begin();
        tx.delete(self.table, &Value::U64(old.id)).expect("despawn");
        tx.insert(self.table, &row).expect("spawn");
        tx.commit()
    }

    /// The table's rows, sorted.
    fn rows(&self) -> Vec<Vec<u8>> {
        sorted_rows(&self.db, self.table)
    }
}

fn sorted_rows(db: &Database, table: TableId) -> Vec<Vec<u8>> {
    let mut rows: Vec<Vec<u8>> = db
        .table(table)
        .expect("table exists")
        .iter()
        .map(<[u8]>::to_vec)
        .collect();
    rows.sort_unstable();
    rows
}

/// A temporary directory on the real disk (under Cargo's target directory, not `/tmp`, which may be tmpfs).
fn disk_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a temporary directory")
}

/// Open a new log in `dir` and write its first snapshot (the schema, and `db`'s rows) at tick 0.
fn new_log(dir: &Path, db: &Database) -> Log {
    let storage = FsStorage::open(dir).expect("open the directory");
    let (mut log, recovered) =
        Log::open(Arc::new(storage), log_config(), StoreConfig::default()).expect("open the log");
    assert!(recovered.is_new(), "{} is not empty", dir.display());
    log.snapshot(&EncodedSnapshot::new(Tick(0), db))
        .expect("first snapshot");
    log
}

/// Encode one tick's record as the tick thread does: one push per committed transaction.
fn encode(tick: u64, changesets: &[Changeset]) -> EncodedRecord {
    let mut record = EncodedRecord::new(Tick(tick));
    for c in changesets {
        record.push(c);
    }
    record
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
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
    fn add(&self, iters: u64, elapsed: Duration) {
        self.time.set(self.time.get() + elapsed);
        self.iters.set(self.iters.get() + iters);
    }

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
        tally.add(iters, elapsed);
        elapsed
    });
}

/// `per_iter` elements per iteration of mean `secs`, as a rate.
fn rate(secs: Option<f64>, per_iter: f64, unit: &str) -> String {
    secs.map_or_else(
        || "(not run)".to_owned(),
        |s| {
            let r = per_iter / s;
            if r >= 1e6 {
                format!("{:.2} M {unit}/s", r / 1e6)
            } else {
                format!("{:.1} k {unit}/s", r / 1e3)
            }
        },
    )
}

fn duration(secs: Option<f64>) -> String {
    secs.map_or_else(
        || "(not run)".to_owned(),
        |s| {
            if s >= 1.0 {
                format!("{s:.2} s")
            } else if s >= 1e-3 {
                format!("{:.2} ms", s * 1e3)
            } else {
                format!("{:.1} µs", s * 1e6)
            }
        },
    )
}

fn ratio(baseline: Option<f64>, real: Option<f64>) -> String {
    match (baseline, real) {
        (Some(b), Some(r)) if r > 0.0 => format!("{:.1}x", b / r),
        _ => "n/a".to_owned(),
    }
}

/// Whether `per_iter / secs` reaches `target`.
fn verdict(secs: Option<f64>, per_iter: f64, target: f64) -> &'static str {
    match secs {
        Some(s) if per_iter / s >= target => "met",
        Some(_) => "MISSED",
        None => "n/a",
    }
}

/// Print a summary line now and keep it for the final recap.
fn say(report: &mut Vec<String>, line: String) {
    println!("{line}");
    report.push(line);
}

// ---------------------------------------------------------------------------------------------------------------
// log/append
// ---------------------------------------------------------------------------------------------------------------

fn bench_append(c: &mut Criterion, measuring: bool, report: &mut Vec<String>) {
    let (movers, pool_ticks) = if measuring {
        (MOVERS, POOL_TICKS)
    } else {
        (2 * TICK_ROWS, 2)
    };
    let mut world = World::new(movers);
    let pool: Vec<Vec<Changeset>> = (0..pool_ticks)
        .map(|_| (0..TICK_ROWS).map(|_| world.move_tx()).collect())
        .collect();
    let record_bytes = encode(1, &pool[0]).payload_len();
    let rows = TICK_ROWS as f64;
    let dir = disk_dir("locus-log-bench-append-");

    let mut group = c.benchmark_group("log/append");
    group
        .throughput(Throughput::Elements(TICK_ROWS as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // Real: one record per tick, one fsync per record.
    let per_record = Tally::default();
    {
        let mut log = new_log(&dir.path().join("per-record"), &world.db);
        let mut tick = 0_u64;
        group.bench_function("tick_1000_rows_fsync_per_record", |b| {
            b.iter_custom(|iters| {
                if log.snapshot_due(Tick(tick)) {
                    log.snapshot(&EncodedSnapshot::new(Tick(tick), &world.db))
                        .expect("snapshot");
                }
                let start = Instant::now();
                for _ in 0..iters {
                    tick += 1;
                    let mut record = encode(tick, &pool[tick as usize % pool.len()]);
                    log.append(&mut record).expect("append");
                    black_box(log.sync().expect("sync"));
                }
                let elapsed = start.elapsed();
                per_record.add(iters, elapsed);
                elapsed
            });
        });
    }

    // Baseline: every transaction its own record (own tick) and its own fsync. 1,000 fsyncs per iteration, so
    // flat sampling with few iterations.
    let per_tx = Tally::default();
    {
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500));
        let mut log = new_log(&dir.path().join("per-transaction"), &world.db);
        let mut tick = 0_u64;
        let mut round = 0_usize;
        group.bench_function("fsync_per_transaction", |b| {
            b.iter_custom(|iters| {
                if log.snapshot_due(Tick(tick)) {
                    log.snapshot(&EncodedSnapshot::new(Tick(tick), &world.db))
                        .expect("snapshot");
                }
                let start = Instant::now();
                for _ in 0..iters {
                    round += 1;
                    for c in &pool[round % pool.len()] {
                        tick += 1;
                        let mut record = EncodedRecord::from_changesets(Tick(tick), [c]);
                        log.append(&mut record).expect("append");
                        black_box(log.sync().expect("sync"));
                    }
                }
                let elapsed = start.elapsed();
                per_tx.add(iters, elapsed);
                elapsed
            });
        });
    }

    // Pipelined: the tick thread encodes and hands over, the durability thread appends and group-commits.
    let pipelined = Tally::default();
    {
        group
            .sample_size(20)
            .sampling_mode(SamplingMode::Auto)
            .warm_up_time(Duration::from_secs(1));
        let mut durability = Durability::start(new_log(&dir.path().join("durability"), &world.db));
        let mut tick = 0_u64;
        group.bench_function("durability_thread_1000_rows", |b| {
            b.iter_custom(|iters| {
                if durability.snapshot_due(Tick(tick)) {
                    durability
                        .snapshot(EncodedSnapshot::new(Tick(tick), &world.db))
                        .expect("snapshot");
                    durability.flush().expect("flush");
                }
                let start = Instant::now();
                for _ in 0..iters {
                    tick += 1;
                    let record = encode(tick, &pool[tick as usize % pool.len()]);
                    durability.append(record).expect("append");
                }
                let durable = durability.flush().expect("flush");
                let elapsed = start.elapsed();
                assert_eq!(durable, Tick(tick), "everything handed over is durable");
                pipelined.add(iters, elapsed);
                elapsed
            });
        });
        durability
            .shutdown()
            .expect("shut down the durability thread");
    }
    group.finish();

    let (real, base, piped) = (per_record.mean(), per_tx.mean(), pipelined.mean());
    say(
        report,
        format!(
            "log/append  real (a record of {TICK_ROWS} single-row transactions, {record_bytes} B, fsync per record): \
             {} ({}/record; target >= 500 k row changes/s durable: {})  baseline (fsync per transaction, \
             {TICK_ROWS} records of 1 transaction): {} ({}/transaction)  ratio {}",
            rate(real, rows, "row changes"),
            duration(real),
            verdict(real, rows, 500e3),
            rate(base, rows, "row changes"),
            duration(base.map(|s| s / rows)),
            ratio(base, real),
        ),
    );
    say(
        report,
        format!(
            "log/append  durability thread (encode on the caller, append + group commit on its thread, flush per \
             sample): {} ({}/record; target >= 500 k row changes/s durable: {})  vs serial fsync per record: {} \
             (ratio {})  baseline fsync per transaction: {} (ratio {})",
            rate(piped, rows, "row changes"),
            duration(piped),
            verdict(piped, rows, 500e3),
            rate(real, rows, "row changes"),
            ratio(real, piped),
            rate(base, rows, "row changes"),
            ratio(base, piped),
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// log/recover
// ---------------------------------------------------------------------------------------------------------------

/// The recovery benchmark's data: a log on disk, and the same transactions in memory for the baselines.
struct RecoveryLog {
    dir: TempDir,
    /// The table's rows at tick 0 (the snapshot), sorted.
    initial: Vec<Vec<u8>>,
    /// The table's rows after the last tick, sorted.
    last: Vec<Vec<u8>>,
    table: TableId,
    /// Every transaction, in commit order.
    changesets: Vec<Changeset>,
    row_changes: u64,
    records: u64,
}

/// Write a snapshot of `movers` rows and `ticks` records of `per_tick` transactions each.
fn build_recovery_log(movers: usize, ticks: usize, per_tick: usize) -> RecoveryLog {
    let mut world = World::new(movers);
    let initial = world.rows();
    let dir = disk_dir("locus-log-bench-recover-");
    let mut log = new_log(dir.path(), &world.db);
    let mut changesets = Vec::with_capacity(ticks * per_tick);
    let mut row_changes = 0;
    for tick in 1..=ticks {
        let mut record = EncodedRecord::new(Tick(tick as u64));
        for i in 0..per_tick {
            let c = if i % RESPAWN_EVERY == RESPAWN_EVERY - 1 {
                world.respawn_tx()
            } else {
                world.move_tx()
            };
            record.push(&c);
            changesets.push(c);
        }
        row_changes += record.row_changes();
        log.append(&mut record).expect("append");
    }
    log.sync().expect("sync");
    RecoveryLog {
        dir,
        initial,
        last: world.rows(),
        table: world.table,
        changesets,
        row_changes,
        records: ticks as u64,
    }
}

impl RecoveryLog {
    fn open(&self) -> (Log, locus_log::Recovered) {
        let storage = FsStorage::open(self.dir.path()).expect("open the directory");
        Log::open(Arc::new(storage), log_config(), StoreConfig::default()).expect("recover")
    }

    /// A database holding the snapshot's rows, as recovery starts from.
    fn initial_db(&self) -> Database {
        let mut db = Database::new(StoreConfig::default());
        let table = db.create_table(mover_def()).expect("create table");
        assert_eq!(table, self.table);
        db.load(table, self.initial.iter().map(Vec::as_slice))
            .expect("load");
        db
    }
}

/// The naive replay with ordinary store transactions from owned rows: deletes by primary key, updates, inserts.
fn replay_with_transactions(db: &mut Database, changeset: &Changeset) {
    let mut tx = db.begin();
    for t in &changeset.tables {
        for old in &t.deletes {
            let key = tx
                .table(t.table)
                .expect("table exists")
                .primary_key_of(old)
                .expect("a valid row");
            tx.delete(t.table, &key).expect("delete");
        }
        for u in &t.updates {
            tx.update(t.table, &u.new).expect("update");
        }
        for new in &t.inserts {
            tx.insert(t.table, new).expect("insert");
        }
    }
    black_box(tx.commit());
}

/// Run a baseline replay over fresh copies of the snapshot's state (made outside the timing).
fn baseline_replay(
    b: &mut Bencher<'_>,
    tally: &Tally,
    data: &RecoveryLog,
    mut replay: impl FnMut(&mut Database, &Changeset),
) {
    b.iter_custom(|iters| {
        let mut elapsed = Duration::ZERO;
        for _ in 0..iters {
            let mut db = data.initial_db();
            let start = Instant::now();
            for c in &data.changesets {
                replay(&mut db, c);
            }
            elapsed += start.elapsed();
            black_box(&db);
        }
        tally.add(iters, elapsed);
        elapsed
    });
}

fn bench_recover(c: &mut Criterion, measuring: bool, report: &mut Vec<String>) {
    let (movers, ticks) = if measuring {
        (MOVERS, RECOVER_TICKS)
    } else {
        (2 * TICK_ROWS, 10)
    };
    let built = Instant::now();
    let data = build_recovery_log(movers, ticks, TICK_ROWS);
    let build_secs = built.elapsed().as_secs_f64();
    let transactions = data.changesets.len() as u64;
    let log_bytes = dir_bytes(data.dir.path());

    // Check once, outside the timing, that recovery brings back exactly what was written.
    let (_, recovered) = data.open();
    assert_eq!(recovered.transactions, transactions);
    assert_eq!(recovered.records, data.records);
    assert_eq!(recovered.row_changes, data.row_changes);
    assert_eq!(recovered.tick, Tick(ticks as u64));
    assert!(recovered.warnings.is_empty(), "{:?}", recovered.warnings);
    assert!(
        sorted_rows(&recovered.db, data.table) == data.last,
        "recovered rows differ from the written ones"
    );
    say(
        report,
        format!(
            "log/recover  data: snapshot of {movers} rows + {} records, {} bytes on disk, built in {build_secs:.1} s; \
             Recovered::transactions = {}, row_changes = {}, rows = {} (checked equal to the written state)",
            recovered.records,
            log_bytes,
            recovered.transactions,
            recovered.row_changes,
            recovered.db.table(data.table).map_or(0, |t| t.len()),
        ),
    );
    drop(recovered);
    // The baselines must be able to replay the same changesets.
    {
        let mut db = data.initial_db();
        for c in &data.changesets {
            db.apply(c).expect("apply");
        }
        assert!(sorted_rows(&db, data.table) == data.last);
    }

    let mut group = c.benchmark_group("log/recover");
    group
        .throughput(Throughput::Elements(transactions))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let real = Tally::default();
    group.bench_function("open_1m_transactions", |b| timed(b, &real, || data.open()));
    // About 1 s an iteration: ten of them need more than 5 s.
    group.measurement_time(Duration::from_secs(12));
    let apply = Tally::default();
    group.bench_function("naive_apply_1m", |b| {
        baseline_replay(b, &apply, &data, |db, c| db.apply(c).expect("apply"));
    });
    group.measurement_time(Duration::from_secs(5));
    let txs = Tally::default();
    group.bench_function("naive_tx_1m", |b| {
        baseline_replay(b, &txs, &data, replay_with_transactions);
    });
    group.finish();

    let n = transactions as f64;
    let (real, apply, txs) = (real.mean(), apply.mean(), txs.mean());
    say(
        report,
        format!(
            "log/recover  real (Log::open: read, checksum, replay {transactions} transactions, rebuild indexes): {} \
             ({}; {:.0} MB/s of log; target >= 1 M transactions/s: {})  baseline (Database::apply per changeset, \
             from owned changesets in memory): {} ({})  ratio {}  baseline (begin/update/commit per transaction, \
             from owned rows in memory): {} ({})  ratio {}",
            rate(real, n, "transactions"),
            duration(real),
            real.map_or(0.0, |s| log_bytes as f64 / s / 1e6),
            verdict(real, n, 1e6),
            rate(apply, n, "transactions"),
            duration(apply),
            ratio(apply, real),
            rate(txs, n, "transactions"),
            duration(txs),
            ratio(txs, real),
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// log/snapshot
// ---------------------------------------------------------------------------------------------------------------

/// Rows of the snapshot benchmark's table.
const SNAPSHOT_ROWS: usize = 1_000_000;
/// Move transactions per sample of the copy-on-write benchmarks.
const COW_MOVES: usize = 100_000;

fn bench_snapshot(c: &mut Criterion, measuring: bool, report: &mut Vec<String>) {
    let (rows, moves) = if measuring {
        (SNAPSHOT_ROWS, COW_MOVES)
    } else {
        (2 * TICK_ROWS, TICK_ROWS)
    };
    let mut world = World::new(rows);
    // Check once, outside the timing, that the image encodes to the same bytes.
    let encoded = EncodedSnapshot::new(Tick(1), &world.db);
    assert_eq!(
        EncodedSnapshot::of_frozen(Tick(1), &world.db.freeze()).bytes(),
        encoded.bytes()
    );
    let bytes = encoded.bytes().len();
    drop(encoded);

    let mut group = c.benchmark_group("log/snapshot");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let encode = Tally::default();
    group.bench_function("encode_1m_rows", |b| {
        timed(b, &encode, || EncodedSnapshot::new(Tick(1), &world.db));
    });
    let freeze = Tally::default();
    group.bench_function("freeze_1m_rows", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let images = black_box(world.db.freeze());
                elapsed += start.elapsed();
                // Released on the durability thread in the server, not by the caller.
                drop(images);
            }
            freeze.add(iters, elapsed);
            elapsed
        });
    });
    let mut moves_with = |b: &mut Bencher<'_>, tally: &Tally, frozen: bool| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let images = frozen.then(|| world.db.freeze());
                let start = Instant::now();
                for _ in 0..moves {
                    black_box(world.move_tx());
                }
                elapsed += start.elapsed();
                drop(images);
            }
            tally.add(iters, elapsed);
            elapsed
        });
    };
    let plain = Tally::default();
    group.bench_function("moves_100k", |b| moves_with(b, &plain, false));
    let cow = Tally::default();
    group.bench_function("moves_100k_while_frozen", |b| moves_with(b, &cow, true));
    group.finish();

    let (encode, freeze, plain, cow) = (encode.mean(), freeze.mean(), plain.mean(), cow.mean());
    say(
        report,
        format!(
            "log/snapshot  the tick thread's share of a snapshot of {rows} rows ({bytes} B encoded): real (Database::freeze, the durability thread encodes): {}  baseline (EncodedSnapshot::new on the tick thread): {}  ratio {}",
            duration(freeze),
            duration(encode),
            ratio(encode, freeze),
        ),
    );
    say(
        report,
        format!(
            "log/snapshot  {moves} move transactions while the durability thread holds the images (each row copied on its first write): {} ({}/transaction)  without images: {} ({}/transaction)  cost of copy-on-write (with/without): {}",
            duration(cow),
            duration(cow.map(|s| s / moves as f64)),
            duration(plain),
            duration(plain.map(|s| s / moves as f64)),
            ratio(cow, plain),
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let measuring = bench_cli::measuring(&args);
    let filter = filter_arg(&args);
    let mut report = Vec::new();
    if !measuring {
        say(
            &mut report,
            "log/  (a test run: small data, one iteration each, maybe unoptimized; the figures are not measurements)"
                .to_owned(),
        );
    }
    let mut c = Criterion::default().configure_from_args();
    if wanted(
        filter,
        &[
            "log/append/tick_1000_rows_fsync_per_record",
            "log/append/fsync_per_transaction",
            "log/append/durability_thread_1000_rows",
        ],
    ) {
        bench_append(&mut c, measuring, &mut report);
    }
    if wanted(
        filter,
        &[
            "log/recover/open_1m_transactions",
            "log/recover/naive_apply_1m",
            "log/recover/naive_tx_1m",
        ],
    ) {
        bench_recover(&mut c, measuring, &mut report);
    }
    if wanted(
        filter,
        &[
            "log/snapshot/encode_1m_rows",
            "log/snapshot/freeze_1m_rows",
            "log/snapshot/moves_100k",
            "log/snapshot/moves_100k_while_frozen",
        ],
    ) {
        bench_snapshot(&mut c, measuring, &mut report);
    }
    c.final_summary();
    if !report.is_empty() {
        println!("\n==== locus-log benchmark summary ====");
        for line in &report {
            println!("{line}");
        }
    }
}

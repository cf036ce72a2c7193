//! Integration tests of `locus-log`: recovery against a model of what was acknowledged, under injected faults,
//! torn tails at every byte, bit flips in every record and snapshot, a full disk, and real `kill -9` crashes of a
//! child process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::Duration;

use locus_log::storage::{Fault, FsStorage, MemStorage, Storage};
use locus_log::{
    AppendError, Durability, DurabilityError, EncodedRecord, EncodedSnapshot, Log, LogConfig,
    OpenError, Recovered, RecoveryWarning, SyncPolicy, format,
};
use locus_store::{Changeset, Database, StoreConfig};
use locus_types::{ColumnType, IndexKind, TableDef, TableId, Tick, Value, Vec2, codec};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every table's rows (sorted) and auto_inc sequence: what "the same state" means.
type Dump = Vec<(Vec<Vec<u8>>, u64)>;

fn dump(db: &Database) -> Dump {
    db.tables()
        .map(|t| {
            let mut rows: Vec<Vec<u8>> = t.iter().map(<[u8]>::to_vec).collect();
            rows.sort();
            (rows, t.next_auto_inc())
        })
        .collect()
}

fn unit_def() -> TableDef {
    TableDef::builder("unit")
        .column("id", ColumnType::U64)
        .column("name", ColumnType::String)
        .column("pos", ColumnType::Vec2)
        .column("hp", ColumnType::I32)
        .primary_key("id")
        .auto_inc()
        .index("name", IndexKind::Unique)
        .index("pos", IndexKind::Spatial)
        .index("hp", IndexKind::BTree)
        .build()
        .expect("valid")
}

fn item_def() -> TableDef {
    TableDef::builder("item")
        .column("id", ColumnType::U32)
        .column("owner", ColumnType::U64)
        .primary_key("id")
        .build()
        .expect("valid")
}

/// A random workload over two tables, with unique-name swaps inside one transaction (which a naive replay order
/// would trip over), deletes, inserts and moves.
struct World {
    db: Database,
    unit: TableId,
    item: TableId,
    rng: ChaCha8Rng,
    unit_cols: TableDef,
    item_cols: TableDef,
}

impl World {
    fn new(seed: u64) -> World {
        let mut db = Database::default();
        let unit = db.create_table(unit_def()).expect("create");
        let item = db.create_table(item_def()).expect("create");
        World {
            db,
            unit,
            item,
            rng: ChaCha8Rng::seed_from_u64(seed),
            unit_cols: unit_def(),
            item_cols: item_def(),
        }
    }

    fn unit_row(&self, id: u64, name: &str, pos: Vec2, hp: i32) -> Vec<u8> {
        codec::encode_row(
            &self.unit_cols.columns,
            &[
                Value::U64(id),
                Value::String(name.into()),
                Value::Vec2(pos),
                Value::I64(hp.into()),
            ],
        )
        .expect("row")
    }

    fn unit_rows(&self) -> Vec<Vec<Value>> {
        let t = self.db.table(self.unit).expect("table");
        t.iter().map(|r| t.decode(r).expect("decode")).collect()
    }

    /// One transaction of 1–4 random operations.
    fn transaction(&mut self) -> Changeset {
        let ops = self.rng.random_range(1..=4);
        let mut pending: Vec<(u8, Vec<u8>, Option<Value>)> = Vec::new();
        for _ in 0..ops {
            let units = self.unit_rows();
            let op = self.rng.random_range(0..10u8);
            let pos = Vec2::new(
                self.rng.random_range(-500.0..500.0),
                self.rng.random_range(-500.0..500.0),
            );
            let hp = self.rng.random_range(0..100);
            let name = format!("u{}", self.rng.random_range(0..60));
            match op {
                0..=2 => pending.push((0, self.unit_row(0, &name, pos, hp), None)),
                3..=5 if !units.is_empty() => {
                    let u = &units[self.rng.random_range(0..units.len())];
                    let (Value::U64(id), Value::String(n)) = (&u[0], &u[1]) else {
                        unreachable!()
                    };
                    pending.push((1, self.unit_row(*id, n, pos, hp), None));
                }
                6 if units.len() >= 2 => {
                    // Swap two names: A -> tmp, B -> A's, A -> B's.
                    let a = &units[0];
                    let b = &units[units.len() - 1];
                    let (Value::U64(ia), Value::String(na)) = (&a[0], &a[1]) else {
                        unreachable!()
                    };
                    let (Value::U64(ib), Value::String(nb)) = (&b[0], &b[1]) else {
                        unreachable!()
                    };
                    pending.push((1, self.unit_row(*ia, "swap-tmp", pos, hp), None));
                    pending.push((1, self.unit_row(*ib, na, pos, hp), None));
                    pending.push((1, self.unit_row(*ia, nb, pos, hp), None));
                }
                7 if !units.is_empty() => {
                    let u = &units[self.rng.random_range(0..units.len())];
                    pending.push((2, Vec::new(), Some(u[0].clone())));
                }
                8 => {
                    let id = self.rng.random_range(0..40u32);
                    let row = codec::encode_row(
                        &self.item_cols.columns,
                        &[
                            Value::U64(id.into()),
                            Value::U64(self.rng.random_range(0..9)),
                        ],
                    )
                    .expect("row");
                    pending.push((3, row, None));
                }
                _ => {
                    let id = self.rng.random_range(0..40u32);
                    pending.push((4, Vec::new(), Some(Value::U64(id.into()))));
                }
            }
        }
        let (unit, item) = (self.unit, self.item);
        let fail = self.rng.random_range(0..8) == 0;
        let mut tx = self.db.begin();
        for (op, row, key) in pending {
            // Conflicting operations (a taken name, a missing key) fail and are skipped, as a reducer would.
            let _ = match op {
                0 => tx.insert(unit, &row).map(drop).map_err(drop),
                1 => tx.update(unit, &row).map(drop).map_err(drop),
                2 => tx.delete(unit, &key.expect("key")).map(drop).map_err(drop),
                3 => tx
                    .insert(item, &row)
                    .map(drop)
                    .or_else(|_| tx.update(item, &row).map(drop))
                    .map_err(drop),
                _ => tx.delete(item, &key.expect("key")).map(drop).map_err(drop),
            };
        }
        if fail {
            // A failed reducer: rolled back, not logged.
            tx.rollback();
            Changeset::default()
        } else {
            tx.commit()
        }
    }

    /// One tick: 0–3 transactions (a tick may change nothing).
    fn tick(&mut self, tick: Tick) -> EncodedRecord {
        let n = self.rng.random_range(0..=3);
        let changes: Vec<Changeset> = (0..n).map(|_| self.transaction()).collect();
        EncodedRecord::from_changesets(tick, &changes)
    }
}

/// Recovery kept every acknowledged tick and no partial one: its state is exactly the state after its tick, and
/// that is the state after some tick from the last acknowledged to the last attempted. (Its tick may be before the
/// acknowledged one when the ticks between changed nothing: those have no record.)
fn assert_recovered(
    recovered: &Recovered,
    history: &BTreeMap<u64, Dump>,
    acked: Tick,
    attempted: Tick,
    context: &str,
) {
    let state = dump(&recovered.db);
    assert!(
        recovered.tick <= attempted,
        "{context}: recovered {:?} > attempted {attempted:?}",
        recovered.tick
    );
    assert!(
        state == history[&recovered.tick.0],
        "{context}: the recovered state is not the state after its tick {:?}",
        recovered.tick
    );
    assert!(
        (acked.0..=attempted.0).any(|t| history[&t] == state),
        "{context}: recovered tick {:?} lost acknowledged tick {acked:?}",
        recovered.tick
    );
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        keep_snapshots: 2,
        snapshot_every_ticks: Some(9),
        snapshot_every_bytes: None,
        ..LogConfig::default()
    }
}

fn open(storage: &MemStorage, config: LogConfig) -> Result<(Log, Recovered), OpenError> {
    Log::open(Arc::new(storage.clone()), config, StoreConfig::default())
}

/// Run `ticks` ticks of `world` into `log`, syncing each; returns the state after every tick (by tick).
fn run(log: &mut Log, world: &mut World, from: u64, ticks: u64, history: &mut BTreeMap<u64, Dump>) {
    for t in from..from + ticks {
        let tick = Tick(t);
        let mut record = world.tick(tick);
        log.append(&mut record).expect("append");
        assert_eq!(log.sync().expect("sync"), tick);
        history.insert(t, dump(&world.db));
        if log.snapshot_due(tick) {
            log.snapshot(&EncodedSnapshot::new(tick, &world.db))
                .expect("snapshot");
        }
    }
}

/// A new log with the world's schema snapshotted at tick 0.
fn new_log(storage: &MemStorage, config: LogConfig, world: &World) -> (Log, BTreeMap<u64, Dump>) {
    let (mut log, recovered) = open(storage, config).expect("open");
    assert!(recovered.is_new());
    log.snapshot(&EncodedSnapshot::new(Tick(0), &world.db))
        .expect("snapshot");
    (log, BTreeMap::from([(0, dump(&world.db))]))
}

#[test]
fn recovery_restores_every_tick_across_snapshots_segments_and_restarts() {
    let storage = MemStorage::new();
    let mut world = World::new(1);
    let (mut log, mut history) = new_log(&storage, small_config(), &world);
    run(&mut log, &mut world, 1, 60, &mut history);
    drop(log);

    let (mut log, recovered) = open(&storage, small_config()).expect("recover");
    assert!(recovered.warnings.is_empty(), "{:?}", recovered.warnings);
    assert_recovered(&recovered, &history, Tick(60), Tick(60), "restart");
    assert_eq!(recovered.schema, Some(vec![unit_def(), item_def()]));
    assert!(recovered.snapshot.is_some_and(|s| s.0 >= 54));
    // Spatial indexes are rebuilt: a radius query finds exactly what a scan finds.
    let t = recovered.db.table(world.unit).expect("table");
    let by_scan = t
        .iter()
        .filter(|r| {
            let v = t.decode(r).expect("decode");
            matches!(v[2], Value::Vec2(p) if p.length() <= 300.0)
        })
        .count();
    assert_eq!(
        t.within_radius(Vec2::ZERO, 300.0).expect("query").count(),
        by_scan
    );

    // Old files are removed: two snapshots, and only segments after the older one.
    let files = storage.list().expect("list");
    let snaps = files.iter().filter(|f| f.ends_with(".snap")).count();
    assert_eq!(snaps, 2, "{files:?}");
    let oldest = log.snapshots()[0];
    for f in files.iter().filter_map(|f| format::parse_segment_name(f)) {
        assert!(
            f > oldest || log.snapshots().len() < 2,
            "segment {f:?} behind {oldest:?}: {files:?}"
        );
    }

    // The recovered log goes on, and a second restart sees both runs.
    world.db = recovered.db;
    run(&mut log, &mut world, 61, 25, &mut history);
    drop(log);
    let (_, again) = open(&storage, small_config()).expect("recover");
    assert_recovered(&again, &history, Tick(85), Tick(85), "second restart");
}

#[test]
fn empty_ticks_advance_the_durable_tick_without_writing() {
    let storage = MemStorage::new();
    let world = World::new(2);
    let (mut log, _) = new_log(&storage, LogConfig::default(), &world);
    let before = storage.total_bytes();
    log.append(&mut EncodedRecord::new(Tick(5)))
        .expect("append");
    assert_eq!(log.sync().expect("sync"), Tick(5));
    assert_eq!(
        storage.total_bytes(),
        before,
        "an empty tick writes nothing"
    );
    assert!(matches!(
        log.append(&mut EncodedRecord::new(Tick(5))),
        Err(AppendError::OutOfOrder { .. })
    ));
}

#[test]
fn a_new_log_refuses_records_before_its_first_snapshot() {
    let storage = MemStorage::new();
    let (mut log, _) = open(&storage, LogConfig::default()).expect("open");
    let mut world = World::new(3);
    let mut record = world.tick(Tick(1));
    assert!(matches!(
        log.append(&mut record),
        Err(AppendError::NoSnapshot)
    ));
}

/// Faults at random points — failing writes (short), a full disk, failing fsyncs — then a crash that keeps only
/// what was synced (plus a random torn prefix of the rest). The recovered state must be exactly the state after
/// some tick at or after the last acknowledged one: nothing acknowledged lost, no partial tick.
#[test]
fn injected_faults_never_lose_an_acknowledged_tick() {
    let mut outcomes: BTreeMap<&str, u32> = BTreeMap::new();
    for seed in 0..300u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let storage = MemStorage::new();
        storage.set_torn_writes(Some(seed));
        let mut world = World::new(seed);
        let (mut log, mut history) = new_log(&storage, small_config(), &world);
        let fault = match seed % 4 {
            0 => Fault::Io {
                after: rng.random_range(0..12_000),
            },
            1 => Fault::Full {
                capacity: storage.total_bytes() + rng.random_range(0..12_000),
            },
            2 => Fault::Sync {
                after: rng.random_range(0..40),
            },
            _ => Fault::SyncDir {
                after: rng.random_range(0..6),
            },
        };
        storage.inject(fault);
        let mut acked = Tick(0);
        let mut attempted = Tick(0);
        for t in 1..=80 {
            let tick = Tick(t);
            let mut record = world.tick(tick);
            history.insert(t, dump(&world.db));
            attempted = tick;
            if log.append(&mut record).is_err() {
                break;
            }
            match log.sync() {
                Ok(durable) => acked = durable,
                Err(_) => break,
            }
            if log.snapshot_due(tick) {
                // A failed snapshot leaves the log going; a failed sync before it stops it.
                let _ = log.snapshot(&EncodedSnapshot::new(tick, &world.db));
                if log.failure().is_some() {
                    break;
                }
                acked = log.durable_tick();
            }
        }
        let failed = log.failure().is_some();
        drop(log);
        let crashed = storage.crash();
        let (_, recovered) = open(&crashed, small_config())
            .unwrap_or_else(|e| panic!("seed {seed} ({fault:?}): recovery failed: {e}"));
        assert_recovered(
            &recovered,
            &history,
            acked,
            attempted,
            &format!("seed {seed} ({fault:?})"),
        );
        *outcomes
            .entry(if failed { "failed" } else { "survived" })
            .or_default() += 1;
        if recovered
            .warnings
            .iter()
            .any(|w| matches!(w, RecoveryWarning::TornTail { .. }))
        {
            *outcomes.entry("torn tail cut").or_default() += 1;
        }
        if recovered.tick > acked {
            *outcomes.entry("unacknowledged tick kept").or_default() += 1;
        }
    }
    writeln!(std::io::stderr(), "injected faults, 300 runs: {outcomes:?}").expect("stderr");
    // The faults must actually have hit, and crashes actually torn records.
    assert!(outcomes["failed"] > 250, "{outcomes:?}");
    assert!(
        outcomes.get("torn tail cut").copied().unwrap_or(0) > 10,
        "{outcomes:?}"
    );
}

#[test]
fn a_full_disk_stops_writes_with_a_clear_error_and_loses_nothing_durable() {
    let storage = MemStorage::new();
    let mut world = World::new(4);
    let (mut log, mut history) = new_log(&storage, small_config(), &world);
    run(&mut log, &mut world, 1, 5, &mut history);
    storage.inject(Fault::Full {
        capacity: storage.total_bytes() + 300,
    });
    let mut t = 6;
    let err = loop {
        let mut record = world.tick(Tick(t));
        match log.append(&mut record).map(|()| log.sync()) {
            Ok(Ok(_)) => history.insert(t, dump(&world.db)),
            Ok(Err(e)) => panic!("sync failed instead of append: {e}"),
            Err(e) => break e,
        };
        t += 1;
        assert!(t < 200, "the disk never filled");
    };
    let AppendError::Io(failure) = &err else {
        panic!("expected an I/O error, got {err}");
    };
    assert!(failure.is_disk_full());
    assert!(
        err.to_string().starts_with("disk full: append to log-"),
        "{err}"
    );
    // Stopped for good, even with space freed.
    storage.clear_fault();
    let mut next = world.tick(Tick(t + 1));
    assert!(matches!(
        log.append(&mut next),
        Err(AppendError::Stopped(_))
    ));
    assert!(log.sync().is_err());
    drop(log);
    let (_, recovered) = open(&storage.crash(), small_config()).expect("recover");
    assert_recovered(&recovered, &history, Tick(t - 1), Tick(t - 1), "full disk");
}

#[test]
fn the_durability_thread_reports_a_full_disk_and_stops_the_watermark() {
    let storage = MemStorage::new();
    let mut world = World::new(5);
    let (log, _) = new_log(&storage, small_config(), &world);
    let mut durability = Durability::start(log);
    let watermark = durability.watermark();
    for t in 1..=5 {
        durability.append(world.tick(Tick(t))).expect("append");
    }
    assert_eq!(durability.flush().expect("flush"), Tick(5));
    storage.inject(Fault::Full {
        capacity: storage.total_bytes(),
    });
    let mut t = 6;
    let err = loop {
        let mut record = world.tick(Tick(t));
        while record.is_empty() {
            record = world.tick(Tick(t));
        }
        if let Err(e) = durability
            .append(record)
            .and_then(|()| durability.flush().map(drop))
        {
            break e;
        }
        t += 1;
    };
    assert!(
        matches!(&err, DurabilityError::Failed(m) if m.contains("disk full")),
        "{err}"
    );
    assert_eq!(watermark.tick(), Tick(5));
    assert!(matches!(
        watermark.wait_for(Tick(6), Duration::from_secs(5)),
        Err(DurabilityError::Failed(_))
    ));
    assert!(durability.shutdown().is_err());
}

#[test]
fn the_durability_thread_group_commits_and_publishes_the_watermark() {
    for (policy, frozen) in [
        (SyncPolicy::EveryRecord, false),
        (SyncPolicy::EveryRecord, true),
        (SyncPolicy::Interval(Duration::from_millis(5)), false),
        (SyncPolicy::Interval(Duration::from_millis(5)), true),
    ] {
        let storage = MemStorage::new();
        let mut world = World::new(6);
        let config = LogConfig {
            sync: policy,
            ..small_config()
        };
        let (log, mut history) = new_log(&storage, config, &world);
        let mut durability = Durability::start(log);
        let watermark = durability.watermark();
        let mut last_snapshot = Tick(0);
        for t in 1..=50 {
            let tick = Tick(t);
            durability.append(world.tick(tick)).expect("append");
            history.insert(t, dump(&world.db));
            if durability.snapshot_due(tick) {
                // A frozen image is encoded on the durability thread while the next ticks change the rows.
                if frozen {
                    durability
                        .snapshot_frozen(tick, world.db.freeze())
                        .expect("snapshot");
                } else {
                    durability
                        .snapshot(EncodedSnapshot::new(tick, &world.db))
                        .expect("snapshot");
                }
                last_snapshot = tick;
            }
        }
        assert!(
            watermark
                .wait_for(Tick(50), Duration::from_secs(10))
                .expect("no failure")
        );
        // Out-of-order requests are refused at once, without harming the log.
        assert!(matches!(
            durability.append(EncodedRecord::new(Tick(50))),
            Err(DurabilityError::Rejected(_))
        ));
        assert!(matches!(
            durability.snapshot_frozen(Tick(49), world.db.freeze()),
            Err(DurabilityError::Rejected(_))
        ));
        // An empty tick moves the watermark.
        durability
            .append(EncodedRecord::new(Tick(51)))
            .expect("append");
        assert_eq!(durability.flush().expect("flush"), Tick(51));
        let log = durability.shutdown().expect("shutdown");
        assert_eq!(log.durable_tick(), Tick(51));
        drop(log);
        let (_, recovered) = open(&storage.crash(), config).expect("recover");
        assert!(last_snapshot > Tick(0));
        assert_eq!(recovered.snapshot, Some(last_snapshot), "{policy:?}");
        assert_eq!(
            dump(&recovered.db),
            history[&50],
            "{policy:?} frozen {frozen}"
        );
        // The newest snapshot alone holds the state of its tick.
        let lone = storage.crash();
        for name in lone.list().expect("list") {
            if name.ends_with(".seg") {
                lone.remove(&name).expect("remove a segment");
            }
        }
        let (_, from_snapshot) = open(&lone, config).expect("recover from the snapshot alone");
        assert_eq!(from_snapshot.tick, last_snapshot);
        assert_eq!(
            dump(&from_snapshot.db),
            history[&last_snapshot.0],
            "{policy:?} frozen {frozen}"
        );
    }
}

#[test]
fn a_frozen_image_is_the_database_as_it_was_when_frozen() {
    let mut world = World::new(12);
    for t in 1..=20 {
        world.tick(Tick(t));
    }
    let expected = EncodedSnapshot::new(Tick(20), &world.db);
    let before = dump(&world.db);
    let frozen = world.db.freeze();
    assert_eq!(
        EncodedSnapshot::of_frozen(Tick(20), &frozen).bytes(),
        expected.bytes(),
        "the same bytes as a snapshot of the live tables"
    );
    // Moves (same-length rows, overwritten in place when unshared), renames, deletes and inserts into reused slots.
    for t in 21..=60 {
        world.tick(Tick(t));
    }
    assert_ne!(dump(&world.db), before, "the workload changed the tables");
    assert_eq!(
        EncodedSnapshot::of_frozen(Tick(20), &frozen).bytes(),
        expected.bytes(),
        "the image did not change with the tables"
    );
    drop(frozen);
    // Unshared again: the tables go on as before.
    let after = dump(&world.db);
    world.tick(Tick(61));
    assert_ne!(dump(&world.db), after);
}

/// A log of `records` non-empty records in one segment; returns the storage, the segment's name and the offsets
/// of its records, and the state after each tick.
fn one_segment_log(records: u64) -> (MemStorage, String, Vec<usize>, BTreeMap<u64, Dump>) {
    let storage = MemStorage::new();
    let mut world = World::new(7);
    let config = LogConfig {
        snapshot_every_ticks: None,
        ..LogConfig::default()
    };
    let (mut log, mut history) = new_log(&storage, config, &world);
    let mut t = 0;
    let mut written = 0;
    while written < records {
        t += 1;
        let mut record = world.tick(Tick(t));
        if record.is_empty() {
            continue;
        }
        log.append(&mut record).expect("append");
        log.sync().expect("sync");
        written += 1;
        history.insert(written, dump(&world.db));
    }
    drop(log);
    let name = storage
        .list()
        .expect("list")
        .into_iter()
        .find(|f| f.ends_with(".seg"))
        .expect("a segment");
    let bytes = storage.file(&name).expect("file");
    let mut offsets = Vec::new();
    let mut at = format::SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        offsets.push(at);
        let h = format::parse_record_header(&bytes[at..]).expect("header");
        at += format::RECORD_HEADER_LEN + h.len as usize;
    }
    assert_eq!(offsets.len() as u64, records);
    (storage, name, offsets, history)
}

/// The state after the `n`th record of [`one_segment_log`].
fn nth(history: &BTreeMap<u64, Dump>, n: usize) -> &Dump {
    &history[&(n as u64)]
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_offset() {
    let (storage, name, offsets, history) = one_segment_log(5);
    let bytes = storage.file(&name).expect("file");
    let last = *offsets.last().expect("records");
    for cut in last..bytes.len() {
        let copy = storage.crash();
        copy.set_file(&name, bytes[..cut].to_vec());
        let (mut log, recovered) =
            open(&copy, LogConfig::default()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(dump(&recovered.db), *nth(&history, 4), "cut at {cut}");
        if cut == last {
            assert!(recovered.warnings.is_empty());
        } else {
            assert_eq!(
                recovered.warnings,
                vec![RecoveryWarning::TornTail {
                    file: name.clone(),
                    offset: last as u64,
                    bytes: (cut - last) as u64,
                }],
                "cut at {cut}"
            );
        }
        // The tail is cut on disk, so the log goes on cleanly after it.
        assert_eq!(copy.file(&name).expect("file").len(), last);
        let mut world = World::new(cut as u64);
        world.db = recovered.db;
        let mut record = world.tick(Tick(1000));
        while record.is_empty() {
            record = world.tick(Tick(1000));
        }
        log.append(&mut record).expect("append");
        log.sync().expect("sync");
        drop(log);
        let (_, again) = open(&copy, LogConfig::default()).expect("reopen");
        assert!(
            again.warnings.is_empty(),
            "cut at {cut}: {:?}",
            again.warnings
        );
        assert_eq!(
            dump(&again.db),
            dump(&world.db),
            "cut at {cut}: the record after the cut"
        );
    }
    // Zeros where the last record should be (the file grew, the data never landed) are a torn tail too.
    let mut zeroed = bytes.clone();
    zeroed[last..].fill(0);
    let copy = storage.crash();
    copy.set_file(&name, zeroed);
    let (_, recovered) = open(&copy, LogConfig::default()).expect("open");
    assert_eq!(dump(&recovered.db), *nth(&history, 4));
    assert_eq!(recovered.warnings.len(), 1);
}

#[test]
fn an_empty_last_segment_is_removed_so_the_next_record_names_its_own() {
    let (storage, name, _, history) = one_segment_log(1);
    // A crash right after the segment was created: its header and nothing else.
    storage.set_file(
        &name,
        format::segment_header(format::parse_segment_name(&name).expect("name")).to_vec(),
    );
    let (mut log, recovered) = open(&storage, LogConfig::default()).expect("open");
    assert!(storage.file(&name).is_none());
    assert_eq!(dump(&recovered.db), history[&0]);
    let mut world = World::new(77);
    world.db = recovered.db;
    let mut record = world.tick(Tick(50));
    while record.is_empty() {
        record = world.tick(Tick(50));
    }
    log.append(&mut record).expect("append");
    log.sync().expect("sync");
    drop(log);
    assert!(storage.file(&format::segment_name(Tick(50))).is_some());
    let (_, again) = open(&storage, LogConfig::default()).expect("reopen");
    assert_eq!(dump(&again.db), dump(&world.db));
}

#[test]
fn a_bit_flip_in_any_record_but_the_torn_tail_stops_recovery_naming_file_and_offset() {
    let (storage, name, offsets, history) = one_segment_log(4);
    let bytes = storage.file(&name).expect("file");
    let last = *offsets.last().expect("records");
    let mut cut = 0;
    for at in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[at] ^= 1 << (at % 8);
        let copy = storage.crash();
        copy.set_file(&name, flipped);
        let record = offsets.iter().rev().find(|o| **o <= at).copied();
        match open(&copy, LogConfig::default()) {
            Err(OpenError::Corrupt(c)) => {
                assert_eq!(c.file, name);
                assert_eq!(c.offset, record.unwrap_or(0) as u64, "flip at {at}: {c}");
            }
            Ok((_, recovered)) => {
                // Only a flip in the last record's payload looks like a torn write (a documented limit).
                assert!(
                    at >= last + format::RECORD_HEADER_LEN,
                    "flip at {at} was accepted"
                );
                assert_eq!(dump(&recovered.db), *nth(&history, 3));
                assert!(matches!(
                    recovered.warnings[..],
                    [RecoveryWarning::TornTail { offset, .. }] if offset == last as u64
                ));
                cut += 1;
            }
            Err(e) => panic!("flip at {at}: unexpected error {e}"),
        }
    }
    assert_eq!(cut, bytes.len() - last - format::RECORD_HEADER_LEN);
}

#[test]
fn damage_in_a_segment_before_the_last_is_never_taken_for_a_torn_tail() {
    let storage = MemStorage::new();
    let mut world = World::new(8);
    let config = LogConfig {
        snapshot_every_ticks: None,
        ..small_config()
    };
    let (mut log, mut history) = new_log(&storage, config, &world);
    run(&mut log, &mut world, 1, 40, &mut history);
    drop(log);
    let mut segments: Vec<String> = storage
        .list()
        .expect("list")
        .into_iter()
        .filter(|f| f.ends_with(".seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    let first = storage.file(&segments[0]).expect("file");
    // Its last record torn: an error, since later segments exist.
    let copy = storage.crash();
    copy.set_file(&segments[0], first[..first.len() - 1].to_vec());
    let err = open(&copy, config).expect_err("corrupt");
    assert!(
        matches!(&err, OpenError::Corrupt(c) if c.file == segments[0]),
        "{err}"
    );
    // A whole segment missing breaks the chain of ticks.
    let copy = storage.crash();
    copy.remove(&segments[1]).expect("remove");
    let err = open(&copy, config).expect_err("gap");
    assert!(
        matches!(&err, OpenError::Corrupt(c) if c.file == segments[2] && c.reason.contains("missing")),
        "{err}"
    );
    // Intact, it recovers everything.
    let (_, recovered) = open(&storage, config).expect("open");
    assert_eq!(dump(&recovered.db), history[&40]);
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_older_one_or_fails_naming_it() {
    let storage = MemStorage::new();
    let mut world = World::new(9);
    let (mut log, mut history) = new_log(&storage, small_config(), &world);
    run(&mut log, &mut world, 1, 20, &mut history);
    drop(log);
    let snaps = {
        let mut s: Vec<String> = storage
            .list()
            .expect("list")
            .into_iter()
            .filter(|f| f.ends_with(".snap"))
            .collect();
        s.sort();
        s
    };
    assert_eq!(snaps.len(), 2);
    let newest = storage.file(&snaps[1]).expect("file");
    for at in 0..newest.len() {
        let mut flipped = newest.clone();
        flipped[at] ^= 1 << (at % 8);
        let copy = storage.crash();
        copy.set_file(&snaps[1], flipped);
        let (_, recovered) =
            open(&copy, small_config()).unwrap_or_else(|e| panic!("flip at {at}: {e}"));
        assert_eq!(dump(&recovered.db), history[&20], "flip at {at}");
        assert!(
            matches!(&recovered.warnings[..], [RecoveryWarning::SnapshotDamaged(c)] if c.file == snaps[1]),
            "flip at {at}: {:?}",
            recovered.warnings
        );
        // Moved aside, so it is neither tried again nor counted among the snapshots kept for fallback.
        assert!(copy.file(&snaps[1]).is_none());
        assert!(
            copy.file(&format!("{}{}", snaps[1], locus_log::DAMAGED_SUFFIX))
                .is_some()
        );
    }
    // Both damaged: an error naming both.
    let copy = storage.crash();
    for s in &snaps {
        let mut bytes = storage.file(s).expect("file");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        copy.set_file(s, bytes);
    }
    let err = open(&copy, small_config()).expect_err("no snapshot");
    let OpenError::NoValidSnapshot { damaged } = &err else {
        panic!("{err}")
    };
    assert_eq!(damaged.len(), 2);
    assert!(err.to_string().contains(&snaps[0]) && err.to_string().contains(&snaps[1]));
}

#[test]
fn leftovers_of_an_interrupted_snapshot_are_removed() {
    let storage = MemStorage::new();
    let mut world = World::new(10);
    let (mut log, mut history) = new_log(&storage, small_config(), &world);
    run(&mut log, &mut world, 1, 3, &mut history);
    drop(log);
    let temp = format!("{}.tmp", format::snapshot_name(Tick(3)));
    storage.set_file(&temp, b"half a snapshot".to_vec());
    let (_, recovered) = open(&storage, small_config()).expect("open");
    assert_eq!(
        recovered.warnings,
        vec![RecoveryWarning::TempRemoved { file: temp.clone() }]
    );
    assert!(storage.file(&temp).is_none());
    assert_eq!(dump(&recovered.db), history[&3]);
}

#[test]
fn the_stored_schema_refuses_an_incompatible_module() {
    let storage = MemStorage::new();
    let world = World::new(11);
    let (log, _) = new_log(&storage, LogConfig::default(), &world);
    drop(log);
    let (_, recovered) = open(&storage, LogConfig::default()).expect("open");
    assert_eq!(recovered.check_schema(&[unit_def(), item_def()]), Ok(()));
    let changed = TableDef::builder("item")
        .column("id", ColumnType::U32)
        .column("owner", ColumnType::String)
        .primary_key("id")
        .build()
        .expect("valid");
    let err = recovered
        .check_schema(&[unit_def(), changed])
        .expect_err("incompatible");
    assert!(
        err.contains("`item`") && err.contains("not compatible"),
        "{err}"
    );
    let err = recovered
        .check_schema(&[unit_def()])
        .expect_err("missing table");
    assert!(err.contains("2 tables"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 64, ..Default::default() })]

    /// Encoding a tick's changesets and reading the payload back gives every row, in order, per transaction and
    /// table, against the changesets themselves as the model.
    #[test]
    fn a_record_reads_back_exactly_the_changesets_it_was_built_from(seed in 0u64..10_000) {
        let mut world = World::new(seed);
        let changes: Vec<Changeset> = (0..5).map(|_| world.transaction()).filter(|c| !c.is_empty()).collect();
        let mut record = EncodedRecord::from_changesets(Tick(9), &changes);
        let bytes = record.seal(Tick(4)).to_vec();
        let header = format::parse_record_header(&bytes).expect("header");
        proptest::prop_assert_eq!((header.tick, header.prev_tick), (Tick(9), Tick(4)));
        let mut reader = format::PayloadReader::new(&bytes[format::RECORD_HEADER_LEN..]).expect("payload");
        proptest::prop_assert_eq!(reader.remaining() as usize, changes.len());
        let mut tables = Vec::new();
        for c in &changes {
            proptest::prop_assert!(reader.next_into(&mut tables).expect("parses"));
            proptest::prop_assert_eq!(tables.len(), c.tables.len());
            for (got, want) in tables.iter().zip(&c.tables) {
                proptest::prop_assert_eq!(got.table, want.table);
                proptest::prop_assert_eq!(got.next_auto_inc, want.next_auto_inc);
                proptest::prop_assert!(got.deletes.eq(want.deletes.iter().map(|r| &r[..])));
                proptest::prop_assert!(got.updates.eq(want.updates.iter().map(|u| &u.new[..])));
                proptest::prop_assert!(got.inserts.eq(want.inserts.iter().map(|r| &r[..])));
            }
        }
        proptest::prop_assert!(!reader.next_into(&mut tables).expect("end"));
    }
}

// ---- kill -9 ------------------------------------------------------------------------------------------------

const CRASH_DIR: &str = "LOCUS_CRASH_DIR";

fn counter_def() -> TableDef {
    TableDef::builder("counter")
        .column("id", ColumnType::U32)
        .column("value", ColumnType::U64)
        .primary_key("id")
        .build()
        .expect("valid")
}

fn event_def() -> TableDef {
    TableDef::builder("event")
        .column("tick", ColumnType::U64)
        .column("pos", ColumnType::Vec2)
        .primary_key("tick")
        .index("pos", IndexKind::Spatial)
        .build()
        .expect("valid")
}

fn crash_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 10,
        keep_snapshots: 2,
        snapshot_every_ticks: Some(97),
        snapshot_every_bytes: None,
        ..LogConfig::default()
    }
}

/// The crash workload's tick `t`, a pure function of `t` and the state: two transactions, one bumping two of 50
/// counters to `t`, one inserting event `t` and deleting event `t - 20`.
fn crash_tick(db: &mut Database, t: u64) -> Vec<Changeset> {
    if t.is_multiple_of(7) {
        return Vec::new(); // some ticks change nothing
    }
    let (counter, event) = (TableId(0), TableId(1));
    let mut tx = db.begin();
    for k in [t % 50, (t * 7 + 3) % 50] {
        let row = codec::encode_row(&counter_def().columns, &[Value::U64(k), Value::U64(t)])
            .expect("row");
        tx.update(counter, &row).expect("update");
    }
    let first = tx.commit();
    let mut tx = db.begin();
    let pos = Vec2::new((t % 100) as f32, (t / 100 % 100) as f32);
    let row =
        codec::encode_row(&event_def().columns, &[Value::U64(t), Value::Vec2(pos)]).expect("row");
    tx.insert(event, &row).expect("insert");
    if t > 20 {
        let _ = tx.delete(event, &Value::U64(t - 20));
    }
    vec![first, tx.commit()]
}

fn crash_world() -> Database {
    let mut db = Database::default();
    db.create_table(counter_def()).expect("create");
    db.create_table(event_def()).expect("create");
    let mut tx = db.begin();
    for k in 0..50u64 {
        let row = codec::encode_row(&counter_def().columns, &[Value::U64(k), Value::U64(0)])
            .expect("row");
        tx.insert(TableId(0), &row).expect("insert");
    }
    let _ = tx.commit();
    db
}

/// The crash workload's state, advanced tick by tick to whatever tick recovery reports (which never goes back).
struct CrashModel {
    db: Database,
    tick: u64,
}

impl CrashModel {
    fn state_after(&mut self, t: u64) -> Dump {
        assert!(
            t >= self.tick,
            "recovery went back from tick {} to {t}",
            self.tick
        );
        while self.tick < t {
            self.tick += 1;
            let _ = crash_tick(&mut self.db, self.tick);
        }
        dump(&self.db)
    }
}

/// The child process of the kill -9 test: recovers the data directory, then runs ticks as fast as the log takes
/// them, printing `durable N` each time the watermark moves, until it is killed.
#[test]
#[ignore = "the child process of the kill -9 tests; does nothing on its own"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let storage = Arc::new(FsStorage::open(dir).expect("data dir"));
    let (mut log, recovered) =
        Log::open(storage, crash_config(), StoreConfig::default()).expect("recover");
    let is_new = recovered.is_new();
    let mut db = recovered.db;
    if is_new {
        db = crash_world();
        log.snapshot(&EncodedSnapshot::new(Tick(0), &db))
            .expect("snapshot");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "recovered {}", recovered.tick.0).expect("stdout");
    let mut durability = Durability::start(log);
    let watermark = durability.watermark();
    let mut reported = recovered.tick;
    let mut t = recovered.tick.0;
    loop {
        t += 1;
        let changes = crash_tick(&mut db, t);
        durability
            .append(EncodedRecord::from_changesets(Tick(t), &changes))
            .expect("append");
        if durability.snapshot_due(Tick(t)) {
            durability
                .snapshot(EncodedSnapshot::new(Tick(t), &db))
                .expect("snapshot");
        }
        let now = watermark.tick();
        if now > reported {
            reported = now;
            writeln!(out, "durable {}", now.0).expect("stdout");
            out.flush().expect("stdout");
        }
    }
}

fn kill9_cycles(cycles: u32, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut reported_any = 0;
    let mut torn = 0;
    let mut last = Tick(0);
    let mut model = CrashModel {
        db: crash_world(),
        tick: 0,
    };
    for cycle in 0..cycles {
        let mut child = std::process::Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut durable = None;
            let mut recovered = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("durable ") {
                    durable = Some(Tick(n.parse().expect("tick")));
                } else if let Some(n) = line.strip_prefix("recovered ") {
                    recovered = Some(Tick(n.parse().expect("tick")));
                }
            }
            (recovered, durable)
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(30..400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let (child_recovered, durable) = reader.join().expect("reader");
        if let Some(r) = child_recovered {
            assert!(
                r >= last,
                "cycle {cycle}: the child recovered {r:?}, before {last:?}"
            );
        }
        let (_, recovered) = Log::open(
            Arc::new(FsStorage::open(dir.path()).expect("dir")),
            crash_config(),
            StoreConfig::default(),
        )
        .unwrap_or_else(|e| panic!("cycle {cycle}: recovery failed: {e}"));
        if let Some(d) = durable {
            reported_any += 1;
            // Every 7th tick changes nothing and has no record.
            let last_change = if d.0.is_multiple_of(7) {
                Tick(d.0 - 1)
            } else {
                d
            };
            assert!(
                recovered.tick >= last_change,
                "cycle {cycle}: tick {d:?} was reported durable, recovery found {:?}",
                recovered.tick
            );
        }
        torn += recovered
            .warnings
            .iter()
            .filter(|w| matches!(w, RecoveryWarning::TornTail { .. }))
            .count();
        assert!(
            dump(&recovered.db) == model.state_after(recovered.tick.0),
            "cycle {cycle}: the state is not the state after tick {:?}",
            recovered.tick
        );
        last = recovered.tick;
    }
    assert!(
        reported_any * 2 >= cycles,
        "only {reported_any} of {cycles} children reported progress"
    );
    assert!(last.0 > 0);
    writeln!(
        std::io::stderr(),
        "kill -9: {cycles} cycles, {reported_any} children reported durable ticks, {torn} torn tails cut, \
         every durable tick recovered, final tick {}",
        last.0
    )
    .expect("stderr");
}

/// Real crashes: a child process is killed with SIGKILL at random moments; after every kill, every tick it
/// reported durable is recovered and the state is exactly the state after the recovered tick.
#[test]
fn kill9_at_random_moments_loses_no_durable_tick() {
    kill9_cycles(12, 1);
}

/// The long version of [`kill9_at_random_moments_loses_no_durable_tick`]:
/// `cargo test -p locus-log --test log -- --ignored kill9_many`.
#[test]
#[ignore = "long: 200 kill -9 cycles"]
fn kill9_many() {
    kill9_cycles(200, 2);
}

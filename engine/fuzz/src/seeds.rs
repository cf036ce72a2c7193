//! The seed corpus of every target, made from real data: frames a client writes, rows and patches the codec makes,
//! the files of a data directory written by the log, modules. `engine/fuzz/seeds/<target>/` holds them, committed;
//! `cargo test -p locus-fuzz` checks they are what this code makes (run it with `LOCUS_FUZZ_WRITE_SEEDS=1` to
//! write them after a format change).

use std::sync::Arc;

use glam::Vec2;
use locus_log::storage::{MemStorage, Storage};
use locus_log::{EncodedRecord, EncodedSnapshot, Log, LogConfig};
use locus_protocol::{AdminCommand, ClientMessage, Filter, PROTOCOL_VERSION, Token, encode_frame};
use locus_store::StoreConfig;
use locus_types::codec::encode_row;
use locus_types::patch::{Scratch, make_patch};
use locus_types::{ColumnType, TableDef, Tick, Value};

use crate::recovery::{FileKind, encode_files};
use crate::row::{encode_columns, put_bytes};

/// One seed: its target, its file name, its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn frames(messages: &[ClientMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        encode_frame(m, &mut out);
    }
    out
}

fn session() -> Vec<Seed> {
    let hello = ClientMessage::Hello {
        versions: vec![1, PROTOCOL_VERSION],
        token: None,
    };
    let hello_token = ClientMessage::Hello {
        versions: vec![PROTOCOL_VERSION],
        token: Some(Token([7; 32])),
    };
    let call = ClientMessage::Call {
        request: 1,
        reducer: "move_to".into(),
        args: vec![0x92, 0xca, 0x40, 0, 0, 0, 0xca, 0x40, 0, 0, 0],
    };
    let subscribe = |request, filter| ClientMessage::Subscribe {
        request,
        table: "player".into(),
        filter,
    };
    let admin = |request, command| ClientMessage::Admin { request, command };
    let player = frames(&[
        hello.clone(),
        call.clone(),
        subscribe(2, Filter::All),
        subscribe(
            3,
            Filter::Eq {
                column: "zone".into(),
                value: vec![0x05],
            },
        ),
        subscribe(4, Filter::Owner),
        ClientMessage::Unsubscribe {
            request: 5,
            table: "player".into(),
        },
    ]);
    let operator = frames(&[
        hello_token,
        admin(
            1,
            AdminCommand::Call {
                reducer: "give".into(),
                args: vec![0x91, 0x01],
            },
        ),
        admin(
            2,
            AdminCommand::Query {
                sql: "SELECT * FROM player WHERE hp > 3".into(),
            },
        ),
        admin(
            3,
            AdminCommand::Logs {
                tail: 10,
                follow: true,
            },
        ),
        admin(4, AdminCommand::Snapshot),
        admin(
            5,
            AdminCommand::Publish {
                wasm: b"\0asm\x01\0\0\0".to_vec(),
            },
        ),
    ]);
    let flood = frames(&vec![call; 80]);
    let with = |settings: u8, bytes: &[u8]| [&[settings][..], bytes].concat();
    vec![
        ("session", "player".into(), with(0, &player)),
        ("session", "player-in-pieces".into(), with(2 * 3, &player)),
        ("session", "operator".into(), with(1, &operator)),
        ("session", "operator-as-player".into(), with(0, &operator)),
        (
            "session",
            "flood".into(),
            with(0, &[frames(&[hello]), flood].concat()),
        ),
    ]
}

/// Tables of the `row` and `patch` seeds, with a row of values.
fn rows() -> Vec<(Vec<ColumnType>, Vec<Value>, Vec<Value>)> {
    use ColumnType as T;
    let opt = |t| T::Option(Box::new(t));
    vec![
        (
            vec![T::U32, T::Vec2, T::I64, T::String],
            vec![
                Value::U64(7),
                Value::Vec2(Vec2::new(1.5, -2.0)),
                Value::I64(-9),
                "alice".into(),
            ],
            vec![
                Value::U64(7),
                Value::Vec2(Vec2::new(1.5, -3.0)),
                Value::I64(-9),
                "alice".into(),
            ],
        ),
        (
            vec![
                T::U64,
                opt(T::U8),
                T::Bool,
                T::F32,
                T::F64,
                T::Bytes,
                T::Identity,
                T::Timestamp,
            ],
            vec![
                Value::U64(1),
                Value::Null,
                true.into(),
                Value::from(0.25f32),
                Value::from(1e300f64),
                vec![1u8, 2, 3].into(),
                Value::Identity(locus_types::Identity([9; 32])),
                Value::Timestamp(locus_types::Timestamp(1_700_000_000_000_000)),
            ],
            vec![
                Value::U64(1),
                Value::U64(200),
                false.into(),
                Value::from(0.25f32),
                Value::from(-1e300f64),
                vec![1u8, 2, 3].into(),
                Value::Identity(locus_types::Identity([9; 32])),
                Value::Timestamp(locus_types::Timestamp(1_700_000_000_000_001)),
            ],
        ),
        (
            vec![T::String, T::Opaque, opt(opt(T::I16)), T::I8],
            vec![
                "key".into(),
                Value::Opaque(rmp_serde::to_vec(&(1, "x", [2.5])).expect("encodes").into()),
                Value::I64(-300),
                Value::I64(-7),
            ],
            vec![
                "key".into(),
                Value::Opaque(rmp_serde::to_vec(&(1, "x", [2.5])).expect("encodes").into()),
                Value::I64(-300),
                Value::I64(7),
            ],
        ),
    ]
}

fn row_and_patch() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (i, (types, old, new)) in rows().into_iter().enumerate() {
        let columns: Vec<_> = types
            .iter()
            .enumerate()
            .map(|(i, t)| locus_types::ColumnDef::new(format!("c{i}"), t.clone()))
            .collect();
        let old = encode_row(&columns, &old).expect("a seed row encodes");
        let new = encode_row(&columns, &new).expect("a seed row encodes");
        let schema = encode_columns(&types);
        seeds.push(("row", format!("table{i}"), [&schema[..], &old].concat()));
        let mut patch = Vec::new();
        if !make_patch(&columns, 0, &old, &new, &mut Scratch::default(), &mut patch) {
            continue; // the new row is shorter than a patch
        }
        let mut input = schema.clone();
        input.push(0);
        put_bytes(&old, &mut input);
        put_bytes(&new, &mut input);
        input.extend_from_slice(&patch);
        seeds.push(("patch", format!("table{i}"), input));
    }
    seeds
}

/// A data directory written by the log: a snapshot of the schema at tick 0, records of inserts, updates and
/// deletes, a snapshot at tick 4, and more records after it.
fn recovery() -> Vec<Seed> {
    let disk = MemStorage::new();
    let (mut log, recovered) = Log::open(
        Arc::new(disk.clone()),
        LogConfig::default(),
        StoreConfig::default(),
    )
    .expect("a new log");
    let mut db = recovered.db;
    let def = TableDef::builder("score")
        .column("id", ColumnType::U32)
        .column("pos", ColumnType::Vec2)
        .column("points", ColumnType::I64)
        .column("name", ColumnType::Option(Box::new(ColumnType::String)))
        .primary_key("id")
        .build()
        .expect("a valid table");
    let columns = def.columns.clone();
    let scores = db.create_table(def).expect("a new table");
    log.snapshot(&EncodedSnapshot::new(Tick(0), &db))
        .expect("a snapshot");
    let row = |id: u32, x: f32, points: i64| {
        encode_row(
            &columns,
            &[
                Value::from(id),
                Value::Vec2(Vec2::new(x, 1.0)),
                Value::I64(points),
                if id.is_multiple_of(2) {
                    Value::Null
                } else {
                    format!("p{id}").into()
                },
            ],
        )
        .expect("a valid row")
    };
    for tick in 1..=7u32 {
        let mut tx = db.begin();
        tx.insert(scores, &row(tick, tick as f32, i64::from(tick)))
            .expect("inserted");
        if tick > 2 {
            tx.update(scores, &row(tick - 1, 0.5, -1)).expect("updated");
        }
        if tick > 3 {
            tx.delete(scores, &Value::from(tick - 3)).expect("deleted");
        }
        let changes = tx.commit();
        log.append(&mut EncodedRecord::from_changesets(
            Tick(u64::from(tick)),
            [&changes],
        ))
        .expect("appended");
        log.sync().expect("synced");
        if tick == 4 {
            log.snapshot(&EncodedSnapshot::new(Tick(4), &db))
                .expect("a snapshot");
        }
    }
    drop(log);
    let mut files: Vec<(FileKind, u64, Vec<u8>)> = Vec::new();
    for name in disk.list().expect("listed") {
        let bytes = disk.file(&name).expect("listed");
        let kind_tick = locus_log::format::parse_segment_name(&name)
            .map(|t| (FileKind::Segment, t.0))
            .or_else(|| {
                locus_log::format::parse_snapshot_name(&name).map(|t| (FileKind::Snapshot, t.0))
            });
        if let Some((kind, tick)) = kind_tick {
            files.push((kind, tick, bytes));
        }
    }
    let all: Vec<_> = files.iter().map(|(k, t, b)| (*k, *t, &b[..])).collect();
    let mut seeds = vec![("recovery", "data-dir".to_owned(), encode_files(&all))];
    for (kind, tick, bytes) in &files {
        let name = format!("{kind:?}-{tick}").to_lowercase();
        seeds.push(("recovery", name, encode_files(&[(*kind, *tick, bytes)])));
    }
    // A crash during the second snapshot: its temporary file beside the complete directory.
    let (_, _, snapshot) = files
        .iter()
        .find(|(k, t, _)| *k == FileKind::Snapshot && *t == 4)
        .expect("made");
    let mut crashed = all.clone();
    crashed.push((FileKind::Temp, 7, &snapshot[..snapshot.len() / 2]));
    seeds.push(("recovery", "temp-snapshot".into(), encode_files(&crashed)));
    seeds
}

fn query() -> Vec<Seed> {
    [
        "SELECT * FROM player",
        "SELECT name, id AS key, player.hp, p.hp FROM player AS p WHERE id = 4",
        "SELECT p.name n FROM player p WHERE p.id <= 2 ORDER BY n DESC",
        "SELECT count(*) AS n FROM player WHERE hp >= 50",
        "SELECT id FROM player WHERE gold IS NULL OR NOT (hp > 5 AND alive) ORDER BY gold DESC NULLS LAST",
        "SELECT id FROM player WHERE hp IN (50, -5) AND speed BETWEEN 0 AND 10.5 LIMIT 2 OFFSET 1",
        "SELECT id, tag FROM player WHERE tag = X'ab' OR owner = '0101010101010101010101010101010101010101010101010101010101010101'",
        "SELECT * FROM item WHERE kind != 'kind1' ORDER BY pos LIMIT 1, 3",
        "SELECT id FROM player WHERE ratio < 1e300 AND small > -129 AND Level <= 255 AND born >= 0",
        "SELECT COUNT(*) FROM empty",
        "SELECT id FROM player WHERE (((((hp = 1)))))",
    ]
    .iter()
    .enumerate()
    .map(|(i, q)| ("query", format!("q{i:02}"), q.as_bytes().to_vec()))
    .collect()
}

fn modules() -> Vec<Seed> {
    // The module of locus-host's documentation: memory, the ABI version, one reducer that does nothing.
    let noop = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (data (i32.const 16) "\83\a4name\a4noop\a4kind\a6Client\a6params\90")
          (func (export "__locus_abi_version") (result i32) i32.const 1)
          (func (export "__locus_describe_reducer_noop") (result i64) i64.const 68719476767)
          (func (export "__locus_reducer_noop") (param i32) (result i32) i32.const 0))"#,
    )
    .expect("valid wat");
    // The exports `module_smith` requires, with the real descriptions and reducers that trap.
    let described =
        crate::module::locus_exports(&crate::module::module_exports()).expect("re-encodes");
    let mut seeds = vec![
        ("module_bytes", "noop".to_owned(), noop),
        ("module_bytes", "described".to_owned(), described),
    ];
    // Generated modules: the bytes are wasm-smith's input, any bytes give a module.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (i, len) in [64usize, 512, 4096].into_iter().enumerate() {
        let bytes = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        seeds.push(("module_smith", format!("random{i}"), bytes));
    }
    seeds
}

/// Every seed of every target.
#[must_use]
pub fn all() -> Vec<Seed> {
    [session(), row_and_patch(), recovery(), query(), modules()].concat()
}

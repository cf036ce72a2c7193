//! Target `query`: the SQL subset of `locus query` ([`locus_server::query::query`]) over a world with a table of
//! every column type.
//!
//! Input: the statement's text (bytes that are not UTF-8 are replaced).
//!
//! Checked, besides "no panic, no hang": a result has as many values per row as columns, at most
//! [`MAX_ROWS`] rows, and renders as a table; the same query gives the same answer twice.

use std::sync::OnceLock;

use glam::Vec2;
use locus_server::query::{MAX_ROWS, format_table, query as run};
use locus_store::{Database, StoreConfig};
use locus_types::{ColumnType, Identity, TableAccess, TableDef, Timestamp, Value, codec};

fn opt(ty: ColumnType) -> ColumnType {
    ColumnType::Option(Box::new(ty))
}

/// The world queries run over: `player`, with a column of every type and rows with `NULL`s, `NaN`, negative
/// numbers and empty strings; `item`, public, with a spatial column; and `empty`.
#[must_use]
pub fn world() -> Database {
    let mut db = Database::new(StoreConfig::default());
    let player = TableDef::builder("player")
        .column("id", ColumnType::U64)
        .column("name", ColumnType::String)
        .column("hp", ColumnType::I32)
        .column("speed", ColumnType::F32)
        .column("gold", opt(ColumnType::U64))
        .column("alive", ColumnType::Bool)
        .column("owner", ColumnType::Identity)
        .column("pos", ColumnType::Vec2)
        .column("born", ColumnType::Timestamp)
        .column("bag", ColumnType::Opaque)
        .column("tag", ColumnType::Bytes)
        .column("Level", ColumnType::U8)
        .column("ratio", opt(ColumnType::F64))
        .column("small", ColumnType::I8)
        .primary_key("id")
        .build()
        .expect("a valid table");
    let bag = |items: &[u32]| Value::Opaque(rmp_serde::to_vec(items).expect("encodes").into());
    let rows = [
        (
            1,
            "alice",
            100,
            5.5,
            Some(10),
            true,
            (1.0, 2.0),
            bag(&[1, 2]),
            &[0xab][..],
            3,
            Some(0.5),
            -128,
        ),
        (
            2,
            "bob",
            -5,
            0.0,
            None,
            false,
            (0.0, 0.0),
            bag(&[]),
            &[][..],
            1,
            None,
            0,
        ),
        (
            3,
            "",
            50,
            f32::NAN,
            Some(7),
            true,
            (-3.5, 4.0),
            bag(&[9]),
            &[1, 2][..],
            2,
            Some(f64::NAN),
            127,
        ),
        (
            4,
            "dave",
            50,
            2.25,
            Some(u64::MAX),
            true,
            (5.0, 5.0),
            bag(&[3]),
            &[0xff][..],
            255,
            Some(-0.0),
            1,
        ),
    ];
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .map(
            |(id, name, hp, speed, gold, alive, pos, bag, tag, level, ratio, small)| {
                vec![
                    Value::U64(id),
                    name.into(),
                    Value::from(hp),
                    Value::from(speed),
                    gold.into(),
                    alive.into(),
                    Value::Identity(Identity([id as u8; 32])),
                    Value::Vec2(Vec2::new(pos.0, pos.1)),
                    Value::Timestamp(Timestamp(id * 1_000)),
                    bag,
                    tag.into(),
                    Value::from(level as u8),
                    ratio.into(),
                    Value::from(small as i8),
                ]
            },
        )
        .collect();
    insert(&mut db, player, &rows);
    let item = TableDef::builder("item")
        .column("id", ColumnType::U32)
        .column("kind", ColumnType::String)
        .column("pos", ColumnType::Vec2)
        .primary_key("id")
        .auto_inc()
        .access(TableAccess::Public)
        .build()
        .expect("a valid table");
    let items: Vec<Vec<Value>> = (1..=40u32)
        .map(|i| {
            vec![
                Value::from(i),
                format!("kind{}", i % 3).into(),
                Value::Vec2(Vec2::new(i as f32, -(i as f32))),
            ]
        })
        .collect();
    insert(&mut db, item, &items);
    let empty = TableDef::builder("empty")
        .column("k", ColumnType::String)
        .column("v", ColumnType::U64)
        .primary_key("k")
        .build()
        .expect("a valid table");
    db.create_table(empty).expect("a new table");
    db
}

fn insert(db: &mut Database, def: TableDef, rows: &[Vec<Value>]) {
    let columns = def.columns.clone();
    let id = db.create_table(def).expect("a new table");
    let mut tx = db.begin();
    for values in rows {
        tx.insert(
            id,
            &codec::encode_row(&columns, values).expect("a valid row"),
        )
        .expect("inserted");
    }
    let _ = tx.commit();
}

/// Target `query`.
pub fn query(data: &[u8]) {
    static WORLD: OnceLock<Database> = OnceLock::new();
    let db = WORLD.get_or_init(world);
    let sql = String::from_utf8_lossy(data);
    let Ok(result) = run(db, &sql) else { return };
    assert!(result.rows.len() <= MAX_ROWS, "{} rows", result.rows.len());
    for row in &result.rows {
        assert_eq!(
            row.len(),
            result.columns.len(),
            "a row with another number of values than columns"
        );
    }
    let _ = format_table(&result);
    let again = run(db, &sql).expect("a query that ran once runs again");
    assert_eq!(again, result, "the same query answered differently");
}

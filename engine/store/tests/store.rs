//! Integration tests of `locus-store`: behaviour examples, then property tests of random operation sequences
//! against a reference model (a `BTreeMap` per table plus brute-force scans).

use std::collections::BTreeMap;
use std::ops::Bound;

use locus_store::spatial::{distance_2, in_box};
use locus_store::{
    ApplyError, BuildTableError, Changeset, Database, DeleteError, InsertError, QueryError,
    StoreConfig, SwapTablesError, Table, TxLog, UpdateError,
};
use locus_types::codec::{self, RowError};
use locus_types::{ColumnId, ColumnType, IndexKind, TableDef, TableId, Value, Vec2};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------------------------
// Fixtures

fn entity_def() -> TableDef {
    TableDef::builder("entity")
        .column("id", ColumnType::U64)
        .column("pos", ColumnType::Vec2)
        .column("kind", ColumnType::I32)
        .column("name", ColumnType::String)
        .column("note", ColumnType::Option(Box::new(ColumnType::String)))
        .primary_key("id")
        .auto_inc()
        .index("pos", IndexKind::Spatial)
        .index("kind", IndexKind::BTree)
        .index("name", IndexKind::Unique)
        .build()
        .unwrap()
}

fn item_def() -> TableDef {
    TableDef::builder("item")
        .column("key", ColumnType::String)
        .column("owner", ColumnType::U64)
        .column("weight", ColumnType::Option(Box::new(ColumnType::I64)))
        .primary_key("key")
        .index("owner", IndexKind::BTree)
        .index("weight", IndexKind::BTree)
        .build()
        .unwrap()
}

const POS: ColumnId = ColumnId(1);
const KIND: ColumnId = ColumnId(2);
const NAME: ColumnId = ColumnId(3);
const OWNER: ColumnId = ColumnId(1);
const WEIGHT: ColumnId = ColumnId(2);

fn entity(id: u64, pos: (f32, f32), kind: i32, name: &str) -> Vec<Value> {
    vec![
        Value::U64(id),
        Value::Vec2(Vec2::new(pos.0, pos.1)),
        Value::I64(kind.into()),
        Value::String(name.into()),
        Value::Null,
    ]
}

fn enc(def: &TableDef, values: &[Value]) -> Vec<u8> {
    codec::encode_row(&def.columns, values).unwrap()
}

fn setup() -> (Database, TableId, TableId) {
    let mut db = Database::new(StoreConfig::default());
    let e = db.create_table(entity_def()).unwrap();
    let i = db.create_table(item_def()).unwrap();
    (db, e, i)
}

/// Every row of a table, decoded, sorted by primary key.
fn contents(table: &Table) -> BTreeMap<Value, Vec<Value>> {
    table
        .iter()
        .map(|r| {
            let v = table.decode(r).unwrap();
            (v[table.def().primary_key.index()].clone(), v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Examples

#[test]
fn auto_inc_assigns_sequence_and_respects_explicit_keys() {
    let (mut db, e, _) = setup();
    let def = entity_def();
    let mut tx = db.begin();
    assert_eq!(
        tx.insert(e, &enc(&def, &entity(0, (0.0, 0.0), 1, "a")))
            .unwrap(),
        Value::U64(1)
    );
    assert_eq!(
        tx.insert(e, &enc(&def, &entity(10, (0.0, 0.0), 1, "b")))
            .unwrap(),
        Value::U64(10)
    );
    assert_eq!(
        tx.insert(e, &enc(&def, &entity(0, (0.0, 0.0), 1, "c")))
            .unwrap(),
        Value::U64(11)
    );
    // The stored row carries the assigned key.
    let row = tx.table(e).unwrap().get(&Value::U64(11)).unwrap().unwrap();
    assert_eq!(
        codec::decode_row(&def.columns, row).unwrap()[3],
        Value::String("c".into())
    );
    let cs = tx.commit();
    assert_eq!(cs.tables[0].next_auto_inc, Some(12));
    assert_eq!(cs.row_count(), 3);
}

#[test]
fn constraint_violations_are_typed_and_change_nothing() {
    let (mut db, e, _) = setup();
    let def = entity_def();
    let mut tx = db.begin();
    tx.insert(e, &enc(&def, &entity(1, (1.0, 1.0), 0, "a")))
        .unwrap();
    tx.insert(e, &enc(&def, &entity(2, (2.0, 2.0), 0, "b")))
        .unwrap();
    let before = contents(tx.table(e).unwrap());

    let dup = tx
        .insert(e, &enc(&def, &entity(1, (5.0, 5.0), 0, "z")))
        .unwrap_err();
    assert_eq!(
        dup,
        InsertError::DuplicateKey {
            table: "entity".into(),
            key: Value::U64(1)
        }
    );
    let uniq = tx
        .insert(e, &enc(&def, &entity(3, (5.0, 5.0), 0, "a")))
        .unwrap_err();
    assert!(matches!(uniq, InsertError::UniqueViolation { ref column, .. } if column == "name"));
    let upd = tx
        .update(e, &enc(&def, &entity(2, (9.0, 9.0), 7, "a")))
        .unwrap_err();
    assert!(matches!(upd, UpdateError::UniqueViolation { .. }));
    let missing = tx
        .update(e, &enc(&def, &entity(3, (9.0, 9.0), 7, "q")))
        .unwrap_err();
    assert!(matches!(missing, UpdateError::NotFound { .. }));
    let nan = tx
        .insert(e, &enc(&def, &entity(4, (f32::NAN, 0.0), 0, "n")))
        .unwrap_err();
    assert!(matches!(nan, InsertError::InvalidPosition { .. }));
    let far = tx
        .update(e, &enc(&def, &entity(2, (0.0, 2.0e9), 0, "b")))
        .unwrap_err();
    assert!(matches!(far, UpdateError::InvalidPosition { .. }));
    let del = tx.delete(e, &Value::U64(99)).unwrap_err();
    assert!(matches!(del, DeleteError::NotFound { .. }));
    let ty = tx.delete(e, &Value::I64(1)).unwrap_err();
    assert!(matches!(ty, DeleteError::KeyType { .. }));

    // Wrong type in a column, missing column: typed row errors.
    let mut wrong = entity(5, (0.0, 0.0), 0, "w");
    wrong[2] = Value::String("x".into());
    let bad = codec::encode_row(
        &[
            def.columns[0].clone(),
            def.columns[1].clone(),
            def.columns[3].clone(),
            def.columns[3].clone(),
            def.columns[4].clone(),
        ],
        &wrong,
    )
    .unwrap();
    let err = tx.insert(e, &bad).unwrap_err();
    assert!(
        matches!(err, InsertError::Row { source: RowError::WrongType { ref column, .. }, .. } if column == "kind")
    );
    let short = codec::encode_row(&def.columns[..4], &entity(5, (0.0, 0.0), 0, "w")[..4]).unwrap();
    let err = tx.insert(e, &short).unwrap_err();
    assert!(matches!(
        err,
        InsertError::Row {
            source: RowError::WrongColumnCount {
                expected: 5,
                found: 4
            },
            ..
        }
    ));
    assert!(matches!(
        tx.insert(TableId(9), &short),
        Err(InsertError::NoSuchTable(TableId(9)))
    ));

    assert_eq!(contents(tx.table(e).unwrap()), before);
    // The transaction stays usable after failed writes.
    tx.update(e, &enc(&def, &entity(2, (3.0, 3.0), 0, "c")))
        .unwrap();
    let cs = tx.commit();
    assert_eq!(cs.row_count(), 2);
}

#[test]
fn rollback_and_drop_leave_no_trace() {
    let (mut db, e, _) = setup();
    let def = entity_def();
    let mut tx = db.begin();
    for i in 0..20u64 {
        tx.insert(
            e,
            &enc(
                &def,
                &entity(0, (i as f32, 0.0), (i % 3) as i32, &format!("n{i}")),
            ),
        )
        .unwrap();
    }
    let _ = tx.commit();
    let before = contents(db.table(e).unwrap());
    let seq = db.table(e).unwrap().next_auto_inc();

    let mut tx = db.begin();
    // Swap two unique names through a temporary, move rows far, delete and re-insert, insert new.
    tx.update(e, &enc(&def, &entity(1, (500.0, 500.0), 9, "tmp")))
        .unwrap();
    tx.update(e, &enc(&def, &entity(2, (0.0, 0.0), 9, "n0")))
        .unwrap();
    tx.update(e, &enc(&def, &entity(1, (1.0, 1.0), 9, "n1")))
        .unwrap();
    tx.delete(e, &Value::U64(3)).unwrap();
    tx.insert(e, &enc(&def, &entity(3, (7.0, 7.0), 1, "n2x")))
        .unwrap();
    tx.insert(e, &enc(&def, &entity(0, (7.0, 7.0), 1, "fresh")))
        .unwrap();
    assert_eq!(
        tx.table(e)
            .unwrap()
            .within_radius(Vec2::new(500.0, 500.0), 1.0)
            .unwrap()
            .count(),
        0
    );
    tx.rollback();
    assert_eq!(contents(db.table(e).unwrap()), before);
    assert_eq!(db.table(e).unwrap().next_auto_inc(), seq);
    assert_eq!(
        db.table(e)
            .unwrap()
            .within_radius(Vec2::new(1.0, 0.0), 0.0)
            .unwrap()
            .count(),
        1
    );

    {
        let mut tx = db.begin();
        tx.delete(e, &Value::U64(5)).unwrap();
        // dropped without commit
    }
    assert_eq!(contents(db.table(e).unwrap()), before);
}

#[test]
fn changesets_net_out_and_replay() {
    let (mut db, e, _) = setup();
    let def = entity_def();
    let mut tx = db.begin();
    tx.insert(e, &enc(&def, &entity(1, (0.0, 0.0), 0, "a")))
        .unwrap();
    tx.insert(e, &enc(&def, &entity(2, (0.0, 0.0), 0, "b")))
        .unwrap();
    let first = tx.commit();
    let mut tx = db.begin();
    tx.insert(e, &enc(&def, &entity(3, (0.0, 0.0), 0, "c")))
        .unwrap(); // insert then delete: nothing
    tx.delete(e, &Value::U64(3)).unwrap();
    tx.update(e, &enc(&def, &entity(1, (1.0, 0.0), 0, "a")))
        .unwrap(); // changed and changed back: nothing
    tx.update(e, &enc(&def, &entity(1, (0.0, 0.0), 0, "a")))
        .unwrap();
    tx.update(e, &enc(&def, &entity(2, (1.0, 0.0), 0, "b")))
        .unwrap();
    tx.update(e, &enc(&def, &entity(2, (2.0, 0.0), 0, "b")))
        .unwrap(); // two updates: one, first old → last new
    let second = tx.commit();
    let t = &second.tables[0];
    assert!(t.inserts.is_empty() && t.deletes.is_empty());
    assert_eq!(t.updates.len(), 1);
    assert_eq!(
        &t.updates[0].old[..],
        &enc(&def, &entity(2, (0.0, 0.0), 0, "b"))[..]
    );
    assert_eq!(
        &t.updates[0].new[..],
        &enc(&def, &entity(2, (2.0, 0.0), 0, "b"))[..]
    );

    let mut replica = Database::new(StoreConfig::default());
    replica.create_table(entity_def()).unwrap();
    replica.create_table(item_def()).unwrap();
    replica.apply(&first).unwrap();
    replica.apply(&second).unwrap();
    assert_eq!(
        contents(replica.table(e).unwrap()),
        contents(db.table(e).unwrap())
    );
    // Applying again fails (old rows do not match) and changes nothing.
    let before = contents(replica.table(e).unwrap());
    assert!(matches!(
        replica.apply(&second),
        Err(ApplyError::Mismatch { .. })
    ));
    assert!(matches!(
        replica.apply(&first),
        Err(ApplyError::Insert(InsertError::DuplicateKey { .. }))
    ));
    assert_eq!(contents(replica.table(e).unwrap()), before);
}

#[test]
fn a_detached_tx_log_commits_and_rolls_back_like_a_transaction() {
    let (mut db, e, _) = setup();
    let def = entity_def();
    let mut log = TxLog::new();
    log.insert(&mut db, e, &enc(&def, &entity(1, (0.0, 0.0), 0, "a")))
        .unwrap();
    // Reads between writes see the log's writes: the database is written through.
    assert_eq!(db.table(e).unwrap().len(), 1);
    log.update(&mut db, e, &enc(&def, &entity(1, (5.0, 0.0), 0, "a")))
        .unwrap();
    let changes = log.commit(&mut db);
    assert_eq!(changes.tables[0].inserts.len(), 1);
    assert_eq!(changes.tables[0].next_auto_inc, Some(2));

    let before = contents(db.table(e).unwrap());
    let mut log = TxLog::new();
    log.delete(&mut db, e, &Value::U64(1)).unwrap();
    log.insert(&mut db, e, &enc(&def, &entity(0, (1.0, 1.0), 0, "b")))
        .unwrap();
    assert_eq!(log.touched_rows(), 2);
    log.rollback(&mut db);
    assert_eq!(contents(db.table(e).unwrap()), before);
    assert_eq!(db.table(e).unwrap().next_auto_inc(), 2);
}

#[test]
fn tables_built_aside_swap_in_all_or_none_and_leave_the_other_tables_untouched() {
    let (mut db, e, i) = setup();
    let (edef, idef) = (entity_def(), item_def());
    let mut tx = db.begin();
    for n in 0..3 {
        tx.insert(
            e,
            &enc(&edef, &entity(0, (n as f32, 0.0), n, &format!("e{n}"))),
        )
        .unwrap();
    }
    let item = |key: &str, owner: u64| {
        enc(
            &idef,
            &[Value::String(key.into()), Value::U64(owner), Value::Null],
        )
    };
    tx.insert(i, &item("a", 1)).unwrap();
    let _ = tx.commit();
    let entities = contents(db.table(e).unwrap());
    let entity_rows: Vec<*const u8> = db.table(e).unwrap().iter().map(<[u8]>::as_ptr).collect();

    // `item` rebuilt with a unique index on `owner`, and a new table: built aside, the database only read.
    let mut idef2 = idef.clone();
    idef2.indexes.push(locus_types::IndexDef {
        column: OWNER,
        kind: IndexKind::Unique,
    });
    let rows: Vec<Vec<u8>> = db.table(i).unwrap().iter().map(<[u8]>::to_vec).collect();
    let rebuilt = db
        .build_table(i, idef2.clone(), rows.iter().map(Vec::as_slice), 0)
        .unwrap();
    let mut new_def = item_def();
    new_def.name = "crate".into();
    let added = db.build_table(TableId(2), new_def.clone(), [], 0).unwrap();
    assert_eq!(db.tables().count(), 2, "building changes nothing");

    // A set with one bad table is refused whole.
    let renamed = db.build_table(e, item_def(), [], 0).unwrap();
    let err = db.swap_tables(vec![renamed]).unwrap_err();
    assert!(matches!(err, SwapTablesError::Renamed { .. }), "{err:?}");
    let mut gap_def = item_def();
    gap_def.name = "gap".into();
    let gap = db.build_table(TableId(4), gap_def, [], 0).unwrap();
    let again = db.build_table(TableId(2), new_def.clone(), [], 0).unwrap();
    let err = db.swap_tables(vec![again, gap]).unwrap_err();
    assert!(matches!(err, SwapTablesError::BadId { .. }), "{err:?}");
    assert_eq!(db.table(i).unwrap().def(), &idef);
    assert_eq!(db.tables().count(), 2);

    let replaced = db.swap_tables(vec![rebuilt, added]).unwrap();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].def(), &idef);
    assert_eq!(db.table(i).unwrap().def(), &idef2);
    assert_eq!(db.table_id("crate"), Some(TableId(2)));
    assert_eq!(db.table(TableId(2)).unwrap().def(), &new_def);
    // The entity table is the same storage: same rows at the same addresses, same sequence.
    let t = db.table(e).unwrap();
    assert_eq!(contents(t), entities);
    assert_eq!(
        t.iter().map(<[u8]>::as_ptr).collect::<Vec<_>>(),
        entity_rows
    );
    assert_eq!(t.next_auto_inc(), 4);
    // The rebuilt table enforces its new index; the database works on as one.
    let mut tx = db.begin();
    assert!(matches!(
        tx.insert(i, &item("b", 1)),
        Err(InsertError::UniqueViolation { .. })
    ));
    tx.insert(TableId(2), &item("x", 9)).unwrap();
    assert_eq!(tx.commit().row_count(), 1);

    // Rows that break the new definition are refused when building, with the database untouched.
    let dup: Vec<Vec<u8>> = vec![item("p", 5), item("q", 5)];
    let err = db
        .build_table(i, idef2, dup.iter().map(Vec::as_slice), 0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildTableError::Insert(InsertError::UniqueViolation { .. })
        ),
        "{err:?}"
    );
    // A sequence carried over is kept when ahead of the keys loaded.
    let seq = db.build_table(TableId(3), entity_def(), [], 17).unwrap();
    assert_eq!(seq.next_auto_inc(), 17);

    // A swap is undone by truncating the appended tables and swapping the replaced ones back.
    let idef2_rows = contents(db.table(i).unwrap());
    let removed = db.truncate_tables(2);
    assert_eq!(
        removed.iter().map(|t| t.name()).collect::<Vec<_>>(),
        ["crate"]
    );
    assert_eq!((db.tables().count(), db.table_id("crate")), (2, None));
    assert!(
        db.truncate_tables(2).is_empty(),
        "nothing past the last table"
    );
    let back = db.swap_tables(replaced).unwrap();
    assert_eq!(contents(&back[0]), idef2_rows);
    assert_eq!(db.table(i).unwrap().def(), &idef);
    assert_eq!(contents(db.table(e).unwrap()), entities);
    // The name is free again.
    let again = db.build_table(TableId(2), new_def, [], 0).unwrap();
    assert_eq!(db.swap_tables(vec![again]).unwrap().len(), 0);
}

#[test]
fn nearest_with_more_neighbours_than_rows_returns_every_row() {
    let (mut db, e, _) = setup();
    let def = entity_def();
    let mut tx = db.begin();
    for (i, x) in [3.0, 1.0, 2.0].into_iter().enumerate() {
        tx.insert(
            e,
            &enc(&def, &entity(i as u64 + 1, (x, 0.0), 0, &format!("n{i}"))),
        )
        .unwrap();
    }
    let _ = tx.commit();
    // A k far beyond the row count (the host passes module-chosen k's through) must neither size anything by k
    // nor return fewer rows than exist.
    let hits = db
        .table(e)
        .unwrap()
        .nearest_neighbors(Vec2::ZERO, usize::MAX)
        .unwrap();
    let d: Vec<f32> = hits.iter().map(|(_, d2)| *d2).collect();
    assert_eq!(d, [1.0, 4.0, 9.0]);
}

#[test]
#[should_panic(expected = "a TxLog was used with two databases")]
fn a_tx_log_refuses_a_second_database() {
    let (mut a, e, _) = setup();
    let (mut b, _, _) = setup();
    let def = entity_def();
    let mut log = TxLog::new();
    log.insert(&mut a, e, &enc(&def, &entity(1, (0.0, 0.0), 0, "a")))
        .unwrap();
    log.rollback(&mut b);
}

#[test]
fn queries_check_indexes_and_key_types() {
    let (mut db, e, i) = setup();
    let def = entity_def();
    let mut tx = db.begin();
    for k in -2..3 {
        tx.insert(
            e,
            &enc(&def, &entity(0, (k as f32, 0.0), k, &format!("n{k}"))),
        )
        .unwrap();
    }
    let t = tx.table(e).unwrap();
    assert_eq!(t.index_eq(KIND, &Value::I64(-2)).unwrap().len(), 1);
    let range = t
        .index_range(
            KIND,
            Bound::Excluded(&Value::I64(-2)),
            Bound::Included(&Value::I64(1)),
        )
        .unwrap();
    assert_eq!(range.len(), 3);
    // Inverted and empty ranges are empty, not a panic.
    assert!(
        t.index_range(
            KIND,
            Bound::Included(&Value::I64(2)),
            Bound::Included(&Value::I64(1))
        )
        .unwrap()
        .is_empty()
    );
    assert!(
        t.index_range(
            KIND,
            Bound::Excluded(&Value::I64(1)),
            Bound::Excluded(&Value::I64(1))
        )
        .unwrap()
        .is_empty()
    );
    assert!(matches!(
        t.index_eq(KIND, &Value::U64(1)),
        Err(QueryError::KeyType { .. })
    ));
    assert!(matches!(
        t.index_eq(ColumnId(4), &Value::Null),
        Err(QueryError::NoIndex { .. })
    ));
    assert!(matches!(
        t.index_eq(ColumnId(40), &Value::Null),
        Err(QueryError::NoSuchColumn { .. })
    ));
    assert!(matches!(
        t.index_range(ColumnId(0), Bound::Unbounded, Bound::Unbounded),
        Err(QueryError::NoIndex { query: "range", .. })
    ));
    assert_eq!(
        t.position(&Value::U64(1)).unwrap(),
        Some(Vec2::new(-2.0, 0.0))
    );
    let items = tx.table(i).unwrap();
    assert!(matches!(
        items.within_radius(Vec2::ZERO, 1.0).map(|_| ()),
        Err(QueryError::NoIndex {
            query: "spatial",
            ..
        })
    ));
    let _ = tx.commit();
}

#[test]
fn schema_errors_and_duplicate_tables() {
    let mut db = Database::new(StoreConfig::default());
    db.create_table(entity_def()).unwrap();
    assert!(matches!(
        db.create_table(entity_def()),
        Err(locus_store::CreateTableError::DuplicateName { .. })
    ));
    let mut bad = entity_def();
    bad.primary_key = ColumnId(77);
    assert!(matches!(
        db.create_table(bad),
        Err(locus_store::CreateTableError::Schema(_))
    ));
}

#[test]
fn bulk_loaded_spatial_index_answers_the_same() {
    let (mut db, e, _) = setup();
    let def = entity_def();
    let mut tx = db.begin();
    for n in 0..500u32 {
        let p = ((n * 37 % 101) as f32, (n * 53 % 97) as f32);
        tx.insert(e, &enc(&def, &entity(0, p, 0, &format!("n{n}"))))
            .unwrap();
    }
    let _ = tx.commit();
    let q = |db: &Database| {
        let t = db.table(e).unwrap();
        let mut v: Vec<Value> = t
            .within_radius(Vec2::new(50.0, 50.0), 20.0)
            .unwrap()
            .map(|r| t.primary_key_of(r).unwrap())
            .collect();
        v.sort();
        v
    };
    let before = q(&db);
    assert!(before.len() > 10);
    db.rebuild_spatial_indexes();
    assert_eq!(q(&db), before);
}

// ---------------------------------------------------------------------------------------------------------------
// The reference model: a BTreeMap per table, constraints re-implemented naively, queries by brute force.

#[derive(Clone, Debug)]
struct ModelTable {
    def: TableDef,
    rows: BTreeMap<Value, Vec<Value>>,
    next_auto_inc: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Duplicate,
    Unique,
    NotFound,
}

impl ModelTable {
    fn new(def: TableDef) -> Self {
        ModelTable {
            def,
            rows: BTreeMap::new(),
            next_auto_inc: 1,
        }
    }

    fn unique_conflict(&self, row: &[Value], except: Option<&Value>) -> bool {
        let pk = self.def.primary_key.index();
        self.def
            .indexes
            .iter()
            .filter(|i| i.kind == IndexKind::Unique)
            .any(|i| {
                let c = i.column.index();
                self.rows
                    .values()
                    .any(|r| Some(&r[pk]) != except && r[c] == row[c])
            })
    }

    fn insert(&mut self, mut row: Vec<Value>) -> Outcome {
        let pk = self.def.primary_key.index();
        let mut next = self.next_auto_inc;
        if self.def.auto_inc {
            let Value::U64(n) = row[pk] else {
                unreachable!()
            };
            if n == 0 {
                row[pk] = Value::U64(next);
                next += 1;
            } else if n >= next {
                next = n + 1;
            }
        }
        if self.rows.contains_key(&row[pk]) {
            return Outcome::Duplicate;
        }
        if self.unique_conflict(&row, None) {
            return Outcome::Unique;
        }
        self.next_auto_inc = next;
        self.rows.insert(row[pk].clone(), row);
        Outcome::Ok
    }

    fn update(&mut self, row: Vec<Value>) -> Outcome {
        let pk = self.def.primary_key.index();
        if !self.rows.contains_key(&row[pk]) {
            return Outcome::NotFound;
        }
        if self.unique_conflict(&row, Some(&row[pk])) {
            return Outcome::Unique;
        }
        self.rows.insert(row[pk].clone(), row);
        Outcome::Ok
    }

    fn delete(&mut self, key: &Value) -> Outcome {
        if self.rows.remove(key).is_some() {
            Outcome::Ok
        } else {
            Outcome::NotFound
        }
    }

    fn key_at(&self, n: usize) -> Option<Value> {
        if self.rows.is_empty() {
            return None;
        }
        self.rows.keys().nth(n % self.rows.len()).cloned()
    }

    fn pos(&self, row: &[Value]) -> Vec2 {
        match row[self.def.spatial_column().unwrap().index()] {
            Value::Vec2(p) => p,
            _ => unreachable!(),
        }
    }
}

fn outcome<E: std::fmt::Debug>(r: Result<impl Sized, E>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => {
            let s = format!("{e:?}");
            if s.starts_with("DuplicateKey") {
                Outcome::Duplicate
            } else if s.starts_with("UniqueViolation") {
                Outcome::Unique
            } else if s.starts_with("NotFound") {
                Outcome::NotFound
            } else {
                panic!("unexpected error {s}")
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Insert a fresh row into table `t`.
    Insert(usize, Vec<Value>),
    /// Update: keep the primary key of the n-th existing row (or a random key if `None`), new other values.
    Update(usize, Option<usize>, Vec<Value>),
    /// Move the n-th entity by (dx, dy).
    Move(usize, f32, f32),
    /// Delete the n-th existing row, or a random key.
    Delete(usize, Option<usize>, Value),
}

#[derive(Clone, Debug)]
struct Query {
    center: Vec2,
    radius: f32,
    min: Vec2,
    max: Vec2,
    k: usize,
    kind_lo: Bound<i32>,
    kind_hi: Bound<i32>,
    name: String,
    weight_lo: Bound<Option<i64>>,
    owner: u64,
}

#[derive(Clone, Debug)]
struct TxCase {
    steps: Vec<(Op, Query)>,
    commit: bool,
}

fn coord() -> impl Strategy<Value = f32> {
    // A coarse grid makes ties and exact boundary hits common; a few arbitrary values keep it honest.
    prop_oneof![4 => (0i32..=16).prop_map(|n| n as f32 * 2.5), 1 => 0.0f32..40.0]
}

fn entity_row() -> impl Strategy<Value = Vec<Value>> {
    (
        prop_oneof![Just(0u64), 1u64..64],
        coord(),
        coord(),
        -3i32..3,
        "[a-h][a-d]?",
        proptest::option::of("[xy]"),
    )
        .prop_map(|(id, x, y, kind, name, note)| {
            vec![
                Value::U64(id),
                Value::Vec2(Vec2::new(x, y)),
                Value::I64(kind.into()),
                Value::String(name.into()),
                note.map_or(Value::Null, |n| Value::String(n.into())),
            ]
        })
}

fn item_row() -> impl Strategy<Value = Vec<Value>> {
    ("[a-h]", 0u64..4, proptest::option::of(-2i64..2)).prop_map(|(key, owner, weight)| {
        vec![
            Value::String(key.into()),
            Value::U64(owner),
            weight.map_or(Value::Null, Value::I64),
        ]
    })
}

fn bound<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Bound<T>> {
    prop_oneof![
        Just(Bound::Unbounded),
        s.clone().prop_map(Bound::Included),
        s.prop_map(Bound::Excluded)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => entity_row().prop_map(|r| Op::Insert(0, r)),
        2 => item_row().prop_map(|r| Op::Insert(1, r)),
        2 => (proptest::option::of(any::<usize>()), entity_row()).prop_map(|(n, r)| Op::Update(0, n, r)),
        1 => (proptest::option::of(any::<usize>()), item_row()).prop_map(|(n, r)| Op::Update(1, n, r)),
        4 => (any::<usize>(), -3.0f32..3.0, -3.0f32..3.0).prop_map(|(n, dx, dy)| Op::Move(n, dx, dy)),
        1 => (proptest::option::of(any::<usize>()), 0u64..64).prop_map(|(n, k)| Op::Delete(0, n, Value::U64(k))),
        1 => (proptest::option::of(any::<usize>()), "[a-h]").prop_map(|(n, k)| Op::Delete(1, n, Value::String(k.into()))),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    (
        (
            coord(),
            coord(),
            prop_oneof![Just(0.0f32), Just(2.5), 0.0f32..25.0],
        ),
        (coord(), coord(), 0.0f32..30.0, 0.0f32..30.0),
        0usize..8,
        (bound(-4i32..4), bound(-4i32..4)),
        "[a-h][a-d]?",
        bound(proptest::option::of(-3i64..3)),
        0u64..5,
    )
        .prop_map(
            |((cx, cy, radius), (bx, by, w, h), k, (kind_lo, kind_hi), name, weight_lo, owner)| {
                Query {
                    center: Vec2::new(cx, cy),
                    radius,
                    min: Vec2::new(bx, by),
                    max: Vec2::new(bx + w, by + h),
                    k,
                    kind_lo,
                    kind_hi,
                    name,
                    weight_lo,
                    owner,
                }
            },
        )
}

fn tx_case() -> impl Strategy<Value = TxCase> {
    (
        proptest::collection::vec((op(), query()), 0..30),
        prop_oneof![3 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(steps, commit)| TxCase { steps, commit })
}

fn keys(table: &Table, rows: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Vec<Value> {
    let mut v: Vec<Value> = rows
        .into_iter()
        .map(|r| table.primary_key_of(r.as_ref()).unwrap())
        .collect();
    v.sort();
    v
}

fn map_bound<T, U>(b: &Bound<T>, f: impl Fn(&T) -> U) -> Bound<U> {
    match b {
        Bound::Included(x) => Bound::Included(f(x)),
        Bound::Excluded(x) => Bound::Excluded(f(x)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn in_bounds(v: &Value, lo: &Bound<Value>, hi: &Bound<Value>) -> bool {
    (match lo {
        Bound::Included(l) => v >= l,
        Bound::Excluded(l) => v > l,
        Bound::Unbounded => true,
    }) && (match hi {
        Bound::Included(h) => v <= h,
        Bound::Excluded(h) => v < h,
        Bound::Unbounded => true,
    })
}

/// Every query on both tables agrees with brute force over the model; the full contents agree too.
fn check(tables: [&Table; 2], model: &[ModelTable; 2], q: &Query) {
    for (t, m) in tables.iter().zip(model) {
        assert_eq!(contents(t), m.rows, "contents of {}", m.def.name);
        assert_eq!(t.len(), m.rows.len());
        assert_eq!(t.next_auto_inc(), m.next_auto_inc);
    }
    let (t, m) = (tables[0], &model[0]);
    // Spatial: radius, envelope, k nearest, position.
    let got = keys(t, t.within_radius(q.center, q.radius).unwrap());
    let want: Vec<Value> = m
        .rows
        .iter()
        .filter(|(_, r)| distance_2(m.pos(r), q.center) <= q.radius * q.radius)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(got, want, "within_radius {q:?}");
    let got = keys(t, t.locate_in_envelope(q.min, q.max).unwrap());
    let want: Vec<Value> = m
        .rows
        .iter()
        .filter(|(_, r)| in_box(m.pos(r), q.min, q.max))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(got, want, "locate_in_envelope {q:?}");
    let nn = t.nearest_neighbors(q.center, q.k).unwrap();
    let mut all: Vec<f32> = m
        .rows
        .values()
        .map(|r| distance_2(m.pos(r), q.center))
        .collect();
    all.sort_by(f32::total_cmp);
    all.truncate(q.k);
    let got_d: Vec<f32> = nn.iter().map(|(_, d)| *d).collect();
    assert_eq!(got_d, all, "nearest_neighbors distances {q:?}");
    for (row, d) in &nn {
        assert_eq!(distance_2(m.pos(&t.decode(row).unwrap()), q.center), *d);
    }
    for (k, r) in &m.rows {
        assert_eq!(t.position(k).unwrap(), Some(m.pos(r)));
    }
    // BTree on kind: equality and range, in key order.
    let lo = map_bound(&q.kind_lo, |k| Value::I64((*k).into()));
    let hi = map_bound(&q.kind_hi, |k| Value::I64((*k).into()));
    let rows = t.index_range(KIND, lo.as_ref(), hi.as_ref()).unwrap();
    let got_kinds: Vec<Value> = rows
        .iter()
        .map(|r| t.decode(r).unwrap()[KIND.index()].clone())
        .collect();
    assert!(got_kinds.is_sorted(), "range results are in key order");
    let want: Vec<Value> = m
        .rows
        .iter()
        .filter(|(_, r)| in_bounds(&r[KIND.index()], &lo, &hi))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(keys(t, rows), want, "kind range {q:?}");
    if let Bound::Included(k) | Bound::Excluded(k) = &lo {
        let got = keys(t, t.index_eq(KIND, k).unwrap());
        let want: Vec<Value> = m
            .rows
            .iter()
            .filter(|(_, r)| r[KIND.index()] == *k)
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(got, want);
    }
    // Unique on name: equality and range.
    let name = Value::String(q.name.as_str().into());
    let got = keys(t, t.index_eq(NAME, &name).unwrap());
    let want: Vec<Value> = m
        .rows
        .iter()
        .filter(|(_, r)| r[NAME.index()] == name)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(got, want);
    let got = keys(
        t,
        t.index_range(NAME, Bound::Excluded(&name), Bound::Unbounded)
            .unwrap(),
    );
    let want: Vec<Value> = m
        .rows
        .iter()
        .filter(|(_, r)| r[NAME.index()] > name)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(got, want);

    // Item table: string primary key, btree on an option column (nil sorts first), btree on owner.
    let (t, m) = (tables[1], &model[1]);
    let lo = map_bound(&q.weight_lo, |w| w.map_or(Value::Null, Value::I64));
    let got = keys(
        t,
        t.index_range(WEIGHT, lo.as_ref(), Bound::Unbounded)
            .unwrap(),
    );
    let want: Vec<Value> = m
        .rows
        .iter()
        .filter(|(_, r)| in_bounds(&r[WEIGHT.index()], &lo, &Bound::Unbounded))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(got, want, "weight range {q:?}");
    let owner = Value::U64(q.owner);
    let got = keys(t, t.index_eq(OWNER, &owner).unwrap());
    let want: Vec<Value> = m
        .rows
        .iter()
        .filter(|(_, r)| r[OWNER.index()] == owner)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(got, want);
    for k in ["a", "h", "z"] {
        let key = Value::String(k.into());
        let got = t.get(&key).unwrap().map(|r| t.decode(r).unwrap());
        assert_eq!(got.as_ref(), m.rows.get(&key));
    }
}

/// The net diff between two model states, as the changeset must report it: (inserts, deletes, updates).
type Diff = (
    Vec<Vec<Value>>,
    Vec<Vec<Value>>,
    Vec<(Vec<Value>, Vec<Value>)>,
);

fn diff(before: &ModelTable, after: &ModelTable) -> Diff {
    let mut d: Diff = Default::default();
    for (k, new) in &after.rows {
        match before.rows.get(k) {
            None => d.0.push(new.clone()),
            Some(old) if old != new => d.2.push((old.clone(), new.clone())),
            Some(_) => {}
        }
    }
    for (k, old) in &before.rows {
        if !after.rows.contains_key(k) {
            d.1.push(old.clone());
        }
    }
    d
}

fn changeset_diff(def: &TableDef, cs: &Changeset, table: TableId) -> Diff {
    let dec = |r: &[u8]| codec::decode_row(&def.columns, r).unwrap();
    let pk = def.primary_key.index();
    let mut d: Diff = Default::default();
    if let Some(t) = cs.tables.iter().find(|t| t.table == table) {
        d.0 = t.inserts.iter().map(|r| dec(r)).collect();
        d.1 = t.deletes.iter().map(|r| dec(r)).collect();
        d.2 = t
            .updates
            .iter()
            .map(|u| (dec(&u.old), dec(&u.new)))
            .collect();
    }
    d.0.sort_by(|a, b| a[pk].cmp(&b[pk]));
    d.1.sort_by(|a, b| a[pk].cmp(&b[pk]));
    d.2.sort_by(|a, b| a.0[pk].cmp(&b.0[pk]));
    d
}

fn run_case(txs: Vec<TxCase>, margin: f32) {
    let config = StoreConfig {
        spatial_margin: margin,
    };
    let mut db = Database::new(config);
    let mut replica = Database::new(config);
    let ids = [
        db.create_table(entity_def()).unwrap(),
        db.create_table(item_def()).unwrap(),
    ];
    replica.create_table(entity_def()).unwrap();
    replica.create_table(item_def()).unwrap();
    let mut model = [ModelTable::new(entity_def()), ModelTable::new(item_def())];

    for case in txs {
        let before = model.clone();
        let mut tx = db.begin();
        for (op, q) in &case.steps {
            match op {
                Op::Insert(t, row) => {
                    let bytes = enc(&model[*t].def, row);
                    assert_eq!(
                        outcome(tx.insert(ids[*t], &bytes)),
                        model[*t].insert(row.clone()),
                        "{op:?}"
                    );
                }
                Op::Update(t, n, row) => {
                    let mut row = row.clone();
                    let pk = model[*t].def.primary_key.index();
                    if let Some(key) = n.and_then(|n| model[*t].key_at(n)) {
                        row[pk] = key;
                    }
                    let bytes = enc(&model[*t].def, &row);
                    assert_eq!(
                        outcome(tx.update(ids[*t], &bytes)),
                        model[*t].update(row),
                        "{op:?}"
                    );
                }
                Op::Move(n, dx, dy) => {
                    let Some(key) = model[0].key_at(*n) else {
                        continue;
                    };
                    let mut row = model[0].rows[&key].clone();
                    let p = model[0].pos(&row) + Vec2::new(*dx, *dy);
                    row[POS.index()] = Value::Vec2(p);
                    let bytes = enc(&model[0].def, &row);
                    assert_eq!(
                        outcome(tx.update(ids[0], &bytes)),
                        model[0].update(row),
                        "{op:?}"
                    );
                }
                Op::Delete(t, n, key) => {
                    let key = n
                        .and_then(|n| model[*t].key_at(n))
                        .unwrap_or_else(|| key.clone());
                    assert_eq!(
                        outcome(tx.delete(ids[*t], &key)),
                        model[*t].delete(&key),
                        "{op:?}"
                    );
                }
            }
            check(
                [tx.table(ids[0]).unwrap(), tx.table(ids[1]).unwrap()],
                &model,
                q,
            );
        }
        if case.commit {
            let cs = tx.commit();
            for t in 0..2 {
                assert_eq!(
                    changeset_diff(&model[t].def, &cs, ids[t]),
                    diff(&before[t], &model[t]),
                    "changeset"
                );
            }
            replica.apply(&cs).unwrap();
        } else {
            tx.rollback();
            model = before;
        }
        let q = &case.steps.first().map(|s| s.1.clone());
        if let Some(q) = q {
            check(
                [db.table(ids[0]).unwrap(), db.table(ids[1]).unwrap()],
                &model,
                q,
            );
            check(
                [
                    replica.table(ids[0]).unwrap(),
                    replica.table(ids[1]).unwrap(),
                ],
                &model,
                q,
            );
        }
        for t in 0..2 {
            assert_eq!(contents(db.table(ids[t]).unwrap()), model[t].rows);
            assert_eq!(
                contents(replica.table(ids[t]).unwrap()),
                model[t].rows,
                "replica"
            );
            assert_eq!(
                replica.table(ids[t]).unwrap().next_auto_inc(),
                model[t].next_auto_inc
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random transactions of inserts, updates, moves and deletes, committed or rolled back, with the default
    /// fat-envelope margin: every query agrees with the model after every step, rollback restores exactly,
    /// changesets are the net diff, and replaying them onto an empty copy reproduces the state.
    #[test]
    fn store_matches_model(txs in proptest::collection::vec(tx_case(), 1..6)) {
        run_case(txs, StoreConfig::default().spatial_margin);
    }

    /// The same with margin 0 (re-insert on every move) and a large margin (most moves stay in the envelope).
    #[test]
    fn store_matches_model_other_margins(txs in proptest::collection::vec(tx_case(), 1..6), big in any::<bool>()) {
        run_case(txs, if big { 50.0 } else { 0.0 });
    }
}

/// Integer keys in the first column (stored once, read back from the row) and elsewhere (a key → slot map), signed
/// and unsigned, behave the same.
#[test]
fn integer_primary_keys_in_any_column() {
    for (first, signed) in [(true, true), (true, false), (false, true), (false, false)] {
        let key_ty = if signed {
            ColumnType::I64
        } else {
            ColumnType::U16
        };
        let mut b = TableDef::builder("t");
        if first {
            b = b.column("k", key_ty).column("v", ColumnType::String);
        } else {
            b = b.column("v", ColumnType::String).column("k", key_ty);
        }
        let def = b.primary_key("k").build().unwrap();
        let mut db = Database::new(StoreConfig::default());
        let t = db.create_table(def.clone()).unwrap();
        let key = |n: i64| {
            if signed {
                Value::I64(n)
            } else {
                Value::U64(n as u64)
            }
        };
        let row = |n: i64, v: &str| {
            let vals = if first {
                vec![key(n), v.into()]
            } else {
                vec![v.into(), key(n)]
            };
            enc(&def, &vals)
        };
        let mut tx = db.begin();
        let keys: Vec<i64> = if signed {
            vec![-300, -1, 0, 7, 70_000]
        } else {
            vec![0, 7, 255, 256, 65_535]
        };
        for n in &keys {
            tx.insert(t, &row(*n, "a")).unwrap();
        }
        for n in &keys {
            assert!(tx.table(t).unwrap().get(&key(*n)).unwrap().is_some(), "{n}");
        }
        assert!(matches!(
            tx.insert(t, &row(keys[1], "b")),
            Err(InsertError::DuplicateKey { .. })
        ));
        tx.update(t, &row(keys[2], "changed")).unwrap();
        tx.delete(t, &key(keys[0])).unwrap();
        assert!(tx.table(t).unwrap().get(&key(keys[0])).unwrap().is_none());
        assert_eq!(tx.table(t).unwrap().get(&key(12345)).unwrap(), None);
        let cs = tx.commit();
        assert_eq!(cs.tables[0].inserts.len(), 4);
        assert_eq!(db.table(t).unwrap().len(), 4);
        let got = db.table(t).unwrap().get(&key(keys[2])).unwrap().unwrap();
        assert_eq!(got, &row(keys[2], "changed")[..]);
    }
}

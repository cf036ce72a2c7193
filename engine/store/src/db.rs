//! [`Database`], [`Transaction`] and [`Changeset`].
//!
//! # Transactions
//!
//! A transaction writes through to the tables and remembers, for every row it touches (by table and primary
//! key), the row as it was before the first touch, plus each written table's auto_inc sequence. So:
//!
//! - reads inside the transaction — every query, spatial ones included — see its own writes;
//! - [`Transaction::commit`] keeps the writes and returns the [`Changeset`]: per touched key, the net effect
//!   (an insert, a delete, or an update with old and new row; a row changed and changed back is no change);
//! - [`Transaction::rollback`] (or dropping the transaction) restores every touched row and sequence, leaving no
//!   trace in any query's result;
//! - a failed write changes nothing, and the transaction stays usable.
//!
//! The database has one owner (the tick thread); a transaction borrows it mutably, so there is never more than one.
//! [`TxLog`] is the same transaction without the borrow, for owners that keep the database and the open
//! transaction side by side.

use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::{HashMap, HashSet};
use locus_types::{TableDef, TableId, Value};

use crate::error::{
    ApplyError, BuildTableError, CreateTableError, DeleteError, InsertError, SwapTablesError,
    UpdateError,
};
use crate::table::{FrozenTable, Table};

/// Tuning of the store. Every field's default is stated on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreConfig {
    /// Half the side of the fat envelope kept per row in spatial indexes, in world units (metres). A row moving
    /// less than this from where it was last indexed only updates its exact position. `0.0` re-inserts into the
    /// R-tree on every move. Default `2.0` (eight ticks of walking at 5 m/s and 20 Hz).
    pub spatial_margin: f32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            spatial_margin: 2.0,
        }
    }
}

/// All tables of a world. See the [module docs](self).
#[derive(Debug)]
pub struct Database {
    /// Distinguishes databases, so a [`TxLog`] can check it is always given the same one.
    instance: u64,
    config: StoreConfig,
    tables: Vec<Table>,
    names: HashMap<String, TableId>,
}

/// The net changes a committed transaction made to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableChangeset {
    /// The table.
    pub table: TableId,
    /// Rows that did not exist before (by primary key) and do now.
    pub inserts: Vec<Box<[u8]>>,
    /// Rows that existed before and do not now.
    pub deletes: Vec<Box<[u8]>>,
    /// Rows whose bytes changed, primary key unchanged.
    pub updates: Vec<RowUpdate>,
    /// The auto_inc sequence's new next value, if the transaction moved it.
    pub next_auto_inc: Option<u64>,
}

/// One updated row: its bytes before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowUpdate {
    /// The row before the transaction.
    pub old: Box<[u8]>,
    /// The row after it.
    pub new: Box<[u8]>,
}

/// What a committed transaction changed, per table in table-id order. Empty tables are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changeset {
    /// Changes per table.
    pub tables: Vec<TableChangeset>,
}

impl Changeset {
    /// Whether nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// How many rows were inserted, deleted or updated, in all tables.
    #[must_use]
    pub fn row_count(&self) -> usize {
        self.tables
            .iter()
            .map(|t| t.inserts.len() + t.deletes.len() + t.updates.len())
            .sum()
    }
}

impl Default for Database {
    fn default() -> Self {
        Database::new(StoreConfig::default())
    }
}

impl Database {
    /// An empty database.
    #[must_use]
    pub fn new(config: StoreConfig) -> Database {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Database {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            config,
            tables: Vec::new(),
            names: HashMap::new(),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Create an empty table; its id is the number of tables created before it.
    ///
    /// # Errors
    ///
    /// [`CreateTableError::Schema`] for an invalid definition, [`CreateTableError::DuplicateName`] if the name is
    /// taken.
    pub fn create_table(&mut self, def: TableDef) -> Result<TableId, CreateTableError> {
        def.validate()?;
        if self.names.contains_key(&def.name) {
            return Err(CreateTableError::DuplicateName { name: def.name });
        }
        let id = TableId(self.tables.len() as u32);
        self.names.insert(def.name.clone(), id);
        self.tables
            .push(Table::new(id, def, self.config.spatial_margin));
        Ok(id)
    }

    /// The table with id `id`.
    #[must_use]
    pub fn table(&self, id: TableId) -> Option<&Table> {
        self.tables.get(id.0 as usize)
    }

    /// The id of the table named `name`.
    #[must_use]
    pub fn table_id(&self, name: &str) -> Option<TableId> {
        self.names.get(name).copied()
    }

    /// Every table, in id order.
    pub fn tables(&self) -> impl Iterator<Item = &Table> + '_ {
        self.tables.iter()
    }

    /// An image of every table as it is now, in id order ([`Table::freeze`]): later writes do not change it. It
    /// shares the tables' row chunks copy-on-write, so it costs one reference count per 1,024 row slots, not a
    /// copy of the rows (e.g. to encode a snapshot on another thread while the world goes on).
    #[must_use]
    pub fn freeze(&self) -> Vec<FrozenTable> {
        self.tables.iter().map(Table::freeze).collect()
    }

    /// Begin a transaction.
    pub fn begin(&mut self) -> Transaction<'_> {
        Transaction {
            db: self,
            log: TxLog::new(),
            finished: false,
        }
    }

    /// Apply a committed changeset (e.g. when replaying a log), atomically: all of it or, on error, none.
    ///
    /// Deleted and updated rows must match the stored rows byte for byte.
    ///
    /// # Errors
    ///
    /// An [`ApplyError`] naming the first change that does not fit the current state.
    pub fn apply(&mut self, changeset: &Changeset) -> Result<(), ApplyError> {
        let mut tx = self.begin();
        for tc in &changeset.tables {
            let table = tx
                .db
                .table(tc.table)
                .ok_or(ApplyError::NoSuchTable(tc.table))?;
            let name = table.name().to_owned();
            for old in tc.deletes.iter().chain(tc.updates.iter().map(|u| &u.old)) {
                let table = tx.db.table(tc.table).expect("checked");
                let key = table
                    .primary_key_of(old)
                    .map_err(|source| ApplyError::Row {
                        table: name.clone(),
                        source,
                    })?;
                let stored = table.get(&key).ok().flatten();
                if stored != Some(&old[..]) {
                    return Err(ApplyError::Mismatch { table: name, key });
                }
                tx.delete(tc.table, &key).expect("row checked present");
            }
        }
        for tc in &changeset.tables {
            for new in tc.updates.iter().map(|u| &u.new).chain(&tc.inserts) {
                tx.insert(tc.table, new)?;
            }
            if let Some(next) = tc.next_auto_inc {
                tx.log.note_seq(tx.db, tc.table);
                tx.db.tables[tc.table.0 as usize].set_next_auto_inc(next);
            }
        }
        let _applied = tx.commit();
        Ok(())
    }

    /// Rebuild every spatial index with `rstar`'s `bulk_load`; call after loading many rows (e.g. on recovery).
    pub fn rebuild_spatial_indexes(&mut self) {
        for t in &mut self.tables {
            t.rebuild_spatial();
        }
    }

    /// Insert many rows into table `id` outside any transaction (loading a snapshot), building its spatial index
    /// once with `bulk_load` at the end. Rows keep their primary keys, auto_inc ones included; the sequence moves
    /// past the largest, as on any insert. Returns how many rows were inserted.
    ///
    /// # Errors
    ///
    /// [`ApplyError::NoSuchTable`], or [`ApplyError::Insert`] for the first row that does not fit: the rows before
    /// it stay inserted, so a caller that gets an error should discard the database.
    pub fn load<'r>(
        &mut self,
        id: TableId,
        rows: impl IntoIterator<Item = &'r [u8]>,
    ) -> Result<usize, ApplyError> {
        let table = self
            .tables
            .get_mut(id.0 as usize)
            .ok_or(ApplyError::NoSuchTable(id))?;
        table.load(rows).map_err(|(_, e)| ApplyError::Insert(e))
    }

    /// Write logged changes straight into table `id`, with no transaction and no changeset: the fast path of log
    /// replay. See [`Redo`].
    ///
    /// # Errors
    ///
    /// [`ApplyError::NoSuchTable`].
    pub fn redo(&mut self, id: TableId) -> Result<Redo<'_>, ApplyError> {
        let table = self
            .tables
            .get_mut(id.0 as usize)
            .ok_or(ApplyError::NoSuchTable(id))?;
        Ok(Redo { table })
    }

    /// Build a table apart from the database, to put in later with [`Database::swap_tables`] (e.g. a table
    /// migrated to a new schema, built while the database keeps serving the old one): `def` under id `id`, with this
    /// database's spatial margin, holding `rows` (bulk-loaded as by [`Database::load`]), its auto_inc sequence at
    /// `next_auto_inc` or past the largest key loaded, whichever is larger. The database is only read.
    ///
    /// # Errors
    ///
    /// A [`BuildTableError`]: the definition is invalid, or a row does not fit it.
    pub fn build_table<'r>(
        &self,
        id: TableId,
        def: TableDef,
        rows: impl IntoIterator<Item = &'r [u8]>,
        next_auto_inc: u64,
    ) -> Result<Table, BuildTableError> {
        def.validate()?;
        let mut table = Table::new(id, def, self.config.spatial_margin);
        table.load(rows).map_err(|(_, e)| e)?;
        if next_auto_inc > table.next_auto_inc() {
            table.set_next_auto_inc(next_auto_inc);
        }
        Ok(table)
    }

    /// Put `tables` (from [`Database::build_table`]) into the database, in order, all or none: a table whose id is
    /// an existing table's replaces it and must have its name; a table whose id is the number of tables so far is
    /// appended and must have a new name. Returns the replaced tables, in the order given. Every other table — its
    /// rows, indexes and sequence — is untouched, and the database stays the same database (a [`TxLog`] opened
    /// before may not be used across the swap, since its undo record names the replaced tables' rows).
    ///
    /// # Errors
    ///
    /// A [`SwapTablesError`] for the first table that fits neither rule; the database is then unchanged.
    pub fn swap_tables(&mut self, tables: Vec<Table>) -> Result<Vec<Table>, SwapTablesError> {
        let mut count = self.tables.len();
        let mut seen: Vec<&str> = Vec::new();
        for t in &tables {
            let at = t.id().0 as usize;
            if seen.contains(&t.name()) {
                return Err(SwapTablesError::DuplicateName {
                    name: t.name().to_owned(),
                });
            }
            seen.push(t.name());
            if at < self.tables.len() {
                let replaced = self.tables[at].name();
                if replaced != t.name() {
                    return Err(SwapTablesError::Renamed {
                        name: t.name().to_owned(),
                        replaced: replaced.to_owned(),
                        id: t.id(),
                    });
                }
            } else if at == count {
                if self.names.contains_key(t.name()) {
                    return Err(SwapTablesError::DuplicateName {
                        name: t.name().to_owned(),
                    });
                }
                count += 1;
            } else {
                return Err(SwapTablesError::BadId {
                    name: t.name().to_owned(),
                    id: t.id(),
                    tables: count,
                });
            }
        }
        let mut replaced = Vec::new();
        for t in tables {
            let at = t.id().0 as usize;
            if at < self.tables.len() {
                replaced.push(std::mem::replace(&mut self.tables[at], t));
            } else {
                self.names.insert(t.name().to_owned(), t.id());
                self.tables.push(t);
            }
        }
        Ok(replaced)
    }
}

impl Database {
    /// Remove the tables with ids `count..` — the last ones appended, e.g. to undo a [`Database::swap_tables`] that
    /// appended them — and return them, in id order. Every other table is untouched. Nothing is removed if the
    /// database has `count` tables or fewer.
    pub fn truncate_tables(&mut self, count: usize) -> Vec<Table> {
        if count >= self.tables.len() {
            return Vec::new();
        }
        let removed: Vec<Table> = self.tables.drain(count..).collect();
        for t in &removed {
            self.names.remove(t.name());
        }
        removed
    }
}

/// Changes written straight into one table, for replaying a log ([`Database::redo`]).
///
/// There is no transaction: each call takes effect at once, and a failed call leaves earlier ones in place. A
/// replay that fails stops recovery, and the half-replayed database is thrown away, so nothing needs undoing.
///
/// Replaying a committed [`Changeset`] table by table must not trip over constraints that only hold for the
/// transaction as a whole (two rows swapping a unique value, a row deleted and another inserted with its unique
/// value): do every table's deletes first — for a table with [unique indexes](Redo::has_unique_indexes), its
/// updated rows too, with [`Redo::remove_key_of`] — then the updates and inserts.
#[derive(Debug)]
pub struct Redo<'db> {
    table: &'db mut Table,
}

impl Redo<'_> {
    /// Whether the table has unique indexes besides its primary key, so that updates may conflict transiently.
    #[must_use]
    pub fn has_unique_indexes(&self) -> bool {
        self.table.has_unique_indexes()
    }

    /// Delete the stored row equal to `old` byte for byte.
    ///
    /// # Errors
    ///
    /// [`ApplyError::Row`] if `old` is not a valid row, [`ApplyError::Mismatch`] if the row stored under its key
    /// differs or is missing.
    pub fn delete(&mut self, old: &[u8]) -> Result<(), ApplyError> {
        let key = self.key_of(old)?;
        if self.table.get(&key).ok().flatten() != Some(old) {
            return Err(ApplyError::Mismatch {
                table: self.table.name().to_owned(),
                key,
            });
        }
        self.table.delete(&key).expect("row checked present");
        Ok(())
    }

    /// Delete the stored row with `row`'s primary key, whatever its other columns hold.
    ///
    /// # Errors
    ///
    /// [`ApplyError::Row`] if `row` is not a valid row, [`ApplyError::Mismatch`] if no row has its key.
    pub fn remove_key_of(&mut self, row: &[u8]) -> Result<(), ApplyError> {
        let key = self.key_of(row)?;
        match self.table.delete(&key) {
            Ok(_) => Ok(()),
            Err(_) => Err(ApplyError::Mismatch {
                table: self.table.name().to_owned(),
                key,
            }),
        }
    }

    /// Replace the stored row with `new`'s primary key by `new`.
    ///
    /// # Errors
    ///
    /// [`ApplyError::Update`] if the row is invalid, missing or breaks a constraint.
    pub fn update(&mut self, new: &[u8]) -> Result<(), ApplyError> {
        self.table.update(new, |_, _| {})?;
        Ok(())
    }

    /// Insert `row`.
    ///
    /// # Errors
    ///
    /// [`ApplyError::Insert`] if the row is invalid or breaks a constraint.
    pub fn insert(&mut self, row: &[u8]) -> Result<(), ApplyError> {
        self.table.insert(row)?;
        Ok(())
    }

    /// Set the auto_inc sequence's next value.
    pub fn set_next_auto_inc(&mut self, next: u64) {
        self.table.set_next_auto_inc(next);
    }

    fn key_of(&self, row: &[u8]) -> Result<Value, ApplyError> {
        self.table
            .primary_key_of(row)
            .map_err(|source| ApplyError::Row {
                table: self.table.name().to_owned(),
                source,
            })
    }
}

#[derive(Debug)]
struct Touch {
    table: TableId,
    key: Value,
    original: Option<Box<[u8]>>,
}

/// A transaction over a [`Database`]; see the [module docs](self). Dropping it without committing rolls it back.
///
/// It is a [`TxLog`] bundled with the database it writes to.
#[derive(Debug)]
pub struct Transaction<'db> {
    db: &'db mut Database,
    log: TxLog,
    finished: bool,
}

impl Transaction<'_> {
    /// The table with id `id`, as this transaction sees it.
    #[must_use]
    pub fn table(&self, id: TableId) -> Option<&Table> {
        self.db.table(id)
    }

    /// The id of the table named `name`.
    #[must_use]
    pub fn table_id(&self, name: &str) -> Option<TableId> {
        self.db.table_id(name)
    }

    /// How many distinct rows this transaction has written so far.
    #[must_use]
    pub fn touched_rows(&self) -> usize {
        self.log.touched_rows()
    }

    /// Insert a row (encoded per [`locus_types::codec`]). Returns its primary key; for an auto_inc table, a key
    /// of `0` is replaced by the sequence's next value.
    ///
    /// # Errors
    ///
    /// An [`InsertError`]; the database is then unchanged by this call.
    pub fn insert(&mut self, table: TableId, row: &[u8]) -> Result<Value, InsertError> {
        self.log.insert(self.db, table, row)
    }

    /// Replace the row with the same primary key as `row`. Returns that key.
    ///
    /// # Errors
    ///
    /// An [`UpdateError`]; the database is then unchanged by this call.
    pub fn update(&mut self, table: TableId, row: &[u8]) -> Result<Value, UpdateError> {
        self.log.update(self.db, table, row)
    }

    /// Delete the row with primary key `key`. Returns the deleted row.
    ///
    /// # Errors
    ///
    /// A [`DeleteError`]; the database is then unchanged by this call.
    pub fn delete(&mut self, table: TableId, key: &Value) -> Result<Box<[u8]>, DeleteError> {
        self.log.delete(self.db, table, key)
    }

    /// Move the table's auto_inc sequence forward so that its next value is at least `at_least` (never back); the
    /// move is part of the transaction (its changeset carries the new value, so the log keeps it). Returns the next
    /// value now.
    ///
    /// A world split into regions gives each region its own range of keys this way, so that rows moving between
    /// regions keep their keys.
    ///
    /// # Errors
    ///
    /// [`InsertError::NoSuchTable`] for an unknown table.
    pub fn advance_auto_inc(&mut self, table: TableId, at_least: u64) -> Result<u64, InsertError> {
        self.log.advance_auto_inc(self.db, table, at_least)
    }

    /// Set the table's auto_inc sequence's next value to `next`, forward or back, as part of the transaction.
    ///
    /// Inserting a row with an explicit key at or past the sequence moves the sequence past it. A world split into
    /// regions inserts rows keyed in another region's range (rows handed over) and puts its sequence back into its
    /// own range with this; the caller keeps the sequence above every key it could give out again.
    ///
    /// # Errors
    ///
    /// [`InsertError::NoSuchTable`] for an unknown table.
    pub fn set_auto_inc(&mut self, table: TableId, next: u64) -> Result<(), InsertError> {
        self.log.set_auto_inc(self.db, table, next)
    }

    /// Keep the writes and return their net effect.
    #[must_use = "the changeset is what the log and the clients need"]
    pub fn commit(mut self) -> Changeset {
        self.finished = true;
        std::mem::take(&mut self.log).commit(self.db)
    }

    /// Undo every write of this transaction.
    pub fn rollback(mut self) {
        self.finished = true;
        std::mem::take(&mut self.log).rollback(self.db);
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            std::mem::take(&mut self.log).rollback(self.db);
        }
    }
}

/// Up to this many touched rows, a transaction finds earlier touches by scanning its log instead of hashing.
const SMALL_TX: usize = 16;

/// The undo record of an open transaction, kept apart from the database it writes to.
///
/// [`Transaction`] is the convenient form: a `TxLog` plus `&mut Database`. A `TxLog` is for owners that cannot
/// hold a borrow across calls — e.g. the module host, whose per-instance state lives in a wasmtime `Store<T>` that
/// must be `'static` and owns the [`Database`] next to the log.
///
/// # Invariants the caller keeps
///
/// - Every call on one `TxLog` passes the same database, and nothing else writes to that database until the log
///   is [committed](TxLog::commit) or [rolled back](TxLog::rollback). The log checks the first rule and panics if
///   it is broken.
/// - A log is always finished with `commit` or `rollback`. Dropping an unfinished log keeps its writes but
///   loses their changeset (and panics in debug builds).
#[derive(Debug, Default)]
#[must_use = "a TxLog must be committed or rolled back"]
pub struct TxLog {
    db: Option<u64>,
    touched: HashSet<(TableId, Value)>,
    log: Vec<Touch>,
    seqs: Vec<(TableId, u64)>,
}

impl TxLog {
    /// An empty log: a transaction with no writes yet.
    pub fn new() -> TxLog {
        TxLog::default()
    }

    /// How many distinct rows this transaction has written so far.
    #[must_use]
    pub fn touched_rows(&self) -> usize {
        self.log.len()
    }

    fn bind(&mut self, db: &Database) {
        match self.db {
            None => self.db = Some(db.instance),
            Some(id) => assert_eq!(id, db.instance, "a TxLog was used with two databases"),
        }
    }

    fn note_seq(&mut self, db: &Database, table: TableId) {
        if !self.seqs.iter().any(|(t, _)| *t == table) {
            let next = db.tables[table.0 as usize].next_auto_inc();
            self.seqs.push((table, next));
        }
    }

    fn first_touch(
        touched: &mut HashSet<(TableId, Value)>,
        log: &mut Vec<Touch>,
        table: TableId,
        key: &Value,
        original: impl FnOnce() -> Option<Box<[u8]>>,
    ) {
        // Most transactions (one reducer call) touch a handful of rows: scan the log for those, and only build
        // the hash set once the log grows.
        if log.len() < SMALL_TX {
            if log.iter().any(|t| t.table == table && t.key == *key) {
                return;
            }
        } else {
            if touched.is_empty() {
                touched.extend(log.iter().map(|t| (t.table, t.key.clone())));
            }
            if !touched.insert((table, key.clone())) {
                return;
            }
        }
        log.push(Touch {
            table,
            key: key.clone(),
            original: original(),
        });
    }

    /// [`Transaction::insert`] on `db`.
    ///
    /// # Errors
    ///
    /// An [`InsertError`]; the database is then unchanged by this call.
    pub fn insert(
        &mut self,
        db: &mut Database,
        table: TableId,
        row: &[u8],
    ) -> Result<Value, InsertError> {
        self.bind(db);
        if db.table(table).is_none() {
            return Err(InsertError::NoSuchTable(table));
        }
        self.note_seq(db, table);
        let key = db.tables[table.0 as usize].insert(row)?;
        Self::first_touch(&mut self.touched, &mut self.log, table, &key, || None);
        Ok(key)
    }

    /// [`Transaction::advance_auto_inc`] on `db`.
    ///
    /// # Errors
    ///
    /// [`InsertError::NoSuchTable`] for an unknown table.
    pub fn advance_auto_inc(
        &mut self,
        db: &mut Database,
        table: TableId,
        at_least: u64,
    ) -> Result<u64, InsertError> {
        self.bind(db);
        if db.table(table).is_none() {
            return Err(InsertError::NoSuchTable(table));
        }
        self.note_seq(db, table);
        let t = &mut db.tables[table.0 as usize];
        let next = t.next_auto_inc().max(at_least);
        t.set_next_auto_inc(next);
        Ok(next)
    }

    /// [`Transaction::set_auto_inc`] on `db`.
    ///
    /// # Errors
    ///
    /// [`InsertError::NoSuchTable`] for an unknown table.
    pub fn set_auto_inc(
        &mut self,
        db: &mut Database,
        table: TableId,
        next: u64,
    ) -> Result<(), InsertError> {
        self.bind(db);
        if db.table(table).is_none() {
            return Err(InsertError::NoSuchTable(table));
        }
        self.note_seq(db, table);
        db.tables[table.0 as usize].set_next_auto_inc(next);
        Ok(())
    }

    /// [`Transaction::update`] on `db`.
    ///
    /// # Errors
    ///
    /// An [`UpdateError`]; the database is then unchanged by this call.
    pub fn update(
        &mut self,
        db: &mut Database,
        table: TableId,
        row: &[u8],
    ) -> Result<Value, UpdateError> {
        self.bind(db);
        let TxLog { touched, log, .. } = self;
        let t = db
            .tables
            .get_mut(table.0 as usize)
            .ok_or(UpdateError::NoSuchTable(table))?;
        t.update(row, |key, old| {
            Self::first_touch(touched, log, table, key, || Some(old.into()))
        })
    }

    /// [`Transaction::delete`] on `db`.
    ///
    /// # Errors
    ///
    /// A [`DeleteError`]; the database is then unchanged by this call.
    pub fn delete(
        &mut self,
        db: &mut Database,
        table: TableId,
        key: &Value,
    ) -> Result<Box<[u8]>, DeleteError> {
        self.bind(db);
        let t = db
            .tables
            .get_mut(table.0 as usize)
            .ok_or(DeleteError::NoSuchTable(table))?;
        let row = t.delete(key)?;
        Self::first_touch(&mut self.touched, &mut self.log, table, key, || {
            Some(row.clone())
        });
        Ok(row)
    }

    /// Keep the writes made to `db` and return their net effect.
    #[must_use = "the changeset is what the log and the clients need"]
    pub fn commit(mut self, db: &mut Database) -> Changeset {
        self.bind(db);
        // A transaction touches few tables: a vector searched linearly, sorted at the end.
        let mut tables: Vec<TableChangeset> = Vec::new();
        fn entry(tables: &mut Vec<TableChangeset>, table: TableId) -> &mut TableChangeset {
            match tables.iter().position(|t| t.table == table) {
                Some(i) => &mut tables[i],
                None => {
                    tables.push(TableChangeset {
                        table,
                        ..TableChangeset::default()
                    });
                    tables.last_mut().expect("just pushed")
                }
            }
        }
        for touch in std::mem::take(&mut self.log) {
            let t = &db.tables[touch.table.0 as usize];
            let current = t.get(&touch.key).expect("key type checked on write");
            match (touch.original, current) {
                (None, Some(new)) => entry(&mut tables, touch.table).inserts.push(new.into()),
                (Some(old), None) => entry(&mut tables, touch.table).deletes.push(old),
                (Some(old), Some(new)) if *old != *new => {
                    entry(&mut tables, touch.table).updates.push(RowUpdate {
                        old,
                        new: new.into(),
                    });
                }
                _ => {}
            }
        }
        for (table, before) in std::mem::take(&mut self.seqs) {
            let next = db.tables[table.0 as usize].next_auto_inc();
            if next != before {
                entry(&mut tables, table).next_auto_inc = Some(next);
            }
        }
        tables.sort_unstable_by_key(|t| t.table);
        self.touched.clear();
        Changeset { tables }
    }

    /// Undo every write made to `db` through this log.
    pub fn rollback(mut self, db: &mut Database) {
        self.bind(db);
        // First remove every touched key's current row, then restore the originals: the original state was
        // consistent, so re-inserting into it cannot violate a constraint whatever order the writes came in.
        for touch in &self.log {
            let t = &mut db.tables[touch.table.0 as usize];
            let _ = t.delete(&touch.key);
        }
        for touch in std::mem::take(&mut self.log) {
            if let Some(original) = touch.original {
                let t = &mut db.tables[touch.table.0 as usize];
                t.insert(&original)
                    .expect("restoring an original row cannot conflict");
            }
        }
        for (table, before) in std::mem::take(&mut self.seqs) {
            db.tables[table.0 as usize].set_next_auto_inc(before);
        }
        self.touched.clear();
    }
}

impl Drop for TxLog {
    fn drop(&mut self) {
        debug_assert!(
            self.log.is_empty() || std::thread::panicking(),
            "a TxLog with writes was dropped without commit or rollback"
        );
    }
}

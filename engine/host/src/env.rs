//! The engine side of every host call: [`Env`] knows the database, the open transaction and the running call, and
//! nothing of wasm. The wasmtime layer ([`crate::calls`]) only moves bytes between guest memory and these methods.
//!
//! The database is not the instance's: its owner (the server's world) lends it for each call, and
//! [`crate::ModuleInstance`] moves it into `Env::db` for the call and back out after it.
//!
//! Every method returns `Err(Errno)` for a runtime condition the module can handle; the ABI contract for each is in
//! `locus_types::abi` and `engine/docs/module-abi.md`.
//!
//! # Invariants
//!
//! - `tx` is `Some` exactly while a reducer call is running (`call.active`).
//! - `db` is the lent database while the instance runs something, and an empty placeholder otherwise; a call
//!   starts and ends while it is lent.
//! - Iterators and the call's log-line count belong to the running call and are cleared when it ends.
//! - Only the module's own tables are visible: the system tables are reached through their host calls only
//!   (`locus_schedule` through `schedule`/`unschedule`, `locus_area` through `area_follow`/`area_fixed`/
//!   `area_clear`, and in a world split into regions the server's `locus_outbox` and `locus_regions` through
//!   `region_send`/`region_broadcast`, and `locus_regions` alone through `region_list`, which look them up by
//!   name in the lent database at every call).

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::{Arc, LazyLock};

use hashbrown::HashMap;
use locus_region::message::{
    OUTBOX_TABLE, REGIONS_TABLE, RegionMessage, outbox_row, outbox_table_def, parse_regions_row,
    regions_table_def,
};
use locus_region::{Destination, RegionId};
use locus_store::Database;
use locus_store::spatial::valid_position;
use locus_store::{Changeset, DeleteError, InsertError, QueryError, TxLog, UpdateError};
use locus_types::abi::{
    AreaCenter, AreaRow, BoundKind, CONTEXT_SIZE, ContextLayout, Errno, LogLevel,
    MAX_REGION_CALL_ARGS, valid_area_radii,
};
use locus_types::{
    ColumnDef, ColumnId, ColumnType, Identity, IndexKind, TableDef, TableId, Tick, Timestamp,
    Value, Vec2, codec,
};

use crate::config::HostConfig;
use crate::error::PanicLocation;

/// Longest message or log line kept, in bytes; longer ones are cut at a character boundary.
pub(crate) const MAX_MESSAGE: usize = 4096;

/// Who is calling and when: the context a reducer sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// The caller; [`Identity::SERVER`] for calls the server makes itself (lifecycle, tick, scheduled).
    pub sender: Identity,
    /// The tick the call runs in.
    pub tick: Tick,
    /// The call's timestamp.
    pub timestamp: Timestamp,
    /// Seed of the call's deterministic RNG. The server derives it from the world seed, the tick and the call's
    /// position in the tick, so a replay draws the same numbers.
    pub rng_seed: u64,
}

impl CallContext {
    /// A context for a call the server makes itself at `tick` and `timestamp`.
    #[must_use]
    pub fn server(tick: Tick, timestamp: Timestamp, rng_seed: u64) -> CallContext {
        CallContext {
            sender: Identity::SERVER,
            tick,
            timestamp,
            rng_seed,
        }
    }
}

/// One line of the module log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// The reducer that wrote it (empty while the host reads descriptions).
    pub reducer: Arc<str>,
    /// The tick of the call that wrote it.
    pub tick: Tick,
    /// The text, at most 4 KiB.
    pub message: String,
}

/// The rows of one query, copied when the query ran.
#[derive(Debug, Default)]
struct RowIter {
    data: Vec<u8>,
    /// End offset of each row in `data`.
    ends: Vec<u32>,
    /// The next row to hand out.
    next: usize,
}

impl RowIter {
    fn start(&self) -> usize {
        if self.next == 0 {
            0
        } else {
            self.ends[self.next - 1] as usize
        }
    }
}

/// What `iter_next` should copy out.
pub(crate) enum IterNext<'a> {
    /// These whole rows (at least one).
    Rows(&'a [u8]),
    /// Not even the next row fits; it needs this many bytes.
    TooSmall(u32),
    /// No rows left; the iterator is closed.
    Exhausted,
}

/// The running call's open iterators.
#[derive(Debug, Default)]
struct Iters {
    slots: Vec<Option<RowIter>>,
    open: usize,
    bytes: usize,
    max_open: usize,
    max_bytes: usize,
}

impl Iters {
    /// Copy `rows` into a new iterator; returns its handle.
    fn open<'r>(&mut self, rows: impl IntoIterator<Item = &'r [u8]>) -> Result<u32, Errno> {
        if self.open >= self.max_open {
            return Err(Errno::LimitExceeded);
        }
        let mut it = RowIter::default();
        for row in rows {
            if self.bytes + it.data.len() + row.len() > self.max_bytes {
                return Err(Errno::LimitExceeded);
            }
            it.data.extend_from_slice(row);
            it.ends.push(it.data.len() as u32);
        }
        self.bytes += it.data.len();
        self.open += 1;
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Some(it);
        Ok(slot as u32)
    }

    fn close(&mut self, slot: usize) -> bool {
        match self.slots.get_mut(slot).and_then(Option::take) {
            Some(it) => {
                self.open -= 1;
                self.bytes -= it.data.len();
                true
            }
            None => false,
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.open = 0;
        self.bytes = 0;
    }
}

#[derive(Debug, Default)]
struct Call {
    active: bool,
    reducer: Arc<str>,
    args: Vec<u8>,
    ctx: Option<CallContext>,
    message: Option<String>,
    /// What `reducer_panic` recorded: the panic's message and location.
    panic: Option<(String, Option<PanicLocation>)>,
    log_lines: usize,
}

/// The engine-side state of one module instance. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Env {
    /// The lent database (see the [module docs](self)).
    pub(crate) db: Database,
    tx: Option<TxLog>,
    /// The module's tables by name.
    names: HashMap<String, TableId>,
    /// Indexed by `TableId`: whether the module may use the table.
    visible: Vec<bool>,
    schedule_table: Option<TableId>,
    area_table: Option<TableId>,
    module_table: Option<TableId>,
    /// `Scheduled` reducers and their parameters.
    scheduled: HashMap<String, Vec<ColumnDef>>,
    /// The reducers a call sent between regions may name (`ReducerKind::accepts_region_calls`) and their
    /// parameters.
    sendable: HashMap<String, Vec<ColumnDef>>,
    call: Call,
    iters: Iters,
    logs: VecDeque<LogLine>,
    config: HostConfig,
    offsets: Vec<u32>,
}

fn utf8(bytes: &[u8]) -> Result<&str, Errno> {
    std::str::from_utf8(bytes).map_err(|_| Errno::BadUtf8)
}

/// `s` cut to at most [`MAX_MESSAGE`] bytes at a character boundary.
pub(crate) fn truncated(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn insert_errno(e: &InsertError) -> Errno {
    match e {
        InsertError::NoSuchTable(_) => Errno::NoSuchTable,
        InsertError::Row { .. } => Errno::BadRow,
        InsertError::DuplicateKey { .. } | InsertError::UniqueViolation { .. } => {
            Errno::UniqueViolation
        }
        InsertError::InvalidPosition { .. } => Errno::InvalidPosition,
        InsertError::SequenceExhausted { .. } => Errno::LimitExceeded,
    }
}

fn update_errno(e: &UpdateError) -> Errno {
    match e {
        UpdateError::NoSuchTable(_) => Errno::NoSuchTable,
        UpdateError::Row { .. } => Errno::BadRow,
        UpdateError::NotFound { .. } => Errno::NotFound,
        UpdateError::UniqueViolation { .. } => Errno::UniqueViolation,
        UpdateError::InvalidPosition { .. } => Errno::InvalidPosition,
    }
}

fn delete_errno(e: &DeleteError) -> Errno {
    match e {
        DeleteError::NoSuchTable(_) => Errno::NoSuchTable,
        DeleteError::KeyType { .. } => Errno::BadKey,
        DeleteError::NotFound { .. } => Errno::NotFound,
    }
}

fn query_errno(e: &QueryError) -> Errno {
    match e {
        QueryError::NoSuchTable(_) => Errno::NoSuchTable,
        QueryError::NoSuchColumn { .. } | QueryError::NoIndex { .. } => Errno::NoSuchIndex,
        QueryError::KeyType { .. } => Errno::BadKey,
    }
}

/// The definition of the system table holding one-shot schedules.
pub(crate) fn schedule_table_def() -> TableDef {
    TableDef::builder(locus_types::abi::SCHEDULE_TABLE)
        .column("id", ColumnType::U64)
        .column("reducer", ColumnType::String)
        .column("at", ColumnType::Timestamp)
        .column("args", ColumnType::Bytes)
        .primary_key("id")
        .auto_inc()
        .index("at", IndexKind::BTree)
        .build()
        .expect("the schedule table's definition is valid")
}

/// The definitions of the server's system tables of a world split into regions, built once: a table of that name
/// counts as one only with exactly this definition.
static OUTBOX_DEF: LazyLock<TableDef> = LazyLock::new(outbox_table_def);
static REGIONS_DEF: LazyLock<TableDef> = LazyLock::new(regions_table_def);

/// The reducers of a module that host calls name, with their parameters: what `schedule` may schedule, and what
/// `region_send` / `region_broadcast` may send.
#[derive(Clone, Debug, Default)]
pub(crate) struct NamedReducers {
    /// `Scheduled` reducers.
    pub(crate) scheduled: HashMap<String, Vec<ColumnDef>>,
    /// Reducers of a kind that accepts calls from regions (`Client`, `Region`).
    pub(crate) sendable: HashMap<String, Vec<ColumnDef>>,
}

/// The ids of the system tables, which the module cannot see.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SystemTables {
    /// `locus_schedule`.
    pub(crate) schedule: TableId,
    /// `locus_area`.
    pub(crate) area: TableId,
    /// `locus_module`.
    pub(crate) module: TableId,
}

/// A row of the schedule table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScheduleRow {
    pub(crate) id: u64,
    pub(crate) reducer: String,
    pub(crate) at: Timestamp,
    pub(crate) args: Vec<u8>,
}

impl Env {
    pub(crate) fn new(config: HostConfig) -> Env {
        Env {
            iters: Iters {
                max_open: config.max_iterators,
                max_bytes: config.max_iterator_bytes,
                ..Iters::default()
            },
            config,
            ..Env::default()
        }
    }

    /// Make the module's tables (by name) visible, and remember the system tables and the reducers host calls
    /// name. `table_count` is the number of tables of the database the instance will be lent.
    pub(crate) fn bind(
        &mut self,
        tables: HashMap<String, TableId>,
        system: SystemTables,
        reducers: NamedReducers,
        table_count: usize,
    ) {
        self.visible = vec![false; table_count];
        for id in tables.values() {
            self.visible[id.0 as usize] = true;
        }
        self.names = tables;
        self.schedule_table = Some(system.schedule);
        self.area_table = Some(system.area);
        self.module_table = Some(system.module);
        self.scheduled = reducers.scheduled;
        self.sendable = reducers.sendable;
    }

    // ---- call lifecycle -------------------------------------------------------------------------------------

    /// Start a call: open a transaction and record the arguments and context.
    pub(crate) fn begin_call(&mut self, reducer: Arc<str>, args: &[u8], ctx: CallContext) {
        debug_assert!(!self.call.active, "calls do not nest");
        self.call.active = true;
        self.call.reducer = reducer;
        self.call.args.clear();
        self.call.args.extend_from_slice(args);
        self.call.ctx = Some(ctx);
        self.call.message = None;
        self.call.panic = None;
        self.call.log_lines = 0;
        self.tx = Some(TxLog::new());
    }

    /// Whether a call is running (begun and not yet ended).
    pub(crate) fn in_call_now(&self) -> bool {
        self.call.active
    }

    /// End the running call: commit or roll back its transaction, close its iterators. Returns the changeset
    /// (empty on rollback) and the failure message the module set, if any.
    pub(crate) fn end_call(&mut self, commit: bool) -> (Changeset, Option<String>) {
        self.call.active = false;
        self.iters.clear();
        let changes = match self.tx.take() {
            Some(tx) if commit => tx.commit(&mut self.db),
            Some(tx) => {
                tx.rollback(&mut self.db);
                Changeset::default()
            }
            None => Changeset::default(),
        };
        (changes, self.call.message.take())
    }

    /// End the running call like [`Env::end_call`] but leave its transaction open: its writes stay in the database,
    /// and the caller commits or rolls back the returned log against the database later (the upgrade hook's, which
    /// must stay undoable until the upgraded data is durable).
    pub(crate) fn detach_call(&mut self) -> TxLog {
        self.call.active = false;
        self.iters.clear();
        self.tx.take().expect("a call is running")
    }

    /// Record, in the running call's transaction, that the data is at module `version` (the row of
    /// `locus_module`).
    pub(crate) fn put_module_version(&mut self, version: u32) -> Result<(), Errno> {
        let table = self.module_table.ok_or(Errno::NoSuchTable)?;
        let exists = self
            .db
            .table(table)
            .is_some_and(|t| matches!(t.get(&Value::U64(0)), Ok(Some(_))));
        let row = locus_types::abi::module_row(version);
        let (tx, db) = self.tx()?;
        if exists {
            tx.update(db, table, &row)
                .map(drop)
                .map_err(|e| update_errno(&e))
        } else {
            tx.insert(db, table, &row)
                .map(drop)
                .map_err(|e| insert_errno(&e))
        }
    }

    /// Delete a schedule row inside the running call's transaction, before the reducer it triggers runs, so
    /// both commit or roll back together.
    pub(crate) fn delete_schedule_in_call(&mut self, id: u64) -> Result<(), Errno> {
        let table = self.schedule_table.ok_or(Errno::NoSuchTable)?;
        let (tx, db) = self.tx()?;
        tx.delete(db, table, &Value::U64(id))
            .map(drop)
            .map_err(|e| delete_errno(&e))
    }

    /// The due one-shot schedules (`at <= now`), earliest first.
    pub(crate) fn due_schedules(&self, now: Timestamp) -> Vec<ScheduleRow> {
        let Some(table) = self.schedule_table.and_then(|t| self.db.table(t)) else {
            return Vec::new();
        };
        let at = Value::Timestamp(now);
        let rows = table
            .index_range(ColumnId(2), Bound::Unbounded, Bound::Included(&at))
            .expect("the schedule table has a btree index on `at`");
        rows.into_iter()
            .map(|row| {
                let v = table.decode(row).expect("stored rows are valid");
                match &v[..] {
                    [
                        Value::U64(id),
                        Value::String(reducer),
                        Value::Timestamp(at),
                        Value::Bytes(args),
                    ] => ScheduleRow {
                        id: *id,
                        reducer: reducer.to_string(),
                        at: *at,
                        args: args.to_vec(),
                    },
                    other => unreachable!("schedule row of the wrong shape: {other:?}"),
                }
            })
            .collect()
    }

    /// Whether the schedule row `id` still exists (a reducer run earlier in the same pass may have cancelled it).
    pub(crate) fn schedule_exists(&self, id: u64) -> bool {
        self.schedule_table
            .and_then(|t| self.db.table(t))
            .is_some_and(|t| matches!(t.get(&Value::U64(id)), Ok(Some(_))))
    }

    /// Delete a schedule row in a transaction of its own (after the call it triggered failed).
    pub(crate) fn consume_schedule(&mut self, id: u64) -> Changeset {
        let Some(table) = self.schedule_table else {
            return Changeset::default();
        };
        let mut tx = self.db.begin();
        match tx.delete(table, &Value::U64(id)) {
            Ok(_) => tx.commit(),
            Err(_) => Changeset::default(),
        }
    }

    fn tx(&mut self) -> Result<(&mut TxLog, &mut Database), Errno> {
        match &mut self.tx {
            Some(tx) => Ok((tx, &mut self.db)),
            None => Err(Errno::NotInReducer),
        }
    }

    fn in_call(&self) -> Result<(), Errno> {
        if self.call.active {
            Ok(())
        } else {
            Err(Errno::NotInReducer)
        }
    }

    fn table(&self, id: u32) -> Result<TableId, Errno> {
        if self.visible.get(id as usize).copied().unwrap_or(false) {
            Ok(TableId(id))
        } else {
            Err(Errno::NoSuchTable)
        }
    }

    fn column(&self, table: TableId, column: u32) -> Result<&ColumnDef, Errno> {
        let t = self.db.table(table).ok_or(Errno::NoSuchTable)?;
        u16::try_from(column)
            .ok()
            .and_then(|c| t.def().column(ColumnId(c)))
            .ok_or(Errno::NoSuchIndex)
    }

    fn key(&self, table: TableId, column: ColumnId, bytes: &[u8]) -> Result<Value, Errno> {
        let t = self.db.table(table).ok_or(Errno::NoSuchTable)?;
        let col = t.def().column(column).ok_or(Errno::NoSuchIndex)?;
        codec::decode_value(col, bytes).map_err(|_| Errno::BadKey)
    }

    /// The logs written so far, oldest first; drains them.
    pub(crate) fn drain_logs(&mut self) -> Vec<LogLine> {
        self.logs.drain(..).collect()
    }

    pub(crate) fn push_log(&mut self, level: LogLevel, message: String) {
        let line = LogLine {
            level,
            reducer: self.call.reducer.clone(),
            tick: self.call.ctx.map(|c| c.tick).unwrap_or_default(),
            message,
        };
        emit(&line);
        if self.logs.len() >= self.config.log_buffer {
            self.logs.pop_front();
        }
        self.logs.push_back(line);
    }

    // ---- host calls -----------------------------------------------------------------------------------------

    pub(crate) fn table_id(&self, name: &[u8]) -> Result<u32, Errno> {
        let name = utf8(name)?;
        self.names.get(name).map(|t| t.0).ok_or(Errno::NoSuchTable)
    }

    pub(crate) fn args(&self) -> Result<&[u8], Errno> {
        self.in_call()?;
        Ok(&self.call.args)
    }

    pub(crate) fn context(&self) -> Result<[u8; CONTEXT_SIZE], Errno> {
        self.in_call()?;
        let ctx = self.call.ctx.ok_or(Errno::NotInReducer)?;
        let mut out = [0u8; CONTEXT_SIZE];
        out[ContextLayout::SENDER..ContextLayout::SENDER + 32].copy_from_slice(&ctx.sender.0);
        out[ContextLayout::TICK..ContextLayout::TICK + 8]
            .copy_from_slice(&ctx.tick.0.to_le_bytes());
        out[ContextLayout::TIMESTAMP..ContextLayout::TIMESTAMP + 8]
            .copy_from_slice(&ctx.timestamp.0.to_le_bytes());
        out[ContextLayout::RNG_SEED..ContextLayout::RNG_SEED + 8]
            .copy_from_slice(&ctx.rng_seed.to_le_bytes());
        Ok(out)
    }

    pub(crate) fn fail(&mut self, msg: &[u8]) -> Result<(), Errno> {
        self.in_call()?;
        self.call.message = Some(truncated(utf8(msg)?));
        Ok(())
    }

    pub(crate) fn panic(
        &mut self,
        msg: &[u8],
        file: &[u8],
        line: u32,
        column: u32,
    ) -> Result<(), Errno> {
        self.in_call()?;
        let message = truncated(utf8(msg)?);
        let file = truncated(utf8(file)?);
        let location = (!file.is_empty()).then_some(PanicLocation { file, line, column });
        self.call.panic = Some((message, location));
        Ok(())
    }

    /// Take the panic the running (or just ended) call recorded with `reducer_panic`, if any.
    pub(crate) fn take_panic(&mut self) -> Option<(String, Option<PanicLocation>)> {
        self.call.panic.take()
    }

    pub(crate) fn log(&mut self, level: u32, msg: &[u8]) -> Result<(), Errno> {
        let level = LogLevel::from_code(level).ok_or(Errno::BadArgument)?;
        let msg = truncated(utf8(msg)?);
        if self.call.log_lines >= self.config.max_log_lines {
            return Err(Errno::LimitExceeded);
        }
        self.call.log_lines += 1;
        self.push_log(level, msg);
        Ok(())
    }

    pub(crate) fn insert(&mut self, table: u32, row: &[u8]) -> Result<u64, Errno> {
        self.in_call()?;
        let table = self.table(table)?;
        let (tx, db) = self.tx()?;
        match tx.insert(db, table, row) {
            Ok(Value::U64(k)) => Ok(k),
            Ok(Value::I64(k)) => Ok(k as u64),
            Ok(_) => Ok(0),
            Err(e) => Err(insert_errno(&e)),
        }
    }

    pub(crate) fn update(&mut self, table: u32, row: &[u8]) -> Result<(), Errno> {
        self.in_call()?;
        let table = self.table(table)?;
        let (tx, db) = self.tx()?;
        tx.update(db, table, row)
            .map(drop)
            .map_err(|e| update_errno(&e))
    }

    pub(crate) fn delete(&mut self, table: u32, key: &[u8]) -> Result<(), Errno> {
        self.in_call()?;
        let table = self.table(table)?;
        let pk = self
            .db
            .table(table)
            .ok_or(Errno::NoSuchTable)?
            .def()
            .primary_key;
        let key = self.key(table, pk, key)?;
        let (tx, db) = self.tx()?;
        tx.delete(db, table, &key)
            .map(drop)
            .map_err(|e| delete_errno(&e))
    }

    pub(crate) fn get(&self, table: u32, key: &[u8]) -> Result<&[u8], Errno> {
        self.in_call()?;
        let table = self.table(table)?;
        let t = self.db.table(table).ok_or(Errno::NoSuchTable)?;
        let key = self.key(table, t.def().primary_key, key)?;
        t.get(&key)
            .map_err(|e| query_errno(&e))?
            .ok_or(Errno::NotFound)
    }

    pub(crate) fn row_count(&self, table: u32) -> Result<u64, Errno> {
        self.in_call()?;
        let table = self.table(table)?;
        Ok(self.db.table(table).map_or(0, |t| t.len() as u64))
    }

    /// Run `query` over the table and open an iterator over its rows.
    fn open_query(
        &mut self,
        table: u32,
        query: impl for<'t> FnOnce(&'t locus_store::Table) -> Result<Vec<&'t [u8]>, Errno>,
    ) -> Result<u32, Errno> {
        self.in_call()?;
        let table = self.table(table)?;
        if self.iters.open >= self.iters.max_open {
            return Err(Errno::LimitExceeded);
        }
        let t = self.db.table(table).ok_or(Errno::NoSuchTable)?;
        let rows = query(t)?;
        self.iters.open(rows)
    }

    pub(crate) fn scan(&mut self, table: u32) -> Result<u32, Errno> {
        self.open_query(table, |t| Ok(t.iter().collect()))
    }

    pub(crate) fn index_eq(&mut self, table: u32, column: u32, key: &[u8]) -> Result<u32, Errno> {
        self.in_call()?;
        let tid = self.table(table)?;
        let col = self.column(tid, column)?;
        let key = codec::decode_value(col, key).map_err(|_| Errno::BadKey)?;
        let column = ColumnId(column as u16);
        self.open_query(table, |t| {
            t.index_eq(column, &key).map_err(|e| query_errno(&e))
        })
    }

    pub(crate) fn index_range(
        &mut self,
        table: u32,
        column: u32,
        lo: &[u8],
        hi: &[u8],
        bounds: u32,
    ) -> Result<u32, Errno> {
        self.in_call()?;
        let tid = self.table(table)?;
        let (lo_kind, hi_kind) = BoundKind::unpack(bounds).ok_or(Errno::BadArgument)?;
        let col = self.column(tid, column)?;
        let t = self.db.table(tid).ok_or(Errno::NoSuchTable)?;
        let ordered = t.def().indexes.iter().any(|i| {
            u32::from(i.column.0) == column
                && matches!(i.kind, IndexKind::Unique | IndexKind::BTree)
        });
        if !ordered {
            return Err(Errno::NoSuchIndex);
        }
        let decode = |kind: BoundKind, bytes: &[u8]| -> Result<Option<(BoundKind, Value)>, Errno> {
            match kind {
                BoundKind::Unbounded => Ok(None),
                k => Ok(Some((
                    k,
                    codec::decode_value(col, bytes).map_err(|_| Errno::BadKey)?,
                ))),
            }
        };
        let lo = decode(lo_kind, lo)?;
        let hi = decode(hi_kind, hi)?;
        let column = ColumnId(column as u16);
        let bound = |b: &Option<(BoundKind, Value)>| match b {
            None => Bound::Unbounded,
            Some((BoundKind::Included, v)) => Bound::Included(v.clone()),
            Some((_, v)) => Bound::Excluded(v.clone()),
        };
        let (lo, hi) = (bound(&lo), bound(&hi));
        self.open_query(table, |t| {
            t.index_range(column, lo.as_ref(), hi.as_ref())
                .map_err(|e| query_errno(&e))
        })
    }

    pub(crate) fn within_radius(
        &mut self,
        table: u32,
        center: Vec2,
        radius: f32,
    ) -> Result<u32, Errno> {
        if !valid_position(center) || !radius.is_finite() || radius < 0.0 {
            self.in_call()?;
            self.table(table)?;
            return Err(Errno::InvalidPosition);
        }
        self.open_query(table, |t| {
            Ok(t.within_radius(center, radius)
                .map_err(|e| query_errno(&e))?
                .collect())
        })
    }

    pub(crate) fn within_box(&mut self, table: u32, min: Vec2, max: Vec2) -> Result<u32, Errno> {
        if !valid_position(min) || !valid_position(max) || min.x > max.x || min.y > max.y {
            self.in_call()?;
            self.table(table)?;
            return Err(Errno::InvalidPosition);
        }
        self.open_query(table, |t| {
            Ok(t.locate_in_envelope(min, max)
                .map_err(|e| query_errno(&e))?
                .collect())
        })
    }

    pub(crate) fn nearest(&mut self, table: u32, point: Vec2, k: u32) -> Result<u32, Errno> {
        if !valid_position(point) {
            self.in_call()?;
            self.table(table)?;
            return Err(Errno::InvalidPosition);
        }
        self.open_query(table, |t| {
            Ok(t.nearest_neighbors(point, k as usize)
                .map_err(|e| query_errno(&e))?
                .into_iter()
                .map(|(row, _)| row)
                .collect())
        })
    }

    pub(crate) fn iter_next(&mut self, handle: u32, cap: u32) -> Result<IterNext<'_>, Errno> {
        self.in_call()?;
        let slot = handle as usize;
        let it = self
            .iters
            .slots
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or(Errno::NoSuchIterator)?;
        if it.next == it.ends.len() {
            self.iters.close(slot);
            return Ok(IterNext::Exhausted);
        }
        let start = it.start();
        let cap = cap as usize;
        let first_len = it.ends[it.next] as usize - start;
        if first_len > cap {
            return Ok(IterNext::TooSmall(first_len as u32));
        }
        // The last row that fits: ends are increasing, so binary search for start + cap.
        let limit = start + cap;
        let fit = it.ends[it.next..].partition_point(|&end| end as usize <= limit);
        let it = self.iters.slots[slot].as_mut().expect("checked above");
        it.next += fit;
        let end = it.ends[it.next - 1] as usize;
        Ok(IterNext::Rows(&it.data[start..end]))
    }

    pub(crate) fn iter_close(&mut self, handle: u32) -> Result<(), Errno> {
        if self.iters.close(handle as usize) {
            Ok(())
        } else {
            Err(Errno::NoSuchIterator)
        }
    }

    pub(crate) fn schedule(&mut self, name: &[u8], at: u64, args: &[u8]) -> Result<u64, Errno> {
        self.in_call()?;
        let name = utf8(name)?;
        let params = self.scheduled.get(name).ok_or(Errno::NoSuchReducer)?;
        codec::validate_row(params, args, &mut self.offsets).map_err(|_| Errno::BadArgument)?;
        let table = self.schedule_table.ok_or(Errno::NoSuchTable)?;
        let def = self.db.table(table).ok_or(Errno::NoSuchTable)?.def();
        let row = codec::encode_row(
            &def.columns,
            &[
                Value::U64(0),
                Value::String(name.into()),
                Value::Timestamp(Timestamp(at)),
                Value::Bytes(args.into()),
            ],
        )
        .map_err(|_| Errno::BadArgument)?;
        let (tx, db) = self.tx()?;
        match tx.insert(db, table, &row) {
            Ok(Value::U64(id)) => Ok(id),
            Ok(_) => unreachable!("the schedule table's key is a u64"),
            Err(e) => Err(insert_errno(&e)),
        }
    }

    pub(crate) fn unschedule(&mut self, id: u64) -> Result<(), Errno> {
        self.in_call()?;
        let table = self.schedule_table.ok_or(Errno::NotFound)?;
        let (tx, db) = self.tx()?;
        tx.delete(db, table, &Value::U64(id))
            .map(drop)
            .map_err(|e| delete_errno(&e))
    }

    pub(crate) fn area_follow(
        &mut self,
        identity: Identity,
        table: u32,
        key: &[u8],
        enter: f32,
        leave: f32,
    ) -> Result<(), Errno> {
        self.in_call()?;
        let table = self.table(table)?;
        let def = self.db.table(table).ok_or(Errno::NoSuchTable)?.def();
        if def.spatial_column().is_none() {
            return Err(Errno::NoSuchIndex);
        }
        let pk = def.column(def.primary_key).ok_or(Errno::NoSuchTable)?;
        let value = codec::decode_value(pk, key).map_err(|_| Errno::BadArgument)?;
        if !valid_area_radii(enter, leave) {
            return Err(Errno::BadArgument);
        }
        // Store the key's canonical encoding, whatever markers the module used.
        let mut key = Vec::with_capacity(key.len());
        codec::encode_value(pk, &value, &mut key).map_err(|_| Errno::BadArgument)?;
        self.put_area(&AreaRow {
            identity,
            center: AreaCenter::Follow { table, key },
            enter,
            leave,
        })
    }

    pub(crate) fn area_fixed(
        &mut self,
        identity: Identity,
        at: Vec2,
        enter: f32,
        leave: f32,
    ) -> Result<(), Errno> {
        self.in_call()?;
        if !valid_position(at) {
            return Err(Errno::InvalidPosition);
        }
        if !valid_area_radii(enter, leave) {
            return Err(Errno::BadArgument);
        }
        self.put_area(&AreaRow {
            identity,
            center: AreaCenter::Fixed(at),
            enter,
            leave,
        })
    }

    pub(crate) fn area_clear(&mut self, identity: Identity) -> Result<(), Errno> {
        self.in_call()?;
        let table = self.area_table.ok_or(Errno::NotFound)?;
        let (tx, db) = self.tx()?;
        tx.delete(db, table, &Value::Identity(identity))
            .map(drop)
            .map_err(|e| delete_errno(&e))
    }

    /// `region_send`: a call of `reducer` with `args` to the region named `region`. See [`Env::send_to_regions`].
    pub(crate) fn region_send(
        &mut self,
        region: &[u8],
        reducer: &[u8],
        args: &[u8],
    ) -> Result<(), Errno> {
        self.in_call()?;
        let region = utf8(region)?;
        self.send_to_regions(Some(region), reducer, args)
    }

    /// `region_broadcast`: a call of `reducer` with `args` to every region. See [`Env::send_to_regions`].
    pub(crate) fn region_broadcast(&mut self, reducer: &[u8], args: &[u8]) -> Result<(), Errno> {
        self.in_call()?;
        self.send_to_regions(None, reducer, args)
    }

    /// Write, in the running transaction, a row of the outbox table (`locus_outbox`) holding a
    /// [`RegionMessage::Call`] of `reducer` with `args` as the running call's sender, addressed to the region named
    /// `to` (its index in `locus_regions`), or to every region (`TO_ALL`) for `None`. The server publishes it once
    /// the transaction is durable; a rolled-back call sends nothing.
    ///
    /// Errors, in this order: `BadUtf8` (the reducer's name); `NoSuchReducer` unless the module has a reducer of
    /// that name whose kind accepts calls from regions; `BadArgument` unless `args` is a valid argument array of
    /// its parameters; `LimitExceeded` if `args` is longer than [`MAX_REGION_CALL_ARGS`]; `NotSplit` unless the
    /// database has both system tables of a world split into regions, with the engine's definitions; `NotFound` if
    /// no region is named `to`; `LimitExceeded` if the outbox's sequence is exhausted. The reducer and its
    /// arguments are checked first, so a mistake fails in a world that is not split too.
    fn send_to_regions(
        &mut self,
        to: Option<&str>,
        reducer: &[u8],
        args: &[u8],
    ) -> Result<(), Errno> {
        let reducer = utf8(reducer)?;
        let params = self.sendable.get(reducer).ok_or(Errno::NoSuchReducer)?;
        codec::validate_row(params, args, &mut self.offsets).map_err(|_| Errno::BadArgument)?;
        if args.len() > MAX_REGION_CALL_ARGS {
            return Err(Errno::LimitExceeded);
        }
        let outbox = self.region_table(OUTBOX_TABLE, &OUTBOX_DEF)?;
        let regions = self.region_table(REGIONS_TABLE, &REGIONS_DEF)?;
        let destination = match to {
            None => Destination::All,
            Some(name) => {
                let row = self
                    .db
                    .table(regions)
                    .ok_or(Errno::NotSplit)?
                    .get(&Value::String(name.into()))
                    .ok()
                    .flatten()
                    .ok_or(Errno::NotFound)?;
                // The server numbers regions by their place in the layout, a `u16`.
                Destination::Region(parse_regions_row(row).ok_or(Errno::NotFound)?.index)
            }
        };
        let sender = self.call.ctx.ok_or(Errno::NotInReducer)?.sender;
        let message = RegionMessage::Call {
            reducer: reducer.to_owned(),
            args: args.to_vec(),
            sender,
        };
        let payload = rmp_serde::to_vec(&message).expect("a reducer call encodes");
        let row = outbox_row(0, destination, &payload);
        let (tx, db) = self.tx()?;
        tx.insert(db, outbox, &row)
            .map(drop)
            .map_err(|e| insert_errno(&e))
    }

    /// `region_list`: the rows of `locus_regions` in index order, as one MessagePack array (`[name, index, x0, y0,
    /// x1, y1, own]` each, exactly as the table holds them). Read from the lent database at every call, so a table
    /// the server made after the module was instantiated counts.
    ///
    /// Errors, in this order: `NotInReducer`; `NotSplit` unless the database has `locus_regions` with the engine's
    /// definition (the outbox does not matter: this only describes the world).
    pub(crate) fn region_list(&self) -> Result<Vec<u8>, Errno> {
        self.in_call()?;
        let table = self.region_table(REGIONS_TABLE, &REGIONS_DEF)?;
        let t = self.db.table(table).ok_or(Errno::NotSplit)?;
        // Rows of the right definition always parse; the sort makes the list's order the layout's.
        let mut rows: Vec<(RegionId, &[u8])> = t
            .iter()
            .filter_map(|row| Some((parse_regions_row(row)?.index, row)))
            .collect();
        rows.sort_by_key(|&(index, _)| index);
        let mut out = Vec::with_capacity(5 + rows.iter().map(|(_, r)| r.len()).sum::<usize>());
        msgpack_array_header(&mut out, rows.len());
        for (_, row) in rows {
            out.extend_from_slice(row);
        }
        Ok(out)
    }

    /// The id of the system table `name` of a world split into regions, if the lent database has it with the
    /// engine's definition `def`; `NotSplit` otherwise.
    fn region_table(&self, name: &str, def: &TableDef) -> Result<TableId, Errno> {
        self.db
            .table_id(name)
            .filter(|&id| self.db.table(id).is_some_and(|t| t.def() == def))
            .ok_or(Errno::NotSplit)
    }

    /// Insert or replace `row` in the area table, in the running transaction.
    fn put_area(&mut self, row: &AreaRow) -> Result<(), Errno> {
        let table = self.area_table.ok_or(Errno::NoSuchTable)?;
        let exists = self
            .db
            .table(table)
            .is_some_and(|t| matches!(t.get(&Value::Identity(row.identity)), Ok(Some(_))));
        let bytes = row.encode();
        let (tx, db) = self.tx()?;
        if exists {
            tx.update(db, table, &bytes)
                .map(drop)
                .map_err(|e| update_errno(&e))
        } else {
            tx.insert(db, table, &bytes)
                .map(drop)
                .map_err(|e| insert_errno(&e))
        }
    }
}

/// Append the MessagePack header of an array of `len` elements to `out` (fixarray, array 16 or array 32).
fn msgpack_array_header(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xdc);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// The module version `db`'s data is at: the row of the system table `locus_module`
/// ([`locus_types::abi::MODULE_TABLE`]), or 0 without one (a database made before modules had versions).
#[must_use]
pub fn data_version(db: &Database) -> u32 {
    db.table_id(locus_types::abi::MODULE_TABLE)
        .and_then(|id| db.table(id))
        .and_then(|t| t.get(&Value::U64(0)).ok().flatten())
        .and_then(locus_types::abi::module_row_version)
        .unwrap_or(0)
}

/// The area of interest the module set for `identity` in `db` (a database a module was instantiated over), if
/// any: its row of the system table `locus_area` ([`locus_types::abi::AREA_TABLE`]), decoded. Reads only the
/// database, so no module instance is needed.
#[must_use]
pub fn area(db: &Database, identity: Identity) -> Option<AreaRow> {
    let t = db.table(db.table_id(locus_types::abi::AREA_TABLE)?)?;
    let row = t.get(&Value::Identity(identity)).ok()??;
    AreaRow::decode(row)
}

/// Emit a module log line as a `tracing` event under the target `locus::module`.
fn emit(line: &LogLine) {
    let (reducer, tick, msg) = (&*line.reducer, line.tick.0, &line.message);
    match line.level {
        LogLevel::Error => tracing::error!(target: "locus::module", reducer, tick, "{msg}"),
        LogLevel::Warn => tracing::warn!(target: "locus::module", reducer, tick, "{msg}"),
        LogLevel::Info => tracing::info!(target: "locus::module", reducer, tick, "{msg}"),
        LogLevel::Debug => tracing::debug!(target: "locus::module", reducer, tick, "{msg}"),
        LogLevel::Trace => tracing::trace!(target: "locus::module", reducer, tick, "{msg}"),
    }
}

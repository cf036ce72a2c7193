//! The module ABI, version 1: the one list of host calls, the errno table, and the export names.
//!
//! This file is the single source of the boundary between `locus-host` (which links every call in
//! [`for_each_host_call!`](crate::for_each_host_call) into a wasmtime `Linker`) and `locus-module` (which declares the
//! same list as `extern "C"` imports). `engine/docs/module-abi.md` is the prose contract for module authors in
//! other languages; it documents each call below with its arguments, encoding, errors and traps.
//!
//! # Conventions
//!
//! - Every host call lives in the import module [`IMPORT_MODULE`] (`locus_v1`) and returns a `u32` [`Errno`]
//!   (`0` is success). Pointers and lengths are `u32` offsets into the module's exported linear memory `memory`.
//! - A pointer/length pair that does not lie entirely inside `memory` is a **trap** (the reducer stops and its
//!   transaction rolls back), never an errno: it is a bug in the module, not a runtime condition.
//! - Out-parameters (`out_*`) are pointers to little-endian integers the host writes (`u32`: 4 bytes, `u64`:
//!   8 bytes). The host writes them only when the call returns [`Errno::Ok`], with two exceptions:
//!   [`Errno::BufferTooSmall`] writes the needed length to `out_len`, and `iter_next` writes `0` to `out_len`
//!   when it returns [`Errno::Exhausted`].
//! - Rows, keys and arguments are MessagePack, per [`crate::codec`]: a row is one array with one element per column;
//!   a key is one value of the key column's type.
//! - Data going from host to module is copied into a buffer the module supplies (`buf_ptr`, `buf_cap`); when the
//!   buffer is too small the call returns [`Errno::BufferTooSmall`], writes the length it needs to `out_len`, and
//!   changes nothing, so the module can grow its buffer and call again.
//! - Queries return an **iterator handle** (a `u32`): a snapshot of the matching rows taken when the query ran.
//!   [`iter_next`](crate::for_each_host_call) copies whole rows out of it; writes made after the query do not
//!   change what it yields.

use serde::{Deserialize, Serialize};

use crate::schema::{ColumnDef, ColumnType, TableDef};
use crate::{Identity, TableId, Value, Vec2};

/// The wasm import module every host call of this ABI version lives in.
pub const IMPORT_MODULE: &str = "locus_v1";

/// The ABI version; a module's [`EXPORT_ABI_VERSION`] export must return it.
pub const ABI_VERSION: u32 = 1;

/// Export `() -> u32`: returns the ABI version the module was built against ([`ABI_VERSION`]).
pub const EXPORT_ABI_VERSION: &str = "__locus_abi_version";

/// The module's linear memory export, which every pointer refers to.
pub const EXPORT_MEMORY: &str = "memory";

/// Prefix of the exports `() -> u64` describing one table each: the result is `(ptr << 32) | len` of a
/// MessagePack [`TableDef`] in memory. The rest of the export's name is the table's name.
pub const EXPORT_TABLE_PREFIX: &str = "__locus_describe_table_";

/// Prefix of the exports `() -> u64` describing one reducer each: the result is `(ptr << 32) | len` of a
/// MessagePack [`ReducerDef`] in memory. The rest of the export's name is the reducer's name.
pub const EXPORT_REDUCER_DEF_PREFIX: &str = "__locus_describe_reducer_";

/// Optional export `() -> u32`: the module's version — of its content and of what its tables hold — which the
/// module's author raises whenever an existing world's data must be brought up to date (the Rust SDK:
/// `locus_module::version!(N)`). A module without it is version 0. The version the data is at is kept in the
/// system table [`MODULE_TABLE`]; when a module of another version takes the database over, its [`ReducerKind::Upgrade`]
/// reducer runs.
pub const EXPORT_MODULE_VERSION: &str = "__locus_module_version";

/// Prefix of the reducer entry points `(args_len: u32) -> u32`, one per reducer; the rest of the name is the
/// reducer's name. The result is a [`ReducerStatus`] code.
pub const EXPORT_REDUCER_PREFIX: &str = "__locus_reducer_";

/// Size in bytes of the reducer context that `reducer_context` writes: see [`ContextLayout`].
pub const CONTEXT_SIZE: usize = 64;

/// Byte offsets in the 64-byte reducer context written by `reducer_context`.
#[derive(Clone, Copy, Debug)]
pub struct ContextLayout;

impl ContextLayout {
    /// `[u8; 32]`: the identity of the caller: the client for client calls, `client_connected` and
    /// `client_disconnected`; for a call another region sent (`region_send`, `region_broadcast`), the identity the
    /// sending reducer ran as; [`crate::Identity::SERVER`] for `init`, tick, periodic and scheduled reducers.
    pub const SENDER: usize = 0;
    /// `u64` LE: the tick the call runs in.
    pub const TICK: usize = 32;
    /// `u64` LE: the call's timestamp, microseconds since the Unix epoch.
    pub const TIMESTAMP: usize = 40;
    /// `u64` LE: the seed of the call's deterministic RNG (derived by the server from the world seed, the tick and
    /// the call's position in the tick).
    pub const RNG_SEED: usize = 48;
    /// `u64` LE: reserved, written as zero.
    pub const RESERVED: usize = 56;
}

macro_rules! errnos {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $text:literal; )*) => {
        /// The result of a host call. `0` is success; every other code names one failure, the same in every call.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Errno {
            $( $(#[$doc])* $name = $code, )*
        }

        impl Errno {
            /// Every errno, in code order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name),*];

            /// The errno with this code, if there is one.
            #[must_use]
            pub fn from_code(code: u32) -> Option<Errno> {
                match code {
                    $( $code => Some(Errno::$name), )*
                    _ => None,
                }
            }

            /// The numeric code crossing the ABI.
            #[must_use]
            pub fn code(self) -> u32 {
                self as u32
            }

            /// A short description of what the code means.
            #[must_use]
            pub fn description(self) -> &'static str {
                match self {
                    $( Errno::$name => $text, )*
                }
            }
        }
    };
}

errnos! {
    /// Success.
    Ok = 0, "success";
    /// The call needs a running reducer (it was made while the host read the module's descriptions). Checked
    /// before every other condition.
    NotInReducer = 1, "no reducer is running";
    /// No table has this id (or, for `table_id`, this name).
    NoSuchTable = 2, "no such table";
    /// The column does not exist or has no index of the kind the call needs (a spatial index for spatial
    /// queries and `area_follow`; a primary-key, unique or btree index for `index_eq` / `index_range`).
    NoSuchIndex = 3, "no such index";
    /// No row has this primary key (for `unschedule`: no pending schedule has this id; for `area_clear`: the
    /// identity has no area; for `region_send`: no region of the world has this name).
    NotFound = 4, "no row with this key";
    /// The row bytes are not a valid row of the table (wrong arity, wrong type, bad encoding, trailing bytes).
    BadRow = 5, "row does not match the table's schema";
    /// The key bytes are not one valid value of the key column's type.
    BadKey = 6, "key does not match the column's type";
    /// Another row already has this primary key or unique-column value.
    UniqueViolation = 7, "unique constraint violated";
    /// A position, radius or envelope is not finite, is negative (a radius), is inverted (an envelope), or is
    /// outside the world's coordinate range.
    InvalidPosition = 8, "invalid position or query shape";
    /// The output buffer is too small; the needed length was written to `out_len`.
    BufferTooSmall = 9, "buffer too small";
    /// No open iterator has this handle.
    NoSuchIterator = 10, "no such iterator";
    /// The iterator has no more rows; it is now closed.
    Exhausted = 11, "iterator exhausted";
    /// No reducer has this name, or it cannot be reached this way (`schedule`: no `Scheduled` reducer has it;
    /// `region_send` / `region_broadcast`: no `Client` or `Region` reducer has it).
    NoSuchReducer = 12, "no such reducer";
    /// A name or message is not valid UTF-8.
    BadUtf8 = 13, "invalid UTF-8";
    /// An argument is outside its documented range (an unknown log level or bound kind, scheduled or sent
    /// arguments that do not match the reducer's parameters, area radii, or an area's key that is not a value of
    /// the followed table's primary-key type).
    BadArgument = 14, "invalid argument";
    /// A host resource limit was reached (a call's open iterators, bytes held by its iterators, or log lines; the
    /// arguments of a call sent to other regions are longer than [`MAX_REGION_CALL_ARGS`]; or a table's auto_inc
    /// sequence is exhausted).
    LimitExceeded = 15, "host resource limit exceeded";
    /// The world is not split into regions (it has no system tables `locus_regions` and `locus_outbox`), so there
    /// is no other region to send a reducer call to (`region_send`, `region_broadcast`) and no region to describe
    /// (`region_list`, which needs `locus_regions` only).
    NotSplit = 16, "the world is not split into regions";
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.description(), self.code())
    }
}

/// What a reducer entry point returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ReducerStatus {
    /// The reducer succeeded; its writes commit.
    Ok = 0,
    /// The reducer returned an error (its message, if any, was passed to `reducer_fail`); its writes roll back.
    Failed = 1,
    /// The arguments did not decode as the reducer's parameters (message via `reducer_fail`); nothing was written.
    BadArguments = 2,
}

impl ReducerStatus {
    /// The status with this code, if there is one.
    #[must_use]
    pub fn from_code(code: u32) -> Option<ReducerStatus> {
        match code {
            0 => Some(ReducerStatus::Ok),
            1 => Some(ReducerStatus::Failed),
            2 => Some(ReducerStatus::BadArguments),
            _ => None,
        }
    }
}

/// Log levels of the `log` host call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u32)]
pub enum LogLevel {
    /// Something failed.
    Error = 0,
    /// Something looks wrong.
    Warn = 1,
    /// Normal operation.
    Info = 2,
    /// Detail for developers.
    Debug = 3,
    /// Very fine detail.
    Trace = 4,
}

impl LogLevel {
    /// The level with this code, if there is one.
    #[must_use]
    pub fn from_code(code: u32) -> Option<LogLevel> {
        match code {
            0 => Some(LogLevel::Error),
            1 => Some(LogLevel::Warn),
            2 => Some(LogLevel::Info),
            3 => Some(LogLevel::Debug),
            4 => Some(LogLevel::Trace),
            _ => None,
        }
    }
}

/// Kinds of bound in `index_range`'s `bounds` argument: bits 0–1 give the lower bound's kind, bits 2–3 the upper's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BoundKind {
    /// No bound; the bound's pointer and length are ignored.
    Unbounded = 0,
    /// The bound's key is included.
    Included = 1,
    /// The bound's key is excluded.
    Excluded = 2,
}

impl BoundKind {
    /// The kind with this code, if there is one.
    #[must_use]
    pub fn from_code(code: u32) -> Option<BoundKind> {
        match code {
            0 => Some(BoundKind::Unbounded),
            1 => Some(BoundKind::Included),
            2 => Some(BoundKind::Excluded),
            _ => None,
        }
    }

    /// Pack a lower and an upper bound kind into `index_range`'s `bounds` argument.
    #[must_use]
    pub fn pack(lower: BoundKind, upper: BoundKind) -> u32 {
        (lower as u32) | ((upper as u32) << 2)
    }

    /// Unpack `index_range`'s `bounds` argument; `None` if a kind is unknown or other bits are set.
    #[must_use]
    pub fn unpack(bounds: u32) -> Option<(BoundKind, BoundKind)> {
        if bounds >> 4 != 0 {
            return None;
        }
        Some((
            BoundKind::from_code(bounds & 3)?,
            BoundKind::from_code((bounds >> 2) & 3)?,
        ))
    }
}

/// When and by whom a reducer is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReducerKind {
    /// Called by clients (and operators) by name, with arguments.
    Client,
    /// Run once, when the world is first created. No parameters.
    Init,
    /// Run when a client connects; the context's sender is the client. No parameters.
    ClientConnected,
    /// Run when a client disconnects; the context's sender is the client. No parameters.
    ClientDisconnected,
    /// Run every tick after the tick's client calls, with one parameter: the tick's length `dt` in seconds (`f32`).
    Tick,
    /// Run every `millis` milliseconds of world time. No parameters.
    Every {
        /// The period in milliseconds (at least 1).
        millis: u64,
    },
    /// Run at a time chosen by a reducer through `schedule`, with the arguments given then.
    Scheduled,
    /// Run once when this module takes over a database whose data is at another module version (a publish, or a
    /// restart with another build; see [`EXPORT_MODULE_VERSION`]), inside the upgrade's transaction, with two
    /// `u32` parameters: the data's version and this module's. Its failure refuses the upgrade.
    Upgrade,
    /// Run in a world split into regions when a reducer of this module — in another region, or in this one —
    /// sends it a call with `region_send` or `region_broadcast`: after the sending reducer's transaction is durable,
    /// at least once over the network and exactly once here, with the context's sender the identity the sending
    /// reducer ran as. Any parameters. Clients cannot call it ([`ReducerKind::accepts_region_calls`]).
    Region,
}

impl ReducerKind {
    /// Whether a reducer of this kind may be the target of a call sent between regions (`region_send`,
    /// `region_broadcast`): a [`ReducerKind::Region`] reducer, or a [`ReducerKind::Client`] one (which then runs
    /// in the receiving region as if the sending reducer's sender had called it there). Every other kind is run by
    /// the host alone, at its own moments.
    #[must_use]
    pub fn accepts_region_calls(self) -> bool {
        matches!(self, ReducerKind::Client | ReducerKind::Region)
    }
}

/// One reducer, as the module describes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReducerDef {
    /// The reducer's name, unique within the module.
    pub name: String,
    /// When and by whom it runs.
    pub kind: ReducerKind,
    /// Its parameters, in order. Arguments are encoded as one MessagePack array with one element per parameter,
    /// each encoded as a row column of that type would be.
    pub params: Vec<ColumnDef>,
}

/// A module's whole schema: what the host assembles from the module's `__locus_describe_*` exports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleDef {
    /// Tables, sorted by name.
    pub tables: Vec<TableDef>,
    /// Reducers, sorted by name.
    pub reducers: Vec<ReducerDef>,
    /// The module's version ([`EXPORT_MODULE_VERSION`]; 0 without the export).
    #[serde(default)]
    pub version: u32,
}

/// The longest argument array a call sent to other regions may have, in bytes (`region_send`,
/// `region_broadcast`; `LimitExceeded` beyond it): the message must fit a JetStream message with room to spare, or
/// it could never be delivered.
pub const MAX_REGION_CALL_ARGS: usize = 64 * 1024;

/// Name of the system table holding one-shot schedules made with `schedule`. Module tables may not start with
/// [`RESERVED_PREFIX`].
pub const SCHEDULE_TABLE: &str = "locus_schedule";

/// Table and reducer names starting with this are reserved for the engine.
///
/// Every table of a database whose name starts with it is a **system table** ([`is_system_table`]): the engine's,
/// never the module's. Besides the ones the host creates ([`SCHEDULE_TABLE`], [`AREA_TABLE`], [`MODULE_TABLE`]),
/// the server may create its own (`Database::create_table`); the host leaves every system table it did not create
/// alone — a module never sees one, and schema upgrades neither plan, migrate nor drop one.
pub const RESERVED_PREFIX: &str = "locus_";

/// Whether a table named `name` is a system table: its name starts with [`RESERVED_PREFIX`], so no module declares
/// it (a module's table may not have such a name).
#[must_use]
pub fn is_system_table(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Name of the system table holding each client's area of interest, one [`AreaRow`] per identity, written by
/// `area_follow`, `area_fixed` and `area_clear`. Like [`SCHEDULE_TABLE`] it is private and invisible to the module's
/// table lookups; see [`area_table_def`] for its columns.
pub const AREA_TABLE: &str = "locus_area";

/// Name of the system table holding the module version the database's data is at: one row, written when a new
/// world is created and by every upgrade between versions; see [`module_table_def`]. Private and invisible to the
/// module, like [`SCHEDULE_TABLE`]. A database without the table, or without its row, is at version 0.
pub const MODULE_TABLE: &str = "locus_module";

/// The definition of the system table [`MODULE_TABLE`]:
///
/// | column | type | |
/// |---|---|---|
/// | `id` | `U32` | primary key; the one row's is `0` |
/// | `version` | `U32` | the module version the data is at |
///
/// No `auto_inc`, no secondary index, private.
#[must_use]
pub fn module_table_def() -> TableDef {
    TableDef::builder(MODULE_TABLE)
        .column("id", ColumnType::U32)
        .column("version", ColumnType::U32)
        .primary_key("id")
        .build()
        .expect("the module table's definition is valid")
}

/// The one row of [`module_table_def`]: the data is at `version`.
#[must_use]
pub fn module_row(version: u32) -> Vec<u8> {
    crate::codec::encode_row(
        &module_table_def().columns,
        &[Value::U64(0), Value::U64(u64::from(version))],
    )
    .expect("a module row matches the module table's columns")
}

/// The version in a row of [`module_table_def`]; `None` if `row` is not one.
#[must_use]
pub fn module_row_version(row: &[u8]) -> Option<u32> {
    match crate::codec::decode_row(&module_table_def().columns, row).ok()?[..] {
        [_, Value::U64(version)] => u32::try_from(version).ok(),
        _ => None,
    }
}

/// The largest leave radius of an area of interest, in metres.
pub const MAX_AREA_RADIUS: f32 = 512.0;

/// The `table` column of an area with a fixed centre (no table has this id).
pub const AREA_FIXED: u32 = u32::MAX;

/// The definition of the system table [`AREA_TABLE`]: the host creates it, the server decodes its rows with it.
///
/// | column | type | |
/// |---|---|---|
/// | `identity` | `Identity` | primary key: the client whose area it is |
/// | `table` | `U32` | the followed row's table id, or [`AREA_FIXED`] for a fixed centre |
/// | `key` | `Bytes` | the followed row's primary key, encoded as that column's value is in a row ([`crate::codec`]); empty for a fixed centre |
/// | `x`, `y` | `F32` | the fixed centre; `0` when following a row |
/// | `enter` | `F32` | rows come into view within this distance of the centre |
/// | `leave` | `F32` | rows in view leave it beyond this distance |
///
/// The table is private, has no `auto_inc` and no secondary index.
#[must_use]
pub fn area_table_def() -> TableDef {
    TableDef::builder(AREA_TABLE)
        .column("identity", ColumnType::Identity)
        .column("table", ColumnType::U32)
        .column("key", ColumnType::Bytes)
        .column("x", ColumnType::F32)
        .column("y", ColumnType::F32)
        .column("enter", ColumnType::F32)
        .column("leave", ColumnType::F32)
        .primary_key("identity")
        .build()
        .expect("the area table's definition is valid")
}

/// Whether `enter` and `leave` are valid radii of an area of interest: both finite and
/// `0 < enter <= leave <=` [`MAX_AREA_RADIUS`]. This is the check `area_follow` and `area_fixed` make.
#[must_use]
pub fn valid_area_radii(enter: f32, leave: f32) -> bool {
    enter.is_finite()
        && enter > 0.0
        && leave.is_finite()
        && leave >= enter
        && leave <= MAX_AREA_RADIUS
}

/// Where an area of interest is centred.
#[derive(Clone, Debug, PartialEq)]
pub enum AreaCenter {
    /// On a row of a spatial table (the client's avatar): the area moves with the row's spatial column, and is
    /// empty while no row has this key.
    Follow {
        /// The row's table (never [`AREA_FIXED`]).
        table: TableId,
        /// The row's primary key, one value encoded as that column's value is in a row (never empty).
        key: Vec<u8>,
    },
    /// On a fixed point.
    Fixed(Vec2),
}

/// One row of the system table [`AREA_TABLE`]: the area of interest a module set for one client.
///
/// Invariant of the rows the host writes: [`valid_area_radii`]`(enter, leave)`, and a `Fixed` centre is finite.
/// [`AreaRow::decode`] does not re-check those, only the row's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct AreaRow {
    /// The client whose area it is.
    pub identity: Identity,
    /// Where the area is centred.
    pub center: AreaCenter,
    /// Rows come into view within this distance of the centre, in metres.
    pub enter: f32,
    /// Rows in view leave it only beyond this distance (`>= enter`), in metres.
    pub leave: f32,
}

/// The columns of [`area_table_def`], built once.
static AREA_COLUMNS: std::sync::LazyLock<Vec<ColumnDef>> =
    std::sync::LazyLock::new(|| area_table_def().columns);

impl AreaRow {
    /// Encode as a row of [`area_table_def`] (a following area's `x` and `y` are `0`).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let (table, key, at) = match &self.center {
            AreaCenter::Follow { table, key } => (table.0, &key[..], Vec2::ZERO),
            AreaCenter::Fixed(at) => (AREA_FIXED, &[][..], *at),
        };
        crate::codec::encode_row(
            &AREA_COLUMNS,
            &[
                Value::Identity(self.identity),
                Value::U64(u64::from(table)),
                Value::Bytes(key.into()),
                Value::F32(at.x),
                Value::F32(at.y),
                Value::F32(self.enter),
                Value::F32(self.leave),
            ],
        )
        .expect("an area row matches the area table's columns")
    }

    /// Decode a row of [`area_table_def`]; `None` if `row` is not one, or if its centre is inconsistent (a fixed
    /// centre with a key, or a followed row with an empty key).
    #[must_use]
    pub fn decode(row: &[u8]) -> Option<AreaRow> {
        let values = crate::codec::decode_row(&AREA_COLUMNS, row).ok()?;
        let [
            Value::Identity(identity),
            Value::U64(table),
            Value::Bytes(key),
            Value::F32(x),
            Value::F32(y),
            Value::F32(enter),
            Value::F32(leave),
        ] = &values[..]
        else {
            return None;
        };
        let table = u32::try_from(*table).ok()?;
        let center = match (table, key.is_empty()) {
            (AREA_FIXED, true) => AreaCenter::Fixed(Vec2::new(*x, *y)),
            (AREA_FIXED, false) | (_, true) => return None,
            (table, false) => AreaCenter::Follow {
                table: TableId(table),
                key: key.to_vec(),
            },
        };
        Some(AreaRow {
            identity: *identity,
            center,
            enter: *enter,
            leave: *leave,
        })
    }
}

/// Calls `$m! { ... }` with the list of every host call of ABI version 1, each written as
/// `/// docs` `fn name(arg: type, ...) -> u32;`. Argument types are `u32`, `u64` and `f32` (wasm `i32`, `i64`,
/// `f32`). The host turns the list into `Linker::func_wrap` registrations, the guest SDK into `extern "C"`
/// imports from [`IMPORT_MODULE`].
///
/// Each call's doc lists its errnos under `# Errors` and when it traps under `# Traps`. Every call traps if a
/// pointer/length pair it reads or writes lies outside the module's memory; that is not repeated below.
#[macro_export]
macro_rules! for_each_host_call {
    ($m:ident) => {
        $m! {
            /// Look up a table's id by name. Writes the id (`u32`) to `out_table`. Ids are stable for the life of
            /// the module instance.
            ///
            /// # Errors
            /// `NoSuchTable` if no table has that name; `BadUtf8` if the name is not UTF-8.
            fn table_id(name_ptr: u32, name_len: u32, out_table: u32) -> u32;

            /// Copy the running call's arguments (`args_len` bytes, the length the reducer export received) into
            /// the buffer.
            ///
            /// # Errors
            /// `NotInReducer`; `BufferTooSmall` if `buf_cap` is less than the arguments' length (written to
            /// `out_len`).
            fn reducer_args(buf_ptr: u32, buf_cap: u32, out_len: u32) -> u32;

            /// Write the running call's 64-byte context (sender, tick, timestamp, RNG seed; see
            /// `ContextLayout`) to `out_ptr`.
            ///
            /// # Errors
            /// `NotInReducer`.
            fn reducer_context(out_ptr: u32) -> u32;

            /// Set the message reported when the running reducer returns `Failed` or `BadArguments`. A later call
            /// replaces it. Messages longer than 4 KiB are cut at a character boundary.
            ///
            /// # Errors
            /// `NotInReducer`; `BadUtf8`.
            fn reducer_fail(msg_ptr: u32, msg_len: u32) -> u32;

            /// Record that the running reducer panicked: the panic's message, and where — the source file (UTF-8,
            /// as the compiler names it; empty for no location), line and column. If the call then traps, as a
            /// Rust panic does once its hook returns, the host reports the panic with this message and location
            /// instead of a bare trap; if the reducer returns a status instead, the record is dropped. A later call
            /// replaces it. The message and the file are cut to 4 KiB at a character boundary.
            ///
            /// # Errors
            /// `NotInReducer`; `BadUtf8` (the message or the file).
            fn reducer_panic(
                msg_ptr: u32,
                msg_len: u32,
                file_ptr: u32,
                file_len: u32,
                line: u32,
                column: u32
            ) -> u32;

            /// Write a line to the module log, tagged with the running reducer's name (if any) and `level`
            /// (0 error, 1 warn, 2 info, 3 debug, 4 trace). Lines longer than 4 KiB are cut; past the host's
            /// per-call line limit (default 1,000), lines are dropped and `LimitExceeded` returned.
            ///
            /// # Errors
            /// `BadArgument` for an unknown level; `BadUtf8`; `LimitExceeded`.
            fn log(level: u32, msg_ptr: u32, msg_len: u32) -> u32;

            /// Insert a row into a table. For an `auto_inc` table a primary key of `0` is replaced by the next
            /// value of the table's sequence. Writes the row's final primary key to `out_key` as a `u64` (an `i*`
            /// key as its two's-complement bits; `0` if the key is not an integer).
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `BadRow`; `UniqueViolation`; `InvalidPosition` if the spatial
            /// column's position is not finite or is outside ±1e9; `LimitExceeded` if the auto_inc sequence is
            /// exhausted.
            fn insert(table: u32, row_ptr: u32, row_len: u32, out_key: u32) -> u32;

            /// Replace the row with the same primary key as the given row.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `BadRow`; `NotFound`; `UniqueViolation`; `InvalidPosition`.
            fn update(table: u32, row_ptr: u32, row_len: u32) -> u32;

            /// Delete the row with this primary key.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `BadKey`; `NotFound`.
            fn delete(table: u32, key_ptr: u32, key_len: u32) -> u32;

            /// Copy the row with this primary key into the buffer; writes its length to `out_len`.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `BadKey`; `NotFound`; `BufferTooSmall`.
            fn get(table: u32, key_ptr: u32, key_len: u32, buf_ptr: u32, buf_cap: u32, out_len: u32) -> u32;

            /// Write the table's row count (`u64`) to `out_count`.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`.
            fn row_count(table: u32, out_count: u32) -> u32;

            /// Open an iterator over every row of the table (in no particular order).
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `LimitExceeded`.
            fn scan(table: u32, out_iter: u32) -> u32;

            /// Open an iterator over the rows whose `column` equals the key, through the column's primary-key,
            /// unique or btree index.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `NoSuchIndex`; `BadKey`; `LimitExceeded`.
            fn index_eq(table: u32, column: u32, key_ptr: u32, key_len: u32, out_iter: u32) -> u32;

            /// Open an iterator over the rows whose `column` lies between two keys, in key order, through the
            /// column's unique or btree index (the primary-key index is a hash index: it answers equality only).
            /// `bounds` packs the lower bound's kind in bits 0–1 and the upper's in bits 2–3 (0 unbounded,
            /// 1 included, 2 excluded); an unbounded side's pointer and length are ignored. An empty or inverted
            /// range yields no rows. `bounds` is checked before any buffer is read.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `NoSuchIndex`; `BadKey`; `BadArgument` for bad `bounds`;
            /// `LimitExceeded`.
            fn index_range(
                table: u32,
                column: u32,
                lo_ptr: u32,
                lo_len: u32,
                hi_ptr: u32,
                hi_len: u32,
                bounds: u32,
                out_iter: u32
            ) -> u32;

            /// Open an iterator over the rows whose spatial column lies within `radius` of (`x`, `y`), boundary
            /// included.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `NoSuchIndex` (no spatial index); `InvalidPosition`;
            /// `LimitExceeded`.
            fn within_radius(table: u32, x: f32, y: f32, radius: f32, out_iter: u32) -> u32;

            /// Open an iterator over the rows whose spatial column lies in the envelope [`min_x`, `max_x`] ×
            /// [`min_y`, `max_y`], boundary included.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `NoSuchIndex`; `InvalidPosition` (also for `min > max`);
            /// `LimitExceeded`.
            fn within_box(table: u32, min_x: f32, min_y: f32, max_x: f32, max_y: f32, out_iter: u32) -> u32;

            /// Open an iterator over the `k` rows nearest to (`x`, `y`), nearest first (all rows if the table has
            /// fewer than `k`).
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable`; `NoSuchIndex`; `InvalidPosition`; `LimitExceeded`.
            fn nearest(table: u32, x: f32, y: f32, k: u32, out_iter: u32) -> u32;

            /// Copy as many whole rows as fit from the iterator into the buffer, back to back (each row is one
            /// MessagePack array, so they can be read in sequence); writes the byte length to `out_len`. Returns
            /// `Exhausted` (with `out_len` 0) once every row has been read, and closes the iterator.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchIterator`; `Exhausted`; `BufferTooSmall` if not even the next row fits (its
            /// length is written to `out_len`).
            fn iter_next(iter: u32, buf_ptr: u32, buf_cap: u32, out_len: u32) -> u32;

            /// Close an iterator before it is exhausted. Iterators still open when a reducer returns are closed
            /// by the host.
            ///
            /// # Errors
            /// `NoSuchIterator`.
            fn iter_close(iter: u32) -> u32;

            /// Schedule the `Scheduled` reducer named by the UTF-8 name to run at `at_micros` (microseconds since
            /// the Unix epoch) with the given MessagePack arguments. The schedule is a row of the system table
            /// `locus_schedule`, written in the running transaction: it is undone if the reducer fails, and it is
            /// durable once committed. Writes the schedule's id (`u64`) to `out_id`.
            ///
            /// # Errors
            /// `NotInReducer`; `BadUtf8`; `NoSuchReducer` if no `Scheduled` reducer has that name; `BadArgument`
            /// if the arguments do not match its parameters; `LimitExceeded` if the schedule ids are exhausted.
            fn schedule(
                name_ptr: u32,
                name_len: u32,
                at_micros: u64,
                args_ptr: u32,
                args_len: u32,
                out_id: u32
            ) -> u32;

            /// Cancel a schedule made with `schedule` that has not run yet.
            ///
            /// # Errors
            /// `NotInReducer`; `NotFound`.
            fn unschedule(id: u64) -> u32;

            /// Set the area of interest of the client `identity` (32 bytes at `identity_ptr`) to a circle that
            /// follows the row of `table` whose primary key is the key bytes (one value of the primary-key
            /// column's type): the server streams the client the rows of spatial tables within `enter` metres of
            /// that row's spatial column, and keeps them in view until they are beyond `leave`. The row need not
            /// exist yet; the area is empty while it does not. Replaces the identity's previous area. The area is
            /// a row of the system table `locus_area`, written in the running transaction: it is undone if the
            /// reducer fails, and it is durable once committed.
            ///
            /// # Errors
            /// `NotInReducer`; `NoSuchTable` (no module table has this id); `NoSuchIndex` if the table has no
            /// spatial column; `BadArgument` if the key is not exactly one valid value of the primary-key column's
            /// type, or unless `0 < enter <= leave <= MAX_AREA_RADIUS` (512) with both radii finite.
            fn area_follow(
                identity_ptr: u32,
                table: u32,
                key_ptr: u32,
                key_len: u32,
                enter: f32,
                leave: f32
            ) -> u32;

            /// Set the area of interest of the client `identity` (32 bytes at `identity_ptr`) to a circle around
            /// the fixed point (`x`, `y`), with radii `enter` and `leave` as for `area_follow`. Replaces the
            /// identity's previous area; written to `locus_area` in the running transaction.
            ///
            /// # Errors
            /// `NotInReducer`; `InvalidPosition` if the point is not finite or is outside ±1e9; `BadArgument`
            /// unless `0 < enter <= leave <= MAX_AREA_RADIUS` (512) with both radii finite.
            fn area_fixed(identity_ptr: u32, x: f32, y: f32, enter: f32, leave: f32) -> u32;

            /// Remove the area of interest of the client `identity` (32 bytes at `identity_ptr`): it then sees no
            /// rows of spatial tables. Deletes its `locus_area` row in the running transaction.
            ///
            /// # Errors
            /// `NotInReducer`; `NotFound` if the identity has no area.
            fn area_clear(identity_ptr: u32) -> u32;

            /// Send a call of this module's `Client` or `Region` reducer named by the UTF-8 name, with the given
            /// MessagePack arguments, to the region of the world named by the UTF-8 region name (this region's own
            /// name included). The message is a row of the system table `locus_outbox`, written in the running
            /// transaction: nothing is sent if the reducer fails. Once the transaction is durable the server
            /// delivers the call at least once, and the receiving region runs it exactly once, with the context's
            /// sender this call's sender. Calls to one region are not ordered with calls to another.
            ///
            /// # Errors
            /// `NotInReducer`; `BadUtf8` (the region name, then the reducer name); `NoSuchReducer` if no `Client` or
            /// `Region` reducer has that name; `BadArgument` if the arguments do not match its parameters;
            /// `LimitExceeded` if they are longer than `MAX_REGION_CALL_ARGS`; `NotSplit` if the world is not split
            /// into regions; `NotFound` if no region has that name; `LimitExceeded` if the outbox's message numbers
            /// are exhausted.
            fn region_send(
                region_ptr: u32,
                region_len: u32,
                name_ptr: u32,
                name_len: u32,
                args_ptr: u32,
                args_len: u32
            ) -> u32;

            /// Send a call, as `region_send` does, to every region of the world, this one included: each runs it
            /// exactly once.
            ///
            /// # Errors
            /// `NotInReducer`; `BadUtf8`; `NoSuchReducer`; `BadArgument`; `LimitExceeded` (the arguments' length);
            /// `NotSplit`; `LimitExceeded` (the outbox's message numbers).
            fn region_broadcast(name_ptr: u32, name_len: u32, args_ptr: u32, args_len: u32) -> u32;

            /// Copy the world's regions into the buffer (read-only: any reducer may call it, `init` included) and
            /// write their byte length to `out_len`: one MessagePack array with one element per region, in index
            /// order, each the array `[name, index, x0, y0, x1, y1, own]` — the region's name (`str`), its index in
            /// the layout (an unsigned int), its rectangle (four `F32`s, `ca` markers: the rectangles tile the
            /// world, and a region holds the points with `x0 <= x < x1` and `y0 <= y < y1`, plus those on the
            /// world's far edges — the largest `x1`, `y1` — where its rectangle reaches them), and whether it is
            /// the region this call runs in (a bool; exactly one region has it). These are the rows of the system
            /// table `locus_regions`, which the server writes before a new world's `init`.
            ///
            /// # Errors
            /// `NotInReducer`; `NotSplit` if the world is not split into regions; `BufferTooSmall` if the buffer
            /// is too small (the length needed is written to `out_len`).
            fn region_list(buf_ptr: u32, buf_cap: u32, out_len: u32) -> u32;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! names {
        ($( $(#[$doc:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty; )*) => {
            &[$(stringify!($name)),*]
        };
    }

    #[test]
    fn host_call_names_are_unique() {
        let names: &[&str] = for_each_host_call!(names);
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert!(names.contains(&"iter_next"));
    }

    #[test]
    fn the_abi_document_lists_every_host_call_in_order_and_counts_them_right() {
        let names: &[&str] = for_each_host_call!(names);
        let doc = include_str!("../../docs/module-abi.md");
        let section = |start: &str, end: &str| {
            let from = doc.find(start).unwrap_or_else(|| panic!("no `{start}`"));
            let to = from
                + doc[from..]
                    .find(end)
                    .unwrap_or_else(|| panic!("no `{end}`"));
            &doc[from..to]
        };
        // §7 has one `### `name`` heading per host call, in list order.
        let calls = section("## 7. Host calls", "## 8. Iterators");
        let documented: Vec<&str> = calls
            .lines()
            .filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`'))
            .collect();
        assert_eq!(
            documented, names,
            "module-abi.md §7 headings vs for_each_host_call!"
        );
        // Every sentence that counts them says how many there are.
        let n = names.len();
        for claim in [
            format!("All {n} calls, in ABI list order."),
            format!("one of the {n} host calls of §7"),
        ] {
            assert!(doc.contains(&claim), "module-abi.md should say: {claim}");
        }
        let counts =
            doc.matches(" host calls of §7").count() + doc.matches(" calls, in ABI list").count();
        assert_eq!(
            counts, 2,
            "a new sentence counting the host calls needs a check here"
        );
    }

    #[test]
    fn the_module_row_round_trips_and_is_the_documented_bytes() {
        let row = module_row(3);
        assert_eq!(row, [0x92, 0x00, 0x03]);
        assert_eq!(module_row_version(&row), Some(3));
        assert_eq!(module_row_version(&module_row(u32::MAX)), Some(u32::MAX));
        assert_eq!(module_row_version(&[0x91, 0x00]), None);
    }

    #[test]
    fn errno_codes_round_trip_and_are_dense() {
        for (i, e) in Errno::ALL.iter().enumerate() {
            assert_eq!(e.code() as usize, i);
            assert_eq!(Errno::from_code(e.code()), Some(*e));
        }
        assert_eq!(Errno::from_code(Errno::ALL.len() as u32), None);
    }

    fn follow() -> AreaRow {
        AreaRow {
            identity: Identity([3; 32]),
            center: AreaCenter::Follow {
                table: TableId(4),
                key: vec![0xcd, 0x01, 0x2c],
            },
            enter: 64.0,
            leave: 72.0,
        }
    }

    fn fixed() -> AreaRow {
        AreaRow {
            identity: Identity([9; 32]),
            center: AreaCenter::Fixed(Vec2::new(-1.5, 2048.0)),
            enter: 10.0,
            leave: MAX_AREA_RADIUS,
        }
    }

    #[test]
    fn area_rows_round_trip_as_rows_of_the_area_table() {
        let def = area_table_def();
        assert_eq!(def.name, AREA_TABLE);
        assert!(AREA_TABLE.starts_with(RESERVED_PREFIX));
        def.validate().unwrap();
        for row in [follow(), fixed()] {
            let bytes = row.encode();
            let mut offsets = Vec::new();
            crate::codec::validate_row(&def.columns, &bytes, &mut offsets).unwrap();
            assert_eq!(AreaRow::decode(&bytes), Some(row));
        }
        let values = crate::codec::decode_row(&def.columns, &follow().encode()).unwrap();
        assert_eq!(values[0], Value::Identity(Identity([3; 32])));
        assert_eq!(values[1], Value::U64(4));
        assert_eq!(values[2], Value::Bytes(vec![0xcd, 0x01, 0x2c].into()));
        assert_eq!(values[3], Value::F32(0.0), "a following area's x is 0");
        let values = crate::codec::decode_row(&def.columns, &fixed().encode()).unwrap();
        assert_eq!(values[1], Value::U64(u64::from(u32::MAX)));
        assert_eq!(values[2], Value::Bytes(Vec::new().into()));
        assert_eq!(
            (values[3].clone(), values[4].clone()),
            (Value::F32(-1.5), Value::F32(2048.0))
        );
    }

    #[test]
    fn the_documented_example_row_is_what_encode_writes() {
        // engine/docs/module-abi.md §10.
        let row = AreaRow {
            identity: Identity([1; 32]),
            center: AreaCenter::Follow {
                table: TableId(3),
                key: vec![0x01],
            },
            enter: 64.0,
            leave: 72.0,
        };
        let mut expected = vec![0x97, 0xc4, 0x20];
        expected.extend([1; 32]);
        expected.extend([0x03, 0xc4, 0x01, 0x01]);
        expected.extend([0xca, 0, 0, 0, 0, 0xca, 0, 0, 0, 0]);
        expected.extend([0xca, 0x42, 0x80, 0, 0, 0xca, 0x42, 0x90, 0, 0]);
        assert_eq!(row.encode(), expected);
    }

    #[test]
    fn garbage_does_not_decode_as_an_area_row() {
        let good = follow().encode();
        assert_eq!(AreaRow::decode(&[]), None);
        assert_eq!(AreaRow::decode(&[0xc1]), None);
        assert_eq!(AreaRow::decode(&good[..good.len() - 1]), None, "truncated");
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(AreaRow::decode(&trailing), None, "trailing bytes");
        let mut wrong_marker = good.clone();
        let last_float = wrong_marker.len() - 5;
        assert_eq!(wrong_marker[last_float], 0xca);
        wrong_marker[last_float] = 0xcb;
        assert_eq!(
            AreaRow::decode(&wrong_marker),
            None,
            "an f64 marker in an F32 column"
        );
        let cols = &area_table_def().columns;
        let row = |table: u64, key: &[u8]| {
            crate::codec::encode_row(
                cols,
                &[
                    Value::Identity(Identity([1; 32])),
                    Value::U64(table),
                    Value::Bytes(key.into()),
                    Value::F32(0.0),
                    Value::F32(0.0),
                    Value::F32(1.0),
                    Value::F32(2.0),
                ],
            )
            .unwrap()
        };
        assert!(AreaRow::decode(&row(2, &[5])).is_some());
        assert_eq!(AreaRow::decode(&row(2, &[])), None, "following with no key");
        assert_eq!(
            AreaRow::decode(&row(u64::from(AREA_FIXED), &[5])),
            None,
            "fixed with a key"
        );
        // A row of another table (the `thing` of the host tests: [1, 5]).
        assert_eq!(AreaRow::decode(&[0x92, 0x01, 0x05]), None);
    }

    #[test]
    fn area_radii_are_positive_ordered_and_bounded() {
        assert!(valid_area_radii(64.0, 72.0));
        assert!(valid_area_radii(1.0, 1.0));
        assert!(valid_area_radii(0.5, MAX_AREA_RADIUS));
        for (enter, leave) in [
            (0.0, 10.0),
            (-1.0, 10.0),
            (10.0, 9.0),
            (10.0, MAX_AREA_RADIUS + 1.0),
            (f32::NAN, 10.0),
            (10.0, f32::NAN),
            (f32::INFINITY, f32::INFINITY),
            (10.0, f32::INFINITY),
        ] {
            assert!(!valid_area_radii(enter, leave), "{enter} {leave}");
        }
    }

    #[test]
    fn bounds_pack_and_unpack() {
        let kinds = [
            BoundKind::Unbounded,
            BoundKind::Included,
            BoundKind::Excluded,
        ];
        for lo in kinds {
            for hi in kinds {
                assert_eq!(BoundKind::unpack(BoundKind::pack(lo, hi)), Some((lo, hi)));
            }
        }
        assert_eq!(BoundKind::unpack(3), None);
        assert_eq!(BoundKind::unpack(1 << 4), None);
    }
}

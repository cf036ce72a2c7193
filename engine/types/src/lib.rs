//! Shared vocabulary of Locus: ids, the schema model, values and the MessagePack row codec.
//!
//! Every other Locus crate (and every game module, compiled to `wasm32-unknown-unknown`) depends on this crate, so
//! it holds only plain data and pure functions: no I/O, no threads, no clock.
//!
//! - [`ids`]: [`TableId`], [`ColumnId`], [`Tick`], [`Timestamp`], [`Identity`].
//! - [`schema`]: [`TableDef`] and friends, with the invariants [`TableDef::validate`] enforces.
//! - [`value`]: [`Value`], a decoded column value with a total order (index keys are values).
//! - [`codec`]: the one row encoding used at the module ABI, in the commit log and on the wire.
//! - [`patch`]: row patches, an update sent as only the columns that changed.
//! - [`abi`]: the module ABI: the one list of host calls ([`for_each_host_call!`]), errnos, export names, the
//!   module description ([`abi::ModuleDef`]) and the rows of the system tables `locus_area` ([`abi::AreaRow`]) and
//!   `locus_module` ([`abi::module_row`]).
//! - [`call`]: [`ReducerCall`], a call of a reducer with its encoded arguments (built by modules, sent by clients).
//!
//! It deliberately does not know about tables' contents, transactions or the network.
//!
//! ```
//! use locus_types::{codec, ColumnType, IndexKind, TableDef, Value};
//! use glam::Vec2;
//!
//! let def = TableDef::builder("tree")
//!     .column("id", ColumnType::U64)
//!     .column("pos", ColumnType::Vec2)
//!     .primary_key("id")
//!     .index("pos", IndexKind::Spatial)
//!     .build()?;
//! let row = codec::encode_row(&def.columns, &[Value::U64(1), Value::Vec2(Vec2::new(3.0, 4.0))])?;
//! assert_eq!(codec::decode_row(&def.columns, &row)?[1], Value::Vec2(Vec2::new(3.0, 4.0)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod abi;
pub mod call;
pub mod codec;
pub mod ids;
pub mod migrate;
pub mod patch;
pub mod schema;
pub mod value;

pub use abi::{ModuleDef, ReducerDef, ReducerKind};
pub use call::ReducerCall;
pub use glam::Vec2;
pub use ids::{ColumnId, Identity, TableId, Tick, Timestamp};
pub use schema::{
    ColumnDef, ColumnType, IndexDef, IndexKind, MAX_COLUMNS, SchemaError, TableAccess,
    TableBuilder, TableDef,
};
pub use value::Value;

//! The Locus datastore: in-memory relational tables with primary-key, unique, btree and R-tree spatial indexes,
//! transactions and changesets.
//!
//! This crate is **sans-IO**: no files, sockets, threads, clocks or async runtime. It is driven by one owner (the
//! server's tick thread) and hands its results out as values ([`Changeset`]s) for the commit log and the interest
//! stage to consume.
//!
//! - [`Database`] holds the tables ([`Table`]) and opens [`Transaction`]s; every write goes through one.
//!   A schema migration builds the tables it changes aside ([`Database::build_table`]) and swaps them in at once
//!   ([`Database::swap_tables`]), leaving every other table as it is.
//! - Rows are stored in the one row encoding of [`locus_types::codec`]; they are validated against the table's
//!   schema on every write, and their index keys extracted from the bytes.
//! - Spatial queries ([`Table::within_radius`], [`Table::locate_in_envelope`], [`Table::nearest_neighbors`]) are
//!   exact, while moves stay cheap thanks to fat envelopes ([`spatial`]).
//!
//! It deliberately does not persist anything (that is `locus-log`), decide who sees what (`locus-interest`) or run
//! module code (`locus-host`).
//!
//! ```
//! use locus_store::{Database, StoreConfig};
//! use locus_types::{codec, ColumnType, IndexKind, TableDef, Value, Vec2};
//!
//! let mut db = Database::new(StoreConfig::default());
//! let def = TableDef::builder("tree")
//!     .column("id", ColumnType::U64)
//!     .column("pos", ColumnType::Vec2)
//!     .primary_key("id")
//!     .auto_inc()
//!     .index("pos", IndexKind::Spatial)
//!     .build()?;
//! let trees = db.create_table(def.clone())?;
//!
//! let mut tx = db.begin();
//! let row = codec::encode_row(&def.columns, &[Value::U64(0), Value::Vec2(Vec2::new(3.0, 4.0))])?;
//! let id = tx.insert(trees, &row)?; // auto_inc assigns 1
//! assert_eq!(id, Value::U64(1));
//! assert_eq!(tx.table(trees).unwrap().within_radius(Vec2::ZERO, 5.0)?.count(), 1);
//! let changes = tx.commit();
//! assert_eq!(changes.tables[0].inserts.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod db;
pub mod error;
mod slab;
pub mod spatial;
mod table;

pub use db::{
    Changeset, Database, Redo, RowUpdate, StoreConfig, TableChangeset, Transaction, TxLog,
};
pub use error::{
    ApplyError, BuildTableError, CreateTableError, DeleteError, InsertError, QueryError,
    SwapTablesError, UpdateError,
};
pub use spatial::MAX_COORD;
pub use table::{FrozenTable, Table};

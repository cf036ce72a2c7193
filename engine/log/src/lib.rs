//! Durability for Locus: the commit log, snapshots and crash recovery.
//!
//! All state lives in memory ([`locus_store::Database`]); this crate is what makes it a database. Each tick that
//! changed anything becomes one checksummed record appended to the log; periodically a full snapshot of every
//! table is written; on start, recovery loads the newest valid snapshot and replays the log after it.
//!
//! - [`Log`] owns a data directory: [`Log::open`] recovers ([`Recovered`]), then [`Log::append`], [`Log::sync`]
//!   and [`Log::snapshot`] write.
//! - [`Durability`] runs a [`Log`] on its own thread with group commit, and publishes the durable
//!   [`Watermark`]: the tick up to which everything is on disk, which is when a server may tell clients.
//! - [`format`] holds the byte layouts (drawn in `engine/docs/storage.md`); [`storage`] the seam to the disk, with
//!   a file-system implementation and an in-memory one that models crashes and injects faults.
//!
//! Guarantees: a tick reported durable survives a crash (`kill -9`, power loss given a disk that honours `fsync`);
//! no partial tick is ever visible after recovery; a torn last record is cut off with a warning; any other damage
//! stops recovery with an error naming the file and offset. It deliberately does not decide *when* a tick is
//! told to clients (the server does, from the watermark), nor migrate schemas (a schema change is a new
//! snapshot).
//!
//! ```
//! use std::sync::Arc;
//! use locus_log::{EncodedRecord, EncodedSnapshot, Log, LogConfig, storage::MemStorage};
//! use locus_store::StoreConfig;
//! use locus_types::{codec, ColumnType, TableDef, Tick, Value};
//!
//! let disk = MemStorage::new();
//! let (mut log, recovered) = Log::open(Arc::new(disk.clone()), LogConfig::default(), StoreConfig::default())?;
//! assert!(recovered.is_new());
//! let mut db = recovered.db;
//! let def = TableDef::builder("score").column("id", ColumnType::U32).column("points", ColumnType::I64)
//!     .primary_key("id").build()?;
//! let scores = db.create_table(def.clone())?;
//! log.snapshot(&EncodedSnapshot::new(Tick(0), &db))?; // a new log starts with the schema
//!
//! let mut tx = db.begin();
//! tx.insert(scores, &codec::encode_row(&def.columns, &[Value::U64(7), Value::I64(100)])?)?;
//! let changes = tx.commit();
//! log.append(&mut EncodedRecord::from_changesets(Tick(1), [&changes]))?;
//! assert_eq!(log.sync()?, Tick(1)); // durable: now a client may be told
//!
//! // A crash loses what was not synced; tick 1 was.
//! let (_log, after) = Log::open(Arc::new(disk.crash()), LogConfig::default(), StoreConfig::default())?;
//! assert_eq!(after.tick, Tick(1));
//! assert_eq!(after.db.table(scores).unwrap().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod durability;
mod error;
pub mod format;
mod log;
pub mod storage;

pub use durability::{Durability, Watermark};
pub use error::{
    AppendError, Corruption, DurabilityError, IoFailure, OpenError, SnapshotError, SyncError,
};
pub use format::{EncodedRecord, EncodedSnapshot};
pub use log::{DAMAGED_SUFFIX, Log, LogConfig, Recovered, RecoveryWarning, SyncPolicy};

#[cfg(test)]
mod doc_check;

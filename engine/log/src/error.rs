//! Errors, one enum per operation.

use std::fmt;
use std::io;
use std::sync::Arc;

use locus_store::{ApplyError, CreateTableError};
use locus_types::Tick;
use thiserror::Error;

/// A damaged place in a file: which file, the byte offset of the damaged record or block, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{file} at byte {offset}: {reason}")]
pub struct Corruption {
    /// The file's name in the data directory.
    pub file: String,
    /// Offset of the damaged record, block or header.
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
}

/// A failed storage operation: what was being done, to which file, and the I/O error.
///
/// A full disk ([`io::ErrorKind::StorageFull`]) says so first.
#[derive(Clone, Debug, Error)]
pub struct IoFailure {
    /// What was being done (`"append to"`, `"sync"`, …).
    pub op: &'static str,
    /// The file (or `"."` for the directory).
    pub file: String,
    /// The error (shared, so the failure can be reported to every later caller).
    pub source: Arc<io::Error>,
}

impl IoFailure {
    pub(crate) fn new(op: &'static str, file: &str, source: io::Error) -> IoFailure {
        IoFailure {
            op,
            file: file.to_owned(),
            source: Arc::new(source),
        }
    }

    /// Whether the disk is full.
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        self.source.kind() == io::ErrorKind::StorageFull
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_disk_full() {
            write!(f, "disk full: ")?;
        }
        write!(f, "{} {}: {}", self.op, self.file, self.source)
    }
}

/// Why [`Log::open`](crate::Log::open) (recovery) failed. Nothing was changed on disk that recovery would need
/// again: fix the named file (or restore it from a backup) and start again.
#[derive(Debug, Error)]
pub enum OpenError {
    /// Reading, listing or repairing files failed.
    #[error("{0}")]
    Io(#[from] IoFailure),
    /// A segment is damaged somewhere other than its torn tail, or the chain of records is broken.
    #[error("the commit log is corrupt: {0}")]
    Corrupt(Corruption),
    /// There are log segments but no snapshot to replay them onto.
    #[error("the data directory has log segments ({segments}) but no snapshot: it is incomplete")]
    NoSnapshot {
        /// The segments found, comma-separated.
        segments: String,
    },
    /// Every snapshot is damaged (each with where and why).
    #[error("no usable snapshot: {}", .damaged.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoValidSnapshot {
        /// Each snapshot tried, newest first, and its damage.
        damaged: Vec<Corruption>,
    },
    /// A snapshot's schema does not make valid tables.
    #[error("{file}: its schema is invalid: {source}")]
    Schema {
        /// The snapshot.
        file: String,
        /// What is wrong with the schema.
        source: CreateTableError,
    },
    /// A record passed its checksums but does not apply to the state before it.
    #[error("{file} at byte {offset}: the record of tick {} does not apply: {source}", .tick.0)]
    Replay {
        /// The segment.
        file: String,
        /// The record's offset.
        offset: u64,
        /// The record's tick.
        tick: Tick,
        /// Why it does not apply.
        source: Box<ApplyError>,
    },
}

/// Why [`Log::append`](crate::Log::append) failed.
#[derive(Clone, Debug, Error)]
pub enum AppendError {
    /// The log stopped at an earlier write or sync failure and takes no more records; what was durable before it
    /// stays durable.
    #[error("the log stopped after an earlier failure ({0}); restart to recover")]
    Stopped(IoFailure),
    /// No snapshot has been written yet: a new log starts with one, which stores the schema.
    #[error("no snapshot yet: write one (it stores the schema) before the first record")]
    NoSnapshot,
    /// The record's tick is not after the last tick appended or snapshotted.
    #[error("tick {} is not after the last logged tick {}", .tick.0, .last.0)]
    OutOfOrder {
        /// The last tick.
        last: Tick,
        /// The record's tick.
        tick: Tick,
    },
    /// The record is over the 1 GiB limit ([`MAX_PAYLOAD`](crate::format::MAX_PAYLOAD)); nothing was written.
    #[error("the record of tick {} is {bytes} bytes, over the 1 GiB limit", .tick.0)]
    TooLarge {
        /// The record's tick.
        tick: Tick,
        /// Its payload size.
        bytes: usize,
    },
    /// Writing failed; the log stops (nothing more is appended until a restart recovers it).
    #[error("{0}")]
    Io(IoFailure),
}

/// Why [`Log::sync`](crate::Log::sync) failed.
#[derive(Clone, Debug, Error)]
pub enum SyncError {
    /// The log stopped at an earlier failure.
    #[error("the log stopped after an earlier failure ({0}); restart to recover")]
    Stopped(IoFailure),
    /// `fsync` failed; the log stops, since what it did not make durable can no longer be trusted.
    #[error("{0}")]
    Io(IoFailure),
}

/// Why [`Log::snapshot`](crate::Log::snapshot) failed. Unless it is [`SnapshotError::Sync`], the log itself is
/// unharmed and goes on; the partial snapshot is removed.
#[derive(Clone, Debug, Error)]
pub enum SnapshotError {
    /// The log stopped at an earlier failure.
    #[error("the log stopped after an earlier failure ({0}); restart to recover")]
    Stopped(IoFailure),
    /// The snapshot's tick is before the last tick logged, so it would lose records.
    #[error("a snapshot of tick {} is behind the last logged tick {}", .tick.0, .last.0)]
    OutOfOrder {
        /// The last tick.
        last: Tick,
        /// The snapshot's tick.
        tick: Tick,
    },
    /// Syncing the log before the snapshot failed; the log stops.
    #[error("{0}")]
    Sync(IoFailure),
    /// Writing the snapshot failed.
    #[error("{0}")]
    Io(IoFailure),
}

/// Why a request to the [`Durability`](crate::Durability) thread failed.
#[derive(Clone, Debug, Error)]
pub enum DurabilityError {
    /// The log failed; nothing after the durable watermark will become durable.
    #[error("the commit log failed: {0}")]
    Failed(Arc<String>),
    /// A record was out of order or came before the first snapshot (a bug in the caller).
    #[error("{0}")]
    Rejected(String),
    /// The durability thread has stopped.
    #[error("the durability thread has stopped")]
    Stopped,
}

//! [`Log`]: recovery on open, then appending records, syncing, and writing snapshots.
//!
//! # Invariants
//!
//! - Ticks only grow: every record and snapshot is at a tick after the last one logged.
//! - Every record's `prev_tick` is the tick of the record written before it, across segments.
//! - A segment is synced before the next one is started, and a new segment's header and directory entry are
//!   durable before any record is written to it. So after a crash only the last segment can have a torn tail.
//! - A snapshot is written to a temporary file, synced, renamed into place and the directory synced; only then is
//!   it counted. The log is synced first, and the segment rotated, so a snapshot never has records missing before
//!   it.
//! - The log keeps [`LogConfig::keep_snapshots`] snapshots and every segment holding a record after the oldest of
//!   them, so recovery can fall back to an older snapshot when the newest is damaged.
//! - After the first write or sync failure the log is stopped: it writes nothing more, and every call reports the
//!   failure. What was durable before it stays durable; a restart recovers.

use std::sync::Arc;
use std::time::Duration;

use locus_store::{Database, StoreConfig};
use locus_types::{TableDef, Tick};
use tracing::{info, warn};

use crate::error::{AppendError, Corruption, IoFailure, OpenError, SnapshotError, SyncError};
use crate::format::{
    self, EncodedRecord, EncodedSnapshot, PayloadReader, RECORD_HEADER_LEN, RecordHeaderError,
    SEGMENT_HEADER_LEN, SegmentHeaderError, TEMP_SUFFIX, TableChanges,
};
use crate::storage::{Storage, StorageFile};

/// The suffix recovery gives a damaged snapshot it moves aside.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// When the [`Durability`](crate::Durability) thread syncs the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After every record; records that queue up while a sync runs are written together and share the next
    /// sync (group commit).
    EveryRecord,
    /// At most once per interval: fewer syncs, but a tick waits up to the interval to become durable.
    Interval(Duration),
}

/// How the log is laid out and when it syncs and snapshots. Every field's default is stated on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment that has reached this many bytes is closed and the next record starts a new one. Default
    /// 64 MiB.
    pub segment_bytes: u64,
    /// How many snapshots are kept (at least 1). Recovery falls back to an older one when the newest is damaged,
    /// so the log is kept back to the oldest. Default 2.
    pub keep_snapshots: usize,
    /// Snapshot when this many ticks have passed since the last snapshot; `None` never by ticks. Default
    /// `Some(12_000)` (10 minutes at 20 Hz).
    pub snapshot_every_ticks: Option<u64>,
    /// Snapshot when this many log bytes have been written since the last snapshot; `None` never by bytes.
    /// Default `Some(256 MiB)`.
    pub snapshot_every_bytes: Option<u64>,
    /// When the durability thread syncs. Default [`SyncPolicy::EveryRecord`].
    pub sync: SyncPolicy,
    /// Records queued for the durability thread before [`Durability::append`](crate::Durability::append)
    /// blocks (back-pressure on the tick thread). Default 64.
    pub queue: usize,
}

impl LogConfig {
    /// Whether a snapshot is due at `tick`, the last one having been at `last` with `bytes` of log written since.
    pub(crate) fn snapshot_due(&self, last: Option<Tick>, tick: Tick, bytes: u64) -> bool {
        let since = last.map_or(0, |t| t.0);
        self.snapshot_every_ticks
            .is_some_and(|n| tick.0.saturating_sub(since) >= n)
            || self.snapshot_every_bytes.is_some_and(|n| bytes >= n)
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            keep_snapshots: 2,
            snapshot_every_ticks: Some(12_000),
            snapshot_every_bytes: Some(256 << 20),
            sync: SyncPolicy::EveryRecord,
            queue: 64,
        }
    }
}

/// Something recovery repaired or worked around, and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryWarning {
    /// The last record of the last segment was partly written (a crash during the write); it was cut off.
    TornTail {
        /// The segment.
        file: String,
        /// Where the cut was made (the torn record's offset).
        offset: u64,
        /// How many bytes were cut.
        bytes: u64,
    },
    /// The last segment had no complete header (a crash while creating it); it was removed.
    TornSegment {
        /// The segment.
        file: String,
    },
    /// A snapshot was damaged; recovery renamed it with the suffix [`DAMAGED_SUFFIX`] and used an older one.
    SnapshotDamaged(Corruption),
    /// A leftover temporary file of an unfinished snapshot was removed.
    TempRemoved {
        /// The file.
        file: String,
    },
}

impl std::fmt::Display for RecoveryWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryWarning::TornTail {
                file,
                offset,
                bytes,
            } => write!(
                f,
                "{file}: cut a torn record of {bytes} bytes at byte {offset} (a crash during its write)"
            ),
            RecoveryWarning::TornSegment { file } => {
                write!(f, "{file}: removed a segment with no complete header")
            }
            RecoveryWarning::SnapshotDamaged(c) => {
                write!(
                    f,
                    "snapshot damaged, moved aside to {}{DAMAGED_SUFFIX}, using an older one: {c}",
                    c.file
                )
            }
            RecoveryWarning::TempRemoved { file } => {
                write!(f, "{file}: removed an unfinished snapshot")
            }
        }
    }
}

/// What recovery found: the database as of the last durable tick.
#[derive(Debug)]
pub struct Recovered {
    /// The database, every index rebuilt.
    pub db: Database,
    /// The last tick in it (0 for a new data directory).
    pub tick: Tick,
    /// The schema stored with the data, in table-id order; `None` for a new data directory.
    pub schema: Option<Vec<TableDef>>,
    /// The tick of the snapshot recovery started from, if any.
    pub snapshot: Option<Tick>,
    /// Records replayed after the snapshot.
    pub records: u64,
    /// Transactions replayed after the snapshot.
    pub transactions: u64,
    /// Row changes replayed after the snapshot.
    pub row_changes: u64,
    /// What was repaired or worked around (each also logged with `tracing`).
    pub warnings: Vec<RecoveryWarning>,
}

impl Recovered {
    /// Whether the data directory was empty.
    #[must_use]
    pub fn is_new(&self) -> bool {
        self.schema.is_none()
    }

    /// Check that a module's tables are the ones stored, in the same order.
    ///
    /// # Errors
    ///
    /// A message naming the first table that differs, for an incompatible module. A new data directory accepts
    /// any schema.
    pub fn check_schema(&self, module: &[TableDef]) -> Result<(), String> {
        let Some(stored) = &self.schema else {
            return Ok(());
        };
        for (i, (s, m)) in stored.iter().zip(module).enumerate() {
            if s != m {
                return Err(format!(
                    "table {i} is `{}` in the data directory but `{}` in the module, or their columns or \
                     indexes differ: the module is not compatible with the stored data",
                    s.name, m.name
                ));
            }
        }
        if stored.len() != module.len() {
            return Err(format!(
                "the data directory has {} tables, the module declares {}: the module is not compatible with \
                 the stored data",
                stored.len(),
                module.len()
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Segment {
    first: Tick,
    name: String,
    /// The tick of its last record (`None` while it has none).
    last: Option<Tick>,
}

/// The commit log of one data directory. See the [module docs](self) for its invariants.
///
/// [`Log::open`] recovers; [`Log::append`] writes a tick's record (without syncing), [`Log::sync`] makes everything
/// appended durable, [`Log::snapshot`] writes a full image and drops what is no longer needed. It is driven by one
/// thread, usually the [`Durability`](crate::Durability) thread.
#[derive(Debug)]
pub struct Log {
    storage: Arc<dyn Storage>,
    config: LogConfig,
    segments: Vec<Segment>,
    /// The last segment, open for appending; `None` when the next record starts a new segment.
    current: Option<Box<dyn StorageFile>>,
    /// Ticks of the snapshots on disk, ascending.
    snapshots: Vec<Tick>,
    /// The last tick appended or snapshotted.
    last_tick: Tick,
    /// The tick of the last record written (the next record's `prev_tick`).
    last_record: Tick,
    /// Everything up to this tick is durable.
    durable: Tick,
    unsynced: bool,
    bytes_since_snapshot: u64,
    failed: Option<IoFailure>,
}

impl Log {
    /// Open the log in `storage`, recovering the database it holds.
    ///
    /// Recovery loads the newest valid snapshot (falling back to older ones, with a warning, if it is damaged),
    /// replays every record after it, and rebuilds all indexes. A torn tail — a partly written last record of the
    /// last segment — is cut off with a warning. Any other damage stops recovery with an error naming the file and
    /// the offset: nothing is skipped silently.
    ///
    /// # Errors
    ///
    /// An [`OpenError`].
    pub fn open(
        storage: Arc<dyn Storage>,
        config: LogConfig,
        store: StoreConfig,
    ) -> Result<(Log, Recovered), OpenError> {
        let config = LogConfig {
            keep_snapshots: config.keep_snapshots.max(1),
            ..config
        };
        let mut warnings = Vec::new();
        let names = storage.list().map_err(|e| IoFailure::new("list", ".", e))?;
        let mut segments = Vec::new();
        let mut snapshots = Vec::new();
        let mut removed_temp = false;
        for name in names {
            if let Some(tick) = format::parse_segment_name(&name) {
                segments.push(Segment {
                    first: tick,
                    name,
                    last: None,
                });
            } else if let Some(tick) = format::parse_snapshot_name(&name) {
                snapshots.push(tick);
            } else if name
                .strip_suffix(TEMP_SUFFIX)
                .and_then(format::parse_snapshot_name)
                .is_some()
            {
                storage
                    .remove(&name)
                    .map_err(|e| IoFailure::new("remove", &name, e))?;
                let w = RecoveryWarning::TempRemoved { file: name };
                warn!(target: "locus::log", "{w}");
                warnings.push(w);
                removed_temp = true;
            } else {
                info!(target: "locus::log", file = %name, "ignoring a file that is not part of the log");
            }
        }
        if removed_temp {
            storage
                .sync_dir()
                .map_err(|e| IoFailure::new("sync", ".", e))?;
        }
        segments.sort_by_key(|s| s.first);
        snapshots.sort_unstable();

        let mut log = Log {
            storage,
            config,
            segments: Vec::new(),
            current: None,
            snapshots: snapshots.clone(),
            last_tick: Tick(0),
            last_record: Tick(0),
            durable: Tick(0),
            unsynced: false,
            bytes_since_snapshot: 0,
            failed: None,
        };

        if snapshots.is_empty() {
            if !segments.is_empty() {
                let names: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
                return Err(OpenError::NoSnapshot {
                    segments: names.join(", "),
                });
            }
            let recovered = Recovered {
                db: Database::new(store),
                tick: Tick(0),
                schema: None,
                snapshot: None,
                records: 0,
                transactions: 0,
                row_changes: 0,
                warnings,
            };
            return Ok((log, recovered));
        }

        // The newest snapshot that loads.
        let mut damaged = Vec::new();
        let mut loaded = None;
        for &tick in snapshots.iter().rev() {
            let name = format::snapshot_name(tick);
            let bytes = log
                .storage
                .read(&name)
                .map_err(|e| IoFailure::new("read", &name, e))?;
            match load_snapshot(&name, &bytes, store) {
                Ok((db, schema)) => {
                    loaded = Some((tick, db, schema));
                    break;
                }
                Err(LoadError::Damaged(c)) => {
                    warn!(target: "locus::log", "snapshot damaged: {c}");
                    damaged.push(c);
                }
                Err(LoadError::Schema(e)) => return Err(e),
            }
        }
        let Some((snap_tick, mut db, schema)) = loaded else {
            return Err(OpenError::NoValidSnapshot { damaged });
        };
        // Damaged snapshots are moved aside (kept for the operator, never tried or counted again), so the ones
        // kept for fallback are all valid.
        for c in &damaged {
            let aside = format!("{}{DAMAGED_SUFFIX}", c.file);
            log.storage
                .rename(&c.file, &aside)
                .map_err(|e| IoFailure::new("rename", &c.file, e))?;
        }
        if !damaged.is_empty() {
            log.storage
                .sync_dir()
                .map_err(|e| IoFailure::new("sync", ".", e))?;
            log.snapshots.retain(|t| *t <= snap_tick);
        }
        warnings.extend(damaged.into_iter().map(RecoveryWarning::SnapshotDamaged));

        let mut replay = Replay {
            snapshot: snap_tick,
            last_record: None,
            segment_last: None,
            records: 0,
            transactions: 0,
            row_changes: 0,
        };
        let count = segments.len();
        for (i, segment) in segments.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let bytes = log
                .storage
                .read(&segment.name)
                .map_err(|e| IoFailure::new("read", &segment.name, e))?;
            let mut segment = segment;
            let end = replay.segment(&segment, &bytes, is_last, &mut db)?;
            segment.last = replay.segment_last;
            match end {
                SegmentEnd::Complete if is_last && segment.last.is_none() => {
                    // A header and no record (a crash right after creating it, or a failed first append): remove
                    // it, so the next record starts a segment named after its own tick.
                    log.storage
                        .remove(&segment.name)
                        .and_then(|()| log.storage.sync_dir())
                        .map_err(|e| IoFailure::new("remove", &segment.name, e))?;
                    info!(target: "locus::log", file = %segment.name, "removed an empty last segment");
                }
                SegmentEnd::Complete => log.segments.push(segment),
                SegmentEnd::TornTail { offset } if offset == SEGMENT_HEADER_LEN as u64 => {
                    // Its only record was torn: remove the segment, so the next record starts a new one named
                    // after its own tick.
                    log.storage
                        .remove(&segment.name)
                        .and_then(|()| log.storage.sync_dir())
                        .map_err(|e| IoFailure::new("remove", &segment.name, e))?;
                    let w = RecoveryWarning::TornTail {
                        file: segment.name.clone(),
                        offset,
                        bytes: bytes.len() as u64 - offset,
                    };
                    warn!(target: "locus::log", "{w}");
                    warnings.push(w);
                }
                SegmentEnd::TornTail { offset } => {
                    let mut file = log
                        .storage
                        .open_append(&segment.name)
                        .map_err(|e| IoFailure::new("open", &segment.name, e))?;
                    file.truncate(offset)
                        .and_then(|()| file.sync())
                        .map_err(|e| IoFailure::new("truncate", &segment.name, e))?;
                    let w = RecoveryWarning::TornTail {
                        file: segment.name.clone(),
                        offset,
                        bytes: bytes.len() as u64 - offset,
                    };
                    warn!(target: "locus::log", "{w}");
                    warnings.push(w);
                    log.segments.push(segment);
                }
                SegmentEnd::TornHeader => {
                    log.storage
                        .remove(&segment.name)
                        .and_then(|()| log.storage.sync_dir())
                        .map_err(|e| IoFailure::new("remove", &segment.name, e))?;
                    let w = RecoveryWarning::TornSegment { file: segment.name };
                    warn!(target: "locus::log", "{w}");
                    warnings.push(w);
                }
            }
        }
        db.rebuild_spatial_indexes();

        let last_record = replay.last_record.unwrap_or(Tick(0));
        let tick = last_record.max(snap_tick);
        if let Some(last) = log.segments.last() {
            let file = log
                .storage
                .open_append(&last.name)
                .map_err(|e| IoFailure::new("open", &last.name, e))?;
            log.current = Some(file);
        }
        log.last_tick = tick;
        log.last_record = last_record;
        log.durable = tick;
        info!(
            target: "locus::log",
            snapshot = snap_tick.0,
            tick = tick.0,
            records = replay.records,
            transactions = replay.transactions,
            "recovered"
        );
        let recovered = Recovered {
            db,
            tick,
            schema: Some(schema),
            snapshot: Some(snap_tick),
            records: replay.records,
            transactions: replay.transactions,
            row_changes: replay.row_changes,
            warnings,
        };
        Ok((log, recovered))
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The last tick appended or snapshotted.
    #[must_use]
    pub fn last_tick(&self) -> Tick {
        self.last_tick
    }

    /// Everything up to this tick is durable.
    #[must_use]
    pub fn durable_tick(&self) -> Tick {
        self.durable
    }

    /// The failure that stopped the log, if it has stopped.
    #[must_use]
    pub fn failure(&self) -> Option<&IoFailure> {
        self.failed.as_ref()
    }

    /// The ticks of the snapshots on disk, ascending.
    #[must_use]
    pub fn snapshots(&self) -> &[Tick] {
        &self.snapshots
    }

    /// Log bytes written since the last snapshot.
    #[must_use]
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.bytes_since_snapshot
    }

    /// Whether the configured snapshot interval (ticks or bytes) has passed at tick `tick`.
    #[must_use]
    pub fn snapshot_due(&self, tick: Tick) -> bool {
        self.config.snapshot_due(
            self.snapshots.last().copied(),
            tick,
            self.bytes_since_snapshot,
        )
    }

    fn check_stopped(&self) -> Result<(), IoFailure> {
        match &self.failed {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    fn stop(&mut self, failure: IoFailure) -> IoFailure {
        warn!(target: "locus::log", "the commit log stops: {failure}");
        self.failed = Some(failure.clone());
        failure
    }

    /// Write `record` at the end of the log, without syncing. A record with no transaction writes nothing but
    /// still moves the last tick (so [`Log::sync`] reports it durable).
    ///
    /// # Errors
    ///
    /// An [`AppendError`]. A write failure stops the log: the partial record is cut off if the storage allows,
    /// and recovery cuts it otherwise.
    pub fn append(&mut self, record: &mut EncodedRecord) -> Result<(), AppendError> {
        self.check_stopped().map_err(AppendError::Stopped)?;
        if self.snapshots.is_empty() {
            return Err(AppendError::NoSnapshot);
        }
        let tick = record.tick();
        if tick <= self.last_tick {
            return Err(AppendError::OutOfOrder {
                last: self.last_tick,
                tick,
            });
        }
        if record.is_empty() {
            self.last_tick = tick;
            return Ok(());
        }
        if record.payload_len() > format::MAX_PAYLOAD {
            return Err(AppendError::TooLarge {
                tick,
                bytes: record.payload_len(),
            });
        }
        let full = self
            .current
            .as_ref()
            .is_some_and(|f| f.len() >= self.config.segment_bytes);
        if full {
            self.sync_current().map_err(AppendError::Io)?;
            self.current = None;
        }
        if self.current.is_none() {
            self.start_segment(tick).map_err(AppendError::Io)?;
        }
        let name = &self.segments.last().expect("a segment is open").name;
        let file = self.current.as_mut().expect("a segment is open");
        let bytes = record.seal(self.last_record);
        let before = file.len();
        if let Err(e) = file.append(bytes) {
            let failure = IoFailure::new("append to", name, e);
            // Best effort: cut the partial record so the file ends on a record boundary. If this fails too,
            // recovery cuts the torn tail.
            let _ = file.truncate(before);
            return Err(AppendError::Io(self.stop(failure)));
        }
        self.bytes_since_snapshot += bytes.len() as u64;
        self.segments.last_mut().expect("a segment is open").last = Some(tick);
        self.last_tick = tick;
        self.last_record = tick;
        self.unsynced = true;
        Ok(())
    }

    fn start_segment(&mut self, first: Tick) -> Result<(), IoFailure> {
        let name = format::segment_name(first);
        let result = (|| {
            let mut file = self.storage.create(&name)?;
            file.append(&format::segment_header(first))?;
            file.sync()?;
            self.storage.sync_dir()?;
            Ok(file)
        })();
        match result {
            Ok(file) => {
                self.current = Some(file);
                self.segments.push(Segment {
                    first,
                    name,
                    last: None,
                });
                Ok(())
            }
            Err(e) => Err(self.stop(IoFailure::new("create", &name, e))),
        }
    }

    fn sync_current(&mut self) -> Result<(), IoFailure> {
        if !self.unsynced {
            return Ok(());
        }
        let file = self
            .current
            .as_mut()
            .expect("unsynced records are in a segment");
        if let Err(e) = file.sync() {
            let name = self
                .segments
                .last()
                .expect("a segment is open")
                .name
                .clone();
            return Err(self.stop(IoFailure::new("sync", &name, e)));
        }
        self.unsynced = false;
        Ok(())
    }

    /// Make everything appended so far durable; returns the durable tick.
    ///
    /// # Errors
    ///
    /// A [`SyncError`]; a failed sync stops the log.
    pub fn sync(&mut self) -> Result<Tick, SyncError> {
        self.check_stopped().map_err(SyncError::Stopped)?;
        self.sync_current().map_err(SyncError::Io)?;
        self.durable = self.last_tick;
        Ok(self.durable)
    }

    /// Write `snapshot` atomically, then remove the snapshots and segments no longer needed.
    ///
    /// The log is synced first, and the next record starts a new segment. The snapshot's tick must not be before
    /// the last tick logged; a snapshot after it also moves the last tick (ticks with no changes).
    ///
    /// # Errors
    ///
    /// A [`SnapshotError`]. Only a failed sync of the log stops the log; a failed snapshot write leaves it as it
    /// was (the partial file is removed).
    pub fn snapshot(&mut self, snapshot: &EncodedSnapshot) -> Result<(), SnapshotError> {
        self.check_stopped().map_err(SnapshotError::Stopped)?;
        let tick = snapshot.tick();
        if tick < self.last_tick {
            return Err(SnapshotError::OutOfOrder {
                last: self.last_tick,
                tick,
            });
        }
        self.sync_current().map_err(SnapshotError::Sync)?;
        self.durable = self.last_tick;
        self.current = None;
        let name = format::snapshot_name(tick);
        let temp = format!("{name}{TEMP_SUFFIX}");
        let storage = &self.storage;
        let written = (|| {
            match storage.remove(&temp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(("remove", e)),
            }
            let mut file = storage.create(&temp).map_err(|e| ("create", e))?;
            file.append(snapshot.bytes()).map_err(|e| ("write", e))?;
            file.sync().map_err(|e| ("sync", e))?;
            storage.rename(&temp, &name).map_err(|e| ("rename", e))?;
            storage
                .sync_dir()
                .map_err(|e| ("sync the directory after", e))
        })();
        if let Err((op, e)) = written {
            let _ = storage.remove(&temp);
            let failure = IoFailure::new(op, &temp, e);
            warn!(target: "locus::log", "snapshot failed: {failure}");
            return Err(SnapshotError::Io(failure));
        }
        if self.snapshots.last() != Some(&tick) {
            self.snapshots.push(tick);
        }
        self.last_tick = tick;
        self.durable = tick;
        self.bytes_since_snapshot = 0;
        info!(target: "locus::log", tick = tick.0, rows = snapshot.rows(), bytes = snapshot.bytes().len(), "snapshot written");
        self.remove_old();
        Ok(())
    }

    /// Remove snapshots beyond the kept number, and segments holding only records at or before the oldest kept
    /// snapshot. Failures are logged, not returned: the files are only surplus.
    fn remove_old(&mut self) {
        let excess = self
            .snapshots
            .len()
            .saturating_sub(self.config.keep_snapshots);
        let mut removed = false;
        for tick in self.snapshots.drain(..excess).collect::<Vec<_>>() {
            let name = format::snapshot_name(tick);
            match self.storage.remove(&name) {
                Ok(()) => removed = true,
                Err(e) => warn!(target: "locus::log", "could not remove {name}: {e}"),
            }
        }
        let oldest = self.snapshots[0];
        let mut keep_from = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            let open = i + 1 == self.segments.len() && self.current.is_some();
            if segment.last.is_none_or(|last| last <= oldest) && !open {
                keep_from = i + 1;
            } else {
                break;
            }
        }
        for segment in self.segments.drain(..keep_from).collect::<Vec<_>>() {
            match self.storage.remove(&segment.name) {
                Ok(()) => removed = true,
                Err(e) => warn!(target: "locus::log", "could not remove {}: {e}", segment.name),
            }
        }
        if removed && let Err(e) = self.storage.sync_dir() {
            warn!(target: "locus::log", "could not sync the directory after removing old files: {e}");
        }
    }
}

enum LoadError {
    Damaged(Corruption),
    Schema(OpenError),
}

/// Parse and load a snapshot file into a new database.
fn load_snapshot(
    name: &str,
    bytes: &[u8],
    store: StoreConfig,
) -> Result<(Database, Vec<TableDef>), LoadError> {
    let damaged = |offset: u64, reason: String| {
        LoadError::Damaged(Corruption {
            file: name.to_owned(),
            offset,
            reason,
        })
    };
    let parsed = format::parse_snapshot(bytes).map_err(|d| damaged(d.offset, d.reason))?;
    let mut db = Database::new(store);
    for def in &parsed.schema {
        db.create_table(def.clone()).map_err(|source| {
            LoadError::Schema(OpenError::Schema {
                file: name.to_owned(),
                source,
            })
        })?;
    }
    for table in &parsed.tables {
        let rows = table.blocks.iter().flat_map(|b| *b);
        db.load(table.id, rows)
            .map_err(|e| damaged(table.offset, format!("its rows do not load: {e}")))?;
        db.redo(table.id)
            .expect("table exists")
            .set_next_auto_inc(table.next_auto_inc);
    }
    Ok((db, parsed.schema))
}

enum SegmentEnd {
    Complete,
    TornTail { offset: u64 },
    TornHeader,
}

struct Replay {
    snapshot: Tick,
    last_record: Option<Tick>,
    /// The last record's tick in the segment being read.
    segment_last: Option<Tick>,
    records: u64,
    transactions: u64,
    row_changes: u64,
}

impl Replay {
    /// Check and replay one segment's records after the snapshot.
    fn segment(
        &mut self,
        segment: &Segment,
        bytes: &[u8],
        is_last: bool,
        db: &mut Database,
    ) -> Result<SegmentEnd, OpenError> {
        self.segment_last = None;
        let corrupt = |offset: usize, reason: String| {
            OpenError::Corrupt(Corruption {
                file: segment.name.clone(),
                offset: offset as u64,
                reason,
            })
        };
        match format::parse_segment_header(bytes) {
            Ok(first) if first == segment.first => {}
            Ok(first) => {
                return Err(corrupt(
                    0,
                    format!(
                        "the header says first tick {}, the name {}",
                        first.0, segment.first.0
                    ),
                ));
            }
            Err(SegmentHeaderError::Short) if is_last => return Ok(SegmentEnd::TornHeader),
            Err(_) if is_last && bytes.iter().all(|b| *b == 0) => {
                return Ok(SegmentEnd::TornHeader);
            }
            Err(e) => return Err(corrupt(0, format!("bad segment header ({e:?})"))),
        }
        let mut at = SEGMENT_HEADER_LEN;
        let mut first_in_segment = true;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let torn = |why: &str| -> Result<SegmentEnd, OpenError> {
                if is_last {
                    Ok(SegmentEnd::TornTail { offset: at as u64 })
                } else {
                    Err(corrupt(
                        at,
                        format!("{why} in a segment that is not the last"),
                    ))
                }
            };
            let header = match format::parse_record_header(rest) {
                Ok(h) => h,
                Err(RecordHeaderError::Short) => return torn("a truncated record header"),
                // A crash can leave zeros where the record should be (the file grew, the data never landed).
                Err(_) if rest.iter().all(|b| *b == 0) => return torn("zeros"),
                Err(RecordHeaderError::Checksum) => {
                    return Err(corrupt(at, "record header checksum mismatch".into()));
                }
                Err(RecordHeaderError::TooLong(len)) => {
                    return Err(corrupt(
                        at,
                        format!("record length {len} is over the limit"),
                    ));
                }
            };
            let end = at + RECORD_HEADER_LEN + header.len as usize;
            if end > bytes.len() {
                return torn("a truncated record");
            }
            let payload = &bytes[at + RECORD_HEADER_LEN..end];
            if crc32c::crc32c(payload) != header.payload_crc {
                if end == bytes.len() {
                    // The last record, complete in length but not in content: a torn write.
                    return torn("a record checksum mismatch");
                }
                return Err(corrupt(at, "record checksum mismatch".into()));
            }
            // The chain of ticks.
            if first_in_segment && header.tick != segment.first {
                return Err(corrupt(
                    at,
                    format!(
                        "the first record has tick {}, the segment's name says {}",
                        header.tick.0, segment.first.0
                    ),
                ));
            }
            first_in_segment = false;
            if header.tick <= header.prev_tick {
                return Err(corrupt(
                    at,
                    format!(
                        "tick {} is not after its previous tick {}",
                        header.tick.0, header.prev_tick.0
                    ),
                ));
            }
            match self.last_record {
                Some(last) if header.prev_tick != last => {
                    return Err(corrupt(
                        at,
                        format!(
                            "records are missing: the record of tick {} follows tick {}, but the log before it \
                             ends at tick {}",
                            header.tick.0, header.prev_tick.0, last.0
                        ),
                    ));
                }
                None if header.tick > self.snapshot && header.prev_tick > self.snapshot => {
                    return Err(corrupt(
                        at,
                        format!(
                            "records are missing: the log resumes at tick {} after tick {}, but the snapshot is \
                             of tick {}",
                            header.tick.0, header.prev_tick.0, self.snapshot.0
                        ),
                    ));
                }
                _ => {}
            }
            self.last_record = Some(header.tick);
            self.segment_last = Some(header.tick);
            if header.tick > self.snapshot {
                self.apply(payload, db).map_err(|e| match e {
                    ApplyFailure::Malformed(m) => corrupt(
                        at,
                        format!(
                            "the payload does not parse at byte {} (expected {})",
                            m.at, m.expected
                        ),
                    ),
                    ApplyFailure::Apply(source) => OpenError::Replay {
                        file: segment.name.clone(),
                        offset: at as u64,
                        tick: header.tick,
                        source: Box::new(source),
                    },
                })?;
                self.records += 1;
            }
            at = end;
        }
        Ok(SegmentEnd::Complete)
    }

    /// Replay one record's transactions, each in two phases (see [`locus_store::Redo`]).
    fn apply(&mut self, payload: &[u8], db: &mut Database) -> Result<(), ApplyFailure> {
        let mut reader = PayloadReader::new(payload).map_err(ApplyFailure::Malformed)?;
        // Views borrowed from this payload: allocated once per record, reused for its transactions.
        let mut tables: Vec<TableChanges<'_>> = Vec::new();
        let mut deferred: Vec<(locus_types::TableId, &[u8])> = Vec::new();
        while reader
            .next_into(&mut tables)
            .map_err(ApplyFailure::Malformed)?
        {
            deferred.clear();
            for t in &tables {
                let mut redo = db.redo(t.table).map_err(ApplyFailure::Apply)?;
                for old in t.deletes {
                    redo.delete(old).map_err(ApplyFailure::Apply)?;
                }
                if redo.has_unique_indexes() {
                    for new in t.updates {
                        redo.remove_key_of(new).map_err(ApplyFailure::Apply)?;
                        deferred.push((t.table, new));
                    }
                }
            }
            for t in &tables {
                let mut redo = db.redo(t.table).map_err(ApplyFailure::Apply)?;
                if !redo.has_unique_indexes() {
                    for new in t.updates {
                        redo.update(new).map_err(ApplyFailure::Apply)?;
                    }
                }
            }
            for &(table, new) in &deferred {
                db.redo(table)
                    .and_then(|mut r| r.insert(new))
                    .map_err(ApplyFailure::Apply)?;
            }
            for t in &tables {
                let mut redo = db.redo(t.table).map_err(ApplyFailure::Apply)?;
                for new in t.inserts {
                    redo.insert(new).map_err(ApplyFailure::Apply)?;
                }
                if let Some(next) = t.next_auto_inc {
                    redo.set_next_auto_inc(next);
                }
                self.row_changes +=
                    (t.deletes.count() + t.updates.count() + t.inserts.count()) as u64;
            }
            self.transactions += 1;
        }
        Ok(())
    }
}

enum ApplyFailure {
    Malformed(format::MalformedPayload),
    Apply(locus_store::ApplyError),
}

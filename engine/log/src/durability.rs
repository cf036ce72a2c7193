//! [`Durability`]: the thread that writes the log, and the durable watermark it publishes.
//!
//! The tick thread encodes each tick's record ([`EncodedRecord`]) and hands it over with
//! [`Durability::append`]; the durability thread appends it and syncs. Records that queue up while a sync runs
//! are appended together and share the next sync (group commit). After each sync the thread publishes the
//! **durable watermark**: the last tick whose record, and every record before it, is on disk. A server releases a
//! tick's results to clients only once the watermark has reached it.
//!
//! # Invariants
//!
//! - The watermark only grows, and never passes a tick whose record is not synced.
//! - Requests are carried out in the order they were made; a snapshot is written after every record appended
//!   before it, and before every record appended after it.
//! - After a failure the watermark stops for good and every later request returns
//!   [`DurabilityError::Failed`]; the thread keeps draining its queue so the tick thread never blocks on it.
//!
//! # Snapshots off the tick thread
//!
//! [`Durability::snapshot_frozen`] is handed images of the tables ([`Database::freeze`](locus_store::Database::freeze):
//! their row chunks are shared copy-on-write, not copied), and the durability thread encodes them and writes the
//! file, so the tick thread's share of a snapshot is one reference count per 1,024 row slots, plus copying the
//! chunks it writes to while the thread still holds the images. While the thread encodes and writes, the records
//! handed over after it wait in the queue (their durability, not the tick, is delayed by that long).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use locus_store::FrozenTable;
use locus_types::Tick;
use tracing::warn;

use crate::error::{DurabilityError, SnapshotError};
use crate::format::{EncodedRecord, EncodedSnapshot};
use crate::log::{Log, LogConfig, SyncPolicy};

enum Command {
    Append(EncodedRecord),
    Snapshot(EncodedSnapshot),
    Frozen(Tick, Vec<FrozenTable>),
    Flush(mpsc::Sender<()>),
}

#[derive(Debug, Default)]
struct State {
    durable: Tick,
    failure: Option<Arc<String>>,
    stopped: bool,
    /// The last snapshot that failed to write (the log goes on without it).
    snapshot_failure: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    durable: AtomicU64,
    bytes_since_snapshot: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, tick: Tick) {
        let mut state = self.lock();
        if tick > state.durable {
            state.durable = tick;
            self.durable.store(tick.0, Ordering::Release);
            self.changed.notify_all();
        }
    }

    fn fail(&self, message: String) {
        warn!(target: "locus::log", "durability failed: {message}");
        let mut state = self.lock();
        state.failure.get_or_insert_with(|| Arc::new(message));
        self.changed.notify_all();
    }

    fn check(&self) -> Result<(), DurabilityError> {
        let state = self.lock();
        match &state.failure {
            Some(f) => Err(DurabilityError::Failed(f.clone())),
            None if state.stopped => Err(DurabilityError::Stopped),
            None => Ok(()),
        }
    }
}

/// A read-only handle on the durable watermark, for whoever releases results (cheap to clone).
#[derive(Clone, Debug)]
pub struct Watermark {
    shared: Arc<Shared>,
}

impl Watermark {
    /// Every tick up to this one is durable.
    #[must_use]
    pub fn tick(&self) -> Tick {
        Tick(self.shared.durable.load(Ordering::Acquire))
    }

    /// Whether `tick` is durable.
    #[must_use]
    pub fn is_durable(&self, tick: Tick) -> bool {
        self.tick() >= tick
    }

    /// Block until `tick` is durable (`Ok(true)`) or `timeout` passes (`Ok(false)`).
    ///
    /// # Errors
    ///
    /// [`DurabilityError::Failed`] if the log failed first (the tick will then never be durable),
    /// [`DurabilityError::Stopped`] if the thread stopped before it.
    pub fn wait_for(&self, tick: Tick, timeout: Duration) -> Result<bool, DurabilityError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.durable >= tick {
                return Ok(true);
            }
            if let Some(f) = &state.failure {
                return Err(DurabilityError::Failed(f.clone()));
            }
            if state.stopped {
                return Err(DurabilityError::Stopped);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The failure that stopped the log, if any.
    #[must_use]
    pub fn failure(&self) -> Option<Arc<String>> {
        self.shared.lock().failure.clone()
    }
}

/// The durability thread and the tick thread's handle on it. See the [module docs](self).
#[derive(Debug)]
pub struct Durability {
    sender: Option<SyncSender<Command>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Log>>,
    /// The last tick handed over (record or snapshot).
    last_tick: Tick,
    last_snapshot: Option<Tick>,
    config: LogConfig,
}

impl Durability {
    /// Start the thread on `log` (usually just opened, recovered, and given a snapshot if it was new).
    ///
    /// # Panics
    ///
    /// If the thread cannot be spawned.
    #[must_use]
    pub fn start(log: Log) -> Durability {
        let config = *log.config();
        let shared = Arc::new(Shared::default());
        shared.publish(log.durable_tick());
        shared
            .bytes_since_snapshot
            .store(log.bytes_since_snapshot(), Ordering::Relaxed);
        let (sender, receiver) = mpsc::sync_channel(config.queue.max(1));
        let last_tick = log.last_tick();
        let last_snapshot = log.snapshots().last().copied();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("locus-durability".into())
            .spawn(move || run(log, &receiver, &thread_shared, config.sync))
            .expect("spawn the durability thread");
        Durability {
            sender: Some(sender),
            shared,
            thread: Some(thread),
            last_tick,
            last_snapshot,
            config,
        }
    }

    /// A handle on the durable watermark.
    #[must_use]
    pub fn watermark(&self) -> Watermark {
        Watermark {
            shared: self.shared.clone(),
        }
    }

    /// Every tick up to this one is durable.
    #[must_use]
    pub fn durable_tick(&self) -> Tick {
        Tick(self.shared.durable.load(Ordering::Acquire))
    }

    /// The last snapshot write that failed, if the latest one did (the log goes on without it).
    #[must_use]
    pub fn snapshot_failure(&self) -> Option<String> {
        self.shared.lock().snapshot_failure.clone()
    }

    fn send(&self, command: Command) -> Result<(), DurabilityError> {
        self.shared.check()?;
        let sender = self.sender.as_ref().ok_or(DurabilityError::Stopped)?;
        sender.send(command).map_err(|_| DurabilityError::Stopped)
    }

    /// Hand over tick `record`'s record, to be appended and synced. Blocks while the queue is full. A record with
    /// no transaction is not written, but the watermark still reaches its tick once everything before is durable.
    ///
    /// # Errors
    ///
    /// [`DurabilityError::Rejected`] if its tick is not after the last one handed over, no snapshot exists yet, or
    /// it is over the 1 GiB limit; [`DurabilityError::Failed`] once the log has failed.
    pub fn append(&mut self, record: EncodedRecord) -> Result<(), DurabilityError> {
        if self.last_snapshot.is_none() {
            return Err(DurabilityError::Rejected(
                "no snapshot yet: write one (it stores the schema) before the first record".into(),
            ));
        }
        if record.tick() <= self.last_tick {
            return Err(DurabilityError::Rejected(format!(
                "tick {} is not after the last logged tick {}",
                record.tick().0,
                self.last_tick.0
            )));
        }
        if record.payload_len() > crate::format::MAX_PAYLOAD {
            return Err(DurabilityError::Rejected(format!(
                "the record of tick {} is {} bytes, over the 1 GiB limit",
                record.tick().0,
                record.payload_len()
            )));
        }
        let tick = record.tick();
        self.send(Command::Append(record))?;
        self.last_tick = tick;
        Ok(())
    }

    /// Whether a snapshot is due at `tick` (by [`LogConfig`](crate::LogConfig) ticks or bytes).
    #[must_use]
    pub fn snapshot_due(&self, tick: Tick) -> bool {
        let bytes = self.shared.bytes_since_snapshot.load(Ordering::Relaxed);
        self.config.snapshot_due(self.last_snapshot, tick, bytes)
    }

    /// Hand over a snapshot, written after every record handed over before it.
    ///
    /// # Errors
    ///
    /// [`DurabilityError::Rejected`] if its tick is before the last one handed over;
    /// [`DurabilityError::Failed`] once the log has failed.
    pub fn snapshot(&mut self, snapshot: EncodedSnapshot) -> Result<(), DurabilityError> {
        let tick = snapshot.tick();
        self.check_snapshot_tick(tick)?;
        self.send(Command::Snapshot(snapshot))?;
        self.last_tick = tick;
        self.last_snapshot = Some(tick);
        Ok(())
    }

    /// Hand over images of every table after tick `tick` ([`Database::freeze`](locus_store::Database::freeze), in
    /// id order), to be encoded ([`EncodedSnapshot::of_frozen`]) and written as a snapshot on the durability
    /// thread, after every record handed over before it. The caller's cost is taking the images.
    ///
    /// # Errors
    ///
    /// [`DurabilityError::Rejected`] if `tick` is before the last one handed over;
    /// [`DurabilityError::Failed`] once the log has failed.
    pub fn snapshot_frozen(
        &mut self,
        tick: Tick,
        tables: Vec<FrozenTable>,
    ) -> Result<(), DurabilityError> {
        self.check_snapshot_tick(tick)?;
        self.send(Command::Frozen(tick, tables))?;
        self.last_tick = tick;
        self.last_snapshot = Some(tick);
        Ok(())
    }

    fn check_snapshot_tick(&self, tick: Tick) -> Result<(), DurabilityError> {
        if tick < self.last_tick {
            return Err(DurabilityError::Rejected(format!(
                "a snapshot of tick {} is behind the last logged tick {}",
                tick.0, self.last_tick.0
            )));
        }
        Ok(())
    }

    /// Block until everything handed over so far is durable; returns the watermark.
    ///
    /// # Errors
    ///
    /// [`DurabilityError::Failed`] if the log failed.
    pub fn flush(&self) -> Result<Tick, DurabilityError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Flush(tx))?;
        rx.recv().map_err(|_| DurabilityError::Stopped)?;
        self.shared.check()?;
        Ok(self.durable_tick())
    }

    /// Sync what is pending, stop the thread and return the log.
    ///
    /// # Errors
    ///
    /// [`DurabilityError::Failed`] if the log had failed (the failure is also in the log).
    ///
    /// # Panics
    ///
    /// If the durability thread panicked.
    pub fn shutdown(mut self) -> Result<Log, DurabilityError> {
        drop(self.sender.take());
        let log = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("the durability thread panicked");
        match log.failure() {
            Some(f) => Err(DurabilityError::Failed(Arc::new(f.to_string()))),
            None => Ok(log),
        }
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Write `snapshot`; a failure to write it is recorded (the log goes on without it), any other failure fails the
/// log. Either way the log was synced first, so nothing is left pending.
fn write_snapshot(log: &mut Log, snapshot: &EncodedSnapshot, shared: &Shared) {
    match log.snapshot(snapshot) {
        Ok(()) => {
            shared.publish(log.durable_tick());
            shared.bytes_since_snapshot.store(0, Ordering::Relaxed);
            shared.lock().snapshot_failure = None;
        }
        Err(SnapshotError::Io(e)) => {
            warn!(target: "locus::log", "snapshot of tick {} failed: {e}", snapshot.tick().0);
            // The log was synced before the snapshot was attempted.
            shared.publish(log.durable_tick());
            shared.lock().snapshot_failure = Some(e.to_string());
        }
        Err(e) => shared.fail(e.to_string()),
    }
}

fn run(mut log: Log, receiver: &Receiver<Command>, shared: &Shared, policy: SyncPolicy) -> Log {
    let mut pending = false;
    let mut last_sync = Instant::now();
    let sync = |log: &mut Log, pending: &mut bool, last_sync: &mut Instant| {
        if !*pending || log.failure().is_some() {
            return;
        }
        *pending = false;
        *last_sync = Instant::now();
        match log.sync() {
            Ok(tick) => shared.publish(tick),
            Err(e) => shared.fail(e.to_string()),
        }
    };
    loop {
        let next = if pending {
            match policy {
                SyncPolicy::EveryRecord => match receiver.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => {
                        sync(&mut log, &mut pending, &mut last_sync);
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => None,
                },
                SyncPolicy::Interval(every) => {
                    let wait = every.saturating_sub(last_sync.elapsed());
                    match receiver.recv_timeout(wait) {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => {
                            sync(&mut log, &mut pending, &mut last_sync);
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            }
        } else {
            receiver.recv().ok()
        };
        let Some(command) = next else { break };
        if log.failure().is_some() {
            // Keep draining so the tick thread never blocks; flushes are answered (the failure is reported).
            if let Command::Flush(reply) = command {
                let _ = reply.send(());
            }
            continue;
        }
        match command {
            Command::Append(mut record) => match log.append(&mut record) {
                Ok(()) => {
                    pending = true;
                    shared
                        .bytes_since_snapshot
                        .store(log.bytes_since_snapshot(), Ordering::Relaxed);
                }
                Err(e) => shared.fail(e.to_string()),
            },
            Command::Snapshot(snapshot) => {
                write_snapshot(&mut log, &snapshot, shared);
                pending = false;
            }
            Command::Frozen(tick, tables) => {
                let snapshot = EncodedSnapshot::of_frozen(tick, &tables);
                // The images' rows are released before the file is written, so the tick thread stops copying
                // the rows it writes as soon as it can.
                drop(tables);
                write_snapshot(&mut log, &snapshot, shared);
                pending = false;
            }
            Command::Flush(reply) => {
                sync(&mut log, &mut pending, &mut last_sync);
                let _ = reply.send(());
            }
        }
    }
    sync(&mut log, &mut pending, &mut last_sync);
    shared.lock().stopped = true;
    shared.changed.notify_all();
    log
}

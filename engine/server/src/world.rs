//! The world: the database, the module instance, the interest stage and the sessions, advanced one tick at a time.
//!
//! The world owns the [`Database`]; the module instance does not hold it but is lent it (`&mut`) for each reducer
//! call, so snapshots, queries and the interest stage read it with no instance involved.
//!
//! Sans-IO like the crates it joins: it owns no clock, thread, socket or file. [`World::run_tick`] takes the tick's
//! inputs (what the network decoded, in arrival order) and returns the tick's [`TickOutput`]: the log record to
//! make durable and, per session, the encoded frames to release once it is.
//!
//! Within a tick, in this order:
//! 1. the inputs, in arrival order: connects (running `client_connected` for an identity's first session),
//!    disconnects (`client_disconnected` for its last), reducer calls (each its own transaction) and subscription
//!    changes. The admin identity ([`World::set_admin`]) is not a player: its sessions run neither lifecycle
//!    reducer;
//! 2. the `tick` reducer, then every due scheduled or periodic reducer;
//! 3. one log record of every committed changeset;
//! 4. the interest stage: the changesets (and any change to the `locus_area` system table, which moves areas) in,
//!    each session's delta out, as `Tick` frames after the tick's results;
//! 5. sessions the network closed for a fatal error ([`Input::Close`]): their `Error` frame, and sessions moved to
//!    another region ([`Input::Redirect`]): their `Redirect` frame, to go after all of the above
//!    ([`TickOutput::closes`]).
//!
//! A **redirected** session (its player moved to another region) is done here from its redirect on: it is sent
//! nothing after its `Redirect` frame (its connection closes), its later inputs are dropped, and it no longer
//! counts as its identity's presence in this world: its `Disconnect` runs no `client_disconnected`.

use std::collections::{BTreeSet, HashMap, VecDeque};

use locus_host::{
    AppliedUpgrade, CallContext, CallError, LogLine, Module, ModuleInstance, Upgrade, UpgradeError,
};
use locus_interest::{ClientId, Delta, Deltas, Filter, Interest, InterestConfig, RowId};
use locus_log::EncodedRecord;
use locus_protocol::compact::{Change, TickWriter, ViewRows};
use locus_protocol::places::PlacesWriter;
use locus_protocol::{
    AdminCommand, AdminReply, CallOutcome, ErrorCode, ModuleLogLine, Redirect, RowRef,
    ServerMessage, TableDeltaRef, TickRef, Token, Welcome, WireTable,
};
use locus_store::{Changeset, Database};
use locus_types::{
    ColumnId, Identity, ReducerDef, ReducerKind, TableAccess, TableDef, TableId, Tick, Timestamp,
    codec,
};

/// Row bytes per `Tick` frame before the rest of a delta goes into another frame (well below
/// [`locus_protocol::MAX_SERVER_FRAME`]).
const SPLIT_AT: usize = 1 << 20;

/// A session (a connection past its `Hello`), numbered by the network layer from [`SessionIds`]: the lowest id free
/// when the `Hello` is accepted.
///
/// Ids are reused, so they stay as few as the sessions connected at the peak (the interest stage walks one slot per
/// id every tick). An id is free again only once nothing meant for its old session can reach a new one: after the
/// world processed the session's [`Input::Disconnect`] (which every input of the session precedes, the answer to a
/// `Publish` being compiled included), and the release thread delivered that tick's frames (so every earlier
/// tick's too): see [`TickOutput::freed`].
pub type SessionId = u32;

/// The session ids in use: [`SessionIds::allocate`] hands out the lowest free one, [`SessionIds::release`] takes one
/// back once [`TickOutput::freed`] named it and that tick's frames were delivered.
#[derive(Debug, Default)]
pub struct SessionIds {
    /// Free ids below `next`.
    free: BTreeSet<SessionId>,
    /// One past the highest id in use (or waiting to be freed).
    next: SessionId,
}

impl SessionIds {
    /// The lowest free id, now in use.
    ///
    /// # Panics
    ///
    /// If all 2^32 ids are in use.
    pub fn allocate(&mut self) -> SessionId {
        if let Some(id) = self.free.pop_first() {
            return id;
        }
        let id = self.next;
        self.next = id.checked_add(1).expect("fewer than 2^32 sessions at once");
        id
    }

    /// Give `id` back. Returns false (and changes nothing) if it was not in use: a second release of an id would
    /// let two sessions share it.
    pub fn release(&mut self, id: SessionId) -> bool {
        if id >= self.next || !self.free.insert(id) {
            return false;
        }
        // Keep the free ids below the highest in use, so `next` (and the ids) shrink back after a peak.
        while self.next > 0 && self.free.remove(&(self.next - 1)) {
            self.next -= 1;
        }
        true
    }

    /// How many ids are in use (or waiting to be freed).
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.next as usize - self.free.len()
    }

    /// One past the highest id in use (or waiting to be freed); 0 with none.
    #[must_use]
    pub fn span(&self) -> usize {
        self.next as usize
    }
}

#[cfg(test)]
mod session_ids_tests {
    use super::SessionIds;

    #[test]
    fn the_lowest_free_id_is_reused_and_ids_shrink_back_after_a_peak() {
        let mut ids = SessionIds::default();
        let peak: Vec<u32> = (0..100).map(|_| ids.allocate()).collect();
        assert_eq!(peak, (0..100).collect::<Vec<_>>());
        assert!(ids.release(42) && ids.release(7));
        assert_eq!(
            (ids.allocate(), ids.allocate(), ids.allocate()),
            (7, 42, 100)
        );
        assert!(!ids.release(1_000), "never handed out");
        assert!(ids.release(3));
        assert!(!ids.release(3), "released twice");
        for id in (0..=100).filter(|&id| id != 3 && id != 5) {
            assert!(ids.release(id));
        }
        assert_eq!(ids.in_use(), 1);
        assert_eq!(
            ids.span(),
            6,
            "the free ids above the highest in use are forgotten"
        );
        assert!(ids.release(5));
        assert_eq!((ids.in_use(), ids.span(), ids.free.len()), (0, 0, 0));
        assert_eq!(ids.allocate(), 0);
    }
}

/// One thing a session asked for, in the order the network received it.
#[derive(Debug)]
pub enum Input {
    /// A client completed its `Hello`.
    Connect {
        /// The session.
        session: SessionId,
        /// Its identity (derived from its token).
        identity: Identity,
        /// Its token, echoed in `Welcome`.
        token: Token,
        /// The protocol version chosen.
        version: u16,
        /// Whether its connection takes datagrams (the client advertised `max_datagram_frame_size`): a version-4
        /// session may then be sent walking rows' positions in datagrams ([`TickOutput::datagrams`]).
        datagrams: bool,
        /// Whether such a session is sent them from the start; otherwise only once an [`Input::Link`] says so.
        places: bool,
    },
    /// Whether a version-4 session whose connection takes datagrams is sent walking rows' positions in datagrams
    /// (the network sends this when its connection starts or stops losing packets, [`crate::PositionDatagrams`]).
    /// Either way the client holds every row where it is, within a tick of it stopping: rows placed while on stay
    /// loose (placed, then patched at rest) after it is turned off. Ignored for other sessions.
    Link {
        /// The session.
        session: SessionId,
        /// Send walking rows' positions in datagrams.
        places: bool,
    },
    /// A session ended (closed, timed out or dropped by the server). Always follows its `Connect`.
    Disconnect {
        /// The session.
        session: SessionId,
    },
    /// The network found a fatal error in a session's input and stopped reading it. Queued behind the session's
    /// earlier inputs, so their answers (`Result`s and the rest) are made first; the world then adds the fatal
    /// `Error` frame after the tick's frames for the session ([`TickOutput::closes`]), and the shell closes the
    /// connection once they are delivered. Its `Disconnect` follows.
    Close {
        /// The session.
        session: SessionId,
        /// The fatal error.
        code: ErrorCode,
        /// Its message, for people (also the QUIC close reason).
        message: String,
        /// The QUIC application close code to close the connection with.
        close_code: u32,
    },
    /// A reducer call.
    Call {
        /// The session.
        session: SessionId,
        /// The client's request id.
        request: u32,
        /// The reducer.
        reducer: String,
        /// Its MessagePack arguments.
        args: Vec<u8>,
    },
    /// A subscription.
    Subscribe {
        /// The session.
        session: SessionId,
        /// The client's request id.
        request: u32,
        /// The table's name.
        table: String,
        /// Which rows.
        filter: locus_protocol::Filter,
    },
    /// An operator's command (not `Publish`, which arrives compiled as [`Input::Publish`]). Calls run as
    /// [`Identity::SERVER`], so admin-only reducers accept them. The answer goes to `from`: a session's as a frame
    /// with the tick's others, a local one in [`TickOutput::admin`]; snapshots are left to the shell
    /// ([`TickOutput::deferred`]).
    Admin {
        /// Who asked.
        from: AdminFrom,
        /// What.
        command: AdminCommand,
    },
    /// A new module to swap in (compiled off the tick thread); the shell does it after the tick
    /// ([`TickOutput::deferred`]).
    Publish {
        /// Who asked.
        from: AdminFrom,
        /// The compiled module.
        module: Box<Module>,
        /// Its bytes (the shell stores them beside the log).
        wasm: Vec<u8>,
    },
    /// A message another region sent this one through JetStream (a world that is a region): applied exactly once
    /// ([`crate::handoff`]); `ack` comes back in [`TickOutput::acks`] once it is applied (or found applied
    /// before), for the shell to acknowledge it once the tick is durable.
    Arrive {
        /// The sender.
        from: locus_region::RegionId,
        /// Its number among the sender's messages.
        seq: u64,
        /// What it carries.
        message: locus_region::message::RegionMessage,
        /// The shell's handle of the JetStream message.
        ack: u64,
    },
    /// JetStream stored these messages of this region's outbox (their numbers): they leave the outbox.
    Confirmed {
        /// The messages' numbers.
        seqs: Vec<u64>,
    },
    /// A change to the copy of a neighbouring region's rows near the border (a world that is one region of a
    /// larger one, [`World::set_region`]; ignored otherwise). It reaches the interest stage after the tick's own
    /// changesets, never the database ([`crate::border`]).
    Border {
        /// The neighbour.
        from: locus_region::RegionId,
        /// The change.
        change: crate::border::BorderChange,
    },
    /// The end of a subscription.
    Unsubscribe {
        /// The session.
        session: SessionId,
        /// The client's request id.
        request: u32,
        /// The table's name.
        table: String,
    },
    /// The player of `identity` moved to another region (its rows moved there already): every session of the
    /// identity not yet redirected gets a `Redirect` frame to `to` after the tick's other frames for it (a session
    /// below protocol version [`locus_protocol::REDIRECT_VERSION`] gets none), and is then closed with
    /// [`locus_protocol::CLOSE_REDIRECTED`] ([`TickOutput::closes`]). From then on the session is redirected (see
    /// the [module docs](self)): its later inputs are dropped and its `Disconnect` runs no `client_disconnected`.
    /// Ignored for the admin identity (not a player) and for an identity with no session.
    Redirect {
        /// The player.
        identity: Identity,
        /// Where its client reconnects.
        to: Redirect,
    },
}

/// Who sent an operator's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminFrom {
    /// A client session with the admin identity, and its request id.
    Session {
        /// The session.
        session: SessionId,
        /// Its request id.
        request: u32,
    },
    /// The server's own API ([`crate::Server::admin_call`]), with an id of the caller's.
    Local(u64),
}

/// Work a tick leaves to the shell, which owns the commit log and the files.
#[derive(Debug)]
pub enum Deferred {
    /// Write a snapshot now and answer `from` once it is durable.
    Snapshot(AdminFrom),
    /// Upgrade to `module` ([`World::upgrade`], then a snapshot, then [`World::swap`]) and answer `from`.
    Publish {
        /// Who asked.
        from: AdminFrom,
        /// The compiled module.
        module: Box<Module>,
        /// Its bytes.
        wasm: Vec<u8>,
    },
}

/// How many module log lines the world keeps for `locus logs`.
pub const LOG_TAIL: usize = 1_000;

/// How often, at most, the failures of one server-run reducer after its first are summed up in the module log.
pub const FAILURE_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Failures of one server-run reducer since its last line in the module log.
#[derive(Debug)]
struct Unreported {
    /// When the reducer's last line was written, and in which tick.
    reported_at: Timestamp,
    reported_tick: Tick,
    /// Failures since.
    count: u64,
    /// The last of them, and its tick.
    last: Option<(Tick, String)>,
}

/// What one tick produced.
#[derive(Debug)]
pub struct TickOutput {
    /// The tick.
    pub tick: Tick,
    /// Its log record (every committed changeset, in commit order).
    pub record: EncodedRecord,
    /// Per session, the frames to send once the record is durable: results and answers first, then the tick's
    /// delta. Sessions with nothing to send are absent.
    pub frames: Vec<(SessionId, Vec<u8>)>,
    /// Per version-4 session that takes datagrams, the tick's position datagrams (`protocol.md` §5, "Version 4"),
    /// to send once the record is durable, after its frames. Sessions with none are absent.
    pub datagrams: Vec<(SessionId, Vec<Vec<u8>>)>,
    /// Answers to local operator commands ([`AdminFrom::Local`]), by id, to give once the record is durable.
    pub admin: Vec<(u64, AdminReply)>,
    /// Snapshots and upgrades for the shell, in the order asked.
    pub deferred: Vec<Deferred>,
    /// Each client reducer call of the tick: the reducer, and whether it failed (for per-reducer metrics).
    pub calls: Vec<(std::sync::Arc<str>, bool)>,
    /// Each failure of a reducer the server ran (lifecycle, tick, periodic, scheduled; and a failed `init` reported
    /// with [`World::server_reducer_failed`] before the first tick): the reducer, once per failure, logged or not.
    pub server_failures: Vec<std::sync::Arc<str>>,
    /// Sessions to close after their [`TickOutput::frames`] are delivered (from [`Input::Close`] and
    /// [`Input::Redirect`]), in input order.
    pub closes: Vec<Closing>,
    /// The sessions whose [`Input::Disconnect`] this tick processed, in input order: no frame of this tick or a
    /// later one is for them, and no answer will be. The shell gives each id back to its [`SessionIds`] once this
    /// tick's frames are delivered (an earlier tick's frames, waiting for durability, may still be for the
    /// session), so a reused id never receives an old session's frames.
    pub freed: Vec<SessionId>,
    /// A region's changes to each neighbour's copy of its rows near the border ([`World::set_region`]), to send
    /// once the record is durable. Empty for a world that is not a region.
    pub border: Vec<(locus_region::RegionId, locus_region::BorderDelta)>,
    /// A region's messages to other regions to publish once the record is durable: `(number, destination,
    /// encoded envelope)` ([`crate::handoff`]).
    pub transmits: Vec<(u64, locus_region::Destination, Vec<u8>)>,
    /// The shell's handles of the [`Input::Arrive`] messages this tick applied (or found applied before), to
    /// acknowledge once the record is durable.
    pub acks: Vec<u64>,
    /// Counts for metrics and logs.
    pub stats: TickStats,
}

/// A session to close for a fatal error ([`Input::Close`]) or because its player moved to another region
/// ([`Input::Redirect`]), once its frames of the tick are delivered.
#[derive(Debug)]
pub struct Closing {
    /// The session.
    pub session: SessionId,
    /// Its last frame: the fatal `Error`, or the `Redirect` (empty for a session too old for one: closed without
    /// a frame).
    pub frame: Vec<u8>,
    /// The QUIC application close code.
    pub close_code: u32,
    /// The QUIC close reason.
    pub reason: String,
}

/// Counts of one tick, and where its time went.
///
/// The `*_time` fields are wall time of the tick's phases, read with [`std::time::Instant`] for metrics and
/// benchmarks (`benches/tick.rs`); nothing the world outputs depends on them. They add up to
/// [`World::run_tick`]'s time but for the bookkeeping between phases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Client reducer calls run.
    pub calls: u32,
    /// Of which failed (rolled back).
    pub failed_calls: u32,
    /// Row changes committed (inserts + updates + deletes).
    pub row_changes: u64,
    /// Rows sent to clients (inserts + updates + deletes of every delta).
    pub rows_sent: u64,
    /// Bytes of frames produced for clients.
    pub bytes_out: u64,
    /// The inputs, in order: connects and disconnects (with their lifecycle reducers), client reducer calls,
    /// subscriptions and commands.
    pub inputs_time: std::time::Duration,
    /// The `tick` reducer, the due scheduled and periodic reducers, and forwarding the module log.
    pub server_reducers_time: std::time::Duration,
    /// Encoding the log record.
    pub record_time: std::time::Duration,
    /// The changesets into the interest stage (`handle_changesets`; partly on the pool, if set).
    pub interest_handle_time: std::time::Duration,
    /// The interest stage's poll: view updates, deltas, patches and byte budgets (on the pool, if set).
    pub interest_poll_time: std::time::Duration,
    /// Encoding each session's frames (on the pool, if set) and gathering every session's frames.
    pub encode_time: std::time::Duration,
}

#[derive(Debug)]
struct Session {
    identity: Identity,
    token: Token,
    version: u16,
    /// Its subscriptions, by table name, as asked (replayed after a module upgrade).
    subscriptions: Vec<(String, locus_protocol::Filter)>,
    out: Vec<u8>,
    /// Protocol version 3: the handles of the rows in its view and the positions last sent.
    rows: ViewRows,
    /// Protocol version 3: rows whose moves were held back (far rows, [`MoveRates`]), each with the tick it is
    /// next due at (not looked at before); some may have been sent or left the view since ([`ViewRows::is_held`]
    /// says).
    held: Vec<(RowId, u64)>,
    /// Protocol version 3: its frame writer (kept for its buffers).
    writer: TickWriter,
    /// Protocol version 4 over a connection that takes datagrams: its position channel.
    places: Option<Box<Places>>,
    /// The tick its player moved to another region in ([`Input::Redirect`]): it is sent nothing after that
    /// tick's frames and its `Redirect`, its later inputs are dropped, and it is no longer its identity's presence
    /// here (see the [module docs](self)).
    redirected: Option<Tick>,
}

/// A version-4 session's position channel (`protocol.md` §5, "Version 4").
#[derive(Debug, Default)]
struct Places {
    /// Whether walking rows go as places now ([`Input::Link`]); when off, only rows already loose do (until they
    /// are at rest), and the rest go as version-3 moves.
    on: bool,
    /// The tick's places being collected.
    writer: PlacesWriter,
    /// The tick's datagrams.
    out: Vec<Vec<u8>>,
    /// Rows whose position last went as a place ([`locus_protocol::compact::Slot::is_loose`]; some may have been
    /// sent on the stream or left the view since): each is sent on the stream once at rest.
    loose: Vec<RowId>,
    /// Column offsets of a row, for [`spatial_patch`].
    offsets: Vec<u32>,
    /// A patch body being written, for [`spatial_patch`].
    body: Vec<u8>,
}

/// Write to `body` the body of a patch of row `bytes` of `def` setting its spatial column alone (its index, then
/// its value's bytes in the row, as in a version-2 patch after the key); `false` if the row has no spatial column
/// or does not read as a row of `def` (then send it whole).
fn spatial_patch(def: &TableDef, bytes: &[u8], offsets: &mut Vec<u32>, body: &mut Vec<u8>) -> bool {
    let Some(column) = def.spatial_column() else {
        return false;
    };
    let (i, n) = (column.index(), def.columns.len());
    // Each column's start, up to the one after the spatial column's (whose start is where its value ends).
    if i >= n || locus_types::codec::locate_columns(&def.columns, bytes, i + 2, offsets).is_err() {
        return false;
    }
    let start = offsets[i] as usize;
    let end = offsets.get(i + 1).map_or(bytes.len(), |&e| e as usize);
    body.clear();
    rmp::encode::write_uint(body, i as u64).expect("Vec write");
    body.extend_from_slice(&bytes[start..end]);
    true
}

/// What a change of a row's position alone costs a session of protocol `version` against its byte budget
/// ([`locus_interest::Interest::set_move_cost`]): version 3 sends it as a move, a handle and two centimetre varints
/// (a walk of up to 63 cm a tick is one byte each) plus a share of the frame's framing, about 4 bytes; earlier
/// versions send the patch. `places`: walking rows go as places now ([`Input::Link`]).
fn move_cost(version: u16, places: bool) -> Option<usize> {
    if places {
        // A place: a handle and two centimetre offsets from the place before it, mostly two bytes each.
        return Some(5);
    }
    (version >= 3).then_some(4)
}

/// How often a version-3 session is sent the moves of rows far from the centre of its area (crowd control, on top
/// of the interest stage's visible cap and byte budget): rows within `full` × the area's enter radius every tick,
/// within `half` × it every 2nd tick, farther every 4th tick (staggered by handle, so each tick carries its share).
/// A held-back move is not lost: the next one carries where the row is then, and a row that stopped is sent at its
/// next due tick. Only moves are thinned (a change of any other column goes at once), and version-1 and -2 sessions
/// get every change every tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoveRates {
    /// Fraction of the enter radius within which every move is sent. Default 0.375 (24 m of 64).
    pub full: f32,
    /// Fraction of the enter radius within which every 2nd tick's is. Default 0.75 (48 m of 64).
    pub half: f32,
}

impl Default for MoveRates {
    fn default() -> MoveRates {
        MoveRates {
            full: 0.375,
            half: 0.75,
        }
    }
}

impl MoveRates {
    /// The first tick at or after `tick` at which a move of the row with `handle`, `d2` (squared metres) from
    /// the centre of an area of enter radius `radius`, is due.
    fn next_due(&self, tick: Tick, handle: u32, d2: f32, radius: f32) -> u64 {
        let every = if d2 <= (self.full * radius).powi(2) {
            1
        } else if d2 <= (self.half * radius).powi(2) {
            2
        } else {
            4
        };
        let late = (tick.0 + u64::from(handle)) % every;
        tick.0 + (every - late) % every
    }
}

/// The world. See the [module docs](self).
pub struct World {
    /// The world's state. The instance is lent it for each call.
    db: Database,
    instance: ModuleInstance,
    interest: Interest,
    sessions: HashMap<SessionId, Session>,
    /// Public tables by id (`None` for private ones).
    tables: Vec<Option<TableDef>>,
    names: HashMap<String, TableId>,
    wire_tables: Vec<WireTable>,
    reducers: Vec<ReducerDef>,
    tick_rate: u16,
    /// The shell's worker threads: the interest stage's per-client work and the frame encoding run on them.
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    seed: u64,
    interest_config: InterestConfig,
    /// How often version-3 sessions get far rows' moves (`None`: every tick).
    move_rates: Option<MoveRates>,
    changesets: Vec<Changeset>,
    /// The last [`LOG_TAIL`] module log lines.
    log_tail: VecDeque<ModuleLogLine>,
    /// Sessions following the module log, with the request id of their `Logs` command.
    log_followers: HashMap<SessionId, u32>,
    /// Server-run reducers that failed within the last [`FAILURE_REPORT_INTERVAL`], by name.
    unreported: HashMap<String, Unreported>,
    /// Failures for the next [`TickOutput::server_failures`].
    server_failures: Vec<std::sync::Arc<str>>,
    /// The world's admin identity ([`World::set_admin`]): its calls are told where a reducer panicked.
    admin: Option<Identity>,
    /// The border, for a world that is one region of a larger one ([`World::set_region`]).
    border: Option<crate::border::Border>,
    /// Handing rows over to other regions, and taking theirs ([`crate::handoff`]).
    handoffs: Option<crate::handoff::Handoffs>,
    /// Changes to the border copies made by the world itself (ghosts dropped), for the interest stage.
    copy_changes: Vec<Changeset>,
    /// When each reducer's last trap backtrace went to the server log ([`World::log_trap`]).
    traces_logged: HashMap<String, Timestamp>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("sessions", &self.sessions.len())
            .field("tables", &self.names)
            .finish_non_exhaustive()
    }
}

/// What the world derives from its module's schema.
struct Schema {
    tables: Vec<Option<TableDef>>,
    names: HashMap<String, TableId>,
    wire_tables: Vec<WireTable>,
    reducers: Vec<ReducerDef>,
}

impl Schema {
    fn of(db: &Database, instance: &ModuleInstance) -> Schema {
        let mut tables = Vec::new();
        let mut names = HashMap::new();
        let mut wire_tables = Vec::new();
        for table in db.tables() {
            let def = table.def();
            if def.access == TableAccess::Public {
                names.insert(def.name.clone(), table.id());
                // Where a row lives is the engine's business: clients get the definition as before regions
                // (a movable flag would add an element to the compact `TableDef` older clients reject).
                let mut wire = def.clone();
                wire.movable = false;
                wire_tables.push(WireTable {
                    id: table.id(),
                    def: wire,
                });
                tables.push(Some(def.clone()));
            } else {
                tables.push(None);
            }
        }
        let reducers = instance
            .def()
            .reducers
            .iter()
            .filter(|r| r.kind == ReducerKind::Client)
            .cloned()
            .collect();
        Schema {
            tables,
            names,
            wire_tables,
            reducers,
        }
    }
}

fn log_line(line: LogLine) -> ModuleLogLine {
    ModuleLogLine {
        tick: line.tick.0,
        level: format!("{:?}", line.level).to_lowercase(),
        reducer: line.reducer.to_string(),
        message: line.message,
    }
}

/// A deterministic per-call seed from the world seed, the tick and the call's position in it (splitmix64).
fn call_seed(seed: u64, tick: Tick, index: u64) -> u64 {
    let mut z = seed
        ^ tick.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn error_code(e: &CallError) -> ErrorCode {
    match e {
        CallError::NoSuchReducer(_) | CallError::NotCallable { .. } => ErrorCode::NoSuchReducer,
        CallError::BadArguments { .. } => ErrorCode::BadArguments,
        CallError::Failed { .. } => ErrorCode::ReducerFailed,
        CallError::Interrupted { .. }
        | CallError::MemoryLimit { .. }
        | CallError::Panicked { .. }
        | CallError::Trapped { .. } => ErrorCode::ReducerAborted,
    }
}

impl World {
    /// A world over `db`, the world's state, running `instance` (made for `db`: [`Module::instantiate`]).
    /// `tick_rate` is announced to clients; `seed` seeds every reducer's RNG (with the tick and the call's
    /// position).
    #[must_use]
    pub fn new(
        db: Database,
        instance: ModuleInstance,
        interest: InterestConfig,
        tick_rate: u16,
        seed: u64,
    ) -> World {
        let schema = Schema::of(&db, &instance);
        World {
            interest: Interest::new(interest, &db),
            db,
            instance,
            sessions: HashMap::new(),
            tables: schema.tables,
            names: schema.names,
            wire_tables: schema.wire_tables,
            reducers: schema.reducers,
            tick_rate,
            pool: None,
            seed,
            interest_config: interest,
            move_rates: Some(MoveRates::default()),
            changesets: Vec::new(),
            log_tail: VecDeque::new(),
            log_followers: HashMap::new(),
            unreported: HashMap::new(),
            server_failures: Vec::new(),
            admin: None,
            traces_logged: HashMap::new(),
            border: None,
            handoffs: None,
            copy_changes: Vec::new(),
        }
    }

    /// Make this world region `own` of `layout`: its committed changes feed its neighbours' copies of its rows near
    /// the border ([`TickOutput::border`], [`World::border_whole_for`]), and the copies of theirs it is sent
    /// ([`Input::Border`]) reach its clients. See [`crate::border`].
    ///
    /// Rows of movable tables that leave the region are handed over to the region that holds them now
    /// ([`crate::handoff`]); the database must have the region's system tables
    /// ([`crate::handoff::ensure_tables`], which this creates if missing: the caller snapshots a database whose
    /// tables it created).
    /// `here` is where this region's clients connect: the other regions send the sessions of players whose
    /// avatar moved here to it.
    pub fn set_region(
        &mut self,
        layout: locus_region::WorldLayout,
        own: locus_region::RegionId,
        here: Redirect,
    ) {
        if let Err(e) = crate::handoff::ensure_tables(&mut self.db, &layout, own) {
            tracing::error!(
                e,
                "the region's system tables cannot be made: rows are not handed over"
            );
        } else {
            self.handoffs = Some(crate::handoff::Handoffs::new(
                layout.clone(),
                own,
                here,
                &self.db,
            ));
        }
        self.border = Some(crate::border::Border::new(layout, own, &self.db));
    }

    /// How many messages to other regions wait for JetStream's confirmation.
    #[must_use]
    pub fn unconfirmed_messages(&self) -> usize {
        self.handoffs
            .as_ref()
            .map_or(0, crate::handoff::Handoffs::unconfirmed)
    }

    /// Move the `auto_inc` sequences of tables into the region's range of keys
    /// ([`crate::border::region_key_base`]), in a transaction logged with the next tick (after a publish added
    /// tables). Nothing for a world that is not a region.
    pub fn reserve_region_keys(&mut self) {
        if let Some(own) = self.border.as_ref().map(crate::border::Border::own) {
            let c = crate::border::reserve_region_keys(&mut self.db, own);
            if !c.is_empty() {
                self.changesets.push(c);
            }
        }
    }

    /// The region's layout and its own id, if it is one ([`World::set_region`]).
    #[must_use]
    pub fn region(&self) -> Option<(&locus_region::WorldLayout, locus_region::RegionId)> {
        self.border.as_ref().map(|b| (b.layout(), b.own()))
    }

    /// The whole copy of this region's rows that neighbour `to` should hold (for a neighbour that (re)started or
    /// lost a change). Empty for a world that is not a region.
    #[must_use]
    pub fn border_whole_for(&self, to: locus_region::RegionId) -> locus_region::link::Rows {
        self.border
            .as_ref()
            .map(|b| b.whole_for(to))
            .unwrap_or_default()
    }

    /// How many copies of neighbours' rows the world holds.
    #[must_use]
    pub fn border_copies_held(&self) -> usize {
        self.border
            .as_ref()
            .map_or(0, crate::border::Border::copies_held)
    }

    /// The world's admin identity (the one `locus serve` keeps the token of): a failed call of a session with it
    /// is answered as an operator's command is, with [`CallError::detailed`] (where a reducer panicked); every other
    /// session gets the error's plain text. Default: none.
    pub fn set_admin(&mut self, admin: Identity) {
        self.admin = Some(admin);
    }

    /// Send version-3 sessions the moves of far rows less often ([`MoveRates`]; the default), or every tick
    /// (`None`).
    pub fn set_move_rates(&mut self, rates: Option<MoveRates>) {
        self.move_rates = rates;
    }

    /// Run the per-client work of each tick — the interest stage's view updates, deltas and byte budgets, and the
    /// encoding of each session's frames — on `pool` (the shell's worker threads) instead of the calling thread.
    /// The frames are the same, byte for byte, whatever the pool's size.
    pub fn set_pool(&mut self, pool: std::sync::Arc<rayon::ThreadPool>) {
        self.pool = Some(pool);
    }

    /// The world's database, for reads between ticks (snapshots, queries, metrics).
    #[must_use]
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The module instance (the database is [`World::db`]).
    #[must_use]
    pub fn instance(&self) -> &ModuleInstance {
        &self.instance
    }

    /// Mutable access to the module instance (e.g. for its logs).
    pub fn instance_mut(&mut self) -> &mut ModuleInstance {
        &mut self.instance
    }

    /// Connected sessions.
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The interest stage (its clients are the sessions, by id).
    #[must_use]
    pub fn interest(&self) -> &Interest {
        &self.interest
    }

    fn send(&mut self, session: SessionId, message: &ServerMessage) {
        if let Some(s) = self.sessions.get_mut(&session) {
            locus_protocol::encode_frame(message, &mut s.out);
        }
    }

    fn error(&mut self, session: SessionId, request: u32, code: ErrorCode, message: String) {
        self.send(
            session,
            &ServerMessage::Error {
                code,
                message,
                request: Some(request),
                fatal: false,
            },
        );
    }

    /// Run one tick: `inputs` in order, then the tick and scheduled reducers; see the [module docs](self).
    pub fn run_tick(
        &mut self,
        tick: Tick,
        now: Timestamp,
        dt: f32,
        inputs: impl IntoIterator<Item = Input>,
    ) -> TickOutput {
        let started = std::time::Instant::now();
        let mut stats = TickStats::default();
        let (seed, mut index) = (self.seed, 0u64);
        let mut ctx = |sender: Identity| {
            index += 1;
            CallContext {
                sender,
                tick,
                timestamp: now,
                rng_seed: call_seed(seed, tick, index),
            }
        };
        let mut admin = Vec::new();
        let mut deferred = Vec::new();
        let mut calls = Vec::new();
        let mut closes = Vec::new();
        let mut freed = Vec::new();
        let mut acks = Vec::new();
        for input in inputs {
            match input {
                Input::Connect {
                    session,
                    identity,
                    token,
                    version,
                    datagrams,
                    places: on,
                } => {
                    let places = (datagrams && version >= 4).then(|| {
                        Box::new(Places {
                            on,
                            ..Places::default()
                        })
                    });
                    let mut rows = ViewRows::default();
                    if places.is_some() {
                        rows.set_rest(locus_protocol::places::HANDLE_REST);
                    }
                    let cost = move_cost(version, on && places.is_some());
                    self.sessions.insert(
                        session,
                        Session {
                            identity,
                            token,
                            version,
                            subscriptions: Vec::new(),
                            out: Vec::new(),
                            rows,
                            held: Vec::new(),
                            writer: TickWriter::default(),
                            places,
                            redirected: None,
                        },
                    );
                    self.interest.handle_connect(ClientId(session), identity);
                    self.interest.set_move_cost(ClientId(session), cost);
                    // The admin is not a player: its sessions (`locus query`, `call`, `logs`, ...) run no
                    // lifecycle reducer, so a module makes no avatar for it. Redirected sessions of the identity
                    // still closing are not its presence here: this one is its first.
                    // An identity whose avatar was handed over to another region is not here: it is sent there
                    // (now, or once that region has it).
                    let away = self
                        .handoffs
                        .as_ref()
                        .and_then(|h| h.where_is(&self.db, identity));
                    let sent_on = away.as_ref().and_then(|a| {
                        let (addr, fingerprint) = a.at.clone()?;
                        let (layout, _) = self.region()?;
                        Some(Redirect {
                            region: layout.region(a.region).name.clone(),
                            addr,
                            fingerprint,
                            web: None,
                        })
                    });
                    if let Some(h) = &mut self.handoffs {
                        h.connected(identity);
                    }
                    if self.admin != Some(identity) && self.present(identity) == 1 && away.is_none()
                    {
                        match self.instance.client_connected(&mut self.db, &ctx(identity)) {
                            Ok(c) => self.changesets.push(c),
                            Err(e) => self.server_reducer_failed(&e, tick, now),
                        }
                    }
                    let welcome = ServerMessage::Welcome(Welcome {
                        version,
                        identity,
                        token,
                        tick_rate: self.tick_rate,
                        tick: tick.0,
                        tables: self.wire_tables.clone(),
                        reducers: self.reducers.clone(),
                    });
                    self.send(session, &welcome);
                    if let Some(to) = sent_on {
                        self.redirect(identity, &to, tick, &mut closes);
                    }
                }
                Input::Arrive {
                    from,
                    seq,
                    message,
                    ack,
                } => {
                    let Some(h) = &mut self.handoffs else {
                        continue;
                    };
                    if let locus_region::message::RegionMessage::Call {
                        reducer,
                        args,
                        sender,
                    } = &message
                    {
                        if h.is_applied(from, seq) {
                            acks.push(ack);
                            continue;
                        }
                        // Delivered: a failed call is the module's answer, recorded as applied like any other.
                        match self.instance.call_from_region(
                            &mut self.db,
                            reducer,
                            args,
                            &ctx(*sender),
                        ) {
                            Ok(c) => self.changesets.push(c),
                            // Like the reducers the server runs itself: to the module log.
                            Err(e) => self.server_reducer_failed(&e, tick, now),
                        }
                        let h = self.handoffs.as_mut().expect("checked above");
                        match h.mark_applied(&mut self.db, from, seq) {
                            Ok(c) => {
                                self.changesets.push(c);
                                acks.push(ack);
                            }
                            Err(e) => tracing::error!(
                                e,
                                "a reducer call from another region could not be recorded"
                            ),
                        }
                        continue;
                    }
                    match h.arrive(&mut self.db, from, seq, &message, tick) {
                        Ok(crate::handoff::Arrival::Applied {
                            changeset,
                            redirect,
                        }) => {
                            self.changesets.push(changeset);
                            acks.push(ack);
                            if let Some((identity, to)) = redirect {
                                self.redirect_identity(identity, to, tick, &mut closes);
                            }
                        }
                        Ok(crate::handoff::Arrival::Duplicate) => acks.push(ack),
                        // Not acknowledged: JetStream delivers it again.
                        Err(e) => tracing::error!(
                            from = from.0,
                            seq,
                            e,
                            "a message from another region could not be applied; it will come again"
                        ),
                    }
                }
                Input::Confirmed { seqs } => {
                    if let Some(h) = &mut self.handoffs
                        && let Some(c) = h.confirmed(&mut self.db, &seqs)
                    {
                        self.changesets.push(c);
                    }
                }
                Input::Link { session, places } => {
                    let Some(s) = self.sessions.get_mut(&session) else {
                        continue;
                    };
                    if let Some(p) = s.places.as_mut() {
                        p.on = places;
                        // A walking row costs a place's bytes against the budget only while places are on.
                        let cost = move_cost(s.version, places);
                        self.interest.set_move_cost(ClientId(session), cost);
                    }
                }
                Input::Disconnect { session } => {
                    // Nothing of this tick or later is for it: the shell frees the id once the tick is released.
                    freed.push(session);
                    let Some(s) = self.sessions.remove(&session) else {
                        continue;
                    };
                    self.interest.handle_disconnect(ClientId(session));
                    self.log_followers.remove(&session);
                    // A redirected session's player went to another region: it did not leave the world.
                    if s.redirected.is_none()
                        && self.admin != Some(s.identity)
                        && self.present(s.identity) == 0
                    {
                        match self
                            .instance
                            .client_disconnected(&mut self.db, &ctx(s.identity))
                        {
                            Ok(c) => self.changesets.push(c),
                            Err(e) => self.server_reducer_failed(&e, tick, now),
                        }
                    }
                }
                Input::Call {
                    session,
                    request,
                    reducer,
                    args,
                } => {
                    let Some(identity) = self.live(session).map(|s| s.identity) else {
                        continue;
                    };
                    stats.calls += 1;
                    let outcome =
                        match self
                            .instance
                            .call(&mut self.db, &reducer, &args, &ctx(identity))
                        {
                            Ok(c) => {
                                self.changesets.push(c);
                                CallOutcome::Ok
                            }
                            Err(e) => {
                                stats.failed_calls += 1;
                                self.log_trap(&e, now);
                                CallOutcome::Err {
                                    code: error_code(&e),
                                    message: if self.admin == Some(identity) {
                                        e.detailed()
                                    } else {
                                        e.to_string()
                                    },
                                }
                            }
                        };
                    calls.push((std::sync::Arc::from(reducer), outcome != CallOutcome::Ok));
                    self.send(
                        session,
                        &ServerMessage::Result {
                            request,
                            tick: tick.0,
                            outcome,
                        },
                    );
                }
                Input::Admin { from, command } => {
                    let reply = match command {
                        AdminCommand::Call { reducer, args } => {
                            let server = ctx(Identity::SERVER);
                            let outcome =
                                match self.instance.call(&mut self.db, &reducer, &args, &server) {
                                    Ok(c) => {
                                        self.changesets.push(c);
                                        CallOutcome::Ok
                                    }
                                    Err(e) => {
                                        self.log_trap(&e, now);
                                        CallOutcome::Err {
                                            code: error_code(&e),
                                            message: e.detailed(),
                                        }
                                    }
                                };
                            Some(AdminReply::Called {
                                tick: tick.0,
                                outcome,
                            })
                        }
                        AdminCommand::Query { sql } => {
                            Some(match crate::query::query(&self.db, &sql) {
                                Ok(result) => AdminReply::Rows {
                                    json: serde_json::to_string(&result)
                                        .expect("a query result serializes"),
                                },
                                Err(e) => AdminReply::Refused {
                                    message: e.to_string(),
                                },
                            })
                        }
                        AdminCommand::Logs { tail, follow } => {
                            let skip = self.log_tail.len().saturating_sub(tail as usize);
                            let lines = self.log_tail.iter().skip(skip).cloned().collect();
                            if let (true, AdminFrom::Session { session, request }) = (follow, from)
                            {
                                self.log_followers.insert(session, request);
                            }
                            Some(AdminReply::Logs { lines })
                        }
                        AdminCommand::Snapshot => {
                            deferred.push(Deferred::Snapshot(from));
                            None
                        }
                        AdminCommand::Publish { .. } => Some(AdminReply::Refused {
                            message: "a module must be compiled before it is published".into(),
                        }),
                    };
                    if let Some(reply) = reply
                        && let Some(local) = self.reply(from, reply)
                    {
                        admin.push(local);
                    }
                }
                Input::Publish { from, module, wasm } => {
                    deferred.push(Deferred::Publish { from, module, wasm })
                }
                Input::Close {
                    session,
                    code,
                    message,
                    close_code,
                } => {
                    // After this tick's frames for the session: its earlier inputs' answers and the tick's delta.
                    let mut frame = Vec::new();
                    locus_protocol::encode_frame(
                        &ServerMessage::Error {
                            code,
                            message: message.clone(),
                            request: None,
                            fatal: true,
                        },
                        &mut frame,
                    );
                    closes.push(Closing {
                        session,
                        frame,
                        close_code,
                        reason: message,
                    });
                }
                Input::Redirect { identity, to } => {
                    self.redirect_identity(identity, to, tick, &mut closes);
                }
                Input::Subscribe {
                    session,
                    request,
                    table,
                    filter,
                } => self.subscribe(session, request, &table, filter),
                Input::Border { from, change } => {
                    if let Some(b) = &mut self.border {
                        b.arrive(from, change);
                    }
                }
                Input::Unsubscribe {
                    session,
                    request,
                    table,
                } => match self.names.get(&table).copied() {
                    Some(id) if self.live(session).is_some() => {
                        self.interest.handle_unsubscribe(ClientId(session), id);
                        if let Some(s) = self.sessions.get_mut(&session) {
                            s.subscriptions.retain(|(t, _)| *t != table);
                        }
                        self.send(session, &ServerMessage::Unsubscribed { request, table: id });
                    }
                    Some(_) => {}
                    None => self.error(
                        session,
                        request,
                        ErrorCode::NoSuchTable,
                        format!("no public table named `{table}`"),
                    ),
                },
            }
        }
        let inputs_done = std::time::Instant::now();
        stats.inputs_time = inputs_done - started;
        match self.instance.tick(&mut self.db, dt, &ctx(Identity::SERVER)) {
            Ok(c) => self.changesets.push(c),
            Err(e) => self.server_reducer_failed(&e, tick, now),
        }
        for run in self
            .instance
            .run_due(&mut self.db, now, &ctx(Identity::SERVER))
        {
            if let Some(e) = run.error {
                self.server_reducer_failed(&e, tick, now);
            }
            self.changesets.push(run.changeset);
        }
        let overdue = match (&mut self.handoffs, &mut self.border) {
            (Some(h), Some(b)) => {
                h.hand_off(&mut self.db, &mut self.changesets, b.copies_mut());
                h.overdue(tick)
            }
            _ => Vec::new(),
        };
        {
            for identity in overdue {
                // Its avatar arrived but no session of it came: it left the world.
                if self.present(identity) == 0 {
                    match self
                        .instance
                        .client_disconnected(&mut self.db, &ctx(identity))
                    {
                        Ok(c) => self.changesets.push(c),
                        Err(e) => self.server_reducer_failed(&e, tick, now),
                    }
                }
            }
        }
        if let Some(h) = &mut self.handoffs {
            h.track(&self.changesets);
        }
        self.forward_logs();
        self.report_repeated_failures(tick, now);
        let reducers_done = std::time::Instant::now();
        stats.server_reducers_time = reducers_done - inputs_done;
        self.changesets.retain(|c| !c.is_empty());
        let record = EncodedRecord::from_changesets(tick, &self.changesets);
        let recorded = std::time::Instant::now();
        stats.record_time = recorded - reducers_done;
        stats.row_changes += self
            .changesets
            .iter()
            .map(|c| c.row_count() as u64)
            .sum::<u64>();
        let mut border = Vec::new();
        let (merged, arrived) = match &mut self.border {
            Some(b) => {
                let merged = b.merge(&self.changesets);
                let arrived = b.take_arrived(&self.db);
                border = b.poll();
                (merged, arrived)
            }
            None => (None, Vec::new()),
        };
        // In the order the copies changed: the ghosts dropped during the tick's inputs, then the tick's own
        // changesets (merged with the copies), then the neighbours' changes that arrived.
        let dropped = std::mem::take(&mut self.copy_changes);
        if !dropped.is_empty() {
            self.interest.handle_changesets(&dropped);
        }
        let own = merged.as_deref().unwrap_or(&self.changesets);
        match self.pool.as_deref() {
            Some(pool) => self.interest.handle_changesets_on(own, pool),
            None => self.interest.handle_changesets(own),
        }
        if !arrived.is_empty() {
            match self.pool.as_deref() {
                Some(pool) => self.interest.handle_changesets_on(&arrived, pool),
                None => self.interest.handle_changesets(&arrived),
            }
        }
        self.changesets.clear();
        self.log_area_errors();
        let handled = std::time::Instant::now();
        stats.interest_handle_time = handled - recorded;
        let pool = self.pool.as_deref();
        let deltas = match pool {
            Some(pool) => self.interest.poll_tick_on(tick, pool),
            None => self.interest.poll_tick(tick),
        };
        let polled = std::time::Instant::now();
        stats.interest_poll_time = polled - handled;
        let mut frames = Vec::new();
        // As the interest stage: a small world's frames are encoded on this thread, whose cache holds their rows.
        let encode_pool = pool.filter(|_| deltas.worth_spreading());
        Self::encode_deltas(
            &deltas,
            &mut self.sessions,
            &self.tables,
            self.move_rates,
            now,
            &mut stats,
            encode_pool,
        );
        let mut datagrams = Vec::new();
        for (&session, s) in &mut self.sessions {
            if s.redirected.is_some_and(|at| at < tick) {
                // Past its `Redirect`, its last frame: its connection is closing.
                s.out.clear();
                if let Some(p) = &mut s.places {
                    p.out.clear();
                }
                continue;
            }
            if !s.out.is_empty() {
                stats.bytes_out += s.out.len() as u64;
                frames.push((session, std::mem::take(&mut s.out)));
            }
            if let Some(p) = &mut s.places
                && !p.out.is_empty()
            {
                stats.bytes_out += p.out.iter().map(|d| d.len() as u64).sum::<u64>();
                datagrams.push((session, std::mem::take(&mut p.out)));
            }
        }
        frames.sort_unstable_by_key(|(s, _)| *s);
        datagrams.sort_unstable_by_key(|(s, _)| *s);
        stats.encode_time = polled.elapsed();
        TickOutput {
            tick,
            record,
            frames,
            datagrams,
            admin,
            deferred,
            calls,
            server_failures: std::mem::take(&mut self.server_failures),
            closes,
            freed,
            stats,
            border,
            transmits: match &mut self.handoffs {
                Some(h) => h.transmits(tick, now.0),
                None => Vec::new(),
            },
            acks,
        }
    }

    /// The session, if it is connected and not redirected (whose inputs are dropped).
    fn live(&self, session: SessionId) -> Option<&Session> {
        self.sessions
            .get(&session)
            .filter(|s| s.redirected.is_none())
    }

    /// How many sessions of `identity` are its presence in this world: connected and not redirected.
    fn present(&self, identity: Identity) -> usize {
        self.interest
            .clients_of(identity)
            .filter(|c| self.live(c.0).is_some())
            .count()
    }

    /// Send `identity`'s sessions to `to` ([`World::redirect`]), drop the ghosts of its rows handed over, and send
    /// its sessions that connect here later there too.
    fn redirect_identity(
        &mut self,
        identity: Identity,
        to: Redirect,
        tick: Tick,
        closes: &mut Vec<Closing>,
    ) {
        self.redirect(identity, &to, tick, closes);
        if let (Some(h), Some(b)) = (&mut self.handoffs, &mut self.border) {
            let c = h.redirected(identity, b.copies_mut());
            if !c.is_empty() {
                self.copy_changes.push(c);
            }
        }
    }

    /// Redirect in `tick`: each session of `identity` not yet redirected (in id order) is marked so and gets its
    /// `Redirect` frame (version [`locus_protocol::REDIRECT_VERSION`] and later) and the close
    /// [`locus_protocol::CLOSE_REDIRECTED`] in `closes`. Nothing for the admin identity.
    fn redirect(
        &mut self,
        identity: Identity,
        to: &Redirect,
        tick: Tick,
        closes: &mut Vec<Closing>,
    ) {
        if self.admin == Some(identity) {
            return;
        }
        let mut sessions: Vec<SessionId> = self
            .interest
            .clients_of(identity)
            .map(|c| c.0)
            .filter(|&c| self.live(c).is_some())
            .collect();
        sessions.sort_unstable();
        let reason = format!("redirected to region {} at {}", to.region, to.addr);
        for session in sessions {
            let Some(s) = self.sessions.get_mut(&session) else {
                continue;
            };
            s.redirected = Some(tick);
            let mut frame = Vec::new();
            if s.version >= locus_protocol::REDIRECT_VERSION {
                locus_protocol::encode_frame(&ServerMessage::Redirect(to.clone()), &mut frame);
            }
            closes.push(Closing {
                session,
                frame,
                close_code: locus_protocol::CLOSE_REDIRECTED,
                reason: reason.clone(),
            });
        }
    }

    fn subscribe(
        &mut self,
        session: SessionId,
        request: u32,
        table: &str,
        filter: locus_protocol::Filter,
    ) {
        if self.live(session).is_none() {
            return;
        }
        match self.resubscribe(session, table, filter) {
            Ok(id) => self.send(session, &ServerMessage::Subscribed { request, table: id }),
            Err((code, message)) => self.error(session, request, code, message),
        }
    }

    /// Subscribe `session` to `table` in the interest stage and remember it (for a module upgrade).
    fn resubscribe(
        &mut self,
        session: SessionId,
        table: &str,
        filter: locus_protocol::Filter,
    ) -> Result<TableId, (ErrorCode, String)> {
        let Some(id) = self.names.get(table).copied() else {
            return Err((
                ErrorCode::NoSuchTable,
                format!("no public table named `{table}`"),
            ));
        };
        let def = self.tables[id.0 as usize].as_ref().expect("public");
        let resolved = match &filter {
            locus_protocol::Filter::All => Filter::All,
            locus_protocol::Filter::Owner => Filter::Owner,
            locus_protocol::Filter::Eq { column, value } => {
                let Some(c) = def.columns.iter().position(|c| c.name == *column) else {
                    return Err((
                        ErrorCode::BadSubscription,
                        format!("table `{table}` has no column `{column}`"),
                    ));
                };
                // As a reducer's arguments: a float column takes any number that converts.
                match codec::decode_arg(&def.columns[c], value) {
                    Ok(value) => Filter::Eq {
                        column: ColumnId(c as u16),
                        value,
                    },
                    Err(e) => {
                        return Err((
                            ErrorCode::BadSubscription,
                            format!("the value for `{table}.{column}` is not valid: {e}"),
                        ));
                    }
                }
            }
        };
        self.interest
            .handle_subscribe(ClientId(session), id, resolved)
            .map_err(|e| (ErrorCode::BadSubscription, e.to_string()))?;
        if let Some(s) = self.sessions.get_mut(&session) {
            s.subscriptions.retain(|(t, _)| t != table);
            s.subscriptions.push((table.to_owned(), filter));
        }
        Ok(id)
    }

    /// Answer an operator: a session's answer is queued as a frame (sent with this tick's, once durable); a local
    /// one is returned.
    pub fn reply(&mut self, from: AdminFrom, reply: AdminReply) -> Option<(u64, AdminReply)> {
        match from {
            AdminFrom::Session { session, request } => {
                self.send(session, &ServerMessage::Admin { request, reply });
                None
            }
            AdminFrom::Local(id) => Some((id, reply)),
        }
    }

    /// Report a failure of a reducer the server ran (not a client's call, whose caller gets the error): counted in
    /// [`TickOutput::server_failures`], and written to the module log at level `error` under the reducer's name,
    /// after the reducer's own lines. The first failure of a reducer is written at once; further ones are counted
    /// and summed up in one line per [`FAILURE_REPORT_INTERVAL`] ([`World::run_tick`] writes it), so a reducer
    /// failing every tick writes one line every 10 s, not 20 a second. A reducer with no failure for a whole
    /// interval starts afresh. Each line also goes to `tracing` (a warning).
    ///
    /// The shell calls it for a new world's failed `init` (before the first tick); `run_tick` for the rest.
    pub fn server_reducer_failed(&mut self, error: &CallError, tick: Tick, now: Timestamp) {
        self.log_trap(error, now);
        let reducer = error.reducer();
        self.server_failures.push(std::sync::Arc::from(reducer));
        if let Some(u) = self.unreported.get_mut(reducer) {
            u.count += 1;
            u.last = Some((tick, error.detailed()));
            return;
        }
        self.unreported.insert(
            reducer.to_owned(),
            Unreported {
                reported_at: now,
                reported_tick: tick,
                count: 0,
                last: None,
            },
        );
        let message = format!(
            "{} (further failures of `{reducer}` are summed up every {} s)",
            error.detailed(),
            FAILURE_REPORT_INTERVAL.as_secs()
        );
        self.forward_logs();
        self.failure_line(tick, reducer.to_owned(), message);
    }

    /// Write a trapped or panicked call's wasm backtrace ([`CallError::backtrace`]) to the server's log (`tracing`,
    /// a warning with the operator's text of the error): the first of each reducer at once, then at most one per
    /// [`FAILURE_REPORT_INTERVAL`] (the others at debug level), so a reducer that panics on every call cannot flood
    /// the log. A backtrace goes nowhere else: never to a client, nor to the module log.
    fn log_trap(&mut self, error: &CallError, now: Timestamp) {
        let Some(backtrace) = error.backtrace() else {
            return;
        };
        let reducer = error.reducer();
        let interval = FAILURE_REPORT_INTERVAL.as_micros() as u64;
        let due = self
            .traces_logged
            .get(reducer)
            .is_none_or(|last| now.0.saturating_sub(last.0) >= interval);
        if due {
            self.traces_logged.insert(reducer.to_owned(), now);
            tracing::warn!(reducer, "{}\n{backtrace}", error.detailed());
        } else {
            tracing::debug!(reducer, "{}\n{backtrace}", error.detailed());
        }
    }

    /// Sum up the failures of each server-run reducer whose last line is [`FAILURE_REPORT_INTERVAL`] old, and
    /// forget the reducers that did not fail since.
    fn report_repeated_failures(&mut self, tick: Tick, now: Timestamp) {
        if self.unreported.is_empty() {
            return;
        }
        let interval = FAILURE_REPORT_INTERVAL.as_micros() as u64;
        let mut due: Vec<(String, u64, Tick, Tick, String)> = Vec::new();
        self.unreported.retain(|reducer, u| {
            if now.0.saturating_sub(u.reported_at.0) < interval {
                return true;
            }
            let Some((last_tick, last)) = u.last.take() else {
                return false;
            };
            due.push((reducer.clone(), u.count, u.reported_tick, last_tick, last));
            u.count = 0;
            u.reported_at = now;
            u.reported_tick = tick;
            true
        });
        due.sort_unstable();
        for (reducer, count, since, last_tick, last) in due {
            let message = format!(
                "failed again {count} times after tick {}; the last time (tick {}): {last}",
                since.0, last_tick.0
            );
            self.failure_line(tick, reducer, message);
        }
    }

    fn failure_line(&mut self, tick: Tick, reducer: String, message: String) {
        tracing::warn!(reducer, tick = tick.0, "{message}");
        self.publish_lines(vec![ModuleLogLine {
            tick: tick.0,
            level: "error".into(),
            reducer,
            message,
        }]);
    }

    /// Move the module's new log lines into the tail and to the sessions following the log.
    fn forward_logs(&mut self) {
        let lines: Vec<ModuleLogLine> = self
            .instance
            .drain_logs()
            .into_iter()
            .map(log_line)
            .collect();
        self.publish_lines(lines);
    }

    /// Append `lines` to the tail and send them to the sessions following the log.
    fn publish_lines(&mut self, lines: Vec<ModuleLogLine>) {
        if lines.is_empty() {
            return;
        }
        let followers: Vec<(SessionId, u32)> =
            self.log_followers.iter().map(|(&s, &r)| (s, r)).collect();
        for (session, request) in followers {
            self.send(
                session,
                &ServerMessage::Admin {
                    request,
                    reply: AdminReply::Logs {
                        lines: lines.clone(),
                    },
                },
            );
        }
        for line in lines {
            if self.log_tail.len() == LOG_TAIL {
                self.log_tail.pop_front();
            }
            self.log_tail.push_back(line);
        }
    }

    /// Prepare an upgrade to `module` ([`Module::upgrade`]): the tables whose definition changes are migrated
    /// aside, the others are not copied; the world is unchanged until [`World::apply_upgrade`].
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`] naming what is incompatible.
    pub fn upgrade(&self, module: &Module) -> Result<Upgrade, UpgradeError> {
        module.upgrade(&self.instance, &self.db)
    }

    /// Swap `upgrade` (from [`World::upgrade`], with no tick run since) into the database and, if the module's
    /// version differs from the data's, run its upgrade reducer as the server at `tick` and `now`
    /// ([`Upgrade::apply`]). The old module stays in place: the database now holds the upgraded data, for the
    /// snapshot that must be durable before [`World::swap`] — or [`World::revert_upgrade`] if it cannot be made.
    ///
    /// # Errors
    ///
    /// [`UpgradeError::Hook`] if the upgrade reducer failed: the world is then exactly as it was, and the lines
    /// the reducer logged are in the module log.
    pub fn apply_upgrade(
        &mut self,
        upgrade: Upgrade,
        tick: Tick,
        now: Timestamp,
    ) -> Result<AppliedUpgrade, UpgradeError> {
        let ctx = CallContext {
            sender: Identity::SERVER,
            tick,
            timestamp: now,
            // Apart from the tick's calls, which count up from 1.
            rng_seed: call_seed(self.seed, tick, u64::MAX),
        };
        match upgrade.apply(&mut self.db, &ctx) {
            Ok(applied) => Ok(applied),
            Err(UpgradeError::Hook {
                from,
                to,
                error,
                logs,
            }) => {
                self.log_trap(&error, now);
                self.publish_lines(logs.into_iter().map(log_line).collect());
                Err(UpgradeError::Hook {
                    from,
                    to,
                    error,
                    logs: Vec::new(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Undo an applied upgrade (from [`World::apply_upgrade`]): the database is as it was, the old module runs on.
    pub fn revert_upgrade(&mut self, applied: AppliedUpgrade) {
        applied.revert(&mut self.db);
    }

    /// Run the applied upgrade (from [`World::apply_upgrade`], with no tick run since) from now on: its transaction
    /// is committed and its instance replaces the running one (whose replaced tables are dropped).
    /// Every session stays connected: it is sent a new `Welcome` (the new schema; a client drops its view on it),
    /// its subscriptions are made again by table name, its area restored from the module's `locus_area` table, and
    /// its whole view arrives as inserts in the next tick. The upgrade reducer's log lines reach the module log with
    /// the next tick's.
    pub fn swap(&mut self, applied: AppliedUpgrade, tick: Tick) {
        let (instance, replaced) = applied.commit(&mut self.db);
        drop(replaced);
        let schema = Schema::of(&self.db, &instance);
        self.interest = Interest::new(self.interest_config, &self.db);
        // The copies were in the old interest stage: the neighbours send whole copies again (the shell asks them).
        if let Some(b) = self.border.take() {
            let (layout, own) = (b.layout().clone(), b.own());
            self.border = Some(crate::border::Border::new(layout, own, &self.db));
        }
        if let Some(h) = &mut self.handoffs {
            h.schema(&self.db);
        }

        self.instance = instance;
        self.tables = schema.tables;
        self.names = schema.names;
        self.wire_tables = schema.wire_tables;
        self.reducers = schema.reducers;
        let mut sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
        sessions.sort_unstable();
        for session in sessions {
            let s = self.sessions.get_mut(&session).expect("listed above");
            // Its client drops every row on the `Welcome`, and with them the handles.
            s.rows.clear();
            s.held.clear();
            if let Some(p) = &mut s.places {
                p.loose.clear();
            }
            let cost = move_cost(s.version, s.places.as_ref().is_some_and(|p| p.on));
            let (identity, subscriptions, version) =
                (s.identity, s.subscriptions.clone(), s.version);
            let welcome = ServerMessage::Welcome(Welcome {
                version,
                identity,
                token: s.token,
                tick_rate: self.tick_rate,
                tick: tick.0,
                tables: self.wire_tables.clone(),
                reducers: self.reducers.clone(),
            });
            self.send(session, &welcome);
            self.interest.handle_connect(ClientId(session), identity);
            self.interest.set_move_cost(ClientId(session), cost);
            for (table, filter) in subscriptions {
                if let Err((_, e)) = self.resubscribe(session, &table, filter) {
                    tracing::warn!(
                        session,
                        table,
                        e,
                        "a subscription did not survive the upgrade"
                    );
                }
            }
        }
        self.log_area_errors();
    }

    /// Log the areas the module set that the interest stage refused (the client then has none).
    fn log_area_errors(&mut self) {
        for (client, e) in self.interest.take_area_errors() {
            tracing::warn!(%e, session = client.0, "the module set an area the interest stage refuses");
        }
    }

    /// Encode each session's delta into its frames (after the frames it has queued), on `pool` when given.
    fn encode_deltas(
        deltas: &Deltas<'_>,
        sessions: &mut HashMap<SessionId, Session>,
        tables: &[Option<TableDef>],
        rates: Option<MoveRates>,
        now: Timestamp,
        stats: &mut TickStats,
        pool: Option<&rayon::ThreadPool>,
    ) {
        let tick = deltas.tick();
        let time = now.as_micros();
        // Each session's buffer (holding the frames queued before the delta) goes with its delta, so the frames are
        // appended where they are sent from: no second buffer, no copy; so do its handles (version 3).
        // (A version-3 session with held-back moves has work even when its delta is empty.)
        let mut work: Vec<Job<'_>> = deltas
            .iter()
            .filter_map(|(c, d)| {
                let s = sessions.get_mut(&c.0)?;
                if d.is_empty()
                    && s.held.is_empty()
                    && s.places.as_ref().is_none_or(|p| p.loose.is_empty())
                {
                    return None;
                }
                Some(Job {
                    session: c.0,
                    delta: d,
                    version: s.version,
                    out: std::mem::take(&mut s.out),
                    rows: std::mem::take(&mut s.rows),
                    held: std::mem::take(&mut s.held),
                    writer: std::mem::take(&mut s.writer),
                    places: s.places.take(),
                })
            })
            .collect();
        let encode = |job: &mut Job<'_>| {
            if job.version >= 3 {
                let area = deltas.area(ClientId(job.session));
                let ctx = Compact {
                    deltas,
                    tables,
                    rates: rates.zip(area),
                    tick,
                    time,
                };
                encode_compact(
                    &ctx,
                    job.delta,
                    &mut job.rows,
                    &mut job.held,
                    &mut job.writer,
                    job.places.as_deref_mut(),
                    &mut job.out,
                );
            } else {
                encode_delta(deltas, job.delta, job.version, tick, time, &mut job.out);
            }
        };
        match pool {
            Some(pool) if pool.current_num_threads() > 1 => pool.install(|| {
                use rayon::prelude::*;
                work.par_iter_mut().with_min_len(32).for_each(encode);
            }),
            _ => work.iter_mut().for_each(encode),
        }
        for job in work {
            stats.rows_sent += job.delta.len() as u64;
            let s = sessions.get_mut(&job.session).expect("taken above");
            (s.out, s.rows, s.held, s.writer, s.places) =
                (job.out, job.rows, job.held, job.writer, job.places);
        }
    }
}

/// Encode one session's delta as `Tick` frames into `out`. A deleted row is named by its key column's bytes in the
/// row's last bytes, byte-identical to the key in the row the client holds (never decoded and re-encoded, which
/// could change the integer form a module wrote).
fn encode_delta(
    deltas: &Deltas<'_>,
    delta: &Delta,
    version: u16,
    tick: Tick,
    time: u64,
    out: &mut Vec<u8>,
) {
    let mut frame = DeltaFrame {
        time,
        ..DeltaFrame::default()
    };
    for &id in &delta.deletes {
        let row = deltas.row(id);
        frame.push(row.table, Kind::Delete, row.key_bytes, tick, out);
    }
    for &id in &delta.updates {
        let row = deltas.row(id);
        frame.push(row.table, Kind::Update, row.bytes, tick, out);
    }
    for &id in &delta.patches {
        let row = deltas.row(id);
        if version >= 2 {
            frame.push(row.table, Kind::Patch, row.patch, tick, out);
        } else {
            // Version 1 knows only whole rows.
            frame.push(row.table, Kind::Update, row.bytes, tick, out);
        }
    }
    for &id in &delta.inserts {
        let row = deltas.row(id);
        frame.push(row.table, Kind::Insert, row.bytes, tick, out);
    }
    frame.flush(tick, out);
}

/// One session's share of a tick's frame encoding (its buffers taken out of its [`Session`] while encoded).
struct Job<'d> {
    session: SessionId,
    delta: &'d Delta,
    version: u16,
    out: Vec<u8>,
    rows: ViewRows,
    held: Vec<(RowId, u64)>,
    writer: TickWriter,
    places: Option<Box<Places>>,
}

/// What encoding a version-3 session's delta reads: the tick's deltas, the tables, and the move rates with the
/// session's area (centre, enter radius) if both are set.
struct Compact<'a, 'd> {
    deltas: &'a Deltas<'d>,
    tables: &'a [Option<TableDef>],
    rates: Option<(MoveRates, (locus_types::Vec2, f32))>,
    tick: Tick,
    time: u64,
}

impl Compact<'_, '_> {
    fn table(&self, id: TableId) -> Option<&TableDef> {
        self.tables.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// The first tick, this one or later, at which a move of the row with `handle` to `pos` is due.
    fn next_due(&self, handle: u32, pos: [f32; 2]) -> u64 {
        match self.rates {
            Some((rates, (center, radius))) => {
                let d2 = (pos[0] - center.x).powi(2) + (pos[1] - center.y).powi(2);
                rates.next_due(self.tick, handle, d2, radius)
            }
            None => self.tick.0,
        }
    }
}

/// A row's position, if its table has a spatial column (the interest stage decoded it already).
fn pos_in(def: &TableDef, row: &locus_interest::RowRef<'_>) -> Option<[f32; 2]> {
    def.spatial_column().map(|_| [row.pos.x, row.pos.y])
}

/// Encode one version-3 session's delta as `Tick` frames into `out` (`protocol.md` §5, "Version 3"): inserts get
/// handles, patches name rows by handle, and a row of a spatial table of which only the position changed goes as a
/// move from the position last sent to this session (`rows` keeps both), unless it is far and not due
/// ([`MoveRates`]): then it is held back (`held`) and sent at its next due tick from where it is then.
///
/// With `places` (version 4 over a connection that takes datagrams) turned on ([`Input::Link`]), what would go as a
/// move of a walking row goes as a place in the tick's datagrams instead (a row already loose goes on being placed
/// while it walks, on or off); each row placed is loose until the stream carries its position, which it does
/// (a patch of the spatial column) in the first tick after its last place in which it is still where it was placed.
fn encode_compact(
    ctx: &Compact<'_, '_>,
    delta: &Delta,
    rows: &mut ViewRows,
    held: &mut Vec<(RowId, u64)>,
    w: &mut TickWriter,
    mut places: Option<&mut Places>,
    out: &mut Vec<u8>,
) {
    let (deltas, tick, time) = (ctx.deltas, ctx.tick, ctx.time);
    rows.begin(tick.0);
    // A row that moved: its place (version 4) or its move, if it can go as one; `false`: send its position exactly.
    let mut step = |id: RowId,
                    table: TableId,
                    slot: &mut locus_protocol::compact::Slot,
                    pos: [f32; 2],
                    w: &mut TickWriter| {
        if let Some(p) = places.as_deref_mut()
            && slot.walking(tick.0)
            && (p.on || slot.is_loose())
        {
            let loose = slot.is_loose();
            let Some(q) = slot.place(pos, tick.0) else {
                return false;
            };
            if !loose {
                p.loose.push(id);
            }
            p.writer.push(table, slot.handle(), q);
            return true;
        }
        match slot.step(pos) {
            Some(m) => {
                slot.moved_at(tick.0);
                w.push(table, Change::Move(m));
                true
            }
            None => false,
        }
    };
    let flush = |w: &mut TickWriter, out: &mut Vec<u8>| {
        if w.size() > SPLIT_AT {
            w.write(tick.0, time, out);
        }
    };
    for &id in &delta.deletes {
        let row = deltas.row(id);
        rows.leave(id.index());
        w.push(row.table, Change::Delete(row.key_bytes));
        flush(w, out);
    }
    for &id in &delta.updates {
        let row = deltas.row(id);
        if let Some(pos) = ctx.table(row.table).and_then(|d| pos_in(d, &row)) {
            rows.sent(id.index(), pos);
        }
        w.push(row.table, Change::Update(row.bytes));
        flush(w, out);
    }
    for &id in &delta.patches {
        let row = deltas.row(id);
        let (Some(def), Some(slot)) = (ctx.table(row.table), rows.get_mut(id.index())) else {
            // Not a row the session was given a handle for (cannot happen: a patch is of a row in view): whole.
            w.push(row.table, Change::Update(row.bytes));
            continue;
        };
        let handle = slot.handle();
        let Some(patch) = patch_body(def, row.patch, row.patch_shape) else {
            w.push(row.table, Change::Update(row.bytes));
            continue;
        };
        if let Some(pos) = pos_in(def, &row) {
            if patch.moved_only {
                let due = ctx.next_due(handle, pos);
                if due > tick.0 {
                    slot.moved_at(tick.0);
                    let listed = slot.is_held();
                    if slot.hold() {
                        if !listed {
                            held.push((id, due));
                        }
                        continue;
                    }
                }
                if step(id, row.table, slot, pos, w) {
                    continue;
                }
            }
            if patch.has_spatial {
                // The patch carries the exact position.
                slot.sent(pos);
            } else if slot.is_held() {
                // Other columns changed, and a held-back move is owed: it goes with them.
                step(id, row.table, slot, pos, w);
            }
        }
        w.push(row.table, Change::Patch(handle, patch.pairs, patch.body));
        flush(w, out);
    }
    for &id in &delta.inserts {
        let row = deltas.row(id);
        let pos = ctx.table(row.table).and_then(|d| pos_in(d, &row));
        let handle = rows.enter(id.index(), row.table, pos);
        w.push(row.table, Change::Insert(row.bytes, handle));
        flush(w, out);
    }
    // Held-back moves not sent above (their rows did not move again, or moved but are still not due): each is
    // sent at its row's due tick, from where the row is then; rows that left the view were dropped by `leave`.
    held.retain_mut(|(id, due)| {
        if *due > tick.0 {
            return true;
        }
        let Some(slot) = rows.get_mut(id.index()).filter(|s| s.is_held()) else {
            return false;
        };
        let row = deltas.row(*id);
        let Some(pos) = ctx.table(row.table).and_then(|d| pos_in(d, &row)) else {
            return false;
        };
        *due = ctx.next_due(slot.handle(), pos);
        if *due > tick.0 {
            return true;
        }
        step(*id, row.table, slot, pos, w);
        false
    });
    if let Some(p) = places {
        // Loose rows at rest: the stream carries their position once (a patch of the spatial column), so a lost
        // place never leaves a client with a row where it no longer is. Rows that moved but were not placed (held
        // back, or over the byte budget) stay loose until placed again.
        let Places {
            writer,
            out: datagrams,
            loose,
            offsets,
            body,
            ..
        } = p;
        loose.retain(|id| {
            let Some(slot) = rows.get_mut(id.index()).filter(|s| s.is_loose()) else {
                return false;
            };
            let row = deltas.row(*id);
            let Some(pos) = ctx.table(row.table).and_then(|d| pos_in(d, &row)) else {
                return false;
            };
            if !slot.at_rest(pos, tick.0) {
                return true;
            }
            slot.sent(pos);
            match ctx.table(row.table) {
                Some(def) if spatial_patch(def, row.bytes, offsets, body) => {
                    w.push(row.table, Change::Patch(slot.handle(), 1, body));
                }
                _ => w.push(row.table, Change::Update(row.bytes)),
            }
            flush(w, out);
            false
        });
        writer.write(tick.0, time, datagrams);
    }
    w.write(tick.0, time, out);
}

/// A version-2 patch read for re-encoding with a handle.
struct PatchBody<'p> {
    /// Its (column, value) pairs.
    pairs: u32,
    /// Their bytes (after the array header and the key).
    body: &'p [u8],
    /// Whether it names the table's spatial column and no other.
    moved_only: bool,
    /// Whether it names the table's spatial column.
    has_spatial: bool,
}

/// A version-2 patch of a row of `def` as version 3 re-encodes it, from the `shape` the interest stage read once
/// for every client (`None` without one: no patch).
fn patch_body<'p>(
    def: &TableDef,
    patch: &'p [u8],
    shape: Option<locus_types::patch::Shape>,
) -> Option<PatchBody<'p>> {
    let shape = shape?;
    let spatial = def.spatial_column().map(|c| c.index());
    Some(PatchBody {
        pairs: shape.pairs,
        body: patch.get(shape.body_at as usize..)?,
        moved_only: spatial.is_some_and(|c| shape.sets_only(c)),
        has_spatial: spatial.is_some_and(|c| shape.sets(c)),
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Delete,
    Update,
    Patch,
    Insert,
}

/// A `Tick` message being filled for one session, borrowing the rows. It holds at most about [`SPLIT_AT`] bytes of
/// rows; a larger delta (a big subscription's initial rows) goes out as several frames of the same tick, each
/// complete in itself (the rows are distinct, so applying the frames one after the other is applying the whole).
#[derive(Default)]
struct DeltaFrame<'a> {
    /// The tick's timestamp (microseconds since the Unix epoch).
    time: u64,
    tables: Vec<TableDeltaRef<'a>>,
    size: usize,
}

impl<'a> DeltaFrame<'a> {
    fn push(&mut self, table: TableId, kind: Kind, bytes: &'a [u8], tick: Tick, out: &mut Vec<u8>) {
        // A client's delta spans a handful of tables: a linear search beats a map.
        let i = match self.tables.iter().position(|t| t.table == table) {
            Some(i) => i,
            None => {
                self.tables.push(TableDeltaRef {
                    table,
                    ..TableDeltaRef::default()
                });
                self.tables.len() - 1
            }
        };
        let list = match kind {
            Kind::Delete => &mut self.tables[i].deletes,
            Kind::Update => &mut self.tables[i].updates,
            Kind::Patch => &mut self.tables[i].patches,
            Kind::Insert => &mut self.tables[i].inserts,
        };
        list.push(RowRef(bytes));
        self.size += bytes.len() + 8;
        if self.size > SPLIT_AT {
            self.flush(tick, out);
        }
    }

    fn flush(&mut self, tick: Tick, out: &mut Vec<u8>) {
        if self.tables.is_empty() {
            return;
        }
        locus_protocol::encode_frame(
            &TickRef::Tick {
                tick: tick.0,
                time: self.time,
                tables: &self.tables,
            },
            out,
        );
        self.tables.clear();
        self.size = 0;
    }
}

#[cfg(test)]
mod server_failure_tests {
    use super::*;
    use locus_host::{HostConfig, Runtime};
    use locus_store::Database;
    use locus_types::ColumnType;

    /// A world whose `on_tick` reducer fails with "no luck" every tick, logging "trying" (info) the first time.
    fn failing_world() -> World {
        let def = ReducerDef {
            name: "on_tick".into(),
            kind: ReducerKind::Tick,
            params: vec![locus_types::ColumnDef::new("dt", ColumnType::F32)],
        };
        let desc = rmp_serde::to_vec_named(&def).unwrap();
        let escaped: String = desc.iter().map(|b| format!("\\{b:02x}")).collect();
        let wat = format!(
            r#"(module
              (import "locus_v1" "reducer_fail" (func $fail (param i32 i32) (result i32)))
              (import "locus_v1" "log" (func $log (param i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (global $calls (mut i32) (i32.const 0))
              (data (i32.const 0) "no luck")
              (data (i32.const 16) "trying")
              (data (i32.const 4096) "{escaped}")
              (func (export "__locus_abi_version") (result i32) i32.const 1)
              (func (export "__locus_describe_reducer_on_tick") (result i64) i64.const {packed})
              (func (export "__locus_reducer_on_tick") (param i32) (result i32)
                (if (i32.eqz (global.get $calls)) (then
                  (drop (call $log (i32.const 2) (i32.const 16) (i32.const 6)))))
                (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                (drop (call $fail (i32.const 0) (i32.const 7)))
                i32.const 1))"#,
            packed = (4096u64 << 32) | desc.len() as u64,
        );
        let wasm = wat::parse_str(&wat).unwrap();
        let mut db = Database::default();
        let instance = Runtime::new(HostConfig::default())
            .unwrap()
            .load(&wasm)
            .unwrap()
            .instantiate(&mut db)
            .unwrap();
        World::new(db, instance, InterestConfig::default(), 20, 7)
    }

    /// The world time of tick `n` at 20 Hz.
    fn at(n: u64) -> Timestamp {
        Timestamp(1_700_000_000_000_000 + n * 50_000)
    }

    #[test]
    fn a_tick_reducer_failing_every_tick_is_logged_with_repeat_counts_and_counted_every_time() {
        let mut world = failing_world();
        // A new world's failed `init`, reported by the shell before the first tick.
        let init = CallError::Failed {
            reducer: "init".into(),
            message: "no world today".into(),
        };
        world.server_reducer_failed(&init, Tick(0), at(0));
        let mut failures: HashMap<std::sync::Arc<str>, u64> = HashMap::new();
        for n in 1..=1_000 {
            let out = world.run_tick(Tick(n), at(n), 0.05, []);
            for name in out.server_failures {
                *failures.entry(name).or_default() += 1;
            }
        }
        // Every failure is counted.
        assert_eq!(failures.get("on_tick"), Some(&1_000));
        assert_eq!(failures.get("init"), Some(&1));
        let lines: Vec<&ModuleLogLine> = world.log_tail.iter().collect();
        let shown: Vec<(u64, &str, &str)> = lines
            .iter()
            .map(|l| (l.tick, l.level.as_str(), l.reducer.as_str()))
            .collect();
        // The reducer's own line comes before its failure; then one line per 10 s (200 ticks at 20 Hz).
        assert_eq!(
            shown,
            [
                (0, "error", "init"),
                (1, "info", "on_tick"),
                (1, "error", "on_tick"),
                (201, "error", "on_tick"),
                (401, "error", "on_tick"),
                (601, "error", "on_tick"),
                (801, "error", "on_tick"),
            ]
        );
        assert_eq!(
            lines[2].message,
            "reducer `on_tick` failed: no luck (further failures of `on_tick` are summed up every 10 s)"
        );
        assert_eq!(
            lines[3].message,
            "failed again 200 times after tick 1; the last time (tick 201): reducer `on_tick` failed: no luck"
        );
        assert!(
            lines[4]
                .message
                .starts_with("failed again 200 times after tick 201;")
        );
        // `init` failed once and never again: it is forgotten after an interval, with no repeat line.
        assert!(!world.unreported.contains_key("init"));
    }

    #[test]
    fn call_errors_map_to_the_wire_codes_of_the_abi_documents_table() {
        let r = || "r".to_owned();
        let samples = [
            ("NoSuchReducer", CallError::NoSuchReducer(r())),
            (
                "NotCallable",
                CallError::NotCallable {
                    reducer: r(),
                    kind: ReducerKind::Tick,
                },
            ),
            (
                "BadArguments",
                CallError::BadArguments {
                    reducer: r(),
                    message: String::new(),
                },
            ),
            (
                "Failed",
                CallError::Failed {
                    reducer: r(),
                    message: String::new(),
                },
            ),
            (
                "Panicked",
                CallError::Panicked {
                    reducer: r(),
                    message: String::new(),
                    location: None,
                    backtrace: None,
                },
            ),
            (
                "Trapped",
                CallError::Trapped {
                    reducer: r(),
                    message: String::new(),
                    backtrace: None,
                },
            ),
            (
                "Interrupted",
                CallError::Interrupted {
                    reducer: r(),
                    budget: "time",
                },
            ),
            (
                "MemoryLimit",
                CallError::MemoryLimit {
                    reducer: r(),
                    limit: 0,
                },
            ),
        ];
        // engine/docs/module-abi.md §5.4: | `Variant` | N `Code` | when |
        let doc = include_str!("../../docs/module-abi.md");
        let header = "| `CallError` | wire `ErrorCode` | when |";
        let table = &doc[doc.find(header).expect("the mapping table")..];
        let rows: Vec<(&str, String)> = table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`'), cells[2].replace('`', ""))
            })
            .collect();
        let expected: Vec<(&str, String)> = samples
            .iter()
            .map(|(name, e)| {
                let code = error_code(e);
                (*name, format!("{} {code:?}", u16::from(code)))
            })
            .collect();
        assert_eq!(rows, expected);
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::*;
    use locus_host::{HostConfig, Runtime};
    use locus_protocol::{CLOSE_REDIRECTED, FrameReader, MAX_SERVER_FRAME, PROTOCOL_VERSION};
    use locus_store::Database;
    use locus_types::{ColumnDef, ColumnType};

    /// A world whose module has one public table `thing` (`id: U64` primary key, `n: U64`), a client reducer
    /// `put(k: u64)` inserting the row `[k, k]`, and lifecycle reducers `on_connect` and `on_disconnect` that log
    /// "connected" and "disconnected" (info). Its admin identity is `[0xad; 32]`.
    fn lifecycle_world() -> World {
        let table = TableDef::builder("thing")
            .column("id", ColumnType::U64)
            .column("n", ColumnType::U64)
            .primary_key("id")
            .access(TableAccess::Public)
            .build()
            .unwrap();
        let reducer = |name: &str, kind, params| ReducerDef {
            name: name.into(),
            kind,
            params,
        };
        let described = [
            ("table", "thing", rmp_serde::to_vec_named(&table).unwrap()),
            (
                "reducer",
                "put",
                rmp_serde::to_vec_named(&reducer(
                    "put",
                    ReducerKind::Client,
                    vec![ColumnDef::new("k", ColumnType::U64)],
                ))
                .unwrap(),
            ),
            (
                "reducer",
                "on_connect",
                rmp_serde::to_vec_named(&reducer(
                    "on_connect",
                    ReducerKind::ClientConnected,
                    vec![],
                ))
                .unwrap(),
            ),
            (
                "reducer",
                "on_disconnect",
                rmp_serde::to_vec_named(&reducer(
                    "on_disconnect",
                    ReducerKind::ClientDisconnected,
                    vec![],
                ))
                .unwrap(),
            ),
        ];
        let (mut data, mut describe, mut at) = (String::new(), String::new(), 4096u64);
        for (kind, name, bytes) in described {
            let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
            data.push_str(&format!("(data (i32.const {at}) \"{escaped}\")\n"));
            describe.push_str(&format!(
                "(func (export \"__locus_describe_{kind}_{name}\") (result i64) i64.const {})\n",
                (at << 32) | bytes.len() as u64
            ));
            at += bytes.len() as u64 + 8;
        }
        let wat = format!(
            r#"(module
  (import "locus_v1" "table_id" (func $table_id (param i32 i32 i32) (result i32)))
  (import "locus_v1" "insert" (func $insert (param i32 i32 i32 i32) (result i32)))
  (import "locus_v1" "reducer_args" (func $args (param i32 i32 i32) (result i32)))
  (import "locus_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "thing")
  (data (i32.const 400) "connected")
  (data (i32.const 420) "disconnected")
  {data}
  (func (export "__locus_abi_version") (result i32) i32.const 1)
  {describe}
  (func $thing (result i32)
    (if (call $table_id (i32.const 256) (i32.const 5) (i32.const 300)) (then unreachable))
    (i32.load (i32.const 300)))
  ;; put(k): the arguments (fixarray(1), then k) at 1024, made the row [k, k] in place.
  (func (export "__locus_reducer_put") (param $len i32) (result i32) (local $k i32)
    (if (call $args (i32.const 1024) (i32.const 1024) (i32.const 308)) (then unreachable))
    (local.set $k (i32.sub (i32.load (i32.const 308)) (i32.const 1)))
    (i32.store8 (i32.const 1024) (i32.const 0x92))
    (memory.copy (i32.add (i32.const 1025) (local.get $k)) (i32.const 1025) (local.get $k))
    (i32.ne
      (call $insert (call $thing) (i32.const 1024)
        (i32.add (i32.const 1) (i32.shl (local.get $k) (i32.const 1))) (i32.const 320))
      (i32.const 0)))
  (func (export "__locus_reducer_on_connect") (param i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 400) (i32.const 9)))
    i32.const 0)
  (func (export "__locus_reducer_on_disconnect") (param i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 420) (i32.const 12)))
    i32.const 0)
)"#
        );
        let wasm = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
        let mut db = Database::default();
        let instance = Runtime::new(HostConfig::default())
            .unwrap()
            .load(&wasm)
            .unwrap()
            .instantiate(&mut db)
            .unwrap();
        let mut world = World::new(db, instance, InterestConfig::default(), 20, 7);
        world.set_admin(ADMIN);
        world
    }

    const ADMIN: Identity = Identity([0xad; 32]);
    const PLAYER: Identity = Identity([1; 32]);
    const OTHER: Identity = Identity([2; 32]);

    fn connect(session: SessionId, identity: Identity, version: u16) -> Input {
        Input::Connect {
            session,
            identity,
            token: Token(identity.0),
            version,
            datagrams: false,
            places: false,
        }
    }

    fn put(session: SessionId, request: u32, k: u8) -> Input {
        assert!(k < 0x80, "a positive fixint");
        Input::Call {
            session,
            request,
            reducer: "put".into(),
            args: vec![0x91, k],
        }
    }

    fn subscribe(session: SessionId) -> Input {
        Input::Subscribe {
            session,
            request: 1,
            table: "thing".into(),
            filter: locus_protocol::Filter::All,
        }
    }

    fn run(world: &mut World, tick: u64, inputs: Vec<Input>) -> TickOutput {
        world.run_tick(
            Tick(tick),
            Timestamp(1_700_000_000_000_000 + tick * 50_000),
            0.05,
            inputs,
        )
    }

    /// The messages of `session`'s frames in `out`.
    fn messages(out: &TickOutput, session: SessionId) -> Vec<ServerMessage> {
        let Some((_, bytes)) = out.frames.iter().find(|(s, _)| *s == session) else {
            return Vec::new();
        };
        decode_all(bytes)
    }

    fn decode_all(bytes: &[u8]) -> Vec<ServerMessage> {
        let mut reader = FrameReader::new(MAX_SERVER_FRAME);
        reader.push(bytes);
        let mut out = Vec::new();
        while let Some(payload) = reader.next_frame().unwrap() {
            out.push(locus_protocol::decode_frame(payload).unwrap());
        }
        assert_eq!(reader.buffered(), 0, "a partial frame");
        out
    }

    /// How many rows `thing` holds.
    fn things(world: &World) -> usize {
        let db = world.db();
        db.table(db.table_id("thing").unwrap()).unwrap().len()
    }

    /// How many lines `reducer` wrote to the module log.
    fn lines_of(world: &World, reducer: &str) -> usize {
        world
            .log_tail
            .iter()
            .filter(|l| l.reducer == reducer)
            .count()
    }

    /// Every session of a redirected player (not another player's, not the admin's) gets the `Redirect` after the
    /// tick's other frames (a session too old for it gets the close alone), is closed with `CLOSE_REDIRECTED`, is
    /// sent nothing and runs nothing after it, and its end runs no `client_disconnected`.
    #[test]
    fn a_redirected_session_gets_the_redirect_last_is_closed_and_runs_no_client_disconnected() {
        assert_eq!(PROTOCOL_VERSION, locus_protocol::REDIRECT_VERSION);
        let mut world = lifecycle_world();
        let to = Redirect {
            region: "b".into(),
            addr: "127.0.0.1:7879".into(),
            fingerprint: [0xab; 32],
            web: Some("http://127.0.0.1:8081/locus.json".into()),
        };
        // The player twice (a version-5 session and a version-4 one), another player, the admin.
        run(
            &mut world,
            1,
            vec![
                connect(0, PLAYER, 5),
                connect(1, PLAYER, 4),
                connect(2, OTHER, 5),
                connect(3, ADMIN, 5),
            ],
        );
        assert_eq!(
            lines_of(&world, "on_connect"),
            2,
            "the player and the other"
        );
        run(
            &mut world,
            2,
            vec![subscribe(0), subscribe(1), subscribe(2)],
        );
        // In one tick: a call of the player's, the redirect (of the admin too: ignored), a call after it.
        let out = run(
            &mut world,
            3,
            vec![
                put(0, 7, 7),
                Input::Redirect {
                    identity: PLAYER,
                    to: to.clone(),
                },
                Input::Redirect {
                    identity: ADMIN,
                    to: to.clone(),
                },
                put(0, 8, 8),
            ],
        );
        // The tick's frames first: the call's result, then the tick's delta (the row of the call before the
        // redirect; the call after it did not run).
        let first = messages(&out, 0);
        assert!(
            matches!(
                &first[..],
                [
                    ServerMessage::Result {
                        request: 7,
                        outcome: CallOutcome::Ok,
                        ..
                    },
                    ServerMessage::Tick { tables, .. }
                ] if tables.len() == 1 && tables[0].inserts.len() == 1
            ),
            "{first:?}"
        );
        assert!(
            matches!(&messages(&out, 1)[..], [ServerMessage::Tick { .. }]),
            "the version-4 session gets the tick's delta too"
        );
        assert_eq!(things(&world), 1, "put(8) did not run");
        // Then the redirect, last, and the close: the version-4 session without the frame.
        let closes: Vec<(SessionId, u32, Vec<ServerMessage>)> = out
            .closes
            .iter()
            .map(|c| (c.session, c.close_code, decode_all(&c.frame)))
            .collect();
        assert_eq!(
            closes,
            [
                (
                    0,
                    CLOSE_REDIRECTED,
                    vec![ServerMessage::Redirect(to.clone())]
                ),
                (1, CLOSE_REDIRECTED, vec![]),
            ]
        );
        assert!(out.closes[0].reason.contains("region b at 127.0.0.1:7879"));
        // Later: a change in the redirected sessions' view goes to neither of them, and their inputs are dropped.
        let out = run(
            &mut world,
            4,
            vec![put(2, 1, 9), put(0, 9, 10), subscribe(1)],
        );
        assert!(matches!(
            &messages(&out, 2)[..],
            [ServerMessage::Result { .. }, ServerMessage::Tick { .. }]
        ));
        for redirected in [0, 1] {
            assert!(
                out.frames.iter().all(|(s, _)| *s != redirected),
                "session {redirected} was sent something after its redirect"
            );
        }
        assert!(out.closes.is_empty());
        assert_eq!(things(&world), 2, "put(10) did not run");
        // The redirected sessions end, the player's last ones here: no `client_disconnected` (the player went to
        // region b, it did not leave).
        let out = run(
            &mut world,
            5,
            vec![
                Input::Disconnect { session: 0 },
                Input::Disconnect { session: 1 },
            ],
        );
        assert_eq!(out.freed, [0, 1]);
        assert_eq!(lines_of(&world, "on_disconnect"), 0);
        // The other player's end runs it; the admin's runs nothing.
        run(
            &mut world,
            6,
            vec![
                Input::Disconnect { session: 2 },
                Input::Disconnect { session: 3 },
            ],
        );
        assert_eq!(lines_of(&world, "on_disconnect"), 1);
        assert_eq!(world.session_count(), 0);
    }
}

//! The client cache: the rows the server has put in this client's view, kept current by applying server messages.
//!
//! The cache does no I/O: feed it [`ServerMessage`]s in the order they arrived ([`Cache::apply`]) and it returns
//! what changed as [`Event`]s. A `Tick` can also be applied straight from its frame's bytes ([`Cache::apply_tick`]
//! with a [`TickView`]), without a `Vec` per row: the same events and the same rows as applying the decoded
//! message. [`Client`](crate::Client) feeds it from the network that way; tests and the bevy mirror feed it
//! synthetic messages. Protocol version 4's position datagrams go to [`Cache::apply_datagram`], in the order they
//! arrived among the stream's messages.
//!
//! Terms:
//! - A table's **key** is its primary-key column's value in the row encoding: the bytes of that column inside a
//!   row, as [`codec::validate_row`] locates them. Deletes and patches on the wire carry keys, byte-identical to
//!   the key column in the row (`engine/docs/protocol.md` §2, "Keys"); the cache keys rows by them and never
//!   decodes a key.
//! - The **schema** is the list of tables of the last `Welcome`; rows of other tables are refused.
//!
//! Invariants:
//! - A `Tick`'s [`TableDelta`] is applied deletes first, then updates, then patches (protocol version 2: a row's
//!   changed columns, applied to the version held, see [`locus_types::patch`]), then inserts, per table in message
//!   order.
//! - Every row in the cache is valid for its table's schema, and is stored under its own key.
//! - A message that does not fit the cache (an update or delete of a row not in view, an insert of a row already
//!   in view, a row that does not fit its schema, an unknown table) never panics: it yields an
//!   [`Event::Inconsistent`], and the cache still converges to what the server says (an update of an unknown row
//!   inserts it, an insert of a known row replaces it). A patch that cannot be applied (to a row not in view, or
//!   not fitting it) leaves the row as it was until the server sends it whole.
//! - A **place** (protocol version 4: a row's position at a tick, in a datagram) applies exactly as
//!   `protocol.md` §5 "Applying a place" says: with `S` the latest tick applied from the stream ([`Cache::tick`]),
//!   a place of tick `t` applies only if `t ≤ S + HANDLE_REST`, its handle names a row that got that handle in a
//!   tick `≤ t` (`entered`), and the position held is of a tick `< t` (`at`). Every row with a handle keeps `at`:
//!   its insert sets it to the insert's tick (`entered`), every later stream change of the row raises it to that
//!   change's tick if higher, and a place applied sets it to the place's. So `at ≥ entered` for as long as the row
//!   has the handle, and `at < t` implies `entered ≤ t`: `entered` need not be kept. Places that do not apply, of
//!   unknown tables or handles, and malformed datagrams are dropped silently (datagrams may legally be late, early
//!   or lost; [`Cache::datagram_stats`] counts them), never [`Event::Inconsistent`].
//! - A **redirect** (the client's player moved to another region's server, `engine/docs/protocol.md` §5
//!   "Version 5: redirects") changes the view without a gap: from [`Cache::begin_redirect`] (given the new
//!   connection's `Welcome` and the request ids of the subscriptions made again there) the new connection's
//!   messages build a new view apart, while the view held stays as it was and is what every read returns. When
//!   the new view is complete ([`Cache::finish_redirect`], called by the I/O layer, or on its own: see
//!   [`Cache::begin_redirect`]) the new view replaces the old, and the events are exactly the differences between
//!   the two, tables matched by name and rows by key: [`Event::Deleted`] for a row only the old view held,
//!   [`Event::Updated`] for a row both hold with other bytes, [`Event::Inserted`] for a row only the new one
//!   holds, and none for a row both hold with the same bytes. Meanwhile the new view's own row events are not
//!   reported (its [`Event::Inconsistent`] are); answers to requests are reported as they come, but for the
//!   `Subscribed` of the subscriptions made again, which the I/O layer made, not the application.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub use locus_protocol::Welcome;
use locus_protocol::compact::{Handles, Move, Moves, dequantize};
use locus_protocol::places::{Datagram, HANDLE_REST, Place};
use locus_protocol::{
    AdminReply, CallOutcome, ErrorCode, ServerMessage, TableDelta, TickView, WireRow, WireTable,
};
use locus_types::codec::{self, RowError};
use locus_types::patch::{self, PatchError};
use locus_types::{Identity, TableDef, TableId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::RequestId;

/// The bytes of one row in the row encoding (one MessagePack array), shared between the cache and events.
pub type Row = Arc<[u8]>;

/// The bytes of a row's primary-key column (see the [module docs](self)).
pub type Key = Arc<[u8]>;

/// Something that happened to a client: a change of its view, an answer to one of its requests, or an error.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A `Welcome` was applied: the schema is set and the view starts empty.
    Connected {
        /// The client's identity.
        identity: Identity,
        /// The last durable tick when it connected.
        tick: u64,
    },
    /// A row entered the view.
    Inserted {
        /// Its table.
        table: TableId,
        /// The table's name.
        name: Arc<str>,
        /// Its key.
        key: Key,
        /// The row.
        row: Row,
    },
    /// A row in view changed.
    Updated {
        /// Its table.
        table: TableId,
        /// The table's name.
        name: Arc<str>,
        /// Its key.
        key: Key,
        /// The row before.
        old: Row,
        /// The row now.
        new: Row,
    },
    /// A row left the view (deleted, out of the area of interest, or unsubscribed).
    Deleted {
        /// Its table.
        table: TableId,
        /// The table's name.
        name: Arc<str>,
        /// Its key.
        key: Key,
        /// The row as it was last seen.
        old: Row,
    },
    /// A reducer call ended.
    CallResult {
        /// The call's request id.
        request: RequestId,
        /// The tick it ran in.
        tick: u64,
        /// How it ended.
        outcome: CallOutcome,
    },
    /// A subscription took effect (its rows come as inserts).
    Subscribed {
        /// The request id.
        request: RequestId,
        /// The table.
        table: TableId,
    },
    /// A subscription ended (its rows leave as deletes in a later tick).
    Unsubscribed {
        /// The request id.
        request: RequestId,
        /// The table.
        table: TableId,
    },
    /// The server refused something ([`ServerMessage::Error`]).
    ServerError {
        /// What went wrong.
        code: ErrorCode,
        /// For people.
        message: String,
        /// The request it answers, if any.
        request: Option<RequestId>,
        /// Whether the server closes the connection after it.
        fatal: bool,
    },
    /// The answer to an operator's command ([`ServerMessage::Admin`]).
    Admin {
        /// The command's request id.
        request: RequestId,
        /// The answer.
        reply: AdminReply,
    },
    /// A server message did not fit the cache's view (see the [module docs](self)); the cache was not corrupted.
    Inconsistent {
        /// The table concerned.
        table: TableId,
        /// What did not fit.
        error: ApplyError,
    },
    /// The connection ended (reported by [`Client::poll`](crate::Client::poll), never by the cache itself). The
    /// cache keeps its last view; [`Client::reconnect`](crate::Client::reconnect) starts a new one.
    Disconnected {
        /// Why, for people.
        reason: String,
    },
    /// The server moved this client's player to another region's server ([`ServerMessage::Redirect`]; reported
    /// by [`Client::poll`](crate::Client::poll), never by the cache itself). The identity, the subscriptions and
    /// the view carry over: the rows in view stay until the new region's view has arrived, then only the rows
    /// that differ change, as ordinary [`Event::Inserted`], [`Event::Updated`] and [`Event::Deleted`] events
    /// (see [`Cache::begin_redirect`]).
    Redirected {
        /// The new region's name.
        region: String,
        /// The new region's `/locus.json` URL, if it serves one.
        web: Option<String>,
        /// `true`: the client followed the redirect by itself (QUIC) and is connected to the new region.
        /// `false`: it cannot follow by itself (WebTransport: the new region's certificate hashes are in its
        /// `/locus.json`), the connection ends ([`Event::Disconnected`] follows), and the application fetches
        /// `web` and calls [`Client::follow_redirect`](crate::Client::follow_redirect), which keeps the view as a
        /// followed redirect does.
        followed: bool,
    },
}

impl Event {
    /// The variant's name in lower case (`"inserted"`, `"call_result"`, …): for logs and tests.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Connected { .. } => "connected",
            Event::Inserted { .. } => "inserted",
            Event::Updated { .. } => "updated",
            Event::Deleted { .. } => "deleted",
            Event::CallResult { .. } => "call_result",
            Event::Subscribed { .. } => "subscribed",
            Event::Unsubscribed { .. } => "unsubscribed",
            Event::ServerError { .. } => "server_error",
            Event::Admin { .. } => "admin",
            Event::Inconsistent { .. } => "inconsistent",
            Event::Disconnected { .. } => "disconnected",
            Event::Redirected { .. } => "redirected",
        }
    }
}

/// Why part of a server message could not be applied to the cache as it stands.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApplyError {
    /// The table is not in the schema of the last `Welcome` (or no `Welcome` came yet).
    #[error("the table is not in the schema the server announced")]
    UnknownTable,
    /// A row does not fit its table's schema; it was skipped.
    #[error("a row does not fit its table: {0}")]
    BadRow(#[from] RowError),
    /// An update of a row not in view; it was inserted.
    #[error("an update of a row not in view")]
    UpdateOfUnknownRow {
        /// The row's key.
        key: Vec<u8>,
    },
    /// A delete of a row not in view; it was ignored.
    #[error("a delete of a row not in view")]
    DeleteOfUnknownRow {
        /// The key.
        key: Vec<u8>,
    },
    /// An insert of a row already in view; it replaced the row.
    #[error("an insert of a row already in view")]
    InsertOfRowInView {
        /// The row's key.
        key: Vec<u8>,
    },
    /// A patch of a row not in view; it was ignored.
    #[error("a patch of a row not in view")]
    PatchOfUnknownRow {
        /// The row's key.
        key: Vec<u8>,
    },
    /// A patch that does not fit its table or the row held; it was ignored.
    #[error("a patch does not fit its row: {0}")]
    BadPatch(#[from] PatchError),
    /// A patch or move (protocol version 3) names a handle no row in view has; it was ignored.
    #[error("handle {handle} names no row in view")]
    UnknownHandle {
        /// The handle.
        handle: u32,
    },
    /// A move (protocol version 3) of a row whose table has no spatial column, or whose position cannot be moved
    /// by it; it was ignored.
    #[error("a move does not fit its row")]
    BadMove,
}

/// Why rows cannot be read from the cache.
#[derive(Debug, Error)]
pub enum ReadError {
    /// No table of that name is in the schema.
    #[error("no table `{table}` in the schema")]
    NoSuchTable {
        /// The name asked for.
        table: String,
    },
    /// A row does not decode as the type asked for.
    #[error("a row of `{table}` does not decode as the type asked for: {source}")]
    Decode {
        /// The table.
        table: String,
        /// The decoder's error.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// The key given cannot be encoded.
    #[error("cannot encode the key: {0}")]
    Key(#[from] rmp_serde::encode::Error),
}

/// What became of the position datagrams (protocol version 4) given to a cache since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramStats {
    /// Datagrams given ([`Cache::apply_datagram`]).
    pub datagrams: u64,
    /// Of those, malformed ones: nothing in them was applied.
    pub malformed: u64,
    /// Places that moved a row (or found it already there).
    pub applied: u64,
    /// Places dropped: too far ahead of the stream, not newer than the position held, of a row that got its
    /// handle after the place's tick, or naming no row of a table with a spatial column.
    pub dropped: u64,
}

/// A row named by a handle (protocol version 3), with the ticks version 4's rule for places reads (see the
/// [module docs](self)).
#[derive(Clone, Debug)]
struct Held {
    key: Key,
    /// The tick of the position held: the latest of its stream changes' ticks (from the insert that gave it this
    /// handle on) and the places applied to it.
    at: u64,
}

/// How far past the rows in view a handle may go before it is taken for an error rather than a reason to
/// allocate: handles are the smallest free ones, but in version 4 a freed one rests [`HANDLE_REST`] ticks first,
/// so a view whose rows come and go holds a handle per row that left in that time on top of its rows.
const HANDLE_SLACK: usize = 1 << 16;

#[derive(Debug)]
struct TableView {
    name: Arc<str>,
    def: TableDef,
    rows: BTreeMap<Key, Row>,
    /// Protocol version 3: the row each handle names (by handle).
    handles: Vec<Option<Held>>,
    /// The handle of each row that has one: the inverse of `handles`.
    handle_of: HashMap<Key, u32>,
}

impl TableView {
    fn new(name: Arc<str>, def: TableDef) -> TableView {
        TableView {
            name,
            def,
            rows: BTreeMap::new(),
            handles: Vec::new(),
            handle_of: HashMap::new(),
        }
    }

    /// The event of row `key` of this table (id `table`) changing from `old` to `new`.
    fn updated(&self, table: TableId, key: Key, old: Row, new: Row) -> Event {
        Event::Updated {
            table,
            name: self.name.clone(),
            key,
            old,
            new,
        }
    }

    /// The key of the row `handle` names.
    fn by_handle(&self, handle: u32) -> Result<&Key, ApplyError> {
        self.handles
            .get(handle as usize)
            .and_then(Option::as_ref)
            .map(|held| &held.key)
            .ok_or(ApplyError::UnknownHandle { handle })
    }

    /// Free the handle of the row with `key`, if it has one.
    fn forget_handle(&mut self, key: &[u8]) {
        if let Some(h) = self.handle_of.remove(key) {
            self.handles[h as usize] = None;
        }
    }

    /// Free every handle.
    fn forget_handles(&mut self) {
        self.handles.clear();
        self.handle_of.clear();
    }

    /// Give `handle` to the row with `key` in the `Tick` of `tick` (its position is of that tick); the handle it
    /// had, and the row the handle named, lose theirs. A handle far above the rows in view is an error, not a
    /// reason to allocate (the row is then left without one).
    fn give_handle(&mut self, handle: u32, key: Key, tick: u64) -> Result<(), ApplyError> {
        self.forget_handle(&key);
        let h = handle as usize;
        if h > self.rows.len() + HANDLE_SLACK {
            return Err(ApplyError::UnknownHandle { handle });
        }
        if self.handles.len() <= h {
            self.handles.resize(h + 1, None);
        }
        if let Some(other) = self.handles[h].take() {
            self.handle_of.remove(&other.key);
        }
        self.handle_of.insert(key.clone(), handle);
        self.handles[h] = Some(Held { key, at: tick });
        Ok(())
    }

    /// The row with `key` changed on the stream in the `Tick` of `tick`: the position held is at least of that
    /// tick.
    fn touch(&mut self, key: &[u8], tick: u64) {
        if let Some(&h) = self.handle_of.get(key)
            && let Some(held) = &mut self.handles[h as usize]
        {
            held.at = held.at.max(tick);
        }
    }

    /// Write to `out` the version-2 patch (key first) of a version-3 one (handle first).
    fn keyed_patch(&self, patch: &[u8], out: &mut Vec<u8>) -> Result<(), ApplyError> {
        let mut rest = patch;
        let len = rmp::decode::read_array_len(&mut rest).map_err(|_| PatchError::NotAPatch)?;
        let handle: u32 = rmp::decode::read_int(&mut rest).map_err(|_| PatchError::NotAPatch)?;
        let key = self.by_handle(handle)?;
        out.clear();
        rmp::encode::write_array_len(out, len).expect("Vec write");
        out.extend_from_slice(key);
        out.extend_from_slice(rest);
        Ok(())
    }

    /// The row `m` makes of the row its handle names: its key, the old row and the new one.
    fn moved(&self, m: &Move, offsets: &mut Vec<u32>) -> Result<(Key, Row, Row), ApplyError> {
        self.repositioned(m.handle, offsets, |held| m.apply(held))
    }

    /// The row that moving the row `handle` names to `to(its position)` makes: its key, the old row and the new
    /// one, the new `f32`s written in place of the old ones in the spatial column.
    fn repositioned(
        &self,
        handle: u32,
        offsets: &mut Vec<u32>,
        to: impl FnOnce([f32; 2]) -> Option<[f32; 2]>,
    ) -> Result<(Key, Row, Row), ApplyError> {
        let key = self.by_handle(handle)?;
        let old = self
            .rows
            .get(key)
            .ok_or(ApplyError::UnknownHandle { handle })?;
        let col = self
            .def
            .spatial_column()
            .ok_or(ApplyError::BadMove)?
            .index();
        codec::locate_columns(&self.def.columns, old, col + 1, offsets)
            .map_err(ApplyError::BadRow)?;
        let at = offsets[col] as usize..offsets[col + 1] as usize;
        let held = codec::read_vec2(&old[at.clone()]).ok_or(ApplyError::BadMove)?;
        let [x, y] = to([held.x, held.y]).ok_or(ApplyError::BadMove)?;
        let mut new = old.to_vec();
        // `[fixarray(2), ca x, ca y]`: the floats' bytes in place.
        new[at.start + 2..at.start + 6].copy_from_slice(&x.to_be_bytes());
        new[at.start + 7..at.start + 11].copy_from_slice(&y.to_be_bytes());
        Ok((key.clone(), old.clone(), new.into()))
    }

    /// Apply `place` of tick `t` if the rule of the [module docs](self) lets it (`S` is `stream`): the row's key,
    /// the old row and the new one, or `None` if it was dropped. A place that finds the row already there changes
    /// only `at` and gives no rows.
    fn place(
        &mut self,
        place: Place,
        t: u64,
        stream: u64,
        offsets: &mut Vec<u32>,
    ) -> Option<Option<(Key, Row, Row)>> {
        let h = place.handle as usize;
        let held = self.handles.get(h)?.as_ref()?;
        // `held.at ≥ entered` (module docs): `at < t` covers `entered ≤ t`.
        if t > stream.saturating_add(HANDLE_REST) || held.at >= t {
            return None;
        }
        let to = [dequantize(place.q[0]), dequantize(place.q[1])];
        let (key, old, new) = self
            .repositioned(place.handle, offsets, |_| Some(to))
            .ok()?;
        if let Some(held) = &mut self.handles[h] {
            held.at = t;
        }
        if new == old {
            return Some(None);
        }
        self.rows.insert(key.clone(), new.clone());
        Some(Some((key, old, new)))
    }

    /// Write to `out` the row `patch` makes of the row it names.
    fn patched(&self, pk: usize, patch: &[u8], out: &mut Vec<u8>) -> Result<(), ApplyError> {
        let key = patch::patch_key(&self.def.columns, pk, patch)?;
        let old = self
            .rows
            .get(key)
            .ok_or_else(|| ApplyError::PatchOfUnknownRow { key: key.to_vec() })?;
        patch::apply_patch(&self.def.columns, pk, old, patch, out)?;
        Ok(())
    }
}

/// The rows in a client's view, by table and key. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Cache {
    identity: Option<Identity>,
    tick: u64,
    tick_time: u64,
    tables: HashMap<TableId, TableView>,
    by_name: HashMap<Arc<str>, TableId>,
    /// Scratch for [`codec::validate_row`].
    offsets: Vec<u32>,
    datagrams: DatagramStats,
    /// A redirect in progress ([`Cache::begin_redirect`]): the new view being built.
    redirecting: Option<Box<Redirecting>>,
}

/// A redirect in progress: the new connection's view, built apart until it is complete (see
/// [`Cache::begin_redirect`]).
#[derive(Debug)]
struct Redirecting {
    /// The new view: the new connection's `Welcome` and everything since, applied as to any cache.
    view: Cache,
    /// The request ids of the subscriptions made again on the new connection that are not answered yet
    /// (`Subscribed`, or an `Error` naming the request).
    unanswered: BTreeSet<u32>,
    /// The tick of the first `Tick` after every one of them was answered: the new view is complete once that
    /// tick's frames are applied.
    first_tick: Option<u64>,
}

/// Where a message goes while a redirect is in progress.
enum Route {
    /// Into the new view.
    New,
    /// Into the view held (as when no redirect is in progress): an answer, or anything once the redirect finished.
    Held,
    /// Nowhere: the answer to a subscription the I/O layer made again.
    Swallow,
}

impl Cache {
    /// An empty cache with no schema (it learns one from a `Welcome`).
    #[must_use]
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Apply one server message; returns what it changed.
    pub fn apply(&mut self, message: &ServerMessage) -> Vec<Event> {
        let mut events = Vec::new();
        self.apply_into(message, &mut events);
        events
    }

    /// Apply one server message, appending what it changed to `events`. During a redirect it goes to the new view
    /// or the one held as the [module docs](self) say.
    pub fn apply_into(&mut self, message: &ServerMessage, events: &mut Vec<Event>) {
        match self.route(message, events) {
            Route::Held => {}
            Route::Swallow => return,
            Route::New => {
                let redirecting = self.redirecting.as_mut().expect("routed to the new view");
                let mut hidden = Vec::new();
                redirecting.view.apply_into(message, &mut hidden);
                keep_inconsistent(hidden, events);
                return;
            }
        }
        match message {
            ServerMessage::Welcome(welcome) => self.welcome_into(welcome, events),
            ServerMessage::Result {
                request,
                tick,
                outcome,
            } => events.push(Event::CallResult {
                request: RequestId(*request),
                tick: *tick,
                outcome: outcome.clone(),
            }),
            ServerMessage::Subscribed { request, table } => events.push(Event::Subscribed {
                request: RequestId(*request),
                table: *table,
            }),
            ServerMessage::Unsubscribed { request, table } => events.push(Event::Unsubscribed {
                request: RequestId(*request),
                table: *table,
            }),
            ServerMessage::Tick { tick, time, tables } => {
                self.tick_header(*tick, *time);
                for TableDelta {
                    table,
                    inserts,
                    updates,
                    deletes,
                    patches,
                    handles,
                    moves,
                } in tables
                {
                    let compact = (handles.is_some() || moves.is_some()).then(|| {
                        (
                            Handles::new(handles.as_ref().map_or(&[][..], |b| &b.0)),
                            Moves::new(moves.as_ref().map_or(&[][..], |b| &b.0)),
                        )
                    });
                    self.apply_delta(
                        *table,
                        *tick,
                        [
                            wire_rows(deletes),
                            wire_rows(updates),
                            wire_rows(patches),
                            wire_rows(inserts),
                        ],
                        compact,
                        events,
                    );
                }
            }
            ServerMessage::Admin { request, reply } => events.push(Event::Admin {
                request: RequestId(*request),
                reply: reply.clone(),
            }),
            ServerMessage::Error {
                code,
                message,
                request,
                fatal,
            } => events.push(Event::ServerError {
                code: *code,
                message: message.clone(),
                request: request.map(RequestId),
                fatal: *fatal,
            }),
            // The I/O layer follows a redirect (the Client does, reporting `Event::Redirected`); the view is kept
            // until then.
            ServerMessage::Redirect(_) => {}
        }
    }

    /// Where `message` goes while a redirect is in progress ([`Route::Held`] when none is), finishing the redirect
    /// first (its events to `events`) if the message shows the new view is complete: a `Tick` of a later tick
    /// than the first one after the answers, or any other message after that one (within a tick the server sends
    /// the answers before the `Tick` frames, so such a message is of a later tick).
    fn route(&mut self, message: &ServerMessage, events: &mut Vec<Event>) -> Route {
        let Some(r) = self.redirecting.as_mut() else {
            return Route::Held;
        };
        if let ServerMessage::Tick { tick, .. } = message {
            return self.route_tick(*tick, events);
        }
        if r.first_tick.is_some() {
            self.finish_redirect_into(events);
            return Route::Held;
        }
        match message {
            // A module published on the new server: its view starts again.
            ServerMessage::Welcome(_) => Route::New,
            ServerMessage::Subscribed { request, .. } if r.unanswered.remove(request) => {
                Route::Swallow
            }
            ServerMessage::Error {
                request: Some(request),
                ..
            } => {
                // A subscription refused by the new server is answered too; the application is told.
                r.unanswered.remove(request);
                Route::Held
            }
            _ => Route::Held,
        }
    }

    /// [`Cache::route`] for a `Tick` of `tick`.
    fn route_tick(&mut self, tick: u64, events: &mut Vec<Event>) -> Route {
        let Some(r) = self.redirecting.as_mut() else {
            return Route::Held;
        };
        if r.unanswered.is_empty() {
            match r.first_tick {
                None => r.first_tick = Some(tick),
                Some(first) if first != tick => {
                    self.finish_redirect_into(events);
                    return Route::Held;
                }
                Some(_) => {}
            }
        }
        Route::New
    }

    /// Start a redirect: the client's player moved to another region, whose server answered the new connection
    /// with `welcome`, and `resubscribed` are the request ids of the subscriptions made again there. The view held
    /// stays as it is (every read returns it) while the new connection's messages ([`Cache::apply`],
    /// [`Cache::apply_tick`], [`Cache::apply_datagram`]) build the new view apart; a redirect already in progress
    /// is dropped (its view was not complete), the view held stays.
    ///
    /// The new view is complete, and replaces the one held with only the differences as events (see the
    /// [module docs](self)), when [`Cache::finish_redirect`] is called, or on its own when, after every
    /// re-subscription was answered and a `Tick` came, a message of a later tick comes (applied to the new view
    /// afterwards, as usual). The server sends each subscription's rows in the tick that answers it, so the view
    /// is complete once that tick's frames are in; but it sends no `Tick` for a tick that changed nothing, and
    /// splits a large one over several frames, so only the I/O layer can tell when no more are coming: it calls
    /// [`Cache::finish_redirect`] once the answers are in ([`Cache::redirect_answered`]) and nothing has arrived
    /// for a while (the Client: two tick periods).
    pub fn begin_redirect(
        &mut self,
        welcome: &Welcome,
        resubscribed: impl IntoIterator<Item = RequestId>,
    ) {
        let mut view = Cache::new();
        view.welcome_into(welcome, &mut Vec::new());
        self.redirecting = Some(Box::new(Redirecting {
            view,
            unanswered: resubscribed.into_iter().map(|r| r.0).collect(),
            first_tick: None,
        }));
    }

    /// Whether a redirect is in progress ([`Cache::begin_redirect`]).
    #[must_use]
    pub fn is_redirecting(&self) -> bool {
        self.redirecting.is_some()
    }

    /// Whether a redirect is in progress and every subscription made again was answered: the new view is complete
    /// once the frames of the answers' tick (if any) are applied.
    #[must_use]
    pub fn redirect_answered(&self) -> bool {
        self.redirecting
            .as_ref()
            .is_some_and(|r| r.unanswered.is_empty())
    }

    /// Finish the redirect in progress now: the new view replaces the one held (schema, rows, handles, tick), and
    /// the events are the differences between them (see the [module docs](self)). Nothing without a redirect.
    pub fn finish_redirect(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.finish_redirect_into(&mut events);
        events
    }

    /// [`Cache::finish_redirect`], appending the events to `events`: deletes, then updates, then inserts, each in
    /// table-id and key order.
    pub fn finish_redirect_into(&mut self, events: &mut Vec<Event>) {
        let Some(redirecting) = self.redirecting.take() else {
            return;
        };
        let mut new = redirecting.view;
        let (mut deleted, mut updated, mut inserted) = (Vec::new(), Vec::new(), Vec::new());
        let mut old_ids: Vec<TableId> = self.tables.keys().copied().collect();
        old_ids.sort_unstable();
        for id in &old_ids {
            let old = &self.tables[id];
            let counterpart = new
                .by_name
                .get(&old.name)
                .and_then(|new_id| Some((*new_id, new.tables.get(new_id)?)));
            for (key, row) in &old.rows {
                match counterpart
                    .and_then(|(new_id, view)| Some((new_id, view, view.rows.get_key_value(key)?)))
                {
                    Some((_, _, (_, now))) if **now == **row => {}
                    Some((new_id, view, (key, now))) => {
                        updated.push(view.updated(new_id, key.clone(), row.clone(), now.clone()));
                    }
                    None => deleted.push(Event::Deleted {
                        table: *id,
                        name: old.name.clone(),
                        key: key.clone(),
                        old: row.clone(),
                    }),
                }
            }
        }
        let mut new_ids: Vec<TableId> = new.tables.keys().copied().collect();
        new_ids.sort_unstable();
        for id in new_ids {
            let view = &new.tables[&id];
            let before = self.view(&view.name);
            for (key, row) in &view.rows {
                if before.is_none_or(|old| !old.rows.contains_key(key)) {
                    inserted.push(Event::Inserted {
                        table: id,
                        name: view.name.clone(),
                        key: key.clone(),
                        row: row.clone(),
                    });
                }
            }
        }
        events.extend(deleted);
        events.extend(updated);
        events.extend(inserted);
        let seen = self.datagrams;
        new.datagrams = DatagramStats {
            datagrams: seen.datagrams + new.datagrams.datagrams,
            malformed: seen.malformed + new.datagrams.malformed,
            applied: seen.applied + new.datagrams.applied,
            dropped: seen.dropped + new.datagrams.dropped,
        };
        *self = new;
    }

    /// Drop the redirect in progress, if any, without finishing it: the view held stays (e.g. the new connection
    /// ended before its view was complete).
    pub fn cancel_redirect(&mut self) {
        self.redirecting = None;
    }

    /// Apply a `Tick` read in place from its frame ([`TickView::parse`]); returns what it changed: the same events,
    /// and the same rows afterwards, as [`Cache::apply`] of the decoded [`ServerMessage::Tick`].
    pub fn apply_tick(&mut self, tick: &TickView<'_>) -> Vec<Event> {
        let mut events = Vec::new();
        self.apply_tick_into(tick, &mut events);
        events
    }

    /// [`Cache::apply_tick`], appending what it changed to `events`.
    pub fn apply_tick_into(&mut self, tick: &TickView<'_>, events: &mut Vec<Event>) {
        if let Route::New = self.route_tick(tick.tick(), events) {
            let redirecting = self.redirecting.as_mut().expect("routed to the new view");
            let mut hidden = Vec::new();
            redirecting.view.apply_tick_into(tick, &mut hidden);
            keep_inconsistent(hidden, events);
            return;
        }
        self.tick_header(tick.tick(), tick.time());
        for delta in tick.tables() {
            let compact = delta.is_compact().then(|| (delta.handles(), delta.moves()));
            self.apply_delta(
                delta.table(),
                tick.tick(),
                [
                    delta.deletes(),
                    delta.updates(),
                    delta.patches(),
                    delta.inserts(),
                ],
                compact,
                events,
            );
        }
    }

    /// Apply a position datagram (protocol version 4, [`locus_protocol::places`]): each place the rule of the
    /// [module docs](self) lets through moves its row, as a version-3 move does, with an [`Event::Updated`]; the
    /// rest are dropped silently. A malformed datagram changes nothing. Returns what it changed.
    pub fn apply_datagram(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        self.apply_datagram_into(bytes, &mut events);
        events
    }

    /// [`Cache::apply_datagram`], appending what it changed to `events`.
    pub fn apply_datagram_into(&mut self, bytes: &[u8], events: &mut Vec<Event>) {
        match Datagram::parse(bytes) {
            Ok(datagram) => self.apply_places_into(&datagram, events),
            Err(e) => {
                self.datagrams.datagrams += 1;
                self.datagrams.malformed += 1;
                tracing::debug!("dropped a position datagram: {e}");
            }
        }
    }

    /// [`Cache::apply_datagram`] of a datagram already parsed. During a redirect it moves rows of the new view
    /// (whose handles it names), silently.
    pub fn apply_places_into(&mut self, datagram: &Datagram<'_>, events: &mut Vec<Event>) {
        if let Some(redirecting) = self.redirecting.as_mut() {
            redirecting
                .view
                .apply_places_into(datagram, &mut Vec::new());
            return;
        }
        self.datagrams.datagrams += 1;
        for (table, places) in datagram.sections() {
            let Some(view) = self.tables.get_mut(&table) else {
                self.datagrams.dropped += places.count() as u64;
                continue;
            };
            for place in places {
                match view.place(place, datagram.tick, self.tick, &mut self.offsets) {
                    Some(moved) => {
                        self.datagrams.applied += 1;
                        if let Some((key, old, new)) = moved {
                            events.push(view.updated(table, key, old, new));
                        }
                    }
                    None => self.datagrams.dropped += 1,
                }
            }
        }
    }

    /// What became of the position datagrams given to this cache since it was made.
    #[must_use]
    pub fn datagram_stats(&self) -> DatagramStats {
        self.datagrams
    }

    /// Note a `Tick`'s number and time (ticks arrive in order; a tick split over frames repeats its number).
    fn tick_header(&mut self, tick: u64, time: u64) {
        if tick >= self.tick {
            self.tick = tick;
            self.tick_time = time;
        }
    }

    /// Start a new view from a `Welcome`: every row in view leaves (as [`Event::Deleted`]), then the schema and
    /// identity are replaced and [`Event::Connected`] follows. A redirect in progress is dropped (this is a new
    /// connection's view, started afresh).
    pub fn apply_welcome(&mut self, welcome: &Welcome) -> Vec<Event> {
        self.redirecting = None;
        let mut events = Vec::new();
        self.welcome_into(welcome, &mut events);
        events
    }

    fn welcome_into(&mut self, welcome: &Welcome, events: &mut Vec<Event>) {
        events.extend(self.clear());
        self.tables.clear();
        self.by_name.clear();
        for WireTable { id, def } in &welcome.tables {
            let name: Arc<str> = def.name.as_str().into();
            self.by_name.insert(name.clone(), *id);
            self.tables.insert(*id, TableView::new(name, def.clone()));
        }
        self.identity = Some(welcome.identity);
        self.tick = welcome.tick;
        events.push(Event::Connected {
            identity: welcome.identity,
            tick: welcome.tick,
        });
    }

    /// Empty the view, keeping the schema; returns an [`Event::Deleted`] per row that was in it.
    pub fn clear(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut ids: Vec<TableId> = self.tables.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let view = self.tables.get_mut(&id).expect("listed above");
            view.forget_handles();
            for (key, old) in std::mem::take(&mut view.rows) {
                events.push(Event::Deleted {
                    table: id,
                    name: view.name.clone(),
                    key,
                    old,
                });
            }
        }
        events
    }

    /// Apply one table's changes, given as the bytes of each row, key and patch (from a [`TableDelta`] or a
    /// [`locus_protocol::TableDeltaView`]) — deletes, updates, patches, inserts — and, for a version-3 delta, its
    /// handles and moves: deletes, then updates, then patches, then moves, then inserts. `tick` is the `Tick`'s.
    fn apply_delta<'r, I: Iterator<Item = &'r [u8]>>(
        &mut self,
        table: TableId,
        tick: u64,
        [deletes, updates, patches, inserts]: [I; 4],
        compact: Option<(Handles<'r>, Moves<'r>)>,
        events: &mut Vec<Event>,
    ) {
        let Some(view) = self.tables.get_mut(&table) else {
            events.push(Event::Inconsistent {
                table,
                error: ApplyError::UnknownTable,
            });
            return;
        };
        let pk = view.def.primary_key.index();
        let is_compact = compact.is_some();
        let (mut handles, moves) = compact.unzip();
        for key in deletes {
            if is_compact {
                view.forget_handle(key);
            }
            match view.rows.remove_entry(key) {
                Some((key, old)) => events.push(Event::Deleted {
                    table,
                    name: view.name.clone(),
                    key,
                    old,
                }),
                None => events.push(Event::Inconsistent {
                    table,
                    error: ApplyError::DeleteOfUnknownRow { key: key.to_vec() },
                }),
            }
        }
        let (mut patched, mut keyed) = (Vec::new(), Vec::new());
        for (rows, is_patch, is_update) in [
            (updates, false, true),
            (patches, true, true),
            (inserts, false, false),
        ] {
            if !is_update {
                // Moves come after patches, before inserts.
                for m in moves.clone().into_iter().flatten() {
                    // Version 4: a move steps from the position the stream last gave; a place of a later tick
                    // already held is newer, and the move is skipped (protocol.md, "Applying a place").
                    let newer = view
                        .handles
                        .get(m.handle as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(|held| held.at > tick);
                    if newer {
                        continue;
                    }
                    match view.moved(&m, &mut self.offsets) {
                        Ok((key, old, new)) => {
                            view.rows.insert(key.clone(), new.clone());
                            view.touch(&key, tick);
                            events.push(view.updated(table, key, old, new));
                        }
                        Err(error) => events.push(Event::Inconsistent { table, error }),
                    }
                }
            }
            for row in rows {
                let handle = if is_update {
                    None
                } else {
                    handles.as_mut().and_then(Iterator::next)
                };
                let bytes: &[u8] = if is_patch {
                    let patch = if is_compact {
                        if let Err(error) = view.keyed_patch(row, &mut keyed) {
                            events.push(Event::Inconsistent { table, error });
                            continue;
                        }
                        &keyed[..]
                    } else {
                        row
                    };
                    if let Err(error) = view.patched(pk, patch, &mut patched) {
                        events.push(Event::Inconsistent { table, error });
                        continue;
                    }
                    &patched
                } else {
                    row
                };
                let key = match codec::validate_row(&view.def.columns, bytes, &mut self.offsets) {
                    Ok(()) => &bytes[self.offsets[pk] as usize..self.offsets[pk + 1] as usize],
                    Err(e) => {
                        events.push(Event::Inconsistent {
                            table,
                            error: ApplyError::BadRow(e),
                        });
                        continue;
                    }
                };
                let new: Row = bytes.into();
                let name = view.name.clone();
                match view.rows.get_mut(key) {
                    Some(slot) => {
                        if !is_update {
                            events.push(Event::Inconsistent {
                                table,
                                error: ApplyError::InsertOfRowInView { key: key.to_vec() },
                            });
                        }
                        let old = std::mem::replace(slot, new.clone());
                        let key = view
                            .rows
                            .get_key_value(key)
                            .map(|(k, _)| k.clone())
                            .expect("just replaced");
                        events.push(Event::Updated {
                            table,
                            name,
                            key,
                            old,
                            new,
                        });
                    }
                    None => {
                        if is_update {
                            events.push(Event::Inconsistent {
                                table,
                                error: ApplyError::UpdateOfUnknownRow { key: key.to_vec() },
                            });
                        }
                        let key: Key = key.into();
                        view.rows.insert(key.clone(), new.clone());
                        events.push(Event::Inserted {
                            table,
                            name,
                            key,
                            row: new,
                        });
                    }
                }
                match handle {
                    Some(handle) => {
                        let key = view
                            .rows
                            .get_key_value(key)
                            .map(|(k, _)| k.clone())
                            .expect("just stored");
                        if let Err(error) = view.give_handle(handle, key, tick) {
                            events.push(Event::Inconsistent { table, error });
                        }
                    }
                    None => view.touch(key, tick),
                }
            }
        }
    }

    /// The client's identity, once a `Welcome` was applied.
    #[must_use]
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// The latest tick applied (the `Welcome`'s tick before any `Tick`).
    #[must_use]
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The timestamp of the latest `Tick` applied (microseconds since the Unix epoch; 0 before any).
    #[must_use]
    pub fn tick_time(&self) -> u64 {
        self.tick_time
    }

    /// The id of the table called `name`.
    #[must_use]
    pub fn table_id(&self, name: &str) -> Option<TableId> {
        self.by_name.get(name).copied()
    }

    /// The name of table `id`.
    #[must_use]
    pub fn table_name(&self, id: TableId) -> Option<&str> {
        self.tables.get(&id).map(|v| &*v.name)
    }

    /// The definition of the table called `name`.
    #[must_use]
    pub fn table_def(&self, name: &str) -> Option<&TableDef> {
        self.view(name).map(|v| &v.def)
    }

    /// How many rows of table `name` are in view (0 for a table not in the schema).
    #[must_use]
    pub fn len(&self, name: &str) -> usize {
        self.view(name).map_or(0, |v| v.rows.len())
    }

    /// The row of table `name` whose key is `key` (see [`Cache::key`] to encode one).
    #[must_use]
    pub fn get_raw(&self, name: &str, key: &[u8]) -> Option<&[u8]> {
        self.view(name)?.rows.get(key).map(|r| &**r)
    }

    /// The rows of table `name` in view, with their keys, in key-byte order.
    pub fn iter_raw(&self, name: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.view(name)
            .into_iter()
            .flat_map(|v| v.rows.iter().map(|(k, r)| (&**k, &**r)))
    }

    /// Every row of table `name` in view, decoded as `T` (the table's row struct), in key-byte order.
    ///
    /// # Errors
    ///
    /// [`ReadError::NoSuchTable`], or [`ReadError::Decode`] if a row does not decode as `T`.
    pub fn rows<T: DeserializeOwned>(&self, name: &str) -> Result<Vec<T>, ReadError> {
        let view = self.view(name).ok_or_else(|| ReadError::NoSuchTable {
            table: name.to_owned(),
        })?;
        view.rows
            .values()
            .map(|row| decode_row(name, row))
            .collect()
    }

    /// The row of table `name` whose primary key is `key`, decoded as `T`.
    ///
    /// # Errors
    ///
    /// As [`Cache::rows`], or [`ReadError::Key`] if `key` cannot be encoded.
    pub fn get<T: DeserializeOwned, K: Serialize + ?Sized>(
        &self,
        name: &str,
        key: &K,
    ) -> Result<Option<T>, ReadError> {
        let view = self.view(name).ok_or_else(|| ReadError::NoSuchTable {
            table: name.to_owned(),
        })?;
        let key = Cache::key(key)?;
        view.rows
            .get(key.as_slice())
            .map(|row| decode_row(name, row))
            .transpose()
    }

    /// Encode a primary-key value as a key (as a row column of its type is encoded), in the shortest form.
    ///
    /// Keys are matched by bytes (the server sends the key column's bytes as the module wrote them), so this finds
    /// rows whose module writes keys in the shortest form, as every Locus SDK module does; for a module that writes
    /// another form (e.g. a `u64` always as `cf` and 8 bytes), look the row up with [`Cache::iter_raw`].
    ///
    /// # Errors
    ///
    /// The encoder's error (only for values serde cannot encode, e.g. maps with non-string keys).
    pub fn key<K: Serialize + ?Sized>(key: &K) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec(key)
    }

    fn view(&self, name: &str) -> Option<&TableView> {
        self.tables.get(self.by_name.get(name)?)
    }
}

/// Append to `events` the [`Event::Inconsistent`] among `hidden` (the new view's events during a redirect, whose
/// row events are not reported).
fn keep_inconsistent(hidden: Vec<Event>, events: &mut Vec<Event>) {
    events.extend(
        hidden
            .into_iter()
            .filter(|e| matches!(e, Event::Inconsistent { .. })),
    );
}

/// The bytes of each row of an owned list, as [`Cache::apply_delta`] takes them.
fn wire_rows(rows: &[WireRow]) -> impl Iterator<Item = &[u8]> {
    rows.iter().map(|r| r.0.as_slice())
}

/// Decode a row as the row struct `T`.
pub(crate) fn decode_row<T: DeserializeOwned>(table: &str, row: &[u8]) -> Result<T, ReadError> {
    rmp_serde::from_slice(row).map_err(|source| ReadError::Decode {
        table: table.to_owned(),
        source,
    })
}

// Native only: the property tests use proptest, which does not build for the browser.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use locus_protocol::Token;
    use locus_types::ColumnType;
    use serde::{Deserialize, Serialize};

    use super::*;

    /// A row of the test table `player` (pk `id`).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Player {
        pub(crate) id: u64,
        pub(crate) name: String,
        pub(crate) hp: i32,
    }

    pub(crate) const PLAYER: TableId = TableId(3);

    pub(crate) fn welcome() -> ServerMessage {
        let player = TableDef::builder("player")
            .column("id", ColumnType::U64)
            .column("name", ColumnType::String)
            .column("hp", ColumnType::I32)
            .primary_key("id")
            .build()
            .unwrap();
        ServerMessage::Welcome(Welcome {
            version: 1,
            identity: Identity([9; 32]),
            token: Token([1; 32]),
            tick_rate: 20,
            tick: 100,
            tables: vec![WireTable {
                id: PLAYER,
                def: player,
            }],
            reducers: vec![],
        })
    }

    pub(crate) fn player(id: u64, name: &str, hp: i32) -> WireRow {
        WireRow(
            rmp_serde::to_vec(&Player {
                id,
                name: name.into(),
                hp,
            })
            .unwrap(),
        )
    }

    pub(crate) fn key(id: u64) -> WireRow {
        WireRow(Cache::key(&id).unwrap())
    }

    pub(crate) fn tick(
        tick: u64,
        inserts: Vec<WireRow>,
        updates: Vec<WireRow>,
        deletes: Vec<WireRow>,
    ) -> ServerMessage {
        ServerMessage::Tick {
            tick,
            time: tick * 50_000,
            tables: vec![TableDelta {
                table: PLAYER,
                inserts,
                updates,
                deletes,
                patches: vec![],
                handles: None,
                moves: None,
            }],
        }
    }

    #[test]
    fn patches_change_the_held_row_and_bad_ones_are_reported() {
        let mut cache = Cache::new();
        cache.apply(&welcome());
        cache.apply(&tick(
            101,
            vec![player(1, "a name long enough", 10)],
            vec![],
            vec![],
        ));
        let def = cache.table_def("player").unwrap().clone();
        let mut p = Vec::new();
        assert!(patch::make_patch(
            &def.columns,
            0,
            &player(1, "a name long enough", 10).0,
            &player(1, "a name long enough", 7).0,
            &mut patch::Scratch::default(),
            &mut p,
        ));
        let mut message = tick(102, vec![], vec![], vec![]);
        let ServerMessage::Tick { tables, .. } = &mut message else {
            unreachable!()
        };
        tables[0].patches = vec![
            WireRow(p.clone()),
            // Of a row not in view: key 2.
            WireRow([&[p[0], 0x02], &p[2..]].concat()),
            // A string where `hp` (an i32) is.
            WireRow(vec![0x93, 0x01, 0x02, 0xa1, b'x']),
        ];
        let events = cache.apply(&message);
        assert_eq!(names(&cache), [(1, "a name long enough".into(), 7)]);
        assert!(matches!(&events[0], Event::Updated { old, new, .. }
            if **old == *player(1, "a name long enough", 10).0 && **new == *player(1, "a name long enough", 7).0));
        assert!(matches!(
            &events[1],
            Event::Inconsistent { error: ApplyError::PatchOfUnknownRow { key }, .. } if key == &[0x02]
        ));
        assert!(matches!(
            &events[2],
            Event::Inconsistent {
                error: ApplyError::BadPatch(PatchError::BadValue(_)),
                ..
            }
        ));
        assert_eq!(events.len(), 3);
    }

    fn names(cache: &Cache) -> Vec<(u64, String, i32)> {
        cache
            .rows::<Player>("player")
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.name, p.hp))
            .collect()
    }

    #[test]
    fn ticks_insert_update_and_delete_rows() {
        let mut cache = Cache::new();
        let events = cache.apply(&welcome());
        assert_eq!(
            events,
            [Event::Connected {
                identity: Identity([9; 32]),
                tick: 100
            }]
        );
        assert_eq!(cache.identity(), Some(Identity([9; 32])));
        assert_eq!(cache.table_id("player"), Some(PLAYER));
        assert_eq!(cache.table_name(PLAYER), Some("player"));

        let events = cache.apply(&tick(
            101,
            vec![player(1, "ann", 10), player(2, "bob", 20)],
            vec![],
            vec![],
        ));
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[0], Event::Inserted { table: PLAYER, name, key, row }
                if &**name == "player" && **key == key_bytes(1) && **row == player(1, "ann", 10).0)
        );
        assert_eq!(cache.len("player"), 2);
        assert_eq!(cache.tick(), 101);
        assert_eq!(
            cache.get::<Player, _>("player", &2u64).unwrap(),
            Some(Player {
                id: 2,
                name: "bob".into(),
                hp: 20
            })
        );

        let events = cache.apply(&tick(102, vec![], vec![player(1, "ann", 7)], vec![key(2)]));
        assert!(
            matches!(&events[..], [Event::Deleted { old, .. }, Event::Updated { old: before, new, .. }]
                if **old == player(2, "bob", 20).0
                    && **before == player(1, "ann", 10).0
                    && **new == player(1, "ann", 7).0)
        );
        assert_eq!(names(&cache), [(1, "ann".into(), 7)]);
        assert_eq!(cache.get_raw("player", &key_bytes(2)), None);
        assert_eq!(
            cache.get_raw("player", &key_bytes(1)),
            Some(&player(1, "ann", 7).0[..])
        );
        assert_eq!(cache.len("nope"), 0);
        assert!(matches!(
            cache.rows::<Player>("nope"),
            Err(ReadError::NoSuchTable { .. })
        ));
    }

    fn key_bytes(id: u64) -> Vec<u8> {
        key(id).0
    }

    #[test]
    fn within_a_tick_deletes_come_before_updates_before_inserts() {
        let mut cache = Cache::new();
        cache.apply(&welcome());
        cache.apply(&tick(101, vec![player(1, "ann", 10)], vec![], vec![]));
        // Row 1 leaves and re-enters in the same tick (e.g. it left one subscription and entered the area); row 2
        // is inserted and updated. Applied in wire order (inserts, updates, deletes) either would fail.
        let events = cache.apply(&tick(
            102,
            vec![player(1, "ann", 11), player(2, "bob", 20)],
            vec![player(1, "ann", 12)],
            vec![key(1)],
        ));
        let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
        // delete 1; update 1 (not in view any more: inconsistent, inserted); insert 1 (in view now:
        // inconsistent, replaces); insert 2.
        assert_eq!(
            kinds,
            [
                "deleted",
                "inconsistent",
                "inserted",
                "inconsistent",
                "updated",
                "inserted"
            ]
        );
        assert_eq!(
            names(&cache),
            [(1, "ann".into(), 11), (2, "bob".into(), 20)]
        );

        // The well-formed case: a row deleted and re-inserted in one tick ends up present, with the inserted
        // value; an update and an insert of different rows both apply.
        let events = cache.apply(&tick(
            103,
            vec![player(1, "ann", 1), player(3, "cat", 30)],
            vec![player(2, "bob", 21)],
            vec![key(1)],
        ));
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Inconsistent { .. }))
        );
        assert_eq!(
            names(&cache),
            [
                (1, "ann".into(), 1),
                (2, "bob".into(), 21),
                (3, "cat".into(), 30)
            ]
        );
    }

    #[test]
    fn updates_and_deletes_of_unknown_rows_are_error_events_not_panics() {
        let mut cache = Cache::new();
        // Before any Welcome: the table is unknown.
        let events = cache.apply(&tick(1, vec![player(1, "ann", 1)], vec![], vec![]));
        assert_eq!(
            events,
            [Event::Inconsistent {
                table: PLAYER,
                error: ApplyError::UnknownTable
            }]
        );
        cache.apply(&welcome());
        let events = cache.apply(&tick(101, vec![], vec![player(5, "eve", 1)], vec![key(6)]));
        assert_eq!(
            events[0],
            Event::Inconsistent {
                table: PLAYER,
                error: ApplyError::DeleteOfUnknownRow { key: key_bytes(6) }
            }
        );
        assert_eq!(
            events[1],
            Event::Inconsistent {
                table: PLAYER,
                error: ApplyError::UpdateOfUnknownRow { key: key_bytes(5) }
            }
        );
        assert!(matches!(events[2], Event::Inserted { .. }));
        assert_eq!(events.len(), 3);
        assert_eq!(names(&cache), [(5, "eve".into(), 1)]);

        // A row that does not fit the schema is skipped.
        let bad = WireRow(rmp_serde::to_vec(&(1u64, "x")).unwrap());
        let events = cache.apply(&tick(102, vec![bad, WireRow(vec![0xc1])], vec![], vec![]));
        assert!(matches!(
            &events[..],
            [
                Event::Inconsistent {
                    error: ApplyError::BadRow(RowError::WrongColumnCount { .. }),
                    ..
                },
                Event::Inconsistent {
                    error: ApplyError::BadRow(RowError::NotAnArray),
                    ..
                }
            ]
        ));
        assert_eq!(cache.len("player"), 1);
    }

    /// Version 3: inserts give handles, patches name rows by handle, a delete frees the handle for the next
    /// insert; a handle naming no row, and a move of a row without a spatial column, are error events.
    #[test]
    fn version_3_handles_name_rows_and_bad_ones_are_error_events() {
        let mut cache = Cache::new();
        cache.apply(&welcome());
        let v3 = |inserts: Vec<WireRow>, deletes, patches, handles: Vec<u8>, moves: Vec<u8>| {
            ServerMessage::Tick {
                tick: 101,
                time: 0,
                tables: vec![TableDelta {
                    table: PLAYER,
                    inserts,
                    updates: vec![],
                    deletes,
                    patches,
                    handles: Some(WireRow(handles)),
                    moves: Some(WireRow(moves)),
                }],
            }
        };
        let events = cache.apply(&v3(
            vec![player(1, "ann", 1), player(2, "bob", 2)],
            vec![],
            vec![],
            vec![0, 1],
            vec![],
        ));
        assert_eq!(events.len(), 2);
        // Handle 1 (bob)'s column 2 (hp) is now 20; then bob leaves and cat gets handle 1.
        let events = cache.apply(&v3(
            vec![],
            vec![],
            vec![WireRow(vec![0x93, 0x01, 0x02, 0x14])],
            vec![],
            vec![],
        ));
        assert!(matches!(events[..], [Event::Updated { .. }]), "{events:?}");
        assert_eq!(names(&cache), [(1, "ann".into(), 1), (2, "bob".into(), 20)]);
        cache.apply(&v3(
            vec![player(3, "cat", 3)],
            vec![key(2)],
            vec![],
            vec![1],
            vec![],
        ));
        cache.apply(&v3(
            vec![],
            vec![],
            vec![WireRow(vec![0x93, 0x01, 0x02, 0x1e])],
            vec![],
            vec![],
        ));
        assert_eq!(names(&cache), [(1, "ann".into(), 1), (3, "cat".into(), 30)]);
        // Handle 5 names nothing; the table has no spatial column to move.
        let events = cache.apply(&v3(
            vec![],
            vec![],
            vec![WireRow(vec![0x93, 0x05, 0x02, 0x01])],
            vec![],
            vec![0x00, 0x02, 0x02],
        ));
        assert_eq!(
            events,
            [
                Event::Inconsistent {
                    table: PLAYER,
                    error: ApplyError::UnknownHandle { handle: 5 }
                },
                Event::Inconsistent {
                    table: PLAYER,
                    error: ApplyError::BadMove
                }
            ]
        );
        assert_eq!(names(&cache), [(1, "ann".into(), 1), (3, "cat".into(), 30)]);
    }

    #[test]
    fn unsubscribed_rows_are_deleted_by_the_following_tick() {
        let mut cache = Cache::new();
        cache.apply(&welcome());
        let events = cache.apply(&ServerMessage::Subscribed {
            request: 4,
            table: PLAYER,
        });
        assert_eq!(
            events,
            [Event::Subscribed {
                request: RequestId(4),
                table: PLAYER
            }]
        );
        cache.apply(&tick(
            101,
            vec![player(1, "ann", 1), player(2, "bob", 2)],
            vec![],
            vec![],
        ));
        let events = cache.apply(&ServerMessage::Unsubscribed {
            request: 5,
            table: PLAYER,
        });
        assert_eq!(
            events,
            [Event::Unsubscribed {
                request: RequestId(5),
                table: PLAYER
            }]
        );
        // The server decides what leaves the view (rows may stay visible through the area of interest).
        assert_eq!(cache.len("player"), 2);
        let events = cache.apply(&tick(102, vec![], vec![], vec![key(1), key(2)]));
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| matches!(e, Event::Deleted { table: PLAYER, .. }))
        );
        assert_eq!(cache.len("player"), 0);
    }

    #[test]
    fn a_new_welcome_empties_the_view_with_delete_events() {
        let mut cache = Cache::new();
        cache.apply(&welcome());
        cache.apply(&tick(101, vec![player(1, "ann", 1)], vec![], vec![]));
        let events = cache.apply(&welcome());
        assert!(
            matches!(&events[..], [Event::Deleted { key, .. }, Event::Connected { .. }] if **key == key_bytes(1))
        );
        assert_eq!(cache.len("player"), 0);
        assert_eq!(cache.tick(), 100);
    }

    /// The spatial test table `mob` (pk `id`, spatial `pos`).
    const MOB: TableId = TableId(4);

    /// A version-4 `Welcome` at tick 100 with `player` (no spatial column) and `mob`.
    fn welcome_v4() -> ServerMessage {
        let ServerMessage::Welcome(mut w) = welcome() else {
            unreachable!()
        };
        let mob = TableDef::builder("mob")
            .column("id", ColumnType::U64)
            .column("pos", ColumnType::Vec2)
            .column("hp", ColumnType::I32)
            .primary_key("id")
            .index("pos", locus_types::IndexKind::Spatial)
            .build()
            .unwrap();
        w.version = 4;
        w.tables.push(WireTable { id: MOB, def: mob });
        ServerMessage::Welcome(w)
    }

    fn mob(id: u64, pos: [f32; 2], hp: i32) -> WireRow {
        WireRow(rmp_serde::to_vec(&(id, pos, hp)).unwrap())
    }

    /// A version-3/4 `Tick` of one table's delta.
    fn v3_tick(tick: u64, delta: TableDelta) -> ServerMessage {
        ServerMessage::Tick {
            tick,
            time: tick * 50_000,
            tables: vec![delta],
        }
    }

    /// An empty version-3/4 delta of `table` (no handles, no moves).
    fn v3(table: TableId) -> TableDelta {
        TableDelta {
            table,
            inserts: vec![],
            updates: vec![],
            deletes: vec![],
            patches: vec![],
            handles: Some(WireRow(vec![])),
            moves: Some(WireRow(vec![])),
        }
    }

    /// A `Tick` in which mobs enter the view, with the given handles.
    fn mobs_enter(tick: u64, mobs: Vec<WireRow>, handles: &[u8]) -> ServerMessage {
        v3_tick(
            tick,
            TableDelta {
                inserts: mobs,
                handles: Some(WireRow(handles.to_vec())),
                ..v3(MOB)
            },
        )
    }

    /// One position datagram of `tick` holding `places` (table, handle, centimetres).
    fn datagram(tick: u64, places: &[(TableId, u32, [i32; 2])]) -> Vec<u8> {
        let mut w = locus_protocol::places::PlacesWriter::default();
        for &(table, handle, q) in places {
            w.push(table, handle, q);
        }
        let mut out = Vec::new();
        w.write(tick, tick * 50_000, &mut out);
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    /// Mob `id`'s position and hp as held.
    fn mob_at(cache: &Cache, id: u64) -> Option<([f32; 2], i32)> {
        cache
            .get::<(u64, [f32; 2], i32), _>("mob", &id)
            .unwrap()
            .map(|(_, pos, hp)| (pos, hp))
    }

    /// A cache at tick 101 holding mob 1 at (10, 20) with hp 5, handle 0 (entered at tick 101).
    fn one_mob() -> Cache {
        let mut cache = Cache::new();
        cache.apply(&welcome_v4());
        cache.apply(&mobs_enter(101, vec![mob(1, [10.0, 20.0], 5)], &[0]));
        cache
    }

    /// Version 4: a place moves its row to the place's centimetres, written in place as a move writes them, with
    /// the event a move gives.
    #[test]
    fn a_place_moves_its_row_like_a_move() {
        let mut cache = one_mob();
        let events = cache.apply_datagram(&datagram(102, &[(MOB, 0, [1050, -2025])]));
        assert_eq!(
            events,
            [Event::Updated {
                table: MOB,
                name: "mob".into(),
                key: Cache::key(&1u64).unwrap().into(),
                old: mob(1, [10.0, 20.0], 5).0.into(),
                new: mob(1, [10.5, -20.25], 5).0.into(),
            }]
        );
        assert_eq!(mob_at(&cache, 1), Some(([10.5, -20.25], 5)));
        // The same as a version-3 move by (+50, -4025) cm.
        let mut moved = one_mob();
        let mut m = Vec::new();
        Move {
            handle: 0,
            dx: 50,
            dy: -4025,
        }
        .put(&mut m);
        moved.apply(&v3_tick(
            102,
            TableDelta {
                moves: Some(WireRow(m)),
                ..v3(MOB)
            },
        ));
        assert_eq!(
            moved.get_raw("mob", &key_bytes(1)),
            cache.get_raw("mob", &key_bytes(1))
        );
        assert_eq!(
            cache.datagram_stats(),
            DatagramStats {
                datagrams: 1,
                applied: 1,
                ..DatagramStats::default()
            }
        );
        // A place at the position held changes nothing to see.
        assert!(
            cache
                .apply_datagram(&datagram(103, &[(MOB, 0, [1050, -2025])]))
                .is_empty()
        );
        assert_eq!(cache.datagram_stats().applied, 2);
    }

    /// Places arrive in any order: one not newer than the position held (a late or repeated datagram) is dropped.
    #[test]
    fn a_place_not_newer_than_the_position_held_is_dropped() {
        let mut cache = one_mob();
        cache.apply_datagram(&datagram(104, &[(MOB, 0, [400, 400])]));
        for late in [103, 104, 101, 0] {
            let events = cache.apply_datagram(&datagram(late, &[(MOB, 0, [300, 300])]));
            assert!(events.is_empty(), "tick {late}: {events:?}");
            assert_eq!(mob_at(&cache, 1), Some(([4.0, 4.0], 5)));
        }
        assert_eq!(cache.datagram_stats().dropped, 4);
        cache.apply_datagram(&datagram(105, &[(MOB, 0, [500, 500])]));
        assert_eq!(mob_at(&cache, 1), Some(([5.0, 5.0], 5)));
    }

    /// A handle freed and given to another row: a place of a tick before the new row got it (meant for the row
    /// that left) is dropped, and so is one while the handle names no row.
    #[test]
    fn a_place_of_a_tick_before_its_row_got_the_handle_is_dropped() {
        let mut cache = one_mob();
        cache.apply(&v3_tick(
            102,
            TableDelta {
                deletes: vec![key(1)],
                ..v3(MOB)
            },
        ));
        let events = cache.apply_datagram(&datagram(103, &[(MOB, 0, [300, 300])]));
        assert!(events.is_empty());
        // Tick 110: mob 2 gets handle 0, entered 110.
        cache.apply(&mobs_enter(110, vec![mob(2, [1.0, 1.0], 9)], &[0]));
        for before in [105, 109] {
            let events = cache.apply_datagram(&datagram(before, &[(MOB, 0, [700, 700])]));
            assert!(events.is_empty(), "tick {before}: {events:?}");
        }
        // Of tick 110 itself: its insert is the position of 110 already.
        assert!(
            cache
                .apply_datagram(&datagram(110, &[(MOB, 0, [700, 700])]))
                .is_empty()
        );
        assert_eq!(mob_at(&cache, 2), Some(([1.0, 1.0], 9)));
        assert_eq!(mob_at(&cache, 1), None);
        let events = cache.apply_datagram(&datagram(111, &[(MOB, 0, [700, 700])]));
        assert_eq!(events.len(), 1);
        assert_eq!(mob_at(&cache, 2), Some(([7.0, 7.0], 9)));
        assert_eq!(cache.datagram_stats().dropped, 4);
    }

    /// A place more than `HANDLE_REST` ticks ahead of the stream is dropped: its handle may be another row's by
    /// then.
    #[test]
    fn a_place_too_far_ahead_of_the_stream_is_dropped() {
        let mut cache = one_mob();
        assert_eq!(cache.tick(), 101);
        assert_eq!(place0(&mut cache, 101 + HANDLE_REST + 1, [900, 900]), 0);
        assert_eq!(mob_at(&cache, 1), Some(([10.0, 20.0], 5)));
        assert_eq!(place0(&mut cache, 101 + HANDLE_REST, [900, 900]), 1);
        assert_eq!(mob_at(&cache, 1), Some(([9.0, 9.0], 5)));
    }

    /// How many rows a datagram of tick `t` placing handle 0 of `mob` at `q` changed.
    fn place0(cache: &mut Cache, t: u64, q: [i32; 2]) -> usize {
        cache.apply_datagram(&datagram(t, &[(MOB, 0, q)])).len()
    }

    /// Apply `message` decoded ([`Cache::apply`]) or, if `framed`, read in place from its frame as the client
    /// does ([`Cache::apply_tick`]).
    fn stream(cache: &mut Cache, message: &ServerMessage, framed: bool) -> Vec<Event> {
        if !framed {
            return cache.apply(message);
        }
        let mut frame = Vec::new();
        locus_protocol::encode_frame(message, &mut frame);
        let tick = TickView::parse(&frame[locus_protocol::FRAME_PREFIX..])
            .unwrap()
            .unwrap();
        cache.apply_tick(&tick)
    }

    /// Stream changes always apply and raise the tick of the position held to theirs, never lower it: an update of
    /// an older tick than a place applied keeps the place's tick; a patch, a move or an update of a newer tick
    /// raises it. The same whether a `Tick` is applied decoded or in place.
    #[test]
    fn stream_changes_after_a_place_keep_the_later_tick() {
        for framed in [false, true] {
            let mut cache = Cache::new();
            cache.apply(&welcome_v4());
            let enter = mobs_enter(101, vec![mob(1, [10.0, 20.0], 5)], &[0]);
            stream(&mut cache, &enter, framed);
            // The place of tick 105 arrives before the stream's ticks 102..=105.
            assert_eq!(place0(&mut cache, 105, [500, 500]), 1);
            let update = TableDelta {
                updates: vec![mob(1, [3.0, 3.0], 4)],
                ..v3(MOB)
            };
            let events = stream(&mut cache, &v3_tick(103, update), framed);
            assert_eq!(events.len(), 1, "the stream always applies");
            assert_eq!(mob_at(&cache, 1), Some(([3.0, 3.0], 4)));
            // The position held is still of 105: places of 104 and 105 are dropped, 106 applies.
            assert_eq!(place0(&mut cache, 104, [400, 400]), 0);
            assert_eq!(place0(&mut cache, 105, [400, 400]), 0);
            assert_eq!(place0(&mut cache, 106, [600, 600]), 1);
            assert_eq!(mob_at(&cache, 1), Some(([6.0, 6.0], 4)));
            // A patch of tick 107 (handle 0, column 2 `hp` = 2) raises it to 107.
            let patch = TableDelta {
                patches: vec![WireRow(vec![0x93, 0x00, 0x02, 0x02])],
                ..v3(MOB)
            };
            stream(&mut cache, &v3_tick(107, patch), framed);
            assert_eq!(mob_at(&cache, 1), Some(([6.0, 6.0], 2)));
            assert_eq!(place0(&mut cache, 107, [700, 700]), 0);
            // A move of tick 109 raises it to 109.
            let mut m = Vec::new();
            Move {
                handle: 0,
                dx: 100,
                dy: 0,
            }
            .put(&mut m);
            let moves = TableDelta {
                moves: Some(WireRow(m)),
                ..v3(MOB)
            };
            stream(&mut cache, &v3_tick(109, moves), framed);
            assert_eq!(mob_at(&cache, 1), Some(([7.0, 6.0], 2)));
            assert_eq!(place0(&mut cache, 109, [900, 900]), 0);
            // An update of tick 112 raises it to 112.
            let update = TableDelta {
                updates: vec![mob(1, [1.0, 1.0], 2)],
                ..v3(MOB)
            };
            stream(&mut cache, &v3_tick(112, update), framed);
            assert_eq!(place0(&mut cache, 111, [900, 900]), 0);
            assert_eq!(place0(&mut cache, 112, [900, 900]), 0);
            assert_eq!(mob_at(&cache, 1), Some(([1.0, 1.0], 2)));
            assert_eq!(place0(&mut cache, 113, [900, 900]), 1);
            assert_eq!(
                cache.datagram_stats(),
                DatagramStats {
                    datagrams: 9,
                    malformed: 0,
                    applied: 3,
                    dropped: 6
                }
            );
        }
    }

    /// A stream move steps from the position the stream last gave: when a place of a later tick is already held
    /// (it overtook the stream), the move is older and is skipped; a move of a later tick applies.
    #[test]
    fn a_move_older_than_the_place_held_is_skipped() {
        for framed in [false, true] {
            let mut cache = Cache::new();
            cache.apply(&welcome_v4());
            stream(
                &mut cache,
                &mobs_enter(101, vec![mob(1, [10.0, 20.0], 5)], &[0]),
                framed,
            );
            assert_eq!(place0(&mut cache, 104, [1100, 2000]), 1);
            let step = |dx| {
                let mut m = Vec::new();
                Move {
                    handle: 0,
                    dx,
                    dy: 0,
                }
                .put(&mut m);
                TableDelta {
                    moves: Some(WireRow(m)),
                    ..v3(MOB)
                }
            };
            let events = stream(&mut cache, &v3_tick(103, step(50)), framed);
            assert!(events.is_empty(), "{events:?}");
            assert_eq!(
                mob_at(&cache, 1),
                Some(([11.0, 20.0], 5)),
                "the place of 104 stays"
            );
            stream(&mut cache, &v3_tick(105, step(50)), framed);
            assert_eq!(mob_at(&cache, 1), Some(([11.5, 20.0], 5)));
        }
    }

    /// A datagram that does not read to its end exactly changes nothing, not even its well-formed first section.
    #[test]
    fn a_malformed_datagram_changes_nothing() {
        let mut cache = one_mob();
        cache.apply(&mobs_enter(102, vec![mob(2, [2.0, 2.0], 1)], &[1]));
        let good = datagram(103, &[(MOB, 0, [300, 300]), (MOB, 1, [400, 400])]);
        let before = contents_of(&cache);
        let mut longer = good.clone();
        longer.push(0x05);
        let mut other_tag = good.clone();
        other_tag[0] = 2;
        for bad in [
            &good[..good.len() - 1],
            &longer[..],
            &other_tag[..],
            &[][..],
        ] {
            assert!(cache.apply_datagram(bad).is_empty(), "{bad:?}");
            assert_eq!(contents_of(&cache), before);
        }
        assert_eq!(
            cache.datagram_stats(),
            DatagramStats {
                datagrams: 4,
                malformed: 4,
                ..DatagramStats::default()
            }
        );
        assert_eq!(cache.apply_datagram(&good).len(), 2);
    }

    /// Places of a table not in the schema, of a handle naming no row, or of a table without a spatial column are
    /// dropped without an event: datagrams may legally be late.
    #[test]
    fn places_that_name_nothing_to_move_are_dropped_silently() {
        let mut cache = one_mob();
        cache.apply(&v3_tick(
            102,
            TableDelta {
                inserts: vec![player(1, "ann", 1)],
                handles: Some(WireRow(vec![0])),
                ..v3(PLAYER)
            },
        ));
        let events = cache.apply_datagram(&datagram(
            103,
            &[
                (TableId(99), 0, [1, 1]),
                (MOB, 7, [1, 1]),
                (PLAYER, 0, [1, 1]),
            ],
        ));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(names(&cache), [(1, "ann".into(), 1)]);
        assert_eq!(mob_at(&cache, 1), Some(([10.0, 20.0], 5)));
        assert_eq!(cache.datagram_stats().dropped, 3);
        // Before any Welcome, every place is of an unknown table.
        let mut fresh = Cache::new();
        assert!(
            fresh
                .apply_datagram(&datagram(1, &[(MOB, 0, [1, 1])]))
                .is_empty()
        );
    }

    /// A new `Welcome` (and [`Cache::clear`]) forgets every handle and its tick: a place for an old handle does not
    /// move a row that comes back without one.
    #[test]
    fn a_new_welcome_forgets_handles_and_their_ticks() {
        let without_handles = ServerMessage::Tick {
            tick: 102,
            time: 0,
            tables: vec![TableDelta {
                table: MOB,
                inserts: vec![mob(1, [10.0, 20.0], 5)],
                updates: vec![],
                deletes: vec![],
                patches: vec![],
                handles: None,
                moves: None,
            }],
        };
        for forget in [
            (|c: &mut Cache| drop(c.apply(&welcome_v4()))) as fn(&mut Cache),
            |c| drop(c.clear()),
        ] {
            let mut cache = one_mob();
            forget(&mut cache);
            assert_eq!(cache.len("mob"), 0);
            cache.apply(&without_handles);
            assert!(
                cache
                    .apply_datagram(&datagram(103, &[(MOB, 0, [1, 1])]))
                    .is_empty()
            );
            assert_eq!(mob_at(&cache, 1), Some(([10.0, 20.0], 5)));
        }
    }

    /// In version 4 freed handles rest before they are given again, so handles run well past the rows in view: a
    /// handle thousands above them is still a handle; only an absurd one is an error.
    #[test]
    fn resting_handles_above_the_rows_in_view_are_accepted() {
        let mut cache = Cache::new();
        cache.apply(&welcome_v4());
        let mut handle = Vec::new();
        locus_protocol::compact::put_uvarint(&mut handle, 5_000);
        let events = cache.apply(&mobs_enter(101, vec![mob(1, [0.0, 0.0], 1)], &handle));
        assert!(matches!(events[..], [Event::Inserted { .. }]), "{events:?}");
        assert_eq!(
            cache
                .apply_datagram(&datagram(102, &[(MOB, 5_000, [100, 100])]))
                .len(),
            1
        );
        handle.clear();
        locus_protocol::compact::put_uvarint(&mut handle, 1 << 24);
        let events = cache.apply(&mobs_enter(103, vec![mob(2, [0.0, 0.0], 1)], &handle));
        assert_eq!(
            events[1],
            Event::Inconsistent {
                table: MOB,
                error: ApplyError::UnknownHandle { handle: 1 << 24 }
            }
        );
    }

    /// Every mob row (key, row) a cache holds.
    fn contents_of(cache: &Cache) -> Vec<(Vec<u8>, Vec<u8>)> {
        cache
            .iter_raw("mob")
            .map(|(k, r)| (k.to_vec(), r.to_vec()))
            .collect()
    }

    /// What a cache holds: its tick, tick time and every player row (key, row).
    type Contents = (u64, u64, Vec<(Vec<u8>, Vec<u8>)>);

    fn contents(cache: &Cache) -> Contents {
        let rows = cache
            .iter_raw("player")
            .map(|(k, r)| (k.to_vec(), r.to_vec()))
            .collect();
        (cache.tick(), cache.tick_time(), rows)
    }

    /// Apply `message` to `owned` with [`Cache::apply`] and, encoded as a frame and read in place with
    /// [`TickView`] if it is a `Tick`, to `borrowed` with [`Cache::apply_tick`]; both must give the same events
    /// and hold the same rows afterwards.
    fn apply_both_ways(owned: &mut Cache, borrowed: &mut Cache, message: &ServerMessage) {
        let want = owned.apply(message);
        let mut frame = Vec::new();
        locus_protocol::encode_frame(message, &mut frame);
        let got = match TickView::parse(&frame[locus_protocol::FRAME_PREFIX..]).unwrap() {
            Some(tick) => borrowed.apply_tick(&tick),
            None => {
                assert!(!matches!(message, ServerMessage::Tick { .. }));
                borrowed.apply(message)
            }
        };
        assert_eq!(got, want);
        assert_eq!(contents(borrowed), contents(owned));
    }

    /// One random table delta of `player` (ids 0..6, so rows collide), or of an unknown table.
    fn random_delta() -> impl proptest::strategy::Strategy<Value = TableDelta> {
        use proptest::prelude::*;
        let ids = || prop::collection::vec((0u64..6, -3i32..3), 0..4);
        let players = |rows: Vec<(u64, i32)>| -> Vec<WireRow> {
            rows.into_iter()
                .map(|(id, hp)| player(id, "a name long enough", hp))
                .collect()
        };
        (
            prop_oneof![9 => Just(PLAYER), 1 => Just(TableId(99))],
            ids(),
            ids(),
            prop::collection::vec(0u64..6, 0..3),
            prop::collection::vec((0u64..6, -3i32..3, -3i32..3), 0..4),
            any::<bool>(),
        )
            .prop_map(move |(table, inserts, updates, deletes, patches, bad)| {
                let def = match welcome() {
                    ServerMessage::Welcome(w) => w.tables[0].def.clone(),
                    _ => unreachable!(),
                };
                let mut out = Vec::new();
                let mut patch_rows = Vec::new();
                for (id, old, new) in patches {
                    if patch::make_patch(
                        &def.columns,
                        0,
                        &player(id, "a name long enough", old).0,
                        &player(id, "a name long enough", new).0,
                        &mut patch::Scratch::default(),
                        &mut out,
                    ) {
                        patch_rows.push(WireRow(out.clone()));
                    }
                }
                let mut patches = patch_rows;
                let mut inserts = players(inserts);
                if bad {
                    // A row and a patch that fit nothing.
                    inserts.push(WireRow(vec![0xc1]));
                    patches.push(WireRow(vec![0x93, 0x01, 0x02, 0xa1, b'x']));
                }
                TableDelta {
                    table,
                    inserts,
                    updates: players(updates),
                    deletes: deletes.into_iter().map(key).collect(),
                    patches,
                    handles: None,
                    moves: None,
                }
            })
    }

    proptest::proptest! {
        /// The borrowed path (`apply_tick` of a `TickView`) and the owned one (`apply` of the decoded message) give
        /// the same events and leave the same rows, tick after tick, inconsistent messages included.
        #[test]
        fn a_tick_applied_in_place_equals_the_decoded_tick(
            ticks in proptest::collection::vec(
                (95u64..110, proptest::collection::vec(random_delta(), 0..3)),
                1..8,
            ),
        ) {
            let (mut owned, mut borrowed) = (Cache::new(), Cache::new());
            apply_both_ways(&mut owned, &mut borrowed, &welcome());
            for (tick, tables) in ticks {
                let message = ServerMessage::Tick { tick, time: tick * 7, tables };
                apply_both_ways(&mut owned, &mut borrowed, &message);
            }
        }
    }

    #[test]
    fn results_and_errors_become_events() {
        let mut cache = Cache::new();
        let events = cache.apply(&ServerMessage::Result {
            request: 7,
            tick: 3,
            outcome: CallOutcome::Ok,
        });
        assert_eq!(
            events,
            [Event::CallResult {
                request: RequestId(7),
                tick: 3,
                outcome: CallOutcome::Ok
            }]
        );
        let events = cache.apply(&ServerMessage::Error {
            code: ErrorCode::NoSuchTable,
            message: "no".into(),
            request: Some(8),
            fatal: false,
        });
        assert_eq!(
            events,
            [Event::ServerError {
                code: ErrorCode::NoSuchTable,
                message: "no".into(),
                request: Some(RequestId(8)),
                fatal: false
            }]
        );
    }

    /// The `Welcome` of another region's server: the same schema (`player`, version 1) at another tick.
    fn welcome_elsewhere(tick: u64) -> Welcome {
        let ServerMessage::Welcome(mut w) = welcome() else {
            unreachable!()
        };
        w.tick = tick;
        w
    }

    /// The kind and player id of each row event, in order (other events by kind alone, id 0).
    fn row_events(events: &[Event]) -> Vec<(&'static str, u64)> {
        events
            .iter()
            .map(|e| {
                let id = match e {
                    Event::Inserted { row, .. } => decode_row::<Player>("player", row).unwrap().id,
                    Event::Updated { new, .. } => decode_row::<Player>("player", new).unwrap().id,
                    Event::Deleted { old, .. } => decode_row::<Player>("player", old).unwrap().id,
                    _ => 0,
                };
                (e.kind(), id)
            })
            .collect()
    }

    /// A cache at tick 101 holding ann (1, 10 hp), bob (2, 20) and cat (3, 30).
    fn three_players() -> Cache {
        let mut cache = Cache::new();
        cache.apply(&welcome());
        cache.apply(&tick(
            101,
            vec![
                player(1, "ann", 10),
                player(2, "bob", 20),
                player(3, "cat", 30),
            ],
            vec![],
            vec![],
        ));
        cache
    }

    /// During a redirect the view held stays and the new one is built apart (its row events unreported; the
    /// answers to the subscriptions made again swallowed; other answers reported); a `Tick` of a later tick than
    /// the first after the answers finishes it with exactly the differences (a row with the same bytes in both
    /// views gives none), then applies as usual. A tick split over frames goes whole into the new view. The same
    /// whether the `Tick`s are applied decoded or in place.
    #[test]
    fn a_redirect_keeps_the_view_until_the_new_one_is_in_then_reports_only_the_differences() {
        for framed in [false, true] {
            let mut cache = three_players();
            let before = names(&cache);
            cache.begin_redirect(&welcome_elsewhere(500), [RequestId(40)]);
            assert!(cache.is_redirecting() && !cache.redirect_answered());
            // The re-subscription's answer is the I/O layer's; a call's result is the application's.
            let events = cache.apply(&ServerMessage::Subscribed {
                request: 40,
                table: PLAYER,
            });
            assert!(events.is_empty(), "{events:?}");
            assert!(cache.redirect_answered());
            let events = cache.apply(&ServerMessage::Result {
                request: 41,
                tick: 501,
                outcome: CallOutcome::Ok,
            });
            assert!(
                matches!(events[..], [Event::CallResult { .. }]),
                "{events:?}"
            );
            // The new view, in two frames of tick 501: ann the same, bob changed, cat gone, dan and eve new.
            let first = tick(
                501,
                vec![player(1, "ann", 10), player(2, "bob", 21)],
                vec![],
                vec![],
            );
            let second = tick(
                501,
                vec![player(4, "dan", 40), player(5, "eve", 50)],
                vec![],
                vec![],
            );
            for frame in [&first, &second] {
                let events = stream(&mut cache, frame, framed);
                assert!(events.is_empty(), "{events:?}");
                assert_eq!(names(&cache), before, "the view held stays");
                assert_eq!(cache.tick(), 101);
            }
            // Tick 502: the view of 501 is complete; then 502 applies (dan is hurt).
            let events = stream(
                &mut cache,
                &tick(502, vec![], vec![player(4, "dan", 39)], vec![]),
                framed,
            );
            assert_eq!(
                row_events(&events),
                [
                    ("deleted", 3),
                    ("updated", 2),
                    ("inserted", 4),
                    ("inserted", 5),
                    ("updated", 4)
                ]
            );
            assert!(matches!(&events[1], Event::Updated { old, new, .. }
                if **old == *player(2, "bob", 20).0 && **new == *player(2, "bob", 21).0));
            assert!(!cache.is_redirecting());
            assert_eq!(cache.tick(), 502);
            assert_eq!(
                names(&cache),
                [
                    (1, "ann".into(), 10),
                    (2, "bob".into(), 21),
                    (4, "dan".into(), 39),
                    (5, "eve".into(), 50)
                ]
            );
        }
    }

    /// Without a later tick, the I/O layer finishes a redirect; a subscription the new server refuses counts as
    /// answered and is reported; an answer to a request of the application's own is reported; rows the new view
    /// lacks leave.
    #[test]
    fn the_io_layer_finishes_a_redirect_and_refused_subscriptions_count_as_answered() {
        let mut cache = three_players();
        cache.begin_redirect(&welcome_elsewhere(500), [RequestId(40), RequestId(41)]);
        assert!(
            cache
                .apply(&ServerMessage::Subscribed {
                    request: 40,
                    table: PLAYER
                })
                .is_empty()
        );
        // A subscription of the application's, made meanwhile.
        let events = cache.apply(&ServerMessage::Subscribed {
            request: 42,
            table: PLAYER,
        });
        assert!(matches!(
            events[..],
            [Event::Subscribed {
                request: RequestId(42),
                ..
            }]
        ));
        // Before every answer came, a `Tick` is still the new view's (it cannot finish it).
        assert!(
            cache
                .apply(&tick(501, vec![player(1, "ann", 10)], vec![], vec![]))
                .is_empty()
        );
        assert!(
            cache
                .apply(&tick(502, vec![player(6, "fay", 1)], vec![], vec![]))
                .is_empty()
        );
        let events = cache.apply(&ServerMessage::Error {
            code: ErrorCode::NoSuchTable,
            message: "no".into(),
            request: Some(41),
            fatal: false,
        });
        assert!(matches!(
            events[..],
            [Event::ServerError {
                request: Some(RequestId(41)),
                ..
            }]
        ));
        assert!(cache.redirect_answered() && cache.is_redirecting());
        let events = cache.finish_redirect();
        assert_eq!(
            row_events(&events),
            [("deleted", 2), ("deleted", 3), ("inserted", 6)]
        );
        assert_eq!(names(&cache), [(1, "ann".into(), 10), (6, "fay".into(), 1)]);
        assert_eq!(cache.tick(), 502);
        assert!(cache.finish_redirect().is_empty(), "nothing left to finish");
    }

    /// A message other than a `Tick` after the first `Tick` that followed the answers is of a later tick: it
    /// finishes the redirect first, then is reported.
    #[test]
    fn an_answer_after_the_new_views_tick_finishes_the_redirect_first() {
        let mut cache = three_players();
        cache.begin_redirect(&welcome_elsewhere(500), []);
        assert!(cache.redirect_answered());
        cache.apply(&tick(501, vec![player(1, "ann", 11)], vec![], vec![]));
        let events = cache.apply(&ServerMessage::Result {
            request: 9,
            tick: 502,
            outcome: CallOutcome::Ok,
        });
        assert_eq!(
            events.iter().map(Event::kind).collect::<Vec<_>>(),
            ["deleted", "deleted", "updated", "call_result"]
        );
        assert!(!cache.is_redirecting());
    }

    /// The new view replaces the old whole: its schema (tables matched by name, ids may differ: an insert carries
    /// the new id, a delete of a table the new schema lacks its old one), its handles (version 3: a patch by the
    /// new session's handle applies after), and its places (version 4, applied to the new view silently while it
    /// is built).
    #[test]
    fn a_redirect_takes_the_new_schema_and_handles() {
        const NEW_MOB: TableId = TableId(9);
        let mut cache = one_mob();
        cache.apply(&tick(102, vec![player(1, "ann", 1)], vec![], vec![]));
        // The new region's module has only `mob`, under another id.
        let ServerMessage::Welcome(mut w) = welcome_v4() else {
            unreachable!()
        };
        w.tables.retain(|t| t.def.name == "mob");
        w.tables[0].id = NEW_MOB;
        w.tick = 700;
        cache.begin_redirect(&w, []);
        let enter = v3_tick(
            701,
            TableDelta {
                inserts: vec![mob(1, [10.0, 20.0], 5), mob(2, [0.0, 0.0], 9)],
                handles: Some(WireRow(vec![3, 0])),
                ..v3(NEW_MOB)
            },
        );
        assert!(cache.apply(&enter).is_empty());
        // A place of the new session's handle 3 (mob 1) moves the new view's row, silently.
        assert!(
            cache
                .apply_datagram(&datagram(702, &[(NEW_MOB, 3, [1100, 2000])]))
                .is_empty()
        );
        assert_eq!(mob_at(&cache, 1), Some(([10.0, 20.0], 5)), "the view held");
        // Tick 703: handle 0 (mob 2)'s hp (column 2) is 8; it applies after the new view replaced the old.
        let patch = v3_tick(
            703,
            TableDelta {
                patches: vec![WireRow(vec![0x93, 0x00, 0x02, 0x08])],
                ..v3(NEW_MOB)
            },
        );
        let events = cache.apply(&patch);
        let summary: Vec<(&str, TableId)> = events
            .iter()
            .map(|e| match e {
                Event::Inserted { table, .. }
                | Event::Updated { table, .. }
                | Event::Deleted { table, .. } => (e.kind(), *table),
                e => (e.kind(), TableId(0)),
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("deleted", PLAYER),
                ("updated", NEW_MOB),
                ("inserted", NEW_MOB),
                ("updated", NEW_MOB)
            ],
            "{events:?}"
        );
        assert_eq!(mob_at(&cache, 1), Some(([11.0, 20.0], 5)));
        assert_eq!(mob_at(&cache, 2), Some(([0.0, 0.0], 8)));
        assert_eq!(cache.table_id("mob"), Some(NEW_MOB));
        assert_eq!(cache.table_id("player"), None);
        assert_eq!(cache.datagram_stats().applied, 1);
    }

    /// A new connection's `Welcome` ([`Cache::apply_welcome`]) drops a redirect in progress, as does
    /// [`Cache::cancel_redirect`], which keeps the view held.
    #[test]
    fn a_fresh_welcome_or_a_cancel_drops_a_redirect() {
        let mut cache = three_players();
        cache.begin_redirect(&welcome_elsewhere(500), []);
        cache.apply(&tick(501, vec![player(9, "ivy", 9)], vec![], vec![]));
        cache.cancel_redirect();
        assert!(!cache.is_redirecting());
        assert_eq!(cache.len("player"), 3);
        assert!(cache.finish_redirect().is_empty());
        cache.begin_redirect(&welcome_elsewhere(500), []);
        let events = cache.apply_welcome(&welcome_elsewhere(600));
        assert_eq!(
            events.iter().map(Event::kind).collect::<Vec<_>>(),
            ["deleted", "deleted", "deleted", "connected"]
        );
        assert!(!cache.is_redirecting());
        // A `Tick` applies to the view again.
        assert_eq!(
            cache
                .apply(&tick(601, vec![player(9, "ivy", 9)], vec![], vec![]))
                .len(),
            1
        );
    }
}

//! [`Interest`]: who sees which rows, and the per-client deltas of each tick.
//!
//! # Terms
//!
//! - A client's **area** is a circle around a **center** — a row it follows (its avatar) or a fixed point — with an
//!   **enter radius** and a larger **leave radius**.
//! - A row is **admitted** for a client when the client subscribed to its table and the row matches the
//!   subscription's [`Filter`], and the row may be sent to it: its table is public and, if the table has an owner
//!   column, the client is the owner.
//! - A client's **view** is the set of rows it has been given (or is about to be). It holds exactly the admitted rows
//!   of its non-spatial subscriptions, and the admitted rows of spatial tables in its area, with hysteresis.
//!
//! # Invariants (after every [`Interest::poll_tick`])
//!
//! For every client, with `E` the admitted spatial rows within the enter radius of its center and `V` the spatial
//! rows in its view:
//!
//! 1. every row in `V` is admitted and within the leave radius (a row leaves only beyond it: hysteresis);
//! 2. `|V| ≤` [`InterestConfig::max_visible`];
//! 3. if `|V| <` `max_visible`, then `E ⊆ V`;
//! 4. a row of `E` left out of `V` is at least as far from the center as every row of `V` (the cap keeps the nearest);
//! 5. its non-spatial view rows are exactly the admitted rows of its non-spatial subscriptions;
//! 6. the client, having applied every delta, holds each view row with its latest bytes — unless a
//!    [byte budget](InterestConfig::byte_budget) defers some of them, which are then pending and sent first once
//!    they have waited longest (priority accumulation).
//!
//! A client never receives a row of a private table, nor a row whose owner column names someone else.
//!
//! # Patches
//!
//! A changed row goes to a client as a **patch** ([`Delta::patches`]: only the changed columns, see
//! [`locus_types::patch`]) when the client holds exactly the row's version from before this tick: its view entry
//! was sent and not deferred by a byte budget since. Otherwise (or when the patch would not be shorter than the row)
//! it goes as a whole-row update. So applying a delta's patches to the rows the client holds always gives the
//! rows' current bytes (with [`InterestConfig::patches`] off, every change is a whole row).
//!
//! # Cost
//!
//! A tick's work is proportional to what changed and who watches it: each changed row visits its watchers (and,
//! for clients that stood still, the clients in the grid cells around it); each client whose center moved scans
//! the rows in the grid cells around it and its own view. Nothing scans the world per client. Each poll also walks
//! the client slots, one per [`ClientId`] up to the highest connected one, so the caller reuses ids (lowest free
//! first) and the slots stay bounded by the clients connected at the peak.

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use locus_store::{Changeset, Database};
use locus_types::{
    ColumnDef, ColumnId, Identity, TableAccess, TableId, Tick, Value, Vec2, codec, patch,
};

use crate::error::{AreaError, SubscribeError};
use crate::grid::{Block, Cell, Grid};
use crate::prefetch::prefetch;

/// A connected client, numbered by the caller (the server's session id).
///
/// The stage keeps a slot per id up to the highest connected one, and every poll walks those slots: callers should
/// reuse ids, lowest free first (the server does), so that the slots stay as many as the clients connected at the
/// peak rather than every connection ever made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);

/// A row as the interest stage knows it; resolve it with [`Deltas::row`]. Valid for the tick's deltas only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowId(u32);

/// Where a client's area is centred.
#[derive(Clone, Debug, PartialEq)]
pub enum Center {
    /// On a row of a spatial table (the client's avatar): the area moves with it, and is empty while the row does
    /// not exist.
    Follow {
        /// The row's table.
        table: TableId,
        /// The row's primary key.
        key: Value,
    },
    /// On a fixed point.
    Fixed(Vec2),
}

/// A client's area of interest, set by the module (server side), never chosen by the client.
#[derive(Clone, Debug, PartialEq)]
pub struct Area {
    /// Where it is centred.
    pub center: Center,
    /// Rows come into view within this distance of the center.
    pub enter_radius: f32,
    /// Rows in view leave it only beyond this distance (≥ the enter radius).
    pub leave_radius: f32,
}

/// Which rows of a table a subscription wants.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every row (of a spatial table: every row in the area).
    All,
    /// Rows whose `column` equals `value`.
    Eq {
        /// The column.
        column: ColumnId,
        /// The value.
        value: Value,
    },
    /// Rows whose owner column is the client's identity (the table must have an owner column).
    Owner,
}

/// Tuning of the interest stage. Every field's default is stated on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterestConfig {
    /// Side of the grid cells rows and clients are bucketed in, in metres; about the common enter radius is best.
    /// Default 64.
    pub cell_size: f32,
    /// The largest leave radius an area may have, in metres. Default 512.
    pub max_radius: f32,
    /// The most spatial rows one client sees at once; beyond it the nearest are kept. Default 256.
    pub max_visible: usize,
    /// Bytes one client may be sent per tick, counting each row as its length plus
    /// [`row_overhead`](Self::row_overhead) and each delete as twice the overhead; `None` for no limit. Rows over
    /// the budget stay pending, gaining priority every tick (nearer rows faster, entering rows first) until sent;
    /// deletes are always sent, and at least one row per tick. Default `None`.
    pub byte_budget: Option<usize>,
    /// Framing bytes counted per row against the budget. Default 8.
    pub row_overhead: usize,
    /// Send changed rows as patches of their changed columns where the client holds the previous version (see
    /// [Patches](self#patches)). Default `true`.
    pub patches: bool,
}

impl Default for InterestConfig {
    fn default() -> Self {
        InterestConfig {
            cell_size: 64.0,
            max_radius: 512.0,
            max_visible: 256,
            byte_budget: None,
            row_overhead: 8,
            patches: true,
        }
    }
}

/// What one client is sent for one tick: row ids to resolve with [`Deltas::row`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Rows that are new to the client (entering its view, new rows in view, initial rows of a subscription).
    pub inserts: Vec<RowId>,
    /// Rows in its view whose bytes changed, to be sent whole.
    pub updates: Vec<RowId>,
    /// Rows in its view whose bytes changed, to be sent as their patch ([`RowRef::patch`]) against the version the
    /// client holds.
    pub patches: Vec<RowId>,
    /// Rows that left its view or were deleted (send their table and key).
    pub deletes: Vec<RowId>,
}

impl Delta {
    /// Whether there is nothing to send.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty()
            && self.updates.is_empty()
            && self.patches.is_empty()
            && self.deletes.is_empty()
    }

    /// Rows delivered: inserts + updates + patches + deletes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inserts.len() + self.updates.len() + self.patches.len() + self.deletes.len()
    }

    fn clear(&mut self) {
        self.inserts.clear();
        self.updates.clear();
        self.patches.clear();
        self.deletes.clear();
    }
}

/// A row as delivered: its table, primary key and bytes (the one row encoding).
#[derive(Clone, Copy, Debug)]
pub struct RowRef<'a> {
    /// The table.
    pub table: TableId,
    /// The primary key.
    pub key: &'a Value,
    /// The row's bytes (for a deleted row, its last bytes).
    pub bytes: &'a [u8],
    /// The patch turning the row's version before this tick into `bytes` (for rows in [`Delta::patches`]; empty
    /// when the row has none).
    pub patch: &'a [u8],
}

#[derive(Debug)]
struct TableInfo {
    public: bool,
    columns: Vec<ColumnDef>,
    pk: ColumnId,
    spatial: Option<ColumnId>,
    owner: Option<ColumnId>,
    /// How many leading columns hold the key, position and owner (all that `parse` reads).
    needed: usize,
    rows: Vec<RowId>,
    /// Clients subscribed to this table (non-spatial tables without an owner column: the candidates for a changed
    /// row).
    subscribers: Vec<u32>,
}

#[derive(Debug)]
struct Row {
    table: TableId,
    key: Value,
    bytes: Box<[u8]>,
    owner: Option<Identity>,
    /// The bytes as of the last poll, kept at the row's first change since (empty otherwise): what a client that
    /// was sent the row holds.
    base: Vec<u8>,
    /// This tick's patch from `base` to `bytes`, made by the poll (empty if none; valid while `Hot::changed` is
    /// the poll's sequence number).
    patch: Vec<u8>,
    /// `(client, index in the client's view)` for every client that has the row in view.
    watchers: Vec<(u32, u32)>,
    /// Index in its table's `rows`.
    table_slot: u32,
    alive: bool,
}

/// The fields of a row that every tick reads for many clients, packed apart from the rest (`Interest::hot`, same
/// index as `Interest::rows`) so the per-client scans stay in cache.
#[derive(Clone, Copy, Debug, Default)]
struct Hot {
    pos: Vec2,
    /// The poll sequence number of the tick that last changed it.
    changed: u64,
    /// Scratch mark for set differences.
    mark: u64,
}

/// One row in a client's view: 8 bytes, so a client's whole view is a few cache lines.
#[derive(Clone, Copy, Debug)]
struct Entry {
    row: RowId,
    /// The row's table (kept here so scans of the view need not read the row; `Interest::new` takes at most
    /// [`MAX_TABLES`] tables).
    table: u16,
    /// Whether the table is spatial.
    spatial: bool,
    /// [`SENT`], [`DIRTY`], [`QUEUED`] and [`STALE`].
    flags: u8,
}

/// Entry flag: the client has been sent the row.
const SENT: u8 = 1;
/// Entry flag: the row changed since it was sent.
const DIRTY: u8 = 2;
/// Entry flag: the row is in the client's `touched` or `pending` list.
const QUEUED: u8 = 4;
/// Entry flag: the row was deferred by the byte budget, so the client may hold an older version than the last
/// poll's: its next update is sent whole.
const STALE: u8 = 8;
/// Tables past this many are not mirrored (a view entry names its table in 16 bits).
const MAX_TABLES: usize = 1 << 16;

impl Entry {
    fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn table(self) -> TableId {
        TableId(u32::from(self.table))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The center did not move and nothing about the area changed: only changed rows matter.
    Still,
    /// The center moved: scan the rows around it.
    Moved,
    /// Recompute the spatial view from scratch (new area, new subscription, or capped).
    Full,
}

#[derive(Debug)]
struct Client {
    identity: Identity,
    area: Option<Area>,
    center: Option<Vec2>,
    prev_center: Option<Vec2>,
    /// The row its area follows, as last resolved (re-resolved by key once that row is deleted).
    followed: Option<RowId>,
    cell: Option<Cell>,
    subs: Vec<(TableId, Filter)>,
    /// Bit `t` set: every row of table `t < 64` is admitted (see `admits_quick`), kept in step with `subs`.
    quick: u64,
    /// The spatial view must be recomputed (area or spatial subscriptions changed).
    full: bool,
    /// Non-spatial tables whose view rows must be recomputed (subscription changed).
    rescan: Vec<TableId>,
    capped: bool,
    view: Vec<Entry>,
    /// Accumulated priority of each view entry (same index) while pending under a byte budget.
    priority: Vec<f32>,
    spatial: usize,
    touched: Vec<RowId>,
    pending: Vec<RowId>,
    out: Delta,
}

/// The interest stage: subscriptions and areas in, per-client deltas out. See the [module docs](self).
///
/// Sans-IO: driven by one owner (the tick thread) with `handle_*` calls — the tick's committed changesets and any
/// subscription changes — and one [`Interest::poll_tick`] per tick, whose [`Deltas`] the caller encodes and sends.
#[derive(Debug)]
pub struct Interest {
    config: InterestConfig,
    tables: Vec<TableInfo>,
    rows: Vec<Row>,
    hot: Vec<Hot>,
    free: Vec<RowId>,
    index: KeyIndex,
    row_grid: Grid,
    client_grid: Grid,
    clients: Vec<Option<Client>>,
    by_identity: HashMap<Identity, Vec<u32>, FixedState>,
    /// Rows changed since the last poll, each once.
    changed: Vec<RowId>,
    /// Rows deleted in the last poll's tick, freed at the next poll.
    tombstones: Vec<RowId>,
    seq: u64,
    mark: u64,
    tick: Tick,
    /// Rows of the block of cells around `gather_key` (scratch of `moved_clients`).
    gathered: Block,
    gather_key: Option<(Cell, i32)>,
    /// Gathered rows within a client's enter radius (scratch of `moved_clients`).
    near: Vec<u32>,
    /// Clients that may take a changed row into view (scratch of `changed_rows`).
    candidates: Vec<u32>,
    /// Clients in grid-cell order (scratch of `poll_tick`).
    order: Vec<(Option<Cell>, u32)>,
    /// Each client's mode this tick, by client index (dense, for the per-watcher checks).
    modes: Vec<Mode>,
    /// The largest enter radius of any client's area (how far around a changed row to look for clients).
    max_enter: f32,
    offsets: Vec<u32>,
    scratch: Vec<(f32, RowId)>,
    patch_scratch: patch::Scratch,
}

/// Rows by table and primary key.
///
/// Integer keys (the common case, and nearly always `auto_inc`, so dense) live per table in a plain vector indexed
/// by the key while keys stay below twice the mirrored row count plus 1024; other integers in a compact map of
/// `u64`s; other keys in a general map. The lookup of every changed row so touches 4 bytes a row, not a hash table.
#[derive(Debug)]
struct KeyIndex {
    /// Per table: `dense[key]` is the row, or [`NO_ROW`].
    dense: Vec<Vec<u32>>,
    ints: HashMap<(TableId, u64), RowId, FixedState>,
    others: HashMap<(TableId, Value), RowId, FixedState>,
    len: usize,
}

const NO_ROW: u32 = u32::MAX;

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            dense: Vec::new(),
            ints: HashMap::with_hasher(FixedState::with_seed(0x1a7e)),
            others: HashMap::with_hasher(FixedState::with_seed(0x1a7f)),
            len: 0,
        }
    }
}

impl KeyIndex {
    /// The integer form of a key (a column has one type, so the cast of an `I64` cannot collide with a `U64`).
    fn int(key: &Value) -> Option<u64> {
        match key {
            Value::U64(v) => Some(*v),
            Value::I64(v) => Some(*v as u64),
            Value::Timestamp(t) => Some(t.0),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn dense_slot(&self, table: TableId, k: u64) -> Option<u32> {
        let slot = *self
            .dense
            .get(table.0 as usize)?
            .get(usize::try_from(k).ok()?)?;
        (slot != NO_ROW).then_some(slot)
    }

    fn get(&self, table: TableId, key: &Value) -> Option<RowId> {
        match Self::int(key) {
            Some(k) => self
                .dense_slot(table, k)
                .map(RowId)
                .or_else(|| self.ints.get(&(table, k)).copied()),
            None => self.others.get(&(table, key.clone())).copied(),
        }
    }

    fn insert(&mut self, table: TableId, key: Value, id: RowId) {
        self.len += 1;
        let Some(k) = Self::int(&key) else {
            self.others.insert((table, key), id);
            return;
        };
        let t = table.0 as usize;
        if self.dense.len() <= t {
            self.dense.resize_with(t + 1, Vec::new);
        }
        let dense = &mut self.dense[t];
        let limit = 2 * self.len as u64 + 1024;
        if k < dense.len() as u64 || k < limit {
            let k = k as usize;
            if dense.len() <= k {
                dense.resize((k + 1).max(dense.len() * 2), NO_ROW);
            }
            dense[k] = id.0;
        } else {
            self.ints.insert((table, k), id);
        }
    }

    fn remove(&mut self, table: TableId, key: &Value) -> Option<RowId> {
        let removed = match Self::int(key) {
            Some(k) => match self.dense_slot(table, k) {
                Some(id) => {
                    self.dense[table.0 as usize][k as usize] = NO_ROW;
                    Some(RowId(id))
                }
                None => self.ints.remove(&(table, k)),
            },
            None => self.others.remove(&(table, key.clone())),
        };
        self.len -= usize::from(removed.is_some());
        removed
    }
}

fn dist2(a: Vec2, b: Vec2) -> f32 {
    (a - b).length_squared()
}

impl Interest {
    /// An interest stage over the tables of `db`, holding a copy of the rows of its public tables. Changesets for
    /// tables created later are ignored.
    #[must_use]
    pub fn new(config: InterestConfig, db: &Database) -> Interest {
        let mut interest = Interest {
            config,
            tables: Vec::new(),
            rows: Vec::new(),
            hot: Vec::new(),
            free: Vec::new(),
            index: KeyIndex::default(),
            row_grid: Grid::new(config.cell_size),
            client_grid: Grid::new(config.cell_size),
            clients: Vec::new(),
            by_identity: HashMap::with_hasher(FixedState::with_seed(0x1d)),
            changed: Vec::new(),
            tombstones: Vec::new(),
            seq: 1,
            mark: 0,
            tick: Tick(0),
            max_enter: 0.0,
            modes: Vec::new(),
            order: Vec::new(),
            candidates: Vec::new(),
            gathered: Block::default(),
            gather_key: None,
            near: Vec::new(),
            offsets: Vec::new(),
            scratch: Vec::new(),
            patch_scratch: patch::Scratch::default(),
        };
        for table in db.tables().take(MAX_TABLES) {
            let def = table.def();
            interest.tables.push(TableInfo {
                public: def.access == TableAccess::Public,
                columns: def.columns.clone(),
                pk: def.primary_key,
                spatial: def.spatial_column(),
                owner: def.owner,
                needed: [Some(def.primary_key), def.spatial_column(), def.owner]
                    .into_iter()
                    .flatten()
                    .map(|c| c.index() + 1)
                    .max()
                    .unwrap_or(0),
                rows: Vec::new(),
                subscribers: Vec::new(),
            });
            if def.access == TableAccess::Public {
                for row in table.iter() {
                    interest.insert_row(table.id(), row);
                }
            }
        }
        interest.changed.clear();
        interest
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &InterestConfig {
        &self.config
    }

    /// How many rows of public tables it mirrors.
    #[must_use]
    pub fn row_count(&self) -> usize {
        self.index.len()
    }

    /// How many client slots it holds: one past the highest connected [`ClientId`] (0 with no client). Each poll
    /// walks this many slots.
    #[must_use]
    pub fn client_slots(&self) -> usize {
        self.clients.len()
    }

    // ---- rows ---------------------------------------------------------------------------------------------

    /// Decode what the stage needs of a row: key, position, owner.
    fn parse(&mut self, table: TableId, bytes: &[u8]) -> (Value, Vec2, Option<Identity>) {
        let info = &self.tables[table.0 as usize];
        // Committed rows are valid: read only as far as the last column needed.
        codec::locate_columns(&info.columns, bytes, info.needed, &mut self.offsets)
            .expect("committed rows are valid");
        let col = |c: ColumnId| {
            &bytes[self.offsets[c.index()] as usize..self.offsets[c.index() + 1] as usize]
        };
        let key = codec::decode_value(&info.columns[info.pk.index()], col(info.pk)).expect("valid");
        let pos = info.spatial.map_or(Vec2::ZERO, |c| {
            codec::read_vec2(col(c)).expect("valid Vec2")
        });
        let owner = info.owner.and_then(|c| {
            match codec::decode_value(&info.columns[c.index()], col(c)).expect("valid") {
                Value::Identity(id) => Some(id),
                _ => None,
            }
        });
        (key, pos, owner)
    }

    fn mark_changed(&mut self, id: RowId) {
        let hot = &mut self.hot[id.0 as usize];
        if hot.changed != self.seq {
            hot.changed = self.seq;
            self.changed.push(id);
        }
    }

    fn insert_row(&mut self, table: TableId, bytes: &[u8]) {
        let (key, pos, owner) = self.parse(table, bytes);
        let info = &mut self.tables[table.0 as usize];
        let row = Row {
            table,
            key: key.clone(),
            bytes: bytes.into(),
            owner,
            base: Vec::new(),
            patch: Vec::new(),
            watchers: Vec::new(),
            table_slot: info.rows.len() as u32,
            alive: true,
        };
        let hot = Hot {
            pos,
            changed: 0,
            mark: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.rows[id.0 as usize] = row;
                self.hot[id.0 as usize] = hot;
                id
            }
            None => {
                self.rows.push(row);
                self.hot.push(hot);
                RowId(self.rows.len() as u32 - 1)
            }
        };
        info.rows.push(id);
        if info.spatial.is_some() {
            self.row_grid.insert(self.row_grid.cell(pos), id.0, pos);
        }
        self.index.insert(table, key, id);
        self.mark_changed(id);
    }

    /// Feed one committed transaction's changes (in commit order). Changes to private tables are ignored.
    pub fn handle_changeset(&mut self, changeset: &Changeset) {
        for tc in &changeset.tables {
            let Some(info) = self.tables.get(tc.table.0 as usize) else {
                continue;
            };
            if !info.public {
                continue;
            }
            let spatial = info.spatial.is_some();
            for old in &tc.deletes {
                let (key, _, _) = self.parse(tc.table, old);
                let Some(id) = self.index.remove(tc.table, &key) else {
                    continue;
                };
                let row = &mut self.rows[id.0 as usize];
                row.alive = false;
                let (pos, slot) = (self.hot[id.0 as usize].pos, row.table_slot as usize);
                let info = &mut self.tables[tc.table.0 as usize];
                info.rows.swap_remove(slot);
                if let Some(moved) = info.rows.get(slot) {
                    self.rows[moved.0 as usize].table_slot = slot as u32;
                }
                if spatial {
                    self.row_grid.remove(self.row_grid.cell(pos), id.0);
                }
                self.mark_changed(id);
            }
            for update in &tc.updates {
                let (key, pos, owner) = self.parse(tc.table, &update.new);
                let Some(id) = self.index.get(tc.table, &key) else {
                    continue;
                };
                let row = &mut self.rows[id.0 as usize];
                if self.config.patches
                    && !row.watchers.is_empty()
                    && self.hot[id.0 as usize].changed != self.seq
                {
                    // The first change since the last poll of a row in someone's view: keep what they were sent
                    // (views only gain rows during a poll, and those arrive whole).
                    row.base.clear();
                    row.base.extend_from_slice(&row.bytes);
                }
                let old_cell = self.row_grid.cell(self.hot[id.0 as usize].pos);
                if row.bytes.len() == update.new.len() {
                    row.bytes.copy_from_slice(&update.new);
                } else {
                    row.bytes = update.new.clone();
                }
                row.owner = owner;
                let old_pos = std::mem::replace(&mut self.hot[id.0 as usize].pos, pos);
                if spatial && old_pos != pos {
                    let new_cell = self.row_grid.cell(pos);
                    if new_cell == old_cell {
                        self.row_grid.set_point(old_cell, id.0, pos);
                    } else {
                        self.row_grid.remove(old_cell, id.0);
                        self.row_grid.insert(new_cell, id.0, pos);
                    }
                }
                self.mark_changed(id);
            }
            for new in &tc.inserts {
                self.insert_row(tc.table, new);
            }
        }
    }

    // ---- clients ------------------------------------------------------------------------------------------

    fn client_mut(&mut self, client: ClientId) -> Option<&mut Client> {
        self.clients.get_mut(client.0 as usize)?.as_mut()
    }

    /// A client connected with `identity` (it sees nothing until it subscribes). Connecting an id that is
    /// connected replaces it.
    pub fn handle_connect(&mut self, client: ClientId, identity: Identity) {
        self.handle_disconnect(client);
        let i = client.0 as usize;
        if self.clients.len() <= i {
            self.clients.resize_with(i + 1, || None);
        }
        self.clients[i] = Some(Client {
            identity,
            area: None,
            center: None,
            prev_center: None,
            followed: None,
            cell: None,
            subs: Vec::new(),
            quick: 0,
            full: true,
            rescan: Vec::new(),
            capped: false,
            view: Vec::new(),
            priority: Vec::new(),
            spatial: 0,
            touched: Vec::new(),
            pending: Vec::new(),
            out: Delta::default(),
        });
        self.by_identity.entry(identity).or_default().push(client.0);
    }

    /// A client disconnected: forget it and its view (nothing is sent). Its id may be connected again (to anyone)
    /// at once: nothing of the old client is left in its slot. The slots past the highest connected id are
    /// dropped, and their memory too once they are mostly unused.
    pub fn handle_disconnect(&mut self, client: ClientId) {
        let Some(slot) = self.clients.get_mut(client.0 as usize) else {
            return;
        };
        let Some(c) = slot.take() else { return };
        let live = self
            .clients
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        self.clients.truncate(live);
        // Give back the memory of a past peak, keeping twice the slots in use so that a crowd coming and going does
        // not reallocate every time. A poll's per-client scratch is rebuilt by the next poll.
        if self.clients.capacity() > 4 * live.max(16) {
            let keep = 2 * live.max(16);
            self.clients.shrink_to(keep);
            self.modes.clear();
            self.modes.shrink_to(keep);
            self.order.clear();
            self.order.shrink_to(keep);
        }
        for e in &c.view {
            let row = &mut self.rows[e.row.0 as usize];
            row.watchers.retain(|(w, _)| *w != client.0);
        }
        if let Some(cell) = c.cell {
            self.client_grid.remove(cell, client.0);
        }
        for (table, _) in &c.subs {
            self.tables[table.0 as usize]
                .subscribers
                .retain(|s| *s != client.0);
        }
        if let Some(list) = self.by_identity.get_mut(&c.identity) {
            list.retain(|s| *s != client.0);
            if list.is_empty() {
                self.by_identity.remove(&c.identity);
            }
        }
    }

    /// Set (or with `None` clear) a client's area of interest; takes effect at the next poll.
    ///
    /// # Errors
    ///
    /// An [`AreaError`]: an unknown client, a followed table that is not spatial, or radii that are not
    /// `0 ≤ enter ≤ leave ≤` [`max_radius`](InterestConfig::max_radius).
    pub fn handle_area(&mut self, client: ClientId, area: Option<Area>) -> Result<(), AreaError> {
        if let Some(a) = &area {
            if !(a.enter_radius >= 0.0
                && a.enter_radius <= a.leave_radius
                && a.leave_radius <= self.config.max_radius)
            {
                return Err(AreaError::Radius {
                    enter: a.enter_radius,
                    leave: a.leave_radius,
                    max: self.config.max_radius,
                });
            }
            if let Center::Follow { table, .. } = &a.center
                && self
                    .tables
                    .get(table.0 as usize)
                    .is_none_or(|t| t.spatial.is_none())
            {
                return Err(AreaError::NotSpatial(*table));
            }
            if let Center::Fixed(p) = a.center
                && !p.is_finite()
            {
                return Err(AreaError::Center(p));
            }
        }
        let c = self
            .client_mut(client)
            .ok_or(AreaError::NoSuchClient(client))?;
        c.area = area;
        c.followed = None;
        c.full = true;
        Ok(())
    }

    /// Subscribe a client to a table's rows that match `filter` (replacing its earlier subscription to that table);
    /// the matching rows are sent at the next poll. For a spatial table only rows in the client's area are sent.
    ///
    /// # Errors
    ///
    /// A [`SubscribeError`]: an unknown client or table, a private table (never sent), a filter on an unknown
    /// column or with a value of the wrong type, or [`Filter::Owner`] on a table without an owner column.
    pub fn handle_subscribe(
        &mut self,
        client: ClientId,
        table: TableId,
        filter: Filter,
    ) -> Result<(), SubscribeError> {
        let info = self
            .tables
            .get(table.0 as usize)
            .ok_or(SubscribeError::NoSuchTable(table))?;
        if !info.public {
            return Err(SubscribeError::Private(table));
        }
        match &filter {
            Filter::All => {}
            Filter::Eq { column, value } => {
                let def = info
                    .columns
                    .get(column.index())
                    .ok_or(SubscribeError::NoSuchColumn(*column))?;
                if !def.ty.admits(value) {
                    return Err(SubscribeError::ValueType {
                        column: def.name.clone(),
                        value: value.clone(),
                    });
                }
            }
            Filter::Owner if info.owner.is_none() => return Err(SubscribeError::NoOwner(table)),
            Filter::Owner => {}
        }
        let spatial = info.spatial.is_some();
        let c = self
            .clients
            .get_mut(client.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(SubscribeError::NoSuchClient(client))?;
        match c.subs.iter_mut().find(|(t, _)| *t == table) {
            Some((_, f)) => *f = filter,
            None => {
                c.subs.push((table, filter));
                self.tables[table.0 as usize].subscribers.push(client.0);
            }
        }
        c.quick = Self::quick_mask(&self.tables, &c.subs);
        if spatial {
            c.full = true;
        } else if !c.rescan.contains(&table) {
            c.rescan.push(table);
        }
        Ok(())
    }

    /// End a client's subscription to a table; its rows leave the client's view at the next poll.
    pub fn handle_unsubscribe(&mut self, client: ClientId, table: TableId) {
        let spatial = self
            .tables
            .get(table.0 as usize)
            .is_some_and(|t| t.spatial.is_some());
        let Some(c) = self
            .clients
            .get_mut(client.0 as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        let before = c.subs.len();
        c.subs.retain(|(t, _)| *t != table);
        if c.subs.len() == before {
            return;
        }
        c.quick = Self::quick_mask(&self.tables, &c.subs);
        if spatial {
            c.full = true;
        } else if !c.rescan.contains(&table) {
            c.rescan.push(table);
        }
        self.tables[table.0 as usize]
            .subscribers
            .retain(|s| *s != client.0);
    }

    // ---- the tick -----------------------------------------------------------------------------------------

    /// Compute every client's delta for tick `tick` from the changesets and subscription changes fed since the
    /// last poll.
    pub fn poll_tick(&mut self, tick: Tick) -> Deltas<'_> {
        self.tick = tick;
        for id in std::mem::take(&mut self.tombstones) {
            self.free.push(id);
        }
        for c in self.clients.iter_mut().flatten() {
            c.out.clear();
        }
        self.update_centers();
        self.rescan_tables();
        self.changed_rows();
        // Client by client, so each client's view is still in cache from one step to the next; and in the order
        // of their grid cells, so neighbours, who see mostly the same rows, come one after the other.
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(
            self.clients
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (c.cell, i as u32))),
        );
        order.sort_unstable();
        for (k, &(_, ci)) in order.iter().enumerate() {
            self.prefetch_ahead(&order, k);
            let ci = ci as usize;
            let one = ci..ci + 1;
            self.moved_clients(one.clone());
            self.full_clients(one.clone());
            self.enforce_cap(one.clone());
            self.output(one);
        }
        self.order = order;
        self.gather_key = None;
        for id in std::mem::take(&mut self.changed) {
            if !self.rows[id.0 as usize].alive {
                self.tombstones.push(id);
            }
        }
        self.seq += 1;
        Deltas { interest: self }
    }

    /// Start loading what the clients after the `k`-th in `order` will read: three ahead, the client itself; two
    /// ahead, its view (its address is in the client, loaded one step before); one ahead, the hot fields of its
    /// view's rows (listed in the view, loaded one step before).
    fn prefetch_ahead(&self, order: &[(Option<Cell>, u32)], k: usize) {
        if let Some(&(_, ci)) = order.get(k + 3) {
            prefetch(&raw const self.clients[ci as usize]);
        }
        if let Some(&(_, ci)) = order.get(k + 2)
            && let Some(c) = &self.clients[ci as usize]
        {
            for line in c.view.chunks(64 / size_of::<Entry>()) {
                prefetch(line.as_ptr());
            }
        }
        if let Some(&(_, ci)) = order.get(k + 1)
            && let Some(c) = &self.clients[ci as usize]
        {
            for e in &c.view {
                prefetch(&raw const self.hot[e.row.0 as usize]);
            }
        }
    }

    fn update_centers(&mut self) {
        self.max_enter = 0.0;
        self.modes.clear();
        self.modes.resize(self.clients.len(), Mode::Still);
        for (ci, slot) in self.clients.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            if let Some(a) = &c.area {
                self.max_enter = self.max_enter.max(a.enter_radius);
            }
            let center = match c.area.as_ref().map(|a| &a.center) {
                None => None,
                Some(Center::Fixed(p)) => Some(*p),
                Some(Center::Follow { table, key }) => {
                    // The followed row, looked up by key only when the cached id is gone.
                    let cached = c.followed.filter(|id| self.rows[id.0 as usize].alive);
                    c.followed = cached.or_else(|| self.index.get(*table, key));
                    c.followed.map(|id| self.hot[id.0 as usize].pos)
                }
            };
            c.prev_center = c.center;
            c.center = center;
            self.modes[ci] = if c.full || c.capped {
                Mode::Full
            } else if c.center != c.prev_center {
                Mode::Moved
            } else {
                Mode::Still
            };
            let cell = center.map(|p| self.client_grid.cell(p));
            if cell != c.cell {
                if let Some(old) = c.cell {
                    self.client_grid.remove(old, ci as u32);
                }
                if let Some(new) = cell {
                    self.client_grid
                        .insert(new, ci as u32, center.expect("a cell has a center"));
                }
                c.cell = cell;
            } else if let (Some(cell), Some(p)) = (cell, center)
                && c.prev_center != center
            {
                self.client_grid.set_point(cell, ci as u32, p);
            }
        }
    }

    /// Whether `row` is admitted for client `c`: subscribed, matching the filter, and allowed.
    fn admits(tables: &[TableInfo], offsets: &mut Vec<u32>, c: &Client, row: &Row) -> bool {
        let Some((_, filter)) = c.subs.iter().find(|(t, _)| *t == row.table) else {
            return false;
        };
        if row.owner.is_some_and(|o| o != c.identity) {
            return false;
        }
        match filter {
            Filter::All => true,
            Filter::Owner => row.owner == Some(c.identity),
            Filter::Eq { column, value } => {
                let info = &tables[row.table.0 as usize];
                codec::validate_row(&info.columns, &row.bytes, offsets).expect("valid");
                let bytes = &row.bytes
                    [offsets[column.index()] as usize..offsets[column.index() + 1] as usize];
                codec::decode_value(&info.columns[column.index()], bytes).is_ok_and(|v| v == *value)
            }
        }
    }

    /// Whether every row of `table` is admitted for `c` without looking at the row: subscribed with no filter,
    /// and no owner column.
    fn admits_quick(tables: &[TableInfo], c: &Client, table: TableId) -> bool {
        if table.0 < 64 {
            return c.quick & (1 << table.0) != 0;
        }
        tables[table.0 as usize].owner.is_none()
            && c.subs
                .iter()
                .any(|(t, f)| *t == table && matches!(f, Filter::All))
    }

    /// `Client::quick` for subscriptions `subs`.
    fn quick_mask(tables: &[TableInfo], subs: &[(TableId, Filter)]) -> u64 {
        subs.iter()
            .filter(|(t, f)| {
                t.0 < 64 && matches!(f, Filter::All) && tables[t.0 as usize].owner.is_none()
            })
            .fold(0, |mask, (t, _)| mask | 1 << t.0)
    }

    fn rescan_tables(&mut self) {
        for ci in 0..self.clients.len() {
            let Some(c) = self.clients[ci].as_mut() else {
                continue;
            };
            if c.rescan.is_empty() {
                continue;
            }
            for table in std::mem::take(&mut c.rescan) {
                self.mark += 1;
                let mark = self.mark;
                let c = self.clients[ci].as_ref().expect("connected");
                let mut admitted = Vec::new();
                for &id in &self.tables[table.0 as usize].rows {
                    let row = &self.rows[id.0 as usize];
                    if Self::admits(&self.tables, &mut self.offsets, c, row) {
                        admitted.push(id);
                    }
                }
                for &id in &admitted {
                    self.hot[id.0 as usize].mark = mark;
                }
                // Leave: view rows of the table no longer admitted.
                let c = self.clients[ci].as_ref().expect("connected");
                let leaving: Vec<RowId> = c
                    .view
                    .iter()
                    .filter(|e| e.table() == table && self.hot[e.row.0 as usize].mark != mark)
                    .map(|e| e.row)
                    .collect();
                for id in leaving {
                    self.remove_view(ci as u32, id);
                }
                for id in admitted {
                    if self.watcher(id, ci as u32).is_none() {
                        self.add_view(ci as u32, id);
                    }
                }
            }
        }
    }

    /// The index in `row.watchers` of client `c`.
    fn watcher(&self, row: RowId, c: u32) -> Option<usize> {
        self.rows[row.0 as usize]
            .watchers
            .iter()
            .position(|(w, _)| *w == c)
    }

    fn add_view(&mut self, c: u32, row: RowId) {
        let client = self.clients[c as usize].as_mut().expect("connected");
        let slot = client.view.len() as u32;
        let table = self.rows[row.0 as usize].table;
        let spatial = self.tables[table.0 as usize].spatial.is_some();
        client.view.push(Entry {
            row,
            table: table.0 as u16,
            spatial,
            flags: QUEUED,
        });
        client.priority.push(0.0);
        client.touched.push(row);
        let r = &mut self.rows[row.0 as usize];
        if spatial {
            client.spatial += 1;
        }
        r.watchers.push((c, slot));
    }

    fn remove_view(&mut self, c: u32, row: RowId) {
        let wi = self.watcher(row, c).expect("row in view");
        let r = &mut self.rows[row.0 as usize];
        let (_, slot) = r.watchers.swap_remove(wi);
        let spatial = self.tables[r.table.0 as usize].spatial.is_some();
        let client = self.clients[c as usize].as_mut().expect("connected");
        let entry = client.view.swap_remove(slot as usize);
        client.priority.swap_remove(slot as usize);
        if entry.has(SENT) {
            // An update already emitted this tick (an eviction after it) would follow the delete: drop it.
            if let Some(i) = client.out.updates.iter().rposition(|r| *r == row) {
                client.out.updates.remove(i);
            } else if let Some(i) = client.out.patches.iter().rposition(|r| *r == row) {
                client.out.patches.remove(i);
            }
            client.out.deletes.push(row);
        }
        if spatial {
            client.spatial -= 1;
        }
        if let Some(moved) = client.view.get(slot as usize) {
            let m = &mut self.rows[moved.row.0 as usize];
            let w = m
                .watchers
                .iter_mut()
                .find(|(w, _)| *w == c)
                .expect("view and watchers agree");
            w.1 = slot;
        }
    }

    fn mark_dirty(client: &mut Client, slot: u32) {
        let e = &mut client.view[slot as usize];
        e.set(DIRTY, true);
        if !e.has(QUEUED) {
            e.set(QUEUED, true);
            client.touched.push(e.row);
        }
    }

    fn changed_rows(&mut self) {
        let changed = std::mem::take(&mut self.changed);
        let mut candidates = std::mem::take(&mut self.candidates);
        let any_still = self
            .clients
            .iter()
            .zip(&self.modes)
            .any(|(c, m)| *m == Mode::Still && c.as_ref().is_some_and(|c| c.center.is_some()));
        for &id in &changed {
            let table = self.rows[id.0 as usize].table;
            let info = &self.tables[table.0 as usize];
            let spatial = info.spatial.is_some();
            let has_owner_column = info.owner.is_some();
            if !self.rows[id.0 as usize].alive {
                while let Some(&(w, _)) = self.rows[id.0 as usize].watchers.last() {
                    self.remove_view(w, id);
                }
                continue;
            }
            {
                // The patch its watchers may get (a client taking it into view this tick gets it whole).
                let row = &mut self.rows[id.0 as usize];
                row.patch.clear();
                if !row.base.is_empty() {
                    if !row.watchers.is_empty() {
                        patch::make_patch(
                            &info.columns,
                            info.pk.index(),
                            &row.base,
                            &row.bytes,
                            &mut self.patch_scratch,
                            &mut row.patch,
                        );
                    }
                    row.base.clear();
                }
            }
            // Watchers: leave, or an update. Of a spatial row, only clients standing still: the others go over
            // their own view this tick (`moved_clients`, `full_clients`).
            let mut i = if spatial && !any_still {
                0
            } else {
                self.rows[id.0 as usize].watchers.len()
            };
            while i > 0 {
                i -= 1;
                let (w, slot) = self.rows[id.0 as usize].watchers[i];
                if spatial && self.modes[w as usize] != Mode::Still {
                    continue;
                }
                let c = self.clients[w as usize].as_ref().expect("connected");
                let row = &self.rows[id.0 as usize];
                let stays = Self::admits(&self.tables, &mut self.offsets, c, row)
                    && (!spatial
                        || match (c.center, &c.area) {
                            (Some(center), Some(a)) => {
                                dist2(center, self.hot[id.0 as usize].pos)
                                    <= a.leave_radius * a.leave_radius
                            }
                            _ => false,
                        });
                if stays {
                    let c = self.clients[w as usize].as_mut().expect("connected");
                    Self::mark_dirty(c, slot);
                } else {
                    self.remove_view(w, id);
                }
            }
            // Enter.
            if spatial {
                if !any_still {
                    continue;
                }
                let pos = self.hot[id.0 as usize].pos;
                candidates.clear();
                let modes = &self.modes;
                self.client_grid.for_each_near(pos, self.max_enter, |w, _| {
                    if modes[w as usize] == Mode::Still {
                        candidates.push(w);
                    }
                });
                for &w in &candidates {
                    let c = self.clients[w as usize].as_ref().expect("connected");
                    let (Some(center), Some(a)) = (c.center, &c.area) else {
                        continue;
                    };
                    let row = &self.rows[id.0 as usize];
                    if dist2(center, self.hot[id.0 as usize].pos) <= a.enter_radius * a.enter_radius
                        && self.watcher(id, w).is_none()
                        && Self::admits(&self.tables, &mut self.offsets, c, row)
                    {
                        self.add_view(w, id);
                    }
                }
            } else {
                let owner = self.rows[id.0 as usize].owner;
                candidates.clear();
                match (has_owner_column, owner) {
                    (true, Some(o)) => {
                        candidates.extend(self.by_identity.get(&o).into_iter().flatten());
                    }
                    (true, None) => {}
                    (false, _) => candidates.extend(&self.tables[table.0 as usize].subscribers),
                }
                for &w in &candidates {
                    let Some(c) = self.clients[w as usize].as_ref() else {
                        continue;
                    };
                    let row = &self.rows[id.0 as usize];
                    if self.watcher(id, w).is_none()
                        && Self::admits(&self.tables, &mut self.offsets, c, row)
                    {
                        self.add_view(w, id);
                    }
                }
            }
        }
        self.changed = changed;
        self.candidates = candidates;
    }

    fn moved_clients(&mut self, clients: std::ops::Range<usize>) {
        let seq = self.seq;
        let unlimited = self.config.byte_budget.is_none();
        let mut near = std::mem::take(&mut self.near);
        for ci in clients.clone() {
            let Some(c) = self.clients[ci].as_ref() else {
                continue;
            };
            if self.modes[ci] != Mode::Moved {
                continue;
            }
            let (center, enter2, leave2, prev) = match (c.center, &c.area) {
                (Some(center), Some(a)) => (
                    center,
                    a.enter_radius * a.enter_radius,
                    a.leave_radius * a.leave_radius,
                    c.prev_center,
                ),
                _ => {
                    // No center (the followed row is gone): every spatial row leaves.
                    self.drop_spatial(ci as u32);
                    continue;
                }
            };
            // The spatial rows in view: leave beyond the leave radius (or when no longer admitted), an update if
            // changed; the rest are marked, so the enter scan below knows them without a search.
            self.mark += 1;
            let mark = self.mark;
            // Forward (the order the hardware prefetches in); a removal swaps the last entry into `slot`, which is
            // then looked at next.
            let mut slot = 0;
            loop {
                let c = self.clients[ci].as_ref().expect("connected");
                let Some(&e) = c.view.get(slot) else { break };
                if !e.spatial {
                    slot += 1;
                    continue;
                }
                let hot = self.hot[e.row.0 as usize];
                let leaves = dist2(center, hot.pos) > leave2
                    || (hot.changed == seq
                        && !Self::admits_quick(&self.tables, c, e.table())
                        && !Self::admits(
                            &self.tables,
                            &mut self.offsets,
                            c,
                            &self.rows[e.row.0 as usize],
                        ));
                if leaves {
                    self.remove_view(ci as u32, e.row);
                } else {
                    self.hot[e.row.0 as usize].mark = mark;
                    if hot.changed == seq {
                        let c = self.clients[ci].as_mut().expect("connected");
                        if unlimited && e.flags & (SENT | QUEUED) == SENT {
                            // Nothing can defer it: straight into the delta.
                            if Self::patchable(&self.rows, &self.hot, seq, e) {
                                c.out.patches.push(e.row);
                            } else {
                                c.out.updates.push(e.row);
                            }
                        } else {
                            Self::mark_dirty(c, slot as u32);
                        }
                    }
                    slot += 1;
                }
            }
            // Enter: rows now within the enter radius. An unchanged row that was within it of the previous center
            // is in view already (invariant 3; a capped client is recomputed in full instead).
            // The rows of the cells around the client's cell, gathered once for every client in that cell (they
            // come one after the other: `poll_tick` goes through clients in cell order).
            let key = (
                self.row_grid.cell(center),
                self.row_grid.reach(enter2.sqrt()),
            );
            if self.gather_key != Some(key) {
                self.row_grid.gather_block(key.0, key.1, &mut self.gathered);
                self.gather_key = Some(key);
            }
            near.clear();
            self.gathered.within(center, enter2, &mut near);
            for &id in &near {
                let id = RowId(id);
                let hot = self.hot[id.0 as usize];
                if hot.mark == mark {
                    continue;
                }
                if hot.changed != seq && prev.is_some_and(|p| dist2(p, hot.pos) <= enter2) {
                    continue;
                }
                let c = self.clients[ci].as_ref().expect("connected");
                let row = &self.rows[id.0 as usize];
                if Self::admits(&self.tables, &mut self.offsets, c, row) {
                    self.add_view(ci as u32, id);
                }
            }
        }
        self.near = near;
    }

    fn drop_spatial(&mut self, ci: u32) {
        let c = self.clients[ci as usize].as_ref().expect("connected");
        let spatial: Vec<RowId> = c
            .view
            .iter()
            .filter(|e| {
                let row = &self.rows[e.row.0 as usize];
                self.tables[row.table.0 as usize].spatial.is_some()
            })
            .map(|e| e.row)
            .collect();
        for id in spatial {
            self.remove_view(ci, id);
        }
    }

    fn full_clients(&mut self, clients: std::ops::Range<usize>) {
        let max = self.config.max_visible;
        for ci in clients.clone() {
            let Some(c) = self.clients[ci].as_mut() else {
                continue;
            };
            if self.modes[ci] != Mode::Full {
                continue;
            }
            c.full = false;
            let (center, enter2, leave2, leave) = match (c.center, &c.area) {
                (Some(center), Some(a)) => (
                    center,
                    a.enter_radius * a.enter_radius,
                    a.leave_radius * a.leave_radius,
                    a.leave_radius,
                ),
                _ => {
                    c.capped = false;
                    self.drop_spatial(ci as u32);
                    continue;
                }
            };
            // Candidates: admitted rows within the enter radius, and admitted view rows within the leave radius.
            let mut candidates = std::mem::take(&mut self.scratch);
            candidates.clear();
            let mut near = Vec::new();
            self.row_grid.for_each_near(center, leave, |id, at| {
                if dist2(center, at) <= leave2 {
                    near.push(RowId(id));
                }
            });
            let c = self.clients[ci].as_ref().expect("connected");
            for id in near {
                let row = &self.rows[id.0 as usize];
                let d = dist2(center, self.hot[id.0 as usize].pos);
                if d > leave2 {
                    continue;
                }
                let in_view = self.watcher(id, ci as u32).is_some();
                if (d <= enter2 || in_view) && Self::admits(&self.tables, &mut self.offsets, c, row)
                {
                    candidates.push((d, id));
                }
            }
            let capped = candidates.len() > max;
            if capped {
                // The nearest `max`; ties broken by row id, so the choice is deterministic.
                candidates
                    .select_nth_unstable_by(max, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                candidates.truncate(max);
            }
            self.mark += 1;
            let mark = self.mark;
            for &(_, id) in &candidates {
                self.hot[id.0 as usize].mark = mark;
            }
            let c = self.clients[ci].as_ref().expect("connected");
            let leaving: Vec<RowId> = c
                .view
                .iter()
                .filter(|e| e.spatial && self.hot[e.row.0 as usize].mark != mark)
                .map(|e| e.row)
                .collect();
            for id in leaving {
                self.remove_view(ci as u32, id);
            }
            for &(_, id) in &candidates {
                if self.watcher(id, ci as u32).is_none() {
                    self.add_view(ci as u32, id);
                }
            }
            // Rows that stayed and changed: an update (their watchers were left to this pass).
            let c = self.clients[ci].as_mut().expect("connected");
            for slot in 0..c.view.len() {
                let e = c.view[slot];
                if e.spatial && self.hot[e.row.0 as usize].changed == self.seq {
                    Self::mark_dirty(c, slot as u32);
                }
            }
            c.capped = capped;
            self.scratch = candidates;
        }
    }

    /// Clients over the cap after this tick's enters: keep the nearest, and recompute them in full until the
    /// crowd thins.
    fn enforce_cap(&mut self, clients: std::ops::Range<usize>) {
        let max = self.config.max_visible;
        for ci in clients.clone() {
            let Some(c) = self.clients[ci].as_ref() else {
                continue;
            };
            if c.spatial <= max {
                continue;
            }
            let center = c.center.expect("spatial rows in view need a center");
            let mut spatial: Vec<(f32, RowId)> = c
                .view
                .iter()
                .filter(|e| e.spatial)
                .map(|e| (dist2(center, self.hot[e.row.0 as usize].pos), e.row))
                .collect();
            spatial.select_nth_unstable_by(max, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for &(_, id) in &spatial[max..] {
                self.remove_view(ci as u32, id);
            }
            self.clients[ci].as_mut().expect("connected").capped = true;
        }
    }

    /// Whether the changed row of view entry `e` goes to its client as a patch (see [Patches](self#patches)).
    fn patchable(rows: &[Row], hot: &[Hot], seq: u64, e: Entry) -> bool {
        !e.has(STALE)
            && hot[e.row.0 as usize].changed == seq
            && !rows[e.row.0 as usize].patch.is_empty()
    }

    fn output(&mut self, clients: std::ops::Range<usize>) {
        let budget = self.config.byte_budget;
        let overhead = self.config.row_overhead;
        let seq = self.seq;
        for ci in clients.clone() {
            let Some(c) = self.clients[ci].as_mut() else {
                continue;
            };
            if budget.is_none() && c.touched.len() * 8 >= c.view.len() {
                // Most of the view is queued: walk the view itself instead of looking each row up.
                for e in &mut c.view {
                    if !e.has(QUEUED) {
                        continue;
                    }
                    if !e.has(SENT) {
                        c.out.inserts.push(e.row);
                    } else if e.has(DIRTY) {
                        if Self::patchable(&self.rows, &self.hot, seq, *e) {
                            c.out.patches.push(e.row);
                        } else {
                            c.out.updates.push(e.row);
                        }
                    }
                    e.flags = SENT;
                }
                c.touched.clear();
                continue;
            }
            let mut queue = std::mem::take(&mut c.touched);
            queue.append(&mut c.pending);
            // Resolve each queued row to its view slot; rows that left the view are dropped.
            let mut items: Vec<(u32, RowId)> = Vec::with_capacity(queue.len());
            for &id in &queue {
                if let Some(&(_, slot)) = self.rows[id.0 as usize]
                    .watchers
                    .iter()
                    .find(|(w, _)| *w == ci as u32)
                {
                    items.push((slot, id));
                }
            }
            queue.clear();
            let c = self.clients[ci].as_mut().expect("connected");
            match budget {
                None => {
                    for (slot, id) in items {
                        let e = &mut c.view[slot as usize];
                        if !e.has(SENT) {
                            c.out.inserts.push(id);
                        } else if e.has(DIRTY) {
                            if Self::patchable(&self.rows, &self.hot, seq, *e) {
                                c.out.patches.push(id);
                            } else {
                                c.out.updates.push(id);
                            }
                        }
                        e.flags = SENT;
                    }
                }
                Some(budget) => {
                    let enter = c.area.as_ref().map_or(1.0, |a| a.leave_radius.max(1.0));
                    // Accumulate priority: +1 per tick waiting, up to +1 more for nearness, +1 for entering.
                    for &(slot, id) in &items {
                        let row = &self.rows[id.0 as usize];
                        let near = match (c.center, self.tables[row.table.0 as usize].spatial) {
                            (Some(center), Some(_)) => (1.0
                                - (center - self.hot[id.0 as usize].pos).length() / enter)
                                .clamp(0.0, 1.0),
                            _ => 1.0,
                        };
                        let sent = c.view[slot as usize].has(SENT);
                        c.priority[slot as usize] += 1.0 + near + if sent { 0.0 } else { 1.0 };
                    }
                    items.sort_by(|a, b| {
                        let pa = c.priority[a.0 as usize];
                        let pb = c.priority[b.0 as usize];
                        pb.total_cmp(&pa).then(a.1.cmp(&b.1))
                    });
                    let mut spent = c.out.deletes.len() * 2 * overhead;
                    let mut sent_any = false;
                    for (slot, id) in items {
                        let e = &mut c.view[slot as usize];
                        let patched =
                            e.has(SENT) && Self::patchable(&self.rows, &self.hot, seq, *e);
                        let row = &self.rows[id.0 as usize];
                        let size = if patched {
                            row.patch.len()
                        } else {
                            row.bytes.len()
                        } + overhead;
                        if e.flags & (SENT | DIRTY) != SENT {
                            if sent_any && spent + size > budget {
                                // Deferred: by the time it is sent the client may be a version behind.
                                e.set(STALE, true);
                                c.pending.push(id);
                                continue;
                            }
                            spent += size;
                            sent_any = true;
                            if patched {
                                c.out.patches.push(id);
                            } else if e.has(SENT) {
                                c.out.updates.push(id);
                            } else {
                                c.out.inserts.push(id);
                            }
                        }
                        e.flags = SENT;
                        c.priority[slot as usize] = 0.0;
                    }
                }
            }
            c.touched = queue;
        }
    }
}

/// The deltas of one tick, borrowed from the [`Interest`] stage until its next `handle_*` call.
#[derive(Debug)]
pub struct Deltas<'a> {
    interest: &'a Interest,
}

impl<'a> Deltas<'a> {
    /// The tick.
    #[must_use]
    pub fn tick(&self) -> Tick {
        self.interest.tick
    }

    /// Every connected client's delta (empty ones included), in client-id order.
    pub fn iter(&self) -> impl Iterator<Item = (ClientId, &'a Delta)> + 'a {
        self.interest
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (ClientId(i as u32), &c.out)))
    }

    /// One client's delta.
    #[must_use]
    pub fn get(&self, client: ClientId) -> Option<&'a Delta> {
        self.interest
            .clients
            .get(client.0 as usize)?
            .as_ref()
            .map(|c| &c.out)
    }

    /// The table, key and bytes of a row in a delta.
    ///
    /// # Panics
    ///
    /// If `row` is not from this tick's deltas.
    #[must_use]
    pub fn row(&self, row: RowId) -> RowRef<'a> {
        let r = &self.interest.rows[row.0 as usize];
        RowRef {
            table: r.table,
            key: &r.key,
            bytes: &r.bytes,
            patch: &r.patch,
        }
    }

    /// Rows delivered to all clients: the sum of their deltas' lengths.
    #[must_use]
    pub fn delivered(&self) -> usize {
        self.iter().map(|(_, d)| d.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_types::{ColumnType, IndexKind, TableDef};

    /// A world of a spatial table `unit` (id, pos) with a row at each x of `xs`, and a table `item` (id, owner)
    /// with an owner column and one row owned by each of `owners`.
    fn world(xs: &[f32], owners: &[Identity]) -> (Database, Interest) {
        let mut db = Database::default();
        let unit = TableDef::builder("unit")
            .column("id", ColumnType::U32)
            .column("pos", ColumnType::Vec2)
            .primary_key("id")
            .index("pos", IndexKind::Spatial)
            .access(TableAccess::Public)
            .build()
            .expect("valid");
        let item = TableDef::builder("item")
            .column("id", ColumnType::U32)
            .column("owner", ColumnType::Identity)
            .primary_key("id")
            .owner("owner")
            .access(TableAccess::Public)
            .build()
            .expect("valid");
        let (u, i) = (
            db.create_table(unit.clone()).expect("create"),
            db.create_table(item.clone()).expect("create"),
        );
        let mut tx = db.begin();
        for (k, &x) in xs.iter().enumerate() {
            let row = [Value::U64(k as u64), Value::Vec2(Vec2::new(x, 0.0))];
            tx.insert(u, &codec::encode_row(&unit.columns, &row).expect("encode"))
                .expect("insert");
        }
        for (k, &owner) in owners.iter().enumerate() {
            let row = [Value::U64(k as u64), Value::Identity(owner)];
            tx.insert(i, &codec::encode_row(&item.columns, &row).expect("encode"))
                .expect("insert");
        }
        let _ = tx.commit();
        let interest = Interest::new(InterestConfig::default(), &db);
        (db, interest)
    }

    const UNIT: TableId = TableId(0);
    const ITEM: TableId = TableId(1);

    /// Connect `client` as `identity`, watching units within 50 m of the origin and its own items.
    fn join(interest: &mut Interest, client: ClientId, identity: Identity) {
        interest.handle_connect(client, identity);
        interest
            .handle_subscribe(client, UNIT, Filter::All)
            .expect("subscribe");
        interest
            .handle_subscribe(client, ITEM, Filter::Owner)
            .expect("subscribe");
        let area = Area {
            center: Center::Fixed(Vec2::ZERO),
            enter_radius: 50.0,
            leave_radius: 60.0,
        };
        interest.handle_area(client, Some(area)).expect("area");
    }

    /// What the stage holds for clients: slots and their capacity, identities, clients in the grid, subscribers,
    /// and watchers of rows.
    fn client_state(interest: &Interest) -> [usize; 6] {
        let mut in_grid = 0;
        interest
            .client_grid
            .for_each_near(Vec2::ZERO, 1e4, |_, _| in_grid += 1);
        [
            interest.client_slots(),
            interest.clients.capacity(),
            interest.by_identity.len(),
            in_grid,
            interest.tables.iter().map(|t| t.subscribers.len()).sum(),
            interest.rows.iter().map(|r| r.watchers.len()).sum(),
        ]
    }

    #[test]
    fn ten_thousand_connects_and_disconnects_leave_the_client_slots_as_they_were() {
        let (_db, mut interest) = world(&[1.0, 10.0, 500.0], &[Identity([1; 32])]);
        // A player who stays, and one slot that comes and goes.
        join(&mut interest, ClientId(0), Identity([1; 32]));
        interest.poll_tick(Tick(1));
        let before = client_state(&interest);
        assert_eq!(before[0], 1);
        for cycle in 0..10_000u32 {
            let id = ClientId(1);
            join(&mut interest, id, Identity([(cycle % 200) as u8 + 2; 32]));
            let deltas = interest.poll_tick(Tick(2 + 2 * u64::from(cycle)));
            assert_eq!(deltas.get(id).expect("connected").inserts.len(), 2);
            interest.handle_disconnect(id);
            interest.poll_tick(Tick(3 + 2 * u64::from(cycle)));
        }
        assert_eq!(client_state(&interest), before);
        assert_eq!(interest.modes.len(), 1, "a poll walks one slot");
        assert!(interest.modes.capacity() <= 32 && interest.order.capacity() <= 32);
    }

    #[test]
    fn slots_shrink_back_after_a_peak() {
        let (_db, mut interest) = world(&[1.0], &[]);
        for c in 0..1_000 {
            join(&mut interest, ClientId(c), Identity([7; 32]));
        }
        interest.poll_tick(Tick(1));
        assert_eq!(interest.client_slots(), 1_000);
        // The peak leaves, but for client 3.
        for c in (0..1_000).filter(|&c| c != 3) {
            interest.handle_disconnect(ClientId(c));
        }
        assert_eq!(interest.client_slots(), 4);
        assert!(
            interest.clients.capacity() <= 64,
            "{}",
            interest.clients.capacity()
        );
        let deltas = interest.poll_tick(Tick(2));
        assert_eq!(deltas.iter().count(), 1);
        assert!(interest.modes.capacity() <= 64);
        interest.handle_disconnect(ClientId(3));
        assert_eq!(client_state(&interest)[..1], [0]);
        assert_eq!(client_state(&interest)[2..], [0; 4]);
    }

    #[test]
    fn a_reused_client_id_starts_afresh() {
        let (ada, bob) = (Identity([1; 32]), Identity([2; 32]));
        let (_db, mut interest) = world(&[1.0, 10.0], &[ada, bob]);
        let id = ClientId(0);
        join(&mut interest, id, ada);
        // Only inserts, as (table, key).
        let inserted = |deltas: &Deltas<'_>| -> Vec<(TableId, Value)> {
            let d = deltas.get(id).expect("connected");
            assert!(d.deletes.is_empty() && d.updates.is_empty() && d.patches.is_empty());
            let mut rows: Vec<_> = d
                .inserts
                .iter()
                .map(|&r| (deltas.row(r).table, deltas.row(r).key.clone()))
                .collect();
            rows.sort_by_key(|(t, k)| (*t, format!("{k:?}")));
            rows
        };
        assert_eq!(
            inserted(&interest.poll_tick(Tick(1))),
            [
                (UNIT, Value::U64(0)),
                (UNIT, Value::U64(1)),
                (ITEM, Value::U64(0))
            ]
        );
        // Ada leaves; Bob gets her id in the same tick: he is sent the whole view again, and his item, not hers.
        interest.handle_disconnect(id);
        join(&mut interest, id, bob);
        assert_eq!(
            inserted(&interest.poll_tick(Tick(2))),
            [
                (UNIT, Value::U64(0)),
                (UNIT, Value::U64(1)),
                (ITEM, Value::U64(1))
            ]
        );
        assert_eq!(interest.by_identity.len(), 1);
        assert!(interest.by_identity.contains_key(&bob));
    }

    #[test]
    fn the_key_index_keeps_dense_sparse_and_other_keys_apart() {
        let mut index = KeyIndex::default();
        let (t0, t1) = (TableId(0), TableId(1));
        index.insert(t0, Value::U64(5), RowId(50));
        index.insert(t1, Value::U64(5), RowId(51));
        // Far beyond twice the row count: the sparse map.
        index.insert(t0, Value::U64(1 << 40), RowId(52));
        index.insert(t0, Value::I64(-3), RowId(53));
        index.insert(t0, Value::String("k".into()), RowId(54));
        assert!(
            index.dense[0].len() < 4096,
            "large keys do not blow up the dense vector"
        );
        assert_eq!(index.len(), 5);
        assert_eq!(index.get(t0, &Value::U64(5)), Some(RowId(50)));
        assert_eq!(index.get(t1, &Value::U64(5)), Some(RowId(51)));
        assert_eq!(index.get(t0, &Value::U64(1 << 40)), Some(RowId(52)));
        assert_eq!(index.get(t0, &Value::I64(-3)), Some(RowId(53)));
        assert_eq!(index.get(t0, &Value::String("k".into())), Some(RowId(54)));
        assert_eq!(index.get(t0, &Value::U64(6)), None);
        assert_eq!(index.remove(t0, &Value::U64(5)), Some(RowId(50)));
        assert_eq!(index.remove(t0, &Value::U64(1 << 40)), Some(RowId(52)));
        assert_eq!(index.remove(t0, &Value::U64(5)), None);
        assert_eq!(index.get(t0, &Value::U64(5)), None);
        assert_eq!(index.get(t1, &Value::U64(5)), Some(RowId(51)));
        assert_eq!(index.len(), 3);
    }
}

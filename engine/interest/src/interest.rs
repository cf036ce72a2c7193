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
//! 4. at every poll that recomputes the client's view, a row of `E` left out of `V` is at least as far from the
//!    center as every row of `V` divided by `h`, the [`cap_hysteresis`](InterestConfig::cap_hysteresis) (the cap
//!    keeps the nearest, preferring rows already held: exactly the nearest with `h = 1`). A client with rows left out (a **capped** client)
//!    is recomputed at the `n`-th poll (counting from 1) where `(n + id) % k == 0`, with `id` its [`ClientId`] and
//!    `k` the [`recompute_interval`](InterestConfig::recompute_interval): at least every `k` polls, a crowd's
//!    clients in turn; and at once when its area or spatial subscriptions change or a row leaving its view makes
//!    room under the cap. Between its recomputations a capped client keeps its rows — each still updated, and
//!    leaving at once when deleted, no longer admitted or beyond the leave radius — and takes no new one in: a row
//!    that came nearer than a held one enters at the next recomputation, at most `k - 1` polls later. (A client
//!    that is not capped has 4 at every poll.)
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
//! was sent and not deferred by a byte budget since — or deferred only at polls where the row's change was of its
//! position alone, and this patch too is of its position alone (it carries the new position, not a difference).
//! Otherwise (or when the patch would not be shorter than the row) it goes as a whole-row update. So applying a
//! delta's patches to the rows the client holds always gives the rows' current bytes (with
//! [`InterestConfig::patches`] off, every change is a whole row).
//!
//! # Cost
//!
//! A tick's work is proportional to what changed and who watches it: each changed row visits its watchers (and,
//! for clients that stood still, the clients in the grid cells around it); each client whose center moved scans
//! the rows in the grid cells around it and its own view. A capped client scans its own view, and only at its
//! recomputations the rows around it (first only those within a little more than the radius it was last cut at),
//! so in a crowd the choice of the nearest rows costs a `1 / recompute_interval` share of the clients per poll.
//! Nothing scans the world per client. Each poll also walks
//! the client slots, one per [`ClientId`] up to the highest connected one, so the caller reuses ids (lowest free
//! first) and the slots stay bounded by the clients connected at the peak.
//!
//! # Parts
//!
//! The stage is made of parts that each own their state: the **mirror** of public rows (rows, key index, grid,
//! changed rows, each row's watchers; it also reads the module's area table), the **registry** of clients (dense
//! reused slots, identities, subscriptions, the client grid; each client owns its **view** and its delta), the
//! **passes** of a poll (one module each: changed rows, moved clients, full scans and the cap, the budgeted
//! output) and the **output** ([`Deltas`]). See `mirror.rs`, `registry.rs`, `view.rs`, `pass/` and `deltas.rs`.
//!
//! # Threads
//!
//! A poll's per-client work — each client's rescans, changed rows, moved or full scan, cap and output — reads the
//! mirror and writes only that client's own state, so [`Interest::poll_tick_on`] runs it on a thread pool the
//! caller passes in (the stage has no threads of its own), in runs of clients in grid-cell order; the views'
//! changes reach the rows' watchers afterwards, in that order. Likewise [`Interest::handle_changesets_on`] applies
//! each row's updates in runs of rows. What a client's pass computes depends on nothing another client's pass
//! writes, so the deltas are the same, row for row and in the same order, on any number of threads (a property
//! test checks 0, 1, 2 and 5). What stays on the calling thread: inserts and deletes, resolving each update's key,
//! the grid updates of moved rows, each client's center, the fan-out of changed rows to the clients standing
//! still, and handing the views' changes to the watchers.

use std::sync::Mutex;

use locus_store::{Changeset, Database};
use locus_types::{ColumnId, Identity, TableId, Tick, Value, Vec2};

use crate::deltas::Deltas;
use crate::error::{AreaError, SubscribeError};
use crate::mirror::Mirror;
use crate::pass::{self, Ctx, Scratch};
use crate::registry::Registry;
/// A connected client, numbered by the caller (the server's session id).
///
/// The stage keeps a slot per id up to the highest connected one, and every poll walks those slots: callers should
/// reuse ids, lowest free first (the server does), so that the slots stay as many as the clients connected at the
/// peak rather than every connection ever made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);

/// A row as the interest stage knows it; resolve it with [`Deltas::row`]. Valid for the tick's deltas only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowId(pub(crate) u32);

impl RowId {
    /// The id as a number: the same for a row as long as it stays in a client's view (a shell keeping per-client
    /// state about the rows it sent, as protocol version 3's handles, may key it by this).
    #[must_use]
    pub fn index(self) -> u32 {
        self.0
    }
}

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

/// The default [`InterestConfig::byte_budget`]: bytes one client may be sent per tick.
pub const DEFAULT_BYTE_BUDGET: usize = 1024;

/// Rows in view per client of the standard crowd, rounded up (about 56 measured): with
/// [`InterestConfig::parallel_min`], how many rows in all the views make a tick's per-client work worth spreading
/// over a pool whatever the number of clients.
pub const VIEW_ROWS_PER_CLIENT: usize = 64;

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
    /// How often, in polls, a client whose view is at the cap recomputes which rows are its nearest: at the polls
    /// where `(poll + client id) % recompute_interval == 0`, so the recomputations of a crowd spread evenly over
    /// the ticks. In between it keeps its rows (see [invariant 4](self#invariants-after-every-interestpoll_tick)).
    /// 1 recomputes every poll; 0 counts as 1. Default 4 (200 ms at 20 Hz).
    pub recompute_interval: u32,
    /// How much nearer than a row a capped client holds a new row must be to take its place: at a recomputation,
    /// rows already in the view compete at their distance divided by this factor, so a crowd milling at the edge
    /// of the cut does not swap rows in and out of every view (each swap is a delete and a whole-row insert) for a
    /// choice that hardly differs (see [invariant 4](self#invariants-after-every-interestpoll_tick)). 1 for the
    /// exact nearest; below 1 (or not a number) counts as 1. Default 1.25.
    pub cap_hysteresis: f32,
    /// Bytes one client may be sent per tick, counting each row as its length plus
    /// [`row_overhead`](Self::row_overhead) and each delete as twice the overhead; `None` for no limit. Rows over
    /// the budget stay pending, gaining priority every tick (nearer rows faster, entering rows first) until sent;
    /// deletes are always sent, and at least one row per tick. Default [`DEFAULT_BYTE_BUDGET`] (1,024 bytes: about
    /// one datagram per client per tick, 20 KiB/s at 20 Hz), well above what a client of the standard crowd needs
    /// (about 430 bytes a tick), so it bounds crowds — a town square, a siege — not ordinary play.
    pub byte_budget: Option<usize>,
    /// The most rows (inserts, updates and patches; deletes are not counted) one client in a crowd — its view at
    /// the [cap](Self::max_visible) — is sent per tick, under a [byte budget](Self::byte_budget) (with none, this is
    /// not applied either): what a crowd costs the server to encode and each client to apply grows with the rows
    /// sent, not their bytes, and a version-3 move is so short that the byte budget alone lets a town square's
    /// every move through. Rows over it wait as rows over the byte budget do. A client under the cap (ordinary
    /// play) is not held to it. `None` for no limit. Default 12 (240 rows a second at 20 Hz).
    pub row_budget: Option<usize>,
    /// Framing bytes counted per row against the budget. Default 8.
    pub row_overhead: usize,
    /// Send changed rows as patches of their changed columns where the client holds the previous version (see
    /// [Patches](self#patches)). Default `true`.
    pub patches: bool,
    /// The fewest clients connected, and rows changed (for applying a tick's updates and making patches), worth
    /// spreading over a thread pool; below it the work stays on the calling thread, whose cache already holds it
    /// (for a small world the split costs about what it saves). A crowd with fewer clients is spread all the same
    /// once their views hold as many rows as `parallel_min` clients of the standard crowd would
    /// ([`VIEW_ROWS_PER_CLIENT`] each): 1,500 clients in one square, 256 rows each, are worth every core. The
    /// output is the same either way. Default 2048.
    pub parallel_min: usize,
}

impl Default for InterestConfig {
    fn default() -> Self {
        InterestConfig {
            cell_size: 64.0,
            max_radius: 512.0,
            max_visible: 256,
            recompute_interval: 4,
            cap_hysteresis: 1.25,
            byte_budget: Some(DEFAULT_BYTE_BUDGET),
            row_budget: Some(12),
            row_overhead: 8,
            patches: true,
            parallel_min: 2048,
        }
    }
}

/// The interest stage: subscriptions and areas in, per-client deltas out. See the [module docs](self).
///
/// Sans-IO: driven by one owner (the tick thread) with `handle_*` calls — the tick's committed changesets and any
/// subscription changes — and one poll per tick ([`Interest::poll_tick`], or [`Interest::poll_tick_on`] to spread
/// the per-client work over the caller's thread pool), whose [`Deltas`] the caller encodes and sends.
///
/// It is made of parts that each own their state: the mirror of public rows ([`crate::mirror`]), the client
/// registry ([`crate::registry`]) whose clients own their views ([`crate::view`]), the passes of a poll
/// ([`crate::pass`]), and the output ([`Deltas`]).
#[derive(Debug)]
pub struct Interest {
    config: InterestConfig,
    mirror: Mirror,
    registry: Registry,
    /// One per worker thread of the pool last polled on (at least one).
    scratch: Vec<Mutex<Scratch>>,
    tick: Tick,
    /// Module-set areas the stage refused since [`Interest::take_area_errors`].
    area_errors: Vec<(ClientId, AreaError)>,
}

impl Interest {
    /// An interest stage over the tables of `db`, holding a copy of the rows of its public tables. Changesets for
    /// tables created later are ignored.
    ///
    /// If `db` has the module's area table ([`locus_types::abi::AREA_TABLE`]), the stage reads it too: a client
    /// gets the area the module set for its identity when it connects and whenever the module changes it (see
    /// [`Interest::handle_changeset`]).
    #[must_use]
    pub fn new(config: InterestConfig, db: &Database) -> Interest {
        Interest {
            config,
            mirror: Mirror::new(&config, db),
            registry: Registry::new(&config),
            scratch: vec![Mutex::new(Scratch::default())],
            tick: Tick(0),
            area_errors: Vec::new(),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &InterestConfig {
        &self.config
    }

    /// How many rows of public tables it mirrors.
    #[must_use]
    pub fn row_count(&self) -> usize {
        self.mirror.row_count()
    }

    /// How many client slots it holds: one past the highest connected [`ClientId`] (0 with no client). Each poll
    /// walks this many slots.
    #[must_use]
    pub fn client_slots(&self) -> usize {
        self.registry.slots()
    }

    /// The connected clients of `identity`, in the order they connected.
    pub fn clients_of(&self, identity: Identity) -> impl Iterator<Item = ClientId> + '_ {
        self.registry
            .of_identity(identity)
            .iter()
            .map(|&c| ClientId(c))
    }

    /// Feed one committed transaction's changes (in commit order). Changes to private tables are ignored, but for
    /// the module's area table: a changed area row gives its identity's connected clients their new area (or none)
    /// at the next poll. An area the stage refuses (see [`Interest::handle_area`]) leaves the client without one,
    /// and is reported by [`Interest::take_area_errors`].
    pub fn handle_changeset(&mut self, changeset: &Changeset) {
        self.handle(std::slice::from_ref(changeset), None);
    }

    /// Feed a tick's committed changesets (in commit order) at once: the stage ends in the same state as after one
    /// [`Interest::handle_changeset`] of each, but for the order it lists changed rows in (by row rather than by
    /// first change), which the order within deltas follows. Feed a tick's changesets one way or the other for
    /// deltas that are the same byte for byte.
    pub fn handle_changesets(&mut self, changesets: &[Changeset]) {
        self.handle(changesets, None);
    }

    /// As [`Interest::handle_changesets`], with the rows' updates applied on the threads of `pool`; the stage ends
    /// in the same state whatever the pool's size.
    pub fn handle_changesets_on(&mut self, changesets: &[Changeset], pool: &rayon::ThreadPool) {
        self.handle(changesets, Some(pool));
    }

    fn handle(&mut self, changesets: &[Changeset], pool: Option<&rayon::ThreadPool>) {
        let pool = pool.filter(|_| self.registry.slots() >= self.config.parallel_min);
        self.mirror.handle_changesets(changesets, pool);
        for (identity, area) in self.mirror.take_area_changes() {
            for k in 0..self.registry.of_identity(identity).len() {
                let client = self.registry.of_identity(identity)[k];
                let result = match area.clone() {
                    None => self.registry.set_area(client, None, &self.mirror),
                    Some(Ok(area)) => self.registry.set_area(client, Some(area), &self.mirror),
                    Some(Err(e)) => Err(e),
                };
                if let Err(e) = result {
                    self.registry
                        .set_area(client, None, &self.mirror)
                        .expect("clearing a connected client's area succeeds");
                    self.area_errors.push((ClientId(client), e));
                }
            }
        }
    }

    /// The module-set areas refused since the last call, by client (for the caller to log).
    pub fn take_area_errors(&mut self) -> Vec<(ClientId, AreaError)> {
        std::mem::take(&mut self.area_errors)
    }

    /// A client connected with `identity`: it sees nothing until it subscribes, and its area is the one the module
    /// set for `identity`, if any. Connecting an id that is connected replaces it.
    pub fn handle_connect(&mut self, client: ClientId, identity: Identity) {
        if let Some(e) = self.registry.connect(client.0, identity, &mut self.mirror) {
            self.area_errors.push((client, e));
        }
    }

    /// Count a change of a row's position alone (a patch of the spatial column only) as `cost` bytes, framing
    /// included, against this client's [byte budget](InterestConfig::byte_budget), instead of the patch's length
    /// plus [`row_overhead`](InterestConfig::row_overhead): for a client whose wire sends such a change short (a
    /// protocol version 3 move: a handle and two centimetre varints). `None` (the default) for the patch's length.
    /// Unknown clients are ignored.
    pub fn set_move_cost(&mut self, client: ClientId, cost: Option<usize>) {
        if let Some(c) = self.registry.client_mut(client.0) {
            c.move_cost = cost;
        }
    }

    /// A client disconnected: forget it and its view (nothing is sent). Its id may be connected again (to anyone)
    /// at once: nothing of the old client is left in its slot. The slots past the highest connected id are
    /// dropped, and their memory too once they are mostly unused.
    pub fn handle_disconnect(&mut self, client: ClientId) {
        self.registry.disconnect(client.0, &mut self.mirror);
    }

    /// Set (or with `None` clear) a client's area of interest; takes effect at the next poll. The module's area
    /// table, when it changes, overrides it (see [`Interest::handle_changeset`]).
    ///
    /// # Errors
    ///
    /// An [`AreaError`]: an unknown client, a followed table that is not spatial, or radii that are not
    /// `0 ≤ enter ≤ leave ≤` [`max_radius`](InterestConfig::max_radius).
    pub fn handle_area(&mut self, client: ClientId, area: Option<Area>) -> Result<(), AreaError> {
        self.registry.set_area(client.0, area, &self.mirror)
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
        self.registry
            .subscribe(client.0, table, filter, &self.mirror)
    }

    /// End a client's subscription to a table; its rows leave the client's view at the next poll.
    pub fn handle_unsubscribe(&mut self, client: ClientId, table: TableId) {
        self.registry.unsubscribe(client.0, table, &self.mirror);
    }

    /// Compute every client's delta for tick `tick` from the changesets and subscription changes fed since the
    /// last poll, on the calling thread.
    pub fn poll_tick(&mut self, tick: Tick) -> Deltas<'_> {
        self.poll(tick, None)
    }

    /// As [`Interest::poll_tick`], with the per-client work (view updates, deltas, byte budgets) spread over the
    /// threads of `pool`. The deltas are the same, byte for byte, whatever the pool's size.
    pub fn poll_tick_on(&mut self, tick: Tick, pool: &rayon::ThreadPool) -> Deltas<'_> {
        self.poll(tick, Some(pool))
    }

    /// Whether this tick's per-client work is worth spreading over a pool: many clients, or views holding many rows
    /// (as of the last tick). See [`InterestConfig::parallel_min`].
    fn worth_spreading(&self) -> bool {
        let min = self.config.parallel_min;
        self.registry.slots() >= min
            || self.registry.view_rows() >= min.saturating_mul(VIEW_ROWS_PER_CLIENT)
    }

    fn poll(&mut self, tick: Tick, pool: Option<&rayon::ThreadPool>) -> Deltas<'_> {
        let worth_spreading = self.worth_spreading();
        let pool = pool.filter(|_| worth_spreading);
        self.tick = tick;
        self.mirror.begin_poll();
        self.registry
            .update_centers(&self.mirror, self.config.recompute_interval);
        let changed = self.mirror.take_changed();
        let many = changed.len() >= self.config.parallel_min;
        self.mirror.make_patches(&changed, pool.filter(|_| many));
        pass::changed::fan_out(&self.mirror, &mut self.registry, &changed);
        let mut clients = self.registry.take_in_cell_order();
        let workers = pool
            .map_or(1, rayon::ThreadPool::current_num_threads)
            .max(1);
        if self.scratch.len() < workers {
            self.scratch.resize_with(workers, Mutex::default);
        }
        let rows = self.mirror.row_slots();
        for s in &mut self.scratch {
            s.get_mut().expect("no pass panicked").prepare(rows);
        }
        let ctx = Ctx {
            mirror: &self.mirror,
            config: &self.config,
        };
        match pool {
            Some(pool) if workers > 1 && clients.len() >= 2 => {
                // Runs of neighbouring clients (the order is by grid cell), several per thread so that a slow run
                // does not hold the others up.
                let run = clients.len().div_ceil(workers * 8).max(8);
                let scratch = &self.scratch;
                pool.install(|| {
                    use rayon::prelude::*;
                    clients.par_chunks_mut(run).for_each(|chunk| {
                        // A run holds its worker's scratch to the end, and runs never nest: the lock is free.
                        let i = rayon::current_thread_index().unwrap_or(0) % scratch.len();
                        let mut s = scratch[i].lock().expect("no pass panicked");
                        pass::run_clients(ctx, &mut s, chunk);
                    });
                });
            }
            _ => {
                let s = self.scratch[0].get_mut().expect("no pass panicked");
                pass::run_clients(ctx, s, &mut clients);
            }
        }
        for c in &mut clients {
            self.mirror.apply_journal(c.id, &c.view.journal);
            c.view.journal.clear();
        }
        self.registry.put_back(clients);
        self.mirror.end_poll(changed);
        Deltas {
            mirror: &self.mirror,
            registry: &self.registry,
            tick,
            worth_spreading,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use locus_types::{ColumnType, IndexKind, TableAccess, TableDef, codec};

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
            .registry
            .grid()
            .for_each_near(Vec2::ZERO, 1e4, |_, _| in_grid += 1);
        [
            interest.client_slots(),
            interest.registry.capacity(),
            interest.registry.identities(),
            in_grid,
            interest.registry.subscriptions(),
            interest.mirror.watchers(),
        ]
    }

    /// Two clients in a crowd of 200 units are worth a pool once their views hold `parallel_min` ×
    /// [`VIEW_ROWS_PER_CLIENT`] rows, though they are far fewer than `parallel_min` clients; with smaller views they
    /// are not.
    #[test]
    fn a_crowd_of_few_clients_with_large_views_is_worth_spreading() {
        let xs: Vec<f32> = (0..200).map(|i| i as f32 * 0.2).collect();
        for (parallel_min, worth) in [(6, true), (7, false)] {
            let (db, _) = world(&xs, &[]);
            let config = InterestConfig {
                parallel_min,
                byte_budget: None,
                ..InterestConfig::default()
            };
            let mut interest = Interest::new(config, &db);
            for c in 0..2 {
                join(&mut interest, ClientId(c), Identity([c as u8 + 1; 32]));
            }
            // The first poll fills the views (400 rows: 6 × 64 = 384 ≤ 400 < 7 × 64 = 448); the next one judges.
            assert!(!interest.poll_tick(Tick(1)).worth_spreading());
            assert_eq!(interest.registry.view_rows(), 400);
            assert_eq!(
                interest.poll_tick(Tick(2)).worth_spreading(),
                worth,
                "parallel_min {parallel_min}"
            );
        }
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
        assert_eq!(interest.registry.modes().len(), 1, "a poll walks one slot");
        assert!(interest.registry.modes().capacity() <= 32);
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
            interest.registry.capacity() <= 64,
            "{}",
            interest.registry.capacity()
        );
        let deltas = interest.poll_tick(Tick(2));
        assert_eq!(deltas.iter().count(), 1);
        assert!(interest.registry.modes().capacity() <= 64);
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
        assert_eq!(interest.registry.identities(), 1);
        assert_eq!(interest.clients_of(bob).collect::<Vec<_>>(), [id]);
    }
}

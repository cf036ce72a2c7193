//! The per-tick passes of a poll, one module each, and what they share.
//!
//! A poll runs, in order:
//!
//! 1. the registry's `update_centers` (serial): each client's center, mode and grid cell;
//! 2. the mirror's `make_patches` (each changed row's patch; on the pool, in runs of rows, when many changed),
//!    then [`changed::fan_out`] (serial, over the rows changed since the last poll): a notice in the inbox of
//!    every client that may have to take a changed row in, update it or drop it;
//! 3. [`run_client`] for every client, in any order and on any thread (a client's pass reads the mirror and writes
//!    only that client's own state and its worker's [`Scratch`]): [`full::rescan`] of changed non-spatial
//!    subscriptions, [`changed::apply_inbox`], [`moved::moved`] for a client whose center moved, [`full::keep`] for
//!    a capped one between its recomputations, [`full::full`] for one whose spatial view is recomputed,
//!    [`full::enforce_cap`], and [`budget::output`], which fills its delta;
//! 4. each client's view journal applied to the rows' watchers (serial, in the clients' pass order).
//!
//! Since step 3 reads nothing another client's pass writes, its result does not depend on how the clients are
//! split among threads: the deltas are the same, byte for byte, with any number of them.

pub(crate) mod budget;
pub(crate) mod changed;
pub(crate) mod full;
pub(crate) mod moved;

use locus_types::{TableId, Vec2, codec};

use crate::grid::{Block, Cell};
use crate::interest::{Filter, InterestConfig, RowId};
use crate::mirror::{Mirror, Row};
use crate::prefetch::prefetch;
use crate::registry::Client;
use crate::view::{Entry, STALE, STALE_POS};

/// What every client's pass reads: the mirror and the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) mirror: &'a Mirror,
    pub(crate) config: &'a InterestConfig,
}

/// One worker's scratch space, reused from client to client and from tick to tick.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Per row: the mark of the last set it was put in (compared with `epoch`).
    marks: Vec<u32>,
    epoch: u32,
    /// Rows of the block of cells around `gather_key` (kept while consecutive clients share a cell).
    gathered: Block,
    gather_key: Option<(Cell, i32)>,
    near: Vec<u32>,
    pairs: Vec<(f32, RowId)>,
    rows: Vec<RowId>,
    items: Vec<(u32, RowId)>,
    /// `items` under a byte budget, as (sort key, slot).
    keyed: Vec<(u64, u32)>,
    offsets: Vec<u32>,
}

impl Scratch {
    /// Ready for a poll over `rows` row slots (the grid may have changed since the last one).
    pub(crate) fn prepare(&mut self, rows: usize) {
        if self.marks.len() < rows {
            self.marks.resize(rows, 0);
        }
        self.gather_key = None;
    }

    /// A new mark, distinct from every mark still set.
    fn next_mark(&mut self) -> u32 {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
        self.epoch
    }

    fn mark(&mut self, row: RowId, mark: u32) {
        self.marks[row.0 as usize] = mark;
    }

    fn marked(&self, row: RowId, mark: u32) -> bool {
        self.marks[row.0 as usize] == mark
    }
}

pub(crate) fn dist2(a: Vec2, b: Vec2) -> f32 {
    (a - b).length_squared()
}

/// Whether `row` is admitted for client `c`: subscribed, matching the filter, and allowed.
pub(crate) fn admits(mirror: &Mirror, offsets: &mut Vec<u32>, c: &Client, row: &Row) -> bool {
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
            let info = mirror.info(row.table);
            codec::validate_row(&info.columns, &row.bytes, offsets).expect("valid");
            let bytes =
                &row.bytes[offsets[column.index()] as usize..offsets[column.index() + 1] as usize];
            codec::decode_value(&info.columns[column.index()], bytes).is_ok_and(|v| v == *value)
        }
    }
}

/// Whether every row of `table` is admitted for `c` without looking at the row: subscribed with no filter, and no
/// owner column.
pub(crate) fn admits_quick(mirror: &Mirror, c: &Client, table: TableId) -> bool {
    if table.0 < 64 {
        return c.quick & (1 << table.0) != 0;
    }
    mirror.info(table).owner.is_none()
        && c.subs
            .iter()
            .any(|(t, f)| *t == table && matches!(f, Filter::All))
}

/// Whether the changed row of view entry `e` goes to its client as a patch (see
/// [Patches](crate::interest#patches)).
pub(crate) fn patchable(mirror: &Mirror, e: Entry) -> bool {
    if e.has(STALE) || !mirror.changed_now(e.row) {
        return false;
    }
    let row = mirror.row(e.row);
    !row.patch.is_empty() && (!e.has(STALE_POS) || row.moved_only)
}

/// Drop every spatial row from `c`'s view.
pub(crate) fn drop_spatial(c: &mut Client) {
    for id in c.view.rows_where(|e| e.spatial) {
        c.view.remove(id, &mut c.out);
    }
}

/// Step 3 of the poll for one client (see the [module docs](self)).
pub(crate) fn run_client(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    full::rescan(ctx, s, c);
    changed::apply_inbox(ctx, s, c);
    moved::moved(ctx, s, c);
    full::keep(ctx, s, c);
    full::full(ctx, s, c);
    full::enforce_cap(ctx, c);
    budget::output(ctx, s, c);
}

/// Step 3 for a run of clients, one after the other, loading each client's memory a few clients ahead.
pub(crate) fn run_clients(ctx: Ctx<'_>, s: &mut Scratch, clients: &mut [Box<Client>]) {
    for k in 0..clients.len() {
        prefetch_ahead(ctx, clients, k);
        run_client(ctx, s, &mut clients[k]);
    }
}

/// Start loading what the clients after the `k`-th will read: three ahead, the client itself; two ahead, its view
/// (its address is in the client, loaded one step before); one ahead, the hot fields of its view's rows (listed in
/// the view, loaded one step before).
fn prefetch_ahead(ctx: Ctx<'_>, clients: &[Box<Client>], k: usize) {
    if let Some(c) = clients.get(k + 3) {
        prefetch(&raw const **c);
    }
    if let Some(c) = clients.get(k + 2) {
        for line in c.view.entries.chunks(64 / size_of::<Entry>()) {
            prefetch(line.as_ptr());
        }
    }
    if let Some(c) = clients.get(k + 1) {
        for e in &c.view.entries {
            prefetch(ctx.mirror.hot_ref(e.row));
        }
    }
}

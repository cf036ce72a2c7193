//! [`View`]: the rows one client holds (or is about to be sent), owned by that client.
//!
//! # Invariants
//!
//! - `slots` maps each row of `entries` to its index there, and nothing else; `priority` has `entries`' length.
//! - `spatial` counts the entries of spatial tables.
//! - `touched` and `pending` together list, each once, the rows whose entry has [`QUEUED`]; a row in neither list
//!   has no [`QUEUED`] entry (`touched` may name rows that have left the view since; they are skipped).
//! - `journal` lists, in order, the rows this poll added to (`true`) or removed from (`false`) the view; the poll
//!   hands it to the mirror's watchers and empties it before it returns.

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use locus_types::TableId;

use crate::deltas::Delta;
use crate::interest::RowId;

/// Entry flag: the client has been sent the row.
pub(crate) const SENT: u8 = 1;
/// Entry flag: the row changed since it was sent.
pub(crate) const DIRTY: u8 = 2;
/// Entry flag: the row is in the view's `touched` or `pending` list.
pub(crate) const QUEUED: u8 = 4;
/// Entry flag: the row was deferred by the byte budget, so the client may hold an older version than the last
/// poll's: its next update is sent whole.
pub(crate) const STALE: u8 = 8;
/// Entry flag: the row was deferred by the byte budget, but only at polls where its change was of its position
/// alone (and it has no [`STALE`]): the client holds every other column as it is, so a patch of the position alone
/// (which carries the new position, not a difference) still brings the row up to date.
pub(crate) const STALE_POS: u8 = 16;

/// One row in a client's view: 8 bytes, so a client's whole view is a few cache lines.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) row: RowId,
    /// The row's table (kept here so scans of the view need not read the row; the mirror takes at most
    /// [`MAX_TABLES`](crate::mirror::MAX_TABLES) tables).
    table: u16,
    /// Whether the table is spatial.
    pub(crate) spatial: bool,
    /// [`SENT`], [`DIRTY`], [`QUEUED`], [`STALE`] and [`STALE_POS`].
    pub(crate) flags: u8,
}

impl Entry {
    pub(crate) fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    pub(crate) fn table(self) -> TableId {
        TableId(u32::from(self.table))
    }
}

/// A client's view. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) entries: Vec<Entry>,
    /// Accumulated priority of each entry (same index) while pending under a byte budget.
    pub(crate) priority: Vec<f32>,
    slots: HashMap<RowId, u32, FixedState>,
    spatial: usize,
    pub(crate) touched: Vec<RowId>,
    pub(crate) pending: Vec<RowId>,
    pub(crate) journal: Vec<(RowId, bool)>,
}

impl Default for View {
    fn default() -> Self {
        View {
            entries: Vec::new(),
            priority: Vec::new(),
            slots: HashMap::with_hasher(FixedState::with_seed(0x5107)),
            spatial: 0,
            touched: Vec::new(),
            pending: Vec::new(),
            journal: Vec::new(),
        }
    }
}

impl View {
    /// The index of `row`'s entry, if it is in view.
    pub(crate) fn slot(&self, row: RowId) -> Option<u32> {
        self.slots.get(&row).copied()
    }

    /// How many rows of spatial tables are in view.
    pub(crate) fn spatial(&self) -> usize {
        self.spatial
    }

    /// Take `row` (not in view) into view: queued, to be sent whole.
    pub(crate) fn add(&mut self, row: RowId, table: TableId, spatial: bool) {
        let slot = self.entries.len() as u32;
        self.entries.push(Entry {
            row,
            table: table.0 as u16,
            spatial,
            flags: QUEUED,
        });
        self.priority.push(0.0);
        self.touched.push(row);
        self.slots.insert(row, slot);
        self.spatial += usize::from(spatial);
        self.journal.push((row, true));
    }

    /// Take `row` (in view) out of view; if it was sent, its delete goes into `out` (and an update of it emitted
    /// earlier in the tick is dropped: the delete supersedes it).
    pub(crate) fn remove(&mut self, row: RowId, out: &mut Delta) {
        let slot = self.slots.remove(&row).expect("the row is in view") as usize;
        let entry = self.entries.swap_remove(slot);
        self.priority.swap_remove(slot);
        if entry.has(SENT) {
            if let Some(i) = out.updates.iter().rposition(|r| *r == row) {
                out.updates.remove(i);
            } else if let Some(i) = out.patches.iter().rposition(|r| *r == row) {
                out.patches.remove(i);
            }
            out.deletes.push(row);
        }
        self.spatial -= usize::from(entry.spatial);
        if let Some(moved) = self.entries.get(slot) {
            self.slots.insert(moved.row, slot as u32);
        }
        self.journal.push((row, false));
    }

    /// Mark the entry at `slot` changed since it was sent, and queue it.
    pub(crate) fn mark_dirty(&mut self, slot: u32) {
        let e = &mut self.entries[slot as usize];
        e.set(DIRTY, true);
        if !e.has(QUEUED) {
            e.set(QUEUED, true);
            self.touched.push(e.row);
        }
    }

    /// The rows in view of the tables that match `keep`, for removal.
    pub(crate) fn rows_where(&self, keep: impl Fn(Entry) -> bool) -> Vec<RowId> {
        self.entries
            .iter()
            .filter(|e| keep(**e))
            .map(|e| e.row)
            .collect()
    }
}

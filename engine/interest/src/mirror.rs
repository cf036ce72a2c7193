//! [`Mirror`]: the interest stage's copy of the public rows, fed by committed changesets.
//!
//! It owns the rows (bytes, key, owner, position), the index of rows by key, the grid of spatial rows, the list of
//! rows changed since the last poll, and each row's **watchers** (the clients holding it in view, in the order they
//! took it in). It also reads the module's [`AREA_TABLE`] (private, so never sent): the area each identity's
//! clients are given.
//!
//! # Invariants
//!
//! - `index` maps `(table, key)` to the live row with that key, for every live row of a public table, and to
//!   nothing else; `tables[t].rows` lists exactly the live rows of table `t`, and `row.table_slot` is the row's
//!   index there.
//! - A spatial row is in `grid` at its position iff it is live.
//! - `changed` lists, each once, the rows inserted, updated or deleted since the last poll; exactly those rows have
//!   `hot.changed == seq`.
//! - Between polls, `row.watchers` lists exactly the clients whose view holds the row (the per-client passes of a
//!   poll record their changes in each view's journal, applied by [`Mirror::apply_journal`] once they are done).
//! - A deleted row keeps its id (and bytes, for its delete) until the poll after the one that delivered its delete,
//!   so no id is reused while a client may still hold it.

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use locus_store::{Changeset, Database};
use locus_types::abi::{AREA_TABLE, AreaCenter, AreaRow};
use locus_types::{ColumnDef, ColumnId, Identity, TableAccess, TableId, Value, Vec2, codec, patch};

use crate::error::AreaError;
use crate::grid::Grid;
use crate::interest::{Area, Center, InterestConfig, RowId};

/// Tables past this many are not mirrored (a view entry names its table in 16 bits).
pub(crate) const MAX_TABLES: usize = 1 << 16;

/// What the mirror knows of a table.
#[derive(Debug)]
pub(crate) struct TableInfo {
    pub(crate) public: bool,
    pub(crate) columns: Vec<ColumnDef>,
    pub(crate) pk: ColumnId,
    pub(crate) spatial: Option<ColumnId>,
    pub(crate) owner: Option<ColumnId>,
    /// How many leading columns hold the key, position and owner (all that `parse` reads).
    needed: usize,
    /// Its live rows.
    pub(crate) rows: Vec<RowId>,
}

/// A mirrored row.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) table: TableId,
    pub(crate) key: Value,
    /// Where the key column's bytes lie in `bytes`.
    key_at: (u32, u32),
    pub(crate) bytes: Box<[u8]>,
    pub(crate) owner: Option<Identity>,
    /// The bytes as of the last poll, kept at the row's first change since (empty otherwise): what a client that
    /// was sent the row holds.
    base: Vec<u8>,
    /// This tick's patch from `base` to `bytes`, made by the poll (empty if none; valid while `Hot::changed` is
    /// the poll's sequence number).
    pub(crate) patch: Vec<u8>,
    /// What `patch` holds (`None` if there is none).
    pub(crate) shape: Option<patch::Shape>,
    /// Whether `patch` sets the table's spatial column alone (the row only moved).
    pub(crate) moved_only: bool,
    /// The clients holding the row in view (see the module invariants).
    pub(crate) watchers: Vec<u32>,
    /// Index in its table's `rows`.
    table_slot: u32,
    pub(crate) alive: bool,
}

impl Row {
    /// Make the row's patch of this poll from `base` (see [`Mirror::make_patches`]).
    fn make_patch(&mut self, tables: &[TableInfo], scratch: &mut patch::Scratch) {
        self.patch.clear();
        self.shape = None;
        self.moved_only = false;
        if !self.base.is_empty() && self.alive {
            if !self.watchers.is_empty() {
                let info = &tables[self.table.0 as usize];
                self.shape = patch::make_patch_shaped(
                    &info.columns,
                    info.pk.index(),
                    &self.base,
                    &self.bytes,
                    scratch,
                    &mut self.patch,
                );
                self.moved_only = match (self.shape, info.spatial) {
                    (Some(shape), Some(spatial)) => shape.sets_only(spatial.index()),
                    _ => false,
                };
            }
            self.base.clear();
        }
    }

    /// The key column's bytes in the row (byte-identical to what the client holds).
    pub(crate) fn key_bytes(&self) -> &[u8] {
        &self.bytes[self.key_at.0 as usize..self.key_at.1 as usize]
    }
}

/// The fields of a row that every tick reads for many clients, packed apart from the rest (same index as the rows)
/// so the per-client scans stay in cache.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hot {
    pub(crate) pos: Vec2,
    /// The poll sequence number of the tick that last changed it.
    pub(crate) changed: u64,
}

/// What the stage reads of a row: its key (and where the key's bytes are), position and owner.
type Parsed = (Value, (u32, u32), Vec2, Option<Identity>);

/// Decode what the stage needs of a committed row of table `info`.
fn parse(info: &TableInfo, bytes: &[u8], offsets: &mut Vec<u32>) -> Parsed {
    // Committed rows are valid: read only as far as the last column needed.
    codec::locate_columns(&info.columns, bytes, info.needed, offsets)
        .expect("committed rows are valid");
    let at = |c: ColumnId| (offsets[c.index()], offsets[c.index() + 1]);
    let col = |c: ColumnId| &bytes[at(c).0 as usize..at(c).1 as usize];
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
    (key, at(info.pk), pos, owner)
}

/// One row's update of a batch: the row, the update's place in the batch, its new bytes.
type Pending<'c> = (RowId, u32, &'c [u8]);

/// What applying a run of rows' updates changed: rows changed for the first time since the last poll, and the
/// spatial rows that moved (`id, from, to`) for the grid.
#[derive(Default)]
struct Applied {
    first: Vec<RowId>,
    moved: Vec<(RowId, Vec2, Vec2)>,
}

/// Apply the last of each row's updates in `pending` (sorted by row, then place) to the run of rows starting at
/// `base`.
fn apply_updates(
    tables: &[TableInfo],
    patches: bool,
    seq: u64,
    base: usize,
    rows: &mut [Row],
    hot: &mut [Hot],
    pending: &[Pending<'_>],
) -> Applied {
    let mut applied = Applied::default();
    let mut offsets = Vec::new();
    for (k, &(id, _, new)) in pending.iter().enumerate() {
        if pending.get(k + 1).is_some_and(|next| next.0 == id) {
            continue; // A later update of the same row wins.
        }
        let i = id.0 as usize - base;
        let row = &mut rows[i];
        if !row.alive {
            continue; // Deleted later in the batch.
        }
        let info = &tables[row.table.0 as usize];
        let (_, key_at, pos, owner) = parse(info, new, &mut offsets);
        let hot = &mut hot[i];
        if patches && !row.watchers.is_empty() && hot.changed != seq {
            // The first change since the last poll of a row in someone's view: keep what they were sent (views
            // only gain rows during a poll, and those arrive whole).
            row.base.clear();
            row.base.extend_from_slice(&row.bytes);
        }
        if row.bytes.len() == new.len() {
            row.bytes.copy_from_slice(new);
        } else {
            row.bytes = new.into();
        }
        row.owner = owner;
        row.key_at = key_at;
        let from = std::mem::replace(&mut hot.pos, pos);
        if info.spatial.is_some() && from != pos {
            applied.moved.push((id, from, pos));
        }
        if hot.changed != seq {
            hot.changed = seq;
            applied.first.push(id);
        }
    }
    applied
}

/// A module-set area, as the interest stage takes it (or why it cannot).
pub(crate) type ModuleArea = Result<Area, AreaError>;

/// The mirror of public rows. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Mirror {
    tables: Vec<TableInfo>,
    rows: Vec<Row>,
    hot: Vec<Hot>,
    free: Vec<RowId>,
    index: crate::key_index::KeyIndex,
    grid: Grid,
    changed: Vec<RowId>,
    tombstones: Vec<RowId>,
    seq: u64,
    patches: bool,
    /// [`InterestConfig::parallel_min`].
    parallel_min: usize,
    offsets: Vec<u32>,
    patch_scratch: patch::Scratch,
    area_table: Option<TableId>,
    /// The area of each identity that has a row in [`AREA_TABLE`].
    areas: HashMap<Identity, ModuleArea, FixedState>,
    /// Identities whose area row changed since [`Mirror::take_area_changes`].
    area_changes: Vec<Identity>,
}

impl Mirror {
    pub(crate) fn new(config: &InterestConfig, db: &Database) -> Mirror {
        let mut mirror = Mirror {
            tables: Vec::new(),
            rows: Vec::new(),
            hot: Vec::new(),
            free: Vec::new(),
            index: crate::key_index::KeyIndex::default(),
            grid: Grid::new(config.cell_size),
            changed: Vec::new(),
            tombstones: Vec::new(),
            seq: 1,
            patches: config.patches,
            parallel_min: config.parallel_min.max(1),
            offsets: Vec::new(),
            patch_scratch: patch::Scratch::default(),
            area_table: db.table_id(AREA_TABLE),
            areas: HashMap::with_hasher(FixedState::with_seed(0xa7ea)),
            area_changes: Vec::new(),
        };
        for table in db.tables().take(MAX_TABLES) {
            let def = table.def();
            mirror.tables.push(TableInfo {
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
            });
        }
        for table in db.tables().take(MAX_TABLES) {
            if table.def().access == TableAccess::Public {
                for row in table.iter() {
                    mirror.insert_row(table.id(), row);
                }
            } else if Some(table.id()) == mirror.area_table {
                for row in table.iter() {
                    mirror.set_area_row(row, true);
                }
            }
        }
        // The rows it starts with are the initial state, not changes of the first tick.
        mirror.changed.clear();
        for hot in &mut mirror.hot {
            hot.changed = 0;
        }
        mirror.area_changes.clear();
        mirror
    }

    // ---- reading --------------------------------------------------------------------------------------------

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn row_count(&self) -> usize {
        self.index.len()
    }

    /// One past the highest row id (the size of per-row scratch).
    pub(crate) fn row_slots(&self) -> usize {
        self.rows.len()
    }

    /// Watchers held, over all rows.
    #[cfg(test)]
    pub(crate) fn watchers(&self) -> usize {
        self.rows.iter().map(|r| r.watchers.len()).sum()
    }

    pub(crate) fn table(&self, table: TableId) -> Option<&TableInfo> {
        self.tables.get(table.0 as usize)
    }

    pub(crate) fn info(&self, table: TableId) -> &TableInfo {
        &self.tables[table.0 as usize]
    }

    pub(crate) fn row(&self, id: RowId) -> &Row {
        &self.rows[id.0 as usize]
    }

    pub(crate) fn hot(&self, id: RowId) -> Hot {
        self.hot[id.0 as usize]
    }

    /// The hot fields of a row, by reference (to prefetch).
    pub(crate) fn hot_ref(&self, id: RowId) -> &Hot {
        &self.hot[id.0 as usize]
    }

    pub(crate) fn get(&self, table: TableId, key: &Value) -> Option<RowId> {
        self.index.get(table, key)
    }

    pub(crate) fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Whether the row changed in the tick being polled.
    pub(crate) fn changed_now(&self, id: RowId) -> bool {
        self.hot[id.0 as usize].changed == self.seq
    }

    /// The area the module set for `identity`, if any.
    pub(crate) fn area_of(&self, identity: Identity) -> Option<&ModuleArea> {
        self.areas.get(&identity)
    }

    /// The identities whose module-set area changed since the last call (each once, in the order of the changes),
    /// with their area now (`None`: cleared).
    pub(crate) fn take_area_changes(&mut self) -> Vec<(Identity, Option<ModuleArea>)> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for identity in std::mem::take(&mut self.area_changes) {
            if seen.contains(&identity) {
                continue;
            }
            seen.push(identity);
            out.push((identity, self.areas.get(&identity).cloned()));
        }
        out
    }

    // ---- changesets -----------------------------------------------------------------------------------------

    /// Decode what the stage needs of a row: key (and where its bytes are), position, owner.
    fn parse(&mut self, table: TableId, bytes: &[u8]) -> Parsed {
        parse(&self.tables[table.0 as usize], bytes, &mut self.offsets)
    }

    fn mark_changed(&mut self, id: RowId) {
        let hot = &mut self.hot[id.0 as usize];
        if hot.changed != self.seq {
            hot.changed = self.seq;
            self.changed.push(id);
        }
    }

    fn insert_row(&mut self, table: TableId, bytes: &[u8]) {
        let (key, key_at, pos, owner) = self.parse(table, bytes);
        let info = &mut self.tables[table.0 as usize];
        let row = Row {
            table,
            key: key.clone(),
            key_at,
            bytes: bytes.into(),
            owner,
            base: Vec::new(),
            patch: Vec::new(),
            shape: None,
            moved_only: false,
            watchers: Vec::new(),
            table_slot: info.rows.len() as u32,
            alive: true,
        };
        let hot = Hot { pos, changed: 0 };
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
            self.grid.insert(self.grid.cell(pos), id.0, pos);
        }
        self.index.insert(table, key, id);
        self.mark_changed(id);
    }

    /// Feed the committed transactions' changes (in commit order). Changes to private tables are ignored, but for
    /// the area table's.
    ///
    /// Inserts and deletes are applied in order as they come; updates are gathered, and then the last update of
    /// each row is applied, row by row in row order, on `pool` (in runs of rows) when there are enough of them.
    /// The result does not depend on the pool: a row's updates apply to that row only, and what they change for
    /// the grid and the changed list is taken in row order.
    pub(crate) fn handle_changesets(
        &mut self,
        changesets: &[Changeset],
        pool: Option<&rayon::ThreadPool>,
    ) {
        let mut pending: Vec<Pending<'_>> = Vec::new();
        for changeset in changesets {
            for tc in &changeset.tables {
                if Some(tc.table) == self.area_table {
                    for old in &tc.deletes {
                        self.set_area_row(old, false);
                    }
                    for row in tc.updates.iter().map(|u| &u.new).chain(&tc.inserts) {
                        self.set_area_row(row, true);
                    }
                    continue;
                }
                let Some(info) = self.tables.get(tc.table.0 as usize) else {
                    continue;
                };
                if !info.public {
                    continue;
                }
                let spatial = info.spatial.is_some();
                for old in &tc.deletes {
                    let (key, _, _, _) = self.parse(tc.table, old);
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
                        self.grid.remove(self.grid.cell(pos), id.0);
                    }
                    self.mark_changed(id);
                }
                for update in &tc.updates {
                    let info = &self.tables[tc.table.0 as usize];
                    // The key alone: the rest is read when the update is applied.
                    codec::locate_columns(
                        &info.columns,
                        &update.new,
                        info.pk.index() + 1,
                        &mut self.offsets,
                    )
                    .expect("committed rows are valid");
                    let at = &self.offsets[info.pk.index()..];
                    let key = codec::decode_value(
                        &info.columns[info.pk.index()],
                        &update.new[at[0] as usize..at[1] as usize],
                    )
                    .expect("valid");
                    if let Some(id) = self.index.get(tc.table, &key) {
                        pending.push((id, pending.len() as u32, &update.new));
                    }
                }
                for new in &tc.inserts {
                    self.insert_row(tc.table, new);
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        // By row, then place in the batch.
        pending.sort_unstable_by_key(|&(id, place, _)| (id, place));
        let (tables, patches, seq) = (&self.tables[..], self.patches, self.seq);
        let applied: Vec<Applied> = match pool {
            Some(pool) if pool.current_num_threads() > 1 && pending.len() >= self.parallel_min => {
                use rayon::prelude::*;
                let run = self
                    .rows
                    .len()
                    .div_ceil(pool.current_num_threads() * 8)
                    .max(1024);
                pool.install(|| {
                    self.rows
                        .par_chunks_mut(run)
                        .zip(self.hot.par_chunks_mut(run))
                        .enumerate()
                        .map(|(k, (rows, hot))| {
                            let base = k * run;
                            let lo = pending.partition_point(|p| (p.0.0 as usize) < base);
                            let hi =
                                pending.partition_point(|p| (p.0.0 as usize) < base + rows.len());
                            apply_updates(tables, patches, seq, base, rows, hot, &pending[lo..hi])
                        })
                        .collect()
                })
            }
            _ => vec![apply_updates(
                tables,
                patches,
                seq,
                0,
                &mut self.rows,
                &mut self.hot,
                &pending,
            )],
        };
        for a in applied {
            self.changed.extend_from_slice(&a.first);
            for (id, from, to) in a.moved {
                let (old, new) = (self.grid.cell(from), self.grid.cell(to));
                if old == new {
                    self.grid.set_point(old, id.0, to);
                } else {
                    self.grid.remove(old, id.0);
                    self.grid.insert(new, id.0, to);
                }
            }
        }
    }

    /// Take in (`set`) or drop one row of the area table.
    fn set_area_row(&mut self, bytes: &[u8], set: bool) {
        // The host writes these rows; one that does not decode has no identity to give an area to.
        let Some(row) = AreaRow::decode(bytes) else {
            return;
        };
        if set {
            let area = self.module_area(&row);
            self.areas.insert(row.identity, area);
        } else {
            self.areas.remove(&row.identity);
        }
        self.area_changes.push(row.identity);
    }

    /// An area row as the interest stage's [`Area`]: a followed key decoded with its table's key column.
    fn module_area(&self, row: &AreaRow) -> ModuleArea {
        let center = match &row.center {
            AreaCenter::Fixed(p) => Center::Fixed(*p),
            AreaCenter::Follow { table, key } => {
                let info = self
                    .tables
                    .get(table.0 as usize)
                    .filter(|t| t.spatial.is_some())
                    .ok_or(AreaError::NotSpatial(*table))?;
                let key = codec::decode_value(&info.columns[info.pk.index()], key)
                    .map_err(|_| AreaError::Key(*table))?;
                Center::Follow { table: *table, key }
            }
        };
        Ok(Area {
            center,
            enter_radius: row.enter,
            leave_radius: row.leave,
        })
    }

    // ---- the poll -------------------------------------------------------------------------------------------

    /// Start a poll: free the rows whose deletes the last poll delivered.
    pub(crate) fn begin_poll(&mut self) {
        self.free.append(&mut self.tombstones);
    }

    /// The rows changed since the last poll (handed back with [`Mirror::end_poll`]).
    pub(crate) fn take_changed(&mut self) -> Vec<RowId> {
        std::mem::take(&mut self.changed)
    }

    /// Make the patch each changed row's watchers may get (a client taking it into view this tick gets it whole),
    /// on `pool` when there are enough of them to share out.
    pub(crate) fn make_patches(&mut self, changed: &[RowId], pool: Option<&rayon::ThreadPool>) {
        let Mirror {
            tables,
            rows,
            hot,
            patch_scratch,
            seq,
            ..
        } = self;
        let seq = *seq;
        let tables = &tables[..];
        match pool {
            // Over every row, in runs, those that changed: worth it once a good share of them did.
            Some(pool) if pool.current_num_threads() > 1 && changed.len() * 16 >= rows.len() => {
                use rayon::prelude::*;
                pool.install(|| {
                    rows.par_iter_mut()
                        .zip(hot.par_iter())
                        .with_min_len(2048)
                        .for_each_init(patch::Scratch::default, |scratch, (row, hot)| {
                            if hot.changed == seq {
                                row.make_patch(tables, scratch);
                            }
                        });
                });
            }
            _ => {
                for id in changed {
                    rows[id.0 as usize].make_patch(tables, patch_scratch);
                }
            }
        }
    }

    /// Record a client's view changes of this poll in the rows' watchers, in the order they were made
    /// (`true`: the row entered its view).
    pub(crate) fn apply_journal(&mut self, client: u32, journal: &[(RowId, bool)]) {
        for &(id, entered) in journal {
            if entered {
                self.rows[id.0 as usize].watchers.push(client);
            } else {
                self.unwatch(id, client);
            }
        }
    }

    /// Forget a client that held `rows` in view.
    pub(crate) fn forget_watcher(&mut self, client: u32, rows: impl Iterator<Item = RowId>) {
        for id in rows {
            self.unwatch(id, client);
        }
    }

    /// Take `client` out of `row`'s watchers (keeping the others' order).
    fn unwatch(&mut self, row: RowId, client: u32) {
        let watchers = &mut self.rows[row.0 as usize].watchers;
        if let Some(i) = watchers.iter().position(|&w| w == client) {
            watchers.remove(i);
        }
    }

    /// End a poll: hand back the changed rows (the deleted ones are freed at the next poll), and start a new
    /// sequence number.
    pub(crate) fn end_poll(&mut self, changed: Vec<RowId>) {
        for id in changed {
            if !self.rows[id.0 as usize].alive {
                self.tombstones.push(id);
            }
        }
        self.seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_store::Database;
    use locus_types::{ColumnType, IndexKind, TableDef};

    fn unit() -> TableDef {
        TableDef::builder("unit")
            .column("id", ColumnType::U32)
            .column("pos", ColumnType::Vec2)
            .column("hp", ColumnType::I32)
            .primary_key("id")
            .index("pos", IndexKind::Spatial)
            .access(TableAccess::Public)
            .build()
            .expect("valid")
    }

    fn row(def: &TableDef, id: u64, x: f32, hp: i64) -> Vec<u8> {
        codec::encode_row(
            &def.columns,
            &[
                Value::U64(id),
                Value::Vec2(Vec2::new(x, x * 0.5)),
                Value::I64(hp),
            ],
        )
        .expect("encode")
    }

    /// Per row: alive, bytes, base, position, changed.
    type RowState = (bool, Vec<u8>, Vec<u8>, Vec2, u64);

    /// Everything a batch can change, in the order the mirror keeps it: the rows, the changed list, the grid.
    fn state(m: &Mirror) -> (Vec<RowState>, Vec<RowId>, Vec<u32>) {
        let rows = m
            .rows
            .iter()
            .zip(&m.hot)
            .map(|(r, h)| (r.alive, r.bytes.to_vec(), r.base.clone(), h.pos, h.changed))
            .collect();
        let mut grid = Vec::new();
        m.grid
            .for_each_near(Vec2::new(3_300.0, 1_700.0), 3_400.0, |id, _| grid.push(id));
        (rows, m.changed.clone(), grid)
    }

    /// A tick's worth of changesets over 6,000 rows: moves (some rows twice, some across cells), deletes of moved
    /// rows, inserts, a delete and re-insert of one key; applied on the calling thread and on pools of 2 and 3
    /// threads (the rows' updates then split in runs), the mirror ends in the same state, row for row.
    #[test]
    fn a_batch_of_changesets_gives_the_same_state_on_any_number_of_threads() {
        let def = unit();
        let mut db = Database::default();
        let t = db.create_table(def.clone()).expect("create");
        let mut tx = db.begin();
        for id in 0..6_000u64 {
            tx.insert(t, &row(&def, id, id as f32, 100))
                .expect("insert");
        }
        let _ = tx.commit();
        let mut batch = Vec::new();
        for k in 0..8u64 {
            let mut tx = db.begin();
            for id in (k..6_000).step_by(2 + k as usize) {
                if k > 3 && id % 97 == 0 {
                    continue; // deleted at k = 3
                }
                tx.update(
                    t,
                    &row(&def, id, id as f32 + k as f32 * 40.0, 100 - k as i64),
                )
                .expect("update");
            }
            if k == 3 {
                for id in (0..6_000).step_by(97) {
                    tx.delete(t, &Value::U64(id)).expect("delete");
                }
                tx.insert(t, &row(&def, 7_000, 1.0, 1)).expect("insert");
            }
            if k == 5 {
                tx.insert(t, &row(&def, 0, 5.0, 5)).expect("insert again");
            }
            batch.push(tx.commit());
        }
        let mut reference = None;
        for threads in [0, 2, 3] {
            let config = InterestConfig {
                parallel_min: 0,
                ..InterestConfig::default()
            };
            let mut m = Mirror::new(&config, &db_before(&def));
            // Some rows watched, so their first change keeps a base.
            for id in (0..6_000).step_by(5) {
                m.rows[id].watchers.push(0);
            }
            let pool = (threads > 0).then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool")
            });
            m.handle_changesets(&batch, pool.as_ref());
            let got = state(&m);
            assert!(
                got.1.len() > 3_000,
                "the batch changed most rows: {}",
                got.1.len()
            );
            assert_eq!(got.2.len(), 6_000 - 62 + 2, "every live row is in the grid");
            match &reference {
                None => reference = Some(got),
                Some(r) => assert!(*r == got, "{threads} threads"),
            }
        }
    }

    /// The world before the batch (the mirror starts from it).
    fn db_before(def: &TableDef) -> Database {
        let mut db = Database::default();
        let t = db.create_table(def.clone()).expect("create");
        let mut tx = db.begin();
        for id in 0..6_000u64 {
            tx.insert(t, &row(def, id, id as f32, 100)).expect("insert");
        }
        let _ = tx.commit();
        db
    }
}

//! The read-only copies a region holds of its neighbours' rows near the border, merged with its own rows into the
//! one stream of changes its interest stage is fed.
//!
//! A neighbour's [`crate::BorderFeed`] hands out the changes to this region's copy of its rows; the shell hands
//! them to [`BorderCopies::apply`] (or a whole copy to [`BorderCopies::replace`], when the neighbour (re)starts or a
//! change was lost). The copies never enter the database: reducers do not see them and the log does not keep them.
//! They reach only the interest stage, as changesets of their own, so clients near the border see the neighbour's
//! rows as if the world were one.
//!
//! Keys are unique across the world (each region has its own range of `auto_inc` keys), but a row moving between
//! regions is, for a moment, both this region's own row and a neighbour's copy (or neither). The interest stage
//! must see each key at most once, so:
//!
//! - a copy whose key this region holds itself is kept aside (**shadowed**) and not shown;
//! - [`BorderCopies::merge`] rewrites the region's own committed changesets before the interest stage sees them:
//!   an own insert over a shown copy becomes an update of it (and the copy is shadowed), an own delete of a key
//!   with a held copy becomes an update to the copy (which is shown). A row handed over to this region thus
//!   changes in place for the clients watching it, rather than leaving and coming back.
//!
//! # Invariants
//!
//! After feeding the interest stage the changesets of [`apply`](BorderCopies::apply),
//! [`replace`](BorderCopies::replace) and [`merge`](BorderCopies::merge) (each in the order made, with own
//! changesets through `merge`), for every table and key, the stage holds:
//!
//! 1. the region's own row, if the database has one;
//! 2. otherwise the latest copy a neighbour sent, if one is held;
//! 3. otherwise nothing.
//!
//! Every changeset handed out inserts only keys the stage does not hold, and updates or deletes only keys it holds
//! (with the bytes it holds as the old ones). (Tested against a model that recomputes the stage's rows from
//! scratch, with random own writes and copies.)

use std::collections::HashMap;

use locus_store::{Changeset, RowUpdate, TableChangeset};
use locus_types::{ColumnDef, TableId, codec};

use crate::border::BorderDelta;
use crate::layout::RegionId;

#[derive(Debug)]
struct Copy {
    from: RegionId,
    row: Box<[u8]>,
    /// Whether the interest stage holds this copy (else the region's own row, of the same key, is there).
    shown: bool,
    /// A row this region handed over ([`BorderCopies::ghost`]), not yet refreshed by its new region.
    ghost: bool,
}

/// The copies of neighbours' rows this region holds: see the [module docs](self).
#[derive(Debug)]
pub struct BorderCopies {
    /// Per table id, the columns and the primary key's index (`None` for tables that are never copied).
    tables: Vec<Option<(Vec<ColumnDef>, usize)>>,
    held: HashMap<(TableId, Box<[u8]>), Copy>,
    offsets: Vec<u32>,
}

/// Changes for one table, built in the order the interest stage applies them.
#[derive(Default)]
struct Out {
    tables: Vec<TableChangeset>,
}

impl Out {
    fn entry(&mut self, table: TableId) -> &mut TableChangeset {
        match self.tables.iter().position(|t| t.table == table) {
            Some(i) => &mut self.tables[i],
            None => {
                self.tables.push(TableChangeset {
                    table,
                    ..TableChangeset::default()
                });
                self.tables.last_mut().expect("just pushed")
            }
        }
    }

    fn finish(mut self) -> Changeset {
        self.tables.retain(|t| {
            !(t.inserts.is_empty()
                && t.deletes.is_empty()
                && t.updates.is_empty()
                && t.next_auto_inc.is_none())
        });
        self.tables.sort_unstable_by_key(|t| t.table);
        Changeset {
            tables: self.tables,
        }
    }
}

impl BorderCopies {
    /// Copies over the tables `tables` (by id: the database's table definitions in id order). Rows of other
    /// tables, or that do not decode, are ignored.
    #[must_use]
    pub fn new(tables: &[locus_types::TableDef]) -> BorderCopies {
        BorderCopies {
            tables: tables
                .iter()
                .map(|t| {
                    (t.access == locus_types::TableAccess::Public && t.spatial_column().is_some())
                        .then(|| (t.columns.clone(), t.primary_key.index()))
                })
                .collect(),
            held: HashMap::new(),
            offsets: Vec::new(),
        }
    }

    /// How many copies are held (shown or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no copy is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// How many copies are held from `from`.
    #[must_use]
    pub fn held_from(&self, from: RegionId) -> usize {
        self.held.values().filter(|c| c.from == from).count()
    }

    /// The encoded primary key of `row` of `table`, if the table is copied and the row decodes.
    fn key(&mut self, table: TableId, row: &[u8]) -> Option<Box<[u8]>> {
        let (columns, pk) = self.tables.get(table.0 as usize)?.as_ref()?;
        codec::locate_columns(columns, row, pk + 1, &mut self.offsets).ok()?;
        Some(row[self.offsets[*pk] as usize..self.offsets[pk + 1] as usize].into())
    }

    /// Apply one change from `from` to its copy; `own(table, key)` says whether this region's database holds a
    /// row of that key. Returns the changes for the interest stage.
    pub fn apply(
        &mut self,
        from: RegionId,
        delta: &BorderDelta,
        own: impl Fn(TableId, &[u8]) -> bool,
    ) -> Changeset {
        let mut out = Out::default();
        for (table, key) in &delta.deletes {
            self.drop_copy(from, *table, key, &mut out);
        }
        for (table, row) in &delta.upserts {
            self.upsert(from, *table, row, &own, &mut out);
        }
        out.finish()
    }

    /// Replace the whole copy from `from` with `rows` (a neighbour's [`crate::BorderFeed::snapshot_for`]). Returns
    /// the changes for the interest stage.
    pub fn replace(
        &mut self,
        from: RegionId,
        rows: &[(TableId, Box<[u8]>)],
        own: impl Fn(TableId, &[u8]) -> bool,
    ) -> Changeset {
        let mut out = Out::default();
        let mut fresh = std::collections::HashSet::new();
        for (table, row) in rows {
            if let Some(key) = self.key(*table, row) {
                fresh.insert((*table, key));
            }
        }
        let stale: Vec<(TableId, Box<[u8]>)> = self
            .held
            .iter()
            .filter(|(k, c)| c.from == from && !fresh.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for (table, key) in stale {
            self.drop_copy(from, table, &key, &mut out);
        }
        for (table, row) in rows {
            self.upsert(from, *table, row, &own, &mut out);
        }
        out.finish()
    }

    /// Forget every copy from `from` (a neighbour gone for good). Returns the changes for the interest stage.
    pub fn forget(&mut self, from: RegionId) -> Changeset {
        self.replace(from, &[], |_, _| false)
    }

    fn drop_copy(&mut self, from: RegionId, table: TableId, key: &[u8], out: &mut Out) {
        let k = (table, Box::<[u8]>::from(key));
        // Only the region that sent a copy drops it: a row moving on may already be held from its new region.
        if self.held.get(&k).is_some_and(|c| c.from == from)
            && let Some(copy) = self.held.remove(&k)
            && copy.shown
        {
            out.entry(table).deletes.push(copy.row);
        }
    }

    fn upsert(
        &mut self,
        from: RegionId,
        table: TableId,
        row: &[u8],
        own: &impl Fn(TableId, &[u8]) -> bool,
        out: &mut Out,
    ) {
        let Some(key) = self.key(table, row) else {
            return;
        };
        match self.held.get_mut(&(table, key.clone())) {
            Some(copy) => {
                if copy.shown && *copy.row != *row {
                    out.entry(table).updates.push(RowUpdate {
                        old: copy.row.clone(),
                        new: row.into(),
                    });
                }
                copy.from = from;
                copy.row = row.into();
                copy.ghost = false;
            }
            None => {
                let shown = !own(table, &key);
                if shown {
                    out.entry(table).inserts.push(row.into());
                }
                self.held.insert(
                    (table, key),
                    Copy {
                        from,
                        row: row.into(),
                        shown,
                        ghost: false,
                    },
                );
            }
        }
    }

    /// Hold `row` of `table`, which this region is handing over to region `to` in this tick (its own row is deleted
    /// in the tick's changesets), as a copy from `to`: the clients watching it keep it, unchanged, until `to` sends
    /// its own copy (a row within the border) or [`BorderCopies::drop_ghosts`] drops it (the row is not shared,
    /// or went far from the border). Nothing for a table that is not copied, or a key already held.
    pub fn ghost(&mut self, to: RegionId, table: TableId, row: &[u8]) -> Option<Box<[u8]>> {
        let key = self.key(table, row)?;
        self.held.entry((table, key.clone())).or_insert(Copy {
            from: to,
            row: row.into(),
            shown: false,
            ghost: true,
        });
        Some(key)
    }

    /// Drop the copies of `keys` that are still ghosts ([`BorderCopies::ghost`]): the region they went to never
    /// sent a copy of its own. Returns the changes for the interest stage.
    pub fn drop_ghosts(&mut self, keys: &[(TableId, Box<[u8]>)]) -> Changeset {
        let mut out = Out::default();
        for k in keys {
            if self.held.get(k).is_some_and(|c| c.ghost)
                && let Some(copy) = self.held.remove(k)
                && copy.shown
            {
                out.entry(k.0).deletes.push(copy.row);
            }
        }
        out.finish()
    }

    /// Rewrite the region's own committed changesets (in commit order) for the interest stage, as the
    /// [module docs](self) say. `None` when they need no change (no insert or delete meets a held copy): feed them
    /// as they are.
    #[must_use]
    pub fn merge(&mut self, committed: &[Changeset]) -> Option<Vec<Changeset>> {
        if self.held.is_empty() {
            return None;
        }
        let meets = |this: &mut Self, table: TableId, row: &[u8]| {
            this.key(table, row)
                .is_some_and(|key| this.held.contains_key(&(table, key)))
        };
        let mut any = false;
        'scan: for c in committed {
            for t in &c.tables {
                for row in t.inserts.iter().chain(&t.deletes) {
                    if meets(self, t.table, row) {
                        any = true;
                        break 'scan;
                    }
                }
            }
        }
        if !any {
            return None;
        }
        let mut merged = Vec::with_capacity(committed.len());
        for c in committed {
            let mut out = Out::default();
            for t in &c.tables {
                let e = out.entry(t.table);
                e.next_auto_inc = t.next_auto_inc;
                e.updates.extend(t.updates.iter().cloned());
                for row in &t.deletes {
                    let copy = self
                        .key(t.table, row)
                        .and_then(|key| self.held.get_mut(&(t.table, key)));
                    match copy {
                        Some(copy) if !copy.shown => {
                            copy.shown = true;
                            if *copy.row != **row {
                                out.entry(t.table).updates.push(RowUpdate {
                                    old: row.clone(),
                                    new: copy.row.clone(),
                                });
                            }
                        }
                        _ => out.entry(t.table).deletes.push(row.clone()),
                    }
                }
                for row in &t.inserts {
                    let copy = self
                        .key(t.table, row)
                        .and_then(|key| self.held.get_mut(&(t.table, key)));
                    match copy {
                        Some(copy) if copy.shown => {
                            copy.shown = false;
                            if *copy.row != **row {
                                out.entry(t.table).updates.push(RowUpdate {
                                    old: copy.row.clone(),
                                    new: row.clone(),
                                });
                            }
                        }
                        _ => out.entry(t.table).inserts.push(row.clone()),
                    }
                }
            }
            merged.push(out.finish());
        }
        Some(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_types::{ColumnId, ColumnType, IndexDef, IndexKind, TableAccess, TableDef, Value};
    use proptest::prelude::*;
    use std::collections::HashMap as Map;

    const T: TableId = TableId(0);

    fn tables() -> Vec<TableDef> {
        vec![TableDef {
            name: "thing".into(),
            columns: vec![
                ColumnDef::new("id", ColumnType::U64),
                ColumnDef::new("pos", ColumnType::Vec2),
                ColumnDef::new("n", ColumnType::U32),
            ],
            primary_key: ColumnId(0),
            auto_inc: false,
            indexes: vec![IndexDef {
                column: ColumnId(1),
                kind: IndexKind::Spatial,
            }],
            access: TableAccess::Public,
            owner: None,
            movable: false,
        }]
    }

    fn row(id: u64, n: u32) -> Box<[u8]> {
        codec::encode_row(
            &tables()[0].columns,
            &[
                Value::U64(id),
                Value::Vec2(glam::Vec2::new(id as f32, 1.0)),
                Value::U64(u64::from(n)),
            ],
        )
        .unwrap()
        .into()
    }

    fn key(id: u64) -> Box<[u8]> {
        let mut k = Vec::new();
        codec::encode_value(&tables()[0].columns[0], &Value::U64(id), &mut k).unwrap();
        k.into()
    }

    /// The interest stage as far as keys go: applies a changeset, checking that it only inserts absent keys and
    /// only updates or deletes present keys with the bytes it holds.
    fn feed(stage: &mut Map<Box<[u8]>, Box<[u8]>>, c: &Changeset) {
        let mut copies = BorderCopies::new(&tables());
        for t in &c.tables {
            for old in &t.deletes {
                let k = copies.key(t.table, old).unwrap();
                assert_eq!(
                    stage.remove(&k).as_deref(),
                    Some(&**old),
                    "delete of a row not held"
                );
            }
            for u in &t.updates {
                let k = copies.key(t.table, &u.new).unwrap();
                let held = stage.get_mut(&k).expect("update of a row not held");
                assert_eq!(**held, *u.old, "update's old bytes");
                *held = u.new.clone();
            }
            for new in &t.inserts {
                let k = copies.key(t.table, new).unwrap();
                assert!(
                    stage.insert(k, new.clone()).is_none(),
                    "insert of a row held"
                );
            }
        }
    }

    /// One neighbour's change: a delta (upserts, `None` deletes) or a whole copy.
    #[derive(Clone, Debug)]
    enum Op {
        Border(u16, Vec<(u64, Option<u32>)>),
        Replace(u16, Vec<(u64, u32)>),
    }

    fn writes() -> impl Strategy<Value = Vec<(u64, Option<u32>)>> {
        prop::collection::vec((0u64..8, prop::option::weighted(0.7, 0u32..4)), 0..5)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..2, writes()).prop_map(|(r, w)| Op::Border(r, w)),
            (0u16..2, prop::collection::vec((0u64..8, 0u32..4), 0..6))
                .prop_map(|(r, w)| Op::Replace(r, w)),
        ]
    }

    fn id_of(k: &[u8]) -> u64 {
        (0..8).find(|&i| *key(i) == *k).unwrap()
    }

    /// One own transaction's net effect on `own`, as the store reports it.
    fn transaction(own: &mut Map<u64, u32>, writes: &[(u64, Option<u32>)]) -> Changeset {
        let mut after = own.clone();
        for &(id, w) in writes {
            match w {
                Some(n) => {
                    after.insert(id, n);
                }
                None => {
                    after.remove(&id);
                }
            }
        }
        let mut tc = TableChangeset {
            table: T,
            ..TableChangeset::default()
        };
        for id in 0..8 {
            match (own.get(&id), after.get(&id)) {
                (None, Some(&n)) => tc.inserts.push(row(id, n)),
                (Some(&n), None) => tc.deletes.push(row(id, n)),
                (Some(&a), Some(&b)) if a != b => tc.updates.push(RowUpdate {
                    old: row(id, a),
                    new: row(id, b),
                }),
                _ => {}
            }
        }
        *own = after;
        Changeset { tables: vec![tc] }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Each tick as the world runs it: the ghosts dropped during its inputs (fed first), its own transactions
        /// and handoffs (a handoff deletes the row and holds it as a ghost from the region it went to), merged; then
        /// the neighbours' changes that arrived during the tick. The stage holds the region's own row, else the
        /// latest copy; a ghost is a copy like any other until its region sends one of its own, or it is dropped.
        #[test]
        fn the_stage_holds_own_rows_else_the_latest_copy_ghosts_included(
            ticks in prop::collection::vec(
                (
                    prop::collection::vec(0u64..8, 0..2),
                    prop::collection::vec(writes(), 0..3),
                    prop::collection::vec((0u64..8, 0u16..2), 0..2),
                    prop::collection::vec(op(), 0..3),
                ),
                1..25,
            ),
        ) {
            let mut copies = BorderCopies::new(&tables());
            let mut own: Map<u64, u32> = Map::new();
            // The model's copies: key -> (from, n, ghost).
            let mut held: Map<u64, (u16, u32, bool)> = Map::new();
            let mut stage = Map::new();
            for (drops, transactions, handoffs, ops) in ticks {
                let keys: Vec<(TableId, Box<[u8]>)> = drops.iter().map(|&id| (T, key(id))).collect();
                for id in &drops {
                    if held.get(id).is_some_and(|h| h.2) {
                        held.remove(id);
                    }
                }
                feed(&mut stage, &copies.drop_ghosts(&keys));
                let mut committed = Vec::new();
                for writes in transactions {
                    committed.push(transaction(&mut own, &writes));
                }
                for (id, to) in handoffs {
                    let Some(&n) = own.get(&id) else { continue };
                    committed.push(transaction(&mut own, &[(id, None)]));
                    prop_assert!(copies.ghost(RegionId(to), T, &row(id, n)).is_some());
                    held.entry(id).or_insert((to, n, true));
                }
                match copies.merge(&committed) {
                    Some(merged) => merged.iter().for_each(|c| feed(&mut stage, c)),
                    None => committed.iter().for_each(|c| feed(&mut stage, c)),
                }
                let owns = |k: &[u8]| own.contains_key(&id_of(k));
                for op in ops {
                    let c = match op {
                        Op::Border(from, writes) => {
                            let mut last: Map<u64, Option<u32>> = Map::new();
                            for (id, w) in writes { last.insert(id, w); }
                            let mut delta = BorderDelta::default();
                            for (&id, &w) in &last {
                                match w {
                                    Some(n) => {
                                        delta.upserts.push((T, row(id, n)));
                                        held.insert(id, (from, n, false));
                                    }
                                    None => {
                                        delta.deletes.push((T, key(id)));
                                        if held.get(&id).is_some_and(|h| h.0 == from) {
                                            held.remove(&id);
                                        }
                                    }
                                }
                            }
                            copies.apply(RegionId(from), &delta, |_, k| owns(k))
                        }
                        Op::Replace(from, rows) => {
                            let mut by: Map<u64, u32> = Map::new();
                            for (id, n) in rows { by.insert(id, n); }
                            held.retain(|_, h| h.0 != from);
                            for (&id, &n) in &by { held.insert(id, (from, n, false)); }
                            let rows: Vec<(TableId, Box<[u8]>)> =
                                by.iter().map(|(&id, &n)| (T, row(id, n))).collect();
                            copies.replace(RegionId(from), &rows, |_, k| owns(k))
                        }
                    };
                    feed(&mut stage, &c);
                }
                let expected: Map<Box<[u8]>, Box<[u8]>> = (0..8)
                    .filter_map(|id| {
                        let n = own.get(&id).copied().or_else(|| held.get(&id).map(|h| h.1))?;
                        Some((key(id), row(id, n)))
                    })
                    .collect();
                prop_assert_eq!(&stage, &expected);
            }
        }
    }
}

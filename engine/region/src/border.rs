//! What each neighbouring region must hold a read-only copy of, so that its clients near the border see this
//! region's rows as if the world were one.
//!
//! A [`BorderFeed`] is fed this region's committed changesets ([`BorderFeed::handle_changeset`], as the interest
//! stage is) and hands out, per neighbour, the changes to that neighbour's copy ([`BorderFeed::poll_tick`]): rows to
//! insert or replace, and keys to drop.
//!
//! **Which rows.** Rows of public tables with a spatial column and no owner column (an owned row is only ever sent
//! to its owner, whose session is in its own region), standing within the layout's border band of a neighbour's
//! rectangle: regions other than this one whose rectangle is within [`WorldLayout::border`] of the row's point.
//!
//! # Invariants (after every [`BorderFeed::poll_tick`])
//!
//! 1. For every other region `r`, applying every delta handed out for `r`, in order, to an empty copy gives exactly
//!    the shared rows (as above) of this region's tables whose point is within the border of `r`'s rectangle, with
//!    their current bytes. (Tested against a brute-force scan, with random inserts, moves and deletes.)
//! 2. A delta names each row at most once, and an upsert carries the row's latest bytes.
//! 3. [`BorderFeed::snapshot_for`] is that same copy, whole: what a neighbour that (re)connects starts from.

use std::collections::{BTreeMap, HashMap};

use locus_store::Changeset;
use locus_types::{ColumnDef, TableAccess, TableDef, TableId, codec};

use crate::layout::{RegionId, WorldLayout};

/// Changes to one neighbour's copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BorderDelta {
    /// Rows to insert or replace (by primary key), with their bytes.
    pub upserts: Vec<(TableId, Box<[u8]>)>,
    /// Rows to drop, by table and encoded primary key.
    pub deletes: Vec<(TableId, Box<[u8]>)>,
}

impl BorderDelta {
    /// Whether it changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// A neighbour's pending changes: by table and encoded key, the row's new bytes, or `None` to drop it.
type Changes = BTreeMap<(TableId, Box<[u8]>), Option<Box<[u8]>>>;

/// A shared table: how to find a row's key and point.
#[derive(Debug)]
struct Shared {
    columns: Vec<ColumnDef>,
    pk: usize,
    spatial: usize,
}

/// A row some neighbour holds: who, and its bytes.
#[derive(Debug)]
struct Held {
    holders: Vec<RegionId>,
    row: Box<[u8]>,
}

/// One region's border feed: see the [module docs](self).
#[derive(Debug)]
pub struct BorderFeed {
    layout: WorldLayout,
    own: RegionId,
    shared: HashMap<TableId, Shared>,
    held: HashMap<(TableId, Box<[u8]>), Held>,
    /// Per neighbour, the changes since the last poll, by row (the last change of a row wins).
    pending: BTreeMap<RegionId, Changes>,
    offsets: Vec<u32>,
}

impl BorderFeed {
    /// The feed of region `own` of `layout`, over the tables `tables` (by id: a database's table definitions in
    /// id order).
    #[must_use]
    pub fn new(layout: WorldLayout, own: RegionId, tables: &[TableDef]) -> BorderFeed {
        let shared = tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.access == TableAccess::Public && t.owner.is_none())
            .filter_map(|(i, t)| {
                let spatial = t.spatial_column()?;
                Some((
                    TableId(i as u32),
                    Shared {
                        columns: t.columns.clone(),
                        pk: t.primary_key.index(),
                        spatial: spatial.index(),
                    },
                ))
            })
            .collect();
        BorderFeed {
            layout,
            own,
            shared,
            held: HashMap::new(),
            pending: BTreeMap::new(),
            offsets: Vec::new(),
        }
    }

    /// The row's encoded primary key and the regions (other than this one) that must see it. `None` for a row
    /// that does not decode (the store validated it: not expected).
    fn locate(&mut self, table: TableId, row: &[u8]) -> Option<(Box<[u8]>, Vec<RegionId>)> {
        let s = self.shared.get(&table)?;
        let count = s.pk.max(s.spatial) + 1;
        codec::locate_columns(&s.columns, row, count, &mut self.offsets).ok()?;
        let slice = |c: usize| &row[self.offsets[c] as usize..self.offsets[c + 1] as usize];
        let key: Box<[u8]> = slice(s.pk).into();
        let p = codec::read_vec2(slice(s.spatial))?;
        Some((key, self.layout.seeing_from(self.own, p)))
    }

    fn note(&mut self, to: RegionId, table: TableId, key: &[u8], row: Option<&[u8]>) {
        self.pending
            .entry(to)
            .or_default()
            .insert((table, key.into()), row.map(Into::into));
    }

    /// Take in a committed changeset of this region.
    pub fn handle_changeset(&mut self, changeset: &Changeset) {
        for t in &changeset.tables {
            if !self.shared.contains_key(&t.table) {
                continue;
            }
            let table = t.table;
            let olds = t.deletes.iter().map(|r| (r, None));
            let news = t.inserts.iter().map(|r| (r, Some(r)));
            let updates = t.updates.iter().map(|u| (&u.new, Some(&u.new)));
            for (row, new) in olds.chain(news).chain(updates) {
                let Some((key, seeing)) = self.locate(table, row) else {
                    continue;
                };
                let before = self
                    .held
                    .remove(&(table, key.clone()))
                    .map_or_else(Vec::new, |h| h.holders);
                let after = if new.is_some() { seeing } else { Vec::new() };
                for &r in &before {
                    if !after.contains(&r) {
                        self.note(r, table, &key, None);
                    }
                }
                if let Some(new) = new {
                    for &r in &after {
                        self.note(r, table, &key, Some(new));
                    }
                    if !after.is_empty() {
                        self.held.insert(
                            (table, key),
                            Held {
                                holders: after,
                                row: new.clone(),
                            },
                        );
                    }
                }
            }
        }
    }

    /// The changes to each neighbour's copy since the last poll, for the neighbours with any, in region order.
    pub fn poll_tick(&mut self) -> Vec<(RegionId, BorderDelta)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(region, rows)| {
                let mut delta = BorderDelta::default();
                for ((table, key), row) in rows {
                    match row {
                        Some(row) => delta.upserts.push((table, row)),
                        None => delta.deletes.push((table, key)),
                    }
                }
                (region, delta)
            })
            .filter(|(_, d)| !d.is_empty())
            .collect()
    }

    /// Every row `region` must hold now (by table, in no particular order): the copy a neighbour that
    /// (re)connects starts from, before the deltas of the next polls.
    #[must_use]
    pub fn snapshot_for(&self, region: RegionId) -> Vec<(TableId, Box<[u8]>)> {
        self.held
            .iter()
            .filter(|(_, h)| h.holders.contains(&region))
            .map(|((table, _), h)| (*table, h.row.clone()))
            .collect()
    }

    /// How many rows some neighbour holds a copy of.
    #[must_use]
    pub fn rows_held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Rect, RegionConfig};
    use locus_store::{RowUpdate, TableChangeset};
    use locus_types::{ColumnId, ColumnType, IndexDef, IndexKind, Value};
    use proptest::prelude::*;
    use std::collections::HashMap as Map;

    /// 2 × 2 regions over a 100 m world, border 10 m; this is region 0 (`[0, 50)²`).
    fn layout() -> WorldLayout {
        let r = |n: &str, rect: [f32; 4], port: u16| RegionConfig {
            name: n.into(),
            rect: Rect::from(rect),
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
        };
        WorldLayout::new(
            "w".into(),
            100.0,
            10.0,
            "nats://x".into(),
            vec![
                r("a", [0.0, 0.0, 50.0, 50.0], 1),
                r("b", [50.0, 0.0, 100.0, 50.0], 2),
                r("c", [0.0, 50.0, 50.0, 100.0], 3),
                r("d", [50.0, 50.0, 100.0, 100.0], 4),
            ],
        )
        .unwrap()
    }

    /// Table 0: private `secret(id, pos)`; table 1: public `thing(id pk, pos spatial, n)`; table 2: public owned.
    fn tables() -> Vec<TableDef> {
        let def = |name: &str, access, owner| TableDef {
            name: name.into(),
            columns: vec![
                ColumnDef::new("id", ColumnType::U64),
                ColumnDef::new("pos", ColumnType::Vec2),
                ColumnDef::new("n", ColumnType::U32),
                ColumnDef::new("owner", ColumnType::Identity),
            ],
            primary_key: ColumnId(0),
            auto_inc: false,
            indexes: vec![IndexDef {
                column: ColumnId(1),
                kind: IndexKind::Spatial,
            }],
            access,
            owner,
            movable: false,
        };
        vec![
            def("secret", TableAccess::Private, None),
            def("thing", TableAccess::Public, None),
            def("mine", TableAccess::Public, Some(ColumnId(3))),
        ]
    }

    fn row(id: u64, x: f32, y: f32, n: u32) -> Box<[u8]> {
        codec::encode_row(
            &tables()[1].columns,
            &[
                Value::U64(id),
                Value::Vec2(glam::Vec2::new(x, y)),
                Value::U64(u64::from(n)),
                Value::Identity(locus_types::Identity([1; 32])),
            ],
        )
        .unwrap()
        .into()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u64, f32, f32),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..12, 0.0f32..=100.0, 0.0f32..=100.0).prop_map(|(k, x, y)| Op::Put(k, x, y)),
            (0u64..12).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Invariant 1 and 3, against a brute-force scan of the table after every changeset.
        #[test]
        fn every_neighbour_holds_exactly_the_rows_within_its_border(
            steps in proptest::collection::vec(proptest::collection::vec(op(), 1..6), 1..30),
        ) {
            let layout = layout();
            let mut feed = BorderFeed::new(layout.clone(), RegionId(0), &tables());
            let mut table: Map<u64, Box<[u8]>> = Map::new();
            let mut copies: Map<RegionId, Map<u64, Box<[u8]>>> = Map::new();
            let mut n = 0;
            for step in steps {
                // One changeset per step, as the store makes one (a key at most once per changeset).
                let mut tc = TableChangeset { table: TableId(1), inserts: vec![], deletes: vec![], updates: vec![], next_auto_inc: None };
                let mut touched = std::collections::HashSet::new();
                for op in step {
                    let key = match &op { Op::Put(k, ..) | Op::Remove(k) => *k };
                    if !touched.insert(key) { continue; }
                    n += 1;
                    match op {
                        Op::Put(k, x, y) => {
                            let new = row(k, x, y, n);
                            match table.insert(k, new.clone()) {
                                Some(old) => tc.updates.push(RowUpdate { old, new }),
                                None => tc.inserts.push(new),
                            }
                        }
                        Op::Remove(k) => if let Some(old) = table.remove(&k) { tc.deletes.push(old) },
                    }
                }
                // Rows of the private and the owned table are never shared.
                let private = TableChangeset { table: TableId(0), inserts: vec![row(99, 49.0, 49.0, 0)], deletes: vec![], updates: vec![], next_auto_inc: None };
                let owned = TableChangeset { table: TableId(2), inserts: vec![row(98, 49.0, 49.0, 0)], deletes: vec![], updates: vec![], next_auto_inc: None };
                feed.handle_changeset(&Changeset { tables: vec![private, tc, owned] });
                for (region, delta) in feed.poll_tick() {
                    let copy = copies.entry(region).or_default();
                    let mut named = std::collections::HashSet::new();
                    let columns = &tables()[1].columns;
                    for (t, key) in &delta.deletes {
                        prop_assert_eq!(*t, TableId(1));
                        let Value::U64(id) = codec::decode_value(&columns[0], key).unwrap() else { unreachable!() };
                        prop_assert!(named.insert(id), "a row twice in one delta");
                        copy.remove(&id);
                    }
                    for (t, r) in &delta.upserts {
                        prop_assert_eq!(*t, TableId(1));
                        let Value::U64(id) = codec::decode_row(columns, r).unwrap()[0].clone() else { unreachable!() };
                        prop_assert!(named.insert(id), "a row twice in one delta");
                        copy.insert(id, r.clone());
                    }
                }
                for (i, region) in layout.regions().iter().enumerate().skip(1) {
                    let id = RegionId(i as u16);
                    let want: Map<u64, &Box<[u8]>> = table.iter().filter(|(_, r)| {
                        let p = codec::decode_row(&tables()[1].columns, r).unwrap()[1].clone();
                        let Value::Vec2(p) = p else { unreachable!() };
                        let dx = (region.rect.min.x - p.x).max(p.x - region.rect.max.x).max(0.0);
                        let dy = (region.rect.min.y - p.y).max(p.y - region.rect.max.y).max(0.0);
                        (dx * dx + dy * dy).sqrt() <= 10.0
                    }).map(|(k, r)| (*k, r)).collect();
                    let copy = copies.get(&id).cloned().unwrap_or_default();
                    let mut have: Vec<&Box<[u8]>> = copy.values().collect();
                    let mut want_rows: Vec<&Box<[u8]>> = want.values().copied().collect();
                    have.sort();
                    want_rows.sort();
                    prop_assert_eq!(&have, &want_rows, "region {}", i);
                    let mut snap: Vec<Box<[u8]>> = feed.snapshot_for(id).into_iter().map(|(_, r)| r).collect();
                    snap.sort();
                    prop_assert_eq!(snap.iter().collect::<Vec<_>>(), want_rows, "snapshot of region {}", i);
                }
            }
        }
    }
}

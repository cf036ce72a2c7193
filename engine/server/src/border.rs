//! The world's side of a region's border (sans-IO): what the world feeds its neighbours' copies of its rows, and
//! how the copies it holds of theirs reach its interest stage.
//!
//! A world that is one region of a larger one ([`crate::World::set_region`]) keeps a [`BorderFeed`] of its own
//! committed changesets (handed out per tick in [`crate::TickOutput::border`]) and the [`BorderCopies`] of its
//! neighbours' rows near the border, which arrive as [`crate::Input::Border`] and go to the interest stage alone:
//! reducers never see them and the log never keeps them. See `locus_region` for the invariants, and
//! `engine/docs/regions.md`.

use locus_region::{BorderCopies, BorderDelta, BorderFeed, RegionId, WorldLayout, link::Rows};
use locus_store::{Changeset, Database, TableChangeset};
use locus_types::{TableDef, TableId, codec};

/// A change to the copy of one neighbour's rows.
#[derive(Debug)]
pub enum BorderChange {
    /// Apply these changes.
    Delta(BorderDelta),
    /// Replace the whole copy with these rows.
    Whole(Rows),
}

/// The world's border state: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Border {
    layout: WorldLayout,
    own: RegionId,
    feed: BorderFeed,
    copies: BorderCopies,
    /// Changes to the copies that arrived during the tick, applied after its own changesets.
    arrived: Vec<(RegionId, BorderChange)>,
}

fn defs(db: &Database) -> Vec<TableDef> {
    db.tables().map(|t| t.def().clone()).collect()
}

impl Border {
    /// The border of region `own` of `layout`, over `db` as it is: the feed starts out knowing every row (so the
    /// first whole copy a neighbour asks for is complete), and no copy is held.
    pub(crate) fn new(layout: WorldLayout, own: RegionId, db: &Database) -> Border {
        let tables = defs(db);
        let mut feed = BorderFeed::new(layout.clone(), own, &tables);
        let all = Changeset {
            tables: db
                .tables()
                .map(|t| TableChangeset {
                    table: t.id(),
                    inserts: t.iter().map(Into::into).collect(),
                    ..TableChangeset::default()
                })
                .collect(),
        };
        feed.handle_changeset(&all);
        // Neighbours start from a whole copy ([`Border::whole_for`]), not from these deltas.
        drop(feed.poll_tick());
        Border {
            copies: BorderCopies::new(&tables),
            layout,
            own,
            feed,
            arrived: Vec::new(),
        }
    }

    /// The layout.
    pub(crate) fn layout(&self) -> &WorldLayout {
        &self.layout
    }

    /// This region.
    pub(crate) fn own(&self) -> RegionId {
        self.own
    }

    /// Hold a change that arrived until the tick's own changesets are in the interest stage.
    pub(crate) fn arrive(&mut self, from: RegionId, change: BorderChange) {
        self.arrived.push((from, change));
    }

    /// The tick's own committed changesets as the interest stage must see them ([`BorderCopies::merge`]); `None`:
    /// as they are. Also feeds them to the border feed.
    pub(crate) fn merge(&mut self, committed: &[Changeset]) -> Option<Vec<Changeset>> {
        for c in committed {
            self.feed.handle_changeset(c);
        }
        self.copies.merge(committed)
    }

    /// The changes to the copies that arrived during the tick, for the interest stage (after the tick's own).
    pub(crate) fn take_arrived(&mut self, db: &Database) -> Vec<Changeset> {
        let own = |table: TableId, key: &[u8]| {
            db.table(table).is_some_and(|t| {
                let def = t.def();
                codec::decode_value(&def.columns[def.primary_key.index()], key)
                    .ok()
                    .and_then(|k| t.get(&k).ok().flatten())
                    .is_some()
            })
        };
        let mut out = Vec::new();
        for (from, change) in std::mem::take(&mut self.arrived) {
            let c = match change {
                BorderChange::Delta(d) => self.copies.apply(from, &d, own),
                BorderChange::Whole(rows) => self.copies.replace(from, &rows, own),
            };
            if !c.is_empty() {
                out.push(c);
            }
        }
        out
    }

    /// The tick's changes to each neighbour's copy.
    pub(crate) fn poll(&mut self) -> Vec<(RegionId, BorderDelta)> {
        self.feed.poll_tick()
    }

    /// The whole copy `to` should hold.
    pub(crate) fn whole_for(&self, to: RegionId) -> Rows {
        self.feed.snapshot_for(to)
    }

    /// The copies, for handing rows over ([`crate::handoff`]).
    pub(crate) fn copies_mut(&mut self) -> &mut BorderCopies {
        &mut self.copies
    }

    /// How many copies of neighbours' rows are held.
    pub(crate) fn copies_held(&self) -> usize {
        self.copies.len()
    }
}

/// The first `auto_inc` key of region `own`'s range: each region gives out keys from `(index + 1) · 2⁴⁰` on, so a
/// row keeps its key when it moves to another region, and border copies never meet a key of the region's own
/// (1 099 511 627 776 keys per region and table; up to 8 388 606 regions with `i64` keys).
#[must_use]
pub fn region_key_base(own: RegionId) -> u64 {
    (u64::from(own.0) + 1) << 40
}

/// How many keys each region's range holds.
pub const REGION_KEY_SPAN: u64 = 1 << 40;

/// Put every `auto_inc` sequence of `db` into region `own`'s range ([`region_key_base`]), in one transaction: past
/// the highest key of the range the table holds (rows keyed in other regions' ranges, handed over, do not count),
/// or at the range's start. Its changeset, for the log (empty when every sequence was there already).
pub(crate) fn reserve_region_keys(db: &mut Database, own: RegionId) -> Changeset {
    let base = region_key_base(own);
    let end = base.saturating_add(REGION_KEY_SPAN);
    let tables: Vec<(TableId, u64)> = db
        .tables()
        // The engine's own tables keep their sequences (the outbox numbers its messages from 1).
        .filter(|t| t.def().auto_inc && !t.name().starts_with(locus_types::abi::RESERVED_PREFIX))
        .map(|t| {
            let highest = t
                .iter()
                .filter_map(|row| match t.primary_key_of(row) {
                    Ok(locus_types::Value::U64(k)) => Some(k),
                    Ok(locus_types::Value::I64(k)) => u64::try_from(k).ok(),
                    _ => None,
                })
                .filter(|k| (base..end).contains(k))
                .max();
            (t.id(), highest.map_or(base, |k| k + 1))
        })
        .collect();
    let mut tx = db.begin();
    for (t, next) in tables {
        tx.set_auto_inc(t, next).expect("the table exists");
    }
    tx.commit()
}

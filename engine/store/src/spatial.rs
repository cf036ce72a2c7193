//! The spatial index: an `rstar` R-tree over a table's `Vec2` column, kept cheap to update with *fat envelopes*.
//!
//! # Terms
//!
//! - **position**: a row's exact `Vec2`, kept in a side array indexed by row slot.
//! - **fat envelope**: the square `center ± margin` stored in the R-tree for a row, where `center` is the position
//!   the row had when it was last (re)inserted into the tree.
//!
//! # Invariants
//!
//! - Every live row's position lies inside (or on the border of) its fat envelope; the tree holds exactly one
//!   entry per live row.
//! - A move that stays inside the fat envelope only writes the side array; a move that leaves it removes the entry
//!   and inserts a new one centered on the new position. With `margin = 0` every move re-inserts (the naive
//!   baseline the benchmarks compare against).
//! - Queries are exact: the tree yields candidates whose fat envelope intersects the query, and each candidate is
//!   filtered on its exact position. All distance tests use [`distance_2`], so a brute-force scan with the same
//!   function returns the same rows.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use locus_types::Vec2;
use rstar::{
    AABB, Envelope, PointDistance, RStarInsertionStrategy, RTree, RTreeObject, RTreeParams,
};

/// The largest absolute coordinate a spatial column accepts. Positions must be finite and within ±`MAX_COORD`.
pub const MAX_COORD: f32 = 1.0e9;

/// The squared Euclidean distance between two points, as every spatial query and test computes it.
#[must_use]
#[inline]
pub fn distance_2(a: Vec2, b: Vec2) -> f32 {
    let dx = a.x - b.x;
    let dy = a.y - b.y;
    dx * dx + dy * dy
}

/// Whether `p` may be stored in a spatial column.
#[must_use]
pub fn valid_position(p: Vec2) -> bool {
    p.is_finite() && p.x.abs() <= MAX_COORD && p.y.abs() <= MAX_COORD
}

/// Whether `p` lies in the box `[min, max]`, borders included.
#[must_use]
#[inline]
pub fn in_box(p: Vec2, min: Vec2, max: Vec2) -> bool {
    p.x >= min.x && p.x <= max.x && p.y >= min.y && p.y <= max.y
}

/// R-tree node sizes: wider nodes (up to 32 entries) than rstar's default (6) make the tree shallower, which speeds
/// up both the queries and the removals a move out of its fat envelope needs (measured in `benches/store.rs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params;

impl RTreeParams for Params {
    const MIN_SIZE: usize = PARAM_MIN;
    const MAX_SIZE: usize = PARAM_MAX;
    const REINSERTION_COUNT: usize = PARAM_REINSERT;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

const PARAM_MIN: usize = 10;
const PARAM_MAX: usize = 32;
const PARAM_REINSERT: usize = 9;

/// One R-tree entry: a row slot and its fat envelope.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    envelope: AABB<[f32; 2]>,
    slot: u32,
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f32; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

impl PointDistance for Entry {
    fn distance_2(&self, point: &[f32; 2]) -> f32 {
        self.envelope.distance_2(point)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct SlotPos {
    pos: Vec2,
    center: Vec2,
}

/// An R-tree with fat envelopes over one table's spatial column; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct SpatialIndex {
    tree: RTree<Entry, Params>,
    margin: f32,
    slots: Vec<SlotPos>,
    reinserts: u64,
}

impl SpatialIndex {
    pub(crate) fn new(margin: f32) -> Self {
        SpatialIndex {
            tree: RTree::new_with_params(),
            margin: margin.max(0.0),
            slots: Vec::new(),
            reinserts: 0,
        }
    }

    fn fat(&self, center: Vec2) -> AABB<[f32; 2]> {
        let m = self.margin;
        AABB::from_corners([center.x - m, center.y - m], [center.x + m, center.y + m])
    }

    /// The exact position of a live row's slot.
    pub(crate) fn position(&self, slot: u32) -> Vec2 {
        self.slots[slot as usize].pos
    }

    /// How many times a move left its fat envelope and re-inserted into the tree.
    pub(crate) fn reinserts(&self) -> u64 {
        self.reinserts
    }

    pub(crate) fn insert(&mut self, slot: u32, pos: Vec2) {
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, SlotPos::default());
        }
        self.slots[i] = SlotPos { pos, center: pos };
        self.tree.insert(Entry {
            envelope: self.fat(pos),
            slot,
        });
    }

    /// Build the tree at once from `(slot, position)` pairs (`rstar`'s `bulk_load`). Replaces any content.
    pub(crate) fn bulk_load(&mut self, rows: impl IntoIterator<Item = (u32, Vec2)>) {
        let mut entries = Vec::new();
        for (slot, pos) in rows {
            let i = slot as usize;
            if self.slots.len() <= i {
                self.slots.resize(i + 1, SlotPos::default());
            }
            self.slots[i] = SlotPos { pos, center: pos };
            entries.push(Entry {
                envelope: self.fat(pos),
                slot,
            });
        }
        self.tree = RTree::bulk_load_with_params(entries);
    }

    pub(crate) fn remove(&mut self, slot: u32) {
        let center = self.slots[slot as usize].center;
        let removed = self.tree.remove(&Entry {
            envelope: self.fat(center),
            slot,
        });
        debug_assert!(removed.is_some(), "spatial entry for slot {slot} missing");
    }

    /// Record that a live row moved to `pos`.
    pub(crate) fn set_position(&mut self, slot: u32, pos: Vec2) {
        let s = self.slots[slot as usize];
        if s.pos == pos {
            return;
        }
        if self.fat(s.center).contains_point(&pos.to_array()) {
            self.slots[slot as usize].pos = pos;
        } else {
            self.remove(slot);
            self.reinserts += 1;
            self.slots[slot as usize] = SlotPos { pos, center: pos };
            self.tree.insert(Entry {
                envelope: self.fat(pos),
                slot,
            });
        }
    }

    /// Slots of rows whose position is within `radius` of `center` (`distance_2 <= radius²`).
    pub(crate) fn within_radius(
        &self,
        center: Vec2,
        radius: f32,
    ) -> impl Iterator<Item = u32> + '_ {
        let r2 = radius * radius;
        // Pad the candidate box so f32 rounding in `distance_2` can never admit a point outside it.
        let pad = radius.abs() * 1e-4 + 1e-2;
        let half = radius.abs() + pad;
        let query = AABB::from_corners(
            [center.x - half, center.y - half],
            [center.x + half, center.y + half],
        );
        self.tree
            .locate_in_envelope_intersecting(query)
            .filter(move |e| distance_2(self.slots[e.slot as usize].pos, center) <= r2)
            .map(|e| e.slot)
    }

    /// Slots of rows whose position lies in the box `[min, max]`, borders included.
    pub(crate) fn within_envelope(&self, min: Vec2, max: Vec2) -> impl Iterator<Item = u32> + '_ {
        let query = AABB::from_corners(min.to_array(), max.to_array());
        self.tree
            .locate_in_envelope_intersecting(query)
            .filter(move |e| in_box(self.slots[e.slot as usize].pos, min, max))
            .map(|e| e.slot)
    }

    /// The `k` slots nearest to `point` with their `distance_2`, nearest first.
    ///
    /// Exact despite fat envelopes: candidates come in order of their envelope's distance, which never exceeds
    /// their exact distance, so the search stops once the next envelope is farther than the k-th best exact hit.
    pub(crate) fn nearest(&self, point: Vec2, k: usize) -> Vec<(u32, f32)> {
        // More neighbours than rows cannot be found; clamping also keeps a huge `k` from sizing the heap.
        let k = k.min(self.tree.size());
        if k == 0 {
            return Vec::new();
        }
        let mut best: BinaryHeap<Hit> = BinaryHeap::with_capacity(k + 1);
        for (e, env_d2) in self
            .tree
            .nearest_neighbor_iter_with_distance_2(point.to_array())
        {
            if best.len() == k && best.peek().is_some_and(|worst| env_d2 > worst.d2) {
                break;
            }
            let d2 = distance_2(self.slots[e.slot as usize].pos, point);
            best.push(Hit { d2, slot: e.slot });
            if best.len() > k {
                best.pop();
            }
        }
        let mut hits: Vec<(u32, f32)> = best.into_iter().map(|h| (h.slot, h.d2)).collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits
    }
}

#[derive(Clone, Copy, Debug)]
struct Hit {
    d2: f32,
    slot: u32,
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d2
            .total_cmp(&other.d2)
            .then(self.slot.cmp(&other.slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_moves_stay_in_the_fat_envelope_and_queries_stay_exact() {
        let mut index = SpatialIndex::new(2.0);
        index.insert(0, Vec2::new(0.0, 0.0));
        index.insert(1, Vec2::new(10.0, 0.0));
        for step in 1..=7 {
            index.set_position(0, Vec2::new(0.25 * step as f32, 0.0));
        }
        assert_eq!(index.reinserts(), 0);
        // Exact position 1.75: inside radius 1.8 of the origin's neighbour at 3.5, outside radius 1.7.
        assert_eq!(
            index
                .within_radius(Vec2::new(3.5, 0.0), 1.75)
                .collect::<Vec<_>>(),
            vec![0]
        );
        assert!(
            index
                .within_radius(Vec2::new(3.5, 0.0), 1.7)
                .next()
                .is_none()
        );
        index.set_position(0, Vec2::new(2.25, 0.0));
        assert_eq!(index.reinserts(), 1);
        assert_eq!(index.nearest(Vec2::new(9.0, 0.0), 1), vec![(1, 1.0)]);
        let near: Vec<u32> = index
            .nearest(Vec2::new(0.0, 0.0), 2)
            .into_iter()
            .map(|h| h.0)
            .collect();
        assert_eq!(near, vec![0, 1]);
        index.remove(1);
        assert_eq!(index.nearest(Vec2::new(9.0, 0.0), 5).len(), 1);
        assert!(
            index
                .within_envelope(Vec2::new(2.25, 0.0), Vec2::new(3.0, 1.0))
                .eq([0])
        );
    }

    #[test]
    fn zero_margin_reinserts_every_move() {
        let mut index = SpatialIndex::new(0.0);
        index.insert(3, Vec2::ZERO);
        index.set_position(3, Vec2::new(0.1, 0.0));
        index.set_position(3, Vec2::new(0.2, 0.0));
        assert_eq!(index.reinserts(), 2);
        assert!(index.within_radius(Vec2::new(0.2, 0.0), 0.0).eq([3]));
    }
}

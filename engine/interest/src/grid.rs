//! A uniform grid of square cells, each listing the items (rows or clients) whose point lies in it.
//!
//! Cells are kept in a hash map, so the world needs no bounds; the map uses a fixed-seed hasher and each cell is
//! a `Vec`, so the order of a query's results depends only on the order of the operations (determinism).
//!
//! Items are small dense ids (row ids, client indices): the grid remembers each item's index in its cell, so
//! moving an item within its cell or out of it costs no search of the cell.

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use locus_types::Vec2;

/// The coordinates of a cell.
pub(crate) type Cell = (i32, i32);

/// How many points [`Block::within`] tests at once.
const LANES: usize = 8;

/// The items of a block of cells, coordinates apart (so distance tests run several points at a time), in the
/// order of the cells' lists.
#[derive(Debug, Default)]
pub(crate) struct Block {
    ids: Vec<u32>,
    /// Padded to a multiple of [`LANES`] with points at infinity.
    xs: Vec<f32>,
    ys: Vec<f32>,
}

impl Block {
    /// Append to `out`, in block order, the items whose squared distance to `center` is at most `r2` (computed as
    /// `dx * dx + dy * dy`, the same arithmetic as `Vec2::length_squared`).
    pub(crate) fn within(&self, center: Vec2, r2: f32, out: &mut Vec<u32>) {
        for (k, (xs, ys)) in self
            .xs
            .chunks_exact(LANES)
            .zip(self.ys.chunks_exact(LANES))
            .enumerate()
        {
            let mut hits = 0u32;
            for j in 0..LANES {
                let (dx, dy) = (xs[j] - center.x, ys[j] - center.y);
                hits |= u32::from(dx * dx + dy * dy <= r2) << j;
            }
            while hits != 0 {
                let j = hits.trailing_zeros() as usize;
                out.push(self.ids[k * LANES + j]);
                hits &= hits - 1;
            }
        }
    }
}

/// Items (`u32` ids, each with its point, kept inline so a query reads no other memory) bucketed by cell.
#[derive(Debug)]
pub(crate) struct Grid {
    size: f32,
    cells: HashMap<Cell, Vec<(u32, Vec2)>, FixedState>,
    /// `slot[item]`: the item's index in its cell (meaningless for items not in the grid).
    slot: Vec<u32>,
}

impl Grid {
    pub(crate) fn new(size: f32) -> Grid {
        Grid {
            size,
            cells: HashMap::with_hasher(FixedState::with_seed(0x10c05)),
            slot: Vec::new(),
        }
    }

    /// The cell holding point `p` (coordinates saturate at the `i32` range).
    pub(crate) fn cell(&self, p: Vec2) -> Cell {
        (
            (p.x / self.size).floor() as i32,
            (p.y / self.size).floor() as i32,
        )
    }

    /// Add `item` (not in the grid) at `at`, in `cell`.
    pub(crate) fn insert(&mut self, cell: Cell, item: u32, at: Vec2) {
        let items = self.cells.entry(cell).or_default();
        let i = item as usize;
        if self.slot.len() <= i {
            self.slot.resize((i + 1).max(self.slot.len() * 2), 0);
        }
        self.slot[i] = items.len() as u32;
        items.push((item, at));
    }

    /// Record that `item`, in `cell`, is now at `at` (still in that cell).
    pub(crate) fn set_point(&mut self, cell: Cell, item: u32, at: Vec2) {
        let i = self.slot[item as usize] as usize;
        let items = self.cells.get_mut(&cell).expect("the item is in this cell");
        debug_assert_eq!(items[i].0, item, "the grid's slots are consistent");
        items[i].1 = at;
    }

    /// Take `item` out of `cell`.
    pub(crate) fn remove(&mut self, cell: Cell, item: u32) {
        let items = self.cells.get_mut(&cell).expect("the item is in this cell");
        let i = self.slot[item as usize] as usize;
        debug_assert_eq!(items[i].0, item, "the grid's slots are consistent");
        items.swap_remove(i);
        if let Some(&(moved, _)) = items.get(i) {
            self.slot[moved as usize] = i as u32;
        }
        if items.is_empty() {
            self.cells.remove(&cell);
        }
    }

    /// How many cells around a point's cell a square of half-side `radius` can reach.
    pub(crate) fn reach(&self, radius: f32) -> i32 {
        (radius / self.size).ceil() as i32
    }

    /// Replace `block` with the items of the `(2 reach + 1)²` cells centred on `cell`.
    pub(crate) fn gather_block(&self, cell: Cell, reach: i32, block: &mut Block) {
        block.ids.clear();
        block.xs.clear();
        block.ys.clear();
        for x in cell.0.saturating_sub(reach)..=cell.0.saturating_add(reach) {
            for y in cell.1.saturating_sub(reach)..=cell.1.saturating_add(reach) {
                if let Some(items) = self.cells.get(&(x, y)) {
                    for &(id, at) in items {
                        block.ids.push(id);
                        block.xs.push(at.x);
                        block.ys.push(at.y);
                    }
                }
            }
        }
        // Pad to whole lanes with points infinitely far away (never within any radius).
        while !block.xs.len().is_multiple_of(LANES) {
            block.xs.push(f32::INFINITY);
            block.ys.push(f32::INFINITY);
        }
    }

    /// Call `f` with the items (and their points) of every cell that overlaps the square of half-side `radius`
    /// around `center`.
    pub(crate) fn for_each_near(&self, center: Vec2, radius: f32, mut f: impl FnMut(u32, Vec2)) {
        let lo = self.cell(center - Vec2::splat(radius));
        let hi = self.cell(center + Vec2::splat(radius));
        for x in lo.0..=hi.0 {
            for y in lo.1..=hi.1 {
                if let Some(items) = self.cells.get(&(x, y)) {
                    for &(item, at) in items {
                        f(item, at);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_sees_every_item_in_the_overlapping_cells_and_no_other() {
        let mut g = Grid::new(10.0);
        let points = [
            Vec2::new(0.0, 0.0),
            Vec2::new(9.9, 9.9),
            Vec2::new(10.0, 0.0),
            Vec2::new(-0.1, -0.1),
            Vec2::new(35.0, 0.0),
        ];
        for (i, p) in points.iter().enumerate() {
            g.insert(g.cell(*p), i as u32, *p);
        }
        let mut seen = Vec::new();
        g.for_each_near(Vec2::new(5.0, 5.0), 5.0, |i, at| {
            assert_eq!(at, points[i as usize]);
            seen.push(i);
        });
        seen.sort_unstable();
        // The square [0, 10]² overlaps cells (0,0), (0,1), (1,0), (1,1): points 0, 1, 2.
        assert_eq!(seen, [0, 1, 2]);
        g.remove(g.cell(points[1]), 1);
        let mut seen = Vec::new();
        g.for_each_near(Vec2::new(5.0, 5.0), 5.0, |i, _| seen.push(i));
        seen.sort_unstable();
        assert_eq!(seen, [0, 2]);
    }
}

//! A uniform grid of square cells, each listing the items (rows or clients) whose point lies in it.
//!
//! Cells are kept in a hash map, so the world needs no bounds; the map uses a fixed-seed hasher and each cell is
//! a `Vec`, so the order of a query's results depends only on the order of the operations (determinism).

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use locus_types::Vec2;

/// The coordinates of a cell.
pub(crate) type Cell = (i32, i32);

/// Items (`u32` ids, each with its point, kept inline so a query reads no other memory) bucketed by cell.
#[derive(Debug)]
pub(crate) struct Grid {
    size: f32,
    cells: HashMap<Cell, Vec<(u32, Vec2)>, FixedState>,
}

impl Grid {
    pub(crate) fn new(size: f32) -> Grid {
        Grid {
            size,
            cells: HashMap::with_hasher(FixedState::with_seed(0x10c05)),
        }
    }

    /// The cell holding point `p` (coordinates saturate at the `i32` range).
    pub(crate) fn cell(&self, p: Vec2) -> Cell {
        (
            (p.x / self.size).floor() as i32,
            (p.y / self.size).floor() as i32,
        )
    }

    pub(crate) fn insert(&mut self, cell: Cell, item: u32, at: Vec2) {
        self.cells.entry(cell).or_default().push((item, at));
    }

    /// Record that `item`, still in `cell`, is now at `at`.
    pub(crate) fn set_point(&mut self, cell: Cell, item: u32, at: Vec2) {
        if let Some(x) = self
            .cells
            .get_mut(&cell)
            .and_then(|items| items.iter_mut().find(|x| x.0 == item))
        {
            x.1 = at;
        }
    }

    pub(crate) fn remove(&mut self, cell: Cell, item: u32) {
        if let Some(items) = self.cells.get_mut(&cell) {
            if let Some(i) = items.iter().position(|x| x.0 == item) {
                // `remove`, not `swap_remove`: keeps the cell's order a function of the operations alone.
                items.remove(i);
            }
            if items.is_empty() {
                self.cells.remove(&cell);
            }
        }
    }

    /// How many cells around a point's cell a square of half-side `radius` can reach.
    pub(crate) fn reach(&self, radius: f32) -> i32 {
        (radius / self.size).ceil() as i32
    }

    /// Append the items of the `(2 reach + 1)²` cells centred on `cell` to `out`.
    pub(crate) fn gather_block(&self, cell: Cell, reach: i32, out: &mut Vec<(u32, Vec2)>) {
        for x in cell.0.saturating_sub(reach)..=cell.0.saturating_add(reach) {
            for y in cell.1.saturating_sub(reach)..=cell.1.saturating_add(reach) {
                if let Some(items) = self.cells.get(&(x, y)) {
                    out.extend_from_slice(items);
                }
            }
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

//! The moved-client pass: a client whose center moved goes over its spatial view and the rows around it.

use locus_types::Vec2;

use super::{Ctx, Scratch, admits, admits_quick, dist2, drop_spatial, patchable};
use crate::interest::RowId;
use crate::registry::{Client, Mode};
use crate::view::{QUEUED, SENT};

/// For a client in [`Mode::Moved`]: spatial rows in view leave beyond the leave radius (or when no longer
/// admitted), changed ones are updated; rows now within the enter radius enter. An unchanged row that was within
/// the enter radius of the previous center is in view already (invariant 3; a capped client is kept or recomputed
/// in full instead), so only the others are looked at.
pub(crate) fn moved(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    if c.mode != Mode::Moved {
        return;
    }
    let mirror = ctx.mirror;
    let seq = mirror.seq();
    let unlimited = ctx.config.byte_budget.is_none();
    let Some((center, enter2, leave2)) = c.circle() else {
        // No center (the followed row is gone): every spatial row leaves.
        drop_spatial(c);
        return;
    };
    let prev = c.prev_center;
    // The spatial rows in view: the ones that stay are marked, so the enter scan below knows them without a
    // lookup.
    let mark = walk_view(ctx, s, c, center, leave2, unlimited);
    // Enter. The rows of the cells around the client's cell, gathered once for every client in that cell (they
    // come one after the other: the clients' passes run in cell order).
    let grid = mirror.grid();
    let key = (grid.cell(center), grid.reach(enter2.sqrt()));
    if s.gather_key != Some(key) {
        grid.gather_block(key.0, key.1, &mut s.gathered);
        s.gather_key = Some(key);
    }
    s.near.clear();
    s.gathered.within(center, enter2, &mut s.near);
    for k in 0..s.near.len() {
        let id = RowId(s.near[k]);
        if s.marked(id, mark) {
            continue;
        }
        let hot = mirror.hot(id);
        if hot.changed != seq && prev.is_some_and(|p| dist2(p, hot.pos) <= enter2) {
            continue;
        }
        let row = mirror.row(id);
        if admits(mirror, &mut s.offsets, c, row) {
            c.view.add(id, row.table, true);
        }
    }
}

/// Go over `c`'s spatial view rows around `center`: a row leaves beyond the leave radius (`leave2`, squared) or,
/// if it changed, when no longer admitted; a changed row that stays is queued as changed (or, if `direct` and
/// nothing can defer it, put straight into the delta: only when no later pass this tick may queue it again). The
/// rows that stay get the returned mark in `s`.
///
/// Forward (the order the hardware prefetches in); a removal swaps the last entry into the slot, which is then
/// looked at next.
pub(super) fn walk_view(
    ctx: Ctx<'_>,
    s: &mut Scratch,
    c: &mut Client,
    center: Vec2,
    leave2: f32,
    direct: bool,
) -> u32 {
    let mirror = ctx.mirror;
    let seq = mirror.seq();
    let mark = s.next_mark();
    let mut slot = 0;
    while let Some(&e) = c.view.entries.get(slot) {
        if !e.spatial {
            slot += 1;
            continue;
        }
        let hot = mirror.hot(e.row);
        let leaves = dist2(center, hot.pos) > leave2
            || (hot.changed == seq
                && !admits_quick(mirror, c, e.table())
                && !admits(mirror, &mut s.offsets, c, mirror.row(e.row)));
        if leaves {
            c.view.remove(e.row, &mut c.out);
            continue;
        }
        s.mark(e.row, mark);
        if hot.changed == seq {
            if direct && e.flags & (SENT | QUEUED) == SENT {
                // Nothing can defer it: straight into the delta.
                if patchable(mirror, e) {
                    c.out.patches.push(e.row);
                } else {
                    c.out.updates.push(e.row);
                }
            } else {
                c.view.mark_dirty(slot as u32);
            }
        }
        slot += 1;
    }
    mark
}

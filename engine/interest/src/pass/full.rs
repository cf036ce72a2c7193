//! The full scans: a changed non-spatial subscription's rows, a spatial view recomputed from scratch, and the cap.

use super::{Ctx, Scratch, admits, dist2, drop_spatial};
use crate::interest::RowId;
use crate::registry::{Client, Mode};

/// For each non-spatial table whose subscription changed: its view rows are exactly the table's admitted rows.
pub(crate) fn rescan(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    if c.rescan.is_empty() {
        return;
    }
    for table in std::mem::take(&mut c.rescan) {
        let mark = s.next_mark();
        s.rows.clear();
        for &id in &ctx.mirror.info(table).rows {
            if admits(ctx.mirror, &mut s.offsets, c, ctx.mirror.row(id)) {
                s.rows.push(id);
                s.marks[id.0 as usize] = mark;
            }
        }
        for id in c
            .view
            .rows_where(|e| e.table() == table && !s.marked(e.row, mark))
        {
            c.view.remove(id, &mut c.out);
        }
        for k in 0..s.rows.len() {
            let id = s.rows[k];
            if c.view.slot(id).is_none() {
                c.view.add(id, table, false);
            }
        }
    }
}

/// For a client in [`Mode::Full`]: its spatial view becomes the admitted rows within the enter radius and the
/// admitted view rows within the leave radius, the nearest [`max_visible`](crate::InterestConfig::max_visible)
/// of them if there are more.
pub(crate) fn full(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    if c.mode != Mode::Full {
        return;
    }
    let mirror = ctx.mirror;
    let max = ctx.config.max_visible;
    c.full = false;
    let (Some((center, enter2, leave2)), Some(area)) = (c.circle(), &c.area) else {
        c.capped = false;
        drop_spatial(c);
        return;
    };
    // Candidates: admitted rows within the enter radius, and admitted view rows within the leave radius.
    s.rows.clear();
    mirror
        .grid()
        .for_each_near(center, area.leave_radius, |id, at| {
            if dist2(center, at) <= leave2 {
                s.rows.push(RowId(id));
            }
        });
    s.pairs.clear();
    for k in 0..s.rows.len() {
        let id = s.rows[k];
        let d = dist2(center, mirror.hot(id).pos);
        if d > leave2 {
            continue;
        }
        let in_view = c.view.slot(id).is_some();
        if (d <= enter2 || in_view) && admits(mirror, &mut s.offsets, c, mirror.row(id)) {
            s.pairs.push((d, id));
        }
    }
    let capped = s.pairs.len() > max;
    if capped {
        // The nearest `max`; ties broken by row id, so the choice is deterministic.
        s.pairs
            .select_nth_unstable_by(max, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        s.pairs.truncate(max);
    }
    let mark = s.next_mark();
    for k in 0..s.pairs.len() {
        let id = s.pairs[k].1;
        s.mark(id, mark);
    }
    for id in c.view.rows_where(|e| e.spatial && !s.marked(e.row, mark)) {
        c.view.remove(id, &mut c.out);
    }
    for &(_, id) in &s.pairs {
        if c.view.slot(id).is_none() {
            c.view.add(id, mirror.row(id).table, true);
        }
    }
    // Rows that stayed and changed: an update (their watchers were left to this pass).
    for slot in 0..c.view.entries.len() {
        let e = c.view.entries[slot];
        if e.spatial && mirror.changed_now(e.row) {
            c.view.mark_dirty(slot as u32);
        }
    }
    c.capped = capped;
}

/// A client over the cap after this tick's enters keeps the nearest, and is recomputed in full until the crowd
/// thins.
pub(crate) fn enforce_cap(ctx: Ctx<'_>, c: &mut Client) {
    let max = ctx.config.max_visible;
    if c.view.spatial() <= max {
        return;
    }
    let center = c.center.expect("spatial rows in view need a center");
    let mut spatial: Vec<(f32, RowId)> = c
        .view
        .entries
        .iter()
        .filter(|e| e.spatial)
        .map(|e| (dist2(center, ctx.mirror.hot(e.row).pos), e.row))
        .collect();
    spatial.select_nth_unstable_by(max, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for &(_, id) in &spatial[max..] {
        c.view.remove(id, &mut c.out);
    }
    c.capped = true;
}

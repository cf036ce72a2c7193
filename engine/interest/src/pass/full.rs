//! The full scans: a changed non-spatial subscription's rows, a spatial view recomputed from scratch, and the cap
//! (a capped view kept between its recomputations).

use locus_types::Vec2;

use super::{Ctx, Scratch, admits, dist2, drop_spatial, moved};
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

/// For a client in [`Mode::Kept`] (capped, between recomputations): its spatial view keeps its rows, but for those
/// that leave (beyond the leave radius, or changed and no longer admitted); changed ones are updated; none enters.
/// If that leaves room under the cap (or the client has no center), the view is recomputed at once, so that
/// invariant 3 holds at every poll.
pub(crate) fn keep(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    if c.mode != Mode::Kept {
        return;
    }
    if let Some((center, _, leave2)) = c.circle() {
        // Not straight into the delta: a recomputation below would queue the changed rows again.
        moved::walk_view(ctx, s, c, center, leave2, false);
        if c.view.spatial() >= ctx.config.max_visible {
            return;
        }
    }
    recompute(ctx, s, c);
}

/// For a client in [`Mode::Full`]: [`recompute`].
pub(crate) fn full(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    if c.mode == Mode::Full {
        recompute(ctx, s, c);
    }
}

/// How far a capped client's recomputation looks first, as a multiple of the radius its view was last cut at,
/// plus [`CUT_SLACK`] metres: rows and client move in between.
const CUT_FACTOR: f32 = 1.25;
/// See [`CUT_FACTOR`].
const CUT_SLACK: f32 = 1.0;

/// `c`'s spatial view becomes the admitted rows within the enter radius and the admitted view rows within the
/// leave radius, the nearest [`max_visible`](crate::InterestConfig::max_visible) of them if there are more (rows
/// it already holds counting as nearer by [`cap_hysteresis`](crate::InterestConfig::cap_hysteresis)).
///
/// A capped client looks first only within a little more than the radius it was last cut at (`Client::cut2`): if
/// more than `max_visible` admitted rows lie within that radius `r` (itself within the enter radius), every other
/// candidate is farther than `r`, so the nearest of those are the nearest of all: the same rows as a scan of the
/// whole leave radius, from a scan of the crowd's core only. Otherwise it scans the whole leave radius. (With
/// hysteresis a held row beyond `r` might have stayed, and is let go: every kept row is nearer than it, which
/// invariant 4 allows.)
fn recompute(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    let mirror = ctx.mirror;
    let max = ctx.config.max_visible;
    c.full = false;
    let (Some((center, enter2, leave2)), Some(area)) = (c.circle(), &c.area) else {
        c.capped = false;
        c.cut2 = 0.0;
        drop_spatial(c);
        return;
    };
    s.pairs.clear();
    if c.capped && c.cut2 > 0.0 {
        let r = c.cut2.sqrt() * CUT_FACTOR + CUT_SLACK;
        if r * r <= enter2 {
            // The rows of the cells around the client's cell, gathered once for every client in that cell (they
            // come one after the other: the clients' passes run in cell order).
            let grid = mirror.grid();
            let key = (grid.cell(center), grid.reach(r));
            if s.gather_key != Some(key) {
                grid.gather_block(key.0, key.1, &mut s.gathered);
                s.gather_key = Some(key);
            }
            s.near.clear();
            s.gathered.within(center, r * r, &mut s.near);
            for k in 0..s.near.len() {
                let id = RowId(s.near[k]);
                if admits(mirror, &mut s.offsets, c, mirror.row(id)) {
                    s.pairs.push((dist2(center, mirror.hot(id).pos), id));
                }
            }
            if s.pairs.len() <= max {
                // Too few that near (the crowd thinned or spread): scan the whole leave radius.
                s.pairs.clear();
            }
        }
    }
    if s.pairs.is_empty() {
        candidates(ctx, s, c, center, enter2, leave2, area.leave_radius);
    }
    let capped = s.pairs.len() > max;
    c.cut2 = 0.0;
    if capped {
        // Rows already held compete nearer by the hysteresis factor.
        let h = ctx.config.cap_hysteresis;
        if h > 1.0 {
            let shrink = 1.0 / (h * h);
            for p in &mut s.pairs {
                if c.view.slot(p.1).is_some() {
                    p.0 *= shrink;
                }
            }
        }
        // The nearest `max`; ties broken by row id, so the choice is deterministic.
        s.pairs
            .select_nth_unstable_by(max, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        s.pairs.truncate(max);
        // The radius it was cut at is the farthest kept row's true distance.
        c.cut2 = s
            .pairs
            .iter()
            .fold(0.0, |far, p| dist2(center, mirror.hot(p.1).pos).max(far));
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

/// Put in `s.pairs` the candidates of `c`'s spatial view, with their squared distances: the admitted rows within
/// the enter radius, and the admitted view rows within the leave radius (`leave`; `enter2` and `leave2` squared).
fn candidates(
    ctx: Ctx<'_>,
    s: &mut Scratch,
    c: &Client,
    center: Vec2,
    enter2: f32,
    leave2: f32,
    leave: f32,
) {
    let mirror = ctx.mirror;
    s.rows.clear();
    mirror.grid().for_each_near(center, leave, |id, at| {
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
}

/// A client over the cap after this tick's enters keeps the nearest, and is recomputed in full every
/// [`recompute_interval`](crate::InterestConfig::recompute_interval) polls until the crowd thins.
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
    c.cut2 = spatial[..max].iter().fold(0.0, |far, p| p.0.max(far));
}

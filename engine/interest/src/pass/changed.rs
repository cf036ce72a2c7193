//! The changed-rows pass: a changed row visits the clients it may matter to (serial), and each client takes in,
//! updates or drops the rows it was told of (per client).

use super::{Ctx, Scratch, admits, dist2};
use crate::interest::RowId;
use crate::mirror::Mirror;
use crate::registry::{Client, Mode, Registry};

/// Queue each changed row (its patch made) in the inbox of every client it may matter to:
///
/// - a deleted row: every client holding it;
/// - a row of a non-spatial table: every client holding it, and the clients that may take it in (the
///   subscribers of its table, or the clients of its owner);
/// - a row of a spatial table: the clients standing still that hold it or whose area may reach it (the others go
///   over their own view this tick, and the moved or recomputed ones over their surroundings too, in
///   [`super::moved`] and [`super::full`]).
///
/// A client is queued a row at most once.
pub(crate) fn fan_out(mirror: &Mirror, registry: &mut Registry, changed: &[RowId]) {
    let any_still = registry.any_still();
    let mut candidates = Vec::new();
    for &id in changed {
        let row = mirror.row(id);
        let info = mirror.info(row.table);
        let spatial = info.spatial.is_some();
        let notify = |registry: &mut Registry, w: u32| registry.notify(w, id);
        if !row.alive {
            for &w in &row.watchers {
                notify(registry, w);
            }
            continue;
        }
        if spatial && !any_still {
            continue;
        }
        for &w in &row.watchers {
            if !spatial || registry.mode(w) == Mode::Still {
                notify(registry, w);
            }
        }
        candidates.clear();
        if spatial {
            let pos = mirror.hot(id).pos;
            registry
                .grid()
                .for_each_near(pos, registry.max_enter(), |w, _| {
                    if registry.mode(w) == Mode::Still {
                        candidates.push(w);
                    }
                });
        } else {
            match (info.owner.is_some(), row.owner) {
                (true, Some(o)) => candidates.extend_from_slice(registry.of_identity(o)),
                (true, None) => {}
                (false, _) => candidates.extend_from_slice(registry.subscribers(row.table)),
            }
        }
        for &w in &candidates {
            notify(registry, w);
        }
    }
}

/// Take in, update or drop each row in `c`'s inbox: a row in view stays (and is queued as changed) while it is
/// admitted and, if spatial, within the leave radius; a row not in view enters if admitted and, if spatial, within
/// the enter radius; a deleted row leaves.
pub(crate) fn apply_inbox(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    let mut inbox = std::mem::take(&mut c.inbox);
    let circle = c.circle();
    for &id in &inbox {
        let row = ctx.mirror.row(id);
        let slot = c.view.slot(id);
        if !row.alive {
            if slot.is_some() {
                c.view.remove(id, &mut c.out);
            }
            continue;
        }
        let spatial = ctx.mirror.info(row.table).spatial.is_some();
        let d2 = if spatial {
            circle.map(|(center, _, _)| dist2(center, ctx.mirror.hot(id).pos))
        } else {
            None
        };
        match slot {
            Some(slot) => {
                let near = !spatial
                    || matches!((d2, circle), (Some(d), Some((_, _, leave2))) if d <= leave2);
                if near && admits(ctx.mirror, &mut s.offsets, c, row) {
                    c.view.mark_dirty(slot);
                } else {
                    c.view.remove(id, &mut c.out);
                }
            }
            None => {
                let near = !spatial
                    || matches!((d2, circle), (Some(d), Some((_, enter2, _))) if d <= enter2);
                if near && admits(ctx.mirror, &mut s.offsets, c, row) {
                    c.view.add(id, row.table, spatial);
                }
            }
        }
    }
    inbox.clear();
    c.inbox = inbox;
}

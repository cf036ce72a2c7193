//! The output pass: a client's queued rows become its delta, within its byte budget.

use super::{Ctx, Scratch, patchable};
use crate::interest::RowId;
use crate::registry::Client;
use crate::view::{DIRTY, QUEUED, SENT, STALE, STALE_POS};

/// Fill `c`'s delta from its queued rows: a row not sent yet is an insert, a changed one a patch or an update.
/// Under a [byte budget](crate::InterestConfig::byte_budget) the rows that do not fit stay pending, gaining
/// priority every tick (+1 per tick waiting, up to +1 more for nearness, +1 for entering) until sent; deletes are
/// always sent, and at least one row per tick.
pub(crate) fn output(ctx: Ctx<'_>, s: &mut Scratch, c: &mut Client) {
    let mirror = ctx.mirror;
    let budget = ctx.config.byte_budget;
    let overhead = ctx.config.row_overhead;
    let Client {
        view,
        out,
        area,
        center,
        move_cost,
        capped,
        ..
    } = c;
    if budget.is_none() && view.touched.len() * 8 >= view.entries.len() {
        // Most of the view is queued: walk the view itself instead of looking each row up.
        for e in &mut view.entries {
            if !e.has(QUEUED) {
                continue;
            }
            if !e.has(SENT) {
                out.inserts.push(e.row);
            } else if e.has(DIRTY) {
                if patchable(mirror, *e) {
                    out.patches.push(e.row);
                } else {
                    out.updates.push(e.row);
                }
            }
            e.flags = SENT;
        }
        view.touched.clear();
        return;
    }
    let mut queue = std::mem::take(&mut view.touched);
    queue.append(&mut view.pending);
    // Resolve each queued row to its view slot; rows that left the view are dropped. Under a budget (which sorts
    // them all anyway) with most of the view queued, walk the view itself instead of looking each row up.
    let items = &mut s.items;
    items.clear();
    if budget.is_some() && queue.len() * 8 >= view.entries.len() {
        items.extend(
            view.entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.has(QUEUED))
                .map(|(slot, e)| (slot as u32, e.row)),
        );
    } else {
        items.extend(
            queue
                .iter()
                .filter_map(|&id| view.slot(id).map(|slot| (slot, id))),
        );
    }
    queue.clear();
    match budget {
        None => {
            for &(slot, id) in items.iter() {
                let e = &mut view.entries[slot as usize];
                if !e.has(SENT) {
                    out.inserts.push(id);
                } else if e.has(DIRTY) {
                    if patchable(mirror, *e) {
                        out.patches.push(id);
                    } else {
                        out.updates.push(id);
                    }
                }
                e.flags = SENT;
            }
        }
        Some(budget) => {
            let enter = area.as_ref().map_or(1.0, |a| a.leave_radius.max(1.0));
            for &(slot, id) in items.iter() {
                let e = view.entries[slot as usize];
                let near = match *center {
                    Some(center) if e.spatial => {
                        (1.0 - (center - mirror.hot(id).pos).length() / enter).clamp(0.0, 1.0)
                    }
                    _ => 1.0,
                };
                view.priority[slot as usize] += 1.0 + near + if e.has(SENT) { 0.0 } else { 1.0 };
            }
            // Highest priority first, then by row id: one key per row (a priority is never negative, so its bits
            // order as it does), a total order, so the unstable sort has one outcome.
            let keyed = &mut s.keyed;
            keyed.clear();
            keyed.extend(items.iter().map(|&(slot, id)| {
                let p = view.priority[slot as usize];
                debug_assert!(p >= 0.0, "priorities only grow from 0");
                ((u64::from(!p.to_bits()) << 32) | u64::from(id.0), slot)
            }));
            let mut spent = out.deletes.len() * 2 * overhead;
            let most = match ctx.config.row_budget {
                Some(rows) if *capped => rows,
                _ => usize::MAX,
            };
            // Under a row budget only the first rows' order matters: once `most` rows are sent, every later one
            // is deferred alike. So sort the `2 × most` highest first and the rest only if they are reached with
            // rows still to send (the same order as sorting all: keys are unique).
            let mut sorted = match most.saturating_mul(2) {
                k if k > 0 && k < keyed.len() => {
                    keyed.select_nth_unstable(k);
                    keyed[..k].sort_unstable();
                    k
                }
                _ => {
                    keyed.sort_unstable();
                    keyed.len()
                }
            };
            let mut rows = 0usize;
            let mut sent_any = false;
            for i in 0..keyed.len() {
                if i == sorted {
                    if rows < most {
                        keyed[i..].sort_unstable();
                    }
                    sorted = keyed.len();
                }
                let (key, slot) = keyed[i];
                let id = RowId(key as u32);
                let e = &mut view.entries[slot as usize];
                let patched = e.has(SENT) && patchable(mirror, *e);
                let row = mirror.row(id);
                let size = match (patched, *move_cost) {
                    (true, Some(cost)) if row.moved_only => cost,
                    (true, _) => row.patch.len() + overhead,
                    (false, _) => row.bytes.len() + overhead,
                };
                if e.flags & (SENT | DIRTY) != SENT {
                    if sent_any && (spent + size > budget || rows >= most) {
                        // Deferred: by the time it is sent the client may be a version behind; only in its
                        // position if that is all that changed at every poll it was deferred at.
                        let changed = mirror.changed_now(id);
                        if changed && row.moved_only && e.has(SENT) && !e.has(STALE) {
                            e.set(STALE_POS, true);
                        } else if changed || !e.has(STALE_POS) {
                            e.set(STALE, true);
                        }
                        view.pending.push(id);
                        continue;
                    }
                    spent += size;
                    rows += 1;
                    sent_any = true;
                    if patched {
                        out.patches.push(id);
                    } else if e.has(SENT) {
                        out.updates.push(id);
                    } else {
                        out.inserts.push(id);
                    }
                }
                e.flags = SENT;
                view.priority[slot as usize] = 0.0;
            }
        }
    }
    view.touched = queue;
}

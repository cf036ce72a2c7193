//! [`Registry`]: the connected clients — their identities, subscriptions, areas and views — in dense, reused
//! slots.
//!
//! # Invariants
//!
//! - `clients` has one slot per [`ClientId`](crate::ClientId) up to the highest connected one (its last slot is
//!   occupied), and each client's `id` is its slot.
//! - `by_identity[i]` lists the connected clients of identity `i`, in connect order, and no identity without one.
//! - `subscribers[t]` lists the clients subscribed to table `t`.
//! - A client with a center is in `grid` at its center, in the cell `client.cell`; a client without one is not in
//!   it.
//! - `quick` is [`quick_mask`]`(subs)`.

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use locus_types::{Identity, TableId, Vec2};

use crate::deltas::Delta;
use crate::error::{AreaError, SubscribeError};
use crate::grid::{Cell, Grid};
use crate::interest::{Area, Center, Filter, InterestConfig, RowId};
use crate::mirror::{Mirror, TableInfo};
use crate::view::View;

/// What a client's spatial view needs this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The center did not move and nothing about the area changed: only changed rows matter.
    Still,
    /// The center moved: scan the rows around it.
    Moved,
    /// Recompute the spatial view from scratch (new area, new subscription, or capped and due: see
    /// [`InterestConfig::recompute_interval`]).
    Full,
    /// Capped, and not due to be recomputed this tick: its own view rows may change or leave, none enters.
    Kept,
}

/// A connected client.
#[derive(Debug)]
pub(crate) struct Client {
    /// Its slot.
    pub(crate) id: u32,
    pub(crate) identity: Identity,
    pub(crate) area: Option<Area>,
    pub(crate) center: Option<Vec2>,
    pub(crate) prev_center: Option<Vec2>,
    /// The row its area follows, as last resolved (re-resolved by key once that row is deleted).
    followed: Option<RowId>,
    cell: Option<Cell>,
    pub(crate) subs: Vec<(TableId, Filter)>,
    /// Bit `t` set: every row of table `t < 64` is admitted without looking at the row.
    pub(crate) quick: u64,
    /// The spatial view must be recomputed (area or spatial subscriptions changed).
    pub(crate) full: bool,
    /// Non-spatial tables whose view rows must be recomputed (subscription changed).
    pub(crate) rescan: Vec<TableId>,
    /// Its view was cut to the cap: recompute it in full every
    /// [`recompute_interval`](InterestConfig::recompute_interval) polls until the crowd thins.
    pub(crate) capped: bool,
    /// While capped: the squared distance from its center of the farthest row kept when its view was last cut to
    /// the cap, where its next recomputation looks first. 0 when unknown.
    pub(crate) cut2: f32,
    /// Its mode this tick.
    pub(crate) mode: Mode,
    /// Rows changed this tick that its view may need to take in, update or drop (filled by the changed-rows
    /// fan-out, emptied by its own pass).
    pub(crate) inbox: Vec<RowId>,
    pub(crate) view: View,
    /// Its delta of the last poll.
    pub(crate) out: Delta,
    /// What a change of a row's position alone costs it against the byte budget, if its wire sends such changes
    /// short ([`Interest::set_move_cost`](crate::Interest::set_move_cost)).
    pub(crate) move_cost: Option<usize>,
}

impl Client {
    /// The center and the squared enter and leave radii, if it has an area with a center.
    pub(crate) fn circle(&self) -> Option<(Vec2, f32, f32)> {
        match (self.center, &self.area) {
            (Some(c), Some(a)) => Some((
                c,
                a.enter_radius * a.enter_radius,
                a.leave_radius * a.leave_radius,
            )),
            _ => None,
        }
    }
}

/// `Client::quick` for subscriptions `subs`: the tables below 64 subscribed with no filter and without an owner
/// column.
pub(crate) fn quick_mask(mirror: &Mirror, subs: &[(TableId, Filter)]) -> u64 {
    subs.iter()
        .filter(|(t, f)| t.0 < 64 && matches!(f, Filter::All) && mirror.info(*t).owner.is_none())
        .fold(0, |mask, (t, _)| mask | 1 << t.0)
}

/// The connected clients. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Registry {
    clients: Vec<Option<Box<Client>>>,
    by_identity: HashMap<Identity, Vec<u32>, FixedState>,
    grid: Grid,
    subscribers: Vec<Vec<u32>>,
    /// Each client's mode this tick, by slot (dense, for the fan-out's per-watcher checks).
    modes: Vec<Mode>,
    /// The largest enter radius of any client's area (how far around a changed row to look for clients).
    max_enter: f32,
    /// Whether some client with a center stands still this tick.
    any_still: bool,
    max_radius: f32,
}

impl Registry {
    pub(crate) fn new(config: &InterestConfig) -> Registry {
        Registry {
            clients: Vec::new(),
            by_identity: HashMap::with_hasher(FixedState::with_seed(0x1d)),
            grid: Grid::new(config.cell_size),
            subscribers: Vec::new(),
            modes: Vec::new(),
            max_enter: 0.0,
            any_still: false,
            max_radius: config.max_radius,
        }
    }

    /// One past the highest connected id.
    pub(crate) fn slots(&self) -> usize {
        self.clients.len()
    }

    /// Rows in all the clients' views.
    pub(crate) fn view_rows(&self) -> usize {
        self.clients
            .iter()
            .flatten()
            .map(|c| c.view.entries.len())
            .sum()
    }

    /// The slots' capacity (memory held for past peaks).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.clients.capacity()
    }

    /// The connected clients, by id.
    pub(crate) fn clients(&self) -> impl Iterator<Item = (u32, &Client)> + '_ {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_deref().map(|c| (i as u32, c)))
    }

    pub(crate) fn client(&self, id: u32) -> Option<&Client> {
        self.clients.get(id as usize)?.as_deref()
    }

    pub(crate) fn client_mut(&mut self, id: u32) -> Option<&mut Client> {
        self.clients.get_mut(id as usize)?.as_deref_mut()
    }

    /// The connected clients of `identity`, in connect order.
    pub(crate) fn of_identity(&self, identity: Identity) -> &[u32] {
        self.by_identity.get(&identity).map_or(&[], Vec::as_slice)
    }

    /// How many identities have a connected client.
    #[cfg(test)]
    pub(crate) fn identities(&self) -> usize {
        self.by_identity.len()
    }

    /// The per-poll modes (their capacity is memory held for past peaks).
    #[cfg(test)]
    pub(crate) fn modes(&self) -> &Vec<Mode> {
        &self.modes
    }

    /// The clients subscribed to `table`.
    pub(crate) fn subscribers(&self, table: TableId) -> &[u32] {
        self.subscribers
            .get(table.0 as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// Subscriptions held, over all clients and tables.
    #[cfg(test)]
    pub(crate) fn subscriptions(&self) -> usize {
        self.subscribers.iter().map(Vec::len).sum()
    }

    pub(crate) fn grid(&self) -> &Grid {
        &self.grid
    }

    pub(crate) fn mode(&self, id: u32) -> Mode {
        self.modes[id as usize]
    }

    pub(crate) fn max_enter(&self) -> f32 {
        self.max_enter
    }

    pub(crate) fn any_still(&self) -> bool {
        self.any_still
    }

    /// Queue changed row `row` for client `id`'s pass, once: the fan-out queues one row at a time, so a row just
    /// queued for the client is the inbox's last.
    pub(crate) fn notify(&mut self, id: u32, row: RowId) {
        if let Some(c) = self.client_mut(id)
            && c.inbox.last() != Some(&row)
        {
            c.inbox.push(row);
        }
    }

    /// Connect `id` as `identity`, replacing a client connected with that id, with the area the module set for
    /// the identity (if any). The area's refusal, if the stage refuses it, is returned.
    pub(crate) fn connect(
        &mut self,
        id: u32,
        identity: Identity,
        mirror: &mut Mirror,
    ) -> Option<AreaError> {
        self.disconnect(id, mirror);
        let i = id as usize;
        if self.clients.len() <= i {
            self.clients.resize_with(i + 1, || None);
        }
        self.clients[i] = Some(Box::new(Client {
            id,
            identity,
            area: None,
            center: None,
            prev_center: None,
            followed: None,
            cell: None,
            subs: Vec::new(),
            quick: 0,
            full: true,
            rescan: Vec::new(),
            capped: false,
            cut2: 0.0,
            mode: Mode::Full,
            inbox: Vec::new(),
            view: View::default(),
            out: Delta::default(),
            move_cost: None,
        }));
        self.by_identity.entry(identity).or_default().push(id);
        match mirror.area_of(identity).cloned() {
            Some(Ok(area)) => self.set_area(id, Some(area), mirror).err(),
            Some(Err(e)) => Some(e),
            None => None,
        }
    }

    /// Forget client `id` and its view. The slots past the highest connected id are dropped, and their memory too
    /// once they are mostly unused.
    pub(crate) fn disconnect(&mut self, id: u32, mirror: &mut Mirror) {
        let Some(slot) = self.clients.get_mut(id as usize) else {
            return;
        };
        let Some(c) = slot.take() else { return };
        let live = self
            .clients
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        self.clients.truncate(live);
        // Give back the memory of a past peak, keeping twice the slots in use so that a crowd coming and going does
        // not reallocate every time. A poll's per-client scratch is rebuilt by the next poll.
        if self.clients.capacity() > 4 * live.max(16) {
            let keep = 2 * live.max(16);
            self.clients.shrink_to(keep);
            self.modes.clear();
            self.modes.shrink_to(keep);
        }
        debug_assert!(
            c.view.journal.is_empty(),
            "journals are applied before a poll returns"
        );
        mirror.forget_watcher(id, c.view.entries.iter().map(|e| e.row));
        if let Some(cell) = c.cell {
            self.grid.remove(cell, id);
        }
        for (table, _) in &c.subs {
            self.subscribers[table.0 as usize].retain(|s| *s != id);
        }
        if let Some(list) = self.by_identity.get_mut(&c.identity) {
            list.retain(|s| *s != id);
            if list.is_empty() {
                self.by_identity.remove(&c.identity);
            }
        }
    }

    /// Set (or clear) client `id`'s area; it takes effect at the next poll.
    pub(crate) fn set_area(
        &mut self,
        id: u32,
        area: Option<Area>,
        mirror: &Mirror,
    ) -> Result<(), AreaError> {
        if let Some(a) = &area {
            if !(a.enter_radius >= 0.0
                && a.enter_radius <= a.leave_radius
                && a.leave_radius <= self.max_radius)
            {
                return Err(AreaError::Radius {
                    enter: a.enter_radius,
                    leave: a.leave_radius,
                    max: self.max_radius,
                });
            }
            if let Center::Follow { table, .. } = &a.center
                && mirror.table(*table).is_none_or(|t| t.spatial.is_none())
            {
                return Err(AreaError::NotSpatial(*table));
            }
            if let Center::Fixed(p) = a.center
                && !p.is_finite()
            {
                return Err(AreaError::Center(p));
            }
        }
        let c = self
            .client_mut(id)
            .ok_or(AreaError::NoSuchClient(crate::ClientId(id)))?;
        c.area = area;
        c.followed = None;
        c.full = true;
        Ok(())
    }

    /// Subscribe client `id` to `table`'s rows matching `filter`, replacing its subscription to that table.
    pub(crate) fn subscribe(
        &mut self,
        id: u32,
        table: TableId,
        filter: Filter,
        mirror: &Mirror,
    ) -> Result<(), SubscribeError> {
        let info: &TableInfo = mirror
            .table(table)
            .ok_or(SubscribeError::NoSuchTable(table))?;
        if !info.public {
            return Err(SubscribeError::Private(table));
        }
        match &filter {
            Filter::All => {}
            Filter::Eq { column, value } => {
                let def = info
                    .columns
                    .get(column.index())
                    .ok_or(SubscribeError::NoSuchColumn(*column))?;
                if !def.ty.admits(value) {
                    return Err(SubscribeError::ValueType {
                        column: def.name.clone(),
                        value: value.clone(),
                    });
                }
            }
            Filter::Owner if info.owner.is_none() => return Err(SubscribeError::NoOwner(table)),
            Filter::Owner => {}
        }
        let spatial = info.spatial.is_some();
        let c = self
            .clients
            .get_mut(id as usize)
            .and_then(|c| c.as_deref_mut())
            .ok_or(SubscribeError::NoSuchClient(crate::ClientId(id)))?;
        match c.subs.iter_mut().find(|(t, _)| *t == table) {
            Some((_, f)) => *f = filter,
            None => {
                c.subs.push((table, filter));
                let t = table.0 as usize;
                if self.subscribers.len() <= t {
                    self.subscribers.resize_with(t + 1, Vec::new);
                }
                self.subscribers[t].push(id);
            }
        }
        c.quick = quick_mask(mirror, &c.subs);
        if spatial {
            c.full = true;
        } else if !c.rescan.contains(&table) {
            c.rescan.push(table);
        }
        Ok(())
    }

    /// End client `id`'s subscription to `table` (nothing if it has none).
    pub(crate) fn unsubscribe(&mut self, id: u32, table: TableId, mirror: &Mirror) {
        let spatial = mirror.table(table).is_some_and(|t| t.spatial.is_some());
        let Some(c) = self.client_mut(id) else {
            return;
        };
        let before = c.subs.len();
        c.subs.retain(|(t, _)| *t != table);
        if c.subs.len() == before {
            return;
        }
        c.quick = quick_mask(mirror, &c.subs);
        if spatial {
            c.full = true;
        } else if !c.rescan.contains(&table) {
            c.rescan.push(table);
        }
        self.subscribers[table.0 as usize].retain(|s| *s != id);
    }

    /// Start a poll: clear each client's last delta, resolve each client's center and mode, and keep the client
    /// grid in step. A capped client is recomputed at the polls where `(mirror.seq() + id) % interval == 0`.
    pub(crate) fn update_centers(&mut self, mirror: &Mirror, interval: u32) {
        let interval = u64::from(interval.max(1));
        self.max_enter = 0.0;
        self.any_still = false;
        self.modes.clear();
        self.modes.resize(self.clients.len(), Mode::Still);
        for (ci, slot) in self.clients.iter_mut().enumerate() {
            let Some(c) = slot.as_deref_mut() else {
                continue;
            };
            c.out.clear();
            if let Some(a) = &c.area {
                self.max_enter = self.max_enter.max(a.enter_radius);
            }
            let center = match c.area.as_ref().map(|a| &a.center) {
                None => None,
                Some(Center::Fixed(p)) => Some(*p),
                Some(Center::Follow { table, key }) => {
                    // The followed row, looked up by key only when the cached id is gone.
                    let cached = c.followed.filter(|id| mirror.row(*id).alive);
                    c.followed = cached.or_else(|| mirror.get(*table, key));
                    c.followed.map(|id| mirror.hot(id).pos)
                }
            };
            c.prev_center = c.center;
            c.center = center;
            let due = (mirror.seq() + ci as u64).is_multiple_of(interval);
            c.mode = if c.full || (c.capped && due) {
                Mode::Full
            } else if c.capped {
                Mode::Kept
            } else if c.center != c.prev_center {
                Mode::Moved
            } else {
                Mode::Still
            };
            self.modes[ci] = c.mode;
            self.any_still |= c.mode == Mode::Still && center.is_some();
            let cell = center.map(|p| self.grid.cell(p));
            if cell != c.cell {
                if let Some(old) = c.cell {
                    self.grid.remove(old, ci as u32);
                }
                if let (Some(new), Some(p)) = (cell, center) {
                    self.grid.insert(new, ci as u32, p);
                }
                c.cell = cell;
            } else if let (Some(cell), Some(p)) = (cell, center)
                && c.prev_center != center
            {
                self.grid.set_point(cell, ci as u32, p);
            }
        }
    }

    /// Take every client out of its slot, in the order of their grid cells (then ids), for the per-client passes:
    /// neighbours, who see mostly the same rows, come one after the other.
    #[expect(
        clippy::vec_box,
        reason = "the clients move out of their slots and back every poll: a pointer each, not a whole client"
    )]
    pub(crate) fn take_in_cell_order(&mut self) -> Vec<Box<Client>> {
        let mut order: Vec<(Option<Cell>, u32)> = self
            .clients
            .iter()
            .filter_map(|c| c.as_deref().map(|c| (c.cell, c.id)))
            .collect();
        order.sort_unstable();
        order
            .into_iter()
            .map(|(_, id)| self.clients[id as usize].take().expect("listed"))
            .collect()
    }

    /// Put back the clients [`Registry::take_in_cell_order`] took.
    #[expect(
        clippy::vec_box,
        reason = "the clients move out of their slots and back every poll: a pointer each, not a whole client"
    )]
    pub(crate) fn put_back(&mut self, clients: Vec<Box<Client>>) {
        for c in clients {
            let i = c.id as usize;
            self.clients[i] = Some(c);
        }
    }
}

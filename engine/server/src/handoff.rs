//! Handing rows over between regions (sans-IO): the world's side.
//!
//! A row of a movable table (`TableDef::movable`: the demo's `player`) whose point leaves this region's rectangle
//! moves to the region that now holds the point, with the rows that go with it: if the row has an identity column,
//! every row that identity owns (an `#[owner]` column equal to it) and every row keyed by it (an `Identity`
//! primary key equal to it). After each tick's reducers ([`Handoffs::hand_off`]), one transaction per moving row
//! deletes them all and writes a message carrying them into the outbox table ([`locus_region::message`]): the
//! tick's record holds both, so a crash loses both or neither. The shell publishes the message once the tick is
//! durable and JetStream's acknowledgement removes it from the outbox ([`Handoffs::confirmed`]), in a later
//! transaction; until then it is published again now and then.
//!
//! The receiving region applies a message ([`Handoffs::arrive`]) in one transaction with its record of applied
//! numbers (the inbox table): the rows are inserted, replacing rows of the same keys and rows that hold the same
//! value of a unique column (a player the receiver made for an identity whose avatar was on its way). A message
//! that comes again is dropped. The shell acknowledges the JetStream message once that tick is durable, and tells
//! the sending region, which then sends the identity's sessions to the receiver (`Redirect`).
//!
//! Between the handoff and the redirect, the sending region's clients keep the moved public rows as they were
//! ([`locus_region::BorderCopies::ghost`]), so nobody sees the avatar vanish and come back.
//!
//! # Invariants
//!
//! 1. A moved row is in exactly one region's database, or in one outbox message not yet applied (with the
//!    receiver's record of applied numbers deciding which, after any crash).
//! 2. Every outbox row is a message not yet confirmed by JetStream; message numbers are never reused (the table's
//!    sequence keeps the highest).

use std::collections::HashMap;

use locus_region::message::{
    self, Envelope, INBOX_TABLE, MovedRow, OUTBOX_TABLE, RegionMessage, inbox_row, outbox_row,
};
use locus_region::{Applied, BorderCopies, Destination, Outbox, RegionId, Transmit, WorldLayout};
use locus_store::{Changeset, Database, Table};
use locus_types::{
    ColumnId, ColumnType, Identity, IndexKind, TableDef, TableId, Tick, Value, codec,
};

/// How many ticks after publishing an unconfirmed message it is published again.
const RETRY_TICKS: u64 = 40;

/// How long an identity whose avatar arrived may take to connect before the module is told it left
/// (`client_disconnected`): its client may have died during the handoff.
pub(crate) const ARRIVAL_GRACE_TICKS: u64 = 30 * 20;

/// Create the region's system tables in `db` if missing, and describe the layout's regions in
/// [`message::REGIONS_TABLE`]: each region's name, index and rectangle, with `own` set for `own` alone (what the
/// module reads through `ctx.region()`, so the server calls this before a new world's `init`). Rows that differ
/// from the layout's (another layout, another own region) are replaced. Returns whether anything changed (the
/// caller then writes a snapshot before logging anything that uses them: a table's creation is not a logged
/// change).
///
/// # Errors
///
/// A system table of that name with another definition (the regions table of an older build, without the
/// rectangles, among them: no data was ever released with it, so it is refused rather than migrated); the
/// store's error.
pub(crate) fn ensure_tables(
    db: &mut Database,
    layout: &WorldLayout,
    own: RegionId,
) -> Result<bool, String> {
    let mut changed = false;
    for def in [
        message::outbox_table_def(),
        message::inbox_table_def(),
        message::regions_table_def(),
        message::away_table_def(),
    ] {
        match db.table_id(&def.name) {
            Some(id) if db.table(id).is_some_and(|t| *t.def() == def) => {}
            Some(_) => {
                return Err(format!(
                    "table `{}` exists with another definition",
                    def.name
                ));
            }
            None => {
                db.create_table(def).map_err(|e| e.to_string())?;
                changed = true;
            }
        }
    }
    let regions = db.table_id(message::REGIONS_TABLE).expect("just made");
    let want: Vec<Vec<u8>> = layout
        .regions()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let index = RegionId(i as u16);
            message::regions_row(&r.name, index, r.rect, index == own)
        })
        .collect();
    let have: Vec<Vec<u8>> = db
        .table(regions)
        .expect("exists")
        .iter()
        .map(<[u8]>::to_vec)
        .collect();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    let mut sorted_have = have.clone();
    sorted_have.sort();
    if sorted_want != sorted_have {
        let mut tx = db.begin();
        for row in &have {
            let key = tx
                .table(regions)
                .expect("exists")
                .primary_key_of(row)
                .map_err(|e| e.to_string())?;
            tx.delete(regions, &key).map_err(|e| e.to_string())?;
        }
        for row in &want {
            tx.insert(regions, row).map_err(|e| e.to_string())?;
        }
        drop(tx.commit());
        changed = true;
    }
    Ok(changed)
}

#[derive(Debug)]
struct Movable {
    table: TableId,
    name: String,
    spatial: usize,
    identity: Option<usize>,
}

/// The moved public rows' keys of an identity handed over to another region whose sessions here are not
/// redirected yet, held as ghosts in the border copies.
#[derive(Debug)]
struct Ghosts(Vec<(TableId, Box<[u8]>)>);

/// What [`Handoffs::arrive`] did.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// Applied: the transaction's changeset, and the identity whose avatar arrived in another region with where
    /// its sessions go (an [`RegionMessage::Arrived`]).
    Applied {
        /// The transaction's changes.
        changeset: Changeset,
        /// An avatar handed over from here arrived there.
        redirect: Option<(Identity, locus_protocol::Redirect)>,
    },
    /// Applied before: nothing to do but acknowledge it.
    Duplicate,
}

/// The world's handoff state: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Handoffs {
    layout: WorldLayout,
    own: RegionId,
    /// Where this region's clients connect: what an [`RegionMessage::Arrived`] says.
    here: locus_protocol::Redirect,
    outbox: Outbox,
    applied: HashMap<RegionId, Applied>,
    outbox_table: TableId,
    inbox_table: TableId,
    away_table: TableId,
    movable: Vec<Movable>,
    /// Tables with an owner column, and its index.
    owned: Vec<(TableId, usize)>,
    /// Tables whose primary key is an identity.
    keyed: Vec<TableId>,
    ghosts: HashMap<Identity, Ghosts>,
    /// Identities whose avatar arrived and who have not connected yet, with the tick they arrived at.
    expecting: HashMap<Identity, Tick>,
    offsets: Vec<u32>,
}

fn column_slice<'r>(
    columns: &[locus_types::ColumnDef],
    row: &'r [u8],
    c: usize,
    offsets: &mut Vec<u32>,
) -> Option<&'r [u8]> {
    codec::locate_columns(columns, row, c + 1, offsets).ok()?;
    Some(&row[offsets[c] as usize..offsets[c + 1] as usize])
}

impl Handoffs {
    /// The handoff state of region `own` over `db` (which has the system tables, [`ensure_tables`]): the outbox
    /// and the record of applied messages as the database holds them (after a restart, the messages not yet
    /// confirmed are published again).
    pub(crate) fn new(
        layout: WorldLayout,
        own: RegionId,
        here: locus_protocol::Redirect,
        db: &Database,
    ) -> Handoffs {
        let outbox_table = db.table_id(OUTBOX_TABLE).expect("the outbox table exists");
        let inbox_table = db.table_id(INBOX_TABLE).expect("the inbox table exists");
        let away_table = db
            .table_id(message::AWAY_TABLE)
            .expect("the away table exists");
        let outbox = {
            let t = db.table(outbox_table).expect("exists");
            Outbox::restore(
                RETRY_TICKS,
                t.next_auto_inc().saturating_sub(1),
                t.iter().filter_map(message::parse_outbox_row),
            )
        };
        let applied = db
            .table(inbox_table)
            .expect("exists")
            .iter()
            .filter_map(message::parse_inbox_row)
            .collect();
        let mut handoffs = Handoffs {
            layout,
            own,
            here,
            outbox,
            applied,
            outbox_table,
            inbox_table,
            away_table,
            movable: Vec::new(),
            owned: Vec::new(),
            keyed: Vec::new(),
            ghosts: HashMap::new(),
            expecting: HashMap::new(),
            offsets: Vec::new(),
        };
        handoffs.schema(db);
        handoffs
    }

    /// Learn the tables of `db` (again, after a publish).
    pub(crate) fn schema(&mut self, db: &Database) {
        self.movable.clear();
        self.owned.clear();
        self.keyed.clear();
        for t in db.tables() {
            let def: &TableDef = t.def();
            if def.name.starts_with(locus_types::abi::RESERVED_PREFIX) {
                continue;
            }
            if def.movable
                && let Some(spatial) = def.spatial_column()
            {
                self.movable.push(Movable {
                    table: t.id(),
                    name: def.name.clone(),
                    spatial: spatial.index(),
                    identity: def.identity_column().map(ColumnId::index),
                });
            }
            if let Some(owner) = def.owner {
                self.owned.push((t.id(), owner.index()));
            }
            if def.columns[def.primary_key.index()].ty == ColumnType::Identity {
                self.keyed.push(t.id());
            }
        }
    }

    /// Where `identity`'s avatar went, if this region handed it over and it did not come back
    /// ([`message::AWAY_TABLE`]).
    pub(crate) fn where_is(&self, db: &Database, identity: Identity) -> Option<message::Away> {
        let row = db
            .table(self.away_table)?
            .get(&Value::Identity(identity))
            .ok()??;
        message::parse_away_row(row)
    }

    /// `identity`'s sessions were redirected: drop the ghosts of its moved rows that its new region did not
    /// replace with copies of its own. Returns the changes for the interest stage.
    pub(crate) fn redirected(
        &mut self,
        identity: Identity,
        copies: &mut BorderCopies,
    ) -> Changeset {
        match self.ghosts.remove(&identity) {
            Some(g) => copies.drop_ghosts(&g.0),
            None => Changeset::default(),
        }
    }

    /// A session of `identity` connected: it is no longer awaited.
    pub(crate) fn connected(&mut self, identity: Identity) {
        self.expecting.remove(&identity);
    }

    /// Identities whose avatar arrived more than [`ARRIVAL_GRACE_TICKS`] before `tick` and never connected: the
    /// module is told they left.
    pub(crate) fn overdue(&mut self, tick: Tick) -> Vec<Identity> {
        let mut overdue: Vec<Identity> = self
            .expecting
            .iter()
            .filter(|(_, at)| tick.0 >= at.0 + ARRIVAL_GRACE_TICKS)
            .map(|(id, _)| *id)
            .collect();
        overdue.sort_unstable_by_key(|id| id.0);
        for id in &overdue {
            self.expecting.remove(id);
        }
        overdue
    }

    /// After a tick's reducers: hand over every row of a movable table that `committed` (the tick's changesets
    /// so far) left outside this region, one transaction each (appended to `committed`). The moved public rows
    /// become ghosts in `copies`.
    pub(crate) fn hand_off(
        &mut self,
        db: &mut Database,
        committed: &mut Vec<Changeset>,
        copies: &mut BorderCopies,
    ) {
        if self.movable.is_empty() {
            return;
        }
        // The keys of movable rows written this tick that stand outside the region, each once (a tick writes
        // many rows: most stay, and are passed over on their point alone).
        let mut candidates: Vec<(usize, Value)> = Vec::new();
        let mut seen: std::collections::HashSet<(usize, Value)> = std::collections::HashSet::new();
        for c in committed.iter() {
            for tc in &c.tables {
                let Some(m) = self.movable.iter().position(|m| m.table == tc.table) else {
                    continue;
                };
                let t = db.table(tc.table).expect("committed tables exist");
                let columns = &t.def().columns;
                for row in tc.inserts.iter().chain(tc.updates.iter().map(|u| &u.new)) {
                    let inside =
                        column_slice(columns, row, self.movable[m].spatial, &mut self.offsets)
                            .and_then(codec::read_vec2)
                            .is_some_and(|p| self.layout.owns(self.own, p));
                    if inside {
                        continue;
                    }
                    if let Ok(key) = t.primary_key_of(row)
                        && seen.insert((m, key.clone()))
                    {
                        candidates.push((m, key));
                    }
                }
            }
        }
        for (m, key) in candidates {
            let movable = &self.movable[m];
            let t = db.table(movable.table).expect("exists");
            // As it is now (a later transaction of the tick may have moved it back, or deleted it).
            let Ok(Some(row)) = t.get(&key) else { continue };
            let columns = &t.def().columns;
            let Some(point) = column_slice(columns, row, movable.spatial, &mut self.offsets)
                .and_then(codec::read_vec2)
            else {
                continue;
            };
            let Some(to) = self.layout.region_at(point).filter(|&r| r != self.own) else {
                continue;
            };
            let identity = movable.identity.and_then(|c| {
                match codec::decode_value(
                    &columns[c],
                    column_slice(columns, row, c, &mut self.offsets)?,
                ) {
                    Ok(Value::Identity(id)) => Some(id),
                    _ => None,
                }
            });
            match self.move_rows(db, m, &key, identity, to, copies) {
                Ok(c) => committed.push(c),
                Err(e) => tracing::error!(
                    table = self.movable[m].name,
                    ?key,
                    e,
                    "a row left the region but could not be handed over; it stays here"
                ),
            }
        }
    }

    /// The rows that go with `identity`: `(table, key)` of the rows it owns and the rows keyed by it.
    fn rows_of(&mut self, db: &Database, identity: Identity) -> Vec<(TableId, Value)> {
        let mut out = Vec::new();
        let id_value = Value::Identity(identity);
        for &(table, owner) in &self.owned {
            let t = db.table(table).expect("exists");
            let rows: Vec<&[u8]> = match t.index_eq(ColumnId(owner as u16), &id_value) {
                Ok(rows) => rows,
                Err(_) => {
                    let mut want = Vec::new();
                    codec::encode_value(&t.def().columns[owner], &id_value, &mut want)
                        .expect("an identity encodes");
                    let columns = &t.def().columns;
                    t.iter()
                        .filter(|row| {
                            column_slice(columns, row, owner, &mut self.offsets) == Some(&want[..])
                        })
                        .collect()
                }
            };
            out.extend(
                rows.into_iter()
                    .filter_map(|r| Some((table, t.primary_key_of(r).ok()?))),
            );
        }
        for &table in &self.keyed {
            if let Ok(Some(_)) = db.table(table).expect("exists").get(&id_value) {
                out.push((table, id_value.clone()));
            }
        }
        out
    }

    fn move_rows(
        &mut self,
        db: &mut Database,
        m: usize,
        key: &Value,
        identity: Option<Identity>,
        to: RegionId,
        copies: &mut BorderCopies,
    ) -> Result<Changeset, String> {
        let table = self.movable[m].table;
        let mut keys = vec![(table, key.clone())];
        if let Some(id) = identity {
            for k in self.rows_of(db, id) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let names: HashMap<TableId, String> =
            db.tables().map(|t| (t.id(), t.name().to_owned())).collect();
        let public: HashMap<TableId, bool> = db
            .tables()
            .map(|t| (t.id(), t.def().access == locus_types::TableAccess::Public))
            .collect();
        let mut tx = db.begin();
        let mut rows = Vec::with_capacity(keys.len());
        let mut moved = Vec::with_capacity(keys.len());
        for (t, k) in &keys {
            let row = tx.delete(*t, k).map_err(|e| e.to_string())?;
            moved.push((*t, row.clone()));
            rows.push(MovedRow {
                table: names[t].clone(),
                row: row.into_vec(),
            });
        }
        let payload = rmp_serde::to_vec(&RegionMessage::Handoff { identity, rows })
            .map_err(|e| e.to_string())?;
        // Numbered by the outbox table's sequence; the outbox takes it from the committed changeset.
        tx.insert(
            self.outbox_table,
            &outbox_row(0, Destination::Region(to), &payload),
        )
        .map_err(|e| e.to_string())?;
        if let Some(id) = identity {
            let away = message::away_row(&message::Away {
                identity: id,
                region: to,
                at: None,
            });
            upsert(&mut tx, self.away_table, &Value::Identity(id), &away)?;
        }
        let changeset = tx.commit();
        let ghosts = moved
            .iter()
            .filter(|(t, _)| public[t])
            .filter_map(|(t, row)| Some((*t, copies.ghost(to, *t, row)?)))
            .collect();
        if let Some(id) = identity {
            self.ghosts.insert(id, Ghosts(ghosts));
        }
        Ok(changeset)
    }

    /// JetStream stored messages `seqs`: drop them from the outbox, in one transaction (`None` if none was
    /// there).
    pub(crate) fn confirmed(&mut self, db: &mut Database, seqs: &[u64]) -> Option<Changeset> {
        let mut tx = db.begin();
        let mut any = false;
        for &seq in seqs {
            if self.outbox.handle_confirmed(seq) {
                any |= tx.delete(self.outbox_table, &Value::U64(seq)).is_ok();
            }
        }
        any.then(|| tx.commit())
    }

    /// The messages to publish now: new ones, and unconfirmed ones due again. Each as `(seq, destination, the
    /// encoded envelope)`.
    pub(crate) fn transmits(
        &mut self,
        tick: Tick,
        now_us: u64,
    ) -> Vec<(u64, Destination, Vec<u8>)> {
        self.outbox
            .poll_transmit(tick.0)
            .into_iter()
            .filter_map(|Transmit { seq, to, payload }| {
                let message: RegionMessage = rmp_serde::from_slice(&payload).ok()?;
                let envelope = Envelope {
                    from: self.own.0,
                    seq,
                    sent_us: now_us,
                    message,
                };
                Some((seq, to, envelope.encode()))
            })
            .collect()
    }

    /// How many messages wait for JetStream's confirmation.
    pub(crate) fn unconfirmed(&self) -> usize {
        self.outbox.unconfirmed()
    }

    /// Apply message `seq` from `from`, exactly once: see the [module docs](self).
    pub(crate) fn arrive(
        &mut self,
        db: &mut Database,
        from: RegionId,
        seq: u64,
        message: &RegionMessage,
        tick: Tick,
    ) -> Result<Arrival, String> {
        if self.applied.get(&from).is_some_and(|a| a.contains(seq)) {
            return Ok(Arrival::Duplicate);
        }
        let mut tx = db.begin();
        let mut arrived = None;
        let mut redirect = None;
        match message {
            RegionMessage::Handoff { identity, rows } => {
                // The rows keep their keys, from the sending region's range: this region's sequences stay in its
                // own (an explicit key past a sequence moves it).
                let mut sequences: Vec<(TableId, u64)> = Vec::new();
                for MovedRow { table, row } in rows {
                    let Some(t) = tx.table_id(table) else {
                        tracing::error!(
                            table,
                            "a row handed over for a table this region does not have: dropped"
                        );
                        continue;
                    };
                    let (key, conflicts) = {
                        let t: &Table = tx.table(t).expect("named tables exist");
                        if t.def().auto_inc && !sequences.iter().any(|(s, _)| *s == t.id()) {
                            sequences.push((t.id(), t.next_auto_inc()));
                        }
                        let key = t.primary_key_of(row).map_err(|e| e.to_string())?;
                        (key, unique_conflicts(t, row, &mut self.offsets))
                    };
                    for k in conflicts.into_iter().filter(|k| *k != key) {
                        tx.delete(t, &k).map_err(|e| e.to_string())?;
                    }
                    let exists = tx
                        .table(t)
                        .is_some_and(|tb| matches!(tb.get(&key), Ok(Some(_))));
                    if exists {
                        tx.update(t, row).map_err(|e| e.to_string())?;
                    } else {
                        tx.insert(t, row).map_err(|e| e.to_string())?;
                    }
                }
                for (t, next) in sequences {
                    tx.set_auto_inc(t, next).map_err(|e| e.to_string())?;
                }
                if let Some(id) = identity {
                    // Tell the sender, exactly once, that its sessions of `id` may come here now.
                    let answer = RegionMessage::Arrived {
                        identity: *id,
                        region: self.here.region.clone(),
                        addr: self.here.addr.clone(),
                        fingerprint: self.here.fingerprint,
                    };
                    let payload = rmp_serde::to_vec(&answer).map_err(|e| e.to_string())?;
                    tx.insert(
                        self.outbox_table,
                        &outbox_row(0, Destination::Region(from), &payload),
                    )
                    .map_err(|e| e.to_string())?;
                    // It is back (or here for the first time): nothing of it is elsewhere.
                    if tx
                        .table(self.away_table)
                        .is_some_and(|t| matches!(t.get(&Value::Identity(*id)), Ok(Some(_))))
                    {
                        tx.delete(self.away_table, &Value::Identity(*id))
                            .map_err(|e| e.to_string())?;
                    }
                    arrived = Some(*id);
                }
            }
            RegionMessage::Call { .. } => {
                return Err("a reducer call is run by the world, not applied as rows".into());
            }
            RegionMessage::Arrived {
                identity,
                region,
                addr,
                fingerprint,
            } => {
                let region = self.layout.region_id(region).unwrap_or(from);
                // Unless it came back meanwhile (then the row is gone), or went on from there.
                let current = tx
                    .table(self.away_table)
                    .and_then(|t| t.get(&Value::Identity(*identity)).ok().flatten())
                    .and_then(message::parse_away_row);
                // An answer that comes after the avatar came back, or went on elsewhere, is stale: its sessions
                // stay where they are.
                if current.is_some_and(|a| a.region == region) {
                    let away = message::away_row(&message::Away {
                        identity: *identity,
                        region,
                        at: Some((addr.clone(), *fingerprint)),
                    });
                    tx.update(self.away_table, &away)
                        .map_err(|e| e.to_string())?;
                    let region = self.layout.region(region).name.clone();
                    redirect = Some((
                        *identity,
                        locus_protocol::Redirect {
                            region,
                            addr: addr.clone(),
                            fingerprint: *fingerprint,
                            web: None,
                        },
                    ));
                }
            }
        }
        let mut record = self.applied.get(&from).cloned().unwrap_or_default();
        record.insert(seq);
        let inbox = inbox_row(from, &record);
        let exists = tx
            .table(self.inbox_table)
            .is_some_and(|t| matches!(t.get(&Value::U64(u64::from(from.0))), Ok(Some(_))));
        let written = if exists {
            tx.update(self.inbox_table, &inbox)
                .map(drop)
                .map_err(|e| e.to_string())
        } else {
            tx.insert(self.inbox_table, &inbox)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        // On an error the transaction rolls back when dropped, the answer it would have sent with it.
        written?;
        let changeset = tx.commit();
        self.applied.insert(from, record);
        if let Some(id) = arrived {
            self.expecting.insert(id, tick);
            self.ghosts.remove(&id);
        }
        Ok(Arrival::Applied {
            changeset,
            redirect,
        })
    }

    /// Whether message `seq` from `from` was applied.
    pub(crate) fn is_applied(&self, from: RegionId, seq: u64) -> bool {
        self.applied.get(&from).is_some_and(|a| a.contains(seq))
    }

    /// Record message `seq` from `from` as applied (a reducer call the world ran in this tick: the record goes in
    /// the same tick's log record as the call's writes, so a crash keeps both or neither).
    pub(crate) fn mark_applied(
        &mut self,
        db: &mut Database,
        from: RegionId,
        seq: u64,
    ) -> Result<Changeset, String> {
        let mut record = self.applied.get(&from).cloned().unwrap_or_default();
        record.insert(seq);
        let inbox = inbox_row(from, &record);
        let mut tx = db.begin();
        let exists = tx
            .table(self.inbox_table)
            .is_some_and(|t| matches!(t.get(&Value::U64(u64::from(from.0))), Ok(Some(_))));
        if exists {
            tx.update(self.inbox_table, &inbox)
                .map_err(|e| e.to_string())?;
        } else {
            tx.insert(self.inbox_table, &inbox)
                .map_err(|e| e.to_string())?;
        }
        let changeset = tx.commit();
        self.applied.insert(from, record);
        Ok(changeset)
    }

    /// Take the messages the tick's transactions wrote into the outbox table (handoffs, their answers, and
    /// reducers' calls to other regions), numbered by its sequence.
    pub(crate) fn track(&mut self, committed: &[Changeset]) {
        for c in committed {
            for t in c.tables.iter().filter(|t| t.table == self.outbox_table) {
                for row in &t.inserts {
                    if let Some((seq, to, payload)) = message::parse_outbox_row(row) {
                        self.outbox.track(seq, to, payload);
                    }
                }
            }
        }
    }
}

/// Insert `row` into `table`, or replace the row of key `key`.
fn upsert(
    tx: &mut locus_store::Transaction<'_>,
    table: TableId,
    key: &Value,
    row: &[u8],
) -> Result<(), String> {
    let exists = tx
        .table(table)
        .is_some_and(|t| matches!(t.get(key), Ok(Some(_))));
    if exists {
        tx.update(table, row).map(drop).map_err(|e| e.to_string())
    } else {
        tx.insert(table, row).map(drop).map_err(|e| e.to_string())
    }
}

/// The primary keys of `t`'s rows that hold one of `row`'s values in a unique column.
fn unique_conflicts(t: &Table, row: &[u8], offsets: &mut Vec<u32>) -> Vec<Value> {
    let def = t.def();
    let mut out = Vec::new();
    for index in def.indexes.iter().filter(|i| i.kind == IndexKind::Unique) {
        let c = index.column.index();
        let Some(value) = column_slice(&def.columns, row, c, offsets)
            .and_then(|b| codec::decode_value(&def.columns[c], b).ok())
        else {
            continue;
        };
        if let Ok(rows) = t.index_eq(index.column, &value) {
            out.extend(rows.into_iter().filter_map(|r| t.primary_key_of(r).ok()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> WorldLayout {
        WorldLayout::from_toml(
            r#"
            world = "test"
            size = 100.0
            border = 10.0
            nats = "nats://127.0.0.1:1"
            [[region]]
            name = "west"
            rect = [0.0, 0.0, 40.0, 100.0]
            listen = "127.0.0.1:1"
            [[region]]
            name = "east"
            rect = [40.0, 0.0, 100.0, 100.0]
            listen = "127.0.0.1:2"
            "#,
        )
        .unwrap()
    }

    /// The rows of the regions table, parsed, in index order.
    fn regions(db: &Database) -> Vec<message::RegionRow> {
        let t = db
            .table(db.table_id(message::REGIONS_TABLE).unwrap())
            .unwrap();
        let mut rows: Vec<_> = t
            .iter()
            .map(|r| message::parse_regions_row(r).unwrap())
            .collect();
        rows.sort_by_key(|r| r.index);
        rows
    }

    #[test]
    fn the_regions_table_holds_the_layouts_rectangles_and_marks_the_own_region() {
        let layout = layout();
        let mut db = Database::default();
        assert_eq!(ensure_tables(&mut db, &layout, RegionId(1)), Ok(true));
        let expected = |own: u16| -> Vec<message::RegionRow> {
            layout
                .regions()
                .iter()
                .enumerate()
                .map(|(i, r)| message::RegionRow {
                    name: r.name.clone(),
                    index: RegionId(i as u16),
                    rect: r.rect,
                    own: i == usize::from(own),
                })
                .collect()
        };
        assert_eq!(regions(&db), expected(1));
        // Nothing to do the second time; another own region (a data directory reused) rewrites the rows.
        assert_eq!(ensure_tables(&mut db, &layout, RegionId(1)), Ok(false));
        assert_eq!(ensure_tables(&mut db, &layout, RegionId(0)), Ok(true));
        assert_eq!(regions(&db), expected(0));
    }

    #[test]
    fn a_regions_table_of_another_definition_is_refused() {
        // The regions table of an older build, without the rectangles.
        let old = TableDef::builder(message::REGIONS_TABLE)
            .column("name", ColumnType::String)
            .column("index", ColumnType::U32)
            .primary_key("name")
            .build()
            .unwrap();
        let mut db = Database::default();
        db.create_table(old).unwrap();
        assert_eq!(
            ensure_tables(&mut db, &layout(), RegionId(0)),
            Err("table `locus_regions` exists with another definition".into())
        );
    }
}

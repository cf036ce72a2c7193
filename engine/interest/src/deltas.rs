//! The output of a poll: each client's [`Delta`], read through [`Deltas`].

use locus_types::{TableId, Tick, Value, Vec2};

use crate::interest::{ClientId, RowId};
use crate::mirror::Mirror;
use crate::registry::Registry;

/// What one client is sent for one tick: row ids to resolve with [`Deltas::row`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Rows that are new to the client (entering its view, new rows in view, initial rows of a subscription).
    pub inserts: Vec<RowId>,
    /// Rows in its view whose bytes changed, to be sent whole.
    pub updates: Vec<RowId>,
    /// Rows in its view whose bytes changed, to be sent as their patch ([`RowRef::patch`]) against the version the
    /// client holds.
    pub patches: Vec<RowId>,
    /// Rows that left its view or were deleted (send their table and key).
    pub deletes: Vec<RowId>,
}

impl Delta {
    /// Whether there is nothing to send.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty()
            && self.updates.is_empty()
            && self.patches.is_empty()
            && self.deletes.is_empty()
    }

    /// Rows delivered: inserts + updates + patches + deletes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inserts.len() + self.updates.len() + self.patches.len() + self.deletes.len()
    }

    pub(crate) fn clear(&mut self) {
        self.inserts.clear();
        self.updates.clear();
        self.patches.clear();
        self.deletes.clear();
    }
}

/// A row as delivered: its table, primary key and bytes (the one row encoding).
#[derive(Clone, Copy, Debug)]
pub struct RowRef<'a> {
    /// The table.
    pub table: TableId,
    /// The primary key.
    pub key: &'a Value,
    /// The primary key as the bytes of the key column inside `bytes`: byte-identical to the key in the row the
    /// client holds (what a delete names on the wire, never decoded and re-encoded).
    pub key_bytes: &'a [u8],
    /// The row's bytes (for a deleted row, its last bytes).
    pub bytes: &'a [u8],
    /// The patch turning the row's version before this tick into `bytes` (for rows in [`Delta::patches`]; empty
    /// when the row has none).
    pub patch: &'a [u8],
    /// What `patch` holds, if there is one (its pairs, where they start, the columns it sets).
    pub patch_shape: Option<locus_types::patch::Shape>,
    /// The row's position: its spatial column's value in `bytes`, for a table with one (meaningless otherwise).
    pub pos: Vec2,
}

/// The deltas of one tick, borrowed from the [`Interest`](crate::Interest) stage until its next `handle_*` call.
#[derive(Clone, Copy, Debug)]
pub struct Deltas<'a> {
    pub(crate) mirror: &'a Mirror,
    pub(crate) registry: &'a Registry,
    pub(crate) tick: Tick,
    pub(crate) worth_spreading: bool,
}

impl<'a> Deltas<'a> {
    /// The tick.
    #[must_use]
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// Whether the tick's per-client work was judged worth spreading over a pool (many clients, or a crowd whose
    /// views hold many rows; see [`InterestConfig::parallel_min`](crate::InterestConfig::parallel_min)): the
    /// shell's per-client work on these deltas (encoding frames) is worth spreading too.
    #[must_use]
    pub fn worth_spreading(&self) -> bool {
        self.worth_spreading
    }

    /// Every connected client's delta (empty ones included), in client-id order.
    pub fn iter(&self) -> impl Iterator<Item = (ClientId, &'a Delta)> + 'a {
        self.registry
            .clients()
            .map(|(id, c)| (ClientId(id), &c.out))
    }

    /// One client's delta.
    #[must_use]
    pub fn get(&self, client: ClientId) -> Option<&'a Delta> {
        self.registry.client(client.0).map(|c| &c.out)
    }

    /// The centre of a client's area and its enter radius, if it has an area (for a shell that sends far rows less
    /// often).
    #[must_use]
    pub fn area(&self, client: ClientId) -> Option<(Vec2, f32)> {
        let c = self.registry.client(client.0)?;
        let (center, enter2, _) = c.circle()?;
        Some((center, enter2.sqrt()))
    }

    /// The table, key and bytes of a row in a delta.
    ///
    /// # Panics
    ///
    /// If `row` is not from this tick's deltas.
    #[must_use]
    pub fn row(&self, row: RowId) -> RowRef<'a> {
        let r = self.mirror.row(row);
        RowRef {
            table: r.table,
            key: &r.key,
            key_bytes: r.key_bytes(),
            bytes: &r.bytes,
            patch: &r.patch,
            patch_shape: r.shape,
            pos: self.mirror.hot(row).pos,
        }
    }

    /// Rows delivered to all clients: the sum of their deltas' lengths.
    #[must_use]
    pub fn delivered(&self) -> usize {
        self.iter().map(|(_, d)| d.len()).sum()
    }
}

//! [`Table`]: one table's rows and indexes, and every read query.
//!
//! # Layout
//!
//! Rows are stored encoded (the [`locus_types::codec`] bytes) in a slab of *slots*; a slot id is internal and
//! is reused after a delete. Slots come in chunks shared copy-on-write ([`crate::slab`]), so [`Table::freeze`] takes
//! an image of the table ([`FrozenTable`]) for one reference count per 1,024 slots; a write to a chunk or row an
//! image still holds copies it first (a chunk's copy shares its rows), and an unshared row of the same length is
//! overwritten in place. Indexes map keys to slots:
//!
//! - the primary key: a hash map (`u64` keys for integer and timestamp columns, [`Value`] keys otherwise);
//! - each `Unique` index: an ordered map `Value → slot`;
//! - each `BTree` index: an ordered set of `(Value, slot)`, so many rows may share a key;
//! - the `Spatial` index: see [`crate::spatial`].
//!
//! # Invariants
//!
//! - Every stored row is valid for the table's definition.
//! - Every index holds exactly one entry per live row, for that row's current key.
//! - No two live rows share a primary key or a value of a unique column.
//! - A write that returns an error has changed nothing.
//! - A [`FrozenTable`] never changes: it holds the rows as they were when it was taken, whatever is written to the
//!   table afterwards.
//!
//! Tables are only written through a [`Transaction`](crate::Transaction) (or
//! [`Database::apply`](crate::Database::apply)); this type exposes the reads. Row iteration order is unspecified.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use locus_types::codec::{self, RowError};
use locus_types::{ColumnId, ColumnType, IndexKind, TableDef, TableId, Value, Vec2};

use crate::error::{DeleteError, InsertError, QueryError, UpdateError};
use crate::slab::{FrozenRows, RowSlab};
use crate::spatial::{self, SpatialIndex};

/// The primary-key index.
///
/// `FirstInt` is used when the key is an integer in the first column (the common `id: u64` case): a hash table
/// of bare slots (4 bytes per bucket) whose keys are read back from the rows themselves, so the key is not stored
/// twice. Other keys use a map from key to slot.
enum PkMap {
    FirstInt {
        table: HashTable<u32>,
        hasher: DefaultHashBuilder,
    },
    Int(HashMap<u64, u32>),
    Any(HashMap<Value, u32>),
}

impl std::fmt::Debug for PkMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PkMap::FirstInt { table, .. } => write!(f, "PkMap::FirstInt({} keys)", table.len()),
            PkMap::Int(m) => write!(f, "PkMap::Int({} keys)", m.len()),
            PkMap::Any(m) => write!(f, "PkMap::Any({} keys)", m.len()),
        }
    }
}

fn int_key(v: &Value) -> Option<u64> {
    match v {
        Value::U64(x) => Some(*x),
        Value::I64(x) => Some(*x as u64),
        Value::Timestamp(t) => Some(t.0),
        _ => None,
    }
}

/// The key of a stored row under `PkMap::FirstInt`, mapped like [`int_key`].
fn first_int_key(rows: &RowSlab, slot: u32) -> u64 {
    let row = rows.get(slot).expect("indexed slot is live");
    codec::read_first_int(row).expect("stored row starts with its integer key") as u64
}

impl PkMap {
    fn get(&self, rows: &RowSlab, key: &Value) -> Option<u32> {
        match self {
            PkMap::FirstInt { table, hasher } => {
                let k = int_key(key)?;
                table
                    .find(hasher.hash_one(k), |&s| first_int_key(rows, s) == k)
                    .copied()
            }
            PkMap::Int(m) => int_key(key).and_then(|k| m.get(&k).copied()),
            PkMap::Any(m) => m.get(key).copied(),
        }
    }

    /// Index `slot` under `key`; `rows[slot]` must already hold the row.
    fn insert(&mut self, rows: &RowSlab, key: Value, slot: u32) {
        match self {
            PkMap::FirstInt { table, hasher } => {
                let k = int_key(&key).expect("integer key");
                table.insert_unique(hasher.hash_one(k), slot, |&s| {
                    hasher.hash_one(first_int_key(rows, s))
                });
            }
            PkMap::Int(m) => {
                m.insert(int_key(&key).expect("integer key"), slot);
            }
            PkMap::Any(m) => {
                m.insert(key, slot);
            }
        }
    }

    /// Remove `key`; `rows` must still hold the row.
    fn remove(&mut self, rows: &RowSlab, key: &Value) -> Option<u32> {
        match self {
            PkMap::FirstInt { table, hasher } => {
                let k = int_key(key)?;
                let entry = table
                    .find_entry(hasher.hash_one(k), |&s| first_int_key(rows, s) == k)
                    .ok()?;
                Some(entry.remove().0)
            }
            PkMap::Int(m) => int_key(key).and_then(|k| m.remove(&k)),
            PkMap::Any(m) => m.remove(key),
        }
    }
}

#[derive(Debug)]
struct UniqueIndex {
    column: ColumnId,
    map: BTreeMap<Value, u32>,
}

#[derive(Debug)]
struct BTreeIndex {
    column: ColumnId,
    set: BTreeSet<(Value, u32)>,
}

/// One table: rows, indexes and queries. See the [module docs](self).
#[derive(Debug)]
pub struct Table {
    id: TableId,
    def: TableDef,
    rows: RowSlab,
    free: Vec<u32>,
    len: usize,
    pk: PkMap,
    uniques: Vec<UniqueIndex>,
    btrees: Vec<BTreeIndex>,
    spatial: Option<(ColumnId, SpatialIndex)>,
    next_auto_inc: u64,
    offsets: Vec<u32>,
    old_offsets: Vec<u32>,
}

/// A table's rows, definition and `auto_inc` sequence as they were when [`Table::freeze`] took it. It never
/// changes, and can be sent to another thread (e.g. to be encoded as a snapshot there).
#[derive(Clone, Debug)]
pub struct FrozenTable {
    id: TableId,
    def: TableDef,
    next_auto_inc: u64,
    len: usize,
    rows: FrozenRows,
}

impl FrozenTable {
    /// The table's id.
    #[must_use]
    pub fn id(&self) -> TableId {
        self.id
    }

    /// The table's definition.
    #[must_use]
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The value `auto_inc` would have assigned next.
    #[must_use]
    pub fn next_auto_inc(&self) -> u64 {
        self.next_auto_inc
    }

    /// How many rows it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no row.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every row, in the order [`Table::iter`] gave them when the image was taken.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.rows.rows()
    }
}

fn bytes_of<'r>(row: &'r [u8], offsets: &[u32], column: ColumnId) -> &'r [u8] {
    let i = column.index();
    &row[offsets[i] as usize..offsets[i + 1] as usize]
}

/// Whether the range `(lo, hi)` is empty or inverted (where `BTreeMap::range` would panic).
fn empty_range<T: Ord>(lo: &Bound<T>, hi: &Bound<T>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

impl Table {
    pub(crate) fn new(id: TableId, def: TableDef, spatial_margin: f32) -> Table {
        let pk_ty = &def.columns[def.primary_key.index()].ty;
        let pk =
            if (pk_ty.is_integer() || *pk_ty == ColumnType::Timestamp) && def.primary_key.0 == 0 {
                PkMap::FirstInt {
                    table: HashTable::new(),
                    hasher: DefaultHashBuilder::default(),
                }
            } else if pk_ty.is_integer() || *pk_ty == ColumnType::Timestamp {
                PkMap::Int(HashMap::new())
            } else {
                PkMap::Any(HashMap::new())
            };
        let uniques = def
            .indexes
            .iter()
            .filter(|i| i.kind == IndexKind::Unique)
            .map(|i| UniqueIndex {
                column: i.column,
                map: BTreeMap::new(),
            })
            .collect();
        let btrees = def
            .indexes
            .iter()
            .filter(|i| i.kind == IndexKind::BTree)
            .map(|i| BTreeIndex {
                column: i.column,
                set: BTreeSet::new(),
            })
            .collect();
        let spatial = def
            .spatial_column()
            .map(|c| (c, SpatialIndex::new(spatial_margin)));
        Table {
            id,
            def,
            rows: RowSlab::default(),
            free: Vec::new(),
            len: 0,
            pk,
            uniques,
            btrees,
            spatial,
            next_auto_inc: 1,
            offsets: Vec::new(),
            old_offsets: Vec::new(),
        }
    }

    /// The table's id.
    #[must_use]
    pub fn id(&self) -> TableId {
        self.id
    }

    /// The table's definition.
    #[must_use]
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The table's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// How many rows the table holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value the next auto_inc insert will be given (the sequence starts at 1).
    #[must_use]
    pub fn next_auto_inc(&self) -> u64 {
        self.next_auto_inc
    }

    /// How many moves left their fat envelope and re-inserted into the R-tree (0 without a spatial index).
    #[must_use]
    pub fn spatial_reinserts(&self) -> u64 {
        self.spatial.as_ref().map_or(0, |(_, s)| s.reinserts())
    }

    /// Every row, in unspecified order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.rows.rows()
    }

    /// An image of the table as it is now, which later writes do not change: its definition, `auto_inc` sequence
    /// and rows (in [`Table::iter`]'s order). It shares the row slots' chunks (one reference count per 1,024 slots,
    /// no pass over the rows); a later write to a chunk or row it holds copies that first.
    #[must_use]
    pub fn freeze(&self) -> FrozenTable {
        FrozenTable {
            id: self.id,
            def: self.def.clone(),
            next_auto_inc: self.next_auto_inc,
            len: self.len,
            rows: self.rows.freeze(),
        }
    }

    /// Decode a row of this table into one value per column.
    ///
    /// # Errors
    ///
    /// [`RowError`] if `row` is not a valid row of this table.
    pub fn decode(&self, row: &[u8]) -> Result<Vec<Value>, RowError> {
        codec::decode_row(&self.def.columns, row)
    }

    /// The primary key of a row of this table.
    ///
    /// # Errors
    ///
    /// [`RowError`] if `row` is not a valid row of this table.
    pub fn primary_key_of(&self, row: &[u8]) -> Result<Value, RowError> {
        let mut offsets = Vec::with_capacity(self.def.columns.len() + 1);
        codec::validate_row(&self.def.columns, row, &mut offsets)?;
        self.key_from(row, &offsets, self.def.primary_key)
    }

    fn key_from(&self, row: &[u8], offsets: &[u32], column: ColumnId) -> Result<Value, RowError> {
        codec::decode_value(
            &self.def.columns[column.index()],
            bytes_of(row, offsets, column),
        )
    }

    fn check_key(&self, column: ColumnId, key: &Value) -> Result<(), QueryError> {
        let col = self
            .def
            .column(column)
            .ok_or_else(|| QueryError::NoSuchColumn {
                table: self.def.name.clone(),
                column: column.0,
            })?;
        if col.ty.admits(key) {
            Ok(())
        } else {
            Err(QueryError::KeyType {
                table: self.def.name.clone(),
                column: col.name.clone(),
                expected: col.ty.clone(),
                found: key.clone(),
            })
        }
    }

    fn row(&self, slot: u32) -> &[u8] {
        self.rows.get(slot).expect("indexed slot is live")
    }

    /// The row with primary key `key`.
    ///
    /// # Errors
    ///
    /// [`QueryError::KeyType`] if `key` is not a value of the primary key's type.
    pub fn get(&self, key: &Value) -> Result<Option<&[u8]>, QueryError> {
        self.check_key(self.def.primary_key, key)?;
        Ok(self.pk.get(&self.rows, key).map(|slot| self.row(slot)))
    }

    /// Rows whose `column` equals `key`, through the primary key, a unique index or a btree index.
    ///
    /// # Errors
    ///
    /// [`QueryError::NoIndex`] if the column has none of those; [`QueryError::KeyType`] for a key of the wrong type.
    pub fn index_eq(&self, column: ColumnId, key: &Value) -> Result<Vec<&[u8]>, QueryError> {
        self.check_key(column, key)?;
        if column == self.def.primary_key {
            return Ok(self
                .pk
                .get(&self.rows, key)
                .map(|s| self.row(s))
                .into_iter()
                .collect());
        }
        if let Some(u) = self.uniques.iter().find(|u| u.column == column) {
            return Ok(u.map.get(key).map(|s| self.row(*s)).into_iter().collect());
        }
        if let Some(b) = self.btrees.iter().find(|b| b.column == column) {
            let lo = (key.clone(), 0);
            let hi = (key.clone(), u32::MAX);
            return Ok(b.set.range(lo..=hi).map(|(_, s)| self.row(*s)).collect());
        }
        Err(self.no_index(column, "equality"))
    }

    /// Rows whose `column` lies in `(lo, hi)`, in key order, through a unique or btree index.
    ///
    /// An empty or inverted range yields no rows.
    ///
    /// # Errors
    ///
    /// [`QueryError::NoIndex`] if the column has no ordered index; [`QueryError::KeyType`] for a bound of the
    /// wrong type.
    pub fn index_range(
        &self,
        column: ColumnId,
        lo: Bound<&Value>,
        hi: Bound<&Value>,
    ) -> Result<Vec<&[u8]>, QueryError> {
        for b in [lo, hi] {
            if let Bound::Included(k) | Bound::Excluded(k) = b {
                self.check_key(column, k)?;
            }
        }
        if empty_range(&lo, &hi) {
            return Ok(Vec::new());
        }
        if let Some(u) = self.uniques.iter().find(|u| u.column == column) {
            let range = (lo.cloned(), hi.cloned());
            return Ok(u.map.range(range).map(|(_, s)| self.row(*s)).collect());
        }
        if let Some(b) = self.btrees.iter().find(|b| b.column == column) {
            let lo = match lo {
                Bound::Included(k) => Bound::Included((k.clone(), 0)),
                Bound::Excluded(k) => Bound::Excluded((k.clone(), u32::MAX)),
                Bound::Unbounded => Bound::Unbounded,
            };
            let hi = match hi {
                Bound::Included(k) => Bound::Included((k.clone(), u32::MAX)),
                Bound::Excluded(k) => Bound::Excluded((k.clone(), 0)),
                Bound::Unbounded => Bound::Unbounded,
            };
            return Ok(b.set.range((lo, hi)).map(|(_, s)| self.row(*s)).collect());
        }
        Err(self.no_index(column, "range"))
    }

    fn no_index(&self, column: ColumnId, query: &'static str) -> QueryError {
        QueryError::NoIndex {
            table: self.def.name.clone(),
            column: self
                .def
                .column(column)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            query,
        }
    }

    fn spatial_index(&self) -> Result<&SpatialIndex, QueryError> {
        self.spatial
            .as_ref()
            .map(|(_, s)| s)
            .ok_or_else(|| QueryError::NoIndex {
                table: self.def.name.clone(),
                column: String::new(),
                query: "spatial",
            })
    }

    /// Rows whose spatial column is within `radius` of `center` ([`spatial::distance_2`] `<= radius²`).
    ///
    /// # Errors
    ///
    /// [`QueryError::NoIndex`] if the table has no spatial index.
    pub fn within_radius(
        &self,
        center: Vec2,
        radius: f32,
    ) -> Result<impl Iterator<Item = &[u8]> + '_, QueryError> {
        Ok(self
            .spatial_index()?
            .within_radius(center, radius)
            .map(|s| self.row(s)))
    }

    /// Rows whose spatial column lies in the envelope (box) `[min, max]`, borders included.
    ///
    /// # Errors
    ///
    /// [`QueryError::NoIndex`] if the table has no spatial index.
    pub fn locate_in_envelope(
        &self,
        min: Vec2,
        max: Vec2,
    ) -> Result<impl Iterator<Item = &[u8]> + '_, QueryError> {
        Ok(self
            .spatial_index()?
            .within_envelope(min, max)
            .map(|s| self.row(s)))
    }

    /// The `k` rows nearest to `point`, nearest first, each with its squared distance. Ties in distance are
    /// broken arbitrarily but deterministically.
    ///
    /// # Errors
    ///
    /// [`QueryError::NoIndex`] if the table has no spatial index.
    pub fn nearest_neighbors(
        &self,
        point: Vec2,
        k: usize,
    ) -> Result<Vec<(&[u8], f32)>, QueryError> {
        Ok(self
            .spatial_index()?
            .nearest(point, k)
            .into_iter()
            .map(|(s, d)| (self.row(s), d))
            .collect())
    }

    /// The position of the row with primary key `key` in the spatial column, read from the index.
    ///
    /// # Errors
    ///
    /// [`QueryError::NoIndex`] without a spatial index; [`QueryError::KeyType`] for a key of the wrong type.
    pub fn position(&self, key: &Value) -> Result<Option<Vec2>, QueryError> {
        let index = self.spatial_index()?;
        self.check_key(self.def.primary_key, key)?;
        Ok(self.pk.get(&self.rows, key).map(|s| index.position(s)))
    }

    // ---- writes (crate-private: only transactions call these) ----

    fn row_error_insert(&self, source: RowError) -> InsertError {
        InsertError::Row {
            table: self.def.name.clone(),
            source,
        }
    }

    fn check_position(&self, row: &[u8], offsets: &[u32]) -> Result<Option<Vec2>, (String, Vec2)> {
        let Some((column, _)) = &self.spatial else {
            return Ok(None);
        };
        let pos = codec::read_vec2(bytes_of(row, offsets, *column)).expect("validated Vec2");
        if spatial::valid_position(pos) {
            Ok(Some(pos))
        } else {
            Err((self.def.columns[column.index()].name.clone(), pos))
        }
    }

    /// Insert a row; returns its primary key (assigned, for an auto_inc key given as 0).
    pub(crate) fn insert(&mut self, row: &[u8]) -> Result<Value, InsertError> {
        let mut offsets = std::mem::take(&mut self.offsets);
        let result = self.insert_with(row, &mut offsets, true);
        self.offsets = offsets;
        result
    }

    /// Insert rows without touching the spatial index, then build it once with `bulk_load`. Stops at the first
    /// row that fails, returning its position in `rows` and the error (the spatial index is rebuilt either way).
    pub(crate) fn load<'r>(
        &mut self,
        rows: impl IntoIterator<Item = &'r [u8]>,
    ) -> Result<usize, (usize, InsertError)> {
        let mut offsets = std::mem::take(&mut self.offsets);
        let mut result = Ok(0);
        for (i, row) in rows.into_iter().enumerate() {
            if let Err(e) = self.insert_with(row, &mut offsets, false) {
                result = Err((i, e));
                break;
            }
            result = Ok(i + 1);
        }
        self.offsets = offsets;
        self.rebuild_spatial();
        result
    }

    fn insert_with(
        &mut self,
        row: &[u8],
        offsets: &mut Vec<u32>,
        index_spatial: bool,
    ) -> Result<Value, InsertError> {
        codec::validate_row(&self.def.columns, row, offsets)
            .map_err(|e| self.row_error_insert(e))?;
        let pk_col = self.def.primary_key;
        let mut pk = self
            .key_from(row, offsets, pk_col)
            .map_err(|e| self.row_error_insert(e))?;
        let mut next_seq = self.next_auto_inc;
        let mut assigned: Option<Vec<u8>> = None;
        if self.def.auto_inc {
            let pk_ty = &self.def.columns[pk_col.index()].ty;
            let max = *pk_ty.int_range().expect("auto_inc key is an integer").end();
            let n: i128 = match pk {
                Value::I64(v) => v.into(),
                Value::U64(v) => v.into(),
                _ => unreachable!("auto_inc key is an integer"),
            };
            if n == 0 {
                let value = i128::from(self.next_auto_inc);
                if value > max {
                    return Err(InsertError::SequenceExhausted {
                        table: self.def.name.clone(),
                    });
                }
                pk = match pk {
                    Value::I64(_) => Value::I64(value as i64),
                    _ => Value::U64(value as u64),
                };
                next_seq = self.next_auto_inc + 1;
                let mut new_row = Vec::with_capacity(row.len() + 8);
                new_row.extend_from_slice(&row[..offsets[pk_col.index()] as usize]);
                codec::encode_value(&self.def.columns[pk_col.index()], &pk, &mut new_row)
                    .expect("sequence value fits the key type");
                new_row.extend_from_slice(&row[offsets[pk_col.index() + 1] as usize..]);
                codec::validate_row(&self.def.columns, &new_row, offsets)
                    .expect("splicing a valid key keeps the row valid");
                assigned = Some(new_row);
            } else if n >= i128::from(next_seq) {
                next_seq = u64::try_from(n + 1).unwrap_or(u64::MAX);
            }
        }
        let row: &[u8] = assigned.as_deref().unwrap_or(row);
        if self.pk.get(&self.rows, &pk).is_some() {
            return Err(InsertError::DuplicateKey {
                table: self.def.name.clone(),
                key: pk,
            });
        }
        let mut unique_keys = Vec::with_capacity(self.uniques.len());
        for u in &self.uniques {
            let key = self.key_from(row, offsets, u.column).expect("validated");
            if u.map.contains_key(&key) {
                return Err(InsertError::UniqueViolation {
                    table: self.def.name.clone(),
                    column: self.def.columns[u.column.index()].name.clone(),
                    key,
                });
            }
            unique_keys.push(key);
        }
        let pos = self.check_position(row, offsets).map_err(|(column, pos)| {
            InsertError::InvalidPosition {
                table: self.def.name.clone(),
                column,
                pos,
            }
        })?;
        // Validation done: from here on nothing fails.
        let btree_keys: Vec<Value> = self
            .btrees
            .iter()
            .map(|b| self.key_from(row, offsets, b.column).expect("validated"))
            .collect();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => self.rows.push_empty(),
        };
        self.rows.set(
            slot,
            match assigned {
                Some(v) => Arc::from(v),
                None => Arc::from(row),
            },
        );
        self.pk.insert(&self.rows, pk.clone(), slot);
        for (u, key) in self.uniques.iter_mut().zip(unique_keys) {
            u.map.insert(key, slot);
        }
        for (b, key) in self.btrees.iter_mut().zip(btree_keys) {
            b.set.insert((key, slot));
        }
        if let (Some((_, index)), Some(pos), true) = (&mut self.spatial, pos, index_spatial) {
            index.insert(slot, pos);
        }
        self.len += 1;
        self.next_auto_inc = next_seq;
        Ok(pk)
    }

    /// Replace the row whose primary key equals `row`'s. `before(key, old_row)` runs once the update is known to
    /// succeed, before anything changes. Returns the primary key.
    pub(crate) fn update(
        &mut self,
        row: &[u8],
        before: impl FnOnce(&Value, &[u8]),
    ) -> Result<Value, UpdateError> {
        let mut offsets = std::mem::take(&mut self.offsets);
        let mut old_offsets = std::mem::take(&mut self.old_offsets);
        let result = self.update_with(row, &mut offsets, &mut old_offsets, before);
        self.offsets = offsets;
        self.old_offsets = old_offsets;
        result
    }

    fn update_with(
        &mut self,
        row: &[u8],
        offsets: &mut Vec<u32>,
        old_offsets: &mut Vec<u32>,
        before: impl FnOnce(&Value, &[u8]),
    ) -> Result<Value, UpdateError> {
        let row_err = |source| UpdateError::Row {
            table: self.def.name.clone(),
            source,
        };
        codec::validate_row(&self.def.columns, row, offsets).map_err(row_err)?;
        let pk = self
            .key_from(row, offsets, self.def.primary_key)
            .map_err(row_err)?;
        let Some(slot) = self.pk.get(&self.rows, &pk) else {
            return Err(UpdateError::NotFound {
                table: self.def.name.clone(),
                key: pk,
            });
        };
        let old = self.rows.get(slot).expect("live slot");
        if !(self.uniques.is_empty() && self.btrees.is_empty()) {
            // Only secondary keys need the old row's column offsets.
            codec::validate_row(&self.def.columns, old, old_offsets)
                .expect("stored rows are valid");
        }
        // (index position, old key, new key) for every secondary key that changes.
        let mut unique_changes = Vec::new();
        for (i, u) in self.uniques.iter().enumerate() {
            let new_bytes = bytes_of(row, offsets, u.column);
            if new_bytes == bytes_of(old, old_offsets, u.column) {
                continue;
            }
            let new_key = self.key_from(row, offsets, u.column).expect("validated");
            let old_key = self
                .key_from(old, old_offsets, u.column)
                .expect("validated");
            if new_key == old_key {
                continue;
            }
            if u.map.get(&new_key).is_some_and(|s| *s != slot) {
                return Err(UpdateError::UniqueViolation {
                    table: self.def.name.clone(),
                    column: self.def.columns[u.column.index()].name.clone(),
                    key: new_key,
                });
            }
            unique_changes.push((i, old_key, new_key));
        }
        let pos = self.check_position(row, offsets).map_err(|(column, pos)| {
            UpdateError::InvalidPosition {
                table: self.def.name.clone(),
                column,
                pos,
            }
        })?;
        let mut btree_changes = Vec::new();
        for (i, b) in self.btrees.iter().enumerate() {
            if bytes_of(row, offsets, b.column) != bytes_of(old, old_offsets, b.column) {
                let new_key = self.key_from(row, offsets, b.column).expect("validated");
                let old_key = self
                    .key_from(old, old_offsets, b.column)
                    .expect("validated");
                if new_key != old_key {
                    btree_changes.push((i, old_key, new_key));
                }
            }
        }
        before(&pk, old);
        // Validation done: from here on nothing fails.
        for (i, old_key, new_key) in unique_changes {
            let map = &mut self.uniques[i].map;
            map.remove(&old_key);
            map.insert(new_key, slot);
        }
        for (i, old_key, new_key) in btree_changes {
            let set = &mut self.btrees[i].set;
            set.remove(&(old_key, slot));
            set.insert((new_key, slot));
        }
        if let (Some((_, index)), Some(pos)) = (&mut self.spatial, pos) {
            index.set_position(slot, pos);
        }
        self.rows.overwrite(slot, row);
        Ok(pk)
    }

    /// Delete the row with primary key `key`; returns it.
    pub(crate) fn delete(&mut self, key: &Value) -> Result<Box<[u8]>, DeleteError> {
        let pk_col = &self.def.columns[self.def.primary_key.index()];
        if !pk_col.ty.admits(key) {
            return Err(DeleteError::KeyType {
                table: self.def.name.clone(),
                column: pk_col.name.clone(),
                expected: pk_col.ty.clone(),
                found: key.clone(),
            });
        }
        let Some(slot) = self.pk.remove(&self.rows, key) else {
            return Err(DeleteError::NotFound {
                table: self.def.name.clone(),
                key: key.clone(),
            });
        };
        let row = self.rows.take(slot).expect("live slot");
        let mut offsets = std::mem::take(&mut self.offsets);
        if !(self.uniques.is_empty() && self.btrees.is_empty()) {
            // Only secondary keys need the row's column offsets.
            codec::validate_row(&self.def.columns, &row, &mut offsets)
                .expect("stored rows are valid");
        }
        for u in &mut self.uniques {
            let k = codec::decode_value(
                &self.def.columns[u.column.index()],
                bytes_of(&row, &offsets, u.column),
            )
            .expect("validated");
            u.map.remove(&k);
        }
        for b in &mut self.btrees {
            let k = codec::decode_value(
                &self.def.columns[b.column.index()],
                bytes_of(&row, &offsets, b.column),
            )
            .expect("validated");
            b.set.remove(&(k, slot));
        }
        if let Some((_, index)) = &mut self.spatial {
            index.remove(slot);
        }
        self.offsets = offsets;
        self.free.push(slot);
        self.len -= 1;
        Ok(Box::from(&*row))
    }

    /// Whether the table has unique indexes besides its primary key.
    pub(crate) fn has_unique_indexes(&self) -> bool {
        !self.uniques.is_empty()
    }

    pub(crate) fn set_next_auto_inc(&mut self, next: u64) {
        self.next_auto_inc = next;
    }

    /// Rebuild the spatial index with `rstar`'s `bulk_load` (faster queries after loading many rows).
    pub(crate) fn rebuild_spatial(&mut self) {
        let Some((column, index)) = &mut self.spatial else {
            return;
        };
        let columns = &self.def.columns;
        let mut offsets = Vec::new();
        let rows = self.rows.iter().filter_map(|(slot, r)| {
            let r = r?;
            codec::validate_row(columns, r, &mut offsets).expect("stored rows are valid");
            Some((
                slot,
                codec::read_vec2(bytes_of(r, &offsets, *column)).expect("validated Vec2"),
            ))
        });
        index.bulk_load(rows.collect::<Vec<_>>());
    }
}

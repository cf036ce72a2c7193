//! Tables: the [`Table`] trait the `#[table]` macro implements, whole-table operations ([`TableHandle`]), row
//! iterators ([`RowIter`]) and the errors of writes.
//!
//! A row crosses the ABI as `rmp_serde::to_vec(&row)`: one MessagePack array with one element per field, in field
//! order, which is exactly the row encoding of [`locus_types::codec`] for the [`TableDef`] the macro derives from
//! the same fields. Keys are one MessagePack value of the key column's type.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use locus_types::TableDef;
use locus_types::abi::Errno;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::scratch::Scratch;
use crate::sys;

/// A table row type; implemented by `#[table]`, never by hand.
///
/// Invariant: serializing a value with `rmp_serde::to_vec` gives a valid row of [`Table::def`] (one array element
/// per column, in order, each encoded as its [`locus_types::ColumnType`] requires).
pub trait Table: Serialize + DeserializeOwned + Sized {
    /// The table's name (the struct's name in snake_case unless given with `#[table(name = "...")]`).
    const NAME: &'static str;

    /// The type of the `#[primary_key]` field.
    type PrimaryKey;

    /// The table's definition, as reported to the host.
    fn def() -> TableDef;

    /// The row's primary key.
    fn primary_key(&self) -> &Self::PrimaryKey;

    /// Set an integer primary key from the `u64` the host reports after an insert (two's-complement bits for
    /// signed keys); a no-op for non-integer keys.
    #[doc(hidden)]
    fn __set_primary_key(&mut self, key: u64);

    /// Append the MessagePack encoding of the row's primary key to `out`.
    #[doc(hidden)]
    fn __encode_primary_key(&self, out: &mut Vec<u8>);

    /// Append the MessagePack encoding of `key`, a value of the primary-key column, to `out`.
    #[doc(hidden)]
    fn __encode_key(key: &Self::PrimaryKey, out: &mut Vec<u8>);

    /// The table's id in the running module instance (looked up once, then cached).
    #[doc(hidden)]
    fn __table_id() -> u32;
}

/// A table id looked up by name through the `table_id` host call on first use, then cached for the life of the
/// module instance (ids are stable for an instance; a fresh instance starts with fresh memory, so a fresh cache).
#[doc(hidden)]
#[derive(Debug)]
pub struct TableIdCache(AtomicU32);

impl TableIdCache {
    const UNKNOWN: u32 = u32::MAX;

    /// An empty cache.
    #[must_use]
    pub const fn new() -> TableIdCache {
        TableIdCache(AtomicU32::new(TableIdCache::UNKNOWN))
    }

    /// The id of the table named `name`.
    ///
    /// # Panics
    ///
    /// If the host does not know the table (it did not load this module's schema).
    #[inline]
    pub fn get(&self, name: &'static str) -> u32 {
        let id = self.0.load(Ordering::Relaxed);
        if id != TableIdCache::UNKNOWN {
            return id;
        }
        self.lookup(name)
    }

    #[cold]
    fn lookup(&self, name: &'static str) -> u32 {
        match sys::table_id(name) {
            Ok(id) => {
                self.0.store(id, Ordering::Relaxed);
                id
            }
            Err(Errno::NoSuchTable) => panic!(
                "locus-module: the host has no table `{name}`; the module it loaded declares a different schema"
            ),
            Err(e) => sys::unexpected("table_id", e),
        }
    }
}

impl Default for TableIdCache {
    fn default() -> Self {
        TableIdCache::new()
    }
}

/// Append `value`'s MessagePack encoding (as a row or a plain key) to `out`.
pub(crate) fn encode_into<V: Serialize + ?Sized>(value: &V, out: &mut Vec<u8>) {
    if let Err(e) = rmp_serde::encode::write(out, value) {
        panic!("locus-module: cannot encode a value as MessagePack: {e}");
    }
}

/// Decode a whole row of `T` (as returned by `get`).
pub(crate) fn decode_row<T: Table>(bytes: &[u8]) -> T {
    match rmp_serde::from_slice(bytes) {
        Ok(row) => row,
        Err(e) => bad_row::<T>(&e),
    }
}

#[cold]
fn bad_row<T: Table>(e: &dyn std::fmt::Display) -> ! {
    panic!(
        "locus-module: a row of `{}` from the host does not decode as `{}`: {e}",
        T::NAME,
        std::any::type_name::<T>()
    )
}

/// Why an insert failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Another row already has this primary key or the same value in a `#[unique]` column.
    #[error(
        "insert into `{table}`: a row with the same primary key or unique value already exists"
    )]
    UniqueViolation {
        /// The table.
        table: &'static str,
    },
    /// The `#[spatial]` column's position is not finite or is outside the world's coordinate range (±1e9).
    #[error("insert into `{table}`: the position is not finite or is outside the world")]
    InvalidPosition {
        /// The table.
        table: &'static str,
    },
    /// The `auto_inc` sequence has passed the largest value of the key's type.
    #[error("insert into `{table}`: the auto_inc sequence is exhausted")]
    SequenceExhausted {
        /// The table.
        table: &'static str,
    },
}

impl From<InsertError> for String {
    fn from(e: InsertError) -> String {
        e.to_string()
    }
}

/// Why an update failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// No row has the new row's primary key.
    #[error("update of `{table}`: no row has this primary key")]
    NotFound {
        /// The table.
        table: &'static str,
    },
    /// Another row already has the same value in a `#[unique]` column.
    #[error("update of `{table}`: another row has the same unique value")]
    UniqueViolation {
        /// The table.
        table: &'static str,
    },
    /// The `#[spatial]` column's position is not finite or is outside the world's coordinate range (±1e9).
    #[error("update of `{table}`: the position is not finite or is outside the world")]
    InvalidPosition {
        /// The table.
        table: &'static str,
    },
}

impl From<UpdateError> for String {
    fn from(e: UpdateError) -> String {
        e.to_string()
    }
}

/// Operations on a whole table; the generated `<Row>Handle` of each table delegates to it.
///
/// Obtain one through the generated handle (`ctx.db.player()`), or with [`TableHandle::new`] in generic code.
pub struct TableHandle<T: Table> {
    _row: PhantomData<fn() -> T>,
}

impl<T: Table> std::fmt::Debug for TableHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("table", &T::NAME)
            .finish()
    }
}

impl<T: Table> TableHandle<T> {
    /// A handle on table `T`. Every operation needs a running reducer.
    #[must_use]
    pub fn new() -> TableHandle<T> {
        TableHandle { _row: PhantomData }
    }

    /// Insert `row`; returns it with its primary key as stored (for an `auto_inc` table, a key of `0` is replaced
    /// by the next value of the table's sequence).
    ///
    /// # Errors
    ///
    /// [`InsertError::UniqueViolation`] if the primary key or a unique value is taken;
    /// [`InsertError::InvalidPosition`] for a bad spatial position; [`InsertError::SequenceExhausted`] if the
    /// `auto_inc` sequence has run out.
    pub fn insert(&self, mut row: T) -> Result<T, InsertError> {
        let mut buf = Scratch::empty();
        encode_into(&row, &mut buf);
        match sys::insert(T::__table_id(), &buf) {
            Ok(key) => {
                row.__set_primary_key(key);
                Ok(row)
            }
            Err(Errno::UniqueViolation) => Err(InsertError::UniqueViolation { table: T::NAME }),
            Err(Errno::InvalidPosition) => Err(InsertError::InvalidPosition { table: T::NAME }),
            Err(Errno::LimitExceeded) => Err(InsertError::SequenceExhausted { table: T::NAME }),
            Err(e) => sys::unexpected("insert", e),
        }
    }

    /// Every row, in no particular order (a snapshot taken now: later writes do not change what it yields).
    #[must_use]
    pub fn iter(&self) -> RowIter<T> {
        RowIter::open("scan", sys::scan(T::__table_id()))
    }

    /// The number of rows.
    #[must_use]
    pub fn count(&self) -> u64 {
        sys::row_count(T::__table_id()).unwrap_or_else(|e| sys::unexpected("row_count", e))
    }

    /// Delete the row with `row`'s primary key; returns whether there was one.
    pub fn delete(&self, row: &T) -> bool {
        let mut key = Scratch::empty();
        row.__encode_primary_key(&mut key);
        delete_key::<T>(&key)
    }
}

impl<T: Table> Default for TableHandle<T> {
    fn default() -> Self {
        TableHandle::new()
    }
}

impl<T: Table> Clone for TableHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Table> Copy for TableHandle<T> {}

/// A handle on one table that knows its row type: [`TableHandle<T>`] and every generated `<Row>Handle` (what
/// `ctx.db.player()` returns). SDK calls that name a table take one, so they are typed by the table's row (and
/// so its primary-key type): [`ReducerContext::set_area_follow`](crate::ReducerContext::set_area_follow).
pub trait IntoTableHandle: Copy {
    /// The table's row type.
    type Row: Table;

    /// The generic handle on the same table.
    fn into_table_handle(self) -> TableHandle<Self::Row>;
}

impl<T: Table> IntoTableHandle for TableHandle<T> {
    type Row = T;

    #[inline]
    fn into_table_handle(self) -> TableHandle<T> {
        self
    }
}

/// Delete the row whose encoded primary key is `key`; whether there was one.
pub(crate) fn delete_key<T: Table>(key: &[u8]) -> bool {
    match sys::delete(T::__table_id(), key) {
        Ok(()) => true,
        Err(Errno::NotFound) => false,
        Err(e) => sys::unexpected("delete", e),
    }
}

/// Rows read from a host iterator, decoded as `T`.
///
/// Rows arrive in batches (`iter_next` copies as many whole rows as fit in a pooled buffer), so iterating costs
/// one host call per batch, not per row. The host iterator is a snapshot taken when the query ran. Dropping a
/// `RowIter` before the end closes the host iterator; iterators still open when a reducer returns are closed by
/// the host anyway.
pub struct RowIter<T> {
    iter: u32,
    buf: Scratch,
    pos: usize,
    len: usize,
    open: bool,
    _row: PhantomData<fn() -> T>,
}

/// The size of a fresh iterator's batch buffer.
const BATCH_BYTES: usize = 16 * 1024;

impl<T: Table> RowIter<T> {
    /// Wrap the result of a query host call.
    pub(crate) fn open(call: &'static str, opened: Result<u32, Errno>) -> RowIter<T> {
        let iter = match opened {
            Ok(iter) => iter,
            Err(Errno::InvalidPosition) => panic!(
                "locus-module: `{call}` on `{}`: the query position, radius, envelope or count is not finite, is \
                 negative or is outside the world",
                T::NAME
            ),
            Err(Errno::LimitExceeded) => panic!(
                "locus-module: `{call}` on `{}`: too many open iterators (or rows held by them) in this reducer call",
                T::NAME
            ),
            Err(e) => sys::unexpected(call, e),
        };
        let mut buf = Scratch::take();
        sys::ensure_len(&mut buf, BATCH_BYTES);
        RowIter {
            iter,
            buf,
            pos: 0,
            len: 0,
            open: true,
            _row: PhantomData,
        }
    }
}

impl<T: Table> Iterator for RowIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        while self.pos >= self.len {
            if !self.open {
                return None;
            }
            match sys::iter_next(self.iter, &mut self.buf) {
                Ok(len) => {
                    self.pos = 0;
                    self.len = len;
                }
                Err(Errno::Exhausted) => {
                    self.open = false;
                    return None;
                }
                Err(e) => sys::unexpected("iter_next", e),
            }
        }
        let (row, used) = decode_prefix::<T>(&self.buf[self.pos..self.len]);
        self.pos += used;
        Some(row)
    }
}

/// Decode the row at the start of `bytes` (rows are back to back in an iterator batch); returns it and its length.
pub(crate) fn decode_prefix<T: Table>(bytes: &[u8]) -> (T, usize) {
    let mut rest = bytes;
    let row = {
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        T::deserialize(&mut de)
    };
    match row {
        Ok(row) => (row, bytes.len() - rest.len()),
        Err(e) => bad_row::<T>(&e),
    }
}

impl<T> Drop for RowIter<T> {
    fn drop(&mut self) {
        if self.open {
            sys::iter_close(self.iter);
        }
    }
}

impl<T: Table> std::fmt::Debug for RowIter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowIter")
            .field("table", &T::NAME)
            .field("iter", &self.iter)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_convert_to_strings_for_question_mark() {
        fn reducer() -> Result<(), String> {
            Err(InsertError::UniqueViolation { table: "player" })?;
            Ok(())
        }
        assert_eq!(
            reducer().unwrap_err(),
            "insert into `player`: a row with the same primary key or unique value already exists"
        );
        let s: String = UpdateError::NotFound { table: "t" }.into();
        assert!(s.contains("no row"));
    }
}

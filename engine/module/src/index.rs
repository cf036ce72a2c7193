//! Typed index handles: what the generated per-column accessors (`ctx.db.player().name()`) return.
//!
//! | attribute | handle | queries |
//! |---|---|---|
//! | `#[primary_key]` | [`PrimaryKey<T, K>`] | `find`, `update`, `delete`; `range` if the key also has a `#[unique]` or `#[index(btree)]` index |
//! | `#[unique]` | [`UniqueIndex<T, K>`] | `find`, `delete`, `range` |
//! | `#[index(btree)]` | [`BTreeIndex<T, K>`] | `filter`, `range` |
//! | `#[spatial]` | [`SpatialIndex<T>`] | `within`, `within_box`, `nearest` |
//!
//! `T` is the row type and `K` the column's Rust type. Keys are passed by reference and may be any borrowed form
//! of `K` (`find("bob")` for a `String` column, like `HashMap::get`). A handle is a column id and nothing else:
//! creating one is free, and each query is one host call plus one per batch of rows.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use locus_types::Vec2;
use locus_types::abi::{BoundKind, Errno};
use serde::Serialize;

use crate::scratch::Scratch;
use crate::sys;
use crate::table::{RowIter, Table, UpdateError, decode_row, delete_key, encode_into};

/// How a key of some column is encoded as MessagePack. The `#[table]` macro picks the codec per column; module
/// code never names it.
pub trait KeyCodec<Q: ?Sized> {
    /// Append `key`'s encoding to `out`.
    fn encode_key(key: &Q, out: &mut Vec<u8>);
}

/// The codec of every key type except bytes: plain serde.
#[derive(Debug)]
pub enum Plain {}

impl<Q: Serialize + ?Sized> KeyCodec<Q> for Plain {
    #[inline]
    fn encode_key(key: &Q, out: &mut Vec<u8>) {
        encode_into(key, out);
    }
}

/// The codec of `Vec<u8>` (and `Option<Vec<u8>>`) keys: MessagePack `bin`, as `serde_bytes` writes it.
#[derive(Debug)]
pub enum AsBytes {}

impl<Q: serde_bytes::Serialize + ?Sized> KeyCodec<Q> for AsBytes {
    #[inline]
    fn encode_key(key: &Q, out: &mut Vec<u8>) {
        let mut ser = rmp_serde::Serializer::new(out);
        if let Err(e) = serde_bytes::serialize(key, &mut ser) {
            panic!("locus-module: cannot encode a bytes key as MessagePack: {e}");
        }
    }
}

fn open_eq<T: Table>(column: u16, key: &[u8]) -> RowIter<T> {
    RowIter::open("index_eq", sys::index_eq(T::__table_id(), column, key))
}

fn open_range<T: Table, Q: ?Sized, C: KeyCodec<Q>>(
    column: u16,
    range: &impl RangeBounds<Q>,
) -> RowIter<T> {
    let mut lo = Scratch::empty();
    let mut hi = Scratch::empty();
    let bound = |b: Bound<&Q>, out: &mut Vec<u8>| match b {
        Bound::Unbounded => BoundKind::Unbounded,
        Bound::Included(k) => {
            C::encode_key(k, out);
            BoundKind::Included
        }
        Bound::Excluded(k) => {
            C::encode_key(k, out);
            BoundKind::Excluded
        }
    };
    let lo_kind = bound(range.start_bound(), &mut lo);
    let hi_kind = bound(range.end_bound(), &mut hi);
    let bounds = BoundKind::pack(lo_kind, hi_kind);
    RowIter::open(
        "index_range",
        sys::index_range(T::__table_id(), column, &lo, &hi, bounds),
    )
}

/// Variance- and auto-trait-neutral marker of a handle's type parameters.
type Marker<T, K, C> = PhantomData<fn() -> (T, K, C)>;

/// Marks a primary key that also has a `#[unique]` or `#[index(btree)]` index: it can answer ranges.
#[derive(Debug)]
pub enum Ordered {}

/// Marks a primary key with only its own (hash) index: lookups by key, no ranges.
#[derive(Debug)]
pub enum Unordered {}

/// The primary key of table `T`, of type `K`: find, update and delete single rows.
///
/// `O` is [`Ordered`] if the key column also has a `#[unique]` or `#[index(btree)]` index, which
/// [`range`](PrimaryKey::range) needs (the primary key's own index is a hash index).
pub struct PrimaryKey<T, K, C = Plain, O = Unordered> {
    column: u16,
    _m: Marker<T, K, (C, O)>,
}

impl<T: Table, K, C, O> PrimaryKey<T, K, C, O> {
    /// The handle for the primary key, column `column` (generated code only).
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(column: u16) -> Self {
        PrimaryKey {
            column,
            _m: PhantomData,
        }
    }

    /// The row with this primary key, if any.
    #[must_use]
    pub fn find<Q: ?Sized>(&self, key: &Q) -> Option<T>
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        let mut k = Scratch::empty();
        C::encode_key(key, &mut k);
        let mut buf = Scratch::take();
        match sys::get(T::__table_id(), &k, &mut buf) {
            Ok(bytes) => Some(decode_row(bytes)),
            Err(Errno::NotFound) => None,
            Err(e) => sys::unexpected("get", e),
        }
    }

    /// Replace the row with `row`'s primary key by `row`; returns `row`.
    ///
    /// # Errors
    ///
    /// [`UpdateError::NotFound`] if no row has that key; [`UpdateError::UniqueViolation`] if a unique value is
    /// taken by another row; [`UpdateError::InvalidPosition`] for a bad spatial position.
    pub fn update(&self, row: T) -> Result<T, UpdateError> {
        let mut buf = Scratch::empty();
        encode_into(&row, &mut buf);
        match sys::update(T::__table_id(), &buf) {
            Ok(()) => Ok(row),
            Err(Errno::NotFound) => Err(UpdateError::NotFound { table: T::NAME }),
            Err(Errno::UniqueViolation) => Err(UpdateError::UniqueViolation { table: T::NAME }),
            Err(Errno::InvalidPosition) => Err(UpdateError::InvalidPosition { table: T::NAME }),
            Err(e) => sys::unexpected("update", e),
        }
    }

    /// Delete the row with this primary key; returns whether there was one.
    pub fn delete<Q: ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        let mut k = Scratch::empty();
        C::encode_key(key, &mut k);
        delete_key::<T>(&k)
    }
}

impl<T: Table, K, C> PrimaryKey<T, K, C, Ordered> {
    /// The rows whose primary key lies in `range`, in key order.
    ///
    /// # Panics
    ///
    /// If the reducer call has too many open iterators.
    #[must_use]
    pub fn range<Q: ?Sized>(&self, range: impl RangeBounds<Q>) -> RowIter<T>
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        open_range::<T, Q, C>(self.column, &range)
    }
}

/// A `#[unique]` column of table `T`, of type `K`: at most one row per key.
pub struct UniqueIndex<T, K, C = Plain> {
    column: u16,
    _m: Marker<T, K, C>,
}

impl<T: Table, K, C> UniqueIndex<T, K, C> {
    /// The handle for column `column` (generated code only).
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(column: u16) -> Self {
        UniqueIndex {
            column,
            _m: PhantomData,
        }
    }

    /// The row with this value, if any.
    ///
    /// # Panics
    ///
    /// If the reducer call has too many open iterators.
    #[must_use]
    pub fn find<Q: ?Sized>(&self, key: &Q) -> Option<T>
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        let mut k = Scratch::empty();
        C::encode_key(key, &mut k);
        open_eq::<T>(self.column, &k).next()
    }

    /// Delete the row with this value; returns whether there was one.
    ///
    /// # Panics
    ///
    /// If the reducer call has too many open iterators.
    pub fn delete<Q: ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        match self.find(key) {
            Some(row) => {
                let mut k = Scratch::empty();
                row.__encode_primary_key(&mut k);
                delete_key::<T>(&k)
            }
            None => false,
        }
    }

    /// The rows whose value lies in `range`, in key order.
    ///
    /// # Panics
    ///
    /// If the reducer call has too many open iterators.
    #[must_use]
    pub fn range<Q: ?Sized>(&self, range: impl RangeBounds<Q>) -> RowIter<T>
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        open_range::<T, Q, C>(self.column, &range)
    }
}

/// An `#[index(btree)]` column of table `T`, of type `K`: many rows may share a key.
pub struct BTreeIndex<T, K, C = Plain> {
    column: u16,
    _m: Marker<T, K, C>,
}

impl<T: Table, K, C> BTreeIndex<T, K, C> {
    /// The handle for column `column` (generated code only).
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(column: u16) -> Self {
        BTreeIndex {
            column,
            _m: PhantomData,
        }
    }

    /// The rows whose value equals `key`.
    ///
    /// # Panics
    ///
    /// If the reducer call has too many open iterators.
    #[must_use]
    pub fn filter<Q: ?Sized>(&self, key: &Q) -> RowIter<T>
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        let mut k = Scratch::empty();
        C::encode_key(key, &mut k);
        open_eq::<T>(self.column, &k)
    }

    /// The rows whose value lies in `range`, in key order (rows with equal keys in an order the host chooses).
    ///
    /// # Panics
    ///
    /// If the reducer call has too many open iterators.
    #[must_use]
    pub fn range<Q: ?Sized>(&self, range: impl RangeBounds<Q>) -> RowIter<T>
    where
        K: Borrow<Q>,
        C: KeyCodec<Q>,
    {
        open_range::<T, Q, C>(self.column, &range)
    }
}

/// The `#[spatial]` column of table `T` (a [`Vec2`] in an R-tree).
///
/// Every query panics (trapping the reducer, whose writes roll back) if its shape is not finite, is negative or
/// lies outside the world's coordinate range, or if the reducer call has too many open iterators.
pub struct SpatialIndex<T> {
    _m: PhantomData<fn() -> T>,
}

impl<T: Table> SpatialIndex<T> {
    /// The handle for the table's spatial column (generated code only).
    #[doc(hidden)]
    #[must_use]
    pub const fn __new() -> Self {
        SpatialIndex { _m: PhantomData }
    }

    /// The rows within `radius` of `center`, boundary included, in no particular order.
    ///
    /// # Panics
    ///
    /// See the [type docs](SpatialIndex).
    #[must_use]
    pub fn within(&self, center: Vec2, radius: f32) -> RowIter<T> {
        RowIter::open(
            "within_radius",
            sys::within_radius(T::__table_id(), center.x, center.y, radius),
        )
    }

    /// The rows in the envelope `[min.x, max.x] × [min.y, max.y]`, boundary included, in no particular order.
    ///
    /// # Panics
    ///
    /// See the [type docs](SpatialIndex); also if `min` exceeds `max` on either axis.
    #[must_use]
    pub fn within_box(&self, min: Vec2, max: Vec2) -> RowIter<T> {
        RowIter::open(
            "within_box",
            sys::within_box(T::__table_id(), min.x, min.y, max.x, max.y),
        )
    }

    /// The `k` rows nearest to `point`, nearest first.
    ///
    /// # Panics
    ///
    /// See the [type docs](SpatialIndex).
    #[must_use]
    pub fn nearest(&self, point: Vec2, k: u32) -> RowIter<T> {
        RowIter::open(
            "nearest",
            sys::nearest(T::__table_id(), point.x, point.y, k),
        )
    }
}

macro_rules! handle_boilerplate {
    ($($ty:ident < $($p:ident),* >),*) => {$(
        impl<$($p),*> Clone for $ty<$($p),*> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$($p),*> Copy for $ty<$($p),*> {}
        impl<$($p),*> std::fmt::Debug for $ty<$($p),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).field("row", &std::any::type_name::<T>()).finish_non_exhaustive()
            }
        }
    )*};
}

handle_boilerplate!(PrimaryKey<T, K, C, O>, UniqueIndex<T, K, C>, BTreeIndex<T, K, C>, SpatialIndex<T>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_keys_are_bin_and_plain_keys_are_serde() {
        let mut out = Vec::new();
        AsBytes::encode_key(&vec![1u8, 2, 3], &mut out);
        assert_eq!(out, [0xc4, 3, 1, 2, 3]);
        out.clear();
        AsBytes::encode_key(&[1u8, 2][..], &mut out);
        assert_eq!(out, [0xc4, 2, 1, 2]);
        out.clear();
        AsBytes::encode_key(&Some(vec![9u8]), &mut out);
        assert_eq!(out, [0xc4, 1, 9]);
        out.clear();
        Plain::encode_key("ab", &mut out);
        assert_eq!(out, [0xa2, b'a', b'b']);
        out.clear();
        Plain::encode_key(&300u32, &mut out);
        assert_eq!(out, [0xcd, 0x01, 0x2c]);
    }
}

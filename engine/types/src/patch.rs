//! Row patches: an update of a row sent as only the columns that changed.
//!
//! A walking player changes one column of a dozen each tick; sending its whole row to every client near it is most
//! of a server's bandwidth and send work. A patch carries the row's primary key and the new values of the changed
//! columns, and the receiver, which holds the previous version of the row, rebuilds the new one.
//!
//! **Encoding.** A patch is one MessagePack array of `1 + 2k` elements (`k ≥ 1`): the row's primary key value, then
//! `k` pairs of a column index (an unsigned int, counting from 0 in the table's column order) and that column's new
//! value. Values are encoded exactly as in a row ([`crate::codec`]); indices are strictly increasing and never the
//! key column. Example: a player `[7, [1.0, 2.0], "ada", 100]` (key column 0) whose `pos` moved to `[1.5, 2.0]`:
//! `93 07 01 92 ca 3f c0 00 00 ca 40 00 00 00`.
//!
//! Invariants:
//! - For two valid rows `old` and `new` of a table with the same key, whenever [`make_patch`] writes a patch,
//!   [`apply_patch`] of it to `old` gives `new`, byte for byte.
//! - [`apply_patch`] writes only valid rows: every value it takes from the patch is checked against its column.
//! - A patch is only made when it is shorter than `new`.

use thiserror::Error;

use crate::ColumnDef;
use crate::codec::{self, RowError};

/// Why a patch cannot be applied to a row.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PatchError {
    /// The patch is not an array of `1 + 2k` elements with `k ≥ 1`.
    #[error("a patch must be a MessagePack array of the key and (column, value) pairs")]
    NotAPatch,
    /// The row the patch is applied to is not a valid row of the table.
    #[error("the row to patch is invalid: {0}")]
    BadRow(RowError),
    /// The patch's key differs from the row's.
    #[error("the patch is for another row")]
    OtherRow,
    /// A column index is out of range, not increasing, or the key column.
    #[error("the patch names column {index}, which it may not")]
    BadColumn {
        /// The index found.
        index: u64,
    },
    /// A value does not fit its column (or the key is not a valid key).
    #[error("a value in the patch is invalid: {0}")]
    BadValue(RowError),
    /// Bytes follow the patch's array.
    #[error("{count} bytes follow the end of the patch")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// Reusable buffers for [`make_patch`] (the column offsets of the two rows), so patching a tick's rows allocates
/// nothing once warm.
#[derive(Debug, Default)]
pub struct Scratch {
    old: Vec<u32>,
    new: Vec<u32>,
}

/// Write to `out` (cleared first) the patch turning `old` into `new`, two valid rows of a table with `columns`
/// and its primary key at index `key`.
///
/// Returns whether a patch was written: not when the rows differ in their key, are equal, either is not a valid
/// row, or the patch would not be shorter than `new` (send the row instead).
pub fn make_patch(
    columns: &[ColumnDef],
    key: usize,
    old: &[u8],
    new: &[u8],
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> bool {
    make_patch_shaped(columns, key, old, new, scratch, out).is_some()
}

/// What a patch holds, as [`make_patch_shaped`] made it: for a sender that re-encodes patches per client (protocol
/// version 3 names rows by handle, so it sends the pairs without the key), read once per row instead of once per
/// client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Its (column, value) pairs.
    pub pairs: u32,
    /// Where the pairs start in the patch: after the array header and the key.
    pub body_at: u32,
    /// Bit `i % 64` of word `i / 64` set: the patch sets column `i` (a table has at most
    /// [`MAX_COLUMNS`](crate::MAX_COLUMNS) columns).
    pub columns: [u64; crate::MAX_COLUMNS / 64],
}

impl Shape {
    /// Whether the patch sets column `column`.
    #[must_use]
    pub fn sets(&self, column: usize) -> bool {
        self.columns
            .get(column / 64)
            .is_some_and(|w| w & (1 << (column % 64)) != 0)
    }

    /// Whether the patch sets column `column` and no other.
    #[must_use]
    pub fn sets_only(&self, column: usize) -> bool {
        self.pairs == 1 && self.sets(column)
    }
}

/// [`make_patch`], returning the patch's [`Shape`] if it wrote one.
pub fn make_patch_shaped(
    columns: &[ColumnDef],
    key: usize,
    old: &[u8],
    new: &[u8],
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<Shape> {
    out.clear();
    if codec::locate_columns(columns, old, columns.len(), &mut scratch.old).is_err()
        || codec::locate_columns(columns, new, columns.len(), &mut scratch.new).is_err()
    {
        return None;
    }
    let (a, b) = (&scratch.old, &scratch.new);
    let col = |offsets: &[u32], i: usize| offsets[i] as usize..offsets[i + 1] as usize;
    if old[col(a, key)] != new[col(b, key)] {
        return None;
    }
    let changed = (0..columns.len())
        .filter(|&i| old[col(a, i)] != new[col(b, i)])
        .count();
    if changed == 0 {
        return None;
    }
    let pairs = changed as u32;
    rmp::encode::write_array_len(out, 1 + 2 * pairs).expect("Vec write");
    out.extend_from_slice(&new[col(b, key)]);
    let mut shape = Shape {
        pairs,
        body_at: out.len() as u32,
        columns: [0; crate::MAX_COLUMNS / 64],
    };
    for i in 0..columns.len() {
        let value = &new[col(b, i)];
        if old[col(a, i)] != *value {
            rmp::encode::write_uint(out, i as u64).expect("Vec write");
            out.extend_from_slice(value);
            // A valid row has at most MAX_COLUMNS columns (`locate_columns` read them all).
            if let Some(w) = shape.columns.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
            if out.len() >= new.len() {
                out.clear();
                return None;
            }
        }
    }
    Some(shape)
}

/// The primary key's bytes in `patch` (encoded as the key column's values are in a row), to find the row to
/// patch.
///
/// # Errors
///
/// [`PatchError::NotAPatch`] or [`PatchError::BadValue`].
pub fn patch_key<'a>(
    columns: &[ColumnDef],
    key: usize,
    patch: &'a [u8],
) -> Result<&'a [u8], PatchError> {
    let (_, rest) = header(columns, patch)?;
    let len = codec::value_len(&columns[key], rest).map_err(PatchError::BadValue)?;
    Ok(&rest[..len])
}

/// Apply `patch` to `row`, a row of a table with `columns` and its primary key at index `key`, writing the new row
/// to `out` (cleared first).
///
/// # Errors
///
/// A [`PatchError`] if the row or the patch is invalid, or the patch is for another row; `out` is then
/// unspecified.
pub fn apply_patch(
    columns: &[ColumnDef],
    key: usize,
    row: &[u8],
    patch: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PatchError> {
    let mut offsets = Vec::with_capacity(columns.len() + 1);
    codec::validate_row(columns, row, &mut offsets).map_err(PatchError::BadRow)?;
    let (pairs, mut rest) = header(columns, patch)?;
    let key_len = codec::value_len(&columns[key], rest).map_err(PatchError::BadValue)?;
    if rest[..key_len] != row[offsets[key] as usize..offsets[key + 1] as usize] {
        return Err(PatchError::OtherRow);
    }
    rest = &rest[key_len..];
    out.clear();
    out.extend_from_slice(&row[..offsets[0] as usize]);
    // The next column of `row` not yet copied.
    let mut next = 0usize;
    for _ in 0..pairs {
        let index: u64 = rmp::decode::read_int(&mut rest).map_err(|_| PatchError::NotAPatch)?;
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if i >= columns.len() || i < next || i == key {
            return Err(PatchError::BadColumn { index });
        }
        let len = codec::value_len(&columns[i], rest).map_err(PatchError::BadValue)?;
        out.extend_from_slice(&row[offsets[next] as usize..offsets[i] as usize]);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
        next = i + 1;
    }
    if !rest.is_empty() {
        return Err(PatchError::TrailingBytes { count: rest.len() });
    }
    out.extend_from_slice(&row[offsets[next] as usize..]);
    Ok(())
}

/// Read a patch's array header: the number of (column, value) pairs and the bytes after the header.
fn header<'a>(columns: &[ColumnDef], patch: &'a [u8]) -> Result<(usize, &'a [u8]), PatchError> {
    let mut rest = patch;
    let len = rmp::decode::read_array_len(&mut rest).map_err(|_| PatchError::NotAPatch)? as usize;
    if len < 3 || len.is_multiple_of(2) || (len - 1) / 2 > columns.len() {
        return Err(PatchError::NotAPatch);
    }
    Ok(((len - 1) / 2, rest))
}

#[cfg(test)]
mod tests {
    use glam::Vec2;
    use proptest::prelude::*;

    use super::*;
    use crate::{ColumnType, TableDef, Value};

    fn def() -> TableDef {
        TableDef::builder("player")
            .column("id", ColumnType::U64)
            .column("pos", ColumnType::Vec2)
            .column("name", ColumnType::String)
            .column("hp", ColumnType::U32)
            .column("title", ColumnType::Option(Box::new(ColumnType::String)))
            .primary_key("id")
            .build()
            .unwrap()
    }

    fn row(id: u64, pos: Vec2, name: &str, hp: u64, title: Option<&str>) -> Vec<u8> {
        codec::encode_row(
            &def().columns,
            &[
                Value::U64(id),
                Value::Vec2(pos),
                Value::String(name.into()),
                Value::U64(hp),
                title.map_or(Value::Null, |t| Value::String(t.into())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_documented_example() {
        let t = TableDef::builder("p")
            .column("id", ColumnType::U64)
            .column("pos", ColumnType::Vec2)
            .column("name", ColumnType::String)
            .column("hp", ColumnType::U32)
            .primary_key("id")
            .build()
            .unwrap();
        let enc = |x: f32| {
            codec::encode_row(
                &t.columns,
                &[
                    Value::U64(7),
                    Value::Vec2(Vec2::new(x, 2.0)),
                    Value::String("ada".into()),
                    Value::U64(100),
                ],
            )
            .unwrap()
        };
        let (old, new) = (enc(1.0), enc(1.5));
        let mut out = Vec::new();
        assert!(make_patch(
            &t.columns,
            0,
            &old,
            &new,
            &mut Scratch::default(),
            &mut out
        ));
        let hex: Vec<String> = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.join(" "), "93 07 01 92 ca 3f c0 00 00 ca 40 00 00 00");
        let mut back = Vec::new();
        apply_patch(&t.columns, 0, &old, &out, &mut back).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn a_moved_row_patches_to_its_key_and_position() {
        let cols = def().columns;
        let old = row(
            300,
            Vec2::new(1.0, 2.0),
            "a long player name",
            100,
            Some("x"),
        );
        let new = row(
            300,
            Vec2::new(1.5, 2.0),
            "a long player name",
            100,
            Some("x"),
        );
        let mut out = Vec::new();
        assert!(make_patch(
            &cols,
            0,
            &old,
            &new,
            &mut Scratch::default(),
            &mut out
        ));
        // [300, 1, pos]: array header, uint16 key, index, 11 bytes of Vec2.
        assert_eq!(out.len(), 1 + 3 + 1 + 11);
        assert_eq!(patch_key(&cols, 0, &out).unwrap(), &[0xcd, 0x01, 0x2c]);
        let mut back = Vec::new();
        apply_patch(&cols, 0, &old, &out, &mut back).unwrap();
        assert_eq!(back, new);
        // A key a module wrote in a longer form (uint 64) stays in that form: the patch's key is the key column's
        // bytes in the row, as protocol.md promises.
        let widen = |row: &[u8]| {
            assert_eq!(&row[1..4], &[0xcd, 0x01, 0x2c]);
            [&row[..1], &[0xcf, 0, 0, 0, 0, 0, 0, 0x01, 0x2c], &row[4..]].concat()
        };
        let (old, new) = (widen(&old), widen(&new));
        assert!(make_patch(
            &cols,
            0,
            &old,
            &new,
            &mut Scratch::default(),
            &mut out
        ));
        assert_eq!(
            patch_key(&cols, 0, &out).unwrap(),
            &[0xcf, 0, 0, 0, 0, 0, 0, 0x01, 0x2c]
        );
        apply_patch(&cols, 0, &old, &out, &mut back).unwrap();
        assert_eq!(back, new);
    }

    /// In a table of the most columns allowed, a change of the last column alone is named by the shape as that
    /// column and no other (the shape's words beyond the first are used).
    #[test]
    fn the_shape_of_a_wide_table_names_its_last_column() {
        let mut b = TableDef::builder("wide");
        for i in 0..crate::MAX_COLUMNS {
            b = b.column(format!("c{i}"), ColumnType::U32);
        }
        let def = b.primary_key("c0").build().expect("valid");
        let row = |last: u64| {
            let mut values = vec![Value::U64(1); crate::MAX_COLUMNS];
            values[crate::MAX_COLUMNS - 1] = Value::U64(last);
            codec::encode_row(&def.columns, &values).expect("row")
        };
        let mut patch = Vec::new();
        let shape = make_patch_shaped(
            &def.columns,
            0,
            &row(1),
            &row(2),
            &mut Scratch::default(),
            &mut patch,
        )
        .expect("a patch");
        let last = crate::MAX_COLUMNS - 1;
        assert!(shape.sets(last) && shape.sets_only(last));
        assert!((0..last).all(|i| !shape.sets(i)));
        assert!(!shape.sets(crate::MAX_COLUMNS));
    }

    #[test]
    fn no_patch_for_other_keys_equal_rows_or_when_the_row_is_as_short() {
        let cols = def().columns;
        let a = row(1, Vec2::ZERO, "n", 1, None);
        let mut out = Vec::new();
        let mut s = Scratch::default();
        assert!(!make_patch(&cols, 0, &a, &a, &mut s, &mut out));
        let other = row(2, Vec2::ZERO, "n", 1, None);
        assert!(!make_patch(&cols, 0, &a, &other, &mut s, &mut out));
        // Everything but the key changed: the patch would be longer than the row.
        let all = row(1, Vec2::ONE, "m", 2, Some("t"));
        assert!(!make_patch(&cols, 0, &a, &all, &mut s, &mut out));
        assert!(out.is_empty());
        assert!(!make_patch(&cols, 0, &[0x90], &a, &mut s, &mut out));
    }

    #[test]
    fn bad_patches_are_named_errors() {
        let cols = def().columns;
        let old = row(5, Vec2::ZERO, "name", 10, None);
        let mut out = Vec::new();
        let apply = |patch: &[u8], out: &mut Vec<u8>| apply_patch(&cols, 0, &old, patch, out);
        assert_eq!(apply(&[0x91, 0x05], &mut out), Err(PatchError::NotAPatch));
        assert_eq!(
            apply(&[0x92, 0x05, 0x03], &mut out),
            Err(PatchError::NotAPatch)
        );
        assert_eq!(apply(&[0xc0], &mut out), Err(PatchError::NotAPatch));
        assert_eq!(
            apply(&[0x93, 0x06, 0x03, 0x01], &mut out),
            Err(PatchError::OtherRow)
        );
        for index in [0u8, 5, 9] {
            assert_eq!(
                apply(&[0x93, 0x05, index, 0x01], &mut out),
                Err(PatchError::BadColumn {
                    index: u64::from(index)
                })
            );
        }
        // Not increasing.
        assert_eq!(
            apply(&[0x95, 0x05, 0x03, 0x01, 0x03, 0x02], &mut out),
            Err(PatchError::BadColumn { index: 3 })
        );
        // A string for the u32 `hp`.
        assert!(matches!(
            apply(&[0x93, 0x05, 0x03, 0xa1, b'x'], &mut out),
            Err(PatchError::BadValue(RowError::WrongType { .. }))
        ));
        assert_eq!(
            apply(&[0x93, 0x05, 0x03, 0x01, 0x00], &mut out),
            Err(PatchError::TrailingBytes { count: 1 })
        );
        assert!(matches!(
            apply_patch(&cols, 0, &[0x91, 0x05], &[0x93, 0x05, 0x03, 0x01], &mut out),
            Err(PatchError::BadRow(_))
        ));
        apply(&[0x93, 0x05, 0x03, 0x0b], &mut out).unwrap();
        assert_eq!(out, row(5, Vec2::ZERO, "name", 11, None));
    }

    fn arb_row(id: u64) -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(0.0f32), Just(1.5), -1e6f32..1e6],
            "[a-z]{0,20}",
            prop_oneof![Just(0u64), Just(100), 0..u64::from(u32::MAX)],
            proptest::option::of("[a-z]{0,8}"),
        )
            .prop_map(move |(x, name, hp, title)| {
                row(id, Vec2::new(x, 2.0), &name, hp, title.as_deref())
            })
    }

    proptest! {
        /// The reference model: applying a made patch gives the new row; no patch is made that is not shorter.
        #[test]
        fn apply_of_make_is_the_new_row(old in arb_row(42), new in arb_row(42)) {
            let cols = def().columns;
            let mut patch = Vec::new();
            if make_patch(&cols, 0, &old, &new, &mut Scratch::default(), &mut patch) {
                prop_assert!(patch.len() < new.len());
                let mut back = Vec::new();
                apply_patch(&cols, 0, &old, &patch, &mut back).unwrap();
                prop_assert_eq!(back, new);
            } else {
                prop_assert!(patch.is_empty());
            }
        }

        /// A patch's shape tells its pairs, where they start (the first column's index, after the key) and
        /// exactly the columns that differ between the rows.
        #[test]
        fn the_shape_names_the_changed_columns(old in arb_row(42), new in arb_row(42)) {
            let cols = def().columns;
            let (mut patch, mut scratch) = (Vec::new(), Scratch::default());
            let shape = make_patch_shaped(&cols, 0, &old, &new, &mut scratch, &mut patch);
            let mut offsets = (Vec::new(), Vec::new());
            codec::validate_row(&cols, &old, &mut offsets.0).unwrap();
            codec::validate_row(&cols, &new, &mut offsets.1).unwrap();
            let at = |o: &[u32], i: usize| o[i] as usize..o[i + 1] as usize;
            let changed: Vec<usize> =
                (0..cols.len()).filter(|&i| old[at(&offsets.0, i)] != new[at(&offsets.1, i)]).collect();
            let Some(shape) = shape else {
                prop_assert!(patch.is_empty());
                return Ok(());
            };
            prop_assert_eq!(shape.pairs as usize, changed.len());
            for i in 0..cols.len() {
                prop_assert_eq!(shape.sets(i), changed.contains(&i), "column {}", i);
                prop_assert_eq!(shape.sets_only(i), changed == [i], "column {}", i);
            }
            let mut body = &patch[shape.body_at as usize..];
            let first: u64 = rmp::decode::read_int(&mut body).unwrap();
            prop_assert_eq!(first as usize, changed[0]);
        }

        /// Arbitrary bytes never panic and never yield an invalid row.
        #[test]
        fn garbage_patches_never_make_invalid_rows(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let cols = def().columns;
            let old = row(5, Vec2::ZERO, "name", 10, None);
            let mut out = Vec::new();
            let mut patch = vec![0x93, 0x05];
            patch.extend_from_slice(&bytes);
            for p in [&bytes, &patch] {
                if apply_patch(&cols, 0, &old, p, &mut out).is_ok() {
                    prop_assert!(codec::validate_row(&cols, &out, &mut Vec::new()).is_ok());
                }
            }
        }
    }
}

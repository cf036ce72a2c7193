//! Targets `row` (the row codec and `validate_row`) and `patch` (patch apply), over tables whose columns the input
//! chooses.
//!
//! Input of `row`: a table's columns ([`columns`]: a count, then one type per column, nesting `Option`s), then the
//! row. Of `patch`: the columns, the key column's index (a byte), the old and the new row as length-prefixed byte
//! strings ([`take_bytes`]), then the patch.
//!
//! `row` checks, for any bytes: [`validate_row`], [`decode_row`] and [`value_len`] agree on whether the bytes are a
//! row and where its columns are; a row that validates decodes to values that encode to a valid row decoding to
//! the same values.
//!
//! `patch` takes an old row, a new row and a patch. It checks that [`apply_patch`] of any bytes either refuses or
//! gives a valid row with the old row's key; and, for two valid rows with the same key, that [`make_patch`]'s
//! patch turns the old row into the new one.

use locus_types::codec::{decode_row, encode_row, validate_row, value_len};
use locus_types::patch::{Scratch, apply_patch, make_patch, patch_key};
use locus_types::{ColumnDef, ColumnType};

/// The types a column may have, `Option` aside.
const TYPES: &[ColumnType] = &[
    ColumnType::Bool,
    ColumnType::I8,
    ColumnType::I16,
    ColumnType::I32,
    ColumnType::I64,
    ColumnType::U8,
    ColumnType::U16,
    ColumnType::U32,
    ColumnType::U64,
    ColumnType::F32,
    ColumnType::F64,
    ColumnType::String,
    ColumnType::Bytes,
    ColumnType::Vec2,
    ColumnType::Identity,
    ColumnType::Timestamp,
    ColumnType::Opaque,
];

/// The code of `Option` in a column type's byte; any other byte `b` is `TYPES[b % OPTION]`.
const OPTION: u8 = TYPES.len() as u8;

fn column_type(data: &mut &[u8], depth: u32) -> Option<ColumnType> {
    let (&b, rest) = data.split_first()?;
    *data = rest;
    let b = b % (OPTION + 1);
    if b == OPTION && depth < 3 {
        return Some(ColumnType::Option(Box::new(column_type(data, depth + 1)?)));
    }
    Some(TYPES[usize::from(b % OPTION)].clone())
}

/// Read a table's columns: a byte `n` for `n % 8 + 1` columns, then one byte per column type (`Option` of the
/// type after it for [`OPTION`], at most three deep). `None` if the input ends first.
pub fn columns(data: &mut &[u8]) -> Option<Vec<ColumnDef>> {
    let (&n, rest) = data.split_first()?;
    *data = rest;
    (0..n % 8 + 1)
        .map(|i| Some(ColumnDef::new(format!("c{i}"), column_type(data, 0)?)))
        .collect()
}

/// Write columns of these types in the form [`columns`] reads.
///
/// # Panics
///
/// If there are not 1–8 types.
#[must_use]
pub fn encode_columns(types: &[ColumnType]) -> Vec<u8> {
    fn ty(t: &ColumnType, out: &mut Vec<u8>) {
        match t {
            ColumnType::Option(inner) => {
                out.push(OPTION);
                ty(inner, out);
            }
            t => out.push(TYPES.iter().position(|x| x == t).expect("a listed type") as u8),
        }
    }
    assert!((1..=8).contains(&types.len()));
    let mut out = vec![types.len() as u8 - 1];
    for t in types {
        ty(t, &mut out);
    }
    out
}

/// Read a byte string: a little-endian `u16` length, then that many bytes (fewer if the input ends first).
pub fn take_bytes<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let [l0, l1, rest @ ..] = *data else {
        return None;
    };
    let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
    let (bytes, rest) = rest.split_at(len);
    *data = rest;
    Some(bytes)
}

/// Write a byte string in the form [`take_bytes`] reads.
///
/// # Panics
///
/// If it is longer than 65,535 bytes.
pub fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(
        &u16::try_from(bytes.len())
            .expect("below 64 KiB")
            .to_le_bytes(),
    );
    out.extend_from_slice(bytes);
}

/// Target `row`.
pub fn row(data: &[u8]) {
    let mut data = data;
    let Some(columns) = columns(&mut data) else {
        return;
    };
    let bytes = data;
    let mut offsets = Vec::new();
    let valid = validate_row(&columns, bytes, &mut offsets);
    let decoded = decode_row(&columns, bytes);
    assert_eq!(
        valid.is_ok(),
        decoded.is_ok(),
        "validate_row and decode_row disagree: {valid:?} / {decoded:?}"
    );
    let Ok(values) = decoded else { return };
    assert_eq!(offsets.len(), columns.len() + 1);
    assert_eq!(*offsets.last().unwrap() as usize, bytes.len());
    for (i, column) in columns.iter().enumerate() {
        let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
        assert_eq!(
            value_len(column, &bytes[from..]).ok(),
            Some(to - from),
            "value_len disagrees with validate_row on column {i}"
        );
    }
    let encoded = encode_row(&columns, &values).expect("decoded values encode");
    validate_row(&columns, &encoded, &mut offsets).expect("re-encoded row validates");
    let again = decode_row(&columns, &encoded).expect("re-encoded row decodes");
    assert_eq!(
        again, values,
        "a row does not survive decode, encode, decode"
    );
}

/// Target `patch`.
pub fn patch(data: &[u8]) {
    let mut data = data;
    let Some(columns) = columns(&mut data) else {
        return;
    };
    let Some((&key, mut rest)) = data.split_first() else {
        return;
    };
    let key = usize::from(key) % columns.len();
    let (Some(old), Some(new)) = (take_bytes(&mut rest), take_bytes(&mut rest)) else {
        return;
    };
    let patch = rest;
    let mut offsets = Vec::new();
    let mut out = Vec::new();

    // Any bytes as a patch: refused, or a valid row with the old row's key.
    if apply_patch(&columns, key, old, patch, &mut out).is_ok() {
        validate_row(&columns, &out, &mut offsets).expect("a patch applied gives a valid row");
        let old_values = decode_row(&columns, old).expect("the patched row was valid");
        let new_values = decode_row(&columns, &out).expect("valid");
        assert_eq!(old_values[key], new_values[key], "a patch changed the key");
        assert!(
            patch_key(&columns, key, patch).is_ok(),
            "an applied patch has no key"
        );
    }

    // Two valid rows with one key: make_patch, then apply_patch, gives the new row.
    let (Ok(old_values), Ok(mut new_values)) =
        (decode_row(&columns, old), decode_row(&columns, new))
    else {
        return;
    };
    new_values[key] = old_values[key].clone();
    let (Ok(old), Ok(new)) = (
        encode_row(&columns, &old_values),
        encode_row(&columns, &new_values),
    ) else {
        return;
    };
    let mut made = Vec::new();
    if make_patch(
        &columns,
        key,
        &old,
        &new,
        &mut Scratch::default(),
        &mut made,
    ) {
        apply_patch(&columns, key, &old, &made, &mut out).expect("a made patch applies");
        assert_eq!(out, new, "a made patch does not give the new row");
    }
}

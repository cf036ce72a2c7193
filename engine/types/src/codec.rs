//! The row codec: how a row of a table is laid out in bytes.
//!
//! A row is **one MessagePack array with one element per column, in column order**. This is exactly what
//! `rmp_serde::to_vec` produces for a Rust struct whose fields are the columns, so module code serializes rows with
//! serde and the engine reads them without a schema-specific decoder. The same bytes are used at the module ABI, in
//! the commit log and on the wire: the engine never re-encodes a row.
//!
//! Per column type (see [`ColumnType`]):
//!
//! | type | encoding | accepted on decode |
//! |---|---|---|
//! | `Bool` | `true` / `false` | exactly those |
//! | `I8`…`I64`, `U8`…`U64` | the shortest MessagePack int (as `rmp` writes it) | any int marker whose value fits the type |
//! | `F32` / `F64` | `float 32` / `float 64` | exactly that marker |
//! | `String` | `str` | valid UTF-8 only |
//! | `Bytes` | `bin` | `bin` |
//! | `Vec2` | array of 2 `float 32` (x, y) — 11 bytes | exactly that |
//! | `Identity` | `bin` of 32 bytes | any `bin` marker, length exactly 32 |
//! | `Timestamp` | unsigned int (µs since the Unix epoch) | any non-negative int marker |
//! | `Opaque` | any one MessagePack value, nested at most [`MAX_DEPTH`] deep | well-formed values |
//! | `Option(T)` | `nil` or the encoding of `T` | either |
//!
//! Invariant: [`validate_row`] accepts a byte string if and only if [`decode_row`] does, and for any row it accepts,
//! `encode_row(decode_row(row))` decodes to the same values.

use rmp::Marker;
use thiserror::Error;

use crate::{ColumnDef, ColumnType, Identity, Timestamp, Value};

/// How deeply an `Opaque` value may nest arrays and maps.
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not a valid row of a table.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RowError {
    /// The row is not a MessagePack array.
    #[error("a row must be a MessagePack array")]
    NotAnArray,
    /// The array's length differs from the table's column count.
    #[error("the row has {found} columns, the table has {expected}")]
    WrongColumnCount {
        /// Columns in the table.
        expected: usize,
        /// Elements in the array.
        found: usize,
    },
    /// The bytes end inside a value.
    #[error("the row ends early, inside column `{column}`")]
    Truncated {
        /// The column being read.
        column: String,
    },
    /// A value has the wrong MessagePack type for its column.
    #[error("column `{column}` expects {expected:?}, found {found}")]
    WrongType {
        /// The column.
        column: String,
        /// Its type.
        expected: ColumnType,
        /// What was found, e.g. `"str"`.
        found: &'static str,
    },
    /// An integer does not fit the column's type.
    #[error("column `{column}`: {value} is out of range for {ty:?}")]
    OutOfRange {
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
        /// The value found.
        value: i128,
    },
    /// A string column holds bytes that are not UTF-8.
    #[error("column `{column}` holds invalid UTF-8")]
    InvalidUtf8 {
        /// The column.
        column: String,
    },
    /// An identity that is not 32 bytes long.
    #[error("column `{column}`: an identity is 32 bytes, found {len}")]
    BadIdentityLength {
        /// The column.
        column: String,
        /// The length found.
        len: usize,
    },
    /// An opaque value nests deeper than [`MAX_DEPTH`].
    #[error("column `{column}` nests deeper than {MAX_DEPTH}")]
    TooDeep {
        /// The column.
        column: String,
    },
    /// Bytes follow the row's array.
    #[error("{count} bytes follow the end of the row")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// Why values cannot be encoded as a row.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// Not one value per column.
    #[error("{found} values given for {expected} columns")]
    WrongColumnCount {
        /// Columns in the table.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A value's variant does not match its column's type, or is out of its range.
    #[error("column `{column}` of type {ty:?} cannot hold {value:?}")]
    TypeMismatch {
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
        /// The value given.
        value: Value,
    },
    /// An `Opaque` value's bytes are not exactly one well-formed MessagePack value.
    #[error("column `{column}`: opaque bytes are not one MessagePack value")]
    BadOpaque {
        /// The column.
        column: String,
    },
}

/// Check `row` against `columns` and record where each column's value starts.
///
/// On success `offsets` holds `columns.len() + 1` entries: column `i`'s bytes are `offsets[i]..offsets[i + 1]`,
/// and the last entry is `row.len()`. On error `offsets` is unspecified.
///
/// # Errors
///
/// A [`RowError`] naming the first column that is wrong.
pub fn validate_row(
    columns: &[ColumnDef],
    row: &[u8],
    offsets: &mut Vec<u32>,
) -> Result<(), RowError> {
    offsets.clear();
    let mut cur = Cursor { buf: row, pos: 0 };
    read_header(&mut cur, columns.len())?;
    for col in columns {
        offsets.push(cur.pos as u32);
        read_value(&mut cur, &col.ty, col, false)?;
    }
    offsets.push(cur.pos as u32);
    if cur.pos != row.len() {
        return Err(RowError::TrailingBytes {
            count: row.len() - cur.pos,
        });
    }
    Ok(())
}

/// Locate the first `count` columns of a row already known to be valid (e.g. committed), reading no further.
///
/// On success `offsets` holds `count + 1` entries: column `i < count` has bytes `offsets[i]..offsets[i + 1]`. The
/// columns read are checked as [`validate_row`] checks them; the rest of the row is not looked at, so this does not
/// tell a valid row from one that goes wrong after column `count - 1`.
///
/// # Errors
///
/// A [`RowError`] naming the first of those columns that is wrong.
pub fn locate_columns(
    columns: &[ColumnDef],
    row: &[u8],
    count: usize,
    offsets: &mut Vec<u32>,
) -> Result<(), RowError> {
    offsets.clear();
    let mut cur = Cursor { buf: row, pos: 0 };
    read_header(&mut cur, columns.len())?;
    for col in &columns[..count.min(columns.len())] {
        offsets.push(cur.pos as u32);
        read_value(&mut cur, &col.ty, col, false)?;
    }
    offsets.push(cur.pos as u32);
    Ok(())
}

/// Decode a whole row into one [`Value`] per column.
///
/// # Errors
///
/// As [`validate_row`].
pub fn decode_row(columns: &[ColumnDef], row: &[u8]) -> Result<Vec<Value>, RowError> {
    let mut cur = Cursor { buf: row, pos: 0 };
    read_header(&mut cur, columns.len())?;
    let mut values = Vec::with_capacity(columns.len());
    for col in columns {
        values.push(read_value(&mut cur, &col.ty, col, true)?.unwrap_or(Value::Null));
    }
    if cur.pos != row.len() {
        return Err(RowError::TrailingBytes {
            count: row.len() - cur.pos,
        });
    }
    Ok(values)
}

/// Decode one column's value from exactly its bytes (a range recorded by [`validate_row`]).
///
/// # Errors
///
/// A [`RowError`] if `bytes` is not exactly one value of `column`'s type.
pub fn decode_value(column: &ColumnDef, bytes: &[u8]) -> Result<Value, RowError> {
    let mut cur = Cursor { buf: bytes, pos: 0 };
    let v = read_value(&mut cur, &column.ty, column, true)?.unwrap_or(Value::Null);
    if cur.pos != bytes.len() {
        return Err(RowError::TrailingBytes {
            count: bytes.len() - cur.pos,
        });
    }
    Ok(v)
}

/// The length of the one value of `column`'s type at the start of `bytes` (which may go on past it), checked as
/// [`validate_row`] checks a column.
///
/// # Errors
///
/// A [`RowError`] if `bytes` does not start with a valid value of the column.
pub fn value_len(column: &ColumnDef, bytes: &[u8]) -> Result<usize, RowError> {
    let mut cur = Cursor { buf: bytes, pos: 0 };
    read_value(&mut cur, &column.ty, column, false)?;
    Ok(cur.pos)
}

/// Read the integer that is the first column of a row, without validating the rest of the row.
///
/// Returns `None` if `row` does not start with an array header followed by an integer.
#[must_use]
pub fn read_first_int(row: &[u8]) -> Option<i128> {
    let mut cur = Cursor { buf: row, pos: 0 };
    match Marker::from_u8(cur.byte()?) {
        Marker::FixArray(_) => {}
        Marker::Array16 => cur.pos += 2,
        Marker::Array32 => cur.pos += 4,
        _ => return None,
    }
    let marker = Marker::from_u8(cur.byte()?);
    read_int(&mut cur, marker).flatten()
}

/// Read a `Vec2` from exactly its 11 bytes, without checks beyond length and markers.
///
/// Returns `None` if the bytes are not `[fixarray(2), f32, f32]`.
#[must_use]
pub fn read_vec2(bytes: &[u8]) -> Option<glam::Vec2> {
    match bytes {
        [0x92, 0xca, x @ ..] if x.len() == 9 && x[4] == 0xca => Some(glam::Vec2::new(
            f32::from_be_bytes([x[0], x[1], x[2], x[3]]),
            f32::from_be_bytes([x[5], x[6], x[7], x[8]]),
        )),
        _ => None,
    }
}

/// Encode `values` as a row of `columns`.
///
/// # Errors
///
/// [`EncodeError`] if the count or a value's type is wrong.
pub fn encode_row(columns: &[ColumnDef], values: &[Value]) -> Result<Vec<u8>, EncodeError> {
    if columns.len() != values.len() {
        return Err(EncodeError::WrongColumnCount {
            expected: columns.len(),
            found: values.len(),
        });
    }
    let mut out = Vec::with_capacity(16 + 8 * columns.len());
    rmp::encode::write_array_len(&mut out, columns.len() as u32).expect("Vec write");
    for (col, v) in columns.iter().zip(values) {
        encode_value(col, v, &mut out)?;
    }
    Ok(out)
}

/// Append the encoding of `value` as a value of `column` to `out`.
///
/// # Errors
///
/// [`EncodeError::TypeMismatch`] if the value does not fit the column's type.
pub fn encode_value(
    column: &ColumnDef,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_typed(column, &column.ty, value, out)
}

fn encode_typed(
    column: &ColumnDef,
    ty: &ColumnType,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    use rmp::encode as e;
    let mismatch = || EncodeError::TypeMismatch {
        column: column.name.clone(),
        ty: ty.clone(),
        value: value.clone(),
    };
    match (ty, value) {
        (ColumnType::Option(_), Value::Null) => {
            e::write_nil(out).expect("Vec write");
        }
        (ColumnType::Option(inner), v) => return encode_typed(column, inner, v, out),
        (ColumnType::Bool, Value::Bool(b)) => {
            e::write_bool(out, *b).expect("Vec write");
        }
        (ColumnType::I8 | ColumnType::I16 | ColumnType::I32 | ColumnType::I64, Value::I64(v)) => {
            if !int_fits(ty, i128::from(*v)) {
                return Err(mismatch());
            }
            e::write_sint(out, *v).expect("Vec write");
        }
        (ColumnType::U8 | ColumnType::U16 | ColumnType::U32 | ColumnType::U64, Value::U64(v)) => {
            if !int_fits(ty, i128::from(*v)) {
                return Err(mismatch());
            }
            e::write_uint(out, *v).expect("Vec write");
        }
        (ColumnType::F32, Value::F32(v)) => {
            e::write_f32(out, *v).expect("Vec write");
        }
        (ColumnType::F64, Value::F64(v)) => {
            e::write_f64(out, *v).expect("Vec write");
        }
        (ColumnType::String, Value::String(s)) => {
            e::write_str(out, s).expect("Vec write");
        }
        (ColumnType::Bytes, Value::Bytes(b)) => {
            e::write_bin(out, b).expect("Vec write");
        }
        (ColumnType::Vec2, Value::Vec2(v)) => {
            e::write_array_len(out, 2).expect("Vec write");
            e::write_f32(out, v.x).expect("Vec write");
            e::write_f32(out, v.y).expect("Vec write");
        }
        (ColumnType::Identity, Value::Identity(id)) => {
            e::write_bin(out, &id.0).expect("Vec write");
        }
        (ColumnType::Timestamp, Value::Timestamp(t)) => {
            e::write_uint(out, t.0).expect("Vec write");
        }
        (ColumnType::Opaque, Value::Opaque(raw)) => {
            let mut cur = Cursor { buf: raw, pos: 0 };
            let ok = skip_any(&mut cur, 0, column).is_ok() && cur.pos == raw.len();
            if !ok {
                return Err(EncodeError::BadOpaque {
                    column: column.name.clone(),
                });
            }
            out.extend_from_slice(raw);
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

fn int_fits(ty: &ColumnType, v: i128) -> bool {
    ty.int_range().is_some_and(|r| r.contains(&v))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|s| s.try_into().expect("length checked"))
    }
}

fn read_header(cur: &mut Cursor<'_>, expected: usize) -> Result<(), RowError> {
    let marker = cur
        .byte()
        .map(Marker::from_u8)
        .ok_or(RowError::NotAnArray)?;
    let len = match marker {
        Marker::FixArray(n) => usize::from(n),
        Marker::Array16 => usize::from(u16::from_be_bytes(cur.be().ok_or(RowError::NotAnArray)?)),
        Marker::Array32 => u32::from_be_bytes(cur.be().ok_or(RowError::NotAnArray)?) as usize,
        _ => return Err(RowError::NotAnArray),
    };
    if len != expected {
        return Err(RowError::WrongColumnCount {
            expected,
            found: len,
        });
    }
    Ok(())
}

fn marker_name(m: Marker) -> &'static str {
    match m {
        Marker::Null => "nil",
        Marker::True | Marker::False => "bool",
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => "int",
        Marker::F32 => "float 32",
        Marker::F64 => "float 64",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "str",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "bin",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "map",
        Marker::Reserved => "reserved marker 0xc1",
        _ => "ext",
    }
}

/// Read one value of type `ty`. With `want`, build it; otherwise only check it (no allocation).
fn read_value(
    cur: &mut Cursor<'_>,
    ty: &ColumnType,
    col: &ColumnDef,
    want: bool,
) -> Result<Option<Value>, RowError> {
    let truncated = || RowError::Truncated {
        column: col.name.clone(),
    };
    let start = cur.pos;
    let marker = Marker::from_u8(cur.byte().ok_or_else(truncated)?);
    let wrong = |m: Marker| RowError::WrongType {
        column: col.name.clone(),
        expected: ty.clone(),
        found: marker_name(m),
    };
    let v = match ty {
        ColumnType::Option(inner) => {
            if marker == Marker::Null {
                return Ok(want.then_some(Value::Null));
            }
            cur.pos = start;
            return read_value(cur, inner, col, want);
        }
        ColumnType::Bool => match marker {
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            m => return Err(wrong(m)),
        },
        ColumnType::I8
        | ColumnType::I16
        | ColumnType::I32
        | ColumnType::I64
        | ColumnType::U8
        | ColumnType::U16
        | ColumnType::U32
        | ColumnType::U64
        | ColumnType::Timestamp => {
            let n = read_int(cur, marker)
                .ok_or_else(truncated)?
                .ok_or_else(|| wrong(marker))?;
            if !int_fits(ty, n) {
                return Err(RowError::OutOfRange {
                    column: col.name.clone(),
                    ty: ty.clone(),
                    value: n,
                });
            }
            match ty {
                ColumnType::Timestamp => Value::Timestamp(Timestamp(n as u64)),
                ColumnType::U8 | ColumnType::U16 | ColumnType::U32 | ColumnType::U64 => {
                    Value::U64(n as u64)
                }
                _ => Value::I64(n as i64),
            }
        }
        ColumnType::F32 => match marker {
            Marker::F32 => Value::F32(f32::from_be_bytes(cur.be().ok_or_else(truncated)?)),
            m => return Err(wrong(m)),
        },
        ColumnType::F64 => match marker {
            Marker::F64 => Value::F64(f64::from_be_bytes(cur.be().ok_or_else(truncated)?)),
            m => return Err(wrong(m)),
        },
        ColumnType::String => {
            let len = str_len(cur, marker)
                .ok_or_else(truncated)?
                .ok_or_else(|| wrong(marker))?;
            let bytes = cur.take(len).ok_or_else(truncated)?;
            let s = std::str::from_utf8(bytes).map_err(|_| RowError::InvalidUtf8 {
                column: col.name.clone(),
            })?;
            if !want {
                return Ok(None);
            }
            Value::String(s.into())
        }
        ColumnType::Bytes | ColumnType::Identity => {
            let len = bin_len(cur, marker)
                .ok_or_else(truncated)?
                .ok_or_else(|| wrong(marker))?;
            let bytes = cur.take(len).ok_or_else(truncated)?;
            if *ty == ColumnType::Identity {
                let id: [u8; 32] = bytes.try_into().map_err(|_| RowError::BadIdentityLength {
                    column: col.name.clone(),
                    len,
                })?;
                Value::Identity(Identity(id))
            } else {
                if !want {
                    return Ok(None);
                }
                Value::Bytes(bytes.into())
            }
        }
        ColumnType::Vec2 => {
            if marker != Marker::FixArray(2) {
                return Err(wrong(marker));
            }
            let mut xy = [0f32; 2];
            for c in &mut xy {
                let m = Marker::from_u8(cur.byte().ok_or_else(truncated)?);
                if m != Marker::F32 {
                    return Err(wrong(m));
                }
                *c = f32::from_be_bytes(cur.be().ok_or_else(truncated)?);
            }
            Value::Vec2(glam::Vec2::new(xy[0], xy[1]))
        }
        ColumnType::Opaque => {
            cur.pos = start;
            skip_any(cur, 0, col)?;
            if !want {
                return Ok(None);
            }
            Value::Opaque(cur.buf[start..cur.pos].into())
        }
    };
    Ok(want.then_some(v))
}

/// `None`: truncated. `Some(None)`: not an int marker.
fn read_int(cur: &mut Cursor<'_>, marker: Marker) -> Option<Option<i128>> {
    Some(Some(match marker {
        Marker::FixPos(n) => i128::from(n),
        Marker::FixNeg(n) => i128::from(n),
        Marker::U8 => i128::from(u8::from_be_bytes(cur.be()?)),
        Marker::U16 => i128::from(u16::from_be_bytes(cur.be()?)),
        Marker::U32 => i128::from(u32::from_be_bytes(cur.be()?)),
        Marker::U64 => i128::from(u64::from_be_bytes(cur.be()?)),
        Marker::I8 => i128::from(i8::from_be_bytes(cur.be()?)),
        Marker::I16 => i128::from(i16::from_be_bytes(cur.be()?)),
        Marker::I32 => i128::from(i32::from_be_bytes(cur.be()?)),
        Marker::I64 => i128::from(i64::from_be_bytes(cur.be()?)),
        _ => return Some(None),
    }))
}

fn str_len(cur: &mut Cursor<'_>, marker: Marker) -> Option<Option<usize>> {
    Some(Some(match marker {
        Marker::FixStr(n) => usize::from(n),
        Marker::Str8 => usize::from(cur.byte()?),
        Marker::Str16 => usize::from(u16::from_be_bytes(cur.be()?)),
        Marker::Str32 => u32::from_be_bytes(cur.be()?) as usize,
        _ => return Some(None),
    }))
}

fn bin_len(cur: &mut Cursor<'_>, marker: Marker) -> Option<Option<usize>> {
    Some(Some(match marker {
        Marker::Bin8 => usize::from(cur.byte()?),
        Marker::Bin16 => usize::from(u16::from_be_bytes(cur.be()?)),
        Marker::Bin32 => u32::from_be_bytes(cur.be()?) as usize,
        _ => return Some(None),
    }))
}

/// Skip one well-formed MessagePack value of any type.
fn skip_any(cur: &mut Cursor<'_>, depth: usize, col: &ColumnDef) -> Result<(), RowError> {
    let truncated = || RowError::Truncated {
        column: col.name.clone(),
    };
    if depth > MAX_DEPTH {
        return Err(RowError::TooDeep {
            column: col.name.clone(),
        });
    }
    let marker = Marker::from_u8(cur.byte().ok_or_else(truncated)?);
    let (skip, items): (usize, usize) = match marker {
        Marker::Null | Marker::True | Marker::False | Marker::FixPos(_) | Marker::FixNeg(_) => {
            (0, 0)
        }
        Marker::U8 | Marker::I8 => (1, 0),
        Marker::U16 | Marker::I16 => (2, 0),
        Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
        Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => (
            str_len(cur, marker)
                .ok_or_else(truncated)?
                .expect("str marker"),
            0,
        ),
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => (
            bin_len(cur, marker)
                .ok_or_else(truncated)?
                .expect("bin marker"),
            0,
        ),
        Marker::FixExt1 => (2, 0),
        Marker::FixExt2 => (3, 0),
        Marker::FixExt4 => (5, 0),
        Marker::FixExt8 => (9, 0),
        Marker::FixExt16 => (17, 0),
        Marker::Ext8 => (usize::from(cur.byte().ok_or_else(truncated)?) + 1, 0),
        Marker::Ext16 => (
            usize::from(u16::from_be_bytes(cur.be().ok_or_else(truncated)?)) + 1,
            0,
        ),
        Marker::Ext32 => (
            u32::from_be_bytes(cur.be().ok_or_else(truncated)?) as usize + 1,
            0,
        ),
        Marker::FixArray(n) => (0, usize::from(n)),
        Marker::Array16 => (
            0,
            usize::from(u16::from_be_bytes(cur.be().ok_or_else(truncated)?)),
        ),
        Marker::Array32 => (
            0,
            u32::from_be_bytes(cur.be().ok_or_else(truncated)?) as usize,
        ),
        Marker::FixMap(n) => (0, 2 * usize::from(n)),
        Marker::Map16 => (
            0,
            2 * usize::from(u16::from_be_bytes(cur.be().ok_or_else(truncated)?)),
        ),
        Marker::Map32 => (
            0,
            2 * u32::from_be_bytes(cur.be().ok_or_else(truncated)?) as usize,
        ),
        Marker::Reserved => {
            return Err(RowError::WrongType {
                column: col.name.clone(),
                expected: ColumnType::Opaque,
                found: marker_name(marker),
            });
        }
    };
    cur.take(skip).ok_or_else(truncated)?;
    for _ in 0..items {
        skip_any(cur, depth + 1, col)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use glam::Vec2;
    use serde::Serialize;

    use super::*;
    use crate::TableDef;

    #[derive(Serialize)]
    struct Player {
        id: u64,
        owner: Identity,
        pos: Vec2,
        hp: i32,
        name: String,
        title: Option<String>,
        inventory: Vec<(u32, u16)>,
    }

    fn player_def() -> TableDef {
        TableDef::builder("player")
            .column("id", ColumnType::U64)
            .column("owner", ColumnType::Identity)
            .column("pos", ColumnType::Vec2)
            .column("hp", ColumnType::I32)
            .column("name", ColumnType::String)
            .column("title", ColumnType::Option(Box::new(ColumnType::String)))
            .column("inventory", ColumnType::Opaque)
            .primary_key("id")
            .build()
            .unwrap()
    }

    fn sample() -> Player {
        Player {
            id: 300,
            owner: Identity([9; 32]),
            pos: Vec2::new(1.5, -2.25),
            hp: -7,
            name: "Ada".into(),
            title: None,
            inventory: vec![(1, 2), (3, 4)],
        }
    }

    #[test]
    fn rmp_serde_structs_are_rows() {
        let def = player_def();
        let bytes = rmp_serde::to_vec(&sample()).unwrap();
        let mut offsets = Vec::new();
        validate_row(&def.columns, &bytes, &mut offsets).unwrap();
        assert_eq!(offsets.len(), def.columns.len() + 1);
        let values = decode_row(&def.columns, &bytes).unwrap();
        assert_eq!(values[0], Value::U64(300));
        assert_eq!(values[1], Value::Identity(Identity([9; 32])));
        assert_eq!(values[2], Value::Vec2(Vec2::new(1.5, -2.25)));
        assert_eq!(values[3], Value::I64(-7));
        assert_eq!(values[4], Value::String("Ada".into()));
        assert_eq!(values[5], Value::Null);
        let pos = &bytes[offsets[2] as usize..offsets[3] as usize];
        assert_eq!(read_vec2(pos), Some(Vec2::new(1.5, -2.25)));
        // The first three columns, located without reading the rest: the same offsets.
        let mut prefix = Vec::new();
        locate_columns(&def.columns, &bytes, 3, &mut prefix).unwrap();
        assert_eq!(prefix, offsets[..4]);
        assert!(
            locate_columns(
                &def.columns,
                &bytes[..offsets[2] as usize + 3],
                3,
                &mut prefix
            )
            .is_err()
        );
        assert_eq!(decode_value(&def.columns[2], pos).unwrap(), values[2]);
        // Re-encoding the decoded values gives back the same bytes.
        assert_eq!(encode_row(&def.columns, &values).unwrap(), bytes);
    }

    #[test]
    fn wrong_rows_name_the_column() {
        let def = player_def();
        let mut offsets = Vec::new();
        let mut p = sample();
        p.name = String::new();
        let good = rmp_serde::to_vec(&p).unwrap();
        // Truncated anywhere inside: an error, never a panic.
        for cut in 0..good.len() {
            assert!(
                validate_row(&def.columns, &good[..cut], &mut offsets).is_err(),
                "cut {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            validate_row(&def.columns, &trailing, &mut offsets),
            Err(RowError::TrailingBytes { count: 1 })
        );
        let short = rmp_serde::to_vec(&(1u64, 2u64)).unwrap();
        assert_eq!(
            validate_row(&def.columns, &short, &mut offsets),
            Err(RowError::WrongColumnCount {
                expected: 7,
                found: 2
            })
        );
        let values = vec![
            Value::String("x".into()),
            Value::Identity(Identity::SERVER),
            Value::Vec2(Vec2::ZERO),
            Value::I64(0),
            Value::String("".into()),
            Value::Null,
            Value::Opaque(vec![0xc0].into()),
        ];
        assert!(matches!(
            encode_row(&def.columns, &values),
            Err(EncodeError::TypeMismatch { column, .. }) if column == "id"
        ));
        let mut bad = values.clone();
        bad[0] = Value::U64(1);
        let row = encode_row(&def.columns, &bad).unwrap();
        // Flip the hp int to a string marker.
        let mut wrong = row.clone();
        validate_row(&def.columns, &row, &mut offsets).unwrap();
        wrong[offsets[3] as usize] = 0xa0;
        assert!(matches!(
            validate_row(&def.columns, &wrong, &mut offsets),
            Err(RowError::WrongType { column, found: "str", .. }) if column == "hp"
        ));
    }

    #[test]
    fn ints_are_range_checked() {
        let def = TableDef::builder("t")
            .column("a", ColumnType::U8)
            .column("b", ColumnType::I8)
            .primary_key("a")
            .build()
            .unwrap();
        let mut offsets = Vec::new();
        let row = rmp_serde::to_vec(&(256u16, 0i8)).unwrap();
        assert!(matches!(
            validate_row(&def.columns, &row, &mut offsets),
            Err(RowError::OutOfRange { value: 256, .. })
        ));
        let row = rmp_serde::to_vec(&(1u8, -129i16)).unwrap();
        assert!(matches!(
            validate_row(&def.columns, &row, &mut offsets),
            Err(RowError::OutOfRange { value: -129, .. })
        ));
        let row = rmp_serde::to_vec(&(255u8, -128i16)).unwrap();
        validate_row(&def.columns, &row, &mut offsets).unwrap();
    }

    #[test]
    fn invalid_utf8_and_deep_opaque_are_rejected() {
        let def = player_def();
        let mut offsets = Vec::new();
        let mut row = rmp_serde::to_vec(&sample()).unwrap();
        validate_row(&def.columns, &row, &mut offsets).unwrap();
        let name_at = offsets[4] as usize + 1;
        row[name_at] = 0xff;
        assert!(matches!(
            validate_row(&def.columns, &row, &mut offsets),
            Err(RowError::InvalidUtf8 { .. })
        ));
        let mut deep = vec![0x91u8; MAX_DEPTH + 2];
        deep.push(0xc0);
        let col = &def.columns[6];
        assert!(matches!(
            decode_value(col, &deep),
            Err(RowError::TooDeep { .. })
        ));
    }
}

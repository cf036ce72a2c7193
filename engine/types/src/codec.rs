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
//!
//! What clients give — reducer arguments and subscription filter values — is read by [`normalize_args`] and
//! [`decode_arg`], which accept any number that converts for a float column (an int `1` for an `F32`, say) and
//! hand on the canonical encoding; rows stay as strict as the table says.

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
    /// A number given for a float column by a client (read by [`normalize_args`] or [`decode_arg`]) that does not
    /// convert to the column's type: an integer beyond ±2^24 for `F32` (±2^53 for `F64`), or a `float 64` that is
    /// not finite or whose rounding to `f32` is not.
    #[error("column `{column}` expects {expected:?}, found {found}, which does not convert to it")]
    NotConvertible {
        /// The column (or parameter).
        column: String,
        /// Its type.
        expected: ColumnType,
        /// The number found, with its MessagePack type, e.g. `"int 16777217"`.
        found: Box<str>,
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
    let mut cur = Cursor::new(row);
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
    let mut cur = Cursor::new(row);
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
    let mut cur = Cursor::new(row);
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
    let mut cur = Cursor::new(bytes);
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
    let mut cur = Cursor::new(bytes);
    read_value(&mut cur, &column.ty, column, false)?;
    Ok(cur.pos)
}

/// Check a client's reducer arguments against the reducer's `params` and return them in the one encoding.
///
/// Arguments are checked as a row of the parameters ([`validate_row`]), with one difference: clients in other
/// languages write numbers as their MessagePack encoder chooses (JavaScript encoders write a whole-number float as
/// an int, Python writes every float as `float 64`), so a **float parameter** — `F32`, `F64`, each component of a
/// `Vec2`, also inside `Option` — accepts any MessagePack number that converts to it:
///
/// | given | `F32` | `F64` |
/// |---|---|---|
/// | int `n` (any int marker) | if `\|n\| ≤ 2^24`, exactly | if `\|n\| ≤ 2^53`, exactly |
/// | `float 32` | as is | widened, exactly |
/// | `float 64` | rounded to the nearest `f32` (ties to even), if the value and the result are finite | as is |
///
/// Integers are accepted by range, not by exactness: `2^24 + 1` is refused for `F32` (it has no `f32`), and so is
/// `2^25` (which happens to have one). A `float 32` is taken as is (NaN and infinities included), but a `float 64`
/// NaN or infinity is refused for `F32`, as is a finite one beyond `f32::MAX` once rounded (e.g. `1e300`); tiny
/// values round to a subnormal or zero. A number that does not convert is refused with
/// [`RowError::NotConvertible`]; anything else (`bool`, `str`, `nil` for a non-option, …) with the error
/// [`validate_row`] gives.
///
/// A converted parameter is re-encoded as the engine writes it (`ca` / `cb` + big-endian bytes; a `Vec2` as
/// `92 ca x ca y`); every other byte is kept. So the result is borrowed when nothing was converted, is always
/// accepted by [`validate_row`], and is what the reducer is given. Rows (a module's output) stay strict:
/// [`validate_row`] accepts only the canonical float markers. `offsets` is scratch space.
///
/// # Errors
///
/// A [`RowError`] naming the first parameter that is wrong.
pub fn normalize_args<'a>(
    params: &[ColumnDef],
    args: &'a [u8],
    offsets: &mut Vec<u32>,
) -> Result<std::borrow::Cow<'a, [u8]>, RowError> {
    offsets.clear();
    let mut cur = Cursor::lenient(args);
    read_header(&mut cur, params.len())?;
    for param in params {
        offsets.push(cur.pos as u32);
        read_value(&mut cur, &param.ty, param, false)?;
    }
    offsets.push(cur.pos as u32);
    if cur.pos != args.len() {
        return Err(RowError::TrailingBytes {
            count: args.len() - cur.pos,
        });
    }
    if !cur.converted {
        return Ok(std::borrow::Cow::Borrowed(args));
    }
    let mut out = Vec::with_capacity(args.len() + 8 * params.len());
    out.extend_from_slice(&args[..offsets[0] as usize]);
    for (i, param) in params.iter().enumerate() {
        let bytes = &args[offsets[i] as usize..offsets[i + 1] as usize];
        if value_len(param, bytes).is_ok() {
            out.extend_from_slice(bytes);
        } else {
            let value = decode_arg(param, bytes).expect("checked above");
            encode_value(param, &value, &mut out).expect("a decoded value encodes");
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Decode one value of `column` given by a client (a subscription filter's value): as [`decode_value`], except
/// that float columns accept any number that converts, as [`normalize_args`] describes for parameters.
///
/// # Errors
///
/// A [`RowError`] if `bytes` is not exactly one such value.
pub fn decode_arg(column: &ColumnDef, bytes: &[u8]) -> Result<Value, RowError> {
    let mut cur = Cursor::lenient(bytes);
    let v = read_value(&mut cur, &column.ty, column, true)?.unwrap_or(Value::Null);
    if cur.pos != bytes.len() {
        return Err(RowError::TrailingBytes {
            count: bytes.len() - cur.pos,
        });
    }
    Ok(v)
}

/// Read the integer that is the first column of a row, without validating the rest of the row.
///
/// Returns `None` if `row` does not start with an array header followed by an integer.
#[must_use]
pub fn read_first_int(row: &[u8]) -> Option<i128> {
    let mut cur = Cursor::new(row);
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
            let mut cur = Cursor::new(raw);
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
    /// Float columns accept any number that converts ([`normalize_args`]); otherwise only their own marker.
    lenient: bool,
    /// A number was converted to a float column's type (only when `lenient`).
    converted: bool,
}

impl<'a> Cursor<'a> {
    /// A strict cursor (rows).
    fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor {
            buf,
            pos: 0,
            lenient: false,
            converted: false,
        }
    }

    /// A lenient cursor (arguments and filter values).
    fn lenient(buf: &'a [u8]) -> Cursor<'a> {
        Cursor {
            lenient: true,
            ..Cursor::new(buf)
        }
    }

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
        ColumnType::F32 => Value::F32(read_f32(cur, marker, ty, col)?),
        ColumnType::F64 => Value::F64(read_f64(cur, marker, ty, col)?),
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
                *c = read_f32(cur, m, ty, col)?;
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

/// A MessagePack number, as read for a float column from a client ([`normalize_args`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Int(i128),
    F32(f32),
    F64(f64),
}

/// The largest integer magnitude an `F32` argument accepts: every integer up to it is exact in an `f32`.
const F32_EXACT_INT: u128 = 1 << 24;
/// The largest integer magnitude an `F64` argument accepts: every integer up to it is exact in an `f64`.
const F64_EXACT_INT: u128 = 1 << 53;

impl Number {
    /// The value as an `F32` argument: an integer within ±2^24 exactly, a `float 64` rounded to the nearest `f32`
    /// (ties to even) if it is finite and so is the result; `None` if it does not convert.
    fn to_f32(self) -> Option<f32> {
        match self {
            Number::Int(n) => (n.unsigned_abs() <= F32_EXACT_INT).then_some(n as f32),
            Number::F32(v) => Some(v),
            // A non-finite input gives a non-finite result; so does a finite one beyond f32's range.
            Number::F64(v) => Some(v as f32).filter(|r| r.is_finite()),
        }
    }

    /// The value as an `F64` argument: an integer within ±2^53 exactly, a `float 32` widened (always exact);
    /// `None` if it does not convert.
    fn to_f64(self) -> Option<f64> {
        match self {
            Number::Int(n) => (n.unsigned_abs() <= F64_EXACT_INT).then_some(n as f64),
            Number::F32(v) => Some(f64::from(v)),
            Number::F64(v) => Some(v),
        }
    }

    fn refused(self, ty: &ColumnType, col: &ColumnDef) -> RowError {
        RowError::NotConvertible {
            column: col.name.clone(),
            expected: ty.clone(),
            found: match self {
                Number::Int(n) => format!("int {n}"),
                Number::F32(v) => format!("float 32 {v:?}"),
                Number::F64(v) => format!("float 64 {v:?}"),
            }
            .into(),
        }
    }
}

/// Read a number of another type than the float column `ty` expects (its `marker` read), for a lenient cursor;
/// a strict cursor, or a marker that is no number, gives the column's `WrongType` error.
fn read_other_number(
    cur: &mut Cursor<'_>,
    marker: Marker,
    ty: &ColumnType,
    col: &ColumnDef,
) -> Result<Number, RowError> {
    let truncated = || RowError::Truncated {
        column: col.name.clone(),
    };
    let wrong = || RowError::WrongType {
        column: col.name.clone(),
        expected: ty.clone(),
        found: marker_name(marker),
    };
    if !cur.lenient {
        return Err(wrong());
    }
    Ok(match marker {
        Marker::F32 => Number::F32(f32::from_be_bytes(cur.be().ok_or_else(truncated)?)),
        Marker::F64 => Number::F64(f64::from_be_bytes(cur.be().ok_or_else(truncated)?)),
        m => Number::Int(read_int(cur, m).ok_or_else(truncated)?.ok_or_else(wrong)?),
    })
}

/// Read an `f32` (of an `F32` column, or a component of a `Vec2` one: `ty`) whose `marker` was read.
fn read_f32(
    cur: &mut Cursor<'_>,
    marker: Marker,
    ty: &ColumnType,
    col: &ColumnDef,
) -> Result<f32, RowError> {
    if marker == Marker::F32 {
        return cur
            .be()
            .map(f32::from_be_bytes)
            .ok_or_else(|| RowError::Truncated {
                column: col.name.clone(),
            });
    }
    let n = read_other_number(cur, marker, ty, col)?;
    let v = n.to_f32().ok_or_else(|| n.refused(ty, col))?;
    cur.converted = true;
    Ok(v)
}

/// Read an `f64` of an `F64` column whose `marker` was read.
fn read_f64(
    cur: &mut Cursor<'_>,
    marker: Marker,
    ty: &ColumnType,
    col: &ColumnDef,
) -> Result<f64, RowError> {
    if marker == Marker::F64 {
        return cur
            .be()
            .map(f64::from_be_bytes)
            .ok_or_else(|| RowError::Truncated {
                column: col.name.clone(),
            });
    }
    let n = read_other_number(cur, marker, ty, col)?;
    let v = n.to_f64().ok_or_else(|| n.refused(ty, col))?;
    cur.converted = true;
    Ok(v)
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
    use proptest::prelude::*;
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

    fn params(types: &[ColumnType]) -> Vec<ColumnDef> {
        types
            .iter()
            .enumerate()
            .map(|(i, ty)| ColumnDef::new(format!("p{i}"), ty.clone()))
            .collect()
    }

    /// `args` normalised against `params`, as bytes.
    fn normalized(params: &[ColumnDef], args: &[u8]) -> Result<Vec<u8>, RowError> {
        normalize_args(params, args, &mut Vec::new()).map(std::borrow::Cow::into_owned)
    }

    /// The argument array `[value]`, `value` written by `write`.
    fn one(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = vec![0x91];
        write(&mut out);
        out
    }

    fn f32_arg(v: f32) -> Vec<u8> {
        one(|o| rmp::encode::write_f32(o, v).unwrap())
    }

    #[test]
    fn float_arguments_accept_numbers_that_convert() {
        use rmp::encode as e;
        let f32s = params(&[ColumnType::F32]);
        // Integers within ±2^24, in any int marker, become the float 32 the reducer is given.
        for (n, want) in [
            (1i64, 1.0f32),
            (-3, -3.0),
            (0, 0.0),
            (1 << 24, 16_777_216.0),
        ] {
            assert_eq!(
                normalized(&f32s, &one(|o| drop(e::write_sint(o, n)))),
                Ok(f32_arg(want))
            );
            assert_eq!(
                normalized(&f32s, &one(|o| e::write_i64(o, n).unwrap())),
                Ok(f32_arg(want))
            );
        }
        assert_eq!(
            normalized(&f32s, &one(|o| e::write_u64(o, 7).unwrap())),
            Ok(f32_arg(7.0))
        );
        assert_eq!(
            normalized(&f32s, &one(|o| drop(e::write_sint(o, -(1 << 24))))),
            Ok(f32_arg(-16_777_216.0))
        );
        // 2^24 + 1 has no f32; 2^25 has one but is out of the range.
        for n in [(1i64 << 24) + 1, -(1 << 24) - 1, 1 << 25, i64::MIN] {
            assert_eq!(
                normalized(&f32s, &one(|o| drop(e::write_sint(o, n)))),
                Err(RowError::NotConvertible {
                    column: "p0".into(),
                    expected: ColumnType::F32,
                    found: format!("int {n}").into(),
                })
            );
        }
        assert_eq!(
            normalized(&f32s, &one(|o| drop(e::write_uint(o, u64::MAX))))
                .unwrap_err()
                .to_string(),
            "column `p0` expects F32, found int 18446744073709551615, which does not convert to it"
        );
        // float 64 → f32, rounded to nearest when finite.
        assert_eq!(
            normalized(&f32s, &one(|o| e::write_f64(o, 1.5).unwrap())),
            Ok(f32_arg(1.5))
        );
        assert_eq!(
            normalized(&f32s, &one(|o| e::write_f64(o, 0.1).unwrap())),
            Ok(f32_arg(0.1f32))
        );
        assert_eq!(
            normalized(
                &f32s,
                &one(|o| e::write_f64(o, f64::from(f32::MAX)).unwrap())
            ),
            Ok(f32_arg(f32::MAX))
        );
        for v in [1e300, -1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            assert!(
                matches!(
                    normalized(&f32s, &one(|o| e::write_f64(o, v).unwrap())),
                    Err(RowError::NotConvertible {
                        expected: ColumnType::F32,
                        ..
                    })
                ),
                "{v}"
            );
        }
        assert_eq!(
            normalized(&f32s, &one(|o| e::write_f64(o, 1e300).unwrap()))
                .unwrap_err()
                .to_string(),
            "column `p0` expects F32, found float 64 1e300, which does not convert to it"
        );
        // F64: ints within ±2^53, float 32 widened.
        let f64s = params(&[ColumnType::F64]);
        let f64_arg = |v: f64| one(|o| e::write_f64(o, v).unwrap());
        assert_eq!(
            normalized(&f64s, &one(|o| drop(e::write_sint(o, 1 << 53)))),
            Ok(f64_arg(9_007_199_254_740_992.0))
        );
        assert!(matches!(
            normalized(&f64s, &one(|o| drop(e::write_sint(o, (1 << 53) + 1)))),
            Err(RowError::NotConvertible {
                expected: ColumnType::F64,
                ..
            })
        ));
        assert_eq!(
            normalized(&f64s, &f32_arg(0.1)),
            Ok(f64_arg(f64::from(0.1f32)))
        );
        assert_eq!(
            normalized(&f64s, &f32_arg(f32::NAN)).map(|b| b.len()),
            Ok(10)
        );
    }

    #[test]
    fn non_numbers_are_refused_for_floats_with_the_row_error() {
        let f32s = params(&[ColumnType::F32]);
        let mut offsets = Vec::new();
        for bad in [
            one(|o| o.push(0xc3)),
            one(|o| o.push(0xc0)),
            one(|o| o.extend([0xa1, b'x'])),
            one(|o| o.push(0x90)),
        ] {
            let strict = validate_row(&f32s, &bad, &mut offsets).unwrap_err();
            assert!(matches!(strict, RowError::WrongType { .. }), "{strict}");
            assert_eq!(normalized(&f32s, &bad), Err(strict));
        }
        assert_eq!(
            normalized(&f32s, &one(|o| o.push(0xc3)))
                .unwrap_err()
                .to_string(),
            "column `p0` expects F32, found bool"
        );
        // Truncated numbers are truncated, whatever their type.
        for cut in [
            one(|o| o.extend([0xcb, 0, 0])),
            one(|o| o.extend([0xcd, 1])),
        ] {
            assert_eq!(
                normalized(&f32s, &cut),
                Err(RowError::Truncated {
                    column: "p0".into()
                })
            );
        }
    }

    #[test]
    fn arguments_keep_their_bytes_unless_a_number_is_converted() {
        use rmp::encode as e;
        let ps = params(&[
            ColumnType::U64,
            ColumnType::Vec2,
            ColumnType::Option(Box::new(ColumnType::F32)),
            ColumnType::String,
        ]);
        // A canonical argument array is borrowed, unchanged (a u64 in 9 bytes included).
        let mut canonical = vec![0x94, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5];
        canonical.extend([
            0x92, 0xca, 0x3f, 0x80, 0, 0, 0xca, 0x40, 0x20, 0, 0, 0xc0, 0xa1, b'x',
        ]);
        assert!(matches!(
            normalize_args(&ps, &canonical, &mut Vec::new()),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
        // A JavaScript encoder's [5, [1, 2.5], 3, "x"]: the Vec2 and the option re-encoded, the rest kept.
        let mut js = vec![0x94, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5, 0x92, 0x01];
        e::write_f64(&mut js, 2.5).unwrap();
        js.extend([0x03, 0xa1, b'x']);
        let mut want = vec![0x94, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5];
        want.extend([
            0x92, 0xca, 0x3f, 0x80, 0, 0, 0xca, 0x40, 0x20, 0, 0, 0xca, 0x40, 0x40, 0, 0, 0xa1,
            b'x',
        ]);
        let out = normalized(&ps, &js).unwrap();
        assert_eq!(out, want);
        validate_row(&ps, &out, &mut Vec::new()).unwrap();
        // A Vec2 component that does not convert names the Vec2.
        let mut far = vec![0x94, 0x05, 0x92, 0x01];
        e::write_f64(&mut far, 1e300).unwrap();
        far.extend([0xc0, 0xa1, b'x']);
        assert!(matches!(
            normalized(&ps, &far),
            Err(RowError::NotConvertible {
                expected: ColumnType::Vec2,
                ..
            })
        ));
        // Rows stay strict: an int is no F32 in a row.
        assert!(matches!(
            validate_row(&params(&[ColumnType::F32]), &[0x91, 0x01], &mut Vec::new()),
            Err(RowError::WrongType { found: "int", .. })
        ));
        // Filter values decode the same way.
        let col = ColumnDef::new("speed", ColumnType::F32);
        assert_eq!(decode_arg(&col, &[0x02]), Ok(Value::F32(2.0)));
        assert!(decode_value(&col, &[0x02]).is_err());
        assert_eq!(
            decode_arg(&col, &[0x02, 0x03]),
            Err(RowError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn the_argument_examples_of_module_abi_hold() {
        let doc = include_str!("../../docs/module-abi.md");
        let hex = |b: &[u8]| {
            b.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let x = params(&[ColumnType::F32]);
        let given = [0x91, 0x01];
        let claim = format!(
            "(`{}`) reaches the reducer as `{}`",
            hex(&given),
            hex(&normalized(&x, &given).unwrap())
        );
        assert!(
            doc.contains(&claim),
            "module-abi.md §3.4 should say: {claim}"
        );
        let pos = params(&[ColumnType::Vec2]);
        let mut given = vec![0x91, 0x92, 0x01];
        rmp::encode::write_f64(&mut given, 2.5).unwrap();
        let claim = format!(
            "(`{}`) as `{}`",
            hex(&given),
            hex(&normalized(&pos, &given).unwrap())
        );
        assert!(
            doc.contains(&claim),
            "module-abi.md §3.4 should say: {claim}"
        );
        let unwrapped = doc.replace('\n', " ");
        for given in [vec![0x91, 0xc3], vec![0x91, 0xce, 0x01, 0, 0, 0x01]] {
            let e = normalized(&params(&[ColumnType::F32]), &given)
                .unwrap_err()
                .to_string()
                .replace("p0", "x");
            assert!(
                unwrapped.contains(&format!("``{e}``")),
                "module-abi.md §3.4 should quote: {e}"
            );
        }
    }

    /// A MessagePack number or other value a client might send, for the property test.
    #[derive(Clone, Debug)]
    enum Given {
        Int(i128),
        F32(f32),
        F64(f64),
        Other(Vec<u8>),
    }

    impl Given {
        fn encode(&self, wide: bool, out: &mut Vec<u8>) {
            use rmp::encode as e;
            match *self {
                // `wide`: the 9-byte form some encoders always use.
                Given::Int(n) if n < 0 => {
                    let n = n as i64;
                    if wide {
                        e::write_i64(out, n).unwrap()
                    } else {
                        drop(e::write_sint(out, n))
                    }
                }
                Given::Int(n) => {
                    let n = n as u64;
                    if wide {
                        e::write_u64(out, n).unwrap()
                    } else {
                        drop(e::write_uint(out, n))
                    }
                }
                Given::F32(v) => e::write_f32(out, v).unwrap(),
                Given::F64(v) => e::write_f64(out, v).unwrap(),
                Given::Other(ref b) => out.extend_from_slice(b),
            }
        }
    }

    /// The rule, written out independently: `Some(bits)` of the float the reducer gets, or `None` if refused.
    fn model(given: &Given, f64_target: bool) -> Option<u64> {
        // Rounding to f32 overflows from f32::MAX + half an ulp (2^103) on; the tie rounds to even, i.e. up.
        let f32_edge = f64::from(f32::MAX) + 2f64.powi(103);
        match (given, f64_target) {
            (&Given::Int(n), false) => (-16_777_216..=16_777_216)
                .contains(&n)
                .then(|| u64::from((n as f32).to_bits())),
            (&Given::Int(n), true) => (-(1i128 << 53)..=1 << 53)
                .contains(&n)
                .then(|| (n as f64).to_bits()),
            (&Given::F32(v), false) => Some(u64::from(v.to_bits())),
            (&Given::F32(v), true) => Some(f64::from(v).to_bits()),
            (&Given::F64(v), false) => {
                (!v.is_nan() && v.abs() < f32_edge).then(|| u64::from((v as f32).to_bits()))
            }
            (&Given::F64(v), true) => Some(v.to_bits()),
            (Given::Other(_), _) => None,
        }
    }

    fn given() -> impl Strategy<Value = Given> {
        let edge = f64::from(f32::MAX) + 2f64.powi(103);
        prop_oneof![
            (-(1i128 << 26)..(1i128 << 26)).prop_map(Given::Int),
            (-(1i128 << 55)..(1i128 << 55)).prop_map(Given::Int),
            any::<i64>().prop_map(|n| Given::Int(i128::from(n))),
            any::<u64>().prop_map(|n| Given::Int(i128::from(n))),
            any::<u32>().prop_map(|b| Given::F32(f32::from_bits(b))),
            any::<u64>().prop_map(|b| Given::F64(f64::from_bits(b))),
            (-1e6f64..1e6).prop_map(Given::F64),
            prop::sample::select(vec![
                edge,
                -edge,
                edge - 2f64.powi(75),
                f64::from(f32::MAX),
                f64::MAX,
                f64::MIN_POSITIVE,
                1e-50,
                f64::INFINITY,
                f64::NAN,
                -0.0,
            ])
            .prop_map(Given::F64),
            prop::sample::select(vec![
                vec![0xc2],
                vec![0xc3],
                vec![0xc0],
                vec![0xa1, b'1'],
                vec![0xc4, 0],
                vec![0x90]
            ])
            .prop_map(Given::Other),
        ]
    }

    proptest::proptest! {
        #[test]
        fn float_arguments_follow_the_rule(given in given(), wide: bool, f64_target: bool) {
            let ty = if f64_target { ColumnType::F64 } else { ColumnType::F32 };
            let ps = params(std::slice::from_ref(&ty));
            let args = one(|o| given.encode(wide, o));
            let got = normalized(&ps, &args);
            match model(&given, f64_target) {
                Some(bits) => {
                    let mut want = vec![0x91];
                    if f64_target {
                        rmp::encode::write_f64(&mut want, f64::from_bits(bits)).unwrap();
                    } else {
                        rmp::encode::write_f32(&mut want, f32::from_bits(bits as u32)).unwrap();
                    }
                    proptest::prop_assert_eq!(got, Ok(want.clone()));
                    proptest::prop_assert!(validate_row(&ps, &want, &mut Vec::new()).is_ok());
                }
                None => {
                    let e = got.unwrap_err();
                    match given {
                        Given::Other(_) => proptest::prop_assert_eq!(
                            Err(e),
                            validate_row(&ps, &args, &mut Vec::new())
                        ),
                        _ => proptest::prop_assert!(
                            matches!(e, RowError::NotConvertible { ref expected, .. } if *expected == ty),
                            "{}", e
                        ),
                    }
                }
            }
        }
    }

    /// Bytes from hex digits separated by spaces.
    fn unhex(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Bytes as hex, in full.
    fn hex_bytes(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Bytes as protocol.md shows them: hex, or for more than 16 bytes the first 4 and `…`.
    fn shown(bytes: &[u8]) -> String {
        if bytes.len() > 16 {
            format!("{} …", hex_bytes(&bytes[..4]))
        } else {
            hex_bytes(bytes)
        }
    }

    /// The column encoding examples of `engine/docs/protocol.md` §2, each checked against the codec: the written
    /// form is what `encode_value` writes; "also" forms decode to the same value; "refused" forms do not decode.
    /// Rows are read as `decode_value` reads a row's column, arguments as `decode_arg` reads a client's value.
    #[test]
    fn the_column_encodings_of_the_protocol_doc() {
        use crate::codec::{decode_arg, decode_value, encode_row, encode_value};
        use crate::{ColumnDef, ColumnType, Value};
        let doc = include_str!("../../docs/protocol.md");
        // The example's lines: the one starting with `label`, and the indented ones after it.
        let block = |label: &str| -> String {
            let mut lines = doc.lines().skip_while(|l| !l.starts_with(label));
            let first = lines
                .next()
                .unwrap_or_else(|| panic!("protocol.md has no example `{label}`"));
            let rest = lines.take_while(|l| l.starts_with(' '));
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join("\n")
        };
        /// One example: its label, the column type and value, the written bytes, bytes also accepted, bytes refused,
        /// and whether it is read as a client's value (else as a row's).
        struct Example {
            label: &'static str,
            ty: ColumnType,
            value: Value,
            written: Vec<u8>,
            also: Vec<Vec<u8>>,
            refused: Vec<Vec<u8>>,
            argument: bool,
        }
        let ex = |label, ty, value, written: &str, also: &[&str], refused: &[&str]| Example {
            label,
            ty,
            value,
            written: unhex(written),
            also: also.iter().map(|h| unhex(h)).collect(),
            refused: refused.iter().map(|h| unhex(h)).collect(),
            argument: false,
        };
        let opt_u8 = || ColumnType::Option(Box::new(ColumnType::U8));
        let id = |prefix: &str, n: usize| [unhex(prefix), vec![9; n]].concat();
        let examples = [
            ex(
                "Bool true:",
                ColumnType::Bool,
                Value::Bool(true),
                "c3",
                &[],
                &["01", "c0"],
            ),
            ex(
                "U8 5:",
                ColumnType::U8,
                Value::U64(5),
                "05",
                &["cc 05", "d0 05", "cf 00 00 00 00 00 00 00 05"],
                &["d0 ff", "cd 01 00"],
            ),
            ex(
                "U64 300:",
                ColumnType::U64,
                Value::U64(300),
                "cd 01 2c",
                &["cf 00 00 00 00 00 00 01 2c"],
                &[],
            ),
            ex(
                "I32 -7:",
                ColumnType::I32,
                Value::I64(-7),
                "f9",
                &["d0 f9", "d2 ff ff ff f9"],
                &["ce 80 00 00 00"],
            ),
            ex(
                "I32 200:",
                ColumnType::I32,
                Value::I64(200),
                "cc c8",
                &["d1 00 c8"],
                &[],
            ),
            ex(
                "I64 -200:",
                ColumnType::I64,
                Value::I64(-200),
                "d1 ff 38",
                &[],
                &[],
            ),
            ex(
                "F32 1.5:",
                ColumnType::F32,
                Value::F32(1.5),
                "ca 3f c0 00 00",
                &[],
                &["cb 3f f8 00 00 00 00 00 00", "01"],
            ),
            Example {
                argument: true,
                ..ex(
                    "F32 argument 2.0:",
                    ColumnType::F32,
                    Value::F32(2.0),
                    "ca 40 00 00 00",
                    &["02", "cb 40 00 00 00 00 00 00 00"],
                    &["ce 01 00 00 01", "c3"],
                )
            },
            ex(
                "F64 0.25:",
                ColumnType::F64,
                Value::F64(0.25),
                "cb 3f d0 00 00 00 00 00 00",
                &[],
                &["ca 3e 80 00 00"],
            ),
            ex(
                "String \"Ada\":",
                ColumnType::String,
                Value::String("Ada".into()),
                "a3 41 64 61",
                &["d9 03 41 64 61"],
                &["c4 03 41 64 61", "a2 ff fe"],
            ),
            ex(
                "Bytes 010203:",
                ColumnType::Bytes,
                Value::Bytes(vec![1, 2, 3].into()),
                "c4 03 01 02 03",
                &["c5 00 03 01 02 03"],
                &["a3 01 02 03"],
            ),
            ex(
                "Vec2 (1.5, -2.0):",
                ColumnType::Vec2,
                Value::Vec2(glam::Vec2::new(1.5, -2.0)),
                "92 ca 3f c0 00 00 ca c0 00 00 00",
                &[],
                &["dc 00 02 ca 3f c0 00 00 ca c0 00 00 00"],
            ),
            Example {
                written: id("c4 20", 32),
                also: vec![id("c5 00 20", 32)],
                refused: vec![id("c4 1f", 31)],
                ..ex(
                    "Identity 09 (x32):",
                    ColumnType::Identity,
                    Value::Identity(Identity([9; 32])),
                    "",
                    &[],
                    &[],
                )
            },
            ex(
                "Timestamp 1700000000000000:",
                ColumnType::Timestamp,
                Value::Timestamp(crate::Timestamp(1_700_000_000_000_000)),
                "cf 00 06 0a 24 18 1e 40 00",
                &["d3 00 06 0a 24 18 1e 40 00"],
                &["ff"],
            ),
            ex("Option(U8) nil:", opt_u8(), Value::Null, "c0", &[], &[]),
            ex(
                "Option(U8) 5:",
                opt_u8(),
                Value::U64(5),
                "05",
                &["cc 05"],
                &[],
            ),
            ex(
                "Opaque [1, \"x\"]:",
                ColumnType::Opaque,
                Value::Opaque(unhex("92 01 a1 78").into()),
                "92 01 a1 78",
                &[],
                &["c1"],
            ),
        ];
        for Example {
            label,
            ty,
            value,
            written,
            also,
            refused,
            argument,
        } in examples
        {
            let text = block(label);
            let column = ColumnDef::new("c", ty);
            let decode = |bytes: &[u8]| {
                if argument {
                    decode_arg(&column, bytes)
                } else {
                    decode_value(&column, bytes)
                }
            };
            let mut out = Vec::new();
            encode_value(&column, &value, &mut out).unwrap();
            assert_eq!(out, written, "{label} writes other bytes");
            for bytes in std::iter::once(&written).chain(&also) {
                assert!(
                    text.contains(&shown(bytes)),
                    "`{label}` lacks {}",
                    shown(bytes)
                );
                assert_eq!(
                    decode(bytes).as_ref(),
                    Ok(&value),
                    "{label} {}",
                    shown(bytes)
                );
            }
            for bytes in &refused {
                assert!(
                    text.contains(&shown(bytes)),
                    "`{label}` lacks {}",
                    shown(bytes)
                );
                assert!(
                    decode(bytes).is_err(),
                    "{label}: {} is accepted",
                    shown(bytes)
                );
            }
        }
        let columns = [
            ColumnDef::new("id", ColumnType::U64),
            ColumnDef::new("name", ColumnType::String),
            ColumnDef::new("pos", ColumnType::Vec2),
        ];
        let row = encode_row(
            &columns,
            &[
                Value::U64(300),
                Value::String("Ada".into()),
                Value::Vec2(glam::Vec2::new(1.5, -2.0)),
            ],
        )
        .unwrap();
        assert!(block("row [300, \"Ada\", (1.5, -2.0)]").contains(&hex_bytes(&row)));
    }
}

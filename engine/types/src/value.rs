//! [`Value`]: one decoded column value, with a total order.
//!
//! Values are what index keys, lookups and range bounds are made of. The order is total and consistent with
//! equality and hashing, floats included: floats compare by [`f32::total_cmp`] / [`f64::total_cmp`], so `-0.0`
//! and `0.0` are different keys and every `NaN` bit pattern is a key of its own. Values of different variants
//! order by variant (the declaration order below); within one index all keys share a column type, so this only
//! matters for `Null` in option columns, which sorts first.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use glam::Vec2;

use crate::{Identity, Timestamp};

/// One column value, decoded.
///
/// Integer columns decode to [`Value::I64`] (signed types) or [`Value::U64`] (unsigned types) whatever their width.
#[derive(Clone, Debug)]
pub enum Value {
    /// `nil`: the empty value of an option column.
    Null,
    /// A `Bool` column.
    Bool(bool),
    /// An `I8` … `I64` column.
    I64(i64),
    /// A `U8` … `U64` column.
    U64(u64),
    /// An `F32` column.
    F32(f32),
    /// An `F64` column.
    F64(f64),
    /// A `String` column.
    String(Box<str>),
    /// A `Bytes` column.
    Bytes(Box<[u8]>),
    /// A `Vec2` column.
    Vec2(Vec2),
    /// An `Identity` column.
    Identity(Identity),
    /// A `Timestamp` column.
    Timestamp(Timestamp),
    /// An `Opaque` column: the value's raw MessagePack bytes.
    Opaque(Box<[u8]>),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::I64(_) => 2,
            Value::U64(_) => 3,
            Value::F32(_) => 4,
            Value::F64(_) => 5,
            Value::String(_) => 6,
            Value::Bytes(_) => 7,
            Value::Vec2(_) => 8,
            Value::Identity(_) => 9,
            Value::Timestamp(_) => 10,
            Value::Opaque(_) => 11,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::I64(a), Value::I64(b)) => a.cmp(b),
            (Value::U64(a), Value::U64(b)) => a.cmp(b),
            (Value::F32(a), Value::F32(b)) => a.total_cmp(b),
            (Value::F64(a), Value::F64(b)) => a.total_cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) | (Value::Opaque(a), Value::Opaque(b)) => a.cmp(b),
            (Value::Vec2(a), Value::Vec2(b)) => a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)),
            (Value::Identity(a), Value::Identity(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Value::Null => {}
            Value::Bool(v) => v.hash(state),
            Value::I64(v) => v.hash(state),
            Value::U64(v) => v.hash(state),
            Value::F32(v) => v.to_bits().hash(state),
            Value::F64(v) => v.to_bits().hash(state),
            Value::String(v) => v.hash(state),
            Value::Bytes(v) | Value::Opaque(v) => v.hash(state),
            Value::Vec2(v) => {
                v.x.to_bits().hash(state);
                v.y.to_bits().hash(state);
            }
            Value::Identity(v) => v.hash(state),
            Value::Timestamp(v) => v.hash(state),
        }
    }
}

macro_rules! from_impl {
    ($($t:ty => $variant:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant((v $(as $cast)?).into())
            }
        }
    )*};
}

from_impl!(
    bool => Bool, i8 => I64 as i64, i16 => I64 as i64, i32 => I64 as i64, i64 => I64,
    u8 => U64 as u64, u16 => U64 as u64, u32 => U64 as u64, u64 => U64,
    f32 => F32, f64 => F64, &str => String, String => String, Vec2 => Vec2,
    Identity => Identity, Timestamp => Timestamp,
);

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.into())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v.into())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_order_totally() {
        assert!(Value::F32(-0.0) < Value::F32(0.0));
        assert_ne!(Value::F32(-0.0), Value::F32(0.0));
        assert_eq!(Value::F64(f64::NAN), Value::F64(f64::NAN));
        assert!(Value::F64(1.0) < Value::F64(f64::NAN));
    }

    #[test]
    fn null_sorts_first() {
        assert!(Value::Null < Value::I64(i64::MIN));
        assert!(Value::Null < Value::String("".into()));
        assert_eq!(Value::from(None::<u32>), Value::Null);
        assert_eq!(Value::from(Some(3u8)), Value::U64(3));
    }
}

//! Identifier newtypes shared by every Locus crate.
//!
//! Each id is a plain number (or byte array) wrapped in its own type so that a table id can never be passed where
//! a column id is expected. All of them are `Copy`, ordered and hashable, and serialize as their inner value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Index of a table in a module's schema (the position of its [`TableDef`](crate::TableDef)).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TableId(pub u32);

/// Index of a column within its table (the position of its [`ColumnDef`](crate::ColumnDef)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ColumnId(pub u16);

impl ColumnId {
    /// The column's position as a `usize`, for indexing slices of columns.
    #[must_use]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A server tick number. Tick 0 is the first tick a world ever ran; ticks only go up.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Tick(pub u64);

impl Tick {
    /// The tick after this one.
    #[must_use]
    pub fn next(self) -> Tick {
        Tick(self.0 + 1)
    }
}

/// A point in time: microseconds since the Unix epoch (UTC).
///
/// Encoded in rows as a MessagePack unsigned integer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Microseconds since the Unix epoch.
    #[must_use]
    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// This timestamp plus `micros` microseconds, saturating at the end of time.
    #[must_use]
    pub fn add_micros(self, micros: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(micros))
    }
}

/// Who a client is: 32 bytes, stable across reconnects (derived by the server from the client's secret token).
///
/// Encoded in rows (and by serde) as a MessagePack `bin` of exactly 32 bytes. Displayed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Identity(pub [u8; 32]);

impl Identity {
    /// The all-zero identity, used for the server itself (e.g. the sender of `init` and `tick` reducers).
    pub const SERVER: Identity = Identity([0; 32]);

    /// The identity's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl Serialize for Identity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Identity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Identity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Identity, E> {
                let bytes: [u8; 32] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Identity(bytes))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Identity, A::Error> {
                let mut bytes = [0u8; 32];
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(33, &self));
                }
                Ok(Identity(bytes))
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_as_msgpack_bin() {
        let id = Identity([7; 32]);
        let bytes = rmp_serde::to_vec(&id).unwrap();
        assert_eq!(bytes[0], 0xc4, "bin8 marker");
        assert_eq!(bytes[1], 32);
        assert_eq!(bytes.len(), 34);
        let back: Identity = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string().len(), 64);
    }

    #[test]
    fn identity_rejects_wrong_length() {
        let bytes = rmp_serde::to_vec(&serde_bytes_like(&[1u8; 31])).unwrap();
        assert!(rmp_serde::from_slice::<Identity>(&bytes).is_err());
    }

    fn serde_bytes_like(b: &[u8]) -> impl Serialize + '_ {
        struct B<'a>(&'a [u8]);
        impl Serialize for B<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        B(b)
    }
}

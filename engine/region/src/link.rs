//! Border traffic between two regions: the messages, their numbering, and how a receiver notices a lost one.
//!
//! Each region sends each neighbour the changes to its copy ([`crate::BorderFeed::poll_tick`]) as
//! [`BorderMessage`]s over a transport that may lose messages (NATS core publish: at most once) but keeps their order
//! between two processes. Every message carries the sender's **epoch** (a number drawn when its process starts) and
//! a **sequence** number per receiver, one more than the last message to that receiver. A receiver applies a delta
//! only when it follows the last message it applied from that sender (same epoch, next number); anything else —
//! a gap, a sender that restarted, a receiver that just started — makes it drop the delta and ask for the whole
//! copy ([`Receiver::handle`] returns [`Handled::Resync`]; the shell sends a resync request, and the sender answers
//! with a [`Payload::Whole`] message, [`crate::BorderFeed::snapshot_for`]). A whole copy is always applied and
//! starts a new run of numbers.
//!
//! Both sides run the same module: the messages name tables by id, so each carries a fingerprint of the schema
//! ([`schema_fingerprint`]) and a receiver ignores messages from a region running another schema (during a rolling
//! upgrade, until both run the new module).
//!
//! # Invariants
//!
//! 1. A [`Sender`] numbers its messages to each receiver 1, 2, 3, … within one epoch.
//! 2. A [`Receiver`] hands out a delta for applying only if it is the next message, in the same epoch, after a
//!    message it handed out (a whole copy or a delta); so the deltas applied since the last whole copy are exactly
//!    the sender's deltas since it, in order, and the copy equals the sender's view of it.

use serde::{Deserialize, Serialize};

use crate::border::BorderDelta;
use crate::layout::RegionId;
use locus_types::{TableDef, TableId};

/// One message of border traffic, from one region to one neighbour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BorderMessage {
    /// The sender's region (its index in the layout).
    pub from: u16,
    /// The sender's epoch: drawn when its process started.
    pub epoch: u64,
    /// The number of this message among the sender's messages to this receiver in this epoch (from 1).
    pub seq: u64,
    /// The fingerprint of the sender's schema ([`schema_fingerprint`]).
    pub schema: u64,
    /// The sender's clock when it made the message, in microseconds since the Unix epoch (for measuring the
    /// border's latency; nothing depends on it).
    pub sent_us: u64,
    /// What it carries.
    pub payload: Payload,
}

/// What a [`BorderMessage`] carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// Changes to the copy: rows (by table id) to insert or replace, and keys to drop.
    Delta {
        /// Rows to insert or replace.
        #[serde(with = "rows")]
        upserts: Vec<(TableId, Box<[u8]>)>,
        /// Encoded primary keys to drop.
        #[serde(with = "rows")]
        deletes: Vec<(TableId, Box<[u8]>)>,
    },
    /// The whole copy: every row the receiver should hold from the sender.
    Whole {
        /// The rows.
        #[serde(with = "rows")]
        rows: Vec<(TableId, Box<[u8]>)>,
    },
}

/// Rows by table id, each with its bytes (or an encoded key).
pub type Rows = Vec<(TableId, Box<[u8]>)>;

/// Rows as `[table, bytes]` pairs with the bytes as MessagePack binary.
mod rows {
    use locus_types::TableId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[allow(clippy::ptr_arg)] // serde's `with` passes the field as it is.
    pub(super) fn serialize<S: Serializer>(
        rows: &Vec<(TableId, Box<[u8]>)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<(u32, &serde_bytes::Bytes)> = rows
            .iter()
            .map(|(t, r)| (t.0, serde_bytes::Bytes::new(r)))
            .collect();
        v.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Rows, D::Error> {
        let v: Vec<(u32, serde_bytes::ByteBuf)> = Vec::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(t, r)| (TableId(t), r.into_vec().into_boxed_slice()))
            .collect())
    }
}

impl BorderMessage {
    /// The MessagePack bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a border message serializes")
    }

    /// Decode MessagePack bytes.
    ///
    /// # Errors
    ///
    /// The decoder's error, for bytes that are not a border message.
    pub fn decode(bytes: &[u8]) -> Result<BorderMessage, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// A fingerprint of a schema (its table definitions, in id order): equal for equal schemas, in every process.
#[must_use]
pub fn schema_fingerprint(tables: &[TableDef]) -> u64 {
    let bytes = rmp_serde::to_vec(tables).expect("table definitions serialize");
    // FNV-1a: stable across processes and builds (unlike std's hashers).
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The sending side of one region's border traffic: numbers its messages per receiver.
#[derive(Debug)]
pub struct Sender {
    own: RegionId,
    epoch: u64,
    schema: u64,
    next: std::collections::HashMap<RegionId, u64>,
}

impl Sender {
    /// The sender of region `own`, in process epoch `epoch` (draw it at random when the process starts), running
    /// a schema of fingerprint `schema`.
    #[must_use]
    pub fn new(own: RegionId, epoch: u64, schema: u64) -> Sender {
        Sender {
            own,
            epoch,
            schema,
            next: std::collections::HashMap::new(),
        }
    }

    /// A new schema (after a publish): messages carry its fingerprint from now on.
    pub fn set_schema(&mut self, schema: u64) {
        self.schema = schema;
    }

    /// The next message to `to`, carrying `payload`, made at `sent_us`.
    pub fn message(&mut self, to: RegionId, payload: Payload, sent_us: u64) -> BorderMessage {
        let seq = self.next.entry(to).or_insert(1);
        let message = BorderMessage {
            from: self.own.0,
            epoch: self.epoch,
            seq: *seq,
            schema: self.schema,
            sent_us,
            payload,
        };
        *seq += 1;
        message
    }

    /// A delta as a message to `to`.
    pub fn delta(&mut self, to: RegionId, delta: BorderDelta, sent_us: u64) -> BorderMessage {
        self.message(
            to,
            Payload::Delta {
                upserts: delta.upserts,
                deletes: delta.deletes,
            },
            sent_us,
        )
    }
}

/// What a [`Receiver`] made of a message.
#[derive(Debug, PartialEq)]
pub enum Handled {
    /// Apply this delta to the sender's copy.
    Delta(BorderDelta),
    /// Replace the sender's copy with these rows.
    Whole(Vec<(TableId, Box<[u8]>)>),
    /// The message was dropped: ask the sender for its whole copy (unless asked recently).
    Resync,
    /// The message was dropped: its sender runs another schema.
    OtherSchema,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    epoch: u64,
    seq: u64,
}

/// The receiving side of one region's border traffic: which messages follow on from what was applied.
#[derive(Debug)]
pub struct Receiver {
    schema: u64,
    last: std::collections::HashMap<u16, Last>,
}

impl Receiver {
    /// A receiver for a region running a schema of fingerprint `schema`, having applied nothing yet.
    #[must_use]
    pub fn new(schema: u64) -> Receiver {
        Receiver {
            schema,
            last: std::collections::HashMap::new(),
        }
    }

    /// A new schema (after a publish).
    pub fn set_schema(&mut self, schema: u64) {
        self.schema = schema;
    }

    /// Take one message (in the order the transport delivered them): see the [module docs](self).
    pub fn handle(&mut self, message: BorderMessage) -> Handled {
        if message.schema != self.schema {
            self.last.remove(&message.from);
            return Handled::OtherSchema;
        }
        let follows = self
            .last
            .get(&message.from)
            .is_some_and(|l| l.epoch == message.epoch && l.seq + 1 == message.seq);
        match message.payload {
            Payload::Whole { rows } => {
                self.last.insert(
                    message.from,
                    Last {
                        epoch: message.epoch,
                        seq: message.seq,
                    },
                );
                Handled::Whole(rows)
            }
            Payload::Delta { upserts, deletes } if follows => {
                self.last.insert(
                    message.from,
                    Last {
                        epoch: message.epoch,
                        seq: message.seq,
                    },
                );
                Handled::Delta(BorderDelta { upserts, deletes })
            }
            Payload::Delta { .. } => {
                self.last.remove(&message.from);
                Handled::Resync
            }
        }
    }

    /// Whether the copy from `from` is in step (a whole copy was applied and no message since was dropped).
    #[must_use]
    pub fn in_step(&self, from: RegionId) -> bool {
        self.last.contains_key(&from.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(n: u8) -> BorderDelta {
        BorderDelta {
            upserts: vec![(TableId(1), vec![n].into())],
            deletes: vec![],
        }
    }

    #[test]
    fn messages_round_trip_through_messagepack() {
        let mut s = Sender::new(RegionId(2), 77, 5);
        let m = s.delta(RegionId(1), delta(9), 123);
        assert_eq!(BorderMessage::decode(&m.encode()).unwrap(), m);
        assert!(BorderMessage::decode(b"\x93garbage").is_err());
    }

    #[test]
    fn a_receiver_applies_deltas_only_in_step_after_a_whole_copy() {
        let mut s = Sender::new(RegionId(0), 1, 5);
        let mut r = Receiver::new(5);
        // A receiver that just started asks for the whole copy.
        assert_eq!(r.handle(s.delta(RegionId(1), delta(1), 0)), Handled::Resync);
        let whole = s.message(RegionId(1), Payload::Whole { rows: vec![] }, 0);
        assert_eq!(r.handle(whole), Handled::Whole(vec![]));
        assert!(r.in_step(RegionId(0)));
        assert_eq!(
            r.handle(s.delta(RegionId(1), delta(2), 0)),
            Handled::Delta(delta(2))
        );
        // A lost message: the next is dropped and the copy is out of step until a whole copy.
        let _lost = s.delta(RegionId(1), delta(3), 0);
        assert_eq!(r.handle(s.delta(RegionId(1), delta(4), 0)), Handled::Resync);
        assert!(!r.in_step(RegionId(0)));
        assert_eq!(r.handle(s.delta(RegionId(1), delta(5), 0)), Handled::Resync);
        let whole = s.message(RegionId(1), Payload::Whole { rows: vec![] }, 0);
        assert!(matches!(r.handle(whole), Handled::Whole(_)));
        assert!(matches!(
            r.handle(s.delta(RegionId(1), delta(6), 0)),
            Handled::Delta(_)
        ));
        // The sender restarted (a new epoch): numbers start again, and the receiver asks for a whole copy.
        let mut s2 = Sender::new(RegionId(0), 2, 5);
        assert_eq!(
            r.handle(s2.delta(RegionId(1), delta(7), 0)),
            Handled::Resync
        );
        // Another schema is ignored.
        let mut s3 = Sender::new(RegionId(0), 2, 6);
        let whole = s3.message(RegionId(1), Payload::Whole { rows: vec![] }, 0);
        assert_eq!(r.handle(whole), Handled::OtherSchema);
    }

    #[test]
    fn schema_fingerprints_differ_with_the_schema() {
        let def = |name: &str| TableDef {
            name: name.into(),
            columns: vec![locus_types::ColumnDef::new(
                "id",
                locus_types::ColumnType::U64,
            )],
            primary_key: locus_types::ColumnId(0),
            auto_inc: false,
            indexes: vec![],
            access: locus_types::TableAccess::Public,
            owner: None,
            movable: false,
        };
        assert_eq!(
            schema_fingerprint(&[def("a")]),
            schema_fingerprint(&[def("a")])
        );
        assert_ne!(
            schema_fingerprint(&[def("a")]),
            schema_fingerprint(&[def("b")])
        );
    }
}

//! What regions send each other through JetStream (at least once, applied exactly once), and the system tables
//! that make it crash-safe on both sides.
//!
//! - A sender commits a message in the transaction that causes it (a player's rows deleted, for a handoff): a row
//!   of [`OUTBOX_TABLE`] holding its number and bytes ([`outbox_row`]). The row goes once JetStream stored the
//!   message (its publish acknowledgement), in a later transaction ([`crate::Outbox`]).
//! - A receiver applies a message and records its number in [`INBOX_TABLE`] (one row per sender:
//!   [`crate::Applied`], [`inbox_row`]) in one transaction, and acknowledges the JetStream message once that
//!   transaction is durable. A message that comes again is acknowledged and dropped.
//!
//! The message itself is an [`Envelope`] (MessagePack): the sender, the number, the sender's clock, and a
//! [`RegionMessage`]. Rows travel with their table's **name** (table ids are per database) and their bytes in the
//! row codec; both regions run the same module.

use serde::{Deserialize, Serialize};

use locus_types::{ColumnType, Identity, TableDef, Value, codec};

use crate::dedup::Applied;
use crate::layout::{Rect, RegionId};
use crate::outbox::Destination;

/// The system table of a region's unconfirmed outgoing messages.
pub const OUTBOX_TABLE: &str = "locus_outbox";

/// The system table of which messages a region applied, per sender.
pub const INBOX_TABLE: &str = "locus_inbox";

/// The system table naming the world's regions, one row per region of the layout: `name String` (primary key),
/// `index U32` (its place in the layout, [`RegionId`]), `x0 F32`, `y0 F32`, `x1 F32`, `y1 F32` (its rectangle,
/// [`Rect`]: `min` then `max`) and `own Bool` (whether it is the region this database belongs to). Written by the
/// server when a region starts, before the module's `init` runs for a new world ([`regions_row`]); read by the
/// host to address a reducer call to another region by name (`region_send`) and to tell the module which part of
/// the world it serves (`region_list`).
///
/// Invariant of the rows the server writes: they are exactly the layout's regions, with their rectangles, and
/// exactly one of them (the database's own region) has `own` set.
pub const REGIONS_TABLE: &str = "locus_regions";

/// The definition of [`REGIONS_TABLE`]. Private.
#[must_use]
pub fn regions_table_def() -> TableDef {
    TableDef::builder(REGIONS_TABLE)
        .column("name", ColumnType::String)
        .column("index", ColumnType::U32)
        .column("x0", ColumnType::F32)
        .column("y0", ColumnType::F32)
        .column("x1", ColumnType::F32)
        .column("y1", ColumnType::F32)
        .column("own", ColumnType::Bool)
        .primary_key("name")
        .build()
        .expect("the regions table's definition is valid")
}

/// One row of [`REGIONS_TABLE`], decoded ([`parse_regions_row`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionRow {
    /// The region's name in the layout.
    pub name: String,
    /// Its index in the layout.
    pub index: RegionId,
    /// Its rectangle.
    pub rect: Rect,
    /// Whether it is the region the database belongs to.
    pub own: bool,
}

/// A row of [`REGIONS_TABLE`]: region `name`, number `index` of the layout, serving `rect`; `own` if it is the
/// region whose database the row is written to.
#[must_use]
pub fn regions_row(name: &str, index: RegionId, rect: Rect, own: bool) -> Vec<u8> {
    codec::encode_row(
        &regions_table_def().columns,
        &[
            Value::String(name.into()),
            Value::U64(u64::from(index.0)),
            Value::F32(rect.min.x),
            Value::F32(rect.min.y),
            Value::F32(rect.max.x),
            Value::F32(rect.max.y),
            Value::Bool(own),
        ],
    )
    .expect("a regions row fits its table")
}

/// The parts of a row of [`REGIONS_TABLE`]; `None` if it is not one (or its index is not a [`RegionId`]).
#[must_use]
pub fn parse_regions_row(row: &[u8]) -> Option<RegionRow> {
    match codec::decode_row(&regions_table_def().columns, row)
        .ok()?
        .as_slice()
    {
        [
            Value::String(name),
            Value::U64(index),
            Value::F32(x0),
            Value::F32(y0),
            Value::F32(x1),
            Value::F32(y1),
            Value::Bool(own),
        ] => Some(RegionRow {
            name: name.to_string(),
            index: RegionId(u16::try_from(*index).ok()?),
            rect: Rect::from([*x0, *y0, *x1, *y1]),
            own: *own,
        }),
        _ => None,
    }
}

/// The system table of the identities whose avatar this region handed over to another region, and where their
/// sessions go: `identity Identity` (primary key), `region U32` (its index), `addr String` and `fingerprint
/// Bytes` (where that region's clients connect, once it said so: empty until then). A session of such an identity
/// that connects here is sent on, after a restart too; the row goes when the avatar comes back.
pub const AWAY_TABLE: &str = "locus_away";

/// The definition of [`AWAY_TABLE`]. Private.
#[must_use]
pub fn away_table_def() -> TableDef {
    TableDef::builder(AWAY_TABLE)
        .column("identity", ColumnType::Identity)
        .column("region", ColumnType::U32)
        .column("addr", ColumnType::String)
        .column("fingerprint", ColumnType::Bytes)
        .primary_key("identity")
        .build()
        .expect("the away table's definition is valid")
}

/// Where an identity handed over to another region is ([`AWAY_TABLE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Away {
    /// The identity.
    pub identity: Identity,
    /// The region its avatar went to.
    pub region: RegionId,
    /// Where that region's clients connect and its certificate's fingerprint, once it said so.
    pub at: Option<(String, [u8; 32])>,
}

/// A row of [`AWAY_TABLE`].
#[must_use]
pub fn away_row(away: &Away) -> Vec<u8> {
    let (addr, fingerprint) = match &away.at {
        Some((addr, fp)) => (addr.as_str(), &fp[..]),
        None => ("", &[][..]),
    };
    codec::encode_row(
        &away_table_def().columns,
        &[
            Value::Identity(away.identity),
            Value::U64(u64::from(away.region.0)),
            Value::String(addr.into()),
            Value::Bytes(fingerprint.into()),
        ],
    )
    .expect("an away row fits its table")
}

/// The parts of a row of [`AWAY_TABLE`]; `None` if it is not one.
#[must_use]
pub fn parse_away_row(row: &[u8]) -> Option<Away> {
    match codec::decode_row(&away_table_def().columns, row)
        .ok()?
        .as_slice()
    {
        [
            Value::Identity(identity),
            Value::U64(region),
            Value::String(addr),
            Value::Bytes(fingerprint),
        ] => Some(Away {
            identity: *identity,
            region: RegionId(u16::try_from(*region).ok()?),
            at: match <[u8; 32]>::try_from(&fingerprint[..]) {
                Ok(fp) if !addr.is_empty() => Some((addr.to_string(), fp)),
                _ => None,
            },
        }),
        _ => None,
    }
}

/// `to` of an [`OUTBOX_TABLE`] row for a message to every region.
pub const TO_ALL: u32 = u32::MAX;

/// The definition of [`OUTBOX_TABLE`]: `seq U64` (primary key, `auto_inc`: the table's sequence keeps the highest
/// number ever given), `to U32` (a region's index, or [`TO_ALL`]), `payload Bytes` (the encoded [`Envelope`]).
/// Private.
#[must_use]
pub fn outbox_table_def() -> TableDef {
    TableDef::builder(OUTBOX_TABLE)
        .column("seq", ColumnType::U64)
        .column("to", ColumnType::U32)
        .column("payload", ColumnType::Bytes)
        .primary_key("seq")
        .auto_inc()
        .build()
        .expect("the outbox table's definition is valid")
}

/// The definition of [`INBOX_TABLE`]: `from U32` (primary key: the sender's region index), `through U64` and
/// `above Bytes` (the [`Applied`] record: every number up to `through`, and the MessagePack list `above`).
/// Private.
#[must_use]
pub fn inbox_table_def() -> TableDef {
    TableDef::builder(INBOX_TABLE)
        .column("from", ColumnType::U32)
        .column("through", ColumnType::U64)
        .column("above", ColumnType::Bytes)
        .primary_key("from")
        .build()
        .expect("the inbox table's definition is valid")
}

/// A row of [`OUTBOX_TABLE`].
#[must_use]
pub fn outbox_row(seq: u64, to: Destination, payload: &[u8]) -> Vec<u8> {
    let to = match to {
        Destination::Region(r) => u32::from(r.0),
        Destination::All => TO_ALL,
    };
    codec::encode_row(
        &outbox_table_def().columns,
        &[
            Value::U64(seq),
            Value::U64(u64::from(to)),
            Value::Bytes(payload.into()),
        ],
    )
    .expect("an outbox row fits its table")
}

/// The parts of a row of [`OUTBOX_TABLE`]; `None` if it is not one.
#[must_use]
pub fn parse_outbox_row(row: &[u8]) -> Option<(u64, Destination, Box<[u8]>)> {
    match codec::decode_row(&outbox_table_def().columns, row)
        .ok()?
        .as_slice()
    {
        [Value::U64(seq), Value::U64(to), Value::Bytes(payload)] => {
            let to = match u32::try_from(*to).ok()? {
                TO_ALL => Destination::All,
                r => Destination::Region(RegionId(u16::try_from(r).ok()?)),
            };
            Some((*seq, to, payload.clone()))
        }
        _ => None,
    }
}

/// A row of [`INBOX_TABLE`]: what was applied from `from`.
#[must_use]
pub fn inbox_row(from: RegionId, applied: &Applied) -> Vec<u8> {
    let above: Vec<u64> = applied.above().collect();
    codec::encode_row(
        &inbox_table_def().columns,
        &[
            Value::U64(u64::from(from.0)),
            Value::U64(applied.through()),
            Value::Bytes(rmp_serde::to_vec(&above).expect("numbers serialize").into()),
        ],
    )
    .expect("an inbox row fits its table")
}

/// The parts of a row of [`INBOX_TABLE`]; `None` if it is not one.
#[must_use]
pub fn parse_inbox_row(row: &[u8]) -> Option<(RegionId, Applied)> {
    match codec::decode_row(&inbox_table_def().columns, row)
        .ok()?
        .as_slice()
    {
        [Value::U64(from), Value::U64(through), Value::Bytes(above)] => {
            let above: Vec<u64> = rmp_serde::from_slice(above).ok()?;
            Some((
                RegionId(u16::try_from(*from).ok()?),
                Applied::from_parts(*through, above),
            ))
        }
        _ => None,
    }
}

/// One message between regions, as JetStream carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's region index.
    pub from: u16,
    /// Its number among the sender's messages (from 1).
    pub seq: u64,
    /// The sender's clock when it committed the message, in microseconds since the Unix epoch (for measuring
    /// latency; nothing depends on it).
    pub sent_us: u64,
    /// What it carries.
    pub message: RegionMessage,
}

/// What a message between regions carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegionMessage {
    /// Rows that moved to the receiving region: a row of a movable table that crossed into it, and the rows that
    /// go with it (`TableDef::movable`). The receiver inserts them (replacing rows of the same keys).
    Handoff {
        /// The identity whose avatar moved (its sessions are sent to the receiver), if the row has one.
        identity: Option<Identity>,
        /// The rows, by table name.
        rows: Vec<MovedRow>,
    },
    /// A reducer call another region's module sent (`ctx.send_to_region` / `ctx.send_to_all_regions`): the
    /// receiver runs `reducer` with `args` as `sender` (the identity the sending reducer ran as), and records the
    /// message as applied in the same tick.
    Call {
        /// The reducer.
        reducer: String,
        /// Its arguments (a MessagePack array, as a client's call).
        #[serde(with = "serde_bytes")]
        args: Vec<u8>,
        /// Who the sending reducer ran as.
        sender: Identity,
    },
    /// The answer to a [`RegionMessage::Handoff`] that carried an identity, sent in the transaction that applied
    /// it: the identity's avatar is in the sending region now, so the receiver sends the identity's sessions
    /// there (the client reconnects to `addr`, pinning `fingerprint`).
    Arrived {
        /// The identity.
        identity: Identity,
        /// The sending region's name.
        region: String,
        /// Where its clients connect (UDP).
        addr: String,
        /// The SHA-256 fingerprint of its certificate.
        fingerprint: [u8; 32],
    },
}

/// One row moving between regions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MovedRow {
    /// Its table's name.
    pub table: String,
    /// Its bytes (row codec).
    #[serde(with = "serde_bytes")]
    pub row: Vec<u8>,
}

impl Envelope {
    /// The MessagePack bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("an envelope serializes")
    }

    /// Decode MessagePack bytes.
    ///
    /// # Errors
    ///
    /// The decoder's error, for bytes that are not an envelope.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_rows_round_trip() {
        for to in [Destination::Region(RegionId(3)), Destination::All] {
            let row = outbox_row(42, to, b"xyz");
            assert_eq!(
                parse_outbox_row(&row),
                Some((42, to, b"xyz".to_vec().into_boxed_slice()))
            );
        }
        for at in [None, Some(("127.0.0.1:9".to_string(), [3; 32]))] {
            let away = Away {
                identity: Identity([5; 32]),
                region: RegionId(1),
                at,
            };
            assert_eq!(parse_away_row(&away_row(&away)), Some(away));
        }
        for own in [false, true] {
            let region = RegionRow {
                name: "north-east".into(),
                index: RegionId(3),
                rect: Rect::from([2048.0, 1024.5, 4096.0, 4096.0]),
                own,
            };
            let row = regions_row(&region.name, region.index, region.rect, own);
            assert_eq!(parse_regions_row(&row), Some(region));
        }
        assert_eq!(parse_regions_row(b"junk"), None);
        let applied = Applied::from_parts(7, [9, 12]);
        let row = inbox_row(RegionId(2), &applied);
        assert_eq!(parse_inbox_row(&row), Some((RegionId(2), applied)));
        assert_eq!(parse_inbox_row(b"junk"), None);
    }

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope {
            from: 1,
            seq: 9,
            sent_us: 5,
            message: RegionMessage::Handoff {
                identity: Some(Identity([7; 32])),
                rows: vec![MovedRow {
                    table: "player".into(),
                    row: vec![1, 2, 3],
                }],
            },
        };
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        assert!(Envelope::decode(b"\xc1").is_err());
    }
}

//! A borrowed, zero-copy reader of `Tick` messages: [`TickView`].
//!
//! A client reads every `Tick` the server sends, and a `Tick` is almost all rows. Decoding one into an owned
//! [`ServerMessage::Tick`] allocates a `Vec` per row; [`TickView::parse`] allocates nothing. It checks the whole
//! payload once, then hands out the tick, its time and the table deltas, whose rows and keys are slices of the
//! payload (the bytes inside each MessagePack `bin`).
//!
//! Terms: the **payload** is one frame's bytes after the length prefix (as [`crate::FrameReader::next_frame`]
//! returns it); **wire order** is the order of the bytes: the deltas in message order and, within a delta, the
//! inserts, updates, deletes and patches each in their own order. Apply them as `engine/docs/protocol.md` says
//! (per delta: deletes, then updates, then patches, then inserts), not in wire order.
//!
//! Invariants:
//! - For every `ServerMessage::Tick` `m`, [`TickView::parse`] of the payload [`crate::encode_frame`] writes for
//!   `m` is `Ok(Some(v))` with `v.to_message() == m` (version 1's 4-field deltas, version 2's 5-field ones, and
//!   version 3's 7-field ones when each has both `handles` and `moves`, well formed: one handle per insert, whole
//!   move records; otherwise it is [`TickError::Compact`]).
//! - For a payload that holds any other well-formed message it is `Ok(None)`: decode it with
//!   [`crate::decode_frame`].
//! - It never panics, and it accepts no more than [`crate::decode_frame`] does: when it returns `Ok(Some(v))`,
//!   `decode_frame::<ServerMessage>` of the same payload gives `v.to_message()`. (It reads only the encoding the
//!   protocol prescribes, so a `Tick` in a form `rmp_serde` also tolerates, e.g. a delta as a map, is an error.)
//! - Once parsed, the iterators cannot fail: [`TickView::tables`] yields exactly the announced number of deltas
//!   and each [`Rows`] exactly its announced number of rows.

use std::iter::FusedIterator;

use locus_types::TableId;
use thiserror::Error;

use crate::compact::{self, Handles, Moves};
use crate::{FrameError, ServerMessage, TableDelta, WireRow};

/// Why a payload that starts as a `Tick` message is not a well-formed one.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TickError {
    /// The payload ends inside a value (including before it is known which message it holds).
    #[error("malformed Tick: the payload ends inside the value at byte {at}")]
    Truncated {
        /// Where the value that does not fit starts.
        at: usize,
    },
    /// A value of the wrong MessagePack type for its place.
    #[error("malformed Tick: expected {expected} at byte {at}")]
    Unexpected {
        /// What the protocol puts there.
        expected: &'static str,
        /// Where the value starts.
        at: usize,
    },
    /// A number that does not fit its field: a negative tick or time, a table id above `u32::MAX`.
    #[error("malformed Tick: the number at byte {at} is out of range")]
    OutOfRange {
        /// Where the number starts.
        at: usize,
    },
    /// The `Tick` variant's array does not hold its 3 fields (tick, time, tables).
    #[error("malformed Tick: a Tick has 3 fields, not {0}")]
    TickFields(u32),
    /// A table delta's array does not hold 4 fields (version 1), 5 (version 2, with patches) or 7 (version 3).
    #[error("malformed Tick: a table delta has 4, 5 or 7 fields, not {fields} (byte {at})")]
    DeltaFields {
        /// The number of fields found.
        fields: u32,
        /// Where the delta starts.
        at: usize,
    },
    /// Bytes follow the message.
    #[error("malformed Tick: {0} bytes follow the message")]
    TrailingBytes(usize),
    /// A version-3 delta's `handles` is not one varint per insert, or its `moves` not whole move records
    /// ([`crate::compact`]).
    #[error("malformed Tick: the handles or moves of the delta at byte {at} are not well formed")]
    Compact {
        /// Where the delta starts.
        at: usize,
    },
}

impl From<TickError> for FrameError {
    fn from(e: TickError) -> FrameError {
        FrameError::Malformed(e.to_string())
    }
}

/// A `Tick` message read in place from a frame's payload. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickView<'a> {
    tick: u64,
    time: u64,
    tables: u32,
    /// The table deltas' bytes, all checked.
    body: &'a [u8],
}

impl<'a> TickView<'a> {
    /// Read `payload` (one frame's bytes after the prefix) if it holds a `Tick` message, checking all of it.
    ///
    /// `Ok(None)` if it holds another message (decode that with [`crate::decode_frame`]).
    ///
    /// # Errors
    ///
    /// [`TickError`] if it starts as a `Tick` (a one-entry map keyed `"Tick"`) but is not a well-formed one, or
    /// ends before it is known which message it holds.
    pub fn parse(payload: &'a [u8]) -> Result<Option<TickView<'a>>, TickError> {
        let mut c = Cursor::new(payload);
        if c.map_len()? != Some(1) || c.str()? != Some(b"Tick") {
            return Ok(None);
        }
        let fields = c.array_len()?;
        if fields != 3 {
            return Err(TickError::TickFields(fields));
        }
        let tick = c.uint()?;
        let time = c.uint()?;
        let tables = c.array_len()?;
        let start = c.pos;
        for _ in 0..tables {
            read_delta(&mut c)?;
        }
        let body = c.bytes.get(start..c.pos).unwrap_or_default();
        if c.pos != payload.len() {
            return Err(TickError::TrailingBytes(payload.len() - c.pos));
        }
        Ok(Some(TickView {
            tick,
            time,
            tables,
            body,
        }))
    }

    /// The tick.
    #[must_use]
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The tick's timestamp, in microseconds since the Unix epoch (as [`ServerMessage::Tick`]'s `time`).
    #[must_use]
    pub fn time(&self) -> u64 {
        self.time
    }

    /// The table deltas, in message order.
    #[must_use]
    pub fn tables(&self) -> TableDeltas<'a> {
        TableDeltas {
            rest: self.body,
            left: self.tables,
        }
    }

    /// The owned message with the same content (one `Vec` per row: for tests and for code that keeps messages).
    #[must_use]
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Tick {
            tick: self.tick,
            time: self.time,
            tables: self.tables().map(|d| d.to_delta()).collect(),
        }
    }
}

/// The table deltas of a [`TickView`], in message order.
#[derive(Clone, Debug)]
pub struct TableDeltas<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for TableDeltas<'a> {
    type Item = TableDeltaView<'a>;

    fn next(&mut self) -> Option<TableDeltaView<'a>> {
        if self.left == 0 {
            return None;
        }
        let mut c = Cursor::new(self.rest);
        // Checked by `TickView::parse`: an error cannot happen; if it did, the iteration would just end.
        let Ok(delta) = read_delta(&mut c) else {
            self.left = 0;
            return None;
        };
        self.left -= 1;
        self.rest = c.rest();
        Some(delta)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for TableDeltas<'_> {}

impl FusedIterator for TableDeltas<'_> {}

/// One table's changes in a [`TickView`]: the borrowed form of [`TableDelta`].
#[derive(Clone, Debug)]
pub struct TableDeltaView<'a> {
    table: TableId,
    inserts: Rows<'a>,
    updates: Rows<'a>,
    deletes: Rows<'a>,
    patches: Rows<'a>,
    /// Version 3's `handles` and `moves` `bin`s, both checked.
    compact: Option<(&'a [u8], &'a [u8])>,
}

impl<'a> TableDeltaView<'a> {
    /// The table.
    #[must_use]
    pub fn table(&self) -> TableId {
        self.table
    }

    /// Rows entering the view (as [`TableDelta::inserts`]).
    #[must_use]
    pub fn inserts(&self) -> Rows<'a> {
        self.inserts.clone()
    }

    /// Rows in view whose bytes changed (as [`TableDelta::updates`]).
    #[must_use]
    pub fn updates(&self) -> Rows<'a> {
        self.updates.clone()
    }

    /// Keys of rows leaving the view (as [`TableDelta::deletes`]).
    #[must_use]
    pub fn deletes(&self) -> Rows<'a> {
        self.deletes.clone()
    }

    /// Patches of rows in view (as [`TableDelta::patches`]; none in a version-1 delta).
    #[must_use]
    pub fn patches(&self) -> Rows<'a> {
        self.patches.clone()
    }

    /// Whether the delta is in version 3's form (7 fields: patches name rows by handle, inserts get handles).
    #[must_use]
    pub fn is_compact(&self) -> bool {
        self.compact.is_some()
    }

    /// The handle each insert's row gets, in the inserts' order (version 3; none before).
    #[must_use]
    pub fn handles(&self) -> Handles<'a> {
        Handles::new(self.compact.map_or(&[], |c| c.0))
    }

    /// The moves (version 3; none before).
    #[must_use]
    pub fn moves(&self) -> Moves<'a> {
        Moves::new(self.compact.map_or(&[], |c| c.1))
    }

    /// The owned delta with the same content.
    #[must_use]
    pub fn to_delta(&self) -> TableDelta {
        let owned = |rows: Rows<'a>| rows.map(|r| WireRow(r.to_vec())).collect();
        TableDelta {
            table: self.table,
            inserts: owned(self.inserts()),
            updates: owned(self.updates()),
            deletes: owned(self.deletes()),
            patches: owned(self.patches()),
            handles: self.compact.map(|c| WireRow(c.0.to_vec())),
            moves: self.compact.map(|c| WireRow(c.1.to_vec())),
        }
    }
}

/// One list of a [`TableDeltaView`]: each item is the bytes of one row, key or patch (the contents of its `bin`),
/// a slice of the payload, in wire order.
#[derive(Clone, Debug, Default)]
pub struct Rows<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Rows<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let mut c = Cursor::new(self.rest);
        // Checked by `TickView::parse`, as in `TableDeltas::next`.
        let Ok(row) = c.bin() else {
            self.left = 0;
            return None;
        };
        self.left -= 1;
        self.rest = c.rest();
        Some(row)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Rows<'_> {}

impl FusedIterator for Rows<'_> {}

/// Read one table delta at `c` (used both to check a payload and to iterate a checked one).
fn read_delta<'a>(c: &mut Cursor<'a>) -> Result<TableDeltaView<'a>, TickError> {
    let at = c.pos;
    let fields = c.array_len()?;
    if !matches!(fields, 4 | 5 | 7) {
        return Err(TickError::DeltaFields { fields, at });
    }
    let start = at;
    let at = c.pos;
    let table = u32::try_from(c.uint()?).map_err(|_| TickError::OutOfRange { at })?;
    let inserts = read_rows(c)?;
    let updates = read_rows(c)?;
    let deletes = read_rows(c)?;
    let patches = if fields >= 5 {
        read_rows(c)?
    } else {
        Rows::default()
    };
    let compact = if fields == 7 {
        let (handles, moves) = (c.bin()?, c.bin()?);
        if !compact::check_handles(handles, inserts.left as usize)
            || compact::check_moves(moves).is_none()
        {
            return Err(TickError::Compact { at: start });
        }
        Some((handles, moves))
    } else {
        None
    };
    Ok(TableDeltaView {
        table: TableId(table),
        inserts,
        updates,
        deletes,
        patches,
        compact,
    })
}

/// Read one list of `bin`s at `c`.
fn read_rows<'a>(c: &mut Cursor<'a>) -> Result<Rows<'a>, TickError> {
    let left = c.array_len()?;
    let start = c.pos;
    for _ in 0..left {
        c.bin()?;
    }
    Ok(Rows {
        rest: c.bytes.get(start..c.pos).unwrap_or_default(),
        left,
    })
}

/// A reader of the few MessagePack values a `Tick` holds. Invariant: `pos <= bytes.len()`.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// The bytes not read yet.
    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// The next `n` bytes, part of the value that starts at `at`.
    fn take(&mut self, n: usize, at: usize) -> Result<&'a [u8], TickError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(TickError::Truncated { at })?;
        self.pos += n;
        Ok(bytes)
    }

    fn be<const N: usize>(&mut self, at: usize) -> Result<[u8; N], TickError> {
        self.take(N, at)?
            .first_chunk::<N>()
            .copied()
            .ok_or(TickError::Truncated { at })
    }

    /// A marker byte and where it is.
    fn marker(&mut self) -> Result<(u8, usize), TickError> {
        let at = self.pos;
        Ok((self.be::<1>(at)?[0], at))
    }

    /// A length field of `N` bytes (1, 2 or 4).
    fn len<const N: usize>(&mut self, at: usize) -> Result<usize, TickError> {
        let b = self.be::<N>(at)?;
        Ok(b.iter().fold(0, |n, &b| (n << 8) | usize::from(b)))
    }

    /// A map's length, or `None` (nothing read past the marker) if the value is not a map.
    fn map_len(&mut self) -> Result<Option<u32>, TickError> {
        let (m, at) = self.marker()?;
        Ok(Some(match m {
            0x80..=0x8f => u32::from(m & 0x0f),
            0xde => u32::from(u16::from_be_bytes(self.be(at)?)),
            0xdf => u32::from_be_bytes(self.be(at)?),
            _ => return Ok(None),
        }))
    }

    /// A string's bytes, or `None` if the value is not a string.
    fn str(&mut self) -> Result<Option<&'a [u8]>, TickError> {
        let (m, at) = self.marker()?;
        let len = match m {
            0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.len::<1>(at)?,
            0xda => self.len::<2>(at)?,
            0xdb => self.len::<4>(at)?,
            _ => return Ok(None),
        };
        self.take(len, at).map(Some)
    }

    fn array_len(&mut self) -> Result<u32, TickError> {
        let (m, at) = self.marker()?;
        match m {
            0x90..=0x9f => Ok(u32::from(m & 0x0f)),
            0xdc => Ok(u32::from(u16::from_be_bytes(self.be(at)?))),
            0xdd => Ok(u32::from_be_bytes(self.be(at)?)),
            _ => Err(TickError::Unexpected {
                expected: "an array",
                at,
            }),
        }
    }

    /// A `bin`'s bytes.
    fn bin(&mut self) -> Result<&'a [u8], TickError> {
        let (m, at) = self.marker()?;
        let len = match m {
            0xc4 => self.len::<1>(at)?,
            0xc5 => self.len::<2>(at)?,
            0xc6 => self.len::<4>(at)?,
            _ => {
                return Err(TickError::Unexpected {
                    expected: "bin",
                    at,
                });
            }
        };
        self.take(len, at)
    }

    /// A non-negative integer in any MessagePack integer form (as `rmp_serde` reads a `u64`).
    fn uint(&mut self) -> Result<u64, TickError> {
        let (m, at) = self.marker()?;
        let v: i128 = match m {
            0x00..=0x7f => m.into(),
            0xe0..=0xff => i8::from_be_bytes([m]).into(),
            0xcc => u8::from_be_bytes(self.be(at)?).into(),
            0xcd => u16::from_be_bytes(self.be(at)?).into(),
            0xce => u32::from_be_bytes(self.be(at)?).into(),
            0xcf => u64::from_be_bytes(self.be(at)?).into(),
            0xd0 => i8::from_be_bytes(self.be(at)?).into(),
            0xd1 => i16::from_be_bytes(self.be(at)?).into(),
            0xd2 => i32::from_be_bytes(self.be(at)?).into(),
            0xd3 => i64::from_be_bytes(self.be(at)?).into(),
            _ => {
                return Err(TickError::Unexpected {
                    expected: "an integer",
                    at,
                });
            }
        };
        u64::try_from(v).map_err(|_| TickError::OutOfRange { at })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{AdminReply, CallOutcome, ErrorCode, Token, Welcome, decode_frame, encode_frame};

    fn payload(message: &ServerMessage) -> Vec<u8> {
        let mut frame = Vec::new();
        encode_frame(message, &mut frame);
        frame.split_off(crate::FRAME_PREFIX)
    }

    fn rows() -> impl Strategy<Value = Vec<WireRow>> {
        // Mostly short lists of short rows; sometimes more than 15 rows (array16) or rows above 255 bytes (bin16).
        prop_oneof![
            4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..4),
            1 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        ]
        .prop_map(|rows| rows.into_iter().map(WireRow).collect())
    }

    fn delta() -> impl Strategy<Value = TableDelta> {
        // An empty `patches` is the 4-field version-1 encoding; a non-empty one the 5-field version-2 one; with
        // handles (one per insert) and moves, the 7-field version-3 one.
        let moves = prop::collection::vec((any::<u32>(), any::<i64>(), any::<i64>()), 0..6);
        (
            any::<u32>(),
            rows(),
            rows(),
            rows(),
            rows(),
            any::<bool>(),
            any::<u32>(),
            moves,
        )
            .prop_map(
                |(table, inserts, updates, deletes, patches, v3, first, moves)| {
                    let compact = v3.then(|| {
                        let mut handles = Vec::new();
                        for k in 0..inserts.len() as u32 {
                            compact::put_uvarint(&mut handles, first.wrapping_add(k));
                        }
                        let mut packed = Vec::new();
                        for (handle, dx, dy) in moves {
                            compact::Move { handle, dx, dy }.put(&mut packed);
                        }
                        (WireRow(handles), WireRow(packed))
                    });
                    TableDelta {
                        table: TableId(table),
                        inserts,
                        updates,
                        deletes,
                        patches,
                        handles: compact.as_ref().map(|c| c.0.clone()),
                        moves: compact.map(|c| c.1),
                    }
                },
            )
    }

    fn tick_message() -> impl Strategy<Value = ServerMessage> {
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(delta(), 0..5),
        )
            .prop_map(|(tick, time, tables)| ServerMessage::Tick { tick, time, tables })
    }

    fn other_message() -> impl Strategy<Value = ServerMessage> {
        prop_oneof![
            (any::<u32>(), any::<u64>()).prop_map(|(request, tick)| ServerMessage::Result {
                request,
                tick,
                outcome: CallOutcome::Err {
                    code: ErrorCode::ReducerFailed,
                    message: "Tick".into(),
                },
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(request, t)| ServerMessage::Subscribed {
                request,
                table: TableId(t),
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(request, t)| ServerMessage::Unsubscribed {
                request,
                table: TableId(t),
            }),
            (any::<u32>(), ".*").prop_map(|(request, json)| ServerMessage::Admin {
                request,
                reply: AdminReply::Rows { json },
            }),
            (".*", any::<bool>()).prop_map(|(message, fatal)| ServerMessage::Error {
                code: ErrorCode::Busy,
                message,
                request: None,
                fatal,
            }),
            any::<u64>().prop_map(|tick| ServerMessage::Welcome(Welcome {
                version: 2,
                identity: locus_types::Identity([3; 32]),
                token: Token([4; 32]),
                tick_rate: 20,
                tick,
                tables: vec![],
                reducers: vec![],
            })),
        ]
    }

    /// A tick's content: tick, time, and per delta its table, its inserts, updates, deletes and patches, and its
    /// handles and moves.
    type Content = (
        u64,
        u64,
        Vec<(u32, [Vec<Vec<u8>>; 4], Vec<u32>, Vec<compact::Move>)>,
    );

    /// Walk everything a view hands out (so a panic anywhere in the iterators would show).
    fn content(view: &TickView<'_>) -> Content {
        let list = |rows: Rows<'_>| {
            let n = rows.len();
            let rows: Vec<Vec<u8>> = rows.map(<[u8]>::to_vec).collect();
            assert_eq!(rows.len(), n, "Rows::len is exact");
            rows
        };
        let tables = view.tables();
        let n = tables.len();
        let deltas: Vec<_> = tables
            .map(|d| {
                (
                    d.table().0,
                    [
                        list(d.inserts()),
                        list(d.updates()),
                        list(d.deletes()),
                        list(d.patches()),
                    ],
                    d.handles().collect(),
                    d.moves().collect(),
                )
            })
            .collect();
        assert_eq!(deltas.len(), n, "TableDeltas::len is exact");
        (view.tick(), view.time(), deltas)
    }

    proptest! {
        #[test]
        fn a_tick_reads_back_as_encoded(message in tick_message()) {
            let bytes = payload(&message);
            let view = TickView::parse(&bytes).unwrap().expect("a Tick");
            let ServerMessage::Tick { tick, time, tables } = &message else { unreachable!() };
            let want: Vec<_> = tables
                .iter()
                .map(|d| {
                    let list = |rows: &[WireRow]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
                    let handles = d.handles.as_ref().map(|h| Handles::new(&h.0).collect()).unwrap_or_default();
                    let moves = d.moves.as_ref().map(|m| Moves::new(&m.0).collect()).unwrap_or_default();
                    (
                        d.table.0,
                        [list(&d.inserts), list(&d.updates), list(&d.deletes), list(&d.patches)],
                        handles,
                        moves,
                    )
                })
                .collect();
            prop_assert_eq!(content(&view), (*tick, *time, want));
            prop_assert_eq!(view.to_message(), message);
        }

        #[test]
        fn other_messages_are_not_ticks(message in other_message()) {
            prop_assert!(TickView::parse(&payload(&message)).unwrap().is_none());
        }

        #[test]
        fn damaged_ticks_are_errors_never_panics(
            message in tick_message(),
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let bytes = payload(&message);
            // Every strict prefix is an error.
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(TickView::parse(short).is_err(), "{} of {} bytes", short.len(), bytes.len());
            // Changed bytes: an error, another message, or a Tick that the owned decoder reads the same.
            let mut garbled = bytes.clone();
            for (i, b) in &flips {
                let i = i.index(garbled.len());
                garbled[i] = *b;
            }
            if let Ok(Some(view)) = TickView::parse(&garbled) {
                content(&view);
                prop_assert_eq!(
                    decode_frame::<ServerMessage>(&garbled).ok(),
                    Some(view.to_message())
                );
            }
            // Bytes after a whole Tick.
            let mut long = bytes;
            long.push(0xc0);
            prop_assert_eq!(TickView::parse(&long).unwrap_err(), TickError::TrailingBytes(1));
        }
    }

    #[test]
    fn large_lists_and_rows_use_the_wide_forms() {
        // array32 (65,536 keys), bin32 (a 70,000-byte row), uint64 tick: each read back.
        let message = ServerMessage::Tick {
            tick: u64::MAX,
            time: 1 << 40,
            tables: vec![TableDelta {
                table: TableId(u32::MAX),
                inserts: vec![WireRow(vec![7; 70_000])],
                updates: vec![],
                deletes: (0..65_536u32)
                    .map(|k| WireRow(vec![(k % 128) as u8]))
                    .collect(),
                patches: vec![],
                ..TableDelta::default()
            }],
        };
        let bytes = payload(&message);
        let view = TickView::parse(&bytes).unwrap().unwrap();
        assert_eq!(view.to_message(), message);
        let delta = view.tables().next().unwrap();
        assert_eq!(delta.deletes().len(), 65_536);
        assert_eq!(delta.inserts().next().map(<[u8]>::len), Some(70_000));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let tick = |tables: &[u8]| {
            [
                &[0x81, 0xa4, b'T', b'i', b'c', b'k', 0x93, 0x01, 0x02][..],
                tables,
            ]
            .concat()
        };
        assert_eq!(TickView::parse(&[]), Err(TickError::Truncated { at: 0 }));
        assert_eq!(
            TickView::parse(&[0x81, 0xa4, b'T', b'i', b'c', b'k', 0x92, 0x01, 0x02]),
            Err(TickError::TickFields(2))
        );
        // A delta of 3 fields; a negative time; a table id above u32::MAX; a row as a string.
        assert_eq!(
            TickView::parse(&tick(&[0x91, 0x93, 0x01, 0x90, 0x90])),
            Err(TickError::DeltaFields { fields: 3, at: 10 })
        );
        assert_eq!(
            TickView::parse(&[0x81, 0xa4, b'T', b'i', b'c', b'k', 0x93, 0x01, 0xff, 0x90]),
            Err(TickError::OutOfRange { at: 8 })
        );
        assert_eq!(
            TickView::parse(&tick(&[
                0x91, 0x94, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0x90, 0x90, 0x90
            ])),
            Err(TickError::OutOfRange { at: 11 })
        );
        assert_eq!(
            TickView::parse(&tick(&[0x91, 0x94, 0x01, 0x91, 0xa1, b'x', 0x90, 0x90])),
            Err(TickError::Unexpected {
                expected: "bin",
                at: 13
            })
        );
        // Version 3: one insert but no handle; a move cut short; a 6-field delta.
        assert_eq!(
            TickView::parse(&tick(&[
                0x91, 0x97, 0x01, 0x91, 0xc4, 0x00, 0x90, 0x90, 0x90, 0xc4, 0x00, 0xc4, 0x00
            ])),
            Err(TickError::Compact { at: 10 })
        );
        assert_eq!(
            TickView::parse(&tick(&[
                0x91, 0x97, 0x01, 0x90, 0x90, 0x90, 0x90, 0xc4, 0x00, 0xc4, 0x02, 0x05, 0x32
            ])),
            Err(TickError::Compact { at: 10 })
        );
        assert_eq!(
            TickView::parse(&tick(&[
                0x91, 0x96, 0x01, 0x90, 0x90, 0x90, 0x90, 0xc4, 0x00
            ])),
            Err(TickError::DeltaFields { fields: 6, at: 10 })
        );
        // A unit variant, or a map keyed by another name, is another message.
        assert_eq!(TickView::parse(&[0xa4, b'T', b'i', b'c', b'k']), Ok(None));
        assert_eq!(
            TickView::parse(&[0x81, 0xa4, b'T', b'o', b'c', b'k', 0x90]),
            Ok(None)
        );
        // A malformed Tick is a malformed frame to a reader.
        let e = FrameError::from(TickError::TickFields(2));
        assert!(matches!(e, FrameError::Malformed(m) if m.contains("3 fields")));
    }
}

//! Protocol version 4's **position channel**: the positions of walking rows in QUIC datagrams (`protocol.md` §5,
//! "Version 4").
//!
//! A version-3 move is a step from the position last sent, so it must arrive, in order: on the session's reliable
//! stream a lost packet holds up every later tick until it is sent again (one tick period plus a round trip). A
//! version-4 session is sent those changes as **places** in unreliable, unordered QUIC datagrams instead: a lost one
//! is not sent again, the next tick's place of the same row replaces it.
//!
//! A datagram is raw bytes (no `FRAME_PREFIX`, no MessagePack):
//!
//! ```text
//! datagram = 0x01 tick:uvarint time:uvarint section+
//! section  = table:uvarint len:uvarint places(len bytes)
//! places   = (handle:uvarint dx:svarint dy:svarint)+
//! ```
//!
//! `time` is the tick's time (as `Tick.time`, microseconds since the Unix epoch). The first place of a section is
//! absolute, `(dx, dy)` from `(0, 0)`; each next one is relative to the place before it, all in whole centimetres
//! ([`crate::compact::quantize`]): rows in one view are close, so most offsets take two bytes each.
//!
//! Invariants:
//! - [`PlacesWriter`] writes datagrams of at most [`DATAGRAM_LIMIT`] bytes (a section longer than that is split
//!   over several datagrams, each whole) that [`Datagram::parse`] reads back place for place.
//! - [`Datagram::parse`] accepts exactly the byte strings this grammar describes and never panics; after it
//!   accepts, iterating reads every byte.
//! - A place is the row's position at `tick`; whether to apply it is the client's rule (`protocol.md`): only to
//!   a row whose handle it held through `tick` and whose position it holds is older than `tick`.

use integer_encoding::VarInt;
use locus_types::TableId;

use crate::compact::{put_svarint, put_uvarint};

/// The first byte of a position datagram (other values are reserved).
pub const DATAGRAM_TAG: u8 = 1;

/// The largest datagram the server writes: below what a QUIC datagram frame holds in a 1,200-byte packet (the
/// minimum every QUIC path carries), so one never has to wait for path MTU discovery.
pub const DATAGRAM_LIMIT: usize = 1_100;

/// How many ticks a version-4 session's freed handle rests before it is given to another row: a datagram of an
/// older tick still in flight, or read while the stream is behind, may then never be taken for the new row (the
/// client's rule in `protocol.md`, "Version 4"). 100 ticks is 5 s at 20 Hz.
pub const HANDLE_REST: u64 = 100;

/// One row's position at a datagram's tick: its handle and where it is, in whole centimetres.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The row's handle (of the section's table).
    pub handle: u32,
    /// Its position, in centimetres ([`crate::compact::dequantize`] gives metres).
    pub q: [i32; 2],
}

/// Why a datagram is not a position datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Empty, or its first byte is not [`DATAGRAM_TAG`].
    #[error("not a position datagram (tag {0:?})")]
    Tag(Option<u8>),
    /// Its tick or time is not a varint.
    #[error("a position datagram's header is malformed")]
    Header,
    /// It has no section.
    #[error("a position datagram has no section")]
    Empty,
    /// A section's table, length or places are malformed, or it runs past the end.
    #[error("a position datagram's section at byte {0} is malformed")]
    Section(usize),
}

/// A parsed position datagram (borrowed: nothing is copied).
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// The tick the places are of.
    pub tick: u64,
    /// The tick's time, microseconds since the Unix epoch.
    pub time: u64,
    sections: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Check all of `bytes` (so nothing is applied from a damaged datagram) and read its header.
    ///
    /// # Errors
    ///
    /// [`DatagramError`] if `bytes` is not exactly what the [module docs](self) describe.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, DatagramError> {
        match bytes.first() {
            Some(&DATAGRAM_TAG) => {}
            other => return Err(DatagramError::Tag(other.copied())),
        }
        let (tick, a) = u64::decode_var(&bytes[1..]).ok_or(DatagramError::Header)?;
        let (time, b) = u64::decode_var(&bytes[1 + a..]).ok_or(DatagramError::Header)?;
        let start = 1 + a + b;
        let sections = &bytes[start..];
        if sections.is_empty() {
            return Err(DatagramError::Empty);
        }
        let mut rest = sections;
        while !rest.is_empty() {
            let at = start + sections.len() - rest.len();
            let (_, places, next) = section(rest).ok_or(DatagramError::Section(at))?;
            let mut it = Places::new(places);
            while !it.rest.is_empty() {
                it.next().ok_or(DatagramError::Section(at))?;
            }
            rest = next;
        }
        Ok(Datagram {
            tick,
            time,
            sections,
        })
    }

    /// Its sections: each table and its places.
    #[must_use]
    pub fn sections(&self) -> Sections<'a> {
        Sections {
            rest: self.sections,
        }
    }
}

/// One section at the start of `bytes`: its table, its places' bytes, and what follows.
fn section(bytes: &[u8]) -> Option<(TableId, &[u8], &[u8])> {
    let (table, a) = u32::decode_var(bytes)?;
    let (len, b) = u32::decode_var(bytes.get(a..)?)?;
    let end = (a + b).checked_add(len as usize)?;
    let places = bytes.get(a + b..end)?;
    if places.is_empty() {
        return None;
    }
    Some((TableId(table), places, &bytes[end..]))
}

/// The sections of a [`Datagram`].
#[derive(Clone, Debug)]
pub struct Sections<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Sections<'a> {
    type Item = (TableId, Places<'a>);

    fn next(&mut self) -> Option<(TableId, Places<'a>)> {
        let (table, places, rest) = section(self.rest)?;
        self.rest = rest;
        Some((table, Places::new(places)))
    }
}

/// The places of one section, absolute (the offsets added up). Ends at the first malformed record (never after
/// [`Datagram::parse`]).
#[derive(Clone, Debug)]
pub struct Places<'a> {
    rest: &'a [u8],
    at: [i64; 2],
}

impl<'a> Places<'a> {
    fn new(bytes: &'a [u8]) -> Places<'a> {
        Places {
            rest: bytes,
            at: [0, 0],
        }
    }
}

impl Iterator for Places<'_> {
    type Item = Place;

    fn next(&mut self) -> Option<Place> {
        let (handle, a) = u32::decode_var(self.rest)?;
        let (dx, b) = i64::decode_var(self.rest.get(a..)?)?;
        let (dy, c) = i64::decode_var(self.rest.get(a + b..)?)?;
        let x = i32::try_from(self.at[0].checked_add(dx)?).ok()?;
        let y = i32::try_from(self.at[1].checked_add(dy)?).ok()?;
        self.rest = &self.rest[a + b + c..];
        self.at = [i64::from(x), i64::from(y)];
        Some(Place { handle, q: [x, y] })
    }
}

/// One table's places being written.
#[derive(Debug, Default)]
struct Part {
    table: TableId,
    bytes: Vec<u8>,
    last: [i32; 2],
}

/// A session's places of one tick being collected, per table ([`PlacesWriter::write`] turns them into
/// datagrams). Keeps its buffers from one tick to the next (keep one per session).
#[derive(Debug, Default)]
pub struct PlacesWriter {
    parts: Vec<Part>,
    used: usize,
    count: usize,
}

/// The largest a place record can be: a 5-byte handle and two 10-byte offsets.
const MAX_PLACE: usize = 25;

/// Room for a datagram's header (tag, tick, time) and one section's table and length.
const HEADER_ROOM: usize = 1 + 10 + 10 + 5 + 5;

impl PlacesWriter {
    /// Add row `handle` of `table` at `q` (centimetres).
    pub fn push(&mut self, table: TableId, handle: u32, q: [i32; 2]) {
        let i = match self.parts[..self.used]
            .iter()
            .position(|p| p.table == table)
        {
            Some(i) => i,
            None => {
                if self.used == self.parts.len() {
                    self.parts.push(Part::default());
                }
                let p = &mut self.parts[self.used];
                (p.table, p.last) = (table, [0, 0]);
                p.bytes.clear();
                self.used += 1;
                self.used - 1
            }
        };
        let p = &mut self.parts[i];
        put_uvarint(&mut p.bytes, handle);
        put_svarint(&mut p.bytes, i64::from(q[0]) - i64::from(p.last[0]));
        put_svarint(&mut p.bytes, i64::from(q[1]) - i64::from(p.last[1]));
        p.last = q;
        self.count += 1;
    }

    /// Places collected since the last [`PlacesWriter::write`].
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no place was collected since the last [`PlacesWriter::write`].
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Write the places collected as datagrams of at most [`DATAGRAM_LIMIT`] bytes, appended to `out`, and empty
    /// the writer.
    pub fn write(&mut self, tick: u64, time: u64, out: &mut Vec<Vec<u8>>) {
        let mut head = Vec::with_capacity(21);
        head.push(DATAGRAM_TAG);
        put_uvarint64(&mut head, tick);
        put_uvarint64(&mut head, time);
        let mut dgram: Option<Vec<u8>> = None;
        for p in &mut self.parts[..self.used] {
            // Re-read the records to split between them; a section split starts again from (0, 0).
            let mut records = Places::new(&p.bytes);
            let mut section = Vec::new();
            let mut last = [0i32; 2];
            loop {
                let next = records.next();
                let room = DATAGRAM_LIMIT
                    - HEADER_ROOM
                    - dgram.as_ref().map_or(0, |d| d.len() - head.len());
                let full = next.is_some() && section.len() + MAX_PLACE > room;
                if (full || next.is_none()) && !section.is_empty() {
                    let d = dgram.get_or_insert_with(|| head.clone());
                    put_uvarint(d, p.table.0);
                    put_uvarint(d, u32::try_from(section.len()).expect("small"));
                    d.extend_from_slice(&section);
                    section.clear();
                    last = [0, 0];
                }
                let Some(place) = next else { break };
                if full {
                    out.extend(dgram.take());
                }
                put_uvarint(&mut section, place.handle);
                put_svarint(&mut section, i64::from(place.q[0]) - i64::from(last[0]));
                put_svarint(&mut section, i64::from(place.q[1]) - i64::from(last[1]));
                last = place.q;
            }
            p.bytes.clear();
        }
        out.extend(dgram);
        self.used = 0;
        self.count = 0;
    }
}

fn put_uvarint64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(dgrams: &[Vec<u8>]) -> Vec<(u64, u64, TableId, Place)> {
        let mut all = Vec::new();
        for d in dgrams {
            assert!(d.len() <= DATAGRAM_LIMIT, "{} bytes", d.len());
            let d = Datagram::parse(d).expect("parses");
            for (table, places) in d.sections() {
                all.extend(places.map(|p| (d.tick, d.time, table, p)));
            }
        }
        all
    }

    #[test]
    fn a_walk_costs_five_bytes_a_row_after_the_first() {
        let mut w = PlacesWriter::default();
        w.push(TableId(3), 0, [204_800, 204_800]);
        w.push(TableId(3), 1, [205_400, 204_100]);
        let mut out = Vec::new();
        w.write(1000, 1_700_000_000_000_000, &mut out);
        assert_eq!(out.len(), 1);
        // tag, tick (2), time (8), table, length, first place (1 + 3 + 3), second (1 + 2 + 2).
        assert_eq!(out[0].len(), 1 + 2 + 8 + 1 + 1 + 7 + 5);
        assert_eq!(
            read(&out),
            [
                (
                    1000,
                    1_700_000_000_000_000,
                    TableId(3),
                    Place {
                        handle: 0,
                        q: [204_800, 204_800]
                    }
                ),
                (
                    1000,
                    1_700_000_000_000_000,
                    TableId(3),
                    Place {
                        handle: 1,
                        q: [205_400, 204_100]
                    }
                ),
            ]
        );
        assert!(w.is_empty());
        let mut none = Vec::new();
        w.write(1001, 1, &mut none);
        assert!(none.is_empty(), "no places, no datagram");
    }

    #[test]
    fn damaged_datagrams_are_errors() {
        assert_eq!(Datagram::parse(&[]).unwrap_err(), DatagramError::Tag(None));
        assert_eq!(
            Datagram::parse(&[2, 0, 0]).unwrap_err(),
            DatagramError::Tag(Some(2))
        );
        assert_eq!(
            Datagram::parse(&[1, 5, 5]).unwrap_err(),
            DatagramError::Empty
        );
        assert_eq!(
            Datagram::parse(&[1, 0x80]).unwrap_err(),
            DatagramError::Header
        );
        // A section whose length runs past the end, one with an empty place list, one with half a record.
        assert!(matches!(
            Datagram::parse(&[1, 5, 5, 3, 4, 0, 0]),
            Err(DatagramError::Section(3))
        ));
        assert!(matches!(
            Datagram::parse(&[1, 5, 5, 3, 0]),
            Err(DatagramError::Section(3))
        ));
        assert!(matches!(
            Datagram::parse(&[1, 5, 5, 3, 2, 0, 0]),
            Err(DatagramError::Section(3))
        ));
        assert!(Datagram::parse(&[1, 5, 5, 3, 3, 0, 0, 0]).is_ok());
    }

    proptest! {
        /// Whatever a tick's places, the datagrams written hold exactly them, in order per table, each datagram
        /// within the limit.
        #[test]
        fn datagrams_read_back_as_written(
            places in prop::collection::vec((0u32..4, 0u32..100_000, -3_276_799i32..=3_276_799, -3_276_799i32..=3_276_799), 0..600),
            tick in any::<u64>(), time in any::<u64>(),
        ) {
            let mut w = PlacesWriter::default();
            for &(t, h, x, y) in &places {
                w.push(TableId(t), h, [x, y]);
            }
            prop_assert_eq!(w.len(), places.len());
            let mut out = Vec::new();
            w.write(tick, time, &mut out);
            let got = read(&out);
            prop_assert!(got.iter().all(|g| g.0 == tick && g.1 == time));
            for t in 0..4 {
                let want: Vec<_> = places.iter().filter(|p| p.0 == t).map(|p| Place { handle: p.1, q: [p.2, p.3] }).collect();
                let have: Vec<_> = got.iter().filter(|g| g.2 == TableId(t)).map(|g| g.3).collect();
                prop_assert_eq!(have, want);
            }
        }

        #[test]
        fn the_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(d) = Datagram::parse(&bytes) {
                for (_, places) in d.sections() {
                    let _ = places.count();
                }
            }
        }
    }
}

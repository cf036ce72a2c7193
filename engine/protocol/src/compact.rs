//! Protocol version 3's compact rows: per-session row **handles** and quantised **moves** (`protocol.md` §5).
//!
//! In a crowd, most of what a client is sent each tick is rows walking: the same row, one column changed, a few
//! centimetres. Version 2 sends each as a patch naming the row by its key with the new position as two `f32`s
//! (about 18 bytes in its `bin`); version 3 names each row in a client's view by a small per-session **handle**
//! and sends a walking row as a **move**: its handle and how far it moved in whole centimetres, about 3 bytes.
//!
//! - A **handle** is an unsigned integer the server gives a row of one table when the row enters a session's view
//!   (sent beside the insert), and that names it there until the row leaves (its delete) or the session gets a new
//!   `Welcome`. Handles are per table and reused: the server gives the smallest free one, so they stay below the
//!   number of rows in view and fit one byte for the first 128.
//! - A **move** changes only the row's spatial column (a `Vec2`, metres): `(handle, dx, dy)` with `dx`, `dy` in
//!   centimetres. The client holding `(x, y)` computes `qx = round(x · 100)` (half away from zero, in `f64`),
//!   then `x' = f32((qx + dx) / 100)` (and the same for `y`). The server computes `dx` from the position it last
//!   sent that client, quantised the same way, so positions a client holds after moves are the server's within
//!   0.5 cm, without drift.
//! - Varints: `handles` and `moves` are `bin`s of concatenated LEB128 varints (protobuf's encoding); `dx`, `dy` are
//!   zigzag-encoded (`0 → 0, -1 → 1, 1 → 2, …`).
//!
//! Invariants:
//! - [`quantize`] is `Some` exactly for finite coordinates below [`MOVE_LIMIT`] in magnitude, and for every such
//!   `q`, `quantize(dequantize(q)) == Some(q)`: a client that quantises what it holds gets back what the server
//!   last sent it.
//! - [`ViewRows`] gives each row in view a handle no other row of its table holds in that session, and after
//!   [`ViewRows::step`] returns `(h, d)`, the position the client holds (moved by `d`) quantises to the server's
//!   current one.
//! - [`Handles`] and [`Moves`] never panic: [`check_handles`] and [`check_moves`] accept exactly the `bin`s they
//!   read to the end.

use foldhash::fast::FixedState;
use hashbrown::HashMap;

use integer_encoding::VarInt;
use locus_types::TableId;

/// Centimetres in a metre: moves are in whole centimetres.
pub const PER_METRE: f64 = 100.0;

/// Moves carry coordinates below this magnitude, in metres (`2^15`): there an `f32` still holds every centimetre
/// (its spacing is at most 2 mm). A row beyond it is sent as a patch.
pub const MOVE_LIMIT: f32 = 32_768.0;

/// The centimetre a coordinate rounds to (half away from zero), or `None` if it is not finite or not below
/// [`MOVE_LIMIT`] in magnitude.
#[must_use]
pub fn quantize(v: f32) -> Option<i32> {
    if !v.is_finite() || v.abs() >= MOVE_LIMIT {
        return None;
    }
    // |v · 100| < 3.3 million: fits.
    Some((f64::from(v) * PER_METRE).round() as i32)
}

/// The coordinate a client holds for centimetre `q`: the `f32` nearest `q / 100`.
#[must_use]
pub fn dequantize(q: i32) -> f32 {
    (f64::from(q) / PER_METRE) as f32
}

/// A coordinate `held` moved by `d` centimetres, as a client applies a move; `None` if `held` cannot be quantised
/// or the result leaves the range of moves (a well-behaved server never sends such a move).
#[must_use]
pub fn moved(held: f32, d: i64) -> Option<f32> {
    let q = i64::from(quantize(held)?).checked_add(d)?;
    let q = i32::try_from(q).ok()?;
    let v = dequantize(q);
    quantize(v).map(|_| v)
}

/// Append `v` as an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0; 5];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Append `v` as a zigzag LEB128 varint.
pub fn put_svarint(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Read a `u32` varint at the start of `bytes`: the value and its length.
fn uvarint(bytes: &[u8]) -> Option<(u32, usize)> {
    u32::decode_var(bytes)
}

/// Read a zigzag `i64` varint at the start of `bytes`: the value and its length.
fn svarint(bytes: &[u8]) -> Option<(i64, usize)> {
    i64::decode_var(bytes)
}

/// Whether `bytes` is exactly `count` handles.
#[must_use]
pub fn check_handles(bytes: &[u8], count: usize) -> bool {
    let mut it = Handles { rest: bytes };
    (0..count).all(|_| it.next().is_some()) && it.rest.is_empty()
}

/// The number of moves in `bytes`, or `None` if it is not a whole number of move records.
#[must_use]
pub fn check_moves(bytes: &[u8]) -> Option<usize> {
    let mut it = Moves { rest: bytes };
    let mut n = 0;
    while !it.rest.is_empty() {
        it.next()?;
        n += 1;
    }
    Some(n)
}

/// The handles in a `handles` `bin`, in order. Ends at the first malformed varint (never after
/// [`check_handles`]).
#[derive(Clone, Debug, Default)]
pub struct Handles<'a> {
    rest: &'a [u8],
}

impl<'a> Handles<'a> {
    /// The handles in `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Handles<'a> {
        Handles { rest: bytes }
    }
}

impl Iterator for Handles<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (v, n) = uvarint(self.rest)?;
        self.rest = &self.rest[n..];
        Some(v)
    }
}

/// One move: a row's handle and how far its spatial column moved, in centimetres.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// The row's handle.
    pub handle: u32,
    /// Centimetres along x.
    pub dx: i64,
    /// Centimetres along y.
    pub dy: i64,
}

impl Move {
    /// Append this move's record.
    pub fn put(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.handle);
        put_svarint(out, self.dx);
        put_svarint(out, self.dy);
    }

    /// The bytes of this move's record.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.handle.required_space() + self.dx.required_space() + self.dy.required_space()
    }

    /// The position `held` after this move (see the [module docs](self)), or `None` if it cannot be applied.
    #[must_use]
    pub fn apply(&self, held: [f32; 2]) -> Option<[f32; 2]> {
        Some([moved(held[0], self.dx)?, moved(held[1], self.dy)?])
    }
}

/// The moves in a `moves` `bin`, in order. Ends at the first incomplete record (never after [`check_moves`]).
#[derive(Clone, Debug, Default)]
pub struct Moves<'a> {
    rest: &'a [u8],
}

impl<'a> Moves<'a> {
    /// The moves in `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Moves<'a> {
        Moves { rest: bytes }
    }
}

impl Iterator for Moves<'_> {
    type Item = Move;

    fn next(&mut self) -> Option<Move> {
        let (handle, a) = uvarint(self.rest)?;
        let (dx, b) = svarint(self.rest.get(a..)?)?;
        let (dy, c) = svarint(self.rest.get(a + b..)?)?;
        self.rest = &self.rest[a + b + c..];
        Some(Move { handle, dx, dy })
    }
}

/// The server's side of one session's handles: each row in its view (named by the caller's row id), the handle it
/// was given, and the position last sent for it, quantised. See the [module docs](self).
#[derive(Debug, Default)]
pub struct ViewRows {
    /// Row → slot (a fixed-seed hasher: a few lookups per row per client per tick).
    rows: HashMap<u32, Slot, FixedState>,
    /// Per table: the next never-given handle and the freed ones.
    tables: Vec<(TableId, Alloc)>,
    /// Ticks a freed handle rests before it is given again ([`ViewRows::set_rest`]; 0: at once).
    rest: u64,
    /// The tick being encoded ([`ViewRows::begin`]).
    now: u64,
}

#[derive(Debug, Default)]
struct Alloc {
    next: u32,
    /// Freed handles, given again smallest first.
    free: std::collections::BinaryHeap<std::cmp::Reverse<u32>>,
    /// Freed handles still resting: (the tick from which each may be given again, it), in that order.
    resting: std::collections::VecDeque<(u64, u32)>,
}

impl Alloc {
    fn take(&mut self, now: u64) -> u32 {
        while let Some(&(from, h)) = self.resting.front()
            && from <= now
        {
            self.resting.pop_front();
            self.free.push(std::cmp::Reverse(h));
        }
        match self.free.pop() {
            Some(std::cmp::Reverse(h)) => h,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }
}

/// A row in a session's view: its handle and the position last sent ([`ViewRows::get_mut`]).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    handle: u32,
    table: TableId,
    /// The position last sent, in centimetres, if the table is spatial and it could be quantised.
    q: Option<[i32; 2]>,
    /// Whether the row moved since `q` was sent and its move was held back ([`Slot::hold`]).
    held: bool,
    /// Whether `q` was last sent as a place in a datagram (protocol version 4), which may be lost: the row is sent
    /// on the stream once it is at rest ([`Slot::at_rest`]).
    loose: bool,
    /// The tick of the last [`Slot::place`].
    placed: u64,
    /// The tick of its latest move, sent or held back ([`Slot::moved_at`]; 0: none).
    moved: u64,
}

impl ViewRows {
    /// Forget every row (the session was sent a new `Welcome`: its client dropped every row).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.tables.clear();
    }

    /// Let a freed handle rest `ticks` ticks before it is given to another row (protocol version 4:
    /// [`crate::places::HANDLE_REST`]); 0, the default, gives it again at once.
    pub fn set_rest(&mut self, ticks: u64) {
        self.rest = ticks;
    }

    /// The tick now being encoded (for handles' rest).
    pub fn begin(&mut self, tick: u64) {
        self.now = tick;
    }

    /// Rows in view.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is in view.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn alloc(&mut self, table: TableId) -> &mut Alloc {
        let i = match self.tables.iter().position(|(t, _)| *t == table) {
            Some(i) => i,
            None => {
                self.tables.push((table, Alloc::default()));
                self.tables.len() - 1
            }
        };
        &mut self.tables[i].1
    }

    /// Row `row` of `table` enters the view, sent whole with its spatial column at `pos` (if the table has one):
    /// its new handle. (A row already in view keeps its handle and is treated as [`ViewRows::sent`].)
    pub fn enter(&mut self, row: u32, table: TableId, pos: Option<[f32; 2]>) -> u32 {
        let q = pos.and_then(quantize2);
        if let Some(slot) = self.rows.get_mut(&row) {
            (slot.q, slot.held, slot.loose) = (q, false, false);
            return slot.handle;
        }
        let now = self.now;
        let handle = self.alloc(table).take(now);
        self.rows.insert(
            row,
            Slot {
                handle,
                table,
                q,
                held: false,
                loose: false,
                placed: 0,
                moved: 0,
            },
        );
        handle
    }

    /// Row `row` leaves the view: its handle is free again (the client frees it on the delete).
    pub fn leave(&mut self, row: u32) {
        if let Some(slot) = self.rows.remove(&row) {
            let (rest, now) = (self.rest, self.now);
            let alloc = self.alloc(slot.table);
            if rest == 0 {
                alloc.free.push(std::cmp::Reverse(slot.handle));
            } else {
                alloc.resting.push_back((now + rest, slot.handle));
            }
        }
    }

    /// The handle of row `row`, if in view.
    #[must_use]
    pub fn handle(&self, row: u32) -> Option<u32> {
        self.rows.get(&row).map(|s| s.handle)
    }

    /// Row `row`'s slot, if in view: one lookup for everything the encoder does with the row in a tick.
    pub fn get_mut(&mut self, row: u32) -> Option<&mut Slot> {
        self.rows.get_mut(&row)
    }

    /// [`Slot::sent`] of row `row`, if in view.
    pub fn sent(&mut self, row: u32, pos: [f32; 2]) {
        if let Some(slot) = self.get_mut(row) {
            slot.sent(pos);
        }
    }

    /// [`Slot::hold`] of row `row`; `false` if not in view.
    pub fn hold(&mut self, row: u32) -> bool {
        self.get_mut(row).is_some_and(Slot::hold)
    }

    /// Whether row `row`'s latest move was held back and not sent since.
    #[must_use]
    pub fn is_held(&self, row: u32) -> bool {
        self.rows.get(&row).is_some_and(|s| s.held)
    }

    /// [`Slot::step`] of row `row`; `None` if not in view.
    pub fn step(&mut self, row: u32, pos: [f32; 2]) -> Option<Move> {
        self.get_mut(row)?.step(pos)
    }
}

impl Slot {
    /// The row's handle.
    #[must_use]
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Whether the row's latest move was held back and not sent since.
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// The row was sent with its spatial column at `pos` (a whole row, or a patch that includes the column).
    pub fn sent(&mut self, pos: [f32; 2]) {
        (self.q, self.held, self.loose) = (quantize2(pos), false, false);
    }

    /// The row moved to `pos` and nothing else of it changed, and it goes as a place in a datagram at `tick`
    /// (protocol version 4): the centimetres to send, if `pos` can be quantised (else send a patch and call
    /// [`Slot::sent`]). The row is then loose until sent on the stream.
    pub fn place(&mut self, pos: [f32; 2], tick: u64) -> Option<[i32; 2]> {
        let q = quantize2(pos)?;
        (self.q, self.held, self.loose, self.placed, self.moved) =
            (Some(q), false, true, tick, tick);
        Some(q)
    }

    /// The row moved at `tick` (its move sent, or held back).
    pub fn moved_at(&mut self, tick: u64) {
        self.moved = tick;
    }

    /// Whether a move of the row at `tick` goes as a place (protocol version 4): it is walking (it moved in the
    /// tick before too) or its position last went as a place. A first step from a position the stream gave goes
    /// as a move on the stream: a row stepping now and then is never loose, and costs no patch at rest.
    #[must_use]
    pub fn walking(&self, tick: u64) -> bool {
        self.loose || (self.moved != 0 && self.moved + 1 == tick)
    }

    /// Whether the row's position last went as a place, which may have been lost.
    #[must_use]
    pub fn is_loose(&self) -> bool {
        self.loose
    }

    /// Whether the row is loose, was last placed before `tick`, and is at `pos` now, where it was placed: it has
    /// stopped, and the stream should carry its position once (then [`Slot::sent`]).
    #[must_use]
    pub fn at_rest(&self, pos: [f32; 2], tick: u64) -> bool {
        self.loose && self.placed < tick && self.q.is_some() && self.q == quantize2(pos)
    }

    /// The row moved but its move is not sent this tick (a far row, sent less often): the client keeps the
    /// position last sent until a later [`Slot::step`] sends where the row is then. Returns whether the row can be
    /// held back (its position last sent is known); if not, send the change now.
    pub fn hold(&mut self) -> bool {
        self.held = self.q.is_some();
        self.held
    }

    /// The row moved to `pos` and nothing else of it changed: its move, if it can be sent as one (the position
    /// last sent is known and both are within [`MOVE_LIMIT`]); the position is then recorded as sent. `None`: send
    /// the change as a patch (and call [`Slot::sent`]).
    pub fn step(&mut self, pos: [f32; 2]) -> Option<Move> {
        let (old, new) = (self.q?, quantize2(pos)?);
        (self.q, self.held) = (Some(new), false);
        Some(Move {
            handle: self.handle,
            dx: i64::from(new[0]) - i64::from(old[0]),
            dy: i64::from(new[1]) - i64::from(old[1]),
        })
    }
}

fn quantize2(pos: [f32; 2]) -> Option<[i32; 2]> {
    Some([quantize(pos[0])?, quantize(pos[1])?])
}

/// What a version-3 `Tick` says about one row ([`TickWriter::push`]).
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// The row enters the view with this handle: its bytes.
    Insert(&'a [u8], u32),
    /// The row changed: its new bytes.
    Update(&'a [u8]),
    /// The row left the view: its key's bytes.
    Delete(&'a [u8]),
    /// Some columns changed: the row's handle, the number of (column, value) pairs and their bytes (a version-2
    /// patch after its array header and key).
    Patch(u32, u32, &'a [u8]),
    /// Only the spatial column changed.
    Move(Move),
}

/// One table's part of a [`TickWriter`]: each list already encoded (its `bin`s one after the other) with its
/// length, and the `handles` and `moves` bytes.
#[derive(Debug, Default)]
struct Part {
    table: TableId,
    /// Inserts, updates, deletes, patches.
    lists: [(u32, Vec<u8>); 4],
    handles: Vec<u8>,
    moves: Vec<u8>,
}

impl Part {
    fn clear(&mut self) {
        for (n, bytes) in &mut self.lists {
            *n = 0;
            bytes.clear();
        }
        self.handles.clear();
        self.moves.clear();
    }
}

/// A version-3 `Tick` message being filled: [`TickWriter::write`] writes it as one frame with exactly the bytes
/// `encode_frame` writes for the [`ServerMessage::Tick`](crate::ServerMessage::Tick) with the same content (each
/// delta with all 7 fields). It copies what it is given, and keeps its buffers from one message to the next (keep
/// one per session: after the first ticks it allocates nothing).
#[derive(Debug, Default)]
pub struct TickWriter {
    /// The first `used` are this message's.
    parts: Vec<Part>,
    used: usize,
    size: usize,
}

impl TickWriter {
    /// Add one change of a row of `table`.
    pub fn push(&mut self, table: TableId, change: Change<'_>) {
        // A client's delta spans a handful of tables: a linear search beats a map.
        let i = match self.parts[..self.used]
            .iter()
            .position(|p| p.table == table)
        {
            Some(i) => i,
            None => {
                if self.used == self.parts.len() {
                    self.parts.push(Part::default());
                }
                self.parts[self.used].table = table;
                self.used += 1;
                self.used - 1
            }
        };
        let part = &mut self.parts[i];
        let before = part.lists.iter().map(|l| l.1.len()).sum::<usize>()
            + part.handles.len()
            + part.moves.len();
        let bin = |list: &mut (u32, Vec<u8>), bytes: &[u8]| {
            list.0 += 1;
            rmp::encode::write_bin(&mut list.1, bytes).expect("Vec write");
        };
        match change {
            Change::Insert(row, handle) => {
                bin(&mut part.lists[0], row);
                put_uvarint(&mut part.handles, handle);
            }
            Change::Update(row) => bin(&mut part.lists[1], row),
            Change::Delete(key) => bin(&mut part.lists[2], key),
            Change::Patch(handle, pairs, bytes) => {
                // The array header and the handle: at most 5 + 9 bytes.
                let mut head = [0u8; 16];
                let n = {
                    let mut at = &mut head[..];
                    rmp::encode::write_array_len(&mut at, 1 + 2 * pairs).expect("fits");
                    rmp::encode::write_uint(&mut at, u64::from(handle)).expect("fits");
                    16 - at.len()
                };
                let list = &mut part.lists[3];
                list.0 += 1;
                let len = u32::try_from(n + bytes.len()).expect("a patch below 4 GiB");
                rmp::encode::write_bin_len(&mut list.1, len).expect("Vec write");
                list.1.extend_from_slice(&head[..n]);
                list.1.extend_from_slice(bytes);
            }
            Change::Move(m) => m.put(&mut part.moves),
        }
        let after = part.lists.iter().map(|l| l.1.len()).sum::<usize>()
            + part.handles.len()
            + part.moves.len();
        self.size += after - before;
    }

    /// About how many bytes the message holds so far (to split a large delta over several frames).
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Append the message as one frame to `out` (nothing if empty), and empty the writer.
    pub fn write(&mut self, tick: u64, time: u64, out: &mut Vec<u8>) {
        use rmp::encode::{write_array_len, write_bin, write_map_len, write_str, write_uint};
        if self.used == 0 {
            return;
        }
        // Writing to a `Vec` cannot fail.
        macro_rules! w {
            ($e:expr) => {
                $e.expect("Vec write")
            };
        }
        let start = out.len();
        out.extend_from_slice(&[0; crate::FRAME_PREFIX]);
        w!(write_map_len(out, 1));
        w!(write_str(out, "Tick"));
        w!(write_array_len(out, 3));
        w!(write_uint(out, tick));
        w!(write_uint(out, time));
        w!(write_array_len(out, self.used as u32));
        for p in &mut self.parts[..self.used] {
            w!(write_array_len(out, 7));
            w!(write_uint(out, u64::from(p.table.0)));
            for (n, bytes) in &p.lists {
                w!(write_array_len(out, *n));
                out.extend_from_slice(bytes);
            }
            w!(write_bin(out, &p.handles));
            w!(write_bin(out, &p.moves));
            p.clear();
        }
        let len =
            u32::try_from(out.len() - start - crate::FRAME_PREFIX).expect("frame below 4 GiB");
        out[start..start + crate::FRAME_PREFIX].copy_from_slice(&len.to_be_bytes());
        self.used = 0;
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn varints_are_protobufs() {
        let mut out = Vec::new();
        put_uvarint(&mut out, 1);
        put_uvarint(&mut out, 300);
        put_svarint(&mut out, -1);
        put_svarint(&mut out, 25);
        assert_eq!(out, [0x01, 0xac, 0x02, 0x01, 0x32]);
    }

    #[test]
    fn a_move_is_three_bytes_for_a_walk() {
        let mut out = Vec::new();
        Move {
            handle: 5,
            dx: 25,
            dy: -7,
        }
        .put(&mut out);
        assert_eq!(out, [0x05, 0x32, 0x0d]);
        assert_eq!(
            Move {
                handle: 300,
                dx: -7000,
                dy: 0
            }
            .encoded_len(),
            2 + 2 + 1
        );
        assert_eq!(check_moves(&out), Some(1));
        assert_eq!(
            Moves::new(&out).collect::<Vec<_>>(),
            [Move {
                handle: 5,
                dx: 25,
                dy: -7
            }]
        );
        assert_eq!(check_moves(&out[..2]), None);
    }

    #[test]
    fn handles_are_small_and_reused_per_table() {
        let mut v = ViewRows::default();
        let (a, b) = (TableId(1), TableId(2));
        assert_eq!(v.enter(10, a, None), 0);
        assert_eq!(v.enter(11, a, None), 1);
        assert_eq!(v.enter(12, b, None), 0);
        assert_eq!(v.enter(13, a, None), 2);
        v.leave(11);
        v.leave(10);
        assert_eq!(v.enter(14, a, None), 0, "the smallest free handle");
        assert_eq!(v.enter(15, a, None), 1);
        assert_eq!(v.enter(16, a, None), 3);
        assert_eq!(v.handle(13), Some(2));
        assert_eq!(v.handle(11), None);
        v.clear();
        assert_eq!(v.enter(13, a, None), 0);
    }

    /// Version 4: a freed handle rests `HANDLE_REST` ticks before another row gets it, and a placed row is loose
    /// until sent on the stream, at rest only from the tick after its last place and only where it was placed.
    #[test]
    fn handles_rest_and_placed_rows_are_loose_until_sent() {
        let mut v = ViewRows::default();
        v.set_rest(crate::places::HANDLE_REST);
        let t = TableId(1);
        v.begin(10);
        assert_eq!(v.enter(1, t, Some([1.0, 1.0])), 0);
        assert_eq!(v.enter(2, t, Some([2.0, 2.0])), 1);
        v.leave(1);
        assert_eq!(v.enter(3, t, None), 2, "handle 0 rests");
        v.begin(10 + crate::places::HANDLE_REST - 1);
        assert_eq!(v.enter(4, t, None), 3, "still resting");
        v.begin(10 + crate::places::HANDLE_REST);
        assert_eq!(v.enter(5, t, None), 0, "rested");
        let slot = v.get_mut(2).expect("in view");
        assert!(!slot.is_loose());
        assert_eq!(slot.place([2.5, 2.0], 20), Some([250, 200]));
        assert!(slot.is_loose());
        assert!(!slot.at_rest([2.5, 2.0], 20), "placed this tick");
        assert!(
            !slot.at_rest([2.6, 2.0], 21),
            "moved since (not placed: held back or over budget)"
        );
        assert!(slot.at_rest([2.5, 2.0], 21), "stopped where placed");
        slot.sent([2.5, 2.0]);
        assert!(!slot.is_loose() && !slot.at_rest([2.5, 2.0], 22));
        assert_eq!(
            slot.place([f32::NAN, 0.0], 23),
            None,
            "not quantisable: send it exactly"
        );
        // A first step (from a position the stream gave) is not walking; a step in the tick after one is.
        assert!(!slot.walking(30));
        slot.moved_at(30);
        assert!(slot.walking(31) && !slot.walking(32));
        assert_eq!(slot.place([3.0, 2.0], 31), Some([300, 200]));
        assert!(slot.walking(40), "loose: places until sent on the stream");
        // Without rest (versions 3 and below, the default) a freed handle is given again at once.
        let mut v3 = ViewRows::default();
        v3.enter(1, t, None);
        v3.leave(1);
        assert_eq!(v3.enter(2, t, None), 0);
    }

    #[test]
    fn moves_are_from_what_was_last_sent_and_far_rows_are_patches() {
        let mut v = ViewRows::default();
        v.enter(1, TableId(0), Some([10.0, 20.0]));
        assert_eq!(
            v.step(1, [10.25, 19.5]),
            Some(Move {
                handle: 0,
                dx: 25,
                dy: -50
            })
        );
        // Sub-centimetre steps add up from the quantised position, not from the rounded steps.
        assert_eq!(v.step(1, [10.254, 19.5]).map(|m| m.dx), Some(0));
        assert_eq!(v.step(1, [10.258, 19.5]).map(|m| m.dx), Some(1));
        assert_eq!(v.step(1, [40_000.0, 0.0]), None);
        assert_eq!(v.step(2, [1.0, 1.0]), None, "not in view");
        // A held-back move: the next step is from the position last sent.
        v.sent(1, [10.0, 20.0]);
        assert!(v.hold(1) && v.is_held(1));
        assert_eq!(v.step(1, [10.5, 20.0]).map(|m| (m.dx, m.dy)), Some((50, 0)));
        assert!(!v.is_held(1));
        v.enter(3, TableId(0), None);
        assert!(!v.hold(3), "nothing to hold a move against");
        assert_eq!(v.step(3, [1.0, 1.0]), None, "no position sent yet");
        v.sent(3, [1.0, 1.0]);
        assert!(v.step(3, [1.5, 1.0]).is_some());
    }

    #[test]
    fn the_writer_writes_what_serde_writes_for_the_same_message() {
        use crate::{ServerMessage, TableDelta, WireRow, encode_frame};
        let (row, key) = (vec![0x92, 0x05, 0xc3], vec![0x05]);
        let mut w = TickWriter::default();
        w.push(TableId(300), Change::Delete(&key));
        w.push(TableId(2), Change::Update(&row));
        w.push(TableId(300), Change::Insert(&row, 200));
        w.push(TableId(300), Change::Patch(9, 1, &[0x02, 0x5a]));
        w.push(
            TableId(2),
            Change::Move(Move {
                handle: 1,
                dx: -300,
                dy: 0,
            }),
        );
        let mut out = Vec::new();
        w.write(70_000, 1 << 40, &mut out);
        assert_eq!(w.size(), 0);
        let mut moves = Vec::new();
        Move {
            handle: 1,
            dx: -300,
            dy: 0,
        }
        .put(&mut moves);
        let message = ServerMessage::Tick {
            tick: 70_000,
            time: 1 << 40,
            tables: vec![
                TableDelta {
                    table: TableId(300),
                    inserts: vec![WireRow(row.clone())],
                    deletes: vec![WireRow(key.clone())],
                    patches: vec![WireRow(vec![0x93, 0x09, 0x02, 0x5a])],
                    handles: Some(WireRow(vec![0xc8, 0x01])),
                    moves: Some(WireRow(vec![])),
                    ..TableDelta::default()
                },
                TableDelta {
                    table: TableId(2),
                    updates: vec![WireRow(row.clone())],
                    handles: Some(WireRow(vec![])),
                    moves: Some(WireRow(moves)),
                    ..TableDelta::default()
                },
            ],
        };
        let mut want = Vec::new();
        encode_frame(&message, &mut want);
        assert_eq!(out, want);
        // An empty writer writes nothing.
        w.write(1, 1, &mut out);
        assert_eq!(out, want);
    }

    proptest! {
        #[test]
        fn quantizing_what_a_client_holds_gives_back_what_was_sent(q in -3_276_799i32..=3_276_799) {
            prop_assert_eq!(quantize(dequantize(q)), Some(q));
        }

        /// A client applying the moves of a walk holds positions within 0.5 cm of the server's (plus the `f32`
        /// spacing), however long.
        #[test]
        fn a_client_following_moves_never_drifts(
            start in (-30_000.0f32..30_000.0, -30_000.0f32..30_000.0),
            steps in prop::collection::vec((-3.0f32..3.0, -3.0f32..3.0), 1..200),
        ) {
            let mut v = ViewRows::default();
            let mut server = [start.0, start.1];
            v.enter(7, TableId(1), Some(server));
            let mut client = server;
            for (dx, dy) in steps {
                server = [(server[0] + dx).clamp(-32_000.0, 32_000.0), (server[1] + dy).clamp(-32_000.0, 32_000.0)];
                let m = v.step(7, server).expect("in range");
                client = m.apply(client).expect("applies");
                for i in 0..2 {
                    // Half a centimetre, plus half the f32 spacing of what the client holds (≤ 2^-10 m here).
                    prop_assert!((f64::from(client[i]) - f64::from(server[i])).abs() <= 0.005 + 1.0 / 1024.0,
                        "client {client:?} server {server:?}");
                    prop_assert_eq!(quantize(client[i]), quantize(server[i]));
                }
            }
        }

        #[test]
        fn varint_readers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40), n in 0usize..10) {
            let _ = check_handles(&bytes, n);
            if let Some(count) = check_moves(&bytes) {
                prop_assert_eq!(Moves::new(&bytes).count(), count);
            }
            let _ = Handles::new(&bytes).count();
        }
    }
}

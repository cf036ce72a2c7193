//! The byte layouts of segment and snapshot files, as pure functions over byte slices (no I/O).
//!
//! `engine/docs/storage.md` draws every layout here; the two must agree byte for byte. All integers are
//! little-endian; every checksum is CRC-32C (Castagnoli).
//!
//! # Segments
//!
//! A segment file `log-<first tick, 20 digits>.seg` is a [segment header](SEGMENT_HEADER_LEN) followed by
//! records. A record is a [record header](RECORD_HEADER_LEN) and a payload:
//!
//! - the header carries the payload's length and checksum, the record's tick and the tick of the record before it
//!   (`prev_tick`, 0 for the first record ever), and a checksum of itself, so a damaged length is never trusted;
//! - the payload holds the tick's transactions in commit order, each a list of per-table changes: deletes (the
//!   old rows), updates (the new rows) and inserts (the new rows), plus the table's new auto_inc value if it moved.
//!
//! `prev_tick` chains the records: a missing record or segment breaks the chain and is reported.
//!
//! # Snapshots
//!
//! A snapshot file `snap-<tick, 20 digits>.snap` is a magic and version followed by blocks, each a length, a
//! checksum and a payload whose first byte is its kind: one header block (tick, schema), then per table a table
//! block and row blocks, then an end block.

use locus_store::{Changeset, Database, FrozenTable, Table};
use locus_types::{TableDef, TableId, Tick};

/// The magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LOCUSLOG";
/// The magic at the start of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LOCUSSNP";
/// The version of both file formats described here.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes in a segment header: magic (8), version (4), first tick (8), CRC-32C of the 20 bytes before (4).
pub const SEGMENT_HEADER_LEN: usize = 24;
/// Bytes in a record header: payload length (4), tick (8), previous record's tick (8), payload CRC-32C (4), and
/// the CRC-32C of the 24 bytes before (4).
pub const RECORD_HEADER_LEN: usize = 28;
/// The largest payload a record may have (1 GiB).
pub const MAX_PAYLOAD: usize = 1 << 30;
/// Bytes at the start of a snapshot file before its first block: magic (8) and version (4).
pub const SNAPSHOT_PREAMBLE_LEN: usize = 12;
/// Bytes in a snapshot block header: payload length (4) and payload CRC-32C (4).
pub const BLOCK_HEADER_LEN: usize = 8;
/// Snapshot block kind: the header (tick, table count, schema).
pub const BLOCK_HEADER: u8 = 1;
/// Snapshot block kind: a table (id, next auto_inc value, row count).
pub const BLOCK_TABLE: u8 = 2;
/// Snapshot block kind: rows of a table.
pub const BLOCK_ROWS: u8 = 3;
/// Snapshot block kind: the end (tick again, total row count).
pub const BLOCK_END: u8 = 4;
/// Row blocks are closed once their payload reaches this many bytes (1 MiB), so a damaged block names a small
/// region of the file.
pub const ROWS_BLOCK_TARGET: usize = 1 << 20;

/// A table change flag: the table's auto_inc sequence moved, and its new next value follows.
const FLAG_NEXT_AUTO_INC: u8 = 1;

/// The name of the segment whose first record has tick `first`.
#[must_use]
pub fn segment_name(first: Tick) -> String {
    format!("log-{:020}.seg", first.0)
}

/// The name of the snapshot taken at tick `tick`.
#[must_use]
pub fn snapshot_name(tick: Tick) -> String {
    format!("snap-{:020}.snap", tick.0)
}

/// The suffix of a snapshot being written, before its atomic rename.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The tick in a segment file's name, if `name` is one.
#[must_use]
pub fn parse_segment_name(name: &str) -> Option<Tick> {
    parse_numbered(name, "log-", ".seg")
}

/// The tick in a snapshot file's name, if `name` is one.
#[must_use]
pub fn parse_snapshot_name(name: &str) -> Option<Tick> {
    parse_numbered(name, "snap-", ".snap")
}

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<Tick> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Tick)
}

/// A segment header for a segment whose first record has tick `first`.
#[must_use]
pub fn segment_header(first: Tick) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first.0.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What is wrong with a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentHeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Short,
    /// The magic is not [`SEGMENT_MAGIC`].
    Magic,
    /// The checksum does not match.
    Checksum,
    /// An unknown format version.
    Version(u32),
}

/// Parse a segment header at the start of `bytes`; returns the segment's first tick.
///
/// # Errors
///
/// A [`SegmentHeaderError`].
pub fn parse_segment_header(bytes: &[u8]) -> Result<Tick, SegmentHeaderError> {
    let h = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(SegmentHeaderError::Short)?;
    if h[0..8] != SEGMENT_MAGIC {
        return Err(SegmentHeaderError::Magic);
    }
    if crc32c::crc32c(&h[0..20]) != u32_at(h, 20) {
        return Err(SegmentHeaderError::Checksum);
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return Err(SegmentHeaderError::Version(version));
    }
    Ok(Tick(u64_at(h, 12)))
}

/// A parsed record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// The record's tick.
    pub tick: Tick,
    /// The tick of the record before it in the log (0 for the first record ever).
    pub prev_tick: Tick,
    /// CRC-32C of the payload.
    pub payload_crc: u32,
}

/// What is wrong with a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordHeaderError {
    /// Fewer than [`RECORD_HEADER_LEN`] bytes.
    Short,
    /// The header's own checksum does not match.
    Checksum,
    /// The payload length is above [`MAX_PAYLOAD`].
    TooLong(u32),
}

/// Parse a record header at the start of `bytes`.
///
/// # Errors
///
/// A [`RecordHeaderError`].
pub fn parse_record_header(bytes: &[u8]) -> Result<RecordHeader, RecordHeaderError> {
    let h = bytes
        .get(..RECORD_HEADER_LEN)
        .ok_or(RecordHeaderError::Short)?;
    if crc32c::crc32c(&h[0..24]) != u32_at(h, 24) {
        return Err(RecordHeaderError::Checksum);
    }
    let len = u32_at(h, 0);
    if len as usize > MAX_PAYLOAD {
        return Err(RecordHeaderError::TooLong(len));
    }
    Ok(RecordHeader {
        len,
        tick: Tick(u64_at(h, 4)),
        prev_tick: Tick(u64_at(h, 12)),
        payload_crc: u32_at(h, 20),
    })
}

/// One tick's record, encoded, ready to be appended: [`RECORD_HEADER_LEN`] bytes of header (filled in by
/// [`EncodedRecord::seal`]) followed by the payload.
///
/// Build it on the tick thread with [`EncodedRecord::new`] and one [`push`](EncodedRecord::push) per committed
/// transaction; the rows are copied as they are, so encoding is a memcpy.
#[derive(Clone, Debug)]
pub struct EncodedRecord {
    tick: Tick,
    transactions: u32,
    rows: u64,
    buf: Vec<u8>,
}

impl EncodedRecord {
    /// An empty record for tick `tick`.
    #[must_use]
    pub fn new(tick: Tick) -> EncodedRecord {
        let mut buf = Vec::with_capacity(4096);
        buf.resize(RECORD_HEADER_LEN + 4, 0);
        EncodedRecord {
            tick,
            transactions: 0,
            rows: 0,
            buf,
        }
    }

    /// A record for tick `tick` holding `changesets`, one per transaction, in commit order. Empty changesets are
    /// left out.
    #[must_use]
    pub fn from_changesets<'c>(
        tick: Tick,
        changesets: impl IntoIterator<Item = &'c Changeset>,
    ) -> EncodedRecord {
        let mut record = EncodedRecord::new(tick);
        for c in changesets {
            record.push(c);
        }
        record
    }

    /// Add one committed transaction's changes (after those already pushed). An empty changeset adds nothing.
    ///
    /// # Panics
    ///
    /// If a row is longer than `u32::MAX` bytes (the store's rows are far smaller).
    pub fn push(&mut self, changeset: &Changeset) {
        if changeset.is_empty() {
            return;
        }
        let b = &mut self.buf;
        put_u32(b, changeset.tables.len() as u32);
        for t in &changeset.tables {
            put_u32(b, t.table.0);
            match t.next_auto_inc {
                Some(next) => {
                    b.push(FLAG_NEXT_AUTO_INC);
                    b.extend_from_slice(&next.to_le_bytes());
                }
                None => b.push(0),
            }
            put_u32(b, t.deletes.len() as u32);
            put_u32(b, t.updates.len() as u32);
            put_u32(b, t.inserts.len() as u32);
            for row in &t.deletes {
                put_bytes(b, row);
            }
            for u in &t.updates {
                put_bytes(b, &u.new);
            }
            for row in &t.inserts {
                put_bytes(b, row);
            }
        }
        self.transactions += 1;
        self.rows += changeset.row_count() as u64;
    }

    /// The record's tick.
    #[must_use]
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// How many transactions it holds.
    #[must_use]
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// How many row changes (inserts, deletes, updates) it holds.
    #[must_use]
    pub fn row_changes(&self) -> u64 {
        self.rows
    }

    /// Whether it holds no transaction (such a record is never written).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.transactions == 0
    }

    /// The payload length in bytes.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.buf.len() - RECORD_HEADER_LEN
    }

    /// Fill in the header, with `prev_tick` the tick of the record before it, and return the whole record.
    ///
    /// # Panics
    ///
    /// If the payload is longer than [`MAX_PAYLOAD`] ([`Log::append`](crate::Log::append) checks first).
    pub fn seal(&mut self, prev_tick: Tick) -> &[u8] {
        let payload_len = self.payload_len();
        assert!(
            payload_len <= MAX_PAYLOAD,
            "a tick record of {payload_len} bytes is over the 1 GiB limit"
        );
        let count = self.transactions.to_le_bytes();
        self.buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + 4].copy_from_slice(&count);
        let payload_crc = crc32c::crc32c(&self.buf[RECORD_HEADER_LEN..]);
        let h = &mut self.buf[..RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        h[4..12].copy_from_slice(&self.tick.0.to_le_bytes());
        h[12..20].copy_from_slice(&prev_tick.0.to_le_bytes());
        h[20..24].copy_from_slice(&payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..24]);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        &self.buf
    }
}

/// A payload that passed its checksum but does not parse: written by a different format or a bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedPayload {
    /// Offset within the payload where parsing failed.
    pub at: usize,
    /// What was expected there.
    pub expected: &'static str,
}

/// A little-endian cursor over a byte slice; every read is bounds-checked.
#[derive(Clone, Debug)]
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, expected: &'static str) -> Result<&'a [u8], MalformedPayload> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(MalformedPayload {
                at: self.at,
                expected,
            }),
        }
    }

    fn u8(&mut self, expected: &'static str) -> Result<u8, MalformedPayload> {
        Ok(self.take(1, expected)?[0])
    }

    fn u32(&mut self, expected: &'static str) -> Result<u32, MalformedPayload> {
        Ok(u32_at(self.take(4, expected)?, 0))
    }

    fn u64(&mut self, expected: &'static str) -> Result<u64, MalformedPayload> {
        Ok(u64_at(self.take(8, expected)?, 0))
    }

    /// Skip `count` length-prefixed rows; returns the bytes they span.
    fn rows(&mut self, count: u32, expected: &'static str) -> Result<Rows<'a>, MalformedPayload> {
        let start = self.at;
        for _ in 0..count {
            let len = self.u32(expected)? as usize;
            self.take(len, expected)?;
        }
        Ok(Rows {
            bytes: &self.bytes[start..self.at],
        })
    }
}

/// Length-prefixed rows inside a payload, already bounds-checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rows<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for Rows<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.bytes.is_empty() {
            return None;
        }
        let len = u32_at(self.bytes, 0) as usize;
        let row = &self.bytes[4..4 + len];
        self.bytes = &self.bytes[4 + len..];
        Some(row)
    }
}

/// One table's changes in one logged transaction.
#[derive(Clone, Copy, Debug)]
pub struct TableChanges<'a> {
    /// The table.
    pub table: TableId,
    /// Its auto_inc sequence's new next value, if it moved.
    pub next_auto_inc: Option<u64>,
    /// Deleted rows, as they were.
    pub deletes: Rows<'a>,
    /// Updated rows, as they are now.
    pub updates: Rows<'a>,
    /// Inserted rows.
    pub inserts: Rows<'a>,
}

/// Reads the transactions of a record's payload one at a time.
#[derive(Clone, Debug)]
pub struct PayloadReader<'a> {
    cursor: Cursor<'a>,
    remaining: u32,
}

impl<'a> PayloadReader<'a> {
    /// Start reading `payload`.
    ///
    /// # Errors
    ///
    /// [`MalformedPayload`] if it has no transaction count.
    pub fn new(payload: &'a [u8]) -> Result<PayloadReader<'a>, MalformedPayload> {
        let mut cursor = Cursor {
            bytes: payload,
            at: 0,
        };
        let remaining = cursor.u32("transaction count")?;
        Ok(PayloadReader { cursor, remaining })
    }

    /// How many transactions are left.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Read the next transaction's table changes into `out` (cleared first). Returns `false` when there are no
    /// more transactions.
    ///
    /// # Errors
    ///
    /// [`MalformedPayload`] where the payload does not parse, including bytes left after the last transaction.
    pub fn next_into(&mut self, out: &mut Vec<TableChanges<'a>>) -> Result<bool, MalformedPayload> {
        out.clear();
        if self.remaining == 0 {
            if self.cursor.at != self.cursor.bytes.len() {
                return Err(MalformedPayload {
                    at: self.cursor.at,
                    expected: "end of payload",
                });
            }
            return Ok(false);
        }
        self.remaining -= 1;
        let c = &mut self.cursor;
        let tables = c.u32("table count")?;
        for _ in 0..tables {
            let table = TableId(c.u32("table id")?);
            let next_auto_inc = match c.u8("flags")? {
                0 => None,
                FLAG_NEXT_AUTO_INC => Some(c.u64("next auto_inc value")?),
                _ => {
                    return Err(MalformedPayload {
                        at: c.at - 1,
                        expected: "flags 0 or 1",
                    });
                }
            };
            let d = c.u32("delete count")?;
            let u = c.u32("update count")?;
            let i = c.u32("insert count")?;
            let deletes = c.rows(d, "deleted row")?;
            let updates = c.rows(u, "updated row")?;
            let inserts = c.rows(i, "inserted row")?;
            out.push(TableChanges {
                table,
                next_auto_inc,
                deletes,
                updates,
                inserts,
            });
        }
        Ok(true)
    }
}

/// What a snapshot reads of a table: a live [`Table`] or a [`FrozenTable`] image of one.
trait TableImage {
    fn id(&self) -> TableId;
    fn def(&self) -> &TableDef;
    fn next_auto_inc(&self) -> u64;
    fn len(&self) -> usize;
    fn rows(&self) -> impl Iterator<Item = &[u8]>;
}

impl TableImage for Table {
    fn id(&self) -> TableId {
        Table::id(self)
    }
    fn def(&self) -> &TableDef {
        Table::def(self)
    }
    fn next_auto_inc(&self) -> u64 {
        Table::next_auto_inc(self)
    }
    fn len(&self) -> usize {
        Table::len(self)
    }
    fn rows(&self) -> impl Iterator<Item = &[u8]> {
        self.iter()
    }
}

impl TableImage for FrozenTable {
    fn id(&self) -> TableId {
        FrozenTable::id(self)
    }
    fn def(&self) -> &TableDef {
        FrozenTable::def(self)
    }
    fn next_auto_inc(&self) -> u64 {
        FrozenTable::next_auto_inc(self)
    }
    fn len(&self) -> usize {
        FrozenTable::len(self)
    }
    fn rows(&self) -> impl Iterator<Item = &[u8]> {
        self.iter()
    }
}

/// A full image of a database at a tick, encoded, ready to be written.
#[derive(Clone, Debug)]
pub struct EncodedSnapshot {
    tick: Tick,
    rows: u64,
    bytes: Vec<u8>,
}

impl EncodedSnapshot {
    /// Encode every table of `db` (schema, auto_inc sequence, rows) as the state after tick `tick`.
    ///
    /// # Panics
    ///
    /// If the schema cannot be encoded (it always can: table definitions are plain data).
    #[must_use]
    pub fn new(tick: Tick, db: &Database) -> EncodedSnapshot {
        EncodedSnapshot::of_tables(tick, &db.tables().collect::<Vec<_>>())
    }

    /// Encode `tables` as the whole database after tick `tick`, as [`EncodedSnapshot::new`] does for a database's
    /// tables: for a database about to change its tables (a module upgrade's migrated tables, built aside), whose
    /// snapshot must be durable before the change is made. `tables` must be in id order, their ids `0..n`.
    ///
    /// # Panics
    ///
    /// If the schema cannot be encoded (it always can: table definitions are plain data).
    #[must_use]
    pub fn of_tables(tick: Tick, tables: &[&Table]) -> EncodedSnapshot {
        EncodedSnapshot::encode(tick, tables)
    }

    /// Encode images of every table of a database ([`Database::freeze`], in id order) as the state after tick
    /// `tick`: the same bytes [`EncodedSnapshot::new`] gives for the database as it was when the images were taken.
    /// It reads only the images, so it can run on another thread while the database goes on changing (the
    /// durability thread does, for [`Durability::snapshot_frozen`](crate::Durability::snapshot_frozen)).
    ///
    /// # Panics
    ///
    /// If the schema cannot be encoded (it always can: table definitions are plain data).
    #[must_use]
    pub fn of_frozen(tick: Tick, tables: &[FrozenTable]) -> EncodedSnapshot {
        EncodedSnapshot::encode(tick, &tables.iter().collect::<Vec<_>>())
    }

    fn encode<T: TableImage>(tick: Tick, tables: &[&T]) -> EncodedSnapshot {
        debug_assert!(
            tables
                .iter()
                .enumerate()
                .all(|(i, t)| t.id().0 as usize == i),
            "tables in id order"
        );
        let defs: Vec<&TableDef> = tables.iter().map(|t| t.def()).collect();
        let schema = rmp_serde::to_vec_named(&defs).expect("table definitions encode");
        let mut bytes = Vec::with_capacity(
            64 + schema.len() + tables.iter().map(|t| t.len() * 64).sum::<usize>(),
        );
        bytes.extend_from_slice(&SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let mut block = BlockWriter::start(&mut bytes, BLOCK_HEADER);
        block.put(&tick.0.to_le_bytes());
        block.put(&(defs.len() as u32).to_le_bytes());
        block.put(&(schema.len() as u32).to_le_bytes());
        block.put(&schema);
        block.finish();
        let mut total = 0u64;
        for table in tables {
            let mut block = BlockWriter::start(&mut bytes, BLOCK_TABLE);
            block.put(&table.id().0.to_le_bytes());
            block.put(&table.next_auto_inc().to_le_bytes());
            block.put(&(table.len() as u64).to_le_bytes());
            block.finish();
            let mut rows = table.rows().peekable();
            while rows.peek().is_some() {
                let mut block = BlockWriter::start(&mut bytes, BLOCK_ROWS);
                block.put(&table.id().0.to_le_bytes());
                let count_at = block.reserve(4);
                let mut count = 0u32;
                while block.len() < ROWS_BLOCK_TARGET {
                    let Some(row) = rows.next() else { break };
                    block.put(&(row.len() as u32).to_le_bytes());
                    block.put(row);
                    count += 1;
                }
                block.patch(count_at, &count.to_le_bytes());
                block.finish();
                total += u64::from(count);
            }
        }
        let mut block = BlockWriter::start(&mut bytes, BLOCK_END);
        block.put(&tick.0.to_le_bytes());
        block.put(&total.to_le_bytes());
        block.finish();
        EncodedSnapshot {
            tick,
            rows: total,
            bytes,
        }
    }

    /// The tick the image is of.
    #[must_use]
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// How many rows it holds.
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The file's bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Appends one snapshot block: header reserved at start, length and checksum filled in by `finish`.
struct BlockWriter<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
}

impl<'b> BlockWriter<'b> {
    fn start(out: &'b mut Vec<u8>, kind: u8) -> BlockWriter<'b> {
        let start = out.len();
        out.extend_from_slice(&[0; BLOCK_HEADER_LEN]);
        out.push(kind);
        BlockWriter { out, start }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn reserve(&mut self, n: usize) -> usize {
        let at = self.out.len();
        self.out.resize(at + n, 0);
        at
    }

    fn patch(&mut self, at: usize, bytes: &[u8]) {
        self.out[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Payload bytes so far.
    fn len(&self) -> usize {
        self.out.len() - self.start - BLOCK_HEADER_LEN
    }

    fn finish(self) {
        let payload_start = self.start + BLOCK_HEADER_LEN;
        let len = (self.out.len() - payload_start) as u32;
        let crc = crc32c::crc32c(&self.out[payload_start..]);
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
        self.out[self.start + 4..payload_start].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What is wrong with a snapshot file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDamage {
    /// Offset in the file of the damaged block (or of the preamble).
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
}

/// One table's content in a parsed snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotTable<'a> {
    /// The table.
    pub id: TableId,
    /// Its auto_inc sequence's next value.
    pub next_auto_inc: u64,
    /// Offset in the file of the table's first block (for error messages).
    pub offset: u64,
    /// Its rows, in row blocks.
    pub blocks: Vec<Rows<'a>>,
    /// How many rows.
    pub row_count: u64,
}

/// A snapshot file checked and split into its parts, rows borrowed from the file's bytes.
#[derive(Clone, Debug)]
pub struct ParsedSnapshot<'a> {
    /// The tick the image is of.
    pub tick: Tick,
    /// The schema: every table's definition, in table-id order.
    pub schema: Vec<TableDef>,
    /// Every table's content, in table-id order.
    pub tables: Vec<SnapshotTable<'a>>,
}

/// Check every block of a snapshot file and split it into its parts.
///
/// # Errors
///
/// A [`SnapshotDamage`] naming the first block that is damaged or out of place.
pub fn parse_snapshot(bytes: &[u8]) -> Result<ParsedSnapshot<'_>, SnapshotDamage> {
    let damage = |offset: usize, reason: String| SnapshotDamage {
        offset: offset as u64,
        reason,
    };
    if bytes.len() < SNAPSHOT_PREAMBLE_LEN || bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(damage(0, "not a snapshot file (bad magic)".into()));
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(damage(
            8,
            format!("unknown snapshot format version {version}"),
        ));
    }
    let mut at = SNAPSHOT_PREAMBLE_LEN;
    // Every block, checked, as (offset, kind, body without the kind byte).
    let mut blocks = Vec::new();
    while at < bytes.len() {
        if bytes.len() - at < BLOCK_HEADER_LEN + 1 {
            return Err(damage(at, "truncated block header".into()));
        }
        let len = u32_at(bytes, at) as usize;
        let crc = u32_at(bytes, at + 4);
        let start = at + BLOCK_HEADER_LEN;
        let Some(payload) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
            return Err(damage(
                at,
                format!("block length {len} runs past the end of the file"),
            ));
        };
        if len == 0 || crc32c::crc32c(payload) != crc {
            return Err(damage(at, "block checksum mismatch".into()));
        }
        blocks.push((at, payload[0], &payload[1..]));
        at = start + len;
    }
    let mut blocks = blocks.into_iter();
    let malformed = |offset: usize, what: &str| damage(offset, format!("malformed {what} block"));
    let Some((offset, BLOCK_HEADER, body)) = blocks.next() else {
        return Err(damage(
            SNAPSHOT_PREAMBLE_LEN,
            "the first block is not a header".into(),
        ));
    };
    let mut c = Cursor { bytes: body, at: 0 };
    let (tick, table_count, schema_len) =
        (|| Ok::<_, MalformedPayload>((c.u64("tick")?, c.u32("table count")?, c.u32("len")?)))()
            .map_err(|_| malformed(offset, "header"))?;
    let schema_bytes = c
        .take(schema_len as usize, "schema")
        .map_err(|_| malformed(offset, "header"))?;
    let schema: Vec<TableDef> = rmp_serde::from_slice(schema_bytes)
        .map_err(|e| damage(offset, format!("schema does not decode: {e}")))?;
    if schema.len() != table_count as usize || c.at != body.len() {
        return Err(malformed(offset, "header"));
    }
    let tick = Tick(tick);
    let mut tables: Vec<SnapshotTable<'_>> = Vec::with_capacity(schema.len());
    let mut total = 0u64;
    loop {
        let Some((offset, kind, body)) = blocks.next() else {
            return Err(damage(bytes.len(), "the end block is missing".into()));
        };
        let mut c = Cursor { bytes: body, at: 0 };
        match kind {
            BLOCK_TABLE => {
                let parsed =
                    (|| Ok::<_, MalformedPayload>((c.u32("id")?, c.u64("next")?, c.u64("rows")?)))(
                    );
                let Ok((id, next_auto_inc, row_count)) = parsed else {
                    return Err(malformed(offset, "table"));
                };
                if c.at != body.len() || id as usize != tables.len() || tables.len() >= schema.len()
                {
                    return Err(malformed(offset, "table"));
                }
                tables.push(SnapshotTable {
                    id: TableId(id),
                    next_auto_inc,
                    offset: offset as u64,
                    blocks: Vec::new(),
                    row_count,
                });
            }
            BLOCK_ROWS => {
                let parsed = (|| {
                    let id = c.u32("table id")?;
                    let count = c.u32("row count")?;
                    let rows = c.rows(count, "row")?;
                    Ok::<_, MalformedPayload>((id, count, rows))
                })();
                let Ok((id, count, rows)) = parsed else {
                    return Err(malformed(offset, "rows"));
                };
                let Some(table) = tables.last_mut().filter(|t| t.id.0 == id) else {
                    return Err(malformed(offset, "rows"));
                };
                if c.at != body.len() {
                    return Err(malformed(offset, "rows"));
                }
                table.blocks.push(rows);
                total += u64::from(count);
            }
            BLOCK_END => {
                let parsed = (|| Ok::<_, MalformedPayload>((c.u64("tick")?, c.u64("rows")?)))();
                let Ok((end_tick, end_total)) = parsed else {
                    return Err(malformed(offset, "end"));
                };
                if c.at != body.len() || end_tick != tick.0 || end_total != total {
                    return Err(malformed(offset, "end"));
                }
                if tables.len() != schema.len() {
                    return Err(damage(offset, "tables are missing before the end".into()));
                }
                for t in &tables {
                    let counted: usize = t.blocks.iter().map(|b| b.count()).sum();
                    if counted as u64 != t.row_count {
                        return Err(damage(
                            t.offset as usize,
                            format!(
                                "table {} holds {counted} rows, its block says {}",
                                t.id.0, t.row_count
                            ),
                        ));
                    }
                }
                if let Some((offset, ..)) = blocks.next() {
                    return Err(damage(offset, "data after the end block".into()));
                }
                return Ok(ParsedSnapshot {
                    tick,
                    schema,
                    tables,
                });
            }
            other => return Err(damage(offset, format!("unknown block kind {other}"))),
        }
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("a row is under 4 GiB");
    put_u32(b, len);
    b.extend_from_slice(bytes);
}

/// The little-endian `u32` at `at` (the caller checked the bounds).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The little-endian `u64` at `at` (the caller checked the bounds).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_name(Tick(42)), "log-00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(Tick(42))), Some(Tick(42)));
        assert_eq!(
            parse_snapshot_name(&snapshot_name(Tick(u64::MAX))),
            Some(Tick(u64::MAX))
        );
        assert_eq!(parse_segment_name("log-42.seg"), None);
        assert_eq!(
            parse_snapshot_name("snap-00000000000000000042.snap.tmp"),
            None
        );
        assert_eq!(parse_segment_name("log-0000000000000000004x.seg"), None);
    }

    #[test]
    fn headers_detect_every_single_bit_flip() {
        let h = segment_header(Tick(7));
        assert_eq!(parse_segment_header(&h), Ok(Tick(7)));
        for bit in 0..h.len() * 8 {
            let mut bad = h;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_segment_header(&bad).is_err(), "flip of bit {bit}");
        }
        let mut r = EncodedRecord::new(Tick(9));
        let sealed = r.seal(Tick(3)).to_vec();
        let header = parse_record_header(&sealed).expect("valid");
        assert_eq!(
            (header.tick, header.prev_tick, header.len),
            (Tick(9), Tick(3), 4)
        );
        for bit in 0..RECORD_HEADER_LEN * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                parse_record_header(&bad),
                Err(RecordHeaderError::Checksum),
                "flip of bit {bit}"
            );
        }
    }
}

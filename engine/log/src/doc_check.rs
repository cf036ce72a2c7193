//! Checks that `engine/docs/storage.md` matches the encoders byte for byte.
//!
//! The document is read at compile time. Its hex examples (`<!-- example: NAME -->` followed by a ```` ```hex ````
//! block) must equal what the code writes for the same database; its layout tables (`<!-- layout: NAME -->`
//! followed by a table whose first two columns are offset and size) must tile the structure they describe and name
//! the fields where the code puts them; the constants, defaults and error messages it quotes must be the code's.
//! Recovering the examples through [`Log::open`] must give back the row, and the torn-tail rules it states must be
//! the ones recovery applies.

use std::sync::Arc;

use locus_store::{Changeset, Database, RowUpdate, StoreConfig, TableChangeset};
use locus_types::{ColumnType, TableDef, TableId, Tick, Value, codec};

use crate::format::{
    self, BLOCK_END, BLOCK_HEADER, BLOCK_HEADER_LEN, BLOCK_ROWS, BLOCK_TABLE, EncodedRecord,
    EncodedSnapshot, FORMAT_VERSION, MAX_PAYLOAD, RECORD_HEADER_LEN, ROWS_BLOCK_TARGET,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SNAPSHOT_MAGIC, SNAPSHOT_PREAMBLE_LEN, TEMP_SUFFIX,
};
use crate::storage::{LOCK_FILE, MemStorage};
use crate::{Corruption, DAMAGED_SUFFIX, Log, LogConfig, OpenError, Recovered, RecoveryWarning};

/// The document, as it is in the repository.
const DOC: &str = include_str!("../../docs/storage.md");

// ---------------------------------------------------------------------------------------------------------------
// The example of the document's §6, built with the real code.
// ---------------------------------------------------------------------------------------------------------------

/// Table `player`: `id: U32` (primary key), `name: String`.
fn player_def() -> TableDef {
    TableDef::builder("player")
        .column("id", ColumnType::U32)
        .column("name", ColumnType::String)
        .primary_key("id")
        .build()
        .expect("a valid table")
}

fn player_row(def: &TableDef, id: u64, name: &str) -> Vec<u8> {
    codec::encode_row(&def.columns, &[Value::U64(id), Value::String(name.into())])
        .expect("a valid row")
}

/// The example, and what the recovery checks need besides.
struct Example {
    def: TableDef,
    /// `[7, "Ada"]`.
    row: Vec<u8>,
    /// `log-…1.seg`: the header and the record of tick 1 (prev_tick 0) inserting the row.
    segment: Vec<u8>,
    /// `snap-…1.snap`: the table holding the row, at tick 1.
    snapshot: Vec<u8>,
    /// `snap-…0.snap`: the table, empty, at tick 0.
    empty_snapshot: Vec<u8>,
    /// The record of tick 2 (prev_tick 1), inserting `[8, "Bob"]`.
    record_2: Vec<u8>,
}

fn example() -> Example {
    let def = player_def();
    let row = player_row(&def, 7, "Ada");
    let mut db = Database::new(StoreConfig::default());
    let player = db.create_table(def.clone()).expect("table created");
    let empty_snapshot = EncodedSnapshot::new(Tick(0), &db).bytes().to_vec();

    let mut tx = db.begin();
    tx.insert(player, &row).expect("inserted");
    let changes = tx.commit();
    let mut segment = format::segment_header(Tick(1)).to_vec();
    segment.extend_from_slice(EncodedRecord::from_changesets(Tick(1), [&changes]).seal(Tick(0)));
    let snapshot = EncodedSnapshot::new(Tick(1), &db).bytes().to_vec();

    let mut tx = db.begin();
    tx.insert(player, &player_row(&def, 8, "Bob"))
        .expect("inserted");
    let changes = tx.commit();
    let record_2 = EncodedRecord::from_changesets(Tick(2), [&changes])
        .seal(Tick(1))
        .to_vec();
    Example {
        def,
        row,
        segment,
        snapshot,
        empty_snapshot,
        record_2,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the document.
// ---------------------------------------------------------------------------------------------------------------

/// The 1-based line of `DOC` at byte `at`, for messages.
fn line_of(at: usize) -> usize {
    DOC[..at].matches('\n').count() + 1
}

/// The byte offset in `DOC` just after the one line `marker`.
fn after_marker(marker: &str) -> usize {
    let found: Vec<usize> = DOC.match_indices(marker).map(|(i, _)| i).collect();
    assert_eq!(
        found.len(),
        1,
        "storage.md must hold `{marker}` exactly once, found {}",
        found.len()
    );
    let end = found[0] + marker.len();
    assert!(
        DOC[end..].starts_with('\n'),
        "storage.md line {}: `{marker}` must be alone on its line",
        line_of(found[0])
    );
    end + 1
}

/// The bytes of the hex block after `<!-- example: NAME -->`.
///
/// Each line holds at most 16 lowercase two-digit bytes separated by spaces; `#` starts a comment. A line with bytes
/// must have a comment starting with the decimal offset of its first byte.
fn doc_example(name: &str) -> Vec<u8> {
    let start = after_marker(&format!("<!-- example: {name} -->"));
    let first_line = line_of(start);
    let mut lines = DOC[start..].lines().enumerate();
    assert_eq!(
        lines.next().map(|(_, l)| l),
        Some("```hex"),
        "storage.md line {first_line}: the `{name}` example must open with ```hex right after its marker"
    );
    let mut bytes = Vec::new();
    for (i, line) in lines {
        let at_line = first_line + i;
        if line.trim_end() == "```" {
            return bytes;
        }
        let (data, comment) = match line.split_once('#') {
            Some((data, comment)) => (data, Some(comment.trim())),
            None => (line, None),
        };
        let offset = bytes.len();
        let mut count = 0;
        for token in data.split_whitespace() {
            let valid = token.len() == 2
                && token
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            assert!(
                valid,
                "storage.md line {at_line}: `{token}` is not a lowercase two-digit hex byte"
            );
            bytes.push(u8::from_str_radix(token, 16).expect("checked hex"));
            count += 1;
        }
        assert!(
            count <= 16,
            "storage.md line {at_line}: {count} bytes on one line (at most 16)"
        );
        if count > 0 {
            let digits: String = comment
                .unwrap_or("")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            assert_eq!(
                digits.parse::<usize>().ok(),
                Some(offset),
                "storage.md line {at_line}: the comment must start with the line's offset, {offset}"
            );
        }
    }
    panic!("storage.md line {first_line}: the `{name}` example's hex block is not closed");
}

/// `bytes` as the document writes them: lowercase two-digit bytes, 16 per line.
fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:<47}  # {}\n", hex.join(" "), i * 16)
        })
        .collect()
}

/// Panic with the first differing offset unless the document's example equals the code's bytes.
fn assert_same_bytes(what: &str, doc: &[u8], code: &[u8]) {
    if doc == code {
        return;
    }
    let at = doc
        .iter()
        .zip(code)
        .position(|(d, c)| d != c)
        .unwrap_or(doc.len().min(code.len()));
    let byte = |b: &[u8]| {
        b.get(at).map_or_else(
            || "the end of the file".to_owned(),
            |v| format!("0x{v:02x}"),
        )
    };
    panic!(
        "storage.md's {what} example differs from the code at byte {at} (0x{at:x}): the document has {}, the code \
         {}; the document has {} bytes, the code {}. The code writes:\n{}",
        byte(doc),
        byte(code),
        doc.len(),
        code.len(),
        hex_lines(code)
    );
}

/// The cells of the data rows of the table after `<!-- layout: NAME -->` (backticks removed).
fn doc_table(name: &str) -> Vec<Vec<String>> {
    let start = after_marker(&format!("<!-- layout: {name} -->"));
    let rows: Vec<Vec<String>> = DOC[start..]
        .lines()
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().replace('`', ""))
                .collect()
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "storage.md line {}: no table after `<!-- layout: {name} -->`",
        line_of(start)
    );
    rows
}

/// One row of a layout table.
#[derive(Debug)]
struct Field {
    offset: usize,
    size: usize,
    name: String,
}

/// The layout table `name`, checked to cover `0..total` field after field, without gaps or overlaps.
fn doc_layout(name: &str, total: usize) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut next = 0;
    for cells in doc_table(name) {
        let number = |i: usize| -> usize {
            cells[i].parse().unwrap_or_else(|_| {
                panic!("storage.md layout `{name}`: `{}` is not a number", cells[i])
            })
        };
        let field = Field {
            offset: number(0),
            size: number(1),
            name: cells[2].clone(),
        };
        assert_eq!(
            field.offset, next,
            "storage.md layout `{name}`: field `{}` should start at {next}",
            field.name
        );
        next += field.size;
        fields.push(field);
    }
    assert_eq!(
        next, total,
        "storage.md layout `{name}`: the fields add up to {next} bytes, the code's structure has {total}"
    );
    fields
}

/// The row of the field named `name`.
fn find<'l>(layout: &'l [Field], name: &str) -> &'l Field {
    layout
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("storage.md: no field `{name}` in {layout:?}"))
}

/// The bytes of the field named `name` in `bytes`, at the place the layout gives it.
fn field<'b>(layout: &[Field], name: &str, bytes: &'b [u8]) -> &'b [u8] {
    let f = find(layout, name);
    &bytes[f.offset..f.offset + f.size]
}

/// The little-endian integer in the field named `name`.
fn int(layout: &[Field], name: &str, bytes: &[u8]) -> u64 {
    let b = field(layout, name, bytes);
    assert!(b.len() <= 8, "field `{name}` is not an integer");
    b.iter()
        .rev()
        .fold(0, |v, byte| (v << 8) | u64::from(*byte))
}

fn assert_doc_says(text: &str) {
    assert!(
        DOC.contains(text),
        "storage.md should say `{text}` (the code does)"
    );
}

/// Whether the document quotes `message`, where each run of digits in it may stand for one capital letter
/// (`tick N`) in the document.
fn doc_quotes(message: &str) -> bool {
    // `None`: a run of digits.
    let mut pattern: Vec<Option<u8>> = Vec::new();
    for b in message.bytes() {
        if b.is_ascii_digit() {
            if pattern.last() != Some(&None) {
                pattern.push(None);
            }
        } else {
            pattern.push(Some(b));
        }
    }
    let doc = DOC.as_bytes();
    let matches_at = |start: usize| {
        let (mut i, mut j) = (start, 0);
        while j < pattern.len() {
            let Some(&d) = doc.get(i) else { return false };
            match pattern[j] {
                Some(b) if b == d => {}
                Some(_) => return false,
                None => {
                    let digits = doc[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                    if digits > 0 {
                        i += digits - 1;
                    } else if !d.is_ascii_uppercase() {
                        return false;
                    }
                }
            }
            i += 1;
            j += 1;
        }
        true
    };
    (0..doc.len()).any(matches_at)
}

fn assert_doc_quotes(message: &str) {
    assert!(
        doc_quotes(message),
        "storage.md should quote the message `{message}` (numbers as capital letters, e.g. `tick N`)"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The examples.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn segment_example_matches_the_encoder() {
    assert_same_bytes("segment", &doc_example("segment"), &example().segment);
}

#[test]
fn snapshot_example_matches_the_encoder() {
    assert_same_bytes("snapshot", &doc_example("snapshot"), &example().snapshot);
}

#[test]
fn example_file_names_and_sizes_are_the_codes() {
    let ex = example();
    assert_doc_says(&format!(
        "Segment `{}` ({} bytes)",
        format::segment_name(Tick(1)),
        ex.segment.len()
    ));
    assert_doc_says(&format!(
        "Snapshot `{}` ({} bytes)",
        format::snapshot_name(Tick(1)),
        ex.snapshot.len()
    ));
    let row: Vec<String> = ex.row.iter().map(|b| format!("{b:02x}")).collect();
    assert_doc_says(&format!(
        "the row `[7, \"Ada\"]`, whose bytes are `{}`",
        row.join(" ")
    ));
}

// ---------------------------------------------------------------------------------------------------------------
// The layout tables, constants and names.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn segment_layout_tables_match_the_encoder() {
    let layout = doc_layout("segment-header", SEGMENT_HEADER_LEN);
    let tick = Tick(0x0102_0304_0506_0708);
    let h = format::segment_header(tick);
    assert_eq!(field(&layout, "magic", &h), SEGMENT_MAGIC);
    assert_eq!(int(&layout, "version", &h), u64::from(FORMAT_VERSION));
    assert_eq!(int(&layout, "first tick", &h), tick.0);
    let crc_at = find(&layout, "header CRC").offset;
    assert_eq!(
        int(&layout, "header CRC", &h),
        u64::from(crc32c::crc32c(&h[..crc_at]))
    );
    assert_doc_says(&format!("CRC-32C of bytes 0..{crc_at}"));

    let layout = doc_layout("record-header", RECORD_HEADER_LEN);
    let ex = example();
    let mut db = Database::new(StoreConfig::default());
    let player = db.create_table(ex.def.clone()).expect("table created");
    let mut tx = db.begin();
    tx.insert(player, &ex.row).expect("inserted");
    let changes = tx.commit();
    let mut record = EncodedRecord::from_changesets(Tick(9), [&changes]);
    let r = record.seal(Tick(3));
    let payload = &r[RECORD_HEADER_LEN..];
    assert_eq!(int(&layout, "length", r), payload.len() as u64);
    assert_eq!(int(&layout, "tick", r), 9);
    assert_eq!(int(&layout, "prev_tick", r), 3);
    assert_eq!(
        int(&layout, "payload CRC", r),
        u64::from(crc32c::crc32c(payload))
    );
    let crc_at = find(&layout, "header CRC").offset;
    assert_eq!(
        int(&layout, "header CRC", r),
        u64::from(crc32c::crc32c(&r[..crc_at]))
    );
    assert_doc_says(&format!("CRC-32C of bytes 0..{crc_at} of this header"));
}

/// Every block of a snapshot file: (offset, payload).
fn blocks(snapshot: &[u8], header: &[Field]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = SNAPSHOT_PREAMBLE_LEN;
    while at < snapshot.len() {
        let h = &snapshot[at..at + BLOCK_HEADER_LEN];
        let len = int(header, "length", h) as usize;
        let payload = &snapshot[at + BLOCK_HEADER_LEN..at + BLOCK_HEADER_LEN + len];
        assert_eq!(
            int(header, "CRC", h),
            u64::from(crc32c::crc32c(payload)),
            "block at {at}"
        );
        out.push((at, payload.to_vec()));
        at += BLOCK_HEADER_LEN + len;
    }
    out
}

#[test]
fn snapshot_layout_tables_match_the_encoder() {
    // Two tables so that ids, sequences and counts differ: `npc` (auto_inc, 3 rows) and `player` (empty).
    let npc = TableDef::builder("npc")
        .column("id", ColumnType::U32)
        .column("name", ColumnType::String)
        .primary_key("id")
        .auto_inc()
        .build()
        .expect("a valid table");
    let mut db = Database::new(StoreConfig::default());
    let npcs = db.create_table(npc.clone()).expect("table created");
    db.create_table(player_def()).expect("table created");
    let mut tx = db.begin();
    for name in ["a", "b", "c"] {
        tx.insert(npcs, &player_row(&npc, 0, name))
            .expect("inserted");
    }
    let _ = tx.commit();
    let snapshot = EncodedSnapshot::new(Tick(77), &db);
    let s = snapshot.bytes();

    let preamble = doc_layout("snapshot-preamble", SNAPSHOT_PREAMBLE_LEN);
    assert_eq!(field(&preamble, "magic", s), SNAPSHOT_MAGIC);
    assert_eq!(int(&preamble, "version", s), u64::from(FORMAT_VERSION));

    let header = doc_layout("block-header", BLOCK_HEADER_LEN);
    let blocks = blocks(s, &header);
    let kinds: Vec<u8> = blocks.iter().map(|(_, p)| p[0]).collect();
    assert_eq!(
        kinds,
        [
            BLOCK_HEADER,
            BLOCK_TABLE,
            BLOCK_ROWS,
            BLOCK_TABLE,
            BLOCK_END
        ]
    );
    let kind_table: Vec<(String, String)> = doc_table("block-kinds")
        .into_iter()
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    let expected: Vec<(String, String)> = [
        (BLOCK_HEADER, "header"),
        (BLOCK_TABLE, "table"),
        (BLOCK_ROWS, "rows"),
        (BLOCK_END, "end"),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n.to_owned()))
    .collect();
    assert_eq!(
        kind_table, expected,
        "storage.md's block kinds differ from the code's"
    );

    let (_, npc_block) = &blocks[1];
    let table = doc_layout("table-block", npc_block.len());
    assert_eq!(int(&table, "kind", npc_block), u64::from(BLOCK_TABLE));
    assert_eq!(int(&table, "table id", npc_block), 0);
    assert_eq!(int(&table, "next auto_inc", npc_block), 4);
    assert_eq!(int(&table, "row count", npc_block), 3);
    let (_, player_block) = &blocks[3];
    assert_eq!(player_block.len(), npc_block.len());
    assert_eq!(int(&table, "table id", player_block), 1);
    assert_eq!(int(&table, "next auto_inc", player_block), 1);
    assert_eq!(int(&table, "row count", player_block), 0);

    let (_, end_block) = &blocks[4];
    let end = doc_layout("end-block", end_block.len());
    assert_eq!(int(&end, "kind", end_block), u64::from(BLOCK_END));
    assert_eq!(int(&end, "tick", end_block), 77);
    assert_eq!(int(&end, "total rows", end_block), snapshot.rows());
    assert_eq!(snapshot.rows(), 3);

    assert_doc_says(&format!("Table block payload ({} bytes)", npc_block.len()));
    assert_doc_says(&format!("End block payload ({} bytes)", end_block.len()));
}

#[test]
fn constants_names_and_defaults_are_the_codes() {
    assert_doc_says(&format!("Segment header ({SEGMENT_HEADER_LEN} bytes)"));
    assert_doc_says(&format!("Record header ({RECORD_HEADER_LEN} bytes)"));
    assert_doc_says(&format!(
        "Snapshot preamble ({SNAPSHOT_PREAMBLE_LEN} bytes)"
    ));
    assert_doc_says(&format!("Block header ({BLOCK_HEADER_LEN} bytes)"));
    for magic in [SEGMENT_MAGIC, SNAPSHOT_MAGIC] {
        let text = std::str::from_utf8(&magic).expect("ASCII magic");
        let hex: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
        assert_doc_says(&format!("the ASCII bytes `{text}` (`{}`)", hex.join(" ")));
    }
    assert_doc_says(&format!("format version `{FORMAT_VERSION}`"));
    assert_doc_says(&format!("at most {MAX_PAYLOAD} (1 GiB)"));
    assert_eq!(MAX_PAYLOAD, 1 << 30);
    assert_doc_says(&format!("{ROWS_BLOCK_TARGET} bytes (1 MiB)"));
    assert_eq!(ROWS_BLOCK_TARGET, 1 << 20);
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    assert_doc_says("`123456789`");
    assert_doc_says("`0xe3069283`");

    assert_doc_says(&format::segment_name(Tick(1)));
    assert_doc_says(&format::snapshot_name(Tick(0)));
    assert_doc_says(&format!("| lock | `{LOCK_FILE}` |"));
    assert_doc_says(&format::segment_name(Tick(u64::MAX)));
    assert_doc_says(&format::snapshot_name(Tick(1)));
    assert_doc_says(&format!("{}{TEMP_SUFFIX}", format::snapshot_name(Tick(1))));
    assert_eq!(format::segment_name(Tick(1)).len(), "log-.seg".len() + 20);
    assert_doc_says("zero-padded to exactly 20 digits");
    assert_eq!(format::parse_segment_name("log-42.seg"), None);
    assert_doc_says("(`log-42.seg`, `log-0000000000000000004x.seg`)");

    let d = LogConfig::default();
    assert_doc_says(&format!(
        "| `segment_bytes` | {} MiB ({}) |",
        d.segment_bytes >> 20,
        d.segment_bytes
    ));
    assert_doc_says(&format!("| `keep_snapshots` | {} |", d.keep_snapshots));
    assert_doc_says(&format!("`keep_snapshots` (default {})", d.keep_snapshots));
    let every_ticks = d.snapshot_every_ticks.expect("a default");
    assert_doc_says(&format!("| `snapshot_every_ticks` | {every_ticks} |"));
    let every_bytes = d.snapshot_every_bytes.expect("a default");
    assert_doc_says(&format!(
        "| `snapshot_every_bytes` | {} MiB ({every_bytes}) |",
        every_bytes >> 20
    ));
    assert_doc_says(&format!("| `sync` | `{:?}` |", d.sync));
    assert_doc_says(&format!("| `queue` | {} |", d.queue));
}

/// The payload grammar of the document's §2.3, written out here, against the encoder: two transactions, the
/// second over two tables, with every kind of row and a moved sequence.
#[test]
fn payload_grammar_is_the_encoders() {
    let rows = |tag: u8, n: usize| -> Vec<Box<[u8]>> {
        (0..n)
            .map(|i| vec![tag; i + 1].into_boxed_slice())
            .collect()
    };
    let first = Changeset {
        tables: vec![TableChangeset {
            table: TableId(3),
            inserts: rows(0x11, 1),
            ..TableChangeset::default()
        }],
    };
    let second = Changeset {
        tables: vec![
            TableChangeset {
                table: TableId(0),
                inserts: rows(0x21, 2),
                deletes: rows(0x22, 2),
                updates: vec![RowUpdate {
                    old: vec![0xee; 3].into_boxed_slice(),
                    new: vec![0x23; 4].into_boxed_slice(),
                }],
                next_auto_inc: Some(0x0a0b_0c0d),
            },
            TableChangeset {
                table: TableId(5),
                next_auto_inc: Some(9),
                ..TableChangeset::default()
            },
        ],
    };
    let mut record =
        EncodedRecord::from_changesets(Tick(4), [&first, &Changeset::default(), &second]);
    let sealed = record.seal(Tick(2)).to_vec();

    let u32le = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
    let mut expected = Vec::new();
    u32le(&mut expected, 2); // transaction count: the empty changeset is left out
    for changeset in [&first, &second] {
        u32le(&mut expected, changeset.tables.len());
        for t in &changeset.tables {
            u32le(&mut expected, t.table.0 as usize);
            match t.next_auto_inc {
                Some(next) => {
                    expected.push(1);
                    expected.extend_from_slice(&next.to_le_bytes());
                }
                None => expected.push(0),
            }
            u32le(&mut expected, t.deletes.len());
            u32le(&mut expected, t.updates.len());
            u32le(&mut expected, t.inserts.len());
            let updated: Vec<&[u8]> = t.updates.iter().map(|u| &*u.new).collect();
            let all = t
                .deletes
                .iter()
                .map(|r| &**r)
                .chain(updated)
                .chain(t.inserts.iter().map(|r| &**r));
            for row in all {
                u32le(&mut expected, row.len());
                expected.extend_from_slice(row);
            }
        }
    }
    assert_eq!(
        &sealed[RECORD_HEADER_LEN..],
        &expected[..],
        "the encoder's payload is not the grammar of storage.md §2.3"
    );
    assert_doc_says("-- updated rows: the NEW row bytes only");
    assert_doc_says("`0`: nothing follows; `1`: the table's auto_inc sequence moved");
}

// ---------------------------------------------------------------------------------------------------------------
// Recovery.
// ---------------------------------------------------------------------------------------------------------------

fn seg_name(tick: u64) -> String {
    format::segment_name(Tick(tick))
}

fn snap_name(tick: u64) -> String {
    format::snapshot_name(Tick(tick))
}

/// A storage holding `files`, and what opening it gives.
fn open(files: Vec<(String, Vec<u8>)>) -> (MemStorage, Result<(Log, Recovered), OpenError>) {
    let disk = MemStorage::new();
    for (name, bytes) in files {
        disk.set_file(&name, bytes);
    }
    let opened = Log::open(
        Arc::new(disk.clone()),
        LogConfig::default(),
        StoreConfig::default(),
    );
    (disk, opened)
}

fn recovered(files: Vec<(String, Vec<u8>)>) -> (MemStorage, Recovered) {
    let (disk, opened) = open(files);
    match opened {
        Ok((_, r)) => (disk, r),
        Err(e) => panic!("recovery failed: {e}"),
    }
}

fn corruption(files: Vec<(String, Vec<u8>)>) -> Corruption {
    let (_, opened) = open(files);
    match opened {
        Err(OpenError::Corrupt(c)) => {
            let message = OpenError::Corrupt(c.clone()).to_string();
            assert!(
                message.starts_with(&format!(
                    "the commit log is corrupt: {} at byte {}: ",
                    c.file, c.offset
                )),
                "{message}"
            );
            assert_doc_quotes(&c.reason);
            c
        }
        Err(e) => panic!("expected a corruption, got: {e}"),
        Ok((_, r)) => panic!(
            "expected a corruption, recovery succeeded at tick {}",
            r.tick.0
        ),
    }
}

/// The stored row with key 7, if any.
fn row_7(r: &Recovered) -> Option<Vec<u8>> {
    let table = r.db.table(TableId(0)).expect("the player table");
    table
        .get(&Value::U64(7))
        .expect("a valid key")
        .map(<[u8]>::to_vec)
}

#[test]
fn the_examples_recover() {
    let ex = example();
    let doc_segment = doc_example("segment");
    let doc_snapshot = doc_example("snapshot");

    // The empty snapshot of tick 0 and the document's segment: the record is replayed.
    let (_, r) = recovered(vec![
        (snap_name(0), ex.empty_snapshot.clone()),
        (seg_name(1), doc_segment.clone()),
    ]);
    assert_eq!(r.warnings, []);
    assert_eq!(
        (r.tick, r.snapshot, r.records, r.transactions, r.row_changes),
        (Tick(1), Some(Tick(0)), 1, 1, 1)
    );
    assert_eq!(r.schema, Some(vec![ex.def.clone()]));
    assert_eq!(row_7(&r), Some(ex.row.clone()));

    // The document's snapshot alone.
    let (_, r) = recovered(vec![(snap_name(1), doc_snapshot.clone())]);
    assert_eq!(r.warnings, []);
    assert_eq!((r.tick, r.snapshot, r.records), (Tick(1), Some(Tick(1)), 0));
    assert_eq!(r.schema, Some(vec![ex.def.clone()]));
    assert_eq!(row_7(&r), Some(ex.row.clone()));

    // Both snapshots and the segment: the newest snapshot; the record at its tick is checked, not replayed.
    let all = |snapshot: Vec<u8>| {
        vec![
            (snap_name(0), ex.empty_snapshot.clone()),
            (snap_name(1), snapshot),
            (seg_name(1), doc_segment.clone()),
        ]
    };
    let (_, r) = recovered(all(doc_snapshot.clone()));
    assert_eq!(r.warnings, []);
    assert_eq!((r.tick, r.snapshot, r.records), (Tick(1), Some(Tick(1)), 0));
    assert_eq!(row_7(&r), Some(ex.row.clone()));

    // The newest snapshot damaged in its rows block: the older one is used and the record replayed.
    let header = doc_layout("block-header", BLOCK_HEADER_LEN);
    let (rows_at, _) = blocks(&doc_snapshot, &header)
        .into_iter()
        .find(|(_, p)| p[0] == BLOCK_ROWS)
        .expect("a rows block");
    let mut damaged = doc_snapshot.clone();
    damaged[rows_at + BLOCK_HEADER_LEN + 1] ^= 0x01;
    let (disk, r) = recovered(all(damaged.clone()));
    assert_eq!(
        r.warnings,
        [RecoveryWarning::SnapshotDamaged(Corruption {
            file: snap_name(1),
            offset: rows_at as u64,
            reason: "block checksum mismatch".into(),
        })]
    );
    assert_doc_quotes("block checksum mismatch");
    // ... and moved aside.
    let aside = format!("{}{DAMAGED_SUFFIX}", snap_name(1));
    assert_eq!(disk.file(&snap_name(1)), None);
    assert_eq!(disk.file(&aside), Some(damaged));
    assert_doc_says(&format!("renamed to `snap-<tick>.snap{DAMAGED_SUFFIX}`"));
    assert_eq!((r.tick, r.snapshot, r.records), (Tick(1), Some(Tick(0)), 1));
    assert_eq!(row_7(&r), Some(ex.row.clone()));

    // An unfinished snapshot is removed; an unknown file is left alone.
    let temp = format!("{}{TEMP_SUFFIX}", snap_name(2));
    let (disk, r) = recovered(vec![
        (snap_name(1), doc_snapshot),
        (temp.clone(), b"partial".to_vec()),
        ("notes.txt".into(), b"mine".to_vec()),
    ]);
    assert_eq!(
        r.warnings,
        [RecoveryWarning::TempRemoved { file: temp.clone() }]
    );
    assert_eq!(disk.file(&temp), None);
    assert_eq!(disk.file("notes.txt"), Some(b"mine".to_vec()));
}

/// The torn-tail table of the document's §5.3, row by row, on the example segment.
#[test]
fn torn_tail_rules_are_recoverys() {
    let ex = example();
    let seg = doc_example("segment");
    let len = seg.len();
    let at = SEGMENT_HEADER_LEN;
    let with = |segment: Vec<u8>| {
        vec![
            (snap_name(0), ex.empty_snapshot.clone()),
            (seg_name(1), segment),
        ]
    };
    let torn = |offset: usize, bytes: usize| RecoveryWarning::TornTail {
        file: seg_name(1),
        offset: offset as u64,
        bytes: bytes as u64,
    };

    // 1: fewer than 28 bytes remain. The torn record was the segment's first: the segment is removed.
    let (disk, r) = recovered(with(seg[..at + RECORD_HEADER_LEN - 1].to_vec()));
    assert_eq!(r.warnings, [torn(at, RECORD_HEADER_LEN - 1)]);
    assert_eq!((r.tick, row_7(&r)), (Tick(0), None));
    assert_eq!(disk.file(&seg_name(1)), None);

    // 2: zeros after a whole record. The segment is cut back to that record.
    let mut zeros = seg.clone();
    zeros.extend_from_slice(&[0; 100]);
    let (disk, r) = recovered(with(zeros));
    assert_eq!(r.warnings, [torn(len, 100)]);
    assert_eq!((r.tick, row_7(&r)), (Tick(1), Some(ex.row.clone())));
    assert_eq!(disk.file(&seg_name(1)), Some(seg.clone()));

    // 5 (after a whole record): the record of tick 2 runs past the end of the file.
    let mut cut = seg.clone();
    cut.extend_from_slice(&ex.record_2[..ex.record_2.len() - 1]);
    let (disk, r) = recovered(with(cut));
    assert_eq!(r.warnings, [torn(len, ex.record_2.len() - 1)]);
    assert_eq!(r.tick, Tick(1));
    assert_eq!(disk.file(&seg_name(1)), Some(seg.clone()));

    // 3: a damaged header is an error, also in the last segment.
    let mut bad = seg.clone();
    bad[at + 5] ^= 0x01;
    let c = corruption(with(bad));
    assert_eq!(
        (c.file, c.offset, c.reason.as_str()),
        (seg_name(1), at as u64, "record header checksum mismatch")
    );

    // 5: the payload runs past the end of the file.
    let (_, r) = recovered(with(seg[..len - 1].to_vec()));
    assert_eq!(r.warnings, [torn(at, len - 1 - at)]);
    assert_eq!(r.tick, Tick(0));

    // 6: the last record's payload checksum fails and it ends at the end of the file: cut (the known limit).
    let mut flipped = seg.clone();
    flipped[len - 1] ^= 0x01;
    let (_, r) = recovered(with(flipped.clone()));
    assert_eq!(r.warnings, [torn(at, len - at)]);
    assert_eq!((r.tick, row_7(&r)), (Tick(0), None));

    // 7: the same damage with a record after it is an error.
    let mut followed = flipped.clone();
    followed.extend_from_slice(&ex.record_2);
    let c = corruption(with(followed));
    assert_eq!(
        (c.offset, c.reason.as_str()),
        (at as u64, "record checksum mismatch")
    );

    // The example followed by the record of tick 2 recovers both.
    let mut both = seg.clone();
    both.extend_from_slice(&ex.record_2);
    let (_, r) = recovered(with(both));
    assert_eq!((r.warnings.len(), r.tick, r.records), (0, Tick(2), 2));

    // Not the last segment: the same tears are errors.
    let mut segment_2 = format::segment_header(Tick(2)).to_vec();
    segment_2.extend_from_slice(&ex.record_2);
    let c = corruption(vec![
        (snap_name(0), ex.empty_snapshot.clone()),
        (seg_name(1), seg[..len - 1].to_vec()),
        (seg_name(2), segment_2.clone()),
    ]);
    assert_eq!(
        (c.file, c.offset, c.reason.as_str()),
        (
            seg_name(1),
            at as u64,
            "a truncated record in a segment that is not the last"
        )
    );

    // A torn segment header in the last segment: the segment is removed.
    let (disk, r) = recovered(with(seg[..10].to_vec()));
    assert_eq!(
        r.warnings,
        [RecoveryWarning::TornSegment { file: seg_name(1) }]
    );
    assert_eq!(disk.file(&seg_name(1)), None);
    let (_, r) = recovered(with(vec![0; 40]));
    assert_eq!(
        r.warnings,
        [RecoveryWarning::TornSegment { file: seg_name(1) }]
    );

    // Any other bad segment header is an error at offset 0.
    let mut bad = seg.clone();
    bad[20] ^= 0x01;
    let c = corruption(with(bad));
    assert_eq!(
        (c.offset, c.reason.as_str()),
        (0, "bad segment header (Checksum)")
    );
    let c = corruption(vec![
        (snap_name(0), ex.empty_snapshot.clone()),
        (seg_name(2), seg.clone()),
    ]);
    assert_eq!(
        (c.offset, c.reason.as_str()),
        (0, "the header says first tick 1, the name 2")
    );
}

/// The `prev_tick` chain rules of the document's §5.4.
#[test]
fn chain_rules_are_recoverys() {
    let ex = example();
    let seg = doc_example("segment");
    let mut segment_2 = format::segment_header(Tick(2)).to_vec();
    segment_2.extend_from_slice(&ex.record_2);

    // The first record read may follow a tick at or before the snapshot (here a snapshot of tick 1 and a record
    // of tick 2 whose predecessor's segment is gone).
    let (_, r) = recovered(vec![
        (snap_name(1), ex.snapshot.clone()),
        (seg_name(2), segment_2.clone()),
    ]);
    assert_eq!((r.tick, r.records, r.warnings.len()), (Tick(2), 1, 0));

    // ... but not one after it.
    let c = corruption(vec![
        (snap_name(0), ex.empty_snapshot.clone()),
        (seg_name(2), segment_2),
    ]);
    assert_eq!(
        (c.offset, c.reason.as_str()),
        (
            SEGMENT_HEADER_LEN as u64,
            "records are missing: the log resumes at tick 2 after tick 1, but the snapshot is of tick 0"
        )
    );

    // After the first record, every prev_tick is the tick before it: a missing record is found.
    let def = &ex.def;
    let mut db = Database::new(StoreConfig::default());
    let player = db.create_table(def.clone()).expect("table created");
    let mut tx = db.begin();
    tx.insert(player, &player_row(def, 9, "Cy"))
        .expect("inserted");
    let changes = tx.commit();
    let mut segment_3 = format::segment_header(Tick(3)).to_vec();
    segment_3.extend_from_slice(EncodedRecord::from_changesets(Tick(3), [&changes]).seal(Tick(2)));
    let c = corruption(vec![
        (snap_name(0), ex.empty_snapshot.clone()),
        (seg_name(1), seg.clone()),
        (seg_name(3), segment_3),
    ]);
    assert_eq!(
        (c.file, c.reason.as_str()),
        (
            seg_name(3),
            "records are missing: the record of tick 3 follows tick 2, but the log before it ends at tick 1"
        )
    );

    // A segment's first record has the segment's tick.
    let mut renamed = format::segment_header(Tick(2)).to_vec();
    renamed.extend_from_slice(&seg[SEGMENT_HEADER_LEN..]);
    let c = corruption(vec![
        (snap_name(0), ex.empty_snapshot.clone()),
        (seg_name(2), renamed),
    ]);
    assert_eq!(
        c.reason,
        "the first record has tick 1, the segment's name says 2"
    );
}

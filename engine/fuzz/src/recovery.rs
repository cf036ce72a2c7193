//! Target `recovery`: crash recovery ([`Log::open`]) over a data directory of any bytes — the commit-log segment
//! reader, the snapshot reader, and replay.
//!
//! Input: the files of a data directory, each written as `[kind: u8][tick: u8][len: u16 LE][len bytes]` (fewer
//! if the input ends first): kind 0 is a segment, 1 a snapshot, 2 an unfinished snapshot (`.tmp`), 3 a file that
//! is not part of the log; the tick names the file. [`encode_files`] writes a directory in this form (the seeds are
//! real logs written so).
//!
//! Checked, besides "recovery returns an error, never panics or hangs": every recovered row is a valid row of its
//! table; recovery is idempotent (opening the repaired directory again gives the same world, with no further
//! repair); and the recovered log can write a snapshot that the next recovery starts from, to the same world.

use std::sync::Arc;

use locus_log::format::{TEMP_SUFFIX, segment_name, snapshot_name};
use locus_log::storage::MemStorage;
use locus_log::{EncodedSnapshot, Log, LogConfig, Recovered};
use locus_store::{Database, StoreConfig};
use locus_types::Tick;
use locus_types::codec::validate_row;

/// A file's kind in a `recovery` input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A log segment, named by its first tick.
    Segment,
    /// A snapshot, named by its tick.
    Snapshot,
    /// A snapshot's temporary file, as a crash during the snapshot leaves it.
    Temp,
    /// Anything else in the directory.
    Other,
}

fn name(kind: FileKind, tick: u8) -> String {
    let tick = Tick(u64::from(tick));
    match kind {
        FileKind::Segment => segment_name(tick),
        FileKind::Snapshot => snapshot_name(tick),
        FileKind::Temp => format!("{}{TEMP_SUFFIX}", snapshot_name(tick)),
        FileKind::Other => format!("notes-{}.txt", tick.0),
    }
}

/// Parse an input into files (name, bytes).
#[must_use]
pub fn decode_files(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    while let [kind, tick, l0, l1, rest @ ..] = data {
        let kind = match kind % 4 {
            0 => FileKind::Segment,
            1 => FileKind::Snapshot,
            2 => FileKind::Temp,
            _ => FileKind::Other,
        };
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
        files.push((name(kind, *tick), rest[..len].to_vec()));
        data = &rest[len..];
    }
    files
}

/// Write files in the form [`decode_files`] reads.
///
/// # Panics
///
/// If a file is longer than 65,535 bytes or its tick above 255.
#[must_use]
pub fn encode_files(files: &[(FileKind, u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, tick, bytes) in files {
        out.push(*kind as u8);
        out.push(u8::try_from(*tick).expect("a tick below 256"));
        out.extend_from_slice(
            &u16::try_from(bytes.len())
                .expect("a file below 64 KiB")
                .to_le_bytes(),
        );
        out.extend_from_slice(bytes);
    }
    out
}

/// A world's rows, table by table in id order, each table's rows sorted.
fn contents(db: &Database) -> Vec<(String, Vec<Vec<u8>>)> {
    db.tables()
        .map(|t| {
            let mut rows: Vec<Vec<u8>> = t.iter().map(<[u8]>::to_vec).collect();
            rows.sort_unstable();
            (t.name().to_owned(), rows)
        })
        .collect()
}

fn open(disk: &MemStorage) -> Result<(Log, Recovered), locus_log::OpenError> {
    Log::open(
        Arc::new(disk.clone()),
        LogConfig::default(),
        StoreConfig::default(),
    )
}

/// Target `recovery`.
pub fn recovery(data: &[u8]) {
    let disk = MemStorage::new();
    for (name, bytes) in decode_files(data) {
        disk.set_file(&name, bytes);
    }
    let Ok((log, first)) = open(&disk) else {
        return;
    };
    drop(log);
    let mut offsets = Vec::new();
    for table in first.db.tables() {
        for row in table.iter() {
            validate_row(&table.def().columns, row, &mut offsets)
                .expect("a recovered row is valid");
        }
    }
    let world = contents(&first.db);

    let (mut log, second) = open(&disk).expect("a directory recovery opened once opens again");
    assert_eq!(
        second.tick, first.tick,
        "recovery is not idempotent: the tick differs"
    );
    assert!(
        second.warnings.is_empty(),
        "a second recovery repaired again: {:?}",
        second.warnings
    );
    assert_eq!(
        contents(&second.db),
        world,
        "recovery is not idempotent: the rows differ"
    );

    if first.schema.is_none() {
        return;
    }
    if log
        .snapshot(&EncodedSnapshot::new(second.tick, &second.db))
        .is_err()
    {
        return;
    }
    drop(log);
    let (_, third) = open(&disk).expect("a directory with a fresh snapshot opens");
    assert_eq!(third.tick, first.tick);
    assert_eq!(
        third.snapshot,
        Some(first.tick),
        "recovery did not start from the fresh snapshot"
    );
    assert_eq!(
        contents(&third.db),
        world,
        "the fresh snapshot holds another world"
    );
}

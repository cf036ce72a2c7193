//! Locus's fuzz targets, as plain functions of bytes, and their seed corpora.
//!
//! Each target feeds untrusted bytes to one of the parts that read them, and panics when an invariant of that part
//! breaks (a panic of the part itself is a failure too):
//!
//! | target | what reads the bytes |
//! |---|---|
//! | `session` | the frame reader, every client message, the session rules ([`session`]) |
//! | `row` | the row codec and `validate_row` ([`row`]) |
//! | `patch` | patch apply, and make-then-apply ([`row`]) |
//! | `recovery` | crash recovery: the commit-log segment reader, the snapshot reader, replay ([`recovery`]) |
//! | `query` | the SQL subset of `locus query` ([`query`]) |
//! | `module_bytes` | module loading, of any bytes ([`module`]) |
//! | `module_smith` | module loading and reducer calls, of modules `wasm-smith` generates ([`module`]) |
//!
//! `engine/fuzz/targets` is the cargo-fuzz project that runs them under libFuzzer with coverage instrumentation:
//! `engine/fuzz/run SECONDS [TARGET...]` (see `engine/docs/fuzzing.md`). `cargo test -p locus-fuzz` runs every
//! committed seed and every regression input (inputs that once failed, kept under `engine/fuzz/regressions/`)
//! through its target without libFuzzer, so the suite catches a regression on the corpus.

pub mod module;
pub mod query;
pub mod recovery;
pub mod row;
pub mod seeds;
pub mod session;

/// A target: a function of the input bytes that panics on a failure.
pub type Target = fn(&[u8]);

/// Every target: its name and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("session", session::session),
    ("row", row::row),
    ("patch", row::patch),
    ("recovery", recovery::recovery),
    ("query", query::query),
    ("module_bytes", module::module_bytes),
    ("module_smith", module::module_smith),
];

//! Fuzz target `query`: see `locus_fuzz::query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| locus_fuzz::query::query(data));

//! Fuzz target `recovery`: see `locus_fuzz::recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| locus_fuzz::recovery::recovery(data));

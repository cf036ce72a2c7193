//! Fuzz target `row`: see `locus_fuzz::row`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| locus_fuzz::row::row(data));

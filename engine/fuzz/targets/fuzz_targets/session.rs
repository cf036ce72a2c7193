//! Fuzz target `session`: see `locus_fuzz::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| locus_fuzz::session::session(data));

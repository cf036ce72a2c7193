//! Fuzz target `module_bytes`: see `locus_fuzz::module`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| locus_fuzz::module::module_bytes(data));

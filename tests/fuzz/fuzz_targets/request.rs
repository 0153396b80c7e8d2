//! Fuzz target `request`: see `vectord::fuzzing::request` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vectord::fuzzing::request(data));

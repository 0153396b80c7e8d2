//! Fuzz target `filter`: see `vectord::fuzzing::filter` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vectord::fuzzing::filter(data));

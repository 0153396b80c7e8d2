//! Fuzz target `segment`: see `vectord::fuzzing::segment` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vectord::fuzzing::segment(data));

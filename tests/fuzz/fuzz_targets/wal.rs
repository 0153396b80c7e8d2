//! Fuzz target `wal`: see `vectord::fuzzing::wal` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vectord::fuzzing::wal(data));

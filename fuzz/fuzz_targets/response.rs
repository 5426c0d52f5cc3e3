//! Fuzz target `response`: see `embargo::fuzzing` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| embargo::fuzzing::run("response", data));

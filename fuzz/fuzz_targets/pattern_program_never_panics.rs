//! libFuzzer entry point of [`boifi_fuzz::pattern_program_never_panics`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| boifi_fuzz::pattern_program_never_panics(data));

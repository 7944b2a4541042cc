//! libFuzzer entry point of [`boifi_fuzz::filter_glue_never_panics`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| boifi_fuzz::filter_glue_never_panics(data));

//! libFuzzer entry point of [`boifi_fuzz::config_query_never_panics`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| boifi_fuzz::config_query_never_panics(data));

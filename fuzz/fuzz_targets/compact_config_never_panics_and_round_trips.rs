//! libFuzzer entry point of [`boifi_fuzz::compact_config_never_panics_and_round_trips`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    boifi_fuzz::compact_config_never_panics_and_round_trips(data)
});

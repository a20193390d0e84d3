//! The relaxed configuration-file parser (`aemp::config::fuzz_config`): no panic, strict JSON parses the same, save/load round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aemp::config::fuzz_config(data);
});

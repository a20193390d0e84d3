//! The handshake state machine, auth line included (`aemp::wire::fuzz_handshake`): no panic, the same events, output and end however the input is split.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aemp::wire::fuzz_handshake(data, std::time::Instant::now());
});

//! Every sans-IO parser on arbitrary bytes: greeting, line reader, JSON
//! packet scanner, CBOR packet decoder, handshake state machine. None may
//! panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aemp::wire::fuzz_parsers(data, std::time::Instant::now());
});

//! The `cbor` framing's stream decoder (`aemp::wire::fuzz_cbor`): no panic, the same packets however split, re-encode round trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aemp::wire::fuzz_cbor(data);
});

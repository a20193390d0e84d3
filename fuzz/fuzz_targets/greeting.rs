//! Greeting lines and the line reader (`aemp::wire::fuzz_greeting`): no panic, the same lines however the input is split, greeting line round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aemp::wire::fuzz_greeting(data);
});

//! Global connect-port messages (`[tag, args…]`) from arbitrary JSON:
//! parse, encode, parse again. None may panic, and every message that
//! parses must come back the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aemp::wire::fuzz_global(data);
});

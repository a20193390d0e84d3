//! Node-port requests (`["", tag, args…]` without the destination) from
//! arbitrary JSON: parse, encode, parse again. None may panic, and every
//! request that parses must come back the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aemp::wire::fuzz_node_port(data);
});

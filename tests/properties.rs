//! Property tests of the sans-IO core: no input panics, round trips hold,
//! and two handshakes fed in random chunks agree or fail alike.

use std::sync::Arc;
use std::time::Instant;

use aemp::config::{ConfigFile, fuzz_config, perl_pretty};
use aemp::wire::{
    FUZZ_MAX_DEPTH, FUZZ_MAX_PACKET, FUZZ_PEER_GREETING, Framing, GLOBAL_TAGS, Greeting, Handshake,
    HandshakeConfig, HandshakeError, JsonCodec, NODE_PORT_TAGS, NONCE_BYTES, Nonce, Packet,
    decode_stream, fuzz_framing, fuzz_global, fuzz_greeting, fuzz_handshake, fuzz_node_port,
    fuzz_parsers, take_lines,
};
use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::Value;
use tokio_util::codec::Decoder;

fn json_value() -> impl Strategy<Value = Value> {
    json_value_with(prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
    ])
}

/// Values `storable` carries as they are: Perl sends integers beyond 32
/// bits and non-integral numbers as strings.
fn storable_value() -> impl Strategy<Value = Value> {
    json_value_with(any::<i32>().prop_map(Value::from))
}

fn json_value_with(
    numbers: impl Strategy<Value = Value> + Clone + 'static,
) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        numbers,
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every tag of the node port and of Global, and a function call.
fn protocol_tags() -> Vec<&'static str> {
    let extra = ["", "devnull", "Pkg::func"];
    NODE_PORT_TAGS
        .iter()
        .chain(GLOBAL_TAGS)
        .chain(&extra)
        .copied()
        .collect()
}

/// Feeds `stream` to a decoder in pieces ending at `cuts`.
fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> Result<Vec<Packet>, aemp::wire::FrameError> {
    let mut codec = JsonCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(from, stream.len());
        buf.extend_from_slice(&stream[from..cut]);
        from = cut;
        while let Some(p) = codec.decode(&mut buf)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// What serde_json says about a frame: valid UTF-8 JSON, an array, and
/// the first element (if any) a string.
fn serde_verdict(frame: &[u8]) -> bool {
    let trimmed: Vec<u8> = frame
        .iter()
        .copied()
        .skip_while(|b| b" \t\r\n".contains(b))
        .collect();
    let after = trimmed.iter().skip(1).find(|b| !b" \t\r\n".contains(b));
    std::str::from_utf8(frame).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(frame).is_ok()
        && trimmed.first() == Some(&b'[')
        && matches!(after, Some(b'"') | Some(b']'))
}

/// A fixed seed and `cases` cases: CI runs the same inputs every time.
fn fixed(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x00ae_4d9f_0013),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(fixed(512))]

    #[test]
    fn the_scanner_agrees_with_serde_json_on_json_shaped_bytes(
        data in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,40}"
    ) {
        let ours = Packet::parse(bytes::Bytes::copy_from_slice(data.as_bytes())).is_ok();
        prop_assert_eq!(ours, serde_verdict(data.as_bytes()), "{}", data);
    }

    #[test]
    fn the_scanner_agrees_with_serde_json_on_mutated_packets(
        dest in ".{0,6}",
        body in prop::collection::vec(json_value(), 0..4),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        mutate in any::<bool>(),
    ) {
        let mut frame = Packet::to_frame(&dest, &body).unwrap().to_vec();
        if mutate {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let ours = Packet::parse(bytes::Bytes::from(frame.clone()));
        prop_assert_eq!(ours.is_ok(), serde_verdict(&frame), "{}", String::from_utf8_lossy(&frame));
        if let (Ok(p), false) = (ours, mutate) {
            prop_assert_eq!(p.dest(), Some(dest.as_str()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        fuzz_parsers(&data, std::time::Instant::now());
    }

    #[test]
    fn json_shaped_bytes_never_panic(data in "[\\[\\]{}\",:0-9a-z\\\\ ]{0,300}") {
        fuzz_parsers(data.as_bytes(), std::time::Instant::now());
        fuzz_node_port(data.as_bytes());
        fuzz_global(data.as_bytes());
    }

    #[test]
    fn protocol_messages_round_trip(
        tag in prop_oneof![
            prop::sample::select(protocol_tags()).prop_map(Value::from),
            json_value(),
        ],
        args in prop::collection::vec(json_value(), 0..5),
    ) {
        let mut values = vec![tag];
        values.extend(args);
        let bytes = serde_json::to_vec(&values).unwrap();
        // both assert that what parses encodes to itself
        fuzz_node_port(&bytes);
        fuzz_global(&bytes);
    }

    #[test]
    fn raw_relays_are_the_decoded_relays(
        entries in prop::collection::vec((".{0,10}", prop::collection::vec(json_value(), 0..4)), 1..4),
        multiple in any::<bool>(),
        pretty in any::<bool>(),
    ) {
        let entry = |(port, msg): &(String, Vec<Value>)| {
            let mut v = vec![Value::from(port.as_str())];
            v.extend(msg.iter().cloned());
            v
        };
        let request: Vec<Value> = if multiple {
            let mut r = vec![Value::from("snd_multiple")];
            r.extend(entries.iter().map(|e| Value::Array(entry(e))));
            r
        } else {
            let mut r = vec![Value::from("snd")];
            r.extend(entry(&entries[0]));
            r
        };
        let bytes = if pretty {
            serde_json::to_vec_pretty(&request).unwrap()
        } else {
            serde_json::to_vec(&request).unwrap()
        };
        // asserts the raw reading agrees with the decoded request
        fuzz_node_port(&bytes);
        let packet = Packet::parse(Packet::to_frame("", &request).unwrap()).unwrap();
        let relays = aemp::wire::RawRelay::read(&packet);
        let surrogates = String::from_utf8_lossy(packet.frame()).contains("\\u");
        prop_assert!(relays.is_some() || surrogates, "{}", String::from_utf8_lossy(packet.frame()));
        if let Some(relays) = relays {
            prop_assert_eq!(relays.len(), if multiple { entries.len() } else { 1 });
        }
    }

    #[test]
    fn packets_round_trip_however_split(
        msgs in prop::collection::vec((".{0,8}", prop::collection::vec(json_value(), 0..5)), 1..8),
        mut cuts in prop::collection::vec(0usize..4096, 0..8),
    ) {
        let mut stream = BytesMut::new();
        for (dest, body) in &msgs {
            Packet::encode(dest, body, &mut stream).unwrap();
        }
        cuts.sort();
        let packets = decode_in_pieces(&stream, &cuts).unwrap();
        prop_assert_eq!(packets.len(), msgs.len());
        for (p, (dest, body)) in packets.iter().zip(&msgs) {
            prop_assert_eq!(p.dest(), Some(dest.as_str()));
            prop_assert_eq!(&p.values().unwrap(), body);
        }
    }

    #[test]
    fn without_tag_is_the_message_without_its_first_element(
        dest in ".{0,8}",
        mut body in prop::collection::vec(json_value(), 0..6),
        pretty in any::<bool>(),
        times in 1usize..4,
    ) {
        let mut whole = vec![Value::from(dest.as_str())];
        whole.extend(body.iter().cloned());
        let text = if pretty {
            serde_json::to_vec_pretty(&whole).unwrap()
        } else {
            serde_json::to_vec(&whole).unwrap()
        };
        let mut p = Packet::parse(text.into()).unwrap();
        for _ in 0..times {
            let Some(rest) = p.without_tag() else {
                prop_assert!(body.is_empty());
                break;
            };
            body.remove(0);
            // the same as the packet built fresh from what is left
            let fresh = Packet::parse(Packet::to_frame(&dest, &body).unwrap()).unwrap();
            prop_assert_eq!(rest.dest(), Some(dest.as_str()));
            prop_assert_eq!(&rest.values().unwrap(), &body);
            prop_assert_eq!(rest.decode::<Vec<Value>>().unwrap(), fresh.values().unwrap());
            prop_assert_eq!(rest.tag(), fresh.tag());
            let again: Value = serde_json::from_slice(rest.frame()).unwrap();
            let built: Value = serde_json::from_slice(fresh.frame()).unwrap();
            prop_assert_eq!(again, built);
            let reparsed = Packet::parse(rest.frame().clone()).unwrap();
            prop_assert_eq!(&reparsed.values().unwrap(), &body);
            for framing in [Framing::Cbor, Framing::Storable] {
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                let ra = framing.encode_frame(rest.frame(), &mut a).is_ok();
                let rb = framing.encode_frame(fresh.frame(), &mut b).is_ok();
                prop_assert_eq!((ra, &a), (rb, &b), "{:?}", framing);
            }
            if !pretty {
                // compact frames are the same bytes
                prop_assert_eq!(rest.frame(), fresh.frame());
                prop_assert_eq!(&rest, &fresh);
                prop_assert_eq!(format!("{rest:?}"), format!("{fresh:?}"));
            }
            p = rest;
        }
    }

    #[test]
    fn greetings_round_trip(
        node in "[A-Za-z0-9_./:-]{1,20}",
        pairs in prop::collection::vec(("[a-z]{1,8}", prop::option::of("[ -:<-~]{0,10}")), 0..5),
    ) {
        let mut g = Greeting::new(&node, ["hmac_md6_64_256"], ["json"]);
        g.pairs = pairs;
        let parsed = Greeting::parse(g.to_line().as_bytes());
        prop_assert_eq!(parsed.node_id(), Ok(node.as_str()));
        prop_assert_eq!(parsed.to_line(), g.to_line());
    }

    #[test]
    fn handshakes_in_random_chunks_agree_or_fail_alike(
        same_secret in any::<bool>(),
        chunk_a in 1usize..40,
        chunk_b in 1usize..40,
    ) {
        let now = Instant::now();
        let ca = Arc::new(HandshakeConfig::new("alice", Some("s3cret".into())));
        let cb = Arc::new(HandshakeConfig::new("bob", Some(if same_secret { "s3cret" } else { "other" }.into())));
        let mut a = Handshake::new(ca, Some("127.0.0.1:2"), Nonce::from_random([3; NONCE_BYTES]), now);
        let mut b = Handshake::new(cb, Some("127.0.0.1:1"), Nonce::from_random([4; NONCE_BYTES]), now);
        // bytes in flight towards each side, delivered `chunk` bytes at a time
        let mut wire_to_a = b.greeting();
        let mut wire_to_b = a.greeting();
        let (mut in_a, mut in_b) = (BytesMut::new(), BytesMut::new());
        let (mut ra, mut rb) = (Ok(None), Ok(None));
        for _ in 0..1000 {
            if ra.as_ref().is_ok_and(|r: &Option<_>| r.is_none()) {
                let n = chunk_a.min(wire_to_a.len());
                in_a.extend_from_slice(&wire_to_a.drain(..n).collect::<Vec<_>>());
                let mut out = Vec::new();
                ra = a.advance_granting(&mut in_a, &mut out);
                wire_to_b.extend(out);
            }
            if rb.as_ref().is_ok_and(|r: &Option<_>| r.is_none()) {
                let n = chunk_b.min(wire_to_b.len());
                in_b.extend_from_slice(&wire_to_b.drain(..n).collect::<Vec<_>>());
                let mut out = Vec::new();
                rb = b.advance_granting(&mut in_b, &mut out);
                wire_to_a.extend(out);
            }
            if wire_to_a.is_empty() && wire_to_b.is_empty() {
                break;
            }
        }
        if same_secret {
            let (ea, eb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
            prop_assert_eq!(ea.remote_node, "bob");
            prop_assert_eq!(eb.remote_node, "alice");
            prop_assert_eq!(ea.send_framing, eb.recv_framing);
            prop_assert_eq!(ea.sent_auth, eb.recv_auth);
        } else {
            prop_assert_eq!(ra.unwrap_err(), HandshakeError::AuthFailure);
            prop_assert_eq!(rb.unwrap_err(), HandshakeError::AuthFailure);
        }
    }
}

/// A stream of `msgs` encoded in `framing`.
fn encode_stream(framing: Framing, msgs: &[(String, Vec<Value>)]) -> Vec<u8> {
    let mut stream = BytesMut::new();
    for (dest, body) in msgs {
        framing.encode_packet(dest, body, &mut stream).unwrap();
    }
    stream.to_vec()
}

/// Packets as (dest, body) pairs.
fn as_messages(packets: &[Packet]) -> Vec<(String, Vec<Value>)> {
    packets
        .iter()
        .map(|p| (p.dest().unwrap().to_owned(), p.values().unwrap()))
        .collect()
}

/// Packets of a framing: a destination and values that framing carries
/// unchanged.
fn messages(framing: Framing) -> BoxedStrategy<Vec<(String, Vec<Value>)>> {
    let value = match framing {
        Framing::Storable => storable_value().boxed(),
        _ => json_value().boxed(),
    };
    prop::collection::vec((".{1,8}", prop::collection::vec(value, 0..4)), 1..5).boxed()
}

fn framing_and_messages() -> impl Strategy<Value = (Framing, Vec<(String, Vec<Value>)>)> {
    prop::sample::select(Framing::ALL.to_vec()).prop_flat_map(|f| (Just(f), messages(f)))
}

/// Splits `stream` at every offset and byte by byte: the same packets and
/// end as whole.
fn same_at_every_split(
    framing: Framing,
    stream: &[u8],
) -> Result<aemp::wire::Decoded, TestCaseError> {
    let whole = decode_stream(framing, FUZZ_MAX_PACKET, FUZZ_MAX_DEPTH, stream, &[]);
    for i in 0..=stream.len() {
        let split = decode_stream(framing, FUZZ_MAX_PACKET, FUZZ_MAX_DEPTH, stream, &[i]);
        prop_assert_eq!(&split, &whole, "{} split at {}", framing, i);
    }
    let every: Vec<usize> = (1..stream.len()).collect();
    let bytewise = decode_stream(framing, FUZZ_MAX_PACKET, FUZZ_MAX_DEPTH, stream, &every);
    prop_assert_eq!(&bytewise, &whole, "{} byte by byte", framing);
    Ok(whole)
}

/// Relaxed JSON::XS text for an object: its `perl_pretty` form with a `#`
/// comment and a trailing comma after some of its lines' values.
fn relaxed_text(object: &Value, marks: &[(bool, bool)]) -> String {
    let mut out = String::new();
    let pretty = perl_pretty(object);
    let mut lines = pretty.lines().peekable();
    let mut i = 0;
    while let Some(line) = lines.next() {
        let (comma, comment) = marks
            .get(i % marks.len().max(1))
            .copied()
            .unwrap_or_default();
        i += 1;
        out.push_str(line);
        let next_closes = lines
            .peek()
            .is_some_and(|n| matches!(n.trim_start().chars().next(), Some(']' | '}')));
        let opens = line.ends_with('[') || line.ends_with('{');
        if comma && next_closes && !opens && !line.ends_with(',') {
            out.push_str(" ,");
        }
        if comment {
            out.push_str("  # a comment, with \"quotes\" and , ] }");
        }
        out.push('\n');
    }
    out
}

proptest! {
    #![proptest_config(fixed(256))]

    #[test]
    fn every_framing_decodes_its_encoding_however_split(
        (framing, msgs) in framing_and_messages(),
    ) {
        let stream = encode_stream(framing, &msgs);
        let whole = same_at_every_split(framing, &stream)?;
        prop_assert_eq!(&whole.end, &Ok(()));
        prop_assert_eq!(as_messages(&whole.packets), msgs);
        // and the fuzz target's own checks (round trips, splits) hold
        fuzz_framing(framing, &stream);
    }

    #[test]
    fn mutated_streams_decode_alike_however_split(
        (framing, msgs) in framing_and_messages(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut stream = encode_stream(framing, &msgs);
        for (at, byte) in &edits {
            let i = at.index(stream.len());
            stream[i] = *byte;
        }
        stream.truncate(stream.len() - cut.index(stream.len() / 4 + 1));
        same_at_every_split(framing, &stream)?;
        fuzz_framing(framing, &stream);
    }

    #[test]
    fn arbitrary_bytes_decode_alike_however_split(
        framing in prop::sample::select(Framing::ALL.to_vec()),
        data in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        same_at_every_split(framing, &data)?;
    }

    #[test]
    fn lines_are_the_same_however_split(
        lines in prop::collection::vec("[ -~]{0,40}", 0..6),
        crlf in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut data = Vec::new();
        for l in &lines {
            data.extend_from_slice(l.as_bytes());
            data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        data.extend_from_slice(&tail);
        let whole = take_lines(&data, &[]);
        prop_assert_eq!(whole.0.len() >= lines.len(), true);
        for (got, want) in whole.0.iter().zip(&lines) {
            prop_assert_eq!(&got[..], want.as_bytes());
        }
        for i in 0..=data.len() {
            prop_assert_eq!(&take_lines(&data, &[i]), &whole, "split at {}", i);
        }
        fuzz_greeting(&data);
    }

    #[test]
    fn auth_lines_never_panic_and_split_alike(
        mode in any::<u8>(),
        method in prop::sample::select(vec!["cleartext", "hmac_md6_64_256", "tls_anon", "tls_md6_64_256", "x", ""]),
        token in prop_oneof![Just("736563726574".to_string()), "[0-9a-f]{0,70}", ".{0,20}"],
        framing in prop::sample::select(vec!["json", "storable", "cbor", "yaml", ""]),
        tail in "[;\n\r a-z]{0,10}",
    ) {
        let mut data = vec![mode | 1];
        data.extend_from_slice(format!("{method};{token};{framing}{tail}\n").as_bytes());
        fuzz_handshake(&data, Instant::now());
        // and with a greeting of our own making in front
        let mut data = vec![mode & !1];
        data.extend_from_slice(FUZZ_PEER_GREETING);
        data.extend_from_slice(format!("{method};{token};{framing}{tail}\n").as_bytes());
        fuzz_handshake(&data, Instant::now());
    }

    #[test]
    fn relaxed_config_text_parses_to_its_object(
        object in prop::collection::btree_map("[a-z_# ,]{0,8}", json_value(), 0..6),
        marks in prop::collection::vec((any::<bool>(), any::<bool>()), 1..8),
    ) {
        let object = Value::Object(object.into_iter().collect());
        let text = relaxed_text(&object, &marks);
        let parsed = ConfigFile::parse(&text, std::path::Path::new("p.rc"));
        prop_assert_eq!(parsed.ok().map(Value::Object), Some(object), "{}", text);
        fuzz_config(text.as_bytes());
    }

    #[test]
    fn relaxed_json_ish_text_never_panics(text in "[\\[\\]{}\",:0-9a-z#\\\\ \t\n.eE+-]{0,200}") {
        fuzz_config(text.as_bytes());
    }
}

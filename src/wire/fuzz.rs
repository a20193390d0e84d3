//! Entry points for the fuzz targets in `fuzz/` and for the property tests
//! (`tests/properties.rs`): one function per parser that sees peer bytes,
//! each checking its properties with `assert!` (a failed property is a
//! panic, which is what a fuzzer reports).
//!
//! Properties, for every input:
//! * no panic (and no hang: each function does work linear in its input,
//!   but for the handshake's token check);
//! * the stream decoders (line reader, `json`, `storable`, `cbor`, the
//!   handshake) give the same result however the input is split: whole,
//!   split once at a point derived from the input, and in chunks of
//!   1–16 bytes;
//! * what decodes re-encodes: a decoded packet's JSON frame, encoded in
//!   its own framing, decodes to the same values, and its values written
//!   back as JSON decode to the same values; in any other framing it
//!   decodes (when it encodes) to exactly one packet;
//! * a greeting formats to a line that parses to the same greeting line.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::{
    AuthMethod, DEFAULT_MONITOR_TIMEOUT, Event, FrameError, Framing, Greeting, Handshake,
    HandshakeConfig, HandshakeError, Nonce, Packet, take_line,
};

/// The packet size limit the fuzz entry points decode with.
pub const FUZZ_MAX_PACKET: usize = 1 << 16;

/// The nesting limit the fuzz entry points decode with.
pub const FUZZ_MAX_DEPTH: usize = 64;

/// What a framing's decoder made of a whole stream.
#[derive(Debug, PartialEq)]
pub struct Decoded {
    /// The packets, in order.
    pub packets: Vec<Packet>,
    /// How the stream ended: `Ok` if it ended between frames, else the
    /// decoder's (final) error.
    pub end: Result<(), FrameError>,
}

/// `data` in pieces that end at `cuts` (ascending offsets into `data`;
/// others are skipped) and at its end.
fn pieces<'a>(data: &'a [u8], cuts: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut from = 0;
    cuts.iter()
        .copied()
        .chain(std::iter::once(data.len()))
        .filter_map(move |cut| {
            let piece = data.get(from..cut)?;
            from = cut;
            Some(piece)
        })
}

/// Decodes `data` in `framing` with the given limits, handing it to the
/// decoder in pieces that end at `cuts` (ascending offsets into `data`;
/// others are ignored), then at the end of the stream
/// ([`Decoder::decode_eof`]).
pub fn decode_stream(
    framing: Framing,
    max_packet: usize,
    max_depth: usize,
    data: &[u8],
    cuts: &[usize],
) -> Decoded {
    let mut codec = framing.codec(max_packet, max_depth);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in pieces(data, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        packets,
                        end: Err(e),
                    };
                }
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(p)) => packets.push(p),
            Ok(None) => {
                return Decoded {
                    packets,
                    end: Ok(()),
                };
            }
            Err(e) => {
                return Decoded {
                    packets,
                    end: Err(e),
                };
            }
        }
    }
}

/// Offsets splitting `data` once, at a point derived from its bytes.
fn one_cut(data: &[u8]) -> Vec<usize> {
    let h = data
        .iter()
        .fold(0x9e37_79b9_usize, |h, &b| h.rotate_left(5) ^ usize::from(b));
    vec![h % (data.len() + 1)]
}

/// Offsets splitting `data` into chunks of 1–16 bytes (the size from its
/// last byte).
fn chunk_cuts(data: &[u8]) -> Vec<usize> {
    let size = 1 + usize::from(data.last().copied().unwrap_or(0) % 16);
    (size..data.len()).step_by(size).collect()
}

/// The values of a frame, if they decode.
fn values(p: &Packet) -> Option<Vec<serde_json::Value>> {
    p.values().ok()
}

/// Runs one framing's decoder on `data`: no panic, the same packets and
/// end however the stream is split, and every packet re-encodes (see the
/// module docs). Returns the whole stream's result.
pub fn fuzz_framing(framing: Framing, data: &[u8]) -> Decoded {
    let whole = decode_stream(framing, FUZZ_MAX_PACKET, FUZZ_MAX_DEPTH, data, &[]);
    for cuts in [one_cut(data), chunk_cuts(data)] {
        let split = decode_stream(framing, FUZZ_MAX_PACKET, FUZZ_MAX_DEPTH, data, &cuts);
        assert_eq!(split, whole, "{framing}: split at {cuts:?} differs");
    }
    for p in &whole.packets {
        let _ = (p.dest(), p.is_keepalive(), p.tag(), p.src_node());
        let vals = values(p);
        // the destination and values, encoded again, decode to the same
        if let (Some(dest), Some(vals)) = (p.dest(), &vals) {
            let text = Packet::to_frame(dest, vals).expect("Values encode");
            let back = decode_stream(Framing::Json, usize::MAX, usize::MAX, &text, &[]);
            assert_eq!(back.end, Ok(()), "{framing}: values as JSON do not decode");
            assert_eq!(back.packets.len(), 1);
            let again = back.packets.first();
            assert_eq!(again.and_then(|q| q.dest()), Some(dest), "{framing}: dest");
            assert_eq!(
                again.and_then(values).as_ref(),
                Some(vals),
                "{framing}: values as JSON decode differently"
            );
        }
        for other in Framing::ALL {
            let mut out = BytesMut::new();
            let encoded = other.encode_frame(p.frame(), &mut out);
            if other == framing {
                assert!(
                    encoded.is_ok(),
                    "{framing}: a decoded frame does not re-encode: {encoded:?}"
                );
            }
            if encoded.is_err() {
                continue;
            }
            let back = decode_stream(other, usize::MAX, FUZZ_MAX_DEPTH + 1, &out, &[]);
            assert_eq!(
                back.end,
                Ok(()),
                "{framing} → {other}: re-encoded frame fails"
            );
            assert_eq!(back.packets.len(), 1, "{framing} → {other}: not one packet");
            if other == framing {
                let again = back.packets.first();
                assert_eq!(again.and_then(values), vals, "{framing}: re-encoded values");
                assert_eq!(
                    again.and_then(|q| q.dest()),
                    p.dest(),
                    "{framing}: re-encoded dest"
                );
            }
        }
    }
    whole
}

/// The `json` framing's decoder on arbitrary bytes ([`fuzz_framing`]).
pub fn fuzz_json(data: &[u8]) {
    fuzz_framing(Framing::Json, data);
}

/// The `storable` framing's decoder on arbitrary bytes ([`fuzz_framing`]).
pub fn fuzz_storable(data: &[u8]) {
    fuzz_framing(Framing::Storable, data);
}

/// The `cbor` framing's decoder on arbitrary bytes ([`fuzz_framing`]).
pub fn fuzz_cbor(data: &[u8]) {
    fuzz_framing(Framing::Cbor, data);
}

/// The lines [`take_line`] takes off `data` fed in pieces ending at
/// `cuts`, and the error that stopped it, if any.
pub fn take_lines(data: &[u8], cuts: &[usize]) -> (Vec<Bytes>, Option<HandshakeError>) {
    let mut buf = BytesMut::new();
    let mut lines = Vec::new();
    for piece in pieces(data, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match take_line(&mut buf) {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => break,
                Err(e) => return (lines, Some(e)),
            }
        }
    }
    (lines, None)
}

/// The greeting parser and the line reader on arbitrary bytes: no panic;
/// the line reader takes the same lines however the input is split; every
/// line (and the whole input) parses as a greeting that formats to a line
/// parsing to the same line and node id.
pub fn fuzz_greeting(data: &[u8]) {
    let whole = take_lines(data, &[]);
    for cuts in [one_cut(data), chunk_cuts(data)] {
        assert_eq!(take_lines(data, &cuts), whole, "lines split at {cuts:?}");
    }
    for line in whole.0.iter().map(|l| &l[..]).chain([data]) {
        let g = Greeting::parse(line);
        let _ = (
            g.version_is(super::PROTOCOL_VERSION),
            g.get("tls"),
            g.has("x"),
        );
        let text = g.to_line();
        let again = Greeting::parse(text.as_bytes());
        assert_eq!(again.to_line(), text, "greeting line round trip");
        if let Ok(node) = g.node_id() {
            assert_eq!(again.node_id(), Ok(node), "greeting node id round trip");
        }
    }
}

/// What a driver saw of one handshake: the events and what it wrote, and
/// how it ended.
#[derive(Debug, PartialEq)]
struct Transcript {
    events: Vec<Event>,
    out: Vec<u8>,
    end: Option<HandshakeError>,
}

/// Drives `hs` over `input` fed in pieces ending at `cuts`, answering
/// every event the way a node might: refuse the node `connected`, grant
/// every slot.
fn drive(mut hs: Handshake, input: &[u8], cuts: &[usize], now: Instant) -> Transcript {
    let mut t = Transcript {
        events: Vec::new(),
        out: Vec::new(),
        end: None,
    };
    let mut buf = BytesMut::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let Some(piece) = input.get(from..cut) else {
            continue;
        };
        buf.extend_from_slice(piece);
        from = cut;
        loop {
            let event = match hs.advance(&mut buf) {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    t.end = Some(e);
                    return t;
                }
            };
            let answer = match &event {
                Event::PeerNamed(n) if n == "connected" => Err(hs.refuse()),
                Event::ClaimSlot { .. } | Event::SendAuth => hs.grant(&mut t.out).map(|_| ()),
                _ => Ok(()),
            };
            let tls = matches!(event, Event::StartTls { .. });
            t.events.push(event);
            // what follows is TLS records, not for `advance`
            if tls {
                return t;
            }
            if let Err(e) = answer {
                t.end = Some(e);
                return t;
            }
        }
    }
    t.end = hs.handle_timeout(now + DEFAULT_MONITOR_TIMEOUT).err();
    t
}

/// The peer's greeting lines that [`fuzz_handshake`] puts before the
/// input when its first byte is odd: with them, the rest is the peer's
/// auth line (`cleartext;736563726574;json` authenticates).
pub const FUZZ_PEER_GREETING: &[u8] =
    b"aemp;1;peer;hmac_md6_64_256,cleartext;json,storable,cbor;provider=fuzz\nnoncenoncenonce\n";

/// The handshake state machine (greeting, nonce and auth lines) on
/// arbitrary bytes: no panic, the same events, output and end however the
/// input is split. The first byte chooses the setup: bit 0 puts
/// [`FUZZ_PEER_GREETING`] first (so the rest is an auth line), bit 1 makes
/// us the dialling side, bit 2 a data connection, bit 3 turns TLS on;
/// the secret is `secret`.
pub fn fuzz_handshake(data: &[u8], now: Instant) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(FUZZ_PEER_GREETING.len() + rest.len());
    if mode & 1 != 0 {
        input.extend_from_slice(FUZZ_PEER_GREETING);
    }
    input.extend_from_slice(rest);
    let mut cfg = HandshakeConfig::new("fuzz", Some("secret".into()));
    cfg.auth_accept = AuthMethod::ALL.to_vec();
    cfg.framings = Framing::ALL.to_vec();
    cfg.tls = mode & 8 != 0;
    let cfg = Arc::new(cfg);
    let new = || {
        let peeraddr = (mode & 2 != 0).then_some("127.0.0.1:4040");
        let nonce = Nonce::from_line("ournonce");
        if mode & 4 != 0 {
            Handshake::new_dataconn(cfg.clone(), peeraddr, nonce, now, "fuzz-dc")
                .expect("a valid dataconn id")
        } else {
            Handshake::new(cfg.clone(), peeraddr, nonce, now)
        }
    };
    let whole = drive(new(), &input, &[], now);
    for cuts in [one_cut(&input), chunk_cuts(&input)] {
        let split = drive(new(), &input, &cuts, now);
        assert_eq!(split, whole, "handshake split at {cuts:?}");
    }
}

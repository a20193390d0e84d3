//! The sans-IO protocol core: greetings, auth, the handshake state machine,
//! framing, packets, and the typed messages of the node port
//! ([`NodeRequest`]) and of the Global service ([`GlobalMsg`]).
//!
//! Nothing in here touches a socket, an actor, a clock or a random number
//! generator (time comes in as `now` arguments, the nonce as bytes), so
//! every rule of the protocol can be tested and fuzzed on plain bytes. The transport layer only moves bytes in and out of
//! these types.

mod auth;
mod cert;
mod error;
mod framing;
mod fuzz;
mod global;
mod greeting;
mod handshake;
mod lenient;
mod node_port;
pub(crate) mod packet;
mod relay;
pub mod slot;
mod tagged;
mod tls;

pub use auth::{
    AuthMethod, DEFAULT_AUTH_ACCEPT, DEFAULT_AUTH_OFFER, Secret, cleartext_token,
    hmac_md6_64_256_token, hmac_md6_256, md6_256, select_auth, send_token, tls_md6_64_256_token,
    tokens_equal, transcript, verify_token,
};
pub use cert::{CertError, NodeCert, PeerRole, TrustError, cert_subject};
pub(crate) use error::printable;
pub use error::{CborFault, EncodeError, FrameError, HandshakeError, StorableError};
pub use framing::{
    BACKREF_ALLOWANCE, CborCodec, Codec, DEFAULT_MAX_DEPTH, DEFAULT_MAX_PACKET, Framing, JsonCodec,
    MAX_BACKREF_FACTOR, MAX_BIGNUM, StorableCodec, select_framing,
};
pub use fuzz::{
    Decoded, FUZZ_MAX_DEPTH, FUZZ_MAX_PACKET, FUZZ_PEER_GREETING, decode_stream, fuzz_cbor,
    fuzz_framing, fuzz_greeting, fuzz_handshake, fuzz_json, fuzz_storable, take_lines,
};
pub use global::{
    CONNECT_FUNCTION, GLOBAL_TAGS, GlobalMsg, GlobalMsgError, StringLists, connect_args,
};
pub use greeting::{
    DATACONN_ID_KEY, DATACONN_PROTOCOL, Greeting, MAX_DATACONN_ID, MAX_LINE, NONCE_BYTES, Nonce,
    PROTOCOL, PROTOCOL_VERSION, dataconn_id_ok, take_line,
};
pub use handshake::{
    DEFAULT_MONITOR_TIMEOUT, Established, Event, Handshake, HandshakeConfig, PROVIDER,
};
pub use lenient::{Lenient, LenientNumber, perl_numify};
pub use node_port::{
    NO_SUCH_PORT, NODE_PORT_TAGS, NodeRequest, NodeRequestError, Reason, ReplyTo, SPAWN_FUNCTION,
    SndEntry, die_reason, no_such_port, transport_error,
};
pub use packet::{ENTRY_COST, Packet, VALUE_COST};
pub use relay::RawRelay;
pub use tagged::{Tagged, TaggedError, tags_of};
pub use tls::{PeerVerifier, TlsConfigs};

/// Runs every byte parser of this module on arbitrary bytes, for fuzzers
/// and property tests: [`fuzz_greeting`], [`fuzz_json`],
/// [`fuzz_storable`], [`fuzz_cbor`] and [`fuzz_handshake`], each checking
/// its properties. `now` is the handshake's start (this module reads no
/// clock).
pub fn fuzz_parsers(data: &[u8], now: std::time::Instant) {
    fuzz_greeting(data);
    fuzz_json(data);
    fuzz_storable(data);
    fuzz_cbor(data);
    fuzz_handshake(data, now);
}

/// Decodes `data` as a JSON array and runs it through
/// [`NodeRequest::parse`] and back: must never panic, and what parses must
/// encode to values that parse to the same request. The packet `["",
/// data…]` goes through [`RawRelay::read`] too: what it reads must be the
/// relays the decoded request names, message for message.
pub fn fuzz_node_port(data: &[u8]) {
    let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(data) else {
        return;
    };
    let request = NodeRequest::parse(values);
    if let Ok(req) = &request {
        let again = NodeRequest::parse(req.encode());
        assert_eq!(again.as_ref(), Ok(req), "node-port request round trip");
        assert_eq!(req.clone().into_values(), req.encode());
    }
    let open = data.iter().position(|b| !packet::is_ws(*b)).unwrap_or(0);
    let mut frame = br#"["","#.to_vec();
    frame.extend_from_slice(&data[open + 1..]);
    let Ok(packet) = Packet::parse(frame.into()) else {
        return;
    };
    let Some(relays) = RawRelay::read(&packet) else {
        return;
    };
    let named: Vec<(String, Vec<serde_json::Value>)> = match request {
        Ok(NodeRequest::Snd { port, msg }) => vec![(port, msg)],
        Ok(NodeRequest::SndMultiple(entries)) => entries
            .into_iter()
            .map(|e| match e {
                SndEntry::Relay { port, msg } => (port, msg),
                SndEntry::Malformed { why, .. } => panic!("raw relay of a malformed entry: {why}"),
            })
            .collect(),
        other => panic!("raw relays of {other:?}"),
    };
    assert_eq!(relays.len(), named.len(), "raw relay count");
    for (relay, (port, msg)) in relays.iter().zip(named) {
        assert_eq!(relay.port(), port, "raw relay port");
        let again = Packet::parse(relay.frame("n")).expect("a raw relay's frame parses");
        assert_eq!(again.dest(), Some("n"));
        assert_eq!(again.values().ok(), Some(msg), "raw relay message");
    }
}

/// Decodes `data` as a JSON array and runs it through [`GlobalMsg::parse`]
/// and back: must never panic, and what parses must encode to values that
/// parse to the same message.
pub fn fuzz_global(data: &[u8]) {
    let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(data) else {
        return;
    };
    if let Ok(msg) = GlobalMsg::parse(values) {
        let again = GlobalMsg::parse(msg.encode());
        assert_eq!(again.as_ref(), Ok(&msg), "Global message round trip");
    }
}

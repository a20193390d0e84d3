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
pub mod slot;
mod tagged;
mod tls;

pub use auth::{
    AuthMethod, DEFAULT_AUTH_ACCEPT, DEFAULT_AUTH_OFFER, Secret, cleartext_token,
    hmac_md6_64_256_token, hmac_md6_256, md6_256, select_auth, send_token, tls_md6_64_256_token,
    tokens_equal, transcript, verify_token,
};
pub use cert::{CertError, NodeCert, PeerRole, TrustError, cert_subject};
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
pub use lenient::{Lenient, LenientNumber};
pub use node_port::{
    NO_SUCH_PORT, NODE_PORT_TAGS, NodeRequest, NodeRequestError, Reason, ReplyTo, SPAWN_FUNCTION,
    SndEntry, die_reason, no_such_port, transport_error,
};
pub use packet::Packet;
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
/// encode to values that parse to the same request.
pub fn fuzz_node_port(data: &[u8]) {
    let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(data) else {
        return;
    };
    if let Ok(req) = NodeRequest::parse(values) {
        let again = NodeRequest::parse(req.encode());
        assert_eq!(again.as_ref(), Ok(&req), "node-port request round trip");
        assert_eq!(req.clone().into_values(), req.encode());
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

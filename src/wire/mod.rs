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
    CborCodec, Codec, DEFAULT_MAX_DEPTH, DEFAULT_MAX_PACKET, Framing, JsonCodec, MAX_BIGNUM,
    StorableCodec, select_framing,
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

/// Runs every parser of this module on arbitrary bytes, for fuzzers and
/// property tests: none of them may panic, whatever the input. `now` is
/// the handshake's start (this module reads no clock).
pub fn fuzz_parsers(data: &[u8], now: std::time::Instant) {
    use tokio_util::codec::Decoder;

    let g = Greeting::parse(data);
    let _ = (g.node_id(), g.version_is(PROTOCOL_VERSION), g.to_line());

    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(_)) = take_line(&mut buf) {}

    let mut codec = JsonCodec::new(1 << 16, 64);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(p)) = codec.decode(&mut buf) {
        let _ = (p.dest(), p.values());
    }
    let _ = codec.decode_eof(&mut buf);

    let mut codec = StorableCodec::new(1 << 16, 64);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(p)) = codec.decode(&mut buf) {
        let _ = (p.dest(), p.values());
    }
    let _ = codec.decode_eof(&mut buf);

    // what the cbor decoder accepts is a JSON frame that re-encodes to CBOR
    // decoding to the same frame
    let mut codec = CborCodec::new(1 << 16, 64);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(p)) = codec.decode(&mut buf) {
        let _ = (p.dest(), p.values());
        let mut again = bytes::BytesMut::new();
        let encoded = Framing::Cbor.encode_frame(p.frame(), &mut again);
        assert!(encoded.is_ok(), "a decoded frame does not re-encode");
        let back = CborCodec::new(usize::MAX, 64).decode(&mut again);
        assert!(
            matches!(back, Ok(Some(_))),
            "a re-encoded frame does not decode"
        );
    }
    let _ = codec.decode_eof(&mut buf);

    let cfg = std::sync::Arc::new(HandshakeConfig::new("fuzz", Some("secret".into())));
    let mut hs = Handshake::new(cfg, None, Nonce::from_line("nonce"), now);
    let mut buf = bytes::BytesMut::from(data);
    let mut out = Vec::new();
    // answer every event the way a node might: refuse one name, grant the rest
    while let Ok(Some(event)) = hs.advance(&mut buf) {
        match event {
            Event::PeerNamed(n) if n == "connected" => {
                let _ = hs.refuse();
            }
            Event::ClaimSlot { .. } | Event::SendAuth => {
                let _ = hs.grant(&mut out);
            }
            _ => {}
        }
    }
    let _ = hs.handle_timeout(now + DEFAULT_MONITOR_TIMEOUT);
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

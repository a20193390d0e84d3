//! Errors of the sans-IO protocol layer.
//!
//! Handshake errors carry the reference implementation's exact reason
//! strings in their `Display` output where the reference has one (those
//! strings show up in logs on both sides and in `transport_error` reasons),
//! and a plain description where aemp is stricter than the reference
//! (`shared/docs/aemp-protocol.md`, section 7).

use thiserror::Error;

/// Why a handshake failed.
///
/// The checks run in the order of the reference implementation
/// (`AnyEvent::MP::Transport::new`): protocol name, version, talking to
/// ourselves, already connected, echo, identical nonces, auth selection,
/// framing selection, secret, then the peer's auth line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// A line before authentication was longer than [`MAX_LINE`](crate::wire::MAX_LINE)
    /// bytes (including its newline).
    #[error("greeting line exceeds {limit} bytes")]
    LineTooLong {
        /// The limit in bytes, newline included.
        limit: usize,
    },
    /// The first field of the greeting was not our protocol name.
    #[error("unparsable greeting, expected '{expected}', got '{got}'")]
    UnexpectedProtocol {
        /// The protocol we speak (`aemp`).
        expected: String,
        /// What the peer sent.
        got: String,
    },
    /// The peer speaks another protocol version.
    #[error("version mismatch (we: {ours}, they: {theirs})")]
    VersionMismatch {
        /// Our protocol version.
        ours: u32,
        /// The version field as the peer sent it.
        theirs: String,
    },
    /// The node id in the greeting cannot be used as a node id.
    #[error("malformed greeting: invalid node id {id:?} ({why})")]
    InvalidNodeId {
        /// The node id as received (lossily decoded).
        id: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The peer claims our own node id (this is also how an exact echo of
    /// our greeting fails, as in the reference).
    #[error("I refuse to talk to myself")]
    TalkingToMyself,
    /// A live connection to the peer's node id already exists.
    #[error("{node} already connected, not connecting again.")]
    AlreadyConnected {
        /// The peer's node id.
        node: String,
    },
    /// The peer's two greeting lines equal ours.
    #[error("authentication error, echo attack?")]
    EchoAttack,
    /// The peer's nonce line equals ours (the transport specification
    /// requires refusing this whatever the node ids).
    #[error("authentication error, identical nonces (echo attack?)")]
    IdenticalNonce,
    /// None of the auth methods the peer accepts is in our offer list.
    #[error("{offered}: no common auth type supported")]
    NoCommonAuth {
        /// The peer's accept list as sent.
        offered: String,
    },
    /// None of the framings the peer accepts is one of ours.
    #[error("{offered}: no common framing method supported")]
    NoCommonFraming {
        /// The peer's framing list as sent.
        offered: String,
    },
    /// Neither TLS nor a shared secret is available.
    #[error("unable to handshake TLS and no shared secret configured")]
    NoSecret,
    /// We selected an auth method we cannot produce a token for.
    #[error("{method}: fatal, selected unsupported snd auth method")]
    UnsupportedSendAuth {
        /// The selected method.
        method: String,
    },
    /// The peer authenticated with a method we do not know.
    #[error("{method}: fatal, selected unsupported rcv auth method")]
    UnsupportedRecvAuth {
        /// The method the peer used.
        method: String,
    },
    /// The peer authenticated with a method we know but do not accept
    /// (it is missing from our `auth_accept` list; Perl would let it pass).
    #[error("{method}: auth method not accepted")]
    AuthNotAccepted {
        /// The method the peer used.
        method: String,
    },
    /// The peer authenticated inside TLS with a method that is not a
    /// `tls_*` one (the reference would let `cleartext` and a secret-less
    /// HMAC through there; Perl never sends them inside TLS).
    #[error("{method}: not accepted inside TLS (only tls_md6_64_256 and tls_anon are)")]
    NotInsideTls {
        /// The method the peer used.
        method: String,
    },
    /// The auth line lacks its token or framing field.
    #[error("malformed auth line: missing {field} field")]
    MalformedAuthLine {
        /// Name of the missing field.
        field: &'static str,
    },
    /// The peer chose a framing that our greeting did not list.
    #[error("{framing}: framing not offered in our greeting")]
    FramingNotOffered {
        /// The framing the peer chose.
        framing: String,
    },
    /// An `aemp-dataconn` greeting without a usable `dataconn_id`.
    #[error("data connection greeting without a usable dataconn_id")]
    MissingDataconnId,
    /// A data connection id we were asked to dial with cannot travel in a
    /// greeting (see [`dataconn_id_ok`](crate::wire::dataconn_id_ok)).
    #[error("unusable data connection id {id:?}")]
    InvalidDataconnId {
        /// The id.
        id: String,
    },
    /// The auth token did not match.
    #[error("authentication failure/shared secret mismatch")]
    AuthFailure,
    /// The handshake did not complete before its absolute deadline.
    #[error("handshake not completed within {timeout:?}")]
    Timeout {
        /// The configured handshake timeout.
        timeout: std::time::Duration,
    },
    /// The handshake was fed after it completed (the bytes after the
    /// peer's auth line belong to the packet stream).
    #[error("handshake already completed")]
    Finished,
    /// The driver answered an event that was not asked (for example
    /// [`grant`](crate::wire::Handshake::grant) before
    /// [`Event::ClaimSlot`](crate::wire::Event::ClaimSlot)).
    #[error("handshake driver called {call} out of order")]
    OutOfOrder {
        /// The call.
        call: &'static str,
    },
}

/// Why a packet stream could not be decoded after authentication. Every
/// one of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A packet was valid JSON but not an array.
    #[error("protocol error: packet is not a JSON array")]
    NotAnArray,
    /// A non-empty packet whose first element (the destination port) is
    /// not a string.
    #[error("protocol error: packet destination is not a string")]
    DestNotString,
    /// The bytes are not valid JSON.
    #[error("protocol error: invalid JSON: {0}")]
    InvalidJson(String),
    /// Arrays and objects nested deeper than the limit.
    #[error("protocol error: packet nested deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
    /// A packet larger than the configured limit.
    #[error("protocol error: packet larger than {limit} bytes")]
    TooLarge {
        /// The size limit in bytes.
        limit: usize,
    },
    /// The stream ended in the middle of a packet.
    #[error("Unexpected end-of-file inside a packet")]
    Truncated,
    /// A `storable` frame that aemp does not decode.
    #[error("protocol error: storable: {0}")]
    Storable(#[from] StorableError),
    /// The bytes are not CBOR aemp accepts (`cbor` framing).
    #[error("protocol error: invalid CBOR at offset {offset} of the packet: {fault}")]
    InvalidCbor {
        /// Offset of the offending head from the start of the packet.
        offset: usize,
        /// What is wrong there.
        fault: CborFault,
    },
    /// An I/O error handed to the decoder (see the `From` impl).
    #[error("{0}")]
    Io(String),
}

/// Why a `storable` frame was refused (see
/// [`StorableCodec`](crate::wire::StorableCodec) for what it decodes).
/// Offsets count from the start of the Storable image (after the length
/// prefix).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorableError {
    /// The BER length prefix has a leading `0x80` byte (a padded,
    /// non-minimal length; Perl's reader would desynchronise on it).
    #[error("padded (non-minimal) length prefix")]
    PaddedLength,
    /// The image does not start with Storable's network-order header of
    /// major version 2 (`05 <minor>`).
    #[error("not a Storable 2.x network-order image (header byte 0x{0:02x})")]
    NotNetorder(u8),
    /// An item runs past the end of the frame.
    #[error("image ends inside an item (offset {at})")]
    Truncated {
        /// Where the item that does not fit starts.
        at: usize,
    },
    /// Bytes are left in the frame after the root array.
    #[error("{len} trailing bytes after the root array (offset {at})")]
    TrailingBytes {
        /// Where they start.
        at: usize,
        /// How many there are.
        len: usize,
    },
    /// An array or hash claims more elements than the rest of the frame
    /// can hold.
    #[error("count {count} at offset {at} cannot fit in the remaining bytes")]
    CountTooLarge {
        /// The element count the peer sent.
        count: u32,
        /// Offset of the container.
        at: usize,
    },
    /// An opcode aemp does not decode (ties, hooks, code, regexps,
    /// vstrings, native numbers, large objects, unknown opcodes).
    #[error("unsupported opcode 0x{op:02x} ({what}) at offset {at}")]
    Unsupported {
        /// The opcode.
        op: u8,
        /// What Storable uses it for.
        what: &'static str,
        /// Its offset.
        at: usize,
    },
    /// An object blessed into a class other than `JSON::PP::Boolean`.
    #[error("object blessed into class '{0}' (only JSON::PP::Boolean decodes)")]
    UnsupportedClass(String),
    /// A `JSON::PP::Boolean` whose value is not 0 or 1 (or not a scalar).
    #[error("JSON::PP::Boolean at offset {at} is not 0 or 1")]
    BadBoolean {
        /// Offset of the blessed value.
        at: usize,
    },
    /// An `ix_bless` naming a class index that was never defined.
    #[error("class index {0} was never defined")]
    UnknownClass(u32),
    /// A back-reference to an object number not stored yet.
    #[error("back-reference to object {0}, which was never stored")]
    UnknownObject(u32),
    /// A back-reference to an object that contains it (a cycle).
    #[error("back-reference to object {0}, which is not finished (a cycle)")]
    Cycle(u32),
    /// Back-references copied more JSON than the image may expand to:
    /// [`MAX_BACKREF_FACTOR`](crate::wire::MAX_BACKREF_FACTOR) times its
    /// size, plus [`BACKREF_ALLOWANCE`](crate::wire::BACKREF_ALLOWANCE)
    /// bytes (a few hundred bytes of nested back-references can otherwise
    /// stand for megabytes).
    #[error("back-references expand the {image}-byte image by more than {limit} bytes")]
    BackRefsTooLarge {
        /// The image's size.
        image: usize,
        /// The most its back-references may add.
        limit: usize,
    },
    /// A UTF-8 string or key that is not valid UTF-8.
    #[error("invalid UTF-8 in the string at offset {at}")]
    InvalidUtf8 {
        /// Offset of the string's bytes.
        at: usize,
    },
    /// Hash flags or key flags aemp does not decode (keys stored as
    /// objects, placeholders of restricted hashes).
    #[error("unsupported hash or key flags 0x{flags:02x} at offset {at}")]
    Flags {
        /// The flags byte.
        flags: u8,
        /// Its offset.
        at: usize,
    },
}

/// What is wrong with a CBOR item (see [`FrameError::InvalidCbor`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CborFault {
    /// Additional information 28–30 is reserved in every major type.
    #[error("reserved additional information {info} (major type {major})")]
    ReservedInfo {
        /// The major type (0–7).
        major: u8,
        /// The additional information (28–30).
        info: u8,
    },
    /// Integers and tags have no indefinite-length form.
    #[error("indefinite length for major type {major}")]
    IndefiniteNotAllowed {
        /// The major type (0, 1 or 6).
        major: u8,
    },
    /// A break (`ff`) outside an indefinite-length item, between a tag and
    /// its value, or where a map value is due.
    #[error("unexpected break")]
    UnexpectedBreak,
    /// A chunk of an indefinite-length string that is not a
    /// definite-length string of the same major type.
    #[error("indefinite-length string chunk of the wrong type")]
    BadChunk,
    /// A text string (or one of its chunks) that is not valid UTF-8.
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// A simple value other than false, true, null and undefined.
    #[error("unsupported simple value {0}")]
    UnsupportedSimple(u8),
    /// A map key that is neither a string nor an integer.
    #[error("map key is not a string or an integer")]
    BadKey,
    /// A tag aemp does not decode: 25/256 (string references) and 28/29
    /// (value sharing), which CBOR::XS writes only when asked to.
    #[error("unsupported tag {0} (string references and value sharing are not supported)")]
    UnsupportedTag(u64),
    /// The content of a bignum tag (2, 3) is not a byte string.
    #[error("bignum (tag 2/3) content is not a byte string")]
    BignumNotBytes,
    /// A bignum longer than the limit.
    #[error("bignum longer than {limit} bytes")]
    BignumTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The bignums of one item together are longer than the limit.
    #[error("bignums longer than {limit} bytes in one item")]
    BignumsTooLong {
        /// The limit in bytes.
        limit: usize,
    },
}

/// `tokio_util`'s `Decoder` contract wants decode errors to absorb I/O
/// errors; the transport reads the socket itself and reports its errors
/// as its own, so this only keeps that contract.
impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e.to_string())
    }
}

/// Why a message could not be encoded into a packet.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// Messages must serialize to JSON arrays (`(a, b)`, `Vec<_>`, tuple
    /// structs, `serde_json::json!([...])`).
    #[error("a message must serialize to an array")]
    NotAnArray,
    /// serde could not serialize the message.
    #[error("cannot serialize message: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// `s` with its control characters escaped (`\u{1b}`), for the fields of
/// a peer's greeting or auth line that go into error texts and logs.
pub(crate) fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

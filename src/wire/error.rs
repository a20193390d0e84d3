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
    /// An I/O error handed to the decoder (see the `From` impl).
    #[error("{0}")]
    Io(String),
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

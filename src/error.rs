//! Errors of the node API, over the layer errors of [`crate::wire`].

use thiserror::Error;

pub use crate::config::{InvalidConfig, NodeIdError};
use crate::wire::{EncodeError, FrameError, HandshakeError, Reason};

/// The error type of handlers and init functions: anything that converts
/// into a boxed error, e.g. `"text".into()` or `?` on most errors.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Starting a node failed.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error("configuration error: {0}")]
    Config(#[from] SettingError),
    /// A bind address could not be resolved or bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The bind address as configured.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The certificate cannot be used for TLS.
    #[error("TLS: {0}")]
    Tls(String),
    /// `start` was called outside a running actix system.
    #[error("Node::start must run inside an actix system (actix_rt::System)")]
    NoSystem,
    /// The configuration file could not be used.
    #[error(transparent)]
    File(#[from] crate::config::ConfigError),
    /// A configured service could not be started.
    #[error("service {service}: {source}")]
    Service {
        /// The service as configured.
        service: String,
        /// Why it failed.
        source: ServiceError,
    },
}

/// A setting a node cannot start with (in [`StartError::Config`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingError {
    /// The settings together cannot work (see
    /// [`NodeConfig::validate`](crate::NodeConfig::validate)).
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
    /// A function given to the builder has a name that is not fully
    /// qualified.
    #[error(transparent)]
    FunctionName(#[from] FunctionNameError),
    /// A bind address cannot be parsed.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The binds expand to no address at all.
    #[error("binds {0:?} expand to no address")]
    NoAddress(Vec<String>),
}

/// A function name that is not fully qualified (`Pkg::func`), as the
/// reference requires for spawn.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("function name {0:?} must be fully qualified (\"Pkg::func\")")]
pub struct FunctionNameError(pub String);

/// An address (`host:port`, `[v6]:port`, …) that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    /// Nothing at all.
    #[error("empty address")]
    Empty,
    /// `[` without `]`.
    #[error("{0}: unbalanced '['")]
    UnbalancedBracket(String),
    /// Something other than `:port` after `]`.
    #[error("{0}: expected ':' after ']'")]
    AfterBracket(String),
    /// The port is neither a number nor `*`.
    #[error("{spec}: unparsable port {port:?}")]
    Port {
        /// The address.
        spec: String,
        /// Its port part.
        port: String,
    },
}

/// A configured service could not be started (in
/// [`StartError::Service`]).
#[derive(Debug, Error)]
pub enum ServiceError {
    /// An array whose first element is not a function name.
    #[error("expected [\"Pkg::func\", args…]")]
    BadArray,
    /// Neither a string nor an array.
    #[error("expected \"Pkg::func\" or [\"Pkg::func\", args…]")]
    BadSpec,
    /// `"Pkg::"`, and no function of that package is registered.
    #[error("no function of package {0} is registered")]
    NoPackage(String),
    /// The name is an init function's.
    #[error("{0} is an init function, not a service")]
    InitFunction(String),
    /// No function of that name is registered.
    #[error("unknown function {0}")]
    UnknownFunction(String),
    /// The function failed.
    #[error(transparent)]
    Function(#[from] FunctionError),
}

/// A plain function (see [`Node::register_fn`](crate::Node::register_fn))
/// failed.
#[derive(Debug, Error)]
pub enum FunctionError {
    /// It returned an error.
    #[error("{0}")]
    Failed(HandlerError),
    /// It panicked (with this message).
    #[error("{0}")]
    Panicked(String),
}

/// An init function created no port.
#[derive(Debug, Error)]
pub(crate) enum InitError {
    /// The name is a plain function's.
    #[error("{0} is not an init function")]
    NotInit(String),
    /// No function of that name is registered.
    #[error("unknown init function {0}")]
    Unknown(String),
    /// It returned an error.
    #[error("init function {func} failed: {error}")]
    Failed {
        /// The init function.
        func: String,
        /// Its error.
        error: HandlerError,
    },
    /// It panicked.
    #[error("init function {func} panicked: {message}")]
    Panicked {
        /// The init function.
        func: String,
        /// The panic's message.
        message: String,
    },
}

/// A message could not be sent.
#[derive(Debug, Error)]
pub enum SendError {
    /// The message does not serialize to a JSON array.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A queue bound refused the message: the queue of a node that is not
    /// up overflowed ([`Node::snd`](crate::Node::snd): what waited was
    /// dropped and the node's monitors fired), or a queue was full for
    /// [`Node::try_snd`](crate::Node::try_snd) (nothing failed), or the
    /// message is larger than the whole bound.
    #[error("send queue for node {node} is full ({limit} bytes waiting)")]
    QueueFull {
        /// The destination node.
        node: String,
        /// The configured limit.
        limit: usize,
    },
    /// The connection to the node is failing (its send queue overflowed, or
    /// it is closing); nothing more is sent on it.
    #[error("connection to node {node} is closed (send queue overflow or shutdown)")]
    ConnectionClosed {
        /// The destination node.
        node: String,
    },
    /// The node is shutting down.
    #[error("node is shut down")]
    Shutdown,
    /// Node ports cannot be killed.
    #[error("{0}: killing a node port is not allowed")]
    NodePort(String),
}

/// A spawn could not be started.
#[derive(Debug, Error)]
pub enum SpawnError {
    /// The function name is not fully qualified (`Pkg::func`).
    #[error(transparent)]
    InitName(#[from] FunctionNameError),
    /// The target names no node.
    #[error("spawn target {0:?} names no node")]
    NoNode(String),
    /// The generated name is taken (a user port of the same shape).
    #[error("spawned port name {0:?} is taken")]
    NameTaken(String),
    /// The init arguments do not serialize to an array.
    #[error("spawn arguments: {0}")]
    Args(#[from] EncodeError),
    /// The spawn request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// A [`cal`](crate::Node::cal) did not get its reply.
#[derive(Debug, Error)]
pub enum CalError {
    /// The request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
    /// The target port died (also a normal exit) before replying.
    #[error("target port died: {0:?}")]
    TargetDied(Reason),
}

/// A port could not be created.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    /// A port of that name exists already.
    #[error("port name {0:?} is taken")]
    NameTaken(String),
    /// The name is empty (the node port) or contains `#`.
    #[error("invalid port name {0:?}: must be non-empty and without '#'")]
    InvalidName(String),
}

/// Why [`Node::rcv`](crate::Node::rcv) (or `unrcv`, `rcv_default`) could
/// not change a port's callbacks. Perl croaks in the same cases (MP.pm
/// 403–404, 410–411, 440–441).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RcvError {
    /// The port is on another node.
    #[error("{0}: rcv can only be called on local ports")]
    NotLocal(String),
    /// No local port of that id exists (never did, or was killed).
    #[error("{0}: no such port")]
    NoSuchPort(String),
    /// The port's messages go to an actix actor or a channel, not to
    /// callbacks.
    #[error("{0}: rcv can only be called on message matching ports")]
    NotMatching(String),
    /// A port that is being created and is not a spawned one (a spawned
    /// port takes `rcv` while its init function runs); try again once its
    /// creator returned its id.
    #[error("{0}: the port is still being created")]
    Pending(String),
}

/// Why a connection failed or ended.
///
/// `Display` gives the texts the reference puts into `transport_error`
/// reasons where it has one (`Unexpected end-of-file`, `Connection reset by
/// peer`, …).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConnectionError {
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer sent an undecodable packet stream.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed the connection.
    #[error("Unexpected end-of-file")]
    Eof,
    /// A socket error.
    #[error("{0}")]
    Io(String),
    /// TCP connect failed.
    #[error("unable to connect: {0}")]
    Connect(String),
    /// More was queued for the connection than its limit allows.
    #[error("send queue overflow")]
    SendQueueOverflow,
    /// The node is shutting down.
    #[error("node shut down")]
    Shutdown,
    /// No connection came up within `monitor_timeout`.
    #[error("unable to connect")]
    UnableToConnect,
    /// The handshake was pending on a full listener and was closed to
    /// make room for one from a source holding fewer (see
    /// [`NodeConfig::max_pending_handshakes`](crate::NodeConfig::max_pending_handshakes)).
    #[error("pending handshake closed to make room on a full listener")]
    Evicted,
    /// Nothing arrived from the peer within `peer_timeout`, heartbeat
    /// included (see [`NodeConfig::peer_timeout`](crate::NodeConfig::peer_timeout)).
    #[error("peer timeout")]
    PeerTimeout,
}

impl From<std::io::Error> for ConnectionError {
    fn from(e: std::io::Error) -> Self {
        ConnectionError::Io(io_error_text(&e))
    }
}

/// The text of an I/O error as the C library words it (`Connection reset by
/// peer`), without Rust's ` (os error N)` suffix: the reference puts these
/// texts into `transport_error` reasons.
pub fn io_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(i)) => text[..i].to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts are the ones the `String` errors had; users and tests
    /// read them.
    #[test]
    fn texts() {
        let t = |e: &dyn std::error::Error| e.to_string();
        let start = |e: SettingError| t(&StartError::Config(e));
        assert_eq!(
            start(InvalidConfig::NodeId(NodeIdError::Empty).into()),
            "configuration error: a node id must not be empty"
        );
        assert_eq!(
            t(&NodeIdError::Hash("a#b".into())),
            r#"node id "a#b" contains '#'"#
        );
        assert_eq!(
            t(&NodeIdError::GreetingSeparator("a;b".into())),
            r#"node id "a;b" contains a greeting separator"#
        );
        assert_eq!(
            t(&InvalidConfig::Limits),
            "max_packet, max_depth and max_send_queue must be positive"
        );
        assert_eq!(
            start(FunctionNameError("f".into()).into()),
            r#"configuration error: function name "f" must be fully qualified ("Pkg::func")"#
        );
        assert_eq!(
            t(&SpawnError::InitName(FunctionNameError("f".into()))),
            r#"function name "f" must be fully qualified ("Pkg::func")"#
        );
        assert_eq!(
            start(
                AddressError::Port {
                    spec: "h:x".into(),
                    port: "x".into()
                }
                .into()
            ),
            r#"configuration error: h:x: unparsable port "x""#
        );
        assert_eq!(
            t(&AddressError::AfterBracket("[::1]x".into())),
            "[::1]x: expected ':' after ']'"
        );
        assert_eq!(
            start(SettingError::NoAddress(vec!["a".into()])),
            r#"configuration error: binds ["a"] expand to no address"#
        );
        let service = |source| {
            t(&StartError::Service {
                service: r#""X::y""#.into(),
                source,
            })
        };
        assert_eq!(
            service(ServiceError::BadSpec),
            r#"service "X::y": expected "Pkg::func" or ["Pkg::func", args…]"#
        );
        assert_eq!(
            service(ServiceError::Function(FunctionError::Failed("no".into()))),
            r#"service "X::y": no"#
        );
        assert_eq!(
            t(&InitError::Panicked {
                func: "X::y".into(),
                message: "boom".into()
            }),
            "init function X::y panicked: boom"
        );
    }
}

//! Errors of the node API, over the layer errors of [`crate::wire`].

use thiserror::Error;

use crate::wire::{EncodeError, FrameError, HandshakeError};

/// Starting a node failed.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error("configuration error: {0}")]
    Config(String),
    /// A bind address could not be resolved or bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The bind address as configured.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `start` was called outside a running actix system.
    #[error("Node::start must run inside an actix system (actix_rt::System)")]
    NoSystem,
    /// The configuration file could not be used.
    #[error(transparent)]
    File(#[from] crate::config::ConfigError),
    /// A configured service could not be started.
    #[error("service {service}: {message}")]
    Service {
        /// The service as configured.
        service: String,
        /// Why it failed.
        message: String,
    },
}

/// A message could not be sent.
#[derive(Debug, Error)]
pub enum SendError {
    /// The message does not serialize to a JSON array.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Too much is already waiting for a node that is not up.
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
    #[error("{0}")]
    InitName(String),
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
    TargetDied(crate::kernel::Reason),
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

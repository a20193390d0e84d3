//! Transport: TCP listeners and dialers, the handshake driver, and the
//! connection actor that moves bytes between sockets and the kernel.

pub(crate) mod binds;
pub(crate) mod connection;
pub(crate) mod connector;
pub(crate) mod handshake;
pub(crate) mod listener;
pub(crate) mod outbox;

use tokio::net::TcpStream;

/// SO_KEEPALIVE on every transport (the reference relies on it to notice
/// dead idle peers) and TCP_NODELAY per the `nodelay` setting.
pub(crate) fn configure_socket(stream: &TcpStream, nodelay: bool) {
    if let Err(e) = socket2::SockRef::from(stream).set_keepalive(true) {
        tracing::debug!(error = %e, "cannot set SO_KEEPALIVE");
    }
    if let Err(e) = stream.set_nodelay(nodelay) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

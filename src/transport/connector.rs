//! Dialling: single connects and the seed keepers.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};

use super::connection::Connection;
use crate::error::ConnectionError;
use crate::kernel::{NodeEvent, NodeInner};
use crate::wire::HandshakeError;

/// Dials `addr` and runs the handshake; resolves to the peer's node id.
/// The connection actor is started on the node's arbiter, so this works
/// from any thread.
pub(crate) async fn connect(node: Arc<NodeInner>, addr: String) -> Result<String, ConnectionError> {
    let (tx, rx) = oneshot::channel();
    let n = node.clone();
    let spawned = node.arbiter.spawn(async move {
        match dial(&n, &addr).await {
            Ok((stream, peer)) => {
                Connection::start(n, stream, peer, true, Some(tx));
            }
            Err(e) => {
                tracing::debug!(node = %n.id, %addr, error = %e, "connect failed");
                let _ = tx.send(Err(e));
            }
        }
    });
    if !spawned {
        return Err(ConnectionError::Shutdown);
    }
    rx.await.unwrap_or(Err(ConnectionError::Shutdown))
}

/// TCP connect to the first address of `addr` that answers, within
/// `monitor_timeout`.
async fn dial(node: &NodeInner, addr: &str) -> Result<(TcpStream, SocketAddr), ConnectionError> {
    let attempt = async {
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await? {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok((s, a)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
        }))
    };
    match tokio::time::timeout(node.config.monitor_timeout, attempt).await {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err(e)) => Err(ConnectionError::Connect(crate::wire::io_error_text(&e))),
        Err(_) => Err(ConnectionError::Connect("timed out".into())),
    }
}

/// Keeps a seed connected: dials it at start, again every
/// `connect_interval` while that fails, and again when the node behind it
/// goes down. A seed that turns out to be ourselves is dropped.
pub(crate) fn spawn_seed(node: Arc<NodeInner>, addr: String) {
    actix_rt::spawn(async move {
        let mut events = node.events.subscribe();
        while !node.shutdown.is_cancelled() {
            let result = tokio::select! {
                _ = node.shutdown.cancelled() => break,
                r = connect(node.clone(), addr.clone()) => r,
            };
            let up = match result {
                Ok(id) => Some(id),
                Err(ConnectionError::Handshake(HandshakeError::TalkingToMyself)) => {
                    tracing::info!(node = %node.id, seed = %addr, "seed is this node itself; dropped");
                    break;
                }
                Err(ConnectionError::Handshake(HandshakeError::AlreadyConnected { node })) => {
                    Some(node)
                }
                Err(error) => {
                    tracing::debug!(node = %node.id, seed = %addr, %error, "seed not reached");
                    None
                }
            };
            match up {
                Some(id) => {
                    tokio::select! {
                        _ = node.shutdown.cancelled() => break,
                        _ = until_down(&node, &mut events, &id) => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = node.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(node.config.connect_interval) => {}
                    }
                }
            }
        }
    });
}

/// Waits until `id` is not up (events seen since `events` was subscribed
/// count, so a loss between connect and this call is not missed).
async fn until_down(node: &NodeInner, events: &mut broadcast::Receiver<NodeEvent>, id: &str) {
    loop {
        if !node.peers.is_up(id) {
            return;
        }
        match events.recv().await {
            Ok(NodeEvent::Down { node: n, .. }) if n == id => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

//! Nodes going up and down: node-change callbacks and `mon_nodes`,
//! transport failures (monitors fire with `transport_error`), the connect
//! deadline (`unable to connect`), known addresses, and the sweep that
//! notices ports whose actor stopped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::monitors::Reason;
use super::node::{Node, NodeEvent, NodeInner};
use super::port::PortId;
use super::watchers::NodeChange;
use crate::error::ConnectionError;
use crate::transport::Peer;
use crate::transport::connector::ConnectorId;

/// How often ports whose receivers are gone are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// `("transport_error", node, text)`, the reason of every monitor of a
/// node whose transport failed.
fn transport_error(node: &str, text: &str) -> Reason {
    crate::wire::transport_error(node, text)
}

impl NodeInner {
    /// A connection to `peer.node` was attached: tell the node-change
    /// callbacks (with the dialled address, from which Global learns a
    /// seed's node id) and subscribers.
    pub(crate) fn peer_up(&self, peer: &Peer) {
        if let Some(provider) = peer.established.remote_greeting.get("provider") {
            self.remote.set_provider(peer.node.clone(), provider);
        }
        let auth = super::remote::PeerAuth {
            method: peer.established.recv_auth,
            subject: peer.subject.clone(),
        };
        tracing::debug!(node = %self.id, remote = %peer.node, ?auth, "peer authenticated");
        self.remote.set_auth(peer.node.clone(), auth);
        self.node_changed(&NodeChange::Up {
            node: &peer.node,
            addr: peer.addr,
            dialed: peer.dialed.as_deref(),
        });
        self.emit(NodeEvent::Up {
            node: peer.node.to_string(),
            addr: peer.addr,
            outbound: peer.outbound(),
        });
    }

    /// Connection `conn_id` to `node` ended with `error`. If it was the
    /// live one, the node is down: the `mon1` registrations it made on our
    /// ports are dropped, every monitor of its ports and of the node fires
    /// once with `transport_error`, and `mon_nodes` hears of it — all before
    /// another connection to it may complete.
    pub(crate) fn connection_lost(&self, node: &str, conn_id: u64, error: &ConnectionError) {
        if !self.remote.peers().connection_lost(node, conn_id) {
            return;
        }
        for port in self.remote.monitors().rmon_take(node) {
            self.ports.registry().remove_remote_monitor(&port, node);
        }
        // (its budgets came back with its registrations)
        self.forget_limit_log(node);
        let reason = transport_error(node, &error.to_string());
        self.fire_node_monitors(node, &reason);
        self.node_changed(&NodeChange::Down {
            node,
            reason: &reason,
        });
        self.emit(NodeEvent::Down {
            node: node.to_owned(),
            error: error.clone(),
        });
        self.remote.forget_node(node);
        self.remote.peers().end_failing(node);
    }

    /// No connection to `node` came up within `monitor_timeout`: its queue
    /// is dropped and its monitors fire with `unable to connect`
    /// (`mon_nodes` hears nothing: the node was never up).
    pub(crate) fn unable_to_connect(&self, node: &str) {
        if !self.remote.peers().unable_to_connect(node) {
            return;
        }
        tracing::info!(node = %self.id, remote = node, "unable to connect");
        let error = crate::error::ConnectionError::UnableToConnect;
        let reason = transport_error(node, &error.to_string());
        self.fire_node_monitors(node, &reason);
        self.remote.forget_node(node);
        self.remote.peers().end_failing(node);
    }

    /// A fire-and-forget send passed the bound (`limit` bytes) of the
    /// queue of `node`, which is not up: the queue is dropped already (see
    /// `Peers::send`); its monitors fire with `send queue overflow`, as a
    /// connection's would (`mon_nodes` hears nothing: the node was never
    /// up).
    pub(crate) fn connecting_queue_overflow(&self, node: &str, limit: usize) {
        tracing::warn!(node = %self.id, remote = node, limit, "send queue overflow while connecting: queued messages dropped");
        self.transport
            .limit_hits()
            .hit(node, crate::transport::limits::Limit::ConnectingQueue);
        let reason = transport_error(node, &ConnectionError::SendQueueOverflow.to_string());
        self.fire_node_monitors(node, &reason);
        self.remote.peers().end_failing(node);
    }

    fn fire_node_monitors(&self, node: &str, reason: &Reason) {
        for (port, action) in self.remote.monitors().take_node(node) {
            let id = if port.is_empty() {
                PortId::from(node)
            } else {
                PortId::new(node, &port)
            };
            self.fire(action, &id, reason);
        }
    }

    fn node_changed(&self, change: &NodeChange<'_>) {
        for cb in self.watchers.all() {
            super::user_code::callback(&self.id, "a node-change callback", || cb(change));
        }
    }

    /// Starts the connector of `node` (its deadline and, with known
    /// addresses, its paced connect attempts).
    pub(crate) fn start_connector(&self, node: &str, id: ConnectorId) {
        crate::transport::connector::spawn_node_connector(
            self.transport.clone(),
            self.link(),
            Arc::from(node),
            id,
        );
    }

    /// The known listen addresses of `node`.
    pub(crate) fn addresses_of(&self, node: &str) -> Vec<String> {
        self.remote.addresses_of(node)
    }
}

impl NodeInner {
    /// Kills local ports whose actor stopped or whose channel receiver was
    /// dropped, every [`SWEEP_INTERVAL`], until the node shuts down.
    pub(crate) fn start_sweeper(&self) {
        spawn_sweeper(self.weak(), self.transport.shutdown_token().clone());
    }
}

fn spawn_sweeper(weak: Weak<NodeInner>, shutdown: tokio_util::sync::CancellationToken) {
    actix_rt::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            match weak.upgrade() {
                Some(node) => node.sweep(),
                None => break,
            }
        }
    });
}

/// Removes its node-change (or `mon_nodes`) callback when dropped.
#[must_use = "dropping the guard removes the callback; call forget() to keep it"]
pub struct MonNodesGuard {
    node: Weak<NodeInner>,
    id: u64,
}

impl MonNodesGuard {
    /// Keeps the callback for the node's lifetime.
    pub fn forget(mut self) {
        self.node = Weak::new();
    }
}

impl Drop for MonNodesGuard {
    fn drop(&mut self) {
        if let Some(node) = self.node.upgrade() {
            node.watchers.remove(self.id);
        }
    }
}

impl Node {
    /// Calls `callback(node, is_up, reason)` each time a node goes up (a
    /// connection completed) or down (the connection was lost, with the
    /// `transport_error` reason). Up and down strictly alternate per node;
    /// a node that never came up is never reported down. The callback must
    /// not block.
    pub fn mon_nodes(
        &self,
        callback: impl Fn(&str, bool, &Reason) + Send + Sync + 'static,
    ) -> MonNodesGuard {
        let up = Vec::new();
        self.on_node_change(move |change| match change {
            NodeChange::Up { node, .. } => callback(node, true, &up),
            NodeChange::Down { node, reason } => callback(node, false, reason),
        })
    }

    /// Calls `callback` each time a node goes up or down, synchronously,
    /// before anything else hears of it (`mon_nodes` and [`Node::events`]
    /// come after): with the peer's address and, for a connection we
    /// dialled, the address as it was given. Up and down strictly
    /// alternate per node. The callback must not block.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use aemp::NodeChange;
    /// let a = aemp::Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
    /// let b = aemp::Node::builder().node_id("b").secret("s").start().await.unwrap();
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// b.on_node_change(move |c| {
    ///     if let NodeChange::Up { node, dialed, .. } = c {
    ///         let _ = tx.send((node.to_string(), dialed.map(str::to_owned)));
    ///     }
    /// })
    /// .forget();
    /// let addr = a.listen_addrs()[0].to_string();
    /// b.connect(addr.clone()).await.unwrap();
    /// assert_eq!(rx.recv().await, Some(("a".to_string(), Some(addr))));
    /// # a.shutdown(); b.shutdown();
    /// # });
    /// ```
    pub fn on_node_change(
        &self,
        callback: impl Fn(&NodeChange<'_>) + Send + Sync + 'static,
    ) -> MonNodesGuard {
        let id = self.inner().watchers.add(Arc::new(callback));
        MonNodesGuard {
            node: self.inner().weak(),
            id,
        }
    }

    /// Adds listen addresses (`host:port`) of node `node`, where
    /// connections to it are tried when messages wait for it. They are kept
    /// for good (addresses learned from the Global service come and go).
    pub fn add_addresses(&self, node: &str, addrs: impl IntoIterator<Item = impl Into<String>>) {
        self.inner()
            .remote
            .add_addresses(node, addrs.into_iter().map(Into::into));
    }

    /// The known listen addresses of `node`: those Global taught us
    /// (newest first; replaced when the node tells us its own, forgotten
    /// when it goes down, as the reference's Global.pm 333/442), then those
    /// given to [`Node::add_addresses`] (kept).
    pub fn addresses(&self, node: &str) -> Vec<String> {
        self.inner().addresses_of(node)
    }

    /// Addresses of `node` passed on by Global (`nodes`): tried first.
    pub(crate) fn learn_addresses(&self, node: &str, addrs: Vec<String>) {
        self.inner().remote.learn_addresses(node, addrs);
    }

    /// Addresses `node` told us itself (Global `addr`): they replace the
    /// learned ones.
    pub(crate) fn replace_addresses(&self, node: &str, addrs: Vec<String>) {
        self.inner().remote.replace_addresses(node, addrs);
    }

    /// Starts connecting to `node` through its known addresses (as sending
    /// to it does); without a connection within `monitor_timeout`, its
    /// monitors fire with `unable to connect`.
    pub fn connect_node(&self, node: &str) {
        if node != self.id()
            && let Some(id) = self.inner().remote.peers().start_connecting(node)
        {
            self.inner().start_connector(node, id);
        }
    }
}

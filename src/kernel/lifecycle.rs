//! Nodes going up and down: `mon_nodes`, transport failures (monitors fire
//! with `transport_error`), the connect deadline (`unable to connect`),
//! known addresses, and the sweep that notices ports whose actor stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::monitor::Reason;
use super::node::{Node, NodeEvent, NodeInner};
use super::port::PortId;
use crate::error::ConnectionError;
use crate::transport::Peer;

/// A `mon_nodes` callback: `(node id, is up, reason…)`.
pub(crate) type MonNodesFn = Arc<dyn Fn(&str, bool, &Reason) + Send + Sync>;

/// How often ports whose receivers are gone are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// `("transport_error", node, text)`, the reason of every monitor of a
/// node whose transport failed.
fn transport_error(node: &str, text: &str) -> Reason {
    crate::wire::transport_error(node, text)
}

impl NodeInner {
    /// A connection to `peer.node` was attached: tell Global (which learns
    /// a seed's node id from the dialled address), `mon_nodes` and
    /// subscribers.
    pub(crate) fn peer_up(&self, peer: &Peer) {
        if let Some(provider) = peer.established.remote_greeting.get("provider") {
            self.providers
                .insert(peer.node.clone(), provider.to_owned());
        }
        if let Some(addr) = &peer.dialed {
            // before node-up: whether it is a seed decides the master
            self.global.dialed(addr, &peer.node);
        }
        self.call_mon_nodes(&peer.node, true, &Vec::new());
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
        if !self.peers.connection_lost(node, conn_id) {
            return;
        }
        for port in self.monitors.rmon_take(node) {
            self.registry.remove_remote_monitor(&port, node);
        }
        let reason = transport_error(node, &error.to_string());
        self.fire_node_monitors(node, &reason);
        self.call_mon_nodes(node, false, &reason);
        self.emit(NodeEvent::Down {
            node: node.to_owned(),
            error: error.clone(),
        });
        self.peers.end_failing(node);
    }

    /// No connection to `node` came up within `monitor_timeout`: its queue
    /// is dropped and its monitors fire with `unable to connect`
    /// (`mon_nodes` hears nothing: the node was never up).
    pub(crate) fn unable_to_connect(&self, node: &str) {
        if !self.peers.unable_to_connect(node) {
            return;
        }
        tracing::info!(node = %self.id, remote = node, "unable to connect");
        let error = crate::error::ConnectionError::UnableToConnect;
        let reason = transport_error(node, &error.to_string());
        self.fire_node_monitors(node, &reason);
        self.peers.end_failing(node);
    }

    fn fire_node_monitors(&self, node: &str, reason: &Reason) {
        for (port, action) in self.monitors.take_node(node) {
            let id = if port.is_empty() {
                PortId::from(node)
            } else {
                PortId::new(node, &port)
            };
            action.fire(self, &id, reason);
        }
    }

    fn call_mon_nodes(&self, node: &str, up: bool, reason: &Reason) {
        let callbacks: Vec<MonNodesFn> = super::lock(&self.mon_nodes)
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        for cb in callbacks {
            let call = std::panic::AssertUnwindSafe(|| cb(node, up, reason));
            if std::panic::catch_unwind(call).is_err() {
                tracing::warn!(node = %self.id, remote = node, "a mon_nodes callback panicked");
            }
        }
    }

    /// Starts the connector of `node` (its deadline and, with known
    /// addresses, its paced connect attempts).
    pub(crate) fn start_connector(&self, node: &str) {
        crate::transport::connector::spawn_node_connector(
            self.transport.clone(),
            self.link(),
            Arc::from(node),
        );
    }

    /// The known listen addresses of `node`.
    pub(crate) fn addresses_of(&self, node: &str) -> Vec<String> {
        self.addresses
            .get(node)
            .map(|a| a.clone())
            .unwrap_or_default()
    }
}

/// Kills local ports whose actor stopped or whose channel receiver was
/// dropped, every [`SWEEP_INTERVAL`], until the node shuts down.
pub(crate) fn spawn_sweeper(inner: &Arc<NodeInner>) {
    let weak: Weak<NodeInner> = Arc::downgrade(inner);
    let shutdown = inner.shutdown.clone();
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

static NEXT_MON_NODES: AtomicU64 = AtomicU64::new(0);

pub(crate) fn next_mon_nodes_id() -> u64 {
    NEXT_MON_NODES.fetch_add(1, Ordering::Relaxed)
}

/// Removes its `mon_nodes` callback when dropped.
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
            super::lock(&node.mon_nodes).retain(|(i, _)| *i != self.id);
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
        let id = self.inner().add_mon_nodes(Arc::new(callback));
        MonNodesGuard {
            node: self.inner().weak(),
            id,
        }
    }

    /// Adds listen addresses (`host:port`) of node `node`, where
    /// connections to it are tried when messages wait for it (later: also
    /// learned from the Global service).
    pub fn add_addresses(&self, node: &str, addrs: impl IntoIterator<Item = impl Into<String>>) {
        let mut added = false;
        {
            let mut known = self.inner().addresses.entry(Arc::from(node)).or_default();
            for a in addrs {
                let a = a.into();
                if !known.contains(&a) {
                    known.push(a);
                    added = true;
                }
            }
        }
        if added {
            self.inner()
                .addresses_added
                .send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The known listen addresses of `node`.
    pub fn addresses(&self, node: &str) -> Vec<String> {
        self.inner().addresses_of(node)
    }

    /// Starts connecting to `node` through its known addresses (as sending
    /// to it does); without a connection within `monitor_timeout`, its
    /// monitors fire with `unable to connect`.
    pub fn connect_node(&self, node: &str) {
        if node != self.id() && self.inner().peers.start_connecting(node) {
            self.inner().start_connector(node);
        }
    }
}

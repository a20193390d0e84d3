//! Who hears of nodes going up and down: the callbacks of
//! [`Node::on_node_change`](crate::Node::on_node_change) (and of
//! `mon_nodes`, built on them), called synchronously, in the order they
//! were added, every time — never through a channel that could lag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::monitors::Reason;

/// A node went up or down, as [`Node::on_node_change`] callbacks see it.
///
/// [`Node::on_node_change`]: crate::Node::on_node_change
#[derive(Debug, Clone, Copy)]
pub enum NodeChange<'a> {
    /// A connection to `node` completed its handshake.
    Up {
        /// The node's id.
        node: &'a str,
        /// The peer's socket address.
        addr: SocketAddr,
        /// For a connection we dialled: the address as it was given (a
        /// seed's node id is learned from it); `None` if we accepted it.
        dialed: Option<&'a str>,
    },
    /// The connection to `node` was lost.
    Down {
        /// The node's id.
        node: &'a str,
        /// The `transport_error` reason its monitors got.
        reason: &'a Reason,
    },
}

impl NodeChange<'_> {
    /// The node that went up or down.
    pub fn node(&self) -> &str {
        match self {
            NodeChange::Up { node, .. } | NodeChange::Down { node, .. } => node,
        }
    }

    /// Whether it went up.
    pub fn is_up(&self) -> bool {
        matches!(self, NodeChange::Up { .. })
    }
}

/// A node-change callback.
pub(crate) type WatcherFn = Arc<dyn Fn(&NodeChange<'_>) + Send + Sync>;

/// The node-change callbacks of a node.
#[derive(Default)]
pub(crate) struct NodeWatchers {
    next_id: AtomicU64,
    list: Mutex<Vec<(u64, WatcherFn)>>,
}

impl NodeWatchers {
    /// Adds a callback; returns its id for [`NodeWatchers::remove`].
    pub(crate) fn add(&self, f: WatcherFn) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.list.lock().push((id, f));
        id
    }

    /// Removes a callback.
    pub(crate) fn remove(&self, id: u64) {
        self.list.lock().retain(|(i, _)| *i != id);
    }

    /// The callbacks, in the order they were added (called without the
    /// lock, so a callback may add or remove callbacks).
    pub(crate) fn all(&self) -> Vec<WatcherFn> {
        self.list.lock().iter().map(|(_, f)| f.clone()).collect()
    }
}

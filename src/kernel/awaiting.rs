//! Waiting without polling: futures for a node coming up and for a port
//! dying, and node changes as a stream. Every wait is bounded by the
//! caller — [`Node::wait_node_up`] takes a timeout; a [`MonitorFuture`]
//! and [`NodeChanges`] compose with [`tokio::time::timeout`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::lifecycle::MonNodesGuard;
use super::monitor::Monitor;
use super::monitors::Reason;
use super::node::Node;
use super::watchers::NodeChange;

/// A node went up or down: the owned form of [`NodeChange`], as
/// [`NodeChanges`] yields it.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeUpdate {
    /// A connection to `node` completed its handshake.
    Up {
        /// The node's id.
        node: String,
        /// The peer's socket address.
        addr: SocketAddr,
    },
    /// The connection to `node` was lost.
    Down {
        /// The node's id.
        node: String,
        /// The `transport_error` reason its monitors got.
        reason: Reason,
    },
}

impl NodeUpdate {
    /// The node that went up or down.
    pub fn node(&self) -> &str {
        match self {
            NodeUpdate::Up { node, .. } | NodeUpdate::Down { node, .. } => node,
        }
    }

    /// Whether it went up.
    pub fn is_up(&self) -> bool {
        matches!(self, NodeUpdate::Up { .. })
    }
}

impl From<&NodeChange<'_>> for NodeUpdate {
    fn from(c: &NodeChange<'_>) -> NodeUpdate {
        match *c {
            NodeChange::Up { node, addr, .. } => NodeUpdate::Up {
                node: node.to_owned(),
                addr,
            },
            NodeChange::Down { node, reason } => NodeUpdate::Down {
                node: node.to_owned(),
                reason: reason.clone(),
            },
        }
    }
}

/// Node changes as a stream (see [`Node::node_changes`]): every change
/// from its creation on, in order, none lost (the buffer is unbounded, so
/// read it). Dropping it removes its callback. It ends only when the node
/// is gone.
#[must_use = "a stream does nothing unless read"]
pub struct NodeChanges {
    rx: mpsc::UnboundedReceiver<NodeUpdate>,
    _guard: MonNodesGuard,
}

impl NodeChanges {
    /// The next change; `None` once the node is gone. Unbounded: wrap it
    /// in [`tokio::time::timeout`].
    pub async fn recv(&mut self) -> Option<NodeUpdate> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for NodeChanges {
    type Item = NodeUpdate;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NodeUpdate>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for NodeChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeChanges").finish_non_exhaustive()
    }
}

/// A monitor as a future (see [`Node::mon_future`]): resolves to the
/// reason the port died with (empty for a normal exit), or `None` if the
/// monitor went away without firing (the node was dropped). It is a guard
/// like [`Monitor`]: dropping the future removes the monitor.
#[must_use = "dropping a MonitorFuture removes the monitor"]
#[derive(Debug)]
pub struct MonitorFuture {
    rx: oneshot::Receiver<Reason>,
    monitor: Monitor,
}

impl MonitorFuture {
    /// The monitored port (or node) id.
    pub fn target(&self) -> String {
        self.monitor.target()
    }
}

impl Future for MonitorFuture {
    type Output = Option<Reason>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reason>> {
        Pin::new(&mut self.get_mut().rx).poll(cx).map(Result::ok)
    }
}

impl Node {
    /// Waits until `node` is up (a connection to it completed its
    /// handshake), for at most `timeout`; at once if it is up already.
    /// This only waits: it does not dial (seeds, sends to the node and
    /// [`Node::connect_node`] do).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let a = aemp::Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
    /// let addr = a.listen_addrs()[0].to_string();
    /// let b = aemp::Node::builder().node_id("b").secret("s").seed(addr).start().await.unwrap();
    /// b.wait_node_up("a", Duration::from_secs(10)).await.expect("a came up");
    /// assert!(b.node_is_up("a"));
    /// # a.shutdown(); b.shutdown();
    /// # });
    /// ```
    pub async fn wait_node_up(
        &self,
        node: &str,
        timeout: Duration,
    ) -> Result<(), tokio::time::error::Elapsed> {
        self.wait_node_state(node, true, timeout).await
    }

    /// Waits until `node` is down (not connected), for at most
    /// `timeout`; at once if it is not up. The counterpart of
    /// [`Node::wait_node_up`].
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let a = aemp::Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
    /// let b = aemp::Node::builder().node_id("b").secret("s").start().await.unwrap();
    /// b.connect(a.listen_addrs()[0].to_string()).await.unwrap();
    /// a.shutdown();
    /// b.wait_node_down("a", Duration::from_secs(10)).await.expect("a went down");
    /// # b.shutdown();
    /// # });
    /// ```
    pub async fn wait_node_down(
        &self,
        node: &str,
        timeout: Duration,
    ) -> Result<(), tokio::time::error::Elapsed> {
        self.wait_node_state(node, false, timeout).await
    }

    /// Waits until `node` is up (`up`) or down, for at most `timeout`.
    async fn wait_node_state(
        &self,
        node: &str,
        up: bool,
        timeout: Duration,
    ) -> Result<(), tokio::time::error::Elapsed> {
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        let target = node.to_owned();
        // installed before the check, so a change in between is not missed
        let _guard = self.on_node_change(move |c| {
            if c.is_up() == up
                && c.node() == target
                && let Some(tx) = tx.lock().take()
            {
                let _ = tx.send(());
            }
        });
        if self.node_is_up(node) == up {
            return Ok(());
        }
        tokio::time::timeout(timeout, rx).await.map(|_| ())
    }

    /// Node changes (up, down) as a stream of [`NodeUpdate`]s, built on
    /// [`Node::on_node_change`]: every change after this call, in order.
    /// Dropping the stream stops it. Reads are unbounded; bound them with
    /// [`tokio::time::timeout`].
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let a = aemp::Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
    /// let b = aemp::Node::builder().node_id("b").secret("s").start().await.unwrap();
    /// let mut changes = b.node_changes();
    /// b.connect(a.listen_addrs()[0].to_string()).await.unwrap();
    /// let up = tokio::time::timeout(Duration::from_secs(10), changes.recv()).await.unwrap().unwrap();
    /// assert!(up.is_up() && up.node() == "a");
    /// # a.shutdown(); b.shutdown();
    /// # });
    /// ```
    pub fn node_changes(&self) -> NodeChanges {
        let (tx, rx) = mpsc::unbounded_channel();
        let guard = self.on_node_change(move |c| {
            let _ = tx.send(NodeUpdate::from(c));
        });
        NodeChanges { rx, _guard: guard }
    }

    /// A monitor on `port` (a port id, or a bare node id) as a future of
    /// the reason it dies with — the same firing rules as [`Node::mon`]
    /// (MP.pm 618–652): empty for a normal exit, `["transport_error", …]`
    /// when its node is lost, `["no_such_port", …]` at once for a missing
    /// port. Dropping the future removes the monitor (the guard rule of
    /// [`Monitor`]); bound the wait with [`tokio::time::timeout`].
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// use serde_json::json;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let port = node.port_fn(|_, _| Err("boom".into()));
    /// let death = node.mon_future(&port);
    /// node.snd(&port, &("anything",)).unwrap();
    /// let reason = tokio::time::timeout(Duration::from_secs(5), death).await.unwrap();
    /// assert_eq!(reason, Some(vec![json!("die"), json!("boom")]));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn mon_future(&self, port: impl AsRef<str>) -> MonitorFuture {
        let (tx, rx) = oneshot::channel();
        let monitor = self.mon(port, move |reason| {
            let _ = tx.send(reason);
        });
        MonitorFuture { rx, monitor }
    }
}

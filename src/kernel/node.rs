//! The node: its ports, its peers, and sending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Recipient;
use actix_rt::ArbiterHandle;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::peers::Peers;
use super::port::{PortId, alnum_random, perl_counter, split_port};
use super::registry::{Delivery, PortTarget, Registry};
use crate::config::{ANON_NODE_ID, NodeConfig};
use crate::error::{ConnectionError, PortError, SendError, StartError};
use crate::transport::{connector, listener};
use crate::wire::{AuthMethod, Framing, HandshakeConfig, HandshakeError, Packet, Secret};

impl actix::Message for Packet {
    type Result = ();
}

/// Something that happened to the node's connections.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A connection to `node` completed its handshake; the node is up.
    Up {
        /// The peer's node id.
        node: String,
        /// The peer's socket address.
        addr: SocketAddr,
        /// Whether we dialled (true) or accepted (false) the connection.
        outbound: bool,
    },
    /// The connection to `node` ended; the node is down.
    Down {
        /// The peer's node id.
        node: String,
        /// Why the connection ended.
        error: ConnectionError,
    },
    /// A handshake failed; nothing of that connection reached any port.
    HandshakeFailed {
        /// The peer's socket address.
        addr: SocketAddr,
        /// The node id the peer claimed, if it got that far.
        node: Option<String>,
        /// Why it failed.
        error: HandshakeError,
    },
}

/// A running AEMP node: a set of local ports, listeners, and connections
/// to other nodes. Cheap to clone; every clone is the same node, usable
/// from any thread.
///
/// The node runs until [`Node::shutdown`] or until its actix system stops.
///
/// ```
/// use aemp::Node;
/// use serde_json::json;
///
/// actix_rt::System::new().block_on(async {
///     let a = Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
///     let b = Node::builder().node_id("b").secret("s").start().await.unwrap();
///
///     let (inbox, mut rx) = a.port_channel_named("inbox").unwrap();
///     b.connect(a.listen_addrs()[0].to_string()).await.unwrap();
///     b.snd(&inbox, &json!(["hello", 1])).unwrap();
///
///     let msg = rx.recv().await.unwrap();
///     let (word, n): (String, u32) = msg.decode().unwrap();
///     assert_eq!((word.as_str(), n), ("hello", 1));
///     a.shutdown();
///     b.shutdown();
/// });
/// ```
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub(crate) id: Arc<str>,
    /// Prefix of generated port names (the reference's `$UNIQ`).
    uniq: String,
    /// Shared counter of generated port names.
    counter: AtomicU64,
    next_conn_id: AtomicU64,
    pub(crate) config: NodeConfig,
    pub(crate) handshake: Arc<HandshakeConfig>,
    pub(crate) registry: Registry,
    pub(crate) peers: Peers,
    pub(crate) arbiter: ArbiterHandle,
    listen_addrs: Vec<SocketAddr>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) shutdown: CancellationToken,
}

impl NodeInner {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        // no subscriber is fine
        let _ = self.events.send(event);
    }

    fn new_port_name(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}", self.uniq, perl_counter(n))
    }

    /// A request to the node port `""`, from `from` (a remote node id) or
    /// from this node itself (`None`).
    pub(crate) fn node_port_request(&self, from: Option<&str>, packet: &Packet) {
        let tag = packet
            .values()
            .ok()
            .and_then(|v| v.first().and_then(|t| t.as_str().map(str::to_owned)));
        tracing::debug!(
            node = %self.id, remote = ?from, tag = ?tag,
            "node-port request not implemented yet; ignored"
        );
    }

    /// Sends `msg` to port `name` on node `node`.
    fn send<M: Serialize + ?Sized>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<(), SendError> {
        if self.shutdown.is_cancelled() {
            return Err(SendError::Shutdown);
        }
        if node != &*self.id {
            return self.peers.send(node, name, msg);
        }
        let packet = Packet::from_encoded(Packet::to_frame(name, msg)?, name);
        if name.is_empty() {
            self.node_port_request(None, &packet);
        } else if self.registry.deliver(packet) != Delivery::Delivered {
            tracing::trace!(node = %self.id, port = name, "message to a missing local port dropped");
        }
        Ok(())
    }
}

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The addresses the node listens on (ports resolved when bound to 0).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.inner.listen_addrs
    }

    /// The settings the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Creates a port with a fresh id, `<node>#<uniq>.<counter>` (never
    /// reused), whose messages go to `recipient`.
    pub fn port(&self, recipient: Recipient<Packet>) -> PortId {
        self.fresh_port(PortTarget::Actor(recipient))
    }

    /// Creates the port `<node>#<name>`, for well-known services (like the
    /// benchmark's `sink`). Fails if the name is taken.
    pub fn port_named(
        &self,
        name: &str,
        recipient: Recipient<Packet>,
    ) -> Result<PortId, PortError> {
        self.named_port(name, PortTarget::Actor(recipient))
    }

    /// Creates a port with a fresh id whose messages arrive on a channel,
    /// for code that would rather `await` messages than write an actor.
    /// The port goes away when the receiver is dropped (at the next message
    /// for it) or with [`Node::remove_port`].
    pub fn port_channel(&self) -> (PortId, mpsc::UnboundedReceiver<Packet>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (self.fresh_port(PortTarget::Channel(tx)), rx)
    }

    /// Like [`Node::port_channel`], with a fixed name.
    pub fn port_channel_named(
        &self,
        name: &str,
    ) -> Result<(PortId, mpsc::UnboundedReceiver<Packet>), PortError> {
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((self.named_port(name, PortTarget::Channel(tx))?, rx))
    }

    fn fresh_port(&self, mut target: PortTarget) -> PortId {
        loop {
            let name = self.inner.new_port_name();
            // a user may have taken a name of this shape with port_named
            match self.inner.registry.insert_new(&name, target) {
                Ok(()) => return PortId::new(&self.inner.id, &name),
                Err(t) => target = t,
            }
        }
    }

    fn named_port(&self, name: &str, target: PortTarget) -> Result<PortId, PortError> {
        if name.is_empty() || name.contains('#') {
            return Err(PortError::InvalidName(name.to_owned()));
        }
        match self.inner.registry.insert_new(name, target) {
            Ok(()) => Ok(PortId::new(&self.inner.id, name)),
            Err(_) => Err(PortError::NameTaken(name.to_owned())),
        }
    }

    /// Removes a local port; messages to it are dropped from now on.
    /// Returns false if `port` is not a port of this node.
    pub fn remove_port(&self, port: &PortId) -> bool {
        port.node() == self.id() && self.inner.registry.remove(port.name())
    }

    /// Whether `port` is a live port of this node.
    pub fn port_exists(&self, port: &PortId) -> bool {
        port.node() == self.id() && self.inner.registry.contains(port.name())
    }

    /// Number of local ports.
    pub fn port_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// Sends `msg` (anything that serializes to a JSON array) to `port`.
    ///
    /// Local ports get it at once; remote ports over the live connection
    /// to their node; for a node that is not up it waits, in order, until a
    /// connection to that node id exists however it comes up. A message
    /// to a port that does not exist is dropped on its node (reference
    /// behaviour). This never blocks; see [`Node::snd_async`] for sending
    /// with backpressure.
    ///
    /// Errors: `msg` is not an array; the node's queue is full; the
    /// connection is failing (its send queue overflowed).
    pub fn snd<M: Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        let (node, name) = split_port(port.as_ref());
        self.inner.send(node, name, msg)
    }

    /// Like [`Node::snd`], but first waits while the connection to the
    /// port's node has more than its high-water mark of bytes queued, so a
    /// fast sender cannot overflow it.
    pub async fn snd_async<M: Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        let (node, _) = split_port(port.as_ref());
        if let Some(outbox) = self.inner.peers.full_outbox(node) {
            outbox.room().await;
        }
        self.snd(port, msg)
    }

    /// Dials `addr` (`host:port`) and runs the handshake. Resolves to the
    /// peer's node id once it is up.
    pub async fn connect(&self, addr: impl Into<String>) -> Result<String, ConnectionError> {
        connector::connect(self.inner.clone(), addr.into()).await
    }

    /// Whether a live connection to `node` exists.
    pub fn node_is_up(&self, node: &str) -> bool {
        self.inner.peers.is_up(node)
    }

    /// The ids of all nodes with a live connection.
    pub fn up_nodes(&self) -> Vec<String> {
        self.inner.peers.up_nodes()
    }

    /// The framing we send to `node`, if it is up.
    pub fn send_framing(&self, node: &str) -> Option<Framing> {
        self.inner.peers.outbox(node).map(|o| o.framing)
    }

    /// Subscribes to connection events (up, down, failed handshakes).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Stops listening and dialling, and closes every connection after
    /// writing what is queued on it. Sends fail from now on.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        for outbox in self.inner.peers.drain() {
            outbox.request_close();
        }
    }
}

/// Settings for a new [`Node`]; defaults as the reference.
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// let node = aemp::Node::builder()
///     .node_id("anon/")
///     .secret("geheim")
///     .bind("127.0.0.1:0")
///     .monitor_timeout(std::time::Duration::from_secs(10))
///     .start()
///     .await
///     .unwrap();
/// assert!(node.id().starts_with("anon/"));
/// assert_ne!(node.listen_addrs()[0].port(), 0);
/// # node.shutdown();
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    config: NodeConfig,
}

impl NodeBuilder {
    /// Replaces all settings.
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// The node id; `anon/` (the default) makes a random one.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.config.node_id = id.into();
        self
    }

    /// The shared secret.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.config.secret = Some(secret.into());
        self
    }

    /// Adds a listen address, `host:port` (port 0: any free port).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.config.binds.push(addr.into());
        self
    }

    /// Adds a seed address, `host:port`.
    pub fn seed(mut self, addr: impl Into<String>) -> Self {
        self.config.seeds.push(addr.into());
        self
    }

    /// The auth methods we send.
    pub fn auth_offer(mut self, methods: impl IntoIterator<Item = AuthMethod>) -> Self {
        self.config.auth_offer = methods.into_iter().collect();
        self
    }

    /// The auth methods we accept.
    pub fn auth_accept(mut self, methods: impl IntoIterator<Item = AuthMethod>) -> Self {
        self.config.auth_accept = methods.into_iter().collect();
        self
    }

    /// The framings we accept, in preference order.
    pub fn framings(mut self, framings: impl IntoIterator<Item = Framing>) -> Self {
        self.config.framings = framings.into_iter().collect();
        self
    }

    /// The handshake deadline (and, later, connect timeout).
    pub fn monitor_timeout(mut self, t: Duration) -> Self {
        self.config.monitor_timeout = t;
        self
    }

    /// The pause between connect attempts.
    pub fn connect_interval(mut self, t: Duration) -> Self {
        self.config.connect_interval = t;
        self
    }

    /// TCP_NODELAY on connections.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.config.nodelay = on;
        self
    }

    /// The most bytes queued per connection (or per node that is not up).
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.config.max_send_queue = bytes;
        self
    }

    /// The largest packet accepted from a peer.
    pub fn max_packet(mut self, bytes: usize) -> Self {
        self.config.max_packet = bytes;
        self
    }

    /// Binds the listeners, starts accepting and dials the seeds. Must be
    /// called inside a running actix system; connections live on the
    /// calling arbiter.
    pub async fn start(self) -> Result<Node, StartError> {
        let mut config = self.config;
        config.validate().map_err(StartError::Config)?;
        let arbiter = actix_rt::Arbiter::try_current().ok_or(StartError::NoSystem)?;
        if config.node_id == ANON_NODE_ID {
            config.node_id = format!("{ANON_NODE_ID}{}", alnum_random(12));
        }

        let mut listeners = Vec::new();
        for spec in &config.binds {
            listeners.extend(listener::bind(spec).await?);
        }
        let listen_addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StartError::Bind {
                addr: config.binds.join(","),
                source,
            })?;

        let mut handshake = HandshakeConfig::new(&config.node_id, config.secret.clone());
        handshake.auth_offer = config.auth_offer.clone();
        handshake.auth_accept = config.auth_accept.clone();
        handshake.framings = config.framings.clone();
        handshake.timeout = config.monitor_timeout;

        let inner = Arc::new(NodeInner {
            id: Arc::from(config.node_id.as_str()),
            uniq: alnum_random(9),
            counter: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
            handshake: Arc::new(handshake),
            registry: Registry::default(),
            peers: Peers::new(config.max_send_queue),
            arbiter,
            listen_addrs,
            events: broadcast::channel(1024).0,
            shutdown: CancellationToken::new(),
            config,
        });
        tracing::info!(node = %inner.id, listen = ?inner.listen_addrs, "node starting");
        for l in listeners {
            listener::spawn_accept_loop(inner.clone(), l);
        }
        for seed in &inner.config.seeds {
            connector::spawn_seed(inner.clone(), seed.clone());
        }
        Ok(Node { inner })
    }
}

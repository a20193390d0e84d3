//! The node: its ports, its peers, and sending.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::Recipient;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::functions::Functions;
use super::monitors::{Action, Reason};
use super::peers::{Full, Sent};
use super::port::{PortId, alnum_random, split_port};
use super::port_runner::Item;
use super::ports::LocalPorts;
use super::registry::{Control, Delivery, PortTarget};
use super::remote::RemoteNodes;
use super::services::Services;
use super::watchers::NodeWatchers;
use crate::Limit;
use crate::config::{ANON_NODE_ID, NodeConfig};
use crate::error::{ConnectionError, PortError, SendError, SpawnError, StartError};
use crate::transport::SlotTable as _;
use crate::transport::dataconn::{self, DataLink};
use crate::transport::outbox::Outbox;
use crate::transport::{Link, Transport, TransportConfig, connector, listener};
use crate::wire::{Framing, NodeRequest, Packet, RawRelay};

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
        /// Why it failed (a [`ConnectionError::Handshake`] when the peer
        /// broke a rule of the handshake).
        error: ConnectionError,
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

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id())
            .field("listen_addrs", &self.listen_addrs())
            .finish_non_exhaustive()
    }
}

/// The kernel of a node: its parts, each owning its data, and the
/// operations that span them (routing, sending, killing).
pub(crate) struct NodeInner {
    /// Our node id.
    pub(super) id: Arc<str>,
    /// This node as a handle, for handlers and monitors.
    me: Weak<NodeInner>,
    pub(super) config: NodeConfig,
    listen_addrs: Vec<SocketAddr>,
    /// Listeners, dialling and connections.
    pub(super) transport: Arc<Transport>,
    /// Local ports, functions and naming.
    pub(super) ports: LocalPorts,
    /// Other nodes: peers, addresses, remote monitors.
    pub(super) remote: RemoteNodes,
    /// Node-change callbacks.
    pub(super) watchers: NodeWatchers,
    /// Services plugged in from above (Global).
    services: Services,
    /// Who takes accepted data connections (the data connection service).
    data_handler: parking_lot::RwLock<Option<DataHandler>>,
    events: broadcast::Sender<NodeEvent>,
}

impl NodeInner {
    /// A handle on this node.
    pub(crate) fn handle(&self) -> Node {
        // `self` is alive, so its Arc is
        Node {
            inner: self.me.upgrade().unwrap_or_else(unreachable_node),
        }
    }

    pub(crate) fn weak(&self) -> Weak<NodeInner> {
        self.me.clone()
    }

    /// This node as the transport's link to it.
    pub(crate) fn link(&self) -> Arc<dyn Link> {
        self.me.upgrade().unwrap_or_else(unreachable_node)
    }

    /// Dials `addr` and runs the handshake; resolves to the peer's node id.
    pub(crate) async fn dial(&self, addr: String) -> Result<String, ConnectionError> {
        connector::connect(self.transport.clone(), self.link(), addr).await
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        // no subscriber is fine
        let _ = self.events.send(event);
    }

    /// Sends `msg` to `port`.
    pub(crate) fn snd<M: Serialize + ?Sized>(&self, port: &str, msg: &M) -> Result<(), SendError> {
        let (node, name) = split_port(port);
        self.send(node, name, msg)
    }

    /// Sends a request to `node`'s node port.
    pub(crate) fn snd_to_node_port(&self, node: &str, msg: &[Value]) -> Result<(), SendError> {
        self.send(node, "", msg)
    }

    /// Sends `msg` to port `name` on node `node`.
    fn send<M: Serialize + ?Sized>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<(), SendError> {
        if self.transport.is_shut_down() {
            return Err(SendError::Shutdown);
        }
        if node != &*self.id {
            match self.remote.peers().send(node, name, msg) {
                Ok(Sent::QueuedStartConnecting(id)) => self.start_connector(node, id),
                Ok(_) => {}
                Err(e) => return Err(self.send_failed(node, e)),
            }
            return Ok(());
        }
        let mut packet = Packet::from_encoded(Packet::to_frame(name, msg)?, name);
        if name.is_empty() {
            self.local_node_port_request(&packet);
            return Ok(());
        }
        // a local send: $SRCNODE is this node (Node.pm 216/236)
        packet.set_src(self.id.clone());
        self.deliver(&self.id, packet);
        Ok(())
    }

    /// A fire-and-forget send to remote `node` failed with `e`: a queue
    /// bound that was passed is counted, and the failure of the wait for
    /// a node that is not up is handled here (the connection's is handled
    /// by its writer).
    #[cold]
    fn send_failed(&self, node: &str, e: SendError) -> SendError {
        match &e {
            SendError::QueueFull { limit, .. } => {
                self.connecting_queue_overflow(node, *limit);
            }
            SendError::ConnectionClosed { .. } => {
                // counted once, by the writer that fails the connection
            }
            _ => {}
        }
        e
    }

    /// Sends `msg` to `port` unless its queue is full (see
    /// [`Node::try_snd`]); the refusal says which queue.
    pub(crate) fn try_snd<M: Serialize + ?Sized>(
        &self,
        port: &str,
        msg: &M,
    ) -> Result<Result<(), Full>, SendError> {
        if self.transport.is_shut_down() {
            return Err(SendError::Shutdown);
        }
        let (node, name) = split_port(port);
        if node == &*self.id {
            return self.send(node, name, msg).map(Ok);
        }
        match self.remote.peers().try_send(node, name, msg)? {
            Ok(Sent::QueuedStartConnecting(id)) => self.start_connector(node, id),
            Ok(_) => {}
            Err(full) => return Ok(Err(full)),
        }
        Ok(Ok(()))
    }

    /// Sends `msg` to `port`, waiting while its queue is full (see
    /// [`Node::snd_wait`]).
    pub(crate) async fn snd_wait<M: Serialize + ?Sized>(
        &self,
        port: &str,
        msg: &M,
    ) -> Result<(), SendError> {
        let (node, _) = split_port(port);
        // the outbox whose room wakes we listen to, registered before each
        // try so that none is missed
        let mut listen: Option<Arc<Outbox>> = None;
        // slot changes (a node up or failed), once a queue of a node that
        // is not up was found full
        let mut changes: Option<tokio::sync::watch::Receiver<u64>> = None;
        loop {
            if let Some(c) = &mut changes {
                c.borrow_and_update();
            }
            let outbox = listen.take();
            let room = outbox.as_ref().map(|o| o.room_changed());
            tokio::pin!(room);
            if let Some(r) = room.as_mut().as_pin_mut() {
                r.enable();
            }
            let full = match self.try_snd(port, msg)? {
                Ok(()) => return Ok(()),
                Err(full) => full,
            };
            match full {
                Full::Never { limit } => {
                    return Err(SendError::QueueFull {
                        node: node.to_owned(),
                        limit,
                    });
                }
                Full::Connection(full_box) => {
                    let same = outbox.as_ref().is_some_and(|o| Arc::ptr_eq(o, &full_box));
                    if let (true, Some(r)) = (same, room.as_pin_mut()) {
                        r.await;
                    }
                    listen = Some(full_box);
                }
                Full::Connecting => match &mut changes {
                    // the node comes up (its queue moves into the
                    // connection) or fails; shutdown drains the table
                    Some(c) => {
                        if c.changed().await.is_err() {
                            return Err(SendError::Shutdown);
                        }
                    }
                    // listen from now on, and try once more
                    None => changes = Some(self.remote.peers().changes()),
                },
            }
        }
    }

    /// A request to our own node port. Requests run inline, so one that
    /// sends to our node port again (`snd`/`info`/… aimed at ourselves)
    /// nests; past [`MAX_LOCAL_NESTING`] levels the request is dropped, so
    /// a peer's `["", "snd", me, "snd", me, …]` cannot exhaust the stack.
    fn local_node_port_request(&self, packet: &Packet) {
        thread_local! {
            static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        }
        /// Restores the nesting level however the request ends.
        struct Level(usize);
        impl Drop for Level {
            fn drop(&mut self) {
                NESTING.with(|n| n.set(self.0));
            }
        }
        let depth = NESTING.with(|n| n.get());
        if depth >= MAX_LOCAL_NESTING {
            tracing::warn!(node = %self.id, "node-port request to ourselves nested too deeply; dropped");
            return;
        }
        let _level = Level(depth);
        NESTING.with(|n| n.set(depth + 1));
        self.node_port_request(&self.id.clone(), packet);
    }

    /// Hands a packet to its local port.
    fn deliver(&self, from: &str, packet: Packet) {
        match self.ports.registry().deliver(packet) {
            Ok(Delivery::Delivered) => {}
            Ok(Delivery::NoSuchPort) => {
                tracing::trace!(node = %self.id, remote = from, "message to a missing port dropped");
            }
            // the receiver is gone: a normal exit, noticed now
            Err(packet) => self.kill_local(packet.dest().unwrap_or_default(), Vec::new()),
        }
    }

    /// Routes a packet that arrived from node `from`: keepalives are
    /// dropped, node-port requests run at once, the rest goes to its port.
    pub(crate) fn route(&self, from: &Arc<str>, mut packet: Packet) {
        let Some(dest) = packet.dest() else {
            return; // keepalive
        };
        if dest.is_empty() {
            return self.node_port_request(from, &packet);
        }
        // $SRCNODE: the connection's peer (Transport.pm 333/344)
        packet.set_src(from.clone());
        self.deliver(from, packet);
    }

    /// A request to the node port `""`, from node `from`. Relays (`snd`,
    /// `snd_multiple`) are read from the frame and passed on as they are
    /// ([`RawRelay`]); any other request is decoded into values, unless
    /// they would take more than `max_packet` bytes
    /// ([`Packet::value_cost`]): such a request is refused and counted as
    /// [`Limit::PacketSize`].
    pub(crate) fn node_port_request(&self, from: &Arc<str>, packet: &Packet) {
        if let Some(relays) = RawRelay::read(packet) {
            for relay in relays {
                let (_, name) = split_port(relay.port());
                self.relay_frame(from, relay.port(), relay.frame(name));
            }
            return;
        }
        if !self.decodable(from, packet, "a node-port request") {
            return;
        }
        match packet.values() {
            // plain and init functions see $SRCNODE = from (Kernel.pm 167)
            Ok(values) => super::src_node::with_src(Some(from.clone()), || {
                self.node_port_values(from, values)
            }),
            Err(error) => {
                crate::transport::log_throttle::peer_warn!(self.transport.log_throttle(), from, node = %self.id, remote = %from, %error, "undecodable node-port request ignored")
            }
        }
    }

    /// Whether `packet`, `what` from `peer`, may be decoded into values:
    /// if they take at most `max_packet` bytes ([`Packet::value_cost`]).
    /// A refusal is counted and logged as [`Limit::PacketSize`].
    pub(crate) fn decodable(&self, peer: &str, packet: &Packet, what: &str) -> bool {
        let cost = packet.value_cost();
        let cap = self.config.max_packet;
        if cost <= cap {
            return true;
        }
        let what = format!(
            "{what} of {} bytes, {cost} bytes decoded (more than max_packet),",
            packet.frame().len()
        );
        self.limit_refused(peer, Limit::PacketSize, cap, &what);
        false
    }

    /// Relays `frame`, a packet `[name, @msg]` for `port`, which `from`
    /// asked for (a `snd` to the node port, or the answer to an `info`,
    /// `time`, … request): delivered if the port is local, else queued
    /// for its node within `from`'s relay budget (see
    /// [`NodeInner::relay_allowed`]) — but never past the high-water mark
    /// of the node's queue: a relay the queue has no room for is dropped
    /// and counted as [`Limit::RelayQueue`], where a send of our own would
    /// fail the connection, so a peer cannot make us drop the connection
    /// to a third node.
    pub(crate) fn relay_frame(&self, from: &str, port: &str, frame: bytes::Bytes) {
        if self.transport.is_shut_down() {
            return;
        }
        let (node, name) = split_port(port);
        if node == &*self.id {
            let mut packet = Packet::from_encoded(frame, name);
            if name.is_empty() {
                return self.local_node_port_request(&packet);
            }
            // a local send: $SRCNODE is this node (Node.pm 216/236)
            packet.set_src(self.id.clone());
            return self.deliver(&self.id, packet);
        }
        if !self.relay_allowed(from, node, frame.len()) {
            return;
        }
        match self.remote.peers().try_send_frame(node, frame) {
            Ok(Ok(Sent::QueuedStartConnecting(id))) => self.start_connector(node, id),
            Ok(Ok(_)) => {}
            Ok(Err(full)) => {
                let cap = full.limit(self.remote.peers().max_waiting());
                let what = format!("a relayed message to node {node}, whose queue is full,");
                self.limit_refused(from, Limit::RelayQueue, cap, &what);
            }
            Err(error) => {
                tracing::debug!(node = %self.id, remote = from, %port, %error, "relayed message not sent")
            }
        }
    }

    /// Kills `port` (local or remote) with `reason` (empty: normal exit).
    pub(crate) fn kil(&self, port: &str, reason: Reason) -> Result<(), SendError> {
        let (node, name) = split_port(port);
        if name.is_empty() {
            return Err(SendError::NodePort(port.to_owned()));
        }
        if node == &*self.id {
            self.kill_local(name, reason);
            Ok(())
        } else {
            let msg = NodeRequest::Kil {
                port: name.to_owned(),
                reason,
            };
            self.snd_to_node_port(node, &msg.into_values())
        }
    }

    /// Kills local port `name`: it leaves the registry at once and its
    /// monitors fire (for a handler port: after the handler dealt with what
    /// was delivered before the kil). Killing a port that does not exist is
    /// fine.
    pub(crate) fn kill_local(&self, name: &str, reason: Reason) {
        let Some((target, monitors)) = self.ports.registry().kill(name) else {
            return;
        };
        if let PortTarget::Handler { cell, runner } = &target {
            cell.die();
            let die = Item::Control(Control::Die { reason, monitors });
            // the runner is gone (its arbiter stopped): the monitors fire here
            if let Err(Item::Control(Control::Die { reason, monitors })) = runner.send(cell, die) {
                self.fire_port_monitors(&PortId::new(&self.id, name), monitors, &reason);
            }
            return;
        }
        self.fire_port_monitors(&PortId::new(&self.id, name), monitors, &reason);
        if let PortTarget::ActorPort { killed, .. } = &target {
            killed.do_send(super::actor::PortKilled { reason });
        }
    }

    /// Kills local port `name` and runs its monitors now: a handler killing
    /// its own port, and shutdown, which must queue every `kil0` and `reg0`
    /// before the connections close. A handler actor stops once it has
    /// handled what was already in its mailbox.
    pub(crate) fn kill_now(&self, name: &str, reason: Reason) {
        if let Some((target, monitors)) = self.ports.registry().kill(name) {
            if let PortTarget::Handler { cell, runner } = &target {
                cell.die();
                let _ = runner.send(cell, Item::Control(Control::Stop));
            }
            self.fire_port_monitors(&PortId::new(&self.id, name), monitors, &reason);
            if let PortTarget::ActorPort { killed, .. } = &target {
                killed.do_send(super::actor::PortKilled { reason });
            }
        }
    }

    /// Runs the monitors of a dead local port.
    pub(crate) fn fire_port_monitors(
        &self,
        port: &PortId,
        monitors: Vec<(u64, Action)>,
        reason: &Reason,
    ) {
        if monitors.is_empty() && !reason.is_empty() {
            tracing::debug!(node = %self.id, %port, ?reason, "unmonitored port died");
        }
        for (_, action) in monitors {
            self.fire(action, port, reason);
        }
    }

    /// Kills every local port whose receiver is gone (a normal exit).
    pub(crate) fn sweep(&self) {
        for name in self.ports.registry().closed_ports() {
            self.kill_local(&name, Vec::new());
        }
    }
}

/// Takes an accepted data connection.
pub(crate) type DataHandler = Arc<dyn Fn(DataLink) + Send + Sync>;

impl NodeInner {
    /// Who takes accepted data connections, if anybody.
    pub(crate) fn data_handler(&self) -> Option<DataHandler> {
        self.data_handler.read().clone()
    }
}

/// How deeply requests to our own node port may nest (see
/// `NodeInner::local_node_port_request`).
const MAX_LOCAL_NESTING: usize = 16;

#[cold]
fn unreachable_node() -> Arc<NodeInner> {
    // NodeInner is only ever reached through an Arc that keeps it alive
    panic!("aemp: node handle used after the node was dropped")
}

impl Node {
    pub(crate) fn inner(&self) -> &NodeInner {
        &self.inner
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
    /// reused), whose messages go to an actix actor. The port dies with a
    /// normal exit when the actor stops (noticed at its next message, or
    /// within half a second).
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
        self.named_port(name, |_| PortTarget::Actor(recipient))
    }

    /// Creates a port with a fresh id whose messages arrive on a channel,
    /// for code that would rather `await` messages than write an actor.
    /// The port dies with a normal exit when the receiver is dropped.
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
        Ok((self.named_port(name, |_| PortTarget::Channel(tx))?, rx))
    }

    /// A port with a fresh name for a target that does not know its id.
    pub(super) fn fresh_port(&self, mut target: PortTarget) -> PortId {
        let mut name = self.inner.ports.new_port_name();
        loop {
            // a user may have taken a name of this shape with port_named
            match self.inner.ports.registry().insert_new(&name, target) {
                Ok(()) => return PortId::new(&self.inner.id, &name),
                Err(t) => {
                    target = t;
                    name = self.inner.ports.new_port_name();
                }
            }
        }
    }

    pub(super) fn named_port(
        &self,
        name: &str,
        target: impl FnOnce(PortId) -> PortTarget,
    ) -> Result<PortId, PortError> {
        if name.is_empty() || name.contains('#') {
            return Err(PortError::InvalidName(name.to_owned()));
        }
        if self.inner.ports.registry().contains(name) {
            return Err(PortError::NameTaken(name.to_owned()));
        }
        let port = PortId::new(&self.inner.id, name);
        match self
            .inner
            .ports
            .registry()
            .insert_new(name, target(port.clone()))
        {
            Ok(()) => Ok(port),
            Err(_) => Err(PortError::NameTaken(name.to_owned())),
        }
    }

    /// Whether `port` is a live port of this node.
    pub fn port_exists(&self, port: &PortId) -> bool {
        port.node() == self.id() && self.inner.ports.registry().contains(port.name())
    }

    /// Every limit a peer hit on this node, with how often: `(peer,
    /// limit, count)`, sorted; a peer is a node id, or `addr:<ip>` for one
    /// not yet authenticated (an IPv6 source by its /64:
    /// `addr:2001:db8:1:2::/64`). Limits that were never hit are left out.
    /// The table keeps a row for at most 65,536 peers; the hits of any
    /// beyond are counted together under `other`.
    pub fn limit_hits(&self) -> Vec<(String, crate::Limit, u64)> {
        self.inner.transport.limit_hits().snapshot()
    }

    /// How often `peer` (a node id, or `addr:<ip>` for a peer not yet
    /// authenticated) hit `limit` on this node.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// assert_eq!(node.limit_hit_count("other", aemp::Limit::SendQueue), 0);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn limit_hit_count(&self, peer: &str, limit: crate::Limit) -> u64 {
        self.inner.transport.limit_hits().count(peer, limit)
    }

    /// Counts a hit of `limit` by `peer` (see [`Node::limit_hits`]).
    pub(crate) fn count_limit_hit(&self, peer: &str, limit: crate::Limit) {
        self.inner.transport.limit_hits().hit(peer, limit);
    }

    /// Number of local ports.
    pub fn port_count(&self) -> usize {
        self.inner.ports.registry().len()
    }

    /// Sends `msg` (anything that serializes to a JSON array) to `port`.
    ///
    /// Local ports get it at once; remote ports over the live connection
    /// to their node; for a node that is not up it waits, in order, until a
    /// connection to that node id exists however it comes up (or until
    /// `monitor_timeout` passes without one: then it is dropped and the
    /// node's monitors fire). A message to a port that does not exist is
    /// dropped on its node (reference behaviour). A port id without `#`
    /// names that node's node port. This never blocks.
    ///
    /// Both queues are bounded by `max_send_queue` bytes (64 MiB by
    /// default). A send that passes the bound fails what it was sent on,
    /// so that no later message is delivered after a lost one: the
    /// connection ends with `("transport_error", node, "send queue
    /// overflow")` and the node's monitors fire, or, for a node that is
    /// not up yet, its queue is dropped and its monitors fire with that
    /// reason. Later sends queue for a new connection. See
    /// [`Node::snd_wait`] and [`Node::try_snd`] for sends that wait or
    /// refuse instead.
    ///
    /// Errors: `msg` is not an array; [`SendError::QueueFull`], the queue
    /// of a node that is not up overflowed;
    /// [`SendError::ConnectionClosed`], the connection is failing (its send
    /// queue overflowed) or closing.
    pub fn snd<M: Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        self.inner.snd(port.as_ref(), msg)
    }

    /// Sends `msg` to `port` like [`Node::snd`], but waits while the queue
    /// it goes into is full instead of failing anything: the connection's
    /// send queue while it holds more than its high-water mark (1/16 of
    /// `max_send_queue`, between 64 KiB and 4 MiB) or the message would
    /// pass the bound, and the queue of a node that is still connecting
    /// while the message does not fit (until the node comes up or its
    /// connect deadline passes). A fast sender using this cannot make a
    /// connection overflow.
    ///
    /// Errors: as [`Node::snd`], and [`SendError::QueueFull`] at once for
    /// a message larger than the whole bound (it would never fit).
    ///
    /// ```
    /// use aemp::Node;
    ///
    /// actix_rt::System::new().block_on(async {
    ///     let a = Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
    ///     let b = Node::builder().node_id("b").secret("s").max_send_queue(256 * 1024).start().await.unwrap();
    ///     let (inbox, mut rx) = a.port_channel_named("inbox").unwrap();
    ///     b.connect(a.listen_addrs()[0].to_string()).await.unwrap();
    ///     let sender = {
    ///         let (b, inbox) = (b.clone(), inbox.clone());
    ///         actix_rt::spawn(async move {
    ///             // 10 MB through a 256 KiB queue
    ///             for i in 0..10_000u32 {
    ///                 b.snd_wait(&inbox, &(i, "x".repeat(1000))).await.unwrap();
    ///             }
    ///         })
    ///     };
    ///     for want in 0..10_000u32 {
    ///         let (i, _): (u32, String) = rx.recv().await.unwrap().decode().unwrap();
    ///         assert_eq!(i, want);
    ///     }
    ///     sender.await.unwrap();
    ///     a.shutdown();
    ///     b.shutdown();
    /// });
    /// ```
    pub async fn snd_wait<M: Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        self.inner.snd_wait(port.as_ref(), msg).await
    }

    /// The same as [`Node::snd_wait`] (its older name).
    pub async fn snd_async<M: Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        self.inner.snd_wait(port.as_ref(), msg).await
    }

    /// Sends `msg` to `port` like [`Node::snd`] if its queue has room, and
    /// otherwise refuses it with [`SendError::QueueFull`] without failing
    /// anything: the connection goes on, nothing was sent, and a later
    /// send may succeed. The queue is full when [`Node::snd_wait`] would
    /// wait (see there).
    ///
    /// ```
    /// use aemp::{Node, SendError};
    ///
    /// actix_rt::System::new().block_on(async {
    ///     let a = Node::builder().node_id("a").secret("s").max_send_queue(1000).start().await.unwrap();
    ///     // "b" is not up: its messages wait in a queue of at most 1000 bytes
    ///     let payload = "x".repeat(400);
    ///     a.try_snd("b#inbox", &(&payload,)).unwrap();
    ///     a.try_snd("b#inbox", &(&payload,)).unwrap();
    ///     assert!(matches!(
    ///         a.try_snd("b#inbox", &(&payload,)),
    ///         Err(SendError::QueueFull { limit: 1000, .. })
    ///     ));
    ///     // the two queued messages still wait for "b"
    ///     assert!(a.known_nodes().contains(&"b".to_string()));
    ///     a.shutdown();
    /// });
    /// ```
    pub fn try_snd<M: Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        let port = port.as_ref();
        match self.inner.try_snd(port, msg)? {
            Ok(()) => Ok(()),
            Err(full) => Err(SendError::QueueFull {
                node: split_port(port).0.to_owned(),
                limit: full.limit(self.inner.remote.peers().max_waiting()),
            }),
        }
    }

    /// Kills `port`, local or remote. An empty `reason` is a normal exit
    /// (monitors that kill linked ports do nothing); otherwise it is an
    /// error exit with that reason. A killed local port leaves the
    /// registry at once; later messages to it are dropped. Killing a remote
    /// port sends `["", "kil", name, reason…]` to its node.
    pub fn kil(&self, port: impl AsRef<str>, reason: Reason) -> Result<(), SendError> {
        self.inner.kil(port.as_ref(), reason)
    }

    /// Spawns a port on the node of `target` (a node id, or a port id whose
    /// node is meant) by running the init function `func` there with
    /// `args` (anything that serializes to an array; `&[(); 0]` for none —
    /// `&()` is refused with [`SpawnError::Args`], as `snd` refuses it).
    /// Returns the new port's id at once, `<target node>#<runiq>.<counter>`; messages and
    /// monitors may use it right away. A local init function runs only
    /// after this returns. If the init function is unknown or fails, no
    /// port is created and a monitor of the port fires with
    /// `no_such_port`.
    pub fn spawn<A: Serialize + ?Sized>(
        &self,
        target: impl AsRef<str>,
        func: &str,
        args: &A,
    ) -> Result<PortId, SpawnError> {
        let args = crate::wire::packet::message_values(args).map_err(SpawnError::Args)?;
        self.inner.spawn(target.as_ref(), func, args)
    }

    /// Dials `addr` (`host:port`) and runs the handshake. Resolves to the
    /// peer's node id once it is up.
    pub async fn connect(&self, addr: impl Into<String>) -> Result<String, ConnectionError> {
        self.inner.dial(addr.into()).await
    }

    /// Whether a live connection to `node` exists.
    pub fn node_is_up(&self, node: &str) -> bool {
        self.inner.remote.peers().is_up(node)
    }

    /// The ids of all nodes with a live connection (not this one).
    pub fn up_nodes(&self) -> Vec<String> {
        self.inner.remote.peers().up_nodes()
    }

    /// This node and every node it has a connection to or something
    /// pending for.
    pub fn known_nodes(&self) -> Vec<String> {
        let mut known = vec![self.id().to_owned()];
        known.extend(self.inner.remote.peers().known_nodes());
        known
    }

    /// The framing we send to `node`, if it is up.
    pub fn send_framing(&self, node: &str) -> Option<Framing> {
        self.inner.remote.peers().outbox(node).map(|o| o.framing)
    }

    /// Subscribes to connection events (up, down, failed handshakes).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Stops listening and dialling, kills every local port with
    /// [`Node::shutdown_reason`] — `("shutdown", "node <id> is shutting
    /// down")` — and closes every connection after writing what is queued
    /// on it. Sends fail from now on.
    ///
    /// The reason is not empty on purpose: Perl's kill-form monitors
    /// (`mon $port, $port2`) act only on a reason (MP.pm 618), and the
    /// `kil0` a dying port sends uses the remote monitors up (Kernel.pm
    /// 606–611), so a normal exit here would leave them never firing.
    ///
    /// ```no_run
    /// # async fn f(node: aemp::Node) {
    /// node.shutdown(); // same as node.shutdown_with(node.shutdown_reason())
    /// # }
    /// ```
    pub fn shutdown(&self) {
        self.shutdown_with(self.shutdown_reason());
    }

    /// The reason [`Node::shutdown`] kills the ports with:
    /// `["shutdown", "node <id> is shutting down"]`.
    pub fn shutdown_reason(&self) -> Reason {
        vec![
            Value::from("shutdown"),
            Value::from(format!("node {} is shutting down", self.id())),
        ]
    }

    /// Like [`Node::shutdown`], killing the local ports with `reason` (so
    /// remote monitors hear it in their `kil0`).
    pub fn shutdown_with(&self, reason: Reason) {
        if self.inner.transport.is_shut_down() {
            return;
        }
        // the ports die first: their kil0s and group withdrawals (reg0)
        // are queued before the connections close
        for name in self.inner.ports.registry().names() {
            self.inner.kill_now(&name, reason.clone());
        }
        self.inner.transport.shut_down();
        for outbox in self.inner.remote.peers().drain() {
            outbox.request_close();
        }
    }

    /// Shuts down with `reason` and waits (at most `timeout`) until every
    /// connection has written what was queued and closed.
    pub async fn shutdown_gracefully(&self, reason: Reason, timeout: Duration) {
        self.shutdown_with(reason);
        let _ = tokio::time::timeout(timeout, self.inner.transport.closed()).await;
    }

    /// How `node` authenticated its connection with us (the last one, if
    /// it is down: kept for the 4,096 nodes that went down last): the
    /// method, whether over TLS, and the subject of its certificate.
    pub fn peer_auth(&self, node: &str) -> Option<super::PeerAuth> {
        self.inner.remote.auth_of(node)
    }

    /// The `provider` the greeting of `node` named (`AE-1.30` for the Perl
    /// reference, `aemp-…` for aemp), if we are connected to it or were
    /// lately (the 4,096 nodes that went down last keep theirs).
    pub fn provider_of(&self, node: &str) -> Option<String> {
        self.inner.remote.provider_of(node)
    }
}

impl NodeInner {
    /// Builds the kernel of a node from validated settings, with
    /// `functions` registered and listeners bound but not yet accepting
    /// (see [`Node::start_listening`]). Must run inside an actix system.
    pub(crate) async fn boot(
        mut config: NodeConfig,
        functions: Functions,
    ) -> Result<(Node, Vec<tokio::net::TcpListener>), StartError> {
        let arbiter = actix_rt::Arbiter::try_current().ok_or(StartError::NoSystem)?;
        if config.node_id == ANON_NODE_ID {
            config.node_id = format!("{ANON_NODE_ID}{}", alnum_random(12));
        }
        let listeners = listener::bind(&config.binds).await?;
        // seeds are expanded once, as the binds are (Kernel.pm 446)
        config.seeds = crate::transport::binds::resolve_seeds(
            &config.seeds,
            &crate::transport::binds::HostInfo::this_host(),
        )
        .await
        .map_err(|e| StartError::Config(e.into()))?;
        let listen_addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StartError::Bind {
                addr: config.binds.join(","),
                source,
            })?;
        let id: Arc<str> = Arc::from(config.node_id.as_str());
        let transport = Arc::new(Transport::new(
            TransportConfig::new(&config, listen_addrs.is_empty())
                .map_err(|e| StartError::Tls(e.to_string()))?,
            id.clone(),
            arbiter,
        ));
        let inner = Arc::new_cyclic(|me| NodeInner {
            id: id.clone(),
            me: me.clone(),
            transport,
            ports: LocalPorts::new(functions),
            remote: RemoteNodes::new(id, config.max_send_queue),
            watchers: NodeWatchers::default(),
            services: Services::default(),
            data_handler: parking_lot::RwLock::new(None),
            listen_addrs,
            events: broadcast::channel(1024).0,
            config,
        });
        tracing::info!(node = %inner.id, listen = ?inner.listen_addrs, "node starting");
        inner.start_sweeper();
        let node = Node { inner };
        if let Some(queue) = node.inner.ports.take_runner_queue() {
            queue.start(node.downgrade());
        }
        Ok((node, listeners))
    }
}

impl Node {
    /// Starts accepting connections on `listeners` (bound by
    /// [`NodeInner::boot`]), once every service is plugged in.
    pub(crate) fn start_listening(&self, listeners: Vec<tokio::net::TcpListener>) {
        let inner = &self.inner;
        for l in listeners {
            listener::spawn_accept_loop(inner.transport.clone(), inner.link(), l);
        }
    }

    /// Starts one configured service (see [`NodeConfig::services`]).
    pub(crate) fn start_service(&self, service: &Value) -> Result<(), crate::error::ServiceError> {
        self.inner.start_service(service)
    }

    /// Runs a callback of user code that has no port (`what` names it in
    /// the log): a panic is logged.
    pub(crate) fn run_callback(&self, what: &str, f: impl FnOnce()) {
        super::user_code::callback(&self.inner.id, what, f)
    }

    /// The service of type `T` plugged into this node, if any.
    pub(crate) fn service<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.services.get()
    }

    /// Plugs a service into this node (one per type).
    pub(crate) fn install_service<T: std::any::Any + Send + Sync>(&self, service: Arc<T>) {
        self.inner.services.insert(service);
    }

    /// Makes `handler` take the data connections this node accepts.
    pub(crate) fn set_data_handler(&self, handler: DataHandler) {
        *self.inner.data_handler.write() = Some(handler);
    }

    /// Dials `addr` as a data connection with id `id` (see
    /// [`crate::transport::dataconn::dial`]).
    pub(crate) async fn dial_data(
        &self,
        addr: &str,
        id: &str,
    ) -> Result<DataLink, ConnectionError> {
        let inner = &self.inner;
        dataconn::dial(&inner.transport, addr, id).await
    }

    /// A weak handle, which does not keep the node alive.
    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// Cancelled when the node shuts down.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        self.inner.transport.shutdown_token()
    }

    /// Runs `fut` on the node's arbiter; false if the arbiter is gone.
    pub(crate) fn spawn_task(
        &self,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> bool {
        self.inner.transport.arbiter().spawn(fut)
    }
}

/// A node handle that does not keep the node alive.
#[derive(Clone)]
pub(crate) struct WeakNode(Weak<NodeInner>);

impl WeakNode {
    /// The node, if it is still alive.
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

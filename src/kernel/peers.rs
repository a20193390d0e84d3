//! Remote nodes as the kernel sees them: up (a live connection) or down
//! (messages wait in order until a connection to that node id exists,
//! however it comes up, or until the connect deadline drops them).
//!
//! **One connection per node.** The table keeps each down node's handshake
//! slot; which handshake gets it is decided by [`crate::wire::slot`] (the
//! rules live there), and this table applies the decision: it records the
//! holder, cancels a holder that lost its slot, and tells waiting
//! handshakes when a slot changed. A connection attaches only if it holds
//! its node's slot.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use serde::Serialize;

use crate::error::SendError;
use crate::transport::connector::ConnectorId;
use crate::transport::handshake::SlotTable;
use crate::transport::outbox::{Outbox, Refused};
use crate::wire::Packet;
use crate::wire::slot::{Contender, Decision, Holder, decide};

enum Peer {
    /// A connection completed its handshake; packets go to its outbox.
    Up(Arc<Outbox>),
    /// No live connection.
    Down(Pending),
}

/// A node without a live connection.
#[derive(Default)]
struct Pending {
    /// JSON frames waiting for a connection, in order.
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// The handshake that holds this node's slot, and how to stop it.
    holder: Option<(Holder, CancellationToken)>,
    /// The connector (with its deadline) that runs for this node, if any.
    /// One that finds another id here (its attempt was failed or reset,
    /// and a newer connector took over) ends without doing anything.
    connecting: Option<ConnectorId>,
    /// The node's transport just failed and its monitors are firing:
    /// no connection may complete until they have.
    failing: bool,
}

impl Pending {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.holder.is_none() && self.connecting.is_none() && !self.failing
    }
}

/// What a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Handed to a live connection.
    Now,
    /// Queued for a node that is not up; a connector runs already.
    Queued,
    /// Queued, and nothing connects to that node yet: start a connector
    /// with this id.
    QueuedStartConnecting(ConnectorId),
}

/// The node table.
pub(crate) struct Peers {
    /// Our node id (slot decisions compare it).
    local: Arc<str>,
    map: DashMap<Arc<str>, Peer, ahash::RandomState>,
    /// Bumped when a slot may have become free or been decided.
    slot_changes: watch::Sender<u64>,
    /// Most bytes that may wait for one node that is not up.
    max_waiting: usize,
    /// Set by `drain` (shutdown): no connection attaches any more.
    drained: AtomicBool,
    /// The id of the next connector.
    next_connector: AtomicU64,
}

/// Sends what `encode` writes (one packet) into an outbox, mapping the
/// outcome to the API's error.
#[inline]
fn push_with(
    outbox: &Outbox,
    node: &str,
    encode: impl FnOnce(&mut bytes::BytesMut) -> Result<(), crate::wire::EncodeError>,
) -> Result<Sent, SendError> {
    match outbox.push(encode) {
        Ok(result) => result.map(|()| Sent::Now).map_err(SendError::Encode),
        Err(_) => Err(SendError::ConnectionClosed {
            node: node.to_owned(),
        }),
    }
}

/// Sends message `msg` for port `name` into an outbox.
#[inline]
fn push<M: Serialize + ?Sized>(
    outbox: &Outbox,
    node: &str,
    name: &str,
    msg: &M,
) -> Result<Sent, SendError> {
    push_with(outbox, node, |buf| {
        outbox.framing.encode_packet(name, msg, buf)
    })
}

/// Sends one encoded JSON frame into an outbox (in its framing).
fn push_frame(outbox: &Outbox, node: &str, frame: &Bytes) -> Result<Sent, SendError> {
    push_with(outbox, node, |buf| outbox.framing.encode_frame(frame, buf))
}

/// Why a `try_` send was refused (nothing was sent, nothing failed).
#[derive(Debug, Clone)]
pub(crate) enum Full {
    /// The live connection's queue is full: room comes as it drains.
    Connection(Arc<Outbox>),
    /// The queue of a node that is not up is full: room comes when the
    /// node comes up (the queue moves into its connection) or fails.
    Connecting,
    /// The packet is larger than the whole bound: it never fits.
    Never {
        /// The bound, in bytes.
        limit: usize,
    },
}

impl Full {
    /// The bound that refused the packet.
    pub(crate) fn limit(&self, max_waiting: usize) -> usize {
        match self {
            Full::Connection(o) => o.limit(),
            Full::Connecting => max_waiting,
            Full::Never { limit } => *limit,
        }
    }
}

/// A `try_` push into an outbox.
fn try_push_with(
    outbox: &Arc<Outbox>,
    node: &str,
    encode: impl FnOnce(&mut bytes::BytesMut) -> Result<(), crate::wire::EncodeError>,
) -> Result<Result<Sent, Full>, SendError> {
    match outbox.try_push(encode) {
        Ok(Ok(())) => Ok(Ok(Sent::Now)),
        Ok(Err(e)) => Err(SendError::Encode(e)),
        Err(Refused::Full) => Ok(Err(Full::Connection(outbox.clone()))),
        Err(Refused::TooBig) => Ok(Err(Full::Never {
            limit: outbox.limit(),
        })),
        Err(Refused::Closed | Refused::Overflow) => Err(SendError::ConnectionClosed {
            node: node.to_owned(),
        }),
    }
}

impl Peers {
    pub(crate) fn new(local: Arc<str>, max_waiting: usize) -> Peers {
        Peers {
            local,
            map: DashMap::with_hasher(ahash::RandomState::new()),
            slot_changes: watch::Sender::new(0),
            max_waiting,
            drained: AtomicBool::new(false),
            next_connector: AtomicU64::new(1),
        }
    }

    /// Whether a live connection to `node` exists.
    pub(crate) fn is_up(&self, node: &str) -> bool {
        self.map
            .get(node)
            .is_some_and(|p| matches!(&*p, Peer::Up(_)))
    }

    /// Whether `node` is down with something waiting for it: a queue, a
    /// connector or a handshake.
    pub(crate) fn is_waiting(&self, node: &str) -> bool {
        self.map
            .get(node)
            .is_some_and(|p| matches!(&*p, Peer::Down(p) if !p.idle()))
    }

    /// The ids of all nodes with a live connection.
    pub(crate) fn up_nodes(&self) -> Vec<String> {
        self.map
            .iter()
            .filter(|e| matches!(e.value(), Peer::Up(_)))
            .map(|e| e.key().to_string())
            .collect()
    }

    /// The ids of all nodes in the table (up, or with something pending).
    pub(crate) fn known_nodes(&self) -> Vec<String> {
        self.map.iter().map(|e| e.key().to_string()).collect()
    }

    /// The outbox of the live connection to `node`, if any.
    pub(crate) fn outbox(&self, node: &str) -> Option<Arc<Outbox>> {
        match self.map.get(node).as_deref() {
            Some(Peer::Up(outbox)) => Some(outbox.clone()),
            _ => None,
        }
    }

    /// The entry of `node`, made a down node with nothing pending if it
    /// has none.
    fn entry(&self, node: Arc<str>) -> RefMut<'_, Arc<str>, Peer> {
        self.map
            .entry(node)
            .or_insert_with(|| Peer::Down(Pending::default()))
    }

    /// The bound of the queue of a node that is not up.
    pub(crate) fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Sends `msg` to port `name` on `node`: encoded straight into the
    /// connection's outbox if the node is up, else as a JSON frame into its
    /// waiting queue. A send that passes the bound of either fails what it
    /// was sent on: the connection (its monitors fire with `send queue
    /// overflow`; [`SendError::ConnectionClosed`]), or the wait for the
    /// node — its queue is dropped, nothing queues behind the lost
    /// message, and [`SendError::QueueFull`] tells the caller to fire the
    /// node's monitors (see `NodeInner::connecting_queue_overflow`).
    #[inline]
    pub(crate) fn send<M: Serialize + ?Sized>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<Sent, SendError> {
        // the table's guards are never held while a message is encoded.
        // Order stays as it was: a connection is closed (its outbox refuses
        // everything) before the table marks its node down, and a new one
        // is attached only under the entry's write lock, after the queue
        // went into its outbox
        if let Some(outbox) = self.outbox(node) {
            return push(&outbox, node, name, msg);
        }
        self.send_down(node, Packet::to_frame(name, msg)?, false)
            .map(|r| r.unwrap_or(Sent::Queued))
    }

    /// Like [`Peers::send`], but a full queue refuses the message (and
    /// says which queue, so a caller can wait for room) without failing
    /// anything.
    pub(crate) fn try_send<M: Serialize + ?Sized>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<Result<Sent, Full>, SendError> {
        if let Some(outbox) = self.outbox(node) {
            return try_push_with(&outbox, node, |buf| {
                outbox.framing.encode_packet(name, msg, buf)
            });
        }
        self.send_down(node, Packet::to_frame(name, msg)?, true)
    }

    /// Like [`Peers::try_send`], for a JSON frame made already (a relayed
    /// message): transcoded into the connection's framing, or queued as
    /// it is for a node that is not up.
    pub(crate) fn try_send_frame(
        &self,
        node: &str,
        frame: Bytes,
    ) -> Result<Result<Sent, Full>, SendError> {
        if let Some(outbox) = self.outbox(node) {
            return try_push_with(&outbox, node, |buf| {
                outbox.framing.encode_frame(&frame, buf)
            });
        }
        self.send_down(node, frame, true)
    }

    /// Queues `frame` for `node`, which was not up a moment ago.
    fn send_down(
        &self,
        node: &str,
        frame: Bytes,
        polite: bool,
    ) -> Result<Result<Sent, Full>, SendError> {
        let mut entry = self.entry(Arc::from(node));
        let pending = match entry.value_mut() {
            Peer::Up(outbox) => {
                // came up meanwhile: the frame goes straight into its outbox
                let outbox = outbox.clone();
                drop(entry);
                if polite {
                    return try_push_with(&outbox, node, |buf| {
                        outbox.framing.encode_frame(&frame, buf)
                    });
                }
                return push_frame(&outbox, node, &frame).map(Ok);
            }
            Peer::Down(pending) => pending,
        };
        if pending.bytes + frame.len() > self.max_waiting {
            if polite {
                return Ok(Err(if frame.len() > self.max_waiting {
                    Full::Never {
                        limit: self.max_waiting,
                    }
                } else {
                    Full::Connecting
                }));
            }
            // as a connection whose queue overflowed: what waited is lost,
            // so nothing may go after it; the node is failing until the
            // caller has fired its monitors (a handshake in flight keeps
            // its slot, the connector stops)
            *pending = Pending {
                failing: true,
                holder: pending.holder.take(),
                ..Pending::default()
            };
            return Err(SendError::QueueFull {
                node: node.to_owned(),
                limit: self.max_waiting,
            });
        }
        pending.bytes += frame.len();
        pending.queue.push_back(frame);
        if pending.connecting.is_some() {
            Ok(Ok(Sent::Queued))
        } else {
            let id = self.connector_id();
            pending.connecting = Some(id);
            Ok(Ok(Sent::QueuedStartConnecting(id)))
        }
    }

    /// A fresh connector id.
    fn connector_id(&self) -> ConnectorId {
        ConnectorId(self.next_connector.fetch_add(1, Ordering::Relaxed))
    }

    /// Marks that a connector runs for `node`: its id, or `None` if one
    /// runs already (or the node is up).
    pub(crate) fn start_connecting(&self, node: &str) -> Option<ConnectorId> {
        let mut entry = self.entry(Arc::from(node));
        match entry.value_mut() {
            Peer::Up(_) => None,
            Peer::Down(p) if p.connecting.is_some() => None,
            Peer::Down(p) => {
                let id = self.connector_id();
                p.connecting = Some(id);
                Some(id)
            }
        }
    }

    /// Changes the pending state of a node that is down, and forgets the
    /// node when nothing is pending any more.
    fn update_down(&self, node: &str, change: impl FnOnce(&mut Pending)) {
        if let Entry::Occupied(mut e) = self.map.entry(Arc::from(node))
            && let Peer::Down(p) = e.get_mut()
        {
            change(p);
            if p.idle() {
                e.remove();
            }
        }
    }

    /// Connector `id` of `node` ended (the node came up, or shutdown).
    pub(crate) fn stop_connecting(&self, node: &str, id: ConnectorId) {
        self.update_down(node, |p| {
            if p.connecting == Some(id) {
                p.connecting = None;
            }
        });
    }

    /// Tells waiting handshakes that a slot may have changed.
    fn slot_changed(&self) {
        self.slot_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Marks `node` up with connection `conn_id`'s outbox. The frames
    /// waiting for it go into the outbox first, in order, before any later
    /// `send` can reach it. Fails if the node is up, failing, or another
    /// handshake holds its slot.
    pub(crate) fn attach(
        &self,
        node: Arc<str>,
        conn_id: u64,
        outbox: Arc<Outbox>,
    ) -> Result<(), ()> {
        let mut entry = self.entry(node);
        // checked under the entry's lock: `drain` either sees this
        // connection's outbox or this sees the flag
        if self.drained.load(Ordering::SeqCst) {
            return Err(());
        }
        let pending = match entry.value_mut() {
            Peer::Up(_) => return Err(()),
            Peer::Down(p) if p.failing => return Err(()),
            Peer::Down(p) if p.holder.as_ref().is_some_and(|(h, _)| h.conn != conn_id) => {
                return Err(());
            }
            Peer::Down(p) => std::mem::take(p),
        };
        for frame in pending.queue {
            let pushed = outbox.push(|buf| outbox.framing.encode_frame(&frame, buf));
            if !matches!(pushed, Ok(Ok(()))) {
                tracing::warn!(
                    conn = conn_id,
                    "a waiting message could not be queued on the new connection"
                );
            }
        }
        *entry.value_mut() = Peer::Up(outbox);
        drop(entry);
        self.slot_changed();
        Ok(())
    }

    /// The connection `conn_id` to `node` was lost: the node is down and
    /// failing until [`Peers::end_failing`]. False if that connection was
    /// not the live one.
    pub(crate) fn connection_lost(&self, node: &str, conn_id: u64) -> bool {
        let Some(mut peer) = self.map.get_mut(node) else {
            return false;
        };
        let live = matches!(&*peer, Peer::Up(o) if o.conn_id == conn_id);
        if live {
            *peer = Peer::Down(Pending {
                failing: true,
                ..Pending::default()
            });
        }
        live
    }

    /// No connection to `node` came up in time: its queue is dropped and it
    /// is failing until [`Peers::end_failing`]. False if it is up.
    pub(crate) fn unable_to_connect(&self, node: &str) -> bool {
        let Some(mut peer) = self.map.get_mut(node) else {
            return false;
        };
        let Peer::Down(p) = &mut *peer else {
            return false;
        };
        // a handshake in flight keeps its slot
        *p = Pending {
            failing: true,
            holder: p.holder.take(),
            ..Pending::default()
        };
        true
    }

    /// The failure of `node` has been handled (monitors fired).
    pub(crate) fn end_failing(&self, node: &str) {
        self.update_down(node, |p| p.failing = false);
        self.slot_changed();
    }

    /// Whether something waits for `node` (a queue or a connector).
    pub(crate) fn is_connecting(&self, node: &str, id: ConnectorId) -> bool {
        matches!(self.map.get(node).as_deref(), Some(Peer::Down(p)) if p.connecting == Some(id))
    }

    /// Removes every entry, returning the live outboxes.
    pub(crate) fn drain(&self) -> Vec<Arc<Outbox>> {
        self.drained.store(true, Ordering::SeqCst);
        let outboxes = self
            .map
            .iter()
            .filter_map(|e| match e.value() {
                Peer::Up(o) => Some(o.clone()),
                Peer::Down(_) => None,
            })
            .collect();
        self.map.clear();
        self.slot_changed();
        outboxes
    }
}

impl SlotTable for Peers {
    fn refuses(&self, node: &str) -> bool {
        self.drained.load(Ordering::SeqCst)
            || match self.map.get(node).as_deref() {
                Some(Peer::Up(_)) => true,
                Some(Peer::Down(p)) => p.failing,
                None => false,
            }
    }

    fn claim(
        &self,
        node: &str,
        c: &Contender,
        cancel: &CancellationToken,
        now: Instant,
    ) -> Decision {
        let mut entry = self.entry(Arc::from(node));
        let Peer::Down(p) = entry.value_mut() else {
            return Decision::Refused;
        };
        if p.failing {
            return Decision::Refused;
        }
        let decision = decide(p.holder.as_ref().map(|(h, _)| h), c, &self.local, node, now);
        if let Decision::Granted | Decision::TakeOver { .. } = decision {
            let holder = Holder {
                conn: c.conn,
                outbound: c.outbound,
                since: now,
                verified: false,
            };
            if let Some((old, stop)) = p.holder.replace((holder, cancel.clone()))
                && old.conn != c.conn
            {
                stop.cancel();
            }
        }
        decision
    }

    fn release(&self, node: &str, conn: u64) {
        let mut released = false;
        self.update_down(node, |p| {
            if p.holder.as_ref().is_some_and(|(h, _)| h.conn == conn) {
                p.holder = None;
                released = true;
            }
        });
        if released {
            self.slot_changed();
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.slot_changes.subscribe()
    }
}

//! Remote nodes as the kernel sees them: up (a live connection) or down
//! (messages wait in order until a connection to that node id exists,
//! however it comes up, or until the connect deadline drops them).
//!
//! **One connection per node.** A handshake claims its node's slot as soon
//! as the peer's first greeting line names the node, before we send our
//! auth line; a second handshake with the same node (in either direction)
//! is refused there. A connection completes only when both sides sent
//! their auth lines, so at most one connection between two aemp nodes can
//! complete: when both dial at once and each side claims a different
//! connection, both fail before any packet flows, no monitor fires, the
//! queued messages stay queued, and the next attempt succeeds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use serde::Serialize;

use crate::error::SendError;
use crate::transport::outbox::{Outbox, Refused};
use crate::wire::Packet;

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
    /// The connection that claimed this node's handshake slot.
    handshake: Option<u64>,
    /// A connector (with its deadline) runs for this node.
    connecting: bool,
    /// The node's transport just failed and its monitors are firing:
    /// no connection may complete until they have.
    failing: bool,
}

impl Pending {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.handshake.is_none() && !self.connecting && !self.failing
    }
}

/// What a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Handed to a live connection.
    Now,
    /// Queued for a node that is not up; a connector runs already.
    Queued,
    /// Queued, and nothing connects to that node yet: start a connector.
    QueuedStartConnecting,
}

/// The node table.
pub(crate) struct Peers {
    map: DashMap<Arc<str>, Peer, ahash::RandomState>,
    /// Most bytes that may wait for one node that is not up.
    max_waiting: usize,
    /// Set by `drain` (shutdown): no connection attaches any more.
    drained: AtomicBool,
}

/// Sends one packet into an outbox, mapping the outcome to the API's error.
fn push<M: Serialize + ?Sized>(
    outbox: &Outbox,
    node: &str,
    name: &str,
    msg: &M,
) -> Result<Sent, SendError> {
    match outbox.push(|buf| outbox.framing.encode_packet(name, msg, buf)) {
        Ok(result) => result.map(|()| Sent::Now).map_err(SendError::Encode),
        Err(Refused::Closed | Refused::Overflow) => Err(SendError::ConnectionClosed {
            node: node.to_owned(),
        }),
    }
}

impl Peers {
    pub(crate) fn new(max_waiting: usize) -> Peers {
        Peers {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            max_waiting,
            drained: AtomicBool::new(false),
        }
    }

    /// Whether a live connection to `node` exists.
    pub(crate) fn is_up(&self, node: &str) -> bool {
        self.map
            .get(node)
            .is_some_and(|p| matches!(&*p, Peer::Up(_)))
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

    /// The outbox of the live connection to `node` if it is above its
    /// high-water mark (a sender should wait for room).
    pub(crate) fn full_outbox(&self, node: &str) -> Option<Arc<Outbox>> {
        match self.map.get(node).as_deref() {
            Some(Peer::Up(outbox)) if outbox.is_full() => Some(outbox.clone()),
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

    /// Sends `msg` to port `name` on `node`: encoded straight into the
    /// connection's outbox if the node is up, else as a JSON frame into its
    /// waiting queue.
    pub(crate) fn send<M: Serialize + ?Sized>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<Sent, SendError> {
        // fast path under a read guard, which also orders this send with
        // respect to attach/fail
        if let Some(peer) = self.map.get(node)
            && let Peer::Up(outbox) = &*peer
        {
            return push(outbox, node, name, msg);
        }
        let mut entry = self.entry(Arc::from(node));
        let pending = match entry.value_mut() {
            Peer::Up(outbox) => return push(outbox, node, name, msg),
            Peer::Down(pending) => pending,
        };
        let frame = Packet::to_frame(name, msg)?;
        if pending.bytes + frame.len() > self.max_waiting {
            return Err(SendError::QueueFull {
                node: node.to_owned(),
                limit: self.max_waiting,
            });
        }
        pending.bytes += frame.len();
        pending.queue.push_back(frame);
        if pending.connecting {
            Ok(Sent::Queued)
        } else {
            pending.connecting = true;
            Ok(Sent::QueuedStartConnecting)
        }
    }

    /// Marks that a connector runs for `node`; false if one runs already
    /// (or the node is up).
    pub(crate) fn start_connecting(&self, node: &str) -> bool {
        let mut entry = self.entry(Arc::from(node));
        match entry.value_mut() {
            Peer::Up(_) => false,
            Peer::Down(p) if p.connecting => false,
            Peer::Down(p) => {
                p.connecting = true;
                true
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

    /// The connector of `node` ended (the node came up, or shutdown).
    pub(crate) fn stop_connecting(&self, node: &str) {
        self.update_down(node, |p| p.connecting = false);
    }

    /// Claims `node`'s handshake slot for connection `conn_id` (see the
    /// module docs); false if the node is up, failing, or another
    /// handshake holds the slot.
    pub(crate) fn claim(&self, node: &str, conn_id: u64) -> bool {
        let mut entry = self.entry(Arc::from(node));
        match entry.value_mut() {
            Peer::Up(_) => false,
            Peer::Down(p) if p.failing => false,
            Peer::Down(p) => match p.handshake {
                Some(other) if other != conn_id => false,
                _ => {
                    p.handshake = Some(conn_id);
                    true
                }
            },
        }
    }

    /// Releases `node`'s handshake slot if `conn_id` holds it.
    pub(crate) fn release(&self, node: &str, conn_id: u64) {
        self.update_down(node, |p| {
            if p.handshake == Some(conn_id) {
                p.handshake = None;
            }
        });
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
            Peer::Down(p) if p.handshake.is_some_and(|h| h != conn_id) => return Err(()),
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
            handshake: p.handshake,
            ..Pending::default()
        };
        true
    }

    /// The failure of `node` has been handled (monitors fired).
    pub(crate) fn end_failing(&self, node: &str) {
        self.update_down(node, |p| p.failing = false);
    }

    /// Whether something waits for `node` (a queue or a connector).
    pub(crate) fn is_connecting(&self, node: &str) -> bool {
        matches!(self.map.get(node).as_deref(), Some(Peer::Down(p)) if p.connecting)
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
        outboxes
    }
}

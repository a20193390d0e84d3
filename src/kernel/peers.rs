//! Remote nodes as the kernel sees them: up (a live connection) or not up
//! (messages wait in order until a connection to that node id exists,
//! however it comes up).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde::Serialize;

use crate::error::SendError;
use crate::transport::outbox::{Outbox, Refused};
use crate::wire::Packet;

enum Peer {
    /// A connection completed its handshake; packets go to its outbox.
    Up(Arc<Outbox>),
    /// No connection yet: JSON frames wait here, in order.
    Waiting {
        queue: VecDeque<Bytes>,
        bytes: usize,
    },
}

/// The node table.
pub(crate) struct Peers {
    map: DashMap<Arc<str>, Peer, ahash::RandomState>,
    /// Most bytes that may wait for one node that is not up.
    max_waiting: usize,
}

/// Sends one packet into an outbox, mapping the outcome to the API's error.
fn push<M: Serialize + ?Sized>(
    outbox: &Outbox,
    node: &str,
    name: &str,
    msg: &M,
) -> Result<(), SendError> {
    match outbox.push(|buf| outbox.framing.encode_packet(name, msg, buf)) {
        Ok(result) => result.map_err(SendError::Encode),
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

    /// Sends `msg` to port `name` on `node`: encoded straight into the
    /// connection's outbox if the node is up, else as a JSON frame into its
    /// waiting queue.
    pub(crate) fn send<M: Serialize + ?Sized>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<(), SendError> {
        // fast path under a read guard, which also orders this send with
        // respect to attach/detach
        if let Some(peer) = self.map.get(node)
            && let Peer::Up(outbox) = &*peer
        {
            return push(outbox, node, name, msg);
        }
        let queue_full = || SendError::QueueFull {
            node: node.to_owned(),
            limit: self.max_waiting,
        };
        match self.map.entry(Arc::from(node)) {
            Entry::Occupied(mut e) => match e.get_mut() {
                Peer::Up(outbox) => push(outbox, node, name, msg),
                Peer::Waiting { queue, bytes } => {
                    let frame = Packet::to_frame(name, msg)?;
                    if *bytes + frame.len() > self.max_waiting {
                        return Err(queue_full());
                    }
                    *bytes += frame.len();
                    queue.push_back(frame);
                    Ok(())
                }
            },
            Entry::Vacant(v) => {
                let frame = Packet::to_frame(name, msg)?;
                if frame.len() > self.max_waiting {
                    return Err(queue_full());
                }
                let bytes = frame.len();
                v.insert(Peer::Waiting {
                    queue: VecDeque::from([frame]),
                    bytes,
                });
                Ok(())
            }
        }
    }

    /// Marks `node` up with `outbox`. The frames waiting for it go into the
    /// outbox first, in order, before any later `send` can reach it. Fails
    /// if the node already has a live connection.
    pub(crate) fn attach(&self, node: Arc<str>, outbox: Arc<Outbox>) -> Result<(), ()> {
        match self.map.entry(node) {
            Entry::Occupied(mut e) => match e.get_mut() {
                Peer::Up(_) => Err(()),
                Peer::Waiting { queue, .. } => {
                    for frame in queue.drain(..) {
                        let pushed = outbox.push(|buf| outbox.framing.encode_frame(&frame, buf));
                        if !matches!(pushed, Ok(Ok(()))) {
                            tracing::warn!(
                                conn = outbox.conn_id,
                                "a waiting message could not be queued on the new connection"
                            );
                        }
                    }
                    e.insert(Peer::Up(outbox));
                    Ok(())
                }
            },
            Entry::Vacant(v) => {
                v.insert(Peer::Up(outbox));
                Ok(())
            }
        }
    }

    /// Forgets the connection `conn_id` of `node`, if it is the live one.
    pub(crate) fn detach(&self, node: &str, conn_id: u64) -> bool {
        self.map
            .remove_if(
                node,
                |_, p| matches!(p, Peer::Up(o) if o.conn_id == conn_id),
            )
            .is_some()
    }

    /// Removes every entry, returning the live outboxes.
    pub(crate) fn drain(&self) -> Vec<Arc<Outbox>> {
        let outboxes = self
            .map
            .iter()
            .filter_map(|e| match e.value() {
                Peer::Up(o) => Some(o.clone()),
                Peer::Waiting { .. } => None,
            })
            .collect();
        self.map.clear();
        outboxes
    }
}

//! Remote nodes as the kernel sees them: up (a live connection) or not up
//! (messages wait in order until a connection to that node id exists,
//! however it comes up).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::error::SendError;
use crate::transport::link::Link;

enum Peer {
    /// A connection completed its handshake; frames go to it.
    Up(Link),
    /// No connection yet: frames wait here, in order.
    Waiting {
        queue: VecDeque<Bytes>,
        bytes: usize,
    },
}

/// The node table.
pub(crate) struct Peers {
    map: DashMap<Arc<str>, Peer>,
    /// Most bytes that may wait for one node that is not up.
    max_waiting: usize,
}

impl Peers {
    pub(crate) fn new(max_waiting: usize) -> Peers {
        Peers {
            map: DashMap::new(),
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

    /// The live connection to `node`, if any.
    pub(crate) fn link(&self, node: &str) -> Option<Link> {
        match self.map.get(node).as_deref() {
            Some(Peer::Up(link)) => Some(link.clone()),
            _ => None,
        }
    }

    /// Sends a JSON frame to `node`: over its connection if it is up, else
    /// into its waiting queue.
    pub(crate) fn send(&self, node: &str, frame: Bytes) -> Result<(), SendError> {
        // fast path: a read guard while handing the frame over keeps the
        // order with respect to attach/detach
        if let Some(peer) = self.map.get(node)
            && let Peer::Up(link) = &*peer
        {
            return link.send(frame).map_err(|_| SendError::ConnectionClosed {
                node: node.to_owned(),
            });
        }
        match self.map.entry(Arc::from(node)) {
            Entry::Occupied(mut e) => match e.get_mut() {
                Peer::Up(link) => link.send(frame).map_err(|_| SendError::ConnectionClosed {
                    node: node.to_owned(),
                }),
                Peer::Waiting { queue, bytes } => {
                    if *bytes + frame.len() > self.max_waiting {
                        return Err(SendError::QueueFull {
                            node: node.to_owned(),
                            limit: self.max_waiting,
                        });
                    }
                    *bytes += frame.len();
                    queue.push_back(frame);
                    Ok(())
                }
            },
            Entry::Vacant(v) => {
                if frame.len() > self.max_waiting {
                    return Err(SendError::QueueFull {
                        node: node.to_owned(),
                        limit: self.max_waiting,
                    });
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

    /// Marks `node` up with `link`. The frames waiting for it are handed to
    /// `flush`, in order, before any later `send` can reach the link.
    /// Fails if the node already has a live connection.
    pub(crate) fn attach(
        &self,
        node: Arc<str>,
        link: Link,
        flush: impl FnOnce(VecDeque<Bytes>),
    ) -> Result<(), Link> {
        match self.map.entry(node) {
            Entry::Occupied(mut e) => match e.get_mut() {
                Peer::Up(_) => Err(link),
                Peer::Waiting { queue, .. } => {
                    flush(std::mem::take(queue));
                    e.insert(Peer::Up(link));
                    Ok(())
                }
            },
            Entry::Vacant(v) => {
                v.insert(Peer::Up(link));
                Ok(())
            }
        }
    }

    /// Forgets the connection `conn_id` of `node`, if it is the live one.
    pub(crate) fn detach(&self, node: &str, conn_id: u64) -> bool {
        self.map
            .remove_if(
                node,
                |_, p| matches!(p, Peer::Up(l) if l.conn_id == conn_id),
            )
            .is_some()
    }

    /// Removes every entry, returning the live links.
    pub(crate) fn drain_links(&self) -> Vec<Link> {
        let links = self
            .map
            .iter()
            .filter_map(|e| match e.value() {
                Peer::Up(l) => Some(l.clone()),
                Peer::Waiting { .. } => None,
            })
            .collect();
        self.map.clear();
        links
    }
}

//! Per-peer budgets of the state an authenticated peer can create here
//! (issue 13): how many of something each peer holds ([`PeerCounts`]),
//! and the refusal when one is spent — counted every time
//! ([`crate::Node::limit_hits`]), logged at most once per peer and limit
//! per [`WARN_INTERVAL`](crate::transport::log_throttle::WARN_INTERVAL) (a peer flooding requests over its cap must not
//! flood the log too).
//!
//! The reference has no such limits: each is a documented deviation
//! (README, "Limits and failure behaviour").

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde_json::Value;

use super::node::{Node, NodeInner};
use crate::Limit;

/// The tag of the reason a peer's monitor gets when a limit refused what
/// it asked for: `["limit_exceeded", <limit name>, <text>]`.
pub const LIMIT_EXCEEDED: &str = "limit_exceeded";

/// `["limit_exceeded", limit, text]`.
pub(crate) fn limit_reason(limit: Limit, text: String) -> Vec<Value> {
    vec![
        Value::from(LIMIT_EXCEEDED),
        Value::from(limit.name()),
        Value::from(text),
    ]
}

/// How many of one kind of thing each peer holds. A peer with none has no
/// entry, so the table only holds peers with state.
#[derive(Default)]
pub(crate) struct PeerCounts {
    counts: DashMap<Arc<str>, usize, ahash::RandomState>,
}

impl PeerCounts {
    /// Takes one unit of `peer`'s budget of `cap`; the peer's shared name
    /// (to remember who holds the unit) if there was room, `None` if not.
    pub(crate) fn try_take(&self, peer: &str, cap: usize) -> Option<Arc<str>> {
        if let Some(mut n) = self.counts.get_mut(peer) {
            if *n >= cap {
                return None;
            }
            *n += 1;
            return Some(n.key().clone());
        }
        if cap == 0 {
            return None;
        }
        let mut n = self.counts.entry(Arc::from(peer)).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(n.key().clone())
    }

    /// Gives one unit back to `peer`.
    pub(crate) fn give_back(&self, peer: &str) {
        if let Some(mut n) = self.counts.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
        self.counts.remove_if(peer, |_, n| *n == 0);
    }

    /// How many units `peer` holds.
    pub(crate) fn get(&self, peer: &str) -> usize {
        self.counts.get(peer).map_or(0, |n| *n)
    }
}

/// How many refused spawn names are remembered per peer.
const REFUSED_SPAWNS_KEPT: usize = 64;

/// The longest refused spawn name that is remembered.
const REFUSED_NAME_MAX: usize = 256;

/// The names of the last `_spawn`s refused by the spawned-ports limit,
/// per peer (a bounded ring each), so that the `mon1` a spawner sends
/// right after its `_spawn` is answered with why there is no port rather
/// than a bare `no_such_port`. Forgotten when the peer goes down.
#[derive(Default)]
pub(crate) struct RefusedSpawns {
    by_peer: parking_lot::Mutex<std::collections::HashMap<Arc<str>, VecDeque<Box<str>>>>,
}

impl RefusedSpawns {
    /// Remembers that `peer`'s `_spawn` of `name` was refused.
    fn add(&self, peer: &str, name: &str) {
        if name.len() > REFUSED_NAME_MAX {
            return;
        }
        let mut map = self.by_peer.lock();
        let ring = match map.get_mut(peer) {
            Some(ring) => ring,
            None => map.entry(Arc::from(peer)).or_default(),
        };
        if ring.len() >= REFUSED_SPAWNS_KEPT {
            ring.pop_front();
        }
        ring.push_back(name.into());
    }

    /// Takes `name` out if `peer`'s `_spawn` of it was refused.
    fn take(&self, peer: &str, name: &str) -> bool {
        let mut map = self.by_peer.lock();
        let Some(ring) = map.get_mut(peer) else {
            return false;
        };
        let Some(i) = ring.iter().position(|n| &**n == name) else {
            return false;
        };
        ring.remove(i);
        if ring.is_empty() {
            map.remove(peer);
        }
        true
    }

    fn forget(&self, peer: &str) {
        self.by_peer.lock().remove(peer);
    }
}

/// How often the nodes a peer's relays wait for are checked, at most,
/// for ones that came up or gave up (only when its budget is spent).
const RELAY_PRUNE_INTERVAL: Duration = Duration::from_millis(250);

/// What one peer's relays wait for: the nodes (not up) that a relayed
/// message of it was queued for, with the bytes charged to each.
#[derive(Default)]
struct PeerRelays {
    nodes: std::collections::HashMap<Arc<str>, usize, ahash::RandomState>,
    bytes: usize,
    pruned: Option<Instant>,
}

/// The relays each peer has waiting for nodes that are not up (node-port
/// `snd`, replies naming such a node): at most
/// [`crate::NodeConfig::peer_max_relay_nodes`] nodes and
/// [`crate::NodeConfig::max_send_queue`] bytes per peer. Without it a
/// peer naming made-up nodes would have us keep a queue and a connector
/// for each. A node is released once it is no longer waiting (up, or its
/// attempt gave up), found when the budget is spent; forgotten when the
/// peer goes down.
#[derive(Default)]
pub(crate) struct RelayBudget {
    by_peer: parking_lot::Mutex<std::collections::HashMap<Arc<str>, PeerRelays>>,
}

impl RelayBudget {
    /// Charges `bytes` for a relay of `peer` to `node` within `max_nodes`
    /// nodes and `max_bytes` bytes; `waiting(node)` tells whether a node
    /// charged earlier still waits. False: over the budget.
    fn charge(
        &self,
        peer: &str,
        node: &str,
        bytes: usize,
        (max_nodes, max_bytes): (usize, usize),
        waiting: impl Fn(&str) -> bool,
    ) -> bool {
        let mut map = self.by_peer.lock();
        let relays = match map.get_mut(peer) {
            Some(r) => r,
            None => map.entry(Arc::from(peer)).or_default(),
        };
        let fits = |r: &PeerRelays| {
            r.bytes.saturating_add(bytes) <= max_bytes
                && (r.nodes.contains_key(node) || r.nodes.len() < max_nodes)
        };
        if !fits(relays)
            && relays
                .pruned
                .is_none_or(|at| at.elapsed() >= RELAY_PRUNE_INTERVAL)
        {
            let mut freed = 0;
            relays.nodes.retain(|n, b| {
                let keep = waiting(n);
                if !keep {
                    freed += *b;
                }
                keep
            });
            relays.bytes -= freed;
            relays.pruned = Some(Instant::now());
        }
        if !fits(relays) {
            return false;
        }
        relays.bytes += bytes;
        match relays.nodes.get_mut(node) {
            Some(b) => *b += bytes,
            None => {
                relays.nodes.insert(Arc::from(node), bytes);
            }
        }
        true
    }

    /// How many nodes `peer`'s relays wait for.
    fn nodes_of(&self, peer: &str, waiting: impl Fn(&str) -> bool) -> usize {
        self.by_peer
            .lock()
            .get(peer)
            .map_or(0, |r| r.nodes.keys().filter(|n| waiting(n)).count())
    }

    fn forget(&self, peer: &str) {
        self.by_peer.lock().remove(peer);
    }
}

impl NodeInner {
    /// `limit` (whose value is `cap`) refused something `peer` asked for:
    /// counted, and logged (`what` says what was refused) unless a
    /// refusal by the same limit for the same peer was logged less than
    /// [`WARN_INTERVAL`](crate::transport::log_throttle::WARN_INTERVAL) ago.
    pub(crate) fn limit_refused(&self, peer: &str, limit: Limit, cap: usize, what: &str) {
        self.handle().count_limit_hit(peer, limit);
        // (`hits` says how many were refused in all)
        if self
            .transport
            .log_throttle()
            .due(peer, limit.name())
            .is_some()
        {
            let hits = self.handle().limit_hit_count(peer, limit);
            tracing::warn!(
                node = %self.id,
                remote = peer,
                limit = limit.name(),
                cap,
                hits,
                "{what} refused: the peer is at its limit (further refusals of this peer by this limit are logged at most once a minute)"
            );
        }
    }

    /// `peer` went down: its refusals are logged afresh next time, and
    /// its refused spawns and its relays' budget are forgotten.
    pub(crate) fn forget_limit_log(&self, peer: &str) {
        self.transport.log_throttle().forget(peer);
        self.ports.refused_spawns().forget(peer);
        self.ports.relay_budget().forget(peer);
    }

    /// Whether a message of `bytes` (its JSON frame) that `peer` has us
    /// relay to a port of `node` may be queued: always when `node` is up
    /// (its connection's queue then decides), is this node or the peer
    /// itself, else within the peer's [`RelayBudget`]. A refusal is
    /// counted and logged as [`Limit::RelayQueue`].
    pub(crate) fn relay_allowed(&self, peer: &str, node: &str, bytes: usize) -> bool {
        let peers = self.remote.peers();
        if node == &*self.id || node == peer || peers.is_up(node) {
            return true;
        }
        let caps = (self.config.peer_max_relay_nodes, self.config.max_send_queue);
        let charged = self.ports.relay_budget().charge(
            peer,
            node,
            bytes.saturating_add(node.len()),
            caps,
            |n| peers.is_waiting(n),
        );
        if !charged {
            let what = format!("a relayed message to node {node}, which is not up,");
            self.limit_refused(peer, Limit::RelayQueue, caps.0, &what);
        }
        charged
    }

    /// Remembers that `peer`'s `_spawn` of `name` was refused by the
    /// spawned-ports limit (see [`RefusedSpawns`]).
    pub(crate) fn spawn_refused(&self, peer: &str, name: &str) {
        self.ports.refused_spawns().add(peer, name);
    }

    /// The reason for a `mon1` of `peer` for our port `name`, which does
    /// not exist: why, if its `_spawn` was refused by the limit.
    pub(crate) fn refused_spawn_reason(&self, peer: &str, name: &str) -> Option<Vec<Value>> {
        self.ports.refused_spawns().take(peer, name).then(|| {
            let cap = self.config.peer_max_spawned_ports;
            let text = format!(
                "node {peer} had {cap} live spawned ports on node {}, its limit (peer_max_spawned_ports); port {name} not created",
                self.id
            );
            limit_reason(Limit::SpawnedPorts, text)
        })
    }
}

impl Node {
    /// See [`NodeInner::limit_refused`]; for the services above the kernel
    /// (Global, data connections).
    pub(crate) fn limit_refused(&self, peer: &str, limit: Limit, cap: usize, what: &str) {
        self.inner().limit_refused(peer, limit, cap, what);
    }

    /// The throttle of warnings a peer can cause, for the services above
    /// the kernel (see `crate::transport::log_throttle::peer_warn`).
    pub(crate) fn log_throttle(&self) -> &crate::transport::log_throttle::LogThrottle {
        self.inner().transport.log_throttle()
    }

    /// See [`NodeInner::decodable`]; for the services above the kernel.
    pub(crate) fn decodable(&self, peer: &str, packet: &crate::Packet, what: &str) -> bool {
        self.inner().decodable(peer, packet, what)
    }

    /// How much of its budget of `limit` peer `peer` holds on this node,
    /// for the budgets the kernel keeps: [`Limit::SpawnedPorts`] (live
    /// ports it spawned here), [`Limit::RemoteMonitors`] (its `mon1`
    /// registrations) and [`Limit::RelayQueue`] (nodes its relays wait
    /// for); `None` for other limits (Global's registrations:
    /// [`Node::peer_usage`](crate::Node::peer_usage)).
    pub(crate) fn kernel_usage(&self, peer: &str, limit: Limit) -> Option<usize> {
        let inner = self.inner();
        match limit {
            Limit::SpawnedPorts => Some(inner.ports.registry().spawned_by(peer)),
            Limit::RemoteMonitors => Some(inner.remote.monitors().rmon_count(peer)),
            Limit::RelayQueue => {
                let peers = inner.remote.peers();
                Some(
                    inner
                        .ports
                        .relay_budget()
                        .nodes_of(peer, |n| peers.is_waiting(n)),
                )
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_and_give_back() {
        let c = PeerCounts::default();
        assert!(c.try_take("a", 0).is_none());
        assert_eq!(&*c.try_take("a", 2).unwrap(), "a");
        assert!(c.try_take("a", 2).is_some());
        assert!(c.try_take("a", 2).is_none());
        assert!(c.try_take("b", 2).is_some());
        assert_eq!((c.get("a"), c.get("b")), (2, 1));
        c.give_back("a");
        assert!(c.try_take("a", 2).is_some());
        c.give_back("a");
        c.give_back("a");
        c.give_back("a"); // more than taken: stays at zero
        assert_eq!(c.get("a"), 0);
        assert!(c.counts.get("a").is_none(), "no entry for a peer with none");
    }

    #[test]
    fn refused_spawns_are_remembered_boundedly() {
        let r = RefusedSpawns::default();
        for i in 0..REFUSED_SPAWNS_KEPT + 1 {
            r.add("a", &format!("p{i}"));
        }
        r.add("a", &"x".repeat(REFUSED_NAME_MAX + 1));
        assert!(!r.take("a", "p0"), "the oldest went");
        assert!(r.take("a", "p1"));
        assert!(!r.take("a", "p1"), "taken once");
        assert!(!r.take("b", "p2"));
        r.forget("a");
        assert!(!r.take("a", "p2"));
    }
}

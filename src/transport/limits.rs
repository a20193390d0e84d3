//! Counts of limits hit, per peer: every time a limit refuses something
//! (a handshake over the pending cap, a full send queue, a peer's spawned
//! ports over their cap, …) the refusing code calls [`LimitHits::hit`]
//! with the peer it refused and which limit it was. The counts are read
//! with [`crate::Node::limit_hits`] (a later issue exposes them as
//! metrics).
//!
//! A peer is named by its node id once it has one, and by
//! `addr:<ip>` before (a handshake not yet authenticated).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Limit {
    /// Handshakes pending on one listener, or from one source address.
    PendingHandshakes,
    /// A packet larger than the framing's maximum.
    PacketSize,
    /// A connection's send queue, in bytes.
    SendQueue,
    /// The queue of a node that is still connecting.
    ConnectingQueue,
    /// Ports a peer spawned on this node.
    SpawnedPorts,
    /// A peer's `mon1` registrations.
    RemoteMonitors,
    /// A peer's Global group registrations.
    GroupRegistrations,
    /// The addresses a peer told Global.
    GroupAddresses,
    /// The nodes a peer's Global `nodes` messages have us try to reach.
    IntroducedNodes,
    /// A peer's pending data-connection expectations.
    DataconnExpectations,
    /// A peer answered no heartbeat in time.
    PeerTimeout,
    /// Messages a peer had us relay (node-port `snd`, replies to `time`,
    /// `info`, …) to nodes that are not up: how many such nodes, and the
    /// bytes queued for them.
    RelayQueue,
}

impl Limit {
    /// Every limit, in declaration order.
    pub const ALL: [Limit; 12] = [
        Limit::PendingHandshakes,
        Limit::PacketSize,
        Limit::SendQueue,
        Limit::ConnectingQueue,
        Limit::SpawnedPorts,
        Limit::RemoteMonitors,
        Limit::GroupRegistrations,
        Limit::GroupAddresses,
        Limit::IntroducedNodes,
        Limit::DataconnExpectations,
        Limit::PeerTimeout,
        Limit::RelayQueue,
    ];

    /// The limit's name in logs and counters (snake case).
    pub fn name(self) -> &'static str {
        match self {
            Limit::PendingHandshakes => "pending_handshakes",
            Limit::PacketSize => "packet_size",
            Limit::SendQueue => "send_queue",
            Limit::ConnectingQueue => "connecting_queue",
            Limit::SpawnedPorts => "spawned_ports",
            Limit::RemoteMonitors => "remote_monitors",
            Limit::GroupRegistrations => "group_registrations",
            Limit::GroupAddresses => "group_addresses",
            Limit::IntroducedNodes => "introduced_nodes",
            Limit::DataconnExpectations => "dataconn_expectations",
            Limit::PeerTimeout => "peer_timeout",
            Limit::RelayQueue => "relay_queue",
        }
    }

    fn index(self) -> usize {
        // ALL lists the variants in declaration order
        self as usize
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most peers whose limit hits are counted each in a row of their
/// own (the table is never emptied: the counts are for the node's
/// lifetime); sources beyond it, such as connections from ever new
/// addresses, share the row [`OTHER_PEERS`].
pub(crate) const MAX_COUNTED_PEERS: usize = 65_536;

/// The row of [`crate::Node::limit_hits`] that counts the peers beyond
/// [`MAX_COUNTED_PEERS`] together.
pub(crate) const OTHER_PEERS: &str = "other";

/// Per-peer counts of limits hit (see the module docs).
#[derive(Default)]
pub(crate) struct LimitHits {
    peers: DashMap<Arc<str>, [AtomicU64; Limit::ALL.len()], ahash::RandomState>,
}

impl LimitHits {
    /// Counts one hit of `limit` by `peer` (a node id, or `addr:<ip>`);
    /// once [`MAX_COUNTED_PEERS`] peers have a row, the hits of further
    /// ones are counted under [`OTHER_PEERS`].
    pub(crate) fn hit(&self, peer: &str, limit: Limit) {
        if let Some(counts) = self.peers.get(peer) {
            counts[limit.index()].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let peer = if self.peers.len() >= MAX_COUNTED_PEERS {
            OTHER_PEERS
        } else {
            peer
        };
        self.peers.entry(Arc::from(peer)).or_default()[limit.index()]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// How often `peer` hit `limit`.
    pub(crate) fn count(&self, peer: &str, limit: Limit) -> u64 {
        self.peers
            .get(peer)
            .map_or(0, |c| c[limit.index()].load(Ordering::Relaxed))
    }

    /// Every non-zero count, sorted by peer, then limit.
    pub(crate) fn snapshot(&self) -> Vec<(String, Limit, u64)> {
        let mut all: Vec<_> = self
            .peers
            .iter()
            .flat_map(|e| {
                let peer = e.key().to_string();
                Limit::ALL
                    .iter()
                    .map(|&l| {
                        (
                            peer.clone(),
                            l,
                            e.value()[l.index()].load(Ordering::Relaxed),
                        )
                    })
                    .filter(|(_, _, n)| *n > 0)
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_peer_and_limit() {
        let hits = LimitHits::default();
        assert_eq!(hits.count("a", Limit::SendQueue), 0);
        hits.hit("a", Limit::SendQueue);
        hits.hit("a", Limit::SendQueue);
        hits.hit("addr:127.0.0.1", Limit::PendingHandshakes);
        hits.hit("a", Limit::PeerTimeout);
        assert_eq!(hits.count("a", Limit::SendQueue), 2);
        assert_eq!(hits.count("a", Limit::SpawnedPorts), 0);
        assert_eq!(
            hits.snapshot(),
            vec![
                ("a".to_owned(), Limit::SendQueue, 2),
                ("a".to_owned(), Limit::PeerTimeout, 1),
                ("addr:127.0.0.1".to_owned(), Limit::PendingHandshakes, 1),
            ]
        );
        // the table is bounded: later peers share one row
        let hits = LimitHits::default();
        for i in 0..MAX_COUNTED_PEERS + 10 {
            hits.hit(
                &format!("addr:10.0.{}.{}", i / 256, i % 256),
                Limit::PendingHandshakes,
            );
        }
        assert_eq!(hits.peers.len(), MAX_COUNTED_PEERS + 1);
        assert_eq!(hits.count(OTHER_PEERS, Limit::PendingHandshakes), 10);
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(l.index(), i, "{l}");
        }
    }
}

//! Other nodes as one part: the peer table (live connections, queues and
//! handshake slots), their known listen addresses, the monitors of their
//! ports, and what their greetings said.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

use super::monitors::Monitors;
use super::peers::Peers;
use crate::wire::AuthMethod;

/// The most addresses Global may teach us of one node (newest first; the
/// oldest go). A node has a few listeners; a peer repeating `nodes`
/// messages with fresh addresses for a node that stays up must not grow
/// the list, nor the connectors' work on it, without bound.
pub(crate) const MAX_LEARNED_ADDRESSES: usize = 1024;

/// Remote nodes.
pub(crate) struct RemoteNodes {
    peers: Peers,
    monitors: Monitors,
    /// Known listen addresses of other nodes.
    addresses: DashMap<Arc<str>, AddressBook, ahash::RandomState>,
    /// Bumped when addresses are learned (connectors waiting for some).
    address_changes: watch::Sender<u64>,
    /// What each peer's greeting gave as `provider` (`AE-1.30`, `aemp-…`).
    providers: DashMap<Arc<str>, String, ahash::RandomState>,
    /// How each peer authenticated its last connection.
    auth: DashMap<Arc<str>, PeerAuth, ahash::RandomState>,
    /// The nodes that went down, oldest first, whose provider and auth
    /// records are still kept: at most [`MAX_DOWN_RECORDS`].
    down: parking_lot::Mutex<VecDeque<Arc<str>>>,
}

/// How many nodes that went down keep their provider and auth records
/// ([`crate::Node::provider_of`], [`crate::Node::peer_auth`]): the most
/// recent ones. A peer with the secret connecting under ever new node ids
/// would otherwise grow the tables without end.
pub(crate) const MAX_DOWN_RECORDS: usize = 4096;

/// The listen addresses known for one node.
///
/// The reference keeps no addresses in its kernel: Global's `%addr` is
/// replaced on `addr` (Global.pm 333) and forgotten at node-down (Global.pm
/// 442), the node record goes after a transport failure (Node.pm 83–85),
/// and addresses learned while connecting are tried first (Node.pm 130).
/// aemp's book does the same with what Global taught it (`learned`), and
/// keeps the addresses the program gave ([`crate::Node::add_addresses`])
/// for good.
#[derive(Debug, Default)]
struct AddressBook {
    /// From Global, newest first; forgotten when the node goes down.
    learned: Vec<String>,
    /// Given by the program, in order; kept.
    given: Vec<String>,
}

impl AddressBook {
    fn all(&self) -> Vec<String> {
        let mut all = self.learned.clone();
        for a in &self.given {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        all
    }
}

/// How a peer authenticated the connection we have (or last had) with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuth {
    /// The auth method of its auth line (`hmac_md6_64_256`, or inside TLS
    /// `tls_md6_64_256` / `tls_anon`).
    pub method: AuthMethod,
    /// The subject of the certificate it showed, over TLS.
    pub subject: Option<String>,
}

impl PeerAuth {
    /// Whether the connection is TLS (its auth method is a `tls_*` one).
    pub fn tls(&self) -> bool {
        self.method.requires_tls()
    }
}

impl RemoteNodes {
    /// No other node known yet; `local` is our node id.
    pub(crate) fn new(local: Arc<str>, max_waiting: usize) -> RemoteNodes {
        RemoteNodes {
            peers: Peers::new(local, max_waiting),
            monitors: Monitors::default(),
            addresses: DashMap::with_hasher(ahash::RandomState::new()),
            address_changes: watch::Sender::new(0),
            providers: DashMap::with_hasher(ahash::RandomState::new()),
            auth: DashMap::with_hasher(ahash::RandomState::new()),
            down: parking_lot::Mutex::new(VecDeque::new()),
        }
    }

    /// The peer table.
    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Monitors of remote ports and nodes.
    pub(crate) fn monitors(&self) -> &Monitors {
        &self.monitors
    }

    /// The known listen addresses of `node`: those learned from Global
    /// (newest first), then those the program gave.
    pub(crate) fn addresses_of(&self, node: &str) -> Vec<String> {
        self.addresses
            .get(node)
            .map(|a| a.all())
            .unwrap_or_default()
    }

    fn changed(&self) {
        self.address_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Adds listen addresses of `node` given by the program (kept for
    /// good); wakes connectors if one is new.
    pub(crate) fn add_addresses(&self, node: &str, addrs: impl IntoIterator<Item = String>) {
        let mut added = false;
        {
            let mut known = self.addresses.entry(Arc::from(node)).or_default();
            for a in addrs {
                if !known.given.contains(&a) {
                    known.given.push(a);
                    added = true;
                }
            }
        }
        if added {
            self.changed();
        }
    }

    /// Addresses of `node` that Global passed on (`nodes`): put first, to
    /// be tried before the older ones (Node.pm 130); wakes connectors.
    pub(crate) fn learn_addresses(&self, node: &str, addrs: Vec<String>) {
        if addrs.is_empty() {
            return;
        }
        {
            let mut known = self.addresses.entry(Arc::from(node)).or_default();
            let mut new = std::collections::HashSet::with_capacity(addrs.len());
            let mut learned: Vec<String> = addrs
                .into_iter()
                .filter(|a| new.insert(a.clone()))
                .collect();
            known.learned.retain(|a| !new.contains(a));
            learned.append(&mut known.learned);
            // a node that stays up is told of again and again: the oldest
            // go, not our memory
            learned.truncate(MAX_LEARNED_ADDRESSES);
            known.learned = learned;
        }
        self.changed();
    }

    /// `node` told us its addresses itself (`addr`): they replace what was
    /// learned before (Global.pm 333).
    pub(crate) fn replace_addresses(&self, node: &str, mut addrs: Vec<String>) {
        addrs.truncate(MAX_LEARNED_ADDRESSES);
        {
            let mut known = self.addresses.entry(Arc::from(node)).or_default();
            known.learned = addrs;
        }
        self.drop_empty(node);
        self.changed();
    }

    /// `node` went down (or could not be reached): forget what Global
    /// taught us of it (Global.pm 442, Node.pm 83–85); an `anon/` node,
    /// which nobody can dial, leaves nothing behind (no address, provider
    /// or auth record). The provider and auth records of other nodes stay
    /// for the last [`MAX_DOWN_RECORDS`] nodes that went down.
    pub(crate) fn forget_node(&self, node: &str) {
        if let Some(mut known) = self.addresses.get_mut(node) {
            known.learned.clear();
        }
        self.drop_empty(node);
        if node.starts_with(crate::config::ANON_NODE_ID) {
            self.providers.remove(node);
            self.auth.remove(node);
            return;
        }
        if !self.providers.contains_key(node) && !self.auth.contains_key(node) {
            return;
        }
        let mut down = self.down.lock();
        down.push_back(Arc::from(node));
        while down.len() > MAX_DOWN_RECORDS {
            let Some(old) = down.pop_front() else { break };
            // (one that came up again is queued anew when it goes down)
            if !self.peers.is_up(&old) && !down.contains(&old) {
                self.providers.remove(&old);
                self.auth.remove(&old);
            }
        }
    }

    /// How many nodes have provider or auth records.
    #[cfg(test)]
    fn records(&self) -> usize {
        self.providers.len().max(self.auth.len())
    }

    fn drop_empty(&self, node: &str) {
        self.addresses
            .remove_if(node, |_, b| b.learned.is_empty() && b.given.is_empty());
    }

    /// Bumped whenever addresses are learned.
    pub(crate) fn address_changes(&self) -> watch::Receiver<u64> {
        self.address_changes.subscribe()
    }

    /// What `node`'s greeting gave as `provider`.
    pub(crate) fn provider_of(&self, node: &str) -> Option<String> {
        self.providers.get(node).map(|p| p.clone())
    }

    /// How `node` authenticated.
    pub(crate) fn auth_of(&self, node: &str) -> Option<PeerAuth> {
        self.auth.get(node).map(|a| a.clone())
    }

    /// Records how `node` authenticated.
    pub(crate) fn set_auth(&self, node: Arc<str>, auth: PeerAuth) {
        self.auth.insert(node, auth);
    }

    /// Records `node`'s `provider`.
    pub(crate) fn set_provider(&self, node: Arc<str>, provider: &str) {
        self.providers.insert(node, provider.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_down_nodes_are_bounded() {
        let r = RemoteNodes::new(Arc::from("me"), 1024);
        let auth = PeerAuth {
            method: AuthMethod::HmacMd6_64_256,
            subject: None,
        };
        for i in 0..MAX_DOWN_RECORDS + 100 {
            let id: Arc<str> = Arc::from(format!("n{i}"));
            r.set_provider(id.clone(), "AE-1.30");
            r.set_auth(id.clone(), auth.clone());
            r.forget_node(&id);
        }
        assert_eq!(r.records(), MAX_DOWN_RECORDS);
        assert_eq!(r.provider_of("n0"), None);
        assert_eq!(r.auth_of("n99"), None);
        let last = format!("n{}", MAX_DOWN_RECORDS + 99);
        assert_eq!(r.provider_of(&last).as_deref(), Some("AE-1.30"));
        assert_eq!(r.auth_of(&last), Some(auth.clone()));
        // a node going down again is the newest again
        r.forget_node("n100");
        for i in 0..MAX_DOWN_RECORDS - 1 {
            let id: Arc<str> = Arc::from(format!("m{i}"));
            r.set_provider(id.clone(), "aemp");
            r.forget_node(&id);
        }
        assert_eq!(r.provider_of("n100").as_deref(), Some("AE-1.30"));
        assert_eq!(r.records(), MAX_DOWN_RECORDS);
    }

    #[test]
    fn learned_addresses_are_newest_first_deduplicated_and_bounded() {
        let r = RemoteNodes::new(Arc::from("me"), 1024);
        r.learn_addresses("n", vec!["a:1".into(), "b:1".into(), "a:1".into()]);
        r.learn_addresses("n", vec!["c:1".into(), "b:1".into()]);
        assert_eq!(r.addresses_of("n"), ["c:1", "b:1", "a:1"]);
        // a node that stays up, told of ever new addresses
        for round in 0..4 {
            let fresh = (0..1000).map(|i| format!("10.{round}.{}.{}:1", i / 256, i % 256));
            r.learn_addresses("n", fresh.collect());
        }
        let all = r.addresses_of("n");
        assert_eq!(all.len(), MAX_LEARNED_ADDRESSES);
        assert_eq!(all[0], "10.3.0.0:1", "the newest first");
        r.replace_addresses("n", (0..5000).map(|i| format!("x:{i}")).collect());
        assert_eq!(r.addresses_of("n").len(), MAX_LEARNED_ADDRESSES);
    }
}

//! Other nodes as one part: the peer table (live connections, queues and
//! handshake slots), their known listen addresses, the monitors of their
//! ports, and what their greetings said.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

use super::monitors::Monitors;
use super::peers::Peers;
use crate::wire::AuthMethod;

/// Remote nodes.
pub(crate) struct RemoteNodes {
    peers: Peers,
    monitors: Monitors,
    /// Known listen addresses of other nodes.
    addresses: DashMap<Arc<str>, Vec<String>, ahash::RandomState>,
    /// Bumped when addresses are learned (connectors waiting for some).
    address_changes: watch::Sender<u64>,
    /// What each peer's greeting gave as `provider` (`AE-1.30`, `aemp-…`).
    providers: DashMap<Arc<str>, String, ahash::RandomState>,
    /// How each peer authenticated its last connection.
    auth: DashMap<Arc<str>, PeerAuth, ahash::RandomState>,
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

    /// The known listen addresses of `node`.
    pub(crate) fn addresses_of(&self, node: &str) -> Vec<String> {
        self.addresses
            .get(node)
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Adds listen addresses of `node`; wakes connectors if one is new.
    pub(crate) fn add_addresses(&self, node: &str, addrs: impl IntoIterator<Item = String>) {
        let mut added = false;
        {
            let mut known = self.addresses.entry(Arc::from(node)).or_default();
            for a in addrs {
                if !known.contains(&a) {
                    known.push(a);
                    added = true;
                }
            }
        }
        if added {
            self.address_changes.send_modify(|n| *n = n.wrapping_add(1));
        }
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

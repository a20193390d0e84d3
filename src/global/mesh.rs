//! The mesh: seeds, the master, and passing node addresses around, so that
//! every node ends up connected to every other.
//!
//! * Seeds are dialled by address: all within 0–100 ms of the start, then
//!   one random seed per tick of a timer that re-arms itself forever
//!   (`max(1, connect_interval × known nodes − rand)` s; at once when the
//!   last node went down), skipping seeds with a live or pending
//!   connection and seeds whose node is up. A seed that turns out to be
//!   ourselves is dropped.
//! * The master is a random up seed (a seed beats a non-seed; a new seed
//!   replaces a seed master with probability (n−1)/n; without seeds up, the
//!   last up node by string order). It gets `seedme1` (the old one
//!   `seedme0`), and `find` for every node that goes down.
//! * `addr` is passed on to every node that asked to be seeded after
//!   2–3 s; `nodes` makes us connect to each node listed.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt as _;
use tokio::sync::broadcast;

use super::rebroadcast_delay;
use crate::error::ConnectionError;
use crate::kernel::{NodeEvent, NodeInner};
use crate::wire::{GlobalMsg, HandshakeError};

/// `addr` from `remote`: its listen addresses. Recorded, and passed on to
/// every node that asked to be seeded, after 2–3 s.
pub(crate) fn addr(node: &Arc<NodeInner>, remote: &str, addresses: Vec<String>) {
    tracing::debug!(node = %node.id, remote, ?addresses, "node told us its addresses");
    node.global
        .lock()
        .addr
        .insert(remote.to_owned(), addresses.clone());
    node.handle()
        .add_addresses(remote, addresses.iter().cloned());
    let weak = Arc::downgrade(node);
    let remote = remote.to_owned();
    actix_rt::spawn(async move {
        tokio::time::sleep(rebroadcast_delay()).await;
        let Some(node) = weak.upgrade() else {
            return;
        };
        let slaves: Vec<String> = node.global.lock().seedme.iter().cloned().collect();
        let nodes = GlobalMsg::Nodes(vec![(remote, addresses)]);
        for slave in slaves {
            node.global.to_node(&node, &slave, &nodes);
        }
    });
}

/// `nodes`: connect to each node listed and start Global with it.
pub(crate) fn nodes(node: &Arc<NodeInner>, known: Vec<(String, Vec<String>)>) {
    let handle = node.handle();
    for (id, addresses) in known {
        if id == *node.id || id.is_empty() || id.contains('#') {
            continue;
        }
        handle.add_addresses(&id, addresses);
        handle.connect_node(&id);
        node.global.start_node(node, &id);
    }
}

/// Node ids behind seeds.
fn is_seed(st: &super::State, id: &str) -> bool {
    st.seeds.values().any(|n| n.as_deref() == Some(id))
}

/// Up seed nodes, without duplicates.
fn up_seeds(node: &NodeInner, st: &super::State) -> Vec<String> {
    let mut ups: Vec<String> = st
        .seeds
        .values()
        .flatten()
        .filter(|id| node.peers.is_up(id))
        .cloned()
        .collect();
    ups.sort();
    ups.dedup();
    ups
}

/// A node came up: maybe it becomes the master.
pub(crate) fn master_on_up(node: &Arc<NodeInner>, id: &str) {
    let switch = {
        let st = node.global.lock();
        if !is_seed(&st, id) {
            false
        } else if st.master.as_deref().is_some_and(|m| is_seed(&st, m)) {
            // switching with a lower chance keeps the choice roughly even
            let n = up_seeds(node, &st).len() as f64;
            1.0 < rand::rng().random::<f64>() * n
        } else {
            true // a seed always beats a non-seed
        }
    };
    if switch {
        set_master(node, Some(id.to_owned()));
    }
}

/// Picks a new master if the current one is not up.
pub(crate) fn ensure_master(node: &Arc<NodeInner>) {
    let pick = {
        let st = node.global.lock();
        if st.master.as_deref().is_some_and(|m| node.peers.is_up(m)) {
            return;
        }
        let seeds = up_seeds(node, &st);
        if seeds.is_empty() {
            let mut ups = node.peers.up_nodes();
            ups.sort();
            ups.pop()
        } else {
            Some(seeds[rand::rng().random_range(0..seeds.len())].clone())
        }
    };
    set_master(node, pick);
}

fn set_master(node: &Arc<NodeInner>, new: Option<String>) {
    let old = {
        let mut st = node.global.lock();
        if st.master == new {
            return;
        }
        std::mem::replace(&mut st.master, new.clone())
    };
    if let Some(old) = old.filter(|o| node.peers.is_up(o)) {
        node.global.to_node(node, &old, &GlobalMsg::Seedme0);
    }
    match new {
        Some(m) => {
            tracing::info!(node = %node.id, master = %m, "selected new master");
            node.global.to_node(node, &m, &GlobalMsg::Seedme1);
        }
        None => tracing::warn!(node = %node.id, "no contact to any other node, cannot seed"),
    }
}

/// Starts trying the configured seeds, and keeps doing so for ever.
pub(crate) fn start_seeding(node: &Arc<NodeInner>) {
    let seeds = node.config.seeds.clone();
    if seeds.is_empty() {
        return;
    }
    {
        let mut st = node.global.lock();
        for s in &seeds {
            st.seeds.entry(s.clone()).or_insert(None);
        }
    }
    // every seed within 0–100 ms
    for _ in &seeds {
        let weak = Arc::downgrade(node);
        actix_rt::spawn(async move {
            let wait = Duration::from_millis(rand::rng().random_range(0..100));
            tokio::time::sleep(wait).await;
            if let Some(node) = weak.upgrade() {
                more_seeding(&node);
            }
        });
    }
    // then the self-re-arming timer
    let weak = Arc::downgrade(node);
    let shutdown = node.shutdown.clone();
    actix_rt::spawn(async move {
        loop {
            // a weak handle across the wait, so the timer does not keep a
            // dropped node alive
            let (interval, seed_now) = match weak.upgrade() {
                Some(node) => (seeding_interval(&node), node.global.seed_now.clone()),
                None => return,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = seed_now.notified() => {}
            }
            let Some(node) = weak.upgrade() else {
                return;
            };
            more_seeding(&node);
        }
    });
}

/// `max(1, connect_interval × (known nodes, or 1 if none is up) − rand)`.
fn seeding_interval(node: &NodeInner) -> Duration {
    let up = node.global.lock().nodecnt > 0;
    // the reference counts its node table, which holds itself twice
    let known = if up {
        node.peers.known_nodes().len() + 2
    } else {
        1
    };
    let secs = node.config.connect_interval.as_secs_f64() * known as f64 - rand::random::<f64>();
    Duration::from_secs_f64(secs.max(1.0))
}

/// Dials one seed that is not tried in this round yet.
fn more_seeding(node: &Arc<NodeInner>) {
    let seed = {
        let mut st = node.global.lock();
        if st.rotation.is_empty() {
            st.rotation = st.seeds.keys().cloned().collect();
        }
        if st.rotation.is_empty() {
            return;
        }
        let i = rand::rng().random_range(0..st.rotation.len());
        st.rotation.swap_remove(i)
    };
    seed_connect(node, seed);
}

/// Dials `seed` unless it has a live or pending connection or its node is
/// up. The node id behind it is learned from its greeting.
fn seed_connect(node: &Arc<NodeInner>, seed: String) {
    {
        let mut st = node.global.lock();
        if st.seed_busy.contains(&seed) {
            return;
        }
        if let Some(Some(id)) = st.seeds.get(&seed)
            && node.peers.is_up(id)
        {
            return;
        }
        st.seed_busy.insert(seed.clone());
    }
    tracing::debug!(node = %node.id, %seed, "trying connect to seed node");
    let inner = node.clone();
    actix_rt::spawn(async move {
        let mut events = inner.events.subscribe();
        let result = inner.dial(seed.clone()).await;
        let up = match result {
            Ok(id) => Some(id),
            Err(ConnectionError::Handshake(HandshakeError::TalkingToMyself)) => {
                tracing::info!(node = %inner.id, %seed, "seed is this node itself; dropped");
                let mut st = inner.global.lock();
                st.seeds.remove(&seed);
                st.rotation.retain(|s| *s != seed);
                None
            }
            Err(ConnectionError::Handshake(HandshakeError::AlreadyConnected { node })) => {
                Some(node)
            }
            Err(error) => {
                tracing::debug!(node = %inner.id, %seed, %error, "seed not reached");
                None
            }
        };
        if let Some(id) = up {
            // (for a connection of ours, the connection reported it already)
            inner.global.dialed(&seed, &id);
            // the seed counts as connected while its node is up
            until_down(&inner, &mut events, &id).await;
        }
        inner.global.lock().seed_busy.remove(&seed);
    });
}

/// Waits until `id` is not up (or the node shuts down).
async fn until_down(node: &NodeInner, events: &mut broadcast::Receiver<NodeEvent>, id: &str) {
    loop {
        if !node.peers.is_up(id) || node.shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(NodeEvent::Down { node: n, .. }) if n == id => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

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

use super::{Global, alive, rebroadcast_delay};
use crate::error::ConnectionError;
use crate::kernel::Node;
use crate::wire::{GlobalMsg, HandshakeError};

/// `addr` from `remote`: its listen addresses. Recorded, and passed on to
/// every node that asked to be seeded, after 2–3 s — if they are still
/// `remote`'s then. The reference passes them on regardless (Global.pm
/// 337), also when the node went down meanwhile (its `%addr` entry is
/// deleted, Global.pm 442): its slaves then dial a dead address, also one
/// where the node no longer is after a restart on another port; what
/// replaced them was or will be passed on by its own `addr`.
pub(crate) fn addr(g: &Arc<Global>, node: &Node, remote: &str, addresses: Vec<String>) {
    tracing::debug!(
        node = node.id(),
        remote,
        ?addresses,
        "node told us its addresses"
    );
    g.lock().addr.insert(remote.to_owned(), addresses.clone());
    // replaced, not added to (Global.pm 333)
    node.replace_addresses(remote, addresses.clone());
    let weak = Arc::downgrade(g);
    let remote = remote.to_owned();
    actix_rt::spawn(async move {
        tokio::time::sleep(rebroadcast_delay()).await;
        let Some((g, node)) = alive(&weak) else {
            return;
        };
        let slaves: Vec<String> = {
            let st = g.lock();
            if st.addr.get(&remote) != Some(&addresses) {
                tracing::debug!(
                    node = node.id(),
                    remote,
                    ?addresses,
                    "addresses no longer current; not passed on"
                );
                return;
            }
            st.seedme.iter().cloned().collect()
        };
        let nodes = GlobalMsg::Nodes(vec![(remote, addresses)]);
        for slave in slaves {
            g.to_node(&node, &slave, &nodes);
        }
    });
}

/// `nodes`: connect to each node listed and start Global with it.
///
/// A node we neither are connected to nor have a Global link with is
/// *introduced* by `from`: it takes a unit of `from`'s
/// `peer_max_introduced_nodes` until it comes up or our link to it dies
/// (the connect attempt gave up). Nodes over that budget are skipped —
/// not dialled, their addresses not learned — and the refusal counted
/// once for the message; the link stays, since every Perl node names all
/// the nodes it knows when it links up, and a later `nodes` (or a `find`)
/// names the skipped ones again.
pub(crate) fn nodes(g: &Arc<Global>, node: &Node, from: &str, known: Vec<(String, Vec<String>)>) {
    let cap = node.config().peer_max_introduced_nodes;
    let mut skipped = 0usize;
    for (id, addresses) in known {
        if id == node.id() || id.is_empty() || id.contains('#') {
            continue;
        }
        let new = {
            let st = g.lock();
            !st.port.contains_key(&id) && !st.introduced.contains_key(&id)
        } && !node.node_is_up(&id);
        if new && g.introduced_by(from) >= cap {
            skipped += 1;
            continue;
        }
        // tried first, also by a connector under way (Node.pm 130)
        node.learn_addresses(&id, addresses);
        node.connect_node(&id);
        if g.start_node(node, &id) && new {
            let mut st = g.lock();
            // the link may have died already (a spawn refused at once), or
            // the node come up
            if st.port.contains_key(&id) && !node.node_is_up(&id) {
                st.introduced.insert(id, from.to_owned());
                *st.introduced_per_peer.entry(from.to_owned()).or_default() += 1;
            }
        }
    }
    if skipped > 0 {
        node.limit_refused(
            from,
            crate::Limit::IntroducedNodes,
            cap,
            "a node named in a Global nodes message",
        );
        tracing::debug!(
            node = node.id(),
            remote = from,
            skipped,
            "introduced nodes skipped"
        );
    }
}

/// Node ids behind seeds.
fn is_seed(st: &super::State, id: &str) -> bool {
    st.seeds.values().any(|n| n.as_deref() == Some(id))
}

/// Up seed nodes, without duplicates.
fn up_seeds(node: &Node, st: &super::State) -> Vec<String> {
    let mut ups: Vec<String> = st
        .seeds
        .values()
        .flatten()
        .filter(|id| node.node_is_up(id))
        .cloned()
        .collect();
    ups.sort();
    ups.dedup();
    ups
}

/// A node came up: maybe it becomes the master.
pub(crate) fn master_on_up(g: &Global, node: &Node, id: &str) {
    let switch = {
        let st = g.lock();
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
        set_master(g, node, Some(id.to_owned()));
    }
}

/// Picks a new master if the current one is not up.
pub(crate) fn ensure_master(g: &Global, node: &Node) {
    let pick = {
        let st = g.lock();
        if st.master.as_deref().is_some_and(|m| node.node_is_up(m)) {
            return;
        }
        let seeds = up_seeds(node, &st);
        if seeds.is_empty() {
            let mut ups = node.up_nodes();
            ups.sort();
            ups.pop()
        } else {
            Some(seeds[rand::rng().random_range(0..seeds.len())].clone())
        }
    };
    set_master(g, node, pick);
}

fn set_master(g: &Global, node: &Node, new: Option<String>) {
    let old = {
        let mut st = g.lock();
        if st.master == new {
            return;
        }
        std::mem::replace(&mut st.master, new.clone())
    };
    if let Some(old) = old.filter(|o| node.node_is_up(o)) {
        g.to_node(node, &old, &GlobalMsg::Seedme0);
    }
    match new {
        Some(m) => {
            tracing::info!(node = node.id(), master = %m, "selected new master");
            g.to_node(node, &m, &GlobalMsg::Seedme1);
        }
        None => tracing::warn!(
            node = node.id(),
            "no contact to any other node, cannot seed"
        ),
    }
}

/// Starts trying the configured seeds, and keeps doing so for ever.
pub(crate) fn start_seeding(g: &Arc<Global>, node: &Node) {
    let seeds = node.config().seeds.clone();
    if seeds.is_empty() {
        return;
    }
    {
        let mut st = g.lock();
        for s in &seeds {
            st.seeds.entry(s.clone()).or_insert(None);
        }
    }
    // every seed within 0–100 ms
    for _ in &seeds {
        let weak = Arc::downgrade(g);
        actix_rt::spawn(async move {
            let wait = Duration::from_millis(rand::rng().random_range(0..100));
            tokio::time::sleep(wait).await;
            if let Some((g, node)) = alive(&weak) {
                more_seeding(&g, &node);
            }
        });
    }
    // then the self-re-arming timer
    let weak = Arc::downgrade(g);
    let shutdown = node.shutdown_token().clone();
    actix_rt::spawn(async move {
        loop {
            // weak handles across the wait, so the timer does not keep a
            // dropped node alive
            let Some((g, node)) = alive(&weak) else {
                return;
            };
            let interval = seeding_interval(&g, &node);
            drop(node);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = g.seed_now.notified() => {}
            }
            drop(g);
            let Some((g, node)) = alive(&weak) else {
                return;
            };
            more_seeding(&g, &node);
        }
    });
}

/// `max(1, connect_interval × (known nodes, or 1 if none is up) − rand)`.
fn seeding_interval(g: &Global, node: &Node) -> Duration {
    let up = g.lock().nodecnt > 0;
    // the reference counts its node table, which holds itself twice
    // (`known_nodes` counts it once)
    let known = if up { node.known_nodes().len() + 1 } else { 1 };
    let secs = node.config().connect_interval.as_secs_f64() * known as f64 - rand::random::<f64>();
    Duration::from_secs_f64(secs.max(1.0))
}

/// Dials one seed that is not tried in this round yet.
fn more_seeding(g: &Arc<Global>, node: &Node) {
    let seed = {
        let mut st = g.lock();
        if st.rotation.is_empty() {
            st.rotation = st.seeds.keys().cloned().collect();
        }
        if st.rotation.is_empty() {
            return;
        }
        let i = rand::rng().random_range(0..st.rotation.len());
        st.rotation.swap_remove(i)
    };
    seed_connect(g, node, seed);
}

/// Dials `seed` unless it has a live or pending connection or its node is
/// up. The node id behind it is learned from its greeting.
fn seed_connect(g: &Arc<Global>, node: &Node, seed: String) {
    {
        let mut st = g.lock();
        if st.seed_busy.contains(&seed) {
            return;
        }
        if let Some(Some(id)) = st.seeds.get(&seed)
            && node.node_is_up(id)
        {
            return;
        }
        st.seed_busy.insert(seed.clone());
    }
    tracing::debug!(node = node.id(), %seed, "trying connect to seed node");
    let (g, node) = (g.clone(), node.clone());
    actix_rt::spawn(async move {
        let mut downs = g.downs.subscribe();
        let result = node.connect(seed.clone()).await;
        let up = match result {
            Ok(id) => Some(id),
            Err(ConnectionError::Handshake(HandshakeError::TalkingToMyself)) => {
                tracing::info!(node = node.id(), %seed, "seed is this node itself; dropped");
                let mut st = g.lock();
                st.seeds.remove(&seed);
                st.rotation.retain(|s| *s != seed);
                None
            }
            Err(ConnectionError::Handshake(HandshakeError::AlreadyConnected { node })) => {
                Some(node)
            }
            Err(error) => {
                tracing::debug!(node = node.id(), %seed, %error, "seed not reached");
                None
            }
        };
        if let Some(id) = up {
            // (for a connection of ours, the connection reported it already)
            g.dialed(&seed, &id);
            // the seed counts as connected while its node is up
            let shutdown = node.shutdown_token().clone();
            while node.node_is_up(&id) && !shutdown.is_cancelled() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    changed = downs.changed() => if changed.is_err() { break },
                }
            }
        }
        g.lock().seed_busy.remove(&seed);
    });
}

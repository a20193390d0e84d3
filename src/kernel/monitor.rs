//! Monitors: one-shot actions that run when a port dies, or when the
//! transport to a node fails.
//!
//! Monitors of local ports live in the port's registry entry (so a port's
//! death and its monitors are one atomic step). Monitors of remote ports
//! and of whole nodes live here, per node: the first monitor of a remote
//! port sends `mon1` to its node and the last one removed sends `mon0`
//! (reference counting, as the reference does). The `mon1` registrations
//! other nodes made on our ports are indexed here too, so they can be
//! dropped when that node's connection is lost.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

use super::lock;
use super::node::NodeInner;
use super::port::PortId;
use crate::wire::NodeRequest;

/// Why a port died: empty for a normal exit (`kil $port`), otherwise the
/// reference's reason list, e.g. `["die", "message"]` or
/// `["transport_error", "<node>", "Connection reset by peer"]`.
pub type Reason = Vec<Value>;

/// A monitor callback. The mutex only makes the one-shot callback `Sync`
/// (monitors live in concurrent maps); it is taken out when it fires.
pub(crate) type Callback = Mutex<Box<dyn FnOnce(Reason) + Send>>;

/// What a monitor does when it fires.
pub(crate) enum Action {
    /// Call a function with the reason.
    Callback(Callback),
    /// Kill a port with the same reason, on an error exit only.
    Kill(PortId),
    /// Send `msg` with the reason appended, on any exit.
    Send { port: PortId, msg: Vec<Value> },
    /// Another node monitors this local port (`mon1`): send it `kil0`.
    Remote(Arc<str>),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Callback(_) => f.write_str("Callback"),
            Action::Kill(p) => write!(f, "Kill({p})"),
            Action::Send { port, .. } => write!(f, "Send({port})"),
            Action::Remote(n) => write!(f, "Remote({n})"),
        }
    }
}

impl Action {
    /// Runs the action for the death of `port` with `reason`.
    pub(crate) fn fire(self, node: &NodeInner, port: &PortId, reason: &Reason) {
        match self {
            Action::Callback(cb) => {
                let cb = cb.into_inner().unwrap_or_else(|e| e.into_inner());
                let reason = reason.clone();
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(reason))).is_err() {
                    tracing::warn!(node = %node.id, %port, "a monitor callback panicked");
                }
            }
            Action::Kill(other) => {
                if !reason.is_empty()
                    && let Err(error) = node.kil(other.as_str(), reason.clone())
                {
                    tracing::warn!(node = %node.id, %other, %error, "linked port not killed");
                }
            }
            Action::Send { port: to, mut msg } => {
                msg.extend(reason.iter().cloned());
                if let Err(error) = node.snd(to.as_str(), &msg) {
                    tracing::warn!(node = %node.id, %to, %error, "monitor message not sent");
                }
            }
            Action::Remote(remote) => {
                node.monitors.rmon_remove(&remote, port.name());
                // like the reference: only over a live connection
                if node.peers.is_up(&remote) {
                    let msg = NodeRequest::Kil0 {
                        port: port.name().to_owned(),
                        reason: reason.clone(),
                    };
                    let _ = node.snd_to_node_port(&remote, &msg.into_values());
                }
            }
        }
    }
}

/// Monitors of one remote node: of its ports, and of the node itself.
#[derive(Default)]
struct NodeMonitors {
    ports: HashMap<String, Vec<(u64, Action)>>,
    node: Vec<(u64, Action)>,
}

impl NodeMonitors {
    fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.node.is_empty()
    }
}

/// Monitors of remote ports and nodes, and the `mon1` index.
#[derive(Default)]
pub(crate) struct Monitors {
    next_id: AtomicU64,
    remote: Mutex<HashMap<Arc<str>, NodeMonitors>>,
    /// Local port names each remote node monitors (`mon1`).
    rmon: Mutex<HashMap<Arc<str>, HashSet<String>>>,
}

impl Monitors {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a monitor of remote port `node#port`; true if it is the first
    /// (then `mon1` must be sent).
    pub(crate) fn add_port(&self, node: &str, port: &str, id: u64, action: Action) -> bool {
        let mut remote = lock(&self.remote);
        let list = remote
            .entry(Arc::from(node))
            .or_default()
            .ports
            .entry(port.to_owned())
            .or_default();
        list.push((id, action));
        list.len() == 1
    }

    /// Removes a monitor of a remote port; true if it was the last one
    /// (then `mon0` must be sent). False if it was not there (fired).
    pub(crate) fn remove_port(&self, node: &str, port: &str, id: u64) -> bool {
        let mut remote = lock(&self.remote);
        let Some(nm) = remote.get_mut(node) else {
            return false;
        };
        let Some(list) = nm.ports.get_mut(port) else {
            return false;
        };
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        let last = before > list.len() && list.is_empty();
        if list.is_empty() {
            nm.ports.remove(port);
        }
        if nm.is_empty() {
            remote.remove(node);
        }
        last
    }

    /// Adds a monitor of node `node` as a whole.
    pub(crate) fn add_node(&self, node: &str, id: u64, action: Action) {
        lock(&self.remote)
            .entry(Arc::from(node))
            .or_default()
            .node
            .push((id, action));
    }

    /// Removes a monitor of a whole node.
    pub(crate) fn remove_node(&self, node: &str, id: u64) {
        let mut remote = lock(&self.remote);
        if let Some(nm) = remote.get_mut(node) {
            nm.node.retain(|(i, _)| *i != id);
            if nm.is_empty() {
                remote.remove(node);
            }
        }
    }

    /// `kil0` from `node`: takes every monitor of `node#port`.
    pub(crate) fn take_port(&self, node: &str, port: &str) -> Vec<Action> {
        let mut remote = lock(&self.remote);
        let Some(nm) = remote.get_mut(node) else {
            return Vec::new();
        };
        let taken = nm.ports.remove(port).unwrap_or_default();
        if nm.is_empty() {
            remote.remove(node);
        }
        taken.into_iter().map(|(_, a)| a).collect()
    }

    /// The transport to `node` failed: takes every monitor of its ports and
    /// of the node itself, with the port each one watched.
    pub(crate) fn take_node(&self, node: &str) -> Vec<(String, Action)> {
        let Some(nm) = lock(&self.remote).remove(node) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Action)> = Vec::new();
        for (port, list) in nm.ports {
            out.extend(list.into_iter().map(|(_, a)| (port.clone(), a)));
        }
        out.extend(nm.node.into_iter().map(|(_, a)| (String::new(), a)));
        out
    }

    /// Records that `node` monitors local port `port`.
    pub(crate) fn rmon_add(&self, node: &str, port: &str) {
        lock(&self.rmon)
            .entry(Arc::from(node))
            .or_default()
            .insert(port.to_owned());
    }

    /// Forgets that `node` monitors `port`.
    pub(crate) fn rmon_remove(&self, node: &str, port: &str) {
        let mut rmon = lock(&self.rmon);
        if let Some(set) = rmon.get_mut(node) {
            set.remove(port);
            if set.is_empty() {
                rmon.remove(node);
            }
        }
    }

    /// `node`'s connection is gone: the local ports it monitored.
    pub(crate) fn rmon_take(&self, node: &str) -> HashSet<String> {
        lock(&self.rmon).remove(node).unwrap_or_default()
    }

    /// Number of monitors of remote ports and nodes (for tests and stats).
    pub(crate) fn remote_count(&self) -> usize {
        lock(&self.remote)
            .values()
            .map(|nm| nm.node.len() + nm.ports.values().map(Vec::len).sum::<usize>())
            .sum()
    }
}

/// What a [`Monitor`] watches.
#[derive(Debug, Clone)]
pub(crate) enum Watched {
    /// A port of this node.
    Local(String),
    /// A port of another node.
    Remote(Arc<str>, String),
    /// Another node as a whole.
    Node(Arc<str>),
}

/// A monitor set up with [`Node::mon`](crate::Node::mon) and friends.
///
/// Monitors are one-shot. Dropping this handle leaves the monitor in
/// place; [`Monitor::unmon`] removes it, and [`Monitor::guard`] turns it
/// into a guard that removes it when dropped.
#[derive(Debug)]
#[must_use = "a Monitor does nothing when dropped; call unmon() or guard() to manage it"]
pub struct Monitor {
    node: Weak<NodeInner>,
    watched: Watched,
    id: u64,
}

impl Monitor {
    pub(crate) fn new(node: Weak<NodeInner>, watched: Watched, id: u64) -> Monitor {
        Monitor { node, watched, id }
    }

    /// The monitored port (or node) id.
    pub fn target(&self) -> String {
        match &self.watched {
            Watched::Local(name) => match self.node.upgrade() {
                Some(n) => format!("{}#{name}", n.id),
                None => format!("#{name}"),
            },
            Watched::Remote(node, port) => format!("{node}#{port}"),
            Watched::Node(node) => node.to_string(),
        }
    }

    /// Removes the monitor (sending `mon0` if it was the last monitor of a
    /// remote port). Nothing happens if it fired already.
    pub fn unmon(self) {
        if let Some(node) = self.node.upgrade() {
            node.unmon(&self.watched, self.id);
        }
    }

    /// A guard that removes the monitor when dropped.
    pub fn guard(self) -> MonitorGuard {
        MonitorGuard(Some(self))
    }

    /// Leaves the monitor in place for good (until it fires).
    pub fn forget(self) {}
}

/// Removes its monitor when dropped; see [`Monitor::guard`].
#[derive(Debug)]
pub struct MonitorGuard(Option<Monitor>);

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            m.unmon();
        }
    }
}

impl NodeInner {
    /// Sets up a monitor of `port` (local, remote, or a bare node id).
    pub(crate) fn mon_action(&self, port: &str, action: Action) -> Monitor {
        let (node, name) = super::port::split_port(port);
        let id = self.monitors.next_id();
        let watched = if node == &*self.id && !name.is_empty() {
            if let Err(action) = self.registry.add_monitor(name, id, action) {
                // the reference calls the action at once
                let port = PortId::new(node, name);
                action.fire(self, &port, &super::node_port::no_such_port(port.as_str()));
            }
            Watched::Local(name.to_owned())
        } else if name.is_empty() {
            // a whole node: nothing is sent, no connection is started
            self.monitors.add_node(node, id, action);
            Watched::Node(Arc::from(node))
        } else {
            if self.monitors.add_port(node, name, id, action) {
                let msg = NodeRequest::Mon1 {
                    port: name.to_owned(),
                };
                if let Err(error) = self.snd_to_node_port(node, &msg.into_values()) {
                    tracing::warn!(node = %self.id, remote = node, %error, "mon1 not sent");
                }
            }
            Watched::Remote(Arc::from(node), name.to_owned())
        };
        Monitor::new(self.weak(), watched, id)
    }

    /// Removes a monitor; the last one of a remote port sends `mon0`.
    pub(crate) fn unmon(&self, watched: &Watched, id: u64) {
        match watched {
            Watched::Local(name) => self.registry.remove_monitor(name, id),
            Watched::Remote(node, port) => {
                if self.monitors.remove_port(node, port, id) {
                    let msg = NodeRequest::Mon0 { port: port.clone() };
                    if let Err(error) = self.snd_to_node_port(node, &msg.into_values()) {
                        tracing::debug!(node = %self.id, remote = %node, %error, "mon0 not sent");
                    }
                }
            }
            Watched::Node(node) => self.monitors.remove_node(node, id),
        }
    }

    /// `mon1` from `from`: monitor our port `port` for it, or answer at
    /// once with `kil0 no_such_port`.
    pub(crate) fn remote_mon1(&self, from: &str, port: &str) {
        let id = self.monitors.next_id();
        let node: Arc<str> = Arc::from(from);
        if self.registry.add_remote_monitor(port, id, &node) {
            self.monitors.rmon_add(from, port);
        } else {
            let msg = NodeRequest::Kil0 {
                port: port.to_owned(),
                reason: super::node_port::no_such_port(PortId::new(&self.id, port).as_str()),
            };
            if let Err(error) = self.snd_to_node_port(from, &msg.into_values()) {
                tracing::debug!(node = %self.id, remote = from, %error, "kil0 not sent");
            }
        }
    }

    /// `mon0` from `from`: stop monitoring `port` for it.
    pub(crate) fn remote_mon0(&self, from: &str, port: &str) {
        self.registry.remove_remote_monitor(port, from);
        self.monitors.rmon_remove(from, port);
    }

    /// `kil0` from `from`: its port `port`, which we monitor, died.
    pub(crate) fn remote_kil0(&self, from: &str, port: &str, reason: Reason) {
        let id = PortId::new(from, port);
        for action in self.monitors.take_port(from, port) {
            action.fire(self, &id, &reason);
        }
    }
}

impl crate::Node {
    /// Calls `callback` with the reason when `port` dies (empty for a
    /// normal exit), when its node's transport fails
    /// (`["transport_error", node, text]`), or at once if a local `port`
    /// does not exist (`["no_such_port", "cannot monitor nonexistent
    /// port", port]`); a remote node answers the same for its missing
    /// ports. `port` may also be a bare node id: then the monitor fires on
    /// any transport failure of that node, and nothing is sent.
    ///
    /// The callback runs on whichever thread notices the death; it must
    /// not block.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let port = node.port_fn(|_, _| Err("boom".into()));
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// node.mon(&port, move |reason| { let _ = tx.send(reason); }).forget();
    /// node.snd(&port, &("anything",)).unwrap();
    /// assert_eq!(rx.await.unwrap(), vec![serde_json::json!("die"), serde_json::json!("boom")]);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn mon(
        &self,
        port: impl AsRef<str>,
        callback: impl FnOnce(Reason) + Send + 'static,
    ) -> Monitor {
        self.inner().mon_action(
            port.as_ref(),
            Action::Callback(Mutex::new(Box::new(callback))),
        )
    }

    /// Kills `victim` with the same reason when `port` dies with an error
    /// (a normal exit leaves it alone): linked ports.
    pub fn mon_kil(&self, port: impl AsRef<str>, victim: &PortId) -> Monitor {
        self.inner()
            .mon_action(port.as_ref(), Action::Kill(victim.clone()))
    }

    /// Sends `msg` (an array) with the reason appended to `to` when `port`
    /// dies, also on a normal exit (then nothing is appended).
    pub fn mon_snd<M: serde::Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        to: &PortId,
        msg: &M,
    ) -> Result<Monitor, crate::wire::EncodeError> {
        let msg = crate::wire::packet::message_values(msg)?;
        Ok(self.inner().mon_action(
            port.as_ref(),
            Action::Send {
                port: to.clone(),
                msg,
            },
        ))
    }

    /// Number of monitors this node holds on other nodes' ports and on
    /// other nodes.
    pub fn remote_monitor_count(&self) -> usize {
        self.inner().monitors.remote_count()
    }
}

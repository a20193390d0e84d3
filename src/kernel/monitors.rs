//! The monitor tables: what a monitor does ([`Action`]), and the monitors
//! of remote ports and nodes, per node, with the index of the `mon1`
//! registrations other nodes made on our ports.
//!
//! Monitors of local ports live in the port's registry entry (so a port's
//! death and its monitors are one atomic step). The first monitor of a
//! remote port sends `mon1` to its node and the last one removed sends
//! `mon0` (reference counting, as the reference does); this table says
//! when.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, ReentrantMutex, ReentrantMutexGuard};
use serde_json::Value;

use super::port::PortId;

pub use crate::wire::Reason;

/// A monitor callback. The mutex only makes the one-shot callback `Sync`
/// (monitors live in concurrent maps); it is taken out when it fires.
pub(crate) type Callback = Mutex<Box<dyn FnOnce(Reason) + Send>>;

/// What a monitor does when it fires.
pub(crate) enum Action {
    /// Call a function with the reason.
    Callback(Callback),
    /// Kill a port with the same reason, on an error exit only.
    Kill(PortId),
    /// Kill a port with a normal exit, on any exit (Perl's
    /// `mon $watched, psub { kil $SELF }`; cheaper than a callback).
    Exit(PortId),
    /// Send the message to the port with the reason appended, on any
    /// exit (boxed: every monitor entry is the size of the largest
    /// action).
    Send(Box<(PortId, Vec<Value>)>),
    /// Another node monitors this local port (`mon1`): send it `kil0`.
    Remote(Arc<str>),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Callback(_) => f.write_str("Callback"),
            Action::Kill(p) => write!(f, "Kill({p})"),
            Action::Exit(p) => write!(f, "Exit({p})"),
            Action::Send(send) => write!(f, "Send({})", send.0),
            Action::Remote(n) => write!(f, "Remote({n})"),
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
    /// Orders the `mon1`/`mon0` of remote ports (see [`Monitors::wire`]).
    wire: ReentrantMutex<()>,
}

impl Monitors {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Held by whoever changes the monitors of a remote port and then
    /// sends the `mon1`/`mon0` that change calls for, across both steps,
    /// so that the requests of one remote port leave in the order of
    /// their table changes: otherwise a concurrent last unmon and first
    /// mon can reach the peer as `mon1` then `mon0`, leaving it without a
    /// registration while we hold a monitor (issue 13, item 7). The table
    /// itself is not locked while sending; reentrant, so that a monitor
    /// that fires while a request is sent may set up or remove monitors.
    pub(crate) fn wire(&self) -> ReentrantMutexGuard<'_, ()> {
        self.wire.lock()
    }

    /// Adds a monitor of remote port `node#port`; true if it is the first
    /// (then `mon1` must be sent, under [`Monitors::wire`]).
    pub(crate) fn add_port(&self, node: &str, port: &str, id: u64, action: Action) -> bool {
        let mut remote = self.remote.lock();
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
    /// (then `mon0` must be sent, under [`Monitors::wire`]). False if it
    /// was not there (fired).
    pub(crate) fn remove_port(&self, node: &str, port: &str, id: u64) -> bool {
        let mut remote = self.remote.lock();
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
        self.remote
            .lock()
            .entry(Arc::from(node))
            .or_default()
            .node
            .push((id, action));
    }

    /// Removes a monitor of a whole node.
    pub(crate) fn remove_node(&self, node: &str, id: u64) {
        let mut remote = self.remote.lock();
        if let Some(nm) = remote.get_mut(node) {
            nm.node.retain(|(i, _)| *i != id);
            if nm.is_empty() {
                remote.remove(node);
            }
        }
    }

    /// `kil0` from `node`: takes every monitor of `node#port`.
    pub(crate) fn take_port(&self, node: &str, port: &str) -> Vec<Action> {
        let mut remote = self.remote.lock();
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
        let Some(nm) = self.remote.lock().remove(node) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Action)> = Vec::new();
        for (port, list) in nm.ports {
            out.extend(list.into_iter().map(|(_, a)| (port.clone(), a)));
        }
        out.extend(nm.node.into_iter().map(|(_, a)| (String::new(), a)));
        out
    }

    /// Records that `node` monitors local port `port`, if it has fewer
    /// than `cap` such registrations (or this one already); false if it
    /// is at its cap.
    pub(crate) fn rmon_try_add(&self, node: &str, port: &str, cap: usize) -> bool {
        let mut rmon = self.rmon.lock();
        match rmon.get_mut(node) {
            Some(set) if set.contains(port) => true,
            Some(set) if set.len() >= cap => false,
            Some(set) => {
                set.insert(port.to_owned());
                true
            }
            None if cap == 0 => false,
            None => {
                rmon.insert(Arc::from(node), HashSet::from([port.to_owned()]));
                true
            }
        }
    }

    /// How many of our ports `node` monitors (`mon1`).
    pub(crate) fn rmon_count(&self, node: &str) -> usize {
        self.rmon.lock().get(node).map_or(0, HashSet::len)
    }

    /// Forgets that `node` monitors `port`.
    pub(crate) fn rmon_remove(&self, node: &str, port: &str) {
        let mut rmon = self.rmon.lock();
        if let Some(set) = rmon.get_mut(node) {
            set.remove(port);
            if set.is_empty() {
                rmon.remove(node);
            }
        }
    }

    /// `node`'s connection is gone: the local ports it monitored.
    pub(crate) fn rmon_take(&self, node: &str) -> HashSet<String> {
        self.rmon.lock().remove(node).unwrap_or_default()
    }

    /// Number of monitors of remote ports and nodes (for tests and stats).
    pub(crate) fn remote_count(&self) -> usize {
        self.remote
            .lock()
            .values()
            .map(|nm| nm.node.len() + nm.ports.values().map(Vec::len).sum::<usize>())
            .sum()
    }
}

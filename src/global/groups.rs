//! Global port groups: `grp_reg`, `grp_get`, `grp_mon`.
//!
//! A registration is announced (`reg1`) to every node where our Global
//! port exists, withdrawn (`reg0`) when its guard drops or its port dies,
//! and reaches nodes that join later through `set`. All of a node's
//! registrations vanish when that node goes down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use thiserror::Error;

use super::{Global, GroupMonFn};
use crate::kernel::{Node, PortId};
use crate::wire::GlobalMsg;

/// A group registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GroupError {
    /// Only local ports can be registered.
    #[error("{0}: grp_reg can only be called for local ports")]
    NotLocal(String),
    /// The port does not exist.
    #[error("{0}: no such port")]
    NoSuchPort(String),
    /// The port is in the group already.
    #[error("'{group}': {port} is registered already, cannot register a second time")]
    AlreadyRegistered {
        /// The group.
        group: String,
        /// The port.
        port: String,
    },
}

/// Applies a change to a group and tells its watchers (`_change`).
pub(crate) fn change(g: &Global, node: &Node, group: &str, add: Vec<PortId>, del: Vec<PortId>) {
    let (all, watchers) = {
        let mut st = g.lock();
        let st = &mut *st;
        let members = st.greg.entry(group.to_owned()).or_default();
        for p in &del {
            if members.remove(p) {
                uncount(&mut st.greg_per_node, p.node());
            }
        }
        for p in &add {
            if members.insert(p.clone()) {
                *st.greg_per_node.entry(p.node().to_owned()).or_default() += 1;
            }
        }
        let all: Vec<PortId> = members.iter().cloned().collect();
        if all.is_empty() {
            // no empty groups: a peer's reg0/set for unknown groups must
            // not grow the table
            st.greg.remove(group);
        }
        let watchers: Vec<GroupMonFn> = st
            .gmon
            .get(group)
            .map(|w| w.iter().map(|(_, f)| f.clone()).collect())
            .unwrap_or_default();
        (all, watchers)
    };
    for w in watchers {
        node.run_callback("a group monitor", || w(&all, &add, &del));
    }
}

/// One membership of a port of `node` less.
fn uncount(per_node: &mut std::collections::HashMap<String, usize>, node: &str) {
    if let Some(n) = per_node.get_mut(node) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            per_node.remove(node);
        }
    }
}

/// The ports of a `reg1` or `set` from `remote` that it may register:
/// its own (or its bare node id). The reference accepts any port, but
/// only ever announces its local ones (`grp_reg` croaks on others,
/// Global.pm 222); a registration of another node's port could not be
/// counted against the sender nor cleared when it goes down, so it is
/// ignored (a documented deviation; logged at debug level).
pub(crate) fn own_ports(node: &Node, remote: &str, group: &str, ports: Vec<String>) -> Vec<PortId> {
    let (own, foreign): (Vec<PortId>, Vec<PortId>) = ports
        .into_iter()
        .map(PortId::from)
        .partition(|p| p.node() == remote);
    if !foreign.is_empty() {
        // debug: a peer repeating it must not flood the log
        tracing::debug!(
            node = node.id(),
            remote,
            group,
            ignored = foreign.len(),
            "Global registration of another node's ports ignored"
        );
    }
    own
}

/// Removes every registration of node `id` (it went down, or its Global
/// port died).
pub(crate) fn unreg_groups(g: &Global, node: &Node, id: &str) {
    let gone: Vec<(String, Vec<PortId>)> = {
        let st = g.lock();
        st.greg
            .iter()
            .map(|(g, ports)| {
                let del: Vec<PortId> = ports.iter().filter(|p| p.node() == id).cloned().collect();
                (g.clone(), del)
            })
            .filter(|(_, del)| !del.is_empty())
            .collect()
    };
    for (group, del) in gone {
        change(g, node, &group, Vec::new(), del);
    }
}

/// Tells every node where our Global port exists.
fn announce(g: &Global, node: &Node, msg: GlobalMsg) {
    let targets: Vec<PortId> = g.lock().port.values().cloned().collect();
    let msg = msg.encode();
    for t in targets {
        if let Err(error) = node.snd(t.as_str(), &msg) {
            tracing::debug!(node = node.id(), %t, %error, "group announcement not sent");
        }
    }
}

/// Registers local `port` in `group` (see [`crate::Node::grp_reg`]).
pub(crate) fn register(
    g: &Arc<Global>,
    node: &Node,
    group: &str,
    port: &PortId,
) -> Result<GroupRegistration, GroupError> {
    if port.node() != node.id() {
        return Err(GroupError::NotLocal(port.to_string()));
    }
    // a bare node id (`grp_reg $group, $NODE`, the reference's
    // eg/chat_server2) is a member like a port; it has nothing to die, so
    // it goes only on unregistration or at node-down (Global.pm 181)
    let bare = port.as_str() == node.id();
    if !bare && !node.port_exists(port) {
        return Err(GroupError::NoSuchPort(port.to_string()));
    }
    {
        let mut st = g.lock();
        let list = st.lreg.entry(group.to_owned()).or_default();
        if list.contains(port) {
            return Err(GroupError::AlreadyRegistered {
                group: group.to_owned(),
                port: port.to_string(),
            });
        }
        list.push(port.clone());
    }
    if !bare && !watch_registered(g, node, group, port) {
        return Ok(GroupRegistration::released(group, port));
    }
    let msg = GlobalMsg::Reg1 {
        group: group.to_owned(),
        port: port.as_str().to_owned(),
    };
    announce(g, node, msg);
    change(g, node, group, vec![port.clone()], Vec::new());
    Ok(GroupRegistration {
        global: Arc::downgrade(g),
        group: group.to_owned(),
        port: port.clone(),
    })
}

/// Monitors the freshly registered `port` so that its death unregisters
/// it; false if it died already (then it is unregistered).
fn watch_registered(g: &Arc<Global>, node: &Node, group: &str, port: &PortId) -> bool {
    // unregistered when the port dies (this may fire at once if it just did)
    let (weak, grp, p) = (Arc::downgrade(g), group.to_owned(), port.clone());
    let monitor = node.mon(port, move |_| {
        if let Some((g, node)) = super::alive(&weak) {
            unregister(&g, &node, &grp, &p);
        }
    });
    {
        let mut st = g.lock();
        if st.lreg.get(group).is_some_and(|l| l.contains(port)) {
            st.lmon.insert((group.to_owned(), port.clone()), monitor);
        } else {
            drop(st);
            monitor.unmon(); // fired already
            return false;
        }
    }
    true
}

/// Withdraws a registration (once; later calls do nothing).
pub(crate) fn unregister(g: &Global, node: &Node, group: &str, port: &PortId) {
    let monitor = {
        let mut st = g.lock();
        let Some(list) = st.lreg.get_mut(group) else {
            return;
        };
        let before = list.len();
        list.retain(|p| p != port);
        if list.len() == before {
            return;
        }
        if list.is_empty() {
            st.lreg.remove(group);
        }
        st.lmon.remove(&(group.to_owned(), port.clone()))
    };
    if let Some(m) = monitor {
        m.unmon();
    }
    change(g, node, group, Vec::new(), vec![port.clone()]);
    let msg = GlobalMsg::Reg0 {
        group: group.to_owned(),
        port: port.as_str().to_owned(),
    };
    announce(g, node, msg);
}

/// A group registration (see [`crate::Node::grp_reg`]). Dropping it
/// withdraws the registration; [`GroupRegistration::forget`] keeps it
/// until the port dies.
#[derive(Debug)]
#[must_use = "dropping the registration withdraws it; call forget() to keep it"]
pub struct GroupRegistration {
    global: Weak<Global>,
    group: String,
    port: PortId,
}

impl GroupRegistration {
    fn released(group: &str, port: &PortId) -> GroupRegistration {
        GroupRegistration {
            global: Weak::new(),
            group: group.to_owned(),
            port: port.clone(),
        }
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The registered port.
    pub fn port(&self) -> &PortId {
        &self.port
    }

    /// Keeps the registration until the port dies.
    pub fn forget(mut self) {
        self.global = Weak::new();
    }
}

impl Drop for GroupRegistration {
    fn drop(&mut self) {
        if let Some((g, node)) = super::alive(&self.global) {
            unregister(&g, &node, &self.group, &self.port);
        }
    }
}

/// Watches a group (see [`crate::Node::grp_mon`]); dropping it stops the
/// watching.
#[must_use = "dropping the monitor stops it; call forget() to keep it"]
pub struct GroupMonitor {
    global: Weak<Global>,
    group: String,
    id: u64,
    cancelled: Arc<AtomicBool>,
}

impl GroupMonitor {
    /// Keeps watching for the node's lifetime.
    pub fn forget(mut self) {
        self.global = Weak::new();
    }
}

impl Drop for GroupMonitor {
    fn drop(&mut self) {
        // forgotten (or the node is gone): keep watching
        let Some(g) = self.global.upgrade() else {
            return;
        };
        self.cancelled.store(true, Ordering::Release);
        let mut st = g.lock();
        if let Some(list) = st.gmon.get_mut(&self.group) {
            list.retain(|(i, _)| *i != self.id);
            if list.is_empty() {
                st.gmon.remove(&self.group);
            }
        }
    }
}

/// Installs a group watcher; first called, from the node's arbiter and not
/// before this returns, with `(members, members, [])` if the group has
/// members.
pub(crate) fn monitor(g: &Arc<Global>, node: &Node, group: &str, cb: GroupMonFn) -> GroupMonitor {
    let id = {
        let mut st = g.lock();
        st.next_id += 1;
        st.next_id
    };
    let cancelled = Arc::new(AtomicBool::new(false));
    let (weak, grp, flag) = (Arc::downgrade(g), group.to_owned(), cancelled.clone());
    let spawned = node.spawn_task(async move {
        let Some(g) = weak.upgrade() else {
            return;
        };
        let members: Vec<PortId> = {
            let mut st = g.lock();
            // under the lock: a guard dropped before this point finds
            // nothing to remove, so the watcher must not be installed
            if flag.load(Ordering::Acquire) {
                return;
            }
            st.gmon
                .entry(grp.clone())
                .or_default()
                .push((id, cb.clone()));
            st.greg
                .get(&grp)
                .map(|m| m.iter().cloned().collect())
                .unwrap_or_default()
        };
        if !members.is_empty() {
            cb(&members, &members, &[]);
        }
    });
    if !spawned {
        tracing::debug!(
            node = node.id(),
            group,
            "node arbiter gone; group monitor not installed"
        );
    }
    GroupMonitor {
        global: Arc::downgrade(g),
        group: group.to_owned(),
        id,
        cancelled,
    }
}

impl Node {
    /// Registers the local port `port` in the global group `group`; every
    /// node of the network sees it in [`Node::grp_get`](crate::Node::grp_get)
    /// and its group monitors. The registration is withdrawn when the
    /// returned guard drops (or use [`GroupRegistration::forget`]) and when
    /// the port dies.
    ///
    /// `port` may also be this node's bare id, as in the reference's
    /// `grp_reg $group, $NODE` (`eg/chat_server2`): such a member has no
    /// port to die, so it stays until unregistered, and other nodes drop
    /// it when this node goes down (their `unreg_groups` matches bare ids,
    /// Global.pm 181). Bare ids of other nodes arrive as members too.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (svc, _rx) = node.port_channel();
    /// let reg = node.grp_reg("chat", &svc).unwrap();
    /// assert_eq!(node.grp_get("chat"), vec![svc.clone()]);
    /// drop(reg);
    /// assert!(node.grp_get("chat").is_empty());
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn grp_reg(&self, group: &str, port: &PortId) -> Result<GroupRegistration, GroupError> {
        register(&Global::of(self), self, group, port)
    }

    /// The current members of `group` (empty if it has none).
    pub fn grp_get(&self, group: &str) -> Vec<PortId> {
        Global::of(self)
            .lock()
            .greg
            .get(group)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Calls `callback(all members, added, removed)` on every change of
    /// `group`; the first call comes soon after this returns, with
    /// `(members, members, [])`, if the group has members. The callback
    /// must not block.
    pub fn grp_mon(
        &self,
        group: &str,
        callback: impl Fn(&[PortId], &[PortId], &[PortId]) + Send + Sync + 'static,
    ) -> GroupMonitor {
        monitor(&Global::of(self), self, group, Arc::new(callback))
    }

    /// Waits until `group` has at least one member, for at most
    /// `timeout`, and returns its members then; at once if it has members
    /// already. Built on [`Node::grp_mon`] (the reference's `grp_mon`,
    /// Global.pm 286), so nothing polls.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let a = aemp::Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
    /// let addr = a.listen_addrs()[0].to_string();
    /// let b = aemp::Node::builder().node_id("b").secret("s").seed(addr).start().await.unwrap();
    /// let (svc, _rx) = a.port_channel();
    /// a.grp_reg("echo", &svc).unwrap().forget();
    /// let members = b.wait_group("echo", Duration::from_secs(10)).await.unwrap();
    /// assert_eq!(members, vec![svc]);
    /// # a.shutdown(); b.shutdown();
    /// # });
    /// ```
    pub async fn wait_group(
        &self,
        group: &str,
        timeout: Duration,
    ) -> Result<Vec<PortId>, tokio::time::error::Elapsed> {
        let members = self.grp_get(group);
        if !members.is_empty() {
            return Ok(members);
        }
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        // its first call brings the members it finds when installed, so a
        // registration after the check above is not missed
        let _watch = self.grp_mon(group, move |all, _, _| {
            if !all.is_empty()
                && let Some(tx) = tx.lock().take()
            {
                let _ = tx.send(all.to_vec());
            }
        });
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, rx).await? {
            Ok(members) => Ok(members),
            // the watcher could not be installed (the node's arbiter is
            // gone): no member can arrive, so the time runs out
            Err(_) => tokio::time::timeout_at(deadline, std::future::pending()).await,
        }
    }

    /// Changes of `group` as a stream of [`GroupChange`]s, built on
    /// [`Node::grp_mon`] (Global.pm 286): first, soon after this call,
    /// the members it has then (all of them as `added`) if it has any,
    /// then every change. Dropping the stream stops the watching. Reads
    /// are unbounded; bound them with [`tokio::time::timeout`].
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let mut changes = node.group_changes("chat");
    /// let (p, _rx) = node.port_channel();
    /// let reg = node.grp_reg("chat", &p).unwrap();
    /// let t = Duration::from_secs(5);
    /// let change = tokio::time::timeout(t, changes.recv()).await.unwrap().unwrap();
    /// assert_eq!(change.added, vec![p.clone()]);
    /// drop(reg);
    /// let change = tokio::time::timeout(t, changes.recv()).await.unwrap().unwrap();
    /// assert_eq!((change.members, change.removed), (vec![], vec![p]));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn group_changes(&self, group: &str) -> GroupChanges {
        let (tx, rx) = mpsc::unbounded_channel();
        let watch = self.grp_mon(group, move |all, added, removed| {
            let _ = tx.send(GroupChange {
                members: all.to_vec(),
                added: added.to_vec(),
                removed: removed.to_vec(),
            });
        });
        GroupChanges { rx, _watch: watch }
    }

    /// The node this node currently asks for network updates.
    pub fn master(&self) -> Option<String> {
        Global::of(self).lock().master.clone()
    }
}

/// One change of a group, as [`GroupChanges`] yields it: the arguments of
/// a [`Node::grp_mon`] callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    /// All members after the change.
    pub members: Vec<PortId>,
    /// Members that joined.
    pub added: Vec<PortId>,
    /// Members that left.
    pub removed: Vec<PortId>,
}

/// Changes of a group as a stream (see [`Node::group_changes`]); none
/// lost (the buffer is unbounded, so read it). Dropping it stops the
/// watching, as dropping a [`GroupMonitor`] does.
#[must_use = "a stream does nothing unless read"]
pub struct GroupChanges {
    rx: mpsc::UnboundedReceiver<GroupChange>,
    _watch: GroupMonitor,
}

impl GroupChanges {
    /// The next change; `None` once the node is gone. Unbounded: wrap it
    /// in [`tokio::time::timeout`].
    pub async fn recv(&mut self) -> Option<GroupChange> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for GroupChanges {
    type Item = GroupChange;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<GroupChange>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for GroupChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupChanges").finish_non_exhaustive()
    }
}

//! Monitors: one-shot actions that run when a port dies, or when the
//! transport to a node fails — setting them up ([`Node::mon`] and
//! friends), firing them, and the node-port requests about them (`mon1`,
//! `mon0`, `kil0`). Their tables are in `monitors.rs`.
//!
//! [`Node::mon`]: crate::Node::mon

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::budget::limit_reason;
use super::monitors::{Action, Reason};
use super::node::NodeInner;
use super::port::PortId;
use crate::Limit;
use crate::wire::NodeRequest;

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
/// Monitors are one-shot. This handle is a guard, as every guard of aemp
/// is (group registrations, group and node monitors): **dropping it
/// removes the monitor** (sending `mon0` if it was the last monitor of a
/// remote port), [`Monitor::forget`] leaves it in place until it fires.
/// That is Perl's rule: `mon` returns a guard that removes the monitor
/// when it is destroyed, and a call in void context keeps the monitor
/// (MP.pm 624–625; the same for `grp_reg` and `grp_mon`, Global.pm
/// 241/286).
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
/// let (port, _rx) = node.port_channel();
/// let held = node.mon(&port, |_| println!("port died")); // until dropped
/// node.mon(&port, |_| println!("also")).forget(); // Perl's void context
/// drop(held); // that one is gone again
/// # node.shutdown();
/// # });
/// ```
#[derive(Debug)]
#[must_use = "dropping a Monitor removes it; call forget() to keep it"]
pub struct Monitor {
    node: Weak<NodeInner>,
    watched: Watched,
    id: u64,
    /// Whether dropping this handle removes the monitor.
    armed: bool,
}

impl Monitor {
    pub(crate) fn new(node: Weak<NodeInner>, watched: Watched, id: u64) -> Monitor {
        Monitor {
            node,
            watched,
            id,
            armed: true,
        }
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
    /// remote port), as dropping the handle does. Nothing happens if it
    /// fired already.
    pub fn unmon(self) {
        drop(self);
    }

    /// The monitor as a [`MonitorGuard`], which also removes it when
    /// dropped (kept from before a `Monitor` was a guard itself).
    pub fn guard(self) -> MonitorGuard {
        MonitorGuard(Some(self))
    }

    /// Leaves the monitor in place for good (until it fires): Perl's `mon`
    /// in void context.
    pub fn forget(mut self) {
        self.armed = false;
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.armed
            && let Some(node) = self.node.upgrade()
        {
            node.unmon(&self.watched, self.id);
        }
    }
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
    /// Runs the action for the death of `port` with `reason`.
    pub(crate) fn fire(&self, action: Action, port: &PortId, reason: &Reason) {
        let node = self;
        match action {
            Action::Callback(cb) => {
                let cb = cb.into_inner();
                let reason = reason.clone();
                super::user_code::callback(&node.id, "a monitor callback", || cb(reason));
            }
            Action::Kill(other) => {
                if !reason.is_empty()
                    && let Err(error) = node.kil(other.as_str(), reason.clone())
                {
                    tracing::warn!(node = %node.id, %other, %error, "linked port not killed");
                }
            }
            Action::Exit(other) => {
                if let Err(error) = node.kil(other.as_str(), Vec::new()) {
                    tracing::warn!(node = %node.id, %other, %error, "linked port not ended");
                }
            }
            Action::Send(send) => {
                let (to, mut msg) = *send;
                msg.extend(reason.iter().cloned());
                if let Err(error) = node.snd(to.as_str(), &msg) {
                    tracing::warn!(node = %node.id, %to, %error, "monitor message not sent");
                }
            }
            Action::Remote(remote) => {
                node.remote.monitors().rmon_remove(&remote, port.name());
                // like the reference: only over a live connection
                if node.remote.peers().is_up(&remote) {
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

impl NodeInner {
    /// Sets up a monitor of `port` (local, remote, or a bare node id).
    pub(crate) fn mon_action(&self, port: &str, action: Action) -> Monitor {
        let (node, name) = super::port::split_port(port);
        let id = self.remote.monitors().next_id();
        let watched = if node == &*self.id && !name.is_empty() {
            if let Err(action) = self.ports.registry().add_monitor(name, id, action) {
                // the reference calls the action at once
                let port = PortId::new(node, name);
                self.fire(action, &port, &crate::wire::no_such_port(port.as_str()));
            }
            Watched::Local(name.to_owned())
        } else if name.is_empty() {
            // a whole node: nothing is sent, no connection is started
            self.remote.monitors().add_node(node, id, action);
            Watched::Node(Arc::from(node))
        } else {
            // the table change and its mon1 as one step (see `Monitors::wire`)
            let _wire = self.remote.monitors().wire();
            if self.remote.monitors().add_port(node, name, id, action) {
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
            Watched::Local(name) => self.ports.registry().remove_monitor(name, id),
            Watched::Remote(node, port) => {
                // the table change and its mon0 as one step (see `Monitors::wire`)
                let _wire = self.remote.monitors().wire();
                if self.remote.monitors().remove_port(node, port, id) {
                    let msg = NodeRequest::Mon0 { port: port.clone() };
                    if let Err(error) = self.snd_to_node_port(node, &msg.into_values()) {
                        tracing::debug!(node = %self.id, remote = %node, %error, "mon0 not sent");
                    }
                }
            }
            Watched::Node(node) => self.remote.monitors().remove_node(node, id),
        }
    }

    /// `mon1` from `from`: monitor our port `port` for it, or answer at
    /// once with `kil0 no_such_port` — or, when `from` monitors
    /// [`crate::NodeConfig::peer_max_monitors`] of our ports already, with
    /// `kil0 ["limit_exceeded", "remote_monitors", text]`; a port whose
    /// `_spawn` the spawned-ports limit refused is answered with
    /// `["limit_exceeded", "spawned_ports", text]`.
    pub(crate) fn remote_mon1(&self, from: &str, port: &str) {
        let id = self.remote.monitors().next_id();
        let node: Arc<str> = Arc::from(from);
        let cap = if from == &*self.id {
            usize::MAX
        } else {
            self.config.peer_max_monitors
        };
        // the budget first, so that a port cannot get a registration the
        // index does not know of; given back if there is no such port
        let reason = if !self.remote.monitors().rmon_try_add(from, port, cap) {
            self.limit_refused(from, Limit::RemoteMonitors, cap, "a mon1");
            let text = format!(
                "node {from} monitors {cap} ports of node {}, its limit (peer_max_monitors); port {port} not monitored",
                self.id
            );
            limit_reason(Limit::RemoteMonitors, text)
        } else if self.ports.registry().add_remote_monitor(port, id, &node) {
            return;
        } else {
            self.remote.monitors().rmon_remove(from, port);
            self.refused_spawn_reason(from, port)
                .unwrap_or_else(|| crate::wire::no_such_port(PortId::new(&self.id, port).as_str()))
        };
        let msg = NodeRequest::Kil0 {
            port: port.to_owned(),
            reason,
        };
        if let Err(error) = self.snd_to_node_port(from, &msg.into_values()) {
            tracing::debug!(node = %self.id, remote = from, %error, "kil0 not sent");
        }
    }

    /// `mon0` from `from`: stop monitoring `port` for it.
    pub(crate) fn remote_mon0(&self, from: &str, port: &str) {
        self.ports.registry().remove_remote_monitor(port, from);
        self.remote.monitors().rmon_remove(from, port);
    }

    /// `kil0` from `from`: its port `port`, which we monitor, died.
    pub(crate) fn remote_kil0(&self, from: &str, port: &str, reason: Reason) {
        let id = PortId::new(from, port);
        for action in self.remote.monitors().take_port(from, port) {
            self.fire(action, &id, &reason);
        }
    }
}

impl super::node::Node {
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

    /// Ends `victim` with a normal exit when `port` (or a bare node id)
    /// dies, however it dies: Perl's `mon $port, psub { kil $SELF }`,
    /// without a callback to keep.
    pub(crate) fn mon_exit(&self, port: impl AsRef<str>, victim: &PortId) -> Monitor {
        self.inner()
            .mon_action(port.as_ref(), Action::Exit(victim.clone()))
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
        Ok(self
            .inner()
            .mon_action(port.as_ref(), Action::Send(Box::new((to.clone(), msg)))))
    }

    /// Number of monitors this node holds on other nodes' ports and on
    /// other nodes.
    pub fn remote_monitor_count(&self) -> usize {
        self.inner().remote.monitors().remote_count()
    }
}

//! Spawning ports on other nodes (and on this one).
//!
//! The spawner picks the new port's name, `<runiq>.<counter>`, and sends
//! `["", "AnyEvent::MP::_spawn", name, initfunc, @initdata]` to the target
//! node, which runs the init function; the init function gives the port its
//! behaviour (here: by returning its [`PortBehaviour`]). For the whole init
//! the port exists, pending — messages and monitors are queued — locally
//! and for a remote `_spawn` alike, so the init can register its own port
//! in a group, monitor it or send to it (in Perl the port exists once the
//! init calls `rcv $SELF`, MP.pm 692–694, 728). An unknown init function,
//! one that fails, or a name that is taken leaves no port (the queued
//! monitors fire with `no_such_port`), so the spawner's `mon1` (which the
//! reference always sends right after) is answered with `no_such_port`.
//! Perl silently replaces an existing port of the same name; aemp refuses.

use std::sync::Arc;

use serde_json::Value;

use super::functions::{Function, check_name};
use super::handler::PortContext;
use super::node::NodeInner;
use super::port::{PortId, split_port};
use super::port_runner::PortCell;
use super::rcv::{DefaultCb, Dispatch};
use super::registry::{PortTarget, SpawnRefused};
use crate::Limit;
use crate::error::{InitError, SpawnError};
use crate::wire::NodeRequest;
use crate::wire::no_such_port;

impl NodeInner {
    /// Spawns a port on the node of `target` (a node id or a port id).
    /// Returns its id at once; a local init function runs only later.
    pub(crate) fn spawn(
        &self,
        target: &str,
        func: &str,
        args: Vec<Value>,
    ) -> Result<PortId, SpawnError> {
        check_name(func).map_err(SpawnError::InitName)?;
        let (node, _) = split_port(target);
        if node.is_empty() {
            return Err(SpawnError::NoNode(target.to_owned()));
        }
        let name = self.ports.new_spawn_name();
        let port = PortId::new(node, &name);
        if node == &*self.id {
            // a placeholder keeps messages and monitors until init has run
            let Some(dispatch) = self.reserve_spawned(&name) else {
                return Err(SpawnError::NameTaken(name));
            };
            let me = self.handle();
            let func = func.to_owned();
            let spawned = self.transport.arbiter().spawn(async move {
                me.inner()
                    .run_local_spawn(None, &name, &func, args, dispatch);
            });
            if !spawned {
                self.kill_local(port.name(), no_such_port(port.as_str()));
                return Err(SpawnError::Send(crate::error::SendError::Shutdown));
            }
        } else {
            let msg = NodeRequest::Spawn {
                port: name,
                init: func.to_owned(),
                args,
            };
            self.snd_to_node_port(node, &msg.into_values())?;
        }
        Ok(port)
    }

    /// Reserves `name` for a spawned port: a placeholder that keeps
    /// messages and monitors while its init runs, with the callback table
    /// the init's context and [`crate::Node::rcv`] fill meanwhile (in Perl
    /// a local spawn's init has run when `spawn` returns, so `rcv` on the
    /// new port works at once). `None` if the name is taken.
    fn reserve_spawned(&self, name: &str) -> Option<Arc<PortCell>> {
        let cell = self.spawned_cell(name);
        self.ports
            .registry()
            .insert_new(name, PortTarget::pending(Some(cell.clone())))
            .ok()
            .map(|()| cell)
    }

    /// The state of the spawned port `name`, without callbacks yet.
    fn spawned_cell(&self, name: &str) -> Arc<PortCell> {
        PortCell::new(
            PortId::new(&self.id, name),
            Dispatch::new(DefaultCb::Ignore),
        )
    }

    /// [`NodeInner::reserve_spawned`] for a port peer `from` spawns: it
    /// takes one unit of that peer's budget of spawned ports
    /// ([`crate::NodeConfig::peer_max_spawned_ports`]) until it dies.
    fn reserve_spawned_for(&self, name: &str, from: &str) -> Result<Arc<PortCell>, SpawnRefused> {
        let cell = self.spawned_cell(name);
        let cap = self.config.peer_max_spawned_ports;
        self.ports
            .registry()
            .insert_spawned(name, PortTarget::pending(Some(cell.clone())), from, cap)
            .map(|()| cell)
    }

    /// A `_spawn` from `from` over its cap of spawned ports: no port is
    /// made, and the name is remembered, so that the `mon1` the spawner
    /// sends right after (as the reference's callers do: `mon spawn …`)
    /// is answered with `kil0 ["limit_exceeded", "spawned_ports", text]`
    /// instead of a bare `no_such_port`.
    fn refuse_spawn(&self, from: &str, name: &str) {
        let cap = self.config.peer_max_spawned_ports;
        self.limit_refused(from, Limit::SpawnedPorts, cap, "a _spawn");
        self.spawn_refused(from, name);
    }

    /// Runs init function `func` for the port whose state is `cell`: the
    /// port's target, whose handler (if any) gets the same context (and
    /// callbacks) the init function had, or why there is none.
    fn run_init(
        &self,
        func: &str,
        args: Vec<Value>,
        cell: Arc<PortCell>,
    ) -> Result<PortTarget, InitError> {
        let init = match self.ports.functions().get(func) {
            Some(Function::Init(f)) => f,
            Some(Function::Plain(_) | Function::Sourced(_)) => {
                return Err(InitError::NotInit(func.to_owned()));
            }
            None => return Err(InitError::Unknown(func.to_owned())),
        };
        let ctx = PortContext::from_cell(self.handle(), cell);
        // a local spawn runs deferred: $SRCNODE is this node; a remote
        // one runs inside its node-port request, which set the requester
        let src = super::src_node::current()
            .map(std::sync::Arc::<str>::from)
            .or_else(|| Some(self.id.clone()));
        match super::src_node::with_src(src, || super::user_code::run(|| init(&ctx, args))) {
            Ok(Ok(behaviour)) => Ok(behaviour.into_target(ctx)),
            Ok(Err(error)) => Err(InitError::Failed {
                func: func.to_owned(),
                error,
            }),
            Err(message) => Err(InitError::Panicked {
                func: func.to_owned(),
                message,
            }),
        }
    }

    /// A `_spawn` request from node `from`.
    pub(crate) fn spawn_request(&self, from: &str, name: &str, func: &str, args: Vec<Value>) {
        if name.is_empty() || name.contains('#') {
            crate::transport::log_throttle::peer_warn!(self.transport.log_throttle(), from, node = %self.id, remote = from, port = name, "spawn with an invalid port name refused");
            return;
        }
        // as for a local spawn, a placeholder keeps messages and monitors
        // while the init runs, so that the init can `grp_reg`, `mon` or
        // `snd` to its own port: in Perl the port exists once the init
        // calls `rcv $SELF` (MP.pm 692-694, 728)
        let dispatch = if from == &*self.id {
            self.reserve_spawned(name)
        } else {
            match self.reserve_spawned_for(name, from) {
                Ok(dispatch) => Some(dispatch),
                Err(SpawnRefused::NameTaken) => None,
                Err(SpawnRefused::Limit) => return self.refuse_spawn(from, name),
            }
        };
        let Some(dispatch) = dispatch else {
            crate::transport::log_throttle::peer_warn!(self.transport.log_throttle(), from, node = %self.id, remote = from, port = name, "spawn of an existing port's name refused");
            return;
        };
        // run at once: the packets after the `_spawn` (the spawner's mon1,
        // its first messages) find the port complete
        self.run_local_spawn(Some(from), name, func, args, dispatch);
    }

    /// Runs the init of the pending port `name` and completes it (the
    /// deferred half of a local spawn, the whole of a remote one); kills
    /// the placeholder with `no_such_port` when the init gives no port.
    fn run_local_spawn(
        &self,
        from: Option<&str>,
        name: &str,
        func: &str,
        args: Vec<Value>,
        cell: Arc<PortCell>,
    ) {
        match self.run_init(func, args, cell) {
            Ok(target) => {
                if !self.ports.registry().complete_pending(name, target) {
                    tracing::debug!(node = %self.id, port = name, "spawned port was killed before its init ran");
                }
            }
            Err(error) => {
                let by = from.unwrap_or(&self.id);
                crate::transport::log_throttle::peer_warn!(
                    self.transport.log_throttle(), by,
                    node = %self.id, remote = from, port = name, %error,
                    "spawn created no port"
                );
                let id = PortId::new(&self.id, name);
                self.kill_local(name, no_such_port(id.as_str()));
            }
        }
    }
}

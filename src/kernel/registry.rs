//! The port registry: local port names to what receives their messages,
//! with each port's monitors.
//!
//! This is the hot path of every inbound message: the connection actor
//! decodes a packet, looks its destination up here and hands the packet
//! straight to the target's mailbox while holding the map's read guard.

use std::sync::Arc;

use actix::{Message, Recipient};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::mpsc;

use super::budget::PeerCounts;
use super::monitors::{Action, Reason};
use super::port_runner::{Item, PortCell, Runner};
use crate::wire::Packet;

/// What the node tells a handler port besides its messages (through the
/// port runner, behind them).
pub(crate) enum Control {
    /// A kil from outside: it arrives behind the messages delivered before
    /// it, and runs the port's monitors once they are handled.
    Die {
        reason: Reason,
        monitors: Vec<(u64, Action)>,
    },
    /// The port is already dead and its monitors ran: stop after what is
    /// already in the mailbox.
    Stop,
}

impl Message for Control {
    type Result = ();
}

/// Where a port's messages go.
pub(crate) enum PortTarget {
    /// A user's actix actor.
    Actor(Recipient<Packet>),
    /// An unbounded channel (see [`crate::Node::port_channel`]).
    Channel(mpsc::UnboundedSender<Packet>),
    /// A handler run by the node (a closure or init-function port). Killed
    /// from outside, it still handles what was delivered before the kil,
    /// then runs its monitors.
    Handler {
        /// Its id, callbacks (for `Node::rcv` from outside) and flags.
        cell: Arc<PortCell>,
        /// Runs its callbacks: its messages, its kil and stop.
        runner: Runner,
    },
    /// An actor made for its port ([`crate::Node::port_actor`]): its
    /// guard kills the port when the actor ends, so the port is never
    /// "closed" from outside; a kil is told to the actor.
    ActorPort {
        /// Hands a message to the actor (typed or whole).
        deliver: super::actor::DeliverFn,
        /// Tells the actor its port was killed.
        killed: Recipient<super::actor::PortKilled>,
    },
    /// A port whose target is not in place yet (a spawn whose init
    /// function has not returned, a name reserved for a new port):
    /// messages wait.
    Pending {
        /// The messages, in order.
        queue: Vec<Packet>,
        /// A spawned port's state, whose callbacks its init and `rcv` fill
        /// while the init runs.
        cell: Option<Arc<PortCell>>,
    },
}

impl PortTarget {
    /// A placeholder for a port whose target comes later.
    pub(crate) fn pending(cell: Option<Arc<PortCell>>) -> PortTarget {
        PortTarget::Pending {
            queue: Vec::new(),
            cell,
        }
    }

    /// Whether whoever receives the messages is gone.
    fn is_closed(&self) -> bool {
        match self {
            PortTarget::Actor(r) => !r.connected(),
            PortTarget::Channel(tx) => tx.is_closed(),
            PortTarget::Handler { cell, runner } => cell.is_stopped() || runner.is_closed(),
            // its guard kills the port, with the right reason
            PortTarget::ActorPort { .. } | PortTarget::Pending { .. } => false,
        }
    }

    /// Hands a packet over; gives it back for a pending port, which needs
    /// the entry's write lock to queue it.
    fn send(&self, packet: Packet) -> Result<(), Packet> {
        match self {
            PortTarget::Actor(r) => r.do_send(packet),
            // a runner gone since the liveness check loses this packet
            PortTarget::Handler { cell, runner } => to_runner(runner, cell, packet),
            PortTarget::ActorPort { deliver, .. } => deliver(packet),
            // a receiver dropped since the liveness check loses this packet,
            // as an actor stopping at that moment would
            PortTarget::Channel(tx) => drop(tx.send(packet)),
            PortTarget::Pending { .. } => return Err(packet),
        }
        Ok(())
    }
}

/// Hands `packet` to the port runner (out of line: `deliver` stays small
/// for the other kinds of port).
#[inline(never)]
fn to_runner(runner: &Runner, cell: &Arc<PortCell>, packet: Packet) {
    drop(runner.send(cell, Item::Msg(packet)));
}

/// What [`Registry::dispatch_of`] found.
pub(crate) enum Lookup {
    /// A handler port's (or a spawning port's) state, with its callbacks.
    Found(Arc<PortCell>),
    /// No such port.
    Missing,
    /// An actor or channel port.
    NotHandler,
    /// A port whose target is not in place yet, without callbacks of its
    /// own.
    Pending,
}

/// A local port.
pub(crate) struct PortEntry {
    target: PortTarget,
    /// Monitors of this port: local actions and remote nodes' `mon1`s.
    monitors: Vec<(u64, Action)>,
    /// The peer that spawned it (`_spawn`), whose budget it takes until
    /// it dies.
    spawned_by: Option<Arc<str>>,
}

/// What happened to a delivered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Handed to the port's mailbox.
    Delivered,
    /// No such port: dropped (reference behaviour).
    NoSuchPort,
}

#[derive(Default)]
pub(crate) struct Registry {
    ports: DashMap<Box<str>, PortEntry, ahash::RandomState>,
    /// Live ports per peer that spawned them.
    spawned: PeerCounts,
}

/// Why [`Registry::insert_spawned`] refused.
pub(crate) enum SpawnRefused {
    /// The name is taken.
    NameTaken,
    /// The peer's spawned ports are at their cap.
    Limit,
}

impl Registry {
    /// Adds a port under a name that must be free; gives the target back
    /// if the name is taken.
    pub(crate) fn insert_new(&self, name: &str, target: PortTarget) -> Result<(), PortTarget> {
        match self.ports.entry(name.into()) {
            Entry::Occupied(_) => Err(target),
            Entry::Vacant(v) => {
                v.insert(PortEntry {
                    target,
                    monitors: Vec::new(),
                    spawned_by: None,
                });
                Ok(())
            }
        }
    }

    /// Adds a port that peer `peer` spawned, under a name that must be
    /// free, if the peer holds fewer than `cap` live spawned ports; the
    /// port takes one unit of that budget until it is killed.
    pub(crate) fn insert_spawned(
        &self,
        name: &str,
        target: PortTarget,
        peer: &str,
        cap: usize,
    ) -> Result<(), SpawnRefused> {
        let Some(peer) = self.spawned.try_take(peer, cap) else {
            return Err(SpawnRefused::Limit);
        };
        match self.ports.entry(name.into()) {
            Entry::Occupied(_) => {
                self.spawned.give_back(&peer);
                Err(SpawnRefused::NameTaken)
            }
            Entry::Vacant(v) => {
                v.insert(PortEntry {
                    target,
                    monitors: Vec::new(),
                    spawned_by: Some(peer),
                });
                Ok(())
            }
        }
    }

    /// How many live ports `peer` spawned here.
    pub(crate) fn spawned_by(&self, peer: &str) -> usize {
        self.spawned.get(peer)
    }

    /// Whether a port of that name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.ports.contains_key(name)
    }

    /// The state of handler port `name` (with its callbacks).
    pub(crate) fn dispatch_of(&self, name: &str) -> Lookup {
        match self.ports.get(name).as_deref().map(|e| &e.target) {
            Some(PortTarget::Handler { cell, .. })
            | Some(PortTarget::Pending {
                cell: Some(cell), ..
            }) => Lookup::Found(cell.clone()),
            Some(PortTarget::Pending { .. }) => Lookup::Pending,
            Some(_) => Lookup::NotHandler,
            None => Lookup::Missing,
        }
    }

    /// Number of local ports.
    pub(crate) fn len(&self) -> usize {
        self.ports.len()
    }

    /// Hands `packet` to the port named by its destination. A port whose
    /// receiver is gone gives the packet back: the caller kills the port.
    pub(crate) fn deliver(&self, packet: Packet) -> Result<Delivery, Packet> {
        let Some(name) = packet.dest() else {
            return Ok(Delivery::NoSuchPort);
        };
        let Some(entry) = self.ports.get(name) else {
            return Ok(Delivery::NoSuchPort);
        };
        if entry.target.is_closed() {
            drop(entry);
            return Err(packet);
        }
        let Err(packet) = entry.target.send(packet) else {
            return Ok(Delivery::Delivered);
        };
        // a pending port (rare): queue under the write lock
        drop(entry);
        let Some(name) = packet.dest() else {
            return Ok(Delivery::NoSuchPort);
        };
        Ok(match self.ports.get_mut(name) {
            Some(mut entry) => match &mut entry.target {
                PortTarget::Pending { queue, .. } => {
                    queue.push(packet);
                    Delivery::Delivered
                }
                // completed meanwhile
                target => match target.send(packet) {
                    Ok(()) => Delivery::Delivered,
                    Err(_) => Delivery::NoSuchPort,
                },
            },
            None => Delivery::NoSuchPort,
        })
    }

    /// Removes a port; returns what received its messages and its
    /// monitors, or `None` if there was no such port (killing a port that
    /// does not exist is fine).
    pub(crate) fn kill(&self, name: &str) -> Option<(PortTarget, Vec<(u64, Action)>)> {
        let (_, entry) = self.ports.remove(name)?;
        if let Some(peer) = &entry.spawned_by {
            self.spawned.give_back(peer);
        }
        Some((entry.target, entry.monitors))
    }

    /// Adds a monitor to a port; gives the action back if there is no such
    /// port.
    pub(crate) fn add_monitor(&self, name: &str, id: u64, action: Action) -> Result<(), Action> {
        match self.ports.get_mut(name) {
            Some(mut entry) => {
                entry.monitors.push((id, action));
                Ok(())
            }
            None => Err(action),
        }
    }

    /// Adds `node`'s `mon1` registration to a port (once per node); false
    /// if there is no such port.
    pub(crate) fn add_remote_monitor(&self, name: &str, id: u64, node: &Arc<str>) -> bool {
        match self.ports.get_mut(name) {
            Some(mut entry) => {
                let known = entry
                    .monitors
                    .iter()
                    .any(|(_, a)| matches!(a, Action::Remote(n) if n == node));
                if !known {
                    entry.monitors.push((id, Action::Remote(node.clone())));
                }
                true
            }
            None => false,
        }
    }

    /// Removes a monitor from a port.
    pub(crate) fn remove_monitor(&self, name: &str, id: u64) {
        if let Some(mut entry) = self.ports.get_mut(name) {
            entry.monitors.retain(|(i, _)| *i != id);
        }
    }

    /// Removes `node`'s `mon1` registration from a port.
    pub(crate) fn remove_remote_monitor(&self, name: &str, node: &str) {
        if let Some(mut entry) = self.ports.get_mut(name) {
            entry
                .monitors
                .retain(|(_, a)| !matches!(a, Action::Remote(n) if &**n == node));
        }
    }

    /// Gives a pending (spawning) port its real target and hands it the
    /// messages that waited, in order, before any later message can reach
    /// it. False if the port is gone (killed while its init ran).
    pub(crate) fn complete_pending(&self, name: &str, target: PortTarget) -> bool {
        let Some(mut entry) = self.ports.get_mut(name) else {
            return false;
        };
        let waiting = match &mut entry.target {
            PortTarget::Pending { queue, .. } => std::mem::take(queue),
            _ => return false,
        };
        for packet in waiting {
            // `target` is never pending here
            let _ = target.send(packet);
        }
        entry.target = target;
        true
    }

    /// Names of ports whose receivers are gone (stopped actors, dropped
    /// channel receivers).
    pub(crate) fn closed_ports(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter(|e| e.target.is_closed())
            .map(|e| e.key().to_string())
            .collect()
    }

    /// Names of all ports.
    pub(crate) fn names(&self) -> Vec<String> {
        self.ports.iter().map(|e| e.key().to_string()).collect()
    }
}

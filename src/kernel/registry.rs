//! The port registry: local port names to the actors (or channels) behind
//! them.
//!
//! This is the hot path of every inbound message: the connection actor
//! decodes a packet, looks its destination up here and hands the packet
//! straight to the target's mailbox while holding the map's read guard.

use actix::Recipient;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::mpsc;

use crate::wire::Packet;

/// Where a port's messages go.
pub(crate) enum PortTarget {
    /// An actix actor's mailbox.
    Actor(Recipient<Packet>),
    /// An unbounded channel (see [`crate::Node::port_channel`]).
    Channel(mpsc::UnboundedSender<Packet>),
}

/// What happened to a delivered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Handed to the port's mailbox.
    Delivered,
    /// No such port: dropped (reference behaviour).
    NoSuchPort,
    /// The port's receiver is gone; its entry was removed.
    Closed,
}

#[derive(Default)]
pub(crate) struct Registry {
    ports: DashMap<Box<str>, PortTarget>,
}

impl Registry {
    /// Adds a port under a name that must be free; gives the target back
    /// if the name is taken.
    pub(crate) fn insert_new(&self, name: &str, target: PortTarget) -> Result<(), PortTarget> {
        match self.ports.entry(name.into()) {
            Entry::Occupied(_) => Err(target),
            Entry::Vacant(v) => {
                v.insert(target);
                Ok(())
            }
        }
    }

    /// Removes a port; false if there was none.
    pub(crate) fn remove(&self, name: &str) -> bool {
        self.ports.remove(name).is_some()
    }

    /// Whether a port of that name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.ports.contains_key(name)
    }

    /// Number of local ports.
    pub(crate) fn len(&self) -> usize {
        self.ports.len()
    }

    /// Hands `packet` to the port named by its destination.
    pub(crate) fn deliver(&self, packet: Packet) -> Delivery {
        let Some(name) = packet.dest() else {
            return Delivery::NoSuchPort;
        };
        let Some(target) = self.ports.get(name) else {
            return Delivery::NoSuchPort;
        };
        let alive = match &*target {
            PortTarget::Actor(r) => r.connected(),
            PortTarget::Channel(tx) => !tx.is_closed(),
        };
        if !alive {
            drop(target); // removing under the guard would deadlock the shard
            self.ports.remove(name);
            return Delivery::Closed;
        }
        match &*target {
            PortTarget::Actor(r) => r.do_send(packet),
            // a receiver dropped since the check above loses this packet,
            // as an actor stopping at that moment would
            PortTarget::Channel(tx) => drop(tx.send(packet)),
        }
        Delivery::Delivered
    }
}

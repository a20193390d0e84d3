//! The node's local ports as one part: the registry (targets and their
//! monitors), the table of functions other nodes may call or spawn, and
//! the naming of fresh ports.

use std::sync::atomic::{AtomicU64, Ordering};

use super::budget::{RefusedSpawns, RelayBudget};
use super::functions::Functions;
use super::port::{alnum_random, perl_counter};
use super::port_runner::{Runner, RunnerQueue};
use super::registry::Registry;

/// Local ports, functions and port naming.
pub(crate) struct LocalPorts {
    registry: Registry,
    /// Runs the handler ports' callbacks.
    runner: Runner,
    /// The runner's queue, until the node starts its task.
    runner_queue: parking_lot::Mutex<Option<RunnerQueue>>,
    functions: Functions,
    /// Prefix of generated port names (the reference's `$UNIQ`).
    uniq: String,
    /// Prefix of the names of ports we spawn (the reference's `$RUNIQ`).
    runiq: String,
    /// Shared counter of generated port names.
    counter: AtomicU64,
    /// The last refused `_spawn`s of each peer.
    refused_spawns: RefusedSpawns,
    /// What each peer's relays wait for.
    relay_budget: RelayBudget,
}

impl LocalPorts {
    /// Empty, with fresh random prefixes, and `functions` registered.
    pub(crate) fn new(functions: Functions) -> LocalPorts {
        let (runner, queue) = Runner::new();
        LocalPorts {
            registry: Registry::default(),
            runner,
            runner_queue: parking_lot::Mutex::new(Some(queue)),
            functions,
            uniq: alnum_random(9),
            runiq: alnum_random(12),
            counter: AtomicU64::new(0),
            refused_spawns: RefusedSpawns::default(),
            relay_budget: RelayBudget::default(),
        }
    }

    /// The ports and their monitors.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The last refused `_spawn`s of each peer.
    pub(crate) fn refused_spawns(&self) -> &RefusedSpawns {
        &self.refused_spawns
    }

    /// What each peer's relays wait for.
    pub(crate) fn relay_budget(&self) -> &RelayBudget {
        &self.relay_budget
    }

    /// Runs the handler ports' callbacks.
    pub(crate) fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The runner's queue, once: for the node to start the runner task.
    pub(crate) fn take_runner_queue(&self) -> Option<RunnerQueue> {
        self.runner_queue.lock().take()
    }

    /// The functions other nodes may call or spawn ports with.
    pub(crate) fn functions(&self) -> &Functions {
        &self.functions
    }

    /// A fresh port name, `<uniq>.<counter>` (never reused).
    pub(crate) fn new_port_name(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}", self.uniq, perl_counter(n))
    }

    /// A fresh name for a port we spawn, `<runiq>.<counter>`.
    pub(crate) fn new_spawn_name(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}", self.runiq, perl_counter(n))
    }
}

//! Functions other nodes may call by name: *init functions*, which create
//! the port behind a spawn (`AnyEvent::MP::_spawn`), and *plain
//! functions*, which a node-port request `["", "Pkg::func", args…]` calls
//! with no port involved. One table for both, as the reference resolves
//! both through `load_func`; unknown names are logged by the caller and
//! nothing is cached about them.

use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;

use super::handler::{HandlerError, PortBehaviour, PortContext};
use super::node::Node;
use crate::error::{FunctionNameError, SpawnError};

/// An init function: gets the new port's context (its future id and the
/// node) and the spawner's init arguments, and returns what receives the
/// port's messages. Returning an error (or panicking) creates no port.
pub type InitFn =
    Arc<dyn Fn(&PortContext, Vec<Value>) -> Result<PortBehaviour, HandlerError> + Send + Sync>;

/// A plain function: gets the node and the request's arguments.
pub type PlainFn = Arc<dyn Fn(&Node, Vec<Value>) -> Result<(), HandlerError> + Send + Sync>;

/// A function of a service plugged in from above: like a plain function,
/// and told which node sent the request (our own id for local ones), as
/// the reference's `$SRCNODE`.
pub(crate) type SourcedFn =
    Arc<dyn Fn(&Node, &str, Vec<Value>) -> Result<(), HandlerError> + Send + Sync>;

/// A registered function.
#[derive(Clone)]
pub(crate) enum Function {
    Init(InitFn),
    Plain(PlainFn),
    Sourced(SourcedFn),
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Function::Init(_) => f.write_str("Init"),
            Function::Plain(_) => f.write_str("Plain"),
            Function::Sourced(_) => f.write_str("Sourced"),
        }
    }
}

/// The table of registered functions.
#[derive(Default)]
pub(crate) struct Functions {
    map: DashMap<String, Function, ahash::RandomState>,
}

impl Functions {
    /// Registers `function` under `name` (replacing an earlier one).
    pub(crate) fn insert(&self, name: &str, function: Function) {
        self.map.insert(name.to_owned(), function);
    }

    /// The function called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Function> {
        self.map.get(name).map(|f| f.clone())
    }

    /// Whether some function of package `pkg` (`"Pkg::"`) is registered.
    pub(crate) fn has_package(&self, pkg: &str) -> bool {
        self.map.iter().any(|e| e.key().starts_with(pkg))
    }
}

/// Checks a function name: fully qualified (`Pkg::func`), as the reference
/// requires for spawn.
pub(crate) fn check_name(name: &str) -> Result<(), FunctionNameError> {
    if name.contains("::") && !name.ends_with("::") {
        Ok(())
    } else {
        Err(FunctionNameError(name.to_owned()))
    }
}

impl Node {
    /// Registers an init function that other nodes (and this one) may
    /// spawn ports with, under its fully qualified name (`My::Worker::init`).
    pub fn register_init(
        &self,
        name: &str,
        f: impl Fn(&PortContext, Vec<Value>) -> Result<PortBehaviour, HandlerError>
        + Send
        + Sync
        + 'static,
    ) -> Result<(), SpawnError> {
        check_name(name).map_err(SpawnError::InitName)?;
        self.inner()
            .ports
            .functions()
            .insert(name, Function::Init(Arc::new(f)));
        Ok(())
    }

    /// Registers a service's function that a node-port request
    /// `["", "Pkg::func", args…]` calls with the sending node's id.
    pub(crate) fn register_sourced_fn(
        &self,
        name: &str,
        f: impl Fn(&Node, &str, Vec<Value>) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Result<(), SpawnError> {
        check_name(name).map_err(SpawnError::InitName)?;
        self.inner()
            .ports
            .functions()
            .insert(name, Function::Sourced(Arc::new(f)));
        Ok(())
    }

    /// Registers a plain function that a node-port request
    /// `["", "Pkg::func", args…]` calls.
    pub fn register_fn(
        &self,
        name: &str,
        f: impl Fn(&Node, Vec<Value>) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Result<(), SpawnError> {
        check_name(name).map_err(SpawnError::InitName)?;
        self.inner()
            .ports
            .functions()
            .insert(name, Function::Plain(Arc::new(f)));
        Ok(())
    }
}

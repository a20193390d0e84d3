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
use crate::error::{FunctionError, FunctionNameError, ServiceError};

/// An init function: gets the new port's context (its future id and the
/// node) and the spawner's init arguments, and returns what receives the
/// port's messages. Returning an error (or panicking) creates no port.
pub type InitFn =
    Arc<dyn Fn(&PortContext, Vec<Value>) -> Result<PortBehaviour, HandlerError> + Send + Sync>;

/// A plain function: gets the node and the request's arguments.
pub type PlainFn = Arc<dyn Fn(&Node, Vec<Value>) -> Result<(), HandlerError> + Send + Sync>;

/// A registered function.
#[derive(Clone)]
pub(crate) enum Function {
    Init(InitFn),
    Plain(PlainFn),
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Function::Init(_) => f.write_str("Init"),
            Function::Plain(_) => f.write_str("Plain"),
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

/// Packages that are always "loaded" in an aemp node (the reference's
/// own modules): naming them as a service does nothing.
const BUILTIN_PACKAGES: &[&str] = &[
    "AnyEvent::MP::",
    "AnyEvent::MP::Kernel::",
    "AnyEvent::MP::Global::",
    "AnyEvent::MP::Transport::",
    "AnyEvent::MP::Node::",
    "AnyEvent::MP::Config::",
];

impl super::node::NodeInner {
    /// Starts one configured service: `"Pkg::"` (a package), `"Pkg::func"`
    /// (called without arguments) or `["Pkg::func", args…]`.
    pub(crate) fn start_service(&self, service: &Value) -> Result<(), ServiceError> {
        let (name, args) = match service {
            Value::String(s) => (s.as_str(), Vec::new()),
            Value::Array(a) => match a.split_first() {
                Some((Value::String(s), rest)) => (s.as_str(), rest.to_vec()),
                _ => return Err(ServiceError::BadArray),
            },
            _ => return Err(ServiceError::BadSpec),
        };
        if name.ends_with("::") && args.is_empty() {
            return if BUILTIN_PACKAGES.contains(&name) || self.ports.functions().has_package(name) {
                Ok(())
            } else {
                Err(ServiceError::NoPackage(name.to_owned()))
            };
        }
        match self.ports.functions().get(name) {
            Some(Function::Plain(f)) => Ok(self.call_plain(&f, args)?),
            Some(Function::Init(_)) => Err(ServiceError::InitFunction(name.to_owned())),
            None => Err(ServiceError::UnknownFunction(name.to_owned())),
        }
    }

    /// Calls a plain function; its error, or its panic's text.
    pub(crate) fn call_plain(&self, f: &PlainFn, args: Vec<Value>) -> Result<(), FunctionError> {
        let node = self.handle();
        match super::user_code::run(|| f(&node, args)) {
            Ok(result) => result.map_err(FunctionError::Failed),
            Err(text) => Err(FunctionError::Panicked(text)),
        }
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

//! Calling registered plain functions: the node-port request
//! `["", "Pkg::func", args…]` and the services configured to run at
//! start.

use serde_json::Value;

use super::functions::{Function, PlainFn, SourcedFn};
use super::node::NodeInner;
use crate::error::{FunctionError, ServiceError};

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

impl NodeInner {
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
            Some(Function::Sourced(f)) => Ok(self.call_sourced(&f, &self.id, args)?),
            Some(Function::Init(_)) => Err(ServiceError::InitFunction(name.to_owned())),
            None => Err(ServiceError::UnknownFunction(name.to_owned())),
        }
    }

    /// Calls a service's function for a request from `from`; its error,
    /// or its panic's text.
    pub(crate) fn call_sourced(
        &self,
        f: &SourcedFn,
        from: &str,
        args: Vec<Value>,
    ) -> Result<(), FunctionError> {
        let node = self.handle();
        match super::user_code::run(|| f(&node, from, args)) {
            Ok(result) => result.map_err(FunctionError::Failed),
            Err(text) => Err(FunctionError::Panicked(text)),
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

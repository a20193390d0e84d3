//! The kernel: the node, its ports and their registry, monitors, the
//! node-port requests, spawning, and the table of peers — the Rust
//! counterpart of `AnyEvent::MP::Kernel`.

mod cal;
mod functions;
mod handler;
mod lifecycle;
mod link;
mod monitor;
mod node;
mod node_port;
mod peers;
mod port;
mod registry;
mod spawn;

pub use functions::{InitFn, PlainFn};
pub use handler::{HandlerError, HandlerFn, PortBehaviour, PortContext};
pub use lifecycle::MonNodesGuard;
pub use monitor::{Monitor, MonitorGuard, Reason};
pub use node::{Node, NodeBuilder, NodeEvent};
pub use node_port::EVAL_REFUSED;
pub use port::{PortId, alnum_random};

pub(crate) use functions::Function;
pub(crate) use node::NodeInner;
pub(crate) use port::check_node_id;

/// Locks `m`, also after a panic elsewhere poisoned it: no code here
/// panics while holding these locks, and the data stays usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

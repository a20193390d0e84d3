//! The kernel: the node, its ports and their registry, monitors, the
//! node-port requests, spawning, and the table of peers — the Rust
//! counterpart of `AnyEvent::MP::Kernel`.

mod cal;
mod functions;
mod handler;
mod lifecycle;
mod link;
mod monitor;
mod monitors;
mod node;
mod node_port;
mod peers;
mod port;
mod ports;
mod registry;
mod remote;
mod services;
mod spawn;
mod user_code;
mod watchers;

pub use functions::{InitFn, PlainFn};
pub use handler::{HandlerError, HandlerFn, PortBehaviour, PortContext};
pub use lifecycle::MonNodesGuard;
pub use monitor::{Monitor, MonitorGuard};
pub use monitors::Reason;
pub use node::{Node, NodeEvent};
pub use node_port::EVAL_REFUSED;
pub use port::{PortId, alnum_random};
pub use watchers::NodeChange;

pub(crate) use functions::{Function, Functions, check_name};
pub(crate) use node::{NodeInner, WeakNode};

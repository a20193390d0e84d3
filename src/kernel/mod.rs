//! The kernel: the node, its ports and their registry, monitors, the
//! node-port requests, spawning, and the table of peers — the Rust
//! counterpart of `AnyEvent::MP::Kernel`.
//!
//! Parts that own their data, each in its file and with private fields:
//! `ports.rs` (local ports: the registry of `registry.rs`, the functions of
//! `functions.rs`, port naming), `remote.rs` (other nodes: the peer table
//! and handshake slots of `peers.rs`, addresses, the monitor tables of
//! `monitors.rs`), `watchers.rs` (node-change callbacks) and `services.rs`
//! (services plugged in from above). `node.rs` holds them and the
//! [`Node`] facade; the behaviour that spans parts lives in a file named
//! after it: `monitor.rs`, `node_port.rs`, `spawn.rs`, `cal.rs`,
//! `lifecycle.rs` (nodes up and down), `link.rs` (what the transport calls),
//! `handler.rs` (handler ports), `port_runner.rs` (the task that runs
//! them), `rcv.rs` (their tag dispatch), `calls.rs` (plain functions and
//! configured services), `user_code.rs` (running user code), `awaiting.rs` (futures and
//! streams to wait on) and `port_work.rs` (`psub`, `peval`, `mon_guard`,
//! `after`). Parts
//! import no behaviour; the one circle left is of types: the callbacks in
//! the function table receive the [`Node`] that holds the table.

mod actor;
mod awaiting;
mod budget;
mod cal;
mod calls;
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
mod port_runner;
mod port_work;
mod ports;
mod rcv;
mod registry;
mod remote;
mod services;
mod spawn;
mod src_node;
mod user_code;
mod watchers;

pub use actor::{ActorPort, PortKilled};
pub use awaiting::{MonitorFuture, NodeChanges, NodeUpdate};
pub use budget::LIMIT_EXCEEDED;
pub(crate) use budget::limit_reason;
pub use functions::{InitFn, PlainFn};
pub use handler::{AsyncHandlerFn, HandlerError, HandlerFn, PortBehaviour, PortContext};
pub use lifecycle::MonNodesGuard;
pub use monitor::{Monitor, MonitorGuard};
pub use monitors::Reason;
pub use node::{Node, NodeEvent};
pub use node_port::EVAL_REFUSED;
pub use port::{PortId, alnum_random};
pub use port_work::Task;
pub use rcv::{NO_CALLBACK, Rcv};
pub use remote::PeerAuth;
pub use watchers::NodeChange;

pub(crate) use functions::{Function, Functions, check_name};
pub(crate) use node::{NodeInner, WeakNode};

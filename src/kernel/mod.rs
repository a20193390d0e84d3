//! The kernel: the node, its port registry and its table of peers —
//! the Rust counterpart of `AnyEvent::MP::Kernel`.

mod node;
mod peers;
mod port;
mod registry;

pub use node::{Node, NodeBuilder, NodeEvent};
pub use port::PortId;

pub(crate) use node::NodeInner;
pub(crate) use port::check_node_id;
pub(crate) use registry::Delivery;

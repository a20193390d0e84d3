//! aemp: AEMP, the message-passing protocol of Perl's AnyEvent::MP, in Rust.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod kernel;
mod transport;
pub mod wire;

pub use config::NodeConfig;
pub use error::{ConnectionError, PortError, SendError, StartError};
pub use kernel::{Node, NodeBuilder, NodeEvent, PortId};
pub use wire::{Lenient, Packet};

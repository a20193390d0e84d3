//! aemp: AEMP, the message-passing protocol of Perl's AnyEvent::MP, in Rust.
//!
//! A [`Node`] has local ports (actix actors or channels, registered under
//! `<nodeid>#<name>`), listens and dials TCP, runs the reference's
//! handshake on every connection, and routes each decoded packet straight
//! to its port's mailbox. Messages are JSON arrays; send anything that
//! serializes to one, decode into your own types ([`Packet::decode`]).
//!
//! ```
//! use aemp::{Node, Packet};
//!
//! actix_rt::System::new().block_on(async {
//!     // node "a" listens on an OS-chosen port; node "b" seeds it
//!     let a = Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
//!     let (inbox, mut rx) = a.port_channel_named("inbox").unwrap();
//!     let b = Node::builder()
//!         .node_id("b")
//!         .secret("s")
//!         .seed(a.listen_addrs()[0].to_string())
//!         .start()
//!         .await
//!         .unwrap();
//!
//!     // queued until the connection to "a" is up, then sent in order
//!     b.snd(&inbox, &("hello", 42)).unwrap();
//!     let msg: Packet = rx.recv().await.unwrap();
//!     assert_eq!(msg.decode::<(String, u32)>().unwrap(), ("hello".to_string(), 42));
//!     a.shutdown();
//!     b.shutdown();
//! });
//! ```
//!
//! Layers: [`wire`] is the sans-IO protocol core (greeting, auth, the
//! handshake state machine, framing, packets); the transport (connection
//! actors, listeners, dialling) moves bytes; [`kernel`] holds the node, its
//! port registry and its peers.
#![warn(missing_docs)]

mod builder;
pub mod config;
pub mod error;
pub mod global;
pub mod kernel;
mod transport;
pub mod wire;

pub use builder::NodeBuilder;
pub use config::NodeConfig;
pub use error::{
    AddressError, CalError, ConnectionError, FunctionError, FunctionNameError, InvalidConfig,
    NodeIdError, PortError, SendError, ServiceError, SettingError, SpawnError, StartError,
};
pub use global::{GroupError, GroupMonitor, GroupRegistration};
pub use kernel::{
    HandlerError, Monitor, MonitorGuard, Node, NodeChange, NodeEvent, PortBehaviour, PortContext,
    PortId, Reason,
};
pub use transport::binds::resolve as resolve_binds;
pub use wire::{Lenient, Packet};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

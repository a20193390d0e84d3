//! aemp: AEMP, the message-passing protocol of Perl's AnyEvent::MP, in Rust.
//!
//! A [`Node`] has local ports (handler callbacks, actix actors or
//! channels, registered under `<nodeid>#<name>`), listens and dials TCP,
//! runs the reference's handshake on every connection, and routes each
//! decoded packet straight to its port's mailbox (a handler port's is the
//! node's port runner). Messages are JSON arrays; send anything that
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
//! # Layers
//!
//! Each layer uses only the ones below it (`tests/layers.rs` checks this
//! from the source, and that `wire/` has no import cycle):
//!
//! ```text
//!   builder      NodeBuilder: puts the layers together
//!   logcatcher   the log catcher: forwarding log events, catching them
//!   dataconn     data connections: raw streams between nodes
//!   global       the Global service: mesh, seeds, port groups
//!   kernel       the node: local ports, remote nodes, monitors, requests
//!   transport    listeners, dialling, handshake driver, connection actors
//!   error        the node API's errors
//!   config       settings, their defaults and checks, the config file
//!   wire         sans-IO core: greeting, auth, handshake, slots, framing,
//!                packets, node-port and Global messages
//! ```
//!
//! [`wire`] reads no socket, clock or random generator: time and nonces
//! come in as arguments, so every protocol rule is a plain function or
//! state machine, tested and fuzzed on bytes. The transport only moves
//! bytes: it reaches the kernel through a narrow interface the kernel
//! implements (route a packet, claim/attach/lose a connection). The
//! [`kernel`] is made of parts that own their data (local ports, remote
//! nodes, node-change watchers, services) behind the [`Node`] facade.
//! [`global`] is a service on top of the kernel, plugged in through the
//! node's own interface: node-change callbacks, an init function, ports.
#![warn(missing_docs)]

mod builder;
pub mod config;
pub mod dataconn;
pub mod error;
pub mod global;
pub mod kernel;
pub mod logcatcher;
mod transport;
pub mod wire;

pub use builder::NodeBuilder;
pub use config::NodeConfig;
pub use dataconn::{DataConnError, DataStream};
pub use error::{
    AddressError, CalError, ConnectionError, FunctionError, FunctionNameError, InvalidConfig,
    NodeIdError, PortError, RcvError, SendError, ServiceError, SettingError, SpawnError,
    StartError,
};
pub use global::{GroupChange, GroupChanges, GroupError, GroupMonitor, GroupRegistration};
pub use kernel::LIMIT_EXCEEDED;
pub use kernel::{
    ActorPort, HandlerError, Monitor, MonitorFuture, MonitorGuard, NO_CALLBACK, Node, NodeChange,
    NodeChanges, NodeEvent, NodeUpdate, PeerAuth, PortBehaviour, PortContext, PortId, PortKilled,
    Rcv, Reason, Task,
};
pub use transport::binds::resolve as resolve_binds;
pub use transport::limits::Limit;
pub use wire::{Lenient, Packet, Tagged, TaggedError};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

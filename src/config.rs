//! Node settings.
//!
//! The keys and defaults are the reference's (`AnyEvent::MP::Config`);
//! reading them from the Perl tool's configuration file comes with the
//! `aemp` command.

use std::time::Duration;

use crate::wire::{
    AuthMethod, DEFAULT_AUTH_ACCEPT, DEFAULT_AUTH_OFFER, DEFAULT_MAX_DEPTH, DEFAULT_MAX_PACKET,
    DEFAULT_MONITOR_TIMEOUT, Framing, Secret,
};

/// The node id that means "make one up": `anon/<random>`.
pub const ANON_NODE_ID: &str = "anon/";

/// Everything a node is started with. Build it through
/// [`Node::builder`](crate::Node::builder).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node id; [`ANON_NODE_ID`] (the default) makes a random one.
    pub node_id: String,
    /// The shared secret. Without it (and without TLS) no handshake
    /// succeeds, as in the reference.
    pub secret: Option<Secret>,
    /// Addresses to listen on, `host:port` (port 0: any free port). No
    /// binds: a listener-less node, which can only dial out.
    pub binds: Vec<String>,
    /// Seed addresses, `host:port`, dialled at start; the node id behind
    /// each is learned from its greeting.
    pub seeds: Vec<String>,
    /// Auth methods we send (reference default:
    /// `tls_md6_64_256,hmac_md6_64_256`).
    pub auth_offer: Vec<AuthMethod>,
    /// Auth methods we accept and list in our greeting (reference default:
    /// `tls_md6_64_256,hmac_md6_64_256,tls_anon,cleartext`).
    pub auth_accept: Vec<AuthMethod>,
    /// Framings we accept and list in our greeting, in preference order.
    pub framings: Vec<Framing>,
    /// Handshake deadline (absolute, from connect/accept); later also the
    /// connect timeout and keepalive interval (reference default 30 s).
    pub monitor_timeout: Duration,
    /// Pause between connect attempts (reference default 2 s).
    pub connect_interval: Duration,
    /// TCP_NODELAY on connections (reference default on).
    pub nodelay: bool,
    /// Largest packet accepted from a peer, in bytes.
    pub max_packet: usize,
    /// Deepest nesting of arrays and objects accepted in a packet.
    pub max_depth: usize,
    /// Most bytes queued for one connection (or waiting for one node that
    /// is not up) before sends fail.
    pub max_send_queue: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: ANON_NODE_ID.to_owned(),
            secret: None,
            binds: Vec::new(),
            seeds: Vec::new(),
            auth_offer: DEFAULT_AUTH_OFFER.to_vec(),
            auth_accept: DEFAULT_AUTH_ACCEPT.to_vec(),
            framings: Framing::ALL.to_vec(),
            monitor_timeout: DEFAULT_MONITOR_TIMEOUT,
            connect_interval: Duration::from_secs(2),
            nodelay: true,
            max_packet: DEFAULT_MAX_PACKET,
            max_depth: DEFAULT_MAX_DEPTH,
            max_send_queue: 64 * 1024 * 1024,
        }
    }
}

impl NodeConfig {
    /// Checks the settings; the error says which one is unusable.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id != ANON_NODE_ID {
            crate::kernel::check_node_id(&self.node_id)?;
        }
        if self.auth_offer.is_empty() {
            return Err("auth_offer is empty: no handshake could succeed".into());
        }
        if self.auth_accept.is_empty() {
            return Err("auth_accept is empty: no handshake could succeed".into());
        }
        if self.framings.is_empty() {
            return Err("framing_format is empty".into());
        }
        if self.monitor_timeout.is_zero() {
            return Err("monitor_timeout must be positive".into());
        }
        if self.connect_interval.is_zero() {
            return Err("connect_interval must be positive".into());
        }
        if self.max_packet == 0 || self.max_depth == 0 || self.max_send_queue == 0 {
            return Err("max_packet, max_depth and max_send_queue must be positive".into());
        }
        Ok(())
    }
}

//! Node settings, and the configuration file they come from.
//!
//! The keys and defaults are the reference's (`AnyEvent::MP::Config`); the
//! file is the one the Perl `aemp` tool edits (see [`mod@file`]).

pub mod file;
mod pretty;

use std::time::Duration;

use serde_json::{Map, Value};

pub use file::{ConfigError, ConfigFile, default_path, default_profile, fuzz_config};
pub use pretty::perl_pretty;

use thiserror::Error;

use crate::wire::{
    AuthMethod, DEFAULT_AUTH_ACCEPT, DEFAULT_AUTH_OFFER, DEFAULT_MAX_DEPTH, DEFAULT_MAX_PACKET,
    DEFAULT_MONITOR_TIMEOUT, Framing, HandshakeConfig, NodeCert, Secret,
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
    /// each is learned from its greeting. At start they are expanded as
    /// the binds are (a number alone is `<hostname>:<number>`, `*` every
    /// non-loopback address, each address of a name its own seed;
    /// Kernel.pm 446), without the binds' 127.0.0.1 fallback.
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
    /// Largest packet accepted from a peer, in bytes: for JSON, the bytes
    /// of one text (checked while it is still incomplete); for storable
    /// and cbor, the declared length (checked before anything waits for
    /// it). A larger one ends the connection with `packet larger than
    /// <limit> bytes`. Default 64 MiB (file key `max_packet`; the
    /// reference has no limit).
    pub max_packet: usize,
    /// Deepest nesting of arrays and objects accepted in a packet.
    pub max_depth: usize,
    /// Most bytes queued for one connection, and waiting for one node
    /// that is not up (they move into its connection's queue when it comes
    /// up). A fire-and-forget send past it fails the connection (or the
    /// wait) with `send queue overflow`; see [`crate::Node::snd`]. Default
    /// 64 MiB (file key `max_send_queue`; the reference has no bound).
    pub max_send_queue: usize,
    /// Our TLS certificate (the `cert` setting): with one, our greeting
    /// announces `tls=1.0` and connections to peers that announce it too
    /// switch to TLS after the greeting lines.
    pub cert: Option<std::sync::Arc<NodeCert>>,
    /// Services called when the node starts: `"Pkg::func"` (a registered
    /// plain function, no arguments), `["Pkg::func", args…]`, or `"Pkg::"`
    /// (a package: some function of it must be registered).
    pub services: Vec<Value>,
    /// Whether [`NodeConfig::services`] is inherited — set by
    /// [`ConfigFile::node_config`] when the list comes from the file's
    /// global section or a parent profile, not from the node's own profile
    /// or the caller.
    ///
    /// aemp's policy for a configuration file shared with Perl nodes: a
    /// service the node implements (a registered function or package, or
    /// a built-in package) runs; one it does not implement (a Perl-only
    /// `"MyApp::"`, say) refuses the start only when the node's own
    /// profile (or the program) lists it — as Perl refuses an unloadable
    /// service, Kernel.pm 448–458 — and is skipped with a warning when
    /// inherited. Other failures (a service that fails, an init function
    /// named as a service, a malformed entry) always refuse the start.
    pub inherited_services: bool,
    /// Longest wait a peer may ask of us for a data connection (the
    /// timeout in its `AnyEvent::MP::DataConn::_expect`; the reference
    /// takes any value): larger ones are clamped to this. Default 300 s.
    pub dataconn_max_timeout: Duration,
    /// Most data connections one peer may have us expect at a time;
    /// further `_expect` requests are refused. Default 16.
    pub dataconn_max_pending: usize,

    // -- handshakes, packets and send queues (issue 13) --
    /// Most handshakes pending on one listener (accepted connections that
    /// have not finished their handshake); one more is closed at once —
    /// unless its source address holds fewer there than the address
    /// holding the most, less one: then the oldest of that address's is
    /// closed instead, so a few addresses cannot lock everyone out.
    /// Default 4096 (file key `max_pending_handshakes`; the reference has
    /// no cap).
    pub max_pending_handshakes: usize,
    /// Most handshakes pending from one source address (an IPv6 address
    /// counts by its /64 prefix), over all listeners; one more is closed
    /// at once. Default 1024, a quarter of the listener's cap, so that one
    /// address cannot lock everyone out (file key
    /// `max_pending_handshakes_per_addr`).
    pub max_pending_handshakes_per_addr: usize,
    /// Most connections this node dials at a time, over all nodes (a TCP
    /// connect and its handshake); further dials wait for one of them to
    /// finish. Peers can have us reach many nodes (relays, Global `nodes`
    /// messages, each within its per-peer cap); this keeps the sockets
    /// that costs below the process's file limit. Default 256 (file key
    /// `max_pending_dials`; the reference has no cap).
    pub max_pending_dials: usize,
    // ---- liveness (a documented deviation: the reference relies on TCP
    // alone and notices a stopped peer never)
    /// The heartbeat: when nothing arrived from a peer for a quarter of
    /// this, a `["", "time", <port>]` request goes to it (Perl nodes and
    /// aemp answer it); when nothing at all arrived for this long (and a
    /// request went out at least three quarters of it ago), the
    /// connection fails with `("transport_error", <node>, "peer
    /// timeout")`. Any inbound bytes count as an answer, and so does the
    /// socket taking data again after a send backlog had filled it (the
    /// peer is reading). `None`:
    /// no heartbeat. Default [`DEFAULT_PEER_TIMEOUT`]; file key
    /// `peer_timeout` (seconds, `0`: none).
    pub peer_timeout: Option<Duration>,
    /// TCP keepalive timing on every connection: an idle connection to a
    /// host that is gone (not a stopped process: its kernel answers) is
    /// noticed within this (first probe after half of it, then 3 probes
    /// a sixth apart). `None`: SO_KEEPALIVE with the system's timing
    /// (Linux: 2 h idle), as the reference. Default
    /// [`DEFAULT_TCP_KEEPALIVE`]; file key `tcp_keepalive` (seconds, `0`:
    /// the system's).
    pub tcp_keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT` (Linux) on every connection: data we sent that
    /// stays unacknowledged this long, or a zero window that stays shut
    /// this long, fails the connection (`Connection timed out`). `None`:
    /// the system's (Linux: about 15 min of retransmits). Default
    /// [`DEFAULT_TCP_USER_TIMEOUT`]; file key `tcp_user_timeout` (seconds,
    /// `0`: the system's).
    pub tcp_user_timeout: Option<Duration>,
    // --- per-peer state limits (issue 13) ---
    // The reference has none; each is a documented deviation (README,
    // "Limits and failure behaviour"). Each counts per peer node, gives
    // its budget back when the state goes, and counts its refusals
    // ([`crate::Node::limit_hits`]).
    /// Most live ports one peer may have spawned on this node (`_spawn`);
    /// a `_spawn` over it makes no port and is answered with a `kil0` of
    /// the named port, reason `["limit_exceeded", "spawned_ports", text]`.
    /// A spawned port counts until it dies (also after its spawner's
    /// connection is gone: spawned ports outlive their spawner, as in the
    /// reference). Default 100,000 (a Perl master spawning tens of
    /// thousands of workers on one node is legitimate); `0` refuses every
    /// `_spawn`. Configuration-file key `peer_max_spawned_ports`.
    pub peer_max_spawned_ports: usize,
    /// Most of our ports one peer may monitor (`mon1`); a `mon1` over it
    /// is answered with `kil0 ["limit_exceeded", "remote_monitors",
    /// text]`, so the peer's monitor fires. A registration counts until
    /// `mon0`, the port's death, or the peer's node going down. Default
    /// 100,000 (one monitor per spawned port of a full budget).
    /// Configuration-file key `peer_max_monitors`.
    pub peer_max_monitors: usize,
    /// Most Global group registrations (group, port) one peer may hold
    /// here (its `reg1` and `set`); over it, all its registrations here
    /// are dropped and the Global port it spawned here is killed with
    /// `["limit_exceeded", "group_registrations", text]` (its node
    /// forgets its Global link to us, as at a port death, until it links
    /// up again; it then gets our registrations again). Registrations
    /// count until `reg0` or the peer's node going down. Default 100,000.
    /// Configuration-file key `peer_max_group_registrations`.
    pub peer_max_group_registrations: usize,
    /// Most addresses one Global `addr` or `nodes` message of a peer may
    /// carry (all nodes' together; a node listed without addresses counts
    /// as one); over it, the message is dropped and the peer's Global port
    /// here is killed with `["limit_exceeded", "group_addresses", text]`.
    /// Default 10,000 (a master passing on a network of thousands of
    /// nodes). Configuration-file key `peer_max_addresses`.
    pub peer_max_addresses: usize,
    /// Most nodes one peer may have us try to reach at a time by naming
    /// them in Global `nodes` messages: nodes we had no connection and no
    /// Global link with, each held until it comes up or the attempt gives
    /// up (`monitor_timeout`). Nodes over it are skipped (not dialled) and
    /// the refusal counted ([`crate::Limit::IntroducedNodes`]); the peer's
    /// Global link stays. Default 10,000. Configuration-file key
    /// `peer_max_introduced_nodes`.
    pub peer_max_introduced_nodes: usize,
    /// Most nodes that are not up one peer may have us queue relayed
    /// messages for at a time (node-port `snd` requests, and the replies
    /// to its `time`, `info` and similar requests when they name a port
    /// on such a node); each node is held until it comes up or the attempt
    /// gives up. All that one peer's relays queue that way together is
    /// bounded by [`NodeConfig::max_send_queue`] too. A relay over either
    /// bound is dropped and counted ([`crate::Limit::RelayQueue`]); the
    /// peer's connection stays. Relays to nodes that are up are not
    /// counted. Default 10,000. Configuration-file key
    /// `peer_max_relay_nodes`.
    pub peer_max_relay_nodes: usize,
    // --- end of the per-peer state limits ---
}

/// Default of [`NodeConfig::peer_max_spawned_ports`].
pub const DEFAULT_PEER_MAX_SPAWNED_PORTS: usize = 100_000;

/// Default of [`NodeConfig::peer_max_monitors`].
pub const DEFAULT_PEER_MAX_MONITORS: usize = 100_000;

/// Default of [`NodeConfig::peer_max_group_registrations`].
pub const DEFAULT_PEER_MAX_GROUP_REGISTRATIONS: usize = 100_000;

/// Default of [`NodeConfig::peer_max_addresses`].
pub const DEFAULT_PEER_MAX_ADDRESSES: usize = 10_000;

/// Default of [`NodeConfig::peer_max_introduced_nodes`].
pub const DEFAULT_PEER_MAX_INTRODUCED_NODES: usize = 10_000;

/// Default of [`NodeConfig::peer_max_relay_nodes`].
pub const DEFAULT_PEER_MAX_RELAY_NODES: usize = 10_000;

/// Default of [`NodeConfig::peer_timeout`]: a stopped peer is noticed
/// within a minute, and a peer has 45 s to answer a heartbeat.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// The shortest [`NodeConfig::peer_timeout`], [`NodeConfig::tcp_keepalive`]
/// or [`NodeConfig::tcp_user_timeout`] accepted: 100 ms.
pub const MIN_LIVENESS_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest duration setting accepted, 10^9 s (about 31 years), as in
/// the configuration file: a deadline further off could overflow the
/// clock.
pub const MAX_SETTING_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Default of [`NodeConfig::tcp_keepalive`].
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Default of [`NodeConfig::tcp_user_timeout`].
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Default of [`NodeConfig::dataconn_max_timeout`].
pub const DEFAULT_DATACONN_MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Default of [`NodeConfig::dataconn_max_pending`].
pub const DEFAULT_DATACONN_MAX_PENDING: usize = 16;

/// Default of [`NodeConfig::max_pending_handshakes`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 4096;

/// Default of [`NodeConfig::max_pending_dials`].
pub const DEFAULT_MAX_PENDING_DIALS: usize = 256;

/// Default of [`NodeConfig::max_pending_handshakes_per_addr`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES_PER_ADDR: usize = 1024;

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: ANON_NODE_ID.to_owned(),
            secret: None,
            binds: Vec::new(),
            seeds: Vec::new(),
            auth_offer: DEFAULT_AUTH_OFFER.to_vec(),
            auth_accept: DEFAULT_AUTH_ACCEPT.to_vec(),
            framings: Framing::DEFAULT.to_vec(),
            monitor_timeout: DEFAULT_MONITOR_TIMEOUT,
            connect_interval: Duration::from_secs(2),
            nodelay: true,
            max_packet: DEFAULT_MAX_PACKET,
            max_depth: DEFAULT_MAX_DEPTH,
            max_send_queue: 64 * 1024 * 1024,
            services: Vec::new(),
            inherited_services: false,
            cert: None,
            dataconn_max_timeout: DEFAULT_DATACONN_MAX_TIMEOUT,
            dataconn_max_pending: DEFAULT_DATACONN_MAX_PENDING,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_pending_handshakes_per_addr: DEFAULT_MAX_PENDING_HANDSHAKES_PER_ADDR,
            max_pending_dials: DEFAULT_MAX_PENDING_DIALS,
            peer_timeout: Some(DEFAULT_PEER_TIMEOUT),
            tcp_keepalive: Some(DEFAULT_TCP_KEEPALIVE),
            tcp_user_timeout: Some(DEFAULT_TCP_USER_TIMEOUT),
            // per-peer state limits (issue 13)
            peer_max_spawned_ports: DEFAULT_PEER_MAX_SPAWNED_PORTS,
            peer_max_monitors: DEFAULT_PEER_MAX_MONITORS,
            peer_max_group_registrations: DEFAULT_PEER_MAX_GROUP_REGISTRATIONS,
            peer_max_addresses: DEFAULT_PEER_MAX_ADDRESSES,
            peer_max_introduced_nodes: DEFAULT_PEER_MAX_INTRODUCED_NODES,
            peer_max_relay_nodes: DEFAULT_PEER_MAX_RELAY_NODES,
        }
    }
}

/// A list setting: a JSON array, or a comma-separated string (as the Perl
/// tool writes `setseeds a,b`).
fn list(key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    let bad = || ConfigError::Value {
        key: key.to_owned(),
        message: format!("expected a list, got {v}"),
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(s.split(',').map(|p| p.trim().to_owned()).collect()),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// A number setting: a JSON number or a numeric string (`"5"`).
fn number(key: &str, v: &Value) -> Result<f64, ConfigError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite())
        .ok_or_else(|| ConfigError::Value {
            key: key.to_owned(),
            message: format!("expected a number, got {v}"),
        })
}

/// Perl's truthiness: `"0"`, `""`, `0`, false and null are false.
pub(crate) fn perl_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "0"),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A string setting (numbers are taken as their text).
fn text(key: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(ConfigError::Value {
            key: key.to_owned(),
            message: format!("expected a string, got {v}"),
        }),
    }
}

impl NodeConfig {
    /// Settings from an effective configuration (see
    /// [`ConfigFile::resolve`]) of profile `profile`: the node id is
    /// `nodeid`, else the profile name; binds default to the reference's
    /// `["*"]`. Framings and auth methods aemp does not support are
    /// skipped with a log line; `cert` must be a usable PEM blob (see
    /// [`NodeCert`]), and is
    /// ignored with a warning.
    pub fn from_values(
        profile: &str,
        values: &Map<String, Value>,
    ) -> Result<NodeConfig, ConfigError> {
        let mut c = NodeConfig {
            binds: vec!["*".to_owned()],
            ..NodeConfig::default()
        };
        c.node_id = match values.get("nodeid") {
            Some(v) if !v.is_null() => text("nodeid", v)?,
            _ => profile.to_owned(),
        };
        for (key, v) in values {
            match key.as_str() {
                "secret" if !v.is_null() => c.secret = Some(Secret::from(text(key, v)?)),
                // `$binds ||= ["*"]`: only a false value keeps the default
                "binds" if perl_truthy(v) => c.binds = list(key, v)?,
                "seeds" => c.seeds = list(key, v)?,
                "monitor_timeout" => c.monitor_timeout = seconds(key, v)?,
                "connect_interval" => c.connect_interval = seconds(key, v)?,
                "nodelay" => c.nodelay = perl_truthy(v),
                "framing_format" => {
                    c.framings = Vec::new();
                    for name in list(key, v)? {
                        match Framing::from_name(&name) {
                            Some(f) if !c.framings.contains(&f) => c.framings.push(f),
                            Some(_) => {}
                            None => {
                                tracing::debug!(framing = %name, "framing not supported by aemp; skipped")
                            }
                        }
                    }
                    if c.framings.is_empty() {
                        return Err(ConfigError::Value {
                            key: key.clone(),
                            message: "none of these framings is supported by aemp (json, storable and cbor are)".into(),
                        });
                    }
                }
                "auth_offer" | "auth_accept" => {
                    let mut methods = Vec::new();
                    for name in list(key, v)? {
                        match AuthMethod::from_name(&name) {
                            Some(m) => methods.push(m),
                            None => {
                                tracing::warn!(%key, method = %name, "unknown auth method skipped")
                            }
                        }
                    }
                    if key == "auth_offer" {
                        c.auth_offer = methods;
                    } else {
                        c.auth_accept = methods;
                    }
                }
                "services" => {
                    c.services = match v {
                        Value::Array(a) => a.clone(),
                        Value::Null => Vec::new(),
                        other => list(key, other)?.into_iter().map(Value::from).collect(),
                    }
                }
                "cert" if !v.is_null() => {
                    let pem = text(key, v)?;
                    let cert = NodeCert::from_pem(&pem).map_err(|e| ConfigError::Value {
                        key: key.to_owned(),
                        message: e.to_string(),
                    })?;
                    c.cert = Some(std::sync::Arc::new(cert));
                }
                // liveness settings (aemp's own keys; Perl ignores them)
                "peer_timeout" => c.peer_timeout = optional_seconds(key, v)?,
                "tcp_keepalive" => c.tcp_keepalive = optional_seconds(key, v)?,
                "tcp_user_timeout" => c.tcp_user_timeout = optional_seconds(key, v)?,
                // per-peer state limits (issue 13)
                k if c.set_peer_limit(k, v)? => {}
                other => {
                    // autocork, version, profile, parent, unknown keys
                    transport_limit_key(&mut c, other, v)?;
                }
            }
        }
        c.validate().map_err(ConfigError::Invalid)?;
        Ok(c)
    }
}

impl NodeConfig {
    /// The per-peer state limits' configuration-file keys (issue 13),
    /// with the data-connection ones: sets the one `key` names; false if
    /// `key` is none of them.
    fn set_peer_limit(&mut self, key: &str, v: &Value) -> Result<bool, ConfigError> {
        let slot = match key {
            "peer_max_spawned_ports" => &mut self.peer_max_spawned_ports,
            "peer_max_monitors" => &mut self.peer_max_monitors,
            "peer_max_group_registrations" => &mut self.peer_max_group_registrations,
            "peer_max_addresses" => &mut self.peer_max_addresses,
            "peer_max_introduced_nodes" => &mut self.peer_max_introduced_nodes,
            "peer_max_relay_nodes" => &mut self.peer_max_relay_nodes,
            "dataconn_max_pending" => &mut self.dataconn_max_pending,
            "dataconn_max_timeout" => {
                self.dataconn_max_timeout = seconds(key, v)?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = count(key, v)?;
        Ok(true)
    }
}

/// A count setting: a whole number ≥ 0 (a numeric string too).
fn count(key: &str, v: &Value) -> Result<usize, ConfigError> {
    let n = number(key, v)?;
    if n < 0.0 || n.fract() != 0.0 || n > 1e15 {
        return Err(ConfigError::Value {
            key: key.to_owned(),
            message: format!("expected a whole number ≥ 0, got {v}"),
        });
    }
    Ok(n as usize)
}

fn seconds(key: &str, v: &Value) -> Result<Duration, ConfigError> {
    let n = number(key, v)?;
    if n <= 0.0 || n > 1e9 {
        return Err(ConfigError::Value {
            key: key.to_owned(),
            message: format!("expected a positive number of seconds, got {v}"),
        });
    }
    Ok(Duration::from_secs_f64(n))
}

/// A duration setting where `0` (or null, or false) means "none".
fn optional_seconds(key: &str, v: &Value) -> Result<Option<Duration>, ConfigError> {
    if !perl_truthy(v) {
        return Ok(None);
    }
    let n = number(key, v)?;
    if n == 0.0 {
        return Ok(None);
    }
    if !(0.0..=1e9).contains(&n) {
        return Err(ConfigError::Value {
            key: key.to_owned(),
            message: format!("expected a number of seconds (0: none), got {v}"),
        });
    }
    Ok(Some(Duration::from_secs_f64(n)))
}

impl NodeConfig {
    /// The handshake settings these settings make: the one place the
    /// node's settings become the handshake's.
    pub fn handshake(&self) -> HandshakeConfig {
        HandshakeConfig {
            auth_offer: self.auth_offer.clone(),
            auth_accept: self.auth_accept.clone(),
            framings: self.framings.clone(),
            timeout: self.monitor_timeout,
            tls: self.cert.is_some(),
            ..HandshakeConfig::new(&self.node_id, self.secret.clone())
        }
    }

    /// Checks the settings; the error says which one is unusable.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.node_id != ANON_NODE_ID {
            check_node_id(&self.node_id)?;
        }
        if self.auth_offer.is_empty() {
            return Err(InvalidConfig::NoAuthOffer);
        }
        if self.auth_accept.is_empty() {
            return Err(InvalidConfig::NoAuthAccept);
        }
        if self.framings.is_empty() {
            return Err(InvalidConfig::NoFramings);
        }
        if self.monitor_timeout.is_zero() {
            return Err(InvalidConfig::MonitorTimeout);
        }
        if self.connect_interval.is_zero() {
            return Err(InvalidConfig::ConnectInterval);
        }
        if self.max_packet == 0 || self.max_depth == 0 || self.max_send_queue == 0 {
            return Err(InvalidConfig::Limits);
        }
        if self.max_pending_handshakes == 0
            || self.max_pending_handshakes_per_addr == 0
            || self.max_pending_dials == 0
        {
            return Err(InvalidConfig::PendingHandshakes);
        }
        for (name, d) in [
            ("peer_timeout", self.peer_timeout),
            ("tcp_keepalive", self.tcp_keepalive),
            ("tcp_user_timeout", self.tcp_user_timeout),
        ] {
            if d.is_some_and(|d| d < MIN_LIVENESS_TIMEOUT) {
                return Err(InvalidConfig::Liveness(name));
            }
        }
        // (a deadline this far off would overflow the clock)
        for (name, d) in [
            ("monitor_timeout", Some(self.monitor_timeout)),
            ("connect_interval", Some(self.connect_interval)),
            ("dataconn_max_timeout", Some(self.dataconn_max_timeout)),
            ("peer_timeout", self.peer_timeout),
            ("tcp_keepalive", self.tcp_keepalive),
            ("tcp_user_timeout", self.tcp_user_timeout),
        ] {
            if d.is_some_and(|d| d > MAX_SETTING_DURATION) {
                return Err(InvalidConfig::TooLong(name));
            }
        }
        Ok(())
    }
}

/// Settings that together cannot work: what
/// [`NodeConfig::validate`] finds.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidConfig {
    /// The node id is unusable.
    #[error(transparent)]
    NodeId(#[from] NodeIdError),
    /// No auth method to offer.
    #[error("auth_offer is empty: no handshake could succeed")]
    NoAuthOffer,
    /// No auth method to accept.
    #[error("auth_accept is empty: no handshake could succeed")]
    NoAuthAccept,
    /// No framing.
    #[error("framing_format is empty")]
    NoFramings,
    /// `monitor_timeout` is zero.
    #[error("monitor_timeout must be positive")]
    MonitorTimeout,
    /// `connect_interval` is zero.
    #[error("connect_interval must be positive")]
    ConnectInterval,
    /// `max_packet`, `max_depth` or `max_send_queue` is zero.
    #[error("max_packet, max_depth and max_send_queue must be positive")]
    Limits,
    /// `max_pending_handshakes`, `max_pending_handshakes_per_addr` or
    /// `max_pending_dials` is zero.
    #[error(
        "max_pending_handshakes, max_pending_handshakes_per_addr and max_pending_dials must be positive"
    )]
    PendingHandshakes,
    /// A liveness setting (`peer_timeout`, `tcp_keepalive`,
    /// `tcp_user_timeout`) is below [`MIN_LIVENESS_TIMEOUT`] (use `None`
    /// to turn it off).
    #[error("{0} must be at least 100 ms (or none)")]
    Liveness(&'static str),
    /// A duration setting is longer than [`MAX_SETTING_DURATION`].
    #[error("{0} must be at most 10^9 seconds")]
    TooLong(&'static str),
}

/// A node id that cannot be used (`anon/` is replaced by a generated id
/// before it is checked).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeIdError {
    /// The id is empty.
    #[error("a node id must not be empty")]
    Empty,
    /// The id contains `#`, which separates node and port.
    #[error("node id {0:?} contains '#'")]
    Hash(String),
    /// The id contains `;`, `,`, CR or LF, which separate greeting fields.
    #[error("node id {0:?} contains a greeting separator")]
    GreetingSeparator(String),
    /// The id contains a control character (which peers refuse in a
    /// greeting, see [`crate::wire::Greeting::node_id`]).
    #[error("node id {0:?} contains a control character")]
    Control(String),
}

/// Checks a node id we are given (configuration or API): not empty,
/// without `#`, and without the greeting's separators. `anon/` is replaced
/// by a generated id before this check.
pub(crate) fn check_node_id(id: &str) -> Result<(), NodeIdError> {
    if id.is_empty() {
        Err(NodeIdError::Empty)
    } else if id.contains('#') {
        Err(NodeIdError::Hash(id.to_owned()))
    } else if id.contains([';', ',', '\n', '\r']) {
        Err(NodeIdError::GreetingSeparator(id.to_owned()))
    } else if id.chars().any(char::is_control) {
        Err(NodeIdError::Control(id.to_owned()))
    } else {
        Ok(())
    }
}

/// The aemp-only file keys of handshakes, packets and send queues
/// (issue 13); other keys are left alone.
fn transport_limit_key(c: &mut NodeConfig, key: &str, v: &Value) -> Result<(), ConfigError> {
    let field = match key {
        "max_send_queue" => &mut c.max_send_queue,
        "max_packet" => &mut c.max_packet,
        "max_pending_handshakes" => &mut c.max_pending_handshakes,
        "max_pending_handshakes_per_addr" => &mut c.max_pending_handshakes_per_addr,
        "max_pending_dials" => &mut c.max_pending_dials,
        _ => return Ok(()),
    };
    let n = number(key, v)?;
    if n < 1.0 || n.fract() != 0.0 || n > usize::MAX as f64 {
        return Err(ConfigError::Value {
            key: key.to_owned(),
            message: format!("expected a positive whole number, got {v}"),
        });
    }
    *field = n as usize;
    Ok(())
}

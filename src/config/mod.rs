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
    /// Largest packet accepted from a peer, in bytes.
    pub max_packet: usize,
    /// Deepest nesting of arrays and objects accepted in a packet.
    pub max_depth: usize,
    /// Most bytes queued for one connection (or waiting for one node that
    /// is not up) before sends fail.
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
}

/// Default of [`NodeConfig::dataconn_max_timeout`].
pub const DEFAULT_DATACONN_MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Default of [`NodeConfig::dataconn_max_pending`].
pub const DEFAULT_DATACONN_MAX_PENDING: usize = 16;

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
                _ => {} // autocork, version, profile, parent, unknown keys
            }
        }
        c.validate().map_err(ConfigError::Invalid)?;
        Ok(c)
    }
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
    } else {
        Ok(())
    }
}

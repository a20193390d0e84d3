//! Building a node: settings, functions registered before it starts, and
//! the start itself, which puts the layers together — the kernel, the
//! Global service on top of it, the data connection service and the log
//! catcher on top of that, then listening and the configured services.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{ConfigError, ConfigFile, NodeConfig};
use crate::dataconn::{DataInitFn, DataStream};
use crate::error::{ServiceError, SettingError, StartError};
use crate::kernel::{
    Function, Functions, HandlerError, InitFn, Node, NodeInner, PlainFn, PortBehaviour,
    PortContext, check_name,
};
use crate::wire::{AuthMethod, Framing, NodeCert, Secret};

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// Starts a node from the configuration file the Perl `aemp` tool
    /// edits (`$PERL_ANYEVENT_MP_RC`, else `~/.perl-anyevent-mp`), with
    /// profile `profile` (default: the host name). Functions its
    /// `services` name must be registered first: use
    /// [`NodeBuilder::from_config`] and register them on the builder.
    /// Services that the profile inherits (from the global section or a
    /// parent profile) and this node does not implement — Perl-only ones
    /// in a file shared with Perl nodes — are skipped with a warning; see
    /// [`NodeConfig::inherited_services`].
    pub async fn from_config(profile: Option<&str>) -> Result<Node, StartError> {
        let file = ConfigFile::load_default()?;
        let profile = profile.map_or_else(crate::config::default_profile, str::to_owned);
        NodeBuilder::from_config(&file, &profile)?.start().await
    }
}

/// Settings for a new [`Node`]; defaults as the reference.
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// let node = aemp::Node::builder()
///     .node_id("anon/")
///     .secret("geheim")
///     .bind("127.0.0.1:0")
///     .monitor_timeout(std::time::Duration::from_secs(10))
///     .start()
///     .await
///     .unwrap();
/// assert!(node.id().starts_with("anon/"));
/// assert_ne!(node.listen_addrs()[0].port(), 0);
/// # node.shutdown();
/// # });
/// ```
#[derive(Default)]
pub struct NodeBuilder {
    config: NodeConfig,
    functions: Vec<(String, Function)>,
    dataconn_inits: Vec<(String, DataInitFn)>,
}

impl NodeBuilder {
    /// Replaces all settings.
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// The node id; `anon/` (the default) makes a random one.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.config.node_id = id.into();
        self
    }

    /// The shared secret.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.config.secret = Some(secret.into());
        self
    }

    /// Adds a listen address, `host:port` (port 0: any free port).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.config.binds.push(addr.into());
        self
    }

    /// Adds a seed address, `host:port`.
    pub fn seed(mut self, addr: impl Into<String>) -> Self {
        self.config.seeds.push(addr.into());
        self
    }

    /// Our TLS certificate (see [`NodeConfig::cert`]): read a `cert` PEM
    /// blob with [`NodeCert::from_pem`], or key and certificates given
    /// apart with [`NodeCert::from_parts`].
    pub fn cert(mut self, cert: NodeCert) -> Self {
        self.config.cert = Some(Arc::new(cert));
        self
    }

    /// The auth methods we send.
    pub fn auth_offer(mut self, methods: impl IntoIterator<Item = AuthMethod>) -> Self {
        self.config.auth_offer = methods.into_iter().collect();
        self
    }

    /// The auth methods we accept.
    pub fn auth_accept(mut self, methods: impl IntoIterator<Item = AuthMethod>) -> Self {
        self.config.auth_accept = methods.into_iter().collect();
        self
    }

    /// The framings we accept, in preference order.
    pub fn framings(mut self, framings: impl IntoIterator<Item = Framing>) -> Self {
        self.config.framings = framings.into_iter().collect();
        self
    }

    /// The handshake deadline, connect deadline and keepalive interval.
    pub fn monitor_timeout(mut self, t: Duration) -> Self {
        self.config.monitor_timeout = t;
        self
    }

    /// The pause between connect attempts.
    pub fn connect_interval(mut self, t: Duration) -> Self {
        self.config.connect_interval = t;
        self
    }

    /// TCP_NODELAY on connections.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.config.nodelay = on;
        self
    }

    /// The most bytes queued per connection (or per node that is not up);
    /// see [`NodeConfig::max_send_queue`].
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.config.max_send_queue = bytes;
        self
    }

    /// The largest packet accepted from a peer; see
    /// [`NodeConfig::max_packet`].
    pub fn max_packet(mut self, bytes: usize) -> Self {
        self.config.max_packet = bytes;
        self
    }

    /// The longest wait a peer may ask of us for a data connection (see
    /// [`NodeConfig::dataconn_max_timeout`]).
    pub fn dataconn_max_timeout(mut self, t: Duration) -> Self {
        self.config.dataconn_max_timeout = t;
        self
    }

    /// The most data connections one peer may have us expect at a time
    /// (see [`NodeConfig::dataconn_max_pending`]).
    pub fn dataconn_max_pending(mut self, n: usize) -> Self {
        self.config.dataconn_max_pending = n;
        self
    }

    // -- handshakes, packets and send queues (issue 13) --

    /// The most handshakes pending on one listener (see
    /// [`NodeConfig::max_pending_handshakes`]).
    pub fn max_pending_handshakes(mut self, n: usize) -> Self {
        self.config.max_pending_handshakes = n;
        self
    }

    /// The most handshakes pending from one source address (see
    /// [`NodeConfig::max_pending_handshakes_per_addr`]).
    pub fn max_pending_handshakes_per_addr(mut self, n: usize) -> Self {
        self.config.max_pending_handshakes_per_addr = n;
        self
    }

    /// The most connections the node dials at a time (see
    /// [`NodeConfig::max_pending_dials`]).
    pub fn max_pending_dials(mut self, n: usize) -> Self {
        self.config.max_pending_dials = n;
        self
    }

    // ---- liveness

    /// The heartbeat's timeout (see [`NodeConfig::peer_timeout`]); `None`
    /// turns the heartbeat off.
    pub fn peer_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.peer_timeout = t;
        self
    }

    /// TCP keepalive timing (see [`NodeConfig::tcp_keepalive`]); `None`:
    /// the system's.
    pub fn tcp_keepalive(mut self, t: Option<Duration>) -> Self {
        self.config.tcp_keepalive = t;
        self
    }

    /// `TCP_USER_TIMEOUT` (see [`NodeConfig::tcp_user_timeout`]); `None`:
    /// the system's.
    pub fn tcp_user_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.tcp_user_timeout = t;
        self
    }

    // --- per-peer state limits (issue 13; see NodeConfig::peer_max_*) ---

    /// The most live ports one peer may have spawned on this node (see
    /// [`NodeConfig::peer_max_spawned_ports`]).
    pub fn peer_max_spawned_ports(mut self, n: usize) -> Self {
        self.config.peer_max_spawned_ports = n;
        self
    }

    /// The most of our ports one peer may monitor (`mon1`; see
    /// [`NodeConfig::peer_max_monitors`]).
    pub fn peer_max_monitors(mut self, n: usize) -> Self {
        self.config.peer_max_monitors = n;
        self
    }

    /// The most Global group registrations one peer may hold here (see
    /// [`NodeConfig::peer_max_group_registrations`]).
    pub fn peer_max_group_registrations(mut self, n: usize) -> Self {
        self.config.peer_max_group_registrations = n;
        self
    }

    /// The most addresses one Global `addr` or `nodes` message of a peer
    /// may carry (see [`NodeConfig::peer_max_addresses`]).
    pub fn peer_max_addresses(mut self, n: usize) -> Self {
        self.config.peer_max_addresses = n;
        self
    }

    /// The most nodes one peer may have us try to reach at a time through
    /// Global `nodes` messages (see
    /// [`NodeConfig::peer_max_introduced_nodes`]).
    pub fn peer_max_introduced_nodes(mut self, n: usize) -> Self {
        self.config.peer_max_introduced_nodes = n;
        self
    }

    /// The most nodes that are not up one peer may have us queue relayed
    /// messages for at a time (see [`NodeConfig::peer_max_relay_nodes`]).
    pub fn peer_max_relay_nodes(mut self, n: usize) -> Self {
        self.config.peer_max_relay_nodes = n;
        self
    }

    // --- end of the per-peer state limits ---

    /// Registers an init function before the node starts (so no spawn
    /// request can arrive before it); see [`Node::register_init`].
    pub fn init_fn(
        mut self,
        name: &str,
        f: impl Fn(&PortContext, Vec<Value>) -> Result<PortBehaviour, HandlerError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        let f: InitFn = Arc::new(f);
        self.functions.push((name.to_owned(), Function::Init(f)));
        self
    }

    /// Registers a plain function before the node starts; see
    /// [`Node::register_fn`].
    pub fn plain_fn(
        mut self,
        name: &str,
        f: impl Fn(&Node, Vec<Value>) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        let f: PlainFn = Arc::new(f);
        self.functions.push((name.to_owned(), Function::Plain(f)));
        self
    }

    /// Registers a data connection init function before the node starts;
    /// see [`Node::register_dataconn_init`].
    pub fn dataconn_init(
        mut self,
        name: &str,
        f: impl Fn(&Node, Vec<Value>, DataStream) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        let f: DataInitFn = Arc::new(f);
        self.dataconn_inits.push((name.to_owned(), f));
        self
    }

    /// Binds the listeners, starts accepting and dials the seeds. Must be
    /// called inside a running actix system; connections and handler ports
    /// live on the calling arbiter.
    pub async fn start(self) -> Result<Node, StartError> {
        let config = self.config;
        config.validate().map_err(SettingError::from)?;
        let functions = Functions::default();
        for (name, f) in self.functions {
            check_name(&name).map_err(SettingError::from)?;
            functions.insert(&name, f);
        }
        for (name, _) in &self.dataconn_inits {
            check_name(name).map_err(SettingError::from)?;
        }
        // the kernel first, then the services on top of it, then the world
        let (node, listeners) = NodeInner::boot(config, functions).await?;
        crate::global::Global::install(&node);
        crate::dataconn::DataConn::install(&node, self.dataconn_inits);
        crate::logcatcher::install(&node);
        node.start_listening(listeners);
        let inherited = node.config().inherited_services;
        for service in node.config().services.clone() {
            if let Err(source) = node.start_service(&service) {
                // a Perl-only service inherited from a shared file (see
                // NodeConfig::inherited_services)
                if inherited
                    && matches!(
                        source,
                        ServiceError::UnknownFunction(_) | ServiceError::NoPackage(_)
                    )
                {
                    tracing::warn!(node = node.id(), %service, %source, "inherited service not implemented by this node; skipped");
                    continue;
                }
                node.shutdown();
                return Err(StartError::Service {
                    service: service.to_string(),
                    source,
                });
            }
        }
        Ok(node)
    }

    /// The settings of profile `profile` in the configuration file `file`
    /// (see [`NodeConfig::from_values`]). Unlike the reference, where the
    /// file wins over `configure` arguments, settings made on the builder
    /// after this call win over the file.
    pub fn from_config(file: &ConfigFile, profile: &str) -> Result<NodeBuilder, ConfigError> {
        let (config, _) = file.node_config(profile, &serde_json::Map::new())?;
        Ok(NodeBuilder::default().config(config))
    }
}

//! Transport: TCP listeners and dialers, the handshake driver, and the
//! connection actor that moves bytes between sockets and the node.
//!
//! The transport knows nothing of the kernel. It gets a [`Link`], the
//! narrow interface the kernel implements: its handshake slots (a
//! [`SlotTable`]), where decoded packets go, and what to do when a
//! connection is attached, lost or refused. The kernel owns a
//! [`Transport`] (settings, the arbiter connections live on, shutdown and
//! the tracker of live connections) and hands it its `Link` whenever it
//! listens or dials.

pub(crate) mod binds;
pub(crate) mod connection;
pub(crate) mod connector;
pub(crate) mod dataconn;
pub(crate) mod handshake;
pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod log_throttle;
pub(crate) mod outbox;
pub(crate) mod pending;
pub(crate) mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_rt::ArbiterHandle;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NodeConfig;
use crate::error::ConnectionError;
use crate::wire::{Established, HandshakeConfig, Packet, TlsConfigs};
use connector::ConnectorId;
pub(crate) use handshake::SlotTable;
use outbox::Outbox;

/// What the transport needs of the node it serves.
pub(crate) trait Link: Send + Sync + 'static {
    /// The node's handshake slots.
    fn slots(&self) -> &dyn SlotTable;
    /// A packet that arrived from node `from` (keepalives included).
    fn route(&self, from: &Arc<str>, packet: Packet);
    /// Makes `outbox` the node's live connection; fails if the connection
    /// does not hold the node's slot (or the node shut down). Whatever
    /// waited for the node goes into the outbox first.
    fn attach(&self, peer: &Peer, outbox: Arc<Outbox>) -> Result<(), ()>;
    /// An attached connection is up; runs the node-up callbacks.
    fn node_up(&self, peer: &Peer);
    /// Connection `conn` to `node` ended with `error`.
    fn connection_lost(&self, node: &str, conn: u64, error: &ConnectionError);
    /// A handshake failed; nothing of it reached any port.
    fn handshake_failed(&self, addr: SocketAddr, node: Option<String>, error: &ConnectionError);
    /// The known listen addresses of `node`.
    fn addresses_of(&self, node: &str) -> Vec<String>;
    /// Bumped whenever addresses are learned.
    fn address_changes(&self) -> watch::Receiver<u64>;
    /// Whether a live connection to `node` exists.
    fn node_is_up(&self, node: &str) -> bool;
    /// Whether connector `id` is the one that runs for `node` (its
    /// attempt was not reset or failed meanwhile, and no newer connector
    /// took over).
    fn is_connecting(&self, node: &str, id: ConnectorId) -> bool;
    /// Connector `id` of `node` ended (it came up, or shutdown).
    fn stop_connecting(&self, node: &str, id: ConnectorId);
    /// No connection to `node` came up before its connect deadline.
    fn unable_to_connect(&self, node: &str);
    /// An accepted data connection completed its handshake: the stream is
    /// the node's now (dropping it closes it).
    fn data_connection(&self, link: dataconn::DataLink);
}

/// A connection that completed its handshake, as the kernel learns of it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The peer's node id.
    pub(crate) node: Arc<str>,
    /// The connection.
    pub(crate) conn: u64,
    /// The peer's socket address.
    pub(crate) addr: SocketAddr,
    /// For a connection we dialled: the address as it was given (a seed's
    /// node id is learned from it).
    pub(crate) dialed: Option<String>,
    /// What the handshake agreed on.
    pub(crate) established: Established,
    /// The subject of the certificate the peer showed, over TLS.
    pub(crate) subject: Option<String>,
}

impl Peer {
    /// Whether we dialled the connection.
    pub(crate) fn outbound(&self) -> bool {
        self.dialed.is_some()
    }
}

/// The transport's settings, derived from the node's.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    /// Our handshake settings.
    pub(crate) handshake: Arc<HandshakeConfig>,
    /// TCP_NODELAY.
    pub(crate) nodelay: bool,
    /// Most bytes queued per connection.
    pub(crate) max_send_queue: usize,
    /// Largest packet accepted.
    pub(crate) max_packet: usize,
    /// Deepest nesting accepted.
    pub(crate) max_depth: usize,
    /// Connect deadline, and keepalive period of listener-less nodes.
    pub(crate) monitor_timeout: Duration,
    /// Pause between connect attempts.
    pub(crate) connect_interval: Duration,
    /// Whether connections send keepalives (the node has no listeners).
    pub(crate) keepalive: bool,
    /// TLS, if the node has a certificate.
    pub(crate) tls: Option<TlsConfigs>,
    /// Most pending handshakes per listener (see [`pending`]).
    pub(crate) max_pending_handshakes: usize,
    /// Most pending handshakes per source address (see [`pending`]).
    pub(crate) max_pending_handshakes_per_addr: usize,
    /// Most dials at a time.
    pub(crate) max_pending_dials: usize,
    /// Liveness: heartbeat and socket timing.
    pub(crate) liveness: Liveness,
}

/// The liveness settings of every node connection (see
/// [`NodeConfig::peer_timeout`] and its neighbours).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    /// Fail a connection that received nothing for this long; probe it
    /// after a quarter of it.
    pub(crate) peer_timeout: Option<Duration>,
    /// An idle dead host is noticed by TCP keepalive within this.
    pub(crate) tcp_keepalive: Option<Duration>,
    /// TCP_USER_TIMEOUT.
    pub(crate) tcp_user_timeout: Option<Duration>,
}

impl Liveness {
    /// The settings of `cfg`.
    pub(crate) fn new(cfg: &NodeConfig) -> Liveness {
        Liveness {
            peer_timeout: cfg.peer_timeout,
            tcp_keepalive: cfg.tcp_keepalive,
            tcp_user_timeout: cfg.tcp_user_timeout,
        }
    }

    /// The keepalive timing that notices a dead idle peer within `within`:
    /// the first probe after half of it, then 3 probes a sixth apart (whole
    /// seconds, as the socket options take them; at least 1 s each).
    pub(crate) fn keepalive_params(within: Duration) -> socket2::TcpKeepalive {
        let secs = |d: Duration| Duration::from_secs(d.as_secs().max(1));
        socket2::TcpKeepalive::new()
            .with_time(secs(within / 2))
            .with_interval(secs(within / 6))
            .with_retries(3)
    }
}

impl TransportConfig {
    /// The transport settings of a node configured with `cfg`; `keepalive`
    /// for a node without listeners.
    pub(crate) fn new(
        cfg: &NodeConfig,
        keepalive: bool,
    ) -> Result<TransportConfig, tokio_rustls::rustls::Error> {
        let tls = cfg.cert.clone().map(TlsConfigs::new).transpose()?;
        Ok(TransportConfig {
            handshake: Arc::new(cfg.handshake()),
            nodelay: cfg.nodelay,
            max_send_queue: cfg.max_send_queue,
            max_packet: cfg.max_packet,
            max_depth: cfg.max_depth,
            monitor_timeout: cfg.monitor_timeout,
            connect_interval: cfg.connect_interval,
            keepalive,
            tls,
            max_pending_handshakes: cfg.max_pending_handshakes,
            max_pending_handshakes_per_addr: cfg.max_pending_handshakes_per_addr,
            max_pending_dials: cfg.max_pending_dials,
            liveness: Liveness::new(cfg),
        })
    }
}

/// The node's transport: settings, the arbiter its connections live on,
/// shutdown, and the tracker of live connections.
pub(crate) struct Transport {
    pub(crate) cfg: TransportConfig,
    /// Our node id, for logs.
    pub(crate) local: Arc<str>,
    arbiter: ArbiterHandle,
    shutdown: CancellationToken,
    connections: TaskTracker,
    next_conn: AtomicU64,
    /// Limits hit, per peer.
    limit_hits: limits::LimitHits,
    /// Pending handshakes of accepted connections.
    pending: Arc<pending::PendingTable>,
    /// Permits for dials (connect and handshake), `max_pending_dials`.
    dials: Arc<tokio::sync::Semaphore>,
    /// Warnings a peer can cause, at most once a minute per peer and kind.
    log_throttle: log_throttle::LogThrottle,
}

impl Transport {
    pub(crate) fn new(cfg: TransportConfig, local: Arc<str>, arbiter: ArbiterHandle) -> Transport {
        let pending = Arc::new(pending::PendingTable::new(
            cfg.max_pending_handshakes,
            cfg.max_pending_handshakes_per_addr,
        ));
        Transport {
            pending,
            dials: Arc::new(tokio::sync::Semaphore::new(
                cfg.max_pending_dials
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            cfg,
            local,
            arbiter,
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            limit_hits: limits::LimitHits::default(),
            log_throttle: log_throttle::LogThrottle::default(),
        }
    }

    /// Limits hit, per peer (every refusing limit counts here).
    pub(crate) fn limit_hits(&self) -> &limits::LimitHits {
        &self.limit_hits
    }

    /// Throttles the warnings a peer can cause (see [`log_throttle`]).
    pub(crate) fn log_throttle(&self) -> &log_throttle::LogThrottle {
        &self.log_throttle
    }

    /// The node's pending handshakes (accepted connections).
    pub(crate) fn pending(&self) -> &Arc<pending::PendingTable> {
        &self.pending
    }

    /// A permit to dial, once fewer than `max_pending_dials` dials run;
    /// `None` at shutdown.
    pub(crate) async fn dial_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::select! {
            permit = self.dials.clone().acquire_owned() => permit.ok(),
            _ = self.shutdown.cancelled() => None,
        }
    }

    /// A fresh connection id.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the node shut down.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Cancelled at shutdown.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The arbiter the node's connections and handler ports live on.
    pub(crate) fn arbiter(&self) -> &ArbiterHandle {
        &self.arbiter
    }

    /// Stops listening and dialling; connections already open close when
    /// the kernel asks their outboxes to.
    pub(crate) fn shut_down(&self) {
        self.shutdown.cancel();
        self.connections.close();
    }

    /// Waits until every connection has ended (after [`Transport::shut_down`]).
    pub(crate) async fn closed(&self) {
        self.connections.wait().await;
    }
}

/// A connection's socket as the system names it, to ask the system about
/// it while the connection (which keeps the socket open) lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketFd(#[cfg(target_os = "linux")] std::os::fd::RawFd);

impl SocketFd {
    /// The socket of `stream`, where [`unacked_bytes`] can use it.
    pub(crate) fn of(stream: &TcpStream) -> Option<SocketFd> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            Some(SocketFd(stream.as_raw_fd()))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            None
        }
    }
}

/// How many bytes written to `socket` the peer has not acknowledged yet
/// (Linux `SIOCOUTQ`: unsent and unacknowledged bytes of the send queue).
/// When it shrinks, the peer's window opened: its application read. The
/// heartbeat counts that as life (see `Connection::heartbeat`). `None`
/// where the system does not tell.
pub(crate) fn unacked_bytes(socket: SocketFd) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let mut n: libc::c_int = 0;
        // SAFETY: the descriptor is a TCP socket that the connection holding
        // `socket` keeps open while it asks; SIOCOUTQ (= TIOCOUTQ) writes
        // one c_int to the pointer, which points at `n`.
        let r = unsafe { libc::ioctl(socket.0, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
        (r == 0).then(|| u32::try_from(n).ok()).flatten()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}

/// SO_KEEPALIVE on every transport (the reference relies on it to notice
/// dead idle peers), with the keepalive timing and TCP_USER_TIMEOUT of
/// `cfg.liveness` where set (the system's otherwise), and TCP_NODELAY per
/// the `nodelay` setting.
pub(crate) fn configure_socket(stream: &TcpStream, cfg: &TransportConfig) {
    let sock = socket2::SockRef::from(stream);
    if let Err(e) = sock.set_keepalive(true) {
        tracing::debug!(error = %e, "cannot set SO_KEEPALIVE");
    }
    if let Some(within) = cfg.liveness.tcp_keepalive
        && let Err(e) = sock.set_tcp_keepalive(&Liveness::keepalive_params(within))
    {
        tracing::debug!(error = %e, "cannot set the TCP keepalive timing");
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Some(t) = cfg.liveness.tcp_user_timeout
        && let Err(e) = sock.set_tcp_user_timeout(Some(t))
    {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
    if let Err(e) = stream.set_nodelay(cfg.nodelay) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The liveness settings reach the socket: keepalive on with the
    /// derived timing, TCP_USER_TIMEOUT as set; none leaves the system's.
    #[tokio::test]
    async fn socket_options() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut node = NodeConfig {
            tcp_keepalive: Some(Duration::from_secs(60)),
            tcp_user_timeout: Some(Duration::from_millis(45_500)),
            ..NodeConfig::default()
        };
        let cfg = TransportConfig::new(&node, false).unwrap();
        configure_socket(&stream, &cfg);
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(45_500))
        );
        assert!(sock.tcp_nodelay().unwrap());

        // tiny: at least a second each, as the options take whole seconds
        node.tcp_keepalive = Some(Duration::from_millis(500));
        node.tcp_user_timeout = None;
        let other = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        configure_socket(&other, &TransportConfig::new(&node, false).unwrap());
        let sock = socket2::SockRef::from(&other);
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(1));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(sock.tcp_user_timeout().unwrap(), None);
    }
}

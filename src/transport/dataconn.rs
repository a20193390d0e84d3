//! Data connections (`aemp-dataconn`): the node handshake, then a raw byte
//! stream. A data connection is not a node connection: no connection
//! actor, no slot, no packets, no size limits, no keepalives and no
//! timeouts once authenticated. The accepting side hands it to the node
//! through [`Link::data_connection`](super::Link::data_connection); the
//! dialling side gets it from [`dial`].

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Transport;
use super::handshake::{Claimant, SlotTable, drive, fresh_nonce};
use super::stream::{Prefixed, Stream};
use crate::error::ConnectionError;
use crate::wire::slot::{Contender, Decision};
use crate::wire::{Established, Handshake};

/// The stream of a data connection: plain or TLS, with the bytes that
/// arrived right after the peer's auth line read first.
pub(crate) type RawStream = Prefixed<Stream<TcpStream>>;

/// An authenticated data connection.
pub(crate) struct DataLink {
    /// What the handshake agreed on (`dataconn_id` is set).
    pub(crate) established: Established,
    /// The stream.
    pub(crate) stream: RawStream,
    /// The peer's socket address.
    pub(crate) addr: SocketAddr,
}

/// The handshake's result as a data connection's stream: the leftover
/// bytes after the auth line go first.
pub(crate) fn into_link(
    established: Established,
    stream: Stream<TcpStream>,
    rest: bytes::BytesMut,
    addr: SocketAddr,
) -> DataLink {
    DataLink {
        established,
        stream: Prefixed::new(rest, stream),
        addr,
    }
}

/// The slot table of a data connection: it has none (the handshake never
/// claims a slot on one).
struct NoSlots(watch::Sender<u64>);

impl SlotTable for NoSlots {
    fn refuses(&self, _node: &str) -> bool {
        false
    }

    fn claim(&self, _: &str, _: &Contender, _: &CancellationToken, _: Instant) -> Decision {
        Decision::Granted
    }

    fn release(&self, _node: &str, _conn: u64) {}

    fn changes(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Dials `addr` (TCP connect within `monitor_timeout`, the node's
/// handshake with its deadline, TLS when both sides have certificates)
/// as a data connection with id `id`.
pub(crate) async fn dial(
    transport: &Transport,
    addr: &str,
    id: &str,
) -> Result<DataLink, ConnectionError> {
    let slots = NoSlots(watch::Sender::new(0));
    let (tcp, peer) = super::connector::dial(transport, addr).await?;
    super::configure_socket(&tcp, &transport.cfg);
    let hs = Handshake::new_dataconn(
        transport.cfg.handshake.clone(),
        Some(&peer.to_string()),
        fresh_nonce(),
        Instant::now(),
        id,
    )?;
    let who = Claimant {
        conn: transport.next_conn(),
        outbound: true,
        slots: &slots,
        tls: transport.cfg.tls.as_ref(),
        peer: peer.ip(),
        evicted: CancellationToken::new(),
    };
    match drive(tcp, hs, who).await {
        Ok((est, stream, rest)) => Ok(into_link(est, stream, rest, peer)),
        Err(failure) => Err(failure.error),
    }
}

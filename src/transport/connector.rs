//! Dialling: single connects and the seed keepers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::connection::Connection;
use super::{Link, Transport};
use crate::error::ConnectionError;

/// Dials `addr` and runs the handshake; resolves to the peer's node id.
/// The connection actor is started on the node's arbiter, so this works
/// from any thread. At most `max_pending_dials` run at a time, node-wide:
/// this waits for a turn first (the connect deadline of a node connector
/// keeps running meanwhile).
pub(crate) async fn connect(
    transport: Arc<Transport>,
    link: Arc<dyn Link>,
    addr: String,
) -> Result<String, ConnectionError> {
    // held until the handshake ended, one way or the other
    let Some(_permit) = transport.dial_permit().await else {
        return Err(ConnectionError::Shutdown);
    };
    let (tx, rx) = oneshot::channel();
    let t = transport.clone();
    let spawned = transport.arbiter().spawn(async move {
        match dial(&t, &addr).await {
            Ok((stream, peer)) => {
                Connection::start(t, link, stream, peer, Some((addr, tx)), None);
            }
            Err(e) => {
                tracing::debug!(node = %t.local, %addr, error = %e, "connect failed");
                let _ = tx.send(Err(e));
            }
        }
    });
    if !spawned {
        return Err(ConnectionError::Shutdown);
    }
    rx.await.unwrap_or(Err(ConnectionError::Shutdown))
}

/// TCP connect to the first address of `addr` that answers, within
/// `monitor_timeout`.
pub(super) async fn dial(
    transport: &Transport,
    addr: &str,
) -> Result<(TcpStream, SocketAddr), ConnectionError> {
    let attempt = async {
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await? {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok((s, a)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
        }))
    };
    match tokio::time::timeout(transport.cfg.monitor_timeout, attempt).await {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err(e)) => Err(ConnectionError::Connect(crate::error::io_error_text(&e))),
        Err(_) => Err(ConnectionError::Connect("timed out".into())),
    }
}

/// Connects to node `id` through its known addresses until it is up or
/// `monitor_timeout` passes (then its monitors fire with `unable to
/// connect` and its queue is dropped), paced as the reference: the first
/// try after 0–50 ms, then one every `interval × (0.9 + 0.1·rand)`,
/// cycling through the addresses, where `interval = min(connect_interval,
/// (monitor_timeout − connect_interval) / #addresses)`, at least 0.4 s.
/// The deadline is armed once. Addresses learned meanwhile are tried
/// first, at once (the reference puts them in front, Node.pm 130): a node
/// restarted on a new port is reached as soon as its new address arrives.
pub(crate) fn spawn_node_connector(
    transport: Arc<Transport>,
    link: Arc<dyn Link>,
    id: Arc<str>,
    me: ConnectorId,
) {
    let arbiter = transport.arbiter().clone();
    let spawned = arbiter.spawn(async move {
        run_node_connector(&transport, &link, &id, me).await;
    });
    if !spawned {
        tracing::debug!("arbiter gone; node connector not started");
    }
}

/// Which connector of a node this is (see `Link::is_connecting`): a
/// connector whose attempt was failed (a connecting queue's overflow) or
/// reset while it slept ends without acting, even when a newer one runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectorId(pub(crate) u64);

async fn run_node_connector(
    transport: &Arc<Transport>,
    link: &Arc<dyn Link>,
    id: &Arc<str>,
    me: ConnectorId,
) {
    use rand::RngExt as _;
    let cfg = &transport.cfg;
    let start = tokio::time::Instant::now();
    let deadline = start + cfg.monitor_timeout;
    let mut next = start + Duration::from_millis(rand::rng().random_range(0..50));
    let mut cursor = 0usize;
    let mut in_flight: HashSet<String> = HashSet::new();
    // the addresses seen so far, and those that appeared since (tried next)
    let mut seen: Vec<String> = link.addresses_of(id);
    let mut fresh: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    // woken when the node may have come up through another connection,
    // and when addresses are learned
    let mut slots = link.slots().changes();
    let mut addresses = link.address_changes();
    loop {
        slots.borrow_and_update();
        addresses.borrow_and_update();
        if transport.is_shut_down() || link.node_is_up(id) {
            link.stop_connecting(id, me);
            return;
        }
        if !link.is_connecting(id, me) {
            return; // failed or reset meanwhile
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            link.unable_to_connect(id);
            return;
        }
        let current = link.addresses_of(id);
        {
            let old: std::collections::HashSet<&String> = seen.iter().collect();
            for a in current.iter().rev() {
                if !old.contains(a) {
                    fresh.push_front(a.clone());
                }
            }
            let now_known: std::collections::HashSet<&String> = current.iter().collect();
            fresh.retain(|a| now_known.contains(a));
        }
        seen = current;
        if !fresh.is_empty() {
            // new addresses (the first ones, or a restarted node's): use
            // them now, not after the pause the last attempt set
            next = now;
        }
        if now >= next {
            let addrs = link.addresses_of(id);
            let interval = if addrs.is_empty() {
                cfg.connect_interval
            } else {
                let addr = match fresh.pop_front() {
                    Some(a) => a,
                    None => {
                        cursor += 1;
                        addrs[(cursor - 1) % addrs.len()].clone()
                    }
                };
                if in_flight.insert(addr.clone()) {
                    tracing::debug!(node = %transport.local, remote = %id, %addr, "connecting");
                    let (t, l, tx) = (transport.clone(), link.clone(), done_tx.clone());
                    actix_rt::spawn(async move {
                        let result = connect(t, l, addr.clone()).await;
                        let _ = tx.send((addr, result));
                    });
                }
                let per_addr =
                    cfg.monitor_timeout.saturating_sub(cfg.connect_interval) / addrs.len() as u32;
                cfg.connect_interval
                    .min(per_addr)
                    .max(Duration::from_millis(400))
            };
            next = now + interval.mul_f64(0.9 + 0.1 * rand::rng().random::<f64>());
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next.min(deadline)) => {}
            _ = transport.shutdown_token().cancelled() => {}
            _ = slots.changed() => {}
            _ = addresses.changed() => {}
            Some((addr, result)) = done.recv() => {
                in_flight.remove(&addr);
                if collided(&result) && *transport.local < **id {
                    // both sides dialled at once and both handshakes were
                    // refused: the smaller node id tries again at once, the
                    // other keeps its pace, so the next try does not collide
                    let soon = Duration::from_millis(rand::rng().random_range(20..100));
                    next = next.min(tokio::time::Instant::now() + soon);
                }
            }
        }
    }
}

/// Whether a dial failed the way a simultaneous connect makes it fail: the
/// peer (or we) refused it because another handshake held the slot.
fn collided(result: &Result<String, ConnectionError>) -> bool {
    matches!(
        result,
        Err(
            ConnectionError::Handshake(crate::wire::HandshakeError::AlreadyConnected { .. })
                | ConnectionError::Eof
        )
    )
}

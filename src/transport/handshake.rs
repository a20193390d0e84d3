//! Runs the sans-IO [`Handshake`] on a byte stream: writes its greeting,
//! feeds it what the peer sends, answers its events from the node's slot
//! table, and enforces its absolute deadline, which trickling bytes cannot
//! extend.

use std::net::IpAddr;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::stream::{Stream, start_tls};
use crate::error::ConnectionError;
use crate::wire::slot::{Contender, Decision};
use crate::wire::{
    Established, Event, Handshake, HandshakeError, MAX_LINE, NONCE_BYTES, Nonce, TlsConfigs,
};

/// A fresh nonce line from the operating system's generator.
pub(crate) fn fresh_nonce() -> Nonce {
    let mut raw = [0u8; NONCE_BYTES];
    rand::fill(&mut raw[..]);
    Nonce::from_random(raw)
}

/// The node's side of "one connection per node" (see
/// [`slot`](crate::wire::slot)), as the handshake driver needs it.
pub(crate) trait SlotTable: Send + Sync {
    /// Whether a handshake naming `node` is refused at once (the node is
    /// up, or its failure is being handled).
    fn refuses(&self, node: &str) -> bool;
    /// Asks for `node`'s slot. On [`Decision::TakeOver`] the table has
    /// given the slot to `c` already and cancelled the loser's token;
    /// `cancel` is the contender's own, for when it loses later.
    fn claim(
        &self,
        node: &str,
        c: &Contender,
        cancel: &CancellationToken,
        now: Instant,
    ) -> Decision;
    /// Gives up `node`'s slot if connection `conn` holds it.
    fn release(&self, node: &str, conn: u64);
    /// Bumped whenever a slot may have become free or been decided.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// A failed handshake and, if it got that far, the peer's node id.
#[derive(Debug)]
pub(crate) struct HandshakeFailure {
    pub(crate) error: ConnectionError,
    pub(crate) remote: Option<String>,
}

/// A completed handshake: the agreement, the stream (TLS or not), and
/// the bytes the peer sent after its auth line (the start of its packet
/// stream).
pub(crate) type Handshaken<S> = (Established, Stream<S>, BytesMut);

/// Who this handshake is, for the slot table, and how it switches to TLS.
pub(crate) struct Claimant<'a> {
    pub(crate) conn: u64,
    pub(crate) outbound: bool,
    pub(crate) slots: &'a dyn SlotTable,
    /// Our TLS configurations, if we have a certificate.
    pub(crate) tls: Option<&'a TlsConfigs>,
    /// The peer's address (named in a TLS client's hello).
    pub(crate) peer: IpAddr,
    /// Cancelled when a full listener gives this pending handshake's place
    /// to another (never, for connections we dial).
    pub(crate) evicted: CancellationToken,
}

/// Runs the handshake to its end. On failure the slot this handshake
/// held, if any, is released.
pub(crate) async fn drive<S>(
    io: S,
    mut hs: Handshake,
    who: Claimant<'_>,
) -> Result<Handshaken<S>, HandshakeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = Stream::Plain(io);
    let result = tokio::select! {
        result = exchange(&mut io, &mut hs, &who) => result,
        _ = who.evicted.cancelled() => Err(ConnectionError::Evicted),
    };
    let remote = hs.remote_node().map(str::to_owned);
    match result {
        Ok((est, rest)) => Ok((est, io, rest)),
        Err(error) => {
            if let Some(node) = &remote {
                who.slots.release(node, who.conn);
            }
            // best effort: let the peer see a FIN rather than a reset
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(100), io.shutdown()).await;
            Err(HandshakeFailure { error, remote })
        }
    }
}

/// A claim that waits for the slot.
struct Waiting {
    node: String,
    peer_verified: bool,
    /// When to ask again even if nothing changed.
    until: Option<Instant>,
}

async fn exchange<S>(
    io: &mut Stream<S>,
    hs: &mut Handshake,
    who: &Claimant<'_>,
) -> Result<(Established, BytesMut), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(deadline) = hs.poll_timeout() else {
        return Err(hs.refuse().into());
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    write_by(io, hs, &hs.greeting(), deadline).await?;
    let cancel = CancellationToken::new();
    let mut changes = who.slots.changes();
    let mut buf = BytesMut::with_capacity(2 * MAX_LINE);
    let mut out = Vec::new();
    let mut waiting: Option<Waiting> = None;
    loop {
        while let Some(event) = hs.advance(&mut buf)? {
            match event {
                Event::PeerNamed(node) => {
                    if who.slots.refuses(&node) {
                        return Err(hs.refuse().into());
                    }
                }
                Event::ClaimSlot {
                    node,
                    peer_verified,
                } => {
                    waiting = Some(Waiting {
                        node,
                        peer_verified,
                        until: None,
                    });
                }
                Event::SendAuth => {
                    // a data connection: no slot, our auth line goes now
                    let est = hs.grant(&mut out)?;
                    write_by(io, hs, &out, deadline).await?;
                    out.clear();
                    if let Some(est) = est {
                        return Ok((est, buf));
                    }
                }
                Event::StartTls { client } => {
                    // what follows the greeting lines is TLS: the bytes
                    // already here are the peer's first records
                    let Some(configs) = who.tls else {
                        return Err(HandshakeError::OutOfOrder { call: "StartTls" }.into());
                    };
                    let Stream::Plain(plain) = std::mem::replace(io, Stream::Switching) else {
                        return Err(HandshakeError::OutOfOrder { call: "StartTls" }.into());
                    };
                    let step = start_tls(configs, plain, buf.split(), client, who.peer);
                    let tls = match tokio::time::timeout_at(deadline, step).await {
                        Ok(tls) => tls?,
                        Err(_) => return Err(timed_out(hs, deadline)),
                    };
                    *io = Stream::Tls(Box::new(tls));
                }
                Event::Established(est) => return Ok((est, buf)),
            }
        }
        if let Some(w) = &mut waiting {
            changes.borrow_and_update();
            let peer_is_aemp = hs
                .remote_greeting()
                .and_then(|g| g.get("provider"))
                .is_some_and(|p| p.starts_with("aemp"));
            let c = Contender {
                conn: who.conn,
                outbound: who.outbound,
                peer_verified: w.peer_verified,
                peer_is_aemp,
            };
            let decision = if who.slots.refuses(&w.node) {
                Decision::Refused
            } else {
                who.slots.claim(&w.node, &c, &cancel, Instant::now())
            };
            match decision {
                Decision::Granted | Decision::TakeOver { .. } => {
                    if let Decision::TakeOver { loser } = decision {
                        tracing::info!(conn = who.conn, remote = %w.node, loser, "authenticated handshake takes the slot");
                    }
                    waiting = None;
                    let est = hs.grant(&mut out)?;
                    write_by(io, hs, &out, deadline).await?;
                    out.clear();
                    if let Some(est) = est {
                        return Ok((est, buf));
                    }
                    continue; // the peer's auth line may be buffered already
                }
                Decision::Refused => return Err(hs.refuse().into()),
                Decision::Wait { until } => w.until = until,
            }
        }
        let retry_at = waiting
            .as_ref()
            .and_then(|w| w.until)
            .map(tokio::time::Instant::from_std);
        let claiming = waiting.is_some();
        // lines are at most MAX_LINE long, so only a peer that goes on
        // sending past its auth line while we wait fills this: stop reading
        // it until the slot is decided
        let room = buf.len() < 2 * MAX_LINE;
        tokio::select! {
            read = io.read_buf(&mut buf), if room => {
                if read? == 0 {
                    return Err(ConnectionError::Eof);
                }
            }
            _ = cancel.cancelled() => return Err(hs.refuse().into()),
            changed = changes.changed(), if claiming => {
                if changed.is_err() {
                    return Err(ConnectionError::Shutdown);
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or(deadline)), if retry_at.is_some() => {}
            _ = tokio::time::sleep_until(deadline) => {
                hs.handle_timeout(Instant::now())?;
            }
        }
    }
}

/// Writes `bytes` before the handshake's deadline (a peer that does not
/// read cannot hold us past it).
async fn write_by<S: AsyncWrite + Unpin>(
    io: &mut S,
    hs: &mut Handshake,
    bytes: &[u8],
    deadline: tokio::time::Instant,
) -> Result<(), ConnectionError> {
    match tokio::time::timeout_at(deadline, io.write_all(bytes)).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(timed_out(hs, deadline)),
    }
}

/// The error of a handshake whose deadline passed during a step.
fn timed_out(hs: &mut Handshake, deadline: tokio::time::Instant) -> ConnectionError {
    // at the deadline itself the handshake fails with its timeout
    match hs.handle_timeout(deadline.into_std()) {
        Err(timeout) => timeout.into(),
        Ok(()) => hs.refuse().into(),
    }
}

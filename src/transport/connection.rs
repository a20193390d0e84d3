//! The connection actor: one per TCP connection, accepted or dialled.
//!
//! It runs the handshake (as a future inside its own context, so a silent
//! peer delays nobody else), then registers itself as the node's link to
//! the peer and becomes a thin driver of two loops polled in its context:
//!
//! * **read**: fill a 64 KiB buffer, cut it into packets with the framing's
//!   decoder, and hand each packet straight to its port's mailbox (node-port
//!   packets are handled right here, in packet order);
//! * **write**: senders encode their packets straight into the
//!   connection's [`Outbox`] and wake the writer when it was idle; the
//!   writer swaps the whole buffer out and writes it, so a burst of sends
//!   leaves in one `write`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::fut::ActorFuture;
use actix::prelude::*;
use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use tokio_util::task::task_tracker::TaskTrackerToken;

use super::dataconn::into_link;
use super::handshake::{Claimant, HandshakeFailure, Handshaken, drive, fresh_nonce};
use super::limits::Limit;
use super::outbox::{Next, Outbox};
use super::pending::PendingGuard;
use super::stream::{ReadSide, WriteSide};
use super::{Link, Peer, Transport};
use crate::error::ConnectionError;
use crate::wire::{Codec, FrameError, Handshake, HandshakeError};

/// Read buffer size; a read of less than this is followed by another only
/// after the mailbox had its turn.
const READ_CHUNK: usize = 64 * 1024;

/// Reads per poll before the connection yields to its mailbox and writer.
const READS_PER_POLL: usize = 16;
/// The most a framing puts before a packet's body (storable's BER
/// length: at most 10 bytes for a 64-bit length).
const MAX_PREFIX: usize = 16;

/// Who is told how the handshake of a dialled connection ended.
pub(crate) type DoneSender = oneshot::Sender<Result<String, ConnectionError>>;

pub(crate) struct Connection {
    transport: Arc<Transport>,
    link: Arc<dyn Link>,
    /// Counts this connection as live until the actor is dropped.
    _live: TaskTrackerToken,
    conn_id: u64,
    peer_addr: SocketAddr,
    /// For a connection we dialled: the address as it was given.
    dialed: Option<String>,
    state: State,
    done: Option<DoneSender>,
    /// Why the connection ended, for the `Down` event and the log.
    error: Option<ConnectionError>,
    /// For an accepted connection: its place among the pending
    /// handshakes, given up when the handshake ends.
    pending: Option<PendingGuard>,
}

enum State {
    Handshaking(Option<TcpStream>),
    Up(Box<Up>),
    Closed,
}

/// The state of an authenticated connection.
struct Up {
    remote: Arc<str>,
    decoder: Codec,
    rbuf: BytesMut,
    /// `max_packet`: after decoding, `rbuf` holds at most one unfinished
    /// packet, so more than this (plus a length prefix) buffered is a
    /// decoder that failed to see a packet's size; the connection fails
    /// rather than buffering on.
    max_packet: usize,
    reader: ReadSide,
    writer: WriteSide,
    outbox: Arc<Outbox>,
    /// Bytes taken from the outbox and not yet written.
    wbuf: BytesMut,
    /// How many bytes `wbuf` held when it was taken (its allocation is at
    /// least that large).
    wbuf_taken: usize,
    last_write: std::time::Instant,
    /// The last sign of life of the peer: bytes read, or a write that went
    /// through after the socket had been full (the peer read some of a
    /// backlog). The heartbeat measures silence from here.
    last_life: Instant,
    /// When the last heartbeat request was queued.
    last_probe: Option<Instant>,
    /// A write found the socket full, and none went through since.
    write_blocked: bool,
    /// The socket, to see the peer acknowledge a backlog (see
    /// [`Connection::heartbeat`]), and how many bytes it held
    /// unacknowledged at the last look.
    socket: Option<super::SocketFd>,
    unacked: Option<u32>,
    /// Shutting down: everything queued was written and our half ended;
    /// what the peer still sends is read and dropped until it ends its
    /// half (see [`LINGER`]).
    closing: bool,
}

/// How long a connection closing at shutdown goes on reading (and
/// dropping) what the peer sends after our half ended, waiting for the
/// peer to end its half. Closing a socket with unread input resets the
/// connection: our kernel throws away what it has not sent yet (the end
/// of a backlog, our last `kil0`s behind it) and the peer's stream ends
/// with an error instead of its end.
const LINGER: Duration = Duration::from_secs(2);

/// The port a heartbeat's answer goes to, on our node: a name with `#`,
/// which no port can have, so the answer is dropped on arrival (the bytes
/// did their work by arriving).
const HEARTBEAT_REPLY: &str = "aemp#heartbeat";

impl Connection {
    /// Starts the actor for a connected socket on the current arbiter;
    /// `dialed` holds the address we dialled and who waits for the
    /// handshake (`None` for an accepted connection); `pending` counts an
    /// accepted connection among the pending handshakes until its
    /// handshake ends.
    pub(crate) fn start(
        transport: Arc<Transport>,
        link: Arc<dyn Link>,
        stream: TcpStream,
        peer_addr: SocketAddr,
        dialed: Option<(String, DoneSender)>,
        pending: Option<PendingGuard>,
    ) -> Addr<Connection> {
        super::configure_socket(&stream, &transport.cfg);
        let conn_id = transport.next_conn();
        let (dialed, done) = dialed.unzip();
        Connection {
            _live: transport.connections.token(),
            transport,
            link,
            conn_id,
            peer_addr,
            dialed,
            state: State::Handshaking(Some(stream)),
            done,
            error: None,
            pending,
        }
        .start()
    }

    /// Ends the connection with `error`.
    fn fail(&mut self, error: ConnectionError, ctx: &mut Context<Self>) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        ctx.stop();
    }

    fn handshake_done(
        &mut self,
        result: Result<Handshaken<TcpStream>, HandshakeFailure>,
        ctx: &mut Context<Self>,
    ) {
        let (est, stream, rest) = match result {
            Ok(ok) => ok,
            Err(f) => return self.handshake_failed(f.error, f.remote, ctx),
        };
        let remote: Arc<str> = Arc::from(est.remote_node.as_str());
        if self.transport.is_shut_down() {
            self.error = Some(ConnectionError::Shutdown);
            return ctx.stop();
        }
        if est.is_dataconn() {
            // not a node connection: the stream goes to the node as it is
            tracing::info!(
                node = %self.transport.local, peer = %self.peer_addr, remote = %remote,
                id = est.dataconn_id.as_deref().unwrap_or_default(),
                "data connection accepted"
            );
            let link = into_link(est, stream, rest, self.peer_addr);
            self.state = State::Closed;
            self.link.data_connection(link);
            return ctx.stop();
        }
        let cfg = &self.transport.cfg;
        let outbox = Arc::new(Outbox::new(
            self.conn_id,
            est.send_framing,
            cfg.max_send_queue,
        ));
        let (send_framing, recv_framing, recv_auth) =
            (est.send_framing, est.recv_framing, est.recv_auth);
        let subject = stream.peer_subject();
        let peer = Peer {
            subject,
            node: remote.clone(),
            conn: self.conn_id,
            addr: self.peer_addr,
            dialed: self.dialed.clone(),
            established: est,
        };
        if self.link.attach(&peer, outbox.clone()).is_err() {
            let error = HandshakeError::AlreadyConnected {
                node: remote.to_string(),
            };
            return self.handshake_failed(error.into(), Some(remote.to_string()), ctx);
        }
        let socket = stream.socket();
        let (reader, writer) = match stream.into_split() {
            Ok(halves) => halves,
            Err(e) => return self.handshake_failed(e.into(), Some(remote.to_string()), ctx),
        };
        self.state = State::Up(Box::new(Up {
            remote: remote.clone(),
            decoder: recv_framing.codec(cfg.max_packet, cfg.max_depth),
            rbuf: rest,
            max_packet: cfg.max_packet,
            reader,
            writer,
            outbox,
            wbuf: BytesMut::new(),
            wbuf_taken: 0,
            last_write: std::time::Instant::now(),
            last_life: Instant::now(),
            last_probe: None,
            write_blocked: false,
            socket,
            unacked: None,
            closing: false,
        }));
        tracing::info!(
            node = %self.transport.local, peer = %self.peer_addr, remote = %remote,
            send_framing = %send_framing, recv_framing = %recv_framing,
            auth = %recv_auth, outbound = self.dialed.is_some(),
            "connected"
        );
        if let Some(done) = self.done.take() {
            let _ = done.send(Ok(remote.to_string()));
        }
        self.link.node_up(&peer);
        ctx.spawn(Driver(Connection::poll_read));
        ctx.spawn(Driver(Connection::poll_write));
        if self.transport.cfg.keepalive {
            // a node without listeners must write now and then, so that
            // TCP notices a dead peer (the reference's write timeout)
            let period = self.transport.cfg.monitor_timeout;
            ctx.run_interval(period / 4, move |act, _| act.keepalive(period));
        }
        if let Some(timeout) = self.transport.cfg.liveness.peer_timeout {
            ctx.run_later(timeout / 4, move |act, ctx| act.heartbeat(timeout, ctx));
        }
    }

    /// The heartbeat (see [`NodeConfig::peer_timeout`]): fails the
    /// connection once the peer gave no sign of life for `timeout`; after
    /// a quarter of that, asks it the time (any answer — any bytes at all
    /// — will do). Runs again when the next of these is due, and a quarter
    /// after a request at the latest, so that after an answer the next
    /// request again waits a quarter of silence. The peer always has three
    /// quarters of `timeout` after a request to answer: if our own thread
    /// stalled past the deadline, the first check after it asks rather
    /// than fails (an answer that arrived meanwhile is read first).
    ///
    /// [`NodeConfig::peer_timeout`]: crate::NodeConfig::peer_timeout
    fn heartbeat(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        let State::Up(up) = &mut self.state else {
            return;
        };
        let now = Instant::now();
        // a backlog the peer acknowledged more of since the last look: it
        // reads, if slowly (the socket may not have become writable yet,
        // which takes half of what it holds drained)
        if let Some(unacked) = up.socket.and_then(super::unacked_bytes) {
            if up.unacked.is_some_and(|before| unacked < before) {
                up.last_life = now;
            }
            up.unacked = Some(unacked);
        }
        let idle = now.saturating_duration_since(up.last_life);
        let probe_after = timeout / 4;
        // the request outstanding (sent after the last sign of life), and
        // how long ago it went out
        let outstanding = up
            .last_probe
            .filter(|&p| p >= up.last_life)
            .map(|p| now.saturating_duration_since(p));
        // fail only once the peer had three quarters of `timeout` to answer
        // a request: if our own thread stalled past the deadline, it asks
        // first instead of blaming the peer
        if idle >= timeout && outstanding.is_some_and(|since| since >= timeout - probe_after) {
            self.transport
                .limit_hits()
                .hit(&up.remote, Limit::PeerTimeout);
            tracing::info!(
                node = %self.transport.local, peer = %self.peer_addr, remote = %up.remote,
                idle_ms = idle.as_millis() as u64,
                "nothing received within peer_timeout"
            );
            return self.fail(ConnectionError::PeerTimeout, ctx);
        }
        let next = if let Some(since) = outstanding {
            // look again soon: an answer moves the next request to a
            // quarter after it, not to the old deadline
            let due = timeout
                .saturating_sub(idle)
                .max((timeout - probe_after).saturating_sub(since));
            probe_after.min(due)
        } else if idle >= probe_after {
            let request = serde_json::json!([
                "",
                "time",
                format!("{}#{HEARTBEAT_REPLY}", self.transport.local)
            ])
            .to_string();
            let framing = up.outbox.framing;
            // a failing outbox fails the connection through the writer
            let _ = up
                .outbox
                .push(|buf| framing.encode_frame(request.as_bytes(), buf));
            tracing::trace!(
                node = %self.transport.local, remote = %up.remote,
                idle_ms = idle.as_millis() as u64, "heartbeat sent"
            );
            up.last_probe = Some(now);
            probe_after
        } else {
            probe_after - idle
        };
        ctx.run_later(next, move |act, ctx| act.heartbeat(timeout, ctx));
    }

    /// Sends `[]` if nothing was written for `period`.
    fn keepalive(&mut self, period: std::time::Duration) {
        if let State::Up(up) = &self.state
            && up.last_write.elapsed() >= period
        {
            // `[]` in the framing this connection sends
            let framing = up.outbox.framing;
            let _ = up.outbox.push(|buf| framing.encode_frame(b"[]", buf));
        }
    }

    fn handshake_failed(
        &mut self,
        error: ConnectionError,
        remote: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(remote) = &remote {
            self.link.slots().release(remote, self.conn_id);
        }
        if matches!(
            error,
            ConnectionError::Handshake(HandshakeError::AlreadyConnected { .. })
        ) {
            // expected when both sides dial at once
            tracing::info!(
                node = %self.transport.local, peer = %self.peer_addr, remote = ?remote,
                outbound = self.dialed.is_some(), %error,
                "handshake refused"
            );
        } else {
            // keyed by address: anyone can make a handshake fail
            let by = super::pending::addr_peer(self.peer_addr.ip());
            super::log_throttle::peer_warn!(
                self.transport.log_throttle(), &by,
                node = %self.transport.local, peer = %self.peer_addr, remote = ?remote,
                outbound = self.dialed.is_some(), %error,
                "handshake failed"
            );
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(Err(error.clone()));
        }
        self.link.handshake_failed(self.peer_addr, remote, &error);
        self.state = State::Closed;
        ctx.stop();
    }

    /// `max_packet` (`limit`): the peer's packet, or the JSON text it has
    /// not finished, is larger. Logged and counted.
    fn packet_too_large(&self, remote: &str, limit: usize) {
        super::log_throttle::peer_warn!(
            self.transport.log_throttle(), remote,
            node = %self.transport.local, peer = %self.peer_addr,
            remote, limit, "packet too large"
        );
        self.transport
            .limit_hits()
            .hit(remote, super::limits::Limit::PacketSize);
    }

    fn poll_read(&mut self, ctx: &mut Context<Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        for _ in 0..READS_PER_POLL {
            loop {
                let State::Up(up) = &mut self.state else {
                    return Poll::Ready(());
                };
                match up.decoder.decode(&mut up.rbuf) {
                    // dropped once we are closing
                    Ok(Some(_)) if up.closing => {}
                    // keepalives are dropped, node-port requests run here
                    // (in packet order), the rest goes to its port's mailbox
                    Ok(Some(packet)) => self.link.route(&up.remote, packet),
                    // every framing refuses a larger packet itself; this
                    // holds the bound even where a decoder would not
                    Ok(None) if up.rbuf.len() > up.max_packet.saturating_add(MAX_PREFIX) => {
                        let limit = up.max_packet;
                        let remote = up.remote.clone();
                        self.packet_too_large(&remote, limit);
                        self.fail(FrameError::TooLarge { limit }.into(), ctx);
                        return Poll::Ready(());
                    }
                    Ok(None) => break,
                    Err(_) if up.closing => {
                        self.fail(ConnectionError::Shutdown, ctx);
                        return Poll::Ready(());
                    }
                    Err(e) => {
                        if let FrameError::TooLarge { limit } = e {
                            let remote = up.remote.clone();
                            self.packet_too_large(&remote, limit);
                        }
                        self.fail(e.into(), ctx);
                        return Poll::Ready(());
                    }
                }
            }
            let State::Up(up) = &mut self.state else {
                return Poll::Ready(());
            };
            if up.rbuf.capacity() - up.rbuf.len() < READ_CHUNK / 4 {
                up.rbuf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut up.reader), cx, &mut up.rbuf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 => up.last_life = Instant::now(),
                // a TLS peer that closes without close_notify (as Perl's
                // does) has ended its stream like a plain one
                Poll::Ready(end)
                    if matches!(&end, Ok(0))
                        || matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof) =>
                {
                    let error = match up.decoder.decode_eof(&mut up.rbuf) {
                        _ if up.closing => ConnectionError::Shutdown,
                        Err(e) => e.into(),
                        Ok(_) => ConnectionError::Eof,
                    };
                    self.fail(error, ctx);
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    let error = if up.closing {
                        ConnectionError::Shutdown
                    } else {
                        e.into()
                    };
                    self.fail(error, ctx);
                    return Poll::Ready(());
                }
            }
        }
        // more may be waiting: let the mailbox and the writer run first
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// A fire-and-forget send passed the send-queue bound: the connection
    /// fails (its monitors fire with `send queue overflow`).
    fn send_queue_overflowed(&mut self, ctx: &mut Context<Self>) {
        if let State::Up(up) = &self.state {
            let limit = up.outbox.limit();
            tracing::warn!(
                node = %self.transport.local, peer = %self.peer_addr, remote = %up.remote,
                limit, "send queue overflow: the peer does not read fast enough"
            );
            self.transport
                .limit_hits()
                .hit(&up.remote, super::limits::Limit::SendQueue);
        }
        self.fail(ConnectionError::SendQueueOverflow, ctx);
    }

    fn poll_write(&mut self, ctx: &mut Context<Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let State::Up(up) = &mut self.state else {
            return Poll::Ready(());
        };
        loop {
            if up.wbuf.is_empty() {
                match up.outbox.next(&mut up.wbuf, cx.waker()) {
                    Next::Write => up.wbuf_taken = up.wbuf.len(),
                    Next::Idle => return Poll::Pending,
                    Next::Close => {
                        // all written: end our half (TLS's close_notify,
                        // then a FIN); the reader ends the connection when
                        // the peer ends its half, or LINGER does
                        if !up.closing {
                            up.closing = true;
                            ctx.run_later(LINGER, |act, ctx| {
                                act.fail(ConnectionError::Shutdown, ctx);
                            });
                        }
                        return match Pin::new(&mut up.writer).poll_shutdown(cx) {
                            Poll::Pending => Poll::Pending,
                            Poll::Ready(_) => Poll::Ready(()),
                        };
                    }
                    Next::Overflowed => {
                        self.send_queue_overflowed(ctx);
                        return Poll::Ready(());
                    }
                }
            } else if up.outbox.overflowed() {
                self.send_queue_overflowed(ctx);
                return Poll::Ready(());
            }
            match Pin::new(&mut up.writer).poll_write(cx, &up.wbuf) {
                Poll::Pending => {
                    up.write_blocked = true;
                    // the socket is full (the peer reads slowly, or not at
                    // all): an overflow must still wake us
                    if up.outbox.watch(cx.waker()) {
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    self.fail(ConnectionError::Io("write returned zero".into()), ctx);
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(n)) => {
                    up.wbuf.advance(n);
                    up.outbox.written(n);
                    if up.wbuf.is_empty() && up.wbuf_taken > KEEP_WRITE_BUFFER {
                        // a backlog grew the buffer: let it go rather than
                        // keep its peak size for the connection's life
                        up.wbuf = BytesMut::with_capacity(64 * 1024);
                    }
                    up.last_write = std::time::Instant::now();
                    if up.write_blocked {
                        // the socket had been full: the peer read some
                        up.write_blocked = false;
                        up.last_life = up.last_write;
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.fail(e.into(), ctx);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// A write buffer that held more than this when taken is freed once
/// written, so that a connection's memory follows its backlog down again
/// (in steady traffic a write takes far less).
const KEEP_WRITE_BUFFER: usize = 256 * 1024;

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let State::Handshaking(stream) = &mut self.state else {
            return;
        };
        let Some(stream) = stream.take() else {
            return;
        };
        let mut hs = Handshake::new(
            self.transport.cfg.handshake.clone(),
            Some(&self.peer_addr.to_string()),
            fresh_nonce(),
            Instant::now(),
        );
        let outbound = self.dialed.is_some();
        if outbound {
            // a node connection we dial: the peer may not make it a data
            // connection
            hs = hs.without_upgrade();
        }
        let link = self.link.clone();
        let transport = self.transport.clone();
        let peer = self.peer_addr;
        let conn = self.conn_id;
        let pending = self.pending.take();
        let evicted = pending
            .as_ref()
            .map_or_else(CancellationToken::new, PendingGuard::evicted);
        // the node's slot table answers the handshake's claims
        let fut = async move {
            // counted as pending until the handshake ends, either way
            let _pending = pending;
            let slots = link.slots();
            drive(
                stream,
                hs,
                Claimant {
                    conn,
                    outbound,
                    slots,
                    tls: transport.cfg.tls.as_ref(),
                    peer: peer.ip(),
                    evicted,
                },
            )
            .await
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(|result, act, ctx| act.handshake_done(result, ctx)),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let error = self.error.take().unwrap_or(ConnectionError::Shutdown);
        if let Some(done) = self.done.take() {
            let _ = done.send(Err(error.clone()));
        }
        if let State::Up(up) = std::mem::replace(&mut self.state, State::Closed) {
            up.outbox.close();
            if matches!(error, ConnectionError::Eof | ConnectionError::Shutdown) {
                tracing::info!(
                    node = %self.transport.local, peer = %self.peer_addr, remote = %up.remote,
                    %error, "connection closed"
                );
            } else {
                super::log_throttle::peer_warn!(
                    self.transport.log_throttle(), &up.remote,
                    node = %self.transport.local, peer = %self.peer_addr, remote = %up.remote,
                    %error, "connection failed"
                );
            }
            // the node is down: monitors fire, later sends queue for the
            // next connection
            self.link.connection_lost(&up.remote, self.conn_id, &error);
        }
    }
}

/// Polls one of the connection's loops (read or write) inside the actor's
/// context, so the loop has the actor's state at hand.
struct Driver(fn(&mut Connection, &mut Context<Connection>, &mut TaskContext<'_>) -> Poll<()>);

impl ActorFuture<Connection> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection,
        ctx: &mut Context<Connection>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<()> {
        (self.0)(act, ctx, cx)
    }
}

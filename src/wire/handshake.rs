//! The handshake as a state machine without sockets, clocks or random
//! numbers.
//!
//! The caller writes [`Handshake::greeting`] at once, then feeds every byte
//! it reads to [`Handshake::advance`] and writes what that puts into `out`.
//! `advance` stops at each point where the node must decide something and
//! says so with an [`Event`]:
//!
//! * [`Event::PeerNamed`]: the peer's first line named its node; refuse
//!   now with [`Handshake::refuse`] if that node is up (as the reference
//!   does), else just go on.
//! * [`Event::ClaimSlot`]: the peer's two lines are in and our auth line is
//!   ready; the node decides whether this handshake may send it (see
//!   [`slot`](super::slot)): [`Handshake::grant`] sends it,
//!   [`Handshake::refuse`] fails the handshake before it is sent, and
//!   doing neither keeps the handshake waiting while it goes on reading
//!   the peer's auth line (`ClaimSlot` comes again, with
//!   `peer_verified`, once that line checks out).
//! * [`Event::Established`]: both auth lines are through; bytes left in
//!   the input buffer belong to the packet stream.
//!
//! Data connections (`aemp-dataconn`, see [`Handshake::new_dataconn`]) are
//! the same handshake with the self and already-connected checks skipped
//! and no slot: there is no `PeerNamed`, and instead of `ClaimSlot` comes
//! [`Event::SendAuth`] (call [`Handshake::grant`] at once). An acceptor
//! upgrades to it when the peer's first line says `aemp-dataconn`.
//!
//! Time enters only through `now` arguments; the deadline leaves through
//! [`Handshake::poll_timeout`] and the driver calls
//! [`Handshake::handle_timeout`] when it passes.
//!
//! ```
//! use std::{sync::Arc, time::Instant};
//! use aemp::wire::{Event, Handshake, HandshakeConfig, Nonce};
//! let now = Instant::now();
//! let cfg = |id| Arc::new(HandshakeConfig::new(id, Some("s".into())));
//! let mut a = Handshake::new(cfg("a"), None, Nonce::from_random([1; 66]), now);
//! let mut b = Handshake::new(cfg("b"), None, Nonce::from_random([2; 66]), now);
//! let (mut to_a, mut to_b) = (bytes::BytesMut::from(&b.greeting()[..]), bytes::BytesMut::from(&a.greeting()[..]));
//! let mut out = Vec::new();
//! assert_eq!(a.advance(&mut to_a).unwrap(), Some(Event::PeerNamed("b".into())));
//! assert!(matches!(a.advance(&mut to_a).unwrap(), Some(Event::ClaimSlot { .. })));
//! assert_eq!(a.grant(&mut out).unwrap(), None); // our auth line is in `out` now
//! to_b.extend_from_slice(&out);
//! // a driver without a slot table: go on at every event
//! let eb = b.advance_granting(&mut to_b, &mut Vec::new()).unwrap().unwrap();
//! assert_eq!(eb.remote_node, "a");
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::auth::{
    AuthMethod, DEFAULT_AUTH_ACCEPT, DEFAULT_AUTH_OFFER, Secret, select_auth, send_token,
    transcript, verify_token,
};
use super::error::{HandshakeError, printable};
use super::framing::{Framing, select_framing};
use super::greeting::{
    DATACONN_ID_KEY, DATACONN_PROTOCOL, Greeting, Nonce, PROTOCOL, PROTOCOL_VERSION,
    dataconn_id_ok, take_line,
};

/// Default handshake deadline and `monitor_timeout` (reference: 30 s).
pub const DEFAULT_MONITOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Value of the `provider` greeting key aemp sends.
pub const PROVIDER: &str = concat!("aemp-", env!("CARGO_PKG_VERSION"));

/// Our side's settings for handshakes.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Our node id.
    pub node_id: String,
    /// The shared secret; without one (and without TLS) no handshake can
    /// succeed, as in the reference.
    pub secret: Option<Secret>,
    /// Methods we may send, in no particular order (the peer's accept
    /// list decides the order).
    pub auth_offer: Vec<AuthMethod>,
    /// Methods we accept, sent in our greeting in this order.
    pub auth_accept: Vec<AuthMethod>,
    /// Framings we accept, sent in our greeting in this order.
    pub framings: Vec<Framing>,
    /// Absolute deadline for the whole handshake, from connect/accept.
    pub timeout: Duration,
    /// Value of the `provider` greeting key.
    pub provider: String,
    /// Whether we can switch to TLS (we have a certificate): announced as
    /// `tls=1.0`, and then TLS is used with peers that announce it too.
    /// The transport has no TLS yet, so nodes leave this off.
    pub tls: bool,
}

impl HandshakeConfig {
    /// Settings with the reference's defaults for `node_id` and `secret`.
    pub fn new(node_id: &str, secret: Option<Secret>) -> HandshakeConfig {
        HandshakeConfig {
            node_id: node_id.to_owned(),
            secret,
            auth_offer: DEFAULT_AUTH_OFFER.to_vec(),
            auth_accept: DEFAULT_AUTH_ACCEPT.to_vec(),
            framings: Framing::DEFAULT.to_vec(),
            timeout: DEFAULT_MONITOR_TIMEOUT,
            provider: PROVIDER.to_owned(),
            tls: false,
        }
    }
}

/// What a successful handshake agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The peer's node id.
    pub remote_node: String,
    /// The peer's first greeting line, parsed.
    pub remote_greeting: Greeting,
    /// The framing we send in (chosen by us from the peer's list).
    pub send_framing: Framing,
    /// The framing the peer sends in (chosen by the peer from our list).
    pub recv_framing: Framing,
    /// The auth method we used.
    pub sent_auth: AuthMethod,
    /// The auth method the peer used.
    pub recv_auth: AuthMethod,
    /// For a data connection (`aemp-dataconn`): its id — ours when we
    /// dialled with one, else the one the peer's greeting named. The bytes
    /// after the auth lines are then a raw stream, not packets.
    pub dataconn_id: Option<String>,
}

impl Established {
    /// Whether this is a data connection.
    pub fn is_dataconn(&self) -> bool {
        self.dataconn_id.is_some()
    }
}

/// A point where the driver decides (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's first line passed its checks and names this node.
    PeerNamed(String),
    /// Our auth line is ready; may we send it?
    ClaimSlot {
        /// The peer's node id.
        node: String,
        /// Whether the peer's auth line has already checked out (it sent
        /// it without waiting for ours).
        peer_verified: bool,
    },
    /// A data connection's auth line is ready: send it now with
    /// [`Handshake::grant`] (no slot is involved).
    SendAuth,
    /// Both greeting lines are through and this connection uses TLS: the
    /// driver switches the stream to TLS now — as the TLS client if
    /// `client` (our nonce line is the smaller one), else as the server —
    /// hands it the bytes left in the input buffer (the peer's first TLS
    /// records), and feeds what it decrypts to `advance` from then on.
    StartTls {
        /// Whether we are the TLS client.
        client: bool,
    },
    /// The handshake is complete.
    Established(Established),
}

/// The agreement so far, once the peer's two lines are in.
struct Agreed {
    rg1: Bytes,
    rg2: Bytes,
    greeting: Greeting,
    sent_auth: AuthMethod,
    send_framing: Framing,
}

enum State {
    ExpectGreeting,
    ExpectNonce {
        rg1: Bytes,
        greeting: Greeting,
    },
    /// The driver switches to TLS; then the slot is claimed.
    StartTls {
        agreed: Agreed,
        auth_line: Vec<u8>,
        reported: bool,
    },
    /// Our auth line waits for the slot; the peer's may arrive meanwhile.
    Claiming {
        agreed: Agreed,
        auth_line: Vec<u8>,
        /// The peer's checked auth line: (method, framing).
        verified: Option<(AuthMethod, Framing)>,
        /// `ClaimSlot` was reported for the current `verified`.
        reported: bool,
    },
    ExpectAuth {
        agreed: Agreed,
    },
    Done,
}

/// One side of an AEMP handshake.
pub struct Handshake {
    cfg: Arc<HandshakeConfig>,
    lg1: Bytes,
    lg2: Bytes,
    deadline: Instant,
    remote_node: Option<String>,
    state: State,
    /// The handshake failed: every later call returns this error.
    failed: Option<HandshakeError>,
    /// A data connection: the id, once known (at once when we dial one,
    /// from the peer's first line when we accept one).
    dataconn: Option<String>,
    /// Whether this handshake dials a data connection.
    dialling_dataconn: bool,
    /// Whether a peer's `aemp-dataconn` greeting is refused (we dialled a
    /// node connection).
    no_upgrade: bool,
}

impl Handshake {
    /// Starts a handshake at `now` with our nonce line `nonce`. `peeraddr`
    /// is the peer's socket address as we see it (sent as the `peeraddr`
    /// key).
    pub fn new(
        cfg: Arc<HandshakeConfig>,
        peeraddr: Option<&str>,
        nonce: Nonce,
        now: Instant,
    ) -> Handshake {
        let greeting = local_greeting(&cfg, peeraddr);
        Handshake::with_greeting(cfg, greeting, nonce, now)
    }

    fn with_greeting(
        cfg: Arc<HandshakeConfig>,
        greeting: Greeting,
        nonce: Nonce,
        now: Instant,
    ) -> Handshake {
        Handshake {
            lg1: Bytes::from(greeting.to_line()),
            lg2: Bytes::from(nonce.as_str().to_owned()),
            deadline: now + cfg.timeout,
            remote_node: None,
            state: State::ExpectGreeting,
            failed: None,
            dataconn: None,
            dialling_dataconn: false,
            no_upgrade: false,
            cfg,
        }
    }

    /// For a node connection we dial: a peer that greets with
    /// `aemp-dataconn` is refused (only the dialler of a data connection
    /// says so; the reference would upgrade either way).
    pub fn without_upgrade(mut self) -> Handshake {
        self.no_upgrade = true;
        self
    }

    /// Starts the handshake of a data connection we dial: the greeting
    /// says `aemp-dataconn` and carries `dataconn_id=<id>`. Fails if `id`
    /// cannot travel in a greeting ([`dataconn_id_ok`]).
    pub fn new_dataconn(
        cfg: Arc<HandshakeConfig>,
        peeraddr: Option<&str>,
        nonce: Nonce,
        now: Instant,
        id: &str,
    ) -> Result<Handshake, HandshakeError> {
        if !dataconn_id_ok(id) {
            return Err(HandshakeError::InvalidDataconnId { id: id.to_owned() });
        }
        let mut greeting = local_greeting(&cfg, peeraddr).with(DATACONN_ID_KEY, id);
        greeting.protocol = DATACONN_PROTOCOL.to_owned();
        let mut hs = Handshake::with_greeting(cfg, greeting, nonce, now);
        hs.dataconn = Some(id.to_owned());
        hs.dialling_dataconn = true;
        Ok(hs)
    }

    /// The data connection id, if this is (by now known to be) a data
    /// connection.
    pub fn dataconn_id(&self) -> Option<&str> {
        self.dataconn.as_deref()
    }

    /// Our two greeting lines, newline terminated: write them at once.
    pub fn greeting(&self) -> Vec<u8> {
        let mut g = Vec::with_capacity(self.lg1.len() + self.lg2.len() + 2);
        g.extend_from_slice(&self.lg1);
        g.push(b'\n');
        g.extend_from_slice(&self.lg2);
        g.push(b'\n');
        g
    }

    /// When the handshake must have completed; `None` once it has (or has
    /// failed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (&self.state, &self.failed) {
            (State::Done, _) | (_, Some(_)) => None,
            _ => Some(self.deadline),
        }
    }

    /// Fails the handshake with [`HandshakeError::Timeout`] if `now` is
    /// past its deadline and it is not complete.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if now >= self.deadline && !matches!(self.state, State::Done) {
            return Err(self.fail(HandshakeError::Timeout {
                timeout: self.cfg.timeout,
            }));
        }
        Ok(())
    }

    /// The peer's nonce line, once it is in.
    fn remote_nonce(&self) -> Option<Bytes> {
        match &self.state {
            State::StartTls { agreed, .. }
            | State::Claiming { agreed, .. }
            | State::ExpectAuth { agreed } => Some(agreed.rg2.clone()),
            _ => None,
        }
    }

    /// The peer's node id, once its first line has been accepted.
    pub fn remote_node(&self) -> Option<&str> {
        self.remote_node.as_deref()
    }

    /// The peer's first greeting line, once it has been accepted.
    pub fn remote_greeting(&self) -> Option<&Greeting> {
        match &self.state {
            State::ExpectNonce { greeting, .. } => Some(greeting),
            State::Claiming { agreed, .. } | State::ExpectAuth { agreed } => Some(&agreed.greeting),
            _ => None,
        }
    }

    /// Consumes complete lines from `input` up to the next [`Event`] (what
    /// to send comes from [`greeting`](Handshake::greeting) and
    /// [`grant`](Handshake::grant)); `None` means more input is needed
    /// (or, while claiming the slot, a decision). Anything after the
    /// peer's auth line stays in `input`. Errors are final: every later
    /// call returns the same error; so is the end, where every later call
    /// is [`HandshakeError::Finished`].
    pub fn advance(&mut self, input: &mut BytesMut) -> Result<Option<Event>, HandshakeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.step(input) {
            Ok(event) => Ok(event),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// [`advance`](Handshake::advance) for a driver that keeps no slots
    /// (tests, tools, single connections): every `PeerNamed` goes on and
    /// every `ClaimSlot` is granted. Returns the agreement once complete.
    pub fn advance_granting(
        &mut self,
        input: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> Result<Option<Established>, HandshakeError> {
        loop {
            match self.advance(input)? {
                None => return Ok(None),
                Some(Event::PeerNamed(_)) => {}
                Some(Event::ClaimSlot { .. } | Event::SendAuth) => {
                    if let Some(est) = self.grant(out)? {
                        return Ok(Some(est));
                    }
                }
                Some(Event::Established(est)) => return Ok(Some(est)),
                // this driver has no TLS to switch to
                Some(Event::StartTls { .. }) => {
                    return Err(self.fail(HandshakeError::OutOfOrder {
                        call: "advance_granting on a TLS connection",
                    }));
                }
            }
        }
    }

    /// The slot is ours: appends our auth line to `out`. Returns the
    /// agreement if the peer had authenticated already.
    pub fn grant(&mut self, out: &mut Vec<u8>) -> Result<Option<Established>, HandshakeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Claiming {
                agreed,
                auth_line,
                verified,
                ..
            } => {
                out.extend_from_slice(&auth_line);
                match verified {
                    Some((recv_auth, recv_framing)) => Ok(Some(established(
                        agreed,
                        recv_auth,
                        recv_framing,
                        self.dataconn.clone(),
                    ))),
                    None => {
                        self.state = State::ExpectAuth { agreed };
                        Ok(None)
                    }
                }
            }
            other => {
                self.state = other;
                Err(self.fail(HandshakeError::OutOfOrder { call: "grant" }))
            }
        }
    }

    /// The node refuses this handshake (its node is connected, or another
    /// handshake has the slot): fails it with the reference's
    /// `already connected` error, before our auth line is sent.
    pub fn refuse(&mut self) -> HandshakeError {
        if let Some(e) = &self.failed {
            return e.clone();
        }
        let node = self.remote_node.clone().unwrap_or_default();
        self.fail(HandshakeError::AlreadyConnected { node })
    }

    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        self.failed = Some(e.clone());
        e
    }

    fn step(&mut self, input: &mut BytesMut) -> Result<Option<Event>, HandshakeError> {
        loop {
            match &mut self.state {
                State::Done => return Err(HandshakeError::Finished),
                State::StartTls { reported, .. } if !*reported => {
                    *reported = true;
                    let client = self.lg2 < self.remote_nonce().unwrap_or_default();
                    return Ok(Some(Event::StartTls { client }));
                }
                State::StartTls { .. } => {
                    // the driver has switched: claim the slot next
                    if let State::StartTls {
                        agreed, auth_line, ..
                    } = std::mem::replace(&mut self.state, State::Done)
                    {
                        self.state = State::Claiming {
                            agreed,
                            auth_line,
                            verified: None,
                            reported: false,
                        };
                    }
                    continue;
                }
                State::Claiming {
                    verified, reported, ..
                } => {
                    if !*reported {
                        *reported = true;
                        if self.dataconn.is_some() {
                            return Ok(Some(Event::SendAuth));
                        }
                        return Ok(Some(Event::ClaimSlot {
                            node: self.remote_node.clone().unwrap_or_default(),
                            peer_verified: verified.is_some(),
                        }));
                    }
                    // a data connection's auth line goes out at once: wait
                    // for the grant, reading nothing more
                    if verified.is_some() || self.dataconn.is_some() {
                        return Ok(None); // waiting for the decision
                    }
                }
                _ => {}
            }
            let Some(line) = take_line(input)? else {
                return Ok(None);
            };
            self.state = match std::mem::replace(&mut self.state, State::Done) {
                State::ExpectGreeting => {
                    let greeting = Greeting::parse(&line);
                    let node = self.check_greeting(&greeting)?;
                    self.state = State::ExpectNonce {
                        rg1: line,
                        greeting,
                    };
                    if self.dataconn.is_some() {
                        continue; // no node-level checks, nothing to decide
                    }
                    return Ok(Some(Event::PeerNamed(node)));
                }
                State::ExpectNonce { rg1, greeting } => {
                    let (agreed, auth_line) = self.answer(rg1, line, greeting)?;
                    if self.uses_tls(&agreed.greeting) {
                        State::StartTls {
                            agreed,
                            auth_line,
                            reported: false,
                        }
                    } else {
                        State::Claiming {
                            agreed,
                            auth_line,
                            verified: None,
                            reported: false,
                        }
                    }
                }
                State::StartTls { .. } => {
                    return Err(HandshakeError::OutOfOrder { call: "advance" });
                }
                State::Claiming {
                    agreed, auth_line, ..
                } => {
                    let checked = self.check_auth(&agreed, &line)?;
                    State::Claiming {
                        agreed,
                        auth_line,
                        verified: Some(checked),
                        reported: false,
                    }
                }
                State::ExpectAuth { agreed } => {
                    let (recv_auth, recv_framing) = self.check_auth(&agreed, &line)?;
                    return Ok(Some(Event::Established(established(
                        agreed,
                        recv_auth,
                        recv_framing,
                        self.dataconn.clone(),
                    ))));
                }
                State::Done => return Err(HandshakeError::Finished),
            };
        }
    }

    /// The checks on the peer's first line, in the reference's order;
    /// returns the peer's node id. An acceptor upgrades to a data
    /// connection here; a data connection skips the self check (and the
    /// driver the already-connected one).
    fn check_greeting(&mut self, g: &Greeting) -> Result<String, HandshakeError> {
        if self.dialling_dataconn {
            // the acceptor greets with plain `aemp` before it upgrades
            if g.protocol != PROTOCOL && g.protocol != DATACONN_PROTOCOL {
                return Err(HandshakeError::UnexpectedProtocol {
                    expected: DATACONN_PROTOCOL.to_owned(),
                    got: printable(&g.protocol),
                });
            }
        } else if g.protocol == DATACONN_PROTOCOL && !self.no_upgrade {
            // the one sub-protocol we upgrade to; other `aemp-*` are refused
            let id = g
                .get(DATACONN_ID_KEY)
                .filter(|id| dataconn_id_ok(id))
                .ok_or(HandshakeError::MissingDataconnId)?;
            self.dataconn = Some(id.to_owned());
        } else if g.protocol != PROTOCOL {
            return Err(HandshakeError::UnexpectedProtocol {
                expected: PROTOCOL.to_owned(),
                got: printable(&g.protocol),
            });
        }
        if !g.version_is(PROTOCOL_VERSION) {
            return Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: printable(&g.version),
            });
        }
        let node = g.node_id()?.to_owned();
        self.remote_node = Some(node.clone());
        if node == self.cfg.node_id && self.dataconn.is_none() {
            return Err(HandshakeError::TalkingToMyself);
        }
        Ok(node)
    }

    /// Whether this connection switches to TLS after the greeting: we can
    /// and the peer's `tls` value has integer part 1 (reference rule).
    fn uses_tls(&self, g: &Greeting) -> bool {
        self.cfg.tls
            && g.get("tls")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .is_some_and(|v| v.trunc() == 1.0)
    }

    /// After the peer's nonce: echo checks, choice of auth and framing, and
    /// our auth line (not sent yet).
    fn answer(
        &self,
        rg1: Bytes,
        rg2: Bytes,
        greeting: Greeting,
    ) -> Result<(Agreed, Vec<u8>), HandshakeError> {
        if rg1 == self.lg1 && rg2 == self.lg2 {
            return Err(HandshakeError::EchoAttack);
        }
        if rg2 == self.lg2 {
            return Err(HandshakeError::IdenticalNonce);
        }
        let tls = self.uses_tls(&greeting);
        let auth = select_auth(&greeting.auth, &self.cfg.auth_offer, tls).ok_or_else(|| {
            HandshakeError::NoCommonAuth {
                offered: printable(&greeting.auth.join(",")),
            }
        })?;
        let framing = select_framing(&greeting.framings, &self.cfg.framings).ok_or_else(|| {
            HandshakeError::NoCommonFraming {
                offered: printable(&greeting.framings.join(",")),
            }
        })?;
        let local_first = transcript([&self.lg1, &self.lg2], [&rg1, &rg2]);
        let token = send_token(auth, self.cfg.secret.as_ref(), &local_first, tls)?;
        let auth_line = format!("{auth};{token};{framing}\n").into_bytes();
        let agreed = Agreed {
            rg1,
            rg2,
            greeting,
            sent_auth: auth,
            send_framing: framing,
        };
        Ok((agreed, auth_line))
    }

    /// The peer's auth line: method, token, framing (more fields are
    /// ignored, as in the reference).
    fn check_auth(
        &self,
        agreed: &Agreed,
        line: &[u8],
    ) -> Result<(AuthMethod, Framing), HandshakeError> {
        let mut fields = line.split(|&b| b == b';');
        let name = String::from_utf8_lossy(fields.next().unwrap_or_default());
        let token = fields.next();
        let framing = fields.next().filter(|f| !f.is_empty());
        let method =
            AuthMethod::from_name(&name).ok_or_else(|| HandshakeError::UnsupportedRecvAuth {
                method: printable(&name),
            })?;
        if !self.cfg.auth_accept.contains(&method) {
            return Err(HandshakeError::AuthNotAccepted {
                method: method.name().to_owned(),
            });
        }
        let token = token.ok_or(HandshakeError::MalformedAuthLine { field: "token" })?;
        let remote_first = transcript([&agreed.rg1, &agreed.rg2], [&self.lg1, &self.lg2]);
        let tls = self.uses_tls(&agreed.greeting);
        verify_token(method, token, self.cfg.secret.as_ref(), &remote_first, tls)?;
        let framing = framing.ok_or(HandshakeError::MalformedAuthLine { field: "framing" })?;
        let framing_name = String::from_utf8_lossy(framing);
        let framing = Framing::from_name(&framing_name)
            .filter(|f| self.cfg.framings.contains(f))
            .ok_or_else(|| HandshakeError::FramingNotOffered {
                framing: printable(&framing_name),
            })?;
        Ok((method, framing))
    }
}

/// Our first greeting line for a node connection.
fn local_greeting(cfg: &HandshakeConfig, peeraddr: Option<&str>) -> Greeting {
    let mut greeting = Greeting::new(
        &cfg.node_id,
        cfg.auth_accept.iter().map(|m| m.name()),
        cfg.framings.iter().map(|f| f.name()),
    )
    .with("provider", cfg.provider.clone());
    if let Some(addr) = peeraddr {
        greeting = greeting.with("peeraddr", addr);
    }
    if cfg.tls {
        greeting = greeting.with("tls", "1.0");
    }
    greeting
}

fn established(
    agreed: Agreed,
    recv_auth: AuthMethod,
    recv_framing: Framing,
    dataconn_id: Option<String>,
) -> Established {
    Established {
        dataconn_id,
        remote_node: agreed.greeting.node.clone(),
        remote_greeting: agreed.greeting,
        send_framing: agreed.send_framing,
        recv_framing,
        sent_auth: agreed.sent_auth,
        recv_auth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(node: &str, secret: &str) -> Arc<HandshakeConfig> {
        Arc::new(HandshakeConfig::new(node, Some(secret.into())))
    }

    fn hs(node: &str, secret: &str, nonce: u8, now: Instant) -> Handshake {
        Handshake::new(
            cfg(node, secret),
            None,
            Nonce::from_random([nonce; 66]),
            now,
        )
    }

    type Outcome = Result<Option<Established>, HandshakeError>;

    /// Drives two handshakes against each other in memory, granting every
    /// claim; returns both outcomes.
    fn pair(a: &mut Handshake, b: &mut Handshake) -> (Outcome, Outcome) {
        let mut to_a = BytesMut::from(&b.greeting()[..]);
        let mut to_b = BytesMut::from(&a.greeting()[..]);
        let mut ra = Ok(None);
        let mut rb = Ok(None);
        for _ in 0..4 {
            let (mut oa, mut ob) = (Vec::new(), Vec::new());
            if matches!(ra, Ok(None)) {
                ra = a.advance_granting(&mut to_a, &mut oa);
            }
            if matches!(rb, Ok(None)) {
                rb = b.advance_granting(&mut to_b, &mut ob);
            }
            to_a.extend_from_slice(&ob);
            to_b.extend_from_slice(&oa);
        }
        (ra, rb)
    }

    #[test]
    fn two_sides_agree() {
        let now = Instant::now();
        let mut a = Handshake::new(
            cfg("a", "s"),
            Some("127.0.0.1:1"),
            Nonce::from_random([1; 66]),
            now,
        );
        let mut b = hs("b", "s", 2, now);
        let (ra, rb) = pair(&mut a, &mut b);
        let (ea, eb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert_eq!(ea.remote_node, "b");
        assert_eq!(eb.remote_greeting.get("peeraddr"), Some("127.0.0.1:1"));
        assert_eq!(ea.sent_auth, AuthMethod::HmacMd6_64_256);
        assert_eq!(eb.recv_auth, AuthMethod::HmacMd6_64_256);
        assert_eq!(ea.send_framing, Framing::Json);
    }

    #[test]
    fn wrong_secret_fails_both_sides() {
        let now = Instant::now();
        let mut a = hs("a", "s", 1, now);
        let mut b = hs("b", "t", 2, now);
        let (ra, rb) = pair(&mut a, &mut b);
        assert_eq!(ra, Err(HandshakeError::AuthFailure));
        assert_eq!(rb, Err(HandshakeError::AuthFailure));
    }

    #[test]
    fn timeout_is_absolute() {
        let now = Instant::now();
        let mut h = hs("a", "s", 1, now);
        assert_eq!(h.poll_timeout(), Some(now + DEFAULT_MONITOR_TIMEOUT));
        assert!(h.handle_timeout(now + Duration::from_secs(29)).is_ok());
        let timeout = HandshakeError::Timeout {
            timeout: DEFAULT_MONITOR_TIMEOUT,
        };
        assert_eq!(
            h.handle_timeout(now + DEFAULT_MONITOR_TIMEOUT),
            Err(timeout.clone())
        );
        // final: feeding it more fails the same way, and no deadline is left
        let mut input = BytesMut::from(&b"aemp;1;b;hmac_md6_64_256;json\n"[..]);
        assert_eq!(h.advance(&mut input), Err(timeout));
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn a_completed_handshake_has_no_deadline_and_refuses_more_input() {
        let now = Instant::now();
        let mut a = hs("a", "s", 1, now);
        let mut b = hs("b", "s", 2, now);
        let (ra, _) = pair(&mut a, &mut b);
        assert!(ra.unwrap().is_some());
        assert_eq!(a.poll_timeout(), None);
        assert!(a.handle_timeout(now + DEFAULT_MONITOR_TIMEOUT).is_ok());
        let mut more = BytesMut::from(&b"[\"x\"]"[..]);
        assert_eq!(a.advance(&mut more), Err(HandshakeError::Finished));
        assert_eq!(
            &more[..],
            b"[\"x\"]",
            "the bytes stay for the packet stream"
        );
    }

    #[test]
    fn peer_fields_in_errors_have_no_control_characters() {
        for (line, want) in [
            (&b"ae\x1bmp;1;x\n"[..], "got 'ae\\u{1b}mp'"),
            (b"aemp;2\x07;x\n", "they: 2\\u{7}"),
            (b"aemp;1;x\x1b;md6\x00;json\n", "invalid node id"),
            (b"aemp;1;x;hm\x1bac;json\n", "hm\\u{1b}ac: no common auth"),
        ] {
            let mut a = hs("a", "s", 1, Instant::now());
            // with a nonce line of its own after it
            let b = hs("b", "s", 2, Instant::now()).greeting();
            let nonce = &b[b.iter().position(|&c| c == b'\n').unwrap() + 1..];
            let mut input = BytesMut::from(line);
            input.extend_from_slice(nonce);
            let mut out = Vec::new();
            let e = loop {
                match a.advance_granting(&mut input, &mut out) {
                    Err(e) => break e.to_string(),
                    Ok(None) => panic!("{line:?} not refused"),
                    Ok(Some(_)) => {}
                }
            };
            assert!(e.contains(want), "{e}");
            assert!(!e.chars().any(char::is_control), "{e:?}");
        }
    }

    #[test]
    fn echo_is_refused_as_talking_to_myself() {
        let mut a = hs("a", "s", 1, Instant::now());
        let mut input = BytesMut::from(&a.greeting()[..]);
        assert_eq!(a.advance(&mut input), Err(HandshakeError::TalkingToMyself));
    }

    #[test]
    fn identical_nonce_is_refused() {
        let cfg = cfg("a", "s");
        let mut a = Handshake::new(cfg, None, Nonce::from_line("n"), Instant::now());
        let mut input = BytesMut::from(&b"aemp;1;b;hmac_md6_64_256;json\nn\n"[..]);
        assert_eq!(
            a.advance_granting(&mut input, &mut Vec::new()),
            Err(HandshakeError::IdenticalNonce)
        );
    }

    #[test]
    fn errors_are_final() {
        let mut a = hs("a", "s", 1, Instant::now());
        let mut input = BytesMut::from(&b"xyz;1;b;hmac_md6_64_256;json\n"[..]);
        let e = a.advance(&mut input).unwrap_err();
        let mut good = BytesMut::from(&b"aemp;1;b;hmac_md6_64_256;json\n"[..]);
        assert_eq!(a.advance(&mut good), Err(e.clone()));
        assert_eq!(a.grant(&mut Vec::new()), Err(e.clone()));
        assert_eq!(a.refuse(), e);
    }

    #[test]
    fn refused_after_line_one() {
        let mut a = hs("a", "s", 1, Instant::now());
        let mut input = BytesMut::from(&b"aemp;1;b;hmac_md6_64_256;json\n"[..]);
        assert_eq!(
            a.advance(&mut input),
            Ok(Some(Event::PeerNamed("b".into())))
        );
        assert_eq!(
            a.refuse(),
            HandshakeError::AlreadyConnected { node: "b".into() }
        );
        assert_eq!(a.remote_node(), Some("b"));
    }

    #[test]
    fn grant_out_of_order_is_an_error() {
        let mut a = hs("a", "s", 1, Instant::now());
        assert_eq!(
            a.grant(&mut Vec::new()),
            Err(HandshakeError::OutOfOrder { call: "grant" })
        );
    }

    /// Our auth line leaves only on `grant`; a refused claim sends nothing
    /// after the greeting, and a waiting claim still checks the peer's
    /// auth line.
    #[test]
    fn the_auth_line_waits_for_the_slot() {
        let now = Instant::now();
        let mut a = hs("a", "s", 1, now);
        let mut b = hs("b", "s", 2, now);
        let mut to_a = BytesMut::from(&b.greeting()[..]);
        let mut to_b = BytesMut::from(&a.greeting()[..]);
        let mut out_b = Vec::new();
        assert_eq!(b.advance_granting(&mut to_b, &mut out_b), Ok(None));
        to_a.extend_from_slice(&out_b); // b's auth line arrives with its greeting
        assert_eq!(a.advance(&mut to_a), Ok(Some(Event::PeerNamed("b".into()))));
        assert_eq!(
            a.advance(&mut to_a),
            Ok(Some(Event::ClaimSlot {
                node: "b".into(),
                peer_verified: false
            }))
        );
        // not granted yet: a reads on and checks b's auth line
        assert_eq!(
            a.advance(&mut to_a),
            Ok(Some(Event::ClaimSlot {
                node: "b".into(),
                peer_verified: true
            }))
        );
        assert_eq!(a.advance(&mut to_a), Ok(None));
        let mut out_a = Vec::new();
        let est = a.grant(&mut out_a).unwrap().expect("established at once");
        assert_eq!(est.remote_node, "b");
        to_b.extend_from_slice(&out_a);
        assert!(
            b.advance_granting(&mut to_b, &mut Vec::new())
                .unwrap()
                .is_some()
        );

        // refused while claiming: nothing but the greeting was ever sent
        let mut c = hs("c", "s", 3, now);
        let mut to_c = BytesMut::from(&hs("b", "s", 4, now).greeting()[..]);
        c.advance(&mut to_c).unwrap();
        assert!(matches!(
            c.advance(&mut to_c),
            Ok(Some(Event::ClaimSlot { .. }))
        ));
        assert_eq!(
            c.refuse(),
            HandshakeError::AlreadyConnected { node: "b".into() }
        );
    }

    /// With TLS on both sides, the switch comes right after the greeting
    /// lines, the smaller nonce line is the TLS client, and auth inside is
    /// `tls_md6_64_256`.
    #[test]
    fn tls_switches_after_the_greeting_with_the_smaller_nonce_as_client() {
        let now = Instant::now();
        let tls_cfg = |id: &str| {
            let mut c = HandshakeConfig::new(id, None);
            c.tls = true;
            Arc::new(c)
        };
        // '!' sorts before any base64 line, '~' after
        let mut a = Handshake::new(tls_cfg("a"), None, Nonce::from_line("!a"), now);
        let mut b = Handshake::new(tls_cfg("b"), None, Nonce::from_line("~b"), now);
        let mut to_a = BytesMut::from(&b.greeting()[..]);
        let mut to_b = BytesMut::from(&a.greeting()[..]);
        to_b.extend_from_slice(b"\x16\x03\x01"); // a ClientHello's first bytes
        assert_eq!(a.advance(&mut to_a), Ok(Some(Event::PeerNamed("b".into()))));
        assert_eq!(
            a.advance(&mut to_a),
            Ok(Some(Event::StartTls { client: true }))
        );
        assert_eq!(b.advance(&mut to_b), Ok(Some(Event::PeerNamed("a".into()))));
        assert_eq!(
            b.advance(&mut to_b),
            Ok(Some(Event::StartTls { client: false }))
        );
        assert_eq!(
            &to_b[..],
            b"\x16\x03\x01",
            "the TLS bytes stay for the driver"
        );
        // inside TLS now: claim, grant, exchange auth lines
        let (mut in_a, mut in_b) = (BytesMut::new(), BytesMut::new());
        let mut out_a = Vec::new();
        assert!(matches!(
            a.advance(&mut in_a),
            Ok(Some(Event::ClaimSlot { .. }))
        ));
        assert_eq!(a.grant(&mut out_a), Ok(None));
        assert!(
            out_a.starts_with(b"tls_md6_64_256;"),
            "{:?}",
            String::from_utf8_lossy(&out_a)
        );
        let mut out_b = Vec::new();
        assert!(matches!(
            b.advance(&mut in_b),
            Ok(Some(Event::ClaimSlot { .. }))
        ));
        assert_eq!(b.grant(&mut out_b), Ok(None));
        in_a.extend_from_slice(&out_b);
        in_b.extend_from_slice(&out_a);
        let ea = a.advance(&mut in_a).unwrap();
        let eb = b.advance(&mut in_b).unwrap();
        assert!(
            matches!(ea, Some(Event::Established(ref e)) if e.recv_auth == AuthMethod::TlsMd6_64_256)
        );
        assert!(
            matches!(eb, Some(Event::Established(ref e)) if e.sent_auth == AuthMethod::TlsMd6_64_256)
        );
    }

    #[test]
    fn hmac_inside_tls_is_refused() {
        let now = Instant::now();
        let mut cfg = HandshakeConfig::new("a", Some("s".into()));
        cfg.tls = true;
        let mut a = Handshake::new(Arc::new(cfg), None, Nonce::from_line("!a"), now);
        let mut input =
            BytesMut::from(&b"aemp;1;b;tls_md6_64_256,hmac_md6_64_256;json;tls=1.0\n~b\n"[..]);
        assert!(matches!(
            a.advance(&mut input),
            Ok(Some(Event::PeerNamed(_)))
        ));
        assert_eq!(
            a.advance(&mut input),
            Ok(Some(Event::StartTls { client: true }))
        );
        let mut inside = BytesMut::from(&b"hmac_md6_64_256;00;json\n"[..]);
        assert!(matches!(
            a.advance(&mut inside),
            Ok(Some(Event::ClaimSlot { .. }))
        ));
        assert_eq!(
            a.advance(&mut inside),
            Err(HandshakeError::NotInsideTls {
                method: "hmac_md6_64_256".into()
            })
        );
    }

    #[test]
    fn tls_is_a_setting_announced_in_the_greeting() {
        let mut cfg = HandshakeConfig::new("a", Some("s".into()));
        let plain = Handshake::new(
            Arc::new(cfg.clone()),
            None,
            Nonce::from_line("n"),
            Instant::now(),
        );
        assert!(!String::from_utf8_lossy(&plain.greeting()).contains("tls="));
        cfg.tls = true;
        let tls = Handshake::new(Arc::new(cfg), None, Nonce::from_line("n"), Instant::now());
        assert!(String::from_utf8_lossy(&tls.greeting()).contains(";tls=1.0\n"));
    }
    fn dataconn(node: &str, nonce: u8, id: &str) -> Handshake {
        let nonce = Nonce::from_random([nonce; 66]);
        Handshake::new_dataconn(cfg(node, "s"), None, nonce, Instant::now(), id).unwrap()
    }

    /// The dialler greets with `aemp-dataconn` and its id; an ordinary
    /// acceptor upgrades, asks nothing of the slot table, and both sides
    /// end with the id — even when both have the same node id.
    #[test]
    fn dataconn_upgrades_the_acceptor_and_skips_node_checks() {
        let mut d = dataconn("a", 1, "b@a");
        let greeting = String::from_utf8(d.greeting()).unwrap();
        assert!(greeting.starts_with("aemp-dataconn;1;a;"), "{greeting}");
        assert!(greeting.contains(";dataconn_id=b@a\n"), "{greeting}");
        assert_eq!(d.dataconn_id(), Some("b@a"));

        let mut acc = hs("a", "s", 2, Instant::now()); // same node id
        assert_eq!(acc.dataconn_id(), None);
        let mut to_acc = BytesMut::from(&d.greeting()[..]);
        let mut to_d = BytesMut::from(&acc.greeting()[..]);
        // no PeerNamed, no ClaimSlot: the auth line is asked for at once
        assert_eq!(acc.advance(&mut to_acc), Ok(Some(Event::SendAuth)));
        assert_eq!(acc.dataconn_id(), Some("b@a"));
        assert_eq!(d.advance(&mut to_d), Ok(Some(Event::SendAuth)));
        let (mut out_acc, mut out_d) = (Vec::new(), Vec::new());
        assert_eq!(acc.grant(&mut out_acc), Ok(None));
        assert_eq!(d.grant(&mut out_d), Ok(None));
        to_acc.extend_from_slice(&out_d);
        to_acc.extend_from_slice(b"raw bytes\n\x00\xff");
        to_d.extend_from_slice(&out_acc);
        let Ok(Some(Event::Established(ea))) = acc.advance(&mut to_acc) else {
            panic!("acceptor not established");
        };
        let Ok(Some(Event::Established(ed))) = d.advance(&mut to_d) else {
            panic!("dialler not established");
        };
        assert_eq!(ea.dataconn_id.as_deref(), Some("b@a"));
        assert_eq!(ed.dataconn_id.as_deref(), Some("b@a"));
        assert!(ea.is_dataconn() && ed.is_dataconn());
        assert_eq!(ea.remote_node, "a");
        assert_eq!(
            &to_acc[..],
            b"raw bytes\n\x00\xff",
            "the bytes after the auth line belong to the stream"
        );
    }

    #[test]
    fn dataconn_with_advance_granting_and_different_nodes() {
        let mut d = dataconn("r", 1, "d@r");
        let mut t = hs("t", "s", 2, Instant::now());
        let (rd, rt) = pair(&mut d, &mut t);
        let (ed, et) = (rd.unwrap().unwrap(), rt.unwrap().unwrap());
        assert_eq!(
            (ed.remote_node.as_str(), et.remote_node.as_str()),
            ("t", "r")
        );
        assert_eq!(et.dataconn_id.as_deref(), Some("d@r"));
        // an ordinary connection says it is none
        let (ra, _) = pair(
            &mut hs("a", "s", 1, Instant::now()),
            &mut hs("b", "s", 2, Instant::now()),
        );
        assert!(!ra.unwrap().unwrap().is_dataconn());
    }

    #[test]
    fn dataconn_keeps_the_echo_and_auth_checks() {
        // an exact echo: the self check is skipped, the echo check is not
        let mut d = dataconn("a", 1, "b@a");
        let mut echo = BytesMut::from(&d.greeting()[..]);
        assert_eq!(
            d.advance_granting(&mut echo, &mut Vec::new()),
            Err(HandshakeError::EchoAttack)
        );
        // a wrong secret still fails
        let mut d = dataconn("a", 1, "b@a");
        let mut t = hs("t", "other", 2, Instant::now());
        let (rd, rt) = pair(&mut d, &mut t);
        assert_eq!(rd, Err(HandshakeError::AuthFailure));
        assert_eq!(rt, Err(HandshakeError::AuthFailure));
    }

    #[test]
    fn only_the_dataconn_sub_protocol_upgrades() {
        let mut a = hs("a", "s", 1, Instant::now());
        let mut input = BytesMut::from(&b"aemp-bogus;1;b;hmac_md6_64_256;json\n"[..]);
        assert_eq!(
            a.advance(&mut input),
            Err(HandshakeError::UnexpectedProtocol {
                expected: "aemp".into(),
                got: "aemp-bogus".into()
            })
        );
        for line in [
            &b"aemp-dataconn;1;b;hmac_md6_64_256;json\n"[..],
            b"aemp-dataconn;1;b;hmac_md6_64_256;json;dataconn_id=\n",
            b"aemp-dataconn;1;b;hmac_md6_64_256;json;dataconn_id=0\n",
            b"aemp-dataconn;1;b;hmac_md6_64_256;json;dataconn_id\n",
        ] {
            let mut a = hs("a", "s", 1, Instant::now());
            let mut input = BytesMut::from(line);
            assert_eq!(
                a.advance(&mut input),
                Err(HandshakeError::MissingDataconnId),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // the dialler accepts `aemp` and `aemp-dataconn` only
        let mut d = dataconn("a", 1, "b@a");
        let mut input = BytesMut::from(&b"aemp-bogus;1;b;hmac_md6_64_256;json\n"[..]);
        assert_eq!(
            d.advance(&mut input),
            Err(HandshakeError::UnexpectedProtocol {
                expected: "aemp-dataconn".into(),
                got: "aemp-bogus".into()
            })
        );
    }

    #[test]
    fn a_dialled_node_connection_does_not_upgrade() {
        let mut a = hs("a", "s", 1, Instant::now()).without_upgrade();
        let mut input =
            BytesMut::from(&b"aemp-dataconn;1;b;hmac_md6_64_256;json;dataconn_id=1@b\n"[..]);
        assert_eq!(
            a.advance(&mut input),
            Err(HandshakeError::UnexpectedProtocol {
                expected: "aemp".into(),
                got: "aemp-dataconn".into()
            })
        );
    }

    #[test]
    fn dataconn_ids_that_cannot_travel_are_refused() {
        for id in ["", "0", "a;b", "a\nb", "a b", &"x".repeat(257)] {
            let r = Handshake::new_dataconn(
                cfg("a", "s"),
                None,
                Nonce::from_line("n"),
                Instant::now(),
                id,
            );
            assert_eq!(
                r.err(),
                Some(HandshakeError::InvalidDataconnId { id: id.to_owned() })
            );
        }
    }
}

//! The handshake as a state machine without sockets or clocks.
//!
//! The caller writes [`Handshake::greeting`] at once, then feeds every byte
//! it reads to [`Handshake::advance`], writes what that puts into `out`,
//! and stops at the first error or when it returns [`Established`]. Bytes
//! left in the input buffer after that belong to the packet stream. Time
//! enters only through `now` arguments, so tests can jump the clock.
//!
//! ```
//! use std::{sync::Arc, time::Instant};
//! use aemp::wire::{Handshake, HandshakeConfig};
//! let now = Instant::now();
//! let mut a = Handshake::new(Arc::new(HandshakeConfig::new("a", Some("s".into()))), None, now);
//! let mut b = Handshake::new(Arc::new(HandshakeConfig::new("b", Some("s".into()))), None, now);
//! let (mut to_a, mut to_b) = (bytes::BytesMut::from(&b.greeting()[..]), bytes::BytesMut::from(&a.greeting()[..]));
//! let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
//! assert!(a.advance(&mut to_a, &mut out_a, &|_| false).unwrap().is_none()); // sends its auth line
//! assert!(b.advance(&mut to_b, &mut out_b, &|_| false).unwrap().is_none());
//! to_a.extend_from_slice(&out_b);
//! to_b.extend_from_slice(&out_a);
//! let ea = a.advance(&mut to_a, &mut Vec::new(), &|_| false).unwrap().unwrap();
//! let eb = b.advance(&mut to_b, &mut Vec::new(), &|_| false).unwrap().unwrap();
//! assert_eq!((ea.remote_node.as_str(), eb.remote_node.as_str()), ("b", "a"));
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::auth::{
    AuthMethod, DEFAULT_AUTH_ACCEPT, DEFAULT_AUTH_OFFER, Secret, select_auth, send_token,
    transcript, verify_token,
};
use super::error::HandshakeError;
use super::framing::{Framing, select_framing};
use super::greeting::{Greeting, PROTOCOL, PROTOCOL_VERSION, generate_nonce, take_line};

/// Default handshake deadline and `monitor_timeout` (reference: 30 s).
pub const DEFAULT_MONITOR_TIMEOUT: Duration = Duration::from_secs(30);

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
}

impl HandshakeConfig {
    /// Settings with the reference's defaults for `node_id` and `secret`.
    pub fn new(node_id: &str, secret: Option<Secret>) -> HandshakeConfig {
        HandshakeConfig {
            node_id: node_id.to_owned(),
            secret,
            auth_offer: DEFAULT_AUTH_OFFER.to_vec(),
            auth_accept: DEFAULT_AUTH_ACCEPT.to_vec(),
            framings: Framing::ALL.to_vec(),
            timeout: DEFAULT_MONITOR_TIMEOUT,
            provider: concat!("aemp-", env!("CARGO_PKG_VERSION")).to_owned(),
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
}

enum State {
    ExpectGreeting,
    ExpectNonce {
        rg1: Bytes,
        greeting: Greeting,
    },
    ExpectAuth {
        rg1: Bytes,
        rg2: Bytes,
        greeting: Greeting,
        sent_auth: AuthMethod,
        send_framing: Framing,
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
}

impl Handshake {
    /// Starts a handshake at `now` with a fresh nonce. `peeraddr` is the
    /// peer's socket address as we see it (sent as the `peeraddr` key).
    pub fn new(cfg: Arc<HandshakeConfig>, peeraddr: Option<&str>, now: Instant) -> Handshake {
        Handshake::with_nonce(cfg, peeraddr, generate_nonce(), now)
    }

    /// Starts a handshake with the given nonce line (for tests and tools;
    /// nodes use [`Handshake::new`]).
    pub fn with_nonce(
        cfg: Arc<HandshakeConfig>,
        peeraddr: Option<&str>,
        nonce: String,
        now: Instant,
    ) -> Handshake {
        let mut greeting = Greeting::new(
            &cfg.node_id,
            cfg.auth_accept.iter().map(|m| m.name()),
            cfg.framings.iter().map(|f| f.name()),
        )
        .with("provider", cfg.provider.clone());
        if let Some(addr) = peeraddr {
            greeting = greeting.with("peeraddr", addr);
        }
        Handshake {
            lg1: Bytes::from(greeting.to_line()),
            lg2: Bytes::from(nonce),
            deadline: now + cfg.timeout,
            remote_node: None,
            state: State::ExpectGreeting,
            failed: None,
            cfg,
        }
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

    /// When the handshake must have completed.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Fails with [`HandshakeError::Timeout`] if `now` is past the deadline
    /// and the handshake is not complete.
    pub fn handle_timeout(&self, now: Instant) -> Result<(), HandshakeError> {
        if now >= self.deadline && !matches!(self.state, State::Done) {
            Err(self.timeout_error())
        } else {
            Ok(())
        }
    }

    /// The error a handshake that missed its deadline fails with.
    pub fn timeout_error(&self) -> HandshakeError {
        HandshakeError::Timeout {
            timeout: self.cfg.timeout,
        }
    }

    /// The peer's node id, once its first line has been accepted.
    pub fn remote_node(&self) -> Option<&str> {
        self.remote_node.as_deref()
    }

    /// Consumes complete lines from `input`. Appends the bytes to send to
    /// `out` (our auth line, once the peer's two greeting lines are in).
    /// `connected(node)` tells whether a live connection to `node` exists
    /// already. Returns the agreement once the peer's auth line checks out;
    /// anything after it stays in `input`. Errors are final: every later
    /// call returns the same error.
    pub fn advance(
        &mut self,
        input: &mut BytesMut,
        out: &mut Vec<u8>,
        connected: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Established>, HandshakeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.step(input, out, connected);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn step(
        &mut self,
        input: &mut BytesMut,
        out: &mut Vec<u8>,
        connected: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Established>, HandshakeError> {
        loop {
            if matches!(self.state, State::Done) {
                return Ok(None);
            }
            let Some(line) = take_line(input)? else {
                return Ok(None);
            };
            self.state = match std::mem::replace(&mut self.state, State::Done) {
                State::ExpectGreeting => {
                    let greeting = Greeting::parse(&line);
                    self.check_greeting(&greeting, connected)?;
                    State::ExpectNonce {
                        rg1: line,
                        greeting,
                    }
                }
                State::ExpectNonce { rg1, greeting } => {
                    let (sent_auth, send_framing) = self.answer(&rg1, &line, &greeting, out)?;
                    State::ExpectAuth {
                        rg1,
                        rg2: line,
                        greeting,
                        sent_auth,
                        send_framing,
                    }
                }
                State::ExpectAuth {
                    rg1,
                    rg2,
                    greeting,
                    sent_auth,
                    send_framing,
                } => {
                    let (recv_auth, recv_framing) = self.check_auth(&rg1, &rg2, &line)?;
                    return Ok(Some(Established {
                        remote_node: greeting.node.clone(),
                        remote_greeting: greeting,
                        send_framing,
                        recv_framing,
                        sent_auth,
                        recv_auth,
                    }));
                }
                State::Done => return Ok(None),
            };
        }
    }

    /// The checks on the peer's first line, in the reference's order.
    fn check_greeting(
        &mut self,
        g: &Greeting,
        connected: &dyn Fn(&str) -> bool,
    ) -> Result<(), HandshakeError> {
        if g.protocol != PROTOCOL {
            return Err(HandshakeError::UnexpectedProtocol {
                expected: PROTOCOL.to_owned(),
                got: g.protocol.clone(),
            });
        }
        if !g.version_is(PROTOCOL_VERSION) {
            return Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: g.version.clone(),
            });
        }
        let node = g.node_id()?;
        self.remote_node = Some(node.to_owned());
        if node == self.cfg.node_id {
            return Err(HandshakeError::TalkingToMyself);
        }
        if connected(node) {
            return Err(HandshakeError::AlreadyConnected {
                node: node.to_owned(),
            });
        }
        Ok(())
    }

    /// After the peer's nonce: echo checks, choice of auth and framing, and
    /// our auth line.
    fn answer(
        &self,
        rg1: &[u8],
        rg2: &[u8],
        g: &Greeting,
        out: &mut Vec<u8>,
    ) -> Result<(AuthMethod, Framing), HandshakeError> {
        if rg1 == &self.lg1[..] && rg2 == &self.lg2[..] {
            return Err(HandshakeError::EchoAttack);
        }
        if rg2 == &self.lg2[..] {
            return Err(HandshakeError::IdenticalNonce);
        }
        let tls = false;
        let auth = select_auth(&g.auth, &self.cfg.auth_offer, tls).ok_or_else(|| {
            HandshakeError::NoCommonAuth {
                offered: g.auth.join(","),
            }
        })?;
        let framing = select_framing(&g.framings, &self.cfg.framings).ok_or_else(|| {
            HandshakeError::NoCommonFraming {
                offered: g.framings.join(","),
            }
        })?;
        let local_first = transcript([&self.lg1, &self.lg2], [rg1, rg2]);
        let token = send_token(auth, self.cfg.secret.as_ref(), &local_first, tls)?;
        out.extend_from_slice(format!("{auth};{token};{framing}\n").as_bytes());
        Ok((auth, framing))
    }

    /// The peer's auth line: method, token, framing (more fields are
    /// ignored, as in the reference).
    fn check_auth(
        &self,
        rg1: &[u8],
        rg2: &[u8],
        line: &[u8],
    ) -> Result<(AuthMethod, Framing), HandshakeError> {
        let mut fields = line.split(|&b| b == b';');
        let name = String::from_utf8_lossy(fields.next().unwrap_or_default());
        let token = fields.next();
        let framing = fields.next().filter(|f| !f.is_empty());
        let method =
            AuthMethod::from_name(&name).ok_or_else(|| HandshakeError::UnsupportedRecvAuth {
                method: name.clone().into_owned(),
            })?;
        if !self.cfg.auth_accept.contains(&method) {
            return Err(HandshakeError::AuthNotAccepted {
                method: method.name().to_owned(),
            });
        }
        let token = token.ok_or(HandshakeError::MalformedAuthLine { field: "token" })?;
        let remote_first = transcript([rg1, rg2], [&self.lg1, &self.lg2]);
        verify_token(
            method,
            token,
            self.cfg.secret.as_ref(),
            &remote_first,
            false,
        )?;
        let framing = framing.ok_or(HandshakeError::MalformedAuthLine { field: "framing" })?;
        let framing_name = String::from_utf8_lossy(framing);
        let framing = Framing::from_name(&framing_name)
            .filter(|f| self.cfg.framings.contains(f))
            .ok_or_else(|| HandshakeError::FramingNotOffered {
                framing: framing_name.into_owned(),
            })?;
        Ok((method, framing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(node: &str, secret: &str) -> Arc<HandshakeConfig> {
        Arc::new(HandshakeConfig::new(node, Some(secret.into())))
    }

    /// Drives two handshakes against each other in memory; returns both
    /// outcomes.
    fn pair(
        a: &mut Handshake,
        b: &mut Handshake,
    ) -> (
        Result<Option<Established>, HandshakeError>,
        Result<Option<Established>, HandshakeError>,
    ) {
        let mut to_a = BytesMut::from(&b.greeting()[..]);
        let mut to_b = BytesMut::from(&a.greeting()[..]);
        let mut ra = Ok(None);
        let mut rb = Ok(None);
        for _ in 0..4 {
            let (mut oa, mut ob) = (Vec::new(), Vec::new());
            if matches!(ra, Ok(None)) {
                ra = a.advance(&mut to_a, &mut oa, &|_| false);
            }
            if matches!(rb, Ok(None)) {
                rb = b.advance(&mut to_b, &mut ob, &|_| false);
            }
            to_a.extend_from_slice(&ob);
            to_b.extend_from_slice(&oa);
        }
        (ra, rb)
    }

    #[test]
    fn two_sides_agree() {
        let now = Instant::now();
        let mut a = Handshake::new(cfg("a", "s"), Some("127.0.0.1:1"), now);
        let mut b = Handshake::new(cfg("b", "s"), None, now);
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
        let mut a = Handshake::new(cfg("a", "s"), None, now);
        let mut b = Handshake::new(cfg("b", "t"), None, now);
        let (ra, rb) = pair(&mut a, &mut b);
        assert_eq!(ra, Err(HandshakeError::AuthFailure));
        assert_eq!(rb, Err(HandshakeError::AuthFailure));
    }

    #[test]
    fn timeout_is_absolute() {
        let now = Instant::now();
        let h = Handshake::new(cfg("a", "s"), None, now);
        assert_eq!(h.deadline(), now + DEFAULT_MONITOR_TIMEOUT);
        assert!(h.handle_timeout(now + Duration::from_secs(29)).is_ok());
        assert_eq!(
            h.handle_timeout(now + DEFAULT_MONITOR_TIMEOUT),
            Err(HandshakeError::Timeout {
                timeout: DEFAULT_MONITOR_TIMEOUT
            })
        );
    }

    #[test]
    fn echo_is_refused_as_talking_to_myself() {
        let mut a = Handshake::new(cfg("a", "s"), None, Instant::now());
        let mut input = BytesMut::from(&a.greeting()[..]);
        assert_eq!(
            a.advance(&mut input, &mut Vec::new(), &|_| false),
            Err(HandshakeError::TalkingToMyself)
        );
    }

    #[test]
    fn identical_nonce_is_refused() {
        let mut a = Handshake::with_nonce(cfg("a", "s"), None, "n".into(), Instant::now());
        let mut input = BytesMut::from(&b"aemp;1;b;hmac_md6_64_256;json\nn\n"[..]);
        assert_eq!(
            a.advance(&mut input, &mut Vec::new(), &|_| false),
            Err(HandshakeError::IdenticalNonce)
        );
    }

    #[test]
    fn errors_are_final() {
        let mut a = Handshake::new(cfg("a", "s"), None, Instant::now());
        let mut input = BytesMut::from(&b"xyz;1;b;hmac_md6_64_256;json\n"[..]);
        let e = a
            .advance(&mut input, &mut Vec::new(), &|_| false)
            .unwrap_err();
        let mut good = BytesMut::from(&b"aemp;1;b;hmac_md6_64_256;json\n"[..]);
        assert_eq!(a.advance(&mut good, &mut Vec::new(), &|_| false), Err(e));
    }

    #[test]
    fn already_connected_after_line_one() {
        let mut a = Handshake::new(cfg("a", "s"), None, Instant::now());
        let mut input = BytesMut::from(&b"aemp;1;b;hmac_md6_64_256;json\n"[..]);
        assert_eq!(
            a.advance(&mut input, &mut Vec::new(), &|n| n == "b"),
            Err(HandshakeError::AlreadyConnected { node: "b".into() })
        );
        assert_eq!(a.remote_node(), Some("b"));
    }
}

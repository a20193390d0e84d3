//! Helpers shared by the integration tests: nodes on 127.0.0.1 port 0, a
//! raw TCP client that speaks (or mangles) the handshake, and bounded waits.

#![allow(dead_code)]

pub mod netns;
pub mod transcript;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aemp::wire::{Handshake, HandshakeConfig};
use aemp::{Node, NodeEvent, Packet};
use bytes::BytesMut;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};

pub const SECRET: &str = "geheim";

/// Every wait in the tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A 127.0.0.1 address nothing listens on (bound once, then released).
pub fn free_port() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

/// A monitor callback that reports the reason into a channel.
pub fn reporter() -> (
    impl FnOnce(aemp::Reason) + Send + 'static,
    mpsc::UnboundedReceiver<aemp::Reason>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        move |reason| {
            let _ = tx.send(reason);
        },
        rx,
    )
}

/// The reason a [`reporter`] got, or a panic after [`WAIT`].
pub async fn reason(rx: &mut mpsc::UnboundedReceiver<aemp::Reason>) -> aemp::Reason {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the monitor fires within the wait")
        .expect("monitor channel open")
}

/// Checks a `("transport_error", node, text)` reason for a peer that went
/// away: it read the end, or a write found the pipe broken or reset.
pub fn assert_peer_gone(reason: &[serde_json::Value], node: &str) {
    assert_eq!(reason.len(), 3, "{reason:?}");
    assert_eq!(reason[0], "transport_error");
    assert_eq!(reason[1], node);
    let text = reason[2].as_str().unwrap_or_default();
    assert!(
        [
            "Unexpected end-of-file",
            "Connection reset by peer",
            "Broken pipe"
        ]
        .contains(&text),
        "{reason:?}"
    );
}

/// A node listening on 127.0.0.1 with an OS-chosen port.
pub async fn listening_node(id: &str) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .start()
        .await
        .expect("node starts")
}

pub fn addr_of(node: &Node) -> String {
    node.listen_addrs()[0].to_string()
}

/// Waits for the first event matching `pred`.
pub async fn wait_event<T>(
    events: &mut broadcast::Receiver<NodeEvent>,
    mut pred: impl FnMut(&NodeEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ev)) => {
                if let Some(t) = pred(&ev) {
                    return t;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event channel: {e}"),
            Err(_) => panic!("no matching event within {WAIT:?}"),
        }
    }
}

/// Receives one message, or panics after [`WAIT`].
pub async fn recv(rx: &mut mpsc::UnboundedReceiver<Packet>) -> Packet {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within the wait")
        .expect("port open")
}

/// Asserts that nothing arrives within `d`.
pub async fn assert_silent(rx: &mut mpsc::UnboundedReceiver<Packet>, d: Duration) {
    if let Ok(Some(p)) = tokio::time::timeout(d, rx.recv()).await {
        panic!("unexpected message {:?}", p.values());
    }
}

/// Waits for `node` to be up on `on` (an event, not polling), or panics
/// after [`WAIT`].
pub async fn node_up(on: &Node, node: impl AsRef<str>) {
    let node = node.as_ref();
    if on.wait_node_up(node, WAIT).await.is_err() {
        panic!("timed out waiting for {node} to be up on {}", on.id());
    }
}

/// Waits for `node` to be down on `on` (an event, not polling), or panics
/// after [`WAIT`].
pub async fn node_down(on: &Node, node: impl AsRef<str>) {
    let node = node.as_ref();
    if on.wait_node_down(node, WAIT).await.is_err() {
        panic!("timed out waiting for {node} to be down on {}", on.id());
    }
}

/// Waits until `on.grp_get(group) == want`, re-checking at each change of
/// the group (no polling), or panics after [`WAIT`].
pub async fn group_is(on: &Node, group: &str, want: &[aemp::PortId]) {
    let mut changes = on.group_changes(group);
    let reached = tokio::time::timeout(WAIT, async {
        while on.grp_get(group) != want {
            if changes.recv().await.is_none() {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        reached == Ok(true),
        "timed out waiting for group {group} = {want:?} on {} (have {:?})",
        on.id(),
        on.grp_get(group)
    );
}

/// Polls `cond` every 10 ms until it holds, or panics after [`WAIT`]: for
/// state no event announces (port counts, address books, logs); nodes and
/// groups have [`node_up`], [`node_down`] and [`group_is`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads until the peer closes; returns everything read. Panics if the
/// connection stays open for [`WAIT`]. A reset counts as closed.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {WAIT:?}"),
        }
    }
}

/// A raw client that completes a real handshake with `cfg` (any secret,
/// methods or framings) and returns the peer in the data phase.
pub async fn raw_handshake(addr: &str, cfg: HandshakeConfig) -> Result<RawPeer, String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    handshake_on(s, cfg).await
}

/// Runs a real handshake with `cfg` on a connected socket (either side);
/// the bytes that followed the peer's auth line stay with the result.
pub async fn handshake_on(mut s: TcpStream, cfg: HandshakeConfig) -> Result<RawPeer, String> {
    let mut hs = Handshake::new(Arc::new(cfg), None, nonce(), Instant::now());
    s.write_all(&hs.greeting())
        .await
        .map_err(|e| e.to_string())?;
    let mut input = BytesMut::new();
    let mut out = Vec::new();
    loop {
        let step = hs.advance_granting(&mut input, &mut out);
        if !out.is_empty() {
            s.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
        match step {
            Ok(Some(_)) => return Ok(RawPeer::from_parts(s, input)),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(&mut input))
            .await
            .map_err(|_| "handshake read timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
    }
}

/// A random nonce line for a raw handshake.
pub fn nonce() -> aemp::wire::Nonce {
    let mut raw = [0u8; aemp::wire::NONCE_BYTES];
    rand::fill(&mut raw[..]);
    aemp::wire::Nonce::from_random(raw)
}

/// Handshake settings for a raw client named `id` with `secret`.
pub fn client_cfg(id: &str, secret: &str) -> HandshakeConfig {
    HandshakeConfig::new(id, Some(secret.into()))
}

/// Proves `node` still serves: a fresh aemp node connects to it and a
/// message reaches a port on it.
pub async fn still_serves(node: &Node) {
    let name = format!("probe{}", rand_suffix());
    let (port, mut rx) = node.port_channel_named(&name).expect("probe port");
    let other = Node::builder()
        .node_id(format!("prober{}", rand_suffix()))
        .secret(SECRET)
        .start()
        .await
        .expect("prober starts");
    other
        .connect(addr_of(node))
        .await
        .expect("good connection accepted");
    other.snd(&port, &("still", "alive")).unwrap();
    let msg = recv(&mut rx).await;
    assert_eq!(msg.decode::<(String, String)>().unwrap().1, "alive");
    other.shutdown();
    node.kil(&port, vec![]).unwrap();
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A hand-driven peer: a real handshake as node `id`, then raw packets
/// both ways, so tests can see exactly what a node sends.
pub struct RawPeer {
    pub stream: TcpStream,
    codec: aemp::wire::JsonCodec,
    buf: BytesMut,
    /// The Global connect port the node spawned on us, whose traffic is
    /// skipped.
    global_port: Option<String>,
}

impl RawPeer {
    /// Wraps a socket that completed its handshake, with the bytes that
    /// already arrived after the auth line.
    pub fn from_parts(stream: TcpStream, buf: BytesMut) -> RawPeer {
        RawPeer {
            stream,
            codec: aemp::wire::JsonCodec::default(),
            buf,
            global_port: None,
        }
    }

    /// Whether `p` is Global service traffic (the spawn of its connect port,
    /// its mon1/mon0, or a message to it), which the tests skip.
    fn is_global(&mut self, p: &serde_json::Value) -> bool {
        let s = |i: usize| p.get(i).and_then(serde_json::Value::as_str);
        if s(0) == Some("")
            && s(1) == Some("AnyEvent::MP::_spawn")
            && s(3) == Some("AnyEvent::MP::Global::connect")
        {
            self.global_port = s(2).map(str::to_owned);
            return true;
        }
        let g = self.global_port.as_deref();
        g.is_some()
            && (s(0) == g
                || (s(0) == Some("") && matches!(s(1), Some("mon1" | "mon0")) && s(2) == g))
    }
    pub async fn connect(node: &Node, id: &str) -> RawPeer {
        let peer = raw_handshake(&addr_of(node), client_cfg(id, SECRET))
            .await
            .expect("raw handshake");
        until("the raw peer to be up", || node.node_is_up(id)).await;
        peer
    }

    /// Counts the `[]` keepalives that arrive within `d`.
    pub async fn count_keepalives(&mut self, d: Duration) -> usize {
        use tokio_util::codec::Decoder;
        let deadline = tokio::time::Instant::now() + d;
        let mut n = 0;
        loop {
            while let Some(p) = self.codec.decode(&mut self.buf).expect("valid packets") {
                n += usize::from(p.is_keepalive());
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(read)) if read > 0 => {}
                _ => return n,
            }
        }
    }

    /// Sends one packet (a JSON array: destination first).
    pub async fn send(&mut self, packet: serde_json::Value) {
        let bytes = serde_json::to_vec(&packet).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// The next packet that is not a keepalive and not Global chatter.
    pub async fn recv(&mut self) -> serde_json::Value {
        self.recv_filtered(true).await
    }

    /// The next packet that is not a keepalive, Global traffic included.
    pub async fn recv_any(&mut self) -> serde_json::Value {
        self.recv_filtered(false).await
    }

    async fn recv_filtered(&mut self, skip_global: bool) -> serde_json::Value {
        use tokio_util::codec::Decoder;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Some(p) = self.codec.decode(&mut self.buf).expect("valid packets") {
                if !p.is_keepalive() {
                    let v = serde_json::from_slice(p.frame()).unwrap();
                    if !(self.is_global(&v) && skip_global) {
                        return v;
                    }
                }
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a packet within the wait")
                .expect("read");
            assert!(n > 0, "the node closed the connection");
        }
    }

    /// Reads packets (Global traffic included) until one matches; returns
    /// it.
    pub async fn recv_until(
        &mut self,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for _ in 0..1000 {
            let p = self.recv_any().await;
            if pred(&p) {
                return p;
            }
        }
        panic!("no matching packet among 1000");
    }

    /// Asserts that no packet (keepalives aside) arrives within `d`.
    pub async fn assert_silent(&mut self, d: Duration) {
        use tokio_util::codec::Decoder;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            while let Some(p) = self.codec.decode(&mut self.buf).expect("valid packets") {
                if p.is_keepalive() {
                    continue;
                }
                let v = serde_json::from_slice(p.frame()).unwrap();
                assert!(self.is_global(&v), "unexpected packet {v}");
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return,
                Ok(Ok(0)) => panic!("the node closed the connection"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read: {e}"),
            }
        }
    }
}

/// Reads our node's opening of the Global exchange with a new peer: the
/// spawn of its connect port, `mon1`, `addr`, then whatever else up to
/// `setup`. Returns the connect port's name and the messages after `mon1`.
pub async fn opening(peer: &mut RawPeer, node_id: &str) -> (String, Vec<Value>) {
    let spawn = peer.recv_any().await;
    assert_eq!(spawn[1], "AnyEvent::MP::_spawn", "{spawn}");
    assert_eq!(spawn[3], "AnyEvent::MP::Global::connect");
    assert_eq!(spawn[4], 0);
    assert_eq!(spawn[5], node_id);
    let gport = spawn[2].as_str().unwrap().to_owned();
    assert_eq!(peer.recv_any().await, json!(["", "mon1", gport]));
    let mut msgs = Vec::new();
    loop {
        let m = peer.recv_any().await;
        assert_eq!(m[0], gport.as_str(), "{m}");
        let done = m[1] == "setup";
        msgs.push(m);
        if done {
            return (gport, msgs);
        }
    }
}

/// What the raw peer sends, as a Perl node does on connect: spawn its
/// connect port `name` on us, monitor it, then `addr`, `set`, `setup`.
pub async fn perl_style_opening(peer: &mut RawPeer, me: &str, name: &str, addr: &str, set: Value) {
    peer.send(json!([
        "",
        "AnyEvent::MP::_spawn",
        name,
        "AnyEvent::MP::Global::connect",
        0,
        me
    ]))
    .await;
    peer.send(json!(["", "mon1", name])).await;
    peer.send(json!([name, "addr", [addr]])).await;
    peer.send(json!([name, "set", set])).await;
    peer.send(json!([name, "setup"])).await;
}

/// The line a child node process prints once it listens (see
/// [`ChildNode`]).
pub const CHILD_ADDR: &str = "AEMP-CHILD-ADDR ";

/// A node in a child process: this test binary re-run for the single
/// ignored test `test` (ignored, as it is no test but the child's body)
/// with `env` set to `value`; that test starts a node and prints
/// [`CHILD_ADDR`] and its address. Killed on drop.
pub struct ChildNode {
    pub child: std::process::Child,
    pub addr: String,
}

impl ChildNode {
    pub fn start(test: &str, env: &str, value: &str) -> ChildNode {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(env, value)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // the harness prints "test … ... " before our line
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once(CHILD_ADDR) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        // killed on drop, also if the wait below panics
        let mut node = ChildNode {
            child,
            addr: String::new(),
        };
        node.addr = rx
            .recv_timeout(WAIT)
            .expect("the child node reports its address");
        node
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill();
    }
}

//! Fault injection with real processes: the peer is a node in a child
//! process (this test binary re-run for [`fault_node_process`]) that echoes
//! what it gets, and the test kills it (`SIGKILL`), stops it (`SIGSTOP`,
//! then `SIGCONT`) or restarts it under the same node id, while the node in
//! the test process streams to it and receives its echoes.
//!
//! What every case asserts: the echoes received are in order, without
//! duplicates, and those of the lost connection are a gap-free prefix of
//! what was sent (the peer got a gap-free prefix too, or its echoes would
//! have a gap); each monitor of the lost peer fires exactly once, with the
//! reason the case states.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aemp::{ConnectionError, Limit, Node, NodeEvent, Reason};
use common::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const ENV: &str = "AEMP_TEST_FAULT_NODE";

/// The certificate both nodes of a TLS case hold (an `AnyEvent::MP`
/// `gencert`-style one: certificate and key in one file).
const TLS_CERT: &str = include_str!("fixtures/certs/gencert-openssl.pem");

fn tls_cert() -> aemp::wire::NodeCert {
    aemp::wire::NodeCert::from_pem(TLS_CERT).expect("the test certificate")
}

/// The body of a child node process, not a test (see `ChildNode`, which
/// runs it with `--ignored --exact`): a node named by `$AEMP_TEST_FAULT_NODE`
/// with a port `echo` that sends `seq` to `to` for every `[to, seq]`; with
/// `<id>,<seed>` it seeds from `seed` (and redials it whenever it is cut off
/// from it); with `<id>,<seed>,tls` it also has the test certificate
/// ([`TLS_CERT`]), so it talks TLS to a node that has it too.
#[test]
#[ignore = "a child node process: ChildNode starts it, with AEMP_TEST_FAULT_NODE set"]
fn fault_node_process() {
    let spec = std::env::var(ENV).expect("run by ChildNode, with AEMP_TEST_FAULT_NODE set");
    let mut parts = spec.split(',').map(str::to_owned);
    let id = parts.next().unwrap_or_default();
    let seed = parts.next().unwrap_or_default();
    let tls = parts.next().as_deref() == Some("tls");
    actix_rt::System::new().block_on(async move {
        let mut builder = Node::builder()
            .node_id(id)
            .secret(SECRET)
            .bind("127.0.0.1:0");
        if !seed.is_empty() {
            builder = builder.seed(seed);
        }
        if tls {
            builder = builder.cert(tls_cert());
        }
        let node = builder.start().await.expect("node starts");
        let (_echo, mut rx) = node.port_channel_named("echo").unwrap();
        println!("{CHILD_ADDR}{}", addr_of(&node));
        while let Some(p) = rx.recv().await {
            if let Ok((to, seq)) = p.decode::<(String, u64)>() {
                let _ = node.snd(&to, &(seq,));
            }
        }
    });
}

/// A child node that is sent `SIGCONT` before it is killed on drop, so a
/// stopped one does not linger.
struct Peer(ChildNode);

impl Peer {
    fn start(id: &str) -> Peer {
        Peer(ChildNode::start("fault_node_process", ENV, id))
    }

    /// A peer that seeds from `seed` (over TLS with `tls`).
    fn seeding(id: &str, seed: &str, tls: bool) -> Peer {
        let tls = if tls { ",tls" } else { "" };
        Peer(ChildNode::start(
            "fault_node_process",
            ENV,
            &format!("{id},{seed}{tls}"),
        ))
    }

    fn signal(&self, sig: &str) {
        assert!(self.try_signal(sig), "kill {sig} failed");
    }

    fn try_signal(&self, sig: &str) -> bool {
        // the shell's kill: no /bin/kill needed
        Command::new("sh")
            .args(["-c", &format!("kill {sig} {}", self.0.child.id())])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.0.child.try_wait(), Ok(None)) {
            self.try_signal("-CONT");
        }
        // ChildNode's drop: SIGKILL, wait
    }
}

/// Streams `[back, seq]` to `echo`, `seq` = 0, 1, … (500 per millisecond at
/// most), until `stop` is set; returns how many it sent.
fn stream(node: &Node, echo: String, back: String, stop: Arc<AtomicBool>) -> mpsc::Receiver<u64> {
    let (done, rx) = mpsc::channel(1);
    let node = node.clone();
    actix_rt::spawn(async move {
        let mut seq = 0u64;
        while !stop.load(Ordering::SeqCst) {
            node.snd(&echo, &(&back, seq)).unwrap();
            seq += 1;
            if seq.is_multiple_of(500) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let _ = done.send(seq).await;
    });
    rx
}

/// A monitor that reports its reason and sets `flag` when it fires.
fn flagging_reporter(
    flag: &Arc<AtomicBool>,
) -> (
    impl FnOnce(Reason) + Send + 'static,
    mpsc::UnboundedReceiver<Reason>,
) {
    let (report, rx) = reporter();
    let flag = flag.clone();
    (
        move |r| {
            flag.store(true, Ordering::SeqCst);
            report(r)
        },
        rx,
    )
}

/// Receives echoes until `n` arrived; returns them.
async fn echoes(rx: &mut mpsc::UnboundedReceiver<aemp::Packet>, n: usize) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let (seq,): (u64,) = recv(rx).await.decode().unwrap();
        got.push(seq);
    }
    got
}

/// Every echo already delivered (the queue is quiet for 300 ms).
async fn drain(rx: &mut mpsc::UnboundedReceiver<aemp::Packet>, got: &mut Vec<u64>) {
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        let (seq,): (u64,) = p.decode().unwrap();
        got.push(seq);
    }
}

fn assert_gap_free_prefix(got: &[u64]) {
    if let Some(i) = got.iter().enumerate().position(|(i, &s)| s != i as u64) {
        panic!(
            "echo {i} is {} (of {}): not a gap-free in-order prefix",
            got[i],
            got.len()
        );
    }
}

/// Asserts that `rx` gets nothing more (the monitor fired once).
async fn fired_once(rx: &mut mpsc::UnboundedReceiver<Reason>) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "a monitor fired twice");
}

/// The `Down` events for `peer` among those queued.
fn downs(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, peer: &str) -> usize {
    std::iter::from_fn(|| events.try_recv().ok())
        .filter(|ev| matches!(ev, NodeEvent::Down { node, .. } if node == peer))
        .count()
}

/// Connects `node` to the child `peer`, monitors the child node and its
/// echo port, and waits until the port monitor is registered over there.
async fn watch(
    node: &Node,
    peer: &Peer,
    id: &str,
    flag: &Arc<AtomicBool>,
) -> [mpsc::UnboundedReceiver<Reason>; 2] {
    if !node.node_is_up(id) {
        assert_eq!(node.connect(peer.0.addr.clone()).await.unwrap(), id);
    }
    let (cb1, node_mon) = flagging_reporter(flag);
    let (cb2, port_mon) = flagging_reporter(flag);
    node.mon(id, cb1).forget();
    node.mon(format!("{id}#echo"), cb2).forget();
    node.cal(id, &("info",), Some(WAIT)).await.unwrap();
    [node_mon, port_mon]
}

/// **SIGKILL mid-stream.** We stream to the peer's echo port and it
/// streams the echoes back; after 2,000 echoes it is killed. Expected: the
/// loss is seen as the socket's end (`Unexpected end-of-file` or a reset),
/// the node monitor, the port monitor and the `Down` event come once each,
/// the echoes are a gap-free in-order prefix of what was sent and nothing
/// arrives after the loss.
#[actix_rt::test]
async fn a_peer_killed_mid_stream() {
    let mut peer = Peer::start("victim");
    let node = listening_node("survivor").await;
    let mut events = node.events();
    let lost = Arc::new(AtomicBool::new(false));
    let [mut node_mon, mut port_mon] = watch(&node, &peer, "victim", &lost).await;
    let (back, mut rx) = node.port_channel_named("back").unwrap();
    let mut sent = stream(&node, "victim#echo".into(), back.to_string(), lost.clone());

    let mut got = echoes(&mut rx, 2_250).await;
    peer.0.kill();
    for mon in [&mut node_mon, &mut port_mon] {
        assert_peer_gone(&reason(mon).await, "victim");
    }
    let sent = tokio::time::timeout(WAIT, sent.recv())
        .await
        .unwrap()
        .unwrap();
    drain(&mut rx, &mut got).await;
    assert_gap_free_prefix(&got);
    assert!(got.len() as u64 <= sent);
    assert!(got.len() >= 2_250);
    fired_once(&mut node_mon).await;
    fired_once(&mut port_mon).await;
    assert_eq!(downs(&mut events, "victim"), 1);
    assert!(rx.try_recv().is_err(), "an echo after the loss");
    eprintln!("SIGKILL: {} of {sent} echoed before the kill", got.len());
    node.shutdown();
}

/// **SIGSTOP.** As above, but the peer is stopped, and we keep streaming
/// to it: its kernel keeps acknowledging (the socket buffers fill), but
/// nothing comes back. Expected: the heartbeat fails the connection within
/// `peer_timeout` (2 s here) of the stop, plus 1.5 s of slack (the last
/// echo and the last drain of our send buffer can come a moment after the
/// stop), with `("transport_error", <node>, "peer timeout")`, each
/// monitor once, the timeout counted once, the echoes a gap-free prefix.
///
/// Then the peer is continued: it finds its old connection closed (it
/// reads what was buffered, then the end) and — having echoes to send us —
/// comes back as a new connection, as a Perl node would. Expected: no
/// monitor fires again, every echo is still in order and unique (those of
/// the old connection that were not written are lost, none comes twice),
/// and a fresh round trip works.
#[actix_rt::test]
async fn a_stopped_peer_is_noticed_within_peer_timeout() {
    stopped_peer(false).await;
}

/// **SIGSTOP over TLS.** The same case with both nodes holding the test
/// certificate, so the connection, its heartbeat requests and the answers
/// are TLS records: the same outcome is expected.
#[actix_rt::test]
async fn a_stopped_tls_peer_is_noticed_within_peer_timeout() {
    stopped_peer(true).await;
}

/// The SIGSTOP case, over TLS with `tls`.
async fn stopped_peer(tls: bool) {
    let timeout = Duration::from_secs(2);
    let mut builder = Node::builder()
        .node_id("waker")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .peer_timeout(Some(timeout));
    if tls {
        builder = builder.cert(tls_cert());
    }
    let node = builder.start().await.unwrap();
    let mut events = node.events();
    // the peer dials us (its seed), and redials when cut off
    let peer = Peer::seeding("sleeper", &addr_of(&node), tls);
    node_up(&node, "sleeper").await;
    let auth = node.peer_auth("sleeper").expect("authenticated");
    assert_eq!(auth.tls(), tls, "{auth:?}");
    let lost = Arc::new(AtomicBool::new(false));
    let [mut node_mon, mut port_mon] = watch(&node, &peer, "sleeper", &lost).await;
    let (back, mut rx) = node.port_channel_named("back").unwrap();
    let mut sent = stream(&node, "sleeper#echo".into(), back.to_string(), lost.clone());

    let mut got = echoes(&mut rx, 1_000).await;
    peer.signal("-STOP");
    let stopped = Instant::now();
    let want = json!(["transport_error", "sleeper", "peer timeout"]);
    assert_eq!(Value::from(reason(&mut node_mon).await), want);
    let noticed = stopped.elapsed();
    assert_eq!(Value::from(reason(&mut port_mon).await), want);
    assert!(
        noticed < timeout + Duration::from_millis(1500),
        "noticed after {noticed:?}"
    );
    let sent = tokio::time::timeout(WAIT, sent.recv())
        .await
        .unwrap()
        .unwrap();
    drain(&mut rx, &mut got).await;
    assert_gap_free_prefix(&got);
    let before = got.len();
    assert_eq!(node.limit_hit_count("sleeper", Limit::PeerTimeout), 1);
    let down = wait_event(&mut events, |ev| match ev {
        NodeEvent::Down { node, error } if node == "sleeper" => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(down, ConnectionError::PeerTimeout);

    peer.signal("-CONT");
    // what the peer does now: echoes of what it had buffered, over a new
    // connection it dials
    let came_back = tokio::time::timeout(Duration::from_secs(3), async {
        wait_event(&mut events, |ev| match ev {
            NodeEvent::Up { node, outbound, .. } if node == "sleeper" => Some(*outbound),
            _ => None,
        })
        .await
    })
    .await
    .ok();
    drain(&mut rx, &mut got).await;
    let (probe, mut probe_rx) = node.port_channel_named("probe").unwrap();
    node.snd("sleeper#echo", &(probe.to_string(), u64::MAX))
        .unwrap();
    let (last,): (u64,) = recv(&mut probe_rx).await.decode().unwrap();
    assert_eq!(last, u64::MAX, "a fresh round trip");
    drain(&mut rx, &mut got).await;
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "echoes out of order or duplicated"
    );
    fired_once(&mut node_mon).await;
    fired_once(&mut port_mon).await;
    assert!(node.node_is_up("sleeper"));
    assert_eq!(node.peer_auth("sleeper").map(|a| a.tls()), Some(tls));
    eprintln!(
        "SIGSTOP (tls {tls}): noticed {noticed:?} after the stop; {before} of {sent} echoed before; \
         after SIGCONT: new connection {}, {} late echoes over it",
        match came_back {
            Some(false) => "dialled by the continued peer",
            Some(true) => "dialled by us",
            None => "only when we sent again",
        },
        got.len() - before
    );
    node.shutdown();
}

/// **Restart under the same node id.** The peer is killed; once its loss
/// was detected (monitors fired once), a new process starts under the same
/// id. Expected: the new connection works (a round trip), the old
/// monitors do not fire again, a new monitor holds while the new process
/// lives and fires once when it is killed too.
#[actix_rt::test]
async fn a_peer_restarted_under_the_same_node_id() {
    let mut first = Peer::start("phoenix");
    let node = listening_node("ash").await;
    let lost = Arc::new(AtomicBool::new(false));
    let [mut node_mon, mut port_mon] = watch(&node, &first, "phoenix", &lost).await;
    let (back, mut rx) = node.port_channel_named("back").unwrap();
    node.snd("phoenix#echo", &(back.to_string(), 1u64)).unwrap();
    assert_eq!(echoes(&mut rx, 1).await, [1]);
    first.0.kill();
    for mon in [&mut node_mon, &mut port_mon] {
        assert_peer_gone(&reason(mon).await, "phoenix");
    }

    let mut second = Peer::start("phoenix");
    let relost = Arc::new(AtomicBool::new(false));
    let [mut new_node_mon, mut new_port_mon] = watch(&node, &second, "phoenix", &relost).await;
    node.snd("phoenix#echo", &(back.to_string(), 2u64)).unwrap();
    assert_eq!(echoes(&mut rx, 1).await, [2]);
    fired_once(&mut node_mon).await;
    fired_once(&mut port_mon).await;
    assert!(new_node_mon.try_recv().is_err() && new_port_mon.try_recv().is_err());
    assert!(!relost.load(Ordering::SeqCst));

    second.0.kill();
    for mon in [&mut new_node_mon, &mut new_port_mon] {
        assert_peer_gone(&reason(mon).await, "phoenix");
    }
    fired_once(&mut new_node_mon).await;
    fired_once(&mut node_mon).await;
    node.shutdown();
}

//! Limits of handshakes, packets and send queues (issue 13): pending
//! handshakes capped per listener and per source address (and the real
//! node still gets in past squatters), the largest packet per framing, the
//! send queue of a connection and of a node still connecting, and the
//! fault cases around them (a peer that reads nothing, a reset during the
//! handshake). Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aemp::wire::Framing;
use aemp::{ConnectionError, Limit, Node, NodeEvent, SendError};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A node listening on 127.0.0.1 with the given pending-handshake caps.
async fn capped_node(id: &str, per_listener: usize, per_addr: usize) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .max_pending_handshakes(per_listener)
        .max_pending_handshakes_per_addr(per_addr)
        .start()
        .await
        .expect("node starts")
}

/// A TCP connection to `node` from source address `from` (any loopback
/// address works on Linux).
async fn connect_from(node: &Node, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(node.listen_addrs()[0]).await.unwrap()
}

/// Reads what the node sends within `d`: `(bytes, closed)`.
async fn read_for(s: &mut TcpStream, d: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + d;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// Whether the node refused the connection at once: closed before any
/// greeting.
async fn refused_at_once(s: &mut TcpStream) -> bool {
    let (got, closed) = read_for(s, Duration::from_secs(2)).await;
    got.is_empty() && closed
}

/// A squatter from `from` that names `claimed` and sends a nonce line, so
/// that it gets our auth line (holds the slot), then stays silent.
async fn squatter(node: &Node, from: &str, claimed: &str, i: usize) -> TcpStream {
    let mut s = connect_from(node, from).await;
    let lines = format!("aemp;1;{claimed};hmac_md6_64_256;json\nsquat-{i}\n");
    s.write_all(lines.as_bytes()).await.unwrap();
    let (got, closed) = read_for(&mut s, Duration::from_millis(300)).await;
    assert!(!closed, "squatter {i} was closed");
    assert!(!got.is_empty(), "squatter {i} got no greeting");
    s
}

#[actix_rt::test]
async fn squatters_filling_their_address_cap_keep_nobody_else_out() {
    let node = capped_node("victim", 16, 4).await;
    let mut squatters = Vec::new();
    for i in 0..4 {
        squatters.push(squatter(&node, "127.0.0.2", "real", i).await);
    }
    // the address is full: one more is closed before our greeting, counted
    let mut fifth = connect_from(&node, "127.0.0.2").await;
    assert!(
        refused_at_once(&mut fifth).await,
        "a fifth handshake was served"
    );
    assert_eq!(
        node.limit_hit_count("addr:127.0.0.2", Limit::PendingHandshakes),
        1
    );
    // the real node, from another address, takes the slot at once
    let (inbox, mut rx) = node.port_channel_named("inbox").unwrap();
    let real = Node::builder()
        .node_id("real")
        .secret(SECRET)
        .start()
        .await
        .unwrap();
    let (cb, mut mon) = reporter();
    real.mon("victim", cb).forget();
    let start = Instant::now();
    let up = tokio::time::timeout(WAIT, real.connect(addr_of(&node))).await;
    assert_eq!(up.expect("connect timed out").as_deref(), Ok("victim"));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    real.snd(&inbox, &("hi",)).unwrap();
    assert_eq!(recv(&mut rx).await.decode::<(String,)>().unwrap().0, "hi");
    // and any other good client too
    still_serves(&node).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), mon.recv())
            .await
            .is_err(),
        "a monitor fired"
    );
    assert_eq!(
        node.limit_hit_count("addr:127.0.0.1", Limit::PendingHandshakes),
        0
    );
    // a squatter that lost the slot is closed, which frees its place
    let (_, closed) = read_for(&mut squatters[0], WAIT).await;
    assert!(closed, "the squatter that held the slot is still connected");
    real.shutdown();
    node.shutdown();
}

#[actix_rt::test]
async fn the_listener_cap_refuses_and_frees_its_places() {
    let node = capped_node("capped", 3, 100).await;
    let mut idle = Vec::new();
    for from in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let mut s = connect_from(&node, from).await;
        let (got, closed) = read_for(&mut s, Duration::from_millis(200)).await;
        assert!(
            !got.is_empty() && !closed,
            "an idle handshake got no greeting"
        );
        idle.push(s);
    }
    let mut fourth = connect_from(&node, "127.0.0.6").await;
    assert!(
        refused_at_once(&mut fourth).await,
        "a fourth handshake was served"
    );
    assert_eq!(
        node.limit_hit_count("addr:127.0.0.6", Limit::PendingHandshakes),
        1
    );
    // a handshake that ends (here: its peer leaves) gives its place back
    drop(idle.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = connect_from(&node, "127.0.0.6").await;
        let (got, _) = read_for(&mut s, Duration::from_millis(200)).await;
        if !got.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never freed");
    }
    node.shutdown();
}

/// Closes `s` with SO_LINGER 0: the peer gets a reset.
fn reset(s: TcpStream) {
    let s = s.into_std().unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

#[actix_rt::test]
async fn a_reset_during_the_handshake_fires_nothing_and_frees_its_place() {
    // two places per address: ten resets in a row must each give theirs back
    let node = capped_node("resets", 16, 2).await;
    let mut events = node.events();
    let downs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = downs.clone();
    node.mon_nodes(move |_, up, _| {
        if !up {
            d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .forget();
    let (cb, mut mon) = reporter();
    node.mon("x", cb).forget();
    for i in 0..10 {
        let mut s = TcpStream::connect(addr_of(&node)).await.unwrap();
        if i % 2 == 1 {
            // after both greeting lines: we sent our auth line, the
            // handshake holds the slot of "x"
            let lines = format!("aemp;1;x;hmac_md6_64_256;json\nnonce-{i}\n");
            s.write_all(lines.as_bytes()).await.unwrap();
        }
        let (got, closed) = read_for(&mut s, Duration::from_millis(100)).await;
        assert!(!got.is_empty() && !closed);
        reset(s);
        // the node notices: the handshake failed, nothing reached a port
        wait_event(&mut events, |e| match e {
            NodeEvent::HandshakeFailed { .. } => Some(()),
            _ => None,
        })
        .await;
    }
    // "x" itself gets in at once (no slot left behind), no monitor fired
    let x = Node::builder()
        .node_id("x")
        .secret(SECRET)
        .start()
        .await
        .unwrap();
    let start = Instant::now();
    tokio::time::timeout(WAIT, x.connect(addr_of(&node)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), mon.recv())
            .await
            .is_err(),
        "a monitor of x fired"
    );
    assert_eq!(downs.load(std::sync::atomic::Ordering::SeqCst), 0);
    still_serves(&node).await;
    assert_eq!(node.limit_hits(), vec![]);
    x.shutdown();
    node.shutdown();
}

/// The resident set of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[actix_rt::test]
async fn a_peer_that_reads_nothing_hits_the_queue_bound_and_memory_stays_flat() {
    const BOUND: usize = 1024 * 1024;
    let node = Node::builder()
        .node_id("sender")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .max_send_queue(BOUND)
        .start()
        .await
        .unwrap();
    // a peer that completes its handshake and then never reads
    let _deaf = RawPeer::connect(&node, "deaf").await;
    let (cb, mut mon) = reporter();
    node.mon("deaf", cb).forget();
    let downs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = downs.clone();
    node.mon_nodes(move |n, up, _| {
        if n == "deaf" && !up {
            d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .forget();
    let mut events = node.events();
    let before = rss();
    let payload = "p".repeat(10_000);
    let mut accepted = 0usize;
    let mut error = None;
    // 100 × the bound at most; the writer gets its turns
    for i in 0..100 * BOUND / payload.len() {
        match node.snd("deaf#sink", &(i, &payload)) {
            Ok(()) => accepted += payload.len(),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        if i.is_multiple_of(16) {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        matches!(error, Some(SendError::ConnectionClosed { .. })),
        "{error:?}"
    );
    // what was taken is the bound plus what the sockets' buffers hold
    assert!(
        accepted < BOUND + 16 * 1024 * 1024,
        "accepted {accepted} bytes"
    );
    let reason = reason(&mut mon).await;
    assert_eq!(
        reason,
        json!(["transport_error", "deaf", "send queue overflow"])
            .as_array()
            .unwrap()
            .clone()
    );
    let error = wait_event(&mut events, |e| match e {
        NodeEvent::Down { node, error } if node == "deaf" => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(error, ConnectionError::SendQueueOverflow);
    assert_eq!(node.limit_hit_count("deaf", Limit::SendQueue), 1);
    // once: the node went down once, and nothing fires again
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(downs.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(mon.try_recv().is_err());
    let grown = rss().saturating_sub(before);
    assert!(grown < 32 * 1024 * 1024, "RSS grew by {grown} bytes");
    node.shutdown();
}

#[actix_rt::test]
async fn try_snd_refuses_without_failing_and_snd_wait_waits_for_room() {
    let node = Node::builder()
        .node_id("sender")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .max_send_queue(256 * 1024)
        .start()
        .await
        .unwrap();
    let mut peer = RawPeer::connect(&node, "slow").await;
    let (cb, mut mon) = reporter();
    node.mon("slow", cb).forget();
    let payload = "q".repeat(4000);
    let mut sent = 0u32;
    let full = loop {
        match node.try_snd("slow#sink", &(sent, &payload)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100_000, "the queue never filled");
        if sent.is_multiple_of(8) {
            tokio::task::yield_now().await;
        }
    };
    assert!(
        matches!(full, SendError::QueueFull { limit, .. } if limit == 256 * 1024),
        "{full:?}"
    );
    assert!(node.node_is_up("slow"));
    // a waiting send gets through once the peer reads
    let waiter = {
        let node = node.clone();
        let payload = payload.clone();
        actix_rt::spawn(async move {
            for i in sent..sent + 200 {
                node.snd_wait("slow#sink", &(i, &payload)).await.unwrap();
            }
        })
    };
    for want in 0..sent + 200 {
        let p = peer.recv().await;
        assert_eq!(p[0], "sink");
        assert_eq!(p[1], want, "out of order or lost");
    }
    tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert!(node.node_is_up("slow"));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), mon.recv())
            .await
            .is_err()
    );
    assert_eq!(node.limit_hits(), vec![]);
    node.shutdown();
}

#[actix_rt::test]
async fn snd_wait_waits_while_the_node_is_still_connecting() {
    let a = listening_node("a").await;
    let (inbox, mut rx) = a.port_channel_named("inbox").unwrap();
    let b = Node::builder()
        .node_id("b")
        .secret(SECRET)
        .max_send_queue(64 * 1024)
        .start()
        .await
        .unwrap();
    // b knows where a is, but is not connected: 1 MB through a 64 KiB queue
    b.add_addresses("a", [addr_of(&a)]);
    let sender = {
        let (b, inbox) = (b.clone(), inbox.clone());
        actix_rt::spawn(async move {
            for i in 0..1000u32 {
                b.snd_wait(&inbox, &(i, "w".repeat(1000))).await.unwrap();
            }
        })
    };
    for want in 0..1000u32 {
        let (i, _): (u32, String) = recv(&mut rx).await.decode().unwrap();
        assert_eq!(i, want);
    }
    tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    // a message larger than the whole bound never fits: refused at once
    let huge = "h".repeat(100 * 1024);
    assert!(matches!(
        tokio::time::timeout(WAIT, b.snd_wait(&inbox, &(&huge,)))
            .await
            .unwrap(),
        Err(SendError::QueueFull { .. })
    ));
    assert!(b.node_is_up("a"));
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn an_overflowing_connecting_queue_fails_the_wait_for_the_node() {
    let a = Node::builder()
        .node_id("a")
        .secret(SECRET)
        .max_send_queue(1000)
        .start()
        .await
        .unwrap();
    let (cb, mut mon) = reporter();
    a.mon("nowhere", cb).forget();
    let payload = "x".repeat(400);
    a.snd("nowhere#p", &(&payload,)).unwrap();
    a.snd("nowhere#p", &(&payload,)).unwrap();
    // try_snd refuses without harm
    assert!(matches!(
        a.try_snd("nowhere#p", &(&payload,)),
        Err(SendError::QueueFull { limit: 1000, .. })
    ));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), mon.recv())
            .await
            .is_err()
    );
    // snd fails the wait: the queue is dropped, the monitors fire
    assert!(matches!(
        a.snd("nowhere#p", &(&payload,)),
        Err(SendError::QueueFull { limit: 1000, .. })
    ));
    assert_eq!(
        reason(&mut mon).await,
        json!(["transport_error", "nowhere", "send queue overflow"])
            .as_array()
            .unwrap()
            .clone()
    );
    assert_eq!(a.limit_hit_count("nowhere", Limit::ConnectingQueue), 1);
    // later sends queue again, in a fresh queue
    a.snd("nowhere#p", &(&payload,)).unwrap();
    a.snd("nowhere#p", &(&payload,)).unwrap();
    a.shutdown();
}

/// After a connecting queue's overflow failed the wait for a node, the
/// next send starts a new wait with a connector of its own: the old
/// connector must end, not go on and give the new wait up at its own,
/// earlier deadline (`unable to connect` to monitors made after the
/// overflow, before their `monitor_timeout` passed).
#[actix_rt::test]
async fn the_wait_after_an_overflow_has_its_own_deadline() {
    let timeout = Duration::from_millis(1200);
    let a = Node::builder()
        .node_id("a")
        .secret(SECRET)
        .max_send_queue(1000)
        .monitor_timeout(timeout)
        .connect_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let payload = "x".repeat(400);
    a.snd("nowhere#p", &(&payload,)).unwrap();
    tokio::time::sleep(timeout / 2).await;
    a.snd("nowhere#p", &(&payload,)).unwrap();
    assert!(a.snd("nowhere#p", &(&payload,)).is_err(), "overflow");
    // a new wait: its monitor, its first message
    let (cb, mut mon) = reporter();
    a.mon("nowhere", cb).forget();
    let started = std::time::Instant::now();
    a.snd("nowhere#p", &(&payload,)).unwrap();
    assert_eq!(
        reason(&mut mon).await,
        json!(["transport_error", "nowhere", "unable to connect"])
            .as_array()
            .unwrap()
            .clone()
    );
    let after = started.elapsed();
    assert!(
        after >= timeout - Duration::from_millis(150),
        "gave up after {after:?} of a {timeout:?} monitor_timeout"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mon.try_recv().is_err(), "a second reason");
    a.shutdown();
}

/// A raw peer `id` with one framing, connected to `node`.
async fn raw_with(node: &Node, id: &str, framing: Framing) -> RawPeer {
    let mut cfg = client_cfg(id, SECRET);
    cfg.framings = vec![framing];
    let peer = raw_handshake(&addr_of(node), cfg)
        .await
        .expect("raw handshake");
    until("the raw peer to be up", || node.node_is_up(id)).await;
    peer
}

#[actix_rt::test]
async fn packets_over_max_packet_end_the_connection_in_every_framing() {
    let node = Node::builder()
        .node_id("small")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .framings([Framing::Json, Framing::Storable, Framing::Cbor])
        .max_packet(1000)
        .start()
        .await
        .unwrap();
    let mut events = node.events();
    let cases: [(&str, Framing, Vec<u8>); 3] = [
        // JSON: an unfinished text past the limit (its end never comes)
        (
            "j",
            Framing::Json,
            [&b"[\"sink\",\""[..], &[b'x'; 1500][..]].concat(),
        ),
        // storable: a BER length of 2^21 − 1, refused before any body
        ("s", Framing::Storable, vec![0xff, 0xff, 0x7f]),
        // cbor: an array holding a text of 1 MiB, refused at its header
        (
            "c",
            Framing::Cbor,
            vec![
                0x82, 0x64, b's', b'i', b'n', b'k', 0x7a, 0x00, 0x10, 0x00, 0x00,
            ],
        ),
    ];
    for (id, framing, bytes) in cases {
        let mut peer = raw_with(&node, id, framing).await;
        peer.stream.write_all(&bytes).await.unwrap();
        let error = wait_event(&mut events, |e| match e {
            NodeEvent::Down { node, error } if node == id => Some(error.clone()),
            _ => None,
        })
        .await;
        assert!(
            error.to_string().contains("packet larger than 1000 bytes"),
            "{framing}: {error}"
        );
        assert_eq!(node.limit_hit_count(id, Limit::PacketSize), 1, "{framing}");
        let (_, closed) = read_for(&mut peer.stream, WAIT).await;
        assert!(closed, "{framing}: still connected");
    }
    still_serves(&node).await;
    node.shutdown();
}

#[test]
fn limits_come_from_the_configuration_file() {
    let values = |text: &str| -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(text).unwrap()
    };
    let cfg = aemp::NodeConfig::from_values(
        "p",
        &values(
            r#"{"max_send_queue":12345,"max_packet":"2000",
                "max_pending_handshakes":7,"max_pending_handshakes_per_addr":3}"#,
        ),
    )
    .unwrap();
    assert_eq!(cfg.max_send_queue, 12345);
    assert_eq!(cfg.max_packet, 2000);
    assert_eq!(cfg.max_pending_handshakes, 7);
    assert_eq!(cfg.max_pending_handshakes_per_addr, 3);
    for bad in [
        r#"{"max_send_queue":0}"#,
        r#"{"max_pending_handshakes":-1}"#,
        r#"{"max_packet":1.5}"#,
        r#"{"max_pending_handshakes_per_addr":"many"}"#,
    ] {
        assert!(
            aemp::NodeConfig::from_values("p", &values(bad)).is_err(),
            "{bad}"
        );
    }
    let defaults = aemp::NodeConfig::default();
    assert_eq!(defaults.max_pending_handshakes, 4096);
    assert_eq!(defaults.max_pending_handshakes_per_addr, 1024);
    assert_eq!(defaults.max_send_queue, 64 * 1024 * 1024);
}

/// At most `max_pending_dials` connections are dialled at a time, node
/// wide: with 2 allowed and 5 peers that accept and never greet, 2
/// connections arrive; when those are closed (their dials fail), the
/// next 2 arrive; the file key sets it, and 0 is refused.
#[actix_rt::test]
async fn dials_take_turns_node_wide() {
    let node = Node::builder()
        .node_id("dialer")
        .secret(SECRET)
        .max_pending_dials(2)
        .monitor_timeout(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..5 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tx = tx.clone();
        actix_rt::spawn(async move {
            if let Ok((s, _)) = listener.accept().await {
                let _ = tx.send(s);
            }
        });
        let n = node.clone();
        actix_rt::spawn(async move {
            let _ = n.connect(addr).await;
        });
    }
    let mut held = Vec::new();
    let take = |held: &mut Vec<TcpStream>, s: Option<TcpStream>| held.push(s.expect("accepted"));
    for _ in 0..2 {
        let s = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
            .await
            .expect("a dial within 10 s");
        take(&mut held, s);
    }
    // no third while the two are in their handshakes
    assert!(
        tokio::time::timeout(Duration::from_millis(700), accepted.recv())
            .await
            .is_err(),
        "a third dial ran"
    );
    held.clear(); // closed: those dials fail, two more may run
    for _ in 0..2 {
        let s = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
            .await
            .expect("the next dial within 10 s");
        take(&mut held, s);
    }
    node.shutdown();
    let values = |text: &str| -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(text).unwrap()
    };
    let cfg = aemp::NodeConfig::from_values("p", &values(r#"{"max_pending_dials":"9"}"#)).unwrap();
    assert_eq!(cfg.max_pending_dials, 9);
    assert_eq!(aemp::NodeConfig::default().max_pending_dials, 256);
    assert!(aemp::NodeConfig::from_values("p", &values(r#"{"max_pending_dials":0}"#)).is_err());
}

/// Four addresses each at their cap fill the listener (4 × 4 = 16): a
/// good client from a fifth address still gets in at once, taking the
/// place of the oldest handshake of the addresses holding the most (that
/// squatter is closed, counted as its address's `pending_handshakes`
/// hit); the squatters' own addresses cannot push each other out.
#[actix_rt::test]
async fn a_full_listener_makes_room_for_a_source_holding_fewer() {
    let node = capped_node("crowded", 16, 4).await;
    let mut squatters = Vec::new();
    for (a, from) in ["127.0.0.7", "127.0.0.8", "127.0.0.9", "127.0.0.10"]
        .iter()
        .enumerate()
    {
        for i in 0..4 {
            squatters.push(squatter(&node, from, "nobody", a * 4 + i).await);
        }
    }
    // one more from a squatting address: its own cap refuses it
    let mut more = connect_from(&node, "127.0.0.7").await;
    assert!(
        refused_at_once(&mut more).await,
        "a fifth from one address was served"
    );
    let hits = |a: &str| node.limit_hit_count(&format!("addr:{a}"), Limit::PendingHandshakes);
    assert_eq!(hits("127.0.0.7"), 1);
    // a good client from 127.0.0.1 is served, in well under a second
    let start = Instant::now();
    tokio::time::timeout(WAIT, still_serves(&node))
        .await
        .expect("a good client was locked out");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // a squatter made room for each connection the prober opened: one,
    // or two if it dialled again
    let mut closed = 0;
    for s in &mut squatters {
        let (_, c) = read_for(s, Duration::from_millis(50)).await;
        closed += usize::from(c);
    }
    assert!((1..=2).contains(&closed), "{closed} squatters closed");
    let evictions: u64 = ["127.0.0.7", "127.0.0.8", "127.0.0.9", "127.0.0.10"]
        .iter()
        .map(|a| hits(a))
        .sum();
    assert_eq!(evictions, 1 + closed as u64);
    node.shutdown();
}

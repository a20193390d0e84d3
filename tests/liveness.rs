//! Liveness beyond the reference: the heartbeat (`peer_timeout`) and its
//! settings. A raw peer completes a real handshake and then behaves as the
//! test wants: silent, slow but answering, or chatty without answering.

mod common;

use std::time::{Duration, Instant};

use aemp::config::{DEFAULT_PEER_TIMEOUT, DEFAULT_TCP_KEEPALIVE, DEFAULT_TCP_USER_TIMEOUT};
use aemp::error::{ConnectionError, InvalidConfig, SettingError, StartError};
use aemp::{Limit, Node, NodeConfig, NodeEvent};
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// A node listening on 127.0.0.1 with heartbeat timeout `t`.
async fn node_with_timeout(id: &str, t: Option<Duration>) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .peer_timeout(t)
        .start()
        .await
        .expect("node starts")
}

/// Asserts that `rx` gets nothing more within `d` (a monitor fired once).
async fn no_second_reason(rx: &mut tokio::sync::mpsc::UnboundedReceiver<aemp::Reason>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "a monitor fired twice");
}

/// A peer that completes the handshake and then neither reads nor writes
/// is dropped once `peer_timeout` passed without a packet from it: its node
/// monitor and a monitor of one of its ports fire once each with
/// `("transport_error", <node>, "peer timeout")`, the node reports it down
/// once, and the hit is counted. The node asked it the time before giving
/// up.
#[actix_rt::test]
async fn a_silent_peer_is_dropped_after_peer_timeout() {
    let timeout = Duration::from_secs(1);
    let node = node_with_timeout("watcher", Some(timeout)).await;
    let mut events = node.events();
    let mut peer = RawPeer::connect(&node, "silent").await;
    let up_at = Instant::now();
    let (cb1, mut node_mon) = reporter();
    let (cb2, mut port_mon) = reporter();
    node.mon("silent", cb1).forget();
    node.mon("silent#p", cb2).forget();

    let want = json!(["transport_error", "silent", "peer timeout"]);
    assert_eq!(Value::from(reason(&mut node_mon).await), want);
    let after = up_at.elapsed();
    assert_eq!(Value::from(reason(&mut port_mon).await), want);
    assert!(
        after >= timeout - Duration::from_millis(100) && after < timeout * 2,
        "dropped after {after:?}"
    );
    let error = wait_event(&mut events, |ev| match ev {
        NodeEvent::Down { node, error } if node == "silent" => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(error, ConnectionError::PeerTimeout);
    no_second_reason(&mut node_mon).await;
    no_second_reason(&mut port_mon).await;
    while let Ok(ev) = events.try_recv() {
        assert!(!matches!(ev, NodeEvent::Down { .. }), "second Down: {ev:?}");
    }
    assert!(!node.node_is_up("silent"));
    assert_eq!(node.limit_hit_count("silent", Limit::PeerTimeout), 1);

    // what the node sent before it closed (the handshake's leftovers aside,
    // which came long before): a heartbeat among them
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, peer.stream.read_to_end(&mut rest))
        .await
        .expect("closed")
        .expect("read");
    let probe = json!(["", "time", "watcher#aemp#heartbeat"]).to_string();
    assert!(
        String::from_utf8_lossy(&rest).contains(&probe),
        "no heartbeat among {:?}",
        String::from_utf8_lossy(&rest)
    );
    node.shutdown();
}

/// A peer that answers the heartbeat late — 600 ms after the request, of
/// a 1 s `peer_timeout` whose request goes out after 250 ms of silence —
/// is kept: four timeouts pass, the connection stays up, no monitor fires,
/// nothing is counted.
#[actix_rt::test]
async fn a_peer_answering_late_but_in_time_is_kept() {
    let timeout = Duration::from_secs(1);
    let node = node_with_timeout("patient", Some(timeout)).await;
    let mut peer = RawPeer::connect(&node, "slowpoke").await;
    let (cb, mut mon) = reporter();
    node.mon("slowpoke", cb).forget();
    let end = Instant::now() + timeout * 4;
    let mut answered = 0;
    while Instant::now() < end {
        let p = tokio::time::timeout(timeout * 2, peer.recv_any())
            .await
            .expect("the node keeps asking");
        if p[0] == "" && p[1] == "time" {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let reply = p[2].as_str().unwrap().split_once('#').unwrap().1.to_owned();
            peer.send(json!([reply, 1_700_000_000.5])).await;
            answered += 1;
        }
    }
    assert!(answered >= 3, "only {answered} heartbeats in 4 timeouts");
    assert!(node.node_is_up("slowpoke"));
    assert!(mon.try_recv().is_err(), "the monitor fired");
    assert_eq!(node.limit_hit_count("slowpoke", Limit::PeerTimeout), 0);
    node.shutdown();
}

/// A prompt answer moves the next request to a quarter of `peer_timeout`
/// after it (so a peer always has three quarters to answer): the node
/// asks again 250 ms after each answer, not at the old deadline.
#[actix_rt::test]
async fn after_an_answer_the_next_request_waits_a_quarter() {
    let timeout = Duration::from_secs(1);
    let node = node_with_timeout("regular", Some(timeout)).await;
    let mut peer = RawPeer::connect(&node, "prompt").await;
    let mut answered_at: Option<Instant> = None;
    let mut gaps = Vec::new();
    while gaps.len() < 5 {
        let p = tokio::time::timeout(timeout * 2, peer.recv_any())
            .await
            .expect("the node keeps asking");
        if p[0] == "" && p[1] == "time" {
            if let Some(at) = answered_at {
                gaps.push(at.elapsed());
            }
            let reply = p[2].as_str().unwrap().split_once('#').unwrap().1.to_owned();
            peer.send(json!([reply, 1_700_000_000.5])).await;
            answered_at = Some(Instant::now());
        }
    }
    for gap in &gaps {
        assert!(
            *gap >= Duration::from_millis(200) && *gap < Duration::from_millis(400),
            "requests after answers: {gaps:?}"
        );
    }
    node.shutdown();
}

/// A peer that sends nothing but keeps reading a long backlog is alive:
/// the node queued 32 MB for it, so a heartbeat request waits behind
/// seconds of data, but each time the full socket takes data again counts
/// as life. Once the peer stops reading too, it is dropped within
/// `peer_timeout` (plus slack for the last drain).
#[actix_rt::test]
async fn a_slow_reader_of_a_backlog_is_kept_until_it_stops_reading() {
    // 1 MiB per 200 ms: the 32 MB take about 6 s
    reader_of_a_backlog("streamer", "reader", 1 << 20, Duration::from_millis(200), 3).await;
}

/// A reader far slower than the socket's buffers — 64 KiB every 250 ms —
/// is alive too: the full socket would become writable again only once
/// half of what it holds was read (seconds here), but the peer
/// acknowledging more of the backlog at each heartbeat look (`SIOCOUTQ`
/// shrinking) counts as life. Stopping is noticed as before.
#[cfg(target_os = "linux")]
#[actix_rt::test]
async fn a_very_slow_reader_of_a_backlog_is_kept() {
    reader_of_a_backlog("trickler", "slow", 64 * 1024, Duration::from_millis(250), 6).await;
}

/// Node `id` (`peer_timeout` 2 s) queues 32 MB for raw peer `peer`, which
/// reads `chunk` bytes, pauses `pause`, and so on for `seconds`: it must
/// stay up, and be dropped with `peer timeout` within two timeouts once
/// it stops reading.
async fn reader_of_a_backlog(id: &str, peer: &str, chunk: usize, pause: Duration, seconds: u64) {
    let timeout = Duration::from_secs(2);
    let node = node_with_timeout(id, Some(timeout)).await;
    let mut raw = RawPeer::connect(&node, peer).await;
    let (cb, mut mon) = reporter();
    node.mon(peer, cb).forget();
    let (payload, sink) = ("x".repeat(1000), format!("{peer}#sink"));
    for i in 0..32_000u32 {
        node.snd(&sink, &(i, &payload)).unwrap();
    }
    let mut buf = vec![0u8; chunk];
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let mut got = 0;
        while got < buf.len() {
            let n = tokio::time::timeout(WAIT, raw.stream.read(&mut buf[got..]))
                .await
                .expect("data within the wait")
                .expect("read");
            assert!(n > 0, "the node dropped a reading peer");
            got += n;
        }
        tokio::time::sleep(pause).await;
    }
    assert!(node.node_is_up(peer), "a reading peer was dropped");
    assert!(mon.try_recv().is_err());
    let stopped = Instant::now();
    let r = reason(&mut mon).await;
    assert_eq!(
        Value::from(r),
        json!(["transport_error", peer, "peer timeout"])
    );
    assert!(
        stopped.elapsed() < timeout * 2,
        "noticed after {:?}",
        stopped.elapsed()
    );
    node.shutdown();
}

/// Our own stall is not the peer's fault: the node's thread is blocked for
/// 2.5 peer timeouts while the peer (on its own thread) keeps answering;
/// afterwards the node reads the answers before it judges, and keeps the
/// connection.
#[actix_rt::test]
async fn a_stall_of_our_own_thread_does_not_drop_an_answering_peer() {
    let timeout = Duration::from_secs(1);
    let node = node_with_timeout("stalling", Some(timeout)).await;
    let addr = addr_of(&node);
    let answerer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut peer = raw_handshake(&addr, client_cfg("steady", SECRET))
                .await
                .unwrap();
            let end = Instant::now() + Duration::from_secs(6);
            while Instant::now() < end {
                let Ok(p) = tokio::time::timeout(Duration::from_millis(200), peer.recv_any()).await
                else {
                    continue;
                };
                if p[0] == "" && p[1] == "time" {
                    let reply = p[2].as_str().unwrap().split_once('#').unwrap().1.to_owned();
                    peer.send(json!([reply, 1_700_000_000.5])).await;
                }
            }
        })
    });
    until("the answering peer to be up", || node.node_is_up("steady")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // the node's thread (this one) stalls
    std::thread::sleep(timeout * 5 / 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(node.node_is_up("steady"), "dropped for our own stall");
    assert_eq!(node.limit_hit_count("steady", Limit::PeerTimeout), 0);
    answerer.join().unwrap();
    node.shutdown();
}

/// Any inbound packet counts as life: a peer that ignores the heartbeat
/// but sends `[]` keepalives every 400 ms (as a listener-less Perl node
/// does, every `monitor_timeout`) is kept.
#[actix_rt::test]
async fn any_packet_counts_as_an_answer() {
    let timeout = Duration::from_secs(1);
    let node = node_with_timeout("lenient", Some(timeout)).await;
    let mut peer = RawPeer::connect(&node, "chatty").await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        peer.send(json!([])).await;
    }
    assert!(node.node_is_up("chatty"));
    assert_eq!(node.limit_hit_count("chatty", Limit::PeerTimeout), 0);
    node.shutdown();
}

/// `peer_timeout` none: no heartbeat is sent and a silent peer stays
/// connected (the reference's behaviour).
#[actix_rt::test]
async fn no_peer_timeout_means_no_heartbeat() {
    let node = node_with_timeout("trusting", None).await;
    let mut peer = RawPeer::connect(&node, "quiet").await;
    // Global's opening is skipped; a heartbeat would fail this
    peer.assert_silent(Duration::from_millis(2500)).await;
    assert!(node.node_is_up("quiet"));
    node.shutdown();
}

/// Two idle aemp nodes, only one with a (short) heartbeat: the other
/// answers its `time` requests, so the connection outlives several
/// timeouts, and messages still flow afterwards.
#[actix_rt::test]
async fn two_idle_aemp_nodes_keep_their_connection() {
    let a = node_with_timeout("hb-a", Some(Duration::from_millis(600))).await;
    let b = node_with_timeout("hb-b", None).await;
    let mut events = a.events();
    b.connect(addr_of(&a)).await.unwrap();
    let (port, mut rx) = a.port_channel_named("inbox").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(ev) = events.try_recv() {
        assert!(!matches!(ev, NodeEvent::Down { .. }), "{ev:?}");
    }
    assert!(a.node_is_up("hb-b") && b.node_is_up("hb-a"));
    b.snd(&port, &("still", "here")).unwrap();
    recv(&mut rx).await;
    assert_eq!(a.limit_hit_count("hb-b", Limit::PeerTimeout), 0);
    assert_eq!(b.limit_hit_count("hb-a", Limit::PeerTimeout), 0);
    a.shutdown();
    b.shutdown();
}

/// The defaults, and the configuration-file keys (`0`: none).
#[test]
fn settings() {
    let d = NodeConfig::default();
    assert_eq!(d.peer_timeout, Some(DEFAULT_PEER_TIMEOUT));
    assert_eq!(DEFAULT_PEER_TIMEOUT, Duration::from_secs(60));
    assert_eq!(d.tcp_keepalive, Some(DEFAULT_TCP_KEEPALIVE));
    assert_eq!(d.tcp_user_timeout, Some(DEFAULT_TCP_USER_TIMEOUT));

    let parse = |v: Value| NodeConfig::from_values("p", v.as_object().unwrap());
    let c =
        parse(json!({"peer_timeout": 2.5, "tcp_keepalive": "30", "tcp_user_timeout": 0})).unwrap();
    assert_eq!(c.peer_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(30)));
    assert_eq!(c.tcp_user_timeout, None);
    let c = parse(json!({"peer_timeout": "0", "tcp_keepalive": null})).unwrap();
    assert_eq!((c.peer_timeout, c.tcp_keepalive), (None, None));
    // untouched keys keep their defaults
    assert_eq!(
        parse(json!({})).unwrap().peer_timeout,
        Some(DEFAULT_PEER_TIMEOUT)
    );
    for bad in [json!(-1), json!("soon"), json!([1])] {
        assert!(
            parse(json!({ "peer_timeout": bad })).is_err(),
            "{bad} accepted"
        );
    }
    assert!(parse(json!({"tcp_user_timeout": 0.05})).is_err());
}

/// A timeout shorter than 100 ms is refused at start (none is the way to
/// turn the heartbeat off).
#[actix_rt::test]
async fn a_tiny_peer_timeout_is_refused() {
    let Err(err) = Node::builder()
        .peer_timeout(Some(Duration::from_millis(10)))
        .start()
        .await
    else {
        panic!("a 10 ms peer_timeout was accepted");
    };
    assert!(
        matches!(
            err,
            StartError::Config(SettingError::Invalid(InvalidConfig::Liveness(
                "peer_timeout"
            )))
        ),
        "{err}"
    );
}

/// A duration longer than 10^9 s is refused at start, as in the
/// configuration file: `monitor_timeout(Duration::MAX)` made the first
/// handshake's deadline overflow the clock (a panic).
#[actix_rt::test]
async fn an_endless_duration_is_refused() {
    let Err(err) = Node::builder().monitor_timeout(Duration::MAX).start().await else {
        panic!("an endless monitor_timeout was accepted");
    };
    assert!(
        matches!(
            err,
            StartError::Config(SettingError::Invalid(InvalidConfig::TooLong(
                "monitor_timeout"
            )))
        ),
        "{err}"
    );
    let Err(err) = Node::builder()
        .tcp_user_timeout(Some(Duration::from_secs(2_000_000_000)))
        .start()
        .await
    else {
        panic!("an endless tcp_user_timeout was accepted");
    };
    assert!(err.to_string().contains("tcp_user_timeout"), "{err}");
    // the longest accepted still starts a node
    let node = Node::builder()
        .monitor_timeout(aemp::config::MAX_SETTING_DURATION)
        .start()
        .await
        .unwrap();
    node.shutdown();
}

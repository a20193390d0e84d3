//! The connection lifecycle: the connect deadline, known addresses,
//! keepalives of listener-less nodes, `mon_nodes`, simultaneous connects,
//! a peer process that dies, and the no-holes guarantee across a cut
//! connection.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aemp::{Node, NodeEvent, Reason};
use common::*;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

type NodeLog = Arc<Mutex<Vec<(String, bool, Reason)>>>;

fn log_mon_nodes(node: &Node) -> NodeLog {
    let log: NodeLog = Arc::default();
    let l = log.clone();
    node.mon_nodes(move |n, up, reason| {
        l.lock().unwrap().push((n.to_owned(), up, reason.clone()));
    })
    .forget();
    log
}

#[actix_rt::test]
async fn no_connection_within_monitor_timeout_fires_unable_to_connect() {
    let node = Node::builder()
        .node_id("lonely")
        .secret(SECRET)
        .monitor_timeout(Duration::from_secs(1))
        .connect_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let log = log_mon_nodes(&node);
    node.add_addresses("ghost", [free_port()]);
    let (cb1, mut port_mon) = reporter();
    let (cb2, mut node_mon) = reporter();
    node.mon("ghost#p", cb1).forget();
    node.mon("ghost", cb2).forget();
    node.snd("ghost#p", &("lost",)).unwrap();
    let expected = vec![
        json!("transport_error"),
        json!("ghost"),
        json!("unable to connect"),
    ];
    assert_eq!(reason(&mut port_mon).await, expected);
    assert_eq!(reason(&mut node_mon).await, expected);
    // the queue is gone with the node's entry; mon_nodes heard nothing
    until("ghost to be forgotten", || {
        !node.known_nodes().contains(&"ghost".to_string())
    })
    .await;
    assert!(log.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn monitoring_a_bare_node_id_starts_no_connection() {
    let node = Node::builder()
        .node_id("quiet")
        .secret(SECRET)
        .monitor_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let (cb, mut r) = reporter();
    node.mon("nowhere", cb).forget();
    // no connect attempt, so no deadline: nothing fires
    if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(800), r.recv()).await {
        panic!("fired: {r:?}");
    }
    assert_eq!(node.known_nodes(), vec!["quiet".to_string()]);
}

#[actix_rt::test]
async fn messages_for_a_node_with_known_addresses_connect_to_it() {
    let a = listening_node("a").await;
    let (inbox, mut rx) = a.port_channel_named("inbox").unwrap();
    let b = Node::builder()
        .node_id("b")
        .secret(SECRET)
        .connect_interval(Duration::from_millis(100))
        .monitor_timeout(Duration::from_secs(10))
        .start()
        .await
        .unwrap();
    // the first address answers nothing; the connector cycles to the next
    b.add_addresses("a", [free_port(), addr_of(&a)]);
    for i in 0..3 {
        b.snd(&inbox, &("queued", i)).unwrap();
    }
    for want in 0..3 {
        let (_, i): (String, u32) = recv(&mut rx).await.decode().unwrap();
        assert_eq!(i, want);
    }
    assert!(b.node_is_up("a"));
}

#[actix_rt::test]
async fn addresses_learned_while_waiting_are_used_at_once() {
    let a = listening_node("a").await;
    let (inbox, mut rx) = a.port_channel_named("inbox").unwrap();
    // a connect interval far beyond the test's wait: only the wake-up on
    // new addresses can connect in time
    let b = Node::builder()
        .node_id("b")
        .secret(SECRET)
        .connect_interval(Duration::from_secs(60))
        .monitor_timeout(Duration::from_secs(120))
        .start()
        .await
        .unwrap();
    b.snd(&inbox, &("queued", 1)).unwrap();
    // the connector's first try finds no address and pauses
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.add_addresses("a", [addr_of(&a)]);
    let (_, i): (String, u32) = recv(&mut rx).await.decode().unwrap();
    assert_eq!(i, 1);
}

#[actix_rt::test]
async fn a_node_without_listeners_sends_keepalives_when_idle() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = Node::builder()
        .node_id("nolisten")
        .secret(SECRET)
        .monitor_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let dial = {
        let node = node.clone();
        actix_rt::spawn(async move { node.connect(addr).await })
    };
    let (s, _) = listener.accept().await.unwrap();
    let mut peer = handshake_on(s, client_cfg("raw", SECRET)).await.unwrap();
    dial.await.unwrap().unwrap();
    let n = peer.count_keepalives(Duration::from_millis(3500)).await;
    assert!(
        (2..=4).contains(&n),
        "{n} keepalives in 3.5 s with a 1 s monitor_timeout"
    );

    // a node with a listener sends none
    let listening = Node::builder()
        .node_id("listening")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .monitor_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let mut peer = raw_handshake(&addr_of(&listening), client_cfg("raw2", SECRET))
        .await
        .unwrap();
    assert_eq!(peer.count_keepalives(Duration::from_millis(2500)).await, 0);
}

#[actix_rt::test]
async fn mon_nodes_sees_up_and_down_alternate() {
    let a = listening_node("a").await;
    let log = log_mon_nodes(&a);
    let b = listening_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    node_up(&a, "b").await;
    b.shutdown();
    node_down(&a, "b").await;
    let b2 = listening_node("b").await;
    b2.connect(addr_of(&a)).await.unwrap();
    node_up(&a, "b").await;
    let log = log.lock().unwrap().clone();
    let states: Vec<(&str, bool)> = log.iter().map(|(n, up, _)| (n.as_str(), *up)).collect();
    assert_eq!(states, [("b", true), ("b", false), ("b", true)]);
    assert!(log[0].2.is_empty() && log[2].2.is_empty());
    assert_peer_gone(&log[1].2, "b");
}

#[actix_rt::test]
async fn simultaneous_connects_between_aemp_nodes_agree_without_losses() {
    for round in 0..8 {
        let (ida, idb) = (format!("sa{round}"), format!("sb{round}"));
        let mk = |id: String| {
            Node::builder()
                .node_id(id)
                .secret(SECRET)
                .bind("127.0.0.1:0")
                .connect_interval(Duration::from_millis(100))
                .start()
        };
        let a = mk(ida.clone()).await.unwrap();
        let b = mk(idb.clone()).await.unwrap();
        let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
        let (pb, mut rb) = b.port_channel_named("inbox").unwrap();
        let (ea, eb) = (a.events(), b.events());
        let (cba, mut mon_a) = reporter();
        let (cbb, mut mon_b) = reporter();
        a.mon(&idb, cba).forget();
        b.mon(&ida, cbb).forget();
        a.add_addresses(&idb, [addr_of(&b)]);
        b.add_addresses(&ida, [addr_of(&a)]);
        // both sides queue, so both connectors dial at once; and both dial
        // explicitly too
        for i in 0..100u32 {
            a.snd(&pb, &(i,)).unwrap();
            b.snd(&pa, &(i,)).unwrap();
        }
        let (ra_conn, rb_conn) = tokio::join!(a.connect(addr_of(&b)), b.connect(addr_of(&a)));
        let _ = (ra_conn, rb_conn); // either may lose the race
        for i in 0..100u32 {
            assert_eq!(
                recv(&mut rb).await.decode::<(u32,)>().unwrap().0,
                i,
                "round {round}"
            );
            assert_eq!(
                recv(&mut ra).await.decode::<(u32,)>().unwrap().0,
                i,
                "round {round}"
            );
        }
        assert_silent(&mut ra, Duration::from_millis(50)).await;
        assert_silent(&mut rb, Duration::from_millis(50)).await;
        until("both up", || a.node_is_up(&idb) && b.node_is_up(&ida)).await;
        // nothing went down, no monitor fired
        for mut events in [ea, eb] {
            while let Ok(ev) = events.try_recv() {
                assert!(
                    !matches!(ev, NodeEvent::Down { .. }),
                    "round {round}: {ev:?}"
                );
            }
        }
        assert!(
            mon_a.try_recv().is_err() && mon_b.try_recv().is_err(),
            "round {round}"
        );
        a.shutdown();
        b.shutdown();
    }
}

// ----------------------------------------------------------- peer process

/// The body of a child node process, not a test (see `ChildNode`, which
/// runs it with `--ignored --exact`): a node with an inbox, printing its
/// address, until it is killed.
#[test]
#[ignore = "a child node process: ChildNode starts it, with AEMP_TEST_CHILD_NODE set"]
fn child_node_process() {
    let id = std::env::var("AEMP_TEST_CHILD_NODE")
        .expect("run by ChildNode, with AEMP_TEST_CHILD_NODE set");
    actix_rt::System::new().block_on(async move {
        let node = listening_node(&id).await;
        let (_inbox, _rx) = node.port_channel_named("inbox").unwrap();
        println!("{CHILD_ADDR}{}", addr_of(&node));
        std::future::pending::<()>().await;
    });
}

#[actix_rt::test]
async fn a_killed_peer_process_fires_transport_error() {
    let mut child = ChildNode::start("child_node_process", "AEMP_TEST_CHILD_NODE", "child");
    let node = listening_node("parent").await;
    let log = log_mon_nodes(&node);
    assert_eq!(node.connect(child.addr.clone()).await.unwrap(), "child");
    let (cb1, mut port_mon) = reporter();
    let (cb2, mut node_mon) = reporter();
    node.mon("child#inbox", cb1).forget();
    node.mon("child", cb2).forget();
    // the monitor is registered over there before the kill
    node.cal("child", &("info",), Some(WAIT)).await.unwrap();
    child.kill();
    for r in [reason(&mut port_mon).await, reason(&mut node_mon).await] {
        assert_peer_gone(&r, "child");
    }
    until("mon_nodes to hear of it", || log.lock().unwrap().len() == 2).await;
    assert!(!log.lock().unwrap()[1].1);
}

// ----------------------------------------------------------------- no holes

/// A TCP proxy whose connections the test can cut.
struct Proxy {
    addr: String,
    live: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let live: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let l = live.clone();
        actix_rt::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (client, server) = (client.into_std().unwrap(), server.into_std().unwrap());
                l.lock().unwrap().push(client.try_clone().unwrap());
                l.lock().unwrap().push(server.try_clone().unwrap());
                let client = TcpStream::from_std(client).unwrap();
                let server = TcpStream::from_std(server).unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                actix_rt::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                actix_rt::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
            }
        });
        Proxy { addr, live }
    }

    /// Ends every proxied connection in both directions.
    fn cut(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[actix_rt::test]
async fn after_a_loss_nothing_arrives_before_the_senders_monitor_fired() {
    let a = listening_node("recv").await;
    let (sink, mut rx) = a.port_channel_named("sink").unwrap();
    let proxy = Proxy::start(addr_of(&a)).await;
    let b = Node::builder()
        .node_id("send")
        .secret(SECRET)
        .connect_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    b.add_addresses("recv", [proxy.addr.clone()]);

    // how many times the sender's monitor of the sink fired so far
    let fired = Arc::new(AtomicU64::new(0));
    let arm = |b: &Node, fired: &Arc<AtomicU64>| {
        let f = fired.clone();
        b.mon("recv#sink", move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        })
        .forget();
    };
    arm(&b, &fired);
    const N: u64 = 30_000;
    let mut epoch_of = vec![0u64; N as usize + 1];
    let mut armed_epoch = 0;
    for seq in 1..=N {
        let epoch = fired.load(Ordering::SeqCst);
        if epoch != armed_epoch {
            arm(&b, &fired); // monitors are one-shot: watch again
            armed_epoch = epoch;
        }
        epoch_of[seq as usize] = epoch;
        b.snd(&sink, &(seq,)).unwrap();
        if seq % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if seq == 8_000 || seq == 20_000 {
            proxy.cut();
        }
    }
    // the last message arrives once the nodes reconnected
    let mut got = Vec::new();
    loop {
        let (seq,): (u64,) = recv(&mut rx).await.decode().unwrap();
        got.push(seq);
        if seq == N {
            break;
        }
    }
    assert!(fired.load(Ordering::SeqCst) >= 1, "no cut was noticed");
    // in order, no duplicates; and a lost message is never followed by one
    // sent before the monitor fired
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated"
    );
    let received: std::collections::HashSet<u64> = got.iter().copied().collect();
    let mut last_lost_epoch: Option<u64> = None;
    for seq in 1..=N {
        let epoch = epoch_of[seq as usize];
        if received.contains(&seq) {
            if let Some(lost) = last_lost_epoch {
                assert!(
                    epoch > lost,
                    "message {seq} (epoch {epoch}) arrived after a loss in epoch {lost}"
                );
            }
        } else {
            last_lost_epoch = Some(last_lost_epoch.map_or(epoch, |e: u64| e.max(epoch)));
        }
    }
    let lost = N as usize - got.len();
    eprintln!(
        "no-holes: {lost} messages lost in {} cuts",
        fired.load(Ordering::SeqCst)
    );
    let _: Value = json!(lost);
}

/// At shutdown a connection writes what was queued, ends its half, and
/// reads (dropping it) what the peer still sends until the peer ends its
/// half: closing a socket with unread input resets the connection, and a
/// reset discards what our kernel has not sent yet — here the end of a
/// backlog the peer reads slowly, with the shutdown's `kil0` behind it —
/// and ends the peer's stream with an error instead of its end. The peer
/// sends all the time, so the node always has unread input when it is
/// done writing; the peer must still read everything, the `kil0` last,
/// and then a clean end of the stream.
#[actix_rt::test]
async fn shutdown_ends_the_stream_cleanly_while_the_peer_still_sends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for round in 0..2 {
        let node = listening_node("closer").await;
        let (_port, _rx) = node.port_channel_named("p").unwrap();
        let mut peer = RawPeer::connect(&node, "chatty").await;
        peer.send(json!(["", "mon1", "p"])).await;
        until("the mon1", || {
            node.peer_usage("chatty", aemp::Limit::RemoteMonitors) == Some(1)
        })
        .await;
        // a backlog of 16 MiB for the peer, more than the sockets hold
        let payload = "b".repeat(64 * 1024);
        for _ in 0..256 {
            node.snd("chatty#sink", &(&payload,)).unwrap();
        }
        node.shutdown();
        let (mut rd, mut wr) = peer.stream.split();
        let done = std::sync::atomic::AtomicBool::new(false);
        let writer = async {
            // keepalives, 64 KiB at a time, until the node's end arrived
            let chunk = "[]".repeat(32 * 1024);
            while !done.load(Ordering::Relaxed) {
                if wr.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let _ = wr.shutdown().await;
        };
        let reader = async {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let end = tokio::time::timeout(WAIT, async {
                for reads in 0u64.. {
                    // a slow reader: the backlog stays in the sockets
                    if reads % 4 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    match rd.read(&mut buf).await {
                        Ok(0) => return Ok(()),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) => return Err(e),
                    }
                }
                unreachable!("the reads never run out")
            })
            .await;
            done.store(true, Ordering::Relaxed);
            (end, got)
        };
        let ((), (end, got)) = tokio::join!(writer, reader);
        let end = end.expect("the stream ended within the wait");
        assert!(end.is_ok(), "round {round}: the stream ended with {end:?}");
        let text = String::from_utf8_lossy(&got);
        assert_eq!(
            text.matches(&payload).count(),
            256,
            "round {round}: backlog lost"
        );
        assert!(
            text.trim_end()
                .ends_with(r#"["","kil0","p","shutdown","node closer is shutting down"]"#),
            "round {round}: the kil0 is not last of {} bytes",
            got.len()
        );
    }
}

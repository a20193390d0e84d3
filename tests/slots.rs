//! One connection per node, against handshakes that never authenticate:
//! a squatter that names a node and stops must not keep that node out,
//! and a real node gets in at once, with nothing lost and no monitor
//! fired.

mod common;

use std::time::{Duration, Instant};

use aemp::Node;
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long a real node may take to get in past a squatter.
const AT_ONCE: Duration = Duration::from_millis(500);

/// Connects as `claimed`, sends `lines` of a greeting and reads what the
/// node answers for a moment; the connection stays open.
async fn squat(node: &Node, lines: &str) -> (BufReader<TcpStream>, Vec<String>) {
    let mut s = BufReader::new(TcpStream::connect(addr_of(node)).await.unwrap());
    s.get_mut().write_all(lines.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    loop {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_millis(200), s.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => got.push(line),
            _ => break,
        }
    }
    (s, got)
}

/// A real node named `id` connects to `node` and a message gets through.
async fn real_node_gets_in(node: &Node, id: &str) -> Node {
    let (port, mut rx) = node.port_channel_named(&format!("inbox-{id}")).unwrap();
    let real = Node::builder()
        .node_id(id)
        .secret(SECRET)
        .start()
        .await
        .unwrap();
    let (cb, mut mon) = reporter();
    real.mon(node.id(), cb).forget();
    let start = Instant::now();
    let up = tokio::time::timeout(Duration::from_secs(5), real.connect(addr_of(node))).await;
    assert_eq!(up.expect("connect timed out").as_deref(), Ok(node.id()));
    assert!(
        start.elapsed() < AT_ONCE,
        "got in only after {:?}",
        start.elapsed()
    );
    real.snd(&port, &("hi", id)).unwrap();
    assert_eq!(
        recv(&mut rx).await.decode::<(String, String)>().unwrap().1,
        id
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), mon.recv())
            .await
            .is_err(),
        "a monitor of the node fired"
    );
    real
}

/// Whether the node closed the squatter's connection (reads to the end).
async fn closed(s: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_end(s, &mut rest)
        )
        .await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

#[actix_rt::test]
async fn a_greeting_line_alone_holds_no_slot() {
    let node = listening_node("victim").await;
    let (_squatter, got) = squat(&node, "aemp;1;x1;hmac_md6_64_256;json\n").await;
    assert_eq!(got.len(), 2, "only our greeting: {got:?}");
    let real = real_node_gets_in(&node, "x1").await;
    assert!(node.node_is_up("x1"));
    real.shutdown();
    node.shutdown();
}

#[actix_rt::test]
async fn a_squatter_that_got_our_auth_line_loses_the_slot_to_the_real_node() {
    let node = listening_node("victim").await;
    let (mut squatter, got) =
        squat(&node, "aemp;1;x2;hmac_md6_64_256;json\nsquatter-nonce\n").await;
    assert_eq!(got.len(), 3, "greeting and auth line: {got:?}");
    assert!(got[2].starts_with("hmac_md6_64_256;"));
    let real = real_node_gets_in(&node, "x2").await;
    assert!(closed(&mut squatter).await, "squatter still connected");
    real.shutdown();
    node.shutdown();
}

#[actix_rt::test]
async fn squatters_reconnecting_keep_nobody_out() {
    let node = listening_node("victim").await;
    let mut squatters = Vec::new();
    for i in 0..5 {
        let lines = format!("aemp;1;x3;hmac_md6_64_256;json\nnonce{i}\n");
        squatters.push(squat(&node, &lines).await.0);
    }
    let real = real_node_gets_in(&node, "x3").await;
    // more squatters once it is up: refused, and the real connection stays
    let (mut late, got) = squat(&node, "aemp;1;x3;hmac_md6_64_256;json\nlate\n").await;
    assert_eq!(
        got.len(),
        2,
        "a late squatter got more than our greeting: {got:?}"
    );
    assert!(closed(&mut late).await);
    assert!(node.node_is_up("x3") && real.node_is_up("victim"));
    real.shutdown();
    node.shutdown();
}

#[actix_rt::test]
async fn a_wrong_secret_does_not_take_the_slot() {
    let node = listening_node("victim").await;
    let real = real_node_gets_in(&node, "x4").await;
    // a handshake with a wrong secret is refused (line one: x4 is up)
    let other = raw_handshake(&addr_of(&node), client_cfg("x4", "wrong")).await;
    assert!(other.is_err());
    assert!(node.node_is_up("x4") && real.node_is_up("victim"));
    still_serves(&node).await;
    real.shutdown();
    node.shutdown();
}

/// A peer that behaves as Perl 1.30 does: it sends its auth line on every
/// handshake as soon as it has our greeting, and completes every
/// handshake whose auth line checks out (two completed connections would
/// fire its "switched connections" monitors). When it dials us while we
/// dial it, we must send our auth line on one of the two only.
#[actix_rt::test]
async fn a_perl_style_peer_dialling_us_while_we_dial_it_completes_one_connection() {
    for round in 0..6u64 {
        let id = format!("perlish{round}");
        let node = listening_node(&format!("meet{round}")).await;
        let mut events = node.events();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = || {
            let mut c = client_cfg(&id, SECRET);
            c.provider = "AE-1.30".into();
            c
        };
        node.add_addresses(&id, [listener.local_addr().unwrap().to_string()]);
        // a message waits for the peer, so the node dials it; the peer
        // dials back before it answers, then runs both handshakes at once
        node.snd(format!("{id}#inbox"), &("early", round)).unwrap();
        let (theirs, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the node dials the peer")
            .unwrap();
        let ours = TcpStream::connect(addr_of(&node)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(round * 3)).await;
        let (dialled, accepted) =
            tokio::join!(handshake_on(ours, cfg()), handshake_on(theirs, cfg()));
        let completed = [dialled.is_ok(), accepted.is_ok()];
        assert_eq!(
            completed.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: the peer completed {completed:?}"
        );
        node_up(&node, &id).await;
        // and it stays up: no connection of it went down
        let down = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                match events.recv().await {
                    Ok(aemp::NodeEvent::Down { node: n, .. }) if n == id => break,
                    Ok(_) => {}
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
        assert!(down.is_err(), "round {round}: the peer went down");
        node.shutdown();
    }
}

/// A client that reads our auth line before it sends its own, behind a
/// squatter that holds the slot: it waits (nothing but our greeting), and
/// is granted the slot the moment the squatter goes.
#[actix_rt::test]
async fn a_waiting_handshake_gets_the_slot_when_its_holder_goes() {
    use tokio::io::AsyncReadExt;
    let node = listening_node("victim").await;
    let (squatter, got) = squat(&node, "aemp;1;x5;hmac_md6_64_256;json\nsquat\n").await;
    assert_eq!(got.len(), 3, "the squatter holds the slot: {got:?}");

    let mut hs = aemp::wire::Handshake::new(
        std::sync::Arc::new(client_cfg("x5", SECRET)),
        None,
        nonce(),
        Instant::now(),
    );
    let mut polite = TcpStream::connect(addr_of(&node)).await.unwrap();
    polite.write_all(&hs.greeting()).await.unwrap();
    let mut input = bytes::BytesMut::new();
    let lines = |b: &bytes::BytesMut| b.iter().filter(|&&c| c == b'\n').count();
    let read_some = async |s: &mut TcpStream, b: &mut bytes::BytesMut, d: Duration| matches!(tokio::time::timeout(d, s.read_buf(b)).await, Ok(Ok(n)) if n > 0);
    while lines(&input) < 2 {
        assert!(
            read_some(&mut polite, &mut input, WAIT).await,
            "no greeting"
        );
    }
    // the slot is held: no auth line for us yet
    assert!(!read_some(&mut polite, &mut input, Duration::from_millis(300)).await);
    assert_eq!(lines(&input), 2);

    drop(squatter);
    let start = Instant::now();
    while lines(&input) < 3 {
        assert!(
            read_some(&mut polite, &mut input, WAIT).await,
            "no auth line"
        );
    }
    assert!(
        start.elapsed() < AT_ONCE,
        "granted only after {:?}",
        start.elapsed()
    );
    let mut out = Vec::new();
    let est = hs.advance_granting(&mut input, &mut out).unwrap();
    assert_eq!(est.map(|e| e.remote_node).as_deref(), Some("victim"));
    polite.write_all(&out).await.unwrap();
    node_up(&node, "x5").await;
    node.shutdown();
}

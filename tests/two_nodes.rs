//! Two (or three) aemp nodes on 127.0.0.1: connecting, sending both ways,
//! queueing for nodes that are not up, and the port registry.

mod common;

use std::time::Duration;

use actix::prelude::*;
use aemp::wire::HandshakeError;
use aemp::{ConnectionError, Node, NodeEvent, Packet, PortError, PortId, SendError};
use common::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Order(String, u32, Vec<String>);

#[actix_rt::test]
async fn messages_flow_both_ways_typed_and_untyped() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    let (pb, mut rb) = b.port_channel();
    assert_eq!(b.connect(addr_of(&a)).await.unwrap(), "a");
    assert!(b.node_is_up("a"));
    node_up(&a, "b").await;

    b.snd(&pa, &Order("pizza".into(), 2, vec!["x".into()]))
        .unwrap();
    a.snd(&pb, &json!(["reply", {"k": [1, 2.5, null, true]}, "ü\"\\"]))
        .unwrap();

    let got: Order = recv(&mut ra).await.decode().unwrap();
    assert_eq!(got, Order("pizza".into(), 2, vec!["x".into()]));
    let v = recv(&mut rb).await.values().unwrap();
    assert_eq!(
        v,
        vec![
            json!("reply"),
            json!({"k": [1, 2.5, null, true]}),
            json!("ü\"\\")
        ]
    );
    assert_eq!(a.up_nodes(), vec!["b".to_string()]);
}

#[actix_rt::test]
async fn messages_for_a_node_not_up_wait_and_flush_in_order() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    // b does not know a yet: everything waits
    for i in 0..1000u32 {
        b.snd(&pa, &("seq", i)).unwrap();
    }
    assert!(!b.node_is_up("a"));
    b.connect(addr_of(&a)).await.unwrap();
    // and more after the connection is up: still in order
    for i in 1000..2000u32 {
        b.snd(&pa, &("seq", i)).unwrap();
    }
    for want in 0..2000u32 {
        let (_, i): (String, u32) = recv(&mut ra).await.decode().unwrap();
        assert_eq!(i, want);
    }
}

#[actix_rt::test]
async fn the_queue_flushes_when_the_other_side_connects() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (pb, mut rb) = b.port_channel_named("inbox").unwrap();
    for i in 0..10u32 {
        a.snd(&pb, &("early", i)).unwrap();
    }
    // b dials a: an incoming connection for a flushes a's queue for b
    b.connect(addr_of(&a)).await.unwrap();
    for want in 0..10u32 {
        let (_, i): (String, u32) = recv(&mut rb).await.decode().unwrap();
        assert_eq!(i, want);
    }
}

#[actix_rt::test]
async fn seeds_are_dialled_and_their_node_id_learned() {
    let a = listening_node("seed-a").await;
    let mut events = a.events();
    let b = Node::builder()
        .node_id("joiner")
        .secret(SECRET)
        .seed(addr_of(&a))
        .start()
        .await
        .unwrap();
    wait_event(&mut events, |e| {
        matches!(e, NodeEvent::Up { node, outbound: false, .. } if node == "joiner").then_some(())
    })
    .await;
    node_up(&b, "seed-a").await;
}

#[actix_rt::test]
async fn a_seed_is_redialled_until_it_answers() {
    // nothing listens there yet: the seed starts later
    let addr = free_port();
    let b = Node::builder()
        .node_id("patient")
        .secret(SECRET)
        .seed(addr.clone())
        .connect_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = Node::builder()
        .node_id("late")
        .secret(SECRET)
        .bind(addr)
        .start()
        .await
        .unwrap();
    node_up(&b, "late").await;
    node_up(&a, "patient").await;
}

#[actix_rt::test]
async fn a_seed_that_is_ourselves_is_dropped() {
    let addr = free_port();
    let a = Node::builder()
        .node_id("narcissus")
        .secret(SECRET)
        .bind(addr.clone())
        .seed(addr)
        .connect_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let mut events = a.events();
    // one refusal on each side of the self-connection, then silence
    let mut failures = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let NodeEvent::HandshakeFailed { error, .. } = ev {
            assert!(
                matches!(
                    error,
                    ConnectionError::Handshake(HandshakeError::TalkingToMyself)
                        | ConnectionError::Eof
                ),
                "{error:?}"
            );
            failures += 1;
        }
    }
    assert!(
        failures <= 2,
        "the seed was dialled again: {failures} failures"
    );
    assert!(a.up_nodes().is_empty());
}

#[actix_rt::test]
async fn a_second_connection_from_a_connected_node_is_refused() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    b.connect(addr_of(&a)).await.unwrap();
    let again = b.connect(addr_of(&a)).await;
    assert!(
        matches!(
            again,
            Err(ConnectionError::Handshake(HandshakeError::AlreadyConnected { ref node })) if node == "a"
        ),
        "{again:?}"
    );
    // the other direction is refused too, by both checks
    assert!(a.connect(addr_of(&b)).await.is_err());
    // and the first connection keeps working
    b.snd(&pa, &("still", "here")).unwrap();
    assert_eq!(
        recv(&mut ra).await.decode::<(String, String)>().unwrap().1,
        "here"
    );
    assert!(a.node_is_up("b") && b.node_is_up("a"));
}

#[actix_rt::test]
async fn a_lost_connection_is_reported_and_later_sends_wait_for_the_next() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    let mut events = a.events();
    b.connect(addr_of(&a)).await.unwrap();
    b.shutdown();
    let error = wait_event(&mut events, |e| match e {
        NodeEvent::Down { node, error } if node == "b" => Some(error.clone()),
        _ => None,
    })
    .await;
    // a reads the end, or (writing Global traffic) finds the pipe broken
    assert!(
        matches!(&error, ConnectionError::Eof | ConnectionError::Io(_)),
        "{error:?}"
    );
    assert!(!a.node_is_up("b"));
    assert!(matches!(b.snd(&pa, &("x",)), Err(SendError::Shutdown)));

    // a new incarnation of b connects; a's messages for b wait for it
    let b2 = listening_node("b").await;
    let (pb, mut rb) = b2.port_channel_named("inbox").unwrap();
    a.snd(&pb, &("waited",)).unwrap();
    b2.connect(addr_of(&a)).await.unwrap();
    assert_eq!(
        recv(&mut rb).await.decode::<(String,)>().unwrap().0,
        "waited"
    );
    b2.snd(&pa, &("hi",)).unwrap();
    assert_eq!(recv(&mut ra).await.decode::<(String,)>().unwrap().0, "hi");
}

/// An actor port, as the registry is meant to be used.
struct Collector(tokio::sync::mpsc::UnboundedSender<Vec<serde_json::Value>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Packet> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Packet, _: &mut Context<Self>) {
        let _ = self.0.send(msg.values().unwrap());
    }
}

#[actix_rt::test]
async fn actor_ports_get_remote_and_local_messages() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let port = a.port(Collector(tx).start().recipient());
    assert_eq!(port.node(), "a");
    assert!(port.name().ends_with(".a"), "{port}");
    b.connect(addr_of(&a)).await.unwrap();
    b.snd(&port, &("remote", 1)).unwrap();
    a.snd(&port, &("local", 2)).unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort_by_key(|v| v[1].as_i64());
    assert_eq!(
        got,
        vec![
            vec![json!("remote"), json!(1)],
            vec![json!("local"), json!(2)]
        ]
    );
}

#[actix_rt::test]
async fn the_registry_hands_out_fresh_ids_and_refuses_taken_names() {
    let a = listening_node("a").await;
    let (p1, _r1) = a.port_channel();
    let (p2, _r2) = a.port_channel();
    assert_ne!(p1, p2);
    let (_, u1) = p1.name().split_once('.').unwrap();
    let (_, u2) = p2.name().split_once('.').unwrap();
    assert_eq!((u1, u2), ("a", "b"));
    let (named, mut rx) = a.port_channel_named("sink").unwrap();
    assert_eq!(named, PortId::from("a#sink"));
    assert_eq!(
        a.port_channel_named("sink").unwrap_err(),
        PortError::NameTaken("sink".into())
    );
    assert!(matches!(
        a.port_channel_named("x#y"),
        Err(PortError::InvalidName(_))
    ));
    assert!(matches!(
        a.port_channel_named(""),
        Err(PortError::InvalidName(_))
    ));

    a.snd("a#sink", &("one",)).unwrap();
    assert_eq!(recv(&mut rx).await.decode::<(String,)>().unwrap().0, "one");
    a.kil(&named, vec![]).unwrap();
    assert!(!a.port_exists(&named));
    // to a missing port: silently dropped, as in the reference
    a.snd("a#sink", &("two",)).unwrap();
    assert!(rx.recv().await.is_none());
    // the name is free again, ids are not reused
    let (again, _r) = a.port_channel_named("sink").unwrap();
    assert_eq!(again, named);
    let (p3, _r3) = a.port_channel();
    assert!(p3.name().ends_with(".c"));
}

#[actix_rt::test]
async fn a_dropped_channel_receiver_removes_its_port() {
    let a = listening_node("a").await;
    let (p, rx) = a.port_channel();
    drop(rx);
    a.snd(&p, &("x",)).unwrap();
    assert!(!a.port_exists(&p));
}

#[actix_rt::test]
async fn messages_must_be_arrays() {
    let a = listening_node("a").await;
    assert!(matches!(
        a.snd("a#x", &json!({"k": 1})),
        Err(SendError::Encode(_))
    ));
    assert!(matches!(a.snd("a#x", &"string"), Err(SendError::Encode(_))));
    assert!(a.snd("a#x", &Vec::<u8>::new()).is_ok());
}

#[actix_rt::test]
async fn the_waiting_queue_is_bounded() {
    let a = Node::builder()
        .node_id("a")
        .secret(SECRET)
        .max_send_queue(1000)
        .start()
        .await
        .unwrap();
    let payload = "x".repeat(400);
    a.snd("nowhere#p", &(&payload,)).unwrap();
    a.snd("nowhere#p", &(&payload,)).unwrap();
    assert!(matches!(
        a.snd("nowhere#p", &(&payload,)),
        Err(SendError::QueueFull { limit: 1000, .. })
    ));
}

#[actix_rt::test]
async fn bulk_transfer_with_backpressure_keeps_order() {
    let a = listening_node("a").await;
    let b = Node::builder()
        .node_id("b")
        .secret(SECRET)
        .max_send_queue(256 * 1024)
        .start()
        .await
        .unwrap();
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    b.connect(addr_of(&a)).await.unwrap();
    let n = 50_000u32;
    let payload = "p".repeat(100);
    let sender = {
        let b = b.clone();
        let pa = pa.clone();
        actix_rt::spawn(async move {
            for i in 0..n {
                b.snd_async(&pa, &(i, &payload)).await.unwrap();
            }
        })
    };
    for want in 0..n {
        let (i, _): (u32, String) = recv(&mut ra).await.decode().unwrap();
        assert_eq!(i, want);
    }
    sender.await.unwrap();
}

#[actix_rt::test]
async fn an_overflowing_send_queue_fails_the_connection() {
    let a = listening_node("a").await;
    let b = Node::builder()
        .node_id("b")
        .secret(SECRET)
        .max_send_queue(64 * 1024)
        .start()
        .await
        .unwrap();
    let mut events = b.events();
    b.connect(addr_of(&a)).await.unwrap();
    let payload = "p".repeat(1000);
    // no yield: the connection cannot write, so the queue overflows
    let mut result = Ok(());
    for _ in 0..200 {
        result = b.snd("a#inbox", &(&payload,));
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(SendError::ConnectionClosed { .. })),
        "{result:?}"
    );
    // nothing after the refused message goes out on that connection
    assert!(b.snd("a#inbox", &("later",)).is_err());
    let error = wait_event(&mut events, |e| match e {
        NodeEvent::Down { node, error } if node == "a" => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(error, ConnectionError::SendQueueOverflow);
}

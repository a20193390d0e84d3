//! Awaitable waits (issue 12 item 6): nodes up and down, group members, a
//! port's death, node and group changes as streams — every wait bounded.

mod common;

use std::time::Duration;

use aemp::{Node, NodeUpdate};
use common::{SECRET, WAIT, addr_of, listening_node};
use serde_json::json;

async fn client(id: &str, seed: &str) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .seed(seed)
        .start()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn wait_node_up_and_down() {
    let a = listening_node("wa").await;
    let b = Node::builder()
        .node_id("wb")
        .secret(SECRET)
        .start()
        .await
        .unwrap();
    // nobody dials: the wait runs out
    let short = Duration::from_millis(200);
    assert!(b.wait_node_up("wa", short).await.is_err());
    // not up: down at once
    b.wait_node_down("wa", Duration::ZERO).await.unwrap();
    let waiter = {
        let b = b.clone();
        actix_rt::spawn(async move { b.wait_node_up("wa", WAIT).await })
    };
    b.connect(addr_of(&a)).await.unwrap();
    waiter.await.unwrap().expect("up within the wait");
    assert!(b.node_is_up("wa"));
    // up already: at once
    b.wait_node_up("wa", Duration::ZERO).await.unwrap();
    assert!(b.wait_node_down("wa", short).await.is_err());
    a.shutdown();
    b.wait_node_down("wa", WAIT)
        .await
        .expect("down within the wait");
    assert!(!b.node_is_up("wa"));
    b.shutdown();
}

#[actix_rt::test]
async fn node_changes_stream_up_then_down() {
    use futures_core::Stream;
    fn is_stream<S: Stream<Item = NodeUpdate>>(_: &S) {}
    let a = listening_node("ca").await;
    let b = Node::builder()
        .node_id("cb")
        .secret(SECRET)
        .start()
        .await
        .unwrap();
    let mut changes = b.node_changes();
    is_stream(&changes);
    b.connect(addr_of(&a)).await.unwrap();
    let up = tokio::time::timeout(WAIT, changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(&up, NodeUpdate::Up { node, .. } if node == "ca"));
    a.shutdown();
    let down = tokio::time::timeout(WAIT, changes.recv())
        .await
        .unwrap()
        .unwrap();
    match down {
        NodeUpdate::Down { node, reason } => {
            assert_eq!(node, "ca");
            assert_eq!(reason.first(), Some(&json!("transport_error")));
        }
        other => panic!("expected down, got {other:?}"),
    }
    b.shutdown();
}

#[actix_rt::test]
async fn wait_group_returns_the_members() {
    let a = listening_node("ga").await;
    let b = client("gb", &addr_of(&a)).await;
    assert!(
        b.wait_group("svc", Duration::from_millis(200))
            .await
            .is_err(),
        "no member yet"
    );
    let (svc, _rx) = a.port_channel();
    let _reg = a.grp_reg("svc", &svc).unwrap();
    let members = b.wait_group("svc", WAIT).await.expect("a member");
    assert_eq!(members, vec![svc.clone()]);
    // has members already: at once
    assert_eq!(
        b.wait_group("svc", Duration::ZERO).await.unwrap(),
        vec![svc]
    );
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn group_changes_stream_sees_join_and_leave_remotely() {
    let a = listening_node("sa").await;
    let b = client("sb", &addr_of(&a)).await;
    b.wait_node_up("sa", WAIT).await.unwrap();
    let mut changes = b.group_changes("room");
    let (p, _rx) = a.port_channel();
    let reg = a.grp_reg("room", &p).unwrap();
    let joined = next(&mut changes).await;
    assert_eq!(joined.added, vec![p.clone()]);
    assert_eq!(joined.members, vec![p.clone()]);
    drop(reg);
    let left = next(&mut changes).await;
    assert_eq!(left.removed, vec![p]);
    assert!(left.members.is_empty());
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn mon_future_gives_the_reason() {
    let node = Node::builder().node_id("mf").start().await.unwrap();
    // a failing handler: ("die", text)
    let port = node.port_fn(|_, _| Err("boom".into()));
    let death = node.mon_future(&port);
    assert_eq!(death.target(), port.to_string());
    node.snd(&port, &("x",)).unwrap();
    let reason = tokio::time::timeout(WAIT, death).await.unwrap();
    assert_eq!(reason, Some(vec![json!("die"), json!("boom")]));
    // a normal exit: empty
    let (p, _rx) = node.port_channel();
    let death = node.mon_future(&p);
    node.kil(&p, vec![]).unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, death).await.unwrap(),
        Some(vec![])
    );
    // a missing port: no_such_port at once
    let missing = format!("{}#nothere", node.id());
    let reason = tokio::time::timeout(WAIT, node.mon_future(&missing))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason.first(), Some(&json!("no_such_port")));
    node.shutdown();
}

#[actix_rt::test]
async fn dropping_a_mon_future_removes_the_monitor() {
    let a = listening_node("da").await;
    let b = client("db", &addr_of(&a)).await;
    b.wait_node_up("da", WAIT).await.unwrap();
    let (p, _rx) = a.port_channel();
    let before = b.remote_monitor_count();
    let death = b.mon_future(&p);
    assert_eq!(b.remote_monitor_count(), before + 1);
    drop(death);
    assert_eq!(b.remote_monitor_count(), before);
    // the remote port's death reaches a live future
    // (mon1, then the message that kills it: one connection, in order)
    let q = a.port_fn(|_, _| Err("bye".into()));
    let death = b.mon_future(&q);
    b.snd(&q, &("die now",)).unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, death).await.unwrap(),
        Some(vec![json!("die"), json!("bye")])
    );
    a.shutdown();
    b.shutdown();
}

async fn next(c: &mut aemp::GroupChanges) -> aemp::GroupChange {
    tokio::time::timeout(WAIT, c.recv())
        .await
        .expect("a change within the wait")
        .expect("node alive")
}

//! Port-bound work (issue 12 item 3): `psub`/`peval` kill their port with
//! `("die", text)` on failure, `mon_guard` frees with the port or the
//! guard, `after` fires whether or not any port lives.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aemp::{HandlerError, Node};
use common::{SECRET, WAIT, addr_of, listening_node};
use serde_json::json;

async fn node(id: &str) -> Node {
    Node::builder().node_id(id).start().await.unwrap()
}

#[actix_rt::test]
async fn psub_runs_later_in_the_port_context_and_kills_it_on_panic() {
    let n = node("ps").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let port = n.port_fn(move |ctx, _| {
        let mut ok = ctx.psub(|c, x: u32| Ok::<_, HandlerError>((c.port().clone(), x * 2)));
        let mut bad = ctx.psub(|_, ()| -> Result<(), HandlerError> { panic!("kaputt") });
        let _ = tx.send((
            ok(21),
            ctx.node().after_fn(Duration::from_millis(20), move || {
                assert_eq!(bad(()), None);
            }),
        ));
        Ok(())
    });
    let death = n.mon_future(&port);
    n.snd(&port, &("go",)).unwrap();
    let (ok, _timer) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok, Some((port.clone(), 42)));
    assert!(n.port_exists(&port), "alive until the psub fails");
    let reason = tokio::time::timeout(WAIT, death).await.unwrap().unwrap();
    assert_eq!(reason, vec![json!("die"), json!("kaputt")]);
    assert!(!n.port_exists(&port));
    n.shutdown();
}

#[actix_rt::test]
async fn peval_sets_self_and_kills_on_error() {
    let n = node("pe").await;
    let (port, _rx) = n.port_channel();
    assert_eq!(
        n.peval(&port, |ctx| Ok(ctx.port().clone())),
        Some(port.clone())
    );
    assert!(n.port_exists(&port));
    let death = n.mon_future(&port);
    assert_eq!(
        n.peval(&port, |_| -> Result<u8, HandlerError> {
            Err("nope".into())
        }),
        None
    );
    let reason = tokio::time::timeout(WAIT, death).await.unwrap().unwrap();
    assert_eq!(reason, vec![json!("die"), json!("nope")]);
    n.shutdown();
}

#[actix_rt::test]
async fn peval_on_a_remote_port_kills_it_there() {
    let a = listening_node("pra").await;
    let b = Node::builder()
        .node_id("prb")
        .secret(SECRET)
        .seed(addr_of(&a))
        .start()
        .await
        .unwrap();
    b.wait_node_up("pra", WAIT).await.unwrap();
    let (port, _rx) = a.port_channel();
    let death = a.mon_future(&port);
    assert_eq!(
        b.peval(&port, |_| -> Result<(), HandlerError> {
            Err("remote".into())
        }),
        None
    );
    let reason = tokio::time::timeout(WAIT, death).await.unwrap().unwrap();
    assert_eq!(reason, vec![json!("die"), json!("remote")]);
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn mon_guard_frees_with_the_port_or_the_guard() {
    let n = node("mg").await;
    let res = Arc::new(());
    // the guard dropped: freed, the port lives on
    let (p, _rx) = n.port_channel();
    let guard = n.mon_guard(&p, res.clone());
    assert_eq!(Arc::strong_count(&res), 2);
    drop(guard);
    assert_eq!(Arc::strong_count(&res), 1);
    assert!(n.port_exists(&p));
    // the port dies (with an error or normally): freed
    for reason in [vec![json!("die"), json!("x")], vec![]] {
        let (p, _rx) = n.port_channel();
        let _guard = n.mon_guard(&p, res.clone());
        assert_eq!(Arc::strong_count(&res), 2);
        let death = n.mon_future(&p);
        n.kil(&p, reason).unwrap();
        tokio::time::timeout(WAIT, death).await.unwrap();
        assert_eq!(Arc::strong_count(&res), 1);
    }
    // a missing port: freed at once
    let _g = n.mon_guard(format!("{}#gone", n.id()), res.clone());
    assert_eq!(Arc::strong_count(&res), 1);
    n.shutdown();
}

#[actix_rt::test]
async fn mon_guard_on_a_remote_port() {
    let a = listening_node("mra").await;
    let b = Node::builder()
        .node_id("mrb")
        .secret(SECRET)
        .seed(addr_of(&a))
        .start()
        .await
        .unwrap();
    b.wait_node_up("mra", WAIT).await.unwrap();
    let q = a.port_fn(|_, _| Err("stop".into()));
    let res = Arc::new(());
    b.mon_guard(&q, res.clone()).forget();
    let death = b.mon_future(&q);
    // mon1 then the message on the same connection: the monitor is in place
    b.snd(&q, &("x",)).unwrap();
    tokio::time::timeout(WAIT, death).await.unwrap();
    assert_eq!(Arc::strong_count(&res), 1);
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn after_fires_without_any_port_and_can_be_cancelled() {
    let n = node("af").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // no port involved; the handle dropped: it still fires
    let t = tx.clone();
    drop(n.after_fn(Duration::from_millis(10), move || {
        let _ = t.send("fired");
    }));
    assert_eq!(
        tokio::time::timeout(WAIT, rx.recv()).await.unwrap(),
        Some("fired")
    );
    // cancelled: never fires
    let t = tx.clone();
    n.after_fn(Duration::from_millis(10), move || {
        let _ = t.send("cancelled one");
    })
    .cancel();
    let t = tx.clone();
    let _ = n.after_fn(Duration::from_millis(50), move || {
        let _ = t.send("later");
    });
    assert_eq!(
        tokio::time::timeout(WAIT, rx.recv()).await.unwrap(),
        Some("later")
    );
    // the message form, to a port that dies before it fires: no panic, the
    // timer still runs (a later one to a live port arrives)
    let (dead, _d) = n.port_channel();
    let (live, mut lrx) = n.port_channel();
    let _ = n.after(Duration::from_millis(10), &dead, &("x",)).unwrap();
    n.kil(&dead, vec![]).unwrap();
    let _ = n
        .after(Duration::from_millis(30), &live, &("tick", 7))
        .unwrap();
    let msg = tokio::time::timeout(WAIT, lrx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.decode::<(String, u8)>().unwrap(), ("tick".into(), 7));
    n.shutdown();
}

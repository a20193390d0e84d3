//! Tag dispatch (`rcv`, MP.pm 330–450): callbacks per tag, the default,
//! ports without callbacks, changing tags from inside and outside, the
//! temporary reply tag across two nodes, and spawned tag ports.

mod common;

use std::time::Duration;

use aemp::wire::Framing;
use aemp::{NO_CALLBACK, Node, Packet, PortBehaviour, Rcv, RcvError};
use common::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;

async fn node(id: &str, framings: &[Framing]) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .framings(framings.iter().copied())
        .init_fn("Test::tags", |ctx, args| {
            let back = args
                .first()
                .and_then(Value::as_str)
                .ok_or("Test::tags needs a port")?
                .to_owned();
            // registered through the context during init, and by the
            // returned behaviour
            let b = back.clone();
            ctx.rcv("early", move |ctx, msg| {
                ctx.snd(&b, &("early", msg.values()?))?;
                Ok(())
            });
            Ok(PortBehaviour::rcv(Rcv::new().tag(
                "late",
                move |ctx, msg| {
                    ctx.snd(&back, &("late", msg.values()?))?;
                    Ok(())
                },
            )))
        })
        .start()
        .await
        .expect("node starts")
}

async fn two(framing: Framing) -> (Node, Node) {
    let a = node("a", &[framing]).await;
    let b = node("b", &[framing]).await;
    tokio::time::timeout(WAIT, b.connect(a.listen_addrs()[0].to_string()))
        .await
        .expect("connects in time")
        .expect("connects");
    (a, b)
}

/// A callback that forwards `(label, message values)` to `out`.
fn forward(
    out: &aemp::PortId,
    label: &'static str,
) -> impl FnMut(&aemp::PortContext, Packet) -> Result<(), aemp::HandlerError> + Send + 'static {
    let out = out.clone();
    move |ctx, msg| {
        ctx.snd(&out, &(label, msg.values()?))?;
        Ok(())
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Packet>) -> (String, Value) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within the wait")
        .expect("channel open")
        .decode()
        .expect("(label, values)")
}

async fn nothing(rx: &mut mpsc::UnboundedReceiver<Packet>) {
    if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        panic!("unexpected message {:?}", p.values());
    }
}

#[actix_rt::test]
async fn tags_get_the_rest_and_the_default_the_whole_message() {
    let n = node("n", &Framing::DEFAULT).await;
    let (out, mut rx) = n.port_channel();
    let p = n.port_rcv(
        Rcv::new()
            .tag("add", forward(&out, "add"))
            .tag("5", forward(&out, "five"))
            .tag("", forward(&out, "null"))
            .default(forward(&out, "default")),
    );
    n.snd(&p, &json!(["add", 1, 2])).unwrap();
    assert_eq!(next(&mut rx).await, ("add".into(), json!([1, 2])));
    // a number matches its decimal text, as Perl stringifies it
    n.snd(&p, &json!([5, "x"])).unwrap();
    assert_eq!(next(&mut rx).await, ("five".into(), json!(["x"])));
    n.snd(&p, &json!([null])).unwrap();
    assert_eq!(next(&mut rx).await, ("null".into(), json!([])));
    // no match, a non-scalar first element, an empty message: the default
    n.snd(&p, &json!(["mul", 1, 2])).unwrap();
    assert_eq!(
        next(&mut rx).await,
        ("default".into(), json!(["mul", 1, 2]))
    );
    n.snd(&p, &json!([["add"], 1])).unwrap();
    assert_eq!(next(&mut rx).await, ("default".into(), json!([["add"], 1])));
    n.snd(&p, &json!([])).unwrap();
    assert_eq!(next(&mut rx).await, ("default".into(), json!([])));
    n.shutdown();
}

#[actix_rt::test]
async fn a_port_without_callback_dies_of_an_unmatched_message() {
    let n = node("n", &Framing::DEFAULT).await;
    let (out, mut rx) = n.port_channel();
    let p = n.port_bare();
    n.rcv(&p, "ok", forward(&out, "ok")).unwrap();
    let (report, mut reasons) = reporter();
    let _mon = n.mon(&p, report);
    n.snd(&p, &("ok", 1)).unwrap();
    assert_eq!(next(&mut rx).await, ("ok".into(), json!([1])));
    n.snd(&p, &("other",)).unwrap();
    let r = reason(&mut reasons).await;
    assert_eq!(r[0], "die", "{r:?}");
    assert!(r[1].as_str().unwrap().starts_with(NO_CALLBACK), "{r:?}");
    assert!(!n.port_exists(&p));
    n.shutdown();
}

#[actix_rt::test]
async fn a_tags_only_port_ignores_unmatched_messages() {
    let n = node("n", &Framing::DEFAULT).await;
    let (out, mut rx) = n.port_channel();
    let p = n.port_rcv(Rcv::new().tag("ok", forward(&out, "ok")));
    let (report, mut reasons) = reporter();
    let _mon = n.mon(&p, report);
    for m in [json!(["nope"]), json!([[1]]), json!([]), json!([1])] {
        n.snd(&p, &m).unwrap();
    }
    n.snd(&p, &("ok",)).unwrap();
    assert_eq!(next(&mut rx).await, ("ok".into(), json!([])));
    assert!(n.port_exists(&p));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), reasons.recv())
            .await
            .is_err()
    );
    n.shutdown();
}

#[actix_rt::test]
async fn failing_and_panicking_callbacks_kill_the_port_with_die() {
    let n = node("n", &Framing::DEFAULT).await;
    let p = n.port_rcv(
        Rcv::new()
            .tag("fail", |_, _| Err("tag failed".into()))
            .tag("panic", |_, _| panic!("tag panicked")),
    );
    let q = n.port_bare();
    n.rcv_default(&q, |_, _| Err("default failed\n".into()))
        .unwrap();
    for (port, msg, text) in [
        (&p, "fail", "tag failed"),
        (&q, "whatever", "default failed"),
    ] {
        let (report, mut reasons) = reporter();
        let _mon = n.mon(port, report);
        n.snd(port, &(msg,)).unwrap();
        assert_eq!(reason(&mut reasons).await, vec![json!("die"), json!(text)]);
    }
    let p = n.port_rcv(Rcv::new().tag("panic", |_, _| panic!("tag panicked")));
    let (report, mut reasons) = reporter();
    let _mon = n.mon(&p, report);
    n.snd(&p, &("panic",)).unwrap();
    assert_eq!(
        reason(&mut reasons).await,
        vec![json!("die"), json!("tag panicked")]
    );
    n.shutdown();
}

#[actix_rt::test]
async fn tags_change_from_outside_and_port_fn_keeps_its_handler_as_default() {
    let n = node("n", &Framing::DEFAULT).await;
    let (out, mut rx) = n.port_channel();
    let p = n.port_fn(forward(&out, "default"));
    n.rcv(&p, "t", forward(&out, "t1")).unwrap();
    n.snd(&p, &("t", 1)).unwrap();
    assert_eq!(next(&mut rx).await, ("t1".into(), json!([1])));
    n.rcv(&p, "t", forward(&out, "t2")).unwrap(); // replaced
    n.snd(&p, &("t", 2)).unwrap();
    assert_eq!(next(&mut rx).await, ("t2".into(), json!([2])));
    assert_eq!(n.unrcv(&p, "t"), Ok(true));
    assert_eq!(n.unrcv(&p, "t"), Ok(false));
    n.snd(&p, &("t", 3)).unwrap();
    assert_eq!(next(&mut rx).await, ("default".into(), json!(["t", 3])));
    n.rcv_default(&p, forward(&out, "new default")).unwrap();
    n.snd(&p, &("t", 4)).unwrap();
    assert_eq!(next(&mut rx).await, ("new default".into(), json!(["t", 4])));

    // where rcv cannot be used
    assert!(matches!(
        n.rcv(&out, "t", |_, _| Ok(())),
        Err(RcvError::NotMatching(_))
    ));
    assert!(matches!(
        n.rcv(&"elsewhere#x".into(), "t", |_, _| Ok(())),
        Err(RcvError::NotLocal(_))
    ));
    let gone = n.port_bare();
    n.kil(&gone, Vec::new()).unwrap();
    assert!(matches!(n.unrcv(&gone, "t"), Err(RcvError::NoSuchPort(_))));
    n.shutdown();
}

#[actix_rt::test]
async fn a_callback_may_replace_or_remove_itself() {
    let n = node("n", &Framing::DEFAULT).await;
    let (out, mut rx) = n.port_channel();
    let o = out.clone();
    let p = n.port_rcv(
        Rcv::new()
            .tag("swap", move |ctx, _| {
                ctx.rcv("swap", forward(&o, "swapped"));
                Ok(())
            })
            .tag("once", |ctx, _| {
                ctx.unrcv("once");
                Ok(())
            })
            .default(forward(&out, "default")),
    );
    n.snd(&p, &("swap",)).unwrap();
    n.snd(&p, &("swap", 1)).unwrap();
    assert_eq!(next(&mut rx).await, ("swapped".into(), json!([1])));
    n.snd(&p, &("once",)).unwrap();
    n.snd(&p, &("once", 2)).unwrap();
    assert_eq!(next(&mut rx).await, ("default".into(), json!(["once", 2])));
    nothing(&mut rx).await;
    n.shutdown();
}

/// The temporary reply tag (MP.pm 393–397) between two nodes, over each
/// framing (storable and CBOR frames are transcoded to JSON on arrival,
/// so `Packet::tag` sees JSON either way).
#[actix_rt::test]
async fn temporary_reply_tags_between_two_nodes() {
    for framing in Framing::ALL {
        let (a, b) = two(framing).await;
        assert_eq!(b.send_framing("a"), Some(framing));
        // on a: answers ["ping", reply_port, reply_tag, n] with [reply_tag, n * 10]
        let server = a.port_rcv(Rcv::new().tag("ping", |ctx, msg| {
            let (port, tag, n): (String, String, i64) = msg.decode()?;
            ctx.snd(&port, &(tag, n * 10))?;
            Ok(())
        }));
        // on b: each "ask" registers a one-off reply tag
        let (out, mut rx) = b.port_channel();
        let o = out.clone();
        let client = b.port_rcv(
            Rcv::new()
                .tag("ask", move |ctx, msg| {
                    let (n,): (i64,) = msg.decode()?;
                    let tag = format!("reply.{n}");
                    let (t, o) = (tag.clone(), o.clone());
                    ctx.rcv(tag.clone(), move |ctx, reply| {
                        assert!(ctx.unrcv(&t));
                        ctx.snd(&o, &("reply", reply.values()?))?;
                        Ok(())
                    });
                    ctx.snd(&server, &("ping", ctx.port(), tag, n))?;
                    Ok(())
                })
                .default(forward(&out, "default")),
        );
        b.snd(&client, &("ask", 1)).unwrap();
        b.snd(&client, &("ask", 2)).unwrap();
        let mut got = vec![next(&mut rx).await, next(&mut rx).await];
        got.sort_by_key(|(_, v)| v.to_string());
        assert_eq!(
            got,
            [
                ("reply".to_owned(), json!([10])),
                ("reply".to_owned(), json!([20]))
            ],
            "{framing:?}"
        );
        // the tag is gone: a late second reply goes to the default
        a.snd(&client, &("reply.1", 99)).unwrap();
        assert_eq!(
            next(&mut rx).await,
            ("default".into(), json!(["reply.1", 99]))
        );
        a.shutdown();
        b.shutdown();
    }
}

#[actix_rt::test]
async fn a_remotely_spawned_tag_port_dispatches_and_ignores_unknown_tags() {
    let (a, b) = two(Framing::Json).await;
    let (out, mut rx) = b.port_channel();
    let port = b.spawn("a", "Test::tags", &(&out,)).unwrap();
    let (report, mut reasons) = reporter();
    let _mon = b.mon(&port, report);
    b.snd(&port, &("unknown", 1)).unwrap();
    b.snd(&port, &("early", 1)).unwrap();
    b.snd(&port, &("late", 2)).unwrap();
    assert_eq!(next(&mut rx).await, ("early".into(), json!([1])));
    assert_eq!(next(&mut rx).await, ("late".into(), json!([2])));
    assert!(a.port_exists(&port));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), reasons.recv())
            .await
            .is_err()
    );
    // changed from outside on its node
    a.unrcv(&port, "early").unwrap();
    b.snd(&port, &("early", 3)).unwrap();
    b.snd(&port, &("late", 4)).unwrap();
    assert_eq!(next(&mut rx).await, ("late".into(), json!([4])));
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn rcv_on_a_local_spawn_works_while_its_init_runs() {
    // the init waits until the test has called rcv on the spawned port
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let n = Node::builder()
        .node_id("pend")
        .init_fn("Test::slow_init", move |_, args| {
            let back = args
                .first()
                .and_then(Value::as_str)
                .ok_or("needs a port")?
                .to_owned();
            go_rx
                .lock()
                .map_err(|_| "poisoned")?
                .recv_timeout(WAIT)
                .map_err(|_| "not released")?;
            Ok(PortBehaviour::rcv(Rcv::new().tag(
                "from_init",
                move |ctx, _| {
                    ctx.snd(&back, &("from_init",))?;
                    Ok(())
                },
            )))
        })
        .start()
        .await
        .unwrap();
    let (out, mut rx) = n.port_channel();
    let port = n.spawn(n.id(), "Test::slow_init", &(&out,)).unwrap();
    // the init has not returned (it waits for go): rcv still works
    let o = out.clone();
    n.rcv(&port, "from_outside", move |ctx, _| {
        ctx.snd(&o, &("from_outside",))?;
        Ok(())
    })
    .unwrap();
    n.snd(&port, &("from_outside",)).unwrap();
    n.snd(&port, &("from_init",)).unwrap();
    go_tx.send(()).unwrap();
    assert_eq!(recv(&mut rx).await.tag().as_deref(), Some("from_outside"));
    assert_eq!(recv(&mut rx).await.tag().as_deref(), Some("from_init"));
    // the port's own callbacks stay usable from outside
    assert_eq!(n.unrcv(&port, "from_outside"), Ok(true));
    n.shutdown();
}

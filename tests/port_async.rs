//! Async port code and work a port starts (issue 12 item 3): async
//! handlers and tag callbacks keep message order while they await; their
//! failures and panics kill the port; the port's death ends what is still
//! running. Tasks, timers and intervals started for a port run in its
//! context (a failure kills it); their `_linked` variants also end with it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aemp::{Node, PortBehaviour, Rcv};
use common::{SECRET, WAIT, addr_of, assert_silent, listening_node, recv};
use serde_json::json;

async fn node(id: &str) -> Node {
    Node::builder().node_id(id).start().await.unwrap()
}

async fn two_nodes(a: &str, b: &str) -> (Node, Node) {
    let a = listening_node(a).await;
    let b = Node::builder()
        .node_id(b)
        .secret(SECRET)
        .seed(addr_of(&a))
        .start()
        .await
        .unwrap();
    b.wait_node_up(a.id(), WAIT).await.unwrap();
    (a, b)
}

#[actix_rt::test]
async fn an_async_handler_keeps_the_order_while_it_awaits_a_remote_cal() {
    let (a, b) = two_nodes("oa", "ob").await;
    // on a: answers after a delay that shrinks with n, so answers would
    // overtake each other if b's handler did not wait for each
    let slow = a.port_async(|ctx, msg| async move {
        let (n, reply): (u64, String) = msg.decode()?;
        tokio::time::sleep(Duration::from_millis(40 - 4 * n)).await;
        ctx.snd(&reply, &(n * 10,))?;
        Ok(())
    });
    let (out, mut rx) = b.port_channel();
    let asker = b.port_async(move |ctx, msg| {
        let (slow, out) = (slow.clone(), out.clone());
        async move {
            let (n,): (u64,) = msg.decode()?;
            let answer = ctx.node().cal(&slow, &(n,), Some(WAIT)).await?;
            let (v,): (u64,) = answer.decode()?;
            ctx.snd(&out, &(n, v, ctx.src_node()))?;
            Ok(())
        }
    });
    for n in 0..8u64 {
        b.snd(&asker, &(n,)).unwrap();
    }
    for n in 0..8u64 {
        let (got, v, src): (u64, u64, Option<String>) = recv(&mut rx).await.decode().unwrap();
        assert_eq!((got, v), (n, n * 10));
        // $SRCNODE is the message's, across the await
        assert_eq!(src.as_deref(), Some("ob"));
    }
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn async_tag_callbacks_and_sync_ones_share_one_order() {
    let n = node("mix").await;
    let (out, mut rx) = n.port_channel();
    let o = out.clone();
    let port = n.port_rcv(
        Rcv::new()
            .tag_async("slow", move |ctx, msg| {
                let o = o.clone();
                async move {
                    let (i,): (u32,) = msg.decode()?;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ctx.snd(&o, &("slow", i))?;
                    Ok(())
                }
            })
            .tag("fast", move |ctx, msg| {
                let (i,): (u32,) = msg.decode()?;
                ctx.snd(&out, &("fast", i))?;
                Ok(())
            }),
    );
    for i in 0..6u32 {
        let tag = if i % 2 == 0 { "slow" } else { "fast" };
        n.snd(&port, &(tag, i)).unwrap();
    }
    for i in 0..6u32 {
        let (tag, got): (String, u32) = recv(&mut rx).await.decode().unwrap();
        assert_eq!(got, i);
        assert_eq!(tag, if i % 2 == 0 { "slow" } else { "fast" });
    }
    n.shutdown();
}

#[actix_rt::test]
async fn an_async_failure_or_panic_kills_the_port_and_drops_what_is_queued() {
    let n = node("af").await;
    for (what, want) in [("err", "async error"), ("panic", "async panic")] {
        let (out, mut rx) = n.port_channel();
        let port = n.port_async(move |ctx, msg| {
            let out = out.clone();
            async move {
                let (cmd,): (String,) = msg.decode()?;
                tokio::task::yield_now().await;
                match cmd.as_str() {
                    "err" => return Err("async error".into()),
                    "panic" => panic!("async panic"),
                    _ => ctx.snd(&out, &(cmd,))?,
                }
                Ok(())
            }
        });
        let death = n.mon_future(&port);
        n.snd(&port, &("ok",)).unwrap();
        n.snd(&port, &(what,)).unwrap();
        n.snd(&port, &("after",)).unwrap();
        let reason = tokio::time::timeout(WAIT, death).await.unwrap().unwrap();
        assert_eq!(reason, vec![json!("die"), json!(want)]);
        assert_eq!(recv(&mut rx).await.decode::<(String,)>().unwrap().0, "ok");
        assert_silent(&mut rx, Duration::from_millis(50)).await;
        assert!(!n.port_exists(&port));
    }
    n.shutdown();
}

#[actix_rt::test]
async fn killing_a_port_ends_its_running_async_callback_and_fires_the_monitor_at_once() {
    let (a, b) = two_nodes("ka", "kb").await;
    let started = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(AtomicUsize::new(0));
    let (s, f) = (started.clone(), finished.clone());
    let port = a.port_async(move |_, _| {
        let (s, f) = (s.clone(), f.clone());
        async move {
            s.notify_one();
            std::future::pending::<()>().await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let (cb, mut died) = common::reporter();
    b.mon(&port, cb).forget();
    a.snd(&port, &("hang",)).unwrap();
    a.snd(&port, &("queued",)).unwrap();
    tokio::time::timeout(WAIT, started.notified())
        .await
        .unwrap();
    // killed from another node while its callback hangs
    b.kil(&port, vec![json!("stop"), json!("now")]).unwrap();
    assert_eq!(
        common::reason(&mut died).await,
        vec![json!("stop"), json!("now")]
    );
    assert!(!a.port_exists(&port));
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn while_one_port_awaits_the_others_on_its_node_go_on() {
    // every handler port of a node runs on one runner: a port waiting in
    // an async callback must hold back its own messages only. Here the
    // waiting port is released by another port's message, sent after the
    // one it waits on, so a runner that blocked on it would never get there.
    let n = node("wo").await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let (out, mut rx) = n.port_channel();
    let (g, o) = (gate.clone(), out.clone());
    let waiter = n.port_async(move |ctx, msg| {
        let (g, o) = (g.clone(), o.clone());
        async move {
            let (i,): (u64,) = msg.decode()?;
            if i == 0 {
                g.notified().await;
            }
            ctx.snd(&o, &("waiter", i))?;
            Ok(())
        }
    });
    let (g, o) = (gate.clone(), out.clone());
    let opener = n.port_fn(move |ctx, msg| {
        let (i,): (u64,) = msg.decode()?;
        ctx.snd(&o, &("opener", i))?;
        if i == 2 {
            g.notify_one();
        }
        Ok(())
    });
    for i in 0..3u64 {
        n.snd(&waiter, &(i,)).unwrap();
    }
    for i in 0..3u64 {
        n.snd(&opener, &(i,)).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(recv(&mut rx).await.decode::<(String, u64)>().unwrap());
    }
    let of = |who: &str| -> Vec<u64> {
        seen.iter()
            .filter(|(w, _)| w == who)
            .map(|(_, i)| *i)
            .collect()
    };
    // the opener ran while the waiter waited; each port kept its order
    assert_eq!(
        seen[..3]
            .iter()
            .map(|(w, _)| w.as_str())
            .collect::<Vec<_>>(),
        ["opener"; 3]
    );
    assert_eq!(of("opener"), [0, 1, 2]);
    assert_eq!(of("waiter"), [0, 1, 2]);
    n.shutdown();
}

#[actix_rt::test]
async fn an_async_init_behaviour_and_node_rcv_async() {
    let n = Node::builder()
        .node_id("ai")
        .init_fn("T::echo", |_, _| {
            Ok(PortBehaviour::handler_async(|ctx, msg| async move {
                let (reply, v): (String, serde_json::Value) = msg.decode()?;
                tokio::task::yield_now().await;
                ctx.snd(&reply, &(v,))?;
                Ok(())
            }))
        })
        .start()
        .await
        .unwrap();
    let (out, mut rx) = n.port_channel();
    let echo = n.spawn(n.id(), "T::echo", &[(); 0]).unwrap();
    n.snd(&echo, &(&out, 1)).unwrap();
    n.snd(&echo, &(&out, 2)).unwrap();
    assert_eq!(recv(&mut rx).await.values().unwrap(), [json!(1)]);
    assert_eq!(recv(&mut rx).await.values().unwrap(), [json!(2)]);
    // a tag added from outside on the same port, async too
    let o = out.clone();
    n.rcv_async(&echo, "twice", move |ctx, msg| {
        let o = o.clone();
        async move {
            let (v,): (i64,) = msg.decode()?;
            tokio::task::yield_now().await;
            ctx.snd(&o, &(v * 2,))?;
            Ok(())
        }
    })
    .unwrap();
    n.snd(&echo, &("twice", 21)).unwrap();
    assert_eq!(recv(&mut rx).await.values().unwrap(), [json!(42)]);
    n.shutdown();
}

#[actix_rt::test]
async fn a_spawned_task_runs_for_its_port_and_outlives_it_unless_linked() {
    let n = node("st").await;
    let (out, mut rx) = n.port_channel();
    // two tasks, both waiting for a go; the port dies in between
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let (o, g) = (out.clone(), go_rx.clone());
    let (o2, g2) = (out.clone(), go_rx);
    let (ack, mut acks) = n.port_channel();
    let port = n.port_fn(move |ctx, _| {
        let (o, mut g) = (o.clone(), g.clone());
        ctx.spawn(move |ctx| async move {
            g.wait_for(|go| *go).await?;
            ctx.snd(&o, &("plain", ctx.port()))?;
            Ok(())
        });
        let (o2, mut g2) = (o2.clone(), g2.clone());
        ctx.spawn_linked(move |ctx| async move {
            g2.wait_for(|go| *go).await?;
            ctx.snd(&o2, &("linked", ctx.port()))?;
            Ok(())
        });
        ctx.snd(&ack, &("started",))?;
        Ok(())
    });
    let death = n.mon_future(&port);
    n.snd(&port, &("start",)).unwrap();
    n.snd(&port, &("second",)).unwrap();
    // both messages started their tasks; then the port dies
    recv(&mut acks).await;
    recv(&mut acks).await;
    n.kil(&port, vec![]).unwrap();
    tokio::time::timeout(WAIT, death).await.unwrap().unwrap();
    go_tx.send(true).unwrap();
    // the plain task of each message went on; the linked ones were cancelled
    for _ in 0..2 {
        let (kind, p): (String, String) = recv(&mut rx).await.decode().unwrap();
        assert_eq!((kind.as_str(), p.as_str()), ("plain", port.as_str()));
    }
    assert_silent(&mut rx, Duration::from_millis(50)).await;
    n.shutdown();
}

#[actix_rt::test]
async fn spawned_work_failing_or_panicking_kills_its_port() {
    let n = node("sf").await;
    type Start = fn(&aemp::PortContext);
    let cases: [(Start, serde_json::Value); 5] = [
        (
            |ctx| {
                ctx.spawn(|_| async { Err("task error".into()) });
            },
            json!("task error"),
        ),
        (
            |ctx| {
                ctx.spawn(|_| async {
                    tokio::task::yield_now().await;
                    panic!("task panic")
                });
            },
            json!("task panic"),
        ),
        (
            |ctx| {
                // panics while making its future
                ctx.spawn_linked(|_| -> std::future::Ready<Result<(), aemp::HandlerError>> {
                    panic!("maker panic")
                });
            },
            json!("maker panic"),
        ),
        (
            |ctx| {
                ctx.after(Duration::from_millis(5), |_| Err("timer error".into()));
            },
            json!("timer error"),
        ),
        (
            |ctx| {
                let mut left = 3;
                ctx.interval_linked(Duration::from_millis(2), move |_| {
                    left -= 1;
                    if left == 0 {
                        return Err("interval error".into());
                    }
                    Ok(())
                });
            },
            json!("interval error"),
        ),
    ];
    for (start, want) in cases {
        let port = n.port_fn(move |ctx, _| {
            start(ctx);
            Ok(())
        });
        let death = n.mon_future(&port);
        n.snd(&port, &("go",)).unwrap();
        let reason = tokio::time::timeout(WAIT, death).await.unwrap().unwrap();
        assert_eq!(reason, vec![json!("die"), want]);
    }
    n.shutdown();
}

#[actix_rt::test]
async fn timers_and_intervals_plain_and_linked() {
    let n = node("ti").await;
    let (out, mut rx) = n.port_channel();
    let (port, _prx) = n.port_channel();
    // an interval of a live port ticks until cancelled
    let o = out.clone();
    let mut i = 0;
    let ticking = n
        .peval(&port, move |ctx| {
            Ok(ctx.interval(Duration::from_millis(2), move |ctx| {
                i += 1;
                ctx.snd(&o, &("tick", i))?;
                Ok(())
            }))
        })
        .unwrap();
    for want in 1..=3 {
        let (_, got): (String, u32) = recv(&mut rx).await.decode().unwrap();
        assert_eq!(got, want);
    }
    ticking.cancel();
    assert!(ticking.is_cancelled());
    // drain what fired before the cancel took effect, then silence
    tokio::time::sleep(Duration::from_millis(20)).await;
    while rx.try_recv().is_ok() {}
    assert_silent(&mut rx, Duration::from_millis(30)).await;

    // timers: the plain one fires after its port died, the linked one not
    let (o1, o2) = (out.clone(), out.clone());
    let (plain, linked) = n
        .peval(&port, move |ctx| {
            Ok((
                ctx.after(Duration::from_millis(30), move |ctx| {
                    ctx.snd(&o1, &("plain after",))?;
                    Ok(())
                }),
                ctx.after_linked(Duration::from_millis(30), move |ctx| {
                    ctx.snd(&o2, &("linked after",))?;
                    Ok(())
                }),
            ))
        })
        .unwrap();
    n.kil(&port, vec![]).unwrap();
    assert_eq!(recv(&mut rx).await.tag().as_deref(), Some("plain after"));
    assert_silent(&mut rx, Duration::from_millis(50)).await;
    assert!(linked.is_cancelled());
    assert!(!plain.is_cancelled());

    // linked work for a port that is already dead never runs
    let o = out.clone();
    let t = n
        .peval(&port, move |ctx| {
            Ok(ctx.after_linked(Duration::ZERO, move |ctx| {
                ctx.snd(&o, &("never",))?;
                Ok(())
            }))
        })
        .unwrap();
    assert!(t.is_cancelled());
    assert_silent(&mut rx, Duration::from_millis(30)).await;
    n.shutdown();
}

#[actix_rt::test]
async fn work_linked_to_a_remote_port_ends_when_that_port_dies() {
    let (a, b) = two_nodes("la", "lb").await;
    let (remote, _rrx) = a.port_channel();
    let (out, mut rx) = b.port_channel();
    let o = out.clone();
    let mut i = 0;
    let task = b
        .peval(&remote, move |ctx| {
            Ok(ctx.interval_linked(Duration::from_millis(5), move |ctx| {
                i += 1;
                ctx.snd(&o, &("tick", i))?;
                Ok(())
            }))
        })
        .unwrap();
    assert_eq!(recv(&mut rx).await.tag().as_deref(), Some("tick"));
    a.kil(&remote, vec![]).unwrap();
    // the kil0 reaches b and fires the link
    common::until("the linked interval cancelled", || task.is_cancelled()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    while rx.try_recv().is_ok() {}
    assert_silent(&mut rx, Duration::from_millis(30)).await;
    a.shutdown();
    b.shutdown();
}

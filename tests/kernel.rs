//! The node protocol: node-port requests (exact reply shapes, seen by a
//! raw peer), spawn, kil and die, the four monitor forms, and cal.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;
use aemp::{CalError, Node, Packet, PortBehaviour, PortId, SendError, SpawnError};
use common::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A node with the test init functions: `Test::echo(back)` forwards every
/// message to `back`; `Test::fail` and `Test::panic` create no port.
async fn kernel_node(id: &str) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .init_fn("Test::echo", |_ctx, args| {
            let back = args
                .first()
                .and_then(Value::as_str)
                .ok_or("Test::echo needs a port")?
                .to_owned();
            Ok(PortBehaviour::handler(move |ctx, msg| {
                ctx.snd(&back, &msg.values()?)?;
                Ok(())
            }))
        })
        .init_fn("Test::fail", |_, _| Err("init failed on purpose".into()))
        .init_fn("Test::panic", |_, _| panic!("init panicked on purpose"))
        .start()
        .await
        .unwrap()
}

async fn no_reason(rx: &mut mpsc::UnboundedReceiver<Vec<Value>>, d: Duration) {
    if let Ok(Some(r)) = tokio::time::timeout(d, rx.recv()).await {
        panic!("the monitor fired: {r:?}");
    }
}

// ---------------------------------------------------------------- requests

#[actix_rt::test]
async fn informational_requests_have_the_reference_reply_shapes() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "info", "raw#r1", "a", 1])).await;
    assert_eq!(peer.recv().await, json!(["r1", "a", 1, "kern"]));
    peer.send(json!(["", "up_nodes", "raw#r2"])).await;
    assert_eq!(peer.recv().await, json!(["r2", "raw"]));
    peer.send(json!(["", "known_nodes", "raw#r3", "x"])).await;
    let known = peer.recv().await;
    assert_eq!(
        known.as_array().unwrap()[0..3],
        [json!("r3"), json!("x"), json!("kern")]
    );
    assert!(known.as_array().unwrap().contains(&json!("raw")));
    peer.send(json!(["", "time", "raw#r4", "t"])).await;
    let t = peer.recv().await;
    assert_eq!(t.as_array().unwrap()[0..2], [json!("r4"), json!("t")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((t[2].as_f64().unwrap() - now).abs() < 60.0, "{t}");
}

#[actix_rt::test]
async fn snd_and_snd_multiple_relay() {
    let node = kernel_node("kern").await;
    let (_local, mut rx) = node.port_channel_named("local").unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "snd", "raw#a", 1])).await;
    assert_eq!(peer.recv().await, json!(["a", 1]));
    peer.send(json!([
        "",
        "snd_multiple",
        ["raw#b", 2],
        ["raw#c", 3],
        ["kern#local", "hi"]
    ]))
    .await;
    assert_eq!(peer.recv().await, json!(["b", 2]));
    assert_eq!(peer.recv().await, json!(["c", 3]));
    assert_eq!(recv(&mut rx).await.values().unwrap(), vec![json!("hi")]);
}

#[actix_rt::test]
async fn eval_is_refused_with_an_error_where_perl_puts_its_error() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "eval", "die 'x'", "raw#e", "tag"]))
        .await;
    assert_eq!(
        peer.recv().await,
        json!(["e", "tag", aemp::kernel::EVAL_REFUSED])
    );
    // no reply port: no reply
    peer.send(json!(["", "eval", "1+1"])).await;
    peer.assert_silent(Duration::from_millis(300)).await;
}

#[actix_rt::test]
async fn malformed_and_unknown_requests_are_ignored_and_the_connection_stays() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    for bad in [
        json!(["", "mon1"]),
        json!(["", "mon1", null]),
        json!(["", "mon0", [1]]),
        json!(["", "kil0"]),
        json!(["", "kil", {}]),
        json!(["", "snd"]),
        json!(["", "snd_multiple", 5, [], [null]]),
        json!(["", "info"]),
        json!(["", "info", {"a": 1}]),
        json!(["", 7]),
        json!(["", null]),
        json!(["", "No::such::function", 1]),
        json!(["", "nosuchtag"]),
        json!(["", "AnyEvent::MP::_spawn"]),
        json!(["", "AnyEvent::MP::_spawn", "p", 5]),
        json!(["", "devnull", 1]),
        json!(["", ""]),
        json!([""]),
        json!(["", "Test::echo", "raw#x"]), // an init function called plainly
    ] {
        peer.send(bad).await;
    }
    peer.send(json!(["", "info", "raw#ok"])).await;
    assert_eq!(peer.recv().await, json!(["ok", "kern"]));
    assert!(node.node_is_up("raw"));
}

#[actix_rt::test]
async fn the_node_port_cannot_be_killed() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "kil", ""])).await;
    peer.send(json!(["", "info", "raw#ok"])).await;
    assert_eq!(peer.recv().await, json!(["ok", "kern"]));
    assert!(matches!(
        node.kil("kern", vec![]),
        Err(SendError::NodePort(_))
    ));
    assert!(matches!(
        node.kil("raw#", vec![]),
        Err(SendError::NodePort(_))
    ));
}

#[actix_rt::test]
async fn plain_functions_are_called_with_their_arguments() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let node = Node::builder()
        .node_id("kern")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .plain_fn("Test::record", move |node, args| {
            let _ = tx.send((node.id().to_owned(), args));
            Ok(())
        })
        .start()
        .await
        .unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "Test::record", 1, "two", [3]])).await;
    let (id, args) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, "kern");
    assert_eq!(args, vec![json!(1), json!("two"), json!([3])]);
    assert!(node.register_fn("nocolons", |_, _| Ok(())).is_err());
}

// ------------------------------------------------------------- mon1 / kil0

#[actix_rt::test]
async fn mon1_of_a_missing_port_is_answered_with_no_such_port() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "mon1", "nosuch"])).await;
    assert_eq!(
        peer.recv().await,
        json!([
            "",
            "kil0",
            "nosuch",
            "no_such_port",
            "cannot monitor nonexistent port",
            "kern#nosuch"
        ])
    );
}

#[actix_rt::test]
async fn a_monitored_port_that_dies_sends_kil0_with_its_reason() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;

    // a handler that fails: ("die", message)
    let p = node.port_fn(|_, _| Err("boom".into()));
    peer.send(json!(["", "mon1", p.name()])).await;
    peer.send(json!([p.name(), "x"])).await;
    assert_eq!(
        peer.recv().await,
        json!(["", "kil0", p.name(), "die", "boom"])
    );

    // killed by the peer with a reason
    let (q, _rq) = node.port_channel();
    peer.send(json!(["", "mon1", q.name()])).await;
    peer.send(json!(["", "kil", q.name(), "killed", "by raw"]))
        .await;
    assert_eq!(
        peer.recv().await,
        json!(["", "kil0", q.name(), "killed", "by raw"])
    );
    assert!(!node.port_exists(&q));

    // a normal exit notifies too, with no reason
    let (r, _rr) = node.port_channel();
    peer.send(json!(["", "mon1", r.name()])).await;
    peer.send(json!(["", "kil", r.name()])).await;
    assert_eq!(peer.recv().await, json!(["", "kil0", r.name()]));

    // mon0 withdraws the monitor: no kil0
    let (s, _rs) = node.port_channel();
    peer.send(json!(["", "mon1", s.name()])).await;
    peer.send(json!(["", "mon0", s.name()])).await;
    peer.send(json!(["", "kil", s.name()])).await;
    peer.assert_silent(Duration::from_millis(300)).await;
}

#[actix_rt::test]
async fn shutdown_kills_every_port_with_the_shutdown_reason() {
    // MP.pm 618: a kill-form monitor acts only on a reason, and the kil0
    // uses the remote monitors up (Kernel.pm 606-611): the default
    // shutdown must carry one.
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    let (p, _rp) = node.port_channel();
    let (q, _rq) = node.port_channel();
    peer.send(json!(["", "mon1", q.name()])).await;
    sync_raw(&mut peer).await;
    let (cb, mut r) = reporter();
    node.mon(&p, cb).forget();
    let expected = vec![json!("shutdown"), json!("node kern is shutting down")];
    assert_eq!(node.shutdown_reason(), expected);
    node.shutdown();
    assert_eq!(reason(&mut r).await, expected);
    assert_eq!(
        peer.recv().await,
        json!([
            "",
            "kil0",
            q.name(),
            "shutdown",
            "node kern is shutting down"
        ])
    );
}

/// Makes sure the node handled what the raw peer sent before: a request
/// whose reply comes after.
async fn sync_raw(peer: &mut RawPeer) {
    peer.send(json!(["", "snd", "raw#sync", "s"])).await;
    assert_eq!(peer.recv().await, json!(["sync", "s"]));
}

#[actix_rt::test]
async fn remote_monitors_are_reference_counted() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    let before = node.remote_monitor_count(); // Global watches its port on raw
    let m1 = node.mon("raw#p", |_| {});
    let m2 = node.mon("raw#p", |_| {});
    assert_eq!(peer.recv().await, json!(["", "mon1", "p"]));
    m1.unmon();
    peer.assert_silent(Duration::from_millis(200)).await;
    m2.unmon();
    assert_eq!(peer.recv().await, json!(["", "mon0", "p"]));
    assert_eq!(node.remote_monitor_count(), before);

    // kil0 fires every monitor of that port once
    let (cb1, mut r1) = reporter();
    let (cb2, mut r2) = reporter();
    node.mon("raw#q", cb1).forget();
    let guard = node.mon("raw#q", cb2).guard();
    assert_eq!(peer.recv().await, json!(["", "mon1", "q"]));
    peer.send(json!(["", "kil0", "q", "why", 1])).await;
    assert_eq!(reason(&mut r1).await, vec![json!("why"), json!(1)]);
    assert_eq!(reason(&mut r2).await, vec![json!("why"), json!(1)]);
    drop(guard); // fired already: no mon0
    // monitoring a whole node sends nothing
    node.mon("raw", |_| {}).forget();
    peer.assert_silent(Duration::from_millis(300)).await;
}

#[actix_rt::test]
async fn a_lost_connection_fires_transport_error_and_drops_the_peers_mon1s() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    let (lp, _rx) = node.port_channel_named("watched").unwrap();
    peer.send(json!(["", "mon1", "watched"])).await;
    let (cb1, mut port_mon) = reporter();
    let (cb2, mut node_mon) = reporter();
    node.mon("raw#p", cb1).forget();
    node.mon("raw", cb2).forget();
    assert_eq!(peer.recv().await, json!(["", "mon1", "p"]));
    // make sure our mon1 of "watched" was processed before cutting
    peer.send(json!(["", "info", "raw#sync"])).await;
    peer.recv().await;
    drop(peer);
    assert_peer_gone(&reason(&mut port_mon).await, "raw");
    assert_peer_gone(&reason(&mut node_mon).await, "raw");
    // the dead connection's mon1 is gone: a new "raw" hears nothing of it
    let mut peer = RawPeer::connect(&node, "raw").await;
    node.kil(&lp, vec![json!("bye")]).unwrap();
    peer.assert_silent(Duration::from_millis(300)).await;
}

// ------------------------------------------------------------------- spawn

#[actix_rt::test]
async fn spawn_on_another_node_creates_the_port_there() {
    let a = kernel_node("a").await;
    let b = kernel_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    let (back, mut rx) = b.port_channel();
    let (before, _r) = b.port_channel();
    let p = b.spawn("a", "Test::echo", &(&back,)).unwrap();
    assert_eq!(p.node(), "a");
    // the counter is shared with port() (the next letter), the prefix is
    // the spawn one
    let (_, cb) = before.name().split_once('.').unwrap();
    let (prefix, cp) = p.name().split_once('.').unwrap();
    assert_eq!(cb.len(), 1);
    assert_eq!(cp.as_bytes()[0], cb.as_bytes()[0] + 1);
    assert_ne!(prefix, before.name().split_once('.').unwrap().0);
    let (cb, mut died) = reporter();
    b.mon(&p, cb).forget();
    b.snd(&p, &("hello", 1)).unwrap();
    assert_eq!(
        recv(&mut rx).await.values().unwrap(),
        vec![json!("hello"), json!(1)]
    );
    assert!(a.port_exists(&p));
    b.kil(&p, vec![json!("done")]).unwrap();
    assert_eq!(reason(&mut died).await, vec![json!("done")]);
    until("the spawned port to be gone", || !a.port_exists(&p)).await;
    // a port id also names the target node
    let q = b.spawn("a#whatever", "Test::echo", &(&back,)).unwrap();
    assert_eq!(q.node(), "a");
}

#[actix_rt::test]
async fn a_failed_spawn_leaves_no_port_and_the_monitor_hears_no_such_port() {
    let a = kernel_node("a").await;
    let b = kernel_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    for func in ["No::such_init", "Test::fail", "Test::panic"] {
        let p = b
            .spawn("a", func, &[(); 0])
            .unwrap_or_else(|e| panic!("{func}: {e}"));
        let (cb, mut died) = reporter();
        b.mon(&p, cb).forget();
        assert_eq!(
            reason(&mut died).await,
            vec![
                json!("no_such_port"),
                json!("cannot monitor nonexistent port"),
                json!(p.as_str())
            ],
            "{func}"
        );
        assert!(!a.port_exists(&p));
    }
    assert!(matches!(
        b.spawn("a", "noqualified", &[(); 0]),
        Err(SpawnError::InitName(_))
    ));
    assert!(matches!(
        b.spawn("a", "Test::echo", &"notarray"),
        Err(SpawnError::Args(_))
    ));
}

#[actix_rt::test]
async fn spawning_over_an_existing_port_is_refused() {
    let node = kernel_node("kern").await;
    let (taken, mut rx) = node.port_channel_named("taken").unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    // Perl would silently hijack the port
    peer.send(json!([
        "",
        "AnyEvent::MP::_spawn",
        "taken",
        "Test::echo",
        "raw#stolen"
    ]))
    .await;
    peer.send(json!(["taken", "still mine"])).await;
    assert_eq!(
        recv(&mut rx).await.values().unwrap(),
        vec![json!("still mine")]
    );
    peer.assert_silent(Duration::from_millis(200)).await;
    assert!(node.port_exists(&taken));
}

#[actix_rt::test]
async fn a_spawned_port_exists_before_the_next_packet_is_routed() {
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    // spawn, monitor and first message in one segment, as Perl sends them
    let segment = [
        json!(["", "AnyEvent::MP::_spawn", "sp1", "Test::echo", "raw#back"]),
        json!(["", "mon1", "sp1"]),
        json!(["sp1", "hello"]),
        json!(["", "kil", "sp1", "stop"]),
        json!(["sp1", "after the kil"]),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect::<String>();
    tokio::io::AsyncWriteExt::write_all(&mut peer.stream, segment.as_bytes())
        .await
        .unwrap();
    assert_eq!(peer.recv().await, json!(["back", "hello"]));
    // the kil took effect before the packet after it
    assert_eq!(peer.recv().await, json!(["", "kil0", "sp1", "stop"]));
    peer.assert_silent(Duration::from_millis(300)).await;
}

/// A node whose init `Test::watched(back, victim)` monitors its own,
/// still pending, port: a callback monitor reporting to `back` and a
/// kill-form one killing `victim`; the port dies on `["die"]`. With a
/// third argument the init then fails.
async fn watched_node(id: &str) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .init_fn("Test::watched", |ctx, args| {
            let (back, victim) = match (args.first(), args.get(1)) {
                (Some(Value::String(b)), Some(Value::String(v))) => (b.clone(), v.clone()),
                _ => return Err("Test::watched needs two ports".into()),
            };
            let node = ctx.node().clone();
            ctx.node()
                .mon(ctx.port(), move |reason| {
                    let _ = node.snd(&back, &("self_mon", reason));
                })
                .forget();
            ctx.node()
                .mon_kil(ctx.port(), &PortId::from(victim.as_str()))
                .forget();
            if args.len() > 2 {
                return Err("init failed after monitoring".into());
            }
            Ok(PortBehaviour::handler(|_, msg| {
                if msg.values()?.first() == Some(&json!("die")) {
                    return Err("asked to die".into());
                }
                Ok(())
            }))
        })
        .start()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn monitors_a_remote_spawns_init_set_on_its_pending_port_fire_later() {
    // seen against Perl for issue 12: `spawn` of an init that monitors its
    // own port, `mon` from the spawner right after the spawn, then the
    // port dies — all three monitors hear its reason
    let a = watched_node("a").await;
    let b = watched_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    let (back, mut rx) = b.port_channel();
    let victim = b.port_fn(|_, _| Ok(()));
    let (cb, mut victim_died) = reporter();
    b.mon(&victim, cb).forget();
    let p = b.spawn("a", "Test::watched", &(&back, &victim)).unwrap();
    let (cb, mut died) = reporter();
    b.mon(&p, cb).forget();
    b.snd(&p, &("die",)).unwrap();
    let want = vec![json!("die"), json!("asked to die")];
    assert_eq!(reason(&mut died).await, want);
    assert_eq!(reason(&mut victim_died).await, want);
    assert_eq!(
        recv(&mut rx).await.values().unwrap(),
        vec![json!("self_mon"), json!(want)]
    );

    // an init that fails after monitoring its port: the monitors it
    // queued fire with no_such_port, and the port never existed
    let victim = b.port_fn(|_, _| Ok(()));
    let (cb, mut victim_died) = reporter();
    b.mon(&victim, cb).forget();
    let q = b
        .spawn("a", "Test::watched", &(&back, &victim, "fail"))
        .unwrap();
    let gone = vec![
        json!("no_such_port"),
        json!("cannot monitor nonexistent port"),
        json!(q.as_str()),
    ];
    assert_eq!(reason(&mut victim_died).await, gone);
    assert_eq!(
        recv(&mut rx).await.values().unwrap(),
        vec![json!("self_mon"), json!(gone)]
    );
    assert!(!a.port_exists(&q));
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn a_local_spawn_runs_its_init_only_after_spawn_returns() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let node = Node::builder()
        .node_id("solo")
        .init_fn("Test::flagged", move |_, _| {
            flag.store(true, Ordering::SeqCst);
            Ok(PortBehaviour::handler(|ctx, msg| {
                let (back,): (String,) = msg.decode()?;
                ctx.snd(back, &("pong",))?;
                Ok(())
            }))
        })
        .start()
        .await
        .unwrap();
    let (back, mut rx) = node.port_channel();
    let p = node.spawn("solo", "Test::flagged", &[(); 0]).unwrap();
    assert!(!ran.load(Ordering::SeqCst), "init ran inside spawn");
    // messages sent at once wait for the init
    node.snd(&p, &(&back,)).unwrap();
    assert_eq!(recv(&mut rx).await.values().unwrap(), vec![json!("pong")]);
    assert!(ran.load(Ordering::SeqCst));
    // a failing local init: its monitor hears no_such_port
    let q = node.spawn("solo", "No::such", &[(); 0]).unwrap();
    let (cb, mut died) = reporter();
    node.mon(&q, cb).forget();
    assert_eq!(reason(&mut died).await[0], json!("no_such_port"));
}

// ------------------------------------------------------------- kil and die

#[actix_rt::test]
async fn handlers_that_fail_or_panic_die() {
    let node = kernel_node("kern").await;
    let failing = node.port_fn(|_, _| Err("it failed\n".into()));
    let panicking = node.port_fn(|_, _| panic!("it panicked"));
    let (cb1, mut r1) = reporter();
    let (cb2, mut r2) = reporter();
    node.mon(&failing, cb1).forget();
    node.mon(&panicking, cb2).forget();
    node.snd(&failing, &(1,)).unwrap();
    node.snd(&panicking, &(1,)).unwrap();
    assert_eq!(
        reason(&mut r1).await,
        vec![json!("die"), json!("it failed")]
    );
    assert_eq!(
        reason(&mut r2).await,
        vec![json!("die"), json!("it panicked")]
    );
    assert!(!node.port_exists(&failing) && !node.port_exists(&panicking));
    // the node keeps working
    let (p, mut rx) = node.port_channel();
    node.snd(&p, &("ok",)).unwrap();
    recv(&mut rx).await;
}

struct Quitter;

impl Actor for Quitter {
    type Context = Context<Self>;
}

impl Handler<Packet> for Quitter {
    type Result = ();
    fn handle(&mut self, _: Packet, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix_rt::test]
async fn an_actor_that_stops_by_itself_is_a_normal_exit() {
    let node = kernel_node("kern").await;
    let p = node.port(Quitter.start().recipient());
    let (cb, mut r) = reporter();
    node.mon(&p, cb).forget();
    node.snd(&p, &("stop",)).unwrap();
    assert_eq!(reason(&mut r).await, Vec::<Value>::new());
    assert!(!node.port_exists(&p));
    // a dropped channel receiver too
    let (q, rx) = node.port_channel();
    let (cb, mut r) = reporter();
    node.mon(&q, cb).forget();
    drop(rx);
    assert_eq!(reason(&mut r).await, Vec::<Value>::new());
}

#[actix_rt::test]
async fn a_killed_port_is_gone_at_once() {
    let node = kernel_node("kern").await;
    let (p, mut rx) = node.port_channel();
    node.kil(&p, vec![]).unwrap();
    assert!(!node.port_exists(&p));
    node.snd(&p, &("late",)).unwrap(); // dropped, as for a missing port
    assert!(rx.recv().await.is_none());
    // killing what does not exist is fine
    node.kil(&p, vec![json!("again")]).unwrap();
}

// ---------------------------------------------------------------- monitors

/// A round trip from `watcher` to node `a`: whatever `watcher` sent to
/// `a` before has been handled there.
async fn sync(watcher: &Node) {
    watcher.cal("a", &("info",), Some(WAIT)).await.unwrap();
}

#[actix_rt::test]
async fn the_four_monitor_forms_locally_and_across_nodes() {
    let a = kernel_node("a").await;
    let b = kernel_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    for (watcher, name) in [(&a, "local"), (&b, "remote")] {
        // callback: gets the reason, also of a normal exit
        let (t, _rt) = a.port_channel();
        let (cb, mut r) = reporter();
        watcher.mon(&t, cb).forget();
        sync(watcher).await;
        a.kil(&t, vec![]).unwrap();
        assert_eq!(reason(&mut r).await, Vec::<Value>::new(), "{name}");

        // kill another port: only on an error exit, with the same reason
        let (t, _rt) = a.port_channel();
        let (victim, _rv) = watcher.port_channel();
        let (cb, mut victim_died) = reporter();
        watcher.mon(&victim, cb).forget();
        watcher.mon_kil(&t, &victim).forget();
        sync(watcher).await;
        a.kil(&t, vec![]).unwrap();
        no_reason(&mut victim_died, Duration::from_millis(300)).await;
        assert!(watcher.port_exists(&victim), "{name}");
        let (t, _rt) = a.port_channel();
        watcher.mon_kil(&t, &victim).forget();
        sync(watcher).await;
        a.kil(&t, vec![json!("err")]).unwrap();
        assert_eq!(reason(&mut victim_died).await, vec![json!("err")], "{name}");

        // send a message with the reason appended, also on a normal exit
        let (t, _rt) = a.port_channel();
        let (inbox, mut rx) = watcher.port_channel();
        watcher.mon_snd(&t, &inbox, &("died", &t)).unwrap().forget();
        sync(watcher).await;
        a.kil(&t, vec![json!("why")]).unwrap();
        assert_eq!(
            recv(&mut rx).await.values().unwrap(),
            vec![json!("died"), json!(t.as_str()), json!("why")],
            "{name}"
        );
        let (t, _rt) = a.port_channel();
        watcher.mon_snd(&t, &inbox, &("died",)).unwrap().forget();
        sync(watcher).await;
        a.kil(&t, vec![]).unwrap();
        assert_eq!(
            recv(&mut rx).await.values().unwrap(),
            vec![json!("died")],
            "{name}"
        );

        // no action: kill the monitoring port itself (from its context)
        let (t, _rt) = a.port_channel();
        let (tx, mut ctx_rx) = mpsc::unbounded_channel();
        let target = t.clone();
        let selfish = watcher.port_fn(move |ctx, _| {
            let _ = tx.send(ctx.mon(&target));
            Ok(())
        });
        let (cb, mut selfish_died) = reporter();
        watcher.mon(&selfish, cb).forget();
        watcher.snd(&selfish, &("watch",)).unwrap();
        tokio::time::timeout(WAIT, ctx_rx.recv())
            .await
            .unwrap()
            .unwrap()
            .forget();
        sync(watcher).await;
        a.kil(&t, vec![json!("cascade")]).unwrap();
        assert_eq!(
            reason(&mut selfish_died).await,
            vec![json!("cascade")],
            "{name}"
        );
    }
}

#[actix_rt::test]
async fn monitors_are_one_shot_and_can_be_removed() {
    let node = kernel_node("kern").await;
    let (p, _rx) = node.port_channel();
    let (cb, mut r) = reporter();
    node.mon(&p, cb).unmon();
    let (cb2, mut r2) = reporter();
    let guard = node.mon(&p, cb2).guard();
    drop(guard);
    node.kil(&p, vec![json!("x")]).unwrap();
    no_reason(&mut r, Duration::from_millis(200)).await;
    no_reason(&mut r2, Duration::from_millis(10)).await;
    // a local port that does not exist: fires at once
    let (cb, mut r) = reporter();
    node.mon("kern#ghost", cb).forget();
    assert_eq!(
        reason(&mut r).await,
        vec![
            json!("no_such_port"),
            json!("cannot monitor nonexistent port"),
            json!("kern#ghost")
        ]
    );
}

#[actix_rt::test]
async fn every_guard_removes_on_drop_and_forget_keeps() {
    // Perl's rule (MP.pm 624-625, Global.pm 241/286): a held guard removes
    // on destruction, void context keeps
    let node = kernel_node("kern").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    // a dropped Monitor of a local port never fires; a forgotten one does
    let (p, _rx) = node.port_channel();
    let (dropped_cb, mut dropped) = reporter();
    let (kept_cb, mut kept) = reporter();
    drop(node.mon(&p, dropped_cb));
    node.mon(&p, kept_cb).forget();
    node.kil(&p, vec![json!("x")]).unwrap();
    assert_eq!(reason(&mut kept).await, vec![json!("x")]);
    no_reason(&mut dropped, Duration::from_millis(100)).await;
    // a dropped Monitor of a remote port sends mon0
    let m = node.mon("raw#p", |_| {});
    assert_eq!(peer.recv().await, json!(["", "mon1", "p"]));
    drop(m);
    assert_eq!(peer.recv().await, json!(["", "mon0", "p"]));
    // mon_kil / mon_snd handles too
    let (q, _rq) = node.port_channel();
    let (victim, _rv) = node.port_channel();
    drop(node.mon_kil(&q, &victim));
    node.kil(&q, vec![json!("y")]).unwrap();
    assert!(node.port_exists(&victim));
    // group registrations and group monitors as before
    let (g, _rg) = node.port_channel();
    drop(node.grp_reg("grp", &g).unwrap());
    assert!(node.grp_get("grp").is_empty());
    node.grp_reg("grp", &g).unwrap().forget();
    assert_eq!(node.grp_get("grp"), vec![g]);
}

#[actix_rt::test]
async fn unit_is_not_a_message_for_snd_spawn_cal_or_mon_snd() {
    let node = kernel_node("kern").await;
    let (p, _rx) = node.port_channel();
    assert!(matches!(node.snd(&p, &()), Err(SendError::Encode(_))));
    assert!(matches!(
        node.spawn("kern", "Test::echo", &()),
        Err(SpawnError::Args(_))
    ));
    assert!(node.mon_snd(&p, &p, &()).is_err());
    assert!(matches!(
        node.cal(&p, &(), Some(Duration::from_millis(10))).await,
        Err(CalError::Send(SendError::Encode(_)))
    ));
    // the empty list is a message
    node.snd(&p, &[(); 0]).unwrap();
}

#[actix_rt::test]
async fn monitoring_a_missing_remote_port_fires_no_such_port() {
    let a = kernel_node("a").await;
    let b = kernel_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    sync(&b).await;
    let before = b.remote_monitor_count(); // Global watches its port on a
    let (cb, mut r) = reporter();
    b.mon("a#ghost", cb).forget();
    assert_eq!(
        reason(&mut r).await,
        vec![
            json!("no_such_port"),
            json!("cannot monitor nonexistent port"),
            json!("a#ghost")
        ]
    );
    assert_eq!(b.remote_monitor_count(), before);
}

// --------------------------------------------------------------------- cal

#[actix_rt::test]
async fn cal_returns_the_reply_and_cleans_up() {
    let a = kernel_node("a").await;
    let b = kernel_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    let adder = a
        .port_fn_named("adder", |ctx, msg| {
            let (x, y, reply): (i64, i64, PortId) = msg.decode()?;
            ctx.snd(&reply, &("sum", x + y))?;
            Ok(())
        })
        .unwrap();
    sync(&b).await; // Global's ports are in place on both sides
    let (ports, monitors) = (b.port_count(), b.remote_monitor_count());
    let reply = b.cal(&adder, &(2, 3), None).await.unwrap();
    assert_eq!(reply.values().unwrap(), vec![json!("sum"), json!(5)]);
    let reply = b
        .cal(&adder, &(4, 5), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(reply.values().unwrap(), vec![json!("sum"), json!(9)]);
    // the reply ports are gone, and so is the monitor
    assert_eq!(b.port_count(), ports);
    assert_eq!(b.remote_monitor_count(), monitors);
    // local too
    let reply = a.cal(&adder, &(1, 1), None).await.unwrap();
    assert_eq!(reply.values().unwrap(), vec![json!("sum"), json!(2)]);
}

#[actix_rt::test]
async fn cal_times_out_or_reports_the_targets_death() {
    let a = kernel_node("a").await;
    let b = kernel_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    let (silent, _keep) = a.port_channel();
    let err = b
        .cal(&silent, &("hello",), Some(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(matches!(err, CalError::Timeout(_)), "{err:?}");

    let dying = a.port_fn(|ctx, _| {
        ctx.kil(vec![json!("refused")]);
        Ok(())
    });
    let err = b.cal(&dying, &("hello",), None).await.unwrap_err();
    assert!(
        matches!(&err, CalError::TargetDied(r) if *r == vec![json!("refused")]),
        "{err:?}"
    );

    let quitting = a.port_fn(|ctx, _| {
        ctx.kil(vec![]);
        Ok(())
    });
    let err = b.cal(&quitting, &("hello",), None).await.unwrap_err();
    assert!(
        matches!(&err, CalError::TargetDied(r) if r.is_empty()),
        "{err:?}"
    );

    let err = b.cal("a#ghost", &("x",), None).await.unwrap_err();
    assert!(
        matches!(&err, CalError::TargetDied(r) if r[0] == json!("no_such_port")),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn a_handler_failing_behind_an_outside_kil_keeps_the_kil_monitors() {
    let node = listening_node("k").await;
    for _ in 0..20 {
        let p = node.port_fn(|_, _| Err("boom".into()));
        let (cb, mut died) = reporter();
        node.mon(&p, cb).forget();
        // the failing message is queued before the kil
        node.snd(&p, &("fail",)).unwrap();
        node.kil(&p, vec![json!("outside")]).unwrap();
        let r = reason(&mut died).await;
        assert!(
            r == vec![json!("outside")] || r == vec![json!("die"), json!("boom")],
            "{r:?}"
        );
    }
}

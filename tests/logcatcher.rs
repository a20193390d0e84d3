//! The log catcher (`aemp::logcatcher`, AnyEvent::MP::LogCatcher) between
//! two in-process nodes: catching, level filtering, no feedback, the end
//! of forwarding when the catcher's port dies, `"restart"` on a new
//! `catch`, the bound on queued messages, and the configured service.
//!
//! Each test sets its own thread-local subscriber with the layer, whose
//! catcher table is its own: a test sees only its own events (an event
//! without a `node` field goes to every catcher of its subscriber's
//! layer, not of the process). Every wait is on an event (a message, a
//! monitor, a change of the catcher table), bounded by [`WAIT`]; where a
//! test checks that nothing more arrives, it logs a marker and checks that
//! the marker comes next (messages of one catcher arrive in order).

mod common;

use std::time::Duration;

use aemp::logcatcher::{self, CONNECT_FUNCTION, Caught};
use aemp::{Node, NodeConfig};
use common::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Reports the `field` of each event whose message is `message`, for
/// every layer's view.
struct Watch {
    message: &'static str,
    field: &'static str,
    tx: mpsc::UnboundedSender<String>,
}

impl<S: tracing::Subscriber> Layer<S> for Watch {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Msg<'a> {
            field: &'a str,
            message: String,
            value: String,
        }
        impl tracing::field::Visit for Msg<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.message = format!("{v:?}");
                } else if f.name() == self.field {
                    self.value = format!("{v:?}");
                }
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                if f.name() == self.field {
                    self.value = v.to_owned();
                } else {
                    self.record_debug(f, &v);
                }
            }
        }
        let mut m = Msg {
            field: self.field,
            message: String::new(),
            value: String::new(),
        };
        event.record(&mut m);
        if m.message == self.message {
            let _ = self.tx.send(m.value);
        }
    }
}

/// A [`Watch`] layer and what it reports.
fn watch(message: &'static str, field: &'static str) -> (Watch, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Watch { message, field, tx }, rx)
}

/// The next report of a [`Watch`], or a panic after [`WAIT`].
async fn watched(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a watched event within the wait")
        .expect("watch open")
}

/// Waits until `node` forwards to `n` catchers (at each change of the
/// catcher table, no polling), or panics after [`WAIT`].
async fn has_catchers(node: &str, n: usize) {
    if logcatcher::wait_catchers(node, WAIT, |ports| ports.len() == n)
        .await
        .is_err()
    {
        panic!(
            "timed out waiting for {node} to have {n} catchers (has {:?})",
            logcatcher::catchers(node)
        );
    }
}

/// The catcher layer, and a stderr-like layer that prints errors only:
/// catchers must get more than it.
fn subscriber() -> tracing::subscriber::DefaultGuard {
    let s = tracing_subscriber::registry()
        .with(logcatcher::layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(LevelFilter::ERROR),
        );
    tracing::subscriber::set_default(s)
}

fn sink() -> (
    impl Fn(&Caught) + Send + Sync + 'static,
    mpsc::UnboundedReceiver<Caught>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        move |c: &Caught| {
            let _ = tx.send(c.clone());
        },
        rx,
    )
}

async fn caught(rx: &mut mpsc::UnboundedReceiver<Caught>) -> Caught {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a log message within the wait")
        .expect("sink open")
}

async fn connected(a: &str, b: &str) -> (Node, Node) {
    let a = listening_node(a).await;
    let b = listening_node(b).await;
    b.connect(addr_of(&a)).await.unwrap();
    node_up(&a, b.id()).await;
    (a, b)
}

#[actix_rt::test]
async fn a_catcher_gets_the_other_nodes_logs_up_to_its_level() {
    let _sub = subscriber();
    let a = listening_node("lc1-a").await;
    // catching starts before the other node is up: it is asked when it comes
    let (sink, mut rx) = sink();
    logcatcher::catch_with(&a, Some(7), sink);
    let b = listening_node("lc1-b").await;
    b.connect(addr_of(&a)).await.unwrap();
    has_catchers("lc1-b", 1).await;
    assert_eq!(logcatcher::catcher_ports(&a).len(), 1);

    tracing::debug!(node = "lc1-b", "too verbose");
    tracing::info!(node = "another-node", "not b's");
    tracing::warn!(node = "lc1-b", disk = "full", n = 3, "trouble");
    tracing::info!(node = "lc1-b", "connectivity");
    tracing::error!("no node field: every catcher of the subscriber");
    let got = caught(&mut rx).await;
    assert_eq!(
        got,
        Caught {
            node: "lc1-b".into(),
            level: 2,
            text: "trouble disk=full n=3".into()
        }
    );
    assert_eq!(caught(&mut rx).await.level, 7);
    let c = caught(&mut rx).await;
    assert_eq!(
        (c.level, c.text.as_str()),
        (1, "no node field: every catcher of the subscriber")
    );
    let line = c.line();
    assert!(
        line.ends_with(" [lc1-b] <1> no node field: every catcher of the subscriber"),
        "{line}"
    );
    // the debug event and the other node's were not forwarded: nothing
    // comes before a marker logged after them all
    tracing::error!(node = "lc1-b", "marker");
    assert_eq!(caught(&mut rx).await.text, "marker");
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn forwarding_does_not_feed_back() {
    // the function named in each refused node-port request
    let (refusals, mut refused) = watch(
        "node-port request for an unknown function ignored",
        "function",
    );
    let _sub = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(logcatcher::layer())
            .with(refusals),
    );
    let b = listening_node("lc2-b").await;
    // a catcher whose "port" is b's own node port: each forwarded message
    // `[level, text]` calls function "level" there, which b logs (unknown
    // function, a warning of b's) while forwarding
    b.snd(b.id(), &(CONNECT_FUNCTION, 0, "lc2-b", 9)).unwrap();
    has_catchers("lc2-b", 1).await;
    tracing::warn!(node = "lc2-b", "one event");
    // the forwarded message is refused
    assert_eq!(watched(&mut refused).await, "2");
    // that warning was not forwarded again (which would warn again, …):
    // the next refusal is that of an error logged now, `[1, text]`
    tracing::error!(node = "lc2-b", "marker");
    assert_eq!(watched(&mut refused).await, "1");
    b.shutdown();
    // the catcher ends with the node
    has_catchers("lc2-b", 0).await;
}

#[actix_rt::test]
async fn forwarding_stops_when_the_catcher_port_dies() {
    let _sub = subscriber();
    let (a, b) = connected("lc3-a", "lc3-b").await;
    let (port, mut rx) = a.port_channel();
    a.snd("lc3-b", &(CONNECT_FUNCTION, 0, port.as_str(), 9))
        .unwrap();
    has_catchers("lc3-b", 1).await;
    tracing::trace!(node = "lc3-b", "hello");
    // the exact message shape: [level, text]
    assert_eq!(
        recv(&mut rx).await.values().unwrap(),
        [json!(9), json!("hello")]
    );
    a.kil(&port, vec![json!("gone")]).unwrap();
    // b forgets the catcher
    has_catchers("lc3-b", 0).await;
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn a_new_catch_kills_the_old_ports_with_restart() {
    let _sub = subscriber();
    let (a, b) = connected("lc4-a", "lc4-b").await;
    // b is up already: it is asked at once
    let (first, mut first_rx) = sink();
    logcatcher::catch_with(&a, Some(9), first);
    has_catchers("lc4-b", 1).await;
    let old = logcatcher::catcher_ports(&a);
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].0, "lc4-b");
    assert_eq!(logcatcher::catchers("lc4-b"), [old[0].1.as_str()]);
    let (report, mut reason_rx) = reporter();
    a.mon(&old[0].1, report).forget();

    let (second, mut second_rx) = sink();
    logcatcher::catch_with(&a, Some(2), second);
    assert_eq!(reason(&mut reason_rx).await, vec![json!("restart")]);
    let new = logcatcher::catcher_ports(&a);
    assert_eq!(new.len(), 1);
    assert_ne!(new[0].1, old[0].1);
    // b dropped the old catcher (its port died) and has the new one
    let only_new = [new[0].1.as_str()];
    if logcatcher::wait_catchers("lc4-b", WAIT, |ports| ports == only_new)
        .await
        .is_err()
    {
        panic!(
            "b has {:?}, not only the new catcher",
            logcatcher::catchers("lc4-b")
        );
    }
    assert_eq!(logcatcher::catchers_of("lc4-b"), 1);
    tracing::warn!(node = "lc4-b", "after restart");
    let c = caught(&mut second_rx).await;
    assert_eq!((c.level, c.text.as_str()), (2, "after restart"));
    // the first catcher may have got b's earlier logs, but not this one
    while let Ok(c) = first_rx.try_recv() {
        assert_ne!(c.text, "after restart");
    }

    // catch(None) stops catching: the port dies, b forgets it
    logcatcher::catch_with(&a, None, |_| {});
    assert!(logcatcher::catcher_ports(&a).is_empty());
    has_catchers("lc4-b", 0).await;
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn a_slow_catcher_costs_a_bounded_queue() {
    let _sub = subscriber();
    let (a, b) = connected("lc5-a", "lc5-b").await;
    let (port, mut rx) = a.port_channel();
    a.snd("lc5-b", &(CONNECT_FUNCTION, 0, port.as_str(), 9))
        .unwrap();
    has_catchers("lc5-b", 1).await;
    let before = logcatcher::dropped();
    // without an await the forwarder cannot run: all but QUEUE are dropped
    let n = logcatcher::QUEUE + 500;
    for i in 0..n {
        tracing::info!(node = "lc5-b", i, "burst");
    }
    assert!(logcatcher::dropped() - before >= 500);
    // the first QUEUE arrive, in order
    let mut got = 0;
    while got < logcatcher::QUEUE {
        let v = recv(&mut rx).await.values().unwrap();
        if v[1] == json!(format!("burst i={got}")) {
            got += 1;
        }
    }
    // and no more: the queue is empty now, a marker comes next
    tracing::info!(node = "lc5-b", "marker");
    loop {
        let v = recv(&mut rx).await.values().unwrap();
        if v[1] == json!("marker") {
            break;
        }
        let text = v[1].as_str().unwrap_or_default();
        assert!(!text.starts_with("burst"), "more than QUEUE: {text}");
    }
    assert_eq!(got, logcatcher::QUEUE);
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn a_node_keeps_at_most_64_catchers() {
    let (failures, mut failed) = watch("node-port function failed", "error");
    let _sub = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(logcatcher::layer())
            .with(failures),
    );
    let b = listening_node("lc8-b").await;
    let mut ports = Vec::new();
    for _ in 0..=logcatcher::MAX_CATCHERS_PER_NODE {
        let (port, rx) = b.port_channel();
        b.snd(b.id(), &(CONNECT_FUNCTION, 0, port.as_str(), 2))
            .unwrap();
        ports.push((port, rx));
    }
    // the one too many is refused, the others stay
    assert_eq!(
        watched(&mut failed).await,
        "LogCatcher::connect: 64 catchers already"
    );
    has_catchers("lc8-b", logcatcher::MAX_CATCHERS_PER_NODE).await;
    let (last, mut last_rx) = ports.pop().unwrap();
    assert!(!logcatcher::catchers("lc8-b").contains(&last.to_string()));
    // each of the 64 gets b's warnings (the refusal is one), the 65th
    // nothing (a marker sent to it comes first)
    tracing::warn!(node = "lc8-b", "to all 64");
    for (_, rx) in &mut ports {
        let refusal = recv(rx).await.values().unwrap();
        let refusal = refusal[1].as_str().unwrap_or_default();
        assert!(refusal.ends_with("64 catchers already"), "{refusal}");
        assert_eq!(recv(rx).await.values().unwrap()[1], "to all 64");
    }
    b.snd(&last, &("marker",)).unwrap();
    assert_eq!(recv(&mut last_rx).await.values().unwrap(), ["marker"]);
    // a catcher that goes makes room for another
    let (gone, _) = ports.pop().unwrap();
    b.kil(&gone, vec![]).unwrap();
    has_catchers("lc8-b", logcatcher::MAX_CATCHERS_PER_NODE - 1).await;
    b.snd(b.id(), &(CONNECT_FUNCTION, 0, last.as_str(), 2))
        .unwrap();
    has_catchers("lc8-b", logcatcher::MAX_CATCHERS_PER_NODE).await;
    assert!(logcatcher::catchers("lc8-b").contains(&last.to_string()));
    b.shutdown();
}

#[actix_rt::test]
async fn another_subscribers_events_stay_with_it() {
    let _sub = subscriber();
    let (a, b) = connected("lc9-a", "lc9-b").await;
    let (sink, mut rx) = sink();
    logcatcher::catch_with(&a, Some(2), sink);
    has_catchers("lc9-b", 1).await;
    // another thread, with its own subscriber (and layer), logs an error
    // without a node field, and one naming b: neither reaches b's catcher,
    // which belongs to this thread's subscriber
    std::thread::spawn(|| {
        let _sub = subscriber();
        tracing::error!("another subscriber's");
        tracing::error!(node = "lc9-b", "another subscriber's, for b");
    })
    .join()
    .unwrap();
    tracing::error!("this subscriber's");
    let c = caught(&mut rx).await;
    assert_eq!(
        (c.node.as_str(), c.text.as_str()),
        ("lc9-b", "this subscriber's")
    );
    // on that thread nothing has catchers
    let none = std::thread::spawn(|| {
        let _sub = subscriber();
        logcatcher::catchers_of("lc9-b")
    })
    .join()
    .unwrap();
    assert_eq!(none, 0);
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn connect_without_a_layer_is_refused() {
    let (failures, mut failed) = watch("node-port function failed", "error");
    let _sub = tracing::subscriber::set_default(tracing_subscriber::registry().with(failures));
    let b = listening_node("lc10-b").await;
    let (port, _rx) = b.port_channel();
    b.snd(b.id(), &(CONNECT_FUNCTION, 0, port.as_str(), 9))
        .unwrap();
    assert_eq!(
        watched(&mut failed).await,
        "LogCatcher::connect: this node's subscriber has no log catcher layer"
    );
    assert_eq!(logcatcher::catchers_of("lc10-b"), 0);
    b.shutdown();
}

#[actix_rt::test]
async fn an_unreachable_catcher_is_dropped() {
    let _sub = subscriber();
    let b = Node::builder()
        .node_id("lc6-b")
        .secret(SECRET)
        .monitor_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    b.snd(b.id(), &(CONNECT_FUNCTION, 0, "lc6-nowhere#port", 9))
        .unwrap();
    has_catchers("lc6-b", 1).await;
    tracing::info!(node = "lc6-b", "queued for nowhere");
    // the port's monitor fires with "unable to connect"
    has_catchers("lc6-b", 0).await;
    b.shutdown();
}

#[actix_rt::test]
async fn catch_runs_as_a_configured_service() {
    let _sub = subscriber();
    let config = NodeConfig {
        node_id: "lc7-a".into(),
        secret: Some(SECRET.into()),
        binds: vec!["127.0.0.1:0".into()],
        services: vec![json!(["AnyEvent::MP::LogCatcher::catch", 8])],
        ..NodeConfig::default()
    };
    let a = Node::builder().config(config).start().await.unwrap();
    let b = listening_node("lc7-b").await;
    b.connect(addr_of(&a)).await.unwrap();
    has_catchers("lc7-b", 1).await;
    assert_eq!(logcatcher::catcher_ports(&a)[0].0, "lc7-b");
    // the package names a service too
    let pkg: Value = json!("AnyEvent::MP::LogCatcher::");
    let config = NodeConfig {
        node_id: "lc7-c".into(),
        services: vec![pkg],
        ..NodeConfig::default()
    };
    let c = Node::builder().config(config).start().await.unwrap();
    a.shutdown();
    b.shutdown();
    c.shutdown();
}

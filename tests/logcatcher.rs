//! The log catcher (`aemp::logcatcher`, AnyEvent::MP::LogCatcher) between
//! two in-process nodes: catching, level filtering, no feedback, the end
//! of forwarding when the catcher's port dies, `"restart"` on a new
//! `catch`, the bound on queued messages, and the configured service.
//!
//! Each test sets its own thread-local subscriber with the layer; node ids
//! are unique per test, as the catcher table is process-wide.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aemp::logcatcher::{self, CONNECT_FUNCTION, Caught};
use aemp::{Node, NodeConfig};
use common::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Counts the events whose message is `message`, for every layer's view.
struct Count {
    message: &'static str,
    seen: Arc<AtomicUsize>,
}

impl<S: tracing::Subscriber> Layer<S> for Count {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Msg(String::new());
        event.record(&mut m);
        if m.0 == self.message {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
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
    until("a sees b", || a.node_is_up(b.id())).await;
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
    until("b has a catcher", || logcatcher::catchers_of("lc1-b") == 1).await;
    assert_eq!(logcatcher::catcher_ports(&a).len(), 1);

    tracing::debug!(node = "lc1-b", "too verbose");
    tracing::info!(node = "another-node", "not b's");
    tracing::warn!(node = "lc1-b", disk = "full", n = 3, "trouble");
    tracing::info!(node = "lc1-b", "connectivity");
    tracing::error!("no node field: every catcher of the process");
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
        (1, "no node field: every catcher of the process")
    );
    let line = c.line();
    assert!(
        line.ends_with(" [lc1-b] <1> no node field: every catcher of the process"),
        "{line}"
    );
    // the debug event and the other node's were not forwarded
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
    );
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn forwarding_does_not_feed_back() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Count {
        message: "node-port request for an unknown function ignored",
        seen: seen.clone(),
    };
    let _sub = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(logcatcher::layer())
            .with(counter),
    );
    let b = listening_node("lc2-b").await;
    // a catcher whose "port" is b's own node port: each forwarded message
    // `[9, text]` calls function "9" there, which b logs (unknown
    // function) while forwarding
    b.snd(b.id(), &(CONNECT_FUNCTION, 0, "lc2-b", 9)).unwrap();
    until("b has the catcher", || {
        logcatcher::catchers_of("lc2-b") == 1
    })
    .await;
    tracing::warn!(node = "lc2-b", "one event");
    until("the forwarded message is refused", || {
        seen.load(Ordering::Relaxed) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // that warning was not forwarded again (which would warn again, …)
    assert_eq!(seen.load(Ordering::Relaxed), 1);
    b.shutdown();
    until("the catcher ends with the node", || {
        logcatcher::catchers_of("lc2-b") == 0
    })
    .await;
}

#[actix_rt::test]
async fn forwarding_stops_when_the_catcher_port_dies() {
    let _sub = subscriber();
    let (a, b) = connected("lc3-a", "lc3-b").await;
    let (port, mut rx) = a.port_channel();
    a.snd("lc3-b", &(CONNECT_FUNCTION, 0, port.as_str(), 9))
        .unwrap();
    until("b has a catcher", || logcatcher::catchers_of("lc3-b") == 1).await;
    tracing::trace!(node = "lc3-b", "hello");
    // the exact message shape: [level, text]
    assert_eq!(
        recv(&mut rx).await.values().unwrap(),
        [json!(9), json!("hello")]
    );
    a.kil(&port, vec![json!("gone")]).unwrap();
    until("b forgets the catcher", || {
        logcatcher::catchers_of("lc3-b") == 0
    })
    .await;
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
    until("b has a catcher", || logcatcher::catchers_of("lc4-b") == 1).await;
    let old = logcatcher::catcher_ports(&a);
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].0, "lc4-b");
    let (report, mut reason_rx) = reporter();
    a.mon(&old[0].1, report).forget();

    let (second, mut second_rx) = sink();
    logcatcher::catch_with(&a, Some(2), second);
    assert_eq!(reason(&mut reason_rx).await, vec![json!("restart")]);
    let new = logcatcher::catcher_ports(&a);
    assert_eq!(new.len(), 1);
    assert_ne!(new[0].1, old[0].1);
    // b dropped the old catcher (its port died) and has the new one
    until("b has only the new catcher", || {
        logcatcher::catchers_of("lc4-b") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    until("b has no catcher", || logcatcher::catchers_of("lc4-b") == 0).await;
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
    until("b has a catcher", || logcatcher::catchers_of("lc5-b") == 1).await;
    let before = logcatcher::dropped();
    // without an await the forwarder cannot run: all but QUEUE are dropped
    let n = logcatcher::QUEUE + 500;
    for i in 0..n {
        tracing::info!(node = "lc5-b", i, "burst");
    }
    assert!(logcatcher::dropped() - before >= 500);
    let mut got = 0;
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        let v = p.values().unwrap();
        if v[1] == json!(format!("burst i={got}")) {
            got += 1;
        }
    }
    assert_eq!(got, logcatcher::QUEUE);
    a.shutdown();
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
    until("b has the catcher", || {
        logcatcher::catchers_of("lc6-b") == 1
    })
    .await;
    tracing::info!(node = "lc6-b", "queued for nowhere");
    // the port's monitor fires with "unable to connect"
    until("b drops the catcher", || {
        logcatcher::catchers_of("lc6-b") == 0
    })
    .await;
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
    until("b has a catcher", || logcatcher::catchers_of("lc7-b") == 1).await;
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

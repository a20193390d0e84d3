//! actix actors as ports: the port id before the start, the port dying
//! with the actor (normal stop, panic, `die` with a reason) as monitors on
//! another node see it, the actor told of a kil, typed routing.

mod common;

use std::time::Duration;

use actix::prelude::*;
use aemp::{ActorPort, Node, Packet, PortId, PortKilled, Reason};
use common::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the test actor reports.
#[derive(Debug, PartialEq)]
enum Seen {
    Started(PortId),
    Killed(Reason),
    Typed(i64),
    Default(Vec<Value>),
}

/// An actor port driven by its messages: `["panic"]`, `["die", reason…]`,
/// `["stop"]`; anything else is reported.
struct Probe {
    port: ActorPort,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Actor for Probe {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        let _ = self.seen.send(Seen::Started(self.port.id().clone()));
    }
}

impl Handler<Packet> for Probe {
    type Result = ();
    fn handle(&mut self, msg: Packet, ctx: &mut Context<Self>) {
        let mut values = msg.values().unwrap();
        match values.first().and_then(Value::as_str) {
            Some("panic") => panic!("probe asked to panic"),
            Some("die") => {
                values.remove(0);
                self.port.die(ctx, values);
            }
            Some("stop") => ctx.stop(),
            _ => drop(self.seen.send(Seen::Default(values))),
        }
    }
}

impl Handler<PortKilled> for Probe {
    type Result = ();
    fn handle(&mut self, killed: PortKilled, ctx: &mut Context<Self>) {
        let _ = self.seen.send(Seen::Killed(killed.reason));
        ctx.stop();
    }
}

#[derive(serde::Deserialize, Message, Debug)]
#[rtype(result = "()")]
enum Typed {
    #[serde(rename = "num")]
    Num(i64),
}

impl Handler<Typed> for Probe {
    type Result = ();
    fn handle(&mut self, Typed::Num(n): Typed, _: &mut Context<Self>) {
        let _ = self.seen.send(Seen::Typed(n));
    }
}

fn probe(node: &Node) -> (PortId, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (port, _addr) = node.port_actor(move |port, _| Probe { port, seen: tx });
    (port, rx)
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the actor reports within the wait")
        .expect("actor alive")
}

/// Node `b` connected to `a`, with a kill-form monitor (`mon $port,
/// $victim`, MP.pm 618) on `port` of `a`: the victim is a port of `b`,
/// itself watched by a reporter.
async fn kill_form_monitor(
    a: &Node,
    b: &Node,
    port: &PortId,
) -> (PortId, mpsc::UnboundedReceiver<Reason>) {
    b.connect(addr_of(a)).await.unwrap();
    let victim = b.port_fn(|_, _| Ok(()));
    let (cb, rx) = reporter();
    b.mon(&victim, cb).forget();
    b.mon_kil(port, &victim).forget();
    (victim, rx)
}

#[actix_rt::test]
async fn port_id_is_known_in_started() {
    let a = listening_node("a").await;
    let (port, mut rx) = probe(&a);
    assert_eq!(seen(&mut rx).await, Seen::Started(port.clone()));
    assert!(a.port_exists(&port));
    a.snd(&port, &("hello", 1)).unwrap();
    assert_eq!(
        seen(&mut rx).await,
        Seen::Default(vec![json!("hello"), json!(1)])
    );
    a.shutdown();
}

#[actix_rt::test]
async fn a_panic_fires_a_remote_kill_form_monitor_with_die() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (port, mut seen_rx) = probe(&a);
    seen(&mut seen_rx).await; // started
    let (victim, mut reasons) = kill_form_monitor(&a, &b, &port).await;
    b.snd(&port, &("panic",)).unwrap();
    assert_eq!(
        reason(&mut reasons).await,
        vec![json!("die"), json!("probe asked to panic")]
    );
    assert!(!b.port_exists(&victim));
    until("the port is gone", || !a.port_exists(&port)).await;
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn die_gives_its_reason_to_a_remote_kill_form_monitor() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (port, mut seen_rx) = probe(&a);
    seen(&mut seen_rx).await;
    let (_, mut reasons) = kill_form_monitor(&a, &b, &port).await;
    b.snd(&port, &("die", "fatal", "out of work")).unwrap();
    assert_eq!(
        reason(&mut reasons).await,
        vec![json!("fatal"), json!("out of work")]
    );
    assert!(!a.port_exists(&port));
    // no PortKilled for its own death: the actor just stopped
    assert!(
        tokio::time::timeout(Duration::from_millis(200), seen_rx.recv())
            .await
            .map(|s| s.is_none())
            .unwrap_or(true)
    );
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn a_normal_stop_is_a_normal_exit() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (port, mut seen_rx) = probe(&a);
    seen(&mut seen_rx).await;
    let (victim, _reasons) = kill_form_monitor(&a, &b, &port).await;
    let (cb, mut local) = reporter();
    a.mon(&port, cb).forget();
    b.snd(&port, &("stop",)).unwrap();
    assert_eq!(reason(&mut local).await, Vec::<Value>::new());
    // kill-form monitors act only on a reason (MP.pm 618)
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.port_exists(&victim));
    assert!(!a.port_exists(&port));
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn the_actor_is_told_of_a_remote_kil() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (port, mut seen_rx) = probe(&a);
    seen(&mut seen_rx).await;
    let (_, mut reasons) = kill_form_monitor(&a, &b, &port).await;
    b.kil(&port, vec![json!("bored"), json!(7)]).unwrap();
    assert_eq!(
        seen(&mut seen_rx).await,
        Seen::Killed(vec![json!("bored"), json!(7)])
    );
    assert_eq!(reason(&mut reasons).await, vec![json!("bored"), json!(7)]);
    assert!(!a.port_exists(&port));
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn the_actor_is_told_of_shutdown() {
    let a = listening_node("a").await;
    let (port, mut seen_rx) = probe(&a);
    seen(&mut seen_rx).await;
    a.shutdown();
    assert_eq!(seen(&mut seen_rx).await, Seen::Killed(a.shutdown_reason()));
    assert!(!a.port_exists(&port));
}

#[actix_rt::test]
async fn typed_tags_go_to_the_typed_handler() {
    let a = listening_node("a").await;
    let b = listening_node("b").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (port, _) = a.port_actor_typed::<Typed, _, _>(move |port, _| Probe { port, seen: tx });
    seen(&mut rx).await;
    b.connect(addr_of(&a)).await.unwrap();
    b.snd(&port, &("num", 5)).unwrap();
    b.snd(&port, &("num", "five")).unwrap(); // known tag, bad field: default
    b.snd(&port, &("other", 1)).unwrap(); // unknown tag: default
    assert_eq!(seen(&mut rx).await, Seen::Typed(5));
    assert_eq!(
        seen(&mut rx).await,
        Seen::Default(vec![json!("num"), json!("five")])
    );
    assert_eq!(
        seen(&mut rx).await,
        Seen::Default(vec![json!("other"), json!(1)])
    );
    a.shutdown();
    b.shutdown();
}

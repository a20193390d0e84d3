//! `$SRCNODE` (Kernel.pm 167): the node whose connection delivered a
//! message — own id for local sends, the immediate peer for a relayed
//! `snd` — in packets, handlers, plain functions and init functions.

mod common;

use aemp::{Node, PortBehaviour};
use common::*;
use serde_json::{Value, json};

/// A node with a plain function and an init function that report the
/// source node to the port named in their first argument.
async fn reporting_node(id: &str) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .plain_fn("Test::whoami", |node, args| {
            let to = args.first().and_then(Value::as_str).unwrap_or_default();
            node.snd(to, &("plain", node.src_node()))?;
            Ok(())
        })
        .init_fn("Test::spawned", |ctx, args| {
            let to = args.first().and_then(Value::as_str).unwrap_or_default();
            ctx.snd(to, &("init", ctx.src_node()))?;
            Ok(PortBehaviour::handler(|_, _| Ok(())))
        })
        .start()
        .await
        .expect("node starts")
}

async fn src_reported(rx: &mut tokio::sync::mpsc::UnboundedReceiver<aemp::Packet>) -> Vec<Value> {
    recv(rx).await.values().unwrap()
}

#[actix_rt::test]
async fn local_sends_give_our_own_id() {
    let a = reporting_node("a").await;
    let (out, mut rx) = a.port_channel();
    let echo_src = {
        let out = out.clone();
        a.port_fn(move |ctx, msg| {
            ctx.snd(&out, &("handler", ctx.src_node(), msg.src_node()))?;
            Ok(())
        })
    };
    a.snd(&echo_src, &("hi",)).unwrap();
    assert_eq!(
        src_reported(&mut rx).await,
        vec![json!("handler"), json!("a"), json!("a")]
    );
    a.snd("a", &("Test::whoami", &out)).unwrap();
    assert_eq!(
        src_reported(&mut rx).await,
        vec![json!("plain"), json!("a")]
    );
    a.spawn("a", "Test::spawned", &[&out]).unwrap();
    assert_eq!(src_reported(&mut rx).await, vec![json!("init"), json!("a")]);
    // what the channel got was sent locally too
    a.snd(&out, &("x",)).unwrap();
    assert_eq!(recv(&mut rx).await.src_node(), Some("a"));
    assert_eq!(a.src_node(), None);
    a.shutdown();
}

#[actix_rt::test]
async fn remote_messages_give_the_sending_node() {
    let a = reporting_node("a").await;
    let b = reporting_node("b").await;
    b.connect(addr_of(&a)).await.unwrap();
    let (out, mut rx) = b.port_channel();
    let echo_src = a.port_fn(move |ctx, msg| {
        ctx.snd(&out, &("handler", ctx.src_node(), msg.src_node()))?;
        Ok(())
    });
    let (reply, mut replies) = b.port_channel();
    b.snd(&echo_src, &("hi",)).unwrap();
    assert_eq!(
        src_reported(&mut rx).await,
        vec![json!("handler"), json!("b"), json!("b")]
    );
    // and what a sends back arrives from a
    b.snd("a", &("Test::whoami", &reply)).unwrap();
    let got = recv(&mut replies).await;
    assert_eq!(got.src_node(), Some("a"));
    assert_eq!(got.values().unwrap(), vec![json!("plain"), json!("b")]);
    b.spawn("a", "Test::spawned", &[&reply]).unwrap();
    assert_eq!(
        src_reported(&mut replies).await,
        vec![json!("init"), json!("b")]
    );
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn a_relayed_snd_comes_from_the_relaying_node() {
    let a = reporting_node("a").await;
    let b = reporting_node("b").await;
    let c = reporting_node("c").await;
    a.connect(addr_of(&b)).await.unwrap();
    b.connect(addr_of(&c)).await.unwrap();
    let (inbox, mut rx) = c.port_channel();
    // a asks b's node port to snd to c's port (MP.pm `snd $node, snd => …`)
    a.snd("b", &json!(["snd", inbox, "relayed", 1])).unwrap();
    let got = recv(&mut rx).await;
    assert_eq!(got.values().unwrap(), vec![json!("relayed"), json!(1)]);
    assert_eq!(got.src_node(), Some("b"));
    a.shutdown();
    b.shutdown();
    c.shutdown();
}

#[actix_rt::test]
async fn a_port_that_re_sends_is_the_source_of_what_it_sends() {
    // as seen against Perl for issue 12 (Perl A → a Rust port that
    // re-sends → Perl C): each hop sees only its immediate peer
    let a = reporting_node("a").await;
    let b = reporting_node("b").await;
    let c = reporting_node("c").await;
    a.connect(addr_of(&b)).await.unwrap();
    b.connect(addr_of(&c)).await.unwrap();
    let (inbox, mut rx) = c.port_channel();
    let relay = b.port_fn(move |ctx, msg| {
        let (text,): (String,) = msg.decode()?;
        ctx.snd(&inbox, &(text, ctx.src_node(), msg.src_node()))?;
        Ok(())
    });
    a.snd(&relay, &("from a",)).unwrap();
    let got = recv(&mut rx).await;
    // b saw a, c sees b
    assert_eq!(
        got.values().unwrap(),
        vec![json!("from a"), json!("a"), json!("a")]
    );
    assert_eq!(got.src_node(), Some("b"));
    a.shutdown();
    b.shutdown();
    c.shutdown();
}

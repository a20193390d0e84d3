//! Typed messages (`Tagged<E>`): round trips through packets, and a typed
//! Rust port talking to an untyped, Perl-style port on another node over
//! each framing.

mod common;

use aemp::wire::{Framing, Packet, TaggedError};
use aemp::{Node, Rcv, Tagged};
use common::*;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Msg {
    #[serde(rename = "ping")]
    Ping(String, i64, Vec<String>),
    #[serde(rename = "pong")]
    Pong(i64, Vec<String>),
    #[serde(rename = "note")]
    Note(String),
    Stop,
    Move {
        x: i32,
        y: i32,
    },
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (
            any::<String>(),
            any::<i64>(),
            prop::collection::vec(any::<String>(), 0..4)
        )
            .prop_map(|(a, b, c)| Msg::Ping(a, b, c)),
        (any::<i64>(), prop::collection::vec(any::<String>(), 0..4))
            .prop_map(|(a, b)| Msg::Pong(a, b)),
        any::<String>().prop_map(Msg::Note),
        Just(Msg::Stop),
        (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Msg::Move { x, y }),
    ]
}

proptest! {
    #[test]
    fn tagged_round_trips_through_packets(m in msg(), dest in "[a-z#.]{0,8}") {
        let frame = Packet::to_frame(&dest, &Tagged(&m)).unwrap();
        let packet = Packet::parse(frame.clone()).unwrap();
        prop_assert_eq!(packet.dest(), Some(dest.as_str()));
        let back: Msg = packet.decode_tagged().unwrap();
        prop_assert_eq!(&back, &m);
        // and encodes back to the same bytes
        prop_assert_eq!(Packet::to_frame(&dest, &Tagged(&back)).unwrap(), frame);
        // the tag callback's view: without the tag, decoded by tag
        let tag = packet.tag().unwrap().into_owned();
        let rest = packet.without_tag().unwrap();
        prop_assert_eq!(rest.decode_untagged::<Msg>(&tag).unwrap(), m);
    }

    #[test]
    fn arrays_that_decode_encode_back(v in prop::collection::vec(
        prop_oneof![Just(json!("note")), Just(json!("Stop")), Just(json!(1)), Just(json!("x"))], 0..4))
    {
        let arr = Value::Array(v);
        if let Ok(Tagged(m)) = serde_json::from_value::<Tagged<Msg>>(arr.clone()) {
            prop_assert_eq!(serde_json::to_value(Tagged(m)).unwrap(), arr);
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum PerlMsg {
    #[serde(rename = "seq")]
    Seq(aemp::wire::Lenient<u64>, String),
}

#[test]
fn lenient_fields_normalise_perl_strings_on_the_way_back() {
    // a number Perl once used as a string arrives as "1" and leaves as 1
    let p = Packet::parse(bytes::Bytes::from_static(br#"["x","seq","1","1"]"#)).unwrap();
    let m: PerlMsg = p.decode_tagged().unwrap();
    assert_eq!(m, PerlMsg::Seq(aemp::wire::Lenient(1), "1".into()));
    assert_eq!(
        Packet::to_frame("x", &Tagged(&m)).unwrap().as_ref(),
        br#"["x","seq",1,"1"]"#
    );
    // what was a number already comes back byte for byte
    let frame = bytes::Bytes::from_static(br#"["x","seq",1,"1"]"#);
    let m: PerlMsg = Packet::parse(frame.clone())
        .unwrap()
        .decode_tagged()
        .unwrap();
    assert_eq!(Packet::to_frame("x", &Tagged(&m)).unwrap(), frame);
}

#[test]
fn unknown_tags_are_typed_errors() {
    let p = Packet::parse(bytes::Bytes::from_static(br#"["x","pang",1]"#)).unwrap();
    match p.decode_tagged::<Msg>() {
        Err(TaggedError::UnknownTag { tag }) => assert_eq!(tag, "pang"),
        other => panic!("{other:?}"),
    }
}

async fn node(id: &str, framing: Framing) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .framings([framing])
        .start()
        .await
        .expect("node starts")
}

/// Node `perlish` has an untyped port written as a Perl program would
/// (`rcv port, ping => sub { my ($reply, $n, @args) = @_; snd $reply,
/// pong => $n, @args }`); node `rust` has a typed port. Both ways, over
/// each framing.
#[actix_rt::test]
async fn a_typed_port_talks_to_an_untyped_one() {
    for framing in Framing::ALL {
        let perlish = node("perlish", framing).await;
        let rust = node("rust", framing).await;
        tokio::time::timeout(WAIT, rust.connect(perlish.listen_addrs()[0].to_string()))
            .await
            .expect("in time")
            .expect("connects");
        let echo = perlish.port_rcv(Rcv::new().tag("ping", |ctx, msg| {
            let mut v = msg.values()?;
            if v.len() < 2 {
                return Err("ping needs a reply port and a number".into());
            }
            let reply = v.remove(0);
            let reply = reply.as_str().ok_or("reply port")?.to_owned();
            v.insert(0, json!("pong"));
            ctx.snd(&reply, &v)?;
            Ok(())
        }));
        let (out, mut rx) = rust.port_channel();
        let o = out.clone();
        let typed = rust.port_rcv(
            Rcv::new()
                .typed(move |ctx, m: Msg| {
                    if let Msg::Pong(n, args) = m {
                        ctx.snd(&o, &Tagged(Msg::Pong(n + 1, args)))?;
                    }
                    Ok(())
                })
                .default(move |ctx, msg| {
                    ctx.snd(&out, &Tagged(Msg::Note(format!("{:?}", msg.values()?))))?;
                    Ok(())
                }),
        );
        rust.snd(
            &echo,
            &Tagged(Msg::Ping(
                typed.to_string(),
                41,
                vec!["a".into(), "ü".into()],
            )),
        )
        .unwrap();
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.decode_tagged::<Msg>().unwrap(),
            Msg::Pong(42, vec!["a".into(), "ü".into()]),
            "{framing:?}"
        );
        // an unknown tag reaches the typed port's default
        perlish.snd(&typed, &("pang", 1)).unwrap();
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(got.decode_tagged::<Msg>().unwrap(), Msg::Note(n) if n.contains("pang")),
            "{framing:?}"
        );
        perlish.shutdown();
        rust.shutdown();
    }
}

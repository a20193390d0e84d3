//! Two aemp nodes talking the `cbor` framing over 127.0.0.1.

mod common;

use aemp::Node;
use aemp::wire::Framing;
use common::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

async fn node(id: &str, framings: &[Framing]) -> Node {
    Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .framings(framings.iter().copied())
        .start()
        .await
        .expect("node starts")
}

/// A message with what JSON and CBOR disagree on or Perl cares about.
fn awkward() -> Value {
    json!([
        "mixed",
        true,
        false,
        null,
        18446744073709551615u64,
        -9223372036854775808i64,
        1099511627776u64,
        3.5,
        0.1,
        1e300,
        -2.5e-300,
        {"k\u{e9}y": {"\u{263a}": [1, {"": ""}], "5": null}, "z": [], "a": {}},
        "\u{0}\u{1}\u{fe}\u{ff}",
        "\u{20ac}\u{1f600}",
        "",
        "x".repeat(70000)
    ])
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Typed {
    name: String,
    big: u64,
    neg: i64,
    ratio: f64,
    flags: Vec<bool>,
    bytes: Vec<u8>,
}

fn typed() -> Typed {
    Typed {
        name: "n\u{e9}".into(),
        big: u64::MAX,
        neg: i64::MIN,
        ratio: 1.0 / 3.0,
        flags: vec![true, false],
        bytes: vec![0, 1, 254, 255],
    }
}

async fn exchange(a: &Node, b: &Node) {
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    let (pb, mut rb) = b.port_channel_named("inbox").unwrap();
    // queued while a is not up: kept as a JSON frame, re-encoded when the
    // connection is there (Framing::encode_frame)
    b.snd(&pa, &awkward()).unwrap();
    assert_eq!(b.connect(addr_of(a)).await.unwrap(), a.id());
    node_up(a, b.id()).await;

    b.snd(&pa, &awkward()).unwrap();
    a.snd(&pb, &awkward()).unwrap();
    b.snd(&pa, &(typed(),)).unwrap();
    a.snd(&pb, &(typed(),)).unwrap();
    let queued = recv(&mut ra).await;
    assert_eq!(Value::Array(queued.values().unwrap()), awkward());
    for rx in [&mut ra, &mut rb] {
        let got = recv(rx).await;
        assert_eq!(Value::Array(got.values().unwrap()), awkward());
        let got = recv(rx).await;
        // struct fields in their order (not sorted)
        assert!(
            std::str::from_utf8(got.frame())
                .unwrap()
                .starts_with(r#"["inbox",{"name":"né","big":18446744073709551615,"neg":-9223372036854775808,"ratio":0.3333333333333333,"flags":[true,false],"bytes":[0,1,254,255]}"#)
        );
        let (t,): (Typed,) = got.decode().unwrap();
        assert_eq!(t, typed());
    }
}

#[actix_rt::test]
async fn two_nodes_talk_cbor_both_ways() {
    let a = node("a", &[Framing::Cbor]).await;
    let b = node("b", &[Framing::Cbor]).await;
    exchange(&a, &b).await;
    assert_eq!(a.send_framing("b"), Some(Framing::Cbor));
    assert_eq!(b.send_framing("a"), Some(Framing::Cbor));
}

#[actix_rt::test]
async fn asymmetric_framings_cbor_one_way_json_the_other() {
    // each side sends the first of the other's list that it speaks
    let a = node("a", &[Framing::Cbor, Framing::Json]).await;
    let b = node("b", &[Framing::Json, Framing::Cbor]).await;
    exchange(&a, &b).await;
    assert_eq!(a.send_framing("b"), Some(Framing::Json));
    assert_eq!(b.send_framing("a"), Some(Framing::Cbor));
}

/// A raw client that speaks cbor to a node accepting only cbor: Perl-style
/// packets (byte strings) reach a port; a malformed item closes the
/// connection with a typed error and the node serves on.
#[actix_rt::test]
async fn perl_style_bytes_arrive_and_bad_cbor_closes_the_connection() {
    use aemp::wire::{CborFault, FrameError};
    use aemp::{ConnectionError, NodeEvent};
    use tokio::io::AsyncWriteExt;

    let victim = node("victim", &[Framing::Cbor]).await;
    let (_port, mut rx) = victim.port_channel_named("inbox").unwrap();
    let mut events = victim.events();
    let mut cfg = client_cfg("raw", SECRET);
    cfg.framings = vec![Framing::Cbor];
    let mut client = raw_handshake(&addr_of(&victim), cfg).await.unwrap().stream;
    node_up(&victim, "raw").await;
    // ["inbox", "hi", \1, 2**40 as Perl writes it], a keepalive, then junk
    client
        .write_all(
            b"\x84\x45inbox\x42hi\xd9\x56\x52\x01\xfa\x53\x80\x00\x00\x80\x83\x45inbox\x01\x1c",
        )
        .await
        .unwrap();
    let got = recv(&mut rx).await;
    assert_eq!(&got.frame()[..], br#"["inbox","hi",true,1099511627776]"#);
    read_to_close(&mut client).await;
    let error = wait_event(&mut events, |ev| match ev {
        NodeEvent::Down { node, error } if node == "raw" => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        error,
        ConnectionError::Frame(FrameError::InvalidCbor {
            offset: 8,
            fault: CborFault::ReservedInfo { major: 0, info: 28 }
        })
    );
    assert!(error.to_string().contains("invalid CBOR"), "{error}");
    let other = node("other", &[Framing::Cbor]).await;
    let (p, mut orx) = victim.port_channel();
    other.connect(addr_of(&victim)).await.unwrap();
    other.snd(&p, &("still", "there")).unwrap();
    assert_eq!(
        recv(&mut orx).await.values().unwrap(),
        vec![json!("still"), json!("there")]
    );
}

//! The typed node-port and Global messages against real Perl 1.30 traffic:
//! every node-port packet (destination `""`) of `b-spawn-mon-kil.txt` and
//! every packet to a Global connect port of `c-global-join.txt` goes
//! through `parse` → `encode` → `Packet::encode` (the way the node
//! serializes) and must give back the recorded bytes exactly.
//!
//! No normalisation is needed for these recordings: JSON::XS wrote their
//! few multi-key objects (`nodes` with perlA and perlC) in sorted key
//! order, which is serde_json's order too. In general the key order of a
//! Perl hash is arbitrary, so a `nodes`/`set` object with several keys may
//! come back reordered; `replay` would then compare after parsing both
//! frames as JSON (and counts such packets, which must be none here).

mod common;

use std::collections::HashSet;

use aemp::wire::{
    CONNECT_FUNCTION, GLOBAL_TAGS, GlobalMsg, JsonCodec, NODE_PORT_TAGS, NodeRequest, Packet,
    ReplyTo, SPAWN_FUNCTION, connect_args, no_such_port,
};
use bytes::BytesMut;
use common::transcript::{self as tr, Dir};
use serde_json::{Value, json};
use tokio_util::codec::Decoder;

const A_HANDSHAKE: &str = include_str!("fixtures/a-handshake.txt");
const B_SPAWN: &str = include_str!("fixtures/b-spawn-mon-kil.txt");
const C_GLOBAL: &str = include_str!("fixtures/c-global-join.txt");

/// The packets of one direction of connection 1, after the three
/// handshake lines.
fn packets(log: &str, dir: Dir) -> Vec<Packet> {
    let chunks = tr::parse(log);
    let (_, bytes) = tr::lines(&tr::stream(&chunks, 1, dir), 3);
    let mut codec = JsonCodec::default();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    while let Some(p) = codec.decode(&mut buf).unwrap() {
        out.push(p);
    }
    assert!(buf.is_empty());
    out
}

/// How a packet came back.
#[derive(Debug, PartialEq, Eq)]
enum Replayed {
    /// Byte for byte.
    Equal,
    /// Equal only as JSON (object key order differs).
    Normalised,
}

/// Re-encodes `values` for `p`'s destination as the node would and
/// compares with the recorded frame.
fn compare(p: &Packet, values: &[Value]) -> Replayed {
    let dest = p.dest().unwrap();
    let frame = Packet::to_frame(dest, values).unwrap();
    if frame == p.frame() {
        return Replayed::Equal;
    }
    let ours: Value = serde_json::from_slice(&frame).unwrap();
    let theirs: Value = serde_json::from_slice(p.frame()).unwrap();
    assert_eq!(
        ours,
        theirs,
        "{} came back as {}",
        String::from_utf8_lossy(p.frame()),
        String::from_utf8_lossy(&frame)
    );
    Replayed::Normalised
}

fn replay_node_port(p: &Packet) -> (NodeRequest, Replayed) {
    let req = NodeRequest::parse(p.values().unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(p.frame())));
    let how = compare(p, &req.encode());
    assert_eq!(compare(p, &req.clone().into_values()), how);
    (req, how)
}

fn replay_global(p: &Packet) -> (GlobalMsg, Replayed) {
    let msg = GlobalMsg::parse(p.values().unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(p.frame())));
    let how = compare(p, &msg.encode());
    (msg, how)
}

#[test]
fn b_every_node_port_packet_replays_byte_for_byte() {
    let mut tags = Vec::new();
    for dir in [Dir::C2S, Dir::S2C] {
        for p in packets(B_SPAWN, dir) {
            if p.dest() != Some("") {
                continue;
            }
            let (req, how) = replay_node_port(&p);
            assert_eq!(
                how,
                Replayed::Equal,
                "{}",
                String::from_utf8_lossy(p.frame())
            );
            tags.push(req.tag().unwrap().to_owned());
        }
    }
    for tag in [SPAWN_FUNCTION, "mon1", "mon0", "kil", "kil0"] {
        assert!(tags.iter().any(|t| t == tag), "no {tag} in {tags:?}");
    }
    // 2 Global spawns, 3 spawns, 2+4 mon1, 1 mon0, 2 kil, 3 kil0
    assert_eq!(tags.len(), 17, "{tags:?}");
}

#[test]
fn b_recorded_requests_have_the_expected_types() {
    let server: Vec<NodeRequest> = packets(B_SPAWN, Dir::S2C)
        .iter()
        .filter(|p| p.dest() == Some(""))
        .map(|p| replay_node_port(p).0)
        .collect();
    let NodeRequest::Spawn { port, init, args } = &server[0] else {
        panic!("{:?}", server[0]);
    };
    assert_eq!(init, CONNECT_FUNCTION);
    assert_eq!(args, &connect_args(0, "perlB"));
    assert_eq!(server[1], NodeRequest::Mon1 { port: port.clone() });
    // what the kernel builds for the same answers gives the same bytes
    let kil0 = NodeRequest::Kil0 {
        port: "nosuchport".into(),
        reason: no_such_port("perlB#nosuchport"),
    };
    assert!(server.contains(&kil0), "{server:?}");
    assert!(server.contains(&NodeRequest::Kil0 {
        port: "NYFAujwcpx21ssSgP.c".into(),
        reason: vec![json!("die"), json!("crash_init: first message")],
    }));
    let frame = Packet::to_frame("", &kil0.into_values()).unwrap();
    assert_eq!(
        &frame[..],
        br#"["","kil0","nosuchport","no_such_port","cannot monitor nonexistent port","perlB#nosuchport"]"#
    );

    let client: Vec<NodeRequest> = packets(B_SPAWN, Dir::C2S)
        .iter()
        .filter(|p| p.dest() == Some(""))
        .map(|p| replay_node_port(p).0)
        .collect();
    assert!(client.contains(&NodeRequest::Spawn {
        port: "NYFAujwcpx21ssSgP.b".into(),
        init: "Peer::echo_init".into(),
        args: vec![json!("perlA#inbox")],
    }));
    assert!(client.contains(&NodeRequest::Spawn {
        port: "NYFAujwcpx21ssSgP.c".into(),
        init: "Peer::crash_init".into(),
        args: vec![],
    }));
    assert!(client.contains(&NodeRequest::Kil {
        port: "NYFAujwcpx21ssSgP.b".into(),
        reason: vec![json!("killed"), json!("by perlA")],
    }));
    assert!(client.contains(&NodeRequest::Kil {
        port: "NYFAujwcpx21ssSgP.d".into(),
        reason: vec![],
    }));
    assert!(client.contains(&NodeRequest::Mon0 {
        port: "NYFAujwcpx21ssSgP.d".into(),
    }));
}

/// The names of the Global connect ports spawned by packets going `dir`.
fn connect_ports(packets: &[Packet]) -> HashSet<String> {
    packets
        .iter()
        .filter(|p| p.dest() == Some(""))
        .filter_map(|p| match NodeRequest::parse(p.values().unwrap()) {
            Ok(NodeRequest::Spawn { port, init, .. }) if init == CONNECT_FUNCTION => Some(port),
            _ => None,
        })
        .collect()
}

#[test]
fn c_every_global_packet_replays_byte_for_byte() {
    let mut seen = Vec::new();
    let mut normalised = 0;
    for (log, want) in [(C_GLOBAL, 12), (A_HANDSHAKE, 0), (B_SPAWN, 0)] {
        let mut n = 0;
        for dir in [Dir::C2S, Dir::S2C] {
            let all = packets(log, dir);
            let ports = connect_ports(&all);
            assert_eq!(ports.len(), 1, "one Global port per side");
            for p in &all {
                let dest = p.dest().unwrap();
                if dest.is_empty() {
                    // the node-port packets of c (and a) replay too
                    assert_eq!(replay_node_port(p).1, Replayed::Equal);
                    continue;
                }
                if !ports.contains(dest) {
                    continue;
                }
                let (msg, how) = replay_global(p);
                if how == Replayed::Normalised {
                    normalised += 1;
                }
                seen.push(msg.tag());
                n += 1;
            }
        }
        if want > 0 {
            // perlB: addr nodes set setup nodes nodes reg1 reg0; perlC: addr setup seedme1 reg1
            assert_eq!(n, want);
        }
    }
    assert_eq!(normalised, 0, "every Global packet came back byte for byte");
    for tag in ["addr", "nodes", "set", "setup", "seedme1", "reg1", "reg0"] {
        assert!(seen.contains(&tag), "no {tag} in {seen:?}");
    }
}

#[test]
fn c_recorded_messages_have_the_expected_types() {
    let server = packets(C_GLOBAL, Dir::S2C);
    let ports = connect_ports(&server);
    let msgs: Vec<GlobalMsg> = server
        .iter()
        .filter(|p| ports.contains(p.dest().unwrap()))
        .map(|p| replay_global(p).0)
        .collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        msgs,
        vec![
            GlobalMsg::Addr(vec![s("127.0.0.1:4102")]),
            GlobalMsg::Nodes(vec![(s("perlA"), vec![s("127.0.0.1:4101")])]),
            GlobalMsg::Set(vec![(s("echo"), vec![s("perlB#echo")])]),
            GlobalMsg::Setup,
            GlobalMsg::Nodes(vec![
                (s("perlA"), vec![s("127.0.0.1:4101")]),
                (s("perlC"), vec![s("127.0.0.1:4103")]),
            ]),
            GlobalMsg::Nodes(vec![(s("perlC"), vec![s("127.0.0.1:4103")])]),
            GlobalMsg::Reg1 {
                group: s("svc"),
                port: s("perlB#grp-svc-1")
            },
            GlobalMsg::Reg0 {
                group: s("svc"),
                port: s("perlB#grp-svc-1")
            },
        ]
    );
    let client = packets(C_GLOBAL, Dir::C2S);
    let ports = connect_ports(&client);
    let msgs: Vec<GlobalMsg> = client
        .iter()
        .filter(|p| ports.contains(p.dest().unwrap()))
        .map(|p| replay_global(p).0)
        .collect();
    assert_eq!(
        msgs,
        vec![
            GlobalMsg::Addr(vec![s("127.0.0.1:4103")]),
            GlobalMsg::Setup,
            GlobalMsg::Seedme1,
            GlobalMsg::Reg1 {
                group: s("echo"),
                port: s("perlC#echo")
            },
        ]
    );
}

#[test]
fn key_order_is_the_only_normalisation() {
    // a Perl hash in another order: equal as JSON, not byte for byte
    let frame = br#"["x.a","nodes",{"perlC":["h:3"],"perlA":["h:1"]}]"#;
    let p = Packet::parse(bytes::Bytes::from_static(frame)).unwrap();
    assert_eq!(replay_global(&p).1, Replayed::Normalised);
}

#[test]
fn node_port_requests_that_answer() {
    // `info`-style requests carry where to answer
    let req = NodeRequest::parse(vec![json!("info"), json!("perlA#r"), json!("t")]).unwrap();
    let NodeRequest::Info(to) = req else {
        panic!("{req:?}")
    };
    assert_eq!(
        to,
        ReplyTo {
            port: "perlA#r".into(),
            msg: vec![json!("t")]
        }
    );
    assert_eq!(
        to.answer([json!("perlB")]),
        ("perlA#r".into(), vec![json!("t"), json!("perlB")])
    );
}

#[test]
fn malformed_inputs_are_errors_not_panics() {
    let odd = [
        Value::Null,
        json!(true),
        json!(1.5),
        json!(""),
        json!([]),
        json!([1, [2]]),
        json!({}),
        json!({"a": [1]}),
    ];
    let extra = ["", "devnull", "Pkg::func"];
    let tags: Vec<&str> = NODE_PORT_TAGS
        .iter()
        .chain(GLOBAL_TAGS)
        .chain(&extra)
        .copied()
        .collect();
    let mut tag_values: Vec<Value> = tags.iter().map(|t| json!(t)).collect();
    tag_values.extend(odd.iter().cloned());
    for tag in &tag_values {
        for a in &odd {
            for b in &odd {
                for values in [
                    vec![tag.clone()],
                    vec![tag.clone(), a.clone()],
                    vec![tag.clone(), a.clone(), b.clone()],
                    vec![tag.clone(), json!("p"), a.clone(), b.clone()],
                ] {
                    if let Ok(req) = NodeRequest::parse(values.clone()) {
                        assert_eq!(NodeRequest::parse(req.encode()), Ok(req));
                    }
                    if let Ok(msg) = GlobalMsg::parse(values.clone()) {
                        assert_eq!(GlobalMsg::parse(msg.encode()), Ok(msg));
                    }
                    let bytes = serde_json::to_vec(&values).unwrap();
                    aemp::wire::fuzz_node_port(&bytes);
                    aemp::wire::fuzz_global(&bytes);
                }
            }
        }
    }
    // not arrays, or not JSON at all: nothing happens
    for data in [&b"{}"[..], b"5", b"\"x\"", b"[", b"\xff", b""] {
        aemp::wire::fuzz_node_port(data);
        aemp::wire::fuzz_global(data);
    }
    // a non-string tag is the typed error on the node port…
    assert_eq!(
        NodeRequest::parse(vec![json!(null), json!("p")]),
        Err(aemp::wire::NodeRequestError::TagNotAString)
    );
    // …and an unknown Global request
    assert_eq!(
        GlobalMsg::parse(vec![json!(["setup"])]),
        Err(aemp::wire::GlobalMsgError::Unknown { tag: String::new() })
    );
}

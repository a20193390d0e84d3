//! Golden vectors: the reference's worked example and real Perl 1.30 traffic.
//! Any differing byte fails these tests.

mod common;

use std::sync::Arc;
use std::time::Instant;

use aemp::wire::{
    AuthMethod, Framing, Greeting, Handshake, HandshakeConfig, JsonCodec, Nonce, Packet, Secret,
    hmac_md6_64_256_token, md6_256, tls_md6_64_256_token, transcript, verify_token,
};
use bytes::BytesMut;
use common::transcript::{self as tr, Dir};
use serde_json::{Value, json};
use tokio_util::codec::Decoder;

const A_HANDSHAKE: &str = include_str!("fixtures/a-handshake.txt");
const B_SPAWN: &str = include_str!("fixtures/b-spawn-mon-kil.txt");
const C_GLOBAL: &str = include_str!("fixtures/c-global-join.txt");
const F_CLEARTEXT: &str = include_str!("fixtures/f-simple-cleartext.txt");
const G_KEEPALIVE: &str = include_str!("fixtures/g-listenerless-keepalive.txt");
const I_SPAWN_RUST: &str = include_str!("fixtures/i-perl-spawns-rust-init.txt");

#[test]
fn md6_256_of_abc() {
    assert_eq!(
        hex::encode(md6_256(b"abc")),
        "230637d4e6845cf0d092b558e87625f03881dd53a7439da34cf3b94ed0d8b2c5"
    );
}

/// The FULL EXAMPLE of the transport POD. Its greetings are protocol
/// version 0, so only the token functions run. In the dump the two auth
/// lines appear under the opposite arrows from the nodes that computed
/// them: `84cd59…` is computed by `anon/57Cs…`, `5ad913…` by `ruth`.
#[test]
fn seed_full_example_tokens() {
    let anon = [
        &b"aemp;0;anon/57Cs1CggVJjzYaQp13XXg4;tls_md6_64_256,hmac_md6_64_256,tls_anon,cleartext;json,storable;provider=AE-0.8;timeout=12;peeraddr=10.0.0.17:4040"[..],
        &b"yLgdG1ov/02shVkVQer3wzeuywZK+oraTdEQBmIqWHaegxSGDG4g+HqogLQbvdypFOsoDWJ1Sh4ImV4DMhvUBwTK"[..],
    ];
    let ruth = [
        &b"aemp;0;ruth;tls_md6_64_256,hmac_md6_64_256,tls_anon,cleartext;json,storable;provider=AE-0.8;timeout=12;peeraddr=10.0.0.1:37108"[..],
        &b"+xMQXP8ElfNmuvEhsmcp+s2wCJOuQAsPxSg3d2Ewhs6gBnJz+ypVdWJ/wAVrXqlIJfLeVS/CBy4gEGkyWHSuVb1L"[..],
    ];
    let secret = Secret::from(
        "8ugxrtw6H5tKnfPWfaSr4HGhE8MoJXmzTT1BWq7sLutNcD0IbXprQlZjIbl7MBKoeklG3IEfY9GlJthC0pENzk",
    );
    assert_eq!(
        hmac_md6_64_256_token(&secret, &transcript(anon, ruth)),
        "84cd590976f794914c2ca26dac3a207a57a6798b9171289c114de07cf0c20401"
    );
    assert_eq!(
        hmac_md6_64_256_token(&secret, &transcript(ruth, anon)),
        "5ad913855742ae5a03a5aeb7eafa4c78629de136bed6acd73eea36c9e98df44a"
    );
    // and each side accepts the other's token
    verify_token(
        AuthMethod::HmacMd6_64_256,
        b"5ad913855742ae5a03a5aeb7eafa4c78629de136bed6acd73eea36c9e98df44a",
        Some(&secret),
        &transcript(ruth, anon),
        false,
    )
    .unwrap();
}

/// The `tls_md6_64_256` vector of the implementer's notes (1.4): a Perl node
/// sending, over its own lines first.
#[test]
fn tls_md6_64_256_token_vector() {
    let text = b"aemp;1;perlT;tls_md6_64_256,hmac_md6_64_256,tls_anon,cleartext;json,storable;provider=AE-1.30;peeraddr=127.0.0.1:44528;tls=1.0\naH4zq50h9FDUJ/0BFU9HesqMoF3vdj1vg6ZWI9ZjOTDz9k2bRZXUAsw0XE4NIUIb6HJpq41vsXtASPQrBmTxsfJ3\naemp;1;pyTanon;tls_md6_64_256,hmac_md6_64_256,tls_anon,cleartext;json;tls=1.0\n!\n";
    assert_eq!(
        tls_md6_64_256_token(text),
        "7e9f4c0e72c261680303ad2410c55ce73b235593f11e4fbdf95a9bbf3f661a4b"
    );
    // valid only inside TLS
    let token = b"7e9f4c0e72c261680303ad2410c55ce73b235593f11e4fbdf95a9bbf3f661a4b";
    verify_token(AuthMethod::TlsMd6_64_256, token, None, text, true).unwrap();
    assert!(verify_token(AuthMethod::TlsMd6_64_256, token, None, text, false).is_err());
}

/// Splits a recorded connection into both sides' greeting lines, auth lines
/// and the packet bytes after them.
struct Recorded {
    client: Vec<Vec<u8>>,
    server: Vec<Vec<u8>>,
    client_packets: Vec<u8>,
    server_packets: Vec<u8>,
}

fn recorded(log: &str) -> Recorded {
    let chunks = tr::parse(log);
    let (client, client_packets) = tr::lines(&tr::stream(&chunks, 1, Dir::C2S), 3);
    let (server, server_packets) = tr::lines(&tr::stream(&chunks, 1, Dir::S2C), 3);
    Recorded {
        client,
        server,
        client_packets,
        server_packets,
    }
}

#[test]
fn a_handshake_greetings_parse() {
    let r = recorded(A_HANDSHAKE);
    let a = Greeting::parse(&r.client[0]);
    let b = Greeting::parse(&r.server[0]);
    assert_eq!(a.node_id(), Ok("perlA"));
    assert_eq!(b.node_id(), Ok("perlB"));
    for g in [&a, &b] {
        assert_eq!(g.protocol, "aemp");
        assert!(g.version_is(1));
        assert_eq!(
            g.auth,
            ["tls_md6_64_256", "hmac_md6_64_256", "tls_anon", "cleartext"]
        );
        assert_eq!(g.framings, ["json", "storable"]);
        assert_eq!(g.get("provider"), Some("AE-1.30"));
        // formatting gives back the very same line
        assert_eq!(
            g.to_line().as_bytes(),
            if g == &a { &r.client[0] } else { &r.server[0] }
        );
    }
    assert_eq!(a.get("peeraddr"), Some("127.0.0.1:5102"));
    assert_eq!(b.get("peeraddr"), Some("127.0.0.1:40700"));
    assert_eq!(r.client[1].len(), 88);
    assert_eq!(r.server[1].len(), 88);
}

#[test]
fn a_handshake_tokens_verify() {
    let r = recorded(A_HANDSHAKE);
    let secret = Secret::from("geheim");
    let (a, b) = (
        [&r.client[0][..], &r.client[1]],
        [&r.server[0][..], &r.server[1]],
    );
    let a_auth = String::from_utf8(r.client[2].clone()).unwrap();
    let b_auth = String::from_utf8(r.server[2].clone()).unwrap();
    // each side's token is over its own lines first
    assert_eq!(
        a_auth,
        format!(
            "hmac_md6_64_256;{};json",
            hmac_md6_64_256_token(&secret, &transcript(a, b))
        )
    );
    assert_eq!(
        b_auth,
        format!(
            "hmac_md6_64_256;{};json",
            hmac_md6_64_256_token(&secret, &transcript(b, a))
        )
    );
    assert_eq!(
        b_auth,
        "hmac_md6_64_256;13452006fcc973e23f8f9182287558a825cfa1d49f4794947c7c1c9eb6ff9f0f;json"
    );
    // a wrong secret does not verify
    let wrong = Secret::from("geheim2");
    let token = &r.server[2][16..80];
    assert!(
        verify_token(
            AuthMethod::HmacMd6_64_256,
            token,
            Some(&wrong),
            &transcript(b, a),
            false
        )
        .is_err()
    );
    assert!(
        verify_token(
            AuthMethod::HmacMd6_64_256,
            token,
            Some(&secret),
            &transcript(b, a),
            false
        )
        .is_ok()
    );
}

fn decode_all(bytes: &[u8]) -> Vec<Packet> {
    let mut codec = JsonCodec::default();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(p) = codec.decode(&mut buf).unwrap() {
        out.push(p);
    }
    assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    assert!(buf.is_empty());
    out
}

fn as_json(packets: &[Packet]) -> Vec<Value> {
    packets
        .iter()
        .map(|p| serde_json::from_slice(p.frame()).unwrap())
        .collect()
}

#[test]
fn a_handshake_packets_decode_exactly() {
    let r = recorded(A_HANDSHAKE);
    let server = decode_all(&r.server_packets);
    assert_eq!(
        as_json(&server),
        vec![
            json!([
                "",
                "AnyEvent::MP::_spawn",
                "CqV41ISDHfNfiAPo.a",
                "AnyEvent::MP::Global::connect",
                0,
                "perlB"
            ]),
            json!(["", "mon1", "CqV41ISDHfNfiAPo.a"]),
            json!(["CqV41ISDHfNfiAPo.a", "addr", ["127.0.0.1:4102"]]),
            json!(["CqV41ISDHfNfiAPo.a", "set", {"echo": ["perlB#echo"]}]),
            json!(["CqV41ISDHfNfiAPo.a", "setup"]),
            json!(["CqV41ISDHfNfiAPo.a", "seedme1"]),
            json!(["CqV41ISDHfNfiAPo.a", "nodes", {"perlA": ["127.0.0.1:4101"]}]),
            json!(["inbox", "pong", 1, "two"]),
            json!(["CqV41ISDHfNfiAPo.a", "nodes", {"perlA": ["127.0.0.1:4101"]}]),
        ]
    );
    let client = decode_all(&r.client_packets);
    assert_eq!(client.len(), 10);
    assert_eq!(client[7].dest(), Some("inbox"));
    assert_eq!(
        client[7].decode::<(String, String, String)>().unwrap().2,
        "perlA"
    );
    assert_eq!(client[8].dest(), Some("echo"));
    assert_eq!(
        client[8].values().unwrap(),
        vec![json!("ping"), json!("perlA#inbox"), json!(1), json!("two")]
    );
    // the frames are the recorded bytes, back to back
    let joined: Vec<u8> = client.iter().flat_map(|p| p.frame().to_vec()).collect();
    assert_eq!(joined, r.client_packets);
}

/// Every recorded segment fed as it arrived, then every two-way split and
/// one byte at a time: always the same packets.
#[test]
fn recorded_streams_decode_the_same_however_split() {
    for log in [A_HANDSHAKE, B_SPAWN, C_GLOBAL, F_CLEARTEXT, G_KEEPALIVE] {
        let chunks = tr::parse(log);
        for dir in [Dir::C2S, Dir::S2C] {
            let stream = tr::stream(&chunks, 1, dir);
            let (_, packets) = tr::lines(&stream, 3);
            let whole = decode_all(&packets);
            assert!(!whole.is_empty());

            // segment by segment as recorded (after the auth line)
            let start = stream.len() - packets.len();
            let mut codec = JsonCodec::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for c in chunks.iter().filter(|c| c.conn == 1 && c.dir == dir) {
                let from = start.saturating_sub(c.offset).min(c.bytes.len());
                buf.extend_from_slice(&c.bytes[from..]);
                while let Some(p) = codec.decode(&mut buf).unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(got, whole);

            for i in 0..=packets.len() {
                let mut codec = JsonCodec::default();
                let mut buf = BytesMut::from(&packets[..i]);
                let mut got = Vec::new();
                while let Some(p) = codec.decode(&mut buf).unwrap() {
                    got.push(p);
                }
                buf.extend_from_slice(&packets[i..]);
                while let Some(p) = codec.decode(&mut buf).unwrap() {
                    got.push(p);
                }
                assert_eq!(got, whole, "split at {i}");
            }
        }
    }
}

#[test]
fn g_keepalives_are_keepalives() {
    let chunks = tr::parse(G_KEEPALIVE);
    let (_, packets) = tr::lines(&tr::stream(&chunks, 1, Dir::C2S), 3);
    let all = decode_all(&packets);
    assert!(all.iter().filter(|p| p.is_keepalive()).count() >= 2);
}

#[test]
fn f_simple_cleartext_token() {
    let r = recorded(F_CLEARTEXT);
    assert_eq!(r.client[2], b"cleartext;67656865696d;json");
    verify_token(
        AuthMethod::Cleartext,
        &r.client[2][10..22],
        Some(&Secret::from("geheim")),
        b"",
        false,
    )
    .unwrap();

    // our handshake, in the Perl node's place, accepts the python client
    let cfg = Arc::new(HandshakeConfig::new("perlB", Some("geheim".into())));
    let mut hs = Handshake::new(cfg, None, Nonce::from_line("golden-nonce"), Instant::now());
    let mut input = BytesMut::from(&tr::stream(&tr::parse(F_CLEARTEXT), 1, Dir::C2S)[..]);
    let mut out = Vec::new();
    let est = hs.advance_granting(&mut input, &mut out).unwrap().unwrap();
    assert_eq!(est.remote_node, "pysimple");
    assert_eq!(est.recv_auth, AuthMethod::Cleartext);
    assert_eq!(est.sent_auth, AuthMethod::HmacMd6_64_256);
    assert_eq!(est.send_framing, Framing::Json);
    assert!(out.starts_with(b"hmac_md6_64_256;"));
    // the packets the client sent after its auth line stay in the buffer
    assert_eq!(
        as_json(&decode_all(&input)),
        vec![
            json!(["inbox", "hello from python"]),
            json!(["echo", "ping", "pysimple#reply", 1])
        ]
    );
}

/// The aemp node of recording i: `My::init` registers its own port in
/// `rgrp` inside the init; the port answers `["ping", $reply, @a]` with
/// `["pong", $SRCNODE, @a]` and dies on `["die"]`.
async fn i_node() -> aemp::Node {
    aemp::Node::builder()
        .node_id("rustR")
        .secret(common::SECRET)
        .bind("127.0.0.1:0")
        .init_fn("My::init", |ctx, _| {
            ctx.node().grp_reg("rgrp", ctx.port())?.forget();
            Ok(aemp::PortBehaviour::handler(|ctx, msg| {
                let v = msg.values()?;
                match v.first().and_then(Value::as_str) {
                    Some("ping") => {
                        let reply = v.get(1).and_then(Value::as_str).ok_or("no reply port")?;
                        let mut out = vec![json!("pong"), json!(ctx.src_node())];
                        out.extend(v.iter().skip(2).cloned());
                        ctx.snd(reply, &out)?;
                        Ok(())
                    }
                    Some("die") => Err("asked to die".into()),
                    _ => Ok(()),
                }
            }))
        })
        .start()
        .await
        .unwrap()
}

/// What a node sent besides its Global opening and mesh chatter: its
/// `reg1`/`reg0`, application messages and node-port replies, with its
/// Global connect port renamed `gport`.
fn i_answers(packets: &[Value], gport: &str) -> Vec<Value> {
    let mut own = None;
    let mut out = Vec::new();
    for p in packets {
        if p[0] == "" && p[1] == "AnyEvent::MP::_spawn" && p[3] == "AnyEvent::MP::Global::connect" {
            own = p[2].as_str().map(str::to_owned);
            continue;
        }
        let to_global = own.is_some() && p[0].as_str() == own.as_deref();
        if to_global && !matches!(p[1].as_str(), Some("reg1" | "reg0")) {
            continue;
        }
        if p[0] == "" && p[1] == "mon1" && p[2].as_str() == own.as_deref() {
            continue;
        }
        let mut p = p.clone();
        if to_global {
            p[0] = json!(gport);
        }
        out.push(p);
    }
    out
}

#[actix_rt::test]
async fn i_a_perl_spawn_of_an_init_that_registers_its_port_replays_exactly() {
    // the bytes perlP sent (after its handshake lines), in its segments,
    // to a live node with the same init: it answers what rustR answered
    let chunks = tr::parse(I_SPAWN_RUST);
    let c2s = tr::stream(&chunks, 1, Dir::C2S);
    let (_, perl_packets) = tr::lines(&c2s, 3);
    let handshake = c2s.len() - perl_packets.len();
    let (_, rust_packets) = tr::lines(&tr::stream(&chunks, 1, Dir::S2C), 3);
    let recorded = as_json(&decode_all(&rust_packets));
    let gport = recorded[0][2].as_str().unwrap().to_owned();
    let want = i_answers(&recorded, &gport);
    let spawned = "rustR#7hdrx0p7XjO5nYsX8.c";
    assert_eq!(
        want,
        vec![
            json!([gport, "reg1", "rgrp", spawned]),
            json!(["SBCXIPFo.b", "pong", "perlP", "x", 42]),
            json!([gport, "reg0", "rgrp", spawned]),
            json!(["", "kil0", "7hdrx0p7XjO5nYsX8.c", "die", "asked to die"]),
        ]
    );
    // _spawn and mon1 came in one segment
    assert!(chunks.iter().any(|c| {
        let s = String::from_utf8_lossy(&c.bytes);
        c.dir == Dir::C2S && s.contains("\"My::init\"") && s.contains("\"mon1\"")
    }));

    let node = i_node().await;
    let mut peer = common::RawPeer::connect(&node, "perlP").await;
    for c in chunks.iter().filter(|c| c.dir == Dir::C2S) {
        let skip = handshake.saturating_sub(c.offset).min(c.bytes.len());
        if skip < c.bytes.len() {
            tokio::io::AsyncWriteExt::write_all(&mut peer.stream, &c.bytes[skip..])
                .await
                .unwrap();
        }
    }
    let mut live = Vec::new();
    loop {
        let p = peer.recv_any().await;
        let last = p[1] == "kil0";
        live.push(p);
        if last {
            break;
        }
    }
    assert_eq!(i_answers(&live, &gport), want);
    assert_eq!(node.grp_get("rgrp"), Vec::<aemp::PortId>::new());
    node.shutdown();
}

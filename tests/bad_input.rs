//! Hostile and broken peers: every case checks that the connection is
//! refused or closed with the expected error, and that the node still
//! serves a good connection afterwards.

mod common;

use std::time::{Duration, Instant};

use aemp::wire::{AuthMethod, FrameError, HandshakeError};
use aemp::{ConnectionError, Node, NodeEvent};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Connects a raw client, lets `script` talk, then expects the node to
/// close the connection and report a failed handshake matching `expect`.
async fn refused(
    node: &Node,
    expect: impl Fn(&HandshakeError) -> bool,
    script: impl AsyncFnOnce(&mut TcpStream),
) {
    let mut events = node.events();
    let mut client = TcpStream::connect(addr_of(node)).await.unwrap();
    let local = client.local_addr().unwrap();
    script(&mut client).await;
    read_to_close(&mut client).await;
    let error = wait_event(&mut events, |ev| match ev {
        NodeEvent::HandshakeFailed { addr, error, .. } if *addr == local => Some(error.clone()),
        _ => None,
    })
    .await;
    let ConnectionError::Handshake(error) = error else {
        panic!("not a handshake error: {error:?} ({error})");
    };
    assert!(expect(&error), "unexpected error: {error:?} ({error})");
    still_serves(node).await;
}

/// A raw client sends `bytes` and is refused with an error matching `expect`.
async fn refused_bytes(node: &Node, bytes: &[u8], expect: impl Fn(&HandshakeError) -> bool) {
    refused(node, expect, async |c| c.write_all(bytes).await.unwrap()).await;
}

/// Completes a good handshake as node `id`, sends `bytes`, then expects the
/// node to drop the connection with a framing error matching `expect`.
async fn closed_after_auth(
    node: &Node,
    id: &str,
    bytes: &[u8],
    expect: impl Fn(&FrameError) -> bool,
) {
    let mut events = node.events();
    let mut client = raw_handshake(&addr_of(node), client_cfg(id, SECRET))
        .await
        .unwrap()
        .stream;
    node_up(node, id).await;
    client.write_all(bytes).await.unwrap();
    read_to_close(&mut client).await;
    let error = wait_event(&mut events, |ev| match ev {
        NodeEvent::Down { node: n, error } if n == id => Some(error.clone()),
        _ => None,
    })
    .await;
    match &error {
        ConnectionError::Frame(e) if expect(e) => {}
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(!node.node_is_up(id));
    still_serves(node).await;
}

#[actix_rt::test]
async fn first_line_of_5000_bytes_without_newline_is_refused() {
    let node = listening_node("victim").await;
    refused_bytes(&node, &[b'a'; 5000], |e| {
        matches!(e, HandshakeError::LineTooLong { limit: 4096 })
    })
    .await;
}

#[actix_rt::test]
async fn slow_loris_is_closed_at_the_absolute_deadline() {
    let node = Node::builder()
        .node_id("victim")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .monitor_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let mut events = node.events();
    let mut client = TcpStream::connect(addr_of(&node)).await.unwrap();
    let local = client.local_addr().unwrap();
    let start = Instant::now();
    // one byte a second, never a whole line: an idle timeout would never fire
    let mut closed = false;
    for b in b"aemp;1;slowloris;hmac_md6_64_256;json".iter().take(8) {
        if client.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(
            Duration::from_secs(1),
            tokio::io::AsyncReadExt::read(&mut client, &mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        closed,
        "still open after trickling for {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "closed only after {:?}",
        start.elapsed()
    );
    let error = wait_event(&mut events, |ev| match ev {
        NodeEvent::HandshakeFailed { addr, error, .. } if *addr == local => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        error,
        ConnectionError::Handshake(HandshakeError::Timeout {
            timeout: Duration::from_secs(2)
        })
    );
    still_serves(&node).await;
}

#[actix_rt::test]
async fn a_silent_client_does_not_delay_other_handshakes() {
    let node = listening_node("victim").await;
    let _silent: Vec<TcpStream> = futures_connect(&addr_of(&node), 5).await;
    still_serves(&node).await;
}

async fn futures_connect(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
    }
    v
}

#[actix_rt::test]
async fn version_2_is_refused() {
    let node = listening_node("victim").await;
    refused_bytes(&node, b"aemp;2;x;hmac_md6_64_256;json\nnonce\n", |e| {
        e.to_string() == "version mismatch (we: 1, they: 2)"
    })
    .await;
}

#[actix_rt::test]
async fn protocol_xyz_is_refused() {
    let node = listening_node("victim").await;
    refused_bytes(&node, b"xyz;1;x;hmac_md6_64_256;json\nnonce\n", |e| {
        e.to_string() == "unparsable greeting, expected 'aemp', got 'xyz'"
    })
    .await;
}

#[actix_rt::test]
async fn our_own_node_id_is_refused() {
    let node = listening_node("victim").await;
    refused_bytes(&node, b"aemp;1;victim;hmac_md6_64_256;json\nnonce\n", |e| {
        *e == HandshakeError::TalkingToMyself
    })
    .await;
}

#[actix_rt::test]
async fn our_greeting_echoed_back_is_refused() {
    let node = listening_node("victim").await;
    refused(
        &node,
        |e| e.to_string() == "I refuse to talk to myself",
        async |c| {
            let mut r = BufReader::new(c);
            let (mut l1, mut l2) = (String::new(), String::new());
            r.read_line(&mut l1).await.unwrap();
            r.read_line(&mut l2).await.unwrap();
            r.get_mut()
                .write_all(format!("{l1}{l2}").as_bytes())
                .await
                .unwrap();
        },
    )
    .await;
}

#[actix_rt::test]
async fn our_nonce_echoed_under_another_id_is_refused() {
    let node = listening_node("victim").await;
    refused(
        &node,
        |e| *e == HandshakeError::IdenticalNonce,
        async |c| {
            let mut r = BufReader::new(c);
            let (mut l1, mut l2) = (String::new(), String::new());
            r.read_line(&mut l1).await.unwrap();
            r.read_line(&mut l2).await.unwrap();
            let line = format!("aemp;1;mallory;hmac_md6_64_256;json\n{l2}");
            r.get_mut().write_all(line.as_bytes()).await.unwrap();
        },
    )
    .await;
}

#[actix_rt::test]
async fn a_wrong_secret_is_refused() {
    let node = listening_node("victim").await;
    let mut events = node.events();
    let client = raw_handshake(&addr_of(&node), client_cfg("mallory", "wrong")).await;
    // our own check of the node's token fails first, or the node closes on us
    assert!(client.is_err(), "handshake with a wrong secret succeeded");
    let error = wait_event(&mut events, |ev| match ev {
        NodeEvent::HandshakeFailed { error, .. } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        error.to_string(),
        "authentication failure/shared secret mismatch"
    );
    assert!(!node.node_is_up("mallory"));
    still_serves(&node).await;
}

#[actix_rt::test]
async fn an_auth_method_we_do_not_accept_is_refused() {
    let node = Node::builder()
        .node_id("victim")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .auth_accept([AuthMethod::HmacMd6_64_256])
        .start()
        .await
        .unwrap();
    refused(
        &node,
        |e| e.to_string() == "cleartext: auth method not accepted",
        async |c| {
            // the right secret, but in cleartext
            let line = b"aemp;1;simple;hmac_md6_64_256;json\nnonce-of-simple\ncleartext;67656865696d;json\n";
            c.write_all(line).await.unwrap();
        },
    )
    .await;
}

#[actix_rt::test]
async fn cleartext_is_accepted_by_default() {
    let node = listening_node("victim").await;
    let (port, mut rx) = node.port_channel_named("inbox").unwrap();
    let mut c = TcpStream::connect(addr_of(&node)).await.unwrap();
    // the transport POD's "simple handshake for non-Perl nodes"
    c.write_all(
        b"aemp;1;pysimple;hmac_md6_64_256;json\nnonce-of-pysimple\ncleartext;67656865696d;json\n",
    )
    .await
    .unwrap();
    c.write_all(br#"["inbox","hello from a simple client"]"#)
        .await
        .unwrap();
    let msg = recv(&mut rx).await;
    assert_eq!(
        msg.decode::<(String,)>().unwrap().0,
        "hello from a simple client"
    );
    assert!(node.node_is_up("pysimple"));
    node.kil(&port, vec![]).unwrap();
}

#[actix_rt::test]
async fn no_common_framing_is_refused() {
    let node = listening_node("victim").await;
    refused_bytes(
        &node,
        b"aemp;1;x;hmac_md6_64_256;msgpack,bogus\nnonce\n",
        |e| e.to_string() == "msgpack,bogus: no common framing method supported",
    )
    .await;
}

#[actix_rt::test]
async fn nothing_before_authentication_reaches_a_port() {
    let node = listening_node("victim").await;
    let (port, mut rx) = node.port_channel_named("inbox").unwrap();
    refused(
        &node,
        |e| *e == HandshakeError::AuthFailure,
        async |c| {
            let bytes = b"aemp;1;x;hmac_md6_64_256;json\nnonce\nhmac_md6_64_256;00;json\n[\"inbox\",\"smuggled\"]";
            c.write_all(bytes).await.unwrap();
        },
    )
    .await;
    assert_silent(&mut rx, Duration::from_millis(200)).await;
    node.kil(&port, vec![]).unwrap();
}

#[actix_rt::test]
async fn garbage_after_a_good_handshake_closes_the_connection() {
    let node = listening_node("victim").await;
    let mut events = node.events();
    let mut client = raw_handshake(&addr_of(&node), client_cfg("garbler", SECRET))
        .await
        .unwrap()
        .stream;
    node_up(&node, "garbler").await;
    client.write_all(b"[1,2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"}}}").await.unwrap();
    read_to_close(&mut client).await;
    let error = wait_event(&mut events, |ev| match ev {
        NodeEvent::Down { node, error } if node == "garbler" => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(error, ConnectionError::Frame(FrameError::DestNotString));
    still_serves(&node).await;
}

#[actix_rt::test]
async fn invalid_json_after_a_good_handshake_closes_the_connection() {
    let node = listening_node("victim").await;
    closed_after_auth(&node, "badjson", br#"["inbox",tru]"#, |e| {
        matches!(e, FrameError::InvalidJson(_))
    })
    .await;
}

#[actix_rt::test]
async fn a_packet_that_is_not_an_array_closes_the_connection() {
    let node = listening_node("victim").await;
    closed_after_auth(&node, "objecter", br#"{"inbox":1}"#, |e| {
        *e == FrameError::NotAnArray
    })
    .await;
}

#[actix_rt::test]
async fn a_number_as_destination_closes_the_connection() {
    let node = listening_node("victim").await;
    closed_after_auth(&node, "numberer", br#"[5, "x"]"#, |e| {
        *e == FrameError::DestNotString
    })
    .await;
}

#[actix_rt::test]
async fn a_hundred_thousand_open_brackets_close_the_connection() {
    let node = listening_node("victim").await;
    // the second `[` is already a destination that is not a string
    closed_after_auth(&node, "bracketer", &[b'['; 100_000], |e| {
        *e == FrameError::DestNotString
    })
    .await;
}

#[actix_rt::test]
async fn nesting_beyond_the_limit_closes_the_connection() {
    let node = listening_node("victim").await;
    let bytes = [&br#"["inbox","#[..], &[b'['; 100_000]].concat();
    closed_after_auth(&node, "nester", &bytes, |e| {
        *e == FrameError::TooDeep { limit: 512 }
    })
    .await;
}

#[actix_rt::test]
async fn keepalives_and_string_numbers_are_fine() {
    let node = listening_node("victim").await;
    let (port, mut rx) = node.port_channel_named("inbox").unwrap();
    let mut client = raw_handshake(&addr_of(&node), client_cfg("perlish", SECRET))
        .await
        .unwrap()
        .stream;
    client
        .write_all(br#"[][]["inbox","n","1"][ ]["inbox","n",2]"#)
        .await
        .unwrap();
    for want in [1u32, 2] {
        let (_, n): (String, aemp::Lenient<u32>) = recv(&mut rx).await.decode().unwrap();
        assert_eq!(n.0, want);
    }
    assert!(node.node_is_up("perlish"));
    node.kil(&port, vec![]).unwrap();
}

#[actix_rt::test]
async fn self_relays_nested_without_end_are_cut_off() {
    // ["", "snd", "victim", "snd", "victim", …, "inbox", "deep"]: each
    // level relays the rest to our own node port again; Perl recurses
    // until its stack is gone
    let node = listening_node("victim").await;
    let (port, mut rx) = node.port_channel_named("inbox").unwrap();
    let mut msg = vec![serde_json::json!("")];
    for _ in 0..100_000 {
        msg.extend([serde_json::json!("snd"), serde_json::json!("victim")]);
    }
    msg.extend([serde_json::json!("inbox"), serde_json::json!("deep")]);
    let mut peer = RawPeer::connect(&node, "relayer").await;
    peer.send(serde_json::Value::Array(msg)).await;
    // a shallow chain still works, and the node still serves
    peer.send(serde_json::json!([
        "",
        "snd",
        "victim",
        "snd",
        "victim#inbox",
        "shallow"
    ]))
    .await;
    let (text,): (String,) = recv(&mut rx).await.decode().unwrap();
    assert_eq!(text, "shallow");
    assert_silent(&mut rx, std::time::Duration::from_millis(200)).await;
    still_serves(&node).await;
    node.kil(&port, vec![]).unwrap();
}

//! Data connections (`aemp-dataconn`): raw streams between two nodes,
//! set up through `AnyEvent::MP::DataConn::_expect`, a round trip, and a
//! dial in either direction.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aemp::dataconn::{self, DataConnError, REASON_TAG};
use aemp::wire::{Event, Handshake, NodeCert};
use aemp::{DataStream, HandlerError, Node};
use bytes::BytesMut;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const T5: Duration = Duration::from_secs(5);

/// What an init function saw: the init data, the peer, and (for the sink)
/// the bytes it read.
type Seen = (Vec<Value>, String, Vec<u8>);

/// Echoes the stream back.
fn echo(_: &Node, _: Vec<Value>, stream: DataStream) -> Result<(), HandlerError> {
    actix_rt::spawn(async move {
        let (mut r, mut w) = tokio::io::split(stream);
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    });
    Ok(())
}

/// An init function that reads the stream to its end and reports it (a
/// read error is appended as `<error>`).
fn sink(
    tx: mpsc::UnboundedSender<Seen>,
) -> impl Fn(&Node, Vec<Value>, DataStream) -> Result<(), HandlerError> + Send + Sync + 'static {
    move |_, initdata, mut stream| {
        let tx = tx.clone();
        actix_rt::spawn(async move {
            let mut all = Vec::new();
            if let Err(e) = stream.read_to_end(&mut all).await {
                all.extend_from_slice(format!("<{e}>").as_bytes());
            }
            let _ = tx.send((initdata, stream.peer_node().to_owned(), all));
        });
        Ok(())
    }
}

/// A target node with `T::echo` and `T::sink`.
async fn target(id: &str, bind: bool) -> (Node, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut b = Node::builder()
        .node_id(id)
        .secret(SECRET)
        .dataconn_init("T::echo", echo)
        .dataconn_init("T::sink", sink(tx));
    if bind {
        b = b.bind("127.0.0.1:0");
    }
    (b.start().await.unwrap(), rx)
}

async fn plain_node(id: &str, bind: bool) -> Node {
    let mut b = Node::builder().node_id(id).secret(SECRET);
    if bind {
        b = b.bind("127.0.0.1:0");
    }
    b.start().await.unwrap()
}

/// Writes `data` and reads the echo back at the same time.
async fn round_trip(stream: DataStream, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let data = data.to_vec();
    let writer = async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let reader = async move {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) = tokio::time::timeout(WAIT, futures_join(writer, reader))
        .await
        .expect("echo within the wait");
    back
}

async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the init function reports within the wait")
        .expect("channel open")
}

#[actix_rt::test]
async fn the_requester_dials_and_bytes_flow_both_ways() {
    let (t, mut seen_rx) = target("dt", true).await;
    let r = plain_node("dr", false).await;
    r.connect(addr_of(&t)).await.unwrap();

    let s = dataconn::connect_to(&r, "dt", T5, "T::echo", vec![])
        .await
        .unwrap();
    assert_eq!((s.peer_node(), s.is_local()), ("dt", false));
    assert!(s.id().ends_with("@dr"), "{}", s.id());
    let data = pattern(1 << 20);
    assert_eq!(round_trip(s, &data).await, data);

    // again, to a port id of the target, with init data; R has no
    // listener, so this works only if Global still lists T's address
    let mut s = dataconn::connect_to(&r, "dt#whatever", T5, "T::sink", vec![json!("x"), json!(2)])
        .await
        .unwrap();
    s.write_all(b"to the sink").await.unwrap();
    s.shutdown().await.unwrap();
    let (initdata, peer, bytes) = seen(&mut seen_rx).await;
    assert_eq!(initdata, vec![json!("x"), json!(2)]);
    assert_eq!(peer, "dr");
    assert_eq!(bytes, b"to the sink");
    r.shutdown();
    t.shutdown();
}

#[actix_rt::test]
async fn a_target_without_listeners_dials_back() {
    let (t, mut seen_rx) = target("ct", false).await;
    let r = plain_node("cr", true).await;
    t.connect(addr_of(&r)).await.unwrap();
    let s = dataconn::connect_to(&r, "ct", T5, "T::echo", vec![])
        .await
        .unwrap();
    assert_eq!(s.peer_node(), "ct");
    let data = pattern(300_000);
    assert_eq!(round_trip(s, &data).await, data);

    let mut s = dataconn::connect_to(&r, "ct", T5, "T::sink", vec![json!(1)])
        .await
        .unwrap();
    s.write_all(b"back").await.unwrap();
    drop(s);
    assert_eq!(
        seen(&mut seen_rx).await,
        (vec![json!(1)], "cr".into(), b"back".to_vec())
    );
    r.shutdown();
    t.shutdown();
}

#[actix_rt::test]
async fn data_connections_use_tls_between_tls_nodes() {
    let pem = std::fs::read_to_string("tests/fixtures/certs/gencert-openssl.pem").unwrap();
    let cert = || NodeCert::from_pem(&pem).unwrap();
    let t = Node::builder()
        .node_id("tt")
        .cert(cert())
        .bind("127.0.0.1:0")
        .dataconn_init("T::echo", echo)
        .start()
        .await
        .unwrap();
    let r = Node::builder()
        .node_id("tr")
        .cert(cert())
        .start()
        .await
        .unwrap();
    r.connect(addr_of(&t)).await.unwrap();
    assert!(r.peer_auth("tt").unwrap().tls());
    let s = dataconn::connect_to(&r, "tt", T5, "T::echo", vec![])
        .await
        .unwrap();
    let data = pattern(200_000);
    assert_eq!(round_trip(s, &data).await, data);
    r.shutdown();
    t.shutdown();
}

#[actix_rt::test]
async fn a_local_target_gets_a_pipe() {
    let (n, mut seen_rx) = target("lo", false).await;
    let mut s = dataconn::connect_to(&n, "lo", T5, "T::sink", vec![json!("l")])
        .await
        .unwrap();
    assert!(s.is_local());
    s.write_all(b"local").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(
        seen(&mut seen_rx).await,
        (vec![json!("l")], "lo".into(), b"local".to_vec())
    );
    // an unknown init function fails at once
    let e = dataconn::connect_to(&n, "lo", T5, "T::nope", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(e, DataConnError::UnknownInit(ref f) if f == "T::nope"),
        "{e}"
    );
    n.shutdown();
}

/// Ports of `node` after a data connection: no probe port and no
/// temporary caller port is left behind, after success or failure.
#[actix_rt::test]
async fn no_port_is_left_behind() {
    let (t, _seen) = target("pt", true).await;
    let r = plain_node("pr", false).await;
    r.connect(addr_of(&t)).await.unwrap();
    // the first one also waits for the Global exchange to settle
    drop(
        dataconn::connect_to(&r, "pt", T5, "T::echo", vec![])
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (before_r, before_t) = (r.port_count(), t.port_count());
    for _ in 0..3 {
        drop(
            dataconn::connect_to(&r, "pt", T5, "T::echo", vec![])
                .await
                .unwrap(),
        );
    }
    let e = dataconn::connect_to(&r, "pt", T5, "T::nope", vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, DataConnError::Killed(_)), "{e}");
    until("the ports to go", || r.port_count() == before_r).await;
    assert_eq!(t.port_count(), before_t);
    r.shutdown();
    t.shutdown();
}

// --- raw peers --------------------------------------------------------------

/// Dials `addr` as data connection `id` from node `me`; `extra` goes out in
/// the same write as the auth line. Returns the stream and what arrived
/// after the peer's auth line.
async fn raw_dataconn(
    addr: &str,
    me: &str,
    id: &str,
    extra: &[u8],
) -> Result<(TcpStream, BytesMut), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut hs = Handshake::new_dataconn(
        Arc::new(client_cfg(me, SECRET)),
        None,
        nonce(),
        Instant::now(),
        id,
    )
    .map_err(|e| e.to_string())?;
    s.write_all(&hs.greeting())
        .await
        .map_err(|e| e.to_string())?;
    let mut input = BytesMut::new();
    loop {
        match hs.advance(&mut input).map_err(|e| e.to_string())? {
            Some(Event::SendAuth) => {
                let mut out = Vec::new();
                let done = hs.grant(&mut out).map_err(|e| e.to_string())?;
                out.extend_from_slice(extra);
                s.write_all(&out).await.map_err(|e| e.to_string())?;
                if done.is_some() {
                    return Ok((s, input));
                }
            }
            Some(Event::Established(_)) => return Ok((s, input)),
            Some(other) => return Err(format!("unexpected {other:?}")),
            None => {
                let n = tokio::time::timeout(WAIT, s.read_buf(&mut input))
                    .await
                    .map_err(|_| "timeout")?
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed during handshake".into());
                }
            }
        }
    }
}

/// A raw peer `me` sends `_expect` for `id` to `node` and waits for the
/// round trip, as a requester does.
async fn raw_expect(peer: &mut RawPeer, me: &str, id: &str, timeout: Value, init: &str) {
    send_expect(peer, me, id, timeout, init).await;
    peer.send(json!(["", "snd", format!("{me}#probe")])).await;
    let p = peer.recv_until(|p| p[0] == "probe").await;
    assert_eq!(p, json!(["probe"]));
}

/// Just the `_expect`.
async fn send_expect(peer: &mut RawPeer, me: &str, id: &str, timeout: Value, init: &str) {
    peer.send(json!([
        "",
        dataconn::EXPECT_FUNCTION,
        id,
        format!("{me}#caller"),
        timeout,
        init,
        "d"
    ]))
    .await;
}

/// The kil of our `caller` port that `node` sends.
async fn caller_kil(peer: &mut RawPeer) -> Value {
    peer.recv_until(|p| p[0] == "" && p[1] == "kil").await
}

#[actix_rt::test]
async fn the_stream_starts_right_after_the_auth_line_and_only_the_requester_may_use_its_id() {
    let (t, mut seen_rx) = target("st", true).await;
    let mut ra = RawPeer::connect(&t, "rawa").await;
    raw_expect(&mut ra, "rawa", "7@rawa", json!(5), "T::sink").await;

    // another node with rawa's id: closed without a byte, no init
    let (mut s, rest) = raw_dataconn(&addr_of(&t), "rawb", "7@rawa", b"stolen")
        .await
        .unwrap();
    assert!(rest.is_empty());
    assert_eq!(read_to_close(&mut s).await, b"");
    // an unknown id: the same
    let (mut s, _) = raw_dataconn(&addr_of(&t), "rawa", "8@rawa", b"x")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut s).await, b"");
    assert!(seen_rx.try_recv().is_err(), "no init function ran");

    // the requester itself, with bytes in the same write as its auth line
    let (mut s, _) = raw_dataconn(&addr_of(&t), "rawa", "7@rawa", b"first bytes;")
        .await
        .unwrap();
    s.write_all(b" more").await.unwrap();
    s.shutdown().await.unwrap();
    let (initdata, peer, bytes) = seen(&mut seen_rx).await;
    assert_eq!((initdata, peer), (vec![json!("d")], "rawa".to_owned()));
    assert_eq!(bytes, b"first bytes; more");
    // the id is used up
    let (mut s, _) = raw_dataconn(&addr_of(&t), "rawa", "7@rawa", b"x")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut s).await, b"");
    t.shutdown();
}

#[actix_rt::test]
async fn the_expecting_side_kills_the_caller_port_when_its_wait_runs_out() {
    let (t, _seen) = target("et", true).await;
    let mut ra = RawPeer::connect(&t, "rawe").await;
    let start = Instant::now();
    raw_expect(&mut ra, "rawe", "1@rawe", json!(0.5), "T::echo").await;
    let kil = caller_kil(&mut ra).await;
    assert_eq!(kil, json!(["", "kil", "caller", REASON_TAG, null]));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    t.shutdown();
}

#[actix_rt::test]
async fn a_peers_timeout_is_clamped() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let t = Node::builder()
        .node_id("kt")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .dataconn_init("T::sink", sink(tx))
        .dataconn_max_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let mut ra = RawPeer::connect(&t, "rawk").await;
    let start = Instant::now();
    raw_expect(&mut ra, "rawk", "1@rawk", json!(1e9), "T::sink").await;
    let kil = caller_kil(&mut ra).await;
    assert_eq!(kil, json!(["", "kil", "caller", REASON_TAG, null]));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    t.shutdown();
}

#[actix_rt::test]
async fn pending_expects_per_peer_are_bounded_and_bad_requests_refused() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let t = Node::builder()
        .node_id("bt")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .dataconn_init("T::sink", sink(tx))
        .dataconn_max_pending(2)
        .start()
        .await
        .unwrap();
    let mut ra = RawPeer::connect(&t, "rawp").await;
    raw_expect(&mut ra, "rawp", "1@rawp", json!(30), "T::sink").await;
    raw_expect(&mut ra, "rawp", "2@rawp", json!(30), "T::sink").await;
    send_expect(&mut ra, "rawp", "3@rawp", json!(30), "T::sink").await;
    let kil = caller_kil(&mut ra).await;
    assert_eq!(
        kil,
        json!([
            "",
            "kil",
            "caller",
            REASON_TAG,
            "too many pending data connections"
        ])
    );
    // counted as a limit hit of that peer
    assert_eq!(
        t.limit_hit_count("rawp", aemp::Limit::DataconnExpectations),
        1
    );
    assert_eq!(
        t.limit_hits(),
        vec![("rawp".to_owned(), aemp::Limit::DataconnExpectations, 1)]
    );
    // an unknown init function is refused at once
    let mut rb = RawPeer::connect(&t, "rawq").await;
    send_expect(&mut rb, "rawq", "1@rawq", json!(30), "T::nope").await;
    let kil = caller_kil(&mut rb).await;
    assert_eq!(
        kil,
        json!([
            "",
            "kil",
            "caller",
            REASON_TAG,
            "unable to resolve function 'T::nope'"
        ])
    );
    // a caller port on another node: ignored, nothing killed there
    rb.send(json!([
        "",
        dataconn::EXPECT_FUNCTION,
        "2@rawq",
        "rawp#x",
        1,
        "T::sink"
    ]))
    .await;
    rb.assert_silent(Duration::from_millis(1500)).await;
    still_serves(&t).await;
    t.shutdown();
}

#[actix_rt::test]
async fn no_listeners_on_the_requester_is_reported_with_the_reference_reason() {
    let (t, _seen) = target("nt", true).await;
    let mut ra = RawPeer::connect(&t, "rawn").await;
    raw_expect(&mut ra, "rawn", "1@rawn", json!(5), "T::echo").await;
    // rawn told Global nothing: it has no listeners as far as nt knows
    ra.send(json!(["", dataconn::CONNECT_FUNCTION, "1@rawn", "rawn"]))
        .await;
    let kil = caller_kil(&mut ra).await;
    assert_eq!(
        kil,
        json!(["", "kil", "caller", REASON_TAG, "rawn: no listeners found"])
    );
    t.shutdown();
}

/// A raw target `me` connected to `node`: opens Global as a listener-less
/// Perl node would (`addr []`), so `node` asks it to dial back.
async fn raw_target(node: &Node, me: &str) -> RawPeer {
    let mut peer = RawPeer::connect(node, me).await;
    peer.send(json!([
        "",
        "AnyEvent::MP::_spawn",
        "g",
        "AnyEvent::MP::Global::connect",
        0,
        me
    ]))
    .await;
    peer.send(json!(["g", "addr", []])).await;
    peer.send(json!(["g", "setup"])).await;
    peer
}

/// What a requester sent the raw target: the `_expect` and the probe.
async fn expected_by(peer: &mut RawPeer) -> (Value, String) {
    let expect = peer
        .recv_until(|p| p[0] == "" && p[1] == dataconn::EXPECT_FUNCTION)
        .await;
    let probe = peer.recv_until(|p| p[0] == "" && p[1] == "snd").await;
    let probe = probe[2].as_str().unwrap().to_owned();
    (expect, probe)
}

#[actix_rt::test]
async fn the_requester_takes_the_stream_only_from_the_target() {
    let r = plain_node("wr", true).await;
    let mut rt = raw_target(&r, "rawt").await;
    let req = {
        let r = r.clone();
        actix_rt::spawn(async move {
            dataconn::connect_to(&r, "rawt", T5, "X::init", vec![json!(9)]).await
        })
    };
    let (expect, probe) = expected_by(&mut rt).await;
    let id = expect[2].as_str().unwrap().to_owned();
    assert_eq!(expect[3].as_str().unwrap().split('#').next(), Some("wr"));
    assert_eq!(
        (&expect[4], &expect[5], &expect[6]),
        (&json!(5), &json!("X::init"), &json!(9))
    );
    assert!(id.ends_with("@wr"), "{id}");
    rt.send(json!([probe.split('#').nth(1).unwrap()])).await;
    let connect = rt
        .recv_until(|p| p[0] == "" && p[1] == dataconn::CONNECT_FUNCTION)
        .await;
    assert_eq!(connect, json!(["", dataconn::CONNECT_FUNCTION, id, "wr"]));

    // some other node with the id: closed
    let (mut s, _) = raw_dataconn(&addr_of(&r), "rawx", &id, b"x").await.unwrap();
    assert_eq!(read_to_close(&mut s).await, b"");
    // the target: the requester gets the stream, bytes after the auth line
    // included
    let (mut s, _) = raw_dataconn(&addr_of(&r), "rawt", &id, b"hi")
        .await
        .unwrap();
    let mut stream = tokio::time::timeout(WAIT, req)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut two = [0; 2];
    stream.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"hi");
    stream.write_all(b"yo").await.unwrap();
    s.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"yo");
    r.shutdown();
}

#[actix_rt::test]
async fn the_requesters_timeout_kills_its_caller_port_with_the_reference_reason() {
    let r = plain_node("or", true).await;
    let mut rt = raw_target(&r, "rawo").await;
    let (caller, _inbox) = r.port_channel();
    let (report, mut reasons) = reporter();
    r.mon(&caller, report).forget();
    let start = Instant::now();
    let e = dataconn::connect_to_as(
        &r,
        &caller,
        "rawo",
        Duration::from_millis(700),
        "X::y",
        vec![],
    )
    .await
    .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(650));
    assert_eq!(
        e.to_string(),
        "rawo: unable to establish connection within 0.7 seconds"
    );
    assert_eq!(
        reason(&mut reasons).await,
        vec![
            json!(REASON_TAG),
            json!("rawo: unable to establish connection within 0.7 seconds")
        ]
    );
    // the target saw the request, never answered the probe
    let (expect, _) = expected_by(&mut rt).await;
    assert_eq!(expect[4], json!(0.7));
    r.shutdown();
}

#[actix_rt::test]
async fn a_kil_from_the_target_ends_the_attempt() {
    let r = plain_node("kr", true).await;
    let mut rt = raw_target(&r, "rawkt").await;
    let req = {
        let r = r.clone();
        actix_rt::spawn(async move { dataconn::connect_to(&r, "rawkt", T5, "X::y", vec![]).await })
    };
    let (expect, _) = expected_by(&mut rt).await;
    let caller = expect[3]
        .as_str()
        .unwrap()
        .split('#')
        .nth(1)
        .unwrap()
        .to_owned();
    rt.send(json!([
        "",
        "kil",
        caller,
        REASON_TAG,
        "rawkt: no listeners found"
    ]))
    .await;
    let e = tokio::time::timeout(WAIT, req)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    match e {
        DataConnError::Killed(reason) => {
            assert_eq!(
                reason,
                vec![json!(REASON_TAG), json!("rawkt: no listeners found")]
            )
        }
        other => panic!("{other}"),
    }
    r.shutdown();
}

/// A raw data connection over TLS as node `me`: TLS after the greeting
/// lines, the auth line and `extra` inside TLS. Returns the TLS stream.
async fn raw_tls_dataconn(
    addr: &str,
    me: &str,
    id: &str,
    pem: &str,
    extra: &[u8],
) -> Result<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, String> {
    use aemp::wire::TlsConfigs;
    let configs = TlsConfigs::new(Arc::new(NodeCert::from_pem(pem).unwrap())).unwrap();
    let mut cfg = client_cfg(me, SECRET);
    cfg.tls = true;
    let mut hs = Handshake::new_dataconn(Arc::new(cfg), None, nonce(), Instant::now(), id)
        .map_err(|e| e.to_string())?;
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(&hs.greeting())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let client = loop {
        match hs.advance(&mut buf).map_err(|e| e.to_string())? {
            Some(Event::StartTls { client }) => break client,
            Some(other) => return Err(format!("unexpected {other:?}")),
            None => {}
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(&mut buf))
            .await
            .map_err(|_| "timeout")?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before TLS".into());
        }
    };
    let (r, w) = s.into_split();
    let io = tokio::io::join(std::io::Cursor::new(buf.split().freeze()).chain(r), w);
    let mut t: tokio_rustls::TlsStream<_> = if client {
        let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let c = tokio_rustls::TlsConnector::from(configs.client.clone());
        c.connect(name, io).await.map_err(|e| e.to_string())?.into()
    } else {
        let a = tokio_rustls::TlsAcceptor::from(configs.server.clone());
        a.accept(io).await.map_err(|e| e.to_string())?.into()
    };
    loop {
        match hs.advance(&mut buf).map_err(|e| e.to_string())? {
            Some(Event::SendAuth) => {
                let mut out = Vec::new();
                let done = hs.grant(&mut out).map_err(|e| e.to_string())?;
                out.extend_from_slice(extra);
                t.write_all(&out).await.map_err(|e| e.to_string())?;
                t.flush().await.map_err(|e| e.to_string())?;
                if done.is_some() {
                    return Ok(t);
                }
            }
            Some(Event::Established(_)) => return Ok(t),
            Some(other) => return Err(format!("unexpected {other:?}")),
            None => {
                let n = tokio::time::timeout(WAIT, t.read_buf(&mut buf))
                    .await
                    .map_err(|_| "timeout")?
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed inside TLS".into());
                }
            }
        }
    }
}

/// Over TLS the bytes sent with the auth line arrive too, and a peer that
/// closes without `close_notify` (as Perl's does) ends the stream like a
/// plain end of file.
#[actix_rt::test]
async fn over_tls_a_close_without_close_notify_is_a_plain_end() {
    let pem = std::fs::read_to_string("tests/fixtures/certs/gencert-openssl.pem").unwrap();
    let (tx, mut seen_rx) = mpsc::unbounded_channel();
    let t = Node::builder()
        .node_id("ut")
        .secret(SECRET)
        .cert(NodeCert::from_pem(&pem).unwrap())
        .bind("127.0.0.1:0")
        .dataconn_init("T::sink", sink(tx))
        .start()
        .await
        .unwrap();
    // the node connection is plain (the raw peer announces no TLS)
    let mut ra = RawPeer::connect(&t, "rawu").await;
    raw_expect(&mut ra, "rawu", "1@rawu", json!(5), "T::sink").await;
    let addr = addr_of(&t);
    let mut s = raw_tls_dataconn(&addr, "rawu", "1@rawu", &pem, b"inside")
        .await
        .unwrap();
    s.write_all(b" tls").await.unwrap();
    s.flush().await.unwrap();
    drop(s); // no close_notify, just the TCP close
    let (_, peer, bytes) = seen(&mut seen_rx).await;
    assert_eq!(peer, "rawu");
    assert_eq!(String::from_utf8_lossy(&bytes), "inside tls");
    t.shutdown();
}

/// When Global knows nothing of the target's listeners yet, the requester
/// waits for the target's next `addr`/`setup` before it picks a way.
#[actix_rt::test]
async fn the_requester_waits_for_global_to_learn_the_targets_listeners() {
    let r = plain_node("gr", true).await;
    let mut rt = RawPeer::connect(&r, "rawg").await;
    let req = {
        let r = r.clone();
        actix_rt::spawn(async move { dataconn::connect_to(&r, "rawg", T5, "X::y", vec![]).await })
    };
    let (expect, probe) = expected_by(&mut rt).await;
    let id = expect[2].as_str().unwrap().to_owned();
    rt.send(json!([probe.split('#').nth(1).unwrap()])).await;
    // nothing known yet: no `_connect`, and no dial
    rt.assert_silent(Duration::from_millis(500)).await;
    rt.send(json!([
        "",
        "AnyEvent::MP::_spawn",
        "g",
        "AnyEvent::MP::Global::connect",
        0,
        "rawg"
    ]))
    .await;
    rt.send(json!(["g", "addr", []])).await;
    rt.send(json!(["g", "setup"])).await;
    let connect = rt
        .recv_until(|p| p[0] == "" && p[1] == dataconn::CONNECT_FUNCTION)
        .await;
    assert_eq!(connect, json!(["", dataconn::CONNECT_FUNCTION, id, "gr"]));
    let (mut s, _) = raw_dataconn(&addr_of(&r), "rawg", &id, b"late")
        .await
        .unwrap();
    let mut stream = tokio::time::timeout(WAIT, req)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut four = [0; 4];
    stream.read_exact(&mut four).await.unwrap();
    assert_eq!(&four, b"late");
    drop(stream);
    assert_eq!(read_to_close(&mut s).await, b"");
    r.shutdown();
}

/// A node connection we dial stays one: a peer that answers as a data
/// connection is refused at its greeting.
#[actix_rt::test]
async fn a_dialled_node_connection_is_not_upgraded_by_the_peer() {
    let n = plain_node("ur", false).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let peer = actix_rt::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"aemp-dataconn;1;rawu2;hmac_md6_64_256;json;dataconn_id=1@rawu2\nnonce\n")
            .await
            .unwrap();
        read_to_close(&mut s).await
    });
    let e = tokio::time::timeout(WAIT, n.connect(addr))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unparsable greeting, expected 'aemp', got 'aemp-dataconn'"
    );
    let seen = String::from_utf8(peer.await.unwrap()).unwrap();
    assert!(seen.starts_with("aemp;1;ur;"), "{seen}");
    assert_eq!(seen.lines().count(), 2, "no auth line was sent: {seen}");
    n.shutdown();
}

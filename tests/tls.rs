//! TLS between nodes: with a certificate, the greeting announces
//! `tls=1.0` and a peer that announces it too talks TLS after the
//! greeting lines, authenticated by the certificate (no secret needed),
//! with the reference's trust rules.

mod common;

use std::time::Duration;

use aemp::Node;
use aemp::wire::NodeCert;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn gencert() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

async fn tls_node(id: &str, pem: &str, bind: bool) -> Node {
    let mut b = Node::builder()
        .node_id(id)
        .cert(NodeCert::from_pem(pem).unwrap());
    if bind {
        b = b.bind("127.0.0.1:0");
    }
    b.start().await.unwrap()
}

#[actix_rt::test]
async fn nodes_sharing_a_gencert_certificate_talk_without_a_secret() {
    let pem = gencert();
    let a = tls_node("ta", &pem, true).await;
    let b = tls_node("tb", &pem, false).await;
    let (port, mut rx) = a.port_channel_named("inbox").unwrap();
    let up = tokio::time::timeout(WAIT, b.connect(addr_of(&a)))
        .await
        .unwrap();
    assert_eq!(up.as_deref(), Ok("ta"));
    b.snd(&port, &("over", "tls")).unwrap();
    assert_eq!(
        recv(&mut rx).await.decode::<(String, String)>().unwrap().1,
        "tls"
    );
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn a_foreign_certificate_is_refused_on_both_sides() {
    let a = tls_node("fa", &gencert(), true).await;
    let b = tls_node("fb", &gencert(), false).await;
    let r = tokio::time::timeout(WAIT, b.connect(addr_of(&a)))
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert!(!a.node_is_up("fb") && !b.node_is_up("fa"));
    still_serves_tls(&a).await;
    a.shutdown();
    b.shutdown();
}

#[actix_rt::test]
async fn one_side_without_a_certificate_needs_a_secret() {
    let a = tls_node("oa", &gencert(), true).await;
    let b = Node::builder().node_id("ob").start().await.unwrap();
    let r = tokio::time::timeout(WAIT, b.connect(addr_of(&a)))
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(e) if e.to_string().contains("unable to handshake TLS and no shared secret configured")),
        "{r:?}"
    );
    // with a secret on both sides, they talk hmac over plain text
    let c = Node::builder()
        .node_id("oc")
        .secret(SECRET)
        .cert(NodeCert::from_pem(&gencert()).unwrap())
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let d = Node::builder()
        .node_id("od")
        .secret(SECRET)
        .start()
        .await
        .unwrap();
    let up = tokio::time::timeout(WAIT, d.connect(addr_of(&c)))
        .await
        .unwrap();
    assert_eq!(up.as_deref(), Ok("oc"));
    for n in [a, b, c, d] {
        n.shutdown();
    }
}

/// A peer that announces TLS, then speaks plain text: refused, and the
/// node goes on serving.
#[actix_rt::test]
async fn a_peer_announcing_tls_then_speaking_plain_text_is_refused() {
    let a = tls_node("pa", &gencert(), true).await;
    let mut s = TcpStream::connect(addr_of(&a)).await.unwrap();
    s.write_all(b"aemp;1;plain;tls_md6_64_256;json;tls=1.0\n~nonce\n")
        .await
        .unwrap();
    s.write_all(b"tls_md6_64_256;00;json\n[\"inbox\",1]")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "not closed");
    assert!(!a.node_is_up("plain"));
    still_serves_tls(&a).await;
    a.shutdown();
}

/// A TLS peer with `node`'s own certificate gets in and is heard.
async fn still_serves_tls(node: &Node) {
    let cert = node.config().cert.clone().expect("a TLS node");
    let other = Node::builder()
        .node_id(format!("{}-prober", node.id()))
        .cert((*cert).clone())
        .start()
        .await
        .unwrap();
    let (port, mut rx) = node.port_channel();
    let up = tokio::time::timeout(WAIT, other.connect(addr_of(node)))
        .await
        .unwrap();
    assert!(up.is_ok(), "{up:?}");
    other.snd(&port, &("probe",)).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert!(matches!(got, Ok(Some(_))), "the probe did not arrive");
    other.shutdown();
}

/// A stream that yields `prefix` before what `inner` reads.
struct Prefixed {
    prefix: bytes::BytesMut,
    inner: TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use bytes::Buf;
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A hand-driven TLS peer named `id` on socket `s` with nonce line `nonce`
/// (`!…` sorts before the node's base64 nonce: we are the TLS client;
/// `~…` after: the TLS server). Returns whether it was the TLS client,
/// once both auth lines are through, and the connection (the node sees
/// the peer up while it is open).
async fn raw_tls_peer(
    s: TcpStream,
    id: &str,
    pem: &str,
    nonce: &str,
) -> Result<(bool, tokio_rustls::TlsStream<Prefixed>), String> {
    use aemp::wire::{Event, Handshake, HandshakeConfig, Nonce, TlsConfigs};
    use std::sync::Arc;
    let configs = TlsConfigs::new(Arc::new(NodeCert::from_pem(pem).unwrap())).unwrap();
    let mut cfg = HandshakeConfig::new(id, None);
    cfg.tls = true;
    let mut hs = Handshake::new(
        Arc::new(cfg),
        None,
        Nonce::from_line(nonce),
        std::time::Instant::now(),
    );
    let mut s = s;
    s.write_all(&hs.greeting())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = bytes::BytesMut::new();
    let client = loop {
        match hs.advance(&mut buf).map_err(|e| e.to_string())? {
            Some(Event::StartTls { client }) => break client,
            Some(_) => continue,
            None => {}
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(&mut buf))
            .await
            .map_err(|_| "timeout")?;
        if n.map_err(|e| e.to_string())? == 0 {
            return Err("closed before TLS".into());
        }
    };
    let io = Prefixed {
        prefix: buf.split(),
        inner: s,
    };
    let mut t: tokio_rustls::TlsStream<Prefixed> = if client {
        let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let c = tokio_rustls::TlsConnector::from(configs.client.clone());
        c.connect(name, io).await.map_err(|e| e.to_string())?.into()
    } else {
        let a = tokio_rustls::TlsAcceptor::from(configs.server.clone());
        a.accept(io).await.map_err(|e| e.to_string())?.into()
    };
    let mut out = Vec::new();
    loop {
        match hs.advance(&mut buf).map_err(|e| e.to_string())? {
            Some(Event::ClaimSlot { .. }) => {
                let done = hs.grant(&mut out).map_err(|e| e.to_string())?;
                t.write_all(&out).await.map_err(|e| e.to_string())?;
                t.flush().await.map_err(|e| e.to_string())?;
                out.clear();
                if done.is_some() {
                    break;
                }
            }
            Some(Event::Established(_)) => break,
            Some(_) => {}
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
    Ok((client, t))
}

/// Every combination of who dials and who is the TLS client completes.
#[actix_rt::test]
async fn all_four_combinations_of_dialler_and_tls_client_work() {
    let pem = gencert();
    for (nonce, peer_is_client) in [("!first", true), ("~last", false)] {
        // the peer dials the node
        let node = tls_node(&format!("dialled{peer_is_client}"), &pem, true).await;
        let s = TcpStream::connect(addr_of(&node)).await.unwrap();
        let id = format!("dialler{peer_is_client}");
        let (client, _conn) = raw_tls_peer(s, &id, &pem, nonce).await.unwrap();
        assert_eq!(client, peer_is_client);
        node_up(&node, &id).await;
        node.shutdown();

        // the node dials the peer
        let node = tls_node(&format!("dialling{peer_is_client}"), &pem, false).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let n = node.clone();
        let dial = tokio::spawn(async move { n.connect(addr).await });
        let (s, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let id = format!("listener{peer_is_client}");
        let (client, _conn) = raw_tls_peer(s, &id, &pem, nonce).await.unwrap();
        assert_eq!(client, peer_is_client);
        let up = tokio::time::timeout(WAIT, dial).await.unwrap().unwrap();
        assert_eq!(up.as_deref(), Ok(id.as_str()));
        node.shutdown();
    }
}

/// A peer that announces TLS and then sends nothing (no ClientHello, or
/// half of one) is closed at the handshake deadline; the node goes on.
#[actix_rt::test]
async fn a_tls_handshake_that_stalls_is_closed_at_the_deadline() {
    let pem = gencert();
    let node = Node::builder()
        .node_id("stall")
        .cert(NodeCert::from_pem(&pem).unwrap())
        .bind("127.0.0.1:0")
        .monitor_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    // '!' makes us the TLS client: the node waits for our ClientHello
    for tail in [
        &b""[..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
    ] {
        let mut s = TcpStream::connect(addr_of(&node)).await.unwrap();
        s.write_all(b"aemp;1;staller;tls_md6_64_256;json;tls=1.0\n!nonce\n")
            .await
            .unwrap();
        s.write_all(tail).await.unwrap();
        let start = std::time::Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "still open after {:?}", start.elapsed());
        assert!(
            start.elapsed() >= Duration::from_millis(1500),
            "closed early"
        );
    }
    still_serves_tls(&node).await;
    node.shutdown();
}

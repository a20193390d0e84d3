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

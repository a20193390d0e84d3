//! The `cert` blob and the reference's trust rules (`aemp::wire::NodeCert`):
//! every certificate of the blob is a trusted root, a peer's leaf that is
//! one of them is trusted as it is (the `aemp gencert` case), anything else
//! must chain to one; no host names.

use std::time::{Duration, SystemTime};

use aemp::wire::{CertError, NodeCert, PeerRole, TrustError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use rustls_pki_types::UnixTime;

const GENCERT_OPENSSL: &str = include_str!("fixtures/certs/gencert-openssl.pem");
const V1_LEAF: &str = include_str!("fixtures/certs/v1-leaf.pem");
const V1_KEY: &str = include_str!("fixtures/certs/v1-leaf.key");

fn now() -> UnixTime {
    UnixTime::now()
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p
}

/// What `aemp gencert` makes: a self-signed CA certificate, then its key.
fn gencert(cn: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let cert = params(cn, true).self_signed(&key).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

/// A CA, and a function that issues leaves under it as `cert` blobs that
/// hold the leaf, its key and the CA.
struct Ca {
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = params(cn, true);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { key, params, pem }
    }

    fn leaf(&self, cn: &str, edit: impl FnOnce(&mut CertificateParams)) -> String {
        let key = KeyPair::generate().unwrap();
        let mut p = params(cn, false);
        edit(&mut p);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        format!("{}{}{}", cert.pem(), self.pem, key.serialize_pem())
    }
}

fn both_roles(ours: &NodeCert, theirs: &NodeCert) -> [Result<(), TrustError>; 2] {
    let (leaf, rest) = theirs.chain().split_first().unwrap();
    [PeerRole::Client, PeerRole::Server].map(|role| ours.verify_peer(leaf, rest, now(), role))
}

#[test]
fn a_gencert_blob_trusts_itself_in_either_order() {
    let pem = gencert("AnyEvent::MP");
    let ours = NodeCert::from_pem(&pem).unwrap();
    assert_eq!(ours.subject(), "CN=AnyEvent::MP");
    assert_eq!(both_roles(&ours, &ours), [Ok(()), Ok(())]);
    // key first
    let (cert, key) = pem.split_at(pem.find("-----BEGIN PRIVATE KEY").unwrap());
    let swapped = NodeCert::from_pem(&format!("{key}{cert}")).unwrap();
    assert_eq!(both_roles(&swapped, &ours), [Ok(()), Ok(())]);
    // and given as two parts
    let parts = NodeCert::from_parts(cert, key).unwrap();
    assert_eq!(parts.chain(), ours.chain());
}

#[test]
fn the_openssl_gencert_recipe_is_accepted() {
    // openssl req -new -nodes -x509 -days 3650 -newkey rsa:2048 -subj /CN=AnyEvent::MP
    let ours = NodeCert::from_pem(GENCERT_OPENSSL).unwrap();
    assert_eq!(ours.subject(), "CN=AnyEvent::MP");
    assert_eq!(both_roles(&ours, &ours), [Ok(()), Ok(())]);
    // a node with another gencert certificate is a stranger
    let other = NodeCert::from_pem(&gencert("AnyEvent::MP")).unwrap();
    assert!(both_roles(&ours, &other).iter().all(Result::is_err));
    assert!(both_roles(&other, &ours).iter().all(Result::is_err));
}

#[test]
fn leaves_of_a_common_ca_trust_each_other_and_strangers_are_refused() {
    let ca = Ca::new("test CA");
    let a = NodeCert::from_pem(&ca.leaf("node a", |_| {})).unwrap();
    let b = NodeCert::from_pem(&ca.leaf("node b", |_| {})).unwrap();
    assert_eq!(a.chain().len(), 2, "leaf, then the CA");
    assert_eq!(a.subject(), "CN=node a");
    assert_eq!(both_roles(&a, &b), [Ok(()), Ok(())]);
    assert_eq!(both_roles(&b, &a), [Ok(()), Ok(())]);
    // the peer's leaf alone, without the CA, still chains to our copy of it
    let leaf = &b.chain()[0];
    assert_eq!(a.verify_peer(leaf, &[], now(), PeerRole::Client), Ok(()));

    let other_ca = Ca::new("other CA");
    let c = NodeCert::from_pem(&other_ca.leaf("node c", |_| {})).unwrap();
    for r in both_roles(&a, &c).into_iter().chain(both_roles(&c, &a)) {
        assert!(matches!(r, Err(TrustError::Untrusted(_))), "{r:?}");
    }
}

/// A leaf marked `CA:TRUE` and signed by the common CA (OpenSSL, and so
/// Perl, accepts it as a peer; webpki alone would not).
#[test]
fn a_ca_marked_leaf_of_our_ca_is_trusted_and_a_strange_one_is_not() {
    let ca = Ca::new("test CA");
    let a = NodeCert::from_pem(&ca.leaf("node a", |_| {})).unwrap();
    let c = NodeCert::from_pem(&ca.leaf("node c", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }))
    .unwrap();
    assert_eq!(both_roles(&a, &c), [Ok(()), Ok(())]);
    assert_eq!(both_roles(&c, &a), [Ok(()), Ok(())]);
    // a CA certificate of another network: refused, saying why
    let other = NodeCert::from_pem(&gencert("AnyEvent::MP")).unwrap();
    for r in both_roles(&a, &other) {
        assert!(
            matches!(&r, Err(TrustError::Untrusted(why)) if why.contains("neither one of ours")),
            "{r:?}"
        );
    }
}

#[test]
fn a_leaf_is_not_an_issuer() {
    // a leaf (CA:FALSE) of our blob cannot vouch for a certificate it signed
    let ca = Ca::new("test CA");
    let a_pem = ca.leaf("node a", |_| {});
    let a = NodeCert::from_pem(&a_pem).unwrap();
    let key_pem = &a_pem[a_pem.find("-----BEGIN PRIVATE KEY").unwrap()..];
    let a_key = KeyPair::from_pem(key_pem).unwrap();
    let a_params = params("node a", false);
    let issuer = Issuer::from_params(&a_params, &a_key);
    let victim_key = KeyPair::generate().unwrap();
    let forged = params("forged", false)
        .signed_by(&victim_key, &issuer)
        .unwrap();
    let r = a.verify_peer(
        forged.der(),
        &[a.chain()[0].clone()],
        now(),
        PeerRole::Client,
    );
    assert!(matches!(r, Err(TrustError::Untrusted(_))), "{r:?}");
}

#[test]
fn validity_periods_hold_for_roots_and_chains() {
    let past = SystemTime::now() - Duration::from_secs(10 * 86_400);
    let key = KeyPair::generate().unwrap();
    let mut p = params("AnyEvent::MP", true);
    p.not_before = (past - Duration::from_secs(86_400)).into();
    p.not_after = past.into();
    let expired = p.self_signed(&key).unwrap();
    let pem = format!("{}{}", expired.pem(), key.serialize_pem());
    let ours = NodeCert::from_pem(&pem).unwrap();
    assert_eq!(
        both_roles(&ours, &ours),
        [Err(TrustError::Expired), Err(TrustError::Expired)]
    );

    let ca = Ca::new("test CA");
    let a = NodeCert::from_pem(&ca.leaf("node a", |_| {})).unwrap();
    let old = NodeCert::from_pem(&ca.leaf("node old", |p| {
        p.not_before = (past - Duration::from_secs(86_400)).into();
        p.not_after = past.into();
    }))
    .unwrap();
    assert!(both_roles(&a, &old).iter().all(Result::is_err));
}

#[test]
fn key_usage_follows_the_role() {
    let ca = Ca::new("test CA");
    let a = NodeCert::from_pem(&ca.leaf("node a", |_| {})).unwrap();
    let server_only = NodeCert::from_pem(&ca.leaf("server only", |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }))
    .unwrap();
    let [as_client, as_server] = both_roles(&a, &server_only);
    assert!(
        as_client.is_err(),
        "a serverAuth-only certificate as a TLS client"
    );
    assert_eq!(as_server, Ok(()));
}

#[test]
fn broken_blobs_are_refused_with_the_reason() {
    let pem = gencert("AnyEvent::MP");
    let split = pem.find("-----BEGIN PRIVATE KEY").unwrap();
    let (cert, key) = pem.split_at(split);
    assert_eq!(NodeCert::from_pem(cert).unwrap_err(), CertError::NoKey);
    assert_eq!(
        NodeCert::from_pem(key).unwrap_err(),
        CertError::NoCertificate
    );
    assert_eq!(
        NodeCert::from_pem("").unwrap_err(),
        CertError::NoCertificate
    );
    assert_eq!(
        NodeCert::from_pem(&format!("{pem}{key}")).unwrap_err(),
        CertError::TwoKeys
    );
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    assert_eq!(
        NodeCert::from_pem(&format!("{cert}{other_key}")).unwrap_err(),
        CertError::KeyMismatch
    );
    let mangled = cert.replacen("MII", "MIJ", 1);
    assert!(matches!(
        NodeCert::from_pem(&format!("{mangled}{key}")).unwrap_err(),
        CertError::BadCertificate { index: 1, .. } | CertError::Pem(_)
    ));
    let truncated = &cert[..cert.len() / 2];
    assert!(matches!(
        NodeCert::from_pem(&format!("{truncated}{key}")).unwrap_err(),
        CertError::Pem(_) | CertError::NoCertificate
    ));
}

#[test]
fn x509_v1_certificates_are_refused_at_load() {
    // openssl x509 -req (no extensions) makes version 1
    let err = NodeCert::from_parts(V1_LEAF, V1_KEY).unwrap_err();
    assert_eq!(err, CertError::Version1 { index: 1 });
    assert!(err.to_string().contains("X.509 v1"), "{err}");
}

/// Both ends of a TLS connection over an in-memory pipe, with the
/// configurations of `client` and `server`; one message each way.
async fn tls_talk(client: &str, server: &str) -> (std::io::Result<()>, std::io::Result<()>) {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = aemp::wire::TlsConfigs::new(Arc::new(NodeCert::from_pem(client).unwrap())).unwrap();
    let s = aemp::wire::TlsConfigs::new(Arc::new(NodeCert::from_pem(server).unwrap())).unwrap();
    let (x, y) = tokio::io::duplex(64 * 1024);
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let client = async move {
        let mut t = tokio_rustls::TlsConnector::from(c.client)
            .connect(name, x)
            .await?;
        t.write_all(b"hello").await?;
        t.flush().await?;
        let mut buf = [0u8; 5];
        t.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"olleh");
        Ok(())
    };
    let server = async move {
        let mut t = tokio_rustls::TlsAcceptor::from(s.server).accept(y).await?;
        let mut buf = [0u8; 5];
        t.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"hello");
        t.write_all(b"olleh").await?;
        t.flush().await?;
        Ok(())
    };
    let both = async { tokio::join!(client, server) };
    tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("TLS handshake hung")
}

#[tokio::test]
async fn tls_between_nodes_follows_the_trust_rules() {
    // one gencert certificate shared by the network
    let shared = gencert("AnyEvent::MP");
    let (a, b) = tls_talk(&shared, &shared).await;
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    // openssl's gencert recipe, shared
    let (a, b) = tls_talk(GENCERT_OPENSSL, GENCERT_OPENSSL).await;
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    // leaves of one CA
    let ca = Ca::new("test CA");
    let (a, b) = tls_talk(&ca.leaf("a", |_| {}), &ca.leaf("b", |_| {})).await;
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    // strangers: refused whichever side is the TLS client
    let stranger = gencert("AnyEvent::MP");
    for (c, s) in [(&shared, &stranger), (&stranger, &shared)] {
        let (a, b) = tls_talk(c, s).await;
        assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
    }
}

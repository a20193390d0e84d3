//! A node's certificate and the reference's trust rules (protocol notes
//! 1.3), without sockets or clocks.
//!
//! The `cert` setting is one PEM blob holding a private key and one or
//! more certificates, in any order. The first certificate is our leaf, the
//! ones after it its chain, and **every certificate in the blob is a
//! trusted root** (what `AnyEvent::MP::Transport` gives OpenSSL as both
//! `cert_file` and `ca_file`). A peer is trusted when its chain verifies
//! to one of those roots (signatures, validity periods, `CA:TRUE` on
//! issuers, the key usage of its role), or when its leaf *is* one of them,
//! byte for byte: the `aemp gencert` case, a self-signed CA certificate
//! that every node of a network shares. Host names are not checked. A root
//! without `CA:TRUE` (a plain leaf in the blob) is trusted as itself only,
//! never as an issuer, as OpenSSL checks of every issuer. A peer leaf that
//! is itself marked `CA:TRUE` (webpki refuses such end entities, OpenSSL
//! does not) is trusted when one of our `CA:TRUE` roots issued it directly.
//!
//! X.509 v1 certificates (no extensions, so no `CA:TRUE`) cannot be
//! verified by webpki; they are refused when the blob is loaded, with an
//! error saying so, rather than when a peer fails to connect.
//!
//! ```
//! let key = rcgen::KeyPair::generate().unwrap();
//! let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
//! params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! let cert = params.self_signed(&key).unwrap();
//! let pem = format!("{}{}", cert.pem(), key.serialize_pem());
//! let ours = aemp::wire::NodeCert::from_pem(&pem).unwrap();
//! // a peer with the same certificate is trusted (the gencert case)
//! let now = rustls_pki_types::UnixTime::now();
//! assert!(ours.verify_peer(&ours.chain()[0], &[], now, aemp::wire::PeerRole::Client).is_ok());
//! ```

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use thiserror::Error;
use webpki::{EndEntityCert, KeyUsage};

/// Why a `cert` PEM blob cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// The text is not PEM, or a PEM section is broken.
    #[error("cert: unreadable PEM ({0})")]
    Pem(String),
    /// No `CERTIFICATE` section.
    #[error("cert: the PEM holds no certificate")]
    NoCertificate,
    /// No private key section.
    #[error("cert: the PEM holds no private key")]
    NoKey,
    /// More than one private key.
    #[error("cert: the PEM holds more than one private key")]
    TwoKeys,
    /// A certificate cannot be parsed.
    #[error("cert: certificate {index} cannot be parsed ({why})")]
    BadCertificate {
        /// Its position in the blob, from 1.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A certificate is X.509 version 1.
    #[error(
        "cert: certificate {index} is X.509 v1, which cannot be verified; make it a v3 \
         certificate (with extensions, e.g. basicConstraints)"
    )]
    Version1 {
        /// Its position in the blob, from 1.
        index: usize,
    },
    /// The key is of a kind TLS cannot sign with.
    #[error("cert: unusable private key ({0})")]
    BadKey(String),
    /// The key does not belong to the first certificate.
    #[error("cert: the private key does not belong to the first certificate")]
    KeyMismatch,
}

/// Why a peer's certificate is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    /// The peer sent no certificate.
    #[error("peer sent no certificate")]
    NoCertificate,
    /// The chain does not verify to any root of our blob.
    #[error("peer certificate not trusted: {0}")]
    Untrusted(String),
    /// The peer's leaf is one of our roots but not valid at this time.
    #[error("peer certificate is not valid now")]
    Expired,
}

/// The role of the peer whose certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer is the TLS client (we accept its ClientHello).
    Client,
    /// The peer is the TLS server.
    Server,
}

/// A node's certificate: key, leaf and chain, and the roots it trusts.
pub struct NodeCert {
    key: PrivateKeyDer<'static>,
    /// Leaf first, then the rest of the blob's certificates, in order.
    chain: Vec<CertificateDer<'static>>,
    /// Every certificate of the blob, for the self-root case.
    roots: Vec<CertificateDer<'static>>,
    /// The roots that may issue (`CA:TRUE`), for chains.
    issuers: Vec<CertificateDer<'static>>,
    /// The leaf's subject, for logs and peer information.
    subject: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("subject", &self.subject)
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for NodeCert {
    fn clone(&self) -> Self {
        NodeCert {
            key: self.key.clone_key(),
            chain: self.chain.clone(),
            roots: self.roots.clone(),
            issuers: self.issuers.clone(),
            subject: self.subject.clone(),
        }
    }
}

impl NodeCert {
    /// Reads a `cert` blob: a private key and certificates, in any order.
    pub fn from_pem(pem: &str) -> Result<NodeCert, CertError> {
        NodeCert::from_parts(pem, pem)
    }

    /// Reads the certificates from `certs` and the key from `key` (two
    /// files, as a builder may be given them).
    pub fn from_parts(certs: &str, key: &str) -> Result<NodeCert, CertError> {
        let chain = CertificateDer::pem_slice_iter(certs.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::Pem(e.to_string()))?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate);
        }
        let mut keys = rustls_pki_types::pem::PemObject::pem_slice_iter(key.as_bytes())
            .collect::<Result<Vec<PrivateKeyDer<'static>>, _>>()
            .map_err(|e| CertError::Pem(e.to_string()))?;
        let key = match keys.len() {
            0 => return Err(CertError::NoKey),
            1 => keys.remove(0),
            _ => return Err(CertError::TwoKeys),
        };
        let mut subject = String::new();
        let mut issuers = Vec::new();
        for (i, der) in chain.iter().enumerate() {
            let index = i + 1;
            let (_, parsed) = x509_parser::parse_x509_certificate(der).map_err(|e| {
                CertError::BadCertificate {
                    index,
                    why: e.to_string(),
                }
            })?;
            if parsed.tbs_certificate.version.0 == 0 {
                return Err(CertError::Version1 { index });
            }
            if i == 0 {
                subject = parsed.subject().to_string();
            }
            if parsed.is_ca() {
                issuers.push(der.clone());
            }
        }
        let signer = tokio_rustls::rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CertError::BadKey(e.to_string()))?;
        let certified = tokio_rustls::rustls::sign::CertifiedKey::new(chain.clone(), signer);
        if certified.keys_match().is_err() {
            return Err(CertError::KeyMismatch);
        }
        Ok(NodeCert {
            key,
            roots: chain.clone(),
            issuers,
            chain,
            subject,
        })
    }

    /// Our leaf and its chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Our private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The certificates we trust as roots: every one of the blob.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Our leaf's subject (`CN=AnyEvent::MP` for `aemp gencert`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Checks a peer's leaf `end_entity` with the `intermediates` it sent,
    /// at time `now`, for a peer in `role`.
    pub fn verify_peer(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
    ) -> Result<(), TrustError> {
        if self.roots.iter().any(|r| r.as_ref() == end_entity.as_ref()) {
            // one of our own roots: trusted as it is, if valid now
            return if valid_at(end_entity, now) {
                Ok(())
            } else {
                Err(TrustError::Expired)
            };
        }
        // only roots with CA:TRUE issue, as OpenSSL requires of every issuer
        if is_ca(end_entity) {
            // webpki refuses CA certificates as end entities; OpenSSL, and
            // so Perl, does not
            return self.verify_ca_leaf(end_entity, now);
        }
        let anchors = self
            .issuers
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect::<Vec<_>>();
        let leaf = EndEntityCert::try_from(end_entity)
            .map_err(|e| TrustError::Untrusted(e.to_string()))?;
        let usage = match role {
            PeerRole::Client => KeyUsage::client_auth(),
            PeerRole::Server => KeyUsage::server_auth(),
        };
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| TrustError::Untrusted(e.to_string()))
    }
}

impl NodeCert {
    /// A peer leaf with `CA:TRUE` that is not one of our roots: trusted if
    /// one of our `CA:TRUE` roots issued it directly, both valid now.
    fn verify_ca_leaf(&self, leaf: &CertificateDer<'_>, now: UnixTime) -> Result<(), TrustError> {
        let untrusted = || {
            TrustError::Untrusted(
                "a CA certificate that is neither one of ours nor issued by one".into(),
            )
        };
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|_| untrusted())?;
        if !valid_at(leaf, now) {
            return Err(TrustError::Expired);
        }
        let issued = self.issuers.iter().any(|root| {
            x509_parser::parse_x509_certificate(root).is_ok_and(|(_, r)| {
                r.subject() == cert.issuer()
                    && valid_at(root, now)
                    && cert.verify_signature(Some(r.public_key())).is_ok()
            })
        });
        if issued { Ok(()) } else { Err(untrusted()) }
    }
}

/// Whether a certificate has `CA:TRUE`.
fn is_ca(der: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| c.is_ca())
}

/// The subject of a certificate (`CN=AnyEvent::MP`), if it parses.
pub fn cert_subject(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// Whether `der`'s validity period holds `now`.
fn valid_at(der: &CertificateDer<'_>, now: UnixTime) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let now = now.as_secs() as i64;
    let validity = cert.validity();
    validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp()
}

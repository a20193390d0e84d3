//! rustls configurations for a [`NodeCert`]: client certificates required
//! both ways, no host name checked, and peers judged by the blob's trust
//! rules ([`NodeCert::verify_peer`]) through [`PeerVerifier`].
//!
//! The crypto provider is *ring*: it is in the build already (rcgen uses
//! it), needs only a C compiler, and covers what Perl nodes use — RSA 2048
//! and ECDSA P-256 keys, TLS 1.2 and 1.3.
//!
//! ```
//! # let key = rcgen::KeyPair::generate().unwrap();
//! # let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
//! # params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! # let pem = format!("{}{}", params.self_signed(&key).unwrap().pem(), key.serialize_pem());
//! let cert = std::sync::Arc::new(aemp::wire::NodeCert::from_pem(&pem).unwrap());
//! let configs = aemp::wire::TlsConfigs::new(cert).unwrap();
//! assert!(configs.client.client_auth_cert_resolver.has_certs());
//! ```

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};

use super::cert::{NodeCert, PeerRole};

/// Checks peers' certificates with a blob's trust rules, in both TLS roles
/// (a rustls `ServerCertVerifier` and `ClientCertVerifier`).
#[derive(Debug)]
pub struct PeerVerifier {
    cert: Arc<NodeCert>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
    ) -> Result<(), rustls::Error> {
        self.cert
            .verify_peer(end_entity, intermediates, now, role)
            .map_err(|e| {
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(e),
                )))
            })
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, PeerRole::Server)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, PeerRole::Client)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The two TLS roles of a node with a certificate.
#[derive(Debug, Clone)]
pub struct TlsConfigs {
    /// For connections where we are the TLS server.
    pub server: Arc<ServerConfig>,
    /// For connections where we are the TLS client.
    pub client: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// The configurations for `cert`: our chain and key, client
    /// certificates required both ways, peers checked by the blob's rules.
    pub fn new(cert: Arc<NodeCert>) -> Result<TlsConfigs, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier {
            cert: cert.clone(),
            algorithms: provider.signature_verification_algorithms,
        });
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(cert.chain().to_vec(), cert.key().clone_key())?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(cert.chain().to_vec(), cert.key().clone_key())?;
        Ok(TlsConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

//! `gencert` and `setcert`: what the reference's `aemp gencert` makes
//! (`openssl req -new -nodes -x509 -days 3650 -newkey rsa:2048 -subj
//! /CN=AnyEvent::MP`: a self-signed CA certificate used as the node's own),
//! made with rcgen instead of the openssl binary: the certificate PEM, then
//! the key PEM (PKCS#8).

use std::time::{Duration, SystemTime};

use rsa::pkcs8::EncodePrivateKey;

use crate::error::{CliError, CliResult};

/// A new RSA 2048 key and a self-signed certificate for CN=AnyEvent::MP,
/// valid 10 years: certificate PEM followed by key PEM.
pub fn generate() -> CliResult<String> {
    let key = rsa::PrivateKey::new(&mut rand::rng(), 2048)?;
    let key_pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)?;
    let key_pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "AnyEvent::MP");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let now = SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + Duration::from_secs(3650 * 86_400)).into();
    let cert = params.self_signed(&key_pair)?;
    Ok(format!("{}{}", cert.pem(), key_pem.as_str()))
}

/// Checks that `pem` (read from `file`) is what a node's `cert` setting
/// needs: a private key and certificates in either order, usable for TLS
/// (the same check a node makes when it loads its configuration).
pub fn check_pem(file: &str, pem: &str) -> CliResult<()> {
    match aemp::wire::NodeCert::from_pem(pem) {
        Ok(_) => Ok(()),
        Err(aemp::wire::CertError::NoCertificate) => Err(CliError::NoCertificate(file.to_owned())),
        Err(aemp::wire::CertError::NoKey) => Err(CliError::NoPrivateKey(file.to_owned())),
        Err(e) => Err(CliError::BadCert(file.to_owned(), e)),
    }
}

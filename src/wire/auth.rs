//! Auth method selection and auth tokens.
//!
//! The four greeting lines, each without its line end, form the transcript
//! `L = "lg1\nlg2\nrg1\nrg2\n"` (local lines first) for the token we send
//! and `R = "rg1\nrg2\nlg1\nlg2\n"` for the token we expect.
//!
//! **The swapped HMAC** (`shared/docs/aemp-protocol.md` 1.4): the reference
//! calls `hmac_md6_hex($key, $text, 64, 256)` but the library's signature is
//! `hmac_md6_hex($data, $key, …)`, so on the wire the HMAC *key* is the
//! transcript and the HMAC *message* is `MD6-256(secret)`.
//! [`hmac_md6_64_256_token`] reproduces exactly that.

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;

use super::error::HandshakeError;

/// An authentication method of the AEMP handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// `tls_md6_64_256`: MD6 of the transcript, only inside TLS.
    TlsMd6_64_256,
    /// `hmac_md6_64_256`: HMAC-MD6 over the transcript with the shared secret.
    HmacMd6_64_256,
    /// `tls_anon`: empty token, only inside TLS.
    TlsAnon,
    /// `cleartext`: the secret in lower-case hex. Accepted by default, never
    /// offered by default.
    Cleartext,
}

impl AuthMethod {
    /// Every method, in the reference's preference order.
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::TlsMd6_64_256,
        AuthMethod::HmacMd6_64_256,
        AuthMethod::TlsAnon,
        AuthMethod::Cleartext,
    ];

    /// The name used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::TlsMd6_64_256 => "tls_md6_64_256",
            AuthMethod::HmacMd6_64_256 => "hmac_md6_64_256",
            AuthMethod::TlsAnon => "tls_anon",
            AuthMethod::Cleartext => "cleartext",
        }
    }

    /// The method with this wire name.
    pub fn from_name(name: &str) -> Option<AuthMethod> {
        AuthMethod::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the method is only valid on a TLS connection.
    pub fn requires_tls(self) -> bool {
        matches!(self, AuthMethod::TlsMd6_64_256 | AuthMethod::TlsAnon)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMethod::from_name(s).ok_or_else(|| format!("unknown auth method '{s}'"))
    }
}

/// What we send by default: `tls_md6_64_256,hmac_md6_64_256` (reference).
pub const DEFAULT_AUTH_OFFER: [AuthMethod; 2] =
    [AuthMethod::TlsMd6_64_256, AuthMethod::HmacMd6_64_256];

/// What we accept by default (and list in our greeting):
/// `tls_md6_64_256,hmac_md6_64_256,tls_anon,cleartext` (reference).
pub const DEFAULT_AUTH_ACCEPT: [AuthMethod; 4] = AuthMethod::ALL;

/// Chooses the auth method we send: the first method of the peer's accept
/// list that is in our offer list — inside TLS among the `tls_*` methods
/// only, outside among the others only.
///
/// ```
/// use aemp::wire::{select_auth, AuthMethod, DEFAULT_AUTH_OFFER};
/// let theirs = ["tls_md6_64_256".to_string(), "hmac_md6_64_256".to_string()];
/// assert_eq!(select_auth(&theirs, &DEFAULT_AUTH_OFFER, false), Some(AuthMethod::HmacMd6_64_256));
/// assert_eq!(select_auth(&theirs, &DEFAULT_AUTH_OFFER, true), Some(AuthMethod::TlsMd6_64_256));
/// ```
pub fn select_auth(
    remote_accept: &[String],
    offer: &[AuthMethod],
    tls: bool,
) -> Option<AuthMethod> {
    remote_accept
        .iter()
        .filter_map(|name| AuthMethod::from_name(name))
        .find(|m| offer.contains(m) && m.requires_tls() == tls)
}

/// A shared secret. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps the secret's bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the secret is empty (the reference treats an empty secret as
    /// none at all).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.as_bytes().to_vec())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s.into_bytes())
    }
}

/// MD6-256 with default parameters (what Perl's `Digest::MD6::md6` does).
///
/// ```
/// assert_eq!(
///     hex::encode(aemp::wire::md6_256(b"abc")),
///     "230637d4e6845cf0d092b558e87625f03881dd53a7439da34cf3b94ed0d8b2c5"
/// );
/// ```
pub fn md6_256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // the only failure of md6::hash is an invalid hash length, and 256 is valid
    md6::hash(256, data, &mut out).expect("MD6 accepts a 256-bit hash length");
    out
}

/// HMAC (RFC 2104) over MD6-256 with a 64-byte block, the standard way
/// round: `key` is the HMAC key, `msg` the message. A key longer than the
/// block is first replaced by its MD6-256 digest.
pub fn hmac_md6_256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&md6_256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Vec::with_capacity(BLOCK + msg.len());
    inner.extend(k.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(msg);
    let inner_hash = md6_256(&inner);
    let mut outer = Vec::with_capacity(BLOCK + 32);
    outer.extend(k.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&inner_hash);
    md6_256(&outer)
}

/// The `hmac_md6_64_256` token for a transcript, as the reference computes
/// it on the wire: HMAC key = `transcript`, message = `MD6-256(secret)`,
/// lower-case hex.
pub fn hmac_md6_64_256_token(secret: &Secret, transcript: &[u8]) -> String {
    hex::encode(hmac_md6_256(transcript, &md6_256(secret.as_bytes())))
}

/// The `tls_md6_64_256` token: lower-case hex MD6-256 of the transcript.
pub fn tls_md6_64_256_token(transcript: &[u8]) -> String {
    hex::encode(md6_256(transcript))
}

/// The `cleartext` token: the secret in lower-case hex.
pub fn cleartext_token(secret: &Secret) -> String {
    hex::encode(secret.as_bytes())
}

/// Joins two greetings (each: line 1, line 2, without line ends) into the
/// transcript `"a1\na2\nb1\nb2\n"` that tokens are computed over. Pass the
/// local lines first for the token we send, the remote lines first for the
/// token we expect.
pub fn transcript(first: [&[u8]; 2], second: [&[u8]; 2]) -> Vec<u8> {
    let mut t =
        Vec::with_capacity(first[0].len() + first[1].len() + second[0].len() + second[1].len() + 4);
    for line in first.into_iter().chain(second) {
        t.extend_from_slice(line);
        t.push(b'\n');
    }
    t
}

/// The token we send with `method` over the transcript `local_first`.
///
/// Inside TLS only `tls_*` methods are sent; outside, a secret is required
/// and `hmac_md6_64_256` (or `cleartext`, if the user offers it) is sent.
pub fn send_token(
    method: AuthMethod,
    secret: Option<&Secret>,
    local_first: &[u8],
    tls: bool,
) -> Result<String, HandshakeError> {
    let unsupported = || HandshakeError::UnsupportedSendAuth {
        method: method.name().to_owned(),
    };
    if tls {
        return match method {
            AuthMethod::TlsMd6_64_256 => Ok(tls_md6_64_256_token(local_first)),
            AuthMethod::TlsAnon => Ok(String::new()),
            _ => Err(unsupported()),
        };
    }
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(HandshakeError::NoSecret)?;
    match method {
        AuthMethod::HmacMd6_64_256 => Ok(hmac_md6_64_256_token(secret, local_first)),
        AuthMethod::Cleartext => Ok(cleartext_token(secret)),
        _ => Err(unsupported()),
    }
}

/// Checks the peer's token for `method` over the transcript
/// `remote_first`, in constant time.
///
/// Inside TLS only `tls_md6_64_256` and `tls_anon` are accepted (the
/// reference also lets `cleartext` and a secret-less HMAC through there;
/// aemp does not). Outside TLS the `tls_*` tokens never match.
pub fn verify_token(
    method: AuthMethod,
    token: &[u8],
    secret: Option<&Secret>,
    remote_first: &[u8],
    tls: bool,
) -> Result<(), HandshakeError> {
    let expected = match (tls, method) {
        (true, AuthMethod::TlsMd6_64_256) => tls_md6_64_256_token(remote_first),
        (true, AuthMethod::TlsAnon) => String::new(),
        (true, _) => {
            return Err(HandshakeError::NotInsideTls {
                method: method.name().to_owned(),
            });
        }
        (false, m) if m.requires_tls() => return Err(HandshakeError::AuthFailure),
        (false, m) => {
            let secret = secret.ok_or(HandshakeError::AuthFailure)?;
            match m {
                AuthMethod::HmacMd6_64_256 => hmac_md6_64_256_token(secret, remote_first),
                _ => cleartext_token(secret),
            }
        }
    };
    if tokens_equal(expected.as_bytes(), token) {
        Ok(())
    } else {
        Err(HandshakeError::AuthFailure)
    }
}

/// Compares two tokens in time independent of their contents.
pub fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::from_name(m.name()), Some(m));
            assert_eq!(m.to_string().parse::<AuthMethod>(), Ok(m));
        }
        assert_eq!(AuthMethod::from_name("hex_secret"), None);
    }

    #[test]
    fn selection_walks_remote_list() {
        let remote: Vec<String> = ["bogus", "cleartext", "hmac_md6_64_256"]
            .map(String::from)
            .into();
        assert_eq!(
            select_auth(&remote, &DEFAULT_AUTH_OFFER, false),
            Some(AuthMethod::HmacMd6_64_256)
        );
        assert_eq!(
            select_auth(
                &remote,
                &[AuthMethod::Cleartext, AuthMethod::HmacMd6_64_256],
                false
            ),
            Some(AuthMethod::Cleartext)
        );
        let tls_only: Vec<String> = vec!["tls_anon".into()];
        assert_eq!(select_auth(&tls_only, &AuthMethod::ALL, false), None);
        assert_eq!(
            select_auth(&tls_only, &AuthMethod::ALL, true),
            Some(AuthMethod::TlsAnon)
        );
    }

    #[test]
    fn hmac_short_key_is_padded() {
        // a short key and the same key zero padded give the same HMAC
        let a = hmac_md6_256(b"key", b"msg");
        let mut padded = b"key".to_vec();
        padded.resize(64, 0);
        assert_eq!(a, hmac_md6_256(&padded, b"msg"));
        assert_ne!(a, hmac_md6_256(b"kez", b"msg"));
    }

    #[test]
    fn tokens() {
        let s = Secret::from("geheim");
        assert_eq!(cleartext_token(&s), "67656865696d");
        assert_eq!(format!("{s:?}"), "Secret(<6 bytes>)");
        assert!(verify_token(AuthMethod::Cleartext, b"67656865696d", Some(&s), b"", false).is_ok());
        assert_eq!(
            verify_token(AuthMethod::Cleartext, b"67656865696D", Some(&s), b"", false),
            Err(HandshakeError::AuthFailure)
        );
        assert_eq!(
            verify_token(AuthMethod::TlsAnon, b"", Some(&s), b"", false),
            Err(HandshakeError::AuthFailure)
        );
        assert!(verify_token(AuthMethod::TlsAnon, b"", None, b"", true).is_ok());
        assert!(matches!(
            verify_token(AuthMethod::Cleartext, b"", None, b"", true),
            Err(HandshakeError::NotInsideTls { .. })
        ));
        assert_eq!(
            send_token(
                AuthMethod::HmacMd6_64_256,
                Some(&Secret::from("")),
                b"",
                false
            ),
            Err(HandshakeError::NoSecret)
        );
        assert!(send_token(AuthMethod::HmacMd6_64_256, None, b"", true).is_err());
    }
}

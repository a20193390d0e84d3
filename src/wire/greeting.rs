//! The two greeting lines and the line reader used before authentication.
//!
//! Line 1 is `aemp;1;<nodeid>;<auth accept list>;<framing list>;k=v;…`,
//! line 2 a nonce. The reference builds line 1 raw and splits it on `;`
//! (no `%3b`/`%25` escaping, despite its POD), so aemp does exactly the same.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};

use super::error::HandshakeError;

/// The protocol name sent in the first greeting field.
pub const PROTOCOL: &str = "aemp";

/// The sub-protocol of data connections (`AnyEvent::MP::DataConn`): the
/// same handshake, then a raw byte stream.
pub const DATACONN_PROTOCOL: &str = "aemp-dataconn";

/// The greeting key that carries a data connection's id.
pub const DATACONN_ID_KEY: &str = "dataconn_id";

/// Longest data connection id accepted (ids are `<counter>@<node>`).
pub const MAX_DATACONN_ID: usize = 256;

/// Whether `id` can travel as a `dataconn_id` greeting value: not empty
/// (the reference tests it with `||`, so `0` is out too), at most
/// [`MAX_DATACONN_ID`] bytes, and printable ASCII other than `;`.
///
/// ```
/// assert!(aemp::wire::dataconn_id_ok("b@node"));
/// assert!(!aemp::wire::dataconn_id_ok("a;b") && !aemp::wire::dataconn_id_ok("0"));
/// ```
pub fn dataconn_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id != "0"
        && id.len() <= MAX_DATACONN_ID
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

/// The protocol version we speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest line accepted before authentication, newline included.
pub const MAX_LINE: usize = 4096;

/// Number of random bytes in a nonce (the reference's choice).
pub const NONCE_BYTES: usize = 66;

/// Takes one complete line off the front of `buf`.
///
/// Returns the line without its `\n` and without one `\r` before it (the
/// reference reads lines with `\015?\012`; the CR is not part of the text
/// used for tokens or the echo check). `Ok(None)` means more bytes are
/// needed. A line that cannot end within [`MAX_LINE`] bytes, newline
/// included, is an error as soon as that is certain.
///
/// ```
/// use bytes::BytesMut;
/// let mut buf = BytesMut::from(&b"aemp;1;a;hmac_md6_64_256;json\r\nnonce"[..]);
/// let line = aemp::wire::take_line(&mut buf).unwrap().unwrap();
/// assert_eq!(&line[..], b"aemp;1;a;hmac_md6_64_256;json");
/// assert_eq!(&buf[..], b"nonce");
/// assert_eq!(aemp::wire::take_line(&mut buf).unwrap(), None);
/// ```
pub fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, HandshakeError> {
    let window = buf.len().min(MAX_LINE);
    match buf[..window].iter().position(|&b| b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line.freeze()))
        }
        None if buf.len() >= MAX_LINE => Err(HandshakeError::LineTooLong { limit: MAX_LINE }),
        None => Ok(None),
    }
}

/// Our nonce line, the second greeting line: [`NONCE_BYTES`] random bytes,
/// base64 without padding or line breaks (88 characters), as the
/// reference makes it.
///
/// The wire core draws no random numbers: the driver brings the bytes
/// (the transport from the operating system's generator), as quinn-proto
/// takes its seed.
///
/// ```
/// let n = aemp::wire::Nonce::from_random([7u8; aemp::wire::NONCE_BYTES]);
/// assert_eq!(n.as_str().len(), 88);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    /// The nonce line made of `bytes` (which must be random for a real
    /// connection).
    pub fn from_random(bytes: [u8; NONCE_BYTES]) -> Nonce {
        Nonce(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
    }

    /// A nonce line taken as it is, for tests and tools that replay
    /// recorded handshakes (a newline in it would end the line early, so
    /// it is cut there).
    pub fn from_line(line: impl Into<String>) -> Nonce {
        let mut line = line.into();
        if let Some(i) = line.find('\n') {
            line.truncate(i);
        }
        Nonce(line)
    }

    /// The line, without its newline.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A parsed first greeting line.
///
/// Parsing never fails: like the reference, missing fields read as empty,
/// and the checks (protocol, version, node id, auth, framing) happen in the
/// handshake in the reference's order.
///
/// ```
/// use aemp::wire::Greeting;
/// let g = Greeting::parse(b"aemp;1;perlB;tls_md6_64_256,hmac_md6_64_256;json,storable;provider=AE-1.30;flag");
/// assert_eq!(g.node, "perlB");
/// assert_eq!(g.auth, ["tls_md6_64_256", "hmac_md6_64_256"]);
/// assert_eq!(g.get("provider"), Some("AE-1.30"));
/// assert!(g.has("flag") && g.get("flag").is_none());
/// assert!(g.version_is(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// First field, `aemp` for the node protocol.
    pub protocol: String,
    /// Second field as sent (compared numerically, as Perl does).
    pub version: String,
    /// Third field: the sender's node id.
    pub node: String,
    /// Whether the node id field was valid UTF-8.
    node_utf8: bool,
    /// Fourth field: the auth methods the sender accepts, in its order.
    pub auth: Vec<String>,
    /// Fifth field: the framings the sender accepts, in its order.
    pub framings: Vec<String>,
    /// The `key=value` pairs in the order sent; a key without `=` has no
    /// value.
    pub pairs: Vec<(String, Option<String>)>,
}

impl Greeting {
    /// Builds the greeting we send for `node`.
    pub fn new(
        node: &str,
        auth: impl IntoIterator<Item = impl Into<String>>,
        framings: impl IntoIterator<Item = impl Into<String>>,
    ) -> Greeting {
        Greeting {
            protocol: PROTOCOL.to_owned(),
            version: PROTOCOL_VERSION.to_string(),
            node: node.to_owned(),
            node_utf8: true,
            auth: auth.into_iter().map(Into::into).collect(),
            framings: framings.into_iter().map(Into::into).collect(),
            pairs: Vec::new(),
        }
    }

    /// Adds a `key=value` pair.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Greeting {
        self.pairs.push((key.to_owned(), Some(value.into())));
        self
    }

    /// Parses a first greeting line (without its line end).
    pub fn parse(line: &[u8]) -> Greeting {
        let mut fields = perl_split(line, b';').into_iter();
        let mut next = || fields.next().unwrap_or(b"");
        let protocol = lossy(next());
        let version = lossy(next());
        let node_raw = next();
        let node_utf8 = std::str::from_utf8(node_raw).is_ok();
        let node = lossy(node_raw);
        let auth = list(next());
        let framings = list(next());
        let pairs = fields
            .filter_map(|kv| {
                // the reference: /^([^=]+)(?:=(.*))?/ - an empty key is skipped
                let (k, v) = match kv.iter().position(|&b| b == b'=') {
                    Some(i) => (&kv[..i], Some(lossy(&kv[i + 1..]))),
                    None => (kv, None),
                };
                (!k.is_empty()).then(|| (lossy(k), v))
            })
            .collect();
        Greeting {
            protocol,
            version,
            node,
            node_utf8,
            auth,
            framings,
            pairs,
        }
    }

    /// Formats the line (without line end), raw, fields joined by `;`.
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{};{};{};{};{}",
            self.protocol,
            self.version,
            self.node,
            self.auth.join(","),
            self.framings.join(",")
        );
        for (k, v) in &self.pairs {
            line.push(';');
            line.push_str(k);
            if let Some(v) = v {
                line.push('=');
                line.push_str(v);
            }
        }
        line
    }

    /// The value of `key` (the last one if sent twice, as a Perl hash
    /// keeps it); `None` if absent or sent without `=`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether `key` was sent at all (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// Whether the version field equals `version` numerically (`1`, `1.0`
    /// and `01` all equal 1, as in Perl's `!=`).
    pub fn version_is(&self, version: u32) -> bool {
        self.version
            .trim()
            .parse::<f64>()
            .is_ok_and(|v| v == f64::from(version))
    }

    /// The sender's node id, if it is usable: valid UTF-8, not empty,
    /// without `#` (which separates node id and port name), and without
    /// control characters (a deviation: the reference takes any; no real
    /// node id has them, and they would reach logs and events verbatim).
    pub fn node_id(&self) -> Result<&str, HandshakeError> {
        let why = if !self.node_utf8 {
            "not UTF-8"
        } else if self.node.is_empty() {
            "empty"
        } else if self.node.contains('#') {
            "contains '#'"
        } else if self.node.chars().any(char::is_control) {
            "contains a control character"
        } else {
            return Ok(&self.node);
        };
        Err(HandshakeError::InvalidNodeId {
            id: self.node.clone(),
            why,
        })
    }
}

/// Perl's `split /sep/, $s`: trailing empty fields are removed.
fn perl_split(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = s.split(|&b| b == sep).collect();
    while v.last().is_some_and(|f| f.is_empty()) {
        v.pop();
    }
    v
}

fn list(field: &[u8]) -> Vec<String> {
    perl_split(field, b',').into_iter().map(lossy).collect()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_line_limits() {
        let mut buf = BytesMut::from(&vec![b'x'; MAX_LINE - 1][..]);
        assert_eq!(take_line(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(take_line(&mut buf).unwrap().unwrap().len(), MAX_LINE - 1);

        let mut buf = BytesMut::from(&vec![b'x'; MAX_LINE][..]);
        assert_eq!(
            take_line(&mut buf),
            Err(HandshakeError::LineTooLong { limit: MAX_LINE })
        );
        // a newline just beyond the limit does not help
        buf.extend_from_slice(b"\n");
        assert!(take_line(&mut buf).is_err());
    }

    #[test]
    fn take_line_strips_one_cr() {
        let mut buf = BytesMut::from(&b"a\r\r\n\r\nb\n"[..]);
        assert_eq!(&take_line(&mut buf).unwrap().unwrap()[..], b"a\r");
        assert_eq!(&take_line(&mut buf).unwrap().unwrap()[..], b"");
        assert_eq!(&take_line(&mut buf).unwrap().unwrap()[..], b"b");
    }

    #[test]
    fn nonce_shape() {
        let n = Nonce::from_random([1; NONCE_BYTES]).as_str().to_owned();
        assert_eq!(n.len(), 88);
        assert!(!n.contains('=') && !n.contains('\n'));
        assert_ne!(n, Nonce::from_random([2; NONCE_BYTES]).as_str());
        assert_eq!(Nonce::from_line("ab\ncd").as_str(), "ab");
    }

    #[test]
    fn parse_like_perl() {
        let g = Greeting::parse(b"aemp;01;n;a,,b,;json;;=x;k=v=w;k=last;bare;");
        assert_eq!(g.auth, ["a", "", "b"]);
        assert!(g.version_is(1));
        assert_eq!(g.get("k"), Some("last"));
        assert!(g.has("bare"));
        assert_eq!(g.pairs.len(), 3);

        let g = Greeting::parse(b"aemp");
        assert_eq!(g.version, "");
        assert!(!g.version_is(1));
        assert!(g.node_id().is_err());
        assert!(g.auth.is_empty());

        for v in ["1", "1.0", "01", " 1", "1e0", "+1"] {
            assert!(
                Greeting::parse(format!("aemp;{v};n").as_bytes()).version_is(1),
                "{v}"
            );
        }
        for v in ["2", "0", "1x", "", "x"] {
            assert!(
                !Greeting::parse(format!("aemp;{v};n").as_bytes()).version_is(1),
                "{v}"
            );
        }
    }

    #[test]
    fn node_ids() {
        assert!(Greeting::parse(b"aemp;1;a#b").node_id().is_err());
        assert!(Greeting::parse(b"aemp;1;\xff").node_id().is_err());
        for bad in [
            &b"aemp;1;a\x1b[2Jb"[..],
            b"aemp;1;a\x00",
            b"aemp;1;\x7f",
            b"aemp;1;a\xc2\x85",
        ] {
            let e = Greeting::parse(bad).node_id().unwrap_err();
            assert!(e.to_string().contains("control character"), "{e}");
            assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
        }
        assert_eq!(Greeting::parse(b"aemp;1;anon/x").node_id(), Ok("anon/x"));
    }

    #[test]
    fn format_round_trip() {
        let g = Greeting::new("me", ["hmac_md6_64_256"], ["json"])
            .with("provider", "x")
            .with("peeraddr", "127.0.0.1:1");
        let line = g.to_line();
        assert_eq!(
            line,
            "aemp;1;me;hmac_md6_64_256;json;provider=x;peeraddr=127.0.0.1:1"
        );
        assert_eq!(Greeting::parse(line.as_bytes()), g);
    }
}

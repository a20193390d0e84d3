//! Node ids and port ids (`<nodeid>#<portname>`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A port id, `<nodeid>#<portname>`: the node part is everything before
/// the first `#`. A string without `#` names the node port (`""`) of that
/// node, as in the reference (`split /#/, $port, 2`).
///
/// Port ids serialize as plain strings, so they can travel inside messages
/// (reply ports).
///
/// ```
/// use aemp::PortId;
/// let p: PortId = "perlB#echo".parse().unwrap();
/// assert_eq!((p.node(), p.name()), ("perlB", "echo"));
/// let n = PortId::from("perlB");
/// assert_eq!((n.node(), n.name()), ("perlB", ""));
/// assert_eq!(PortId::new("a", "x#y").to_string(), "a#x#y");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId {
    id: Arc<str>,
    /// Index of the first `#`, or the length when there is none.
    hash: usize,
}

impl PortId {
    /// The port `name` on node `node`.
    pub fn new(node: &str, name: &str) -> PortId {
        PortId::from(format!("{node}#{name}"))
    }

    /// The node part.
    pub fn node(&self) -> &str {
        &self.id[..self.hash]
    }

    /// The port name on its node (`""` for the node port).
    pub fn name(&self) -> &str {
        self.id.get(self.hash + 1..).unwrap_or("")
    }

    /// The whole id.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

/// Splits a port id string into node and port name without allocating.
pub(crate) fn split_port(id: &str) -> (&str, &str) {
    match memchr::memchr(b'#', id.as_bytes()) {
        Some(i) => (&id[..i], &id[i + 1..]),
        None => (id, ""),
    }
}

impl From<String> for PortId {
    fn from(s: String) -> PortId {
        let hash = memchr::memchr(b'#', s.as_bytes()).unwrap_or(s.len());
        PortId { id: s.into(), hash }
    }
}

impl From<&str> for PortId {
    fn from(s: &str) -> PortId {
        PortId::from(s.to_owned())
    }
}

impl FromStr for PortId {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<PortId, Self::Err> {
        Ok(PortId::from(s))
    }
}

impl AsRef<str> for PortId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortId({:?})", &*self.id)
    }
}

impl Serialize for PortId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for PortId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortId, D::Error> {
        String::deserialize(d).map(PortId::from)
    }
}

/// Random text of `[0-9A-Za-z]` from `bytes` random bytes, like the
/// reference's `alnumbits` (base 62 of a random number).
pub fn alnum_random(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::fill(&mut raw[..]);
    base62(&raw)
}

/// `bytes` as one big-endian number, written in base 62.
fn base62(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut num: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = Vec::new();
    while !num.is_empty() {
        // divide by 62, keep the remainder
        let mut rem = 0u32;
        let mut quotient = Vec::with_capacity(num.len());
        for &b in &num {
            let cur = rem * 256 + u32::from(b);
            let q = cur / 62;
            rem = cur % 62;
            if !(quotient.is_empty() && q == 0) {
                quotient.push(q as u8);
            }
        }
        out.push(DIGITS[rem as usize]);
        num = quotient;
    }
    if out.is_empty() {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Perl's magic string increment, as the reference numbers its ports:
/// 0 → `a`, 25 → `z`, 26 → `aa`, 27 → `ab`, …
pub(crate) fn perl_counter(mut n: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
        n -= 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_like_perl() {
        let seq: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 701, 702]
            .map(perl_counter)
            .into();
        assert_eq!(seq, ["a", "b", "z", "aa", "ab", "az", "ba", "zz", "aaa"]);
    }

    #[test]
    fn base62_numbers() {
        assert_eq!(base62(&[0]), "0");
        assert_eq!(base62(&[61]), "z");
        assert_eq!(base62(&[62]), "10");
        assert_eq!(base62(&[1, 0]), "48"); // 256 = 4·62 + 8
        assert!(alnum_random(64).len() >= 80);
    }

    #[test]
    fn alnum() {
        let a = alnum_random(12);
        assert!(
            a.len() >= 10 && a.chars().all(|c| c.is_ascii_alphanumeric()),
            "{a}"
        );
        assert_ne!(a, alnum_random(12));
    }

    #[test]
    fn split() {
        assert_eq!(split_port("a#b#c"), ("a", "b#c"));
        assert_eq!(split_port("a#"), ("a", ""));
        assert_eq!(split_port("a"), ("a", ""));
        let p = PortId::from("a#");
        assert_eq!((p.node(), p.name()), ("a", ""));
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(j, r##""a#""##);
        assert_eq!(serde_json::from_str::<PortId>(&j).unwrap(), p);
    }
}

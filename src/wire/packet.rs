//! Packets: one JSON array `[dest_port_name, @message]` each.
//!
//! A [`Packet`] keeps the raw bytes of its JSON frame and the position of
//! its destination; the message elements are decoded only when the
//! receiver asks, straight into the receiver's own serde type
//! ([`Packet::decode`]) or into [`serde_json::Value`]s ([`Packet::values`]).
//! JSON is the one data model of aemp: other framings are transcoded to and
//! from it.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{EncodeError, FrameError};

/// One decoded packet: a validated JSON array whose first element, if any,
/// is the destination port name (the part after `#`; `""` is the node
/// port). The empty array `[]` is a keepalive.
///
/// ```
/// use aemp::wire::Packet;
/// let p = Packet::parse(bytes::Bytes::from_static(br#"["sink","msg",1,"x"]"#)).unwrap();
/// assert_eq!(p.dest(), Some("sink"));
/// let (tag, i, payload): (String, u64, String) = p.decode().unwrap();
/// assert_eq!((tag.as_str(), i, payload.as_str()), ("msg", 1, "x"));
/// ```
#[derive(Clone)]
pub struct Packet {
    frame: Bytes,
    dest: Dest,
}

#[derive(Clone)]
enum Dest {
    /// `[]`: a keepalive.
    None,
    /// The destination string appears unescaped at this byte range.
    Span(u32, u32),
    /// The destination had escapes; this is its decoded text.
    Owned(Box<str>),
}

impl Packet {
    /// Validates a complete JSON frame and finds its destination.
    ///
    /// The frame must be valid UTF-8 JSON, an array, and (unless empty)
    /// have a string as its first element.
    pub fn parse(frame: Bytes) -> Result<Packet, FrameError> {
        let first = frame.iter().position(|b| !is_ws(*b));
        if first.map(|i| frame[i]) != Some(b'[') {
            return Err(FrameError::NotAnArray);
        }
        let after = first.map_or(0, |i| i + 1);
        match frame[after..].iter().find(|b| !is_ws(**b)) {
            Some(b'"') | Some(b']') => {}
            Some(_) => return Err(FrameError::DestNotString),
            None => return Err(FrameError::Truncated),
        }
        if std::str::from_utf8(&frame).is_err() {
            return Err(FrameError::InvalidJson("invalid UTF-8".into()));
        }
        let head: Head<'_> =
            serde_json::from_slice(&frame).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
        let dest = match head.0 {
            None => Dest::None,
            Some(Cow::Borrowed(s)) => {
                let start = s.as_ptr() as usize - frame.as_ptr() as usize;
                let end = start + s.len();
                match (u32::try_from(start), u32::try_from(end)) {
                    (Ok(a), Ok(b)) => Dest::Span(a, b),
                    _ => Dest::Owned(s.into()),
                }
            }
            Some(Cow::Owned(s)) => Dest::Owned(s.into_boxed_str()),
        };
        Ok(Packet { frame, dest })
    }

    /// Wraps a frame this process just made with [`Packet::encode`] for
    /// `dest`, without validating it again.
    pub(crate) fn from_encoded(frame: Bytes, dest: &str) -> Packet {
        let end = 2 + dest.len();
        let unescaped = frame.get(..2) == Some(&b"[\""[..])
            && frame.get(2..end) == Some(dest.as_bytes())
            && frame.get(end) == Some(&b'"');
        let dest = match (unescaped, u32::try_from(end)) {
            (true, Ok(end)) => Dest::Span(2, end),
            _ => Dest::Owned(dest.into()),
        };
        Packet { frame, dest }
    }

    /// Whether this is the keepalive packet `[]`.
    pub fn is_keepalive(&self) -> bool {
        matches!(self.dest, Dest::None)
    }

    /// The destination port name, `None` for a keepalive.
    pub fn dest(&self) -> Option<&str> {
        match &self.dest {
            Dest::None => None,
            // the span was validated as UTF-8 in `parse`
            Dest::Span(a, b) => std::str::from_utf8(&self.frame[*a as usize..*b as usize]).ok(),
            Dest::Owned(s) => Some(s),
        }
    }

    /// The raw JSON frame, destination included.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// Decodes the message (the elements after the destination) into `T`,
    /// which must describe all of them: a tuple, a tuple struct, a struct
    /// (positional), or a `Vec`. Strings can be borrowed from the packet.
    ///
    /// Perl sends numbers that were once used as strings as JSON strings;
    /// use [`Lenient`](crate::wire::Lenient) for fields that may arrive
    /// either way.
    pub fn decode<'de, T: Deserialize<'de>>(&'de self) -> Result<T, serde_json::Error> {
        let Body(t) = serde_json::from_slice::<Body<T>>(&self.frame)?;
        Ok(t)
    }

    /// The message elements as JSON values.
    pub fn values(&self) -> Result<Vec<Value>, serde_json::Error> {
        self.decode()
    }

    /// Encodes `msg`, which must serialize to an array, as the frame
    /// `[dest, msg elements…]` at the end of `out`. On error `out` is left
    /// as it was.
    ///
    /// ```
    /// let mut out = bytes::BytesMut::new();
    /// aemp::wire::Packet::encode("sink", &("msg", 1, "x"), &mut out).unwrap();
    /// aemp::wire::Packet::encode("n", &(), &mut out).unwrap_err(); // () is not an array
    /// aemp::wire::Packet::encode("", &Vec::<u8>::new(), &mut out).unwrap();
    /// assert_eq!(&out[..], br#"["sink","msg",1,"x"][""]"#);
    /// ```
    pub fn encode<M: Serialize + ?Sized>(
        dest: &str,
        msg: &M,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        let result = encode_inner(dest, msg, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Encodes a packet into a fresh buffer; see [`Packet::encode`].
    pub fn to_frame<M: Serialize + ?Sized>(dest: &str, msg: &M) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(64);
        Packet::encode(dest, msg, &mut out)?;
        Ok(out.freeze())
    }
}

fn encode_inner<M: Serialize + ?Sized>(
    dest: &str,
    msg: &M,
    out: &mut BytesMut,
    start: usize,
) -> Result<(), EncodeError> {
    out.put_u8(b'[');
    serde_json::to_writer(out.writer(), dest)?;
    let body = out.len();
    serde_json::to_writer(out.writer(), msg)?;
    // the compact formatter writes an array as `[` … `]` without spaces
    if out.get(body) != Some(&b'[') || out.last() != Some(&b']') {
        return Err(EncodeError::NotAnArray);
    }
    if out.len() == body + 2 {
        out.truncate(body);
        out.put_u8(b']');
    } else {
        out[body] = b',';
    }
    debug_assert!(out.len() > start);
    Ok(())
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the payload stays out of logs; only its size and destination show
        f.debug_struct("Packet")
            .field("dest", &self.dest())
            .field("bytes", &self.frame.len())
            .finish()
    }
}

impl PartialEq for Packet {
    fn eq(&self, other: &Packet) -> bool {
        self.frame == other.frame
    }
}

pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The destination of a frame: first element borrowed when possible, the
/// rest skipped (validated) without building values.
struct Head<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Head<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Head<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Head<'de>, A::Error> {
                let dest = seq.next_element_seed(DestSeed)?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Head(dest))
            }
        }
        d.deserialize_seq(V)
    }
}

struct DestSeed;

impl<'de> DeserializeSeed<'de> for DestSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port name string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(s))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(s))
            }
        }
        d.deserialize_str(V)
    }
}

/// The message part of a frame: skips the destination, hands the rest of
/// the array to `T`.
struct Body<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Body<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Body<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a packet array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body<T>, A::Error> {
                seq.next_element::<IgnoredAny>()?;
                T::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Body)
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<Packet, FrameError> {
        Packet::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn destinations() {
        assert!(parse("[]").unwrap().is_keepalive());
        assert!(parse(" [ ] ").unwrap().is_keepalive());
        assert_eq!(parse(r#"[""]"#).unwrap().dest(), Some(""));
        assert_eq!(parse(r#"["a\u0062c",1]"#).unwrap().dest(), Some("abc"));
        assert_eq!(parse(r#"["a\"b",1]"#).unwrap().dest(), Some("a\"b"));
        assert_eq!(parse(r#"["ü#x"]"#).unwrap().dest(), Some("ü#x"));
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(r#"{"a":1}"#), Err(FrameError::NotAnArray));
        assert_eq!(parse("5"), Err(FrameError::NotAnArray));
        assert_eq!(parse(r#"[5,"x"]"#), Err(FrameError::DestNotString));
        assert_eq!(parse(r#"[[1],"x"]"#), Err(FrameError::DestNotString));
        assert_eq!(parse(r#"[null]"#), Err(FrameError::DestNotString));
        assert!(matches!(
            parse(r#"["a",1}"#),
            Err(FrameError::InvalidJson(_))
        ));
        assert!(matches!(
            parse(r#"["a",tru]"#),
            Err(FrameError::InvalidJson(_))
        ));
        assert!(matches!(
            parse("[\"a\",\"\u{1}\"]"),
            Err(FrameError::InvalidJson(_))
        ));
        assert!(matches!(
            Packet::parse(Bytes::from_static(b"[\"a\",\"\xff\"]")),
            Err(FrameError::InvalidJson(_))
        ));
    }

    #[test]
    fn decode_body() {
        let p = parse(r#"["sink","msg",1,"payload"]"#).unwrap();
        let (t, n, s): (&str, u64, &str) = p.decode().unwrap();
        assert_eq!((t, n, s), ("msg", 1, "payload"));
        assert_eq!(
            p.values().unwrap(),
            vec![json!("msg"), json!(1), json!("payload")]
        );
        // too few or too many fields are errors
        assert!(p.decode::<(String, u64)>().is_err());
        assert!(p.decode::<(String, u64, String, u8)>().is_err());
        assert_eq!(
            parse(r#"["x"]"#).unwrap().values().unwrap(),
            Vec::<Value>::new()
        );
    }

    #[test]
    fn encode_shapes() {
        let f = Packet::to_frame("p", &json!(["a", {"k": [1, 2]}, null])).unwrap();
        assert_eq!(&f[..], br#"["p","a",{"k":[1,2]},null]"#);
        let f = Packet::to_frame("p", &Vec::<i32>::new()).unwrap();
        assert_eq!(&f[..], br#"["p"]"#);
        assert!(matches!(
            Packet::to_frame("p", &json!({"a": 1})),
            Err(EncodeError::NotAnArray)
        ));
        assert!(matches!(
            Packet::to_frame("p", &"s"),
            Err(EncodeError::NotAnArray)
        ));
        for dest in ["plain", "q\"", "ü"] {
            let f = Packet::to_frame(dest, &("x",)).unwrap();
            assert_eq!(Packet::from_encoded(f.clone(), dest).dest(), Some(dest));
            assert_eq!(Packet::parse(f).unwrap().dest(), Some(dest));
        }
        let f = Packet::to_frame("q\"", &("x",)).unwrap();
        assert_eq!(
            parse(std::str::from_utf8(&f).unwrap()).unwrap().dest(),
            Some("q\"")
        );
    }
}

//! Encoding packets in the `cbor` framing: a serde `Serializer` that writes
//! what CBOR::XS writes for the same data, and the same data model as the
//! `json` framing (`serde_json`'s choices for enums, bytes, map keys and
//! non-finite floats).

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::ser;

use crate::wire::error::EncodeError;
use crate::wire::framing::serializer::{Error, KeySer, forward_to_seq};
use crate::wire::packet::append_or_restore;

/// Writes a head: major type and argument in the shortest form.
pub(crate) fn put_head(out: &mut BytesMut, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.put_u8(m | n as u8);
    } else if n <= 0xff {
        out.put_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.put_u8(m | 25);
        out.put_u16(n as u16);
    } else if n <= 0xffff_ffff {
        out.put_u8(m | 26);
        out.put_u32(n as u32);
    } else {
        out.put_u8(m | 27);
        out.put_u64(n);
    }
}

fn put_i64(out: &mut BytesMut, v: i64) {
    if v < 0 {
        put_head(out, 1, !(v as u64));
    } else {
        put_head(out, 0, v as u64);
    }
}

fn put_text(out: &mut BytesMut, s: &str) {
    put_head(out, 3, s.len() as u64);
    out.put_slice(s.as_bytes());
}

/// A float as CBOR::XS writes a Perl number: integral values in `0..2³²`
/// as integers, else float32 when exact, else float64; non-finite ones as
/// null (as `serde_json` does).
fn put_f64(out: &mut BytesMut, v: f64) {
    if !v.is_finite() {
        out.put_u8(0xf6);
    } else if v.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&v) {
        put_head(out, 0, v as u64);
    } else if f64::from(v as f32) == v {
        out.put_u8(0xfa);
        out.put_f32(v as f32);
    } else {
        out.put_u8(0xfb);
        out.put_f64(v);
    }
}

/// A container head whose count is only known at its end.
struct Deferred {
    /// Where the head goes in the output.
    at: usize,
    major: u8,
    count: u64,
}

/// The serializer state: the output and the heads still to insert.
pub(crate) struct Enc<'a> {
    out: &'a mut BytesMut,
    deferred: Vec<Deferred>,
}

impl<'a> Enc<'a> {
    fn new(out: &'a mut BytesMut) -> Enc<'a> {
        Enc {
            out,
            deferred: Vec::new(),
        }
    }

    /// Inserts the deferred heads into what was written from `start` on.
    fn finish(self, start: usize) {
        if self.deferred.is_empty() {
            return;
        }
        // (copies only what this call wrote, not what `out` held before)
        let body = self.out[start..].to_vec();
        self.out.truncate(start);
        let mut cursor = 0;
        for d in &self.deferred {
            let at = d.at - start;
            self.out.put_slice(&body[cursor..at]);
            put_head(self.out, d.major, d.count);
            cursor = at;
        }
        self.out.put_slice(&body[cursor..]);
    }

    fn compound(&mut self, major: u8, len: Option<usize>) -> Compound<'_, 'a> {
        match len {
            Some(n) => {
                put_head(self.out, major, n as u64);
                Compound {
                    enc: self,
                    expect: Some(n as u64),
                    count: 0,
                    deferred: None,
                }
            }
            None => {
                let at = self.out.len();
                self.deferred.push(Deferred {
                    at,
                    major,
                    count: 0,
                });
                let i = self.deferred.len() - 1;
                Compound {
                    enc: self,
                    expect: None,
                    count: 0,
                    deferred: Some(i),
                }
            }
        }
    }
}

/// An array or map being written; `count` counts elements (pairs for
/// maps).
pub(crate) struct Compound<'b, 'a> {
    enc: &'b mut Enc<'a>,
    expect: Option<u64>,
    count: u64,
    deferred: Option<usize>,
}

impl Compound<'_, '_> {
    fn end(self) -> Result<(), Error> {
        if let Some(i) = self.deferred
            && let Some(d) = self.enc.deferred.get_mut(i)
        {
            d.count = self.count;
        }
        match self.expect {
            Some(n) if n != self.count => Err(Error::Msg(format!(
                "serializer announced {n} elements but wrote {}",
                self.count
            ))),
            _ => Ok(()),
        }
    }
}

impl<'b, 'a> ser::Serializer for &'b mut Enc<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'b, 'a>;
    type SerializeTuple = Compound<'b, 'a>;
    type SerializeTupleStruct = Compound<'b, 'a>;
    type SerializeTupleVariant = Compound<'b, 'a>;
    type SerializeMap = Compound<'b, 'a>;
    type SerializeStruct = Compound<'b, 'a>;
    type SerializeStructVariant = Compound<'b, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.put_u8(if v { 0xf5 } else { 0xf4 });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        put_i64(self.out, v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        if let Ok(u) = u64::try_from(v) {
            put_head(self.out, 0, u);
        } else if let Ok(n) = u64::try_from(-1 - v) {
            put_head(self.out, 1, n);
        } else {
            return Err(Error::Msg(format!("integer {v} is out of CBOR's range")));
        }
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        put_head(self.out, 0, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.serialize_i128(i128::try_from(v).unwrap_or(i128::MAX))
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        // the value the `json` framing carries: the shortest decimal that
        // reads back as this f32, read as f64
        if !v.is_finite() {
            return self.serialize_unit();
        }
        let mut b = ryu::Buffer::new();
        let v64 = b.format_finite(v).parse::<f64>().unwrap_or(f64::from(v));
        put_f64(self.out, v64);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        put_f64(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        put_text(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        put_text(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // `serde_json` writes bytes as an array of numbers
        put_head(self.out, 4, v.len() as u64);
        for &b in v {
            put_head(self.out, 0, u64::from(b));
        }
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.put_u8(0xf6);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        put_head(self.out, 5, 1);
        put_text(self.out, variant);
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'b, 'a>, Error> {
        Ok(self.compound(4, len))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'b, 'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'b, 'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'b, 'a>, Error> {
        put_head(self.out, 5, 1);
        put_text(self.out, variant);
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'b, 'a>, Error> {
        Ok(self.compound(5, len))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'b, 'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'b, 'a>, Error> {
        put_head(self.out, 5, 1);
        put_text(self.out, variant);
        self.serialize_map(Some(len))
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.count += 1;
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

forward_to_seq!(Compound<'_, '_>:
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        self.count += 1;
        let out = &mut *self.enc.out;
        key.serialize(KeySer(|k: &str| put_text(out, k)))
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.count += 1;
        put_text(self.enc.out, key);
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

/// Encodes the packet `[dest, msg elements…]` at the end of `out`; `msg`
/// must serialize to an array (as for [`Packet::encode`](crate::wire::Packet::encode)).
/// On error `out` is left as it was.
pub(crate) fn encode_packet<M: Serialize + ?Sized>(
    dest: &str,
    msg: &M,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    append_or_restore(out, |out, start| encode_packet_inner(dest, msg, out, start))
}

fn encode_packet_inner<M: Serialize + ?Sized>(
    dest: &str,
    msg: &M,
    out: &mut BytesMut,
    start: usize,
) -> Result<(), Error> {
    let mut enc = Enc::new(out);
    msg.serialize(&mut enc)?;
    enc.finish(start);
    // the message is an array: put the destination in front of its
    // elements, one more in the head
    let Some(&first) = out.get(start) else {
        return Err(Error::NotAnArray);
    };
    if first >> 5 != 4 {
        return Err(Error::NotAnArray);
    }
    let hlen = match first & 0x1f {
        0..=23 => 1,
        24 => 2,
        25 => 3,
        26 => 5,
        _ => 9,
    };
    let n = match out.get(start + 1..start + hlen) {
        Some(b) if hlen > 1 => read_be(b),
        _ => u64::from(first & 0x1f),
    };
    let mut prefix = BytesMut::with_capacity(16 + dest.len());
    put_head(&mut prefix, 4, n + 1);
    put_text(&mut prefix, dest);
    let body = start + hlen;
    let body_len = out.len() - body;
    let new_body = start + prefix.len();
    out.resize(new_body + body_len, 0);
    out.copy_within(body..body + body_len, new_body);
    out[start..new_body].copy_from_slice(&prefix);
    Ok(())
}

fn read_be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

/// Re-encodes a JSON frame (from [`Packet::encode`](crate::wire::Packet::encode))
/// as CBOR at the end of `out`, keeping the order of map keys. On error
/// `out` is left as it was.
pub(crate) fn encode_frame(json_frame: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    append_or_restore(out, |out, start| {
        let mut de = serde_json::Deserializer::from_slice(json_frame);
        let mut enc = Enc::new(out);
        serde_transcode::transcode(&mut de, &mut enc)?;
        enc.finish(start);
        de.end().map_err(|e| Error::Msg(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn packet<M: Serialize + ?Sized>(dest: &str, msg: &M) -> Result<Vec<u8>, EncodeError> {
        let mut out = BytesMut::from(&b"keep"[..]);
        let r = encode_packet(dest, msg, &mut out);
        assert_eq!(&out[..4], b"keep");
        r.map(|()| out[4..].to_vec())
    }

    fn frame(json: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(json.as_bytes(), &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn what_perl_writes() {
        // the bytes CBOR::XS writes for the same Perl data
        // (perl -MCBOR::XS -e 'print unpack "H*", encode_cbor [...]')
        let cases: &[(&str, &str)] = &[
            (
                "[3.5,0.1,1e300,-2.5,3.0,-0.0,4294967295.0,4294967296.0]",
                "88fa40600000fb3fb999999999999afb7e37e43c8800759cfac020000003001afffffffffa4f800000",
            ),
            (
                "[9223372036854775807,-9223372036854775808,18446744073709551615,-1]",
                "841b7fffffffffffffff3b7fffffffffffffff1bffffffffffffffff20",
            ),
            ("[true,false,null,[],{}]", "85f5f4f680a0"),
            (
                "[0,23,24,255,256,65535,65536,-24,-25,-256,-257]",
                "8b0017181818ff19010019ffff1a0001000037381838ff390100",
            ),
        ];
        for (json, hex_bytes) in cases {
            assert_eq!(hex::encode(frame(json)), *hex_bytes, "{json}");
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(
            packet("sink", &("msg", 1, "x")).unwrap(),
            b"\x84\x64sink\x63msg\x01\x61x"
        );
        assert_eq!(packet("", &Vec::<u8>::new()).unwrap(), b"\x81\x60");
        assert!(matches!(packet("p", &()), Err(EncodeError::NotAnArray)));
        assert!(matches!(
            packet("p", &json!({"a": 1})),
            Err(EncodeError::NotAnArray)
        ));
        assert!(matches!(packet("p", &"s"), Err(EncodeError::NotAnArray)));
        // a map key that is not a string: refused, `out` unchanged
        let mut m = std::collections::BTreeMap::new();
        m.insert(vec![1], 2);
        assert!(matches!(packet("p", &(m,)), Err(EncodeError::Serialize(_))));
        // a message of 24 elements needs a longer head once the
        // destination is in
        let long: Vec<u8> = (0..23).collect();
        let bytes = packet("d", &long).unwrap();
        assert_eq!(&bytes[..4], b"\x98\x18\x61d");
        // unknown lengths (an iterator) get their heads inserted
        struct Iter;
        impl Serialize for Iter {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq((0..30u8).map(|i| vec![i; usize::from(i % 3)]))
            }
        }
        let bytes = packet("d", &Iter).unwrap();
        let mut expect = BytesMut::new();
        put_head(&mut expect, 4, 31);
        put_text(&mut expect, "d");
        for i in 0..30u8 {
            put_head(&mut expect, 4, u64::from(i % 3));
            for _ in 0..i % 3 {
                put_head(&mut expect, 0, u64::from(i));
            }
        }
        assert_eq!(bytes, expect.to_vec());
        // enums, bytes and f32 as serde_json has them
        #[derive(Serialize)]
        enum E {
            A,
            B(u8),
            C { x: u8 },
        }
        assert_eq!(
            packet("", &(E::A, E::B(1), E::C { x: 2 })).unwrap(),
            frame(r#"["","A",{"B":1},{"C":{"x":2}}]"#)
        );
        assert_eq!(
            packet("", &(0.1f32, f64::NAN)).unwrap(),
            frame(r#"["",0.1,null]"#)
        );
        let mut keys = std::collections::BTreeMap::new();
        keys.insert(5, "five");
        assert_eq!(packet("", &(keys,)).unwrap(), frame(r#"["",{"5":"five"}]"#));
    }

    #[test]
    fn frames_keep_key_order() {
        assert_eq!(
            frame(r#"["d",{"z":1,"a":[2,{"m":"\u00e9"}]}]"#),
            b"\x82\x61d\xa2\x61z\x01\x61a\x82\x02\xa1\x61m\x62\xc3\xa9"
        );
        assert_eq!(frame("[]"), b"\x80");
        let mut out = BytesMut::from(&b"x"[..]);
        assert!(encode_frame(b"[1,", &mut out).is_err());
        assert!(encode_frame(b"[1] 2", &mut out).is_err());
        assert_eq!(&out[..], b"x");
    }
}

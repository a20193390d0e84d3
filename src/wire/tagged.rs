//! Typed messages: a Rust enum as the flat array `["tag", args…]` that
//! Perl ports exchange (the first element is what `rcv` dispatches on,
//! MP.pm 408–450).
//!
//! See [`Tagged`].

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, IntoDeserializer, SeqAccess,
    VariantAccess, Visitor,
};
use serde::ser::{self, Impossible, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::packet::Packet;

/// An enum as the flat array `["tag", fields…]`. Serializing anything
/// but an enum is an error.
///
/// [`Tagged`] adapts any `#[derive(Serialize, Deserialize)]` enum, with no
/// macro of ours: the variant's name (or its `#[serde(rename)]`) is the
/// tag, a tuple variant's fields (or a struct variant's, in order) are the
/// rest, a newtype variant's one field is the one element after the tag,
/// and a unit variant is the tag alone — both ways.
///
/// ```
/// use aemp::wire::Tagged;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// enum Msg {
///     #[serde(rename = "ping")]
///     Ping(String, u32),
///     #[serde(rename = "pong")]
///     Pong(u32),
///     Quit,
/// }
///
/// let json = serde_json::to_string(&Tagged(Msg::Ping("a#b".into(), 7))).unwrap();
/// assert_eq!(json, r##"["ping","a#b",7]"##);
/// assert_eq!(serde_json::to_string(&Tagged(Msg::Quit)).unwrap(), r#"["Quit"]"#);
/// let Tagged(m) = serde_json::from_str::<Tagged<Msg>>(r#"["pong",8]"#).unwrap();
/// assert_eq!(m, Msg::Pong(8));
/// ```
///
/// Decoding a packet with [`Packet::decode_tagged`] tells an unknown tag
/// apart from a bad message ([`TaggedError::UnknownTag`]), so a router
/// can hand such messages to its default callback; a port made with
/// [`Rcv::typed`](crate::Rcv::typed) does so by itself. Send one with
/// `node.snd(&port, &Tagged(msg))`.
///
/// Round trips: what decodes from an array encodes back to the same array,
/// except where the element types normalise Perl's data (a
/// [`Lenient`](crate::wire::Lenient) field reads `"1"` and writes `1`), and a
/// numeric tag (`[5, …]`, matching a variant renamed `"5"`) is written
/// back as the string `"5"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tagged<E>(pub E);

/// Why a packet did not decode as a typed message.
#[derive(Debug, thiserror::Error)]
pub enum TaggedError {
    /// The message is empty, or its first element is an array or object.
    #[error("message has no tag")]
    NoTag,
    /// The tag names no variant of the enum: a router passes such a
    /// message to its default callback.
    #[error("unknown tag {tag:?}")]
    UnknownTag {
        /// The message's tag.
        tag: String,
    },
    /// The tag is known but the rest does not fit its variant.
    #[error("bad {tag:?} message: {source}")]
    Decode {
        /// The message's tag.
        tag: String,
        /// What did not fit.
        source: serde_json::Error,
    },
}

/// The tags (variant names, after renames) of enum `E`, read from its
/// `Deserialize` implementation; empty if `E` is not an enum.
///
/// ```
/// #[derive(serde::Deserialize)]
/// enum Msg { #[serde(rename = "ping")] Ping(u8), Quit }
/// assert_eq!(aemp::wire::tags_of::<Msg>(), ["ping", "Quit"]);
/// ```
pub fn tags_of<'de, E: Deserialize<'de>>() -> &'static [&'static str] {
    let found = Cell::new(None);
    let _ = E::deserialize(VariantProbe(&found));
    found.get().unwrap_or(&[])
}

impl Packet {
    /// Decodes the message as the typed message `E` (an enum, see
    /// [`Tagged`]).
    ///
    /// ```
    /// use aemp::wire::{Packet, TaggedError};
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// enum Msg { #[serde(rename = "add")] Add(i32, i32) }
    /// let p = |s: &'static str| Packet::parse(bytes::Bytes::from_static(s.as_bytes())).unwrap();
    /// assert_eq!(p(r#"["calc","add",1,2]"#).decode_tagged::<Msg>().unwrap(), Msg::Add(1, 2));
    /// assert!(matches!(
    ///     p(r#"["calc","mul",1,2]"#).decode_tagged::<Msg>(),
    ///     Err(TaggedError::UnknownTag { tag }) if tag == "mul"
    /// ));
    /// assert!(matches!(p(r#"["calc","add",1]"#).decode_tagged::<Msg>(), Err(TaggedError::Decode { .. })));
    /// ```
    pub fn decode_tagged<'de, E: Deserialize<'de>>(&'de self) -> Result<E, TaggedError> {
        let tag = self.tag().ok_or(TaggedError::NoTag)?;
        if !tags_of::<E>().contains(&&*tag) {
            return Err(TaggedError::UnknownTag {
                tag: tag.into_owned(),
            });
        }
        self.decode::<Tagged<E>>()
            .map(|Tagged(e)| e)
            .map_err(|source| TaggedError::Decode {
                tag: tag.into_owned(),
                source,
            })
    }
}

impl Packet {
    /// Decodes a message whose tag was already taken off (what a tag
    /// callback gets, [`Packet::without_tag`]) as variant `tag` of `E`.
    ///
    /// ```
    /// use aemp::wire::Packet;
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// enum Msg { #[serde(rename = "add")] Add(i32, i32) }
    /// let rest = Packet::parse(bytes::Bytes::from_static(br#"["calc",1,2]"#)).unwrap();
    /// assert_eq!(rest.decode_untagged::<Msg>("add").unwrap(), Msg::Add(1, 2));
    /// assert!(rest.decode_untagged::<Msg>("mul").is_err());
    /// ```
    pub fn decode_untagged<'de, E: Deserialize<'de>>(
        &'de self,
        tag: &str,
    ) -> Result<E, TaggedError> {
        let Some(variant) = tags_of::<E>().iter().copied().find(|v| *v == tag) else {
            return Err(TaggedError::UnknownTag {
                tag: tag.to_owned(),
            });
        };
        // the frame as it is, skipping the tag if it is still there
        let (frame, skip) = self.raw_parts();
        let mut de = serde_json::Deserializer::from_slice(frame);
        let result = de::Deserializer::deserialize_seq(
            &mut de,
            RestVisitor::<E> {
                variant,
                skip,
                marker: std::marker::PhantomData,
            },
        )
        .and_then(|e| de.end().map(|()| e));
        result.map_err(|source| TaggedError::Decode {
            tag: tag.to_owned(),
            source,
        })
    }
}

/// Reads `[dest, fields…]` as variant `variant` of `E`, after skipping
/// `skip` elements (the destination and any tags taken off).
struct RestVisitor<E> {
    variant: &'static str,
    skip: usize,
    marker: std::marker::PhantomData<E>,
}

impl<'de, E: Deserialize<'de>> Visitor<'de> for RestVisitor<E> {
    type Value = E;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a packet array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<E, A::Error> {
        for _ in 0..self.skip {
            seq.next_element::<IgnoredAny>()?;
        }
        E::deserialize(KnownVariant {
            variant: self.variant,
            seq,
        })
    }
}

/// A deserializer of the fields of a variant already picked.
struct KnownVariant<A> {
    variant: &'static str,
    seq: A,
}

impl<'de, A: SeqAccess<'de>> Deserializer<'de> for KnownVariant<A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, A::Error> {
        Err(de::Error::custom("Tagged can only deserialize an enum"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_enum(TagAndRest {
            variant: self.variant,
            seq: self.seq,
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

// ------------------------------------------------------------ serializing

impl<E: Serialize> Serialize for Tagged<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(FlatEnum(s))
    }
}

/// Serializes an enum as a flat sequence.
struct FlatEnum<S>(S);

/// The fields of a tuple or struct variant, into the sequence.
struct Fields<Q>(Q);

fn not_an_enum<Er: ser::Error>() -> Er {
    Er::custom("Tagged can only serialize an enum")
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*);)*) => {$(
        fn $name(self, $(_: $arg),*) -> Result<S::Ok, S::Error> {
            Err(not_an_enum())
        }
    )*};
}

impl<S: Serializer> Serializer for FlatEnum<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = Fields<S::SerializeSeq>;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = Fields<S::SerializeSeq>;

    refuse! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = self.0.serialize_seq(Some(1))?;
        seq.serialize_element(variant)?;
        seq.end()
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        // a newtype around an enum is that enum
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = self.0.serialize_seq(Some(2))?;
        seq.serialize_element(variant)?;
        seq.serialize_element(value)?;
        seq.end()
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let mut seq = self.0.serialize_seq(Some(len + 1))?;
        seq.serialize_element(variant)?;
        Ok(Fields(seq))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let mut seq = self.0.serialize_seq(Some(len + 1))?;
        seq.serialize_element(variant)?;
        Ok(Fields(seq))
    }
}

impl<Q: SerializeSeq> ser::SerializeTupleVariant for Fields<Q> {
    type Ok = Q::Ok;
    type Error = Q::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Q::Error> {
        self.0.serialize_element(value)
    }
    fn end(self) -> Result<Q::Ok, Q::Error> {
        self.0.end()
    }
}

impl<Q: SerializeSeq> ser::SerializeStructVariant for Fields<Q> {
    type Ok = Q::Ok;
    type Error = Q::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Q::Error> {
        self.0.serialize_element(value)
    }
    fn end(self) -> Result<Q::Ok, Q::Error> {
        self.0.end()
    }
}

// ---------------------------------------------------------- deserializing

impl<'de, E: Deserialize<'de>> Deserialize<'de> for Tagged<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tagged<E>, D::Error> {
        E::deserialize(FlatEnumDe(d)).map(Tagged)
    }
}

/// Reads a sequence as an enum: the first element picks the variant.
struct FlatEnumDe<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for FlatEnumDe<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, D::Error> {
        Err(de::Error::custom("Tagged can only deserialize an enum"))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_seq(SeqAsEnum { visitor, variants })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// Visits the sequence of a [`FlatEnumDe`].
struct SeqAsEnum<V> {
    visitor: V,
    variants: &'static [&'static str],
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SeqAsEnum<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array [tag, fields…]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V::Value, A::Error> {
        let Some(TagText(tag)) = seq.next_element()? else {
            return Err(de::Error::invalid_length(0, &"a tag"));
        };
        let Some(variant) = self.variants.iter().copied().find(|v| *v == tag) else {
            return Err(de::Error::unknown_variant(&tag, self.variants));
        };
        self.visitor.visit_enum(TagAndRest { variant, seq })
    }
}

/// A tag as Perl compares it: a string, or a number or boolean as its text
/// (the same rule as [`Packet::tag`]).
struct TagText(String);

impl<'de> Deserialize<'de> for TagText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TagText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TagText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tag (a string or a number)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TagText, E> {
                Ok(TagText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TagText, E> {
                Ok(TagText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TagText, E> {
                Ok(TagText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TagText, E> {
                Ok(TagText(if v { "1" } else { "0" }.to_owned()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TagText, E> {
                Ok(TagText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The variant picked by the tag, and the rest of the sequence.
struct TagAndRest<A> {
    variant: &'static str,
    seq: A,
}

impl<'de, A: SeqAccess<'de>> EnumAccess<'de> for TagAndRest<A> {
    type Error = A::Error;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self), A::Error> {
        let v = seed.deserialize(self.variant.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'de, A: SeqAccess<'de>> TagAndRest<A> {
    /// Refuses elements past the variant's fields.
    fn end(&mut self, fields: usize) -> Result<(), A::Error> {
        match self.seq.next_element::<IgnoredAny>()? {
            None => Ok(()),
            Some(_) => Err(de::Error::invalid_length(
                fields + 2,
                &format!("{} element(s)", fields + 1).as_str(),
            )),
        }
    }
}

impl<'de, A: SeqAccess<'de>> VariantAccess<'de> for TagAndRest<A> {
    type Error = A::Error;

    fn unit_variant(mut self) -> Result<(), A::Error> {
        self.end(0)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        mut self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        let value = self
            .seq
            .next_element_seed(seed)?
            .ok_or_else(|| de::Error::invalid_length(1, &"a tag and one field"))?;
        self.end(1)?;
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(
        mut self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let value = visitor.visit_seq(&mut self.seq)?;
        self.end(len)?;
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let value = visitor.visit_seq(&mut self.seq)?;
        self.end(fields.len())?;
        Ok(value)
    }
}

/// A deserializer that only records the variants an enum asks for.
struct VariantProbe<'a>(&'a Cell<Option<&'static [&'static str]>>);

impl<'de> Deserializer<'de> for VariantProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not an enum"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.set(Some(variants));
        Err(de::Error::custom("variants recorded"))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Msg {
        #[serde(rename = "ping")]
        Ping(String, i64),
        #[serde(rename = "one")]
        One(Value),
        #[serde(rename = "5")]
        Five,
        Point {
            x: i32,
            y: i32,
        },
        Quit,
    }

    fn to(m: &Msg) -> Value {
        serde_json::to_value(Tagged(m)).unwrap()
    }

    fn from(v: Value) -> Result<Msg, serde_json::Error> {
        serde_json::from_value::<Tagged<Msg>>(v).map(|Tagged(m)| m)
    }

    #[test]
    fn shapes_both_ways() {
        for (m, v) in [
            (Msg::Ping("p".into(), 3), json!(["ping", "p", 3])),
            (
                Msg::One(json!([1, {"a": 2}])),
                json!(["one", [1, {"a": 2}]]),
            ),
            (Msg::Five, json!(["5"])),
            (Msg::Point { x: 1, y: -2 }, json!(["Point", 1, -2])),
            (Msg::Quit, json!(["Quit"])),
        ] {
            assert_eq!(to(&m), v);
            assert_eq!(from(v.clone()).unwrap(), m, "{v}");
            // from bytes too (serde_json::from_str takes another path)
            let Tagged(back) = serde_json::from_str::<Tagged<Msg>>(&v.to_string()).unwrap();
            assert_eq!(back, m);
        }
        // a numeric tag matches its text
        assert_eq!(from(json!([5])).unwrap(), Msg::Five);
    }

    #[test]
    fn bad_messages() {
        for v in [
            json!([]),
            json!(["nope"]),
            json!(["ping", "p"]),
            json!(["ping", "p", 1, 2]),
            json!(["Quit", 1]),
            json!(["one"]),
            json!([["ping"], "p", 1]),
            json!({"ping": ["p", 1]}),
            json!("Quit"),
        ] {
            assert!(from(v.clone()).is_err(), "{v}");
        }
        assert!(serde_json::to_value(Tagged(3)).is_err());
        assert!(serde_json::to_value(Tagged(("a", 1))).is_err());
    }

    #[test]
    fn variant_names() {
        assert_eq!(tags_of::<Msg>(), ["ping", "one", "5", "Point", "Quit"]);
        assert!(tags_of::<(u8, u8)>().is_empty());
    }

    #[test]
    fn packets() {
        let p = |s: &str| Packet::parse(bytes::Bytes::copy_from_slice(s.as_bytes())).unwrap();
        assert_eq!(
            p(r#"["x","ping","a",1]"#).decode_tagged::<Msg>().unwrap(),
            Msg::Ping("a".into(), 1)
        );
        assert!(matches!(
            p(r#"["x","pong",1]"#).decode_tagged::<Msg>(),
            Err(TaggedError::UnknownTag { tag }) if tag == "pong"
        ));
        assert!(matches!(
            p(r#"["x"]"#).decode_tagged::<Msg>(),
            Err(TaggedError::NoTag)
        ));
        assert!(matches!(
            p(r#"["x","ping",1,1]"#).decode_tagged::<Msg>(),
            Err(TaggedError::Decode { tag, .. }) if tag == "ping"
        ));
        // the rest of a message whose tag a callback already took
        let rest = |s: &str, tag: &str| p(s).decode_untagged::<Msg>(tag);
        assert_eq!(rest(r#"["x"]"#, "Quit").unwrap(), Msg::Quit);
        assert_eq!(
            rest(r#"["x",1,2]"#, "Point").unwrap(),
            Msg::Point { x: 1, y: 2 }
        );
        assert_eq!(rest(r#"["x",[]]"#, "one").unwrap(), Msg::One(json!([])));
        assert!(rest(r#"["x",1]"#, "Quit").is_err());
        assert!(rest(r#"["x",1,2,3]"#, "Point").is_err());
        assert!(matches!(
            rest(r#"["x"]"#, "nope"),
            Err(TaggedError::UnknownTag { .. })
        ));
        let f = Packet::to_frame("x", &Tagged(Msg::Quit)).unwrap();
        assert_eq!(&f[..], br#"["x","Quit"]"#);
    }
}

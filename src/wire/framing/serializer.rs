//! What the serde serializers of the `storable` and `cbor` framings share:
//! their error type, the map-key serializer (with `serde_json`'s rules, so
//! that a message means the same in every framing), and the forwarding
//! impls of the tuple traits.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::wire::error::EncodeError;

/// Errors of the framings' serializers.
#[derive(Debug)]
pub(crate) enum Error {
    /// The message (or frame) is not an array.
    NotAnArray,
    /// Anything else.
    Msg(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAnArray => f.write_str("a message must serialize to an array"),
            Error::Msg(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Msg(msg.to_string())
    }
}

impl From<Error> for EncodeError {
    fn from(e: Error) -> EncodeError {
        match e {
            Error::NotAnArray => EncodeError::NotAnArray,
            Error::Msg(m) => EncodeError::Serialize(<serde_json::Error as ser::Error>::custom(m)),
        }
    }
}

/// Implements `SerializeTuple`, `SerializeTupleStruct` and (when named)
/// `SerializeTupleVariant` for a type by forwarding to its
/// `SerializeSeq` impl (`serialize_element` and `end`).
macro_rules! forward_to_seq {
    ($ty:ty: $($tr:ident::$method:ident),+ $(,)?) => {$(
        impl serde::ser::$tr for $ty {
            type Ok = ();
            type Error = $crate::wire::framing::serializer::Error;
            fn $method<T: serde::Serialize + ?Sized>(
                &mut self,
                value: &T,
            ) -> Result<(), Self::Error> {
                serde::ser::SerializeSeq::serialize_element(self, value)
            }
            fn end(self) -> Result<(), Self::Error> {
                serde::ser::SerializeSeq::end(self)
            }
        }
    )+};
}
pub(crate) use forward_to_seq;

/// Implements `Serializer` methods (`name(argument types) -> Ok type;`)
/// that refuse their value with the error `$err`.
macro_rules! refuse {
    ($err:expr; $($name:ident($($arg:ty),*) -> $ret:ty;)*) => {$(
        fn $name(self $(, _: $arg)*) -> Result<$ret, $crate::wire::framing::serializer::Error> {
            Err($err)
        }
    )*};
}
pub(crate) use refuse;

/// The map-key serializer: hands the key, as the string `serde_json`
/// writes for it, to the closure. As `serde_json`'s `MapKeySerializer`:
/// strings, chars, unit variants, integers (decimal), booleans (`true`,
/// `false`) and finite floats (as `serde_json` formats them) are keys;
/// newtype structs and `Some` are their contents; non-finite floats,
/// `None`, `()`, bytes, sequences, maps, structs and newtype variants are
/// refused.
pub(crate) struct KeySer<F>(pub(crate) F);

fn key_must_be_a_string() -> Error {
    Error::Msg("key must be a string".into())
}

/// Implements integer key methods: the decimal text.
macro_rules! int_keys {
    ($($name:ident($t:ty);)*) => {$(
        fn $name(self, v: $t) -> Result<(), Error> {
            (self.0)(itoa::Buffer::new().format(v));
            Ok(())
        }
    )*};
}

impl<F: FnOnce(&str)> KeySer<F> {
    /// A float key: the text `serde_json` writes for the float `v`, whose
    /// finiteness is `finite`.
    fn float(self, v: impl Serialize, finite: bool) -> Result<(), Error> {
        if !finite {
            return Err(Error::Msg(
                "float key must be finite (got NaN or +/-inf)".into(),
            ));
        }
        const CAP: usize = 40;
        let mut buf = [0u8; CAP];
        let len = {
            let mut w = &mut buf[..];
            serde_json::to_writer(&mut w, &v).map_err(|e| Error::Msg(e.to_string()))?;
            CAP - w.len()
        };
        let text = buf
            .get(..len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(key_must_be_a_string)?;
        (self.0)(text);
        Ok(())
    }
}

impl<F: FnOnce(&str)> ser::Serializer for KeySer<F> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    int_keys! {
        serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_i128(i128); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_u128(u128);
    }

    refuse! { key_must_be_a_string();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeStructVariant;
    }

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        (self.0)(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        (self.0)(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        (self.0)(v);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use serde::Serialize;
    use serde_json::Value;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::wire::framing::Framing;

    /// A map with the one entry `k: "v"`, whatever `k` serializes as.
    struct OneKey<K>(K);
    impl<K: Serialize> Serialize for OneKey<K> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map([(&self.0, "v")])
        }
    }

    /// The key `KeySer` makes of `k`, or its error.
    fn key<K: Serialize>(k: K) -> Result<String, String> {
        let mut out = None;
        k.serialize(KeySer(|s: &str| out = Some(s.to_owned())))
            .map_err(|e| e.to_string())?;
        out.ok_or_else(|| "no key".to_string())
    }

    /// The key serde_json (the `json` framing) writes for `k`, or its
    /// error.
    fn json_key<K: Serialize>(k: K) -> Result<String, String> {
        let text = serde_json::to_string(&OneKey(k)).map_err(|e| e.to_string())?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) if o.len() == 1 => Ok(o.keys().next().cloned().unwrap()),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[derive(Serialize, Clone, Copy, Debug)]
    struct Newtype(u8);
    #[derive(Serialize, Clone, Copy, Debug)]
    enum E {
        Unit,
        Wrap(u8),
    }
    /// Something that serializes as bytes.
    #[derive(Clone, Copy, Debug)]
    struct Bytes;
    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b"ab")
        }
    }

    /// Checks `KeySer` against serde_json for `k`, and that every framing
    /// carries `[d, {k: "v"}]` as the `json` framing does (or refuses it
    /// as it does).
    fn check<K: Serialize + Copy + std::fmt::Debug>(k: K) -> Result<String, String> {
        let ours = key(k);
        assert_eq!(ours, json_key(k), "{k:?}");
        let json = round_trip(Framing::Json, k);
        assert_eq!(json.is_ok(), ours.is_ok(), "{k:?}: {json:?}");
        for f in [Framing::Storable, Framing::Cbor] {
            let other = round_trip(f, k);
            match (&json, &other) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{f} {k:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{f} {k:?}: json {json:?}, {f} {other:?}"),
            }
        }
        ours
    }

    /// `[d, {k: "v"}]` encoded in `framing`, decoded back to JSON values.
    fn round_trip<K: Serialize>(framing: Framing, k: K) -> Result<Vec<Value>, String> {
        let mut out = BytesMut::new();
        framing
            .encode_packet("d", &(OneKey(k),), &mut out)
            .map_err(|e| e.to_string())?;
        let p = framing
            .codec(1 << 20, 64)
            .decode(&mut out)
            .map_err(|e| e.to_string())?
            .ok_or("truncated")?;
        assert!(out.is_empty());
        p.values().map_err(|e| e.to_string())
    }

    #[test]
    fn keys_are_what_serde_json_makes_them() {
        assert_eq!(check("k").unwrap(), "k");
        assert_eq!(check('\u{e9}').unwrap(), "\u{e9}");
        assert_eq!(check('\u{263a}').unwrap(), "\u{263a}");
        assert_eq!(check(true).unwrap(), "true");
        assert_eq!(check(false).unwrap(), "false");
        assert_eq!(check(-5i8).unwrap(), "-5");
        assert_eq!(check(u64::MAX).unwrap(), "18446744073709551615");
        check(i128::MIN).unwrap();
        check(u128::MAX).unwrap();
        assert_eq!(check(Some(7u8)).unwrap(), "7");
        assert_eq!(check(Newtype(3)).unwrap(), "3");
        assert_eq!(check(E::Unit).unwrap(), "Unit");
        for f in [0.1, 1.0, -2.5, 1e21, 1e-7, f64::MAX, 5e-324] {
            check(f).unwrap();
        }
        assert_eq!(check(0.1f32).unwrap(), "0.1");
        assert_eq!(
            check(f64::NAN).unwrap_err(),
            "float key must be finite (got NaN or +/-inf)"
        );
        assert_eq!(
            check(f32::INFINITY).unwrap_err(),
            "float key must be finite (got NaN or +/-inf)"
        );
        for refused in [
            check(None::<u8>),
            check(()),
            check([1u8, 2]),
            check((1, 2)),
            check(E::Wrap(1)),
            check(Bytes),
        ] {
            assert_eq!(refused.unwrap_err(), "key must be a string");
        }
    }
}

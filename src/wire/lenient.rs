//! Numbers that may arrive as JSON strings.
//!
//! Perl scalars that were once used as strings are encoded by JSON::XS as
//! strings, so a Perl peer may send `"1"` where another sends `1`. Such
//! values are data, not errors: wrap the field in [`Lenient`].

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A number that deserializes from a JSON number or a numeric string, and
/// serializes as a plain number.
///
/// ```
/// use aemp::wire::Lenient;
/// let v: (Lenient<u64>, Lenient<u64>) = serde_json::from_str(r#"[1, "2"]"#).unwrap();
/// assert_eq!((v.0.0, v.1.0), (1, 2));
/// assert!(serde_json::from_str::<Lenient<u64>>(r#""x""#).is_err());
/// ```
///
/// Round trips: a message that decodes encodes back to the same array,
/// but not byte for byte where Perl sent a number as a string — a
/// `Lenient` field normalises it, so `"1"` comes back as `1` (in a
/// [`Tagged`](crate::wire::Tagged) message too):
///
/// ```
/// use aemp::wire::{Lenient, Tagged};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// enum Msg { #[serde(rename = "seq")] Seq(Lenient<u32>) }
/// let m: Tagged<Msg> = serde_json::from_str(r#"["seq","1"]"#).unwrap();
/// assert_eq!(serde_json::to_string(&m).unwrap(), r#"["seq",1]"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Lenient<T>(pub T);

/// Numeric types [`Lenient`] can hold.
pub trait LenientNumber: FromStr + Copy {
    /// Converts from an unsigned JSON integer, if it fits.
    fn from_u64(v: u64) -> Option<Self>;
    /// Converts from a signed JSON integer, if it fits.
    fn from_i64(v: i64) -> Option<Self>;
    /// Converts from a JSON float, if it is exactly representable.
    fn from_f64(v: f64) -> Option<Self>;
}

macro_rules! int_number {
    ($($t:ty),*) => {$(
        impl LenientNumber for $t {
            fn from_u64(v: u64) -> Option<Self> { <$t>::try_from(v).ok() }
            fn from_i64(v: i64) -> Option<Self> { <$t>::try_from(v).ok() }
            fn from_f64(v: f64) -> Option<Self> {
                // integral floats such as 3.0 count as integers
                (v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64).then(|| v as $t)
            }
        }
    )*};
}
int_number!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl LenientNumber for f64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl<'de, T: LenientNumber> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: LenientNumber> Visitor<'_> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::from_u64(v)
                    .map(Lenient)
                    .ok_or_else(|| E::custom(format!("{v} out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::from_i64(v)
                    .map(Lenient)
                    .ok_or_else(|| E::custom(format!("{v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::from_f64(v)
                    .map(Lenient)
                    .ok_or_else(|| E::custom(format!("{v} out of range")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                let t = s.trim();
                if let Ok(v) = t.parse::<T>() {
                    return Ok(Lenient(v));
                }
                // "3.0" for an integer type, "1e3", …
                t.parse::<f64>()
                    .ok()
                    .and_then(T::from_f64)
                    .map(Lenient)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let v: Vec<Lenient<i64>> = serde_json::from_str(r#"[1,-2,"3"," 4 ","5.0",6.0]"#).unwrap();
        assert_eq!(
            v.iter().map(|l| l.0).collect::<Vec<_>>(),
            [1, -2, 3, 4, 5, 6]
        );
        assert!(serde_json::from_str::<Lenient<u8>>("300").is_err());
        assert!(serde_json::from_str::<Lenient<u8>>("1.5").is_err());
        assert!(serde_json::from_str::<Lenient<u8>>("null").is_err());
        let f: Lenient<f64> = serde_json::from_str(r#""0.25""#).unwrap();
        assert_eq!(f.0, 0.25);
        assert_eq!(serde_json::to_string(&Lenient(7u32)).unwrap(), "7");
    }
}

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

/// A JSON value as Perl numifies the scalar it decodes to: numbers as
/// they are; strings by their leading number, after leading whitespace
/// (`"2abc"` is 2, `"abc"` and `""` are 0, `"nan"` and `"inf"`, in any
/// case, are NaN and infinity); `true` 1, `false`, `null` and
/// containers 0 (a reference numifies to its address in Perl, which no
/// comparison here expects).
///
/// ```
/// use aemp::wire::perl_numify;
/// use serde_json::json;
/// assert_eq!(perl_numify(&json!(" 2.5e1x")), 25.0);
/// assert_eq!(perl_numify(&json!("abc")), 0.0);
/// assert_eq!(perl_numify(&json!(null)), 0.0);
/// assert!(perl_numify(&json!("NaN")).is_nan());
/// ```
pub fn perl_numify(v: &serde_json::Value) -> f64 {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => numify_str(s),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// Perl's numification of a string: its longest leading decimal number.
fn numify_str(s: &str) -> f64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0c', '\x0b']);
    let b = t.as_bytes();
    let sign = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let word = |w: &[u8]| {
        b.get(sign..sign + w.len())
            .is_some_and(|x| x.eq_ignore_ascii_case(w))
    };
    if word(b"nan") {
        return f64::NAN;
    }
    if word(b"inf") {
        return if b[0] == b'-' {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut i = sign;
    let int = digits(&mut i);
    let mut end = i;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) > 0 || int > 0 {
            end = i;
        }
    }
    if end > sign && matches!(b.get(end), Some(b'e' | b'E')) {
        let mut j = end + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if digits(&mut j) > 0 {
            end = j;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn strings_numify_by_their_leading_number() {
        for (s, want) in [
            ("2", 2.0),
            ("  -3.5", -3.5),
            ("2abc", 2.0),
            ("1e3x", 1000.0),
            ("1e", 1.0),
            ("1.e2", 100.0),
            (".5", 0.5),
            ("+.5e-1", 0.05),
            ("abc", 0.0),
            ("", 0.0),
            ("-", 0.0),
            (".", 0.0),
            ("0x10", 0.0),
            ("-Inf", f64::NEG_INFINITY),
            ("infinity", f64::INFINITY),
        ] {
            assert_eq!(perl_numify(&json!(s)), want, "{s:?}");
        }
        assert!(perl_numify(&json!(" nan")).is_nan());
        assert_eq!(perl_numify(&json!(7)), 7.0);
        assert_eq!(perl_numify(&json!(true)), 1.0);
        assert_eq!(perl_numify(&json!([1])), 0.0);
    }
}

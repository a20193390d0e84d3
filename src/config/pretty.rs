//! JSON as JSON::XS's `pretty` writes it: how the Perl tool writes the
//! configuration file and prints profiles.

use std::io::{Result, Write};

use serde_json::Value;

/// `v` as JSON::XS's `pretty` writes it (3-space indent, `" : "` between
/// key and value, `[]`/`{}` for empty containers, no final newline).
pub fn perl_pretty(v: &Value) -> String {
    use serde::Serialize as _;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, XsPretty::default());
    // serializing a Value into memory cannot fail
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| v.to_string())
}

#[derive(Default)]
struct XsPretty {
    level: usize,
    has_value: bool,
}

impl XsPretty {
    fn newline<W: Write + ?Sized>(&self, w: &mut W) -> Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.level {
            w.write_all(b"   ")?;
        }
        Ok(())
    }

    /// `[` or `{`.
    fn open<W: Write + ?Sized>(&mut self, w: &mut W, bracket: &[u8]) -> Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// `]` or `}`, on its own line unless the container is empty.
    fn close<W: Write + ?Sized>(&mut self, w: &mut W, bracket: &[u8]) -> Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(bracket)
    }

    /// Before an element or key: a comma unless first, then a new line.
    fn item<W: Write + ?Sized>(&mut self, w: &mut W, first: bool) -> Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }
}

impl serde_json::ser::Formatter for XsPretty {
    fn begin_array<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: Write + ?Sized>(&mut self, w: &mut W, first: bool) -> Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: Write + ?Sized>(&mut self, _w: &mut W) -> Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: Write + ?Sized>(&mut self, w: &mut W, first: bool) -> Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<()> {
        w.write_all(b" : ")
    }
    fn end_object_value<W: Write + ?Sized>(&mut self, _w: &mut W) -> Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_json_xs() {
        let v = serde_json::json!({"a": [1, "x"], "b": {}, "c": [], "d": {"e": null}});
        assert_eq!(
            perl_pretty(&v),
            "{\n   \"a\" : [\n      1,\n      \"x\"\n   ],\n   \"b\" : {},\n   \"c\" : [],\n   \"d\" : {\n      \"e\" : null\n   }\n}"
        );
    }
}

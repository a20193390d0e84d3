//! Writing JSON string contents from the bytes of a string of another
//! framing (what the `storable` and `cbor` decoders share).

use bytes::BytesMut;

/// JSON escapes: 0 = copy, else the escape letter (`u` = `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Writes the escape `e` (from [`ESCAPE`]) of the byte `b`.
fn write_escape(out: &mut BytesMut, b: u8, e: u8) {
    if e == b'u' {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', e]);
    }
}

/// Writes valid UTF-8 as JSON string contents; true if anything was
/// escaped.
pub(crate) fn write_utf8(out: &mut BytesMut, s: &[u8]) -> bool {
    let mut escaped = false;
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let e = ESCAPE[usize::from(b)];
        if e != 0 {
            out.extend_from_slice(&s[run..i]);
            write_escape(out, b, e);
            run = i + 1;
            escaped = true;
        }
    }
    out.extend_from_slice(&s[run..]);
    escaped
}

/// Writes bytes as JSON string contents of Latin-1 characters; true if
/// anything was escaped.
pub(crate) fn write_latin1(out: &mut BytesMut, s: &[u8]) -> bool {
    let mut escaped = false;
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        if b < 0x80 {
            let e = ESCAPE[usize::from(b)];
            if e == 0 {
                continue;
            }
            out.extend_from_slice(&s[run..i]);
            write_escape(out, b, e);
            escaped = true;
        } else {
            out.extend_from_slice(&s[run..i]);
            out.extend_from_slice(&[0xc0 | (b >> 6), 0x80 | (b & 0x3f)]);
        }
        run = i + 1;
    }
    out.extend_from_slice(&s[run..]);
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8(s: &str) -> (String, bool) {
        let mut out = BytesMut::new();
        let e = write_utf8(&mut out, s.as_bytes());
        (String::from_utf8(out.to_vec()).unwrap(), e)
    }

    fn latin1(s: &[u8]) -> (String, bool) {
        let mut out = BytesMut::new();
        let e = write_latin1(&mut out, s);
        (String::from_utf8(out.to_vec()).unwrap(), e)
    }

    #[test]
    fn escapes_as_json() {
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "\u{0}\u{1f}\u{7f}\n\t\r\u{8}\u{c}",
            "é☺\u{1f600}/",
        ] {
            let (got, escaped) = utf8(s);
            assert_eq!(
                serde_json::from_str::<String>(&format!("\"{got}\"")).unwrap(),
                s
            );
            assert_eq!(escaped, got != s, "{s:?}");
        }
        assert_eq!(utf8("\u{1}\"\n").0, r#"\u0001\"\n"#);
        let bytes: Vec<u8> = (0..=255).collect();
        let (got, escaped) = latin1(&bytes);
        let want: String = bytes.iter().map(|&b| char::from(b)).collect();
        assert_eq!(
            serde_json::from_str::<String>(&format!("\"{got}\"")).unwrap(),
            want
        );
        assert!(escaped);
        assert_eq!(
            latin1(b"caf\xe9\x00"),
            ("caf\u{e9}\\u0000".to_string(), true)
        );
        assert_eq!(latin1(b"\xff"), ("\u{ff}".to_string(), false));
        assert_eq!(latin1(b"ascii"), ("ascii".to_string(), false));
    }
}

//! The `json` framing: JSON arrays written back to back, no separator.
//!
//! [`JsonCodec`] is a resumable, validating scanner: it checks the JSON
//! grammar (RFC 8259: strings, escapes, numbers, literals, nesting) and the
//! UTF-8 of every string while it looks for the end of the frame, keeping
//! its state (container stack, token state, offsets) between reads, so each
//! byte is looked at once however a frame is split. When the closing
//! bracket arrives, the frame is split off the buffer without copying; its
//! destination (the first element) was found on the way. Nothing is
//! decoded into values here: receivers decode the frame into their own
//! types.
//!
//! The rules match what `serde_json` accepts, with two deliberate
//! differences: nesting up to `max_depth` (JSON::XS's default 512) instead
//! of serde_json's 128, and `\u` escapes that are lone surrogates are left
//! for the receiver's decoder to refuse (serde_json's validation does the
//! same).

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::wire::error::FrameError;
use crate::wire::framing::FramingDecoder;
use crate::wire::packet::{DestSpan, Packet, is_ws};

/// Default nesting limit: JSON::XS's default `max_depth`.
pub const DEFAULT_MAX_DEPTH: usize = 512;

/// Default packet size limit (the reference has none; 64 MiB keeps a
/// hostile peer from making us buffer without end).
pub const DEFAULT_MAX_PACKET: usize = 64 * 1024 * 1024;

/// Where the scanner is in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Between frames: whitespace, then `[`.
    Between,
    /// A value is due; `first` right after `[` (so `]` may close).
    Value { first: bool },
    /// After a value: `,` or the closing bracket.
    After,
    /// In an object, a key is due; `first` right after `{`.
    Key { first: bool },
    /// After a key: `:`.
    Colon,
    /// Inside a string.
    Str { key: bool },
    /// After a backslash in a string.
    Escape { key: bool },
    /// Inside `\uXXXX`, `left` hex digits to go.
    Hex { key: bool, left: u8 },
    /// Inside a number.
    Num(Num),
    /// Inside `true`, `false` or `null`: these bytes must follow.
    Lit(&'static [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

/// Decoder of the `json` framing.
///
/// ```
/// use tokio_util::codec::Decoder;
/// let mut codec = aemp::wire::JsonCodec::default();
/// let mut buf = bytes::BytesMut::from(&br#"["a",1][]["b","#[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap().dest(), Some("a"));
/// assert!(codec.decode(&mut buf).unwrap().unwrap().is_keepalive());
/// assert!(codec.decode(&mut buf).unwrap().is_none()); // `["b",` is incomplete
/// buf.extend_from_slice(br#""]"]"#);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap().dest(), Some("b"));
/// ```
#[derive(Debug, Clone)]
pub struct JsonCodec {
    max_packet: usize,
    max_depth: usize,
    st: St,
    /// Open containers, innermost last: true for an object.
    stack: Vec<bool>,
    /// Bytes of the current frame already scanned.
    pos: usize,
    /// Start of the current string's contents.
    str_start: usize,
    /// The current string has bytes ≥ 0x80 (its UTF-8 is checked at its end).
    str_high: bool,
    /// The current string has escapes.
    str_escaped: bool,
    /// The next value is the frame's first element (its destination).
    dest_due: bool,
    /// The current string is the destination.
    in_dest: bool,
    dest: DestSpan,
    /// The stream is broken: every later call returns this error.
    failed: Option<FrameError>,
}

impl Default for JsonCodec {
    fn default() -> Self {
        JsonCodec::new(DEFAULT_MAX_PACKET, DEFAULT_MAX_DEPTH)
    }
}

fn invalid(what: &str, byte: u8, at: usize) -> FrameError {
    FrameError::InvalidJson(format!(
        "{what}: unexpected byte 0x{byte:02x} at offset {at}"
    ))
}

impl JsonCodec {
    /// A decoder with the given packet size and nesting limits.
    pub fn new(max_packet: usize, max_depth: usize) -> JsonCodec {
        JsonCodec {
            max_packet,
            max_depth,
            st: St::Between,
            stack: Vec::new(),
            pos: 0,
            str_start: 0,
            str_high: false,
            str_escaped: false,
            dest_due: false,
            in_dest: false,
            dest: DestSpan::None,
            failed: None,
        }
    }

    fn open(&mut self, object: bool) -> Result<(), FrameError> {
        if self.stack.len() >= self.max_depth {
            return Err(FrameError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.stack.push(object);
        self.st = if object {
            St::Key { first: true }
        } else {
            St::Value { first: true }
        };
        Ok(())
    }

    /// Closes the innermost container; true when that ends the frame.
    fn close(&mut self) -> bool {
        self.stack.pop();
        self.st = St::After;
        self.stack.is_empty()
    }

    /// The first byte of a value, at `at`.
    fn value(&mut self, b: u8, at: usize) -> Result<(), FrameError> {
        if self.dest_due {
            self.dest_due = false;
            if b != b'"' {
                return Err(FrameError::DestNotString);
            }
            self.in_dest = true;
        }
        match b {
            b'"' => {
                self.st = St::Str { key: false };
                self.str_start = at + 1;
                self.str_high = false;
                self.str_escaped = false;
            }
            b'[' => self.open(false)?,
            b'{' => self.open(true)?,
            b'-' => self.st = St::Num(Num::Minus),
            b'0' => self.st = St::Num(Num::Zero),
            b'1'..=b'9' => self.st = St::Num(Num::Int),
            b't' => self.st = St::Lit(b"rue"),
            b'f' => self.st = St::Lit(b"alse"),
            b'n' => self.st = St::Lit(b"ull"),
            _ => return Err(invalid("expected a value", b, at)),
        }
        Ok(())
    }

    /// A string ended at `end` (the closing quote).
    fn string_end(&mut self, buf: &[u8], end: usize, key: bool) -> Result<(), FrameError> {
        if self.str_high && std::str::from_utf8(&buf[self.str_start..end]).is_err() {
            return Err(FrameError::InvalidJson(format!(
                "invalid UTF-8 in the string at offset {}",
                self.str_start
            )));
        }
        if self.in_dest {
            self.in_dest = false;
            self.dest = DestSpan::Quoted {
                start: self.str_start,
                end,
                escaped: self.str_escaped,
            };
        }
        self.st = if key { St::Colon } else { St::After };
        Ok(())
    }

    /// Scans `buf` from `self.pos`; returns the frame length once the
    /// frame is complete.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let mut i = self.pos;
        while i < buf.len() {
            let b = buf[i];
            match self.st {
                St::Str { key } => {
                    // the bulk of most frames: find the end of the plain
                    // run, then check it as a whole (both checks vectorize)
                    let end = memchr::memchr2(b'"', b'\\', &buf[i..]).map_or(buf.len(), |o| i + o);
                    let run = &buf[i..end];
                    if let Some(k) = run.iter().position(|&c| c < 0x20) {
                        return Err(invalid("control character in a string", run[k], i + k));
                    }
                    self.str_high |= !run.is_ascii();
                    i = end;
                    if i == buf.len() {
                        break;
                    }
                    match buf[i] {
                        b'"' => self.string_end(buf, i, key)?,
                        b'\\' => {
                            self.str_escaped = true;
                            self.st = St::Escape { key };
                        }
                        c => return Err(invalid("control character in a string", c, i)),
                    }
                }
                St::Escape { key } => {
                    self.st = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => St::Str { key },
                        b'u' => St::Hex { key, left: 4 },
                        _ => return Err(invalid("bad escape", b, i)),
                    }
                }
                St::Hex { key, left } => {
                    if !b.is_ascii_hexdigit() {
                        return Err(invalid("bad \\u escape", b, i));
                    }
                    self.st = if left == 1 {
                        St::Str { key }
                    } else {
                        St::Hex {
                            key,
                            left: left - 1,
                        }
                    };
                }
                St::Num(n) => {
                    let next = match (n, b) {
                        (Num::Minus, b'0') => Some(Num::Zero),
                        (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                        (Num::Int, b'0'..=b'9') => Some(Num::Int),
                        (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                        (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
                        (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                        (Num::Exp | Num::ExpSign | Num::ExpInt, b'0'..=b'9') => Some(Num::ExpInt),
                        (Num::Zero | Num::Int | Num::Frac | Num::ExpInt, _) => None,
                        _ => return Err(invalid("bad number", b, i)),
                    };
                    match next {
                        Some(n) => self.st = St::Num(n),
                        None => {
                            // the number ended: look at this byte again
                            self.st = St::After;
                            continue;
                        }
                    }
                }
                St::Lit(rest) => {
                    if rest.first() != Some(&b) {
                        return Err(invalid("bad literal", b, i));
                    }
                    self.st = if rest.len() == 1 {
                        St::After
                    } else {
                        St::Lit(&rest[1..])
                    };
                }
                _ if is_ws(b) => {}
                St::Value { first } => {
                    if b == b']' && first {
                        // `[]`, the keepalive, has no destination
                        self.dest_due = false;
                        if self.close() {
                            return Ok(Some(i + 1));
                        }
                    } else {
                        self.value(b, i)?;
                    }
                }
                St::After => match (b, self.stack.last()) {
                    (b',', Some(true)) => self.st = St::Key { first: false },
                    (b',', Some(false)) => self.st = St::Value { first: false },
                    (b']', Some(false)) | (b'}', Some(true)) => {
                        if self.close() {
                            return Ok(Some(i + 1));
                        }
                    }
                    _ => return Err(invalid("expected ',' or a closing bracket", b, i)),
                },
                St::Key { first } => match b {
                    b'"' => {
                        self.st = St::Str { key: true };
                        self.str_start = i + 1;
                        self.str_high = false;
                        self.str_escaped = false;
                    }
                    b'}' if first => {
                        if self.close() {
                            return Ok(Some(i + 1));
                        }
                    }
                    _ => return Err(invalid("expected an object key", b, i)),
                },
                St::Colon => {
                    if b != b':' {
                        return Err(invalid("expected ':'", b, i));
                    }
                    self.st = St::Value { first: false };
                }
                St::Between => {
                    return Err(invalid("scanner outside a frame", b, i));
                }
            }
            i += 1;
        }
        self.pos = i;
        Ok(None)
    }

    fn reset(&mut self) {
        self.st = St::Between;
        self.stack.clear();
        self.pos = 0;
        self.dest_due = false;
        self.in_dest = false;
    }
}

impl FramingDecoder for JsonCodec {
    #[inline]
    fn failed(&mut self) -> &mut Option<FrameError> {
        &mut self.failed
    }

    fn decode_next(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        if self.st == St::Between {
            // between frames: skip whitespace, then a frame must open with `[`
            let ws = buf.iter().take_while(|b| is_ws(**b)).count();
            buf.advance(ws);
            match buf.first() {
                None => return Ok(None),
                Some(b'[') => {
                    self.stack.clear();
                    self.stack.push(false);
                    self.st = St::Value { first: true };
                    self.pos = 1;
                    self.dest_due = true;
                    self.dest = DestSpan::None;
                }
                Some(_) => return Err(FrameError::NotAnArray),
            }
        }
        match self.scan(buf)? {
            Some(len) if len > self.max_packet => Err(FrameError::TooLarge {
                limit: self.max_packet,
            }),
            Some(len) => {
                let dest = self.dest;
                self.reset();
                Packet::from_scanned(buf.split_to(len).freeze(), dest).map(Some)
            }
            None if self.pos > self.max_packet => Err(FrameError::TooLarge {
                limit: self.max_packet,
            }),
            None => Ok(None),
        }
    }

    fn mid_frame(&self, _: &BytesMut) -> bool {
        self.st != St::Between
    }
}

impl Packet {
    /// Validates a complete JSON frame and finds its destination.
    ///
    /// The frame must be valid UTF-8 JSON, an array, and (unless empty)
    /// have a string as its first element.
    pub fn parse(frame: Bytes) -> Result<Packet, FrameError> {
        parse_frame(frame)
    }
}

/// Validates one complete frame (see [`Packet::parse`]): one JSON array,
/// whitespace around it allowed, nothing else.
pub(crate) fn parse_frame(frame: Bytes) -> Result<Packet, FrameError> {
    let start = frame.iter().take_while(|b| is_ws(**b)).count();
    let mut codec = JsonCodec::new(usize::MAX, DEFAULT_MAX_DEPTH);
    let mut buf = BytesMut::from(&frame[start..]);
    let scanned = codec.decode(&mut buf)?.ok_or(FrameError::Truncated)?;
    if let Some(&b) = buf.iter().find(|b| !is_ws(**b)) {
        return Err(invalid("data after the frame", b, frame.len() - buf.len()));
    }
    Ok(scanned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::framing::test_support::same_packets_at_every_split;

    const STREAM: &[u8] = b"[\"a\",\"x\\\"]\",{\"k\":\"}\"}][][\"\",1]  [\"b\\\\\",[[]],\"\\\\\",-0.5e+3,true,null,{}, \"\xc3\xbc\\u00fc\"]";

    #[test]
    fn every_split_gives_the_same_packets() {
        let (whole, _) = same_packets_at_every_split::<JsonCodec>(STREAM);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[3].dest(), Some("b\\"));
    }

    #[test]
    fn limits() {
        let mut deep = BytesMut::from(&[&br#"["d","#[..], &vec![b'['; 100_000]].concat()[..]);
        assert_eq!(
            JsonCodec::default().decode(&mut deep),
            Err(FrameError::TooDeep { limit: 512 })
        );
        // without a destination string, that is the first error
        let mut deep = BytesMut::from(&vec![b'['; 100_000][..]);
        assert_eq!(
            JsonCodec::default().decode(&mut deep),
            Err(FrameError::DestNotString)
        );
        let mut ok = BytesMut::from(&[vec![b'['; 512], vec![b']'; 512]].concat()[..]);
        assert!(JsonCodec::default().decode(&mut ok).is_err()); // `[[` : dest not a string
        let mut codec = JsonCodec::new(16, 512);
        let mut buf = BytesMut::from(&br#"["a","0123456789abcdef"]"#[..]);
        assert_eq!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { limit: 16 })
        );
        let mut codec = JsonCodec::new(16, 512);
        let mut buf = BytesMut::from(&br#"["a","01234567"#[..]);
        assert_eq!(codec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"89ab");
        assert_eq!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { limit: 16 })
        );
    }

    #[test]
    fn deep_but_legal() {
        let frame = [&br#"["d","#[..], &vec![b'['; 500], &vec![b']'; 501]].concat();
        let p = JsonCodec::default()
            .decode(&mut BytesMut::from(&frame[..]))
            .unwrap()
            .unwrap();
        assert_eq!(p.dest(), Some("d"));
    }

    #[test]
    fn garbage() {
        let mut codec = JsonCodec::default();
        let mut buf = BytesMut::from(&b"[1,2"[..]);
        assert_eq!(codec.decode(&mut buf), Err(FrameError::DestNotString));
        for bad in [&b"{}"[..], b"\"s\"", b"5", b"x"] {
            let mut buf = BytesMut::from(bad);
            assert_eq!(
                JsonCodec::default().decode(&mut buf),
                Err(FrameError::NotAnArray)
            );
        }
        for bad in [
            &br#"["a",01]"#[..],
            br#"["a",1.]"#,
            br#"["a",-]"#,
            br#"["a",1e]"#,
            br#"["a",tru]"#,
            br#"["a",nul,1]"#,
            br#"["a",1,]"#,
            br#"["a",,1]"#,
            br#"["a" 1]"#,
            br#"["a",{"k"}]"#,
            br#"["a",{"k":}]"#,
            br#"["a",{1:2}]"#,
            br#"["a",{"k":1,}]"#,
            br#"["a","\x"]"#,
            br#"["a","\u12G4"]"#,
            b"[\"a\",\"\x01\"]",
            b"[\"a\",\"\xff\"]",
            b"[\"a\",\"\xc3\"]",
            b"[\"a\",\xc3\xbc]",
            br#"["a",[}]"#,
            br#"["a"}"#,
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(
                matches!(
                    JsonCodec::default().decode(&mut buf),
                    Err(FrameError::InvalidJson(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut buf = BytesMut::from(&b"[\"a\""[..]);
        assert_eq!(
            JsonCodec::default().decode_eof(&mut buf),
            Err(FrameError::Truncated)
        );
        let mut buf = BytesMut::from(&b" \n"[..]);
        assert_eq!(JsonCodec::default().decode_eof(&mut buf), Ok(None));
    }

    #[test]
    fn errors_are_final() {
        // found by the fuzzer: resuming after an error used stale offsets
        let mut codec = JsonCodec::default();
        let mut buf = BytesMut::from(&b"[\"\xdb\"\xdb222"[..]);
        let first = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(first, FrameError::InvalidJson(_)));
        assert_eq!(codec.decode(&mut buf), Err(first.clone()));
        assert_eq!(codec.decode_eof(&mut buf), Err(first));
    }

    #[test]
    fn numbers_at_read_boundaries() {
        for frame in [&br#"["n",12]"#[..], br#"["n",-0.25e-7]"#, br#"["n",0]"#] {
            for i in 0..frame.len() {
                let mut codec = JsonCodec::default();
                let mut buf = BytesMut::from(&frame[..i]);
                assert_eq!(codec.decode(&mut buf), Ok(None));
                buf.extend_from_slice(&frame[i..]);
                assert!(codec.decode(&mut buf).unwrap().is_some());
            }
        }
    }
}

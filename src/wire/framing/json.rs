//! The `json` framing: JSON arrays written back to back, no separator.
//!
//! [`JsonCodec`] is a resumable scanner: it remembers how far it has looked
//! into the current frame (offset, bracket depth, string and escape state),
//! so bytes are looked at once however a frame is split across reads. When
//! the closing bracket arrives, the frame is split off the buffer without
//! copying and validated by [`Packet::parse`].

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::wire::error::FrameError;
use crate::wire::packet::{Packet, is_ws};

/// Default nesting limit: JSON::XS's default `max_depth`.
pub const DEFAULT_MAX_DEPTH: usize = 512;

/// Default packet size limit (the reference has none; 64 MiB keeps a
/// hostile peer from making us buffer without end).
pub const DEFAULT_MAX_PACKET: usize = 64 * 1024 * 1024;

/// Decoder (and trivial encoder) of the `json` framing.
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
    /// Bytes of the current frame already scanned (may exceed the buffer
    /// by one when a backslash was the last byte seen).
    pos: usize,
    depth: usize,
    in_string: bool,
}

impl Default for JsonCodec {
    fn default() -> Self {
        JsonCodec::new(DEFAULT_MAX_PACKET, DEFAULT_MAX_DEPTH)
    }
}

impl JsonCodec {
    /// A decoder with the given packet size and nesting limits.
    pub fn new(max_packet: usize, max_depth: usize) -> JsonCodec {
        JsonCodec {
            max_packet,
            max_depth,
            pos: 0,
            depth: 0,
            in_string: false,
        }
    }

    /// Scans `buf` from `self.pos`; returns the frame length once the
    /// frame is complete.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let mut i = self.pos;
        while i < buf.len() {
            if self.in_string {
                match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                    None => i = buf.len(),
                    Some(off) => {
                        i += off;
                        if buf[i] == b'\\' {
                            i += 2; // may point one past the end: resumes there
                        } else {
                            self.in_string = false;
                            i += 1;
                        }
                    }
                }
                continue;
            }
            match buf[i] {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    if self.depth > self.max_depth {
                        return Err(FrameError::TooDeep {
                            limit: self.max_depth,
                        });
                    }
                }
                b']' | b'}' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.pos = 0;
                        return Ok(Some(i + 1));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.pos = i;
        Ok(None)
    }
}

impl Decoder for JsonCodec {
    type Item = Packet;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        if self.depth == 0 {
            // between frames: skip whitespace, then a frame must open with `[`
            let ws = buf.iter().take_while(|b| is_ws(**b)).count();
            buf.advance(ws);
            match buf.first() {
                None => return Ok(None),
                Some(b'[') => {
                    self.depth = 1;
                    self.pos = 1;
                    self.in_string = false;
                }
                Some(_) => return Err(FrameError::NotAnArray),
            }
        }
        match self.scan(buf)? {
            Some(len) if len > self.max_packet => Err(FrameError::TooLarge {
                limit: self.max_packet,
            }),
            Some(len) => Packet::parse(buf.split_to(len).freeze()).map(Some),
            None if self.pos > self.max_packet => Err(FrameError::TooLarge {
                limit: self.max_packet,
            }),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        match self.decode(buf)? {
            Some(p) => Ok(Some(p)),
            None if self.depth > 0 => Err(FrameError::Truncated),
            None => Ok(None),
        }
    }
}

/// Appends a JSON frame (as made by [`Packet::encode`]) as is.
impl Encoder<Bytes> for JsonCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut JsonCodec, buf: &mut BytesMut) -> Result<Vec<Packet>, FrameError> {
        let mut out = Vec::new();
        while let Some(p) = codec.decode(buf)? {
            out.push(p);
        }
        Ok(out)
    }

    const STREAM: &[u8] = br#"["a","x\"]",{"k":"}"}][]["",1]  ["b\\",[[]],"\\"]"#;

    #[test]
    fn every_split_gives_the_same_packets() {
        let whole = decode_all(&mut JsonCodec::default(), &mut BytesMut::from(STREAM)).unwrap();
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[3].dest(), Some("b\\"));
        for i in 0..=STREAM.len() {
            let mut codec = JsonCodec::default();
            let mut buf = BytesMut::from(&STREAM[..i]);
            let mut got = decode_all(&mut codec, &mut buf).unwrap();
            buf.extend_from_slice(&STREAM[i..]);
            got.extend(decode_all(&mut codec, &mut buf).unwrap());
            assert_eq!(got, whole, "split at {i}");
        }
        let mut codec = JsonCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in STREAM {
            buf.extend_from_slice(&[*b]);
            got.extend(decode_all(&mut codec, &mut buf).unwrap());
        }
        assert_eq!(got, whole);
        assert!(buf.is_empty());
    }

    #[test]
    fn limits() {
        let mut deep = BytesMut::from(&vec![b'['; 100_000][..]);
        assert_eq!(
            JsonCodec::default().decode(&mut deep),
            Err(FrameError::TooDeep { limit: 512 })
        );
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
    fn garbage() {
        let mut codec = JsonCodec::default();
        let mut buf = BytesMut::from(&b"[1,2"[..]);
        assert_eq!(codec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"}}}");
        assert_eq!(codec.decode(&mut buf), Err(FrameError::DestNotString));
        for bad in [&b"{}"[..], b"\"s\"", b"5", b"x"] {
            let mut buf = BytesMut::from(bad);
            assert_eq!(
                JsonCodec::default().decode(&mut buf),
                Err(FrameError::NotAnArray)
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
}

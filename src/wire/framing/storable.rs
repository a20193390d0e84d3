//! The `storable` framing: `pack("w/a*", nfreeze(\@msg))` per packet.
//!
//! Each frame is a BER compressed length (base 128, high bit on all but
//! the last byte, always minimal) followed by Perl Storable's
//! network-order image of the packet array (`05 0b` from Storable 3.26;
//! any minor version of major 2 is accepted).
//!
//! What is decoded, refused and written is described on
//! [`StorableCodec`].

use std::io::Write as _;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::wire::error::{EncodeError, FrameError, StorableError};
use crate::wire::framing::json::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_PACKET};
use crate::wire::framing::serializer::{Error, KeySer, forward_to_seq, refuse};
use crate::wire::framing::{FramingDecoder, json_string};
use crate::wire::packet::{DestSpan, Packet, append_or_restore};

// Storable opcodes (Storable.xs `SX_*`).
const SX_OBJECT: u8 = 0x00;
const SX_LSCALAR: u8 = 0x01;
const SX_ARRAY: u8 = 0x02;
const SX_HASH: u8 = 0x03;
const SX_REF: u8 = 0x04;
const SX_UNDEF: u8 = 0x05;
const SX_BYTE: u8 = 0x08;
const SX_NETINT: u8 = 0x09;
const SX_SCALAR: u8 = 0x0a;
const SX_SV_UNDEF: u8 = 0x0e;
const SX_SV_YES: u8 = 0x0f;
const SX_SV_NO: u8 = 0x10;
const SX_BLESS: u8 = 0x11;
const SX_IX_BLESS: u8 = 0x12;
const SX_OVERLOAD: u8 = 0x14;
const SX_UTF8STR: u8 = 0x17;
const SX_LUTF8STR: u8 = 0x18;
const SX_FLAG_HASH: u8 = 0x19;
const SX_WEAKREF: u8 = 0x1b;
const SX_WEAKOVERLOAD: u8 = 0x1c;
const SX_SVUNDEF_ELEM: u8 = 0x1f;
const SX_BOOLEAN_TRUE: u8 = 0x22;
const SX_BOOLEAN_FALSE: u8 = 0x23;

/// First header byte: major version 2, network order (`(2 << 1) | 1`).
const NETORDER_MAJOR2: u8 = 0x05;
/// The minor version Storable 3.26 writes (and aemp writes).
const MINOR: u8 = 0x0b;

/// Key flags of `19` hashes aemp accepts: UTF-8, was-UTF-8, locked.
const KEY_UTF8: u8 = 0x01;
const KEY_FLAGS_OK: u8 = 0x07;
/// Hash flags aemp accepts: restricted.
const HASH_FLAGS_OK: u8 = 0x01;

const BOOLEAN_CLASS: &[u8] = b"JSON::PP::Boolean";

/// What an unsupported opcode is.
fn unsupported(op: u8, at: usize) -> StorableError {
    let what = match op {
        0x06 => "native integer",
        0x07 => "native double",
        0x0b => "tied array",
        0x0c => "tied hash",
        0x0d => "tied scalar",
        0x13 => "hook",
        0x15 => "tied hash element",
        0x16 => "tied array element",
        0x1a => "code reference",
        0x1d | 0x1e => "vstring",
        0x20 => "regexp",
        0x21 => "large object",
        _ => "unknown",
    };
    StorableError::Unsupported { op, what, at }
}

// ---------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------

/// Decoder of the `storable` framing.
///
/// # Decoding
///
/// The decoder transcodes the image straight into a JSON frame (no
/// value tree in between), so that the rest of aemp sees the same
/// [`Packet`]s as from the `json` framing:
///
/// | Storable | JSON |
/// |---|---|
/// | `02` array, `03` hash, `19` hash with flags | array, object (Latin-1 keys unless the key flag says UTF-8) |
/// | `04` ref, `14` overloaded ref, `1b`/`1c` weak refs | the referent (JSON has no references; a weak reference is one too) |
/// | ref to a scalar `0` or `1` (`\0`, `\1`) | `false` / `true`, as JSON::XS encodes `\0` / `\1` |
/// | ref to any other scalar | the scalar |
/// | `05` undef, `0e` array hole, `1f` undef element | `null` |
/// | `08` byte int, `09` 32-bit int | number |
/// | `0a`/`01` byte string | string of Latin-1 characters |
/// | `17`/`18` UTF-8 string | string (must be valid UTF-8) |
/// | `0f`/`22` and `10`/`23` (yes/no, Storable ≥ 3.32 booleans) | `true` / `false` |
/// | `11`/`12` bless into `JSON::PP::Boolean` of 0/1 | `false` / `true` |
/// | `00 <n>` back-reference | a copy of object n's JSON |
///
/// Perl sends large integers and all non-integral numbers as strings:
/// they arrive as JSON strings (`"1099511627776"`, `"3.5"`); read such
/// fields with [`Lenient`](crate::wire::Lenient).
///
/// Everything else is refused with a
/// [`StorableError`](crate::wire::StorableError): objects of any
/// other class, Storable hooks, tied containers, code refs, vstrings,
/// regexps, large objects, native-order numbers (`06`/`07`, which a
/// network-order image never contains), unknown opcodes, trailing bytes,
/// a root that is not an array or whose first element is not a string,
/// nesting deeper than `max_depth` containers, cycles. The length prefix
/// is checked before any byte of the body is awaited: a padded one, or one
/// over `max_packet`, ends the stream at once. The JSON output is bounded
/// by `max_packet` too (the check runs after each item, so the output may
/// pass the limit by at most one escaped string before the frame is
/// refused), and what back-references copy by [`MAX_BACKREF_FACTOR`]
/// times the image's size plus [`BACKREF_ALLOWANCE`]: a chain of
/// back-references to back-references, a few hundred bytes that stand for
/// megabytes, is refused with
/// [`StorableError::BackRefsTooLarge`](crate::wire::StorableError::BackRefsTooLarge)
/// long before `max_packet`.
///
/// Object numbers follow Storable's `retrieve`: the root array is 0, and
/// every array, hash, ref, undef and scalar takes the next number in
/// stream order (a ref before its referent); `bless`/`ix_bless` take none
/// (the blessed object does), hash keys take none.
///
/// Hashes store each value before its key while JSON wants the key
/// first: when the transcoder meets a hash, it first walks that hash's
/// subtree once to note where every key of it (and of the hashes inside)
/// is, then writes keys before values in one pass.
///
/// # Encoding
///
/// [`Framing::encode_packet`](crate::wire::Framing::encode_packet)
/// serializes a message straight to Storable with a serde serializer,
/// [`Framing::encode_frame`](crate::wire::Framing::encode_frame)
/// transcodes a JSON frame (keeping its key order), byte-exact with what
/// Perl's `nfreeze` writes for the same data: root array `02`, nested arrays `04 02`, objects `04 03` (or `04 19`
/// with hash flags 0 when a key needs UTF-8; its keys then carry flag 1
/// for UTF-8, 0 for Latin-1), strings whose characters are all ≤ U+00FF
/// as `0a`/`01` Latin-1 bytes, others `17`/`18` UTF-8; integers −128..127
/// `08`, other 32-bit integers `09`, larger ones as their decimal text;
/// integral floats that fit an i64 as integers, other floats as text
/// formatted like Perl's `%.15g` (`0.1`, `1e+21`, `Inf`, `NaN`); `null`
/// `05`; booleans as `JSON::PP::Boolean` objects: the first one in a frame
/// `14 11 11 "JSON::PP::Boolean" 08 8x`, the first of the other value
/// `14 12 00 08 8x`, and repeats as back-references `14 00 <n>` (as
/// Perl's shared `JSON::PP::true`/`false` come out). Map keys of a
/// serialized message are the strings `serde_json` makes of them, as in
/// the `json` framing (integers, booleans and finite floats as their
/// text; other non-strings are refused).
///
/// # Example
///
/// ```
/// use tokio_util::codec::Decoder;
/// let mut codec = aemp::wire::StorableCodec::default();
/// // ["a", 1] as Perl's pack("w/a*", nfreeze(["a", 1])) writes it
/// let frame = b"\x0c\x05\x0b\x02\x00\x00\x00\x02\x0a\x01a\x08\x81";
/// let mut buf = bytes::BytesMut::from(&frame[..5]);
/// assert!(codec.decode(&mut buf).unwrap().is_none());
/// buf.extend_from_slice(&frame[5..]);
/// let p = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!((p.dest(), &p.frame()[..]), (Some("a"), &br#"["a",1]"#[..]));
/// ```
#[derive(Debug, Clone)]
pub struct StorableCodec {
    max_packet: usize,
    max_depth: usize,
    /// The JSON output arena: each packet is split off it.
    out: BytesMut,
    scratch: Scratch,
    /// The stream is broken: every later call returns this error.
    failed: Option<FrameError>,
}

/// Buffers kept between frames (cleared, never shrunk below their use).
#[derive(Debug, Clone, Default)]
struct Scratch {
    seen: Vec<Seen>,
    stack: Vec<Level>,
    scan: Vec<ScanLevel>,
    keys: Vec<KeySpan>,
    classes: Vec<bool>,
}

impl Default for StorableCodec {
    fn default() -> Self {
        StorableCodec::new(DEFAULT_MAX_PACKET, DEFAULT_MAX_DEPTH)
    }
}

/// Output arena block size.
const ARENA: usize = 64 * 1024;

impl StorableCodec {
    /// A decoder refusing frames whose Storable image or JSON form is
    /// larger than `max_packet` bytes, or that nest more than `max_depth`
    /// arrays and hashes (the root included).
    pub fn new(max_packet: usize, max_depth: usize) -> StorableCodec {
        StorableCodec {
            max_packet,
            max_depth,
            out: BytesMut::new(),
            scratch: Scratch::default(),
            failed: None,
        }
    }
}

impl FramingDecoder for StorableCodec {
    #[inline]
    fn failed(&mut self) -> &mut Option<FrameError> {
        &mut self.failed
    }

    fn decode_next(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        let Some((hdr, len)) = read_ber(buf, self.max_packet)? else {
            return Ok(None);
        };
        let Some(total) = hdr.checked_add(len) else {
            return Err(FrameError::TooLarge {
                limit: self.max_packet,
            });
        };
        if buf.len() < total {
            return Ok(None);
        }
        // the JSON form of one packet stays below 4 GiB (spans are u32)
        let limit = self.max_packet.min(u32::MAX as usize - 1);
        let estimate = (len + len / 2 + 16).min(limit);
        if self.out.capacity() - self.out.len() < estimate {
            self.out.reserve(estimate.max(ARENA));
        }
        let image = buf.get(hdr..total).unwrap_or_default();
        let mut conv = Conv {
            data: image,
            pos: 0,
            out: &mut self.out,
            s: &mut self.scratch,
            limit,
            backref_budget: backref_allowance(len),
            max_depth: self.max_depth,
            depth: 0,
            key_cursor: 0,
            dest: DestSpan::None,
            dest_due: false,
        };
        let result = conv.run();
        let dest = conv.dest;
        self.scratch.clear();
        match result {
            Ok(()) => {
                let frame = self.out.split().freeze();
                if self.out.capacity() > ARENA {
                    // what a large frame's reservation left over: it
                    // would keep that frame's whole allocation alive
                    self.out = BytesMut::new();
                }
                let _ = buf.split_to(total);
                Packet::from_scanned(frame, dest).map(Some)
            }
            Err(e) => {
                self.out.clear();
                Err(e)
            }
        }
    }

    fn mid_frame(&self, buf: &BytesMut) -> bool {
        !buf.is_empty()
    }
}

/// Reads the BER length at the start of `buf`: `(header bytes, length)`,
/// `None` while incomplete. A padded or oversized length is refused as
/// soon as its first bytes show it.
fn read_ber(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, FrameError> {
    let mut value: usize = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == 0 && b == 0x80 {
            return Err(StorableError::PaddedLength.into());
        }
        value = value
            .checked_mul(128)
            .map(|v| v | usize::from(b & 0x7f))
            .filter(|v| *v <= max)
            .ok_or(FrameError::TooLarge { limit: max })?;
        if b & 0x80 == 0 {
            return Ok(Some((i + 1, value)));
        }
    }
    Ok(None)
}

/// How many times its own size a Storable image's back-references may
/// add to its JSON form, beyond [`BACKREF_ALLOWANCE`]. Shared data in
/// real messages (Perl's shared booleans, a structure referenced from a
/// few places) stays far below it; a few hundred bytes of back-references
/// to back-references can stand for megabytes, and such an image is
/// refused with [`StorableError::BackRefsTooLarge`]. A deviation: the
/// reference's `thaw` builds whatever the image describes.
pub const MAX_BACKREF_FACTOR: usize = 16;

/// The bytes of JSON back-references may add to any Storable image,
/// besides [`MAX_BACKREF_FACTOR`] times its size.
pub const BACKREF_ALLOWANCE: usize = 64 * 1024;

/// What the back-references of an image of `len` bytes may add.
fn backref_allowance(len: usize) -> usize {
    len.saturating_mul(MAX_BACKREF_FACTOR)
        .saturating_add(BACKREF_ALLOWANCE)
}

/// An object number's JSON, for back-references.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Start of its JSON in the output, or [`CONST`] for a scalar that was
    /// not written (a `0`/`1` under a ref, written as a boolean).
    start: u32,
    /// End of its JSON, [`OPEN`] while unfinished; for [`CONST`], the
    /// index in [`CONSTS`].
    end: u32,
}

const OPEN: u32 = u32::MAX;
const CONST: u32 = u32::MAX;
const CONSTS: [&[u8]; 4] = [b"0", b"1", b"\"0\"", b"\"1\""];

/// An open container or ref chain of the transcoder.
#[derive(Debug, Clone, Copy)]
enum Level {
    Array {
        left: u32,
        tag: u32,
    },
    Hash {
        left: u32,
        tag: u32,
        /// Index in `keys` of the current entry's key.
        key: usize,
    },
    /// Refs with object numbers `first..=last` to the container being
    /// transcoded: they end where it ends.
    Refs {
        first: u32,
        last: u32,
    },
}

/// An open container of the key pre-scan.
#[derive(Debug, Clone, Copy)]
enum ScanLevel {
    Array {
        left: u32,
    },
    Hash {
        left: u32,
        flagged: bool,
        key: usize,
    },
}

/// Where a hash key is in the image.
#[derive(Debug, Clone, Copy, Default)]
struct KeySpan {
    /// Where the key's fields (flags, length) start, right after the value.
    fields: usize,
    /// The key bytes.
    start: usize,
    end: usize,
    utf8: bool,
}

impl Scratch {
    /// Empties the tables for the next frame; what a large frame grew
    /// them to goes back (a connection keeps only small tables between
    /// frames, not the peak of its largest one).
    fn clear(&mut self) {
        reuse(&mut self.seen);
        reuse(&mut self.stack);
        reuse(&mut self.scan);
        reuse(&mut self.keys);
        reuse(&mut self.classes);
    }
}

/// The most entries a scratch table keeps room for between frames.
const SCRATCH_KEEP: usize = 4096;

/// Empties `v`, keeping room for at most [`SCRATCH_KEEP`] entries.
fn reuse<T>(v: &mut Vec<T>) {
    v.clear();
    v.shrink_to(SCRATCH_KEEP);
}

/// A scalar item.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Null,
    Int(i32),
    Bool(bool),
    /// Latin-1 bytes.
    Bytes(&'a [u8]),
    /// Validated UTF-8.
    Utf8(&'a [u8]),
}

impl Scalar<'_> {
    /// Whether the scalar's string form is `"0"` or `"1"`.
    fn bit(self) -> Option<bool> {
        match self {
            Scalar::Int(0) => Some(false),
            Scalar::Int(1) => Some(true),
            Scalar::Bool(b) => Some(b),
            Scalar::Bytes(b"0") | Scalar::Utf8(b"0") => Some(false),
            Scalar::Bytes(b"1") | Scalar::Utf8(b"1") => Some(true),
            _ => None,
        }
    }

    /// The [`CONSTS`] entry of a scalar with a [`bit`](Self::bit) that is
    /// not a boolean.
    fn const_index(self) -> Option<u32> {
        match self {
            Scalar::Int(v @ (0 | 1)) => Some(v as u32),
            Scalar::Bytes(b) | Scalar::Utf8(b) if b == b"0" || b == b"1" => {
                Some(2 + u32::from(b[0] - b'0'))
            }
            _ => None,
        }
    }
}

/// One frame's transcoder.
struct Conv<'a> {
    data: &'a [u8],
    pos: usize,
    out: &'a mut BytesMut,
    s: &'a mut Scratch,
    /// Output size limit.
    limit: usize,
    /// What back-references may still copy.
    backref_budget: usize,
    max_depth: usize,
    /// Open arrays and hashes.
    depth: usize,
    /// Next unused entry of `s.keys`.
    key_cursor: usize,
    dest: DestSpan,
    /// The next item is the root's first element.
    dest_due: bool,
}

fn is_ref(op: u8) -> bool {
    matches!(op, SX_REF | SX_OVERLOAD | SX_WEAKREF | SX_WEAKOVERLOAD)
}

fn is_string(op: u8) -> bool {
    matches!(op, SX_SCALAR | SX_LSCALAR | SX_UTF8STR | SX_LUTF8STR)
}

impl<'a> Conv<'a> {
    fn truncated(&self, at: usize) -> FrameError {
        StorableError::Truncated { at }.into()
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        let b = *self.data.get(self.pos).ok_or(self.truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or(self.truncated(self.pos))?;
        self.pos += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `len` bytes at the current position (the item started at `at`).
    fn take(&mut self, len: usize, at: usize) -> Result<&'a [u8], FrameError> {
        let data = self.data;
        let end = self.pos.checked_add(len).ok_or(self.truncated(at))?;
        let b = data.get(self.pos..end).ok_or(self.truncated(at))?;
        self.pos = end;
        Ok(b)
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Checks that `count` entries of at least `min` bytes each fit.
    fn check_count(&self, count: u32, min: usize, at: usize) -> Result<(), FrameError> {
        if (count as usize).saturating_mul(min) > self.remaining() {
            return Err(StorableError::CountTooLarge { count, at }.into());
        }
        Ok(())
    }

    fn out_pos(&self) -> u32 {
        // the output is kept below `limit` < u32::MAX
        self.out.len() as u32
    }

    /// A new, unfinished object number starting here.
    fn open_tag(&mut self) -> u32 {
        let tag = self.s.seen.len() as u32;
        self.s.seen.push(Seen {
            start: self.out_pos(),
            end: OPEN,
        });
        tag
    }

    fn close_tag(&mut self, tag: u32) {
        let end = self.out_pos();
        if let Some(s) = self.s.seen.get_mut(tag as usize) {
            s.end = end;
        }
    }

    fn check_limit(&self) -> Result<(), FrameError> {
        if self.out.len() > self.limit {
            return Err(FrameError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), FrameError> {
        match self.data {
            [NETORDER_MAJOR2, _, ..] => self.pos = 2,
            [b, ..] => return Err(StorableError::NotNetorder(*b).into()),
            [] => return Err(self.truncated(0)),
        }
        match self.data.get(2) {
            Some(&SX_ARRAY) => {}
            Some(_) => return Err(FrameError::NotAnArray),
            None => return Err(self.truncated(2)),
        }
        loop {
            if self.item()? && self.after_value()? {
                break;
            }
        }
        if self.pos != self.data.len() {
            return Err(StorableError::TrailingBytes {
                at: self.pos,
                len: self.data.len() - self.pos,
            }
            .into());
        }
        Ok(())
    }

    /// Transcodes one item. Returns true when the item is complete, false
    /// when it opened a container (or a ref chain to one) whose contents
    /// follow.
    fn item(&mut self) -> Result<bool, FrameError> {
        let at = self.pos;
        let op = self.u8()?;
        if self.dest_due {
            self.dest_due = false;
            if !is_string(op) {
                return Err(FrameError::DestNotString);
            }
            let start = self.out.len() + 1;
            let scalar = self.scalar(op, at)?;
            let tag = self.open_tag();
            let escaped = self.write_scalar(scalar);
            self.close_tag(tag);
            self.dest = DestSpan::Quoted {
                start,
                end: self.out.len() - 1,
                escaped,
            };
            return Ok(true);
        }
        match op {
            SX_ARRAY | SX_HASH | SX_FLAG_HASH => self.open(op, at),
            SX_OBJECT => {
                let n = self.u32()?;
                self.back_ref(n, false)?;
                Ok(true)
            }
            op if is_ref(op) => self.refs(),
            SX_BLESS | SX_IX_BLESS => {
                let b = self.blessed(op, at)?;
                let tag = self.open_tag();
                self.out
                    .extend_from_slice(if b { b"true" } else { b"false" });
                self.close_tag(tag);
                Ok(true)
            }
            op => {
                let scalar = self.scalar(op, at)?;
                let tag = self.open_tag();
                self.write_scalar(scalar);
                self.close_tag(tag);
                Ok(true)
            }
        }
    }

    /// Opens an array or hash (`op` read at `at`).
    fn open(&mut self, op: u8, at: usize) -> Result<bool, FrameError> {
        if op == SX_FLAG_HASH {
            let flags = self.u8()?;
            if flags & !HASH_FLAGS_OK != 0 {
                return Err(StorableError::Flags { flags, at }.into());
            }
        }
        let n = self.u32()?;
        let min = match op {
            SX_ARRAY => 1,
            SX_HASH => 5,
            _ => 6,
        };
        self.check_count(n, min, at)?;
        if self.depth >= self.max_depth {
            return Err(FrameError::TooDeep {
                limit: self.max_depth,
            });
        }
        let tag = self.open_tag();
        if op == SX_ARRAY {
            if n == 0 {
                self.out.extend_from_slice(b"[]");
                self.close_tag(tag);
                return Ok(true);
            }
            self.out.put_u8(b'[');
            self.s.stack.push(Level::Array { left: n, tag });
            // the root's first element is the destination
            self.dest_due = tag == 0;
        } else {
            if n == 0 {
                self.out.extend_from_slice(b"{}");
                self.close_tag(tag);
                return Ok(true);
            }
            if self.key_cursor == self.s.keys.len() {
                self.scan_keys(at)?;
            }
            self.out.put_u8(b'{');
            let key = self.write_key()?;
            self.s.stack.push(Level::Hash { left: n, tag, key });
        }
        self.depth += 1;
        Ok(false)
    }

    /// Writes the next key of the pre-scan and its colon; returns its
    /// index.
    fn write_key(&mut self) -> Result<usize, FrameError> {
        let i = self.key_cursor;
        let k = *self.s.keys.get(i).ok_or(self.truncated(self.pos))?;
        self.key_cursor += 1;
        let bytes = self.data.get(k.start..k.end).unwrap_or_default();
        if k.utf8 && std::str::from_utf8(bytes).is_err() {
            return Err(StorableError::InvalidUtf8 { at: k.start }.into());
        }
        write_string(self.out, bytes, k.utf8);
        self.out.put_u8(b':');
        Ok(i)
    }

    /// After a complete item: closes finished containers and writes the
    /// separator (and next key) of the open one. True when the root is
    /// done.
    fn after_value(&mut self) -> Result<bool, FrameError> {
        self.check_limit()?;
        loop {
            let Some(top) = self.s.stack.last_mut() else {
                return Ok(true);
            };
            match top {
                Level::Refs { first, last } => {
                    let (first, last) = (*first, *last);
                    self.s.stack.pop();
                    for tag in first..=last {
                        self.close_tag(tag);
                    }
                }
                Level::Array { left, tag } => {
                    *left -= 1;
                    if *left > 0 {
                        self.out.put_u8(b',');
                        return Ok(false);
                    }
                    let tag = *tag;
                    self.s.stack.pop();
                    self.depth -= 1;
                    self.out.put_u8(b']');
                    self.close_tag(tag);
                }
                Level::Hash { left, tag, key } => {
                    *left -= 1;
                    let (left, tag, key) = (*left, *tag, *key);
                    // skip the key the pre-scan found right after the value
                    match self.s.keys.get(key) {
                        Some(k) if k.fields == self.pos => self.pos = k.end,
                        _ => return Err(self.truncated(self.pos)),
                    }
                    if left > 0 {
                        self.out.put_u8(b',');
                        let key = self.write_key()?;
                        if let Some(Level::Hash { key: k, .. }) = self.s.stack.last_mut() {
                            *k = key;
                        }
                        return Ok(false);
                    }
                    self.s.stack.pop();
                    self.depth -= 1;
                    self.out.put_u8(b'}');
                    self.close_tag(tag);
                }
            }
        }
    }

    /// A chain of refs (the first op already read) and what it points to.
    fn refs(&mut self) -> Result<bool, FrameError> {
        let first = self.open_tag();
        let mut last = first;
        loop {
            let at = self.pos;
            let op = *self.data.get(at).ok_or(self.truncated(at))?;
            if is_ref(op) {
                self.pos += 1;
                last = self.open_tag();
                continue;
            }
            match op {
                SX_ARRAY | SX_HASH | SX_FLAG_HASH => {
                    // the container is the next item; the refs end with it
                    self.s.stack.push(Level::Refs { first, last });
                    return Ok(false);
                }
                SX_OBJECT => {
                    self.pos += 1;
                    let n = self.u32()?;
                    self.back_ref(n, true)?;
                }
                SX_BLESS | SX_IX_BLESS => {
                    self.pos += 1;
                    let b = self.blessed(op, at)?;
                    let tag = self.open_tag();
                    self.out
                        .extend_from_slice(if b { b"true" } else { b"false" });
                    self.close_tag(tag);
                }
                _ => {
                    self.pos += 1;
                    let scalar = self.scalar(op, at)?;
                    match (scalar.bit(), scalar.const_index()) {
                        // \0 and \1 are booleans (JSON::XS)
                        (Some(b), Some(k)) => {
                            self.s.seen.push(Seen {
                                start: CONST,
                                end: k,
                            });
                            self.out
                                .extend_from_slice(if b { b"true" } else { b"false" });
                        }
                        _ => {
                            let tag = self.open_tag();
                            self.write_scalar(scalar);
                            self.close_tag(tag);
                        }
                    }
                }
            }
            for tag in first..=last {
                self.close_tag(tag);
            }
            return Ok(true);
        }
    }

    /// A `bless`/`ix_bless` (op read at `at`) and the scalar it blesses:
    /// only `JSON::PP::Boolean` of 0/1.
    fn blessed(&mut self, op: u8, at: usize) -> Result<bool, FrameError> {
        let mut n = u32::from(self.u8()?);
        if n & 0x80 != 0 {
            n = self.u32()?;
        }
        let boolean = if op == SX_BLESS {
            let name = self.take(n as usize, at)?;
            let boolean = name == BOOLEAN_CLASS;
            if !boolean {
                let name: String = name.iter().take(100).map(|&b| char::from(b)).collect();
                return Err(StorableError::UnsupportedClass(name).into());
            }
            self.s.classes.push(boolean);
            boolean
        } else {
            *self
                .s
                .classes
                .get(n as usize)
                .ok_or(StorableError::UnknownClass(n))?
        };
        debug_assert!(boolean);
        let vat = self.pos;
        let vop = self.u8()?;
        if matches!(vop, SX_ARRAY | SX_HASH | SX_FLAG_HASH | SX_OBJECT)
            || is_ref(vop)
            || matches!(vop, SX_BLESS | SX_IX_BLESS)
        {
            return Err(StorableError::BadBoolean { at: vat }.into());
        }
        let scalar = self.scalar(vop, vat)?;
        scalar
            .bit()
            .ok_or(StorableError::BadBoolean { at: vat }.into())
    }

    /// Reads a scalar (op read at `at`).
    fn scalar(&mut self, op: u8, at: usize) -> Result<Scalar<'a>, FrameError> {
        let s = match op {
            SX_UNDEF | SX_SV_UNDEF | SX_SVUNDEF_ELEM => Scalar::Null,
            SX_BYTE => Scalar::Int(i32::from(self.u8()?) - 128),
            SX_NETINT => Scalar::Int(self.u32()? as i32),
            SX_SV_YES | SX_BOOLEAN_TRUE => Scalar::Bool(true),
            SX_SV_NO | SX_BOOLEAN_FALSE => Scalar::Bool(false),
            SX_SCALAR | SX_UTF8STR => {
                let n = self.u8()?;
                let b = self.take(usize::from(n), at)?;
                if op == SX_SCALAR {
                    Scalar::Bytes(b)
                } else if std::str::from_utf8(b).is_ok() {
                    Scalar::Utf8(b)
                } else {
                    return Err(StorableError::InvalidUtf8 { at: at + 2 }.into());
                }
            }
            SX_LSCALAR | SX_LUTF8STR => {
                let n = self.u32()?;
                let b = self.take(n as usize, at)?;
                if op == SX_LSCALAR {
                    Scalar::Bytes(b)
                } else if std::str::from_utf8(b).is_ok() {
                    Scalar::Utf8(b)
                } else {
                    return Err(StorableError::InvalidUtf8 { at: at + 5 }.into());
                }
            }
            op => return Err(unsupported(op, at).into()),
        };
        Ok(s)
    }

    /// Writes a scalar's JSON; true when a string needed escapes.
    fn write_scalar(&mut self, s: Scalar<'_>) -> bool {
        match s {
            Scalar::Null => self.out.extend_from_slice(b"null"),
            Scalar::Int(v) => self
                .out
                .extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            Scalar::Bool(true) => self.out.extend_from_slice(b"true"),
            Scalar::Bool(false) => self.out.extend_from_slice(b"false"),
            Scalar::Bytes(b) => return write_string(self.out, b, false),
            Scalar::Utf8(b) => return write_string(self.out, b, true),
        }
        false
    }

    /// Copies object `n`'s JSON; under a ref, a `0`/`1` scalar becomes a
    /// boolean.
    fn back_ref(&mut self, n: u32, under_ref: bool) -> Result<(), FrameError> {
        let s = *self
            .s
            .seen
            .get(n as usize)
            .ok_or(StorableError::UnknownObject(n))?;
        if s.start != CONST && s.end == OPEN {
            return Err(StorableError::Cycle(n).into());
        }
        let text: &[u8] = if s.start == CONST {
            CONSTS.get(s.end as usize).copied().unwrap_or_default()
        } else {
            self.out
                .get(s.start as usize..s.end as usize)
                .unwrap_or_default()
        };
        let copy: Vec<u8> = match text {
            b"0" | b"\"0\"" if under_ref => b"false".to_vec(),
            b"1" | b"\"1\"" if under_ref => b"true".to_vec(),
            _ if self.out.len() + text.len() > self.limit => {
                return Err(FrameError::TooLarge { limit: self.limit });
            }
            _ if text.len() > self.backref_budget => {
                return Err(StorableError::BackRefsTooLarge {
                    image: self.data.len(),
                    limit: backref_allowance(self.data.len()),
                }
                .into());
            }
            _ => {
                self.backref_budget -= text.len();
                text.to_vec()
            }
        };
        self.out.extend_from_slice(&copy);
        Ok(())
    }

    /// Walks the hash starting at `at` (and everything in it) once,
    /// noting every hash key in the order the transcoder will need them
    /// (pre-order: an entry's key before the keys inside its value).
    fn scan_keys(&mut self, at: usize) -> Result<(), FrameError> {
        let mut pos = at;
        let data = self.data;
        let base_depth = self.depth;
        let trunc = |at: usize| -> FrameError { StorableError::Truncated { at }.into() };
        let u32_at = |p: usize| -> Result<u32, FrameError> {
            let b = data.get(p..p + 4).ok_or(trunc(p))?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let skip = |p: usize, len: usize, at: usize| -> Result<usize, FrameError> {
            let end = p.checked_add(len).ok_or(trunc(at))?;
            if end > data.len() {
                return Err(trunc(at));
            }
            Ok(end)
        };
        self.s.scan.clear();
        loop {
            // one item at `pos`
            let at = pos;
            let op = *data.get(pos).ok_or(trunc(pos))?;
            pos += 1;
            let complete = match op {
                op if is_ref(op) => false,
                SX_BLESS | SX_IX_BLESS => {
                    let n = *data.get(pos).ok_or(trunc(at))?;
                    pos += 1;
                    let n = if n & 0x80 != 0 {
                        let n = u32_at(pos)?;
                        pos += 4;
                        n
                    } else {
                        u32::from(n)
                    };
                    if op == SX_BLESS {
                        pos = skip(pos, n as usize, at)?;
                    }
                    false
                }
                SX_ARRAY | SX_HASH | SX_FLAG_HASH => {
                    let flagged = op == SX_FLAG_HASH;
                    if flagged {
                        pos += 1;
                    }
                    let n = u32_at(pos)?;
                    pos += 4;
                    let min = match op {
                        SX_ARRAY => 1,
                        SX_HASH => 5,
                        _ => 6,
                    };
                    if (n as usize).saturating_mul(min) > data.len().saturating_sub(pos) {
                        return Err(StorableError::CountTooLarge { count: n, at }.into());
                    }
                    if base_depth + self.s.scan.len() >= self.max_depth {
                        return Err(FrameError::TooDeep {
                            limit: self.max_depth,
                        });
                    }
                    if n == 0 {
                        true
                    } else if op == SX_ARRAY {
                        self.s.scan.push(ScanLevel::Array { left: n });
                        false
                    } else {
                        let key = self.s.keys.len();
                        self.s.keys.push(KeySpan::default());
                        self.s.scan.push(ScanLevel::Hash {
                            left: n,
                            flagged,
                            key,
                        });
                        false
                    }
                }
                SX_OBJECT | SX_NETINT => {
                    pos = skip(pos, 4, at)?;
                    true
                }
                SX_BYTE => {
                    pos = skip(pos, 1, at)?;
                    true
                }
                SX_SCALAR | SX_UTF8STR => {
                    let n = *data.get(pos).ok_or(trunc(at))?;
                    pos = skip(pos + 1, usize::from(n), at)?;
                    true
                }
                SX_LSCALAR | SX_LUTF8STR => {
                    let n = u32_at(pos)?;
                    pos = skip(pos + 4, n as usize, at)?;
                    true
                }
                SX_UNDEF | SX_SV_UNDEF | SX_SVUNDEF_ELEM | SX_SV_YES | SX_SV_NO
                | SX_BOOLEAN_TRUE | SX_BOOLEAN_FALSE => true,
                op => return Err(unsupported(op, at).into()),
            };
            if !complete {
                continue;
            }
            // the item is complete: read keys of finished hash entries
            loop {
                let Some(top) = self.s.scan.last_mut() else {
                    return Ok(());
                };
                match top {
                    ScanLevel::Array { left } => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.s.scan.pop();
                    }
                    ScanLevel::Hash { left, flagged, key } => {
                        let fields = pos;
                        let mut utf8 = false;
                        if *flagged {
                            let flags = *data.get(pos).ok_or(trunc(pos))?;
                            if flags & !KEY_FLAGS_OK != 0 {
                                return Err(StorableError::Flags { flags, at: pos }.into());
                            }
                            utf8 = flags & KEY_UTF8 != 0;
                            pos += 1;
                        }
                        let n = u32_at(pos)?;
                        let start = pos + 4;
                        pos = skip(start, n as usize, fields)?;
                        if let Some(k) = self.s.keys.get_mut(*key) {
                            *k = KeySpan {
                                fields,
                                start,
                                end: pos,
                                utf8,
                            };
                        }
                        *left -= 1;
                        if *left > 0 {
                            *key = self.s.keys.len();
                            self.s.keys.push(KeySpan::default());
                            break;
                        }
                        self.s.scan.pop();
                    }
                }
            }
        }
    }
}

/// Writes a string's bytes (UTF-8 or Latin-1) as a JSON string; true if
/// it needed escapes.
fn write_string(out: &mut BytesMut, bytes: &[u8], utf8: bool) -> bool {
    out.reserve(bytes.len() + 2);
    out.put_u8(b'"');
    let escaped = if utf8 {
        json_string::write_utf8(out, bytes)
    } else {
        json_string::write_latin1(out, bytes)
    };
    out.put_u8(b'"');
    escaped
}

// ---------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------

/// Encodes the packet `[dest, msg elements…]` as a storable frame at the
/// end of `out`; `msg` must serialize to a sequence or tuple (as in the
/// other framings, `()` is not one: the empty message is an empty `Vec`
/// or `[(); 0]`). On error `out` is left as it was.
///
/// ```
/// let mut out = bytes::BytesMut::new();
/// aemp::wire::Framing::Storable.encode_packet("a", &(1,), &mut out).unwrap();
/// assert_eq!(&out[..], b"\x0c\x05\x0b\x02\x00\x00\x00\x02\x0a\x01a\x08\x81");
/// ```
pub(crate) fn encode_packet<M: Serialize + ?Sized>(
    dest: &str,
    msg: &M,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    append_or_restore(out, |out, start| {
        let mut enc = Encoder::begin(out);
        enc.string(dest)?;
        let mut count = 1u32;
        msg.serialize(MessageSer {
            enc: &mut enc,
            count: &mut count,
        })?;
        enc.finish(start, count)
    })
}

/// Transcodes a JSON frame (an array, as [`Packet::encode`] makes) to a
/// storable frame at the end of `out`, keeping object key order. On error
/// `out` is left as it was.
pub(crate) fn encode_frame(json_frame: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    append_or_restore(out, |out, start| {
        let mut enc = Encoder::begin(out);
        let mut count = 0u32;
        let mut de = serde_json::Deserializer::from_slice(json_frame);
        serde_transcode::transcode(
            &mut de,
            FrameSer {
                enc: &mut enc,
                count: &mut count,
            },
        )?;
        de.end().map_err(|e| Error::Msg(e.to_string()))?;
        enc.finish(start, count)
    })
}

/// Writes Storable items at the end of a buffer.
struct Encoder<'a> {
    out: &'a mut BytesMut,
    /// Where the frame starts (its length byte).
    start: usize,
    /// The next object number.
    tag: u32,
    /// Object numbers of the blessed true and false scalars, once written.
    bools: [Option<u32>; 2],
    /// Whether the `JSON::PP::Boolean` class name was written (index 0).
    class: bool,
    /// Keys of open maps waiting for their values (UTF-8, back to back).
    keybuf: Vec<u8>,
    /// Keys written in open maps: (offset of the key's length, is UTF-8).
    keys: Vec<(usize, bool)>,
}

impl<'a> Encoder<'a> {
    /// Starts a frame: a length byte to fix later, the header, the root
    /// array with its count to fix later.
    fn begin(out: &'a mut BytesMut) -> Encoder<'a> {
        let start = out.len();
        out.extend_from_slice(&[0, NETORDER_MAJOR2, MINOR, SX_ARRAY, 0, 0, 0, 0]);
        Encoder {
            out,
            start,
            tag: 1,
            bools: [None, None],
            class: false,
            keybuf: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Fixes the root count and the length prefix.
    fn finish(self, start: usize, count: u32) -> Result<(), Error> {
        debug_assert_eq!(start, self.start);
        let out = self.out;
        out[start + 4..start + 8].copy_from_slice(&count.to_be_bytes());
        let len = out.len() - start - 1;
        let mut ber = [0u8; 10];
        let mut i = ber.len();
        let mut v = len;
        loop {
            i -= 1;
            ber[i] = (v & 0x7f) as u8 | if i == ber.len() - 1 { 0 } else { 0x80 };
            v >>= 7;
            if v == 0 {
                break;
            }
        }
        let ber = &ber[i..];
        if ber.len() > 1 {
            let extra = ber.len() - 1;
            let end = out.len();
            out.extend_from_slice(&ber[1..]);
            out.copy_within(start + 1..end, start + 1 + extra);
        }
        out[start..start + ber.len()].copy_from_slice(ber);
        Ok(())
    }

    fn next_tag(&mut self) -> u32 {
        let t = self.tag;
        self.tag = self.tag.wrapping_add(1);
        t
    }

    fn undef(&mut self) {
        self.next_tag();
        self.out.put_u8(SX_UNDEF);
    }

    fn int(&mut self, v: i64) {
        self.next_tag();
        if (-128..=127).contains(&v) {
            self.out.extend_from_slice(&[SX_BYTE, (v + 128) as u8]);
        } else if let Ok(v) = i32::try_from(v) {
            self.out.put_u8(SX_NETINT);
            self.out.put_i32(v);
        } else {
            let mut b = itoa::Buffer::new();
            self.bytes_item(b.format(v).as_bytes());
        }
    }

    fn wide_int(&mut self, v: i128) {
        match i64::try_from(v) {
            Ok(v) => self.int(v),
            Err(_) => {
                self.next_tag();
                let mut b = itoa::Buffer::new();
                self.bytes_item(b.format(v).as_bytes());
            }
        }
    }

    fn float(&mut self, v: f64) {
        // integral values that fit an i64 go as integers (3.0 → 3)
        if v.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v) {
            self.int(v as i64);
        } else {
            self.next_tag();
            let mut buf = [0u8; 32];
            let n = format_g15(v, &mut buf);
            self.bytes_item(&buf[..n]);
        }
    }

    /// A byte string item (no object number taken: callers do).
    fn bytes_item(&mut self, b: &[u8]) {
        if let Ok(n) = u8::try_from(b.len()) {
            self.out.extend_from_slice(&[SX_SCALAR, n]);
        } else {
            self.out.put_u8(SX_LSCALAR);
            self.out.put_u32(b.len() as u32);
        }
        self.out.extend_from_slice(b);
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        if u32::try_from(b.len()).is_err() {
            return Err(Error::Msg("string longer than 4 GiB".into()));
        }
        self.next_tag();
        self.bytes_item(b);
        Ok(())
    }

    /// A string: Latin-1 bytes if every character is ≤ U+00FF, else UTF-8.
    fn string(&mut self, s: &str) -> Result<(), Error> {
        if s.is_ascii() {
            return self.bytes(s.as_bytes());
        }
        if u32::try_from(s.len()).is_err() {
            return Err(Error::Msg("string longer than 4 GiB".into()));
        }
        self.next_tag();
        match latin1_len(s) {
            Some(n) => {
                if let Ok(n) = u8::try_from(n) {
                    self.out.extend_from_slice(&[SX_SCALAR, n]);
                } else {
                    self.out.put_u8(SX_LSCALAR);
                    self.out.put_u32(n as u32);
                }
                self.out.extend(s.chars().map(|c| c as u8));
            }
            None => {
                if let Ok(n) = u8::try_from(s.len()) {
                    self.out.extend_from_slice(&[SX_UTF8STR, n]);
                } else {
                    self.out.put_u8(SX_LUTF8STR);
                    self.out.put_u32(s.len() as u32);
                }
                self.out.extend_from_slice(s.as_bytes());
            }
        }
        Ok(())
    }

    /// A boolean as Perl writes `JSON::PP::true`/`false`.
    fn boolean(&mut self, b: bool) {
        self.next_tag(); // the overloaded ref
        self.out.put_u8(SX_OVERLOAD);
        if let Some(t) = self.bools[usize::from(b)] {
            self.out.put_u8(SX_OBJECT);
            self.out.put_u32(t);
            return;
        }
        if self.class {
            self.out.extend_from_slice(&[SX_IX_BLESS, 0]);
        } else {
            self.class = true;
            self.out
                .extend_from_slice(&[SX_BLESS, BOOLEAN_CLASS.len() as u8]);
            self.out.extend_from_slice(BOOLEAN_CLASS);
        }
        let t = self.next_tag();
        self.bools[usize::from(b)] = Some(t);
        self.out.extend_from_slice(&[SX_BYTE, 0x80 | u8::from(b)]);
    }

    /// Opens a nested array (`04 02 <count>`): returns where its count is.
    fn open_array(&mut self) -> usize {
        self.tag = self.tag.wrapping_add(2);
        self.out.extend_from_slice(&[SX_REF, SX_ARRAY, 0, 0, 0, 0]);
        self.out.len() - 4
    }

    fn close_array(&mut self, at: usize, count: u32) {
        self.out[at..at + 4].copy_from_slice(&count.to_be_bytes());
    }

    /// Opens a nested hash (`04 03 <count>`).
    fn open_map(&mut self) -> MapState {
        self.tag = self.tag.wrapping_add(2);
        self.out.extend_from_slice(&[SX_REF, SX_HASH, 0, 0, 0, 0]);
        MapState {
            op: self.out.len() - 5,
            count: 0,
            key_start: self.keybuf.len(),
            keys_start: self.keys.len(),
            utf8: false,
        }
    }

    /// Writes the pending key of `m` (after its value).
    fn map_key(&mut self, m: &mut MapState) -> Result<(), Error> {
        let key = self.keybuf.get(m.key_start..).unwrap_or_default();
        let key = std::str::from_utf8(key).map_err(|e| Error::Msg(e.to_string()))?;
        if u32::try_from(key.len()).is_err() {
            return Err(Error::Msg("hash key longer than 4 GiB".into()));
        }
        let at = self.out.len();
        let utf8 = match latin1_len(key) {
            Some(n) => {
                self.out.put_u32(n as u32);
                self.out.extend(key.chars().map(|c| c as u8));
                false
            }
            None => {
                self.out.put_u32(key.len() as u32);
                self.out.extend_from_slice(key.as_bytes());
                true
            }
        };
        m.utf8 |= utf8;
        self.keys.push((at, utf8));
        self.keybuf.truncate(m.key_start);
        m.count = m
            .count
            .checked_add(1)
            .ok_or_else(|| Error::Msg("hash with more than 2³² entries".into()))?;
        Ok(())
    }

    /// Closes a hash: fixes its count, and rewrites it as a `19` hash with
    /// key flags when a key needed UTF-8.
    fn close_map(&mut self, m: MapState) {
        let count = m.count.to_be_bytes();
        self.out[m.op + 1..m.op + 5].copy_from_slice(&count);
        if m.utf8 {
            let keys = self.keys.get(m.keys_start..).unwrap_or_default();
            let mut region = Vec::with_capacity(self.out.len() - m.op + 1 + keys.len());
            region.extend_from_slice(&[SX_FLAG_HASH, 0]);
            region.extend_from_slice(&count);
            let mut from = m.op + 5;
            for &(at, utf8) in keys {
                region.extend_from_slice(&self.out[from..at]);
                region.push(u8::from(utf8));
                from = at;
            }
            region.extend_from_slice(&self.out[from..]);
            self.out.truncate(m.op);
            self.out.extend_from_slice(&region);
        }
        self.keys.truncate(m.keys_start);
    }
}

/// Character count of `s` if every character is ≤ U+00FF.
fn latin1_len(s: &str) -> Option<usize> {
    let mut n = 0;
    for c in s.chars() {
        if c as u32 > 0xff {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// An open map of the encoder.
struct MapState {
    /// Offset of its opcode (`03`).
    op: usize,
    count: u32,
    /// Where its pending key starts in `keybuf`.
    key_start: usize,
    /// Where its keys start in `keys`.
    keys_start: usize,
    /// A key needed UTF-8.
    utf8: bool,
}

/// Formats `v` as C's `printf("%.15g")` does (Perl's number
/// stringification), with Perl's `Inf`/`-Inf`/`NaN`; returns the length
/// written into `buf`.
///
/// ```text
/// 0.1 → 0.1   1/3 → 0.333333333333333   1e21 → 1e+21   1e-5 → 1e-05
/// ```
pub(crate) fn format_g15(v: f64, buf: &mut [u8; 32]) -> usize {
    const P: i32 = 15;
    let special: Option<&[u8]> = if v.is_nan() {
        Some(b"NaN")
    } else if v == f64::INFINITY {
        Some(b"Inf")
    } else if v == f64::NEG_INFINITY {
        Some(b"-Inf")
    } else {
        None
    };
    if let Some(s) = special {
        buf[..s.len()].copy_from_slice(s);
        return s.len();
    }
    // correctly rounded to 15 significant digits: d.dddddddddddddde[-]x
    let mut sci = [0u8; 40];
    let n = {
        let mut w = &mut sci[..];
        let _ = write!(w, "{:.*e}", (P - 1) as usize, v.abs());
        40 - w.len()
    };
    let sci = &sci[..n];
    let e_at = sci.iter().position(|&b| b == b'e').unwrap_or(n);
    let exp: i32 = std::str::from_utf8(&sci[e_at + 1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut digits = [0u8; 15];
    let mut nd = 0;
    for &b in &sci[..e_at] {
        if b.is_ascii_digit() && nd < digits.len() {
            digits[nd] = b;
            nd += 1;
        }
    }
    // drop trailing zeros (%g without '#')
    while nd > 1 && digits[nd - 1] == b'0' {
        nd -= 1;
    }
    let digits = &digits[..nd];
    let mut o = 0;
    let mut put = |b: u8| {
        buf[o] = b;
        o += 1;
    };
    if v.is_sign_negative() {
        put(b'-');
    }
    if !(-4..P).contains(&exp) {
        put(digits.first().copied().unwrap_or(b'0'));
        if digits.len() > 1 {
            put(b'.');
            for &d in &digits[1..] {
                put(d);
            }
        }
        put(b'e');
        put(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a >= 100 {
            put(b'0' + (a / 100) as u8);
        }
        put(b'0' + (a / 10 % 10) as u8);
        put(b'0' + (a % 10) as u8);
    } else if exp < 0 {
        put(b'0');
        put(b'.');
        for _ in 0..(-exp - 1) {
            put(b'0');
        }
        for &d in digits {
            put(d);
        }
    } else {
        let int_len = exp as usize + 1;
        for i in 0..int_len {
            put(digits.get(i).copied().unwrap_or(b'0'));
        }
        if digits.len() > int_len {
            put(b'.');
            for &d in &digits[int_len..] {
                put(d);
            }
        }
    }
    o
}

type Res = Result<(), Error>;

/// The message: its elements go into the root array after the
/// destination.
struct MessageSer<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    count: &'e mut u32,
}

/// The root of a JSON frame being transcoded: its elements are the root
/// array's.
struct FrameSer<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    count: &'e mut u32,
}

/// Elements of the root array.
struct RootSeq<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    count: &'e mut u32,
}

fn bump(count: &mut u32) -> Res {
    *count = count
        .checked_add(1)
        .ok_or_else(|| Error::Msg("array with more than 2³² elements".into()))?;
    Ok(())
}

impl ser::SerializeSeq for RootSeq<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Res {
        v.serialize(&mut *self.enc)?;
        bump(self.count)
    }
    fn end(self) -> Res {
        Ok(())
    }
}

forward_to_seq!(RootSeq<'_, '_>:
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
);

/// The `Serializer` of a message or frame: a sequence, whose elements
/// go into the root array; anything else is `NotAnArray`.
macro_rules! root_serializer {
    ($ty:ident) => {
        impl<'e, 'a> ser::Serializer for $ty<'e, 'a> {
            type Ok = ();
            type Error = Error;
            type SerializeSeq = RootSeq<'e, 'a>;
            type SerializeTuple = RootSeq<'e, 'a>;
            type SerializeTupleStruct = RootSeq<'e, 'a>;
            type SerializeTupleVariant = Impossible<(), Error>;
            type SerializeMap = Impossible<(), Error>;
            type SerializeStruct = Impossible<(), Error>;
            type SerializeStructVariant = Impossible<(), Error>;

            refuse! { Error::NotAnArray;
                serialize_bool(bool) -> (); serialize_i8(i8) -> (); serialize_i16(i16) -> ();
                serialize_i32(i32) -> (); serialize_i64(i64) -> (); serialize_u8(u8) -> ();
                serialize_u16(u16) -> (); serialize_u32(u32) -> (); serialize_u64(u64) -> ();
                serialize_f32(f32) -> (); serialize_f64(f64) -> (); serialize_char(char) -> ();
                serialize_str(&str) -> (); serialize_bytes(&[u8]) -> ();
                serialize_none() -> (); serialize_unit() -> ();
                serialize_unit_struct(&'static str) -> ();
                serialize_unit_variant(&'static str, u32, &'static str) -> ();
                serialize_tuple_variant(&'static str, u32, &'static str, usize)
                    -> Self::SerializeTupleVariant;
                serialize_map(Option<usize>) -> Self::SerializeMap;
                serialize_struct(&'static str, usize) -> Self::SerializeStruct;
                serialize_struct_variant(&'static str, u32, &'static str, usize)
                    -> Self::SerializeStructVariant;
            }

            fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Res {
                v.serialize(self)
            }
            fn serialize_newtype_struct<T: Serialize + ?Sized>(
                self,
                _: &'static str,
                v: &T,
            ) -> Res {
                v.serialize(self)
            }
            fn serialize_newtype_variant<T: Serialize + ?Sized>(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: &T,
            ) -> Res {
                Err(Error::NotAnArray)
            }
            fn serialize_seq(self, _: Option<usize>) -> Result<RootSeq<'e, 'a>, Error> {
                Ok(RootSeq {
                    enc: self.enc,
                    count: self.count,
                })
            }
            fn serialize_tuple(self, _: usize) -> Result<RootSeq<'e, 'a>, Error> {
                self.serialize_seq(None)
            }
            fn serialize_tuple_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<RootSeq<'e, 'a>, Error> {
                self.serialize_seq(None)
            }
        }
    };
}

root_serializer!(MessageSer);
root_serializer!(FrameSer);

/// A nested sequence (`04 02`).
struct SeqState<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    at: usize,
    count: u32,
}

impl ser::SerializeSeq for SeqState<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Res {
        v.serialize(&mut *self.enc)?;
        bump(&mut self.count)
    }
    fn end(self) -> Res {
        self.enc.close_array(self.at, self.count);
        Ok(())
    }
}

forward_to_seq!(SeqState<'_, '_>:
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
);

/// A nested map (`04 03` / `04 19`).
struct MapSer<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    m: MapState,
}

impl ser::SerializeMap for MapSer<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Res {
        self.enc.keybuf.truncate(self.m.key_start);
        let keybuf = &mut self.enc.keybuf;
        k.serialize(KeySer(|key: &str| keybuf.extend_from_slice(key.as_bytes())))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Res {
        v.serialize(&mut *self.enc)?;
        self.enc.map_key(&mut self.m)
    }
    fn end(self) -> Res {
        self.enc.close_map(self.m);
        Ok(())
    }
}

impl ser::SerializeStruct for MapSer<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Res {
        ser::SerializeMap::serialize_key(self, key)?;
        ser::SerializeMap::serialize_value(self, v)
    }
    fn end(self) -> Res {
        ser::SerializeMap::end(self)
    }
}

/// An enum variant with contents: `{variant: contents}`, the key written
/// after the contents.
struct VariantSer<S> {
    inner: S,
    m: Option<MapState>,
    variant: &'static str,
}

fn finish_variant(enc: &mut Encoder<'_>, m: Option<MapState>, variant: &str) -> Res {
    let Some(mut m) = m else {
        return Err(Error::Msg("enum variant state lost".into()));
    };
    enc.keybuf.truncate(m.key_start);
    enc.keybuf.extend_from_slice(variant.as_bytes());
    enc.map_key(&mut m)?;
    enc.close_map(m);
    Ok(())
}

impl ser::SerializeTupleVariant for VariantSer<SeqState<'_, '_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Res {
        ser::SerializeSeq::serialize_element(&mut self.inner, v)
    }
    fn end(self) -> Res {
        let SeqState { enc, at, count } = self.inner;
        enc.close_array(at, count);
        finish_variant(enc, self.m, self.variant)
    }
}

impl ser::SerializeStructVariant for VariantSer<MapSer<'_, '_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Res {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, v)
    }
    fn end(self) -> Res {
        let MapSer { enc, m } = self.inner;
        enc.close_map(m);
        finish_variant(enc, self.m, self.variant)
    }
}

/// Implements `Serializer` methods that write the value, converted, with
/// one `Encoder` method.
macro_rules! write_with {
    ($($name:ident($t:ty) => $method:ident;)*) => {$(
        fn $name(self, v: $t) -> Res {
            self.$method(v.into());
            Ok(())
        }
    )*};
}

impl<'e, 'a> ser::Serializer for &'e mut Encoder<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = SeqState<'e, 'a>;
    type SerializeTuple = SeqState<'e, 'a>;
    type SerializeTupleStruct = SeqState<'e, 'a>;
    type SerializeTupleVariant = VariantSer<SeqState<'e, 'a>>;
    type SerializeMap = MapSer<'e, 'a>;
    type SerializeStruct = MapSer<'e, 'a>;
    type SerializeStructVariant = VariantSer<MapSer<'e, 'a>>;

    write_with! {
        serialize_bool(bool) => boolean;
        serialize_i8(i8) => int;
        serialize_i16(i16) => int;
        serialize_i32(i32) => int;
        serialize_i64(i64) => int;
        serialize_i128(i128) => wide_int;
        serialize_u8(u8) => int;
        serialize_u16(u16) => int;
        serialize_u32(u32) => int;
        serialize_u64(u64) => wide_int;
        serialize_f32(f32) => float;
        serialize_f64(f64) => float;
    }
    fn serialize_u128(self, v: u128) -> Res {
        match i128::try_from(v) {
            Ok(v) => self.wide_int(v),
            Err(_) => {
                self.next_tag();
                let mut b = itoa::Buffer::new();
                self.bytes_item(b.format(v).as_bytes());
            }
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Res {
        self.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Res {
        self.string(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Res {
        self.bytes(v)
    }
    fn serialize_none(self) -> Res {
        self.undef();
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Res {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        self.undef();
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Res {
        self.undef();
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Res {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Res {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Res {
        let m = self.open_map();
        v.serialize(&mut *self)?;
        finish_variant(self, Some(m), variant)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<SeqState<'e, 'a>, Error> {
        let at = self.open_array();
        Ok(SeqState {
            enc: self,
            at,
            count: 0,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqState<'e, 'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<SeqState<'e, 'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        let m = self.open_map();
        let at = self.open_array();
        Ok(VariantSer {
            inner: SeqState {
                enc: self,
                at,
                count: 0,
            },
            m: Some(m),
            variant,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapSer<'e, 'a>, Error> {
        let m = self.open_map();
        Ok(MapSer { enc: self, m })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapSer<'e, 'a>, Error> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        let outer = self.open_map();
        let m = self.open_map();
        Ok(VariantSer {
            inner: MapSer { enc: self, m },
            m: Some(outer),
            variant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio_util::codec::Decoder;

    fn enc(dest: &str, msg: &serde_json::Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_packet(dest, msg, &mut out).unwrap();
        out.to_vec()
    }

    fn dec(frame: &[u8]) -> Result<Packet, FrameError> {
        let mut buf = BytesMut::from(frame);
        let p = StorableCodec::default().decode(&mut buf)?;
        assert!(buf.is_empty());
        p.ok_or(FrameError::Truncated)
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// The image with a BER length prefix.
    fn framed(image: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let enc = Encoder::begin(&mut out);
        enc.out.truncate(enc.start + 1);
        enc.out.extend_from_slice(image);
        // the root count is part of `image`: keep it
        let count = u32::from_be_bytes(image[3..7].try_into().unwrap());
        enc.finish(0, count).unwrap();
        out.to_vec()
    }

    #[test]
    fn g15() {
        for (v, s) in [
            (0.1, "0.1"),
            (1.0 / 3.0, "0.333333333333333"),
            (1e21, "1e+21"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (123456789012345.0, "123456789012345"),
            (1234567890123456.0, "1.23456789012346e+15"),
            (3.5, "3.5"),
            (-2.5e-300, "-2.5e-300"),
            (1e100, "1e+100"),
            (f64::INFINITY, "Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.0, "0"),
            (-0.0, "-0"),
            (5e-324, "4.94065645841247e-324"),
            (f64::MAX, "1.79769313486232e+308"),
            (0.000123456789, "0.000123456789"),
            (99999999999999.95, "100000000000000"),
            (99999999999999.9, "99999999999999.9"),
            (999999999999999.5, "1e+15"),
        ] {
            let mut buf = [0u8; 32];
            let n = format_g15(v, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), s, "{v:e}");
        }
    }

    /// 3030 values printed by `perl -e 'printf "%.15g"'`
    /// (tests/fixtures/storable/g15.pl).
    #[test]
    fn g15_agrees_with_perl_printf() {
        let table = include_str!("../../../tests/fixtures/storable/g15.txt");
        let mut n = 0;
        for line in table.lines() {
            let (bits, want) = line.split_once(' ').unwrap();
            let v = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
            let mut buf = [0u8; 32];
            let len = format_g15(v, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), want, "{bits}");
            n += 1;
        }
        assert_eq!(n, 3030);
    }

    #[test]
    fn a_large_frame_leaves_no_large_tables_behind() {
        // a hash of 100,000 keys (a key span each) and as many refs
        let keys: serde_json::Map<String, serde_json::Value> = (0..100_000)
            .map(|i| (format!("k{i}"), json!([i])))
            .collect();
        let mut wire = BytesMut::new();
        encode_packet("p", &(keys,), &mut wire).unwrap();
        encode_packet("p", &("small",), &mut wire).unwrap();
        let mut codec = StorableCodec::default();
        let big = codec.decode(&mut wire).unwrap().unwrap();
        assert!(big.frame().len() > 1_000_000);
        let s = &codec.scratch;
        for (table, room) in [
            ("seen", s.seen.capacity()),
            ("stack", s.stack.capacity()),
            ("scan", s.scan.capacity()),
            ("keys", s.keys.capacity()),
            ("classes", s.classes.capacity()),
        ] {
            assert!(room <= SCRATCH_KEEP, "{table} keeps room for {room}");
        }
        assert!(codec.out.capacity() <= ARENA, "{}", codec.out.capacity());
        let small = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(small.frame(), &br#"["p","small"]"#[..]);
    }

    #[test]
    fn ber_lengths() {
        assert_eq!(read_ber(&[0x05], 100), Ok(Some((1, 5))));
        assert_eq!(read_ber(&[0x81, 0x00], 1000), Ok(Some((2, 128))));
        assert_eq!(read_ber(&[0x81], 1000), Ok(None));
        assert_eq!(
            read_ber(&[0x80, 0x05], 1000),
            Err(StorableError::PaddedLength.into())
        );
        assert_eq!(
            read_ber(&[0x88, 0x80], 1000),
            Err(FrameError::TooLarge { limit: 1000 })
        );
        assert_eq!(
            read_ber(&[0xff; 11], usize::MAX),
            Err(FrameError::TooLarge { limit: usize::MAX })
        );
        // a length prefix that exceeds the limit is refused before the body
        let mut c = StorableCodec::new(100, 512);
        let mut buf = BytesMut::from(&[0x81, 0x00][..]);
        assert_eq!(c.decode(&mut buf), Err(FrameError::TooLarge { limit: 100 }));
    }

    #[test]
    fn encodes_like_perl() {
        // perl -MStorable=nfreeze -e 'print unpack "H*", nfreeze([...])'
        assert_eq!(
            enc("a", &json!([-128, 127, 128, -129])),
            framed(&h("050b0200000005 0a0161 0800 08ff 0900000080 09ffffff7f"))
        );
        assert_eq!(
            enc("a", &json!([2147483647i64, -2147483648i64, 2147483648i64])),
            framed(&h(
                "050b0200000004 0a0161 097fffffff 0980000000 0a0a32313437343833363438"
            ))
        );
        assert_eq!(
            enc("a", &json!([3.0, 0.1, 1e21])),
            framed(&h("050b0200000004 0a0161 0883 0a03302e31 0a0531652b3231"))
        );
        assert_eq!(
            enc("a", &json!([true, false, true, false])),
            framed(&h(
                "050b0200000005 0a0161 1411114a534f4e3a3a50503a3a426f6f6c65616e0881 1412000880 140000000003 140000000005"
            ))
        );
        assert_eq!(
            enc("a", &json!([[], {}, null])),
            framed(&h("050b0200000004 0a0161 040200000000 040300000000 05"))
        );
        let mut out = BytesMut::new();
        encode_frame(b"[]", &mut out).unwrap();
        assert_eq!(&out[..], h("07050b0200000000"));
    }

    #[test]
    fn utf8_keys_rewrite_the_hash() {
        let f = enc(
            "a",
            &json!([{"x": 1, "\u{20ac}": [{"\u{fc}": 2, "\u{263a}": 3}], "y": 4}]),
        );
        let p = dec(&f).unwrap();
        assert_eq!(
            p.values().unwrap(),
            vec![json!({"x": 1, "\u{20ac}": [{"\u{fc}": 2, "\u{263a}": 3}], "y": 4})]
        );
        let mut again = BytesMut::new();
        encode_frame(p.frame(), &mut again).unwrap();
        assert_eq!(&again[..], &f[..]);
        // the outer hash is flagged, the Latin-1 key has flag 0
        assert!(f.windows(6).any(|w| w == [0x04, 0x19, 0, 0, 0, 0]));
    }

    #[test]
    fn long_frames_get_a_longer_length() {
        let s = "x".repeat(300);
        let f = enc("a", &json!([s]));
        assert_eq!(&f[..2], &[0x82, 0x3b]); // 315 bytes
        assert_eq!(dec(&f).unwrap().values().unwrap(), vec![json!(s)]);
    }

    #[test]
    fn errors_leave_out_unchanged() {
        let mut out = BytesMut::from(&b"xy"[..]);
        assert!(matches!(
            encode_packet("a", &json!({"a": 1}), &mut out),
            Err(EncodeError::NotAnArray)
        ));
        assert!(matches!(
            encode_packet("a", &"s", &mut out),
            Err(EncodeError::NotAnArray)
        ));
        assert!(encode_frame(b"{\"a\":1}", &mut out).is_err());
        assert!(encode_frame(b"[1", &mut out).is_err());
        assert!(encode_frame(b"[1] x", &mut out).is_err());
        let mut m = std::collections::HashMap::new();
        m.insert(vec![1u8], 1);
        assert!(encode_packet("a", &(m,), &mut out).is_err());
        assert_eq!(&out[..], b"xy");
        assert!(matches!(
            encode_packet("a", &(), &mut out),
            Err(EncodeError::NotAnArray)
        ));
        assert_eq!(&out[..], b"xy");
        encode_packet("a", &Vec::<u8>::new(), &mut out).unwrap();
        assert_eq!(&out[2..], h("0a050b02000000010a0161"));
    }
}

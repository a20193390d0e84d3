//! Packets: one JSON array `[dest_port_name, @message]` each.
//!
//! A [`Packet`] keeps the raw bytes of its JSON frame and the position of
//! its destination (and, for a message whose tag was taken off, which
//! leading elements to leave out); the message elements are decoded only
//! when the receiver asks, straight into the receiver's own serde type
//! ([`Packet::decode`]) or into [`serde_json::Value`]s ([`Packet::values`]).
//! JSON is the one data model of aemp: other framings are transcoded to and
//! from it.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{EncodeError, FrameError};

/// What [`Packet::value_cost`] counts per JSON value: a
/// `serde_json::Value` is 32 bytes, and the vector holding it may have
/// room for as many again.
pub const VALUE_COST: usize = 64;

/// What [`Packet::value_cost`] counts per object entry besides its value
/// and key bytes: the key's `String` and the map's node.
pub const ENTRY_COST: usize = 96;

/// One decoded packet: a validated JSON array whose first element, if any,
/// is the destination port name (the part after `#`; `""` is the node
/// port). The empty array `[]` is a keepalive.
///
/// ```
/// use aemp::wire::Packet;
/// let p = Packet::parse(bytes::Bytes::from_static(br#"["sink","msg",1,"x"]"#)).unwrap();
/// assert_eq!(p.dest(), Some("sink"));
/// let (tag, i, payload): (String, u64, String) = p.decode().unwrap();
/// assert_eq!((tag.as_str(), i, payload.as_str()), ("msg", 1, "x"));
/// ```
#[derive(Clone)]
pub struct Packet {
    /// The frame as it arrived (or was encoded); for a packet with a
    /// [`Cut`], the message elements it leaves out are still in it.
    frame: Bytes,
    dest: Dest,
    /// The node whose connection delivered it, or this node for a local
    /// send; `None` until the node delivers it.
    src: Option<Arc<str>>,
    /// Leading message elements left out ([`Packet::without_tag`]), boxed:
    /// a packet stays small on the hot path, and most never have one.
    view: Option<Box<View>>,
}

/// What a packet made by [`Packet::without_tag`] has besides its frame.
#[derive(Clone)]
struct View {
    /// The message elements left out.
    cut: Cut,
    /// The frame without them, made the first time [`Packet::frame`] is
    /// asked for.
    whole: OnceLock<Bytes>,
}

/// The message elements a packet leaves out of its frame: `frame[from..to]`,
/// from the end of the destination string to the `,` before the first
/// element kept (or to the closing `]` if none is).
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// How many elements (the destination is not counted).
    elements: u32,
    /// Just past the destination's closing quote.
    from: u32,
    /// At the `,` before the first element kept, or at the `]`.
    to: u32,
}

/// Where the scanner found a frame's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DestSpan {
    /// `[]`: no destination.
    None,
    /// The string contents between the quotes at `start..end`.
    Quoted {
        start: usize,
        end: usize,
        /// The string contains escapes and must be decoded.
        escaped: bool,
    },
}

fn span_str(frame: &[u8], start: usize, end: usize) -> &str {
    // validated as UTF-8 by the scanner
    frame
        .get(start..end)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

#[derive(Clone)]
enum Dest {
    /// `[]`: a keepalive.
    None,
    /// The destination string appears unescaped at this byte range.
    Span(u32, u32),
    /// The destination had escapes; this is its decoded text.
    Owned(Box<str>),
}

impl Packet {
    /// Builds a packet from a frame the JSON scanner validated, with the
    /// destination it found.
    pub(crate) fn from_scanned(frame: Bytes, dest: DestSpan) -> Result<Packet, FrameError> {
        let dest = match dest {
            DestSpan::None => Dest::None,
            DestSpan::Quoted {
                start,
                end,
                escaped: false,
            } => match (u32::try_from(start), u32::try_from(end)) {
                (Ok(a), Ok(b)) => Dest::Span(a, b),
                _ => Dest::Owned(span_str(&frame, start, end).into()),
            },
            DestSpan::Quoted { start, end, .. } => {
                // rare: unescape the string, quotes included
                let quoted = frame
                    .get(start.saturating_sub(1)..end + 1)
                    .unwrap_or_default();
                let s: String = serde_json::from_slice(quoted)
                    .map_err(|e| FrameError::InvalidJson(e.to_string()))?;
                Dest::Owned(s.into_boxed_str())
            }
        };
        Ok(Packet::new(frame, dest))
    }

    /// The elements left out, for a packet made by [`Packet::without_tag`].
    fn cut(&self) -> Option<Cut> {
        self.view.as_ref().map(|v| v.cut)
    }

    fn new(frame: Bytes, dest: Dest) -> Packet {
        Packet {
            frame,
            dest,
            src: None,
            view: None,
        }
    }

    /// Wraps a frame this process just made with [`Packet::encode`] for
    /// `dest`, without validating it again.
    pub(crate) fn from_encoded(frame: Bytes, dest: &str) -> Packet {
        let end = 2 + dest.len();
        let unescaped = frame.get(..2) == Some(&b"[\""[..])
            && frame.get(2..end) == Some(dest.as_bytes())
            && frame.get(end) == Some(&b'"');
        let dest = match (unescaped, u32::try_from(end)) {
            (true, Ok(end)) => Dest::Span(2, end),
            _ => Dest::Owned(dest.into()),
        };
        Packet::new(frame, dest)
    }

    /// Whether this is the keepalive packet `[]`.
    pub fn is_keepalive(&self) -> bool {
        matches!(self.dest, Dest::None)
    }

    /// The destination port name, `None` for a keepalive.
    pub fn dest(&self) -> Option<&str> {
        match &self.dest {
            Dest::None => None,
            Dest::Span(a, b) => Some(span_str(&self.frame, *a as usize, *b as usize)),
            Dest::Owned(s) => Some(s),
        }
    }

    /// The raw JSON frame, destination included: `[dest, message…]`. For
    /// a packet made by [`Packet::without_tag`] it is the frame without the
    /// tag, made (once, a copy) when first asked for; the other methods
    /// read the original frame and skip the tag.
    pub fn frame(&self) -> &Bytes {
        match &self.view {
            None => &self.frame,
            Some(view) => view.whole.get_or_init(|| view.cut.apply(&self.frame)),
        }
    }

    /// The length of [`Packet::frame`], without making it.
    fn frame_len(&self) -> usize {
        match self.cut() {
            None => self.frame.len(),
            Some(cut) => cut.kept(&self.frame).iter().map(|s| s.len()).sum(),
        }
    }

    /// The original frame and how many leading elements of it (the
    /// destination included) are not part of the message.
    pub(crate) fn raw_parts(&self) -> (&[u8], usize) {
        let cut = self.cut().map_or(0, |c| c.elements as usize);
        (&self.frame, 1 + cut)
    }

    /// Decodes the message (the elements after the destination) into `T`,
    /// which must describe all of them: a tuple, a tuple struct, a struct
    /// (positional), or a `Vec`. Strings can be borrowed from the packet.
    ///
    /// Perl sends numbers that were once used as strings as JSON strings;
    /// use [`Lenient`](crate::wire::Lenient) for fields that may arrive
    /// either way.
    ///
    /// Values nested up to 512 levels (the framings' default
    /// limit, as Perl's JSON::XS) decode; serde_json alone stops at 128.
    pub fn decode<'de, T: Deserialize<'de>>(&'de self) -> Result<T, serde_json::Error> {
        let (frame, skip) = self.raw_parts();
        let mut de = serde_json::Deserializer::from_slice(frame);
        let body = Body::<T> {
            skip,
            marker: PhantomData,
        };
        let t = match de::DeserializeSeed::deserialize(body, &mut de) {
            Ok(t) => t,
            Err(e) => return decode_deep(frame, skip, e),
        };
        de.end()?;
        Ok(t)
    }

    /// The message elements as JSON values.
    ///
    /// A value tree takes many times the bytes of its text (a frame of
    /// `[]`s, three bytes each, becomes a 32-byte value and more per
    /// element): [`Packet::value_cost`] says how much, before decoding.
    pub fn values(&self) -> Result<Vec<Value>, serde_json::Error> {
        self.decode()
    }

    /// An upper estimate, in bytes, of the memory [`Packet::values`] takes
    /// for this packet: [`VALUE_COST`] per value, [`ENTRY_COST`] more per
    /// object entry, and the bytes of every string. One pass over the
    /// frame, nothing decoded; the node checks it against `max_packet`
    /// before it decodes a request of a peer into values.
    ///
    /// ```
    /// use aemp::wire::{Packet, VALUE_COST};
    /// let p = Packet::parse(bytes::Bytes::from_static(br#"["p",[],[],[]]"#)).unwrap();
    /// assert!(p.value_cost() >= 4 * VALUE_COST);
    /// ```
    pub fn value_cost(&self) -> usize {
        let frame = &self.frame[..];
        let (mut cost, mut i) = (VALUE_COST, 0);
        while let Some(&b) = frame.get(i) {
            match b {
                b'"' => {
                    let end = skip_string(frame, i).unwrap_or(frame.len());
                    cost = cost.saturating_add(end - i);
                    i = end;
                    continue;
                }
                b',' | b'[' | b'{' => cost = cost.saturating_add(VALUE_COST),
                b':' => cost = cost.saturating_add(ENTRY_COST),
                _ => {}
            }
            i += 1;
        }
        cost
    }

    /// Encodes `msg`, which must serialize to an array, as the frame
    /// `[dest, msg elements…]` at the end of `out`. On error `out` is left
    /// as it was.
    ///
    /// ```
    /// let mut out = bytes::BytesMut::new();
    /// aemp::wire::Packet::encode("sink", &("msg", 1, "x"), &mut out).unwrap();
    /// aemp::wire::Packet::encode("n", &(), &mut out).unwrap_err(); // () is not an array
    /// aemp::wire::Packet::encode("", &Vec::<u8>::new(), &mut out).unwrap();
    /// assert_eq!(&out[..], br#"["sink","msg",1,"x"][""]"#);
    /// ```
    pub fn encode<M: Serialize + ?Sized>(
        dest: &str,
        msg: &M,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        append_or_restore(out, |out, start| encode_inner(dest, msg, out, start))
    }

    /// Encodes a packet into a fresh buffer; see [`Packet::encode`].
    pub fn to_frame<M: Serialize + ?Sized>(dest: &str, msg: &M) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(64);
        Packet::encode(dest, msg, &mut out)?;
        Ok(out.freeze())
    }
}

impl Packet {
    /// The message's tag: its first element (after the destination) as
    /// the string Perl's `rcv` compares it as (MP.pm 417–420 looks the
    /// first element up in a hash, so it is stringified). Found by a
    /// small scan of the frame; nothing else is decoded.
    ///
    /// * a string is itself (unescaped if it has escapes);
    /// * a number is its text as written (integers are their decimal
    ///   digits, as Perl prints them: `5` matches the tag `"5"`; a
    ///   fraction or exponent is kept as written, where Perl would
    ///   normalise it);
    /// * `true`/`false` are `"1"`/`"0"` and `null` is `""`, as Perl's
    ///   booleans and `undef` stringify;
    /// * an array or object (a reference in Perl, stringified
    ///   `ARRAY(0x…)`, which matches no tag), an empty message and a
    ///   keepalive have no tag: `None`.
    ///
    /// Frames that arrived as storable or CBOR are JSON frames here too
    /// (they are transcoded on arrival), so this works for every framing.
    ///
    /// ```
    /// use aemp::wire::Packet;
    /// let p = |s: &'static str| Packet::parse(bytes::Bytes::from_static(s.as_bytes())).unwrap();
    /// assert_eq!(p(r#"["port","ping",1,2]"#).tag().as_deref(), Some("ping"));
    /// assert_eq!(p(r#"["port", 5 ,"x"]"#).tag().as_deref(), Some("5"));
    /// assert_eq!(p(r#"["port","a\u0062"]"#).tag().as_deref(), Some("ab"));
    /// assert_eq!(p(r#"["port",true]"#).tag().as_deref(), Some("1"));
    /// assert_eq!(p(r#"["port",[1],"x"]"#).tag(), None);
    /// assert_eq!(p(r#"["port"]"#).tag(), None);
    /// ```
    pub fn tag(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        let start = self.first_element()?;
        let end = skip_value(&self.frame, start)?;
        let text = self.frame.get(start..end)?;
        match text.first()? {
            b'"' => {
                let inner = text.get(1..text.len().checked_sub(1)?)?;
                if memchr::memchr(b'\\', inner).is_none() {
                    std::str::from_utf8(inner).ok().map(Cow::Borrowed)
                } else {
                    serde_json::from_slice::<String>(text).ok().map(Cow::Owned)
                }
            }
            b'[' | b'{' => None,
            b't' => Some(Cow::Borrowed("1")),
            b'f' => Some(Cow::Borrowed("0")),
            b'n' => Some(Cow::Borrowed("")),
            _ => std::str::from_utf8(text).ok().map(Cow::Borrowed),
        }
    }

    /// This packet without its tag (the message's first element): what
    /// Perl's `rcv` hands a tag callback (MP.pm 419). `None` if the
    /// message is empty.
    ///
    /// ```
    /// use aemp::wire::Packet;
    /// let p = Packet::parse(bytes::Bytes::from_static(br#"["port","add",1,2]"#)).unwrap();
    /// let rest = p.without_tag().unwrap();
    /// assert_eq!(rest.dest(), Some("port"));
    /// assert_eq!(rest.decode::<(i32, i32)>().unwrap(), (1, 2));
    /// assert_eq!(&rest.frame()[..], br#"["port",1,2]"#);
    /// ```
    ///
    /// It shares the frame: no bytes are copied. [`Packet::decode`],
    /// [`Packet::values`] and [`Packet::tag`] skip the tag as they read;
    /// only [`Packet::frame`] makes the shorter frame (and keeps it).
    pub fn without_tag(&self) -> Option<Packet> {
        let (from, start, elements) = match self.cut() {
            Some(cut) => (cut.from as usize, self.first_element()?, cut.elements),
            None => {
                let (from, start) = dest_span_end(&self.frame)?;
                (from, start?, 0)
            }
        };
        let end = skip_value(&self.frame, start)?;
        let to = skip_ws(&self.frame, end);
        let cut = match (u32::try_from(from), u32::try_from(to)) {
            (Ok(from), Ok(to)) => Cut {
                elements: elements.checked_add(1)?,
                from,
                to,
            },
            // beyond 4 GiB: no view, a copy
            _ => {
                let mut copy = self.clone();
                let frame = Cut::apply_at(&self.frame, from, to);
                copy.frame = frame;
                copy.view = None;
                return Some(copy);
            }
        };
        Some(Packet {
            frame: self.frame.clone(),
            dest: self.dest.clone(),
            src: self.src.clone(),
            view: Some(Box::new(View {
                cut,
                whole: OnceLock::new(),
            })),
        })
    }

    /// Where the message's first element starts in `frame` (past the
    /// cut), `None` if the message is empty or a keepalive.
    fn first_element(&self) -> Option<usize> {
        match self.cut() {
            None => dest_span_end(&self.frame)?.1,
            Some(cut) => {
                let to = cut.to as usize;
                match self.frame.get(to)? {
                    b',' => Some(skip_ws(&self.frame, to + 1)),
                    _ => None,
                }
            }
        }
    }
}

impl Cut {
    /// The parts of `frame` that make the frame without the cut elements.
    fn kept<'a>(&self, frame: &'a [u8]) -> [&'a [u8]; 2] {
        Cut::kept_at(frame, self.from as usize, self.to as usize)
    }

    fn kept_at(frame: &[u8], from: usize, to: usize) -> [&[u8]; 2] {
        let head = frame.get(..from).unwrap_or_default();
        match frame.get(to) {
            Some(b',') => [head, frame.get(to..).unwrap_or_default()],
            _ => [head, b"]"],
        }
    }

    /// The frame without the cut elements.
    fn apply(&self, frame: &[u8]) -> Bytes {
        Cut::apply_at(frame, self.from as usize, self.to as usize)
    }

    fn apply_at(frame: &[u8], from: usize, to: usize) -> Bytes {
        let [head, tail] = Cut::kept_at(frame, from, to);
        let mut out = BytesMut::with_capacity(head.len() + tail.len());
        out.extend_from_slice(head);
        out.extend_from_slice(tail);
        out.freeze()
    }
}

/// Skips JSON whitespace from `i`.
pub(crate) fn skip_ws(frame: &[u8], mut i: usize) -> usize {
    while frame.get(i).is_some_and(|b| is_ws(*b)) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the JSON value starting at `i` of a frame the
/// scanner validated (or built by [`Packet::encode`]).
pub(crate) fn skip_value(frame: &[u8], i: usize) -> Option<usize> {
    match *frame.get(i)? {
        b'"' => skip_string(frame, i),
        b'[' | b'{' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *frame.get(j)? {
                    b'"' => {
                        j = skip_string(frame, j)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(b) = frame.get(j) {
                if matches!(b, b',' | b']' | b'}') || is_ws(*b) {
                    break;
                }
                j += 1;
            }
            Some(j)
        }
    }
}

/// The end (exclusive, after the closing quote) of the string at `i`.
pub(crate) fn skip_string(frame: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', frame.get(j..)?)?;
        if frame.get(k) == Some(&b'"') {
            return Some(k + 1);
        }
        j = k + 2;
    }
}

/// The end of the destination string (after its closing quote) and
/// where the next element starts, if there is one (past the comma).
fn dest_span_end(frame: &[u8]) -> Option<(usize, Option<usize>)> {
    let open = skip_ws(frame, 0);
    if frame.get(open) != Some(&b'[') {
        return None;
    }
    let dest = skip_ws(frame, open + 1);
    if frame.get(dest) != Some(&b'"') {
        return None;
    }
    let end = skip_string(frame, dest)?;
    let next = skip_ws(frame, end);
    match frame.get(next)? {
        b',' => Some((end, Some(skip_ws(frame, next + 1)))),
        _ => Some((end, None)),
    }
}

/// Appends to `out` with `write`, which gets `out` and the length it had
/// before; on error `out` is truncated back to that length (the framings'
/// encoders append nothing on error).
#[inline]
pub(crate) fn append_or_restore<E>(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut, usize) -> Result<(), E>,
) -> Result<(), EncodeError>
where
    EncodeError: From<E>,
{
    let start = out.len();
    let result = write(out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result.map_err(EncodeError::from)
}

/// A message as the list of its values (what follows the destination in
/// a packet): the elements of whatever serializes to an array. As for
/// [`Packet::encode`] and every framing, `()` (JSON `null`) is not a
/// message: spawn arguments, `cal` and `mon_snd` messages follow the same
/// rule as `snd`; the empty list is `&[(); 0]` (or `json!([])`).
pub(crate) fn message_values<M: Serialize + ?Sized>(msg: &M) -> Result<Vec<Value>, EncodeError> {
    match serde_json::to_value(msg)? {
        Value::Array(a) => Ok(a),
        _ => Err(EncodeError::NotAnArray),
    }
}

fn encode_inner<M: Serialize + ?Sized>(
    dest: &str,
    msg: &M,
    out: &mut BytesMut,
    start: usize,
) -> Result<(), EncodeError> {
    out.put_u8(b'[');
    serde_json::to_writer(out.writer(), dest)?;
    let body = out.len();
    serde_json::to_writer(out.writer(), msg)?;
    // the compact formatter writes an array as `[` … `]` without spaces
    if out.get(body) != Some(&b'[') || out.last() != Some(&b']') {
        return Err(EncodeError::NotAnArray);
    }
    if out.len() == body + 2 {
        out.truncate(body);
        out.put_u8(b']');
    } else {
        out[body] = b',';
    }
    debug_assert!(out.len() > start);
    Ok(())
}

impl Packet {
    /// The id of the node whose connection delivered this message — the
    /// immediate peer, not the originator of a relayed `snd` — or this
    /// node's own id for a local send: the reference's `$SRCNODE`
    /// (Kernel.pm 167, Transport.pm 333/344, Node.pm 216/236). `None` for
    /// a packet the node has not delivered (one made by [`Packet::parse`]).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (port, mut rx) = node.port_channel();
    /// node.snd(&port, &("hi",)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().src_node(), Some("n"));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn src_node(&self) -> Option<&str> {
        self.src.as_deref()
    }

    /// The source node, shared.
    pub(crate) fn src_shared(&self) -> Option<Arc<str>> {
        self.src.clone()
    }

    /// Marks the packet as delivered by node `src`.
    pub(crate) fn set_src(&mut self, src: Arc<str>) {
        self.src = Some(src);
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the payload stays out of logs; only its size and destination show
        f.debug_struct("Packet")
            .field("dest", &self.dest())
            .field("bytes", &self.frame_len())
            .finish()
    }
}

impl PartialEq for Packet {
    fn eq(&self, other: &Packet) -> bool {
        match (&self.view, &other.view) {
            (None, None) => self.frame == other.frame,
            _ => self.frame() == other.frame(),
        }
    }
}

pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The message part of a frame: skips the destination (and the elements
/// a [`Cut`] leaves out: `skip` in all), hands the rest of the array to
/// `T`.
struct Body<T> {
    skip: usize,
    marker: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> de::DeserializeSeed<'de> for Body<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_seq(self)
    }
}

/// [`Packet::decode`] failed with `error`: if `frame` is nested deeper
/// than serde_json's own limit of 128 but within the framings' 512 (its limit guards
/// the stack, which 512 levels do not strain), decodes it again without
/// that limit. Rare, and off the hot path.
#[cold]
#[inline(never)]
fn decode_deep<'de, T: Deserialize<'de>>(
    frame: &'de [u8],
    skip: usize,
    error: serde_json::Error,
) -> Result<T, serde_json::Error> {
    // the framings' own scan says whether it is within their depth
    let within = Packet::parse(Bytes::copy_from_slice(frame)).is_ok();
    if !error.is_syntax() || !within {
        return Err(error);
    }
    let mut de = serde_json::Deserializer::from_slice(frame);
    de.disable_recursion_limit();
    let t = de::DeserializeSeed::deserialize(
        Body::<T> {
            skip,
            marker: PhantomData,
        },
        &mut de,
    )
    .map_err(|_| error)?;
    de.end()?;
    Ok(t)
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Body<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a packet array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        for _ in 0..self.skip {
            seq.next_element::<IgnoredAny>()?;
        }
        T::deserialize(de::value::SeqAccessDeserializer::new(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<Packet, FrameError> {
        Packet::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn destinations() {
        assert!(parse("[]").unwrap().is_keepalive());
        assert!(parse(" [ ] ").unwrap().is_keepalive());
        assert_eq!(parse(r#"[""]"#).unwrap().dest(), Some(""));
        assert_eq!(parse(r#"["a\u0062c",1]"#).unwrap().dest(), Some("abc"));
        assert_eq!(parse(r#"["a\"b",1]"#).unwrap().dest(), Some("a\"b"));
        assert_eq!(parse(r#"["ü#x"]"#).unwrap().dest(), Some("ü#x"));
    }

    #[test]
    fn values_nested_as_deep_as_the_framings_allow_decode() {
        let nested = |levels: usize| {
            let text = format!(r#"["d",{}1{}]"#, "[".repeat(levels), "]".repeat(levels));
            parse(&text)
        };
        // the top array is one level: 511 more make the framings' 512
        let deep = nested(511).unwrap();
        // in little stack: 512 levels are far from straining a thread's
        let values = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || deep.values().map(|v| v.len()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(values.unwrap(), 1);
        assert_eq!(nested(512).unwrap_err(), FrameError::TooDeep { limit: 512 });
        // past serde_json's own 128
        assert_eq!(nested(200).unwrap().values().unwrap().len(), 1);
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(r#"{"a":1}"#), Err(FrameError::NotAnArray));
        assert_eq!(parse("5"), Err(FrameError::NotAnArray));
        assert_eq!(parse(r#"[5,"x"]"#), Err(FrameError::DestNotString));
        assert_eq!(parse(r#"[[1],"x"]"#), Err(FrameError::DestNotString));
        assert_eq!(parse(r#"[null]"#), Err(FrameError::DestNotString));
        assert!(matches!(
            parse(r#"["a",1}"#),
            Err(FrameError::InvalidJson(_))
        ));
        assert!(matches!(
            parse(r#"["a",tru]"#),
            Err(FrameError::InvalidJson(_))
        ));
        assert!(matches!(
            parse("[\"a\",\"\u{1}\"]"),
            Err(FrameError::InvalidJson(_))
        ));
        assert!(matches!(
            Packet::parse(Bytes::from_static(b"[\"a\",\"\xff\"]")),
            Err(FrameError::InvalidJson(_))
        ));
    }

    #[test]
    fn decode_body() {
        let p = parse(r#"["sink","msg",1,"payload"]"#).unwrap();
        let (t, n, s): (&str, u64, &str) = p.decode().unwrap();
        assert_eq!((t, n, s), ("msg", 1, "payload"));
        assert_eq!(
            p.values().unwrap(),
            vec![json!("msg"), json!(1), json!("payload")]
        );
        // too few or too many fields are errors
        assert!(p.decode::<(String, u64)>().is_err());
        assert!(p.decode::<(String, u64, String, u8)>().is_err());
        assert_eq!(
            parse(r#"["x"]"#).unwrap().values().unwrap(),
            Vec::<Value>::new()
        );
    }

    #[test]
    fn tags() {
        let tag = |s: &str| parse(s).unwrap().tag().map(|t| t.into_owned());
        assert_eq!(tag(r#"["p","a"]"#).as_deref(), Some("a"));
        assert_eq!(tag(r#" [ "p" , "a" , 1 ] "#).as_deref(), Some("a"));
        assert_eq!(tag(r#"["p\"q","a\"b",1]"#).as_deref(), Some("a\"b"));
        assert_eq!(tag(r#"["p",-12,1]"#).as_deref(), Some("-12"));
        assert_eq!(tag(r#"["p",1.5]"#).as_deref(), Some("1.5"));
        assert_eq!(tag(r#"["p",false]"#).as_deref(), Some("0"));
        assert_eq!(tag(r#"["p",null,2]"#).as_deref(), Some(""));
        assert_eq!(tag(r#"["p",{"a":"]"},2]"#), None);
        assert_eq!(tag(r#"["p"]"#), None);
        assert_eq!(tag("[]"), None);
        let rest = |s: &str| {
            parse(s)
                .unwrap()
                .without_tag()
                .map(|p| String::from_utf8(p.frame().to_vec()).unwrap())
        };
        assert_eq!(rest(r#"["p","a"]"#).as_deref(), Some(r#"["p"]"#));
        assert_eq!(rest(r#"["p",[1,"]"],2]"#).as_deref(), Some(r#"["p",2]"#));
        assert_eq!(
            rest(r#"[ "p" , "a" , 3 ]"#).as_deref(),
            Some(r#"[ "p", 3 ]"#)
        );
        assert_eq!(rest(r#"["p\"","a\\",3]"#).as_deref(), Some(r#"["p\"",3]"#));
        assert_eq!(rest(r#"["p"]"#), None);
        let p = parse(r#"["p\"","a",3]"#).unwrap().without_tag().unwrap();
        assert_eq!(p.dest(), Some("p\""));
        assert_eq!(p.values().unwrap(), vec![json!(3)]);
    }

    #[test]
    fn without_tag_is_a_view() {
        let mut p = parse(r#"[ "p" , "a" , {"x":[1]} , "b\"" , 3 ]"#).unwrap();
        p.set_src(Arc::from("peer"));
        let one = p.without_tag().unwrap();
        // the same frame, not a copy
        assert_eq!(one.frame.as_ptr(), p.frame.as_ptr());
        assert!(one.view.as_ref().is_some_and(|v| v.whole.get().is_none()));
        assert_eq!(one.tag(), None); // an object
        assert_eq!(one.src_node(), Some("peer"));
        assert_eq!(one.dest(), Some("p"));
        assert_eq!(
            one.values().unwrap(),
            vec![json!({"x": [1]}), json!("b\""), json!(3)]
        );
        let two = one.without_tag().unwrap();
        assert_eq!(two.tag().as_deref(), Some("b\""));
        let (s, n): (String, u8) = two.decode().unwrap();
        assert_eq!((s.as_str(), n), ("b\"", 3));
        let three = two.without_tag().unwrap();
        assert_eq!(three.tag().as_deref(), Some("3"));
        assert_eq!(three.values().unwrap(), vec![json!(3)]);
        let four = three.without_tag().unwrap();
        assert_eq!(four.tag(), None);
        assert_eq!(four.values().unwrap(), Vec::<Value>::new());
        assert!(four.without_tag().is_none());
        // Debug shows the size of the frame without the tags, before it is made
        assert_eq!(
            format!("{two:?}"),
            r#"Packet { dest: Some("p"), bytes: 18 }"#
        );
        assert!(two.view.as_ref().is_some_and(|v| v.whole.get().is_none()));
        for (view, frame) in [
            (&one, r#"[ "p", {"x":[1]} , "b\"" , 3 ]"#),
            (&two, r#"[ "p", "b\"" , 3 ]"#),
            (&two.clone(), r#"[ "p", "b\"" , 3 ]"#),
            (&three, r#"[ "p", 3 ]"#),
            (&four, r#"[ "p"]"#),
        ] {
            assert_eq!(view.frame(), frame.as_bytes());
            assert_eq!(view.frame_len(), frame.len());
            assert_eq!(view, &parse(frame).unwrap());
            assert_eq!(&parse(frame).unwrap(), view);
        }
        assert_ne!(&one, &p);
        // a view of a frame whose tag was the last element
        let last = parse(r#"["p","a"]"#).unwrap().without_tag().unwrap();
        assert_eq!(last.values().unwrap(), Vec::<Value>::new());
        assert_eq!(
            format!("{last:?}"),
            r#"Packet { dest: Some("p"), bytes: 5 }"#
        );
        assert!(parse("[]").unwrap().without_tag().is_none());
    }

    #[test]
    fn encode_shapes() {
        let f = Packet::to_frame("p", &json!(["a", {"k": [1, 2]}, null])).unwrap();
        assert_eq!(&f[..], br#"["p","a",{"k":[1,2]},null]"#);
        let f = Packet::to_frame("p", &Vec::<i32>::new()).unwrap();
        assert_eq!(&f[..], br#"["p"]"#);
        assert!(matches!(
            Packet::to_frame("p", &json!({"a": 1})),
            Err(EncodeError::NotAnArray)
        ));
        assert!(matches!(
            Packet::to_frame("p", &"s"),
            Err(EncodeError::NotAnArray)
        ));
        for dest in ["plain", "q\"", "ü"] {
            let f = Packet::to_frame(dest, &("x",)).unwrap();
            assert_eq!(Packet::from_encoded(f.clone(), dest).dest(), Some(dest));
            assert_eq!(Packet::parse(f).unwrap().dest(), Some(dest));
        }
        let f = Packet::to_frame("q\"", &("x",)).unwrap();
        assert_eq!(
            parse(std::str::from_utf8(&f).unwrap()).unwrap().dest(),
            Some("q\"")
        );
    }
}

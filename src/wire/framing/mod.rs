//! Packet framings and their choice.
//!
//! Each side picks the framing it *sends* from the peer's list (the first
//! one it supports) and must decode whatever the peer picked from ours.
//! All framings map onto one data model: JSON frames ([`Packet`]).

mod cbor;
mod json;
mod json_string;
mod serializer;
mod storable;

use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use serde::Serialize;
use tokio_util::codec::Decoder;

pub use cbor::{CborCodec, MAX_BIGNUM};
pub use json::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_PACKET, JsonCodec};
pub use storable::{BACKREF_ALLOWANCE, MAX_BACKREF_FACTOR, StorableCodec};

use crate::wire::error::{EncodeError, FrameError};
use crate::wire::packet::Packet;

/// A packet framing aemp can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// `json`: JSON arrays back to back.
    Json,
    /// `storable`: Perl Storable network-order images with a BER length
    /// prefix (see [`StorableCodec`]).
    Storable,
    /// `cbor`: CBOR arrays back to back (AnyEvent::Handle's `cbor` type).
    Cbor,
}

impl Framing {
    /// Every framing aemp supports, in its default preference order.
    pub const ALL: [Framing; 3] = [Framing::Json, Framing::Storable, Framing::Cbor];

    /// The framings a node offers unless configured otherwise: those of
    /// the reference's default `framing_format` (`json`, `storable`) that
    /// aemp speaks. As in Perl, `cbor` is only used when a configuration
    /// lists it.
    pub const DEFAULT: [Framing; 2] = [Framing::Json, Framing::Storable];

    /// The name used in greetings and auth lines.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Json => "json",
            Framing::Storable => "storable",
            Framing::Cbor => "cbor",
        }
    }

    /// The framing with this name.
    pub fn from_name(name: &str) -> Option<Framing> {
        Framing::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Encodes the packet `[dest, msg elements…]` in this framing at the
    /// end of `out` (nothing is appended on error). `msg` must serialize
    /// to an array (for `storable`, `()` is also the empty message).
    pub fn encode_packet<M: Serialize + ?Sized>(
        self,
        dest: &str,
        msg: &M,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self {
            Framing::Json => Packet::encode(dest, msg, out),
            Framing::Storable => storable::encode_packet(dest, msg, out),
            Framing::Cbor => cbor::encode_packet(dest, msg, out),
        }
    }

    /// Re-encodes a JSON frame (from [`Packet::encode`]) in this framing at
    /// the end of `out` (nothing is appended on error; object key order is
    /// kept).
    pub fn encode_frame(self, json_frame: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Framing::Json => {
                out.extend_from_slice(json_frame);
                Ok(())
            }
            Framing::Storable => storable::encode_frame(json_frame, out),
            Framing::Cbor => cbor::encode_frame(json_frame, out),
        }
    }

    /// A codec for this framing with the given packet size and nesting
    /// limits.
    pub fn codec(self, max_packet: usize, max_depth: usize) -> Codec {
        match self {
            Framing::Json => Codec::Json(JsonCodec::new(max_packet, max_depth)),
            Framing::Storable => Codec::Storable(StorableCodec::new(max_packet, max_depth)),
            Framing::Cbor => Codec::Cbor(CborCodec::new(max_packet, max_depth)),
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Framing::from_name(s).ok_or_else(|| format!("unsupported framing '{s}'"))
    }
}

/// Chooses the framing we send: the first of the peer's list that is in
/// ours.
///
/// ```
/// use aemp::wire::{select_framing, Framing};
/// let theirs = ["storable".to_string(), "json".to_string()];
/// assert_eq!(select_framing(&theirs, &[Framing::Json]), Some(Framing::Json));
/// assert_eq!(select_framing(&theirs, &Framing::ALL), Some(Framing::Storable));
/// assert_eq!(select_framing(&theirs[..1], &[Framing::Json]), None);
/// ```
pub fn select_framing(remote: &[String], ours: &[Framing]) -> Option<Framing> {
    remote
        .iter()
        .filter_map(|name| Framing::from_name(name))
        .find(|f| ours.contains(f))
}

/// A decoder for one of the framings.
#[derive(Debug, Clone)]
pub enum Codec {
    /// The `json` framing.
    Json(JsonCodec),
    /// The `storable` framing.
    Storable(StorableCodec),
    /// The `cbor` framing.
    Cbor(CborCodec),
}

impl Decoder for Codec {
    type Item = Packet;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        match self {
            Codec::Json(c) => c.decode(buf),
            Codec::Storable(c) => c.decode(buf),
            Codec::Cbor(c) => c.decode(buf),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        match self {
            Codec::Json(c) => c.decode_eof(buf),
            Codec::Storable(c) => c.decode_eof(buf),
            Codec::Cbor(c) => c.decode_eof(buf),
        }
    }
}

/// What the framings' decoders share: errors are final (a decoder's state
/// is not resumable after one, so every later call returns the same
/// error), and a stream may end only between frames.
trait FramingDecoder {
    /// The error that ended the stream, if any.
    fn failed(&mut self) -> &mut Option<FrameError>;

    /// Decodes the next packet, if `buf` completes one.
    fn decode_next(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError>;

    /// Whether a frame is under way (in the decoder or in what is left of
    /// `buf`) after [`decode_next`](Self::decode_next) returned `None`.
    fn mid_frame(&self, buf: &BytesMut) -> bool;

    /// [`decode_next`](Self::decode_next), with errors made final.
    #[inline]
    fn decode_final(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        if let Some(e) = self.failed() {
            return Err(e.clone());
        }
        let result = self.decode_next(buf);
        if let Err(e) = &result {
            *self.failed() = Some(e.clone());
        }
        result
    }

    /// [`decode_final`](Self::decode_final) at the end of the stream:
    /// a frame under way is [`FrameError::Truncated`].
    fn decode_eof_final(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        match self.decode_final(buf)? {
            Some(p) => Ok(Some(p)),
            None if self.mid_frame(buf) => Err(FrameError::Truncated),
            None => Ok(None),
        }
    }
}

/// Implements [`Decoder`] for framing codecs through their
/// [`FramingDecoder`] impls.
macro_rules! framing_decoders {
    ($($codec:ty),+) => {$(
        impl Decoder for $codec {
            type Item = Packet;
            type Error = FrameError;

            /// Errors are final: every later call returns the same error.
            #[inline]
            fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
                self.decode_final(buf)
            }

            /// As [`decode`](Self::decode); bytes of an unfinished frame
            /// left at the end of the stream are
            /// [`FrameError::Truncated`].
            fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
                self.decode_eof_final(buf)
            }
        }
    )+};
}

framing_decoders!(JsonCodec, StorableCodec, CborCodec);

/// Test helpers shared by the framings' unit tests.
#[cfg(test)]
mod test_support {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use crate::wire::error::FrameError;
    use crate::wire::packet::Packet;

    /// Every packet `buf` completes.
    fn decode_all<C: Decoder<Item = Packet, Error = FrameError>>(
        codec: &mut C,
        buf: &mut BytesMut,
    ) -> Result<Vec<Packet>, FrameError> {
        let mut out = Vec::new();
        while let Some(p) = codec.decode(buf)? {
            out.push(p);
        }
        Ok(out)
    }

    /// Decodes `stream` whole, split in two at every offset, and byte by
    /// byte, asserting the same packets each way; returns them and the
    /// codec that had it byte by byte (with nothing left over).
    pub(crate) fn same_packets_at_every_split<C>(stream: &[u8]) -> (Vec<Packet>, C)
    where
        C: Decoder<Item = Packet, Error = FrameError> + Default,
    {
        let whole = decode_all(&mut C::default(), &mut BytesMut::from(stream)).unwrap();
        for i in 0..=stream.len() {
            let mut codec = C::default();
            let mut buf = BytesMut::from(&stream[..i]);
            let mut got = decode_all(&mut codec, &mut buf).unwrap();
            buf.extend_from_slice(&stream[i..]);
            got.extend(decode_all(&mut codec, &mut buf).unwrap());
            assert_eq!(got, whole, "split at {i}");
        }
        let mut codec = C::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in stream {
            buf.extend_from_slice(&[*b]);
            got.extend(decode_all(&mut codec, &mut buf).unwrap());
        }
        assert_eq!(got, whole);
        assert!(buf.is_empty());
        (whole, codec)
    }
}

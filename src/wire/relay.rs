//! Relayed messages read straight from their frame.
//!
//! A node-port request `["", "snd", port, @msg]` (or `snd_multiple` with
//! `[port, @msg]` entries) asks this node to pass `@msg` on. Decoding the
//! message into a value tree only to encode it again costs time, and
//! memory many times the frame's size (a 64 MiB frame of `[]`s is some
//! 20 million values); [`RawRelay::read`] finds each relayed message's
//! bytes in the frame instead, and [`RawRelay::frame`] makes the packet
//! `[name, @msg]` from them with one copy. The frames come from the
//! framings' validating decoders, so what is copied is valid JSON.
//!
//! Requests this reader does not take (a port that is a number or not
//! there, an entry that is not `[port, …]`, a tag written with escapes,
//! and any frame with a `\u` escape of a surrogate, which the receiver's
//! decoder must see paired or refuse) go the decoded way, with its error
//! messages; so does everything in a [`Packet`] whose leading elements
//! were cut off.

use bytes::{BufMut, Bytes, BytesMut};

use super::packet::{Packet, skip_string, skip_value, skip_ws};

/// One message a `snd` or `snd_multiple` request relays.
///
/// ```
/// use aemp::wire::{Packet, RawRelay};
/// let p = Packet::parse(bytes::Bytes::from_static(
///     br#"["","snd_multiple",["a#x",1,[2]],["b#y"]]"#,
/// ))
/// .unwrap();
/// let relays = RawRelay::read(&p).unwrap();
/// assert_eq!(relays[0].port(), "a#x");
/// assert_eq!(&relays[0].frame("x")[..], br#"["x",1,[2]]"#);
/// assert_eq!(&relays[1].frame("y")[..], br#"["y"]"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRelay {
    /// The destination port id, `node#name`.
    port: String,
    /// The message elements with the `,` before each and the closing `]`.
    tail: Bytes,
}

impl RawRelay {
    /// The relays of a `snd` or `snd_multiple` request, or `None` if the
    /// packet is not such a request or needs decoding (see the module
    /// documentation).
    pub fn read(packet: &Packet) -> Option<Vec<RawRelay>> {
        // a packet without a cut: its frame is the one it came in
        if packet.raw_parts().1 != 1 || packet.dest() != Some("") {
            return None;
        }
        let whole = packet.frame();
        let frame = &whole[..];
        let surrogate = memchr::memmem::find_iter(frame, b"\\u")
            .any(|i| matches!(frame.get(i + 2), Some(b'd' | b'D')));
        if surrogate {
            return None;
        }
        // past `[`, the destination and its comma
        let open = skip_ws(frame, 0);
        let dest_end = skip_string(frame, skip_ws(frame, open + 1))?;
        let comma = skip_ws(frame, dest_end);
        if frame.get(comma) != Some(&b',') {
            return None;
        }
        let tag_start = skip_ws(frame, comma + 1);
        let tag_end = skip_string(frame, tag_start)?;
        let next = skip_ws(frame, tag_end);
        match frame.get(tag_start + 1..tag_end - 1)? {
            b"snd" => {
                if frame.get(next) != Some(&b',') {
                    return None;
                }
                let (port, after) = port_at(frame, skip_ws(frame, next + 1))?;
                // the rest of the frame: `, @msg]`
                Some(vec![RawRelay {
                    port,
                    tail: whole.slice(after..frame.len()),
                }])
            }
            b"snd_multiple" => {
                let mut relays = Vec::new();
                let mut i = next;
                while frame.get(i) == Some(&b',') {
                    let start = skip_ws(frame, i + 1);
                    if frame.get(start) != Some(&b'[') {
                        return None;
                    }
                    let end = skip_value(frame, start)?;
                    let (port, after) = port_at(frame, skip_ws(frame, start + 1))?;
                    relays.push(RawRelay {
                        port,
                        tail: whole.slice(after..end),
                    });
                    i = skip_ws(frame, end);
                }
                Some(relays)
            }
            _ => None,
        }
    }

    /// The destination port id, `node#name`.
    pub fn port(&self) -> &str {
        &self.port
    }

    /// The packet `[name, @msg]`: the message for port `name` of the
    /// destination node.
    pub fn frame(&self, name: &str) -> Bytes {
        let mut out = BytesMut::with_capacity(name.len() + 4 + self.tail.len());
        out.put_u8(b'[');
        // a string always serializes
        if serde_json::to_writer((&mut out).writer(), name).is_err() {
            out.truncate(1);
            out.put_slice(b"\"\"");
        }
        out.put_slice(&self.tail);
        out.freeze()
    }
}

/// The port string at `i` and where what follows it starts (its `,` or
/// the entry's `]`); `None` if it is not a string so followed.
fn port_at(frame: &[u8], i: usize) -> Option<(String, usize)> {
    if frame.get(i) != Some(&b'"') {
        return None;
    }
    let end = skip_string(frame, i)?;
    let quoted = frame.get(i..end)?;
    let port = if memchr::memchr(b'\\', quoted).is_some() {
        serde_json::from_slice(quoted).ok()?
    } else {
        std::str::from_utf8(quoted.get(1..quoted.len() - 1)?)
            .ok()?
            .to_owned()
    };
    let after = skip_ws(frame, end);
    matches!(frame.get(after), Some(b',' | b']')).then_some((port, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(text: &str) -> Packet {
        Packet::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap()
    }

    fn read(text: &str) -> Option<Vec<(String, String)>> {
        RawRelay::read(&packet(text)).map(|rs| {
            rs.iter()
                .map(|r| {
                    let f = r.frame("n");
                    (r.port().to_owned(), String::from_utf8(f.to_vec()).unwrap())
                })
                .collect()
        })
    }

    fn one(port: &str, frame: &str) -> Option<Vec<(String, String)>> {
        Some(vec![(port.to_owned(), frame.to_owned())])
    }

    #[test]
    fn snd_takes_the_rest_of_the_frame() {
        assert_eq!(
            read(r#"["","snd","a#b",1,{"k":[2]}]"#),
            one("a#b", r#"["n",1,{"k":[2]}]"#)
        );
        assert_eq!(
            read(r#" [ "" , "snd" , "a#b" , 1 ] "#.trim()),
            one("a#b", r#"["n", 1 ]"#)
        );
        assert_eq!(read(r#"["","snd","a#b"]"#), one("a#b", r#"["n"]"#));
        assert_eq!(
            read(r##"["","snd","a\"#b","x\\"]"##),
            one("a\"#b", r#"["n","x\\"]"#)
        );
        let wide = "\u{e9}\u{1F600}";
        assert_eq!(
            read(&format!(r#"["","snd","{wide}","{wide}"]"#)),
            one(wide, &format!(r#"["n","{wide}"]"#))
        );
    }

    #[test]
    fn snd_multiple_takes_each_entry() {
        assert_eq!(
            read(r#"["","snd_multiple",["a#b",1],[ "c#d" ],["e#f","]",[]]]"#),
            Some(vec![
                ("a#b".into(), r#"["n",1]"#.into()),
                ("c#d".into(), r#"["n"]"#.into()),
                ("e#f".into(), r#"["n","]",[]]"#.into()),
            ])
        );
        assert_eq!(read(r#"["","snd_multiple"]"#), Some(vec![]));
    }

    #[test]
    fn what_needs_decoding_is_left_alone() {
        for text in [
            r#"["","snd"]"#,
            r#"["","snd",5,1]"#,
            r#"["","snd",["a#b"],1]"#,
            r#"["","snd","a#b","\ud800"]"#,
            r#"["","snd","a#b","\uDE00"]"#,
            r#"["","sn\u0064","a#b",1]"#,
            r#"["","snd_multiple",["a#b"],5]"#,
            r#"["","snd_multiple",[]]"#,
            r#"["","snd_multiple",[1,2]]"#,
            r#"["","kil","a#b"]"#,
            r#"["",1]"#,
            r#"[""]"#,
            r#"["x","snd","a#b"]"#,
            r#"[]"#,
        ] {
            assert_eq!(read(text), None, "{text}");
        }
    }

    #[test]
    fn a_tagless_view_is_left_alone() {
        let p = packet(r#"["","snd","a#b",1]"#).without_tag().unwrap();
        assert_eq!(RawRelay::read(&p), None);
    }

    #[test]
    fn names_are_escaped() {
        let r = RawRelay::read(&packet(r#"["","snd","a#b",1]"#)).unwrap();
        assert_eq!(&r[0].frame("q\"")[..], br#"["q\"",1]"#);
    }
}

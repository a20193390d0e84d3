//! The `storable` framing: real Perl packets (d-storable transcript and
//! `nfreeze` fixtures, see tests/fixtures/storable/README.md) decode to the
//! JSON Perl's own `thaw` gives and re-encode byte for byte; every
//! rejection has its typed error; random input never panics; two aemp
//! nodes talk storable (and storable one way, json the other).

mod common;

use aemp::wire::{
    BACKREF_ALLOWANCE, FrameError, Framing, MAX_BACKREF_FACTOR, Packet, StorableCodec,
    StorableError,
};
use bytes::BytesMut;
use proptest::prelude::*;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use tokio_util::codec::Decoder;

const D_STORABLE: &str = include_str!("fixtures/storable/d-storable.txt");
const CASES: &str = include_str!("fixtures/storable/cases.txt");

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// A storable image with its BER length prefix.
fn framed(image: &[u8]) -> Vec<u8> {
    let mut len = image.len();
    let mut ber = vec![(len & 0x7f) as u8];
    len >>= 7;
    while len > 0 {
        ber.insert(0, (len & 0x7f) as u8 | 0x80);
        len >>= 7;
    }
    [ber, image.to_vec()].concat()
}

fn decode_with(codec: &mut StorableCodec, frame: &[u8]) -> Result<Packet, FrameError> {
    let mut buf = BytesMut::from(frame);
    let p = codec.decode(&mut buf)?.ok_or(FrameError::Truncated)?;
    assert!(buf.is_empty(), "the whole frame is consumed");
    Ok(p)
}

fn decode(frame: &[u8]) -> Result<Packet, FrameError> {
    decode_with(&mut StorableCodec::default(), frame)
}

/// The decoded packet as one JSON value (destination included).
fn value(p: &Packet) -> Value {
    serde_json::from_slice(p.frame()).expect("the decoder writes valid JSON")
}

fn reencode(p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    Framing::Storable.encode_frame(p.frame(), &mut out).unwrap();
    out.to_vec()
}

fn image_err(image: &str) -> FrameError {
    decode(&framed(&hex(image))).unwrap_err()
}

fn image_ok(image: &str) -> Value {
    value(&decode(&framed(&hex(image))).unwrap())
}

/// `(direction, frame, JSON from Perl's thaw)` of every packet of
/// d-storable.txt after the handshake lines.
fn transcript_packets() -> Vec<(String, Vec<u8>, Value)> {
    D_STORABLE
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                hex(f[1]),
                serde_json::from_str(f[2]).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_transcript_packet_decodes_and_reencodes_byte_exactly() {
    let packets = transcript_packets();
    assert_eq!(packets.len(), 20);
    for (dir, frame, want) in &packets {
        let p = decode(frame).unwrap();
        assert_eq!(&value(&p), want, "{dir} {}", hex::encode(frame));
        assert_eq!(p.dest(), want[0].as_str());
        assert_eq!(&reencode(&p), frame, "{dir} {want}");
    }
    // the message with every kind of value perlA sent
    let (_, _, msg) = packets.iter().find(|(_, _, v)| v[1] == "hello").unwrap();
    assert_eq!(
        msg,
        &json!(["inbox", "hello", 42, -7, "3.5", null, [1, "two", [3]], {"k": "v"}, "ü€"])
    );
    let (_, _, bin) = packets.iter().find(|(_, _, v)| v[1] == "bin").unwrap();
    assert_eq!(
        bin,
        &json!([
            "inbox",
            "bin",
            "\u{0}\u{1}\u{fe}\u{ff}",
            "1099511627776",
            "0.1",
            ""
        ])
    );
}

#[test]
fn a_stream_split_anywhere_gives_the_same_packets() {
    for dir in [">", "<"] {
        let packets: Vec<_> = transcript_packets()
            .into_iter()
            .filter(|(d, _, _)| d == dir)
            .collect();
        let stream: Vec<u8> = packets.iter().flat_map(|(_, f, _)| f.clone()).collect();
        let want: Vec<Value> = packets.iter().map(|(_, _, v)| v.clone()).collect();
        for split in [1, 2, 3, 7, 64, 1000] {
            let mut codec = StorableCodec::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(split) {
                buf.extend_from_slice(chunk);
                while let Some(p) = codec.decode(&mut buf).unwrap() {
                    got.push(value(&p));
                }
            }
            assert!(buf.is_empty());
            assert_eq!(codec.decode_eof(&mut buf), Ok(None));
            assert_eq!(got, want, "chunks of {split}");
        }
    }
}

/// `(name, exact, frame, JSON from Perl's thaw)` of cases.txt.
fn perl_cases() -> Vec<(String, bool, Vec<u8>, Value)> {
    CASES
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1] == "1",
                hex(f[2]),
                serde_json::from_str(f[3]).unwrap(),
            )
        })
        .collect()
}

fn case(name: &str) -> Vec<u8> {
    perl_cases()
        .into_iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .2
}

#[test]
fn perl_nfreeze_cases_decode_like_thaw_and_reencode() {
    let cases = perl_cases();
    assert!(cases.len() >= 19);
    for (name, exact, frame, want) in &cases {
        let p = decode(frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&value(&p), want, "{name}");
        let again = reencode(&p);
        if *exact {
            assert_eq!(hex::encode(&again), hex::encode(frame), "{name}");
        } else {
            // back-references and holes are written out in full
            assert_ne!(&again, frame, "{name}");
            assert_eq!(&value(&decode(&again).unwrap()), want, "{name}");
        }
    }
}

#[test]
fn what_the_cases_check() {
    let v = |name: &str| value(&decode(&case(name)).unwrap());
    assert_eq!(
        v("booleans"),
        json!(["b", true, false, true, false, [true, {"k": false}]])
    );
    assert_eq!(
        v("shared_refs"),
        json!(["s", [1, "x"], [1, "x"], {"a": [1, "x"]}, {"a": [1, "x"]}])
    );
    // \$one twice: the second is a back-reference to the scalar 1
    assert_eq!(
        v("shared_scalar_refs"),
        json!(["s", true, true, false, false])
    );
    assert_eq!(v("ref_bits"), json!(["r", true, false, true, false]));
    assert_eq!(v("holes"), json!(["h", [null, null, null, 1]]));
    assert_eq!(
        v("large_ints"),
        json!([
            "i",
            "2147483648",
            "-2147483649",
            "1099511627776",
            "-1099511627776",
            "9007199254740993",
            "18446744073709551615"
        ])
    );
    assert_eq!(
        v("floats"),
        json!([
            "f",
            "3.5",
            "0.1",
            "0.333333333333333",
            "-2.5e-300",
            "1e+21",
            "1e-05",
            3,
            0,
            "Inf",
            "-Inf"
        ])
    );
    assert_eq!(v("keepalive"), json!([]));
    assert!(decode(&case("keepalive")).unwrap().is_keepalive());
    assert_eq!(
        v("mixed_keys"),
        json!(["k", {"\u{263a}": [1], "\u{e9}t\u{e9}": 2}])
    );
}

/// A byte string (serde's `serialize_bytes`).
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn encode<M: Serialize + ?Sized>(dest: &str, msg: &M) -> Vec<u8> {
    let mut out = BytesMut::new();
    Framing::Storable
        .encode_packet(dest, msg, &mut out)
        .unwrap();
    out.to_vec()
}

#[test]
fn typed_messages_encode_as_perl_freezes_them() {
    assert_eq!(
        encode(
            "b",
            &json!([true, false, true, false, [true, {"k": false}]])
        ),
        case("booleans")
    );
    assert_eq!(encode("b", &(false, false, true)), case("false_first"));
    assert_eq!(
        encode(
            "i",
            &(
                -128,
                127,
                -129,
                128,
                -32768i16,
                32767u16,
                i32::MAX,
                i32::MIN,
                0u8,
                -1i64
            )
        ),
        case("int_boundaries")
    );
    assert_eq!(
        encode(
            "i",
            &(
                2i64.pow(31),
                -(2i64.pow(31)) - 1,
                1u64 << 40,
                -(1i64 << 40),
                9007199254740993u64,
                u64::MAX
            )
        ),
        case("large_ints")
    );
    assert_eq!(
        encode(
            "f",
            &(
                3.5,
                0.1f64,
                1.0 / 3.0,
                -2.5e-300,
                1e21,
                1e-5,
                3.0f32,
                -0.0,
                f64::INFINITY,
                f64::NEG_INFINITY
            )
        ),
        case("floats")
    );
    assert_eq!(
        encode("bin", &(Bin(b"\x00\x01\x7f\x80\xfe\xff"), "\"\\\n\t")),
        case("binary")
    );
    assert_eq!(
        encode("l", &("x".repeat(300), "\u{ff}".repeat(256))),
        case("long_bytes")
    );
    assert_eq!(
        encode("l", &("\u{20ac}".repeat(100), "a\u{263a}".repeat(200))),
        case("long_utf8")
    );
    assert_eq!(
        encode("u", &(None::<u8>, [()], json!({"k": null}))),
        case("undef")
    );
    assert_eq!(
        encode("e", &(Vec::<u8>::new(), json!({}), "")),
        case("empty")
    );
    assert_eq!(encode("k", &json!([{"\u{fc}": 1}])), case("latin1_keys"));
    assert_eq!(encode("k", &json!([{"\u{20ac}": 1}])), case("utf8_keys"));
    // NaN as Perl prints it
    let p = decode(&encode("n", &(f64::NAN,))).unwrap();
    assert_eq!(value(&p), json!(["n", "NaN"]));
}

#[derive(Serialize)]
enum Shape {
    Unit,
    New(u8),
    Tuple(u8, bool),
    Struct { a: u8, b: &'static str },
}

#[derive(Serialize)]
struct Rec {
    name: &'static str,
    tags: Vec<&'static str>,
    shape: Shape,
}

#[test]
fn structs_and_enums_encode_as_serde_json_would_write_them() {
    let msg = (
        Rec {
            name: "ü",
            tags: vec!["a", "€"],
            shape: Shape::Unit,
        },
        Shape::New(7),
        Shape::Tuple(1, true),
        Shape::Struct { a: 2, b: "x" },
        vec![Shape::Unit, Shape::New(0)],
    );
    let p = decode(&encode("d", &msg)).unwrap();
    let mut want = serde_json::to_value(&msg).unwrap();
    want.as_array_mut().unwrap().insert(0, json!("d"));
    assert_eq!(value(&p), want);
    // the decoded frame is the same JSON serde_json writes, key order too
    let json = aemp::wire::Packet::to_frame("d", &msg).unwrap();
    assert_eq!(&p.frame()[..], &json[..]);
}

#[test]
fn encode_errors_leave_the_buffer_alone() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let s = Framing::Storable;
    for r in [
        s.encode_packet("d", &json!({"a": 1}), &mut out),
        s.encode_packet("d", &"text", &mut out),
        s.encode_packet("d", &5, &mut out),
        s.encode_frame(br#"{"a":1}"#, &mut out),
        s.encode_frame(br#"["a",1"#, &mut out),
        s.encode_frame(br#"["a"] ["b"]"#, &mut out),
    ] {
        assert!(r.is_err());
    }
    assert!(matches!(
        s.encode_packet("d", &json!({"a": 1}), &mut out),
        Err(aemp::wire::EncodeError::NotAnArray)
    ));
    let mut m = std::collections::BTreeMap::new();
    m.insert((1, 2), 3);
    assert!(s.encode_packet("d", &(1, m), &mut out).is_err());
    assert_eq!(&out[..], b"keep");
    // as in the json and cbor framings, `()` is not an array
    assert!(matches!(
        s.encode_packet("d", &(), &mut out),
        Err(aemp::wire::EncodeError::NotAnArray)
    ));
    assert_eq!(&out[..], b"keep");
    s.encode_packet("d", &Vec::<u8>::new(), &mut out).unwrap();
    assert_eq!(value(&decode(&out[4..]).unwrap()), json!(["d"]));
    // the keepalive
    let mut out = BytesMut::new();
    s.encode_frame(b"[]", &mut out).unwrap();
    assert_eq!(&out[..], hex("07050b0200000000"));
}

#[test]
fn length_prefix_rejections() {
    // padded: a leading 0x80 byte
    let mut buf = BytesMut::from(&hex("80 07 050b0200000000")[..]);
    assert_eq!(
        StorableCodec::default().decode(&mut buf),
        Err(StorableError::PaddedLength.into())
    );
    // over max_packet: refused from the prefix alone, nothing awaited
    let mut buf = BytesMut::from(&hex("8101")[..]);
    assert_eq!(
        StorableCodec::new(100, 512).decode(&mut buf),
        Err(FrameError::TooLarge { limit: 100 })
    );
    // exactly max_packet is fine
    let frame = encode("d", &("x".repeat(88),));
    assert_eq!(frame.len(), 101);
    let mut codec = StorableCodec::new(200, 512);
    assert_eq!(
        value(&decode_with(&mut codec, &frame).unwrap()),
        json!(["d", "x".repeat(88)])
    );
    assert_eq!(
        decode_with(&mut StorableCodec::new(99, 512), &frame),
        Err(FrameError::TooLarge { limit: 99 })
    );
    // longer than any usize
    let mut buf = BytesMut::from(&[0xffu8; 12][..]);
    assert_eq!(
        StorableCodec::new(usize::MAX, 512).decode(&mut buf),
        Err(FrameError::TooLarge { limit: usize::MAX })
    );
    // an incomplete frame waits, then is truncated at the end of stream
    let mut codec = StorableCodec::default();
    let mut buf = BytesMut::from(&hex("0a050b02000000010a")[..]);
    assert_eq!(codec.decode(&mut buf), Ok(None));
    assert_eq!(codec.decode_eof(&mut buf), Err(FrameError::Truncated));
}

#[test]
fn header_and_shape_rejections() {
    // another minor version of major 2 is fine
    assert_eq!(image_ok("050c 0200000001 0a0161"), json!(["a"]));
    assert_eq!(
        image_err("040b 0200000001 0a0161"),
        StorableError::NotNetorder(4).into()
    );
    assert_eq!(
        image_err("030b 0200000001 0a0161"),
        StorableError::NotNetorder(3).into()
    );
    assert_eq!(
        image_err("0701 0200000001 0a0161"),
        StorableError::NotNetorder(7).into()
    );
    assert_eq!(image_err("050b 0300000000"), FrameError::NotAnArray);
    assert_eq!(image_err("050b 0a0161"), FrameError::NotAnArray);
    assert_eq!(image_err("050b 040200000000"), FrameError::NotAnArray);
    assert_eq!(image_err("050b 0200000001 0881"), FrameError::DestNotString);
    assert_eq!(
        image_err("050b 0200000002 05 0a0161"),
        FrameError::DestNotString
    );
    assert_eq!(
        image_err("050b 0200000002 04 0a0161 0a0161"),
        FrameError::DestNotString
    );
    assert_eq!(
        image_err("050b 0200000001 0a0161 00"),
        StorableError::TrailingBytes { at: 10, len: 1 }.into()
    );
    assert_eq!(
        image_err("050b 0200000001 0a0561"),
        StorableError::Truncated { at: 7 }.into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 09 0000"),
        StorableError::Truncated { at: 11 }.into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 01 000000ff 61"),
        StorableError::Truncated { at: 10 }.into()
    );
    assert_eq!(
        image_err("050b 02ffffffff 0a0161"),
        StorableError::CountTooLarge {
            count: u32::MAX,
            at: 2
        }
        .into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 0300100000 0881"),
        StorableError::CountTooLarge {
            count: 0x100000,
            at: 11
        }
        .into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 1900 00100000 0881"),
        StorableError::CountTooLarge {
            count: 0x100000,
            at: 11
        }
        .into()
    );
    assert_eq!(image_err("050b"), StorableError::Truncated { at: 2 }.into());
    assert_eq!(image_err(""), StorableError::Truncated { at: 0 }.into());
}

#[test]
fn nesting_is_limited() {
    // ["d", [[[…]]]] with `levels` arrays below the root
    let nested = |levels: usize| {
        let mut img = hex("050b 0200000002 0a0164");
        for _ in 0..levels {
            img.extend_from_slice(&hex("04 0200000001"));
        }
        img.extend_from_slice(&hex("0881"));
        // the innermost array holds 1; fix its count... already 1
        framed(&img)
    };
    let mut codec = StorableCodec::new(1 << 20, 4);
    assert_eq!(
        value(&decode_with(&mut codec, &nested(3)).unwrap()),
        json!(["d", [[[1]]]])
    );
    assert_eq!(
        decode_with(&mut StorableCodec::new(1 << 20, 4), &nested(4)),
        Err(FrameError::TooDeep { limit: 4 })
    );
    // hashes count too, and the key pre-scan checks the same limit
    let mut img = hex("050b 0200000002 0a0164");
    for _ in 0..4 {
        img.extend_from_slice(&hex("04 0300000001"));
    }
    img.extend_from_slice(&hex("0881"));
    for _ in 0..4 {
        img.extend_from_slice(&hex("00000001 6b"));
    }
    assert_eq!(
        decode_with(&mut StorableCodec::new(1 << 20, 5), &framed(&img)).map(|p| value(&p)),
        Ok(json!(["d", {"k": {"k": {"k": {"k": 1}}}}]))
    );
    assert_eq!(
        decode_with(&mut StorableCodec::new(1 << 20, 4), &framed(&img)),
        Err(FrameError::TooDeep { limit: 4 })
    );
    // a million nested arrays: refused at the default limit, no recursion
    let deep = nested(1_000_000);
    assert_eq!(decode(&deep), Err(FrameError::TooDeep { limit: 512 }));
    // and a long chain of refs is no stack problem either
    let mut img = hex("050b 0200000002 0a0164");
    img.extend(std::iter::repeat_n(0x04, 1_000_000));
    img.extend_from_slice(&hex("0881"));
    assert_eq!(value(&decode(&framed(&img)).unwrap()), json!(["d", true]));
}

#[test]
fn unsupported_opcodes_are_named() {
    for (op, what) in [
        (0x06, "native integer"),
        (0x07, "native double"),
        (0x0b, "tied array"),
        (0x0c, "tied hash"),
        (0x0d, "tied scalar"),
        (0x13, "hook"),
        (0x15, "tied hash element"),
        (0x16, "tied array element"),
        (0x1a, "code reference"),
        (0x1d, "vstring"),
        (0x1e, "vstring"),
        (0x20, "regexp"),
        (0x21, "large object"),
        (0x24, "unknown"),
        (0xff, "unknown"),
    ] {
        let img = format!("050b 0200000002 0a0161 {op:02x} 0000000000000000");
        assert_eq!(
            image_err(&img),
            StorableError::Unsupported { op, what, at: 10 }.into(),
            "{op:02x}"
        );
        // also inside a hash (found by the key pre-scan) and under a ref
        let img = format!("050b 0200000002 0a0161 04 0300000001 {op:02x} 00000000 00000000");
        assert!(
            matches!(image_err(&img), FrameError::Storable(StorableError::Unsupported { op: o, .. }) if o == op),
            "{op:02x}"
        );
        let img = format!("050b 0200000002 0a0161 04 {op:02x} 0000000000000000");
        assert!(
            matches!(image_err(&img), FrameError::Storable(StorableError::Unsupported { op: o, .. }) if o == op),
            "{op:02x}"
        );
    }
}

const BOOL: &str = "11 11 4a534f4e3a3a50503a3a426f6f6c65616e";

#[test]
fn blessed_objects() {
    assert_eq!(
        image_ok(&format!(
            "050b 0200000003 0a0161 14 {BOOL} 0881 14 1200 0880"
        )),
        json!(["a", true, false])
    );
    // the value may be a string or a 32-bit int, the ref a plain one; the
    // class index may come in its long form
    assert_eq!(
        image_ok(&format!(
            "050b 0200000004 0a0161 04 {BOOL} 0a0130 04 12 80 00000000 0a0131 14 1200 0900000001"
        )),
        json!(["a", false, true, true])
    );
    // a class name length in its long form
    assert_eq!(
        image_ok(
            "050b 0200000002 0a0161 14 11 80 00000011 4a534f4e3a3a50503a3a426f6f6c65616e 0881"
        ),
        json!(["a", true])
    );
    // a back-reference to the blessed scalar (Perl's repeated true)
    assert_eq!(
        image_ok(&format!(
            "050b 0200000003 0a0161 14 {BOOL} 0881 14 00 00000003"
        )),
        json!(["a", true, true])
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 11 03 466f6f 0200000000"),
        StorableError::UnsupportedClass("Foo".into()).into()
    );
    assert_eq!(
        image_err(&format!("050b 0200000002 0a0161 14 {BOOL} 0882")),
        StorableError::BadBoolean { at: 30 }.into()
    );
    assert_eq!(
        image_err(&format!("050b 0200000002 0a0161 14 {BOOL} 0a0178")),
        StorableError::BadBoolean { at: 30 }.into()
    );
    assert_eq!(
        image_err(&format!("050b 0200000002 0a0161 14 {BOOL} 0200000000")),
        StorableError::BadBoolean { at: 30 }.into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 14 1205 0881"),
        StorableError::UnknownClass(5).into()
    );
    // a hook (Storable's STORABLE_freeze objects)
    assert!(matches!(
        image_err("050b 0200000002 0a0161 04 13 00 03 466f6f 00"),
        FrameError::Storable(StorableError::Unsupported { op: 0x13, .. })
    ));
}

#[test]
fn scalars_refs_and_back_references() {
    assert_eq!(
        image_ok("050b 0200000009 0a0161 0f 10 22 23 1f 0e 05 04 0a03616263"),
        json!(["a", true, false, true, false, null, null, null, "abc"])
    );
    // refs to 0/1 are booleans (JSON::XS's \0/\1), others the scalar;
    // weak refs are refs
    assert_eq!(
        image_ok("050b 0200000008 0a0161 04 0880 1b 0881 04 05 04 04 0881 1c 0a0131 04 0f 04 0899"),
        json!(["a", false, true, null, true, true, true, 25])
    );
    // a back-reference to a scalar under a ref is a boolean again; a
    // plain back-reference copies the scalar
    assert_eq!(
        image_ok("050b 0200000005 0a0161 04 0881 04 00 00000003 0a0130 04 00 00000005"),
        json!(["a", true, true, "0", false])
    );
    // back-references to containers copy them, also from inside a hash
    assert_eq!(
        image_ok("050b 0200000003 0a0161 04 0200000001 0881 04 0300000001 00 00000003 00000001 6b"),
        json!(["a", [1], {"k": [1]}])
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 00 00000009"),
        StorableError::UnknownObject(9).into()
    );
    // a cycle: the array refers to itself
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 0200000001 04 00 00000003"),
        StorableError::Cycle(3).into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 00 00000000"),
        StorableError::Cycle(0).into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 17 02 c328"),
        StorableError::InvalidUtf8 { at: 12 }.into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 18 00000002 c328"),
        StorableError::InvalidUtf8 { at: 15 }.into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 1900 00000001 0881 01 00000002 c328"),
        StorableError::InvalidUtf8 { at: 24 }.into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 1900 00000001 0881 08 00000001 6b"),
        StorableError::Flags { flags: 8, at: 19 }.into()
    );
    assert_eq!(
        image_err("050b 0200000002 0a0161 04 1902 00000001 0881 00 00000001 6b"),
        StorableError::Flags { flags: 2, at: 11 }.into()
    );
    // was-UTF-8 and locked keys of restricted hashes are plain keys
    assert_eq!(
        image_ok("050b 0200000002 0a0161 04 1901 00000002 0881 02 00000001 fc 0882 05 00000001 6b"),
        json!(["a", {"\u{fc}": 1, "k": 2}])
    );
    // escapes in strings and keys, the destination included
    let p = decode(&framed(&hex(
        "050b 0200000002 0a03 612262 04 0300000001 0a02 0a7f 00000002 5c01",
    )))
    .unwrap();
    assert_eq!(p.dest(), Some("a\"b"));
    assert_eq!(value(&p), json!(["a\"b", {"\\\u{1}": "\n\u{7f}"}]));
}

/// `["d", a0, a1, …]` where a0 holds a 40-byte string and each a(i+1)
/// holds two refs to a(i): `levels` back-references double the output
/// each time.
fn doubling(levels: u32) -> Vec<u8> {
    let mut img = hex("050b 02");
    img.extend_from_slice(&(2 + levels).to_be_bytes());
    img.extend_from_slice(&hex("0a0164"));
    // object numbers: root 0, dest 1, a0's ref 2, a0 3, its string 4
    img.extend_from_slice(&hex("04 0200000001 0a28"));
    img.extend_from_slice(&[b'x'; 40]);
    let mut prev = 3u32;
    for level in 0..levels {
        // ref, array, two refs with back-references to the previous array
        img.extend_from_slice(&hex("04 0200000002"));
        for _ in 0..2 {
            img.extend_from_slice(&hex("04 00"));
            img.extend_from_slice(&prev.to_be_bytes());
        }
        // level k's array is object 6 + 4k
        prev = 6 + 4 * level;
    }
    framed(&img)
}

#[test]
fn back_references_cannot_blow_up_the_output() {
    let small = value(&decode(&doubling(2)).unwrap());
    let a0 = json!(["x".repeat(40)]);
    let a1 = json!([a0.clone(), a0.clone()]);
    let a2 = json!([a1.clone(), a1.clone()]);
    assert_eq!(small, json!(["d", a0, a1, a2]));
    // 30 levels: 2^30 copies from a few hundred bytes
    let frame = doubling(30);
    assert!(frame.len() < 1000);
    assert_eq!(
        decode_with(&mut StorableCodec::new(1 << 14, 512), &frame),
        Err(FrameError::TooLarge { limit: 1 << 14 })
    );
    // under the default 64 MiB limit, the back-reference budget refuses
    // it: 16 times the image plus 64 KiB
    let image = frame.len() - 2; // less the two-byte length prefix
    assert_eq!(
        decode(&frame),
        Err(StorableError::BackRefsTooLarge {
            image,
            limit: image * MAX_BACKREF_FACTOR + BACKREF_ALLOWANCE
        }
        .into())
    );
    // eight levels (some 20 KiB of JSON from 200 bytes) are within it
    let eight = value(&decode(&doubling(8)).unwrap());
    assert_eq!(eight.as_array().map(Vec::len), Some(10));
}

#[test]
fn shared_scalars_are_cheap_back_references() {
    // ["d", [true x 20000]]: Perl shares one JSON::PP::true, so the image
    // holds one blessed scalar (object 5) and 19,999 refs to
    // back-references to it (6 bytes each, a 4-byte copy each)
    let mut img = hex(&format!(
        "050b 0200000002 0a0164 04 0200004e20 14 {BOOL} 0881"
    ));
    for _ in 1..20_000 {
        img.extend_from_slice(&hex("14 00 00000005"));
    }
    let v = value(&decode(&framed(&img)).unwrap());
    assert_eq!(v, json!(["d", vec![true; 20_000]]));
}

#[test]
fn errors_are_final() {
    let mut codec = StorableCodec::default();
    let mut buf = BytesMut::from(&framed(&hex("050b 0200000001 0881"))[..]);
    let e = codec.decode(&mut buf).unwrap_err();
    assert_eq!(e, FrameError::DestNotString);
    let mut good = BytesMut::from(&case("booleans")[..]);
    assert_eq!(codec.decode(&mut good), Err(e.clone()));
    assert_eq!(codec.decode_eof(&mut good), Err(e));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        any::<f64>().prop_map(|f| json!(f)),
        (-1000i32..1000).prop_map(|i| json!(f64::from(i) / 8.0)),
        ".*".prop_map(Value::String),
        "[a-z\u{e0}-\u{ff}]{0,300}".prop_map(Value::String),
        "[\u{0}-\u{7f}]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What a value becomes over storable: integers outside 32 bits and
/// non-integral floats arrive as strings (floats: 15 significant digits).
fn check_mapped(sent: &Value, got: &Value) -> Result<(), TestCaseError> {
    match (sent, got) {
        (Value::Number(n), _) => {
            if let Some(i) = n.as_i64().filter(|i| i32::try_from(*i).is_ok()) {
                prop_assert_eq!(got, &json!(i));
            } else if let Some(i) = n.as_i64() {
                prop_assert_eq!(got, &json!(i.to_string()));
            } else if let Some(u) = n.as_u64() {
                prop_assert_eq!(got, &json!(u.to_string()));
            } else {
                let f = n.as_f64().unwrap();
                if f.fract() == 0.0 && f.abs() < 9.2e18 {
                    let i = f as i64;
                    let want = if i32::try_from(i).is_ok() {
                        json!(i)
                    } else {
                        json!(i.to_string())
                    };
                    prop_assert_eq!(got, &want);
                } else {
                    let s = got.as_str().expect("a float arrives as a string");
                    let back: f64 = s.parse().unwrap();
                    prop_assert!(((back - f) / f).abs() < 1e-14, "{} came back as {}", f, s);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            prop_assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                check_mapped(x, y)?;
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            prop_assert_eq!(a.len(), b.len());
            for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                prop_assert_eq!(ka, kb);
                check_mapped(va, vb)?;
            }
        }
        _ => prop_assert_eq!(sent, got),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn messages_survive_encode_and_decode(
        dest in ".{0,12}",
        msg in prop::collection::vec(json_value(), 0..6),
    ) {
        // the serializer and the JSON transcoder write the same bytes
        let direct = encode(&dest, &msg);
        let json = Packet::to_frame(&dest, &msg).unwrap();
        let mut via_json = BytesMut::new();
        Framing::Storable.encode_frame(&json, &mut via_json).unwrap();
        prop_assert_eq!(&direct, &via_json.to_vec());
        let p = decode(&direct).unwrap();
        prop_assert_eq!(p.dest(), Some(dest.as_str()));
        let got = p.values().unwrap();
        check_mapped(&Value::Array(msg), &Value::Array(got))?;
        // and what was decoded encodes back to the same bytes
        prop_assert_eq!(reencode(&p), direct);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut codec = StorableCodec::new(1 << 16, 64);
        let mut buf = BytesMut::from(&framed(&data)[..]);
        let _ = codec.decode(&mut buf);
        // with a valid header in front, the opcodes get exercised
        let mut img = hex("050b 0200000003 0a0161");
        img.extend_from_slice(&data);
        let mut codec = StorableCodec::new(1 << 16, 64);
        let mut buf = BytesMut::from(&framed(&img)[..]);
        if let Ok(Some(p)) = codec.decode(&mut buf) {
            let _ = p.values().unwrap();
        }
        let mut codec = StorableCodec::new(1 << 16, 64);
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
        let _ = codec.decode_eof(&mut buf);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..40,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let mut all: Vec<Vec<u8>> = perl_cases().into_iter().map(|c| c.2).collect();
        all.extend(transcript_packets().into_iter().map(|p| p.1));
        let mut frame = all[which % all.len()].clone();
        for (at, byte, kind) in edits {
            if frame.is_empty() {
                break;
            }
            let i = at.index(frame.len());
            match kind {
                0 => frame[i] = byte,
                1 => frame[i] ^= 1 << (byte % 8),
                2 => frame.insert(i, byte),
                _ => {
                    frame.remove(i);
                }
            }
        }
        // decode the image as framed by its (possibly broken) prefix, and
        // as re-framed so the body always reaches the transcoder
        for bytes in [frame.clone(), framed(frame.get(1..).unwrap_or_default())] {
            let mut codec = StorableCodec::new(1 << 16, 64);
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(Some(p)) = codec.decode(&mut buf) {
                let v = p.values().unwrap();
                // whatever decodes is valid JSON that encodes again
                let again = reencode(&p);
                prop_assert_eq!(decode(&again).unwrap().values().unwrap(), v);
            }
            let _ = codec.decode_eof(&mut buf);
        }
    }
}

async fn node_with(id: &str, framings: &[Framing]) -> aemp::Node {
    aemp::Node::builder()
        .node_id(id)
        .secret(common::SECRET)
        .bind("127.0.0.1:0")
        .framings(framings.iter().copied())
        .start()
        .await
        .expect("node starts")
}

/// A message with what storable maps specially, and what it becomes.
fn rich_message(from: &str) -> (Value, Value) {
    let sent = json!([
        "rich", from, true, false, [true, false, true], 1u64 << 40, -(1i64 << 40), u64::MAX,
        3.5, 0.1, 3.0, -129, 70000, null,
        {"ü": {"€": [1, null, {"☺": "x"}], "plain": "é"}, "k": []},
        "\u{0}\u{1}\u{fe}\u{ff}", "ü€", ""
    ]);
    let want = json!([
        "rich", from, true, false, [true, false, true], "1099511627776", "-1099511627776",
        "18446744073709551615", "3.5", "0.1", 3, -129, 70000, null,
        {"ü": {"€": [1, null, {"☺": "x"}], "plain": "é"}, "k": []},
        "\u{0}\u{1}\u{fe}\u{ff}", "ü€", ""
    ]);
    (sent, want)
}

#[actix_rt::test]
async fn two_nodes_talk_storable_both_ways() {
    let a = node_with("a", &[Framing::Storable]).await;
    let b = node_with("b", &[Framing::Storable]).await;
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    let (pb, mut rb) = b.port_channel_named("inbox").unwrap();
    // queued before the connection: these go out as re-encoded JSON frames
    b.snd(&pa, &("early", 1)).unwrap();
    assert_eq!(b.connect(common::addr_of(&a)).await.unwrap(), "a");
    common::node_up(&a, "b").await;
    assert_eq!(a.send_framing("b"), Some(Framing::Storable));
    assert_eq!(b.send_framing("a"), Some(Framing::Storable));

    let (sent_b, want_b) = rich_message("b");
    let (sent_a, want_a) = rich_message("a");
    b.snd(&pa, &sent_b).unwrap();
    a.snd(&pb, &sent_a).unwrap();
    // typed, with a byte string (a Latin-1 string on the other side)
    a.snd(&pb, &("bin", Bin(b"\x00\x80\xff"), 2.5f64, i64::MIN))
        .unwrap();

    let early = common::recv(&mut ra).await;
    assert_eq!(early.values().unwrap(), vec![json!("early"), json!(1)]);
    assert_eq!(
        Value::Array(common::recv(&mut ra).await.values().unwrap()),
        want_b
    );
    assert_eq!(
        Value::Array(common::recv(&mut rb).await.values().unwrap()),
        want_a
    );
    let typed = common::recv(&mut rb).await;
    let (tag, bin, f, min): (
        String,
        String,
        aemp::wire::Lenient<f64>,
        aemp::wire::Lenient<i64>,
    ) = typed.decode().unwrap();
    assert_eq!((tag.as_str(), bin.as_str()), ("bin", "\u{0}\u{80}\u{ff}"));
    assert_eq!((f.0, min.0), (2.5, i64::MIN));

    // many in a row, in order
    for i in 0..500u32 {
        a.snd(&pb, &("seq", i, "x".repeat((i % 300) as usize)))
            .unwrap();
    }
    for want in 0..500u32 {
        let (_, i, s): (String, u32, String) = common::recv(&mut rb).await.decode().unwrap();
        assert_eq!((i, s.len()), (want, (want % 300) as usize));
    }
}

#[actix_rt::test]
async fn one_way_storable_the_other_json() {
    // each side sends the other's first choice
    let a = node_with("a", &[Framing::Storable, Framing::Json]).await;
    let b = node_with("b", &[Framing::Json, Framing::Storable]).await;
    let (pa, mut ra) = a.port_channel_named("inbox").unwrap();
    let (pb, mut rb) = b.port_channel_named("inbox").unwrap();
    assert_eq!(a.connect(common::addr_of(&b)).await.unwrap(), "b");
    common::node_up(&b, "a").await;
    assert_eq!(a.send_framing("b"), Some(Framing::Json));
    assert_eq!(b.send_framing("a"), Some(Framing::Storable));

    let (sent, want_storable) = rich_message("x");
    a.snd(&pb, &sent).unwrap(); // json: numbers stay numbers
    b.snd(&pa, &sent).unwrap(); // storable
    // over json, numbers stay numbers (3.0 a float)
    let over_json = Value::Array(common::recv(&mut rb).await.values().unwrap());
    assert_eq!(over_json, sent);
    assert_eq!(
        Value::Array(common::recv(&mut ra).await.values().unwrap()),
        want_storable
    );
}

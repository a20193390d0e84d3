//! Costs of the sans-IO core per operation: greeting parse, auth tokens,
//! and JSON, storable and CBOR packet decode/encode (the per-message hot path;
//! for CBOR also ciborium's generic `Value` decode of the same item, the
//! alternative to aemp's direct transcoder).

use std::fmt::Debug;
use std::hint::black_box;

use aemp::wire::{
    CborCodec, Framing, Greeting, JsonCodec, Packet, Secret, StorableCodec, hmac_md6_64_256_token,
    transcript,
};
use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tokio_util::codec::Decoder;

const GREETING: &[u8] = b"aemp;1;perlB;tls_md6_64_256,hmac_md6_64_256,tls_anon,cleartext;json,storable;peeraddr=127.0.0.1:40700;provider=AE-1.30";
const NONCE: &[u8] =
    b"5kOP4fRqYXUxJOk6SYUuL8bIegbBsykEulSYbKTF3EcbDQ+iEjEoA01DjFV21SBRm6RyeXbwlSwgbSXuw9d/lQzv";
const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

fn handshake(c: &mut Criterion) {
    c.bench_function("greeting_parse", |b| {
        b.iter(|| Greeting::parse(black_box(GREETING)))
    });
    let secret = Secret::from("geheim");
    let text = transcript([GREETING, NONCE], [GREETING, NONCE]);
    c.bench_function("hmac_md6_64_256_token", |b| {
        b.iter(|| hmac_md6_64_256_token(black_box(&secret), black_box(&text)))
    });
}

/// The plain message of every framing's benches.
type Msg = (&'static str, u64, &'static str);
const MSG: Msg = ("msg", 12345u64, PAYLOAD);

/// `msg` to `sink` in `framing`.
fn frame<M: serde::Serialize + ?Sized>(framing: Framing, msg: &M) -> Bytes {
    let mut out = BytesMut::new();
    framing.encode_packet("sink", msg, &mut out).unwrap();
    out.freeze()
}

/// Plain messages to `sink` in `framing`, numbered from 1, filling 64 KiB;
/// and how many.
fn batch(framing: Framing) -> (Bytes, u64) {
    let mut batch = BytesMut::new();
    let mut n = 0u64;
    while batch.len() < 64 * 1024 {
        n += 1;
        framing
            .encode_packet("sink", &("msg", n, PAYLOAD), &mut batch)
            .unwrap();
    }
    (batch.freeze(), n)
}

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Encoding `msg` to `sink` in `framing`, into a buffer cleared when less
/// than `room` bytes are left of 1 MiB.
fn bench_encode<M: serde::Serialize + ?Sized>(
    g: &mut Group<'_>,
    name: &str,
    framing: Framing,
    msg: &M,
    room: usize,
) {
    g.bench_function(name, |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - room {
                out.clear();
            }
            framing
                .encode_packet(black_box("sink"), black_box(msg), &mut out)
                .unwrap();
        })
    });
}

/// Transcoding the JSON frame `json` to `framing`, as `bench_encode`.
fn bench_encode_frame(g: &mut Group<'_>, name: &str, framing: Framing, json: &[u8], room: usize) {
    g.bench_function(name, |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - room {
                out.clear();
            }
            framing.encode_frame(black_box(json), &mut out).unwrap();
        })
    });
}

/// Decoding the one packet `frame` with a `D`.
fn bench_decode<D: Decoder<Item = Packet, Error: Debug> + Default>(
    g: &mut Group<'_>,
    name: &str,
    frame: &[u8],
) {
    g.bench_function(name, |b| {
        let mut codec = D::default();
        b.iter(|| {
            let mut buf = BytesMut::from(frame);
            codec.decode(&mut buf).unwrap().unwrap()
        })
    });
}

/// Decoding the plain message `frame` with a `D`, and its typed body.
fn bench_typed_body<D: Decoder<Item = Packet, Error: Debug> + Default>(
    g: &mut Group<'_>,
    frame: &[u8],
) {
    g.bench_function("decode_and_typed_body", |b| {
        let mut codec = D::default();
        b.iter(|| {
            let mut buf = BytesMut::from(frame);
            let p = codec.decode(&mut buf).unwrap().unwrap();
            let (_, i, _): (&str, u64, &str) = p.decode().unwrap();
            i
        })
    });
}

/// Decoding the 64 KiB `batch` of `framing` with a `D` (throughput in
/// packets).
fn bench_batch<D: Decoder<Item = Packet, Error: Debug> + Default>(
    g: &mut Group<'_>,
    framing: Framing,
) {
    let (batch, n) = batch(framing);
    g.throughput(Throughput::Elements(n));
    g.bench_function("decode_64k_batch", |b| {
        let mut codec = D::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&batch[..]);
            let mut count = 0;
            while let Some(p) = codec.decode(&mut buf).unwrap() {
                black_box(p.dest());
                count += 1;
            }
            count
        })
    });
}

fn packets(c: &mut Criterion) {
    let one = frame(Framing::Json, &MSG);
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    bench_encode(&mut g, "encode_packet", Framing::Json, &MSG, 128);
    bench_decode::<JsonCodec>(&mut g, "decode_packet", &one);
    bench_typed_body::<JsonCodec>(&mut g, &one);
    bench_batch::<JsonCodec>(&mut g, Framing::Json);
    g.finish();
}

fn storable(c: &mut Criterion) {
    let nested =
        json!(["msg", 7, {"k": [1, 2, {"deep": true}], "ü": "é", "n": null}, [false, 3.5, "x"]]);
    let one = frame(Framing::Storable, &MSG);
    let nested_one = frame(Framing::Storable, &nested);
    let json_nested = frame(Framing::Json, &nested);

    let mut g = c.benchmark_group("storable");
    g.throughput(Throughput::Elements(1));
    bench_encode(&mut g, "encode_packet", Framing::Storable, &MSG, 128);
    bench_encode(
        &mut g,
        "encode_packet_nested",
        Framing::Storable,
        &nested,
        256,
    );
    bench_encode_frame(
        &mut g,
        "encode_frame_nested",
        Framing::Storable,
        &json_nested,
        256,
    );
    bench_decode::<StorableCodec>(&mut g, "decode_packet", &one);
    bench_decode::<StorableCodec>(&mut g, "decode_packet_nested", &nested_one);
    bench_typed_body::<StorableCodec>(&mut g, &one);
    bench_batch::<StorableCodec>(&mut g, Framing::Storable);
    g.finish();
}

/// A nested message: a Global-style `set` with a map of lists, floats,
/// booleans and a non-ASCII key.
fn nested() -> serde_json::Value {
    serde_json::json!([
        "set",
        {"echo": ["perlA#echo", "perlB#echo"], "gr\u{fc}n": [1.5, true, null, -7], "big": 18446744073709551615u64},
        [[1, 2], [3, [4, "five"]]],
        PAYLOAD
    ])
}

fn cbor(c: &mut Criterion) {
    let one = frame(Framing::Cbor, &MSG);
    // what Perl writes: byte strings
    let mut perl = b"\x84\x44sink\x43msg\x19\x30\x39\x58\x28".to_vec();
    perl.extend_from_slice(PAYLOAD.as_bytes());
    let nested_msg = nested();
    let nest = frame(Framing::Cbor, &nested_msg);
    let json_one = frame(Framing::Json, &MSG);

    let mut g = c.benchmark_group("cbor");
    g.throughput(Throughput::Elements(1));
    bench_encode(&mut g, "encode_packet", Framing::Cbor, &MSG, 128);
    bench_encode_frame(&mut g, "encode_frame", Framing::Cbor, &json_one, 128);
    bench_encode(&mut g, "encode_nested", Framing::Cbor, &nested_msg, 1024);
    bench_decode::<CborCodec>(&mut g, "decode_packet", &one);
    bench_decode::<CborCodec>(&mut g, "decode_perl_packet", &perl);
    bench_decode::<CborCodec>(&mut g, "decode_nested", &nest);
    bench_typed_body::<CborCodec>(&mut g, &one);
    // the alternative: a generic value (no JSON frame written yet)
    g.bench_function("ciborium_value_decode", |b| {
        b.iter(|| ciborium::from_reader::<ciborium::Value, _>(black_box(&one[..])).unwrap())
    });
    g.bench_function("ciborium_value_decode_nested", |b| {
        b.iter(|| ciborium::from_reader::<ciborium::Value, _>(black_box(&nest[..])).unwrap())
    });
    bench_batch::<CborCodec>(&mut g, Framing::Cbor);
    g.finish();
}

/// What a tag callback's message costs (MP.pm 417–423): the tag, the
/// message without it ([`Packet::without_tag`]) and its typed body, for
/// the plain message and for one with a 4 KiB payload.
fn tagged(c: &mut Criterion) {
    let small = Packet::parse(frame(Framing::Json, &MSG)).unwrap();
    let payload = "x".repeat(4096);
    let big = Packet::parse(frame(Framing::Json, &("msg", 12345u64, payload.as_str()))).unwrap();
    let mut g = c.benchmark_group("tagged");
    g.throughput(Throughput::Elements(1));
    for (name, p) in [("small", &small), ("4k", &big)] {
        g.bench_function(format!("without_tag_decode_{name}"), |b| {
            b.iter(|| {
                let p = black_box(p);
                black_box(p.tag().unwrap());
                let rest = p.without_tag().unwrap();
                let (i, s): (u64, &str) = rest.decode().unwrap();
                s.len() as u64 + i
            })
        });
    }
    g.finish();
}

criterion_group!(benches, handshake, packets, storable, cbor, tagged);
criterion_main!(benches);

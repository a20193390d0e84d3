//! Costs of the sans-IO core per operation: greeting parse, auth tokens,
//! and JSON, storable and CBOR packet decode/encode (the per-message hot path;
//! for CBOR also ciborium's generic `Value` decode of the same item, the
//! alternative to aemp's direct transcoder).

use std::hint::black_box;

use aemp::wire::{
    CborCodec, Framing, Greeting, JsonCodec, Packet, Secret, StorableCodec, hmac_md6_64_256_token,
    transcript,
};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

fn packets(c: &mut Criterion) {
    let one = Packet::to_frame("sink", &("msg", 12345u64, PAYLOAD)).unwrap();
    let mut batch = BytesMut::new();
    let mut n = 0u64;
    while batch.len() < 64 * 1024 {
        n += 1;
        Packet::encode("sink", &("msg", n, PAYLOAD), &mut batch).unwrap();
    }
    let batch = batch.freeze();

    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_packet", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - 128 {
                out.clear();
            }
            Packet::encode(
                black_box("sink"),
                black_box(&("msg", 12345u64, PAYLOAD)),
                &mut out,
            )
            .unwrap();
        })
    });
    g.bench_function("decode_packet", |b| {
        let mut codec = JsonCodec::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&one[..]);
            codec.decode(&mut buf).unwrap().unwrap()
        })
    });
    g.bench_function("decode_and_typed_body", |b| {
        let mut codec = JsonCodec::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&one[..]);
            let p = codec.decode(&mut buf).unwrap().unwrap();
            let (_, i, _): (&str, u64, &str) = p.decode().unwrap();
            i
        })
    });
    g.throughput(Throughput::Elements(n));
    g.bench_function("decode_64k_batch", |b| {
        let mut codec = JsonCodec::default();
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
    g.finish();
    black_box(Bytes::new());
}

fn storable(c: &mut Criterion) {
    let msg = ("msg", 12345u64, PAYLOAD);
    let nested =
        json!(["msg", 7, {"k": [1, 2, {"deep": true}], "ü": "é", "n": null}, [false, 3.5, "x"]]);
    let frame = |m: &dyn erased::Msg| {
        let mut out = BytesMut::new();
        m.storable("sink", &mut out);
        out.freeze()
    };
    let one = frame(&msg);
    let nested_one = frame(&nested);
    let json_nested = Packet::to_frame("sink", &nested).unwrap();
    let mut batch = BytesMut::new();
    let mut n = 0u64;
    while batch.len() < 64 * 1024 {
        n += 1;
        Framing::Storable
            .encode_packet("sink", &("msg", n, PAYLOAD), &mut batch)
            .unwrap();
    }
    let batch = batch.freeze();

    let mut g = c.benchmark_group("storable");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_packet", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - 128 {
                out.clear();
            }
            Framing::Storable
                .encode_packet(black_box("sink"), black_box(&msg), &mut out)
                .unwrap();
        })
    });
    g.bench_function("encode_packet_nested", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - 256 {
                out.clear();
            }
            Framing::Storable
                .encode_packet(black_box("sink"), black_box(&nested), &mut out)
                .unwrap();
        })
    });
    g.bench_function("encode_frame_nested", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - 256 {
                out.clear();
            }
            Framing::Storable
                .encode_frame(black_box(&json_nested), &mut out)
                .unwrap();
        })
    });
    g.bench_function("decode_packet", |b| {
        let mut codec = StorableCodec::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&one[..]);
            codec.decode(&mut buf).unwrap().unwrap()
        })
    });
    g.bench_function("decode_packet_nested", |b| {
        let mut codec = StorableCodec::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&nested_one[..]);
            codec.decode(&mut buf).unwrap().unwrap()
        })
    });
    g.bench_function("decode_and_typed_body", |b| {
        let mut codec = StorableCodec::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&one[..]);
            let p = codec.decode(&mut buf).unwrap().unwrap();
            let (_, i, _): (&str, u64, &str) = p.decode().unwrap();
            i
        })
    });
    g.throughput(Throughput::Elements(n));
    g.bench_function("decode_64k_batch", |b| {
        let mut codec = StorableCodec::default();
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
    g.finish();
}

/// Messages of different types behind one `dyn`, for building frames.
mod erased {
    use bytes::BytesMut;
    pub trait Msg {
        fn storable(&self, dest: &str, out: &mut BytesMut);
    }
    impl<T: serde::Serialize> Msg for T {
        fn storable(&self, dest: &str, out: &mut BytesMut) {
            aemp::wire::Framing::Storable
                .encode_packet(dest, self, out)
                .unwrap();
        }
    }
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
    let mut one = BytesMut::new();
    Framing::Cbor
        .encode_packet("sink", &("msg", 12345u64, PAYLOAD), &mut one)
        .unwrap();
    // what Perl writes: byte strings
    let mut perl = b"\x84\x44sink\x43msg\x19\x30\x39\x58\x28".to_vec();
    perl.extend_from_slice(PAYLOAD.as_bytes());
    let mut nest = BytesMut::new();
    Framing::Cbor
        .encode_packet("sink", &nested(), &mut nest)
        .unwrap();
    let json_one = Packet::to_frame("sink", &("msg", 12345u64, PAYLOAD)).unwrap();
    let mut batch = BytesMut::new();
    let mut n = 0u64;
    while batch.len() < 64 * 1024 {
        n += 1;
        Framing::Cbor
            .encode_packet("sink", &("msg", n, PAYLOAD), &mut batch)
            .unwrap();
    }

    let mut g = c.benchmark_group("cbor");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_packet", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - 128 {
                out.clear();
            }
            Framing::Cbor
                .encode_packet(
                    black_box("sink"),
                    black_box(&("msg", 12345u64, PAYLOAD)),
                    &mut out,
                )
                .unwrap();
        })
    });
    g.bench_function("encode_frame", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - 128 {
                out.clear();
            }
            Framing::Cbor
                .encode_frame(black_box(&json_one), &mut out)
                .unwrap();
        })
    });
    let nested_msg = nested();
    g.bench_function("encode_nested", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 20) - 1024 {
                out.clear();
            }
            Framing::Cbor
                .encode_packet(black_box("sink"), black_box(&nested_msg), &mut out)
                .unwrap();
        })
    });
    for (name, item) in [
        ("decode_packet", &one[..]),
        ("decode_perl_packet", &perl[..]),
        ("decode_nested", &nest[..]),
    ] {
        g.bench_function(name, |b| {
            let mut codec = CborCodec::default();
            b.iter(|| {
                let mut buf = BytesMut::from(item);
                codec.decode(&mut buf).unwrap().unwrap()
            })
        });
    }
    g.bench_function("decode_and_typed_body", |b| {
        let mut codec = CborCodec::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&one[..]);
            let p = codec.decode(&mut buf).unwrap().unwrap();
            let (_, i, _): (&str, u64, &str) = p.decode().unwrap();
            i
        })
    });
    // the alternative: a generic value (no JSON frame written yet)
    g.bench_function("ciborium_value_decode", |b| {
        b.iter(|| ciborium::from_reader::<ciborium::Value, _>(black_box(&one[..])).unwrap())
    });
    g.bench_function("ciborium_value_decode_nested", |b| {
        b.iter(|| ciborium::from_reader::<ciborium::Value, _>(black_box(&nest[..])).unwrap())
    });
    g.throughput(Throughput::Elements(n));
    g.bench_function("decode_64k_batch", |b| {
        let mut codec = CborCodec::default();
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
    g.finish();
}

criterion_group!(benches, handshake, packets, storable, cbor);
criterion_main!(benches);

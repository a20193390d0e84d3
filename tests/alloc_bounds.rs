//! Memory a peer can make a decoder hold: a counting global allocator
//! records the peak of live heap bytes while each framing's decoder (with
//! `max_packet` = 64 KiB) reads adversarial streams, fed 4 KiB at a time
//! as a socket would, and the peak is checked against a stated bound.
//!
//! The bounds found (peak of live bytes above what was live before, the
//! input stream itself not counted):
//! * `json`: ≤ 2 × max_packet + 16 KiB (the buffered text of one frame, in
//!   a buffer that grows by doubling, is refused once it passes
//!   max_packet);
//! * `storable`: ≤ 10 × max_packet + 16 KiB, measured 9.0 × (the body
//!   waits in the buffer, ≤ max_packet; its JSON output is refused once
//!   past max_packet, but one escaped string can overshoot that by 6 × its
//!   bytes, in a buffer grown by doubling: a 64 KiB string of control
//!   characters is 384 KiB of `\u00XX` in a 512 KiB buffer);
//! * `cbor`: ≤ 10 × max_packet + 16 KiB, measured 9.0 × (the item in the
//!   buffer, ≤ max_packet, and its JSON frame, at most 6 × the CBOR for
//!   strings of control characters, ~7.3 × for half floats: `f9 0001`
//!   becomes the 22 bytes `5.960464477539063e-8,`, in a buffer grown by
//!   doubling).
//!
//! In every case memory does not grow with the length of the stream: a
//! peer cannot make a decoder hold more than one frame's worth.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use aemp::wire::{FrameError, Framing};
use bytes::BytesMut;
use tokio_util::codec::Decoder;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            if new_size >= layout.size() {
                let now =
                    LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The tests of this file measure one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MAX_PACKET: usize = 64 * 1024;
const CHUNK: usize = 4096;

/// Decodes `stream` in `framing`, fed `CHUNK` bytes at a time, dropping
/// every packet; returns the peak of live bytes above the start and how
/// the stream ended.
fn peak_while_decoding(framing: Framing, stream: &[u8]) -> (usize, usize, Result<(), FrameError>) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let mut packets = 0;
    let end = (|| {
        let mut codec = framing.codec(MAX_PACKET, 64);
        let mut buf = BytesMut::new();
        for chunk in stream.chunks(CHUNK) {
            buf.extend_from_slice(chunk);
            while let Some(p) = codec.decode(&mut buf)? {
                packets += 1;
                drop(p);
            }
        }
        while codec.decode_eof(&mut buf)?.is_some() {
            packets += 1;
        }
        Ok(())
    })();
    (PEAK.load(Relaxed) - base, packets, end)
}

/// Asserts the peak of each case is within `bound` and prints them.
fn check(framing: Framing, bound: usize, cases: &[(&str, Vec<u8>)]) {
    for (name, stream) in cases {
        let (peak, packets, end) = peak_while_decoding(framing, stream);
        println!(
            "{framing} {name}: {} input bytes, {packets} packets, end {end:?}: peak {peak} B = {:.2} × max_packet",
            stream.len(),
            peak as f64 / MAX_PACKET as f64
        );
        assert!(
            peak <= bound,
            "{framing} {name}: peak {peak} B over the bound {bound} B"
        );
    }
}

/// Holds the other tests of this file off (their allocations would count).
fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// `n` copies of `unit`.
fn rep(unit: &[u8], n: usize) -> Vec<u8> {
    unit.repeat(n)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn json_holds_at_most_one_frame() {
    let _alone = alone();
    let big_string = cat(&[b"[\"", &rep(b"a", 4 * MAX_PACKET)]);
    let deep = cat(&[b"[\"d\",", &rep(b"[", 4 * MAX_PACKET)]);
    let frame = cat(&[b"[\"d\",\"", &rep(b"x", MAX_PACKET - 16), b"\"]"]);
    let many = rep(&frame, 64);
    let small = rep(br#"["d",1,2,3,{"a":[]}]"#, 100_000);
    check(
        Framing::Json,
        2 * MAX_PACKET + 16 * 1024,
        &[
            ("endless string", big_string),
            ("endless nesting", deep),
            ("64 frames just under max_packet", many),
            ("100000 small frames", small),
        ],
    );
}

/// A storable frame: BER length prefix and `body` after the header.
fn storable_frame(body: &[u8]) -> Vec<u8> {
    let image = cat(&[b"\x05\x0b", body]);
    let mut len = image.len();
    let mut ber = vec![(len & 0x7f) as u8];
    len >>= 7;
    while len > 0 {
        ber.insert(0, 0x80 | (len & 0x7f) as u8);
        len >>= 7;
    }
    cat(&[&ber, &image])
}

/// A storable root array of `n` elements: `dest` then `elems`.
fn storable_array(n: u32, elems: &[u8]) -> Vec<u8> {
    cat(&[b"\x02", &n.to_be_bytes(), b"\x0a\x01d", elems])
}

#[test]
fn storable_holds_at_most_one_frame_and_its_output() {
    let _alone = alone();
    // a declared length of 2^62: refused before anything is awaited
    let huge_len = cat(&[
        &[0xc0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        b"\x05\x0b",
    ]);
    // a string of control characters (6 × when escaped), then
    // back-references to it until the frame is full
    let ctl = rep(b"\x01", MAX_PACKET / 2);
    let mut elems = cat(&[b"\x01", &(ctl.len() as u32).to_be_bytes(), &ctl]);
    let refs = (MAX_PACKET / 2 - 64) / 5;
    for _ in 0..refs {
        elems.extend_from_slice(b"\x00\x00\x00\x00\x01");
    }
    let backrefs = storable_frame(&storable_array(2 + refs as u32, &elems));
    // undefs: 1 byte each, 5 in JSON
    let n = MAX_PACKET - 64;
    let undefs = storable_frame(&storable_array(n as u32 + 1, &rep(b"\x05", n)));
    let escaped = storable_frame(&storable_array(
        2,
        &cat(&[
            b"\x01",
            &((MAX_PACKET - 64) as u32).to_be_bytes(),
            &rep(b"\x01", MAX_PACKET - 64),
        ]),
    ));
    let many = rep(&escaped, 64);
    check(
        Framing::Storable,
        10 * MAX_PACKET + 16 * 1024,
        &[
            ("declared length 2^62", huge_len),
            ("back-references to an escaped string", backrefs),
            ("64 KiB of undefs", undefs),
            ("64 frames of control characters", many),
        ],
    );
}

/// An indefinite CBOR array: the destination `"d"`, then `elems`.
fn cbor_array(elems: &[u8]) -> Vec<u8> {
    cat(&[b"\x9f\x61d", elems, b"\xff"])
}

#[test]
fn cbor_holds_at_most_one_item_and_its_output() {
    let _alone = alone();
    let room = MAX_PACKET - 16;
    let huge_array = b"\x9b\x10\x00\x00\x00\x00\x00\x00\x00".to_vec();
    let huge_string = cat(&[b"\x82\x61d\x7b\x00\x00\x01\x00\x00\x00\x00\x00"]);
    let halfs = cbor_array(&rep(b"\xf9\x00\x01", room / 3));
    let falses = cbor_array(&rep(b"\xf4", room));
    let ctl = cat(&[
        b"\x82\x61d\x7a",
        &(room as u32).to_be_bytes(),
        &rep(b"\x01", room),
    ]);
    let deep = cat(&[b"\x9f\x61d", &rep(b"\x9f", 4 * MAX_PACKET)]);
    let many = rep(&halfs, 64);
    check(
        Framing::Cbor,
        10 * MAX_PACKET + 16 * 1024,
        &[
            ("array of 2^60 elements", huge_array),
            ("string of 2^40 bytes", huge_string),
            ("half floats", halfs),
            ("falses", falses),
            ("control characters", ctl),
            ("endless nesting", deep),
            ("64 items of half floats", many),
        ],
    );
}

//! Reader for the capture.py logs in `tests/fixtures/` (format v1, text
//! or hex).

#![allow(dead_code)]

/// Direction of a chunk: client to server (`>`) or server to client (`<`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    C2S,
    S2C,
}

/// One recorded read: the bytes that arrived together.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub conn: u32,
    pub dir: Dir,
    pub offset: usize,
    pub bytes: Vec<u8>,
}

/// All chunks of a log, in recording order.
pub fn parse(log: &str) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut expect = 0usize;
    for line in log.lines() {
        if line.starts_with('[') {
            // [    0.306196] #1 > 207 bytes @0
            let rest = line.split_once("] #").expect("chunk header").1;
            let mut f = rest.split_whitespace();
            let conn: u32 = f.next().unwrap().parse().unwrap();
            let dir = match f.next().unwrap() {
                ">" => Dir::C2S,
                "<" => Dir::S2C,
                _ => continue, // OPEN, EOF, CLOSE
            };
            let Ok(len) = f.next().unwrap().parse::<usize>() else {
                continue; // "> EOF"
            };
            assert_eq!(f.next(), Some("bytes"));
            let offset: usize = f.next().unwrap().trim_start_matches('@').parse().unwrap();
            if let Some(last) = chunks.last() {
                assert_eq!(last.bytes.len(), expect, "chunk length mismatch");
            }
            expect = len;
            chunks.push(Chunk {
                conn,
                dir,
                offset,
                bytes: Vec::with_capacity(len),
            });
        } else if let Some(text) = line.strip_prefix("> ").or_else(|| line.strip_prefix("< ")) {
            let chunk = chunks.last_mut().expect("data before a chunk header");
            unescape(text, &mut chunk.bytes);
        } else if let Some(dump) = line.strip_prefix(">|").or_else(|| line.strip_prefix("<|")) {
            let chunk = chunks.last_mut().expect("data before a chunk header");
            unhex(dump, &mut chunk.bytes);
        }
    }
    if let Some(last) = chunks.last() {
        assert_eq!(last.bytes.len(), expect, "chunk length mismatch");
    }
    chunks
}

fn unescape(text: &str, out: &mut Vec<u8>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'\\' => out.push(b'\\'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let h = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(h, 16).unwrap());
                    i += 4;
                    continue;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
}

/// The bytes of a `format=hex` data line after its `>|`/`<|`
/// (`00000000  61 65 … |ae…|`, as `hexdump -C`).
fn unhex(dump: &str, out: &mut Vec<u8>) {
    let hex = dump.get(8..).expect("offset column");
    let hex = &hex[..hex.find('|').expect("ascii column")];
    for b in hex.split_whitespace() {
        out.push(u8::from_str_radix(b, 16).unwrap());
    }
}

/// The whole byte stream of one direction of one connection.
pub fn stream(chunks: &[Chunk], conn: u32, dir: Dir) -> Vec<u8> {
    let mut s = Vec::new();
    for c in chunks.iter().filter(|c| c.conn == conn && c.dir == dir) {
        assert_eq!(c.offset, s.len(), "chunks out of order");
        s.extend_from_slice(&c.bytes);
    }
    s
}

/// The first `n` lines of a stream (without line ends) and the bytes after them.
pub fn lines(stream: &[u8], n: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut rest = stream;
    let mut out = Vec::new();
    for _ in 0..n {
        let i = rest.iter().position(|&b| b == b'\n').expect("line");
        out.push(rest[..i].to_vec());
        rest = &rest[i + 1..];
    }
    (out, rest.to_vec())
}

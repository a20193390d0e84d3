//! What handing one local message to a port costs, by kind of port, for a
//! quick timing or for callgrind: N × `["msg", i, payload]` (40-byte
//! payload) sent to one port of one node; each is decoded by the
//! receiver; the run prints the time per message and exits.
//!
//! ```text
//! cargo run --release --example dispatch_cost -- rcv 100000
//! valgrind --tool=callgrind target/release/examples/dispatch_cost rcv 100000
//! ```
//!
//! Kinds:
//! * `rcv` — a `port_rcv` tag callback for `"msg"` (the tag looked up,
//!   the message without its tag, MP.pm 417–423);
//! * `fn` — a `port_fn` handler (the default callback of the same
//!   dispatch table);
//! * `actor` — an actix actor port (`port_actor`), no dispatch table;
//! * `channel` — a `port_channel`;
//! * `packet` / `packet4k` — no node: what a tag callback's message
//!   costs by itself, `tag()`, `without_tag()` and the typed body of a
//!   parsed `["sink", "msg", i, payload]` (40-byte or 4 KiB payload);
//! * `mutex` / `nomutex` — no node: the take-out/put-back of a callback
//!   under a `parking_lot` mutex that a handler port's dispatch does per
//!   message (two uncontended lock/unlock pairs), and the same call
//!   without the mutex.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use aemp::{Node, Packet, PortKilled, Rcv};
use tokio::sync::Notify;

const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

/// Counts decoded messages and wakes the sender at the last one.
#[derive(Clone)]
struct Done {
    seen: Arc<AtomicU64>,
    want: u64,
    notify: Arc<Notify>,
}

impl Done {
    fn one(&self, i: u64) {
        std::hint::black_box(i);
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.want {
            self.notify.notify_one();
        }
    }
}

struct Sink(Done);

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Packet> for Sink {
    type Result = ();
    fn handle(&mut self, msg: Packet, _: &mut Context<Self>) {
        if let Ok((_, i, _)) = msg.decode::<(&str, u64, &str)>() {
            self.0.one(i);
        }
    }
}

impl Handler<PortKilled> for Sink {
    type Result = ();
    fn handle(&mut self, _: PortKilled, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The callback slot of a dispatch table, as `rcv.rs` keeps it.
struct Slot {
    callback: Option<Box<dyn FnMut(u64) + Send>>,
    generation: u64,
}

fn packet_loop(n: u64, payload: usize) -> Duration {
    let payload = "x".repeat(payload);
    let frame = Packet::to_frame("sink", &("msg", 12345u64, payload.as_str())).expect("encodes");
    let p = Packet::parse(frame).expect("parses");
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..n {
        let p = std::hint::black_box(&p);
        std::hint::black_box(p.tag());
        let Some(rest) = p.without_tag() else {
            continue;
        };
        if let Ok((i, s)) = rest.decode::<(u64, &str)>() {
            sum += i + s.len() as u64;
        }
    }
    std::hint::black_box(sum);
    start.elapsed()
}

fn mutex_loop(n: u64, with_mutex: bool) -> Duration {
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let slot = Arc::new(parking_lot::Mutex::new(Slot {
        callback: Some(Box::new(move |i| {
            d.fetch_add(std::hint::black_box(i) & 1, Ordering::Relaxed);
        })),
        generation: 7,
    }));
    let start = Instant::now();
    if with_mutex {
        for i in 0..n {
            let table = std::hint::black_box(&slot);
            let mut t = table.lock();
            let generation = t.generation;
            let Some(mut callback) = t.callback.take() else {
                continue;
            };
            drop(t);
            callback(i);
            let mut t = table.lock();
            if t.generation == generation && t.callback.is_none() {
                t.callback = Some(callback);
            }
        }
    } else {
        let mut t = slot.lock();
        let callback = t.callback.as_mut().expect("set");
        for i in 0..n {
            std::hint::black_box(&mut *callback)(i);
        }
    }
    let elapsed = start.elapsed();
    std::hint::black_box(done.load(Ordering::Relaxed));
    elapsed
}

async fn run(kind: &str, n: u64) -> Result<Duration, String> {
    let node = Node::builder()
        .node_id("cost")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let done = Done {
        seen: Arc::new(AtomicU64::new(0)),
        want: n,
        notify: Arc::new(Notify::new()),
    };
    let d = done.clone();
    let (port, channel) = match kind {
        "rcv" => (
            node.port_rcv(Rcv::new().tag("msg", move |_, msg| {
                let (i, _): (u64, &str) = msg.decode()?;
                d.one(i);
                Ok(())
            })),
            None,
        ),
        "fn" => (
            node.port_fn(move |_, msg| {
                let (_, i, _): (&str, u64, &str) = msg.decode()?;
                d.one(i);
                Ok(())
            }),
            None,
        ),
        "actor" => (node.port_actor(move |_, _| Sink(d)).0, None),
        "channel" => {
            let (port, rx) = node.port_channel();
            (port, Some(rx))
        }
        other => return Err(format!("unknown kind {other}")),
    };
    let start = Instant::now();
    for i in 0..n {
        node.snd(&port, &("msg", i, PAYLOAD))
            .map_err(|e| e.to_string())?;
    }
    let wait = Duration::from_secs(60);
    if let Some(mut rx) = channel {
        for _ in 0..n {
            let p = tokio::time::timeout(wait, rx.recv())
                .await
                .map_err(|_| "timed out")?
                .ok_or("channel closed")?;
            let (_, i, _): (&str, u64, &str) = p.decode().map_err(|e| e.to_string())?;
            done.one(i);
        }
    } else if done.seen.load(Ordering::Relaxed) < n {
        tokio::time::timeout(wait, done.notify.notified())
            .await
            .map_err(|_| {
                format!(
                    "timed out with {} of {n}",
                    done.seen.load(Ordering::Relaxed)
                )
            })?;
    }
    let elapsed = start.elapsed();
    node.shutdown();
    Ok(elapsed)
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "rcv".into());
    let n: u64 = args
        .next()
        .map_or(Ok(100_000), |s| s.parse())
        .map_err(|e| format!("count: {e}"))?;
    let elapsed = match kind.as_str() {
        "packet" => packet_loop(n, PAYLOAD.len()),
        "packet4k" => packet_loop(n, 4096),
        "mutex" => mutex_loop(n, true),
        "nomutex" => mutex_loop(n, false),
        _ => actix_rt::System::new().block_on(run(&kind, n))?,
    };
    let per = elapsed.as_nanos() as f64 / n.max(1) as f64;
    println!("{kind}: {n} messages in {elapsed:?} = {per:.1} ns/message");
    Ok(())
}

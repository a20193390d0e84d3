//! Local message rate of the node's handler ports: N messages sent with
//! `Node::snd` to one port, timed until its callback has seen the last.
//!
//! ```text
//! cargo run --release --example port_speed                    # every kind
//! cargo run --release --example port_speed -- --kind tag --count 1000000
//! ```
//!
//! Kinds: `fn` ([`Node::port_fn`]), `tag` (a [`Rcv`] tag callback, which
//! gets the message without its tag), `async` ([`Node::port_async`], a
//! future per message), `actor` (an actix actor port, for comparison).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use aemp::{Node, Packet, Rcv};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "local message rate of handler ports")]
struct Args {
    /// fn, tag, async or actor; all of them when not given.
    #[arg(long)]
    kind: Option<String>,
    #[arg(long, default_value_t = 200_000)]
    count: u64,
}

/// Counts messages; says when the last one came.
#[derive(Clone)]
struct Counter {
    seen: Arc<AtomicU64>,
    want: u64,
    done: Arc<tokio::sync::Notify>,
}

impl Counter {
    fn hit(&self) {
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.want {
            self.done.notify_one();
        }
    }
}

struct Sink(Counter);

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Packet> for Sink {
    type Result = ();
    fn handle(&mut self, _: Packet, _: &mut Context<Self>) {
        self.0.hit();
    }
}

async fn run(node: &Node, kind: &str, count: u64) -> Result<f64, String> {
    let counter = Counter {
        seen: Arc::new(AtomicU64::new(0)),
        want: count,
        done: Arc::new(tokio::sync::Notify::new()),
    };
    let c = counter.clone();
    let port = match kind {
        "fn" => node.port_fn(move |_, _| {
            c.hit();
            Ok(())
        }),
        "tag" => node.port_rcv(Rcv::new().tag("msg", move |_, _| {
            c.hit();
            Ok(())
        })),
        "async" => node.port_async(move |_, _| {
            let c = c.clone();
            async move {
                c.hit();
                Ok(())
            }
        }),
        "actor" => node.port(Sink(c).start().recipient()),
        other => return Err(format!("unknown kind {other}")),
    };
    let payload = "x".repeat(40);
    let start = Instant::now();
    for i in 0..count {
        node.snd(&port, &("msg", i, &payload))
            .map_err(|e| e.to_string())?;
    }
    tokio::time::timeout(Duration::from_secs(300), counter.done.notified())
        .await
        .map_err(|_| format!("{kind}: not all messages arrived"))?;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    node.kil(&port, vec![]).map_err(|e| e.to_string())?;
    Ok(rate)
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let kinds: Vec<String> = match &args.kind {
        Some(k) => vec![k.clone()],
        None => ["fn", "tag", "async", "actor"].map(String::from).to_vec(),
    };
    actix_rt::System::new().block_on(async move {
        let node = Node::builder()
            .node_id("speed")
            .start()
            .await
            .map_err(|e| e.to_string())?;
        for kind in &kinds {
            let rate = run(&node, kind, args.count).await?;
            println!("{kind:>6}: {} msgs, {:.0} msg/s", args.count, rate);
        }
        node.shutdown();
        Ok(())
    })
}

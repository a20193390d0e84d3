//! Two aemp nodes talking: node `pong` (its own thread and actix system)
//! listens on 127.0.0.1 with an OS-chosen port and has a port `pong` that
//! answers every `["ping", reply_port, seq]` with `["pong", seq]`; node
//! `ping` seeds it, then makes N round trips one after another and prints
//! the round-trip time percentiles.
//!
//! ```text
//! cargo run --release --example ping_pong [-- --count 20000]
//! ```

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use aemp::{Node, Packet, PortId};
use clap::Parser;

#[derive(Parser)]
#[command(about = "AEMP round trips between two nodes on 127.0.0.1")]
struct Args {
    /// Number of round trips.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Shared secret of both nodes.
    #[arg(long, default_value = "geheim")]
    secret: String,
}

/// The `pong` port: answers pings.
struct Ponger {
    node: Node,
}

impl Actor for Ponger {
    type Context = Context<Self>;
}

impl Handler<Packet> for Ponger {
    type Result = ();

    fn handle(&mut self, msg: Packet, _: &mut Context<Self>) {
        match msg.decode::<(String, PortId, u64)>() {
            Ok((tag, reply, seq)) if tag == "ping" => {
                if let Err(e) = self.node.snd(&reply, &("pong", seq)) {
                    eprintln!("pong: cannot answer: {e}");
                }
            }
            _ => eprintln!("pong: unexpected message {:?}", msg.values()),
        }
    }
}

/// Runs node `pong` until the process ends; reports its address.
fn pong_node(secret: String, ready: std_mpsc::Sender<Result<String, String>>) {
    let sys = System::new();
    let started = sys.block_on(async move {
        let node = Node::builder()
            .node_id("pong")
            .secret(secret)
            .bind("127.0.0.1:0")
            .start()
            .await
            .map_err(|e| e.to_string())?;
        let ponger = Ponger { node: node.clone() }.start();
        node.port_named("pong", ponger.recipient())
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(node.listen_addrs()[0].to_string())
    });
    let ok = started.is_ok();
    let _ = ready.send(started);
    if ok {
        let _ = sys.run();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn ping(args: Args, addr: String) -> Result<(), String> {
    let node = Node::builder()
        .node_id("ping")
        .secret(args.secret)
        .seed(addr.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let (inbox, mut rx) = node.port_channel();
    let target = PortId::from("pong#pong");

    node.wait_node_up("pong", Duration::from_secs(10))
        .await
        .map_err(|_| format!("node pong at {addr} did not come up"))?;
    println!(
        "ping: connected to pong at {addr}; {} round trips",
        args.count
    );

    let warmup = (args.count / 10).min(1000);
    let mut rtts = Vec::with_capacity(args.count);
    let started = Instant::now();
    for seq in 0..(warmup + args.count) as u64 {
        let t0 = Instant::now();
        node.snd(&target, &("ping", &inbox, seq))
            .map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .map_err(|_| format!("no pong for ping {seq} within 5 s"))?
            .ok_or("inbox closed")?;
        let (_, got): (String, u64) = reply.decode().map_err(|e| e.to_string())?;
        if got != seq {
            return Err(format!("pong {got} for ping {seq}"));
        }
        if seq >= warmup as u64 {
            rtts.push(t0.elapsed());
        }
    }
    let total = started.elapsed();
    rtts.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "round trip (µs): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        us(percentile(&rtts, 50.0)),
        us(percentile(&rtts, 90.0)),
        us(percentile(&rtts, 99.0)),
        us(percentile(&rtts, 99.9)),
        us(rtts[rtts.len() - 1]),
    );
    println!(
        "{} round trips in {:.3} s = {:.0} round trips/s",
        rtts.len() + warmup,
        total.as_secs_f64(),
        (rtts.len() + warmup) as f64 / total.as_secs_f64()
    );
    node.shutdown();
    Ok(())
}

fn main() {
    let args = Args::parse();
    if args.count == 0 {
        eprintln!("--count must be at least 1");
        std::process::exit(2);
    }
    let (tx, rx) = std_mpsc::channel();
    let secret = args.secret.clone();
    std::thread::spawn(move || pong_node(secret, tx));
    let result = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(addr)) => System::new().block_on(ping(args, addr)),
        Ok(Err(e)) => Err(format!("node pong failed to start: {e}")),
        Err(_) => Err("node pong did not start".into()),
    };
    if let Err(e) = result {
        eprintln!("ping_pong: {e}");
        std::process::exit(1);
    }
}

//! One-way throughput, speaking the protocol of the Perl benchmark
//! (`shared/peer/bench.pl`), so a Rust sender can drive a Perl receiver and
//! the reverse.
//!
//! All messages go to the receiver's port `sink`:
//! one optional `["start", N, reply_port]`, then N × `["msg", i, payload]`
//! (i = 1..N, 40-byte ASCII payload). When all N have arrived the receiver
//! prints `receiver: N msgs in T s = R msg/s` and sends `["done", N, T, R]`
//! to the reply port.
//!
//! ```text
//! cargo run --release --example throughput                       # both, Rust->Rust
//! cargo run --release --example throughput -- --cert tests/fixtures/certs/gencert-openssl.pem   # both, over TLS
//! cargo run --release --example throughput -- --framing cbor       # both, cbor framing
//! cargo run --release --example throughput -- --role receiver --nodeid benchR --bind 127.0.0.1:4201 --secret S
//! cargo run --release --example throughput -- --role sender --nodeid benchS --seed 127.0.0.1:4201 --target benchR#sink --count N --secret S
//! cargo run --release --example throughput -- --framing storable   # both nodes list only storable
//! ```
//!
//! `--framing a,b` sets the framings the node lists (in that order); the
//! peer sends the first of them it supports.

use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use aemp::{Lenient, Node, Packet, PortId};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Debug, Clone)]
#[command(about = "AEMP one-way throughput benchmark (bench.pl protocol)")]
struct Args {
    /// receiver or sender; without it, runs a receiver child and the sender.
    #[arg(long)]
    role: Option<String>,
    #[arg(long)]
    nodeid: Option<String>,
    #[arg(long)]
    bind: Option<String>,
    #[arg(long)]
    seed: Option<String>,
    #[arg(long, default_value = "benchR#sink")]
    target: String,
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    #[arg(long, default_value = "geheim")]
    secret: String,
    #[arg(long, default_value_t = 40)]
    payload: usize,
    /// receiver: exit after one run.
    #[arg(long)]
    once: bool,
    #[arg(long, default_value = "rust->rust")]
    label: String,
    /// sender: give up after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// A `cert` PEM blob (key and certificate): both nodes talk TLS.
    #[arg(long)]
    cert: Option<String>,
    /// The framings this node lists, comma-separated (`json`, `storable`).
    #[arg(long, value_delimiter = ',')]
    framing: Vec<aemp::wire::Framing>,
}

/// A builder with `--cert` and `--framing` applied.
fn configure(mut builder: aemp::NodeBuilder, args: &Args) -> Result<aemp::NodeBuilder, String> {
    if let Some(cert) = cert(args)? {
        builder = builder.cert(cert);
    }
    if !args.framing.is_empty() {
        builder = builder.framings(args.framing.iter().copied());
    }
    Ok(builder)
}

/// The node's certificate, if `--cert` names one.
fn cert(args: &Args) -> Result<Option<aemp::wire::NodeCert>, String> {
    let Some(file) = &args.cert else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    aemp::wire::NodeCert::from_pem(&pem)
        .map(Some)
        .map_err(|e| format!("{file}: {e}"))
}

/// `["start", N, reply]` or `["msg", i, payload]`.
#[derive(Deserialize)]
struct BenchMsg<'a>(
    #[serde(borrow)] Cow<'a, str>,
    Lenient<u64>,
    #[serde(borrow, default)] Option<Cow<'a, str>>,
);

struct Sink {
    node: Node,
    default_count: u64,
    want: u64,
    n: u64,
    t0: Option<Instant>,
    reply: Option<String>,
    once: bool,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Packet> for Sink {
    type Result = ();

    fn handle(&mut self, msg: Packet, ctx: &mut Context<Self>) {
        let Ok(BenchMsg(tag, num, extra)) = msg.decode::<BenchMsg>() else {
            eprintln!("receiver: ignoring unexpected message {:?}", msg.values());
            return;
        };
        match &*tag {
            "start" => {
                self.want = num.0;
                self.n = 0;
                self.t0 = Some(Instant::now());
                self.reply = extra.map(Cow::into_owned);
            }
            "msg" => {
                self.t0.get_or_insert_with(Instant::now);
                self.n += 1;
                if self.n == self.want {
                    self.finish(ctx);
                }
            }
            other => eprintln!("receiver: ignoring tag {other:?}"),
        }
    }
}

impl Sink {
    fn finish(&mut self, ctx: &mut Context<Self>) {
        let t = self.t0.take().map_or(0.0, |t0| t0.elapsed().as_secs_f64());
        let r = self.n as f64 / t.max(1e-9);
        println!("receiver: {} msgs in {t:.3} s = {r:.0} msg/s", self.n);
        if let Some(reply) = self.reply.take()
            && let Err(e) = self.node.snd(&reply, &("done", self.n, t, r))
        {
            eprintln!("receiver: cannot reply: {e}");
        }
        self.n = 0;
        self.want = self.default_count;
        if self.once {
            // let "done" leave before exiting
            ctx.run_later(Duration::from_millis(300), |_, _| System::current().stop());
        }
    }
}

async fn receiver(args: Args) -> Result<(), String> {
    let builder = Node::builder()
        .node_id(args.nodeid.clone().unwrap_or_else(|| "benchR".into()))
        .secret(args.secret.as_str())
        .bind(args.bind.clone().unwrap_or_else(|| "127.0.0.1:4201".into()));
    let node = configure(builder, &args)?
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let sink = Sink {
        node: node.clone(),
        default_count: args.count,
        want: args.count,
        n: 0,
        t0: None,
        reply: None,
        once: args.once,
    }
    .start();
    let port = node
        .port_named("sink", sink.recipient())
        .map_err(|e| e.to_string())?;
    let addrs: Vec<String> = node.listen_addrs().iter().map(|a| a.to_string()).collect();
    println!(
        "receiver: {} listening on {}, port {port}",
        node.id(),
        addrs.join(" ")
    );
    Ok(())
}

/// Runs the sender; returns the final result line.
async fn sender(args: Args) -> Result<String, String> {
    let seed = args
        .seed
        .clone()
        .ok_or("sender: --seed HOST:PORT is required")?;
    let builder = Node::builder()
        .node_id(args.nodeid.clone().unwrap_or_else(|| "benchS".into()))
        .secret(args.secret.as_str())
        .seed(seed);
    let node = configure(builder, &args)?
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let target = PortId::from(args.target.as_str());
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    while !node.node_is_up(target.node()) {
        if Instant::now() > deadline {
            return Err(format!("sender: node {} did not come up", target.node()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (result, mut rx) = node
        .port_channel_named("result")
        .map_err(|e| e.to_string())?;
    let payload: String = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        .chars()
        .cycle()
        .take(args.payload)
        .collect();

    let ts = Instant::now();
    let send = |e: aemp::SendError| e.to_string();
    node.snd(&target, &("start", args.count, &result))
        .map_err(send)?;
    for i in 1..=args.count {
        node.snd_async(&target, &("msg", i, payload.as_str()))
            .await
            .map_err(send)?;
    }
    let reply = tokio::time::timeout_at(deadline.into(), rx.recv())
        .await
        .map_err(|_| format!("sender: timeout after {} s", args.timeout))?
        .ok_or("sender: result port closed")?;
    let st = ts.elapsed().as_secs_f64();
    let (_, n, t, r): (String, Lenient<u64>, Lenient<f64>, Lenient<f64>) = reply
        .decode()
        .map_err(|e| format!("sender: bad done reply: {e}"))?;
    println!(
        "sender clock incl. done reply: {st:.3} s = {:.0} msg/s",
        args.count as f64 / st
    );
    node.shutdown();
    Ok(format!(
        "{}: {} msgs in {:.3} s = {:.0} msg/s",
        args.label, n.0, t.0, r.0
    ))
}

/// Runs a receiver child process, then the sender against it.
fn both(args: Args) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--role", "receiver", "--once", "--nodeid", "benchR"])
        .args(["--bind", "127.0.0.1:0", "--secret", &args.secret])
        .args(["--count", &args.count.to_string()])
        .args(args.cert.iter().flat_map(|c| ["--cert", c.as_str()]))
        .args(
            (!args.framing.is_empty())
                .then(|| {
                    let names: Vec<&str> = args.framing.iter().map(|f| f.name()).collect();
                    ["--framing".to_string(), names.join(",")]
                })
                .into_iter()
                .flatten(),
        )
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start receiver: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no receiver stdout")?).lines();
    let first = lines
        .next()
        .ok_or("receiver exited")?
        .map_err(|e| e.to_string())?;
    // "receiver: benchR listening on 127.0.0.1:PORT, port benchR#sink"
    let addr = first
        .split(" listening on ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .ok_or_else(|| format!("unexpected receiver line: {first}"))?
        .to_owned();
    let printer = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    let sender_args = Args {
        role: Some("sender".into()),
        nodeid: Some("benchS".into()),
        seed: Some(addr),
        target: "benchR#sink".into(),
        ..args
    };
    let result = System::new().block_on(sender(sender_args));
    // the receiver exits by itself after one run; its last line comes first
    let waited = Instant::now();
    while child.try_wait().ok().flatten().is_none() && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = printer.join();
    println!("{}", result?);
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = match args.role.as_deref() {
        None | Some("both") => both(args),
        Some("receiver") => {
            let sys = System::new();
            match sys.block_on(receiver(args)) {
                Ok(()) => sys.run().map_err(|e| e.to_string()),
                Err(e) => Err(e),
            }
        }
        Some("sender") => System::new()
            .block_on(sender(args))
            .map(|line| println!("{line}")),
        Some(other) => Err(format!("--role must be receiver or sender, not {other}")),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

//! actix actors as ports: an actor that knows its port id when it starts,
//! takes typed messages, and whose panic, `die` or kil monitors on another
//! node see with its reason.
//!
//! ```text
//! cargo run --example actor_ports
//! ```
//!
//! In-process, node `boss` watches a counter actor on node `workers` with
//! a kill-form monitor (`mon $counter, $victim`, MP.pm 618) and a callback
//! monitor, makes it count, then panic; a second counter is killed by the
//! boss and hears of it.
//!
//! With `--serve 127.0.0.1:4300` it runs only node `rustA` with two
//! counters (printing `PORT <id>` for each), for a Perl node to watch
//! (`mon $port, $victim`): the first panics `--panic-after` seconds later
//! (reason `("die", "counter … crashed at 0")`), the second is still there
//! when the node shuts down 2 s after that (reason `("shutdown", "node
//! rustA is shutting down")`).

use std::time::Duration;

use actix::prelude::*;
use aemp::{ActorPort, Node, Packet, PortId, PortKilled};
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// Run one node with one counter on this address (for a Perl node).
    #[arg(long)]
    serve: Option<String>,
    /// With --serve: seconds until the counter panics.
    #[arg(long, default_value_t = 5)]
    panic_after: u64,
    #[arg(long, default_value = "geheim")]
    secret: String,
}

/// The counter's typed messages: `["add", n]`, `["get", reply_port]`,
/// `["crash"]`.
#[derive(serde::Deserialize, Message)]
#[rtype(result = "()")]
enum Count {
    #[serde(rename = "add")]
    Add(i64),
    #[serde(rename = "get")]
    Get(PortId),
    #[serde(rename = "crash")]
    Crash,
}

struct Counter {
    port: ActorPort,
    total: i64,
}

impl Actor for Counter {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        println!("  counter {} started", self.port.id());
    }
}

impl Handler<Count> for Counter {
    type Result = ();
    fn handle(&mut self, msg: Count, ctx: &mut Context<Self>) {
        match msg {
            Count::Add(n) if n < 0 => {
                // dying with a reason, from inside a handler
                self.port
                    .die(ctx, vec!["negative".into(), format!("add {n}").into()]);
            }
            Count::Add(n) => self.total += n,
            Count::Get(reply) => drop(self.port.snd(&reply, &("total", self.total))),
            Count::Crash => panic!("counter {} crashed at {}", self.port.id(), self.total),
        }
    }
}

impl Handler<Packet> for Counter {
    type Result = ();
    fn handle(&mut self, msg: Packet, _: &mut Context<Self>) {
        println!(
            "  counter: unknown message {}",
            Value::Array(msg.values().unwrap_or_default())
        );
    }
}

impl Handler<PortKilled> for Counter {
    type Result = ();
    fn handle(&mut self, killed: PortKilled, ctx: &mut Context<Self>) {
        println!(
            "  counter {} was killed: {}",
            self.port.id(),
            Value::Array(killed.reason)
        );
        ctx.stop();
    }
}

fn counter(node: &Node) -> PortId {
    node.port_actor_typed::<Count, _, _>(|port, _| Counter { port, total: 0 })
        .0
}

/// Watches `port` from `boss` with a kill-form monitor; the victim's death
/// (with the reason) is printed.
fn watch(boss: &Node, port: &PortId) {
    let victim = boss.port_fn(|_, _| Ok(()));
    let what = port.clone();
    boss.mon(&victim, move |reason| {
        println!(
            "boss: kill-form monitor of {what} fired: {}",
            Value::Array(reason)
        )
    })
    .forget();
    boss.mon_kil(port, &victim).forget();
}

async fn demo(args: &Args) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let workers = Node::builder()
        .node_id("workers")
        .secret(args.secret.as_str())
        .bind("127.0.0.1:0")
        .start()
        .await
        .map_err(|e| err(&e))?;
    let boss = Node::builder()
        .node_id("boss")
        .secret(args.secret.as_str())
        .start()
        .await
        .map_err(|e| err(&e))?;
    boss.connect(workers.listen_addrs()[0].to_string())
        .await
        .map_err(|e| err(&e))?;
    let (inbox, mut rx) = boss.port_channel();

    for (n, end) in ["crash", "die", "kil"].into_iter().enumerate() {
        let c = counter(&workers);
        watch(&boss, &c);
        let (tx, died) = tokio::sync::oneshot::channel();
        boss.mon(&c, move |reason| drop(tx.send(reason))).forget();
        boss.snd(&c, &("add", 20 + n)).map_err(|e| err(&e))?;
        boss.snd(&c, &("mul", 2)).map_err(|e| err(&e))?; // unknown tag
        boss.snd(&c, &("get", &inbox)).map_err(|e| err(&e))?;
        let total = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .map_err(|_| "no total")?
            .ok_or("inbox closed")?;
        println!(
            "boss: {}",
            Value::Array(total.values().map_err(|e| err(&e))?)
        );
        match end {
            "crash" => boss.snd(&c, &("crash",)).map_err(|e| err(&e))?,
            "die" => boss.snd(&c, &("add", -1)).map_err(|e| err(&e))?,
            _ => boss
                .kil(&c, vec!["boss".into(), "enough".into()])
                .map_err(|e| err(&e))?,
        }
        let reason = tokio::time::timeout(Duration::from_secs(5), died)
            .await
            .map_err(|_| "the counter did not die")?
            .map_err(|e| err(&e))?;
        println!("boss: {c} died: {}", Value::Array(reason));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    boss.shutdown();
    workers.shutdown();
    Ok(())
}

async fn serve(args: &Args, addr: &str) -> Result<(), String> {
    let node = Node::builder()
        .node_id("rustA")
        .secret(args.secret.as_str())
        .bind(addr)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let c = counter(&node);
    let survivor = counter(&node);
    println!("PORT {c}");
    println!("PORT {survivor}");
    tokio::time::sleep(Duration::from_secs(args.panic_after)).await;
    node.snd(&c, &("crash",)).map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.shutdown_gracefully(node.shutdown_reason(), Duration::from_secs(2))
        .await;
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let result = actix_rt::System::new().block_on(async {
        match args.serve.clone() {
            Some(addr) => serve(&args, &addr).await,
            None => demo(&args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("actor_ports: {e}");
        std::process::exit(1);
    }
}

//! A supervisor: spawns a worker port on another node, monitors it, and
//! respawns it when it dies — when its handler crashes, and when its whole
//! node process is killed.
//!
//! ```text
//! cargo run --release --example supervisor
//! ```
//!
//! The example starts two worker nodes as child processes (this program
//! with `--role worker`), each with the init function `Example::worker`
//! registered. The supervisor node spawns a worker on the first, sends it
//! jobs, makes it crash once (it is respawned on the same node), then kills
//! the first node's process (the worker is respawned on the second node).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aemp::{Node, PortBehaviour, PortId, Reason};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    /// `worker` to run a worker node (used by the example itself).
    #[arg(long)]
    role: Option<String>,
    #[arg(long, default_value = "worker")]
    nodeid: String,
    #[arg(long, default_value = "supervisor-example")]
    secret: String,
}

/// The worker: answers `["job", n]` with `["done", n, node]` to the
/// supervisor's port, and fails on `["crash"]`.
fn worker_init(
    ctx: &aemp::PortContext,
    args: Vec<Value>,
) -> Result<PortBehaviour, aemp::HandlerError> {
    let boss: PortId = args
        .first()
        .and_then(Value::as_str)
        .ok_or("Example::worker needs the supervisor's port")?
        .into();
    println!("  [{}] worker {} started", ctx.node().id(), ctx.port());
    Ok(PortBehaviour::handler(move |ctx, msg| {
        let (tag, n): (String, Option<u64>) = match msg.values()?.as_slice() {
            [Value::String(t)] => (t.clone(), None),
            [Value::String(t), n] => (t.clone(), n.as_u64()),
            _ => return Err("unexpected message".into()),
        };
        match tag.as_str() {
            "job" => {
                ctx.snd(&boss, &("done", n, ctx.node().id()))?;
                Ok(())
            }
            "crash" => Err(format!("worker {} asked to crash", ctx.port()).into()),
            other => Err(format!("unknown job {other}").into()),
        }
    }))
}

async fn run_worker(args: Args) -> Result<(), String> {
    let node = Node::builder()
        .node_id(args.nodeid)
        .secret(args.secret)
        .bind("127.0.0.1:0")
        .init_fn("Example::worker", worker_init)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    println!("WORKER {}", node.listen_addrs()[0]);
    std::future::pending::<()>().await;
    Ok(())
}

/// A worker node in a child process, killed on drop.
struct WorkerProcess {
    id: String,
    child: Child,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_worker_node(id: &str, secret: &str) -> Result<(WorkerProcess, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--role", "worker", "--nodeid", id, "--secret", secret])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start worker node: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let process = WorkerProcess {
        id: id.to_owned(),
        child,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match line.strip_prefix("WORKER ") {
                Some(addr) => {
                    let _ = tx.send(addr.to_owned());
                }
                None => println!("{line}"),
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| format!("worker node {id} did not start"))?;
    Ok((process, addr))
}

/// Spawns a worker on `node` and monitors it; its death reason arrives on
/// `deaths`.
fn spawn_worker(
    sup: &Node,
    node: &str,
    boss: &PortId,
    deaths: &mpsc::UnboundedSender<(PortId, Reason)>,
) -> Result<PortId, String> {
    let worker = sup
        .spawn(node, "Example::worker", &json!([boss]))
        .map_err(|e| e.to_string())?;
    let (tx, w) = (deaths.clone(), worker.clone());
    sup.mon(&worker, move |reason| {
        let _ = tx.send((w, reason));
    })
    .forget();
    println!("supervisor: spawned {worker}");
    Ok(worker)
}

async fn supervise(args: Args) -> Result<(), String> {
    let (mut first, addr1) = start_worker_node("worker1", &args.secret)?;
    let (_second, addr2) = start_worker_node("worker2", &args.secret)?;
    let sup = Node::builder()
        .node_id("supervisor")
        .secret(args.secret.as_str())
        .connect_interval(Duration::from_millis(200))
        .monitor_timeout(Duration::from_secs(5))
        .start()
        .await
        .map_err(|e| e.to_string())?;
    sup.add_addresses("worker1", [addr1]);
    sup.add_addresses("worker2", [addr2]);
    let (boss, mut results) = sup.port_channel();
    let (deaths_tx, mut deaths) = mpsc::unbounded_channel();

    let mut home = "worker1".to_owned();
    let mut worker = spawn_worker(&sup, &home, &boss, &deaths_tx)?;
    let mut restarts = 0;
    let mut job = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(150));
    while restarts < 2 {
        tokio::select! {
            _ = ticker.tick() => {
                job += 1;
                match job {
                    5 => {
                        println!("supervisor: asking {worker} to crash");
                        let _ = sup.snd(&worker, &("crash",));
                    }
                    12 => {
                        println!("supervisor: killing the process of node {}", first.id);
                        let _ = first.child.kill();
                        let _ = first.child.wait();
                    }
                    _ => {
                        let _ = sup.snd(&worker, &("job", job));
                    }
                }
            }
            Some(done) = results.recv() => {
                let v = done.values().map_err(|e| e.to_string())?;
                println!("supervisor: {}", Value::Array(v));
            }
            Some((dead, reason)) = deaths.recv() => {
                println!("supervisor: worker {dead} died: {}", Value::Array(reason.clone()));
                if reason.first().and_then(Value::as_str) == Some("transport_error") {
                    home = "worker2".to_owned(); // its node is gone: move
                }
                worker = spawn_worker(&sup, &home, &boss, &deaths_tx)?;
                restarts += 1;
            }
        }
    }
    // a few more jobs on the last worker
    for _ in 0..3 {
        job += 1;
        sup.snd(&worker, &("job", job)).map_err(|e| e.to_string())?;
        let done = tokio::time::timeout(Duration::from_secs(5), results.recv())
            .await
            .map_err(|_| "no answer from the respawned worker")?
            .ok_or("results closed")?;
        println!(
            "supervisor: {}",
            Value::Array(done.values().map_err(|e| e.to_string())?)
        );
    }
    println!("supervisor: done after {restarts} restarts");
    sup.shutdown();
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = match args.role.as_deref() {
        Some("worker") => actix_rt::System::new().block_on(run_worker(args)),
        None => actix_rt::System::new().block_on(supervise(args)),
        Some(other) => Err(format!("unknown role {other}")),
    };
    if let Err(e) = result {
        eprintln!("supervisor: {e}");
        std::process::exit(1);
    }
}

//! How fast a network of aemp nodes meshes, and how fast a group
//! registration spreads: starts N nodes as separate processes (this
//! program with `--role node`), all given only the first one's address as
//! their seed, and prints the time until every node is connected to every
//! other, then the time until a `grp_reg` on one node is seen by all.
//!
//! ```text
//! cargo run --release --example mesh -- --nodes 8 --nodes 32 --nodes 64
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aemp::Node;
use clap::Parser;

#[derive(Parser, Clone)]
#[command(about = "time to a full mesh of N aemp nodes")]
struct Args {
    /// Network sizes to measure (one run each).
    #[arg(long = "nodes", default_values_t = vec![8, 32, 64])]
    nodes: Vec<usize>,
    /// Used by the program itself: run one node.
    #[arg(long)]
    role: Option<String>,
    #[arg(long, default_value = "n")]
    nodeid: String,
    #[arg(long)]
    seed: Option<String>,
    /// How many nodes the network has (a node reports when it sees all).
    #[arg(long, default_value_t = 0)]
    expect: usize,
    #[arg(long, default_value = "mesh-example")]
    secret: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// One node: reports `ADDR`, `MESHED <ms>` once it is connected to all
/// others, `SEEN <ms>` when the group `probe` gets a member, and registers
/// a port in `probe` when a line `REG` arrives on stdin.
async fn run_node(args: Args) -> Result<(), String> {
    let mut b = Node::builder()
        .node_id(args.nodeid)
        .secret(args.secret)
        .bind("127.0.0.1:0");
    if let Some(seed) = args.seed {
        b = b.seed(seed);
    }
    let node = b.start().await.map_err(|e| e.to_string())?;
    println!("ADDR {}", node.listen_addrs()[0]);
    let others = args.expect.saturating_sub(1);
    let n = node.clone();
    let meshed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let m = meshed.clone();
    let check = move || {
        if n.up_nodes().len() >= others && !m.swap(true, std::sync::atomic::Ordering::SeqCst) {
            println!("MESHED {:.1}", now_ms());
        }
    };
    check();
    node.mon_nodes(move |_, _, _| check()).forget();
    node.grp_mon("probe", |all, _, _| {
        if !all.is_empty() {
            println!("SEEN {:.1}", now_ms());
        }
    })
    .forget();
    // stdin commands, read on a thread
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut keep = Vec::new();
    while let Some(line) = rx.recv().await {
        if line.trim() == "REG" {
            let (port, rx) = node.port_channel();
            keep.push(rx);
            let t = now_ms();
            node.grp_reg("probe", &port)
                .map_err(|e| e.to_string())?
                .forget();
            println!("REGISTERED {t:.1}");
        }
    }
    Ok(())
}

/// A node process and what it printed.
struct Proc {
    child: Child,
    stdin: ChildStdin,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Event {
    Addr(usize, String),
    Meshed(usize, f64),
    Seen(usize, f64),
    Registered(f64),
}

fn spawn_node(
    i: usize,
    args: &Args,
    n: usize,
    seed: Option<&str>,
    events: mpsc::Sender<Event>,
) -> Result<Proc, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--role",
        "node",
        "--nodeid",
        &format!("n{i}"),
        "--expect",
        &n.to_string(),
    ])
    .args(["--secret", &args.secret])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    if let Some(seed) = seed {
        cmd.args(["--seed", seed]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start node {i}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut w = line.split_whitespace();
            let (tag, val) = (w.next().unwrap_or_default(), w.next().unwrap_or_default());
            let ms = val.parse::<f64>().unwrap_or(0.0);
            let ev = match tag {
                "ADDR" => Event::Addr(i, val.to_owned()),
                "MESHED" => Event::Meshed(i, ms),
                "SEEN" => Event::Seen(i, ms),
                "REGISTERED" => Event::Registered(ms),
                _ => continue,
            };
            if events.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(Proc { child, stdin })
}

fn measure(args: &Args, n: usize) -> Result<(f64, f64), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    let wait = |rx: &mpsc::Receiver<Event>| {
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .map_err(|_| format!("{n} nodes: timed out"))
    };
    let (tx, rx) = mpsc::channel();
    let start = now_ms();
    let mut procs = vec![spawn_node(0, args, n, None, tx.clone())?];
    let seed = loop {
        if let Event::Addr(0, a) = wait(&rx)? {
            break a;
        }
    };
    for i in 1..n {
        procs.push(spawn_node(i, args, n, Some(&seed), tx.clone())?);
    }
    let mut meshed = vec![None; n];
    while meshed.iter().any(Option::is_none) {
        if let Event::Meshed(i, t) = wait(&rx)? {
            meshed[i] = Some(t);
        }
    }
    let mesh_ms = meshed.iter().flatten().fold(0.0f64, |a, b| a.max(*b)) - start;

    writeln!(procs[n / 2].stdin, "REG").map_err(|e| e.to_string())?;
    let mut registered = None;
    let mut seen = vec![None; n];
    while registered.is_none() || seen.iter().any(Option::is_none) {
        match wait(&rx)? {
            Event::Registered(t) => registered = Some(t),
            Event::Seen(i, t) if seen[i].is_none() => seen[i] = Some(t),
            _ => {}
        }
    }
    let reg_ms = seen.iter().flatten().fold(0.0f64, |a, b| a.max(*b)) - registered.unwrap_or(0.0);
    drop(procs);
    Ok((mesh_ms / 1000.0, reg_ms / 1000.0))
}

fn main() {
    let args = Args::parse();
    if args.role.as_deref() == Some("node") {
        if let Err(e) = actix_rt::System::new().block_on(run_node(args)) {
            eprintln!("node: {e}");
            std::process::exit(1);
        }
        return;
    }
    for &n in &args.nodes {
        match measure(&args, n) {
            Ok((mesh, reg)) => println!(
                "{n} nodes: full mesh {mesh:.2} s after the first node started; grp_reg seen by all in {:.0} ms",
                reg * 1000.0
            ),
            Err(e) => {
                eprintln!("mesh: {e}");
                std::process::exit(1);
            }
        }
    }
}

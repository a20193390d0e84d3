//! Soak: several nodes in one process, connected through a seed, under a
//! constant load for a given time, printing at intervals how many
//! messages were sent, received and lost, and the process's RSS.
//!
//! ```text
//! cargo run --release --example soak -- --minutes 30
//! cargo run --release --example soak -- --seconds 60 --nodes 3 --rate 20000
//! ```
//!
//! Load, per node and second, spread over 10 ms ticks (after a stall of
//! the process, at most four ticks' worth is made up):
//! * `--rate` messages to the sink ports of the other nodes, each carrying
//!   a sequence number per (sender, receiver): a receiver counts a gap as
//!   lost and a repeat or a step back as out of order;
//! * churn that must not leave state behind: a spawned port on another
//!   node (its init registers it in a Global group), monitored, asked
//!   with a `cal` and killed again; a short-lived local port with a
//!   monitor and a timer.
//!
//! After `--warmup` (default 60 s) the RSS is taken as the baseline; at
//! the end the example waits for messages in flight, prints a summary and
//! exits non-zero if any message was lost or out of order, or if the RSS
//! grew by more than `--max-growth` percent (default 10) over the baseline.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aemp::{Node, PortBehaviour, Rcv};
use clap::Parser;
use parking_lot::Mutex;

#[derive(Parser, Debug, Clone)]
#[command(about = "aemp soak: constant load, loss and RSS over time")]
struct Args {
    /// Run time in minutes (added to --seconds).
    #[arg(long, default_value_t = 0)]
    minutes: u64,
    /// Run time in seconds (added to --minutes; default 60 when both are 0).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Number of nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Messages per second each node sends (to the others, in turn).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Churn operations (spawn/monitor/group/kill, cal) per second per node.
    #[arg(long, default_value_t = 50)]
    churn: u64,
    /// Seconds between report lines.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Seconds before the RSS baseline is taken.
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// Allowed RSS growth over the baseline, in percent.
    #[arg(long, default_value_t = 10.0)]
    max_growth: f64,
}

/// The system allocator, counting the bytes in use (to tell a leak from
/// the allocator keeping freed memory: RSS can grow while this stays).
struct Counting;

static HEAP: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a
// counter is updated besides.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: ptr came from alloc/realloc with this layout
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as for alloc and dealloc
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes the program has allocated and not freed, in KiB.
fn heap_kib() -> i64 {
    HEAP.load(Ordering::Relaxed) as i64 / 1024
}

/// Counts shared by all nodes.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    disorder: AtomicU64,
    churn: AtomicU64,
    churn_failed: AtomicU64,
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let page_kib = 4;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_kib)
}

/// A sink port: checks the per-sender sequence of each message.
fn sink(node: &Node, stats: Arc<Stats>) -> Result<aemp::PortId, String> {
    let next: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    node.port_fn_named("sink", move |_, msg| {
        let (from, seq, _payload): (String, u64, String) = msg.decode()?;
        let mut next = next.lock();
        let want = next.entry(from).or_insert(0);
        if seq > *want {
            stats.lost.fetch_add(seq - *want, Ordering::Relaxed);
        } else if seq < *want {
            stats.disorder.fetch_add(1, Ordering::Relaxed);
        }
        *want = seq.max(*want) + 1;
        stats.received.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .map_err(|e| e.to_string())
}

async fn start_node(i: usize, seed: Option<String>) -> Result<Node, String> {
    let mut b = Node::builder()
        .node_id(format!("soak{i}"))
        .secret("soak")
        .bind("127.0.0.1:0")
        .init_fn("Soak::worker", |ctx, _| {
            // in the group until the port dies (Perl's void context)
            ctx.node().grp_reg("soak-churn", ctx.port())?.forget();
            Ok(PortBehaviour::rcv(Rcv::new().tag("ping", |ctx, msg| {
                let (reply,): (String,) = msg.decode()?;
                ctx.snd(&reply, &("pong",))?;
                Ok(())
            })))
        });
    if let Some(seed) = seed {
        b = b.seed(seed);
    }
    b.start().await.map_err(|e| e.to_string())
}

/// One node's message load: `rate` per second, round robin over `peers`.
async fn send_load(node: Node, peers: Vec<String>, rate: u64, until: Instant, stats: Arc<Stats>) {
    let payload = "p".repeat(40);
    let mut seq: HashMap<String, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut done = 0u64;
    let mut turn = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        // constant load: after a stall of this process, catch up by at
        // most four ticks' worth, rather than in one burst
        let per_tick = (rate / 100).max(1);
        done = done.max(due.saturating_sub(4 * per_tick));
        while done < due {
            let peer = &peers[turn % peers.len()];
            turn += 1;
            let n = seq.entry(peer.clone()).or_insert(0);
            match node.snd(format!("{peer}#sink"), &(node.id(), *n, &payload)) {
                Ok(()) => {
                    *n += 1;
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => eprintln!("{}: snd failed: {error}", node.id()),
            }
            done += 1;
        }
    }
}

/// One node's churn: state made and removed again, `churn` times a second.
async fn churn(node: Node, peers: Vec<String>, churn: u64, until: Instant, stats: Arc<Stats>) {
    if churn == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / churn as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        turn += 1;
        let peer = &peers[turn % peers.len()];
        let ok = churn_once(&node, peer).await;
        stats.churn.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = ok {
            stats.churn_failed.fetch_add(1, Ordering::Relaxed);
            eprintln!("{}: churn failed: {error}", node.id());
        }
    }
}

async fn churn_once(node: &Node, peer: &str) -> Result<(), String> {
    let limit = Some(Duration::from_secs(10));
    // a spawned port on the peer (which registers it in a group):
    // monitored, asked, killed
    let worker = node
        .spawn(peer, "Soak::worker", &[(); 0])
        .map_err(|e| e.to_string())?;
    let death = node.mon_future(&worker);
    let reply = node
        .cal(&worker, &("ping",), limit)
        .await
        .map_err(|e| e.to_string())?;
    if reply.tag().as_deref() != Some("pong") {
        return Err("unexpected reply".into());
    }
    node.kil(&worker, vec![]).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), death)
        .await
        .map_err(|_| "spawned port's death not seen".to_string())?;
    // a short-lived local port with a monitor and a timer
    let local = node.port_fn(|_, _| Ok(()));
    let guard = node.mon(&local, |_| {});
    let _ = node.after(Duration::from_millis(1), &local, &("tick",));
    drop(guard);
    node.kil(&local, vec![]).map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> Result<(), String> {
    let mut args = Args::parse();
    if args.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if args.minutes == 0 && args.seconds == 0 {
        args.seconds = 60;
    }
    let run = Duration::from_secs(args.minutes * 60 + args.seconds);
    actix_rt::System::new().block_on(async move {
        let stats = Arc::new(Stats::default());
        let first = start_node(0, None).await?;
        let seed = first
            .listen_addrs()
            .first()
            .ok_or("no listener")?
            .to_string();
        let mut nodes = vec![first];
        for i in 1..args.nodes {
            nodes.push(start_node(i, Some(seed.clone())).await?);
        }
        let ids: Vec<String> = nodes.iter().map(|n| n.id().to_owned()).collect();
        for n in &nodes {
            sink(n, stats.clone())?;
            for id in &ids {
                if id != n.id() {
                    n.wait_node_up(id, Duration::from_secs(30))
                        .await
                        .map_err(|e| format!("{} never saw {id}: {e}", n.id()))?;
                }
            }
        }
        println!(
            "soak: {} nodes, {} msg/s each, {} churn/s each, {} s",
            args.nodes,
            args.rate,
            args.churn,
            run.as_secs()
        );
        let start = Instant::now();
        let until = start + run;
        for n in &nodes {
            let peers: Vec<String> = ids.iter().filter(|i| *i != n.id()).cloned().collect();
            actix_rt::spawn(send_load(
                n.clone(),
                peers.clone(),
                args.rate,
                until,
                stats.clone(),
            ));
            actix_rt::spawn(churn(n.clone(), peers, args.churn, until, stats.clone()));
        }
        let mut baseline = None;
        let mut last = (Instant::now(), 0u64);
        let every = Duration::from_secs(args.every.max(1));
        while Instant::now() < until {
            tokio::time::sleep(every.min(until.saturating_duration_since(Instant::now()))).await;
            let received = stats.received.load(Ordering::Relaxed);
            let rate = (received - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), received);
            let rss = rss_kib();
            if baseline.is_none() && start.elapsed() >= Duration::from_secs(args.warmup) {
                baseline = Some(rss);
            }
            let ports: Vec<String> = nodes.iter().map(|n| n.port_count().to_string()).collect();
            println!(
                "t={:>6.0}s sent={} received={} lost={} disorder={} churn={} (failed {}) rate={:.0} msg/s rss={} KiB heap={} KiB ports={}",
                start.elapsed().as_secs_f64(),
                stats.sent.load(Ordering::Relaxed),
                received,
                stats.lost.load(Ordering::Relaxed),
                stats.disorder.load(Ordering::Relaxed),
                stats.churn.load(Ordering::Relaxed),
                stats.churn_failed.load(Ordering::Relaxed),
                rate,
                rss,
                heap_kib(),
                ports.join("/")
            );
        }
        // what is still in flight arrives
        let drain = Instant::now() + Duration::from_secs(30);
        while stats.received.load(Ordering::Relaxed) < stats.sent.load(Ordering::Relaxed)
            && Instant::now() < drain
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (sent, received) = (
            stats.sent.load(Ordering::Relaxed),
            stats.received.load(Ordering::Relaxed),
        );
        let lost = stats.lost.load(Ordering::Relaxed) + sent.saturating_sub(received);
        let disorder = stats.disorder.load(Ordering::Relaxed);
        let end_rss = rss_kib();
        let base = baseline.unwrap_or(end_rss);
        let growth = (end_rss as f64 - base as f64) * 100.0 / base.max(1) as f64;
        println!(
            "summary: sent={sent} received={received} lost={lost} disorder={disorder} churn={} (failed {}) avg={:.0} msg/s rss after warm-up={base} KiB end={end_rss} KiB growth={growth:+.1}% heap={} KiB",
            stats.churn.load(Ordering::Relaxed),
            stats.churn_failed.load(Ordering::Relaxed),
            received as f64 / run.as_secs_f64(),
            heap_kib()
        );
        for n in &nodes {
            n.shutdown();
        }
        if lost > 0 || disorder > 0 {
            return Err(format!("{lost} lost, {disorder} out of order"));
        }
        if growth > args.max_growth {
            return Err(format!(
                "RSS grew {growth:.1}% (> {}%) after warm-up",
                args.max_growth
            ));
        }
        Ok(())
    })
}

//! A network partition, live: three nodes, each a child process in a
//! network namespace of its own, joined through a bridge in a fourth
//! namespace (`ip netns`, veth pairs; no `tc netem` or iptables needed).
//! Two cuts, each later restored: node `b`'s bridge port set down (`ip
//! link set … down` in the bridge namespace), so `b` loses `a` and `c`
//! while `a` and `c` keep each other; and the bridge ports of `a` and `b`
//! isolated (`bridge_slave isolated on`: isolated ports forward nothing to
//! each other), so `a` and `b` lose each other and both keep `c`.
//!
//! The nodes: `c` is the seed of `a` and `b` (`c` has none); Global meshes
//! `a` and `b`. Each runs with `peer_timeout` 2 s, registers its port `p`
//! in the group `g` and monitors every node it is connected to (a node
//! monitor, installed on each `Up`). Expected and asserted:
//! * every monitor of a lost node fires exactly once per cut, within
//!   `peer_timeout` plus a margin for this busy machine, with the
//!   heartbeat's `("transport_error", <node>, "peer timeout")` or a TCP
//!   error (the reason seen is printed); no other monitor fires;
//! * after the restore each lost pair is connected again, one connection
//!   per pair (who dials is a race: `b` redials its seed `c` and the
//!   nodes Global told it of, `a` and `c` redial `b`; the winner is
//!   printed), and every node's view of `g` holds all three ports again.
//!
//! The nodes are this test binary re-run for [`partition_node_process`]
//! inside their namespaces (`ip netns exec NS …`), so the whole process
//! (runtime threads included) is in the namespace. Without root, `ip` or
//! network-namespace support the test prints why and passes; set
//! `AEMP_NETNS_REQUIRED=1` to make that a failure.

mod common;

use common::netns::ip;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aemp::{Node, NodeEvent};
use common::SECRET;
use serde_json::{Value, json};

const ENV: &str = "AEMP_TEST_PARTITION_NODE";
/// The port every node listens on (each namespace has its own ports).
const PORT: u16 = 4040;
/// The nodes' `peer_timeout`.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// How late a detection may be past `peer_timeout` (2 cores, busy).
const DETECT_SLACK: Duration = Duration::from_millis(2500);
/// Every other wait (start-up, mesh, reconnection, convergence).
const LIMIT: Duration = Duration::from_secs(15);
/// The marker of the child's report lines (the harness prints its own).
const MARK: &str = "AEMP-PT ";
/// The nodes, in address order (`198.19.K.1`, `.2`, `.3`).
const NODES: [&str; 3] = ["a", "b", "c"];

/// Namespaces sets made by this process, for unique names.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn say(line: &str) {
    println!("{MARK}{line}");
}

/// The body of a child node process, not a test: a node from the JSON
/// spec in `$AEMP_TEST_PARTITION_NODE` (`id`, `bind`, `seeds`) with
/// `peer_timeout` 2 s, its port `p` in group `g`; it reports (lines
/// starting with `AEMP-PT `) `READY`, `UP <node> <outbound>`,
/// `DOWN <node> <error>`, `MON <node> <reason as JSON>` for the node
/// monitor it installs on each `Up`, and `GRP <members, sorted>` on every
/// change of `g`.
#[test]
#[ignore = "a child node process: the partition test starts it, with AEMP_TEST_PARTITION_NODE set"]
fn partition_node_process() {
    let spec: Value = serde_json::from_str(
        &std::env::var(ENV).expect("run by the partition test, with AEMP_TEST_PARTITION_NODE set"),
    )
    .expect("a JSON spec");
    let id = spec["id"].as_str().expect("id").to_owned();
    let bind = spec["bind"].as_str().expect("bind").to_owned();
    let seeds: Vec<String> = serde_json::from_value(spec["seeds"].clone()).expect("seeds");
    actix_rt::System::new().block_on(async move {
        let mut builder = Node::builder()
            .node_id(id)
            .secret(SECRET)
            .bind(bind)
            .peer_timeout(Some(PEER_TIMEOUT))
            .connect_interval(Duration::from_millis(500));
        for s in seeds {
            builder = builder.seed(s);
        }
        let node = builder.start().await.expect("node starts");
        let mut events = node.events();
        let (port, _rx) = node.port_channel_named("p").expect("port p");
        let _reg = node.grp_reg("g", &port).expect("grp_reg");
        let _gm = node.grp_mon("g", |all, _, _| {
            let mut v: Vec<&str> = all.iter().map(|p| p.as_ref()).collect();
            v.sort_unstable();
            say(&format!("GRP {}", v.join(",")));
        });
        say("READY");
        loop {
            match events.recv().await {
                Ok(NodeEvent::Up {
                    node: peer,
                    outbound,
                    ..
                }) => {
                    say(&format!("UP {peer} {outbound}"));
                    let p = peer.clone();
                    node.mon(&peer, move |r| {
                        say(&format!("MON {p} {}", Value::from(r)));
                    })
                    .forget();
                }
                Ok(NodeEvent::Down { node: peer, error }) => {
                    say(&format!("DOWN {peer} {error}"));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    say(&format!("LAGGED {n}"));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// The bridge namespace and one namespace per node, each node's `eth0`
/// a veth whose other end (`v<node>`) is a port of the bridge `br0`;
/// every namespace (with its links) is deleted on drop, also when the
/// test panics.
struct Net {
    /// `aemp-part-<pid>-<n>`; the namespaces are `<prefix>-br`, `<prefix>-a`, …
    prefix: String,
    /// The namespaces created so far.
    made: Vec<String>,
    /// The third octet of the nodes' addresses.
    k: u8,
}

impl Net {
    fn create() -> Result<Net, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut net = Net {
            prefix: format!("aemp-part-{pid}-{n}"),
            made: Vec::new(),
            k: ((pid as usize + n) % 250 + 1) as u8,
        };
        let br = net.ns("br");
        ip(&["netns", "add", &br])?;
        net.made.push(br.clone());
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for (i, node) in NODES.iter().enumerate() {
            let ns = net.ns(node);
            ip(&["netns", "add", &ns])?;
            net.made.push(ns.clone());
            let port = format!("v{node}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let addr = format!("198.19.{}.{}/24", net.k, i + 1);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// `addr:PORT` of `node`.
    fn addr(&self, node: &str) -> String {
        let i = NODES.iter().position(|n| *n == node).expect("a node") + 1;
        format!("198.19.{}.{i}:{PORT}", self.k)
    }

    /// Brings `node`'s bridge port down (`false`) or up (`true`).
    fn link(&self, node: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.ns("br"),
            "link",
            "set",
            &format!("v{node}"),
            state,
        ])
        .expect("set the bridge port");
    }

    /// Makes `node`'s bridge port isolated or not: isolated ports forward
    /// nothing to each other, only to ports that are not.
    fn isolate(&self, node: &str, on: bool) {
        let state = if on { "on" } else { "off" };
        ip(&[
            "-n",
            &self.ns("br"),
            "link",
            "set",
            &format!("v{node}"),
            "type",
            "bridge_slave",
            "isolated",
            state,
        ])
        .expect("set the bridge port's isolation");
    }

    /// Cuts (`false`) or restores (`true`) as `cut` says.
    fn apply(&self, cut: Cut, restore: bool) {
        match cut {
            Cut::Port(n) => self.link(n, restore),
            Cut::Isolate(x, y) => {
                self.isolate(x, !restore);
                self.isolate(y, !restore);
            }
        }
    }
}

/// How a test partitions the nodes.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The node's bridge port down: it loses both others.
    Port(&'static str),
    /// The two nodes' bridge ports isolated: they lose each other and
    /// both keep the third.
    Isolate(&'static str, &'static str),
}

impl Cut {
    /// The (observer, lost node) pairs, each direction.
    fn lost(self) -> Vec<(&'static str, &'static str)> {
        let pairs: Vec<(&str, &str)> = match self {
            Cut::Port(n) => NODES.iter().filter(|m| **m != n).map(|m| (*m, n)).collect(),
            Cut::Isolate(x, y) => vec![(x, y)],
        };
        pairs.iter().flat_map(|&(x, y)| [(x, y), (y, x)]).collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("partition: {e}");
            }
        }
    }
}

/// The namespaces, or `None` after saying why the test is skipped.
fn net_or_skip(test: &str) -> Option<Net> {
    let net = common::netns::or_skip(test, Net::create())?;
    eprintln!("{test}: namespaces {}-{{br,a,b,c}}", net.prefix);
    Some(net)
}

/// A report line of a node: who, when it was read, what.
type Report = (&'static str, Instant, String);

/// A child node process in its namespace; killed on drop.
struct NodeProc(Child);

impl NodeProc {
    fn start(net: &Net, id: &'static str, seeds: &[String], tx: mpsc::Sender<Report>) -> NodeProc {
        let spec = json!({"id": id, "bind": net.addr(id), "seeds": seeds});
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.ns(id)])
            .arg(std::env::current_exe().expect("own path"))
            .args([
                "partition_node_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ENV, spec.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ip netns exec … partition_node_process");
        let stdout = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, r)) = line.split_once(MARK)
                    && tx.send((id, Instant::now(), r.to_owned())).is_err()
                {
                    break;
                }
            }
        });
        NodeProc(child)
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The three nodes and what they reported.
struct Cluster {
    rx: mpsc::Receiver<Report>,
    /// Every report so far, for failure messages.
    log: Vec<(&'static str, Duration, String)>,
    t0: Instant,
    /// Each node's latest `GRP` line.
    views: BTreeMap<&'static str, String>,
    _nodes: Vec<NodeProc>,
}

impl Cluster {
    /// The next report, at most until `deadline`.
    fn next(&mut self, deadline: Instant) -> Option<Report> {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = self.rx.recv_timeout(left).ok()?;
        self.log.push((r.0, r.1 - self.t0, r.2.clone()));
        if r.2.starts_with("GRP ") {
            self.views.insert(r.0, r.2.clone());
        }
        Some(r)
    }

    /// Hands reports to `each` until it says every awaited one came;
    /// panics with the log at `deadline`.
    fn until(&mut self, what: &str, deadline: Instant, mut each: impl FnMut(&Report) -> bool) {
        loop {
            match self.next(deadline) {
                Some(r) if each(&r) => return,
                Some(_) => {}
                None => panic!("no {what} by the deadline; reports: {:#?}", self.log),
            }
        }
    }
}

/// `GRP` lines holding all three ports.
fn full_group(line: &str) -> bool {
    line.strip_prefix("GRP ") == Some("a#p,b#p,c#p")
}

fn start(net: &Net) -> Cluster {
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    let seed = vec![net.addr("c")];
    let nodes = vec![
        NodeProc::start(net, "c", &[], tx.clone()),
        NodeProc::start(net, "a", &seed, tx.clone()),
        NodeProc::start(net, "b", &seed, tx),
    ];
    let mut cl = Cluster {
        rx,
        log: Vec::new(),
        t0,
        views: BTreeMap::new(),
        _nodes: nodes,
    };
    // the mesh: every node up with both others, and sees all of `g`
    let mut up: BTreeMap<(&str, String), bool> = BTreeMap::new();
    let mut grp: BTreeMap<&str, bool> = BTreeMap::new();
    let deadline = Instant::now() + LIMIT;
    cl.until("mesh", deadline, |(who, _, line)| {
        if let Some(rest) = line.strip_prefix("UP ") {
            let peer = rest.split(' ').next().unwrap_or("").to_owned();
            up.insert((who, peer), true);
        }
        if line.starts_with("GRP ") {
            grp.insert(who, full_group(line));
        }
        up.len() == 6 && grp.len() == 3 && grp.values().all(|v| *v)
    });
    eprintln!("partition: meshed and converged after {:?}", t0.elapsed());
    cl
}

/// One `cut`, held `hold` after every loss was seen,
/// and the restore; asserts detection, reconnection and convergence and
/// returns (slowest detection, slowest reconnection, convergence), the
/// latter two from the restore.
fn cut_and_restore(
    net: &Net,
    cl: &mut Cluster,
    cut: Cut,
    round: usize,
    hold: Duration,
) -> [Duration; 3] {
    let first_log = cl.log.len();
    let lost = cut.lost();
    let cut_at = Instant::now();
    net.apply(cut, false);
    // the lost pairs: (observer, lost node) → (when, reason)
    let mut mons: BTreeMap<(&str, String), (Duration, String)> = BTreeMap::new();
    let mut extra: Vec<String> = Vec::new();
    let deadline = cut_at + PEER_TIMEOUT + DETECT_SLACK;
    let record = |(who, at, line): &Report,
                  mons: &mut BTreeMap<(&str, String), (Duration, String)>,
                  extra: &mut Vec<String>| {
        if let Some(rest) = line.strip_prefix("MON ") {
            let (peer, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let key = (*who, peer.to_owned());
            if mons.contains_key(&key) || !lost.contains(&(*who, peer)) {
                extra.push(format!("{who}: {line}"));
            } else {
                mons.insert(key, (*at - cut_at, reason.to_owned()));
            }
        }
    };
    cl.until("detection within peer_timeout + slack", deadline, |r| {
        record(r, &mut mons, &mut extra);
        mons.len() == lost.len()
    });
    let detect = mons.values().map(|(d, _)| *d).max().unwrap_or_default();
    for ((who, peer), (d, reason)) in &mons {
        eprintln!("partition round {round}: {who} lost {peer} after {d:?}: {reason}");
        let r: Value = serde_json::from_str(reason).expect("a JSON reason");
        assert_eq!(r[0], "transport_error", "{who} lost {peer}: {reason}");
        assert_eq!(r[1], peer.as_str(), "{who} lost {peer}: {reason}");
    }
    // the cut held: nothing else fires meanwhile, no reconnection
    let hold_until = Instant::now() + hold;
    while let Some(r) = cl.next(hold_until) {
        record(&r, &mut mons, &mut extra);
        assert!(
            !r.2.starts_with("UP "),
            "a connection across the cut: {r:?}"
        );
    }
    net.apply(cut, true);
    let restore = Instant::now();
    let mut ups: BTreeMap<(&str, String), (Duration, bool)> = BTreeMap::new();
    // when each node's view of `g` was complete again (zero: it never
    // lost anything); what counts is every view once all are back
    let mut grp: BTreeMap<&str, Option<Duration>> = NODES
        .iter()
        .map(|n| {
            let full = cl.views.get(n).is_some_and(|v| full_group(v));
            (*n, full.then_some(Duration::ZERO))
        })
        .collect();
    cl.until("reconnection and convergence", restore + LIMIT, |r| {
        record(r, &mut mons, &mut extra);
        let (who, at, line) = r;
        if let Some(rest) = line.strip_prefix("UP ") {
            let (peer, out) = rest.split_once(' ').unwrap_or((rest, ""));
            ups.insert((who, peer.to_owned()), (*at - restore, out == "true"));
        }
        if line.starts_with("GRP ") {
            grp.insert(who, full_group(line).then(|| *at - restore));
        }
        ups.len() == lost.len() && grp.values().all(Option::is_some)
    });
    // a late second firing would show now
    let quiet = Instant::now() + Duration::from_millis(500);
    while let Some(r) = cl.next(quiet) {
        record(&r, &mut mons, &mut extra);
    }
    assert!(
        extra.is_empty(),
        "monitors fired more than once or for a node not cut off: {extra:?}; reports: {:#?}",
        &cl.log[first_log..]
    );
    for ((who, peer), (d, out)) in &ups {
        let how = if *out { "dialled" } else { "accepted" };
        eprintln!("partition round {round}: {who} {how} {peer} {d:?} after the restore");
    }
    // who dials is a race: b redials its seed c (the seed timer) and
    // every node it knew (its Global addresses); a and c redial b too (c
    // as the master a sent `find b` to, a from the addresses Global gave
    // it). One connection per pair survives: the two ends disagree on who
    // dialled it.
    for &(x, y) in &lost {
        let xy = ups[&(x, y.to_owned())].1;
        let yx = ups[&(y, x.to_owned())].1;
        assert_ne!(xy, yx, "{x}–{y}: both ends outbound={xy}");
    }
    let reconnect = ups.values().map(|u| u.0).max().unwrap_or_default();
    let converge = grp.values().filter_map(|g| *g).max().unwrap_or_default();
    eprintln!(
        "partition round {round}: detected within {detect:?} of the cut; reconnected {reconnect:?} \
         and converged {converge:?} after the restore"
    );
    [detect, reconnect, converge]
}

/// `b` cut off from `a` and `c` for a moment and back: detected within
/// `peer_timeout` (+ slack), exactly one monitor firing per lost node,
/// `a`–`c` untouched, then reconnected and `g` complete on every node.
#[test]
fn partition_is_detected_and_heals() {
    let test = "partition_is_detected_and_heals";
    let Some(net) = net_or_skip(test) else {
        return;
    };
    let mut cl = start(&net);
    cut_and_restore(&net, &mut cl, Cut::Port("b"), 1, Duration::from_millis(500));
}

/// The long variant: ten cuts in a row, alternately `b`'s port down and
/// `a`–`b` isolated, some held for several heartbeat periods (the redials
/// keep failing meanwhile).
/// `a` and `b` cut from each other (their bridge ports isolated), both
/// still reaching `c`: only the `a`–`b` monitors fire, once each, then
/// `a` and `b` reconnect and `g` is complete everywhere.
#[test]
fn partition_between_two_of_three_heals() {
    let test = "partition_between_two_of_three_heals";
    let Some(net) = net_or_skip(test) else {
        return;
    };
    let mut cl = start(&net);
    cut_and_restore(
        &net,
        &mut cl,
        Cut::Isolate("a", "b"),
        1,
        Duration::from_millis(500),
    );
}

#[test]
#[ignore = "long: ten partitions (about two minutes)"]
fn partition_repeated() {
    let test = "partition_repeated";
    let Some(net) = net_or_skip(test) else {
        return;
    };
    let mut cl = start(&net);
    let mut worst = [Duration::ZERO; 3];
    for round in 1..=10 {
        let hold = Duration::from_millis(500 + 1000 * (round as u64 % 4));
        let cut = if round % 2 == 0 {
            Cut::Isolate("a", "b")
        } else {
            Cut::Port("b")
        };
        let t = cut_and_restore(&net, &mut cl, cut, round, hold);
        for (w, t) in worst.iter_mut().zip(t) {
            *w = (*w).max(t);
        }
    }
    eprintln!("{test}: worst detection, reconnection, convergence: {worst:?}");
}

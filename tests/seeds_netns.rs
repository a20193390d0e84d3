//! Seeds written `PORT` (digits only) and `*:PORT`, live: two `aemp run`
//! nodes inside a network namespace this test creates find each other.
//!
//! The reference expands seeds once at start (`_resolve`, Kernel.pm
//! 306–385, 446): `PORT` is `<hostname>:PORT`, host `*` is every
//! non-loopback local address. Both depend on the host, so a live check
//! must not run against this machine's addresses: everything here happens
//! in a fresh namespace whose only non-loopback addresses are its own
//! (198.18.0.0/15, the benchmarking range), with a host name (its own UTS
//! namespace, `unshare --uts`) that resolves to one of them through the
//! namespace's own `/etc/hosts` (`ip netns exec` bind-mounts
//! `/etc/netns/NS/hosts` over it).
//!
//! The nodes are child processes (`ip netns exec NS unshare --uts -- …
//! aemp run`), not in-process nodes on a thread that `setns`es: the
//! namespace and the host name then hold for the whole process (runtime
//! and resolver threads included) and cannot leak into the other tests
//! of this binary, and killing the child ends everything it started.
//!
//! Without root, `ip`, `unshare` or network-namespace support the tests
//! print why and pass; set `AEMP_NETNS_REQUIRED=1` to make that a failure.

mod common;

use common::netns::ip;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

const AEMP: &str = env!("CARGO_BIN_EXE_aemp");
/// Every wait for a node's output is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);
/// The fixed port node A listens on (a seed written by number cannot be
/// port 0; in a fresh namespace every port is free).
const PORT: u16 = 4040;
/// Where `ip netns exec` finds per-namespace files.
const ETC_NETNS: &str = "/etc/netns";

/// Namespaces made by this process, for unique names.
static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Serialises creating and removing `/etc/netns` between parallel tests.
static ETC_LOCK: Mutex<()> = Mutex::new(());
/// Whether this process created `/etc/netns` (then it removes it, once
/// empty).
static CREATED_ETC_NETNS: AtomicBool = AtomicBool::new(false);

/// A network namespace of this test, with `lo` up and one interface
/// holding private addresses of its own (two IPv4, one IPv6 unique local
/// where IPv6 works); removed (with what it needed) on drop, also when
/// the test panics.
struct Netns {
    /// The namespace's name, `aemp-seeds-<pid>-<n>`.
    name: String,
    /// The veth peer's namespace, when the kernel has no dummy links.
    peer: Option<String>,
    /// `/etc/netns/<name>`, when the host name resolves through it.
    etc_dir: Option<PathBuf>,
    /// The namespace's addresses: two IPv4 ones (the first is the host
    /// name's), then an IPv6 unique local one where IPv6 works.
    addrs: Vec<IpAddr>,
    /// The host name the nodes run with (their own UTS namespace).
    hostname: String,
    /// How the interface was made, for the log.
    link_kind: &'static str,
}

impl Netns {
    /// Creates the namespace; `Err` says why it cannot be done here.
    fn create() -> Result<Netns, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("aemp-seeds-{pid}-{n}");
        ip(&["netns", "add", &name])?;
        let third = ((pid as usize + n) % 250 + 1) as u8;
        let mut ns = Netns {
            name: name.clone(),
            peer: None,
            etc_dir: None,
            addrs: vec![
                IpAddr::V4(Ipv4Addr::new(198, 18, third, 1)),
                IpAddr::V4(Ipv4Addr::new(198, 18, third, 2)),
            ],
            hostname: format!("aemp-seeds-{pid}-{n}.test"),
            link_kind: "dummy",
        };
        // never an address this machine has (the namespace's would hide
        // it there, but the rule is: not even the same numbers)
        let host: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map(|v| v.iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfdae, 0x5eed, third.into(), 0, 0, 0, 0, 1));
        if ns.addrs.iter().chain([&v6]).any(|a| host.contains(a)) {
            return Err(format!("{:?} is an address of this machine", ns.addrs));
        }
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        if ip(&["-n", &name, "link", "add", "aemp0", "type", "dummy"]).is_err() {
            // no dummy module (e.g. gVisor): a veth pair, its other end in
            // a second namespace of ours
            let peer = format!("{name}-p");
            ip(&["netns", "add", &peer])?;
            ns.peer = Some(peer.clone());
            ns.link_kind = "veth";
            ip(&[
                "-n", &name, "link", "add", "aemp0", "type", "veth", "peer", "name", "aemp1",
                "netns", &peer,
            ])?;
            ip(&["-n", &peer, "link", "set", "aemp1", "up"])?;
        }
        for a in ns.addrs.clone() {
            let net = format!("{a}/24");
            ip(&["-n", &name, "addr", "add", &net, "dev", "aemp0"])?;
        }
        // IPv6 is optional (a kernel may have it off); `nodad`: usable
        // at once, not tentative
        let v6_net = format!("{v6}/64");
        match ip(&["-n", &name, "addr", "add", &v6_net, "dev", "aemp0", "nodad"]) {
            Ok(()) => ns.addrs.push(v6),
            Err(e) => eprintln!("seeds_netns: without IPv6: {e}"),
        }
        ip(&["-n", &name, "link", "set", "aemp0", "up"])?;
        ns.name_the_host();
        // the nodes run under `unshare --uts` with their own host name
        let probe = ns
            .exec("true")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run ip netns exec: {e}"))?;
        if !probe.status.success() {
            return Err(format!(
                "ip netns exec … unshare --uts: {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            ));
        }
        Ok(ns)
    }

    /// Makes the host name resolve to the first address inside the
    /// namespace (`/etc/netns/NS/hosts`); where that directory cannot be
    /// written, the host name is the address itself.
    fn name_the_host(&mut self) {
        let _lock = ETC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let base = PathBuf::from(ETC_NETNS);
        let dir = base.join(&self.name);
        let existed = base.exists();
        let hosts = format!(
            "127.0.0.1 localhost\n::1 localhost\n{} {}\n",
            self.addrs[0], self.hostname
        );
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("hosts"), hosts))
        {
            Ok(()) => {
                if !existed {
                    CREATED_ETC_NETNS.store(true, Ordering::Relaxed);
                }
                self.etc_dir = Some(dir);
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                if !existed {
                    let _ = std::fs::remove_dir(&base);
                }
                eprintln!(
                    "seeds_netns: cannot write {}: {e}; the host name is the address itself",
                    dir.display()
                );
                self.hostname = self.addrs[0].to_string();
            }
        }
    }

    /// `PROGRAM` inside the namespace, with this namespace's host name.
    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, "unshare", "--uts", "--"])
            // sethostname(2) without needing the `hostname` command
            .args([
                "sh",
                "-c",
                "printf %s \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"",
            ])
            .args([&self.hostname, program])
            .stdin(Stdio::null());
        c
    }

    /// `addr:PORT` for each address.
    fn at_port(&self) -> Vec<String> {
        self.addrs
            .iter()
            .map(|a| SocketAddr::new(*a, PORT).to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // deleting a namespace also deletes its links (a veth with both)
        for ns in std::iter::once(&self.name).chain(self.peer.as_ref()) {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("seeds_netns: {e}");
            }
        }
        if let Some(dir) = &self.etc_dir {
            let _lock = ETC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let _ = std::fs::remove_dir_all(dir);
            if CREATED_ETC_NETNS.load(Ordering::Relaxed) && std::fs::remove_dir(ETC_NETNS).is_ok() {
                CREATED_ETC_NETNS.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// The namespace, or `None` after saying why the test is skipped.
fn namespace_or_skip(test: &str) -> Option<Netns> {
    let ns = common::netns::or_skip(test, Netns::create())?;
    eprintln!(
        "{test}: namespace {} ({} link, {:?}, host name {})",
        ns.name, ns.link_kind, ns.addrs, ns.hostname
    );
    Some(ns)
}

/// Removes ANSI colour sequences (`ESC [ … m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines of a pipe, read on a thread.
fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(plain(&line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// An `aemp run` node inside the namespace; killed on drop.
struct NodeProc {
    name: &'static str,
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// stderr lines read so far, for failure messages.
    log: Vec<String>,
}

impl NodeProc {
    /// `aemp run PROFILE` in `ns` with the configuration file `rc`.
    fn start(ns: &Netns, rc: &std::path::Path, profile: &'static str) -> NodeProc {
        let mut child = ns
            .exec(AEMP)
            .args(["run", profile])
            .env("PERL_ANYEVENT_MP_RC", rc)
            .env("AEMP_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec … aemp run");
        let stdout = lines(child.stdout.take().expect("stdout piped"));
        let stderr = lines(child.stderr.take().expect("stderr piped"));
        NodeProc {
            name: profile,
            child,
            stdout,
            stderr,
            log: Vec::new(),
        }
    }

    /// The first stdout line, within [`LIMIT`].
    fn first_line(&mut self) -> String {
        match self.stdout.recv_timeout(LIMIT) {
            Ok(l) => l,
            Err(_) => {
                self.collect_log();
                panic!(
                    "node {}: no output within {LIMIT:?}; log: {:#?}",
                    self.name, self.log
                )
            }
        }
    }

    fn collect_log(&mut self) {
        let _ = self.child.kill();
        self.log.extend(self.stderr.try_iter());
    }

    /// The fields of the first `connected` log line, within [`LIMIT`].
    fn connected(&mut self) -> Connected {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let c = Connected::parse(&line);
                    self.log.push(line);
                    if let Some(c) = c {
                        return c;
                    }
                }
                Err(_) => {
                    self.collect_log();
                    panic!(
                        "node {}: no connection within {LIMIT:?}; log: {:#?}",
                        self.name, self.log
                    )
                }
            }
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `connected` log line of the transport.
#[derive(Debug, PartialEq, Eq)]
struct Connected {
    /// The other node's id.
    remote: String,
    /// The other end's address.
    peer: String,
    /// Whether this node dialled.
    outbound: bool,
}

impl Connected {
    fn parse(line: &str) -> Option<Connected> {
        let rest = line.split_once(" connected ")?.1;
        let field = |k: &str| {
            rest.split(' ')
                .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_owned())
        };
        Some(Connected {
            remote: field("remote")?,
            peer: field("peer")?,
            outbound: field("outbound")? == "true",
        })
    }
}

/// Node `a` binds `bind`; node `b` (no listener) has the one seed `seed`
/// and must dial `a` at one of `expect_dialled`. `a` must listen on
/// exactly `expect_listen`.
fn check(
    test: &str,
    ns: &Netns,
    bind: &str,
    seed: &str,
    expect_listen: &[String],
    expect_dialled: &[String],
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rc = dir.path().join("rc");
    let config = serde_json::json!({
        "version": 1,
        "secret": "geheim",
        "profile": {
            "a": {"nodeid": "a", "binds": [bind]},
            "b": {"nodeid": "b", "binds": [], "seeds": [seed]},
        },
    });
    std::fs::write(&rc, config.to_string()).expect("write rc");

    let started = Instant::now();
    let mut a = NodeProc::start(ns, &rc, "a");
    let line = a.first_line();
    let listen = line
        .strip_prefix("node a running, listening on [")
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{test}: unexpected first line of a: {line:?}"));
    let mut listen: Vec<&str> = listen.split(' ').collect();
    listen.sort_unstable();
    let mut expected: Vec<&str> = expect_listen.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listen, expected, "{test}: a binds {bind:?}");

    let mut b = NodeProc::start(ns, &rc, "b");
    assert_eq!(b.first_line(), "node b running, listening on []");
    let dialled = b.connected();
    assert_eq!(dialled.remote, "a", "{test}: {dialled:?}");
    assert!(dialled.outbound, "{test}: b dialled: {dialled:?}");
    assert!(
        expect_dialled.contains(&dialled.peer),
        "{test}: b with seed {seed:?} dialled {} (expected one of {expect_dialled:?})",
        dialled.peer
    );
    let accepted = a.connected();
    assert_eq!(accepted.remote, "b", "{test}: {accepted:?}");
    assert!(!accepted.outbound, "{test}: a accepted: {accepted:?}");
    eprintln!(
        "{test}: a listens on {listen:?}; b (seed {seed:?}) dialled {} within {:?}",
        dialled.peer,
        started.elapsed()
    );
}

/// `PORT` is `<hostname>:PORT`, for the bind and the seed alike: the host
/// name resolves (inside the namespace) to its first address only.
#[test]
fn seed_written_as_digits_dials_the_hostname() {
    let test = "seed_written_as_digits_dials_the_hostname";
    let Some(ns) = namespace_or_skip(test) else {
        return;
    };
    let first = ns.at_port()[..1].to_vec();
    let port = PORT.to_string();
    check(test, &ns, &port, &port, &first, &first);
}

/// `*:PORT` is every non-loopback address of the host, for the bind and
/// the seed alike: every address of the namespace (IPv4 and the unique
/// local IPv6 one), never loopback nor the link-local IPv6 address.
#[test]
fn seed_written_star_port_dials_every_own_address() {
    let test = "seed_written_star_port_dials_every_own_address";
    let Some(ns) = namespace_or_skip(test) else {
        return;
    };
    let all = ns.at_port();
    let star = format!("*:{PORT}");
    check(test, &ns, &star, &star, &all, &all);
}

#[test]
fn connected_lines_are_parsed() {
    let line = plain(
        "\u{1b}[2m2026-12-02T03:46:44.877252Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m aemp::transport::connection: \
         connected \u{1b}[3mnode\u{1b}[0m\u{1b}[2m=\u{1b}[0mb peer=198.18.7.1:4040 remote=a \
         send_framing=json recv_framing=json auth=hmac_md6_64_256 outbound=true",
    );
    assert_eq!(
        Connected::parse(&line),
        Some(Connected {
            remote: "a".into(),
            peer: "198.18.7.1:4040".into(),
            outbound: true
        })
    );
    assert_eq!(Connected::parse("… connection closed node=b peer=x"), None);
}

/// Each address `*` stands for is a seed of its own: with node `a` on
/// the namespace's last address only (IPv6 where it works), `b` with the
/// seed `*:PORT` still finds it, the other seeds refusing.
#[test]
fn seed_written_star_port_finds_a_node_on_its_last_address_only() {
    let test = "seed_written_star_port_finds_a_node_on_its_last_address_only";
    let Some(ns) = namespace_or_skip(test) else {
        return;
    };
    let all = ns.at_port();
    let last = all[all.len() - 1..].to_vec();
    check(test, &ns, &last[0], &format!("*:{PORT}"), &last, &last);
}

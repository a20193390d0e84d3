//! The `aemp` binary end to end: configuration edits in a temp file,
//! `aemp run` nodes, and the network commands run from other invocations,
//! reaching their targets through the configured seeds and Global.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const AEMP: &str = env!("CARGO_BIN_EXE_aemp");
/// Every command and wait is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

/// A configuration file in its own temp dir.
struct Rc {
    dir: tempfile::TempDir,
}

/// What one `aemp` invocation did.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert!(self.status.success(), "aemp failed: {self:?}");
        self.stdout
    }

    /// Asserts failure with a one-line error; returns (stdout, stderr).
    fn failed(self) -> (String, String) {
        assert!(!self.status.success(), "aemp should fail: {self:?}");
        assert!(
            self.stderr.starts_with("aemp: ") && self.stderr.ends_with('\n'),
            "{self:?}"
        );
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        (self.stdout, self.stderr)
    }
}

fn command(rc: &Path) -> Command {
    let mut c = Command::new(AEMP);
    c.env("PERL_ANYEVENT_MP_RC", rc)
        .env("AEMP_LOG", "error")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Reads a pipe to its end on a thread.
fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits for `child` at most `limit`; kills it and panics after that.
fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aemp did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Rc {
    fn new() -> Rc {
        Rc {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("rc")
    }

    /// Runs `aemp ARGS…` to its end.
    fn aemp(&self, args: &[&str]) -> Run {
        let mut child = command(&self.path())
            .args(args)
            .spawn()
            .expect("spawn aemp");
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        let status = wait_bounded(&mut child, LIMIT);
        Run {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }

    /// Starts `aemp ARGS…` in the background.
    fn spawn(&self, args: &[&str]) -> Background {
        let mut child = command(&self.path())
            .args(args)
            .spawn()
            .expect("spawn aemp");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = drain(child.stderr.take().unwrap());
        Background {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// `aemp run PROFILE`; returns it with the address it listens on.
    fn run_node(&self, profile: &str) -> (Background, String) {
        let mut node = self.spawn(&["run", profile]);
        let first = node.line();
        let prefix = format!("node {profile} running, listening on [");
        let addr = first
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        (node, addr)
    }

    fn file(&self) -> Value {
        let text = std::fs::read_to_string(self.path()).expect("rc written");
        serde_json::from_str(&text).expect("rc is JSON")
    }
}

/// A running `aemp` process; killed when dropped.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    /// The next stdout line.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LIMIT) {
            Ok(l) => l,
            Err(_) => {
                let _ = self.child.kill();
                let err = self.stderr.take().map(|h| h.join().unwrap());
                panic!("no output line within {LIMIT:?}; stderr: {err:?}")
            }
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the end; returns the status and the rest of stdout (all
    /// of it: the reader thread may still be passing on the last lines
    /// when the process has exited, so this reads until it is done).
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = wait_bounded(&mut self.child, LIMIT);
        let deadline = std::time::Instant::now() + LIMIT;
        let mut rest = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chained_configuration_commands_edit_the_file() {
    let rc = Rc::new();
    rc.aemp(&[
        "gensecret",
        "profile",
        "xyzzy",
        "binds",
        "4040,4041",
        "nodeid",
        "anon/",
    ])
    .ok();
    let f = rc.file();
    let secret = f["secret"].as_str().expect("a generated secret");
    assert!(secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        f["profile"]["xyzzy"],
        json!({"binds": ["4040", "4041"], "nodeid": "anon/"})
    );
    assert_eq!(f["version"], json!(1));

    // showprofile prints the stored profile as JSON::XS pretty does
    assert_eq!(
        rc.aemp(&["showprofile", "xyzzy"]).ok(),
        "{\n   \"binds\" : [\n      \"4040\",\n      \"4041\"\n   ],\n   \"nodeid\" : \"anon/\"\n}\n"
    );

    // parents, list edits, services, the low-level keys, JSON arguments
    rc.aemp(&[
        "profile",
        "child",
        "setparent",
        "xyzzy",
        "addbind",
        "127.0.0.1:1",
        "addseed",
        "a:1",
        "addseed",
        "b:2",
        "delseed",
        "a:1",
        "addseed",
        "b:2",
        "addservice",
        "Pkg::",
        "addservice",
        "[\"Pkg::start\",1]",
        "addservice",
        "Other::go",
        "delservice",
        "Other::go",
        "monitor_timeout",
        "5",
        "setnodelay",
        "0",
        "setauth_offer",
        "[\"hmac_md6_64_256\"]",
    ])
    .ok();
    let f = rc.file();
    assert_eq!(
        f["profile"]["child"],
        json!({
            "parent": "xyzzy",
            "binds": ["127.0.0.1:1"],
            "seeds": ["b:2"],
            "services": ["Pkg::", ["Pkg::start", 1]],
            "monitor_timeout": "5",
            "nodelay": "0",
            "auth_offer": ["hmac_md6_64_256"],
        })
    );
    // showconfig: the effective settings, profile/parent removed
    let shown: Value = serde_json::from_str(&rc.aemp(&["showconfig", "child"]).ok()).unwrap();
    assert_eq!(shown["nodeid"], "anon/"); // from the parent
    assert_eq!(shown["secret"], f["secret"]); // from the global section
    assert_eq!(shown["binds"], json!(["127.0.0.1:1"]));
    assert_eq!(shown["connect_interval"], json!(2)); // a default
    assert!(shown.get("parent").is_none() && shown.get("profile").is_none());

    // del forms and delprofile
    rc.aemp(&[
        "profile",
        "child",
        "delparent",
        "delseeds",
        "delmonitor_timeout",
    ])
    .ok();
    rc.aemp(&["delprofile", "xyzzy", "delsecret"]).ok();
    let f = rc.file();
    assert!(f["profile"].get("xyzzy").is_none());
    assert!(f.get("secret").is_none());
    let child = f["profile"]["child"].as_object().unwrap();
    assert!(!child.contains_key("parent") && !child.contains_key("seeds"));
    assert!(!child.contains_key("monitor_timeout"));

    // the one-JSON-array form replaces the whole command line
    rc.aemp(&["[\"profile\",\"j\",\"setseeds\",[\"x:1\",\"y:2\"]]"])
        .ok();
    assert_eq!(rc.file()["profile"]["j"]["seeds"], json!(["x:1", "y:2"]));

    // the file is private and the previous version is kept
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(rc.path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(rc.dir.path().join("rc~").exists());
}

#[test]
fn errors_are_one_line_and_what_came_before_is_saved() {
    let rc = Rc::new();
    let (_, err) = rc.aemp(&["setsecret", "s", "nosuchcommand"]).failed();
    assert_eq!(
        err,
        "aemp: nosuchcommand: no such aemp command (try aemp --help)\n"
    );
    // like the reference, the commands before the bad one took effect
    assert_eq!(rc.file()["secret"], "s");
    let (_, err) = rc.aemp(&["setseeds"]).failed();
    assert_eq!(err, "aemp: seeds missing\n");
    // also after another error than an unknown command
    rc.aemp(&["setsecret", "t", "setcert", "/nonexistent/file.pem"])
        .failed();
    assert_eq!(rc.file()["secret"], "t");
    rc.aemp(&["binds", "[1,"]).failed();
    rc.aemp(&["setcert", "/nonexistent/file.pem"]).failed();

    // a broken file is named with the position, and left alone
    std::fs::write(
        rc.path(),
        "{\n   \"secret\" : \"x\",\n   \"binds\" : [1,,2]\n}\n",
    )
    .unwrap();
    let (_, err) = rc.aemp(&["setsecret", "y"]).failed();
    assert!(
        err.contains(&format!("{}:3:17:", rc.path().display())),
        "{err}"
    );
    let (_, err) = rc.aemp(&["run", "p"]).failed();
    assert!(err.contains(":3:17:"), "{err}");
    assert!(
        std::fs::read_to_string(rc.path())
            .unwrap()
            .contains("[1,,2]")
    );

    // without seeds nothing is reachable: the timeout says why
    std::fs::write(
        rc.path(),
        "{\"version\":1,\"secret\":\"s\",\"profile\":{\"aemp\":{\"binds\":[]}}}",
    )
    .unwrap();
    let (_, err) = rc.aemp(&["snd", "elsewhere#p", "x"]).failed();
    assert!(
        err.contains("within 5 s") && err.contains("no seeds"),
        "{err}"
    );

    // help: the whole list, and per command (also for the set-less alias)
    let help = rc.aemp(&["--help"]).ok();
    for cmd in [
        "setnodeid",
        "addservice",
        "showconfig",
        "trace",
        "gencert",
        "Aemp::Echo::start",
    ] {
        assert!(help.contains(cmd), "{cmd} missing from help");
    }
    assert!(
        rc.aemp(&["secret", "--help"])
            .ok()
            .contains("set the shared secret")
    );
    assert!(rc.aemp(&["help", "trace"]).ok().contains("--dot"));
    let none = rc.aemp(&[]);
    assert!(!none.status.success() && none.stdout.contains("setnodeid"));
}

#[test]
fn gencert_and_setcert() {
    let rc = Rc::new();
    rc.aemp(&["profile", "tls", "gencert"]).ok();
    let cert = rc.file()["profile"]["tls"]["cert"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = cert
        .find("-----BEGIN CERTIFICATE-----")
        .expect("certificate");
    let k = cert.find("-----BEGIN PRIVATE KEY-----").expect("key");
    assert!(c < k, "certificate first, then the key, as the reference");
    assert!(cert.ends_with("-----END PRIVATE KEY-----\n"));

    // setcert takes key and certificate in either order
    let (cert_part, key_part) = cert.split_at(k);
    let swapped = rc.dir.path().join("swapped.pem");
    std::fs::write(&swapped, format!("{key_part}{cert_part}")).unwrap();
    rc.aemp(&["setcert", swapped.to_str().unwrap()]).ok();
    assert_eq!(rc.file()["cert"], json!(format!("{key_part}{cert_part}")));
    let only_key = rc.dir.path().join("key.pem");
    std::fs::write(&only_key, key_part).unwrap();
    let (_, err) = rc.aemp(&["setcert", only_key.to_str().unwrap()]).failed();
    assert!(err.contains("no certificate"), "{err}");
    rc.aemp(&["delcert"]).ok();
    assert!(rc.file().get("cert").is_none());
}

/// Two `aemp run` nodes; commands reach them through the seed (the first)
/// and Global (the second is found through the first).
#[test]
fn network_commands_against_running_nodes() {
    let rc = Rc::new();
    rc.aemp(&[
        "setsecret",
        "geheim",
        "profile",
        "srv1",
        "binds",
        "127.0.0.1:0",
        "services",
        "Aemp::Echo::start,Aemp::Inbox::start",
    ])
    .ok();
    let (mut srv1, addr1) = rc.run_node("srv1");
    rc.aemp(&[
        "profile",
        "srv2",
        "binds",
        "127.0.0.1:0",
        "seeds",
        &addr1,
        "services",
        "Aemp::Inbox::start",
        "profile",
        "aemp",
        "binds",
        "127.0.0.1:0",
        "seeds",
        &addr1,
    ])
    .ok();
    let (mut srv2, _) = rc.run_node("srv2");

    // snd: the message arrives, the probe's answer is printed
    assert_eq!(
        rc.aemp(&["snd", "srv1#inbox", "hello", "{\"n\":1}", "5"])
            .ok(),
        "message sent successfully \n"
    );
    let got: Value = serde_json::from_str(&srv1.line()).unwrap();
    assert_eq!(
        got,
        json!({"port": "srv1#inbox", "msg": ["hello", {"n": 1}, "5"]})
    );
    // srv2 is no seed of ours: found through Global
    assert_eq!(
        rc.aemp(&["snd", "srv2#inbox", "hi"]).ok(),
        "message sent successfully \n"
    );
    let got: Value = serde_json::from_str(&srv2.line()).unwrap();
    assert_eq!(got, json!({"port": "srv2#inbox", "msg": ["hi"]}));
    // a port that does not exist: its kil reason, and a failure
    let (out, err) = rc.aemp(&["snd", "srv1#nosuch", "x"]).failed();
    assert_eq!(
        out,
        "no_such_port cannot monitor nonexistent port srv1#nosuch \n"
    );
    assert!(err.contains("srv1#nosuch"), "{err}");

    // cal: the reply as a JSON list without brackets
    assert_eq!(
        rc.aemp(&["cal", "srv1#echo", "hello", "[1,{\"a\":null}]"])
            .ok(),
        "\"hello\",[1,{\"a\":null}]\n"
    );
    let time = rc.aemp(&["cal", "srv2", "time"]).ok();
    let t: f64 = time.trim_end().parse().expect("a time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((t - now).abs() < 60.0, "{time}");

    // eval and restart: an aemp node refuses, non-zero exit
    let (_, err) = rc.aemp(&["eval", "srv1", "1+1"]).failed();
    assert!(err.contains("eval refused"), "{err}");
    let (_, err) = rc.aemp(&["restart", "srv2"]).failed();
    assert!(err.contains("eval refused"), "{err}");

    // trace: srv1 and srv2 know each other (the tracer leaves itself out)
    let mut trace = String::new();
    for _ in 0..50 {
        trace = rc.aemp(&["trace", "srv1"]).ok();
        if trace == "seed srv1\nsrv1 srv2\nsrv2 srv1\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(trace, "seed srv1\nsrv1 srv2\nsrv2 srv1\n");
    let provider = concat!("aemp-", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        rc.aemp(&["trace", "srv1", "--dot"]).ok(),
        format!(
            "graph aemp {{\n  \"srv1\" [label=\"srv1\\n{provider}\", shape=ellipse];\n  \
             \"srv2\" [label=\"srv2\\n{provider}\", shape=ellipse];\n  \"srv1\" -- \"srv2\";\n}}\n"
        )
    );

    // mon: waits for the kil, prints its reason
    let mon = rc.spawn(&["mon", "srv2#inbox"]);
    // the monitor is in place once its node is up at srv2
    let mut anons = 0;
    for _ in 0..100 {
        let up = rc.aemp(&["cal", "srv2", "up_nodes"]).ok();
        anons = up.matches("\"anon/").count();
        if anons >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(anons >= 2, "the mon process never came up at srv2");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        rc.aemp(&["snd", "srv2", "kil", "inbox", "bye", "now"]).ok(),
        "message sent successfully \n"
    );
    let (status, out) = mon.finish();
    assert!(status.success());
    assert_eq!(out, ["bye now "]);
}

/// SIGTERM: the node kills its ports with a reason (remote monitors get
/// `kil0`), withdraws its group registrations (`reg0`), flushes and
/// closes, then exits 0.
#[actix_rt::test]
async fn sigterm_shuts_a_node_down_gracefully() {
    let rc = Rc::new();
    rc.aemp(&[
        "setsecret",
        common::SECRET,
        "profile",
        "srv3",
        "binds",
        "127.0.0.1:0",
        "services",
        "Aemp::Echo::start",
    ])
    .ok();
    let (srv3, addr) = rc.run_node("srv3");

    let mut peer = common::raw_handshake(&addr, common::client_cfg("raw", common::SECRET))
        .await
        .expect("handshake with the aemp node");
    let (gport, opening) = common::opening(&mut peer, "srv3").await;
    assert!(
        opening.contains(&json!([gport, "set", {"echo": ["srv3#echo"]}])),
        "{opening:?}"
    );
    common::perl_style_opening(&mut peer, "raw", "g.a", "127.0.0.1:1", json!({})).await;
    peer.send(json!(["", "mon1", "echo"])).await;
    // a round trip, so the mon1 is in place before the signal
    peer.send(json!(["", "info", "raw#x"])).await;
    peer.recv_until(|p| p[0] == "x").await;

    srv3.signal("-TERM");
    let (mut kil0, mut reg0) = (false, false);
    for _ in 0..100 {
        let p = peer.recv_any().await;
        if p == json!(["", "kil0", "echo", "shutdown", "node srv3 is shutting down"]) {
            kil0 = true;
        }
        if p == json!([gport, "reg0", "echo", "srv3#echo"]) {
            reg0 = true;
        }
        if kil0 && reg0 {
            break;
        }
    }
    assert!(kil0 && reg0, "kil0 {kil0}, reg0 {reg0}");
    // then the connection closes
    common::read_to_close(&mut peer.stream).await;
    let (status, out) = srv3.finish();
    assert!(status.success(), "{status}");
    assert_eq!(out, ["node srv3 stopped"]);
}

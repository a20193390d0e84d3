//! Warnings a peer can cause at will are logged at most once a minute per
//! peer and kind (issue 13): a flood of failed handshakes, malformed
//! node-port requests, unknown function calls, refused spawns and
//! malformed Global requests leaves one line of each, and the node goes
//! on serving.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use serde_json::json;

/// Everything logged at `warn` and above, by this test binary.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        log
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines_with(what: &str) -> usize {
    let log = captured().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(what))
        .count()
}

#[actix_rt::test]
async fn a_flood_of_bad_requests_leaves_one_warning_of_each_kind() {
    captured();
    let node = listening_node("quiet").await;
    for _ in 0..50 {
        let failed = raw_handshake(&addr_of(&node), client_cfg("intruder", "wrong")).await;
        assert!(failed.is_err());
    }
    let mut peer = RawPeer::connect(&node, "raw").await;
    for i in 0..200 {
        peer.send(json!(["", "mon1"])).await;
        peer.send(json!(["", "No::such_function", i])).await;
        peer.send(json!(["", "AnyEvent::MP::_spawn", "", "No::init"]))
            .await;
        peer.send(json!([
            "",
            "AnyEvent::MP::_spawn",
            format!("p{i}"),
            "No::init"
        ]))
        .await;
    }
    peer.send(json!(["", "snd", "raw#back", "done"])).await;
    assert_eq!(
        peer.recv_until(|m| m[0] == "back").await,
        json!(["back", "done"])
    );
    for (what, kind) in [
        ("handshake failed", "failed handshakes"),
        ("malformed node-port request ignored", "malformed requests"),
        (
            "node-port request for an unknown function ignored",
            "unknown functions",
        ),
        ("spawn with an invalid port name refused", "invalid spawns"),
        ("spawn created no port", "failed spawns"),
    ] {
        let n = lines_with(what);
        assert_eq!(n, 1, "{kind}: {n} warnings, not one");
    }
    still_serves(&node).await;
    node.shutdown();
}

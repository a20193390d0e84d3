//! State an authenticated peer can create, and its limits: spawned ports,
//! `mon1` registrations, Global group registrations and addresses (each:
//! under the cap it works, over it the documented outcome, the hit is
//! counted, the budget comes back); and the order of `mon1`/`mon0` under
//! concurrent monitor changes (issue 13, item 7).

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------- mon1/mon0 ordering

/// One thread drops the last monitor of a remote port while another adds
/// the first: whatever the interleaving, the peer must see `mon1` and
/// `mon0` strictly alternating (a `mon1` overtaken by the `mon0` of the
/// monitor before leaves the peer without a registration while we hold a
/// monitor). Before the fix (sending after the table's lock was
/// released) this saw `mon1, mon1, mon0, mon0`.
#[actix_rt::test]
async fn mon1_and_mon0_of_one_remote_port_alternate_under_concurrency() {
    const ROUNDS: usize = 20_000;
    let node = listening_node("order").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    let target = "raw#watched";
    // (Global's monitor of its connect port on the peer)
    let before = node.remote_monitor_count();

    let n = node.clone();
    let worker = std::thread::spawn(move || {
        let barrier = Arc::new(Barrier::new(2));
        let (tx, rx) = std::sync::mpsc::channel();
        let (b, n2) = (barrier.clone(), n.clone());
        let other = std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                b.wait();
                let m = n2.mon(target, |_| {});
                tx.send(m).unwrap();
            }
        });
        let mut last = None;
        for _ in 0..ROUNDS {
            drop(last.take());
            let first = n.mon(target, |_| {});
            barrier.wait();
            drop(first); // the last unmon, racing the other thread's first mon
            last = Some(rx.recv().unwrap());
        }
        other.join().unwrap();
        // the last operation was a mon: the peer must hold a registration
        std::mem::forget(last);
    });
    tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    node.snd("raw#done", &json!(["done"])).unwrap();

    let mut seen = Vec::new();
    loop {
        let p = peer.recv().await;
        if p[0] == "done" {
            break;
        }
        assert_eq!((&p[0], &p[2]), (&json!(""), &json!("watched")), "{p}");
        seen.push(p[1].as_str().unwrap().to_owned());
    }
    let mut registered = false;
    for (i, tag) in seen.iter().enumerate() {
        match tag.as_str() {
            "mon1" => assert!(!registered, "mon1 twice in a row at {i} of {}", seen.len()),
            "mon0" => assert!(registered, "mon0 without mon1 at {i} of {}", seen.len()),
            other => panic!("unexpected {other}"),
        }
        registered = tag == "mon1";
    }
    assert!(registered, "the peer was left without a registration");
    assert_eq!(node.remote_monitor_count(), before + 1);
    node.shutdown();
}

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

// ------------------------------------------------------------ the caps

/// A node with small per-peer caps and an init function `Test::idle`
/// (a port that ignores its messages).
fn capped(id: &str) -> aemp::NodeBuilder {
    aemp::Node::builder()
        .node_id(id)
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .peer_max_spawned_ports(3)
        .peer_max_monitors(2)
        .peer_max_group_registrations(2)
        .peer_max_addresses(3)
        .init_fn("Test::idle", |_, _| {
            Ok(aemp::PortBehaviour::handler(|_, _| Ok(())))
        })
}

async fn capped_node(id: &str) -> aemp::Node {
    capped(id).start().await.unwrap()
}

fn is_kil0_of(p: &Value, port: &str) -> bool {
    p[0] == "" && p[1] == "kil0" && p[2] == port
}

async fn spawn_on(peer: &mut RawPeer, name: &str) {
    peer.send(json!(["", "AnyEvent::MP::_spawn", name, "Test::idle"]))
        .await;
    peer.send(json!(["", "mon1", name])).await;
}

/// `peer` has the node relay `text` back to it, and gets it: its
/// connection is still good.
async fn relays_back(peer: &mut RawPeer, text: &str) {
    peer.send(json!(["", "snd", "raw#back", text])).await;
    assert_eq!(
        peer.recv_until(|m| m[0] == "back").await,
        json!(["back", text])
    );
}

#[actix_rt::test]
async fn spawned_ports_per_peer_are_capped_and_come_back_when_they_die() {
    use aemp::Limit::SpawnedPorts;
    let node = capped("caps").peer_max_monitors(100).start().await.unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    for i in 0..3 {
        spawn_on(&mut peer, &format!("w{i}")).await;
    }
    until("three spawned ports", || {
        node.peer_usage("raw", SpawnedPorts) == Some(3)
    })
    .await;
    assert!(node.port_exists(&aemp::PortId::from("caps#w2")));

    // over the cap: no port; the spawner's mon1 hears why
    spawn_on(&mut peer, "w3").await;
    let kil0 = peer.recv().await;
    assert!(is_kil0_of(&kil0, "w3"), "{kil0}");
    assert_eq!(kil0[3], aemp::LIMIT_EXCEEDED);
    assert_eq!(kil0[4], "spawned_ports");
    assert!(
        kil0[5].as_str().unwrap().contains("peer_max_spawned_ports"),
        "{kil0}"
    );
    assert!(!node.port_exists(&aemp::PortId::from("caps#w3")));
    // once: a later mon1 of that name finds no port
    peer.send(json!(["", "mon1", "w3"])).await;
    let kil0 = peer.recv().await;
    assert!(
        is_kil0_of(&kil0, "w3") && kil0[3] == "no_such_port",
        "{kil0}"
    );
    assert_eq!(node.limit_hit_count("raw", SpawnedPorts), 1);
    assert_eq!(node.peer_usage("raw", SpawnedPorts), Some(3));

    // a spawned port that dies gives its unit back
    node.kil("caps#w0", vec![json!("done")]).unwrap();
    let kil0 = peer.recv().await;
    assert!(is_kil0_of(&kil0, "w0"), "{kil0}");
    assert_eq!(node.peer_usage("raw", SpawnedPorts), Some(2));
    spawn_on(&mut peer, "w4").await;
    until("w4 spawned", || {
        node.port_exists(&aemp::PortId::from("caps#w4"))
    })
    .await;
    assert_eq!(node.limit_hit_count("raw", SpawnedPorts), 1);

    // another peer has its own budget
    let mut other = RawPeer::connect(&node, "raw2").await;
    spawn_on(&mut other, "v0").await;
    until("v0 spawned", || {
        node.peer_usage("raw2", SpawnedPorts) == Some(1)
    })
    .await;

    // spawned ports outlive their spawner's connection (as in the
    // reference), so they keep its budget until they die
    drop(peer);
    node_down(&node, "raw").await;
    assert_eq!(node.peer_usage("raw", SpawnedPorts), Some(3));
    for name in ["w1", "w2", "w4"] {
        node.kil(format!("caps#{name}"), vec![]).unwrap();
    }
    until("raw's budget back", || {
        node.peer_usage("raw", SpawnedPorts) == Some(0)
    })
    .await;
    node.shutdown();
}

#[actix_rt::test]
async fn mon1_registrations_per_peer_are_capped_and_come_back() {
    use aemp::Limit::RemoteMonitors;
    let node = capped_node("caps").await;
    let ports: Vec<_> = (0..3).map(|_| node.port_fn(|_, _| Ok(()))).collect();
    let name = |i: usize| ports[i].name().to_owned();
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "mon1", name(0)])).await;
    peer.send(json!(["", "mon1", name(1)])).await;
    peer.send(json!(["", "mon1", name(1)])).await; // the same one again: no more
    until("two registrations", || {
        node.peer_usage("raw", RemoteMonitors) == Some(2)
    })
    .await;

    peer.send(json!(["", "mon1", name(2)])).await;
    let kil0 = peer.recv().await;
    assert!(is_kil0_of(&kil0, &name(2)), "{kil0}");
    assert_eq!(
        (&kil0[3], &kil0[4]),
        (&json!("limit_exceeded"), &json!("remote_monitors"))
    );
    assert!(
        kil0[5].as_str().unwrap().contains("peer_max_monitors"),
        "{kil0}"
    );
    assert_eq!(node.limit_hit_count("raw", RemoteMonitors), 1);
    assert_eq!(node.peer_usage("raw", RemoteMonitors), Some(2));

    // mon0 gives one back
    peer.send(json!(["", "mon0", name(0)])).await;
    peer.send(json!(["", "mon1", name(2)])).await;
    until("p2 registered", || {
        node.peer_usage("raw", RemoteMonitors) == Some(2)
    })
    .await;
    // so does the port's death (the peer hears it)
    node.kil(&ports[1], vec![json!("bye")]).unwrap();
    let kil0 = peer.recv().await;
    assert_eq!(kil0, json!(["", "kil0", name(1), "bye"]));
    assert_eq!(node.peer_usage("raw", RemoteMonitors), Some(1));
    // the over-cap one registered nothing: killing it told the peer nothing more
    // and a dropped connection gives everything back
    drop(peer);
    node_down(&node, "raw").await;
    assert_eq!(node.peer_usage("raw", RemoteMonitors), Some(0));
    let mut peer = RawPeer::connect(&node, "raw").await;
    peer.send(json!(["", "mon1", name(0)])).await;
    peer.send(json!(["", "mon1", name(2)])).await;
    until("two again", || {
        node.peer_usage("raw", RemoteMonitors) == Some(2)
    })
    .await;
    peer.assert_silent(std::time::Duration::from_millis(200))
        .await;
    assert_eq!(node.limit_hit_count("raw", RemoteMonitors), 1);
    node.shutdown();
}

#[actix_rt::test]
async fn global_registrations_per_peer_are_capped_and_come_back() {
    use aemp::Limit::GroupRegistrations;
    let node = capped_node("caps").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    perl_style_opening(
        &mut peer,
        "raw",
        "gp",
        "127.0.0.1:1",
        json!({"g1": ["raw#a"]}),
    )
    .await;
    group_is(&node, "g1", &[aemp::PortId::from("raw#a")]).await;
    // another node's port is not the sender's to register (ignored)
    peer.send(json!(["gp", "reg1", "g2", "other#x"])).await;
    peer.send(json!(["gp", "reg1", "g2", "raw#b"])).await;
    group_is(&node, "g2", &[aemp::PortId::from("raw#b")]).await;
    assert_eq!(node.peer_usage("raw", GroupRegistrations), Some(2));
    assert_eq!(node.peer_usage("other", GroupRegistrations), Some(0));
    // re-registering a known one costs nothing
    peer.send(json!(["gp", "reg1", "g1", "raw#a"])).await;

    // over the cap: its registrations go, its Global port here is killed
    peer.send(json!(["gp", "reg1", "g3", "raw#c"])).await;
    let kil0 = peer.recv_until(|p| is_kil0_of(p, "gp")).await;
    assert_eq!(
        (&kil0[3], &kil0[4]),
        (&json!("limit_exceeded"), &json!("group_registrations"))
    );
    assert!(
        kil0[5]
            .as_str()
            .unwrap()
            .contains("peer_max_group_registrations"),
        "{kil0}"
    );
    group_is(&node, "g1", &[]).await;
    assert!(node.grp_get("g2").is_empty() && node.grp_get("g3").is_empty());
    assert_eq!(node.peer_usage("raw", GroupRegistrations), Some(0));
    assert_eq!(node.limit_hit_count("raw", GroupRegistrations), 1);

    // a second peer: under the cap, then its connection drops
    let mut two = RawPeer::connect(&node, "raw2").await;
    perl_style_opening(
        &mut two,
        "raw2",
        "gp2",
        "127.0.0.1:2",
        json!({"g1": ["raw2#a", "raw2#b"]}),
    )
    .await;
    until("two registrations", || {
        node.peer_usage("raw2", GroupRegistrations) == Some(2)
    })
    .await;
    drop(two);
    node_down(&node, "raw2").await;
    group_is(&node, "g1", &[]).await;
    assert_eq!(node.peer_usage("raw2", GroupRegistrations), Some(0));
    assert_eq!(node.limit_hit_count("raw2", GroupRegistrations), 0);
    node.shutdown();
}

/// When we cut a peer's Global link over a limit, its Global drops our
/// registrations (Global.pm 295); once it links up again (a new connect
/// port here), we send them again, or it would never see them.
#[actix_rt::test]
async fn after_a_cut_link_is_made_again_our_registrations_are_sent_again() {
    let node = capped_node("caps").await;
    let (ours, _rx) = node.port_channel();
    node.grp_reg("ours", &ours).unwrap().forget();
    let mut peer = RawPeer::connect(&node, "raw").await;
    perl_style_opening(&mut peer, "raw", "gp", "127.0.0.1:1", json!({})).await;
    // our connect port on the raw peer, and our registrations through it
    let spawn = peer
        .recv_until(|p| p[0] == "" && p[1] == "AnyEvent::MP::_spawn")
        .await;
    let gport = spawn[2].as_str().unwrap().to_owned();
    let is_set = |p: &Value| p[0] == gport.as_str() && p[1] == "set";
    let first = peer.recv_until(is_set).await;
    assert_eq!(first[2], json!({"ours": [ours.to_string()]}));
    // over the group cap: its link cut
    for p in ["raw#a", "raw#b", "raw#c"] {
        peer.send(json!(["gp", "reg1", "g", p])).await;
    }
    peer.recv_until(|p| is_kil0_of(p, "gp")).await;
    // its Global links up again: our registrations come again
    perl_style_opening(&mut peer, "raw", "gp2", "127.0.0.1:1", json!({})).await;
    let again = peer.recv_until(is_set).await;
    assert_eq!(again[2], json!({"ours": [ours.to_string()]}));
    node.shutdown();
}

#[actix_rt::test]
async fn global_addresses_per_message_are_capped() {
    use aemp::Limit::GroupAddresses;
    let node = capped_node("caps").await;
    let mut peer = RawPeer::connect(&node, "raw").await;
    // three addresses: fine
    perl_style_opening(&mut peer, "raw", "gp", "127.0.0.1:1", json!({})).await;
    peer.send(json!([
        "gp",
        "addr",
        ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    ]))
    .await;
    until("addresses taken", || node.addresses("raw").len() == 3).await;
    // four nodes' worth in one `nodes`: refused, Global port killed
    peer.send(json!(["gp", "nodes", {"x1": [], "x2": [], "x3": ["127.0.0.1:9", "127.0.0.1:8"]}]))
        .await;
    let kil0 = peer.recv_until(|p| is_kil0_of(p, "gp")).await;
    assert_eq!(
        (&kil0[3], &kil0[4]),
        (&json!("limit_exceeded"), &json!("group_addresses"))
    );
    assert_eq!(node.limit_hit_count("raw", GroupAddresses), 1);
    assert!(
        node.addresses("x3").is_empty(),
        "the refused message was not applied"
    );
    node.shutdown();
}

/// Nodes a peer names in Global `nodes` messages, which we neither are
/// connected to nor have a Global link with, are tried (connector, Global
/// spawn) — a peer could have us dial any number of them, a message at a
/// time. Each holds a unit of the peer's `peer_max_introduced_nodes`
/// until it comes up or the attempt gives up; nodes over the cap are
/// skipped (not dialled, counted), and the peer's Global link stays, as
/// every Perl node names all the nodes it knows when it links up.
#[actix_rt::test]
async fn nodes_a_peer_introduces_are_capped_and_come_back() {
    use aemp::Limit::IntroducedNodes;
    let node = aemp::Node::builder()
        .node_id("caps")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .peer_max_introduced_nodes(3)
        .monitor_timeout(std::time::Duration::from_millis(800))
        .start()
        .await
        .unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    perl_style_opening(&mut peer, "raw", "gp", "127.0.0.1:1", json!({})).await;
    let (nowhere1, nowhere2) = (free_port(), free_port());
    peer.send(json!(["gp", "nodes", {"n1": [nowhere1], "n2": [nowhere2]}]))
        .await;
    until("two introduced", || {
        node.peer_usage("raw", IntroducedNodes) == Some(2)
    })
    .await;
    // one already being tried costs nothing; the peer itself neither
    peer.send(json!(["gp", "nodes", {"n1": [nowhere1], "n3": [nowhere1], "raw": []}]))
        .await;
    until("three introduced", || {
        node.peer_usage("raw", IntroducedNodes) == Some(3)
    })
    .await;
    assert_eq!(node.addresses("n3"), std::slice::from_ref(&nowhere1));
    // two more: skipped and counted, the link stays
    peer.send(json!(["gp", "nodes", {"n4": [nowhere2], "n5": [nowhere2]}]))
        .await;
    until("the refusal counted", || {
        node.limit_hit_count("raw", IntroducedNodes) == 1
    })
    .await;
    assert!(node.addresses("n4").is_empty() && node.addresses("n5").is_empty());
    assert_eq!(node.peer_usage("raw", IntroducedNodes), Some(3));
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        peer.recv_until(|p| is_kil0_of(p, "gp")),
    )
    .await;
    assert!(cut.is_err(), "the Global link was cut: {cut:?}");
    // the attempts give up after monitor_timeout: the units come back,
    // and a node named again is tried
    until("attempts given up", || {
        node.peer_usage("raw", IntroducedNodes) == Some(0)
    })
    .await;
    peer.send(json!(["gp", "nodes", {"n4": [nowhere2]}])).await;
    until("n4 tried", || node.addresses("n4") == [nowhere2.clone()]).await;
    assert_eq!(node.peer_usage("raw", IntroducedNodes), Some(1));
    node.shutdown();
}

#[test]
fn the_caps_are_configuration_file_keys() {
    let values = json!({
        "secret": "s",
        "peer_max_spawned_ports": 7,
        "peer_max_monitors": "8",
        "peer_max_group_registrations": 9,
        "peer_max_addresses": 0,
        "peer_max_introduced_nodes": 4,
        "dataconn_max_pending": 3,
        "dataconn_max_timeout": 12,
    });
    let c = aemp::NodeConfig::from_values("n", values.as_object().unwrap()).unwrap();
    assert_eq!(
        (
            c.peer_max_spawned_ports,
            c.peer_max_monitors,
            c.peer_max_group_registrations
        ),
        (7, 8, 9)
    );
    assert_eq!(c.peer_max_addresses, 0);
    assert_eq!(c.peer_max_introduced_nodes, 4);
    assert_eq!(c.dataconn_max_pending, 3);
    assert_eq!(c.dataconn_max_timeout, std::time::Duration::from_secs(12));
    let d = aemp::NodeConfig::default();
    assert_eq!(
        (
            d.peer_max_spawned_ports,
            d.peer_max_monitors,
            d.peer_max_group_registrations,
            d.peer_max_addresses
        ),
        (100_000, 100_000, 100_000, 10_000)
    );
    for bad in [json!(-1), json!(1.5), json!("many")] {
        let v = json!({ "peer_max_monitors": bad });
        assert!(
            aemp::NodeConfig::from_values("n", v.as_object().unwrap()).is_err(),
            "{bad}"
        );
    }
}

// ------------------------------------------- memory per item (measured)

/// Resident set size of this process, in bytes (`/proc/self/statm`).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Sends `n` packets made by `make` (in batches, so the socket never
/// holds them all) and waits until `done` holds; prints the RSS growth
/// per packet.
async fn measure(
    what: &str,
    peer: &mut RawPeer,
    n: usize,
    make: impl Fn(usize) -> Value,
    done: impl Fn() -> bool,
    dbg: impl Fn() -> String,
) -> usize {
    use tokio::io::AsyncWriteExt;
    let before = rss();
    let mut buf = Vec::new();
    for i in 0..n {
        serde_json::to_writer(&mut buf, &make(i)).unwrap();
        if buf.len() > 1 << 16 {
            peer.stream.write_all(&buf).await.unwrap();
            buf.clear();
        }
    }
    peer.stream.write_all(&buf).await.unwrap();
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_secs(
            std::env::var("AEMP_MEM_WAIT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(600),
        );
    let mut polls = 0u64;
    while !done() {
        polls += 1;
        if polls.is_multiple_of(40) {
            eprintln!("{what}: waiting, RSS {} KiB {}", rss() / 1024, dbg());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not done in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let per = (rss().saturating_sub(before)) / n;
    println!(
        "{what}: {n} items, RSS +{} KiB, {per} B each",
        (rss() - before) / 1024
    );
    per
}

/// Memory per spawned port and per registration a peer can make us hold
/// (issue 13: goal ≤ 512 B each). Run with
/// `cargo test --test peer_limits memory -- --ignored --nocapture`.
#[actix_rt::test]
#[ignore = "a measurement: prints figures, takes a while"]
async fn memory_per_spawned_port_and_registration() {
    use aemp::Limit::{GroupRegistrations, RemoteMonitors, SpawnedPorts};
    let n: usize = std::env::var("AEMP_MEM_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    #[allow(non_snake_case)]
    let N = n;
    let node = aemp::Node::builder()
        .node_id("mem")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .peer_max_spawned_ports(10 * N + 10_000)
        .peer_max_monitors(10 * N + 10_000)
        .peer_max_group_registrations(10 * N + 10_000)
        .init_fn("Test::idle", |_, _| {
            Ok(aemp::PortBehaviour::handler(|_, _| Ok(())))
        })
        .start()
        .await
        .unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    perl_style_opening(&mut peer, "raw", "gp", "127.0.0.1:1", json!({})).await;
    let usage = |l| node.peer_usage("raw", l).unwrap();
    until("raw's Global port", || usage(SpawnedPorts) == 1).await;
    // warm up the allocator and the tables
    let (n0, base) = (node.clone(), usage(SpawnedPorts));
    measure(
        "warm-up spawns",
        &mut peer,
        1000,
        |i| json!(["", "AnyEvent::MP::_spawn", format!("warm{i}"), "Test::idle"]),
        || n0.peer_usage("raw", SpawnedPorts) == Some(base + 1000),
        || {
            format!(
                "{:?} {} {:?}",
                n0.peer_usage("raw", SpawnedPorts),
                n0.node_is_up("raw"),
                n0.limit_hits()
            )
        },
    )
    .await;

    let (n1, base) = (node.clone(), usage(SpawnedPorts));
    measure(
        "spawned handler port (Test::idle)",
        &mut peer,
        N,
        |i| json!(["", "AnyEvent::MP::_spawn", format!("s{i}"), "Test::idle"]),
        || n1.peer_usage("raw", SpawnedPorts) == Some(base + N),
        || format!("{:?}", n1.limit_hits()),
    )
    .await;
    let (n2, base) = (node.clone(), usage(RemoteMonitors));
    measure(
        "mon1 of a spawned port",
        &mut peer,
        N,
        |i| json!(["", "mon1", format!("s{i}")]),
        || n2.peer_usage("raw", RemoteMonitors) == Some(base + N),
        || format!("{:?}", n2.limit_hits()),
    )
    .await;
    let (n3, base) = (node.clone(), usage(GroupRegistrations));
    measure(
        "Global reg1, a group each",
        &mut peer,
        N,
        |i| json!(["gp", "reg1", format!("group{i}"), format!("raw#p{i}")]),
        || n3.peer_usage("raw", GroupRegistrations) == Some(base + N),
        || format!("{:?}", n3.limit_hits()),
    )
    .await;
    let (n4, base) = (node.clone(), usage(SpawnedPorts));
    measure(
        "spawned Global connect port",
        &mut peer,
        N,
        |i| {
            json!([
                "",
                "AnyEvent::MP::_spawn",
                format!("g{i}"),
                "AnyEvent::MP::Global::connect",
                0,
                "raw"
            ])
        },
        || n4.peer_usage("raw", SpawnedPorts) == Some(base + N),
        || format!("{:?}", n4.limit_hits()),
    )
    .await;
    node.shutdown();
}

/// Messages a peer has us relay (node-port `snd`, replies naming a port
/// elsewhere) to nodes that are not up wait in a queue with a connector
/// each: at most `peer_max_relay_nodes` such nodes, and `max_send_queue`
/// bytes, per peer. Over it the relay is dropped and counted; the peer's
/// connection stays, and relays to nodes that are up are not counted.
#[actix_rt::test]
async fn relays_to_nodes_that_are_not_up_are_capped_per_peer() {
    use aemp::Limit::RelayQueue;
    let node = aemp::Node::builder()
        .node_id("caps")
        .secret(SECRET)
        .bind("127.0.0.1:0")
        .peer_max_relay_nodes(3)
        .max_send_queue(256 * 1024)
        .monitor_timeout(std::time::Duration::from_millis(800))
        .start()
        .await
        .unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    for n in ["g1", "g2", "g1", "g3", "g4"] {
        peer.send(json!(["", "snd", format!("{n}#p"), "x"])).await;
    }
    // replies too: a `time` whose reply port is on a made-up node
    peer.send(json!(["", "time", "g5#p"])).await;
    // relays to the peer itself (up) cost nothing
    relays_back(&mut peer, "here").await;
    assert_eq!(node.peer_usage("raw", RelayQueue), Some(3));
    assert_eq!(node.limit_hit_count("raw", RelayQueue), 2);
    let known = node.known_nodes();
    assert!(
        ["g1", "g2", "g3"]
            .iter()
            .all(|n| known.contains(&n.to_string())),
        "{known:?}"
    );
    assert!(!known.iter().any(|n| n == "g4" || n == "g5"), "{known:?}");
    // the attempts give up after monitor_timeout: the nodes come back
    until("attempts given up", || {
        node.peer_usage("raw", RelayQueue) == Some(0)
    })
    .await;
    // (a spent budget is looked through for nodes no longer waiting at
    // most every 250 ms)
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // bytes: one relay larger than max_send_queue is refused, a small one
    // to a fresh node then fits
    let big = "y".repeat(300 * 1024);
    peer.send(json!(["", "snd", "g6#p", big])).await;
    peer.send(json!(["", "snd", "g7#p", "small"])).await;
    until("g7 queued", || {
        node.peer_usage("raw", RelayQueue) == Some(1)
    })
    .await;
    assert_eq!(node.limit_hit_count("raw", RelayQueue), 3);
    assert!(!node.known_nodes().iter().any(|n| n == "g6"));
    // the connection is still good
    relays_back(&mut peer, "still").await;
    node.shutdown();
}

// ------------------------------------------ relays and decoded requests

/// A relayed message goes on as the bytes that came (the node never
/// builds its value tree: `1.0e2` stays as written), also when its value
/// tree would be many times `max_packet`; a request the node must decode
/// (`devnull`, `_spawn`) whose value tree would pass `max_packet` is
/// refused and counted as `packet_size`, and the connection stays.
#[actix_rt::test]
async fn relays_go_on_as_bytes_and_costly_requests_are_refused() {
    use aemp::Limit::PacketSize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = capped("caps").max_packet(64 * 1024).start().await.unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    let mut third = RawPeer::connect(&node, "third").await;
    // 40 KB of `[]`: some 13,000 values, well over 64 KiB decoded
    let empties = vec!["[]"; 13_000].join(",");
    let relay = format!(r#"["","snd","third#p",1.0e2,[{empties}]]"#);
    assert!(relay.len() < 64 * 1024);
    peer.stream.write_all(relay.as_bytes()).await.unwrap();
    let want = format!(r#"["p",1.0e2,[{empties}]]"#);
    let mut got = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !got.windows(want.len()).any(|w| w == want.as_bytes()) {
            let mut chunk = [0u8; 65536];
            let n = third.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "third's connection closed");
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "the relay did not arrive as sent");
    assert_eq!(node.limit_hit_count("raw", PacketSize), 0);
    // the same value tree in requests the node decodes
    let devnull = format!(r#"["","devnull",[{empties}]]"#);
    let spawn = format!(r#"["","AnyEvent::MP::_spawn","s1","Test::idle",[{empties}]]"#);
    for request in [devnull, spawn] {
        peer.stream.write_all(request.as_bytes()).await.unwrap();
    }
    until("both refused", || {
        node.limit_hit_count("raw", PacketSize) == 2
    })
    .await;
    assert_eq!(node.peer_usage("raw", aemp::Limit::SpawnedPorts), Some(0));
    // small ones still work, and the connection is still good
    spawn_on(&mut peer, "s2").await;
    until("s2 spawned", || {
        node.peer_usage("raw", aemp::Limit::SpawnedPorts) == Some(1)
    })
    .await;
    relays_back(&mut peer, "still").await;
    node.shutdown();
}

/// Relays to a node that is up but does not read stop at the high-water
/// mark of its queue: the rest are dropped and counted as `relay_queue`,
/// and the connection to that node stays (a send of the node's own would
/// fail it with `send queue overflow`; a peer's relays must not).
#[actix_rt::test]
async fn relays_never_overflow_a_third_nodes_queue() {
    use aemp::Limit::RelayQueue;
    let node = capped("caps")
        .max_send_queue(256 * 1024)
        .start()
        .await
        .unwrap();
    let mut peer = RawPeer::connect(&node, "raw").await;
    // connected, never read
    let _third = RawPeer::connect(&node, "third").await;
    let chunk = "z".repeat(8 * 1024);
    // 48 MiB: far more than the queue and the sockets' buffers
    for _ in 0..6 * 1024 {
        peer.send(json!(["", "snd", "third#p", chunk])).await;
    }
    relays_back(&mut peer, "done").await;
    assert!(node.limit_hit_count("raw", RelayQueue) > 0);
    assert!(
        node.node_is_up("third"),
        "the third node's connection was failed"
    );
    node.shutdown();
}

//! A network of separate processes (this test binary, re-run as nodes): a
//! seed and 8 nodes given only the seed's address end up fully meshed, see
//! each other's group registrations, forget a killed node and its
//! registrations, and take it back when it restarts.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aemp::{Node, PortId};
use common::*;
use serde_json::{Value, json};

/// The body of a child node process, not a test (see `ChildNode`, which
/// runs it with `--ignored --exact`): a mesh node with a `probe` port that
/// answers `["up", reply]`, `["grp_get", group, reply]` and
/// `["grp_reg", group, reply]`.
#[test]
#[ignore = "a child node process: MeshNode starts it, with AEMP_TEST_MESH_NODE set"]
fn mesh_node_process() {
    let spec = std::env::var("AEMP_TEST_MESH_NODE")
        .expect("run by MeshNode, with AEMP_TEST_MESH_NODE set");
    let mut parts = spec.split_whitespace();
    let id = parts.next().unwrap_or("m").to_owned();
    let seed = parts.next().map(str::to_owned);
    actix_rt::System::new().block_on(async move {
        let mut b = Node::builder()
            .node_id(id)
            .secret(SECRET)
            .bind("127.0.0.1:0")
            .connect_interval(Duration::from_millis(500));
        if let Some(seed) = seed {
            b = b.seed(seed);
        }
        let node = b.start().await.unwrap();
        let me = node.clone();
        node.port_fn_named("probe", move |ctx, msg| {
            let v = msg.values()?;
            let text = |i: usize| {
                v.get(i)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            match text(0).as_str() {
                "up" => {
                    let mut up = me.up_nodes();
                    up.sort();
                    ctx.snd(text(1), &("up", up))?;
                }
                "grp_get" => {
                    let members: Vec<String> =
                        me.grp_get(&text(1)).iter().map(|p| p.to_string()).collect();
                    ctx.snd(text(2), &("grp", members))?;
                }
                "grp_reg" => {
                    let (port, _rx) = me.port_channel();
                    std::mem::forget(_rx); // keep the port alive
                    me.grp_reg(&text(1), &port)?.forget();
                    ctx.snd(text(2), &("ok", &port))?;
                }
                other => return Err(format!("unknown probe {other}").into()),
            }
            Ok(())
        })
        .unwrap();
        println!("{CHILD_ADDR}{}", node.listen_addrs()[0]);
        std::future::pending::<()>().await;
    });
}

/// A mesh node process, killed on drop.
struct MeshNode {
    id: String,
    process: ChildNode,
}

impl MeshNode {
    fn start(id: &str, seed: Option<&str>) -> MeshNode {
        let spec = format!("{id} {}", seed.unwrap_or_default());
        MeshNode {
            id: id.to_owned(),
            process: ChildNode::start("mesh_node_process", "AEMP_TEST_MESH_NODE", spec.trim()),
        }
    }

    fn addr(&self) -> &str {
        &self.process.addr
    }
}

/// Asks node `id` through its probe port; a node that does not answer
/// fails the test.
async fn probe(observer: &Node, id: &str, msg: Value) -> Vec<Value> {
    let reply = observer
        .cal(format!("{id}#probe"), &msg, Some(Duration::from_secs(10)))
        .await
        .unwrap_or_else(|e| panic!("probe {msg} of {id}: {e}"));
    reply.values().unwrap()
}

async fn up_nodes_of(observer: &Node, id: &str) -> BTreeSet<String> {
    let reply = probe(observer, id, json!(["up"])).await;
    reply
        .get(1)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn group_of(observer: &Node, id: &str, group: &str) -> Vec<String> {
    let reply = probe(observer, id, json!(["grp_get", group])).await;
    reply
        .get(1)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` (at most 60 s) until it holds for every node in `ids`.
async fn all_eventually<F, Fut>(what: &str, ids: &[String], mut check: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<String> = ids.to_vec();
    while !pending.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not true on {pending:?}"
        );
        let mut still = Vec::new();
        for id in pending {
            if !check(id.clone()).await {
                still.push(id);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[actix_rt::test]
async fn a_seed_and_eight_nodes_mesh_share_groups_forget_and_rejoin() {
    let seed = MeshNode::start("m0", None);
    let mut nodes: Vec<MeshNode> = (1..=8)
        .map(|i| MeshNode::start(&format!("m{i}"), Some(seed.addr())))
        .collect();
    let observer = Node::builder()
        .node_id("observer")
        .secret(SECRET)
        .start()
        .await
        .unwrap();
    for n in std::iter::once(&seed).chain(&nodes) {
        observer.add_addresses(&n.id, [n.addr().to_owned()]);
    }
    let ids: Vec<String> = std::iter::once(&seed)
        .chain(&nodes)
        .map(|n| n.id.clone())
        .collect();

    // every node ends up connected to every other
    all_eventually("full mesh", &ids, |id| {
        let (observer, ids) = (observer.clone(), ids.clone());
        async move {
            let up = up_nodes_of(&observer, &id).await;
            ids.iter().filter(|o| **o != id).all(|o| up.contains(o))
        }
    })
    .await;

    // a group registered on one node is seen by all
    let reg = probe(&observer, "m3", json!(["grp_reg", "svc"])).await;
    let port = reg.get(1).and_then(Value::as_str).unwrap().to_owned();
    all_eventually("group seen", &ids, |id| {
        let (observer, port) = (observer.clone(), port.clone());
        async move { group_of(&observer, &id, "svc").await == vec![port] }
    })
    .await;

    // a killed node and its registrations vanish everywhere
    let gone = probe(&observer, "m5", json!(["grp_reg", "gone"])).await;
    let gone_port = gone.get(1).and_then(Value::as_str).unwrap().to_owned();
    all_eventually("m5's group seen", &ids, |id| {
        let (observer, p) = (observer.clone(), gone_port.clone());
        async move { group_of(&observer, &id, "gone").await == vec![p] }
    })
    .await;
    nodes[4].process.kill();
    assert_eq!(nodes[4].id, "m5");
    let rest: Vec<String> = ids.iter().filter(|i| *i != "m5").cloned().collect();
    all_eventually("m5 forgotten", &rest, |id| {
        let observer = observer.clone();
        async move {
            !up_nodes_of(&observer, &id).await.contains("m5")
                && group_of(&observer, &id, "gone").await.is_empty()
        }
    })
    .await;

    // a restarted node rejoins the mesh
    nodes[4] = MeshNode::start("m5", Some(seed.addr()));
    observer.add_addresses("m5", [nodes[4].addr().to_owned()]);
    all_eventually("m5 back", &ids, |id| {
        let (observer, ids) = (observer.clone(), ids.clone());
        async move {
            let up = up_nodes_of(&observer, &id).await;
            ids.iter().filter(|o| **o != id).all(|o| up.contains(o))
        }
    })
    .await;
    let _ = PortId::from(port);
}

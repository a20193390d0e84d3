//! Chat through a global port group: every participant registers a port in
//! the group `chat`, and sends each line it reads to all other members.
//! Nodes find each other through one seed address; Perl nodes can take
//! part (`node.pl` stdin: `["grp_reg","chat"]`, then
//! `["snd","<member port>","msg","perl","hello"]`).
//!
//! ```text
//! cargo run --example chat                       # a demo: three nodes chat
//! cargo run --example chat -- --nodeid alice --bind 127.0.0.1:4500
//! cargo run --example chat -- --nodeid bob --bind 127.0.0.1:4501 --seed 127.0.0.1:4500
//! ```

use std::time::Duration;

use aemp::{Node, PortId};
use clap::Parser;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::timeout;

#[derive(Parser)]
#[command(about = "chat through the global group 'chat'")]
struct Args {
    /// This participant's node id (and nick); without it, runs a demo.
    #[arg(long)]
    nodeid: Option<String>,
    /// Where to listen, `host:port`.
    #[arg(long)]
    bind: Option<String>,
    /// The address of any node of the chat network.
    #[arg(long)]
    seed: Vec<String>,
    #[arg(long, default_value = "chat-example")]
    secret: String,
}

const GROUP: &str = "chat";

/// Starts a participant: a node whose port in the group prints every
/// message it gets.
async fn participant(
    nick: &str,
    bind: Option<String>,
    seeds: &[String],
    secret: &str,
) -> Result<(Node, PortId, mpsc::UnboundedReceiver<()>), String> {
    let mut b = Node::builder().node_id(nick).secret(secret);
    if let Some(bind) = bind {
        b = b.bind(bind);
    }
    for s in seeds {
        b = b.seed(s.clone());
    }
    let node = b.start().await.map_err(|e| e.to_string())?;
    let me = nick.to_owned();
    let (heard, heard_rx) = mpsc::unbounded_channel();
    let port = node
        .port_fn_named(GROUP, move |_, msg| {
            match msg.values()?.as_slice() {
                [Value::String(tag), from, text] if tag == "msg" => {
                    println!(
                        "[{me}] <{}> {}",
                        from.as_str().unwrap_or("?"),
                        text.as_str().unwrap_or("?")
                    );
                }
                other => println!("[{me}] {other:?}"),
            }
            let _ = heard.send(());
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    node.grp_reg(GROUP, &port)
        .map_err(|e| e.to_string())?
        .forget();
    let me = nick.to_owned();
    node.grp_mon(GROUP, move |_, added, removed| {
        for p in added {
            println!("[{me}] {} joined", p.node());
        }
        for p in removed {
            println!("[{me}] {} left", p.node());
        }
    })
    .forget();
    Ok((node, port, heard_rx))
}

/// Sends `text` to every member of the group but `me`.
fn say(node: &Node, me: &PortId, text: &str) {
    for member in node.grp_get(GROUP) {
        if &member != me
            && let Err(e) = node.snd(&member, &("msg", node.id(), text))
        {
            eprintln!("cannot send to {member}: {e}");
        }
    }
}

async fn demo(secret: &str) -> Result<(), String> {
    let (alice, pa, mut ha) = participant("alice", Some("127.0.0.1:0".into()), &[], secret).await?;
    let seed = vec![alice.listen_addrs()[0].to_string()];
    let (bob, pb, mut hb) = participant("bob", Some("127.0.0.1:0".into()), &seed, secret).await?;
    let (carol, pc, mut hc) = participant("carol", None, &seed, secret).await?;
    let all = [(&alice, &pa), (&bob, &pb), (&carol, &pc)];
    let wait = Duration::from_secs(10);
    // wait until everybody sees everybody: each node's group changes
    for (node, _) in all {
        members_reach(node, wait, |n| n == 3)
            .await
            .map_err(|_| format!("{} did not see the whole chat group", node.id()))?;
    }
    for (node, port) in all {
        say(node, port, &format!("hello from {}", node.id()));
    }
    // everybody hears the two others
    for heard in [&mut ha, &mut hb, &mut hc] {
        for _ in 0..2 {
            timeout(wait, heard.recv())
                .await
                .map_err(|_| "a greeting did not arrive")?;
        }
    }
    carol.shutdown();
    // alice and bob see carol leave
    for node in [&alice, &bob] {
        members_reach(node, wait, |n| n == 2)
            .await
            .map_err(|_| format!("{} did not see carol leave", node.id()))?;
    }
    alice.shutdown();
    bob.shutdown();
    Ok(())
}

/// Waits (at most `wait`) until the number of members of the group on
/// `node` satisfies `ok`, reading its group changes.
async fn members_reach(
    node: &Node,
    wait: Duration,
    ok: impl Fn(usize) -> bool,
) -> Result<(), tokio::time::error::Elapsed> {
    let mut changes = node.group_changes(GROUP);
    if ok(node.grp_get(GROUP).len()) {
        return Ok(());
    }
    timeout(wait, async {
        while let Some(change) = changes.recv().await {
            if ok(change.members.len()) {
                break;
            }
        }
    })
    .await
}

async fn interactive(args: Args) -> Result<(), String> {
    let nick = args.nodeid.clone().unwrap_or_default();
    let (node, port, _heard) = participant(&nick, args.bind, &args.seed, &args.secret).await?;
    println!("{nick}: type lines to send them to everybody in '{GROUP}'");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        say(&node, &port, &line);
    }
    node.shutdown();
    Ok(())
}

fn main() {
    let args = Args::parse();
    let secret = args.secret.clone();
    let result = actix_rt::System::new().block_on(async move {
        match args.nodeid {
            None => demo(&secret).await,
            Some(_) => interactive(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}

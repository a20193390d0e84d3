//! The reference's "bridge-head" chat (`eg/chat_server2`, `eg/chat_client2`
//! of AnyEvent::MP 1.30) in Rust; either side talks to the Perl programs.
//!
//! * The server registers its **bare node id** in the group
//!   `eg_chat_server2` and offers the init function `::client_connect`.
//! * A client finds a server node in that group, makes a port that prints
//!   what it gets, and spawns `::client_connect($client, $nick)` on the
//!   server: the spawned port (the client's bridge head) relays each line
//!   the client sends to it to every client. Each side watches the other:
//!   the bridge head dies with its client (`mon $client`), the client
//!   port dies with its bridge head (`mon $server, $client`), and the
//!   client then connects again.
//!
//! ```text
//! cargo run --example chat2 -- --server --nodeid chatS --bind 127.0.0.1:4600
//! cargo run --example chat2 -- --nick alice --seed 127.0.0.1:4600      # type lines
//! echo hello | cargo run --example chat2 -- --nick bob --seed 127.0.0.1:4600 --linger 2
//! ```
//!
//! The Perl programs are configured through the aemp configuration file
//! (`aemp profile … seeds … secret …`); give both sides the same secret.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aemp::{Node, PortBehaviour, PortId, Rcv};
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
#[command(about = "the reference's bridge-head chat (eg/chat_server2, eg/chat_client2)")]
struct Args {
    /// Run the server (else a client).
    #[arg(long)]
    server: bool,
    /// The client's nick name.
    #[arg(long, default_value = "rust")]
    nick: String,
    /// This node's id (default: the server `chat_server2`, a client
    /// `anon/…`).
    #[arg(long)]
    nodeid: Option<String>,
    /// Where to listen, `host:port` (a client needs none).
    #[arg(long)]
    bind: Vec<String>,
    /// The address of any node of the chat network.
    #[arg(long)]
    seed: Vec<String>,
    #[arg(long, default_value = "geheim")]
    secret: String,
    /// Client: after standard input ends, wait this many seconds (for the
    /// last relayed lines), then quit; without it the client runs on.
    #[arg(long)]
    linger: Option<f64>,
}

const GROUP: &str = "eg_chat_server2";
const CONNECT: &str = "::client_connect";

/// A value as Perl interpolates it into a string.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// The first element of a message as text (Perl's `$_[0]`).
fn first_text(values: &[Value]) -> String {
    values.first().map(text).unwrap_or_default()
}

/// Relays `text` to every client (`sub msg` of chat_server2).
fn relay(node: &Node, clients: &Mutex<BTreeMap<String, PortId>>, text: &str) {
    println!("relaying: {text}");
    let clients: Vec<PortId> = clients
        .lock()
        .map(|c| c.values().cloned().collect())
        .unwrap_or_default();
    for client in clients {
        if let Err(e) = node.snd(&client, &[text]) {
            eprintln!("relay to {client}: {e}");
        }
    }
}

async fn server(args: Args) -> Result<(), String> {
    let clients: Arc<Mutex<BTreeMap<String, PortId>>> = Arc::default();
    let registry = clients.clone();
    let mut builder = Node::builder()
        .node_id(args.nodeid.unwrap_or_else(|| "chat_server2".into()))
        .secret(args.secret.as_str())
        .init_fn(CONNECT, move |ctx, initargs| {
            // client_connect($client, $nick)
            let client = initargs
                .first()
                .and_then(Value::as_str)
                .map(PortId::from)
                .ok_or("client_connect: no client port")?;
            let nick = initargs.get(1).map(text).unwrap_or_default();
            let node = ctx.node().clone();
            // mon $client: the bridge head dies with its client
            ctx.mon(&client).forget();
            // mon $client, sub { delete $clients{$client}; msg "$nick (quits, @_)" }
            let (quit_node, quit_clients, quit_nick, key) = (
                node.clone(),
                registry.clone(),
                nick.clone(),
                client.to_string(),
            );
            node.mon(&client, move |reason| {
                if let Ok(mut c) = quit_clients.lock() {
                    c.remove(&key);
                }
                let why: Vec<String> = reason.iter().map(text).collect();
                relay(
                    &quit_node,
                    &quit_clients,
                    &format!("{quit_nick} (quits, {})", why.join(" ")),
                );
            })
            .forget();
            if let Ok(mut c) = registry.lock() {
                c.insert(client.to_string(), client.clone());
            }
            relay(&node, &registry, &format!("{nick} (joins)"));
            // rcv $SELF, sub { msg "$nick: $_[0]" }
            let (line_clients, line_nick) = (registry.clone(), nick);
            Ok(PortBehaviour::rcv(Rcv::new().default(move |ctx, msg| {
                let values = msg.values()?;
                relay(
                    ctx.node(),
                    &line_clients,
                    &format!("{line_nick}: {}", first_text(&values)),
                );
                Ok(())
            })))
        });
    for b in &args.bind {
        builder = builder.bind(b.as_str());
    }
    for s in &args.seed {
        builder = builder.seed(s.as_str());
    }
    let node = builder.start().await.map_err(|e| e.to_string())?;
    // grp_reg eg_chat_server2 => $NODE
    node.grp_reg(GROUP, &PortId::from(node.id()))
        .map_err(|e| e.to_string())?
        .forget();
    eprintln!("server ready: {} on {:?}", node.id(), node.listen_addrs());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    // the clients' monitors hear ("shutdown", …) before the connections close
    node.shutdown_gracefully(node.shutdown_reason(), Duration::from_secs(2))
        .await;
    drop(clients);
    Ok(())
}

/// `server_connect` of chat_client2: finds a server, makes the client
/// port, spawns the bridge head; the returned id is the bridge head.
async fn server_connect(node: &Node, nick: &str, server: Arc<Mutex<Option<PortId>>>) {
    let servers = loop {
        let members = node.grp_get(GROUP);
        if !members.is_empty() {
            break members;
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // `after 1, \&server_connect`
    };
    println!("connecting...");
    let client = node.port_fn(|_, msg| {
        let values = msg.values()?;
        let words: Vec<String> = values.iter().map(text).collect();
        println!("{}", words.join(" "));
        Ok(())
    });
    let target = servers[0].node().to_owned();
    match node.spawn(&target, CONNECT, &(&client, nick)) {
        Ok(bridge) => {
            // mon $server, $client
            node.mon_kil(&bridge, &client).forget();
            if let Ok(mut s) = server.lock() {
                *s = Some(bridge);
            }
        }
        Err(e) => eprintln!("spawn on {target}: {e}"),
    }
    // mon $client, sub { print "disconnected @_"; &server_connect }
    let (again, nick, server) = (node.clone(), nick.to_owned(), server.clone());
    node.mon(&client, move |reason| {
        println!("disconnected {reason:?}");
        if let Ok(mut s) = server.lock() {
            *s = None;
        }
        let node = again.clone();
        actix_rt::spawn(async move { Box::pin(server_connect(&node, &nick, server)).await });
    })
    .forget();
}

async fn client(args: Args) -> Result<(), String> {
    if args.seed.is_empty() {
        return Err("a client needs --seed HOST:PORT".into());
    }
    let mut builder = Node::builder().secret(args.secret.as_str());
    if let Some(id) = &args.nodeid {
        builder = builder.node_id(id.as_str());
    }
    for b in &args.bind {
        builder = builder.bind(b.as_str());
    }
    for s in &args.seed {
        builder = builder.seed(s.as_str());
    }
    let node = builder.start().await.map_err(|e| e.to_string())?;
    let server: Arc<Mutex<Option<PortId>>> = Arc::default();
    server_connect(&node, &args.nick, server.clone()).await;
    // standard input, read on a thread of its own
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let target = server.lock().ok().and_then(|s| s.clone());
        if let Some(Err(e)) = target.map(|t| node.snd(&t, &[line])) {
            eprintln!("send: {e}");
        }
    }
    match args.linger {
        Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    // the bridge head's monitor hears ("shutdown", …), as in Perl
    node.shutdown_gracefully(node.shutdown_reason(), Duration::from_secs(2))
        .await;
    Ok(())
}

#[actix::main]
async fn main() {
    let args = Args::parse();
    let result = if args.server {
        server(args).await
    } else {
        client(args).await
    };
    if let Err(e) = result {
        eprintln!("chat2: {e}");
        std::process::exit(1);
    }
}

//! Typed messages between a Rust tag-dispatch port and a Perl-style peer.
//!
//! The peer is a port `echo` that answers `["ping", $reply, @args]` with
//! `snd $reply, pong => @args`, as `echo` of the Perl tool
//! `../shared/peer/node.pl` does. By default it runs here, on a second
//! in-process aemp node written the way a Perl program is (untyped, by
//! tag); with `--perl 127.0.0.1:4101 --perl-node perlB` the example talks
//! to a real Perl node's `perlB#echo` instead.
//!
//! The Rust side sends `Tagged(ToEcho::Ping(..))` (the array
//! `["ping", reply_port, word, n]`) and receives the replies on a port
//! made with `Rcv::typed`: `["pong", word, n]` arrives as
//! `FromEcho::Pong(word, n)`; anything else goes to the port's default.
//!
//! ```text
//! cargo run --example typed_ports [-- --count 3] [--framing storable]
//! cargo run --example typed_ports -- --perl 127.0.0.1:4101 --perl-node perlB
//! ```

use std::time::Duration;

use aemp::wire::Framing;
use aemp::{Node, PortId, Rcv, Tagged};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Parser)]
#[command(about = "typed messages between a Rust port and a Perl-style echo port")]
struct Args {
    /// Number of pings.
    #[arg(long, default_value_t = 3)]
    count: i64,
    /// Shared secret.
    #[arg(long, default_value = "geheim")]
    secret: String,
    /// Address of a Perl node (node.pl) to use instead of the in-process peer.
    #[arg(long)]
    perl: Option<String>,
    /// Node id of that Perl node.
    #[arg(long, default_value = "perlB")]
    perl_node: String,
    /// The framing the Rust node offers (json, storable or cbor).
    #[arg(long, default_value = "json")]
    framing: String,
}

/// What the Rust side sends to `echo`.
#[derive(Serialize, Deserialize, Debug)]
enum ToEcho {
    /// `["ping", reply_port, word, n]`
    #[serde(rename = "ping")]
    Ping(PortId, String, i64),
}

/// What `echo` sends back.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum FromEcho {
    /// `["pong", word, n]`
    #[serde(rename = "pong")]
    Pong(String, i64),
}

/// The in-process peer: a port written as the Perl program
/// `rcv port, ping => sub { my ($reply, @args) = @_; snd $reply, pong => @args }`.
async fn perl_style_peer(secret: &str, framing: Framing) -> Result<(Node, PortId), String> {
    let node = Node::builder()
        .node_id("perlish")
        .secret(secret)
        .framings([framing])
        .bind("127.0.0.1:0")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let echo = node
        .port_fn_named("echo", |_, _| Ok(()))
        .map_err(|e| e.to_string())?;
    node.rcv(&echo, "ping", |ctx, msg| {
        let mut args = msg.values()?;
        if args.is_empty() {
            return Err("ping without a reply port".into());
        }
        let reply = args.remove(0);
        let reply = reply.as_str().ok_or("the reply port is not a string")?;
        args.insert(0, json!("pong"));
        ctx.snd(reply, &args)?;
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok((node, echo))
}

async fn run(args: Args) -> Result<(), String> {
    let framing = Framing::from_name(&args.framing)
        .ok_or_else(|| format!("unknown framing {:?}", args.framing))?;
    let node = Node::builder()
        .node_id("rusty")
        .secret(args.secret.clone())
        .framings([framing])
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let (peer, echo, addr) = match &args.perl {
        Some(addr) => (None, PortId::new(&args.perl_node, "echo"), addr.to_owned()),
        None => {
            let (peer, echo) = perl_style_peer(&args.secret, framing).await?;
            let addr = peer.listen_addrs()[0].to_string();
            (Some(peer), echo, addr)
        }
    };
    let up = tokio::time::timeout(Duration::from_secs(10), node.connect(addr.clone()))
        .await
        .map_err(|_| format!("{addr}: no connection within 10 s"))?
        .map_err(|e| e.to_string())?;
    println!(
        "connected to {up} at {addr}; echo port {echo}; we send {:?}",
        node.send_framing(&up)
    );

    let (inbox, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let other = inbox.clone();
    let replies = node.port_rcv(
        Rcv::new()
            .typed(move |_, m: FromEcho| {
                let _ = inbox.send(Ok(m));
                Ok(())
            })
            .default(move |_, msg| {
                let _ = other.send(Err(msg.values()?));
                Ok(())
            }),
    );
    for n in 1..=args.count {
        let ping = ToEcho::Ping(replies.clone(), "hello".into(), n);
        println!(
            "sent     {}",
            serde_json::to_string(&Tagged(&ping)).unwrap_or_default()
        );
        node.snd(&echo, &Tagged(ping)).map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Ok(pong))) => {
                println!("received {pong:?}");
                if pong != FromEcho::Pong("hello".into(), n) {
                    return Err(format!("unexpected reply {pong:?}"));
                }
            }
            Ok(Some(Err(untyped))) => return Err(format!("untyped reply {untyped:?}")),
            _ => return Err(format!("no reply to ping {n} within 5 s")),
        }
    }
    // a message whose tag is no variant goes to the default, whole
    node.snd(&replies, &("pang", 1))
        .map_err(|e| e.to_string())?;
    if let Ok(Some(Err(untyped))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        println!("default  {}", serde_json::Value::Array(untyped));
    }
    node.shutdown();
    if let Some(peer) = peer {
        peer.shutdown();
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = actix_rt::System::new().block_on(run(args));
    if let Err(e) = result {
        eprintln!("typed_ports: {e}");
        std::process::exit(1);
    }
}

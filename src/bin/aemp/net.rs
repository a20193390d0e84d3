//! The protocol commands: they run an anonymous node from profile `aemp`
//! (node id `anon/` unless the file says otherwise), which reaches its
//! target only through the configured seeds and the Global mesh.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use aemp::config::ConfigFile;
use aemp::wire::{NodeRequest, ReplyTo};
use aemp::{Node, PortId};
use serde_json::{Map, Value};

use crate::args::{next_text, perl_text};
use crate::error::{CliError, CliResult};

/// The reference's timeouts.
const SHORT: Duration = Duration::from_secs(5);
const TRACE: Duration = Duration::from_secs(15);

/// Perl's `print join " ", @values, "\n"`.
fn perl_join_line(values: &[Value]) -> String {
    let mut parts: Vec<String> = values.iter().map(perl_text).collect();
    parts.push("\n".into());
    parts.join(" ")
}

/// JSON of `values` without the surrounding brackets (`cal`, `eval`).
fn json_list(values: &[Value]) -> String {
    let text = serde_json::to_string(values).unwrap_or_default();
    text.get(1..text.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// The node of a port id (the reference's `node_of`).
fn node_of(port: &str) -> String {
    PortId::from(port).node().to_owned()
}

/// What to add to a timeout when the command's node had nothing to start
/// from.
fn no_seeds_hint(node: &Node) -> &'static str {
    if node.config().seeds.is_empty() {
        " (no seeds are configured for profile aemp: try `aemp profile aemp setseeds host:port`)"
    } else {
        ""
    }
}

/// Starts the command's node (profile `aemp`, explicit node id `anon/`,
/// which the file may override, as in the reference).
async fn init(file: &ConfigFile) -> CliResult<Node> {
    let mut explicit = Map::new();
    explicit.insert("nodeid".into(), Value::from("anon/"));
    let (cfg, _) = file.node_config("aemp", &explicit)?;
    Ok(Node::builder().config(cfg).start().await?)
}

/// Runs `fut` to its end on a fresh actix system.
pub fn runtime<T>(fut: impl std::future::Future<Output = CliResult<T>>) -> CliResult<T> {
    actix_rt::System::new().block_on(fut)
}

/// Runs protocol command `cmd`; false if it is not one.
pub fn command(file: &ConfigFile, cmd: &str, args: &mut VecDeque<Value>) -> CliResult<bool> {
    match cmd {
        "snd" => {
            let port = next_text(args, "port")?;
            let msg: Vec<Value> = args.drain(..).collect();
            runtime(snd(file, port, msg))?;
        }
        "cal" => {
            let port = next_text(args, "port")?;
            let msg: Vec<Value> = args.drain(..).collect();
            runtime(cal(file, port, msg))?;
        }
        "mon" => {
            let port = next_text(args, "port")?;
            runtime(mon(file, port))?;
        }
        "eval" => {
            let node = next_text(args, "node")?;
            let expr = args
                .drain(..)
                .map(|v| perl_text(&v))
                .collect::<Vec<_>>()
                .join(" ");
            let out = runtime(eval_on(file, node_of(&node), expr))?;
            outln!("{out}");
        }
        "restart" => {
            let node = next_text(args, "node")?;
            let code = "my $w; $w = AE::idle sub { undef $w; use AnyEvent::Watchdog::Util ();AnyEvent::Watchdog::Util::restart}; ()";
            let out = runtime(eval_on(file, node_of(&node), code.into()))?;
            outln!("{out}");
        }
        "shell" => {
            let node = args.pop_front().map(|v| perl_text(&v));
            runtime(shell(file, node))?;
        }
        "trace" => {
            let node = next_text(args, "node id")?;
            let dot = args.front().is_some_and(|v| v == "--dot");
            if dot {
                args.pop_front();
            }
            runtime(trace(file, node, dot))?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

async fn snd(file: &ConfigFile, port: String, msg: Vec<Value>) -> CliResult<()> {
    let node = init(file).await?;
    node.snd(&port, &msg)?;
    let (tx, mut died) = tokio::sync::mpsc::unbounded_channel();
    node.mon(&port, move |reason| {
        let _ = tx.send(reason);
    })
    .forget();
    let (reply, mut rx) = node.port_channel();
    let probe = NodeRequest::Snd {
        port: reply.to_string(),
        msg: vec![Value::from("message sent successfully")],
    };
    node.snd(node_of(&port), &probe.into_values())?;
    // the reference prints the probe's answer or the port's kil reason,
    // whichever comes first; a dead port is also a failure here
    let outcome = tokio::select! {
        // a kil0 is handled before the probe's answer behind it
        biased;
        Some(reason) = died.recv() => Err(reason),
        Some(p) = rx.recv() => Ok(p.values()?),
        _ = tokio::time::sleep(SHORT) => return Err(CliError::NoAnswer { command: "snd", target: port, hint: no_seeds_hint(&node) }),
    };
    let (Ok(values) | Err(values)) = &outcome;
    out!("{}", perl_join_line(values));
    node.shutdown_gracefully(Vec::new(), Duration::from_secs(1))
        .await;
    match outcome {
        Ok(_) => Ok(()),
        Err(reason) => Err(CliError::Gone {
            port,
            reason: perl_join_line(&reason).trim_end().to_owned(),
        }),
    }
}

async fn cal(file: &ConfigFile, port: String, msg: Vec<Value>) -> CliResult<()> {
    let node = init(file).await?;
    let result = node.cal(&port, &msg, None).await;
    node.shutdown_gracefully(Vec::new(), Duration::from_secs(1))
        .await;
    match result {
        Ok(reply) => {
            outln!("{}", json_list(&reply.values()?));
            Ok(())
        }
        Err(aemp::CalError::TargetDied(reason)) => {
            // the reference's callback gets no arguments: an empty line
            outln!();
            Err(CliError::Died {
                port,
                reason: perl_join_line(&reason).trim_end().to_owned(),
            })
        }
        Err(source) => Err(CliError::Cal {
            source,
            hint: no_seeds_hint(&node),
        }),
    }
}

async fn mon(file: &ConfigFile, port: String) -> CliResult<()> {
    let node = init(file).await?;
    let (tx, mut died) = tokio::sync::mpsc::unbounded_channel();
    node.mon(&port, move |reason| {
        let _ = tx.send(reason);
    })
    .forget();
    let reason = died.recv().await.ok_or(CliError::NodeStopped("mon"))?;
    out!("{}", perl_join_line(&reason));
    node.shutdown_gracefully(Vec::new(), Duration::from_secs(1))
        .await;
    Ok(())
}

/// Sends `["", "eval", expr, reply]` to `target` and returns what to print:
/// the results as a JSON list, or the error Perl puts in `$@` (an aemp
/// node always answers with a refusal there).
async fn eval_request(node: &Node, target: &str, expr: &str) -> CliResult<Vec<Value>> {
    let (reply, mut rx) = node.port_channel();
    let (tx, mut died) = tokio::sync::mpsc::unbounded_channel();
    let monitor = node.mon(target, move |reason| {
        let _ = tx.send(reason);
    });
    let req = NodeRequest::Eval {
        code: Some(Value::from(expr)),
        reply: Some(ReplyTo {
            port: reply.to_string(),
            msg: Vec::new(),
        }),
    };
    node.snd(target, &req.into_values())?;
    let values = tokio::select! {
        biased;
        Some(p) = rx.recv() => p.values()?,
        Some(reason) = died.recv() => reason,
        _ = tokio::time::sleep(SHORT) => return Err(CliError::NoAnswer { command: "eval", target: target.to_owned(), hint: no_seeds_hint(node) }),
    };
    monitor.unmon();
    let _ = node.kil(&reply, Vec::new());
    Ok(values)
}

async fn eval_on(file: &ConfigFile, target: String, expr: String) -> CliResult<String> {
    let node = init(file).await?;
    let values = eval_request(&node, &target, &expr).await;
    node.shutdown_gracefully(Vec::new(), Duration::from_secs(1))
        .await;
    let values = values?;
    let err = values.first().map(perl_text).unwrap_or_default();
    if !err.is_empty() {
        return Err(CliError::Remote(
            perl_join_line(&values).trim_end().to_owned(),
        ));
    }
    Ok(json_list(values.get(1..).unwrap_or_default()))
}

async fn shell(file: &ConfigFile, target: Option<String>) -> CliResult<()> {
    use std::io::Write as _;
    let node = init(file).await?;
    let mut target = target.unwrap_or_else(|| node.id().to_owned());
    outln!("Entering interactive shell - no commandline editing of course (use rlfe etc.).\n");
    outln!("=           display a list of nodes");
    outln!("=name       switch to another node\n");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    out!("{target}> ");
    let _ = std::io::stdout().flush();
    while let Some(line) = lines.recv().await {
        if let Some(rest) = line.strip_prefix('=') {
            if rest.is_empty() {
                outln!("{}", node.up_nodes().join(" "));
            } else {
                target = rest.to_owned();
            }
        } else {
            let start = std::time::Instant::now();
            let reply = eval_request(&node, &target, &line).await;
            outln!("\n  {target}: {line}");
            match reply {
                Ok(values) => {
                    let err = values.first().map(perl_text).unwrap_or_default();
                    if err.is_empty() {
                        outln!("  {}", serde_json::to_string(&values).unwrap_or_default());
                    } else {
                        outln!("  {}", perl_join_line(&values).trim_end());
                    }
                }
                Err(e) => outln!("  {e}"),
            }
            outln!("  {:.3}s", start.elapsed().as_secs_f64());
        }
        out!("{target}> ");
        let _ = std::io::stdout().flush();
    }
    node.shutdown();
    Ok(())
}

/// Asks `start` for its up nodes, then those for theirs, and so on; prints
/// `seed <start>` and one line `<node> <up nodes…>` per node (or, with
/// `--dot`, a Graphviz graph of the same links).
async fn trace(file: &ConfigFile, start: String, dot: bool) -> CliResult<()> {
    let node = init(file).await?;
    let me = node.id().to_owned();
    let (reply, mut rx) = node.port_channel();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut links: Vec<(String, Vec<String>)> = Vec::new();
    let mut pending = 1usize;
    node.snd(&reply, &("seed", &start))?;
    let deadline = tokio::time::Instant::now() + TRACE;
    while pending > 0 {
        let packet = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| CliError::TraceTimeout(no_seeds_hint(&node)))?
            .ok_or(CliError::NodeStopped("trace"))?;
        let values = packet.values()?;
        let Some((first, rest)) = values.split_first() else {
            continue;
        };
        let from = perl_text(first);
        let neigh: Vec<String> = rest.iter().map(perl_text).filter(|n| *n != me).collect();
        if !dot {
            let mut line = vec![from.clone()];
            line.extend(neigh.iter().cloned());
            outln!("{}", line.join(" "));
        }
        for n in &neigh {
            if seen.insert(n.clone()) {
                pending += 1;
                let req = NodeRequest::UpNodes(ReplyTo {
                    port: reply.to_string(),
                    msg: vec![Value::from(n.as_str())],
                });
                node.snd(n, &req.into_values())?;
            }
        }
        links.push((from, neigh));
        pending -= 1;
    }
    if dot {
        out!("{}", dot_graph(&node, &links));
    }
    node.shutdown_gracefully(Vec::new(), Duration::from_secs(1))
        .await;
    Ok(())
}

/// The traced topology as a Graphviz graph; Perl nodes are boxes, aemp
/// nodes ellipses, nodes whose provider is unknown dashed.
fn dot_graph(node: &Node, links: &[(String, Vec<String>)]) -> String {
    let mut nodes: BTreeSet<&str> = BTreeSet::new();
    let mut edges: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (from, neigh) in links.iter().filter(|(f, _)| f != "seed") {
        nodes.insert(from);
        for n in neigh {
            nodes.insert(n);
            let (a, b) = if from.as_str() < n.as_str() {
                (from.as_str(), n.as_str())
            } else {
                (n.as_str(), from.as_str())
            };
            edges.insert((a, b));
        }
    }
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let quote = |s: &str| format!("\"{}\"", escape(s));
    let mut out = String::from("graph aemp {\n");
    for n in &nodes {
        let provider = node.provider_of(n);
        let style = match provider.as_deref() {
            Some(p) if p.starts_with("AE-") => "shape=box",
            Some(p) if p.starts_with("aemp-") => "shape=ellipse",
            _ => "shape=ellipse, style=dashed",
        };
        // Graphviz's `\n` line break between the escaped parts; over TLS,
        // how the node authenticated to the tracer and its certificate
        let mut parts = vec![escape(n)];
        parts.extend(provider.as_deref().map(escape));
        if let Some(auth) = node.peer_auth(n).filter(|a| a.tls()) {
            let subject = auth.subject.unwrap_or_default();
            parts.push(escape(&format!("{} {subject}", auth.method)));
        }
        let label = if parts.len() == 1 {
            quote(n)
        } else {
            format!("\"{}\"", parts.join("\\n"))
        };
        out.push_str(&format!("  {} [label={label}, {style}];\n", quote(n)));
    }
    for (a, b) in &edges {
        out.push_str(&format!("  {} -- {};\n", quote(a), quote(b)));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gencert() -> aemp::wire::NodeCert {
        let pem = crate::cert::generate().expect("gencert");
        aemp::wire::NodeCert::from_pem(&pem).expect("a usable blob")
    }

    /// Over TLS, a node's label shows how it authenticated to the tracer
    /// and its certificate's subject; over plain text it does not.
    #[test]
    fn dot_labels_show_tls_authentication() {
        actix_rt::System::new().block_on(async {
            let cert = gencert();
            let a = Node::builder()
                .node_id("dot-a")
                .cert(cert.clone())
                .bind("127.0.0.1:0")
                .start()
                .await
                .unwrap();
            let tracer = Node::builder()
                .node_id("dot-t")
                .cert(cert)
                .start()
                .await
                .unwrap();
            tracer
                .connect(a.listen_addrs()[0].to_string())
                .await
                .unwrap();
            let links = vec![("dot-a".to_owned(), vec!["dot-x".to_owned()])];
            let dot = dot_graph(&tracer, &links);
            assert!(
                dot.contains("\"dot-a\" [label=\"dot-a\\naemp-")
                    && dot.contains("\\ntls_md6_64_256 CN=AnyEvent::MP\""),
                "{dot}"
            );
            assert!(
                dot.contains("\"dot-x\" [label=\"dot-x\", shape=ellipse, style=dashed]"),
                "{dot}"
            );
            a.shutdown();
            tracer.shutdown();
        });
    }
}

//! Requests to the node port `""`: `["", tag, args…]`.
//!
//! They run inline, in packet order, on the connection that carried them
//! (so a spawned port exists before the next packet of that connection is
//! routed, and a `kil` takes effect before the packets after it). A
//! malformed request is logged and ignored, never fatal.

use serde_json::Value;

use super::functions::Function;
use super::monitor::Reason;
use super::node::NodeInner;
use super::spawn::SPAWN_FUNCTION;

/// Perl stringifies whatever it gets; strings and numbers make sense as
/// port names and tags, anything else is malformed.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What `eval` requests get back from an aemp node in the place where Perl
/// puts `$@`: aemp never executes code it is sent.
pub const EVAL_REFUSED: &str = "eval refused: this is an aemp node, which does not execute code";

/// Handles one node-port request from node `from` (our own id for local
/// requests).
pub(crate) fn handle(node: &NodeInner, from: &str, values: Vec<Value>) {
    let mut args = values.into_iter();
    let tag = match args.next() {
        None => return, // ["",] : a keepalive-like no-op
        Some(v) => match text(&v) {
            Some(t) => t,
            None => return malformed(node, from, "(not a string)", "tag is not a string"),
        },
    };
    let mut args: Vec<Value> = args.collect();
    let first = || args.first().and_then(text);
    // the arguments after the first, moved out (messages can be large)
    let rest = |args: &mut Vec<Value>| {
        if args.is_empty() {
            Vec::new()
        } else {
            args.split_off(1)
        }
    };

    match tag.as_str() {
        "" | "devnull" => {}
        "mon1" => match first() {
            Some(port) => node.remote_mon1(from, &port),
            None => malformed(node, from, &tag, "port name missing"),
        },
        "mon0" => match first() {
            Some(port) => node.remote_mon0(from, &port),
            None => malformed(node, from, &tag, "port name missing"),
        },
        "kil0" => match first() {
            Some(port) => node.remote_kil0(from, &port, rest(&mut args)),
            None => malformed(node, from, &tag, "port name missing"),
        },
        "kil" => match first() {
            Some(port) if port.is_empty() => {
                tracing::warn!(node = %node.id, remote = from, "request to kill the node port ignored");
            }
            Some(port) => node.kill_local(&port, rest(&mut args)),
            None => malformed(node, from, &tag, "port name missing"),
        },
        "snd" => match first() {
            Some(port) => relay(node, from, &port, rest(&mut args)),
            None => malformed(node, from, &tag, "port missing"),
        },
        "snd_multiple" => {
            for item in args {
                match item {
                    Value::Array(mut msg) if !msg.is_empty() => match text(&msg.remove(0)) {
                        Some(port) => relay(node, from, &port, msg),
                        None => malformed(node, from, &tag, "port is not a string"),
                    },
                    _ => malformed(node, from, &tag, "entry is not [port, @msg]"),
                }
            }
        }
        "info" => reply(node, from, &tag, &args, vec![Value::from(&*node.id)]),
        "known_nodes" => {
            let known = node.handle().known_nodes().into_iter().map(Value::from);
            reply(node, from, &tag, &args, known.collect())
        }
        "up_nodes" => {
            let up = node.peers.up_nodes().into_iter().map(Value::from).collect();
            reply(node, from, &tag, &args, up)
        }
        "time" => reply(node, from, &tag, &args, vec![perl_time()]),
        "eval" => {
            tracing::warn!(node = %node.id, remote = from, "eval request refused");
            // code, then (optionally) port and message
            if args.len() > 1 {
                reply(
                    node,
                    from,
                    &tag,
                    &args[1..],
                    vec![Value::from(EVAL_REFUSED)],
                );
            }
        }
        SPAWN_FUNCTION => match (first(), args.get(1).and_then(text)) {
            (Some(port), Some(init)) => node.spawn_request(
                from,
                &port,
                &init,
                args.get(2..).unwrap_or_default().to_vec(),
            ),
            _ => malformed(node, from, &tag, "port name or init function missing"),
        },
        name => call(node, from, name, args),
    }
}

/// `["", "Pkg::func", args…]`: a plain call of a registered function.
fn call(node: &NodeInner, from: &str, name: &str, args: Vec<Value>) {
    match node.functions.get(name) {
        Some(Function::Plain(f)) => {
            if let Err(error) = node.call_plain(&f, args) {
                tracing::warn!(node = %node.id, remote = from, function = name, %error, "node-port function failed");
            }
        }
        Some(Function::Init(_)) => {
            tracing::warn!(node = %node.id, remote = from, function = name, "an init function called as a plain function; ignored");
        }
        None => {
            tracing::warn!(node = %node.id, remote = from, function = name, "node-port request for an unknown function ignored");
        }
    }
}

/// `snd` relays: send `msg` to `port`.
fn relay(node: &NodeInner, from: &str, port: &str, msg: Vec<Value>) {
    if let Err(error) = node.snd(port, &msg) {
        tracing::warn!(node = %node.id, remote = from, %port, %error, "relayed message not sent");
    }
}

/// `info`-style requests: `[port, @msg]` answered with `snd port, @msg,
/// @extra`.
fn reply(node: &NodeInner, from: &str, tag: &str, args: &[Value], extra: Vec<Value>) {
    let Some(port) = args.first().and_then(text) else {
        return malformed(node, from, tag, "reply port missing");
    };
    let mut msg = args[1..].to_vec();
    msg.extend(extra);
    relay(node, from, &port, msg);
}

fn malformed(node: &NodeInner, from: &str, tag: &str, why: &str) {
    tracing::warn!(node = %node.id, remote = from, tag, why, "malformed node-port request ignored");
}

/// The current time as Perl's `AE::time` prints it through JSON::XS: a
/// float with 15 significant digits.
fn perl_time() -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let rounded: f64 = format!("{now:.14e}").parse().unwrap_or(now);
    Value::from(rounded)
}

/// The reason a monitor of a missing port gets.
pub(crate) fn no_such_port(port: &str) -> Reason {
    vec![
        Value::from("no_such_port"),
        Value::from("cannot monitor nonexistent port"),
        Value::from(port),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_has_15_significant_digits() {
        let t = perl_time();
        let s = t.to_string();
        let digits = s.chars().filter(char::is_ascii_digit).count();
        assert!(digits <= 15, "{s}");
        assert!(t.as_f64().unwrap() > 1.7e9);
    }

    #[test]
    fn lenient_text() {
        assert_eq!(text(&Value::from(5)), Some("5".into()));
        assert_eq!(text(&Value::from("p")), Some("p".into()));
        assert_eq!(text(&Value::Null), None);
    }
}

//! Requests to the node port `""`: `["", tag, args…]`.
//!
//! They run inline, in packet order, on the connection that carried them
//! (so a spawned port exists before the next packet of that connection is
//! routed, and a `kil` takes effect before the packets after it). A
//! malformed request is logged and ignored, never fatal. Requests are
//! parsed into, and the kernel's own sent with, [`crate::wire::NodeRequest`].

use serde_json::Value;

use super::functions::Function;
use super::node::NodeInner;
use super::port::split_port;
use crate::wire::{NodeRequest, NodeRequestError, Packet, ReplyTo, SndEntry};

/// What `eval` requests get back from an aemp node in the place where Perl
/// puts `$@`: aemp never executes code it is sent.
pub const EVAL_REFUSED: &str = "eval refused: this is an aemp node, which does not execute code";

/// Handles one node-port request from node `from` (our own id for local
/// requests).
impl NodeInner {
    /// Handles one node-port request from node `from` (our own id for
    /// local requests): `values` are the packet's values after the
    /// destination.
    pub(crate) fn node_port_values(&self, from: &str, values: Vec<Value>) {
        handle(self, from, values)
    }
}

fn handle(node: &NodeInner, from: &str, values: Vec<Value>) {
    let request = match NodeRequest::parse(values) {
        Ok(request) => request,
        Err(error) => {
            if error.tag() == "eval" {
                crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, "eval request refused");
            }
            return malformed(node, from, &error);
        }
    };
    match request {
        NodeRequest::Keepalive | NodeRequest::Nop(_) | NodeRequest::Devnull(_) => {}
        NodeRequest::Mon1 { port } => node.remote_mon1(from, &port),
        NodeRequest::Mon0 { port } => node.remote_mon0(from, &port),
        NodeRequest::Kil0 { port, reason } => node.remote_kil0(from, &port, reason),
        NodeRequest::Kil { port, .. } if port.is_empty() => {
            crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, "request to kill the node port ignored");
        }
        NodeRequest::Kil { port, reason } => node.kill_local(&port, reason),
        NodeRequest::Snd { port, msg } => relay(node, from, &port, msg),
        NodeRequest::SndMultiple(entries) => {
            for entry in entries {
                match entry {
                    SndEntry::Relay { port, msg } => relay(node, from, &port, msg),
                    SndEntry::Malformed { why, .. } => {
                        let error = NodeRequestError::Malformed {
                            tag: "snd_multiple",
                            why,
                        };
                        malformed(node, from, &error)
                    }
                }
            }
        }
        NodeRequest::Info(to) => reply(node, from, to, vec![Value::from(&*node.id)]),
        NodeRequest::KnownNodes(to) => {
            let known = node.handle().known_nodes().into_iter().map(Value::from);
            reply(node, from, to, known.collect())
        }
        NodeRequest::UpNodes(to) => {
            let up = node
                .remote
                .peers()
                .up_nodes()
                .into_iter()
                .map(Value::from)
                .collect();
            reply(node, from, to, up)
        }
        NodeRequest::Time(to) => reply(node, from, to, vec![perl_time()]),
        NodeRequest::Eval { reply: to, .. } => {
            crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, "eval request refused");
            if let Some(to) = to {
                reply(node, from, to, vec![Value::from(EVAL_REFUSED)]);
            }
        }
        NodeRequest::Spawn { port, init, args } => node.spawn_request(from, &port, &init, args),
        NodeRequest::Call { name, args } => call(node, from, &name, args),
    }
}

/// `["", "Pkg::func", args…]`: a plain call of a registered function.
fn call(node: &NodeInner, from: &str, name: &str, args: Vec<Value>) {
    match node.ports.functions().get(name) {
        Some(Function::Plain(f)) => {
            if let Err(error) = node.call_plain(&f, args) {
                crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, function = name, %error, "node-port function failed");
            }
        }
        Some(Function::Sourced(f)) => {
            if let Err(error) = node.call_sourced(&f, from, args) {
                crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, function = name, %error, "node-port function failed");
            }
        }
        Some(Function::Init(_)) => {
            crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, function = name, "an init function called as a plain function; ignored");
        }
        None => {
            crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, function = name, "node-port request for an unknown function ignored");
        }
    }
}

/// `snd` relays of a request that had to be decoded, and answers: send
/// `msg` to `port` (see [`NodeInner::relay_frame`]).
fn relay(node: &NodeInner, from: &str, port: &str, msg: Vec<Value>) {
    let (_, name) = split_port(port);
    match Packet::to_frame(name, &msg) {
        Ok(frame) => node.relay_frame(from, port, frame),
        Err(error) => {
            crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, %port, %error, "relayed message not sent")
        }
    }
}

/// `info`-style requests: `[port, @msg]` answered with `snd port, @msg,
/// @extra`.
fn reply(node: &NodeInner, from: &str, to: ReplyTo, extra: Vec<Value>) {
    let (port, msg) = to.answer(extra);
    relay(node, from, &port, msg);
}

fn malformed(node: &NodeInner, from: &str, error: &NodeRequestError) {
    let (tag, why) = (error.tag(), error.why());
    crate::transport::log_throttle::peer_warn!(node.transport.log_throttle(), from, node = %node.id, remote = from, tag, why, "malformed node-port request ignored");
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
}

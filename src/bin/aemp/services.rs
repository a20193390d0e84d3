//! Services built into the `aemp` binary, for `services` in the
//! configuration file (a Rust application registers its own).

use aemp::{NodeBuilder, PortId};
use serde_json::Value;

/// The built-in services, with what they do (for the help text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "Aemp::Echo::start",
        "port <node>#echo in group \"echo\": answers [\"ping\", reply, args…] with [\"pong\", args…], and [args…, reply] (as `aemp cal` sends) with [args…]",
    ),
    (
        "Aemp::Inbox::start",
        "port <node>#inbox: prints every message it gets as a JSON line",
    ),
];

/// Registers the built-in services on `builder`.
pub fn register(builder: NodeBuilder) -> NodeBuilder {
    builder
        .plain_fn("Aemp::Echo::start", |node, _args| {
            let port = node.port_fn_named("echo", |ctx, msg| {
                let values = msg.values()?;
                match values.as_slice() {
                    // node.pl's echo: ["ping", reply, args…] → ["pong", args…]
                    [Value::String(tag), Value::String(reply), rest @ ..] if tag == "ping" => {
                        let mut answer = vec![Value::from("pong")];
                        answer.extend(rest.iter().cloned());
                        ctx.snd(reply, &answer)?;
                    }
                    // `cal`'s convention: [args…, reply] → [args…]
                    [rest @ .., Value::String(reply)] if reply.contains('#') => {
                        ctx.snd(reply, rest)?;
                    }
                    _ => {}
                }
                Ok(())
            })?;
            node.grp_reg("echo", &port)?.forget();
            Ok(())
        })
        .plain_fn("Aemp::Inbox::start", |node, _args| {
            let id = PortId::new(node.id(), "inbox");
            node.port_fn_named("inbox", move |_, msg| {
                outln!(
                    "{}",
                    serde_json::json!({"port": id.as_str(), "msg": msg.values()?})
                );
                Ok(())
            })?;
            Ok(())
        })
}

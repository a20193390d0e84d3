//! Typed requests to the node port `""` (protocol notes, section 3).
//!
//! A node-port packet is `["", tag, args…]`; [`NodeRequest::parse`] takes
//! the values after the destination (`[tag, args…]`) and
//! [`NodeRequest::encode`] gives them back in the reference's shapes. The
//! parser is as lenient as the reference where that is harmless: port
//! names and tags may arrive as JSON numbers (Perl stringifies them), and
//! arguments nobody reads are ignored. Anything else malformed is a
//! [`NodeRequestError`], never a panic.
//!
//! Only node-port traffic goes through these types; ordinary messages to
//! named ports never do.
//!
//! ```
//! use aemp::wire::NodeRequest;
//! use serde_json::json;
//! let values = vec![json!("kil"), json!("p.a"), json!("die"), json!("boom")];
//! let req = NodeRequest::parse(values.clone()).unwrap();
//! assert_eq!(req, NodeRequest::Kil { port: "p.a".into(), reason: vec![json!("die"), json!("boom")] });
//! assert_eq!(req.encode(), values);
//! assert!(NodeRequest::parse(vec![json!("mon1")]).is_err());
//! ```

use serde_json::Value;
use thiserror::Error;

/// Why a port died: empty for a normal exit (`kil $port`), otherwise the
/// reference's reason list, e.g. `["die", "message"]` or
/// `["transport_error", "<node>", "Connection reset by peer"]`.
pub type Reason = Vec<Value>;

/// The node-port function that spawns a port:
/// `["", "AnyEvent::MP::_spawn", name, initfunc, @initdata]`.
pub const SPAWN_FUNCTION: &str = "AnyEvent::MP::_spawn";

/// The first part of the reason a monitor of a missing port gets.
pub const NO_SUCH_PORT: &str = "no_such_port";

/// Perl stringifies whatever it gets; strings and numbers make sense as
/// port names and tags, anything else is malformed.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where an `info`-style request wants its answer: `port, @msg`, answered
/// with `snd port, @msg, @extra`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTo {
    /// The port id to answer (a full id, `node#name`).
    pub port: String,
    /// The message the answer starts with.
    pub msg: Vec<Value>,
}

impl ReplyTo {
    /// The answer: the port to send to and `@msg, @extra`.
    pub fn answer(self, extra: impl IntoIterator<Item = Value>) -> (String, Vec<Value>) {
        let mut msg = self.msg;
        msg.extend(extra);
        (self.port, msg)
    }

    /// `[port, @msg]` from `args`; `None` if the port is missing or not a
    /// string or number.
    fn parse(mut args: Vec<Value>) -> Option<ReplyTo> {
        let port = text(args.first()?)?;
        let msg = args.split_off(1);
        Some(ReplyTo { port, msg })
    }

    fn move_to(self, out: &mut Vec<Value>) {
        out.push(Value::from(self.port));
        out.extend(self.msg);
    }
}

/// One entry of `snd_multiple`: `[port, @msg]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SndEntry {
    /// A message to relay.
    Relay {
        /// The destination port id.
        port: String,
        /// The message.
        msg: Vec<Value>,
    },
    /// An entry that is not `[port, @msg]`: it is skipped (and logged)
    /// while the other entries are still relayed, so it is kept as it
    /// came.
    Malformed {
        /// The entry as it arrived.
        entry: Value,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl SndEntry {
    fn parse(entry: Value) -> SndEntry {
        match entry {
            Value::Array(mut msg) if !msg.is_empty() => match text(&msg[0]) {
                Some(port) => {
                    msg.remove(0);
                    SndEntry::Relay { port, msg }
                }
                None => SndEntry::Malformed {
                    entry: Value::Array(msg),
                    why: "port is not a string",
                },
            },
            entry => SndEntry::Malformed {
                entry,
                why: "entry is not [port, @msg]",
            },
        }
    }

    fn into_value(self) -> Value {
        match self {
            SndEntry::Relay { port, mut msg } => {
                msg.insert(0, Value::from(port));
                Value::Array(msg)
            }
            SndEntry::Malformed { entry, .. } => entry,
        }
    }
}

/// A request to the node port, `["", tag, args…]`: every tag the
/// reference kernel understands, and plain function calls.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeRequest {
    /// `["",]`: no tag at all, a no-op.
    Keepalive,
    /// `["", "", …]`: the empty tag, a no-op (its arguments are kept for
    /// the encoding).
    Nop(Vec<Value>),
    /// `["", "devnull", …]`: ignored.
    Devnull(Vec<Value>),
    /// `mon1 portname`: monitor our port for the sender (answered with
    /// `kil0` when it dies, or at once with [`no_such_port`]).
    Mon1 {
        /// The monitored port's name (the part after `#`).
        port: String,
    },
    /// `mon0 portname`: stop that monitor.
    Mon0 {
        /// The monitored port's name.
        port: String,
    },
    /// `kil0 portname, @reason`: a port we monitor on the sender died.
    Kil0 {
        /// The dead port's name on the sender.
        port: String,
        /// Why it died (empty: a normal exit).
        reason: Vec<Value>,
    },
    /// `kil portname, @reason`: kill our port (no reason: normal exit).
    Kil {
        /// The port's name.
        port: String,
        /// Why (empty: a normal exit).
        reason: Vec<Value>,
    },
    /// `snd port, @msg`: relay `msg` to `port`.
    Snd {
        /// The destination port id.
        port: String,
        /// The message.
        msg: Vec<Value>,
    },
    /// `snd_multiple [port, @msg]…`: relay each.
    SndMultiple(Vec<SndEntry>),
    /// `info port, @msg`: answered with `@msg, <node id>`.
    Info(ReplyTo),
    /// `known_nodes port, @msg`: answered with the known node ids appended.
    KnownNodes(ReplyTo),
    /// `up_nodes port, @msg`: answered with the up node ids appended.
    UpNodes(ReplyTo),
    /// `time port, @msg`: answered with the current time appended.
    Time(ReplyTo),
    /// `eval code, port, @msg`: never executed by aemp; answered with an
    /// error text in the place of Perl's `$@` if a port is given.
    Eval {
        /// The Perl code (`None`: the request had no arguments).
        code: Option<Value>,
        /// Where to answer, if anywhere.
        reply: Option<ReplyTo>,
    },
    /// `AnyEvent::MP::_spawn portname, initfunc, @initdata`.
    Spawn {
        /// The new port's name, picked by the spawner.
        port: String,
        /// The init function.
        init: String,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// Any other tag: a plain call of the function of that name (e.g.
    /// `AnyEvent::MP::DataConn::_expect`), whether or not it exists here.
    Call {
        /// The function's name.
        name: String,
        /// Its arguments.
        args: Vec<Value>,
    },
}

/// Why a node-port request could not be parsed. Such requests are logged
/// and ignored, never fatal to the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeRequestError {
    /// The tag is neither a string nor a number.
    #[error("node-port request tag is not a string")]
    TagNotAString,
    /// A known tag with arguments of the wrong shape.
    #[error("malformed node-port request {tag}: {why}")]
    Malformed {
        /// The request's tag.
        tag: &'static str,
        /// What is missing or wrong.
        why: &'static str,
    },
}

impl NodeRequestError {
    /// The tag, as it shows in logs (`(not a string)` when it was not one).
    pub fn tag(&self) -> &'static str {
        match self {
            NodeRequestError::TagNotAString => "(not a string)",
            NodeRequestError::Malformed { tag, .. } => tag,
        }
    }

    /// What is wrong, as it shows in logs.
    pub fn why(&self) -> &'static str {
        match self {
            NodeRequestError::TagNotAString => "tag is not a string",
            NodeRequestError::Malformed { why, .. } => why,
        }
    }
}

/// The tags with a fixed meaning (every other tag is a function call, and
/// `""` and `devnull` do nothing).
pub const NODE_PORT_TAGS: &[&str] = &[
    "mon1",
    "mon0",
    "kil0",
    "kil",
    "snd",
    "snd_multiple",
    "info",
    "known_nodes",
    "up_nodes",
    "time",
    "eval",
    SPAWN_FUNCTION,
];

fn malformed(tag: &str, why: &'static str) -> NodeRequestError {
    let tag = NODE_PORT_TAGS
        .iter()
        .copied()
        .find(|t| *t == tag)
        .unwrap_or("?");
    NodeRequestError::Malformed { tag, why }
}

impl NodeRequest {
    /// Parses the values of a node-port packet after its destination:
    /// `[tag, args…]`. The arguments are moved, not copied.
    pub fn parse(values: Vec<Value>) -> Result<NodeRequest, NodeRequestError> {
        let mut args = values.into_iter();
        let tag = match args.next() {
            None => return Ok(NodeRequest::Keepalive),
            Some(v) => text(&v).ok_or(NodeRequestError::TagNotAString)?,
        };
        let mut args: Vec<Value> = args.collect();
        let first = |args: &[Value]| args.first().and_then(text);
        // the arguments after the first, moved out
        let rest = |args: &mut Vec<Value>| {
            if args.is_empty() {
                Vec::new()
            } else {
                args.split_off(1)
            }
        };
        let port = |args: &[Value], why| first(args).ok_or_else(|| malformed(&tag, why));
        let reply = |args: Vec<Value>| {
            ReplyTo::parse(args).ok_or_else(|| malformed(&tag, "reply port missing"))
        };
        Ok(match tag.as_str() {
            "" => NodeRequest::Nop(args),
            "devnull" => NodeRequest::Devnull(args),
            "mon1" => NodeRequest::Mon1 {
                port: port(&args, "port name missing")?,
            },
            "mon0" => NodeRequest::Mon0 {
                port: port(&args, "port name missing")?,
            },
            "kil0" => NodeRequest::Kil0 {
                port: port(&args, "port name missing")?,
                reason: rest(&mut args),
            },
            "kil" => NodeRequest::Kil {
                port: port(&args, "port name missing")?,
                reason: rest(&mut args),
            },
            "snd" => NodeRequest::Snd {
                port: port(&args, "port missing")?,
                msg: rest(&mut args),
            },
            "snd_multiple" => {
                NodeRequest::SndMultiple(args.into_iter().map(SndEntry::parse).collect())
            }
            "info" => NodeRequest::Info(reply(args)?),
            "known_nodes" => NodeRequest::KnownNodes(reply(args)?),
            "up_nodes" => NodeRequest::UpNodes(reply(args)?),
            "time" => NodeRequest::Time(reply(args)?),
            "eval" => {
                // code, then (optionally) port and message
                let answer = if args.len() > 1 {
                    Some(reply(rest(&mut args))?)
                } else {
                    None
                };
                NodeRequest::Eval {
                    code: args.pop(),
                    reply: answer,
                }
            }
            SPAWN_FUNCTION => match (first(&args), args.get(1).and_then(text)) {
                (Some(port), Some(init)) => NodeRequest::Spawn {
                    port,
                    init,
                    args: args.split_off(2),
                },
                _ => return Err(malformed(&tag, "port name or init function missing")),
            },
            _ => NodeRequest::Call { name: tag, args },
        })
    }

    /// The tag this request is sent with (`None` for [`NodeRequest::Keepalive`]).
    pub fn tag(&self) -> Option<&str> {
        Some(match self {
            NodeRequest::Keepalive => return None,
            NodeRequest::Nop(_) => "",
            NodeRequest::Devnull(_) => "devnull",
            NodeRequest::Mon1 { .. } => "mon1",
            NodeRequest::Mon0 { .. } => "mon0",
            NodeRequest::Kil0 { .. } => "kil0",
            NodeRequest::Kil { .. } => "kil",
            NodeRequest::Snd { .. } => "snd",
            NodeRequest::SndMultiple(_) => "snd_multiple",
            NodeRequest::Info(_) => "info",
            NodeRequest::KnownNodes(_) => "known_nodes",
            NodeRequest::UpNodes(_) => "up_nodes",
            NodeRequest::Time(_) => "time",
            NodeRequest::Eval { .. } => "eval",
            NodeRequest::Spawn { .. } => SPAWN_FUNCTION,
            NodeRequest::Call { name, .. } => name,
        })
    }

    /// The request as the values after the destination, `[tag, args…]`,
    /// in the reference's shapes (numeric port names come back as
    /// strings).
    pub fn encode(&self) -> Vec<Value> {
        self.clone().into_values()
    }

    /// Like [`NodeRequest::encode`], but moves the arguments instead of
    /// copying them: what the kernel sends.
    pub fn into_values(self) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(tag) = self.tag() {
            out.push(Value::from(tag));
        }
        match self {
            NodeRequest::Keepalive => {}
            NodeRequest::Nop(args)
            | NodeRequest::Devnull(args)
            | NodeRequest::Call { args, .. } => out.extend(args),
            NodeRequest::Mon1 { port } | NodeRequest::Mon0 { port } => out.push(Value::from(port)),
            NodeRequest::Kil0 { port, reason: rest }
            | NodeRequest::Kil { port, reason: rest }
            | NodeRequest::Snd { port, msg: rest } => {
                out.push(Value::from(port));
                out.extend(rest);
            }
            NodeRequest::SndMultiple(entries) => {
                out.extend(entries.into_iter().map(SndEntry::into_value))
            }
            NodeRequest::Info(r)
            | NodeRequest::KnownNodes(r)
            | NodeRequest::UpNodes(r)
            | NodeRequest::Time(r) => r.move_to(&mut out),
            NodeRequest::Eval { code, reply } => {
                if code.is_some() || reply.is_some() {
                    out.push(code.unwrap_or(Value::Null));
                }
                if let Some(r) = reply {
                    r.move_to(&mut out);
                }
            }
            NodeRequest::Spawn { port, init, args } => {
                out.push(Value::from(port));
                out.push(Value::from(init));
                out.extend(args);
            }
        }
        out
    }
}

/// The reason a monitor of a missing port gets: `("no_such_port",
/// "cannot monitor nonexistent port", <node>#<portname>)`.
pub fn no_such_port(port: &str) -> Vec<Value> {
    vec![
        Value::from(NO_SUCH_PORT),
        Value::from("cannot monitor nonexistent port"),
        Value::from(port),
    ]
}

/// The reason of every monitor of a node whose transport failed:
/// `("transport_error", <nodeid>, <text>)`.
pub fn transport_error(node: &str, text: &str) -> Vec<Value> {
    vec![
        Value::from("transport_error"),
        Value::from(node),
        Value::from(text),
    ]
}

/// The reason a failed handler kills its port with: `("die", message)`,
/// trailing newlines removed as the reference does.
pub fn die_reason(message: &str) -> Vec<Value> {
    vec![
        Value::from("die"),
        Value::from(message.trim_end_matches('\n')),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vals(v: Value) -> Vec<Value> {
        match v {
            Value::Array(a) => a,
            _ => unreachable!(),
        }
    }

    fn round_trip(v: Value) -> NodeRequest {
        let values = vals(v);
        let req = NodeRequest::parse(values.clone()).unwrap();
        assert_eq!(req.encode(), values, "{req:?}");
        assert_eq!(req.clone().into_values(), values, "{req:?}");
        req
    }

    #[test]
    fn lenient_text() {
        assert_eq!(text(&Value::from(5)), Some("5".into()));
        assert_eq!(text(&Value::from("p")), Some("p".into()));
        assert_eq!(text(&Value::Null), None);
    }

    #[test]
    fn every_tag_round_trips() {
        assert_eq!(round_trip(json!([])), NodeRequest::Keepalive);
        assert_eq!(round_trip(json!([""])), NodeRequest::Nop(vec![]));
        assert_eq!(round_trip(json!(["", 1])), NodeRequest::Nop(vec![json!(1)]));
        assert_eq!(
            round_trip(json!(["devnull", 1, [2]])),
            NodeRequest::Devnull(vec![json!(1), json!([2])])
        );
        assert_eq!(
            round_trip(json!(["mon1", "p"])),
            NodeRequest::Mon1 { port: "p".into() }
        );
        assert_eq!(
            round_trip(json!(["mon0", "p"])),
            NodeRequest::Mon0 { port: "p".into() }
        );
        assert_eq!(
            round_trip(json!(["kil0", "p"])),
            NodeRequest::Kil0 {
                port: "p".into(),
                reason: vec![]
            }
        );
        assert_eq!(
            round_trip(json!(["kil", "p", "die", "x"])),
            NodeRequest::Kil {
                port: "p".into(),
                reason: vec![json!("die"), json!("x")]
            }
        );
        assert_eq!(
            round_trip(json!(["snd", "n#p", {"a": 1}, null])),
            NodeRequest::Snd {
                port: "n#p".into(),
                msg: vec![json!({"a": 1}), Value::Null]
            }
        );
        assert_eq!(
            round_trip(json!(["snd_multiple", ["n#a", 1], ["n#b"], 5, []])),
            NodeRequest::SndMultiple(vec![
                SndEntry::Relay {
                    port: "n#a".into(),
                    msg: vec![json!(1)]
                },
                SndEntry::Relay {
                    port: "n#b".into(),
                    msg: vec![]
                },
                SndEntry::Malformed {
                    entry: json!(5),
                    why: "entry is not [port, @msg]"
                },
                SndEntry::Malformed {
                    entry: json!([]),
                    why: "entry is not [port, @msg]"
                },
            ])
        );
        for tag in ["info", "known_nodes", "up_nodes", "time"] {
            let req = round_trip(json!([tag, "n#r", "x", 1]));
            assert_eq!(req.tag(), Some(tag));
        }
        assert_eq!(
            round_trip(json!(["info", "n#r"])),
            NodeRequest::Info(ReplyTo {
                port: "n#r".into(),
                msg: vec![]
            })
        );
        assert_eq!(
            round_trip(json!(["eval"])),
            NodeRequest::Eval {
                code: None,
                reply: None
            }
        );
        assert_eq!(
            round_trip(json!(["eval", "1+1"])),
            NodeRequest::Eval {
                code: Some(json!("1+1")),
                reply: None
            }
        );
        assert_eq!(
            round_trip(json!(["eval", "1+1", "n#r", "t"])),
            NodeRequest::Eval {
                code: Some(json!("1+1")),
                reply: Some(ReplyTo {
                    port: "n#r".into(),
                    msg: vec![json!("t")]
                })
            }
        );
        assert_eq!(
            round_trip(json!([SPAWN_FUNCTION, "x.a", "P::init", 1, "two"])),
            NodeRequest::Spawn {
                port: "x.a".into(),
                init: "P::init".into(),
                args: vec![json!(1), json!("two")]
            }
        );
        assert_eq!(
            round_trip(json!([SPAWN_FUNCTION, "x.a", "P::init"])),
            NodeRequest::Spawn {
                port: "x.a".into(),
                init: "P::init".into(),
                args: vec![]
            }
        );
        assert_eq!(
            round_trip(json!(["AnyEvent::MP::DataConn::_expect", 1, {"k": "v"}])),
            NodeRequest::Call {
                name: "AnyEvent::MP::DataConn::_expect".into(),
                args: vec![json!(1), json!({"k": "v"})]
            }
        );
        assert_eq!(
            round_trip(json!(["nosuchtag"])),
            NodeRequest::Call {
                name: "nosuchtag".into(),
                args: vec![]
            }
        );
    }

    #[test]
    fn numbers_are_port_names_and_tags() {
        let req = NodeRequest::parse(vals(json!(["mon1", 5]))).unwrap();
        assert_eq!(req, NodeRequest::Mon1 { port: "5".into() });
        assert_eq!(req.encode(), vals(json!(["mon1", "5"])));
        let req = NodeRequest::parse(vals(json!([7, 1]))).unwrap();
        assert_eq!(
            req,
            NodeRequest::Call {
                name: "7".into(),
                args: vec![json!(1)]
            }
        );
        let req = NodeRequest::parse(vals(json!(["kil", 1.5, "r"]))).unwrap();
        assert_eq!(
            req,
            NodeRequest::Kil {
                port: "1.5".into(),
                reason: vec![json!("r")]
            }
        );
        let req = NodeRequest::parse(vals(json!(["snd_multiple", [7, 1], [null, 1]]))).unwrap();
        assert_eq!(
            req,
            NodeRequest::SndMultiple(vec![
                SndEntry::Relay {
                    port: "7".into(),
                    msg: vec![json!(1)]
                },
                SndEntry::Malformed {
                    entry: json!([null, 1]),
                    why: "port is not a string"
                },
            ])
        );
        assert_eq!(
            req.encode(),
            vals(json!(["snd_multiple", ["7", 1], [null, 1]]))
        );
        let req = NodeRequest::parse(vals(json!(["info", 3, "m"]))).unwrap();
        assert_eq!(
            req,
            NodeRequest::Info(ReplyTo {
                port: "3".into(),
                msg: vec![json!("m")]
            })
        );
    }

    #[test]
    fn extra_arguments_of_mon_are_ignored() {
        let req = NodeRequest::parse(vals(json!(["mon1", "p", "extra"]))).unwrap();
        assert_eq!(req, NodeRequest::Mon1 { port: "p".into() });
        assert_eq!(req.encode(), vals(json!(["mon1", "p"])));
    }

    #[test]
    fn the_kill_of_the_node_port_parses() {
        // refusing it is the kernel's business
        let req = NodeRequest::parse(vals(json!(["kil", ""]))).unwrap();
        assert_eq!(
            req,
            NodeRequest::Kil {
                port: "".into(),
                reason: vec![]
            }
        );
    }

    #[test]
    fn malformed_requests_are_typed_errors() {
        let bad = |v: Value| NodeRequest::parse(vals(v)).unwrap_err();
        let odd = [
            Value::Null,
            json!(true),
            json!([]),
            json!(["p"]),
            json!({}),
            json!({"p": 1}),
        ];
        for tag in &odd {
            assert_eq!(bad(json!([tag, "p"])), NodeRequestError::TagNotAString);
        }
        for tag in ["mon1", "mon0", "kil0", "kil"] {
            let e = bad(json!([tag]));
            assert_eq!(
                e,
                NodeRequestError::Malformed {
                    tag,
                    why: "port name missing"
                }
            );
            assert_eq!((e.tag(), e.why()), (tag, "port name missing"));
            for o in &odd {
                assert_eq!(bad(json!([tag, o, "r"])).why(), "port name missing");
            }
        }
        assert_eq!(bad(json!(["snd"])).why(), "port missing");
        for o in &odd {
            assert_eq!(bad(json!(["snd", o, 1])).why(), "port missing");
        }
        for tag in ["info", "known_nodes", "up_nodes", "time"] {
            assert_eq!(
                bad(json!([tag])),
                NodeRequestError::Malformed {
                    tag,
                    why: "reply port missing"
                }
            );
            for o in &odd {
                assert_eq!(bad(json!([tag, o])).why(), "reply port missing");
            }
        }
        for o in &odd {
            let e = bad(json!(["eval", "code", o, "m"]));
            assert_eq!((e.tag(), e.why()), ("eval", "reply port missing"));
        }
        let spawn_err = NodeRequestError::Malformed {
            tag: SPAWN_FUNCTION,
            why: "port name or init function missing",
        };
        assert_eq!(bad(json!([SPAWN_FUNCTION])), spawn_err);
        assert_eq!(bad(json!([SPAWN_FUNCTION, "x.a"])), spawn_err);
        for o in &odd {
            assert_eq!(bad(json!([SPAWN_FUNCTION, o, "P::f"])), spawn_err);
            assert_eq!(bad(json!([SPAWN_FUNCTION, "x.a", o])), spawn_err);
        }
        assert_eq!(
            NodeRequestError::TagNotAString.to_string(),
            "node-port request tag is not a string"
        );
        assert_eq!(
            bad(json!(["kil"])).to_string(),
            "malformed node-port request kil: port name missing"
        );
    }

    #[test]
    fn reasons() {
        assert_eq!(
            no_such_port("n#p"),
            vals(json!([
                "no_such_port",
                "cannot monitor nonexistent port",
                "n#p"
            ]))
        );
        assert_eq!(
            transport_error("n", "unable to connect"),
            vals(json!(["transport_error", "n", "unable to connect"]))
        );
        assert_eq!(die_reason("boom\n\n"), vals(json!(["die", "boom"])));
    }

    #[test]
    fn replies() {
        let r = ReplyTo {
            port: "n#r".into(),
            msg: vec![json!("t")],
        };
        assert_eq!(
            r.answer([json!("me")]),
            ("n#r".to_owned(), vec![json!("t"), json!("me")])
        );
    }
}

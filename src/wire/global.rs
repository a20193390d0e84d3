//! Typed messages of the Global service (protocol notes, section 4): what
//! nodes send to each other's Global connect port, the port spawned with
//! `AnyEvent::MP::Global::connect(0, <nodeid>)`.
//!
//! [`GlobalMsg::parse`] takes the values of a packet after its
//! destination (`[tag, args…]`), as leniently as the reference reads them:
//! address and port lists skip elements that are not strings, and a
//! `nodes` or `set` argument of the wrong type counts as empty. Only an
//! unknown tag and `reg0`/`reg1`/`find` without their string arguments are
//! a [`GlobalMsgError`].
//!
//! ```
//! use aemp::wire::GlobalMsg;
//! use serde_json::json;
//! let values = vec![json!("nodes"), json!({"perlA": ["127.0.0.1:4101"]})];
//! let msg = GlobalMsg::parse(values.clone()).unwrap();
//! assert_eq!(msg, GlobalMsg::Nodes(vec![("perlA".into(), vec!["127.0.0.1:4101".into()])]));
//! assert_eq!(msg.encode(), values);
//! ```

use serde_json::{Map, Value};
use thiserror::Error;

/// The init function each node spawns on every other node.
pub const CONNECT_FUNCTION: &str = "AnyEvent::MP::Global::connect";

/// `{name: [strings]}`: node ids with their addresses, or groups with
/// their member ports. JSON objects have no duplicate keys; encoded in
/// serde_json's (sorted) key order.
pub type StringLists = Vec<(String, Vec<String>)>;

/// One message to a Global connect port.
#[derive(Debug, Clone, PartialEq)]
pub enum GlobalMsg {
    /// `setup`: the opening messages are all sent.
    Setup,
    /// `addr [host:port…]`: the sender's listen addresses.
    Addr(Vec<String>),
    /// `nodes {nodeid: [addresses]…}`: nodes to connect to.
    Nodes(StringLists),
    /// `set {group: [ports]…}`: group registrations to merge.
    Set(StringLists),
    /// `find nodeid`: answer `nodes` with that node's addresses if known.
    Find(String),
    /// `reg1 group, port`: add a group member.
    Reg1 {
        /// The group.
        group: String,
        /// The member's port id.
        port: String,
    },
    /// `reg0 group, port`: remove a group member.
    Reg0 {
        /// The group.
        group: String,
        /// The member's port id.
        port: String,
    },
    /// `seedme0`: the sender no longer wants network updates.
    Seedme0,
    /// `seedme1`: the sender wants network updates.
    Seedme1,
}

/// Why a Global message could not be parsed; it is logged and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GlobalMsgError {
    /// A tag Global does not know (`""` when it was missing or not a
    /// string).
    #[error("unknown Global request {tag:?}")]
    Unknown {
        /// The tag.
        tag: String,
    },
    /// A known tag without the string arguments it needs.
    #[error("malformed Global request {tag}: {why}")]
    Malformed {
        /// The tag.
        tag: &'static str,
        /// What is missing.
        why: &'static str,
    },
}

/// A list of strings (addresses, ports) from a JSON array; other elements
/// are skipped, anything but an array is empty.
fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `{name: [strings]}` from a JSON object; anything else is empty.
fn string_lists(v: Value) -> StringLists {
    match v {
        Value::Object(m) => m.into_iter().map(|(k, v)| (k, strings(v))).collect(),
        _ => Vec::new(),
    }
}

/// `{name: [strings]}` as JSON.
fn to_object<'a>(items: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in items {
        m.insert(k.clone(), Value::from(v.clone()));
    }
    Value::Object(m)
}

fn string_arg(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Every tag of a message to or from a Global connect port.
pub const GLOBAL_TAGS: &[&str] = &[
    "setup", "addr", "nodes", "set", "find", "reg0", "reg1", "seedme0", "seedme1",
];

impl GlobalMsg {
    /// Parses the values of a packet to a Global connect port after its
    /// destination: `[tag, args…]`. Arguments are moved, not copied.
    pub fn parse(values: Vec<Value>) -> Result<GlobalMsg, GlobalMsgError> {
        let mut args = values.into_iter();
        let tag = match args.next() {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let mut arg = || args.next().unwrap_or(Value::Null);
        Ok(match tag.as_str() {
            "setup" => GlobalMsg::Setup,
            "addr" => GlobalMsg::Addr(strings(arg())),
            "nodes" => GlobalMsg::Nodes(string_lists(arg())),
            "set" => GlobalMsg::Set(string_lists(arg())),
            "find" => match string_arg(arg()) {
                Some(node) => GlobalMsg::Find(node),
                None => {
                    return Err(GlobalMsgError::Malformed {
                        tag: "find",
                        why: "node id is not a string",
                    });
                }
            },
            "reg0" | "reg1" => {
                let reg1 = tag == "reg1";
                match (string_arg(arg()), string_arg(arg())) {
                    (Some(group), Some(port)) if reg1 => GlobalMsg::Reg1 { group, port },
                    (Some(group), Some(port)) => GlobalMsg::Reg0 { group, port },
                    _ => {
                        return Err(GlobalMsgError::Malformed {
                            tag: if reg1 { "reg1" } else { "reg0" },
                            why: "group or port is not a string",
                        });
                    }
                }
            }
            "seedme0" => GlobalMsg::Seedme0,
            "seedme1" => GlobalMsg::Seedme1,
            _ => return Err(GlobalMsgError::Unknown { tag }),
        })
    }

    /// The message's tag.
    pub fn tag(&self) -> &'static str {
        match self {
            GlobalMsg::Setup => "setup",
            GlobalMsg::Addr(_) => "addr",
            GlobalMsg::Nodes(_) => "nodes",
            GlobalMsg::Set(_) => "set",
            GlobalMsg::Find(_) => "find",
            GlobalMsg::Reg1 { .. } => "reg1",
            GlobalMsg::Reg0 { .. } => "reg0",
            GlobalMsg::Seedme0 => "seedme0",
            GlobalMsg::Seedme1 => "seedme1",
        }
    }

    /// The message as the values after the destination, `[tag, args…]`,
    /// in the reference's shapes.
    pub fn encode(&self) -> Vec<Value> {
        let mut out = vec![Value::from(self.tag())];
        match self {
            GlobalMsg::Setup | GlobalMsg::Seedme0 | GlobalMsg::Seedme1 => {}
            GlobalMsg::Addr(a) => out.push(Value::from(a.clone())),
            GlobalMsg::Nodes(l) | GlobalMsg::Set(l) => {
                out.push(to_object(l.iter().map(|(k, v)| (k, v))))
            }
            GlobalMsg::Find(n) => out.push(Value::from(n.as_str())),
            GlobalMsg::Reg1 { group, port } | GlobalMsg::Reg0 { group, port } => {
                out.push(Value::from(group.as_str()));
                out.push(Value::from(port.as_str()));
            }
        }
        out
    }
}

/// The arguments of the spawn of [`CONNECT_FUNCTION`]: `(version,
/// <own nodeid>)`.
pub fn connect_args(version: i64, node: &str) -> Vec<Value> {
    vec![Value::from(version), Value::from(node)]
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

    fn round_trip(v: Value) -> GlobalMsg {
        let values = vals(v);
        let msg = GlobalMsg::parse(values.clone()).unwrap();
        assert_eq!(msg.encode(), values, "{msg:?}");
        msg
    }

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn every_tag_round_trips() {
        assert_eq!(round_trip(json!(["setup"])), GlobalMsg::Setup);
        assert_eq!(round_trip(json!(["seedme0"])), GlobalMsg::Seedme0);
        assert_eq!(round_trip(json!(["seedme1"])), GlobalMsg::Seedme1);
        assert_eq!(
            round_trip(json!(["addr", ["127.0.0.1:1", "h:2"]])),
            GlobalMsg::Addr(vec![s("127.0.0.1:1"), s("h:2")])
        );
        assert_eq!(round_trip(json!(["addr", []])), GlobalMsg::Addr(vec![]));
        assert_eq!(
            round_trip(json!(["nodes", {"a": ["x:1"], "b": []}])),
            GlobalMsg::Nodes(vec![(s("a"), vec![s("x:1")]), (s("b"), vec![])])
        );
        assert_eq!(
            round_trip(json!(["set", {"g": ["n#p", "m#q"]}])),
            GlobalMsg::Set(vec![(s("g"), vec![s("n#p"), s("m#q")])])
        );
        assert_eq!(round_trip(json!(["find", "n"])), GlobalMsg::Find(s("n")));
        assert_eq!(
            round_trip(json!(["reg1", "g", "n#p"])),
            GlobalMsg::Reg1 {
                group: s("g"),
                port: s("n#p")
            }
        );
        assert_eq!(
            round_trip(json!(["reg0", "g", "n#p"])),
            GlobalMsg::Reg0 {
                group: s("g"),
                port: s("n#p")
            }
        );
    }

    #[test]
    fn lenient_like_the_reference() {
        let p = |v: Value| GlobalMsg::parse(vals(v)).unwrap();
        assert_eq!(p(json!(["setup", 1, 2])), GlobalMsg::Setup);
        assert_eq!(p(json!(["addr"])), GlobalMsg::Addr(vec![]));
        assert_eq!(p(json!(["addr", "x:1"])), GlobalMsg::Addr(vec![]));
        assert_eq!(
            p(json!(["addr", ["x:1", 2, null, ["y"], "z:3"]])),
            GlobalMsg::Addr(vec![s("x:1"), s("z:3")])
        );
        assert_eq!(p(json!(["nodes"])), GlobalMsg::Nodes(vec![]));
        assert_eq!(p(json!(["nodes", [1]])), GlobalMsg::Nodes(vec![]));
        assert_eq!(
            p(json!(["nodes", {"a": "x:1", "b": ["y:2", 3]}])),
            GlobalMsg::Nodes(vec![(s("a"), vec![]), (s("b"), vec![s("y:2")])])
        );
        assert_eq!(p(json!(["set", null])), GlobalMsg::Set(vec![]));
        assert_eq!(p(json!(["seedme1", "extra"])), GlobalMsg::Seedme1);
        assert_eq!(
            p(json!(["reg1", "g", "n#p", "extra"])),
            GlobalMsg::Reg1 {
                group: s("g"),
                port: s("n#p")
            }
        );
        // keys come back sorted (serde_json's map order)
        assert_eq!(
            p(json!(["nodes", {"b": [], "a": []}])).encode(),
            vals(json!(["nodes", {"a": [], "b": []}]))
        );
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let bad = |v: Value| GlobalMsg::parse(vals(v)).unwrap_err();
        let unknown = |t: &str| GlobalMsgError::Unknown { tag: s(t) };
        assert_eq!(bad(json!([])), unknown(""));
        assert_eq!(bad(json!([""])), unknown(""));
        for odd in [
            json!(null),
            json!(1),
            json!(true),
            json!(["setup"]),
            json!({"setup": 1}),
        ] {
            assert_eq!(bad(json!([odd, "x"])), unknown(""));
        }
        assert_eq!(bad(json!(["bogus", 1])), unknown("bogus"));
        assert_eq!(bad(json!(["SETUP"])), unknown("SETUP"));
        let nonstrings = [json!(null), json!(1), json!(["g"]), json!({"g": 1})];
        for tag in ["reg0", "reg1"] {
            let want = GlobalMsgError::Malformed {
                tag,
                why: "group or port is not a string",
            };
            assert_eq!(bad(json!([tag])), want);
            assert_eq!(bad(json!([tag, "g"])), want);
            for o in &nonstrings {
                assert_eq!(bad(json!([tag, o, "n#p"])), want);
                assert_eq!(bad(json!([tag, "g", o])), want);
            }
        }
        assert!(matches!(
            bad(json!(["find"])),
            GlobalMsgError::Malformed { tag: "find", .. }
        ));
        for o in &nonstrings {
            assert!(matches!(
                bad(json!(["find", o])),
                GlobalMsgError::Malformed { tag: "find", .. }
            ));
        }
        assert_eq!(
            bad(json!(["bogus"])).to_string(),
            "unknown Global request \"bogus\""
        );
    }

    #[test]
    fn connect_arguments() {
        assert_eq!(connect_args(0, "perlB"), vals(json!([0, "perlB"])));
    }
}

//! The configuration commands: they edit the global section of the file,
//! or the profile selected with `profile NAME`.

use std::collections::VecDeque;

use aemp::config::{ConfigFile, perl_pretty};
use serde_json::{Map, Value};

use crate::args::{next, next_text, perl_text};
use crate::error::{CliError, CliResult};

/// The low-level settings that get `set<key>`/`del<key>` commands.
pub const ATTRS: &[&str] = &[
    "monitor_timeout",
    "connect_interval",
    "framing_format",
    "auth_offer",
    "auth_accept",
    "autocork",
    "nodelay",
];

/// Keys whose `set<key>` stores its argument as it is, with what the
/// argument is (for the "missing" error).
const PLAIN: &[(&str, &str)] = &[
    ("nodeid", "node id"),
    ("secret", "shared secret"),
    ("parent", "profile name"),
];

/// A chain of commands working on one configuration file.
pub struct Session {
    pub file: ConfigFile,
    /// The profile commands apply to; `None` for the global section.
    profile: Option<String>,
    dirty: bool,
}

impl Session {
    pub fn load() -> CliResult<Session> {
        Ok(Session {
            file: ConfigFile::load_default()?,
            profile: None,
            dirty: false,
        })
    }

    /// The section being edited.
    fn target(&mut self) -> &mut Map<String, Value> {
        self.dirty = true;
        match &self.profile {
            Some(p) => self.file.profile_mut(p),
            None => self.file.root_mut(),
        }
    }

    /// Saves the file if a command changed it.
    pub fn save_if_dirty(&self) -> CliResult<()> {
        if self.dirty {
            self.file.save()?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, v: Value) {
        self.target().insert(key.to_owned(), v);
    }

    fn del(&mut self, key: &str) {
        self.target().remove(key);
    }

    /// `setbinds`-style lists: a JSON array as is, else split on `,`.
    fn set_list(&mut self, key: &str, v: Value) {
        let v = match v {
            Value::Array(_) | Value::Object(_) => v,
            other => Value::from(
                perl_text(&other)
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
        };
        self.set(key, v);
    }

    /// Removes every element equal to `item` (as text) from the list `key`,
    /// then appends it if `add`.
    fn edit_list(&mut self, key: &str, item: Value, add: bool) {
        let text = perl_text(&item);
        let target = self.target();
        let mut list = match target.remove(key) {
            Some(Value::Array(a)) => a,
            Some(Value::String(s)) if !s.is_empty() => s.split(',').map(Value::from).collect(),
            _ => Vec::new(),
        };
        list.retain(|v| perl_text(v) != text);
        if add {
            list.push(item);
        }
        target.insert(key.to_owned(), Value::from(list));
    }

    /// Runs configuration command `cmd`; false if it is not one.
    pub fn command(&mut self, cmd: &str, args: &mut VecDeque<Value>) -> CliResult<bool> {
        let arg = next;
        match cmd {
            "gensecret" => self.set("secret", Value::from(aemp::kernel::alnum_random(64))),
            "setcert" => {
                let file = next_text(args, "key+certificate pem filename")?;
                let pem = std::fs::read_to_string(&file).map_err(|source| CliError::Read {
                    path: file.clone(),
                    source,
                })?;
                crate::cert::check_pem(&file, &pem)?;
                self.set("cert", Value::from(pem));
            }
            "gencert" => self.set("cert", Value::from(crate::cert::generate()?)),
            "delcert" => self.del("cert"),
            "setbinds" | "setseeds" | "setservices" => {
                let key = &cmd[3..];
                let v = arg(args, key)?;
                self.set_list(key, v);
            }
            "delbinds" | "delseeds" | "delservices" => self.del(&cmd[3..]),
            "addbind" | "addseed" | "delbind" | "delseed" => {
                let key = format!("{}s", &cmd[3..]);
                let v = arg(args, &format!("{} address", &cmd[3..]))?;
                self.edit_list(&key, v, cmd.starts_with("add"));
            }
            "addservice" => {
                let v = arg(args, "service specification")?;
                let target = self.target();
                match target.get_mut("services") {
                    Some(Value::Array(a)) => a.push(v),
                    _ => {
                        target.insert("services".into(), Value::from(vec![v]));
                    }
                }
            }
            "delservice" => {
                let v = arg(args, "service specification")?;
                let text = perl_text(&v);
                if let Some(Value::Array(a)) = self.target().get_mut("services")
                    && let Some(i) = a.iter().position(|s| *s == v || perl_text(s) == text)
                {
                    a.remove(i);
                }
            }
            "profile" => {
                let name = next_text(args, "profile name")?;
                self.file.profile_mut(&name);
                self.profile = Some(name);
                self.dirty = true;
            }
            "delprofile" => {
                let name = next_text(args, "profile name")?;
                self.file.remove_profile(&name);
                self.dirty = true;
            }
            "showprofile" => {
                let name = next_text(args, "profile name")?;
                let p = self.file.profile(&name).cloned().unwrap_or_default();
                outln!("{}", perl_pretty(&Value::Object(p)));
            }
            "showconfig" => {
                let name = match args.pop_front() {
                    Some(v) => perl_text(&v),
                    None => aemp::config::default_profile(),
                };
                let mut explicit = Map::new();
                while let Some(k) = args.pop_front() {
                    let v = args.pop_front().ok_or(CliError::OddShowconfigArgs)?;
                    explicit.insert(perl_text(&k), v);
                }
                let (mut cfg, _) = self.file.resolve(&name, &explicit)?;
                cfg.remove("profile");
                cfg.remove("parent");
                outln!("{}", perl_pretty(&Value::Object(cfg)));
            }
            "_resolve" => {
                let spec = next_text(args, "bind address")?;
                let addrs = crate::net::runtime(async { Ok(aemp::resolve_binds(&[spec]).await?) })?;
                let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                outln!("{}", addrs.join(","));
            }
            other => {
                // the plain set<key>/del<key> pairs
                let Some(key) = other
                    .strip_prefix("set")
                    .or_else(|| other.strip_prefix("del"))
                    .filter(|k| PLAIN.iter().any(|(p, _)| p == k) || ATTRS.contains(k))
                else {
                    return Ok(false);
                };
                if other.starts_with("set") {
                    let what = PLAIN
                        .iter()
                        .find(|(p, _)| *p == key)
                        .map_or_else(|| format!("{key} value"), |(_, w)| (*w).to_owned());
                    let v = arg(args, &what)?;
                    self.set(key, v);
                } else {
                    self.del(key);
                }
            }
        }
        Ok(true)
    }
}

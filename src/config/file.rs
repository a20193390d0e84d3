//! The configuration file shared with the Perl `aemp` tool
//! (`AnyEvent::MP::Config`).
//!
//! A JSON object, read as JSON::XS's *relaxed* JSON (trailing commas and
//! `#` comments allowed), at `$PERL_ANYEVENT_MP_RC` if that is set (even
//! empty), else `$HOME/.perl-anyevent-mp`. Global keys, and
//! `profile: {name: {…, parent: name}}`. A new file is `{"version":1}`.
//! Saving writes `<file>~new~`, keeps the old file as `<file>~`, and
//! renames — with mode 0600, since the file holds secrets. Unknown keys are
//! kept as they are.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::perl_pretty;
use thiserror::Error;

/// What can go wrong with the configuration file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not (relaxed) JSON.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds JSON, but not an object.
    #[error("{0}: the configuration must be a JSON object")]
    NotAnObject(PathBuf),
    /// The settings together cannot work (see
    /// [`NodeConfig::validate`](super::NodeConfig::validate)).
    #[error("invalid configuration: {0}")]
    Invalid(super::InvalidConfig),
    /// Profiles whose parents lead back to themselves.
    #[error("profile {0:?}: its parent chain is circular")]
    ParentCycle(String),
    /// A setting has a value of the wrong kind.
    #[error("configuration key {key:?}: {message}")]
    Value {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Where the configuration file is: `$PERL_ANYEVENT_MP_RC` if set (even
/// empty), else `$HOME/.perl-anyevent-mp` (else `$APPDATA`, as the
/// reference).
pub fn default_path() -> PathBuf {
    if let Some(rc) = std::env::var_os("PERL_ANYEVENT_MP_RC") {
        return PathBuf::from(rc);
    }
    match (std::env::var_os("HOME"), std::env::var_os("APPDATA")) {
        (Some(home), _) => Path::new(&home).join(".perl-anyevent-mp"),
        (None, Some(appdata)) => Path::new(&appdata).join("perl-anyevent-mp"),
        (None, None) => PathBuf::from(".perl-anyevent-mp"),
    }
}

/// The default profile name: the host name (`uname -n`).
pub fn default_profile() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Turns JSON::XS relaxed JSON into strict JSON: `#` comments become
/// spaces, trailing commas before `]`/`}` become spaces, and literal TABs
/// in strings become `\t`. Line and column numbers stay the same, but for
/// TABs in strings.
pub(crate) fn relaxed_to_strict(text: &str) -> String {
    // pass 1: comments, and TABs in strings
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    let mut strings = StringTracker::default();
    let mut in_comment = false;
    for c in text.chars() {
        if in_comment {
            in_comment = c != '\n';
            out.push(if in_comment { ' ' } else { c });
        } else if strings.step(c) {
            if c == '\t' {
                out.extend(['\\', 't']);
            } else {
                out.push(c);
            }
        } else if c == '#' {
            in_comment = true;
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    // pass 2: trailing commas (outside strings)
    let mut strings = StringTracker::default();
    for i in 0..out.len() {
        if !strings.step(out[i]) && out[i] == ',' {
            let next = out[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some(']') | Some('}')) {
                out[i] = ' ';
            }
        }
    }
    out.into_iter().collect()
}

/// Follows JSON strings through a text, one character at a time.
#[derive(Default)]
struct StringTracker {
    inside: bool,
    escape: bool,
}

impl StringTracker {
    /// Whether `c` (the next character) belongs to a string, its quotes
    /// included.
    fn step(&mut self, c: char) -> bool {
        if !self.inside {
            self.inside = c == '"';
            return self.inside;
        }
        if self.escape {
            self.escape = false;
        } else if c == '\\' {
            self.escape = true;
        } else if c == '"' {
            self.inside = false;
        }
        true
    }
}

/// A configuration file in memory.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    root: Map<String, Value>,
}

impl ConfigFile {
    /// A new, empty configuration (`{"version":1}`) that will be saved at
    /// `path`.
    pub fn new(path: impl Into<PathBuf>) -> ConfigFile {
        let mut root = Map::new();
        root.insert("version".into(), Value::from(1));
        ConfigFile {
            path: path.into(),
            root,
        }
    }

    /// Reads the file at `path`; a file that does not exist gives a new
    /// configuration. A broken file is an error naming it and the position.
    pub fn load(path: impl Into<PathBuf>) -> Result<ConfigFile, ConfigError> {
        let path = path.into();
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::new(path)),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let text = String::from_utf8(text).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            ConfigError::Parse {
                path: path.clone(),
                line: 1 + good.iter().filter(|&&b| b == b'\n').count(),
                column: 1 + good.len() - line_start,
                message: "not UTF-8".into(),
            }
        })?;
        let root = ConfigFile::parse(&text, &path)?;
        Ok(ConfigFile { path, root })
    }

    /// Reads the file at [`default_path`].
    pub fn load_default() -> Result<ConfigFile, ConfigError> {
        ConfigFile::load(default_path())
    }

    /// Parses relaxed JSON text into the top-level object.
    pub fn parse(text: &str, path: &Path) -> Result<Map<String, Value>, ConfigError> {
        if text.trim().is_empty() {
            return Ok(ConfigFile::new(path).root);
        }
        match serde_json::from_str::<Value>(&relaxed_to_strict(text)) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ConfigError::NotAnObject(path.to_owned())),
            Err(e) => Err(ConfigError::Parse {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            }),
        }
    }

    /// The file this configuration is read from and saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole configuration: global keys, `profile`, and whatever else.
    pub fn root(&self) -> &Map<String, Value> {
        &self.root
    }

    /// The whole configuration, for changing it.
    pub fn root_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.root
    }

    /// The profile `name`, as stored (no inherited values).
    pub fn profile(&self, name: &str) -> Option<&Map<String, Value>> {
        self.root.get("profile")?.get(name)?.as_object()
    }

    /// The profile `name` for changing it; created if needed.
    pub fn profile_mut(&mut self, name: &str) -> &mut Map<String, Value> {
        object_at(object_at(&mut self.root, "profile"), name)
    }

    /// Removes the profile `name`.
    pub fn remove_profile(&mut self, name: &str) {
        if let Some(Value::Object(profiles)) = self.root.get_mut("profile") {
            profiles.remove(name);
        }
    }

    /// The effective configuration of profile `name`, as the reference
    /// computes it: defaults < `explicit` < global keys < parent profiles
    /// (outermost first) < the profile. Explicit arguments are the weakest;
    /// each one a file value overrides is reported in the second result.
    pub fn resolve(
        &self,
        name: &str,
        explicit: &Map<String, Value>,
    ) -> Result<(Map<String, Value>, Vec<String>), ConfigError> {
        let mut layers: Vec<&Map<String, Value>> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut current = Some(name);
        while let Some(n) = current {
            if seen.contains(&n) {
                return Err(ConfigError::ParentCycle(name.to_owned()));
            }
            seen.push(n);
            match self.profile(n) {
                Some(p) => {
                    layers.push(p);
                    current = p.get("parent").and_then(Value::as_str);
                }
                None => current = None,
            }
        }
        let mut out = defaults();
        out.extend(explicit.iter().map(|(k, v)| (k.clone(), v.clone())));
        for layer in std::iter::once(&self.root).chain(layers.into_iter().rev()) {
            out.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let overridden = explicit
            .iter()
            .filter(|(k, v)| out.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        Ok((out, overridden))
    }

    /// The settings of profile `name` (see [`ConfigFile::resolve`] and
    /// [`NodeConfig::from_values`](super::NodeConfig::from_values)), and
    /// the `explicit` keys the file overrode.
    pub fn node_config(
        &self,
        name: &str,
        explicit: &Map<String, Value>,
    ) -> Result<(super::NodeConfig, Vec<String>), ConfigError> {
        let (values, overridden) = self.resolve(name, explicit)?;
        let mut config = super::NodeConfig::from_values(name, &values)?;
        config.inherited_services = self.services_inherited(name);
        Ok((config, overridden))
    }

    /// Whether the `services` profile `name` gets come from the global
    /// section or a parent profile (see
    /// [`NodeConfig::inherited_services`](super::NodeConfig::inherited_services)).
    fn services_inherited(&self, name: &str) -> bool {
        let own = self.profile(name);
        if own.is_some_and(|p| p.contains_key("services")) {
            return false;
        }
        let mut seen = vec![name];
        let mut parent = own.and_then(|p| p.get("parent")).and_then(Value::as_str);
        while let Some(n) = parent {
            if seen.contains(&n) {
                break;
            }
            seen.push(n);
            let p = self.profile(n);
            if p.is_some_and(|p| p.contains_key("services")) {
                return true;
            }
            parent = p.and_then(|p| p.get("parent")).and_then(Value::as_str);
        }
        self.root.contains_key("services")
    }

    /// Saves atomically: `<file>~new~`, mode 0600, then the old file is
    /// kept as `<file>~` and the new one renamed into place.
    pub fn save(&self) -> Result<(), ConfigError> {
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Io { path, source }
        };
        let mut text = perl_pretty(&Value::Object(self.root.clone()));
        text.push('\n');
        let tmp = with_suffix(&self.path, "~new~");
        let backup = with_suffix(&self.path, "~");
        {
            // a fresh file, so the mode applies (a leftover temp file may
            // have another one)
            let _ = fs::remove_file(&tmp);
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(err(&tmp))?;
            f.write_all(text.as_bytes()).map_err(err(&tmp))?;
            f.sync_all().map_err(err(&tmp))?;
        }
        let _ = fs::remove_file(&backup);
        if self.path.exists() {
            fs::hard_link(&self.path, &backup)
                .or_else(|_| fs::copy(&self.path, &backup).map(|_| ()))
                .map_err(err(&backup))?;
        }
        fs::rename(&tmp, &self.path).map_err(err(&self.path))
    }
}

/// The object under `key`, made one if it is missing or something else.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        // made an object just above
        _ => unreachable!("object_at: not an object after replacing it"),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The reference's default `framing_format`, which the file's defaults
/// keep as they are (the Perl tool reads the same file), whatever else
/// aemp speaks ([`Framing::ALL`](crate::wire::Framing::ALL)).
const REFERENCE_FRAMINGS: [&str; 2] = ["json", "storable"];

/// The reference's defaults (`find_profile`), from
/// [`NodeConfig::default`](super::NodeConfig::default).
fn defaults() -> Map<String, Value> {
    let node = super::NodeConfig::default();
    let mut m = Map::new();
    m.insert(
        "monitor_timeout".into(),
        seconds_value(node.monitor_timeout),
    );
    m.insert(
        "connect_interval".into(),
        seconds_value(node.connect_interval),
    );
    m.insert(
        "framing_format".into(),
        REFERENCE_FRAMINGS.into_iter().collect(),
    );
    m.insert(
        "auth_offer".into(),
        node.auth_offer.iter().map(|a| a.name()).collect(),
    );
    m.insert(
        "auth_accept".into(),
        node.auth_accept.iter().map(|a| a.name()).collect(),
    );
    m
}

/// A duration as the file writes it: whole seconds as an integer (`30`),
/// others as a fraction (`0.5`).
fn seconds_value(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::from(d.as_secs_f64())
    }
}

/// The relaxed configuration-file parser on arbitrary bytes, for fuzzers
/// and property tests. Properties: no panic; the relaxed-to-strict rewrite keeps
/// the number of lines, and of characters when the text has no TAB; text
/// that is strict JSON parses as it does strictly; and what parses is the
/// object that [`perl_pretty`] writes back (the tool's save) parses to.
pub fn fuzz_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strict = relaxed_to_strict(text);
    assert_eq!(strict.lines().count(), text.lines().count(), "line count");
    if !text.contains('\t') {
        assert_eq!(strict.chars().count(), text.chars().count(), "char count");
    }
    let path = Path::new("fuzz.rc");
    let parsed = ConfigFile::parse(text, path);
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
        assert_eq!(
            parsed.as_ref().ok(),
            Some(&m),
            "strict JSON parses the same"
        );
    }
    if let Ok(m) = parsed {
        let saved = perl_pretty(&Value::Object(m.clone()));
        let again = ConfigFile::parse(&saved, path);
        assert_eq!(again.ok(), Some(m), "save/load round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relaxed_json() {
        let text =
            "{ # comment, with \"quotes\"\n \"a\": [1, 2, ], # more\n \"b\": \"x#y,]\\\"\t\",\n}\n";
        let v: Value = serde_json::from_str(&relaxed_to_strict(text)).unwrap();
        assert_eq!(v, json!({"a": [1, 2], "b": "x#y,]\"\t"}));
    }

    #[test]
    fn positions_survive_relaxing() {
        let err = ConfigFile::parse("{\n  # c\n  \"a\": [1,,2]\n}", Path::new("f")).unwrap_err();
        match err {
            ConfigError::Parse { line, column, .. } => assert_eq!((line, column), (3, 11)),
            other => panic!("{other}"),
        }
        assert!(matches!(
            ConfigFile::parse("[1]", Path::new("f")),
            Err(ConfigError::NotAnObject(_))
        ));
    }

    #[test]
    fn the_reference_defaults() {
        assert_eq!(
            Value::Object(defaults()),
            json!({
                "monitor_timeout": 30,
                "connect_interval": 2,
                "framing_format": ["json", "storable"],
                "auth_offer": ["tls_md6_64_256", "hmac_md6_64_256"],
                "auth_accept": ["tls_md6_64_256", "hmac_md6_64_256", "tls_anon", "cleartext"],
            })
        );
        assert_eq!(seconds_value(Duration::from_millis(500)), json!(0.5));
    }

    #[test]
    fn resolution_order() {
        let mut f = ConfigFile::new("unused");
        f.root_mut().insert("secret".into(), json!("global"));
        f.root_mut().insert("seeds".into(), json!(["g:1"]));
        f.profile_mut("base")
            .insert("seeds".into(), json!(["base:1"]));
        f.profile_mut("base")
            .insert("binds".into(), json!(["base:2"]));
        let node = f.profile_mut("node");
        node.insert("parent".into(), json!("base"));
        node.insert("binds".into(), json!(["node:2"]));
        let mut explicit = Map::new();
        explicit.insert("secret".into(), json!("explicit"));
        explicit.insert("nodeid".into(), json!("fromargs"));
        let (r, overridden) = f.resolve("node", &explicit).unwrap();
        assert_eq!(r["secret"], json!("global")); // explicit loses
        assert_eq!(r["nodeid"], json!("fromargs"));
        assert_eq!(r["seeds"], json!(["base:1"]));
        assert_eq!(r["binds"], json!(["node:2"]));
        assert_eq!(r["monitor_timeout"], json!(30));
        assert_eq!(overridden, vec!["secret".to_string()]);
        // a missing profile: just global and defaults
        let (r, _) = f.resolve("nosuch", &Map::new()).unwrap();
        assert_eq!(r["seeds"], json!(["g:1"]));
        // circular parents are an error, not a hang
        f.profile_mut("base").insert("parent".into(), json!("node"));
        assert!(matches!(
            f.resolve("node", &Map::new()),
            Err(ConfigError::ParentCycle(_))
        ));
    }
}

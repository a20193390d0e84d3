//! The crate's layering, checked from its source text.
//!
//! Every `.rs` file under `src/` belongs to a layer by its path, and a file
//! may reference only its own layer and the layers before it:
//!
//! wire → config → errors → transport → kernel → global → dataconn →
//! logcatcher → builder
//!
//! `src/lib.rs` (which re-exports everything) and `src/bin/**` (which uses
//! the crate as `aemp::…`) are exempt. References are `crate::…` paths
//! (with `use crate::{a, b::c}` groups expanded) and `super::…` paths
//! resolved against the file's module path; comments and string literals
//! are stripped first, so doc links do not count. A `crate::Name` that is a
//! re-export of `src/lib.rs` counts as the module it comes from.
//!
//! Also checked: no import cycle among the files of `src/wire/`, and none
//! between layers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Display;
use std::path::Path;

/// The layers, in their allowed dependency order.
const LAYERS: [&str; 9] = [
    "wire",
    "config",
    "errors",
    "transport",
    "kernel",
    "global",
    "dataconn",
    "logcatcher",
    "builder",
];

/// The layer of a top-level module of the crate.
fn module_layer(name: &str) -> Option<usize> {
    let layer = match name {
        "error" => "errors",
        "builder" => "builder",
        other => other,
    };
    LAYERS.iter().position(|&l| l == layer)
}

// ---------------------------------------------------------------------------
// Stripping comments and literals

/// Appends `c` blanked out: a newline stays (so line numbers do not move),
/// anything else becomes a space.
fn blank(out: &mut String, c: char) {
    out.push(if c == '\n' { '\n' } else { ' ' });
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with every comment (line, doc and nested block comments) and every
/// string, byte string, raw string and char literal blanked out; lines keep
/// their numbers.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < n {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0usize;
            while i < n {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i, &mut out);
        } else if ch == '\'' {
            i = skip_char_or_lifetime(&c, i, &mut out);
        } else if is_ident_start(ch) {
            let mut j = i;
            while j < n && is_ident_char(c[j]) {
                j += 1;
            }
            let word: String = c[i..j].iter().collect();
            let raw_start = matches!(word.as_str(), "r" | "br" | "cr");
            let mut hashes = 0;
            while raw_start && at(j + hashes) == '#' {
                hashes += 1;
            }
            if raw_start && at(j + hashes) == '"' {
                // r"…", r#"…"#: ends at a quote followed by as many hashes
                let mut k = j + hashes + 1;
                while k < n && !(c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#')) {
                    k += 1;
                }
                let end = (k + 1 + hashes).min(n);
                for &x in &c[i..end] {
                    blank(&mut out, x);
                }
                i = end;
            } else if matches!(word.as_str(), "b" | "c") && at(j) == '"' {
                for _ in i..j {
                    out.push(' ');
                }
                i = skip_string(&c, j, &mut out);
            } else if word == "b" && at(j) == '\'' {
                out.push(' ');
                i = skip_char_or_lifetime(&c, j, &mut out);
            } else {
                out.push_str(&word);
                i = j;
            }
        } else if ch.is_ascii_digit() {
            // a number with its suffix (`1u8`, `0x1f`), so the suffix is no ident
            while i < n && is_ident_char(c[i]) {
                out.push(c[i]);
                i += 1;
            }
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out
}

/// Blanks the string literal whose opening quote is at `i`; returns the
/// index after its closing quote.
fn skip_string(c: &[char], mut i: usize, out: &mut String) -> usize {
    blank(out, c[i]);
    i += 1;
    while i < c.len() {
        let x = c[i];
        blank(out, x);
        i += 1;
        if x == '\\' {
            if let Some(&escaped) = c.get(i) {
                blank(out, escaped);
                i += 1;
            }
        } else if x == '"' {
            break;
        }
    }
    i
}

/// At a `'`: blanks a char literal (`'a'`, `'\''`, `'\u{1F600}'`), or keeps
/// a lifetime or label (`'a`) as it is; returns the index after it.
fn skip_char_or_lifetime(c: &[char], i: usize, out: &mut String) -> usize {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let end = if at(i + 1) == '\\' {
        let mut k = i + 3;
        while k < c.len() && c[k] != '\'' && c[k] != '\n' {
            k += 1;
        }
        k + 1
    } else if at(i + 2) == '\'' && at(i + 1) != '\'' {
        i + 3
    } else {
        out.push('\'');
        return i + 1;
    };
    let end = end.min(c.len());
    for &x in &c[i..end] {
        blank(out, x);
    }
    end
}

// ---------------------------------------------------------------------------
// Tokens and paths

#[derive(Debug, Clone)]
struct Tok {
    text: String,
    line: usize,
}

/// Identifiers, `::`, and single punctuation characters of stripped source
/// (numbers are dropped).
fn tokenize(stripped: &str) -> Vec<Tok> {
    let c: Vec<char> = stripped.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if is_ident_start(ch) || ch.is_ascii_digit() {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            if is_ident_start(ch) {
                let text = c[start..i].iter().collect();
                toks.push(Tok { text, line });
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            toks.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            toks.push(Tok {
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    toks
}

fn is_ident(t: &Tok) -> bool {
    t.text.starts_with(is_ident_start)
}

/// One path of a (possibly grouped) path tree, as written.
#[derive(Debug, Clone)]
struct Leaf {
    segs: Vec<String>,
    glob: bool,
    alias: Option<String>,
    line: usize,
}

impl Leaf {
    fn text(&self) -> String {
        let mut t = self.segs.join("::");
        if self.glob {
            t.push_str("::*");
        }
        t
    }
}

/// Parses the path tree starting at `toks[i]` (`a::b`, `a::{b, c::d}`,
/// `a::*`, `a as b`) under `prefix`, pushing each expanded path to `out`;
/// returns the index after it.
fn parse_tree(toks: &[Tok], mut i: usize, prefix: &[String], out: &mut Vec<Leaf>) -> usize {
    let mut segs = prefix.to_vec();
    let mut line = toks.get(i).map_or(0, |t| t.line);
    while let Some(t) = toks.get(i) {
        if t.text == "{" {
            i += 1;
            while let Some(t) = toks.get(i) {
                match t.text.as_str() {
                    "}" => return i + 1,
                    "," => i += 1,
                    _ => {
                        let j = parse_tree(toks, i, &segs, out);
                        i = if j == i { i + 1 } else { j };
                    }
                }
            }
            return i;
        }
        if t.text == "*" {
            out.push(Leaf {
                segs,
                glob: true,
                alias: None,
                line: t.line,
            });
            return i + 1;
        }
        if !is_ident(t) {
            break;
        }
        segs.push(t.text.clone());
        line = t.line;
        i += 1;
        if toks.get(i).is_some_and(|t| t.text == "::") {
            i += 1;
            continue;
        }
        let mut alias = None;
        if toks.get(i).is_some_and(|t| t.text == "as") {
            alias = toks
                .get(i + 1)
                .filter(|t| is_ident(t))
                .map(|t| t.text.clone());
            i += 2;
        }
        out.push(Leaf {
            segs,
            glob: false,
            alias,
            line,
        });
        return i;
    }
    if segs.len() > prefix.len() {
        out.push(Leaf {
            segs,
            glob: false,
            alias: None,
            line,
        });
    }
    i
}

/// `segs` (led by `crate`, `super` or `self`) as a path from the crate
/// root, seen from module `module`; `None` if it climbs above the root.
fn absolutize(segs: &[String], module: &[String]) -> Option<Vec<String>> {
    let mut abs = module.to_vec();
    for (k, s) in segs.iter().enumerate() {
        match s.as_str() {
            "crate" if k == 0 => abs.clear(),
            "super" => {
                abs.pop()?;
            }
            "self" => {}
            _ => abs.push(s.clone()),
        }
    }
    Some(abs)
}

/// A reference from a file to a crate path.
#[derive(Debug, Clone)]
struct Ref {
    line: usize,
    /// From the crate root, without `crate`.
    target: Option<Vec<String>>,
    text: String,
}

/// What one file says: its `crate::`/`super::` references, and the names
/// its top-level `use` items bring in (`name` → path as written, with the
/// module it is relative to).
#[derive(Debug, Default)]
struct Extracted {
    refs: Vec<Ref>,
    uses: Vec<(String, Vec<String>)>,
}

/// Extracts the references of a file of module `module` from its stripped
/// source; `super::` resolves against the module, including inline `mod x {}`
/// blocks around it.
fn extract(stripped: &str, module: &[String]) -> Extracted {
    let toks = tokenize(stripped);
    let mut ex = Extracted::default();
    let mut depth = 0usize;
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let next = |k: usize| toks.get(i + k).map_or("", |t| t.text.as_str());
        match t.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|&(_, d)| d > depth) {
                    inline.pop();
                }
            }
            "mod" if toks.get(i + 1).is_some_and(is_ident) && next(2) == "{" => {
                inline.push((next(1).to_owned(), depth + 1));
            }
            "use" if depth == 0 => {
                let mut leaves = Vec::new();
                parse_tree(&toks, i + 1, &[], &mut leaves);
                for leaf in leaves.into_iter().filter(|l| !l.glob) {
                    let name = leaf.alias.clone().or_else(|| {
                        let last = leaf.segs.iter().rev().find(|s| *s != "self")?;
                        Some(last.clone())
                    });
                    if let Some(name) = name {
                        ex.uses.push((name, leaf.segs));
                    }
                }
            }
            "crate" | "super" if next(1) == "::" && (i == 0 || toks[i - 1].text != "::") => {
                let mut here = module.to_vec();
                here.extend(inline.iter().map(|(m, _)| m.clone()));
                let mut leaves = Vec::new();
                let j = parse_tree(&toks, i, &[], &mut leaves);
                for leaf in leaves {
                    ex.refs.push(Ref {
                        line: leaf.line,
                        target: absolutize(&leaf.segs, &here),
                        text: leaf.text(),
                    });
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    ex
}

// ---------------------------------------------------------------------------
// The crate

/// The module path of a file under `src/`; `None` for the binaries
/// (`src/bin/**`, `src/main.rs`), which are another crate.
fn file_module(rel: &str) -> Option<Vec<String>> {
    let inner = rel.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut module: Vec<String> = inner.split('/').map(str::to_owned).collect();
    if module[0] == "bin" || inner == "main" {
        return None;
    }
    if inner == "lib" {
        return Some(Vec::new());
    }
    if module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    Some(module)
}

struct File {
    rel: String,
    ex: Extracted,
}

struct Crate {
    /// By module path (`[]` is `src/lib.rs`).
    files: BTreeMap<Vec<String>, File>,
    /// Per module: the names its top-level `use` items bring in → the path
    /// from the crate root they name (external crates left out).
    names: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
}

impl Crate {
    /// From `(path relative to the crate root, source)` pairs.
    fn from_sources<S: AsRef<str>>(sources: &[(S, S)]) -> Crate {
        let mut files = BTreeMap::new();
        for (rel, src) in sources {
            let rel = rel.as_ref();
            if let Some(module) = file_module(rel) {
                let ex = extract(&strip(src.as_ref()), &module);
                files.insert(
                    module,
                    File {
                        rel: rel.to_owned(),
                        ex,
                    },
                );
            }
        }
        let mut names = BTreeMap::new();
        for (module, file) in &files {
            let mut map = BTreeMap::new();
            for (name, segs) in &file.ex.uses {
                let led = matches!(segs[0].as_str(), "crate" | "super" | "self");
                let mut child = module.clone();
                child.push(segs[0].clone());
                // a relative `use x::…` names a child module, or an external crate
                if !led && !files.contains_key(&child) {
                    continue;
                }
                if let Some(abs) = absolutize(segs, module) {
                    map.insert(name.clone(), abs);
                }
            }
            names.insert(module.clone(), map);
        }
        Crate { files, names }
    }

    /// Reads every `.rs` file under `root/src`.
    fn read(root: &Path) -> Crate {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    walk(root, &path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(root).unwrap();
                    let rel = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    let src = std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    out.push((rel, src));
                }
            }
        }
        let mut sources = Vec::new();
        walk(root, &root.join("src"), &mut sources);
        assert!(!sources.is_empty(), "no sources under {}", root.display());
        Crate::from_sources(&sources)
    }

    /// The layer a path from the crate root lands in, following the crate
    /// root's re-exports (`crate::Node` → `kernel::Node`).
    fn target_layer(&self, abs: &[String]) -> Option<usize> {
        let mut path = abs.to_vec();
        for _ in 0..8 {
            let first = path.first()?;
            if let Some(layer) = module_layer(first) {
                return Some(layer);
            }
            let mut via = self.names.get(&Vec::new())?.get(first)?.clone();
            via.extend_from_slice(&path[1..]);
            path = via;
        }
        None
    }

    /// The module of the file a path from the crate root lands in, following
    /// re-exports (`crate::wire::Packet` → `wire::packet`).
    fn target_file(&self, abs: &[String]) -> Vec<String> {
        let mut path = abs.to_vec();
        'hop: for _ in 0..8 {
            let mut cur: Vec<String> = Vec::new();
            for (k, seg) in path.iter().enumerate() {
                let mut child = cur.clone();
                child.push(seg.clone());
                if self.files.contains_key(&child) {
                    cur = child;
                    continue;
                }
                if let Some(via) = self.names.get(&cur).and_then(|m| m.get(seg)) {
                    let mut via = via.clone();
                    via.extend_from_slice(&path[k + 1..]);
                    if via != path {
                        path = via;
                        continue 'hop;
                    }
                }
                return cur;
            }
            return cur;
        }
        path
    }

    /// Every violation, as `file:line: …` lines (empty when all is well).
    fn check(&self) -> Vec<String> {
        let mut violations = Vec::new();
        let mut layer_edges: BTreeMap<usize, BTreeMap<usize, String>> = BTreeMap::new();
        let mut wire_edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (module, file) in &self.files {
            if module.is_empty() {
                continue; // src/lib.rs re-exports everything
            }
            let Some(from) = module_layer(&module[0]) else {
                violations.push(format!("{}: file is in no layer", file.rel));
                continue;
            };
            for r in &file.ex.refs {
                let at = format!("{}:{}", file.rel, r.line);
                let Some(to) = r.target.as_deref().and_then(|t| self.target_layer(t)) else {
                    violations.push(format!(
                        "{at}: layer {} references an unknown module ({})",
                        LAYERS[from], r.text
                    ));
                    continue;
                };
                if to > from {
                    violations.push(format!(
                        "{at}: layer {} references layer {} ({})",
                        LAYERS[from], LAYERS[to], r.text
                    ));
                }
                if to != from {
                    let edge = layer_edges.entry(from).or_default();
                    edge.entry(to).or_insert_with(|| format!("{at} {}", r.text));
                }
                if from == 0 && to == 0 {
                    let target = self.target_file(r.target.as_deref().unwrap_or_default());
                    if let Some(dest) = self.files.get(&target)
                        && dest.rel != file.rel
                    {
                        let edge = wire_edges.entry(file.rel.clone()).or_default();
                        edge.entry(dest.rel.clone())
                            .or_insert_with(|| format!("{at} {}", r.text));
                    }
                }
            }
        }
        for (cycle, scc) in cycles(&layer_edges) {
            violations.push(describe_cycle(
                "layer import cycle",
                &cycle,
                &scc,
                &layer_edges,
                |l| LAYERS[*l],
            ));
        }
        for (cycle, scc) in cycles(&wire_edges) {
            violations.push(describe_cycle(
                "wire import cycle",
                &cycle,
                &scc,
                &wire_edges,
                |f| f.as_str(),
            ));
        }
        violations
    }
}

/// Per strongly connected component of more than one node: one shortest
/// cycle through its first node (closed: that node repeated last), and
/// the component.
fn cycles<N: Ord + Clone, E>(edges: &BTreeMap<N, BTreeMap<N, E>>) -> Vec<(Vec<N>, BTreeSet<N>)> {
    let mut nodes: BTreeSet<N> = edges.keys().cloned().collect();
    nodes.extend(edges.values().flat_map(|m| m.keys().cloned()));
    let reach = |start: &N| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(n) = todo.pop() {
            for m in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<N, BTreeSet<N>> = nodes.iter().map(|n| (n.clone(), reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for start in &nodes {
        if done.contains(start) || !reaches[start].contains(start) {
            continue;
        }
        let scc: BTreeSet<N> = nodes
            .iter()
            .filter(|m| reaches[start].contains(*m) && reaches[*m].contains(start))
            .cloned()
            .collect();
        done.extend(scc.iter().cloned());
        if scc.len() < 2 {
            continue;
        }
        // the shortest way back to `start`, inside the component
        let mut prev: BTreeMap<N, N> = BTreeMap::new();
        let mut queue = VecDeque::from([start.clone()]);
        'bfs: while let Some(n) = queue.pop_front() {
            for m in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
                if !scc.contains(m) {
                    continue;
                }
                if m == start {
                    prev.insert(start.clone(), n.clone());
                    break 'bfs;
                }
                if !prev.contains_key(m) {
                    prev.insert(m.clone(), n.clone());
                    queue.push_back(m.clone());
                }
            }
        }
        let mut cycle = vec![start.clone()];
        let mut n = prev[start].clone();
        while n != *start {
            cycle.push(n.clone());
            n = prev[&n].clone();
        }
        cycle.push(start.clone());
        cycle.reverse();
        out.push((cycle, scc));
    }
    out
}

fn describe_cycle<N: Ord, D: Display + ?Sized>(
    what: &str,
    cycle: &[N],
    scc: &BTreeSet<N>,
    edges: &BTreeMap<N, BTreeMap<N, String>>,
    name: impl Fn(&N) -> &D,
) -> String {
    let path: Vec<String> = cycle.iter().map(|n| name(n).to_string()).collect();
    let evidence: Vec<&str> = cycle
        .windows(2)
        .map(|w| edges[&w[0]][&w[1]].as_str())
        .collect();
    let mut text = format!("{what}: {} [{}]", path.join(" -> "), evidence.join("; "));
    if scc.len() + 1 > cycle.len() {
        let all: Vec<String> = scc.iter().map(|n| name(n).to_string()).collect();
        text.push_str(&format!(" (one cycle among {})", all.join(", ")));
    }
    text
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn layering() {
    let krate = Crate::read(Path::new(env!("CARGO_MANIFEST_DIR")));
    let violations = krate.check();
    for v in &violations {
        println!("{v}");
    }
    assert!(
        violations.is_empty(),
        "{} layering violation(s), listed above",
        violations.len()
    );
}

/// A small crate: `src/lib.rs` re-exporting, plus the given files.
fn synthetic(files: &[(&str, &str)]) -> Vec<String> {
    let lib = "pub mod config;\npub mod error;\npub mod kernel;\nmod transport;\npub mod wire;\n\
               pub use kernel::{Node, PortId as Id};\npub use error::SendError;\n";
    let mut sources = vec![("src/lib.rs", lib)];
    sources.extend_from_slice(files);
    Crate::from_sources(&sources).check()
}

const KERNEL: &str = "mod node;\npub use node::Node;\npub fn check_node_id() {}\n";

#[test]
fn synthetic_violations_are_found() {
    let transport = "\
use std::sync::Arc;
use crate::wire::Packet; // fine
use crate::{error::SendError, kernel::{check_node_id, Node}};

fn f() -> crate::Id {
    let _ = crate::Node::new();
}
";
    let found = synthetic(&[
        ("src/kernel/mod.rs", KERNEL),
        (
            "src/kernel/node.rs",
            "use crate::config::Cfg;\npub struct Node;",
        ),
        ("src/wire/mod.rs", "pub struct Packet;"),
        ("src/error.rs", "pub struct SendError;"),
        ("src/transport/mod.rs", transport),
        (
            "src/config/mod.rs",
            "mod file;\npub fn f() { crate::kernel::check_node_id() }",
        ),
        ("src/config/file.rs", "use super::super::kernel::Node;"),
    ]);
    let expected = [
        "src/config/file.rs:1: layer config references layer kernel (super::super::kernel::Node)",
        "src/config/mod.rs:2: layer config references layer kernel (crate::kernel::check_node_id)",
        "src/transport/mod.rs:3: layer transport references layer kernel (crate::kernel::check_node_id)",
        "src/transport/mod.rs:3: layer transport references layer kernel (crate::kernel::Node)",
        "src/transport/mod.rs:5: layer transport references layer kernel (crate::Id)",
        "src/transport/mod.rs:6: layer transport references layer kernel (crate::Node::new)",
    ];
    for e in expected {
        assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
    }
    assert!(
        found.iter().any(|f| f.starts_with("layer import cycle: ")),
        "{found:#?}"
    );
    assert_eq!(found.len(), expected.len() + 1, "{found:#?}");
}

#[test]
fn synthetic_clean_source_passes() {
    let transport = r####"
//! Talks to the [`crate::kernel::Node`] through a trait.
use crate::wire::{self, Packet};
use crate::error::SendError;
use super::wire::Packet as P;

/// See [`Node`](crate::Node) and [`crate::global`].
fn f<'a>(x: &'a str) -> &'a str {
    /* crate::kernel::Node /* nested crate::global */ crate::kernel */
    let _ = "crate::kernel::Node \" crate::kernel";
    let _ = r##"crate::kernel::x "# crate::kernel"##;
    let _ = b"crate::kernel";
    let _ = ('"', b'"', '\'', '\u{22}');
    let _ = crate::error::SendError;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
}
"####;
    let found = synthetic(&[
        ("src/kernel/mod.rs", KERNEL),
        ("src/wire/mod.rs", "pub struct Packet;"),
        (
            "src/error.rs",
            "pub struct SendError;\nfn f() { crate::wire::x(); }",
        ),
        ("src/transport/mod.rs", transport),
        (
            "src/kernel/node.rs",
            "use crate::transport::Link;\nuse crate::{Id, SendError};",
        ),
        ("src/bin/aemp/main.rs", "use crate::global::Anything;"),
    ]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn synthetic_wire_cycle_is_found() {
    let found = synthetic(&[
        ("src/wire/mod.rs", "mod a;\nmod b;\nmod c;\npub use a::A;\n"),
        ("src/wire/a.rs", "use super::b::B;\npub struct A;"),
        (
            "src/wire/b.rs",
            "pub struct B;\nfn f() { crate::wire::c::g() }",
        ),
        ("src/wire/c.rs", "pub fn g() { let _ = crate::wire::A; }"),
    ]);
    assert_eq!(
        found,
        [
            "wire import cycle: src/wire/a.rs -> src/wire/b.rs -> src/wire/c.rs -> src/wire/a.rs \
          [src/wire/a.rs:1 super::b::B; src/wire/b.rs:2 crate::wire::c::g; \
          src/wire/c.rs:1 crate::wire::A]"
        ]
    );
    // without the re-export `crate::wire::A` is wire/mod.rs: no cycle
    let found = synthetic(&[
        ("src/wire/mod.rs", "mod a;\nmod b;\nmod c;\n"),
        ("src/wire/a.rs", "use super::b::B;\npub struct A;"),
        (
            "src/wire/b.rs",
            "pub struct B;\nfn f() { crate::wire::c::g() }",
        ),
        ("src/wire/c.rs", "pub fn g() { let _ = crate::wire::A; }"),
    ]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn strip_keeps_lines_and_drops_comments_and_literals() {
    let src = "a // crate::x\n/* b\n /* c */ d */ e \"f\\\"\ng\" 'h' '\\n' 'i r#\"j\"# k";
    let stripped = strip(src);
    assert_eq!(stripped.lines().count(), src.lines().count());
    let words: Vec<&str> = stripped.split_whitespace().collect();
    assert_eq!(words, ["a", "e", "'i", "k"]);
}

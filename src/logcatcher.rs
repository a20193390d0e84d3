//! The log catcher (`AnyEvent::MP::LogCatcher`): one node collects the log
//! messages of every node it is connected to.
//!
//! Two halves, as in LogCatcher.pm:
//!
//! * **answering** — every node built by [`NodeBuilder`](crate::NodeBuilder)
//!   answers the node-port function [`CONNECT_FUNCTION`]
//!   (`["", "AnyEvent::MP::LogCatcher::connect", 0, $port, $level]`,
//!   LogCatcher.pm 43–57): from then on each log event of this node whose
//!   level is at most `$level` is sent to `$port` as `[$level, $text]`,
//!   until `$port` dies (it is monitored). Log events reach the catchers
//!   through the [`tracing`] layer of [`layer()`], which the program adds
//!   to its subscriber (the `aemp` binary does). The layer has its own
//!   per-layer filter, so catchers get their level whatever the stderr
//!   filter of the program is (Kernel.pm 72–75: `@WARN` callbacks run
//!   before `$WARNLEVEL` is looked at) — provided that stderr filter is a
//!   per-layer filter too, not a global one (see [`layer()`]).
//! * **catching** — [`catch`] (and the service [`CATCH_FUNCTION`], for
//!   `services` in the configuration) sends `connect` to every node up
//!   now and to every node that comes up later, each with its own local
//!   port, which prints what it receives on stderr as
//!   `YYYY-mm-dd HH:MM:SS [node] <level> text` (LogCatcher.pm 59–80).
//!
//! # Levels
//!
//! Perl's levels (Kernel.pm 55–58): 0 always, 1 errors, 2 warnings, 7
//! node connectivity and services, 8 debugging, 9 tracing. [`perl_level`]
//! maps `tracing` levels onto them: `ERROR` → 1, `WARN` → 2, `INFO` → 7,
//! `DEBUG` → 8, `TRACE` → 9. aemp produces no level 0 or 3–6 messages;
//! a Perl node may, and the catching side prints whatever level it gets.
//!
//! # Which events a node forwards
//!
//! A `tracing` subscriber sees the events of every node whose code runs
//! on its threads, while a catcher connects to one node. Each [`layer()`]
//! keeps its own table of catchers: `connect` registers the catcher with
//! the layer of the subscriber that is current where the node runs it
//! (the node's thread). An event the layer sees is forwarded to catchers
//! of that table only:
//!
//! * an event with a `node` field only to the catchers that connected to
//!   that node;
//! * an event without one (the application's own logs, other crates') to
//!   every catcher of the table. A process running one node is Perl's
//!   case, where every log line of the process goes to its catchers
//!   (`@WARN` is process-wide). Nodes that share a process *and* a
//!   subscriber cannot tell whose such an event is, so each of their
//!   catchers gets it, under its own node's name; give the event a
//!   `node` field, or give the nodes separate subscribers (a thread-local
//!   default on each node's thread, as each integration test does): the
//!   layer of one subscriber never forwards what another one sees. The
//!   `node` field of an enclosing span is not looked at.
//!
//! With one global subscriber, as the `aemp` binary has, the table is the
//! whole process's. [`catchers_of`], [`catchers`] and [`wait_catchers`]
//! look at the table of the subscriber current on the calling thread. A
//! node whose subscriber has no [`layer()`] refuses `connect` with an
//! error (it would forward nothing).
//!
//! The text is the event's message followed by its other fields as
//! ` name=value` (the `node` field is left out: the catcher prints the
//! node), at most [`MAX_TEXT`] bytes.
//!
//! # No feedback, bounded
//!
//! The layer never sends: it queues each message for its catcher (at most
//! [`QUEUE`] waiting per catcher, more are dropped and counted in
//! [`dropped`]), and a task on the node's arbiter sends them. Events that
//! sending produces (an encoding error, a full queue, a malformed request
//! to our own node port) are not forwarded: the sending runs with a
//! thread-local flag set that the layer honours. A catcher whose node is
//! unreachable is dropped when its port's monitor fires (`transport_error`
//! after `monitor_timeout`); one node keeps at most
//! [`MAX_CATCHERS_PER_NODE`] catchers.
//!
//! Where aemp differs: Perl's `catch` adds another `mon_nodes` callback
//! each time it is called, and `catch(undef)` leaves them running (a node
//! that comes up later is still asked, with an undefined level); aemp keeps
//! one callback per node and `catch(None)` removes it. A catcher forgets a
//! node that went down (its port is killed by `mon $node, $lport`, as in
//! Perl), so its table does not grow with every `anon/` node.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let subscriber = tracing_subscriber::registry().with(aemp::logcatcher::layer());
//! let _default = tracing::subscriber::set_default(subscriber);
//! actix_rt::System::new().block_on(async {
//!     let a = aemp::Node::builder().node_id("a").secret("s").bind("127.0.0.1:0").start().await.unwrap();
//!     let b = aemp::Node::builder().node_id("b").secret("s").start().await.unwrap();
//!     b.connect(a.listen_addrs()[0].to_string()).await.unwrap();
//!
//!     // b catches a's warnings and errors (into a channel instead of stderr)
//!     let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//!     aemp::logcatcher::catch_with(&b, Some(2), move |c| {
//!         let _ = tx.send(c.clone());
//!     });
//!     // wait until a has the catcher, then log on a
//!     let wait = std::time::Duration::from_secs(10);
//!     aemp::logcatcher::wait_catchers("a", wait, |ports| ports.len() == 1).await.unwrap();
//!     tracing::warn!(node = "a", disk = "full", "trouble");
//!     let caught = rx.recv().await.unwrap();
//!     assert_eq!((caught.node.as_str(), caught.level), ("a", 2));
//!     assert_eq!(caught.text, "trouble disk=full");
//!     a.shutdown();
//!     b.shutdown();
//! });
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::error::Elapsed;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::kernel::{HandlerError, MonNodesGuard, Node, NodeChange, PortId, WeakNode};

/// The node-port function a catcher calls on every node
/// (LogCatcher.pm 43): arguments `0, $port, $level`.
pub const CONNECT_FUNCTION: &str = "AnyEvent::MP::LogCatcher::connect";

/// The service that starts catching (LogCatcher.pm 95): argument
/// `$level`; none (or `null`) stops catching.
pub const CATCH_FUNCTION: &str = "AnyEvent::MP::LogCatcher::catch";

/// Messages that may wait per catcher before more are dropped.
pub const QUEUE: usize = 1024;

/// The most catchers one node keeps; more `connect`s are refused.
pub const MAX_CATCHERS_PER_NODE: usize = 64;

/// The longest text forwarded, in bytes (longer ones are cut at a
/// character boundary and end in `…`).
pub const MAX_TEXT: usize = 8192;

/// The Perl level (Kernel.pm 55–58) of a `tracing` level: `ERROR` → 1,
/// `WARN` → 2, `INFO` → 7, `DEBUG` → 8, `TRACE` → 9.
///
/// ```
/// use tracing::Level;
/// assert_eq!(aemp::logcatcher::perl_level(&Level::WARN), 2);
/// assert_eq!(aemp::logcatcher::perl_level(&Level::INFO), 7);
/// ```
pub fn perl_level(level: &Level) -> i64 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 7,
        Level::DEBUG => 8,
        Level::TRACE => 9,
    }
}

/// The most verbose `tracing` level a catcher of Perl level `level` wants.
fn level_filter(level: i64) -> LevelFilter {
    match level {
        i64::MIN..=0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2..=6 => LevelFilter::WARN,
        7 => LevelFilter::INFO,
        8 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// A number as Perl sees one ([`crate::wire::perl_numify`]; a missing
/// one is `undef`, 0).
fn perl_number(v: Option<&Value>) -> f64 {
    v.map_or(0.0, crate::wire::perl_numify)
}

/// A level argument as an integer (Perl compares numerically; levels are
/// integers in practice).
fn level_arg(v: Option<&Value>) -> i64 {
    let n = perl_number(v).floor();
    if n.is_nan() {
        0
    } else {
        // saturating: `as` clamps floats to the integer range
        n as i64
    }
}

// ---------------------------------------------------------------------------
// The answering side: catchers and the layer

thread_local! {
    /// Set while the forwarder sends (and while a catcher table is
    /// locked): events then are not forwarded.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with forwarding off on this thread.
fn quiet<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _restore = Restore(QUIET.with(|q| q.replace(true)));
    f()
}

fn is_quiet() -> bool {
    QUIET.with(Cell::get)
}

/// A catcher connected to one of our nodes.
struct Catcher {
    id: u64,
    /// The node it connected to.
    node: Arc<str>,
    /// The port it forwards to.
    rport: String,
    /// The most verbose Perl level it wants.
    level: i64,
    /// To the task that sends to its port.
    tx: mpsc::Sender<(i64, String)>,
}

/// The catchers of one [`layer()`]: those whose `connect` ran while the
/// layer's subscriber was the current one.
struct Table {
    catchers: RwLock<Vec<Arc<Catcher>>>,
    /// The most verbose level any catcher wants (-1: no catcher).
    max_level: AtomicI64,
    /// Bumped at each change of `catchers`, for [`wait_catchers`].
    changes: watch::Sender<u64>,
}

impl Table {
    fn new() -> Table {
        Table {
            catchers: RwLock::new(Vec::new()),
            max_level: AtomicI64::new(-1),
            changes: watch::Sender::new(0),
        }
    }

    /// The ports node `node` forwards to, in connection order.
    fn ports_of(&self, node: &str) -> Vec<String> {
        quiet(|| {
            self.catchers
                .read()
                .iter()
                .filter(|c| &*c.node == node)
                .map(|c| c.rport.clone())
                .collect()
        })
    }

    /// Adds `catcher` unless its node has [`MAX_CATCHERS_PER_NODE`].
    fn add(&self, catcher: Arc<Catcher>) -> bool {
        let added = quiet(|| {
            let mut list = self.catchers.write();
            if list.iter().filter(|c| c.node == catcher.node).count() >= MAX_CATCHERS_PER_NODE {
                return false;
            }
            list.push(catcher);
            true
        });
        if added {
            self.changed();
        }
        added
    }

    fn remove(&self, id: u64) {
        let removed = quiet(|| {
            let mut list = self.catchers.write();
            let before = list.len();
            list.retain(|c| c.id != id);
            before != list.len()
        });
        if removed {
            self.changed();
        }
    }

    /// Recomputes `max_level` after a change, has `tracing` ask the
    /// layer's filter again, and wakes [`wait_catchers`].
    fn changed(&self) {
        let max = quiet(|| self.catchers.read().iter().map(|c| c.level).max());
        let max = max.unwrap_or(-1);
        if self.max_level.swap(max, Ordering::Relaxed) != max {
            tracing::callsite::rebuild_interest_cache();
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The catcher table of the [`layer()`] in the subscriber current on this
/// thread, if it has one.
fn current_table() -> Option<Arc<Table>> {
    tracing::dispatcher::get_default(|d| d.downcast_ref::<Forwarder>().map(|f| f.table.clone()))
}

/// Log messages dropped so far in this process because a catcher's queue
/// was full or sending to it failed.
///
/// ```
/// let before = aemp::logcatcher::dropped();
/// assert!(aemp::logcatcher::dropped() >= before);
/// ```
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// How many catchers node `node` forwards to, in the [`layer()`] of the
/// subscriber current on this thread (0 without one).
///
/// ```
/// assert_eq!(aemp::logcatcher::catchers_of("no-such-node"), 0);
/// ```
pub fn catchers_of(node: &str) -> usize {
    catchers(node).len()
}

/// The ports node `node` forwards its log messages to, in the order
/// their catchers connected, in the [`layer()`] of the subscriber current
/// on this thread (none without one).
///
/// ```
/// assert!(aemp::logcatcher::catchers("no-such-node").is_empty());
/// ```
pub fn catchers(node: &str) -> Vec<String> {
    current_table().map_or_else(Vec::new, |t| t.ports_of(node))
}

/// Waits, at most `timeout`, until `cond` holds for the ports node `node`
/// forwards to ([`catchers`]), checking now and at each change of the
/// table — no polling. The table is that of the [`layer()`] of the
/// subscriber current on this thread when `wait_catchers` is called
/// (without one, `cond` sees no ports, once).
///
/// ```
/// use std::time::Duration;
/// # actix_rt::System::new().block_on(async {
/// // nobody connects to "quiet-node": it has no catcher, at once
/// aemp::logcatcher::wait_catchers("quiet-node", Duration::from_secs(1), |p| p.is_empty())
///     .await
///     .unwrap();
/// # });
/// ```
pub fn wait_catchers<F>(
    node: &str,
    timeout: Duration,
    mut cond: F,
) -> impl Future<Output = Result<(), Elapsed>> + use<F>
where
    F: FnMut(&[String]) -> bool,
{
    let table = current_table();
    let mut changes = table.as_ref().map(|t| t.changes.subscribe());
    let node = node.to_owned();
    tokio::time::timeout(timeout, async move {
        loop {
            let ports = table.as_ref().map_or_else(Vec::new, |t| t.ports_of(&node));
            if cond(&ports) {
                return;
            }
            let changed = match changes.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                // no layer, or it is gone: nothing will change
                std::future::pending::<()>().await;
            }
        }
    })
}

/// `AnyEvent::MP::LogCatcher::connect($version, $rport, $loglevel)`
/// (LogCatcher.pm 43–57) on `node`.
fn connect(node: &Node, args: Vec<Value>) -> Result<(), HandlerError> {
    let Some(Value::String(rport)) = args.get(1) else {
        return Err("LogCatcher::connect: the second argument must be a port id".into());
    };
    let Some(table) = current_table() else {
        return Err("LogCatcher::connect: this node's subscriber has no log catcher layer".into());
    };
    let rport = rport.clone();
    let level = level_arg(args.get(2));
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(QUEUE);
    let catcher = Arc::new(Catcher {
        id,
        node: Arc::from(node.id()),
        rport: rport.clone(),
        level,
        tx,
    });
    if !table.add(catcher) {
        return Err(
            format!("LogCatcher::connect: {MAX_CATCHERS_PER_NODE} catchers already").into(),
        );
    }
    let task = forward(
        node.downgrade(),
        rport.clone(),
        rx,
        node.shutdown_token().clone(),
        id,
        table.clone(),
    );
    if !node.spawn_task(task) {
        table.remove(id);
        return Err("LogCatcher::connect: the node's arbiter is gone".into());
    }
    // "monitor them, silently die"
    node.mon(&rport, move |_| table.remove(id)).forget();
    Ok(())
}

/// Sends what the layer queued for catcher `id` to `rport`, until the
/// catcher is removed or the node shuts down.
async fn forward(
    node: WeakNode,
    rport: String,
    mut rx: mpsc::Receiver<(i64, String)>,
    shutdown: CancellationToken,
    id: u64,
    table: Arc<Table>,
) {
    loop {
        let (level, text) = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let Some(node) = node.upgrade() else { break };
        if quiet(|| node.snd(&rport, &(level, text))).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    table.remove(id);
}

/// The layer that hands log events to the catchers connected to this
/// process's nodes; see [`layer()`]. Each one has its own catcher table.
pub struct Forwarder {
    table: Arc<Table>,
}

/// The per-layer filter of [`Forwarder`]: lets through what the most
/// verbose catcher of its table wants, nothing when there is no catcher,
/// and nothing that the forwarder's own sending logs.
pub struct CatcherFilter {
    table: Arc<Table>,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let catchers = quiet(|| self.table.catchers.read().len());
        f.debug_struct("Forwarder")
            .field("catchers", &catchers)
            .finish()
    }
}

impl fmt::Debug for CatcherFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatcherFilter")
            .field("max_level", &self.table.max_level.load(Ordering::Relaxed))
            .finish()
    }
}

/// A new `tracing` layer that forwards the log events its subscriber
/// sees to the catchers connected to this process's nodes while that
/// subscriber is current (see the [module](self) docs). Add it to a
/// [`tracing_subscriber::registry()`]; so that catchers get messages the
/// program does not print, give the stderr layer a *per-layer* filter
/// (`fmt::layer().with_filter(EnvFilter::new("info"))`), not a global one
/// (`fmt().with_env_filter(…)` filters for every layer).
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(aemp::logcatcher::layer())
///     .with(tracing_subscriber::fmt::layer().with_filter(tracing::level_filters::LevelFilter::INFO))
///     .init();
/// ```
pub fn layer<S>() -> Filtered<Forwarder, CatcherFilter, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let table = Arc::new(Table::new());
    Forwarder {
        table: table.clone(),
    }
    .with_filter(CatcherFilter { table })
}

impl<S: Subscriber> Filter<S> for CatcherFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        perl_level(meta.level()) <= self.table.max_level.load(Ordering::Relaxed) && !is_quiet()
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        // catchers come and go: ask every time
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(level_filter(self.table.max_level.load(Ordering::Relaxed)))
    }
}

impl<S: Subscriber> Layer<S> for Forwarder {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if is_quiet() {
            return;
        }
        let level = perl_level(event.metadata().level());
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let (node, text) = text.finish();
        quiet(|| {
            for c in self.table.catchers.read().iter() {
                if level > c.level || node.as_deref().is_some_and(|n| n != &*c.node) {
                    continue;
                }
                if c.tx.try_send((level, text.clone())).is_err() {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// Renders an event as its message and ` name=value` fields, and picks
/// out its `node` field.
#[derive(Default)]
struct TextVisitor {
    message: String,
    fields: String,
    node: Option<String>,
}

impl TextVisitor {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        match field.name() {
            "message" => {
                let _ = self.message.write_fmt(value);
            }
            "node" => self.node = Some(value.to_string()),
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.fields, " {name}={value}");
            }
        }
    }

    /// The node field and the text.
    fn finish(self) -> (Option<String>, String) {
        let mut text = self.message;
        text.push_str(if text.is_empty() {
            self.fields.trim_start()
        } else {
            &self.fields
        });
        (self.node, truncate(text, MAX_TEXT))
    }
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// `text` cut to at most `max` bytes (ending in `…` if cut).
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

// ---------------------------------------------------------------------------
// The catching side

/// A log message a catcher received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caught {
    /// The node it came from.
    pub node: String,
    /// Its Perl level (printed with `%d`: a fraction is cut off).
    pub level: i64,
    /// Its text, without a final newline (LogCatcher.pm 66).
    pub text: String,
}

impl Caught {
    /// What the catcher port of `node` received: `[$level, $msg]`.
    /// Anything else a peer sends is taken as leniently as Perl does: a
    /// level that is not a number is 0, a text that is not a string is
    /// its JSON.
    pub fn from_message(node: &str, values: &[Value]) -> Caught {
        let mut text = match values.get(1) {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        };
        if text.ends_with('\n') {
            text.pop();
        }
        Caught {
            node: node.to_owned(),
            level: level_arg(values.first()),
            text,
        }
    }

    /// The line the catcher prints, at local time `time`:
    /// `YYYY-mm-dd HH:MM:SS [node] <level> text` (LogCatcher.pm 68–72).
    ///
    /// ```
    /// let c = aemp::logcatcher::Caught { node: "n1".into(), level: 2, text: "disk full".into() };
    /// let t = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap().and_hms_opt(3, 4, 5).unwrap();
    /// assert_eq!(c.line_at(&t), "2026-01-02 03:04:05 [n1] <2> disk full");
    /// ```
    pub fn line_at(&self, time: &chrono::NaiveDateTime) -> String {
        format!(
            "{} [{}] <{}> {}",
            time.format("%Y-%m-%d %H:%M:%S"),
            self.node,
            self.level,
            self.text
        )
    }

    /// The line the catcher prints now (local time).
    pub fn line(&self) -> String {
        self.line_at(&chrono::Local::now().naive_local())
    }
}

/// What a catcher does with each message.
type Sink = Arc<dyn Fn(&Caught) + Send + Sync>;

/// A node's catching state (the service's `$LOGLEVEL` and `%lport`).
#[derive(Default)]
struct CatchState {
    inner: Mutex<CatchInner>,
}

#[derive(Default)]
struct CatchInner {
    level: Option<i64>,
    sink: Option<Sink>,
    /// Our port per caught node.
    lports: HashMap<String, PortId>,
    watcher: Option<MonNodesGuard>,
}

/// Starts catching the log messages of level `level` or lower of every
/// node this one is connected to, now or later, printing them on stderr
/// (LogCatcher.pm 95–107); `None` stops catching. Each call kills the
/// ports of the previous one with `"restart"`, which ends their
/// forwarding on the other nodes.
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// let node = aemp::Node::builder().node_id("catcher").start().await.unwrap();
/// aemp::logcatcher::catch(&node, Some(9));
/// aemp::logcatcher::catch(&node, None);
/// # node.shutdown();
/// # });
/// ```
pub fn catch(node: &Node, level: Option<i64>) {
    catch_with(node, level, |c| eprintln!("{}", c.line()));
}

/// Like [`catch`], handing each message to `sink` instead of printing
/// it (see the [module](self) docs for an example).
pub fn catch_with(node: &Node, level: Option<i64>, sink: impl Fn(&Caught) + Send + Sync + 'static) {
    let state = match node.service::<CatchState>() {
        Some(state) => state,
        None => {
            let state = Arc::new(CatchState::default());
            node.install_service(state.clone());
            state
        }
    };
    let (old_ports, old_watcher) = {
        let mut inner = state.inner.lock();
        inner.level = level;
        inner.sink = level.map(|_| Arc::new(sink) as Sink);
        let ports: Vec<PortId> = inner.lports.drain().map(|(_, p)| p).collect();
        (ports, inner.watcher.take())
    };
    drop(old_watcher);
    let restart = vec![Value::from("restart")];
    for port in old_ports {
        let _ = node.kil(&port, restart.clone());
    }
    if level.is_none() {
        return;
    }
    // the callback first, so no node that comes up meanwhile is missed
    let weak = Arc::downgrade(&state);
    let me = node.downgrade();
    let watcher = node.on_node_change(move |change| {
        let (Some(state), Some(node)) = (weak.upgrade(), me.upgrade()) else {
            return;
        };
        match change {
            NodeChange::Up { node: id, .. } => mon_node(&node, &state, id),
            NodeChange::Down { node: id, .. } => {
                // its port dies by `mon $node, $lport`
                state.inner.lock().lports.remove(*id);
            }
        }
    });
    state.inner.lock().watcher = Some(watcher);
    for id in node.up_nodes() {
        mon_node(node, &state, &id);
    }
}

/// The ports with which `node` catches other nodes now, by node (the
/// service's `%lport`), sorted by node id.
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// let node = aemp::Node::builder().node_id("lonely").start().await.unwrap();
/// aemp::logcatcher::catch(&node, Some(9));
/// assert!(aemp::logcatcher::catcher_ports(&node).is_empty()); // no node is up
/// # node.shutdown();
/// # });
/// ```
pub fn catcher_ports(node: &Node) -> Vec<(String, PortId)> {
    let Some(state) = node.service::<CatchState>() else {
        return Vec::new();
    };
    let mut ports: Vec<_> = state
        .inner
        .lock()
        .lports
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    ports.sort();
    ports
}

/// Starts catching node `id` (LogCatcher.pm 59–80), unless already.
fn mon_node(node: &Node, state: &CatchState, id: &str) {
    let (level, sink) = {
        let inner = state.inner.lock();
        match (inner.level, &inner.sink) {
            (Some(level), Some(sink)) if !inner.lports.contains_key(id) => (level, sink.clone()),
            _ => return,
        }
    };
    let from = id.to_owned();
    let lport = node.port_fn(move |_, msg| {
        sink(&Caught::from_message(&from, &msg.values()?));
        Ok(())
    });
    state
        .inner
        .lock()
        .lports
        .insert(id.to_owned(), lport.clone());
    let request = (CONNECT_FUNCTION, 0, lport.as_str(), level);
    if let Err(error) = node.snd(id, &request) {
        tracing::warn!(node = node.id(), remote = id, %error, "log catcher cannot connect");
    }
    node.mon_kil(id, &lport).forget();
}

/// Registers [`CONNECT_FUNCTION`] and [`CATCH_FUNCTION`] on `node`.
pub(crate) fn install(node: &Node) {
    let catch_service = |node: &Node, args: Vec<Value>| {
        let level = match args.first() {
            None | Some(Value::Null) => None,
            level => Some(level_arg(level)),
        };
        catch(node, level);
        Ok(())
    };
    for result in [
        node.register_fn(CONNECT_FUNCTION, connect),
        node.register_fn(CATCH_FUNCTION, catch_service),
    ] {
        if let Err(error) = result {
            tracing::error!(node = node.id(), %error, "the log catcher cannot register its functions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_map_onto_perl() {
        let levels = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ];
        let perl: Vec<i64> = levels.iter().map(perl_level).collect();
        assert_eq!(perl, [1, 2, 7, 8, 9]);
        // a catcher of level n wants exactly the tracing levels mapped to ≤ n
        for n in -1..=10 {
            let filter = level_filter(n);
            for l in &levels {
                assert_eq!(filter >= *l, perl_level(l) <= n, "catcher {n}, event {l}");
            }
        }
    }

    #[test]
    fn level_arguments_are_numified() {
        assert_eq!(level_arg(Some(&json!(9))), 9);
        assert_eq!(level_arg(Some(&json!(7.5))), 7);
        assert_eq!(level_arg(Some(&json!("8"))), 8);
        assert_eq!(level_arg(Some(&json!("x"))), 0);
        assert_eq!(level_arg(Some(&json!(null))), 0);
        assert_eq!(level_arg(None), 0);
        assert_eq!(level_arg(Some(&json!(1e300))), i64::MAX);
    }

    #[test]
    fn caught_messages_and_lines() {
        let c = Caught::from_message("n", &[json!(2), json!("disk full\n")]);
        assert_eq!(
            c,
            Caught {
                node: "n".into(),
                level: 2,
                text: "disk full".into()
            }
        );
        let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 31)
            .and_then(|d| d.and_hms_opt(23, 59, 7))
            .unwrap();
        assert_eq!(c.line_at(&t), "2026-12-31 23:59:07 [n] <2> disk full");
        // only one newline goes, as `s/\n$//`
        let c = Caught::from_message("n", &[json!("7"), json!("a\n\n")]);
        assert_eq!((c.level, c.text.as_str()), (7, "a\n"));
        let c = Caught::from_message("n", &[json!({"x": 1}), json!([1])]);
        assert_eq!((c.level, c.text.as_str()), (0, "[1]"));
        let now = Caught::from_message("n", &[json!(1), json!("x")]).line();
        assert!(now.ends_with(" [n] <1> x"), "{now}");
        assert_eq!(now.len(), "YYYY-mm-dd HH:MM:SS [n] <1> x".len());
    }

    #[test]
    fn texts_are_bounded() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        let cut = truncate("é".repeat(10), 8);
        assert!(cut.len() <= 8 && cut.ends_with('…'), "{cut}");
    }
}

//! Data connections (`AnyEvent::MP::DataConn`): raw byte streams between
//! two nodes, authenticated like node connections and made through the
//! same listeners.
//!
//! The requester R asks the target T, over their node connection:
//!
//! 1. `["", "AnyEvent::MP::DataConn::_expect", <id>, <caller port>,
//!    <timeout>, <initfunc>, @initdata]` — T remembers the id, for R only;
//! 2. `["", "snd", "<probe port on R>"]`, which T answers with an empty
//!    message to the probe: a round trip proving `_expect` was handled;
//! 3. if Global knows T's listen addresses, R dials one with greeting
//!    `aemp-dataconn;1;R;…;dataconn_id=<id>`; if it knows T has none, R
//!    sends `["", "AnyEvent::MP::DataConn::_connect", <id>, R]` and T
//!    dials R; if it knows nothing yet, R waits for Global's next `addr`
//!    or `setup`.
//!
//! After the handshake the side holding the `_expect` state (T) calls the
//! init function with `initdata` and its end of the stream; R gets the
//! other end from [`connect_to`]. A target on the same node gets an
//! in-memory pipe. Failures kill R's caller port with
//! `("AnyEvent::MP::DataConn", "<node>: unable to establish connection
//! within <t> seconds" | "<node>: no listeners found" | <transport error>)`;
//! when T's wait runs out it kills the caller port with
//! `("AnyEvent::MP::DataConn", undef)`.
//!
//! Where aemp differs from the reference: Global's address table is read,
//! never consumed; the probe port is removed after the round trip; a data
//! connection with an id is taken only from the node that set it up (T
//! accepts the id from R only, R from T only; anything else is closed
//! silently, like an unknown id); T clamps the peer's timeout to
//! [`NodeConfig::dataconn_max_timeout`](crate::NodeConfig::dataconn_max_timeout)
//! (default 300 s) and keeps at most
//! [`NodeConfig::dataconn_max_pending`](crate::NodeConfig::dataconn_max_pending)
//! `_expect` states per peer (more are refused by killing the caller port);
//! the caller port must be on the requesting node; an unknown init
//! function is reported at once (caller port killed) instead of when the
//! stream arrives; R tries every known address of T in turn, not only the
//! first one.
//!
//! ```
//! # actix_rt::System::new().block_on(async {
//! use std::time::Duration;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let t = aemp::Node::builder()
//!     .node_id("t").secret("s").bind("127.0.0.1:0")
//!     .dataconn_init("My::echo", |_node, _initdata, mut stream| {
//!         actix_rt::spawn(async move {
//!             let (mut r, mut w) = tokio::io::split(&mut stream);
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!         Ok(())
//!     })
//!     .start().await.unwrap();
//! let r = aemp::Node::builder().node_id("r").secret("s").start().await.unwrap();
//! r.connect(t.listen_addrs()[0].to_string()).await.unwrap();
//! let mut s = aemp::dataconn::connect_to(&r, "t", Duration::from_secs(5), "My::echo", vec![])
//!     .await
//!     .unwrap();
//! s.write_all(b"ping").await.unwrap();
//! let mut back = [0; 4];
//! s.read_exact(&mut back).await.unwrap();
//! assert_eq!(&back, b"ping");
//! # r.shutdown(); t.shutdown();
//! # });
//! ```

mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub use stream::DataStream;

use crate::error::{ConnectionError, FunctionNameError, SendError};
use crate::global::Global;
use crate::kernel::{HandlerError, Node, PortId, Reason, WeakNode, check_name};
use crate::transport::dataconn::DataLink;
use crate::wire::dataconn_id_ok;

/// The node-port function that has a node expect a data connection.
pub const EXPECT_FUNCTION: &str = "AnyEvent::MP::DataConn::_expect";

/// The node-port function that asks a node to dial the data connection.
pub const CONNECT_FUNCTION: &str = "AnyEvent::MP::DataConn::_connect";

/// The first element of every kill reason of a failed data connection.
pub const REASON_TAG: &str = "AnyEvent::MP::DataConn";

/// An init function for data connections: runs on the node that was asked
/// for the stream, with the requester's `initdata` and its end of the
/// stream (to keep using it, move it into a task). An error or a panic is
/// logged; the stream then closes.
pub type DataInitFn =
    Arc<dyn Fn(&Node, Vec<Value>, DataStream) -> Result<(), HandlerError> + Send + Sync>;

/// Why a data connection could not be made.
#[derive(Debug, Error)]
pub enum DataConnError {
    /// Not established within the timeout (reference text).
    #[error("{node}: unable to establish connection within {secs} seconds")]
    Timeout {
        /// The target node.
        node: String,
        /// The timeout as Perl prints the number.
        secs: String,
    },
    /// Neither side could dial the other (reference text).
    #[error("{node}: no listeners found")]
    NoListeners {
        /// The node without listeners.
        node: String,
    },
    /// Dialling or the handshake failed.
    #[error("{}", transport_text(.0))]
    Transport(ConnectionError),
    /// The address we dialled belongs to another node than the target.
    #[error("dialled {expected} and reached {got}")]
    WrongPeer {
        /// The target node.
        expected: String,
        /// The node that answered.
        got: String,
    },
    /// The caller port died (the target killed it: its wait ran out, or
    /// it refused the request).
    #[error("caller port killed: {0:?}")]
    Killed(Reason),
    /// The init function is not registered (local target).
    #[error("unable to resolve function '{0}'")]
    UnknownInit(String),
    /// An init function name that is not fully qualified.
    #[error(transparent)]
    InitName(#[from] FunctionNameError),
    /// The target names no node.
    #[error("invalid data connection target {0:?}")]
    InvalidTarget(String),
    /// A request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The node has no data connection service (it was not built with
    /// [`NodeBuilder`](crate::NodeBuilder)).
    #[error("the node has no data connection service")]
    NoService,
    /// The node shut down.
    #[error("node shut down")]
    Shutdown,
}

/// A transport error as the reference words it in kill reasons (`Connection
/// refused`, not `unable to connect: Connection refused`).
fn transport_text(e: &ConnectionError) -> String {
    match e {
        ConnectionError::Connect(text) => text.clone(),
        other => other.to_string(),
    }
}

impl DataConnError {
    /// The kill reason the caller port gets: `["AnyEvent::MP::DataConn",
    /// <text>]`.
    pub fn reason(&self) -> Reason {
        match self {
            DataConnError::Killed(reason) => reason.clone(),
            other => vec![json!(REASON_TAG), json!(other.to_string())],
        }
    }
}

/// A number of seconds as Perl interpolates it (`5`, `0.5`).
fn perl_secs(t: Duration) -> String {
    let s = t.as_secs_f64();
    if s.fract() == 0.0 && s < 1e15 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// A number of seconds as a JSON number (an integer when whole).
fn secs_value(t: Duration) -> Value {
    let s = t.as_secs_f64();
    if s.fract() == 0.0 && s < 1e15 {
        json!(s as u64)
    } else {
        json!(s)
    }
}

/// A number as Perl reads one (numbers and numeric strings).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| !f.is_nan())
}

/// An `_expect` state: a data connection this node waits for.
struct Expect {
    serial: u64,
    caller: String,
    initfunc: String,
    initdata: Vec<Value>,
    /// Ends the wait (timer and any dial in progress).
    cancel: CancellationToken,
    /// A `_connect` made us dial already.
    dialling: bool,
}

/// A data connection this node asked for, waiting for the target to dial.
struct Request {
    target: String,
    tx: oneshot::Sender<DataStream>,
}

#[derive(Default)]
struct Table {
    /// By (requesting node, id).
    expects: HashMap<(String, String), Expect>,
    /// By id (ours).
    requests: HashMap<String, Request>,
}

/// The data connection service of one node.
pub(crate) struct DataConn {
    node: WeakNode,
    table: Mutex<Table>,
    inits: Mutex<HashMap<String, DataInitFn>>,
    next: AtomicU64,
    max_timeout: Duration,
    max_pending: usize,
}

/// The service and its node, if both are alive.
fn alive(s: &Weak<DataConn>) -> Option<(Arc<DataConn>, Node)> {
    let s = s.upgrade()?;
    let node = s.node.upgrade()?;
    Some((s, node))
}

impl DataConn {
    /// Plugs the service into `node`: its two node-port functions, the
    /// handler of accepted data connections, and the init functions
    /// registered on the builder.
    pub(crate) fn install(node: &Node, inits: Vec<(String, DataInitFn)>) {
        let cfg = node.config();
        let svc = Arc::new(DataConn {
            node: node.downgrade(),
            table: Mutex::new(Table::default()),
            inits: Mutex::new(inits.into_iter().collect()),
            next: AtomicU64::new(0),
            max_timeout: cfg.dataconn_max_timeout,
            max_pending: cfg.dataconn_max_pending,
        });
        node.install_service(svc.clone());
        let weak = Arc::downgrade(&svc);
        let expect = move |node: &Node, from: &str, args: Vec<Value>| match weak.upgrade() {
            Some(svc) => svc.expect(node, from, args),
            None => Ok(()),
        };
        let weak = Arc::downgrade(&svc);
        let connect = move |node: &Node, from: &str, args: Vec<Value>| match weak.upgrade() {
            Some(svc) => svc.connect_request(node, from, args),
            None => Ok(()),
        };
        for result in [
            node.register_sourced_fn(EXPECT_FUNCTION, expect),
            node.register_sourced_fn(CONNECT_FUNCTION, connect),
        ] {
            if let Err(error) = result {
                tracing::error!(node = node.id(), %error, "data connections cannot register their functions");
            }
        }
        let weak = Arc::downgrade(&svc);
        node.set_data_handler(Arc::new(move |link| {
            if let Some((svc, node)) = alive(&weak) {
                svc.accepted(&node, link);
            }
        }));
    }

    fn of(node: &Node) -> Result<Arc<DataConn>, DataConnError> {
        node.service::<DataConn>().ok_or(DataConnError::NoService)
    }

    fn init(&self, name: &str) -> Option<DataInitFn> {
        self.inits.lock().get(name).cloned()
    }

    /// Runs init function `name` on `stream`.
    fn run_init(&self, node: &Node, name: &str, initdata: Vec<Value>, stream: DataStream) {
        let Some(f) = self.init(name) else {
            tracing::warn!(
                node = node.id(),
                function = name,
                "data connection init function unknown; stream closed"
            );
            return;
        };
        let (id, peer) = (stream.id().to_owned(), stream.peer_node().to_owned());
        tracing::debug!(node = node.id(), remote = %peer, %id, function = name, "data connection established");
        node.run_callback("data connection init function", || {
            if let Err(error) = f(node, initdata, stream) {
                tracing::warn!(node = node.id(), remote = %peer, %id, function = name, %error, "data connection init function failed");
            }
        });
    }

    // --- the target's side ------------------------------------------------

    /// `_expect(id, port, timeout, initfunc, @initdata)` from node `from`.
    fn expect(
        self: &Arc<Self>,
        node: &Node,
        from: &str,
        mut args: Vec<Value>,
    ) -> Result<(), HandlerError> {
        if args.len() < 4 {
            return Err("_expect needs id, port, timeout and init function".into());
        }
        let initdata = args.split_off(4);
        let id = args[0]
            .as_str()
            .filter(|id| dataconn_id_ok(id))
            .ok_or("_expect: unusable data connection id")?
            .to_owned();
        let caller = args[1]
            .as_str()
            .filter(|p| p.split('#').next() == Some(from) && p.contains('#'))
            .ok_or("_expect: the caller port must be a port of the requesting node")?
            .to_owned();
        let timeout = number(&args[2]).ok_or("_expect: the timeout is not a number")?;
        let initfunc = args[3]
            .as_str()
            .ok_or("_expect: the init function is not a string")?
            .to_owned();
        let refuse = |why: String| {
            let reason = vec![json!(REASON_TAG), json!(why)];
            if let Err(error) = node.kil(&caller, reason) {
                tracing::debug!(node = node.id(), remote = from, %error, "kil not sent");
            }
        };
        if self.init(&initfunc).is_none() {
            refuse(format!("unable to resolve function '{initfunc}'"));
            return Err(format!("_expect: unknown init function {initfunc:?}").into());
        }
        // the peer's timeout, clamped
        let wait = Duration::try_from_secs_f64(timeout.clamp(0.0, self.max_timeout.as_secs_f64()))
            .unwrap_or(self.max_timeout);
        let cancel = CancellationToken::new();
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        let key = (from.to_owned(), id);
        {
            let mut t = self.table.lock();
            let pending = t.expects.keys().filter(|(peer, _)| peer == from).count();
            let replaces = t.expects.contains_key(&key);
            if !replaces && pending >= self.max_pending {
                drop(t);
                node.count_limit_hit(from, crate::Limit::DataconnExpectations);
                refuse("too many pending data connections".to_owned());
                return Err("_expect: too many pending data connections from this node".into());
            }
            let old = t.expects.insert(
                key.clone(),
                Expect {
                    serial,
                    caller,
                    initfunc,
                    initdata,
                    cancel: cancel.clone(),
                    dialling: false,
                },
            );
            if let Some(old) = old {
                old.cancel.cancel();
            }
        }
        tracing::debug!(node = node.id(), remote = from, id = %key.1, ?wait, "expecting a data connection");
        let weak = Arc::downgrade(self);
        node.spawn_task(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(wait) => {
                    if let Some((svc, node)) = alive(&weak) {
                        svc.fail_expect(&node, &key, serial, Value::Null);
                    }
                }
            }
        });
        Ok(())
    }

    /// Takes the `_expect` state `key` (if it is still the one numbered
    /// `serial`, when given) and ends its wait.
    fn take_expect(&self, key: &(String, String), serial: Option<u64>) -> Option<Expect> {
        let mut t = self.table.lock();
        if serial.is_some_and(|s| t.expects.get(key).is_none_or(|e| e.serial != s)) {
            return None;
        }
        let e = t.expects.remove(key)?;
        e.cancel.cancel();
        Some(e)
    }

    /// The `_expect` state `key` failed: its caller port is killed with
    /// `("AnyEvent::MP::DataConn", why)`.
    fn fail_expect(&self, node: &Node, key: &(String, String), serial: u64, why: Value) {
        let Some(e) = self.take_expect(key, Some(serial)) else {
            return;
        };
        tracing::debug!(node = node.id(), remote = %key.0, id = %key.1, reason = %why, "expected data connection failed");
        if let Err(error) = node.kil(&e.caller, vec![json!(REASON_TAG), why]) {
            tracing::debug!(node = node.id(), remote = %key.0, %error, "kil not sent");
        }
    }

    /// `_connect(id, node)` from node `from`: dial `from` with the id.
    fn connect_request(
        self: &Arc<Self>,
        node: &Node,
        from: &str,
        args: Vec<Value>,
    ) -> Result<(), HandlerError> {
        let (Some(id), Some(target)) = (
            args.first().and_then(Value::as_str),
            args.get(1).and_then(Value::as_str),
        ) else {
            return Err("_connect needs an id and a node".into());
        };
        if target != from {
            return Err(format!("_connect: {from} asks us to dial {target}").into());
        }
        let key = (from.to_owned(), id.to_owned());
        let (serial, cancel) = {
            let mut t = self.table.lock();
            let Some(e) = t.expects.get_mut(&key) else {
                return Ok(()); // unknown (or over): as the reference, nothing
            };
            if e.dialling {
                return Ok(());
            }
            e.dialling = true;
            (e.serial, e.cancel.clone())
        };
        // read, not consumed: the table stays as Global knows it
        let addrs = Global::of(node).addresses(from).unwrap_or_default();
        if addrs.is_empty() {
            let why = DataConnError::NoListeners {
                node: from.to_owned(),
            };
            self.fail_expect(node, &key, serial, json!(why.to_string()));
            return Ok(());
        }
        let weak = Arc::downgrade(self);
        let me = node.clone();
        node.spawn_task(async move {
            let dialled = tokio::select! {
                _ = cancel.cancelled() => return,
                r = dial_each(&me, &key.1, &key.0, &addrs) => r,
            };
            let Some(svc) = weak.upgrade() else {
                return;
            };
            match dialled {
                Ok(stream) => {
                    if let Some(e) = svc.take_expect(&key, Some(serial)) {
                        svc.run_init(&me, &e.initfunc, e.initdata, stream);
                    }
                }
                Err(error) => svc.fail_expect(&me, &key, serial, json!(error.to_string())),
            }
        });
        Ok(())
    }

    /// A data connection this node accepted: the requester's stream, or
    /// an expected one for its init function, or nobody's (closed).
    fn accepted(&self, node: &Node, link: DataLink) {
        let Some(id) = link.established.dataconn_id.clone() else {
            return;
        };
        let peer = link.established.remote_node.clone();
        let stream = DataStream::net(link.stream, peer.clone(), id.clone());
        let mut t = self.table.lock();
        if t.requests.get(&id).is_some_and(|r| r.target == peer)
            && let Some(r) = t.requests.remove(&id)
        {
            drop(t);
            if r.tx.send(stream).is_err() {
                tracing::debug!(node = node.id(), remote = %peer, %id, "data connection arrived after its requester gave up");
            }
            return;
        }
        let key = (peer.clone(), id.clone());
        if let Some(e) = t.expects.remove(&key) {
            drop(t);
            e.cancel.cancel();
            return self.run_init(node, &e.initfunc, e.initdata, stream);
        }
        let someone_elses = t.requests.contains_key(&id) || t.expects.keys().any(|(_, i)| *i == id);
        drop(t);
        if someone_elses {
            crate::transport::log_throttle::peer_warn!(node.log_throttle(), &peer, node = node.id(), remote = %peer, %id, addr = %link.addr, "data connection with another node's id refused");
        } else {
            tracing::debug!(node = node.id(), remote = %peer, %id, "data connection with an unknown id closed");
        }
    }

    // --- the requester's side ---------------------------------------------

    async fn attempt(
        self: &Arc<Self>,
        node: &Node,
        caller: &PortId,
        target: &str,
        timeout: Duration,
        initfunc: &str,
        initdata: Vec<Value>,
    ) -> Result<DataStream, DataConnError> {
        check_name(initfunc)?;
        let id = format!(
            "{}@{}",
            self.next.fetch_add(1, Ordering::Relaxed) + 1,
            node.id()
        );
        if target == node.id() {
            let f = self
                .init(initfunc)
                .ok_or_else(|| DataConnError::UnknownInit(initfunc.to_owned()))?;
            let (mine, theirs) = DataStream::local_pair(node.id(), &id);
            node.run_callback("data connection init function", || {
                if let Err(error) = f(node, initdata, theirs) {
                    tracing::warn!(node = node.id(), function = initfunc, %error, "data connection init function failed");
                }
            });
            return Ok(mine);
        }
        let (tx, rx) = oneshot::channel();
        self.table.lock().requests.insert(
            id.clone(),
            Request {
                target: target.to_owned(),
                tx,
            },
        );
        let _forget = ForgetRequest(self, &id);
        let (killed_tx, killed_rx) = oneshot::channel();
        let monitor = node
            .mon(caller.as_str(), move |reason| {
                let _ = killed_tx.send(reason);
            })
            .guard();
        let work = self.establish(node, &id, caller, target, timeout, initfunc, initdata, rx);
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, work) => r.unwrap_or_else(|_| {
                Err(DataConnError::Timeout {
                    node: target.to_owned(),
                    secs: perl_secs(timeout),
                })
            }),
            Ok(reason) = killed_rx => Err(DataConnError::Killed(reason)),
            _ = node.shutdown_token().cancelled() => Err(DataConnError::Shutdown),
        };
        drop(monitor);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn establish(
        &self,
        node: &Node,
        id: &str,
        caller: &PortId,
        target: &str,
        timeout: Duration,
        initfunc: &str,
        initdata: Vec<Value>,
        rx: oneshot::Receiver<DataStream>,
    ) -> Result<DataStream, DataConnError> {
        let mut expect = vec![
            json!(EXPECT_FUNCTION),
            json!(id),
            json!(caller.as_str()),
            secs_value(timeout),
            json!(initfunc),
        ];
        expect.extend(initdata);
        node.snd(target, &expect)?;
        // the round trip: the target has handled `_expect` once the probe
        // hears back; the probe goes at once afterwards
        {
            let (probe, mut heard) = node.port_channel();
            let _probe = KillOnDrop(node, &probe);
            node.snd(target, &json!(["snd", probe.as_str()]))?;
            heard.recv().await.ok_or(DataConnError::Shutdown)?;
        }
        let global = Global::of(node);
        let mut setups = global.setups();
        loop {
            setups.borrow_and_update();
            match global.addresses(target) {
                Some(addrs) if !addrs.is_empty() => {
                    tracing::debug!(node = node.id(), remote = target, %id, ?addrs, "dialling a data connection");
                    return dial_each(node, id, target, &addrs).await;
                }
                Some(_) => {
                    tracing::debug!(node = node.id(), remote = target, %id, "target has no listeners; asking it to dial");
                    node.snd(target, &json!([CONNECT_FUNCTION, id, node.id()]))?;
                    return rx.await.map_err(|_| DataConnError::Shutdown);
                }
                None => {
                    // wait for Global's next `addr`/`setup`
                    if setups.changed().await.is_err() {
                        return Err(DataConnError::Shutdown);
                    }
                }
            }
        }
    }
}

/// Dials `peer` at each of `addrs` in turn as data connection `id` until
/// one reaches `peer`.
async fn dial_each(
    node: &Node,
    id: &str,
    peer: &str,
    addrs: &[String],
) -> Result<DataStream, DataConnError> {
    let mut last = DataConnError::NoListeners {
        node: peer.to_owned(),
    };
    for addr in addrs {
        match node.dial_data(addr, id).await {
            Ok(link) if link.established.remote_node == peer => {
                return Ok(DataStream::net(link.stream, peer.to_owned(), id.to_owned()));
            }
            Ok(link) => {
                let got = link.established.remote_node;
                tracing::warn!(node = node.id(), remote = peer, %addr, %got, "data connection reached another node; closed");
                last = DataConnError::WrongPeer {
                    expected: peer.to_owned(),
                    got,
                };
            }
            Err(error) => {
                tracing::debug!(node = node.id(), remote = peer, %addr, %error, "data connection dial failed");
                last = DataConnError::Transport(error);
            }
        }
    }
    Err(last)
}

/// Removes a request from the table however its attempt ends.
struct ForgetRequest<'a>(&'a DataConn, &'a str);

impl Drop for ForgetRequest<'_> {
    fn drop(&mut self) {
        self.0.table.lock().requests.remove(self.1);
    }
}

/// Kills a port (normal exit) when dropped.
struct KillOnDrop<'a>(&'a Node, &'a PortId);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kil(self.1, Vec::new());
    }
}

/// Makes a data connection from `node` to `target` (a node id, or a port
/// id whose node is meant) and returns this side's end; the target runs
/// its data connection init function `initfunc` (see
/// [`Node::register_dataconn_init`]) with `initdata` and its end. The
/// reference's `AnyEvent::MP::DataConn::connect_to`, with a temporary
/// caller port that is removed afterwards (see [`connect_to_as`]).
///
/// Fails after `timeout` with [`DataConnError::Timeout`]; the target
/// waits as long (clamped to its own maximum). A target on this node gets
/// an in-memory pipe. The [module docs](self) have an example with two
/// nodes.
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// use std::time::Duration;
/// let node = aemp::Node::builder().node_id("n").secret("s").start().await.unwrap();
/// let e = aemp::dataconn::connect_to(&node, "n", Duration::from_secs(1), "No::such", vec![])
///     .await
///     .unwrap_err();
/// assert_eq!(e.to_string(), "unable to resolve function 'No::such'");
/// # node.shutdown();
/// # });
/// ```
pub async fn connect_to(
    node: &Node,
    target: impl AsRef<str>,
    timeout: Duration,
    initfunc: &str,
    initdata: Vec<Value>,
) -> Result<DataStream, DataConnError> {
    connect(node, None, target.as_ref(), timeout, initfunc, initdata).await
}

/// Like [`connect_to`], on behalf of the local port `caller`: on failure
/// `caller` is killed with [`DataConnError::reason`]
/// (`("AnyEvent::MP::DataConn", <text>)`), as the reference kills the
/// port `connect_to` was called in, and when `caller` dies meanwhile
/// (the target kills it when its wait runs out) the attempt ends with
/// [`DataConnError::Killed`].
pub async fn connect_to_as(
    node: &Node,
    caller: &PortId,
    target: impl AsRef<str>,
    timeout: Duration,
    initfunc: &str,
    initdata: Vec<Value>,
) -> Result<DataStream, DataConnError> {
    connect(
        node,
        Some(caller),
        target.as_ref(),
        timeout,
        initfunc,
        initdata,
    )
    .await
}

async fn connect(
    node: &Node,
    caller: Option<&PortId>,
    target: &str,
    timeout: Duration,
    initfunc: &str,
    initdata: Vec<Value>,
) -> Result<DataStream, DataConnError> {
    let svc = DataConn::of(node)?;
    let target_node = target.split('#').next().unwrap_or_default();
    if target_node.is_empty() {
        return Err(DataConnError::InvalidTarget(target.to_owned()));
    }
    // the caller port: the given one, or a temporary one for this attempt
    let (caller, _temporary) = match caller {
        Some(port) => (port.clone(), None),
        None => {
            let (port, rx) = node.port_channel();
            (port, Some(rx))
        }
    };
    let result = svc
        .attempt(node, &caller, target_node, timeout, initfunc, initdata)
        .await;
    match &result {
        Err(DataConnError::Killed(_)) => {}
        Err(e) => {
            tracing::debug!(node = node.id(), remote = target_node, error = %e, "data connection failed");
            let _ = node.kil(&caller, e.reason());
        }
        Ok(_) if _temporary.is_some() => {
            let _ = node.kil(&caller, Vec::new());
        }
        Ok(_) => {}
    }
    result
}

impl Node {
    /// How much of its budget of `limit` peer `peer` holds on this node:
    /// for [`Limit::SpawnedPorts`](crate::Limit::SpawnedPorts) its live
    /// spawned ports, [`Limit::RemoteMonitors`](crate::Limit::RemoteMonitors)
    /// its `mon1` registrations,
    /// [`Limit::GroupRegistrations`](crate::Limit::GroupRegistrations) the
    /// Global registrations of its ports,
    /// [`Limit::DataconnExpectations`](crate::Limit::DataconnExpectations)
    /// its pending data-connection expectations,
    /// [`Limit::RelayQueue`](crate::Limit::RelayQueue) the nodes (not up)
    /// its relayed messages wait for; `None` for limits that
    /// are no per-peer budget (packet size, queues, …). Each is bounded
    /// by its `NodeConfig::peer_max_*` (or `dataconn_max_pending`) setting.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// assert_eq!(node.peer_usage("other", aemp::Limit::SpawnedPorts), Some(0));
    /// assert_eq!(node.peer_usage("other", aemp::Limit::PacketSize), None);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn peer_usage(&self, peer: &str, limit: crate::Limit) -> Option<usize> {
        if limit == crate::Limit::DataconnExpectations {
            let pending = DataConn::of(self).map_or(0, |svc| {
                let t = svc.table.lock();
                t.expects.keys().filter(|(p, _)| p == peer).count()
            });
            return Some(pending);
        }
        crate::global::peer_usage(self, peer, limit)
    }

    /// Registers a data connection init function under its fully
    /// qualified name: when another node (or this one) makes a data
    /// connection to this node naming it, it runs with the requester's
    /// init data and this side's end of the stream.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().secret("s").start().await.unwrap();
    /// node.register_dataconn_init("My::receiver", |_node, initdata, stream| {
    ///     tracing::info!(?initdata, peer = stream.peer_node(), "stream arrived");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn register_dataconn_init(
        &self,
        name: &str,
        f: impl Fn(&Node, Vec<Value>, DataStream) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Result<(), DataConnError> {
        check_name(name)?;
        let svc = DataConn::of(self)?;
        svc.inits.lock().insert(name.to_owned(), Arc::new(f));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_print_as_perl_interpolates_them() {
        assert_eq!(perl_secs(Duration::from_secs(5)), "5");
        assert_eq!(perl_secs(Duration::from_millis(500)), "0.5");
        assert_eq!(perl_secs(Duration::from_millis(1500)), "1.5");
        assert_eq!(secs_value(Duration::from_secs(5)), json!(5));
        assert_eq!(secs_value(Duration::from_millis(250)), json!(0.25));
    }

    #[test]
    fn reasons_carry_the_reference_texts() {
        let e = DataConnError::Timeout {
            node: "t".into(),
            secs: "5".into(),
        };
        assert_eq!(
            e.reason(),
            vec![
                json!(REASON_TAG),
                json!("t: unable to establish connection within 5 seconds")
            ]
        );
        let e = DataConnError::NoListeners { node: "t".into() };
        assert_eq!(e.reason()[1], json!("t: no listeners found"));
        let e = DataConnError::Transport(ConnectionError::Connect("Connection refused".into()));
        assert_eq!(e.reason()[1], json!("Connection refused"));
    }

    #[test]
    fn numbers_as_perl_reads_them() {
        assert_eq!(number(&json!(5)), Some(5.0));
        assert_eq!(number(&json!("2.5")), Some(2.5));
        assert_eq!(number(&json!("x")), None);
        assert_eq!(number(&json!(null)), None);
    }
}

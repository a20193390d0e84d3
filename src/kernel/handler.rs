//! Ports run by the node: a handler function per port, like the
//! reference's `rcv $port, sub { … }`.
//!
//! The node's port runner (`port_runner.rs`) runs every handler port's
//! callbacks, one message at a time per port. A handler that returns an
//! error or panics kills its port with `("die", <message>)`, as a Perl
//! callback that dies does; messages still queued for a port killed that
//! way are dropped. An async handler ([`Node::port_async`]) runs its
//! future to the end before the port takes its next message (see the
//! `rcv` module for the rules).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use actix::Recipient;
use futures_util::future::LocalBoxFuture;

use super::monitor::Monitor;
use super::monitors::{Action, Reason};
use super::node::Node;
use super::port::PortId;
use super::port_runner::PortCell;
use super::rcv::{Callback, DefaultCb, Dispatch, Rcv};
use super::registry::PortTarget;
use crate::error::PortError;
use crate::error::SendError;
use crate::wire::Packet;

pub use crate::error::HandlerError;

/// A port's message handler (see [`Node::port_fn`]).
pub type HandlerFn = Box<dyn FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send>;

/// A port's async message handler (see [`Node::port_async`]): makes the
/// future that handles one message.
pub type AsyncHandlerFn =
    Box<dyn FnMut(PortContext, Packet) -> LocalBoxFuture<'static, Result<(), HandlerError>> + Send>;

/// Who a handler runs for: its node and its own port (the reference's
/// `$SELF`).
#[derive(Clone)]
pub struct PortContext {
    node: Node,
    /// The port's id, callbacks and kill flags (see `port_runner.rs`).
    cell: Arc<PortCell>,
}

impl fmt::Debug for PortContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortContext")
            .field("port", self.port())
            .finish()
    }
}

impl PortContext {
    /// The context of a port whose messages no tag matches are ignored
    /// until its behaviour says otherwise.
    pub(crate) fn new(node: Node, port: PortId) -> PortContext {
        PortContext::with_dispatch(node, port, Dispatch::new(DefaultCb::Ignore))
    }

    /// The context of a port with the callbacks `dispatch`.
    pub(crate) fn with_dispatch(node: Node, port: PortId, dispatch: Dispatch) -> PortContext {
        PortContext::from_cell(node, PortCell::new(port, dispatch))
    }

    /// The context of the port whose state is `cell`.
    pub(crate) fn from_cell(node: Node, cell: Arc<PortCell>) -> PortContext {
        PortContext { node, cell }
    }

    /// The port's state.
    pub(crate) fn cell(&self) -> &Arc<PortCell> {
        &self.cell
    }

    /// The port's callbacks.
    pub(crate) fn dispatch(&self) -> &parking_lot::Mutex<Dispatch> {
        self.cell.dispatch()
    }

    /// The node this port lives on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// This port's id (`$SELF`).
    pub fn port(&self) -> &PortId {
        self.cell.port()
    }

    /// Kills this port at once: with an empty reason a normal exit, else
    /// an error exit. Messages already queued for it are dropped.
    pub fn kil(&self, reason: Reason) {
        let port = self.port();
        if port.node() != self.node.id() {
            // a context for another node's port (see `Node::peval`)
            if let Err(error) = self.node.kil(port, reason) {
                tracing::warn!(node = self.node.id(), %port, %error, "kil failed");
            }
            return;
        }
        self.cell.set_killed();
        self.node.inner().kill_now(port.name(), reason);
    }

    /// Monitors `port` and kills this port with the same reason when it
    /// dies with an error (the reference's one-argument `mon $port`).
    pub fn mon(&self, port: impl AsRef<str>) -> Monitor {
        self.node
            .inner()
            .mon_action(port.as_ref(), Action::Kill(self.port().clone()))
    }

    /// Sends a message (shorthand for [`Node::snd`]).
    pub fn snd<M: serde::Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        self.node.snd(port, msg)
    }

    /// The reference's `$SRCNODE` (Kernel.pm 167) while this port's
    /// handler, tag callback or init function runs: the id of the node
    /// whose connection delivered the message (or the `_spawn` request) —
    /// the immediate peer, not the originator of a relayed `snd` — or this
    /// node's id for a local send or spawn. Same as [`Node::src_node`].
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let port = node.port_fn(move |ctx, _| {
    ///     ctx.snd(&out, &(ctx.src_node(),))?;
    ///     Ok(())
    /// });
    /// node.snd(&port, &("hi",)).unwrap();
    /// let (src,): (String,) = rx.recv().await.unwrap().decode().unwrap();
    /// assert_eq!(src, "n");
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn src_node(&self) -> Option<String> {
        super::src_node::current()
    }
}

impl Node {
    /// The reference's `$SRCNODE` (Kernel.pm 167) for the code the node is
    /// running on this thread: a handler or tag callback (the node whose
    /// connection delivered its message), a plain function called through
    /// the node port or an init function (the node whose request it is;
    /// this node for local ones). `None` outside such code — in an actix
    /// actor use [`Packet::src_node`] of the message.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder()
    ///     .node_id("n")
    ///     .plain_fn("My::whoami", |node, args| {
    ///         let reply = args[0].as_str().unwrap_or_default();
    ///         node.snd(reply, &(node.src_node(),))?;
    ///         Ok(())
    ///     })
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// node.snd("n", &("My::whoami", &out)).unwrap();
    /// let (src,): (String,) = rx.recv().await.unwrap().decode().unwrap();
    /// assert_eq!(src, "n");
    /// assert_eq!(node.src_node(), None);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn src_node(&self) -> Option<String> {
        super::src_node::current()
    }
}

/// What receives a port's messages: returned by init functions (see
/// [`Node::register_init`]), which thereby create their spawned port.
pub enum PortBehaviour {
    /// A handler function run by the node: the port's default callback
    /// (tags the init function registered through its context stay).
    Handler(HandlerFn),
    /// An async handler function (see [`Node::port_async`]), as
    /// [`PortBehaviour::Handler`] otherwise.
    AsyncHandler(AsyncHandlerFn),
    /// Callbacks by tag, and optionally a default (see [`Rcv`]): added to
    /// whatever the init function registered through its context.
    Tags(Rcv),
    /// A user's actix actor.
    Actor(Recipient<Packet>),
}

impl PortBehaviour {
    /// A handler function.
    pub fn handler(
        f: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> PortBehaviour {
        PortBehaviour::Handler(Box::new(f))
    }

    /// An async handler function: the port runs the future it makes for
    /// each message to its end before it takes the next (see
    /// [`Node::port_async`]).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// use aemp::PortBehaviour;
    /// let node = aemp::Node::builder()
    ///     .node_id("n")
    ///     .init_fn("My::slow_echo", |_ctx, _args| {
    ///         Ok(PortBehaviour::handler_async(|ctx, msg| async move {
    ///             let (reply, text): (String, String) = msg.decode()?;
    ///             tokio::time::sleep(Duration::from_millis(5)).await;
    ///             Ok(ctx.snd(&reply, &(text,))?)
    ///         }))
    ///     })
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let echo = node.spawn(node.id(), "My::slow_echo", &[(); 0]).unwrap();
    /// node.snd(&echo, &(&out, "one")).unwrap();
    /// node.snd(&echo, &(&out, "two")).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().decode::<(String,)>().unwrap().0, "one");
    /// assert_eq!(rx.recv().await.unwrap().decode::<(String,)>().unwrap().0, "two");
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn handler_async<F, Fut>(f: F) -> PortBehaviour
    where
        F: FnMut(PortContext, Packet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        match Callback::of_async(f) {
            Callback::Async(f) => PortBehaviour::AsyncHandler(f),
            Callback::Sync(f) => PortBehaviour::Handler(f),
        }
    }

    /// Tag dispatch: an init function returning this makes a port whose
    /// messages go to callbacks by tag (MP.pm 408–450). Without
    /// [`Rcv::default`], unmatched messages are ignored, as for Perl's
    /// spawned ports (MP.pm 424).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use aemp::{PortBehaviour, Rcv};
    /// let node = aemp::Node::builder()
    ///     .node_id("n")
    ///     .init_fn("My::counter", |_ctx, _args| {
    ///         let mut count = 0;
    ///         Ok(PortBehaviour::rcv(Rcv::new()
    ///             .tag("inc", move |_, _| { count += 1; Ok(()) })
    ///             .tag("get", move |ctx, msg| {
    ///                 let (reply,): (String,) = msg.decode()?;
    ///                 ctx.snd(&reply, &("count",))?;
    ///                 Ok(())
    ///             })))
    ///     })
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let counter = node.spawn(node.id(), "My::counter", &[(); 0]).unwrap();
    /// node.snd(&counter, &("unknown tag",)).unwrap(); // ignored
    /// node.snd(&counter, &("get", &out)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().tag().as_deref(), Some("count"));
    /// assert!(node.port_exists(&counter));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn rcv(rcv: Rcv) -> PortBehaviour {
        PortBehaviour::Tags(rcv)
    }

    /// An actix actor.
    pub fn actor(recipient: Recipient<Packet>) -> PortBehaviour {
        PortBehaviour::Actor(recipient)
    }

    /// The registry target for this behaviour on port `ctx.port()`.
    pub(crate) fn into_target(self, ctx: PortContext) -> PortTarget {
        match self {
            PortBehaviour::Actor(r) => {
                if ctx.dispatch().lock().has_callbacks() {
                    tracing::warn!(node = ctx.node.id(), port = %ctx.port(), "init made an actor port: the callbacks registered with rcv while it ran are dropped");
                }
                PortTarget::Actor(r)
            }
            PortBehaviour::Handler(handler) => {
                ctx.dispatch()
                    .lock()
                    .set_default(DefaultCb::Call(Some(Callback::Sync(handler))));
                start_handler(ctx)
            }
            PortBehaviour::AsyncHandler(handler) => {
                ctx.dispatch()
                    .lock()
                    .set_default(DefaultCb::Call(Some(Callback::Async(handler))));
                start_handler(ctx)
            }
            PortBehaviour::Tags(rcv) => {
                ctx.dispatch().lock().merge(rcv);
                start_handler(ctx)
            }
        }
    }
}

/// The registry target of the handler port with context `ctx`: its
/// messages go to the node's port runner.
fn start_handler(ctx: PortContext) -> PortTarget {
    PortTarget::Handler {
        runner: ctx.node.inner().ports.runner().clone(),
        cell: ctx.cell,
    }
}

impl fmt::Debug for PortBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortBehaviour::Handler(_) => f.write_str("PortBehaviour::Handler"),
            PortBehaviour::AsyncHandler(_) => f.write_str("PortBehaviour::AsyncHandler"),
            PortBehaviour::Tags(rcv) => write!(f, "PortBehaviour::Tags({rcv:?})"),
            PortBehaviour::Actor(_) => f.write_str("PortBehaviour::Actor"),
        }
    }
}

/// The reason a failed handler kills its port with: `("die", message)`,
/// trailing newlines removed as the reference does.
pub(crate) fn die_reason(message: &str) -> Reason {
    crate::wire::die_reason(message)
}

impl Node {
    /// Creates a port with a fresh id whose messages the node hands to
    /// `handler`, one at a time (the reference's `port { … }`). A handler
    /// that returns an error or panics kills its port with
    /// `("die", message)`.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let doubler = node.port_fn(move |ctx, msg| {
    ///     let (n,): (i64,) = msg.decode()?;
    ///     ctx.snd(&out, &(n * 2,))?;
    ///     Ok(())
    /// });
    /// node.snd(&doubler, &(21,)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().decode::<(i64,)>().unwrap(), (42,));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn port_fn(
        &self,
        handler: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> PortId {
        self.handler_port(Dispatch::new(DefaultCb::Call(Some(Callback::sync(
            handler,
        )))))
    }

    /// Like [`Node::port_fn`], with an async handler: for each message it
    /// makes a future, which the port runs to its end before it takes the
    /// next message — so a handler can `.await` (a [`Node::cal`], a timer)
    /// while messages keep their order. An error or panic of the future
    /// kills the port with `("die", message)`; the port's death ends a
    /// future still running at its next await.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let delayed = node.port_async(move |ctx, msg| {
    ///     let out = out.clone();
    ///     async move {
    ///         let (ms,): (u64,) = msg.decode()?;
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///         ctx.snd(&out, &(ms,))?;
    ///         Ok(())
    ///     }
    /// });
    /// node.snd(&delayed, &(30,)).unwrap(); // the slow one first
    /// node.snd(&delayed, &(1,)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().decode::<(u64,)>().unwrap(), (30,));
    /// assert_eq!(rx.recv().await.unwrap().decode::<(u64,)>().unwrap(), (1,));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn port_async<F, Fut>(&self, handler: F) -> PortId
    where
        F: FnMut(PortContext, Packet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        self.handler_port(Dispatch::new(DefaultCb::Call(Some(Callback::of_async(
            handler,
        )))))
    }

    /// A handler port with a fresh id and the callbacks `dispatch`.
    pub(crate) fn handler_port(&self, dispatch: Dispatch) -> PortId {
        // the handler's context names its port, so the name is reserved
        // before the handler exists
        let name = self.reserve_port_name();
        let port = PortId::new(&self.inner().id, &name);
        let target = start_handler(PortContext::with_dispatch(
            self.clone(),
            port.clone(),
            dispatch,
        ));
        self.inner()
            .ports
            .registry()
            .complete_pending(&name, target);
        port
    }

    /// Like [`Node::port_fn`], with a fixed name.
    pub fn port_fn_named(
        &self,
        name: &str,
        handler: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> Result<PortId, PortError> {
        let me = self.clone();
        self.named_port(name, move |port| {
            let dispatch = Dispatch::new(DefaultCb::Call(Some(Callback::sync(handler))));
            start_handler(PortContext::with_dispatch(me, port, dispatch))
        })
    }
}

//! actix actors as first-class ports.
//!
//! [`Node::port_actor`] creates the port first and hands its id to the
//! code that builds the actor, so the actor knows `$SELF` before it
//! starts. The port and the actor are tied both ways:
//!
//! * the port dies when the actor ends: a normal stop is a normal exit
//!   (empty reason), a panic in one of its handlers is `("die", text)`,
//!   and [`ActorPort::die`] stops the actor with the reason it is given —
//!   what Perl's kill-form monitors (`mon $port, $port2`, MP.pm 618) act
//!   on;
//! * the actor is told when its port is killed from anywhere (a local
//!   [`Node::kil`], a remote node's `kil`, shutdown) with a [`PortKilled`]
//!   message carrying the reason; the usual answer is to stop.

use std::cell::RefCell;
use std::fmt;
use std::sync::Once;

use actix::prelude::*;
use serde::de::DeserializeOwned;

use super::monitors::Reason;
use super::node::Node;
use super::port::PortId;
use super::registry::PortTarget;
use crate::error::SendError;
use crate::wire::{Packet, TaggedError};

/// Told to an actor port's actor when its port was killed — by
/// [`Node::kil`], a remote node's `["", "kil", …]` (Kernel.pm 586–590) or
/// the node's shutdown. The port is already gone and its monitors have
/// fired; the actor usually stops:
///
/// ```
/// use actix::prelude::*;
/// use aemp::PortKilled;
/// struct Worker;
/// impl Actor for Worker { type Context = Context<Self>; }
/// impl Handler<PortKilled> for Worker {
///     type Result = ();
///     fn handle(&mut self, _: PortKilled, ctx: &mut Context<Self>) {
///         ctx.stop();
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PortKilled {
    /// Why the port died (empty: a normal exit).
    pub reason: Reason,
}

impl Message for PortKilled {
    type Result = ();
}

/// What an actor port's actor learns of its port before it starts: the
/// node and the port's id (the reference's `$SELF`), and how to die with a
/// reason.
#[derive(Clone)]
pub struct ActorPort {
    node: Node,
    port: PortId,
}

impl fmt::Debug for ActorPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorPort")
            .field("port", &self.port)
            .finish()
    }
}

impl ActorPort {
    /// The port's id (`$SELF`).
    pub fn id(&self) -> &PortId {
        &self.port
    }

    /// The node the port lives on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends a message (shorthand for [`Node::snd`]).
    pub fn snd<M: serde::Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<(), SendError> {
        self.node.snd(port, msg)
    }

    /// Kills the port with `reason` and stops the actor: the reference's
    /// `kil $SELF, @reason` from inside the port (MP.pm 597–610). The
    /// port's monitors fire now with `reason` (an empty one is a normal
    /// exit, which kill-form monitors ignore, MP.pm 618); the actor gets no
    /// [`PortKilled`] for it and handles nothing it had not started yet.
    ///
    /// ```
    /// # use actix::prelude::*;
    /// # use aemp::{ActorPort, Packet, PortKilled};
    /// struct Once(ActorPort);
    /// impl Actor for Once { type Context = Context<Self>; }
    /// impl Handler<Packet> for Once {
    ///     type Result = ();
    ///     fn handle(&mut self, _: Packet, ctx: &mut Context<Self>) {
    ///         // one message, then die with a reason monitors see
    ///         self.0.die(ctx, vec!["done".into(), "one message only".into()]);
    ///     }
    /// }
    /// impl Handler<PortKilled> for Once {
    ///     type Result = ();
    ///     fn handle(&mut self, _: PortKilled, ctx: &mut Context<Self>) { ctx.stop() }
    /// }
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (port, _addr) = node.port_actor(|port, _| Once(port));
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// node.mon(&port, move |reason| drop(tx.send(reason))).forget();
    /// node.snd(&port, &("hi",)).unwrap();
    /// assert_eq!(rx.await.unwrap(), vec![serde_json::json!("done"), "one message only".into()]);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn die<A>(&self, ctx: &mut Context<A>, reason: Reason)
    where
        A: Actor<Context = Context<A>>,
    {
        // gone from the registry first: the guard's normal exit finds
        // nothing left to kill
        let inner = self.node.inner();
        if let Some((_, monitors)) = inner.ports.registry().kill(self.port.name()) {
            inner.fire_port_monitors(&self.port, monitors, &reason);
        }
        ctx.stop();
    }
}

thread_local! {
    /// The text of the panic now unwinding on this thread, for the guard of
    /// an actor port whose handler panicked.
    static PANIC_TEXT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Chains a panic hook that remembers the text of each panic on its
/// thread (then runs the previous hook): actix does not catch a handler's
/// panic, so the actor's guard sees only that the thread is panicking.
fn remember_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = super::user_code::panic_text(info.payload());
            PANIC_TEXT.with(|t| *t.borrow_mut() = Some(text));
            previous(info);
        }));
    });
}

/// Lives in the actor's context and kills the port when the context is
/// dropped: the actor stopped (normal exit) or a handler panicked
/// (`("die", text)`).
struct PortGuard {
    port: ActorPort,
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            let text = PANIC_TEXT
                .with(|t| t.borrow_mut().take())
                .unwrap_or_else(|| "actor panicked".to_owned());
            super::handler::die_reason(&text)
        } else {
            Vec::new()
        };
        let inner = self.port.node.inner();
        tracing::debug!(node = %inner.id, port = %self.port.port, ?reason, "actor of port ended");
        // killed already (die, kil, shutdown): nothing left to do
        if let Some((_, monitors)) = inner.ports.registry().kill(self.port.port.name()) {
            inner.fire_port_monitors(&self.port.port, monitors, &reason);
        }
    }
}

/// How the port's messages reach the actor.
pub(crate) type DeliverFn = Box<dyn Fn(Packet) + Send + Sync>;

impl Node {
    /// Creates a port with a fresh id and starts the actix actor `make`
    /// builds for it; `make` gets the port (its id, its node) and the
    /// actor's context before the actor exists, as `Actor::create` does.
    /// Every message to the port goes to the actor's `Handler<Packet>`.
    ///
    /// The port and the actor live and die together: the actor stopping
    /// kills the port with a normal exit, a panic in a handler with
    /// `("die", text)` (as a Perl port whose callback dies, MP.pm 414),
    /// [`ActorPort::die`] with its reason; a kil of the port from anywhere
    /// reaches the actor as [`PortKilled`].
    ///
    /// ```
    /// use actix::prelude::*;
    /// use aemp::{ActorPort, Packet, PortId, PortKilled};
    ///
    /// /// Answers ["ping", reply_port] with ["pong", its own port id].
    /// struct Pong(ActorPort);
    /// impl Actor for Pong { type Context = Context<Self>; }
    /// impl Handler<Packet> for Pong {
    ///     type Result = ();
    ///     fn handle(&mut self, msg: Packet, _: &mut Context<Self>) {
    ///         if let Ok((_, reply)) = msg.decode::<(String, PortId)>() {
    ///             let _ = self.0.snd(&reply, &("pong", self.0.id()));
    ///         }
    ///     }
    /// }
    /// impl Handler<PortKilled> for Pong {
    ///     type Result = ();
    ///     fn handle(&mut self, _: PortKilled, ctx: &mut Context<Self>) { ctx.stop() }
    /// }
    ///
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (pong, _addr) = node.port_actor(|port, _ctx| Pong(port));
    /// let (inbox, mut rx) = node.port_channel();
    /// node.snd(&pong, &("ping", &inbox)).unwrap();
    /// let (_, id): (String, PortId) = rx.recv().await.unwrap().decode().unwrap();
    /// assert_eq!(id, pong);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn port_actor<A, F>(&self, make: F) -> (PortId, Addr<A>)
    where
        A: Actor<Context = Context<A>> + Handler<Packet> + Handler<PortKilled>,
        F: FnOnce(ActorPort, &mut Context<A>) -> A,
    {
        self.actor_port_with(make, |addr| {
            let packets = addr.clone().recipient::<Packet>();
            Box::new(move |packet| packets.do_send(packet))
        })
    }

    /// Like [`Node::port_actor`], with typed messages: a message whose tag
    /// is a variant of `E` (see [`crate::Tagged`]: variant name or
    /// `#[serde(rename)]` = tag, fields = the rest) goes to the actor's
    /// `Handler<E>`; anything else — an unknown tag, a known tag whose
    /// fields do not decode, no tag — to its `Handler<Packet>`, whole, as
    /// a Perl port's default callback gets it (MP.pm 429–434).
    /// A typed message does not carry its source node; a handler that
    /// needs `$SRCNODE` reads [`Packet::src_node`] in `Handler<Packet>`.
    ///
    /// ```
    /// use actix::prelude::*;
    /// use aemp::{ActorPort, Packet, PortId, PortKilled};
    ///
    /// #[derive(serde::Deserialize, Message)]
    /// #[rtype(result = "()")]
    /// enum Calc {
    ///     #[serde(rename = "add")]
    ///     Add(PortId, i64, i64),
    /// }
    ///
    /// struct Calculator(ActorPort);
    /// impl Actor for Calculator { type Context = Context<Self>; }
    /// impl Handler<Calc> for Calculator {
    ///     type Result = ();
    ///     fn handle(&mut self, Calc::Add(reply, a, b): Calc, _: &mut Context<Self>) {
    ///         let _ = self.0.snd(&reply, &("sum", a + b));
    ///     }
    /// }
    /// impl Handler<Packet> for Calculator {
    ///     type Result = ();
    ///     fn handle(&mut self, msg: Packet, _: &mut Context<Self>) {
    ///         // the default: unknown tags, undecodable messages
    ///         let _ = msg;
    ///     }
    /// }
    /// impl Handler<PortKilled> for Calculator {
    ///     type Result = ();
    ///     fn handle(&mut self, _: PortKilled, ctx: &mut Context<Self>) { ctx.stop() }
    /// }
    ///
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (calc, _) = node.port_actor_typed::<Calc, _, _>(|port, _| Calculator(port));
    /// let (inbox, mut rx) = node.port_channel();
    /// node.snd(&calc, &("mul", &inbox, 2, 3)).unwrap(); // to Handler<Packet>
    /// node.snd(&calc, &("add", &inbox, 2, 3)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().decode::<(String, i64)>().unwrap().1, 5);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn port_actor_typed<E, A, F>(&self, make: F) -> (PortId, Addr<A>)
    where
        E: DeserializeOwned + Message<Result = ()> + Send + 'static,
        A: Actor<Context = Context<A>> + Handler<Packet> + Handler<PortKilled> + Handler<E>,
        F: FnOnce(ActorPort, &mut Context<A>) -> A,
    {
        self.actor_port_with(make, |addr| {
            let typed = addr.clone().recipient::<E>();
            let packets = addr.clone().recipient::<Packet>();
            Box::new(move |packet: Packet| {
                let decoded: Result<E, TaggedError> = packet.decode_tagged::<E>();
                match decoded {
                    Ok(msg) => typed.do_send(msg),
                    Err(_) => packets.do_send(packet),
                }
            })
        })
    }

    /// Reserves a port, builds and starts the actor with its guard, and
    /// gives the port the actor as its target.
    fn actor_port_with<A, F>(
        &self,
        make: F,
        deliver: impl FnOnce(&Addr<A>) -> DeliverFn,
    ) -> (PortId, Addr<A>)
    where
        A: Actor<Context = Context<A>> + Handler<Packet> + Handler<PortKilled>,
        F: FnOnce(ActorPort, &mut Context<A>) -> A,
    {
        remember_panics();
        let name = self.reserve_port_name();
        let port = ActorPort {
            node: self.clone(),
            port: PortId::new(self.id(), &name),
        };
        let id = port.port.clone();
        let addr = A::create(move |ctx| {
            let guard = PortGuard { port: port.clone() };
            // the guard lives as long as the context: dropped when the
            // actor stops or a handler's panic unwinds the context
            ctx.spawn(actix::fut::wrap_future(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            }));
            make(port, ctx)
        });
        let target = PortTarget::ActorPort {
            deliver: deliver(&addr),
            killed: addr.clone().recipient(),
        };
        self.inner()
            .ports
            .registry()
            .complete_pending(&name, target);
        (id, addr)
    }

    /// A fresh port name, reserved in the registry by a pending entry
    /// (messages to it wait until the target is in place).
    pub(crate) fn reserve_port_name(&self) -> String {
        loop {
            let name = self.inner().ports.new_port_name();
            let reserved = PortTarget::pending(None);
            if self
                .inner()
                .ports
                .registry()
                .insert_new(&name, reserved)
                .is_ok()
            {
                return name;
            }
        }
    }
}

//! Tag dispatch: the reference's `rcv` (MP.pm 330–450).
//!
//! Every handler port (made by [`Node::port_fn`], [`Node::port_bare`],
//! [`Node::port_rcv`] or an init function returning a handler) has a
//! table of callbacks per *tag* — the message's first element compared as
//! a string ([`Packet::tag`]) — and a *default* callback. A message whose
//! tag has a callback goes to that callback without its tag
//! ([`Packet::without_tag`]); every other message goes to the default,
//! whole (MP.pm 417–423). Tags can be added, replaced and removed at any
//! time, from the port's own callbacks ([`PortContext::rcv`]) or from
//! outside ([`Node::rcv`]); the default can only be replaced (MP.pm
//! 352–354).
//!
//! The default is one of three things:
//! * a port made without any callback ([`Node::port_bare`], Perl's `port`
//!   with no block, MP.pm 337–345) is killed by a message no tag matches,
//!   with `("die", NO_CALLBACK)`;
//! * a port whose behaviour names only tags ([`Rcv`] without
//!   [`Rcv::default`], e.g. a spawned port) ignores such messages (MP.pm
//!   424: `$PORT{$portid} || sub { }`) and is never killed by one;
//! * a callback, given the whole message, tag included.
//!
//! A callback (tag or default) that returns an error or panics kills its
//! port with `("die", text)`. Unlike Perl, which runs a default installed
//! after the first tag outside its `eval` (MP.pm 414/433), a failing
//! default kills the port too.
//!
//! Callbacks run one message at a time per port, on the node's port
//! runner (`port_runner.rs`). While a callback runs it is out of the
//! table, so it may add, replace or remove any tag, its own included,
//! without deadlock: a callback that removed or replaced itself is not
//! put back.
//!
//! A callback may be *async* ([`Rcv::tag_async`], [`Node::port_async`],
//! …): it returns a future, which the port runs to its end before it
//! takes the next message, so messages keep their order while a callback
//! awaits (a [`Node::cal`], a timer). The callback itself is back in the
//! table once it has made its future; the future's error or panic kills
//! the port as a callback's would. When the port dies — killed from
//! anywhere, or by its own failure — a future still running is dropped at
//! its next await, and the futures of messages still queued are never
//! polled.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;

use parking_lot::Mutex;

use super::handler::{AsyncHandlerFn, HandlerError, HandlerFn, PortContext};
use super::node::Node;
use super::port::{PortId, split_port};
use super::port_runner::PortCell;
use super::registry::Lookup;
use crate::error::RcvError;
use crate::wire::Packet;

/// The text a port made without any callback dies with when a message
/// arrives that no tag matches (MP.pm 338; Perl appends
/// ` at …/MP.pm line 338.`, so compare by prefix).
pub const NO_CALLBACK: &str = "received message on port without callback";

/// A callback of a handler port: run to its end at once, or making a
/// future the port runs before its next message.
pub(crate) enum Callback {
    /// Done when it returns.
    Sync(HandlerFn),
    /// Done when its future is.
    Async(AsyncHandlerFn),
}

impl Callback {
    /// A synchronous callback.
    pub(crate) fn sync(
        f: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> Callback {
        Callback::Sync(Box::new(f))
    }

    /// An async callback: `f` makes the future the port runs.
    pub(crate) fn of_async<F, Fut>(mut f: F) -> Callback
    where
        F: FnMut(PortContext, Packet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        Callback::Async(Box::new(move |ctx, packet| Box::pin(f(ctx, packet))))
    }

    /// Hands `packet` to the callback.
    fn call(&mut self, ctx: &PortContext, packet: Packet) -> Outcome {
        match self {
            Callback::Sync(f) => Outcome::Done(super::user_code::for_port(|| f(ctx, packet))),
            Callback::Async(f) => match super::user_code::run(|| f(ctx.clone(), packet)) {
                Ok(future) => Outcome::Wait(future),
                Err(panic) => Outcome::Done(Err(panic)),
            },
        }
    }
}

/// What handing a message to its callback gave.
pub(crate) enum Outcome {
    /// Handled; the text of the failure that kills the port, if any.
    Done(Result<(), String>),
    /// An async callback's future, to run before the next message (see
    /// `user_code::for_port_async`).
    Wait(LocalBoxFuture<'static, Result<(), HandlerError>>),
}

/// What a handler port does with a message no tag matches.
pub(crate) enum DefaultCb {
    /// Nothing (a port whose behaviour named only tags).
    Ignore,
    /// Die with [`NO_CALLBACK`] (a port made without any callback).
    Kill,
    /// Call this (taken out while it runs).
    Call(Option<Callback>),
}

/// One tag's callback, with the generation it was registered in (to tell
/// a callback that replaced itself while running from one that did not).
struct TagSlot {
    generation: u64,
    callback: Option<Callback>,
}

/// A handler port's callbacks.
pub(crate) struct Dispatch {
    default: DefaultCb,
    default_generation: u64,
    /// Made with the first tag: most ports have none, and an empty table
    /// with its hasher's keys is 64 bytes, a boxed one a pointer.
    #[expect(
        clippy::box_collection,
        reason = "a port without tags costs 8 bytes, not 64"
    )]
    tags: Option<Box<HashMap<String, TagSlot, ahash::RandomState>>>,
    next_generation: u64,
}

impl Dispatch {
    /// No tags, and `default` for every message.
    pub(crate) fn new(default: DefaultCb) -> Dispatch {
        Dispatch {
            default,
            default_generation: 0,
            tags: None,
            next_generation: 1,
        }
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Registers (or replaces) the callback of `tag`.
    pub(crate) fn set_tag(&mut self, tag: String, callback: Callback) {
        let generation = self.generation();
        self.tags.get_or_insert_default().insert(
            tag,
            TagSlot {
                generation,
                callback: Some(callback),
            },
        );
    }

    /// Removes the callback of `tag`; whether there was one.
    pub(crate) fn remove_tag(&mut self, tag: &str) -> bool {
        self.tags
            .as_mut()
            .is_some_and(|tags| tags.remove(tag).is_some())
    }

    /// Replaces the default.
    pub(crate) fn set_default(&mut self, default: DefaultCb) {
        self.default_generation = self.generation();
        self.default = default;
    }

    /// Whether any callback is set (a tag, or a default other than
    /// ignoring).
    pub(crate) fn has_callbacks(&self) -> bool {
        self.tags.as_ref().is_some_and(|tags| !tags.is_empty())
            || !matches!(self.default, DefaultCb::Ignore)
    }

    /// Adds what a [`Rcv`] names: its tags, and its default if it has one.
    pub(crate) fn merge(&mut self, rcv: Rcv) {
        for (tag, callback) in rcv.tags {
            self.set_tag(tag, callback);
        }
        if let Some(default) = rcv.default {
            self.set_default(DefaultCb::Call(Some(default)));
        }
    }
}

/// Hands one message to the callback it is for.
pub(crate) fn dispatch(ctx: &PortContext, packet: Packet) -> Outcome {
    let table = ctx.dispatch();
    let mut t = table.lock();
    if let Some(tags) = t.tags.as_mut()
        && !tags.is_empty()
        && let Some(tag) = packet.tag()
        && let Some(slot) = tags.get_mut(&*tag)
        && let Some(mut callback) = slot.callback.take()
    {
        let generation = slot.generation;
        let tag = tag.into_owned();
        drop(t);
        // a message with a tag has a first element to strip
        let rest = packet.without_tag().unwrap_or(packet);
        let outcome = callback.call(ctx, rest);
        let mut t = table.lock();
        if let Some(slot) = t.tags.as_mut().and_then(|tags| tags.get_mut(&tag))
            && slot.generation == generation
            && slot.callback.is_none()
        {
            slot.callback = Some(callback);
        }
        return outcome;
    }
    let generation = t.default_generation;
    let mut callback = match &mut t.default {
        DefaultCb::Ignore => return Outcome::Done(Ok(())),
        DefaultCb::Kill => return Outcome::Done(Err(NO_CALLBACK.to_owned())),
        DefaultCb::Call(slot) => match slot.take() {
            Some(callback) => callback,
            // only while it runs, and callbacks run one at a time
            None => return Outcome::Done(Ok(())),
        },
    };
    drop(t);
    let outcome = callback.call(ctx, packet);
    let mut t = table.lock();
    if t.default_generation == generation
        && let DefaultCb::Call(slot @ None) = &mut t.default
    {
        *slot = Some(callback);
    }
    outcome
}

/// A port's callbacks by tag, and optionally a default: the behaviour of
/// Perl's `rcv $port, tag => sub { … }, …` (MP.pm 372–383). Create a port
/// with it ([`Node::port_rcv`]) or return it from an init function
/// ([`PortBehaviour::rcv`](crate::PortBehaviour::rcv)).
///
/// Without [`Rcv::default`], messages no tag matches are ignored (MP.pm
/// 424), so such a port never dies of an unknown tag.
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// use aemp::Rcv;
/// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
/// let (out, mut rx) = node.port_channel();
/// let o = out.clone();
/// let calc = node.port_rcv(
///     Rcv::new()
///         .tag("add", move |ctx, msg| {
///             let (a, b): (i64, i64) = msg.decode()?; // the tag is gone
///             ctx.snd(&o, &("sum", a + b))?;
///             Ok(())
///         })
///         .default(move |ctx, msg| {
///             ctx.snd(&out, &("unknown", msg.values()?))?; // tag included
///             Ok(())
///         }),
/// );
/// node.snd(&calc, &("add", 2, 3)).unwrap();
/// node.snd(&calc, &("mul", 2, 3)).unwrap();
/// let a: (String, i64) = rx.recv().await.unwrap().decode().unwrap();
/// assert_eq!(a, ("sum".to_owned(), 5));
/// let b: (String, serde_json::Value) = rx.recv().await.unwrap().decode().unwrap();
/// assert_eq!(b.1, serde_json::json!(["mul", 2, 3]));
/// # node.shutdown();
/// # });
/// ```
pub struct Rcv {
    tags: Vec<(String, Callback)>,
    default: Option<Callback>,
}

impl fmt::Debug for Rcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rcv")
            .field(
                "tags",
                &self.tags.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl Default for Rcv {
    fn default() -> Rcv {
        Rcv::new()
    }
}

impl Rcv {
    /// No tags, and messages ignored.
    pub fn new() -> Rcv {
        Rcv {
            tags: Vec::new(),
            default: None,
        }
    }

    /// Adds (or replaces) the callback for messages whose first element
    /// is `tag`; it gets the message without the tag (MP.pm 418–419).
    pub fn tag(
        self,
        tag: impl Into<String>,
        callback: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> Rcv {
        self.with_tag(tag.into(), Callback::sync(callback))
    }

    /// Like [`Rcv::tag`], with an async callback: the port runs the future
    /// it makes to its end before it takes its next message, so messages
    /// keep their order while the callback awaits (see
    /// [`Rcv`]). Its error or panic kills the port with `("die",
    /// text)`.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// use aemp::Rcv;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let square = node.port_fn(|ctx, msg| {
    ///     let (n, reply): (i64, String) = msg.decode()?; // cal appends the reply port
    ///     Ok(ctx.snd(&reply, &(n * n,))?)
    /// });
    /// let (out, mut rx) = node.port_channel();
    /// let asker = node.port_rcv(Rcv::new().tag_async("ask", move |ctx, msg| {
    ///     let (square, out) = (square.clone(), out.clone());
    ///     async move {
    ///         let (n,): (i64,) = msg.decode()?;
    ///         // awaits the answer; the next "ask" waits for this one
    ///         let answer = ctx.node().cal(&square, &(n,), Some(Duration::from_secs(5))).await?;
    ///         ctx.snd(&out, &(n, answer.decode::<(i64,)>()?.0))?;
    ///         Ok(())
    ///     }
    /// }));
    /// for n in 1..=3 {
    ///     node.snd(&asker, &("ask", n)).unwrap();
    /// }
    /// for n in 1..=3 {
    ///     assert_eq!(rx.recv().await.unwrap().decode::<(i64, i64)>().unwrap(), (n, n * n));
    /// }
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn tag_async<F, Fut>(self, tag: impl Into<String>, callback: F) -> Rcv
    where
        F: FnMut(PortContext, Packet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        self.with_tag(tag.into(), Callback::of_async(callback))
    }

    fn with_tag(mut self, tag: String, callback: Callback) -> Rcv {
        self.tags.retain(|(t, _)| *t != tag);
        self.tags.push((tag, callback));
        self
    }

    /// Sets the callback for messages no tag matches; it gets the whole
    /// message, tag included (MP.pm 421–423).
    pub fn default(
        mut self,
        callback: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> Rcv {
        self.default = Some(Callback::sync(callback));
        self
    }

    /// Like [`Rcv::default`], with an async callback (see
    /// [`Rcv::tag_async`]).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let slow = node.port_rcv(aemp::Rcv::new().default_async(move |ctx, msg| {
    ///     let out = out.clone();
    ///     async move {
    ///         tokio::time::sleep(Duration::from_millis(5)).await;
    ///         Ok(ctx.snd(&out, &msg.values()?)?)
    ///     }
    /// }));
    /// node.snd(&slow, &("a",)).unwrap();
    /// node.snd(&slow, &("b",)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().tag().as_deref(), Some("a"));
    /// assert_eq!(rx.recv().await.unwrap().tag().as_deref(), Some("b"));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn default_async<F, Fut>(mut self, callback: F) -> Rcv
    where
        F: FnMut(PortContext, Packet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        self.default = Some(Callback::of_async(callback));
        self
    }
}

impl Rcv {
    /// Adds a callback for every tag of the typed message `E` (an enum,
    /// see [`Tagged`](crate::Tagged)): each message whose tag names a
    /// variant is decoded and handed over as an `E`; a message whose tag
    /// names none goes to the default, whole (so with no default it is
    /// ignored). A message whose fields do not fit its variant kills the
    /// port with `("die", text)`, like any failing callback.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use aemp::{Rcv, Tagged};
    /// use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// enum Calc { #[serde(rename = "add")] Add(i64, i64), #[serde(rename = "neg")] Neg(i64) }
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// enum Answer { #[serde(rename = "result")] Result(i64), #[serde(rename = "huh")] Huh(serde_json::Value) }
    ///
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let o = out.clone();
    /// let calc = node.port_rcv(
    ///     Rcv::new()
    ///         .typed(move |ctx, m: Calc| {
    ///             let r = match m { Calc::Add(a, b) => a + b, Calc::Neg(a) => -a };
    ///             ctx.snd(&o, &Tagged(Answer::Result(r)))?;
    ///             Ok(())
    ///         })
    ///         .default(move |ctx, msg| Ok(ctx.snd(&out, &Tagged(Answer::Huh(msg.values()?.into())))?)),
    /// );
    /// node.snd(&calc, &Tagged(Calc::Add(2, 3))).unwrap();
    /// node.snd(&calc, &("mul", 2, 3)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().decode_tagged::<Answer>().unwrap(), Answer::Result(5));
    /// assert_eq!(
    ///     rx.recv().await.unwrap().decode_tagged::<Answer>().unwrap(),
    ///     Answer::Huh(serde_json::json!(["mul", 2, 3]))
    /// );
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn typed<E>(
        mut self,
        callback: impl FnMut(&PortContext, E) -> Result<(), HandlerError> + Send + 'static,
    ) -> Rcv
    where
        E: serde::de::DeserializeOwned + 'static,
    {
        let callback = Arc::new(Mutex::new(callback));
        for tag in crate::wire::tags_of::<E>() {
            let callback = callback.clone();
            self = self.tag(*tag, move |ctx, rest| {
                let msg = rest.decode_untagged::<E>(tag)?;
                (callback.lock())(ctx, msg)
            });
        }
        self
    }
}

impl PortContext {
    /// Registers (or replaces) the callback for `tag` on this port (Perl's
    /// `rcv $SELF, tag => sub { … }`, MP.pm 436–447); it gets the message
    /// without its tag. Works from the port's own callbacks (a callback
    /// may replace or remove itself) and from its init function.
    ///
    /// The temporary reply tag (MP.pm 393–397): register a one-off tag,
    /// send a request naming it, and remove it when the reply comes.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use aemp::Rcv;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// // a server answering ["ping", reply_port, reply_tag, n] with [reply_tag, n + 1]
    /// let server = node.port_rcv(Rcv::new().tag("ping", |ctx, msg| {
    ///     let (port, tag, n): (String, String, i64) = msg.decode()?;
    ///     ctx.snd(&port, &(tag, n + 1))?;
    ///     Ok(())
    /// }));
    /// let (out, mut rx) = node.port_channel();
    /// let client = node.port_rcv(Rcv::new().tag("ask", move |ctx, msg| {
    ///     let (n,): (i64,) = msg.decode()?;
    ///     let reply_tag = format!("reply.{n}");
    ///     let out = out.clone();
    ///     ctx.rcv(reply_tag.clone(), move |ctx, reply| {
    ///         let (m,): (i64,) = reply.decode()?;
    ///         ctx.unrcv(&reply_tag); // one-off: remove itself
    ///         ctx.snd(&out, &(m,))?;
    ///         Ok(())
    ///     });
    ///     ctx.snd(&server, &("ping", ctx.port(), format!("reply.{n}"), n))?;
    ///     Ok(())
    /// }));
    /// node.snd(&client, &("ask", 41)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().decode::<(i64,)>().unwrap(), (42,));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn rcv(
        &self,
        tag: impl Into<String>,
        callback: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) {
        self.dispatch()
            .lock()
            .set_tag(tag.into(), Callback::sync(callback));
    }

    /// Like [`PortContext::rcv`], with an async callback (see
    /// [`Rcv::tag_async`]).
    pub fn rcv_async<F, Fut>(&self, tag: impl Into<String>, callback: F)
    where
        F: FnMut(PortContext, Packet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        self.dispatch()
            .lock()
            .set_tag(tag.into(), Callback::of_async(callback));
    }

    /// Removes the callback for `tag` on this port (Perl's
    /// `rcv $SELF, $tag`, MP.pm 448–449); whether there was one. Messages
    /// with that tag go to the default from now on.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let once = node.port_rcv(aemp::Rcv::new().tag("once", move |ctx, _| {
    ///     ctx.snd(&out, &(ctx.unrcv("once"), ctx.unrcv("once")))?;
    ///     Ok(())
    /// }));
    /// node.snd(&once, &("once",)).unwrap();
    /// node.snd(&once, &("once",)).unwrap(); // ignored: no tag, no default
    /// let removed: (bool, bool) = rx.recv().await.unwrap().decode().unwrap();
    /// assert_eq!(removed, (true, false));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn unrcv(&self, tag: &str) -> bool {
        self.dispatch().lock().remove_tag(tag)
    }

    /// Replaces this port's default callback (Perl's `rcv $SELF, sub { … }`,
    /// MP.pm 352–354): it gets every message no tag matches, whole.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let p = node.port_fn(move |ctx, _| {
    ///     let out = out.clone();
    ///     ctx.rcv_default(move |ctx, msg| Ok(ctx.snd(&out, &msg.values()?)?));
    ///     Ok(())
    /// });
    /// node.snd(&p, &("first",)).unwrap(); // swaps the default
    /// node.snd(&p, &("second",)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().values().unwrap(), [serde_json::json!("second")]);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn rcv_default(
        &self,
        callback: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) {
        self.dispatch()
            .lock()
            .set_default(DefaultCb::Call(Some(Callback::sync(callback))));
    }
}

impl Node {
    /// Creates a port without any callback, Perl's `port` with no block
    /// (MP.pm 337–345): give it tags with [`Node::rcv`]; a message no tag
    /// matches kills it with `("die", NO_CALLBACK)`.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let port = node.port_bare();
    /// node.rcv(&port, "hello", move |ctx, msg| {
    ///     ctx.snd(&out, &msg.values()?)?;
    ///     Ok(())
    /// })
    /// .unwrap();
    /// node.snd(&port, &("hello", "world")).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().values().unwrap(), [serde_json::json!("world")]);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn port_bare(&self) -> PortId {
        self.handler_port(Dispatch::new(DefaultCb::Kill))
    }

    /// Creates a port with the callbacks of `rcv` (Perl's
    /// `rcv port, tag => sub { … }, …`, MP.pm 372–383, except that without
    /// [`Rcv::default`] unmatched messages are ignored rather than
    /// killing the port; use [`Node::port_bare`] and [`Node::rcv`] for
    /// Perl's exact behaviour). See [`Rcv`] for an example.
    pub fn port_rcv(&self, rcv: Rcv) -> PortId {
        let mut dispatch = Dispatch::new(DefaultCb::Ignore);
        dispatch.merge(rcv);
        self.handler_port(dispatch)
    }

    /// Registers (or replaces) the callback for `tag` on the local handler
    /// port `port`, from outside it (Perl's `rcv $port, tag => sub { … }`,
    /// MP.pm 436–447). A port made by [`Node::port_fn`] keeps its handler
    /// as the default. Fails for ports of other nodes and ports whose
    /// messages go to an actor or a channel.
    ///
    /// A port spawned on this node whose init function has not returned
    /// yet takes the callback too (in Perl a local spawn's init has run
    /// when `spawn` returns): it goes into the table the init fills
    /// through its context; tags of the [`Rcv`] the init returns are
    /// added over it when the init returns.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let o = out.clone();
    /// let p = node.port_fn(move |ctx, msg| Ok(ctx.snd(&o, &("default", msg.values()?))?));
    /// node.rcv(&p, "t", move |ctx, msg| Ok(ctx.snd(&out, &("t", msg.values()?))?)).unwrap();
    /// node.snd(&p, &("t", 1)).unwrap();
    /// let (which, _): (String, serde_json::Value) = rx.recv().await.unwrap().decode().unwrap();
    /// assert_eq!(which, "t");
    /// node.unrcv(&p, "t").unwrap();
    /// node.snd(&p, &("t", 1)).unwrap();
    /// let (which, _): (String, serde_json::Value) = rx.recv().await.unwrap().decode().unwrap();
    /// assert_eq!(which, "default");
    /// assert!(node.rcv(&"other#p".into(), "t", |_, _| Ok(())).is_err());
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn rcv(
        &self,
        port: &PortId,
        tag: impl Into<String>,
        callback: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> Result<(), RcvError> {
        self.dispatch_of(port)?
            .dispatch()
            .lock()
            .set_tag(tag.into(), Callback::sync(callback));
        Ok(())
    }

    /// Like [`Node::rcv`], with an async callback (see [`Rcv::tag_async`]).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let port = node.port_bare();
    /// node.rcv_async(&port, "later", move |ctx, msg| {
    ///     let out = out.clone();
    ///     async move {
    ///         tokio::task::yield_now().await;
    ///         Ok(ctx.snd(&out, &msg.values()?)?)
    ///     }
    /// })
    /// .unwrap();
    /// node.snd(&port, &("later", 7)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().values().unwrap(), [serde_json::json!(7)]);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn rcv_async<F, Fut>(
        &self,
        port: &PortId,
        tag: impl Into<String>,
        callback: F,
    ) -> Result<(), RcvError>
    where
        F: FnMut(PortContext, Packet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        self.dispatch_of(port)?
            .dispatch()
            .lock()
            .set_tag(tag.into(), Callback::of_async(callback));
        Ok(())
    }

    /// Removes the callback for `tag` on the local handler port `port`
    /// (Perl's `rcv $port, $tag`, MP.pm 448–449); whether there was one.
    /// See [`Node::rcv`].
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let p = node.port_rcv(aemp::Rcv::new().tag("t", |_, _| Ok(())));
    /// assert_eq!(node.unrcv(&p, "t"), Ok(true));
    /// assert_eq!(node.unrcv(&p, "t"), Ok(false));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn unrcv(&self, port: &PortId, tag: &str) -> Result<bool, RcvError> {
        Ok(self.dispatch_of(port)?.dispatch().lock().remove_tag(tag))
    }

    /// Replaces the default callback of the local handler port `port`
    /// (Perl's `rcv $port, sub { … }`, MP.pm 352–354; there is no way to
    /// remove it, as in Perl). See [`Node::rcv`].
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let p = node.port_bare(); // would die of an unmatched message
    /// node.rcv_default(&p, move |ctx, msg| Ok(ctx.snd(&out, &msg.values()?)?)).unwrap();
    /// node.snd(&p, &("any", 1)).unwrap();
    /// assert_eq!(rx.recv().await.unwrap().values().unwrap().len(), 2);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn rcv_default(
        &self,
        port: &PortId,
        callback: impl FnMut(&PortContext, Packet) -> Result<(), HandlerError> + Send + 'static,
    ) -> Result<(), RcvError> {
        self.dispatch_of(port)?
            .dispatch()
            .lock()
            .set_default(DefaultCb::Call(Some(Callback::sync(callback))));
        Ok(())
    }

    /// The state (with the callback table) of local handler port `port`.
    fn dispatch_of(&self, port: &PortId) -> Result<Arc<PortCell>, RcvError> {
        let (node, name) = split_port(port.as_str());
        if node != self.id() {
            return Err(RcvError::NotLocal(port.to_string()));
        }
        match self.inner().ports.registry().dispatch_of(name) {
            Lookup::Found(cell) => Ok(cell),
            Lookup::Missing => Err(RcvError::NoSuchPort(port.to_string())),
            Lookup::NotHandler => Err(RcvError::NotMatching(port.to_string())),
            Lookup::Pending => Err(RcvError::Pending(port.to_string())),
        }
    }
}

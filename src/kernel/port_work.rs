//! Work bound to a port, as Perl writes it: `psub`/`peval` (code run with
//! `$SELF` set, whose failure kills that port, MP.pm 478–531),
//! `mon_guard` (resources freed when a port dies, MP.pm 646–652) and
//! `after` (a plain one-shot timer, MP.pm 762–771).
//!
//! And work a port starts, which runs in its context: tasks, timers and
//! intervals ([`PortContext::spawn`], [`PortContext::after`],
//! [`PortContext::interval`]), whose failure or panic kills the port as
//! its callbacks' would. As in Perl, a port's death by itself stops none of
//! them; the `_linked` variants ([`PortContext::spawn_linked`], …), an
//! aemp addition, are also cancelled when the port dies.
//!
//! Every handle here ([`Task`]) is not a guard: dropping it leaves the work
//! running, [`Task::cancel`] stops it.

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::handler::{HandlerError, PortContext};
use super::monitor::Monitor;
use super::node::Node;
use super::port::PortId;
use super::registry::Lookup;

/// The reason a failure in port code kills its port with: `("die",
/// text)`, as the reference's `_self_die` (MP.pm 171–175).
fn die_reason(text: String) -> Vec<Value> {
    vec![json!("die"), Value::String(text)]
}

/// Runs `f` for `ctx`'s port: its value, or — after killing the port with
/// `("die", text)` for an error or a panic — `None`.
fn run_for<R>(
    ctx: &PortContext,
    f: impl FnOnce(&PortContext) -> Result<R, HandlerError>,
) -> Option<R> {
    match super::user_code::for_port(|| f(ctx)) {
        Ok(r) => Some(r),
        Err(text) => {
            tracing::debug!(node = ctx.node().id(), port = %ctx.port(), %text, "port code failed");
            ctx.kil(die_reason(text));
            None
        }
    }
}

/// A timer or task: started by [`Node::after`], [`Node::after_fn`], or for
/// a port by [`PortContext::spawn`], [`PortContext::after`],
/// [`PortContext::interval`] and their `_linked` variants.
///
/// Not a guard: as in Perl, whose `after` keeps its own timer alive
/// (MP.pm 762–771), dropping the handle leaves the work running;
/// [`Task::cancel`] stops it.
#[derive(Debug, Clone)]
pub struct Task(CancellationToken);

impl Task {
    /// Stops the work: a timer that has not fired does not fire, a task or
    /// interval is dropped at its next await.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether the work was cancelled ([`Task::cancel`], or the death of
    /// its port for linked work).
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl PortContext {
    /// Perl's `psub { … }` (MP.pm 493–531): wraps `f` into a closure that
    /// runs it for this port (`$SELF` = [`PortContext::port`]) wherever it
    /// is called later — from a timer, a task, another port's callback.
    /// An error or panic in `f` kills this port with `("die", text)` and
    /// the closure returns `None`; otherwise `Some` of `f`'s value. (Perl
    /// croaks when `psub` is called outside a port; here it needs a
    /// context, so that cannot happen.)
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let port = node.port_fn(move |ctx, _| {
    ///     // the reference's delayed-reply idiom: a timer callback in the port's context
    ///     let mut later = ctx.psub(|_ctx, ()| -> Result<(), aemp::HandlerError> { Err("late failure".into()) });
    ///     tx.send(std::thread::spawn(move || later(()))).unwrap();
    ///     Ok(())
    /// });
    /// let death = node.mon_future(&port);
    /// node.snd(&port, &("go",)).unwrap();
    /// let reason = tokio::time::timeout(Duration::from_secs(5), death).await.unwrap().unwrap();
    /// assert_eq!(reason, vec![serde_json::json!("die"), serde_json::json!("late failure")]);
    /// assert_eq!(rx.recv().unwrap().join().unwrap(), None);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn psub<A, R>(
        &self,
        mut f: impl FnMut(&PortContext, A) -> Result<R, HandlerError> + Send + 'static,
    ) -> impl FnMut(A) -> Option<R> + Send + 'static {
        let ctx = self.clone();
        move |arg| run_for(&ctx, |c| f(c, arg))
    }

    /// Runs the future `f` makes from this port's context on the node, as
    /// work of this port: its error or panic kills the port with `("die",
    /// text)`. The port's death does not stop it (as in Perl, where a
    /// port's death cancels nothing by itself); see
    /// [`PortContext::spawn_linked`] for work that dies with the port.
    ///
    /// `f` runs on the node's thread, so the future need not be `Send`.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let port = node.port_fn(|ctx, _| {
    ///     ctx.spawn(|ctx| async move {
    ///         let reply = ctx.node().cal("n#nobody", &("hi",), Some(Duration::from_millis(10))).await?;
    ///         ctx.snd(ctx.port(), &reply.values()?)?;
    ///         Ok(())
    ///     });
    ///     Ok(())
    /// });
    /// let death = node.mon_future(&port);
    /// node.snd(&port, &("go",)).unwrap();
    /// // the cal's error (no reply in 10 ms) kills the port
    /// let reason = tokio::time::timeout(Duration::from_secs(5), death).await.unwrap().unwrap();
    /// assert_eq!(reason[0], "die");
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn spawn<F, Fut>(&self, f: F) -> Task
    where
        F: FnOnce(PortContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        self.start(false, f)
    }

    /// Like [`PortContext::spawn`], and the port's death cancels the task
    /// (an aemp addition: Perl has no such tie). A task linked to a port
    /// that is already dead never runs.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (port, _rx) = node.port_channel();
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let task = node.peval(&port, |ctx| Ok(ctx.spawn_linked(move |_| async move {
    ///     let _tx = tx; // dropped when the task ends
    ///     std::future::pending::<()>().await;
    ///     Ok(())
    /// }))).unwrap();
    /// node.kil(&port, vec![]).unwrap();
    /// // the task was cancelled, dropping its sender
    /// assert!(tokio::time::timeout(Duration::from_secs(5), rx).await.unwrap().is_err());
    /// assert!(task.is_cancelled());
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn spawn_linked<F, Fut>(&self, f: F) -> Task
    where
        F: FnOnce(PortContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        self.start(true, f)
    }

    /// Calls `f` once after `delay`, as work of this port (see
    /// [`PortContext::spawn`]): its error or panic kills the port. Unlike
    /// [`Node::after_fn`], which belongs to no port. The port's death does
    /// not stop it; [`PortContext::after_linked`] is stopped by it.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let port = node.port_fn(|ctx, _| {
    ///     // a deadline: no "done" within 20 ms kills the port
    ///     ctx.after(Duration::from_millis(20), |_| Err("no answer in time".into()));
    ///     Ok(())
    /// });
    /// let death = node.mon_future(&port);
    /// node.snd(&port, &("start",)).unwrap();
    /// let reason = tokio::time::timeout(Duration::from_secs(5), death).await.unwrap().unwrap();
    /// assert_eq!(reason, vec![serde_json::json!("die"), serde_json::json!("no answer in time")]);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn after(
        &self,
        delay: Duration,
        f: impl FnOnce(&PortContext) -> Result<(), HandlerError> + Send + 'static,
    ) -> Task {
        self.start(false, move |ctx| after_future(ctx, delay, f))
    }

    /// Like [`PortContext::after`], and the port's death cancels the timer
    /// (an aemp addition).
    pub fn after_linked(
        &self,
        delay: Duration,
        f: impl FnOnce(&PortContext) -> Result<(), HandlerError> + Send + 'static,
    ) -> Task {
        self.start(true, move |ctx| after_future(ctx, delay, f))
    }

    /// Calls `f` every `period` (first after one period), as work of this
    /// port (see [`PortContext::spawn`]), until [`Task::cancel`] or until
    /// `f` fails — then the port dies with `("die", text)` and the interval
    /// ends. Ticks missed while the node was busy are not made up. A zero
    /// period is taken as 1 ms. The port's death does not stop it;
    /// [`PortContext::interval_linked`] is stopped by it.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (out, mut rx) = node.port_channel();
    /// let ticker = node.port_fn(move |ctx, _| {
    ///     let out = out.clone();
    ///     let mut n = 0;
    ///     ctx.interval_linked(Duration::from_millis(5), move |ctx| {
    ///         n += 1;
    ///         ctx.snd(&out, &("tick", n))?;
    ///         Ok(())
    ///     });
    ///     Ok(())
    /// });
    /// node.snd(&ticker, &("start",)).unwrap();
    /// for n in 1..=3 {
    ///     assert_eq!(rx.recv().await.unwrap().decode::<(String, u32)>().unwrap().1, n);
    /// }
    /// node.kil(&ticker, vec![]).unwrap(); // stops the interval
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn interval(
        &self,
        period: Duration,
        f: impl FnMut(&PortContext) -> Result<(), HandlerError> + Send + 'static,
    ) -> Task {
        self.start(false, move |ctx| interval_future(ctx, period, f))
    }

    /// Like [`PortContext::interval`], and the port's death cancels it (an
    /// aemp addition). See [`PortContext::interval`] for an example.
    pub fn interval_linked(
        &self,
        period: Duration,
        f: impl FnMut(&PortContext) -> Result<(), HandlerError> + Send + 'static,
    ) -> Task {
        self.start(true, move |ctx| interval_future(ctx, period, f))
    }

    /// Starts work of this port on the node's thread; `linked`: cancelled
    /// by the port's death too (through a monitor, so any port will do:
    /// local of any kind, or remote).
    fn start<F, Fut>(&self, linked: bool, f: F) -> Task
    where
        F: FnOnce(PortContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + 'static,
    {
        let token = CancellationToken::new();
        // a port already dead fires its monitor now: the task never runs
        let link = linked.then(|| {
            let token = token.clone();
            self.node().mon(self.port(), move |_| token.cancel())
        });
        let cancelled = token.clone();
        let ctx = self.clone();
        let started = self.node().inner().transport.arbiter().spawn_fn(move || {
            actix_rt::spawn(async move {
                // unmonitors when the work ends
                let _link = link;
                if cancelled.is_cancelled() {
                    return;
                }
                let work = match super::user_code::run(|| f(ctx.clone())) {
                    Ok(future) => super::user_code::for_port_async(None, Box::pin(future)),
                    Err(panic) => return fail(&ctx, panic),
                };
                tokio::select! {
                    biased;
                    _ = cancelled.cancelled() => {}
                    result = work => if let Err(text) = result {
                        fail(&ctx, text);
                    }
                }
            });
        });
        if !started {
            tracing::debug!(node = self.node().id(), port = %self.port(), "node arbiter gone; port work not started");
        }
        Task(token)
    }
}

/// Port work failed: the port dies with `("die", text)`.
fn fail(ctx: &PortContext, text: String) {
    tracing::debug!(node = ctx.node().id(), port = %ctx.port(), %text, "port work failed");
    ctx.kil(die_reason(text));
}

/// `f` after `delay`.
async fn after_future(
    ctx: PortContext,
    delay: Duration,
    f: impl FnOnce(&PortContext) -> Result<(), HandlerError>,
) -> Result<(), HandlerError> {
    tokio::time::sleep(delay).await;
    f(&ctx)
}

/// `f` every `period` until it fails.
async fn interval_future(
    ctx: PortContext,
    period: Duration,
    mut f: impl FnMut(&PortContext) -> Result<(), HandlerError>,
) -> Result<(), HandlerError> {
    let period = period.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        f(&ctx)?;
    }
}

impl Node {
    /// Perl's `peval $port, sub { … }` (MP.pm 478–491): runs `f` now with
    /// a context for `port` (`$SELF`); an error or panic kills `port` with
    /// `("die", text)` and gives `None`. `port` may be any port id, as in
    /// Perl: a local handler port's context is its own (its tag callbacks
    /// can be changed through it); for other ports the context only knows
    /// the id, and its `kil` goes through [`Node::kil`] (a remote port is
    /// killed with a `kil` request).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (port, _rx) = node.port_channel();
    /// assert_eq!(node.peval(&port, |ctx| Ok(ctx.port().clone())), Some(port.clone()));
    /// let death = node.mon_future(&port);
    /// assert_eq!(node.peval(&port, |_| -> Result<(), _> { Err("bad".into()) }), None);
    /// let reason = tokio::time::timeout(Duration::from_secs(5), death).await.unwrap().unwrap();
    /// assert_eq!(reason, vec![serde_json::json!("die"), serde_json::json!("bad")]);
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn peval<R>(
        &self,
        port: &PortId,
        f: impl FnOnce(&PortContext) -> Result<R, HandlerError>,
    ) -> Option<R> {
        let ctx = if port.node() == self.id() {
            match self.inner().ports.registry().dispatch_of(port.name()) {
                // a handler port's own context (or a spawning port's)
                Lookup::Found(cell) => PortContext::from_cell(self.clone(), cell),
                _ => PortContext::new(self.clone(), port.clone()),
            }
        } else {
            PortContext::new(self.clone(), port.clone())
        };
        run_for(&ctx, f)
    }

    /// Perl's `mon_guard $port, @refs` (MP.pm 646–652): keeps `value`
    /// until `port` (local or remote, or a bare node id) dies — then drops
    /// it — or until the returned [`Monitor`] is dropped, which also drops
    /// it. [`Monitor::forget`] ties `value` to the port alone. A port
    /// that does not exist drops it at once (its monitor fires at once).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (port, _rx) = node.port_channel();
    /// let resource = Arc::new(());
    /// node.mon_guard(&port, resource.clone()).forget();
    /// assert_eq!(Arc::strong_count(&resource), 2);
    /// let death = node.mon_future(&port);
    /// node.kil(&port, vec![]).unwrap();
    /// tokio::time::timeout(Duration::from_secs(5), death).await.unwrap();
    /// assert_eq!(Arc::strong_count(&resource), 1); // freed with the port
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn mon_guard<T: Send + 'static>(&self, port: impl AsRef<str>, value: T) -> Monitor {
        self.mon(port, move |_| drop(value))
    }

    /// Perl's `after $delay, $port, @msg` (MP.pm 762–771): sends `msg`
    /// (an array) to `port` once, after `delay`, whether or not any port
    /// lives then (a failed send is logged). The message is encoded now.
    /// See [`Task`]: dropping the handle does not cancel.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (port, mut rx) = node.port_channel();
    /// let _ = node.after(Duration::from_millis(10), &port, &("tick", 1)).unwrap();
    /// let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    /// assert_eq!(msg.decode::<(String, u8)>().unwrap(), ("tick".into(), 1));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn after<M: serde::Serialize + ?Sized>(
        &self,
        delay: Duration,
        port: impl AsRef<str>,
        msg: &M,
    ) -> Result<Task, crate::wire::EncodeError> {
        let msg = crate::wire::packet::message_values(msg)?;
        let port = port.as_ref().to_owned();
        let node = self.inner().weak();
        Ok(self.timer(delay, move || {
            let Some(node) = node.upgrade() else { return };
            if let Err(error) = node.snd(&port, &msg) {
                tracing::warn!(node = %node.id, %port, %error, "after: message not sent");
            }
        }))
    }

    /// Perl's `after $delay, $callback` (MP.pm 762–771): calls `callback`
    /// once after `delay` (a panic in it is logged, no port dies). See
    /// [`Task`]: dropping the handle does not cancel.
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let _ = node.after_fn(Duration::from_millis(10), move || { let _ = tx.send("fired"); });
    /// assert_eq!(tokio::time::timeout(Duration::from_secs(5), rx).await.unwrap(), Ok("fired"));
    /// # node.shutdown();
    /// # });
    /// ```
    pub fn after_fn(&self, delay: Duration, callback: impl FnOnce() + Send + 'static) -> Task {
        let id = self.id().to_owned();
        self.timer(delay, move || {
            super::user_code::callback(&id, "an after callback", callback)
        })
    }

    fn timer(&self, delay: Duration, fire: impl FnOnce() + Send + 'static) -> Task {
        let token = CancellationToken::new();
        let cancelled = token.clone();
        let spawned = self.spawn_task(async move {
            tokio::select! {
                _ = cancelled.cancelled() => {}
                _ = tokio::time::sleep(delay) => fire(),
            }
        });
        if !spawned {
            tracing::debug!(
                node = self.id(),
                "node arbiter gone; after timer not started"
            );
        }
        Task(token)
    }
}

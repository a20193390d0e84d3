//! Work bound to a port, as Perl writes it: `psub`/`peval` (code run with
//! `$SELF` set, whose failure kills that port, MP.pm 478–531),
//! `mon_guard` (resources freed when a port dies, MP.pm 646–652) and
//! `after` (a plain one-shot timer, MP.pm 762–771).

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

/// A timer started by [`Node::after`] or [`Node::after_fn`].
///
/// Not a guard: as in Perl, whose `after` keeps its own timer alive
/// (MP.pm 762–771), dropping the handle leaves the timer running;
/// [`After::cancel`] stops it.
#[derive(Debug)]
pub struct After(CancellationToken);

impl After {
    /// Stops the timer if it has not fired yet.
    pub fn cancel(self) {
        self.0.cancel();
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
                Lookup::Found(dispatch) => {
                    PortContext::with_dispatch(self.clone(), port.clone(), dispatch)
                }
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
    /// See [`After`]: dropping the handle does not cancel.
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
    ) -> Result<After, crate::wire::EncodeError> {
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
    /// [`After`]: dropping the handle does not cancel.
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
    pub fn after_fn(&self, delay: Duration, callback: impl FnOnce() + Send + 'static) -> After {
        let id = self.id().to_owned();
        self.timer(delay, move || {
            super::user_code::callback(&id, "an after callback", callback)
        })
    }

    fn timer(&self, delay: Duration, fire: impl FnOnce() + Send + 'static) -> After {
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
        After(token)
    }
}

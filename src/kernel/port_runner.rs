//! The executor of handler ports: one task on the node's arbiter runs the
//! callbacks of every handler port ([`Node::port_fn`], `port_rcv`, init
//! functions returning a handler, …).
//!
//! A handler port is not an actor of its own. It is a [`PortCell`] — its
//! id, its callbacks, its kill flags — and the registry hands its messages
//! to the node's [`Runner`], a channel that one task drains in order. An
//! idle port costs its cell and its registry entry: 334 bytes in all for
//! a spawned one, where an actix actor with its mailbox, context and task
//! made it 896 (`tests/peer_limits.rs`, `memory`), which keeps a peer
//! spawning tens of thousands of workers here cheap.
//!
//! Order is kept per port, as an actor's mailbox keeps it: the runner
//! takes jobs in the order they were sent, and an async callback's future
//! ([`Outcome::Wait`]) holds back its port alone — the port's later jobs
//! wait in its cell's backlog, which the future's own task works off once
//! the future is done (or the port dead), before the port takes jobs from
//! the runner again. Other ports go on meanwhile.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use super::handler::{PortContext, die_reason};
use super::node::{Node, WeakNode};
use super::port::PortId;
use super::rcv::{Dispatch, Outcome};
use super::registry::Control;
use crate::error::HandlerError;
use crate::wire::Packet;

/// How many jobs the runner takes at a time (after a full batch it
/// yields to the arbiter's other tasks, the connections).
const BATCH: usize = 128;

/// A handler port's state, shared by its contexts, the registry (for
/// [`Node::rcv`](crate::Node::rcv) from outside) and the runner. A spawned
/// port has it from its reservation on, so that its init function and
/// `rcv` can fill its callbacks before it is complete.
pub(crate) struct PortCell {
    port: PortId,
    /// Its callbacks by tag and its default (see `rcv.rs`).
    dispatch: Mutex<Dispatch>,
    /// Set when the port was killed through one of its contexts (its
    /// callbacks or init function): what is still queued is dropped.
    killed: AtomicBool,
    /// Set when the port died, however it died: ends an async callback's
    /// future at its next await (see [`dead_or`]).
    dead: AtomicBool,
    /// Set once the runner handled the port's last job (its `Die` or
    /// `Stop`): later jobs are dropped.
    stopped: AtomicBool,
    /// While an async callback's future runs (made then, so that a port
    /// that never waits costs one pointer).
    waiting: Mutex<Option<Box<Waiting>>>,
}

/// A port whose async callback's future runs.
struct Waiting {
    /// The jobs that came meanwhile, in order.
    backlog: VecDeque<Item>,
    /// Woken when the port dies.
    died: Arc<Notify>,
}

/// One job of a port.
pub(crate) enum Item {
    /// A message for its callbacks.
    Msg(Packet),
    /// A kil from outside, or the end after a kil (see [`Control`]).
    Control(Control),
}

/// A job for the runner.
struct Job {
    cell: Arc<PortCell>,
    item: Item,
}

impl PortCell {
    /// The state of port `port` with the callbacks `dispatch`.
    pub(crate) fn new(port: PortId, dispatch: Dispatch) -> Arc<PortCell> {
        Arc::new(PortCell {
            port,
            dispatch: Mutex::new(dispatch),
            killed: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            waiting: Mutex::new(None),
        })
    }

    /// The port's id.
    pub(crate) fn port(&self) -> &PortId {
        &self.port
    }

    /// The port's callbacks.
    pub(crate) fn dispatch(&self) -> &Mutex<Dispatch> {
        &self.dispatch
    }

    /// Marks the port killed through a context: its queued messages are
    /// dropped.
    pub(crate) fn set_killed(&self) {
        self.killed.store(true, Ordering::Release);
    }

    /// Marks the port dead: a running async callback ends at its next
    /// await, and queued async callbacks' futures are never polled.
    pub(crate) fn die(&self) {
        self.dead.store(true, Ordering::Release);
        if let Some(waiting) = self.waiting.lock().as_ref() {
            waiting.died.notify_waiters();
        }
    }

    /// Whether the runner is done with the port.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The runner is done with the port: what is left is dropped.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        *self.waiting.lock() = None;
    }
}

/// Hands jobs to the node's runner task (one per node, on its arbiter).
#[derive(Clone)]
pub(crate) struct Runner(mpsc::UnboundedSender<Job>);

/// The runner's end of its channel, until the task takes it.
pub(crate) struct RunnerQueue(mpsc::UnboundedReceiver<Job>);

impl Runner {
    /// A runner and its queue (see [`RunnerQueue::start`]).
    pub(crate) fn new() -> (Runner, RunnerQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Runner(tx), RunnerQueue(rx))
    }

    /// Queues `item` for port `cell`; gives it back if the runner is gone
    /// (its arbiter stopped).
    pub(crate) fn send(&self, cell: &Arc<PortCell>, item: Item) -> Result<(), Item> {
        self.0
            .send(Job {
                cell: cell.clone(),
                item,
            })
            .map_err(|e| e.0.item)
    }

    /// Whether the runner is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl RunnerQueue {
    /// Starts the runner task on the current arbiter. It holds the node
    /// weakly and ends when the node is gone.
    pub(crate) fn start(self, node: WeakNode) {
        actix_rt::spawn(run(node, self.0));
    }
}

/// The runner task.
async fn run(node: WeakNode, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let taken = rx.recv_many(&mut batch, BATCH).await;
        if taken == 0 {
            return;
        }
        let Some(node) = node.upgrade() else {
            return;
        };
        for job in batch.drain(..) {
            run_job(&node, job);
        }
        drop(node);
        if taken == BATCH {
            // more may be waiting: let the connections run first
            tokio::task::yield_now().await;
        }
    }
}

/// Runs one job, or queues it behind its port's running future.
fn run_job(node: &Node, job: Job) {
    let Job { cell, item } = job;
    if cell.is_stopped() {
        return;
    }
    if let Some(waiting) = cell.waiting.lock().as_mut() {
        waiting.backlog.push_back(item);
        return;
    }
    let ctx = PortContext::from_cell(node.clone(), cell);
    if let Step::Wait(future, src) = step(&ctx, item) {
        let died = Arc::new(Notify::new());
        *ctx.cell().waiting.lock() = Some(Box::new(Waiting {
            backlog: VecDeque::new(),
            died: died.clone(),
        }));
        actix_rt::spawn(wait_then_drain(ctx, died, future, src));
    }
}

/// What a job left to do.
enum Step {
    /// Nothing: take the next.
    Next,
    /// The port is done.
    Stopped,
    /// This future first (an async callback's, with the `$SRCNODE` of
    /// its message).
    Wait(
        LocalBoxFuture<'static, Result<(), HandlerError>>,
        Option<Arc<str>>,
    ),
}

/// Runs one job of the port of `ctx`.
fn step(ctx: &PortContext, item: Item) -> Step {
    let cell = ctx.cell();
    match item {
        Item::Msg(packet) => {
            if cell.killed.load(Ordering::Acquire) {
                // killed through its context: what was queued is dropped
                // until the Stop (or an earlier outside kil's Die)
                return Step::Next;
            }
            let src = packet.src_shared();
            let outcome =
                super::src_node::with_src(src.clone(), || super::rcv::dispatch(ctx, packet));
            match outcome {
                Outcome::Done(Ok(())) => Step::Next,
                Outcome::Done(Err(failure)) => {
                    fail(ctx, &failure);
                    Step::Next
                }
                Outcome::Wait(future) => Step::Wait(future, src),
            }
        }
        Item::Control(control) => {
            if let Control::Die { reason, monitors } = control {
                // a kil from outside, behind what was delivered before it
                ctx.node()
                    .inner()
                    .fire_port_monitors(&cell.port, monitors, &reason);
            }
            cell.stop();
            Step::Stopped
        }
    }
}

/// Runs an async callback's `future` (with `$SRCNODE` = `src` while it
/// is polled) until it is done or the port of `cell` dies (`died` wakes
/// it then): the text of its failure.
async fn dead_or(
    cell: &PortCell,
    died: &Notify,
    src: Option<Arc<str>>,
    future: LocalBoxFuture<'static, Result<(), HandlerError>>,
) -> Result<(), String> {
    let dead = async {
        loop {
            let notified = died.notified();
            tokio::pin!(notified);
            // registered before the check, so a `die` in between wakes it
            notified.as_mut().enable();
            if cell.dead.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    };
    tokio::select! {
        biased;
        _ = dead => Ok(()),
        result = super::user_code::for_port_async(src, future) => result,
    }
}

/// Runs `future`, then the port's backlog, until the backlog is empty
/// (the port takes jobs from the runner again), the port is done, or
/// another future must run first.
async fn wait_then_drain(
    ctx: PortContext,
    died: Arc<Notify>,
    mut future: LocalBoxFuture<'static, Result<(), HandlerError>>,
    mut src: Option<Arc<str>>,
) {
    loop {
        if let Err(failure) = dead_or(ctx.cell(), &died, src, future).await {
            fail(&ctx, &failure);
        }
        loop {
            let item = {
                let mut waiting = ctx.cell().waiting.lock();
                let Some(w) = waiting.as_mut() else {
                    // stopped meanwhile
                    return;
                };
                match w.backlog.pop_front() {
                    Some(item) => item,
                    None => {
                        *waiting = None;
                        return;
                    }
                }
            };
            match step(&ctx, item) {
                Step::Next => {}
                Step::Stopped => return,
                Step::Wait(next, next_src) => {
                    (future, src) = (next, next_src);
                    break;
                }
            }
        }
    }
}

/// A callback failed: the port dies now; if an outside kil got there
/// first, its Die (with the monitors) is still queued and ends the port.
fn fail(ctx: &PortContext, failure: &str) {
    tracing::debug!(node = %ctx.node().id(), port = %ctx.port(), error = %failure, "port handler failed");
    ctx.kil(die_reason(failure));
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// What an idle handler port and a monitor entry are made of stays
    /// small: the memory per spawned port and per `mon1` (README, "State a
    /// peer can create") is mostly these.
    #[test]
    fn a_port_cell_and_a_monitor_entry_stay_small() {
        assert!(
            size_of::<super::PortCell>() <= 104,
            "{}",
            size_of::<super::PortCell>()
        );
        let action = size_of::<super::super::monitors::Action>();
        assert!(action <= 32, "{action}");
    }
}

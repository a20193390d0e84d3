//! Running user code: handlers, init functions, plain functions,
//! services, and the callbacks of monitors, `mon_nodes` and groups.
//!
//! User code may fail or panic; the node goes on. For code that runs *for
//! a port* (handlers and init functions) the failure becomes the port's
//! `("die", text)` reason, as a Perl callback that dies; for callbacks,
//! which have no port, it is logged, as `AnyEvent::MP::Kernel` does
//! (Kernel.pm 552–553).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use crate::error::HandlerError;

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Runs `f`; a panic becomes the text of its payload.
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_text(payload.as_ref()))
}

/// Runs code that runs for a port (a handler, an init function): its
/// result, or the text of its error or panic (the port's `die` reason).
pub(crate) fn for_port<R>(f: impl FnOnce() -> Result<R, HandlerError>) -> Result<R, String> {
    match run(f) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(text) => Err(text),
    }
}

/// Runs the future of async code that runs for a port (an async callback,
/// a task spawned for a port), with `$SRCNODE` = `src` while it is polled:
/// the text of its error or panic (the port's `die` reason), if any.
pub(crate) fn for_port_async(
    src: Option<Arc<str>>,
    future: LocalBoxFuture<'static, Result<(), HandlerError>>,
) -> impl Future<Output = Result<(), String>> {
    let mut future = AssertUnwindSafe(future).catch_unwind();
    futures_util::future::poll_fn(move |cx| {
        super::src_node::with_src(src.clone(), || Pin::new(&mut future).poll(cx))
    })
    .map(|result| match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(panic_text(payload.as_ref())),
    })
}

/// Runs a callback that has no port (`what` names it in the log): a
/// panic is logged and the node goes on.
pub(crate) fn callback(node: &str, what: &str, f: impl FnOnce()) {
    if let Err(panic) = run(f) {
        tracing::warn!(node, what, %panic, "{what} panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_become_text() {
        assert_eq!(for_port(|| Ok::<_, HandlerError>(3)), Ok(3));
        assert_eq!(
            for_port::<()>(|| Err("boom".into())),
            Err("boom".to_owned())
        );
        assert_eq!(for_port::<()>(|| panic!("bang")), Err("bang".to_owned()));
        let n = 7;
        assert_eq!(for_port::<()>(|| panic!("n={n}")), Err("n=7".to_owned()));
        callback("n", "a test callback", || panic!("ignored"));
    }
}

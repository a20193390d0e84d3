//! `$SRCNODE` (Kernel.pm 167): the node whose connection delivered the
//! message being handled — the immediate peer, not the originator of a
//! relayed `snd` — or this node for local sends (Node.pm 216/236).
//!
//! Every delivered [`crate::Packet`] carries it ([`crate::Packet::src_node`]);
//! while the node runs a handler, a tag callback, a node-port request (a
//! plain function), or an init function, it is also set for the running
//! thread, where [`crate::Node::src_node`] and
//! [`crate::PortContext::src_node`] read it.

use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static SRCNODE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Runs `f` with the source node set to `src` (restored afterwards, also
/// on a panic, so nested requests see their own).
pub(crate) fn with_src<R>(src: Option<Arc<str>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SRCNODE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SRCNODE.with(|s| s.replace(src));
    let _restore = Restore(previous);
    f()
}

/// The source node set for this thread, if any.
pub(crate) fn current() -> Option<String> {
    SRCNODE.with(|s| s.borrow().as_deref().map(str::to_owned))
}

//! The handle a pool's users hold: cloning it counts a handle, and dropping
//! the last one closes the pool (connections held by guards, scopes and
//! thread-locals keep the shared state alive, not the pool open).

use std::fmt;
use std::ops::Deref;

use crate::sync::{Arc, AtomicUsize, Ordering};

/// A pool's shared state, as far as its handles care.
pub(crate) trait Closes: Send + Sync {
    /// The live handles' count.
    fn handles(&self) -> &AtomicUsize;
    /// Closes the pool (the last handle is gone).
    fn close(self: &Arc<Self>);
    /// The pool's id, for `Debug`.
    fn id(&self) -> u64;
}

/// One counted handle on `S`.
pub(crate) struct Handle<S: Closes>(Arc<S>);

impl<S: Closes> Handle<S> {
    /// The first handle of a new pool (its count must start at 1).
    pub(crate) fn first(shared: Arc<S>) -> Self {
        Handle(shared)
    }
}

impl<S: Closes> Deref for Handle<S> {
    type Target = Arc<S>;

    fn deref(&self) -> &Arc<S> {
        &self.0
    }
}

impl<S: Closes> Clone for Handle<S> {
    fn clone(&self) -> Self {
        self.0.handles().fetch_add(1, Ordering::Relaxed);
        Handle(Arc::clone(&self.0))
    }
}

impl<S: Closes> Drop for Handle<S> {
    fn drop(&mut self) {
        if self.0.handles().fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.close();
        }
    }
}

impl<S: Closes> fmt::Debug for Handle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("id", &self.0.id())
            .finish_non_exhaustive()
    }
}

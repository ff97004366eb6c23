//! Breaking off the operation a checked-out connection is running, from
//! another thread: what an interrupting `clear` asks of a driver.

use std::fmt;
use std::sync::Arc;

/// A way to break off whatever operation one connection is running — for
/// a socket, shutting it down so its pending read or write fails — made
/// by the manager when the connection opens
/// ([`blocking::Manager::interrupt_handle`](crate::blocking::Manager::interrupt_handle)).
/// The pool calls it, outside its lock, when `clear_interrupting()` finds
/// the connection checked out; the holder then sees its operation fail,
/// the manager's `has_broken` says so, and the connection is closed when
/// it is returned. It should not block: `clear_interrupting()` runs the
/// handles one after another on its caller's thread, so one that talks to
/// the server (a PostgreSQL cancel) belongs on a thread or task of its
/// own.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use pinpool::InterruptHandle;
///
/// let cancelled = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&cancelled);
/// let handle = InterruptHandle::new(move || flag.store(true, Ordering::SeqCst));
/// handle.interrupt();
/// assert!(cancelled.load(Ordering::SeqCst));
/// ```
#[derive(Clone)]
pub struct InterruptHandle(Arc<dyn Fn() + Send + Sync>);

impl InterruptHandle {
    /// A handle that runs `interrupt` (it may run more than once).
    pub fn new(interrupt: impl Fn() + Send + Sync + 'static) -> Self {
        InterruptHandle(Arc::new(interrupt))
    }

    /// Breaks off the connection's operation.
    pub fn interrupt(&self) {
        (self.0)();
    }
}

impl fmt::Debug for InterruptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InterruptHandle")
    }
}

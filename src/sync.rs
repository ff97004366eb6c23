//! The synchronisation primitives the pools are built on, in one place so
//! the loom models can swap them (tokio's `src/loom` is the pattern).
//!
//! Built with `--cfg pinpool_loom` (see `loom-tests/`), every lock,
//! atomic, park/unpark and thread-local the pool's logic synchronises
//! through comes from loom, and loom explores their interleavings. Two
//! things differ under loom, both outside the decision logic: connects run
//! inline instead of on a `pinpool-connect` thread (loom allows few
//! threads), and parking has no timeout (loom has no clock), so a model
//! times a checkout out with a zero checkout timeout, whose deadline has
//! passed before the first park.
//!
//! `Arc` is std's in both builds: loom's has no `Weak` nor unsized
//! coercion, and reference counts take no part in the pool's protocol.
//! The id counters in `pins` and the builder stay std atomics for the same
//! reason (they only hand out unique numbers).

pub(crate) use std::sync::Arc;

#[cfg(not(pinpool_loom))]
mod imp {
    use std::time::Instant;

    pub(crate) use parking_lot::Mutex;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::thread::{Thread, current};
    pub(crate) use std::thread_local;

    /// Parks the current thread until unparked or `deadline` (or
    /// spuriously); with no deadline, until unparked.
    pub(crate) fn park_until(deadline: Option<Instant>) {
        match deadline {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }

    /// Runs `work` on a new named thread; if no thread can be spawned,
    /// inline.
    pub(crate) fn spawn_or_run(name: &str, work: impl FnOnce() + Clone + Send + 'static) {
        let spare = work.clone();
        if let Err(error) = std::thread::Builder::new().name(name.into()).spawn(work) {
            tracing::warn!(%error, "cannot spawn a {name} thread; running inline");
            spare();
        }
    }

    /// A cell holding at most one boxed value, moved in and out with a
    /// single atomic swap each. Because every access is a read-modify-write
    /// on one word, the cell's modification order orders all puts and
    /// takes, which is what the lease protocol in `blocking::lease` relies
    /// on.
    pub(crate) struct TakeCell<T>(crossbeam_utils::atomic::AtomicCell<Option<Box<T>>>);

    impl<T> TakeCell<T> {
        pub(crate) fn empty() -> Self {
            TakeCell(crossbeam_utils::atomic::AtomicCell::new(None))
        }

        /// Moves the value out, leaving the cell empty.
        #[inline]
        pub(crate) fn take(&self) -> Option<Box<T>> {
            self.0.swap(None)
        }

        /// Moves `value` in. The protocol never puts into a full cell.
        #[inline]
        pub(crate) fn put(&self, value: Box<T>) {
            let previous = self.0.swap(Some(value));
            debug_assert!(previous.is_none(), "a TakeCell holds one value");
        }
    }
}

#[cfg(pinpool_loom)]
mod imp {
    use std::time::Instant;

    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::thread::{Thread, current};
    pub(crate) use loom::thread_local;

    /// parking_lot's interface (no poisoning) over loom's mutex.
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    pub(crate) use loom::sync::Condvar;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    /// No timeout under loom: see the module documentation.
    pub(crate) fn park_until(_deadline: Option<Instant>) {
        loom::thread::park();
    }

    /// Inline under loom: see the module documentation.
    pub(crate) fn spawn_or_run(_name: &str, work: impl FnOnce() + Clone + Send + 'static) {
        work();
    }

    /// The same linearizable take/put, as a loom mutex.
    pub(crate) struct TakeCell<T>(loom::sync::Mutex<Option<Box<T>>>);

    impl<T> TakeCell<T> {
        pub(crate) fn empty() -> Self {
            TakeCell(loom::sync::Mutex::new(None))
        }

        pub(crate) fn take(&self) -> Option<Box<T>> {
            self.0.lock().unwrap().take()
        }

        pub(crate) fn put(&self, value: Box<T>) {
            let previous = self.0.lock().unwrap().replace(value);
            debug_assert!(previous.is_none(), "a TakeCell holds one value");
        }
    }
}

pub(crate) use imp::*;

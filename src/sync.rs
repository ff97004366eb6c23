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
    use std::marker::PhantomData;
    use std::ptr;
    use std::sync::atomic::AtomicPtr;
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
    /// takes, which is what the lease protocol in `driver::lease` relies
    /// on. [`is_empty`](Self::is_empty) is a plain load, so the stash's
    /// fast path can pass over an empty cell without taking its cache line.
    pub(crate) struct TakeCell<T> {
        ptr: AtomicPtr<T>,
        /// Owns a `Box<T>`, shared as a `Mutex` would be: `Send` and `Sync`
        /// exactly when `T` is `Send`.
        _owns: PhantomData<std::sync::Mutex<Box<T>>>,
    }

    // The crate's one use of `unsafe`: a `Box` moved through an
    // `AtomicPtr`, which no safe crossbeam type offers with a plain-load
    // emptiness check. The loom build replaces it with a mutex.
    #[allow(unsafe_code)]
    impl<T> TakeCell<T> {
        pub(crate) fn empty() -> Self {
            TakeCell {
                ptr: AtomicPtr::new(ptr::null_mut()),
                _owns: PhantomData,
            }
        }

        /// Moves the value out, leaving the cell empty.
        #[inline]
        pub(crate) fn take(&self) -> Option<Box<T>> {
            let taken = self.ptr.swap(ptr::null_mut(), Ordering::SeqCst);
            // SAFETY: a non-null pointer in the cell came from
            // `Box::into_raw` in `put`, and the swap moved it out of the
            // cell: this call alone owns it.
            (!taken.is_null()).then(|| unsafe { Box::from_raw(taken) })
        }

        /// Moves `value` in. The protocol never puts into a full cell.
        #[inline]
        pub(crate) fn put(&self, value: Box<T>) {
            let previous = self.ptr.swap(Box::into_raw(value), Ordering::SeqCst);
            debug_assert!(previous.is_null(), "a TakeCell holds one value");
        }

        /// Whether the cell looked empty (a hint: it may change at once).
        #[inline]
        pub(crate) fn is_empty(&self) -> bool {
            self.ptr.load(Ordering::Relaxed).is_null()
        }
    }

    impl<T> Drop for TakeCell<T> {
        fn drop(&mut self) {
            drop(self.take());
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

        pub(crate) fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_none()
        }
    }
}

pub(crate) use imp::*;

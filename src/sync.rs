//! The synchronisation primitives the pools are built on, in one place so
//! the loom models can swap them (tokio's `src/loom` is the pattern).
//!
//! Built with `--cfg pinpool_loom` (see `loom-tests/`), every lock,
//! atomic, park/unpark and thread-local the pool's logic synchronises
//! through comes from loom, and loom explores their interleavings. Two
//! things differ under loom, both outside the decision logic: connects run
//! inline instead of on a `pinpool-connect` thread (loom allows few
//! threads), unless a model asks for a thread each; and loom has no
//! clock, so a parked checkout's deadline passes only when a model's
//! timer says so (`Parker::expire`), or before the first park with a zero
//! checkout timeout.
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
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::thread_local;

    /// Parks the thread it was made on, and unparks it from anywhere:
    /// std's per-thread park token.
    pub(crate) struct Parker(std::thread::Thread);

    impl Parker {
        pub(crate) fn for_current_thread() -> Self {
            Parker(std::thread::current())
        }

        /// Parks (the thread this was made on) until unparked or
        /// `deadline` (or spuriously); with no deadline, until unparked.
        pub(crate) fn park_until(&self, deadline: Option<Instant>) {
            match deadline {
                Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
        }

        pub(crate) fn unpark(&self) {
            self.0.unpark();
        }

        /// Whether `deadline` has passed (never, for `None`).
        pub(crate) fn deadline_passed(&self, deadline: Option<Instant>) -> bool {
            deadline.is_some_and(|at| Instant::now() >= at)
        }
    }

    /// Runs `work` on a new named thread; if no thread can be spawned,
    /// inline.
    pub(crate) fn spawn_or_run(name: &str, work: impl FnOnce() + Send + 'static) {
        // Kept here as well as handed to the thread, so that a failed spawn
        // (which drops its closure) still leaves the work to run inline.
        let work = std::sync::Arc::new(parking_lot::Mutex::new(Some(work)));
        let handed = std::sync::Arc::clone(&work);
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let work = handed.lock().take();
                if let Some(work) = work {
                    work();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot spawn a {name} thread; running inline");
            let work = work.lock().take();
            if let Some(work) = work {
                work();
            }
        }
    }
}

#[cfg(pinpool_loom)]
mod imp {
    use std::time::Instant;

    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
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

    /// std's park token as a loom mutex and condvar. Not loom's own
    /// `park`/`unpark`: loom's `unpark` also wakes a thread blocked on a
    /// mutex or in a `join` (std's never does), so a late unpark — one for
    /// an outcome its waiter already took — would show up as a broken lock.
    ///
    /// loom has no clock either: a model makes a deadline pass with
    /// [`expire`](Self::expire), from a thread of its own, so that the
    /// timer races whatever else the model runs.
    pub(crate) struct Parker {
        token: loom::sync::Mutex<Token>,
        unparked: Condvar,
    }

    #[derive(Default)]
    struct Token {
        unparked: bool,
        /// The parked thread's deadline has passed.
        expired: bool,
    }

    impl Parker {
        pub(crate) fn for_current_thread() -> Self {
            Parker {
                token: loom::sync::Mutex::new(Token::default()),
                unparked: Condvar::new(),
            }
        }

        /// Parks until unparked, or, with a deadline, until it expires.
        pub(crate) fn park_until(&self, deadline: Option<Instant>) {
            let mut token = self.token.lock().unwrap();
            while !token.unparked && !(deadline.is_some() && token.expired) {
                token = self.unparked.wait(token).unwrap();
            }
            token.unparked = false;
        }

        pub(crate) fn unpark(&self) {
            self.token.lock().unwrap().unparked = true;
            self.unparked.notify_one();
        }

        /// Whether the deadline has passed: a model's timer said so, or it
        /// had already passed when the checkout began (a zero checkout
        /// timeout: the same answer in every interleaving).
        pub(crate) fn deadline_passed(&self, deadline: Option<Instant>) -> bool {
            deadline.is_some_and(|at| Instant::now() >= at || self.token.lock().unwrap().expired)
        }

        /// The timer: the parked thread's deadline passes now.
        pub(crate) fn expire(&self) {
            self.token.lock().unwrap().expired = true;
            self.unparked.notify_one();
        }
    }

    /// Inline under loom: see the module documentation.
    pub(crate) fn spawn_or_run(_name: &str, work: impl FnOnce() + Send + 'static) {
        work();
    }

    /// A loom thread of its own, for a model that races a connect with
    /// the rest (see `Builder::connects_on_threads`); it ends by itself.
    pub(crate) fn spawn_thread(work: impl FnOnce() + Send + 'static) {
        drop(loom::thread::spawn(work));
    }
}

pub(crate) use imp::*;

use std::marker::PhantomData;
use std::ptr;
// std's, under loom too, for the displaced tally below.
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

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

// One of the crate's three uses of `unsafe` (the others: `driver::Guard`,
// `driver::erased`):
// a `Box` moved through an `AtomicPtr`, which no safe crossbeam type
// offers with a plain-load emptiness check. The loom build runs this very code on loom's
// `AtomicPtr`, so the models explore its orderings too.
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

    /// Moves `value` in. The protocol never puts into a full cell (the
    /// loom models check it, and debug builds assert it); if a bug ever
    /// did, the displaced value is leaked — never freed while someone may
    /// think it parked — and counted, for [`report_displaced`] to report
    /// in every build. Counted rather than logged here: a call on this
    /// path, however cold, makes the guard's drop that parks through it
    /// save and restore six registers, 11 of a pinned get + drop's 106
    /// instructions (`benches/instructions.sh`).
    #[inline]
    pub(crate) fn put(&self, value: Box<T>) {
        let previous = self.ptr.swap(Box::into_raw(value), Ordering::SeqCst);
        debug_assert!(previous.is_null(), "a TakeCell holds one value");
        if !previous.is_null() {
            DISPLACED.fetch_add(1, StdOrdering::Relaxed);
        }
    }

    /// Whether the cell looked empty (a hint: it may change at once).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.ptr.load(Ordering::Relaxed).is_null()
    }
}

/// Values a [`TakeCell::put`] displaced (and leaked) since the last
/// [`report_displaced`]. A std atomic under loom too: a tally, not part
/// of any protocol.
static DISPLACED: StdAtomicUsize = StdAtomicUsize::new(0);

/// Logs the values [`TakeCell::put`] displaced since the last call, if
/// any: a pool bug. The pools call it after each trip through their lock.
#[inline]
pub(crate) fn report_displaced() {
    if DISPLACED.load(StdOrdering::Relaxed) != 0 {
        report_displaced_now();
    }
}

#[cold]
#[inline(never)]
fn report_displaced_now() {
    let displaced = DISPLACED.swap(0, StdOrdering::Relaxed);
    if displaced != 0 {
        tracing::error!(
            displaced,
            "pool bug: connections were parked over others, which are leaked"
        );
    }
}

impl<T> Drop for TakeCell<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

#[cfg(all(test, not(pinpool_loom)))]
mod tests {
    use super::*;

    /// A cell moves one value in and out, and displaces nothing; the
    /// tally of displaced values (which only a pool bug adds to, and
    /// which debug builds assert against at the put) is reported and
    /// cleared. One test, because the tally is process-wide: no other
    /// test may change it, and any put that counted would show here.
    #[test]
    fn a_take_cell_moves_one_value_and_displaces_nothing() {
        use StdOrdering::Relaxed;
        let cell = TakeCell::empty();
        assert!(cell.is_empty() && cell.take().is_none());
        cell.put(Box::new(7));
        assert!(!cell.is_empty());
        assert_eq!(cell.take().as_deref(), Some(&7));
        assert!(cell.is_empty() && cell.take().is_none());
        assert_eq!(DISPLACED.load(Relaxed), 0, "nothing displaced");
        DISPLACED.fetch_add(2, Relaxed);
        report_displaced();
        assert_eq!(DISPLACED.load(Relaxed), 0, "reported and cleared");
    }
}

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

    pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

    /// std's mutex with parking_lot's interface: a panic under the lock
    /// does not poison it (the pool's state is consistent between inputs,
    /// and a pool must outlive a panicking caller).
    ///
    /// Why not parking_lot's, which the crate uses elsewhere: where threads
    /// outnumber cores (a runtime's workers on a busy machine, or more
    /// threads than cores checking out), a thread that finds the pool
    /// locked must not give up its core. parking_lot's lock spins a few
    /// times, then yields and parks, and about every 0.5 ms an unlock hands
    /// the lock straight to a parked thread, which then holds it before it
    /// runs. Either way a thread that left its core gets it back at the
    /// scheduler's next tick, and the pool waits with it: the fairness
    /// benchmark (`benches/peers/src/bin/fairness.rs`) saw waits of 4 ms,
    /// one tick, for the pool lock on about 1 checkout in 130 of its async
    /// cells, and they were its whole p99.9. std's lock spins longer
    /// without yielding (the holder, on another core, is done within a
    /// microsecond) before it sleeps, and a released lock goes to whoever
    /// runs first; the pool's own queue, not the lock's, decides who is
    /// served in order. docs/benchmarks.md has the figures, and the loops
    /// this is slower in: threads far outnumbering cores checking out with
    /// no hold at all (64 threads under `Strict`; 16 under `Affinity`,
    /// where a woken waiter for any connection sends every checkout
    /// through this lock until it runs: 159 ns a checkout against 6 ns).
    /// A spin that yielded before sleeping, as parking_lot's does, brought
    /// the tails back (measured again on 2026-12-05: three yields before
    /// sleeping, async p99.9 on 20 µs holds 0.03 → 1.4–2.1 ms, 8 tasks).
    /// The hand-off convoy this lock let start there is the wake
    /// policy's to prevent (`WakePolicy::Eventual`'s `min_hold`).
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
    pub(crate) use std::thread_local;

    /// The lock of a waiting checkout's mailbox (both pools'): critical
    /// sections of a few instructions (an outcome stored or taken, a
    /// waker swapped), contended only where a delivery meets its waiter
    /// looking. parking_lot's lock fits there: it has no poison flag,
    /// which std's checks on every lock and unlock (a read of the panic
    /// count: the three locks of a contended async turn cost 48
    /// instructions more, `benches/instructions.sh`), and its yielding
    /// and parking, which rule it out for the pool lock (above), cannot
    /// start where nobody holds the lock for longer than a store.
    pub(crate) use parking_lot::Mutex as MailboxMutex;

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

    pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::thread_local;

    /// parking_lot's interface (no poisoning) over loom's mutex.
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    pub(crate) use loom::sync::Condvar;

    /// Under loom the mailboxes lock loom's mutex too.
    pub(crate) use Mutex as MailboxMutex;

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

/// A cell holding at most one boxed value, moved in and out with one
/// atomic read-modify-write each, which can be *closed*: once closed,
/// nothing can be put in it until it is reopened. The lease protocol in
/// `driver::lease` is built on it: a recall closes its lease's cell,
/// taking whatever was parked there, and a holder's put into a closed cell
/// fails and gives the value back. Because open, full and closed are
/// states of one word, the cell's modification order decides every race
/// between a put, a take and a close, and a putter whose put succeeded
/// never needs to look at the cell (or what owns it) again.
/// [`is_empty`](Self::is_empty) is a plain load, so the stash's fast path
/// can pass over an empty cell without taking its cache line.
pub(crate) struct TakeCell<T> {
    ptr: AtomicPtr<T>,
    /// Owns a `Box<T>`, shared as a `Mutex` would be: `Send` and `Sync`
    /// exactly when `T` is `Send`.
    _owns: PhantomData<std::sync::Mutex<Box<T>>>,
}

/// Its address marks a closed cell: no `Box` is ever at a static's address
/// (a zero-sized value's box is at its alignment, near 0).
static CLOSED: u8 = 0;

// One of the crate's six audited uses of `unsafe` (the others:
// `driver::Guard`, `driver::erased`, `driver::lease::HeldLease`, the
// frames of `tokio::scope`, `tokio::later::Later`):
// a `Box` moved through an `AtomicPtr`, which no safe crossbeam type
// offers with a plain-load emptiness check. The loom build runs this very code on loom's
// `AtomicPtr`, so the models explore its orderings too.
#[allow(unsafe_code)]
impl<T> TakeCell<T> {
    /// An open, empty cell.
    pub(crate) fn empty() -> Self {
        TakeCell {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// The word of a closed cell (never dereferenced).
    fn closed() -> *mut T {
        ptr::addr_of!(CLOSED).cast_mut().cast()
    }

    /// Whether `word` holds a value (rather than nothing, or the mark).
    fn holds(word: *mut T) -> bool {
        !word.is_null() && word != Self::closed()
    }

    /// Moves the value out, if there is one, leaving the cell open and
    /// empty. A load, then one exchange that succeeds unless another take
    /// or a close came between (a put could not: the cell was full).
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<T>> {
        let mut seen = self.ptr.load(Ordering::Acquire);
        while Self::holds(seen) {
            match (self.ptr).compare_exchange(
                seen,
                ptr::null_mut(),
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                // SAFETY: a value in the cell came from `Box::into_raw`
                // in `put`, and the exchange moved it out of the cell:
                // this call alone owns it.
                Ok(_) => return Some(unsafe { Box::from_raw(seen) }),
                Err(now) => seen = now,
            }
        }
        None
    }

    /// Moves `value` into the open, empty cell; `Err` gives it back if
    /// the cell is closed. (The protocol never puts into a full cell, and
    /// debug builds assert it; a put that found one would give the value
    /// back too, so nothing is ever displaced.)
    #[inline]
    pub(crate) fn put(&self, value: Box<T>) -> Result<(), Box<T>> {
        let raw = Box::into_raw(value);
        match (self.ptr).compare_exchange(ptr::null_mut(), raw, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(found) => {
                debug_assert!(found == Self::closed(), "a TakeCell holds one value");
                // SAFETY: `raw` came from `Box::into_raw` above and the
                // exchange failed, so the cell never had it.
                Err(unsafe { Box::from_raw(raw) })
            }
        }
    }

    /// Closes the cell, taking the value it held, if any: every put fails
    /// from now until [`reopen`](Self::reopen).
    pub(crate) fn close(&self) -> Option<Box<T>> {
        let taken = self.ptr.swap(Self::closed(), Ordering::SeqCst);
        // SAFETY: as in `take`; the swap moved the value out.
        Self::holds(taken).then(|| unsafe { Box::from_raw(taken) })
    }

    /// Opens an empty or closed cell again, empty.
    pub(crate) fn reopen(&self) {
        let was = self.ptr.swap(ptr::null_mut(), Ordering::SeqCst);
        debug_assert!(!Self::holds(was), "only an empty cell is reopened");
        if Self::holds(was) {
            // SAFETY: as in `close`. Freed rather than leaked: a bug, but
            // one that must not leak.
            drop(unsafe { Box::from_raw(was) });
        }
    }

    /// Whether the cell looked empty or closed (a hint: it may change at
    /// once).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        !Self::holds(self.ptr.load(Ordering::Relaxed))
    }
}

impl<T> Drop for TakeCell<T> {
    fn drop(&mut self) {
        drop(self.close());
    }
}

#[cfg(all(test, not(pinpool_loom)))]
mod tests {
    use super::*;

    /// A cell moves one value in and out; closed, it refuses puts (giving
    /// the value back) until reopened, and closing takes what it held.
    #[test]
    fn a_take_cell_moves_one_value_and_a_closed_one_refuses_puts() {
        let cell = TakeCell::empty();
        assert!(cell.is_empty() && cell.take().is_none());
        cell.put(Box::new(7)).unwrap();
        assert!(!cell.is_empty());
        assert_eq!(cell.take().as_deref(), Some(&7));
        assert!(cell.is_empty() && cell.take().is_none());
        cell.put(Box::new(8)).unwrap();
        assert_eq!(cell.close().as_deref(), Some(&8), "closing takes it");
        assert!(cell.is_empty() && cell.take().is_none());
        assert_eq!(cell.put(Box::new(9)).map_err(|v| *v), Err(9));
        assert!(cell.close().is_none(), "closed twice, nothing held");
        cell.reopen();
        cell.put(Box::new(10)).unwrap();
        assert_eq!(cell.take().as_deref(), Some(&10));
    }

    /// A zero-sized value's box is never taken for the closed mark.
    #[test]
    fn a_zero_sized_value_is_held_not_mistaken_for_the_mark() {
        let cell = TakeCell::empty();
        cell.put(Box::new(())).unwrap();
        assert!(!cell.is_empty());
        assert!(cell.take().is_some());
    }
}

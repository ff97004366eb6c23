//! The blocking pool: what a synchronous driver embeds.
//!
//! Every decision comes from the [core](crate::core); this module parks and
//! unparks threads, runs connects and closes outside the pool lock, keeps
//! each thread's pin in a thread-local, and takes the lock-free fast paths:
//! a pinned thread re-using its own idle connection, and under
//! [`Pinning::Off`](crate::core::Pinning::Off) any thread taking an idle
//! connection from the pool's stash.
//!
//! ```
//! use pinpool::blocking::{Manager, Pool, PooledConnection};
//!
//! struct Counter;
//! impl Manager for Counter {
//!     type Connection = Vec<String>;
//!     type Error = std::io::Error;
//!     fn connect(&self) -> Result<Vec<String>, std::io::Error> {
//!         Ok(Vec::new())
//!     }
//! }
//!
//! let pool = Pool::builder().max_size(2).build(Counter)?;
//! let first = {
//!     let mut conn = pool.get()?;
//!     conn.push("hello".into());
//!     PooledConnection::id(&conn)
//! };
//! // This thread is pinned: it gets the same connection back.
//! let conn = pool.get()?;
//! assert_eq!(PooledConnection::id(&conn), first);
//! assert_eq!(*conn, ["hello"]);
//!
//! // Another thread gets its own while the pool has room.
//! std::thread::scope(|s| {
//!     s.spawn(|| assert_ne!(PooledConnection::id(&pool.get().unwrap()), first));
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Pool handles and closing
//! [`Pool`] is a cheap handle (`Clone + Send + Sync`). Dropping the last
//! handle closes the pool; [`Pool::close`] closes it for every handle at
//! once, failing blocked `get()`s with [`Error::Closed`]. Idle connections
//! close at once, checked-out ones when they are returned.
//!
//! # Pins and thread exit
//! A thread's first `get()` pins it (see [`Pinning`](crate::core::Pinning)).
//! The pin is released by [`Pool::unpin`] or, at the latest, when the
//! thread exits, through a thread-local drop guard — also when the thread
//! panicked. The thread-local holds the pool weakly: it never keeps a pool
//! alive, and a pool dropped first is simply skipped.

mod guard;
mod manager;
mod pins;
mod session;
mod shared;
mod waiter;

use std::fmt;
use std::sync::Weak;
use std::time::{Duration, Instant};

pub use guard::PooledConnection;
pub use session::Session;

/// Options for a blocking [`Pool`] (see [`crate::Builder`]).
pub type Builder<M> = crate::Builder<Pool<M>>;
pub use manager::Manager;

use crate::Error;
use crate::core::{ConfigError, Health, OwnerId, PoolState, Ticket};
use crate::driver::Driven as _;
use crate::driver::deadline::{Deadline, Patience};
use crate::driver::handle::{Closes, Handle};
use crate::driver::lease::Lease;
use crate::driver::{Handed, Outcome, PoolRef, Step};
use crate::sync::Arc;
use pins::Reclaim;
use shared::Shared;
use waiter::ThreadMailbox;

/// A connection as this pool keeps it: the manager's, with when it last
/// worked ([`Stamped`](crate::driver::Stamped)).
pub(crate) type Conn<M> = crate::driver::Stamped<<M as Manager>::Connection>;

/// A blocking connection pool. See the [module documentation](self).
pub struct Pool<M: Manager> {
    shared: Handle<Shared<M>>,
}

impl<M: Manager> Pool<M> {
    /// A pool with the default options (see [`Builder`]).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// let pool = Pool::new(|| std::net::TcpStream::connect("127.0.0.1:5432"))?;
    /// assert_eq!(pool.state().total(), 0, "nothing opened until asked");
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn new(manager: M) -> Result<Self, ConfigError> {
        Builder::default().build(manager)
    }

    /// Options for a new pool (see [`crate::Builder`]).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().max_size(2).min_size(1).build(noop)?;
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn builder() -> Builder<M> {
        Builder::default()
    }

    /// Checks out a connection: this thread's pinned one when it has a pin,
    /// waiting in line for it if it is busy, up to the checkout timeout.
    /// The first `get()` pins the thread; until `max_size` connections
    /// exist each new thread gets one of its own.
    ///
    /// ```
    /// # use pinpool::blocking::{Pool, PooledConnection};
    /// let pool = Pool::new(|| Ok::<_, std::io::Error>(Vec::<String>::new()))?;
    /// pool.get()?.push("SET search_path = app".into());
    /// let conn = pool.get()?; // the same connection: this thread is pinned
    /// assert_eq!(conn.len(), 1);
    /// let other = std::thread::scope(|s| s.spawn(|| pool.get().map(|c| c.len())).join().unwrap())?;
    /// assert_eq!(other, 0, "another thread, another connection");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn get(&self) -> Result<PooledConnection<'_, M>, Error<M::Error>> {
        self.get_with(Patience::PoolTimeout, || PoolRef::Borrowed(&self.shared))
    }

    /// Like [`get`](Self::get), for a guard that owns a reference to the
    /// pool (`'static`: it can be moved into another thread, or kept in a
    /// struct that does not borrow the pool). The connection is still this
    /// thread's pinned one.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// let pool = Pool::new(|| Ok::<_, std::io::Error>(0u32))?;
    /// let mut conn = pool.get_owned()?;
    /// std::thread::spawn(move || *conn += 1).join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_owned(&self) -> Result<PooledConnection<'static, M>, Error<M::Error>> {
        self.get_with(Patience::PoolTimeout, || {
            PoolRef::Owned(Arc::clone(&self.shared))
        })
    }

    /// The guard for a connection this pool just handed out, borrowing the
    /// pool.
    fn lend(&self, handed: Handed<Conn<M>>) -> PooledConnection<'_, M> {
        PooledConnection::new(PoolRef::Borrowed(&self.shared), handed)
    }

    /// [`get`](Self::get) with this call's own timeout in place of the
    /// pool's [`checkout_timeout`](crate::Builder::checkout_timeout).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # use std::time::Duration;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().max_size(1).build(noop)?;
    /// let held = pool.get()?;
    /// let blocked = std::thread::scope(|s| {
    ///     s.spawn(|| pool.get_timeout(Duration::from_millis(10)).map(drop)).join().unwrap()
    /// });
    /// assert!(matches!(blocked, Err(pinpool::Error::Timeout { .. })));
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_timeout(
        &self,
        timeout: Duration,
    ) -> Result<PooledConnection<'_, M>, Error<M::Error>> {
        self.get_with(Patience::UpTo(timeout), || PoolRef::Borrowed(&self.shared))
    }

    /// A connection only if this thread can have one without waiting;
    /// otherwise [`Error::WouldWait`] at once. It binds and asks as
    /// [`get`](Self::get) does (a connection is opened for it when the pool
    /// has room), so a later `try_get()` finds what this one started.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().max_size(1).build(noop)?;
    /// drop(pool.get()?); // opens this thread's connection
    /// let held = pool.try_get()?; // free: taken at once
    /// let refused = std::thread::scope(|s| s.spawn(|| pool.try_get().map(drop)).join().unwrap());
    /// assert!(matches!(refused, Err(pinpool::Error::WouldWait { .. })));
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get(&self) -> Result<PooledConnection<'_, M>, Error<M::Error>> {
        self.get_with(Patience::Never, || PoolRef::Borrowed(&self.shared))
    }

    /// A checkout for the guard that reaches the pool through `pool`, made
    /// once the connection is in hand: a failed checkout touches no
    /// reference count, and the fast path keeps no pool reference live
    /// across its thread-local and lease reads. Inlined into the caller;
    /// what is not the fast path is out of line.
    #[inline(always)]
    fn get_with<'p>(
        &self,
        patience: Patience,
        pool: impl FnOnce() -> PoolRef<'p, Shared<M>>,
    ) -> Result<PooledConnection<'p, M>, Error<M::Error>> {
        // Under `Off` nobody is pinned: any parked connection will do.
        let fast = if self.shared.options.stash {
            self.get_stashed()
        } else {
            self.get_leased()
        };
        let handed = match fast {
            Some(handed) => handed,
            None => self.get_slow(patience)?,
        };
        Ok(PooledConnection::new(pool(), handed))
    }

    /// The fast path under `Pinning::Off`: a connection parked in the
    /// pool's stash, without the lock.
    #[inline(always)]
    fn get_stashed(&self) -> Option<Handed<Conn<M>>> {
        let handed = self.shared.take_stashed()?;
        self.validated(handed)
    }

    /// The fast path: this thread's own parked connection, without the
    /// lock, taken from the lease where the thread keeps it.
    #[inline(always)]
    fn get_leased(&self) -> Option<Handed<Conn<M>>> {
        let shared = &self.shared;
        let key = shared.locked().key();
        let now = || shared.locked().now();
        let (owner, found) = pins::take_back(key, now)?;
        // Rare, and out of line: the lease is looked up again.
        let held = || {
            if let Some((_, lease)) = pins::lease(key) {
                shared.note_lease_holder(&lease, owner);
            }
        };
        let handed = shared.settle(found, held)?;
        self.validated(handed)
    }

    /// The connection parked in `owner`'s `lease`, without the lock.
    #[inline(always)]
    fn take_back(&self, owner: OwnerId, lease: &Lease<Conn<M>>) -> Option<Handed<Conn<M>>> {
        let handed = self.shared.take_back(owner, lease)?;
        self.validated(handed)
    }

    /// A connection just handed out, after validation when it is
    /// configured (and, under `validate_after_idle`, due); `None` (the
    /// connection replaced) when that fails.
    #[inline(always)]
    fn validated(&self, mut handed: Handed<Conn<M>>) -> Option<Handed<Conn<M>>> {
        let shared = &self.shared;
        if shared.must_validate(&mut handed.conn) && !shared.is_valid(handed.id, &mut handed.conn) {
            shared.checkin(handed, Health::Broken);
            return None;
        }
        Some(handed)
    }

    /// The core decides: granted now, or wait for a grant.
    #[inline(never)]
    fn get_slow(&self, patience: Patience) -> Result<Handed<Conn<M>>, Error<M::Error>> {
        let shared = &self.shared;
        let registered = pins::register(shared.locked().key(), || {
            let pool: Weak<dyn Reclaim> = Arc::downgrade(shared) as Weak<dyn Reclaim>;
            pool
        });
        // A thread whose thread-locals are already gone (a checkout from
        // another thread-local's destructor) cannot be pinned: it makes an
        // unpinned checkout under a one-off identity.
        let Some(owner) = registered else {
            return self.checkout_as(crate::driver::fresh_owner(), false, patience);
        };
        let handed = self.checkout_as(owner, true, patience)?;
        // This thread's lease from now on, if the core leased the
        // connection (its later checkouts take it from there, without the
        // core), or none: an earlier lease has ended.
        pins::keep_lease(shared.locked().key(), handed.owner_lease());
        Ok(handed)
    }

    /// A checkout by `owner` (pinning it, or not) through the core,
    /// validated when configured, waiting as `patience` allows.
    fn checkout_as(
        &self,
        owner: OwnerId,
        pins: bool,
        patience: Patience,
    ) -> Result<Handed<Conn<M>>, Error<M::Error>> {
        let shared = &self.shared;
        let mut clock = patience.lazy_deadline(shared.options.checkout_timeout);
        let waits = patience.waits();
        loop {
            let step = shared.with_core(|inner| {
                inner.checkout(owner, pins, waits, ThreadMailbox::for_current_thread)
            });
            let outcome = match step {
                Step::Ready(handed) => Ok(handed),
                Step::Wait(ticket, slot) => self.wait(ticket, &slot, clock.deadline()),
                Step::Failed(error) => Err(error),
            };
            if let Some(conn) = self.validated(outcome?) {
                return Ok(conn);
            }
            // It failed validation and was replaced: ask again, within the
            // same deadline.
            let deadline = clock.deadline();
            if deadline.passed() {
                return Err(Error::Timeout {
                    waited: deadline.waited(),
                    state: Box::new(self.state()),
                });
            }
        }
    }

    /// Parks until `ticket` is granted, fails, or times out.
    fn wait(
        &self,
        ticket: Ticket,
        slot: &shared::Mailbox<M>,
        deadline: Deadline<Instant>,
    ) -> Result<Handed<Conn<M>>, Error<M::Error>> {
        loop {
            // (How long it waited is read only where it is reported: a
            // grant, the common end, needs no clock.)
            match slot.wait(deadline.at) {
                Some(Outcome::Granted(handed)) => return Ok(handed),
                Some(Outcome::Failed(error)) => return Err(error),
                Some(Outcome::Woken) => {
                    let waited = deadline.waited();
                    let retried = self
                        .shared
                        .with_core(|inner| inner.retry(ticket, slot, waited));
                    if let Some(result) = retried {
                        return result;
                    }
                }
                None => {
                    let waited = deadline.waited();
                    return self
                        .shared
                        .with_core(|inner| inner.time_out(ticket, slot, waited));
                }
            }
        }
    }

    /// A [`Session`]: an owner that is a value rather than this thread. Its
    /// first `get()` pins it to a connection (under
    /// [`Pinning::Exclusive`](crate::core::Pinning::Exclusive), one of its
    /// own) and later ones reuse that connection from any thread the
    /// session is moved to; dropping it releases the pin (and the
    /// connection is reset before its next owner).
    ///
    /// ```
    /// use pinpool::blocking::{Pool, PooledConnection};
    /// use pinpool::core::Pinning;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().pinning(Pinning::Exclusive).build(noop)?;
    /// let mut session = pool.session();
    /// let first = PooledConnection::id(&session.get()?);
    /// let again = std::thread::scope(|s| {
    ///     s.spawn(|| PooledConnection::id(&session.get().unwrap())).join().unwrap()
    /// });
    /// assert_eq!(again, first, "the session's connection, from another thread");
    /// drop(session);
    /// assert_eq!(pool.state().pinned_owners, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session(&self) -> Session<M> {
        Session::new(self.clone())
    }

    /// Releases the current thread's pin on this pool (a connection it
    /// holds stays checked out). Its next `get()` pins it afresh.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// drop(pool.get()?);
    /// assert_eq!(pool.state().pinned_owners, 1);
    /// pool.unpin();
    /// assert_eq!(pool.state().pinned_owners, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unpin(&self) {
        if let Some(owner) = pins::current_owner() {
            self.shared.with_core(|inner| inner.unpin(owner));
            // The lease it was served from may be a co-owner's, which the
            // unpin leaves running for them: this thread lets go of it.
            pins::keep_lease(self.shared.locked().key(), None);
        }
    }

    /// A consistent snapshot: connections by state, waiters, pins per
    /// connection and the counters. Ends the fast-path leases (so idle
    /// connections read as idle), which every pinned owner then pays for
    /// at its next checkout; to poll, use [`status`](Self::status).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().max_size(2).build(noop)?;
    /// let held = pool.get()?;
    /// let state = pool.state();
    /// assert_eq!((state.in_use, state.idle, state.pinned_owners), (1, 0, 1));
    /// assert_eq!(state.counters.checkouts, 1);
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self) -> PoolState {
        self.shared.state()
    }

    /// The pool's counts as they stand, for a metrics poller: unlike
    /// [`state`](Self::state) it ends no fast-path lease, so polling it
    /// never slows a pinned owner down. The price: a connection parked in
    /// its owner's lease (or the pool's stash) counts as in use, and the
    /// checkouts served by a lease are counted when that lease ends.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// drop(pool.get()?); // leased to this thread, parked
    /// assert_eq!(pool.status().in_use, 1, "parked in the lease");
    /// assert_eq!(pool.state().idle, 1, "state() ended the lease");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> PoolState {
        self.shared.status()
    }

    /// Closes the pool for every handle: blocked and later `get()`s fail
    /// with [`Error::Closed`], idle connections close now, checked-out ones
    /// when returned. (Dropping the last handle closes it too.)
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// let held = pool.get()?;
    /// pool.close();
    /// assert!(matches!(pool.get(), Err(pinpool::Error::Closed)));
    /// drop(held);
    /// assert_eq!(pool.state().total(), 0, "closed on return");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// A graceful shutdown: [closes](Self::close) the pool, then waits up
    /// to `timeout` for every connection it opened to be closed — idle
    /// ones at once, checked-out ones as their guards drop (the work in
    /// flight finishing), connects and resets under way as they end.
    /// Whether they all were; if not, [`state`](Self::state) says what is
    /// still out. A connection this thread holds itself is not returned
    /// while it waits: drop it first.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// let held = pool.get_owned()?;
    /// let (done, finished) = std::sync::mpsc::channel();
    /// let worker = std::thread::spawn(move || {
    ///     finished.recv().unwrap(); // its work, then its connection back
    ///     drop(held);
    /// });
    /// assert!(!pool.close_and_wait(Duration::ZERO), "one still out");
    /// done.send(())?;
    /// assert!(pool.close_and_wait(Duration::from_secs(60)));
    /// assert_eq!(pool.state().counters.closed, 1);
    /// # worker.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_and_wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        self.close();
        self.shared.locked().shut_down().wait_until(deadline)
    }

    /// Blocks until the pool's state satisfies `done`. Only in the
    /// model-checking build, where a thread's `join` can return before its
    /// thread-local destructors (and so its pin's reclamation) have run.
    #[cfg(pinpool_loom)]
    #[doc(hidden)]
    pub fn wait_for_state(&self, done: impl Fn(&PoolState) -> bool) {
        self.shared.wait_for(done);
    }

    /// The deadline of every `get()` waiting now passes: a model's timer.
    /// Only in the model-checking build, which has no clock.
    #[cfg(pinpool_loom)]
    #[doc(hidden)]
    pub fn expire_waiting_checkouts(&self) {
        self.shared.expire_waiting_checkouts();
    }

    /// Clears the pool, as a driver does when its server may have dropped
    /// every connection: idle connections close now, checked-out and
    /// connecting ones when they come back, pinned owners move to fresh
    /// connections; the pool pauses — blocked and later `get()`s fail with
    /// the retryable [`Error::Paused`] — until [`ready`](Self::ready).
    /// Clearing a paused pool does nothing.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// drop(pool.get()?);
    /// pool.clear(); // say, the server stepped down
    /// let paused = pool.get().map(drop);
    /// assert!(matches!(paused, Err(pinpool::Error::Paused)));
    /// assert!(paused.unwrap_err().is_retryable());
    /// pool.ready();
    /// pool.get()?; // a fresh connection
    /// assert_eq!(pool.state().counters.closed, 1, "the stale one");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) {
        self.shared.with_core(|inner| inner.clear(false));
    }

    /// [`clear`](Self::clear), also abandoning the connects in progress:
    /// they are reported closed now, and closed as they finish (CMAP's
    /// `interruptInUseConnections`; checked-out connections still close
    /// only when returned). A manager with an
    /// [`interrupt_handle`](Manager::interrupt_handle) also breaks off the
    /// operations running on checked-out connections, so their holders
    /// return them sooner.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// let before = pool.state().generation;
    /// pool.clear_interrupting();
    /// assert_eq!(pool.state().generation, before + 1, "older connections are stale");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_interrupting(&self) {
        self.shared.with_core(|inner| inner.clear(true));
    }

    /// Resumes a paused pool (cleared, or built with
    /// [`start_paused`](crate::Builder::start_paused)): `get()` works
    /// again and `min_size` is refilled.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().start_paused(true).build(noop)?;
    /// assert!(matches!(pool.get().map(drop), Err(pinpool::Error::Paused)));
    /// pool.ready(); // once the server is known to be up
    /// pool.get()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready(&self) {
        self.shared.with_core(|inner| inner.ready());
    }

    /// Changes the pool's `max_size` while it runs, refusing a size it
    /// could not be built with. Growing lets waiting `get()`s open
    /// connections at once. Shrinking closes idle connections now and
    /// checked-out ones as they are returned (reason
    /// [`Shrunk`](crate::core::CloseReason::Shrunk)) until the pool is
    /// within the new size, opening none meanwhile; threads pinned to a
    /// closed connection move to one that is left, while an
    /// [`Exclusive`](crate::core::Pinning::Exclusive) session's connection
    /// closes only once its owner lets go. See
    /// [`Core::resize`](crate::core::Core::resize).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().max_size(4).build(noop)?;
    /// let held = pool.get()?;
    /// pool.resize(1)?;
    /// assert!(pool.resize(0).is_err(), "a size it could not be built with");
    /// drop(held);
    /// assert_eq!(pool.state().total(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resize(&self, max_size: usize) -> Result<(), ConfigError> {
        self.shared.with_core(|inner| inner.resize(max_size))
    }

    /// The pool's name, as its [metrics](crate::metrics) carry it (see
    /// [`Builder::name`](crate::Builder::name)).
    ///
    /// ```
    /// # use pinpool::blocking::{Pool, PooledConnection};
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// assert!(pool.name().starts_with("pinpool-"), "no name given, none from the manager");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        self.shared.options.name()
    }

    /// The manager this pool opens connections with.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// let pool = Pool::new(|| Ok::<_, std::io::Error>(()))?;
    /// let _ = pool.manager()()?; // the closure it was built with
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }
}

impl<M: Manager> crate::builder::sealed::Sealed for Pool<M> {}

impl<M: Manager> crate::BuiltPool for Pool<M> {
    /// Eventual fairness: a thread that returns its connection and asks
    /// again while it still runs may re-take it (see
    /// [`WakePolicy::Eventual`](crate::core::WakePolicy::Eventual)).
    const DEFAULT_WAKE: crate::core::WakePolicy = crate::core::WakePolicy::DEFAULT_EVENTUAL;
}

impl<M: Manager> crate::Builder<Pool<M>> {
    /// Builds the pool, rejecting an invalid configuration. Starts opening
    /// `min_size` connections in the background.
    pub fn build(self, manager: M) -> Result<Pool<M>, ConfigError> {
        let (core, mut options) = self.into_parts(manager.connect_timeout())?;
        options.name_from(|| manager.pool_name());
        options.validation =
            (options.validation).or_every_checkout(manager.validates_every_checkout());
        // Only unpinned checkouts use the stash, and a blocking thread is
        // unpinned only under `Off` (or once its thread-locals are gone).
        options.stash = core.config().pinning == crate::core::Pinning::Off;
        Ok(Pool {
            shared: Handle::first(Shared::new(manager, core, options)),
        })
    }
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Result<(), std::io::Error> {
        Ok(())
    }

    /// While another thread holds the pool lock, a pinned thread still
    /// re-acquires and returns its own connection, and under `Off` a thread
    /// takes and returns a stashed one: the fast paths take the lock
    /// neither on checkout nor on checkin.
    #[test]
    fn the_fast_paths_reuse_a_connection_without_the_pool_lock() {
        use crate::core::Pinning;
        let every = [
            Pinning::Strict,
            Pinning::Exclusive,
            Pinning::Affinity,
            Pinning::Off,
        ];
        for pinning in every {
            let pool = Pool::builder().pinning(pinning).build(noop).unwrap();
            let finished = crate::driver::finishes_while_locked(
                || pool.shared.lock(),
                |warmed_up, done| {
                    drop(pool.get().unwrap()); // the slow path leases it
                    warmed_up();
                    for _ in 0..1_000 {
                        drop(pool.get().unwrap());
                    }
                    done();
                },
            );
            assert!(finished, "{pinning:?}: the fast path blocked on the lock");
            let counters = pool.state().counters;
            assert_eq!(counters.checkouts, 1_001, "fast checkouts are counted");
            assert_eq!(counters.checkins, 1_001);
        }
    }

    /// A pinned thread's guard dropped on another thread parks the
    /// connection in the thread's lease: the owner's next checkouts take
    /// it back without the lock, as if it had dropped the guard itself.
    #[test]
    fn a_guard_dropped_on_another_thread_parks_for_its_owner() {
        let pool = Pool::new(noop).unwrap();
        let finished = crate::driver::finishes_while_locked(
            || pool.shared.lock(),
            |warmed_up, done| {
                drop(pool.get().unwrap()); // the slow path leases it
                let held = pool.get_owned().unwrap();
                std::thread::spawn(move || drop(held)).join().unwrap();
                warmed_up();
                for _ in 0..3 {
                    drop(pool.get().unwrap());
                }
                done();
            },
        );
        assert!(finished, "the owner's checkout went for the lock");
        let counters = pool.state().counters;
        assert_eq!(counters.checkouts, 5, "fast checkouts are counted");
        assert_eq!(counters.opened, 1, "one connection, reused");
    }

    /// A guard that outlives both its owner's thread and its lease: the
    /// owner's exit recalls the lease while the guard holds the
    /// connection, so nothing but the pool keeps the lease for the guard
    /// (debug builds assert the pool still has it as the connection comes
    /// back), and the guard's drop, finding the lease closed, checks the
    /// connection in: idle, and reused rather than replaced.
    #[test]
    fn a_guard_outliving_its_owner_and_its_lease_checks_its_connection_in() {
        let pool = Arc::new(Pool::builder().max_size(1).build(noop).unwrap());
        let owner = Arc::clone(&pool);
        let held = std::thread::spawn(move || {
            drop(owner.get().unwrap()); // the slow path leases it
            owner.get_owned().unwrap() // from the lease
        })
        .join()
        .unwrap();
        assert_eq!(pool.status().in_use, 1, "held, its owner gone");
        drop(held);
        let state = pool.state();
        assert_eq!((state.in_use, state.idle), (0, 1));
        drop(pool.get().unwrap());
        assert_eq!(pool.state().counters.opened, 1, "one connection, reused");
    }

    /// A thread keeps its lease on every pool it uses in its one registry:
    /// the fast path serves the pool it registered with second as it
    /// serves the first, without either pool's lock.
    #[test]
    fn a_thread_pinned_on_two_pools_takes_each_from_its_lease() {
        let (first, second) = (Pool::new(noop).unwrap(), Pool::new(noop).unwrap());
        let finished = crate::driver::finishes_while_locked(
            || (first.shared.lock(), second.shared.lock()),
            |warmed_up, done| {
                drop(first.get().unwrap()); // registers, and is leased
                drop(second.get().unwrap()); // registers second
                warmed_up();
                for _ in 0..3 {
                    drop(second.get().unwrap());
                    drop(first.get().unwrap());
                }
                done();
            },
        );
        assert!(finished, "a checkout went for the lock");
    }

    /// Threads pinned to one connection take turns on it without the
    /// lock: the one coming back finds it parked in the other's lease and
    /// takes it from there, as the core would grant it, and from then on
    /// each finds it parked in the lease they share.
    #[test]
    fn co_owner_threads_take_turns_without_the_lock() {
        use std::sync::mpsc;
        let pool = Pool::builder().max_size(1).build(noop).unwrap();
        let finished = crate::driver::finishes_while_locked(
            || pool.shared.lock(),
            |warmed_up, done| {
                let (turn, other_turn) = mpsc::channel::<()>();
                let (took, other_took) = mpsc::channel::<()>();
                std::thread::scope(|s| {
                    drop(pool.get().unwrap()); // this thread binds first
                    // The other binds too (ending this thread's lease),
                    // then takes each turn given it; it does not exit (which
                    // takes the lock) before this thread is done.
                    let pool = &pool;
                    s.spawn(move || {
                        while other_turn.recv().is_ok() {
                            drop(pool.get().unwrap());
                            took.send(()).unwrap();
                        }
                    });
                    let both_take_a_turn = || {
                        turn.send(()).unwrap();
                        other_took.recv().unwrap();
                        drop(pool.get().unwrap());
                    };
                    both_take_a_turn(); // this thread takes the other's lease
                    warmed_up();
                    for _ in 0..5 {
                        both_take_a_turn();
                    }
                    done();
                    drop(turn);
                });
            },
        );
        assert!(finished, "a co-owner's checkout went for the lock");
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 13, "fast checkouts are counted");
        assert_eq!(state.counters.opened, 1, "one connection, shared");
    }

    /// Under `Off` a take that finds the stash cell it used last empty
    /// looks on through the others, and each connection parks in a cell of
    /// its own: the connection parked beside an empty cell is found
    /// without the lock.
    #[test]
    fn a_stash_take_looks_past_an_empty_cell() {
        let pool = Pool::builder()
            .max_size(2)
            .pinning(crate::core::Pinning::Off)
            .build(noop)
            .unwrap();
        let finished = crate::driver::finishes_while_locked(
            || pool.shared.lock(),
            |warmed_up, done| {
                drop(pool.get().unwrap()); // the first connection parks in cell 0
                let first = pool.get().unwrap(); // from cell 0
                // Through the core (which recalls the first's lease): the
                // second connection, which parks in cell 1.
                drop(pool.get().unwrap());
                drop(first); // back through the core: cell 0 is empty
                warmed_up();
                for _ in 0..3 {
                    drop(pool.get().unwrap()); // from cell 1
                }
                done();
            },
        );
        assert!(finished, "the take went for the lock");
    }

    /// What `{:?}` shows: a pool by its id, a session by its owner, a
    /// leaked checkout's holder by its thread (not its backtrace).
    #[test]
    fn debug_output_says_which_pool_session_and_thread() {
        let pool = Pool::new(noop).unwrap();
        let id = pool.shared.options.id;
        assert_eq!(format!("{pool:?}"), format!("Pool {{ id: {id}, .. }}"));
        let session = pool.session();
        let owner = session.owner();
        assert_eq!(
            format!("{session:?}"),
            format!("Session {{ owner: {owner:?}, .. }}")
        );
        let holder = std::thread::Builder::new()
            .name("holder".into())
            .spawn(crate::driver::events::Holder::here)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(format!("{holder:?}"), r#"Holder { thread: "holder", .. }"#);
    }

    /// The stash cell a thread used last is a hint shared by every pool it
    /// uses: a pool with fewer cells starts its scan within its own.
    #[test]
    fn a_stash_scan_starts_within_its_own_cells() {
        let off = |max_size| {
            Pool::builder()
                .max_size(max_size)
                .pinning(crate::core::Pinning::Off)
                .build(noop)
                .unwrap()
        };
        let (wide, narrow) = (off(8), off(1));
        for _ in 0..2 {
            // Through the core, then from the stash: the last from cell 7.
            drop((0..8).map(|_| wide.get().unwrap()).collect::<Vec<_>>());
        }
        drop(narrow.get().unwrap()); // through the core: parks in cell 0
        drop(narrow.get().unwrap()); // from the stash
        assert_eq!(narrow.state().counters.checkouts, 2);
    }

    /// Under a policy that wakes waiters to retry, a woken thread's retry
    /// takes the connection its wake-up was for.
    #[test]
    fn a_woken_waiter_retries_and_takes_the_connection() {
        let pool = Pool::builder()
            .max_size(1)
            .wake(crate::core::WakePolicy::Broadcast)
            .checkout_timeout(Duration::from_secs(5))
            .build(noop)
            .unwrap();
        let held = pool.get().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.get().map(drop));
            let deadline = Instant::now() + Duration::from_secs(20);
            while pool.status().waiting == 0 {
                assert!(Instant::now() < deadline, "the other thread never waited");
                std::thread::yield_now();
            }
            drop(held); // wakes it
            assert!(waiter.join().unwrap().is_ok(), "its retry took it");
        });
        assert_eq!(pool.state().counters.wakeups, 1);
    }

    /// `unpin`, `clear`, `ready` and `close` each reach the core.
    #[test]
    fn unpin_clear_ready_and_close_reach_the_core() {
        let pool = Pool::new(noop).unwrap();
        drop(pool.get().unwrap());
        assert_eq!(pool.state().pinned_owners, 1);
        pool.unpin();
        assert_eq!(pool.state().pinned_owners, 0);
        pool.clear();
        assert!(matches!(pool.get().map(drop), Err(Error::Paused)));
        pool.ready();
        drop(pool.get().unwrap());
        pool.close();
        assert!(matches!(pool.get().map(drop), Err(Error::Closed)));
    }

    /// `unpin` ends this thread's lease and nobody else's. A lease's
    /// fast-path checkouts reach the core's count when it ends, so the
    /// count says whose ended.
    #[test]
    fn unpin_ends_only_this_threads_lease() {
        use std::sync::mpsc;
        let pool = Pool::builder().max_size(2).build(noop).unwrap();
        drop(pool.get().unwrap()); // through the core
        let (arrived, other_arrived) = mpsc::channel();
        let (unpin, may_unpin) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let pool = &pool;
            s.spawn(move || {
                // A new owner: its first checkout ends every lease.
                for _ in 0..2 {
                    drop(pool.get().unwrap()); // 1 through the core, 1 fast
                }
                arrived.send(()).unwrap();
                may_unpin.recv().unwrap();
                pool.unpin();
            });
            other_arrived.recv().unwrap();
            for _ in 0..3 {
                drop(pool.get().unwrap()); // leased again: 1 and 2 fast
            }
            unpin.send(()).unwrap();
        });
        let checkouts = pool.status().counters.checkouts;
        assert_eq!(
            checkouts, 4,
            "three through the core, and the unpinned thread's fast one"
        );
    }

    /// A thread that unpins lets go of the lease it shared with another
    /// thread pinned to its connection: its next `get()` pins it afresh
    /// through the core, rather than take the connection from that lease
    /// as if it were still pinned.
    #[test]
    fn unpinning_lets_go_of_a_shared_lease() {
        use std::sync::mpsc;
        let pool = Pool::builder().max_size(1).build(noop).unwrap();
        drop(pool.get().unwrap()); // this thread binds
        let (bound, other_bound) = mpsc::channel();
        let (done, other_done) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let pool = &pool;
            s.spawn(move || {
                drop(pool.get().unwrap()); // binds too, leased to it
                bound.send(()).unwrap();
                let _ = other_done.recv(); // its pin outlives the rest
            });
            let done = done;
            other_bound.recv().unwrap();
            drop(pool.get().unwrap()); // from the other thread's lease
            pool.unpin();
            assert_eq!(pool.status().pinned_owners, 1, "the other's pin");
            drop(pool.get().unwrap());
            assert_eq!(pool.status().pinned_owners, 2, "pinned afresh");
            drop(done);
        });
    }

    /// `resize` reaches the core: a size the pool could not be built with
    /// is refused, and a smaller one closes the idle connections above it.
    #[test]
    fn resize_reaches_the_core() {
        let pool = Pool::builder()
            .max_size(2)
            .pinning(crate::core::Pinning::Off)
            .build(noop)
            .unwrap();
        drop((pool.get().unwrap(), pool.get().unwrap()));
        assert_eq!(pool.state().total(), 2);
        assert!(pool.resize(0).is_err());
        pool.resize(1).unwrap();
        assert_eq!(pool.state().total(), 1);
    }

    /// A guard shows its connection's id and the connection.
    #[test]
    fn a_guard_debugs_as_its_connection() {
        let pool = Pool::new(|| Ok::<_, std::io::Error>(7u8)).unwrap();
        let shown = format!("{:?}", pool.get().unwrap());
        assert!(shown.starts_with("PooledConnection { id: "), "{shown}");
        assert!(shown.ends_with("conn: 7 }"), "{shown}");
    }

    /// A session's connection comes back through its own lease, as a
    /// thread's does: 1,000 get/drop cycles while the pool lock is held.
    #[test]
    fn a_session_reuses_its_connection_without_the_pool_lock() {
        let pool = Pool::builder()
            .pinning(crate::core::Pinning::Exclusive)
            .build(noop)
            .unwrap();
        let mut session = pool.session();
        drop(session.get().unwrap()); // the slow path leases it
        let finished = crate::driver::finishes_while_locked(
            || pool.shared.lock(),
            |warmed_up, done| {
                warmed_up();
                for _ in 0..1_000 {
                    drop(session.get().unwrap());
                }
                done();
            },
        );
        assert!(finished, "a session's fast path blocked on the lock");
        drop(session);
        assert_eq!(pool.state().counters.checkouts, 1_001);
    }
}

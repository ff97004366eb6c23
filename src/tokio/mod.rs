//! The async pool for Tokio: what an async driver embeds (feature `tokio`,
//! on by default).
//!
//! Every decision comes from the [core](crate::core), as in the
//! [blocking](crate::blocking) pool; this module registers wakers instead
//! of parking threads, runs connects as tasks, and pins *tasks* rather
//! than threads.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pinpool::tokio::{Pool, PooledConnection};
//!
//! let pool = Pool::builder()
//!     .max_size(2)
//!     .build(|| async { Ok::<_, std::io::Error>(Vec::<String>::new()) })?;
//!
//! // Inside a pinned scope every get() uses the same connection.
//! pool.pinned(async {
//!     let first = {
//!         let mut conn = pool.get().await?;
//!         conn.push("hello".into());
//!         PooledConnection::id(&conn)
//!     };
//!     let conn = pool.get().await?;
//!     assert_eq!(PooledConnection::id(&conn), first);
//!     assert_eq!(*conn, ["hello"]);
//!     Ok::<_, pinpool::Error<std::io::Error>>(())
//! })
//! .await?;
//!
//! // The scope ended: its pin was released.
//! assert_eq!(pool.state().pinned_owners, 0);
//! // Outside a scope, get() takes whichever connection is free.
//! let conn = pool.get().await?;
//! # drop(conn);
//! # Ok(())
//! # }
//! ```
//!
//! # Task pinning
//! Thread identity means nothing to tasks, so pins are per *scope*:
//! [`Pool::pinned`] wraps a future, and every `get()` made while it runs is
//! one owner's — its first binds the scope to a connection (see
//! [`Pinning`](crate::core::Pinning)), later ones reuse it, waiting in line
//! when it is busy. The pin is released when the future completes or is
//! dropped (cancelled, aborted, the runtime shut down). A `get()` outside
//! any scope is unpinned: the first connection that frees serves it, in
//! arrival order. Both take a lock-free fast path while nobody waits: a
//! scope re-uses its own idle connection, an unpinned `get()` takes any
//! idle one the pool has stashed.
//!
//! # Cancellation
//! A `get()` future may be dropped at any point — by `select!`, a timeout,
//! an aborted task. A waiting one withdraws from the line; if a connection
//! was granted to it in the same instant, that connection passes to the
//! next waiter or back to idle, never lost and never counted twice.
//!
//! # Runtime
//! Works on the multi-thread and the current-thread runtime; the runtime
//! must have its time driver enabled (`enable_time`/`enable_all`), which
//! checkout timeouts use. Connects run as tasks on the current runtime, or
//! on the one the pool was built or first used in when a guard is dropped
//! outside any.

mod get;
mod guard;
mod later;
mod manager;
mod scope;
mod session;
mod shared;
mod waiter;

use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

use std::time::Duration;

use tokio::time::{Instant, timeout_at};

pub use guard::PooledConnection;
pub use manager::Manager;
pub use scope::Pinned;
pub use session::Session;

use crate::Error;
use crate::core::{ConfigError, OwnerId, PoolState, Ticket};
use crate::driver::Driven as _;
use crate::driver::InPlace;
use crate::driver::deadline::{Deadline, LazyDeadline, Patience};
use crate::driver::handle::{Closes, Handle};
use crate::driver::lease::Lease;
use crate::driver::{Handed, Outcome, PoolRef, Step, fresh_owner};
use crate::sync::Arc;
use get::FastFirst;
use shared::Shared;
use waiter::TaskMailbox;

/// Options for an async [`Pool`] (see [`crate::Builder`]).
pub type Builder<M> = crate::Builder<Pool<M>>;

/// A connection as this pool keeps it: the manager's, with when it last
/// worked ([`Stamped`](crate::driver::Stamped)).
pub(crate) type Conn<M> = crate::driver::Stamped<<M as Manager>::Connection>;

/// An async connection pool. See the [module documentation](self).
pub struct Pool<M: Manager> {
    shared: Handle<Shared<M>>,
}

impl<M: Manager> Pool<M> {
    /// A pool with the default options (see [`Builder`]). Building needs
    /// no runtime; connects start on the runtime of the first `get()`.
    ///
    /// ```
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| tokio::net::TcpStream::connect("127.0.0.1:5432"))?;
    /// assert_eq!(pool.state().total(), 0, "nothing opened until asked");
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn new(manager: M) -> Result<Self, ConfigError> {
        Builder::default().build(manager)
    }

    /// Options for a new pool (see [`crate::Builder`]).
    ///
    /// ```
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::builder().max_size(2).build(|| async { Ok::<_, std::io::Error>(()) })?;
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn builder() -> Builder<M> {
        Builder::default()
    }

    /// Checks out a connection: the scope's pinned one inside
    /// [`Pool::pinned`] (waiting in line for it if it is busy), otherwise
    /// the first that is free; up to the checkout timeout. As an `async
    /// fn`'s would, the future does nothing until it is polled: the scope
    /// it is first polled in is the one it acts for.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(Vec::<u8>::new()) })?;
    /// pool.pinned(async {
    ///     pool.get().await?.push(1);
    ///     assert_eq!(pool.get().await?.len(), 1, "the scope's own connection");
    ///     Ok::<_, pinpool::Error<std::io::Error>>(())
    /// })
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get(&self) -> impl Future<Output = Result<PooledConnection<'_, M>, Error<M::Error>>> {
        self.get_with(
            || Patience::PoolTimeout,
            |pool| PoolRef::Borrowed(&pool.shared),
        )
    }

    /// [`get`](Self::get) with this call's own timeout in place of the
    /// pool's [`checkout_timeout`](crate::Builder::checkout_timeout).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// # use std::time::Duration;
    /// let pool = Pool::builder().max_size(1).build(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let held = pool.get().await?;
    /// let blocked = pool.get_timeout(Duration::from_millis(10)).await;
    /// assert!(matches!(blocked, Err(pinpool::Error::Timeout { .. })));
    /// # drop(held);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<PooledConnection<'_, M>, Error<M::Error>>> {
        self.get_with(
            move || Patience::UpTo(timeout),
            |pool| PoolRef::Borrowed(&pool.shared),
        )
    }

    /// A connection only if one is free for this caller now; otherwise
    /// [`Error::WouldWait`] at once (it awaits only validation, when that
    /// is configured). It asks as [`get`](Self::get) does — a connection
    /// is opened for it when the pool has room — so a later `try_get()`
    /// finds what this one started.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::builder().max_size(1).build(|| async { Ok::<_, std::io::Error>(()) })?;
    /// drop(pool.get().await?); // opened, and now idle
    /// let held = pool.try_get().await?;
    /// let refused = pool.try_get().await;
    /// assert!(matches!(refused, Err(pinpool::Error::WouldWait { .. })));
    /// # drop(held);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_get(
        &self,
    ) -> impl Future<Output = Result<PooledConnection<'_, M>, Error<M::Error>>> {
        self.get_with(|| Patience::Never, |pool| PoolRef::Borrowed(&pool.shared))
    }

    /// Like [`Pool::get`], for a guard that owns a reference to the pool
    /// (`'static`: it can be moved into a spawned task).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(0u32) })?;
    /// let mut conn = pool.get_owned().await?;
    /// tokio::spawn(async move { *conn += 1 }).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_owned(
        &self,
    ) -> impl Future<Output = Result<PooledConnection<'static, M>, Error<M::Error>>> {
        self.get_with(
            || Patience::PoolTimeout,
            |pool| PoolRef::Owned(Arc::clone(&pool.shared)),
        )
    }

    /// A [`Session`]: an owner that is a value rather than a scope. Its
    /// first `get()` pins it to a connection (under
    /// [`Pinning::Exclusive`](crate::core::Pinning::Exclusive), one of its
    /// own) and later ones reuse that connection from any task the session
    /// is moved to — `tokio::spawn` included, which a [`pinned`](Self::pinned)
    /// scope does not reach; dropping it releases the pin (and the
    /// connection is reset before its next owner).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use pinpool::core::Pinning;
    /// use pinpool::tokio::{Pool, PooledConnection};
    ///
    /// let pool = Pool::builder()
    ///     .pinning(Pinning::Exclusive)
    ///     .build(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let mut session = pool.session();
    /// let first = PooledConnection::id(&session.get().await?);
    /// let again = tokio::spawn(async move {
    ///     PooledConnection::id(&session.get().await.unwrap())
    /// })
    /// .await?;
    /// assert_eq!(again, first, "the session's connection, in another task");
    /// assert_eq!(pool.state().pinned_owners, 0, "the session was dropped");
    /// # Ok(())
    /// # }
    /// ```
    pub fn session(&self) -> Session<M> {
        Session::new(self.clone())
    }

    /// A checkout on this pool as the current scope's owner (or unpinned,
    /// outside one), waiting with the `patience` it gives, for a guard
    /// that reaches the pool through `guard_pool`: a [`FastFirst`] future,
    /// whose first poll tries the fast paths and, only if they fail,
    /// builds the [`checkout`](Self::checkout) that may wait. The
    /// patience comes from a closure so that a `get()`'s, a constant,
    /// takes no room in the future (`benches/instructions.sh`: a scope's
    /// get + drop, 101 instructions with it stored, 96 without).
    #[inline(always)]
    fn get_with<'p, 'g>(
        &'p self,
        patience: impl FnOnce() -> Patience,
        guard_pool: impl Fn(&'p Self) -> PoolRef<'g, Shared<M>>,
    ) -> impl Future<Output = Result<PooledConnection<'g, M>, Error<M::Error>>> {
        FastFirst::new(
            self,
            guard_pool,
            |pool| pool.scope_now(),
            move |pool, guard_pool, caller, found| {
                pool.checkout(guard_pool, caller, patience(), found)
            },
        )
    }

    /// A checkout that [`checkout_now`](Self::checkout_now) could not
    /// end: `found` is what its fast paths found (to validate), if
    /// anything; otherwise the core decides. A round whose connection
    /// fails validation tries the fast paths again, then the core.
    async fn checkout<'p, 'g>(
        &'p self,
        guard_pool: impl Fn(&'p Self) -> PoolRef<'g, Shared<M>>,
        mut caller: Caller<'_, Conn<M>>,
        patience: Patience,
        mut found: Option<Handed<Conn<M>>>,
    ) -> Result<PooledConnection<'g, M>, Error<M::Error>> {
        let shared = &self.shared;
        shared.note_runtime();
        let mut clock = patience.lazy_deadline(shared.options.checkout_timeout);
        loop {
            let mut handed = match found.take() {
                Some(handed) => handed,
                None => {
                    let (owner, pins) = match &caller {
                        Caller::Scope(Some(scope)) => (scope.owner, true),
                        Caller::Scope(None) => (fresh_owner(), false),
                        Caller::Session { owner, .. } => (*owner, true),
                    };
                    let handed = self.ask_core(owner, pins, patience, &mut clock).await?;
                    // The owner's lease from now on, if the core leased
                    // the connection (its later checkouts take it from
                    // there, without the core), or none: an earlier lease
                    // has ended.
                    let lease = handed.owner_lease();
                    match &mut caller {
                        Caller::Session { lease: kept, .. } => **kept = lease,
                        // (Nothing to change for a scope that had none:
                        // under contention, most.)
                        Caller::Scope(Some(scope)) if lease.is_some() || scope.leased => {
                            scope::keep_lease(shared.locked().key(), scope.owner, lease);
                        }
                        Caller::Scope(_) => {}
                    }
                    handed
                }
            };
            let validate = shared.must_validate(&mut handed.conn);
            // Until validated, a connection whose checkout is dropped or
            // panics is checked in as broken.
            let mut conn = PooledConnection::new(guard_pool(self), handed, validate);
            if !validate {
                return Ok(conn);
            }
            let deadline = clock.deadline();
            if self.validate(&mut conn, deadline).await {
                conn.validated(shared);
                return Ok(conn);
            }
            drop(conn); // closed and replaced
            if deadline.passed() {
                return Err(Error::Timeout {
                    waited: deadline.waited(),
                    state: Box::new(self.state()),
                });
            }
            if let Caller::Scope(Some(scope)) = &caller
                && scope::current_owner(shared.locked().key()) != Some(scope.owner)
            {
                // Polled outside the scope it began in: that owner may be
                // gone, and the core must never pin a departed owner again.
                return Err(Error::OwnerGone);
            }
            found = self.fast_again(&caller);
        }
    }

    /// Who a `get()` is for — the scope being polled, if any — and what
    /// the fast paths found for it: the scope's parked connection, or
    /// outside a scope any stashed one.
    #[inline(always)]
    fn scope_now(&self) -> (Caller<'static, Conn<M>>, Option<Handed<Conn<M>>>) {
        let shared = &self.shared;
        let locked = shared.locked();
        let key = locked.key();
        let settle = |owner, found| {
            // Rare, and out of line: the lease is looked up again.
            let held = || {
                if let Some(lease) = scope::lease(key) {
                    shared.note_lease_holder(&lease, owner);
                }
            };
            shared.settle(found, held)
        };
        match scope::take_back(key, || locked.now(), settle) {
            Some((scope, found)) => (Caller::Scope(Some(scope)), found),
            None => (Caller::Scope(None), shared.take_stashed()),
        }
    }

    /// The fast paths again, for a checkout's later round (after a failed
    /// validation): a stashed connection, or a session's parked one. A
    /// scope's lease was looked at as the checkout began
    /// ([`scope_now`](Self::scope_now)), and the core decides now.
    fn fast_again(&self, caller: &Caller<'_, Conn<M>>) -> Option<Handed<Conn<M>>> {
        match caller {
            Caller::Scope(Some(_)) => None,
            Caller::Scope(None) => self.shared.take_stashed(),
            Caller::Session { owner, lease } => self.session_fast(*owner, lease.as_deref()),
        }
    }

    /// A session's fast path: the connection parked in its `lease`. Apart
    /// from [`fast_again`](Self::fast_again), which is out of line, so
    /// that a session's `get()` inlines it (`benches/instructions.sh`: a
    /// session's get + drop counted 173 instructions through
    /// `fast_again`, 131 with this).
    #[inline(always)]
    fn session_fast(
        &self,
        owner: OwnerId,
        lease: Option<&Lease<Conn<M>>>,
    ) -> Option<Handed<Conn<M>>> {
        self.shared.take_back(owner, lease?)
    }

    /// A checkout the fast paths served (`found`), made before any
    /// `checkout` future is built (whose state a fast checkout would
    /// otherwise pay to move, `benches/instructions.sh`). `Err` leaves the
    /// rest to [`checkout`](Self::checkout), with the connection found if
    /// the pool validates at all (validation awaits, and that future asks
    /// whether this one is due). It need not note
    /// the runtime, as [`checkout`](Self::checkout) does: whatever a fast
    /// path finds was first handed out by a checkout, or opened by the
    /// pool's build, and both noted it.
    #[inline(always)]
    fn checkout_now<'p>(
        &self,
        pool: impl FnOnce() -> PoolRef<'p, Shared<M>>,
        found: Option<Handed<Conn<M>>>,
    ) -> Result<PooledConnection<'p, M>, Option<Handed<Conn<M>>>> {
        let shared = &self.shared;
        match found {
            Some(handed) if !shared.options.validation.on() => {
                Ok(PooledConnection::new(pool(), handed, false))
            }
            found => Err(found),
        }
    }

    /// Runs `future` with a pin on this pool: every `get()` inside it uses
    /// the same connection, and the pin is released when the future
    /// completes or is dropped. See [task pinning](self#task-pinning).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::{Pool, PooledConnection};
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let (a, b) = pool
    ///     .pinned(async {
    ///         let a = PooledConnection::id(&pool.get().await?);
    ///         let b = PooledConnection::id(&pool.get().await?);
    ///         Ok::<_, pinpool::Error<std::io::Error>>((a, b))
    ///     })
    ///     .await?;
    /// assert_eq!(a, b);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pinned<F: Future>(&self, future: F) -> Pinned<M, F> {
        Pinned::new(Arc::clone(&self.shared), future)
    }

    /// A consistent snapshot: connections by state, waiters, pins per
    /// connection and the counters. Ends the fast-path leases, which every
    /// pinned scope then pays for at its next checkout; to poll, use
    /// [`status`](Self::status).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let held = pool.get().await?;
    /// let state = pool.state();
    /// assert_eq!((state.in_use, state.idle), (1, 0));
    /// assert_eq!(state.counters.checkouts, 1);
    /// # drop(held);
    /// # Ok(())
    /// # }
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
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// drop(pool.get().await?); // stashed for the next unpinned get()
    /// assert_eq!(pool.status().in_use, 1, "parked in the stash");
    /// assert_eq!(pool.state().idle, 1, "state() ended the lease");
    /// # Ok(())
    /// # }
    /// ```
    pub fn status(&self) -> PoolState {
        self.shared.status()
    }

    /// Closes the pool for every handle: waiting and later `get()`s fail
    /// with [`Error::Closed`], idle connections close now, checked-out ones
    /// when returned. (Dropping the last handle closes it too.)
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let held = pool.get().await?;
    /// pool.close();
    /// assert!(matches!(pool.get().await, Err(pinpool::Error::Closed)));
    /// drop(held);
    /// assert_eq!(pool.state().total(), 0, "closed on return");
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// A graceful shutdown: [closes](Self::close) the pool, then resolves
    /// once every connection it opened has been closed — idle ones at
    /// once, checked-out ones as their guards drop (the work in flight
    /// finishing), connects and resets under way as they end. Bound the
    /// wait with [`tokio::time::timeout`]; [`state`](Self::state) then
    /// says what is still out. A connection the awaiting task holds itself
    /// is not returned while it waits: drop it first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let held = pool.get_owned().await?;
    /// let (done, finished) = tokio::sync::oneshot::channel::<()>();
    /// let worker = tokio::spawn(async move {
    ///     let _ = finished.await; // its work, then its connection back
    ///     drop(held);
    /// });
    /// let waited = tokio::time::timeout(Duration::from_millis(1), pool.close_and_wait()).await;
    /// assert!(waited.is_err(), "one still out");
    /// done.send(()).unwrap();
    /// pool.close_and_wait().await;
    /// assert_eq!(pool.state().counters.closed, 1);
    /// # worker.await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close_and_wait(&self) {
        self.close();
        self.shared.locked().shut_down().wait().await;
    }

    /// Clears the pool and pauses it until [`ready`](Self::ready): waiting
    /// `get()`s fail with [`Error::Paused`]. As the blocking pool's
    /// [`clear`](crate::blocking::Pool::clear).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// drop(pool.get().await?);
    /// pool.clear(); // say, the server stepped down
    /// assert!(matches!(pool.get().await, Err(pinpool::Error::Paused)));
    /// pool.ready();
    /// pool.get().await?; // a fresh connection
    /// assert_eq!(pool.state().counters.closed, 1, "the stale one");
    /// # Ok(())
    /// # }
    /// ```
    pub fn clear(&self) {
        self.shared.with_core(|inner| inner.clear(false));
    }

    /// As the blocking pool's
    /// [`clear_interrupting`](crate::blocking::Pool::clear_interrupting).
    ///
    /// ```
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let before = pool.state().generation;
    /// pool.clear_interrupting();
    /// assert_eq!(pool.state().generation, before + 1, "older connections are stale");
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn clear_interrupting(&self) {
        self.shared.with_core(|inner| inner.clear(true));
    }

    /// Resumes a paused pool, as the blocking pool's
    /// [`ready`](crate::blocking::Pool::ready).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::builder().start_paused(true).build(|| async { Ok::<_, std::io::Error>(()) })?;
    /// assert!(matches!(pool.get().await, Err(pinpool::Error::Paused)));
    /// pool.ready(); // once the server is known to be up
    /// pool.get().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn ready(&self) {
        self.shared.with_core(|inner| inner.ready());
    }

    /// Changes the pool's `max_size` while it runs, as the blocking pool's
    /// [`resize`](crate::blocking::Pool::resize) (tasks pinned to a closed
    /// connection move to one that is left).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::builder().max_size(1).build(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let held = pool.get().await?;
    /// pool.resize(2)?;
    /// let second = pool.get().await?; // opened at once, not waited for
    /// assert_eq!(pool.state().in_use, 2);
    /// # drop((held, second));
    /// # Ok(())
    /// # }
    /// ```
    pub fn resize(&self, max_size: usize) -> Result<(), ConfigError> {
        self.shared.with_core(|inner| inner.resize(max_size))
    }

    /// The pool's name, as its [metrics](crate::metrics) carry it (see
    /// [`Builder::name`](crate::Builder::name)).
    ///
    /// ```
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::builder().name("orders").build(|| async { Ok::<_, std::io::Error>(()) })?;
    /// assert_eq!(pool.name(), "orders");
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn name(&self) -> &str {
        self.shared.options.name()
    }

    /// The manager this pool opens connections with.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::{Pool, PooledConnection};
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(7) })?;
    /// assert_eq!(pool.manager()().await?, 7, "the closure it was built with");
    /// # Ok(())
    /// # }
    /// ```
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// The core's answer to a checkout: a connection now, or after waiting
    /// in line for one (up to the deadline).
    #[allow(unsafe_code)]
    async fn ask_core(
        &self,
        owner: OwnerId,
        pins: bool,
        patience: Patience,
        clock: &mut LazyDeadline<Instant>,
    ) -> Result<Handed<Conn<M>>, Error<M::Error>> {
        let shared = &self.shared;
        let waits = patience.waits();
        // Where the outcome is delivered if the checkout waits: in this
        // future, borrowed across its wait, so kept in place (pinned)
        // until it ends. `waiting`, declared after it and so dropped
        // before it, withdraws the checkout from the line first.
        let slot = TaskMailbox::new();
        let mut waiting = WaitingGet {
            shared,
            ticket: None,
            slot: &slot,
        };
        // Its deadline (none for a timeout too large to represent), on the
        // clock before the lock: a checkout that gets this far usually
        // waits, and the read kept out of the lock shortens every hold.
        // Under contention on two workers that made a turn 5 % faster
        // (performance-log.md, "The async pool"), for a clock read (25 ns
        // on these machines) by each checkout the core then serves at
        // once.
        let deadline = waits
            .then(|| clock.deadline().at)
            .flatten()
            .map(|at| at.saturating_duration_since(shared.epoch));
        let mut timer = None;
        let step = shared.with_core(|inner| {
            // SAFETY: `slot` stays in place until this future is dropped
            // or ends, and by then `waiting` has withdrawn the checkout
            // if it still waits (its `drop`) or collected its outcome
            // (`until`), either under the pool lock, removing it from
            // the driver's waiters. The ticket is noted in the same
            // critical section that registers the slot, so a panic after
            // it still withdraws.
            let in_place = || unsafe { InPlace::new(&slot) };
            let step = inner.checkout(owner, pins, waits, in_place);
            if let Step::Wait(ticket, _) = &step {
                waiting.ticket = Some(*ticket);
                // Its deadline, for the pool's timer to keep.
                if let Some(at) = deadline {
                    timer = Some(inner.time_out_at(*ticket, at));
                }
            }
            step
        });
        match step {
            Step::Ready(handed) => Ok(handed),
            Step::Failed(error) => Err(error),
            Step::Wait(ticket, _) => {
                let kept = timer.is_some_and(|wake| shared.timer_keeps(wake));
                waiting.until(ticket, clock.deadline(), kept).await
            }
        }
    }

    /// [`Manager::validate`] within the deadline; a panic, an error or
    /// running out of time all fail it.
    async fn validate(
        &self,
        conn: &mut PooledConnection<'_, M>,
        deadline: Deadline<Instant>,
    ) -> bool {
        let id = PooledConnection::id(conn);
        let mut check = Box::pin(self.shared.manager.validate(conn));
        let caught =
            poll_fn(
                |cx| match catch_unwind(AssertUnwindSafe(|| check.as_mut().poll(cx))) {
                    Ok(Poll::Ready(result)) => Poll::Ready(Some(result)),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(_) => Poll::Ready(None),
                },
            );
        match race(deadline, caught).await {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(error))) => {
                tracing::debug!(%error, %id, "validation failed; replacing the connection");
                false
            }
            Ok(None) => {
                tracing::warn!(%id, "validate panicked; replacing the connection");
                false
            }
            Err(_) => {
                tracing::debug!(%id, "validation ran out of time; replacing the connection");
                false
            }
        }
    }
}

impl<M: Manager> crate::builder::sealed::Sealed for Pool<M> {}

impl<M: Manager> crate::BuiltPool for Pool<M> {
    /// Strict FIFO hand-off: a task woken under eventual fairness often
    /// finds its connection re-taken by the task that returned it and
    /// sleeps again, for nothing; handing it over costs the same wake-up.
    const DEFAULT_WAKE: crate::core::WakePolicy = crate::core::WakePolicy::Handoff;
}

impl<M: Manager> crate::Builder<Pool<M>> {
    /// Builds the pool, rejecting an invalid configuration. `min_size`
    /// connections start opening at once on the current runtime (or on the
    /// first one the pool is used in).
    pub fn build(self, manager: M) -> Result<Pool<M>, ConfigError> {
        let (core, mut options) = self.into_parts(manager.connect_timeout())?;
        options.validation =
            (options.validation).or_every_checkout(manager.validates_every_checkout());
        options.name_from(|| manager.pool_name());
        Ok(Pool {
            shared: Handle::first(Shared::new(manager, core, options)),
        })
    }
}

/// Who a checkout is for.
enum Caller<'s, C> {
    /// The pinned scope being polled (its owner, and whether it had a
    /// lease as the checkout began), or none: an unpinned checkout.
    Scope(Option<scope::Current>),
    /// A [`Session`], which keeps its own lease.
    Session {
        owner: OwnerId,
        lease: &'s mut Option<Arc<Lease<C>>>,
    },
}

/// A waiting checkout. Dropping it before it ends — the `get()` future was
/// cancelled — withdraws it from the line, and checks in a connection that
/// was granted in the same instant.
struct WaitingGet<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    /// Its place in line, until its outcome is collected.
    ticket: Option<Ticket>,
    slot: &'a shared::Mailbox<M>,
}

impl<M: Manager> WaitingGet<'_, M> {
    /// The outcome of the checkout waiting with `ticket` until `deadline`,
    /// which the pool's timer keeps if `kept` (the core then fails the
    /// checkout when it passes); else the checkout keeps it with a timer
    /// of its own (none for a deadline that never comes).
    async fn until(
        mut self,
        ticket: Ticket,
        deadline: Deadline<Instant>,
        kept: bool,
    ) -> Result<Handed<Conn<M>>, Error<M::Error>> {
        let slot = self.slot;
        loop {
            let outcome = if kept {
                Ok(poll_fn(|cx| slot.poll(cx)).await)
            } else {
                race(deadline, poll_fn(|cx| slot.poll(cx))).await
            };
            // (How long it waited is read only where it is reported: a
            // grant, the common end, needs no clock.)
            let result = match outcome {
                Ok(Outcome::Granted(handed)) => Ok(handed),
                Ok(Outcome::Failed(Error::Timeout { state, .. })) => Err(Error::Timeout {
                    waited: deadline.waited(),
                    state,
                }),
                Ok(Outcome::Failed(error)) => Err(error),
                Ok(Outcome::Woken) => {
                    let waited = deadline.waited();
                    let retried = self
                        .shared
                        .with_core(|inner| inner.retry(ticket, slot, waited));
                    match retried {
                        Some(result) => result,
                        None => continue,
                    }
                }
                Err(_) => {
                    let waited = deadline.waited();
                    self.shared
                        .with_core(|inner| inner.time_out(ticket, slot, waited))
                }
            };
            self.ticket = None;
            return result;
        }
    }
}

impl<M: Manager> Drop for WaitingGet<'_, M> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            let slot = self.slot;
            self.shared.with_core(|inner| inner.cancel(ticket, slot));
        }
    }
}

/// The deadline passed first.
struct Elapsed;

/// `future`'s output, unless `deadline` passes first (no timer at all for
/// a deadline that never comes).
async fn race<F: Future>(deadline: Deadline<Instant>, future: F) -> Result<F::Output, Elapsed> {
    match deadline.at {
        Some(at) => timeout_at(at, future).await.map_err(|_| Elapsed),
        None => Ok(future.await),
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

    /// A runtime on this thread, its clock running.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A pool built outside any runtime learns one from its first
    /// checkout (the slow path notes it; the fast paths need not, as they
    /// serve only what a checkout handed out first), and opens there what
    /// is asked for outside any runtime: here, the replacement for a
    /// connection discarded on a plain thread.
    #[test]
    fn a_pool_built_outside_a_runtime_opens_on_its_first_checkouts() {
        let pool = Pool::builder()
            .max_size(1)
            .min_size(1)
            .build(|| async { Ok::<_, std::io::Error>(()) })
            .unwrap();
        let counters = pool.state().counters;
        assert_eq!(counters.connect_failures, 1, "no runtime to open on");
        let runtime = runtime();
        let held = runtime.block_on(pool.get_owned()).unwrap();
        std::thread::spawn(move || PooledConnection::discard(held))
            .join()
            .unwrap();
        let replaced = runtime.block_on(async {
            let replaced = async {
                while pool.state().idle == 0 {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), replaced).await
        });
        let counters = pool.state().counters;
        assert!(replaced.is_ok(), "no replacement: {counters:?}");
        assert_eq!(counters.established, 2, "the first, and its replacement");
        assert_eq!(counters.connect_failures, 1, "only the one at build");
    }

    /// A maintenance run with a lifetime and no idle timeout, or the
    /// reverse, recalls a pinned scope's lease, so the connection parked in
    /// it is checked like any idle one; and the run says how long from now
    /// its next deadline is.
    #[test]
    fn maintenance_recalls_leases_and_counts_its_next_deadline_from_now() {
        let ten = Duration::from_secs(10);
        // `Affinity`: a connection `Strict` owners are pinned to is not
        // closed for idling (its replacement would open at once).
        let pool = || {
            Pool::builder()
                .max_size(1)
                .pinning(crate::core::Pinning::Affinity)
        };
        let lifetime_only = pool().max_lifetime(ten);
        let idle_timeout_only = pool().idle_timeout(ten);
        for builder in [lifetime_only, idle_timeout_only] {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let pool = builder
                    .build(|| async { Ok::<_, std::io::Error>(()) })
                    .unwrap();
                // The scope outlives the runs: its connection stays parked
                // in its lease (the scope's end would check it in).
                pool.pinned(async {
                    drop(pool.get().await.unwrap());
                    tokio::time::advance(Duration::from_secs(4)).await;
                    let run = pool.shared.with_core(|inner| inner.maintain());
                    // Due at 10 s (the lifetime) or 14 s (idle since the
                    // recall at 4 s): at most 10 s from now either way.
                    let due_in = run.due_in.expect("a deadline");
                    assert!(due_in <= ten, "{due_in:?} from now");
                    tokio::time::advance(ten + Duration::from_secs(1)).await;
                    pool.shared.with_core(|inner| inner.maintain());
                    let closed = pool.status().counters.closed;
                    assert_eq!(closed, 1, "the connection parked in the lease");
                })
                .await;
            });
        }
    }

    /// A `get()` dropped while it waits withdraws from the line.
    #[test]
    fn a_dropped_get_withdraws_from_the_line() {
        let runtime = runtime();
        let pool = Pool::builder()
            .max_size(1)
            .build(|| async { Ok::<_, std::io::Error>(()) })
            .unwrap();
        runtime.block_on(async {
            let held = pool.get().await.unwrap();
            {
                let mut waiting = std::pin::pin!(pool.get());
                let first = poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
                assert!(first.is_pending(), "the only connection is held");
                assert_eq!(pool.status().waiting, 1);
            }
            assert_eq!(pool.status().waiting, 0, "withdrawn as it was dropped");
            assert_eq!(pool.state().counters.cancelled, 1);
            drop(held);
        });
    }

    /// A `get()` future does nothing until it is polled, as an `async fn`
    /// would not: made outside any scope and first polled inside one, it
    /// is that scope's checkout, served from the scope's lease.
    #[test]
    fn a_get_acts_for_the_scope_it_is_first_polled_in() {
        let runtime = runtime();
        let pool = Pool::builder()
            .max_size(2)
            .build(|| async { Ok::<_, std::io::Error>(()) })
            .unwrap();
        runtime.block_on(async {
            let early = pool.get();
            assert_eq!(pool.status().counters.checkouts, 0, "not asked yet");
            pool.pinned(async {
                let scopes = PooledConnection::id(&pool.get().await.unwrap());
                // Unpinned, it would have opened the second connection.
                let conn = early.await.unwrap();
                assert_eq!(PooledConnection::id(&conn), scopes);
                assert_eq!(pool.state().total(), 1);
            })
            .await;
        });
    }

    /// A scope shows its owner while it lasts, and none once it ended.
    #[test]
    fn a_scope_shows_its_owner_until_it_ends() {
        let runtime = runtime();
        let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) }).unwrap();
        runtime.block_on(async {
            let mut scope = std::pin::pin!(pool.pinned(async {}));
            let shown = format!("{scope:?}");
            assert!(
                shown.starts_with("Pinned") && shown.contains("owner: Some(OwnerId("),
                "{shown}"
            );
            scope.as_mut().await;
            assert!(format!("{scope:?}").contains("owner: None"), "{scope:?}");
        });
    }

    /// A strict owner's checkout that goes to the core ends its own
    /// connection's lease, not the stash's lease of another connection. A
    /// lease's fast-path checkouts reach the core's count when it ends, so
    /// the count says which ended.
    #[test]
    fn a_strict_owners_checkout_ends_only_its_connections_lease() {
        let runtime = runtime();
        let pool = Pool::builder()
            .max_size(2)
            .pinning(crate::core::Pinning::Strict)
            .build(|| async { Ok::<_, std::io::Error>(()) })
            .unwrap();
        runtime.block_on(pool.pinned(async {
            let held = pool.get().await.unwrap(); // pinned, through the core
            let unpinned = pool.clone();
            tokio::spawn(async move {
                // Outside the scope: the second connection, stash-leased.
                for _ in 0..3 {
                    drop(unpinned.get().await.unwrap()); // 1 through the core, 2 fast
                }
            })
            .await
            .unwrap();
            assert_eq!(pool.status().counters.checkouts, 2);
            // Recalls this owner's lease, then fails: it holds the connection.
            assert!(matches!(pool.get().await, Err(Error::AlreadyHeld)));
            let checkouts = pool.status().counters.checkouts;
            assert_eq!(checkouts, 2, "the stash's lease runs on");
            drop(held);
        }));
    }

    /// While another thread holds the pool lock, a pinned scope still
    /// re-acquires and returns its own connection, and an unpinned task
    /// takes and returns a stashed one: the fast paths take the lock
    /// neither on checkout nor on checkin.
    #[test]
    fn the_fast_paths_reuse_a_connection_without_the_pool_lock() {
        for scoped in [true, false] {
            let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) }).unwrap();
            let finished = crate::driver::finishes_while_locked(
                || pool.shared.lock(),
                |warmed_up, done| {
                    let runtime = runtime();
                    let work = async {
                        drop(pool.get().await.unwrap()); // the slow path leases it
                        warmed_up();
                        for _ in 0..1_000 {
                            drop(pool.get().await.unwrap());
                        }
                        done(); // before the scope ends, which takes the lock
                    };
                    if scoped {
                        runtime.block_on(pool.pinned(work));
                    } else {
                        runtime.block_on(work);
                    }
                },
            );
            assert!(
                finished,
                "scoped: {scoped}: the fast path blocked on the lock"
            );
            let counters = pool.state().counters;
            assert_eq!(counters.checkouts, 1_001, "fast checkouts are counted");
            assert_eq!(counters.checkins, 1_001);
        }
    }

    /// Scopes pinned to one connection take turns on it without the lock:
    /// the one coming back finds it parked in the other's lease and takes
    /// it from there, as the core would grant it, and from then on each
    /// finds it parked in the lease they share.
    #[test]
    fn co_owner_scopes_take_turns_without_the_lock() {
        let pool = Pool::builder()
            .max_size(1)
            .build(|| async { Ok::<_, std::io::Error>(()) })
            .unwrap();
        let finished = crate::driver::finishes_while_locked(
            || pool.shared.lock(),
            |warmed_up, done| {
                // Both bind (the second ends the first's lease), then the
                // first takes it from the second's lease: by the fourth turn.
                const WARM_UP: usize = 4;
                const TURNS: usize = 12;
                let taken = std::cell::Cell::new(0);
                // Neither scope ends (which takes the lock) before both are done.
                let finish = tokio::sync::Barrier::new(2);
                let owner = || {
                    pool.pinned(async {
                        for _ in 0..TURNS / 2 {
                            if taken.get() == WARM_UP {
                                warmed_up();
                            }
                            drop(pool.get().await.unwrap());
                            taken.set(taken.get() + 1);
                            if taken.get() == TURNS {
                                done();
                            }
                            tokio::task::yield_now().await;
                        }
                        finish.wait().await;
                    })
                };
                runtime().block_on(async {
                    // Opened first, so that no turn waits: each ends in the
                    // poll it starts in, whichever owner `join!` polls first.
                    drop(pool.get().await.unwrap());
                    tokio::join!(owner(), owner())
                });
            },
        );
        assert!(finished, "a co-owner's checkout went for the lock");
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 13, "fast checkouts are counted");
        assert_eq!(state.counters.opened, 1, "one connection, shared");
    }

    /// A scope's guard dropped on another thread parks the connection in
    /// the scope's lease: the scope's next checkouts take it back without
    /// the lock.
    #[test]
    fn a_guard_dropped_on_another_thread_parks_for_its_scope() {
        let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) }).unwrap();
        let finished = crate::driver::finishes_while_locked(
            || pool.shared.lock(),
            |warmed_up, done| {
                let runtime = runtime();
                runtime.block_on(pool.pinned(async {
                    drop(pool.get().await.unwrap()); // the slow path leases it
                    let held = pool.get_owned().await.unwrap();
                    std::thread::spawn(move || drop(held)).join().unwrap();
                    warmed_up();
                    for _ in 0..3 {
                        drop(pool.get().await.unwrap());
                    }
                    done(); // before the scope ends, which takes the lock
                }));
            },
        );
        assert!(finished, "the scope's checkout went for the lock");
        let counters = pool.state().counters;
        assert_eq!(counters.checkouts, 5, "fast checkouts are counted");
        assert_eq!(counters.opened, 1, "one connection, reused");
    }
}

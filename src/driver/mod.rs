//! What every pool driver does around the [core](crate::core), whatever
//! it waits with (a parked thread, a task's waker): the core under one
//! lock, the physical connections it stands for, the waiting checkouts and
//! the leases, and the carrying-out of the core's actions — deliveries
//! under the lock, wake-ups, closes and opens after it is released.
//!
//! A driver supplies how a waiter is told (a [`Slot`]) and how a
//! connection is opened and reset ([`Work`]); it decides nothing.

pub(crate) mod deadline;
pub(crate) mod events;
pub(crate) mod handle;
pub(crate) mod lease;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod session;
pub(crate) mod stash;

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use self::metrics::Metrics;
use crate::core::{
    Action, Checkout, CloseReason, ConfigError, ConnId, Core, FailReason, Health, InputError,
    LeaseScope, OwnerId, PoolState, Ticket,
};
use crate::sync::{Arc, Mutex};
use crate::{Error, InterruptHandle};
use events::{Events, Handler, Holder};
use lease::{AnyLease, Lease};
use stash::{Ledger, Stash, StashLease};

/// Owner ids are process-wide and never reused (the core requires it).
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// Ids a thread reserves at once: every unpinned async checkout takes a
/// fresh id, and one shared counter bumped by every core would be a
/// contended cache line on the hot path.
const OWNER_BLOCK: u64 = 1024;

std::thread_local! {
    /// This thread's reserved ids: the next one, and the end of the block.
    static OWNER_IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A fresh owner id: for a thread, a pinned scope or an unpinned checkout.
pub(crate) fn fresh_owner() -> OwnerId {
    let id = OWNER_IDS.try_with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_OWNER.fetch_add(OWNER_BLOCK, Relaxed);
            end = next + OWNER_BLOCK;
        }
        ids.set((next + 1, end));
        next
    });
    // A thread being torn down takes ids one at a time.
    OwnerId(id.unwrap_or_else(|_| NEXT_OWNER.fetch_add(1, Relaxed)))
}

/// What every pool keeps beside its core: its id and the options the
/// drivers (not the core) act on.
#[derive(Clone)]
pub(crate) struct Options {
    /// Identifies the pool in threads' and scopes' pin registrations.
    pub(crate) id: u64,
    /// Names the pool in its metrics; `None` until the pool's `build`
    /// derives it from the manager (see [`Options::name_from`]).
    pub(crate) name: Option<String>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) validate_on_checkout: bool,
    /// Time between maintenance runs; `None`: the core needs none.
    pub(crate) maintenance_interval: Option<Duration>,
    pub(crate) event_handler: Option<Handler>,
    /// Whether the pool's fast path reads the [stash] for checkouts that
    /// pin nobody (a stash nobody reads would only hide idle connections).
    pub(crate) stash: bool,
    /// Model checks only: connects run on loom threads of their own.
    #[cfg(pinpool_loom)]
    pub(crate) connects_on_threads: bool,
}

impl Options {
    /// Names the pool, unless the builder did: after its manager, or if
    /// the manager has no name, `pinpool-<id>`.
    pub(crate) fn name_from(&mut self, manager_name: impl FnOnce() -> Option<String>) {
        let id = self.id;
        self.name
            .get_or_insert_with(|| manager_name().unwrap_or_else(|| format!("pinpool-{id}")));
    }

    /// The pool's name (see [`Options::name_from`]).
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("pinpool")
    }
}

/// The manager's `has_broken`, with a panic in it counted as broken: the
/// connection must come back to the pool whatever the manager does.
pub(crate) fn is_broken(has_broken: impl FnOnce() -> bool) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(has_broken)).unwrap_or(true)
}

/// A guard's hold on its connection: `Some` until the guard is dropped.
pub(crate) struct Held<C>(Option<Handed<C>>);

impl<C> Held<C> {
    pub(crate) fn new(handed: Handed<C>) -> Self {
        Held(Some(handed))
    }

    fn handed(&self) -> &Handed<C> {
        self.0
            .as_ref()
            .expect("a guard holds its connection until dropped")
    }

    pub(crate) fn id(&self) -> ConnId {
        self.handed().id
    }

    pub(crate) fn conn(&self) -> &C {
        &self.handed().conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut C {
        &mut self
            .0
            .as_mut()
            .expect("a guard holds its connection until dropped")
            .conn
    }

    /// See [`Handed::owner_lease`].
    pub(crate) fn owner_lease(&self) -> Option<AnyLease>
    where
        C: Send + 'static,
    {
        self.handed().owner_lease()
    }

    /// Takes the connection out (in the guard's `drop`).
    pub(crate) fn take(&mut self) -> Option<Handed<C>> {
        self.0.take()
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for Held<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("id", &self.id())
            .field("conn", self.conn())
            .finish()
    }
}

/// A connection handed to a checkout: its id, the connection, and its
/// lease when the fast path serves it.
pub(crate) struct Handed<C> {
    pub(crate) id: ConnId,
    pub(crate) conn: Box<C>,
    pub(crate) lease: Option<Leased<C>>,
}

impl<C: Send + 'static> Handed<C> {
    /// Its owner's lease, which the owner keeps to find its connection
    /// parked again (a session keeps it itself).
    pub(crate) fn owner_lease(&self) -> Option<AnyLease> {
        match &self.lease {
            Some(Leased::Owner(lease)) => Some(Arc::clone(lease) as AnyLease),
            _ => None,
        }
    }
}

/// How a handed-out connection is leased.
pub(crate) enum Leased<C> {
    /// To its pinned owner (a thread or a scope; see [`lease`]).
    Owner(Arc<Lease<C>>),
    /// To the pool's stash, for checkouts that pin nobody (see [`stash`]).
    Stash(StashLease),
}

/// What is left to do under the pool lock when a guard returns its
/// connection ([`Inner::finish_return`]).
pub(crate) enum Return<C> {
    /// Check it in to the core.
    CheckIn(Handed<C>, Health),
    /// It was parked in the stash after its lease was recalled: take it
    /// back if the lease still holds it.
    Settle(StashLease),
}

/// A guard returns its connection. A healthy leased one is parked (the
/// fast path, no pool lock) — an owner's lease then goes to `keep`, with
/// its owner;
/// anything else (broken, not leased, recalled meanwhile) is left to
/// [`Inner::finish_return`] under the lock.
#[inline]
pub(crate) fn return_conn<C: Send + 'static>(
    stash: &Stash<C>,
    mut handed: Handed<C>,
    broken: bool,
    keep: impl FnOnce(OwnerId, AnyLease),
    now: impl Fn() -> Duration,
) -> Option<Return<C>> {
    if broken {
        return Some(Return::CheckIn(handed, Health::Broken));
    }
    match handed.lease.take() {
        Some(Leased::Owner(lease)) => match lease.park(handed.conn, now) {
            Ok(()) => {
                keep(lease.owner, lease);
                None
            }
            Err(recalled) => {
                handed.conn = recalled;
                handed.lease = Some(Leased::Owner(lease));
                Some(Return::CheckIn(handed, Health::Healthy))
            }
        },
        Some(Leased::Stash(lease)) => {
            let parked = stash.park(lease, handed.conn, now);
            (!parked).then_some(Return::Settle(lease))
        }
        None => Some(Return::CheckIn(handed, Health::Healthy)),
    }
}

/// What a waiting checkout is told.
pub(crate) enum Outcome<C, E> {
    /// It now holds this connection.
    Granted(Handed<C>),
    /// Woken to retry (Broadcast, Signal and Bounded).
    Woken,
    /// It failed.
    Failed(Error<E>),
}

impl<C, E> Outcome<C, E> {
    /// Stores this outcome in a waiter's `slot`: a final outcome replaces a
    /// pending `Woken`, never the reverse.
    pub(crate) fn store_in(self, slot: &mut Option<Outcome<C, E>>) {
        if matches!(self, Outcome::Woken) && slot.is_some() {
            return;
        }
        *slot = Some(self);
    }
}

/// Where a waiting checkout's outcome is delivered, and how its waiter is
/// woken to collect it.
pub(crate) trait Slot<C, E>: Send + Sync {
    /// Stores an outcome (under the pool lock), by [`Outcome::store_in`].
    fn deliver(&self, outcome: Outcome<C, E>);
    /// Takes the stored outcome, if any.
    fn take(&self) -> Option<Outcome<C, E>>;
    /// Wakes the waiter (after the pool lock is released).
    fn notify(&self);
}

/// How a connect ended: the connection, with the manager's way to
/// interrupt it if it has one, or the error.
pub(crate) type Opened<C, E> = Result<(C, Option<InterruptHandle>), Error<E>>;

/// The immediate result of a checkout under the lock.
pub(crate) enum Step<C, E, S> {
    Ready(Handed<C>),
    Wait(Ticket, Arc<S>),
    Failed(Error<E>),
}

struct Waiting<S> {
    owner: OwnerId,
    /// Whether its checkout pins (see [`Core::may_stash`]).
    pins: bool,
    slot: Arc<S>,
    /// Who is waiting, when leak detection records it.
    holder: Option<Arc<Holder>>,
    /// When the checkout started, by the pool's clock (for its metrics).
    since: Duration,
}

/// The state under the pool lock.
pub(crate) struct Inner<C, E, S> {
    core: Core,
    /// Established connections nobody holds, by id.
    conns: HashMap<ConnId, Box<C>>,
    waiters: HashMap<Ticket, Waiting<S>>,
    /// Connections leased to their pinned owner (checked out in the core).
    leases: HashMap<ConnId, Arc<Lease<C>>>,
    /// The stash's cells (shared with the fast path) and its leases.
    stash: Arc<Stash<C>>,
    ledger: Ledger,
    /// The manager's error for the `connect_failed` being processed.
    connect_failure: Option<Error<E>>,
    /// Who holds each checked-out connection: `Some` with leak detection.
    holders: Option<HashMap<ConnId, Arc<Holder>>>,
    /// How to break off each connection's operation, where the manager
    /// gave a way.
    interrupts: HashMap<ConnId, InterruptHandle>,
    metrics: Metrics,
}

/// What the lock holder leaves to do once the lock is released.
struct Effects<C, S> {
    notify: Vec<Arc<S>>,
    interrupt: Vec<InterruptHandle>,
    background: Vec<Work<C>>,
    close: Vec<Box<C>>,
}

/// Work the core asked for that runs the manager's code, which a driver
/// starts in the background (a thread, a task) once the lock is released
/// and reports back to the core when it ends.
pub(crate) enum Work<C> {
    /// Open connection `conn` (`Action::Open`), then report
    /// [`Inner::opened`].
    Open(ConnId),
    /// Reset this connection's session state (`Action::Reset`), then
    /// report [`Inner::reset_done`].
    Reset(ConnId, Box<C>),
    /// Drop a connection closed because it broke ([`CloseReason::Error`],
    /// [`CloseReason::ResetFailed`]). A broken connection's drop may wait
    /// on its peer — `postgres::Client`'s waits for the reply to a request
    /// it gave up on, for ever over a link that swallows traffic — so the
    /// blocking pool drops it on a thread of its own rather than hang the
    /// caller whose checkin or checkout found it broken. Nothing reports
    /// back: the core counted it closed already.
    Close(Box<C>),
}

/// A pool's shared state as the code common to both pools reaches it: its
/// core under the lock, and how it starts a connect (a thread, a task).
/// What both pools then do the same way is provided here.
pub(crate) trait Shared<C: Send + 'static, E: std::fmt::Display, S: Slot<C, E>>:
    Sized
{
    /// The core and its bookkeeping under the pool lock.
    fn locked(&self) -> &Locked<C, E, S>;

    /// Starts `work` in the background.
    fn spawn(self: &Arc<Self>, work: Work<C>);

    /// Runs `f` under the pool lock, then carries out what it caused.
    fn with_core<R>(self: &Arc<Self>, f: impl FnOnce(&mut Inner<C, E, S>) -> R) -> R {
        self.locked().with_core(f, |work| self.spawn(work))
    }

    /// A snapshot that ends no lease (see [`Inner::status`]).
    fn status(self: &Arc<Self>) -> PoolState {
        self.with_core(|inner| inner.status())
    }

    /// Returns a connection to the core, ending its lease if it had one.
    fn checkin(self: &Arc<Self>, handed: Handed<C>, health: Health) {
        self.with_core(|inner| inner.give_back(handed, health));
    }

    /// A guard returns its connection (see [`Locked::return_conn`]).
    #[inline]
    fn return_conn(
        self: &Arc<Self>,
        handed: Handed<C>,
        broken: bool,
        keep: impl FnOnce(OwnerId, AnyLease),
    ) {
        let spawn = |work| self.spawn(work);
        self.locked().return_conn(handed, broken, keep, spawn);
    }

    /// A parked connection for a checkout that pins nobody, without the
    /// lock (see [`Locked::take_stashed`]).
    #[inline]
    fn take_stashed(self: &Arc<Self>) -> Option<Handed<C>> {
        self.locked().take_stashed(|work| self.spawn(work))
    }

    /// Holds the pool lock (tests prove the fast paths never take it).
    #[cfg(test)]
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner<C, E, S>> {
        self.locked().lock()
    }
}

/// The pool's clock: time since the pool's epoch.
pub(crate) type PoolClock = Box<dyn Fn() -> Duration + Send + Sync>;

/// The core and its bookkeeping under one lock.
pub(crate) struct Locked<C, E, S> {
    inner: Mutex<Inner<C, E, S>>,
    /// The fast path's view of the stash (also in `inner`).
    stash: Arc<Stash<C>>,
    /// Reported to the core before each input when its decisions depend
    /// on time ([`Config::needs_clock`](crate::core::Config::needs_clock)).
    clock: Option<PoolClock>,
    /// Where recorded events go out (with `Config::record_events`).
    events: Option<Events>,
    /// Notified after every change, so a model can wait for one (a loom
    /// `join` may return before the thread's thread-local destructors run).
    #[cfg(pinpool_loom)]
    changed: crate::sync::Condvar,
}

impl<C, E: std::fmt::Display, S: Slot<C, E>> Locked<C, E, S> {
    /// The driver state around `core`, on `clock`, for the pool with
    /// `options`.
    pub(crate) fn new(core: Core, clock: PoolClock, options: &Options) -> Self {
        let config = *core.config();
        let cells = if options.stash {
            stash::cells_for(config.max_size)
        } else {
            0
        };
        let stash = Arc::new(Stash::new(cells));
        let metrics = Metrics::new(options.name(), &core);
        Locked {
            stash: Arc::clone(&stash),
            clock: (config.needs_clock() || Metrics::NEEDS_CLOCK).then_some(clock),
            events: config
                .record_events
                .then(|| Events::new(options.id, options.event_handler.clone())),
            inner: Mutex::new(Inner {
                core,
                conns: HashMap::default(),
                waiters: HashMap::default(),
                leases: HashMap::default(),
                stash,
                ledger: Ledger::new(cells),
                connect_failure: None,
                holders: config.leak_threshold.map(|_| HashMap::default()),
                interrupts: HashMap::default(),
                metrics,
            }),
            #[cfg(pinpool_loom)]
            changed: crate::sync::Condvar::new(),
        }
    }

    /// Runs `f` on the state under the lock, then carries out the actions
    /// it caused with the lock released: wakes waiters, closes connections
    /// (by dropping them) and starts opens and resets with `spawn`.
    pub(crate) fn with_core<R>(
        &self,
        f: impl FnOnce(&mut Inner<C, E, S>) -> R,
        mut spawn: impl FnMut(Work<C>),
    ) -> R {
        let mut effects = Effects {
            notify: Vec::new(),
            interrupt: Vec::new(),
            background: Vec::new(),
            close: Vec::new(),
        };
        let result = {
            let mut inner = self.inner.lock();
            if let Some(clock) = &self.clock {
                inner.core.advance(clock());
            }
            let result = f(&mut inner);
            inner.drain(&mut effects, self.events.as_ref());
            inner.report_metrics();
            // The model checks' oracle for the 2013 bug (loom-tests/): after
            // every input — a checkin, a cancel, a timeout, an owner gone, a
            // failed connect — no waiter may sleep while a connection it can
            // use is idle.
            #[cfg(pinpool_loom)]
            assert_eq!(
                inner.core.stranded(),
                0,
                "lost wake-up: a waiter sleeps while a connection it can use is idle"
            );
            result
        };
        #[cfg(pinpool_loom)]
        self.changed.notify_all();
        // Each call into user code (a waker, an interrupt handle, a
        // connection's `Drop`) is contained: one that panics must not skip
        // the effects after it, above all the opens and resets, whose slots
        // the core counts as connecting or resetting until they are
        // reported. Closes still come before opens, so the physical
        // connections never outnumber `max_size` even for an instant —
        // except broken ones, dropped in the background (`Work::Close`):
        // a replacement must not wait on a drop that may never end.
        for slot in &effects.notify {
            contain("a waker", || slot.notify());
        }
        for handle in &effects.interrupt {
            contain("an interrupt handle", || handle.interrupt());
        }
        if let Some(events) = &self.events {
            events.deliver();
        }
        for conn in effects.close {
            contain("a connection's drop", || drop(conn));
        }
        for work in effects.background {
            spawn(work);
        }
        result
    }

    /// The fast path for a checkout that pins nobody: a connection parked
    /// in the stash, without the lock. One whose lease was recalled
    /// meanwhile goes back through the core (its waiters come first).
    #[inline]
    pub(crate) fn take_stashed(&self, spawn: impl FnMut(Work<C>)) -> Option<Handed<C>> {
        self.stash.take(
            || self.now(),
            |recalled| self.with_core(|inner| inner.give_back(recalled, Health::Healthy), spawn),
        )
    }

    /// A guard returns its connection: parked without the lock when its
    /// lease allows (an owner's lease then goes to `keep`), else through
    /// the core.
    #[inline]
    pub(crate) fn return_conn(
        &self,
        handed: Handed<C>,
        broken: bool,
        keep: impl FnOnce(OwnerId, AnyLease),
        spawn: impl FnMut(Work<C>),
    ) where
        C: Send + 'static,
    {
        if let Some(rest) = return_conn(&self.stash, handed, broken, keep, || self.now()) {
            self.with_core(|inner| inner.finish_return(rest), spawn);
        }
    }

    /// The pool's clock (zero for a pool whose decisions do not depend on
    /// time: it is then never asked).
    #[inline]
    pub(crate) fn now(&self) -> Duration {
        self.clock.as_ref().map_or(Duration::ZERO, |clock| clock())
    }

    /// Whether this thread is delivering the pool's events now (it is
    /// inside the event handler).
    pub(crate) fn delivering_events_here(&self) -> bool {
        self.events.as_ref().is_some_and(Events::delivering_here)
    }

    /// Holds the pool lock (tests prove the fast path never takes it).
    #[cfg(test)]
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, Inner<C, E, S>> {
        self.inner.lock()
    }

    /// The slots of the checkouts waiting now (model checks only: a
    /// model's timer expires them).
    #[cfg(pinpool_loom)]
    pub(crate) fn waiting_slots(&self) -> Vec<Arc<S>> {
        let inner = self.inner.lock();
        inner
            .waiters
            .values()
            .map(|w| Arc::clone(&w.slot))
            .collect()
    }

    /// Blocks until the core's state satisfies `done` (model checks only).
    #[cfg(pinpool_loom)]
    pub(crate) fn wait_for(&self, done: impl Fn(&PoolState) -> bool) {
        let mut inner = self.inner.lock();
        while !done(&inner.core.state()) {
            inner = self
                .changed
                .wait(inner)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

impl<C, E: std::fmt::Display, S: Slot<C, E>> Inner<C, E, S> {
    /// A checkout by `owner` (pinning it, or not): granted now, to wait
    /// for in a slot made by `slot` (when it `waits`), or failed.
    pub(crate) fn checkout(
        &mut self,
        owner: OwnerId,
        pins: bool,
        waits: bool,
        slot: impl FnOnce() -> Arc<S>,
    ) -> Step<C, E, S> {
        // End the leases whose connections this checkout may depend on.
        match self.core.checkout_scope(owner, pins) {
            LeaseScope::None => {}
            LeaseScope::Conn(conn) => self.recall_leases(Recall::Conn(conn)),
            LeaseScope::Free => self.recall_leases(Recall::Stash),
            LeaseScope::All => self.recall_leases(Recall::All),
        }
        let checkout = match (waits, pins) {
            (false, _) => self.core.try_checkout(owner, pins),
            (true, true) => self.core.checkout(owner),
            (true, false) => self.core.checkout_unpinned(owner),
        };
        // Recorded here, on the thread that asks.
        let holder = self.holders.is_some().then(|| Arc::new(Holder::here()));
        let since = self.core.now();
        match checkout {
            Checkout::Granted(conn) => Step::Ready(self.hand_out(owner, pins, conn, holder, since)),
            Checkout::Waiting(ticket) => {
                let slot = slot();
                let waiting = Waiting {
                    owner,
                    pins,
                    slot: Arc::clone(&slot),
                    holder,
                    since,
                };
                self.waiters.insert(ticket, waiting);
                Step::Wait(ticket, slot)
            }
            Checkout::Failed(reason) => Step::Failed(self.failure(reason)),
        }
    }

    /// A woken waiter tries again: `None` while it must go on waiting,
    /// else its outcome — granted now, or the one delivered to its `slot`
    /// meanwhile (see [`Inner::collect`]).
    pub(crate) fn retry(
        &mut self,
        ticket: Ticket,
        slot: &S,
        waited: Duration,
    ) -> Option<Result<Handed<C>, Error<E>>> {
        match self.core.retry(ticket) {
            Ok(Checkout::Granted(conn)) => Some(match self.waiters.remove(&ticket) {
                Some(waiting) => Ok(self.hand_out(
                    waiting.owner,
                    waiting.pins,
                    conn,
                    waiting.holder,
                    waiting.since,
                )),
                None => {
                    // The core granted a ticket the driver does not know:
                    // a driver bug. Return the connection rather than lose it.
                    driver_bug(Err(InputError::NotWaiting(ticket)));
                    self.give_back_unleased(conn);
                    Err(self.timed_out(waited))
                }
            }),
            Ok(Checkout::Waiting(_)) => None,
            Err(InputError::NotWaiting(_)) => Some(self.collect(ticket, slot, waited)),
            Ok(Checkout::Failed(_)) | Err(InputError::WrongConnState { .. }) => {
                debug_assert!(false, "retry only grants or waits");
                None
            }
        }
    }

    /// The waiter's deadline passed: it withdraws with a timeout error,
    /// unless an outcome was delivered to its `slot` first, which it then
    /// takes (see [`Inner::collect`]).
    pub(crate) fn time_out(
        &mut self,
        ticket: Ticket,
        slot: &S,
        waited: Duration,
    ) -> Result<Handed<C>, Error<E>> {
        // The state the waiter gave up in, itself still counted as waiting.
        let error = self.timed_out(waited);
        if self.core.time_out(ticket) {
            self.waiters.remove(&ticket);
            return Err(error);
        }
        self.collect(ticket, slot, waited)
    }

    /// The outcome of `ticket`, which the core no longer has waiting: every
    /// ticket leaves the core's line with exactly one outcome, delivered
    /// to its slot under this lock, so it is there. A waiter never loops on
    /// the belief that it is: if it is not (a driver bug), the checkout
    /// fails as timed out instead of waiting for what will not come.
    fn collect(
        &mut self,
        ticket: Ticket,
        slot: &S,
        waited: Duration,
    ) -> Result<Handed<C>, Error<E>> {
        match slot.take() {
            Some(Outcome::Granted(handed)) => Ok(handed),
            Some(Outcome::Failed(error)) => Err(error),
            Some(Outcome::Woken) | None => {
                driver_bug(Err(InputError::NotWaiting(ticket)));
                self.waiters.remove(&ticket);
                Err(self.timed_out(waited))
            }
        }
    }

    /// A timeout error after `waited`, with the pool's state now.
    fn timed_out(&self, waited: Duration) -> Error<E> {
        Error::Timeout {
            waited,
            state: Box::new(self.core.state()),
        }
    }

    /// Checks `conn`, granted to nobody the driver knows, back in.
    fn give_back_unleased(&mut self, conn: ConnId) {
        if let Some(physical) = self.conns.remove(&conn) {
            let handed = Handed {
                id: conn,
                conn: physical,
                lease: None,
            };
            self.give_back(handed, Health::Healthy);
        }
    }

    /// The waiter gave up (its future was dropped). If an outcome reached
    /// its slot first, a granted connection is checked back in: it passes
    /// to the next waiter or to idle, never lost, never counted twice.
    pub(crate) fn cancel(&mut self, ticket: Ticket, slot: &S) {
        if self.core.cancel(ticket) {
            self.waiters.remove(&ticket);
            return;
        }
        if let Some(Outcome::Granted(handed)) = slot.take() {
            self.give_back(handed, Health::Healthy);
        }
    }

    /// Releases `owner`'s pin on request (and its lease).
    pub(crate) fn unpin(&mut self, owner: OwnerId) {
        self.recall_leases(Recall::Owner(owner));
        self.core.unpin(owner);
    }

    /// `owner` is gone: its lease, pin and waiting tickets are released.
    pub(crate) fn owner_gone(&mut self, owner: OwnerId) {
        self.recall_leases(Recall::Owner(owner));
        self.core.owner_gone(owner);
    }

    /// Closes the pool: waiters fail, idle connections close now, the rest
    /// when they come back.
    pub(crate) fn close(&mut self) {
        self.recall_leases(Recall::All);
        self.core.close();
    }

    /// Clears the pool (see [`Core::clear`]); leased connections come back
    /// first, to be closed as stale.
    pub(crate) fn clear(&mut self, interrupt_in_use: bool) {
        self.recall_leases(Recall::All);
        self.core.clear(interrupt_in_use);
    }

    /// Changes `max_size` (see [`Core::resize`]); when the pool is then
    /// above its size, every lease ends ([`Core::above_size`]): a
    /// connection parked in one comes back, and closes if it is surplus.
    pub(crate) fn resize(&mut self, max_size: usize) -> Result<(), ConfigError> {
        self.core.resize(max_size)?;
        if self.core.above_size() {
            self.recall_leases(Recall::All);
        }
        Ok(())
    }

    /// Resumes a paused pool (see [`Core::ready`]).
    pub(crate) fn ready(&mut self) {
        self.core.ready();
    }

    /// One maintenance run (see [`Core::maintain`]): whether work is left,
    /// and when the core's next deadline falls ([`Core::poll_timeout`]).
    /// Leases are recalled first when lifetimes are configured, so a
    /// pinned owner's parked connection is checked like any idle one.
    pub(crate) fn maintain(&mut self) -> maintenance::Run {
        let config = self.core.config();
        if config.max_lifetime.is_some() || config.idle_timeout.is_some() {
            self.recall_leases(Recall::All);
        }
        let more = self.core.maintain();
        let now = self.core.now();
        self.report_fast_path();
        maintenance::Run {
            more,
            due_in: self.core.poll_timeout().map(|due| due - now),
        }
    }

    /// The core's snapshot as it stands, ending no lease: connections
    /// parked in a lease count as in use, and the checkouts a lease served
    /// are counted when it ends.
    pub(crate) fn status(&self) -> PoolState {
        self.core.state()
    }

    /// A consistent snapshot (recalls the leases, so idle means idle).
    pub(crate) fn state(&mut self) -> PoolState {
        self.recall_leases(Recall::All);
        self.core.state()
    }

    /// Brings the pool's metrics up to date after an operation (see
    /// [`crate::metrics`]): the fast path's counts at most once a second,
    /// then the gauges and counters.
    fn report_metrics(&mut self) {
        if self.metrics.fold_due(self.core.now()) {
            self.report_fast_path();
        }
        self.metrics.publish(&self.core);
    }

    /// Counts in the metrics what the fast path served under the leases
    /// still running.
    fn report_fast_path(&mut self) {
        for lease in self.leases.values() {
            self.metrics.lease_report(lease.cell());
        }
        for cell in self.ledger.live_cells(&self.stash) {
            self.metrics.lease_report(cell);
        }
    }

    /// Reports the end of `Action::Open(conn)`: the connection (with the
    /// manager's way to interrupt it, if any), or the error that the
    /// checkout which asked for it fails with. Returns how long connects
    /// are now backed off ([`Config::connect_backoff`](crate::core::Config::connect_backoff)),
    /// after which the driver must run maintenance (see
    /// [`Core::connects_resume_at`]) — the worker whose connect failed
    /// waits that long and runs it.
    #[must_use = "a backed-off connect resumes only when maintenance runs"]
    pub(crate) fn opened(&mut self, conn: ConnId, result: Opened<C, E>) -> Option<Duration> {
        (self.metrics).connect_ended(conn, self.core.now(), result.is_ok());
        let reported = match result {
            Ok((connection, interrupt)) => {
                self.conns.insert(conn, Box::new(connection));
                if let Some(handle) = interrupt {
                    self.interrupts.insert(conn, handle);
                }
                self.core.connected(conn)
            }
            Err(error) => {
                self.connect_failure = Some(error);
                self.core.connect_failed(conn)
            }
        };
        driver_bug(reported);
        let now = self.core.now();
        self.core
            .connects_resume_at()
            .map(|at| at.saturating_sub(now))
    }

    /// Reports the end of `Action::Reset(conn)`: the connection, clean
    /// when `ok`; a failed one is closed by the core's next action.
    pub(crate) fn reset_done(&mut self, conn: ConnId, physical: Option<Box<C>>, ok: bool) {
        if let Some(physical) = physical {
            self.conns.insert(conn, physical);
        }
        let health = if ok { Health::Healthy } else { Health::Broken };
        driver_bug(self.core.reset_done(conn, health));
    }

    /// Finishes a guard's return of its connection (see [`return_conn`]).
    pub(crate) fn finish_return(&mut self, rest: Return<C>) {
        match rest {
            Return::CheckIn(handed, health) => self.give_back(handed, health),
            Return::Settle(lease) => {
                if let Some(handed) = self.ledger.settle(&self.stash, lease) {
                    self.give_back(handed, Health::Healthy);
                }
            }
        }
    }

    /// Returns a held connection to the core (ending its lease, if any).
    pub(crate) fn give_back(&mut self, handed: Handed<C>, health: Health) {
        match handed.lease {
            Some(Leased::Owner(lease)) => {
                lease.recall();
                if self
                    .leases
                    .get(&handed.id)
                    .is_some_and(|current| Arc::ptr_eq(current, &lease))
                {
                    self.leases.remove(&handed.id);
                }
                self.core.note_lease_reuses(lease.reuses());
                self.metrics.lease_report(lease.cell());
            }
            Some(Leased::Stash(lease)) => {
                self.metrics.lease_report(self.stash.cell(lease));
                let reuses = self.ledger.end(&self.stash, lease);
                self.core.note_lease_reuses(reuses);
            }
            None => {}
        }
        self.metrics.checked_in(handed.id, self.core.now());
        if let Some(holders) = &mut self.holders {
            holders.remove(&handed.id);
        }
        self.conns.insert(handed.id, handed.conn);
        driver_bug(self.core.checkin(handed.id, health));
    }

    /// Ends the matching leases: a parked connection is checked in now, a
    /// held one by its holder when it sees the recall.
    fn recall_leases(&mut self, recall: Recall) {
        let mut parked = Vec::new();
        if !self.leases.is_empty() {
            let ended: Vec<(ConnId, Arc<Lease<C>>)> = match recall {
                // A lookup, not a scan: every strict checkout that must
                // wait recalls its own connection's lease.
                Recall::Conn(conn) => self.leases.remove_entry(&conn).into_iter().collect(),
                // Owners' leases are on connections pinned to them.
                Recall::Stash => Vec::new(),
                Recall::Owner(_) | Recall::All => self
                    .leases
                    .extract_if(|&conn, lease| recall.selects(conn, Some(lease.owner)))
                    .collect(),
            };
            for (conn, lease) in ended {
                if let Some(conn_box) = lease.recall() {
                    parked.push(Handed {
                        id: conn,
                        conn: conn_box,
                        lease: Some(Leased::Owner(lease)),
                    });
                }
            }
        }
        parked.extend(
            self.ledger
                .recall(&self.stash, |conn| recall.selects(conn, None)),
        );
        for handed in parked {
            self.give_back(handed, Health::Healthy);
        }
    }

    /// Takes `conn` out for `owner` (whose checkout pins, or not), leasing
    /// it when the core says the fast path may serve later checkouts: the
    /// owner's, when it is pinned to it ([`Core::may_lease`]; it finds its
    /// lease again through its thread-local or its scope), or any that pins
    /// nobody, through the stash ([`Core::may_stash`]).
    /// `since` is when the checkout started.
    fn hand_out(
        &mut self,
        owner: OwnerId,
        pins: bool,
        conn: ConnId,
        holder: Option<Arc<Holder>>,
        since: Duration,
    ) -> Handed<C> {
        let physical = self
            .conns
            .remove(&conn)
            .expect("the core grants only established connections the pool holds");
        if let (Some(holders), Some(holder)) = (&mut self.holders, holder) {
            holders.insert(conn, holder);
        }
        let now = self.core.now();
        let lease = if self.core.may_lease(owner, conn) {
            let lease = Arc::new(Lease::new(conn, owner, self.core.expires_at(conn)));
            lease.cell().time_first_use(now);
            self.leases.insert(conn, Arc::clone(&lease));
            Some(Leased::Owner(lease))
        } else if self.core.may_stash(conn, pins) {
            let expires = self.core.expires_at(conn);
            let armed = self.ledger.arm(&self.stash, conn, expires);
            if let Some(lease) = armed {
                self.stash.cell(lease).time_first_use(now);
            }
            armed.map(Leased::Stash)
        } else {
            None
        };
        (self.metrics).checked_out(conn, since, now, lease.is_some());
        Handed {
            id: conn,
            conn: physical,
            lease,
        }
    }

    fn failure(&mut self, reason: FailReason) -> Error<E> {
        match reason {
            FailReason::PoolClosed => Error::Closed,
            FailReason::Paused => Error::Paused,
            FailReason::AlreadyHeld => Error::AlreadyHeld,
            FailReason::OwnerGone => Error::OwnerGone,
            FailReason::ConnectTimeout => Error::ConnectTimeout,
            FailReason::ConnectionError => self
                .connect_failure
                .take()
                .unwrap_or(Error::ConnectPanicked),
            FailReason::Timeout => self.timed_out(Duration::ZERO),
            FailReason::WouldWait => Error::WouldWait {
                state: Box::new(self.core.state()),
            },
        }
    }

    /// Turns the core's pending actions into deliveries (made now, under
    /// the lock) and effects (carried out after it).
    fn drain(&mut self, effects: &mut Effects<C, S>, events: Option<&Events>) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Open(conn) => {
                    self.metrics.connect_started(conn, self.core.now());
                    effects.background.push(Work::Open(conn));
                }
                Action::Reset(conn) => {
                    tracing::debug!(%conn, "resetting a connection between owners");
                    match self.conns.remove(&conn) {
                        Some(physical) => effects.background.push(Work::Reset(conn, physical)),
                        None => {
                            // A driver bug: close the slot rather than strand it.
                            driver_bug(Err(InputError::WrongConnState {
                                conn,
                                expected: "held by the pool",
                            }));
                            driver_bug(self.core.reset_done(conn, Health::Broken));
                        }
                    }
                }
                Action::Close { conn, reason } => {
                    tracing::debug!(%conn, ?reason, "closing connection");
                    let physical = self.conns.remove(&conn);
                    match reason {
                        CloseReason::Error | CloseReason::ResetFailed => {
                            effects.background.extend(physical.map(Work::Close));
                        }
                        _ => effects.close.extend(physical),
                    }
                    self.interrupts.remove(&conn);
                }
                Action::Interrupt(conn) => {
                    tracing::debug!(%conn, "interrupting a checked-out connection");
                    effects
                        .interrupt
                        .extend(self.interrupts.get(&conn).cloned());
                }
                Action::Grant { ticket, conn } => {
                    let Some(waiting) = self.waiters.remove(&ticket) else {
                        debug_assert!(false, "granted {ticket} is not waiting");
                        continue;
                    };
                    let handed = self.hand_out(
                        waiting.owner,
                        waiting.pins,
                        conn,
                        waiting.holder,
                        waiting.since,
                    );
                    waiting.slot.deliver(Outcome::Granted(handed));
                    effects.notify.push(waiting.slot);
                }
                Action::Wake(ticket) => {
                    if let Some(waiting) = self.waiters.get(&ticket) {
                        waiting.slot.deliver(Outcome::Woken);
                        effects.notify.push(Arc::clone(&waiting.slot));
                    }
                }
                Action::Fail { ticket, reason } => {
                    if let Some(waiting) = self.waiters.remove(&ticket) {
                        waiting.slot.deliver(Outcome::Failed(self.failure(reason)));
                        effects.notify.push(waiting.slot);
                    }
                }
            }
        }
        if let Some(error) = self.connect_failure.take() {
            // Its requester had already given up.
            tracing::debug!(%error, "connect failure with no waiter left to report to");
        }
        if let Some(events) = events {
            while let Some(event) = self.core.poll_event() {
                let holder = self
                    .holders
                    .as_ref()
                    .and_then(|h| events::holder_of(h, &event));
                events.push(event, holder);
            }
        }
    }
}

/// Runs `work` on another thread while this one holds the pool lock: `work`
/// calls its first callback once warmed up (the lock is then taken with
/// `lock`) and its second when the part to prove is done. Says whether
/// that part finished within 20 s: the tests' proof that a fast path never
/// takes the lock.
#[cfg(test)]
pub(crate) fn finishes_while_locked<G>(
    lock: impl FnOnce() -> G,
    work: impl FnOnce(&dyn Fn(), &dyn Fn()) + Send,
) -> bool {
    use std::sync::mpsc;
    let (ready_tx, ready) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (done_tx, done) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            let warmed_up = || {
                ready_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            };
            work(&warmed_up, &|| done_tx.send(()).unwrap());
        });
        ready.recv().unwrap();
        let held = lock();
        go.send(()).unwrap();
        let finished = done.recv_timeout(Duration::from_secs(20)).is_ok();
        drop(held);
        finished
    })
}

/// Which leases a recall ends.
#[derive(Clone, Copy)]
enum Recall {
    /// Those of one connection.
    Conn(ConnId),
    /// Those of one owner (stash leases belong to no owner).
    Owner(OwnerId),
    /// The stash's: connections nobody is pinned to.
    Stash,
    All,
}

impl Recall {
    /// Whether it ends the lease of `conn` to `owner` (`None`: the stash).
    fn selects(self, conn: ConnId, owner: Option<OwnerId>) -> bool {
        match self {
            Recall::Conn(recalled) => recalled == conn,
            Recall::Owner(recalled) => owner == Some(recalled),
            Recall::Stash => owner.is_none(),
            Recall::All => true,
        }
    }
}

/// Runs user code `f` (named by `what` in the log) so that a panic in it
/// ends there: the pool's bookkeeping around it must go on.
pub(crate) fn contain(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("{what} panicked; the pool carried on");
    }
}

/// The core rejects an input only when the driver contradicts it: a bug in
/// a driver, never in user code. Report it rather than take the process
/// down.
fn driver_bug(reported: Result<(), InputError>) {
    if let Err(error) = reported {
        debug_assert!(false, "pool driver bug: {error}");
        tracing::error!(%error, "pool driver bug");
    }
}

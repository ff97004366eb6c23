//! The core and its bookkeeping under one lock: every input goes
//! through [`Locked::with_core`], which carries out the core's actions
//! once the lock is released.

use super::erased::LeaseKey;
use super::shutdown::ShutDown;

use super::*;

/// The pool's clock: time since the pool's epoch.
pub(crate) type PoolClock = Box<dyn Fn() -> Duration + Send + Sync>;

/// The core and its bookkeeping under one lock.
pub(crate) struct Locked<C, E, S: Mailbox<C, E>> {
    inner: Mutex<Inner<C, E, S>>,
    /// The fast path's view of the stash (also in `inner`).
    stash: Arc<Stash<C>>,
    clock: PoolClock,
    /// Whether the clock is reported to the core before each input: when
    /// its decisions depend on time ([`Config::needs_clock`](crate::core::Config::needs_clock)).
    /// Otherwise only the timer's runs report it
    /// ([`Locked::with_core_on_time`]).
    on_every_input: bool,
    /// Where recorded events go out (with `Config::record_events`).
    events: Option<Events>,
    /// The pool's key to the leases its owners keep in thread-locals and
    /// scopes.
    key: LeaseKey<C>,
    /// Set once the pool is closed and its last connection closed (shared
    /// with the threads that drop connections off the pool's own).
    shut_down: Arc<ShutDown>,
    /// Notified after every change, so a model can wait for one (a loom
    /// `join` may return before the thread's thread-local destructors run).
    #[cfg(pinpool_loom)]
    changed: crate::sync::Condvar,
}

impl<C, E: std::fmt::Display, S: Mailbox<C, E>> Locked<C, E, S> {
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
            clock,
            on_every_input: config.needs_clock() || Metrics::NEEDS_CLOCK,
            events: config
                .record_events
                .then(|| Events::new(options.id, options.event_handler.clone())),
            key: LeaseKey::fresh(),
            shut_down: Arc::new(ShutDown::new()),
            inner: Mutex::new(Inner {
                core,
                conns: Parked::default(),
                waiters: TicketMap::default(),
                leases: HashMap::default(),
                ended: HashMap::default(),
                stash,
                ledger: Ledger::new(cells),
                connect_failure: None,
                #[cfg(feature = "tokio")]
                expiry_planned: None,
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
        spawn: impl FnMut(Work<C>),
    ) -> R {
        // The clock is read before the lock, so that the lock is not held
        // over it (a contended turn reads it twice, once per input); an
        // input that then waits for the lock behind a later one cannot
        // take the core's time back (`Core::advance` keeps the latest).
        let now = self.on_every_input.then(|| (self.clock)());
        self.with_core_at(now, f, spawn)
    }

    /// [`Locked::with_core`], reporting the clock to the core first
    /// whatever the pool's configuration: for the inputs that decide by
    /// time in every pool, a maintenance run and the waiters' expiry
    /// ([`Core::expire_waiters`](crate::core::Core::expire_waiters)).
    #[cfg(feature = "tokio")]
    pub(crate) fn with_core_on_time<R>(
        &self,
        f: impl FnOnce(&mut Inner<C, E, S>) -> R,
        spawn: impl FnMut(Work<C>),
    ) -> R {
        self.with_core_at(Some((self.clock)()), f, spawn)
    }

    fn with_core_at<R>(
        &self,
        now: Option<Duration>,
        f: impl FnOnce(&mut Inner<C, E, S>) -> R,
        spawn: impl FnMut(Work<C>),
    ) -> R {
        let mut effects = Effects::new(&self.shut_down);
        let result = {
            let mut inner = self.inner.lock();
            if let Some(now) = now {
                inner.core.advance(now);
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
        effects.carry_out(S::wake, self.events.as_ref(), spawn);
        result
    }

    /// Set once the pool is closed and every connection it counted is
    /// closed (see [`Core::is_shut_down`]).
    pub(crate) fn shut_down(&self) -> &Arc<ShutDown> {
        &self.shut_down
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

    /// A guard parks its healthy connection in its lease, without the
    /// lock (see [`held::park`]).
    #[inline(always)]
    pub(crate) fn park(&self, lease: &Option<Leased<C>>, conn: Box<C>) -> Result<(), Box<C>>
    where
        C: Send + 'static,
    {
        held::park(&self.stash, lease, conn, || self.now())
    }

    /// A guard returns its connection: parked without the lock when its
    /// lease allows, else through the core.
    #[inline(always)]
    pub(crate) fn return_conn(&self, handed: Handed<C>, broken: bool, spawn: impl FnMut(Work<C>))
    where
        C: Send + 'static,
    {
        let check_in = |handed, health| self.check_in(handed, health, spawn);
        return_conn(&self.stash, handed, broken, || self.now(), check_in);
    }

    /// A returning guard's connection through the core: out of line, so
    /// the fast path that parks it is only that (`benches/instructions.sh`).
    #[cold]
    #[inline(never)]
    fn check_in(&self, handed: Handed<C>, health: Health, spawn: impl FnMut(Work<C>)) {
        self.with_core(|inner| inner.give_back(handed, health), spawn);
    }

    /// The pool's key to the leases its owners keep in thread-locals and
    /// scopes.
    #[inline]
    pub(crate) fn key(&self) -> &LeaseKey<C> {
        &self.key
    }

    /// The pool's clock (zero for a pool whose decisions do not depend on
    /// time: it is then never asked).
    #[inline]
    pub(crate) fn now(&self) -> Duration {
        if self.on_every_input {
            (self.clock)()
        } else {
            Duration::ZERO
        }
    }

    /// The pool's clock, read even where the core's decisions do not
    /// depend on time (unlike [`now`](Self::now)): for the connections'
    /// stamps, see [`Stamped`](super::Stamped).
    #[inline]
    pub(crate) fn read_clock(&self) -> Duration {
        (self.clock)()
    }

    /// Whether this thread is delivering the pool's events now (it is
    /// inside the event handler).
    pub(crate) fn delivering_events_here(&self) -> bool {
        self.events.as_ref().is_some_and(Events::delivering_here)
    }

    /// Holds the pool lock (tests prove the fast path never takes it).
    #[cfg(test)]
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C, E, S>> {
        self.inner.lock()
    }

    /// The slots of the checkouts waiting now (model checks only: a
    /// model's timer expires them).
    #[cfg(pinpool_loom)]
    pub(crate) fn waiting_slots(&self) -> Vec<S::Ref> {
        let inner = self.inner.lock();
        inner.waiters.values().map(|w| w.slot.clone()).collect()
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

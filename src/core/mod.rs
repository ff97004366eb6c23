//! The pool's decisions as a pure, deterministic state machine.
//!
//! Every decision pinpool makes — who gets which connection, who waits, whom
//! a checkin wakes, what a departed owner releases, when a connection opens
//! or closes — is made here and nowhere else. The core has no threads, no
//! clock and no I/O; its only randomness comes from [`Config::seed`]. Drivers
//! (the blocking pool, the tokio pool, the simulation, the loom models) feed
//! it *inputs* and carry out the [`Action`]s it emits, in the style of
//! quinn-proto:
//!
//! * inputs: [`Core::checkout`], [`Core::checkout_unpinned`], [`Core::try_checkout`],
//!   [`Core::retry`], [`Core::cancel`], [`Core::time_out`], [`Core::time_out_at`], [`Core::checkin`], [`Core::detach`], [`Core::note_lease_reuses`],
//!   [`Core::connected`], [`Core::connect_failed`], [`Core::reset_done`], [`Core::unpin`],
//!   [`Core::owner_gone`], [`Core::resize`], [`Core::clear`], [`Core::ready`], [`Core::close`];
//!   and for time, [`Core::advance`] (the driver's clock),
//!   [`Core::maintain`] (the periodic run) and [`Core::expire_waiters`]
//!   (the waiters' deadlines);
//! * outputs: the immediate [`Checkout`] answer, then [`Core::poll_action`]
//!   (work to do: open, close, reset, grant, wake, fail) and [`Core::poll_event`]
//!   (monitoring).
//!
//! ```
//! use pinpool::core::{Action, Checkout, Config, Core, Health, OwnerId};
//!
//! let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
//! let (alice, bob) = (OwnerId(1), OwnerId(2));
//!
//! // Alice's first checkout pins her to a new connection, which must be opened.
//! let Checkout::Waiting(ticket) = core.checkout(alice) else { unreachable!() };
//! assert_eq!(core.poll_action(), Some(Action::Open(pinpool::core::ConnId(1))));
//! let conn = pinpool::core::ConnId(1);
//! core.connected(conn)?;
//! assert_eq!(core.poll_action(), Some(Action::Grant { ticket, conn }));
//!
//! // Bob is bound to the same connection and waits in line for it…
//! let Checkout::Waiting(bobs) = core.checkout(bob) else { unreachable!() };
//! // …and Alice's checkin hands it straight to him.
//! core.checkin(conn, Health::Healthy)?;
//! assert_eq!(core.poll_action(), Some(Action::Grant { ticket: bobs, conn }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The driver contract
//! For anyone writing a driver of their own (an async runtime other than
//! tokio, a simulator); the two pools and the loom models keep it, and the
//! core's property model checks it:
//! * **Owners are never reused.** An [`OwnerId`] names one thread, task or
//!   session for the life of the core; a reused id would inherit a dead
//!   owner's pin. Report each owner's end with [`Core::owner_gone`].
//! * **Every action is carried out, in order.** Drain [`Core::poll_action`]
//!   after each input. An [`Action::Open`] is answered by exactly one
//!   [`Core::connected`] or [`Core::connect_failed`], an [`Action::Reset`]
//!   by one [`Core::reset_done`]; an [`Action::Grant`] is delivered, or, if
//!   its waiter is gone, the connection is checked back in (see
//!   [`Core::cancel`]). The core has forgotten a connection once it emits
//!   [`Action::Close`].
//! * **Every connection handed out comes back once**: [`Core::checkin`] or
//!   [`Core::detach`].
//! * **Time comes from the driver**: call [`Core::advance`] before inputs
//!   when [`Config::needs_clock`], and [`Core::maintain`] every so often
//!   when [`Config::needs_maintenance`] — and, with waiters given a
//!   deadline ([`Core::time_out_at`]), [`Core::expire_waiters`] by
//!   [`Core::waiters_expire_at`], advancing the clock first.
//! * **Fast paths ask first**: a driver that serves checkouts without an
//!   input keeps the lease contract ([`Core::may_lease`],
//!   [`Core::may_stash`], [`Core::checkout_scope`]) and reports what it
//!   served with [`Core::note_lease_reuses`].
//! * **Its own record of a waiter can be indexed** by the waiter's
//!   [`Ticket::slot`] (no two tickets waiting at once share one): the
//!   pools keep theirs that way, with no map.
//! * An [`InputError`] means the driver broke this contract: a bug to
//!   report, never a user's error.
//!
//! # Where each decision is
//! * `inputs`: checkouts, retries, cancels, timeouts, checkins, resets
//!   done, unpins and departed owners;
//! * `binding`: which connection a new owner is bound to, pins and their
//!   release, rehoming the owners of a closed connection;
//! * `wake`: the hand-over, and whom a released connection goes to or
//!   wakes under each [`WakePolicy`];
//! * `provision`: what opens and when, connect results, closing;
//! * `lease`: the contract for drivers that serve checkouts off the lock
//!   ([`Core::may_lease`], [`Core::may_stash`], [`Core::checkout_scope`]);
//! * `lifecycle` (clear, ready, close, time and maintenance), `expiry`
//!   (waiters' deadlines the core keeps), `resize`,
//!   `backoff` (connects while they fail);
//! * the bookkeeping: `slots` (connections), `waiters` (the line),
//!   `tickets` (issuing them, and records kept at each ticket's slot),
//!   `stats`, and the containers they are built of: `conn_table` (values
//!   by connection id), `ordered` (sorted ring buffers) and `lazy_order`
//!   (an order whose entries go stale in place); the vocabulary in
//!   `types`, `policy` and `config`; `oracles` for tests.
//!
//! # Costs
//! With S live connections (≤ `max_size`), I of them idle, and W waiters:
//! a checkout by a pinned owner, a checkin and a grant are O(log S) (a
//! waiter joins its queue at the back and the oldest leaves from the
//! front, both O(1)); a waiter leaving from the middle of its queue (a
//! cancel, a timeout) is O(log S + W). A checkin under
//! [`WakePolicy::Broadcast`] also emits one wake per sleeper. Under
//! `Bounded` and `Eventual` (the default) every input that leaves someone
//! waiting also keeps one waiter awake beside each idle connection, O(I);
//! with nobody waiting that costs one check.
//! Choosing a connection for a *new* owner once the pool is full, and
//! [`Core::clear`] / [`Core::close`], are O(S) (+ O(W) for `close`).

mod backoff;
mod binding;
mod config;
mod conn_table;
mod expiry;
mod inputs;
mod lazy_order;
mod lease;
mod lifecycle;
mod oracles;
mod ordered;
mod policy;
mod provision;
mod resize;
mod slots;
mod stats;
mod tickets;
mod types;
mod waiters;
mod wake;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;
use rustc_hash::FxHashSet as HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use config::{Config, ConfigError};
pub use lifecycle::MAINTENANCE_BATCH;
pub use policy::{Overflow, Pinning, Reset, WakePolicy};
pub(crate) use stats::Occupancy;
pub use stats::{Counters, PoolState};
pub(crate) use tickets::TicketMap;
pub use types::{
    Action, Checkout, CloseReason, ConnId, Event, FailReason, Health, InputError, LeaseScope,
    OwnerId, Ticket,
};

use binding::serves_any;
use slots::{Slot, SlotState, Slots};
use waiters::{Waiters, Want};

/// The pool's state machine. See the [module documentation](self).
///
/// `Clone`, so a driver or a test can ask "what if" of a copy.
#[derive(Clone, Debug)]
pub struct Core {
    config: Config,
    slots: Slots,
    waiters: Waiters,
    /// Owner → the connection it is bound to (Strict, Exclusive and Affinity).
    pins: HashMap<OwnerId, ConnId>,
    /// Strict owners whose pin has not served them yet: bound (by the
    /// overflow rule, say) to a connection someone else may hold for
    /// long, with no session on it. An idle connection nobody is pinned
    /// to serves such an owner's checkout as it would a new owner's, and
    /// its pin moves there (`Core::oldest_waiter_for`,
    /// `Core::usable_idle`). Otherwise a thread bound to a busy
    /// connection just before its owners exited waited beside their
    /// idle one for as long as the holder kept its own: with two threads
    /// holding theirs until the other had one, until its timeout.
    unserved: HashSet<OwnerId>,
    generation: u64,
    closed: bool,
    /// [`Action::ShutDown`] was emitted.
    shut_down_announced: bool,
    /// Cleared (or built paused) and not yet ready: checkouts fail, nothing
    /// opens.
    paused: bool,
    /// The driver's clock, as last reported by [`Core::advance`].
    now: Duration,
    /// Connects abandoned by an interrupting [`Core::clear`] (already
    /// counted closed) or given up after `connect_timeout` (already counted
    /// failed): their result is closed when it arrives, and not counted.
    abandoned: BTreeSet<ConnId>,
    /// Waiters were moved while the pool had no room to open for them:
    /// the next `provision` hands them idle connections they can now use.
    idle_to_serve: bool,
    /// A connect failed: `min_size` is refilled at the next maintenance
    /// run or successful connect, not at once, so a server that refuses
    /// connections is not hammered in a loop.
    refill_deferred: bool,
    /// Connects failing in a row, under `connect_backoff`.
    backoff: backoff::Backoff,
    rng: StdRng,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// All but `max_bypass`, which the waiters keep ([`Core::state`] reads
    /// it from them).
    counters: Counters,
}

impl Core {
    /// Builds a core, rejecting an invalid configuration. Opens `min_size`
    /// connections (see [`Core::poll_action`]).
    ///
    /// ```
    /// use pinpool::core::{Action, Config, ConnId, Core};
    ///
    /// let mut core = Core::new(Config { min_size: 1, ..Config::default() })?;
    /// assert_eq!(core.poll_action(), Some(Action::Open(ConnId(1))));
    /// assert!(Core::new(Config { max_size: 0, ..Config::default() }).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut core = Core {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            slots: Slots::default(),
            waiters: Waiters::default(),
            pins: HashMap::default(),
            unserved: HashSet::default(),
            generation: 0,
            closed: false,
            shut_down_announced: false,
            paused: config.start_paused,
            now: Duration::ZERO,
            abandoned: BTreeSet::new(),
            idle_to_serve: false,
            refill_deferred: false,
            backoff: backoff::Backoff::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        };
        core.event(Event::PoolCreated(config));
        core.provision();
        Ok(core)
    }

    /// The configuration this core was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---------------------------------------------------------------- outputs

    /// The next action for the driver to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next monitoring event (only with [`Config::record_events`]).
    ///
    /// ```
    /// use pinpool::core::{Config, Core, Event, OwnerId};
    ///
    /// let mut core = Core::new(Config { record_events: true, ..Config::default() })?;
    /// core.checkout(OwnerId(1));
    /// let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    /// assert!(matches!(events[0], Event::PoolCreated(_)));
    /// assert!(events.iter().any(|e| matches!(e, Event::CheckoutStarted { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The connection `owner` is pinned to, if any.
    pub fn pinned_conn(&self, owner: OwnerId) -> Option<ConnId> {
        self.pins.get(&owner).copied()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the pool was closed and every connection it counted has
    /// been closed since: none idle, checked out, resetting, connecting
    /// or about to. Once true, it stays true: a closed pool opens nothing.
    /// The input that makes it true emits [`Action::ShutDown`].
    ///
    /// ```
    /// use pinpool::core::{Action, Checkout, CloseReason, Config, ConnId, Core, Health, OwnerId};
    ///
    /// let mut core = Core::new(Config::default())?;
    /// let Checkout::Waiting(_) = core.checkout(OwnerId(1)) else { unreachable!() };
    /// while core.poll_action().is_some() {}
    /// core.connected(ConnId(1))?; // granted to the waiting checkout
    /// core.close();
    /// assert!(!core.is_shut_down(), "still checked out");
    /// core.checkin(ConnId(1), Health::Healthy)?;
    /// assert!(core.is_shut_down());
    /// // The driver's part: close the physical connection, then tell
    /// // whoever waits for the pool's end.
    /// let actions: Vec<Action> = std::iter::from_fn(|| core.poll_action()).collect();
    /// let close = Action::Close { conn: ConnId(1), reason: CloseReason::PoolClosed };
    /// assert_eq!(actions[actions.len() - 2..], [close, Action::ShutDown]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.closed && self.slots.total() == 0
    }

    /// A consistent snapshot of the pool. O(S).
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// let Checkout::Waiting(_) = core.checkout(bob) else { unreachable!() };
    /// let state = core.state();
    /// assert_eq!((state.in_use, state.waiting, state.pinned_owners), (1, 1, 2));
    /// assert_eq!(state.pins, vec![(conn, 2)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self) -> PoolState {
        let now = self.occupancy();
        PoolState {
            pending: now.pending,
            connecting: now.connecting,
            idle: now.idle,
            in_use: now.in_use,
            resetting: now.resetting,
            waiting: now.waiting,
            waiting_for_pin: now.waiting_for_pin,
            pinned_owners: now.pinned_owners,
            pins: self
                .slots
                .iter()
                .map(|(id, s)| (id, s.pinned.len()))
                .collect(),
            generation: self.generation,
            closed: self.closed,
            counters: Counters {
                max_bypass: self.waiters.most_bypassed(),
                ..self.counters
            },
        }
    }

    /// The counts of [`Core::state`] without its per-connection pins: no
    /// allocation, O(1) but for the owners waiting for a pin (a walk of
    /// the unbound waiters), for what a driver reports after every input.
    pub(crate) fn occupancy(&self) -> Occupancy {
        Occupancy {
            pending: self.slots.pending(),
            connecting: self.slots.connecting(),
            idle: self.slots.idle(),
            in_use: self.slots.in_use(),
            resetting: self.slots.resetting(),
            waiting: self.waiters.len(),
            waiting_for_pin: if self.config.pinning.binds_for_life() {
                self.waiters.unbound_pinning()
            } else {
                0
            },
            pinned_owners: self.pins.len(),
        }
    }

    /// The counters as they stand.
    #[cfg(feature = "metrics")]
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether `conn`, established and about to be available, must be
    /// reset first: an owner may have left state on it, and no owner
    /// pinned to it is left to share that state with (see [`Reset`]).
    fn needs_reset(&self, conn: ConnId) -> bool {
        if self.config.reset == Reset::Never {
            return false; // without finding the slot
        }
        let slot = self.slots.slot(conn);
        slot.dirty && slot.pinned.is_empty() && !self.closed && slot.generation == self.generation
    }

    /// Takes `conn` out of service while the driver resets it.
    fn start_reset(&mut self, conn: ConnId) {
        self.slots.set_resetting(conn, self.now);
        self.counters.resets += 1;
        self.actions.push_back(Action::Reset(conn));
    }

    /// Fails a checkout by `owner` that started at `since`.
    fn fail_now(&mut self, owner: OwnerId, reason: FailReason, since: Duration) -> Checkout {
        self.counters.failed += 1;
        let waited = self.now.saturating_sub(since);
        self.event(Event::CheckoutFailed {
            owner,
            reason,
            waited,
        });
        Checkout::Failed(reason)
    }

    /// Fails each of `tickets`, all waiting, with `reason`, in order.
    fn fail_waiters(&mut self, tickets: Vec<Ticket>, reason: FailReason) {
        for ticket in tickets {
            let waiter = self.waiters.remove(ticket).expect("the tickets wait");
            self.fail_waiter(ticket, waiter, reason);
        }
    }

    /// Fails `waiter` (already removed from the line), which held `ticket`.
    fn fail_waiter(&mut self, ticket: Ticket, waiter: waiters::Waiter, reason: FailReason) {
        self.fail_now(waiter.owner, reason, waiter.since);
        self.actions.push_back(Action::Fail { ticket, reason });
    }

    /// Records `event` when events are on. Inlined so that, when they are
    /// off, building the event costs nothing on the checkout path.
    #[inline]
    fn event(&mut self, event: Event) {
        if self.config.record_events {
            self.events.push_back(event);
        }
    }
}

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
//!   [`Core::retry`], [`Core::cancel`], [`Core::time_out`], [`Core::checkin`], [`Core::note_lease_reuses`],
//!   [`Core::connected`], [`Core::connect_failed`], [`Core::reset_done`], [`Core::unpin`],
//!   [`Core::owner_gone`], [`Core::resize`], [`Core::clear`], [`Core::ready`], [`Core::close`];
//!   and for time, [`Core::advance`] (the driver's clock) and
//!   [`Core::maintain`] (the periodic run);
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
//! # Costs
//! With S live connections (≤ `max_size`) and W waiters: a checkout by a
//! pinned owner, a checkin, a grant and a cancel are O(log S + log W); a
//! checkin under [`WakePolicy::Broadcast`] also emits one wake per sleeper.
//! Choosing a connection for a *new* owner once the pool is full, and
//! [`Core::clear`] / [`Core::close`], are O(S) (+ O(W) for `close`).

mod backoff;
mod config;
mod lifecycle;
mod resize;
mod slots;
mod stats;
mod types;
mod waiters;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use config::{Config, ConfigError, Overflow, Pinning, Reset, WakePolicy};
pub use lifecycle::MAINTENANCE_BATCH;
pub(crate) use stats::Occupancy;
pub use stats::{Counters, PoolState};
pub use types::{
    Action, Checkout, CloseReason, ConnId, Event, FailReason, Health, InputError, LeaseScope,
    OwnerId, Ticket,
};

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
    next_ticket: u64,
    generation: u64,
    closed: bool,
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
    counters: Counters,
}

impl Core {
    /// Builds a core, rejecting an invalid configuration. Opens `min_size`
    /// connections (see [`Core::poll_action`]).
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut core = Core {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            slots: Slots::default(),
            waiters: Waiters::default(),
            pins: HashMap::default(),
            next_ticket: 0,
            generation: 0,
            closed: false,
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

    // ----------------------------------------------------------------- inputs

    /// `owner` asks for a connection, as the [`Pinning`] mode binds it.
    ///
    /// Returns [`Checkout::Granted`] when it can have one now, otherwise
    /// [`Checkout::Waiting`] with the ticket that a later [`Action::Grant`],
    /// [`Action::Wake`] or [`Action::Fail`] names.
    pub fn checkout(&mut self, owner: OwnerId) -> Checkout {
        self.checkout_as(owner, true, true)
    }

    /// `owner` asks for any connection, without a pin: the first that is
    /// idle or frees up serves it (in arrival order among those that could
    /// use it), whatever the [`Pinning`] mode, and the checkout creates no
    /// pin. An async task outside a pinned scope asks this way.
    ///
    /// ```
    /// use pinpool::core::{Checkout, Config, ConnId, Core, Health, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 2, min_size: 2, ..Config::default() })?;
    /// while core.poll_action().is_some() {}
    /// core.connected(ConnId(1))?;
    /// core.connected(ConnId(2))?;
    /// let Checkout::Granted(conn) = core.checkout_unpinned(OwnerId(7)) else { unreachable!() };
    /// assert_eq!(core.pinned_conn(OwnerId(7)), None);
    /// core.checkin(conn, Health::Healthy)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkout_unpinned(&mut self, owner: OwnerId) -> Checkout {
        self.checkout_as(owner, false, true)
    }

    /// A checkout that never waits: [`Checkout::Granted`] when
    /// [`Core::checkout`] (`pins`) or [`Core::checkout_unpinned`] would
    /// grant one now, otherwise [`Checkout::Failed`] with
    /// [`FailReason::WouldWait`]. It asks as a waiter would and withdraws
    /// at once: a new owner is bound as usual, and a connection is opened
    /// for it when the pool has room, so that a later checkout finds it.
    ///
    /// ```
    /// use pinpool::core::{Action, Checkout, Config, ConnId, Core, FailReason, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// let alice = OwnerId(1);
    /// let refused = core.try_checkout(alice, true);
    /// assert_eq!(refused, Checkout::Failed(FailReason::WouldWait));
    /// assert_eq!(core.poll_action(), Some(Action::Open(ConnId(1))), "opened for her");
    /// core.connected(ConnId(1))?;
    /// assert_eq!(core.try_checkout(alice, true), Checkout::Granted(ConnId(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_checkout(&mut self, owner: OwnerId, pins: bool) -> Checkout {
        self.checkout_as(owner, pins, false)
    }

    fn checkout_as(&mut self, owner: OwnerId, pins: bool, waits: bool) -> Checkout {
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        self.event(Event::CheckoutStarted { owner, ticket });
        let now = self.now;
        if self.closed {
            return self.fail_now(owner, FailReason::PoolClosed, now);
        }
        if self.paused {
            return self.fail_now(owner, FailReason::Paused, now);
        }
        self.reap_before_checkout();
        let binds = self.config.pinning.binds_for_life();
        let want = match (binds, pins, self.pins.get(&owner)) {
            (false, _, _) | (_, false, _) => Want::Any,
            (true, true, Some(&conn)) if self.slots.holder(conn) == Some(owner) => {
                return self.fail_now(owner, FailReason::AlreadyHeld, now);
            }
            (true, true, Some(&conn)) => Want::Conn(conn),
            (true, true, None) => self.bind_new_owner(owner, ticket),
        };
        if let Some(conn) = self.usable_idle(owner, want) {
            self.hand_over(ticket, owner, conn, pins, now);
            return Checkout::Granted(conn);
        }
        let sleeping = self.config.wake != WakePolicy::Handoff && waits;
        self.waiters
            .insert(ticket, owner, want, pins, sleeping, now);
        if !waits {
            // In line just long enough for `provision` to open what a
            // waiter would be opened (or bound to, under Exclusive).
            self.provision();
            self.waiters.remove(ticket);
            self.provision();
            return self.fail_now(owner, FailReason::WouldWait, now);
        }
        self.counters.waits += 1;
        self.event(Event::Waiting { owner, ticket });
        self.provision();
        Checkout::Waiting(ticket)
    }

    /// A woken waiter (after [`Action::Wake`]) tries again, as a thread
    /// woken from a condition variable re-runs its checkout loop. If it still
    /// cannot proceed the wake-up was futile and it goes back to sleep at the
    /// back of the line.
    ///
    /// A woken waiter may be granted a connection (or failed) before it gets
    /// to retry; `retry` then answers [`InputError::NotWaiting`] and the
    /// [`Action::Grant`] or [`Action::Fail`] already emitted is its outcome.
    pub fn retry(&mut self, ticket: Ticket) -> Result<Checkout, InputError> {
        // First: replacing what it closes may bind this very waiter.
        self.reap_before_checkout();
        let waiter = *self
            .waiters
            .get(ticket)
            .ok_or(InputError::NotWaiting(ticket))?;
        let mut want = waiter.want;
        if self.config.pinning.binds_for_life() && want == Want::Any && waiter.pins {
            want = self.bind_new_owner(waiter.owner, ticket);
            self.waiters.set_want(ticket, want);
        }
        if let Some(conn) = self.usable_idle(waiter.owner, want) {
            self.waiters.remove(ticket);
            self.hand_over(ticket, waiter.owner, conn, waiter.pins, waiter.since);
            self.provision();
            return Ok(Checkout::Granted(conn));
        }
        // Under Handoff nobody sleeps or is woken: a retry there is spurious.
        if self.config.wake != WakePolicy::Handoff {
            if waiter.sleep.is_none() {
                self.counters.futile_wakeups += 1;
            }
            self.waiters.sleep(ticket);
        }
        self.provision();
        Ok(Checkout::Waiting(ticket))
    }

    /// Withdraws a waiter (its checkout timed out, or its future was
    /// dropped). Returns `false` when the ticket is no longer waiting: it
    /// was already granted (or failed), and the driver must treat that
    /// outcome as delivered — e.g. check the granted connection back in.
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        if self.waiters.remove(ticket).is_none() {
            return false;
        }
        self.counters.cancelled += 1;
        self.provision();
        true
    }

    /// Like [`Core::cancel`], for a waiter whose checkout deadline passed:
    /// also counted in [`Counters::timeouts`] and reported as a
    /// [`FailReason::Timeout`] checkout failure.
    pub fn time_out(&mut self, ticket: Ticket) -> bool {
        let Some(waiter) = self.waiters.get(ticket).copied() else {
            return false;
        };
        self.cancel(ticket);
        self.counters.timeouts += 1;
        self.fail_now(waiter.owner, FailReason::Timeout, waiter.since);
        true
    }

    /// The driver served `reuses` checkouts (and as many checkins) of a
    /// connection it leased to its pinned owner (see [`Core::may_lease`])
    /// without asking the core. Only the counters change.
    pub fn note_lease_reuses(&mut self, reuses: u64) {
        self.counters.checkouts += reuses;
        self.counters.checkins += reuses;
    }

    /// The holder of `conn` returns it. A broken connection is closed and,
    /// if owners are pinned to it, replaced; a healthy one goes to waiters
    /// according to the [`WakePolicy`].
    pub fn checkin(&mut self, conn: ConnId, health: Health) -> Result<(), InputError> {
        let owner = self.slots.holder(conn).ok_or(InputError::WrongConnState {
            conn,
            expected: "checked out",
        })?;
        self.counters.checkins += 1;
        self.event(Event::CheckedIn { owner, conn });
        match health {
            Health::Broken => self.retire(conn, CloseReason::Error),
            Health::Healthy => self.release(conn, self.config.wake),
        }
        self.provision();
        Ok(())
    }

    /// The driver established `conn` (after [`Action::Open`]). It is handed
    /// straight to the oldest waiter that can use it whatever the wake
    /// policy: an opened connection is not a checkin, and the Ruby pool
    /// returned a socket it created to the thread that asked.
    pub fn connected(&mut self, conn: ConnId) -> Result<(), InputError> {
        if self.abandoned.remove(&conn) {
            // Counted when it was abandoned.
            self.actions.push_back(Action::Close {
                conn,
                reason: CloseReason::Stale,
            });
            return Ok(());
        }
        self.expect_connecting(conn)?;
        self.counters.established += 1;
        self.refill_deferred = false;
        self.stop_backing_off();
        let slot = self.slots.slot_mut(conn);
        slot.born = self.now;
        let took = self.now.saturating_sub(slot.since);
        self.event(Event::ConnectionReady { conn, took });
        self.release(conn, WakePolicy::Handoff);
        self.provision();
        Ok(())
    }

    /// The driver failed to establish `conn`. The waiter that asked for it
    /// fails with [`FailReason::ConnectionError`]; other waiters bound to it
    /// move, with its pins, to a replacement that is opened in turn. With no
    /// such waiters its pins are dropped instead, and `min_size` is not
    /// refilled until the next [`Core::maintain`] or successful connect, so
    /// a server that refuses connections costs one attempt per waiter and
    /// per maintenance run, never a retry loop.
    pub fn connect_failed(&mut self, conn: ConnId) -> Result<(), InputError> {
        if self.abandoned.remove(&conn) {
            return Ok(()); // counted when it was abandoned
        }
        self.expect_connecting(conn)?;
        self.fail_connect(conn, FailReason::ConnectionError);
        Ok(())
    }

    /// The driver finished resetting `conn` (after [`Action::Reset`]). A
    /// healthy connection is clean and handed straight to the oldest
    /// waiter that can use it, as a newly opened one; a reset that failed
    /// closes it ([`CloseReason::ResetFailed`]), and whoever waited for it
    /// is served by a replacement.
    ///
    /// ```
    /// use pinpool::core::{Action, Checkout, Config, ConnId, Core, Health, OwnerId, Pinning};
    ///
    /// let config = Config { max_size: 1, pinning: Pinning::Exclusive, ..Config::default() };
    /// let mut core = Core::new(config)?;
    /// let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// core.checkout(alice);
    /// core.poll_action(); // Open
    /// core.connected(conn)?;
    /// core.poll_action(); // Grant to alice
    /// // The only connection is alice's session: bob waits for a pin.
    /// let Checkout::Waiting(bobs) = core.checkout(bob) else { unreachable!() };
    /// assert_eq!(core.state().waiting_for_pin, 1);
    /// core.checkin(conn, Health::Healthy)?;
    /// assert_eq!(core.poll_action(), None, "still alice's");
    /// core.owner_gone(alice);
    /// assert_eq!(core.poll_action(), Some(Action::Reset(conn)), "cleaned before bob");
    /// core.reset_done(conn, Health::Healthy)?;
    /// assert_eq!(core.poll_action(), Some(Action::Grant { ticket: bobs, conn }));
    /// assert_eq!(core.pinned_conn(bob), Some(conn));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset_done(&mut self, conn: ConnId, health: Health) -> Result<(), InputError> {
        let slot = match self.slots.get(conn) {
            Some(slot) if slot.state == SlotState::Resetting => slot,
            _ => {
                return Err(InputError::WrongConnState {
                    conn,
                    expected: "resetting",
                });
            }
        };
        let took = self.now.saturating_sub(slot.since);
        let ok = health == Health::Healthy;
        self.event(Event::ConnectionReset { conn, took, ok });
        if ok {
            self.release(conn, WakePolicy::Handoff);
        } else {
            self.counters.reset_failures += 1;
            self.retire(conn, CloseReason::ResetFailed);
        }
        self.provision();
        Ok(())
    }

    /// The connect of `conn` failed (or was given up): the waiter that
    /// asked for it fails with `reason`; see [`Core::connect_failed`].
    pub(super) fn fail_connect(&mut self, conn: ConnId, reason: FailReason) {
        let mut slot = self.slots.remove(conn);
        self.counters.connect_failures += 1;
        self.refill_deferred = true;
        self.back_off();
        self.event(Event::ConnectionFailed(conn));
        if let Some(ticket) = slot.requested_by
            && let Some(waiter) = self.waiters.remove(ticket)
        {
            self.fail_waiter(ticket, waiter, reason);
        }
        if self.waiters.bound_to(conn) == 0 {
            // Nobody needs a replacement now: drop the pins rather than
            // retry a failing server in a loop. Each failure fails one
            // waiter, so retries are bounded by the waiters.
            for owner in std::mem::take(&mut slot.pinned) {
                self.pins.remove(&owner);
                self.event(Event::Unpinned { owner, conn });
            }
        }
        self.rehome(conn, slot.pinned);
        self.provision();
    }

    /// Releases `owner`'s pin on request (it keeps any connection it holds).
    pub fn unpin(&mut self, owner: OwnerId) {
        if let Some(conn) = self.drop_pin(owner) {
            self.event(Event::Unpinned { owner, conn });
            self.free_if_unpinned(conn);
            self.provision();
        }
    }

    /// `owner` is gone (its thread exited, its task ended or was dropped):
    /// its pin is released, and each checkout it still has waiting fails
    /// with [`FailReason::OwnerGone`] (an [`Action::Fail`]: whoever waits on
    /// that ticket — an async `get()` moved out of its pinned scope — is
    /// told, never left waiting on a ticket the core has forgotten).
    /// Connections it still holds come back through [`Core::checkin`] as
    /// usual.
    pub fn owner_gone(&mut self, owner: OwnerId) {
        let tickets = self.waiters.of_owner(owner);
        self.fail_waiters(tickets, FailReason::OwnerGone);
        if let Some(conn) = self.drop_pin(owner) {
            self.counters.reclaimed_pins += 1;
            self.event(Event::PinReclaimed { owner, conn });
            self.free_if_unpinned(conn);
        }
        self.provision();
    }

    // ---------------------------------------------------------------- outputs

    /// The next action for the driver to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next monitoring event (only with [`Config::record_events`]).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The connection `owner` is pinned to, if any.
    pub fn pinned_conn(&self, owner: OwnerId) -> Option<ConnId> {
        self.pins.get(&owner).copied()
    }

    /// Whether a driver may *lease* `conn`, just granted to `owner`: keep
    /// it checked out to the owner and serve the owner's next checkouts and
    /// checkins itself, counting them with [`Core::note_lease_reuses`].
    /// That replays this core's own decisions exactly when the owner is
    /// pinned to `conn`, no waiter could use it, and a checkin nobody waits
    /// for is a plain return to idle (Handoff, Bounded and Eventual;
    /// Broadcast and Signal wake sleepers waiting for other connections on
    /// every checkin); and no events are recorded, as they would miss those
    /// checkouts. Before any input whose answer could depend on a leased
    /// connection (see [`Core::checkout_scope`]) the driver must end the
    /// lease with an ordinary [`Core::checkin`]. A connection the pool
    /// has shrunk below is not leased: it must come back to be closed.
    ///
    /// ```
    /// use pinpool::core::{Action, Checkout, Config, ConnId, Core, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// core.checkout(alice);
    /// core.poll_action(); // Open
    /// core.connected(conn)?;
    /// assert!(core.may_lease(alice, conn), "pinned, and nobody else waits");
    /// assert!(!core.may_lease(bob, conn), "not bob's pin");
    /// let Checkout::Waiting(_) = core.checkout(bob) else { unreachable!() };
    /// assert!(!core.may_lease(alice, conn), "bob waits for it");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn may_lease(&self, owner: OwnerId, conn: ConnId) -> bool {
        self.leases_replay_checkins()
            && self.config.pinning != Pinning::Off
            && self.pins.get(&owner) == Some(&conn)
            && self.oldest_waiter_for(conn).is_none()
            && !self.is_surplus(conn)
    }

    /// Whether a driver may *stash* `conn`, just granted to a checkout that
    /// pins nobody (`pins` false, or any checkout under [`Pinning::Off`]):
    /// keep it checked out and serve any later checkout that pins nobody
    /// from it itself, without asking, counting them with
    /// [`Core::note_lease_reuses`]. A stashed connection is an idle
    /// connection the driver hands out for the core: that replays the
    /// core's decisions while no waiter could use it and a checkin nobody
    /// waits for is a plain return to idle (as for [`Core::may_lease`]),
    /// except which of several idle connections such a checkout gets (the
    /// core would pick the most recently used). Under [`Pinning::Strict`]
    /// and [`Pinning::Exclusive`] only connections nobody is pinned to are
    /// stashed, so pinned owners rarely have to end a stash lease; under
    /// [`Reset::EveryUnpinnedCheckin`] nothing is, since every such
    /// checkin must be reset. The driver ends a stash lease, as
    /// any lease, before an input whose answer could depend on it.
    ///
    /// ```
    /// use pinpool::core::{Checkout, Config, ConnId, Core, OwnerId, Pinning};
    ///
    /// let config = Config { max_size: 1, min_size: 1, pinning: Pinning::Off, ..Config::default() };
    /// let mut core = Core::new(config)?;
    /// core.poll_action(); // Open
    /// core.connected(ConnId(1))?;
    /// let Checkout::Granted(conn) = core.checkout(OwnerId(1)) else { unreachable!() };
    /// assert!(core.may_stash(conn, true), "nobody pins under Off, nobody waits");
    /// let Checkout::Waiting(_) = core.checkout(OwnerId(2)) else { unreachable!() };
    /// assert!(!core.may_stash(conn, true), "a waiter could use it");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn may_stash(&self, conn: ConnId, pins: bool) -> bool {
        let pinning = self.config.pinning;
        self.leases_replay_checkins()
            && self.config.reset != Reset::EveryUnpinnedCheckin
            && (!pins || pinning == Pinning::Off)
            && self.oldest_waiter_for(conn).is_none()
            && !self.is_surplus(conn)
            && (!pinning.binds_for_life()
                || self.slots.get(conn).is_some_and(|s| s.pinned.is_empty()))
    }

    /// Whether a driver serving checkouts itself replays every checkin it
    /// does not report: a checkin nobody waits for only returns the
    /// connection to idle (not under Broadcast and Signal, which wake
    /// sleepers on every checkin), and no event would go missing.
    fn leases_replay_checkins(&self) -> bool {
        let config = &self.config;
        !matches!(config.wake, WakePolicy::Broadcast | WakePolicy::Signal)
            && !config.record_events
            && config.leak_threshold.is_none()
    }

    /// The leased connections (see [`Core::may_lease`] and
    /// [`Core::may_stash`]) whose state the answer to a checkout by
    /// `owner` — pinning it ([`Core::checkout`]) or not
    /// ([`Core::checkout_unpinned`]) — could depend on, so the driver must
    /// end those leases before asking.
    ///
    /// ```
    /// use pinpool::core::{Config, ConnId, Core, LeaseScope, OwnerId, Pinning};
    ///
    /// let config = Config { max_size: 2, min_size: 1, pinning: Pinning::Off, ..Config::default() };
    /// let mut core = Core::new(config)?;
    /// core.poll_action(); // Open
    /// assert_eq!(core.checkout_scope(OwnerId(1), true), LeaseScope::All, "it would wait");
    /// core.connected(ConnId(1))?;
    /// assert_eq!(core.checkout_scope(OwnerId(1), true), LeaseScope::None, "one is idle");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkout_scope(&self, owner: OwnerId, pins: bool) -> LeaseScope {
        if self.closed || self.paused {
            return LeaseScope::None; // it fails whatever is leased
        }
        let pinned = self.pins.get(&owner).copied();
        // The idle connections left once the checkout has closed the
        // expired ones (it does that first).
        let (perished, _) = self.perished_idle(usize::MAX);
        let survives = |conn: ConnId| {
            self.slots.is_idle(conn) && !perished.iter().any(|&(gone, _)| gone == conn)
        };
        match (self.config.pinning, pins) {
            // Only its own connection can serve it.
            (Pinning::Strict, true) => pinned.map_or(LeaseScope::All, LeaseScope::Conn),
            // A new owner binds to a free connection or waits for one.
            (Pinning::Exclusive, true) => pinned.map_or(LeaseScope::Free, LeaseScope::Conn),
            // It takes its own connection if that is idle, else any idle
            // one and moves its pin there, which a lease on its old
            // connection (held by this very owner) must see.
            (Pinning::Affinity, true) => match pinned {
                Some(conn) if survives(conn) => LeaseScope::None,
                _ => LeaseScope::All,
            },
            // Only a connection nobody is pinned to serves it: with one of
            // those idle it depends on nothing leased, else on the free ones.
            (Pinning::Exclusive, false) => {
                let free_idle = self
                    .slots
                    .idle_newest_first()
                    .any(|conn| self.slots.slot(conn).pinned.is_empty() && survives(conn));
                if free_idle {
                    LeaseScope::None
                } else {
                    LeaseScope::Free
                }
            }
            // Any idle connection serves it, and the leased ones could only
            // have served it too; with none idle it would wait, and the
            // leased ones must come back to serve it.
            (Pinning::Off, _) | (_, false) => {
                if self.slots.idle() > perished.len() {
                    LeaseScope::None
                } else {
                    LeaseScope::All
                }
            }
        }
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A consistent snapshot of the pool. O(S).
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
            counters: self.counters,
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

    /// Waiters currently asleep (Broadcast and Signal; always 0 under Handoff).
    pub fn sleeping(&self) -> usize {
        self.waiters.sleeping()
    }

    /// Whether `ticket` waits asleep while a connection it can use is idle:
    /// a lost wake-up. Never true under Handoff or Broadcast; Signal's bug.
    pub fn is_stranded(&self, ticket: Ticket) -> bool {
        let Some(waiter) = self.waiters.get(ticket) else {
            return false;
        };
        waiter.sleep.is_some()
            && match waiter.want {
                Want::Conn(conn) => self.slots.is_idle(conn),
                Want::Any => self
                    .slots
                    .idle_newest_first()
                    .any(|conn| self.serves_any(conn)),
            }
    }

    /// Idle connections beside which every waiter that could use them
    /// sleeps: lost wake-ups, with nobody on the way to take them. Never
    /// under Handoff (nobody waits beside an idle connection), Broadcast
    /// (all are woken) or Bounded and Eventual (the oldest is woken);
    /// Signal's bug.
    /// O(S·W) at worst: a check for tests and model checks.
    pub fn stranded(&self) -> usize {
        self.slots
            .idle_newest_first()
            .filter(|&conn| {
                let serves_any = self.serves_any(conn);
                let mut eligible = self.waiters.eligible_for(conn, serves_any).peekable();
                eligible.peek().is_some()
                    && eligible
                        .all(|ticket| self.waiters.get(ticket).is_some_and(|w| w.sleep.is_some()))
            })
            .count()
    }

    // -------------------------------------------------------------- decisions

    /// Chooses the connection a new owner is bound to under Strict or
    /// Exclusive pinning and pins it; `Want::Any` when it must wait
    /// unbound (Exclusive with every connection pinned, RandomIdle
    /// overflow with nothing idle).
    fn bind_new_owner(&mut self, owner: OwnerId, ticket: Ticket) -> Want {
        if let Some(&conn) = self.pins.get(&owner) {
            // Bound since it asked, through another of its checkouts.
            return Want::Conn(conn);
        }
        let exclusive = self.config.pinning == Pinning::Exclusive;
        let reclaimed = self.reclaimed_idle();
        let conn =
            if exclusive && (reclaimed.is_some() || self.slots.total() >= self.config.max_size) {
                // Any free connection: an idle one nobody is pinned to is taken
                // (and pinned) at once, as such; otherwise every connection is
                // someone's session, and the owner waits for a pin to be
                // released, in line with the others waiting for one.
                return Want::Any;
            } else if let Some(conn) = reclaimed {
                // A connection whose owners are all gone: reuse it before growing.
                conn
            } else if self.slots.total() < self.config.max_size {
                self.slots.create_pending(self.generation, Some(ticket))
            } else {
                match self.config.overflow {
                    Overflow::LeastLoaded => self.least_loaded(),
                    Overflow::Random => {
                        let pick = self.rng.random_range(0..self.slots.total());
                        self.slots.nth(pick)
                    }
                    Overflow::RandomIdle => match self.slots.idle() {
                        0 => return Want::Any,
                        n => {
                            let pick = self.rng.random_range(0..n);
                            self.slots.nth_idle(pick).expect("pick < idle count")
                        }
                    },
                }
            };
        self.pin(owner, conn);
        Want::Conn(conn)
    }

    /// An idle connection nobody is pinned to, most recently used first
    /// (a released one was reset before it went idle).
    fn reclaimed_idle(&self) -> Option<ConnId> {
        self.slots
            .idle_newest_first()
            .find(|&id| self.slots.slot(id).pinned.is_empty())
    }

    /// The connection with the fewest pinned owners, an idle one first, then
    /// the one with the shortest line, then the oldest.
    fn least_loaded(&self) -> ConnId {
        self.slots
            .iter()
            .min_by_key(|(id, slot)| {
                let busy = !matches!(slot.state, SlotState::Idle { .. });
                (busy, slot.pinned.len(), self.waiters.bound_to(*id), *id)
            })
            .map(|(id, _)| id)
            .expect("a full pool has connections")
    }

    /// An idle connection `owner` may take now for `want`.
    fn usable_idle(&self, owner: OwnerId, want: Want) -> Option<ConnId> {
        match want {
            Want::Conn(conn) => self.slots.is_idle(conn).then_some(conn),
            // Only a connection nobody is pinned to: someone's session.
            Want::Any if self.config.pinning == Pinning::Exclusive => self.reclaimed_idle(),
            // Affinity prefers its last connection; a Strict owner reaches
            // here unbound only under RandomIdle overflow.
            Want::Any => self
                .pins
                .get(&owner)
                .copied()
                .filter(|&conn| self.slots.is_idle(conn))
                .or_else(|| self.slots.idle_newest_first().next()),
        }
    }

    /// Checks `conn` out to `owner` (request `ticket`) and, for a pinning
    /// checkout, updates its pin.
    /// `since` is when the checkout started.
    fn hand_over(
        &mut self,
        ticket: Ticket,
        owner: OwnerId,
        conn: ConnId,
        pins: bool,
        since: Duration,
    ) {
        let serves_any = self.serves_any(conn);
        self.slots.set_in_use(conn, owner, self.now);
        let pinning = self.config.pinning;
        let repin = pins
            && match pinning {
                Pinning::Strict | Pinning::Exclusive => !self.pins.contains_key(&owner),
                Pinning::Affinity => self.pins.get(&owner) != Some(&conn),
                Pinning::Off => false,
            };
        if repin {
            let old = self.drop_pin(owner);
            self.pin(owner, conn);
            if let Some(old) = old {
                self.free_if_unpinned(old);
            }
        }
        // A pinned owner's session, or under EveryUnpinnedCheckin anyone's,
        // may leave state the next owner must not see.
        if (pins && pinning != Pinning::Off) || self.config.reset == Reset::EveryUnpinnedCheckin {
            self.slots.slot_mut(conn).dirty = true;
        }
        let bypass = self.waiters.pass_over(conn, ticket, serves_any);
        self.counters.max_bypass = self.counters.max_bypass.max(bypass);
        self.counters.checkouts += 1;
        let waited = self.now.saturating_sub(since);
        self.event(Event::CheckedOut {
            owner,
            conn,
            waited,
        });
    }

    /// `conn` is established and held by nobody: retire it if the pool moved
    /// on, else serve waiters according to `policy`.
    fn release(&mut self, conn: ConnId, policy: WakePolicy) {
        if self.closed {
            return self.retire(conn, CloseReason::PoolClosed);
        }
        if self.slots.slot(conn).generation < self.generation {
            return self.retire(conn, CloseReason::Stale);
        }
        if self.outlived(conn) {
            return self.retire(conn, CloseReason::Lifetime);
        }
        if self.is_surplus(conn) {
            return self.retire(conn, CloseReason::Shrunk);
        }
        if self.needs_reset(conn) {
            return self.start_reset(conn);
        }
        match policy {
            WakePolicy::Handoff => match self.oldest_waiter_for(conn) {
                Some(ticket) => self.grant(ticket, conn),
                None => self.slots.set_idle(conn, self.now),
            },
            WakePolicy::Signal => {
                self.slots.set_idle(conn, self.now);
                self.wake_oldest();
            }
            WakePolicy::Broadcast => {
                self.slots.set_idle(conn, self.now);
                while self.wake_oldest() {}
            }
            WakePolicy::Bounded(bound) => self.release_eventually_fair(conn, bound, None),
            WakePolicy::Eventual { bypasses, period } => {
                self.release_eventually_fair(conn, bypasses, Some(period))
            }
        }
    }

    /// Eventual fairness: `conn` goes to its oldest waiter once that was
    /// passed over `bound` times, or (with a `period`, `Eventual`) once the
    /// period since the connection's last direct hand-off is up; otherwise
    /// it goes idle, and `provision` (which ends every input) wakes that
    /// waiter beside it. Under `Eventual` the count applies only to a
    /// waiter any connection could serve ([`WakePolicy::Eventual`] says
    /// why).
    fn release_eventually_fair(&mut self, conn: ConnId, bound: u32, period: Option<Duration>) {
        let Some(ticket) = self.oldest_waiter_for(conn) else {
            return self.slots.set_idle(conn, self.now);
        };
        let now = self.now;
        let slot = self.slots.slot_mut(conn);
        let waiter = self.waiters.get(ticket).expect("queued tickets wait");
        let counted = period.is_none() || waiter.want == Want::Any;
        let passed_over = counted && waiter.bypassed >= u64::from(bound);
        let due = period.is_some() && now >= slot.fair_from;
        if !passed_over && !due {
            return self.slots.set_idle(conn, now);
        }
        if let Some(period) = period {
            // Saturating: a period of `Duration::MAX` means "never by time".
            slot.fair_from = now.saturating_add(period);
        }
        self.grant(ticket, conn);
    }

    /// Under [`WakePolicy::Bounded`] and [`WakePolicy::Eventual`], keeps
    /// the oldest waiter that could use each idle connection awake: the
    /// one woken at a checkin may since have been granted another
    /// connection, cancelled or failed, and the next must not sleep beside
    /// the idle one. O(idle · log W).
    fn wake_beside_idle(&mut self) {
        if !self.config.wake.barges() || self.waiters.len() == 0 {
            return;
        }
        // Field by field, so the idle list is walked without a copy.
        for conn in self.slots.idle_newest_first() {
            let serves_any = serves_any(self.config.pinning, self.slots.slot(conn));
            if let Some(oldest) = self.waiters.oldest_for(conn, serves_any) {
                wake(
                    &mut self.waiters,
                    &mut self.counters,
                    &mut self.actions,
                    oldest,
                );
            }
        }
    }

    /// Hands `conn` directly to waiter `ticket`.
    fn grant(&mut self, ticket: Ticket, conn: ConnId) {
        let waiter = self.waiters.remove(ticket).expect("granted tickets wait");
        self.hand_over(ticket, waiter.owner, conn, waiter.pins, waiter.since);
        self.counters.handoffs += 1;
        self.actions.push_back(Action::Grant { ticket, conn });
    }

    fn wake_oldest(&mut self) -> bool {
        let Some(ticket) = self.waiters.oldest_sleeper() else {
            return false;
        };
        wake(
            &mut self.waiters,
            &mut self.counters,
            &mut self.actions,
            ticket,
        );
        true
    }

    /// Closes `conn`. Owners pinned to it and waiters bound to it move to a
    /// replacement slot while the pool is open.
    fn retire(&mut self, conn: ConnId, reason: CloseReason) {
        let slot = self.slots.remove(conn);
        self.counters.closed += 1;
        self.actions.push_back(Action::Close { conn, reason });
        self.event(Event::ConnectionClosed { conn, reason });
        self.rehome(conn, slot.pinned);
    }

    /// Moves the owners pinned to the vanished connection `conn` and the
    /// waiters bound to it to a new pending slot, if there are any (a closed
    /// pool has none: close dropped them).
    fn rehome(&mut self, conn: ConnId, pinned: BTreeSet<OwnerId>) {
        if pinned.is_empty() && self.waiters.bound_to(conn) == 0 {
            return;
        }
        if self.slots.total() >= self.config.max_size {
            return self.rehome_without_room(conn, pinned);
        }
        // Under Exclusive a connection owners are pinned to serves only them.
        let serves_any = self.config.pinning != Pinning::Exclusive || pinned.is_empty();
        let requested_by = self.waiters.oldest_for(conn, serves_any);
        let replacement = self.slots.create_pending(self.generation, requested_by);
        for &owner in &pinned {
            self.pins.insert(owner, replacement);
            self.event(Event::Pinned {
                owner,
                conn: replacement,
            });
        }
        self.slots.slot_mut(replacement).pinned = pinned;
        self.waiters.retarget(conn, replacement);
    }

    /// Restores what every input must leave true, and so ends every input
    /// that can change it: enough connections on their way (slots for
    /// unbound waiters up to `max_size`, `min_size` kept, pending slots
    /// started up to `max_connecting`) and, under Bounded and Eventual, an
    /// awake waiter beside every idle connection one could use.
    fn provision(&mut self) {
        if self.closed {
            return;
        }
        self.shrink_to_size();
        if std::mem::take(&mut self.idle_to_serve) {
            self.serve_idle();
        }
        if self.paused {
            return;
        }
        let max_size = self.config.max_size;
        if self.config.pinning.binds_for_life() {
            // Unbound Strict owners (RandomIdle overflow found nothing idle)
            // and Exclusive ones (waiting for a pin) get a connection of
            // their own when room appears, as a new owner below max_size
            // would.
            while self.slots.total() < max_size
                && let Some(ticket) = self.waiters.oldest_unbound_pinning()
            {
                let owner = self.waiters.get(ticket).expect("queued").owner;
                // An owner waiting with two checkouts (two futures of one
                // scope) is pinned once: the second joins the first's.
                let conn = match self.pins.get(&owner) {
                    Some(&conn) => conn,
                    None => {
                        let conn = self.slots.create_pending(self.generation, Some(ticket));
                        self.pin(owner, conn);
                        conn
                    }
                };
                self.waiters.set_want(ticket, Want::Conn(conn));
            }
        }
        // The unbound waiters left can use any connection (every waiter but
        // Strict pinned ones; under Strict, unpinned checkouts). A slot on
        // its way nobody is pinned to will serve one of them: open more
        // while they outnumber such slots. A failure is reported to the
        // oldest waiter not already covered.
        if self.slots.total() < max_size && self.waiters.any_unbound() {
            let mut on_the_way = match self.config.pinning {
                // Strict slots opened for new owners serve those owners.
                Pinning::Strict | Pinning::Exclusive => self.slots.unpinned_on_the_way(),
                Pinning::Affinity | Pinning::Off => self.slots.pending() + self.slots.connecting(),
            };
            while self.slots.total() < max_size
                && let Some(ticket) = self.waiters.nth_unbound(on_the_way)
            {
                self.slots.create_pending(self.generation, Some(ticket));
                on_the_way += 1;
            }
        }
        while !self.refill_deferred && self.slots.total() < self.config.min_size {
            self.slots.create_pending(self.generation, None);
        }
        while self.slots.connecting() < self.config.max_connecting
            && !self.backing_off()
            && let Some(conn) = self.slots.start_oldest_pending(self.now)
        {
            self.counters.opened += 1;
            self.actions.push_back(Action::Open(conn));
            self.event(Event::ConnectionCreated(conn));
        }
        // Last: any input (a grant, a cancel, binding unbound waiters above)
        // may have changed who is oldest beside an idle connection.
        self.wake_beside_idle();
    }

    // ------------------------------------------------------------ bookkeeping

    fn pin(&mut self, owner: OwnerId, conn: ConnId) {
        self.pins.insert(owner, conn);
        self.slots.slot_mut(conn).pinned.insert(owner);
        self.event(Event::Pinned { owner, conn });
    }

    fn drop_pin(&mut self, owner: OwnerId) -> Option<ConnId> {
        let conn = self.pins.remove(&owner)?;
        self.slots.slot_mut(conn).pinned.remove(&owner);
        Some(conn)
    }

    /// After a pin on `conn` was released: if it is idle with nobody
    /// pinned, it is reset now if it needs it (a checked-out one is, when
    /// it comes back) and, under Exclusive, it is free for the owners
    /// waiting for a pin, so it is released to them as a checkin would.
    fn free_if_unpinned(&mut self, conn: ConnId) {
        if !self.slots.is_idle(conn) || !self.slots.slot(conn).pinned.is_empty() {
            return;
        }
        if self.needs_reset(conn) || self.outlived(conn) || self.is_surplus(conn) {
            // It is reset, or closed, first.
            self.release(conn, WakePolicy::Handoff);
        } else if self.config.pinning == Pinning::Exclusive
            && let Some(ticket) = self.oldest_waiter_for(conn)
        {
            self.grant(ticket, conn);
        }
    }

    /// Whether `conn`, established and about to be available, must be
    /// reset first: an owner may have left state on it, and no owner
    /// pinned to it is left to share that state with (see [`Reset`]).
    fn needs_reset(&self, conn: ConnId) -> bool {
        let slot = self.slots.slot(conn);
        self.config.reset != Reset::Never
            && slot.dirty
            && slot.pinned.is_empty()
            && !self.closed
            && slot.generation == self.generation
    }

    /// Takes `conn` out of service while the driver resets it.
    fn start_reset(&mut self, conn: ConnId) {
        self.slots.set_resetting(conn, self.now);
        self.counters.resets += 1;
        self.actions.push_back(Action::Reset(conn));
    }

    /// Whether a waiter that can use any connection may use `conn`.
    fn serves_any(&self, conn: ConnId) -> bool {
        self.slots
            .get(conn)
            .is_none_or(|slot| serves_any(self.config.pinning, slot))
    }

    /// The oldest waiter that can use `conn`.
    fn oldest_waiter_for(&self, conn: ConnId) -> Option<Ticket> {
        self.waiters.oldest_for(conn, self.serves_any(conn))
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

    fn expect_connecting(&self, conn: ConnId) -> Result<(), InputError> {
        match self.slots.get(conn).map(|s| s.state) {
            Some(SlotState::Connecting) => Ok(()),
            _ => Err(InputError::WrongConnState {
                conn,
                expected: "connecting",
            }),
        }
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

/// Whether a waiter that can use any connection may use the one in `slot`:
/// under [`Pinning::Exclusive`] only one nobody is pinned to (the others
/// are someone's session).
fn serves_any(pinning: Pinning, slot: &Slot) -> bool {
    pinning != Pinning::Exclusive || slot.pinned.is_empty()
}

/// Wakes `ticket` if it sleeps (a woken waiter is already on its way).
/// Takes the core's fields rather than the core, so a caller may walk the
/// slot table meanwhile.
fn wake(
    waiters: &mut Waiters,
    counters: &mut Counters,
    actions: &mut VecDeque<Action>,
    ticket: Ticket,
) {
    if waiters.wake(ticket) {
        counters.wakeups += 1;
        actions.push_back(Action::Wake(ticket));
    }
}

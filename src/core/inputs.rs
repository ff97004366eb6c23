//! The core's inputs from its driver: checkouts and their retries,
//! cancels and timeouts, checkins, resets done, and owners that unpin
//! or go. (Connect results are in `provision`; time, clears and
//! closes in `lifecycle`; resizes in `resize`.)

use super::*;

impl Core {
    /// `owner` asks for a connection, as the [`Pinning`] mode binds it.
    ///
    /// Returns [`Checkout::Granted`] when it can have one now, otherwise
    /// [`Checkout::Waiting`] with the ticket that a later [`Action::Grant`],
    /// [`Action::Wake`] or [`Action::Fail`] names.
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// // Alice (set up above) holds the only connection; Bob is bound to it.
    /// let Checkout::Waiting(ticket) = core.checkout(bob) else { unreachable!() };
    /// assert_eq!(core.pinned_conn(bob), Some(conn));
    /// core.checkin(conn, Health::Healthy)?;
    /// assert_eq!(core.poll_action(), Some(Action::Grant { ticket, conn }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    pub(super) fn checkout_as(&mut self, owner: OwnerId, pins: bool, waits: bool) -> Checkout {
        let ticket = self.waiters.issue();
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
        if pins && self.is_unserved(owner) {
            self.waiters.mark_unserved(ticket);
        }
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
    ///
    /// ```
    /// use pinpool::core::{Action, Checkout, Config, ConnId, Core, Health, OwnerId, WakePolicy};
    ///
    /// let config = Config { max_size: 1, wake: WakePolicy::Broadcast, ..Config::default() };
    /// let mut core = Core::new(config)?;
    /// let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// core.checkout(alice);
    /// core.poll_action(); // Open
    /// core.connected(conn)?;
    /// core.poll_action(); // Grant
    /// let Checkout::Waiting(bobs) = core.checkout(bob) else { unreachable!() };
    /// core.checkin(conn, Health::Healthy)?;
    /// assert_eq!(core.poll_action(), Some(Action::Wake(bobs)), "a wake, not a grant");
    /// assert!(matches!(core.retry(bobs)?, Checkout::Granted(c) if c == conn));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// let Checkout::Waiting(bobs) = core.checkout(bob) else { unreachable!() };
    /// assert!(core.cancel(bobs)); // Bob's future was dropped
    /// assert_eq!(core.state().waiting, 0);
    /// core.checkin(conn, Health::Healthy)?;
    /// assert_eq!(core.poll_action(), None, "nobody to hand it to");
    /// assert!(!core.cancel(bobs), "no longer waiting");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// let Checkout::Waiting(bobs) = core.checkout(bob) else { unreachable!() };
    /// assert!(core.time_out(bobs)); // Bob's deadline passed first
    /// assert_eq!(core.state().counters.timeouts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time_out(&mut self, ticket: Ticket) -> bool {
        let Some(waiter) = self.waiters.get(ticket).copied() else {
            return false;
        };
        self.cancel(ticket);
        self.counters.timeouts += 1;
        self.fail_now(waiter.owner, FailReason::Timeout, waiter.since);
        true
    }

    /// The holder of `conn` returns it. A broken connection is closed and,
    /// if owners are pinned to it, replaced; a healthy one goes to waiters
    /// according to the [`WakePolicy`].
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// core.checkin(conn, Health::Broken)?;
    /// let closed = Action::Close { conn, reason: CloseReason::Error };
    /// assert_eq!(core.poll_action(), Some(closed));
    /// // Alice is still pinned to it: a replacement opens for her.
    /// assert_eq!(core.poll_action(), Some(Action::Open(ConnId(2))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkin(&mut self, conn: ConnId, health: Health) -> Result<(), InputError> {
        let closes = match health {
            Health::Broken => Some(CloseReason::Error),
            Health::Healthy => None,
        };
        self.hand_back(conn, closes)
    }

    /// The holder of `conn` takes it out of the pool for good (deadpool's
    /// `Object::take`, sqlx's `detach`). It leaves as a broken checkin
    /// does — checked in, then closed ([`CloseReason::Detached`]), its
    /// pins moved to a replacement opened for whoever needs one — but the
    /// driver keeps the physical connection out of the pool: the
    /// [`Action::Close`] that follows is only the core's bookkeeping.
    ///
    /// ```
    /// use pinpool::core::{Action, CloseReason, Config, ConnId, Core, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// core.checkout(OwnerId(1));
    /// core.poll_action(); // Open
    /// core.connected(ConnId(1))?;
    /// core.poll_action(); // Grant
    /// core.detach(ConnId(1))?;
    /// let closed = core.poll_action();
    /// assert_eq!(closed, Some(Action::Close { conn: ConnId(1), reason: CloseReason::Detached }));
    /// // Owner 1 is still pinned: a replacement opens for it.
    /// assert_eq!(core.poll_action(), Some(Action::Open(ConnId(2))));
    /// assert_eq!(core.state().counters.closed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(&mut self, conn: ConnId) -> Result<(), InputError> {
        self.hand_back(conn, Some(CloseReason::Detached))
    }

    /// A checked-out `conn` comes back: released to waiters, or closed for
    /// `closes`.
    fn hand_back(&mut self, conn: ConnId, closes: Option<CloseReason>) -> Result<(), InputError> {
        let owner = self.slots.holder(conn).ok_or(InputError::WrongConnState {
            conn,
            expected: "checked out",
        })?;
        self.counters.checkins += 1;
        self.event(Event::CheckedIn { owner, conn });
        match closes {
            Some(reason) => self.retire(conn, reason),
            None => self.release(conn, self.config.wake),
        }
        self.provision();
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

    /// Releases `owner`'s pin on request (it keeps any connection it holds).
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// assert_eq!(core.pinned_conn(alice), Some(conn));
    /// core.unpin(alice);
    /// assert_eq!(core.pinned_conn(alice), None);
    /// core.checkin(conn, Health::Healthy)?; // still hers to return
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// core.owner_gone(alice); // her thread exited holding the connection
    /// assert_eq!(core.state().counters.reclaimed_pins, 1);
    /// assert_eq!(core.state().pinned_owners, 0);
    /// core.checkin(conn, Health::Healthy)?; // her guard still brings it back
    /// assert_eq!(core.state().total(), 1, "kept for the next owner");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// The driver served `reuses` checkouts (and as many checkins) of a
    /// connection it leased to its pinned owner (see [`Core::may_lease`])
    /// without asking the core. Only the counters change.
    pub fn note_lease_reuses(&mut self, reuses: u64) {
        self.counters.checkouts += reuses;
        self.counters.checkins += reuses;
    }
}

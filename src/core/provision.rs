//! Provisioning: which connections open, when, and what a connect's
//! result does — and closing the ones that must go.

use super::*;

impl Core {
    /// The driver established `conn` (after [`Action::Open`]). It is handed
    /// straight to the oldest waiter that can use it whatever the wake
    /// policy: an opened connection is not a checkin, and the Ruby pool
    /// returned a socket it created to the thread that asked.
    ///
    /// ```
    /// use pinpool::core::{Action, Checkout, Config, Core, OwnerId};
    ///
    /// let mut core = Core::new(Config::default())?;
    /// let Checkout::Waiting(ticket) = core.checkout(OwnerId(1)) else { unreachable!() };
    /// let Some(Action::Open(conn)) = core.poll_action() else { unreachable!() };
    /// // … the driver opens it, outside any lock …
    /// core.connected(conn)?;
    /// assert_eq!(core.poll_action(), Some(Action::Grant { ticket, conn }));
    /// assert!(core.connected(conn).is_err(), "reported twice: a driver bug");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// use pinpool::core::{Action, Checkout, Config, Core, FailReason, OwnerId};
    ///
    /// let mut core = Core::new(Config::default())?;
    /// let Checkout::Waiting(ticket) = core.checkout(OwnerId(1)) else { unreachable!() };
    /// let Some(Action::Open(conn)) = core.poll_action() else { unreachable!() };
    /// core.connect_failed(conn)?; // refused
    /// let failed = Action::Fail { ticket, reason: FailReason::ConnectionError };
    /// assert_eq!(core.poll_action(), Some(failed));
    /// assert_eq!(core.state().counters.connect_failures, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_failed(&mut self, conn: ConnId) -> Result<(), InputError> {
        if self.abandoned.remove(&conn) {
            return Ok(()); // counted when it was abandoned
        }
        self.expect_connecting(conn)?;
        self.fail_connect(conn, FailReason::ConnectionError);
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
                self.forget_unserved(owner);
                self.event(Event::Unpinned { owner, conn });
            }
        }
        self.rehome_failed_connect(conn, slot.pinned);
        self.provision();
    }

    pub(super) fn expect_connecting(&self, conn: ConnId) -> Result<(), InputError> {
        match self.slots.get(conn).map(|s| s.state) {
            Some(SlotState::Connecting) => Ok(()),
            _ => Err(InputError::WrongConnState {
                conn,
                expected: "connecting",
            }),
        }
    }

    /// Restores what every input must leave true, and so ends every input
    /// that can change it: enough connections on their way (slots for
    /// unbound waiters up to `max_size`, `min_size` kept, pending slots
    /// started up to `max_connecting`) and, under Bounded and Eventual, an
    /// awake waiter beside every idle connection one could use.
    ///
    /// Inline, the check that there is nothing to do: a full pool with
    /// nothing pending, no idle connection to serve and no policy that
    /// wakes beside idle ones, which is every input of a contended pool.
    /// There, the whole of this cost a turn about 100 instructions
    /// (`benches/instructions.sh`, the `contended` scenarios).
    #[inline]
    pub(super) fn provision(&mut self) {
        let full = self.slots.total() == self.config.max_size;
        let settled = full
            && self.slots.pending() == 0
            && !self.idle_to_serve
            && (!self.config.wake.barges() || self.waiters.len() == 0);
        if !settled {
            self.provision_unsettled();
        }
    }

    /// [`Core::provision`], where a full pool might not be settled (below).
    fn provision_unsettled(&mut self) {
        if self.closed {
            // Never full (it only shrinks): every input that lets a
            // connection go after the close comes here.
            return self.announce_shut_down();
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
        // (Counted once, and only if there is room and such a waiter: under
        // Strict and Exclusive that is a walk of the slots.)
        let mut on_the_way = None;
        while self.slots.total() < max_size && self.waiters.any_unbound() {
            let counted = *on_the_way.get_or_insert_with(|| match self.config.pinning {
                // Strict slots opened for new owners serve those owners.
                Pinning::Strict | Pinning::Exclusive => self.slots.unpinned_on_the_way(),
                Pinning::Affinity | Pinning::Off => self.slots.pending() + self.slots.connecting(),
            });
            let Some(ticket) = self.waiters.nth_unbound(counted) else {
                break;
            };
            self.slots.create_pending(self.generation, Some(ticket));
            on_the_way = Some(counted + 1);
        }
        while !self.refill_deferred && self.slots.total() < self.config.min_size {
            self.slots.create_pending(self.generation, None);
        }
        // Whether anything is pending is asked first: every input ends
        // here, nearly always with nothing pending, and a length is
        // cheaper than the clock's comparison or `pop_first`.
        while self.slots.pending() > 0
            && self.slots.connecting() < self.config.max_connecting
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

    /// Closes `conn`. Owners pinned to it and waiters bound to it move to a
    /// replacement slot while the pool is open.
    pub(super) fn retire(&mut self, conn: ConnId, reason: CloseReason) {
        let slot = self.slots.remove(conn);
        self.counters.closed += 1;
        self.actions.push_back(Action::Close { conn, reason });
        self.event(Event::ConnectionClosed { conn, reason });
        self.rehome(conn, slot.pinned);
    }
}

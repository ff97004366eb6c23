//! Handing connections over and waking waiters: the grant, and what a
//! released connection does under each wake policy.

use super::*;

impl Core {
    /// Checks `conn` out to `owner` (request `ticket`) and, for a pinning
    /// checkout, updates its pin.
    /// `since` is when the checkout started.
    pub(super) fn hand_over(
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
        // A Strict owner is granted another connection than its own only
        // before its pin first served it (see `Core::unserved`).
        let repin = pins
            && match pinning {
                Pinning::Exclusive => !self.pins.contains_key(&owner),
                Pinning::Strict | Pinning::Affinity => self.pins.get(&owner) != Some(&conn),
                Pinning::Off => false,
            };
        if repin {
            let old = self.drop_pin(owner);
            self.pin(owner, conn);
            if let Some(old) = old {
                if pinning == Pinning::Strict {
                    // Its other checkouts (two futures of one scope) follow
                    // the pin (Affinity's can use any connection).
                    for ticket in self.waiters.of_owner(owner) {
                        self.waiters.set_want(ticket, Want::Conn(conn));
                    }
                }
                self.free_if_unpinned(old);
            }
        }
        if pins {
            // Served now (a re-pin above counted as a first pin, and
            // marked it unserved like one).
            self.forget_unserved(owner);
        }
        // A pinned owner's session, or under EveryUnpinnedCheckin anyone's,
        // may leave state the next owner must not see.
        if (pins && pinning != Pinning::Off) || self.config.reset == Reset::EveryUnpinnedCheckin {
            self.slots.slot_mut(conn).dirty = true;
        }
        self.waiters.pass_over(conn, ticket, serves_any);
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
    pub(super) fn release(&mut self, conn: ConnId, policy: WakePolicy) {
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
            // `Bounded` has no clock: it counts at every checkin.
            WakePolicy::Bounded(bound) => {
                self.release_eventually_fair(conn, bound, None, Duration::ZERO)
            }
            WakePolicy::Eventual {
                bypasses,
                period,
                min_hold,
            } => self.release_eventually_fair(conn, bypasses, Some(period), min_hold),
        }
    }

    /// Eventual fairness: `conn` goes to its oldest waiter once that was
    /// passed over `bound` times, at a checkin ending a hold of at least
    /// `min_hold`, or (with a `period`, `Eventual`) once the period since
    /// the connection's last direct hand-off is up; otherwise it goes
    /// idle, and `provision` (which ends every input) wakes that waiter
    /// beside it. Under `Eventual` the count applies only to a waiter any
    /// connection could serve ([`WakePolicy::Eventual`] says why).
    pub(super) fn release_eventually_fair(
        &mut self,
        conn: ConnId,
        bound: u32,
        period: Option<Duration>,
        min_hold: Duration,
    ) {
        let Some(ticket) = self.oldest_waiter_for(conn) else {
            return self.slots.set_idle(conn, self.now);
        };
        let now = self.now;
        let slot = self.slots.slot_mut(conn);
        let waiter = self.waiters.get(ticket).expect("queued tickets wait");
        // A connection being released was checked out at `since`.
        let held = now.saturating_sub(slot.since);
        let counted = (period.is_none() || waiter.want == Want::Any) && held >= min_hold;
        let bypassed = self.waiters.bypassed(ticket).expect("queued tickets wait");
        let passed_over = counted && bypassed >= u64::from(bound);
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
    /// the idle one. O(idle).
    pub(super) fn wake_beside_idle(&mut self) {
        if !self.config.wake.barges() || self.waiters.len() == 0 {
            return;
        }
        // Field by field, so the idle list is walked without a copy.
        for conn in self.slots.idle_newest_first() {
            if let Some(oldest) = self.oldest_waiter_for(conn) {
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
    pub(super) fn grant(&mut self, ticket: Ticket, conn: ConnId) {
        let waiter = self.waiters.remove(ticket).expect("granted tickets wait");
        self.hand_over(ticket, waiter.owner, conn, waiter.pins, waiter.since);
        self.counters.handoffs += 1;
        self.actions.push_back(Action::Grant { ticket, conn });
    }

    pub(super) fn wake_oldest(&mut self) -> bool {
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

    /// The oldest waiter that can use `conn`: one bound to it, one that
    /// can use any connection if `conn` serves such, or, if nobody is
    /// pinned to it, one whose Strict pin has not served it yet
    /// (see `Core::unserved`).
    #[inline]
    pub(super) fn oldest_waiter_for(&self, conn: ConnId) -> Option<Ticket> {
        let oldest = self.waiters.oldest_for(conn, self.serves_any(conn));
        match self.waiters.oldest_unserved() {
            Some(unserved) if self.slots.get(conn).is_some_and(|s| s.pinned.is_empty()) => {
                Some(oldest.map_or(unserved, |oldest| oldest.min(unserved)))
            }
            _ => oldest,
        }
    }
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

//! Checkout deadlines the core keeps itself: a driver that would otherwise
//! arm a timer for every waiting checkout ([`Core::time_out`] when it
//! fires) hands the deadline to the core instead, and one timer of its
//! own — running [`Core::expire_waiters`] by [`Core::waiters_expire_at`] —
//! times out every waiter. Under contention nearly every checkout waits,
//! and a timer per wait was the async pool's dearest part of a contended
//! turn after the core itself (`benches/instructions.sh`).

use std::time::Duration;

use super::{Action, Core, FailReason, InputError, Ticket};

impl Core {
    /// Waiter `ticket` times out at `deadline`, on the driver's clock: the
    /// first [`Core::expire_waiters`] (or [`Core::maintain`]) at or after
    /// it withdraws the waiter as [`Core::time_out`] does and emits
    /// [`Action::Fail`] with [`FailReason::Timeout`]. Until then the driver
    /// may still time it out, cancel it or retry it as usual.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::*;
    ///
    /// let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// core.checkout(alice);
    /// core.poll_action(); // Open
    /// core.connected(conn)?;
    /// core.poll_action(); // Grant
    /// let Checkout::Waiting(bobs) = core.checkout(bob) else { unreachable!() };
    /// core.time_out_at(bobs, Duration::from_secs(30))?;
    /// assert_eq!(core.waiters_expire_at(), Some(Duration::from_secs(30)));
    /// core.advance(Duration::from_secs(30));
    /// assert_eq!(core.expire_waiters(), 1);
    /// let failed = Action::Fail { ticket: bobs, reason: FailReason::Timeout };
    /// assert_eq!(core.poll_action(), Some(failed));
    /// assert_eq!(core.state().counters.timeouts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time_out_at(&mut self, ticket: Ticket, deadline: Duration) -> Result<(), InputError> {
        if self.waiters.set_deadline(ticket, deadline) {
            Ok(())
        } else {
            Err(InputError::NotWaiting(ticket))
        }
    }

    /// Times out every waiter whose deadline ([`Core::time_out_at`]) the
    /// clock has reached, earliest first; returns how many. Each is
    /// withdrawn as by [`Core::time_out`] and told by [`Action::Fail`].
    /// O(1) when none is due.
    pub fn expire_waiters(&mut self) -> usize {
        let mut expired = 0;
        while let Some((deadline, ticket)) = self.waiters.earliest_deadline()
            && deadline <= self.now
        {
            self.time_out(ticket);
            self.actions.push_back(Action::Fail {
                ticket,
                reason: FailReason::Timeout,
            });
            expired += 1;
        }
        expired
    }

    /// The earliest deadline of a waiter ([`Core::time_out_at`]): when the
    /// driver must run [`Core::expire_waiters`] next. Also counted in
    /// [`Core::poll_timeout`]. O(1).
    pub fn waiters_expire_at(&self) -> Option<Duration> {
        self.waiters
            .earliest_deadline()
            .map(|(deadline, _)| deadline)
    }
}

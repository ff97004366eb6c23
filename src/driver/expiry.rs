//! Waiters timed out by one timer per pool instead of one per waiting
//! checkout: the async pool gives each waiter's deadline to the core
//! ([`Core::time_out_at`]), and its maintenance task, planned here to run
//! by the earliest deadline, expires them ([`Core::expire_waiters`]) and
//! tells each through its mailbox, as any failure.
//!
//! A timer per wait cost the async pool's contended turn 637 of its 4,403
//! instructions (`benches/instructions.sh`), and under contention nearly
//! every checkout waits. Every checkout has the same timeout, so a new
//! deadline is nearly always later than one already planned for, and the
//! timer is told of it only when it is not: when the line had no deadline,
//! or a shorter `get_timeout` came.

use super::*;

impl<C, E: std::fmt::Display, S: Mailbox<C, E>> Inner<C, E, S> {
    /// Waiter `ticket` times out at `deadline`, on the pool's clock, by
    /// the pool's timer. Returns when the timer must run by, if it had
    /// planned no run by then (see [`Inner::plan_expiry`]).
    #[must_use = "the timer must be told to run by the deadline returned"]
    pub(crate) fn time_out_at(&mut self, ticket: Ticket, deadline: Duration) -> Option<Duration> {
        driver_bug(self.core.time_out_at(ticket, deadline));
        self.plan_expiry()
    }

    /// The earliest waiter's deadline, if the timer has planned no run by
    /// then: it is now planned, and the timer must be told.
    #[must_use = "the timer must be told to run by the deadline returned"]
    fn plan_expiry(&mut self) -> Option<Duration> {
        let due = self.core.waiters_expire_at()?;
        if self.expiry_planned.is_some_and(|planned| planned <= due) {
            return None;
        }
        self.expiry_planned = Some(due);
        Some(due)
    }

    /// The timer could not be told of the run last planned (the waiter
    /// that planned it found no runtime to start it on): nothing is
    /// planned, so the next waiter with a deadline tells it again.
    pub(crate) fn forget_expiry_plan(&mut self) {
        self.expiry_planned = None;
    }

    /// One run of the pool's timer (its maintenance run, see
    /// [`Inner::maintain`]), which also expires the waiters whose deadline
    /// passed. Returns when it runs next, on the pool's clock: at the
    /// core's next deadline, or within `interval`.
    pub(crate) fn maintain_and_plan(&mut self, interval: Duration) -> Duration {
        let run = self.maintain();
        let next = self
            .core
            .now()
            .saturating_add(maintenance::next_wait(interval, &run));
        self.expiry_planned = Some(next);
        next
    }
}

//! Oracles for tests and model checks: who sleeps, and whether a
//! sleeper is stranded beside a connection it could use (the 2013
//! bug).

use super::*;

impl Core {
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
                Want::Conn(conn) => {
                    self.slots.is_idle(conn)
                        || (self.is_unserved(waiter.owner) && self.reclaimed_idle().is_some())
                }
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
                // Those whose Strict pin has not served them yet can use
                // one nobody is pinned to.
                let free = self.slots.slot(conn).pinned.is_empty();
                let unserved = self.waiters.unserved().filter(|_| free);
                let mut eligible = (self.waiters.eligible_for(conn, serves_any))
                    .chain(unserved)
                    .peekable();
                eligible.peek().is_some()
                    && eligible
                        .all(|ticket| self.waiters.get(ticket).is_some_and(|w| w.sleep.is_some()))
            })
            .count()
    }
}

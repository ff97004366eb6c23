//! Carrying out the core's actions: deliveries under the lock, and what
//! is left for after it (wake-ups, interrupts, closes, background work).

use super::*;

/// What the lock holder leaves to do once the lock is released.
pub(super) struct Effects<C, W> {
    pub(super) notify: Wakes<W>,
    pub(super) interrupt: Vec<InterruptHandle>,
    pub(super) background: Vec<Work<C>>,
    pub(super) close: Vec<Box<C>>,
}

impl<C, W> Effects<C, W> {
    /// Nothing to do yet.
    pub(super) fn new() -> Self {
        Effects {
            notify: Wakes::default(),
            interrupt: Vec::new(),
            background: Vec::new(),
            close: Vec::new(),
        }
    }

    /// Keeps a waiter's wake-up, if it has one, for after the lock.
    fn wake_later(&mut self, wake: Option<W>) {
        if let Some(wake) = wake {
            self.notify.push(wake);
        }
    }
}

/// The wake-ups an input leaves: the first inline, since under
/// contention nearly every checkin wakes exactly one waiter, and the rest
/// (a close or a clear failing many) in a `Vec`, which allocates nothing
/// while empty. A heap buffer for every wake-up was an allocation and a
/// free per contended turn, and a `SmallVec` of four, filled and drained,
/// cost the turn 50 instructions more than this (`benches/instructions.sh`).
pub(super) struct Wakes<W> {
    first: Option<W>,
    rest: Vec<W>,
}

impl<W> Default for Wakes<W> {
    fn default() -> Self {
        Wakes {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<W> Wakes<W> {
    fn push(&mut self, wake: W) {
        match self.first {
            None => self.first = Some(wake),
            Some(_) => self.rest.push(wake),
        }
    }
}

impl<W> IntoIterator for Wakes<W> {
    type Item = W;
    type IntoIter = std::iter::Chain<std::option::IntoIter<W>, std::vec::IntoIter<W>>;

    /// In the order they were pushed.
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl<C, E: std::fmt::Display, S: Mailbox<C, E>> Inner<C, E, S> {
    /// Takes `conn` out for `owner` (whose checkout pins, or not), leasing
    /// it when the core says the fast path may serve later checkouts: the
    /// owner's, when it is pinned to it ([`Core::may_lease`]; it finds its
    /// lease again through its thread-local or its scope), or any that pins
    /// nobody, through the stash ([`Core::may_stash`]).
    /// `since` is when the checkout started.
    pub(super) fn take_out(
        &mut self,
        owner: OwnerId,
        pins: bool,
        conn: ConnId,
        holder: Option<Arc<Holder>>,
        since: Duration,
    ) -> Handed<C> {
        let physical = self
            .conns
            .remove(conn)
            .expect("the core grants only established connections the pool holds");
        if let (Some(holders), Some(holder)) = (&mut self.holders, holder) {
            holders.insert(conn, holder);
        }
        let now = self.core.now();
        let lease = if self.core.may_lease(owner, conn) {
            let lease = Arc::new(Lease::new(conn, owner, self.core.expires_at(conn)));
            lease.cell().time_first_use(now);
            let held = HeldLease::of(&lease);
            self.leases.insert(conn, lease);
            Some(Leased::Owner(held))
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
        self.metrics.checked_out(since, now);
        Handed {
            id: conn,
            conn: physical,
            lease,
        }
    }

    pub(super) fn failure(&mut self, reason: FailReason) -> Error<E> {
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
    pub(super) fn drain(&mut self, effects: &mut Effects<C, S::Wake>, events: Option<&Events>) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Open(conn) => {
                    self.metrics.connect_started(conn, self.core.now());
                    effects.background.push(Work::Open(conn));
                }
                Action::Reset(conn) => {
                    tracing::debug!(%conn, "resetting a connection between owners");
                    match self.conns.remove(conn) {
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
                    let physical = self.conns.remove(conn);
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
                    let Some(waiting) = self.waiters.remove(ticket) else {
                        debug_assert!(false, "granted {ticket} is not waiting");
                        continue;
                    };
                    let handed = self.take_out(
                        waiting.owner,
                        waiting.pins,
                        conn,
                        waiting.holder,
                        waiting.since,
                    );
                    let wake = S::deliver(waiting.slot, Outcome::Granted(handed));
                    effects.wake_later(wake);
                }
                Action::Wake(ticket) => {
                    if let Some(waiting) = self.waiters.get(ticket) {
                        effects.wake_later(S::wake_to_retry(&waiting.slot));
                    }
                }
                Action::Fail { ticket, reason } => {
                    if let Some(waiting) = self.waiters.remove(ticket) {
                        let failed = Outcome::Failed(self.failure(reason));
                        effects.wake_later(S::deliver(waiting.slot, failed));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Wake-ups go out in the order they were left, however many.
    #[test]
    fn wakes_keep_their_order() {
        for n in 0..4 {
            let mut wakes = Wakes::default();
            for wake in 0..n {
                wakes.push(wake);
            }
            assert!(wakes.into_iter().eq(0..n), "{n} wake-ups");
        }
    }
}

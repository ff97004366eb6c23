//! Carrying out the core's actions: deliveries under the lock, and what
//! is left for after it (wake-ups, interrupts, closes, background work).

use smallvec::SmallVec;

use super::*;

/// What the lock holder leaves to do once the lock is released.
pub(super) struct Effects<C, W> {
    /// Inline for the few an input usually wakes: under contention nearly
    /// every checkin notifies one waiter, and a heap buffer for it was an
    /// allocation and a free per turn (`benches/instructions.sh`).
    pub(super) notify: SmallVec<[W; 4]>,
    pub(super) interrupt: Vec<InterruptHandle>,
    pub(super) background: Vec<Work<C>>,
    pub(super) close: Vec<Box<C>>,
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
            .remove(&conn)
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
        (self.metrics).checked_out(conn, since, now, lease.is_some());
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
                    match self.conns.remove(&conn) {
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
                    let physical = self.conns.remove(&conn);
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
                    let Some(waiting) = self.waiters.remove(&ticket) else {
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
                    effects.notify.extend(wake);
                }
                Action::Wake(ticket) => {
                    if let Some(waiting) = self.waiters.get(&ticket) {
                        effects.notify.extend(S::wake_to_retry(&waiting.slot));
                    }
                }
                Action::Fail { ticket, reason } => {
                    if let Some(waiting) = self.waiters.remove(&ticket) {
                        let failed = Outcome::Failed(self.failure(reason));
                        effects.notify.extend(S::deliver(waiting.slot, failed));
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

//! The state under the pool lock and the inputs the pools make through
//! it: checkouts and their waits, the pool's controls, connect and reset
//! results.

use super::*;

/// The state under the pool lock.
pub(crate) struct Inner<C, E, S: Mailbox<C, E>> {
    pub(super) core: Core,
    /// Established connections nobody holds, by id.
    pub(super) conns: Parked<C>,
    /// The driver's record of each waiting checkout.
    pub(super) waiters: TicketMap<WaitingCheckout<S::Ref>>,
    /// Connections leased to their pinned owner (checked out in the core).
    pub(super) leases: HashMap<ConnId, Arc<Lease<C>>>,
    /// Leases recalled while their holder had the connection, kept until
    /// it comes back: its [`HeldLease`] relies on this reference.
    pub(super) ended: HashMap<ConnId, Arc<Lease<C>>>,
    /// The stash's cells (shared with the fast path) and its leases.
    pub(super) stash: Arc<Stash<C>>,
    pub(super) ledger: Ledger,
    /// The manager's error for the `connect_failed` being processed.
    pub(super) connect_failure: Option<Error<E>>,
    /// By when, at the latest, the pool's timer runs next to time out
    /// waiters (see [`Inner::time_out_at`]); `None`: no run planned.
    #[cfg(feature = "tokio")]
    pub(super) expiry_planned: Option<Duration>,
    /// Who holds each checked-out connection: `Some` with leak detection.
    pub(super) holders: Option<HashMap<ConnId, Arc<Holder>>>,
    /// How to break off each connection's operation, where the manager
    /// gave a way.
    pub(super) interrupts: HashMap<ConnId, InterruptHandle>,
    pub(super) metrics: Metrics,
}

impl<C, E: std::fmt::Display, S: Mailbox<C, E>> Inner<C, E, S> {
    /// A checkout by `owner` (pinning it, or not): granted now, to wait
    /// for in a slot made by `slot` (when it `waits`), or failed.
    pub(crate) fn checkout(
        &mut self,
        owner: OwnerId,
        pins: bool,
        waits: bool,
        slot: impl FnOnce() -> S::Ref,
    ) -> Step<C, E, S::Ref> {
        if pins && let Some(handed) = self.share_lease(owner) {
            return Step::Ready(handed);
        }
        // End the leases whose connections this checkout may depend on.
        // With none live the core is not asked which: under contention
        // that is the usual case, and asking cost the contended turn 97
        // instructions unpinned and 129 pinned (`benches/instructions.sh`).
        if self.any_lease_live() {
            match self.core.checkout_scope(owner, pins) {
                LeaseScope::None => {}
                LeaseScope::Conn(conn) => self.recall_live_leases(Recall::Conn(conn)),
                LeaseScope::Free => self.recall_live_leases(Recall::Stash),
                LeaseScope::All => self.recall_live_leases(Recall::All),
            }
        }
        let checkout = match (waits, pins) {
            (false, _) => self.core.try_checkout(owner, pins),
            (true, true) => self.core.checkout(owner),
            (true, false) => self.core.checkout_unpinned(owner),
        };
        // Recorded here, on the thread that asks.
        let holder = self.holders.is_some().then(|| Arc::new(Holder::here()));
        let since = self.core.now();
        match checkout {
            Checkout::Granted(conn) => Step::Ready(self.take_out(owner, pins, conn, holder, since)),
            Checkout::Waiting(ticket) => {
                let slot = slot();
                let waiting = WaitingCheckout {
                    owner,
                    pins,
                    slot: slot.clone(),
                    holder,
                    since,
                };
                self.waiters.insert(ticket, waiting);
                Step::Wait(ticket, slot)
            }
            Checkout::Failed(reason) => Step::Failed(self.failure(reason)),
        }
    }

    /// `owner`'s connection parked in the lease of an owner pinned to it
    /// too, if the core lets `owner` share that lease
    /// ([`Core::may_share_lease`]): taken as the core would grant it, and
    /// kept by `owner` as its own lease, so that owners taking turns on
    /// one connection go on passing it between them without the lock.
    /// If another owner holds it, nothing changes: `owner` waits for it.
    fn share_lease(&mut self, owner: OwnerId) -> Option<Handed<C>> {
        // No lease at all is the contended case: asked first, it spares
        // the pin's lookup (a pinned contended turn 4,199 → 4,161
        // instructions, `benches/instructions.sh`).
        if self.leases.is_empty() {
            return None;
        }
        let conn = self.core.pinned_conn(owner)?;
        let lease = self.leases.get(&conn)?;
        if !self.core.may_share_lease(owner, conn) {
            return None;
        }
        let now = || self.core.now();
        let (handed, expired) = match lease.take_back(owner, now) {
            Found::Taken(handed) => (handed, false),
            Found::Expired(handed) => (handed, true),
            Found::HeldByOwner | Found::Nothing => return None,
        };
        driver_bug(self.core.note_lease_holder(conn, None));
        if expired {
            // Past its lifetime: back through the core, which closes it.
            self.give_back(handed, Health::Healthy);
            return None;
        }
        Some(handed)
    }

    /// `owner`'s fast path found the connection of its `lease` in its own
    /// hands: unless it has been returned since (its guard was moved to
    /// another thread and dropped there, which the lock orders before this
    /// read), the core records `owner` as its holder again (see
    /// [`Core::note_lease_holder`]), for the owner's checkout to be
    /// refused. Nothing else changes the holder before that checkout: a
    /// co-owner can only take the connection once it is parked.
    pub(crate) fn note_lease_holder(&mut self, lease: &Lease<C>, owner: OwnerId) {
        if lease.held_by(owner) {
            driver_bug(self.core.note_lease_holder(lease.conn, Some(owner)));
        }
    }

    /// A woken waiter tries again: `None` while it must go on waiting,
    /// else its outcome — granted now, or the one delivered to its `slot`
    /// meanwhile (see [`Inner::collect`]).
    pub(crate) fn retry(
        &mut self,
        ticket: Ticket,
        slot: &S,
        waited: Duration,
    ) -> Option<Result<Handed<C>, Error<E>>> {
        match self.core.retry(ticket) {
            Ok(Checkout::Granted(conn)) => Some(match self.waiters.remove(ticket) {
                Some(waiting) => Ok(self.take_out(
                    waiting.owner,
                    waiting.pins,
                    conn,
                    waiting.holder,
                    waiting.since,
                )),
                None => {
                    // The core granted a ticket the driver does not know:
                    // a driver bug. Return the connection rather than lose it.
                    driver_bug(Err(InputError::NotWaiting(ticket)));
                    self.give_back_unleased(conn);
                    Err(self.timed_out(waited))
                }
            }),
            Ok(Checkout::Waiting(_)) => None,
            Err(InputError::NotWaiting(_)) => Some(self.collect(ticket, slot, waited)),
            Ok(Checkout::Failed(_)) | Err(InputError::WrongConnState { .. }) => {
                debug_assert!(false, "retry only grants or waits");
                None
            }
        }
    }

    /// The waiter's deadline passed: it withdraws with a timeout error,
    /// unless an outcome was delivered to its `slot` first, which it then
    /// takes (see [`Inner::collect`]).
    pub(crate) fn time_out(
        &mut self,
        ticket: Ticket,
        slot: &S,
        waited: Duration,
    ) -> Result<Handed<C>, Error<E>> {
        // The state the waiter gave up in, itself still counted as waiting.
        let error = self.timed_out(waited);
        if self.core.time_out(ticket) {
            self.waiters.remove(ticket);
            return Err(error);
        }
        self.collect(ticket, slot, waited)
    }

    /// The outcome of `ticket`, which the core no longer has waiting: every
    /// ticket leaves the core's line with exactly one outcome, delivered
    /// to its slot under this lock, so it is there. A waiter never loops on
    /// the belief that it is: if it is not (a driver bug), the checkout
    /// fails as timed out instead of waiting for what will not come.
    pub(super) fn collect(
        &mut self,
        ticket: Ticket,
        slot: &S,
        waited: Duration,
    ) -> Result<Handed<C>, Error<E>> {
        match slot.take() {
            Some(Outcome::Granted(handed)) => Ok(handed),
            Some(Outcome::Failed(error)) => Err(error),
            Some(Outcome::Woken) | None => {
                driver_bug(Err(InputError::NotWaiting(ticket)));
                self.waiters.remove(ticket);
                Err(self.timed_out(waited))
            }
        }
    }

    /// A timeout error after `waited`, with the pool's state now.
    pub(super) fn timed_out(&self, waited: Duration) -> Error<E> {
        Error::Timeout {
            waited,
            state: Box::new(self.core.state()),
        }
    }

    /// The waiter gave up (its future was dropped). If an outcome reached
    /// its slot first, a granted connection is checked back in: it passes
    /// to the next waiter or to idle, never lost, never counted twice.
    #[cfg(feature = "tokio")]
    pub(crate) fn cancel(&mut self, ticket: Ticket, slot: &S) {
        if self.core.cancel(ticket) {
            self.waiters.remove(ticket);
            return;
        }
        if let Some(Outcome::Granted(handed)) = slot.take() {
            self.give_back(handed, Health::Healthy);
        }
    }

    /// Releases `owner`'s pin on request (and its lease).
    pub(crate) fn unpin(&mut self, owner: OwnerId) {
        self.recall_leases(Recall::Owner(owner));
        self.core.unpin(owner);
    }

    /// `owner` is gone: its lease, pin and waiting tickets are released.
    pub(crate) fn owner_gone(&mut self, owner: OwnerId) {
        self.recall_leases(Recall::Owner(owner));
        self.core.owner_gone(owner);
    }

    /// Closes the pool: waiters fail, idle connections close now, the rest
    /// when they come back.
    pub(crate) fn close(&mut self) {
        self.recall_leases(Recall::All);
        self.core.close();
    }

    /// Clears the pool (see [`Core::clear`]); leased connections come back
    /// first, to be closed as stale.
    pub(crate) fn clear(&mut self, interrupt_in_use: bool) {
        self.recall_leases(Recall::All);
        self.core.clear(interrupt_in_use);
    }

    /// Changes `max_size` (see [`Core::resize`]); when the pool is then
    /// above its size, every lease ends ([`Core::above_size`]): a
    /// connection parked in one comes back, and closes if it is surplus.
    pub(crate) fn resize(&mut self, max_size: usize) -> Result<(), ConfigError> {
        self.core.resize(max_size)?;
        if self.core.above_size() {
            self.recall_leases(Recall::All);
        }
        Ok(())
    }

    /// Resumes a paused pool (see [`Core::ready`]).
    pub(crate) fn ready(&mut self) {
        self.core.ready();
    }

    /// One maintenance run (see [`Core::maintain`]): whether work is left,
    /// and when the core's next deadline falls ([`Core::poll_timeout`]).
    /// Leases are recalled first when lifetimes are configured, so a
    /// pinned owner's parked connection is checked like any idle one.
    pub(crate) fn maintain(&mut self) -> maintenance::Run {
        let config = self.core.config();
        if config.max_lifetime.is_some() || config.idle_timeout.is_some() {
            self.recall_leases(Recall::All);
        }
        let more = self.core.maintain();
        let now = self.core.now();
        self.report_fast_path();
        maintenance::Run {
            more,
            due_in: self.core.poll_timeout().map(|due| due - now),
        }
    }

    /// The core's snapshot as it stands, ending no lease: connections
    /// parked in a lease count as in use, and the checkouts a lease served
    /// are counted when it ends.
    pub(crate) fn status(&self) -> PoolState {
        self.core.state()
    }

    /// A consistent snapshot (recalls the leases, so idle means idle).
    pub(crate) fn state(&mut self) -> PoolState {
        self.recall_leases(Recall::All);
        self.core.state()
    }

    /// Brings the pool's metrics up to date after an operation (see
    /// [`crate::metrics`]): the fast path's counts at most once a second,
    /// then the gauges and counters.
    pub(super) fn report_metrics(&mut self) {
        if self.metrics.fold_due(self.core.now()) {
            self.report_fast_path();
        }
        self.metrics.publish(&self.core);
    }

    /// Counts in the metrics what the fast path served under the leases
    /// still running.
    pub(super) fn report_fast_path(&mut self) {
        for lease in self.leases.values() {
            self.metrics.lease_report(lease.cell());
        }
        for cell in self.ledger.live_cells(&self.stash) {
            self.metrics.lease_report(cell);
        }
    }

    /// Reports the end of `Action::Open(conn)`: the connection (with the
    /// manager's way to interrupt it, if any), or the error that the
    /// checkout which asked for it fails with. Returns how long connects
    /// are now backed off ([`Config::connect_backoff`](crate::core::Config::connect_backoff)),
    /// after which the driver must run maintenance (see
    /// [`Core::connects_resume_at`]) — the worker whose connect failed
    /// waits that long and runs it.
    #[must_use = "a backed-off connect resumes only when maintenance runs"]
    pub(crate) fn opened(&mut self, conn: ConnId, result: Opened<C, E>) -> Option<Duration> {
        (self.metrics).connect_ended(conn, self.core.now(), result.is_ok());
        let reported = match result {
            Ok((connection, interrupt)) => {
                self.conns.insert(conn, Box::new(connection));
                if let Some(handle) = interrupt {
                    self.interrupts.insert(conn, handle);
                }
                self.core.connected(conn)
            }
            Err(error) => {
                self.connect_failure = Some(error);
                self.core.connect_failed(conn)
            }
        };
        driver_bug(reported);
        let now = self.core.now();
        self.core
            .connects_resume_at()
            .map(|at| at.saturating_sub(now))
    }

    /// Reports the end of `Action::Reset(conn)`: the connection, clean
    /// when `ok`; a failed one is closed by the core's next action.
    pub(crate) fn reset_done(&mut self, conn: ConnId, physical: Option<Box<C>>, ok: bool) {
        if let Some(physical) = physical {
            self.conns.insert(conn, physical);
        }
        let health = if ok { Health::Healthy } else { Health::Broken };
        driver_bug(self.core.reset_done(conn, health));
    }
}

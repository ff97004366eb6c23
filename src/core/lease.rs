//! The lease and stash contract: when a driver may serve checkouts
//! itself, off the lock, and which leases a checkout through the core
//! must end first.

use super::*;

/// The holder the core records for a connection whose lease its owners
/// share (see [`Core::note_lease_holder`]): no owner's (the id is reserved), so
/// none is refused as already holding it.
const LEASE_SHARERS: OwnerId = OwnerId(u64::MAX);

impl Core {
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

    /// Whether `owner`, pinned to `conn`, may be served from the lease of
    /// `conn` that the driver holds for another owner pinned to it (see
    /// [`Core::may_lease`]), when it finds the connection parked there:
    /// under [`Pinning::Strict`] owners share a connection, and the core
    /// would grant it to any of them (their own connection, idle, nobody
    /// waiting). Co-owners taking turns then pass it between them without
    /// the core, as a lone owner does. The driver reports the first such
    /// checkout with [`Core::note_lease_holder`] (`None`): from then on
    /// the core no longer knows which of them holds it.
    ///
    /// ```
    /// use pinpool::core::{Checkout, Config, ConnId, Core, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// core.checkout(alice);
    /// core.poll_action(); // Open
    /// core.connected(conn)?;
    /// core.poll_action(); // Grant: alice holds it, leased
    /// let Checkout::Waiting(ticket) = core.checkout(bob) else { unreachable!() };
    /// assert!(!core.may_share_lease(bob, conn), "he waits for it in line");
    /// core.cancel(ticket);
    /// assert!(core.may_share_lease(bob, conn), "pinned to it, and nobody waits");
    /// assert!(!core.may_share_lease(OwnerId(3), conn), "pinned to nothing");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn may_share_lease(&self, owner: OwnerId, conn: ConnId) -> bool {
        // Only Strict pins several owners to one connection for life:
        // Exclusive pins one, and Affinity moves pins.
        self.config.pinning == Pinning::Strict && self.may_lease(owner, conn)
    }

    /// Who holds `conn`, checked out under a lease its co-owners share
    /// (see [`Core::may_share_lease`]), as far as the driver knows:
    /// `None` when a co-owner took it from the lease (then no owner is
    /// refused as holding it: each waits for it instead), `Some(owner)`
    /// when `owner`'s own checkout found it in its hands — so that the
    /// checkout fails with [`FailReason::AlreadyHeld`] rather than wait for
    /// itself.
    ///
    /// ```
    /// use pinpool::core::{Checkout, Config, ConnId, Core, FailReason, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// core.checkout(alice);
    /// core.poll_action(); // Open
    /// core.connected(conn)?;
    /// core.poll_action(); // Grant: alice holds it, leased
    /// let Checkout::Waiting(ticket) = core.checkout(bob) else { unreachable!() };
    /// core.cancel(ticket); // bob is pinned to it too
    /// core.note_lease_holder(conn, None)?; // alice parked it, bob took it
    /// let Checkout::Waiting(ticket) = core.checkout(alice) else { unreachable!() };
    /// core.cancel(ticket);
    /// core.note_lease_holder(conn, Some(bob))?;
    /// assert_eq!(core.checkout(bob), Checkout::Failed(FailReason::AlreadyHeld));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn note_lease_holder(
        &mut self,
        conn: ConnId,
        holder: Option<OwnerId>,
    ) -> Result<(), InputError> {
        if self.slots.holder(conn).is_none() {
            return Err(InputError::WrongConnState {
                conn,
                expected: "checked out",
            });
        }
        self.slots.set_holder(conn, holder.unwrap_or(LEASE_SHARERS));
        Ok(())
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
    pub(super) fn leases_replay_checkins(&self) -> bool {
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
            // Only its own connection can serve it, once it has served it
            // (before that, any nobody is pinned to: see `Core::unserved`).
            (Pinning::Strict, true) => match pinned {
                Some(conn) if !self.is_unserved(owner) => LeaseScope::Conn(conn),
                _ => LeaseScope::All,
            },
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
}

//! Resizing a live pool: [`Core::resize`] changes `max_size`; growing
//! serves waiters at once, shrinking closes the surplus as it comes free.

use super::{
    CloseReason, Config, ConfigError, ConnId, Core, Event, OwnerId, Pinning, WakePolicy, serves_any,
};
use std::collections::BTreeSet;

impl Core {
    /// Changes the pool's `max_size`, rejecting a size the configuration
    /// could not have been built with (zero, above the limit, or below
    /// `min_size`).
    ///
    /// * Growing lets waiters that had no connection open one at once.
    /// * Shrinking drops unstarted slots and closes idle connections now
    ///   ([`CloseReason::Shrunk`]), and checked-out ones as they come back,
    ///   until the pool is within the new size; it never opens while above
    ///   it. Owners pinned to a closed connection move to the least loaded
    ///   one left (under [`Pinning::Exclusive`], where a connection is one
    ///   owner's session, a pinned connection closes only once its owner
    ///   lets go). Connects in flight finish and then close as surplus.
    ///
    /// ```
    /// use pinpool::core::{Action, CloseReason, Config, ConnId, Core, Health, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 2, ..Config::default() })?;
    /// core.checkout(OwnerId(1));
    /// core.checkout(OwnerId(2));
    /// while core.poll_action().is_some() {}
    /// for conn in [ConnId(1), ConnId(2)] {
    ///     core.connected(conn)?;
    ///     core.checkin(conn, Health::Healthy)?;
    /// }
    /// while core.poll_action().is_some() {}
    /// core.resize(1)?;
    /// let closed = core.poll_action();
    /// assert!(matches!(closed, Some(Action::Close { reason: CloseReason::Shrunk, .. })));
    /// assert_eq!(core.state().total(), 1);
    /// assert!(core.resize(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resize(&mut self, max_size: usize) -> Result<(), ConfigError> {
        let config = Config {
            max_size,
            ..self.config
        };
        config.validate()?;
        self.config = config;
        self.event(Event::PoolResized { max_size });
        self.provision();
        Ok(())
    }

    /// Whether the pool holds more connections than `max_size` (it was
    /// shrunk below them): a driver must then end its leases, so that the
    /// surplus connections parked in them come back to be closed (none is
    /// leased again meanwhile; see [`Core::may_lease`]).
    pub fn above_size(&self) -> bool {
        self.slots.total() > self.config.max_size
    }

    /// Whether `conn`, established and coming free, is surplus: the pool
    /// is above `max_size`, and it is nobody's session.
    pub(super) fn is_surplus(&self, conn: ConnId) -> bool {
        self.above_size() && serves_any(self.config.pinning, self.slots.slot(conn))
    }

    /// Brings the pool toward `max_size` with what can go now: unstarted
    /// slots (newest first), then idle connections nobody's session holds,
    /// those with the fewest pins first, then the longest idle.
    pub(super) fn shrink_to_size(&mut self) {
        while self.slots.total() > self.config.max_size {
            if let Some(conn) = self.slots.pending_ids().last() {
                let slot = self.slots.remove(conn);
                self.rehome(conn, slot.pinned);
                continue;
            }
            let pinning = self.config.pinning;
            let victim = self
                .slots
                .idle_oldest_first()
                .filter(|&conn| serves_any(pinning, self.slots.slot(conn)))
                .min_by_key(|&conn| self.slots.slot(conn).pinned.len());
            match victim {
                Some(conn) => self.retire(conn, CloseReason::Shrunk),
                None => return, // the rest close as they come free
            }
        }
    }

    /// Moves the owners pinned to the vanished `conn`, and the waiters
    /// bound to it, when the pool has no room for a replacement (it is
    /// shrinking): to the least loaded connection left, or, under
    /// [`Pinning::Exclusive`] where connections are not shared, nowhere —
    /// they lose the pin and wait for one as new owners do. Either way
    /// the waiters may now be able to use an idle connection: the input's
    /// closing `provision` hands it over ([`Core::serve_idle`]), not this,
    /// which may run in the middle of a walk over the idle connections
    /// (the fuzzer found one closing a connection twice).
    pub(super) fn rehome_without_room(&mut self, conn: ConnId, pinned: BTreeSet<OwnerId>) {
        if self.config.pinning == Pinning::Exclusive {
            for owner in pinned {
                self.pins.remove(&owner);
                self.event(Event::Unpinned { owner, conn });
            }
            self.waiters.unbind(conn);
            self.idle_to_serve = true;
        } else {
            let to = self.least_loaded();
            self.rebind(conn, pinned, to);
        }
    }

    /// Hands each idle connection some waiter can use to the oldest such
    /// waiter, as a newly opened one would be (after waiters were moved
    /// by [`Core::rehome_without_room`]). O(idle).
    pub(super) fn serve_idle(&mut self) {
        let idle: Vec<ConnId> = self.slots.idle_newest_first().collect();
        for conn in idle {
            if self.slots.is_idle(conn) && self.oldest_waiter_for(conn).is_some() {
                self.release(conn, WakePolicy::Handoff);
            }
        }
    }
}

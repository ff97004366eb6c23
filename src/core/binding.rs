//! Binding owners to connections: a new owner's connection (a free
//! one, a new one, or by the overflow rule), pins and their release,
//! and rehoming the owners of a closed connection.

use super::*;

impl Core {
    /// Chooses the connection a new owner is bound to under Strict or
    /// Exclusive pinning and pins it; `Want::Any` when it must wait
    /// unbound (Exclusive with every connection pinned, RandomIdle
    /// overflow with nothing idle).
    pub(super) fn bind_new_owner(&mut self, owner: OwnerId, ticket: Ticket) -> Want {
        if let Some(&conn) = self.pins.get(&owner) {
            // Bound since it asked, through another of its checkouts.
            return Want::Conn(conn);
        }
        let exclusive = self.config.pinning == Pinning::Exclusive;
        let reclaimed = self.reclaimed_idle();
        let conn =
            if exclusive && (reclaimed.is_some() || self.slots.total() >= self.config.max_size) {
                // Any free connection: an idle one nobody is pinned to is taken
                // (and pinned) at once, as such; otherwise every connection is
                // someone's session, and the owner waits for a pin to be
                // released, in line with the others waiting for one.
                return Want::Any;
            } else if let Some(conn) = reclaimed {
                // A connection whose owners are all gone: reuse it before growing.
                conn
            } else if self.slots.total() < self.config.max_size {
                self.slots.create_pending(self.generation, Some(ticket))
            } else {
                match self.config.overflow {
                    Overflow::LeastLoaded => self.least_loaded(),
                    Overflow::Random => {
                        let pick = self.rng.random_range(0..self.slots.total());
                        self.slots.nth(pick)
                    }
                    Overflow::RandomIdle => match self.slots.idle() {
                        0 => return Want::Any,
                        n => {
                            let pick = self.rng.random_range(0..n);
                            self.slots.nth_idle(pick).expect("pick < idle count")
                        }
                    },
                }
            };
        self.pin(owner, conn);
        Want::Conn(conn)
    }

    /// An idle connection nobody is pinned to, most recently used first
    /// (a released one was reset before it went idle).
    pub(super) fn reclaimed_idle(&self) -> Option<ConnId> {
        self.slots
            .idle_newest_first()
            .find(|&id| self.slots.slot(id).pinned.is_empty())
    }

    /// The connection with the fewest pinned owners, an idle one first, then
    /// the one with the shortest line, then the oldest.
    pub(super) fn least_loaded(&self) -> ConnId {
        self.least_loaded_of(|_, _| true)
            .expect("a full pool has connections")
    }

    /// The [least loaded](Self::least_loaded) live connection of this
    /// generation that comes back through the core: an idle one, or one
    /// that others wait for already. One checked out with nobody waiting
    /// may be leased (see [`Core::may_lease`]): its owner's checkins then
    /// keep it in the driver, and a waiter moved onto it would wait until
    /// some other input ended the lease.
    fn least_loaded_live(&self) -> Option<ConnId> {
        self.least_loaded_of(|id, slot| {
            slot.generation == self.generation
                && match slot.state {
                    SlotState::Idle { .. } => true,
                    SlotState::InUse { .. } | SlotState::Resetting => {
                        self.oldest_waiter_for(id).is_some()
                    }
                    SlotState::Pending | SlotState::Connecting => false,
                }
        })
    }

    fn least_loaded_of(&self, eligible: impl Fn(ConnId, &Slot) -> bool) -> Option<ConnId> {
        self.slots
            .iter()
            .filter(|&(id, slot)| eligible(id, slot))
            // Owners first: a pin is for life, while busy is for now. An
            // idle connection with an owner, chosen over one still
            // connecting with none, would leave the new owner sharing a
            // connection for good while another has nobody.
            .min_by_key(|(id, slot)| {
                let busy = !matches!(slot.state, SlotState::Idle { .. });
                (slot.pinned.len(), busy, self.waiters.bound_to(*id), *id)
            })
            .map(|(id, _)| id)
    }

    /// An idle connection `owner` may take now for `want`: an owner whose
    /// Strict pin has not served it yet takes one nobody is pinned to
    /// when its own is busy (its pin moves there as it is handed over).
    pub(super) fn usable_idle(&self, owner: OwnerId, want: Want) -> Option<ConnId> {
        match want {
            Want::Conn(conn) if self.slots.is_idle(conn) => Some(conn),
            Want::Conn(_) if self.is_unserved(owner) => self.reclaimed_idle(),
            Want::Conn(_) => None,
            // Only a connection nobody is pinned to: someone's session.
            Want::Any if self.config.pinning == Pinning::Exclusive => self.reclaimed_idle(),
            // Affinity prefers its last connection; a Strict owner reaches
            // here unbound only under RandomIdle overflow.
            Want::Any => self
                .pins
                .get(&owner)
                .copied()
                .filter(|&conn| self.slots.is_idle(conn))
                .or_else(|| self.slots.idle_newest_first().next()),
        }
    }

    /// Moves the owners pinned to the vanished connection `conn` and the
    /// waiters bound to it to a new pending slot, if there are any (a closed
    /// pool has none: close dropped them).
    pub(super) fn rehome(&mut self, conn: ConnId, pinned: BTreeSet<OwnerId>) {
        if pinned.is_empty() && self.waiters.bound_to(conn) == 0 {
            return;
        }
        if self.slots.total() >= self.config.max_size {
            return self.rehome_without_room(conn, pinned);
        }
        // Under Exclusive a connection owners are pinned to serves only them.
        let serves_any = self.config.pinning != Pinning::Exclusive || pinned.is_empty();
        let requested_by = self.waiters.oldest_for(conn, serves_any);
        let replacement = self.slots.create_pending(self.generation, requested_by);
        for &owner in &pinned {
            self.pins.insert(owner, replacement);
            self.event(Event::Pinned {
                owner,
                conn: replacement,
            });
        }
        self.slots.slot_mut(replacement).pinned = pinned;
        self.waiters.retarget(conn, replacement);
    }

    /// Moves the owners pinned to `conn`, whose connect failed or was
    /// given up, and the waiters bound to it. Under Strict, while a live
    /// connection can take them
    /// ([`least_loaded_live`](Self::least_loaded_live)), they share it, as
    /// owners bound in a full pool do: they have no session to keep, and
    /// the server that failed this connect may fail its replacement too —
    /// they would wait through every retry while the live connections
    /// served everyone else. (The pool, below its size, opens connections
    /// for new owners again.) Otherwise they wait for a replacement, as a
    /// closed connection's owners do ([`rehome`](Self::rehome)).
    pub(super) fn rehome_failed_connect(&mut self, conn: ConnId, pinned: BTreeSet<OwnerId>) {
        let live = (self.config.pinning == Pinning::Strict && self.waiters.bound_to(conn) > 0)
            .then(|| self.least_loaded_live())
            .flatten();
        match live {
            Some(to) => self.rebind(conn, pinned, to),
            None => self.rehome(conn, pinned),
        }
    }

    /// Pins `pinned`, the owners of `conn`, to `to` and moves the waiters
    /// bound to `conn` into its line. They may now be able to use an idle
    /// connection: the input's closing `provision` hands it over
    /// ([`Core::serve_idle`]).
    pub(super) fn rebind(&mut self, conn: ConnId, pinned: BTreeSet<OwnerId>, to: ConnId) {
        for owner in pinned {
            self.pin(owner, to);
        }
        self.waiters.retarget(conn, to);
        self.idle_to_serve = true;
    }

    /// Pins `owner` to `conn`. A Strict owner pinned for the first time
    /// is [unserved](Core::is_unserved) until a connection is handed to
    /// it, and so are the checkouts it waits with.
    pub(super) fn pin(&mut self, owner: OwnerId, conn: ConnId) {
        let first = self.pins.insert(owner, conn).is_none();
        self.slots.slot_mut(conn).pinned.insert(owner);
        self.event(Event::Pinned { owner, conn });
        if first && self.config.pinning == Pinning::Strict {
            self.unserved.insert(owner);
            for ticket in self.waiters.of_owner(owner) {
                self.waiters.mark_unserved(ticket);
            }
        }
    }

    pub(super) fn drop_pin(&mut self, owner: OwnerId) -> Option<ConnId> {
        let conn = self.pins.remove(&owner)?;
        self.slots.slot_mut(conn).pinned.remove(&owner);
        self.forget_unserved(owner);
        Some(conn)
    }

    /// Whether `owner` is pinned (Strict) but no connection has been
    /// handed to it since (see `Core::unserved`).
    pub(super) fn is_unserved(&self, owner: OwnerId) -> bool {
        !self.unserved.is_empty() && self.unserved.contains(&owner)
    }

    /// `owner` was served, or lost its pin.
    pub(super) fn forget_unserved(&mut self, owner: OwnerId) {
        if !self.unserved.is_empty() && self.unserved.remove(&owner) {
            self.waiters.served(owner);
        }
    }

    /// After a pin on `conn` was released: if it is idle with nobody
    /// pinned, it is reset now if it needs it (a checked-out one is, when
    /// it comes back), and otherwise handed to the oldest waiter that can
    /// now use it, as a checkin would.
    pub(super) fn free_if_unpinned(&mut self, conn: ConnId) {
        if !self.slots.is_idle(conn) || !self.slots.slot(conn).pinned.is_empty() {
            return;
        }
        if self.needs_reset(conn) || self.outlived(conn) || self.is_surplus(conn) {
            // It is reset, or closed, first.
            self.release(conn, WakePolicy::Handoff);
        } else if self.config.pinning.binds_for_life()
            && let Some(ticket) = self.oldest_waiter_for(conn)
        {
            // Free now for those that can use any connection nobody is
            // pinned to: under Exclusive the owners waiting for a pin,
            // under Strict those whose pin has not served them yet.
            self.grant(ticket, conn);
        }
    }

    /// Whether a waiter that can use any connection may use `conn`.
    pub(super) fn serves_any(&self, conn: ConnId) -> bool {
        // The policy first: outside Exclusive the slot need not be found
        // (a lookup saved on every hand-off).
        self.config.pinning != Pinning::Exclusive
            || (self.slots.get(conn)).is_none_or(|slot| serves_any(self.config.pinning, slot))
    }
}

/// Whether a waiter that can use any connection may use the one in `slot`:
/// under [`Pinning::Exclusive`] only one nobody is pinned to (the others
/// are someone's session).
pub(super) fn serves_any(pinning: Pinning, slot: &Slot) -> bool {
    pinning != Pinning::Exclusive || slot.pinned.is_empty()
}

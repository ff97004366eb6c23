//! The return path: a guard's connection back under the lock, and the
//! leases recalled when the core must see connections it lent out.

use super::*;

impl<C, E: std::fmt::Display, S: Mailbox<C, E>> Inner<C, E, S> {
    /// Checks `conn`, granted to nobody the driver knows, back in.
    pub(super) fn give_back_unleased(&mut self, conn: ConnId) {
        if let Some(physical) = self.conns.remove(conn) {
            let handed = Handed {
                id: conn,
                conn: physical,
                lease: None,
            };
            self.give_back(handed, Health::Healthy);
        }
    }

    /// Returns a held connection to the core (ending its lease, if any).
    pub(crate) fn give_back(&mut self, handed: Handed<C>, health: Health) {
        let (id, conn) = self.end_hold(handed);
        self.conns.insert(id, conn);
        driver_bug(self.core.checkin(id, health));
    }

    /// Takes a held connection out of the pool (ending its lease, if any):
    /// the core counts it closed, and the pool keeps nothing of it.
    pub(crate) fn detach(&mut self, handed: Handed<C>) -> Box<C> {
        let (id, conn) = self.end_hold(handed);
        driver_bug(self.core.detach(id));
        conn
    }

    /// Ends a hold's lease and bookkeeping, for the connection to go back
    /// to the core or out of the pool.
    fn end_hold(&mut self, handed: Handed<C>) -> (ConnId, Box<C>) {
        match handed.lease {
            Some(Leased::Owner(held)) => {
                let lease = held.get();
                lease.recall();
                lease.returned();
                self.core.note_lease_reuses(lease.reuses());
                self.metrics.lease_report(lease.cell());
                // Last: the table's reference is what kept `held` valid.
                let kept = [&mut self.leases, &mut self.ended]
                    .into_iter()
                    .find(|table| table.get(&handed.id).is_some_and(|l| held.is(l)))
                    .and_then(|table| table.remove(&handed.id));
                debug_assert!(kept.is_some(), "the pool keeps a lease while it is held");
            }
            Some(Leased::Stash(lease)) => {
                self.metrics.lease_report(self.stash.cell(lease));
                let reuses = self.ledger.end(&self.stash, lease);
                self.core.note_lease_reuses(reuses);
            }
            None => self.metrics.checked_in_unleased(&self.core, handed.id),
        }
        if let Some(holders) = &mut self.holders {
            holders.remove(&handed.id);
        }
        (handed.id, handed.conn)
    }

    /// Ends the matching leases: a parked connection is checked in now, a
    /// held one by its holder when it sees the recall. Inline for the
    /// test first: every checkout through the core that could depend on a
    /// lease recalls, and under contention usually none is live (a
    /// connection granted to a waiter while others wait is not leased).
    #[inline]
    pub(super) fn recall_leases(&mut self, recall: Recall) {
        if self.any_lease_live() {
            self.recall_live_leases(recall);
        }
    }

    /// Whether any lease (an owner's, or the stash's) is live: with none,
    /// no recall has anything to end.
    #[inline]
    pub(super) fn any_lease_live(&self) -> bool {
        !self.leases.is_empty() || self.ledger.has_active()
    }

    /// [`recall_leases`](Self::recall_leases) for a caller that has
    /// already found a lease live.
    pub(super) fn recall_live_leases(&mut self, recall: Recall) {
        let mut parked = Vec::new();
        match recall {
            // A lookup, not a scan, and nothing collected: every strict
            // checkout that must wait, and every pinned owner taking its
            // turn on a shared connection, recalls its own connection's
            // lease, so this is the recall on a hot path.
            Recall::Conn(conn) => {
                if let Some(lease) = self.leases.remove(&conn)
                    && let Some(handed) = self.end_lease(conn, lease)
                {
                    self.give_back(handed, Health::Healthy);
                }
            }
            // Owners' leases are on connections pinned to them.
            Recall::Stash => {}
            Recall::Owner(_) | Recall::All => {
                let ending: Vec<_> = (self.leases)
                    .extract_if(|&conn, lease| recall.selects(conn, Some(lease.owner)))
                    .collect();
                for (conn, lease) in ending {
                    parked.extend(self.end_lease(conn, lease));
                }
            }
        }
        if self.ledger.has_active() {
            let selects = |conn| recall.selects(conn, None);
            self.ledger.recall(&self.stash, selects, &mut parked);
        }
        for handed in parked {
            self.give_back(handed, Health::Healthy);
        }
    }

    /// Ends an owner's `lease` on `conn`, taken out of `leases`: the
    /// connection if it was parked in it (the recall's to check in), `None`
    /// if its holder has it (the holder returns it through the core when
    /// its park fails). Either way the lease is kept in `ended` until the
    /// connection is back, for whoever holds it meanwhile.
    fn end_lease(&mut self, conn: ConnId, lease: Arc<Lease<C>>) -> Option<Handed<C>> {
        let parked = lease.recall().map(|physical| Handed {
            id: conn,
            conn: physical,
            lease: Some(Leased::Owner(HeldLease::of(&lease))),
        });
        let earlier = self.ended.insert(conn, lease);
        debug_assert!(earlier.is_none(), "a connection's lease ends once");
        parked
    }
}

/// Which leases a recall ends.
#[derive(Clone, Copy)]
pub(super) enum Recall {
    /// Those of one connection.
    Conn(ConnId),
    /// Those of one owner (stash leases belong to no owner).
    Owner(OwnerId),
    /// The stash's: connections nobody is pinned to.
    Stash,
    All,
}

impl Recall {
    /// Whether it ends the lease of `conn` to `owner` (`None`: the stash).
    fn selects(self, conn: ConnId, owner: Option<OwnerId>) -> bool {
        match self {
            Recall::Conn(recalled) => recalled == conn,
            Recall::Owner(recalled) => owner == Some(recalled),
            Recall::Stash => owner.is_none(),
            Recall::All => true,
        }
    }
}

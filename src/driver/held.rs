//! A connection handed over (with its lease), and the one way back,
//! [`return_conn`].

use super::*;

/// A connection handed to a checkout: its id, the connection, and its
/// lease when the fast path serves it.
pub(crate) struct Handed<C> {
    pub(crate) id: ConnId,
    pub(crate) conn: Box<C>,
    pub(crate) lease: Option<Leased<C>>,
}

impl<C: Send + 'static> Handed<C> {
    /// Its owner's lease, which the owner keeps to find its connection
    /// parked again (a session keeps it itself).
    pub(crate) fn owner_lease(&self) -> Option<Arc<Lease<C>>> {
        match &self.lease {
            Some(Leased::Owner(lease)) => Some(Arc::clone(lease)),
            _ => None,
        }
    }
}

/// How a handed-out connection is leased.
pub(crate) enum Leased<C> {
    /// To its pinned owner (a thread or a scope; see [`lease`]).
    Owner(Arc<Lease<C>>),
    /// To the pool's stash, for checkouts that pin nobody (see [`stash`]).
    Stash(StashLease),
}

/// What is left to do under the pool lock when a guard returns its
/// connection ([`Inner::finish_return`]).
pub(crate) enum Return<C> {
    /// Check it in to the core.
    CheckIn(Handed<C>, Health),
    /// It was parked in the stash after its lease was recalled: take it
    /// back if the lease still holds it.
    Settle(StashLease),
}

/// A guard returns its connection. A healthy leased one is parked (the
/// fast path, no pool lock; its owner keeps its own reference to the
/// lease, so only the guard's goes); anything else (broken, not leased,
/// recalled meanwhile) is left to [`Inner::finish_return`] under the lock.
#[inline(always)]
pub(crate) fn return_conn<C: Send + 'static>(
    stash: &Stash<C>,
    handed: Handed<C>,
    broken: bool,
    now: impl Fn() -> Duration,
) -> Option<Return<C>> {
    if broken {
        return Some(Return::CheckIn(handed, Health::Broken));
    }
    // Taken apart rather than `lease.take()`n: nothing is left behind to
    // drop, which keeps the pinned drop path free of drop glue.
    let Handed { id, conn, lease } = handed;
    let healthy = |conn, lease| Some(Return::CheckIn(Handed { id, conn, lease }, Health::Healthy));
    match lease {
        Some(Leased::Owner(lease)) => match lease.park(conn, now) {
            Ok(()) => None,
            Err(recalled) => healthy(recalled, Some(Leased::Owner(lease))),
        },
        Some(Leased::Stash(lease)) => {
            let parked = stash.park(lease, conn, now);
            (!parked).then_some(Return::Settle(lease))
        }
        None => healthy(conn, None),
    }
}

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
/// recalled meanwhile) goes to `rest`, for [`Inner::finish_return`] under
/// the lock. (Handed to `rest` in each arm rather than returned: the
/// parked case then ends with no `Option` left to test,
/// `benches/instructions.sh`.)
#[inline(always)]
pub(crate) fn return_conn<C: Send + 'static>(
    stash: &Stash<C>,
    handed: Handed<C>,
    broken: bool,
    now: impl Fn() -> Duration,
    rest: impl FnOnce(Return<C>),
) {
    if broken {
        return rest(Return::CheckIn(handed, Health::Broken));
    }
    // Taken apart rather than `lease.take()`n: nothing is left behind to
    // drop, which keeps the pinned drop path free of drop glue.
    let Handed { id, conn, lease } = handed;
    let healthy = |conn, lease| Return::CheckIn(Handed { id, conn, lease }, Health::Healthy);
    match lease {
        Some(Leased::Owner(lease)) => {
            if let Err(recalled) = lease.park(conn, now) {
                rest(healthy(recalled, Some(Leased::Owner(lease))));
            }
        }
        Some(Leased::Stash(lease)) => {
            if !stash.park(lease, conn, now) {
                rest(Return::Settle(lease));
            }
        }
        None => rest(healthy(conn, None)),
    }
}

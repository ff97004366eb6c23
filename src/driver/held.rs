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
            Some(Leased::Owner(lease)) => Some(lease.to_arc()),
            _ => None,
        }
    }
}

/// How a handed-out connection is leased.
pub(crate) enum Leased<C> {
    /// To its pinned owner (a thread or a scope; see [`lease`]).
    Owner(HeldLease<C>),
    /// To the pool's stash, for checkouts that pin nobody (see [`stash`]).
    Stash(StashLease),
}

/// A healthy connection parked in its `lease` without the pool lock (the
/// fast path); `Err` gives it back when it cannot be: it has no lease, or
/// the lease was recalled meanwhile. A park refused once is refused
/// again: a lease's cell, once closed, stays closed while its connection
/// is out.
#[inline(always)]
pub(crate) fn park<C: Send + 'static>(
    stash: &Stash<C>,
    lease: &Option<Leased<C>>,
    conn: Box<C>,
    now: impl Fn() -> Duration,
) -> Result<(), Box<C>> {
    match lease {
        Some(Leased::Owner(lease)) => lease.get().park(conn, now),
        Some(Leased::Stash(lease)) => stash.park(*lease, conn, now),
        None => Err(conn),
    }
}

/// A guard returns its connection. A healthy leased one is parked (the
/// fast path, no pool lock); anything else (broken, not leased,
/// recalled meanwhile) goes to `check_in`, through the core under the
/// lock. (Handed to `check_in` in each arm rather than returned: the
/// parked case then ends with no `Option` left to test,
/// `benches/instructions.sh`.)
#[inline(always)]
pub(crate) fn return_conn<C: Send + 'static>(
    stash: &Stash<C>,
    handed: Handed<C>,
    broken: bool,
    now: impl Fn() -> Duration,
    check_in: impl FnOnce(Handed<C>, Health),
) {
    if broken {
        return check_in(handed, Health::Broken);
    }
    // Taken apart rather than `lease.take()`n: nothing is left behind to
    // drop, which keeps the pinned drop path free of drop glue.
    let Handed { id, conn, lease } = handed;
    if let Err(conn) = park(stash, &lease, conn, now) {
        check_in(Handed { id, conn, lease }, Health::Healthy);
    }
}

//! A connection in a guard's hands: the hold, what was handed over
//! (with its lease), and the one way back, [`return_conn`].

use super::*;

/// A guard's hold on its connection: `Some` until the guard is dropped.
pub(crate) struct Held<C>(Option<Handed<C>>);

impl<C> Held<C> {
    pub(crate) fn new(handed: Handed<C>) -> Self {
        Held(Some(handed))
    }

    fn handed(&self) -> &Handed<C> {
        self.0
            .as_ref()
            .expect("a guard holds its connection until dropped")
    }

    pub(crate) fn id(&self) -> ConnId {
        self.handed().id
    }

    pub(crate) fn conn(&self) -> &C {
        &self.handed().conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut C {
        &mut self
            .0
            .as_mut()
            .expect("a guard holds its connection until dropped")
            .conn
    }

    /// See [`Handed::owner_lease`].
    pub(crate) fn owner_lease(&self) -> Option<AnyLease>
    where
        C: Send + 'static,
    {
        self.handed().owner_lease()
    }

    /// Takes the connection out (in the guard's `drop`).
    pub(crate) fn take(&mut self) -> Option<Handed<C>> {
        self.0.take()
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for Held<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("id", &self.id())
            .field("conn", self.conn())
            .finish()
    }
}

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
    pub(crate) fn owner_lease(&self) -> Option<AnyLease> {
        match &self.lease {
            Some(Leased::Owner(lease)) => Some(Arc::clone(lease) as AnyLease),
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
/// fast path, no pool lock) — an owner's lease then goes to `keep`, with
/// its owner;
/// anything else (broken, not leased, recalled meanwhile) is left to
/// [`Inner::finish_return`] under the lock.
#[inline]
pub(crate) fn return_conn<C: Send + 'static>(
    stash: &Stash<C>,
    mut handed: Handed<C>,
    broken: bool,
    keep: impl FnOnce(OwnerId, AnyLease),
    now: impl Fn() -> Duration,
) -> Option<Return<C>> {
    if broken {
        return Some(Return::CheckIn(handed, Health::Broken));
    }
    match handed.lease.take() {
        Some(Leased::Owner(lease)) => match lease.park(handed.conn, now) {
            Ok(()) => {
                keep(lease.owner, lease);
                None
            }
            Err(recalled) => {
                handed.conn = recalled;
                handed.lease = Some(Leased::Owner(lease));
                Some(Return::CheckIn(handed, Health::Healthy))
            }
        },
        Some(Leased::Stash(lease)) => {
            let parked = stash.park(lease, handed.conn, now);
            (!parked).then_some(Return::Settle(lease))
        }
        None => Some(Return::CheckIn(handed, Health::Healthy)),
    }
}

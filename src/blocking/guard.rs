//! The RAII guard a checkout returns.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::{Manager, Pool, pins};
use crate::core::ConnId;
use crate::driver::Shared as _;
use crate::driver::{Handed, Held};

/// A checked-out connection. Dereferences to the connection; dropping it
/// checks the connection back in (after [`Manager::has_broken`]), also when
/// the holder panics. [`PooledConnection::discard`] closes it instead.
pub struct PooledConnection<'a, M: Manager> {
    pool: &'a Pool<M>,
    held: Held<M::Connection>,
    discarded: bool,
}

impl<'a, M: Manager> PooledConnection<'a, M> {
    pub(crate) fn new(pool: &'a Pool<M>, handed: Handed<M::Connection>) -> Self {
        PooledConnection {
            pool,
            held: Held::new(handed),
            discarded: false,
        }
    }

    /// The pool's id for this connection (stable for its life; a
    /// replacement gets a new id).
    pub fn id(this: &Self) -> ConnId {
        this.held.id()
    }

    /// The lease its owner keeps for the fast path, if it has one.
    pub(crate) fn owner_lease(&self) -> Option<crate::driver::lease::AnyLease> {
        self.held.owner_lease()
    }

    /// Declares the connection broken: it is closed instead of reused, and
    /// the owners pinned to it move to a replacement.
    ///
    /// ```
    /// # use pinpool::blocking::{Pool, PooledConnection};
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// let conn = pool.get()?;
    /// PooledConnection::discard(conn);
    /// assert_eq!(pool.state().counters.closed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn discard(mut this: Self) {
        this.discarded = true;
    }
}

impl<M: Manager> Deref for PooledConnection<'_, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        self.held.conn()
    }
}

impl<M: Manager> DerefMut for PooledConnection<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        self.held.conn_mut()
    }
}

impl<M: Manager> Drop for PooledConnection<'_, M> {
    fn drop(&mut self) {
        let Some(mut handed) = self.held.take() else {
            return;
        };
        let shared = &self.pool.shared;
        let broken = self.discarded || shared.is_broken(&mut handed.conn);
        let pool_id = shared.options.id;
        shared.return_conn(handed, broken, |owner, lease| {
            pins::restore_lease(pool_id, owner, lease)
        });
    }
}

impl<M: Manager> fmt::Debug for PooledConnection<'_, M>
where
    M::Connection: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.held.fmt(f)
    }
}

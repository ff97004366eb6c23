//! The RAII guard an async checkout returns.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::shared::Shared;
use super::{Manager, scope};
use crate::core::ConnId;
use crate::driver::Shared as _;
use crate::driver::{Handed, Held};
use crate::sync::Arc;

/// A checked-out connection. Dereferences to the connection; dropping it
/// checks the connection back in (after [`Manager::has_broken`]), also when
/// the holder panics or its task is cancelled. It may be held across
/// `.await`. [`Pool::get`](super::Pool::get) returns one that borrows the
/// pool (no reference count touched on the hot path, as in bb8 and qp);
/// [`Pool::get_owned`](super::Pool::get_owned) one that owns a reference
/// (`'static`, to move into another task).
/// [`PooledConnection::discard`] closes it instead.
pub struct PooledConnection<'a, M: Manager> {
    pool: PoolRef<'a, M>,
    held: Held<M::Connection>,
    /// Checked in as broken, whatever `has_broken` says.
    broken: bool,
}

/// How a guard reaches its pool.
pub(crate) enum PoolRef<'a, M: Manager> {
    Borrowed(&'a Arc<Shared<M>>),
    Owned(Arc<Shared<M>>),
}

impl<M: Manager> PoolRef<'_, M> {
    fn shared(&self) -> &Arc<Shared<M>> {
        match self {
            PoolRef::Borrowed(shared) => shared,
            PoolRef::Owned(shared) => shared,
        }
    }
}

impl<'a, M: Manager> PooledConnection<'a, M> {
    pub(crate) fn new(pool: PoolRef<'a, M>, handed: Handed<M::Connection>, broken: bool) -> Self {
        PooledConnection {
            pool,
            held: Held::new(handed),
            broken,
        }
    }

    /// Marks a connection that passed validation as healthy.
    pub(crate) fn validated(&mut self) {
        self.broken = false;
    }

    /// The pool's id for this connection (stable for its life; a
    /// replacement gets a new id).
    pub fn id(this: &Self) -> ConnId {
        this.held.id()
    }

    /// Declares the connection broken: it is closed instead of reused, and
    /// the owners pinned to it move to a replacement.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::{Pool, PooledConnection};
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// PooledConnection::discard(pool.get().await?);
    /// assert_eq!(pool.state().counters.closed, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn discard(mut this: Self) {
        this.broken = true;
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
        let shared = self.pool.shared();
        let broken = self.broken || shared.is_broken(&mut handed.conn);
        let pool_id = shared.options.id;
        shared.return_conn(handed, broken, |owner, lease| {
            scope::restore_lease(pool_id, owner, lease)
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

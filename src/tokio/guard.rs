//! The RAII guard an async checkout returns.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::shared::Shared;
use super::{Manager, scope};
use crate::core::{ConnId, Health, OwnerId};
use crate::driver::{Handed, lease};
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
    /// `Some` until the guard is dropped.
    handed: Option<Handed<M::Connection>>,
    /// Whose checkout it is (a scope's lease goes back to it).
    owner: OwnerId,
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
    pub(crate) fn new(
        pool: PoolRef<'a, M>,
        handed: Handed<M::Connection>,
        owner: OwnerId,
        broken: bool,
    ) -> Self {
        PooledConnection {
            pool,
            handed: Some(handed),
            owner,
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
        this.handed().id
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

    fn handed(&self) -> &Handed<M::Connection> {
        self.handed
            .as_ref()
            .expect("a guard holds its connection until dropped")
    }
}

impl<M: Manager> Deref for PooledConnection<'_, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.handed().conn
    }
}

impl<M: Manager> DerefMut for PooledConnection<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self
            .handed
            .as_mut()
            .expect("a guard holds its connection until dropped")
            .conn
    }
}

impl<M: Manager> Drop for PooledConnection<'_, M> {
    fn drop(&mut self) {
        let Some(mut handed) = self.handed.take() else {
            return;
        };
        let shared = self.pool.shared();
        let broken = self.broken || shared.is_broken(&mut handed.conn);
        if !broken {
            // The fast path: park it in the scope's lease, no pool lock.
            match lease::park(handed) {
                Ok(lease) => return scope::restore_lease(shared.id, self.owner, lease),
                Err(unleased) => handed = unleased,
            }
        }
        let health = if broken {
            Health::Broken
        } else {
            Health::Healthy
        };
        shared.checkin(handed, health);
    }
}

impl<M: Manager> fmt::Debug for PooledConnection<'_, M>
where
    M::Connection: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("id", &self.handed().id)
            .field("conn", &self.handed().conn)
            .finish()
    }
}

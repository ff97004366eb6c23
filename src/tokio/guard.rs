//! The RAII guard an async checkout returns.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::shared::Shared;
use super::{Conn, Manager};
use crate::core::ConnId;
use crate::driver::{Guard, Handed, PoolRef};

/// A checked-out connection. Dereferences to the connection; dropping it
/// checks the connection back in (after [`Manager::has_broken`]), also when
/// the holder panics or its task is cancelled. It may be held across
/// `.await`. [`Pool::get`](super::Pool::get) returns one that borrows the
/// pool (no reference count touched on the hot path, as in bb8 and qp);
/// [`Pool::get_owned`](super::Pool::get_owned) one that owns a reference
/// (`'static`, to move into another task).
/// [`PooledConnection::discard`] closes it instead, and
/// [`PooledConnection::detach`] takes it out of the pool.
pub struct PooledConnection<'a, M: Manager>(Guard<'a, Shared<M>>);

impl<'a, M: Manager> PooledConnection<'a, M> {
    /// A guard for `handed`; `unproven` if it must close unless
    /// [`validated`](Self::validated) (a checkout whose validation is
    /// dropped or panics).
    pub(crate) fn new(
        pool: PoolRef<'a, Shared<M>>,
        handed: Handed<Conn<M>>,
        unproven: bool,
    ) -> Self {
        PooledConnection(Guard::new(pool, handed, unproven))
    }

    /// Marks a connection that passed validation as healthy.
    pub(crate) fn validated(&mut self, pool: &Shared<M>) {
        pool.passed_validation(self.0.conn_mut());
        self.0.keep();
    }

    /// The pool's id for this connection (stable for its life; a
    /// replacement gets a new id).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::{Pool, PooledConnection};
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let (first, again) = pool
    ///     .pinned(async {
    ///         let first = PooledConnection::id(&pool.get().await?);
    ///         let again = PooledConnection::id(&pool.get().await?);
    ///         Ok::<_, pinpool::Error<std::io::Error>>((first, again))
    ///     })
    ///     .await?;
    /// assert_eq!(first, again, "the scope's pinned connection");
    /// # Ok(())
    /// # }
    /// ```
    pub fn id(this: &Self) -> ConnId {
        this.0.id()
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
        this.0.discard();
    }

    /// Takes the connection out of the pool for good, as the blocking
    /// pool's [`detach`](crate::blocking::PooledConnection::detach).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::{Pool, PooledConnection};
    /// let pool = Pool::builder().max_size(1).build(|| async { Ok::<_, std::io::Error>(7u8) })?;
    /// let mine: u8 = PooledConnection::detach(pool.get().await?);
    /// assert_eq!(mine, 7);
    /// assert_eq!(pool.state().counters.closed, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn detach(this: Self) -> M::Connection {
        this.0.detach().into_inner()
    }
}

impl<M: Manager> Deref for PooledConnection<'_, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        self.0.conn()
    }
}

impl<M: Manager> DerefMut for PooledConnection<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        self.0.conn_mut()
    }
}

impl<M: Manager> fmt::Debug for PooledConnection<'_, M>
where
    M::Connection: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

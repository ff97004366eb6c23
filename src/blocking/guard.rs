//! The RAII guard a checkout returns.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::shared::Shared;
use super::{Conn, Manager};
use crate::core::ConnId;
use crate::driver::{Guard, Handed, PoolRef};

/// A checked-out connection. Dereferences to the connection; dropping it
/// checks the connection back in (after [`Manager::has_broken`]), also when
/// the holder panics. [`Pool::get`](super::Pool::get) returns one that
/// borrows the pool; [`Pool::get_owned`](super::Pool::get_owned) one that
/// owns a reference (`'static`, to move into another thread).
/// [`PooledConnection::discard`] closes it instead, and
/// [`PooledConnection::detach`] takes it out of the pool.
pub struct PooledConnection<'a, M: Manager>(Guard<'a, Shared<M>>);

impl<'a, M: Manager> PooledConnection<'a, M> {
    pub(crate) fn new(pool: PoolRef<'a, Shared<M>>, handed: Handed<Conn<M>>) -> Self {
        PooledConnection(Guard::new(pool, handed, false))
    }

    /// The pool's id for this connection (stable for its life; a
    /// replacement gets a new id).
    ///
    /// ```
    /// # use pinpool::blocking::{Pool, PooledConnection};
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// let first = PooledConnection::id(&pool.get()?);
    /// assert_eq!(PooledConnection::id(&pool.get()?), first, "this thread's pinned connection");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(this: &Self) -> ConnId {
        this.0.id()
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
        this.0.discard();
    }

    /// Takes the connection out of the pool for good (deadpool's
    /// `Object::take`, sqlx's `detach`): the pool counts it closed
    /// ([`CloseReason::Detached`](crate::core::CloseReason::Detached)),
    /// makes room for a replacement, and moves the owners pinned to it to
    /// another connection; the connection is the caller's to keep or drop.
    ///
    /// ```
    /// # use pinpool::blocking::{Pool, PooledConnection};
    /// let pool = Pool::builder().max_size(1).build(|| Ok::<_, std::io::Error>(vec![7u8]))?;
    /// let conn = pool.get()?;
    /// let first = PooledConnection::id(&conn);
    /// let mine: Vec<u8> = PooledConnection::detach(conn);
    /// assert_eq!(mine, [7]);
    /// assert_eq!(pool.state().counters.closed, 1);
    /// let replacement = pool.get()?; // opened in its place
    /// assert_ne!(PooledConnection::id(&replacement), first);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
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

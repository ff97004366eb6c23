//! Sessions: owners that are values. A thread's pin lasts as long as the
//! thread; a [`Session`] is an owner of its own, moved between threads as
//! the work that needs one connection's session state moves (Go's
//! `DB.Conn()`, MongoDB's `ClientSession`), and its pin ends when it is
//! dropped — never left behind, unlike an explicit "close" that a caller
//! can forget.

use std::fmt;

use super::{Conn, Manager, Pool, PooledConnection};
use crate::Error;
use crate::core::OwnerId;
use crate::driver::deadline::Patience;
use crate::driver::session::SessionOwner;

/// An owner that is a value: see [`Pool::session`]. `Send`, so it moves
/// into another thread; `get` takes it by `&mut`, so one session holds at
/// most one connection at a time.
pub struct Session<M: Manager> {
    pool: Pool<M>,
    owner: SessionOwner<Conn<M>>,
}

impl<M: Manager> Session<M> {
    pub(super) fn new(pool: Pool<M>) -> Self {
        Session {
            pool,
            owner: SessionOwner::new(),
        }
    }

    /// Checks out the session's connection: pins the session on its first
    /// call, then reuses that connection, waiting in line for it up to
    /// the checkout timeout (under
    /// [`Pinning::Exclusive`](crate::core::Pinning::Exclusive), for a pin
    /// to be released when every connection is someone's session).
    ///
    /// ```
    /// # use pinpool::blocking::{Pool, PooledConnection};
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// let mut session = pool.session();
    /// let first = PooledConnection::id(&session.get()?);
    /// assert_eq!(PooledConnection::id(&session.get()?), first);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&mut self) -> Result<PooledConnection<'_, M>, Error<M::Error>> {
        let Session { pool, owner } = self;
        owner.used = true;
        if let Some(parked) = &owner.lease
            && let Some(handed) = pool.take_back(owner.owner, parked)
        {
            return Ok(pool.lend(handed));
        }
        let handed = pool.checkout_as(owner.owner, true, Patience::PoolTimeout)?;
        owner.lease = handed.owner_lease();
        Ok(pool.lend(handed))
    }

    /// The pool's id for the owner this session stands for.
    ///
    /// ```
    /// # use pinpool::blocking::{Pool, PooledConnection};
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::new(noop)?;
    /// let (one, two) = (pool.session(), pool.session());
    /// assert_ne!(one.owner(), two.owner(), "an owner each");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn owner(&self) -> OwnerId {
        self.owner.owner
    }
}

impl<M: Manager> Drop for Session<M> {
    fn drop(&mut self) {
        self.owner.end(&self.pool.shared);
    }
}

impl<M: Manager> fmt::Debug for Session<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.owner.fmt(f)
    }
}

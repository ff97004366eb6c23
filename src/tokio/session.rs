//! Sessions: owners that are values, for the async pool. A pinned scope
//! is one future's owner; a [`Session`] is an owner of its own, moved into
//! whichever task does the work that needs one connection's session state
//! (`tokio::spawn` included, which a scope's pin does not follow), and its
//! pin ends when it is dropped: at the end of that work, or when its task
//! is cancelled.

use std::fmt;
use std::future::Future;

use super::get::FastFirst;
use super::{Caller, Conn, Manager, Pool, PooledConnection};
use crate::Error;
use crate::core::OwnerId;
use crate::driver::PoolRef;
use crate::driver::deadline::Patience;
use crate::driver::session::SessionOwner;

/// An owner that is a value: see [`Pool::session`]. `Send`, so it moves
/// into another task; `get` takes it by `&mut`, so one session holds at
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
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pinpool::tokio::{Pool, PooledConnection};
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let mut session = pool.session();
    /// let first = PooledConnection::id(&session.get().await?);
    /// let again = tokio::spawn(async move { PooledConnection::id(&session.get().await.unwrap()) }).await?;
    /// assert_eq!(again, first, "the session's connection, from another task");
    /// # Ok(())
    /// # }
    /// ```
    pub fn get<'s>(
        &'s mut self,
    ) -> impl Future<Output = Result<PooledConnection<'s, M>, Error<M::Error>>> {
        let Session { pool, owner } = self;
        let fast = move |pool: &Pool<M>| {
            // Moved out of the capture, so that the `Caller` may keep a
            // borrow of it after this call.
            let owner = owner;
            owner.used = true;
            let found = pool.session_fast(owner.owner, owner.lease.as_deref());
            let caller = Caller::Session {
                owner: owner.owner,
                lease: &mut owner.lease,
            };
            (caller, found)
        };
        FastFirst::new(
            pool,
            |pool: &'s Pool<M>| PoolRef::Borrowed(&pool.shared),
            fast,
            |pool, guard_pool, caller, found| {
                pool.checkout(guard_pool, caller, Patience::PoolTimeout, found)
            },
        )
    }

    /// The pool's id for the owner this session stands for.
    ///
    /// ```
    /// # use pinpool::tokio::Pool;
    /// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(()) })?;
    /// let (one, two) = (pool.session(), pool.session());
    /// assert_ne!(one.owner(), two.owner(), "an owner each");
    /// # Ok::<(), pinpool::core::ConfigError>(())
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

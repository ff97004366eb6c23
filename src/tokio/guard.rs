//! The RAII guard an async checkout returns.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::Manager;
use super::shared::Shared;
use crate::core::{ConnId, Health};
use crate::driver::Handed;
use crate::sync::Arc;

/// A checked-out connection. Dereferences to the connection; dropping it
/// checks the connection back in (after [`Manager::has_broken`]), also when
/// the holder panics or its task is cancelled. It owns a reference to the
/// pool, so it may be held across `.await` and moved between tasks.
/// [`PooledConnection::discard`] closes it instead.
pub struct PooledConnection<M: Manager> {
    shared: Arc<Shared<M>>,
    /// `Some` until the guard is dropped.
    handed: Option<Handed<M::Connection>>,
    /// Checked in as broken, whatever `has_broken` says.
    broken: bool,
}

impl<M: Manager> PooledConnection<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, handed: Handed<M::Connection>, broken: bool) -> Self {
        PooledConnection {
            shared,
            handed: Some(handed),
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

impl<M: Manager> Deref for PooledConnection<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.handed().conn
    }
}

impl<M: Manager> DerefMut for PooledConnection<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self
            .handed
            .as_mut()
            .expect("a guard holds its connection until dropped")
            .conn
    }
}

impl<M: Manager> Drop for PooledConnection<M> {
    fn drop(&mut self) {
        let Some(mut handed) = self.handed.take() else {
            return;
        };
        let broken = self.broken || self.shared.is_broken(&mut handed.conn);
        let health = if broken {
            Health::Broken
        } else {
            Health::Healthy
        };
        self.shared.checkin(handed, health);
    }
}

impl<M: Manager> fmt::Debug for PooledConnection<M>
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

//! What both pools' guards are: a connection in a caller's hands, the pool
//! it goes back to, and the one way back when the guard is dropped. Each
//! pool's public `PooledConnection` wraps a [`Guard`] and adds only its
//! signatures.

use std::fmt;

use super::Handed;
use crate::core::ConnId;
use crate::sync::Arc;

/// What a guard needs of its pool: how to take a connection back.
pub(crate) trait TakesBack: Send + Sync + 'static {
    /// The pool's connection type.
    type Conn: Send + 'static;

    /// Takes `handed` back: closed if `discarded` or the manager finds it
    /// broken, else checked in (or parked for its owner).
    fn take_back(self: &Arc<Self>, handed: Handed<Self::Conn>, discarded: bool);

    /// Takes `handed` out of the pool for good: the pool counts it closed
    /// ([`CloseReason::Detached`](crate::core::CloseReason::Detached)) and
    /// keeps nothing of it.
    fn detach(self: &Arc<Self>, handed: Handed<Self::Conn>) -> Box<Self::Conn>;
}

/// How a guard reaches its pool: borrowed from the pool's handle (no
/// reference count touched on the hot path, as in bb8 and qp) or owning a
/// reference (`'static`, for a guard moved into another thread or task).
pub(crate) enum PoolRef<'a, P> {
    Borrowed(&'a Arc<P>),
    Owned(Arc<P>),
}

impl<P> PoolRef<'_, P> {
    fn get(&self) -> &Arc<P> {
        match self {
            PoolRef::Borrowed(pool) => pool,
            PoolRef::Owned(pool) => pool,
        }
    }
}

/// A checked-out connection and the pool it goes back to when dropped.
pub(crate) struct Guard<'a, P: TakesBack> {
    pool: PoolRef<'a, P>,
    /// `Some` until the guard is dropped or detached.
    handed: Option<Handed<P::Conn>>,
    /// Goes back as broken, whatever the manager says.
    discarded: bool,
}

impl<'a, P: TakesBack> Guard<'a, P> {
    /// A guard for `handed`; `discarded` if it must close unless
    /// [`keep`](Self::keep) is called (an async pool's unfinished
    /// validation).
    pub(crate) fn new(pool: PoolRef<'a, P>, handed: Handed<P::Conn>, discarded: bool) -> Self {
        Guard {
            pool,
            handed: Some(handed),
            discarded,
        }
    }

    fn handed(&self) -> &Handed<P::Conn> {
        self.handed
            .as_ref()
            .expect("a guard holds its connection until dropped")
    }

    pub(crate) fn id(&self) -> ConnId {
        self.handed().id
    }

    pub(crate) fn conn(&self) -> &P::Conn {
        &self.handed().conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut P::Conn {
        &mut self
            .handed
            .as_mut()
            .expect("a guard holds its connection until dropped")
            .conn
    }

    /// Closes the connection when the guard is dropped, instead of reusing it.
    pub(crate) fn discard(&mut self) {
        self.discarded = true;
    }

    /// Undoes [`discard`](Self::discard): the connection proved healthy.
    pub(crate) fn keep(&mut self) {
        self.discarded = false;
    }

    /// Takes the connection out of the pool (see [`TakesBack::detach`]).
    pub(crate) fn detach(mut self) -> P::Conn {
        let handed = self
            .handed
            .take()
            .expect("a guard holds its connection until dropped");
        *self.pool.get().detach(handed)
    }
}

impl<P: TakesBack> Drop for Guard<'_, P> {
    fn drop(&mut self) {
        if let Some(handed) = self.handed.take() {
            self.pool.get().take_back(handed, self.discarded);
        }
    }
}

impl<P: TakesBack> fmt::Debug for Guard<'_, P>
where
    P::Conn: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("id", &self.id())
            .field("conn", self.conn())
            .finish()
    }
}

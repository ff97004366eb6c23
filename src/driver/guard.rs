//! What both pools' guards are: a connection in a caller's hands, the pool
//! it goes back to, and the one way back when the guard is dropped. Each
//! pool's public `PooledConnection` wraps a [`Guard`] and adds only its
//! signatures.

use std::fmt;
use std::mem::ManuallyDrop;

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
///
/// The pool and the connection are `ManuallyDrop`, taken out exactly once
/// by whichever ends the guard — its `drop`, or [`detach`](Self::detach),
/// which forgets it — rather than `Option`s emptied on the way out: that
/// saves a check on every dereference, and the out-of-line drop glue for
/// the fields left behind, which cost a pinned get + drop 10 of its ~240
/// instructions in both pools (`benches/instructions.sh`). The crate's
/// second audited `unsafe`, kept to `take`.
pub(crate) struct Guard<'a, P: TakesBack> {
    pool: ManuallyDrop<PoolRef<'a, P>>,
    handed: ManuallyDrop<Handed<P::Conn>>,
    /// Goes back as broken, whatever the manager says.
    discarded: bool,
}

#[allow(unsafe_code)]
impl<'a, P: TakesBack> Guard<'a, P> {
    /// A guard for `handed`; `discarded` if it must close unless
    /// [`keep`](Self::keep) is called (an async pool's unfinished
    /// validation).
    pub(crate) fn new(pool: PoolRef<'a, P>, handed: Handed<P::Conn>, discarded: bool) -> Self {
        Guard {
            pool: ManuallyDrop::new(pool),
            handed: ManuallyDrop::new(handed),
            discarded,
        }
    }

    pub(crate) fn id(&self) -> ConnId {
        self.handed.id
    }

    pub(crate) fn conn(&self) -> &P::Conn {
        &self.handed.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut P::Conn {
        &mut self.handed.conn
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
    pub(crate) fn detach(self) -> P::Conn {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the guard is forgotten, so its `drop` never runs: these
        // fields are taken here once, and nowhere else.
        let (pool, handed) = unsafe { this.take() };
        *pool.get().detach(handed)
    }

    /// Moves the pool and the connection out.
    ///
    /// # Safety
    /// Once only, by whatever ends the guard (`drop`, or `detach` on a
    /// guard it has forgotten): the fields are left moved-from.
    unsafe fn take(&mut self) -> (PoolRef<'a, P>, Handed<P::Conn>) {
        // SAFETY: the caller takes them once (see above).
        unsafe {
            (
                ManuallyDrop::take(&mut self.pool),
                ManuallyDrop::take(&mut self.handed),
            )
        }
    }
}

#[allow(unsafe_code)]
impl<P: TakesBack> Drop for Guard<'_, P> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: `drop` runs once, and `detach` forgets the guard it
        // takes from, so nothing took the fields before.
        let (pool, handed) = unsafe { self.take() };
        // A borrowing guard's return is inlined; an owning one's goes out
        // of line, with the reference it drops after: kept inline, that
        // reference stays live across the return, which costs every
        // guard's drop a spill and a test (4 instructions of a pinned get
        // + drop, `benches/instructions.sh`).
        match pool {
            PoolRef::Borrowed(shared) => shared.take_back(handed, self.discarded),
            PoolRef::Owned(shared) => take_back_owned(shared, handed, self.discarded),
        }
    }
}

/// An owning guard's return (see `Guard::drop`).
#[inline(never)]
fn take_back_owned<P: TakesBack>(shared: Arc<P>, handed: Handed<P::Conn>, discarded: bool) {
    shared.take_back(handed, discarded);
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

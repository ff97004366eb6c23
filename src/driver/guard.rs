//! What both pools' guards are: a connection in a caller's hands, the pool
//! it goes back to, and the one way back when the guard is dropped. Each
//! pool's public `PooledConnection` wraps a [`Guard`] and adds only its
//! signatures.

use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr;

use super::{Handed, Leased};
use crate::core::ConnId;
use crate::sync::Arc;

/// What a guard needs of its pool: how to take a connection back.
pub(crate) trait TakesBack: Send + Sync + 'static {
    /// The pool's connection type.
    type Conn: Send + 'static;

    /// Whether the manager finds `conn` broken (a panic in it counts as
    /// broken).
    fn has_broken(&self, conn: &mut Self::Conn) -> bool;

    /// Parks a healthy `conn` in its `lease`, without the pool lock (see
    /// [`park`](super::held::park)); `Err` gives it back when it cannot.
    fn park(
        &self,
        lease: &Option<Leased<Self::Conn>>,
        conn: Box<Self::Conn>,
    ) -> Result<(), Box<Self::Conn>>;

    /// Takes `handed` back: closed if `broken`, else parked in its lease
    /// or checked in (see [`return_conn`](super::held::return_conn)).
    fn return_conn(self: &Arc<Self>, handed: Handed<Self::Conn>, broken: bool);

    /// Takes `handed` out of the pool for good: the pool counts it closed
    /// ([`CloseReason::Detached`](crate::core::CloseReason::Detached)) and
    /// keeps nothing of it.
    fn detach(self: &Arc<Self>, handed: Handed<Self::Conn>) -> Box<Self::Conn>;
}

/// Implements [`TakesBack`] for a pool's `Shared<M>`, whose `manager`
/// implements `$manager`, which is [`Driven`](super::Driven) and keeps its
/// connections as `Conn<M>` (the manager's, [stamped](super::Stamped)):
/// the same for both pools but for the manager's trait.
macro_rules! takes_back_through_the_driver {
    ($manager:ident) => {
        impl<M: $manager> $crate::driver::TakesBack for Shared<M> {
            type Conn = Conn<M>;

            #[inline(always)]
            fn has_broken(&self, conn: &mut Conn<M>) -> bool {
                $crate::driver::is_broken(|| self.manager.has_broken(conn))
            }

            #[inline(always)]
            fn park(
                &self,
                lease: &Option<$crate::driver::Leased<Conn<M>>>,
                conn: Box<Conn<M>>,
            ) -> Result<(), Box<Conn<M>>> {
                self.locked.park(lease, conn)
            }

            #[inline(always)]
            fn return_conn(
                self: &Arc<Self>,
                handed: $crate::driver::Handed<Conn<M>>,
                broken: bool,
            ) {
                $crate::driver::Driven::return_conn(self, handed, broken);
            }

            fn detach(self: &Arc<Self>, handed: $crate::driver::Handed<Conn<M>>) -> Box<Conn<M>> {
                $crate::driver::Driven::with_core(self, |inner| inner.detach(handed))
            }
        }

        impl<M: $manager> Shared<M> {
            /// A connection just opened, as the pool keeps it (see
            /// [`Validation::opened`](crate::driver::Validation::opened)).
            fn stamped(&self, conn: M::Connection) -> Conn<M> {
                (self.options.validation).opened(conn, || self.locked.read_clock())
            }

            /// Whether a checkout must validate `conn` before handing it
            /// out (see [`Validation::due`](crate::driver::Validation::due)).
            #[inline(always)]
            pub(crate) fn must_validate(&self, conn: &mut Conn<M>) -> bool {
                (self.options.validation).due(conn, || self.locked.read_clock())
            }

            /// `conn` passed its validation (see
            /// [`Validation::passed`](crate::driver::Validation::passed)).
            pub(crate) fn passed_validation(&self, conn: &mut Conn<M>) {
                (self.options.validation).passed(conn, || self.locked.read_clock());
            }
        }
    };
}
pub(crate) use takes_back_through_the_driver;

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
/// second audited `unsafe`, kept to `take` and the drop's fast path.
pub(crate) struct Guard<'a, P: TakesBack> {
    pool: ManuallyDrop<PoolRef<'a, P>>,
    handed: ManuallyDrop<Handed<P::Conn>>,
    /// How the connection goes back, as far as known.
    back: Back,
}

/// How a guard's connection goes back, as far as its holder or the drop's
/// fast path has found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Back {
    /// As the manager finds it (not asked yet).
    AsFound,
    /// Closed, whatever the manager says: discarded, or not validated, or
    /// found broken.
    Broken,
    /// Healthy, as the manager found: parked if its lease allows.
    Healthy,
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
            back: if discarded {
                Back::Broken
            } else {
                Back::AsFound
            },
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
        self.back = Back::Broken;
    }

    /// Undoes [`discard`](Self::discard): the connection proved healthy,
    /// and the manager has its say as it goes back.
    #[cfg(feature = "tokio")]
    pub(crate) fn keep(&mut self) {
        self.back = Back::AsFound;
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
    /// The fast path inline — a borrowing guard's healthy connection
    /// parked in its lease — and everything else out of line, in
    /// [`return_slow`](Self::return_slow). Split so, the fast path needs
    /// no stack frame of its own: it reads the guard where it lies, and
    /// its only call is the tail call to the rest (a pinned get + drop
    /// lost 8 instructions of call overhead and copies in both pools,
    /// `benches/instructions.sh`).
    #[inline(always)]
    fn drop(&mut self) {
        const { assert!(!std::mem::needs_drop::<Option<Leased<P::Conn>>>()) };
        if let (PoolRef::Borrowed(pool), Back::AsFound) = (&*self.pool, self.back) {
            if pool.has_broken(&mut self.handed.conn) {
                self.back = Back::Broken;
            } else {
                // SAFETY: the connection is moved out of the guard and,
                // if the park gives it back, written back before anything
                // else reads the guard. Once parked, the guard ends here
                // with its other fields undropped, which leaks nothing:
                // the pool is a borrow, the id a number and the lease a
                // pointer or a number (the assertion above).
                let conn = unsafe { ptr::read(&self.handed.conn) };
                match pool.park(&self.handed.lease, conn) {
                    Ok(()) => return,
                    Err(conn) => unsafe { ptr::write(&mut self.handed.conn, conn) },
                }
                self.back = Back::Healthy;
            }
        }
        self.return_slow();
    }
}

#[allow(unsafe_code)]
impl<P: TakesBack> Guard<'_, P> {
    /// The way back the drop's fast path did not take: an owning guard's
    /// (whose reference it drops after), a connection broken or not
    /// leased, a lease recalled.
    #[inline(never)]
    fn return_slow(&mut self) {
        // SAFETY: `drop` runs once and calls this at its end, and `detach`
        // forgets the guard it takes from, so nothing took the fields
        // before.
        let (pool, mut handed) = unsafe { self.take() };
        let broken = match self.back {
            Back::AsFound => pool.get().has_broken(&mut handed.conn),
            Back::Broken => true,
            Back::Healthy => false,
        };
        pool.get().return_conn(handed, broken);
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

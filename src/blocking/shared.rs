//! The state behind every handle of one blocking pool: the manager, the
//! options, and the [driver state](crate::driver) under the pool lock.
//! Connects run on `pinpool-connect` threads.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::Manager;
use super::pins::Reclaim;
use super::waiter::WaitSlot;
use crate::Error;
use crate::core::{ConnId, Core, Health, OwnerId, PoolState};
use crate::driver::handle::Closes;
use crate::driver::{self, Handed, Inner, Locked, Options};
use crate::sync::{Arc, AtomicUsize, spawn_or_run};

pub(crate) type Slot<M> = WaitSlot<<M as Manager>::Connection, <M as Manager>::Error>;

/// The driver state of a blocking pool of `M`'s connections.
pub(crate) type State<M> = Inner<<M as Manager>::Connection, <M as Manager>::Error, Slot<M>>;

pub(crate) struct Shared<M: Manager> {
    pub(crate) options: Options,
    pub(crate) manager: M,
    /// Live [`Pool`](super::Pool) handles; the last one closes the pool.
    handles: AtomicUsize,
    locked: Locked<M::Connection, M::Error, Slot<M>>,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, core: Core, options: Options) -> Arc<Self> {
        let shared = Arc::new(Shared {
            options,
            manager,
            handles: AtomicUsize::new(1),
            locked: Locked::new(core),
        });
        // Carry out the core's opening actions (min_size).
        shared.with_core(|_| ());
        shared
    }

    /// Runs `f` under the pool lock, then carries out what it caused.
    pub(crate) fn with_core<R>(self: &Arc<Self>, f: impl FnOnce(&mut State<M>) -> R) -> R {
        self.locked.with_core(f, |conn| self.spawn_open(conn))
    }

    /// Holds the pool lock (tests prove the fast path never takes it).
    #[cfg(test)]
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, State<M>> {
        self.locked.lock()
    }

    /// Returns a connection to the core, ending its lease if it had one.
    pub(crate) fn checkin(self: &Arc<Self>, handed: Handed<M::Connection>, health: Health) {
        self.with_core(|inner| inner.give_back(handed, health));
    }

    /// Blocks until the core's state satisfies `done` (model checks only).
    #[cfg(pinpool_loom)]
    pub(crate) fn wait_for(&self, done: impl Fn(&PoolState) -> bool) {
        self.locked.wait_for(done);
    }

    /// `has_broken`; a panic in it counts as broken.
    pub(crate) fn is_broken(&self, conn: &mut M::Connection) -> bool {
        driver::is_broken(|| self.manager.has_broken(conn))
    }

    /// `validate`, with a panic in it counted as a failed validation.
    pub(crate) fn is_valid(&self, id: ConnId, conn: &mut M::Connection) -> bool {
        match catch_unwind(AssertUnwindSafe(|| self.manager.validate(conn))) {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::debug!(%error, %id, "validation failed; replacing the connection");
                false
            }
            Err(_) => {
                tracing::warn!(%id, "validate panicked; replacing the connection");
                false
            }
        }
    }

    /// A consistent snapshot (recalls the leases, so idle means idle).
    pub(crate) fn state(self: &Arc<Self>) -> PoolState {
        self.with_core(State::<M>::state)
    }

    fn spawn_open(self: &Arc<Self>, conn: ConnId) {
        let shared = Arc::clone(self);
        spawn_or_run("pinpool-connect", move || shared.open(conn));
    }

    /// Carries out `Action::Open(conn)` and reports the result to the core.
    fn open(self: &Arc<Self>, conn: ConnId) {
        let result = match catch_unwind(AssertUnwindSafe(|| self.manager.connect())) {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => {
                tracing::debug!(%error, %conn, "connect failed");
                Err(Error::Connect(error))
            }
            Err(_) => {
                tracing::warn!(%conn, "the manager panicked in connect");
                Err(Error::ConnectPanicked)
            }
        };
        self.with_core(|inner| inner.opened(conn, result));
    }
}

impl<M: Manager> Reclaim for Shared<M> {
    fn owner_gone(self: Arc<Self>, owner: OwnerId) {
        self.with_core(|inner| inner.owner_gone(owner));
    }
}

impl<M: Manager> Closes for Shared<M> {
    fn handles(&self) -> &AtomicUsize {
        &self.handles
    }

    /// Closes the pool: waiters fail, idle connections close now, the rest
    /// when they come back.
    fn close(self: &Arc<Self>) {
        self.with_core(State::<M>::close);
    }

    fn id(&self) -> u64 {
        self.options.id
    }
}

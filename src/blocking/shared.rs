//! The state behind every handle of one blocking pool: the core under one
//! lock, the physical connections, the waiters and the leases, and the
//! carrying-out of the core's actions (always after the lock is released).

use rustc_hash::FxHashMap as HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use super::Manager;
use super::lease::Lease;
use super::pins::Reclaim;
use super::waiter::{Outcome, WaitSlot};
use crate::Error;
use crate::core::{
    Action, Checkout, ConnId, Core, FailReason, Health, InputError, OwnerId, PoolState, Ticket,
};
use crate::sync::{Arc, AtomicUsize, Mutex, spawn_or_run};

/// A connection handed to a checkout: its id, the connection, and the
/// lease when it was leased to its pinned owner.
pub(crate) struct Handed<C> {
    pub(crate) id: ConnId,
    pub(crate) conn: Box<C>,
    pub(crate) lease: Option<Arc<Lease<C>>>,
}

/// The immediate result of a checkout under the lock.
pub(crate) enum Step<M: Manager> {
    Ready(Handed<M::Connection>),
    Wait(Ticket, Arc<Slot<M>>),
    Failed(Error<M::Error>),
}

pub(crate) type Slot<M> = WaitSlot<<M as Manager>::Connection, <M as Manager>::Error>;

pub(crate) struct Shared<M: Manager> {
    /// Identifies this pool in threads' pin registrations.
    pub(crate) id: u64,
    pub(crate) manager: M,
    pub(crate) checkout_timeout: Duration,
    pub(crate) validate_on_checkout: bool,
    /// Live [`Pool`](super::Pool) handles; the last one closes the pool.
    pub(crate) handles: AtomicUsize,
    inner: Mutex<Inner<M>>,
    /// Notified after every change, so a model can wait for one (a loom
    /// `join` may return before the thread's thread-local destructors run).
    #[cfg(pinpool_loom)]
    changed: crate::sync::Condvar,
}

struct Waiting<M: Manager> {
    owner: OwnerId,
    /// Whether the owner can hold a lease (it has a thread registration).
    may_lease: bool,
    slot: Arc<Slot<M>>,
}

pub(crate) struct Inner<M: Manager> {
    core: Core,
    /// Established connections nobody holds, by id.
    conns: HashMap<ConnId, Box<M::Connection>>,
    waiters: HashMap<Ticket, Waiting<M>>,
    /// Connections leased to their pinned owner (checked out in the core).
    leases: HashMap<ConnId, Arc<Lease<M::Connection>>>,
    /// The manager's error for the `connect_failed` being processed.
    connect_failure: Option<Error<M::Error>>,
}

/// What the lock holder leaves to do once the lock is released.
struct Effects<M: Manager> {
    unpark: Vec<Arc<Slot<M>>>,
    open: Vec<ConnId>,
    close: Vec<Box<M::Connection>>,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(
        id: u64,
        manager: M,
        core: Core,
        checkout_timeout: Duration,
        validate_on_checkout: bool,
    ) -> Arc<Self> {
        let shared = Arc::new(Shared {
            id,
            manager,
            checkout_timeout,
            validate_on_checkout,
            handles: AtomicUsize::new(1),
            inner: Mutex::new(Inner {
                core,
                conns: HashMap::default(),
                waiters: HashMap::default(),
                leases: HashMap::default(),
                connect_failure: None,
            }),
            #[cfg(pinpool_loom)]
            changed: crate::sync::Condvar::new(),
        });
        // Carry out the core's opening actions (min_size).
        shared.with_core(|_| ());
        shared
    }

    /// Runs `f` on the core under the lock, then carries out the actions it
    /// caused with the lock released.
    pub(crate) fn with_core<R>(self: &Arc<Self>, f: impl FnOnce(&mut Inner<M>) -> R) -> R {
        let mut effects = Effects {
            unpark: Vec::new(),
            open: Vec::new(),
            close: Vec::new(),
        };
        let result = {
            let mut inner = self.inner.lock();
            let result = f(&mut inner);
            inner.drain(&mut effects);
            result
        };
        #[cfg(pinpool_loom)]
        self.changed.notify_all();
        for slot in effects.unpark {
            slot.unpark();
        }
        drop(effects.close);
        for conn in effects.open {
            self.spawn_open(conn);
        }
        result
    }

    /// Holds the pool lock (tests prove the fast path never takes it).
    #[cfg(test)]
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, Inner<M>> {
        self.inner.lock()
    }

    /// Returns a connection to the core, ending its lease if it had one.
    pub(crate) fn checkin(
        self: &Arc<Self>,
        handed: Handed<M::Connection>,
        health: Health,
        owner: OwnerId,
        ephemeral: bool,
    ) {
        self.with_core(|inner| {
            inner.give_back(handed, health);
            if ephemeral {
                inner.owner_gone(owner);
            }
        });
    }

    /// Blocks until the core's state satisfies `done` (model checks only).
    #[cfg(pinpool_loom)]
    pub(crate) fn wait_for(&self, done: impl Fn(&PoolState) -> bool) {
        let mut inner = self.inner.lock();
        while !done(&inner.core.state()) {
            inner = self
                .changed
                .wait(inner)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// `has_broken`, with a panic in it counted as broken (the connection
    /// must come back to the pool whatever the manager does).
    pub(crate) fn is_broken(&self, conn: &mut M::Connection) -> bool {
        catch_unwind(AssertUnwindSafe(|| self.manager.has_broken(conn))).unwrap_or(true)
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

    /// Closes the pool: waiters fail, idle connections close now, the rest
    /// when they come back.
    pub(crate) fn close(self: &Arc<Self>) {
        self.with_core(|inner| {
            inner.recall_leases(|_| true);
            inner.core.close();
        });
    }

    /// A consistent snapshot (recalls the leases, so idle means idle).
    pub(crate) fn state(self: &Arc<Self>) -> PoolState {
        self.with_core(|inner| {
            inner.recall_leases(|_| true);
            inner.core.state()
        })
    }

    fn spawn_open(self: &Arc<Self>, conn: ConnId) {
        let shared = Arc::clone(self);
        spawn_or_run("pinpool-connect", move || shared.open(conn));
    }

    /// Carries out `Action::Open(conn)` and reports the result to the core.
    fn open(self: &Arc<Self>, conn: ConnId) {
        let result = catch_unwind(AssertUnwindSafe(|| self.manager.connect()));
        self.with_core(|inner| {
            let reported = match result {
                Ok(Ok(connection)) => {
                    inner.conns.insert(conn, Box::new(connection));
                    inner.core.connected(conn)
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, %conn, "connect failed");
                    inner.connect_failure = Some(Error::Connect(error));
                    inner.core.connect_failed(conn)
                }
                Err(_) => {
                    tracing::warn!(%conn, "the manager panicked in connect");
                    inner.connect_failure = Some(Error::ConnectPanicked);
                    inner.core.connect_failed(conn)
                }
            };
            driver_bug(reported);
        });
    }
}

impl<M: Manager> Reclaim for Shared<M> {
    fn owner_gone(self: Arc<Self>, owner: OwnerId) {
        self.with_core(|inner| inner.owner_gone(owner));
    }
}

impl<M: Manager> Inner<M> {
    /// A checkout by `owner`: granted now, to wait for, or failed.
    pub(crate) fn checkout(&mut self, owner: OwnerId, may_lease: bool) -> Step<M> {
        self.recall_for(owner);
        match self.core.checkout(owner) {
            Checkout::Granted(conn) => Step::Ready(self.hand_out(owner, conn, may_lease)),
            Checkout::Waiting(ticket) => {
                let slot = WaitSlot::for_current_thread();
                let waiting = Waiting {
                    owner,
                    may_lease,
                    slot: Arc::clone(&slot),
                };
                self.waiters.insert(ticket, waiting);
                Step::Wait(ticket, slot)
            }
            Checkout::Failed(reason) => Step::Failed(self.failure(reason)),
        }
    }

    /// A woken waiter tries again; `None` while it must go on waiting (or
    /// when its outcome was delivered to its slot meanwhile).
    pub(crate) fn retry(&mut self, ticket: Ticket) -> Option<Handed<M::Connection>> {
        match self.core.retry(ticket) {
            Ok(Checkout::Granted(conn)) => {
                let waiting = self.waiters.remove(&ticket)?;
                Some(self.hand_out(waiting.owner, conn, waiting.may_lease))
            }
            Ok(Checkout::Waiting(_)) | Err(InputError::NotWaiting(_)) => None,
            Ok(Checkout::Failed(_)) | Err(InputError::WrongConnState { .. }) => {
                debug_assert!(false, "retry only grants or waits");
                None
            }
        }
    }

    /// The waiter's deadline passed: `Some(error)` if it withdrew, `None`
    /// if an outcome was delivered to its slot first.
    pub(crate) fn time_out(&mut self, ticket: Ticket, waited: Duration) -> Option<Error<M::Error>> {
        // The state the waiter gave up in, itself still counted as waiting.
        let state = self.core.state();
        if !self.core.time_out(ticket) {
            return None;
        }
        self.waiters.remove(&ticket);
        Some(Error::Timeout {
            waited,
            state: Box::new(state),
        })
    }

    /// Releases `owner`'s pin on request (and its lease).
    pub(crate) fn unpin(&mut self, owner: OwnerId) {
        self.recall_leases(|lease| lease.owner == owner);
        self.core.unpin(owner);
    }

    /// `owner` is gone: its lease, pin and waiting tickets are released.
    pub(crate) fn owner_gone(&mut self, owner: OwnerId) {
        self.recall_leases(|lease| lease.owner == owner);
        self.core.owner_gone(owner);
    }

    /// Returns a held connection to the core (ending its lease, if any).
    fn give_back(&mut self, handed: Handed<M::Connection>, health: Health) {
        if let Some(lease) = handed.lease {
            lease.recall();
            if self
                .leases
                .get(&handed.id)
                .is_some_and(|current| Arc::ptr_eq(current, &lease))
            {
                self.leases.remove(&handed.id);
            }
            self.core.note_lease_reuses(lease.reuses());
        }
        self.conns.insert(handed.id, handed.conn);
        driver_bug(self.core.checkin(handed.id, health));
        // The model checks' oracle for the 2013 bug (loom-tests/): after a
        // checkin no waiter may sleep while a connection it can use is idle.
        #[cfg(pinpool_loom)]
        assert_eq!(
            self.core.stranded(),
            0,
            "lost wake-up: a waiter sleeps while a connection it can use is idle"
        );
    }

    /// Ends the leases a checkout by `owner` could depend on (the core's
    /// [`Core::checkout_scope`]).
    fn recall_for(&mut self, owner: OwnerId) {
        if self.leases.is_empty() {
            return;
        }
        match self.core.checkout_scope(owner) {
            Some(conn) => self.recall_leases(|lease| lease.conn == conn),
            None => self.recall_leases(|_| true),
        }
    }

    /// Ends the matching leases: a parked connection is checked in now, a
    /// held one by its holder when it sees the recall.
    fn recall_leases(&mut self, which: impl Fn(&Lease<M::Connection>) -> bool) {
        let recalled: Vec<ConnId> = self
            .leases
            .iter()
            .filter(|(_, lease)| which(lease))
            .map(|(&conn, _)| conn)
            .collect();
        for conn in recalled {
            let lease = self.leases.remove(&conn).expect("listed above");
            if let Some(parked) = lease.recall() {
                let handed = Handed {
                    id: conn,
                    conn: parked,
                    lease: Some(lease),
                };
                self.give_back(handed, Health::Healthy);
            }
        }
    }

    /// Takes `conn` out for `owner`, leasing it when the core says the
    /// fast path may serve the owner's next checkouts ([`Core::may_lease`])
    /// and the owner can find its lease again (a thread registration).
    fn hand_out(&mut self, owner: OwnerId, conn: ConnId, may_lease: bool) -> Handed<M::Connection> {
        let physical = self
            .conns
            .remove(&conn)
            .expect("the core grants only established connections the pool holds");
        let lease = (may_lease && self.core.may_lease(owner, conn)).then(|| {
            let lease = Arc::new(Lease::new(conn, owner));
            self.leases.insert(conn, Arc::clone(&lease));
            lease
        });
        Handed {
            id: conn,
            conn: physical,
            lease,
        }
    }

    fn failure(&mut self, reason: FailReason) -> Error<M::Error> {
        match reason {
            FailReason::PoolClosed => Error::Closed,
            FailReason::AlreadyHeld => Error::AlreadyHeld,
            FailReason::ConnectionError => self
                .connect_failure
                .take()
                .unwrap_or(Error::ConnectPanicked),
            FailReason::Timeout => Error::Timeout {
                waited: Duration::ZERO,
                state: Box::new(self.core.state()),
            },
        }
    }

    /// Turns the core's pending actions into deliveries (made now, under
    /// the lock) and effects (carried out after it).
    fn drain(&mut self, effects: &mut Effects<M>) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Open(conn) => effects.open.push(conn),
                Action::Close { conn, reason } => {
                    tracing::debug!(%conn, ?reason, "closing connection");
                    effects.close.extend(self.conns.remove(&conn));
                }
                Action::Grant { ticket, conn } => {
                    let Some(waiting) = self.waiters.remove(&ticket) else {
                        debug_assert!(false, "granted {ticket} is not waiting");
                        continue;
                    };
                    let handed = self.hand_out(waiting.owner, conn, waiting.may_lease);
                    waiting.slot.deliver(Outcome::Granted(handed));
                    effects.unpark.push(waiting.slot);
                }
                Action::Wake(ticket) => {
                    if let Some(waiting) = self.waiters.get(&ticket) {
                        waiting.slot.deliver(Outcome::Woken);
                        effects.unpark.push(Arc::clone(&waiting.slot));
                    }
                }
                Action::Fail { ticket, reason } => {
                    if let Some(waiting) = self.waiters.remove(&ticket) {
                        waiting.slot.deliver(Outcome::Failed(self.failure(reason)));
                        effects.unpark.push(waiting.slot);
                    }
                }
            }
        }
        if let Some(error) = self.connect_failure.take() {
            // Its requester had already given up.
            tracing::debug!(%error, "connect failure with no waiter left to report to");
        }
    }
}

/// The core rejects an input only when the driver contradicts it: a bug in
/// this module, never in user code. Report it rather than take the
/// process down.
fn driver_bug(reported: Result<(), InputError>) {
    if let Err(error) = reported {
        debug_assert!(false, "pool driver bug: {error}");
        tracing::error!(%error, "pool driver bug");
    }
}

//! The state behind every handle of one blocking pool: the manager, the
//! options, and the [driver state](crate::driver) under the pool lock.
//! Connects run on `pinpool-connect` threads, maintenance on one
//! `pinpool-maintenance` thread per pool that needs it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Weak;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pins::Reclaim;
use super::waiter::ThreadMailbox;
use super::{Conn, Manager};
use crate::Error;
use crate::core::{ConnId, Core, OwnerId, PoolState};
use crate::driver::Driven as _;
use crate::driver::handle::Closes;
use crate::driver::maintenance::{self, LiveWorker};
use crate::driver::{self, Inner, Locked, Options, Work};
use crate::sync::{Arc, AtomicUsize, Mutex, spawn_or_run};

pub(crate) type Mailbox<M> = ThreadMailbox<Conn<M>, <M as Manager>::Error>;

/// The driver state of a blocking pool of `M`'s connections.
pub(crate) type State<M> = Inner<Conn<M>, <M as Manager>::Error, Mailbox<M>>;

pub(crate) struct Shared<M: Manager> {
    pub(crate) options: Options,
    pub(crate) manager: M,
    /// Live [`Pool`](super::Pool) handles; the last one closes the pool.
    handles: AtomicUsize,
    locked: Locked<Conn<M>, M::Error, Mailbox<M>>,
    /// The maintenance thread, if the pool needs one, and what wakes it
    /// by a new connect's deadline; dropping the sender stops it.
    maintenance: Mutex<Option<(mpsc::Sender<Instant>, JoinHandle<()>)>>,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, core: Core, options: Options) -> Arc<Self> {
        let epoch = Instant::now();
        let clock = Box::new(move || epoch.elapsed());
        let shared = Arc::new(Shared {
            locked: Locked::new(core, clock, &options),
            options,
            manager,
            handles: AtomicUsize::new(1),
            maintenance: Mutex::new(None),
        });
        if let Some(interval) = shared.options.maintenance_interval {
            let (wake, wakes) = mpsc::channel();
            let pool = Arc::downgrade(&shared);
            let worker = LiveWorker::new();
            let spawned = std::thread::Builder::new()
                .name("pinpool-maintenance".into())
                .spawn(move || maintain(&pool, interval, &wakes, worker));
            match spawned {
                Ok(thread) => *shared.maintenance.lock() = Some((wake, thread)),
                Err(error) => tracing::warn!(%error, "cannot spawn the maintenance thread"),
            }
        }
        // Carry out the core's opening actions (min_size), whose connects
        // the maintenance thread, now running, gives up on time.
        shared.with_core(|_| ());
        shared
    }

    /// Blocks until the core's state satisfies `done` (model checks only).
    #[cfg(pinpool_loom)]
    pub(crate) fn wait_for(&self, done: impl Fn(&PoolState) -> bool) {
        self.locked.wait_for(done);
    }

    /// A model's timer: the deadline of every checkout waiting now passes.
    #[cfg(pinpool_loom)]
    pub(crate) fn expire_waiting_checkouts(&self) {
        for slot in self.locked.waiting_slots() {
            slot.expire();
        }
    }

    /// `validate`, with a panic in it counted as a failed validation.
    pub(crate) fn is_valid(&self, id: ConnId, conn: &mut Conn<M>) -> bool {
        let valid = passes("validate", "replacing", id, || self.manager.validate(conn));
        if valid {
            self.passed_validation(conn);
        }
        valid
    }

    /// A consistent snapshot (recalls the leases, so idle means idle).
    pub(crate) fn state(self: &Arc<Self>) -> PoolState {
        self.with_core(State::<M>::state)
    }

    /// Carries out `Action::Open(conn)` and reports the result to the core;
    /// if connects are now backed off, waits that out (holding the pool
    /// only weakly) and runs maintenance, which starts the connects that
    /// checkouts asked for meanwhile.
    fn open_then_resume(self: Arc<Self>, conn: ConnId) {
        let Some(backoff) = self.open(conn) else {
            return;
        };
        let pool = Arc::downgrade(&self);
        drop(self);
        std::thread::sleep(backoff);
        if let Some(shared) = pool.upgrade() {
            shared.with_core(State::<M>::maintain);
        }
    }

    /// Carries out `Action::Open(conn)` and reports the result to the
    /// core; returns how long connects are backed off after a failure.
    fn open(self: &Arc<Self>, conn: ConnId) -> Option<Duration> {
        // `interrupt_handle` is the manager's code too: a panic in it fails
        // the connect, which is then reported like any other.
        let connect = || {
            self.manager.connect().map(|connection| {
                let interrupt = self.manager.interrupt_handle(&connection);
                (self.stamped(connection), interrupt)
            })
        };
        let result = match catch_unwind(AssertUnwindSafe(connect)) {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(error)) => {
                tracing::debug!(%error, %conn, "connect failed");
                Err(Error::Connect(error))
            }
            Err(_) => {
                tracing::warn!(%conn, "the manager panicked in connect");
                Err(Error::ConnectPanicked)
            }
        };
        self.with_core(|inner| inner.opened(conn, result))
    }
}

impl<M: Manager> Shared<M> {
    /// A connect is starting: the maintenance thread, planning its next
    /// run before the connect existed, must run by the connect's deadline
    /// to give it up on time (see [`Options::connect_timeout`]).
    fn wake_maintenance_by_connect_deadline(&self) {
        // A deadline past what an `Instant` holds is past any planned run.
        let Some(due) =
            (self.options.connect_timeout).and_then(|timeout| Instant::now().checked_add(timeout))
        else {
            return;
        };
        if let Some((wake, _)) = &*self.maintenance.lock() {
            let _ = wake.send(due);
        }
    }

    /// Carries out `Action::Reset(conn)` and reports the result to the
    /// core; a reset that fails or panics closes the connection.
    fn reset(self: &Arc<Self>, conn: ConnId, mut physical: Box<Conn<M>>) {
        let ok = passes("reset", "closing", conn, || {
            self.manager.reset(&mut physical)
        });
        self.with_core(|inner| inner.reset_done(conn, Some(physical), ok));
    }
}

driver::takes_back_through_the_driver!(Manager);

impl<M: Manager> driver::Driven<Conn<M>, M::Error, Mailbox<M>> for Shared<M> {
    #[inline]
    fn locked(&self) -> &Locked<Conn<M>, M::Error, Mailbox<M>> {
        &self.locked
    }

    fn spawn(self: &Arc<Self>, work: Work<Conn<M>>) {
        let shared = Arc::clone(self);
        match work {
            #[cfg(pinpool_loom)]
            Work::Open(conn) if self.options.connects_on_threads => {
                crate::sync::spawn_thread(move || shared.open_then_resume(conn));
            }
            Work::Open(conn) => {
                self.wake_maintenance_by_connect_deadline();
                spawn_or_run("pinpool-connect", move || shared.open_then_resume(conn));
            }
            // On the thread that let the connection go, unless that thread
            // is exiting (this is its pins' destructor): the manager's reset
            // may need thread-locals — a runtime's — that are gone by then.
            Work::Reset(conn, physical) if super::pins::current_owner().is_some() => {
                shared.reset(conn, physical);
            }
            Work::Reset(conn, physical) => {
                spawn_or_run("pinpool-reset", move || shared.reset(conn, physical));
            }
            Work::Close(physical) => {
                // Counted until dropped: the pool has not shut down before.
                let shut_down = Arc::clone(self.locked.shut_down());
                shut_down.close_started();
                spawn_or_run("pinpool-close", move || {
                    driver::contain("a connection's drop", || drop(physical));
                    shut_down.close_ended();
                });
            }
        }
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
    /// when they come back; the maintenance thread stops and is joined.
    fn close(self: &Arc<Self>) {
        self.with_core(State::<M>::close);
        let maintenance = self.maintenance.lock().take();
        if let Some((wake, thread)) = maintenance {
            drop(wake);
            // Stopped, it ends by itself; joined where that cannot wait on
            // this thread. Not from itself (an event handler on it dropping
            // the last handle), nor from inside an event handler anywhere:
            // events are delivered one thread at a time, so the thread may
            // be waiting for this very delivery to end before its own.
            let itself = thread.thread().id() == std::thread::current().id();
            if !itself && !self.locked.delivering_events_here() {
                let _ = thread.join();
            }
        }
    }

    fn id(&self) -> u64 {
        self.options.id
    }
}

/// Whether the manager's `check` (its `what`) of connection `id`
/// succeeded; an error or a panic is logged, saying the pool is `then`
/// the connection, and counts as a failure.
fn passes<E: std::fmt::Display>(
    what: &str,
    then: &str,
    id: ConnId,
    check: impl FnOnce() -> Result<(), E>,
) -> bool {
    match catch_unwind(AssertUnwindSafe(check)) {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, %id, "{what} failed; {then} the connection");
            false
        }
        Err(_) => {
            tracing::warn!(%id, "{what} panicked; {then} the connection");
            false
        }
    }
}

/// The maintenance thread's loop: a run every `interval`, or when the
/// core's next deadline falls if sooner (at once while expired connections
/// are left), or by a connect's deadline that falls before the next run,
/// until the pool is closed or gone.
fn maintain<M: Manager>(
    pool: &Weak<Shared<M>>,
    interval: Duration,
    wakes: &mpsc::Receiver<Instant>,
    _live: LiveWorker,
) {
    let mut next = Instant::now() + interval;
    loop {
        match wakes.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(due) => next = next.min(due),
            Err(RecvTimeoutError::Timeout) => {
                let Some(shared) = pool.upgrade() else { return };
                let run = shared.with_core(State::<M>::maintain);
                next = Instant::now() + maintenance::next_wait(interval, &run);
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

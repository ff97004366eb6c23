//! The state behind every handle of one async pool: the manager, the
//! options, the runtime connects and maintenance run on, and the
//! [driver state](crate::driver) under the pool lock.

use std::future::Future;
use std::sync::{OnceLock, Weak};
use std::time::Duration;

use crossbeam_utils::atomic::AtomicCell;
use tokio::runtime::{self, Handle};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::waiter::TaskMailbox;
use super::{Conn, Manager};
use crate::Error;
use crate::core::{ConnId, Core, PoolState};
use crate::driver::Driven as _;
use crate::driver::handle::Closes;
use crate::driver::maintenance::{self, LiveWorker};
use crate::driver::{self, Inner, Locked, Options, Work};
use crate::sync::{Arc, AtomicUsize, Mutex};

pub(crate) type Mailbox<M> = TaskMailbox<Conn<M>, <M as Manager>::Error>;

/// The driver state of an async pool of `M`'s connections.
pub(crate) type State<M> = Inner<Conn<M>, <M as Manager>::Error, Mailbox<M>>;

pub(crate) struct Shared<M: Manager> {
    pub(crate) options: Options,
    pub(crate) manager: M,
    /// Live [`Pool`](super::Pool) handles; the last one closes the pool.
    handles: AtomicUsize,
    /// The runtime the pool was built or first used in: connects asked for
    /// where no runtime is current (a guard dropped on a plain thread) run
    /// there.
    runtime: OnceLock<Handle>,
    /// When the pool's clock reads zero.
    pub(crate) epoch: Instant,
    /// The runtime the maintenance task runs on, while it runs: a waiter
    /// there leaves its deadline to it; a waiter elsewhere keeps a timer
    /// of its own, not to depend on a runtime that nobody may be driving.
    timer_runtime: AtomicCell<Option<runtime::Id>>,
    locked: Locked<Conn<M>, M::Error, Mailbox<M>>,
    /// The maintenance task, once started on the pool's runtime; aborted
    /// when the pool closes. Never held across a call that can run user
    /// code (an event handler may close the pool).
    maintenance: Mutex<Maintenance>,
}

/// Where the pool's maintenance task stands.
enum Maintenance {
    /// Not started (no runtime seen yet, or none needed).
    NotStarted,
    Running {
        /// Finished if its runtime shut down under it: the next waiter
        /// with a deadline starts another (see [`Shared::timer_keeps`]).
        task: tokio::task::AbortHandle,
        /// Wakes the task by a new connect's or waiter's deadline.
        wake: mpsc::UnboundedSender<Instant>,
    },
    /// The pool closed: a task started now is aborted at once.
    Closed,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, core: Core, options: Options) -> Arc<Self> {
        // Tokio's clock, so a paused test clock drives lifetimes too.
        let epoch = tokio::time::Instant::now();
        let clock = Box::new(move || epoch.elapsed());
        let shared = Arc::new(Shared {
            locked: Locked::new(core, clock, &options),
            options,
            manager,
            handles: AtomicUsize::new(1),
            runtime: OnceLock::new(),
            epoch,
            timer_runtime: AtomicCell::new(None),
            maintenance: Mutex::new(Maintenance::NotStarted),
        });
        shared.note_runtime();
        // Carry out the core's opening actions (min_size).
        shared.with_core(|_| ());
        shared
    }

    /// Remembers the current runtime, for connects asked for outside one,
    /// and starts the maintenance task there. The build and every
    /// checkout past the fast paths ask; only the first does anything,
    /// out of line.
    #[inline(always)]
    pub(crate) fn note_runtime(self: &Arc<Self>) {
        if self.runtime.get().is_none() {
            self.note_first_runtime();
        }
    }

    #[cold]
    #[inline(never)]
    fn note_first_runtime(self: &Arc<Self>) {
        if let Ok(handle) = Handle::try_current()
            && self.runtime.set(handle.clone()).is_ok()
            && let Some(interval) = self.options.maintenance_interval
        {
            let mut maintenance = self.maintenance.lock();
            let first = Instant::now() + interval;
            self.start_maintenance(&mut maintenance, &handle, first);
        }
    }

    /// Spawns the maintenance task on `runtime`, to run first at `first`,
    /// unless the pool closed (a task started after `close` marked the
    /// state closed would never be aborted).
    fn start_maintenance(
        self: &Arc<Self>,
        maintenance: &mut Maintenance,
        runtime: &Handle,
        first: Instant,
    ) {
        if matches!(maintenance, Maintenance::Closed) {
            return;
        }
        // A pool that needs no maintenance starts the task for its
        // waiters' deadlines alone: it runs only by them.
        let interval = (self.options.maintenance_interval).unwrap_or(maintenance::LONGEST_WAIT);
        let (wake, wakes) = mpsc::unbounded_channel();
        let task = Task {
            pool: Arc::downgrade(self),
            epoch: self.epoch,
            interval,
            _live: LiveWorker::new(),
        };
        let span = tracing::debug_span!("pinpool-maintenance", pool = self.options.id);
        self.timer_runtime.store(Some(runtime.id()));
        let task = runtime.spawn(tracing::Instrument::instrument(
            task.run(first, wakes),
            span,
        ));
        *maintenance = Maintenance::Running {
            task: task.abort_handle(),
            wake,
        };
    }

    /// Whether the pool's timer keeps the deadline of a waiter that has
    /// just joined the line, on the current runtime. `wake` is when the
    /// timer must run by, if it had planned no run by then
    /// ([`Inner::time_out_at`](crate::driver::Inner::time_out_at)): it is
    /// woken. A timer that is gone (its runtime shut down, see `Task`'s
    /// drop) is started again here, to run at once and plan for every
    /// deadline there is. If the timer does not keep it (no runtime, the
    /// pool closed, or the timer runs on another runtime), the waiter
    /// keeps a timer of its own.
    pub(crate) fn timer_keeps(self: &Arc<Self>, wake: Option<Duration>) -> bool {
        let Ok(here) = Handle::try_current() else {
            if wake.is_some() {
                // No run is planned after all: the next waiter tries again.
                self.with_core(State::<M>::forget_expiry_plan);
            }
            return false;
        };
        let timer = self.timer_runtime.load();
        if wake.is_none() && timer.is_some() {
            // Planned, and the timer is alive: here, or elsewhere.
            return timer == Some(here.id());
        }
        let mut maintenance = self.maintenance.lock();
        let gone = match &*maintenance {
            Maintenance::Closed => return false,
            Maintenance::NotStarted => true,
            // Finished only once its drop has run: a new task's runtime
            // cannot be cleared by the old one's.
            Maintenance::Running { task, .. } if task.is_finished() => true,
            Maintenance::Running { wake: tx, .. } => {
                if let Some(due) = wake {
                    // Closed only as the task is being dropped; the next
                    // waiter then starts another.
                    let _ = tx.send(self.epoch + due);
                }
                false
            }
        };
        if gone {
            self.start_maintenance(&mut maintenance, &here, Instant::now());
        }
        drop(maintenance);
        self.timer_runtime.load() == Some(here.id())
    }

    /// A connect is starting: the maintenance task, planning its next run
    /// before the connect existed, must run by the connect's deadline to
    /// give it up on time (see [`Options::connect_timeout`](crate::driver::Options)).
    fn wake_maintenance_by_connect_deadline(&self) {
        // A deadline past what an `Instant` holds is past any planned run.
        let Some(due) =
            (self.options.connect_timeout).and_then(|timeout| Instant::now().checked_add(timeout))
        else {
            return;
        };
        if let Maintenance::Running { wake, .. } = &*self.maintenance.lock() {
            let _ = wake.send(due);
        }
    }

    /// A consistent snapshot.
    pub(crate) fn state(self: &Arc<Self>) -> PoolState {
        self.with_core(State::<M>::state)
    }
}

driver::takes_back_through_the_driver!(Manager);

impl<M: Manager> driver::Driven<Conn<M>, M::Error, Mailbox<M>> for Shared<M> {
    #[inline]
    fn locked(&self) -> &Locked<Conn<M>, M::Error, Mailbox<M>> {
        &self.locked
    }

    /// Starts `work` as a task on the current runtime, else on the
    /// pool's; with neither, it fails at once (its report's `Drop`).
    fn spawn(self: &Arc<Self>, work: Work<Conn<M>>) {
        let shared = Arc::clone(self);
        match work {
            Work::Open(conn) => {
                self.wake_maintenance_by_connect_deadline();
                let report = Report::new(shared, conn, Reported::Open);
                self.run_in_background(conn, report.open());
            }
            Work::Reset(conn, physical) => {
                let report = Report::new(shared, conn, Reported::Reset(physical));
                self.run_in_background(conn, report.reset());
            }
            // An async connection's drop must not block (it runs on a
            // runtime's thread): it cannot hang the caller, so inline.
            Work::Close(physical) => driver::contain("a connection's drop", || drop(physical)),
        }
    }
}

impl<M: Manager> Shared<M> {
    /// After a failed connect of `conn` that backed connects off for
    /// `backoff`: a task that waits it out (holding the pool only weakly)
    /// and runs maintenance, which starts the connects that checkouts
    /// asked for meanwhile.
    fn resume_connects_after(self: &Arc<Self>, conn: ConnId, backoff: Option<Duration>) {
        let Some(backoff) = backoff else { return };
        let pool = Arc::downgrade(self);
        self.run_in_background(conn, async move {
            tokio::time::sleep(backoff).await;
            if let Some(shared) = pool.upgrade() {
                shared.with_core_on_time(State::<M>::maintain);
            }
        });
    }

    /// Runs `task` (the work on `conn`) on the current runtime, else on
    /// the pool's; with neither, drops it, which reports its failure.
    fn run_in_background(&self, conn: ConnId, task: impl Future<Output = ()> + Send + 'static) {
        // Under loom there is no runtime: the work runs inline, as the
        // blocking pool's does (see `crate::sync`).
        #[cfg(pinpool_loom)]
        {
            let _ = conn;
            loom::future::block_on(task);
        }
        #[cfg(not(pinpool_loom))]
        match Handle::try_current()
            .ok()
            .or_else(|| self.runtime.get().cloned())
        {
            Some(runtime) => drop(runtime.spawn(task)),
            None => {
                tracing::warn!(%conn, "no Tokio runtime to open or reset a connection on");
                drop(task);
            }
        }
    }
}

/// What a background task reports to the core when it ends.
enum Reported<C> {
    /// A connect.
    Open,
    /// A reset of this connection (`None` once handed back).
    Reset(Box<C>),
}

/// Reports the end of one connect or reset to the core exactly once: with
/// its result, or — if its task is dropped first (it panicked, or its
/// runtime shut down) — with a failure, so the slot is never stranded.
struct Report<M: Manager> {
    shared: Arc<Shared<M>>,
    conn: ConnId,
    /// `None` once reported.
    work: Option<Reported<Conn<M>>>,
}

impl<M: Manager> Report<M> {
    fn new(shared: Arc<Shared<M>>, conn: ConnId, work: Reported<Conn<M>>) -> Self {
        Report {
            shared,
            conn,
            work: Some(work),
        }
    }

    async fn open(mut self) {
        let manager = &self.shared.manager;
        let result = match manager.connect().await {
            Ok(connection) => {
                let interrupt = manager.interrupt_handle(&connection);
                Ok((self.shared.stamped(connection), interrupt))
            }
            Err(error) => {
                tracing::debug!(%error, conn = %self.conn, "connect failed");
                Err(Error::Connect(error))
            }
        };
        self.work = None;
        let conn = self.conn;
        let backoff = self.shared.with_core(|inner| inner.opened(conn, result));
        self.shared.resume_connects_after(conn, backoff);
    }

    async fn reset(mut self) {
        let Some(Reported::Reset(physical)) = self.work.as_mut() else {
            return;
        };
        let ok = match self.shared.manager.reset(physical).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, conn = %self.conn, "reset failed; closing the connection");
                false
            }
        };
        self.report(ok);
    }

    /// Reports the work's end: `ok` is only ever true for a finished reset.
    fn report(&mut self, ok: bool) {
        let conn = self.conn;
        match self.work.take() {
            None => {}
            Some(Reported::Open) => {
                let error = if std::thread::panicking() {
                    tracing::warn!(%conn, "the manager panicked in connect");
                    Error::ConnectPanicked
                } else {
                    Error::ConnectAborted
                };
                let backoff = self
                    .shared
                    .with_core(|inner| inner.opened(conn, Err(error)));
                self.shared.resume_connects_after(conn, backoff);
            }
            Some(Reported::Reset(physical)) => {
                if std::thread::panicking() {
                    tracing::warn!(%conn, "the manager panicked in reset; closing the connection");
                }
                self.shared
                    .with_core(|inner| inner.reset_done(conn, Some(physical), ok));
            }
        }
    }
}

impl<M: Manager> Drop for Report<M> {
    fn drop(&mut self) {
        self.report(false);
    }
}

impl<M: Manager> Closes for Shared<M> {
    fn handles(&self) -> &AtomicUsize {
        &self.handles
    }

    /// Closes the pool: waiters fail, idle connections close now, the rest
    /// when they come back; the maintenance task is aborted.
    fn close(self: &Arc<Self>) {
        // The core first, without the maintenance lock: closing delivers
        // events, and a handler may close the pool again.
        self.with_core(State::<M>::close);
        let previous = std::mem::replace(&mut *self.maintenance.lock(), Maintenance::Closed);
        if let Maintenance::Running { task, .. } = previous {
            task.abort();
        }
    }

    fn id(&self) -> u64 {
        self.options.id
    }
}

/// The maintenance task: it holds its pool weakly, and is counted among
/// the live workers while it exists.
struct Task<M: Manager> {
    pool: Weak<Shared<M>>,
    /// The pool's clock's zero.
    epoch: Instant,
    interval: Duration,
    _live: LiveWorker,
}

impl<M: Manager> Task<M> {
    /// A run at `first`, then every `interval`, or when the core's next
    /// deadline falls if sooner (at once while expired connections are
    /// left), or by a connect's or waiter's deadline that falls before the
    /// next run, until aborted or the pool is gone.
    async fn run(self, first: Instant, mut wakes: mpsc::UnboundedReceiver<Instant>) {
        let mut next = first;
        loop {
            match tokio::time::timeout_at(next, wakes.recv()).await {
                Ok(Some(due)) => next = next.min(due),
                Ok(None) => return,
                Err(_) => {
                    let Some(shared) = self.pool.upgrade() else {
                        return;
                    };
                    let interval = self.interval;
                    let planned =
                        shared.with_core_on_time(|inner| inner.maintain_and_plan(interval));
                    next = self.epoch + planned;
                }
            }
        }
    }
}

impl<M: Manager> Drop for Task<M> {
    /// The task ended: the pool closed or is gone, or the runtime it ran
    /// on shut down, and with it every waiter whose deadline it kept (see
    /// [`Shared::timer_keeps`]); the next waiter starts another. Only an
    /// atomic here: a task spawned on a runtime that is shutting down is
    /// dropped inside `spawn`, under the maintenance lock.
    fn drop(&mut self) {
        if let Some(shared) = self.pool.upgrade() {
            shared.timer_runtime.store(None);
        }
    }
}

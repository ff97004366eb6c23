//! Delivering the core's monitoring [`Event`]s: to the user's handler and
//! as `tracing` events (target `pinpool::events`), in the order the core
//! emitted them, never under the pool lock.
//!
//! Events are queued under the pool lock, so the queue holds them in the
//! core's order; whoever releases the pool lock then delivers the queue.
//! One thread delivers at a time, and a thread waits for its turn, so when
//! a pool call returns every event it caused has been delivered. The turn
//! is a re-entrant lock: a handler may call the pool, and the events that
//! call causes are delivered inside it, after the one being handled.
//! (parking_lot's, even in the loom build: models record no events.)

use std::backtrace::Backtrace;
use std::collections::VecDeque;
use std::fmt;

use parking_lot::ReentrantMutex;

use crate::core::{ConnId, Event};
use crate::sync::{Arc, Mutex};

/// A user's event handler (see [`Builder::event_handler`](crate::Builder::event_handler)).
pub(crate) type Handler = Arc<dyn Fn(&Event) + Send + Sync>;

/// Who checked a connection out, recorded at checkout when leak detection
/// is on: reported if the checkout outlives the leak threshold.
pub(crate) struct Holder {
    thread: String,
    backtrace: Backtrace,
}

impl Holder {
    /// The current thread, and where it is now.
    pub(crate) fn here() -> Self {
        let current = std::thread::current();
        Holder {
            thread: current.name().unwrap_or("<unnamed>").to_owned(),
            backtrace: Backtrace::force_capture(),
        }
    }
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holder")
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

/// One pool's queue of events on their way out.
pub(crate) struct Events {
    pool: u64,
    handler: Option<Handler>,
    queue: Mutex<VecDeque<(Event, Option<Arc<Holder>>)>>,
    delivering: ReentrantMutex<()>,
}

impl Events {
    pub(crate) fn new(pool: u64, handler: Option<Handler>) -> Self {
        Events {
            pool,
            handler,
            queue: Mutex::new(VecDeque::new()),
            delivering: ReentrantMutex::new(()),
        }
    }

    /// Queues `event` (under the pool lock), with the holder a leak report
    /// names.
    pub(crate) fn push(&self, event: Event, holder: Option<Arc<Holder>>) {
        self.queue.lock().push_back((event, holder));
    }

    /// Whether the current thread is delivering events (and so may be
    /// inside the handler).
    pub(crate) fn delivering_here(&self) -> bool {
        self.delivering.is_owned_by_current_thread()
    }

    /// Delivers every queued event, after any thread delivering now.
    pub(crate) fn deliver(&self) {
        let _turn = self.delivering.lock();
        loop {
            let next = self.queue.lock().pop_front();
            let Some((event, holder)) = next else { return };
            self.emit(&event, holder.as_deref());
        }
    }

    fn emit(&self, event: &Event, holder: Option<&Holder>) {
        let pool = self.pool;
        match (event, holder) {
            (Event::ConnectionLeaked { conn, held, .. }, Some(holder)) => tracing::warn!(
                target: "pinpool::events",
                pool,
                %conn,
                ?held,
                thread = %holder.thread,
                backtrace = %holder.backtrace,
                "connection checked out for longer than the leak threshold"
            ),
            _ => tracing::debug!(target: "pinpool::events", pool, ?event),
        }
        if let Some(handler) = &self.handler {
            // A panicking handler must not unwind into the pool.
            let delivered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(event)));
            if delivered.is_err() {
                tracing::error!(pool, ?event, "the event handler panicked");
            }
        }
    }
}

/// The holder to report with a leak of `conn`, if it was recorded.
pub(crate) fn holder_of(
    holders: &rustc_hash::FxHashMap<ConnId, Arc<Holder>>,
    event: &Event,
) -> Option<Arc<Holder>> {
    match event {
        Event::ConnectionLeaked { conn, .. } => holders.get(conn).cloned(),
        _ => None,
    }
}

//! What both pools' maintenance workers share: when a pool needs one, how
//! soon it runs again, and the count of live workers.
//!
//! A pool runs one worker (a `pinpool-maintenance` thread for the blocking
//! pool, a task for the async one) when the core has background work to do
//! — lifetimes, idle timeouts, leak detection, refilling `min_size` — and
//! an async pool also once a checkout waits with a deadline (the task
//! then times waiters out, see `driver/expiry.rs`). Each run is one
//! [`Core::maintain`](crate::core::Core::maintain), whose work is bounded.
//! The worker holds its pool weakly and is stopped by the pool's close, so
//! a dropped pool never leaves one behind. Every worker counts itself in
//! [`live_maintenance_workers`] while it exists, so tests can check that
//! what a pool starts, it stops — without guessing from the process's
//! thread list.

use std::time::Duration;

use crate::core::Config;
// std's atomics even under loom: the count takes no part in the protocol.
use std::sync::atomic::{AtomicUsize, Ordering};

/// Maintenance workers (threads and tasks) of every pool in this process
/// that have not ended yet.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The number of pool maintenance workers — blocking pools' threads and
/// async pools' tasks — alive in this process. A pool starts one only
/// when it has background work (a lifetime, an idle timeout, leak
/// detection, a `min_size`, or in an async pool a checkout waiting with a
/// deadline) and stops it when it is closed or dropped.
///
/// ```
/// use std::time::Duration;
/// use pinpool::blocking::Pool;
/// # fn noop() -> std::io::Result<()> { Ok(()) }
///
/// let before = pinpool::live_maintenance_workers();
/// let pool = Pool::builder().idle_timeout(Duration::from_secs(60)).build(noop)?;
/// assert!(pinpool::live_maintenance_workers() > before);
/// drop(pool); // stops and joins its thread
/// # Ok::<(), pinpool::core::ConfigError>(())
/// ```
pub fn live_maintenance_workers() -> usize {
    LIVE.load(Ordering::SeqCst)
}

/// Counts a live worker for as long as it is held.
pub(crate) struct LiveWorker(());

impl LiveWorker {
    pub(crate) fn new() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        LiveWorker(())
    }
}

impl Drop for LiveWorker {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The time between runs for a pool configured with `config`, or `None`
/// when the core needs none ([`Config::needs_maintenance`]) or `interval`
/// is `Duration::MAX` (never run). An interval over a year is a year: a
/// worker plans its next run as an `Instant`, which cannot lie any
/// `Duration` ahead.
pub(crate) fn interval(config: &Config, interval: Duration) -> Option<Duration> {
    (config.needs_maintenance() && interval != Duration::MAX).then_some(interval.min(LONGEST_WAIT))
}

/// The longest time between maintenance runs: a year.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// What one maintenance run leaves behind.
pub(crate) struct Run {
    /// Expired connections are left (the run's batch was full).
    pub(crate) more: bool,
    /// How long until the core's next deadline
    /// ([`Core::poll_timeout`](crate::core::Core::poll_timeout)), if any.
    pub(crate) due_in: Option<Duration>,
}

/// How long to wait before the next run: at once when the last run left
/// expired connections behind; else until the core's next deadline, or the
/// interval if that is sooner — it bounds how late work is found that no
/// deadline foretold (a connection opened since, a refill after a failed
/// connect).
pub(crate) fn next_wait(interval: Duration, run: &Run) -> Duration {
    if run.more {
        return Duration::ZERO;
    }
    run.due_in.map_or(interval, |due| due.min(interval))
}

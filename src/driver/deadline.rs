//! A checkout's deadline, on whichever clock its pool runs on (std's for
//! the blocking pool; Tokio's for the async pool, so a paused test clock
//! drives it).

use std::time::Duration;

/// An instant of a pool's clock.
pub(crate) trait Moment: Copy + Ord {
    fn now() -> Self;
    fn checked_add(self, duration: Duration) -> Option<Self>;
    fn elapsed(self) -> Duration;
}

impl Moment for std::time::Instant {
    fn now() -> Self {
        std::time::Instant::now()
    }
    fn checked_add(self, duration: Duration) -> Option<Self> {
        std::time::Instant::checked_add(&self, duration)
    }
    fn elapsed(self) -> Duration {
        std::time::Instant::elapsed(&self)
    }
}

#[cfg(feature = "tokio")]
impl Moment for tokio::time::Instant {
    fn now() -> Self {
        tokio::time::Instant::now()
    }
    fn checked_add(self, duration: Duration) -> Option<Self> {
        tokio::time::Instant::checked_add(&self, duration)
    }
    fn elapsed(self) -> Duration {
        tokio::time::Instant::elapsed(&self)
    }
}

/// When a checkout started waiting, and when it gives up.
#[derive(Clone, Copy)]
pub(crate) struct Deadline<I> {
    started: I,
    /// `None` for a timeout too large to represent: it waits, in effect,
    /// for ever, and needs no timer.
    pub(crate) at: Option<I>,
}

impl<I: Moment> Deadline<I> {
    pub(crate) fn passed(&self) -> bool {
        self.at.is_some_and(|at| I::now() >= at)
    }

    /// How long the checkout has waited.
    pub(crate) fn waited(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One checkout's deadline, read from the clock only once the checkout
/// has to wait: an immediate grant never needs it.
pub(crate) struct LazyDeadline<I> {
    timeout: Duration,
    deadline: Option<Deadline<I>>,
}

impl<I: Moment> LazyDeadline<I> {
    pub(crate) fn new(timeout: Duration) -> Self {
        LazyDeadline {
            timeout,
            deadline: None,
        }
    }

    /// The deadline, starting the clock on first use.
    pub(crate) fn deadline(&mut self) -> Deadline<I> {
        let timeout = self.timeout;
        *self.deadline.get_or_insert_with(|| {
            let started = I::now();
            Deadline {
                started,
                at: started.checked_add(timeout),
            }
        })
    }
}

/// How long one checkout may wait for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Patience {
    /// `get()`: in line, up to the pool's `checkout_timeout`. Read only
    /// when the checkout has to ask the core, so the fast path that
    /// serves most `get()`s never loads it.
    PoolTimeout,
    /// `get_timeout()`: in line, up to this long.
    UpTo(Duration),
    /// `try_get()`: a connection now, or [`Error::WouldWait`](crate::Error::WouldWait).
    Never,
}

impl Patience {
    pub(crate) fn waits(self) -> bool {
        self != Patience::Never
    }

    /// The checkout's deadline. One that never waits for a connection still
    /// validates what it is given within the pool's `checkout_timeout`.
    pub(crate) fn lazy_deadline<I: Moment>(self, checkout_timeout: Duration) -> LazyDeadline<I> {
        LazyDeadline::new(match self {
            Patience::UpTo(timeout) => timeout,
            Patience::PoolTimeout | Patience::Never => checkout_timeout,
        })
    }
}

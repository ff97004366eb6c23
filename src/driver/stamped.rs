//! A connection as the pools keep it: the manager's connection, and when
//! it was last known to work; and which checkouts validate it first
//! ([`Validation`]).
//!
//! The stamp travels inside the box that every path moves — a lease's or
//! the stash's cell, the pool's parked connections, a reset — so the fast
//! paths need no table of their own to find it, and no lock. It is
//! written as a connection is opened, handed out or validated, never as
//! it is given back: a checkin's fast path with one more branch in it was
//! no longer inlined into its caller, and a pinned get + drop counted
//! 14–18 instructions more in every pool, stamping or not
//! (`benches/instructions.sh`).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// The manager's connection and, on the pool's clock, when it was last
/// known to work: opened, handed out, or validated. Derefs to the
/// connection, so a manager's methods take it as they took the connection
/// itself.
pub(crate) struct Stamped<C> {
    conn: C,
    last_used: Duration,
}

impl<C> Stamped<C> {
    /// `conn`, opened at `at` (see [`Validation::opened`]).
    fn new(conn: C, at: Duration) -> Self {
        Stamped {
            conn,
            last_used: at,
        }
    }

    /// The connection, out of the pool for good.
    pub(crate) fn into_inner(self) -> C {
        self.conn
    }
}

impl<C> Deref for Stamped<C> {
    type Target = C;

    #[inline(always)]
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Stamped<C> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

/// As the connection shows itself: the stamp is the pool's business.
impl<C: fmt::Debug> fmt::Debug for Stamped<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.conn.fmt(f)
    }
}

/// Which checkouts validate their connection first: none, every one, or
/// those of a connection unused for a window
/// ([`Builder::validate_after_idle`](crate::Builder::validate_after_idle)).
/// Kept as flags, so that a pool that validates nothing asks one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validation {
    /// Whether any checkout validates.
    on: bool,
    /// Whether only after a window: connections are then stamped with the
    /// clock (see [`Stamped`]).
    stamps: bool,
    /// The window.
    idle: Duration,
}

impl Validation {
    /// Validation of the connections unused for `after_idle` (zero: every
    /// checkout), or none.
    pub(crate) fn new(after_idle: Option<Duration>) -> Self {
        Validation {
            on: after_idle.is_some(),
            stamps: after_idle.is_some_and(|idle| !idle.is_zero()),
            idle: after_idle.unwrap_or(Duration::ZERO),
        }
    }

    /// This, or validation of every checkout if `every` (a manager's
    /// `validates_every_checkout` has its way whatever the builder said).
    pub(crate) fn or_every_checkout(self, every: bool) -> Self {
        if every {
            Validation::new(Some(Duration::ZERO))
        } else {
            self
        }
    }

    /// Whether any checkout validates (the async pool's fast path asks
    /// only this, and leaves the rest to its checkout future).
    #[cfg(feature = "tokio")]
    #[inline(always)]
    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// `conn`, just opened, as the pool keeps it: stamped with the clock
    /// `now` where the window reads the stamp (else not read).
    pub(crate) fn opened<C>(&self, conn: C, now: impl FnOnce() -> Duration) -> Stamped<C> {
        let at = if self.stamps { now() } else { Duration::ZERO };
        Stamped::new(conn, at)
    }

    /// Whether a checkout must validate `conn` before handing it out.
    /// Under a window, one used within it is stamped as handed out now
    /// (the clock `now` is read only then), and one that was not keeps
    /// its stamp until it [passes](Self::passed): a checkout may ask again
    /// before it validates.
    ///
    /// The stamp is the last checkout's start, not the last checkin, so a
    /// connection is unused for at least the window whenever the window
    /// has passed since its stamp: none that idled that long escapes, and
    /// the price is a validation more after a hold longer than the window.
    #[inline(always)]
    pub(crate) fn due<C>(&self, conn: &mut Stamped<C>, now: impl FnOnce() -> Duration) -> bool {
        self.on && (!self.stamps || self.unused_for_window(conn, now))
    }

    /// The windowed part of [`due`](Self::due), out of line: a pool that
    /// validates nothing, or everything, does not carry it.
    #[inline(never)]
    fn unused_for_window<C>(&self, conn: &mut Stamped<C>, now: impl FnOnce() -> Duration) -> bool {
        let now = now();
        if now.saturating_sub(conn.last_used) >= self.idle {
            return true;
        }
        conn.last_used = now;
        false
    }

    /// `conn` passed its validation: it works, as of now.
    pub(crate) fn passed<C>(&self, conn: &mut Stamped<C>, now: impl FnOnce() -> Duration) {
        if self.stamps {
            conn.last_used = now();
        }
    }
}

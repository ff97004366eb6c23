//! What every pool driver does around the [core](crate::core), whatever
//! it waits with (a parked thread, a task's waker): the core under one
//! lock, the physical connections it stands for, the waiting checkouts and
//! the leases, and the carrying-out of the core's actions — deliveries
//! under the lock, wake-ups, closes and opens after it is released.
//!
//! A driver supplies how a waiter is told (a [`Mailbox`]) and how a
//! connection is opened and reset ([`Work`]); it decides nothing.
//!
//! The layers, from the lock out:
//! * `locked`: the core and its bookkeeping under one lock
//!   ([`Locked::with_core`]); `inner`: the state under it and the inputs
//!   the pools make through it; `parked`: the physical connections it
//!   holds; `effects`: carrying out the core's actions;
//! * `waiting`: waiting checkouts and the driver's [`Mailbox`]s;
//! * `guard`, `held` and `recall`: a connection in a caller's hands (the
//!   guard both pools wrap) and the one way back ([`return_conn`], then [`Inner::give_back`] under the lock),
//!   with the leases recalled when the core must see them; `lease` and
//!   `stash`: the fast paths that serve checkouts off the lock; `erased`:
//!   leases kept where pools of every connection type share one place;
//!   `expiry`: waiters timed out by one timer per pool; `stamped`: each
//!   connection with when it last worked, and which checkouts validate;
//! * owner identity ([`fresh_owner`]) here; `session`, `handle`,
//!   `deadline`, `maintenance`, `events`, `metrics` around them.

mod effects;
#[cfg(feature = "tokio")]
mod expiry;
mod guard;
mod held;
mod inner;
mod locked;
mod parked;
mod recall;
mod shutdown;
mod stamped;
#[cfg(test)]
mod test_support;
mod waiting;

pub(crate) mod deadline;
pub(crate) mod erased;
pub(crate) mod events;
pub(crate) mod handle;
pub(crate) mod lease;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod session;
pub(crate) mod stash;

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use self::metrics::Metrics;
use crate::core::{
    Action, Checkout, CloseReason, ConfigError, ConnId, Core, FailReason, Health, InputError,
    LeaseScope, OwnerId, PoolState, Ticket, TicketMap,
};
use crate::sync::{Arc, Mutex};
use crate::{Error, InterruptHandle};
use events::{Events, Handler, Holder};
use lease::{Found, HeldLease, Lease};
use stash::{Ledger, Stash, StashLease};

use effects::Effects;
pub(crate) use guard::{Guard, PoolRef, TakesBack, takes_back_through_the_driver};
pub(crate) use held::{Handed, Leased, return_conn};
pub(crate) use inner::Inner;
pub(crate) use locked::Locked;
use parked::Parked;
use recall::Recall;
pub(crate) use stamped::{Stamped, Validation};
#[cfg(test)]
pub(crate) use test_support::finishes_while_locked;
#[cfg(feature = "tokio")]
pub(crate) use waiting::InPlace;
use waiting::WaitingCheckout;
pub(crate) use waiting::{Mailbox, Opened, Outcome, Step};

/// Owner ids are process-wide and never reused (the core requires it).
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// Ids a thread reserves at once: every unpinned async checkout takes a
/// fresh id, and one shared counter bumped by every core would be a
/// contended cache line on the hot path.
const OWNER_BLOCK: u64 = 1024;

std::thread_local! {
    /// This thread's reserved ids: the next one, and the end of the block.
    static OWNER_IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A fresh owner id: for a thread, a pinned scope or an unpinned checkout.
pub(crate) fn fresh_owner() -> OwnerId {
    let id = OWNER_IDS.try_with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_OWNER.fetch_add(OWNER_BLOCK, Relaxed);
            end = next + OWNER_BLOCK;
        }
        ids.set((next + 1, end));
        next
    });
    // A thread being torn down takes ids one at a time.
    OwnerId(id.unwrap_or_else(|_| NEXT_OWNER.fetch_add(1, Relaxed)))
}

/// What every pool keeps beside its core: its id and the options the
/// drivers (not the core) act on.
#[derive(Clone)]
pub(crate) struct Options {
    /// Identifies the pool in threads' and scopes' pin registrations.
    pub(crate) id: u64,
    /// Names the pool in its metrics; `None` until the pool's `build`
    /// derives it from the manager (see [`Options::name_from`]).
    pub(crate) name: Option<String>,
    pub(crate) checkout_timeout: Duration,
    /// Which checkouts validate their connection.
    pub(crate) validation: Validation,
    /// Time between maintenance runs; `None`: the core needs none.
    pub(crate) maintenance_interval: Option<Duration>,
    /// The core's [`Config::connect_timeout`](crate::core::Config::connect_timeout):
    /// a connect that starts wakes the maintenance worker by its deadline,
    /// which may fall before the run the worker planned (a connect stuck in
    /// a handshake would otherwise be given up up to an interval late).
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) event_handler: Option<Handler>,
    /// Whether the pool's fast path reads the [stash] for checkouts that
    /// pin nobody (a stash nobody reads would only hide idle connections).
    pub(crate) stash: bool,
    /// Model checks only: connects run on loom threads of their own.
    #[cfg(pinpool_loom)]
    pub(crate) connects_on_threads: bool,
}

impl Options {
    /// Names the pool, unless the builder did: after its manager, or if
    /// the manager has no name, `pinpool-<id>`.
    pub(crate) fn name_from(&mut self, manager_name: impl FnOnce() -> Option<String>) {
        let id = self.id;
        self.name
            .get_or_insert_with(|| manager_name().unwrap_or_else(|| format!("pinpool-{id}")));
    }

    /// The pool's name (see [`Options::name_from`]).
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("pinpool")
    }
}

/// The manager's `has_broken`, with a panic in it counted as broken: the
/// connection must come back to the pool whatever the manager does.
pub(crate) fn is_broken(has_broken: impl FnOnce() -> bool) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(has_broken)).unwrap_or(true)
}

/// Work the core asked for that runs the manager's code, which a driver
/// starts in the background (a thread, a task) once the lock is released
/// and reports back to the core when it ends.
pub(crate) enum Work<C> {
    /// Open connection `conn` (`Action::Open`), then report
    /// [`Inner::opened`].
    Open(ConnId),
    /// Reset this connection's session state (`Action::Reset`), then
    /// report [`Inner::reset_done`].
    Reset(ConnId, Box<C>),
    /// Drop a connection closed because it broke ([`CloseReason::Error`],
    /// [`CloseReason::ResetFailed`]). A broken connection's drop may wait
    /// on its peer — `postgres::Client`'s waits for the reply to a request
    /// it gave up on, for ever over a link that swallows traffic — so the
    /// blocking pool drops it on a thread of its own rather than hang the
    /// caller whose checkin or checkout found it broken. Nothing reports
    /// back: the core counted it closed already.
    Close(Box<C>),
}

/// A pool's shared state (each pool's `Shared`) as this module drives it:
/// its core under the lock, and how it starts a connect (a thread, a
/// task). What both pools then do the same way is provided here.
pub(crate) trait Driven<C: Send + 'static, E: std::fmt::Display, S: Mailbox<C, E>>:
    Sized
{
    /// The core and its bookkeeping under the pool lock.
    fn locked(&self) -> &Locked<C, E, S>;

    /// Starts `work` in the background.
    fn spawn(self: &Arc<Self>, work: Work<C>);

    /// Runs `f` under the pool lock, then carries out what it caused.
    fn with_core<R>(self: &Arc<Self>, f: impl FnOnce(&mut Inner<C, E, S>) -> R) -> R {
        self.locked().with_core(f, |work| self.spawn(work))
    }

    /// [`Driven::with_core`], on the clock (see [`Locked::with_core_on_time`]).
    #[cfg(feature = "tokio")]
    fn with_core_on_time<R>(self: &Arc<Self>, f: impl FnOnce(&mut Inner<C, E, S>) -> R) -> R {
        self.locked().with_core_on_time(f, |work| self.spawn(work))
    }

    /// A snapshot that ends no lease (see [`Inner::status`]).
    fn status(self: &Arc<Self>) -> PoolState {
        self.with_core(|inner| inner.status())
    }

    /// Returns a connection to the core, ending its lease if it had one.
    fn checkin(self: &Arc<Self>, handed: Handed<C>, health: Health) {
        self.with_core(|inner| inner.give_back(handed, health));
    }

    /// `owner`'s fast path found the connection of its `lease` held by
    /// `owner` itself: tells the core, which then refuses the owner's
    /// checkout as the holder's (see [`Inner::note_lease_holder`]).
    #[cold]
    #[inline(never)]
    fn note_lease_holder(self: &Arc<Self>, lease: &Lease<C>, owner: OwnerId) {
        self.with_core(|inner| inner.note_lease_holder(lease, owner));
    }

    /// `owner` takes back the connection parked in its `lease`, without
    /// the lock (see [`Lease::take_back`]).
    #[inline(always)]
    fn take_back(self: &Arc<Self>, owner: OwnerId, lease: &Lease<C>) -> Option<Handed<C>> {
        let found = lease.take_back(owner, || self.locked().now());
        self.settle(found, || self.note_lease_holder(lease, owner))
    }

    /// What an owner found in its lease, settled (see [`Found::settle`]):
    /// an expired connection is checked in; `held` tells the core that
    /// the owner holds its connection itself.
    #[inline(always)]
    fn settle(self: &Arc<Self>, found: Found<C>, held: impl FnOnce()) -> Option<Handed<C>> {
        found.settle(|expired| self.checkin(expired, Health::Healthy), held)
    }

    /// A guard returns its connection (see [`Locked::return_conn`]).
    #[inline(always)]
    fn return_conn(self: &Arc<Self>, handed: Handed<C>, broken: bool) {
        let spawn = |work| self.spawn(work);
        self.locked().return_conn(handed, broken, spawn);
    }

    /// A parked connection for a checkout that pins nobody, without the
    /// lock (see [`Locked::take_stashed`]).
    #[inline]
    fn take_stashed(self: &Arc<Self>) -> Option<Handed<C>> {
        self.locked().take_stashed(|work| self.spawn(work))
    }

    /// Holds the pool lock (tests prove the fast paths never take it).
    #[cfg(test)]
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C, E, S>> {
        self.locked().lock()
    }
}

/// Runs user code `f` (named by `what` in the log) so that a panic in it
/// ends there: the pool's bookkeeping around it must go on.
///
/// Inline, with the report out of line: where nothing panics, the call
/// costs next to nothing (a metrics recorder's, several times an input).
#[inline(always)]
pub(crate) fn contain(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        contained(what);
    }
}

/// Reports a panic [`contain`] ended.
#[cold]
#[inline(never)]
fn contained(what: &str) {
    tracing::error!("{what} panicked; the pool carried on");
}

/// The core rejects an input only when the driver contradicts it: a bug in
/// a driver, never in user code. Report it rather than take the process
/// down.
fn driver_bug(reported: Result<(), InputError>) {
    if let Err(error) = reported {
        debug_assert!(false, "pool driver bug: {error}");
        tracing::error!(%error, "pool driver bug");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Owner ids never repeat, within a thread or across threads, however
    /// many each thread takes (a thread reserves them in blocks).
    #[test]
    fn fresh_owners_are_never_reused() {
        let mut seen = HashSet::new();
        // One after another, so that each thread's block follows the
        // last: the middle one runs past its first block.
        for count in [1, 2 * OWNER_BLOCK as usize + 5, 1] {
            let ids =
                std::thread::spawn(move || (0..count).map(|_| fresh_owner()).collect::<Vec<_>>())
                    .join()
                    .expect("the thread takes its ids");
            for id in ids {
                assert!(seen.insert(id), "{id:?} handed out twice");
            }
        }
    }

    /// A driver that contradicts the core is a bug in pinpool, never in
    /// user code: a debug build stops at it (a release build logs it).
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "pool driver bug")]
    fn a_driver_bug_stops_a_debug_build() {
        let wrong = InputError::WrongConnState {
            conn: ConnId(1),
            expected: "checked out",
        };
        driver_bug(Err(wrong));
    }

    /// The manager's `has_broken` decides, and a panic in it counts as
    /// broken: the connection must come back whatever the manager does.
    #[test]
    fn a_panicking_broken_check_counts_as_broken() {
        assert!(is_broken(|| true));
        assert!(!is_broken(|| false));
        assert!(is_broken(|| panic!("the manager's check exploded")));
    }
}

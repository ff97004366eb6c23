//! Task pinning. A thread's identity means nothing to a task (many tasks
//! share a worker thread, and tasks migrate between workers), so a task is
//! pinned for the extent of a *scope*: [`Pool::pinned`](super::Pool::pinned)
//! wraps a future, and every `get()` made while that future is being polled
//! acts for one owner. The scope ends — and the core releases its pin and
//! any checkout it still waits with — when the future completes or is
//! dropped (cancelled, aborted, its runtime shut down).
//!
//! While a scope's future is polled, its entry — pool, owner, and the
//! scope's lease when its connection is parked (the fast path of
//! `driver::lease`) — sits on a thread-local stack, the way tokio's
//! `task_local!` sets its value for each poll; a `get()` reads the top
//! entry for its pool when it starts, and a guard dropped inside the scope
//! parks its connection back there. Scopes nest: an inner scope for a pool
//! already scoped joins the outer one, and scopes for different pools
//! stack.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::Manager;
use super::shared::Shared;
use crate::core::OwnerId;
use crate::driver::Driven as _;
use crate::driver::erased::{LeaseKey, LeaseSlot};
use crate::driver::fresh_owner;
use crate::driver::lease::{Found, Lease};
use crate::sync::Arc;

/// A scope being polled.
struct PolledScope {
    /// The scope's pool, and its lease: its connection is parked there
    /// while no checkout holds it.
    slot: LeaseSlot,
    owner: OwnerId,
}

thread_local! {
    /// The scopes being polled on this thread, innermost last.
    static SCOPES: RefCell<Vec<PolledScope>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the innermost scope of the pool of `key` being polled here.
fn with_entry<C, R>(key: &LeaseKey<C>, f: impl FnOnce(&mut PolledScope) -> R) -> Option<R> {
    SCOPES
        .try_with(|scopes| {
            let mut scopes = scopes.try_borrow_mut().ok()?;
            let entry = scopes.iter_mut().rev().find(|e| e.slot.is_for(key))?;
            Some(f(entry))
        })
        .ok()
        .flatten()
}

/// The owner a `get()` on the pool of `key` acts for: its scope's, if it
/// runs inside one.
pub(crate) fn current_owner<C>(key: &LeaseKey<C>) -> Option<OwnerId> {
    with_entry(key, |entry| entry.owner)
}

/// The scope a `get()` on a pool runs in: see [`take_back`].
pub(crate) struct Current {
    pub(crate) owner: OwnerId,
    /// Whether the scope had a lease as the checkout began.
    pub(crate) leased: bool,
}

/// The scope of the pool of `key` that a `get()` runs in, if any, and
/// what it found in the scope's lease (the pool's clock is `now`): one
/// thread-local read for the owner and the lease both, taken through the
/// scope's own reference, without counting another. The scope keeps it
/// until the pool grants it another lease ([`keep_lease`]) or the scope
/// ends, so a checkin never touches the thread-local. (The take is out
/// of the thread-local's closure, as in `blocking::pins::take_back`.)
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn take_back<C: Send + 'static>(
    key: &LeaseKey<C>,
    now: impl Fn() -> Duration,
) -> Option<(Current, Found<C>)> {
    let (owner, lease) = with_entry(key, |entry| (entry.owner, entry.slot.pointer(key)))?;
    let current = Current {
        owner,
        leased: lease.is_some(),
    };
    let Some(lease) = lease else {
        return Some((current, Found::Nothing));
    };
    // SAFETY: the scope's entry keeps its reference to the lease until the
    // entry is popped at the end of this poll or `keep_lease` replaces
    // it, and neither happens before the take ends: it touches only the
    // lease and the pool's clock.
    let lease = unsafe { lease.as_ref() };
    Some((current, lease.take_back(owner, now)))
}

/// A counted reference to the lease of the scope of `key`'s pool being
/// polled here, if it has one (for the rare caller that needs it after
/// the thread-local read).
pub(crate) fn lease<C: Send + 'static>(key: &LeaseKey<C>) -> Option<Arc<Lease<C>>> {
    with_entry(key, |entry| entry.slot.get(key)).flatten()
}

/// Keeps the lease the pool of `key` just granted `owner` with a
/// connection, or none if it granted it without one, in the scope of
/// `owner` if it is being polled here, in place of any earlier lease
/// (which the pool has ended). A checkout moved out of its scope (into a
/// spawned task) finds none, and its owner's next checkout goes through
/// the core.
pub(crate) fn keep_lease<C: Send + 'static>(
    key: &LeaseKey<C>,
    owner: OwnerId,
    lease: Option<Arc<Lease<C>>>,
) {
    with_entry(key, |entry| {
        if entry.owner == owner {
            entry.slot.set(key, lease);
        }
    });
}

/// A future run with a pin on one pool's connection: see
/// [`Pool::pinned`](super::Pool::pinned).
#[must_use = "futures do nothing unless polled"]
pub struct Pinned<M: Manager, F> {
    future: Pin<Box<F>>,
    /// `Some` until the scope ends.
    scope: Option<Scope<M>>,
}

/// One scope's owner on one pool; ending it releases the pin.
struct Scope<M: Manager> {
    shared: Arc<Shared<M>>,
    owner: OwnerId,
    /// The lease, kept here between polls.
    lease: Option<Arc<Lease<M::Connection>>>,
    /// Whether it was ever installed (a scope that joined an outer one for
    /// the same pool, or never ran, has nothing to release).
    used: bool,
}

impl<M: Manager, F> Pinned<M, F> {
    pub(crate) fn new(shared: Arc<Shared<M>>, future: F) -> Self {
        Pinned {
            future: Box::pin(future),
            scope: Some(Scope {
                shared,
                owner: fresh_owner(),
                lease: None,
                used: false,
            }),
        }
    }
}

impl<M: Manager, F: Future> Future for Pinned<M, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(scope) = this.scope.as_mut() else {
            // Completed already: poll on as the inner future would answer.
            return this.future.as_mut().poll(cx);
        };
        let Scope {
            shared,
            owner,
            lease,
            used,
        } = scope;
        let key = shared.locked().key();
        let installed = current_owner(key).is_none()
            && SCOPES
                .try_with(|scopes| {
                    let slot = LeaseSlot::new(key, lease.take());
                    let owner = *owner;
                    scopes.borrow_mut().push(PolledScope { slot, owner });
                })
                .is_ok();
        *used |= installed;
        let polled = {
            // Pops the entry, keeping its lease, even if the inner future
            // panics. Made only if installed (`then`, not the eager
            // `then_some`, whose unused guard would pop another's entry).
            let _entry = installed.then(|| Uninstall { key, lease });
            this.future.as_mut().poll(cx)
        };
        if polled.is_ready() {
            this.scope = None;
        }
        polled
    }
}

/// Pops this poll's scope entry, keeping its lease in the scope.
struct Uninstall<'a, C: Send + 'static> {
    key: &'a LeaseKey<C>,
    lease: &'a mut Option<Arc<Lease<C>>>,
}

impl<C: Send + 'static> Drop for Uninstall<'_, C> {
    fn drop(&mut self) {
        if let Ok(Some(mut entry)) = SCOPES.try_with(|scopes| scopes.borrow_mut().pop()) {
            *self.lease = entry.slot.take(self.key);
        }
    }
}

impl<M: Manager> Drop for Scope<M> {
    fn drop(&mut self) {
        if self.used {
            let owner = self.owner;
            self.shared.with_core(|inner| inner.owner_gone(owner));
        }
    }
}

impl<M: Manager, F> fmt::Debug for Pinned<M, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinned")
            .field("owner", &self.scope.as_ref().map(|s| s.owner))
            .finish_non_exhaustive()
    }
}

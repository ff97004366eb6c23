//! Task pinning. A thread's identity means nothing to a task (many tasks
//! share a worker thread, and tasks migrate between workers), so a task is
//! pinned for the extent of a *scope*: [`Pool::pinned`](super::Pool::pinned)
//! wraps a future, and every `get()` made while that future is being polled
//! acts for one owner. The scope ends — and the core releases its pin and
//! any checkout it still waits with — when the future completes or is
//! dropped (cancelled, aborted, its runtime shut down).
//!
//! While a scope's future is polled, its `(pool, owner)` entry sits on a
//! thread-local stack, the way tokio's `task_local!` sets its value for
//! each poll; a `get()` reads the top entry for its pool when it starts.
//! Scopes nest: an inner scope for a pool already scoped joins the outer
//! one, and scopes for different pools stack.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::Manager;
use super::shared::Shared;
use crate::core::OwnerId;
use crate::driver::fresh_owner;
use crate::sync::Arc;

thread_local! {
    /// The scopes being polled on this thread, innermost last.
    static SCOPES: RefCell<Vec<(u64, OwnerId)>> = const { RefCell::new(Vec::new()) };
}

/// The owner a `get()` on pool `pool_id` acts for: its scope's, if it runs
/// inside one.
pub(crate) fn current_owner(pool_id: u64) -> Option<OwnerId> {
    SCOPES
        .try_with(|scopes| {
            let scopes = scopes.try_borrow().ok()?;
            let (_, owner) = scopes.iter().rev().find(|(pool, _)| *pool == pool_id)?;
            Some(*owner)
        })
        .ok()
        .flatten()
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
        let pool_id = scope.shared.id;
        let installed = current_owner(pool_id).is_none()
            && SCOPES
                .try_with(|scopes| scopes.borrow_mut().push((pool_id, scope.owner)))
                .is_ok();
        scope.used |= installed;
        let polled = {
            // Pops the entry even if the inner future panics.
            let _entry = installed.then_some(Uninstall);
            this.future.as_mut().poll(cx)
        };
        if polled.is_ready() {
            this.scope = None;
        }
        polled
    }
}

/// Pops this poll's scope entry.
struct Uninstall;

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = SCOPES.try_with(|scopes| scopes.borrow_mut().pop());
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

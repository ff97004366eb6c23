//! Task pinning. A thread's identity means nothing to a task (many tasks
//! share a worker thread, and tasks migrate between workers), so a task is
//! pinned for the extent of a *scope*: [`Pool::pinned`](super::Pool::pinned)
//! wraps a future, and every `get()` made while that future is being polled
//! acts for one owner. The scope ends — and the core releases its pin and
//! any checkout it still waits with — when the future completes or is
//! dropped (cancelled, aborted, its runtime shut down).
//!
//! While a scope's future is polled, a *frame* — pool, owner, and the
//! scope's lease when its connection is parked (the fast path of
//! `driver::lease`) — sits on the poll's own stack, linked into a
//! thread-local stack of frames, the way tokio's `task_local!` sets its
//! value for each poll; a `get()` reads the top frame for its pool when it
//! starts, and a guard dropped inside the scope parks its connection back
//! there. Scopes nest: an inner scope for a pool already scoped joins the
//! outer one, and scopes for different pools stack.
//!
//! Why frames on the stack, linked by raw pointers, and not a
//! `RefCell<Vec<_>>` of entries: a pinned `get()` reads the top frame with
//! one thread-local load (a `const` cell without a destructor, so no
//! registration check), no borrow flag, no bounds, and the lease typed,
//! not through an erased `Arc` (`benches/instructions.sh`: a scope's
//! pinned get + drop went from 177 instructions to 167, and a `get()`
//! outside any scope, which looks for one first, from 204 to 182). The
//! crate's fifth audited `unsafe` is that read; see [`with_frame`] for
//! why every frame linked from the thread-local is alive.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::{Context, Poll};
use std::time::Duration;

use super::shared::Shared;
use super::{Conn, Manager};
use crate::core::OwnerId;
use crate::driver::Driven as _;
use crate::driver::erased::LeaseKey;
use crate::driver::fresh_owner;
use crate::driver::lease::{Found, Lease};
use crate::sync::Arc;

/// What every frame starts with, whatever its pool's connection type:
/// which pool it is for (its key's id) and the frame beneath it.
struct FrameHead {
    key: u64,
    below: *const FrameHead,
}

/// The frame of a scope being polled, for a pool of connections `C`.
/// `repr(C)`: a pointer to its head is a pointer to it.
#[repr(C)]
struct Frame<C> {
    head: FrameHead,
    owner: OwnerId,
    /// The scope's lease while it is polled (back in the scope after).
    lease: Cell<Option<Arc<Lease<C>>>>,
}

thread_local! {
    /// The innermost frame being polled on this thread, or null.
    static TOP: Cell<*const FrameHead> = const { Cell::new(ptr::null()) };
}

/// Runs `f` on the innermost frame of the pool of `key` being polled here.
///
/// Why every frame linked from `TOP` is alive: [`Pinned::poll`] is the only
/// code that links one. It links a frame that lives on its own stack, and
/// a guard made right after unlinks it — restoring the frame that was on
/// top before — when the poll returns or unwinds, before that stack frame
/// ends; polls on one thread nest as calls do, so frames are unlinked in
/// the reverse order of linking. A frame's key proves its type as a
/// [`LeaseKey`]'s id proves a lease's (`driver::erased`): only a pool of
/// connections `C` links a frame with its key's id, and it links a
/// `Frame<C>`.
#[inline(always)]
#[allow(unsafe_code)]
fn with_frame<C, R>(key: &LeaseKey<C>, f: impl FnOnce(&Frame<C>) -> R) -> Option<R> {
    let mut frame = TOP.with(Cell::get);
    // SAFETY: every frame linked from `TOP` is alive (above), and a frame
    // with `key`'s id is a `Frame<C>`, whose head is at its start.
    unsafe {
        while let Some(head) = frame.as_ref() {
            if head.key == key.id() {
                return Some(f(&*frame.cast::<Frame<C>>()));
            }
            frame = head.below;
        }
    }
    None
}

/// The owner a `get()` on the pool of `key` acts for: its scope's, if it
/// runs inside one.
pub(crate) fn current_owner<C>(key: &LeaseKey<C>) -> Option<OwnerId> {
    with_frame(key, |frame| frame.owner)
}

/// The scope a `get()` on a pool runs in: see [`take_back`].
pub(crate) struct Current {
    pub(crate) owner: OwnerId,
    /// Whether the scope had a lease as the checkout began.
    pub(crate) leased: bool,
}

/// The scope of the pool of `key` that a `get()` runs in, if any, and
/// what it found in the scope's lease (the pool's clock is `now`),
/// `settle`d for that scope's owner: one thread-local read for the owner
/// and the lease both, taken through the frame's own reference, without
/// counting another. The frame keeps it until the pool grants it another
/// lease ([`keep_lease`]) or the poll ends, so a checkin never touches the
/// thread-local. Settled here, not by the caller: the compiler then
/// follows a connection taken straight to its use, where what was found
/// otherwise went through memory and a jump table
/// (`benches/instructions.sh`: a scope's get + drop, 134 instructions
/// settled by the caller, 118 here).
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn take_back<C: Send + 'static, T>(
    key: &LeaseKey<C>,
    now: impl Fn() -> Duration,
    settle: impl FnOnce(OwnerId, Found<C>) -> T,
) -> Option<(Current, T)> {
    with_frame(key, |frame| {
        let owner = frame.owner;
        // SAFETY: a shared look at the cell's content, ended before
        // anything else can touch the cell (nothing here drops, replaces
        // or calls out).
        let lease = unsafe { &*frame.lease.as_ptr() }
            .as_deref()
            .map(NonNull::from);
        let current = Current {
            owner,
            leased: lease.is_some(),
        };
        let found = match lease {
            // SAFETY: the frame keeps its reference to the lease until
            // `keep_lease` replaces it or the poll ends, and neither
            // happens before the take ends: it touches only the lease and
            // the pool's clock. (Settling, after it, may read the frame's
            // lease again, through the cell.)
            Some(lease) => unsafe { lease.as_ref() }.take_back(owner, now),
            None => Found::Nothing,
        };
        (current, settle(owner, found))
    })
}

/// A counted reference to the lease of the scope of `key`'s pool being
/// polled here, if it has one (for the rare caller that needs it after
/// the thread-local read).
pub(crate) fn lease<C: Send + 'static>(key: &LeaseKey<C>) -> Option<Arc<Lease<C>>> {
    with_frame(key, |frame| {
        let lease = frame.lease.take();
        frame.lease.set(lease.clone());
        lease
    })
    .flatten()
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
    // The earlier lease is dropped after the frame is let go of.
    let _earlier = with_frame(key, |frame| {
        (frame.owner == owner).then(|| frame.lease.replace(lease))
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
    lease: Option<Arc<Lease<Conn<M>>>>,
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
        let polled = if current_owner(key).is_some() {
            // Joins the outer scope for this pool.
            this.future.as_mut().poll(cx)
        } else {
            *used = true;
            let frame = Frame {
                head: FrameHead {
                    key: key.id(),
                    below: TOP.with(Cell::get),
                },
                owner: *owner,
                lease: Cell::new(lease.take()),
            };
            // Unlinks the frame, keeping its lease, even if the inner
            // future panics: see `with_frame`.
            let _linked = Linked::new(&frame, lease);
            this.future.as_mut().poll(cx)
        };
        if polled.is_ready() {
            this.scope = None;
        }
        polled
    }
}

/// A frame linked as the thread's top while its scope is polled.
struct Linked<'a, C> {
    frame: &'a Frame<C>,
    /// Where the scope keeps its lease between polls.
    lease: &'a mut Option<Arc<Lease<C>>>,
}

impl<'a, C> Linked<'a, C> {
    fn new(frame: &'a Frame<C>, lease: &'a mut Option<Arc<Lease<C>>>) -> Self {
        TOP.with(|top| top.set(&frame.head));
        Linked { frame, lease }
    }
}

impl<C> Drop for Linked<'_, C> {
    fn drop(&mut self) {
        TOP.with(|top| top.set(self.frame.head.below));
        *self.lease = self.frame.lease.take();
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

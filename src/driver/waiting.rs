//! Waiting checkouts: what one is told ([`Outcome`]), where it is told
//! (a driver's [`Mailbox`]), and what the lock holder keeps of each.

use std::ops::Deref;
#[cfg(feature = "tokio")]
use std::ptr::NonNull;

use super::*;

/// What a waiting checkout is told.
pub(crate) enum Outcome<C, E> {
    /// It now holds this connection.
    Granted(Handed<C>),
    /// Woken to retry (every wake policy but Handoff).
    Woken,
    /// It failed.
    Failed(Error<E>),
}

impl<C, E> Outcome<C, E> {
    /// Stores this outcome in a waiter's `slot`: a final outcome replaces a
    /// pending `Woken`, never the reverse.
    pub(crate) fn store_in(self, slot: &mut Option<Outcome<C, E>>) {
        if matches!(self, Outcome::Woken) && slot.is_some() {
            return;
        }
        *slot = Some(self);
    }
}

/// Where a waiting checkout's outcome is delivered, and how its waiter is
/// woken to collect it.
pub(crate) trait Mailbox<C, E>: Send + Sync + Sized {
    /// How the lock holder reaches a waiting checkout's mailbox: shared
    /// ownership (`Arc`), or [`InPlace`] for a mailbox its waiter keeps
    /// where it is until it has left the line.
    type Ref: Deref<Target = Self> + Clone + Send + Sync;
    /// What wakes the waiter: taken under the pool lock, used after it,
    /// so that nothing after the lock reaches into the mailbox (an
    /// [`InPlace`] one may be gone by then).
    type Wake;
    /// Stores a final outcome (under the pool lock; the checkout has left
    /// the line) by [`Outcome::store_in`]; what will wake the waiter.
    fn deliver(slot: Self::Ref, outcome: Outcome<C, E>) -> Option<Self::Wake>;
    /// Tells a waiter that stays in line to retry (under the pool lock);
    /// what will wake it.
    fn wake_to_retry(slot: &Self::Ref) -> Option<Self::Wake>;
    /// Takes the stored outcome, if any.
    fn take(&self) -> Option<Outcome<C, E>>;
    /// Wakes the waiter (after the pool lock is released).
    fn wake(wake: Self::Wake);
}

/// A pointer to a mailbox that its waiter keeps in place (a `get()`
/// future's, which is pinned while it waits) instead of sharing it: no
/// allocation and no reference counts per waiting checkout
/// (`benches/instructions.sh`, the `contended` scenarios).
#[cfg(feature = "tokio")]
pub(crate) struct InPlace<S>(NonNull<S>);

#[cfg(feature = "tokio")]
impl<S> Clone for InPlace<S> {
    fn clone(&self) -> Self {
        InPlace(self.0)
    }
}

#[cfg(feature = "tokio")]
// The crate's seventh audited `unsafe`: the pointer, and reading through it.
#[allow(unsafe_code)]
impl<S> InPlace<S> {
    /// # Safety
    ///
    /// `slot` stays where it is, alive, for as long as the lock holder may
    /// reach it: until the checkout it is registered for has left the
    /// driver's waiters, under the pool lock (its outcome collected, or
    /// it timed out or was cancelled). Nothing reaches it after that, nor
    /// after the lock is released: wake-ups go out as owned
    /// [`Mailbox::Wake`]s.
    pub(crate) unsafe fn new(slot: &S) -> Self {
        InPlace(NonNull::from(slot))
    }
}

#[cfg(feature = "tokio")]
#[allow(unsafe_code)]
impl<S> Deref for InPlace<S> {
    type Target = S;

    fn deref(&self) -> &S {
        // SAFETY: alive and in place while the pointer is held (`new`'s
        // contract).
        unsafe { self.0.as_ref() }
    }
}

#[cfg(feature = "tokio")]
// SAFETY: only a shared reference is ever made from it (`Deref`), so it
// may go where `&S` may: `S: Sync`.
#[allow(unsafe_code)]
unsafe impl<S: Sync> Send for InPlace<S> {}
#[cfg(feature = "tokio")]
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl<S: Sync> Sync for InPlace<S> {}

/// How a connect ended: the connection, with the manager's way to
/// interrupt it if it has one, or the error.
pub(crate) type Opened<C, E> = Result<(C, Option<InterruptHandle>), Error<E>>;

/// The immediate result of a checkout under the lock.
pub(crate) enum Step<C, E, S> {
    Ready(Handed<C>),
    Wait(Ticket, S),
    Failed(Error<E>),
}

pub(super) struct WaitingCheckout<S> {
    pub(super) owner: OwnerId,
    /// Whether its checkout pins (see [`Core::may_stash`]).
    pub(super) pins: bool,
    pub(super) slot: S,
    /// Who is waiting, when leak detection records it.
    pub(super) holder: Option<Arc<Holder>>,
    /// When the checkout started, by the pool's clock (for its metrics).
    pub(super) since: Duration,
}

//! Waiting checkouts: what one is told ([`Outcome`]), where it is told
//! (a driver's [`Mailbox`]), and what the lock holder keeps of each.

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
pub(crate) trait Mailbox<C, E>: Send + Sync {
    /// Stores an outcome (under the pool lock), by [`Outcome::store_in`].
    fn deliver(&self, outcome: Outcome<C, E>);
    /// Takes the stored outcome, if any.
    fn take(&self) -> Option<Outcome<C, E>>;
    /// Wakes the waiter (after the pool lock is released).
    fn notify(&self);
}

/// How a connect ended: the connection, with the manager's way to
/// interrupt it if it has one, or the error.
pub(crate) type Opened<C, E> = Result<(C, Option<InterruptHandle>), Error<E>>;

/// The immediate result of a checkout under the lock.
pub(crate) enum Step<C, E, S> {
    Ready(Handed<C>),
    Wait(Ticket, Arc<S>),
    Failed(Error<E>),
}

pub(super) struct WaitingCheckout<S> {
    pub(super) owner: OwnerId,
    /// Whether its checkout pins (see [`Core::may_stash`]).
    pub(super) pins: bool,
    pub(super) slot: Arc<S>,
    /// Who is waiting, when leak detection records it.
    pub(super) holder: Option<Arc<Holder>>,
    /// When the checkout started, by the pool's clock (for its metrics).
    pub(super) since: Duration,
}

//! Carrying out the core's actions: deliveries under the lock, and what
//! is left for after it (wake-ups, interrupts, closes, background work).

use super::shutdown::ShutDown;
use super::*;

/// What the lock holder leaves to do once the lock is released.
///
/// Under contention nearly every input leaves exactly one wake-up and
/// nothing else, so that one is kept inline and the rest (a second
/// wake-up, an interrupt, a close, an open or a reset: connects, closes
/// and clears) on the heap, only when there is any. Four empty `Vec`s
/// made, walked and dropped on every input cost the contended turn about
/// 50 instructions (54 of 3,729 unpinned, 49 of 4,074 pinned:
/// `benches/instructions.sh`). Before that, a heap buffer for every
/// wake-up was an allocation and a free per turn, and a `SmallVec` of
/// four wake-ups, filled and drained, cost 50 instructions more than
/// keeping the first inline.
pub(super) struct Effects<'s, C, W> {
    first_wake: Option<W>,
    more: Option<Box<MoreEffects<C, W>>>,
    /// Told of closes under way and of the pool's end.
    shut_down: &'s ShutDown,
}

/// The effects beyond an input's first wake-up.
struct MoreEffects<C, W> {
    wakes: Vec<W>,
    interrupt: Vec<InterruptHandle>,
    background: Vec<Work<C>>,
    close: Vec<Box<C>>,
    /// Its closes are counted as under way ([`ShutDown::close_started`]),
    /// from under the lock until they are carried out: an input that
    /// empties the core meanwhile must not find the pool shut down while
    /// they are still to come.
    closing: bool,
    /// The core has shut down ([`Action::ShutDown`]): once the closes
    /// before are carried out, whoever waits for the pool's end is told.
    ended: bool,
}

impl<'s, C, W> Effects<'s, C, W> {
    /// Nothing to do yet.
    pub(super) fn new(shut_down: &'s ShutDown) -> Self {
        Effects {
            first_wake: None,
            more: None,
            shut_down,
        }
    }

    /// The effects beyond the first wake-up, allocated by the first.
    fn more(&mut self) -> &mut MoreEffects<C, W> {
        self.more.get_or_insert_with(|| {
            Box::new(MoreEffects {
                wakes: Vec::new(),
                interrupt: Vec::new(),
                background: Vec::new(),
                close: Vec::new(),
                closing: false,
                ended: false,
            })
        })
    }

    /// A close to carry out after the lock, in the background (a broken
    /// connection's, whose drop may block) or not: counted as under way
    /// from now.
    fn close(&mut self, conn: Box<C>, background: bool) {
        let shut_down = self.shut_down;
        let more = self.more();
        if !std::mem::replace(&mut more.closing, true) {
            shut_down.close_started();
        }
        if background {
            more.background.push(Work::Close(conn));
        } else {
            more.close.push(conn);
        }
    }

    /// Keeps a waiter's wake-up, if it has one, for after the lock.
    fn wake_later(&mut self, wake: Option<W>) {
        if let Some(wake) = wake {
            match self.first_wake {
                None => self.first_wake = Some(wake),
                Some(_) => self.more().wakes.push(wake),
            }
        }
    }

    /// Carries the effects out, with the lock released: wakes the
    /// waiters (`wake`) in the order they were left, interrupts, delivers
    /// the recorded `events`, closes connections (by dropping them) and
    /// hands opens, resets and broken connections' closes to `spawn`.
    ///
    /// Each call into user code (a waker, an interrupt handle, a
    /// connection's `Drop`) is contained: one that panics must not skip
    /// the effects after it, above all the opens and resets, whose slots
    /// the core counts as connecting or resetting until they are
    /// reported. Closes still come before opens, so the physical
    /// connections never outnumber `max_size` even for an instant —
    /// except broken ones, dropped in the background (`Work::Close`): a
    /// replacement must not wait on a drop that may never end.
    pub(super) fn carry_out(
        self,
        wake: impl Fn(W),
        events: Option<&Events>,
        mut spawn: impl FnMut(Work<C>),
    ) {
        let deliver_events = || {
            if let Some(events) = events {
                events.deliver();
            }
        };
        if let Some(first) = self.first_wake {
            contain("a waker", || wake(first));
        }
        let Some(more) = self.more else {
            deliver_events();
            return;
        };
        let MoreEffects {
            wakes,
            interrupt,
            background,
            close,
            closing,
            ended,
        } = *more;
        for later in wakes {
            contain("a waker", || wake(later));
        }
        for handle in &interrupt {
            contain("an interrupt handle", || handle.interrupt());
        }
        deliver_events();
        for conn in close {
            contain("a connection's drop", || drop(conn));
        }
        for work in background {
            spawn(work);
        }
        // A broken connection's drop, spawned above, counts itself.
        if closing {
            self.shut_down.close_ended();
        }
        if ended {
            self.shut_down.emptied();
        }
    }
}

impl<C, E: std::fmt::Display, S: Mailbox<C, E>> Inner<C, E, S> {
    /// Takes `conn` out for `owner` (whose checkout pins, or not), leasing
    /// it when the core says the fast path may serve later checkouts: the
    /// owner's, when it is pinned to it ([`Core::may_lease`]; it finds its
    /// lease again through its thread-local or its scope), or any that pins
    /// nobody, through the stash ([`Core::may_stash`]).
    /// `since` is when the checkout started.
    pub(super) fn take_out(
        &mut self,
        owner: OwnerId,
        pins: bool,
        conn: ConnId,
        holder: Option<Arc<Holder>>,
        since: Duration,
    ) -> Handed<C> {
        let physical = self
            .conns
            .remove(conn)
            .expect("the core grants only established connections the pool holds");
        if let (Some(holders), Some(holder)) = (&mut self.holders, holder) {
            holders.insert(conn, holder);
        }
        let now = self.core.now();
        let lease = if self.core.may_lease(owner, conn) {
            let lease = Arc::new(Lease::new(conn, owner, self.core.expires_at(conn)));
            lease.cell().time_first_use(now);
            let held = HeldLease::of(&lease);
            self.leases.insert(conn, lease);
            Some(Leased::Owner(held))
        } else if self.core.may_stash(conn, pins) {
            let expires = self.core.expires_at(conn);
            let armed = self.ledger.arm(&self.stash, conn, expires);
            if let Some(lease) = armed {
                self.stash.cell(lease).time_first_use(now);
            }
            armed.map(Leased::Stash)
        } else {
            None
        };
        self.metrics.checked_out(since, now);
        Handed {
            id: conn,
            conn: physical,
            lease,
        }
    }

    pub(super) fn failure(&mut self, reason: FailReason) -> Error<E> {
        match reason {
            FailReason::PoolClosed => Error::Closed,
            FailReason::Paused => Error::Paused,
            FailReason::AlreadyHeld => Error::AlreadyHeld,
            FailReason::OwnerGone => Error::OwnerGone,
            FailReason::ConnectTimeout => Error::ConnectTimeout,
            FailReason::ConnectionError => self
                .connect_failure
                .take()
                .unwrap_or(Error::ConnectPanicked),
            FailReason::Timeout => self.timed_out(Duration::ZERO),
            FailReason::WouldWait => Error::WouldWait {
                state: Box::new(self.core.state()),
            },
        }
    }

    /// Turns the core's pending actions into deliveries (made now, under
    /// the lock) and effects (carried out after it).
    pub(super) fn drain(&mut self, effects: &mut Effects<'_, C, S::Wake>, events: Option<&Events>) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Open(conn) => {
                    self.metrics.connect_started(conn, self.core.now());
                    effects.more().background.push(Work::Open(conn));
                }
                Action::Reset(conn) => {
                    tracing::debug!(%conn, "resetting a connection between owners");
                    match self.conns.remove(conn) {
                        Some(physical) => {
                            effects.more().background.push(Work::Reset(conn, physical))
                        }
                        None => {
                            // A driver bug: close the slot rather than strand it.
                            driver_bug(Err(InputError::WrongConnState {
                                conn,
                                expected: "held by the pool",
                            }));
                            driver_bug(self.core.reset_done(conn, Health::Broken));
                        }
                    }
                }
                Action::Close { conn, reason } => {
                    tracing::debug!(%conn, ?reason, "closing connection");
                    if let Some(physical) = self.conns.remove(conn) {
                        let background =
                            matches!(reason, CloseReason::Error | CloseReason::ResetFailed);
                        effects.close(physical, background);
                    }
                    self.interrupts.remove(&conn);
                }
                Action::ShutDown => {
                    tracing::debug!("the pool has shut down");
                    effects.more().ended = true;
                }
                Action::Interrupt(conn) => {
                    tracing::debug!(%conn, "interrupting a checked-out connection");
                    effects
                        .more()
                        .interrupt
                        .extend(self.interrupts.get(&conn).cloned());
                }
                Action::Grant { ticket, conn } => {
                    let Some(waiting) = self.waiters.remove(ticket) else {
                        debug_assert!(false, "granted {ticket} is not waiting");
                        continue;
                    };
                    let handed = self.take_out(
                        waiting.owner,
                        waiting.pins,
                        conn,
                        waiting.holder,
                        waiting.since,
                    );
                    let wake = S::deliver(waiting.slot, Outcome::Granted(handed));
                    effects.wake_later(wake);
                }
                Action::Wake(ticket) => {
                    if let Some(waiting) = self.waiters.get(ticket) {
                        effects.wake_later(S::wake_to_retry(&waiting.slot));
                    }
                }
                Action::Fail { ticket, reason } => {
                    if let Some(waiting) = self.waiters.remove(ticket) {
                        let failed = Outcome::Failed(self.failure(reason));
                        effects.wake_later(S::deliver(waiting.slot, failed));
                    }
                }
            }
        }
        if let Some(error) = self.connect_failure.take() {
            // Its requester had already given up.
            tracing::debug!(%error, "connect failure with no waiter left to report to");
        }
        if let Some(events) = events {
            while let Some(event) = self.core.poll_event() {
                let holder = self
                    .holders
                    .as_ref()
                    .and_then(|h| events::holder_of(h, &event));
                events.push(event, holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    /// Wake-ups go out in the order they were left, however many, and
    /// a panicking waker stops none of those after it.
    #[test]
    fn wakes_keep_their_order() {
        for n in 0..4 {
            let shut_down = ShutDown::new();
            let mut effects = Effects::<(), i32>::new(&shut_down);
            for wake in 0..n {
                effects.wake_later(Some(wake));
            }
            let woken = std::cell::RefCell::new(Vec::new());
            let wake = |wake| {
                woken.borrow_mut().push(wake);
                assert_ne!(wake, 0, "the first waker panics");
            };
            effects.carry_out(wake, None, |_| unreachable!("nothing to spawn"));
            assert!(woken.into_inner().into_iter().eq(0..n), "{n} wake-ups");
        }
    }

    /// Closes come before the background work (opens among it), whatever
    /// came first.
    #[test]
    fn closes_come_before_opens() {
        let shut_down = ShutDown::new();
        let mut effects = Effects::<Rc<()>, ()>::new(&shut_down);
        let conn = Rc::new(());
        effects.more().background.push(Work::Open(ConnId(2)));
        effects.more().close.push(Box::new(Rc::clone(&conn)));
        effects.carry_out(
            |()| {},
            None,
            |work| {
                assert!(matches!(work, Work::Open(ConnId(2))));
                assert_eq!(Rc::strong_count(&conn), 1, "closed before the open");
            },
        );
    }

    /// The closes an input leaves count as under way from the moment they
    /// are left (under the lock) until they are carried out, and the end
    /// of the pool that another input reports meanwhile is told only once
    /// they are done.
    #[test]
    fn the_end_is_told_after_the_closes_before_it() {
        let shut_down = ShutDown::new();
        let mut earlier = Effects::<Rc<()>, ()>::new(&shut_down);
        let conn = Rc::new(());
        earlier.close(Box::new(Rc::clone(&conn)), false);
        let mut last = Effects::<Rc<()>, ()>::new(&shut_down);
        last.more().ended = true;
        last.carry_out(|()| {}, None, |_| unreachable!("nothing to spawn"));
        assert!(!shut_down.is_set(), "a close is still to come");
        earlier.carry_out(|()| {}, None, |_| unreachable!("nothing to spawn"));
        assert_eq!(Rc::strong_count(&conn), 1, "closed");
        assert!(shut_down.is_set());
    }
}

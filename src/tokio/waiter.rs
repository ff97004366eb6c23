//! A waiting `get()`: the slot its outcome is delivered into and the waker
//! of the task to wake. One slot per waiting checkout, so a grant wakes
//! exactly the task it is for — no `Notify`-style lost wake-up, no herd.

use std::task::{Context, Poll, Waker};

use crate::driver::{InPlace, Mailbox, Outcome};
use crate::sync::MailboxMutex;

struct State<C, E> {
    outcome: Option<Outcome<C, E>>,
    waker: Option<Waker>,
}

pub(crate) struct TaskMailbox<C, E>(MailboxMutex<State<C, E>>);

impl<C, E> TaskMailbox<C, E> {
    pub(crate) fn new() -> Self {
        TaskMailbox(MailboxMutex::new(State {
            outcome: None,
            waker: None,
        }))
    }

    /// Stores `outcome` (by [`Outcome::store_in`]) and takes the waker of
    /// the task to wake, if it registered one.
    fn store(&self, outcome: Outcome<C, E>) -> Option<Waker> {
        let mut state = self.0.lock();
        outcome.store_in(&mut state.outcome);
        state.waker.take()
    }

    /// The outcome if it arrived; otherwise registers the task's waker
    /// (under the slot's lock, so a delivery cannot slip in between).
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Outcome<C, E>> {
        let mut state = self.0.lock();
        if let Some(outcome) = state.outcome.take() {
            return Poll::Ready(outcome);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<C: Send, E: Send> Mailbox<C, E> for TaskMailbox<C, E> {
    type Ref = InPlace<Self>;
    type Wake = Waker;

    fn deliver(slot: InPlace<Self>, outcome: Outcome<C, E>) -> Option<Waker> {
        slot.store(outcome)
    }

    fn wake_to_retry(slot: &InPlace<Self>) -> Option<Waker> {
        slot.store(Outcome::Woken)
    }

    fn take(&self) -> Option<Outcome<C, E>> {
        self.0.lock().outcome.take()
    }

    fn wake(waker: Waker) {
        waker.wake();
    }
}

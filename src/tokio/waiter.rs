//! A waiting `get()`: the slot its outcome is delivered into and the waker
//! of the task to wake. One slot per waiting checkout, so a grant wakes
//! exactly the task it is for — no `Notify`-style lost wake-up, no herd.

use std::task::{Context, Poll, Waker};

use crate::driver::{Mailbox, Outcome};
use crate::sync::{Arc, Mutex};

struct State<C, E> {
    outcome: Option<Outcome<C, E>>,
    waker: Option<Waker>,
}

pub(crate) struct TaskMailbox<C, E>(Mutex<State<C, E>>);

impl<C, E> TaskMailbox<C, E> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(TaskMailbox(Mutex::new(State {
            outcome: None,
            waker: None,
        })))
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
    fn deliver(&self, outcome: Outcome<C, E>) {
        outcome.store_in(&mut self.0.lock().outcome);
    }

    fn take(&self) -> Option<Outcome<C, E>> {
        self.0.lock().outcome.take()
    }

    fn notify(&self) {
        let waker = self.0.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

//! A blocked checkout: the slot its outcome is delivered into and the
//! thread to unpark. One slot per waiting checkout, so a grant wakes exactly
//! the thread it is for.

use std::time::Instant;

use crate::driver::{Mailbox, Outcome};
use crate::sync::{Arc, MailboxMutex, Parker};

pub(crate) struct ThreadMailbox<C, E> {
    outcome: MailboxMutex<Option<Outcome<C, E>>>,
    parker: Parker,
}

impl<C, E> ThreadMailbox<C, E> {
    /// A slot for the current thread.
    pub(crate) fn for_current_thread() -> Arc<Self> {
        Arc::new(ThreadMailbox {
            outcome: MailboxMutex::new(None),
            parker: Parker::for_current_thread(),
        })
    }

    /// Parks until an outcome arrives or `deadline` passes (`None`; a
    /// deadline of `None` never passes). Spurious unparks are absorbed; an
    /// unpark that comes before the park is kept by the thread's token, so
    /// none is lost.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Outcome<C, E>> {
        loop {
            if let Some(outcome) = self.outcome.lock().take() {
                return Some(outcome);
            }
            if self.parker.deadline_passed(deadline) {
                return None;
            }
            self.parker.park_until(deadline);
        }
    }
}

impl<C, E> ThreadMailbox<C, E> {
    /// A model's timer: this waiter's deadline passes now (loom only).
    #[cfg(pinpool_loom)]
    pub(crate) fn expire(&self) {
        self.parker.expire();
    }
}

/// Shared: a blocked thread's mailbox is reached through its `Arc`, which
/// also carries the wake-up (the parker) past the lock.
impl<C: Send, E: Send> Mailbox<C, E> for ThreadMailbox<C, E> {
    type Ref = Arc<Self>;
    type Wake = Arc<Self>;

    fn deliver(slot: Arc<Self>, outcome: Outcome<C, E>) -> Option<Arc<Self>> {
        outcome.store_in(&mut slot.outcome.lock());
        Some(slot)
    }

    fn wake_to_retry(slot: &Arc<Self>) -> Option<Arc<Self>> {
        Self::deliver(Arc::clone(slot), Outcome::Woken)
    }

    fn take(&self) -> Option<Outcome<C, E>> {
        self.outcome.lock().take()
    }

    fn wake(wake: Arc<Self>) {
        wake.parker.unpark();
    }
}

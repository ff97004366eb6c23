//! The pool's end, waited for: set once the pool is closed and every
//! connection it counted is closed
//! ([`Core::is_shut_down`](crate::core::Core::is_shut_down)), for a
//! graceful shutdown that waits for checked-out connections to come back
//! (both pools' `close_and_wait`).

use std::time::Instant;

use crate::sync::{Arc, MailboxMutex, Parker};

/// Set once, when the pool has shut down; threads and tasks wait for it.
pub(crate) struct ShutDown {
    state: MailboxMutex<State>,
    /// The tasks waiting: tokio's `Notify` keeps each in the future that
    /// waits and takes it out when that is dropped, so a task that gives
    /// up (a timeout around `close_and_wait()`) leaves nothing behind.
    #[cfg(feature = "tokio")]
    tasks: tokio::sync::Notify,
}

struct State {
    /// The core has shut down
    /// ([`Core::is_shut_down`](crate::core::Core::is_shut_down)), and the
    /// input that emptied it has carried out its closes.
    emptied: bool,
    /// Closes under way: an input's, from under the pool lock until it
    /// has carried them out (another input may empty the core meanwhile),
    /// and a broken connection's drop, which the blocking pool runs on a
    /// thread of its own since it may block.
    closing: usize,
    /// Both: the pool has shut down.
    done: bool,
    /// The threads waiting, each unparked once when it is done.
    threads: Vec<Arc<Parker>>,
}

impl ShutDown {
    pub(crate) fn new() -> Self {
        ShutDown {
            state: MailboxMutex::new(State {
                emptied: false,
                closing: 0,
                done: false,
                threads: Vec::new(),
            }),
            #[cfg(feature = "tokio")]
            tasks: tokio::sync::Notify::new(),
        }
    }

    /// The core has shut down and the input that emptied it has carried
    /// out its closes: done, once every other close under way has ended.
    pub(crate) fn emptied(&self) {
        self.update(|state| state.emptied = true);
    }

    /// Closes are under way: the pool has not shut down before the
    /// matching [`ShutDown::close_ended`].
    pub(crate) fn close_started(&self) {
        self.update(|state| state.closing += 1);
    }

    pub(crate) fn close_ended(&self) {
        self.update(|state| state.closing -= 1);
    }

    /// Applies `change`, then wakes every waiter if the pool has just shut
    /// down.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let threads = {
            let mut state = self.state.lock();
            change(&mut state);
            if state.done || !state.emptied || state.closing > 0 {
                return;
            }
            state.done = true;
            std::mem::take(&mut state.threads)
        };
        for thread in threads {
            thread.unpark();
        }
        #[cfg(feature = "tokio")]
        self.tasks.notify_waiters();
    }

    #[cfg(any(feature = "tokio", test))]
    pub(crate) fn is_set(&self) -> bool {
        self.state.lock().done
    }

    /// Blocks until it is set or `deadline` passes (never, for `None`):
    /// whether it was set.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let parker = Arc::new(Parker::for_current_thread());
        loop {
            {
                let mut state = self.state.lock();
                if state.done {
                    return true;
                }
                // Once per wait: a spurious wake-up parks again on the
                // same registration.
                if !state.threads.iter().any(|t| Arc::ptr_eq(t, &parker)) {
                    state.threads.push(Arc::clone(&parker));
                }
            }
            if parker.deadline_passed(deadline) {
                let mut state = self.state.lock();
                state.threads.retain(|t| !Arc::ptr_eq(t, &parker));
                return state.done;
            }
            parker.park_until(deadline);
        }
    }

    /// Waits until it is set.
    #[cfg(feature = "tokio")]
    pub(crate) async fn wait(&self) {
        loop {
            // Registered before the check, so a `set` between the two is
            // not missed (`notify_waiters` wakes only the registered).
            let notified = self.tasks.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(all(test, not(pinpool_loom)))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_thread_waits_until_it_is_set_or_its_deadline_passes() {
        let shut_down = Arc::new(ShutDown::new());
        assert!(!shut_down.wait_until(Some(Instant::now())), "not yet set");
        assert!(shut_down.state.lock().threads.is_empty(), "gone with it");
        let waiting = {
            let shut_down = Arc::clone(&shut_down);
            std::thread::spawn(move || shut_down.wait_until(None))
        };
        // Whether or not the thread waits yet, it returns.
        shut_down.close_started();
        shut_down.emptied();
        assert!(!shut_down.is_set(), "a close is still running");
        shut_down.close_ended();
        assert!(waiting.join().unwrap());
        assert!(shut_down.wait_until(Some(Instant::now() + Duration::from_secs(60))));
    }

    /// A thread that gives up waiting takes its own registration away,
    /// and only its own: another thread still waiting is woken when the
    /// pool shuts down, not left parked.
    #[test]
    fn a_thread_giving_up_leaves_the_others_waiting() {
        let shut_down = Arc::new(ShutDown::new());
        let waiting = {
            let shut_down = Arc::clone(&shut_down);
            std::thread::spawn(move || shut_down.wait_until(None))
        };
        // Polled, not joined: a thread left parked fails the test, not
        // hangs it.
        let within_20_s = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::yield_now();
            }
        };
        within_20_s("the thread never waited", &|| {
            !shut_down.state.lock().threads.is_empty()
        });
        assert!(!shut_down.wait_until(Some(Instant::now())), "not yet set");
        shut_down.emptied();
        within_20_s("the other thread was left parked", &|| {
            waiting.is_finished()
        });
        assert!(waiting.join().unwrap());
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn a_task_waits_until_it_is_set() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};

        let shut_down = ShutDown::new();
        let mut waiting = std::pin::pin!(shut_down.wait());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        shut_down.emptied();
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(()));
        let mut again = std::pin::pin!(shut_down.wait());
        assert_eq!(
            again.as_mut().poll(&mut cx),
            Poll::Ready(()),
            "once set, at once"
        );
    }
}

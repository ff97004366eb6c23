//! Why the fairness benchmark gives up on a task that is never served: qp
//! 0.2's semaphore loses a wake-up. A waiter registers its waker once;
//! when it is woken but a checkout that never waited takes the permit
//! first, it goes back to sleep without registering again, and the next
//! release wakes no one. The benchmark hung on that (1 run in 20 on 2
//! cores); pinpool, asked the same way, serves the waiter: it hands the
//! connection over, or (letting the new checkout barge) wakes the waiter
//! again at the next release.
//!
//! Each test plays the interleaving out on one thread, in order, with the
//! clock paused: a waiter still waiting when the clock has run a minute
//! ahead with nothing else to do will wait for ever.

use std::time::Duration;

use pinpool_peers::noop::{AsyncNoop, QpNoop, async_noop};
use tokio::task::{JoinHandle, yield_now};

/// Long enough for anything runnable to have run: the paused clock jumps
/// to it as soon as every task is idle.
const FOREVER: Duration = Duration::from_secs(60);

/// Lets every task that is ready run until it waits.
async fn let_others_run() {
    for _ in 0..4 {
        yield_now().await;
    }
}

/// Whether `waiter` finishes before the paused clock reaches `FOREVER`.
async fn is_served(waiter: JoinHandle<()>) -> bool {
    tokio::time::timeout(FOREVER, waiter).await.is_ok()
}

#[tokio::test(start_paused = true)]
async fn qp_loses_the_wake_up_of_a_waiter_overtaken_by_a_new_checkout() {
    let pool = qp::Pool::new(QpNoop, 1);
    let held = pool.acquire_unchecked().await.expect("the only resource");
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move {
            drop(pool.acquire_unchecked().await);
        }
    });
    let_others_run().await; // the waiter registers its waker
    drop(held); // and is woken
    // Before it runs, a new checkout takes the permit (it never waits).
    let overtaking = pool.acquire_unchecked().await.expect("the free permit");
    let_others_run().await; // the woken waiter finds no permit: asleep again
    drop(overtaking);
    assert_eq!(pool.size(), 1, "the permit is free");
    assert!(
        !is_served(waiter).await,
        "qp served the waiter: it no longer loses this wake-up, and the \
         fairness benchmark's guard against it can be reconsidered"
    );
}

#[tokio::test(start_paused = true)]
async fn pinpool_serves_a_woken_waiter_whether_or_not_it_was_overtaken() {
    for wake in [
        pinpool::core::WakePolicy::Handoff,
        pinpool::core::WakePolicy::Bounded(16),
    ] {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(1)
            .wake(wake)
            .build(async_noop as AsyncNoop)
            .expect("a valid configuration");
        let held = pool.get().await.expect("the only connection");
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move {
                drop(pool.get().await.expect("a connection"));
            }
        });
        let_others_run().await;
        drop(held);
        // `Handoff` handed the connection to the waiter: the new checkout
        // finds none. `Bounded` left it idle and woke the waiter, so the
        // new checkout takes it first, as in qp's case.
        let overtaking = pool.try_get().await;
        assert_eq!(overtaking.is_ok(), wake.barges(), "{wake:?}");
        let_others_run().await;
        drop(overtaking);
        assert!(
            is_served(waiter).await,
            "{wake:?}: the waiter was not served"
        );
    }
}

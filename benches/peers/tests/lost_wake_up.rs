//! Why the fairness benchmark gives up on a task that is never served: qp
//! 0.2's semaphore loses a wake-up. A waiter registers its waker once;
//! when it is woken but a checkout that never waited takes the permit
//! first, it goes back to sleep without registering again, and the next
//! release wakes no one. The benchmark hung on that (1 run in 20 on 2
//! cores).
//!
//! Every async pool of the benchmark is put through the same interleaving,
//! on one thread, in order, with the clock paused: one connection, held;
//! a waiter queues; the connection is released; before the waiter runs, a
//! new checkout asks (polled once); then everything is released. A waiter
//! still waiting when the clock has run a minute ahead with nothing else
//! to do waits for ever.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pinpool::core::WakePolicy;
use pinpool_peers::noop::{AsyncNoop, Bb8Noop, DeadpoolNoop, QpNoop, async_noop};
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

/// Polls `checkout` once: its connection if it has one at once (it is
/// dropped, withdrawn, if not).
fn at_once<F: Future>(checkout: F) -> Option<F::Output> {
    match pin!(checkout).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(conn) => Some(conn),
        Poll::Pending => None,
    }
}

/// What the interleaving did: whether the new checkout overtook the woken
/// waiter, and whether the waiter was served in the end.
#[derive(Debug, PartialEq)]
struct Replayed {
    overtaken: bool,
    served: bool,
}

/// Plays the interleaving on `$pool` (of one connection), checking out
/// with `$get` (an expression of the pool `$p`).
macro_rules! replay {
    ($pool:expr, |$p:ident| $get:expr) => {{
        let pool = $pool;
        let held = {
            let $p = &pool;
            $get.await.expect("the only connection")
        };
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move {
                let $p = &pool;
                drop($get.await.expect("a connection"));
            }
        });
        let_others_run().await; // the waiter queues
        drop(held); // and is woken, or handed the connection
        let overtaking = {
            let $p = &pool;
            at_once($get)
        };
        let overtaken = matches!(overtaking, Some(Ok(_)));
        let_others_run().await; // the waiter runs
        drop(overtaking);
        Replayed {
            overtaken,
            served: is_served(waiter).await,
        }
    }};
}

#[tokio::test(start_paused = true)]
async fn qp_loses_the_wake_up_of_a_waiter_overtaken_by_a_new_checkout() {
    let pool = qp::Pool::new(QpNoop, 1);
    let replayed = replay!(pool.clone(), |p| p.acquire_unchecked());
    assert_eq!(pool.size(), 1, "the permit is free");
    assert_eq!(
        replayed,
        Replayed {
            overtaken: true,
            served: false
        },
        "qp no longer loses this wake-up: the fairness benchmark's guard \
         against it can be reconsidered"
    );
}

#[tokio::test(start_paused = true)]
async fn pinpool_serves_a_woken_waiter_whether_or_not_it_was_overtaken() {
    for wake in [WakePolicy::Handoff, WakePolicy::Bounded(16)] {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(1)
            .wake(wake)
            .build(async_noop as AsyncNoop)
            .expect("a valid configuration");
        // `Handoff` hands the connection to the waiter; `Bounded` leaves it
        // idle and wakes the waiter, so the new checkout takes it first,
        // as in qp's case, and the next release wakes the waiter again.
        assert_eq!(
            replay!(pool, |p| p.get()),
            Replayed {
                overtaken: wake.barges(),
                served: true
            },
            "{wake:?}"
        );
    }
}

/// bb8 lets the new checkout take the released connection first, as
/// pinpool's `Bounded` does, and serves the waiter at the next release;
/// deadpool hands the permit to the waiter. Neither loses it.
#[tokio::test(start_paused = true)]
async fn bb8_and_deadpool_serve_a_woken_waiter() {
    let bb8 = bb8::Pool::builder()
        .max_size(1)
        .build(Bb8Noop)
        .await
        .expect("a pool");
    let overtaken_then_served = Replayed {
        overtaken: true,
        served: true,
    };
    assert_eq!(replay!(bb8, |p| p.get()), overtaken_then_served, "bb8");
    let deadpool: deadpool::managed::Pool<DeadpoolNoop> =
        deadpool::managed::Pool::builder(DeadpoolNoop)
            .max_size(1)
            .build()
            .expect("a pool");
    let served_in_order = Replayed {
        overtaken: false,
        served: true,
    };
    assert_eq!(replay!(deadpool, |p| p.get()), served_in_order, "deadpool");
}

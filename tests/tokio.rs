//! The async pool on real Tokio runtimes: task pinning, cancellation
//! safety, timeouts on a paused clock, reclamation of aborted scopes, and
//! conservation of every connection. Tests wait on the pool's own state or
//! on channels, never on wall-clock sleeps.

mod support;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use pinpool::Error;
use pinpool::core::PoolState;
use pinpool::tokio::{Pool, PooledConnection};
use support::{
    Refused, Tally, TestConn, TestManager, assert_conservation, assert_spread_evenly, settled,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

fn pool(max_size: usize, manager: &TestManager) -> Pool<TestManager> {
    Pool::builder()
        .max_size(max_size)
        .build(manager.clone())
        .unwrap()
}

/// Waits, yielding to the runtime, until the pool's state satisfies
/// `done`; fails the test (never hangs) after 20 s.
async fn wait_until(
    pool: &Pool<TestManager>,
    what: &str,
    done: impl Fn(&PoolState) -> bool,
) -> PoolState {
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = pool.state();
        if done(&state) {
            return state;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "timed out waiting for {what}: {state:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// Waits until the pool settles; then checks conservation. A leak never
/// settles: the test fails after 20 s.
async fn assert_conserved(pool: &Pool<TestManager>, tally: &Tally) -> PoolState {
    let state = wait_until(pool, "the pool to settle", |s| settled(s, tally)).await;
    assert_conservation(&state, tally);
    state
}

/// A multi-thread runtime with more workers than this machine has cores,
/// so tasks really do run (and get preempted) in parallel.
fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `future` once: its output if ready.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    poll_fn(|cx| {
        Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

#[test]
fn ten_thousand_pinned_tasks_share_eight_connections() {
    multi_thread().block_on(async {
        let manager = TestManager::default();
        let pool = Arc::new(pool(8, &manager));
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    pool.pinned(async {
                        let mut used = Vec::new();
                        for _ in 0..3 {
                            let mut conn = pool.get().await.expect("no timeout at this load");
                            conn.touch();
                            used.push(PooledConnection::id(&conn));
                            tokio::task::yield_now().await; // held across an await
                        }
                        used
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            let used = task.await.unwrap();
            assert!(
                used.iter().all(|&id| id == used[0]),
                "a pinned task used several connections: {used:?}"
            );
        }
        let state = assert_conserved(&pool, &manager.tally).await;
        assert_eq!(state.pinned_owners, 0, "every scope released its pin");
        assert_eq!(state.waiting, 0);
        assert_eq!(state.in_use, 0);
        assert_eq!(state.total(), 8, "connections are reused, not churned");
        assert_eq!(state.counters.opened, 8);
        assert_eq!(state.counters.checkouts, 30_000);
        assert_eq!(state.counters.checkins, 30_000);
        assert_eq!(state.counters.reclaimed_pins, 10_000);
    });
}

/// Thousands of `get()`s raced against short timeouts, `select!` with a
/// timer, and outright aborts, while other tasks hold connections across
/// awaits: afterwards every connection is accounted for and a `get()` that
/// may not wait at all succeeds. The storm begins while this task holds
/// every connection, until its timers have cancelled some waiters: left
/// to itself, a storm on an idle machine could grant every checkout
/// before any timer fired (tokio's timers tick in milliseconds), and
/// cancel nothing.
#[test]
fn a_cancellation_storm_loses_no_connection() {
    multi_thread().block_on(async {
        let manager = TestManager::default();
        let pool = Arc::new(
            Pool::builder()
                .max_size(4)
                .checkout_timeout(Duration::from_micros(200))
                .build(manager.clone())
                .unwrap(),
        );
        // The storm's 200 µs timeout is not this task's: on a loaded
        // machine opening a connection can take longer than that.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.get_timeout(Duration::from_secs(30)).await.unwrap());
        }
        let mut tasks = Vec::new();
        for i in 0..4_000u64 {
            let pool = Arc::clone(&pool);
            let task = tokio::spawn(async move {
                let pause = Duration::from_micros(i % 97);
                match i % 4 {
                    // Races a timer; the loser is dropped mid-wait.
                    0 => tokio::select! {
                        conn = pool.get() => drop(conn),
                        _ = tokio::time::sleep(pause) => {}
                    },
                    // Gives up through the checkout timeout.
                    1 => match pool.get().await {
                        Ok(conn) => drop(conn),
                        Err(Error::Timeout { .. }) => {}
                        Err(other) => panic!("unexpected {other}"),
                    },
                    // Pinned, holding its connection across awaits.
                    2 => {
                        pool.pinned(async {
                            if let Ok(conn) = pool.get().await {
                                tokio::task::yield_now().await;
                                drop(conn);
                            }
                        })
                        .await
                    }
                    // Drops a waiting get() by timeout from outside.
                    _ => drop(tokio::time::timeout(pause, pool.get()).await),
                }
            });
            // Abort every seventh task wherever it is.
            if i % 7 == 0 {
                task.abort();
            }
            tasks.push(task);
        }
        while pool.status().counters.cancelled == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in tasks {
            let _ = task.await; // aborted ones report cancellation
        }
        let state = assert_conserved(&pool, &manager.tally).await;
        assert_eq!(state.waiting, 0, "no waiter outlived its future");
        assert_eq!(state.in_use, 0, "every granted connection came back");
        assert_eq!(state.pinned_owners, 0);
        let c = state.counters;
        assert_eq!(c.checkouts, c.checkins, "never lost, never counted twice");
        assert!(
            c.cancelled > 0,
            "the storm cancelled some waiters: {state:?}"
        );
        assert!(state.idle > 0);
        let conn = tokio::time::timeout(Duration::ZERO, pool.get()).await;
        assert!(
            matches!(conn, Ok(Ok(_))),
            "an idle connection is granted at once"
        );
    });
}

/// A grant that reaches a waiter in the same instant its future is dropped
/// passes the connection on: to the next waiter, or back to idle.
#[tokio::test(flavor = "current_thread")]
async fn a_grant_racing_a_dropped_get_passes_the_connection_on() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let held = pool.get().await.unwrap();
    let mut second = Box::pin(pool.get());
    let mut third = Box::pin(pool.get());
    assert!(poll_once(&mut second).await.is_none(), "second waits");
    assert!(poll_once(&mut third).await.is_none(), "third waits");
    drop(held); // granted to the second waiter, which has not run yet
    assert_eq!(pool.state().waiting, 1);
    // The second's future is dropped before it collects its connection…
    drop(second);
    // …which goes to the third, in line behind it.
    let conn = poll_once(&mut third).await.expect("granted").unwrap();
    drop(conn);
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!((state.idle, state.in_use, state.waiting), (1, 0, 0));
    assert_eq!(state.counters.checkouts, state.counters.checkins);

    // With nobody behind it, the connection goes back to idle.
    let held = pool.get().await.unwrap();
    let mut last = Box::pin(pool.get());
    assert!(poll_once(&mut last).await.is_none());
    drop(held);
    drop(last);
    let state = pool.state();
    assert_eq!((state.idle, state.in_use, state.waiting), (1, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timeout_fires_at_the_deadline_on_a_paused_clock() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .checkout_timeout(Duration::from_secs(5))
        .build(manager.clone())
        .unwrap();
    let held = pool.get_owned().await.unwrap(); // moved into another task below
    let start = Instant::now();
    let Err(Error::Timeout { waited, state }) = pool.get().await else {
        panic!("expected a timeout");
    };
    assert_eq!(waited, Duration::from_secs(5));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(state.in_use, 1, "the state it gave up in");
    let after = pool.state();
    assert_eq!(after.waiting, 0);
    assert_eq!(after.counters.timeouts, 1);

    // Returned before the deadline, the connection is granted then.
    let (release, released) = oneshot::channel::<()>();
    let returner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(held);
        release.send(()).unwrap();
    });
    let start = Instant::now();
    let conn = pool.get().await.expect("granted before the deadline");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    released.await.unwrap();
    returner.await.unwrap();
    drop(conn);
    assert_eq!(pool.state().counters.timeouts, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn an_aborted_pinned_task_releases_its_pin_and_connection() {
    let manager = TestManager::default();
    let pool = Arc::new(pool(2, &manager));
    let (holding, held) = oneshot::channel();
    let task = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move {
            pool.pinned(async {
                let _conn = pool.get().await.unwrap();
                holding.send(()).unwrap();
                std::future::pending::<()>().await;
            })
            .await
        }
    });
    held.await.unwrap();
    let state = pool.state();
    assert_eq!((state.pinned_owners, state.in_use), (1, 1));
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!((state.pinned_owners, state.in_use, state.idle), (0, 0, 1));
    assert_eq!(state.counters.reclaimed_pins, 1);
}

/// A scope whose future panics in a poll stops being the thread's scope:
/// the scope it was nested in is the current one again, and its own pool's
/// checkouts after it are unpinned.
#[tokio::test(flavor = "current_thread")]
async fn a_scope_that_panics_leaves_the_scope_around_it_current() {
    let manager = TestManager::default();
    let (a, b) = (pool(2, &manager), pool(2, &manager));
    b.pinned(async {
        let b_conn = PooledConnection::id(&b.get().await.unwrap());
        // Polled until it panics (its first poll waits for a connect),
        // and dropped.
        let caught = {
            let mut inner = pin!(a.pinned(async {
                let _held = a.get().await.unwrap();
                panic!("inside a's scope");
            }));
            poll_fn(|cx| {
                let poll = std::panic::AssertUnwindSafe(|| inner.as_mut().poll(cx));
                match std::panic::catch_unwind(poll) {
                    Ok(Poll::Pending) => Poll::Pending,
                    Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
                    Err(panic) => Poll::Ready(Err(panic)),
                }
            })
            .await
        };
        assert!(caught.is_err(), "the scope's future panicked");
        assert_eq!(a.state().pinned_owners, 0, "its pin was released");
        let unpinned = a.get().await.unwrap();
        assert_eq!(a.state().pinned_owners, 0, "outside any scope of a");
        drop(unpinned);
        let again = b.get().await.unwrap();
        assert_eq!(PooledConnection::id(&again), b_conn, "b's scope is current");
        assert_eq!(b.state().pinned_owners, 1);
    })
    .await;
    assert_eq!(b.state().pinned_owners, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_scope_dropped_while_waiting_leaves_no_waiter() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let held = pool.get().await.unwrap();
    {
        let mut scope = pin!(pool.pinned(async { pool.get().await.map(drop) }));
        assert!(poll_once(&mut scope).await.is_none());
        let state = pool.state();
        assert_eq!((state.waiting, state.pinned_owners), (1, 1));
    }
    let state = pool.state();
    assert_eq!((state.waiting, state.pinned_owners), (0, 0));
    drop(held);
    assert_eq!(pool.state().idle, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn scopes_nest_and_stack_across_pools() {
    let manager = TestManager::default();
    let (a, b) = (pool(4, &manager), pool(4, &manager));
    let ids = a
        .pinned(async {
            let outer = PooledConnection::id(&a.get().await.unwrap());
            // The same pool again: joins the outer scope.
            let inner = a
                .pinned(async { PooledConnection::id(&a.get().await.unwrap()) })
                .await;
            // Another pool: its own pin, beside the outer one.
            let (b1, b2) = b
                .pinned(async {
                    let b1 = PooledConnection::id(&b.get().await.unwrap());
                    let held_a = a.get().await.unwrap(); // still a's scope
                    assert_eq!(PooledConnection::id(&held_a), outer);
                    (b1, PooledConnection::id(&b.get().await.unwrap()))
                })
                .await;
            (outer, inner, b1, b2)
        })
        .await;
    assert_eq!(ids.0, ids.1);
    assert_eq!(ids.2, ids.3);
    assert_eq!(a.state().pinned_owners, 0);
    assert_eq!(b.state().pinned_owners, 0);
}

/// The scopes polled on a thread keep their leases on every pool in one
/// stack, their types erased; each pool takes back only its own, typed
/// (`driver::erased`, whose cast debug builds check). Scopes of two pools
/// of different connection types, nested, each serve their own
/// connection from their lease, state and all.
#[tokio::test(flavor = "current_thread")]
async fn scopes_of_pools_of_different_connection_types_serve_their_own_leases() {
    let numbers = Pool::builder()
        .max_size(1)
        .build(|| async { Ok::<_, std::io::Error>(7u32) })
        .unwrap();
    let words = Pool::builder()
        .max_size(1)
        .build(|| async { Ok::<_, std::io::Error>(String::from("seven")) })
        .unwrap();
    let (number, word) = numbers
        .pinned(words.pinned(async {
            for _ in 0..3 {
                let mut number = numbers.get().await.unwrap();
                let mut word = words.get().await.unwrap();
                *number += 1;
                word.push('!');
            }
            for state in [numbers.status(), words.status()] {
                assert_eq!(state.in_use, 1, "parked in the scope's lease");
                assert_eq!(state.counters.opened, 1);
            }
            let number = *numbers.get().await.unwrap();
            let word = words.get().await.unwrap().clone();
            (number, word)
        }))
        .await;
    assert_eq!((number, word.as_str()), (10, "seven!!!"));
}

#[tokio::test(flavor = "current_thread")]
async fn unpinned_gets_take_any_free_connection_and_pin_nobody() {
    let manager = TestManager::default();
    let pool = pool(2, &manager);
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    assert_ne!(PooledConnection::id(&first), PooledConnection::id(&second));
    let mut waiting = pin!(pool.get());
    assert!(poll_once(&mut waiting).await.is_none());
    // Whichever frees first serves the waiter.
    let freed = PooledConnection::id(&second);
    drop(second);
    let conn = poll_once(&mut waiting).await.expect("granted").unwrap();
    assert_eq!(PooledConnection::id(&conn), freed);
    assert_eq!(pool.state().pinned_owners, 0);
    drop((first, conn));
}

#[tokio::test(flavor = "current_thread")]
async fn asking_twice_in_a_strict_scope_while_holding_fails_at_once() {
    let pool = pool(2, &TestManager::default());
    pool.pinned(async {
        let _held = pool.get().await.unwrap();
        assert!(matches!(pool.get().await, Err(Error::AlreadyHeld)));
    })
    .await;
}

/// A scope nested in one for the same pool joins it: its checkouts, and
/// those after it ends, act for the outer scope's owner. (A joining scope
/// once popped the outer one's entry as its poll began, leaving the rest
/// of that poll unpinned, and the outer's end to pop an entry not its
/// own.)
#[tokio::test(flavor = "current_thread")]
async fn a_nested_scope_for_the_same_pool_leaves_the_outer_one_in_place() {
    let pool = pool(2, &TestManager::default());
    pool.pinned(async {
        let _held = pool.get().await.unwrap();
        let inner = pool.pinned(async { pool.try_get().await.map(drop) }).await;
        assert!(matches!(inner, Err(Error::AlreadyHeld)), "{inner:?}");
        let after = pool.try_get().await.map(drop);
        assert!(matches!(after, Err(Error::AlreadyHeld)), "{after:?}");
    })
    .await;
    assert_eq!(pool.state().pinned_owners, 0);
}

/// Under `Strict` a scope that took its connection from the lease of
/// another scope pinned to it is still refused when it asks again while
/// holding it, at once — not left waiting for itself.
#[tokio::test(flavor = "current_thread")]
async fn asking_twice_while_holding_a_shared_connection_fails_at_once() {
    use tokio::sync::Notify;
    let pool = pool(1, &TestManager::default());
    let (first_bound, second_bound, done) = (Notify::new(), Notify::new(), Notify::new());
    let first = pool.pinned(async {
        drop(pool.get().await.unwrap()); // binds
        first_bound.notify_one();
        second_bound.notified().await; // the second binds, ending this lease
        let held = pool.get().await.unwrap(); // parked in the second's lease
        let again = pool.try_get().await.map(|_| ());
        assert!(matches!(again, Err(Error::AlreadyHeld)), "{again:?}");
        drop(held);
        done.notify_one();
    });
    let second = pool.pinned(async {
        first_bound.notified().await;
        drop(pool.get().await.unwrap()); // binds to the same connection
        second_bound.notify_one();
        done.notified().await; // its pin outlives the first's turn
    });
    tokio::join!(first, second);
    assert_eq!(pool.state().counters.failed, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn closing_fails_waiters_and_later_gets() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let held = pool.get().await.unwrap();
    let mut waiting = pin!(pool.get());
    assert!(poll_once(&mut waiting).await.is_none());
    pool.close();
    assert!(matches!(
        poll_once(&mut waiting).await,
        Some(Err(Error::Closed))
    ));
    assert!(matches!(pool.get().await, Err(Error::Closed)));
    drop(held);
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!(state.total(), 0, "returned connections close");
}

/// A checkout whose deadline has passed stops after the validation that
/// failed, even with idle connections left to try: with a zero timeout
/// and ten idle connections that all fail validation, it validates the
/// one it took from the stash, then times out.
#[tokio::test(flavor = "current_thread")]
async fn a_checkout_past_its_deadline_stops_validating_idle_connections() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(10)
        .validate_on_checkout(true)
        .build(manager.clone())
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(pool.get().await.unwrap()); // unpinned: no scope
    }
    drop(held);
    let validated = manager.tally.validations.load(Ordering::SeqCst);
    manager.never_valid.store(true, Ordering::SeqCst);
    let error = pool
        .get_timeout(Duration::ZERO)
        .await
        .map(drop)
        .expect_err("no connection is valid");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let tried = manager.tally.validations.load(Ordering::SeqCst) - validated;
    assert_eq!(tried, 1, "the stash's connection only");
    assert_conserved(&pool, &manager.tally).await;
}

/// When every connection fails validation, a checkout replaces one after
/// another only until its deadline, then times out: no endless loop.
#[tokio::test(flavor = "current_thread")]
async fn a_checkout_whose_every_connection_fails_validation_times_out() {
    let manager = TestManager::never_valid();
    let pool = Pool::builder()
        .max_size(1)
        .validate_on_checkout(true)
        .checkout_timeout(Duration::from_millis(50))
        .build(manager.clone())
        .unwrap();
    let error = pool
        .get()
        .await
        .map(drop)
        .expect_err("no connection is valid");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(manager.tally.validations.load(Ordering::SeqCst) >= 1);
    assert_conserved(&pool, &manager.tally).await;
}

/// Under `validate_after_idle`, a checkout validates only a connection
/// unused for the window: a pinned scope's and an unpinned checkout's.
/// One handed out within the window is handed out again as it is, even
/// one that would fail (the trade the option makes); past it, it is
/// validated and replaced. Each checkout within the window restarts it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn only_connections_idle_for_the_window_are_validated() {
    let window = Duration::from_secs(1);
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(2)
        .validate_after_idle(window)
        .build(manager.clone())
        .unwrap();
    let validations = || manager.tally.validations.load(Ordering::SeqCst);
    pool.pinned(async {
        let first = PooledConnection::id(&pool.get().await.unwrap());
        for _ in 0..5 {
            assert_eq!(PooledConnection::id(&pool.get().await.unwrap()), first);
        }
        assert_eq!(validations(), 0, "opened and used within the window");
        tokio::time::advance(window - Duration::from_millis(1)).await;
        pool.get().await.unwrap().invalid = true;
        tokio::time::advance(window - Duration::from_millis(1)).await;
        let conn = pool.get().await.unwrap();
        assert_eq!(
            PooledConnection::id(&conn),
            first,
            "not validated: not idle long enough"
        );
        assert_eq!(validations(), 0);
        drop(conn);
        tokio::time::advance(window).await;
        let conn = pool.get().await.unwrap();
        assert_eq!(validations(), 1, "idle for the window: validated");
        assert_ne!(
            PooledConnection::id(&conn),
            first,
            "and replaced, failing it"
        );
    })
    .await;
    // Unpinned checkouts, outside any scope.
    let unpinned = PooledConnection::id(&pool.get().await.unwrap());
    pool.get().await.unwrap();
    assert_eq!(validations(), 1, "used within the window");
    tokio::time::advance(window).await;
    let conn = pool.get().await.unwrap();
    assert_eq!(PooledConnection::id(&conn), unpinned);
    assert_eq!(
        validations(),
        2,
        "idle for the window: validated, and passed"
    );
    drop(conn);
    pool.get().await.unwrap();
    assert_eq!(
        validations(),
        2,
        "validated just now: the window starts again"
    );
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!(state.counters.closed, 1, "the one that failed");
}

#[tokio::test(flavor = "current_thread")]
async fn broken_and_invalid_connections_are_replaced_keeping_the_pin() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(2)
        .validate_on_checkout(true)
        .build(manager.clone())
        .unwrap();
    pool.pinned(async {
        let mut conn = pool.get().await.unwrap();
        let first = PooledConnection::id(&conn);
        conn.broken = true;
        drop(conn); // has_broken: closed, the pin moves to a replacement
        let mut conn = pool.get().await.unwrap();
        let second = PooledConnection::id(&conn);
        assert_ne!(second, first);
        conn.invalid = true;
        drop(conn); // fails validation on the next checkout: replaced
        let third = PooledConnection::id(&pool.get().await.unwrap());
        assert_ne!(third, second);
        assert_eq!(pool.state().pinned_owners, 1, "still one pinned owner");
    })
    .await;
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!(state.counters.closed, 2);
    assert!(manager.tally.validations.load(Ordering::SeqCst) >= 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_detached_connection_leaves_the_pool_and_the_pin_moves_on() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    pool.pinned(async {
        drop(pool.get().await.unwrap()); // parked under the scope's lease
        let conn = pool.get().await.unwrap(); // taken back off the lock
        let first = PooledConnection::id(&conn);
        let mine = PooledConnection::detach(conn);
        let next = PooledConnection::id(&pool.get().await.unwrap());
        assert_ne!(next, first, "the pin moved to a replacement");
        assert_eq!(mine.number, 1, "the caller holds the first connection");
        assert_eq!(manager.tally.live.load(Ordering::SeqCst), 2);
        assert_eq!(pool.state().pinned_owners, 1);
    })
    .await;
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!(state.counters.closed, 1, "counted closed: {state:?}");
}

/// Each hook runs at its moment: `after_connect` on every new connection,
/// `before_acquire` before every checkout (a refusal replaces the
/// connection), `after_release` at every checkin (`false` closes it).
#[tokio::test(flavor = "current_thread")]
async fn hooks_run_around_an_async_pools_connections() {
    let manager = TestManager::default();
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connects);
    let hooked = pinpool::Hooks::new()
        .after_connect(move |_: &mut TestConn| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .before_acquire(|conn: &mut TestConn| match conn.number {
            1 => Err(Refused(1)),
            _ => Ok(()),
        })
        .after_release(|conn: &mut TestConn| conn.uses < 2)
        .wrap(manager.clone());
    let pool = Pool::builder().max_size(1).build(hooked).unwrap();
    pool.pinned(async {
        let mut conn = pool.get().await.unwrap();
        assert_eq!(conn.number, 2, "the first was refused before checkout");
        conn.touch();
        drop(conn); // one use: kept
        let mut conn = pool.get().await.unwrap();
        assert_eq!(conn.number, 2);
        conn.touch();
        drop(conn); // two uses: closed on release
        assert_eq!(pool.get().await.unwrap().number, 3);
    })
    .await;
    assert_eq!(connects.load(Ordering::SeqCst), 3);
    assert_eq!(pool.state().counters.closed, 2);
    assert_eq!(manager.tally.validations.load(Ordering::SeqCst), 4);
}

/// A manager whose connect panics or never finishes.
struct Misbehaving {
    hang: bool,
}

impl pinpool::tokio::Manager for Misbehaving {
    type Connection = ();
    type Error = Refused;

    async fn connect(&self) -> Result<(), Refused> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        panic!("connect exploded");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_connect_fails_its_waiter_with_a_typed_error() {
    let pool = Pool::new(Misbehaving { hang: false }).unwrap();
    assert!(matches!(pool.get().await, Err(Error::ConnectPanicked)));
    let state = pool.state();
    assert_eq!((state.connecting, state.total()), (0, 0));
    assert_eq!(state.counters.connect_failures, 1);
}

#[test]
fn a_runtime_shut_down_mid_connect_strands_no_slot() {
    let pool = Pool::new(Misbehaving { hang: true }).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut get = pin!(pool.get());
        assert!(poll_once(&mut get).await.is_none());
        // Let the connect task start and hang.
        tokio::task::yield_now().await;
        assert_eq!(pool.state().connecting, 1);
    });
    drop(runtime); // drops the hanging connect task
    let state = pool.state();
    assert_eq!((state.connecting, state.total()), (0, 0));
    assert_eq!(state.counters.connect_failures, 1);
}

#[test]
fn a_half_failing_manager_under_many_tasks_neither_hangs_nor_leaks() {
    multi_thread().block_on(async {
        let manager = TestManager::failing_half();
        let pool = Arc::new(pool(4, &manager));
        // Every task's first checkout is over (and a scope's pin kept)
        // before any goes on: otherwise, on a loaded machine, one task
        // could run all its turns and end, and the next reuse its
        // connection, until the first connect (which succeeds) had served
        // them all.
        let all_asked = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let pool = Arc::clone(&pool);
                let all_asked = Arc::clone(&all_asked);
                tokio::spawn(async move {
                    let work = async {
                        let mut refused = 0;
                        for turn in 0..20 {
                            if turn == 1 {
                                all_asked.wait().await;
                            }
                            match pool.get().await {
                                Ok(conn) => drop(conn),
                                Err(Error::Connect(Refused(_))) => refused += 1,
                                Err(other) => panic!("unexpected {other}"),
                            }
                        }
                        refused
                    };
                    if i % 2 == 0 {
                        pool.pinned(work).await
                    } else {
                        work.await
                    }
                })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            refused += task.await.unwrap();
        }
        let state = assert_conserved(&pool, &manager.tally).await;
        // A refusal fails the checkout that asked for the connection,
        // unless it was served by another connection first: an unpinned
        // one by any, a pinned one its pin has not served yet by one
        // nobody is pinned to. Owners waiting for the refused connection
        // share a live one, and nothing is opened again for them, so
        // every refusal can miss: none may reach two checkouts
        // (`a_connect_error_reaches_the_checkout_that_asked` checks the
        // one that asked is told).
        assert!(state.counters.connect_failures > 0, "the manager refused");
        assert!(
            refused as u64 <= state.counters.connect_failures,
            "no refusal reached two waiters"
        );
        assert_eq!((state.waiting, state.pinned_owners), (0, 0));
    });
}

#[tokio::test(flavor = "current_thread")]
async fn every_wake_policy_and_pinning_mode_completes() {
    for wake in support::WAKE_POLICIES {
        for pinning in support::PINNINGS {
            let manager = TestManager::default();
            let pool = Arc::new(
                Pool::builder()
                    .max_size(2)
                    .wake(wake)
                    .pinning(pinning)
                    .build(manager.clone())
                    .unwrap(),
            );
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move {
                        pool.pinned(async {
                            for _ in 0..10 {
                                let conn = pool.get().await.unwrap();
                                tokio::task::yield_now().await;
                                drop(conn);
                            }
                        })
                        .await
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let state = assert_conserved(&pool, &manager.tally).await;
            assert_eq!(state.counters.checkouts, 80, "{wake:?} {pinning:?}");
            assert_eq!((state.waiting, state.pinned_owners), (0, 0));
        }
    }
}

#[test]
fn pools_guards_and_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool<TestManager>>();
    send_sync::<PooledConnection<'static, TestManager>>();
    let pool = pool(1, &TestManager::default());
    send(&pool.get());
    send(&pool.get_owned());
    send(&pool.try_get());
    send(&pool.get_timeout(std::time::Duration::from_secs(1)));
    send(&pool.pinned(async {}));
    let mut session = pool.session();
    send(&session.get());
}

/// A refused connect fails the checkout that asked for that connection,
/// and only it: the scope already holding a connection is untouched, and
/// the next checkout's connect succeeds.
#[tokio::test(flavor = "current_thread")]
async fn a_connect_error_reaches_the_checkout_that_asked() {
    let manager = TestManager::failing_half(); // every second connect fails
    let pool = pool(2, &manager);
    let first = pool.get().await.expect("connect 1 succeeds");
    match pool.get().await {
        Err(Error::Connect(Refused(2))) => {}
        other => panic!("expected connect 2's refusal, got {:?}", other.map(|_| ())),
    }
    let second = pool.get().await.expect("connect 3 succeeds");
    assert_ne!(PooledConnection::id(&first), PooledConnection::id(&second));
    drop((first, second));
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!(state.counters.connect_failures, 1);
    assert_eq!(state.counters.failed, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn try_get_refuses_at_once_and_get_timeout_waits_its_own_time() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .checkout_timeout(Duration::from_secs(60))
        .build(manager.clone())
        .unwrap();
    let start = Instant::now();
    let refused = pool.try_get().await.map(drop);
    assert!(
        matches!(refused, Err(Error::WouldWait { .. })),
        "{refused:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "never waited");
    // The connect it asked for arrives; then it is free.
    while pool.status().idle == 0 {
        tokio::task::yield_now().await;
    }
    let held = pool.try_get().await.expect("free now");
    let refused = pool.try_get().await.map(drop);
    assert!(
        matches!(refused, Err(Error::WouldWait { .. })),
        "{refused:?}"
    );
    assert_eq!(pool.status().waiting, 0);

    let Err(Error::Timeout { waited, .. }) = pool.get_timeout(Duration::from_secs(2)).await else {
        panic!("expected a timeout");
    };
    assert_eq!(
        waited,
        Duration::from_secs(2),
        "the call's timeout, not the pool's 60 s"
    );
    drop(held);
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!((state.counters.opened, state.counters.timeouts), (1, 1));
}

/// The pool's timer keeps every waiter's deadline: one given later but
/// falling sooner (a shorter `get_timeout`) still ends on time — the
/// timer, planned for the first, is woken for it — and the first waits
/// on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shorter_timeout_behind_a_longer_one_ends_first_and_on_time() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let held = pool.get().await.unwrap();
    let patient = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get_timeout(Duration::from_secs(60)).await.map(drop) }
    });
    wait_until(&pool, "the patient waiter", |s| s.waiting == 1).await;
    let Err(Error::Timeout { waited, .. }) = pool.get_timeout(Duration::from_secs(2)).await else {
        panic!("expected a timeout");
    };
    assert_eq!(
        waited,
        Duration::from_secs(2),
        "its own deadline, not the first's"
    );
    assert_eq!(pool.status().waiting, 1, "the first still waits");
    drop(held);
    patient
        .await
        .unwrap()
        .expect("granted, well before its deadline");
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!(state.counters.timeouts, 1);
}

/// A waiter never depends on a runtime nobody drives: the pool's timer
/// started on one runtime, which then stands idle, and a waiter on
/// another still times out (it keeps its own timer). Once that runtime
/// shuts down, taking the timer with it, a waiter on another runtime
/// still times out. (That its deadline starts a new task there is
/// `tests/maintenance.rs`'s to show: it counts the live tasks.)
#[test]
fn a_waiter_times_out_whichever_runtime_the_pools_timer_is_on() {
    let current_thread = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let first = current_thread();
    let held = first.block_on(pool.get_owned()).unwrap();
    let short = Duration::from_millis(20);
    let timed_out = |result: Result<(), Error<Refused>>| matches!(result, Err(Error::Timeout { waited, .. }) if waited >= short);
    // Starts the timer on `first`, which nobody drives after this.
    assert!(timed_out(first.block_on(pool.get_timeout(short)).map(drop)));
    let elsewhere = |pool: Pool<TestManager>| {
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let second = current_thread();
            let _ = done.send(second.block_on(pool.get_timeout(short)).map(drop));
        });
        // A bound, not a synchronization: a waiter that depended on the
        // idle runtime would never end.
        result
            .recv_timeout(Duration::from_secs(30))
            .expect("the waiter on the other runtime ended")
    };
    assert!(timed_out(elsewhere(pool.clone())));
    drop(first); // shuts down, and drops the timer's task
    assert!(timed_out(elsewhere(pool.clone())));
    drop(held);
    let state = multi_thread().block_on(assert_conserved(&pool, &manager.tally));
    assert_eq!(state.counters.timeouts, 3);
}

/// A checkout polled where no Tokio runtime is (a misuse: its own timer
/// then panics) leaves no run of the pool's timer planned that will not
/// come: a later waiter with a deadline still wakes the timer, and times
/// out on time, not at the run the timer had planned (for the connect's
/// deadline, 30 s on).
#[test]
fn a_checkout_polled_outside_a_runtime_leaves_the_timers_plan_as_it_was() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    // The connect's wait starts the timer, planned by its deadline.
    let held = runtime.block_on(pool.get_owned()).unwrap();
    let polled_outside = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut get = pin!(pool.get_timeout(Duration::from_secs(1)));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = get.as_mut().poll(&mut cx);
    }));
    assert!(polled_outside.is_err(), "its own timer needs a runtime");
    assert_eq!(pool.status().waiting, 0, "withdrawn as its future dropped");
    runtime.block_on(async {
        let Err(Error::Timeout { waited, .. }) = pool.get_timeout(Duration::from_secs(5)).await
        else {
            panic!("expected a timeout");
        };
        assert_eq!(waited, Duration::from_secs(5));
    });
    drop(held);
}

/// Many waiters with timeouts of their own, joining and leaving as others
/// hold and return connections: every one the pool's timer times out
/// ends exactly at its own deadline (the clock is paused, so late is
/// late), never at a run planned for another; none that was served
/// waited past it; and every connection is accounted for.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_with_timeouts_of_their_own_each_end_at_their_deadline() {
    let manager = TestManager::default();
    let pool = pool(2, &manager);
    let tasks: Vec<_> = (0..24u64)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                // A fixed pseudo-random walk per task (an LCG), so every
                // run is the same run.
                let mut state = task.wrapping_mul(6364136223846793005).wrapping_add(1);
                let mut next = |below: u64| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33) % below
                };
                let (mut served, mut timed_out) = (0, 0);
                for _ in 0..20 {
                    let timeout = Duration::from_millis(1 + next(50));
                    let hold = Duration::from_millis(next(8));
                    let asked = Instant::now();
                    match pool.get_timeout(timeout).await {
                        Ok(conn) => {
                            assert!(asked.elapsed() <= timeout, "served past its deadline");
                            tokio::time::sleep(hold).await;
                            drop(conn);
                            served += 1;
                        }
                        Err(Error::Timeout { waited, .. }) => {
                            assert_eq!(waited, timeout, "timed out off its deadline");
                            assert_eq!(asked.elapsed(), timeout);
                            timed_out += 1;
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
                (served, timed_out)
            })
        })
        .collect();
    let (mut served, mut timed_out) = (0, 0);
    for task in tasks {
        let (s, t) = task.await.unwrap();
        (served, timed_out) = (served + s, timed_out + t);
    }
    assert!(
        served > 0 && timed_out > 0,
        "{served} served, {timed_out} timed out"
    );
    let state = assert_conserved(&pool, &manager.tally).await;
    assert_eq!(state.counters.timeouts, timed_out);
}

#[test]
fn resizing_under_load_converges_and_loses_nothing() {
    multi_thread().block_on(async {
        let manager = TestManager::default();
        let pool = pool(8, &manager);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (pool, stop) = (pool.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut checkouts = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Half pinned, half not.
                        if i % 2 == 0 {
                            pool.pinned(async { pool.get().await.expect("checkout").touch() })
                                .await;
                        } else {
                            pool.get().await.expect("checkout").touch();
                        }
                        checkouts += 1;
                        tokio::task::yield_now().await;
                    }
                    checkouts
                })
            })
            .collect();
        wait_until(&pool, "the pool full", |s| {
            s.idle + s.in_use + s.resetting == 8
        })
        .await;
        for size in [2, 6, 1, 4, 3] {
            pool.resize(size).unwrap();
            let before = pool.status().counters.checkouts;
            wait_until(&pool, "the pool within its new size", |s| {
                s.total() <= size && s.counters.checkouts > before + 100
            })
            .await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut checkouts = 0;
        for task in tasks {
            checkouts += task.await.unwrap();
        }
        let state = assert_conserved(&pool, &manager.tally).await;
        assert!(state.total() <= 3, "{state:?}");
        assert_eq!(state.counters.checkouts, checkouts);
        assert!(
            state.counters.closed >= 5,
            "the shrinks closed connections: {state:?}"
        );
        assert_eq!(state.pinned_owners, 0, "{state:?}");
    });
}

/// The async pool's default is strict FIFO hand-off: a released connection
/// goes to the task waiting for it, even while a new checkout asks within
/// the period in which eventual fairness (the blocking pool's default)
/// would let that one take it first. Two rounds: the first checkin of a
/// connection hands over under either policy.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn by_default_a_released_connection_goes_to_the_waiting_task() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let mut held = pool.get_owned().await.unwrap();
    for round in 0..2 {
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.get_owned().await }
        });
        wait_until(&pool, "the waiter to queue", |s| s.waiting == 1).await;
        drop(held);
        // (The paused clock stands still: well within `Eventual`'s period.)
        assert!(
            matches!(pool.try_get().await, Err(Error::WouldWait { .. })),
            "round {round}: a new checkout took the connection its waiter was due"
        );
        held = waiter.await.unwrap().unwrap();
    }
}

/// Each connection given back asks the manager `has_broken` exactly
/// once: parked in a scope's lease or the stash, given back through the
/// core when the lease was recalled while held (the drop's fast path
/// found it healthy, then could not park it), from an owning guard; and
/// a discarded one is closed without asking.
#[tokio::test]
async fn each_return_asks_the_manager_once() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let checks = || manager.tally.broken_checks.load(Ordering::SeqCst);
    for pinned in [true, false] {
        let before = checks();
        let returns = async {
            drop(pool.get().await.unwrap());
            drop(pool.get().await.unwrap());
            assert_eq!(checks() - before, 2, "pinned {pinned}: one per return");
            let held = pool.get().await.unwrap();
            assert_eq!(pool.state().in_use, 1, "state() recalled the lease");
            drop(held);
            assert_eq!(
                checks() - before,
                3,
                "pinned {pinned}: once, though refused a park"
            );
            drop(pool.get_owned().await.unwrap());
            assert_eq!(
                checks() - before,
                4,
                "pinned {pinned}: once for an owning guard"
            );
            PooledConnection::discard(pool.get().await.unwrap());
            assert_eq!(
                checks() - before,
                4,
                "pinned {pinned}: a discarded one is not asked about"
            );
        };
        if pinned {
            pool.pinned(returns).await;
        } else {
            returns.await;
        }
    }
    assert_eq!(pool.state().counters.closed, 2);
}

/// Tasks that start together in pinned scopes, on a pool still opening its
/// `min_size` connections on the runtime, are spread over them: as many
/// owners on each, give or take one (the blocking pool's threads, in
/// `tests/blocking.rs`, likewise). An idle connection with an owner was
/// once preferred to one still connecting with none, and here 16 tasks
/// ended up 7, 0, 6 and 3 in two runs of three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pinned_tasks_starting_together_are_spread_over_the_connections() {
    for tasks in [4, 16] {
        let manager = TestManager::default();
        let pool = Pool::builder()
            .max_size(4)
            .min_size(4)
            .build(manager.clone())
            .unwrap();
        let pinned = Arc::new(tokio::sync::Barrier::new(tasks + 1));
        let (release, released) = tokio::sync::watch::channel(false);
        let scopes: Vec<_> = (0..tasks)
            .map(|_| {
                let (pool, pinned, mut released) = (pool.clone(), pinned.clone(), released.clone());
                tokio::spawn(async move {
                    pool.pinned(async {
                        pool.get().await.expect("a connection").touch();
                        pinned.wait().await; // the scope stays, so its pin does
                        released
                            .wait_for(|&go| go)
                            .await
                            .expect("the test is running");
                    })
                    .await
                })
            })
            .collect();
        pinned.wait().await;
        let state = pool.state();
        release.send(true).expect("the scopes are waiting");
        for scope in scopes {
            scope.await.expect("a scope");
        }
        assert_spread_evenly(&state, tasks);
        assert_conserved(&pool, &manager.tally).await;
    }
}

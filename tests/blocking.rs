//! The blocking pool on real threads. Threads are coordinated with
//! channels, barriers and the pool's own state, never with sleeps.

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use pinpool::Error;
use pinpool::blocking::{Pool, PooledConnection};
use pinpool::core::{ConnId, Pinning, WakePolicy};
use support::{TestManager, assert_conserved, assert_spread_evenly, wait_for_state};

/// Joins threads with `JoinHandle::join`, which returns only once the
/// thread has terminated, its thread-local destructors run. (A scope's
/// implicit join does not wait for those: it returns when the closures do.)
fn join_all<T>(threads: impl IntoIterator<Item = thread::JoinHandle<T>>) -> Vec<T> {
    let threads: Vec<_> = threads.into_iter().collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn pool(max_size: usize, manager: &TestManager) -> Pool<TestManager> {
    Pool::builder()
        .max_size(max_size)
        .checkout_timeout(Duration::from_secs(20))
        .build(manager.clone())
        .expect("valid config")
}

#[test]
fn a_thousand_short_lived_threads_share_four_reused_connections() {
    let manager = TestManager::default();
    let pool = pool(4, &manager);
    for _batch in 0..50 {
        join_all((0..20).map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                for _ in 0..3 {
                    pool.get().expect("checkout").touch();
                }
            })
        }));
    }
    // Every thread has exited, thread-local destructors included: every
    // pin must be gone, and each connection reset once its last owner
    // went (on a thread of its own: an exiting thread does not run it).
    let state = wait_for_state(&pool, "the resets", |s| s.resetting == 0);
    assert_eq!(state.pinned_owners, 0, "{state:?}");
    assert!(state.pins.iter().all(|&(_, pins)| pins == 0), "{state:?}");
    assert_eq!(state.counters.reclaimed_pins, 1000);
    assert_eq!(state.counters.checkouts, 3000);
    assert_eq!((state.waiting, state.in_use), (0, 0), "{state:?}");
    assert!(manager.tally.max_live.load(Ordering::SeqCst) <= 4);
    assert!(state.counters.opened <= 4);
    assert_conserved(&pool, &manager.tally);

    // Every connection is reusable after its owners died: as many new
    // threads as there are connections, holding at once, get them all
    // without a single new connect.
    let existing = state.idle;
    let holding = Arc::new(Barrier::new(existing));
    let ids = join_all((0..existing).map(|_| {
        let (pool, holding) = (pool.clone(), Arc::clone(&holding));
        thread::spawn(move || {
            let mut conn = pool.get().expect("checkout");
            conn.touch();
            holding.wait();
            PooledConnection::id(&conn)
        })
    }));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), existing);
    assert_eq!(pool.state().counters.opened, state.counters.opened);

    wait_for_state(&pool, "the resets", |s| s.resetting == 0);
    drop(pool);
    let closed = manager.tally.closed.lock();
    assert_eq!(closed.len() as u64, state.counters.opened);
    for (number, users) in closed.iter() {
        assert!(
            users.len() > 1,
            "connection {number} was used by {} thread(s) only",
            users.len()
        );
    }
}

/// A worker that checks out once, reports the connection, and holds it
/// until told to release it.
struct Holder {
    got: mpsc::Receiver<ConnId>,
    release: mpsc::Sender<()>,
    thread: thread::JoinHandle<()>,
}

fn hold(pool: &Pool<TestManager>) -> Holder {
    let (got_tx, got) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let pool = pool.clone();
    let thread = thread::spawn(move || {
        let conn = pool.get().expect("checkout");
        got_tx.send(PooledConnection::id(&conn)).unwrap();
        release_rx.recv().unwrap();
    });
    Holder {
        got,
        release,
        thread,
    }
}

impl Holder {
    fn conn(&self) -> ConnId {
        self.got
            .recv_timeout(Duration::from_secs(20))
            .expect("the holder got a connection")
    }
    fn finish(self) {
        self.release.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

/// "A Curious Concurrency Case" on real threads: thread 1 holds A, thread
/// 2 holds B, thread 3 waits for A, thread 4 for B; thread 2 returns B.
fn curious_case(wake: WakePolicy) {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(2)
        .wake(wake)
        .checkout_timeout(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    let t1 = hold(&pool);
    let a = t1.conn();
    let t2 = hold(&pool);
    let b = t2.conn();
    assert_ne!(a, b);
    let t3 = hold(&pool);
    wait_for_state(&pool, "thread 3 to queue", |s| s.waiting == 1);
    let t4 = hold(&pool);
    wait_for_state(&pool, "thread 4 to queue", |s| s.waiting == 2);
    let state = pool.state();
    assert_eq!(state.pins, vec![(a, 2), (b, 2)], "least-loaded binding");

    t2.finish();
    match wake {
        WakePolicy::Signal => {
            // Thread 3 is woken for B, cannot use it and sleeps again;
            // thread 4 sleeps on while B is idle.
            let state = wait_for_state(&pool, "the futile wake-up", |s| {
                s.counters.futile_wakeups == 1
            });
            assert_eq!((state.idle, state.waiting), (1, 2), "{state:?}");
            assert_eq!(state.counters.wakeups, 1);
        }
        WakePolicy::Handoff => {
            assert_eq!(t4.conn(), b, "B goes straight to thread 4");
            let state = pool.state();
            assert_eq!(state.counters.wakeups, 0);
            assert_eq!(state.counters.futile_wakeups, 0);
            assert_eq!(state.waiting, 1);
        }
        WakePolicy::Broadcast | WakePolicy::Bounded(_) | WakePolicy::Eventual { .. } => {
            unreachable!("not exercised here")
        }
    }
    // Let everyone finish: A frees thread 3 (or, under Signal, wakes 4).
    t1.finish();
    if wake == WakePolicy::Signal {
        assert_eq!(t4.conn(), b);
    }
    t4.finish();
    let third = t3.conn();
    match wake {
        // Handed A as thread 1 returned it.
        WakePolicy::Handoff => assert_eq!(third, a),
        // Woken by B's return, it takes A; or thread 4 exits first, B is
        // then nobody's, and goes to thread 3, whose pin on A has not
        // served it yet (either, as the threads run).
        _ => assert!(third == a || third == b, "{third}"),
    }
    t3.finish();
    let state = pool.state();
    assert_eq!(state.waiting, 0);
    assert_eq!(state.counters.checkouts, 4);
    assert_conserved(&pool, &manager.tally);
}

#[test]
fn signal_wakes_the_wrong_thread_on_real_threads() {
    curious_case(WakePolicy::Signal);
}

#[test]
fn handoff_hands_the_freed_connection_to_its_waiter() {
    curious_case(WakePolicy::Handoff);
}

#[test]
fn a_connection_whose_holder_panicked_is_checked_before_reuse() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .validate_on_checkout(true)
        .build(manager.clone())
        .unwrap();
    // A panic that leaves the connection broken: it is closed and replaced.
    let panicked = thread::scope(|s| {
        s.spawn(|| {
            let mut conn = pool.get().unwrap();
            conn.broken = true;
            panic!("the user's code failed mid-request");
        })
        .join()
    });
    assert!(panicked.is_err());
    let state = pool.state();
    assert_eq!(state.counters.closed, 1, "the broken connection closed");
    assert_eq!(
        state.pinned_owners, 0,
        "the dead thread's pin was reclaimed"
    );
    assert_eq!(state.in_use, 0);

    // A panic that leaves it healthy: it is reused, after validation.
    let validations = manager.tally.validations.load(Ordering::SeqCst);
    let first = thread::scope(|s| {
        s.spawn(|| {
            let conn = pool.get().unwrap();
            let id = PooledConnection::id(&conn);
            std::panic::panic_any(id);
        })
        .join()
    });
    let first: ConnId = *first.unwrap_err().downcast().unwrap();
    let conn = pool.get().unwrap();
    assert_eq!(PooledConnection::id(&conn), first, "reused");
    assert!(manager.tally.validations.load(Ordering::SeqCst) >= validations + 2);
    drop(conn);
    assert_conserved(&pool, &manager.tally);
}

/// Condemns the thread's connection one way; the next checkout must get
/// a replacement, with the thread's pin moved to it.
fn assert_replaced_keeping_the_pin(
    validate_on_checkout: bool,
    condemn: impl FnOnce(PooledConnection<'_, TestManager>),
) {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .validate_on_checkout(validate_on_checkout)
        .build(manager.clone())
        .unwrap();
    let conn = pool.get().unwrap();
    let first = PooledConnection::id(&conn);
    condemn(conn);
    let conn = pool.get().unwrap();
    assert_ne!(PooledConnection::id(&conn), first, "replaced");
    drop(conn);
    let state = pool.state();
    assert_eq!(state.counters.closed, 1);
    assert_eq!(state.pinned_owners, 1, "the pin moved to the replacement");
    assert_conserved(&pool, &manager.tally);
}

#[test]
fn a_failed_validation_replaces_the_connection_and_keeps_the_pin() {
    assert_replaced_keeping_the_pin(true, |mut conn| conn.invalid = true);
}

/// Under `validate_after_idle`, a checkout validates only a connection
/// unused for the window. Within it a pinned thread's checkouts go
/// unvalidated, even with a connection that would fail (the trade the
/// option makes); past it, that connection is validated and replaced.
#[test]
fn only_connections_idle_for_the_window_are_validated() {
    let validated = |manager: &TestManager| manager.tally.validations.load(Ordering::SeqCst);
    let within = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .validate_after_idle(Duration::from_secs(3600))
        .build(within.clone())
        .unwrap();
    let first = PooledConnection::id(&pool.get().unwrap());
    pool.get().unwrap().invalid = true;
    for _ in 0..5 {
        assert_eq!(PooledConnection::id(&pool.get().unwrap()), first);
    }
    assert_eq!(validated(&within), 0, "every checkout within the window");
    assert_conserved(&pool, &within.tally);

    let past = TestManager::default();
    let window = Duration::from_millis(1);
    let pool = Pool::builder()
        .max_size(1)
        .validate_after_idle(window)
        .build(past.clone())
        .unwrap();
    let mut conn = pool.get().unwrap();
    let first = PooledConnection::id(&conn);
    conn.invalid = true;
    drop(conn);
    let before = validated(&past); // (1 if the connect took the window)
    // Time passing on the clock the window is measured by, not waiting
    // for another thread: a sleep lasts at least this long.
    thread::sleep(2 * window);
    let conn = pool.get().unwrap();
    assert_eq!(
        validated(&past),
        before + 1,
        "unused past the window: validated"
    );
    assert_ne!(
        PooledConnection::id(&conn),
        first,
        "and replaced, failing it"
    );
    drop(conn);
    let state = assert_conserved(&pool, &past.tally);
    assert_eq!(state.counters.closed, 1);
}

/// When every connection fails validation, a checkout replaces one after
/// another only until its deadline, then times out: no endless loop.
#[test]
fn a_checkout_whose_every_connection_fails_validation_times_out() {
    let manager = TestManager::never_valid();
    let pool = Pool::builder()
        .max_size(1)
        .validate_on_checkout(true)
        .checkout_timeout(Duration::from_millis(50))
        .build(manager.clone())
        .unwrap();
    let error = pool.get().map(drop).expect_err("no connection is valid");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(manager.tally.validations.load(Ordering::SeqCst) >= 1);
    assert_conserved(&pool, &manager.tally);
}

/// A checkout whose deadline has passed stops after the validation that
/// failed, even with idle connections left to try: with a zero timeout
/// and ten idle connections that all fail validation, it validates the
/// one it took from the stash and the one the core granted, then times
/// out, rather than validating (and closing) every idle connection.
#[test]
fn a_checkout_past_its_deadline_stops_validating_idle_connections() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(10)
        .pinning(Pinning::Off)
        .validate_on_checkout(true)
        .build(manager.clone())
        .unwrap();
    let held: Vec<_> = (0..10).map(|_| pool.get().unwrap()).collect();
    drop(held);
    let validated = manager.tally.validations.load(Ordering::SeqCst);
    manager.never_valid.store(true, Ordering::SeqCst);
    let error = pool
        .get_timeout(Duration::ZERO)
        .map(drop)
        .expect_err("no connection is valid");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let tried = manager.tally.validations.load(Ordering::SeqCst) - validated;
    assert_eq!(tried, 2, "the stash's connection, then the core's");
    assert_conserved(&pool, &manager.tally);
}

#[test]
fn an_explicit_discard_closes_and_replaces_the_connection() {
    // A closure, not the fn item: that is not general over the lifetime.
    #[allow(clippy::redundant_closure)]
    assert_replaced_keeping_the_pin(false, |conn| PooledConnection::discard(conn));
}

#[test]
fn a_timeout_reports_how_long_it_waited_and_the_state() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .checkout_timeout(Duration::from_millis(50))
        .build(manager.clone())
        .unwrap();
    // Its own patience: on a loaded machine the connect can take longer
    // than the pool's 50 ms, which is for the checkout below.
    let held = pool.get_timeout(Duration::from_secs(20)).unwrap();
    let error = thread::scope(|s| s.spawn(|| pool.get().map(|_| ())).join().unwrap())
        .expect_err("the only connection is held");
    let Error::Timeout { waited, state } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert!(*waited >= Duration::from_millis(50), "{waited:?}");
    assert_eq!((state.in_use, state.waiting), (1, 1), "{state:?}");
    assert!(
        error
            .to_string()
            .contains("1 in use, 0 resetting, 0 connecting, 0 pending, 1 waiting (0 for a pin)")
    );
    drop(held);
    let state = pool.state();
    assert_eq!(state.counters.timeouts, 1);
    assert_eq!(state.waiting, 0);
    assert_conserved(&pool, &manager.tally);
}

#[test]
fn closing_fails_waiters_and_closes_connections_as_they_return() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let held = pool.get().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || pool.get().map(|_| ()))
        })
        .collect();
    wait_for_state(&pool, "three waiters", |s| s.waiting == 3);
    pool.close();
    for waiter in waiters {
        assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
    }
    assert_eq!(manager.tally.live.load(Ordering::SeqCst), 1, "still held");
    drop(held);
    assert_eq!(
        manager.tally.live.load(Ordering::SeqCst),
        0,
        "closed on return"
    );
    assert!(matches!(pool.get(), Err(Error::Closed)));
    assert_conserved(&pool, &manager.tally);
}

#[test]
fn dropping_the_last_handle_closes_idle_and_leased_connections() {
    let manager = TestManager::default();
    let pool = pool(2, &manager);
    drop(pool.get().unwrap()); // leased to this thread, parked
    thread::scope(|s| {
        s.spawn(|| drop(pool.get().unwrap()));
    });
    assert_eq!(manager.tally.live.load(Ordering::SeqCst), 2);
    // The exited thread's connection is reset before anyone reuses it.
    // (`thread::scope` returns before its threads' thread-locals are
    // dropped: the pin is reclaimed, and the reset asked for, when they
    // are.)
    wait_for_state(&pool, "the reclaim and the reset", |s| {
        s.counters.reclaimed_pins == 1 && s.resetting == 0
    });
    drop(pool);
    assert_eq!(manager.tally.live.load(Ordering::SeqCst), 0);
}

#[test]
fn a_pool_dropped_before_its_threads_exit_is_skipped_at_exit() {
    let manager = TestManager::default();
    let pool = pool(2, &manager);
    let (used_tx, used) = mpsc::channel();
    let (exit, exit_rx) = mpsc::channel::<()>();
    let worker = {
        let pool = pool.clone();
        thread::spawn(move || {
            drop(pool.get().unwrap());
            drop(pool);
            used_tx.send(()).unwrap();
            exit_rx.recv().unwrap();
        })
    };
    used.recv().unwrap();
    drop(pool);
    assert_eq!(manager.tally.live.load(Ordering::SeqCst), 0);
    exit.send(()).unwrap();
    worker.join().expect("the thread exits cleanly");
}

#[test]
fn a_thread_may_use_several_pools_and_is_reclaimed_from_each() {
    let (m1, m2) = (TestManager::default(), TestManager::default());
    let (p1, p2) = (pool(2, &m1), pool(2, &m2));
    let (q1, q2) = (p1.clone(), p2.clone());
    join_all([thread::spawn(move || {
        let _a = q1.get().unwrap();
        let _b = q2.get().unwrap();
    })]);
    for pool in [&p1, &p2] {
        let state = pool.state();
        assert_eq!(state.pinned_owners, 0);
        assert_eq!(state.counters.reclaimed_pins, 1);
    }
}

/// A thread keeps its leases on every pool in one registry, their types
/// erased; each pool takes back only its own, typed (`driver::erased`,
/// whose cast debug builds check). Two pools of different connection
/// types, used in turn, each serve the thread its own connection from
/// its lease, state and all.
#[test]
fn pools_of_different_connection_types_serve_their_own_leases() {
    let numbers = Pool::builder()
        .max_size(1)
        .build(|| Ok::<_, std::io::Error>(7u32))
        .unwrap();
    let words = Pool::builder()
        .max_size(1)
        .build(|| Ok::<_, std::io::Error>(String::from("seven")))
        .unwrap();
    for _ in 0..3 {
        let mut number = numbers.get().unwrap();
        let mut word = words.get().unwrap();
        *number += 1;
        word.push('!');
    }
    assert_eq!(*numbers.get().unwrap(), 10);
    assert_eq!(*words.get().unwrap(), "seven!!!");
    for state in [numbers.status(), words.status()] {
        assert_eq!(state.in_use, 1, "parked in the thread's lease");
        assert_eq!(state.counters.opened, 1);
    }
}

#[test]
fn unpin_releases_the_current_threads_pin() {
    let manager = TestManager::default();
    let pool = pool(2, &manager);
    drop(pool.get().unwrap());
    assert_eq!(pool.state().pinned_owners, 1);
    pool.unpin();
    assert_eq!(pool.state().pinned_owners, 0);
    drop(pool.get().unwrap());
    assert_eq!(pool.state().pinned_owners, 1, "pinned afresh");
}

/// Under Affinity a thread may hold two connections; its lease must
/// follow whichever it is pinned to, in either drop order.
#[test]
fn an_affinity_thread_holding_two_connections_keeps_the_books_straight() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(2)
        .pinning(Pinning::Affinity)
        .build(manager.clone())
        .unwrap();
    for round in 0..4 {
        let first = pool.get().unwrap();
        let second = pool.get().unwrap();
        assert_ne!(PooledConnection::id(&first), PooledConnection::id(&second));
        if round % 2 == 0 {
            drop(first);
            drop(second);
        } else {
            drop(second);
            drop(first);
        }
        drop(pool.get().unwrap()); // the fast path, or the core
    }
    let state = assert_conserved(&pool, &manager.tally);
    assert_eq!(state.counters.checkouts, 12);
    assert_eq!((state.in_use, state.idle, state.pinned_owners), (0, 2, 1));
}

#[test]
fn asking_twice_while_holding_the_pinned_connection_fails_at_once() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let held = pool.get().unwrap();
    assert!(matches!(pool.get(), Err(Error::AlreadyHeld)));
    drop(held);
    assert!(pool.get().is_ok(), "and works again once returned");
}

/// Under `Strict` a thread that took its connection from the lease of
/// another thread pinned to it is still refused when it asks again while
/// holding it, at once — not left waiting for itself.
#[test]
fn asking_twice_while_holding_a_shared_connection_fails_at_once() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    drop(pool.get().unwrap()); // this thread binds
    let (bound, other_bound) = std::sync::mpsc::channel();
    let (done, other_done) = std::sync::mpsc::channel::<()>();
    thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            drop(pool.get().unwrap()); // binds too, ending this thread's lease
            bound.send(()).unwrap();
            // Its pin (and lease) outlives this thread's turn; a failed
            // turn drops the sender, which ends the wait too.
            let _ = other_done.recv();
        });
        let done = done;
        other_bound.recv().unwrap();
        let held = pool.get().unwrap(); // parked in the other's lease
        let again = pool.try_get().map(|_| ());
        assert!(matches!(again, Err(Error::AlreadyHeld)), "{again:?}");
        drop(held);
        done.send(()).unwrap();
    });
    assert_eq!(pool.state().counters.failed, 1);
}

#[test]
fn a_half_failing_manager_under_sixteen_threads_neither_hangs_nor_leaks() {
    let manager = TestManager::failing_half();
    let pool = pool(4, &manager);
    let start = Barrier::new(16);
    // Every thread's first checkout is over, and its pin kept, before any
    // thread goes on: otherwise, on a loaded machine, one thread could run
    // all its turns and exit, and the next reuse its connection, until
    // one connect (the first, which succeeds) had served them all.
    let all_asked = Barrier::new(16);
    let (ok, refused) = thread::scope(|s| {
        let workers: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let (mut ok, mut refused) = (0, 0);
                    for turn in 0..50 {
                        if turn == 1 {
                            all_asked.wait();
                        }
                        match pool.get() {
                            Ok(mut conn) => {
                                conn.touch();
                                ok += 1;
                            }
                            Err(Error::Connect(error)) => {
                                assert!(error.to_string().starts_with("connect refused"));
                                refused += 1;
                            }
                            Err(other) => panic!("unexpected error: {other}"),
                        }
                    }
                    (ok, refused)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert_eq!(ok + refused, 16 * 50);
    assert!(refused > 0 && ok > 0);
    let state = pool.state();
    assert_eq!(state.waiting, 0);
    assert_eq!(state.pinned_owners, 0);
    assert_eq!(state.counters.checkouts, ok as u64);
    assert!(refused as u64 <= state.counters.connect_failures);
    assert!(manager.tally.max_live.load(Ordering::SeqCst) <= 4);
    assert_conserved(&pool, &manager.tally);
}

/// The fast path racing with waiter registration: two threads pinned to
/// the only connection alternate on it many times. A lost wake-up would
/// surface as a checkout timeout.
#[test]
fn leases_are_recalled_for_waiters_without_losing_a_wake_up() {
    // Under Off the connection is stash-leased rather than thread-leased.
    let policies = [WakePolicy::Handoff, WakePolicy::default()];
    for (pinning, wake) in support::PINNINGS
        .into_iter()
        .flat_map(|p| policies.map(|w| (p, w)))
    {
        let manager = TestManager::default();
        let pool = Pool::builder()
            .max_size(1)
            .pinning(pinning)
            .wake(wake)
            .checkout_timeout(Duration::from_secs(20))
            .build(manager.clone())
            .unwrap();
        let start = Arc::new(Barrier::new(3));
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..5_000 {
                        pool.get().expect("no lost wake-up").touch();
                    }
                });
            }
        });
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 15_000, "{pinning:?}/{wake:?}");
        assert_eq!(state.counters.checkins, 15_000, "{pinning:?}/{wake:?}");
        if wake == WakePolicy::Handoff {
            assert_eq!(state.counters.max_bypass, 0, "Handoff never barges");
        }
        assert_eq!((state.waiting, state.in_use), (0, 0));
        assert_conserved(&pool, &manager.tally);
    }
}

/// Under `Off` checkouts take connections from the stash without the lock
/// while snapshots (which recall every stash lease) and waiters (which
/// recall them when nothing is idle) keep ending the leases: no checkout
/// is lost or waits for ever, and every connection is accounted for.
#[test]
fn stashed_connections_survive_recalls_by_snapshots_and_waiters() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(2)
        .pinning(Pinning::Off)
        .checkout_timeout(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let start = Barrier::new(5);
    thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            // At least one snapshot, however fast the workers are.
            loop {
                let state = pool.state();
                assert!(state.idle + state.in_use <= 2, "{state:?}");
                if done.load(Ordering::SeqCst) {
                    break;
                }
            }
        });
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..3_000 {
                        pool.get().expect("no lost wake-up").touch();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    let state = pool.state();
    assert_eq!(state.counters.checkouts, 12_000, "{state:?}");
    assert_eq!(state.counters.checkins, 12_000, "{state:?}");
    assert_eq!((state.waiting, state.in_use), (0, 0));
    assert!(manager.tally.max_live.load(Ordering::SeqCst) <= 2);
    assert_conserved(&pool, &manager.tally);
}

#[test]
fn every_wake_policy_completes_under_contention() {
    for wake in support::WAKE_POLICIES {
        for pinning in support::PINNINGS {
            let manager = TestManager::default();
            let pool = Pool::builder()
                .max_size(2)
                .pinning(pinning)
                .wake(wake)
                .checkout_timeout(Duration::from_secs(20))
                .build(manager.clone())
                .unwrap();
            thread::scope(|s| {
                for _ in 0..6 {
                    s.spawn(|| {
                        for _ in 0..300 {
                            pool.get().expect("completes").touch();
                        }
                    });
                }
            });
            let state = pool.state();
            let what = format!("{wake:?}/{pinning:?}");
            assert_eq!(state.counters.checkouts, 1800, "{what}");
            assert_eq!(state.waiting, 0, "{what}");
            if wake == WakePolicy::Handoff {
                assert_eq!(state.counters.wakeups, 0, "{what}");
                assert_eq!(state.counters.max_bypass, 0, "{what}");
            }
            if let Some(bound) = support::bypass_bound(wake, pinning) {
                // Passed over at most the bound, plus the connections
                // already idle when it was reached.
                let most = u64::from(bound) + 2;
                assert!(state.counters.max_bypass <= most, "{what}: {state:?}");
            }
            assert_conserved(&pool, &manager.tally);
        }
    }
}

#[test]
fn an_invalid_configuration_is_a_typed_error() {
    let error = Pool::builder()
        .max_size(2)
        .min_size(3)
        .build(TestManager::default())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "min_size (3) must not exceed max_size (2)"
    );
}

#[test]
fn min_size_connections_open_in_the_background() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(4)
        .min_size(3)
        .build(manager.clone())
        .unwrap();
    wait_for_state(&pool, "three idle connections", |s| s.idle == 3);
    assert_conserved(&pool, &manager.tally);
}

/// Threads that start at once on a pool still opening its `min_size`
/// connections are spread over them: as many owners on each, give or take
/// one, whichever thread the core binds first. (Once, an idle connection
/// with an owner was preferred to one still connecting with none: four
/// threads on four connections ended up two, one, one and none, in about
/// one round in twenty on 2 cores; on 16, they shared in every run.)
#[test]
fn threads_starting_together_are_spread_over_the_connections() {
    for threads in [4, 8, 16] {
        for _round in 0..50 {
            let pool = Pool::builder()
                .max_size(4)
                .min_size(4)
                .build(TestManager::default())
                .unwrap();
            let (start, pinned) = (Barrier::new(threads), Barrier::new(threads + 1));
            let state = thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        start.wait();
                        pool.get().expect("a connection").touch();
                        pinned.wait(); // stays alive, so its pin does
                        pinned.wait();
                    });
                }
                pinned.wait();
                let state = pool.state();
                pinned.wait();
                state
            });
            assert_spread_evenly(&state, threads);
        }
    }
}

#[test]
fn pools_and_guards_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool<TestManager>>();
    send::<PooledConnection<'static, TestManager>>();
    send_sync::<Error<support::Refused>>();
}

#[test]
fn try_get_never_waits_and_asks_for_what_it_lacks() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    // Nothing open yet: refused at once, but the pool opens one for it.
    let refused = pool.try_get().map(drop);
    assert!(
        matches!(refused, Err(Error::WouldWait { .. })),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().is_retryable());
    wait_for_state(&pool, "the connect it asked for", |s| s.idle == 1);
    let held = pool.try_get().expect("opened for this thread, and free");
    // Another thread is bound to the same (only) connection, busy: refused,
    // and it leaves no waiter behind.
    let other = thread::scope(|s| s.spawn(|| pool.try_get().map(drop)).join().unwrap());
    assert!(matches!(other, Err(Error::WouldWait { ref state }) if state.in_use == 1));
    let state = pool.status();
    assert_eq!(state.waiting, 0, "{state:?}");
    drop(held);
    assert_eq!(pool.state().counters.opened, 1);
    assert_conserved(&pool, &manager.tally);
}

#[test]
fn get_timeout_overrides_the_pools_checkout_timeout() {
    let manager = TestManager::default();
    let pool = pool(1, &manager); // checkout timeout: 20 s
    let held = pool.get().unwrap();
    let waited = thread::scope(|s| {
        s.spawn(|| match pool.get_timeout(Duration::from_millis(20)) {
            Err(Error::Timeout { waited, .. }) => waited,
            other => panic!("expected a timeout, got {:?}", other.map(drop)),
        })
        .join()
        .unwrap()
    });
    assert!(waited >= Duration::from_millis(20), "{waited:?}");
    assert!(
        waited < Duration::from_secs(20),
        "the call's timeout, not the pool's"
    );
    drop(held);
    assert_eq!(pool.state().counters.timeouts, 1);
}

#[test]
fn resizing_under_load_converges_and_loses_nothing() {
    let manager = TestManager::default();
    let pool = pool(8, &manager);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut checkouts = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    pool.get().expect("checkout").touch();
                    checkouts += 1;
                }
                checkouts
            })
        })
        .collect();
    wait_for_state(&pool, "the pool full", |s| {
        s.idle + s.in_use + s.resetting == 8
    });
    for size in [2, 6, 1, 4, 3] {
        pool.resize(size).unwrap();
        let before = pool.status().counters.checkouts;
        // Under load, the surplus closes as it comes back.
        wait_for_state(&pool, "the pool within its new size", |s| {
            s.total() <= size && s.counters.checkouts > before + 100
        });
    }
    stop.store(true, Ordering::Relaxed);
    let checkouts: u64 = join_all(workers).into_iter().sum();
    let state = assert_conserved(&pool, &manager.tally);
    assert!(state.total() <= 3, "{state:?}");
    assert_eq!(state.counters.checkouts, checkouts);
    assert!(
        state.counters.closed >= 5,
        "the shrinks closed connections: {state:?}"
    );
    assert_eq!(
        state.pinned_owners, 0,
        "every thread's pin reclaimed: {state:?}"
    );
}

#[test]
fn a_detached_connection_leaves_the_pool_and_its_waiter_gets_a_replacement() {
    let manager = TestManager::default();
    let pool = Pool::builder().max_size(1).build(manager.clone()).unwrap();
    let conn = pool.get().unwrap();
    let first = PooledConnection::id(&conn);
    thread::scope(|s| {
        // Bound to the only connection, the other thread waits for it.
        let waiter = s.spawn(|| PooledConnection::id(&pool.get().unwrap()));
        wait_for_state(&pool, "the other thread to wait", |st| st.waiting == 1);
        let mine = PooledConnection::detach(conn);
        assert_ne!(waiter.join().unwrap(), first, "served by a replacement");
        assert_eq!(mine.number, 1, "the caller holds the first connection");
        assert_eq!(
            manager.tally.live.load(Ordering::SeqCst),
            2,
            "the pool did not close what it gave away"
        );
    });
    let state = assert_conserved(&pool, &manager.tally);
    assert_eq!(state.counters.closed, 1, "counted closed: {state:?}");
    assert_eq!(state.total(), 1);
}

#[test]
fn an_owned_guard_moves_to_another_thread_and_outlives_the_pool_handle() {
    let manager = TestManager::default();
    let pool = Pool::builder().max_size(2).build(manager.clone()).unwrap();
    let mut conn = pool.get_owned().unwrap();
    let id = PooledConnection::id(&conn);
    thread::spawn(move || conn.touch()).join().unwrap();
    assert_eq!(
        PooledConnection::id(&pool.get().unwrap()),
        id,
        "dropped elsewhere, still this thread's pinned connection"
    );
    let held = pool.get_owned().unwrap();
    let observer = pool.clone();
    drop(pool);
    assert_eq!(observer.state().in_use, 1);
    drop(observer); // the last handle: the pool closes
    assert_eq!(manager.tally.live.load(Ordering::SeqCst), 1, "still held");
    drop(held);
    assert_eq!(
        manager.tally.live.load(Ordering::SeqCst),
        0,
        "closed on return"
    );
}

/// A manager that names the server it connects to.
struct Named;

impl pinpool::blocking::Manager for Named {
    type Connection = ();
    type Error = std::io::Error;
    fn connect(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn pool_name(&self) -> Option<String> {
        Some("db.example:5432/app".into())
    }
}

/// A pool is named by its builder, else by its manager, else
/// `pinpool-<n>`, distinct per pool (its metrics carry the name).
#[test]
fn a_pool_is_named_by_its_builder_its_manager_or_its_number() {
    assert_eq!(Pool::new(Named).unwrap().name(), "db.example:5432/app");
    let named = Pool::builder().name("orders").build(Named).unwrap();
    assert_eq!(named.name(), "orders");
    let noop = || Ok::<_, std::io::Error>(());
    let (one, two) = (Pool::new(noop).unwrap(), Pool::new(noop).unwrap());
    assert!(one.name().starts_with("pinpool-"), "{}", one.name());
    assert_ne!(one.name(), two.name());
}

/// A new thread bound by the overflow rule to a held connection takes the
/// other one as soon as its owner lets it go: it does not wait for the
/// holder, which here holds on until it has one (as the threads of
/// `lifecycle`'s reconnect storm did, when one was bound just before the
/// threads of the storm before exited, and waited out its timeout).
#[test]
fn a_thread_bound_to_a_held_connection_takes_one_its_owner_let_go() {
    let manager = TestManager::default();
    let pool = pool(2, &manager);
    let held = pool.get().unwrap();
    let mine = PooledConnection::id(&held);
    let (holds, held_there) = mpsc::channel();
    let (let_go, told) = mpsc::channel::<()>();
    thread::scope(|s| {
        let pool = &pool;
        let other_owner = s.spawn(move || {
            let conn = pool.get().unwrap();
            holds.send(PooledConnection::id(&conn)).unwrap();
            told.recv().unwrap();
            drop(conn);
            pool.unpin();
        });
        let theirs = held_there.recv().unwrap();
        let newcomer = s.spawn(|| pool.get().map(|conn| PooledConnection::id(&conn)));
        let state = wait_for_state(pool, "the newcomer waits", |state| state.waiting == 1);
        let mut bound = vec![(mine, 2), (theirs, 1)];
        bound.sort();
        assert_eq!(
            state.pins, bound,
            "the newcomer is bound to this thread's connection, which it holds"
        );
        let_go.send(()).unwrap();
        other_owner.join().unwrap();
        assert_eq!(newcomer.join().unwrap().unwrap(), theirs);
    });
    drop(held);
    assert_conserved(&pool, &manager.tally);
}

/// Each connection given back asks the manager `has_broken` exactly
/// once: parked from a pinned thread's guard, given back through the core
/// when its lease was recalled while it was held (the drop's fast path
/// found it healthy, then could not park it), from an owning guard; and
/// a discarded one is closed without asking.
#[test]
fn each_return_asks_the_manager_once() {
    let manager = TestManager::default();
    let pool = pool(1, &manager);
    let checks = || manager.tally.broken_checks.load(Ordering::SeqCst);
    drop(pool.get().unwrap());
    drop(pool.get().unwrap());
    assert_eq!(checks(), 2, "one per return");
    let held = pool.get().unwrap();
    assert_eq!(pool.state().in_use, 1, "state() recalled the lease");
    drop(held);
    assert_eq!(checks(), 3, "once, though the park was refused");
    drop(pool.get_owned().unwrap());
    assert_eq!(checks(), 4, "once for an owning guard");
    PooledConnection::discard(pool.get().unwrap());
    assert_eq!(checks(), 4, "a discarded connection is not asked about");
    let state = pool.state();
    assert_eq!((state.counters.checkouts, state.counters.closed), (5, 1));
}

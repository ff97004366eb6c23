//! Exclusive session pins and the reset between owners, on real threads
//! and tasks: a connection carries a "session" (a marker its owner
//! writes, as a SQL session carries `SET`s and temporary tables) that the
//! manager's `reset` clears. No owner may ever see another's marker.
//! Coordinated by barriers, channels and the pool's own state; no sleeps.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use pinpool::Error;
use pinpool::blocking::{self, Pool, PooledConnection};
use pinpool::core::{CloseReason, Event, Pinning, PoolState, Reset};
use support::{wait_for_state, wait_until};

mod support;

/// A connection standing for a database session: `marker` is the state
/// its current owner left on it.
#[derive(Debug)]
struct SqlSession {
    number: usize,
    marker: Option<u64>,
    live: Arc<AtomicUsize>,
}

impl Drop for SqlSession {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reset refused")]
struct ResetRefused;

/// Opens sessions and resets them, counting both; `failing` makes the
/// n-th reset fail for each n it holds, and `panicking` panic.
#[derive(Clone, Default)]
struct Sessions {
    opened: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    resets: Arc<AtomicUsize>,
    failing: Arc<Vec<usize>>,
    panicking: Arc<Vec<usize>>,
}

impl Sessions {
    fn open(&self) -> SqlSession {
        self.live.fetch_add(1, Ordering::SeqCst);
        SqlSession {
            number: self.opened.fetch_add(1, Ordering::SeqCst) + 1,
            marker: None,
            live: Arc::clone(&self.live),
        }
    }

    fn reset(&self, session: &mut SqlSession) -> Result<(), ResetRefused> {
        let nth = self.resets.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(!self.panicking.contains(&nth), "reset {nth} panics");
        if self.failing.contains(&nth) {
            return Err(ResetRefused);
        }
        session.marker = None;
        Ok(())
    }
}

impl blocking::Manager for Sessions {
    type Connection = SqlSession;
    type Error = ResetRefused;

    fn connect(&self) -> Result<SqlSession, ResetRefused> {
        Ok(self.open())
    }

    fn reset(&self, session: &mut SqlSession) -> Result<(), ResetRefused> {
        Sessions::reset(self, session)
    }
}

impl pinpool::tokio::Manager for Sessions {
    type Connection = SqlSession;
    type Error = ResetRefused;

    async fn connect(&self) -> Result<SqlSession, ResetRefused> {
        tokio::task::yield_now().await; // a connect is never instant
        Ok(self.open())
    }

    async fn reset(&self, session: &mut SqlSession) -> Result<(), ResetRefused> {
        tokio::task::yield_now().await; // nor is a reset
        Sessions::reset(self, session)
    }
}

/// Unique markers, one per owner.
static NEXT_MARKER: AtomicU64 = AtomicU64::new(1);

/// 1,000 threads, 20 at a time, over 4 connections: each checks out
/// three times and writes its marker. Returns how many checkouts saw
/// another thread's state, and the pool's state once all resets ended.
fn thousand_threads(pinning: Pinning, reset: Reset) -> (usize, PoolState, Sessions) {
    let manager = Sessions::default();
    let pool = Pool::builder()
        .max_size(4)
        .pinning(pinning)
        .reset(reset)
        .checkout_timeout(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    let mut foreign = 0;
    for _batch in 0..50 {
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let me = NEXT_MARKER.fetch_add(1, Ordering::Relaxed);
                    (0..3)
                        .filter(|&k| {
                            let mut session = pool.get().expect("checkout");
                            let seen = session.marker.replace(me);
                            seen != if k == 0 { None } else { Some(me) }
                        })
                        .count()
                })
            })
            .collect();
        foreign += threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>();
    }
    // Joined threads have run their thread-local destructors; the resets
    // they started run on threads of their own.
    wait_for_state(&pool, "the resets", |s| s.resetting == 0);
    let state = pool.state();
    (foreign, state, manager)
}

#[test]
fn a_thousand_short_lived_threads_never_see_another_threads_session() {
    let (foreign, state, manager) = thousand_threads(Pinning::Exclusive, Reset::OwnerChange);
    assert_eq!(foreign, 0, "a thread saw another's session: {state:?}");
    assert_eq!(state.pinned_owners, 0, "{state:?}");
    assert_eq!(state.counters.reclaimed_pins, 1000);
    assert_eq!(state.counters.checkouts, 3000);
    assert!(state.counters.opened <= 4, "{state:?}");
    // Every thread but the first on each connection found it reset once.
    let resets = manager.resets.load(Ordering::SeqCst) as u64;
    assert_eq!(resets, state.counters.resets);
    assert!(resets >= 1000 - 4, "{resets} resets for 1,000 owners");
    assert_eq!(state.counters.reset_failures, 0);
    assert_eq!(
        manager.live.load(Ordering::SeqCst),
        0,
        "the dropped pool closed every session"
    );
}

/// The control: shared pins without a reset leak sessions between
/// threads, so the test above can fail.
#[test]
fn shared_pins_without_a_reset_show_the_leak() {
    let (foreign, state, manager) = thousand_threads(Pinning::Strict, Reset::Never);
    assert!(foreign >= 1000 - 4, "only {foreign} leaks: {state:?}");
    assert_eq!(manager.resets.load(Ordering::SeqCst), 0);
}

#[test]
fn an_owner_waits_for_a_pin_and_the_timeout_error_says_so() {
    let pool = Pool::builder()
        .max_size(1)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_millis(50))
        .build(Sessions::default())
        .unwrap();
    // This thread's session holds the only connection's pin (not the
    // connection: it is parked). Its own patience: the connect may take
    // longer than the pool's 50 ms on a loaded machine.
    drop(pool.get_timeout(Duration::from_secs(20)).unwrap());
    let error = thread::scope(|s| s.spawn(|| pool.get().map(|_| ())).join().unwrap())
        .expect_err("the only connection is another thread's session");
    let Error::Timeout { state, .. } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!(
        (state.waiting_for_pin, state.pinned_owners),
        (1, 1),
        "{state:?}"
    );
    // Parked in its owner's lease, which the waiter's checkout left alone
    // (it could not use that connection): in use as the core sees it.
    assert_eq!(state.in_use, 1, "not shared: {state:?}");
    assert!(
        error
            .to_string()
            .contains("1 waiting (1 for a pin), 1 pinned owners"),
        "{error}"
    );
}

#[test]
fn a_session_moves_between_threads_and_its_drop_hands_the_connection_on_clean() {
    let manager = Sessions::default();
    let pool = Pool::builder()
        .max_size(1)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    let mut session = pool.session();
    session.get().unwrap().marker = Some(7);
    // Another thread waits for the only pin.
    let (seen_tx, seen) = mpsc::channel();
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || {
            let conn = pool.get().expect("the pin, once the session ends");
            seen_tx
                .send((PooledConnection::id(&conn), conn.marker))
                .unwrap();
        })
    };
    wait_for_state(&pool, "an owner waiting for a pin", |s| {
        s.waiting_for_pin == 1
    });
    // The session, moved to another thread, still has its state.
    let (session, marker) = thread::spawn(move || {
        let marker = session.get().unwrap().marker;
        (session, marker)
    })
    .join()
    .unwrap();
    assert_eq!(marker, Some(7), "the session's own connection");
    assert_eq!(pool.status().waiting_for_pin, 1, "still waiting");
    drop(session);
    let (_, marker) = seen.recv().unwrap();
    assert_eq!(marker, None, "reset before the next owner");
    waiter.join().unwrap();
    // The waiter's thread exited too: its session was reset in turn.
    wait_for_state(&pool, "the resets", |s| s.resetting == 0);
    assert_eq!(manager.resets.load(Ordering::SeqCst), 2);
}

#[test]
fn a_failing_or_panicking_reset_closes_the_connection() {
    for panics in [false, true] {
        let manager = Sessions {
            failing: Arc::new(if panics { vec![] } else { vec![1] }),
            panicking: Arc::new(if panics { vec![1] } else { vec![] }),
            ..Sessions::default()
        };
        let closed = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&closed);
        let pool = Pool::builder()
            .max_size(1)
            .pinning(Pinning::Exclusive)
            .event_handler(move |event: &Event| {
                if let Some(reason) = reason_of(event) {
                    log.lock().unwrap().push(reason);
                }
            })
            .build(manager.clone())
            .unwrap();
        let mut first = pool.session();
        let first_conn = {
            let mut conn = first.get().unwrap();
            conn.marker = Some(1);
            conn.number
        };
        drop(first); // the reset fails (or panics): the connection closes
        let mut second = pool.session();
        let conn = second.get().unwrap();
        assert_ne!(
            conn.number, first_conn,
            "panics: {panics}: a fresh connection"
        );
        assert_eq!(conn.marker, None);
        drop(conn);
        let state = pool.state();
        assert_eq!(state.counters.reset_failures, 1, "{state:?}");
        assert_eq!(state.counters.closed, 1, "{state:?}");
        // Dropped on a `pinpool-close` thread, as every broken connection.
        wait_until("the failed one to be dropped", || {
            manager.live.load(Ordering::SeqCst) == 1
        });
        assert!(
            closed
                .lock()
                .unwrap()
                .contains(&Some(CloseReason::ResetFailed)),
            "{:?}",
            closed.lock().unwrap()
        );
    }
}

/// The close reason an event reports, `None` for a reset.
fn reason_of(event: &Event) -> Option<Option<CloseReason>> {
    match event {
        Event::ConnectionClosed { reason, .. } => Some(Some(*reason)),
        Event::ConnectionReset { .. } => Some(None),
        _ => None,
    }
}

#[test]
fn every_unpinned_checkin_can_be_reset() {
    let manager = Sessions::default();
    let pool = Pool::builder()
        .pinning(Pinning::Off)
        .reset(Reset::EveryUnpinnedCheckin)
        .build(manager.clone())
        .unwrap();
    for n in 0..10 {
        let mut conn = pool.get().unwrap();
        assert_eq!(conn.marker, None, "checkout {n} saw the last one's state");
        conn.marker = Some(n);
    }
    assert_eq!(manager.resets.load(Ordering::SeqCst), 10);
    assert_eq!(pool.state().counters.resets, 10);
}

/// 4,000 pinned scopes over 4 exclusive connections on a multi-thread
/// runtime, a quarter of them cancelled part-way (at their checkout, or
/// while holding): no scope ever sees another's session state, and
/// afterwards nothing is pinned, waiting or lost.
#[test]
fn four_thousand_scopes_never_see_another_scopes_session() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let manager = Sessions::default();
    let foreign = Arc::new(AtomicUsize::new(0));
    let pool = pinpool::tokio::Pool::builder()
        .max_size(4)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..4_000)
            .map(|i| {
                let (pool, foreign) = (pool.clone(), Arc::clone(&foreign));
                tokio::spawn(async move {
                    let work = pool.pinned(async {
                        let me = NEXT_MARKER.fetch_add(1, Ordering::Relaxed);
                        for k in 0..2 {
                            let mut conn = pool.get().await.expect("checkout");
                            let seen = conn.marker.replace(me);
                            if seen != if k == 0 { None } else { Some(me) } {
                                foreign.fetch_add(1, Ordering::SeqCst);
                            }
                            tokio::task::yield_now().await; // held across an await
                        }
                    });
                    if i % 4 == 0 {
                        // Cancelled once it has been polled a little.
                        let _ = tokio::time::timeout(Duration::from_micros(1), work).await;
                    } else {
                        work.await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let state = wait_for_state(&pool, "the resets", |s| {
        s.resetting == 0 && s.connecting == 0
    });
    drop(runtime);
    assert_eq!(foreign.load(Ordering::SeqCst), 0, "{state:?}");
    assert_eq!((state.pinned_owners, state.waiting), (0, 0), "{state:?}");
    assert!(state.counters.opened <= 4, "{state:?}");
    let resets = manager.resets.load(Ordering::SeqCst) as u64;
    assert_eq!(resets, state.counters.resets);
    assert!(resets > 1000, "{resets} resets");
    let c = state.counters;
    assert_eq!(
        c.opened,
        (state.idle + state.in_use + state.resetting) as u64 + c.closed + c.connect_failures,
        "conservation: {state:?}"
    );
    assert_eq!(manager.live.load(Ordering::SeqCst), state.idle);
}

/// The async pool's reset runs in a task: one that fails, or panics (the
/// task unwinds, and its report, dropped, tells the core), closes the
/// connection, and the next scope gets a fresh, clean one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_reset_that_fails_or_panics_closes_the_connection() {
    for panics in [false, true] {
        let manager = Sessions {
            failing: Arc::new(if panics { vec![] } else { vec![1] }),
            panicking: Arc::new(if panics { vec![1] } else { vec![] }),
            ..Sessions::default()
        };
        let pool = pinpool::tokio::Pool::builder()
            .max_size(1)
            .pinning(Pinning::Exclusive)
            .build(manager.clone())
            .unwrap();
        let first = pool
            .pinned(async {
                let mut conn = pool.get().await.unwrap();
                conn.marker = Some(1);
                conn.number
            })
            .await;
        let (number, marker) = pool
            .pinned(async {
                let conn = pool.get().await.expect("a fresh connection");
                (conn.number, conn.marker)
            })
            .await;
        assert_ne!(number, first, "panics: {panics}");
        assert_eq!(marker, None);
        let state = pool.state();
        assert_eq!(state.counters.reset_failures, 1, "{state:?}");
        assert_eq!(state.counters.closed, 1, "{state:?}");
    }
}

#[test]
fn a_shrink_waits_for_sessions_to_end_and_closes_their_connections_unreset() {
    let manager = Sessions::default();
    let pool = Pool::builder()
        .max_size(3)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    let mut sessions: Vec<_> = (0..3).map(|_| pool.session()).collect();
    for session in &mut sessions {
        session.get().unwrap().marker = Some(1);
    }
    pool.resize(1).unwrap();
    let state = pool.state();
    assert_eq!(
        (state.total(), state.idle),
        (3, 3),
        "sessions keep theirs: {state:?}"
    );
    // A new owner waits for a pin: none is released while above the size.
    let (started, waiting) = mpsc::channel();
    let newcomer = {
        let pool = pool.clone();
        thread::spawn(move || {
            let mut session = pool.session();
            started.send(()).unwrap();
            PooledConnection::id(&session.get().unwrap())
        })
    };
    waiting.recv().unwrap();
    wait_for_state(&pool, "the newcomer waiting", |s| s.waiting_for_pin == 1);
    let mut last = sessions.pop().unwrap();
    let kept = PooledConnection::id(&last.get().unwrap());
    drop(sessions); // two sessions end: their connections close, unreset
    let state = wait_for_state(&pool, "the shrink", |s| s.total() == 1);
    assert_eq!(
        state.counters.resets, 0,
        "surplus is closed, not reset: {state:?}"
    );
    assert_eq!(
        state.waiting_for_pin, 1,
        "still the last session's: {state:?}"
    );
    drop(last); // within size: reset, then handed to the newcomer
    let granted = newcomer.join().unwrap();
    assert_eq!(granted, kept, "the connection left is the last session's");
    // One reset per owner change: the last session's, and the newcomer's.
    let state = wait_for_state(&pool, "the resets", |s| s.counters.resets == 2);
    assert_eq!((state.total(), state.counters.closed), (1, 2), "{state:?}");
    assert_eq!(manager.live.load(Ordering::SeqCst), 1);
}

//! Lifecycle on both pools: clear / ready / start paused, lifetimes, idle
//! reaping by the maintenance worker, and events in the core's order.
//!
//! Time-based tests run the async pool on Tokio's paused clock, so they
//! are exact; the blocking pool's maintenance thread is observed through
//! the events it delivers, never by sleeping.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pinpool::Error;
use pinpool::core::{CloseReason, Event, Pinning};
use support::{TestManager, assert_conserved};

/// An event, with the name of the thread that delivered it.
type Seen = (Event, Option<String>);

/// Collects every event; a channel reports each as it arrives.
fn recorder() -> (
    impl Fn(&Event) + Send + Sync + 'static,
    mpsc::Receiver<Seen>,
) {
    let (send, events) = mpsc::channel();
    let send = Mutex::new(send);
    let handler = move |event: &Event| {
        let thread = thread::current().name().map(str::to_owned);
        let _ = send.lock().unwrap().send((*event, thread));
    };
    (handler, events)
}

/// How many connections `events` says were closed for their lifetime
/// since it was last read.
#[cfg(feature = "tokio")]
fn lifetime_closes(events: &mpsc::Receiver<Seen>) -> usize {
    events
        .try_iter()
        .filter(|(event, _)| {
            matches!(
                event,
                Event::ConnectionClosed {
                    reason: CloseReason::Lifetime,
                    ..
                }
            )
        })
        .count()
}

/// Waits (up to 20 s) for the first event `wanted` accepts.
fn wait_event(events: &mpsc::Receiver<Seen>, wanted: impl Fn(&Event) -> bool) -> Seen {
    loop {
        let got = events
            .recv_timeout(Duration::from_secs(20))
            .expect("the awaited event never came");
        if wanted(&got.0) {
            return got;
        }
    }
}

mod blocking {
    use super::*;
    use pinpool::blocking::{Pool, PooledConnection};

    #[test]
    fn clear_fails_waiters_pauses_and_ready_resumes_with_fresh_connections() {
        let manager = TestManager::default();
        let pool = Pool::builder().max_size(1).build(manager.clone()).unwrap();
        let held = pool.get().unwrap();
        let first = PooledConnection::id(&held);
        thread::scope(|s| {
            let waiter = s.spawn(|| pool.get().map(|c| PooledConnection::id(&c)));
            support::wait_for_state(&pool, "a waiter", |state| state.waiting == 1);
            pool.clear();
            assert!(matches!(waiter.join().unwrap(), Err(Error::Paused)));
        });
        assert!(
            matches!(pool.get(), Err(Error::Paused)),
            "paused until ready"
        );
        drop(held); // stale: closed on return
        pool.ready();
        let conn = pool.get().unwrap();
        assert_ne!(PooledConnection::id(&conn), first, "a fresh connection");
        drop(conn);
        let state = assert_conserved(&pool, &manager.tally);
        assert_eq!(state.counters.closed, 1);
        assert_eq!(state.generation, 1);
    }

    #[test]
    fn a_pool_built_paused_opens_nothing_until_ready() {
        let manager = TestManager::default();
        let pool = Pool::builder()
            .min_size(2)
            .start_paused(true)
            .build(manager.clone())
            .unwrap();
        assert_eq!(pool.state().total(), 0);
        assert!(matches!(pool.get(), Err(Error::Paused)));
        pool.ready();
        support::wait_for_state(&pool, "min_size", |state| state.idle == 2);
        drop(pool.get().unwrap());
    }

    #[test]
    fn the_maintenance_thread_reaps_idle_connections_down_to_min_size() {
        let manager = TestManager::default();
        let (handler, events) = recorder();
        let pool = Pool::builder()
            .max_size(3)
            .min_size(1)
            .pinning(Pinning::Off)
            .idle_timeout(Duration::from_millis(20))
            .maintenance_interval(Duration::from_millis(5))
            .event_handler(handler)
            .build(manager.clone())
            .unwrap();
        {
            // Three connections at once, then all idle.
            let _held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
        }
        for _ in 0..2 {
            let (event, thread) = wait_event(&events, |event| {
                matches!(event, Event::ConnectionClosed { .. })
            });
            assert!(
                matches!(
                    event,
                    Event::ConnectionClosed {
                        reason: CloseReason::Idle,
                        ..
                    }
                ),
                "{event:?}"
            );
            assert_eq!(thread.as_deref(), Some("pinpool-maintenance"));
        }
        let state = assert_conserved(&pool, &manager.tally);
        assert_eq!(state.idle, 1, "min_size is kept: {state:?}");
    }

    #[test]
    fn events_arrive_in_the_core_order_when_get_returns() {
        let (handler, events) = recorder();
        let pool = Pool::builder()
            .event_handler(handler)
            .build(TestManager::default())
            .unwrap();
        drop(pool.get().unwrap());
        let kinds: Vec<_> = events.try_iter().map(|(event, _)| event).collect();
        let conn = pinpool::core::ConnId(1);
        assert!(matches!(kinds[0], Event::PoolCreated(_)));
        assert!(matches!(kinds[1], Event::CheckoutStarted { .. }));
        assert!(
            kinds
                .iter()
                .any(|e| matches!(e, Event::CheckedOut { conn: c, .. } if *c == conn)),
            "delivered before get() returned: {kinds:?}"
        );
        assert!(matches!(kinds.last(), Some(Event::CheckedIn { .. })));
    }

    #[test]
    fn an_event_handler_may_use_the_pool_and_may_panic() {
        let pool_slot: Arc<Mutex<Option<Pool<TestManager>>>> = Arc::default();
        let inner = Arc::clone(&pool_slot);
        let pool = Pool::builder()
            .event_handler(move |event| {
                if let Event::PoolReady = event
                    && let Some(pool) = inner.lock().unwrap().as_ref()
                {
                    let _ = pool.state(); // re-enters the pool
                }
                if let Event::CheckedIn { .. } = event {
                    panic!("a handler bug");
                }
            })
            .start_paused(true)
            .build(TestManager::default())
            .unwrap();
        *pool_slot.lock().unwrap() = Some(pool.clone());
        pool.ready();
        drop(pool.get().unwrap());
        assert_eq!(pool.state().counters.checkins, 1, "the pool survived");
        *pool_slot.lock().unwrap() = None;
    }

    #[test]
    fn a_pinned_threads_connection_is_replaced_past_its_lifetime() {
        let (handler, events) = recorder();
        let pool = Pool::builder()
            .max_lifetime(Duration::from_millis(30))
            .maintenance_interval(Duration::from_millis(5))
            .event_handler(handler)
            .build(TestManager::default())
            .unwrap();
        let first = PooledConnection::id(&pool.get().unwrap());
        // The maintenance thread closes it once it outlives 30 ms.
        wait_event(
            &events,
            |event| matches!(event, Event::ConnectionClosed { reason: CloseReason::Lifetime, conn } if *conn == first),
        );
        let second = PooledConnection::id(&pool.get().unwrap());
        assert_ne!(second, first);
        let state = pool.state();
        assert_eq!(state.pinned_owners, 1, "the pin moved to the replacement");
        // (On a loaded machine the replacement may itself have outlived
        // 30 ms and been replaced by now: the pin follows each.)
        let [(pinned, 1)] = state.pins[..] else {
            panic!("one connection, one pin: {state:?}")
        };
        assert!(pinned >= second, "{state:?}");
    }

    /// A graceful shutdown waits for the connections still checked out,
    /// and returns at once when nothing is left; the pool's own idle and
    /// leased connections close as it starts.
    #[test]
    fn close_and_wait_returns_once_every_checked_out_connection_is_back() {
        let manager = TestManager::default();
        let pool = Pool::builder().max_size(3).build(manager.clone()).unwrap();
        drop(pool.get().unwrap()); // parked in this thread's lease
        let (holding, held) = mpsc::channel();
        let (finish, finishes): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel::<()>()).unzip();
        thread::scope(|s| {
            for finished in finishes {
                let (pool, holding) = (&pool, holding.clone());
                s.spawn(move || {
                    let conn = pool.get().unwrap();
                    holding.send(()).unwrap();
                    let _ = finished.recv(); // its work done (or the test failed)
                    drop(conn);
                });
            }
            held.iter().take(2).for_each(drop);
            // Moved in: should an assertion fail, its drop lets the
            // holders go, and the scope does not hang on them.
            let finish = finish;
            assert!(!pool.close_and_wait(Duration::ZERO), "two still out");
            assert_eq!(manager.tally.live.load(SeqCst), 2, "the leased one closed");
            // One thread waits as the holders finish, whether or not it
            // has started waiting by then.
            let waiting = s.spawn(|| pool.close_and_wait(Duration::from_secs(60)));
            drop(finish);
            assert!(waiting.join().unwrap());
            assert_eq!(
                manager.tally.live.load(SeqCst),
                0,
                "every connection closed"
            );
        });
        assert!(pool.close_and_wait(Duration::ZERO), "and stays so");
        let state = pool.state();
        assert_eq!((state.total(), state.counters.closed), (0, 3), "{state:?}");
    }

    /// A connection's drop that takes a while: a broken one's on a thread
    /// of its own, or one on the thread that returned it while another
    /// empties the pool. Either way the pool has not shut down until the
    /// drop has ended.
    #[test]
    fn close_and_wait_waits_for_drops_under_way() {
        for broken in [true, false] {
            let (manager, dropping, finish) = SlowFirstDrop::new();
            let pool = Pool::builder()
                .max_size(2)
                .pinning(Pinning::Off)
                .build(manager)
                .unwrap();
            let (mut slow, quick) = (pool.get_owned().unwrap(), pool.get_owned().unwrap());
            slow.broken = broken;
            pool.close();
            thread::scope(move |s| {
                // `finish` moved in: should an assertion fail, its drop
                // ends the slow drop, and the scope does not hang on it.
                s.spawn(|| drop(slow));
                dropping.recv().unwrap(); // its drop has begun
                drop(quick); // the pool's last connection
                assert!(
                    !pool.close_and_wait(Duration::ZERO),
                    "a drop under way (broken: {broken})"
                );
                finish.send(()).unwrap();
                assert!(pool.close_and_wait(Duration::from_secs(60)));
            });
        }
    }
}

/// A manager whose first connection's drop says it has begun, then waits
/// until the test lets it end.
struct SlowFirstDrop(Mutex<Option<Gate>>);

/// The drop's signal that it has begun, and the wait for its end.
type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);

impl SlowFirstDrop {
    /// The manager, where its first connection's drop says it has begun,
    /// and how to let that drop end.
    fn new() -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (began, dropping) = mpsc::channel();
        let (finish, ends) = mpsc::channel();
        (
            SlowFirstDrop(Mutex::new(Some((began, ends)))),
            dropping,
            finish,
        )
    }
}

/// A connection that may be marked broken, and whose drop may be slow.
struct Gated {
    broken: bool,
    gate: Option<Gate>,
}

impl Drop for Gated {
    fn drop(&mut self) {
        if let Some((began, ends)) = self.gate.take() {
            let _ = began.send(());
            let _ = ends.recv(); // (or the test ended)
        }
    }
}

impl pinpool::blocking::Manager for SlowFirstDrop {
    type Connection = Gated;
    type Error = std::io::Error;

    fn connect(&self) -> std::io::Result<Gated> {
        let gate = self.0.lock().unwrap().take();
        Ok(Gated {
            broken: false,
            gate,
        })
    }

    fn has_broken(&self, conn: &mut Gated) -> bool {
        conn.broken
    }
}

/// Connects in flight now, the most at once, and all so far.
#[derive(Default)]
struct Gauge {
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicUsize,
}

/// A manager whose connects take a while, measured by its gauge.
struct SlowConnects(Arc<Gauge>);

impl pinpool::blocking::Manager for SlowConnects {
    type Connection = ();
    type Error = std::io::Error;

    fn connect(&self) -> std::io::Result<()> {
        let gauge = &self.0;
        let now = gauge.in_flight.fetch_add(1, SeqCst) + 1;
        gauge.most.fetch_max(now, SeqCst);
        gauge.total.fetch_add(1, SeqCst);
        thread::sleep(Duration::from_millis(2)); // the handshake's latency
        gauge.in_flight.fetch_sub(1, SeqCst);
        Ok(())
    }
}

/// After a clear (a server restart, say) every thread wants a connection
/// at once: the reconnects still go through `max_connecting`.
#[test]
fn reconnects_after_a_clear_respect_max_connecting() {
    let manager = Arc::new(Gauge::default());
    let pool = pinpool::blocking::Pool::builder()
        .max_size(16)
        .max_connecting(2)
        .build(SlowConnects(Arc::clone(&manager)))
        .unwrap();
    // Sixteen threads each hold a connection at once: sixteen connects.
    let storm = || {
        let all_hold = std::sync::Barrier::new(16);
        thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    let conn = pool.get().unwrap();
                    all_hold.wait();
                    drop(conn);
                });
            }
        });
    };
    storm();
    assert_eq!(manager.total.load(SeqCst), 16);
    pool.clear();
    pool.ready();
    storm();
    assert_eq!(manager.total.load(SeqCst), 32, "every connection replaced");
    let most = manager.most.load(SeqCst);
    assert!((1..=2).contains(&most), "{most} connects at once");
}

#[cfg(feature = "tokio")]
mod tokio_pool {
    use super::*;
    use pinpool::tokio::{Pool, PooledConnection};
    use tokio::time::advance;

    #[tokio::test(start_paused = true)]
    async fn lifetimes_and_idle_timeouts_follow_the_paused_clock() {
        let (handler, events) = recorder();
        let pool = Pool::builder()
            .max_size(2)
            .pinning(Pinning::Off)
            .max_lifetime(Duration::from_secs(60))
            .idle_timeout(Duration::from_secs(10))
            .maintenance_interval(Duration::from_secs(1))
            .event_handler(handler)
            .build(TestManager::default())
            .unwrap();
        let a = pool.get().await.unwrap();
        let b = pool.get().await.unwrap();
        let b_id = PooledConnection::id(&b);
        drop(b);
        advance(Duration::from_millis(9_500)).await;
        drop(a); // a has been idle 0 s, b 9.5 s
        advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        let closed: Vec<_> = events
            .try_iter()
            .filter_map(|(event, _)| match event {
                Event::ConnectionClosed { conn, reason } => Some((conn, reason)),
                _ => None,
            })
            .collect();
        assert_eq!(closed, vec![(b_id, CloseReason::Idle)], "only b idled 10 s");
        // a is checked out and returned every 5 s: it never idles 10 s,
        // but it cannot outlive 60 s.
        for _ in 0..12 {
            drop(pool.get().await.unwrap());
            advance(Duration::from_secs(5)).await;
        }
        let reasons: Vec<_> = events
            .try_iter()
            .filter_map(|(event, _)| match event {
                Event::ConnectionClosed { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, vec![CloseReason::Lifetime]);
    }

    #[tokio::test]
    async fn clear_and_ready_on_the_async_pool() {
        let pool = Pool::builder()
            .max_size(1)
            .build(TestManager::default())
            .unwrap();
        let held = pool.get().await.unwrap();
        let first = PooledConnection::id(&held);
        let waiting = pool.get();
        tokio::pin!(waiting);
        assert!(futures_poll_once(&mut waiting).await.is_none());
        pool.clear();
        assert!(matches!(waiting.await, Err(Error::Paused)));
        drop(held);
        pool.ready();
        let conn = pool.get().await.unwrap();
        assert_ne!(PooledConnection::id(&conn), first);
    }

    /// A connection leased to a pinned scope (or stashed for unpinned
    /// checkouts) is checked against its lifetime as the fast path takes
    /// it: past it, the checkout goes through the core, which closes it and
    /// opens a replacement. It used to be served for ever by the lease
    /// when maintenance never ran.
    #[tokio::test(start_paused = true)]
    async fn a_leased_connection_past_its_lifetime_is_replaced_without_maintenance() {
        for pinned in [true, false] {
            let pool = Pool::builder()
                .max_size(1)
                .max_lifetime(Duration::from_secs(60))
                .maintenance_interval(Duration::MAX)
                .build(TestManager::default())
                .unwrap();
            let ids = async {
                let mut ids = Vec::new();
                for wait in [0, 30, 31] {
                    advance(Duration::from_secs(wait)).await;
                    ids.push(PooledConnection::id(&pool.get().await.unwrap()));
                }
                ids
            };
            let ids = if pinned {
                pool.pinned(ids).await
            } else {
                ids.await
            };
            assert_eq!(
                ids[0], ids[1],
                "pinned {pinned}: reused within its lifetime"
            );
            assert_ne!(ids[1], ids[2], "pinned {pinned}: replaced past it");
            let counters = pool.state().counters;
            assert_eq!((counters.closed, counters.established), (1, 2));
            assert_eq!(
                counters.checkouts, 3,
                "pinned {pinned}: fast checkouts counted"
            );
        }
    }

    /// Maintenance runs when a deadline it knows of falls, not up to an
    /// interval later: a lifetime of 10.5 s with runs every second closes
    /// the idle connection at 10.5 s, where it used to wait for the run at
    /// 11 s.
    #[tokio::test(start_paused = true)]
    async fn maintenance_runs_when_a_deadline_falls_not_an_interval_later() {
        let (handler, events) = recorder();
        let pool = Pool::builder()
            .max_size(1)
            .max_lifetime(Duration::from_millis(10_500))
            .maintenance_interval(Duration::from_secs(1))
            .event_handler(handler)
            .build(TestManager::default())
            .unwrap();
        drop(pool.get().await.unwrap());
        for _ in 0..10 {
            advance(Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(lifetime_closes(&events), 0, "alive at 10 s");
        advance(Duration::from_millis(600)).await;
        tokio::task::yield_now().await;
        assert_eq!(lifetime_closes(&events), 1, "closed by 10.6 s");
    }

    /// Eight connections opened together at the start, a lifetime of 60 s:
    /// without a jitter all eight close in the same second, and the pool
    /// is left to reopen them all at once; with 8 s of jitter they close
    /// one a second from 52 s on (where in each second depends on the
    /// seed, fixed here). Either way `min_size` is kept.
    #[tokio::test(start_paused = true)]
    async fn a_lifetime_jitter_spreads_the_expiry_of_connections_opened_together() {
        for jitter in [Duration::ZERO, Duration::from_secs(8)] {
            let (handler, events) = recorder();
            let pool = Pool::builder()
                .max_size(8)
                .min_size(8)
                .max_connecting(8)
                .max_lifetime(Duration::from_secs(60))
                .max_lifetime_jitter(jitter)
                .seed(0)
                .maintenance_interval(Duration::from_secs(1))
                .event_handler(handler)
                .build(TestManager::default())
                .unwrap();
            drop(pool.get().await.unwrap());
            // The seconds in which each lifetime close fell.
            let mut closed_in = Vec::new();
            for second in 1..=61 {
                advance(Duration::from_secs(1)).await;
                tokio::task::yield_now().await;
                closed_in.extend(std::iter::repeat_n(second, lifetime_closes(&events)));
            }
            if jitter.is_zero() {
                assert_eq!(closed_in, vec![60; 8], "all at once");
            } else {
                assert_eq!(closed_in, (53..=60).collect::<Vec<_>>(), "one a second");
            }
            assert_eq!(pool.state().total(), 8, "min_size kept");
        }
    }

    /// A graceful shutdown waits for a connection still checked out and
    /// for a connect under way (whose connection, once it arrives, the
    /// closed pool closes), on Tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn close_and_wait_waits_for_checkouts_and_connects_under_way() {
        let manager = GatedConnects::default();
        let pool = Pool::builder()
            .max_size(2)
            .pinning(Pinning::Off)
            .build(manager.clone())
            .unwrap();
        manager.gate.add_permits(1);
        let held = pool.get().await.unwrap();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.get().await.map(drop) }
        });
        for _ in 0..100 {
            if pool.state().connecting == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.state().connecting, 1, "a connect under way");
        let waited = tokio::time::timeout(Duration::from_secs(1), pool.close_and_wait()).await;
        assert!(waited.is_err(), "still out: {}", pool.state());
        assert!(matches!(waiting.await.unwrap(), Err(Error::Closed)));
        drop(held);
        let waited = tokio::time::timeout(Duration::from_secs(1), pool.close_and_wait()).await;
        assert!(waited.is_err(), "the connect: {}", pool.state());
        manager.gate.add_permits(1); // it ends
        pool.close_and_wait().await;
        let tally = &manager.connections.tally;
        assert_eq!(tally.connects.load(SeqCst), 2);
        assert_eq!(tally.live.load(SeqCst), 0, "every connection closed");
    }

    /// Test connections, each connect waiting for a permit of `gate`.
    #[derive(Clone)]
    struct GatedConnects {
        connections: TestManager,
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Default for GatedConnects {
        fn default() -> Self {
            GatedConnects {
                connections: TestManager::default(),
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }
    }

    impl pinpool::tokio::Manager for GatedConnects {
        type Connection = support::TestConn;
        type Error = support::Refused;

        async fn connect(&self) -> Result<support::TestConn, support::Refused> {
            self.gate.acquire().await.unwrap().forget();
            pinpool::tokio::Manager::connect(&self.connections).await
        }
    }

    /// Polls `future` once: its output if it is ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(
        future: &mut F,
    ) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}

/// A connection that knows when it was interrupted.
struct Interruptible;

impl pinpool::blocking::Manager for Interruptible {
    type Connection = Arc<std::sync::atomic::AtomicBool>;
    type Error = std::io::Error;

    fn connect(&self) -> std::io::Result<Self::Connection> {
        Ok(Arc::default())
    }

    fn has_broken(&self, interrupted: &mut Self::Connection) -> bool {
        interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn interrupt_handle(&self, conn: &Self::Connection) -> Option<pinpool::InterruptHandle> {
        let flag = Arc::clone(conn);
        Some(pinpool::InterruptHandle::new(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        }))
    }
}

#[test]
fn clear_interrupting_interrupts_checked_out_connections_only() {
    let pool = pinpool::blocking::Pool::builder()
        .pinning(Pinning::Off)
        .build(Interruptible)
        .unwrap();
    let first = pool.get().unwrap(); // to be idle at the clear
    let idle = Arc::clone(&*first);
    let (holding, held) = mpsc::channel();
    let (go, gone) = mpsc::channel::<()>();
    thread::scope(|s| {
        let pool = &pool;
        let holder = s.spawn(move || {
            let conn = pool.get().unwrap();
            holding.send(Arc::clone(&*conn)).unwrap();
            // Bounded, so a failing test never hangs on it.
            let _ = gone.recv_timeout(Duration::from_secs(20));
            conn.load(SeqCst) // the holder sees its operation broken off
        });
        let busy = held.recv().unwrap();
        drop(first);
        assert!(!Arc::ptr_eq(&busy, &idle), "two connections");
        pool.clear_interrupting();
        go.send(()).unwrap();
        assert!(
            holder.join().unwrap(),
            "the checked-out one was interrupted"
        );
    });
    assert!(
        !idle.load(SeqCst),
        "an idle connection is closed, not interrupted"
    );
    let state = pool.state();
    assert_eq!(state.total(), 0, "both closed: {state}");
    assert_eq!(state.counters.closed, 2);
}

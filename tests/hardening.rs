//! Failure paths a review found no test reaching, each a hang, a lost
//! connection slot or a self-deadlock before its fix: a checkout that
//! outlives its owner, user code panicking while the pool carries out a
//! batch of its decisions, and event handlers that close the pool.
//!
//! Where a defect would hang, the test bounds the wait (a channel with a
//! generous timeout) only to fail instead of hanging: nothing here sleeps
//! to synchronise.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use pinpool::core::{Event, Pinning};
use pinpool::{Error, InterruptHandle};

/// How long a test waits before calling a defect a hang.
const HANG: Duration = Duration::from_secs(20);

/// Runs `work` on its own thread; `true` if it finished within [`HANG`].
fn finishes(work: impl FnOnce() + Send + 'static) -> bool {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        work();
        let _ = done.send(());
    });
    finished.recv_timeout(HANG).is_ok()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ------------------------------------------------ a checkout outlives its owner

/// A `get()` polled inside a pinned scope, then moved out of it while it
/// waits, outlives the scope. The scope's end fails it with `OwnerGone`
/// (it used to be forgotten by the core and left waiting for ever, its
/// driver entry leaked), and the connection it waited for goes to idle.
#[test]
#[allow(clippy::async_yields_async)] // the scope hands its pending get() out
fn a_get_that_outlives_its_scope_fails_with_owner_gone() {
    runtime().block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(1)
            .checkout_timeout(Duration::MAX)
            .build(|| async { Ok::<_, std::io::Error>(()) })
            .unwrap();
        let held = pool.get().await.unwrap(); // unpinned: the only connection
        let escaped = pool
            .pinned(async {
                let mut get = Box::pin(pool.get());
                let waiting = poll_fn(|cx| Poll::Ready(get.as_mut().poll(cx).is_pending())).await;
                assert!(waiting, "the scope's get() waits for the held connection");
                get
            })
            .await;
        // The scope has ended, and with it the owner its get() was for.
        let mut escaped = pin!(escaped);
        let outcome = poll_fn(|cx| Poll::Ready(escaped.as_mut().poll(cx))).await;
        assert!(
            matches!(outcome, Poll::Ready(Err(Error::OwnerGone))),
            "the orphaned get() must end with OwnerGone, not wait"
        );
        drop(held);
        let state = pool.state();
        assert_eq!((state.idle, state.waiting), (1, 0), "nobody waits for it");
        assert_eq!(state.pinned_owners, 0);
    });
}

// ------------------------------------------- user code panics inside a batch

/// Connections whose `Drop` panics (the first `panicking` of them), and
/// which report themselves broken at checkin.
struct Exploding {
    opened: AtomicUsize,
    panicking: usize,
}

struct Bomb {
    armed: bool,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            panic!("a connection's Drop panicked");
        }
    }
}

impl Exploding {
    fn connect(&self) -> Bomb {
        let number = self.opened.fetch_add(1, Ordering::SeqCst);
        Bomb {
            armed: number < self.panicking,
        }
    }
}

impl pinpool::blocking::Manager for Exploding {
    type Connection = Bomb;
    type Error = std::io::Error;
    fn connect(&self) -> std::io::Result<Bomb> {
        Ok(Exploding::connect(self))
    }
    fn has_broken(&self, _: &mut Bomb) -> bool {
        true
    }
}

impl pinpool::tokio::Manager for Exploding {
    type Connection = Bomb;
    type Error = std::io::Error;
    async fn connect(&self) -> std::io::Result<Bomb> {
        Ok(Exploding::connect(self))
    }
    fn has_broken(&self, _: &mut Bomb) -> bool {
        true
    }
}

/// A broken connection with a pinned owner is closed and its replacement
/// opened in one batch. A panic in its `Drop` used to unwind out of the
/// guard's drop before the open ran, leaving the replacement "connecting"
/// for ever and its owner timing out on every `get()`.
#[test]
fn a_panicking_connection_drop_neither_escapes_nor_strands_the_replacement() {
    let pool = pinpool::blocking::Pool::builder()
        .max_size(1)
        .pinning(Pinning::Strict)
        .checkout_timeout(HANG)
        .build(Exploding {
            opened: AtomicUsize::new(0),
            panicking: 1,
        })
        .unwrap();
    let first = pool.get().unwrap();
    drop(first); // broken: closed (its Drop panics) and replaced
    let second = pool.get().expect("the replacement opens");
    drop(second); // broken too: closed, and a third opens for the pin
    let counters = pool.state().counters;
    assert_eq!(counters.closed, 2, "both connections closed and counted");
    // The third may or may not be established by now.
    assert!(counters.established >= 2);
}

#[test]
fn a_panicking_connection_drop_is_contained_in_the_async_pool_too() {
    runtime().block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(1)
            .checkout_timeout(HANG)
            .build(Exploding {
                opened: AtomicUsize::new(0),
                panicking: 1,
            })
            .unwrap();
        pool.pinned(async {
            drop(pool.get().await.unwrap());
            drop(pool.get().await.expect("the replacement opens"));
        })
        .await;
        assert_eq!(pool.state().counters.closed, 2, "both closed and counted");
    });
}

/// A blocking manager whose `interrupt_handle` panics: the connect fails
/// with `ConnectPanicked` (it used to kill the connect thread before the
/// result was reported, stranding the slot and its `max_connecting` permit).
#[test]
fn a_panicking_interrupt_handle_fails_the_connect_instead_of_stranding_it() {
    struct NoHandle;
    impl pinpool::blocking::Manager for NoHandle {
        type Connection = ();
        type Error = std::io::Error;
        fn connect(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn interrupt_handle(&self, _: &()) -> Option<InterruptHandle> {
            panic!("interrupt_handle panicked")
        }
    }
    let pool = pinpool::blocking::Pool::builder()
        .max_size(1)
        .checkout_timeout(HANG)
        .build(NoHandle)
        .unwrap();
    assert!(matches!(pool.get(), Err(Error::ConnectPanicked)));
    let state = pool.state();
    assert_eq!(
        state.connecting + state.pending,
        0,
        "no slot left connecting"
    );
    assert_eq!(state.counters.connect_failures, 1);
}

/// A connection whose drop waits for its peer, as `postgres::Client`'s
/// does for the reply to a request it gave up on: over a link that
/// swallows traffic that wait never ends. Every connection is broken.
struct HangingDrops {
    /// Opened by the test; a drop waits for it (for up to [`HANG`]).
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    dropped: mpsc::Sender<()>,
}

struct Hangs(HangingDrops);

impl Drop for Hangs {
    fn drop(&mut self) {
        let (open, opened) = &*self.0.gate;
        let guard = open.lock().unwrap();
        let _unused = opened.wait_timeout_while(guard, HANG, |open| !*open);
        let _ = self.0.dropped.send(());
    }
}

impl pinpool::blocking::Manager for HangingDrops {
    type Connection = Hangs;
    type Error = std::io::Error;
    fn connect(&self) -> std::io::Result<Hangs> {
        Ok(Hangs(HangingDrops {
            gate: Arc::clone(&self.gate),
            dropped: self.dropped.clone(),
        }))
    }
    fn has_broken(&self, _: &mut Hangs) -> bool {
        true
    }
}

/// The checkin that finds a connection broken closes it, but its drop,
/// which may wait on the peer for ever, runs on a thread of its own: the
/// caller goes on, the replacement opens, and the drop ends when it can.
#[test]
fn a_broken_connection_whose_drop_hangs_holds_up_no_caller() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let (dropped, drops) = mpsc::channel();
    let pool = pinpool::blocking::Pool::builder()
        .max_size(1)
        .pinning(Pinning::Strict)
        .checkout_timeout(HANG)
        .build(HangingDrops {
            gate: Arc::clone(&gate),
            dropped,
        })
        .unwrap();
    let caller = pool.clone();
    assert!(
        finishes(move || {
            drop(caller.get().unwrap()); // broken: closed
            drop(caller.get().expect("the replacement opens"));
        }),
        "a checkin waited on a broken connection's drop"
    );
    assert_eq!(pool.state().counters.closed, 2, "both closed and counted");
    assert!(
        drops.try_recv().is_err(),
        "their drops still wait on the peer"
    );
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for _ in 0..2 {
        drops
            .recv_timeout(HANG)
            .expect("each drop ends once it can");
    }
}

// ------------------------------------------- event handlers that close the pool

/// An event handler that closes the pool it reports on, once, holding a
/// handle only until then (so the pool is not kept alive by its own
/// handler).
fn closing_handler<P: Send + 'static>(
    pool: &Arc<Mutex<Option<P>>>,
    on: impl Fn(&Event) -> bool + Send + Sync + 'static,
    close: impl Fn(&P) + Send + Sync + 'static,
) -> impl Fn(&Event) + Send + Sync + 'static {
    let pool = Arc::clone(pool);
    move |event| {
        if on(event) {
            let taken = pool.lock().unwrap().take();
            if let Some(pool) = taken {
                close(&pool);
            }
        }
    }
}

/// `close()` delivers `PoolClosed`; a handler closing the pool again from
/// there used to re-lock the async pool's maintenance mutex, which the
/// outer `close()` held across delivering events: a self-deadlock.
#[test]
fn an_async_handler_may_close_the_pool_from_inside_close() {
    assert!(finishes(|| {
        runtime().block_on(async {
            let slot = Arc::new(Mutex::new(None));
            let handler = closing_handler(
                &slot,
                |event| matches!(event, Event::PoolClosed),
                pinpool::tokio::Pool::close,
            );
            let pool = pinpool::tokio::Pool::builder()
                .idle_timeout(Duration::from_secs(60)) // a maintenance task
                .event_handler(handler)
                .build(|| async { Ok::<_, std::io::Error>(()) })
                .unwrap();
            *slot.lock().unwrap() = Some(pool.clone());
            drop(pool.get().await.unwrap()); // the runtime starts maintenance
            pool.close();
            assert!(matches!(pool.get().await, Err(Error::Closed)));
        });
    }));
}

/// A handler on this thread closes the blocking pool while its maintenance
/// thread waits to deliver the events of a run (events go out one thread
/// at a time). `close()` used to join the maintenance thread from inside
/// the handler: each waited on the other.
///
/// The handler first waits, on the core's state, until maintenance has
/// closed the connection just checked in (every idle connection expires at
/// once here): that run's thread is then on its way to deliver its event,
/// behind this one. If a run already began before the checkin and waits
/// to deliver, nothing more happens while the handler runs, so the wait is
/// bounded; the maintenance thread is then waiting all the same.
#[test]
fn a_blocking_handler_may_close_the_pool_while_maintenance_delivers() {
    assert!(finishes(|| {
        let slot: Arc<Mutex<Option<pinpool::blocking::Pool<_>>>> = Arc::new(Mutex::new(None));
        let armed = Arc::new(AtomicBool::new(false));
        let trigger = Arc::clone(&armed);
        let watched = Arc::clone(&slot);
        let handler = closing_handler(
            &slot,
            move |event| {
                if !matches!(event, Event::CheckedIn { .. })
                    || !trigger.swap(false, Ordering::SeqCst)
                {
                    return false;
                }
                let pool = watched.lock().unwrap().clone();
                let Some(pool) = pool else { return false };
                let give_up = Instant::now() + Duration::from_secs(5);
                while pool.state().idle > 0 && Instant::now() < give_up {
                    std::thread::yield_now();
                }
                true
            },
            pinpool::blocking::Pool::close,
        );
        let pool = pinpool::blocking::Pool::builder()
            .pinning(Pinning::Off)
            .idle_timeout(Duration::from_nanos(1))
            .maintenance_interval(pinpool::Builder::<()>::MIN_MAINTENANCE_INTERVAL)
            .event_handler(handler)
            .build(|| Ok::<_, std::io::Error>(()))
            .unwrap();
        *slot.lock().unwrap() = Some(pool.clone());
        let conn = pool.get().unwrap();
        armed.store(true, Ordering::SeqCst);
        drop(conn); // its checkin fires the handler
        assert!(matches!(pool.get(), Err(Error::Closed)));
    }));
}

// ------------------------------------------------- monitoring and the fast path

/// A metrics poller calling `status()` between a pinned owner's checkouts
/// leaves the owner on its lease: the parked connection reads as in use,
/// and the fast checkouts are counted only when `state()` ends the lease.
/// (`state()` ends every lease, so polling it sends each pinned owner's
/// next checkout through the pool lock.)
#[test]
fn polling_status_ends_no_lease() {
    let pool = pinpool::blocking::Pool::builder()
        .build(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    drop(pool.get().unwrap()); // through the core: leased, then parked
    for _ in 0..10 {
        let status = pool.status();
        assert_eq!((status.in_use, status.idle), (1, 0), "still leased");
        assert_eq!(status.counters.checkouts, 1, "fast checkouts not folded in");
        drop(pool.get().unwrap());
    }
    let state = pool.state();
    assert_eq!(
        (state.in_use, state.idle),
        (0, 1),
        "state() ended the lease"
    );
    assert_eq!(state.counters.checkouts, 11);
}

/// A metrics recorder whose every call panics while `armed`: user code the
/// pool calls under its lock, in the middle of an input.
#[cfg(feature = "metrics")]
mod panicking_recorder {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        SharedString, Unit,
    };

    #[derive(Clone, Default)]
    pub struct Recorder {
        pub armed: Arc<AtomicBool>,
    }

    impl Recorder {
        fn call(&self) {
            if self.armed.load(Ordering::SeqCst) {
                panic!("the recorder panicked");
            }
        }
    }

    impl CounterFn for Recorder {
        fn increment(&self, _: u64) {
            self.call();
        }
        fn absolute(&self, _: u64) {
            self.call();
        }
    }

    impl GaugeFn for Recorder {
        fn increment(&self, _: f64) {
            self.call();
        }
        fn decrement(&self, _: f64) {
            self.call();
        }
        fn set(&self, _: f64) {
            self.call();
        }
    }

    impl HistogramFn for Recorder {
        fn record(&self, _: f64) {
            self.call();
        }
    }

    impl metrics::Recorder for Recorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(self.clone()))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(self.clone()))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(self.clone()))
        }
    }
}

/// A checkin that hands its connection to a waiter, while the metrics
/// recorder panics: the panic must not unwind out of the checkin (a
/// guard's drop), nor take the waiter's wake-up with it. It used to strand
/// the waiter: its grant stored, its wake-up dropped, so it never ran to
/// collect it, and the connection stayed out for as long as its task
/// lived.
#[cfg(feature = "metrics")]
#[test]
fn a_panicking_metrics_recorder_strands_no_async_waiter() {
    let recorder = panicking_recorder::Recorder::default();
    runtime().block_on(async {
        let pool = metrics::with_local_recorder(&recorder, || {
            pinpool::tokio::Pool::builder()
                .max_size(1)
                .checkout_timeout(Duration::MAX)
                .build(|| async { Ok::<_, std::io::Error>(()) })
        })
        .unwrap();
        let held = pool.get().await.unwrap();
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.get().await.map(drop) }
        });
        while pool.status().waiting == 0 {
            tokio::task::yield_now().await;
        }
        recorder.armed.store(true, Ordering::SeqCst);
        let checkin = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(held)));
        let served = tokio::time::timeout(HANG, waiter).await;
        assert!(matches!(served, Ok(Ok(Ok(())))), "the waiter was stranded");
        assert!(checkin.is_ok(), "the recorder's panic escaped the checkin");
        recorder.armed.store(false, Ordering::SeqCst);
        let state = pool.state();
        assert_eq!((state.idle, state.in_use, state.waiting), (1, 0, 0));
    });
}

/// The same in the blocking pool: a waiting thread handed the connection
/// is woken (before, it slept to its deadline).
#[cfg(feature = "metrics")]
#[test]
fn a_panicking_metrics_recorder_strands_no_blocking_waiter() {
    let recorder = panicking_recorder::Recorder::default();
    let pool = metrics::with_local_recorder(&recorder, || {
        pinpool::blocking::Pool::builder()
            .max_size(1)
            .pinning(Pinning::Off)
            .checkout_timeout(Duration::from_secs(3600))
            .build(|| Ok::<_, std::io::Error>(()))
    })
    .unwrap();
    let held = pool.get().unwrap();
    let (served, serving) = mpsc::channel();
    std::thread::spawn({
        let pool = pool.clone();
        move || {
            drop(pool.get().unwrap());
            let _ = served.send(());
        }
    });
    while pool.status().waiting == 0 {
        std::thread::yield_now();
    }
    recorder.armed.store(true, Ordering::SeqCst);
    let checkin = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(held)));
    assert!(
        serving.recv_timeout(HANG).is_ok(),
        "the waiter was stranded"
    );
    assert!(checkin.is_ok(), "the recorder's panic escaped the checkin");
    recorder.armed.store(false, Ordering::SeqCst);
    let state = pool.state();
    assert_eq!((state.idle, state.in_use, state.waiting), (1, 0, 0));
}

// ------------------------------------------------------ a connect that hangs

/// Its first connect hangs until the test releases it; the others return
/// at once. Each connection reports its close on `closed`.
struct Hanging {
    release: Mutex<mpsc::Receiver<()>>,
    closed: Mutex<mpsc::Sender<usize>>,
    calls: AtomicUsize,
}

struct Reporting {
    number: usize,
    closed: mpsc::Sender<usize>,
}

impl Drop for Reporting {
    fn drop(&mut self) {
        let _ = self.closed.send(self.number);
    }
}

impl pinpool::blocking::Manager for Hanging {
    type Connection = Reporting;
    type Error = std::io::Error;
    fn connect(&self) -> std::io::Result<Reporting> {
        let number = self.calls.fetch_add(1, Ordering::SeqCst);
        if number == 0 {
            let _ = self.release.lock().unwrap().recv();
        }
        let closed = self.closed.lock().unwrap().clone();
        Ok(Reporting { number, closed })
    }
}

/// A connect that hangs used to hold its `max_connecting` permit, and its
/// checkout, for ever. With `connect_timeout` the core gives it up: the
/// checkout fails with `ConnectTimeout`, the next connect runs at once, and
/// the hung connection, when it arrives after all, is closed.
#[test]
fn a_hung_connect_is_given_up_and_its_late_connection_closed() {
    let (release, released) = mpsc::channel();
    let (closes, closed) = mpsc::channel();
    let pool = pinpool::blocking::Pool::builder()
        .max_size(1)
        .max_connecting(1)
        .pinning(Pinning::Off)
        // Long enough for the second connect (which returns at once) on
        // a loaded machine: 50 ms was not, beside three busy loops.
        .connect_timeout(Duration::from_millis(500))
        .maintenance_interval(Duration::from_millis(5))
        .checkout_timeout(HANG)
        .build(Hanging {
            release: Mutex::new(released),
            closed: Mutex::new(closes),
            calls: AtomicUsize::new(0),
        })
        .unwrap();
    assert!(matches!(pool.get(), Err(Error::ConnectTimeout)));
    let state = pool.state();
    assert_eq!(state.connecting, 0, "its permit is free: {state:?}");
    let conn = pool.get().expect("the next connect runs at once");
    assert_eq!(conn.number, 1);
    release.send(()).unwrap();
    assert_eq!(
        closed.recv_timeout(HANG),
        Ok(0),
        "the late connection is closed"
    );
    drop(conn);
    let counters = pool.state().counters;
    assert_eq!((counters.connect_failures, counters.established), (1, 1));
}

/// The same on the async pool, on Tokio's paused clock: a connect that
/// never finishes is given up at its deadline.
#[test]
fn an_async_connect_that_never_finishes_is_given_up() {
    struct Never(AtomicUsize);
    impl pinpool::tokio::Manager for Never {
        type Connection = ();
        type Error = std::io::Error;
        async fn connect(&self) -> std::io::Result<()> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(1)
            .pinning(Pinning::Off)
            .connect_timeout(Duration::from_secs(5))
            .checkout_timeout(Duration::from_secs(60))
            .build(Never(AtomicUsize::new(0)))
            .unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(pool.get().await, Err(Error::ConnectTimeout)));
        let after = started.elapsed();
        assert!(
            after >= Duration::from_secs(5) && after < Duration::from_secs(6),
            "given up at its deadline, not a maintenance interval later: {after:?}"
        );
        drop(pool.get().await.expect("the next connect runs at once"));
    });
}

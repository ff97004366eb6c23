//! loom model checks of the real pools (`src/blocking` and, for the async
//! models, `src/tokio`), built with `--cfg pinpool_loom` so their locks,
//! atomics (the lease cells' `AtomicPtr` too), parking, wakers and
//! thread-locals are loom's. Each model is small — at most four threads
//! including the main one — and every interleaving loom explores (up to
//! the preemption bound in `LOOM_MAX_PREEMPTIONS`, or the model's own)
//! must pass.
//!
//! Run: `bash loom-tests/run.sh` (release mode, preemption bound 3).
//! `python3 loom-tests/mutants.py` shows each model failing on the
//! mutation docs/model-checking.md names for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::sync::Arc as LoomArc;
use loom::sync::atomic::AtomicBool;
use loom::thread;
use pinpool::Error;
use pinpool::blocking::{Manager, Pool, PooledConnection};
use pinpool::core::{Pinning, PoolState, Reset, WakePolicy};

/// Counts the connections it opens (the connection is its number).
#[derive(Default)]
struct Counting(Arc<AtomicUsize>);

impl Manager for Counting {
    type Connection = usize;
    type Error = std::io::Error;
    fn connect(&self) -> Result<usize, std::io::Error> {
        Ok(self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// What a model's user code panics with on purpose.
const USER_PANIC: &str = "the user's code failed";

/// Runs user code that panics, caught as a thread's own code would catch
/// it. The panic is not reported: once per interleaving, the default
/// report was three quarters of CI's log. Every other panic still is
/// (the models run one at a time, `run.sh`).
fn user_code_panics() -> std::thread::Result<()> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&USER_PANIC) {
                report(info);
            }
        }));
    });
    std::panic::catch_unwind(|| std::panic::panic_any(USER_PANIC))
}

/// The policy for models about something else than waking. The default,
/// `Eventual`, decides partly by the wall clock, which loom does not control (a
/// model must run the same way each time it replays a schedule); the
/// driver code it runs — wake the oldest waiter, or grant — is Bounded's,
/// checked in model 1.
const DETERMINISTIC: WakePolicy = WakePolicy::Handoff;

/// Resets for the models about something else: an owner's exit would
/// otherwise start one (the `Counting` manager's is a no-op) that a
/// model's checks race, since loom's `join` may return before the thread's
/// thread-local destructors have run. Models 17 and 18 check resets.
const NO_RESETS: Reset = Reset::Never;

/// `Eventual` with a period no clock reaches, counting every checkin:
/// after the first hand-off it decides by its bypass count alone, so loom
/// can replay it.
const EVENTUAL_BY_COUNT: WakePolicy = WakePolicy::Eventual {
    bypasses: 1,
    period: std::time::Duration::MAX,
    min_hold: std::time::Duration::ZERO,
};

fn pool(max_size: usize, wake: WakePolicy) -> Pool<Counting> {
    pool_pinned(max_size, Pinning::Strict, wake)
}

fn pool_pinned(max_size: usize, pinning: Pinning, wake: WakePolicy) -> Pool<Counting> {
    Pool::builder()
        .reset(NO_RESETS)
        .max_size(max_size)
        .pinning(pinning)
        .wake(wake)
        .build(Counting::default())
        .expect("valid config")
}

/// Runs `model` under loom (preemption bound from `LOOM_MAX_PREEMPTIONS`)
/// and prints how many interleavings it explored.
fn check(name: &str, model: impl Fn() + Sync + Send + 'static) {
    check_bounded(name, None, model);
}

/// [`check`] with a preemption bound of its own, for a model whose
/// interleavings under the run's bound would take minutes (docs/model-checking.md's
/// table gives each model's bound).
fn check_bounded(name: &str, bound: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
    let iterations = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&iterations);
    let mut builder = loom::model::Builder::new();
    if bound.is_some() {
        builder.preemption_bound = bound;
    }
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        model();
    });
    println!(
        "{name}: {} interleavings",
        iterations.load(Ordering::Relaxed)
    );
}

/// Spawns `threads` threads that each check out and in `times` times.
fn checking_out(
    pool: &Pool<Counting>,
    threads: usize,
    times: usize,
) -> Vec<thread::JoinHandle<()>> {
    checking_out_or(pool, threads, times, |_| false)
}

/// [`checking_out`], where a checkout may also fail with an error
/// `tolerated` accepts.
fn checking_out_or(
    pool: &Pool<Counting>,
    threads: usize,
    times: usize,
    tolerated: fn(&Error<std::io::Error>) -> bool,
) -> Vec<thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                for _ in 0..times {
                    match pool.get() {
                        Ok(conn) => drop(conn),
                        Err(error) if tolerated(&error) => {}
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect()
}

/// A thread that checks out once and in: whether it timed out instead.
fn checking_out_or_timing_out(pool: &Pool<Counting>) -> thread::JoinHandle<bool> {
    let pool = pool.clone();
    thread::spawn(move || match pool.get() {
        Ok(conn) => {
            drop(conn);
            false
        }
        Err(Error::Timeout { .. }) => true,
        Err(other) => panic!("unexpected {other}"),
    })
}

/// Nothing waits or is held, and every connection opened is idle or closed.
fn assert_quiet(state: &PoolState) {
    let c = state.counters;
    assert_eq!((state.waiting, state.in_use), (0, 0), "{state:?}");
    assert_eq!(c.opened, state.idle as u64 + c.closed + c.connect_failures);
    assert_eq!(c.checkouts, c.checkins, "{state:?}");
}

/// Model 1 (Handoff, Broadcast and Bounded): three threads pinned over one or two
/// connections, each checking out and in twice, always all complete
/// (loom reports a deadlock if any thread parks for ever) and leave the
/// pool quiet; the checkin oracle never sees a stranded waiter.
fn all_complete(max_size: usize, wake: WakePolicy) {
    all_complete_pinned(max_size, Pinning::Strict, wake);
}

fn all_complete_pinned(max_size: usize, pinning: Pinning, wake: WakePolicy) {
    // Two connections under a barging policy, or Affinity's moves, would
    // take minutes at the run's bound; one connection under Handoff (three
    // threads queued on it, 573k interleavings at 3) takes half the run's
    // budget for what two connections at 3 cover too.
    let costly = wake == EVENTUAL_BY_COUNT || pinning == Pinning::Affinity || max_size == 1;
    let bound = costly.then_some(2);
    check_bounded(
        &format!("all_complete/{max_size}/{pinning:?}/{wake:?}"),
        bound,
        move || {
            let pool = pool_pinned(max_size, pinning, wake);
            for t in checking_out(&pool, 3, 2) {
                t.join().unwrap();
            }
            let state = pool.state();
            assert_quiet(&state);
            assert_eq!(state.counters.checkouts, 6);
            assert!(state.counters.opened as usize <= max_size);
        },
    );
}

#[test]
fn handoff_one_connection_all_complete() {
    all_complete(1, WakePolicy::Handoff);
}

#[test]
fn handoff_two_connections_all_complete() {
    all_complete(2, WakePolicy::Handoff);
}

#[test]
fn broadcast_two_connections_all_complete() {
    all_complete(2, WakePolicy::Broadcast);
}

#[test]
fn bounded_two_connections_all_complete() {
    all_complete(2, WakePolicy::Bounded(1));
}

/// The default policy's rule (count-forced hand-offs beside barging), with
/// a period the clock never reaches so loom can replay it.
#[test]
fn eventual_two_connections_all_complete() {
    all_complete(2, EVENTUAL_BY_COUNT);
}

/// `Affinity`: an owner whose last connection is busy takes the other and
/// is re-pinned, racing the leases of both.
#[test]
fn affinity_two_connections_all_complete() {
    all_complete_pinned(2, Pinning::Affinity, EVENTUAL_BY_COUNT);
}

/// Model 2: the same pool under `Signal` — the checker must find the
/// interleaving of "A Curious Concurrency Case" where a checkin leaves a
/// waiter asleep beside the idle connection it waits for. The pool's own
/// checkin oracle panics with this message; the test passes because loom
/// found it.
#[test]
#[should_panic(expected = "lost wake-up: a waiter sleeps while a connection it can use is idle")]
fn signal_strands_a_waiter() {
    check("signal_strands_a_waiter", || {
        let pool = pool(2, WakePolicy::Signal);
        let a = pool.get().unwrap(); // the main thread holds socket A
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || drop(pool.get().expect("checkout")))
            })
            .collect();
        let mut threads = threads.into_iter();
        threads.next().unwrap().join().unwrap();
        drop(a);
        for t in threads {
            t.join().unwrap();
        }
    });
}

/// Model 3: FIFO. A holder thread has the only connection; two threads
/// queue for it, one after the other (the main thread waits on the core's
/// state until each is in line); the holder, once both wait, returns it and
/// at once asks again. In every interleaving the grants follow the arrival
/// order exactly — first, second, then the holder, which queued behind
/// them (its fast path never barges) — and no waiter is passed over.
/// (The main thread never waits in the pool: loom would take a grant's
/// late `unpark` of it for the end of its `join`.)
#[test]
fn fifo_in_arrival_order() {
    check_bounded("fifo_in_arrival_order", Some(2), || {
        let pool = pool(1, WakePolicy::Handoff);
        let order = Arc::new(AtomicUsize::new(0));
        let take_turn = |pool: Pool<Counting>, order: Arc<AtomicUsize>| {
            let conn = pool.get().expect("checkout");
            let turn = order.fetch_add(1, Ordering::SeqCst);
            drop(conn);
            turn
        };
        let holder = {
            let (pool, order) = (pool.clone(), Arc::clone(&order));
            thread::spawn(move || {
                let held = pool.get().expect("checkout");
                pool.wait_for_state(|state| state.waiting == 2);
                drop(held);
                take_turn(pool, order)
            })
        };
        pool.wait_for_state(|state| state.counters.checkouts == 1);
        // The holder's own checkout waited for its connect.
        let before = pool.status().counters.waits;
        let mut queued = Vec::new();
        for in_line in before + 1..=before + 2 {
            let (queuer, order) = (pool.clone(), Arc::clone(&order));
            queued.push(thread::spawn(move || take_turn(queuer, order)));
            // Monotone: the line may move on once both are in it.
            pool.wait_for_state(move |state| state.counters.waits >= in_line);
        }
        let turns: Vec<usize> = queued.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(turns, [0, 1], "granted in arrival order");
        assert_eq!(
            holder.join().unwrap(),
            2,
            "the returning owner waits behind them"
        );
        let state = pool.state();
        assert_eq!(state.counters.max_bypass, 0, "{state:?}");
        assert_quiet(&state);
    });
}

/// Model 4: the lock-free fast path (a pinned thread's lease) racing with
/// another thread registering as a waiter for the same connection: no
/// lost wake-up (loom would report the deadlock), nothing counted twice.
#[test]
fn fast_path_vs_waiter_registration() {
    check("fast_path_vs_waiter_registration", || {
        let pool = pool(1, WakePolicy::Handoff);
        drop(pool.get().unwrap()); // leased to the main thread, parked
        let other = {
            let pool = pool.clone();
            thread::spawn(move || drop(pool.get().expect("checkout")))
        };
        for _ in 0..2 {
            drop(pool.get().expect("checkout"));
        }
        other.join().unwrap();
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 4, "{state:?}");
        assert_quiet(&state);
    });
}

/// Model 5: reclamation. A thread pins itself and exits without unpinning,
/// and another pins itself and then panics (caught at the top of the
/// thread: loom cannot unwind through its own primitives, so the panic
/// happens with nothing held; panicking while holding a connection is
/// tested on real threads). The thread-local drop guard releases each pin,
/// after which another thread reuses the connection. (loom may return from
/// `join` before thread-local destructors run, so the main thread waits
/// for the reclamation itself.)
#[test]
fn exiting_threads_release_their_pins() {
    check("exiting_threads_release_their_pins", || {
        let pool = pool(1, WakePolicy::Handoff);
        let quiet = {
            let pool = pool.clone();
            thread::spawn(move || PooledConnection::id(&pool.get().unwrap()))
        };
        let panicking = {
            let pool = pool.clone();
            thread::spawn(move || {
                drop(pool.get().unwrap());
                assert!(user_code_panics().is_err());
            })
        };
        let first = quiet.join().unwrap();
        panicking.join().unwrap();
        pool.wait_for_state(|state| state.pinned_owners == 0);
        let conn = pool.get().expect("checkout");
        assert_eq!(PooledConnection::id(&conn), first, "reused, not reopened");
        drop(conn);
        let state = pool.state();
        assert_eq!(state.counters.reclaimed_pins, 2);
        assert_eq!(state.counters.opened, 1);
        assert_quiet(&state);
    });
}

/// Model 5b: a thread's lease outliving the thread. The thread's guard,
/// moved to another thread, parks the connection back in the thread's
/// lease while the thread exits and its pins' destructor recalls that
/// lease: whichever comes second sees the other and returns the
/// connection to the core, once. Nobody else asks for it (any checkout
/// would recall the lease itself), so only the exit's recall can bring it
/// back: the main thread waits for the core to hold it idle, which loom
/// reports as a deadlock if it never does. (A lease is only ever its
/// pool's and its owner's: a thread exits with its registry, so no later
/// thread can find the dead one's lease.)
#[test]
fn parking_vs_owner_exit() {
    check("parking_vs_owner_exit", || {
        let pool = pool(1, WakePolicy::Handoff);
        let owner = {
            let pool = pool.clone();
            thread::spawn(move || {
                drop(pool.get().unwrap()); // pinned, parked in its lease
                let held = pool.get_owned().unwrap(); // taken from the lease
                thread::spawn(move || drop(held))
            })
        };
        let dropper = owner.join().unwrap();
        dropper.join().unwrap();
        pool.wait_for_state(|state| state.pinned_owners == 0 && state.idle == 1);
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 2, "{state:?}");
        assert_eq!(state.counters.opened, 1, "{state:?}");
        assert_quiet(&state);
    });
}

/// Model 5c: co-owners sharing a lease. Two threads pinned to the one
/// connection (`Pinning::Strict`) take turns on it. The second to bind
/// was granted it with a lease; the first, coming back, finds it parked
/// there and takes it without a core checkout, as the core would grant it
/// (or waits, if it is held). Whichever holds it, the other's checkout
/// waits for it, never refused as if it held it; the holder asking again
/// is refused as holding it, never left waiting for itself (loom reports
/// a checkout that waits for ever).
#[test]
fn co_owners_share_a_lease() {
    check("co_owners_share_a_lease", || {
        let pool = pool(1, WakePolicy::Handoff);
        drop(pool.get().unwrap()); // the main thread binds first
        let bound = LoomArc::new(AtomicBool::new(false));
        let other = {
            let (pool, bound) = (pool.clone(), LoomArc::clone(&bound));
            thread::spawn(move || {
                drop(pool.get().unwrap()); // binds too: leased to it, parked
                bound.store(true, Ordering::SeqCst);
                let conn = pool.get().expect("its turn");
                let again = pool.try_get().map(|_| ());
                assert!(matches!(again, Err(Error::AlreadyHeld)), "{again:?}");
                drop(conn);
            })
        };
        while !bound.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        drop(pool.get().expect("its turn")); // from the other's lease
        other.join().unwrap();
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 4, "{state:?}");
        assert_eq!(state.counters.failed, 1, "{state:?}");
        assert_quiet(&state);
    });
}

/// Model 6: a waiter's deadline passes exactly as a checkin hands it the
/// connection (a zero timeout: the deadline has passed before the waiter
/// could park). The connection ends with the waiter or idle, never lost,
/// and the outcome is counted once.
#[test]
fn timeout_vs_grant() {
    check("timeout_vs_grant", || {
        let pool: Pool<Counting> = Pool::builder()
            .reset(NO_RESETS)
            .max_size(1)
            .wake(DETERMINISTIC)
            .checkout_timeout(std::time::Duration::ZERO)
            .build(Counting::default())
            .unwrap();
        let held = pool.get().unwrap();
        let waiter = checking_out_or_timing_out(&pool);
        drop(held);
        let timed_out = waiter.join().unwrap();
        let state = pool.state();
        assert_eq!(state.counters.timeouts, u64::from(timed_out), "{state:?}");
        assert_eq!(state.idle, 1, "the connection is back, not lost");
        assert_quiet(&state);
    });
}

/// Model 9: `close()` racing two threads' checkouts: every `get()` ends
/// with a connection or `Closed`, never a hang, and afterwards every
/// connection opened is closed.
#[test]
fn close_vs_checkouts() {
    check("close_vs_checkouts", || {
        let pool = pool(1, WakePolicy::Handoff);
        let threads = checking_out_or(&pool, 2, 2, |e| matches!(e, Error::Closed));
        pool.close();
        for t in threads {
            t.join().unwrap();
        }
        let state = pool.state();
        let c = state.counters;
        assert!(state.closed);
        assert_eq!(
            (state.idle, state.in_use, state.waiting),
            (0, 0, 0),
            "{state:?}"
        );
        assert_eq!(c.opened, c.closed + c.connect_failures, "{state:?}");
    });
}

/// Model 8: the stash, the lock-free fast path of checkouts that pin
/// nobody (`Pinning::Off`). The main thread's checkout parks a connection
/// in the stash; then two threads each check out and in twice over one or
/// two connections while the main thread takes a snapshot (which recalls
/// every stash lease). Takes and parks race each other, the recalls of the
/// snapshot and of checkouts that must wait, and a cell armed again for
/// the next lease while a holder of the last one may still be parking into
/// it. All complete (loom reports a lost wake-up as a deadlock), every
/// checkout is counted once, and nothing is lost or opened beyond
/// `max_size`. (The main thread itself never waits in the pool: loom would
/// take a grant's late `unpark` of it for the end of its `join`.)
fn stash_all_complete(max_size: usize) {
    check(&format!("stash_all_complete/{max_size}"), move || {
        let pool: Pool<Counting> = Pool::builder()
            .reset(NO_RESETS)
            .max_size(max_size)
            .pinning(Pinning::Off)
            .wake(DETERMINISTIC)
            .build(Counting::default())
            .expect("valid config");
        drop(pool.get().expect("checkout")); // parked in the stash
        let threads = checking_out(&pool, 2, 2);
        let during = pool.state();
        assert!(during.in_use + during.idle <= max_size, "{during:?}");
        for t in threads {
            t.join().unwrap();
        }
        let state = pool.state();
        assert_quiet(&state);
        assert_eq!(state.counters.checkouts, 5, "{state:?}");
        assert!(state.counters.opened as usize <= max_size);
    });
}

#[test]
fn stash_one_connection_all_complete() {
    stash_all_complete(1);
}

#[test]
fn stash_two_connections_all_complete() {
    stash_all_complete(2);
}

/// The same manager for the async pool (its connect runs inline under loom).
struct AsyncCounting(Arc<AtomicUsize>);

impl pinpool::tokio::Manager for AsyncCounting {
    type Connection = usize;
    type Error = std::io::Error;
    async fn connect(&self) -> Result<usize, std::io::Error> {
        Ok(self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// An async pool of one connection, shared by the model's threads.
fn async_pool() -> Arc<pinpool::tokio::Pool<AsyncCounting>> {
    let pool = pinpool::tokio::Pool::builder()
        .reset(NO_RESETS)
        .max_size(1)
        .wake(DETERMINISTIC)
        // No timer under loom: a timeout too large to represent.
        .checkout_timeout(std::time::Duration::MAX)
        .build(AsyncCounting(Arc::default()))
        .unwrap();
    Arc::new(pool)
}

/// Model 7: async cancellation. A task's `get()` future is polled once —
/// registering it as a waiter while the only connection is held — and then
/// dropped, racing the holder's checkin, which may grant it the connection
/// in that very instant. A third task waits behind it. In every
/// interleaving the connection reaches the third task or idle: never lost
/// (the third task would never wake, and loom reports the deadlock), never
/// counted twice.
#[test]
fn async_cancel_vs_grant() {
    use std::future::Future;
    use std::task::{Context, Waker};

    use loom::future::block_on;

    check("async_cancel_vs_grant", || {
        let pool = async_pool();
        let held = block_on(pool.get_owned()).unwrap();
        let dropper = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                let mut get = Box::pin(pool.get());
                let mut cx = Context::from_waker(Waker::noop());
                // Granted at once if the checkin came first; otherwise it
                // waits, and is dropped with whatever reached it.
                if let std::task::Poll::Ready(conn) = get.as_mut().poll(&mut cx) {
                    drop(conn.unwrap());
                }
                drop(get);
            })
        };
        let behind = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || drop(block_on(pool.get()).unwrap()))
        };
        drop(held);
        dropper.join().unwrap();
        behind.join().unwrap();
        let state = pool.state();
        assert_eq!(state.idle, 1, "the connection is back, not lost");
        assert_quiet(&state);
    });
}

/// Model 10: a `get()` made in a pinned scope outlives the scope (it is
/// polled once inside and handed out), racing the checkin that may grant
/// it the held connection. The scope's end fails it with `OwnerGone` if it
/// still waits; if the grant came first it holds the connection. In every
/// interleaving it ends (before the fix it waited for ever on a ticket the
/// core had forgotten: loom reports that as a deadlock), and the
/// connection ends idle.
#[test]
fn get_outliving_its_scope_vs_grant() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use loom::future::block_on;

    check("get_outliving_its_scope_vs_grant", || {
        let pool = async_pool();
        let held = block_on(pool.get_owned()).unwrap();
        let orphan = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                let escaped = block_on(pool.pinned(async {
                    let mut get = Box::pin(pool.get_owned());
                    let mut cx = Context::from_waker(Waker::noop());
                    match get.as_mut().poll(&mut cx) {
                        Poll::Ready(conn) => {
                            drop(conn.unwrap());
                            None
                        }
                        Poll::Pending => Some(get),
                    }
                }));
                if let Some(get) = escaped {
                    match block_on(get) {
                        Ok(conn) => drop(conn),
                        Err(Error::OwnerGone) => {}
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
            })
        };
        drop(held);
        orphan.join().unwrap();
        let state = pool.state();
        assert_eq!(state.idle, 1, "the connection is back, not lost");
        assert_eq!(state.pinned_owners, 0);
        assert_quiet(&state);
    });
}

/// Model 11: an owned guard dropped on another thread than the one that
/// checked it out, while a third waits for the connection: the checkin
/// from the foreign thread hands it over (no lease of the getter's is
/// touched from the wrong thread), and all complete.
#[test]
fn guard_dropped_on_another_thread() {
    use loom::future::block_on;

    check("guard_dropped_on_another_thread", || {
        let pool = async_pool();
        let held = block_on(pool.get_owned()).unwrap();
        let waiter = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || drop(block_on(pool.get()).unwrap()))
        };
        let dropper = thread::spawn(move || drop(held));
        dropper.join().unwrap();
        waiter.join().unwrap();
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 2, "{state:?}");
        assert_quiet(&state);
    });
}

/// Model 12: `clear()` and `ready()` racing two threads' checkouts: each
/// `get()` ends with a connection or the retryable `Paused`, never a hang;
/// connections from before the clear close as stale when they come back,
/// and nothing is lost.
#[test]
fn clear_vs_checkouts() {
    check("clear_vs_checkouts", || {
        let pool = pool(1, WakePolicy::Handoff);
        let threads = checking_out_or(&pool, 2, 2, |e| matches!(e, Error::Paused));
        // Connections numbered up to here began connecting before the
        // clear: stale, never to be handed out once the pool is ready.
        let before_clear = pool.manager().0.load(Ordering::SeqCst);
        pool.clear();
        pool.ready();
        for t in threads {
            t.join().unwrap();
        }
        let conn = pool.get().expect("checkout once ready");
        assert!(*conn > before_clear, "connection {} is stale", *conn);
        drop(conn);
        assert_quiet(&pool.state());
    });
}

/// Model 13: a thread unpinning itself between its checkouts, racing
/// another thread's checkouts of the only connection: the unpin ends its
/// lease and pin without losing the connection, and all complete.
#[test]
fn unpin_vs_checkouts() {
    check("unpin_vs_checkouts", || {
        let pool = pool(1, WakePolicy::Handoff);
        let unpinning = {
            let pool = pool.clone();
            thread::spawn(move || {
                drop(pool.get().expect("checkout"));
                pool.unpin();
                // Of the only connection's owners, just the other thread's
                // pin (if it has one yet) is left.
                let pinned = pool.status().pinned_owners;
                assert!(pinned <= 1, "{pinned} pins after unpin");
                drop(pool.get().expect("checkout"));
            })
        };
        let other = checking_out(&pool, 1, 2);
        unpinning.join().unwrap();
        for t in other {
            t.join().unwrap();
        }
        let state = pool.state();
        assert_eq!(state.counters.checkouts, 4, "{state:?}");
        assert_quiet(&state);
    });
}

/// Fails its first connect, then opens connections numbered 1, 2, …
#[derive(Default)]
struct FailingFirst(Arc<AtomicUsize>);

impl Manager for FailingFirst {
    type Connection = usize;
    type Error = std::io::Error;
    fn connect(&self) -> Result<usize, std::io::Error> {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 => Err(std::io::Error::other("refused")),
            n => Ok(n),
        }
    }
}

/// Model 14: a failed connect racing a second checkout bound to the same
/// connection: the checkout that asked for it fails with the manager's
/// error, the other moves to the replacement and gets it — exactly one
/// failure, no waiter left behind, nothing lost.
#[test]
fn connect_failure_vs_waiter() {
    check("connect_failure_vs_waiter", || {
        let pool: Pool<FailingFirst> = Pool::builder()
            .reset(NO_RESETS)
            .max_size(1)
            .wake(DETERMINISTIC)
            .build(FailingFirst::default())
            .expect("valid config");
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || match pool.get() {
                    Ok(conn) => {
                        drop(conn);
                        false
                    }
                    Err(Error::Connect(_)) => true,
                    Err(other) => panic!("unexpected {other}"),
                })
            })
            .collect();
        let failed = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&failed| failed)
            .count();
        assert_eq!(failed, 1, "exactly the checkout that asked for it fails");
        let state = pool.state();
        assert_eq!(state.counters.connect_failures, 1, "{state:?}");
        assert_quiet(&state);
    });
}

/// A connection standing for a database session: its number, and the
/// marker its current owner left on it.
struct Marked {
    number: usize,
    marker: Option<usize>,
}

/// Opens numbered sessions and resets them (clearing the marker).
#[derive(Default)]
struct Marking(Arc<AtomicUsize>);

impl Manager for Marking {
    type Connection = Marked;
    type Error = std::io::Error;
    fn connect(&self) -> Result<Marked, std::io::Error> {
        let number = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Marked {
            number,
            marker: None,
        })
    }
    fn reset(&self, session: &mut Marked) -> Result<(), std::io::Error> {
        session.marker = None;
        Ok(())
    }
}

/// One exclusive session at a time: a pool of one connection.
fn one_session_pool() -> Pool<Marking> {
    Pool::builder()
        .max_size(1)
        .pinning(Pinning::Exclusive)
        .wake(DETERMINISTIC)
        .build(Marking::default())
        .expect("valid config")
}

/// Model 17: two threads want the only connection as their exclusive
/// session; the second waits for a pin, which only the first's exit
/// releases (its thread-local guard), and that connection reaches it
/// reset. Both complete, neither sees the other's marker, and each exit
/// resets the connection once.
#[test]
fn exclusive_exit_resets_for_the_waiter() {
    check("exclusive_exit_resets_for_the_waiter", || {
        let pool = one_session_pool();
        let threads: Vec<_> = (1..=2)
            .map(|me| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let mut session = pool.get().expect("the pin, once the other exits");
                    assert_eq!(session.marker, None, "thread {me} saw another's session");
                    session.marker = Some(me);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        pool.wait_for_state(|s| s.pinned_owners == 0 && s.resetting == 0);
        let state = pool.state();
        assert_eq!(state.counters.resets, 2, "{state:?}");
        assert_eq!(state.counters.opened, 1, "{state:?}");
        assert_quiet(&state);
    });
}

/// Model 18: a thread's session ends (its exit starts the reset) while
/// the main thread clears the pool: whether the clear comes before the
/// reset, during it or after it, the connection from before the clear is
/// never handed out again, and what the main thread gets once the pool is
/// ready is clean.
#[test]
fn reset_vs_clear() {
    check("reset_vs_clear", || {
        let pool = one_session_pool();
        let user = {
            let pool = pool.clone();
            thread::spawn(move || match pool.get() {
                Ok(mut session) => {
                    session.marker = Some(1);
                    Some(session.number)
                }
                Err(Error::Paused) => None,
                Err(other) => panic!("unexpected {other}"),
            })
        };
        pool.clear();
        let used = user.join().unwrap();
        pool.wait_for_state(|s| s.pinned_owners == 0 && s.resetting == 0);
        pool.ready();
        let session = pool.get().expect("checkout once ready");
        assert_eq!(session.marker, None);
        assert_ne!(
            Some(session.number),
            used,
            "a connection from before the clear"
        );
        drop(session);
        assert_quiet(&pool.state());
    });
}

/// Model 19: a connect that completes on a thread of its own (the pool's
/// `pinpool-connect` thread; inline in the other models): two threads
/// want the only connection, the first's connect runs beside both, its
/// result is granted to the waiter that asked and the other waits its
/// turn. All complete and nothing is opened twice.
#[test]
fn connect_on_its_own_thread() {
    check("connect_on_its_own_thread", || {
        let pool: Pool<Counting> = Pool::builder()
            .reset(NO_RESETS)
            .max_size(1)
            .wake(DETERMINISTIC)
            .connects_on_threads(true)
            .build(Counting::default())
            .unwrap();
        for t in checking_out(&pool, 2, 1) {
            t.join().unwrap();
        }
        let state = pool.state();
        assert_eq!(state.counters.opened, 1, "{state:?}");
        assert_eq!(state.counters.checkouts, 2, "{state:?}");
        assert_quiet(&state);
    });
}

/// Model 20: a waiter parked with a deadline, its timer firing (loom has
/// no clock: a thread of the model expires it) while the holder checks
/// the connection in, which may hand it over in that instant. The waiter
/// ends with the connection or a timeout, counted once, and the
/// connection ends idle, never lost.
#[test]
fn a_parked_waiter_times_out_vs_grant() {
    check("a_parked_waiter_times_out_vs_grant", || {
        let pool = pool(1, DETERMINISTIC);
        let held = pool.get().unwrap();
        let waiter = checking_out_or_timing_out(&pool);
        pool.wait_for_state(|s| s.waiting == 1);
        let timer = {
            let pool = pool.clone();
            thread::spawn(move || pool.expire_waiting_checkouts())
        };
        drop(held);
        let timed_out = waiter.join().unwrap();
        timer.join().unwrap();
        let state = pool.state();
        assert_eq!(state.counters.timeouts, u64::from(timed_out), "{state:?}");
        assert_eq!(state.idle, 1, "the connection is back, not lost");
        assert_quiet(&state);
    });
}

/// Connections that count themselves live until dropped.
struct Tracked(Arc<AtomicUsize>);

/// A connection of [`Tracked`].
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Manager for Tracked {
    type Connection = Live;
    type Error = std::io::Error;
    fn connect(&self) -> Result<Live, std::io::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Live(Arc::clone(&self.0)))
    }
}

/// Model 21: a graceful shutdown (`close_and_wait`, no deadline) while
/// two threads hold a connection each, which they give back once the
/// pool is closed: the main thread returns (loom reports a lost wake-up
/// as a deadlock) only once every connection the pool opened has been
/// dropped, whichever thread's checkin empties the pool while the
/// other's drop may still be under way.
#[test]
fn close_and_wait_vs_checkins() {
    check("close_and_wait_vs_checkins", || {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = Pool::builder()
            .max_size(2)
            .wake(DETERMINISTIC)
            .reset(NO_RESETS)
            .build(Tracked(Arc::clone(&live)))
            .unwrap();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let conn = pool.get().unwrap();
                    pool.wait_for_state(|s| s.closed);
                    drop(conn);
                })
            })
            .collect();
        pool.wait_for_state(|s| s.in_use == 2);
        assert!(pool.close_and_wait(std::time::Duration::MAX));
        assert_eq!(live.load(Ordering::SeqCst), 0, "every connection dropped");
        let state = pool.state();
        assert_eq!(state.total(), 0, "{state:?}");
        for t in threads {
            t.join().unwrap();
        }
    });
}

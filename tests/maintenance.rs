//! Maintenance workers and leak detection: what needs the whole process.
//!
//! Counting live maintenance workers and capturing `tracing` output are
//! process-wide, so these tests live in their own binary and take turns
//! (`TURN`); every other test binary may start pools freely.

mod support;

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pinpool::core::Event;
use pinpool::live_maintenance_workers;
use support::TestManager;

/// One test at a time: they observe process-wide state.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn blocking_pools_stop_and_join_their_maintenance_threads() {
    let _turn = turn();
    let before = live_maintenance_workers();
    let pools: Vec<_> = (0..20)
        .map(|_| {
            pinpool::blocking::Pool::builder()
                .idle_timeout(Duration::from_secs(60))
                .build(TestManager::default())
                .unwrap()
        })
        .collect();
    assert_eq!(live_maintenance_workers(), before + 20, "one thread each");
    let plain = pinpool::blocking::Pool::new(TestManager::default()).unwrap();
    assert_eq!(
        live_maintenance_workers(),
        before + 20,
        "no time-based work, no thread"
    );
    drop(plain);
    // A clone keeps the pool open; the last handle closes it and joins.
    let clone = pools[0].clone();
    drop(pools);
    assert_eq!(live_maintenance_workers(), before + 1);
    clone.close();
    assert_eq!(live_maintenance_workers(), before, "close joins the thread");
}

#[cfg(feature = "tokio")]
#[test]
fn async_pools_stop_their_maintenance_tasks() {
    let _turn = turn();
    let before = live_maintenance_workers();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pools: Vec<_> = (0..20)
            .map(|_| {
                // Runs an hour apart: only the pool's close stops them.
                pinpool::tokio::Pool::builder()
                    .max_lifetime(Duration::from_secs(60))
                    .maintenance_interval(Duration::from_secs(3600))
                    .build(TestManager::default())
                    .unwrap()
            })
            .collect();
        assert_eq!(live_maintenance_workers(), before + 20, "one task each");
        drop(pools);
        // Aborted tasks are dropped by the runtime's workers: look until
        // they are, for at most 20 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while live_maintenance_workers() > before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(live_maintenance_workers(), before, "every task stopped");
    });
    // A pool built outside a runtime starts its task on first use.
    let pool = pinpool::tokio::Pool::builder()
        .idle_timeout(Duration::from_secs(60))
        .build(TestManager::default())
        .unwrap();
    assert_eq!(live_maintenance_workers(), before);
    runtime.block_on(async { drop(pool.get().await.unwrap()) });
    assert_eq!(live_maintenance_workers(), before + 1);
    drop(runtime); // shutting the runtime down drops the task
    assert_eq!(live_maintenance_workers(), before);
}

/// An async pool that needs no maintenance starts its task for its
/// waiters' deadlines on the first wait with one, on the runtime the
/// waiter runs on; when that runtime shuts down and takes the task with
/// it, the next such wait starts another where it runs; the pool's close
/// stops it.
#[cfg(feature = "tokio")]
#[test]
fn an_async_pools_deadlines_start_its_task_again_after_its_runtime_ends() {
    use pinpool::Error;

    let _turn = turn();
    let before = live_maintenance_workers();
    let current_thread = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let pool = pinpool::tokio::Pool::builder()
        .max_size(1)
        .build(TestManager::default())
        .unwrap();
    assert_eq!(live_maintenance_workers(), before, "none needed yet");
    let first = current_thread();
    // It waits for its connection to open, with a deadline.
    let held = first.block_on(pool.get_owned()).unwrap();
    assert_eq!(
        live_maintenance_workers(),
        before + 1,
        "started by the deadline"
    );
    let short = Duration::from_millis(10);
    let wait = |runtime: &tokio::runtime::Runtime| {
        let waited = runtime.block_on(pool.get_timeout(short)).map(drop);
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
    };
    wait(&first);
    drop(first);
    assert_eq!(live_maintenance_workers(), before, "gone with its runtime");
    let second = current_thread();
    wait(&second);
    assert_eq!(live_maintenance_workers(), before + 1, "started again");
    drop(held);
    drop(pool); // closes it, aborting the task, which the runtime drops
    second.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while live_maintenance_workers() > before && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(live_maintenance_workers(), before, "stopped by the close");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_leak_is_reported_once_with_the_holders_thread_and_backtrace() {
    let _turn = turn();
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let (send, leaks) = mpsc::channel();
    let send = Mutex::new(send);
    let pool = pinpool::blocking::Pool::builder()
        .leak_detection_threshold(Duration::from_millis(20))
        .maintenance_interval(Duration::from_millis(5))
        .event_handler(move |event| {
            if let Event::ConnectionLeaked { .. } = event {
                let _ = send.lock().unwrap().send(*event);
            }
        })
        .build(TestManager::default())
        .unwrap();
    let (release, released) = mpsc::channel::<()>();
    thread::scope(|s| {
        let pool = &pool;
        thread::Builder::new()
            .name("leaky-worker".into())
            .spawn_scoped(s, move || {
                let _conn = pool.get().unwrap();
                released.recv().unwrap(); // held until the leak is reported
            })
            .unwrap();
        let leak = leaks
            .recv_timeout(Duration::from_secs(20))
            .expect("a leak report");
        let Event::ConnectionLeaked { held, .. } = leak else {
            unreachable!()
        };
        assert!(held >= Duration::from_millis(20));
        // About twenty more maintenance runs: no second report.
        let again = leaks.recv_timeout(Duration::from_millis(100));
        assert!(again.is_err(), "reported twice: {again:?}");
        release.send(()).unwrap();
    });
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("leak threshold").count(), 1, "{log}");
    assert!(log.contains("thread=leaky-worker"), "{log}");
    // Without debug info (the mutation runs' `mutants` profile) the frames
    // the compiler inlined are not in the backtrace at all: their names
    // are checked where the build has it, as every test run but those.
    if !log.contains("src/driver/events.rs") {
        return;
    }
    assert!(
        log.contains("pinpool::blocking::Pool<M>::get"),
        "the backtrace shows the checkout: {log}"
    );
    // An optimised build inlines the worker's closure into the thread's
    // start, so only an unoptimised one is sure to name the caller.
    if cfg!(debug_assertions) {
        assert!(
            log.contains("a_leak_is_reported_once_with_the_holders_thread_and_backtrace"),
            "the backtrace shows where it was checked out: {log}"
        );
    }
}

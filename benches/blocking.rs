//! The blocking pool against r2d2, one criterion group per question:
//!
//! * `uncontended`: one thread, get + drop of a no-op connection;
//! * `contended`: 2–16 threads over 4 connections, time per get + drop,
//!   under the default wake policy (`Eventual`: 16 bypasses after holds of
//!   10 µs or more, or 500 µs), `Handoff`
//!   (`-handoff`) and `Bounded(8)` (`-bounded`);
//! * `herd`: 64 threads over 4 connections, `Handoff`, `Broadcast` and the
//!   default (threads unparked per checkin are printed after the group);
//! * `observed`: one pinned thread's get + drop while the pool is watched —
//!   `status()` or `state()` every 100 checkouts, an event handler, a
//!   DEBUG `tracing` subscriber — against the unwatched pool and r2d2.
//!
//! `cargo bench --bench blocking`; `docs/benchmarks.md` quotes the ratios.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pinpool::blocking::Pool;
use pinpool::core::{Pinning, WakePolicy};

// The no-op connections, shared with the other benchmarks (each uses its
// own peers' managers: the rest is unused here).
#[path = "peers/src/noop.rs"]
#[allow(dead_code)]
mod noop;
use noop::{Noop, R2d2Noop, noop};

const CONNECTIONS: u32 = 4;

fn pinpool(pinning: Pinning, wake: WakePolicy) -> Pool<Noop> {
    Pool::builder()
        .max_size(CONNECTIONS as usize)
        .pinning(pinning)
        .wake(wake)
        .build(noop as Noop)
        .expect("valid config")
}

fn r2d2() -> r2d2::Pool<R2d2Noop> {
    r2d2::Pool::builder()
        .max_size(CONNECTIONS)
        .min_idle(Some(CONNECTIONS))
        // pinpool validates only when asked to; compare like with like.
        .test_on_check_out(false)
        .build(R2d2Noop)
        .expect("r2d2 pool")
}

const MODES: [(&str, Pinning); 3] = [
    ("pinpool-strict", Pinning::Strict),
    ("pinpool-affinity", Pinning::Affinity),
    ("pinpool-off", Pinning::Off),
];

/// Eventual fairness by count: barging allowed until a waiter was passed
/// over this many times.
const BYPASS_BOUND: u32 = 8;

/// The wake policies the contended group compares, by name suffix: the
/// default first.
fn policies() -> [(&'static str, WakePolicy); 3] {
    [
        ("", WakePolicy::default()),
        ("-handoff", WakePolicy::Handoff),
        ("-bounded", WakePolicy::Bounded(BYPASS_BOUND)),
    ]
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended");
    for (name, pinning) in MODES {
        let pool = pinpool(pinning, WakePolicy::default());
        group.bench_function(name, |b| b.iter(|| black_box(pool.get().unwrap())));
    }
    let pool = r2d2();
    group.bench_function("r2d2", |b| b.iter(|| black_box(pool.get().unwrap())));
    group.finish();
}

/// Runs `iters` calls of `op` spread over `threads` threads and returns
/// the wall time from a common start to the last thread's finish.
fn spread(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let start = Barrier::new(threads + 1);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..per_thread {
                        op();
                    }
                })
            })
            .collect();
        // Read before the barrier opens: once it does, the workers may
        // keep this thread off the CPU (2 cores, up to 64 threads) until
        // most of the work is done, which would count it as no time.
        let began = Instant::now();
        start.wait();
        for worker in workers {
            worker.join().expect("benchmark thread");
        }
        began.elapsed()
    })
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended");
    group.measurement_time(Duration::from_secs(3));
    for threads in [2, 4, 8, 16] {
        for (name, pinning) in MODES {
            for (suffix, wake) in policies() {
                let pool = pinpool(pinning, wake);
                let id = BenchmarkId::new(format!("{name}{suffix}"), threads);
                group.bench_with_input(id, &threads, |b, &n| {
                    b.iter_custom(|iters| spread(n, iters, || drop(black_box(pool.get().unwrap()))))
                });
            }
        }
        let pool = r2d2();
        group.bench_with_input(BenchmarkId::new("r2d2", threads), &threads, |b, &n| {
            b.iter_custom(|iters| spread(n, iters, || drop(black_box(pool.get().unwrap()))))
        });
    }
    group.finish();
}

fn herd(c: &mut Criterion) {
    const THREADS: usize = 64;
    let mut group = c.benchmark_group("herd");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let mut wakeups = Vec::new();
    for (name, wake) in [
        ("handoff", WakePolicy::Handoff),
        ("broadcast", WakePolicy::Broadcast),
        ("default", WakePolicy::default()),
    ] {
        let pool = pinpool(Pinning::Strict, wake);
        group.bench_function(BenchmarkId::new(name, THREADS), |b| {
            b.iter_custom(|iters| spread(THREADS, iters, || drop(black_box(pool.get().unwrap()))))
        });
        // Every grant and every wake-up unparks one thread.
        let counters = pool.state().counters;
        if counters.checkins > 0 {
            let unparked = counters.wakeups + counters.handoffs;
            wakeups.push((name, unparked as f64 / counters.checkins as f64));
        }
    }
    group.finish();
    for (name, per_checkin) in wakeups {
        println!("herd/{name}: {per_checkin:.2} threads unparked per checkin");
    }
}

/// What watching the pool costs a pinned thread's get + drop: a metrics
/// poller (`status()` ends no lease; `state()` ends them all), an event
/// handler and a DEBUG subscriber (both record every checkout, so no lease).
fn observed(c: &mut Criterion) {
    let mut group = c.benchmark_group("observed");
    let pool = pinpool(Pinning::Strict, WakePolicy::default());
    group.bench_function("unobserved", |b| b.iter(|| black_box(pool.get().unwrap())));
    type Poll = fn(&Pool<Noop>);
    let polls: [(&str, Poll); 2] = [
        ("status-every-100", |pool| drop(black_box(pool.status()))),
        ("state-every-100", |pool| drop(black_box(pool.state()))),
    ];
    for (name, poll) in polls {
        let mut checkouts = 0u32;
        group.bench_function(name, |b| {
            b.iter(|| {
                checkouts += 1;
                if checkouts.is_multiple_of(100) {
                    poll(&pool);
                }
                black_box(pool.get().unwrap())
            })
        });
    }
    let handled = Pool::builder()
        .max_size(CONNECTIONS as usize)
        .event_handler(|event| {
            black_box(event);
        })
        .build(noop as Noop)
        .expect("valid config");
    group.bench_function("event-handler", |b| {
        b.iter(|| black_box(handled.get().unwrap()))
    });
    let debug = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(debug, || {
        let traced = pinpool(Pinning::Strict, WakePolicy::default());
        group.bench_function("debug-tracing", |b| {
            b.iter(|| black_box(traced.get().unwrap()))
        });
    });
    let peer = r2d2();
    group.bench_function("r2d2", |b| b.iter(|| black_box(peer.get().unwrap())));
    group.finish();
}

criterion_group!(benches, uncontended, contended, herd, observed);
criterion_main!(benches);

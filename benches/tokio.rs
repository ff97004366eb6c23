//! The async pool against bb8, deadpool and qp, in one criterion group:
//! `workers` tasks on a multi-thread runtime share a pool of `size` no-op
//! connections, each doing get + drop in a loop; the time per get + drop
//! over all workers is reported (lower is better). pinpool runs twice:
//! every worker in a pinned scope, and unpinned.
//!
//! A second group, `tokio-contended`, holds each connection across a
//! yield (where a query would await its server), with 64 tasks on 4
//! connections: most checkouts wait and most checkins hand over, on every
//! worker of the runtime at once. It is the `contended` scenario that
//! `benches/instructions.sh` counts on one thread, timed on all of them,
//! where the pools' locks meet. qp is left out of it (below).
//!
//! Every pool is built once per shape, filled, and checked out like for
//! like: no validation on checkout (bb8's `test_on_check_out(false)`,
//! qp's `acquire_unchecked`; deadpool always awaits its `recycle`, here a
//! no-op).
//!
//! qp's semaphore loses a wake-up when a woken waiter is overtaken
//! (`benches/peers/tests/lost_wake_up.rs`). In the first group no qp
//! checkout waits on up to 8 cores: a task holds its permit within one
//! poll, so no more are held than there are runtime workers, and every
//! shape has at least 8. On more cores a qp cell may hang, as it would in
//! the contended group on any.
//!
//! `cargo bench --bench tokio`; `docs/benchmarks.md` quotes the ratios.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

// The no-op connections, shared with the other benchmarks (each uses its
// own peers' managers: the rest is unused here).
#[path = "peers/src/noop.rs"]
#[allow(dead_code)]
mod noop;
use noop::{AsyncNoop, Bb8Noop, DeadpoolNoop, QpNoop, async_noop};

/// (workers, pool size) shapes.
const SHAPES: [(usize, usize); 3] = [(8, 8), (16, 8), (64, 16)];

/// (workers, pool size) of the contended group.
const CONTENDED: (usize, usize) = (64, 4);

/// How long a checkout holds its connection.
#[derive(Clone, Copy)]
enum Hold {
    /// Dropped at once: a task keeps it within one poll.
    Within,
    /// Across a yield, as across a query's await.
    AcrossYield,
}

/// A pool under test: one get + drop, and one get held across a yield.
trait Subject: Send + Sync + 'static {
    fn get_drop(&self) -> impl Future<Output = ()> + Send;
    fn get_yield_drop(&self) -> impl Future<Output = ()> + Send;

    /// One worker's checkouts, a loop for each hold: the first group's
    /// `get_drop` stays what it was. (A `get_drop` that took the hold and
    /// awaited a helper to drop the connection made pinpool's 8×8 cells
    /// 4–9 ns slower, of 17–21.)
    fn checkouts(&self, n: u64, hold: Hold) -> impl Future<Output = ()> + Send {
        async move {
            match hold {
                Hold::Within => {
                    for _ in 0..n {
                        self.get_drop().await;
                    }
                }
                Hold::AcrossYield => {
                    for _ in 0..n {
                        self.get_yield_drop().await;
                    }
                }
            }
        }
    }

    /// Runs one worker's loop (pinpool's pinned variant wraps it in a scope).
    fn worker(self: Arc<Self>, n: u64, hold: Hold) -> impl Future<Output = ()> + Send {
        async move { self.checkouts(n, hold).await }
    }
}

/// A subject's `get_drop` and `get_yield_drop`, from how it checks out of
/// its pool (named `$pool` in `$get`).
macro_rules! checkouts {
    (|$pool:ident| $get:expr) => {
        async fn get_drop(&self) {
            let $pool = &self.0;
            drop($get);
        }

        async fn get_yield_drop(&self) {
            let $pool = &self.0;
            let conn = $get;
            tokio::task::yield_now().await;
            drop(conn);
        }
    };
}

struct PinpoolPinned(pinpool::tokio::Pool<AsyncNoop>);
struct PinpoolUnpinned(pinpool::tokio::Pool<AsyncNoop>);

fn pinpool(size: usize) -> pinpool::tokio::Pool<AsyncNoop> {
    pinpool::tokio::Pool::builder()
        .max_size(size)
        .min_size(size)
        .max_connecting(size)
        .build(async_noop as AsyncNoop)
        .expect("valid config")
}

impl Subject for PinpoolPinned {
    checkouts!(|pool| pool.get().await.expect("no timeout"));

    async fn worker(self: Arc<Self>, n: u64, hold: Hold) {
        self.0.pinned(self.checkouts(n, hold)).await
    }
}

impl Subject for PinpoolUnpinned {
    checkouts!(|pool| pool.get().await.expect("no timeout"));
}

struct Bb8(bb8::Pool<Bb8Noop>);

impl Subject for Bb8 {
    checkouts!(|pool| pool.get().await.expect("no timeout"));
}

struct Deadpool(deadpool::managed::Pool<DeadpoolNoop>);

impl Subject for Deadpool {
    checkouts!(|pool| pool.get().await.expect("no timeout"));
}

struct Qp(qp::Pool<QpNoop>);

impl Subject for Qp {
    checkouts!(|pool| pool.acquire_unchecked().await.expect("infallible"));
}

/// Time for `iters` get + drops spread over `workers` tasks.
async fn run<S: Subject>(subject: &Arc<S>, workers: usize, iters: u64, hold: Hold) -> Duration {
    let per_worker = iters.div_ceil(workers as u64).max(1);
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(Arc::clone(subject).worker(per_worker, hold)))
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    // Scale to the iterations criterion asked for.
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_worker * workers as u64) as f64)
}

fn bench_shape<S: Subject>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    name: &str,
    (workers, size): (usize, usize),
    hold: Hold,
    subject: S,
) {
    let subject = Arc::new(subject);
    // Fill the pool before measuring.
    runtime.block_on(run(&subject, workers, (workers * 4) as u64, hold));
    c.bench_with_input(
        BenchmarkId::new(name, format!("{workers}x{size}")),
        &(),
        |b, _| {
            b.to_async(runtime)
                .iter_custom(|iters| run(&subject, workers, iters, hold))
        },
    );
}

/// Every pool, in `group`, at `shape`, holding as `hold` says.
fn bench_pools(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    shape: (usize, usize),
    hold: Hold,
) {
    let (_, size) = shape;
    let _entered = runtime.enter();
    let pinned = PinpoolPinned(pinpool(size));
    bench_shape(group, runtime, "pinpool-pinned", shape, hold, pinned);
    let unpinned = PinpoolUnpinned(pinpool(size));
    bench_shape(group, runtime, "pinpool-unpinned", shape, hold, unpinned);
    let bb8 = runtime.block_on(
        bb8::Pool::builder()
            .max_size(size as u32)
            .min_idle(Some(size as u32))
            .test_on_check_out(false)
            .build(Bb8Noop),
    );
    bench_shape(
        group,
        runtime,
        "bb8",
        shape,
        hold,
        Bb8(bb8.expect("bb8 pool")),
    );
    // Where checkouts wait, deadpool gets the 30 s checkout timeout that
    // pinpool and bb8 have by default (its own default is none): a timer
    // for each checkout that waits, as theirs.
    let wait_timeout = match hold {
        Hold::Within => None,
        Hold::AcrossYield => Some(Duration::from_secs(30)),
    };
    let deadpool = deadpool::managed::Pool::builder(DeadpoolNoop)
        .max_size(size)
        .wait_timeout(wait_timeout)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("deadpool pool");
    bench_shape(group, runtime, "deadpool", shape, hold, Deadpool(deadpool));
    if let Hold::Within = hold {
        // Not where checkouts wait: its lost wake-up (the module's docs).
        let qp = Qp(qp::Pool::new(QpNoop, size));
        bench_shape(group, runtime, "qp", shape, hold, qp);
    }
}

fn get_drop(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("tokio");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for shape in SHAPES {
        bench_pools(&mut group, &runtime, shape, Hold::Within);
    }
    group.finish();
    let mut group = c.benchmark_group("tokio-contended");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    bench_pools(&mut group, &runtime, CONTENDED, Hold::AcrossYield);
    group.finish();
}

criterion_group!(benches, get_drop);
criterion_main!(benches);

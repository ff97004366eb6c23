//! Tasks outnumbering connections, for `benches/instructions.sh` to count
//! with callgrind (`contended <scenario> <warm-up> <n>`, as the
//! `instructions` binary): 64 tasks over 4 connections on one thread, each
//! holding its connection across a yield (standing for a query's await),
//! so most checkouts wait and most checkins hand over to a waiter. One
//! operation is one task's turn: its checkout, the yield, its checkin.
//! The turns alone (the yield, the task switch) are counted too, to
//! subtract.
//!
//! A binary of its own, as `interleaved` is: more callers of `Pool::get`
//! beside the uncontended scenarios would change how the compiler inlines
//! them.

use std::future::Future;
use std::hint::black_box;
use std::process::ExitCode;

use pinpool_peers::noop::{AsyncNoop, Bb8Noop, DeadpoolNoop, async_noop};
use pinpool_peers::scenario::{self, Scenario, runtime};

/// The scenarios, by name: one operation is one task's turn.
const SCENARIOS: [(&str, Scenario); 5] = [
    ("pinpool-tokio-unpinned-contended", pinpool_unpinned),
    ("pinpool-tokio-pinned-contended", pinpool_pinned),
    ("bb8-contended", bb8_contended),
    ("deadpool-contended", deadpool_contended),
    ("tokio-yield-contended", yield_only),
];

fn main() -> ExitCode {
    scenario::main("contended", &SCENARIOS)
}

const TASKS: u64 = 64;
const CONNECTIONS: usize = 4;

/// Builds a pool with `pool` (on the runtime, which some pools need), then
/// runs `TASKS` tasks of `task`, each its share of `warm_up + n` turns.
fn contended<P: Clone, F: Future<Output = ()> + Send + 'static>(
    warm_up: u64,
    n: u64,
    pool: impl FnOnce() -> P,
    task: fn(P, u64) -> F,
) {
    runtime().block_on(async {
        let pool = pool();
        let turns = (warm_up + n).div_ceil(TASKS);
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| tokio::spawn(task(pool.clone(), turns)))
            .collect();
        for task in tasks {
            task.await.expect("a task");
        }
    });
}

/// `turns` checkouts, each held across a yield.
macro_rules! turns {
    ($pool:expr, $turns:expr) => {
        for _ in 0..$turns {
            let conn = black_box($pool.get().await.expect("a connection"));
            tokio::task::yield_now().await;
            drop(conn);
        }
    };
}

fn pinpool() -> pinpool::tokio::Pool<AsyncNoop> {
    pinpool::tokio::Pool::builder()
        .max_size(CONNECTIONS)
        .min_size(CONNECTIONS)
        .build(async_noop as AsyncNoop)
        .expect("a valid configuration")
}

/// Outside any scope: any connection will do.
fn pinpool_unpinned(warm_up: u64, n: u64) {
    contended(warm_up, n, pinpool, |pool, turns| async move {
        turns!(pool, turns);
    });
}

/// Pinned scopes (`Strict`, the default), sixteen to a connection: each
/// task waits for its own.
fn pinpool_pinned(warm_up: u64, n: u64) {
    contended(warm_up, n, pinpool, |pool, turns| async move {
        pool.pinned(async {
            turns!(pool, turns);
        })
        .await
    });
}

fn bb8_contended(warm_up: u64, n: u64) {
    let pool = || {
        bb8::Pool::builder()
            .max_size(CONNECTIONS as u32)
            .build_unchecked(Bb8Noop)
    };
    contended(warm_up, n, pool, |pool, turns| async move {
        turns!(pool, turns);
    });
}

fn deadpool_contended(warm_up: u64, n: u64) {
    let pool = || -> deadpool::managed::Pool<DeadpoolNoop> {
        deadpool::managed::Pool::builder(DeadpoolNoop)
            .max_size(CONNECTIONS)
            // The 30 s checkout timeout pinpool and bb8 have by default
            // (deadpool's is off): a timer for each checkout that waits.
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool")
    };
    contended(warm_up, n, pool, |pool, turns| async move {
        turns!(pool, turns);
    });
}

/// The turns alone, no checkout: what every scenario above shares.
fn yield_only(warm_up: u64, n: u64) {
    contended(
        warm_up,
        n,
        || (),
        |(), turns| async move {
            for _ in 0..turns {
                tokio::task::yield_now().await;
                black_box(());
            }
        },
    );
}

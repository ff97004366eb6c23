//! Tasks taking turns on shared connections, for `benches/instructions.sh`
//! to count with callgrind (`interleaved <scenario> <warm-up> <n>`, as the
//! `instructions` binary): 16 tasks over 4 connections on one thread, each
//! yielding after every checkout, so every turn follows another task's.
//! What a pinned task pays when the task before it on its connection was
//! another one pinned to it, against the same turns unpinned; the turns
//! alone (the yield, the task switch) are counted too, to subtract.
//!
//! A binary of its own: beside the `instructions` scenarios, the extra
//! callers of `Pool::get` changed how the compiler inlined it there (the
//! uncontended async pinned count moved by 50 instructions).

use std::future::Future;
use std::hint::black_box;
use std::process::ExitCode;

use pinpool_peers::noop::{AsyncNoop, async_noop};
use pinpool_peers::scenario::{self, Scenario, runtime};

/// The scenarios, by name: one operation is one task's turn.
const SCENARIOS: [(&str, Scenario); 3] = [
    ("pinpool-tokio-pinned-interleaved", tokio_pinned_interleaved),
    (
        "pinpool-tokio-unpinned-interleaved",
        tokio_unpinned_interleaved,
    ),
    ("tokio-yield-interleaved", tokio_yield_interleaved),
];

fn main() -> ExitCode {
    scenario::main("interleaved", &SCENARIOS)
}

/// Tasks and connections of the interleaved scenarios: four tasks to a
/// connection, taking turns.
const TASKS: u64 = 16;
const CONNECTIONS: usize = 4;

/// Runs `TASKS` tasks that each do their share of `warm_up + n` turns of
/// `turn`, yielding after each, so the tasks run round-robin: every turn
/// follows another task's.
fn interleaved<F: Future<Output = ()> + Send + 'static>(
    warm_up: u64,
    n: u64,
    turn: fn(pinpool::tokio::Pool<AsyncNoop>, u64) -> F,
) {
    runtime().block_on(async {
        let pool = four_connections();
        let turns = (warm_up + n).div_ceil(TASKS);
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| tokio::spawn(turn(pool.clone(), turns)))
            .collect();
        for task in tasks {
            task.await.expect("a task");
        }
    });
}

fn four_connections() -> pinpool::tokio::Pool<AsyncNoop> {
    pinpool::tokio::Pool::builder()
        .max_size(CONNECTIONS)
        .min_size(CONNECTIONS)
        .build(async_noop as AsyncNoop)
        .expect("a valid configuration")
}

/// Pinned scopes taking turns on shared connections: a pinned task's
/// connection was last used by another task pinned to it, whose lease its
/// checkout recalls (`Pinning::Strict`, four scopes to a connection).
fn tokio_pinned_interleaved(warm_up: u64, n: u64) {
    interleaved(warm_up, n, |pool, turns| async move {
        pool.pinned(async {
            for _ in 0..turns {
                drop(black_box(pool.get().await.expect("a connection")));
                tokio::task::yield_now().await;
            }
        })
        .await
    });
}

/// The same turns outside any scope: each checkout takes a connection from
/// the stash.
fn tokio_unpinned_interleaved(warm_up: u64, n: u64) {
    interleaved(warm_up, n, |pool, turns| async move {
        for _ in 0..turns {
            drop(black_box(pool.get().await.expect("a connection")));
            tokio::task::yield_now().await;
        }
    });
}

/// The turns alone (the yield and the task switch, no checkout): what the
/// two scenarios above share, to subtract from both.
fn tokio_yield_interleaved(warm_up: u64, n: u64) {
    interleaved(warm_up, n, |pool, turns| async move {
        for _ in 0..turns {
            black_box(&pool);
            tokio::task::yield_now().await;
        }
    });
}

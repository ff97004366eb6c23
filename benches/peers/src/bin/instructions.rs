//! One operation of one pool, in a loop, for `benches/instructions.sh` to
//! count with callgrind: `instructions <scenario> <warm-up> <n>`.
//! The script runs each scenario twice with different `n` and divides the
//! difference, so what the process does once (start-up, building the
//! pool, the warm-up) cancels out and the count per operation remains.
//! Everything runs on one thread (a current-thread runtime for the async
//! pools), so the count is the same from run to run.
//!
//! Without arguments (as `cargo test` runs it) every scenario runs briefly;
//! `--list` names them.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

use pinpool::core::{Action, Checkout, Config, ConnId, Core, Health, OwnerId, Pinning, WakePolicy};
use pinpool_peers::noop::{AsyncNoop, Bb8Noop, DeadpoolNoop, Noop, R2d2Noop, async_noop, noop};
use pinpool_peers::scenario::{self, Scenario, repeat, runtime};

/// The `validate_after_idle` window of the `-validating` rows: longer than
/// any run, so every checkout reads the clock and validates nothing.
const WINDOW: Duration = Duration::from_secs(3600);

/// The scenarios, by name: what one operation is.
const SCENARIOS: [(&str, Scenario); 12] = [
    ("pinpool-blocking-pinned", blocking_pinned),
    (
        "pinpool-blocking-pinned-validating",
        blocking_pinned_validating,
    ),
    ("pinpool-blocking-unpinned", blocking_unpinned),
    ("pinpool-tokio-pinned", tokio_pinned),
    ("pinpool-tokio-pinned-validating", tokio_pinned_validating),
    ("pinpool-tokio-unpinned", tokio_unpinned),
    ("pinpool-tokio-session", tokio_session),
    ("pinpool-core-handoff", core_handoff),
    ("pinpool-core-checkout-checkin", core_checkout_checkin),
    ("r2d2", r2d2_get_drop),
    ("bb8", bb8_get_drop),
    ("deadpool", deadpool_get_drop),
];

fn main() -> ExitCode {
    scenario::main("instructions", &SCENARIOS)
}

fn blocking(pinning: Pinning) -> pinpool::blocking::Pool<Noop> {
    pinpool::blocking::Pool::builder()
        .max_size(1)
        .pinning(pinning)
        .build(noop as Noop)
        .expect("a valid configuration")
}

/// A pinned thread's get + drop: its own connection, from its lease.
fn blocking_pinned(warm_up: u64, n: u64) {
    let pool = blocking(Pinning::Strict);
    repeat(warm_up, n, || {
        drop(black_box(pool.get().expect("a connection")))
    });
}

/// The same, validating connections unused for the [`WINDOW`].
fn blocking_pinned_validating(warm_up: u64, n: u64) {
    let pool = pinpool::blocking::Pool::builder()
        .max_size(1)
        .validate_after_idle(WINDOW)
        .build(noop as Noop)
        .expect("a valid configuration");
    repeat(warm_up, n, || {
        drop(black_box(pool.get().expect("a connection")))
    });
}

/// Under `Pinning::Off`: a connection from the stash.
fn blocking_unpinned(warm_up: u64, n: u64) {
    let pool = blocking(Pinning::Off);
    repeat(warm_up, n, || {
        drop(black_box(pool.get().expect("a connection")))
    });
}

fn tokio_pool() -> pinpool::tokio::Pool<AsyncNoop> {
    tokio_pool_with(pinpool::tokio::Pool::builder())
}

fn tokio_pool_with(
    builder: pinpool::Builder<pinpool::tokio::Pool<AsyncNoop>>,
) -> pinpool::tokio::Pool<AsyncNoop> {
    builder
        .max_size(1)
        .build(async_noop as AsyncNoop)
        .expect("a valid configuration")
}

/// Inside a pinned scope: the scope's own connection, from its lease.
fn tokio_pinned(warm_up: u64, n: u64) {
    tokio_pinned_in(tokio_pool(), warm_up, n);
}

/// The same, validating connections unused for the [`WINDOW`].
fn tokio_pinned_validating(warm_up: u64, n: u64) {
    let builder = pinpool::tokio::Pool::builder().validate_after_idle(WINDOW);
    tokio_pinned_in(tokio_pool_with(builder), warm_up, n);
}

/// Get + drop inside a scope pinned on `pool`.
fn tokio_pinned_in(pool: pinpool::tokio::Pool<AsyncNoop>, warm_up: u64, n: u64) {
    runtime().block_on(async {
        pool.pinned(async {
            for _ in 0..warm_up + n {
                drop(black_box(pool.get().await.expect("a connection")));
            }
        })
        .await;
    });
}

/// A session's get + drop: its own connection, from the session's lease.
fn tokio_session(warm_up: u64, n: u64) {
    runtime().block_on(async {
        let pool = tokio_pool();
        let mut session = pool.session();
        for _ in 0..warm_up + n {
            drop(black_box(session.get().await.expect("a connection")));
        }
    });
}

/// Outside any scope: a connection from the stash.
fn tokio_unpinned(warm_up: u64, n: u64) {
    runtime().block_on(async {
        let pool = tokio_pool();
        for _ in 0..warm_up + n {
            drop(black_box(pool.get().await.expect("a connection")));
        }
    });
}

/// A core with one connection, established and checked out to `holder`;
/// a checkin hands it straight to a waiter (`WakePolicy::Handoff`).
fn one_connection(holder: OwnerId) -> (Core, ConnId) {
    let config = Config {
        max_size: 1,
        wake: WakePolicy::Handoff,
        ..Config::default()
    };
    let mut core = Core::new(config).expect("a valid configuration");
    let Checkout::Waiting(_) = core.checkout(holder) else {
        unreachable!("nothing is open yet")
    };
    let Some(Action::Open(conn)) = core.poll_action() else {
        unreachable!("it opens one")
    };
    core.connected(conn).expect("connecting");
    while core.poll_action().is_some() {}
    (core, conn)
}

/// The core's decision when a checkin hands its connection to a waiter:
/// the holder's checkin grants it to the owner waiting for it, which then
/// holds it while the other waits (one waiting checkout, one checkin that
/// grants).
fn core_handoff(warm_up: u64, n: u64) {
    let (mut holder, mut next) = (OwnerId(1), OwnerId(2));
    let (mut core, conn) = one_connection(holder);
    repeat(warm_up, n, || {
        let Checkout::Waiting(ticket) = core.checkout(next) else {
            unreachable!("the connection is held")
        };
        core.checkin(conn, Health::Healthy).expect("held");
        let granted = core.poll_action();
        assert_eq!(granted, Some(Action::Grant { ticket, conn }));
        std::mem::swap(&mut holder, &mut next);
    });
}

/// The core's uncontended checkout and checkin (what a pool without the
/// fast path asks for every get + drop).
fn core_checkout_checkin(warm_up: u64, n: u64) {
    let owner = OwnerId(1);
    let (mut core, conn) = one_connection(owner);
    core.checkin(conn, Health::Healthy).expect("held");
    repeat(warm_up, n, || {
        let checkout = core.checkout(owner);
        assert_eq!(checkout, Checkout::Granted(conn));
        core.checkin(conn, Health::Healthy).expect("held");
    });
}

fn r2d2_get_drop(warm_up: u64, n: u64) {
    let pool = r2d2::Pool::builder()
        .max_size(1)
        .test_on_check_out(false)
        .build(R2d2Noop)
        .expect("a pool");
    repeat(warm_up, n, || {
        drop(black_box(pool.get().expect("a connection")))
    });
}

fn bb8_get_drop(warm_up: u64, n: u64) {
    runtime().block_on(async {
        let pool = bb8::Pool::builder()
            .max_size(1)
            .test_on_check_out(false)
            .build(Bb8Noop)
            .await
            .expect("a pool");
        for _ in 0..warm_up + n {
            drop(black_box(pool.get().await.expect("a connection")));
        }
    });
}

fn deadpool_get_drop(warm_up: u64, n: u64) {
    runtime().block_on(async {
        let pool: deadpool::managed::Pool<DeadpoolNoop> =
            deadpool::managed::Pool::builder(DeadpoolNoop)
                .max_size(1)
                .build()
                .expect("a pool");
        for _ in 0..warm_up + n {
            drop(black_box(pool.get().await.expect("a connection")));
        }
    });
}

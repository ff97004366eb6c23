//! Why `Strict` + `Handoff` trails r2d2 when threads outnumber
//! connections, and the hand-off convoy `Off` and `Affinity` fell into
//! there before `Eventual` counted bypasses only after holds of 10 µs
//! (the row counting every hold shows it): context switches per
//! checkout, beside throughput, for pinpool under each wake policy and
//! for r2d2, in the same run.
//!
//! `cargo run --release -p pinpool-peers --bin switches [-- --threads 4,16]`
//!
//! Each cell runs `threads` threads over 4 connections, each doing
//! `--checkouts` get + drop with nothing held between (the criterion
//! benchmark's loop). Every worker reads its own switch counts from
//! `/proc/thread-self/status` as it ends (Linux): *voluntary* switches are
//! a thread blocking (a futex wait: parked for a connection, or for a
//! lock), *involuntary* ones the scheduler preempting it. A strict
//! hand-off to a parked waiter costs at least one voluntary switch (the
//! waiter parked) and a wake-up; a pool that lets the returning thread
//! take the connection again costs none while its time slice lasts.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use pinpool::core::{Pinning, WakePolicy};
use pinpool_peers::noop::{Noop, R2d2Noop, noop};

#[derive(Parser)]
#[command(about = "Context switches per checkout: pinpool's wake policies beside r2d2")]
struct Args {
    /// Thread counts, over 4 connections.
    #[arg(long, value_delimiter = ',', default_value = "4,16,64")]
    threads: Vec<usize>,
    /// Checkouts per thread.
    #[arg(long, default_value_t = 20_000)]
    checkouts: u64,
    /// Start the workers on a pool just built, without a checkout each
    /// before the clock: they find it still opening its connections and
    /// wait, as an application's threads would at start-up.
    #[arg(long)]
    cold: bool,
}

const CONNECTIONS: usize = 4;

/// The default's eventual fairness without its `min_hold`: every checkin
/// counts toward a hand-off, as before 2026-12-05, so a waiter for any
/// connection is handed one after 16 bypasses however short the holds.
const COUNTING_EVERY_HOLD: WakePolicy = WakePolicy::Eventual {
    bypasses: 16,
    period: Duration::from_micros(500),
    min_hold: Duration::ZERO,
};

/// A thread's context switches so far: (voluntary, involuntary).
fn switches() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// A pool under test: one checkout, dropped at once.
type Checkout = Arc<dyn Fn() + Send + Sync>;

/// A fresh pool for each cell: a cell's threads leave their pins behind.
type NewPool = fn() -> Checkout;

fn pinpool(pinning: Pinning, wake: WakePolicy) -> Checkout {
    let pool = pinpool::blocking::Pool::builder()
        .max_size(CONNECTIONS)
        .min_size(CONNECTIONS)
        .pinning(pinning)
        .wake(wake)
        .build(noop as Noop)
        .expect("a valid configuration");
    Arc::new(move || drop(pool.get().expect("a connection")))
}

fn r2d2() -> Checkout {
    let pool = r2d2::Pool::builder()
        .max_size(CONNECTIONS as u32)
        .test_on_check_out(false)
        .build(R2d2Noop)
        .expect("a pool");
    Arc::new(move || drop(pool.get().expect("a connection")))
}

/// One cell's figures.
struct Cell {
    per_second: f64,
    voluntary: f64,
    involuntary: f64,
}

fn run(checkout: &Checkout, threads: usize, checkouts: u64, cold: bool) -> Cell {
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (checkout, start) = (Arc::clone(checkout), Arc::clone(&start));
            std::thread::spawn(move || {
                if !cold {
                    checkout(); // pins the thread before the clock starts
                }
                start.wait();
                let before = switches();
                for _ in 0..checkouts {
                    checkout();
                }
                let after = switches();
                (after.0 - before.0, after.1 - before.1)
            })
        })
        .collect();
    // Read before the barrier opens: once it does, sixteen workers on two
    // cores may keep this thread off the CPU for most of the run.
    let began = Instant::now();
    start.wait();
    let (mut voluntary, mut involuntary) = (0, 0);
    for worker in workers {
        let (v, i) = worker.join().expect("a worker");
        voluntary += v;
        involuntary += i;
    }
    let total = (threads as u64 * checkouts) as f64;
    Cell {
        per_second: total / began.elapsed().as_secs_f64(),
        voluntary: voluntary as f64 / total,
        involuntary: involuntary as f64 / total,
    }
}

fn main() {
    let args = Args::parse();
    let pools: Vec<(&str, NewPool)> = vec![
        ("pinpool Strict, Handoff", || {
            pinpool(Pinning::Strict, WakePolicy::Handoff)
        }),
        ("pinpool Strict, default (Eventual)", || {
            pinpool(Pinning::Strict, WakePolicy::default())
        }),
        ("pinpool Off, Handoff", || {
            pinpool(Pinning::Off, WakePolicy::Handoff)
        }),
        ("pinpool Off, default (Eventual)", || {
            pinpool(Pinning::Off, WakePolicy::default())
        }),
        ("pinpool Affinity, default (Eventual)", || {
            pinpool(Pinning::Affinity, WakePolicy::default())
        }),
        ("pinpool Affinity, Eventual counting every hold", || {
            pinpool(Pinning::Affinity, COUNTING_EVERY_HOLD)
        }),
        ("r2d2", r2d2),
    ];
    println!(
        "| threads | pool | checkouts/s | × r2d2 | voluntary switches per checkout | involuntary |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for &threads in &args.threads {
        let cells: Vec<_> = pools
            .iter()
            .map(|(name, build)| (name, run(&build(), threads, args.checkouts, args.cold)))
            .collect();
        let r2d2 = cells.last().map_or(1.0, |(_, cell)| cell.per_second);
        for (name, cell) in &cells {
            println!(
                "| {threads} | {name} | {:.0} | {:.2} | {:.3} | {:.3} |",
                cell.per_second,
                cell.per_second / r2d2,
                cell.voluntary,
                cell.involuntary
            );
        }
    }
}

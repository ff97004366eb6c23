//! What a lifetime jitter does for the waits when a pool's connections
//! reach their `max_lifetime`: the "mass extinction" HikariCP's variance
//! exists for (HikariCP#2203: latency every ten minutes, the pool down to
//! nothing and reconnecting).
//!
//! `cargo run --release -p pinpool-peers --bin lifetimes [-- --jitters 0,2.5,10]`
//!
//! An async pool of `--size` connections, all opened at start
//! (`min_size` = `max_size`), each connect taking `--connect-ms` (a
//! PostgreSQL backend's start, TLS and login), at most `--max-connecting`
//! at once; `--tasks` tasks loop checkout, a `--hold-ms` sleep (a round
//! trip), checkin, for `--seconds`, over a `--lifetime-ms` lifetime, so the
//! first generation of connections expires in the run and the second
//! (opened as the first closed) starts to. Per jitter (a percentage of the
//! lifetime): throughput, the checkout waits' percentiles and maximum, how
//! many waits were longer than a connect, and the connections closed.

use std::time::{Duration, Instant};

use clap::Parser;
use pinpool::core::Pinning;

#[derive(Parser)]
#[command(about = "Checkout waits as connections reach their lifetime, with and without jitter")]
struct Args {
    /// Lifetime jitters to run, each a percentage of the lifetime.
    #[arg(long, value_delimiter = ',', default_value = "0,2.5,10")]
    jitters: Vec<f64>,
    /// Connections, all opened at start.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Connects at once (by default as many as connections, as pools
    /// without such a bound open them: with fewer, the pool's own filling
    /// staggers the connections' births, and with them their expiries).
    #[arg(long, default_value_t = 32)]
    max_connecting: usize,
    /// How long a connect takes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    connect_ms: u64,
    /// Tasks looping checkout, hold, checkin.
    #[arg(long, default_value_t = 96)]
    tasks: usize,
    /// How long each checkout holds its connection, in milliseconds.
    #[arg(long, default_value_t = 1)]
    hold_ms: u64,
    /// The connections' `max_lifetime`, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    lifetime_ms: u64,
    /// How long each run lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// Opens a connection that is nothing, after `0`.
struct SlowConnect(Duration);

impl pinpool::tokio::Manager for SlowConnect {
    type Connection = ();
    type Error = std::io::Error;

    async fn connect(&self) -> Result<(), std::io::Error> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

/// One run's waits (µs, sorted) and the connections its pool closed.
struct Run {
    waits: Vec<u64>,
    closed: u64,
    length: Duration,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.waits.len() as f64 * p).ceil() as usize).saturating_sub(1);
        Duration::from_micros(self.waits.get(index).copied().unwrap_or(0))
    }
}

async fn run(args: &Args, jitter_percent: f64) -> Run {
    let lifetime = Duration::from_millis(args.lifetime_ms);
    let connect = Duration::from_millis(args.connect_ms);
    let pool = pinpool::tokio::Pool::builder()
        .max_size(args.size)
        .min_size(args.size)
        .max_connecting(args.max_connecting)
        .pinning(Pinning::Off)
        .max_lifetime(lifetime)
        .max_lifetime_jitter(lifetime.mul_f64(jitter_percent / 100.0))
        .build(SlowConnect(connect))
        .expect("a valid configuration");
    // Every connection open before the clock starts: they are born
    // together, as a service's are at its start.
    let opening = Instant::now();
    while pool.state().idle < args.size {
        assert!(
            opening.elapsed() < Duration::from_secs(10),
            "the pool never filled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let hold = Duration::from_millis(args.hold_ms);
    let tasks: Vec<_> = (0..args.tasks)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut waits = Vec::new();
                while Instant::now() < end {
                    let asked = Instant::now();
                    let conn = pool.get().await.expect("a connection");
                    waits.push(asked.elapsed().as_micros() as u64);
                    tokio::time::sleep(hold).await;
                    drop(conn);
                }
                waits
            })
        })
        .collect();
    let mut waits = Vec::new();
    for task in tasks {
        waits.extend(task.await.expect("a task"));
    }
    waits.sort_unstable();
    Run {
        waits,
        closed: pool.state().counters.closed,
        length: start.elapsed(),
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "{} connections opened together, {} ms connects ({} at once), {} tasks holding {} ms, lifetime {} ms, {} s a run",
        args.size,
        args.connect_ms,
        args.max_connecting,
        args.tasks,
        args.hold_ms,
        args.lifetime_ms,
        args.seconds
    );
    println!();
    println!(
        "| jitter | checkouts/s | p50 ms | p99 ms | p99.9 ms | max ms | waits > {} ms | closed |",
        args.connect_ms
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for &jitter in &args.jitters {
        let run = runtime.block_on(run(&args, jitter));
        let long = run
            .waits
            .iter()
            .filter(|&&wait| wait > args.connect_ms * 1_000)
            .count();
        println!(
            "| {jitter} % | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {long} | {} |",
            run.waits.len() as f64 / run.length.as_secs_f64(),
            ms(run.percentile(0.5)),
            ms(run.percentile(0.99)),
            ms(run.percentile(0.999)),
            ms(run.percentile(1.0)),
            run.closed,
        );
    }
}

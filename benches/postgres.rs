//! The pools on a real PostgreSQL server: pinpool against r2d2_postgres,
//! bb8-postgres and deadpool-postgres, in the same run, with `pgbench` as
//! the server's ceiling. `bash benches/postgres.sh` starts a throwaway
//! server and runs `cargo bench --bench postgres`.
//!
//! Grid: pool size {4, 8, 16} × workers {4, 16, 64} (threads for the
//! blocking pools, tasks on a 2-worker runtime for the async ones). Each
//! worker loops: check out, run one prepared `SELECT $1::int`, check in —
//! each pool its best way: pinpool's pinned owner (`Exclusive` while
//! workers ≤ size, else `Strict`) keeps its `Statement` for its
//! connection; under `Off` the session's cache (`prepare_cached`, a
//! statement per connection);
//! deadpool's `prepare_cached`; r2d2 and bb8 prepare on every checkout
//! (they have no cache). No pool validates a checkout unless `--validate`
//! says so (r2d2 and bb8 are told not to: by their defaults each checkout
//! costs a round trip more). Reported per cell: queries per second, the p99
//! checkout wait, pgbench's `-M prepared` throughput at the same client
//! count, and this process's CPU time per query (pool and driver: what
//! the client pays, which the server's share of the cores blurs less than
//! the throughput); with `--rounds N`, each pool's median round and each
//! pinpool row's ratio to its peer round by round, with the geometric
//! mean's 95 % confidence interval (`--pools` narrows a cell to the pools
//! compared, so that more rounds fit); and per worker count,
//! each driver alone (a client per worker, no pool), what any pool over
//! it could reach at best, and what its queries cost without one.
//! `--pools` may name the drivers alone and pgbench too
//! (`postgres-alone`, `tokio-postgres-alone`, `pgbench`): they then take
//! their turn in each round of the cell like a pool, and the pinned rows'
//! ratios to them (and theirs to pgbench) come round by round with their
//! intervals, where a single pgbench run an hour's drift away from the
//! pools' rounds could not say whether a row reached 90 % of it.
//!
//! Not criterion: the figure is the throughput of many concurrent workers
//! and the distribution of their waits, not the time of one closure.
//! `cargo test --all-targets` runs one short cell of each pool as a smoke
//! test (when `PINPOOL_PG_URL` names a server).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use pinpool::core::{ConnId, Pinning};
use pinpool::postgres::{AsyncPgManager, PgManager};
use postgres::{NoTls, Statement};

const QUERY: &str = "SELECT $1::int";

/// What one worker measured: queries done and each checkout's wait (µs).
#[derive(Default)]
struct Tally {
    queries: u64,
    waits: Vec<u32>,
}

impl Tally {
    fn record(&mut self, waited: Duration) {
        self.queries += 1;
        self.waits
            .push(u32::try_from(waited.as_micros()).unwrap_or(u32::MAX));
    }

    fn merge(tallies: impl IntoIterator<Item = Tally>) -> Tally {
        tallies.into_iter().fold(Tally::default(), |mut all, t| {
            all.queries += t.queries;
            all.waits.extend(t.waits);
            all
        })
    }
}

/// One pool's result in one cell.
struct Outcome {
    per_second: f64,
    p99_wait_us: u32,
    /// This process's CPU time (every thread's, user and system) per
    /// query counted: the client's cost of a query, pool and driver, which
    /// the server's share of the 2 cores does not blur as it does the
    /// throughput. `None` where `/proc/self/stat` cannot be read.
    cpu_per_query: Option<Duration>,
}

impl Outcome {
    /// `tally`'s queries ran in `ran`, while this process used `cpu`.
    fn of(mut tally: Tally, ran: Duration, cpu: Option<Duration>) -> Outcome {
        tally.waits.sort_unstable();
        let rank = (tally.waits.len() * 99).div_ceil(100).max(1);
        Outcome {
            per_second: tally.queries as f64 / ran.as_secs_f64(),
            p99_wait_us: tally.waits.get(rank - 1).copied().unwrap_or(0),
            cpu_per_query: cpu
                .map(|cpu| cpu / u32::try_from(tally.queries.max(1)).unwrap_or(u32::MAX)),
        }
    }

    /// The CPU per query in µs, for the table.
    fn cpu_us(&self) -> String {
        self.cpu_per_query
            .map_or("-".into(), |cpu| format!("{:.1}", cpu.as_secs_f64() * 1e6))
    }
}

/// The CPU time this process has used, all its threads (those that have
/// ended too), user and system: `/proc/self/stat`'s `utime` and `stime`,
/// in the kernel's user-visible ticks (`USER_HZ`, 100 a second on Linux's
/// common architectures: a 2 s cell on 2 cores is hundreds of ticks).
fn process_cpu() -> Option<Duration> {
    const USER_HZ: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name, which may hold spaces, in parentheses: the
    // state is field 3, so utime (14) and stime (15) are 11 and 12 on.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// The CPU used since `from` (both `None` where it cannot be read).
fn cpu_since(from: Option<Duration>) -> Option<Duration> {
    Some(process_cpu()?.saturating_sub(from?))
}

/// One blocking worker: its next checkout + query, returning the wait.
type Step = Box<dyn FnMut() -> Duration + Send>;

/// Runs `workers` threads, each looping the step `worker` makes for it,
/// for `length` after they all started.
fn threads(workers: usize, length: Duration, worker: impl Fn(usize) -> Step + Sync) -> Outcome {
    let start = std::sync::Barrier::new(workers + 1);
    let (tallies, cpu) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (start, mut step) = (&start, worker(i));
                s.spawn(move || {
                    step(); // connected and prepared before the clock runs
                    start.wait();
                    let until = Instant::now() + length;
                    let mut tally = Tally::default();
                    while Instant::now() < until {
                        tally.record(step());
                    }
                    tally
                })
            })
            .collect();
        start.wait();
        let cpu_from = process_cpu();
        let tallies = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>();
        (tallies, cpu_since(cpu_from))
    });
    Outcome::of(Tally::merge(tallies), length, cpu)
}

/// One async worker's loop for `length`, returning its tally.
type Task = Pin<Box<dyn Future<Output = Tally> + Send>>;

/// Runs on a 2-worker runtime the tasks `spawn_all` makes (inside the
/// runtime, so a pool it builds finds one), given when they stop: 200 ms
/// to connect and prepare, then `length` that counts.
fn tasks(length: Duration, spawn_all: impl FnOnce(Instant) -> Vec<Task>) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let until = Instant::now() + Duration::from_millis(200) + length;
    // The CPU count starts as the tasks start counting queries (the
    // benchmark's clock: nothing here waits for a task).
    let cpu_from = std::thread::spawn(move || {
        std::thread::sleep((until - length).saturating_duration_since(Instant::now()));
        process_cpu()
    });
    let handles: Vec<_> = spawn_all(until)
        .into_iter()
        .map(|task| runtime.spawn(task))
        .collect();
    let tallies = runtime.block_on(async {
        let mut all = Vec::new();
        for handle in handles {
            all.push(handle.await.unwrap());
        }
        all
    });
    let cpu = cpu_since(cpu_from.join().unwrap());
    Outcome::of(Tally::merge(tallies), length, cpu)
}

/// The loop every async worker runs until `until`, recording the wait
/// `checkout` (an `async` block that checks out, queries and checks in)
/// evaluates to once `warm_up_until` has passed. A macro, so the block's
/// borrows and awaits stay in the task's own future.
macro_rules! async_loop {
    ($until:expr, $warm_up_until:expr, $checkout:block) => {{
        let mut tally = Tally::default();
        while Instant::now() < $until {
            let waited = $checkout;
            if Instant::now() >= $warm_up_until {
                tally.record(waited);
            }
        }
        tally
    }};
}

/// The cell's pools, each measured in turn.
struct Cell<'a> {
    /// The server's connection string.
    url: &'a str,
    size: usize,
    workers: usize,
    length: Duration,
    validate: Validate,
}

/// Which checkouts validate their connection (`--validate`), in every
/// pool that can: by default none, as none of the pools needs to on a
/// server nothing disconnects (r2d2 and bb8 validate every checkout
/// unless told not to; before 2026-12-06 this benchmark left them so,
/// a round trip more a query than pinpool's and deadpool's).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Validate {
    None,
    /// Every checkout: pinpool's `validate_on_checkout`, r2d2's and bb8's
    /// `test_on_check_out`, deadpool's `RecyclingMethod::Verified`.
    Every,
    /// pinpool's `validate_after_idle` of [`IDLE_WINDOW`]; the peers,
    /// which have no such option, validate every checkout.
    AfterIdle,
}

/// The window of `--validate after-idle`: HikariCP's.
const IDLE_WINDOW: Duration = Duration::from_millis(500);

impl Validate {
    /// The builder's setting for a pinpool pool.
    fn pinpool<P>(self, builder: pinpool::Builder<P>) -> pinpool::Builder<P> {
        match self {
            Validate::None => builder,
            Validate::Every => builder.validate_on_checkout(true),
            Validate::AfterIdle => builder.validate_after_idle(IDLE_WINDOW),
        }
    }

    /// Whether a peer validates every checkout.
    fn peers(self) -> bool {
        self != Validate::None
    }
}

impl Cell<'_> {
    /// Each of `pools` `rounds` times, each round starting one pool
    /// further along them, so that no pool always runs first or after the
    /// same one (the server and the machine drift over a run); per pool
    /// of [`Pool::ALL`], its outcomes in round order (none for a pool not
    /// in `pools`). `pinned` is the pinpool rows' pinning.
    fn rounds(&self, pools: &[Pool], rounds: usize, pinned: Pinning) -> Vec<Vec<Outcome>> {
        let mut outcomes: Vec<Vec<Outcome>> = Pool::ALL.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for step in 0..pools.len() {
                let pool = pools[(round + step) % pools.len()];
                outcomes[pool as usize].push(self.measure(pool, pinned));
            }
        }
        outcomes
    }

    /// `pool`, measured once.
    fn measure(&self, pool: Pool, pinned: Pinning) -> Outcome {
        match pool {
            Pool::PinnedThreads => self.blocking_pinpool(pinned),
            Pool::OffThreads => self.blocking_pinpool(Pinning::Off),
            Pool::R2d2 => self.r2d2(),
            Pool::PinnedTasks => self.async_pinpool(pinned),
            Pool::OffTasks => self.async_pinpool(Pinning::Off),
            Pool::Bb8 => self.bb8(),
            Pool::Deadpool => self.deadpool(),
            Pool::PostgresAlone => self.alone().postgres(),
            Pool::TokioPostgresAlone => self.alone().tokio_postgres(),
            Pool::Pgbench => Outcome {
                per_second: pgbench(self.url, self.workers, self.length)
                    .expect("pgbench ran (PINPOOL_PGBENCH names it where it is elsewhere)"),
                p99_wait_us: 0,
                cpu_per_query: None,
            },
        }
    }

    /// Each driver alone, with the cell's workers.
    fn alone(&self) -> Alone<'_> {
        Alone {
            url: self.url,
            workers: self.workers,
            length: self.length,
        }
    }

    fn blocking_pinpool(&self, pinning: Pinning) -> Outcome {
        let builder = pinpool::blocking::Pool::builder()
            .max_size(self.size)
            .pinning(pinning)
            .checkout_timeout(Duration::from_secs(60));
        let pool = (self.validate.pinpool(builder))
            .build(PgManager::from_url(self.url).unwrap())
            .unwrap();
        let pinned = pinning != Pinning::Off;
        threads(self.workers, self.length, |i| {
            let pool = pool.clone();
            // A pinned thread's statement for its connection.
            let mut prepared: HashMap<ConnId, Statement> = HashMap::new();
            let arg = i as i32;
            Box::new(move || {
                let asked = Instant::now();
                let mut conn = pool.get().unwrap();
                let waited = asked.elapsed();
                let statement = if pinned {
                    let id = pinpool::blocking::PooledConnection::id(&conn);
                    prepared
                        .entry(id)
                        .or_insert_with(|| conn.prepare(QUERY).unwrap())
                        .clone()
                } else {
                    // A thread's unpinned checkouts go to every
                    // connection: the session's cache prepares once per
                    // connection.
                    conn.prepare_cached(QUERY).unwrap()
                };
                conn.query_one(&statement, &[&arg]).unwrap();
                waited
            })
        })
    }

    fn r2d2(&self) -> Outcome {
        let manager =
            r2d2_postgres::PostgresConnectionManager::new(self.url.parse().unwrap(), NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(self.size as u32)
            .connection_timeout(Duration::from_secs(60))
            .test_on_check_out(self.validate.peers())
            .build(manager)
            .unwrap();
        threads(self.workers, self.length, |i| {
            let pool = pool.clone();
            let arg = i as i32;
            Box::new(move || {
                let asked = Instant::now();
                let mut conn = pool.get().unwrap();
                let waited = asked.elapsed();
                let statement = conn.prepare(QUERY).unwrap();
                conn.query_one(&statement, &[&arg]).unwrap();
                waited
            })
        })
    }

    fn async_pinpool(&self, pinning: Pinning) -> Outcome {
        let builder = pinpool::tokio::Pool::builder()
            .max_size(self.size)
            .pinning(pinning)
            .checkout_timeout(Duration::from_secs(60));
        let pool = (self.validate.pinpool(builder))
            .build(AsyncPgManager::from_url(self.url).unwrap())
            .unwrap();
        let (pinned, length) = (pinning != Pinning::Off, self.length);
        tasks(length, |until| {
            (0..self.workers)
                .map(|i| -> Task {
                    let pool = pool.clone();
                    Box::pin(async move {
                        let warmed = until - length;
                        let work = async {
                            let mut prepared: HashMap<ConnId, tokio_postgres::Statement> =
                                HashMap::new();
                            async_loop!(until, warmed, {
                                let asked = Instant::now();
                                let mut conn = pool.get().await.unwrap();
                                let waited = asked.elapsed();
                                let statement = if pinned {
                                    let id = pinpool::tokio::PooledConnection::id(&conn);
                                    match prepared.get(&id) {
                                        Some(statement) => statement.clone(),
                                        None => {
                                            let statement = conn.prepare(QUERY).await.unwrap();
                                            prepared.insert(id, statement.clone());
                                            statement
                                        }
                                    }
                                } else {
                                    // A task's unpinned checkouts go to every
                                    // connection: the session's cache
                                    // prepares once per connection.
                                    conn.prepare_cached(QUERY).await.unwrap()
                                };
                                conn.query_one(&statement, &[&(i as i32)]).await.unwrap();
                                waited
                            })
                        };
                        if pinned {
                            pool.pinned(work).await
                        } else {
                            work.await
                        }
                    })
                })
                .collect()
        })
    }

    fn bb8(&self) -> Outcome {
        let length = self.length;
        let manager =
            bb8_postgres::PostgresConnectionManager::new(self.url.parse().unwrap(), NoTls);
        tasks(length, |until| {
            let pool = bb8::Pool::builder()
                .max_size(self.size as u32)
                .connection_timeout(Duration::from_secs(60))
                .test_on_check_out(self.validate.peers())
                .build_unchecked(manager);
            (0..self.workers)
                .map(|i| -> Task {
                    let pool = pool.clone();
                    Box::pin(async move {
                        let pool = &pool;
                        async_loop!(until, until - length, {
                            let asked = Instant::now();
                            let conn = pool.get().await.unwrap();
                            let waited = asked.elapsed();
                            let statement = conn.prepare(QUERY).await.unwrap();
                            conn.query_one(&statement, &[&(i as i32)]).await.unwrap();
                            waited
                        })
                    })
                })
                .collect()
        })
    }

    fn deadpool(&self) -> Outcome {
        let length = self.length;
        let manager = deadpool_postgres::Manager::from_config(
            self.url.parse().unwrap(),
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: if self.validate.peers() {
                    deadpool_postgres::RecyclingMethod::Verified
                } else {
                    deadpool_postgres::RecyclingMethod::Fast
                },
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(self.size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            // The checkout timeout every pool here has (deadpool's is off
            // by default; a timer per waiting checkout is part of the
            // cost of having one).
            .wait_timeout(Some(Duration::from_secs(60)))
            .build()
            .unwrap();
        tasks(length, |until| {
            (0..self.workers)
                .map(|i| -> Task {
                    let pool = pool.clone();
                    Box::pin(async move {
                        async_loop!(until, until - length, {
                            let asked = Instant::now();
                            let conn = pool.get().await.unwrap();
                            let waited = asked.elapsed();
                            let statement = conn.prepare_cached(QUERY).await.unwrap();
                            conn.query_one(&statement, &[&(i as i32)]).await.unwrap();
                            waited
                        })
                    })
                })
                .collect()
        })
    }
}

/// One row of the table: `pool`'s `outcome` in the cell of `size` (or
/// "-") and `workers`, with its share of pgbench's throughput `ceiling`.
fn print_row(size: &str, workers: usize, pool: Pool, outcome: &Outcome, ceiling: Option<f64>) {
    let share = ceiling.map_or("-".into(), |tps| {
        format!("{:.0}%", 100.0 * outcome.per_second / tps)
    });
    let p99_wait = if pool.checks_out() {
        outcome.p99_wait_us.to_string()
    } else {
        "-".into()
    };
    println!(
        "{size:>4} {workers:>7}  {:>28}  {:>10.0}  {p99_wait:>12}  {share:>9}  {:>11}",
        pool.name(),
        outcome.per_second,
        outcome.cpu_us()
    );
}

/// Each driver alone, no pool: every worker owns a client and loops the
/// same prepared query. What a pool over that driver could reach at best,
/// where workers ≤ pool size; pgbench (C, libpq) is the server's ceiling.
struct Alone<'a> {
    url: &'a str,
    workers: usize,
    length: Duration,
}

impl Alone<'_> {
    fn postgres(&self) -> Outcome {
        threads(self.workers, self.length, |i| {
            let mut client = postgres::Client::connect(self.url, NoTls).unwrap();
            let statement = client.prepare(QUERY).unwrap();
            let arg = i as i32;
            Box::new(move || {
                client.query_one(&statement, &[&arg]).unwrap();
                Duration::ZERO
            })
        })
    }

    fn tokio_postgres(&self) -> Outcome {
        let length = self.length;
        tasks(length, |until| {
            (0..self.workers)
                .map(|i| -> Task {
                    let url = self.url.to_owned();
                    Box::pin(async move {
                        let (client, connection) =
                            tokio_postgres::connect(&url, NoTls).await.unwrap();
                        tokio::spawn(connection);
                        let statement = client.prepare(QUERY).await.unwrap();
                        async_loop!(until, until - length, {
                            client.query_one(&statement, &[&(i as i32)]).await.unwrap();
                            Duration::ZERO
                        })
                    })
                })
                .collect()
        })
    }
}

/// pgbench's throughput for the same query at `clients` connections:
/// the server's ceiling. `None` when pgbench is not there.
fn pgbench(url: &str, clients: usize, length: Duration) -> Option<f64> {
    let pgbench = std::env::var("PINPOOL_PGBENCH")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pgbench".into());
    let script = std::env::temp_dir().join("pinpool-pgbench.sql");
    std::fs::write(&script, "\\set id random(1, 1000)\nSELECT :id::int;\n").ok()?;
    let output = std::process::Command::new(pgbench)
        // In the clear, as the pools' clients are: libpq would take the
        // TLS the test cluster offers.
        .env("PGSSLMODE", "disable")
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("-c{clients}"))
        .arg(format!("-T{}", length.as_secs().max(1)))
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("tps = "))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The round with the median throughput (the upper of the middle two of
/// an even count).
fn median(outcomes: &[Outcome]) -> &Outcome {
    let mut by_throughput: Vec<&Outcome> = outcomes.iter().collect();
    by_throughput.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    by_throughput[by_throughput.len() / 2]
}

/// `pool`'s throughput over `peer`'s, round by round (each pair ran
/// minutes apart at most, where whole rounds move by more): the range,
/// the median, how many rounds `pool` was ahead and, from three rounds,
/// the geometric mean with its 95 % confidence interval (Student's t on
/// the rounds' log ratios): whether a gap of a few percent is one at all.
fn per_round_ratios(pool: &[Outcome], peer: &[Outcome]) -> String {
    let mut ratios: Vec<f64> = (pool.iter().zip(peer))
        .map(|(pool, peer)| pool.per_second / peer.per_second)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ahead = ratios.iter().filter(|&&r| r >= 1.0).count();
    let mut line = format!(
        "{:.2}–{:.2}, median {:.2}, ahead in {ahead} of {}",
        ratios[0],
        ratios[ratios.len() - 1],
        ratios[ratios.len() / 2],
        ratios.len()
    );
    if let Some((mean, low, high)) = geometric_mean_interval(&ratios) {
        line += &format!(", geometric mean {mean:.3} (95 % CI {low:.3}–{high:.3})");
    }
    line
}

/// The geometric mean of `ratios` and its 95 % confidence interval, from
/// the mean and spread of their logarithms; `None` under three.
fn geometric_mean_interval(ratios: &[f64]) -> Option<(f64, f64, f64)> {
    let n = ratios.len();
    // Student's t, two-sided 95 %, for n − 1 = 2..=30 degrees of freedom;
    // the normal's 1.96 past that.
    const T95: [f64; 29] = [
        4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052,
        2.048, 2.045, 2.042,
    ];
    if n < 3 {
        return None;
    }
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let mean = logs.iter().sum::<f64>() / n as f64;
    let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T95.get(n - 3).copied().unwrap_or(1.96);
    let half = t * (variance / n as f64).sqrt();
    Some((mean.exp(), (mean - half).exp(), (mean + half).exp()))
}

/// Under `cargo test`, with or without a server: the interval of
/// [`geometric_mean_interval`] on ratios worked out by hand.
fn check_interval_arithmetic() {
    assert_eq!(geometric_mean_interval(&[0.9, 1.1]), None, "under three");
    let (mean, low, high) = geometric_mean_interval(&[0.97; 4]).expect("four ratios");
    assert!(
        (mean - 0.97).abs() < 1e-12 && low == mean && high == mean,
        "no spread"
    );
    // ln 0.5, 0, ln 2: mean 0, standard deviation ln 2; t(2) = 4.303.
    let (mean, low, high) = geometric_mean_interval(&[0.5, 1.0, 2.0]).expect("three ratios");
    let half = 4.303 * std::f64::consts::LN_2 / 3f64.sqrt();
    assert!((mean - 1.0).abs() < 1e-12, "geometric mean {mean}");
    assert!((low - (-half).exp()).abs() < 1e-9 && (high - half.exp()).abs() < 1e-9);
}

/// What a cell can measure, in the order of its table: the pools, then
/// what they are held against where workers ≤ pool size — each driver
/// alone (a client per worker, no pool) and pgbench.
#[derive(Clone, Copy, PartialEq)]
enum Pool {
    PinnedThreads,
    OffThreads,
    R2d2,
    PinnedTasks,
    OffTasks,
    Bb8,
    Deadpool,
    PostgresAlone,
    TokioPostgresAlone,
    Pgbench,
}

impl Pool {
    /// Every row, in declaration order: `pool as usize` is its place here.
    const ALL: [Pool; 10] = [
        Pool::PinnedThreads,
        Pool::OffThreads,
        Pool::R2d2,
        Pool::PinnedTasks,
        Pool::OffTasks,
        Pool::Bb8,
        Pool::Deadpool,
        Pool::PostgresAlone,
        Pool::TokioPostgresAlone,
        Pool::Pgbench,
    ];

    /// The rows a cell runs unless `--pools` names others: the pools, the
    /// first seven (the drivers alone and pgbench run once per worker
    /// count instead).
    const POOLS: &'static [Pool] = Pool::ALL.split_at(7).0;

    /// How `--pools` names it.
    fn key(self) -> &'static str {
        match self {
            Pool::PinnedThreads => "pinned-threads",
            Pool::OffThreads => "off-threads",
            Pool::R2d2 => "r2d2",
            Pool::PinnedTasks => "pinned-tasks",
            Pool::OffTasks => "off-tasks",
            Pool::Bb8 => "bb8",
            Pool::Deadpool => "deadpool",
            Pool::PostgresAlone => "postgres-alone",
            Pool::TokioPostgresAlone => "tokio-postgres-alone",
            Pool::Pgbench => "pgbench",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Pool::PinnedThreads => "pinpool pinned (threads)",
            Pool::OffThreads => "pinpool off (threads)",
            Pool::R2d2 => "r2d2 (threads)",
            Pool::PinnedTasks => "pinpool pinned (tasks)",
            Pool::OffTasks => "pinpool off (tasks)",
            Pool::Bb8 => "bb8 (tasks)",
            Pool::Deadpool => "deadpool (tasks)",
            Pool::PostgresAlone => "postgres alone (threads)",
            Pool::TokioPostgresAlone => "tokio-postgres alone (tasks)",
            Pool::Pgbench => "pgbench -M prepared",
        }
    }

    /// Whether its workers check out (and so have waits to report).
    fn checks_out(self) -> bool {
        Pool::POOLS.contains(&self)
    }
}

/// The per-round ratios printed with `--rounds`: each pinpool row against
/// the best peer of its kind; and, where `--pools` names them, each
/// pinned row against its driver alone (what the pool costs) and against
/// pgbench (issue #20's 90 %), and each driver alone against pgbench.
const RATIOS: [(Pool, Pool); 10] = [
    (Pool::PinnedThreads, Pool::R2d2),
    (Pool::OffThreads, Pool::R2d2),
    (Pool::PinnedTasks, Pool::Deadpool),
    (Pool::OffTasks, Pool::Deadpool),
    (Pool::PinnedThreads, Pool::PostgresAlone),
    (Pool::PinnedTasks, Pool::TokioPostgresAlone),
    (Pool::PinnedThreads, Pool::Pgbench),
    (Pool::PinnedTasks, Pool::Pgbench),
    (Pool::PostgresAlone, Pool::Pgbench),
    (Pool::TokioPostgresAlone, Pool::Pgbench),
];

/// The grid to run: the full one under `cargo bench`, narrowed by
/// `--sizes 16 --workers 64 --seconds 4` (after `--`) to look at one cell
/// again, `--rounds 8` to run each cell's pools that many times, and
/// `--pools pinned-tasks,deadpool` to run only those pools (and neither
/// pgbench nor the drivers alone, unless named): more rounds in the same time, each
/// pair closer together, and `--validate every` or `after-idle` to validate
/// checkouts (see [`Validate`]); one short cell under `cargo test`.
struct Grid {
    sizes: Vec<usize>,
    worker_counts: Vec<usize>,
    length: Duration,
    rounds: usize,
    /// The pools each cell runs; `None`: all, with pgbench and the
    /// drivers alone.
    pools: Option<Vec<Pool>>,
    validate: Validate,
}

impl Grid {
    fn from_args(benching: bool) -> Result<Grid, String> {
        let mut grid = if benching {
            Grid {
                sizes: vec![4, 8, 16],
                worker_counts: vec![4, 16, 64],
                length: Duration::from_secs(2),
                rounds: 1,
                pools: None,
                validate: Validate::None,
            }
        } else {
            Grid {
                sizes: vec![4],
                worker_counts: vec![4],
                length: Duration::from_millis(50), // a smoke test under cargo test
                rounds: 1,
                pools: None,
                validate: Validate::None,
            }
        };
        let mut args = std::env::args().skip(1);
        let counts = |value: Option<String>| -> Result<Vec<usize>, String> {
            let value = value.ok_or("a list of counts, e.g. 4,16")?;
            (value.split(','))
                .map(|n| match n.parse() {
                    Ok(count) if count > 0 => Ok(count),
                    _ => Err(format!("not a count above 0: {n:?}")),
                })
                .collect()
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--sizes" => grid.sizes = counts(args.next())?,
                "--workers" => grid.worker_counts = counts(args.next())?,
                "--rounds" => {
                    grid.rounds = match counts(args.next())?[..] {
                        [rounds] => rounds,
                        _ => return Err("--rounds: one count".into()),
                    }
                }
                "--pools" => {
                    let list = args
                        .next()
                        .ok_or("--pools: a list, e.g. pinned-tasks,deadpool")?;
                    let names: Vec<&str> = list.split(',').collect();
                    if let Some(name) =
                        (names.iter()).find(|&&n| Pool::ALL.iter().all(|p| p.key() != n))
                    {
                        return Err(format!("--pools: no pool {name:?}"));
                    }
                    // In the table's order, each once however often named.
                    let named = Pool::ALL
                        .into_iter()
                        .filter(|pool| names.contains(&pool.key()));
                    grid.pools = Some(named.collect());
                }
                "--validate" => {
                    grid.validate = match args.next().as_deref() {
                        Some("none") => Validate::None,
                        Some("every") => Validate::Every,
                        Some("after-idle") => Validate::AfterIdle,
                        _ => return Err("--validate: none, every or after-idle".into()),
                    }
                }
                "--seconds" => {
                    let seconds = args.next().and_then(|s| s.parse::<f64>().ok());
                    grid.length = seconds
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .filter(|length| !length.is_zero())
                        .ok_or("--seconds: a number of seconds above 0")?;
                }
                _ => {} // `--bench`, and the test harness's own flags
            }
        }
        Ok(grid)
    }
}

fn main() -> Result<(), String> {
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        check_interval_arithmetic();
    }
    let Ok(url) = std::env::var("PINPOOL_PG_URL") else {
        println!(
            "postgres bench: skipped (no PINPOOL_PG_URL; bash benches/postgres.sh starts a server)"
        );
        return Ok(());
    };
    let grid = Grid::from_args(benching)?;
    let (sizes, worker_counts, length) = (&grid.sizes, &grid.worker_counts, grid.length);
    println!(
        "{:>4} {:>7}  {:>28}  {:>10}  {:>12}  {:>9}  {:>11}",
        "size", "workers", "pool", "queries/s", "p99 wait µs", "of pgbench", "CPU µs/query"
    );
    let pools = grid.pools.as_deref().unwrap_or(Pool::POOLS);
    let every_pool = grid.pools.is_none();
    for &workers in worker_counts {
        let ceiling = (benching && every_pool)
            .then(|| pgbench(&url, workers, length))
            .flatten();
        for &size in sizes {
            let cell = Cell {
                url: &url,
                size,
                workers,
                length,
                validate: grid.validate,
            };
            // Exclusive sessions while every worker can have one; past
            // that, sessions that last the whole run would starve the
            // rest, and shared pins keep the statement per connection.
            let pinned = if workers <= size {
                Pinning::Exclusive
            } else {
                Pinning::Strict
            };
            let rounds = cell.rounds(pools, grid.rounds, pinned);
            // pgbench in this cell's rounds, else once for the worker count.
            let ceiling = pools
                .contains(&Pool::Pgbench)
                .then(|| median(&rounds[Pool::Pgbench as usize]).per_second)
                .or(ceiling);
            for &pool in pools {
                print_row(
                    &size.to_string(),
                    workers,
                    pool,
                    median(&rounds[pool as usize]),
                    ceiling,
                );
            }
            if grid.rounds > 1 {
                let measured = |pool: Pool| !rounds[pool as usize].is_empty();
                for (pool, peer) in RATIOS
                    .into_iter()
                    .filter(|&(a, b)| measured(a) && measured(b))
                {
                    let ratios = per_round_ratios(&rounds[pool as usize], &rounds[peer as usize]);
                    println!(
                        "{size:>4} {workers:>7}  {:>28}  × {}: {ratios}",
                        pool.name(),
                        peer.name()
                    );
                }
            }
        }
        if !every_pool {
            continue;
        }
        let alone = Alone {
            url: &url,
            workers,
            length,
        };
        print_row(
            "-",
            workers,
            Pool::PostgresAlone,
            &alone.postgres(),
            ceiling,
        );
        print_row(
            "-",
            workers,
            Pool::TokioPostgresAlone,
            &alone.tokio_postgres(),
            ceiling,
        );
        if let Some(tps) = ceiling {
            println!(
                "{:>4} {workers:>7}  {:>28}  {tps:>10.0}",
                "-",
                Pool::Pgbench.name()
            );
        }
    }
    Ok(())
}

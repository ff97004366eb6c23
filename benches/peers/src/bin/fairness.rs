//! Waiting time and its tail under oversubscription, pinpool beside r2d2
//! (threads) and bb8, deadpool and qp (tasks), in the same run: what users of
//! pools complain about most (a checkout that waits while later ones are
//! served — sqlx#453, HikariCP#2192 — and bb8's lost wake-up).
//!
//! `cargo run --release -p pinpool-peers --bin fairness [-- --chart waits.svg]`
//!
//! Each cell runs `workers` threads (or tasks) against 4 connections for a
//! fixed time; every checkout holds its connection as a database round
//! trip would (busy for 20 µs or 200 µs, or asleep for 1 ms). Per
//! checkout served after a warm-up it records how long it waited (also a
//! wait that began before), when it asked and when it got its connection
//! (two global sequence numbers), so the table gives the
//! wait's p50, p99, p99.9 and maximum, the throughput, and the most times
//! one checkout was overtaken: served after that many checkouts that asked
//! after it. (Waits on these shared 2-core machines include the
//! scheduler's; compare pools within a run, not runs.)

use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use pinpool::core::{Pinning, WakePolicy};
use pinpool_peers::noop::{
    AsyncNoop, Bb8Noop, DeadpoolNoop, Noop, QpNoop, R2d2Noop, async_noop, noop,
};

#[derive(Parser)]
#[command(
    about = "Waiting-time tails of pinpool, r2d2, bb8, deadpool and qp under oversubscription"
)]
struct Args {
    /// Seconds each cell is measured (after a fifth as long to warm up).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Worker counts (threads, or tasks), against 4 connections.
    #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
    workers: Vec<usize>,
    /// Draws the wait distributions of the 32-worker, 1 ms cell here (SVG).
    #[arg(long)]
    chart: Option<PathBuf>,
}

const CONNECTIONS: usize = 4;

/// How a checkout holds its connection.
#[derive(Clone, Copy, PartialEq)]
enum Hold {
    /// Busy for this long (the worker's CPU is in use, as it would be
    /// decoding rows). A task then yields once before it checks in: the
    /// scheduler preempts a busy thread, but never a task, and without
    /// that yield no more tasks could hold or want connections at once
    /// than the runtime has workers (4, as there are connections), so no
    /// checkout would ever wait.
    Busy(Duration),
    /// Asleep for this long (a round trip to the server).
    Asleep(Duration),
}

/// The hold whose 32-worker cell the chart shows: a round trip.
const CHARTED: Hold = Hold::Asleep(Duration::from_millis(1));

const HOLDS: [Hold; 3] = [
    Hold::Busy(Duration::from_micros(20)),
    Hold::Busy(Duration::from_micros(200)),
    Hold::Asleep(Duration::from_millis(1)),
];

impl Hold {
    fn label(self) -> String {
        match self {
            Hold::Busy(d) => format!("busy {} µs", d.as_micros()),
            Hold::Asleep(d) => format!("asleep {} ms", d.as_millis()),
        }
    }

    fn on_thread(self) {
        match self {
            Hold::Busy(d) => spin(d),
            Hold::Asleep(d) => std::thread::sleep(d),
        }
    }

    async fn in_task(self) {
        match self {
            Hold::Busy(d) => {
                spin(d);
                tokio::task::yield_now().await;
            }
            Hold::Asleep(d) => tokio::time::sleep(d).await,
        }
    }
}

fn spin(duration: Duration) {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// One checkout as the benchmark saw it.
struct Record {
    /// Its place in the order of asking, and of being served.
    asked: u64,
    served: u64,
    waited: Duration,
}

/// The global orders of asking and of being served, and the window in
/// which checkouts are recorded.
struct Run {
    asked: AtomicU64,
    served: AtomicU64,
    stop: AtomicBool,
    measure_from: Instant,
}

impl Run {
    fn new(warm_up: Duration) -> Self {
        Run {
            asked: AtomicU64::new(0),
            served: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            measure_from: Instant::now() + warm_up,
        }
    }

    fn running(&self) -> bool {
        !self.stop.load(Relaxed)
    }

    /// A checkout asks now: its number in the order of asking.
    fn ask(&self) -> (Instant, u64) {
        (Instant::now(), self.asked.fetch_add(1, Relaxed))
    }

    /// The checkout that asked at `(at, asked)` is served now: recorded if
    /// served after the warm-up, however long before it asked (a checkout
    /// left waiting since the start is the tail this measures).
    fn served(&self, (at, asked): (Instant, u64), records: &mut Vec<Record>) {
        let served = self.served.fetch_add(1, Relaxed);
        if Instant::now() >= self.measure_from {
            records.push(Record {
                asked,
                served,
                waited: at.elapsed(),
            });
        }
    }
}

// ------------------------------------------------------------ the pools

/// A blocking pool under test.
enum Threads {
    Pinpool(pinpool::blocking::Pool<Noop>),
    /// Exclusive pins, a session per checkout (reset between owners).
    PinpoolSessions(pinpool::blocking::Pool<Noop>),
    R2d2(r2d2::Pool<R2d2Noop>),
}

impl Threads {
    /// One checkout: `held` runs while the connection is held.
    fn checkout(&self, held: impl FnOnce()) {
        match self {
            Threads::Pinpool(pool) => {
                let _conn = pool.get().expect("a connection");
                held();
            }
            Threads::PinpoolSessions(pool) => {
                let mut session = pool.session();
                let _conn = session.get().expect("a connection");
                held();
            }
            Threads::R2d2(pool) => {
                let _conn = pool.get().expect("a connection");
                held();
            }
        }
    }
}

fn pinpool_threads(pinning: Pinning, wake: WakePolicy) -> pinpool::blocking::Pool<Noop> {
    pinpool::blocking::Pool::builder()
        .max_size(CONNECTIONS)
        .min_size(CONNECTIONS)
        .pinning(pinning)
        .wake(wake)
        .build(noop as Noop)
        .expect("a valid configuration")
}

/// What a pool is in the targets' comparison.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// pinpool as built by default.
    Default,
    /// pinpool with strict FIFO hand-off.
    Handoff,
    /// Another pinpool configuration, shown for comparison.
    Other,
    /// A peer pool.
    Peer,
}

/// The blocking pools, by name.
fn thread_pools() -> Vec<(&'static str, Role, Threads)> {
    let r2d2 = r2d2::Pool::builder()
        .max_size(CONNECTIONS as u32)
        .test_on_check_out(false)
        .build(R2d2Noop)
        .expect("a pool");
    vec![
        (
            "pinpool (default: Strict, Eventual)",
            Role::Default,
            Threads::Pinpool(pinpool_threads(Pinning::Strict, WakePolicy::default())),
        ),
        (
            "pinpool Strict Handoff",
            Role::Handoff,
            Threads::Pinpool(pinpool_threads(Pinning::Strict, WakePolicy::Handoff)),
        ),
        (
            "pinpool Off Handoff",
            Role::Other,
            Threads::Pinpool(pinpool_threads(Pinning::Off, WakePolicy::Handoff)),
        ),
        (
            "pinpool Exclusive sessions",
            Role::Other,
            Threads::PinpoolSessions(pinpool_threads(Pinning::Exclusive, WakePolicy::Handoff)),
        ),
        ("r2d2", Role::Peer, Threads::R2d2(r2d2)),
    ]
}

/// An async pool under test.
enum Tasks {
    Pinpool(pinpool::tokio::Pool<AsyncNoop>),
    /// Each task in a pinned scope of its own.
    PinpoolPinned(pinpool::tokio::Pool<AsyncNoop>),
    Bb8(bb8::Pool<Bb8Noop>),
    Deadpool(deadpool::managed::Pool<DeadpoolNoop>),
    /// Without validation on checkout, as the others are configured.
    Qp(qp::Pool<QpNoop>),
}

impl Tasks {
    /// One checkout, recorded when it is served; then held.
    async fn checkout(&self, run: &Run, hold: Hold, records: &mut Vec<Record>) {
        let asked = run.ask();
        let served = |records: &mut Vec<Record>| run.served(asked, records);
        match self {
            Tasks::Pinpool(pool) | Tasks::PinpoolPinned(pool) => {
                held(pool.get(), served, hold, records).await
            }
            Tasks::Bb8(pool) => held(pool.get(), served, hold, records).await,
            Tasks::Deadpool(pool) => held(pool.get(), served, hold, records).await,
            Tasks::Qp(pool) => held(pool.acquire_unchecked(), served, hold, records).await,
        }
    }
}

/// Waits for `conn`, records it served, holds it.
async fn held<C, E: std::fmt::Debug>(
    conn: impl Future<Output = Result<C, E>>,
    served: impl FnOnce(&mut Vec<Record>),
    hold: Hold,
    records: &mut Vec<Record>,
) {
    let _conn = conn.await.expect("a connection");
    served(records);
    hold.in_task().await;
}

fn pinpool_tasks(wake: WakePolicy) -> pinpool::tokio::Pool<AsyncNoop> {
    pinpool::tokio::Pool::builder()
        .max_size(CONNECTIONS)
        .min_size(CONNECTIONS)
        .wake(wake)
        .build(async_noop as AsyncNoop)
        .expect("a valid configuration")
}

/// The async pools, by name (built inside the runtime).
async fn task_pools() -> Vec<(&'static str, Role, Tasks)> {
    let bb8 = bb8::Pool::builder()
        .max_size(CONNECTIONS as u32)
        .test_on_check_out(false)
        .build(Bb8Noop)
        .await
        .expect("a pool");
    let deadpool = deadpool::managed::Pool::builder(DeadpoolNoop)
        .max_size(CONNECTIONS)
        // The 30 s checkout timeout pinpool and bb8 have by default
        // (deadpool's is off): each checkout that waits arms a timer, and
        // here most do.
        .wait_timeout(Some(Duration::from_secs(30)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("a pool");
    vec![
        (
            "pinpool (default: Handoff)",
            Role::Default,
            Tasks::Pinpool(pinpool_tasks(WakePolicy::Handoff)),
        ),
        (
            "pinpool Eventual",
            Role::Other,
            Tasks::Pinpool(pinpool_tasks(WakePolicy::DEFAULT_EVENTUAL)),
        ),
        (
            "pinpool pinned scopes, Handoff",
            Role::Other,
            Tasks::PinpoolPinned(pinpool_tasks(WakePolicy::Handoff)),
        ),
        ("bb8", Role::Peer, Tasks::Bb8(bb8)),
        ("deadpool", Role::Peer, Tasks::Deadpool(deadpool)),
        (
            "qp",
            Role::Peer,
            Tasks::Qp(qp::Pool::new(QpNoop, CONNECTIONS)),
        ),
    ]
}

// ------------------------------------------------------------ the runs

/// `workers` threads checking out of `pool` for `seconds` (after a warm-up).
fn on_threads(pool: &Threads, workers: usize, hold: Hold, seconds: f64) -> Vec<Record> {
    let run = Run::new(Duration::from_secs_f64(seconds / 5.0));
    let start = Barrier::new(workers + 1);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let mut records = Vec::new();
                    while run.running() {
                        let asked = run.ask();
                        pool.checkout(|| {
                            run.served(asked, &mut records);
                            hold.on_thread();
                        });
                    }
                    records
                })
            })
            .collect();
        start.wait();
        // The measurement window (the benchmark's clock, not a wait for
        // another thread).
        std::thread::sleep(Duration::from_secs_f64(seconds * 1.2));
        run.stop.store(true, Relaxed);
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a worker"))
            .collect()
    })
}

/// How long after the window a task still waiting is given up for lost:
/// far longer than any queue here takes to drain (128 checkouts of 1 ms
/// on 4 connections take 32 ms).
const LOST_AFTER: Duration = Duration::from_secs(2);

/// What a run of tasks measured.
struct Served {
    records: Vec<Record>,
    /// Tasks still waiting for a checkout `LOST_AFTER` the window: a lost
    /// wake-up (qp's: `tests/lost_wake_up.rs`). They are aborted, and
    /// their records go with them.
    never: usize,
}

/// `workers` tasks checking out of `pool` on a 4-worker runtime.
async fn in_tasks(pool: Arc<Tasks>, workers: usize, hold: Hold, seconds: f64) -> Served {
    let run = Arc::new(Run::new(Duration::from_secs_f64(seconds / 5.0)));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (pool, run) = (Arc::clone(&pool), Arc::clone(&run));
            tokio::spawn(async move {
                let mut records = Vec::new();
                let work = async {
                    while run.running() {
                        pool.checkout(&run, hold, &mut records).await;
                        // Between operations a task yields, as one doing
                        // I/O would: the others on its worker get to ask.
                        tokio::task::yield_now().await;
                    }
                };
                match &*pool {
                    Tasks::PinpoolPinned(pinned) => pinned.pinned(work).await,
                    _ => work.await,
                }
                records
            })
        })
        .collect();
    // Stopped from a thread of its own: tasks served by the fast path
    // without yielding can keep every worker, and with it the runtime's
    // timers, busy.
    let stopper = Arc::clone(&run);
    let window = Duration::from_secs_f64(seconds * 1.2);
    std::thread::spawn(move || {
        std::thread::sleep(window);
        stopper.stop.store(true, Relaxed);
    });
    let given_up_at = tokio::time::Instant::now() + window + LOST_AFTER;
    let mut served = Served {
        records: Vec::new(),
        never: 0,
    };
    for mut task in tasks {
        match tokio::time::timeout_at(given_up_at, &mut task).await {
            Ok(records) => served.records.extend(records.expect("a worker")),
            Err(_) => {
                task.abort();
                served.never += 1;
            }
        }
    }
    served
}

// ------------------------------------------------------------ the figures

/// What one cell measured.
struct Summary {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    /// The most checkouts that asked after one and were served before it.
    overtaken: u64,
    /// Every wait, sorted (for the chart).
    waits: Vec<Duration>,
    /// Workers never served (see [`Served::never`]): the waits above
    /// leave out theirs, the longest of all.
    never: usize,
}

fn summarize(records: &[Record], seconds: f64) -> Summary {
    let mut waits: Vec<Duration> = records.iter().map(|r| r.waited).collect();
    waits.sort();
    // (No checkout served at all, every task's wake-up lost, reads as
    // zeros beside a throughput of 0.)
    let at = |q: f64| {
        let last = waits.len().saturating_sub(1);
        waits
            .get((last as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Summary {
        throughput: records.len() as f64 / seconds,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
        overtaken: most_overtaken(records),
        waits,
        never: 0,
    }
}

/// For each checkout, how many that asked after it were served before it
/// (a Fenwick tree over the order of asking, walked in the order of
/// serving); the largest.
fn most_overtaken(records: &[Record]) -> u64 {
    let mut by_service: Vec<&Record> = records.iter().collect();
    by_service.sort_by_key(|r| r.served);
    let mut asked: Vec<u64> = records.iter().map(|r| r.asked).collect();
    asked.sort_unstable();
    let rank = |a: u64| asked.partition_point(|&x| x < a) + 1;
    let mut tree = vec![0u64; asked.len() + 1];
    let (mut seen, mut most) = (0u64, 0u64);
    for record in by_service {
        let mine = rank(record.asked);
        let mut earlier = 0; // served so far that asked before this one
        let mut i = mine;
        while i > 0 {
            earlier += tree[i];
            i &= i - 1;
        }
        most = most.max(seen - earlier);
        let mut i = mine;
        while i < tree.len() {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
        seen += 1;
    }
    most
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn row(table: &mut String, name: &str, workers: usize, s: &Summary) {
    let _ = writeln!(
        table,
        "| {name} | {workers} | {:.0} | {} | {} | {} | {} | {} |",
        s.throughput,
        ms(s.p50),
        ms(s.p99),
        ms(s.p999),
        ms(s.max),
        s.overtaken
    );
}

/// The targets, judged for one group of one cell: pinpool `Handoff`'s
/// longest wait within twice its p99 and under every peer's p99.9; the
/// default's throughput at least the best peer's, with a p99 no worse.
fn verdict(out: &mut String, group: &str, workers: usize, measured: &[(String, Role, Summary)]) {
    let find = |role| {
        measured
            .iter()
            .find(|(_, r, _)| *r == role)
            .map(|(_, _, s)| s)
    };
    // (The async pool's default is `Handoff`: one row plays both parts.)
    let handoff = find(Role::Handoff).or_else(|| find(Role::Default));
    let (Some(handoff), Some(default)) = (handoff, find(Role::Default)) else {
        return;
    };
    // A peer that left workers unserved has lost its longest waits: its
    // tail and its throughput would flatter it, so it is not compared.
    let (peers, lossy): (Vec<_>, Vec<_>) = measured
        .iter()
        .filter(|(_, r, _)| *r == Role::Peer)
        .partition(|(_, _, s)| s.never == 0);
    let not_compared = if lossy.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = lossy.iter().map(|(name, _, _)| name.as_str()).collect();
        format!(
            " (Not compared, having left workers unserved: {}.)",
            names.join(", ")
        )
    };
    let Some(best) = peers
        .iter()
        .max_by(|a, b| a.2.throughput.total_cmp(&b.2.throughput))
    else {
        return;
    };
    let lowest_p999 = peers.iter().map(|(_, _, s)| s.p999).min().expect("a peer");
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    // The same bound on each peer's own waits: where none keeps it either,
    // what missed it is the cell (a hold that overran, a worker
    // preempted), not a queue's order.
    let within_twice_p99 = |s: &Summary| s.max <= s.p99 * 2;
    let peers_within: Vec<&str> = (peers.iter())
        .filter(|(_, _, s)| within_twice_p99(s))
        .map(|(name, _, _)| name.as_str())
        .collect();
    let peers_within = match peers_within.as_slice() {
        [] => "none".to_string(),
        names => names.join(", "),
    };
    let _ = writeln!(
        out,
        "- {group}, {workers} workers: Handoff's max {} ms ≤ 2 × its p99 {} ms: {} \
         (peers within twice their own: {peers_within}); ≤ the peers' lowest p99.9 {} ms: {}. \
         Default {:.0}/s ≥ best peer ({}) {:.0}/s: {}; p99 {} ≤ {} ms: {}.{not_compared}",
        ms(handoff.max),
        ms(handoff.p99),
        mark(within_twice_p99(handoff)),
        ms(lowest_p999),
        mark(handoff.max <= lowest_p999),
        default.throughput,
        best.0,
        best.2.throughput,
        mark(default.throughput >= best.2.throughput),
        ms(default.p99),
        ms(best.2.p99),
        mark(default.p99 <= best.2.p99),
    );
}

const HEADER: &str = "| pool | workers | checkouts/s | p50 ms | p99 ms | p99.9 ms | max ms | most overtaken |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";

fn main() -> Result<(), String> {
    let args = Args::parse();
    // (A NaN is not positive either.)
    if args.seconds.is_nan() || args.seconds <= 0.0 || args.workers.contains(&0) {
        return Err("--seconds must be positive and every worker count at least 1".into());
    }
    let mut charted: Vec<(String, Vec<Duration>)> = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CONNECTIONS)
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    for hold in HOLDS {
        println!(
            "\n### {CONNECTIONS} connections, each checkout {}\n",
            hold.label()
        );
        let mut table = String::from(HEADER);
        let mut verdicts = String::new();
        for &workers in &args.workers {
            let mut threads = Vec::new();
            for (name, role, pool) in thread_pools() {
                let s = summarize(
                    &on_threads(&pool, workers, hold, args.seconds),
                    args.seconds,
                );
                threads.push((format!("{name} (threads)"), role, s));
            }
            let mut tasks = Vec::new();
            for (name, role, pool) in runtime.block_on(task_pools()) {
                let served =
                    runtime.block_on(in_tasks(Arc::new(pool), workers, hold, args.seconds));
                if served.never > 0 {
                    let _ = writeln!(
                        verdicts,
                        "- {name} (tasks), {workers} workers: {} task(s) never served, \
                         given up {} s after the window (a lost wake-up).",
                        served.never,
                        LOST_AFTER.as_secs()
                    );
                }
                let summary = Summary {
                    never: served.never,
                    ..summarize(&served.records, args.seconds)
                };
                tasks.push((format!("{name} (tasks)"), role, summary));
            }
            for (group, measured) in [("threads", &threads), ("tasks", &tasks)] {
                for (name, _, s) in measured.iter() {
                    row(&mut table, name, workers, s);
                }
                verdict(&mut verdicts, group, workers, measured);
            }
            if workers == 32 && hold == CHARTED {
                for (name, _, s) in threads.into_iter().chain(tasks) {
                    charted.push((name, s.waits));
                }
            }
        }
        print!("{table}\n{verdicts}");
    }
    if let Some(path) = &args.chart {
        chart::draw(&charted, path)?;
        println!("\nwait distributions: {}", path.display());
    }
    Ok(())
}

mod chart {
    //! The wait distributions of one cell: for each pool, the share of
    //! checkouts that waited longer than each time (log–log), so the
    //! tails stand apart.

    use std::path::Path;
    use std::time::Duration;

    use plotters::prelude::*;

    /// (wait in µs, share of checkouts that waited longer), at 40 points a
    /// decade of that share: the tail in as much detail as the middle,
    /// and a chart of kilobytes, not of every checkout.
    fn survival(sorted: &[Duration]) -> Vec<(f64, f64)> {
        let n = sorted.len();
        let mut points = Vec::new();
        let mut step = 0;
        loop {
            let longer = 10f64.powf(-f64::from(step) / 40.0);
            let index = n - ((longer * n as f64).ceil() as usize).clamp(1, n);
            let micros = (sorted[index].as_secs_f64() * 1e6).max(1.0);
            points.push((micros, longer));
            if index == n - 1 {
                return points;
            }
            step += 1;
        }
    }

    pub fn draw(series: &[(String, Vec<Duration>)], path: &Path) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
        let longest = series
            .iter()
            .filter_map(|(_, w)| w.last())
            .max()
            .map_or(1.0, |d| d.as_secs_f64() * 1e6);
        let fewest = series
            .iter()
            .map(|(_, w)| w.len())
            .min()
            .unwrap_or(1)
            .max(1);
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Checkouts waiting longer than t: 32 workers, 4 connections, 1 ms round trips",
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (1.0..longest * 1.5).log_scale(),
                (0.5 / fewest as f64..1.0).log_scale(),
            )
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("wait t, µs")
            .y_desc("share of checkouts waiting longer")
            .draw()
            .map_err(|e| fail(&e))?;
        let drawn = series.iter().filter(|(_, waits)| !waits.is_empty());
        for (index, (name, waits)) in drawn.enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(survival(waits), color.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))
    }
}

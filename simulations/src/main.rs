//! `pool-efficiency`: how much socket time a pinned pool wastes, per wake
//! policy, as threads outnumber sockets. Reproduces and extends the
//! experiment of "A Curious Concurrency Case" (2013) on pinpool's real core.

use std::path::PathBuf;
use std::time::{Duration as WallTime, Instant};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pinpool_simulations::experiment::{self, Precision};
use pinpool_simulations::series::{DEFAULT_SERIES, parse_series};
use pinpool_simulations::sim::{Clock, Duration, Series, Workload};
use pinpool_simulations::{chart, report};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Readable tables.
    Table,
    /// One CSV row per point.
    Csv,
}

/// Simulate threads pinned to pooled sockets under virtual time and report
/// how much socket time goes unused, how long threads wait, and how many
/// wake-ups each checkin costs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Sockets in the pool (its max_size).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sockets: u32,
    /// Thread counts to simulate, FROM:TO:STEP.
    #[arg(long, default_value = "10:250:10", value_parser = parse_range)]
    threads: ThreadRange,
    /// How long a thread uses its socket, MIN:MAX seconds (uniform).
    #[arg(long, default_value = "1:20", value_parser = parse_duration)]
    use_time: Duration,
    /// How long a thread sleeps between uses, MIN or MIN:MAX seconds (uniform).
    #[arg(long, default_value = "1", value_parser = parse_duration)]
    sleep_time: Duration,
    /// Real-valued durations, or whole seconds (the 2013 script's ticks;
    /// same-instant ties then decide some hand-overs).
    #[arg(long, value_enum, default_value_t = Clock::Continuous)]
    clock: Clock,
    /// Virtual seconds per run.
    #[arg(long, default_value_t = 2000.0, value_parser = parse_positive)]
    horizon: f64,
    /// Initial virtual seconds left out of the measurement.
    #[arg(long, default_value_t = 100.0)]
    warmup: f64,
    /// Uses after which a thread ends its session and asks again as a new
    /// owner (its pin released, its socket reset); 0: sessions never end,
    /// as in the 2013 experiment. Exclusive pins need sessions that end:
    /// with 0, threads beyond the sockets wait for ever.
    #[arg(long, default_value_t = 0)]
    session_uses: u32,
    /// Seeds every point gets at least.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// Seeds no point exceeds.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    max_seeds: u64,
    /// Add seeds until each point's standard error is at most this many
    /// percentage points.
    #[arg(long, default_value_t = 0.1, value_parser = parse_positive)]
    precision: f64,
    /// Series to simulate, comma-separated, each POLICY, POLICY:PINNING or
    /// POLICY:PINNING:OVERFLOW with POLICY in
    /// handoff|broadcast|signal|bounded-N|eventual-N-Mms, PINNING in
    /// strict|affinity|off|exclusive (default strict), OVERFLOW in
    /// random|random-idle|least-loaded (default random).
    #[arg(long, default_value = DEFAULT_SERIES, value_delimiter = ',', value_parser = parse_series)]
    series: Vec<Series>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "pool-efficiency.svg")]
    chart: PathBuf,
    /// Do not write a chart.
    #[arg(long)]
    no_chart: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
}

#[derive(Clone, Debug)]
struct ThreadRange(Vec<usize>);

fn parse_range(text: &str) -> Result<ThreadRange, String> {
    let numbers: Vec<usize> = text
        .split(':')
        .map(|n| {
            n.trim()
                .parse()
                .map_err(|_| format!("{n:?} is not a whole number"))
        })
        .collect::<Result<_, _>>()?;
    let (from, to, step) = match numbers[..] {
        [n] => (n, n, 1),
        [from, to] => (from, to, 1),
        [from, to, step] => (from, to, step),
        _ => return Err("expected FROM:TO:STEP".into()),
    };
    if from == 0 || step == 0 || from > to {
        return Err("need 1 <= FROM <= TO and STEP >= 1".into());
    }
    Ok(ThreadRange((from..=to).step_by(step).collect()))
}

fn parse_positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// Durations must be positive: the simulator relies on nothing but wake-ups
/// being due at the instant they happen.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (min, max) = text.split_once(':').unwrap_or((text, text));
    let (min, max) = (parse_positive(min)?, parse_positive(max)?);
    if min > max {
        return Err(format!("MIN ({min}) exceeds MAX ({max})"));
    }
    Ok(Duration { min, max })
}

fn main() {
    let args = Args::parse();
    if args.warmup < 0.0 || args.warmup >= args.horizon {
        Args::command_error("--warmup must be at least 0 and less than --horizon");
    }
    let whole = |d: Duration| d.min.fract() == 0.0 && d.max.fract() == 0.0;
    if args.clock == Clock::Discrete && !(whole(args.use_time) && whole(args.sleep_time)) {
        Args::command_error("--clock discrete needs whole-second --use-time and --sleep-time");
    }
    if args.seeds > args.max_seeds {
        Args::command_error("--seeds must not exceed --max-seeds");
    }
    let workload = Workload {
        sockets: args.sockets as usize,
        use_time: args.use_time,
        sleep_time: args.sleep_time,
        clock: args.clock,
        horizon: args.horizon,
        warmup: args.warmup,
        session_uses: args.session_uses,
    };
    let precision = Precision {
        min_seeds: args.seeds,
        max_seeds: args.max_seeds,
        target_stderr: args.precision,
    };
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |j| j as usize,
    );
    let points_total = (args.series.len() * args.threads.0.len()) as u64;
    let progress = progress_bar(points_total, args.format == Format::Table);
    let started = Instant::now();
    let points = experiment::run_grid(
        &workload,
        &args.series,
        &args.threads.0,
        precision,
        jobs,
        &|| {
            // Shown only once a run has taken more than a second.
            if started.elapsed() > WallTime::from_secs(1) && progress.is_hidden() {
                progress.set_draw_target(ProgressDrawTarget::stderr());
            }
            progress.inc(1);
        },
    );
    progress.finish_and_clear();

    match args.format {
        Format::Csv => print!("{}", report::csv(&points, workload.sockets)),
        Format::Table => {
            println!(
                "{} sockets; use {}-{} s, sleep {}-{} s ({:?} clock); {} s per run after {} s warm-up",
                workload.sockets,
                workload.use_time.min,
                workload.use_time.max,
                workload.sleep_time.min,
                workload.sleep_time.max,
                workload.clock,
                workload.horizon - workload.warmup,
                workload.warmup,
            );
            print!("{}", report::table(&points));
        }
    }
    if !args.no_chart {
        if let Err(error) = chart::write_svg(&points, workload.sockets, &args.chart) {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
        if args.format == Format::Table {
            println!("\nchart written to {}", args.chart.display());
        }
    }
}

impl Args {
    fn command_error(message: &str) -> ! {
        use clap::CommandFactory;
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit()
    }
}

/// A progress bar on stderr, hidden until the run proves slow, and never
/// shown when stdout is machine-readable.
fn progress_bar(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} points, {elapsed} elapsed")
            .expect("a valid template"),
    );
    bar
}

//! Runs a grid of simulations (series × thread counts × seeds) across the
//! machine's cores and summarises each point.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sim::{self, Series, Workload};

/// One point of the chart: a series at a thread count, over all seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The pool configuration.
    pub series: Series,
    /// Simulated threads.
    pub threads: usize,
    /// Unused socket-time, in %, averaged over seeds.
    pub unused_pct: f64,
    /// Standard error of `unused_pct` across seeds (0 with one seed).
    pub unused_stderr: f64,
    /// Seeds run.
    pub seeds: u64,
    /// Mean checkout wait, in seconds.
    pub wait_mean_s: f64,
    /// 99th-percentile checkout wait, in seconds.
    pub wait_p99_s: f64,
    /// Threads unparked per checkin.
    pub wakeups_per_checkin: f64,
    /// Futile wake-ups per checkin.
    pub futile_wakeups_per_checkin: f64,
    /// The most times one waiter was passed over, over all seeds.
    pub max_bypass: u64,
}

/// How many seeds a point gets: at least `min_seeds`, then more until the
/// standard error of its unused % is at most `target_stderr` percentage
/// points, or `max_seeds` ran. Pins drawn at random make the few-thread
/// points vary a lot from seed to seed and the many-thread points hardly at
/// all, so a fixed seed count would waste time on one end or precision on
/// the other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Precision {
    /// Seeds every point gets.
    pub min_seeds: u64,
    /// Seeds no point exceeds.
    pub max_seeds: u64,
    /// The standard error to reach, in percentage points.
    pub target_stderr: f64,
}

/// Simulates every (series, thread count) pair to `precision`, on
/// `workers` threads, calling `progress` after each point. Results come in
/// series order, then thread order, whatever the scheduling.
pub fn run_grid(
    workload: &Workload,
    series: &[Series],
    thread_counts: &[usize],
    precision: Precision,
    workers: usize,
    progress: &(dyn Fn() + Sync),
) -> Vec<Point> {
    let jobs: Vec<(Series, usize)> = series
        .iter()
        .flat_map(|s| thread_counts.iter().map(move |n| (*s, *n)))
        .collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(series, threads)) = jobs.get(index) else {
                        break;
                    };
                    let point = simulate_point(workload, series, threads, precision);
                    results.lock().expect("no worker panics holding it")[index] = Some(point);
                    progress();
                }
            });
        }
    });
    results
        .into_inner()
        .expect("workers finished")
        .into_iter()
        .map(|p| p.expect("every job ran"))
        .collect()
}

/// One point: independent runs seeded 0, 1, 2… (so every series sees the
/// same seeds at the same thread count) until `precision` is met.
pub fn simulate_point(
    workload: &Workload,
    series: Series,
    threads: usize,
    precision: Precision,
) -> Point {
    let mut unused = Vec::new();
    let mut waits = Vec::new();
    let (mut checkins, mut wakeups, mut futile, mut max_bypass) = (0, 0, 0, 0);
    for seed in 0..precision.max_seeds.max(precision.min_seeds) {
        let precise = mean_and_stderr(&unused).1 <= precision.target_stderr;
        if seed >= precision.min_seeds && precise {
            break;
        }
        let run = sim::run(
            workload,
            series,
            threads,
            seed.wrapping_mul(1_000_003) + threads as u64,
        );
        unused.push(run.unused_pct);
        waits.extend(run.waits);
        checkins += run.checkins;
        wakeups += run.wakeups;
        futile += run.futile_wakeups;
        max_bypass = max_bypass.max(run.max_bypass);
    }
    let (unused_pct, unused_stderr) = mean_and_stderr(&unused);
    waits.sort_by(f64::total_cmp);
    let per_checkin = |n: u64| n as f64 / checkins.max(1) as f64;
    Point {
        series,
        threads,
        unused_pct,
        unused_stderr,
        seeds: unused.len() as u64,
        wait_mean_s: waits.iter().sum::<f64>() / waits.len().max(1) as f64,
        wait_p99_s: percentile(&waits, 0.99),
        wakeups_per_checkin: per_checkin(wakeups),
        futile_wakeups_per_checkin: per_checkin(futile),
        max_bypass,
    }
}

fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, f64::INFINITY);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

/// The `q` quantile of sorted `values` (nearest rank); 0 when empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn stderr_of_constant_values_is_zero() {
        assert_eq!(mean_and_stderr(&[2.0, 2.0, 2.0]), (2.0, 0.0));
        assert_eq!(mean_and_stderr(&[1.0]), (1.0, 0.0));
    }
}

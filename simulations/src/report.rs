//! The simulation's outputs: a readable table and CSV.

use std::fmt::Write;

use crate::experiment::Point;
use crate::series::{label, labels, overflow_name, pinning_name, policy_name};

/// The CSV header, one row per point after it.
pub const CSV_HEADER: &str = "policy,pinning,overflow,threads,sockets,unused_pct,wait_mean_s,\
wait_p99_s,wakeups_per_checkin,futile_wakeups_per_checkin,max_bypass";

/// The points as CSV.
pub fn csv(points: &[Point], sockets: usize) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for p in points {
        let s = &p.series;
        writeln!(
            out,
            "{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{}",
            policy_name(s),
            pinning_name(s),
            overflow_name(s),
            p.threads,
            sockets,
            p.unused_pct,
            p.wait_mean_s,
            p.wait_p99_s,
            p.wakeups_per_checkin,
            p.futile_wakeups_per_checkin,
            p.max_bypass,
        )
        .expect("writing to a String");
    }
    out
}

/// Readable tables: one per measure, a row per thread count and a column per
/// series.
pub fn table(points: &[Point]) -> String {
    let labels = labels(points.iter().map(|p| &p.series));
    let mut threads: Vec<usize> = points.iter().map(|p| p.threads).collect();
    threads.sort_unstable();
    threads.dedup();
    let width = labels.iter().map(String::len).max().unwrap_or(0).max(14);
    let find = |l: &str, n: usize| {
        points
            .iter()
            .find(|p| p.threads == n && label(&p.series) == l)
            .expect("every series has every thread count")
    };
    type Cell = fn(&Point) -> String;
    let measures: [(&str, Cell); 4] = [
        ("unused socket-time, % (± standard error)", |p| {
            format!("{:.2} ±{:.2}", p.unused_pct, p.unused_stderr)
        }),
        ("wait, seconds: mean / p99", |p| {
            format!("{:.1} / {:.0}", p.wait_mean_s, p.wait_p99_s)
        }),
        ("threads unparked per checkin (futile)", |p| {
            format!(
                "{:.2} ({:.2})",
                p.wakeups_per_checkin, p.futile_wakeups_per_checkin
            )
        }),
        ("largest bypass (waiters passed over)", |p| {
            p.max_bypass.to_string()
        }),
    ];
    let mut out = String::new();
    for (title, cell) in measures {
        writeln!(out, "\n{title}").expect("writing to a String");
        write!(out, "{:>7}", "threads").expect("writing to a String");
        for l in &labels {
            write!(out, "  {l:>width$}").expect("writing to a String");
        }
        out.push('\n');
        for &n in &threads {
            write!(out, "{n:>7}").expect("writing to a String");
            for l in &labels {
                write!(out, "  {:>width$}", cell(find(l, n))).expect("writing to a String");
            }
            out.push('\n');
        }
    }
    out
}

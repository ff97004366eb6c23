//! The default `pool-efficiency` run against the 2013 chart, as read off the
//! image in `../shared/reference/curious-concurrency-case-chart.txt`.
//!
//! Ignored by default because it wants a release build: `tests/run.sh` runs
//! it with `cargo test --release -- --ignored`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// One CSV row of the default run.
#[derive(Debug)]
struct Row {
    unused_pct: f64,
    wakeups_per_checkin: f64,
    futile_wakeups_per_checkin: f64,
    max_bypass: u64,
}

/// (policy, pinning, overflow) → threads → row.
type Results = BTreeMap<(String, String, String), BTreeMap<usize, Row>>;

fn default_run() -> Results {
    let out = Command::new(env!("CARGO_BIN_EXE_pool-efficiency"))
        .args(["--format", "csv", "--no-chart"])
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut results = Results::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let key = (f[0].to_string(), f[1].to_string(), f[2].to_string());
        let row = Row {
            unused_pct: f[5].parse().unwrap(),
            wakeups_per_checkin: f[8].parse().unwrap(),
            futile_wakeups_per_checkin: f[9].parse().unwrap(),
            max_bypass: f[10].parse().unwrap(),
        };
        results
            .entry(key)
            .or_default()
            .insert(f[3].parse().unwrap(), row);
    }
    results
}

/// The chart's readings: threads → (signal %, broadcast %). Rows look like
/// `20   7.9      3.9`, `70-180  7.7   ~0` or `190-250 7.6-7.7  ~0`; a
/// range of threads covers every tenth, a range of values is its midpoint.
fn chart() -> BTreeMap<usize, (f64, f64)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/curious-concurrency-case-chart.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the chart's readings are needed at {}: {e}", path.display()));
    let value = |v: &str| -> f64 {
        let v = v.trim_start_matches('~');
        match v.split_once('-') {
            Some((a, b)) => (a.parse::<f64>().unwrap() + b.parse::<f64>().unwrap()) / 2.0,
            None => v.parse().unwrap(),
        }
    };
    let mut readings = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(threads) = fields.first() else {
            continue;
        };
        if !threads.starts_with(|c: char| c.is_ascii_digit()) || fields.len() < 3 {
            continue;
        }
        let (from, to) = match threads.split_once('-') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (threads.parse().unwrap(), threads.parse().unwrap()),
        };
        for n in (from..=to).step_by(10) {
            readings.insert(n, (value(fields[1]), value(fields[2])));
        }
    }
    assert!(
        readings.len() >= 20,
        "parsed too few readings: {readings:?}"
    );
    readings
}

fn series<'a>(results: &'a Results, policy: &str) -> &'a BTreeMap<usize, Row> {
    &results[&(
        policy.to_string(),
        "strict".to_string(),
        "random".to_string(),
    )]
}

#[test]
#[ignore = "needs a release build; run by tests/run.sh"]
fn default_run_reproduces_the_2013_chart() {
    let results = default_run();
    let (signal, broadcast, handoff) = (
        series(&results, "signal"),
        series(&results, "broadcast"),
        series(&results, "handoff"),
    );
    for (n, (chart_signal, chart_broadcast)) in chart() {
        let s = signal[&n].unused_pct;
        let b = broadcast[&n].unused_pct;
        let h = &handoff[&n];
        assert!(
            (s - chart_signal).abs() <= 1.0,
            "signal at N={n}: {s} vs chart {chart_signal}"
        );
        assert!(
            (b - chart_broadcast).abs() <= 1.0,
            "broadcast at N={n}: {b} vs {chart_broadcast}"
        );
        assert!(
            (h.unused_pct - b).abs() <= 0.3,
            "handoff at N={n}: {} vs broadcast {b}",
            h.unused_pct
        );
        assert_eq!(
            h.futile_wakeups_per_checkin, 0.0,
            "handoff never wakes in vain (N={n})"
        );
        assert!(
            h.wakeups_per_checkin <= 1.0,
            "handoff unparks at most one (N={n})"
        );
        assert_eq!(h.max_bypass, 0, "handoff is FIFO (N={n})");
        if n >= 30 {
            assert!(
                broadcast[&n].wakeups_per_checkin > 5.0,
                "broadcast's herd at N={n}: {:?}",
                broadcast[&n]
            );
        }
    }
    // Beyond the chart: every pinpool series reaches zero waste by N = 50.
    for ((policy, pinning, overflow), points) in &results {
        if policy == "handoff" {
            let waste = points[&50].unused_pct;
            assert!(
                waste <= 0.5,
                "{policy}/{pinning}/{overflow} at N=50: {waste}"
            );
        }
    }
}

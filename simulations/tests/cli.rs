//! The `pool-efficiency` command line: bad input gets a clear error, output
//! is deterministic and well-formed.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pool-efficiency"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn small(extra: &[&str]) -> Output {
    let mut args = vec![
        "--no-chart",
        "--threads",
        "10:30:10",
        "--horizon",
        "300",
        "--warmup",
        "10",
        "--seeds",
        "2",
        "--max-seeds",
        "2",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn bad_flags_are_explained_not_panicked_on() {
    let cases: [(&[&str], &str); 7] = [
        (&["--threads", "0:10:1"], "FROM"),
        (&["--threads", "x"], "not a whole number"),
        (&["--use-time", "5:1"], "exceeds MAX"),
        (&["--sleep-time", "0"], "not a positive number"),
        (&["--series", "shout"], "unknown wake policy"),
        (&["--warmup", "5000"], "--warmup"),
        (
            &["--clock", "discrete", "--sleep-time", "0.5"],
            "whole-second",
        ),
    ];
    for (args, expected) in cases {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn csv_has_the_documented_header_and_one_row_per_point() {
    let out = small(&["--format", "csv", "--series", "signal,handoff:off"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "policy,pinning,overflow,threads,sockets,unused_pct,wait_mean_s,wait_p99_s,\
             wakeups_per_checkin,futile_wakeups_per_checkin,max_bypass"
        )
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2 * 3);
    assert!(rows[0].starts_with("signal,strict,random,10,10,"));
    assert!(rows[5].starts_with("handoff,off,-,30,10,"));
    assert!(out.stderr.is_empty(), "no progress bar under --format csv");
}

#[test]
fn output_is_deterministic_for_the_same_flags() {
    let first = small(&["--format", "csv"]);
    let second = small(&["--format", "csv", "--jobs", "1"]);
    assert!(first.status.success() && second.status.success());
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn writes_an_svg_chart() {
    let dir = std::env::temp_dir().join(format!("pinpool-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chart.svg");
    let out = run(&[
        "--threads",
        "10:20:10",
        "--horizon",
        "200",
        "--warmup",
        "10",
        "--seeds",
        "1",
        "--max-seeds",
        "1",
        "--series",
        "signal,handoff",
        "--chart",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("signal") && svg.contains("handoff"));
    std::fs::remove_dir_all(&dir).unwrap();
}

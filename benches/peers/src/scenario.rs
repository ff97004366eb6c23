//! The command line of the instruction-count binaries
//! (`benches/instructions.sh`): `<binary> <scenario> <warm-up> <n>` runs one
//! scenario, `--list` names them, and no arguments (as `cargo test` runs
//! it) runs every scenario briefly.

use std::process::ExitCode;

/// A scenario: runs its operation `warm_up` times, then `n` times.
pub type Scenario = fn(u64, u64);

/// Runs what the arguments ask of `scenarios`, named by what one
/// operation is; `binary` names the program in the usage line.
pub fn main(binary: &str, scenarios: &[(&str, Scenario)]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            for (_, run) in scenarios {
                run(10, 100);
            }
            ExitCode::SUCCESS
        }
        [flag] if flag == "--list" => {
            for (name, _) in scenarios {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        [name, warm_up, n] => {
            let scenario = scenarios.iter().find(|(s, _)| s == name);
            match (scenario, warm_up.parse(), n.parse()) {
                (Some((_, run)), Ok(warm_up), Ok(n)) => {
                    run(warm_up, n);
                    ExitCode::SUCCESS
                }
                _ => usage(binary, scenarios),
            }
        }
        _ => usage(binary, scenarios),
    }
}

fn usage(binary: &str, scenarios: &[(&str, Scenario)]) -> ExitCode {
    let names: Vec<&str> = scenarios.iter().map(|(name, _)| *name).collect();
    eprintln!(
        "usage: {binary} <{}> <warm-up> <n> | --list",
        names.join("|")
    );
    ExitCode::from(2)
}

/// Runs `op` `warm_up` times, then `n` times.
pub fn repeat(warm_up: u64, n: u64, mut op: impl FnMut()) {
    for _ in 0..warm_up + n {
        op();
    }
}

/// A current-thread runtime: every task on this thread, so a count is the
/// same from run to run.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

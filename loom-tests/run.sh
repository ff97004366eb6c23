#!/usr/bin/env bash
# The loom model checks of the pools (release mode, preemption
# bound 3 unless LOOM_MAX_PREEMPTIONS says otherwise), built with
# `--cfg pinpool_loom` in their own target directory. Each model prints how
# many interleavings it explored. The panic messages printed around
# `signal_strands_a_waiter` are expected: that model passes by failing.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="--cfg pinpool_loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export RUST_BACKTRACE=0
cargo test --release --tests -- --nocapture --test-threads=1 "$@"

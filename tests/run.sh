#!/usr/bin/env bash
# The whole test suite: the README's test command, and what .ci/run calls.
# It sets up everything the tests need by itself and cleans up after.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit, property, integration and doc tests (all workspace crates)"
cargo test --workspace --all-targets
cargo test --workspace --doc

echo "== simulation fidelity against the 2013 chart (release build)"
cargo test --release -p pinpool-simulations --test fidelity -- --ignored

echo "== loom model checks of the blocking pool (release build)"
bash loom-tests/run.sh

#!/usr/bin/env bash
# The whole test suite: the README's test command, and what .ci/run calls.
# It sets up everything the tests need by itself and cleans up after.
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers this script starts are stopped when it exits, whatever happens.
. tests/servers.sh

# Each section's heading, with the seconds the script has run so far: where
# CI's time goes (its budget is 30 minutes on 2 cores, builds included).
section() {
    echo "== $* (at ${SECONDS} s)"
}

section "the MongoDB-wire server for the adapter's tests"
# secantusdb (PyPI, pinned) in a local virtualenv, on 127.0.0.1 only,
# stopped when this script exits. An existing MONGODB_URI is used instead.
if [ -z "${MONGODB_URI:-}" ]; then
    venv="${PINPOOL_VENV:-$PWD/target/secantus-venv}"
    if [ ! -x "$venv/bin/secantusd-py" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "secantusdb==0.7.0b3"
    fi
    # The restart test starts a server of its own from the PATH.
    export PATH="$venv/bin:$PATH"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p target
    secantusd-py --host 127.0.0.1 --port "$port" --storage-path :memory: \
        --standalone --enable-test-commands --log-level WARNING \
        > target/secantus.log 2>&1 &
    server=$!
    cleanups+=("kill $server 2>/dev/null")
    for _ in $(seq 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        kill -0 "$server" 2>/dev/null || { cat target/secantus.log; exit 1; }
        sleep 0.1
    done
    export MONGODB_URI="mongodb://127.0.0.1:$port"
fi
echo "MONGODB_URI=$MONGODB_URI"

section "a throwaway PostgreSQL cluster for the PostgreSQL managers' tests"
# See tests/servers.sh; an existing PINPOOL_PG_URL is used instead.
if [ -z "${PINPOOL_PG_URL:-}" ]; then
    start_pg_cluster
fi
echo "PINPOOL_PG_URL=${PINPOOL_PG_URL:-(none: the PostgreSQL tests skip)}"

section "unit, property, integration and doc tests (all workspace crates, all features)"
cargo test --workspace --all-targets --all-features
cargo test --workspace --doc --all-features

# The examples with every feature, as the tests built them: each with
# only its own feature rebuilt the library for it.
section "the example driver against the server"
cargo run --quiet --example mongo_driver --all-features
section "the Prometheus example (metrics rendered as a scrape reads them)"
cargo run --quiet --example prometheus --all-features > /dev/null
if [ -n "${PINPOOL_PG_URL:-}" ]; then
    section "the session example against the PostgreSQL server"
    cargo run --quiet --example pg_session --all-features
fi

section "simulation fidelity against the 2013 chart (release build)"
cargo test --release -p pinpool-simulations --test fidelity -- --ignored

section "the README's main command (the chart to target/, not over the committed one)"
cargo run --quiet --release --bin pool-efficiency -- --chart target/pool-efficiency-check.svg > /dev/null

section "instruction counts per operation (callgrind), the pinned path against its baseline"
bash benches/instructions.sh

section "memcheck: no waiting get() future is reached after it is freed"
bash tests/memcheck.sh

section "the fairness benchmark runs (a smoke run: its figures come from a full run)"
# It runs peers that can lose a wake-up (qp): the binary gives up on such a
# task itself; the limit (a build included) turns any other hang into a
# failure here rather than a CI out of time.
timeout 1200 cargo run --quiet --release -p pinpool-peers --bin fairness -- --seconds 0.05 --workers 8 > /dev/null

section "the lifetime-jitter benchmark runs (a smoke run)"
timeout 600 cargo run --quiet --release -p pinpool-peers --bin lifetimes -- --seconds 1 --lifetime-ms 400 > /dev/null

section "loom model checks of the blocking pool (release build)"
bash loom-tests/run.sh
section "all passed"

#!/usr/bin/env bash
# The whole test suite: the README's test command, and what .ci/run calls.
# It sets up everything the tests need by itself and cleans up after.
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers this script starts are stopped when it exits, whatever happens.
cleanups=()
cleanup() {
    for command in "${cleanups[@]}"; do eval "$command" || true; done
}
trap cleanup EXIT

echo "== the MongoDB-wire server for the adapter's tests"
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

echo "== a throwaway PostgreSQL cluster for the PostgreSQL managers' tests"
# Debian's postgresql-15 (installed here only if missing), initdb'd under
# target/, on 127.0.0.1 and a free port, fsync off; stopped and removed on
# exit. PostgreSQL refuses to run as root, so as root (CI) it runs as the
# `postgres` user. An existing PINPOOL_PG_URL is used instead.
if [ -z "${PINPOOL_PG_URL:-}" ]; then
    pgbin=/usr/lib/postgresql/15/bin
    if [ ! -x "$pgbin/initdb" ] && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    fi
    if [ -x "$pgbin/initdb" ]; then
        as_pg=()
        if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
        pgdir="$PWD/target/pg-cluster"
        rm -rf "$pgdir"
        mkdir -p "$pgdir"
        if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir"; fi
        "${as_pg[@]}" "$pgbin/initdb" -A trust -U postgres -D "$pgdir/data" > "$pgdir/initdb.log"
        pgport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
            -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir -c fsync=off -c max_connections=200" \
            start > /dev/null
        cleanups+=("${as_pg[*]} $pgbin/pg_ctl -D $pgdir/data -m immediate stop > /dev/null; rm -rf $pgdir")
        export PINPOOL_PG_URL="postgresql://postgres@127.0.0.1:$pgport/postgres"
        # The restart test's command: a fast restart with the same options.
        export PINPOOL_PG_RESTART="${as_pg[*]} $pgbin/pg_ctl -D $pgdir/data -l $pgdir/server.log -w -m fast restart"
    elif [ "${CI:-}" = true ]; then
        echo "PostgreSQL 15 is missing and could not be installed" >&2
        exit 1
    fi
fi
echo "PINPOOL_PG_URL=${PINPOOL_PG_URL:-(none: the PostgreSQL tests skip)}"

echo "== unit, property, integration and doc tests (all workspace crates, all features)"
cargo test --workspace --all-targets --all-features
cargo test --workspace --doc --all-features

echo "== the example driver against the server"
cargo run --quiet --example mongo_driver --features mongodb
if [ -n "${PINPOOL_PG_URL:-}" ]; then
    echo "== the session example against the PostgreSQL server"
    cargo run --quiet --example pg_session --features postgres
fi

echo "== simulation fidelity against the 2013 chart (release build)"
cargo test --release -p pinpool-simulations --test fidelity -- --ignored

echo "== loom model checks of the blocking pool (release build)"
bash loom-tests/run.sh

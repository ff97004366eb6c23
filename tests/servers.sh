# Sourced by tests/run.sh and benches/postgres.sh: the servers they start,
# each stopped when the script exits, whatever happens.

# Commands run on exit, in order.
cleanups=()
cleanup() {
    for command in "${cleanups[@]}"; do eval "$command" || true; done
}
trap cleanup EXIT

# start_pg_cluster: a throwaway PostgreSQL 15 cluster — Debian's
# postgresql-15, installed here only if missing; initdb'd with trust auth
# into a fresh directory under $TMPDIR (/tmp: the `postgres` user must
# reach it wherever the checkout lives), on 127.0.0.1 and a free port,
# fsync off; stopped and removed on exit. PostgreSQL refuses to run as
# root, so as root (CI) it runs as the `postgres` user. Exports
# PINPOOL_PG_URL, PINPOOL_PG_RESTART (a fast restart with the same
# options, for the restart test), PINPOOL_PGBENCH and, when it offers TLS
# (openssl made its certificate), PINPOOL_PG_TLS=1. Under CI=true a
# server that cannot be had fails the run; elsewhere its tests skip.
start_pg_cluster() {
    local pgbin=/usr/lib/postgresql/15/bin
    if [ ! -x "$pgbin/initdb" ] && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    fi
    if [ ! -x "$pgbin/initdb" ]; then
        echo "PostgreSQL 15 is missing and could not be installed" >&2
        if [ "${CI:-}" = true ]; then exit 1; fi
        return 0
    fi
    local as_pg=() dir port
    if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pinpool-pg.XXXXXX")
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    cleanups+=("rm -rf $dir")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # From /, which the `postgres` user can always read.
    if ! (cd / && "${as_pg[@]}" "$pgbin/initdb" -A trust -U postgres -D "$dir/data" > "$dir/initdb.log" 2>&1); then
        cat "$dir"/*.log >&2
        echo "the PostgreSQL cluster could not be created" >&2
        exit 1
    fi
    # TLS offered (not required) with a self-signed certificate, made by
    # the cluster's owner so that the server accepts the key's owner and
    # mode, for the tests of the managers' TLS; clients without TLS still
    # connect in the clear.
    local ssl=()
    if command -v openssl > /dev/null && (cd / && "${as_pg[@]}" openssl req -x509 -newkey rsa:2048 -nodes \
        -subj /CN=127.0.0.1 -days 2 -keyout "$dir/data/server.key" -out "$dir/data/server.crt" \
        > "$dir/openssl.log" 2>&1 && "${as_pg[@]}" chmod 600 "$dir/data/server.key"); then
        ssl=(-c ssl=on)
        export PINPOOL_PG_TLS=1
    else
        echo "openssl is missing or failed: the PostgreSQL cluster offers no TLS" >&2
    fi
    if ! (cd / && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200 ${ssl[*]}" \
            start > /dev/null); then
        cat "$dir"/*.log >&2
        echo "the PostgreSQL cluster did not start" >&2
        exit 1
    fi
    cleanups=("cd / && ${as_pg[*]} $pgbin/pg_ctl -D $dir/data -m immediate stop > /dev/null" "${cleanups[@]}")
    export PINPOOL_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    export PINPOOL_PG_RESTART="cd / && ${as_pg[*]} $pgbin/pg_ctl -D $dir/data -l $dir/server.log -w -m fast restart"
    export PINPOOL_PGBENCH="$pgbin/pgbench"
}

#!/usr/bin/env bash
# The PostgreSQL benchmark on a throwaway server (see tests/servers.sh;
# an existing PINPOOL_PG_URL is used instead): pinpool against
# r2d2_postgres, bb8-postgres and deadpool-postgres, and pgbench as the
# ceiling. About 3 minutes on 2 cores. One cell again, for longer:
#   bash benches/postgres.sh -- --sizes 16 --workers 64 --seconds 4
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/servers.sh
if [ -z "${PINPOOL_PG_URL:-}" ]; then
    start_pg_cluster
fi
cargo bench --bench postgres --features postgres "$@"

#!/usr/bin/env bash
# The PostgreSQL benchmark on a throwaway server (see tests/servers.sh;
# an existing PINPOOL_PG_URL is used instead): pinpool against
# r2d2_postgres, bb8-postgres and deadpool-postgres, and pgbench as the
# ceiling. About 3 minutes on 2 cores. One cell again, for longer:
#   bash benches/postgres.sh -- --sizes 16 --workers 64 --seconds 4
# Cells whose runs move by more than the pools differ by, five times in
# rotating order (medians, and the ratios round by round):
#   bash benches/postgres.sh -- --workers 64 --rounds 5
# Whether a gap of a few percent is one: only the pools compared, many
# short rounds, and each ratio's geometric mean with its 95 % interval:
#   bash benches/postgres.sh -- --sizes 8,16 --workers 64 \
#       --pools pinned-tasks,off-tasks,deadpool --rounds 15 --seconds 1
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/servers.sh
if [ -z "${PINPOOL_PG_URL:-}" ]; then
    start_pg_cluster
fi
cargo bench --bench postgres --features postgres "$@"

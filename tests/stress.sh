#!/usr/bin/env bash
# The suite's test binaries, again and again, beside busy loops on every
# core: what load turns up that a quiet run does not. It found a waiter
# the core stranded beside an idle connection, and tests that gave a
# connect 50 ms, read the pool before an exited thread's thread-locals
# had run, or assumed their threads would overlap (docs/tests.md). Not
# part of CI: it runs for as long as asked.
#
#   bash tests/stress.sh            # 20 minutes, 3 busy loops
#   bash tests/stress.sh 600 4      # 10 minutes, 4 busy loops
#
# The server-backed tests run too when PINPOOL_PG_URL and MONGODB_URI
# name servers (as tests/run.sh exports them); otherwise they skip.
# Each failed run's output is kept in target/stress/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-1200}
hogs=${2:-3}
out=target/stress
mkdir -p "$out"

# Every unit and integration test binary of the workspace, built once.
mapfile -t binaries < <(
    cargo test --workspace --all-targets --all-features --no-run --message-format=json 2> /dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    target = message.get("target", {})
    if message.get("executable") and set(target.get("kind", [])) & {"lib", "test"}:
        print(message["executable"])
'
)
if [ "${#binaries[@]}" = 0 ]; then
    echo "no test binary was built: cargo test --workspace --all-targets --all-features --no-run says why" >&2
    exit 1
fi
echo "${#binaries[@]} test binaries, ${seconds}s, $hogs busy loops"

loops=()
trap 'kill "${loops[@]}" 2> /dev/null || true' EXIT
for _ in $(seq "$hogs"); do
    (while :; do :; done) &
    loops+=($!)
done

end=$(($(date +%s) + seconds))
round=0 failed=0
while [ "$(date +%s)" -lt "$end" ]; do
    round=$((round + 1))
    for binary in "${binaries[@]}"; do
        name=$(basename "$binary")
        if ! timeout 600 "$binary" -q > "$out/last.log" 2>&1; then
            failed=$((failed + 1))
            cp "$out/last.log" "$out/$name.round$round.log"
            echo "round $round: $name failed ($out/$name.round$round.log)"
        fi
    done
done
echo "$round rounds, $failed failed runs"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# Instructions per operation, counted by callgrind: the same for the same
# binary whatever else the machine does, so these figures do not wobble
# as criterion's times do on 2 shared cores.
#
#   bash benches/instructions.sh            # the table, and the check
#   bash benches/instructions.sh --update   # also rewrite the baseline
#
# Each scenario (benches/peers/src/bin/instructions.rs; the tasks taking
# turns of benches/peers/src/bin/interleaved.rs; the tasks outnumbering
# connections of benches/peers/src/bin/contended.rs) runs twice under
# callgrind, with N1 and N2 measured operations after the same warm-up;
# (count(N2) - count(N1)) / (N2 - N1) is one operation's count, start-up
# and warm-up cancelled out. pinpool is counted as built by default and
# with its `metrics` feature. The check: no scenario of pinpool's pinned
# path (the lock-free one) may count more than 10 % above the baseline
# committed in benches/instructions.baseline; a change that must cost more
# updates the baseline in the same commit, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        apt-get install -y -qq valgrind > /dev/null
    else
        echo "valgrind is needed: apt-get install valgrind"
        exit 1
    fi
fi

readonly WARM_UP=200 N1=1000 N2=3000
readonly BASELINE=benches/instructions.baseline
# The pinned path: held to the baseline.
readonly CHECKED="pinpool-blocking-pinned pinpool-tokio-pinned pinpool-tokio-session"

bins=$(mktemp -d)
trap 'rm -rf "$bins"' EXIT
# The default build last: what is left built is what other steps use.
for build in metrics default; do
    features=()
    [ "$build" = metrics ] && features=(--features metrics)
    cargo build --quiet --release -p pinpool-peers --bin instructions --bin interleaved --bin contended "${features[@]}"
    for binary in instructions interleaved contended; do cp "target/release/$binary" "$bins/$build-$binary"; done
done

# Instructions callgrind counted in one run.
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 |
        sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}

# One operation's count: scenario $2 of binary $1.
per_op() {
    local first second
    first=$(count "$1" "$2" $WARM_UP $N1)
    second=$(count "$1" "$2" $WARM_UP $N2)
    echo $(((second - first) / (N2 - N1)))
}

scenarios=
declare -A default
echo "| scenario | instructions per operation | with \`metrics\` |"
echo "|---|---:|---:|"
for binary in instructions interleaved contended; do
    for scenario in $("$bins/default-$binary" --list); do
        scenarios="$scenarios $scenario"
        default[$scenario]=$(per_op "$bins/default-$binary" "$scenario")
        with=-
        case $scenario in pinpool-*) with=$(per_op "$bins/metrics-$binary" "$scenario") ;; esac
        echo "| $scenario | ${default[$scenario]} | $with |"
    done
done

if [ "${1:-}" = --update ]; then
    for scenario in $scenarios; do echo "$scenario ${default[$scenario]}"; done > "$BASELINE"
    echo "baseline updated: $BASELINE"
    exit 0
fi
failed=0
while read -r scenario baseline; do
    case " $CHECKED " in *" $scenario "*) ;; *) continue ;; esac
    now=${default[$scenario]}
    if [ $((now * 10)) -gt $((baseline * 11)) ]; then
        echo "REGRESSION: $scenario counts $now instructions, baseline $baseline (+10 % allowed)"
        failed=1
    fi
done < "$BASELINE"
[ $failed = 0 ] && echo "the pinned path is within 10 % of the baseline ($BASELINE)"
exit $failed

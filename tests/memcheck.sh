#!/usr/bin/env bash
# The async pool's waiting checkouts under valgrind's memcheck.
#
# A waiting `get()` keeps the slot its outcome is delivered into inside its
# own future, and the pool's lock holder writes there through a pointer
# (`driver::InPlace`). That is sound only if every future leaves the line
# before it is freed: collected, timed out, or withdrawn as it is dropped.
# These tests drop, abort and time out waiting futures, many of them on the
# heap (tokio's tasks, boxed futures), where memcheck reports any read or
# write into one already freed. No Miri on this toolchain: this is the
# check that runs. (Run by tests/run.sh after benches/instructions.sh,
# which installs valgrind if it is missing.)
set -euo pipefail
cd "$(dirname "$0")/.."

binary=$(cargo test --all-features --test tokio --no-run 2>&1 |
    sed -n 's/.*Executable tests\/tokio.rs (\(.*\))$/\1/p')
[ -x "$binary" ] || { echo "no tokio test binary built"; exit 1; }

# Cancelled, aborted, timed out and dropped waiters, and grants racing them.
# valgrind runs one thread at a time; `--fair-sched=yes` hands the turns
# round in order. Without it a thread that spins or yields (a runtime's
# worker looking for work) can keep the others waiting: the storm test
# took 7 s in one run and 181 s and 865 s in two others, and 8–12 s in
# each of four with it. The timeout turns a run that stalls anyway into
# a failure, not a hang.
timeout 600 valgrind --fair-sched=yes --quiet --error-exitcode=9 --leak-check=no \
    "$binary" --test-threads=1 \
    a_cancellation_storm_loses_no_connection \
    a_grant_racing_a_dropped_get_passes_the_connection_on \
    an_aborted_pinned_task_releases_its_pin_and_connection \
    a_scope_dropped_while_waiting_leaves_no_waiter \
    timeout

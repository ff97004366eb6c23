#!/usr/bin/env bash
# Mutation testing of the decision logic (not part of CI: a full run takes
# hours on 2 cores). cargo-mutants mutates src/core and src/driver one
# change at a time and runs the fast tests against each mutant (what and
# how: .cargo/mutants.toml); a mutant the tests still pass is a gap, or an
# equivalent mutant, said so in .cargo/mutants.toml or the README.
#
#   bash tests/mutants.sh                            # everything
#   bash tests/mutants.sh --re "src/core/backoff"    # one file
#   bash tests/mutants.sh --shard 1/8                # an eighth of them
#
# The report: mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants > /dev/null || cargo install --locked cargo-mutants
# In place: the build reuses target/ instead of a fresh copy's full build
# (cargo-mutants restores each file after its mutant).
cargo mutants --in-place --no-shuffle "$@"

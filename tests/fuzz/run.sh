#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed budget, one after the other (the machine is small),
# and prints each target's executions and outcome. Not part of CI (needs nightly + cargo-fuzz):
#
#   cargo install cargo-fuzz
#   bash tests/fuzz/run.sh [SECONDS_PER_TARGET=300] [TARGET...]
#
# Each target starts from its seeds (tests/fuzz/seeds/<t>) plus its regressions, in a working
# corpus under tests/fuzz/corpus/<t> (git-ignored). A crash leaves its input in
# tests/fuzz/artifacts/<t>/; keep it in tests/fuzz/regressions/<t>/ once fixed.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(filter wal segment request)
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "tests/fuzz/corpus/$t" "tests/fuzz/logs"
  cp -n tests/fuzz/seeds/"$t"/* tests/fuzz/regressions/"$t"/* "tests/fuzz/corpus/$t/" 2>/dev/null
  log="tests/fuzz/logs/$t.log"
  cargo +nightly fuzz run --fuzz-dir tests/fuzz -O "$t" "tests/fuzz/corpus/$t" -- \
    -max_total_time="$SECS" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 > "$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  echo "$t: exit $rc, ${runs:-?} executions in ${SECS}s budget (log $log)"
  [ $rc = 0 ] || status=1
done
exit $status

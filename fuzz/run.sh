#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 20), one after another in one process each,
# and prints executions and crashes per target. `make fuzz` runs this; a longer run is
# `FUZZ_SECONDS=300 fuzz/run.sh` (figures in docs/FUZZING.md). Exits 1 if any target crashed;
# the crashing input is in fuzz/artifacts/<target>/ and its log in fuzz/logs/<target>.log.
#
# The machine has only stable Rust: RUSTC_BOOTSTRAP=1 lets it take the nightly flags cargo fuzz
# passes (-Z sanitizer, coverage options). Installs cargo-fuzz if it is missing.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-20}
TARGETS=${FUZZ_TARGETS:-"head_and_body webhook_message query_string cursor import_line"}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
python3 seeds.py
mkdir -p logs
cargo fuzz build --sanitizer none

failed=0
printf '%-16s %12s %10s %8s\n' target executions exec/s crashes >logs/summary.txt
for target in $TARGETS; do
  log=logs/$target.log
  status=0
  cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed=1
    echo "$target: crashed (exit $status), see fuzz/$log:" >&2
    grep -E "panicked|ERROR|artifact_prefix|Test unit written" "$log" | head -5 >&2 || true
  fi
  printf '%-16s %12s %10s %8s\n' "$target" "${runs:-?}" "${rate:-?}" "$crashes" >>logs/summary.txt
done
cat logs/summary.txt
exit $failed

#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time, starting from the
# seed corpus committed in fuzz/corpus/<target>/, and prints how many inputs each ran.
# A crash fails the run and leaves the input in fuzz/artifacts/<target>/. Two targets
# run at a time.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 20)
#   bash scripts/fuzz.sh --build                  (only build the targets)
#
# cargo-fuzz drives libFuzzer with instrumentation flags that need a nightly compiler;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. No sanitizer is used: kseal's
# crates forbid unsafe code, so the bugs worth finding here are panics, hangs and
# unbounded memory, which libFuzzer itself reports (-rss_limit_mb, -timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
export RUSTC_BOOTSTRAP=1
target_dir=$PWD/target/fuzz
cargo fuzz build --fuzz-dir fuzz --sanitizer none --target-dir "$target_dir" >/dev/null
[ "$seconds" = "--build" ] && exit 0
# Two targets at a time: libFuzzer runs one process on one core, and CI has two.
fuzz_one() {
  local t=$1 found=$target_dir/corpus/$1 log=$target_dir/$1.log
  mkdir -p "$found" "fuzz/artifacts/$t"
  if ! cargo fuzz run --fuzz-dir fuzz --sanitizer none --target-dir "$target_dir" "$t" \
    "$found" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=512 -max_len=262144 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $t failed: the input is in fuzz/artifacts/$t/" >&2
    return 1
  fi
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz $t: ${runs:-?} executions in ${seconds} s, no crash"
}
failed=0
running=0
for t in $(cargo fuzz list --fuzz-dir fuzz); do
  if [ "$running" -ge 2 ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit "$failed"

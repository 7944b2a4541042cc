#!/usr/bin/env bash
# Long fuzzing runs (`make fuzz`): every target through cargo-fuzz (libFuzzer, no sanitizer:
# the code under test is safe Rust, and ASan cost 3-10x the executions; see docs/RELIABILITY.md),
# one at a time (2 cores), each until FUZZ_RUNS executions or FUZZ_SECONDS, whichever comes first.
# New inputs go to a scratch corpus under target/; the committed corpus (corpus/<target>) is only
# read. Prints one summary line per target (executions, seconds, result) for docs/RELIABILITY.md.
# Usage: fuzz/run-long.sh [TARGET...]   env: FUZZ_SECONDS (1800), FUZZ_RUNS (10000000)
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-1800}"
RUNS="${FUZZ_RUNS:-10000000}"
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(
  config_query_never_panics plugin_config_never_panics config_response_never_panics
  decide_never_panics policy_parse_never_panics_and_round_trips filter_glue_never_panics
  compact_config_never_panics_and_round_trips pattern_program_never_panics)

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# cargo-fuzz passes -Z flags (sanitizers): allowed on the stable toolchain with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -s none

for t in "${TARGETS[@]}"; do
  scratch="target/long-corpus/$t"
  mkdir -p "$scratch" "artifacts/$t"
  log="target/long-$t.log"
  start=$(date +%s)
  status=ok
  cargo fuzz run -O -s none "$t" "$scratch" "corpus/$t" -- \
    -runs="$RUNS" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=FAILED
  elapsed=$(( $(date +%s) - start ))
  execs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  echo "fuzz: $t: ${execs:-?} executions in ${elapsed} s, coverage ${cov:-?} edges, $status (log: fuzz/$log)"
done

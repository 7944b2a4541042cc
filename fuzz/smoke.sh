#!/usr/bin/env bash
# Bounded fuzzing for `make test` (`make fuzz-smoke`): every target of fuzz/ runs under real,
# coverage-guided libFuzzer for FUZZ_SMOKE_SECONDS (default 5 s; 8 targets = 40 s), starting
# from its committed corpus. It is built with plain `cargo build` and the same coverage flags
# `cargo fuzz build -s none` passes (all stable), so CI needs neither cargo-fuzz (a ~2 min
# install) nor a nightly compiler. New inputs go to a temp dir: the committed corpus is only read.
# A crash, a broken property or a leak fails the run and leaves the input in fuzz/artifacts/.
# No --locked: fuzz/Cargo.lock follows the path crates, whose dependencies change without it.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${FUZZ_SMOKE_SECONDS:-5}"
TARGETS=(policy_parse_never_panics_and_round_trips decide_never_panics plugin_config_never_panics
  config_response_never_panics compact_config_never_panics_and_round_trips config_query_never_panics
  filter_glue_never_panics pattern_program_never_panics)

cargo fmt --check
CARGO_TARGET_DIR=target/clippy cargo clippy --quiet --all-targets -- -D warnings

host="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps RUSTFLAGS off build scripts and proc macros, as cargo-fuzz does.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing" CARGO_TARGET_DIR=target/smoke \
  cargo build --quiet --release --target "$host" --bins

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$scratch/$t" "artifacts/$t"
  log="$scratch/$t.log"
  if "target/smoke/$host/release/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
      -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
      "$scratch/$t" "corpus/$t" >"$log" 2>&1; then
    execs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
    echo "fuzz-smoke: $t: $execs executions in ${SECONDS_PER_TARGET} s, coverage ${cov:-?} edges, no failure"
  else
    echo "fuzz-smoke: $t: FAILED; last lines of its log:"
    tail -40 "$log"
    ls -1 "artifacts/$t" | sed 's|^|fuzz-smoke:   input saved: fuzz/artifacts/'"$t"'/|'
    failed=1
  fi
done
exit "$failed"

#!/usr/bin/env bash
# Builds the proxy-wasm filter (crates/boifi-wasm; or the packages named as arguments, e.g.
# the benchmark's SDK-only module `boifi-bench-sdk-noop`) for wasm32-unknown-unknown with
# Debian's Rust toolchain (rustup's wasm32 target cannot be downloaded here):
# std is rebuilt from Debian's rust-src (-Zbuild-std, enabled by RUSTC_BOOTSTRAP)
# and linked with LLVM 19's wasm-ld. Output:
#   target/debian/wasm32-unknown-unknown/release/boifi_wasm.wasm
# The size profile (opt-level "z": 110 699 bytes against 122 593 with "s"; fat LTO, one
# codegen unit, strip) is set through cargo's profile environment variables so it applies to
# this build only and to every crate in it, std included. Panics abort at once
# (`-Cpanic=immediate-abort`, std rebuilt with it: no panic message formatting is linked; see
# RUSTFLAGS below for the rest). When binaryen's `wasm-opt` is installed (scripts/deps.sh
# installs it), the module is then optimized for size in place with `wasm-opt -Oz`.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_RUSTC="${DEBIAN_RUSTC:-/usr/bin/rustc}"
DEBIAN_CARGO="${DEBIAN_CARGO:-/usr/bin/cargo}"
WASM_LD="${WASM_LD:-/usr/lib/llvm-19/bin/wasm-ld}"
TARGET=wasm32-unknown-unknown

for tool in "$DEBIAN_RUSTC" "$DEBIAN_CARGO" "$WASM_LD"; do
  if [ ! -x "$tool" ]; then
    echo "build-wasm: \`$tool\` is missing; run \`make deps\` (scripts/deps.sh)" >&2
    exit 1
  fi
done

export RUSTC="$DEBIAN_RUSTC"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_DEBIAN:-target/debian}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$WASM_LD"
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_STRIP=true
# rustup's environment must not leak into Debian's cargo (it would pick rustup's rustc).
unset RUSTUP_TOOLCHAIN CARGO CARGO_PROFILE_RELEASE_PANIC
# Debug formatting and panic locations are never used by the filter (its log lines use no
# `{:?}`, and panics abort at once): -Zfmt-debug=none and -Zlocation-detail=none drop their code
# and strings. std's `optimize_for_size` feature is not used: it saved 10 bytes of 104 849
# (most of what it shrinks is integer formatting, which the filter no longer links), too little
# to risk a slower algorithm on the data plane.
export RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Zfmt-debug=none -Zlocation-detail=none"

PACKAGES=("$@")
[ ${#PACKAGES[@]} -gt 0 ] || PACKAGES=(boifi-wasm)
for package in "${PACKAGES[@]}"; do
  "$DEBIAN_CARGO" build --quiet --release -p "$package" \
    -Zbuild-std=std,panic_abort --target "$TARGET"

  out="$CARGO_TARGET_DIR/$TARGET/release/${package//-/_}.wasm"
  if [ ! -f "$out" ]; then
    echo "build-wasm: expected \`$out\` was not produced" >&2
    exit 1
  fi

  WASM_OPT="${WASM_OPT:-$(command -v wasm-opt || true)}"
  if [ -n "$WASM_OPT" ] && [ -x "$WASM_OPT" ]; then
    # The features rustc's wasm32-unknown-unknown target emits (and Envoy's V8 supports).
    "$WASM_OPT" -Oz \
      --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
      --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
      "$out" -o "$out.opt"
    mv "$out.opt" "$out"
  else
    echo "build-wasm: \`wasm-opt\` (binaryen) not found: the module is not size-optimized" >&2
  fi
  echo "build-wasm: $out ($(stat -c %s "$out") bytes)"
done

#!/usr/bin/env bash
# Builds the proxy-wasm filter (crates/boifi-wasm) for wasm32-unknown-unknown with
# Debian's Rust toolchain (rustup's wasm32 target cannot be downloaded here):
# std is rebuilt from Debian's rust-src (-Zbuild-std, enabled by RUSTC_BOOTSTRAP)
# and linked with LLVM 19's wasm-ld. Output:
#   target/debian/wasm32-unknown-unknown/release/boifi_wasm.wasm
# The size profile (opt-level "s", fat LTO, one codegen unit, panic=abort, strip) is
# set through cargo's profile environment variables so it applies to this build
# only and to every crate in it, std included.
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
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_PANIC=abort
export CARGO_PROFILE_RELEASE_STRIP=true
# rustup's environment must not leak into Debian's cargo (it would pick rustup's rustc).
unset RUSTUP_TOOLCHAIN CARGO RUSTFLAGS

"$DEBIAN_CARGO" build --quiet --release -p boifi-wasm \
  -Zbuild-std=std,panic_abort --target "$TARGET"

out="$CARGO_TARGET_DIR/$TARGET/release/boifi_wasm.wasm"
if [ ! -f "$out" ]; then
  echo "build-wasm: expected \`$out\` was not produced" >&2
  exit 1
fi
echo "build-wasm: $out ($(stat -c %s "$out") bytes)"

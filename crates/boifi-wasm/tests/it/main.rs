//! boifi-wasm integration tests: the filter in a real Envoy configured like an Istio sidecar,
//! talking to a real boifi-server. Every process is started by the test and killed on drop.
//! The harness and the scenarios both filters share are `boifi_filter_e2e`'s; this binary runs
//! them with the proxy-wasm module and adds what only Wasm has.
//!
//! Prerequisites: the built filter (env BOIFI_WASM, else where `make wasm` puts it), Envoy (env
//! BOIFI_ENVOY or scripts/envoy-path.sh) and target/debug/boifi-server (or env BOIFI_SERVER).
//! A missing one fails the test with its name and how to get it; no test passes by skipping.
// Test code: a failed setup step should fail the test loudly (clippy.toml allows this only
// inside `#[test]` functions, and the helpers live in other functions).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod e2e;

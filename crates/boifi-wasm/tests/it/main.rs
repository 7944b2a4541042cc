//! boifi-wasm integration tests: the filter in a real Envoy configured like an Istio sidecar,
//! talking to a real boifi-server. Every process is started by the test and killed on drop.
//!
//! Prerequisites: the built filter (env BOIFI_WASM, else where `make wasm` puts it), Envoy (env
//! BOIFI_ENVOY or scripts/envoy-path.sh) and target/debug/boifi-server (or env BOIFI_SERVER).
//! A missing one fails the test with its name and how to get it; no test passes by skipping.
// Test code: a failed setup step should fail the test loudly (clippy.toml allows this only
// inside `#[test]` functions, and the harness lives in helper modules).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The e2e tests of this binary load the proxy-wasm filter.
const FILTER: harness::FilterKind = harness::FilterKind::Wasm;

mod e2e;
mod harness;
mod reliability_control_plane;

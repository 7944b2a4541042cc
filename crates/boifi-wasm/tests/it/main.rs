//! boifi-wasm integration tests: the filter in a real Envoy configured like an Istio sidecar,
//! talking to a real boifi-server.
// Test code: a failed setup step should fail the test loudly (clippy.toml allows this only
// inside `#[test]` functions, and the harness lives in helper modules).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;
mod smoke;

//! boifi-dynamic integration tests: the native module (`libboifi.so`) in a real Envoy
//! configured like an Istio sidecar, talking to a real boifi-server.
//!
//! The harness and the end-to-end scenarios are boifi-wasm's, compiled here a second time with
//! [`FILTER`] = native: one set of scenarios, so the two builds of the filter cannot drift
//! apart. What only the native module has (a stress run of held and aborted requests, the
//! process's memory after it) lives in [`native`]; the orders in which Envoy re-enters it, in
//! [`reentrancy`].
//!
//! Prerequisites: the module (env BOIFI_NATIVE, else target/debug/libboifi.so; `make native`
//! builds it), Envoy (env BOIFI_ENVOY or scripts/envoy-path.sh) and target/debug/boifi-server
//! (or env BOIFI_SERVER). A missing one fails the test and names it; none skips.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The e2e tests of this binary load the native dynamic module.
const FILTER: harness::FilterKind = harness::FilterKind::Native;

mod abi_header;
#[path = "../../../boifi-wasm/tests/it/e2e/mod.rs"]
mod e2e;
#[path = "../../../boifi-wasm/tests/it/harness/mod.rs"]
mod harness;
mod native;
mod reentrancy;
#[path = "../../../boifi-wasm/tests/it/reliability_control_plane.rs"]
mod reliability_control_plane;

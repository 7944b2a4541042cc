//! boifi-dynamic integration tests: the native module (`libboifi.so`) in a real Envoy
//! configured like an Istio sidecar, talking to a real boifi-server.
//!
//! The harness and the end-to-end scenarios both filters share are `boifi_filter_e2e`'s, run
//! here with the native module ([`e2e`]), so the two builds of the filter cannot drift apart.
//! What only the native module has (a stress run of held and aborted requests, the process's
//! memory after it) lives in [`native`]; the orders in which Envoy re-enters it, in
//! [`reentrancy`]; its declarations against Envoy's `abi.h`, in [`abi_header`].
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

mod abi_header;
/// The end-to-end scenarios both filters share, run with the native module.
mod e2e {
    boifi_filter_e2e::scenario_tests!(Native);
}
mod native;
mod reentrancy;

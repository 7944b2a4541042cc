//! End-to-end tests of boifi in a mesh of real Envoy sidecars: one test per acceptance
//! scenario of the seed (US1..US6, the edge cases, SC-007, SC-008).
// Test helpers outside `#[test]` functions fail the test the same way the tests do.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

mod ambient;
mod caller;
mod cascade;
mod dashboard;
mod edge_cases;
mod guards;
mod refused;
mod reliability_outage;
mod scale;
mod side_effects;
mod support;
mod teardown;
mod user_stories;

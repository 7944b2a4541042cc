//! Integration tests of the `boifi-cli` binary: help and error snapshots, offline `validate`
//! and `simulate` (on the scenario corpus of `examples/`), and every server verb against a real
//! `boifi-server` started by the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions"
)]

mod corpus;
mod help;
mod legacy;
mod offline;
mod server;

mod support;

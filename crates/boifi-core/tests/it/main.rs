//! boifi-core's integration tests: the scenario corpus, the examples, a model-based check of
//! `decide`, sampling statistics, error messages and identity resolution.

// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod bounds;
mod corpus;
mod errors;
mod guards;
mod identity;
mod model;
mod sampling;
mod shared;
mod source;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

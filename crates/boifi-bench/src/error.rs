//! Errors of the benchmarks.

use std::path::PathBuf;

/// Why a benchmark could not run or could not be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A tool the benchmark needs is not installed or not built.
    #[error("{what} not found: {hint}")]
    Missing {
        /// What is missing.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// The load generator's output could not be read.
    #[error("wrk output: {0}")]
    Wrk(String),
    /// An HTTP call to a process under test failed.
    #[error(transparent)]
    Http(#[from] boifi_testkit::http::HttpError),
    /// The mesh harness failed.
    #[error(transparent)]
    Mesh(#[from] boifi_mesh::MeshError),
    /// A process under test answered something unexpected or did not get ready.
    #[error("{0}")]
    Unexpected(String),
    /// The document to update has no place for a section and cannot be appended to.
    #[error("`{path}`: {source}")]
    Doc {
        /// The document.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl BenchError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}

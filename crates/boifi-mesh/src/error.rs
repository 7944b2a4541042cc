//! Errors of the mesh harness.

use std::path::PathBuf;

/// Why the mesh could not be started, driven or observed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// A file could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A binary the mesh needs is not there.
    #[error("{what} not found: {hint}")]
    Missing {
        /// What is missing.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// A process exited when it should be running.
    #[error("`{name}` exited early ({status}); log: {log}")]
    Exited {
        /// The process's name in the mesh.
        name: String,
        /// Its exit status.
        status: String,
        /// The last lines of its log.
        log: String,
    },
    /// Something did not become true in time.
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited_ms: u128,
    },
    /// The topology file is not usable.
    #[error("topology: {0}")]
    Topology(String),
    /// An HTTP exchange failed.
    #[error("http {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A command (e.g. `boifi-cli`) failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its output.
        output: String,
    },
    /// A certificate could not be made (the mesh's CA or a workload certificate).
    #[error("certificate for `{subject}`: {reason}")]
    Certificate {
        /// The SPIFFE ID or CA it was for.
        subject: String,
        /// What failed.
        reason: String,
    },
    /// No free loopback ports could be picked (boifi-testkit's picker).
    #[error("no free loopback ports: {0}")]
    Ports(#[source] std::io::Error),
    /// An unknown service or replica was named.
    #[error("no {0} in the mesh")]
    Unknown(String),
}

impl MeshError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> MeshError {
        MeshError::Io {
            path: path.into(),
            source,
        }
    }
}

//! Why a `boifi-deploy` command failed (the library modules' own errors, and what only the
//! commands check).

use std::path::PathBuf;

use crate::oci::OciError;
use crate::pin::PinError;
use crate::render::RenderError;

/// A failed `boifi-deploy` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The built module could not be read.
    #[error("--wasm `{path}`: {source}")]
    ReadWasm {
        /// The module's path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The layout just written does not read back as what was written (a disk or a bug).
    #[error("--out `{layout}`: the layout read back differs from what was written")]
    ReadBackDiffers {
        /// The layout directory.
        layout: PathBuf,
    },
    /// Writing or verifying the OCI layout failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// Pinning the digests into the manifests failed.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// A CRD file could not be read, or gives no schema.
    #[error("--crd `{path}`: {reason}")]
    Crd {
        /// The CRD file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The derived schema could not be written.
    #[error("--out `{path}`: {source}")]
    WriteSchema {
        /// The schema file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Rendering a kustomization or a chart failed.
    #[error(transparent)]
    Render(#[from] RenderError),
}

impl DeployError {
    /// The module at `path` could not be read.
    pub fn read_wasm(path: impl Into<PathBuf>, source: std::io::Error) -> DeployError {
        DeployError::ReadWasm {
            path: path.into(),
            source,
        }
    }
}

//! Writes the built artifact's digests into the manifests that reference it.
//!
//! A line that ends with `# boifi-deploy pin: oci-manifest` gets the OCI manifest digest
//! (what Istio checks `sha256` against for `oci://` URLs); one that ends with
//! `# boifi-deploy pin: wasm` gets the module's digest (`http(s)://` URLs, and blob URLs).
//! The 64-hex-digit value on the line is replaced; nothing else in the file changes.

use std::path::{Path, PathBuf};

use crate::digest::is_sha256_hex;
use crate::oci::Artifact;

/// The marker of a line that holds the OCI manifest digest.
pub const MANIFEST_MARKER: &str = "# boifi-deploy pin: oci-manifest";
/// The marker of a line that holds the Wasm module digest.
pub const WASM_MARKER: &str = "# boifi-deploy pin: wasm";

/// Errors pinning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A marked line holds no 64-hex-digit value to replace.
    #[error("{path}:{line}: a pinned line must hold a 64-hex-digit value")]
    NoDigest {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

/// One pinned line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedLine {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The value written.
    pub digest: String,
    /// Whether the line changed.
    pub changed: bool,
}

/// Pins every marked line in the `.yaml` files under `dir` (recursively).
///
/// # Errors
/// I/O errors, or a marked line without a digest to replace.
pub fn pin_tree(dir: &Path, artifact: &Artifact) -> Result<Vec<PinnedLine>, PinError> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for file in files {
        out.extend(pin_file(&file, artifact)?);
    }
    Ok(out)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PinError> {
    let io = |source| PinError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

fn pin_file(path: &Path, artifact: &Artifact) -> Result<Vec<PinnedLine>, PinError> {
    let io = |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut pinned = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let digest = if trimmed.ends_with(MANIFEST_MARKER) {
            Some(artifact.manifest_sha256())
        } else if trimmed.ends_with(WASM_MARKER) {
            Some(artifact.wasm_sha256())
        } else {
            None
        };
        let Some(digest) = digest else {
            lines.push(line.to_owned());
            continue;
        };
        let Some(start) = find_hex64(line) else {
            return Err(PinError::NoDigest {
                path: path.to_path_buf(),
                line: i + 1,
            });
        };
        let old = line.get(start..start + 64).unwrap_or_default();
        let new_line = format!(
            "{}{digest}{}",
            line.get(..start).unwrap_or_default(),
            line.get(start + 64..).unwrap_or_default()
        );
        pinned.push(PinnedLine {
            path: path.to_path_buf(),
            line: i + 1,
            digest: digest.to_owned(),
            changed: old != digest,
        });
        lines.push(new_line);
    }
    if pinned.iter().any(|p| p.changed) {
        std::fs::write(path, lines.concat()).map_err(io)?;
    }
    Ok(pinned)
}

/// Byte offset of the first run of exactly 64 lowercase hex digits.
fn find_hex64(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    let mut start = 0;
    while start < bytes.len() {
        let run = bytes.get(start..)?.iter().take_while(|b| is_hex(b)).count();
        if run == 64 && line.get(start..start + 64).is_some_and(is_sha256_hex) {
            return Some(start);
        }
        start += run.max(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_64_hex() {
        let hex = "a".repeat(64);
        assert_eq!(find_hex64(&format!("  sha256: {hex}  # x")), Some(10));
        assert_eq!(find_hex64(&format!("  sha256: {hex}b")), None);
        assert_eq!(
            find_hex64(&format!("url: http://h/blobs/sha256:{hex} #")),
            Some(27)
        );
    }
}

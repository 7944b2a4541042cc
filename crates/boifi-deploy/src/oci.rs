//! The filter as a Wasm OCI artifact, written as an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), and the verifier for such a layout.
//!
//! The format is the *oci* variant of the Wasm image spec that Istio's agent pulls
//! (`pkg/wasm/imagefetcher.go`, `extractOCIArtifactImage`): an OCI image manifest whose
//! `layers` are exactly two, one of media type [`WASM_LAYER_MEDIA_TYPE`] holding the raw module
//! and one of media type [`WASM_CONFIG_MEDIA_TYPE`] holding the runtime config; the manifest's
//! `config` is that same runtime-config blob. Istio rejects the variant when the layer count is
//! not two, so a single wasm layer alone would not load.
//!
//! Istio checks a `WasmPlugin`'s `sha256` against the **manifest** digest for `oci://` URLs and
//! against the module's own digest for `http(s)://` URLs; [`Artifact`] reports both.
//!
//! Nothing here reads a clock: the same module and tag always give the same digests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{oci_digest, parse_oci_digest, sha256_hex};

/// Media type of the layer holding the raw Wasm module.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Media type of the runtime-config blob (manifest config and second layer).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// Media type of an OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The `imageLayoutVersion` this writer produces.
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";
/// The annotation naming a manifest in `index.json` (what `oras cp --from-oci-layout dir:TAG` picks).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The annotation naming a blob's file.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The smallest valid Wasm module (magic number and version 1, no sections). Used when no
/// built filter is at hand, e.g. for structure tests.
pub const MINIMAL_WASM_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// What the artifact is called and tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactOptions {
    /// Tag written as the manifest's `org.opencontainers.image.ref.name`.
    pub tag: String,
    /// File name recorded as the Wasm layer's title.
    pub wasm_file_name: String,
    /// Source repository recorded in the manifest annotations.
    pub source: String,
}

impl Default for ArtifactOptions {
    fn default() -> Self {
        Self {
            tag: env!("CARGO_PKG_VERSION").to_owned(),
            wasm_file_name: "boifi_wasm.wasm".to_owned(),
            source: env!("CARGO_PKG_REPOSITORY").to_owned(),
        }
    }
}

/// The digests and sizes of an artifact, as written or as verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The manifest's tag, from `index.json`.
    pub tag: String,
    /// `sha256:<hex>` of the image manifest: what `WasmPlugin.spec.sha256` must hold for `oci://`.
    pub manifest_digest: String,
    /// Size of the manifest in bytes.
    pub manifest_size: u64,
    /// `sha256:<hex>` of the Wasm module: what `WasmPlugin.spec.sha256` must hold for `http(s)://`.
    pub wasm_digest: String,
    /// Size of the Wasm module in bytes.
    pub wasm_size: u64,
    /// `sha256:<hex>` of the runtime-config blob.
    pub config_digest: String,
    /// Size of the runtime-config blob in bytes.
    pub config_size: u64,
    /// Bytes of all blobs (manifest, config, module).
    pub total_blob_bytes: u64,
}

impl Artifact {
    /// The manifest digest without its `sha256:` prefix (the form of `WasmPlugin.spec.sha256`).
    #[must_use]
    pub fn manifest_sha256(&self) -> &str {
        parse_oci_digest(&self.manifest_digest).unwrap_or_default()
    }

    /// The module digest without its `sha256:` prefix.
    #[must_use]
    pub fn wasm_sha256(&self) -> &str {
        parse_oci_digest(&self.wasm_digest).unwrap_or_default()
    }
}

/// Errors writing or verifying a layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON document of the layout is malformed.
    #[error("{path}: not a valid {what}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the file should have been.
        what: &'static str,
        /// The cause.
        source: serde_json::Error,
    },
    /// The bytes given as the module are not a Wasm module.
    #[error(
        "{path}: not a Wasm module (it must start with `\\0asm` and a version, 8 bytes at least)"
    )]
    NotWasm {
        /// Where the bytes came from.
        path: String,
    },
    /// The output directory holds something other than an OCI layout.
    #[error("{path}: refusing to overwrite a non-empty directory that is not an OCI image layout")]
    NotALayoutDir {
        /// The directory.
        path: PathBuf,
    },
    /// The layout breaks a rule of the OCI image spec or of the Wasm artifact format.
    #[error("{field}: {reason}")]
    Invalid {
        /// The file and field, e.g. `index.json: manifests[0].digest`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageIndex {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutMarker {
    image_layout_version: String,
}

/// The runtime config of the Wasm image spec (`type`, `abiVersions`, `config`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    abi_versions: [&'a str; 1],
    config: BTreeMap<&'a str, &'a str>,
}

/// True when `bytes` pass Istio's own module check (`isValidWasmBinary`): magic and version.
#[must_use]
pub fn is_wasm_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm")
}

/// The blobs and documents of a layout, computed in memory.
#[derive(Debug)]
struct LayoutFiles {
    artifact: Artifact,
    /// `(hex digest, bytes)` of each blob.
    blobs: Vec<(String, Vec<u8>)>,
    index: Vec<u8>,
    marker: Vec<u8>,
}

fn to_json<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, OciError> {
    serde_json::to_vec_pretty(value).map_err(|source| OciError::Json {
        path: PathBuf::from(what),
        what,
        source,
    })
}

fn layout_files(wasm: &[u8], options: &ArtifactOptions) -> Result<LayoutFiles, OciError> {
    if !is_wasm_module(wasm) {
        return Err(OciError::NotWasm {
            path: options.wasm_file_name.clone(),
        });
    }
    let config = to_json(
        &RuntimeConfig {
            kind: "envoy_proxy",
            abi_versions: ["proxy_abi_version_0_2_1"],
            config: BTreeMap::new(),
        },
        "runtime config",
    )?;
    let config_descriptor = |annotations: BTreeMap<String, String>| Descriptor {
        media_type: WASM_CONFIG_MEDIA_TYPE.to_owned(),
        digest: oci_digest(&config),
        size: config.len() as u64,
        annotations,
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
        config: config_descriptor(BTreeMap::new()),
        layers: vec![
            config_descriptor(BTreeMap::from([(
                TITLE_ANNOTATION.to_owned(),
                "runtime-config.json".to_owned(),
            )])),
            Descriptor {
                media_type: WASM_LAYER_MEDIA_TYPE.to_owned(),
                digest: oci_digest(wasm),
                size: wasm.len() as u64,
                annotations: BTreeMap::from([(
                    TITLE_ANNOTATION.to_owned(),
                    options.wasm_file_name.clone(),
                )]),
            },
        ],
        annotations: BTreeMap::from([
            (
                "org.opencontainers.image.title".to_owned(),
                "boifi-wasm".to_owned(),
            ),
            (
                "org.opencontainers.image.description".to_owned(),
                "boifi fault-injection proxy-wasm filter".to_owned(),
            ),
            (
                "org.opencontainers.image.version".to_owned(),
                options.tag.clone(),
            ),
            (
                "org.opencontainers.image.source".to_owned(),
                options.source.clone(),
            ),
        ]),
    };
    let manifest_bytes = to_json(&manifest, "image manifest")?;
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX_MEDIA_TYPE.to_owned()),
        manifests: vec![Descriptor {
            media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
            digest: oci_digest(&manifest_bytes),
            size: manifest_bytes.len() as u64,
            annotations: BTreeMap::from([(REF_NAME_ANNOTATION.to_owned(), options.tag.clone())]),
        }],
    };
    let index_bytes = to_json(&index, "image index")?;
    let marker = to_json(
        &LayoutMarker {
            image_layout_version: IMAGE_LAYOUT_VERSION.to_owned(),
        },
        "oci-layout",
    )?;
    let artifact = Artifact {
        tag: options.tag.clone(),
        manifest_digest: oci_digest(&manifest_bytes),
        manifest_size: manifest_bytes.len() as u64,
        wasm_digest: oci_digest(wasm),
        wasm_size: wasm.len() as u64,
        config_digest: oci_digest(&config),
        config_size: config.len() as u64,
        total_blob_bytes: (manifest_bytes.len() + config.len() + wasm.len()) as u64,
    };
    Ok(LayoutFiles {
        artifact,
        blobs: vec![
            (sha256_hex(wasm), wasm.to_vec()),
            (sha256_hex(&config), config),
            (sha256_hex(&manifest_bytes), manifest_bytes),
        ],
        index: index_bytes,
        marker,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the OCI image layout for `wasm` into `dir` and returns its digests.
///
/// `dir` is created when missing. An existing layout in `dir` is replaced (its blobs are
/// removed first, so no stale blob survives); any other non-empty directory is refused.
///
/// # Errors
/// [`OciError::NotWasm`] when `wasm` is not a module, [`OciError::NotALayoutDir`], or I/O errors.
pub fn write_layout(
    dir: &Path,
    wasm: &[u8],
    options: &ArtifactOptions,
) -> Result<Artifact, OciError> {
    let files = layout_files(wasm, options)?;
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
        let empty = entries.next().is_none();
        if !empty && !dir.join("oci-layout").is_file() {
            return Err(OciError::NotALayoutDir {
                path: dir.to_path_buf(),
            });
        }
        let blobs = dir.join("blobs");
        if blobs.exists() {
            fs::remove_dir_all(&blobs).map_err(io_err(&blobs))?;
        }
    }
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(io_err(&blob_dir))?;
    for (hex, bytes) in &files.blobs {
        let path = blob_dir.join(hex);
        fs::write(&path, bytes).map_err(io_err(&path))?;
    }
    let index = dir.join("index.json");
    fs::write(&index, &files.index).map_err(io_err(&index))?;
    let marker = dir.join("oci-layout");
    fs::write(&marker, &files.marker).map_err(io_err(&marker))?;
    Ok(files.artifact)
}

/// A layout that passed [`verify_layout`], with its module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedArtifact {
    /// Digests and sizes.
    pub artifact: Artifact,
    /// The module bytes (the Wasm layer).
    pub wasm: Vec<u8>,
    /// The runtime config.
    pub runtime_config: serde_json::Value,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> OciError {
    OciError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads the blob a descriptor names and checks its size and digest.
fn read_blob(dir: &Path, descriptor: &Descriptor, field: &str) -> Result<Vec<u8>, OciError> {
    let Some(hex) = parse_oci_digest(&descriptor.digest) else {
        return Err(invalid(
            format!("{field}.digest"),
            format!(
                "`{}` is not a `sha256:` digest of 64 lowercase hex digits",
                descriptor.digest
            ),
        ));
    };
    let path = dir.join("blobs").join("sha256").join(hex);
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    if bytes.len() as u64 != descriptor.size {
        return Err(invalid(
            format!("{field}.size"),
            format!(
                "says `{}` but the blob has {} bytes",
                descriptor.size,
                bytes.len()
            ),
        ));
    }
    let actual = oci_digest(&bytes);
    if actual != descriptor.digest {
        return Err(invalid(
            format!("{field}.digest"),
            format!(
                "says `{}` but the blob hashes to `{actual}`",
                descriptor.digest
            ),
        ));
    }
    Ok(bytes)
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    path: PathBuf,
    what: &'static str,
) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|source| OciError::Json { path, what, source })
}

/// Verifies an OCI image layout holding one Wasm artifact: `oci-layout` version, `index.json`
/// naming exactly one image manifest, and in that manifest the config and both layers, every
/// digest and size checked against the blob bytes, the media types Istio expects, and a module
/// that passes Istio's own Wasm check.
///
/// # Errors
/// The first rule broken, naming the file and field.
pub fn verify_layout(dir: &Path) -> Result<VerifiedArtifact, OciError> {
    let marker_path = dir.join("oci-layout");
    let marker_bytes = fs::read(&marker_path).map_err(io_err(&marker_path))?;
    let marker: LayoutMarker = parse_json(&marker_bytes, marker_path, "oci-layout file")?;
    if marker.image_layout_version != IMAGE_LAYOUT_VERSION {
        return Err(invalid(
            "oci-layout: imageLayoutVersion",
            format!(
                "`{}` is not `{IMAGE_LAYOUT_VERSION}`",
                marker.image_layout_version
            ),
        ));
    }

    let index_path = dir.join("index.json");
    let index_bytes = fs::read(&index_path).map_err(io_err(&index_path))?;
    let index: ImageIndex = parse_json(&index_bytes, index_path, "image index")?;
    if index.schema_version != 2 {
        return Err(invalid(
            "index.json: schemaVersion",
            format!("`{}` is not `2`", index.schema_version),
        ));
    }
    let [manifest_descriptor] = index.manifests.as_slice() else {
        return Err(invalid(
            "index.json: manifests",
            format!(
                "holds {} manifests, expected exactly one",
                index.manifests.len()
            ),
        ));
    };
    if manifest_descriptor.media_type != OCI_MANIFEST_MEDIA_TYPE {
        return Err(invalid(
            "index.json: manifests[0].mediaType",
            format!(
                "`{}` is not `{OCI_MANIFEST_MEDIA_TYPE}`",
                manifest_descriptor.media_type
            ),
        ));
    }
    let tag = manifest_descriptor
        .annotations
        .get(REF_NAME_ANNOTATION)
        .cloned()
        .ok_or_else(|| {
            invalid(
                "index.json: manifests[0].annotations",
                format!("no `{REF_NAME_ANNOTATION}` (the tag)"),
            )
        })?;
    let manifest_bytes = read_blob(dir, manifest_descriptor, "index.json: manifests[0]")?;
    let manifest_path = dir.join("blobs/sha256").join(sha256_hex(&manifest_bytes));
    let manifest: ImageManifest = parse_json(&manifest_bytes, manifest_path, "image manifest")?;
    if manifest.schema_version != 2 {
        return Err(invalid(
            "manifest: schemaVersion",
            format!("`{}` is not `2`", manifest.schema_version),
        ));
    }
    if manifest.media_type.as_deref() != Some(OCI_MANIFEST_MEDIA_TYPE) {
        return Err(invalid(
            "manifest: mediaType",
            format!("must be `{OCI_MANIFEST_MEDIA_TYPE}`"),
        ));
    }
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(invalid(
            "manifest: config.mediaType",
            format!(
                "`{}` is not `{WASM_CONFIG_MEDIA_TYPE}`",
                manifest.config.media_type
            ),
        ));
    }
    let config_bytes = read_blob(dir, &manifest.config, "manifest: config")?;
    let runtime_config: serde_json::Value =
        parse_json(&config_bytes, dir.join("blobs/sha256"), "runtime config")?;
    if runtime_config
        .get("type")
        .and_then(serde_json::Value::as_str)
        != Some("envoy_proxy")
    {
        return Err(invalid(
            "manifest: config (runtime config).type",
            "must be `envoy_proxy`",
        ));
    }
    // Istio's oci-variant reader: exactly two layers, one of them the module.
    if manifest.layers.len() != 2 {
        return Err(invalid(
            "manifest: layers",
            format!(
                "holds {} layers; Istio's agent reads the oci variant only with exactly 2",
                manifest.layers.len()
            ),
        ));
    }
    let mut wasm = None;
    let mut config_layers = 0;
    for (i, layer) in manifest.layers.iter().enumerate() {
        let field = format!("manifest: layers[{i}]");
        let bytes = read_blob(dir, layer, &field)?;
        match layer.media_type.as_str() {
            WASM_LAYER_MEDIA_TYPE if wasm.is_none() => wasm = Some(bytes),
            WASM_LAYER_MEDIA_TYPE => {
                return Err(invalid(
                    field,
                    "a second Wasm layer; exactly one is allowed",
                ));
            }
            WASM_CONFIG_MEDIA_TYPE => config_layers += 1,
            other => {
                return Err(invalid(
                    format!("{field}.mediaType"),
                    format!("`{other}` is neither `{WASM_LAYER_MEDIA_TYPE}` nor `{WASM_CONFIG_MEDIA_TYPE}`"),
                ));
            }
        }
    }
    let Some(wasm) = wasm else {
        return Err(invalid(
            "manifest: layers",
            format!("no layer of media type `{WASM_LAYER_MEDIA_TYPE}`"),
        ));
    };
    if config_layers != 1 {
        return Err(invalid(
            "manifest: layers",
            format!("expected one `{WASM_CONFIG_MEDIA_TYPE}` layer"),
        ));
    }
    if !is_wasm_module(&wasm) {
        return Err(OciError::NotWasm {
            path: "manifest: layers (the Wasm layer)".to_owned(),
        });
    }
    let artifact = Artifact {
        tag,
        manifest_digest: manifest_descriptor.digest.clone(),
        manifest_size: manifest_descriptor.size,
        wasm_digest: oci_digest(&wasm),
        wasm_size: wasm.len() as u64,
        config_digest: manifest.config.digest.clone(),
        config_size: manifest.config.size,
        total_blob_bytes: manifest_descriptor.size + manifest.config.size + wasm.len() as u64,
    };
    Ok(VerifiedArtifact {
        artifact,
        wasm,
        runtime_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_deterministic_and_depend_on_the_module() {
        let options = ArtifactOptions::default();
        let a = layout_files(MINIMAL_WASM_MODULE, &options).unwrap();
        let b = layout_files(MINIMAL_WASM_MODULE, &options).unwrap();
        assert_eq!(a.artifact, b.artifact);
        let mut other = MINIMAL_WASM_MODULE.to_vec();
        other.extend_from_slice(&[0, 4, b'n', b'a', b'm', b'e', 0]);
        let c = layout_files(&other, &options).unwrap();
        assert_ne!(a.artifact.manifest_digest, c.artifact.manifest_digest);
        assert_ne!(a.artifact.wasm_digest, c.artifact.wasm_digest);
        assert_eq!(a.artifact.config_digest, c.artifact.config_digest);
    }

    #[test]
    fn rejects_bytes_that_are_not_wasm() {
        let err = layout_files(b"#!/bin/sh\n", &ArtifactOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not a Wasm module"), "{err}");
    }
}

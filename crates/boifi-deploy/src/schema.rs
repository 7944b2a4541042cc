//! Validation against JSON schemas on disk: the strict standalone Kubernetes schemas
//! (`k8s-schemas/v1.30.0-standalone-strict/<kind>-<group>-<version>.json`, kubeconform naming)
//! and custom resources' schemas (`k8s-schemas/<group>/<kind>_<version>.json`).
//!
//! The schemas are self-contained, nothing is fetched: the validator is built without any
//! resolver for remote references.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jsonschema::{Draft, Validator};
use serde_json::Value;

/// Groups under `k8s.io` that are not built in: their kinds are CRDs (Gateway API's).
const CRD_GROUPS_UNDER_K8S_IO: &[&str] = &["gateway.networking.k8s.io"];

/// Whether `api_version` belongs to Kubernetes itself (the core group, `*.k8s.io`, and the
/// unsuffixed built-in groups), whose schemas live in the strict folder; any other group is a
/// custom resource with its schema under its group's folder.
#[must_use]
pub fn is_builtin_api(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => true,
        Some((group, _)) if CRD_GROUPS_UNDER_K8S_IO.contains(&group) => false,
        Some((group, _)) => {
            group.ends_with(".k8s.io")
                || ["apps", "batch", "policy", "autoscaling"].contains(&group)
        }
    }
}

/// The folder of the strict Kubernetes schemas, relative to the schema root.
pub const K8S_STRICT_DIR: &str = "v1.30.0-standalone-strict";

/// Errors loading a schema (as opposed to a document failing one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// No schema file for this kind.
    #[error("no schema for `{kind}` of `{api_version}` (looked for {path})")]
    Missing {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
        /// The file looked for.
        path: PathBuf,
    },
    /// The schema file is unreadable or not JSON.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The schema file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One way a document fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON pointer into the document (`/spec/template/...`), empty for the root.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// The schema file for a kind, relative to the schema root (`k8s-schemas/`).
#[must_use]
pub fn schema_path(api_version: &str, kind: &str) -> PathBuf {
    let kind = kind.to_ascii_lowercase();
    match api_version.split_once('/') {
        None => PathBuf::from(K8S_STRICT_DIR).join(format!("{kind}-{api_version}.json")),
        Some((group, version)) if is_builtin_api(api_version) => {
            let short = group.split('.').next().unwrap_or(group);
            PathBuf::from(K8S_STRICT_DIR).join(format!("{kind}-{short}-{version}.json"))
        }
        Some((group, version)) => PathBuf::from(group).join(format!("{kind}_{version}.json")),
    }
}

/// A kind whose standalone schema is not in the schema folder but is inlined, whole, in
/// another kind's (a standalone schema inlines every definition it uses).
struct EmbeddedSchema {
    api_version: &'static str,
    kind: &'static str,
    /// The schema file holding it, relative to the schema root.
    host: &'static str,
    /// Where, as a JSON pointer.
    pointer: &'static str,
}

/// A StatefulSet's `volumeClaimTemplates` items are complete `PersistentVolumeClaim`s (the
/// same definition, `x-kubernetes-group-version-kind` and all).
const EMBEDDED_SCHEMAS: &[EmbeddedSchema] = &[EmbeddedSchema {
    api_version: "v1",
    kind: "PersistentVolumeClaim",
    host: "v1.30.0-standalone-strict/statefulset-apps-v1.json",
    pointer: "/properties/spec/properties/volumeClaimTemplates/items",
}];

/// Compiled schemas, loaded on first use.
#[derive(Debug)]
pub struct SchemaSet {
    root: PathBuf,
    validators: HashMap<PathBuf, Validator>,
}

impl SchemaSet {
    /// Schemas under `root` (the `k8s-schemas` folder).
    #[must_use]
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            validators: HashMap::new(),
        }
    }

    /// The schema root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn validator(&mut self, api_version: &str, kind: &str) -> Result<&Validator, SchemaError> {
        let relative = schema_path(api_version, kind);
        if !self.validators.contains_key(&relative) {
            let own = self.root.join(&relative);
            let embedded = EMBEDDED_SCHEMAS
                .iter()
                .find(|e| e.api_version == api_version && e.kind == kind);
            let (path, pointer) = match embedded {
                Some(e) if !own.is_file() => (self.root.join(e.host), e.pointer),
                _ => (own, ""),
            };
            if !path.is_file() {
                return Err(SchemaError::Missing {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                    path,
                });
            }
            let unreadable = |reason: String| SchemaError::Unreadable {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?;
            let whole: Value =
                serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
            let mut schema = whole
                .pointer(pointer)
                .cloned()
                .ok_or_else(|| unreadable(format!("no schema at `{pointer}`")))?;
            // `http://json-schema.org/schema#` names no draft; the schemas are draft-7 compatible.
            if let Some(map) = schema.as_object_mut() {
                map.remove("$schema");
            }
            let validator = jsonschema::options()
                .with_draft(Draft::Draft7)
                .build(&schema)
                .map_err(|e| unreadable(e.to_string()))?;
            self.validators.insert(relative.clone(), validator);
        }
        self.validators
            .get(&relative)
            .ok_or_else(|| SchemaError::Unreadable {
                path: relative.clone(),
                reason: "schema cache lost the entry".to_owned(),
            })
    }

    /// Validates `doc` against the schema of its `apiVersion` and `kind`.
    ///
    /// # Errors
    /// [`SchemaError`] when there is no usable schema for the kind; a document that fails its
    /// schema is `Ok` with the violations.
    pub fn validate(&mut self, doc: &Value) -> Result<Vec<SchemaViolation>, SchemaError> {
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let validator = self.validator(api_version, kind)?;
        Ok(validator
            .iter_errors(doc)
            .map(|error| SchemaViolation {
                pointer: error.instance_path().to_string(),
                message: error.to_string(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconform_file_names() {
        assert_eq!(
            schema_path("v1", "Service"),
            Path::new("v1.30.0-standalone-strict/service-v1.json")
        );
        assert_eq!(
            schema_path("apps/v1", "StatefulSet"),
            Path::new("v1.30.0-standalone-strict/statefulset-apps-v1.json")
        );
        assert_eq!(
            schema_path("networking.k8s.io/v1", "NetworkPolicy"),
            Path::new("v1.30.0-standalone-strict/networkpolicy-networking-v1.json")
        );
        assert_eq!(
            schema_path("extensions.istio.io/v1alpha1", "WasmPlugin"),
            Path::new("extensions.istio.io/wasmplugin_v1alpha1.json")
        );
        assert_eq!(
            schema_path("gateway.networking.k8s.io/v1", "Gateway"),
            Path::new("gateway.networking.k8s.io/gateway_v1.json")
        );
    }
}

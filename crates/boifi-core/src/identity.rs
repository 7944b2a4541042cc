//! Who a sidecar is, resolved from the node metadata Istio gives Envoy.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use serde_json::Value;

/// The label Istio's injector sets to the canonical service name.
pub const CANONICAL_NAME_LABEL: &str = "service.istio.io/canonical-name";

/// The raw node metadata keys that matter (Istio sidecar keys), as the host reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetadata {
    /// `WORKLOAD_NAME`: the owning Deployment's name.
    pub workload_name: Option<String>,
    /// `NAMESPACE`.
    pub namespace: Option<String>,
    /// `NAME`: the pod name.
    pub name: Option<String>,
    /// `LABELS`: the pod labels.
    pub labels: BTreeMap<String, String>,
}

/// A sidecar's identity: what selectors are compared with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The service; `None` when it cannot be determined.
    pub service: Option<String>,
    /// The namespace; `None` when it cannot be determined.
    pub namespace: Option<String>,
    /// The pod name.
    pub pod: Option<String>,
    /// The pod labels.
    pub labels: BTreeMap<String, String>,
}

/// Why node metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not JSON.
    #[error("node metadata is not valid JSON: {0}")]
    Json(String),
    /// JSON, but no node metadata object inside.
    #[error("no node metadata found: expected an object with `metadata` (or `node.metadata`)")]
    NoMetadata,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(ToOwned::to_owned)
}

impl Identity {
    /// Resolves the identity: service = `LABELS["service.istio.io/canonical-name"]`, else
    /// `LABELS["app"]`, else `WORKLOAD_NAME`; namespace = `NAMESPACE`; pod = `NAME`.
    pub fn resolve(metadata: &NodeMetadata) -> Identity {
        let labels: BTreeMap<String, String> = metadata
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let service = non_empty(labels.get(CANONICAL_NAME_LABEL).map(String::as_str))
            .or_else(|| non_empty(labels.get("app").map(String::as_str)))
            .or_else(|| non_empty(metadata.workload_name.as_deref()));
        Identity {
            service,
            namespace: non_empty(metadata.namespace.as_deref()),
            pod: non_empty(metadata.name.as_deref()),
            labels,
        }
    }

    /// An identity with just a service and a namespace (tests, `simulate`).
    pub fn for_service(service: &str, namespace: &str) -> Identity {
        Identity {
            service: non_empty(Some(service)),
            namespace: non_empty(Some(namespace)),
            ..Identity::default()
        }
    }

    /// Reads an Envoy bootstrap, its `node` block, or a bare metadata object.
    pub fn from_node_json(text: &str) -> Result<Identity, IdentityError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| IdentityError::Json(e.to_string()))?;
        let metadata = value
            .pointer("/node/metadata")
            .or_else(|| value.get("metadata"))
            .or_else(|| {
                value
                    .as_object()
                    .filter(|m| m.contains_key("NAMESPACE") || m.contains_key("LABELS"))
                    .map(|_| &value)
            })
            .ok_or(IdentityError::NoMetadata)?;
        Ok(Identity::resolve(&NodeMetadata::from_json(metadata)))
    }

    /// True when the service or the namespace is unknown: only wildcard policies apply then.
    pub fn is_partial(&self) -> bool {
        self.service.is_none() || self.namespace.is_none()
    }
}

impl NodeMetadata {
    /// Reads the Istio keys from a metadata JSON object; other keys and wrong types are ignored.
    pub fn from_json(metadata: &Value) -> NodeMetadata {
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(Value::as_str)
                .map(ToOwned::to_owned)
        };
        let labels = metadata
            .get("LABELS")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        NodeMetadata {
            workload_name: text("WORKLOAD_NAME"),
            namespace: text("NAMESPACE"),
            name: text("NAME"),
            labels,
        }
    }
}

impl core::fmt::Display for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "service={} namespace={} pod={}",
            self.service.as_deref().unwrap_or("<unknown>"),
            self.namespace.as_deref().unwrap_or("<unknown>"),
            self.pod.as_deref().unwrap_or("<unknown>")
        )
    }
}

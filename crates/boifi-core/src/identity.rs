//! Who a sidecar is, resolved from the node metadata Istio gives Envoy.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use serde_json::{Map, Value};

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

/// The shape of the metadata, built in one place (the inverse of [`NodeMetadata::from_json`]) for
/// the tests, the scenarios and the local mesh.
impl NodeMetadata {
    /// The `metadata` object Istio's pilot-agent writes for a sidecar of this pod (see
    /// `testdata/sidecar-node-frontend-demo.json`): these keys, Istio's own labels
    /// (`tlsMode`; the canonical ones when the pod has a workload) and the fixed keys of a
    /// sidecar on this machine. `workload_name` is also the service account.
    pub fn istio_metadata(&self) -> Value {
        let text = |s: &str| Value::String(s.to_owned());
        let mut labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect();
        labels.insert("security.istio.io/tlsMode".into(), text("istio"));
        let mut m = Map::new();
        let mut annotations = Map::new();
        annotations.insert("istio.io/rev".into(), text("default"));
        annotations.insert("prometheus.io/path".into(), text("/stats/prometheus"));
        annotations.insert("prometheus.io/scrape".into(), text("true"));
        m.insert("ANNOTATIONS".into(), Value::Object(annotations));
        for (key, value) in [
            ("APP_CONTAINERS", "server"),
            ("CLUSTER_ID", "Kubernetes"),
            ("INSTANCE_IPS", "127.0.0.1"),
            ("INTERCEPTION_MODE", "REDIRECT"),
            ("ISTIO_VERSION", "1.30.3"),
            ("MESH_ID", DEFAULT_TRUST_DOMAIN),
            ("METADATA_DISCOVERY", "false"),
        ] {
            m.insert(key.into(), text(value));
        }
        m.insert("ENVOY_PROMETHEUS_PORT".into(), Value::from(15090));
        m.insert("ENVOY_STATUS_PORT".into(), Value::from(15021));
        if let Some(pod) = &self.name {
            m.insert("NAME".into(), text(pod));
        }
        if let Some(ns) = &self.namespace {
            m.insert("NAMESPACE".into(), text(ns));
        }
        if let Some(workload) = &self.workload_name {
            labels.insert(CANONICAL_NAME_LABEL.into(), text(workload));
            let revision = self.labels.get("version").map_or("latest", String::as_str);
            labels.insert("service.istio.io/canonical-revision".into(), text(revision));
            m.insert("WORKLOAD_NAME".into(), text(workload));
            m.insert("SERVICE_ACCOUNT".into(), text(workload));
            let ns = self.namespace.as_deref().unwrap_or("default");
            m.insert(
                "OWNER".into(),
                Value::String(format!(
                    "kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{workload}"
                )),
            );
        }
        m.insert("LABELS".into(), Value::Object(labels));
        Value::Object(m)
    }

    /// The whole `node` block: Istio's `id` and `cluster` around
    /// [`NodeMetadata::istio_metadata`].
    pub fn istio_node(&self) -> Value {
        let ns = self.namespace.as_deref().unwrap_or("default");
        let pod = self.name.as_deref().unwrap_or("unknown");
        let cluster = format!(
            "{}.{ns}",
            self.workload_name.as_deref().unwrap_or("istio-proxy")
        );
        let mut node = Map::new();
        node.insert(
            "id".into(),
            Value::String(format!(
                "sidecar~127.0.0.1~{pod}.{ns}~{ns}.svc.cluster.local"
            )),
        );
        node.insert("cluster".into(), Value::String(cluster));
        node.insert("metadata".into(), self.istio_metadata());
        Value::Object(node)
    }
}

/// The kind of proxy a filter runs in. A sidecar serves one workload, so the policies that
/// concern it are known once per set; a waypoint (Istio ambient) or a gateway serves many
/// services, so the target service is decided per request.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    /// One workload's sidecar (the default).
    #[default]
    Sidecar,
    /// An Istio ambient waypoint: one Envoy for the services of a namespace or service account.
    Waypoint,
    /// An ingress gateway: one Envoy in front of many backends.
    Gateway,
}

impl ProxyKind {
    /// Every kind, in the order of their names in messages.
    pub const ALL: [ProxyKind; 3] = [ProxyKind::Sidecar, ProxyKind::Waypoint, ProxyKind::Gateway];

    /// The name on the wire and in status (`sidecar`, `waypoint`, `gateway`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Waypoint => "waypoint",
            ProxyKind::Gateway => "gateway",
        }
    }

    /// The kind of a name written by [`ProxyKind::as_str`].
    pub fn parse(name: &str) -> Option<ProxyKind> {
        ProxyKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// True for the kinds that serve many services (the target is decided per request).
    pub fn is_shared(self) -> bool {
        self != ProxyKind::Sidecar
    }

    fn is_sidecar(&self) -> bool {
        *self == ProxyKind::Sidecar
    }

    /// The kind of the proxy whose pod carries these labels. Istio labels a waypoint's pod with
    /// its Gateway's class `istio-waypoint`, and a gateway's pod with its Gateway's name (a
    /// Gateway API gateway) or `istio: ingressgateway` (the classic ingress gateway).
    pub fn of_labels(labels: &BTreeMap<String, String>) -> ProxyKind {
        let label = |key: &str| labels.get(key).map(String::as_str);
        if label(GATEWAY_CLASS_LABEL) == Some(WAYPOINT_GATEWAY_CLASS) {
            ProxyKind::Waypoint
        } else if label(GATEWAY_NAME_LABEL).is_some() || label("istio") == Some("ingressgateway") {
            ProxyKind::Gateway
        } else {
            ProxyKind::Sidecar
        }
    }
}

/// The pod label Istio sets to a Gateway's class (`istio-waypoint` for a waypoint).
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// The pod label Istio sets to a Gateway's name.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The Gateway class of Istio's waypoints.
pub const WAYPOINT_GATEWAY_CLASS: &str = "istio-waypoint";

/// A proxy's identity: what selectors are compared with. For a shared proxy (a waypoint or a
/// gateway) `service` and `namespace` are those of the proxy itself, and the per-request target
/// is decided by the filter.
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
    /// The kind of proxy (absent in JSON for a sidecar).
    #[serde(skip_serializing_if = "ProxyKind::is_sidecar")]
    pub proxy: ProxyKind,
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
        let labels = metadata.labels.clone();
        let service = non_empty(labels.get(CANONICAL_NAME_LABEL).map(String::as_str))
            .or_else(|| non_empty(labels.get("app").map(String::as_str)))
            .or_else(|| non_empty(metadata.workload_name.as_deref()));
        Identity {
            service,
            namespace: non_empty(metadata.namespace.as_deref()),
            pod: non_empty(metadata.name.as_deref()),
            proxy: ProxyKind::of_labels(&labels),
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

impl Identity {
    /// What `Display` writes, `service=… namespace=… pod=…` (`<unknown>` for what is not
    /// known), built without `core::fmt`: the Wasm filter logs it.
    pub fn describe(&self) -> String {
        fn known(field: &Option<String>) -> &str {
            field.as_deref().unwrap_or("<unknown>")
        }
        crate::text::concat(&[
            "service=",
            known(&self.service),
            " namespace=",
            known(&self.namespace),
            " pod=",
            known(&self.pod),
        ])
    }
}

impl core::fmt::Display for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The trust domain Istio uses unless the mesh configures another (`meshConfig.trustDomain`).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Upper bound of a SPIFFE ID boifi reads; longer values are not a caller identity (the SPIFFE
/// spec caps IDs at 2048 bytes).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;

/// A caller as its verified peer certificate names it: the parts of its SPIFFE ID
/// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`. Borrowed from the bytes the
/// host handed over, so reading it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity<'a> {
    /// The trust domain (the SPIFFE ID's authority).
    pub trust_domain: &'a str,
    /// The caller's namespace.
    pub namespace: &'a str,
    /// The caller's Kubernetes service account.
    pub service_account: &'a str,
}

impl<'a> PeerIdentity<'a> {
    /// Parses an Istio workload SPIFFE ID, as strictly as Istio's `spiffe.ParseIdentity`:
    /// exactly `spiffe://<td>/ns/<ns>/sa/<sa>`, every part non-empty and made of the characters
    /// SPIFFE allows (letters, digits, `.`, `-`, `_`). Anything else — not UTF-8, another
    /// scheme, percent-encoding, a query, extra segments — is `None`: the caller is unknown.
    /// Total: no input panics.
    pub fn parse(uri: &'a [u8]) -> Option<PeerIdentity<'a>> {
        if uri.len() > MAX_SPIFFE_ID_BYTES {
            return None;
        }
        let text = core::str::from_utf8(uri).ok()?;
        let rest = text.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let trust_domain = parts.next()?;
        let ns_key = parts.next()?;
        let namespace = parts.next()?;
        let sa_key = parts.next()?;
        let service_account = parts.next()?;
        if parts.next().is_some() || ns_key != "ns" || sa_key != "sa" {
            return None;
        }
        let segment = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        };
        // SPIFFE trust domains are lower case; a mixed-case one is not the configured domain.
        let domain = segment(trust_domain) && !trust_domain.bytes().any(|b| b.is_ascii_uppercase());
        (domain && segment(namespace) && segment(service_account)).then_some(PeerIdentity {
            trust_domain,
            namespace,
            service_account,
        })
    }
}

/// The SPIFFE ID of a workload, as Istio issues it: what a mesh writes into a workload
/// certificate and what `simulate` hands to the core as the caller's certificate.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    alloc::format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

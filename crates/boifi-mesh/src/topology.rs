//! What runs in the mesh: services, their protocol, namespace and replicas.
//!
//! The default is Online Boutique, read from `../shared/data/online-boutique-graph.json`
//! beside the repository (or the built-in copy of its service list when that file is absent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::MeshError;

/// The namespace of the default topology.
pub const DEFAULT_NAMESPACE: &str = "demo";

/// How a service is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http,
    /// gRPC (HTTP/2 between the sidecar and the app and between the ingress and the sidecar).
    Grpc,
    /// Plain TCP in the real application (redis); here an HTTP stand-in so that traffic and
    /// faults can be observed like for the others.
    Tcp,
}

impl Protocol {
    fn parse(text: &str) -> Option<Protocol> {
        match text {
            "http" => Some(Protocol::Http),
            "grpc" => Some(Protocol::Grpc),
            "tcp" => Some(Protocol::Tcp),
            _ => None,
        }
    }

    /// `http`, `grpc` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }

    /// Whether hops to it speak HTTP/2.
    pub fn is_grpc(self) -> bool {
        self == Protocol::Grpc
    }
}

/// One service (a Kubernetes Deployment + Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Service (and Deployment) name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The gRPC service name (`hipstershop.CartService`) for gRPC services.
    pub grpc_service: Option<String>,
    /// Number of pods.
    pub replicas: usize,
    /// Pod labels besides the ones Istio derives (`app`, canonical name and revision).
    pub labels: BTreeMap<String, String>,
    /// When false the sidecars carry no `WORKLOAD_NAME` and no service labels (a pod Istio
    /// could not name): they must fall back to wildcard policies.
    pub service_metadata: bool,
}

impl ServiceSpec {
    /// An HTTP service with one replica in `namespace`.
    pub fn new(name: &str, namespace: &str, protocol: Protocol) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            protocol,
            grpc_service: None,
            replicas: 1,
            labels: BTreeMap::from([("version".to_owned(), "v1".to_owned())]),
            service_metadata: true,
        }
    }

    /// The host name clients use (`name.namespace`), also the ingress route's domain.
    pub fn host(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    /// The key of the service in the mesh (`name.namespace`).
    pub fn key(&self) -> String {
        self.host()
    }
}

/// The services of a mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    /// In start order.
    pub services: Vec<ServiceSpec>,
}

/// Online Boutique's services with a Kubernetes Service (the loadgenerator has none).
const BUILT_IN: &[(&str, Protocol, Option<&str>)] = &[
    ("frontend", Protocol::Http, None),
    (
        "cartservice",
        Protocol::Grpc,
        Some("hipstershop.CartService"),
    ),
    (
        "productcatalogservice",
        Protocol::Grpc,
        Some("hipstershop.ProductCatalogService"),
    ),
    (
        "currencyservice",
        Protocol::Grpc,
        Some("hipstershop.CurrencyService"),
    ),
    (
        "paymentservice",
        Protocol::Grpc,
        Some("hipstershop.PaymentService"),
    ),
    (
        "shippingservice",
        Protocol::Grpc,
        Some("hipstershop.ShippingService"),
    ),
    (
        "emailservice",
        Protocol::Grpc,
        Some("hipstershop.EmailService"),
    ),
    (
        "checkoutservice",
        Protocol::Grpc,
        Some("hipstershop.CheckoutService"),
    ),
    (
        "recommendationservice",
        Protocol::Grpc,
        Some("hipstershop.RecommendationService"),
    ),
    ("adservice", Protocol::Grpc, Some("hipstershop.AdService")),
    ("redis-cart", Protocol::Tcp, None),
];

/// The repository root (where `Cargo.toml` of the workspace is), from this crate's location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the shared Online Boutique graph is expected: `BOIFI_TOPOLOGY`, else
/// `<repo>/../shared/data/online-boutique-graph.json`.
pub fn default_graph_path() -> PathBuf {
    std::env::var_os("BOIFI_TOPOLOGY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root()
                .join("..")
                .join("shared")
                .join("data")
                .join("online-boutique-graph.json")
        })
}

impl Topology {
    /// Online Boutique in namespace `demo`, `frontend` × 3, every other service × 1; from the
    /// shared graph file when present, else from the built-in list.
    pub fn online_boutique() -> Topology {
        let path = default_graph_path();
        let from_file = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| Topology::from_graph_json(&text, DEFAULT_NAMESPACE).ok());
        from_file
            .unwrap_or_else(Topology::built_in)
            .with_replicas("frontend", 3)
    }

    /// The built-in copy of Online Boutique's service list (namespace `demo`, 1 replica each).
    pub fn built_in() -> Topology {
        let services = BUILT_IN
            .iter()
            .map(|(name, protocol, grpc)| {
                let mut s = ServiceSpec::new(name, DEFAULT_NAMESPACE, *protocol);
                s.grpc_service = grpc.map(str::to_owned);
                s
            })
            .collect();
        Topology { services }
    }

    /// Reads an Online Boutique style graph (`services[].name`, `.protocol`, `.service_port`,
    /// `.grpc_service`); services without a port (clients only) are skipped.
    pub fn from_graph_json(text: &str, namespace: &str) -> Result<Topology, MeshError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| MeshError::Topology(e.to_string()))?;
        let list = value
            .get("services")
            .and_then(Value::as_array)
            .ok_or_else(|| MeshError::Topology("`services` must be a list".to_owned()))?;
        let mut services = Vec::new();
        for (i, s) in list.iter().enumerate() {
            if s.get("service_port").is_none_or(Value::is_null) {
                continue;
            }
            let name = s.get("name").and_then(Value::as_str).ok_or_else(|| {
                MeshError::Topology(format!("services[{i}].name: expected a string"))
            })?;
            let protocol_text = s.get("protocol").and_then(Value::as_str).unwrap_or("http");
            let protocol = Protocol::parse(protocol_text).ok_or_else(|| {
                MeshError::Topology(format!(
                    "services[{i}].protocol: `{protocol_text}` is not one of `http`, `grpc`, `tcp`"
                ))
            })?;
            let mut spec = ServiceSpec::new(name, namespace, protocol);
            spec.grpc_service = s
                .get("grpc_service")
                .and_then(Value::as_str)
                .map(str::to_owned);
            services.push(spec);
        }
        if services.is_empty() {
            return Err(MeshError::Topology("no service with a port".to_owned()));
        }
        Ok(Topology { services })
    }

    /// Only the named services, in the given order.
    pub fn only(&self, names: &[&str]) -> Topology {
        let services = names
            .iter()
            .filter_map(|n| self.services.iter().find(|s| s.name == *n).cloned())
            .collect();
        Topology { services }
    }

    /// Sets the replica count of a service.
    pub fn with_replicas(mut self, name: &str, replicas: usize) -> Topology {
        for s in self.services.iter_mut().filter(|s| s.name == name) {
            s.replicas = replicas;
        }
        self
    }

    /// Adds a service.
    pub fn with_service(mut self, spec: ServiceSpec) -> Topology {
        self.services.push(spec);
        self
    }

    /// The number of pods.
    pub fn pods(&self) -> usize {
        self.services.iter().map(|s| s.replicas).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_copy_matches_the_shared_graph_when_present() {
        let built_in = Topology::built_in();
        assert_eq!(built_in.services.len(), 11);
        if let Ok(text) = std::fs::read_to_string(default_graph_path()) {
            let from_file = Topology::from_graph_json(&text, DEFAULT_NAMESPACE).unwrap();
            assert_eq!(from_file, built_in);
        }
        let ob = Topology::online_boutique();
        assert_eq!(ob.pods(), 13);
    }

    #[test]
    fn bad_graph_is_refused_with_the_field() {
        let e = Topology::from_graph_json(
            r#"{"services":[{"name":"a","protocol":"udp","service_port":1}]}"#,
            "demo",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology: services[0].protocol: `udp` is not one of `http`, `grpc`, `tcp`"
        );
    }
}

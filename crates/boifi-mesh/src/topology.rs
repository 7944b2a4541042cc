//! What runs in the mesh: services, their protocol, namespace and replicas.
//!
//! The default is Online Boutique, read from `testdata/online-boutique-graph.json`
//! beside the repository (or the built-in copy of its service list when that file is absent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::calls::Handler;
use crate::error::MeshError;
use crate::traffic::RoutePolicy;

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
    /// The Service port (`outbound|PORT||...` in Istio's cluster names).
    pub port: u16,
    /// The gRPC service name (`hipstershop.CartService`) for gRPC services.
    pub grpc_service: Option<String>,
    /// Number of pods.
    pub replicas: usize,
    /// Pod labels besides the ones Istio derives (`app`, canonical name and revision).
    pub labels: BTreeMap<String, String>,
    /// When false the sidecars carry no `WORKLOAD_NAME` and no service labels (a pod Istio
    /// could not name): they must fall back to wildcard policies.
    pub service_metadata: bool,
    /// What its app does per kind of request; empty: a leaf that answers every request.
    pub handlers: Vec<Handler>,
}

impl ServiceSpec {
    /// A leaf service on port 80 with one replica in `namespace`.
    pub fn new(name: &str, namespace: &str, protocol: Protocol) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            protocol,
            port: 80,
            grpc_service: None,
            replicas: 1,
            labels: BTreeMap::from([("version".to_owned(), "v1".to_owned())]),
            service_metadata: true,
            handlers: Vec::new(),
        }
    }

    /// The Kubernetes service account its pods run under: Online Boutique runs one per
    /// service, named like it.
    pub fn service_account(&self) -> &str {
        &self.name
    }

    /// The SPIFFE ID its workload certificate carries in `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        boifi_core::identity::spiffe_id(trust_domain, &self.namespace, self.service_account())
    }

    /// The cluster-local name (`cartservice.demo.svc.cluster.local`).
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
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

/// The services of a mesh and the traffic policies of their callers' sidecars.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    /// In start order.
    pub services: Vec<ServiceSpec>,
    /// The retry and timeout policies of the callers' outbound routes (Istio's
    /// VirtualService `retries`/`timeout`); the first that concerns a caller and a callee wins.
    pub routes: Vec<RoutePolicy>,
}

/// Online Boutique's services with a Kubernetes Service (the loadgenerator has none).
const BUILT_IN: &[(&str, Protocol, u16, Option<&str>)] = &[
    ("frontend", Protocol::Http, 80, None),
    (
        "cartservice",
        Protocol::Grpc,
        7070,
        Some("hipstershop.CartService"),
    ),
    (
        "productcatalogservice",
        Protocol::Grpc,
        3550,
        Some("hipstershop.ProductCatalogService"),
    ),
    (
        "currencyservice",
        Protocol::Grpc,
        7000,
        Some("hipstershop.CurrencyService"),
    ),
    (
        "paymentservice",
        Protocol::Grpc,
        50051,
        Some("hipstershop.PaymentService"),
    ),
    (
        "shippingservice",
        Protocol::Grpc,
        50051,
        Some("hipstershop.ShippingService"),
    ),
    (
        "emailservice",
        Protocol::Grpc,
        5000,
        Some("hipstershop.EmailService"),
    ),
    (
        "checkoutservice",
        Protocol::Grpc,
        5050,
        Some("hipstershop.CheckoutService"),
    ),
    (
        "recommendationservice",
        Protocol::Grpc,
        8080,
        Some("hipstershop.RecommendationService"),
    ),
    (
        "adservice",
        Protocol::Grpc,
        9555,
        Some("hipstershop.AdService"),
    ),
    ("redis-cart", Protocol::Tcp, 6379, None),
];

/// The repository root (where `Cargo.toml` of the workspace is), from this crate's location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the Online Boutique graph is read from: `BOIFI_TOPOLOGY`, else the repository's
/// `testdata/online-boutique-graph.json`.
pub fn default_graph_path() -> PathBuf {
    std::env::var_os("BOIFI_TOPOLOGY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root()
                .join("testdata")
                .join("online-boutique-graph.json")
        })
}

impl Topology {
    /// Online Boutique in namespace `demo`, `frontend` × 3, every other service × 1; from the
    /// graph file ([`default_graph_path`]) when it can be read, else from the built-in copy
    /// (a binary run outside the repository); each app calls its
    /// dependencies as the real one does ([`crate::calls::online_boutique`]).
    pub fn online_boutique() -> Topology {
        let path = default_graph_path();
        let from_file = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| Topology::from_graph_json(&text, DEFAULT_NAMESPACE).ok());
        let mut topology = from_file
            .unwrap_or_else(Topology::built_in)
            .with_replicas("frontend", 3);
        for s in &mut topology.services {
            s.handlers = crate::calls::online_boutique(&s.name);
        }
        topology
    }

    /// Every app a leaf: it answers every request itself and calls nothing.
    pub fn leaves(mut self) -> Topology {
        for s in &mut self.services {
            s.handlers.clear();
        }
        self
    }

    /// Adds a traffic policy for callers' outbound routes.
    pub fn with_route(mut self, route: RoutePolicy) -> Topology {
        self.routes.push(route);
        self
    }

    /// The route policy of `caller`'s sidecar towards `callee` (the first that concerns both).
    pub fn route_policy(&self, caller: &str, callee: &str) -> Option<&RoutePolicy> {
        self.routes.iter().find(|r| r.concerns(caller, callee))
    }

    /// The services some handler of `caller` calls.
    pub fn callers_of(&self, callee: &str) -> Vec<&ServiceSpec> {
        self.services
            .iter()
            .filter(|s| s.handlers.iter().any(|h| h.calls_service(callee)))
            .collect()
    }

    /// The built-in copy of Online Boutique's service list (namespace `demo`, 1 replica each).
    pub fn built_in() -> Topology {
        let services = BUILT_IN
            .iter()
            .map(|(name, protocol, port, grpc)| {
                let mut s = ServiceSpec::new(name, DEFAULT_NAMESPACE, *protocol);
                s.port = *port;
                s.grpc_service = grpc.map(str::to_owned);
                s
            })
            .collect();
        Topology {
            services,
            routes: Vec::new(),
        }
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
            let port = s.get("service_port").and_then(Value::as_u64);
            let port = port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    MeshError::Topology(format!(
                        "services[{i}].service_port: `{}` is not a port (1..=65535)",
                        s.get("service_port")
                            .map(Value::to_string)
                            .unwrap_or_default()
                    ))
                })?;
            let mut spec = ServiceSpec::new(name, namespace, protocol);
            spec.port = port;
            spec.grpc_service = s
                .get("grpc_service")
                .and_then(Value::as_str)
                .map(str::to_owned);
            services.push(spec);
        }
        if services.is_empty() {
            return Err(MeshError::Topology("no service with a port".to_owned()));
        }
        Ok(Topology {
            services,
            routes: Vec::new(),
        })
    }

    /// Only the named services, in the given order; calls to the others are dropped.
    pub fn only(&self, names: &[&str]) -> Topology {
        let mut services: Vec<ServiceSpec> = names
            .iter()
            .filter_map(|n| self.services.iter().find(|s| s.name == *n).cloned())
            .collect();
        for s in &mut services {
            for h in &mut s.handlers {
                h.calls.retain(|c| names.contains(&c.service.as_str()));
            }
        }
        Topology {
            services,
            routes: self.routes.clone(),
        }
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
    fn built_in_copy_matches_the_repository_graph() {
        let built_in = Topology::built_in();
        assert_eq!(built_in.services.len(), 11);
        let path = repo_root()
            .join("testdata")
            .join("online-boutique-graph.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} must exist in the repository: {e}", path.display()));
        let from_file = Topology::from_graph_json(&text, DEFAULT_NAMESPACE).unwrap();
        assert_eq!(from_file, built_in);
        let ob = Topology::online_boutique();
        assert_eq!(ob.pods(), 13);
    }

    #[test]
    fn ports_and_callers_come_from_the_graph() {
        let ob = Topology::online_boutique();
        let cart = ob
            .services
            .iter()
            .find(|s| s.name == "cartservice")
            .unwrap();
        assert_eq!(cart.port, 7070);
        assert_eq!(cart.fqdn(), "cartservice.demo.svc.cluster.local");
        let callers: Vec<&str> = ob
            .callers_of("cartservice")
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(callers, ["frontend", "checkoutservice"]);
        assert!(ob.clone().leaves().callers_of("cartservice").is_empty());
    }

    #[test]
    fn bad_graph_is_refused_with_the_field() {
        for (service, error) in [
            (
                r#"{"name":"a","protocol":"udp","service_port":1}"#,
                "services[0].protocol: `udp` is not one of `http`, `grpc`, `tcp`",
            ),
            (
                r#"{"name":"a","protocol":"http","service_port":70000}"#,
                "services[0].service_port: `70000` is not a port (1..=65535)",
            ),
        ] {
            let graph = format!(r#"{{"services":[{service}]}}"#);
            let e = Topology::from_graph_json(&graph, "demo").unwrap_err();
            assert_eq!(e.to_string(), format!("topology: {error}"));
        }
    }
}

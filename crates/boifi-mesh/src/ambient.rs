//! Ambient mode (`boifi-mesh up --ambient`): no sidecars. The apps' calls leave through a
//! ztunnel stand-in that opens an HBONE tunnel (HTTP/2 `CONNECT <VIP>:<port>` over mTLS with
//! the calling workload's certificate) to ONE waypoint Envoy per namespace, configured the way
//! Istio configures a waypoint (testdata/istio-ambient/FACTS.md §1, §2, §3):
//!
//! - listener `connect_terminate`: TLS 1.3, h2, a client certificate required and verified
//!   against the mesh root; its `set_filter_state` filter copies the CONNECT authority to the
//!   original-destination filter state and the verified peer URI SAN to
//!   `io.istio.peer_principal` (shared with upstream), never anything the client sends;
//! - the CONNECT is terminated into cluster `main_internal` → internal listener
//!   `main_internal`, whose `original_dst` listener filter restores the VIP:port, and whose
//!   chains `inbound-vip|<port>|http|<fqdn>` (one per service VIP and port) each run the boifi
//!   filter before the router, with the route `inbound-vip|…` / vhost `inbound|http|<port>` /
//!   route `default` holding the service's retries and timeouts;
//! - clusters `inbound-vip|<port>|http|<fqdn>` with `filter_metadata.istio.services`;
//! - the one cluster boifi's manifests make Istio add (manifests/ambient/control-plane-cluster.yaml):
//!   `outbound|8080||boifi-control-plane.boifi.svc.cluster.local`;
//! - node metadata and labels of a waypoint pod (FACTS §2.4).
//!
//! What is simplified is listed in docs/CASCADE.md, "Ambient mode in the local mesh".

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::envoy::{
    address, admin, certificate, hcm, hcm_routed, router, static_cluster, trust_domain_of,
    upstream_tls, BUFFER_LIMIT, CONTROL_PLANE_CLUSTER,
};
use crate::pki::WorkloadFiles;
use crate::topology::{ServiceSpec, Topology};
use crate::traffic::{route_action, RoutePolicy};

/// The waypoint's name: the Gateway `istioctl waypoint apply` creates (manifests/ambient/waypoint.yaml).
pub const WAYPOINT: &str = "waypoint";
/// Istio's HBONE listener of a waypoint.
pub const CONNECT_TERMINATE: &str = "connect_terminate";
/// The internal listener (and the cluster leading to it) that holds one chain per service.
pub const MAIN_INTERNAL: &str = "main_internal";
/// The filter state key holding the caller's SPIFFE ID inside `main_internal` (FACTS §3.1).
pub const PEER_PRINCIPAL: &str = "io.istio.peer_principal";

/// Istio's name of a waypoint's chain, route and cluster of a service's HTTP port:
/// `inbound-vip|<port>|http|<fqdn>`.
pub fn chain_name(service: &ServiceSpec) -> String {
    format!("inbound-vip|{}|http|{}", service.port, service.fqdn())
}

/// The VIP (ClusterIP) of the `index`-th service: never routed, only the CONNECT authority
/// and the key of the waypoint's chain match, as in a cluster.
pub fn vip(index: usize) -> String {
    let host = u8::try_from(10 + index % 240).unwrap_or(10);
    let net = u8::try_from(index / 240).unwrap_or(0);
    format!("10.96.{net}.{host}")
}

/// A service the waypoint serves.
#[derive(Debug, Clone)]
pub struct WaypointService {
    /// The service.
    pub service: ServiceSpec,
    /// Its VIP.
    pub vip: String,
    /// Its pods' app ports (no sidecar in between).
    pub endpoints: Vec<u16>,
}

/// What the waypoint needs to know.
#[derive(Debug, Clone)]
pub struct WaypointConfig<'a> {
    /// The namespace it serves.
    pub namespace: &'a str,
    /// Its pod name.
    pub pod: &'a str,
    /// Admin port.
    pub admin_port: u16,
    /// The port of `connect_terminate` (Istio: 15008).
    pub connect_port: u16,
    /// The services it serves.
    pub services: &'a [WaypointService],
    /// The directory of the per-chain route files ([`route_file`]).
    pub routes_dir: &'a Path,
    /// Where the control plane answers.
    pub control_plane_port: u16,
    /// The filter module (see [`crate::envoy::boifi_filter`]).
    pub module: Option<&'a Path>,
    /// The filter's `pluginConfig`.
    pub plugin_config: &'a Value,
    /// The waypoint's workload certificate (`spiffe://…/ns/<ns>/sa/waypoint`).
    pub tls: &'a WorkloadFiles,
    /// The chains' access log ([`ACCESS_LOG_FORMAT`]), as Istio's `meshConfig.accessLogFile`.
    pub access_log: &'a Path,
}

/// One line per request of a chain: the chain's name, the caller's principal from the filter
/// state, and what the client sent in a header of the same name (which must never matter).
pub const ACCESS_LOG_FORMAT: &str =
    "%FILTER_CHAIN_NAME% principal=%FILTER_STATE(io.istio.peer_principal:PLAIN)% header=%REQ(io.istio.peer_principal)%\n";

/// The node block pilot-agent writes for a waypoint pod (FACTS §2.4): node type `waypoint`,
/// cluster `<sa>.<ns>`, and the labels Istio puts on the waypoint's pod, which make boifi-core
/// resolve it as a waypoint (`ProxyKind::of_labels`).
pub fn waypoint_node(namespace: &str, pod: &str) -> Value {
    let labels = BTreeMap::from(
        [
            ("gateway.networking.k8s.io/gateway-name", WAYPOINT),
            (
                boifi_core::identity::GATEWAY_CLASS_LABEL,
                boifi_core::identity::WAYPOINT_GATEWAY_CLASS,
            ),
            ("gateway.istio.io/managed", "istio.io-mesh-controller"),
            ("istio.io/dataplane-mode", "none"),
            ("sidecar.istio.io/inject", "false"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut node = boifi_core::identity::NodeMetadata {
        workload_name: Some(WAYPOINT.to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(pod.to_owned()),
        labels,
    }
    .istio_node();
    if let Some(map) = node.as_object_mut() {
        map.insert(
            "id".to_owned(),
            json!(format!(
                "waypoint~127.0.0.1~{pod}.{namespace}~{namespace}.svc.cluster.local"
            )),
        );
    }
    // A waypoint's pod is not in the mesh as a workload: no `tlsMode` label.
    if let Some(labels) = node
        .pointer_mut("/metadata/LABELS")
        .and_then(Value::as_object_mut)
    {
        labels.remove("security.istio.io/tlsMode");
    }
    node
}

/// The file the routes of a service's chain are read from (RDS, so that the demo changes
/// retries and timeouts in a running waypoint).
pub fn route_file(dir: &Path, service: &ServiceSpec) -> std::path::PathBuf {
    dir.join(format!("waypoint.{}.routes.json", service.fqdn()))
}

/// The route of a service's chain as an RDS file's content: Istio's names
/// (`inbound-vip|…` / `inbound|http|<port>` / `default`) and the service's retries and
/// timeouts — the topology's policy for every caller of it (a waypoint's route is the
/// service's, not a caller's).
pub fn chain_routes(service: &ServiceSpec, topology: &Topology, version: u64) -> Value {
    let name = chain_name(service);
    let policy = service_policy(topology, &service.name);
    json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": name,
            "validate_clusters": false,
            "virtual_hosts": [{
                "name": format!("inbound|http|{}", service.port),
                "domains": ["*"],
                "routes": [{"name": "default", "match": {"prefix": "/"},
                            "route": route_action(&name, policy)}],
            }],
        }],
    })
}

/// The policy of the waypoint's route to `service`: the first one for every caller.
pub fn service_policy<'t>(topology: &'t Topology, service: &str) -> Option<&'t RoutePolicy> {
    topology
        .routes
        .iter()
        .find(|r| r.host == service && r.source.is_none())
}

fn set_filter_state(key: &str, format: &str, factory: Option<&str>) -> Value {
    let mut entry = json!({
        "object_key": key,
        "format_string": {"text_format_source": {"inline_string": format}},
        "shared_with_upstream": "ONCE",
    });
    if let (Some(f), Some(m)) = (factory, entry.as_object_mut()) {
        m.insert("factory_key".to_owned(), json!(f));
    }
    entry
}

/// TLS 1.3 only, as Istio's HBONE (FACTS §1.3).
fn tls13() -> Value {
    json!({"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"})
}

/// `connect_terminate`: mTLS requiring and verifying a client certificate of the trust domain,
/// HTTP/2 CONNECT terminated into `main_internal`, the caller's verified URI SAN as filter
/// state `io.istio.peer_principal`.
fn connect_terminate(port: u16, tls: &WorkloadFiles) -> Value {
    let transport = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_params": tls13(),
                "tls_certificates": [certificate(tls)],
                "validation_context": {
                    "trusted_ca": {"filename": tls.root.display().to_string()},
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {
                        "prefix": format!("spiffe://{}/", trust_domain_of(&tls.spiffe_id))}}],
                },
            },
        },
    });
    let connect_authority = json!({
        "name": "connect_authority",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [
                set_filter_state("envoy.filters.listener.original_dst.local_ip", "%REQ(:AUTHORITY)%", None),
                set_filter_state("io.istio.connect_authority", "%REQ(:AUTHORITY)%", Some("envoy.hashable_string")),
                set_filter_state(PEER_PRINCIPAL, "%DOWNSTREAM_PEER_URI_SAN%", Some("envoy.hashable_string")),
                set_filter_state("io.istio.local_principal", "%DOWNSTREAM_LOCAL_URI_SAN%", Some("envoy.hashable_string")),
            ],
        },
    });
    let route_config = json!({"name": "default", "virtual_hosts": [{
        "name": "default", "domains": ["*"],
        "routes": [{"match": {"connect_matcher": {}}, "route": {
            "cluster": MAIN_INTERNAL,
            "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}],
        }}],
    }]});
    let mut manager = hcm(
        CONNECT_TERMINATE,
        route_config,
        vec![connect_authority, router()],
    );
    if let Some(config) = manager
        .get_mut("typed_config")
        .and_then(Value::as_object_mut)
    {
        for (k, v) in [
            ("upgrade_configs", json!([{"upgrade_type": "CONNECT"}])),
            (
                "http2_protocol_options",
                json!({"allow_connect": true, "max_concurrent_streams": 100}),
            ),
            ("stream_idle_timeout", json!("0s")),
            ("use_remote_address", json!(false)),
        ] {
            config.insert(k.to_owned(), v);
        }
    }
    json!({
        "name": CONNECT_TERMINATE,
        "address": address(port),
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "filter_chains": [{"name": "default", "transport_socket": transport, "filters": [manager]}],
    })
}

/// `main_internal`: one chain per service VIP and port, each with the boifi filter before the
/// router and the service's route (RDS from [`route_file`]).
fn main_internal(c: &WaypointConfig<'_>) -> Value {
    let chains: Vec<Value> = c
        .services
        .iter()
        .map(|w| {
            let name = chain_name(&w.service);
            let mut filters: Vec<Value> =
                crate::envoy::boifi_filter(c.module, c.plugin_config, c.control_plane_port)
                    .into_iter()
                    .collect();
            filters.push(router());
            let rds = json!({
                "route_config_name": name,
                "config_source": {
                    "resource_api_version": "V3",
                    "path_config_source": {"path": route_file(c.routes_dir, &w.service).display().to_string()},
                },
            });
            let mut manager = hcm_routed(&name, "rds", rds, filters);
            if let Some(config) = manager
                .get_mut("typed_config")
                .and_then(Value::as_object_mut)
            {
                config.insert("stream_idle_timeout".to_owned(), json!("0s"));
                config.insert("use_remote_address".to_owned(), json!(false));
                config.insert(
                    "access_log".to_owned(),
                    json!([{"name": "envoy.access_loggers.file", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": c.access_log.display().to_string(),
                        "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
                    }}]),
                );
            }
            json!({
                "name": name,
                "filter_chain_match": {
                    "prefix_ranges": [{"address_prefix": w.vip, "prefix_len": 32}],
                    "destination_port": w.service.port,
                },
                "filters": [manager],
            })
        })
        .collect();
    json!({
        "name": MAIN_INTERNAL,
        "internal_listener": {},
        "traffic_direction": "INBOUND",
        "listener_filters": [{"name": "envoy.filters.listener.original_dst", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}],
        "filter_chains": chains,
    })
}

/// The cluster `connect_terminate` hands the terminated CONNECT to.
fn main_internal_cluster() -> Value {
    json!({
        "name": MAIN_INTERNAL,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": MAIN_INTERNAL, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": MAIN_INTERNAL}}}}]}]},
        "transport_socket": {"name": "internal_upstream", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
            "transport_socket": {"name": "raw_buffer", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}},
    })
}

/// `inbound-vip|<port>|http|<fqdn>`: the service's pods, with Istio's service metadata and no
/// circuit-breaker limits (as every Istio cluster).
fn vip_cluster(w: &WaypointService) -> Value {
    let s = &w.service;
    let mut cluster = static_cluster(&chain_name(s), &w.endpoints, s.protocol.is_grpc());
    if let Some(c) = cluster.as_object_mut() {
        c.insert(
            "metadata".to_owned(),
            json!({"filter_metadata": {"istio": {"services": [
                {"host": s.fqdn(), "name": s.name, "namespace": s.namespace}]}}}),
        );
        c.insert(
            "circuit_breakers".into(),
            crate::envoy::unlimited_circuit_breakers(),
        );
    }
    cluster
}

/// The waypoint's bootstrap.
pub fn waypoint_bootstrap(c: &WaypointConfig<'_>) -> Value {
    let mut clusters = vec![main_internal_cluster()];
    clusters.extend(c.services.iter().map(vip_cluster));
    clusters.push(static_cluster(
        CONTROL_PLANE_CLUSTER,
        &[c.control_plane_port],
        false,
    ));
    json!({
        "node": waypoint_node(c.namespace, c.pod),
        "admin": admin(c.admin_port),
        "bootstrap_extensions": [{"name": "envoy.bootstrap.internal_listener", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"}}],
        "static_resources": {
            "listeners": [connect_terminate(c.connect_port, c.tls), main_internal(c)],
            "clusters": clusters,
        },
    })
}

/// One captured destination of one workload: what ztunnel does for a connection from that
/// workload to a service VIP whose traffic goes through the waypoint.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// The port the workload connects to (stands for `<VIP>:<service port>`).
    pub port: u16,
    /// The workload's certificate (its SPIFFE ID is the caller the waypoint sees).
    pub source: WorkloadFiles,
    /// The CONNECT authority: `<VIP>:<service port>`.
    pub authority: String,
}

/// The ztunnel stand-in: per captured destination a TCP listener whose `tcp_proxy` tunnels the
/// connection as HTTP/2 `CONNECT <authority>` over mTLS, with the source workload's
/// certificate, to the waypoint's `connect_terminate` (HBONE). One cluster per source identity.
pub fn ztunnel_bootstrap(
    admin_port: u16,
    tunnels: &[Tunnel],
    waypoint_port: u16,
    waypoint_id: &str,
) -> Value {
    let mut clusters: BTreeMap<String, Value> = BTreeMap::new();
    let listeners: Vec<Value> = tunnels
        .iter()
        .map(|t| {
            let cluster = format!("hbone|{}", t.source.spiffe_id);
            clusters.entry(cluster.clone()).or_insert_with(|| {
                let mut c = static_cluster(&cluster, &[waypoint_port], true);
                if let Some(m) = c.as_object_mut() {
                    let mut tls = upstream_tls(&t.source, waypoint_id, true);
                    if let Some(ctx) = tls.pointer_mut("/typed_config/common_tls_context") {
                        if let Some(ctx) = ctx.as_object_mut() {
                            ctx.insert("tls_params".to_owned(), tls13());
                        }
                    }
                    m.insert("transport_socket".to_owned(), tls);
                }
                c
            });
            json!({
                "name": format!("ztunnel_{}", t.port),
                "address": address(t.port),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": format!("ztunnel_{}", t.port),
                    "cluster": cluster,
                    "tunneling_config": {"hostname": t.authority},
                }}]}],
            })
        })
        .collect();
    json!({
        "node": {"id": "ztunnel", "cluster": "ztunnel.istio-system"},
        "admin": admin(admin_port),
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters.into_values().collect::<Vec<_>>(),
        },
    })
}

/// The source key of the ingress gateway's tunnels (its service account).
pub const INGRESS_SOURCE: &str = crate::mesh::INGRESS_SERVICE_ACCOUNT;

/// A running ambient mode: the waypoint, the ztunnel stand-in, and their ports.
#[derive(Debug)]
pub struct Ambient {
    /// The namespace the waypoint serves (every service's).
    pub namespace: String,
    /// The waypoint's `connect_terminate` port.
    pub connect_port: u16,
    /// The waypoint's admin port.
    pub admin_port: u16,
    /// The ztunnel stand-in's admin port.
    pub ztunnel_admin_port: u16,
    /// The port ztunnel captures for (source service account, callee service name).
    pub tunnels: BTreeMap<(String, String), u16>,
    /// Service name → VIP.
    pub vips: BTreeMap<String, String>,
    /// The waypoint Envoy.
    pub waypoint: Option<crate::process::ManagedProcess>,
    /// The ztunnel stand-in (an Envoy).
    pub ztunnel: Option<crate::process::ManagedProcess>,
}

impl Ambient {
    /// Plans the ports: every caller's service account gets one captured port per service its
    /// app calls, the ingress one per service. Refuses a topology of several namespaces (one
    /// waypoint serves one here).
    pub fn plan(topology: &Topology) -> Result<Ambient, crate::error::MeshError> {
        let mut namespaces: Vec<&str> = topology
            .services
            .iter()
            .map(|s| s.namespace.as_str())
            .collect();
        namespaces.dedup();
        let [namespace] = namespaces.as_slice() else {
            return Err(crate::error::MeshError::Topology(format!(
                "ambient mode: one waypoint serves one namespace; the services are in `{}`",
                namespaces.join("`, `")
            )));
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        for caller in &topology.services {
            for callee in &topology.services {
                if caller
                    .handlers
                    .iter()
                    .any(|h| h.calls_service(&callee.name))
                {
                    pairs.push((caller.service_account().to_owned(), callee.name.clone()));
                }
            }
        }
        for callee in &topology.services {
            pairs.push((INGRESS_SOURCE.to_owned(), callee.name.clone()));
        }
        let ports = boifi_testkit::ports::free_ports(pairs.len() + 3)
            .map_err(crate::error::MeshError::Ports)?;
        let mut ports = ports.into_iter();
        let mut next = || {
            ports
                .next()
                .ok_or_else(|| crate::error::MeshError::Unknown("free ports".to_owned()))
        };
        let (connect_port, admin_port, ztunnel_admin_port) = (next()?, next()?, next()?);
        let mut tunnels = BTreeMap::new();
        for pair in pairs {
            tunnels.insert(pair, next()?);
        }
        let vips = topology
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), vip(i)))
            .collect();
        Ok(Ambient {
            namespace: (*namespace).to_owned(),
            connect_port,
            admin_port,
            ztunnel_admin_port,
            tunnels,
            vips,
            waypoint: None,
            ztunnel: None,
        })
    }

    /// The waypoint pod's name.
    pub fn pod(&self) -> String {
        format!("{WAYPOINT}-0")
    }

    /// `http://127.0.0.1:<waypoint admin>`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The captured ports of one source: callee service name → port.
    pub fn tunnels_of(&self, source: &str) -> BTreeMap<String, u16> {
        self.tunnels
            .iter()
            .filter(|((s, _), _)| s == source)
            .map(|((_, callee), port)| (callee.clone(), *port))
            .collect()
    }

    /// Kills both Envoys.
    pub fn stop(&mut self) {
        for p in [self.waypoint.take(), self.ztunnel.take()]
            .into_iter()
            .flatten()
        {
            let mut p = p;
            p.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boifi_core::identity::{Identity, ProxyKind};

    #[test]
    fn waypoint_node_resolves_to_a_waypoint_of_its_namespace() {
        let node = waypoint_node("demo", "waypoint-0");
        let id = Identity::from_node_json(&json!({ "node": node }).to_string()).unwrap();
        assert_eq!(id.proxy, ProxyKind::Waypoint);
        assert_eq!(id.service.as_deref(), Some(WAYPOINT));
        assert_eq!(id.namespace.as_deref(), Some("demo"));
        assert_eq!(node["cluster"], "waypoint.demo");
        assert!(node["id"].as_str().unwrap().starts_with("waypoint~"));
        assert_eq!(
            node["metadata"]["LABELS"]["istio.io/dataplane-mode"],
            "none"
        );
    }

    #[test]
    fn chain_route_holds_the_service_policy_for_every_caller_only() {
        let retries = crate::traffic::Retries::new(2, &["5xx"]).unwrap();
        let topology = Topology::online_boutique()
            .with_route(RoutePolicy::to("cartservice").from("frontend"))
            .with_route(RoutePolicy::to("cartservice").retries(retries));
        let cart = topology
            .services
            .iter()
            .find(|s| s.name == "cartservice")
            .unwrap();
        let rds = chain_routes(cart, &topology, 3);
        let rc = &rds["resources"][0];
        assert_eq!(
            rc["name"],
            "inbound-vip|7070|http|cartservice.demo.svc.cluster.local"
        );
        let host = &rc["virtual_hosts"][0];
        assert_eq!(host["name"], "inbound|http|7070");
        assert_eq!(host["routes"][0]["name"], "default");
        assert_eq!(host["routes"][0]["route"]["cluster"], rc["name"]);
        assert_eq!(host["routes"][0]["route"]["retry_policy"]["num_retries"], 2);
    }
}

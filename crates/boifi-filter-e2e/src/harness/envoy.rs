//! Envoy as a child process of the test, configured like an Istio sidecar's inbound side.
//!
//! Property paths (checked in Envoy 1.40 with a probe filter): node fields are under
//! `["xds","node",...]`: `["xds","node","id"]`, `["xds","node","cluster"]`,
//! `["xds","node","metadata","WORKLOAD_NAME"]` give the raw string; a Struct value such as
//! `["xds","node","metadata","LABELS"]` comes back as a proxy-wasm serialized pair map; numbers
//! as 8-byte little-endian doubles. `["node",...]` returns nothing in this build.

use super::http::{self, Client};
use super::net::loopback;
use super::{FilterKind, TempDir};
use boifi_mesh::envoy::{downstream_tls, upstream_tls};
use boifi_mesh::pki::WorkloadFiles;
use boifi_testkit::ports::free_ports;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Istio name of the control plane's Service as a sidecar's outbound cluster.
pub const CONTROL_PLANE_CLUSTER: &str =
    "outbound|8080||boifi-control-plane.boifi.svc.cluster.local";

/// Env BOIFI_ENVOY, else what `scripts/envoy-path.sh` prints.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOIFI_ENVOY") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let out = Command::new("bash")
        .arg(super::repo_root().join("scripts/envoy-path.sh"))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_file()).then_some(path)
}

/// The workload an Envoy pretends to be the sidecar of (becomes Istio-style node metadata).
#[derive(Debug, Clone)]
pub struct Workload {
    pub service: String,
    pub namespace: String,
    pub pod: String,
    pub labels: Vec<(String, String)>,
    /// No Istio metadata at all (a plain Envoy; identity from plugin overrides only).
    pub bare: bool,
}

impl Workload {
    pub fn new(service: &str, namespace: &str) -> Workload {
        Workload {
            service: service.into(),
            namespace: namespace.into(),
            pod: format!("{service}-7d9f8c-abcde"),
            labels: vec![
                ("app".into(), service.into()),
                ("version".into(), "v1".into()),
            ],
            bare: false,
        }
    }

    /// The `node` block pilot-agent would render for this pod (see
    /// `testdata/sidecar-node-frontend-demo.json` for the derivation).
    pub fn node(&self) -> Value {
        let (svc, ns, pod) = (&self.service, &self.namespace, &self.pod);
        if self.bare {
            return json!({"id": format!("router~127.0.0.1~{pod}~local"), "cluster": svc});
        }
        boifi_core::identity::NodeMetadata {
            workload_name: Some(svc.clone()),
            namespace: Some(ns.clone()),
            name: Some(pod.clone()),
            labels: self.labels.iter().cloned().collect(),
        }
        .istio_node()
    }
}

impl Workload {
    /// The environment an Istio proxy container has for this pod (what the native module reads
    /// instead of node metadata).
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        if self.bare {
            return Vec::new();
        }
        let labels: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        vec![
            ("POD_NAME".into(), self.pod.clone()),
            ("POD_NAMESPACE".into(), self.namespace.clone()),
            ("ISTIO_META_WORKLOAD_NAME".into(), self.service.clone()),
            (
                "ISTIO_METAJSON_LABELS".into(),
                Value::Object(labels).to_string(),
            ),
        ]
    }
}

/// How to start one Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub workload: Workload,
    /// Which build of the filter [`EnvoyOptions::wasm`] is.
    pub filter: FilterKind,
    /// `None`: no Wasm filter at all (baseline for startup time).
    pub wasm: Option<PathBuf>,
    /// The plugin configuration JSON (Istio's WasmPlugin `pluginConfig`).
    pub plugin_config: Value,
    /// Loopback port the control-plane cluster points at.
    pub control_plane_port: u16,
    pub upstream_port: u16,
    pub concurrency: u32,
    /// More inbound listeners, each with its own filter instance (plugin name, plugin config):
    /// one Envoy serving many identities through `identity` overrides (the scenario corpus).
    pub extra_listeners: Vec<(String, Value)>,
    /// For extra listener `i`, a caller over mTLS: the listener then takes only TLS with a
    /// verified client certificate (as a mesh sidecar's inbound chain), and its port in
    /// [`Envoy::extra_ports`] is a plaintext relay in the same Envoy that calls it presenting
    /// the caller's certificate (as the caller's sidecar would).
    pub extra_callers: BTreeMap<usize, CallerTls>,
    /// The Wasm filter's `failure_policy` (what Envoy does when the VM fails).
    pub failure_policy: &'static str,
    /// Routes of the main listener tried before its catch-all route to the upstream (e.g. a
    /// `direct_response`, which the router answers inside the call that resumes a request).
    pub extra_routes: Vec<Value>,
    /// Not empty: the Envoy is a waypoint serving these services of the workload's namespace
    /// ([`waypoint`]): the filter sits on the Istio-named chains of `main_internal`, not on the
    /// main listener.
    pub waypoint: Vec<String>,
}

impl EnvoyOptions {
    pub fn new(
        workload: Workload,
        filter: FilterKind,
        wasm: &Path,
        control_plane_port: u16,
        upstream_port: u16,
    ) -> Self {
        EnvoyOptions {
            workload,
            filter,
            wasm: Some(wasm.to_path_buf()),
            plugin_config: json!({}),
            control_plane_port,
            upstream_port,
            concurrency: 1,
            extra_listeners: Vec::new(),
            extra_callers: BTreeMap::new(),
            failure_policy: FAILURE_POLICY,
            extra_routes: Vec::new(),
            waypoint: Vec::new(),
        }
    }
}

/// The header that picks the service a request to a waypoint Envoy's main listener is for.
pub const WAYPOINT_SERVICE_HEADER: &str = "x-test-service";

/// A waypoint laid out as Istio lays one out (`docs/design/ambient.md`, emulated as
/// `docs/design/ambient/boot1.py` does): the internal listener `main_internal` has one chain per
/// service VIP, named `inbound-vip|8080|http|<fqdn>`, selected by `original_dst` from the VIP the
/// connection was addressed to, each with its own route to the cluster of the same name (with
/// Istio's `filter_metadata.istio.services`). The caller's CONNECT over HBONE is simplified to a
/// plaintext front listener (the main listener) that routes on [`WAYPOINT_SERVICE_HEADER`] to
/// per-service internal clusters whose endpoints carry the VIP as Istio's EDS does
/// (`envoy.filters.listener.original_dst` `local`): the filter's view — the chain name — is the
/// same. Returns (listener, clusters, front routes).
fn waypoint(o: &EnvoyOptions, filters: Vec<Value>) -> (Value, Vec<Value>, Vec<Value>) {
    let ns = &o.workload.namespace;
    let mut chains = Vec::new();
    let mut clusters = Vec::new();
    let mut routes = Vec::new();
    for (i, service) in o.waypoint.iter().enumerate() {
        let fqdn = format!("{service}.{ns}.svc.cluster.local");
        let name = format!("inbound-vip|8080|http|{fqdn}");
        let vip = format!("10.96.0.{}", 10 + i);
        let mut chain = listener(&name, 0, filters.clone())["filter_chains"][0].clone();
        chain["name"] = json!(name);
        chain["filter_chain_match"] = json!({
            "prefix_ranges": [{"address_prefix": vip, "prefix_len": 32}],
            "destination_port": 8080,
        });
        let hcm = &mut chain["filters"][0]["typed_config"];
        hcm["route_config"] = json!({
            "name": name,
            "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"], "routes": [
                {"name": "default", "match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "0s"}}
            ]}]
        });
        chains.push(chain);
        clusters.push(json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "0.25s",
            "metadata": {"filter_metadata": {"istio": {"services": [
                {"host": fqdn, "name": service, "namespace": ns}
            ]}}},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": o.upstream_port}}
            }}]}]}
        }));
        let to = format!("to|{service}");
        clusters.push(json!({
            "name": to,
            "type": "STATIC",
            "connect_timeout": "0.25s",
            "load_assignment": {"cluster_name": to, "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"envoy_internal_address": {
                    "server_listener_name": "main_internal", "endpoint_id": format!("{vip}:8080")
                }}},
                "metadata": {"filter_metadata": {"envoy.filters.listener.original_dst": {"local": format!("{vip}:8080")}}}
            }]}]},
            "transport_socket": {"name": "internal_upstream", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
                "passthrough_metadata": [{"kind": {"host": {}}, "name": "envoy.filters.listener.original_dst"}],
                "transport_socket": {"name": "raw_buffer", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
                }}
            }}
        }));
        routes.push(json!({
            "match": {"prefix": "/", "headers": [{"name": WAYPOINT_SERVICE_HEADER, "string_match": {"exact": service}}]},
            "route": {"cluster": to, "timeout": "0s"}
        }));
    }
    let main_internal = json!({
        "name": "main_internal",
        "internal_listener": {},
        "traffic_direction": "INBOUND",
        "listener_filters": [{"name": "envoy.filters.listener.original_dst", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
        }}],
        "filter_chains": chains,
    });
    (main_internal, clusters, routes)
}

/// The certificates of one caller scenario.
#[derive(Debug, Clone)]
pub struct CallerTls {
    /// The callee's workload certificate (the listener's).
    pub callee: WorkloadFiles,
    /// The caller's workload certificate (the relay's).
    pub caller: WorkloadFiles,
}

/// The native module's filter: the plugin configuration plus the control plane's address (the
/// module's poller connects itself; it has no Envoy cluster).
fn dynamic_module_filter(
    plugin_name: &str,
    plugin_config: &Value,
    control_plane_port: u16,
) -> Value {
    let mut config = plugin_config.clone();
    if let Some(map) = config.as_object_mut() {
        map.entry("control_plane_address")
            .or_insert_with(|| json!(format!("127.0.0.1:{control_plane_port}")));
    }
    json!({
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": "boifi"},
            "filter_name": plugin_name,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config.to_string(),
            },
        }
    })
}

/// What the filter's Envoy configs use: a VM that failed (a trap) is replaced by a fresh one,
/// instead of fault injection staying off until Envoy restarts (Envoy >= 1.33).
pub const FAILURE_POLICY: &str = "FAIL_RELOAD";

/// How soon a failed VM is reloaded: Envoy answers 503 until then (measured by the `reload`
/// e2e test), so much sooner than its 1 s default, backing off to 1 s if the new VM fails too.
pub static RELOAD_CONFIG: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"backoff": {"base_interval": "0.02s", "max_interval": "1s"}}),
);

fn http_filters(
    filter: FilterKind,
    wasm: Option<&Path>,
    plugin_name: &str,
    plugin_config: &Value,
    control_plane_port: u16,
    failure_policy: &str,
) -> Vec<Value> {
    let mut http_filters = Vec::new();
    if wasm.is_some() && filter == FilterKind::Native {
        http_filters.push(dynamic_module_filter(
            plugin_name,
            plugin_config,
            control_plane_port,
        ));
    } else if let Some(wasm) = wasm {
        http_filters.push(json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": plugin_name,
                    "root_id": "boifi",
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": plugin_config.to_string(),
                    },
                    "failure_policy": failure_policy,
                    "reload_config": RELOAD_CONFIG.clone(),
                    "vm_config": {
                        "vm_id": "boifi",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": wasm}},
                    }
                }
            }
        }));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    http_filters
}

fn listener(name: &str, port: u16, http_filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("{name}_8080"),
                "route_config": {
                    "name": "inbound|8080||",
                    "virtual_hosts": [{
                        "name": "inbound|http|8080",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|8080||", "timeout": "0s"}}]
                    }]
                },
                "http_filters": http_filters,
            }
        }]}]
    })
}

fn bootstrap(
    o: &EnvoyOptions,
    admin_port: u16,
    listener_port: u16,
    extra_ports: &[u16],
    relay_ports: &BTreeMap<usize, u16>,
) -> Value {
    let wasm = o.wasm.as_deref();
    let boifi = http_filters(
        o.filter,
        wasm,
        "boifi.boifi-fault-injection",
        &o.plugin_config,
        o.control_plane_port,
        o.failure_policy,
    );
    let (front, waypoint) = if o.waypoint.is_empty() {
        (boifi, None)
    } else {
        let plain = http_filters(o.filter, None, "", &Value::Null, o.control_plane_port, "");
        (plain, Some(waypoint(o, boifi)))
    };
    let mut listeners = vec![listener("virtualInbound", listener_port, front)];
    let mut front_routes = o.extra_routes.clone();
    if let Some((_, _, routes)) = &waypoint {
        front_routes.extend(routes.iter().cloned());
    }
    if let Some(routes) = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"]
        .as_array_mut()
    {
        routes.splice(0..0, front_routes);
    }
    let mut relays = Vec::new();
    for (i, ((plugin, config), port)) in o.extra_listeners.iter().zip(extra_ports).enumerate() {
        let filters = http_filters(
            o.filter,
            wasm,
            plugin,
            config,
            o.control_plane_port,
            o.failure_policy,
        );
        let mut l = listener(plugin, *port, filters);
        if let Some(tls) = o.extra_callers.get(&i) {
            l["filter_chains"][0]["transport_socket"] = downstream_tls(&tls.callee);
            let relay = format!("caller-{i}");
            let relay_port = relay_ports.get(&i).copied().unwrap_or_default();
            let mut r = listener(
                &relay,
                relay_port,
                http_filters(o.filter, None, "", &Value::Null, o.control_plane_port, ""),
            );
            r["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
                [0]["routes"][0]["route"]["cluster"] = json!(relay);
            listeners.push(r);
            relays.push((relay, *port, &tls.caller, &tls.callee.spiffe_id));
        }
        listeners.push(l);
    }
    let static_cluster = |name: &str, port: u16| {
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "0.25s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": port}
                }}}]}]
            }
        })
    };
    let mut clusters = vec![
        static_cluster("inbound|8080||", o.upstream_port),
        static_cluster(CONTROL_PLANE_CLUSTER, o.control_plane_port),
    ];
    for (name, port, caller, callee_id) in relays {
        let mut c = static_cluster(&name, port);
        c["transport_socket"] = upstream_tls(caller, callee_id, false);
        clusters.push(c);
    }
    let mut extensions = Vec::new();
    if let Some((main_internal, waypoint_clusters, _)) = waypoint {
        listeners.push(main_internal);
        clusters.extend(waypoint_clusters);
        extensions.push(json!({"name": "envoy.bootstrap.internal_listener", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
        }}));
    }
    json!({
        "bootstrap_extensions": extensions,
        "node": o.workload.node(),
        // How an operator gets per-policy tags (Istio: meshConfig/annotation extraStatTags
        // plus this regex): `hfi.policy.<name>.aborts_total` → `policy="<name>"`.
        "stats_config": {"stats_tags": [{
            "tag_name": "policy",
            "regex": boifi_engine::metrics::POLICY_TAG_REGEX,
        }]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters
        }
    })
}

/// A running Envoy, killed on drop.
#[derive(Debug)]
pub struct Envoy {
    pub admin_port: u16,
    pub listener_port: u16,
    /// Ports of [`EnvoyOptions::extra_listeners`], in order.
    pub extra_ports: Vec<u16>,
    /// From exec to the first 200 through the listener.
    pub startup: Duration,
    /// CPU time (user + system) Envoy spent until then: unlike `startup`, barely affected by
    /// other load on a shared machine (mostly V8 compiling the module, with the filter).
    pub startup_cpu: Duration,
    /// Which build of the filter it loaded (names its metrics).
    filter: FilterKind,
    child: Option<Child>,
    dir: TempDir,
}

impl Envoy {
    /// Starts Envoy and waits until `/ready` is LIVE and a request through the listener gets 200
    /// (the filter passes traffic through until it has policies, so this holds with no control plane).
    pub fn start(binary: &Path, o: &EnvoyOptions) -> Envoy {
        let dir = TempDir::new("boifi-envoy");
        // Every port of this Envoy picked at once, so no two of its listeners get the same one
        // (one at a time, the OS may hand a just-closed port out again: seen with the corpus).
        let mut ports = free_ports(2 + o.extra_listeners.len() + o.extra_callers.len())
            .unwrap()
            .into_iter();
        let (admin_port, listener_port) = (ports.next().unwrap(), ports.next().unwrap());
        let config = dir.path().join("envoy.json");
        let mut extra_ports: Vec<u16> = ports.by_ref().take(o.extra_listeners.len()).collect();
        let relay_ports: BTreeMap<usize, u16> =
            o.extra_callers.keys().copied().zip(ports).collect();
        std::fs::write(
            &config,
            bootstrap(o, admin_port, listener_port, &extra_ports, &relay_ports).to_string(),
        )
        .unwrap();
        // A caller scenario's requests go through its relay.
        for (i, port) in &relay_ports {
            if let Some(p) = extra_ports.get_mut(*i) {
                *p = *port;
            }
        }
        let log = dir.path().join("envoy.log");
        let mut command = Command::new(binary);
        if let (Some(module), FilterKind::Native) = (&o.wasm, o.filter) {
            // Envoy finds the module `boifi` as `libboifi.so` on this path; the identity comes
            // from the environment pilot-agent gives an Istio proxy.
            command.env(
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                module.parent().unwrap_or(Path::new(".")),
            );
            command.envs(o.workload.proxy_env());
        }
        let started = Instant::now();
        let child = command
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(o.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("-l")
            .arg("warning")
            .arg("--component-log-level")
            .arg("wasm:info,dynamic_modules:info")
            .arg("--log-path")
            .arg(&log)
            // Tests read the log while Envoy runs: flush it often (default 10 s).
            .arg("--file-flush-interval-msec")
            .arg("20")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut envoy = Envoy {
            admin_port,
            listener_port,
            extra_ports,
            startup: Duration::ZERO,
            startup_cpu: Duration::ZERO,
            filter: o.filter,
            child: Some(child),
            dir,
        };
        // Polled every 2 ms: this loop also measures startup.
        let ok = super::wait_for_every(Duration::from_secs(20), Duration::from_millis(2), || {
            if let Some(c) = envoy.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("envoy exited with {status}: {}", envoy.log());
                }
            }
            http::Client::new(loopback(listener_port))
                .get("/")
                .ok()
                .filter(|r| r.status == 200)
        });
        envoy.startup = started.elapsed();
        envoy.startup_cpu = envoy.cpu_time();
        assert!(
            ok.is_some(),
            "envoy never answered 200 through its listener: {}",
            envoy.log()
        );
        let ready = super::wait_for(Duration::from_secs(10), || {
            http::Client::new(loopback(admin_port))
                .get("/ready")
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(
            ready.is_some(),
            "envoy admin /ready never said LIVE: {}",
            envoy.log()
        );
        envoy
    }

    /// CPU time the Envoy process has used so far (Linux `/proc/<pid>/stat`, 10 ms ticks).
    pub fn cpu_time(&self) -> Duration {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return Duration::ZERO;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }

    /// Bytes Envoy's allocator holds for live objects (admin `/memory` `allocated`; the
    /// native module's allocations go through the same tcmalloc).
    pub fn memory_allocated(&self) -> u64 {
        let text = http::Client::new(loopback(self.admin_port))
            .get("/memory")
            .unwrap()
            .text();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["allocated"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap()
    }

    /// Envoy's resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().map(Child::id).unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// True while the Envoy process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A keep-alive client to the listener.
    pub fn client(&self) -> Client {
        Client::new(loopback(self.listener_port))
    }

    /// Envoy's log so far (wasm logs included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Waits (up to 5 s) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        super::wait_for(Duration::from_secs(5), || {
            self.log().contains(needle).then_some(())
        })
        .is_some()
    }

    /// `/stats/prometheus` text. The native module's metrics carry Envoy's prefix for dynamic
    /// modules (`envoy_dynamicmodulescustom_hfi_...`); it is removed here so every test reads
    /// the Wasm filter's names (`hfi_...`, Envoy strips `wasmcustom` itself).
    pub fn prometheus(&self) -> String {
        let text = http::Client::new(loopback(self.admin_port))
            .get("/stats/prometheus")
            .unwrap()
            .text();
        match self.filter {
            FilterKind::Wasm => text,
            FilterKind::Native => text.replace(NATIVE_PROMETHEUS_PREFIX, ""),
        }
    }

    /// The value of one Prometheus sample whose line starts with `prefix` (name plus labels).
    pub fn prometheus_value(&self, name: &str) -> Option<f64> {
        parse_prometheus(&self.prometheus(), name)
    }
}

/// The prefix of the native module's metrics in `/stats/prometheus`.
pub const NATIVE_PROMETHEUS_PREFIX: &str = "envoy_dynamicmodulescustom_";

/// Sums the samples of metric `name` (any labels) in Prometheus text.
pub fn parse_prometheus(text: &str, name: &str) -> Option<f64> {
    parse_prometheus_labeled(text, name, "")
}

/// Sums the samples of metric `name` whose label block contains `labels` (e.g. `policy="x"`).
pub fn parse_prometheus_labeled(text: &str, name: &str, labels: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (metric, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let base = metric.split('{').next().unwrap_or("");
        if base == name && metric.contains(labels) {
            if let Ok(v) = value.parse::<f64>() {
                *total.get_or_insert(0.0) += v;
            }
        }
    }
    total
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- envoy log (admin {}) ---\n{}",
                self.admin_port,
                self.log()
            );
        }
    }
}

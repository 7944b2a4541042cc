//! The mesh: control plane, one app + one Envoy sidecar per pod, and an ingress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::control_plane::{workspace_binary, ControlPlane, Store};
use crate::envoy::{
    envoy_binary, envoy_command, ingress_bootstrap, is_native_module, istio_proxy_env,
    sidecar_bootstrap, spawn_envoy, write_bootstrap, SidecarConfig, Upstream,
    NATIVE_PROMETHEUS_PREFIX, NATIVE_SEARCH_PATH_ENV,
};
use crate::error::MeshError;
use crate::http::{Answer, HttpClient, RequestSpec, TrafficReport};
use crate::pki::{MeshCa, WorkloadFiles};
use crate::process::{existing_file, wait_for, ManagedProcess};
use crate::stats::metric_sum;
use crate::topology::{Protocol, ServiceSpec, Topology};
use boifi_testkit::ports::free_ports;

/// The mesh's trust domain (Istio's default).
pub const TRUST_DOMAIN: &str = boifi_core::identity::DEFAULT_TRUST_DOMAIN;
/// The ingress gateway's namespace and service account, as Istio installs it.
pub const INGRESS_NAMESPACE: &str = "istio-system";
/// See [`INGRESS_NAMESPACE`].
pub const INGRESS_SERVICE_ACCOUNT: &str = "istio-ingressgateway-service-account";

/// The mesh's CA and what it issued.
#[derive(Debug)]
struct Pki {
    ca: MeshCa,
    issued: BTreeMap<String, WorkloadFiles>,
}

/// How to build a mesh.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The services.
    pub topology: Topology,
    /// The control plane's store.
    pub store: Store,
    /// Control-plane replicas (more than one puts a balancing Envoy in front).
    pub control_plane_replicas: usize,
    /// Load the boifi filter into the sidecars.
    pub filter: bool,
    /// Which build of it ([`FilterBuild::from_env`] by default).
    pub filter_build: FilterBuild,
    /// The filter's `pluginConfig`.
    pub plugin_config: Value,
    /// Start the control plane with the mesh (false: sidecars start without it).
    pub start_control_plane: bool,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// The app binary (`boifi-mesh`); found beside the running executable when `None`.
    pub app_binary: Option<PathBuf>,
    /// mTLS between sidecars (and from the ingress), with a CA made at start: Istio's
    /// default. The sidecars' inbound ports also take plaintext (PERMISSIVE).
    pub mtls: bool,
    /// The sidecars' `stats_config` (`None`: Envoy's default, every stat with default tags).
    pub sidecar_stats_config: Option<Value>,
    /// Istio's ambient mode: no sidecars; the apps (and the ingress) call every service
    /// through a ztunnel stand-in and ONE waypoint Envoy per namespace, which runs the filter
    /// (see [`crate::ambient`]). Needs `mtls` (HBONE is mTLS) and one namespace.
    pub ambient: bool,
    /// Extra flags of every control-plane replica (e.g. `--prometheus-url` for guards).
    pub server_args: Vec<String>,
}

impl MeshOptions {
    /// A mesh of `topology` with the filter, one control plane replica on the embedded store.
    pub fn new(topology: Topology) -> MeshOptions {
        MeshOptions {
            topology,
            store: Store::Embedded,
            control_plane_replicas: 1,
            filter: true,
            filter_build: FilterBuild::from_env(),
            plugin_config: default_plugin_config(),
            start_control_plane: true,
            progress: false,
            app_binary: None,
            mtls: true,
            sidecar_stats_config: None,
            ambient: false,
            server_args: Vec::new(),
        }
    }

    /// Two replicas on a 3-member etcd behind a balancer.
    pub fn ha(mut self) -> MeshOptions {
        self.store = Store::Etcd;
        self.control_plane_replicas = 2;
        self
    }

    /// Istio's ambient mode (see [`MeshOptions::ambient`]).
    pub fn ambient(mut self) -> MeshOptions {
        self.ambient = true;
        self
    }
}

/// The filter configuration the mesh uses: the defaults (Istio cluster name of the control
/// plane, 30 s long-poll) with a quicker backoff so reconnects are visible in seconds.
pub fn default_plugin_config() -> Value {
    json!({"backoff_initial_ms": 200, "backoff_max_ms": 2000})
}

/// The env variable that picks the sidecars' filter build: `native` for the dynamic module
/// (`make demo FILTER=native`), else the Wasm filter.
pub const FILTER_KIND_ENV: &str = "BOIFI_FILTER";

/// Which build of the filter a mesh's sidecars load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterBuild {
    /// The proxy-wasm filter ([`wasm_path`]).
    Wasm,
    /// The native dynamic module `libboifi.so` (`BOIFI_NATIVE`, else where `make native` puts it).
    Native,
}

impl FilterBuild {
    /// [`FilterBuild::Native`] when `BOIFI_FILTER=native`, else [`FilterBuild::Wasm`].
    pub fn from_env() -> FilterBuild {
        if std::env::var(FILTER_KIND_ENV).is_ok_and(|k| k == "native") {
            FilterBuild::Native
        } else {
            FilterBuild::Wasm
        }
    }

    /// The module file of this build.
    pub fn module_path(self) -> Result<PathBuf, MeshError> {
        match self {
            FilterBuild::Wasm => wasm_path(),
            FilterBuild::Native => {
                let path = std::env::var_os("BOIFI_NATIVE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        crate::topology::repo_root().join("target/debug/libboifi.so")
                    });
                existing_file(
                    path,
                    "the native module",
                    "run `make native` (or set BOIFI_NATIVE)",
                )
            }
        }
    }
}

/// The filter module: `BOIFI_WASM`, else where `make wasm` puts it.
pub fn wasm_path() -> Result<PathBuf, MeshError> {
    let path = std::env::var_os("BOIFI_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::topology::repo_root()
                .join("target/debian/wasm32-unknown-unknown/release/boifi_wasm.wasm")
        });
    existing_file(
        path,
        "the boifi filter",
        "run `make wasm` (or set BOIFI_WASM)",
    )
}

/// One pod: the app and its sidecar.
#[derive(Debug)]
pub struct Pod {
    /// Pod name (`frontend-1-0`: service, generation, replica slot).
    pub name: String,
    /// Replica slot (stable across restarts; the ports belong to it).
    pub slot: usize,
    /// The sidecar's inbound listener.
    pub inbound_port: u16,
    /// The sidecar's admin port.
    pub admin_port: u16,
    /// The sidecar's outbound listener (the app's calls).
    pub outbound_port: u16,
    /// The app's port.
    pub app_port: u16,
    /// The app process.
    pub app: Option<ManagedProcess>,
    /// The sidecar process.
    pub sidecar: Option<ManagedProcess>,
    /// From the sidecar's exec to its first 200 through the inbound listener.
    pub ready_after: Option<Duration>,
    /// This pod's filter configuration when it is not the mesh's (one sidecar configured
    /// apart, as a pod annotation would in Kubernetes); kept across restarts of the slot.
    pub plugin_config: Option<Value>,
    /// Ambient mode: no sidecar (the app alone is the pod; the ports of the sidecar stay unused).
    pub ambient: bool,
}

impl Pod {
    /// `http://127.0.0.1:<inbound>`.
    pub fn inbound_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inbound_port)
    }

    /// `http://127.0.0.1:<admin>`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// `http://127.0.0.1:<app>`: the app itself, past its sidecar (its counters are there).
    pub fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.app_port)
    }

    /// Whether both processes are up.
    pub fn is_running(&self) -> bool {
        self.app.is_some() && (self.ambient || self.sidecar.is_some())
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.sidecar.take() {
            p.kill();
        }
        if let Some(mut p) = self.app.take() {
            p.kill();
        }
        self.ready_after = None;
    }
}

/// A service with its pods.
#[derive(Debug)]
pub struct Service {
    /// Its definition.
    pub spec: ServiceSpec,
    /// One per replica slot.
    pub pods: Vec<Pod>,
    generation: usize,
}

impl Service {
    /// The pods that are running.
    pub fn running(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| p.is_running())
    }
}

/// A running mesh; everything is killed when it is dropped (and the logs are printed when
/// that happens during a panic).
#[derive(Debug)]
pub struct Mesh {
    dir: tempfile::TempDir,
    envoy: PathBuf,
    wasm: Option<PathBuf>,
    app_binary: PathBuf,
    plugin_config: Value,
    sidecar_stats_config: Option<Value>,
    progress: bool,
    /// The control plane.
    pub control_plane: ControlPlane,
    /// The services, in topology order.
    pub services: Vec<Service>,
    /// The callers' route policies in force (see [`Mesh::set_routes`]).
    pub(crate) routes: Vec<crate::traffic::RoutePolicy>,
    /// The version of the outbound routes last written to every sidecar's RDS file.
    pub(crate) routes_version: u64,
    ingress: Option<ManagedProcess>,
    /// The mesh's CA and the workload certificates issued so far, by SPIFFE ID.
    pki: Option<Pki>,
    /// Extra Envoys the tests call through (see [`Mesh::start_probe`]).
    probes: Vec<ManagedProcess>,
    ingress_port: u16,
    ingress_admin_port: u16,
    /// Ambient mode's waypoint and ztunnel (`None`: sidecars).
    pub ambient: Option<crate::ambient::Ambient>,
    /// The client every call of the harness uses.
    pub client: HttpClient,
    /// From the first control-plane exec to ready, when it was started with the mesh.
    pub control_plane_ready: Option<Duration>,
    /// From the first exec to every sidecar serving.
    pub all_pods_ready: Option<Duration>,
}

impl Mesh {
    /// Starts everything and waits until it serves.
    pub fn start(options: MeshOptions) -> Result<Mesh, MeshError> {
        let root = crate::topology::repo_root();
        let envoy = envoy_binary(&root)?;
        let wasm = if options.filter {
            Some(options.filter_build.module_path()?)
        } else {
            None
        };
        let app_binary = match options.app_binary.clone() {
            Some(p) => p,
            None => workspace_binary("boifi-mesh")?,
        };
        let dir = tempfile::Builder::new()
            .prefix("boifi-mesh-")
            .tempdir()
            .map_err(|e| MeshError::io(std::env::temp_dir(), e))?;
        let client = HttpClient::new()?;
        let progress = options.progress;
        let say = |m: &str| {
            if progress {
                eprintln!("mesh: {m}");
            }
        };
        say(&format!(
            "control plane: {} replica(s), {} store",
            options.control_plane_replicas,
            match options.store {
                Store::Memory => "memory",
                Store::Embedded => "embedded",
                Store::Etcd => "etcd (3 members)",
            }
        ));
        let control_plane = ControlPlane::prepare(
            options.store,
            options.control_plane_replicas,
            dir.path(),
            &envoy,
            &client,
            &options.server_args,
        )?;
        let [ingress_port, ingress_admin_port] = free_ports(2)
            .map_err(MeshError::Ports)?
            .try_into()
            .map_err(|_| MeshError::Unknown("free ports".to_owned()))?;
        let pki = if options.mtls {
            say("mTLS between sidecars: a new root CA, one certificate per service account");
            Some(Pki {
                ca: MeshCa::generate(TRUST_DOMAIN)?,
                issued: BTreeMap::new(),
            })
        } else {
            None
        };
        let mut mesh = Mesh {
            dir,
            pki,
            probes: Vec::new(),
            envoy,
            wasm,
            app_binary,
            plugin_config: options.plugin_config.clone(),
            sidecar_stats_config: options.sidecar_stats_config.clone(),
            progress,
            control_plane,
            services: Vec::new(),
            routes: options.topology.routes.clone(),
            routes_version: 1,
            ingress: None,
            ambient: None,
            ingress_port,
            ingress_admin_port,
            client,
            control_plane_ready: None,
            all_pods_ready: None,
        };
        let start = Instant::now();
        if options.start_control_plane {
            mesh.control_plane.start_all()?;
        }
        for spec in &options.topology.services {
            let ports = free_ports(spec.replicas * 4).map_err(MeshError::Ports)?;
            let pods = (0..spec.replicas)
                .map(|slot| Pod {
                    name: String::new(),
                    slot,
                    inbound_port: ports.get(slot * 4).copied().unwrap_or_default(),
                    admin_port: ports.get(slot * 4 + 1).copied().unwrap_or_default(),
                    outbound_port: ports.get(slot * 4 + 2).copied().unwrap_or_default(),
                    app_port: ports.get(slot * 4 + 3).copied().unwrap_or_default(),
                    plugin_config: None,
                    app: None,
                    sidecar: None,
                    ready_after: None,
                    ambient: options.ambient,
                })
                .collect();
            mesh.services.push(Service {
                spec: spec.clone(),
                pods,
                generation: 0,
            });
        }
        if options.ambient {
            if !options.mtls {
                return Err(MeshError::Topology(
                    "ambient mode: HBONE is mTLS; the mesh needs `mtls`".to_owned(),
                ));
            }
            mesh.ambient = Some(crate::ambient::Ambient::plan(&options.topology)?);
        }
        say(&format!(
            "starting {} pods ({}{}) of {} services",
            options.topology.pods(),
            if options.ambient {
                "app only; one waypoint Envoy for the namespace"
            } else {
                "app + Envoy sidecar"
            },
            match mesh.wasm.as_deref() {
                Some(m) if is_native_module(m) => " with the boifi filter, native module",
                Some(_) => " with the boifi filter",
                None => "",
            },
            options.topology.services.len()
        ));
        for s in 0..mesh.services.len() {
            let slots = mesh.services.get(s).map(|x| x.pods.len()).unwrap_or(0);
            for slot in 0..slots {
                mesh.spawn_pod(s, slot)?;
            }
        }
        if mesh.ambient.is_some() {
            mesh.spawn_ambient()?;
        }
        mesh.spawn_ingress()?;
        if options.start_control_plane {
            let ready = mesh
                .control_plane
                .wait_ready(&mesh.client, Duration::from_secs(60))?;
            mesh.control_plane_ready = Some(ready);
            say(&format!(
                "control plane ready after {} ms",
                ready.as_millis()
            ));
        }
        mesh.wait_all_pods(Duration::from_secs(60))?;
        mesh.all_pods_ready = Some(start.elapsed());
        say(&format!(
            "{} sidecars serving after {} ms; ingress on {}",
            mesh.pods().count(),
            start.elapsed().as_millis(),
            mesh.ingress_url()
        ));
        Ok(mesh)
    }

    /// The temporary directory holding configs, data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:<ingress>`.
    pub fn ingress_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingress_port)
    }

    /// Every running pod with its service.
    pub fn pods(&self) -> impl Iterator<Item = (&ServiceSpec, &Pod)> {
        self.services
            .iter()
            .flat_map(|s| s.running().map(move |p| (&s.spec, p)))
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Result<&Service, MeshError> {
        self.services
            .iter()
            .find(|s| s.spec.name == name || s.spec.key() == name)
            .ok_or_else(|| MeshError::Unknown(format!("service `{name}`")))
    }

    fn service_index(&self, name: &str) -> Result<usize, MeshError> {
        self.services
            .iter()
            .position(|s| s.spec.name == name || s.spec.key() == name)
            .ok_or_else(|| MeshError::Unknown(format!("service `{name}`")))
    }

    /// Every service with all its pods' inbound ports (a stopped pod's port refuses).
    pub(crate) fn upstreams(&self) -> Vec<Upstream> {
        self.services
            .iter()
            .map(|s| Upstream {
                service: s.spec.clone(),
                endpoints: s.pods.iter().map(|p| p.inbound_port).collect(),
            })
            .collect()
    }

    /// The topology the mesh runs now: its services and the route policies in force.
    pub(crate) fn topology(&self) -> Topology {
        Topology {
            services: self.services.iter().map(|s| s.spec.clone()).collect(),
            routes: self.routes.clone(),
        }
    }

    fn spawn_pod(&mut self, s: usize, slot: usize) -> Result<(), MeshError> {
        let dir = self.dir.path().to_owned();
        let cp_port = self.control_plane.port;
        let upstreams = self.upstreams();
        let topology = self.topology();
        let routes_version = self.routes_version;
        let tls = match self.services.get(s).map(|x| x.spec.clone()) {
            Some(spec) => self.workload_files(&spec.namespace, spec.service_account())?,
            None => None,
        };
        let service = self
            .services
            .get_mut(s)
            .ok_or_else(|| MeshError::Unknown(format!("service #{s}")))?;
        let generation = service.generation;
        let spec = service.spec.clone();
        let tunnels = self
            .ambient
            .as_ref()
            .map(|a| a.tunnels_of(spec.service_account()));
        let pod = service
            .pods
            .get_mut(slot)
            .ok_or_else(|| MeshError::Unknown(format!("{} replica {slot}", spec.name)))?;
        pod.name = format!("{}-{generation}-{slot}", spec.name);
        let file = |suffix: &str| crate::cascade::pod_file(&dir, &pod.name, &spec, suffix);
        let mut app = Command::new(&self.app_binary);
        app.args(["app", "--listen", &format!("127.0.0.1:{}", pod.app_port)])
            .args(["--service", &spec.name, "--pod", &pod.name]);
        if !spec.handlers.is_empty() {
            let plan_file = file("plan.json");
            let plan =
                crate::cascade::call_plan(&spec, &topology, pod.outbound_port, tunnels.as_ref());
            crate::cascade::write_json(&plan_file, &plan)?;
            app.arg("--plan").arg(&plan_file);
        }
        let app_log = dir.join(format!("{}.{}.app.log", pod.name, spec.namespace));
        pod.app = Some(ManagedProcess::spawn(
            &format!("{}/app", pod.name),
            app,
            &app_log,
        )?);
        if pod.ambient {
            pod.ready_after = None;
            return Ok(());
        }
        let routes_file = file("routes.json");
        // Unchanged routes (a restarted pod) stay as they are: Envoy reads the file at start.
        crate::cascade::write_routes(
            &routes_file,
            &spec.name,
            &topology,
            &upstreams,
            routes_version,
        )?;
        let config = SidecarConfig {
            tls: tls.as_ref(),
            service: &spec,
            pod: &pod.name,
            admin_port: pod.admin_port,
            inbound_port: pod.inbound_port,
            outbound_port: pod.outbound_port,
            outbound_routes: &routes_file,
            upstreams: &upstreams,
            app_port: pod.app_port,
            control_plane_port: cp_port,
            wasm: self.wasm.as_deref(),
            plugin_config: pod.plugin_config.as_ref().unwrap_or(&self.plugin_config),
            stats_config: self.sidecar_stats_config.as_ref(),
        };
        let bootstrap = dir.join(format!("{}.{}.envoy.json", pod.name, spec.namespace));
        write_bootstrap(&bootstrap, &sidecar_bootstrap(&config))?;
        let log = dir.join(format!("{}.{}.envoy.log", pod.name, spec.namespace));
        let sidecar = Mesh::proxy_command(&self.envoy, self.wasm.as_deref(), &bootstrap, || {
            istio_proxy_env(&spec, &pod.name)
        });
        pod.sidecar = Some(ManagedProcess::spawn(
            &format!("{}/sidecar", pod.name),
            sidecar,
            &log,
        )?);
        pod.ready_after = None;
        Ok(())
    }

    /// The command of an Envoy that runs the filter (a sidecar, the waypoint): with the native
    /// module, the module's directory and the proxy environment `env` gives (what the module
    /// reads its identity from).
    fn proxy_command(
        envoy: &Path,
        module: Option<&Path>,
        bootstrap: &Path,
        env: impl FnOnce() -> Vec<(String, String)>,
    ) -> Command {
        let mut command = envoy_command(envoy, bootstrap);
        if let Some(module) = module.filter(|m| is_native_module(m)) {
            command
                .env(
                    NATIVE_SEARCH_PATH_ENV,
                    module.parent().unwrap_or(Path::new(".")),
                )
                .envs(env());
        }
        command
    }

    /// The certificate files of a workload (issued on first use), or `None` without mTLS.
    fn workload_files(
        &mut self,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<WorkloadFiles>, MeshError> {
        let dir = self.dir.path().join("certs");
        let Some(pki) = self.pki.as_mut() else {
            return Ok(None);
        };
        let id = boifi_core::identity::spiffe_id(TRUST_DOMAIN, namespace, service_account);
        if let Some(files) = pki.issued.get(&id) {
            return Ok(Some(files.clone()));
        }
        let files = pki
            .ca
            .write_workload(&dir, &format!("{namespace}.{service_account}"), &id)?;
        pki.issued.insert(id, files.clone());
        Ok(Some(files))
    }

    /// The mesh's CA (`None` without mTLS): tests issue certificates with it.
    pub fn ca(&self) -> Option<&MeshCa> {
        self.pki.as_ref().map(|p| &p.ca)
    }

    /// A workload certificate of the mesh for any namespace and service account (issued on
    /// first use), e.g. for a probe.
    pub fn workload_certificate(
        &mut self,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<WorkloadFiles>, MeshError> {
        self.workload_files(namespace, service_account)
    }

    /// Starts an Envoy that forwards plaintext requests to `service`'s pods, as the ingress
    /// does (by path prefix `/<namespace>/<name>/` or `Host`), presenting `tls` (any
    /// certificate: the mesh's, another CA's) or none; waits until it is live and returns its
    /// URL. It stops with the mesh.
    pub fn start_probe(
        &mut self,
        name: &str,
        service: &str,
        tls: Option<&WorkloadFiles>,
    ) -> Result<String, MeshError> {
        let route = self
            .upstreams()
            .into_iter()
            .filter(|u| u.service.name == service)
            .collect::<Vec<_>>();
        if route.is_empty() {
            return Err(MeshError::Unknown(format!("service {service}")));
        }
        let [port, admin_port] = free_ports(2)
            .map_err(MeshError::Ports)?
            .try_into()
            .map_err(|_| MeshError::Unknown("free ports".to_owned()))?;
        let mut process = spawn_envoy(
            &self.envoy,
            self.dir.path(),
            &format!("probe-{name}"),
            &ingress_bootstrap(admin_port, port, &route, tls),
        )?;
        let admin = format!("http://127.0.0.1:{admin_port}");
        let client = &self.client;
        let live = wait_for(
            &format!("probe {name} live"),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                process.check_running()?;
                Ok(client
                    .get(&admin, "/ready")
                    .is_ok_and(|a| a.status == 200)
                    .then_some(()))
            },
        );
        self.probes.push(process);
        live?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Starts the waypoint (the route files of its chains first) and the ztunnel stand-in, with
    /// a certificate for the waypoint and for every source of a tunnel.
    fn spawn_ambient(&mut self) -> Result<(), MeshError> {
        let Some(ambient) = self.ambient.as_ref() else {
            return Ok(());
        };
        let namespace = ambient.namespace.clone();
        let sources: Vec<String> = ambient.tunnels.keys().map(|(s, _)| s.clone()).collect();
        let vips = ambient.vips.clone();
        let waypoint_tls = self
            .workload_files(&namespace, crate::ambient::WAYPOINT)?
            .ok_or_else(|| MeshError::Topology("ambient mode needs mTLS".to_owned()))?;
        let mut certificates: BTreeMap<String, WorkloadFiles> = BTreeMap::new();
        for source in sources {
            let ns = if source.as_str() == crate::ambient::INGRESS_SOURCE {
                INGRESS_NAMESPACE
            } else {
                &namespace
            };
            if let Some(files) = self.workload_files(ns, &source)? {
                certificates.insert(source, files);
            }
        }
        let topology = self.topology();
        let services: Vec<crate::ambient::WaypointService> = self
            .services
            .iter()
            .map(|s| crate::ambient::WaypointService {
                service: s.spec.clone(),
                vip: vips.get(&s.spec.name).cloned().unwrap_or_default(),
                endpoints: s.pods.iter().map(|p| p.app_port).collect(),
            })
            .collect();
        for w in &services {
            let file = crate::ambient::route_file(self.dir.path(), &w.service);
            crate::cascade::write_json(
                &file,
                &crate::ambient::chain_routes(&w.service, &topology, self.routes_version),
            )?;
        }
        let Some(ambient) = self.ambient.as_ref() else {
            return Ok(());
        };
        let pod = ambient.pod();
        let config = crate::ambient::WaypointConfig {
            namespace: &namespace,
            pod: &pod,
            admin_port: ambient.admin_port,
            connect_port: ambient.connect_port,
            services: &services,
            routes_dir: self.dir.path(),
            control_plane_port: self.control_plane.port,
            module: self.wasm.as_deref(),
            plugin_config: &self.plugin_config,
            tls: &waypoint_tls,
            access_log: &self.dir.path().join("waypoint.access.log"),
        };
        let bootstrap = crate::ambient::waypoint_bootstrap(&config);
        let path = self
            .dir
            .path()
            .join(format!("{pod}.{namespace}.envoy.json"));
        write_bootstrap(&path, &bootstrap)?;
        let mut command = Mesh::proxy_command(&self.envoy, self.wasm.as_deref(), &path, || {
            crate::envoy::proxy_env_of_node(&crate::ambient::waypoint_node(&namespace, &pod))
        });
        // The access log is read while the mesh runs: flushed every 100 ms, not every 10 s.
        command.args(["--file-flush-interval-msec", "100"]);
        let log = self.dir.path().join(format!("{pod}.{namespace}.envoy.log"));
        let waypoint = ManagedProcess::spawn(&format!("{pod}/waypoint"), command, &log)?;
        let tunnels: Vec<crate::ambient::Tunnel> = ambient
            .tunnels
            .iter()
            .filter_map(|((source, callee), port)| {
                let service = services.iter().find(|w| &w.service.name == callee)?;
                Some(crate::ambient::Tunnel {
                    port: *port,
                    source: certificates.get(source)?.clone(),
                    authority: format!("{}:{}", service.vip, service.service.port),
                })
            })
            .collect();
        let ztunnel = spawn_envoy(
            &self.envoy,
            self.dir.path(),
            "ztunnel",
            &crate::ambient::ztunnel_bootstrap(
                ambient.ztunnel_admin_port,
                &tunnels,
                ambient.connect_port,
                &waypoint_tls.spiffe_id,
            ),
        )?;
        if let Some(ambient) = self.ambient.as_mut() {
            ambient.waypoint = Some(waypoint);
            ambient.ztunnel = Some(ztunnel);
        }
        Ok(())
    }

    fn spawn_ingress(&mut self) -> Result<(), MeshError> {
        let (routes, tls) = match self.ambient.as_ref() {
            // The ingress's calls are captured by ztunnel like every workload's: plaintext to
            // the node's ztunnel, HBONE with the gateway's identity from there.
            Some(ambient) => {
                let tunnels = ambient.tunnels_of(crate::ambient::INGRESS_SOURCE);
                let routes = self
                    .upstreams()
                    .into_iter()
                    .map(|mut u| {
                        u.endpoints = tunnels.get(&u.service.name).copied().into_iter().collect();
                        u
                    })
                    .collect();
                (routes, None)
            }
            None => (
                self.upstreams(),
                self.workload_files(INGRESS_NAMESPACE, INGRESS_SERVICE_ACCOUNT)?,
            ),
        };
        let bootstrap = ingress_bootstrap(
            self.ingress_admin_port,
            self.ingress_port,
            &routes,
            tls.as_ref(),
        );
        self.ingress = Some(spawn_envoy(
            &self.envoy,
            self.dir.path(),
            "ingress",
            &bootstrap,
        )?);
        Ok(())
    }

    /// Waits until every started pod answers 200 through its sidecar (and the ingress is
    /// live), recording each pod's start time.
    pub fn wait_all_pods(&mut self, timeout: Duration) -> Result<(), MeshError> {
        let client = &self.client;
        let ingress_admin = format!("http://127.0.0.1:{}", self.ingress_admin_port);
        let services = &mut self.services;
        let ingress = &mut self.ingress;
        let ambient = &mut self.ambient;
        wait_for(
            "every sidecar serving",
            timeout,
            Duration::from_millis(20),
            || {
                let mut all = true;
                for s in services.iter_mut() {
                    for pod in s.pods.iter_mut() {
                        if pod.ready_after.is_some() {
                            continue;
                        }
                        let Some(app) = pod.app.as_mut() else {
                            continue;
                        };
                        app.check_running()?;
                        // Ambient: the app itself (the waypoint is checked below).
                        let (started, url) = match pod.sidecar.as_mut() {
                            Some(sidecar) => {
                                sidecar.check_running()?;
                                (sidecar.started(), pod.inbound_url())
                            }
                            None if pod.ambient => (app.started(), pod.app_url()),
                            None => continue,
                        };
                        let spec = probe_request(&s.spec);
                        match client.send(&url, &spec, None, Duration::from_secs(2)) {
                            Ok(a) if a.status == 200 => pod.ready_after = Some(started.elapsed()),
                            _ => all = false,
                        }
                    }
                }
                if let Some(a) = ambient.as_mut() {
                    for p in [a.waypoint.as_mut(), a.ztunnel.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        p.check_running()?;
                    }
                    all = all
                        && client
                            .get(&a.admin_url(), "/ready")
                            .is_ok_and(|r| r.status == 200);
                }
                if let Some(i) = ingress.as_mut() {
                    i.check_running()?;
                    all = all
                        && client
                            .get(&ingress_admin, "/ready")
                            .is_ok_and(|a| a.status == 200);
                }
                Ok(all.then_some(()))
            },
        )
    }

    /// Waits until every running control-plane replica and the Service address are ready.
    pub fn wait_control_plane_ready(&mut self, timeout: Duration) -> Result<Duration, MeshError> {
        self.control_plane.wait_ready(&self.client, timeout)
    }

    /// A request of the service's kind (`GET /` or a unary gRPC call) for the ingress, routed
    /// by path prefix `/<namespace>/<name>/` (HTTP/2 clients send the address as
    /// `:authority`, so `Host` routing is not used for them).
    pub fn request_for(&self, service: &str) -> Result<RequestSpec, MeshError> {
        let s = self.service(service)?;
        let mut spec = probe_request(&s.spec);
        spec.path = format!("/{}/{}{}", s.spec.namespace, s.spec.name, spec.path);
        Ok(spec)
    }

    /// `n` requests to a service through the ingress, `concurrency` in flight.
    pub fn send(
        &self,
        service: &str,
        n: usize,
        concurrency: usize,
    ) -> Result<TrafficReport, MeshError> {
        let spec = self.request_for(service)?;
        Ok(self
            .client
            .traffic(&self.ingress_url(), &spec, n, concurrency))
    }

    /// `n` requests straight to one pod's sidecar.
    pub fn send_to_pod(
        &self,
        service: &str,
        slot: usize,
        n: usize,
    ) -> Result<TrafficReport, MeshError> {
        let s = self.service(service)?;
        let pod = s
            .pods
            .get(slot)
            .ok_or_else(|| MeshError::Unknown(format!("{service} replica {slot}")))?;
        Ok(self
            .client
            .traffic(&pod.inbound_url(), &probe_request(&s.spec), n, 8))
    }

    /// One request to a pod's sidecar.
    pub fn request_pod(&self, pod: &Pod, spec: &RequestSpec) -> Result<Answer, MeshError> {
        self.client
            .send(&pod.inbound_url(), spec, None, Duration::from_secs(10))
    }

    /// A sidecar's `/stats/prometheus` (the native module's metrics under the Wasm filter's
    /// names).
    pub fn prometheus(&self, pod: &Pod) -> Result<String, MeshError> {
        let a = self.client.get(&pod.admin_url(), "/stats/prometheus")?;
        Ok(a.text().replace(NATIVE_PROMETHEUS_PREFIX, ""))
    }

    /// The config version the sidecar's filter applied last (`hfi.config.version`), `None`
    /// before the filter reported any.
    pub fn config_version(&self, pod: &Pod) -> Result<Option<u64>, MeshError> {
        self.config_version_at(&pod.admin_url())
    }

    /// The config version the filter of the Envoy with admin `admin` applied last (a sidecar
    /// or the waypoint), `None` before the filter reported any.
    pub fn config_version_at(&self, admin: &str) -> Result<Option<u64>, MeshError> {
        // The Wasm filter's stats are under `wasmcustom.`, the native module's under
        // `dynamicmodulescustom.`.
        self.stat_at(
            admin,
            &self.filter_stat(boifi_engine::metrics::CONFIG_VERSION),
        )
    }

    /// The full name of one of the filter's own stats (`hfi.config.version`).
    pub fn filter_stat(&self, name: &str) -> String {
        match self.wasm.as_deref() {
            Some(m) if is_native_module(m) => format!("dynamicmodulescustom.{name}"),
            _ => format!("wasmcustom.{name}"),
        }
    }

    /// The Envoys that run the filter, as (`pod.namespace`, admin URL): every running
    /// sidecar, or the waypoint in ambient mode.
    pub fn filter_proxies(&self) -> Vec<(String, String)> {
        if let Some(a) = &self.ambient {
            return vec![(format!("{}.{}", a.pod(), a.namespace), a.admin_url())];
        }
        self.pods()
            .map(|(s, p)| (format!("{}.{}", p.name, s.namespace), p.admin_url()))
            .collect()
    }

    /// One of a sidecar's stats by its full name (`http.inbound_0.0.0.0_8080.downstream_rq_total`),
    /// `None` when the sidecar has no such stat.
    pub fn stat(&self, pod: &Pod, name: &str) -> Result<Option<u64>, MeshError> {
        self.stat_at(&pod.admin_url(), name)
    }

    /// One stat by its full name of the Envoy with admin `admin`, `None` when it has none.
    pub fn stat_at(&self, admin: &str, name: &str) -> Result<Option<u64>, MeshError> {
        let escaped: String = name
            .chars()
            .flat_map(|c| {
                let special = "\\.|[](){}*+?^$".contains(c);
                special.then_some('\\').into_iter().chain([c])
            })
            .collect();
        let path = format!(
            "/stats?filter={}",
            boifi_core::wire::percent_encode(&format!("^{escaped}$"))
        );
        let a = self.client.get(admin, &path)?;
        let prefix = format!("{name}: ");
        Ok(a.text()
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok()))
    }

    /// The sum of metric `name` over a sidecar's samples (0 when absent).
    pub fn metric(&self, pod: &Pod, name: &str) -> Result<u64, MeshError> {
        Ok(metric_sum(&self.prometheus(pod)?, name).unwrap_or(0))
    }

    /// Kills a pod (app and sidecar) and starts a new one in its slot, with a new name, as a
    /// Deployment replaces a deleted pod; waits until it serves.
    pub fn restart_pod(&mut self, service: &str, slot: usize) -> Result<Duration, MeshError> {
        let s = self.service_index(service)?;
        if let Some(svc) = self.services.get_mut(s) {
            svc.generation += 1;
            if let Some(p) = svc.pods.get_mut(slot) {
                p.stop();
            }
        }
        self.spawn_pod(s, slot)?;
        self.wait_all_pods(Duration::from_secs(60))?;
        self.services
            .get(s)
            .and_then(|svc| svc.pods.get(slot))
            .and_then(|p| p.ready_after)
            .ok_or_else(|| MeshError::Unknown(format!("{service} replica {slot}")))
    }

    /// Restarts a pod ([`Mesh::restart_pod`]) with its own filter configuration, or with the
    /// mesh's again (`None`); waits until it serves.
    pub fn restart_pod_with_plugin_config(
        &mut self,
        service: &str,
        slot: usize,
        plugin_config: Option<Value>,
    ) -> Result<Duration, MeshError> {
        let s = self.service_index(service)?;
        let pod = self
            .services
            .get_mut(s)
            .and_then(|svc| svc.pods.get_mut(slot))
            .ok_or_else(|| MeshError::Unknown(format!("{service} replica {slot}")))?;
        pod.plugin_config = plugin_config;
        self.restart_pod(service, slot)
    }

    /// Scales a service to `replicas` (at most its initial count: the ingress knows those
    /// slots); new pods get new names. Waits until they serve.
    pub fn scale(&mut self, service: &str, replicas: usize) -> Result<(), MeshError> {
        let s = self.service_index(service)?;
        let mut to_start = Vec::new();
        if let Some(svc) = self.services.get_mut(s) {
            svc.generation += 1;
            for p in svc.pods.iter_mut() {
                if p.slot >= replicas {
                    p.stop();
                } else if !p.is_running() {
                    to_start.push(p.slot);
                }
            }
        }
        for slot in to_start {
            self.spawn_pod(s, slot)?;
        }
        self.wait_all_pods(Duration::from_secs(60))
    }

    /// Runs `boifi-cli --server <control plane> args...`; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String, MeshError> {
        run_cli(&self.control_plane.url(), args)
    }

    /// Resident memory (KiB) of every running sidecar.
    pub fn sidecar_rss_kib(&self) -> Vec<u64> {
        self.pods()
            .filter_map(|(_, p)| p.sidecar.as_ref().and_then(ManagedProcess::rss_kib))
            .collect()
    }

    /// Every process with its name.
    pub fn processes(&self) -> Vec<&ManagedProcess> {
        let mut all = self.control_plane.processes();
        all.extend(self.ingress.as_ref());
        if let Some(a) = &self.ambient {
            all.extend(a.waypoint.as_ref());
            all.extend(a.ztunnel.as_ref());
        }
        all.extend(self.probes.iter());
        for s in &self.services {
            for p in &s.pods {
                all.extend(p.app.as_ref());
                all.extend(p.sidecar.as_ref());
            }
        }
        all
    }

    /// Prints the last lines of every process's log on stderr.
    pub fn dump_logs(&self, lines: usize) {
        for p in self.processes() {
            eprintln!(
                "----- {} (pid {}, {}) -----\n{}",
                p.name(),
                p.pid(),
                p.log_path().display(),
                p.log_tail(lines)
            );
        }
    }

    /// Prints a progress line when asked to.
    pub fn say(&self, message: &str) {
        if self.progress {
            eprintln!("mesh: {message}");
        }
    }

    /// Kills everything now.
    pub fn stop(&mut self) {
        for s in &mut self.services {
            for p in &mut s.pods {
                p.stop();
            }
        }
        if let Some(mut i) = self.ingress.take() {
            i.kill();
        }
        if let Some(a) = self.ambient.as_mut() {
            a.stop();
        }
        for mut p in self.probes.drain(..) {
            p.kill();
        }
        self.control_plane.kill_all();
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("mesh: a test failed; logs of the mesh's processes follow");
            self.dump_logs(40);
        }
        self.stop();
    }
}

/// The request a probe or load sends to a service: `GET /` for HTTP, a unary call for gRPC.
pub fn probe_request(spec: &ServiceSpec) -> RequestSpec {
    match spec.protocol {
        Protocol::Grpc => RequestSpec::grpc(
            spec.grpc_service.as_deref().unwrap_or("boifi.mesh.Probe"),
            "Call",
        ),
        Protocol::Http | Protocol::Tcp => RequestSpec::get("/"),
    }
}

/// Runs `boifi-cli --server <url> args...`; returns its stdout, or the failure with its output.
pub fn run_cli(server: &str, args: &[&str]) -> Result<String, MeshError> {
    let cli = workspace_binary("boifi-cli")?;
    let out = Command::new(&cli)
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .map_err(|source| MeshError::Spawn {
            program: cli.display().to_string(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(MeshError::Command {
            command: format!("boifi-cli --server {server} {}", args.join(" ")),
            status: out.status.to_string(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        })
    }
}

/// The control plane's view of the rollout (`GET /v1/policies/status`): the current config
/// version and the version each sidecar (by pod name) last reported holding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    /// The store's config version.
    pub version: u64,
    /// Pod name → version it holds.
    pub sidecars: BTreeMap<String, u64>,
}

fn number(v: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_u64))
}

/// Reads the rollout from the control plane.
pub fn rollout(mesh: &Mesh) -> Result<Rollout, MeshError> {
    let url = mesh.control_plane.url();
    let answer = mesh.client.get(&url, "/v1/policies/status")?;
    if answer.status != 200 {
        return Err(MeshError::Http {
            url: format!("{url}/v1/policies/status"),
            reason: format!("status {}: {}", answer.status, answer.text()),
        });
    }
    let body: Value = serde_json::from_slice(&answer.body).map_err(|e| MeshError::Http {
        url: format!("{url}/v1/policies/status"),
        reason: e.to_string(),
    })?;
    let version = number(&body, &["version", "config_version", "current_version"]).unwrap_or(0);
    let mut sidecars = BTreeMap::new();
    if let Some(list) = body.get("sidecars").and_then(Value::as_array) {
        for s in list {
            let pod = s.get("pod").and_then(Value::as_str);
            let held = number(s, &["version", "config_version", "held_version"]);
            if let (Some(pod), Some(held)) = (pod, held) {
                sidecars.insert(pod.to_owned(), held);
            }
        }
    }
    Ok(Rollout { version, sidecars })
}

/// Waits until every running sidecar (the waypoint in ambient mode) has applied the control plane's current version (see
/// [`wait_applied`]); returns the time it took.
pub fn wait_converged(mesh: &Mesh, timeout: Duration) -> Result<Duration, MeshError> {
    let start = Instant::now();
    let version = rollout(mesh)?.version;
    wait_applied(mesh, version, start, timeout)?;
    Ok(start.elapsed())
}

/// Waits until every filter (each running sidecar, or the waypoint) has applied config `version` or later — its
/// `hfi.config.version` gauge, which the filter sets after it published the new policy set
/// to every Wasm VM of the Envoy — and returns, per pod, the time from `since` to the first
/// moment it was seen applied (keyed `pod.namespace`).
pub fn wait_applied(
    mesh: &Mesh,
    version: u64,
    since: Instant,
    timeout: Duration,
) -> Result<BTreeMap<String, Duration>, MeshError> {
    let pods = mesh.filter_proxies();
    let mut applied: BTreeMap<String, Duration> = BTreeMap::new();
    wait_for(
        &format!("every sidecar to apply config version {version}"),
        timeout,
        Duration::from_millis(1),
        || {
            for (key, admin) in &pods {
                if applied.contains_key(key) {
                    continue;
                }
                if mesh.config_version_at(admin)?.is_some_and(|v| v >= version) {
                    applied.insert(key.clone(), since.elapsed());
                }
            }
            Ok((applied.len() == pods.len()).then_some(()))
        },
    )?;
    Ok(applied)
}

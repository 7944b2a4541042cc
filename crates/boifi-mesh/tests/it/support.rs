//! Shared helpers of the mesh tests: one test at a time on the machine, a mesh shared by the
//! scenarios that can share it, policies applied with the real `boifi-cli`, and statistics.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use boifi_mesh::http::TrafficReport;
use boifi_mesh::mesh::{rollout, wait_applied, wait_converged};
use boifi_mesh::{Mesh, MeshOptions, Protocol, ServiceSpec, Topology};

/// Mesh tests run one at a time: each starts dozens of processes on a 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes the machine for one test.
pub fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The app binary built with these tests.
pub fn app_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_boifi-mesh"))
}

/// Options for a mesh of `services` of Online Boutique (namespace `demo`).
pub fn options(topology: Topology) -> MeshOptions {
    let mut o = MeshOptions::new(topology);
    o.app_binary = Some(app_binary());
    o
}

/// Starts a mesh or fails the test with the reason.
pub fn start(options: MeshOptions) -> Mesh {
    match Mesh::start(options) {
        Ok(m) => m,
        Err(e) => panic!("mesh did not start: {e}"),
    }
}

/// The service of the HA mesh that runs in a second namespace.
pub const STAGING_FRONTEND: &str = "frontend.staging";
/// The service of the HA mesh whose pods carry no service metadata.
pub const NAMELESS: &str = "legacy-batch";

/// The HA mesh's topology: `frontend` × 3, two gRPC services, `frontend` again in namespace
/// `staging`, and a pod Istio could not name (no `WORKLOAD_NAME`, no `app` label).
pub fn ha_topology() -> Topology {
    let mut staging = ServiceSpec::new("frontend", "staging", Protocol::Http);
    staging.replicas = 1;
    let mut nameless = ServiceSpec::new(NAMELESS, "demo", Protocol::Http);
    nameless.service_metadata = false;
    Topology::online_boutique()
        .leaves()
        .only(&["frontend", "productcatalogservice", "cartservice"])
        .with_service(staging)
        .with_service(nameless)
}

/// The scenarios that share the HA mesh; the last one of them that runs stops it.
const HA_USERS: &[&str] = &[
    "user_stories::US1_control_plane_ha_ready_stored_in_etcd_and_survives_a_replica_kill",
    "user_stories::US2_filter_loaded_everywhere_and_updates_propagate_to_every_sidecar",
    "user_stories::US3_selectors_fault_only_their_targets",
    "user_stories::US4_identity_from_istio_metadata_and_wildcards_only_without_it",
    "user_stories::US5_rate_holds_across_replicas_restarts_and_scaling",
    "user_stories::US6_sidecar_metrics_count_faults_and_status_shows_the_rollout",
    "edge_cases::EDGE_control_plane_down_at_sidecar_start_and_all_replicas_restarted",
    "edge_cases::EDGE_policy_for_a_namespace_without_sidecars_stays_stored_and_inactive",
];
static HA_LEFT: OnceLock<AtomicUsize> = OnceLock::new();
static HA_MESH: Mutex<Option<Mesh>> = Mutex::new(None);

/// How many of the HA scenarios this run executes, from libtest's arguments (name filters,
/// `--exact`, `--skip`), so that the last of them stops the mesh even in a filtered run.
fn ha_users_in_this_run() -> usize {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--skip" => {
                skips.extend(args.get(i + 1).cloned());
                i += 1;
            }
            // Options that take a value.
            "--test-threads" | "--logfile" | "--format" | "--color" | "-Z" | "--report-time" => {
                i += 1;
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter.to_owned()),
        }
        i += 1;
    }
    let matches = |name: &str, f: &str| if exact { name == f } else { name.contains(f) };
    HA_USERS
        .iter()
        .filter(|n| filters.is_empty() || filters.iter().any(|f| matches(n, f)))
        .filter(|n| !skips.iter().any(|s| matches(n, s)))
        .count()
}

/// The HA mesh (2 control-plane replicas on a 3-member etcd behind a balancing Envoy),
/// started by the first scenario that needs it, reset to no policies for each scenario.
/// When a scenario fails its guard prints the processes' logs; when the last scenario is done
/// the mesh stops. (If only some scenarios run, the processes die with the test process:
/// they are tied to it with `PR_SET_PDEATHSIG`.)
pub struct SharedMesh {
    mesh: MutexGuard<'static, Option<Mesh>>,
    _machine: MutexGuard<'static, ()>,
}

pub fn ha_mesh() -> SharedMesh {
    let machine = exclusive();
    let mut mesh = HA_MESH.lock().unwrap_or_else(PoisonError::into_inner);
    if mesh.is_none() {
        let mut o = options(ha_topology()).ha();
        o.progress = true;
        *mesh = Some(start(o));
    }
    let mut shared = SharedMesh {
        mesh,
        _machine: machine,
    };
    shared.reset();
    shared
}

impl SharedMesh {
    /// No policies, every control-plane replica and every pod up, every sidecar current.
    fn reset(&mut self) {
        let mesh: &mut Mesh = self;
        mesh.control_plane.start_all().unwrap();
        mesh.control_plane
            .wait_ready(&mesh.client, Duration::from_secs(60))
            .unwrap();
        let topology = ha_topology();
        for spec in &topology.services {
            let s = mesh.service(&spec.key()).unwrap();
            if s.running().count() != spec.replicas {
                mesh.scale(&spec.key(), spec.replicas).unwrap();
            }
        }
        halt(mesh);
    }
}

impl Deref for SharedMesh {
    type Target = Mesh;
    fn deref(&self) -> &Mesh {
        self.mesh.as_ref().expect("the shared mesh is started")
    }
}

impl DerefMut for SharedMesh {
    fn deref_mut(&mut self) -> &mut Mesh {
        self.mesh.as_mut().expect("the shared mesh is started")
    }
}

impl Drop for SharedMesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("a scenario failed on the shared HA mesh; logs of its processes follow");
            if let Some(m) = self.mesh.as_ref() {
                m.dump_logs(40);
            }
        }
        let left = HA_LEFT.get_or_init(|| AtomicUsize::new(ha_users_in_this_run()));
        if left.fetch_sub(1, Ordering::SeqCst) <= 1 {
            // The last scenario: stop everything now rather than at exit.
            self.mesh.take();
        }
    }
}

/// Writes `yaml` to a file and applies it with `boifi-cli policy apply -f`; waits until every
/// sidecar applied the new version.
pub fn apply(mesh: &Mesh, yaml: &str) -> String {
    let file = mesh.dir().join(format!(
        "policy-{}.yaml",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&file, yaml).unwrap();
    let out = mesh
        .cli(&["policy", "apply", "-f", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("boifi-cli policy apply failed: {e}"));
    converge(mesh);
    out
}

/// Waits until every sidecar holds the current config version.
pub fn converge(mesh: &Mesh) -> Duration {
    wait_converged(mesh, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("sidecars did not converge: {e}"))
}

/// Deletes every policy with `boifi-cli halt --yes` and waits until every sidecar knows.
pub fn halt(mesh: &Mesh) {
    mesh.cli(&["halt", "--yes"])
        .unwrap_or_else(|e| panic!("boifi-cli halt failed: {e}"));
    converge(mesh);
}

/// Writes one policy through the API (JSON) and returns when the write was acknowledged
/// and the version it produced.
pub fn write_policy(mesh: &Mesh, policy: &serde_json::Value) -> (Instant, u64) {
    let body = serde_json::to_vec(policy).unwrap();
    let spec = boifi_mesh::http::RequestSpec {
        method: hyper::Method::POST,
        path: "/v1/policies".to_owned(),
        host: None,
        headers: Vec::new(),
        grpc: false,
    };
    let a = mesh
        .client
        .send(
            &mesh.control_plane.url(),
            &spec,
            Some(("application/json", body)),
            Duration::from_secs(10),
        )
        .unwrap();
    let acked = Instant::now();
    assert!(
        a.status == 200 || a.status == 201,
        "write answered {}: {}",
        a.status,
        a.text()
    );
    let version = rollout(mesh).unwrap().version;
    (acked, version)
}

/// Propagation of `writes` policy writes: for each, the time from the acknowledgement to
/// every sidecar having applied it (the slowest sidecar), and every sidecar's own time.
pub fn measure_propagation(mesh: &Mesh, writes: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut all_applied = Vec::new();
    let mut per_sidecar = Vec::new();
    for i in 0..writes {
        let policy = serde_json::json!({
            "metadata": {"name": "propagation-probe"},
            "spec": {"selector": {"service": "*"},
                     "rules": [{"match": {"headers": [{"name": "x-propagation-probe",
                                                        "exact": format!("{i}")}]},
                                "fault": {"percentage": 100, "abort": {"httpStatus": 418}}}]}
        });
        let (acked, version) = write_policy(mesh, &policy);
        let applied = wait_applied(mesh, version, acked, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("write {i} did not reach every sidecar: {e}"));
        all_applied.push(applied.values().max().copied().unwrap_or_default());
        per_sidecar.extend(applied.values().copied());
        // Let the sidecars' next long-polls settle before the next write.
        std::thread::sleep(Duration::from_millis(50));
    }
    all_applied.sort();
    per_sidecar.sort();
    (all_applied, per_sidecar)
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Asserts that `hits` out of `n` is within 4 standard deviations of rate `p`.
pub fn assert_rate(what: &str, hits: usize, n: usize, p: f64) {
    let n_f = n as f64;
    let mean = n_f * p;
    let sigma = (n_f * p * (1.0 - p)).sqrt();
    let lo = mean - 4.0 * sigma;
    let hi = mean + 4.0 * sigma;
    let h = hits as f64;
    assert!(
        h >= lo && h <= hi,
        "{what}: {hits} of {n} is outside {lo:.0}..={hi:.0} (rate {p}, 4σ)"
    );
    eprintln!(
        "{what}: {hits} of {n} ({:.1}%), expected {:.1}% ± {:.1}% (4σ)",
        100.0 * h / n_f,
        100.0 * p,
        400.0 * sigma / n_f
    );
}

/// Per-pod metric values of a service.
pub fn metric_by_pod(mesh: &Mesh, service: &str, metric: &str) -> BTreeMap<String, u64> {
    let s = mesh.service(service).unwrap();
    s.running()
        .map(|p| (p.name.clone(), mesh.metric(p, metric).unwrap()))
        .collect()
}

/// Sends `n` requests to `service` through the ingress.
pub fn send(mesh: &Mesh, service: &str, n: usize) -> TrafficReport {
    let r = mesh.send(service, n, 16).unwrap();
    assert_eq!(
        r.errors, 0,
        "{service}: transport errors: {:?}",
        r.first_error
    );
    r
}

//! Shared helpers of the mesh tests: one test at a time on the machine, a mesh shared by the
//! scenarios that can share it, policies applied with the real `boifi-cli`, and statistics.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, Once, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use boifi_core::wire::StatusResponse;
use boifi_mesh::http::TrafficReport;
use boifi_mesh::mesh::{rollout, wait_applied, wait_converged};
use boifi_mesh::{Mesh, MeshError, MeshOptions, Protocol, ServiceSpec, Topology};

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

static HA_MESH: Mutex<Option<Mesh>> = Mutex::new(None);
static STOP_AT_EXIT: Once = Once::new();

/// Stops the shared HA mesh (its processes and its directory) when the test process exits,
/// whichever scenarios ran and in whatever order: a scenario cannot know it is the last user,
/// and a hand-kept list of their names goes stale.
extern "C" fn stop_shared_mesh_at_exit() {
    // Nothing may unwind into libc; a panic while stopping leaves the processes to
    // `PR_SET_PDEATHSIG`, as a crash would.
    let _ = std::panic::catch_unwind(|| {
        let mesh = match HA_MESH.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            // Still held: a scenario is running (the process is exiting from under it); its
            // processes die with this process.
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut mesh) = mesh {
            mesh.take();
        }
    });
}

fn stop_shared_mesh_when_the_process_exits() {
    STOP_AT_EXIT.call_once(|| {
        #[expect(
            unsafe_code,
            reason = "libtest has no hook after the last test; atexit is the C library's"
        )]
        // SAFETY: `atexit` only stores the pointer of a function that takes no argument and
        // lives as long as the program; the handler never unwinds (it catches panics).
        let refused = unsafe { nix::libc::atexit(stop_shared_mesh_at_exit) } != 0;
        if refused {
            eprintln!(
                "atexit refused the handler: the shared mesh's processes die with this process"
            );
        }
    });
}

/// The HA mesh (2 control-plane replicas on a 3-member etcd behind a balancing Envoy),
/// started by the first scenario that needs it, reset to no policies for each scenario.
/// When a scenario fails its guard prints the processes' logs; the mesh stops when the test
/// process exits (an `atexit` handler), so no scenario needs to know which one is the last.
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
        stop_shared_mesh_when_the_process_exits();
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
        // A pod a scenario configured apart gets the mesh's configuration again.
        let apart: Vec<(String, usize)> = mesh
            .pods()
            .filter(|(_, pod)| pod.plugin_config.is_some())
            .map(|(spec, pod)| (spec.key(), pod.slot))
            .collect();
        for (service, slot) in apart {
            mesh.restart_pod_with_plugin_config(&service, slot, None)
                .unwrap();
        }
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
    }
}

/// Writes `yaml` to a file and applies it with `boifi-cli policy apply -f`; waits until every
/// sidecar applied the new version.
pub fn apply(mesh: &Mesh, yaml: &str) -> String {
    let out = apply_without_waiting(mesh, yaml);
    converge(mesh);
    out
}

/// Writes `yaml` to a file and applies it with `boifi-cli policy apply -f`; returns its output
/// once the control plane stored it.
pub fn apply_without_waiting(mesh: &Mesh, yaml: &str) -> String {
    let file = mesh.dir().join(format!(
        "policy-{}.yaml",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&file, yaml).unwrap();
    mesh.cli(&["policy", "apply", "-f", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("boifi-cli policy apply failed: {e}"))
}

/// The YAML of policy `name` with one rule on every path; `selector` and `fault` are YAML
/// flow mappings (`{service: cartservice, namespace: demo}`, `{percentage: 50, abort:
/// {httpStatus: 503}}`).
pub fn every_path(name: &str, selector: &str, fault: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\n\
         spec:\n  selector: {selector}\n  \
         rules: [{{match: {{path: {{prefix: /}}}}, fault: {fault}}}]\n"
    )
}

/// Applies policy `name`, aborting every request on every path of what `selector` selects,
/// then asserts that of 50 requests to each service of the mesh all are aborted where
/// `selected(service)` and none elsewhere.
pub fn assert_abort_everything_selects(
    mesh: &Mesh,
    name: &str,
    selector: &str,
    selected: impl Fn(&ServiceSpec) -> bool,
) {
    apply(
        mesh,
        &every_path(
            name,
            selector,
            "{percentage: 100, abort: {httpStatus: 503}}",
        ),
    );
    for s in &mesh.services {
        let r = send(mesh, &s.spec.key(), 50);
        let expected = if selected(&s.spec) { 50 } else { 0 };
        assert_eq!(r.aborts(), expected, "{name} on {}: {r:?}", s.spec.key());
    }
}

/// `n` requests to `service` through the ingress carrying header `name: value`, `concurrency`
/// in flight; transport errors are counted, not failed on (outage tests expect some).
pub fn traffic_with_header(
    mesh: &Mesh,
    service: &str,
    (name, value): (&str, &str),
    n: usize,
    concurrency: usize,
) -> TrafficReport {
    let spec = mesh.request_for(service).unwrap().with_header(name, value);
    mesh.client
        .traffic(&mesh.ingress_url(), &spec, n, concurrency)
}

/// The control plane's `/v1/policies/status` document.
pub fn policies_status(mesh: &Mesh) -> serde_json::Value {
    let status = mesh
        .client
        .get(&mesh.control_plane.url(), "/v1/policies/status")
        .unwrap();
    serde_json::from_slice(&status.body).unwrap()
}

/// The `/v1/policies/status` of the control plane (or replica) at `url`.
pub fn status_at(mesh: &Mesh, url: &str) -> Result<StatusResponse, MeshError> {
    let answer = mesh.client.get(url, "/v1/policies/status")?;
    serde_json::from_slice(&answer.body).map_err(|e| MeshError::Http {
        url: format!("{url}/v1/policies/status"),
        reason: e.to_string(),
    })
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

/// One call of the control plane's API; returns when it was acknowledged, after checking
/// its status is one of `ok`, and the config version it produced.
fn api_change(
    mesh: &Mesh,
    method: hyper::Method,
    path: &str,
    body: Option<Vec<u8>>,
    ok: &[u16],
) -> (Instant, u64) {
    let spec = boifi_mesh::http::RequestSpec::new(method, path);
    let a = mesh
        .client
        .send(
            &mesh.control_plane.url(),
            &spec,
            body.map(|b| ("application/json", b)),
            Duration::from_secs(10),
        )
        .unwrap();
    let acked = Instant::now();
    assert!(
        ok.contains(&a.status),
        "{path} answered {}: {}",
        a.status,
        a.text()
    );
    let version = rollout(mesh).unwrap().version;
    (acked, version)
}

/// Writes one policy through the API (JSON) and returns when the write was acknowledged
/// and the version it produced.
pub fn write_policy(mesh: &Mesh, policy: &serde_json::Value) -> (Instant, u64) {
    let body = serde_json::to_vec(policy).unwrap();
    api_change(
        mesh,
        hyper::Method::POST,
        "/v1/policies",
        Some(body),
        &[200, 201],
    )
}

/// Deletes one policy through the API; when the delete was acknowledged and the version it
/// produced.
pub fn delete_policy(mesh: &Mesh, name: &str) -> (Instant, u64) {
    let path = format!("/v1/policies/{name}");
    api_change(mesh, hyper::Method::DELETE, &path, None, &[200, 204])
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

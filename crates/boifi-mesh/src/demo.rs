//! `make demo`: start the mesh (Online Boutique, every app calling its dependencies through
//! its sidecar), put faults on cartservice with `boifi-cli`, send every page type of frontend
//! through the ingress, and show per service and per page what happened: first without
//! retries, then with the callers' retries, then a long delay without and with a timeout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use boifi_core::compiled::{CompiledPolicySet, SimpleRequest};
use boifi_core::identity::Identity;
use boifi_core::policy::{parse_policies_text, PolicyDocument};

use crate::cascade::Run;
use crate::control_plane::Store;
use crate::error::MeshError;
use crate::mesh::{Mesh, MeshOptions};
use crate::prometheus::{istio_stats_config, Prometheus, DASHBOARD};
use crate::stats::quantile;
use crate::topology::{Protocol, ServiceSpec, Topology};
use crate::traffic::{Retries, RoutePolicy};

/// The service the demo breaks.
const TARGET: &str = "cartservice";

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The services.
    pub topology: Topology,
    /// Two control-plane replicas on etcd instead of one on the embedded store.
    pub ha: bool,
    /// The faults of the first two runs (file or directory).
    pub policies: PathBuf,
    /// The long delay of the last two runs.
    pub slow_policies: PathBuf,
    /// Requests per page type and run.
    pub requests: usize,
    /// The app binary (`boifi-mesh` itself).
    pub app_binary: Option<PathBuf>,
    /// Also run a Prometheus scraping the mesh, and keep everything up with traffic until
    /// Enter is pressed, for the Grafana dashboard.
    pub prometheus: bool,
    /// Istio's ambient mode: one waypoint for the namespace instead of sidecars.
    pub ambient: bool,
}

impl DemoOptions {
    /// The demo's own policy files (`crates/boifi-mesh/demo/`).
    pub fn default_policies() -> (PathBuf, PathBuf) {
        let dir = crate::topology::repo_root().join("crates/boifi-mesh/demo");
        (dir.join("cart-faults.yaml"), dir.join("cart-slow.yaml"))
    }
}

/// The expected share of aborted and delayed requests (parts of 1) for a service's request,
/// from boifi-core's own arithmetic over the rules that match it
/// ([`boifi_core::simulate::expected_shares`]): what `boifi-cli simulate` prints too.
pub fn expected_shares(policies: &[PolicyDocument], spec: &ServiceSpec) -> (f64, f64) {
    let mut identity = Identity::for_service(&spec.name, &spec.namespace);
    identity.labels = spec.labels.clone();
    let now = now_ms();
    let Ok(set) = CompiledPolicySet::compile(policies, &identity, now) else {
        return (0.0, 0.0);
    };
    let request = match spec.protocol {
        Protocol::Grpc => {
            SimpleRequest::new("POST", "/").with_header("content-type", "application/grpc")
        }
        Protocol::Http | Protocol::Tcp => SimpleRequest::new("GET", "/"),
    };
    let (mut aborts, mut delays) = (0.0, 0.0);
    for share in boifi_core::simulate::expected_shares(&set, &request, now) {
        let fault = policies
            .iter()
            .find(|p| p.name() == share.policy)
            .and_then(|p| p.spec.rules.get(share.rule_index))
            .map(|r| &r.fault);
        if let Some(fault) = fault {
            if fault.abort.is_some() {
                aborts += share.share.percent_f64() / 100.0;
            }
            if fault.delay.is_some() {
                delays += share.share.percent_f64() / 100.0;
            }
        }
    }
    (aborts, delays)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads every policy of a file or of the files of a directory (`.yaml`, `.yml`, `.json`).
pub fn read_policies(path: &std::path::Path) -> Result<Vec<PolicyDocument>, MeshError> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| MeshError::io(path, e))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let mut all = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| MeshError::io(&f, e))?;
        let docs = parse_policies_text(&text).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            MeshError::Topology(format!("{}: {}", f.display(), list.join("; ")))
        })?;
        all.extend(docs);
    }
    Ok(all)
}

/// One run: the callers' route policies and what to call it.
struct Scenario {
    title: &'static str,
    routes: Vec<RoutePolicy>,
}

/// Runs the demo, printing progress and the tables on stdout.
pub fn run(options: &DemoOptions) -> Result<(), MeshError> {
    if options.ambient && options.prometheus {
        return Err(MeshError::Topology(
            "demo: `--prometheus` scrapes the sidecars, and ambient mode has none; drop PROM=1 or MODE=ambient"
                .to_owned(),
        ));
    }
    let started = Instant::now();
    let policies = read_policies(&options.policies)?;
    let slow = read_policies(&options.slow_policies)?;
    println!(
        "[1/4] the mesh{}: {} services, {} pods; control plane on {}",
        if options.ambient {
            " (ambient: no sidecars, one waypoint for namespace demo)"
        } else {
            ""
        },
        options.topology.services.len(),
        options.topology.pods(),
        if options.ha {
            "2 replicas + etcd (3 members)"
        } else {
            "the embedded store"
        }
    );
    let mut mesh_options = MeshOptions::new(options.topology.clone());
    if options.ha {
        mesh_options = mesh_options.ha();
    } else {
        mesh_options.store = Store::Embedded;
    }
    mesh_options.progress = true;
    mesh_options.ambient = options.ambient;
    mesh_options.app_binary = options.app_binary.clone();
    if options.prometheus {
        mesh_options.sidecar_stats_config = Some(istio_stats_config());
    }
    let mut mesh = Mesh::start(mesh_options)?;
    match &mesh.ambient {
        Some(a) => println!(
            "      {} pods and the waypoint serving after {} ms (waypoint admin {})",
            mesh.pods().count(),
            mesh.all_pods_ready.map_or(0, |d| d.as_millis()),
            a.admin_url(),
        ),
        None => println!(
            "      {} sidecars serving after {} ms",
            mesh.pods().count(),
            mesh.all_pods_ready.map_or(0, |d| d.as_millis()),
        ),
    }
    let prometheus = options
        .prometheus
        .then(|| Prometheus::for_mesh(&mesh, Duration::from_secs(5)))
        .transpose()?;
    if let Some(prometheus) = &prometheus {
        println!("      prometheus: {}", prometheus.url());
        println!("      dashboard to import into Grafana: {DASHBOARD}");
    }

    apply(&mesh, 2, &options.policies, &policies)?;
    let retries = Retries::new(2, &["5xx", "gateway-error", "unavailable"])?;
    run_scenarios(
        &mut mesh,
        options.requests,
        1,
        [
            Scenario {
                title: "no retries",
                routes: Vec::new(),
            },
            Scenario {
                title: "callers retry",
                routes: vec![RoutePolicy::to(TARGET).retries(retries)],
            },
        ],
    )?;

    mesh.cli(&["halt", "--yes"])?;
    apply(&mesh, 3, &options.slow_policies, &slow)?;
    run_scenarios(
        &mut mesh,
        options.requests,
        3,
        [
            Scenario {
                title: "no timeout",
                routes: Vec::new(),
            },
            Scenario {
                title: "callers time out",
                routes: vec![RoutePolicy::to(TARGET).timeout(Duration::from_millis(150))],
            },
        ],
    )?;

    if let Some(prometheus) = &prometheus {
        keep_serving(&mesh, prometheus)?;
    }
    println!("[4/4] stopping every process");
    drop(prometheus);
    drop(mesh);
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Sends frontend's pages, so the dashboard has something to show, until a line (or the end)
/// arrives on stdin.
fn keep_serving(mesh: &Mesh, prometheus: &Prometheus) -> Result<(), MeshError> {
    println!(
        "      traffic goes on; prometheus at {}; press Enter to stop",
        prometheus.url()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_line(&mut String::new());
        let _ = tx.send(());
    });
    while rx.try_recv().is_err() {
        mesh.run_pages("frontend", 5, 4)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Applies a policy file with `boifi-cli` and waits until every sidecar holds it.
fn apply(
    mesh: &Mesh,
    step: u8,
    path: &std::path::Path,
    policies: &[PolicyDocument],
) -> Result<(), MeshError> {
    let shown = path
        .strip_prefix(crate::topology::repo_root())
        .unwrap_or(path)
        .display();
    println!("[{step}/4] boifi-cli policy apply -f {shown}");
    for line in mesh
        .cli(&["policy", "apply", "-f", &path.display().to_string()])?
        .lines()
    {
        println!("      {line}");
    }
    let waited = crate::mesh::wait_converged(mesh, Duration::from_secs(30))?;
    let target = mesh.service(TARGET)?;
    let (aborts, delays) = expected_shares(policies, &target.spec);
    let holder = if mesh.ambient.is_some() {
        "the waypoint holds"
    } else {
        "every sidecar holds"
    };
    println!(
        "      {holder} them {} ms after the apply returned;",
        waited.as_millis()
    );
    println!(
        "      in a sidecar, {TARGET} aborts {:.1} % and delays {:.1} % of its requests",
        100.0 * aborts,
        100.0 * delays
    );
    if mesh.ambient.is_some() {
        println!(
            "      the waypoint's filter decides the target per request (the chain a call arrived on), so {TARGET}'s calls get the same shares"
        );
    }
    Ok(())
}

/// Runs `scenarios`, numbered from `first` of [`RUNS`].
fn run_scenarios<const N: usize>(
    mesh: &mut Mesh,
    requests: usize,
    first: usize,
    scenarios: [Scenario; N],
) -> Result<(), MeshError> {
    for (i, scenario) in scenarios.into_iter().enumerate() {
        mesh.set_routes(scenario.routes.clone())?;
        let started = Instant::now();
        let run = mesh.run_pages("frontend", requests, 16)?;
        let heading = run_heading(first + i, &scenario, started.elapsed());
        println!();
        for line in heading
            .into_iter()
            .chain(service_table(&run))
            .chain(page_table(&run))
        {
            println!("{line}");
        }
        println!();
    }
    Ok(())
}

/// The number of runs the demo makes.
const RUNS: usize = 4;

/// `== run 2 of 4: callers retry (2.6 s)` and the route policy on the next line.
fn run_heading(number: usize, scenario: &Scenario, took: Duration) -> Vec<String> {
    let routes = scenario.routes.first().map_or_else(
        || format!("every caller → {TARGET}: no retries, no timeout"),
        RoutePolicy::describe,
    );
    let mut lines = vec![format!(
        "== run {number} of {RUNS}: {} ({:.1} s)",
        scenario.title,
        took.as_secs_f64()
    )];
    lines.extend(wrap(&routes, "   ", 80));
    lines
}

/// `text` in lines of at most `width` columns (a longer word stays whole), each indented.
fn wrap(text: &str, indent: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::from(indent);
    for word in text.split(' ') {
        let fits = line.chars().count() + 1 + word.chars().count() <= width;
        if line.len() > indent.len() && !fits {
            lines.push(std::mem::replace(&mut line, String::from(indent)));
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// Service names without the `service` suffix, so that the tables fit in 80 columns.
fn short(name: &str) -> &str {
    name.strip_suffix("service").unwrap_or(name)
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

/// Per service: what its sidecar (ambient: its chain of the waypoint) received and injected,
/// what its app received, what its callers' calls to it got; in ambient mode a last line with
/// the faults the waypoint's filter injected (it counts per proxy, not per service).
pub fn service_table(run: &Run) -> Vec<String> {
    let proxy = if run.waypoint.is_some() {
        "-- its waypoint chain --"
    } else {
        "-- its sidecar --"
    };
    let mut lines = vec![
        format!(
            "{:<14}{:^24}{:>8}{:^32}",
            "", proxy, "its app", "-- what its callers saw --"
        )
        .trim_end()
        .to_owned(),
        format!(
            "{:<14}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}",
            "SERVICE", "REQS", "ABORTS", "DELAYS", "RECVD", "CALLS", "ERRORS", "P50 ms", "P99 ms"
        ),
    ];
    for s in &run.services {
        let seen = &s.seen_by_callers;
        let latencies = seen.latencies();
        let (calls, errors) = if seen.calls == 0 {
            ("-".to_owned(), "-".to_owned())
        } else {
            (seen.calls.to_string(), seen.failed.to_string())
        };
        lines.push(format!(
            "{:<14}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}",
            short(&s.service),
            s.sidecar_requests,
            s.aborts,
            s.delays,
            s.app.received,
            calls,
            errors,
            millis(quantile(&latencies, 0.5)),
            millis(quantile(&latencies, 0.99)),
        ));
    }
    if let Some(w) = &run.waypoint {
        lines.push(format!(
            "{:<14}{:>8}{:>8}{:>8}  (new HBONE tunnels; all services' faults)",
            "(waypoint)", w.tunnels, w.aborts, w.delays
        ));
    }
    lines
}

/// Per page type: what the user saw at the ingress.
pub fn page_table(run: &Run) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<14}{:>8}{:>8}{:>8}{:>8}{:>8}",
        "PAGE", "REQS", "FAILED", "FAIL %", "P50 ms", "P99 ms"
    )];
    for p in &run.pages {
        let r = &p.report;
        lines.push(format!(
            "{:<14}{:>8}{:>8}{:>8.1}{:>8}{:>8}",
            p.page.name,
            r.requests,
            p.failed(),
            100.0 * p.failed() as f64 / r.requests.max(1) as f64,
            millis(r.latency_quantile(0.5)),
            millis(r.latency_quantile(0.99)),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppStats, CallStats};
    use crate::cascade::{PageRow, ServiceRow};
    use crate::http::TrafficReport;

    #[test]
    fn demo_policies_fault_only_cartservice() {
        let (faults, slow) = DemoOptions::default_policies();
        let topology = Topology::online_boutique();
        for (path, want) in [(faults, (0.30, 0.70 * 0.25)), (slow, (0.0, 0.50))] {
            let policies = read_policies(&path).unwrap();
            for s in &topology.services {
                let (aborts, delays) = expected_shares(&policies, s);
                let (a, d) = if s.name == TARGET { want } else { (0.0, 0.0) };
                assert!((aborts - a).abs() < 1e-9, "{}: {aborts}", s.name);
                assert!((delays - d).abs() < 1e-9, "{}: {delays}", s.name);
            }
        }
    }

    #[test]
    fn tables_fit_in_80_columns() {
        let topology = Topology::online_boutique();
        let seen = CallStats {
            calls: 123_456,
            failed: 12_345,
            outcomes: Default::default(),
            latencies_us: vec![1_000_000, 12_345_678],
        };
        let services = topology
            .services
            .iter()
            .map(|s| ServiceRow {
                service: s.name.clone(),
                sidecar_requests: 1_234_567,
                aborts: 123_456,
                delays: 123_456,
                app: AppStats::default(),
                seen_by_callers: seen.clone(),
            })
            .collect();
        let report = TrafficReport {
            requests: 100_000,
            latencies: vec![Duration::from_millis(1234)],
            ..TrafficReport::default()
        };
        let pages = crate::calls::online_boutique("frontend")
            .into_iter()
            .map(|page| PageRow {
                page,
                report: report.clone(),
            })
            .collect();
        let run = Run {
            pages,
            services,
            waypoint: None,
        };
        let retries = Retries::new(2, &["5xx", "gateway-error", "unavailable"]).unwrap();
        let scenario = Scenario {
            title: "callers retry",
            routes: vec![RoutePolicy::to(TARGET)
                .retries(retries.per_try_timeout(Duration::from_millis(100)))
                .timeout(Duration::from_millis(1500))],
        };
        let lines: Vec<String> = run_heading(2, &scenario, Duration::from_secs(100))
            .into_iter()
            .chain(service_table(&run))
            .chain(page_table(&run))
            .collect();
        assert_eq!(lines.len(), 3 + 2 + topology.services.len() + 1 + 7);
        for l in &lines {
            assert!(
                l.chars().count() <= 80,
                "{} columns: {l}",
                l.chars().count()
            );
        }
    }
}

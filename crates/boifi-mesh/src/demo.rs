//! `make demo`: start the mesh (Online Boutique, every app calling its dependencies through
//! its sidecar), put faults on cartservice with `boifi-cli`, send every page type of frontend
//! through the ingress, and show per service and per page what happened: first without
//! retries, then with the callers' retries, then a long delay without and with a timeout.
//! The last run counts charges per order: paymentservice's answers lost after it charged
//! (a response-phase abort) while checkoutservice's Envoy retries the charge, beside the same
//! abort on the request, which charges nobody twice.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use boifi_core::compiled::{CompiledPolicySet, SimpleRequest};
use boifi_core::identity::Identity;
use boifi_core::policy::{parse_policies_text, FaultTarget, PolicyDocument};

use crate::app::SideEffects;
use crate::calls::CHARGES;
use crate::cascade::Run;
use crate::control_plane::Store;
use crate::error::MeshError;
use crate::mesh::{Mesh, MeshOptions};
use crate::prometheus::{istio_stats_config, Prometheus, DASHBOARD};
use crate::stats::{duplicates_per_call, quantile};
use crate::topology::{Protocol, ServiceSpec, Topology};
use crate::traffic::{Retries, RoutePolicy};

/// The service the demo breaks.
const TARGET: &str = "cartservice";
/// The service of the last run, whose side effect (a charge) is counted per order.
const PAYMENT: &str = "paymentservice";
/// Its caller, whose Envoy retries the charge.
const CHECKOUT: &str = "checkoutservice";
/// The call that charges.
const CHARGE_PATH: &str = "/hipstershop.PaymentService/Charge";
/// The demo's steps, as its progress lines number them.
const STEPS: usize = 5;
/// Checkout pages (orders) of the last run per page request of the others.
const ORDERS_PER_REQUEST: usize = 3;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The services.
    pub topology: Topology,
    /// Two control-plane replicas on etcd instead of one on the embedded store.
    pub ha: bool,
    /// The faults of the first two runs (file or directory).
    pub policies: PathBuf,
    /// The long delay of the third and fourth runs.
    pub slow_policies: PathBuf,
    /// The last run's fault on paymentservice's `Charge` answers (response phase) and the same
    /// fault on its requests (request phase).
    pub charge_policies: (PathBuf, PathBuf),
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

    /// The last run's policy files: the answer lost after the charge, the charge refused.
    pub fn default_charge_policies() -> (PathBuf, PathBuf) {
        let dir = crate::topology::repo_root().join("crates/boifi-mesh/demo");
        (
            dir.join("payment-answer-lost.yaml"),
            dir.join("payment-charge-refused.yaml"),
        )
    }
}

/// The expected share of aborted and delayed requests (parts of 1) for a service's request,
/// from boifi-core's own arithmetic over the rules that match it
/// ([`boifi_core::simulate::expected_shares`]): what `boifi-cli simulate` prints too.
pub fn expected_shares(policies: &[PolicyDocument], spec: &ServiceSpec) -> (f64, f64) {
    expected_shares_on(policies, spec, "/")
}

/// [`expected_shares`] for a request to `path` (a gRPC method: `/hipstershop.X/Method`).
pub fn expected_shares_on(
    policies: &[PolicyDocument],
    spec: &ServiceSpec,
    path: &str,
) -> (f64, f64) {
    let mut identity = Identity::for_service(&spec.name, &spec.namespace);
    identity.labels = spec.labels.clone();
    let now = now_ms();
    let Ok(set) = CompiledPolicySet::from_documents(policies, &identity, now) else {
        return (0.0, 0.0);
    };
    let request = match spec.protocol {
        Protocol::Grpc => {
            SimpleRequest::new("POST", path).with_header("content-type", "application/grpc")
        }
        Protocol::Http | Protocol::Tcp => SimpleRequest::new("GET", path),
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

/// The retries of the demo's callers when they retry: 2, on what a fault answers.
fn callers_retries() -> Result<Retries, MeshError> {
    Retries::new(2, &["5xx", "gateway-error", "unavailable"])
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
    let answer_lost = read_policies(&options.charge_policies.0)?;
    let charge_refused = read_policies(&options.charge_policies.1)?;
    println!(
        "[1/{STEPS}] the mesh{}: {} services, {} pods; control plane on {}",
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

    apply(&mesh, 2, &options.policies, &policies, TARGET, "/")?;
    let retries = callers_retries()?;
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
    apply(&mesh, 3, &options.slow_policies, &slow, TARGET, "/")?;
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

    mesh.cli(&["halt", "--yes"])?;
    if mesh.ambient.is_some() {
        println!(
            "[4/{STEPS}] run {RUNS} (charges per order under retries) reads the callers' sidecars; ambient mode has none: not run"
        );
    } else {
        let orders = options.requests * ORDERS_PER_REQUEST;
        charge_run(
            &mut mesh,
            orders,
            [
                (&options.charge_policies.0, &answer_lost),
                (&options.charge_policies.1, &charge_refused),
            ],
        )?;
    }

    if let Some(prometheus) = &prometheus {
        keep_serving(&mesh, prometheus)?;
    }
    println!("[{STEPS}/{STEPS}] stopping every process");
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

/// Applies a policy file with `boifi-cli` and waits until every sidecar holds it; says what
/// share of `target`'s requests to `request_path` it faults.
fn apply(
    mesh: &Mesh,
    step: u8,
    path: &std::path::Path,
    policies: &[PolicyDocument],
    target: &str,
    request_path: &str,
) -> Result<(), MeshError> {
    let shown = path
        .strip_prefix(crate::topology::repo_root())
        .unwrap_or(path)
        .display();
    println!("[{step}/{STEPS}] boifi-cli policy apply -f {shown}");
    for line in mesh
        .cli(&["policy", "apply", "-f", &path.display().to_string()])?
        .lines()
    {
        println!("      {line}");
    }
    let waited = crate::mesh::wait_converged(mesh, Duration::from_secs(30))?;
    let (aborts, delays) = expected_shares_on(policies, &mesh.service(target)?.spec, request_path);
    let (what, when) = if acts_on_response(policies) {
        ("answers", ", after the app did its work")
    } else {
        ("requests", "")
    };
    let requests = if request_path == "/" {
        format!("its {what}{when}")
    } else {
        format!("its {what} to {request_path}{when}")
    };
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
        "      in a sidecar, {target} aborts {:.1} % and delays {:.1} % of {requests}",
        100.0 * aborts,
        100.0 * delays
    );
    if mesh.ambient.is_some() {
        println!(
            "      the waypoint's filter decides the target per request (the chain a call arrived on), so {target}'s calls get the same shares"
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
const RUNS: usize = 5;

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

/// One phase of the last run: the orders placed and what paymentservice charged for them.
#[derive(Debug, Clone)]
pub struct ChargeRow {
    /// `response` (the answer lost after the charge) or `request` (the charge refused).
    pub phase: &'static str,
    /// Checkout pages sent: one order each.
    pub orders: usize,
    /// Checkout pages that failed.
    pub failed: usize,
    /// The retries checkoutservice's sidecar made on its Charge calls.
    pub retries: u64,
    /// paymentservice's charges per order id.
    pub charges: SideEffects,
    /// The duplicate charges the retry policy predicts, mean and 4σ (`None`: none can happen,
    /// the fault stops the request before the charge).
    pub expected: Option<(f64, f64)>,
}

/// Whether any rule of `policies` acts on the app's response (after the app did its work).
fn acts_on_response(policies: &[PolicyDocument]) -> bool {
    policies
        .iter()
        .flat_map(|p| &p.spec.rules)
        .any(|r| r.fault.target == FaultTarget::Response)
}

/// The last run: checkoutservice's Envoy retries Charge; for each `(file, policies)` the
/// policy is applied and `orders` checkout pages are sent; the charges per order are printed
/// side by side.
fn charge_run(
    mesh: &mut Mesh,
    orders: usize,
    phases: [(&PathBuf, &Vec<PolicyDocument>); 2],
) -> Result<(), MeshError> {
    let retries = callers_retries()?;
    let routes = vec![RoutePolicy::to(PAYMENT).retries(retries)];
    mesh.set_routes(routes.clone())?;
    // The retries the caller's Envoy really applies, from its served routes.
    let served = mesh.served_retry_policy(CHECKOUT, PAYMENT)?;
    let num_retries = served
        .as_ref()
        .and_then(|p| p.get("num_retries"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let payment = mesh.service(PAYMENT)?.spec.clone();
    let cluster = format!(
        "cluster.{}.upstream_rq_retry",
        crate::envoy::outbound_cluster(&payment)
    );
    let checkout = mesh
        .pages("frontend")?
        .into_iter()
        .find(|p| p.name == "checkout")
        .ok_or_else(|| MeshError::Unknown("frontend's checkout page".to_owned()))?;
    let started = Instant::now();
    let mut rows = Vec::new();
    for (path, policies) in phases {
        let response = acts_on_response(policies);
        mesh.cli(&["halt", "--yes"])?;
        apply(mesh, 4, path, policies, PAYMENT, CHARGE_PATH)?;
        let (aborts, _) = expected_shares_on(policies, &payment, CHARGE_PATH);
        mesh.reset_app_stats()?;
        let before = mesh.service_stat(CHECKOUT, &cluster)?;
        let report = mesh.send_page("frontend", &checkout, orders, 16)?;
        let retried = mesh
            .service_stat(CHECKOUT, &cluster)?
            .saturating_sub(before);
        let charges = mesh.app_stats(PAYMENT)?.side_effect(CHARGES);
        let expected = response.then(|| {
            let (mean, variance) = duplicates_per_call(aborts, num_retries);
            let n = orders as f64;
            (n * mean, 4.0 * (n * variance).sqrt())
        });
        rows.push(ChargeRow {
            phase: if response { "response" } else { "request" },
            orders,
            failed: report.server_errors(),
            retries: retried,
            charges,
            expected,
        });
    }
    let scenario = Scenario {
        title: "answers lost after the charge, and retried",
        routes,
    };
    println!();
    for line in run_heading(RUNS, &scenario, started.elapsed())
        .into_iter()
        .chain(charge_table(&rows))
    {
        println!("{line}");
    }
    println!();
    Ok(())
}

/// Per phase of the fault: the orders, what the customer saw, the caller's retries, and the
/// charges per order; then what the numbers say.
pub fn charge_table(rows: &[ChargeRow]) -> Vec<String> {
    let mut lines = vec![
        "   an order is a checkout page; every Charge carries its order's id".to_owned(),
        format!(
            "{:<10}{:>7}{:>7}{:>8}{:>8}{:>8}{:>7}{:>7}{:>17}",
            "FAULT ON",
            "ORDERS",
            "FAILED",
            "RETRIES",
            "CHARGED",
            "CHARGES",
            "TWICE+",
            "EXTRA",
            "EXPECTED EXTRA"
        ),
    ];
    for r in rows {
        let expected = r.expected.map_or_else(
            || "0".to_owned(),
            |(mean, width)| format!("{mean:.0} ± {width:.0}"),
        );
        lines.push(format!(
            "{:<10}{:>7}{:>7}{:>8}{:>8}{:>8}{:>7}{:>7}{:>17}",
            r.phase,
            r.orders,
            r.failed,
            r.retries,
            r.charges.keys(),
            r.charges.total(),
            r.charges.repeated_keys(),
            r.charges.duplicates(),
            expected
        ));
    }
    lines.push(
        "   CHARGED: orders charged; TWICE+: orders charged more than once; EXTRA: the".to_owned(),
    );
    lines.push(
        "   charges after an order's first; EXPECTED: from the fault's share and the".to_owned(),
    );
    lines.push("   caller's served retries (capped geometric law, 4σ)".to_owned());
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
    fn charge_policies_fault_only_payments_charge() {
        let (lost, refused) = DemoOptions::default_charge_policies();
        let topology = Topology::online_boutique();
        for (path, response) in [(lost, true), (refused, false)] {
            let policies = read_policies(&path).unwrap();
            assert_eq!(acts_on_response(&policies), response, "{}", path.display());
            for s in &topology.services {
                let (aborts, delays) = expected_shares_on(&policies, s, CHARGE_PATH);
                let a = if s.name == PAYMENT { 0.5 } else { 0.0 };
                assert!((aborts - a).abs() < 1e-9, "{}: {aborts}", s.name);
                assert!(delays.abs() < 1e-9, "{}: {delays}", s.name);
                // Only the charge: paymentservice's other requests pass.
                let (other_aborts, other_delays) = expected_shares(&policies, s);
                assert!(other_aborts.abs() + other_delays.abs() < 1e-9, "{}", s.name);
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
        let retries = callers_retries().unwrap();
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
        let charges = SideEffects {
            by_key: (0..100_000).map(|i| (format!("o-{i}"), 3)).collect(),
        };
        let rows = [
            ChargeRow {
                phase: "response",
                orders: 100_000,
                failed: 100_000,
                retries: 1_000_000,
                charges: charges.clone(),
                expected: Some((123_456.7, 12_345.6)),
            },
            ChargeRow {
                phase: "request",
                orders: 100_000,
                failed: 100_000,
                retries: 1_000_000,
                charges,
                expected: None,
            },
        ];
        let table = charge_table(&rows);
        assert_eq!(table.len(), 2 + rows.len() + 3);
        let lines: Vec<String> = lines.into_iter().chain(table).collect();
        for l in &lines {
            assert!(
                l.chars().count() <= 80,
                "{} columns: {l}",
                l.chars().count()
            );
        }
    }
}

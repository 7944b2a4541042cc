//! `make demo`: start the mesh, apply policies with `boifi-cli`, send traffic to every
//! service through the ingress, and show per service what happened next to what the policies
//! say should happen.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use boifi_core::compiled::{CompiledPolicySet, SimpleRequest};
use boifi_core::identity::Identity;
use boifi_core::policy::{parse_policies_text, PolicyDocument};

use crate::control_plane::Store;
use crate::error::MeshError;
use crate::mesh::{Mesh, MeshOptions};
use crate::prometheus::{istio_stats_config, Prometheus, DASHBOARD};
use crate::topology::{Protocol, ServiceSpec, Topology};

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The services.
    pub topology: Topology,
    /// Two control-plane replicas on etcd instead of one on the embedded store.
    pub ha: bool,
    /// The policy file or directory to apply.
    pub policies: PathBuf,
    /// Requests per service.
    pub requests: usize,
    /// The app binary (`boifi-mesh` itself).
    pub app_binary: Option<PathBuf>,
    /// Also run a Prometheus scraping the mesh, and keep everything up with traffic until
    /// Enter is pressed, for the Grafana dashboard.
    pub prometheus: bool,
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
                aborts += share.share;
            }
            if fault.delay.is_some() {
                delays += share.share;
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

/// Runs the demo, printing progress and the table on stdout.
pub fn run(options: &DemoOptions) -> Result<(), MeshError> {
    let started = Instant::now();
    let policies = read_policies(&options.policies)?;
    println!(
        "[1/5] starting the mesh: {} services, {} pods, control plane on {}",
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
    mesh_options.app_binary = options.app_binary.clone();
    if options.prometheus {
        mesh_options.sidecar_stats_config = Some(istio_stats_config());
    }
    let mesh = Mesh::start(mesh_options)?;
    let prometheus = if options.prometheus {
        let prometheus = Prometheus::for_mesh(&mesh, Duration::from_secs(5))?;
        println!(
            "      prometheus: {} (dashboard to import into Grafana: {})",
            prometheus.url(),
            crate::topology::repo_root().join(DASHBOARD).display()
        );
        Some(prometheus)
    } else {
        None
    };
    let rss = mesh.sidecar_rss_kib();
    println!(
        "      control plane ready in {} ms; {} sidecars serving after {} ms; sidecar memory {} MiB average ({} MiB total)",
        mesh.control_plane_ready.map_or(0, |d| d.as_millis()),
        rss.len(),
        mesh.all_pods_ready.map_or(0, |d| d.as_millis()),
        rss.iter().sum::<u64>() / (rss.len().max(1) as u64) / 1024,
        rss.iter().sum::<u64>() / 1024
    );

    println!(
        "[2/5] applying {} with boifi-cli ({} policies)",
        options.policies.display(),
        policies.len()
    );
    let path = options.policies.display().to_string();
    let out = mesh.cli(&["policy", "apply", "-f", &path])?;
    for line in out.lines() {
        println!("      {line}");
    }
    let waited = crate::mesh::wait_converged(&mesh, Duration::from_secs(30))?;
    println!(
        "      every sidecar holds the new policies {} ms after the apply returned; boifi-cli status:",
        waited.as_millis()
    );
    for line in mesh.cli(&["status"])?.lines() {
        println!("      {line}");
    }

    println!(
        "[3/5] sending {} requests to each service through the ingress",
        options.requests
    );
    let mut rows = Vec::new();
    for s in &mesh.services {
        let before = delays_total(&mesh, &s.spec.name);
        let report = mesh.send(&s.spec.name, options.requests, 16)?;
        let delays = delays_total(&mesh, &s.spec.name).saturating_sub(before);
        let (abort_share, delay_share) = expected_shares(&policies, &s.spec);
        rows.push((
            s.spec.clone(),
            s.pods.len(),
            report,
            delays,
            abort_share,
            delay_share,
        ));
    }

    println!("[4/5] results (observed vs what the policies configure)");
    println!(
        "{:<22} {:>4} {:>8} {:>6} {:>7} {:>7}  {:>16}  {:>16}",
        "SERVICE", "PODS", "REQUESTS", "OK", "ABORTS", "DELAYS", "ABORT% obs/cfg", "DELAY% obs/cfg"
    );
    for (spec, pods, report, delays, abort_share, delay_share) in &rows {
        let n = report.requests.max(1) as f64;
        let ok = report.passed;
        println!(
            "{:<22} {:>4} {:>8} {:>6} {:>7} {:>7}  {:>7.1} / {:>6.1}  {:>7.1} / {:>6.1}",
            spec.name,
            pods,
            report.requests,
            ok,
            report.aborts(),
            delays,
            100.0 * report.aborts() as f64 / n,
            100.0 * abort_share,
            100.0 * (*delays as f64) / n,
            100.0 * delay_share,
        );
        if report.errors > 0 {
            println!(
                "{:<22} {} requests failed: {}",
                "",
                report.errors,
                report.first_error.as_deref().unwrap_or("")
            );
        }
    }

    if let Some(prometheus) = &prometheus {
        keep_serving(&mesh, prometheus)?;
    }
    println!("[5/5] stopping every process");
    drop(prometheus);
    drop(mesh);
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Sends traffic to every service, so the dashboard has something to show, until a line (or
/// the end) arrives on stdin.
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
        for s in &mesh.services {
            mesh.send(&s.spec.name, 20, 4)?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn delays_total(mesh: &Mesh, service: &str) -> u64 {
    mesh.service(service)
        .map(|s| {
            s.running()
                .map(|p| mesh.metric(p, "hfi_faults_delays_total").unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_policies_configure_20_percent_aborts_and_delays_on_frontend_only() {
        let path = crate::topology::repo_root().join("crates/boifi-mesh/demo/frontend-faults.yaml");
        let policies = read_policies(&path).unwrap();
        let topology = Topology::online_boutique();
        let frontend = topology
            .services
            .iter()
            .find(|s| s.name == "frontend")
            .unwrap();
        let (aborts, delays) = expected_shares(&policies, frontend);
        assert!((aborts - 0.20).abs() < 1e-9, "{aborts}");
        // The delay policy fires on 25% of what the abort policy let through.
        assert!((delays - 0.20).abs() < 1e-9, "{delays}");
        for s in topology.services.iter().filter(|s| s.name != "frontend") {
            assert_eq!(expected_shares(&policies, s), (0.0, 0.0), "{}", s.name);
        }
    }
}

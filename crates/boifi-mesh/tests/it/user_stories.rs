//! US1..US6 on the shared HA mesh (2 control-plane replicas on a 3-member etcd, behind a
//! balancing Envoy; `frontend` × 3, two gRPC services, `frontend` in a second namespace, and
//! a pod without service metadata).
#![allow(non_snake_case)]

use std::process::Command;
use std::time::Duration;

use boifi_mesh::http::RequestSpec;
use boifi_mesh::mesh::{probe_request, rollout};
use boifi_mesh::stats::quantile;

use crate::support::*;

/// US1: both control-plane replicas ready < 60 s; health 200; a policy applied with
/// `boifi-cli` is stored in etcd and listed; SIGKILL one replica → the CLI and the sidecars
/// keep being served.
#[test]
fn US1_control_plane_ha_ready_stored_in_etcd_and_survives_a_replica_kill() {
    let mut mesh = ha_mesh();
    let ready = mesh.control_plane_ready.expect("started with the mesh");
    eprintln!(
        "US1: control plane (2 replicas on etcd, behind the balancer) ready after {}",
        ms(ready)
    );
    assert!(ready < Duration::from_secs(60), "ready after {ready:?}");
    for i in 0..2 {
        let url = mesh.control_plane.replica_url(i).unwrap();
        assert_eq!(
            mesh.client.get(&url, "/v1/health").unwrap().status,
            200,
            "replica {i}"
        );
        assert_eq!(
            mesh.client.get(&url, "/v1/ready").unwrap().status,
            200,
            "replica {i}"
        );
    }

    let out = apply(
        &mesh,
        "metadata: {name: us1-frontend}\n\
         spec:\n  selector: {service: frontend, namespace: demo}\n  \
         rules: [{match: {headers: [{name: x-us1, exact: 'on'}]}, fault: {percentage: 100, abort: {httpStatus: 503}}}]\n",
    );
    assert!(out.contains("us1-frontend"), "{out}");
    let listed = mesh.cli(&["policy", "list", "-o", "json"]).unwrap();
    assert!(listed.contains("us1-frontend"), "{listed}");
    // Stored in etcd under /boifi/policies/<name>, with its selector.
    let endpoints = mesh.control_plane.etcd.as_ref().unwrap().endpoints_arg();
    let etcd = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoints,
            "get",
            "/boifi/policies/us1-frontend",
            "--print-value-only",
        ])
        .output()
        .unwrap();
    let stored = String::from_utf8_lossy(&etcd.stdout);
    assert!(
        stored.contains("us1-frontend") && stored.contains("frontend"),
        "etcd has: {stored}"
    );

    // SIGKILL replica 0: the CLI (through the Service address) and the sidecars are still served.
    mesh.control_plane.kill_replica(0);
    let listed = mesh.cli(&["policy", "list", "-o", "json"]).unwrap();
    assert!(listed.contains("us1-frontend"), "{listed}");
    let out = apply(
        &mesh,
        "metadata: {name: us1-after-kill}\n\
         spec:\n  selector: {service: frontend, namespace: demo}\n  \
         rules: [{match: {headers: [{name: x-us1, exact: 'after'}]}, fault: {percentage: 100, abort: {httpStatus: 502}}}]\n",
    );
    assert!(out.contains("us1-after-kill"), "{out}");
    let r = mesh.client.traffic(
        &mesh.ingress_url(),
        &mesh
            .request_for("frontend")
            .unwrap()
            .with_header("x-us1", "after"),
        30,
        4,
    );
    assert_eq!(r.status(502), 30, "{r:?}");
    mesh.control_plane.start_replica(0).unwrap();
}

/// US2: the filter is loaded in every sidecar < 60 s after start, each logs that it received
/// config; an update reaches every sidecar; propagation measured (seed 5 s, SC-003 30 s).
#[test]
fn US2_filter_loaded_everywhere_and_updates_propagate_to_every_sidecar() {
    let mesh = ha_mesh();
    for (spec, pod) in mesh.pods() {
        let loaded = pod.ready_after.unwrap();
        assert!(loaded < Duration::from_secs(60), "{}: {loaded:?}", pod.name);
        let log = pod.sidecar.as_ref().unwrap().log();
        assert!(
            log.contains("boifi: applied config version"),
            "{}.{} never logged a received config:\n{log}",
            pod.name,
            spec.namespace
        );
    }
    let slowest = mesh
        .pods()
        .filter_map(|(_, p)| p.ready_after)
        .max()
        .unwrap();
    eprintln!(
        "US2: filter loaded (exec → first 200 through the filter) in every sidecar within {}",
        ms(slowest)
    );

    const WRITES: usize = 30;
    let (all, per_sidecar) = measure_propagation(&mesh, WRITES);
    let p50 = quantile(&all, 0.5).unwrap();
    let p99 = quantile(&all, 0.99).unwrap();
    eprintln!(
        "US2: propagation write ack → every one of {} sidecars applied, over {} writes (etcd, 2 replicas): p50 {} p99 {} max {}; per sidecar p50 {} p99 {}",
        mesh.pods().count(),
        all.len(),
        ms(p50),
        ms(p99),
        ms(*all.last().unwrap()),
        ms(quantile(&per_sidecar, 0.5).unwrap()),
        ms(quantile(&per_sidecar, 0.99).unwrap()),
    );
    assert!(p99 < Duration::from_secs(5), "seed target 5 s: p99 {p99:?}");
    // The last write is in force everywhere: its header aborts with 418 at every sidecar.
    let last = format!("{}", WRITES - 1);
    for (spec, pod) in mesh.pods() {
        let a = mesh
            .request_pod(
                pod,
                &probe_request(spec).with_header("x-propagation-probe", &last),
            )
            .unwrap();
        assert!(
            a.fault() == Some("propagation-probe"),
            "{}: {a:?}",
            pod.name
        );
    }
}

/// US3: `selector.service: frontend` faults frontend and 0 of 1 000 requests to
/// productcatalogservice; `*` hits all; `namespace: demo` hits only `demo`.
#[test]
fn US3_selectors_fault_only_their_targets() {
    let mesh = ha_mesh();
    apply(
        &mesh,
        &every_path(
            "us3-frontend",
            "{service: frontend, namespace: demo}",
            "{percentage: 50, abort: {httpStatus: 503}}",
        ),
    );
    let catalog = send(&mesh, "productcatalogservice", 1000);
    assert_eq!(
        catalog.aborts(),
        0,
        "leakage to productcatalogservice: {catalog:?}"
    );
    assert_eq!(catalog.passed, 1000);
    let staging = send(&mesh, STAGING_FRONTEND, 300);
    assert_eq!(
        staging.aborts(),
        0,
        "leakage to frontend in staging: {staging:?}"
    );
    let frontend = send(&mesh, "frontend", 1000);
    assert_rate("US3 frontend 50%", frontend.aborts(), 1000, 0.5);
    assert_eq!(
        frontend.by_fault.keys().collect::<Vec<_>>(),
        ["us3-frontend"]
    );

    halt(&mesh);
    apply(
        &mesh,
        &every_path(
            "us3-everyone",
            "{service: '*'}",
            "{percentage: 100, abort: {httpStatus: 503}}",
        ),
    );
    for s in &mesh.services {
        let r = send(&mesh, &s.spec.key(), 50);
        assert_eq!(r.aborts(), 50, "`*` must hit {}: {r:?}", s.spec.key());
    }

    halt(&mesh);
    apply(
        &mesh,
        &every_path(
            "us3-demo-namespace",
            "{namespace: demo}",
            "{percentage: 100, abort: {httpStatus: 503}}",
        ),
    );
    for s in &mesh.services {
        let r = send(&mesh, &s.spec.key(), 50);
        let expected = if s.spec.namespace == "demo" { 50 } else { 0 };
        assert_eq!(
            r.aborts(),
            expected,
            "namespace demo policy on {}: {r:?}",
            s.spec.key()
        );
    }
}

/// US4: each sidecar resolves its own identity from metadata; a sidecar without service
/// metadata applies only wildcard policies.
#[test]
fn US4_identity_from_istio_metadata_and_wildcards_only_without_it() {
    let mesh = ha_mesh();
    // What each sidecar reported to the control plane is what its node metadata says.
    let status = policies_status(&mesh);
    let sidecars = status["sidecars"].as_array().unwrap();
    for (spec, pod) in mesh.pods() {
        let entry = sidecars
            .iter()
            .find(|s| s["pod"] == pod.name.as_str() && s["namespace"] == spec.namespace.as_str())
            .unwrap_or_else(|| panic!("{} is not in the status: {status}", pod.name));
        assert_eq!(entry["namespace"], spec.namespace.as_str(), "{entry}");
        if spec.service_metadata {
            assert_eq!(entry["service"], spec.name.as_str(), "{entry}");
        } else {
            assert!(entry["service"].is_null(), "{entry}");
        }
        let log = pod.sidecar.as_ref().unwrap().log();
        let line = if spec.service_metadata {
            format!(
                "boifi: identity service={} namespace={} pod={}",
                spec.name, spec.namespace, pod.name
            )
        } else {
            format!(
                "boifi: partial identity service=<unknown> namespace={} pod={}",
                spec.namespace, pod.name
            )
        };
        assert!(log.contains(&line), "{}: no `{line}` in:\n{log}", pod.name);
    }

    // The nameless pod ignores a policy naming the service it would have had, and a policy
    // naming its namespace's services one by one; it applies a wildcard one.
    apply(
        &mesh,
        &format!(
            "metadata: {{name: us4-named}}\n\
             spec:\n  selector: {{service: {NAMELESS}, namespace: demo}}\n  \
             rules: [{{match: {{path: {{prefix: /}}}}, fault: {{percentage: 100, abort: {{httpStatus: 503}}}}}}]\n"
        ),
    );
    let nameless_key = format!("{NAMELESS}.demo");
    let r = send(&mesh, &nameless_key, 100);
    assert_eq!(
        r.aborts(),
        0,
        "a named policy hit a pod without service metadata: {r:?}"
    );
    apply(
        &mesh,
        "metadata: {name: us4-wildcard}\n\
         spec:\n  selector: {service: '*'}\n  \
         rules: [{match: {headers: [{name: x-us4, exact: 'yes'}]}, fault: {percentage: 100, abort: {httpStatus: 504}}}]\n",
    );
    let spec = mesh
        .request_for(&nameless_key)
        .unwrap()
        .with_header("x-us4", "yes");
    let r = mesh.client.traffic(&mesh.ingress_url(), &spec, 50, 4);
    assert_eq!(r.by_fault.get("us4-wildcard"), Some(&50), "{r:?}");
}

/// US5: `frontend` × 3 with 30%: over 1 000 requests through the ingress the aggregate lands
/// within 4σ; a restarted replica receives the policies and the rate holds; a service scaled
/// to zero and back gets the current policies.
#[test]
fn US5_rate_holds_across_replicas_restarts_and_scaling() {
    let mut mesh = ha_mesh();
    apply(
        &mesh,
        &every_path(
            "us5-frontend",
            "{service: frontend, namespace: demo}",
            "{percentage: 30, abort: {httpStatus: 503}}",
        ),
    );
    let before = metric_by_pod(&mesh, "frontend", "hfi_faults_aborts_total");
    let r = send(&mesh, "frontend", 1000);
    assert_rate("US5 frontend × 3, 30%", r.aborts(), 1000, 0.3);
    let after = metric_by_pod(&mesh, "frontend", "hfi_faults_aborts_total");
    assert_eq!(
        r.by_pod.len(),
        3,
        "round robin over the 3 replicas: {:?}",
        r.by_pod
    );
    for (pod, n) in &after {
        assert!(
            n - before.get(pod).copied().unwrap_or(0) > 0,
            "{pod} injected nothing"
        );
    }

    let version = rollout(&mesh).unwrap().version;
    let restarted_in = mesh.restart_pod("frontend", 1).unwrap();
    let pod = &mesh.service("frontend").unwrap().pods[1];
    eprintln!("US5: {} replaced in {}", pod.name, ms(restarted_in));
    converge(&mesh);
    assert!(mesh.config_version(pod).unwrap() >= Some(version));
    let r = send(&mesh, "frontend", 1000);
    assert_rate("US5 after a replica restart", r.aborts(), 1000, 0.3);

    mesh.scale("frontend", 0).unwrap();
    assert_eq!(mesh.service("frontend").unwrap().running().count(), 0);
    mesh.scale("frontend", 3).unwrap();
    converge(&mesh);
    for pod in mesh.service("frontend").unwrap().running() {
        assert!(
            mesh.config_version(pod).unwrap() >= Some(version),
            "{}",
            pod.name
        );
    }
    let r = send(&mesh, "frontend", 1000);
    assert_rate(
        "US5 after scaling to 0 and back to 3",
        r.aborts(),
        1000,
        0.3,
    );
}

/// US6: every sidecar's `/stats/prometheus` shows `hfi_faults_aborts_total` /
/// `hfi_faults_delays_total` with the right counts; `/v1/policies/status` lists every
/// policy with its targets and, through either replica, every sidecar with its version.
#[test]
fn US6_sidecar_metrics_count_faults_and_status_shows_the_rollout() {
    let mesh = ha_mesh();
    apply(
        &mesh,
        "metadata: {name: us6-frontend-abort}\n\
         spec:\n  selector: {service: frontend, namespace: demo}\n  \
         rules: [{match: {path: {prefix: /}}, fault: {percentage: 40, abort: {httpStatus: 503}}}]\n\
         ---\n\
         metadata: {name: us6-catalog-delay}\n\
         spec:\n  selector: {service: productcatalogservice}\n  \
         rules: [{match: {path: {prefix: /}}, fault: {percentage: 100, delay: {fixed_delay_ms: 40}}}]\n",
    );
    // Each frontend pod, addressed directly: its counter moves by exactly the aborts it made.
    for pod in mesh.service("frontend").unwrap().running() {
        let before = mesh.metric(pod, "hfi_faults_aborts_total").unwrap();
        let r = mesh
            .client
            .traffic(&pod.inbound_url(), &RequestSpec::get("/"), 200, 8);
        let after = mesh.metric(pod, "hfi_faults_aborts_total").unwrap();
        assert_eq!(after - before, r.aborts() as u64, "{}: {r:?}", pod.name);
        assert!(r.aborts() > 0);
    }
    let catalog = &mesh.service("productcatalogservice").unwrap().pods[0];
    let before = mesh.metric(catalog, "hfi_faults_delays_total").unwrap();
    let r = send(&mesh, "productcatalogservice", 100);
    let after = mesh.metric(catalog, "hfi_faults_delays_total").unwrap();
    assert_eq!(after - before, 100);
    assert_eq!(
        r.slower_than(Duration::from_millis(40)),
        100,
        "{:?}",
        r.latencies.first()
    );
    assert_eq!(r.passed, 100);
    // Every sidecar exposes both counters under the seed's names.
    for (_, pod) in mesh.pods() {
        let text = mesh.prometheus(pod).unwrap();
        for name in ["hfi_faults_aborts_total", "hfi_faults_delays_total"] {
            assert!(text.contains(name), "{}: no {name} in {text}", pod.name);
        }
    }

    let status = policies_status(&mesh);
    let version = status["version"].as_u64().unwrap();
    let policies = status["policies"].as_array().unwrap();
    let abort = policies
        .iter()
        .find(|p| p["name"] == "us6-frontend-abort")
        .unwrap();
    assert_eq!(abort["targets"]["service"], "frontend");
    assert_eq!(abort["targets"]["namespace"], "demo");
    // Every known sidecar of frontend.demo (the registry also remembers replaced pods).
    let known_frontends = status["sidecars"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["service"] == "frontend" && s["namespace"] == "demo")
        .count();
    assert!(known_frontends >= 3);
    assert_eq!(abort["matching_sidecars"], known_frontends, "{abort}");
    let delay = policies
        .iter()
        .find(|p| p["name"] == "us6-catalog-delay")
        .unwrap();
    assert_eq!(delay["targets"]["service"], "productcatalogservice");
    assert_eq!(delay["targets"]["namespace"], "*");
    // Sidecar reports are shared through etcd: `boifi-cli status` through either replica alone
    // lists every running pod at the current version (after at most one 1 s flush).
    for i in 0..mesh.control_plane.replicas.len() {
        let url = mesh.control_plane.replica_url(i).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = boifi_mesh::mesh::run_cli(&url, &["status", "-o", "json"]).unwrap();
            let status: serde_json::Value = serde_json::from_str(&text).unwrap();
            let sidecars = status["sidecars"].as_array().unwrap();
            let missing: Vec<String> = mesh
                .pods()
                .filter(|(spec, pod)| {
                    !sidecars.iter().any(|s| {
                        s["pod"] == pod.name.as_str()
                            && s["namespace"] == spec.namespace.as_str()
                            && s["version"].as_u64() == Some(version)
                    })
                })
                .map(|(_, pod)| pod.name.clone())
                .collect();
            if missing.is_empty() {
                eprintln!(
                    "US6: status through replica {i} lists all {} running sidecars at version {version}",
                    mesh.pods().count()
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "replica {i} does not list {missing:?} at version {version}: {sidecars:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let cli = mesh.cli(&["status"]).unwrap();
    assert!(
        cli.contains("us6-frontend-abort") && cli.contains("us6-catalog-delay"),
        "{cli}"
    );
}

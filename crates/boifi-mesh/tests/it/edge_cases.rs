//! The seed's edge cases, on the shared HA mesh.
#![allow(non_snake_case)]

use std::time::{Duration, Instant};

use boifi_mesh::mesh::{probe_request, rollout, wait_applied};
use boifi_mesh::process::wait_for;

use crate::support::*;

/// Control plane unreachable at sidecar start → passthrough, then policies once it is back;
/// every control-plane replica restarted → the sidecars reconnect (with backoff) and get
/// the next update.
#[test]
fn EDGE_control_plane_down_at_sidecar_start_and_all_replicas_restarted() {
    let mut mesh = ha_mesh();
    apply(
        &mesh,
        "metadata: {name: edge-cart}\n\
         spec:\n  selector: {service: cartservice, namespace: demo}\n  \
         rules: [{match: {headers: [{name: x-edge, exact: '1'}]}, fault: {percentage: 100, abort: {httpStatus: 503, grpcStatus: 14}}}]\n",
    );
    let version = rollout(&mesh).unwrap().version;
    mesh.control_plane.kill_all();

    // The sidecars keep their policies while the control plane is away.
    let r = traffic_with_header(&mesh, "cartservice", ("x-edge", "1"), 20, 4);
    assert_eq!(r.by_fault.get("edge-cart"), Some(&20), "{r:?}");
    assert_eq!(r.by_grpc_status.get(&14), Some(&20), "{r:?}");

    // A new cartservice pod starts while no replica answers: it passes traffic through.
    mesh.restart_pod("cartservice", 0).unwrap();
    let cart = &mesh.service("cartservice").unwrap().pods[0];
    assert_eq!(mesh.config_version(cart).unwrap().unwrap_or(0), 0);
    let spec = probe_request(&mesh.service("cartservice").unwrap().spec).with_header("x-edge", "1");
    let a = mesh.request_pod(cart, &spec).unwrap();
    assert_eq!(
        (a.status, a.fault(), a.grpc_status()),
        (200, None, Some(0)),
        "{a:?}"
    );

    // Both replicas come back (policies are in etcd): every sidecar, the new one included,
    // holds the policies again; the failed polls show the backoff at work.
    // The sidecars go through rounds of their backoff (200 ms → 2 s) while nothing answers, so
    // the recovery below is a reconnect from backoff: each counts two more failed polls first.
    let failed_polls = |mesh: &boifi_mesh::Mesh| -> Vec<(String, u64)> {
        mesh.pods()
            .map(|(_, p)| {
                let failures = mesh.metric(p, "hfi_config_poll_failures_total").unwrap();
                (p.name.clone(), failures)
            })
            .collect()
    };
    let before = failed_polls(&mesh);
    let down = Instant::now();
    wait_for(
        "every sidecar to count two more failed polls",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let now = failed_polls(&mesh);
            let all = now.len() == before.len()
                && now.iter().zip(&before).all(|((_, n), (_, b))| *n >= b + 2);
            Ok(all.then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}: before {before:?}, now {:?}", failed_polls(&mesh)));
    eprintln!(
        "EDGE: every sidecar counted two more failed polls within {}",
        ms(down.elapsed())
    );
    let back = Instant::now();
    mesh.control_plane.start_all().unwrap();
    mesh.wait_control_plane_ready(Duration::from_secs(60))
        .unwrap();
    let applied = wait_applied(&mesh, version, back, Duration::from_secs(30)).unwrap();
    eprintln!(
        "EDGE: after a full control-plane restart every sidecar held version {version} again within {} of the replicas' start",
        ms(applied.values().max().copied().unwrap_or_default())
    );
    let cart = &mesh.service("cartservice").unwrap().pods[0];
    let a = mesh.request_pod(cart, &spec).unwrap();
    assert_eq!(a.fault(), Some("edge-cart"), "{a:?}");
    let failures: u64 = mesh
        .pods()
        .map(|(_, p)| mesh.metric(p, "hfi_config_poll_failures_total").unwrap())
        .sum();
    assert!(
        failures > 0,
        "no sidecar counted a failed poll while the control plane was down"
    );
    // And the next update reaches everyone: every sidecar, the new one included, applies it.
    apply(
        &mesh,
        "metadata: {name: edge-after-restart}\n\
         spec:\n  selector: {service: '*'}\n  \
         rules: [{match: {headers: [{name: x-edge, exact: '2'}]}, fault: {percentage: 100, abort: {httpStatus: 503}}}]\n",
    );
    let missed: Vec<String> = mesh
        .pods()
        .filter_map(|(service, pod)| {
            let spec = probe_request(service).with_header("x-edge", "2");
            let answer = mesh.request_pod(pod, &spec).unwrap();
            (answer.fault() != Some("edge-after-restart")).then(|| {
                format!(
                    "{}: status {}, fault {:?}",
                    pod.name,
                    answer.status,
                    answer.fault()
                )
            })
        })
        .collect();
    assert!(
        missed.is_empty(),
        "the update after the restart did not reach every sidecar: {missed:#?}"
    );
    assert!(mesh.pods().count() > 1, "no sidecars to reach");
}

/// A policy for a namespace that no longer has sidecars stays stored and inactive.
#[test]
fn EDGE_policy_for_a_namespace_without_sidecars_stays_stored_and_inactive() {
    let mesh = ha_mesh();
    assert_abort_everything_selects(&mesh, "edge-ghost-namespace", "{namespace: ghost}", |_| {
        false
    });
    let status = policies_status(&mesh);
    let ghost = status["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "edge-ghost-namespace")
        .unwrap_or_else(|| panic!("not stored: {status}"));
    assert_eq!(ghost["matching_sidecars"], 0, "{ghost}");
    assert_eq!(ghost["targets"]["namespace"], "ghost");
    let listed = mesh
        .cli(&["policy", "get", "edge-ghost-namespace", "-o", "json"])
        .unwrap();
    assert!(listed.contains("ghost"), "{listed}");
}

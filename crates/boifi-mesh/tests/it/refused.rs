//! A sidecar that refuses a set for a real reason is listed as refused, with the reason,
//! through either control-plane replica, while the others apply it: on the shared HA mesh
//! (2 replicas on a 3-member etcd), one of frontend's three sidecars runs the filter with
//! `max_rules: 1`, and a set with 2 rules for frontend goes out.

use std::time::{Duration, Instant};

use boifi_core::wire::{SidecarStatusEntry, StatusResponse};
use boifi_mesh::http::RequestSpec;
use boifi_mesh::mesh::{default_plugin_config, rollout, run_cli};
use boifi_mesh::process::wait_for;
use boifi_mesh::{Mesh, MeshError};

use crate::support::*;

/// The service whose sidecars the set is for, and the slot of the one configured apart.
const FRONTEND: &str = "frontend.demo";
const LIMITED_SLOT: usize = 0;

/// Policy `refused-probe` for frontend: one rule per `(header value, status)`, each aborting
/// every request that carries `x-refused-probe: <value>` (other traffic is left alone).
fn probe_policy(rules: &[(&str, u16)]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|(value, status)| {
            format!(
                "{{match: {{headers: [{{name: x-refused-probe, exact: {value}}}]}}, \
                 fault: {{percentage: 100, abort: {{httpStatus: {status}}}}}}}"
            )
        })
        .collect();
    format!(
        "metadata: {{name: refused-probe}}\n\
         spec:\n  selector: {{service: frontend, namespace: demo}}\n  \
         rules: [{}]\n",
        rules.join(", ")
    )
}

/// What one replica's status must say of the running sidecars: the limited one refused
/// `version` with `reason` (or applied it, `reason` `None`), every other one applied it.
fn rollout_problem(
    mesh: &Mesh,
    status: &StatusResponse,
    version: u64,
    reason: Option<&str>,
) -> Option<String> {
    if status.version != version {
        return Some(format!("at config version {}", status.version));
    }
    let limited = &mesh.service(FRONTEND).unwrap().pods[LIMITED_SLOT].name;
    let entry = |pod: &str, namespace: &str| -> Option<&SidecarStatusEntry> {
        status
            .sidecars
            .iter()
            .find(|s| s.pod.as_deref() == Some(pod) && s.namespace.as_deref() == Some(namespace))
    };
    for (spec, pod) in mesh.pods() {
        let Some(s) = entry(&pod.name, &spec.namespace) else {
            return Some(format!("{} is not listed", pod.name));
        };
        let refused = s.refused.as_ref().map(|r| (r.version, r.reason.as_str()));
        let expected = match reason {
            Some(reason) if &pod.name == limited => ("refused", Some((version, reason))),
            _ => ("applied", None),
        };
        if (s.state.as_str(), refused) != expected {
            return Some(format!(
                "{} is {} (refused: {refused:?}), not {expected:?}",
                pod.name, s.state
            ));
        }
    }
    None
}

/// Waits until `/v1/policies/status` and `boifi-cli status -o json` through each replica
/// alone say what [`rollout_problem`] checks; the reports are shared through etcd.
fn wait_rollout_through_each_replica(mesh: &Mesh, version: u64, reason: Option<&str>) {
    for i in 0..mesh.control_plane.replicas.len() {
        let url = mesh.control_plane.replica_url(i).unwrap();
        let mut last = String::new();
        let seen = wait_for(
            &format!("replica {i} to list the rollout of config version {version}"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let api = status_at(mesh, &url)?;
                let cli: StatusResponse =
                    serde_json::from_str(&run_cli(&url, &["status", "-o", "json"])?).map_err(
                        |e| MeshError::Http {
                            url: format!("boifi-cli status through {url}"),
                            reason: e.to_string(),
                        },
                    )?;
                let problem = rollout_problem(mesh, &api, version, reason)
                    .map(|p| format!("/v1/policies/status: {p}"))
                    .or_else(|| {
                        rollout_problem(mesh, &cli, version, reason)
                            .map(|p| format!("boifi-cli status: {p}"))
                    });
                Ok(match problem {
                    Some(p) => {
                        last = p;
                        None
                    }
                    None => Some(()),
                })
            },
        );
        if let Err(e) = seen {
            panic!("{e}; last: {last}");
        }
    }
}

/// Whether a request with `x-refused-probe: value` straight to each frontend pod was aborted
/// with `status` (`None`: passed), in slot order.
fn probe_each_frontend(mesh: &Mesh, value: &str) -> Vec<u16> {
    let spec = RequestSpec::get("/").with_header("x-refused-probe", value);
    mesh.service(FRONTEND)
        .unwrap()
        .running()
        .map(|pod| mesh.request_pod(pod, &spec).unwrap().status)
        .collect()
}

#[test]
fn a_sidecar_over_its_max_rules_is_listed_refused_through_either_replica() {
    let mut mesh = ha_mesh();
    let started = Instant::now();
    let mut limited = default_plugin_config();
    limited["max_rules"] = serde_json::json!(1);
    let restart = mesh
        .restart_pod_with_plugin_config(FRONTEND, LIMITED_SLOT, Some(limited))
        .unwrap();
    converge(&mesh);

    // Two rules for each of frontend's three sidecars: over the limit of one of them.
    apply_without_waiting(&mesh, &probe_policy(&[("one", 503), ("two", 504)]));
    let version = rollout(&mesh).unwrap().version;
    let reason = format!(
        "config version {version} has 2 rules for this sidecar, over its limit of 1 (max_rules)"
    );
    wait_rollout_through_each_replica(&mesh, version, Some(&reason));
    // The refused sidecar keeps what it had (nothing); the others serve the set.
    assert_eq!(probe_each_frontend(&mesh, "two"), [200, 504, 504]);
    // The human view names it and says why.
    for i in 0..mesh.control_plane.replicas.len() {
        let url = mesh.control_plane.replica_url(i).unwrap();
        let text = run_cli(&url, &["status"]).unwrap();
        let pod = &mesh.service(FRONTEND).unwrap().pods[LIMITED_SLOT].name;
        assert!(
            text.lines()
                .any(|l| l.starts_with(pod.as_str()) && l.contains("REFUSED")),
            "replica {i}: {text}"
        );
        assert!(text.contains(&reason), "replica {i}: {text}");
    }

    // Within the limit again: all three apply it.
    apply_without_waiting(&mesh, &probe_policy(&[("one", 503)]));
    let version = rollout(&mesh).unwrap().version;
    wait_rollout_through_each_replica(&mesh, version, None);
    assert_eq!(probe_each_frontend(&mesh, "one"), [503, 503, 503]);
    // The next scenario's reset restarts the pod once more with the mesh's configuration.
    eprintln!(
        "refused: the scenario took {:.1} s on the shared mesh (its pod restart {:.1} s)",
        started.elapsed().as_secs_f64(),
        restart.as_secs_f64()
    );
}

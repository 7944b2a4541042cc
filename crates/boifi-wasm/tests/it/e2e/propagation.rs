//! A policy change reaches the filter through the long-poll in well under a second.

use super::*;
use serde_json::json;

#[test]
fn policy_changes_reach_the_filter_in_under_a_second() {
    let p = Prereqs::find();
    let _serial = serial();
    let mesh = Mesh::start(p);
    let envoy = mesh.envoy(Workload::new("frontend", "demo"));
    let mut c = envoy.client();
    // Let the poller settle into its long-poll (first answer received, next request waiting).
    mesh.server.put_policy(&policy(
        "warmup",
        json!({"service": "frontend"}),
        "/warmup",
        abort(100, 503),
    ));
    assert!(wait_for_status(&mut c, "/warmup", 503, Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_millis(300));

    let mut samples = Vec::new();
    for round in 0..5 {
        let status = [500, 502, 503, 504, 418][round];
        let start = Instant::now();
        mesh.server.put_policy(&policy(
            "moving",
            json!({"service": "frontend"}),
            "/moving",
            abort(100, status),
        ));
        let seen = wait_for_status(&mut c, "/moving", status, Duration::from_secs(5));
        assert!(seen.is_some(), "round {round}: status {status} never seen");
        samples.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    mesh.server.delete_policy("moving");
    assert!(wait_for_status(&mut c, "/moving", 200, Duration::from_secs(5)).is_some());
    samples.push(start.elapsed());

    samples.sort();
    let ms: Vec<String> = samples
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    eprintln!(
        "propagation (write acknowledged → first faulted request), ms: {}",
        ms.join(", ")
    );
    let worst = samples[samples.len() - 1];
    assert!(
        worst < Duration::from_secs(1),
        "slowest propagation {worst:?}"
    );
}

//! A policy change reaches the filter through the long-poll in well under a second, and every
//! worker of the Envoy within the propagation budget (250 ms).

use super::*;
use serde_json::json;

pub fn policy_changes_reach_the_filter_in_under_a_second(filter: FilterKind) {
    let mesh = Mesh::start(filter);
    let envoy = mesh.frontend_with_workers(2);
    let mut c = envoy.client();
    // Connections spread over both workers: the poller's VM and one that adopts on its tick.
    let mut others: Vec<_> = (0..6).map(|_| envoy.client()).collect();
    // Let the poller settle into its long-poll (first answer received, next request waiting).
    mesh.put(
        "warmup",
        json!({"service": "frontend"}),
        "/warmup",
        abort(100, 503),
    );
    assert!(wait_for_status(&mut c, "/warmup", 503, Duration::from_secs(5)).is_some());
    assert!(mesh.server.wait_for_a_waiting_poll(Duration::from_secs(5)));

    let mut samples = Vec::new();
    let mut everywhere = Vec::new();
    for round in 0..5 {
        let status = [500, 502, 503, 504, 418][round];
        let start = Instant::now();
        mesh.put(
            "moving",
            json!({"service": "frontend"}),
            "/moving",
            abort(100, status),
        );
        let seen = wait_for_status(&mut c, "/moving", status, Duration::from_secs(5));
        assert!(seen.is_some(), "round {round}: status {status} never seen");
        samples.push(start.elapsed());
        for o in &mut others {
            let seen = wait_for_status(o, "/moving", status, Duration::from_secs(1));
            assert!(seen.is_some(), "round {round}: a worker never saw {status}");
        }
        everywhere.push(start.elapsed());
        // The next round starts with the poller's next long-poll waiting again.
        assert!(mesh.server.wait_for_a_waiting_poll(Duration::from_secs(5)));
    }
    let start = Instant::now();
    mesh.server.delete_policy("moving");
    assert!(wait_for_status(&mut c, "/moving", 200, Duration::from_secs(5)).is_some());
    samples.push(start.elapsed());

    assert_slowest_below(
        "write acknowledged → first faulted request",
        &mut samples,
        Duration::from_secs(1),
    );
    assert_slowest_below(
        "write acknowledged → every connection of both workers faulted",
        &mut everywhere,
        Duration::from_millis(250),
    );
}

/// Prints the sorted samples and asserts the slowest is below `budget`.
fn assert_slowest_below(what: &str, samples: &mut [Duration], budget: Duration) {
    samples.sort();
    let ms: Vec<String> = samples
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    eprintln!("propagation ({what}), ms: {}", ms.join(", "));
    let worst = samples[samples.len() - 1];
    assert!(worst < budget, "{what}: slowest {worst:?}");
}

//! Fail-open and staying useful without the control plane.

use super::*;
use crate::harness::upstream::Upstream;
use boifi_testkit::ports::free_port;
use serde_json::json;

pub fn control_plane_down_at_start_passes_traffic_and_policies_apply_once_it_appears(
    filter: FilterKind,
) {
    let p = Prereqs::find(filter);
    let _serial = serial();
    let upstream = Upstream::start();
    let cp_port = free_port().unwrap();
    let mut o = p.envoy_options(Workload::new("frontend", "demo"), cp_port, upstream.port);
    o.plugin_config = plugin_config();
    let envoy = Envoy::start(&p.envoy, &o);
    let mut c = envoy.client();
    assert!(burst(&mut c, "/", 20).iter().all(|r| r.status == 200));
    // The poller keeps retrying (backoff 200 ms → 1 s here).
    let retried = crate::harness::wait_for(Duration::from_secs(5), || {
        envoy
            .prometheus_value("hfi_config_poll_failures_total")
            .filter(|n| *n >= 3.0)
    });
    assert!(
        retried.is_some(),
        "the filter must keep retrying\n{}",
        envoy.log()
    );
    assert!(burst(&mut c, "/", 20).iter().all(|r| r.status == 200));

    let server = Server::start(&p.server, cp_port);
    let start = Instant::now();
    server.put_policy(&policy(
        "late",
        json!({"service": "frontend"}),
        "/late",
        abort(100, 503),
    ));
    let applied = wait_for_status(&mut c, "/late", 503, Duration::from_secs(5));
    assert!(applied.is_some(), "policy never applied\n{}", envoy.log());
    eprintln!(
        "control plane appeared after Envoy: policy applied {:.0} ms after the write (backoff max 1 s)",
        start.elapsed().as_secs_f64() * 1000.0
    );
}

pub fn faults_continue_from_the_cache_when_the_control_plane_dies_and_still_expire(
    filter: FilterKind,
) {
    let mut mesh = Mesh::start(filter);
    let envoy = mesh.frontend();
    let mut c = envoy.client();
    mesh.put(
        "keep",
        json!({"service": "frontend"}),
        "/keep",
        abort(100, 503),
    );
    let written = Instant::now();
    mesh.put(
        "short",
        json!({"service": "frontend"}),
        "/short",
        json!({"percentage": 100, "duration_seconds": 3, "abort": {"httpStatus": 500}}),
    );
    assert!(wait_for_status(&mut c, "/short", 500, Duration::from_secs(2)).is_some());

    mesh.server.kill();
    let failures_at_kill = envoy
        .prometheus_value("hfi_config_poll_failures_total")
        .unwrap_or(0.0);
    assert!(
        burst(&mut c, "/keep", 20).iter().all(|r| r.status == 503),
        "cache must survive"
    );
    let expired = wait_for_status(&mut c, "/short", 200, Duration::from_secs(6));
    let expired_after = written.elapsed();
    assert!(expired.is_some(), "the 3 s policy never expired");
    assert!(
        expired_after >= Duration::from_millis(2_900)
            // Upper bound loose: a loaded CI machine may stall a request for a while.
            && expired_after <= Duration::from_millis(4_500),
        "expired after {expired_after:?}"
    );
    assert!(burst(&mut c, "/keep", 20).iter().all(|r| r.status == 503));
    // The active-policies gauge follows the expiry without a new version.
    let gauge = crate::harness::wait_for(Duration::from_secs(6), || {
        envoy
            .prometheus_value("hfi_policies_active")
            .filter(|n| (*n - 1.0).abs() < 0.5)
    });
    assert!(gauge.is_some(), "{}", envoy.prometheus());
    let retrying = crate::harness::wait_for(Duration::from_secs(3), || {
        envoy
            .prometheus_value("hfi_config_poll_failures_total")
            .filter(|n| *n > failures_at_kill)
    });
    assert!(
        retrying.is_some(),
        "the filter must retry the dead control plane"
    );
}

/// A policy with a heartbeat bound (2 s) stops within that bound of the control plane's death,
/// while a policy without one keeps firing from the cache (fail-open).
pub fn a_heartbeat_bound_stops_its_policy_when_the_control_plane_dies_and_only_it(
    filter: FilterKind,
) {
    const BOUND: Duration = Duration::from_secs(2);
    let mut mesh = Mesh::start(filter);
    let envoy = mesh.frontend();
    let mut c = envoy.client();
    mesh.put(
        "open",
        json!({"service": "frontend"}),
        "/open",
        abort(100, 503),
    );
    let mut guarded = policy(
        "guarded",
        json!({"service": "frontend"}),
        "/guarded",
        abort(100, 500),
    );
    guarded["spec"]["heartbeat_seconds"] = json!(2);
    let stored = mesh.server.put_policy(&guarded);
    assert!(
        stored.status < 300,
        "the policy was refused: {}",
        String::from_utf8_lossy(&stored.body)
    );
    for (path, status) in [("/guarded", 500), ("/open", 503)] {
        let applied = wait_for_status(&mut c, path, status, Duration::from_secs(3));
        assert!(applied.is_some(), "{path} never applied\n{}", envoy.log());
    }

    // Every control plane replica is killed (here the only one).
    mesh.server.kill();
    let killed = Instant::now();
    assert!(
        burst(&mut c, "/guarded", 5).iter().all(|r| r.status == 500),
        "the guarded policy stopped before its bound"
    );
    let stopped = wait_for_status(&mut c, "/guarded", 200, BOUND * 2);
    let stopped_after = killed.elapsed();
    assert!(
        stopped.is_some(),
        "the guarded policy kept firing\n{}",
        envoy.log()
    );
    eprintln!(
        "heartbeat bound {} ms: the guarded policy stopped {} ms after the control plane died",
        BOUND.as_millis(),
        stopped_after.as_millis()
    );
    // Heard at most at the kill, so the bound lapses within 2 s of it; 250 ms for the worker
    // to adopt the reduced set (the propagation budget).
    assert!(
        stopped_after <= BOUND + Duration::from_millis(250),
        "stopped {stopped_after:?} after the kill, over the bound"
    );
    assert!(burst(&mut c, "/guarded", 20)
        .iter()
        .all(|r| r.status == 200));
    assert!(
        burst(&mut c, "/open", 20).iter().all(|r| r.status == 503),
        "the unguarded policy must keep firing"
    );
    let lapses = crate::harness::wait_for(Duration::from_secs(2), || {
        envoy
            .prometheus_value("hfi_config_heartbeat_lapses_total")
            .filter(|n| *n >= 1.0)
    });
    assert!(lapses.is_some(), "{}", envoy.prometheus());
}

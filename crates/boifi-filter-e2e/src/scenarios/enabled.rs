//! `spec.enabled: false` is stored and reaches the sidecar, but the filter never fires it
//! (the core's compile leaves it out); flipping it to `true` fires within the propagation
//! budget (1 s, as for any change).

use super::*;
use serde_json::json;

pub fn a_disabled_policy_never_fires_and_enabling_it_fires_within_the_budget(filter: FilterKind) {
    let mesh = Mesh::start(filter);
    let envoy = mesh.frontend();
    let mut c = envoy.client();

    let mut gated = policy(
        "gated",
        json!({"service": "frontend"}),
        "/gated",
        abort(100, 503),
    );
    gated["spec"]["enabled"] = json!(false);
    mesh.server.put_policy(&gated);
    // A marker written after it: once the marker fires, the filter holds a config version that
    // contains the disabled policy too.
    mesh.put(
        "marker",
        json!({"service": "frontend"}),
        "/marker",
        abort(100, 418),
    );
    assert!(
        wait_for_status(&mut c, "/marker", 418, Duration::from_secs(5)).is_some(),
        "the marker never reached the filter"
    );
    let responses = burst(&mut c, "/gated", 300);
    assert_eq!(faulted(&responses), 0, "a disabled policy fired");
    assert!(responses.iter().all(|r| r.status == 200));

    gated["spec"]["enabled"] = json!(true);
    let start = Instant::now();
    mesh.server.put_policy(&gated);
    let seen = wait_for_status(&mut c, "/gated", 503, Duration::from_secs(5));
    let took = start.elapsed();
    assert!(seen.is_some(), "enabling the policy never made it fire");
    assert!(took < Duration::from_secs(1), "enabling took {took:?}");
    let responses = burst(&mut c, "/gated", 50);
    assert_eq!(faulted(&responses), 50);
}

//! Two sidecars with different node metadata, one control plane: each applies only the
//! policies whose selector matches its own identity.

use super::*;
use serde_json::json;

pub fn policies_reach_only_the_sidecars_they_select(filter: FilterKind) {
    let mesh = Mesh::start(filter);
    let frontend = mesh.frontend();
    let mut cart_workload = Workload::new("cart", "shop");
    cart_workload.labels.push(("tier".into(), "backend".into()));
    let cart = mesh.envoy(cart_workload);

    mesh.put(
        "frontend-half",
        json!({"service": "frontend", "namespace": "demo"}),
        "/svc",
        abort(50, 503),
    );
    mesh.put(
        "everyone",
        json!({"service": "*", "namespace": "*"}),
        "/all",
        abort(100, 500),
    );
    mesh.put(
        "demo-namespace",
        json!({"service": "*", "namespace": "demo"}),
        "/ns",
        abort(100, 502),
    );
    mesh.put(
        "backend-tier",
        json!({"service": "*", "namespace": "*", "labels": {"tier": "backend"}}),
        "/tier",
        abort(100, 504),
    );

    let (mut fc, mut cc) = (frontend.client(), cart.client());
    // All four were written before these waits, and each sidecar applies one set at a time.
    assert!(wait_for_status(&mut fc, "/ns", 502, Duration::from_secs(5)).is_some());
    assert!(wait_for_status(&mut cc, "/tier", 504, Duration::from_secs(5)).is_some());

    let n = 400;
    let front = burst(&mut fc, "/svc", n);
    assert!(front.iter().all(|r| r.status == 503 || r.status == 200));
    let front_faults = faulted(&front);
    assert_within_4_sigma(front_faults, n, 0.5, "frontend /svc at 50%");
    assert!(front
        .iter()
        .filter(|r| r.status == 503)
        .all(|r| r.header("x-boifi-fault") == Some("frontend-half")));
    assert_eq!(
        faulted(&burst(&mut cc, "/svc", n)),
        0,
        "cart must not get frontend's policy"
    );

    for (client, name) in [(&mut fc, "frontend"), (&mut cc, "cart")] {
        let r = burst(client, "/all", 20);
        assert!(
            r.iter().all(|r| r.status == 500),
            "{name}: wildcard policy must hit"
        );
        assert!(r
            .iter()
            .all(|r| r.header("x-boifi-fault") == Some("everyone")));
    }
    assert!(burst(&mut fc, "/ns", 20).iter().all(|r| r.status == 502));
    assert_eq!(
        faulted(&burst(&mut cc, "/ns", 20)),
        0,
        "cart is in namespace shop"
    );
    assert!(burst(&mut cc, "/tier", 20).iter().all(|r| r.status == 504));
    assert_eq!(
        faulted(&burst(&mut fc, "/tier", 20)),
        0,
        "frontend has no tier label"
    );
    eprintln!("targeting: frontend /svc at 50%: {front_faults} of {n} aborted; cart: 0");
}

//! Fault campaign (issue 8): the control plane fully down for 30 s under traffic. Through the
//! whole outage, on a mesh of real Envoy sidecars: no request fails because of boifi (plain
//! traffic passes untouched, with no transport error), the configured faults keep happening
//! from the sidecars' cached policies, and a policy with `duration_seconds` stops at its
//! `expires_at` although no control plane is there to say so. Then the control plane comes
//! back and the sidecars follow the next change.
#![allow(non_snake_case)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boifi_mesh::Topology;

use crate::support::*;

const OUTAGE: Duration = Duration::from_secs(30);
/// Tolerance around `expires_at` (same machine clock; a request in flight at the instant).
const EXPIRY_SLACK_MS: u64 = 300;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn RELIABILITY_control_plane_down_30s_under_traffic_fails_nothing_and_expiry_holds() {
    let _machine = exclusive();
    let mut mesh = start(options(
        Topology::online_boutique()
            .leaves()
            .only(&["frontend", "cartservice"]),
    ));
    apply(
        &mesh,
        "metadata: {name: outage-keep}\n\
         spec:\n  selector: {service: frontend, namespace: demo}\n  \
         rules: [{match: {headers: [{name: x-outage, exact: keep}]}, fault: {percentage: 100, abort: {httpStatus: 503}}}]\n",
    );
    apply(
        &mesh,
        "metadata: {name: outage-expire}\n\
         spec:\n  selector: {service: '*'}\n  \
         rules: [{match: {headers: [{name: x-outage, exact: expire}]}, fault: {percentage: 100, duration_seconds: 12, abort: {httpStatus: 500}}}]\n",
    );
    let answer = mesh
        .client
        .get(&mesh.control_plane.url(), "/v1/policies/outage-expire")
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let expires_at = doc["status"]["expires_at_ms"].as_u64().unwrap();

    mesh.control_plane.kill_all();
    let down = Instant::now();
    let mut rounds = 0;
    let (mut plain, mut kept, mut before_expiry, mut after_expiry) = (0, 0, 0, 0);
    while down.elapsed() < OUTAGE {
        for service in ["frontend", "cartservice"] {
            // Plain traffic: nothing boifi did, no transport error (`send` asserts none).
            let r = send(&mesh, service, 40);
            assert_eq!(r.aborts(), 0, "{service} during the outage: {r:?}");
            assert_eq!(r.passed, r.requests, "{service} during the outage: {r:?}");
            plain += r.requests;
        }
        let keep = mesh
            .request_for("frontend")
            .unwrap()
            .with_header("x-outage", "keep");
        let r = mesh.client.traffic(&mesh.ingress_url(), &keep, 20, 4);
        assert_eq!(r.errors, 0, "{r:?}");
        assert_eq!(
            r.by_fault.get("outage-keep"),
            Some(&20),
            "cached fault lost: {r:?}"
        );
        kept += r.requests;

        let expire = mesh
            .request_for("cartservice")
            .unwrap()
            .with_header("x-outage", "expire");
        let sent_at = now_ms();
        let r = mesh.client.traffic(&mesh.ingress_url(), &expire, 20, 4);
        let done_at = now_ms();
        assert_eq!(r.errors, 0, "{r:?}");
        if done_at + EXPIRY_SLACK_MS < expires_at {
            assert_eq!(
                r.by_fault.get("outage-expire"),
                Some(&20),
                "stopped early: {r:?}"
            );
            before_expiry += r.requests;
        } else if sent_at > expires_at + EXPIRY_SLACK_MS {
            assert_eq!(r.aborts(), 0, "still firing after expires_at: {r:?}");
            assert_eq!(r.passed, r.requests, "{r:?}");
            after_expiry += r.requests;
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        before_expiry > 0 && after_expiry > 0,
        "expiry not observed on both sides"
    );

    // The control plane returns: the sidecars follow the next change.
    mesh.control_plane.start_all().unwrap();
    mesh.wait_control_plane_ready(Duration::from_secs(60))
        .unwrap();
    apply(
        &mesh,
        "metadata: {name: outage-keep}\n\
         spec:\n  selector: {service: frontend, namespace: demo}\n  \
         rules: [{match: {headers: [{name: x-outage, exact: keep}]}, fault: {percentage: 100, abort: {httpStatus: 418}}}]\n",
    );
    let keep = mesh
        .request_for("frontend")
        .unwrap()
        .with_header("x-outage", "keep");
    let r = mesh.client.traffic(&mesh.ingress_url(), &keep, 10, 2);
    assert_eq!(r.status(418), 10, "{r:?}");
    eprintln!(
        "outage campaign: control plane down {:?}: {rounds} rounds, {plain} plain requests all passed, \
         {kept} cached faults all applied, expiring policy fired on {before_expiry} and on none of {after_expiry} after expires_at",
        OUTAGE
    );
}

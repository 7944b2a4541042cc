//! An Envoy configured as an Istio ambient waypoint (the filter on the Istio-named chains of
//! `main_internal`, [`crate::harness::envoy::EnvoyOptions::waypoint`]) serving five services:
//! the target service is decided per request, from the chain the request arrived on.

use super::*;
use crate::harness::envoy::WAYPOINT_SERVICE_HEADER;
use boifi_core::identity::{GATEWAY_CLASS_LABEL, WAYPOINT_GATEWAY_CLASS};

const SERVICES: [&str; 5] = [
    "cartservice",
    "productcatalogservice",
    "currencyservice",
    "paymentservice",
    "shippingservice",
];

/// Requests per service.
const N: usize = 200;

/// The waypoint of namespace `shop`. Its pod carries Istio's waypoint label, so the filter is in
/// shared-proxy mode. Its workload is named like the first service so that a control plane that
/// sends a proxy the policies selecting its own name (before the shared-proxy selection of
/// `/v1/config`) sends it the cart policy too: what the filter then does with it per request is
/// what this test checks.
fn waypoint(mesh: &Mesh) -> Envoy {
    let mut workload = Workload::new(SERVICES[0], "shop");
    workload
        .labels
        .push((GATEWAY_CLASS_LABEL.into(), WAYPOINT_GATEWAY_CLASS.into()));
    let mut o = mesh.options(workload);
    o.waypoint = SERVICES.iter().map(|s| s.to_string()).collect();
    o.concurrency = 2;
    Envoy::start(&mesh.prereqs.envoy, &o)
}

fn send(client: &mut Client, service: &str) -> Response {
    client
        .request("GET", "/", &[(WAYPOINT_SERVICE_HEADER, service)], b"")
        .unwrap()
}

/// Waits until a request for `service` gets `status`.
fn wait_for(client: &mut Client, service: &str, status: u16) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if send(client, service).status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

pub fn a_waypoint_faults_the_service_a_policy_selects_and_a_wildcard_every_service(
    filter: FilterKind,
) {
    let mesh = Mesh::start(filter);
    let envoy = waypoint(&mesh);
    let mut client = envoy.client();
    for service in SERVICES {
        assert_eq!(send(&mut client, service).status, 200, "{service}");
    }

    mesh.put(
        "cart-abort",
        json!({"service": "cartservice", "namespace": "shop"}),
        "/",
        abort(100, 503),
    );
    assert!(wait_for(&mut client, "cartservice", 503), "{}", envoy.log());
    for service in SERVICES {
        let responses: Vec<Response> = (0..N).map(|_| send(&mut client, service)).collect();
        let faults = faulted(&responses);
        if service == "cartservice" {
            assert_eq!(faults, N, "every cart request is aborted");
            assert!(responses
                .iter()
                .all(|r| r.status == 503 && r.header("x-boifi-fault") == Some("cart-abort")));
        } else {
            assert_eq!(faults, 0, "{service} must not get cart's policy");
            assert!(responses.iter().all(|r| r.status == 200), "{service}");
        }
    }

    mesh.put(
        "shop-all",
        json!({"service": "*", "namespace": "shop"}),
        "/",
        abort(100, 502),
    );
    assert!(
        wait_for(&mut client, "productcatalogservice", 502),
        "{}",
        envoy.log()
    );
    for service in SERVICES {
        let responses: Vec<Response> = (0..N).map(|_| send(&mut client, service)).collect();
        assert_eq!(faulted(&responses), N, "`service: \"*\"` faults {service}");
    }
}

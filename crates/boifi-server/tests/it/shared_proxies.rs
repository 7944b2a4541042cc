//! `/v1/config` and status for shared proxies (Istio ambient waypoints, ingress gateways),
//! spoken as plain HTTP: a waypoint is sent the policies of its namespaces and `*`, a gateway
//! every policy, neither one that selects pods; the long-poll holds and wakes them as it does
//! sidecars; status lists them apart with what they serve.

use std::time::{Duration, Instant};

use boifi_core::identity::ProxyKind;
use boifi_core::wire::{compact, ConfigResponse, StatusResponse};
use boifi_server::auth::Auth;
use reqwest::StatusCode;

use crate::harness::{self, InProcess};

/// A policy `name` (an abort of every request) with `selector` (JSON).
fn policy(name: &str, selector: &str) -> String {
    format!(
        r#"{{"metadata": {{"name": "{name}"}},
            "spec": {{"selector": {selector},
                      "rules": [{{"match": {{"path": {{"prefix": "/"}}}},
                                  "fault": {{"percentage": 100, "abort": {{"httpStatus": 503}}}}}}]}}}}"#
    )
}

async fn create(server: &InProcess, name: &str, selector: &str) {
    harness::create_at(
        &server.client,
        server.url("/v1/policies/create"),
        policy(name, selector),
    )
    .await;
}

/// The waypoint `waypoint-7d9f` of namespace `demo`, with `extra` query parameters.
fn waypoint(extra: &str) -> String {
    format!("/v1/config?service=waypoint&namespace=demo&pod=waypoint-7d9f&proxy=waypoint{extra}")
}

/// The gateway `ingress-5c8b` in `istio-system`, with `extra` query parameters.
fn gateway(extra: &str) -> String {
    format!(
        "/v1/config?service=istio-ingressgateway&namespace=istio-system&pod=ingress-5c8b&proxy=gateway{extra}"
    )
}

/// The answer to `path` (JSON): its version and the names of its policies.
async fn names(server: &InProcess, path: &str) -> (u64, Vec<String>) {
    let r = server.get(path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let answer: ConfigResponse = r.json().await.unwrap();
    let names = answer
        .policies
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    (answer.version, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waypoint_gets_its_namespaces_policies_and_a_gateway_all_but_the_pod_selecting_ones() {
    let server = InProcess::start(Auth::open()).await;
    create(
        &server,
        "cart-demo",
        r#"{"service": "cart", "namespace": "demo"}"#,
    )
    .await;
    create(&server, "every-service", "{}").await;
    create(&server, "shop-all", r#"{"namespace": "shop"}"#).await;
    create(&server, "other-all", r#"{"namespace": "other"}"#).await;
    create(
        &server,
        "demo-canary",
        r#"{"namespace": "demo", "labels": {"version": "v2"}}"#,
    )
    .await;
    let all_but_canary = ["cart-demo", "every-service", "other-all", "shop-all"];

    // Its own namespace and `*`, whatever service the selector names.
    let (version, own) = names(&server, &waypoint("")).await;
    assert_eq!(own, ["cart-demo", "every-service"]);
    // A waypoint serving `shop` too gets shop's policies; `other` stays out.
    let (_, two) = names(&server, &waypoint("&namespaces=shop")).await;
    assert_eq!(two, ["cart-demo", "every-service", "shop-all"]);
    let (_, three) = names(&server, &waypoint("&namespaces=shop,other&destinations=5")).await;
    assert_eq!(three, all_but_canary);
    // A gateway gets every policy but the one that selects pods.
    let (_, at_gateway) = names(&server, &gateway("&destinations=3")).await;
    assert_eq!(at_gateway, all_but_canary);
    // A sidecar of cart v2 in demo still gets what its selector matches, labels included.
    let (_, sidecar) = names(
        &server,
        "/v1/config?service=cart&namespace=demo&pod=cart-1&labels=version=v2",
    )
    .await;
    assert_eq!(sidecar, ["cart-demo", "demo-canary", "every-service"]);
    // The compact answer the filters read holds the same policies.
    let r = server
        .get(&waypoint(
            "&namespaces=shop&encoding=compact&compact_version=3",
        ))
        .await;
    let compact = compact::decode(&r.bytes().await.unwrap()).unwrap();
    let compact_names: Vec<&str> = compact.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(compact_names, ["cart-demo", "every-service", "shop-all"]);

    // The long-poll: held on the version it applied, 304 after the wait ...
    let held = waypoint(&format!(
        "&namespaces=shop&destinations=5&version={version}&wait=300ms"
    ));
    let started = Instant::now();
    let r = server.get(&held).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // ... and woken by a write, with the new set.
    let waiter = tokio::spawn({
        let client = server.client.clone();
        let url = server.url(&waypoint(&format!(
            "&namespaces=shop&destinations=5&version={version}&wait=30s"
        )));
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status(), r.json::<ConfigResponse>().await.unwrap())
        }
    });
    harness::until_waiting(&server.client, &server.url("/metrics"), 1).await;
    create(
        &server,
        "shop-payments",
        r#"{"service": "payments", "namespace": "shop"}"#,
    )
    .await;
    let (status, answer) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(answer.version > version);
    assert!(answer.policies.iter().any(|p| p.name() == "shop-payments"));

    // A bad parameter is a 400 that names it.
    for (path, parameter) in [
        (waypoint("&namespaces=Shop"), "`namespaces`"),
        (gateway("&namespaces=shop"), "`namespaces`"),
        (waypoint("&destinations=five"), "`destinations`"),
        (
            "/v1/config?service=cart&namespace=demo&destinations=1".to_owned(),
            "`destinations`",
        ),
    ] {
        let (status, body) = harness::answer(server.client.get(server.url(&path))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.contains(parameter), "{path}: {body}");
    }

    // Status: the shared proxies apart from the sidecar, what they serve and hold, by kind.
    let status: StatusResponse =
        harness::get_json(&server.client, server.url("/v1/policies/status")).await;
    let shared: Vec<(ProxyKind, Option<&str>, Option<u64>, usize)> = status
        .shared_proxies
        .iter()
        .map(|s| (s.proxy, s.pod.as_deref(), s.destinations, s.policies))
        .collect();
    assert_eq!(
        shared,
        [
            (ProxyKind::Waypoint, Some("waypoint-7d9f"), Some(5), 4),
            (ProxyKind::Gateway, Some("ingress-5c8b"), Some(3), 5),
        ]
    );
    let pods: Vec<Option<&str>> = status.sidecars.iter().map(|s| s.pod.as_deref()).collect();
    assert_eq!(pods, [Some("cart-1")]);
    let proxies = &status.totals.proxies;
    assert_eq!(
        (proxies.sidecar, proxies.waypoint, proxies.gateway),
        (1, 1, 1)
    );
    // Where each policy acts in shared proxies, and how many it is sent to.
    let reach = |name: &str| {
        let p = status.policies.iter().find(|p| p.name == name).unwrap();
        (p.in_shared_proxies.clone(), p.matching_shared_proxies)
    };
    assert_eq!(reach("demo-canary"), ("never (selects pods)".to_owned(), 0));
    assert_eq!(reach("shop-all"), ("per request".to_owned(), 2));
    server.stop().await;
}

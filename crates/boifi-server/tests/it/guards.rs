//! Guards at the server: bad guards refused naming the field (nothing stored), guarded
//! policies refused without a Prometheus, a blind guard that stops its policy before it ever
//! reaches a sidecar, re-arming, and config answers that never carry a guard.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boifi_core::policy::guard::GuardState;
use boifi_core::policy::parse_policy_json;
use boifi_server::app::{start, ServerConfig};
use boifi_server::guards::prometheus::PrometheusConfig;
use boifi_server::store::local::LocalStore;
use boifi_server::store::{PolicyStore, WriteCondition};
use serde_json::{json, Value};

use crate::harness::{answer, policy_names, InProcess};

/// A Prometheus address where nothing listens: every evaluation is an error (connection
/// refused), which counts as a failure by default.
const NOBODY: &str = "http://127.0.0.1:9";

async fn server_with_prometheus(url: Option<&str>) -> InProcess {
    let store: Arc<dyn PolicyStore> = Arc::new(LocalStore::in_memory());
    let config = ServerConfig {
        workers: Some(2),
        prometheus: url.map(|u| PrometheusConfig {
            timeout: Duration::from_secs(1),
            ..PrometheusConfig::new(u)
        }),
        ..ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    let server = start(config, Arc::clone(&store)).await.unwrap();
    InProcess {
        base: format!("http://{}", server.addr()),
        server: Some(server),
        store,
        client: reqwest::Client::new(),
    }
}

fn guarded(name: &str, guard: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"service": "cartservice", "namespace": "demo"},
            "rules": [{"match": {"path": {"prefix": "/"}},
                       "fault": {"percentage": 100, "abort": {"httpStatus": 503}}}],
            "guards": [guard]
        }
    })
}

fn good_guard() -> Value {
    json!({"name": "frontend-success", "query": "sum(rate(http_requests_total[30s]))",
           "success_condition": "result >= 0.95", "interval_seconds": 1, "failure_limit": 2})
}

async fn post(server: &InProcess, body: &Value) -> (reqwest::StatusCode, String) {
    answer(
        server
            .client
            .post(server.url("/v1/policies"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_guards_are_refused_naming_the_field_and_nothing_is_stored() {
    let server = server_with_prometheus(Some(NOBODY)).await;
    let with = |field: &str, value: Value| {
        let mut guard = good_guard();
        guard[field] = value;
        guarded("bad-guard", guard)
    };
    let cases = [
        (
            with("query", json!("sum(rate(x[1m])")),
            "spec.guards[0].query: `sum(rate(x[1m])` is not a PromQL query",
        ),
        (
            with("success_condition", json!("result >> 1")),
            "spec.guards[0].success_condition: `result >> 1` is not a condition",
        ),
        (
            with("interval_seconds", json!(0)),
            "spec.guards[0].interval_seconds: `0` is outside 1..=3600",
        ),
        (
            with("interval_seconds", json!(-1)),
            "spec.guards[0].interval_seconds: `-1` is outside 1..=3600",
        ),
    ];
    for (body, expected) in cases {
        let (status, text) = post(&server, &body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(expected), "expected `{expected}` in {text}");
    }
    assert!(policy_names(server.store.as_ref()).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_policy_is_refused_by_a_server_without_prometheus() {
    let server = server_with_prometheus(None).await;
    let (status, text) = post(&server, &guarded("no-prometheus", good_guard())).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("guards_unavailable"), "{text}");
    assert!(text.contains("--prometheus-url"), "{text}");
    assert!(policy_names(server.store.as_ref()).await.is_empty());
    server.stop().await;
}

/// The state the API shows, polled until it is not `verifying` (bounded).
async fn state_after_verifying(server: &InProcess, name: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, text) = answer(
            server
                .client
                .get(server.url(&format!("/v1/policies/{name}"))),
        )
        .await;
        let policy: Value = serde_json::from_str(&text).unwrap();
        let guard = policy["status"]["guard"].clone();
        if guard["state"].as_str().is_some_and(|s| s != "verifying") {
            return guard;
        }
        // No verifying policy is ever sent to a sidecar.
        let (_, config) = answer(
            server
                .client
                .get(server.url("/v1/config?service=cartservice&namespace=demo")),
        )
        .await;
        assert!(!config.contains(name), "sent while verifying: {config}");
        assert!(Instant::now() < deadline, "still verifying: {policy}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_guard_stops_its_policy_before_any_sidecar_gets_it_and_rearm_starts_over() {
    let server = server_with_prometheus(Some(NOBODY)).await;
    // A client's status (claiming the guards passed) is dropped: the policy starts verifying.
    let mut body = guarded("blind", good_guard());
    body["status"] = json!({"guard": {"state": "running"}});
    let started = Instant::now();
    let (status, text) = post(&server, &body).await;
    assert_eq!(status, 201, "{text}");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored["spec"]["heartbeat_seconds"], 30,
        "the guarded default: {stored}"
    );
    // Two failed evaluations 1 s apart: the stop comes after about 1 s.
    let trip = state_after_verifying(&server, "blind", Duration::from_secs(5)).await;
    assert_eq!(trip["state"], "tripped", "{trip}");
    assert_eq!(trip["guard"], "frontend-success", "{trip}");
    assert!(
        trip["value"].is_null(),
        "a blind guard saw no value: {trip}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "stopped before the second evaluation"
    );
    let (_, config) = answer(
        server
            .client
            .get(server.url("/v1/config?service=cartservice&namespace=demo")),
    )
    .await;
    assert!(
        !config.contains("blind"),
        "a tripped policy is sent: {config}"
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"boifi_guard_trips_total{guard="frontend-success",policy="blind"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"boifi_guard_policies{state="tripped"} 1"#),
        "{metrics}"
    );

    // Re-arm: verifying again, and (still blind) tripped again.
    let (status, text) = answer(server.client.post(server.url("/v1/policies/blind/rearm"))).await;
    assert_eq!(status, 200, "{text}");
    let rearmed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        rearmed["status"]["guard"]["state"], "verifying",
        "{rearmed}"
    );
    let trip = state_after_verifying(&server, "blind", Duration::from_secs(5)).await;
    assert_eq!(trip["state"], "tripped", "{trip}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_answers_never_carry_guards_and_only_running_guarded_policies() {
    // No Prometheus: nothing evaluates, so the states written here stay as they are.
    let server = server_with_prometheus(None).await;
    let mut policy =
        parse_policy_json(&guarded("running-checked", good_guard()).to_string()).unwrap();
    policy.spec.heartbeat_seconds = Some(45);
    let outcome = server
        .store
        .put(policy.clone(), WriteCondition::Any)
        .await
        .unwrap();
    let config_url = server.url("/v1/config?service=cartservice&namespace=demo");
    let (_, verifying) = answer(server.client.get(&config_url)).await;
    assert!(!verifying.contains("running-checked"), "{verifying}");

    let mut running = outcome.policy.clone();
    if let Some(status) = &mut running.status {
        status.guard = Some(GuardState::Running);
    }
    server
        .store
        .put(running, WriteCondition::Revision(outcome.version))
        .await
        .unwrap();
    for encoding in ["json", "compact", "compact&compact_version=3"] {
        let response = server
            .client
            .get(format!("{config_url}&encoding={encoding}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("running-checked"), "{encoding}: {text}");
        for guard_text in ["frontend-success", "http_requests_total", "guard"] {
            assert!(
                !text.contains(guard_text),
                "{encoding} carries `{guard_text}`: {text}"
            );
        }
        if encoding == "compact&compact_version=3" {
            // The sidecar form has no guards at all; what sidecars get of them: the heartbeat
            // bound.
            let decoded = boifi_core::wire::compact::decode(&body).unwrap();
            assert_eq!(decoded.policies[0].heartbeat_seconds, Some(45));
        }
    }
    server.stop().await;
}

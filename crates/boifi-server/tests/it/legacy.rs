//! The legacy BOIFI's consumers against the real server: the status reads of its observability
//! script (the `jq` paths), and the shared table of names tried by URL on every route.

use boifi_core::wire::percent_encode;
use boifi_server::auth::Auth;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{get_json, InProcess};

async fn post(server: &InProcess, body: &Value) -> (StatusCode, Value) {
    let r = server
        .client
        .post(server.url("/v1/policies"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn rule(fault: Value) -> Value {
    serde_json::json!({"match": {"path": {"prefix": "/"}}, "fault": fault})
}

/// `jq -r PATH` of the legacy scripts: `.a.b`, `.a[].b` flattened.
fn jq<'v>(value: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut at = vec![value];
    for part in path.trim_start_matches('.').split('.') {
        let (key, each) = match part.strip_suffix("[]") {
            Some(key) => (key, true),
            None => (part, false),
        };
        at = at
            .into_iter()
            .map(|v| &v[key])
            .flat_map(|v| match (each, v) {
                (true, Value::Array(items)) => items.iter().collect::<Vec<_>>(),
                (_, v) => vec![v],
            })
            .collect();
    }
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_status_reads_get_the_legacy_answers() {
    let server = InProcess::start(Auth::open()).await;
    let abort = serde_json::json!({"percentage": 10, "abort": {"httpStatus": 503}});
    let delay = serde_json::json!({"percentage": 10, "delay": {"fixed_delay_ms": 5}});
    let both = serde_json::json!({"percentage": 10, "delay": {"fixed_delay_ms": 5}, "abort": {"httpStatus": 500}});
    let policies = [
        serde_json::json!({"metadata": {"name": "a-abort"},
            "spec": {"selector": {"service": "frontend"}, "rules": [rule(abort.clone())]}}),
        serde_json::json!({"metadata": {"name": "b-delay"},
            "spec": {"selector": {"namespace": "demo"}, "rules": [rule(delay.clone()), rule(delay)]}}),
        serde_json::json!({"metadata": {"name": "c.both"},
            "spec": {"selector": {"service": "cart", "namespace": "shop"}, "rules": [rule(both)]}}),
        serde_json::json!({"metadata": {"name": "d-off"},
            "spec": {"enabled": false, "rules": [rule(abort)]}}),
    ];
    for p in &policies {
        let (status, body) = post(&server, p).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let status: Value = get_json(&server.client, server.url("/v1/policies/status")).await;

    let one = |path: &str| jq(&status, path).first().copied().cloned().unwrap();
    assert_eq!(one(".summary.total_policies"), 4);
    assert_eq!(one(".summary.abort_policies"), 3);
    assert_eq!(one(".summary.delay_policies"), 2);
    assert_eq!(one(".summary.active_policies"), 3);
    let all = |path: &str| -> Vec<Value> { jq(&status, path).into_iter().cloned().collect() };
    assert_eq!(
        all(".policies[].name"),
        ["a-abort", "b-delay", "c.both", "d-off"]
    );
    assert_eq!(all(".policies[].namespace"), ["*", "demo", "shop", "*"]);
    assert_eq!(
        all(".policies[].target_service"),
        ["frontend", "*", "cart", "*"]
    );
    assert_eq!(all(".policies[].rules_count"), [1, 2, 1, 1]);
    assert_eq!(
        all(".policies[].fault_types"),
        [
            serde_json::json!(["abort"]),
            serde_json::json!(["delay"]),
            serde_json::json!(["abort", "delay"]),
            serde_json::json!(["abort"]),
        ]
    );
    assert_eq!(all(".policies[].active"), [true, true, true, false]);
    // boifi's own layout is still there, beside the legacy keys.
    assert_eq!(
        all(".policies[].state"),
        ["active", "active", "active", "disabled"]
    );
    assert_eq!(one(".totals.disabled"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_accepts_and_refuses_the_same_names_by_url() {
    let server = InProcess::start(Auth::open()).await;
    let ok = |s: StatusCode| s.is_success();
    for (name, accepted) in boifi_testkit::names::policy_names() {
        let body = serde_json::json!({"metadata": {"name": name},
            "spec": {"rules": [rule(serde_json::json!({"percentage": 1, "abort": {"httpStatus": 503}}))]}});
        let url = server.url(&format!("/v1/policies/{}", percent_encode(&name)));
        let (created, answer) = post(&server, &body).await;
        let put = server.client.put(&url).json(&body).send().await.unwrap();
        let put_status = put.status();
        let got = server.client.get(&url).send().await.unwrap();
        let got_status = got.status();
        let got_body: Value = got.json().await.unwrap_or(Value::Null);
        let deleted = server.client.delete(&url).send().await.unwrap().status();
        let listed: Value = get_json(&server.client, server.url("/v1/policies")).await;
        if accepted {
            assert_eq!(created, StatusCode::CREATED, "`{name}`: {answer}");
            assert_eq!(put_status, StatusCode::OK, "`{name}`");
            assert_eq!(got_status, StatusCode::OK, "`{name}`");
            assert_eq!(got_body["metadata"]["name"], name.as_str());
            assert_eq!(deleted, StatusCode::OK, "`{name}`");
        } else {
            assert_eq!(created, StatusCode::BAD_REQUEST, "`{name}`: {answer}");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("metadata.name"),
                "`{name}`: {answer}"
            );
            // By URL a refused name never reaches a policy: it is refused (400), names a fixed
            // route (`status`, `create`: 405, or the status view), or no route at all (404).
            for status in [put_status, deleted] {
                assert!(
                    [
                        StatusCode::BAD_REQUEST,
                        StatusCode::NOT_FOUND,
                        StatusCode::METHOD_NOT_ALLOWED
                    ]
                    .contains(&status),
                    "`{name}`: {status}"
                );
            }
            assert!(
                !ok(got_status) || got_body.get("summary").is_some(),
                "`{name}`: {got_body}"
            );
        }
        assert_eq!(
            listed["policies"],
            serde_json::json!([]),
            "`{name}` left a policy"
        );
    }
    server.stop().await;
}

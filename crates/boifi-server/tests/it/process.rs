//! The real `boifi-server` binary: the embedded store survives SIGKILL, expiry holds across a
//! restart, and mutations are audited.

use std::time::{Duration, Instant};

use boifi_core::wire::{ConfigResponse, PolicyList};
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{get_json, policy_json, Binary, TOKEN};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let log = dir.path().join("server.log");
    let args = [
        "--storage",
        "embedded",
        "--data-dir",
        data.to_str().unwrap(),
        "--auth-token-file",
        token_file.to_str().unwrap(),
        "--log-format",
        "json",
    ];
    let mut server = Binary::start(&args, &log);
    let client = client();
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let name = format!("durable-{i}");
        let r = client
            .post(server.url("/v1/policies"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(policy_json(&name, "frontend", ""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        acknowledged.push(r.json::<Value>().await.unwrap());
    }
    let r = client
        .delete(server.url("/v1/policies/durable-4"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    acknowledged.pop();
    let before: PolicyList = get_json(&client, server.url("/v1/policies")).await;
    let version_before = before
        .policies
        .iter()
        .map(|p| p.status.unwrap().revision)
        .max()
        .unwrap();

    // SIGKILL: no shutdown, no flush.
    server.guard.kill().unwrap();
    let server = Binary::start(&args, &log);
    let after: PolicyList = get_json(&client, server.url("/v1/policies")).await;
    assert_eq!(after, before);
    for (policy, acked) in after.policies.iter().zip(&acknowledged) {
        assert_eq!(serde_json::to_value(policy).unwrap(), *acked);
    }
    // The version continues from where it was (6 writes were acknowledged).
    let config: ConfigResponse = get_json(&client, server.url("/v1/config")).await;
    assert_eq!(config.version, 6);
    assert!(config.version > version_before);

    // One structured audit line per mutation: who, what, before/after version.
    let text = std::fs::read_to_string(&log).unwrap();
    let audits: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "boifi_server::audit")
        .collect();
    assert_eq!(audits.len(), 6, "{text}");
    let delete = &audits[5];
    assert_eq!(delete["action"], "delete");
    assert_eq!(delete["policy"], "durable-4");
    assert_eq!(delete["version_before"], 5);
    assert_eq!(delete["version_after"], 6);
    assert!(
        delete["who"].as_str().unwrap().starts_with("token:"),
        "{delete}"
    );
    assert!(!text.contains(TOKEN), "the token leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_policy_leaves_config_and_stays_expired_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let args = ["--data-dir", data.to_str().unwrap()]; // embedded is the default
    let mut server = Binary::start(&args, &log);
    let client = client();
    let r = client
        .post(server.url("/v1/policies"))
        .header("content-type", "application/json")
        .body(policy_json(
            "short-lived",
            "frontend",
            r#""duration_seconds": 2,"#,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let stored: Value = r.json().await.unwrap();
    let expires_at = stored["status"]["expires_at_ms"].as_u64().unwrap();
    assert_eq!(
        expires_at,
        stored["status"]["stored_at_ms"].as_u64().unwrap() + 2_000
    );

    let config_url = server.url("/v1/config?service=frontend&namespace=demo");
    let config: ConfigResponse = get_json(&client, &config_url).await;
    assert_eq!(config.policies.len(), 1, "active at first");
    // Poll (bounded) until it leaves; it must not leave before its expiry.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The server answers between `sent` and `now`: served means it answered before the
        // expiry (so `sent` was before it); left out means after (so `now` is after it).
        let sent = boifi_server::store::now_ms();
        let config: ConfigResponse = get_json(&client, &config_url).await;
        let now = boifi_server::store::now_ms();
        if config.policies.is_empty() {
            assert!(now >= expires_at, "left {} ms early", expires_at - now);
            break;
        }
        assert!(
            sent < expires_at,
            "still served {} ms after expiry",
            sent - expires_at
        );
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Listed as expired (the sweep's grace is 1 h).
    let status: Value = get_json(&client, server.url("/v1/policies/status")).await;
    assert_eq!(status["policies"][0]["state"], "expired");
    assert_eq!(status["totals"]["expired"], 1);

    server.guard.kill().unwrap();
    let server = Binary::start(&args, &log);
    let config: ConfigResponse = get_json(
        &client,
        server.url("/v1/config?service=frontend&namespace=demo"),
    )
    .await;
    assert!(
        config.policies.is_empty(),
        "expired policy served after restart"
    );
    let list: PolicyList = get_json(&client, server.url("/v1/policies")).await;
    assert_eq!(list.policies.len(), 1);
    assert_eq!(
        list.policies[0].status.unwrap().expires_at_ms,
        Some(expires_at)
    );
    let status: Value = get_json(&client, server.url("/v1/policies/status")).await;
    assert_eq!(status["policies"][0]["state"], "expired");
}

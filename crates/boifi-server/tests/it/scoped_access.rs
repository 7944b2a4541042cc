//! Who may fault what: named tokens scoped to namespaces, the server's opt-in namespaces, the
//! audit naming the token, reads that need a token, and no token in any log or metric.

use boifi_server::app::{start, ServerConfig};
use boifi_server::auth::Auth;
use boifi_server::credentials::parse_credentials;
use boifi_server::store::local::LocalStore;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{answer, get_json, Binary, TOKEN};

/// Scoped to `demo`, may read and write.
const CI: &str = "ci-scoped-token-7f3a91c2";
/// Read-only: what a sidecar presents.
const SIDECARS: &str = "sidecar-read-token-0b4e";
/// May halt and write everywhere.
const ONCALL: &str = "oncall-token-5d2c8e61aa";
/// Presented by nobody legitimate.
const WRONG: &str = "wrong-token-never-valid-19";

fn credentials_yaml() -> String {
    format!(
        "# who may fault what\ntokens:\n  - name: ci\n    token: {CI}\n    may: [read, write]\n    namespaces: [demo]\n  - name: sidecars\n    token: {SIDECARS}\n    may: [read]\n  - name: oncall\n    token: {ONCALL}\n    may: [read, write, halt]\n    namespaces: [\"*\"]\n"
    )
}

/// A policy selecting `namespace` (`None`: no selector namespace at all).
fn policy(name: &str, namespace: Option<&str>) -> String {
    let selector = match namespace {
        Some(ns) => format!(r#"{{"service": "frontend", "namespace": "{ns}"}}"#),
        None => r#"{"service": "frontend"}"#.to_owned(),
    };
    format!(
        r#"{{"metadata": {{"name": "{name}"}},
            "spec": {{"selector": {selector},
                      "rules": [{{"match": {{"path": {{"prefix": "/"}}}},
                                  "fault": {{"percentage": 50, "abort": {{"httpStatus": 503}}}}}}]}}}}"#
    )
}

struct Api {
    client: reqwest::Client,
    server: Binary,
}

impl Api {
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, self.server.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let (status, text) = answer(request).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, name: &str, namespace: Option<&str>) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            "/v1/policies",
            token,
            Some(policy(name, namespace)),
        )
        .await
    }

    async fn names(&self) -> Vec<String> {
        let list: Value = get_json(&self.client, self.server.url("/v1/policies")).await;
        list["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A 403 in the API's error shape whose message names every one of `names`.
fn assert_forbidden(answer: &(StatusCode, Value), names: &[&str]) {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden", "{body}");
    assert_eq!(body["code"], 403, "{body}");
    let message = body["message"].as_str().unwrap();
    for name in names {
        assert!(message.contains(name), "`{name}` not named in: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_opt_in_namespaces_audit_and_no_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.yaml");
    std::fs::write(&credentials, credentials_yaml()).unwrap();
    let legacy = dir.path().join("token");
    std::fs::write(&legacy, format!("{TOKEN}\n")).unwrap();
    let log = dir.path().join("server.log");
    let args = [
        "--storage",
        "memory",
        "--log-format",
        "json",
        "--credentials",
        credentials.to_str().unwrap(),
        "--auth-token-file",
        legacy.to_str().unwrap(),
        "--target-namespaces",
        "demo,payments",
    ];
    let api = Api {
        client: reqwest::Client::new(),
        server: Binary::start(&args, &log),
    };

    // The token scoped to `demo` creates there.
    let (status, body) = api.post(CI, "demo-abort", Some("demo")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Outside its namespaces: refused, naming the namespace and the token.
    assert_forbidden(
        &api.post(CI, "pay-abort", Some("payments")).await,
        &["`payments`", "`ci`"],
    );
    assert_forbidden(
        &api.post(CI, "all-abort", Some("*")).await,
        &["`*`", "`ci`"],
    );
    assert_forbidden(&api.post(CI, "all-abort", None).await, &["`*`", "`ci`"]);
    // Two namespaces, one foreign: replacing a policy that reaches `payments` with one that
    // reaches `demo` leaves `payments` and enters `demo`.
    let (status, _) = api.post(TOKEN, "pay-abort", Some("payments")).await;
    assert_eq!(status, StatusCode::CREATED);
    let put = api
        .send(
            Method::PUT,
            "/v1/policies/pay-abort",
            CI,
            Some(policy("pay-abort", Some("demo"))),
        )
        .await;
    assert_forbidden(&put, &["`payments`", "`ci`", "replace"]);
    assert_forbidden(
        &api.send(Method::DELETE, "/v1/policies/pay-abort", CI, None)
            .await,
        &["`payments`", "`ci`", "delete"],
    );

    // Opt-in: `shop` did not opt in, so every token is refused there, the legacy one that may
    // do everything included; no selector namespace means every namespace: refused too.
    for token in [TOKEN, ONCALL] {
        assert_forbidden(
            &api.post(token, "shop-abort", Some("shop")).await,
            &["`shop`", "opted in"],
        );
        assert_forbidden(
            &api.post(token, "everywhere", None).await,
            &["add `spec.selector.namespace`"],
        );
        assert_forbidden(
            &api.post(token, "everywhere", Some("*")).await,
            &["add `spec.selector.namespace`"],
        );
    }

    // Permissions: the read-only token may not write, the scoped one may not halt.
    assert_forbidden(
        &api.post(SIDECARS, "ro-abort", Some("demo")).await,
        &["`sidecars`", "may not write"],
    );
    assert_forbidden(
        &api.send(Method::DELETE, "/v1/policies?confirm=all", CI, None)
            .await,
        &["`ci`", "may not halt"],
    );
    // Unknown and missing tokens: 401 in the same error shape.
    let (status, body) = api.post(WRONG, "x-abort", Some("demo")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    // Nothing was stored by any refusal.
    assert_eq!(api.names().await, ["demo-abort", "pay-abort"]);

    // Audited: a delete by `ci`, a halt by `oncall`.
    let (status, _) = api
        .send(Method::DELETE, "/v1/policies/demo-abort", CI, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .send(Method::DELETE, "/v1/policies?confirm=all", ONCALL, None)
        .await;
    assert_eq!(
        (status, &body["deleted"]),
        (StatusCode::OK, &Value::from(1)),
        "{body}"
    );
    let audit: Value = get_json(&api.client, api.server.url("/v1/audit")).await;
    let trail: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap().to_owned();
            (field("who"), field("action"), field("policy"))
        })
        .collect();
    let legacy_name = boifi_server::auth::legacy_token_name(TOKEN);
    let expected = [
        ("ci", "create", "demo-abort"),
        (legacy_name.as_str(), "create", "pay-abort"),
        ("ci", "delete", "demo-abort"),
        ("oncall", "delete_all", "*"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(trail, expected);

    let (_, metrics) = answer(api.client.get(api.server.url("/metrics"))).await;
    let text = std::fs::read_to_string(&log).unwrap();
    // The log's audit lines say the same.
    let logged: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "boifi_server::audit")
        .map(|v| {
            (
                v["who"].as_str().unwrap().to_owned(),
                v["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected_logged: Vec<(String, String)> = expected
        .iter()
        .map(|(w, a, _)| (w.clone(), a.clone()))
        .collect();
    assert_eq!(logged, expected_logged, "{text}");
    // No token used in this run appears in the log or the metrics.
    for secret in [CI, SIDECARS, ONCALL, WRONG, TOKEN] {
        assert!(
            !text.contains(secret),
            "`{secret}` found in the log:\n{text}"
        );
        assert!(!metrics.contains(secret), "`{secret}` found in /metrics");
    }
    assert!(
        metrics.contains("status=\"403\""),
        "403s are counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_reads_a_read_token_reads_and_cannot_write() {
    let credentials = parse_credentials(&credentials_yaml(), "test").unwrap();
    let write_only = parse_credentials(
        "tokens:\n  - name: writer\n    token: writer-token-0123456789\n    may: [write]\n    namespaces: [demo]\n",
        "test",
    )
    .unwrap();
    let auth = Auth::with_credentials([credentials, write_only].concat(), true).unwrap();
    let config = ServerConfig {
        auth,
        workers: Some(1),
        ..ServerConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    let server = start(config, std::sync::Arc::new(LocalStore::in_memory()))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", server.addr());
    let config_path = "/v1/config?service=frontend&namespace=demo&pod=frontend-1";
    for path in [
        config_path,
        "/v1/policies",
        "/v1/policies/status",
        "/v1/audit",
    ] {
        let (status, text) = answer(client.get(url(path))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {text}");
        assert!(text.contains("\"error\":\"unauthorized\""), "{text}");
        let (status, text) = answer(client.get(url(path)).bearer_auth(SIDECARS)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        let (status, text) =
            answer(client.get(url(path)).bearer_auth("writer-token-0123456789")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {text}");
        assert!(text.contains("token `writer` may not read"), "{text}");
    }
    let (status, text) = answer(
        client
            .post(url("/v1/policies"))
            .bearer_auth(SIDECARS)
            .header("content-type", "application/json")
            .body(policy("ro", Some("demo"))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    // Liveness, readiness and metrics stay open.
    let (status, _) = answer(client.get(url("/v1/ready"))).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

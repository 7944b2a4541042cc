//! The HTTP API in-process: happy paths, the table of bad requests, auth, status, metrics,
//! the OpenAPI document, and the expiry sweep.

use std::collections::BTreeSet;
use std::time::Duration;

use boifi_core::wire::{ApiError, ConfigResponse, PolicyList};
use boifi_server::auth::Auth;
use boifi_server::store::WriteCondition;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::conformance::{lasting, policy};
use crate::harness::{answer, get_json, metric_value, policy_json, policy_names, InProcess, TOKEN};

const JSON: &str = "application/json";
const YAML: &str = "application/yaml";

/// A request of the table, with its expected answer.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    token: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    status: StatusCode,
    /// Every string must appear in the message or the details.
    mentions: Vec<&'static str>,
}

fn case(what: &'static str, method: Method, path: &str, status: u16) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        content_type: Some(JSON),
        body: Vec::new(),
        token: Some(TOKEN),
        headers: Vec::new(),
        status: StatusCode::from_u16(status).unwrap(),
        mentions: Vec::new(),
    }
}

impl Case {
    fn body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = body.into();
        self
    }
    fn content_type(mut self, ct: Option<&'static str>) -> Case {
        self.content_type = ct;
        self
    }
    fn token(mut self, token: Option<&'static str>) -> Case {
        self.token = token;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.headers.push((name, value));
        self
    }
    fn mentions(mut self, words: &[&'static str]) -> Case {
        self.mentions = words.to_vec();
        self
    }
}

fn bad_request_cases() -> Vec<Case> {
    use Method as M;
    let valid = policy_json("fresh-policy", "frontend", "");
    vec![
        case("malformed JSON", M::POST, "/v1/policies", 400)
            .body(r#"{"metadata": {"name": "x""#)
            .mentions(&["not valid JSON", "line 1"]),
        case("malformed YAML", M::POST, "/v1/policies", 400)
            .content_type(Some(YAML))
            .body("metadata: [unclosed\nspec: {")
            .mentions(&["not valid YAML"]),
        case("unknown field", M::POST, "/v1/policies", 400)
            .body(valid.replacen(r#""spec": {"#, r#""spec": {"colour": "red", "#, 1))
            .mentions(&["spec.colour", "unknown field"]),
        case("unknown field in YAML", M::POST, "/v1/policies", 400)
            .content_type(Some("application/x-yaml"))
            .body("metadata: {name: yaml-policy, owner: me}\nspec:\n  rules:\n  - match: {path: {prefix: /}}\n    fault: {percentage: 5, abort: {httpStatus: 503}}\n")
            .mentions(&["metadata.owner", "unknown field"]),
        case("wrong type", M::POST, "/v1/policies", 400)
            .body(valid.replace(r#""percentage": 50"#, r#""percentage": "fifty""#))
            .mentions(&["spec.rules[0].fault.percentage", "expected"]),
        case("bad percentage", M::POST, "/v1/policies", 400)
            .body(valid.replace(r#""percentage": 50"#, r#""percentage": 130"#))
            .mentions(&["spec.rules[0].fault.percentage", "`130`"]),
        case("negative percentage", M::POST, "/v1/policies", 400)
            .body(valid.replace(r#""percentage": 50"#, r#""percentage": -1"#))
            .mentions(&["spec.rules[0].fault.percentage"]),
        case("bad name", M::POST, "/v1/policies", 400)
            .body(valid.replace("fresh-policy", "-bad name-"))
            .mentions(&["metadata.name", "`-bad name-`"]),
        case("reserved name", M::POST, "/v1/policies", 400)
            .body(valid.replace("fresh-policy", "status"))
            .mentions(&["metadata.name", "reserved"]),
        case("empty body", M::POST, "/v1/policies", 400).mentions(&["empty"]),
        case("not UTF-8", M::POST, "/v1/policies", 400)
            .body(vec![0xff, 0xfe, b'{'])
            .mentions(&["UTF-8"]),
        case("two YAML documents", M::POST, "/v1/policies", 400)
            .content_type(Some(YAML))
            .body("metadata: {name: one-policy}\nspec:\n  rules:\n  - match: {path: {prefix: /}}\n    fault: {percentage: 5, abort: {httpStatus: 503}}\n---\nmetadata: {name: two-policy}\nspec:\n  rules:\n  - match: {path: {prefix: /}}\n    fault: {percentage: 5, abort: {httpStatus: 503}}\n")
            .mentions(&["exactly one", "2"]),
        case("huge body", M::POST, "/v1/policies", 413)
            .body(vec![b' '; 1024 * 1024 + 100 * 1024])
            .mentions(&["limit", "1048576"]),
        case("unsupported content type", M::POST, "/v1/policies", 415)
            .content_type(Some("application/xml"))
            .body("<policy/>")
            .mentions(&["application/xml"]),
        case("missing token", M::POST, "/v1/policies", 401)
            .token(None)
            .body(valid.clone())
            .mentions(&["Authorization"]),
        case("wrong token", M::POST, "/v1/policies", 401)
            .token(Some("not-the-token"))
            .body(valid.clone())
            .mentions(&["not valid"]),
        case("wrong token on delete", M::DELETE, "/v1/policies/seeded", 401)
            .token(Some("not-the-token"))
            .mentions(&["not valid"]),
        case("missing token on kill switch", M::DELETE, "/v1/policies?confirm=all", 401)
            .token(None)
            .mentions(&["Authorization"]),
        case("kill switch without confirmation", M::DELETE, "/v1/policies", 400)
            .mentions(&["confirm", "all"]),
        case("strict create of an existing name", M::POST, "/v1/policies/create", 409)
            .body(policy_json("seeded", "frontend", ""))
            .mentions(&["`seeded`", "already exists"]),
        case("PUT with a different name", M::PUT, "/v1/policies/other-name", 400)
            .body(valid.clone())
            .mentions(&["metadata.name", "`other-name`"]),
        case("stale If-Match", M::PUT, "/v1/policies/seeded", 412)
            .header("if-match", "\"999\"")
            .body(policy_json("seeded", "frontend", ""))
            .mentions(&["revision", "999"]),
        case("If-Match on a missing policy", M::PUT, "/v1/policies/fresh-policy", 412)
            .header("if-match", "\"1\"")
            .body(valid.clone())
            .mentions(&["absent"]),
        case("unreadable If-Match", M::DELETE, "/v1/policies/seeded", 400)
            .header("if-match", "yesterday")
            .mentions(&["If-Match", "`yesterday`"]),
        case("delete a missing policy", M::DELETE, "/v1/policies/ghost-policy", 404)
            .mentions(&["`ghost-policy`", "does not exist"]),
        case("get a missing policy", M::GET, "/v1/policies/ghost-policy", 404)
            .mentions(&["`ghost-policy`"]),
        case("invalid name in the path", M::GET, "/v1/policies/a..b", 400)
            .mentions(&["`a..b`", "`..`"]),
        case("bad wait", M::GET, "/v1/config?service=frontend&version=1&wait=soon", 400)
            .mentions(&["`wait`", "`soon`"]),
        case("bad version", M::GET, "/v1/config?version=-3", 400)
            .mentions(&["`version`", "`-3`"]),
        case("bad labels", M::GET, "/v1/config?labels=novalue", 400)
            .mentions(&["`labels`", "`novalue`"]),
        case("bad encoding", M::GET, "/v1/config?encoding=xml", 400)
            .mentions(&["`encoding`", "`xml`", "`compact`"]),
        case("unknown route", M::GET, "/v1/nothing-here", 404).mentions(&["/v1/nothing-here"]),
        case("wrong method", M::PATCH, "/v1/policies/seeded", 405).mentions(&["PATCH"]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_message_and_change_nothing() {
    let server = InProcess::start(Auth::with_token(TOKEN, false)).await;
    server
        .store
        .put(policy("seeded", 10), WriteCondition::Any)
        .await
        .unwrap();
    let before = server.store.snapshot().await.unwrap();
    for c in bad_request_cases() {
        let mut request = server
            .client
            .request(c.method.clone(), server.url(&c.path))
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(token) = c.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in &c.headers {
            request = request.header(*name, *value);
        }
        let (status, text) = answer(request).await;
        assert_eq!(status, c.status, "{}: {text}", c.what);
        let error: ApiError = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not an ApiError ({e}): {text}", c.what));
        assert_eq!(error.code, status.as_u16(), "{}", c.what);
        assert!(!error.error.is_empty(), "{}", c.what);
        let said = format!("{} {}", error.message, error.details.join(" "));
        for word in &c.mentions {
            assert!(said.contains(word), "{}: `{word}` not in {said:?}", c.what);
        }
        let after = server.store.snapshot().await.unwrap();
        assert_eq!(*after, *before, "{}: the store changed", c.what);
    }
    server.stop().await;
}

async fn send(
    server: &InProcess,
    method: Method,
    path: &str,
    content_type: &str,
    body: String,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = server
        .client
        .request(method, server.url(path))
        .header("content-type", content_type)
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// A request without a body.
async fn call(
    server: &InProcess,
    method: Method,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    send(server, method, path, JSON, String::new()).await
}

/// `POST /v1/policies` with a JSON body.
async fn post_policy(
    server: &InProcess,
    body: String,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    send(server, Method::POST, "/v1/policies", JSON, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_created_read_replaced_and_deleted() {
    let server = InProcess::start(Auth::with_token(TOKEN, false)).await;
    // Legacy create-or-replace: 201 then 200.
    let (status, headers, body) =
        post_policy(&server, policy_json("checkout-abort", "checkout", "")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["location"], "/v1/policies/checkout-abort");
    let created: Value = serde_json::from_str(&body).unwrap();
    let rev = created["status"]["revision"].as_u64().unwrap();
    assert_eq!(headers["etag"], format!("\"{rev}\"").as_str());
    let (status, _, _) = post_policy(&server, policy_json("checkout-abort", "checkout", "")).await;
    assert_eq!(status, StatusCode::OK);
    // YAML, strict create.
    let yaml = "apiVersion: boifi.io/v1alpha1\nkind: FaultInjectionPolicy\nmetadata:\n  name: cart-delay\nspec:\n  selector: {service: cart}\n  rules:\n  - match: {path: {prefix: /cart}}\n    fault:\n      percentage: 12.5\n      delay: {fixed_delay_ms: 200}\n";
    let (status, _, body) = send(
        &server,
        Method::POST,
        "/v1/policies/create",
        YAML,
        yaml.into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // PUT with If-Match of the current revision.
    let (_, headers, _) = call(&server, Method::GET, "/v1/policies/cart-delay").await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let put_if_match = async |body: String| {
        server
            .client
            .put(server.url("/v1/policies/cart-delay"))
            .header("content-type", YAML)
            .header("if-match", &etag)
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(
        put_if_match(yaml.replace("200", "300")).await,
        StatusCode::OK
    );
    // The same If-Match is now stale.
    assert_eq!(
        put_if_match(yaml.to_owned()).await,
        StatusCode::PRECONDITION_FAILED
    );
    // List (the legacy shape) and get; reads need no token.
    let list: PolicyList = get_json(&server.client, server.url("/v1/policies")).await;
    let names: Vec<&str> = list.policies.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["cart-delay", "checkout-abort"]);
    let cart = list
        .policies
        .iter()
        .find(|p| p.name() == "cart-delay")
        .unwrap();
    assert_eq!(
        cart.spec.rules[0]
            .fault
            .delay
            .as_ref()
            .unwrap()
            .fixed_delay_ms,
        300
    );
    // Curl's default content type (legacy scripts) is sniffed.
    let (status, _, body) = send(
        &server,
        Method::POST,
        "/v1/policies",
        "application/x-www-form-urlencoded",
        policy_json("curl-policy", "web", ""),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Delete one, then the kill switch.
    let (status, _, body) = call(&server, Method::DELETE, "/v1/policies/curl-policy").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deleted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(deleted["deleted"], "curl-policy");
    let (status, _, body) = call(&server, Method::DELETE, "/v1/policies?confirm=all").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["deleted"], 2);
    assert!(server.store.snapshot().await.unwrap().policies.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_reads_closes_reads_and_health_stays_open() {
    let server = InProcess::start(Auth::with_token(TOKEN, true)).await;
    for path in [
        "/v1/config?service=a",
        "/v1/policies",
        "/v1/policies/status",
    ] {
        let r = server.get(path).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let r = server
            .client
            .get(server.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    for path in ["/v1/health", "/v1/ready", "/metrics", "/v1/openapi.json"] {
        let r = server.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_filters_by_identity_and_status_shows_sidecars() {
    let server = InProcess::start(Auth::open()).await;
    for (name, service) in [("front-abort", "frontend"), ("back-abort", "backend")] {
        let (status, _, _) = post_policy(&server, policy_json(name, service, "")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let config: ConfigResponse = get_json(
        &server.client,
        server.url("/v1/config?service=frontend&namespace=demo&pod=frontend-1&labels=version=v1"),
    )
    .await;
    assert_eq!(config.version, 2);
    let names: Vec<&str> = config.policies.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["front-abort"]);
    // A sidecar of another namespace gets nothing (the selectors name `demo`).
    let other: ConfigResponse = get_json(
        &server.client,
        server.url("/v1/config?service=frontend&namespace=prod"),
    )
    .await;
    assert!(other.policies.is_empty());
    // The compact answer a filter asks for is the same response, in its sidecar form.
    let compact = server
        .client
        .get(server.url(
            "/v1/config?service=frontend&namespace=demo&pod=frontend-1&labels=version=v1&encoding=compact&compact_version=3",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(compact.status(), StatusCode::OK);
    assert_eq!(
        compact.headers()["content-type"],
        boifi_core::wire::compact::MEDIA_TYPE
    );
    let decoded = boifi_core::wire::compact::decode(&compact.bytes().await.unwrap()).unwrap();
    assert_eq!(
        decoded,
        boifi_core::wire::compact::SidecarConfig::from_documents(config.version, &config.policies)
            .unwrap()
    );
    // A filter older than version 3 (`encoding=compact` alone) still gets version 2.
    let old = server
        .client
        .get(server.url(
            "/v1/config?service=frontend&namespace=demo&pod=frontend-1&labels=version=v1&encoding=compact",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.headers()["content-type"],
        boifi_core::wire::compact::v2::MEDIA_TYPE
    );
    assert_eq!(
        old.bytes().await.unwrap(),
        boifi_core::wire::compact::v2::encode(&config)
    );
    // Its next poll says it applied version 2 (no wait: 304 at once).
    let applied = server
        .get("/v1/config?service=frontend&namespace=demo&pod=frontend-1&labels=version=v1&version=2&encoding=compact")
        .await;
    assert_eq!(applied.status(), StatusCode::NOT_MODIFIED);

    let status: Value = get_json(&server.client, server.url("/v1/policies/status")).await;
    assert_eq!(status["version"], 2);
    assert_eq!(status["totals"]["policies"], 2);
    assert_eq!(status["totals"]["active"], 2);
    let front = element(&status["policies"], "name", "front-abort");
    assert_eq!(front["targets"]["service"], "frontend");
    assert_eq!(front["fault_kinds"], serde_json::json!(["abort"]));
    assert_eq!(front["state"], "active");
    assert_eq!(front["matching_sidecars"], 1);
    let sidecar = element(&status["sidecars"], "pod", "frontend-1");
    assert_eq!(sidecar["service"], "frontend");
    assert_eq!(sidecar["namespace"], "demo");
    assert_eq!(sidecar["labels"]["version"], "v1");
    assert_eq!(sidecar["version"], 2);
    assert_eq!(sidecar["current"], true);
    assert_eq!(sidecar["state"], "applied");
    server.stop().await;
}

/// The element of the JSON array `list` whose `key` is `value`.
fn element<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no element with `{key}` = `{value}` in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_policies() {
    let server = InProcess::start(Auth::open()).await;
    let (status, _, _) = post_policy(&server, policy_json("metric-policy", "x", "")).await;
    assert_eq!(status, StatusCode::CREATED);
    let r = server.get("/v1/policies/nope-nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let text = server.get("/metrics").await.text().await.unwrap();
    let sample =
        |name: &str| metric_value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert_eq!(
        sample(r#"boifi_http_requests_total{method="POST",route="/v1/policies",status="201"}"#),
        1
    );
    assert_eq!(
        sample(
            r#"boifi_http_requests_total{method="GET",route="/v1/policies/{name}",status="404"}"#
        ),
        1
    );
    assert_eq!(sample(r#"boifi_policies{state="active"}"#), 1);
    assert_eq!(sample(r#"boifi_policies{state="expired"}"#), 0);
    assert_eq!(sample("boifi_config_version"), 1);
    assert_eq!(sample("boifi_config_waiting_requests"), 0);
    assert!(text.contains("boifi_config_fanout_seconds_bucket"));
    assert!(text.contains("# TYPE boifi_store_errors_total counter"));
    server.stop().await;
}

/// Every route the issue names, as (method, path template).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/ready"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/policies"),
    ("post", "/v1/policies"),
    ("delete", "/v1/policies"),
    ("post", "/v1/policies/create"),
    ("get", "/v1/policies/status"),
    ("get", "/v1/policies/{name}"),
    ("put", "/v1/policies/{name}"),
    ("delete", "/v1/policies/{name}"),
    ("post", "/v1/policies/{name}/rearm"),
    ("get", "/v1/config"),
    ("get", "/v1/audit"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_exactly_the_served_routes() {
    let server = InProcess::start(Auth::open()).await;
    let doc: Value = get_json(&server.client, server.url("/v1/openapi.json")).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    // Every documented operation is served: the router neither 404s nor 405s it.
    for (method, path) in &documented {
        let concrete = path.replace("{name}", "some-policy");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, text) = answer(
            server
                .client
                .request(method.clone(), server.url(&concrete))
                .header("content-type", JSON)
                .body("{}"),
        )
        .await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        assert!(
            !text.contains("no route for"),
            "{method} {concrete}: {text}"
        );
    }
    // Every other method is a 405 whose `Allow` lists exactly the documented ones (RFC 9110).
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in paths {
        let concrete = path.replace("{name}", "some-policy");
        let allowed: BTreeSet<String> = documented
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.to_uppercase())
            .collect();
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE"] {
            if allowed.contains(method) {
                continue;
            }
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let response = server
                .client
                .request(method.clone(), server.url(&concrete))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {concrete}"
            );
            let allow: BTreeSet<String> = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(allow, allowed, "`Allow` of {method} {concrete}");
        }
    }
    // Referenced schemas exist.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "PolicyDocument",
        "PolicyList",
        "ConfigResponse",
        "ApiError",
        "StatusResponse",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn sweep_deletes_expired_policies_after_the_grace_period() {
    use boifi_server::app::sweep_once;
    use boifi_server::store::local::LocalStore;
    use boifi_server::store::PolicyStore;
    let store = LocalStore::in_memory();
    let short = lasting("short-lived", 10, 2);
    let stored = store.put(short, WriteCondition::Any).await.unwrap().policy;
    store
        .put(policy("forever", 10), WriteCondition::Any)
        .await
        .unwrap();
    let expires = stored.status.unwrap().expires_at_ms.unwrap();
    let grace = Duration::from_secs(60);
    let audit = boifi_server::audit::AuditLog::default();
    // Expired but within the grace period: kept (and listed as expired).
    assert!(sweep_once(&store, &audit, grace, expires + 1_000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.snapshot().await.unwrap().policies.len(), 2);
    let deleted = sweep_once(&store, &audit, grace, expires + 60_000)
        .await
        .unwrap();
    assert_eq!(deleted, ["short-lived"]);
    let audited = audit.recent();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(
        (audited[0].who.as_str(), audited[0].action.as_str()),
        ("sweeper", "expire")
    );
    let names = policy_names(&store).await;
    assert_eq!(names, ["forever"]);
}

#[tokio::test]
async fn cached_config_body_equals_the_serialized_config_response() {
    use boifi_core::wire::ConfigQuery;
    use boifi_server::api::config::{config_for, RenderCache};
    use boifi_server::store::local::LocalStore;
    use boifi_server::store::PolicyStore;
    let store = LocalStore::in_memory();
    let mut other = policy("other-service", 30);
    other.spec.selector.service = Some("backend".into());
    for p in [lasting("expiring", 10, 1), policy("kept", 20), other] {
        store.put(p, WriteCondition::Any).await.unwrap();
    }
    let snapshot = store.snapshot().await.unwrap();
    let cache = RenderCache::default();
    let now = boifi_server::store::now_ms();
    for query in [
        "service=frontend&namespace=demo",
        "service=backend&namespace=demo",
        "",
        "namespace=x",
        "service=frontend&namespace=demo&encoding=compact",
        "service=backend&encoding=compact",
        "encoding=compact",
        "service=frontend&namespace=demo&encoding=compact&compact_version=3",
        "service=backend&encoding=compact&compact_version=4",
        "encoding=compact&compact_version=3",
    ] {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        let q =
            ConfigQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        for at in [now, now + 5_000] {
            let response = config_for(&q, &snapshot, at);
            let expected = if query.contains("compact_version") {
                boifi_core::wire::compact::encode(
                    &boifi_core::wire::compact::SidecarConfig::from_documents(
                        response.version,
                        &response.policies,
                    )
                    .unwrap(),
                )
            } else if query.contains("compact") {
                boifi_core::wire::compact::v2::encode(&response)
            } else {
                serde_json::to_vec(&response).unwrap()
            };
            assert_eq!(
                cache.body_for(&q, &snapshot, at).unwrap(),
                expected,
                "{query} at {at}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_server_sweeps_expired_policies() {
    use boifi_server::app::{start, ServerConfig};
    use boifi_server::store::local::LocalStore;
    use boifi_server::store::PolicyStore;
    use std::sync::Arc;
    let store: Arc<dyn PolicyStore> = Arc::new(LocalStore::in_memory());
    for p in [lasting("sweep-me", 10, 1), policy("keep-me", 10)] {
        store.put(p, WriteCondition::Any).await.unwrap();
    }
    let config = ServerConfig {
        sweep_grace: Duration::ZERO,
        ..ServerConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    let server = start(config, Arc::clone(&store)).await.unwrap();
    let mut rx = store.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if !rx.borrow_and_update().policies.contains_key("sweep-me") {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the sweep did not delete the expired policy");
    let names = policy_names(&*store).await;
    assert_eq!(names, ["keep-me"]);
    server.stop().await;
}

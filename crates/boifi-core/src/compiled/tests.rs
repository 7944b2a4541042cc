use super::*;
use crate::policy::{parse_policy_json, StringMatch};

fn policy(name: &str, selector: &str, rules: &str) -> PolicyDocument {
    parse_policy_json(&alloc::format!(
        r#"{{"metadata": {{"name": "{name}"}}, "spec": {{"selector": {selector}, "rules": {rules}}}}}"#
    ))
    .unwrap()
}

const ABORT_ALL: &str = r#"[{"match": {"path": {"exact": "/api"}}, "fault": {"percentage": 100, "abort": {"httpStatus": 503}}}]"#;

#[test]
fn path_matching_ignores_the_query_string() {
    let set = CompiledPolicySet::from_documents(
        &[policy("q-test", "{}", ABORT_ALL)],
        &Identity::default(),
        0,
    )
    .unwrap();
    assert!(decide(&set, &SimpleRequest::new("GET", "/api?x=1"), 0, 1).is_some());
    assert!(decide(&set, &SimpleRequest::new("GET", "/api/x"), 0, 1).is_none());
}

/// A request that records every header name [`decide`] asks it for (the method as `:method`).
struct Recording {
    inner: SimpleRequest,
    asked: core::cell::RefCell<Vec<String>>,
}

impl RequestView for Recording {
    fn method(&self) -> &[u8] {
        self.asked.borrow_mut().push(":method".to_owned());
        self.inner.method()
    }
    fn path(&self) -> &[u8] {
        self.inner.path()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.asked.borrow_mut().push(name.to_owned());
        self.inner.header(name)
    }
    fn peer_uri_san(&self) -> Option<&[u8]> {
        self.inner.peer_uri_san()
    }
}

#[test]
fn decide_reads_each_header_of_the_rules_once() {
    // Two rules on the same header, and `request` sampling: x-user and x-request-id, once each.
    // Both test the method too: it is read once as well.
    let rules = r#"[{"match": {"method": {"exact": "GET"}, "headers": [{"name": "X-User", "exact": "b"}]}, "fault": {"percentage": 100, "abort": {"httpStatus": 503}}},
                    {"match": {"method": {"exact": "GET"}, "headers": [{"name": "X-User", "exact": "a"}]}, "fault": {"percentage": 100, "abort": {"httpStatus": 503}}}]"#;
    let mut p = policy("headers", "{}", rules);
    p.spec.sampling = crate::policy::Sampling::Request;
    let set = CompiledPolicySet::from_documents(&[p], &Identity::default(), 0).unwrap();
    let request = Recording {
        inner: SimpleRequest::new("GET", "/")
            .with_header("X-USER", "a")
            .with_header("x-other", "z"),
        asked: Default::default(),
    };
    assert!(decide(&set, &request, 0, 1).is_some());
    let mut asked = request.asked.take();
    asked.sort();
    // And the marker of proxies that evaluated policies for the request before, once.
    assert_eq!(
        asked,
        [":method", EVALUATED_HEADER, "x-request-id", "x-user"]
    );
    assert!(decide(&set, &SimpleRequest::new("GET", "/"), 0, 1).is_none());
}

#[test]
fn compile_keeps_only_policies_for_the_identity_in_name_order() {
    let policies = [
        policy("zeta", r#"{"service": "frontend"}"#, ABORT_ALL),
        policy("alpha", r#"{"service": "*"}"#, ABORT_ALL),
        policy("other", r#"{"service": "cart"}"#, ABORT_ALL),
        policy("labelled", r#"{"labels": {"version": "v2"}}"#, ABORT_ALL),
    ];
    let set =
        CompiledPolicySet::from_documents(&policies, &Identity::for_service("frontend", "demo"), 0)
            .unwrap();
    assert_eq!(set.policy_names(), ["alpha", "zeta"]);
    assert_eq!(set.active_policy_count(0), 2);
    let d = decide(&set, &SimpleRequest::new("GET", "/api"), 0, 9).unwrap();
    assert_eq!(d.policy, "alpha");
}

#[test]
fn expired_rules_are_dropped_at_compile_and_skipped_at_decide() {
    let rules = r#"[{"match": {"path": {"prefix": "/"}}, "fault": {"percentage": 100, "duration_seconds": 2, "abort": {"httpStatus": 503}}}]"#;
    let p = policy("short", "{}", rules).stored(1_000, 1);
    let set =
        CompiledPolicySet::from_documents(core::slice::from_ref(&p), &Identity::default(), 1_000)
            .unwrap();
    let r = SimpleRequest::new("GET", "/");
    assert!(decide(&set, &r, 2_999, 1).is_some());
    assert!(decide(&set, &r, 3_000, 1).is_none());
    assert_eq!(set.active_policy_count(3_000), 0);
    let later = CompiledPolicySet::from_documents(&[p], &Identity::default(), 3_000).unwrap();
    assert!(later.is_empty());
}

#[test]
fn jitter_stays_within_bounds_and_varies() {
    let d = Delay {
        fixed_delay_ms: 100,
        jitter_ms: 20,
    };
    let mut seen = alloc::collections::BTreeSet::new();
    for draw in 0..10_000u64 {
        let v = jittered_delay(&d, splitmix64(draw));
        assert!((80..=120).contains(&v), "{v}");
        seen.insert(v);
    }
    assert_eq!(seen.len(), 41, "every value of 80..=120 appears");
}

#[test]
fn grpc_status_defaults_follow_the_http_mapping() {
    let mut a = AbortAction {
        http_status: 503,
        grpc_status: None,
        body: String::new(),
        headers: Vec::new(),
    };
    assert_eq!(a.grpc_status_for_grpc_request(), 14);
    a.http_status = 404;
    assert_eq!(a.grpc_status_for_grpc_request(), 12);
    a.grpc_status = Some(4);
    assert_eq!(a.grpc_status_for_grpc_request(), 4);
}

#[test]
fn hand_built_policy_with_a_bad_regex_is_a_compile_error() {
    let mut p = policy("bad-regex", "{}", ABORT_ALL);
    p.spec.rules[0].matches.path = Some(StringMatch::Regex("(".into()));
    let e = CompiledPolicySet::from_documents(&[p], &Identity::default(), 0).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("policy `bad-regex`: spec.rules[0].match.path: regex `(`"),
        "{e}"
    );
}

/// A request whose values are raw bytes, as a proxy hands them over.
struct RawRequest<'a> {
    path: &'a [u8],
    headers: &'a [(&'a str, &'a [u8])],
}

impl RequestView for RawRequest<'_> {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn path(&self) -> &[u8] {
        self.path
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
    fn peer_uri_san(&self) -> Option<&[u8]> {
        None
    }
}

#[test]
fn values_that_are_not_utf8_compare_as_bytes_and_never_match_a_regex() {
    let rules = r#"[
      {"match": {"headers": [{"name": "x-a", "prefix": "caf"}]}, "fault": {"percentage": 100, "abort": {"httpStatus": 501}}},
      {"match": {"headers": [{"name": "x-b", "regex": ".*"}]}, "fault": {"percentage": 100, "abort": {"httpStatus": 502}}},
      {"match": {"path": {"prefix": "/p"}}, "fault": {"percentage": 100, "abort": {"httpStatus": 503}}}
    ]"#;
    let set =
        CompiledPolicySet::from_documents(&[policy("bytes", "{}", rules)], &Identity::default(), 0)
            .unwrap();
    let status = |path: &[u8], headers: &[(&str, &[u8])]| {
        decide(&set, &RawRequest { path, headers }, 0, 1)
            .and_then(|d| d.abort.map(|a| a.http_status))
    };
    assert_eq!(status(b"/x", &[("x-a", b"caf\xe9\xff")]), Some(501));
    assert_eq!(status(b"/x", &[("x-b", b"\xff")]), None);
    assert_eq!(status(b"/x", &[("x-b", b"ok")]), Some(502));
    assert_eq!(status(b"/p\xff?\xfe", &[("x-b", b"\x80")]), Some(503));
}

#[test]
fn a_disabled_policy_is_never_compiled_and_priority_goes_before_names() {
    let mut off = policy("a-off", "{}", ABORT_ALL);
    off.spec.enabled = false;
    let request = SimpleRequest::new("GET", "/api");
    let set = CompiledPolicySet::from_documents(&[off.clone()], &Identity::default(), 0).unwrap();
    assert!(set.is_empty());
    assert!(decide(&set, &request, 0, 1).is_none());

    // By name alone `b-first` would lose to `a-late`; its priority puts it ahead.
    let late = policy("a-late", "{}", ABORT_ALL);
    let mut first = policy("b-first", "{}", ABORT_ALL);
    first.spec.priority = 10;
    let set =
        CompiledPolicySet::from_documents(&[late.clone(), first, off], &Identity::default(), 0)
            .unwrap();
    assert_eq!(decide(&set, &request, 0, 1).unwrap().policy, "b-first");
    let set = CompiledPolicySet::from_documents(&[late], &Identity::default(), 0).unwrap();
    assert_eq!(decide(&set, &request, 0, 1).unwrap().policy, "a-late");
}

#[test]
fn the_legacy_fields_round_trip() {
    let text = r#"{"metadata": {"name": "frontend.v2", "namespace": "demo",
        "labels": {"team": "checkout"}, "annotations": {"owner": "sre on call"}},
        "spec": {"priority": -3, "enabled": false, "rules": [{"match": {"path": {"prefix": "/"}},
        "fault": {"percentage": 1, "abort": {"httpStatus": 503}}}]}}"#;
    let read = parse_policy_json(text).unwrap();
    assert_eq!(read.metadata.namespace.as_deref(), Some("demo"));
    assert_eq!(
        read.metadata.annotations.get("owner").map(String::as_str),
        Some("sre on call")
    );
    assert_eq!((read.spec.priority, read.spec.enabled), (-3, false));
    let written = serde_json::to_string(&read).unwrap();
    assert_eq!(parse_policy_json(&written).unwrap(), read);
    let mut wanted = alloc::collections::BTreeMap::new();
    wanted.insert("team".into(), "checkout".into());
    assert!(read.has_labels(&wanted));
    wanted.insert("team".into(), "cart".into());
    assert!(!read.has_labels(&wanted));
}

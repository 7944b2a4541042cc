//! `match.source`: the caller named by its verified certificate's SPIFFE ID, its validation
//! messages, and that nothing but that certificate makes a request match.

use std::cell::Cell;

use boifi_core::compiled::{decide, CompiledPolicySet, RequestView, SimpleRequest};
use boifi_core::identity::{spiffe_id, Identity, PeerIdentity};
use boifi_core::policy::parse_policies_yaml;

use crate::errors::messages;

const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";
const CHECKOUT: &str = "spiffe://cluster.local/ns/demo/sa/checkoutservice";

fn policy(source: &str) -> String {
    format!(
        "metadata: {{name: cart-for-frontend}}
spec:
  selector: {{service: cartservice, namespace: demo}}
  rules:
    - match: {{source: {source}}}
      fault: {{percentage: 100, abort: {{httpStatus: 503}}}}
"
    )
}

fn set(source: &str) -> CompiledPolicySet {
    let policies = parse_policies_yaml(&policy(source)).unwrap();
    CompiledPolicySet::from_documents(&policies, &Identity::for_service("cartservice", "demo"), 0)
        .unwrap()
}

fn faulted(set: &CompiledPolicySet, request: &SimpleRequest) -> bool {
    decide(set, request, 0, 7).is_some()
}

#[test]
fn spiffe_ids_parse_strictly_and_anything_else_is_unknown() {
    assert_eq!(
        PeerIdentity::parse(FRONTEND.as_bytes()),
        Some(PeerIdentity {
            trust_domain: "cluster.local",
            namespace: "demo",
            service_account: "frontend"
        })
    );
    assert_eq!(
        spiffe_id("cluster.local", "demo", "frontend"),
        FRONTEND,
        "what the mesh writes is what the core reads"
    );
    for bad in [
        &b""[..],
        b"spiffe://",
        b"spiffe://cluster.local",
        b"spiffe://cluster.local/ns/demo/sa/",
        b"spiffe://cluster.local/ns//sa/frontend",
        b"spiffe://cluster.local/ns/demo/sa/frontend/",
        b"spiffe://cluster.local/ns/demo/sa/frontend/x",
        b"spiffe://cluster.local/sa/frontend/ns/demo",
        b"spiffe:///ns/demo/sa/frontend",
        b"SPIFFE://cluster.local/ns/demo/sa/frontend",
        b"https://cluster.local/ns/demo/sa/frontend",
        b"spiffe://Cluster.Local/ns/demo/sa/frontend",
        b"spiffe://cluster.local/ns/demo/sa/front%65nd",
        b"spiffe://cluster.local/ns/demo/sa/frontend?x=1",
        b"spiffe://cluster.local/ns/demo/sa/fr\xffontend",
        b"spiffe://cluster.local/ns/demo/sa/frontend\0",
        b"spiffe://user@cluster.local/ns/demo/sa/frontend",
        b"spiffe://cluster.local:443/ns/demo/sa/frontend",
    ] {
        assert_eq!(
            PeerIdentity::parse(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("spiffe://cluster.local/ns/demo/sa/{}", "a".repeat(2100));
    assert_eq!(PeerIdentity::parse(long.as_bytes()), None);
}

#[test]
fn only_the_named_caller_is_faulted() {
    let set = set("{service: frontend, namespace: demo}");
    let get = || SimpleRequest::new("GET", "/cart");
    assert!(faulted(&set, &get().with_peer_uri_san(FRONTEND)));
    assert!(!faulted(&set, &get().with_peer_uri_san(CHECKOUT)));
    // The same account in another namespace is another caller.
    assert!(!faulted(
        &set,
        &get().with_peer_uri_san("spiffe://cluster.local/ns/prod/sa/frontend")
    ));
    // Unknown callers: plaintext, a foreign trust domain, a SAN that is not a workload ID.
    assert!(!faulted(&set, &get()));
    assert!(!faulted(
        &set,
        &get().with_peer_uri_san("spiffe://evil.example/ns/demo/sa/frontend")
    ));
    assert!(!faulted(&set, &get().with_peer_uri_san("frontend")));
}

#[test]
fn headers_copied_from_the_caller_never_make_a_request_match() {
    let set = set("{service: frontend, namespace: demo}");
    let forged = |r: SimpleRequest| {
        r.with_header(
            "x-envoy-peer-metadata-id",
            "sidecar~10.0.0.1~frontend-1.demo~demo.svc.cluster.local",
        )
        .with_header(
            "x-envoy-peer-metadata",
            "ChkKDkFQUF9DT05UQUlORVJTEgcaBWZyb250",
        )
        .with_header(
            "x-forwarded-client-cert",
            &format!("By=spiffe://cluster.local/ns/demo/sa/cartservice;URI={FRONTEND}"),
        )
        .with_header("x-boifi-source", "frontend")
    };
    assert!(!faulted(&set, &forged(SimpleRequest::new("GET", "/cart"))));
    assert!(!faulted(
        &set,
        &forged(SimpleRequest::new("GET", "/cart")).with_peer_uri_san(CHECKOUT)
    ));
}

#[test]
fn service_account_and_namespace_conditions() {
    // A service whose workloads run under another account.
    let set = set("{service: frontend, serviceAccount: web, namespace: demo}");
    let get = || SimpleRequest::new("GET", "/");
    assert!(faulted(
        &set,
        &get().with_peer_uri_san("spiffe://cluster.local/ns/demo/sa/web")
    ));
    assert!(!faulted(&set, &get().with_peer_uri_san(FRONTEND)));
    // Any caller of one namespace.
    let set = self::set("{namespace: demo}");
    assert!(faulted(&set, &get().with_peer_uri_san(CHECKOUT)));
    assert!(!faulted(
        &set,
        &get().with_peer_uri_san("spiffe://cluster.local/ns/prod/sa/checkoutservice")
    ));
    assert!(
        !faulted(&set, &get()),
        "an unknown caller is in no namespace"
    );
}

#[test]
fn the_trust_domain_is_the_meshs() {
    let set = set("{service: frontend}").with_trust_domain("corp.example");
    let get = || SimpleRequest::new("GET", "/");
    assert!(!faulted(&set, &get().with_peer_uri_san(FRONTEND)));
    assert!(faulted(
        &set,
        &get().with_peer_uri_san("spiffe://corp.example/ns/demo/sa/frontend")
    ));
}

/// Counts how often the caller's certificate is asked for.
struct Counting {
    path: &'static str,
    reads: Cell<u32>,
}

impl RequestView for Counting {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
    fn peer_uri_san(&self) -> Option<&[u8]> {
        self.reads.set(self.reads.get() + 1);
        Some(FRONTEND.as_bytes())
    }
}

#[test]
fn the_certificate_is_read_at_most_once_and_only_when_a_source_rule_is_tested() {
    let text = "metadata: {name: two-rules}
spec:
  rules:
    - match: {path: {prefix: /cart}, source: {service: frontend}}
      fault: {percentage: 0, abort: {httpStatus: 503}}
    - match: {path: {prefix: /cart}, source: {namespace: demo}}
      fault: {percentage: 100, abort: {httpStatus: 502}}
---
metadata: {name: no-source}
spec:
  rules:
    - match: {path: {prefix: /}}
      fault: {percentage: 0, abort: {httpStatus: 500}}
";
    let policies = parse_policies_yaml(text).unwrap();
    let all = CompiledPolicySet::from_documents(&policies, &Identity::default(), 0).unwrap();
    assert!(all.reads_caller());
    let request = Counting {
        path: "/cart",
        reads: Cell::new(0),
    };
    let decision = decide(&all, &request, 0, 1).unwrap();
    assert_eq!(decision.abort.map(|a| a.http_status), Some(502));
    assert_eq!(request.reads.get(), 1, "two source rules, one read");
    let other_path = Counting {
        path: "/health",
        reads: Cell::new(0),
    };
    assert!(decide(&all, &other_path, 0, 1).is_none());
    assert_eq!(other_path.reads.get(), 0, "the path fails first: no read");
    let without =
        CompiledPolicySet::from_documents(&policies[1..], &Identity::default(), 0).unwrap();
    assert!(!without.reads_caller());
    let request = Counting {
        path: "/cart",
        reads: Cell::new(0),
    };
    assert!(decide(&without, &request, 0, 1).is_none());
    assert_eq!(request.reads.get(), 0);
}

#[test]
fn source_round_trips() {
    let policies = parse_policies_yaml(&policy(
        "{service: frontend, namespace: demo, serviceAccount: web}",
    ))
    .unwrap();
    let json = serde_json::to_string(&policies[0]).unwrap();
    assert!(
        json.contains(
            r#""source":{"service":"frontend","namespace":"demo","serviceAccount":"web"}"#
        ),
        "{json}"
    );
    let yaml = serde_norway::to_string(&policies[0]).unwrap();
    assert_eq!(parse_policies_yaml(&yaml).unwrap(), policies);
}

#[test]
fn bad_sources_get_field_path_messages() {
    let errors = |source: &str| messages(parse_policies_yaml(&policy(source)));
    let prefix = "document 1: spec.rules[0].match.source";
    let cases = [
        ("{}", format!("{prefix}: give at least one of `service`, `namespace` or `serviceAccount`")),
        (
            "{service: frontend, labels: {app: frontend}}",
            format!("{prefix}.labels: caller labels cannot be verified from the caller's certificate, which names only its namespace and service account; match `service` or `serviceAccount` instead"),
        ),
        (
            "{service: Frontend}",
            format!("{prefix}.service: `Frontend` is not a valid name: only lower-case letters, digits and `-` are allowed"),
        ),
        (
            "{service: '*'}",
            format!("{prefix}.service: `*` is not a valid name: wildcards are not supported (leave the field out to match any)"),
        ),
        (
            "{namespace: ''}",
            format!("{prefix}.namespace: `` is not a valid name: it must not be empty (leave the field out to match any)"),
        ),
        (
            "{serviceAccount: -web}",
            format!("{prefix}.serviceAccount: `-web` is not a valid name: it must start and end with a letter or digit"),
        ),
        (
            "{service_account: web}",
            format!("{prefix}.service_account: unknown field; {} give at least one of `service`, `namespace` or `serviceAccount`", "spec.rules[0].match.source:"),
        ),
        ("frontend", format!("{prefix}: expected an object, found a string")),
        ("{service: 7}", format!("{prefix}.service: expected a string, found a number")),
    ];
    for (source, want) in cases {
        assert_eq!(errors(source), want, "source: {source}");
    }
    assert_eq!(
        errors("{serviceAccount: web.v1}"),
        "ok",
        "accounts are DNS subdomains"
    );
}

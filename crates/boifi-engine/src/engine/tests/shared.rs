//! A shared proxy (waypoint, gateway): the target decided per request, the per-destination
//! cache, and the `x-boifi-evaluated` marker.

use super::*;
use alloc::string::ToString;
use boifi_core::compiled::EVALUATED_HEADER;
use boifi_core::identity::{ProxyKind, GATEWAY_CLASS_LABEL, WAYPOINT_GATEWAY_CLASS};

const SERVICES: [&str; 5] = [
    "cartservice",
    "productcatalogservice",
    "currencyservice",
    "paymentservice",
    "shippingservice",
];

fn waypoint_identity() -> Identity {
    let mut id = Identity::for_service("waypoint", "shop");
    id.labels
        .insert(GATEWAY_CLASS_LABEL.into(), WAYPOINT_GATEWAY_CLASS.into());
    id.proxy = ProxyKind::of_labels(&id.labels);
    assert_eq!(id.proxy, ProxyKind::Waypoint);
    id
}

fn waypoint(max_destinations: u64) -> Engine {
    let config = PluginConfig {
        max_destinations,
        ..PluginConfig::default()
    };
    Engine::new(waypoint_identity(), &config, 11)
}

/// A compact `/v1/config` answer with these `(name, selector JSON, percentage)` abort policies.
fn answer(version: u64, policies: &[(&str, &str, u32)]) -> Vec<u8> {
    let items: Vec<String> = policies
        .iter()
        .map(|(name, selector, pct)| {
            format!(
                r#"{{"metadata":{{"name":"{name}"}},"spec":{{"selector":{selector},"rules":[{{"match":{{"path":{{"prefix":"/"}}}},"fault":{{"percentage":{pct},"abort":{{"httpStatus":503}}}}}}]}}}}"#
            )
        })
        .collect();
    crate::sync::tests::compact(&format!(
        r#"{{"version":{version},"policies":[{}]}}"#,
        items.join(",")
    ))
}

fn chain(service: &str) -> String {
    format!("inbound-vip|8080|http|{service}.shop.svc.cluster.local")
}

fn to(service: &str) -> SimpleRequest {
    SimpleRequest::new("GET", "/").with_destination(&chain(service))
}

fn aborted(e: &mut Engine, request: &SimpleRequest, c: &mut CounterValues) -> bool {
    matches!(e.on_request(1, request, 0, c), Verdict::Reply(_))
}

#[test]
fn a_waypoint_faults_only_the_service_a_policy_selects() {
    let mut e = waypoint(256);
    let cart = r#"{"service":"cartservice","namespace":"shop"}"#;
    e.adopt(1, &answer(1, &[("cart-abort", cart, 100)]), 0)
        .unwrap();
    let mut c = CounterValues::default();
    for _ in 0..200 {
        for service in SERVICES {
            assert_eq!(
                aborted(&mut e, &to(service), &mut c),
                service == "cartservice",
                "{service}"
            );
        }
    }
    assert_eq!(c.get(Counter::Aborts), 200);
    assert_eq!(e.cached_destinations(), SERVICES.len());
    assert_eq!(c.get(Counter::DestinationEvictions), 0);
}

#[test]
fn a_wildcard_service_faults_every_service_and_a_namespace_only_its_own() {
    let mut e = waypoint(256);
    e.adopt(1, &answer(1, &[("all", r#"{"service":"*"}"#, 100)]), 0)
        .unwrap();
    let mut c = CounterValues::default();
    for service in SERVICES {
        assert!(aborted(&mut e, &to(service), &mut c), "{service}");
    }
    e.adopt(
        2,
        &answer(2, &[("other-ns", r#"{"namespace":"web"}"#, 100)]),
        0,
    )
    .unwrap();
    assert!(!aborted(&mut e, &to("cartservice"), &mut c));
    let web = SimpleRequest::new("GET", "/")
        .with_destination("inbound-vip|80|http|frontend.web.svc.cluster.local");
    assert!(aborted(&mut e, &web, &mut c));
}

#[test]
fn label_selectors_never_match_in_a_shared_proxy() {
    let mut e = waypoint(256);
    let labels = r#"{"service":"cartservice","labels":{"version":"v1"}}"#;
    e.adopt(1, &answer(1, &[("by-label", labels, 100)]), 0)
        .unwrap();
    assert!(e.is_idle());
    assert!(!aborted(
        &mut e,
        &to("cartservice"),
        &mut CounterValues::default()
    ));
}

#[test]
fn a_request_without_a_destination_is_not_read_further() {
    let mut e = waypoint(256);
    e.adopt(1, &answer(1, &[("all", r#"{"service":"*"}"#, 100)]), 0)
        .unwrap();
    for name in [
        None,
        Some("outbound|8080||cartservice.shop.svc.cluster.local"),
        Some("x"),
    ] {
        let mut inner = SimpleRequest::new("GET", "/");
        inner.destination = name.map(ToString::to_string);
        let r = Counting {
            inner,
            reads: 0.into(),
        };
        let mut c = CounterValues::default();
        assert_eq!(e.on_request(1, &r, 0, &mut c), Verdict::Continue);
        assert_eq!(r.reads.get(), 0, "{name:?}");
        assert_eq!(e.cached_destinations(), 0);
    }
}

#[test]
fn a_gateway_reads_the_routed_cluster() {
    let mut id = Identity::for_service("ingress", "istio-system");
    id.labels.insert("istio".into(), "ingressgateway".into());
    id.proxy = ProxyKind::of_labels(&id.labels);
    let mut e = Engine::new(id, &PluginConfig::default(), 3);
    let cart = r#"{"service":"cartservice"}"#;
    e.adopt(1, &answer(1, &[("cart-abort", cart, 100)]), 0)
        .unwrap();
    let mut c = CounterValues::default();
    let routed = |svc: &str| {
        SimpleRequest::new("GET", "/")
            .with_destination(&format!("outbound|8080||{svc}.shop.svc.cluster.local"))
    };
    assert!(aborted(&mut e, &routed("cartservice"), &mut c));
    assert!(!aborted(&mut e, &routed("currencyservice"), &mut c));
    // A waypoint's chain name is not a gateway's destination.
    assert!(!aborted(&mut e, &to("cartservice"), &mut c));
}

/// More destinations than the cache holds: evictions are counted, the cache stays within its
/// bound, and every decision is the one a fresh compile for the destination gives.
#[test]
fn the_cache_stays_bounded_and_decisions_unchanged() {
    const CAP: u64 = 4;
    let services: Vec<String> = (0..12).map(|i| format!("svc-{i}")).collect();
    // Every other service has a 100 % abort, one a 0 % abort, the rest nothing.
    let selectors: Vec<(String, String, u32)> = services
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(i, s)| {
            (
                format!("p-{s}"),
                format!(r#"{{"service":"{s}"}}"#),
                if i.is_multiple_of(3) { 100 } else { 0 },
            )
        })
        .collect();
    let policies: Vec<(&str, &str, u32)> = selectors
        .iter()
        .map(|(n, s, p)| (n.as_str(), s.as_str(), *p))
        .collect();
    let body = answer(1, &policies);
    let mut small = waypoint(CAP);
    let mut large = waypoint(256);
    small.adopt(1, &body, 0).unwrap();
    large.adopt(1, &body, 0).unwrap();
    let (mut cs, mut cl) = (CounterValues::default(), CounterValues::default());
    let mut misses = 0u64;
    let mut seen_recently: Vec<usize> = Vec::new();
    for round in 0..3 {
        for k in 0..services.len() {
            // A different permutation each round (5 and 12 are coprime).
            let i = (k * 5 + round) % services.len();
            let r = to(&services[i]);
            let want = i.is_multiple_of(3);
            assert_eq!(aborted(&mut small, &r, &mut cs), want, "{}", services[i]);
            assert_eq!(aborted(&mut large, &r, &mut cl), want, "{}", services[i]);
            if !seen_recently.contains(&i) {
                misses += 1;
            }
            seen_recently.retain(|&j| j != i);
            seen_recently.push(i);
            if seen_recently.len() > CAP as usize {
                seen_recently.remove(0);
            }
            assert!(small.cached_destinations() <= CAP as usize);
        }
    }
    assert_eq!(small.cached_destinations(), CAP as usize);
    // An LRU model of the same bound: every miss beyond the first `CAP` evicts one.
    assert_eq!(cs.get(Counter::DestinationEvictions), misses - CAP);
    assert_eq!(cl.get(Counter::DestinationEvictions), 0);
    assert_eq!(large.cached_destinations(), services.len());
    assert_eq!(cs.gauges[Gauge::CachedDestinations as usize], CAP);
    // A new install clears the cache.
    small.adopt(2, &answer(2, &[]), 0).unwrap();
    assert_eq!(small.cached_destinations(), 0);
}

#[test]
fn a_proxy_marks_what_it_evaluated_and_skips_what_is_marked() {
    let mut e = waypoint(256);
    let cart = r#"{"service":"cartservice"}"#;
    e.adopt(
        1,
        &answer(1, &[("never", cart, 0), ("always", cart, 100)]),
        0,
    )
    .unwrap();
    let mut c = CounterValues::default();

    // Unmarked: "always" fires (a local reply, never forwarded: no mark needed).
    let r = to("cartservice");
    assert!(aborted(&mut e, &r, &mut c));

    // Marked by an earlier proxy: "always" is skipped; "never" is evaluated and marked after
    // what the request carried.
    let r = to("cartservice").with_header(EVALUATED_HEADER, "always");
    assert!(!aborted(&mut e, &r, &mut c));
    assert_eq!(
        r.marked.borrow().as_deref(),
        Some(b"always,always,never".as_slice())
    );

    // Everything already evaluated: nothing is evaluated or written again.
    let r = to("cartservice").with_header(EVALUATED_HEADER, "never, always");
    assert!(!aborted(&mut e, &r, &mut c));
    assert_eq!(*r.marked.borrow(), None);

    // A service no policy concerns: nothing read, nothing written.
    let r = to("currencyservice");
    assert!(!aborted(&mut e, &r, &mut c));
    assert_eq!(*r.marked.borrow(), None);
}

#[test]
fn a_sidecar_marks_and_skips_the_same_way() {
    let mut e = engine(10);
    e.adopt(1, &body(1, ABORT_ALL), 0).unwrap();
    let mut c = CounterValues::default();
    let r = SimpleRequest::new("GET", "/x").with_header(EVALUATED_HEADER, "pol");
    assert_eq!(e.on_request(1, &r, 0, &mut c), Verdict::Continue);
    assert_eq!(c.get(Counter::Aborts), 0);
    let r = SimpleRequest::new("GET", "/x").with_header(EVALUATED_HEADER, "pol-2");
    assert!(matches!(e.on_request(1, &r, 0, &mut c), Verdict::Reply(_)));
    // A delay forwards the request later: it is marked now.
    e.adopt(2, &body(2, DELAY_ALL), 0).unwrap();
    let r = SimpleRequest::new("GET", "/x");
    assert!(matches!(
        e.on_request(2, &r, 0, &mut c),
        Verdict::Hold { .. }
    ));
    assert_eq!(r.marked.borrow().as_deref(), Some(b"pol".as_slice()));
}

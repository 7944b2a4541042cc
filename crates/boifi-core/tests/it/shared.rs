//! Shared proxies (waypoints, gateways): the destination parsed from the host's bytes, the
//! caller from Istio's filter state, and the `x-boifi-evaluated` marker.

use boifi_core::compiled::{
    decide, decide_once, CompiledPolicySet, SimpleRequest, EVALUATED_HEADER,
};
use boifi_core::destination::Destination;
use boifi_core::identity::ProxyKind;
use boifi_core::policy::parse_policies_yaml;
use proptest::prelude::*;

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

proptest! {
    /// Any bytes: a destination or none, never a panic; a destination's names come from the
    /// bytes and are DNS labels.
    #[test]
    fn any_bytes_give_a_destination_or_none(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        waypoint in any::<bool>(),
    ) {
        let kind = if waypoint { ProxyKind::Waypoint } else { ProxyKind::Gateway };
        if let Some(d) = Destination::parse(kind, &bytes) {
            let text = std::str::from_utf8(&bytes).unwrap();
            let fqdn = format!("|{}.{}.svc.", d.service, d.namespace);
            prop_assert!(text.contains(&fqdn), "{} not in {}", fqdn, text);
        }
    }

    /// The names Istio gives parse back to the service and namespace they were built from.
    #[test]
    fn istio_names_parse_to_their_service(
        service in dns_label(),
        namespace in dns_label(),
        port in 1u32..=65_535,
        domain in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        subset in "[a-z0-9-]{0,6}",
    ) {
        let fqdn = format!("{service}.{namespace}.svc.{domain}");
        let chain = format!("inbound-vip|{port}|http|{fqdn}");
        let cluster = format!("outbound|{port}|{subset}|{fqdn}");
        let want = Some(Destination { service: &service, namespace: &namespace });
        prop_assert_eq!(Destination::parse(ProxyKind::Waypoint, chain.as_bytes()), want);
        prop_assert_eq!(Destination::parse(ProxyKind::Gateway, cluster.as_bytes()), want);
        prop_assert_eq!(Destination::parse(ProxyKind::Gateway, chain.as_bytes()), None);
        prop_assert_eq!(Destination::parse(ProxyKind::Waypoint, cluster.as_bytes()), None);
        prop_assert_eq!(Destination::parse(ProxyKind::Sidecar, chain.as_bytes()), None);
    }

    /// A forged marker only lets a request escape faults: with any `x-boifi-evaluated`, a request
    /// is faulted only if it would have been without it.
    #[test]
    fn a_marker_never_adds_a_fault(
        forged in "[a-z, -]{0,30}",
        draw in any::<u64>(),
    ) {
        let set = three_policies();
        let plain = SimpleRequest::new("GET", "/cart");
        let marked = plain.clone().with_header(EVALUATED_HEADER, &forged);
        if decide(&set, &marked, 0, draw).is_some() {
            prop_assert!(decide(&set, &plain, 0, draw).is_some());
        }
    }
}

fn three_policies() -> CompiledPolicySet {
    let yaml = ["a", "b", "c"]
        .map(|name| {
            format!(
                "metadata: {{name: {name}}}
spec:
  selector: {{service: cartservice}}
  rules:
    - match: {{path: {{prefix: /}}}}
      fault: {{percentage: 30, abort: {{httpStatus: 503}}}}
"
            )
        })
        .join("---\n");
    let policies = parse_policies_yaml(&yaml).unwrap();
    let cart = Destination {
        service: "cartservice",
        namespace: "shop",
    };
    CompiledPolicySet::from_documents(&policies, &cart.identity(ProxyKind::Waypoint), 0).unwrap()
}

#[test]
fn the_marker_names_every_policy_of_the_set_and_skips_the_named_ones() {
    let set = three_policies();
    assert_eq!(set.evaluated_value(), "a,b,c");
    let request = SimpleRequest::new("GET", "/").with_header(EVALUATED_HEADER, "a , c");
    for draw in 0..200 {
        let decided = decide_once(&set, &request, 0, draw);
        assert!(decided.evaluated);
        assert_eq!(decided.incoming, Some(b"a , c".as_slice()));
        if let Some(fault) = decided.fault {
            assert_eq!(fault.policy, "b");
        }
    }
    let all = SimpleRequest::new("GET", "/").with_header(EVALUATED_HEADER, "c,b,a");
    assert!((0..200).all(|d| !decide_once(&set, &all, 0, d).evaluated));
}

#[test]
fn a_shared_proxy_knows_the_caller_from_the_filter_state_only() {
    let yaml = "metadata: {name: cart-for-frontend}
spec:
  selector: {service: cartservice}
  rules:
    - match: {source: {service: frontend, namespace: shop}}
      fault: {percentage: 100, abort: {httpStatus: 503}}
";
    let policies = parse_policies_yaml(yaml).unwrap();
    let cart = Destination {
        service: "cartservice",
        namespace: "shop",
    };
    let waypoint =
        CompiledPolicySet::from_documents(&policies, &cart.identity(ProxyKind::Waypoint), 0)
            .unwrap();
    let sidecar = CompiledPolicySet::from_documents(
        &policies,
        &boifi_core::Identity::for_service("cartservice", "shop"),
        0,
    )
    .unwrap();
    let frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    let by_state = SimpleRequest::new("GET", "/").with_peer_principal(frontend);
    let by_cert = SimpleRequest::new("GET", "/").with_peer_uri_san(frontend);
    let by_header = SimpleRequest::new("GET", "/")
        .with_header("x-forwarded-client-cert", &format!("URI={frontend}"))
        .with_header("io.istio.peer_principal", frontend);
    assert!(decide(&waypoint, &by_state, 0, 1).is_some());
    assert!(decide(&waypoint, &by_cert, 0, 1).is_none());
    assert!(decide(&waypoint, &by_header, 0, 1).is_none());
    assert!(decide(&sidecar, &by_cert, 0, 1).is_some());
    assert!(decide(&sidecar, &by_state, 0, 1).is_none());
    let other = SimpleRequest::new("GET", "/")
        .with_peer_principal("spiffe://cluster.local/ns/shop/sa/checkout");
    assert!(decide(&waypoint, &other, 0, 1).is_none());
}

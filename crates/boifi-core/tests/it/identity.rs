//! Identity from Envoy node metadata, as an Istio sidecar carries it.

use boifi_core::identity::{Identity, NodeMetadata, ProxyKind};

use crate::repo_root;

#[test]
fn shared_sidecar_example_resolves_to_frontend_in_demo() {
    let path = repo_root().join("testdata/sidecar-node-frontend-demo.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} must exist in the repository: {e}", path.display()));
    let identity = Identity::from_node_json(&text).unwrap();
    assert_eq!(identity.service.as_deref(), Some("frontend"));
    assert_eq!(identity.namespace.as_deref(), Some("demo"));
    assert_eq!(identity.pod.as_deref(), Some("frontend-7d9f8c-abcde"));
    assert_eq!(
        identity.labels.get("version").map(String::as_str),
        Some("v1")
    );
    assert!(!identity.is_partial());
}

fn metadata(workload: Option<&str>, labels: &[(&str, &str)]) -> NodeMetadata {
    NodeMetadata {
        workload_name: workload.map(Into::into),
        namespace: Some("demo".into()),
        name: Some("pod-1".into()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn service_prefers_canonical_name_then_app_then_workload() {
    let m = metadata(
        Some("workload"),
        &[
            ("app", "app-name"),
            ("service.istio.io/canonical-name", "canonical"),
        ],
    );
    assert_eq!(Identity::resolve(&m).service.as_deref(), Some("canonical"));
    let m = metadata(Some("workload"), &[("app", "app-name")]);
    assert_eq!(Identity::resolve(&m).service.as_deref(), Some("app-name"));
    let m = metadata(Some("workload"), &[]);
    assert_eq!(Identity::resolve(&m).service.as_deref(), Some("workload"));
    let m = metadata(None, &[("app", "")]);
    let identity = Identity::resolve(&m);
    assert_eq!(identity.service, None);
    assert!(identity.is_partial());
}

#[test]
fn node_json_variants_and_errors() {
    let bare = r#"{"NAMESPACE": "demo", "LABELS": {"app": "cart"}}"#;
    let id = Identity::from_node_json(bare).unwrap();
    assert_eq!(id.service.as_deref(), Some("cart"));
    let node = r#"{"id": "x", "metadata": {"WORKLOAD_NAME": "w", "NAMESPACE": ""}}"#;
    let id = Identity::from_node_json(node).unwrap();
    assert_eq!(id.service.as_deref(), Some("w"));
    assert_eq!(id.namespace, None, "an empty namespace is unknown");
    assert!(Identity::from_node_json("[1]").is_err());
    assert!(Identity::from_node_json("{").is_err());
    // Wrong types are ignored, never a panic.
    let odd = r#"{"metadata": {"WORKLOAD_NAME": 5, "LABELS": {"app": 3}, "NAMESPACE": ["x"]}}"#;
    let id = Identity::from_node_json(odd).unwrap();
    assert_eq!(id, Identity::default());
}

#[test]
fn an_istio_sidecar_node_resolves_to_its_identity() {
    let sidecar = NodeMetadata {
        workload_name: Some("cart".into()),
        namespace: Some("shop".into()),
        name: Some("cart-0".into()),
        labels: [("version".to_owned(), "v2".to_owned())].into(),
    };
    let node = sidecar.istio_node();
    assert_eq!(node["cluster"], "cart.shop");
    let id = Identity::from_node_json(&node.to_string()).unwrap();
    assert_eq!(id.service.as_deref(), Some("cart"));
    assert_eq!(id.namespace.as_deref(), Some("shop"));
    assert_eq!(id.pod.as_deref(), Some("cart-0"));
    assert_eq!(
        id.labels
            .get("service.istio.io/canonical-revision")
            .map(String::as_str),
        Some("v2")
    );
    // Without a workload Istio names no service: only the namespace is known.
    let nameless = NodeMetadata {
        workload_name: None,
        ..sidecar
    };
    let id = Identity::from_node_json(&nameless.istio_node().to_string()).unwrap();
    assert!(id.is_partial());
    assert_eq!(id.service, None);
}

#[test]
fn the_proxy_kind_comes_from_the_labels_istio_sets_on_its_pod() {
    let kind = |labels: &[(&str, &str)]| {
        let metadata = serde_json::json!({
            "NAMESPACE": "demo",
            "LABELS": labels.iter().copied().collect::<std::collections::BTreeMap<_, _>>(),
        });
        Identity::from_node_json(&metadata.to_string())
            .unwrap()
            .proxy
    };
    assert_eq!(kind(&[("app", "cart")]), ProxyKind::Sidecar);
    assert_eq!(
        kind(&[
            ("gateway.networking.k8s.io/gateway-name", "waypoint"),
            (
                "gateway.networking.k8s.io/gateway-class-name",
                "istio-waypoint"
            ),
        ]),
        ProxyKind::Waypoint
    );
    assert_eq!(
        kind(&[
            ("gateway.networking.k8s.io/gateway-name", "ingress"),
            ("gateway.networking.k8s.io/gateway-class-name", "istio"),
        ]),
        ProxyKind::Gateway
    );
    assert_eq!(kind(&[("istio", "ingressgateway")]), ProxyKind::Gateway);
    // A sidecar's identity serializes as it did before proxies had kinds.
    let sidecar = serde_json::to_value(Identity::for_service("cart", "demo")).unwrap();
    assert!(sidecar.get("proxy").is_none(), "{sidecar}");
    let mut waypoint = Identity::for_service("waypoint", "demo");
    waypoint.proxy = ProxyKind::Waypoint;
    let json = serde_json::to_string(&waypoint).unwrap();
    assert!(json.contains(r#""proxy":"waypoint""#), "{json}");
    assert_eq!(serde_json::from_str::<Identity>(&json).unwrap(), waypoint);
}

//! Istio guarding the control plane (issue 30): the overlays `mesh-authorization` (sidecar)
//! and `ambient-mesh-authorization`, and the chart's `meshAuthorization` value sets, ship an
//! `AuthorizationPolicy` held to Istio's CRD schema (testdata/authorizationpolicy-crd.yaml)
//! that lets any mesh workload read `/v1/config` and only named service accounts reach the
//! rest of the API, enforced where L7 rules run: the control plane's own sidecar, or in
//! ambient mode the waypoint of its Service.

use boifi_deploy::yaml::Document;
use serde_json::{json, Value};

use crate::support::{chart_bundle, checker, find, kustomize, manifests};

fn overlay(name: &str) -> Vec<Document> {
    kustomize(&manifests().join("overlays").join(name))
}

/// The bundles, whether they are ambient, and the write principals they must name.
fn bundles() -> Vec<(&'static str, Vec<Document>, bool, Vec<&'static str>)> {
    let cli = "cluster.local/ns/boifi/sa/boifi-cli";
    vec![
        (
            "overlay mesh-authorization",
            overlay("mesh-authorization"),
            false,
            vec![cli],
        ),
        (
            "overlay ambient-mesh-authorization",
            overlay("ambient-mesh-authorization"),
            true,
            vec![cli],
        ),
        (
            "chart mesh-authorization",
            chart_bundle("mesh-authorization"),
            false,
            vec![cli, "cluster.local/ns/ci/sa/deployer"],
        ),
        (
            "chart ambient-mesh-authorization",
            chart_bundle("ambient-mesh-authorization"),
            true,
            vec![cli],
        ),
    ]
}

#[test]
fn the_policy_lets_mesh_workloads_read_config_and_named_accounts_write() {
    for (what, docs, ambient, writers) in bundles() {
        let policy = find(&docs, "AuthorizationPolicy", "boifi-control-plane");
        assert_eq!(policy.value["apiVersion"], "security.istio.io/v1", "{what}");
        let problems = checker().check_document(policy);
        assert!(problems.is_empty(), "{what}: {problems:#?}");
        let spec = &policy.value["spec"];
        assert_eq!(spec["action"], "ALLOW", "{what}");
        let rules = spec["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 3, "{what}");
        assert_eq!(
            rules[0]["from"],
            json!([{"source": {"principals": ["*"]}}]),
            "{what}"
        );
        assert_eq!(
            rules[0]["to"],
            json!([{"operation": {"methods": ["GET"], "paths": ["/v1/config"]}}]),
            "{what}"
        );
        assert_eq!(
            rules[1]["from"][0]["source"]["principals"],
            json!(writers),
            "{what}"
        );
        assert_eq!(
            rules[1]["to"],
            json!([{"operation": {"paths": ["/v1/*"]}}]),
            "{what}"
        );
        assert!(rules[2].get("from").is_none(), "{what}");
        assert_eq!(
            rules[2]["to"][0]["operation"]["paths"],
            json!(["/v1/health", "/metrics"]),
            "{what}"
        );
        let deployment = find(&docs, "Deployment", "boifi-control-plane");
        let pod_labels = &deployment.value["spec"]["template"]["metadata"]["labels"];
        let service = find(&docs, "Service", "boifi-control-plane");
        if ambient {
            // The Service's own waypoint enforces it; the pods are in ambient mode.
            assert_eq!(
                spec["targetRefs"],
                json!([{"kind": "Service", "group": "", "name": "boifi-control-plane"}]),
                "{what}"
            );
            assert_eq!(pod_labels["istio.io/dataplane-mode"], "ambient", "{what}");
            assert_ne!(pod_labels["sidecar.istio.io/inject"], "true", "{what}");
            let waypoint = service.value["metadata"]["labels"]["istio.io/use-waypoint"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: the Service has no waypoint"));
            let gateway = find(&docs, "Gateway", waypoint);
            assert_eq!(gateway.namespace(), service.namespace(), "{what}");
            assert_eq!(gateway.value["spec"]["gatewayClassName"], "istio-waypoint");
            // The NetworkPolicy lets that waypoint in over HBONE.
            let netpol = find(&docs, "NetworkPolicy", "boifi-control-plane");
            let hbone = netpol.value["spec"]["ingress"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["ports"][0]["port"] == 15008)
                .unwrap_or_else(|| panic!("{what}: no ingress on 15008"));
            assert_eq!(
                hbone["from"][0]["podSelector"]["matchLabels"]
                    ["gateway.networking.k8s.io/gateway-name"],
                waypoint,
                "{what}"
            );
        } else {
            // The control plane's own sidecar enforces it: the selector picks its pods, which
            // are injected, and etcd's are not.
            let selector = spec["selector"]["matchLabels"].as_object().unwrap();
            for (k, v) in selector {
                assert_eq!(&pod_labels[k], v, "{what}: selector {k}");
            }
            assert_eq!(pod_labels["sidecar.istio.io/inject"], "true", "{what}");
            let namespace = docs
                .iter()
                .find(|d| d.kind() == "Namespace" && d.name() == "boifi");
            if let Some(ns) = namespace {
                assert!(
                    ns.value["metadata"]["labels"]
                        .get("istio-injection")
                        .is_none(),
                    "{what}"
                );
            }
            if let Some(etcd) = docs.iter().find(|d| d.kind() == "StatefulSet") {
                let labels = &etcd.value["spec"]["template"]["metadata"]["labels"];
                assert_ne!(labels["sidecar.istio.io/inject"], "true", "{what}");
            }
        }
        // The service account the write rule names exists in the bundle.
        let cli = find(&docs, "ServiceAccount", "boifi-cli");
        assert_eq!(cli.namespace(), "boifi", "{what}");
    }
}

/// The schema is enforced: a misspelt or mistyped field of the policy is reported.
#[test]
fn a_wrong_authorization_policy_is_refused_by_istios_schema() {
    let docs = overlay("mesh-authorization");
    let policy = find(&docs, "AuthorizationPolicy", "boifi-control-plane");
    let broken = |edit: fn(&mut Value)| {
        let mut doc = policy.clone();
        edit(&mut doc.value);
        checker().check_document(&doc)
    };
    let misspelt = broken(|v| {
        v["spec"]["rules"][0]["to"][0]["operation"]["path"] = json!(["/v1/config"]);
    });
    assert!(
        misspelt.iter().any(|p| p.to_string().contains("path")),
        "{misspelt:#?}"
    );
    let action = broken(|v| v["spec"]["action"] = json!("PERMIT"));
    assert!(
        action.iter().any(|p| p.to_string().contains("action")),
        "{action:#?}"
    );
    let principals = broken(|v| {
        v["spec"]["rules"][0]["from"][0]["source"]["principals"] = json!("*");
    });
    assert!(!principals.is_empty(), "a string where a list goes passed");
}

/// The default chart and the base leave the control plane out of the mesh, as before.
#[test]
fn without_the_option_nothing_changes() {
    for docs in [chart_bundle("default"), crate::support::base()] {
        assert!(docs.iter().all(|d| d.kind() != "AuthorizationPolicy"));
        let deployment = find(&docs, "Deployment", "boifi-control-plane");
        assert_ne!(
            deployment.value["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"],
            "true"
        );
    }
}

//! The Istio ambient-mode overlays (manifests/ambient, manifests/overlays/ambient-*): the filter
//! attached to the namespace's waypoint (Gateway form, per-Service form, Istio 1.30's
//! TrafficExtension), the waypoint itself, and the EnvoyFilter that gives the waypoint the
//! control plane's cluster. What they compose to, and that each mistake is found, naming the
//! field or the object.

use boifi_deploy::consistency::{check_bundle, BundleScope, REFERENCED_SERVICES_ANNOTATION};
use boifi_deploy::yaml::Document;
use serde_json::{json, Value};

use crate::support::{base, checker, find, kustomize, manifests};

fn overlay(name: &str) -> Vec<Document> {
    kustomize(&manifests().join("overlays").join(name))
}

const WAYPOINT_REF: &str =
    r#"[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]"#;

/// (overlay, kind of the filter's resource, its targetRefs)
fn forms() -> Vec<(&'static str, &'static str, Value)> {
    let waypoint: Value = serde_json::from_str(WAYPOINT_REF).unwrap();
    vec![
        ("ambient-waypoint", "WasmPlugin", waypoint.clone()),
        (
            "ambient-service",
            "WasmPlugin",
            json!([{"kind": "Service", "group": "", "name": "frontend"}]),
        ),
        ("ambient-trafficextension", "TrafficExtension", waypoint),
    ]
}

#[test]
fn each_ambient_overlay_is_the_base_plus_the_waypoint_its_cluster_and_one_filter() {
    let base = base();
    for (name, kind, targets) in forms() {
        let docs = overlay(name);
        // The waypoint, as `istioctl waypoint apply -n demo` creates it.
        let gateway = find(&docs, "Gateway", "waypoint");
        assert_eq!(gateway.namespace(), "demo");
        assert_eq!(gateway.value["spec"]["gatewayClassName"], "istio-waypoint");
        assert_eq!(
            gateway.value["spec"]["listeners"],
            json!([{"name": "mesh", "port": 15008, "protocol": "HBONE"}])
        );
        // The EnvoyFilter that only names the control plane's Service, on that waypoint.
        let cluster = find(&docs, "EnvoyFilter", "boifi-control-plane-cluster");
        assert_eq!(cluster.namespace(), "demo");
        assert_eq!(
            cluster.value["metadata"]["annotations"][REFERENCED_SERVICES_ANNOTATION],
            "boifi/boifi-control-plane.boifi.svc.cluster.local"
        );
        assert_eq!(
            cluster.value["spec"]["targetRefs"],
            serde_json::from_str::<Value>(WAYPOINT_REF).unwrap()
        );
        assert!(cluster.value["spec"].get("configPatches").is_none());
        // Exactly one resource loads the filter, attached through targetRefs only.
        let filters: Vec<&Document> = docs
            .iter()
            .filter(|d| matches!(d.kind(), "WasmPlugin" | "TrafficExtension"))
            .collect();
        assert_eq!(filters.len(), 1, "{name}");
        assert_eq!(filters[0].kind(), kind, "{name}");
        assert_eq!(filters[0].value["spec"]["targetRefs"], targets, "{name}");
        assert!(filters[0].value["spec"].get("selector").is_none());
        // Everything else is the base, unchanged.
        for doc in base.iter().filter(|d| d.kind() != "WasmPlugin") {
            let twin = docs.iter().find(|d| d.id() == doc.id()).unwrap();
            assert_eq!(twin.value, doc.value, "{name}: {} changed", doc.id());
        }
        assert_eq!(docs.len(), base.len() + 2, "{name}");
    }
}

/// The TrafficExtension loads the same module with the same digest, phase, match, failure
/// strategy and configuration as the base's WasmPlugin: only the API differs.
#[test]
fn the_traffic_extension_is_the_base_plugin_under_wasm() {
    let base = base();
    let plugin = &find(&base, "WasmPlugin", "boifi-fault").value["spec"];
    let docs = overlay("ambient-trafficextension");
    let extension = &find(&docs, "TrafficExtension", "boifi-fault").value["spec"];
    for field in ["phase", "match"] {
        assert_eq!(extension[field], plugin[field], "{field}");
    }
    for field in [
        "url",
        "sha256",
        "imagePullPolicy",
        "failStrategy",
        "pluginConfig",
    ] {
        assert_eq!(extension["wasm"][field], plugin[field], "wasm.{field}");
    }
}

fn findings(docs: &[Document]) -> Vec<String> {
    check_bundle(docs, &BundleScope::default())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn edited(
    docs: &[Document],
    kind: &str,
    name: &str,
    edit: impl FnOnce(&mut Value),
) -> Vec<Document> {
    let mut docs = docs.to_vec();
    let doc = docs
        .iter_mut()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap();
    edit(&mut doc.value);
    docs
}

fn annotate(docs: &[Document], value: &str) -> Vec<Document> {
    edited(docs, "EnvoyFilter", "boifi-control-plane-cluster", |v| {
        v["metadata"]["annotations"][REFERENCED_SERVICES_ANNOTATION] = json!(value);
    })
}

/// Without the cluster the filter in the waypoint has no control plane; each way of losing it
/// is found, and the two ways Istio offers to create it are accepted.
#[test]
fn a_waypoint_filter_without_the_control_plane_cluster_is_found() {
    for (name, kind, _) in forms() {
        let docs = overlay(name);
        assert_eq!(findings(&docs), Vec::<String>::new(), "{name}");
        let plugin = format!("{kind} demo/boifi-fault: targetRefs ");
        let without: Vec<Document> = docs
            .iter()
            .filter(|d| d.kind() != "EnvoyFilter")
            .cloned()
            .collect();
        let found = findings(&without);
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        assert!(found[0].starts_with(&plugin), "{name}: {found:#?}");
        assert!(
            found[0].ends_with(
                "has no cluster `outbound|8080||boifi-control-plane.boifi.svc.cluster.local` unless \
                 an EnvoyFilter in namespace `demo` that targets it carries the annotation \
                 `envoyfilter.istio.io/referenced-services: boifi/boifi-control-plane.boifi.svc.cluster.local`"
            ),
            "{name}: {found:#?}"
        );
        // A bare host is what Istio's own tests use; it is accepted.
        assert_eq!(
            findings(&annotate(
                &docs,
                "boifi-control-plane.boifi.svc.cluster.local"
            )),
            Vec::<String>::new()
        );
        // Another namespace: Istio compares it with the Service's and ignores the entry.
        let found = findings(&annotate(
            &docs,
            "demo/boifi-control-plane.boifi.svc.cluster.local",
        ));
        assert_eq!(found.len(), 2, "{name}: {found:#?}");
        assert!(found[0].starts_with(&plugin), "{found:#?}");
        assert!(
            found[1].ends_with(
                "qualifies `boifi-control-plane.boifi.svc.cluster.local` with namespace `demo`, \
                 but Istio matches it against the Service's own namespace `boifi`"
            ),
            "{found:#?}"
        );
        // A host that is no Service of the bundle.
        let found = findings(&annotate(
            &docs,
            "boifi/boifi-controlplane.boifi.svc.cluster.local",
        ));
        assert_eq!(found.len(), 2, "{name}: {found:#?}");
        assert!(
            found[1].ends_with(
                "names `boifi-controlplane.boifi.svc.cluster.local`, which is no Service of the bundle"
            ),
            "{found:#?}"
        );
        // The EnvoyFilter on another Gateway does not reach this waypoint.
        let found = findings(&edited(
            &docs,
            "EnvoyFilter",
            "boifi-control-plane-cluster",
            |v| {
                v["spec"]["targetRefs"][0]["name"] = json!("other-waypoint");
            },
        ));
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        assert!(found[0].starts_with(&plugin), "{found:#?}");
        // Option B of docs/design/ambient.md §2: a CLUSTER ADD; a waypoint only asks for
        // SIDECAR_INBOUND patches, so any other context adds nothing there (and is itself
        // reported, once the bundle's Gateway `waypoint` is known to be a waypoint).
        for (context, expected) in [("SIDECAR_INBOUND", 0), ("GATEWAY", 2), ("ANY", 2)] {
            let added = edited(&docs, "EnvoyFilter", "boifi-control-plane-cluster", |v| {
                v["metadata"].as_object_mut().unwrap().remove("annotations");
                v["spec"]["configPatches"] = json!([{
                    "applyTo": "CLUSTER",
                    "match": {"context": context},
                    "patch": {"operation": "ADD", "value": {
                        "name": "outbound|8080||boifi-control-plane.boifi.svc.cluster.local",
                        "type": "STRICT_DNS"}}}]);
            });
            let found = findings(&added);
            assert_eq!(found.len(), expected, "{name} {context}: {found:#?}");
            if expected > 0 {
                assert!(found[0].starts_with(&plugin), "{found:#?}");
                assert!(
                    found[1].ends_with(&format!(
                        "spec.configPatches[0].match.context `{context}` never applies in a \
                         waypoint, which takes SIDECAR_INBOUND patches"
                    )),
                    "{found:#?}"
                );
            }
        }
    }
    // The sidecar form (no targetRefs) needs no such EnvoyFilter.
    assert_eq!(findings(&base()), Vec::<String>::new());
}

/// Mistakes in the ambient resources are refused by the schemas and Istio's rules, naming the
/// field.
#[test]
fn bad_ambient_resources_are_refused_naming_the_field() {
    let waypoint = overlay("ambient-waypoint");
    let extension = overlay("ambient-trafficextension");
    let mut checker = checker();
    let cases: Vec<(Vec<Document>, &str, &str, &str)> = vec![
        (
            edited(&waypoint, "WasmPlugin", "boifi-fault", |v| {
                v["spec"]["selector"] = json!({"matchLabels": {"app": "frontend"}});
            }),
            "WasmPlugin",
            "spec",
            "only one of targetRefs or selector can be set",
        ),
        (
            edited(&waypoint, "WasmPlugin", "boifi-fault", |v| {
                v["spec"]["targetRefs"][0]["group"] = json!("");
            }),
            "WasmPlugin",
            "spec.targetRefs[0]",
            "but was `/Gateway`",
        ),
        (
            edited(&waypoint, "WasmPlugin", "boifi-fault", |v| {
                v["spec"]["targetRefs"][0]["kind"] = json!("Deployment");
            }),
            "WasmPlugin",
            "spec.targetRefs[0]",
            "targetRef must be to one of core/Service",
        ),
        (
            edited(&waypoint, "WasmPlugin", "boifi-fault", |v| {
                v["spec"]["targetRefs"][0]["namespace"] = json!("istio-system");
            }),
            "WasmPlugin",
            "spec.targetRefs[0].namespace",
            "cross namespace referencing is not currently supported",
        ),
        (
            edited(&extension, "TrafficExtension", "boifi-fault", |v| {
                v["spec"]["lua"] = json!({"inlineCode": "function envoy_on_request(h) end"});
            }),
            "TrafficExtension",
            "spec",
            "exactly one of wasm or lua must be set",
        ),
        (
            edited(&extension, "TrafficExtension", "boifi-fault", |v| {
                v["spec"]["wasm"]["pluginconfig"] = v["spec"]["wasm"]["pluginConfig"].take();
            }),
            "TrafficExtension",
            "/spec/wasm",
            "pluginconfig",
        ),
        (
            edited(&extension, "TrafficExtension", "boifi-fault", |v| {
                v["spec"]["phase"] = json!("STAT");
            }),
            "TrafficExtension",
            "/spec/phase",
            "STAT",
        ),
        (
            edited(&waypoint, "Gateway", "waypoint", |v| {
                v["spec"]["listeners"][0]["port"] = json!(0);
            }),
            "Gateway",
            "/spec/listeners/0/port",
            "0",
        ),
        (
            edited(&waypoint, "Gateway", "waypoint", |v| {
                v["spec"]["gatewayClass"] = v["spec"]["gatewayClassName"].take();
            }),
            "Gateway",
            "/spec",
            "gatewayClass",
        ),
        (
            edited(
                &waypoint,
                "EnvoyFilter",
                "boifi-control-plane-cluster",
                |v| {
                    v["spec"]["workloadSelector"] = json!({"labels": {"app": "waypoint"}});
                },
            ),
            "EnvoyFilter",
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        ),
        (
            edited(
                &waypoint,
                "EnvoyFilter",
                "boifi-control-plane-cluster",
                |v| {
                    v["spec"]["configPatches"] = json!([{"applyTo": "CLUSTERS",
                    "match": {"context": "SIDECAR_INBOUND"}, "patch": {"operation": "ADD", "value": {}}}]);
                },
            ),
            "EnvoyFilter",
            "/spec/configPatches/0/applyTo",
            "CLUSTERS",
        ),
    ];
    for (docs, kind, path, needle) in cases {
        let doc = docs.iter().find(|d| d.kind() == kind).unwrap();
        let problems = checker.check_document(doc);
        assert!(
            problems
                .iter()
                .any(|p| p.path == path && p.message.contains(needle)),
            "expected `{needle}` at {path}, got {problems:#?}"
        );
    }
}

/// The chart's ambient value sets deploy what the ambient overlays deploy: the same waypoint,
/// the same EnvoyFilter (annotation included) and the same filter spec, so the two cannot drift.
#[test]
fn the_charts_ambient_value_sets_render_what_the_overlays_deploy() {
    let chart = crate::support::chart_bundle("ambient");
    let overlay_docs = overlay("ambient-waypoint");
    for (kind, name) in [
        ("Gateway", "waypoint"),
        ("EnvoyFilter", "boifi-control-plane-cluster"),
        ("WasmPlugin", "boifi-fault"),
    ] {
        let rendered = find(&chart, kind, name);
        let shipped = find(&overlay_docs, kind, name);
        assert_eq!(rendered.namespace(), shipped.namespace(), "{kind}");
        assert_eq!(rendered.value["spec"], shipped.value["spec"], "{kind}");
        assert_eq!(
            rendered.value["metadata"]["annotations"], shipped.value["metadata"]["annotations"],
            "{kind}"
        );
    }
    // TrafficExtension for one Service: the overlay's TrafficExtension with the per-Service
    // overlay's targetRefs.
    let chart = crate::support::chart_bundle("ambient-trafficextension");
    assert!(chart
        .iter()
        .all(|d| d.kind() != "Gateway" && d.kind() != "WasmPlugin"));
    let rendered = &find(&chart, "TrafficExtension", "boifi-fault").value["spec"];
    let mut expected = find(
        &overlay("ambient-trafficextension"),
        "TrafficExtension",
        "boifi-fault",
    )
    .value["spec"]
        .clone();
    expected["targetRefs"] = find(&overlay("ambient-service"), "WasmPlugin", "boifi-fault").value
        ["spec"]["targetRefs"]
        .clone();
    assert_eq!(rendered, &expected);
    find(&chart, "EnvoyFilter", "boifi-control-plane-cluster");
}

/// The native module in a waypoint (manifests/native/istio-waypoint): the same module
/// EnvoyFilter as for sidecars, on the waypoint Gateway, with the waypoint's Deployment given
/// the module through the Gateway's parameters. A patch of a context a waypoint never asks for,
/// a missing or unreadable parameters ConfigMap, are found.
#[test]
fn the_native_waypoint_bundle_and_its_mistakes() {
    let docs = kustomize(&manifests().join("native/istio-waypoint"));
    assert_eq!(findings(&docs), Vec::<String>::new());
    let sidecar = kustomize(&manifests().join("native/istio"));
    let module = &find(&docs, "EnvoyFilter", "boifi-fault-native").value["spec"];
    let sidecar_module = &find(&sidecar, "EnvoyFilter", "boifi-fault-native").value["spec"];
    assert_eq!(module["configPatches"], sidecar_module["configPatches"]);
    assert_eq!(
        module["targetRefs"],
        serde_json::from_str::<Value>(WAYPOINT_REF).unwrap()
    );
    // The ConfigMap gives the proxy container the module and its search path.
    let options = find(&docs, "ConfigMap", "boifi-waypoint-options");
    let deployment: Value =
        serde_norway::from_str(options.value["data"]["deployment"].as_str().unwrap()).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let proxy = &pod["containers"][0];
    assert_eq!(proxy["name"], "istio-proxy");
    assert_eq!(proxy["env"][0]["name"], "ENVOY_DYNAMIC_MODULES_SEARCH_PATH");
    assert_eq!(
        proxy["volumeMounts"][0]["mountPath"],
        proxy["env"][0]["value"]
    );
    assert_eq!(proxy["volumeMounts"][0]["name"], pod["volumes"][0]["name"]);

    let found = findings(&edited(&docs, "EnvoyFilter", "boifi-fault-native", |v| {
        v["spec"]["configPatches"][0]["match"]["context"] = json!("GATEWAY");
    }));
    assert_eq!(
        found,
        [
            "EnvoyFilter demo/boifi-fault-native: spec.configPatches[0].match.context `GATEWAY` \
          never applies in a waypoint, which takes SIDECAR_INBOUND patches"
        ]
    );
    let found = findings(&edited(&docs, "Gateway", "waypoint", |v| {
        v["spec"]["infrastructure"]["parametersRef"]["name"] = json!("boifi-options");
    }));
    assert_eq!(
        found,
        [
            "Gateway demo/waypoint: spec.infrastructure.parametersRef names ConfigMap \
          `boifi-options`, which is not in the bundle"
        ]
    );
    let found = findings(&edited(&docs, "ConfigMap", "boifi-waypoint-options", |v| {
        v["data"]["deployment"] = json!("- not\n- a map\n");
    }));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("data.deployment is not a YAML object"));
}

//! The Helm chart (`charts/boifi`) through the real `helm` (`make deps` installs a pinned one):
//! `helm lint --strict` and `helm template` for each value set, every rendered document against
//! the strict schemas and the same consistency rules as `manifests/`, and the HA value set
//! against what `manifests/base` deploys.

use std::collections::BTreeMap;

use boifi_core::wire::PluginConfig;
use boifi_deploy::consistency::{check_bundle, BundleScope};
use boifi_deploy::render::{HelmRelease, RenderError};
use boifi_deploy::yaml::{Document, ResourceId};
use serde_json::{json, Value};

use crate::support::{
    base, chart, chart_bundle, chart_bundles, chart_value_sets, checker, find, helm, named,
};

/// What the operator brings: the release namespace (`helm install --create-namespace`), the
/// application's namespace, a Secret they manage when a value set names one, and the ConfigMap
/// holding their Prometheus's CA (`guards.prometheus.caConfigMap`).
fn external_for(docs: &[Document], release_namespace: &str) -> Vec<ResourceId> {
    let mut out: Vec<ResourceId> = [
        format!("Namespace/{release_namespace}"),
        "Namespace/demo".to_owned(),
    ]
    .iter()
    .map(|id| id.parse().unwrap())
    .collect();
    let deployment = find(docs, "Deployment", "boifi-control-plane");
    for volume in deployment.value["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
    {
        if volume["name"] == "prometheus-ca" {
            if let Some(name) = volume["configMap"]["name"].as_str() {
                out.push(
                    format!("ConfigMap/{release_namespace}/{name}")
                        .parse()
                        .unwrap(),
                );
            }
        }
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            if name != "boifi-auth-token" {
                out.push(
                    format!("Secret/{release_namespace}/{name}")
                        .parse()
                        .unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn helm_lint_is_clean_for_every_value_set() {
    for (name, release) in chart_value_sets() {
        let report = release
            .lint(helm())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(
            report.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{name}: {report}"
        );
        assert!(
            !report.contains("[WARNING]") && !report.contains("[ERROR]"),
            "{name}: {report}"
        );
    }
}

#[test]
fn every_value_set_renders_valid_complete_consistent_documents() {
    let mut checker = checker();
    let sets = chart_bundles();
    assert_eq!(
        sets.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "chart default",
            "chart ambient-mesh-authorization",
            "chart ambient-trafficextension",
            "chart ambient",
            "chart external-etcd",
            "chart ha-etcd",
            "chart mesh-authorization"
        ]
    );
    for (name, docs) in sets {
        let scope = BundleScope {
            complete: true,
            external: external_for(&docs, "boifi"),
        };
        let mut problems: Vec<String> = checker
            .check_bundle(&docs, &scope)
            .iter()
            .map(ToString::to_string)
            .collect();
        // No schema of prometheus-operator's CRDs is available offline: the ServiceMonitor is
        // held to the cross-object rules only (it must find the Service by a port it has).
        let monitors = docs.iter().filter(|d| d.kind() == "ServiceMonitor").count();
        let unschema: Vec<&String> = problems
            .iter()
            .filter(|p| p.contains("monitoring.coreos.com/v1") && p.contains("no schema"))
            .collect();
        assert_eq!(unschema.len(), monitors, "{name}: {problems:#?}");
        problems.retain(|p| !(p.contains("monitoring.coreos.com/v1") && p.contains("no schema")));
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        for doc in &docs {
            assert_eq!(
                doc.value["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "Helm",
                "{name}: {}",
                doc.id()
            );
        }
    }
}

/// `spec` of every resource, without labels (the chart adds Helm's own).
fn specs_without_labels(docs: &[Document]) -> BTreeMap<String, Value> {
    fn strip(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| k.as_str() != "labels")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    docs.iter()
        .filter(|d| d.value.get("spec").is_some())
        .map(|d| (d.id().to_string(), strip(&d.value["spec"])))
        .collect()
}

/// The HA value set deploys what `manifests/base` deploys: the same specs, resource for
/// resource (the chart leaves the namespace to `helm install --create-namespace` and creates
/// the token Secret), so the chart and the kustomize base cannot drift apart.
#[test]
fn ha_etcd_renders_what_manifests_base_deploys() {
    let chart = specs_without_labels(&chart_bundle("ha-etcd"));
    let base = specs_without_labels(&base());
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>()
    );
    for (id, spec) in &base {
        assert_eq!(&chart[id], spec, "{id}");
    }
    let docs = chart_bundle("ha-etcd");
    // The control plane's pods stay out of the mesh, as the base's namespace label keeps them.
    let template = &find(&docs, "Deployment", "boifi-control-plane").value["spec"]["template"];
    assert_eq!(
        template["metadata"]["labels"]["sidecar.istio.io/inject"],
        "false"
    );
    let sts = &find(&docs, "StatefulSet", "etcd").value["spec"]["template"];
    assert_eq!(
        sts["metadata"]["labels"]["sidecar.istio.io/inject"],
        "false"
    );
}

#[test]
fn default_is_one_replica_on_the_embedded_store_with_a_generated_token() {
    let docs = chart_bundle("default");
    assert!(docs.iter().all(|d| d.kind() != "StatefulSet"), "no etcd");
    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    let spec = &deployment.value["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let container = &spec["template"]["spec"]["containers"][0];
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["STORAGE_BACKEND"], "embedded");
    let mount = named(&container["volumeMounts"], &json!("data"));
    assert_eq!(mount["mountPath"], env["DATA_DIR"]);
    let claim = find(&docs, "PersistentVolumeClaim", "boifi-control-plane-data");
    assert_eq!(
        claim.value["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    // The claim is held to the strict PersistentVolumeClaim schema (inlined in the
    // StatefulSet's): a misspelt field is found.
    let mut misspelt = claim.clone();
    misspelt.value["spec"]["accessMode"] = json!(["ReadWriteOnce"]);
    let problems = checker().check_document(&misspelt);
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("accessMode")),
        "{problems:#?}"
    );
    assert_eq!(container["image"], "ghcr.io/boifi/boifi-server:0.1.0");
    let secret = find(&docs, "Secret", "boifi-auth-token");
    let token = secret.value["data"]["token"].as_str().unwrap();
    // 48 random characters, base64 encoded: 64 characters.
    assert_eq!(token.len(), 64, "{token}");
    // The chart's WasmPlugin is the base's, field for field.
    assert_eq!(
        find(&docs, "WasmPlugin", "boifi-fault").value["spec"],
        find(&base(), "WasmPlugin", "boifi-fault").value["spec"]
    );
}

/// The bootstrap fragment that gives the per-policy counters their `policy` tag holds the
/// filter's own regex, as JSON Envoy reads.
#[test]
fn the_stats_tag_bootstrap_holds_the_filters_policy_tag() {
    let docs = chart_bundle("default");
    let config = find(&docs, "ConfigMap", "boifi-stats-tags");
    assert_eq!(config.namespace(), "demo");
    let bootstrap: Value = serde_json::from_str(
        config.value["data"]["custom_bootstrap.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        bootstrap,
        json!({"stats_config": {"stats_tags": [
            {"tag_name": "policy", "regex": boifi_engine::metrics::POLICY_TAG_REGEX}
        ]}})
    );
}

#[test]
fn external_etcd_uses_the_given_endpoints_and_the_operators_secret() {
    let docs = chart_bundle("external-etcd");
    assert!(docs
        .iter()
        .all(|d| d.kind() != "StatefulSet" && d.kind() != "Secret"));
    let container = &find(&docs, "Deployment", "boifi-control-plane").value["spec"]["template"]
        ["spec"]["containers"][0];
    let endpoints = named(&container["env"], &json!("ETCD_ENDPOINTS"));
    assert_eq!(
        endpoints["value"],
        "https://etcd-a.example.internal:2379,https://etcd-b.example.internal:2379,https://etcd-c.example.internal:2379"
    );
    let pdb = find(&docs, "PodDisruptionBudget", "boifi-control-plane");
    assert_eq!(pdb.value["spec"]["minAvailable"], 2);
    // prometheus-operator's namespace may scrape; the ServiceMonitor finds the Service.
    let policy = find(&docs, "NetworkPolicy", "boifi-control-plane");
    let from: Vec<&Value> = policy.value["spec"]["ingress"][0]["from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|peer| &peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
        .collect();
    assert_eq!(from, [&json!("demo"), &json!("shop"), &json!("monitoring")]);
    let monitor = find(&docs, "ServiceMonitor", "boifi-control-plane");
    assert_eq!(monitor.value["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor.value["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    // The rule that checks it is not vacuous: a port the Service lacks is found.
    let mut broken = docs.clone();
    broken
        .iter_mut()
        .find(|d| d.kind() == "ServiceMonitor")
        .unwrap()
        .value["spec"]["endpoints"][0]["port"] = json!("metrics");
    let findings: Vec<String> = check_bundle(&broken, &BundleScope::default())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        findings
            .iter()
            .any(|f| f.contains("endpoint port `metrics` is not a port name")),
        "{findings:#?}"
    );
    // Grafana's sidecar gets the dashboard file as it is in the repository.
    let dashboard = find(&docs, "ConfigMap", "boifi-grafana-dashboard");
    assert_eq!(
        dashboard.value["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    let file = std::fs::read_to_string(chart().join("dashboards/boifi.json")).unwrap();
    assert_eq!(
        dashboard.value["data"]["boifi.json"].as_str().unwrap(),
        file
    );
    // The filter for frontend only.
    assert_eq!(
        find(&docs, "WasmPlugin", "boifi-fault").value["spec"]["selector"],
        json!({"matchLabels": {"app": "frontend"}})
    );
}

/// Installed into another namespace, the filter's upstream follows the release: its default
/// cluster and authority name the Service where the chart put it, and the checks agree.
#[test]
fn the_filters_upstream_follows_the_release_namespace() {
    let mut release = HelmRelease::new(&chart(), "chaos", "chaos");
    release.set.push("store.type=etcd".to_owned());
    release.set.push("etcd.enabled=true".to_owned());
    release.set.push("controlPlane.replicas=2".to_owned());
    let docs = release.template(helm()).unwrap();
    let plugin = find(&docs, "WasmPlugin", "boifi-fault");
    let config = PluginConfig::from_json(
        &serde_json::to_vec(&plugin.value["spec"]["pluginConfig"]).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config.control_plane_cluster,
        "outbound|8080||boifi-control-plane.chaos.svc.cluster.local"
    );
    assert_eq!(
        config.control_plane_authority,
        "boifi-control-plane.chaos.svc.cluster.local:8080"
    );
    let scope = BundleScope {
        complete: true,
        external: external_for(&docs, "chaos"),
    };
    let problems = checker().check_bundle(&docs, &scope);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Values that cannot work are refused by `helm template` itself, with a message naming the
/// value (values.schema.json, and the chart's checks for what a schema cannot express).
#[test]
fn values_that_cannot_work_are_refused() {
    let cases: [(&[&str], &str); 10] = [
        (&["controlPlane.replicas=2"], "/controlPlane/replicas"),
        (
            &["store.type=etcd"],
            "set etcd.enabled=true or list store.etcd.endpoints",
        ),
        (
            &[
                "store.type=etcd",
                "etcd.enabled=true",
                "store.etcd.endpoints={http://e:2379}",
            ],
            "use the external etcd or the chart's, not both",
        ),
        (
            &["wasmPlugin.failStrategy=FAIL_SOMETIMES"],
            "/wasmPlugin/failStrategy",
        ),
        (&["controlPlane.replica=2"], "replica"),
        (
            &[
                "wasmPlugin.targetRefs[0].kind=Service",
                "wasmPlugin.targetRefs[0].name=cart",
            ],
            "which has no cluster for the control plane unless ambient.enabled=true",
        ),
        (
            &["ambient.enabled=true", "wasmPlugin.selector.app=frontend"],
            "a waypoint ignores selectors",
        ),
        (
            &[
                "ambient.enabled=true",
                "wasmPlugin.targetRefs[0].kind=Deployment",
                "wasmPlugin.targetRefs[0].name=cart",
            ],
            "/wasmPlugin/targetRefs/0/kind",
        ),
        (&["wasmPlugin.kind=EnvoyFilter"], "/wasmPlugin/kind"),
        (
            &["store.type=etcd", "etcd.enabled=true", "etcd.replicas=2"],
            "/etcd/replicas",
        ),
    ];
    for (set, expected) in cases {
        let mut release = HelmRelease::new(&chart(), "boifi", "boifi");
        release.set = set.iter().map(|s| (*s).to_owned()).collect();
        match release.template(helm()) {
            Err(RenderError::Failed { stderr, .. }) => {
                assert!(stderr.contains(expected), "{set:?}: {stderr}");
            }
            other => panic!("{set:?}: expected helm to refuse, got {other:?}"),
        }
    }
}

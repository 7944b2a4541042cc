//! The manifests against each other and against the filter's own configuration type.

use boifi_core::wire::{
    PluginConfig, DEFAULT_CONTROL_PLANE_AUTHORITY, DEFAULT_CONTROL_PLANE_CLUSTER,
};
use boifi_deploy::check::plugin_configs;
use boifi_deploy::consistency::{
    check_bundle, check_control_plane_reachable, container_setting, parse_istio_cluster,
    pod_templates, BundleScope, CLUSTER_DOMAIN, PART_OF_LABEL,
};
use boifi_deploy::yaml::Document;
use serde_json::{json, Value};

use crate::support::{base, chart_bundles, find, named, overlay_dirs};

/// Every bundle the project ships: kustomize's base and overlays, and the chart's value sets.
pub fn bundles() -> Vec<(String, Vec<Document>)> {
    let mut out = vec![("base".to_owned(), base())];
    for dir in overlay_dirs() {
        out.push((dir.display().to_string(), crate::support::kustomize(&dir)));
    }
    out.extend(chart_bundles());
    out
}

#[test]
fn control_plane_service_selects_the_two_replicas_on_8080() {
    let docs = base();
    let service = find(&docs, "Service", "boifi-control-plane");
    assert_eq!(service.namespace(), "boifi");
    assert_eq!(service.value["spec"]["type"], "ClusterIP");
    let ports = service.value["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], 8080);
    let templates = pod_templates(&docs);
    let selected: Vec<_> = templates
        .iter()
        .filter(|t| {
            service.value["spec"]["selector"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| t.labels.get(k).map(String::as_str) == v.as_str())
        })
        .collect();
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0].owner.name, "boifi-control-plane");
    assert_eq!(
        selected[0].resolve_port(&ports[0]["targetPort"]),
        Some(8080)
    );
    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    assert_eq!(deployment.value["spec"]["replicas"], 2);
}

#[test]
fn the_filters_default_cluster_and_authority_name_the_control_plane_service() {
    let docs = base();
    let cluster =
        parse_istio_cluster(DEFAULT_CONTROL_PLANE_CLUSTER).expect("an Istio outbound cluster name");
    let service = find(&docs, "Service", &cluster.service);
    assert_eq!(service.namespace(), cluster.namespace);
    assert!(service.value["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == cluster.port));
    assert_eq!(
        DEFAULT_CONTROL_PLANE_AUTHORITY,
        format!(
            "{}.{}.{CLUSTER_DOMAIN}:{}",
            cluster.service, cluster.namespace, cluster.port
        )
    );
    let defaults = PluginConfig::default();
    assert_eq!(
        defaults.control_plane_cluster,
        DEFAULT_CONTROL_PLANE_CLUSTER
    );
    // A sidecar in `demo` is admitted by the NetworkPolicy on that port.
    let plugin = find(&docs, "WasmPlugin", "boifi-fault");
    assert_eq!(plugin.namespace(), "demo");
    let findings = check_control_plane_reachable(&docs, plugin, DEFAULT_CONTROL_PLANE_CLUSTER);
    assert!(findings.is_empty(), "{findings:#?}");
    // …and a sidecar of another namespace is not.
    let mut elsewhere = plugin.clone();
    elsewhere.value["metadata"]["namespace"] = json!("shop");
    let findings = check_control_plane_reachable(&docs, &elsewhere, DEFAULT_CONTROL_PLANE_CLUSTER);
    assert_eq!(findings.len(), 1, "{findings:#?}");
}

#[test]
fn every_plugin_config_is_accepted_by_the_filters_config_type() {
    for (name, docs) in bundles() {
        // The bundle checks hold boifi's WasmPlugins (by label) to the filter's configuration.
        for plugin in docs.iter().filter(|d| d.kind() == "WasmPlugin") {
            assert_eq!(
                plugin.value["metadata"]["labels"][PART_OF_LABEL],
                "boifi",
                "{name}: {}",
                plugin.id()
            );
        }
        let configs = plugin_configs(&docs);
        assert!(
            !configs.is_empty(),
            "{name}: no WasmPlugin with pluginConfig"
        );
        for (plugin, config) in configs {
            let bytes = serde_json::to_vec(&config).unwrap();
            let parsed = PluginConfig::from_json(&bytes).unwrap_or_else(|e| {
                panic!("{name}: {plugin}: pluginConfig refused by the filter: {e}")
            });
            assert_eq!(
                parsed.control_plane_cluster, DEFAULT_CONTROL_PLANE_CLUSTER,
                "{name}: {plugin}"
            );
            assert_eq!(
                parsed.control_plane_authority, DEFAULT_CONTROL_PLANE_AUTHORITY,
                "{name}: {plugin}"
            );
            // Every key the manifest sets is read (none silently defaulted by a typo).
            let back = serde_json::to_value(&parsed).unwrap();
            for key in config.as_object().unwrap().keys() {
                assert_eq!(
                    back[key], config[key],
                    "{name}: {plugin}: pluginConfig.{key}"
                );
            }
        }
    }
    // The filter's type refuses what it should, so the check above is not vacuous.
    let bad = json!({"control_plane_cluster": "outbound|8080||x.y.svc.cluster.local", "log_levle": "info"});
    assert!(PluginConfig::from_json(&serde_json::to_vec(&bad).unwrap()).is_err());
}

fn etcd_args(docs: &[Document]) -> Vec<String> {
    find(docs, "StatefulSet", "etcd").value["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn etcd_endpoints_are_the_statefulsets_pod_dns_names() {
    let docs = base();
    let sts = find(&docs, "StatefulSet", "etcd");
    let service = sts.value["spec"]["serviceName"].as_str().unwrap();
    let replicas = sts.value["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(replicas, 3);
    let headless = find(&docs, "Service", service);
    assert_eq!(headless.value["spec"]["clusterIP"], "None");
    let pods: Vec<String> = (0..replicas)
        .map(|i| format!("etcd-{i}.{service}.boifi.{CLUSTER_DOMAIN}"))
        .collect();

    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    let container = &deployment.value["spec"]["template"]["spec"]["containers"][0];
    let endpoints = container_setting(container, "ETCD_ENDPOINTS", "--etcd-endpoints").unwrap();
    let expected: Vec<String> = pods.iter().map(|p| format!("http://{p}:2379")).collect();
    assert_eq!(endpoints.split(',').collect::<Vec<_>>(), expected);

    // The members announce themselves under the same names and form one cluster of them.
    let args = etcd_args(&docs);
    let arg = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("etcd has no {flag}"))
            .to_owned()
    };
    let initial: Vec<String> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| format!("etcd-{i}=http://{p}:2380"))
        .collect();
    assert_eq!(arg("--initial-cluster"), initial.join(","));
    assert_eq!(
        arg("--advertise-client-urls"),
        format!("http://$(POD_NAME).{service}.boifi.{CLUSTER_DOMAIN}:2379")
    );
    assert_eq!(
        arg("--initial-advertise-peer-urls"),
        format!("http://$(POD_NAME).{service}.boifi.{CLUSTER_DOMAIN}:2380")
    );
    assert_eq!(arg("--name"), "$(POD_NAME)");
    assert_eq!(
        arg("--data-dir").rsplit_once('/').unwrap().0,
        "/var/lib/etcd"
    );
}

fn findings_after(edit: impl FnOnce(&mut Vec<Document>)) -> Vec<String> {
    let mut docs = base();
    edit(&mut docs);
    check_bundle(&docs, &BundleScope::default())
        .into_iter()
        .map(|f| f.to_string())
        .collect()
}

fn doc_mut<'a>(docs: &'a mut [Document], kind: &str, name: &str) -> &'a mut Value {
    &mut docs
        .iter_mut()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap()
        .value
}

/// A change to the base bundle.
type Edit = Box<dyn FnOnce(&mut Vec<Document>)>;

/// Each rule fires when the manifests disagree, so "no finding" above means agreement.
#[test]
fn disagreements_are_found() {
    assert!(findings_after(|_| {}).is_empty());
    // Only boifi's own WasmPlugins are held to boifi's configuration.
    assert!(findings_after(|d| {
        let plugin = doc_mut(d, "WasmPlugin", "boifi-fault");
        plugin["spec"]["pluginConfig"] = json!({"openid_server": "authn"});
        plugin["metadata"]["labels"]["app.kubernetes.io/part-of"] = json!("auth");
    })
    .is_empty());
    // Without pluginConfig the filter's defaults apply, and they name the Service too.
    assert!(findings_after(|d| {
        doc_mut(d, "WasmPlugin", "boifi-fault")["spec"]
            .as_object_mut()
            .unwrap()
            .remove("pluginConfig");
    })
    .is_empty());
    let mut cases: Vec<(&str, Edit)> = vec![
        (
            "selects no pod template",
            Box::new(|d| {
                doc_mut(d, "Service", "boifi-control-plane")["spec"]["selector"]
                    ["app.kubernetes.io/name"] = json!("boifi-server");
            }),
        ),
        (
            "is not a container port",
            Box::new(|d| {
                doc_mut(d, "Service", "boifi-control-plane")["spec"]["ports"][0]["targetPort"] =
                    json!("metrics");
            }),
        ),
        (
            "are not the StatefulSet's pod URLs",
            Box::new(|d| {
                doc_mut(d, "StatefulSet", "etcd")["spec"]["replicas"] = json!(5);
            }),
        ),
        (
            "name no StatefulSet",
            Box::new(|d| {
                doc_mut(d, "StatefulSet", "etcd")["spec"]["serviceName"] = json!("etcd-peers");
            }),
        ),
        (
            "no NetworkPolicy admits namespace `demo`",
            Box::new(|d| {
                doc_mut(d, "NetworkPolicy", "boifi-control-plane")["spec"]["ingress"][0]["from"]
                    [0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] =
                    json!("default");
            }),
        ),
        (
            "names no container port",
            Box::new(|d| {
                doc_mut(d, "Deployment", "boifi-control-plane")["spec"]["template"]["spec"]
                    ["containers"][0]["readinessProbe"]["httpGet"]["port"] = json!("admin");
            }),
        ),
        (
            "is not a Service in the bundle",
            Box::new(|d| d.retain(|doc| !(doc.kind() == "Service" && doc.name() == "etcd"))),
        ),
        (
            "control_plane_authority",
            Box::new(|d| {
                doc_mut(d, "WasmPlugin", "boifi-fault")["spec"]["pluginConfig"]
                    ["control_plane_authority"] = json!("boifi-control-plane:8080");
            }),
        ),
        (
            "has no port 8080",
            Box::new(|d| {
                doc_mut(d, "Service", "boifi-control-plane")["spec"]["ports"][0]["port"] =
                    json!(80);
            }),
        ),
        (
            "PodDisruptionBudget boifi/boifi-control-plane: spec.selector selects no pod template",
            Box::new(|d| {
                doc_mut(d, "PodDisruptionBudget", "boifi-control-plane")["spec"]["selector"]
                    ["matchLabels"]["app.kubernetes.io/name"] = json!("x");
            }),
        ),
    ];
    cases.push((
        "spec.pluginConfig is refused by the filter",
        Box::new(|d| {
            doc_mut(d, "WasmPlugin", "boifi-fault")["spec"]["pluginConfig"]["log_level"] =
                json!("verbose");
        }),
    ));
    for (expected, edit) in cases {
        let findings = findings_after(edit);
        assert!(
            findings.iter().any(|f| f.contains(expected)),
            "expected `{expected}`, got {findings:#?}"
        );
    }
}

#[test]
fn auth_token_file_is_the_mounted_secret_key() {
    let docs = base();
    let spec = &find(&docs, "Deployment", "boifi-control-plane").value["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let file = container_setting(container, "AUTH_TOKEN_FILE", "--auth-token-file").unwrap();
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "boifi-auth-token")
        .expect("a volume of Secret boifi-auth-token");
    let mount = named(&container["volumeMounts"], &volume["name"]);
    assert_eq!(mount["readOnly"], true);
    let item = &volume["secret"]["items"][0];
    assert_eq!(item["key"], "token");
    assert_eq!(
        file,
        format!(
            "{}/{}",
            mount["mountPath"].as_str().unwrap(),
            item["path"].as_str().unwrap()
        )
    );
}

#[test]
fn every_container_is_non_root_read_only_and_bounded() {
    for (name, docs) in bundles() {
        for template in pod_templates(&docs) {
            let pod_security = &template.spec["securityContext"];
            assert_eq!(
                pod_security["runAsNonRoot"], true,
                "{name}: {}",
                template.owner
            );
            assert_eq!(
                pod_security["seccompProfile"]["type"], "RuntimeDefault",
                "{name}: {}",
                template.owner
            );
            assert_ne!(
                template.spec["automountServiceAccountToken"], true,
                "{name}: {}",
                template.owner
            );
            for container in template.containers() {
                let at = format!("{name}: {} container {}", template.owner, container["name"]);
                let security = &container["securityContext"];
                assert_eq!(security["readOnlyRootFilesystem"], true, "{at}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{at}");
                assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{at}");
                for bound in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            container["resources"][bound][resource].is_string(),
                            "{at}: resources.{bound}.{resource}"
                        );
                    }
                }
                assert!(
                    container["livenessProbe"].is_object()
                        && container["readinessProbe"].is_object(),
                    "{at}: probes"
                );
            }
        }
    }
}

#[test]
fn base_spreads_replicas_across_nodes_and_keeps_them_through_disruptions() {
    let docs = base();
    for (kind, name, min_available) in [
        ("Deployment", "boifi-control-plane", 1),
        ("StatefulSet", "etcd", 2),
    ] {
        let workload = find(&docs, kind, name);
        let template = &workload.value["spec"]["template"];
        let terms = template["spec"]["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .unwrap_or_else(|| panic!("{kind} {name}: no required anti-affinity"));
        assert_eq!(terms[0]["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(
            terms[0]["labelSelector"]["matchLabels"],
            template["metadata"]["labels"]
        );
        let pdb = find(&docs, "PodDisruptionBudget", name);
        assert_eq!(pdb.value["spec"]["minAvailable"], min_available);
        assert!(min_available < workload.value["spec"]["replicas"].as_u64().unwrap());
    }
    let sts = find(&docs, "StatefulSet", "etcd");
    let claims = sts.value["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap();
    let mounts = sts.value["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == claims[0]["metadata"]["name"]),
        "etcd data is on the PVC"
    );
}

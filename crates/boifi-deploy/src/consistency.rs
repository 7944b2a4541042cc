//! Rules across objects, which no schema sees: selectors that select the pods they mean to,
//! ports and probes that name real container ports, the etcd endpoints the control plane is
//! given against the StatefulSet's pod DNS names, the filter's control-plane cluster against
//! the Service, the NetworkPolicy that must let the filter reach it, and the ServiceMonitor
//! that must find the Service. They read rendered documents (`kubectl kustomize`,
//! `helm template`), whichever tool produced them.

use std::collections::{BTreeMap, BTreeSet};

use boifi_core::wire::PluginConfig;
use serde_json::Value;

use crate::yaml::{items_at, str_at, value_at, Document, ResourceId};

/// The cluster DNS suffix the manifests assume (`<svc>.<ns>.svc.cluster.local`).
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// One broken rule, on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The resource the rule is about.
    pub resource: ResourceId,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.resource, self.message)
    }
}

/// A pod template of a workload in the bundle.
#[derive(Debug, Clone)]
pub struct PodTemplate<'a> {
    /// The workload.
    pub owner: ResourceId,
    /// Its namespace.
    pub namespace: &'a str,
    /// Template labels.
    pub labels: BTreeMap<String, String>,
    /// The pod spec.
    pub spec: &'a Value,
}

impl PodTemplate<'_> {
    /// All containers (init containers included).
    pub fn containers(&self) -> impl Iterator<Item = &Value> {
        ["initContainers", "containers"]
            .into_iter()
            .filter_map(|key| self.spec.get(key).and_then(Value::as_array))
            .flatten()
    }

    /// Resolves a port (number, or name of a container port) to a container port number.
    #[must_use]
    pub fn resolve_port(&self, port: &Value) -> Option<u64> {
        let ports = self
            .containers()
            .filter_map(|c| c.get("ports").and_then(Value::as_array))
            .flatten();
        let mut ports = ports.filter_map(|p| {
            Some((
                p.get("name").and_then(Value::as_str).unwrap_or(""),
                p.get("containerPort").and_then(Value::as_u64)?,
            ))
        });
        match port {
            Value::Number(n) => {
                let n = n.as_u64()?;
                ports
                    .find(|(_, number)| *number == n)
                    .map(|(_, number)| number)
            }
            Value::String(name) => ports.find(|(n, _)| n == name).map(|(_, number)| number),
            _ => None,
        }
    }
}

/// One HTTP probe of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// The workload.
    pub owner: ResourceId,
    /// The container.
    pub container: String,
    /// `livenessProbe`, `readinessProbe` or `startupProbe`.
    pub kind: String,
    /// `httpGet.path`.
    pub path: String,
    /// The port, resolved to a number (`None` when it names no container port).
    pub port: Option<u64>,
}

fn labels_of(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The pod templates of every workload in `docs`.
#[must_use]
pub fn pod_templates(docs: &[Document]) -> Vec<PodTemplate<'_>> {
    docs.iter()
        .filter_map(|doc| {
            let template = match doc.kind() {
                "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                    value_at(&doc.value, &["spec", "template"])?
                }
                "CronJob" => value_at(&doc.value, &["spec", "jobTemplate", "spec", "template"])?,
                _ => return None,
            };
            Some(PodTemplate {
                owner: doc.id(),
                namespace: doc.namespace(),
                labels: labels_of(value_at(template, &["metadata", "labels"])),
                spec: template.get("spec")?,
            })
        })
        .collect()
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`) applied to `labels`.
/// A selector that is not a map selects nothing.
#[must_use]
pub fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let Some(map) = selector.as_object() else {
        return false;
    };
    let match_labels = labels_of(map.get("matchLabels"));
    let labels_ok = match_labels.iter().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = map.get("matchExpressions").and_then(Value::as_array);
    let expressions_ok = expressions.into_iter().flatten().all(|expr| {
        let key = str_at(expr, &["key"]);
        let values: Vec<&str> = items_at(expr, &["values"])
            .filter_map(Value::as_str)
            .collect();
        match str_at(expr, &["operator"]) {
            "In" => labels
                .get(key)
                .is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => labels
                .get(key)
                .is_none_or(|v| !values.contains(&v.as_str())),
            "Exists" => labels.contains_key(key),
            "DoesNotExist" => !labels.contains_key(key),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// A Service `spec.selector` (plain map) applied to `labels`.
fn service_selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Every HTTP probe of every container in `docs`.
#[must_use]
pub fn http_probes(docs: &[Document]) -> Vec<HttpProbe> {
    let mut out = Vec::new();
    for template in pod_templates(docs) {
        for container in template.containers() {
            for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let Some(http) = value_at(container, &[kind, "httpGet"]) else {
                    continue;
                };
                out.push(HttpProbe {
                    owner: template.owner.clone(),
                    container: str_at(container, &["name"]).to_owned(),
                    kind: kind.to_owned(),
                    path: str_at(http, &["path"]).to_owned(),
                    port: http.get("port").and_then(|p| template.resolve_port(p)),
                });
            }
        }
    }
    out
}

/// The value of environment variable `name` or of flag `--flag=value` on a container.
#[must_use]
pub fn container_setting<'a>(container: &'a Value, env: &str, flag: &str) -> Option<&'a str> {
    let from_env = items_at(container, &["env"])
        .find(|var| str_at(var, &["name"]) == env)
        .and_then(|var| var.get("value").and_then(Value::as_str));
    let prefix = format!("{flag}=");
    let from_args = ["command", "args"]
        .iter()
        .filter_map(|key| container.get(*key).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|arg| arg.strip_prefix(prefix.as_str()));
    from_args.or(from_env)
}

/// An Istio outbound cluster name, `outbound|<port>|<subset>|<host>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioCluster {
    /// The service port.
    pub port: u64,
    /// The subset (empty for none).
    pub subset: String,
    /// The Service name.
    pub service: String,
    /// The Service namespace.
    pub namespace: String,
}

/// Parses `outbound|8080||name.namespace.svc.cluster.local`.
#[must_use]
pub fn parse_istio_cluster(cluster: &str) -> Option<IstioCluster> {
    let mut parts = cluster.split('|');
    let (direction, port, subset, host) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if direction != "outbound" || parts.next().is_some() {
        return None;
    }
    let (service, namespace) = split_service_host(host)?;
    Some(IstioCluster {
        port: port.parse().ok()?,
        subset: subset.to_owned(),
        service,
        namespace,
    })
}

/// `name.namespace.svc.cluster.local` → `(name, namespace)`.
#[must_use]
fn split_service_host(host: &str) -> Option<(String, String)> {
    let rest = host.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?;
    let (service, namespace) = rest.split_once('.')?;
    (!service.is_empty() && !namespace.is_empty() && !namespace.contains('.'))
        .then(|| (service.to_owned(), namespace.to_owned()))
}

fn find<'a>(docs: &'a [Document], kind: &str, namespace: &str, name: &str) -> Option<&'a Document> {
    docs.iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
}

/// How much of the world the bundle is expected to hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BundleScope {
    /// When true, every Secret, ConfigMap, ServiceAccount and Namespace a resource refers to
    /// must be in the bundle (a composed overlay that is applied as is)…
    pub complete: bool,
    /// …except these, which the operator creates by hand (e.g. the auth-token Secret).
    pub external: Vec<ResourceId>,
}

/// Every cross-object rule `docs` breaks.
#[must_use]
pub fn check_bundle(docs: &[Document], scope: &BundleScope) -> Vec<Finding> {
    let templates = pod_templates(docs);
    let mut out = check_workload_selectors(docs);
    out.extend(check_services(docs, &templates));
    out.extend(check_stateful_sets(docs));
    out.extend(check_disruption_budgets(docs, &templates));
    out.extend(check_network_policies(docs, &templates));
    out.extend(check_probes(docs));
    // ServiceMonitors (prometheus-operator) select a Service of the bundle by a port it has.
    for monitor in docs.iter().filter(|d| d.kind() == "ServiceMonitor") {
        out.extend(check_service_monitor(docs, monitor));
    }
    out.extend(check_etcd_endpoints(docs, &templates));
    out.extend(check_wasm_plugins(docs));
    out.extend(check_waypoints(docs));
    if scope.complete {
        out.extend(check_references(docs, &templates, &scope.external));
    }
    out
}

fn finding(resource: ResourceId, message: impl Into<String>) -> Finding {
    Finding {
        resource,
        message: message.into(),
    }
}

/// The pod templates in `namespace` that a label selector (`matchLabels`/`matchExpressions`)
/// selects.
fn selected_by<'t, 'a>(
    templates: &'t [PodTemplate<'a>],
    namespace: &str,
    selector: &Value,
) -> Vec<&'t PodTemplate<'a>> {
    templates
        .iter()
        .filter(|t| t.namespace == namespace && selector_matches(selector, &t.labels))
        .collect()
}

/// A finding on `owner` for every port of `ports` (a Service's `targetPort`, a
/// NetworkPolicy's `port`) that is not a container port of each of the `selected` pods.
fn ports_not_in_pods<'v>(
    owner: &ResourceId,
    ports: impl Iterator<Item = &'v Value>,
    selected: &[&PodTemplate<'_>],
    what: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for port in ports {
        for template in selected {
            if template.resolve_port(port).is_none() {
                out.push(finding(
                    owner.clone(),
                    format!(
                        "{what} `{port}` is not a container port of {}",
                        template.owner
                    ),
                ));
            }
        }
    }
    out
}

/// Workload selectors must select their own template.
fn check_workload_selectors(docs: &[Document]) -> Vec<Finding> {
    let workloads = docs.iter().filter(|doc| {
        matches!(
            doc.kind(),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
        )
    });
    workloads
        .filter_map(|doc| {
            let selector = value_at(&doc.value, &["spec", "selector"])?;
            let labels = labels_of(value_at(
                &doc.value,
                &["spec", "template", "metadata", "labels"],
            ));
            (!selector_matches(selector, &labels)).then(|| {
                finding(
                    doc.id(),
                    "spec.selector does not select the pod template's labels",
                )
            })
        })
        .collect()
}

/// Services select pods, and every targetPort is a container port of each selected pod.
fn check_services(docs: &[Document], templates: &[PodTemplate<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for svc in docs.iter().filter(|d| d.kind() == "Service") {
        let selector = labels_of(value_at(&svc.value, &["spec", "selector"]));
        if selector.is_empty() {
            continue;
        }
        let selected: Vec<&PodTemplate<'_>> = templates
            .iter()
            .filter(|t| t.namespace == svc.namespace() && service_selects(&selector, &t.labels))
            .collect();
        if selected.is_empty() {
            out.push(finding(
                svc.id(),
                format!("spec.selector `{selector:?}` selects no pod template"),
            ));
        }
        let targets = items_at(&svc.value, &["spec", "ports"]).map(|port| {
            port.get("targetPort")
                .or_else(|| port.get("port"))
                .unwrap_or(&Value::Null)
        });
        out.extend(ports_not_in_pods(
            &svc.id(),
            targets,
            &selected,
            "targetPort",
        ));
    }
    out
}

/// StatefulSets name a headless Service that selects their pods.
fn check_stateful_sets(docs: &[Document]) -> Vec<Finding> {
    let mut out = Vec::new();
    for sts in docs.iter().filter(|d| d.kind() == "StatefulSet") {
        let service = str_at(&sts.value, &["spec", "serviceName"]);
        let labels = labels_of(value_at(
            &sts.value,
            &["spec", "template", "metadata", "labels"],
        ));
        let Some(svc) = find(docs, "Service", sts.namespace(), service) else {
            out.push(finding(
                sts.id(),
                format!("spec.serviceName `{service}` is not a Service in the bundle"),
            ));
            continue;
        };
        if str_at(&svc.value, &["spec", "clusterIP"]) != "None" {
            out.push(finding(
                svc.id(),
                "the StatefulSet's governing Service must be headless (clusterIP: None)",
            ));
        }
        let selector = labels_of(value_at(&svc.value, &["spec", "selector"]));
        if !service_selects(&selector, &labels) {
            out.push(finding(
                svc.id(),
                format!("does not select the pods of {}", sts.id()),
            ));
        }
    }
    out
}

/// PodDisruptionBudgets select pods.
fn check_disruption_budgets(docs: &[Document], templates: &[PodTemplate<'_>]) -> Vec<Finding> {
    docs.iter()
        .filter(|d| d.kind() == "PodDisruptionBudget")
        .filter(|pdb| {
            let selector = value_at(&pdb.value, &["spec", "selector"]).unwrap_or(&Value::Null);
            selected_by(templates, pdb.namespace(), selector).is_empty()
        })
        .map(|pdb| finding(pdb.id(), "spec.selector selects no pod template"))
        .collect()
}

/// NetworkPolicies select pods, and the ports they open are container ports of those pods.
/// The pod label that enrols a pod in Istio's ambient mode.
const AMBIENT_LABEL: &str = "istio.io/dataplane-mode";
/// Istio's HBONE port: ztunnel's inbound in an ambient pod's network namespace.
const HBONE_PORT: u64 = 15_008;

fn check_network_policies(docs: &[Document], templates: &[PodTemplate<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for policy in docs.iter().filter(|d| d.kind() == "NetworkPolicy") {
        let selector = value_at(&policy.value, &["spec", "podSelector"]).unwrap_or(&Value::Null);
        let selected = selected_by(templates, policy.namespace(), selector);
        if selected.is_empty() {
            out.push(finding(
                policy.id(),
                "spec.podSelector selects no pod template",
            ));
        }
        let ports: Vec<&Value> = items_at(&policy.value, &["spec", "ingress"])
            .flat_map(|rule| items_at(rule, &["ports"]))
            .map(|port| port.get("port").unwrap_or(&Value::Null))
            .collect();
        // Pods in Istio's ambient mode also take HBONE on 15008, served in their network
        // namespace by ztunnel, not by a container: a policy may open it to their waypoint.
        let (ambient, plain): (Vec<_>, Vec<_>) = selected
            .iter()
            .copied()
            .partition(|t| t.labels.get(AMBIENT_LABEL).map(String::as_str) == Some("ambient"));
        let hbone = Value::from(HBONE_PORT);
        let not_hbone = ports.iter().copied().filter(|p| **p != hbone);
        out.extend(ports_not_in_pods(
            &policy.id(),
            ports.iter().copied(),
            &plain,
            "port",
        ));
        out.extend(ports_not_in_pods(&policy.id(), not_hbone, &ambient, "port"));
    }
    out
}

/// Probes name container ports.
fn check_probes(docs: &[Document]) -> Vec<Finding> {
    http_probes(docs)
        .into_iter()
        .filter(|probe| probe.port.is_none())
        .map(|probe| {
            let message = format!(
                "{} of container `{}` names no container port",
                probe.kind, probe.container
            );
            finding(probe.owner, message)
        })
        .collect()
}

/// The etcd endpoints given to any container (env `ETCD_ENDPOINTS` or `--etcd-endpoints=`)
/// that point into a namespace of the bundle must be exactly the client URLs of a
/// StatefulSet's pods, through its headless Service. Endpoints outside the bundle's namespaces
/// are an external etcd, which nothing here can see.
fn check_etcd_endpoints(docs: &[Document], templates: &[PodTemplate<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    let namespaces: BTreeSet<&str> = docs.iter().map(Document::namespace).collect();
    let in_bundle = |endpoint: &str| {
        namespaces.iter().any(|ns| {
            !ns.is_empty()
                && endpoint
                    .split("://")
                    .nth(1)
                    .and_then(|authority| authority.split(':').next())
                    .is_some_and(|host| host.ends_with(&format!(".{ns}.{CLUSTER_DOMAIN}")))
        })
    };
    for template in templates {
        for container in template.containers() {
            let Some(endpoints) =
                container_setting(container, "ETCD_ENDPOINTS", "--etcd-endpoints")
            else {
                continue;
            };
            let given: BTreeSet<String> =
                endpoints.split(',').map(|e| e.trim().to_owned()).collect();
            if !given.iter().any(|e| in_bundle(e)) {
                continue;
            }
            let expected = etcd_client_urls(docs, &given);
            match expected {
                Some(expected) if expected == given => {}
                Some(expected) => out.push(Finding {
                    resource: template.owner.clone(),
                    message: format!(
                        "etcd endpoints `{endpoints}` are not the StatefulSet's pod URLs `{}`",
                        expected.into_iter().collect::<Vec<_>>().join(",")
                    ),
                }),
                None => out.push(Finding {
                    resource: template.owner.clone(),
                    message: format!(
                        "etcd endpoints `{endpoints}` name no StatefulSet of the bundle"
                    ),
                }),
            }
        }
    }
    out
}

/// The client URLs (`http://<sts>-<i>.<svc>.<ns>.svc.cluster.local:<client port>`) of the
/// StatefulSet the first of `given` points at.
#[must_use]
fn etcd_client_urls(docs: &[Document], given: &BTreeSet<String>) -> Option<BTreeSet<String>> {
    let first = given.iter().next()?;
    let host = first
        .strip_prefix("http://")
        .or_else(|| first.strip_prefix("https://"))?;
    let scheme = first.get(..first.len() - host.len())?;
    let (_pod, service_host) = host.split_once('.')?;
    let (service, namespace) = split_service_host(service_host.split(':').next()?)?;
    let sts = docs.iter().find(|d| {
        d.kind() == "StatefulSet"
            && d.namespace() == namespace
            && str_at(&d.value, &["spec", "serviceName"]) == service
    })?;
    let replicas = value_at(&sts.value, &["spec", "replicas"])
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let template = pod_templates(std::slice::from_ref(sts))
        .into_iter()
        .next()?;
    let client_port = template.resolve_port(&Value::String("client".to_owned()))?;
    Some(
        (0..replicas)
            .map(|i| {
                format!(
                    "{scheme}{}-{i}.{service}.{namespace}.{CLUSTER_DOMAIN}:{client_port}",
                    sts.name()
                )
            })
            .collect(),
    )
}

/// A ServiceMonitor selects at least one Service in the namespaces it watches (its own when it
/// names none), and each endpoint's `port` is a port name of every Service it selects.
fn check_service_monitor(docs: &[Document], monitor: &Document) -> Vec<Finding> {
    let finding = |message: String| Finding {
        resource: monitor.id(),
        message,
    };
    let watched: Vec<&str> = value_at(&monitor.value, &["spec", "namespaceSelector", "matchNames"])
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec![monitor.namespace()]);
    let selector = value_at(&monitor.value, &["spec", "selector"]).unwrap_or(&Value::Null);
    let services: Vec<&Document> = docs
        .iter()
        .filter(|d| d.kind() == "Service" && watched.contains(&d.namespace()))
        .filter(|d| {
            selector_matches(
                selector,
                &labels_of(value_at(&d.value, &["metadata", "labels"])),
            )
        })
        .collect();
    if services.is_empty() {
        return vec![finding("spec.selector selects no Service".to_owned())];
    }
    let mut out = Vec::new();
    let endpoints = value_at(&monitor.value, &["spec", "endpoints"]).and_then(Value::as_array);
    for endpoint in endpoints.into_iter().flatten() {
        let port = str_at(endpoint, &["port"]);
        for svc in &services {
            let ports = value_at(&svc.value, &["spec", "ports"]).and_then(Value::as_array);
            if !ports
                .into_iter()
                .flatten()
                .any(|p| str_at(p, &["name"]) == port)
            {
                out.push(finding(format!(
                    "endpoint port `{port}` is not a port name of {}",
                    svc.id()
                )));
            }
        }
    }
    out
}

/// The label that marks boifi's own resources; WasmPlugins without it are not boifi's filter.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";

/// The kinds that load boifi's Wasm filter, with where each keeps the filter's configuration.
const FILTER_KINDS: &[(&str, &[&str])] = &[
    ("WasmPlugin", &["spec", "pluginConfig"]),
    ("TrafficExtension", &["spec", "wasm", "pluginConfig"]),
];

/// The `pluginConfig` of a document that loads boifi's Wasm filter (`WasmPlugin`, or Istio
/// 1.30's `TrafficExtension`): `None` for other kinds, `Some(None)` when it has none.
#[must_use]
pub fn filter_plugin_config(doc: &Document) -> Option<Option<&Value>> {
    FILTER_KINDS
        .iter()
        .find(|(kind, _)| *kind == doc.kind())
        .map(|(_, path)| value_at(&doc.value, path))
}

/// Each boifi filter's (a `WasmPlugin` or `TrafficExtension` labelled
/// `app.kubernetes.io/part-of: boifi`) `pluginConfig` is accepted by the filter's own
/// configuration type (`boifi_core::wire::PluginConfig`), and the control plane it names — its
/// `control_plane_cluster`, or the filter's default when unset — is a Service port of the
/// bundle that a NetworkPolicy lets the filter's namespace reach, with a
/// `control_plane_authority` of the same host and port. A filter attached through `targetRefs`
/// runs in a waypoint (or gateway), where the cluster must also be made to exist
/// ([`check_waypoint_cluster`]).
fn check_wasm_plugins(docs: &[Document]) -> Vec<Finding> {
    let mut out = Vec::new();
    let boifi = |d: &&Document| str_at(&d.value, &["metadata", "labels", PART_OF_LABEL]) == "boifi";
    for plugin in docs.iter().filter(boifi) {
        let Some((_, path)) = FILTER_KINDS.iter().find(|(kind, _)| *kind == plugin.kind()) else {
            continue;
        };
        let config = value_at(&plugin.value, path);
        let json = config.map(Value::to_string).unwrap_or_default();
        let config = match PluginConfig::from_json(json.as_bytes()) {
            Ok(config) => config,
            Err(err) => {
                out.push(Finding {
                    resource: plugin.id(),
                    message: format!("{} is refused by the filter: {err}", path.join(".")),
                });
                continue;
            }
        };
        let cluster = config.control_plane_cluster.as_str();
        out.extend(check_control_plane_reachable(docs, plugin, cluster));
        out.extend(check_waypoint_cluster(docs, plugin, cluster));
        let authority = config.control_plane_authority.as_str();
        let expected = parse_istio_cluster(cluster)
            .map(|c| format!("{}.{}.{CLUSTER_DOMAIN}:{}", c.service, c.namespace, c.port));
        if expected.as_deref() != Some(authority) {
            out.push(Finding {
                resource: plugin.id(),
                message: format!(
                    "pluginConfig.control_plane_authority `{authority}` is not the host and port of `{cluster}`"
                ),
            });
        }
    }
    out.extend(check_referenced_services(docs));
    out
}

/// The annotation through which an `EnvoyFilter` names the services Istio must build outbound
/// clusters for in the waypoints and gateways it applies to
/// (istio `pilot/pkg/model/envoyfilter.go`): comma-separated `host` or `namespace/host`.
pub const REFERENCED_SERVICES_ANNOTATION: &str = "envoyfilter.istio.io/referenced-services";

/// A policy attachment target, `(group, kind, name)`, the core group spelt `""`.
fn target_refs(doc: &Document) -> Vec<(&str, &str, &str)> {
    items_at(&doc.value, &["spec", "targetRefs"])
        .chain(value_at(&doc.value, &["spec", "targetRef"]))
        .map(|t| {
            let group = match str_at(t, &["group"]) {
                "core" => "",
                group => group,
            };
            (group, str_at(t, &["kind"]), str_at(t, &["name"]))
        })
        .collect()
}

/// The entries of an `EnvoyFilter`'s referenced-services annotation, as `(namespace, host)`
/// (namespace empty for a bare host).
fn referenced_services(filter: &Document) -> Vec<(&str, &str)> {
    let value = value_at(
        &filter.value,
        &["metadata", "annotations", REFERENCED_SERVICES_ANNOTATION],
    )
    .and_then(Value::as_str)
    .unwrap_or("");
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| entry.split_once('/').unwrap_or(("", entry)))
        .collect()
}

/// Whether `filter` makes Istio build `cluster` (of Service `parsed`) in the proxies it applies
/// to: the referenced-services annotation names the Service's host (bare, or qualified with the
/// Service's own namespace, which is what Istio compares), or a `CLUSTER` `ADD` patch in context
/// `SIDECAR_INBOUND` (the only context a waypoint asks for) adds a cluster of that name.
fn provides_cluster(filter: &Document, parsed: &IstioCluster, cluster: &str) -> bool {
    let host = format!("{}.{}.{CLUSTER_DOMAIN}", parsed.service, parsed.namespace);
    let referenced = referenced_services(filter)
        .into_iter()
        .any(|(namespace, h)| h == host && (namespace.is_empty() || namespace == parsed.namespace));
    let added = items_at(&filter.value, &["spec", "configPatches"]).any(|patch| {
        str_at(patch, &["applyTo"]) == "CLUSTER"
            && str_at(patch, &["patch", "operation"]) == "ADD"
            && str_at(patch, &["match", "context"]) == "SIDECAR_INBOUND"
            && str_at(patch, &["patch", "value", "name"]) == cluster
    });
    referenced || added
}

/// A filter attached through `targetRefs` runs in a waypoint or gateway, where Istio builds no
/// outbound cluster for the control plane by itself (docs/design/ambient.md §2). For each of its
/// targets, an `EnvoyFilter` of the bundle in the filter's namespace must make the cluster
/// exist ([`provides_cluster`]) and apply to the same proxy: it targets the same object, or —
/// for a Service or ServiceEntry, whose requests run in the waypoint that serves it — a Gateway
/// of the bundle in that namespace (any Gateway when the bundle ships none). Which of them
/// serves the Service is decided by labels outside the bundle, so any is taken to be the one.
#[must_use]
pub fn check_waypoint_cluster(docs: &[Document], plugin: &Document, cluster: &str) -> Vec<Finding> {
    let targets = target_refs(plugin);
    let Some(parsed) = parse_istio_cluster(cluster) else {
        return Vec::new(); // reported by check_control_plane_reachable
    };
    let providers: Vec<&Document> = docs
        .iter()
        .filter(|d| d.kind() == "EnvoyFilter" && d.namespace() == plugin.namespace())
        .filter(|d| provides_cluster(d, &parsed, cluster))
        .collect();
    // The Gateways a Service's waypoint can be: those of the bundle in the namespace, or any
    // when the bundle ships none (the waypoint is then created outside it).
    let gateways: Vec<&str> = docs
        .iter()
        .filter(|d| d.kind() == "Gateway" && d.namespace() == plugin.namespace())
        .map(Document::name)
        .collect();
    let may_serve = |gateway: &str| gateways.is_empty() || gateways.contains(&gateway);
    let mut out = Vec::new();
    for (group, kind, name) in targets {
        let covered = providers.iter().any(|filter| {
            target_refs(filter).iter().any(|(g, k, n)| {
                (*g, *k, *n) == (group, kind, name)
                    || (*k == "Gateway"
                        && *g == "gateway.networking.k8s.io"
                        && may_serve(n)
                        && matches!(kind, "Service" | "ServiceEntry"))
            })
        });
        if !covered {
            out.push(Finding {
                resource: plugin.id(),
                message: format!(
                    "targetRefs {kind} `{name}`: a waypoint or gateway has no cluster `{cluster}` \
                     unless an EnvoyFilter in namespace `{}` that targets it carries the annotation \
                     `{REFERENCED_SERVICES_ANNOTATION}: {}/{}.{}.{CLUSTER_DOMAIN}`",
                    plugin.namespace(),
                    parsed.namespace,
                    parsed.service,
                    parsed.namespace
                ),
            });
        }
    }
    out
}

/// The Gateway class of Istio's waypoints.
pub const WAYPOINT_GATEWAY_CLASS: &str = "istio-waypoint";

/// Waypoints of the bundle (Gateways of class `istio-waypoint`): an `infrastructure.parametersRef`
/// names a ConfigMap of the bundle whose `deployment` key is a YAML object (Istio refuses a
/// Gateway whose parameters are missing, and merges that key into the waypoint's Deployment);
/// and every patch of an `EnvoyFilter` that targets a waypoint has context `SIDECAR_INBOUND`,
/// the only one a waypoint asks for (`ANY` too, except for a `CLUSTER` `ADD`, which Istio then
/// skips), so no patch is silently dropped (istio `pilot/pkg/networking/core/cluster.go`,
/// `envoyfilter/cluster_patch.go` `InsertedClusters`).
fn check_waypoints(docs: &[Document]) -> Vec<Finding> {
    let mut out = Vec::new();
    let waypoints: Vec<&Document> = docs
        .iter()
        .filter(|d| d.kind() == "Gateway")
        .filter(|d| str_at(&d.value, &["spec", "gatewayClassName"]) == WAYPOINT_GATEWAY_CLASS)
        .collect();
    for waypoint in &waypoints {
        let Some(params) = value_at(
            &waypoint.value,
            &["spec", "infrastructure", "parametersRef"],
        ) else {
            continue;
        };
        let name = str_at(params, &["name"]);
        let Some(options) = find(docs, "ConfigMap", waypoint.namespace(), name) else {
            out.push(finding(
                waypoint.id(),
                format!("spec.infrastructure.parametersRef names ConfigMap `{name}`, which is not in the bundle"),
            ));
            continue;
        };
        if let Some(text) =
            value_at(&options.value, &["data", "deployment"]).and_then(Value::as_str)
        {
            let parsed: Result<Value, _> = serde_norway::from_str(text);
            if !parsed.as_ref().is_ok_and(Value::is_object) {
                out.push(finding(
                    options.id(),
                    "data.deployment is not a YAML object (Istio merges it into the waypoint's Deployment)",
                ));
            }
        }
    }
    for filter in docs.iter().filter(|d| d.kind() == "EnvoyFilter") {
        let on_waypoint = target_refs(filter).iter().any(|(group, kind, name)| {
            (*group, *kind) == ("gateway.networking.k8s.io", "Gateway")
                && waypoints
                    .iter()
                    .any(|w| w.namespace() == filter.namespace() && w.name() == *name)
        });
        if !on_waypoint {
            continue;
        }
        for (i, patch) in items_at(&filter.value, &["spec", "configPatches"]).enumerate() {
            // An unset context is ANY, the enum's zero value.
            let context = match str_at(patch, &["match", "context"]) {
                "" => "ANY",
                context => context,
            };
            let cluster_add = str_at(patch, &["applyTo"]) == "CLUSTER"
                && str_at(patch, &["patch", "operation"]) == "ADD";
            let reaches = context == "SIDECAR_INBOUND" || (context == "ANY" && !cluster_add);
            if !reaches {
                out.push(finding(
                    filter.id(),
                    format!(
                        "spec.configPatches[{i}].match.context `{context}` never applies in a waypoint, which takes SIDECAR_INBOUND patches"
                    ),
                ));
            }
        }
    }
    out
}

/// boifi's `EnvoyFilter`s name in their referenced-services annotation only Services of the
/// bundle, each qualified (if at all) with its own namespace: Istio silently ignores any other
/// entry, and the filter would then have no control plane.
fn check_referenced_services(docs: &[Document]) -> Vec<Finding> {
    let mut out = Vec::new();
    let boifi = |d: &&Document| str_at(&d.value, &["metadata", "labels", PART_OF_LABEL]) == "boifi";
    for filter in docs
        .iter()
        .filter(|d| d.kind() == "EnvoyFilter")
        .filter(boifi)
    {
        for (namespace, host) in referenced_services(filter) {
            let service = split_service_host(host)
                .and_then(|(name, ns)| find(docs, "Service", &ns, &name).map(|_| ns));
            let message = match service {
                None => format!(
                    "{REFERENCED_SERVICES_ANNOTATION} names `{host}`, which is no Service of the bundle"
                ),
                Some(ns) if !namespace.is_empty() && namespace != ns => format!(
                    "{REFERENCED_SERVICES_ANNOTATION} qualifies `{host}` with namespace `{namespace}`, \
                     but Istio matches it against the Service's own namespace `{ns}`"
                ),
                Some(_) => continue,
            };
            out.push(Finding {
                resource: filter.id(),
                message,
            });
        }
    }
    out
}

/// A sidecar in `from`'s namespace can reach the Service behind Istio cluster `cluster`: the
/// Service and port exist, select pods, and any NetworkPolicy on those pods admits the
/// namespace on the target port.
#[must_use]
pub fn check_control_plane_reachable(
    docs: &[Document],
    from: &Document,
    cluster: &str,
) -> Vec<Finding> {
    let fail = |message: String| {
        vec![Finding {
            resource: from.id(),
            message,
        }]
    };
    let Some(parsed) = parse_istio_cluster(cluster) else {
        return fail(format!("`{cluster}` is not an Istio outbound cluster name `outbound|<port>||<service>.<namespace>.{CLUSTER_DOMAIN}`"));
    };
    let Some(svc) = find(docs, "Service", &parsed.namespace, &parsed.service) else {
        return fail(format!(
            "cluster `{cluster}` names Service `{}/{}`, which is not in the bundle",
            parsed.namespace, parsed.service
        ));
    };
    let ports = value_at(&svc.value, &["spec", "ports"]).and_then(Value::as_array);
    let Some(port) = ports
        .into_iter()
        .flatten()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(parsed.port))
    else {
        return fail(format!("Service {} has no port {}", svc.id(), parsed.port));
    };
    let selector = labels_of(value_at(&svc.value, &["spec", "selector"]));
    let target = port.get("targetPort").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    for template in pod_templates(docs)
        .iter()
        .filter(|t| t.namespace == parsed.namespace && service_selects(&selector, &t.labels))
    {
        let Some(target_port) = template.resolve_port(target) else {
            continue;
        };
        let policies: Vec<&Document> = docs
            .iter()
            .filter(|d| d.kind() == "NetworkPolicy" && d.namespace() == parsed.namespace)
            .filter(|d| {
                selector_matches(
                    value_at(&d.value, &["spec", "podSelector"]).unwrap_or(&Value::Null),
                    &template.labels,
                )
            })
            .collect();
        if policies.is_empty() {
            continue;
        }
        let admitted = policies.iter().any(|policy| {
            items_at(&policy.value, &["spec", "ingress"]).any(|rule| {
                let from_ok = items_at(rule, &["from"]).any(|peer| {
                    peer.get("podSelector").is_none()
                        && peer.get("namespaceSelector").is_some_and(|ns| {
                            selector_matches(
                                ns,
                                &BTreeMap::from([(
                                    "kubernetes.io/metadata.name".to_owned(),
                                    from.namespace().to_owned(),
                                )]),
                            )
                        })
                });
                let port_ok = items_at(rule, &["ports"]).any(|p| {
                    p.get("port").and_then(|port| template.resolve_port(port)) == Some(target_port)
                });
                from_ok && port_ok
            })
        });
        if !admitted {
            out.push(Finding {
                resource: from.id(),
                message: format!(
                    "no NetworkPolicy admits namespace `{}` to {} on port {target_port}",
                    from.namespace(),
                    template.owner
                ),
            });
        }
    }
    out
}

/// Secrets, ConfigMaps, ServiceAccounts and Namespaces referred to are in the bundle.
fn check_references(
    docs: &[Document],
    templates: &[PodTemplate<'_>],
    external: &[ResourceId],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let missing = |kind: &str, namespace: &str, name: &str| {
        find(docs, kind, namespace, name).is_none()
            && !external
                .iter()
                .any(|id| id.kind == kind && id.namespace == namespace && id.name == name)
    };
    for template in templates {
        let mut wanted: Vec<(&str, &str)> = Vec::new();
        for volume in items_at(template.spec, &["volumes"]) {
            if let Some(name) = value_at(volume, &["secret", "secretName"]).and_then(Value::as_str)
            {
                wanted.push(("Secret", name));
            }
            if let Some(name) = value_at(volume, &["configMap", "name"]).and_then(Value::as_str) {
                wanted.push(("ConfigMap", name));
            }
        }
        if let Some(name) = template
            .spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
        {
            wanted.push(("ServiceAccount", name));
        }
        for (kind, name) in wanted {
            if missing(kind, template.namespace, name) {
                out.push(Finding {
                    resource: template.owner.clone(),
                    message: format!("refers to {kind} `{name}`, which is not in the bundle"),
                });
            }
        }
    }
    let namespaces: BTreeSet<&str> = docs
        .iter()
        .map(Document::namespace)
        .filter(|ns| !ns.is_empty())
        .collect();
    for namespace in namespaces {
        if missing("Namespace", "", namespace) {
            out.push(Finding {
                resource: ResourceId {
                    kind: "Namespace".to_owned(),
                    namespace: String::new(),
                    name: namespace.to_owned(),
                },
                message: "resources live in this namespace but the bundle does not create it"
                    .to_owned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn istio_cluster_names() {
        let c = parse_istio_cluster("outbound|8080||boifi-control-plane.boifi.svc.cluster.local")
            .unwrap();
        assert_eq!(
            (c.port, c.service.as_str(), c.namespace.as_str()),
            (8080, "boifi-control-plane", "boifi")
        );
        assert!(parse_istio_cluster("inbound|8080||x.y.svc.cluster.local").is_none());
        assert!(parse_istio_cluster("outbound|8080||boifi-control-plane").is_none());
    }

    #[test]
    fn label_selectors() {
        let labels = BTreeMap::from([
            ("app".to_owned(), "a".to_owned()),
            ("tier".to_owned(), "x".to_owned()),
        ]);
        assert!(selector_matches(
            &json!({"matchLabels": {"app": "a"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"app": "b"}}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(
            selector_matches(&json!({}), &labels),
            "an empty selector selects everything"
        );
    }
}

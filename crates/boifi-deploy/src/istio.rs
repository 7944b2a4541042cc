//! The Istio rules a JSON schema cannot express, coded as the apiserver enforces them from
//! Istio's CRDs (`WasmPlugin`, `TrafficExtension`, `EnvoyFilter`): their CEL
//! `x-kubernetes-validations` and their `x-kubernetes-list-type: map` keys, plus the
//! `targetRefs` kinds istiod's validating webhook accepts. Messages carry Istio's own wording,
//! so they can be compared with Istio's test data.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::gourl::parse_request_uri_scheme;

/// The URL schemes the CRD's rule accepts (`""` is a path-only URL).
pub const ALLOWED_URL_SCHEMES: &[&str] = &["", "http", "https", "oci", "file"];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// Dotted field path as the apiserver prints it (`spec.vmConfig.env[1]`).
    pub path: String,
    /// The rule's message.
    pub message: String,
}

impl std::fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn violation(path: impl Into<String>, message: impl Into<String>) -> RuleViolation {
    RuleViolation {
        path: path.into(),
        message: message.into(),
    }
}

/// The CRD's URL rule: `isURL(self) ? url(self).getScheme() in [...]
/// : (isURL("http://" + self) && url("http://" + self).getScheme() in [...])`.
#[must_use]
pub fn url_scheme_allowed(url: &str) -> bool {
    match parse_request_uri_scheme(url) {
        Some(scheme) => ALLOWED_URL_SCHEMES.contains(&scheme.as_str()),
        None => parse_request_uri_scheme(&format!("http://{url}")).is_some(),
    }
}

/// Every rule of Istio's that `doc` breaks, by kind: the CEL and list-map rules of the
/// `WasmPlugin`, `TrafficExtension` and `EnvoyFilter` CRDs, and the `targetRefs` rule of
/// istiod's validating webhook (`pkg/config/validation/validation.go`,
/// `validatePolicyTargetReference`), which the apiserver does not enforce but istiod's webhook
/// does, with Istio's default install. Other kinds have none here.
/// Shapes the schema already rejects (wrong types) are skipped here, not reported twice.
#[must_use]
pub fn rule_violations(doc: &Value) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    let Some(spec) = doc.get("spec").and_then(Value::as_object) else {
        return out;
    };
    match doc.get("kind").and_then(Value::as_str) {
        Some("WasmPlugin") => wasmplugin_rules(spec, &mut out),
        Some("TrafficExtension") => trafficextension_rules(spec, &mut out),
        Some("EnvoyFilter") => envoyfilter_rules(spec, &mut out),
        _ => {}
    }
    out
}

/// The CEL and list-map rules of `extensions.istio.io/v1alpha1` `WasmPlugin`, and the
/// webhook's `targetRefs` rule.
fn wasmplugin_rules(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    one_of_selector(
        spec,
        &["selector", "targetRef", "targetRefs"],
        "selector",
        out,
    );
    url_rule(spec.get("url"), "spec.url", out);
    selector_rules(spec, out);
    target_ref_rules(spec, out);
    vm_env_rules(spec.get("vmConfig"), "spec.vmConfig", out);
    match_port_rules(spec, out);
}

/// The CEL and list-map rules of `extensions.istio.io/v1alpha1` `TrafficExtension` (Istio
/// 1.30+), and the webhook's `targetRefs` rule.
fn trafficextension_rules(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    one_of_selector(spec, &["selector", "targetRefs"], "selector", out);
    if spec.contains_key("wasm") == spec.contains_key("lua") {
        out.push(violation("spec", "exactly one of wasm or lua must be set"));
    }
    if let Some(wasm) = spec.get("wasm") {
        url_rule(wasm.get("url"), "spec.wasm.url", out);
        vm_env_rules(wasm.get("vmConfig"), "spec.wasm.vmConfig", out);
    }
    selector_rules(spec, out);
    target_ref_rules(spec, out);
    match_port_rules(spec, out);
}

/// The CEL rules of `networking.istio.io/v1alpha3` `EnvoyFilter`, and the webhook's
/// `targetRefs` rule.
fn envoyfilter_rules(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    one_of_selector(
        spec,
        &["workloadSelector", "targetRefs"],
        "workloadSelector",
        out,
    );
    if let Some(labels) = spec
        .get("workloadSelector")
        .and_then(|s| s.get("labels"))
        .and_then(Value::as_object)
    {
        for (key, value) in labels {
            if value.as_str().is_some_and(|v| v.contains('*')) {
                out.push(violation(
                    format!("spec.workloadSelector.labels[{key}]"),
                    "wildcard is not supported in selector",
                ));
            }
        }
    }
    target_ref_rules(spec, out);
    let patches = spec.get("configPatches").and_then(Value::as_array);
    for (i, patch) in patches.into_iter().flatten().enumerate() {
        let Some(matching) = patch.get("match") else {
            continue;
        };
        let waypoint_context = matching.get("context").and_then(Value::as_str) == Some("WAYPOINT");
        if waypoint_context != matching.get("waypoint").is_some() {
            out.push(violation(
                format!("spec.configPatches[{i}].match"),
                "only support waypointMatch when context is WAYPOINT",
            ));
        }
    }
}

/// The CRDs' "at most one way to select": `(has(a) ? 1 : 0) + (has(b) ? 1 : 0) <= 1`.
fn one_of_selector(
    spec: &Map<String, Value>,
    keys: &[&str],
    selector_name: &str,
    out: &mut Vec<RuleViolation>,
) {
    let set = keys.iter().filter(|key| spec.contains_key(**key)).count();
    if set > 1 {
        out.push(violation(
            "spec",
            format!("only one of targetRefs or {selector_name} can be set"),
        ));
    }
}

/// The CRDs' URL rule on a Wasm module's `url` (an empty one is the schema's to refuse).
fn url_rule(url: Option<&Value>, path: &str, out: &mut Vec<RuleViolation>) {
    if let Some(url) = url.and_then(Value::as_str) {
        if !url.is_empty() && !url_scheme_allowed(url) {
            out.push(violation(
                path,
                "url must have schema one of [http, https, file, oci]",
            ));
        }
    }
}

/// `spec.selector.matchLabels`: no `*` in keys or values, no empty key.
fn selector_rules(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    let Some(labels) = spec
        .get("selector")
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object)
    else {
        return;
    };
    if labels.keys().any(|key| key.contains('*')) {
        out.push(violation(
            "spec.selector.matchLabels",
            "wildcard not allowed in label key match",
        ));
    }
    if labels.keys().any(String::is_empty) {
        out.push(violation(
            "spec.selector.matchLabels",
            "key must not be empty",
        ));
    }
    for (key, value) in labels {
        if value.as_str().is_some_and(|v| v.contains('*')) {
            out.push(violation(
                format!("spec.selector.matchLabels[{key}]"),
                "wildcard not allowed in label value match",
            ));
        }
    }
}

/// The kinds a policy may target, as `(group, kind)` with the core group spelt `""`: istiod's
/// `allowedTargetRefs` (Service, ServiceEntry, Gateway API Gateway and GatewayClass).
pub const ALLOWED_TARGET_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

/// `spec.targetRef` and `spec.targetRefs[*]`: no namespace (the CRDs' CEL rule), and a kind
/// istiod accepts (its webhook; `core` is the core group's other spelling).
fn target_ref_rules(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    let mut refs: Vec<(String, &Value)> = Vec::new();
    if let Some(target) = spec.get("targetRef") {
        refs.push(("spec.targetRef".to_owned(), target));
    }
    if let Some(targets) = spec.get("targetRefs").and_then(Value::as_array) {
        refs.extend(
            targets
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("spec.targetRefs[{i}]"), t)),
        );
    }
    for (path, target) in refs {
        let field = |name: &str| target.get(name).and_then(Value::as_str).unwrap_or("");
        if !field("namespace").is_empty() {
            out.push(violation(
                format!("{path}.namespace"),
                "cross namespace referencing is not currently supported",
            ));
        }
        let group = match field("group") {
            "core" => "",
            group => group,
        };
        let kind = field("kind");
        if !ALLOWED_TARGET_KINDS.contains(&(group, kind)) {
            out.push(violation(
                path,
                format!(
                    "targetRef must be to one of core/Service, networking.istio.io/ServiceEntry, \
                     gateway.networking.k8s.io/Gateway, gateway.networking.k8s.io/GatewayClass \
                     but was `{}/{kind}`",
                    field("group")
                ),
            ));
        }
    }
}

/// `<vm>.env`: unique names, no `value` with `valueFrom: HOST`.
fn vm_env_rules(vm_config: Option<&Value>, vm_path: &str, out: &mut Vec<RuleViolation>) {
    let Some(env) = vm_config
        .and_then(|vm| vm.get("env"))
        .and_then(Value::as_array)
    else {
        return;
    };
    out.extend(duplicate_keys(env, "name", &format!("{vm_path}.env")));
    for (i, var) in env.iter().enumerate() {
        let from_host = var.get("valueFrom").and_then(Value::as_str) == Some("HOST");
        if from_host && var.get("value").is_some() {
            out.push(violation(
                format!("{vm_path}.env[{i}]"),
                "value may only be set when valueFrom is INLINE",
            ));
        }
    }
}

/// `spec.match[*].ports`: unique numbers.
fn match_port_rules(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    if let Some(matches) = spec.get("match").and_then(Value::as_array) {
        for (i, m) in matches.iter().enumerate() {
            if let Some(ports) = m.get("ports").and_then(Value::as_array) {
                out.extend(duplicate_keys(
                    ports,
                    "number",
                    &format!("spec.match[{i}].ports"),
                ));
            }
        }
    }
}

/// `x-kubernetes-list-type: map`: no two items with the same key.
fn duplicate_keys(items: &[Value], key: &str, path: &str) -> Vec<RuleViolation> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(value) = item.get(key) {
            if !seen.insert(value.to_string()) {
                out.push(violation(
                    format!("{path}[{i}]"),
                    format!("Duplicate value: {key}={value}"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn url_rule_matches_the_crd() {
        for ok in [
            "http://test",
            "test",
            "oci://ghcr.io/x/y:1",
            "file:///a.wasm",
            "https://h/p",
            "/abs",
        ] {
            assert!(url_scheme_allowed(ok), "{ok}");
        }
        for bad in ["fake://example.com", "#%blah$#@", "ftp://x/y"] {
            assert!(!url_scheme_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn selector_and_target_ref_exclusive() {
        let doc = json!({"kind": "WasmPlugin", "spec": {"url": "oci://x/y", "selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"}]}});
        let v = rule_violations(&doc);
        assert_eq!(
            v,
            vec![violation(
                "spec",
                "only one of targetRefs or selector can be set"
            )]
        );
    }

    /// A waypoint is reached through `targetRefs`; a kind istiod refuses is named with its path.
    #[test]
    fn target_ref_kinds_are_istiods() {
        let plugin = |refs: serde_json::Value| json!({"kind": "WasmPlugin", "spec": {"url": "oci://x/y", "targetRefs": refs}});
        let ok = plugin(json!([
            {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"},
            {"kind": "Service", "group": "", "name": "cartservice"},
            {"kind": "Service", "group": "core", "name": "frontend"},
            {"kind": "Service", "name": "adservice"},
            {"kind": "ServiceEntry", "group": "networking.istio.io", "name": "ext"},
            {"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio-waypoint"}
        ]));
        assert_eq!(rule_violations(&ok), vec![]);
        let bad = plugin(json!([
            {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"},
            {"kind": "Gateway", "name": "waypoint"},
            {"kind": "Deployment", "group": "apps", "name": "cart"},
            {"kind": "Service", "group": "", "name": "cart", "namespace": "shop"}
        ]));
        let v = rule_violations(&bad);
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.targetRefs[1]",
                "spec.targetRefs[2]",
                "spec.targetRefs[3].namespace"
            ]
        );
        assert!(v[0].message.ends_with("but was `/Gateway`"), "{}", v[0]);
        assert!(
            v[1].message.ends_with("but was `apps/Deployment`"),
            "{}",
            v[1]
        );
    }

    #[test]
    fn traffic_extension_rules() {
        let ok = json!({"kind": "TrafficExtension", "spec": {
            "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}],
            "wasm": {"url": "oci://x/y"}}});
        assert_eq!(rule_violations(&ok), vec![]);
        let both = json!({"kind": "TrafficExtension", "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "targetRefs": [{"kind": "Service", "name": "cart"}],
            "wasm": {"url": "fake://x", "vmConfig": {"env": [{"name": "A", "valueFrom": "HOST", "value": "v"}]}},
            "lua": {"inlineCode": "x"}}});
        let found: Vec<String> = rule_violations(&both)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "spec: only one of targetRefs or selector can be set",
                "spec: exactly one of wasm or lua must be set",
                "spec.wasm.url: url must have schema one of [http, https, file, oci]",
                "spec.wasm.vmConfig.env[0]: value may only be set when valueFrom is INLINE",
            ]
        );
        let neither = json!({"kind": "TrafficExtension", "spec": {"targetRefs": [{"kind": "Service", "name": "cart"}]}});
        assert_eq!(
            rule_violations(&neither),
            vec![violation("spec", "exactly one of wasm or lua must be set")]
        );
    }

    #[test]
    fn envoy_filter_rules() {
        let doc = json!({"kind": "EnvoyFilter", "spec": {
        "workloadSelector": {"labels": {"app": "a*"}},
        "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}],
        "configPatches": [
            {"applyTo": "CLUSTER", "match": {"context": "SIDECAR_INBOUND"}},
            {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND", "waypoint": {"portNumber": 80}}},
            {"applyTo": "HTTP_FILTER", "match": {"context": "WAYPOINT"}}
        ]}});
        let found: Vec<String> = rule_violations(&doc)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "spec: only one of targetRefs or workloadSelector can be set",
                "spec.workloadSelector.labels[app]: wildcard is not supported in selector",
                "spec.configPatches[1].match: only support waypointMatch when context is WAYPOINT",
                "spec.configPatches[2].match: only support waypointMatch when context is WAYPOINT",
            ]
        );
    }

    #[test]
    fn duplicate_match_ports() {
        let doc = json!({"kind": "WasmPlugin", "spec": {"url": "oci://x/y", "match": [{"ports": [{"number": 80}, {"number": 80}]}]}});
        let v = rule_violations(&doc);
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("Duplicate value"));
        assert_eq!(v[0].path, "spec.match[0].ports[1]");
    }
}

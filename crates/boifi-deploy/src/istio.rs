//! The `WasmPlugin` rules a JSON schema cannot express, coded as the apiserver enforces them
//! from Istio's CRD: its CEL `x-kubernetes-validations` and its `x-kubernetes-list-type: map`
//! keys. Messages carry the CRD's own wording, so they can be compared with Istio's test data.

use std::collections::BTreeSet;

use serde_json::Value;

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

/// Every CEL and list-map rule of `extensions.istio.io/v1alpha1` `WasmPlugin` that `doc` breaks.
/// Shapes the schema already rejects (wrong types) are skipped here, not reported twice.
#[must_use]
pub fn wasmplugin_violations(doc: &Value) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    let Some(spec) = doc.get("spec").and_then(Value::as_object) else {
        return out;
    };

    let set = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|key| spec.contains_key(**key))
        .count();
    if set > 1 {
        out.push(violation(
            "spec",
            "only one of targetRefs or selector can be set",
        ));
    }

    if let Some(url) = spec.get("url").and_then(Value::as_str) {
        if !url.is_empty() && !url_scheme_allowed(url) {
            out.push(violation(
                "spec.url",
                "url must have schema one of [http, https, file, oci]",
            ));
        }
    }

    if let Some(labels) = spec
        .get("selector")
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object)
    {
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
        if target
            .get("namespace")
            .and_then(Value::as_str)
            .is_some_and(|ns| !ns.is_empty())
        {
            out.push(violation(
                format!("{path}.namespace"),
                "cross namespace referencing is not currently supported",
            ));
        }
    }

    if let Some(env) = spec
        .get("vmConfig")
        .and_then(|vm| vm.get("env"))
        .and_then(Value::as_array)
    {
        out.extend(duplicate_keys(env, "name", "spec.vmConfig.env"));
        for (i, var) in env.iter().enumerate() {
            let from_host = var.get("valueFrom").and_then(Value::as_str) == Some("HOST");
            if from_host && var.get("value").is_some() {
                out.push(violation(
                    format!("spec.vmConfig.env[{i}]"),
                    "value may only be set when valueFrom is INLINE",
                ));
            }
        }
    }

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
    out
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
        let doc = json!({"spec": {"url": "oci://x/y", "selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"kind": "Gateway", "name": "g"}]}});
        let v = wasmplugin_violations(&doc);
        assert_eq!(
            v,
            vec![violation(
                "spec",
                "only one of targetRefs or selector can be set"
            )]
        );
    }

    #[test]
    fn duplicate_match_ports() {
        let doc = json!({"spec": {"url": "oci://x/y", "match": [{"ports": [{"number": 80}, {"number": 80}]}]}});
        let v = wasmplugin_violations(&doc);
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("Duplicate value"));
        assert_eq!(v[0].path, "spec.match[0].ports[1]");
    }
}

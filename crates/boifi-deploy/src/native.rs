//! Offline rules for the native module's manifests (`manifests/native/`): Istio's `EnvoyFilter`
//! that inserts the module, and Envoy Gateway's `EnvoyProxy` and `EnvoyExtensionPolicy`. The
//! `EnvoyFilter` is also held to Istio's CRD schema (testdata/envoyfilter-crd.yaml); the
//! test data holds no schema for Envoy Gateway's CRDs, so their structure is checked by rules:
//! every field boifi's manifests use, with the values those APIs accept (Envoy Gateway's
//! `dynamic_module_types.go` patterns), unknown fields refused where boifi owns the object (the
//! filter's own configuration), and the filter configuration read by the parser
//! the module runs (boifi-core's `NativeConfig`).

use std::collections::BTreeSet;

use boifi_core::wire::{NativeConfig, NATIVE_MODULE_NAME};
use serde_json::{Map, Value};

use crate::istio::RuleViolation;
use crate::yaml::Document;

/// The typed config of `envoy.filters.http.dynamic_modules`.
pub const DYNAMIC_MODULE_FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// `(apiVersion, kind)` of the objects checked here instead of by a schema.
pub const SCHEMALESS_KINDS: &[(&str, &str)] = &[
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"),
];

/// The `app.kubernetes.io/name` of the `EnvoyFilter` that inserts the module (boifi ships other
/// `EnvoyFilter`s, such as the one that gives a waypoint the control plane's cluster).
pub const MODULE_FILTER_NAME_LABEL: &str = "boifi-fault";

/// True for the kinds that have no schema in the test data (checked by [`violations`] only).
#[must_use]
pub fn is_schemaless_kind(doc: &Document) -> bool {
    SCHEMALESS_KINDS.contains(&(doc.api_version(), doc.kind()))
}

/// True for the documents [`violations`] checks: the schemaless kinds, and the `EnvoyFilter`
/// labelled as the module's (`app.kubernetes.io/name: boifi-fault`).
#[must_use]
pub fn is_native_kind(doc: &Document) -> bool {
    let module_filter = doc.api_version() == "networking.istio.io/v1alpha3"
        && doc.kind() == "EnvoyFilter"
        && doc
            .value
            .pointer("/metadata/labels/app.kubernetes.io~1name")
            .and_then(Value::as_str)
            == Some(MODULE_FILTER_NAME_LABEL);
    module_filter || is_schemaless_kind(doc)
}

fn violation(path: impl Into<String>, message: impl Into<String>) -> RuleViolation {
    RuleViolation {
        path: path.into(),
        message: message.into(),
    }
}

/// Every rule `doc` breaks (empty for other kinds).
#[must_use]
pub fn violations(doc: &Document) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    let spec = doc.value.get("spec").and_then(Value::as_object);
    let Some(spec) = spec else {
        if is_native_kind(doc) {
            out.push(violation("spec", "is required and must be an object"));
        }
        return out;
    };
    match doc.kind() {
        "EnvoyFilter" => envoy_filter(spec, &mut out),
        "EnvoyProxy" => envoy_proxy(spec, &mut out),
        "EnvoyExtensionPolicy" => extension_policy(spec, &mut out),
        _ => {}
    }
    out
}

fn envoy_filter(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    let patches = spec.get("configPatches").and_then(Value::as_array);
    let Some(patches) = patches.filter(|p| !p.is_empty()) else {
        out.push(violation("spec.configPatches", "must be a non-empty list"));
        return;
    };
    for (i, p) in patches.iter().enumerate() {
        let at = format!("spec.configPatches[{i}]");
        if p.get("applyTo").and_then(Value::as_str) != Some("HTTP_FILTER") {
            out.push(violation(
                format!("{at}.applyTo"),
                "must be `HTTP_FILTER` (the module is an HTTP filter)",
            ));
        }
        match p.pointer("/patch/value") {
            Some(value) => filter_value(value, &format!("{at}.patch.value"), out),
            None => out.push(violation(format!("{at}.patch.value"), "is required")),
        }
    }
}

/// The HTTP filter an `EnvoyFilter` inserts: the dynamic-module filter with boifi's config.
fn filter_value(value: &Value, at: &str, out: &mut Vec<RuleViolation>) {
    if value
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        out.push(violation(format!("{at}.name"), "is required"));
    }
    let Some(typed) = value.get("typed_config") else {
        out.push(violation(format!("{at}.typed_config"), "is required"));
        return;
    };
    let at = format!("{at}.typed_config");
    if typed.get("@type").and_then(Value::as_str) != Some(DYNAMIC_MODULE_FILTER_TYPE) {
        out.push(violation(
            format!("{at}.@type"),
            format!("must be `{DYNAMIC_MODULE_FILTER_TYPE}`"),
        ));
    }
    let module = typed
        .pointer("/dynamic_module_config/name")
        .and_then(Value::as_str);
    if module != Some(NATIVE_MODULE_NAME) {
        out.push(violation(
            format!("{at}.dynamic_module_config.name"),
            format!(
                "must be `{}` (Envoy loads lib{}.so)",
                NATIVE_MODULE_NAME, NATIVE_MODULE_NAME
            ),
        ));
    }
    let config = typed.get("filter_config");
    let text = config
        .filter(|c| c.get("@type").and_then(Value::as_str) == Some(STRING_VALUE_TYPE))
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str);
    match text {
        Some(text) => module_config(text.as_bytes(), &format!("{at}.filter_config.value"), out),
        None => out.push(violation(
            format!("{at}.filter_config"),
            format!("must be a `{STRING_VALUE_TYPE}` holding the module's JSON configuration"),
        )),
    }
}

fn module_config(bytes: &[u8], at: &str, out: &mut Vec<RuleViolation>) {
    if let Err(e) = NativeConfig::from_json(bytes) {
        out.push(violation(at, e.to_string()));
    }
}

/// Envoy Gateway's name pattern for modules: `^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`, ≤ 253.
fn is_module_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-';
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 253
        && bytes.iter().all(inner)
        && edge(bytes.first())
        && edge(bytes.last())
}

/// The modules listed at `spec.<field>`, each with its field path; a violation when there
/// is no list.
fn listed_modules<'s>(
    spec: &'s Map<String, Value>,
    field: &str,
    out: &mut Vec<RuleViolation>,
) -> Vec<(String, &'s Value)> {
    let Some(modules) = spec.get(field).and_then(Value::as_array) else {
        out.push(violation(
            format!("spec.{field}"),
            "must list the boifi module",
        ));
        return Vec::new();
    };
    modules
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("spec.{field}[{i}]"), m))
        .collect()
}

/// A violation at `<at>.name` when the module's name is not a module name (`bad_name` says
/// what it breaks, after the name).
fn module_name(at: &str, module: &Value, bad_name: &str, out: &mut Vec<RuleViolation>) {
    let name = module.get("name").and_then(Value::as_str).unwrap_or("");
    if !is_module_name(name) {
        out.push(violation(
            format!("{at}.name"),
            format!("`{name}` {bad_name}"),
        ));
    }
}

fn envoy_proxy(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    for (at, m) in listed_modules(spec, "dynamicModules", out) {
        let bad_name = "does not match `^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`";
        module_name(&at, m, bad_name, out);
        let source = m.get("source");
        let kind = source
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("Local");
        match kind {
            "Local" => {
                let path = source
                    .and_then(|s| s.pointer("/local/path"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !path.starts_with('/') || !path.ends_with(".so") || path.len() > 4096 {
                    out.push(violation(
                        format!("{at}.source.local.path"),
                        format!("`{path}`: if type is Local, local.path must be the absolute path of a .so file"),
                    ));
                }
            }
            "Remote" => {
                let remote = source.and_then(|s| s.get("remote"));
                let url = remote
                    .and_then(|r| r.get("url"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let sha = remote
                    .and_then(|r| r.get("sha256"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    out.push(violation(
                        format!("{at}.source.remote.url"),
                        "must be an http(s) URL",
                    ));
                }
                if sha.len() != 64
                    || !sha
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    out.push(violation(
                        format!("{at}.source.remote.sha256"),
                        "must be 64 lower-case hex digits",
                    ));
                }
            }
            other => out.push(violation(
                format!("{at}.source.type"),
                format!("`{other}` is not `Local` or `Remote`"),
            )),
        }
        for flag in ["doNotClose", "loadGlobally"] {
            if m.get(flag).is_some_and(|v| !v.is_boolean()) {
                out.push(violation(format!("{at}.{flag}"), "must be a boolean"));
            }
        }
    }
}

fn extension_policy(spec: &Map<String, Value>, out: &mut Vec<RuleViolation>) {
    let refs = spec.get("targetRefs").and_then(Value::as_array);
    if !refs.is_some_and(|r| {
        !r.is_empty()
            && r.iter().all(|t| {
                ["group", "kind", "name"].iter().all(|k| {
                    t.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty() || *k == "group")
                })
            })
    }) {
        out.push(violation(
            "spec.targetRefs",
            "must be a non-empty list of {group, kind, name}",
        ));
    }
    for (at, m) in listed_modules(spec, "dynamicModule", out) {
        module_name(&at, m, "is not a module name", out);
        let config = m.get("config").map_or_else(String::new, Value::to_string);
        module_config(config.as_bytes(), &format!("{at}.config"), out);
    }
}

/// Cross-object rule: every module an `EnvoyExtensionPolicy` uses is registered by an
/// `EnvoyProxy` of the bundle (Envoy Gateway rejects the policy otherwise). Returns
/// `(policy id, message)`.
#[must_use]
pub fn unregistered_modules(docs: &[Document]) -> Vec<(String, String)> {
    let registered: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d.kind() == "EnvoyProxy")
        .filter_map(|d| d.value.pointer("/spec/dynamicModules")?.as_array())
        .flatten()
        .filter_map(|m| m.get("name")?.as_str())
        .collect();
    docs.iter()
        .filter(|d| d.kind() == "EnvoyExtensionPolicy")
        .flat_map(|d| {
            let names: Vec<&str> = d
                .value
                .pointer("/spec/dynamicModule")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("name")?.as_str())
                .collect();
            let registered = &registered;
            names
                .into_iter()
                .filter(move |n| !registered.contains(n))
                .map(move |n| {
                    (
                        d.id().to_string(),
                        format!("uses dynamic module `{n}`, which no EnvoyProxy of the bundle registers in spec.dynamicModules"),
                    )
                })
        })
        .collect()
}

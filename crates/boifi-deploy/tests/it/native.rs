//! The native module's manifests (manifests/native/): they compose, pass the structure rules
//! (no schema for EnvoyProxy or EnvoyExtensionPolicy in the test data; the EnvoyFilter also
//! against Istio's CRD schema), and the
//! rules are not vacuous: each kind of mistake an operator can make is reported with its field.

use boifi_deploy::consistency::BundleScope;
use boifi_deploy::yaml::Document;
use serde_json::{json, Value};

use crate::support::{checker, find, kustomize, native_dirs};

fn bundle(name: &str) -> Vec<Document> {
    let dir = native_dirs()
        .into_iter()
        .find(|d| d.file_name().is_some_and(|n| n == name))
        .unwrap();
    kustomize(&dir)
}

fn problems(docs: &[Document]) -> Vec<String> {
    checker()
        .check_bundle(docs, &BundleScope::default())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn edited(docs: &[Document], kind: &str, edit: impl FnOnce(&mut Value)) -> Vec<Document> {
    let mut docs = docs.to_vec();
    let doc = docs.iter_mut().find(|d| d.kind() == kind).unwrap();
    edit(&mut doc.value);
    docs
}

#[test]
fn native_bundles_compose_and_pass_the_rules() {
    let istio = bundle("istio");
    find(&istio, "EnvoyFilter", "boifi-fault-native");
    assert_eq!(problems(&istio), Vec::<String>::new());
    let waypoint = bundle("istio-waypoint");
    find(&waypoint, "EnvoyFilter", "boifi-fault-native");
    find(&waypoint, "Gateway", "waypoint");
    find(&waypoint, "ConfigMap", "boifi-waypoint-options");
    assert_eq!(problems(&waypoint), Vec::<String>::new());
    let eg = bundle("envoy-gateway");
    find(&eg, "EnvoyProxy", "boifi-proxy");
    find(&eg, "EnvoyExtensionPolicy", "boifi-fault-native");
    assert_eq!(problems(&eg), Vec::<String>::new());
}

fn expect_one(docs: &[Document], needle: &str) {
    let found = problems(docs);
    assert!(
        found.len() == 1 && found[0].contains(needle),
        "expected one problem containing `{needle}`, got {found:#?}"
    );
}

#[test]
fn envoy_filter_mistakes_are_named() {
    let istio = bundle("istio");
    let value = "/spec/configPatches/0/patch/value/typed_config";
    expect_one(
        &edited(&istio, "EnvoyFilter", |v| {
            *v.pointer_mut(&format!("{value}/@type")).unwrap() =
                json!("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
        }),
        "typed_config.@type: must be `type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`",
    );
    expect_one(
        &edited(&istio, "EnvoyFilter", |v| {
            *v.pointer_mut(&format!("{value}/filter_config/value"))
                .unwrap() = json!(r#"{"control_plane_address": "no-port"}"#);
        }),
        "control_plane_address: `no-port` is not of the form host:port",
    );
    expect_one(
        &edited(&istio, "EnvoyFilter", |v| {
            *v.pointer_mut(&format!("{value}/filter_config/value"))
                .unwrap() = json!(r#"{"long_poll_wait_ms": 30000, "colour": "blue"}"#);
        }),
        "colour: unknown field",
    );
    expect_one(
        &edited(&istio, "EnvoyFilter", |v| {
            *v.pointer_mut(&format!("{value}/dynamic_module_config/name"))
                .unwrap() = json!("boifi-wasm");
        }),
        "dynamic_module_config.name: must be `boifi`",
    );
    expect_one(
        &edited(&istio, "EnvoyFilter", |v| {
            v["spec"]["configPatches"][0]["match"]["context"] = json!("SIDECAR_IN");
        }),
        "/spec/configPatches/0/match/context",
    );
}

#[test]
fn envoy_gateway_mistakes_are_named() {
    let eg = bundle("envoy-gateway");
    expect_one(
        &edited(&eg, "EnvoyProxy", |v| {
            v["spec"]["dynamicModules"][0]["source"]["local"]["path"] =
                json!("modules/libboifi.so");
        }),
        "spec.dynamicModules[0].source.local.path",
    );
    // A bad name is reported, and the policy that uses `boifi` then finds no module.
    let found = problems(&edited(&eg, "EnvoyProxy", |v| {
        v["spec"]["dynamicModules"][0]["name"] = json!("Boifi");
    }));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("spec.dynamicModules[0].name: `Boifi` does not match"));
    assert!(found[1].contains("uses dynamic module `boifi`, which no EnvoyProxy"));
    // A policy naming a module the EnvoyProxy does not register: Envoy Gateway rejects it.
    let renamed = edited(&eg, "EnvoyExtensionPolicy", |v| {
        v["spec"]["dynamicModule"][0]["name"] = json!("boifi-v2");
    });
    expect_one(
        &renamed,
        "uses dynamic module `boifi-v2`, which no EnvoyProxy",
    );
    expect_one(
        &edited(&eg, "EnvoyExtensionPolicy", |v| {
            v["spec"]["dynamicModule"][0]["config"]["backoff_max_ms"] = json!("soon");
        }),
        "spec.dynamicModule[0].config: plugin configuration: backoff_max_ms: expected a whole number",
    );
    expect_one(
        &edited(&eg, "EnvoyExtensionPolicy", |v| {
            v["spec"]["targetRefs"] = json!([]);
        }),
        "spec.targetRefs",
    );
}

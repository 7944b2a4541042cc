//! Every manifest document against the strict Kubernetes schemas and Istio's WasmPlugin schema.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use boifi_deploy::consistency::BundleScope;
use boifi_deploy::yaml::{load_file, Document};
use serde_json::json;

use crate::support::{base, checker, find, manifests};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path.canonicalize().unwrap());
        }
    }
}

/// (resource files, patch files) reached from a kustomization, recursively.
fn reached(dir: &Path, resources: &mut BTreeSet<PathBuf>, patches: &mut BTreeSet<PathBuf>) {
    let k = &load_file(&dir.join("kustomization.yaml")).unwrap()[0].value;
    for entry in k["resources"].as_array().into_iter().flatten() {
        let path = dir.join(entry.as_str().unwrap()).canonicalize().unwrap();
        if path.is_dir() {
            reached(&path, resources, patches);
        } else {
            resources.insert(path);
        }
    }
    for entry in k["patches"].as_array().into_iter().flatten() {
        patches.insert(
            dir.join(entry["path"].as_str().unwrap())
                .canonicalize()
                .unwrap(),
        );
    }
}

#[test]
fn every_manifest_file_is_a_kustomization_a_resource_or_a_patch_and_every_resource_is_valid() {
    let mut files = Vec::new();
    yaml_files(&manifests(), &mut files);
    let (mut resources, mut patches) = (BTreeSet::new(), BTreeSet::new());
    reached(&manifests().join("base"), &mut resources, &mut patches);
    for overlay in crate::support::overlay_dirs() {
        reached(&overlay, &mut resources, &mut patches);
    }
    for bundle in crate::support::native_dirs() {
        reached(&bundle, &mut resources, &mut patches);
    }
    let mut checker = checker();
    let mut documents = 0;
    for file in &files {
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        if patches.contains(file) {
            continue; // checked in the composed overlays
        }
        assert!(
            resources.contains(file),
            "{} is in no kustomization",
            file.display()
        );
        for doc in load_file(file).unwrap() {
            documents += 1;
            let problems = checker.check_document(&doc);
            assert!(problems.is_empty(), "{}:\n{problems:#?}", doc.source);
        }
    }
    assert!(documents >= 14, "only {documents} documents checked");
}

#[test]
fn base_bundle_has_no_problem() {
    let docs = base();
    let kinds: BTreeSet<&str> = docs.iter().map(Document::kind).collect();
    for kind in [
        "Namespace",
        "StatefulSet",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceAccount",
        "WasmPlugin",
    ] {
        assert!(kinds.contains(kind), "base has no {kind}");
    }
    let problems = checker().check_bundle(&docs, &BundleScope::default());
    assert!(problems.is_empty(), "{problems:#?}");
}

fn with(doc: &Document, edit: impl FnOnce(&mut serde_json::Value)) -> Document {
    let mut doc = doc.clone();
    edit(&mut doc.value);
    doc
}

/// The validator is not vacuous: the strict schemas reject what the apiserver rejects.
#[test]
fn strict_schemas_reject_unknown_fields_wrong_types_and_bad_enums() {
    let docs = base();
    let mut checker = checker();
    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    let plugin = find(&docs, "WasmPlugin", "boifi-fault");
    let cases = [
        (
            with(deployment, |v| {
                v["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always")
            }),
            "/spec/template/spec/containers/0",
        ),
        (
            with(deployment, |v| v["spec"]["replicas"] = json!("2")),
            "/spec/replicas",
        ),
        (
            with(deployment, |v| {
                v["spec"]["template"]["spec"]["containers"][0]["ports"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("containerPort");
            }),
            "/spec/template/spec/containers/0/ports/0",
        ),
        (
            with(plugin, |v| v["spec"]["failStrategy"] = json!("FAIL_OPENED")),
            "/spec/failStrategy",
        ),
        (
            with(plugin, |v| v["spec"]["sha256"] = json!("xyz")),
            "/spec/sha256",
        ),
        (
            with(plugin, |v| v["spec"]["phaes"] = json!("AUTHN")),
            "/spec",
        ),
        (
            with(plugin, |v| v["spec"]["match"][0]["mode"] = json!("INBOUND")),
            "/spec/match/0/mode",
        ),
    ];
    for (doc, pointer) in cases {
        let problems = checker.check_document(&doc);
        assert!(
            problems.iter().any(|p| p.path == pointer),
            "expected a problem at {pointer}, got {problems:#?}"
        );
    }
    let unknown = with(deployment, |v| v["kind"] = json!("Deploymnet"));
    let problems = checker.check_document(&unknown);
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("no schema for `Deploymnet`")),
        "{problems:#?}"
    );
}

/// The custom resources' JSON schemas (`testdata/k8s-schemas/<group>/`) are what `crd.rs`
/// derives from the CRDs in the test data (`boifi-deploy crd-schema`, testdata/SOURCES.md), so
/// a schema cannot drift from its CRD or be edited by hand.
#[test]
fn custom_resource_schemas_are_derived_from_their_crds() {
    let cases = [
        (
            "wasmplugin-crd.yaml",
            "v1alpha1",
            "extensions.istio.io/wasmplugin_v1alpha1.json",
        ),
        (
            "trafficextension-crd.yaml",
            "v1alpha1",
            "extensions.istio.io/trafficextension_v1alpha1.json",
        ),
        (
            "envoyfilter-crd.yaml",
            "v1alpha3",
            "networking.istio.io/envoyfilter_v1alpha3.json",
        ),
        (
            "authorizationpolicy-crd.yaml",
            "v1",
            "security.istio.io/authorizationpolicy_v1.json",
        ),
        (
            "gateway-api-gateways-crd.yaml",
            "v1",
            "gateway.networking.k8s.io/gateway_v1.json",
        ),
    ];
    for (crd, version, schema) in cases {
        let docs = load_file(&crate::support::testdata().join(crd)).unwrap();
        assert_eq!(docs.len(), 1, "{crd}: one CRD");
        let derived = boifi_deploy::crd::json_schema(&docs[0].value, version).unwrap();
        let text = std::fs::read_to_string(crate::support::k8s_schemas().join(schema)).unwrap();
        let committed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(derived == committed, "{schema} is not derived from {crd}");
    }
}

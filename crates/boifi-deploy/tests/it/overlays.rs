//! The overlays, rendered by `kubectl kustomize`, checked like the base.

use boifi_deploy::consistency::{
    check_control_plane_reachable, pod_templates, selector_matches, BundleScope,
};
use boifi_deploy::yaml::load_file;

use crate::support::{base, checker, external_resources, find, k3s_demo, overlay_dirs, testdata};

#[test]
fn every_overlay_composes_and_is_complete_and_valid() {
    let mut checker = checker();
    let scope = BundleScope {
        complete: true,
        external: external_resources(),
    };
    for dir in overlay_dirs() {
        let docs = crate::support::kustomize(&dir);
        let problems = checker.check_bundle(&docs, &scope);
        assert!(problems.is_empty(), "{}: {problems:#?}", dir.display());
        // Without the hand-made resources the bundle is incomplete: the scope is not vacuous.
        let strict = checker.check_bundle(
            &docs,
            &BundleScope {
                complete: true,
                external: vec![],
            },
        );
        let mut missing: Vec<String> = strict.iter().map(ToString::to_string).collect();
        missing.sort();
        assert_eq!(missing.len(), 2, "{missing:#?}");
        assert!(
            missing[0].contains("refers to Secret `boifi-auth-token`"),
            "{missing:#?}"
        );
        assert!(missing[1].starts_with("Namespace demo: "), "{missing:#?}");
    }
}

#[test]
fn k3s_demo_changes_only_what_it_says() {
    let base = base();
    let demo = k3s_demo();
    // Everything the overlay does not patch is the base, unchanged.
    let patched = [
        ("Deployment", "boifi-control-plane"),
        ("StatefulSet", "etcd"),
        ("WasmPlugin", "boifi-fault"),
    ];
    for doc in &base {
        let twin = demo
            .iter()
            .find(|d| d.id() == doc.id())
            .unwrap_or_else(|| panic!("{} dropped", doc.id()));
        if !patched.contains(&(doc.kind(), doc.name())) {
            assert_eq!(twin.value, doc.value, "{} changed", doc.id());
        }
    }
    // The local image.
    let deployment = find(&demo, "Deployment", "boifi-control-plane");
    let spec = &deployment.value["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["image"], "boifi-server:dev");
    // One node: anti-affinity preferred, no longer required; the rest of the pod untouched.
    for (kind, name) in [
        ("Deployment", "boifi-control-plane"),
        ("StatefulSet", "etcd"),
    ] {
        let composed = &find(&demo, kind, name).value["spec"]["template"]["spec"];
        let original = &find(&base, kind, name).value["spec"]["template"]["spec"];
        let anti = &composed["affinity"]["podAntiAffinity"];
        assert!(
            anti.get("requiredDuringSchedulingIgnoredDuringExecution")
                .is_none(),
            "{kind} {name}"
        );
        let preferred = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(
            preferred["podAffinityTerm"]["labelSelector"],
            original["affinity"]["podAntiAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"][0]["labelSelector"]
        );
        assert_eq!(composed["securityContext"], original["securityContext"]);
        assert_eq!(composed["volumes"], original["volumes"]);
        assert_eq!(
            composed["containers"][0]["args"],
            original["containers"][0]["args"]
        );
    }
    assert_eq!(
        find(&demo, "StatefulSet", "etcd").value["spec"]["template"]["spec"]["containers"],
        find(&base, "StatefulSet", "etcd").value["spec"]["template"]["spec"]["containers"]
    );
    // The filter: plain HTTP from the demo registry, for frontend only, the rest as in base.
    let plugin = &find(&demo, "WasmPlugin", "boifi-fault").value["spec"];
    let original = &find(&base, "WasmPlugin", "boifi-fault").value["spec"];
    for key in ["phase", "failStrategy", "pluginConfig", "match"] {
        assert_eq!(plugin[key], original[key], "spec.{key}");
    }
    assert_eq!(plugin["failStrategy"], "FAIL_OPEN");
    assert_eq!(
        plugin["selector"]["matchLabels"],
        serde_json::json!({"app": "frontend"})
    );
}

#[test]
fn k3s_demo_wasm_url_is_the_registry_service_and_demo_may_reach_it() {
    let demo = k3s_demo();
    let plugin = find(&demo, "WasmPlugin", "boifi-fault");
    let url = plugin.value["spec"]["url"].as_str().unwrap();
    let authority = url
        .strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let (host, port) = authority.split_once(':').unwrap();
    let cluster = format!("outbound|{port}||{host}");
    let findings = check_control_plane_reachable(&demo, plugin, &cluster);
    assert!(findings.is_empty(), "{findings:#?}");
    // The path is the registry API's blob path of the repository the guide pushes to.
    let path = url.split_once(authority).unwrap().1;
    assert!(
        path.starts_with("/v2/boifi/boifi-wasm/blobs/sha256:"),
        "{path}"
    );
    let guide =
        std::fs::read_to_string(crate::support::repo_root().join("docs/deploy-k8s.md")).unwrap();
    assert!(
        guide.contains("localhost:5000/boifi/boifi-wasm:"),
        "the guide pushes to another repository"
    );
}

/// The selector example targets exactly one workload of the seed's demo app (Online Boutique).
#[test]
fn k3s_demo_selector_targets_exactly_the_frontend_of_the_demo_app() {
    let boutique =
        load_file(&testdata().join("online-boutique-kubernetes-manifests.yaml")).unwrap();
    let demo = k3s_demo();
    let selector = &find(&demo, "WasmPlugin", "boifi-fault").value["spec"]["selector"];
    let selected: Vec<String> = pod_templates(&boutique)
        .into_iter()
        .filter(|t| selector_matches(selector, &t.labels))
        .map(|t| t.owner.name)
        .collect();
    assert_eq!(selected, ["frontend"]);
}

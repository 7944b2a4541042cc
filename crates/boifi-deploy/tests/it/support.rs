//! Paths to the repository, the shared data beside it, and the bundles under test.

use std::path::{Path, PathBuf};

use boifi_deploy::check::Checker;
use boifi_deploy::kustomize;
use boifi_deploy::oci::MINIMAL_WASM_MODULE;
use boifi_deploy::yaml::{Document, ResourceId};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `../shared/data` beside the repository (CI clones the repo with `shared/` beside it).
pub fn shared_data() -> PathBuf {
    let dir = repo_root().join("../shared/data");
    assert!(
        dir.join("k8s-schemas").is_dir(),
        "the shared data folder is missing: expected {} (shared/ beside the repository)",
        dir.display()
    );
    dir
}

pub fn k8s_schemas() -> PathBuf {
    shared_data().join("k8s-schemas")
}

pub fn checker() -> Checker {
    Checker::new(&k8s_schemas())
}

pub fn manifests() -> PathBuf {
    repo_root().join("manifests")
}

pub fn base() -> Vec<Document> {
    kustomize::build(&manifests().join("base")).expect("base composes")
}

/// Every overlay directory under manifests/overlays.
pub fn overlay_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(manifests().join("overlays"))
        .expect("manifests/overlays")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no overlays");
    dirs
}

/// The native module's bundles (manifests/native/istio, manifests/native/envoy-gateway).
pub fn native_dirs() -> Vec<PathBuf> {
    ["istio", "envoy-gateway"]
        .iter()
        .map(|d| manifests().join("native").join(d))
        .collect()
}

pub fn k3s_demo() -> Vec<Document> {
    kustomize::build(&manifests().join("overlays/k3s-demo")).expect("k3s-demo composes")
}

/// Resources an operator creates by hand before `kubectl apply -k` (docs/deploy-k8s.md).
pub fn external_resources() -> Vec<ResourceId> {
    ["Secret/boifi/boifi-auth-token", "Namespace/demo"]
        .iter()
        .map(|id| id.parse().expect("resource id"))
        .collect()
}

pub fn find<'a>(docs: &'a [Document], kind: &str, name: &str) -> &'a Document {
    docs.iter()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the bundle"))
}

/// The built filter (`BOIFI_WASM`, as `make wasm` leaves it) when it exists.
pub fn built_wasm() -> Option<(PathBuf, Vec<u8>)> {
    let path = PathBuf::from(std::env::var_os("BOIFI_WASM")?);
    let bytes = std::fs::read(&path).ok()?;
    Some((path, bytes))
}

/// The built filter, else the smallest valid module (for structure-only checks).
pub fn wasm_or_minimal() -> Vec<u8> {
    match built_wasm() {
        Some((_, bytes)) => bytes,
        None => {
            eprintln!("BOIFI_WASM is not set or missing: using a minimal module for the OCI structure checks");
            MINIMAL_WASM_MODULE.to_vec()
        }
    }
}

/// Copies a directory tree (for tests that edit manifests).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The `boifi-server` binary next to this test's (`cargo test --workspace` builds it).
pub fn server_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/it-<hash> → target/<profile>/boifi-server
    let path = exe.parent()?.parent()?.join("boifi-server");
    path.is_file().then_some(path)
}

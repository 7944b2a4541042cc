//! Paths to the repository, the shared data beside it, and the bundles under test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use boifi_deploy::check::Checker;
use boifi_deploy::render::{self, HelmRelease, Tool};
use boifi_deploy::yaml::{Document, ResourceId};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The repository's test data (`testdata/`, each file's source and license in its SOURCES.md).
pub fn testdata() -> PathBuf {
    let dir = repo_root().join("testdata");
    assert!(
        dir.join("k8s-schemas").is_dir(),
        "the test data is missing: expected {}",
        dir.display()
    );
    dir
}

pub fn k8s_schemas() -> PathBuf {
    testdata().join("k8s-schemas")
}

pub fn checker() -> Checker {
    Checker::new(&k8s_schemas())
}

pub fn manifests() -> PathBuf {
    repo_root().join("manifests")
}

/// A tool the tests need; a missing one fails the test with the way to install it.
fn tool(
    cell: &'static OnceLock<Tool>,
    find: fn(&Path) -> Result<Tool, render::RenderError>,
) -> &'static Tool {
    cell.get_or_init(|| find(&repo_root()).unwrap_or_else(|err| panic!("{err}")))
}

pub fn kubectl() -> &'static Tool {
    static KUBECTL: OnceLock<Tool> = OnceLock::new();
    tool(&KUBECTL, Tool::kubectl)
}

pub fn helm() -> &'static Tool {
    static HELM: OnceLock<Tool> = OnceLock::new();
    tool(&HELM, Tool::helm)
}

/// What `kubectl kustomize <dir>` renders.
pub fn kustomize(dir: &Path) -> Vec<Document> {
    render::kustomize(kubectl(), dir).unwrap_or_else(|err| panic!("{err}"))
}

/// `manifests/base` as kubectl renders it (rendered once per test binary).
pub fn base() -> Vec<Document> {
    static BASE: OnceLock<Vec<Document>> = OnceLock::new();
    BASE.get_or_init(|| kustomize(&manifests().join("base")))
        .clone()
}

pub fn chart() -> PathBuf {
    repo_root().join("charts/boifi")
}

/// The chart's value sets under test: its defaults, then each `ci/<name>-values.yaml`.
pub fn chart_value_sets() -> Vec<(String, HelmRelease)> {
    let mut out = vec![(
        "default".to_owned(),
        HelmRelease::new(&chart(), "boifi", "boifi"),
    )];
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/boifi/ci")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy();
        let name = name
            .strip_suffix("-values.yaml")
            .expect("ci/<name>-values.yaml");
        let mut release = HelmRelease::new(&chart(), "boifi", "boifi");
        release.values.push(file.clone());
        out.push((name.to_owned(), release));
    }
    out
}

/// What `helm template` renders for each value set (rendered once per test binary).
pub fn chart_bundles() -> Vec<(String, Vec<Document>)> {
    static BUNDLES: OnceLock<Vec<(String, Vec<Document>)>> = OnceLock::new();
    BUNDLES
        .get_or_init(|| {
            chart_value_sets()
                .into_iter()
                .map(|(name, release)| {
                    let docs = release
                        .template(helm())
                        .unwrap_or_else(|err| panic!("{err}"));
                    (format!("chart {name}"), docs)
                })
                .collect()
        })
        .clone()
}

/// The chart bundle of one value set.
pub fn chart_bundle(name: &str) -> Vec<Document> {
    chart_bundles()
        .into_iter()
        .find(|(n, _)| n == &format!("chart {name}"))
        .unwrap_or_else(|| panic!("no value set {name}"))
        .1
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

/// The native module's bundles (manifests/native/istio, istio-waypoint, envoy-gateway).
pub fn native_dirs() -> Vec<PathBuf> {
    ["istio", "istio-waypoint", "envoy-gateway"]
        .iter()
        .map(|d| manifests().join("native").join(d))
        .collect()
}

pub fn k3s_demo() -> Vec<Document> {
    static DEMO: OnceLock<Vec<Document>> = OnceLock::new();
    DEMO.get_or_init(|| kustomize(&manifests().join("overlays/k3s-demo")))
        .clone()
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

/// The built filter (env `BOIFI_WASM`, else where `make wasm` leaves it): its path and bytes.
/// A missing module fails the test, naming it: the artifact checks never fall back to a stand-in.
pub fn built_wasm() -> (PathBuf, Vec<u8>) {
    let path = std::env::var_os("BOIFI_WASM").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/debian/wasm32-unknown-unknown/release/boifi_wasm.wasm")
        },
        PathBuf::from,
    );
    match std::fs::read(&path) {
        Ok(bytes) => (path, bytes),
        Err(e) => panic!(
            "the built filter `{}` cannot be read ({e}): build it with `make wasm`",
            path.display()
        ),
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

/// Runs `command` and fails the test with its stderr unless it exits 0.
pub fn succeeds(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The item of the list `list` (a container's `env`, `volumeMounts`, ...) whose `name` is
/// `name`; fails the test when there is none.
pub fn named<'a>(list: &'a serde_json::Value, name: &serde_json::Value) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|item| item["name"] == *name)
        .unwrap_or_else(|| panic!("no item named {name} in {list}"))
}

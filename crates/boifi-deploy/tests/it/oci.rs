//! The Wasm OCI artifact: written, read back independently of the writer, its layer the built
//! filter, tampering detected, and its digests pinned into the manifests Istio reads.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use boifi_deploy::digest::{oci_digest, sha256_hex};
use boifi_deploy::oci::{
    verify_layout, write_layout, ArtifactOptions, MINIMAL_WASM_MODULE, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
};
use boifi_deploy::pin::pin_tree;
use serde_json::Value;

use crate::support::{built_wasm, copy_tree, find, manifests, succeeds};

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        dir.join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap()
}

/// Reads the layout with nothing but serde_json and sha256, as a registry client would.
#[test]
fn layout_reads_back_index_to_manifest_to_config_and_layers() {
    let (_, wasm) = built_wasm();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("oci");
    let artifact = write_layout(&out, &wasm, &ArtifactOptions::default()).unwrap();

    assert_eq!(
        read_json(&out.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let descriptor = &manifests[0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"],
        env!("CARGO_PKG_VERSION")
    );

    let mut referenced = BTreeSet::new();
    let check = |descriptor: &Value, referenced: &mut BTreeSet<String>| -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        let bytes = blob(&out, digest);
        assert_eq!(oci_digest(&bytes), digest);
        assert_eq!(bytes.len() as u64, descriptor["size"].as_u64().unwrap());
        referenced.insert(digest.strip_prefix("sha256:").unwrap().to_owned());
        bytes
    };
    let manifest: Value = serde_json::from_slice(&check(descriptor, &mut referenced)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
    let config: Value =
        serde_json::from_slice(&check(&manifest["config"], &mut referenced)).unwrap();
    assert_eq!(config["type"], "envoy_proxy");

    // Istio's oci-variant reader wants exactly two layers and finds the module by media type.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let wasm_layers: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == WASM_LAYER_MEDIA_TYPE)
        .collect();
    assert_eq!(wasm_layers.len(), 1);
    let layer = check(wasm_layers[0], &mut referenced);
    assert_eq!(
        layer, wasm,
        "the layer is the module, byte for byte, uncompressed"
    );
    assert!(layer.starts_with(b"\0asm"));
    let config_layer = layers
        .iter()
        .find(|l| l["mediaType"] == WASM_CONFIG_MEDIA_TYPE)
        .unwrap();
    check(config_layer, &mut referenced);

    // No blob that nothing references.
    let on_disk: BTreeSet<String> = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(on_disk, referenced);

    assert_eq!(artifact.manifest_digest, descriptor["digest"]);
    assert_eq!(artifact.wasm_digest, oci_digest(&wasm));
    let verified = verify_layout(&out).unwrap();
    assert_eq!(verified.artifact, artifact);
    assert_eq!(verified.wasm, wasm);
    eprintln!(
        "OCI artifact: manifest {} ({} B), wasm {} ({} B), {} B of blobs",
        artifact.manifest_digest,
        artifact.manifest_size,
        artifact.wasm_digest,
        artifact.wasm_size,
        artifact.total_blob_bytes
    );
}

#[test]
fn layer_is_the_built_filter() {
    let (path, wasm) = built_wasm();
    let dir = tempfile::tempdir().unwrap();
    succeeds(
        Command::new(env!("CARGO_BIN_EXE_boifi-deploy"))
            .args(["oci", "--wasm"])
            .arg(&path)
            .arg("--out")
            .arg(dir.path().join("oci")),
    );
    succeeds(
        Command::new(env!("CARGO_BIN_EXE_boifi-deploy"))
            .arg("verify-oci")
            .arg(dir.path().join("oci"))
            .arg("--wasm")
            .arg(&path),
    );
    let verified = verify_layout(&dir.path().join("oci")).unwrap();
    assert_eq!(verified.wasm, wasm);
    assert_eq!(verified.artifact.wasm_sha256(), sha256_hex(&wasm));
}

fn rewrite_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value = read_json(path);
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// Replaces the manifest with an edited one and points the index at it.
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let index = read_json(&dir.join("index.json"));
    let mut manifest: Value = serde_json::from_slice(&blob(
        dir,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(sha256_hex(&bytes)), &bytes).unwrap();
    rewrite_json(&dir.join("index.json"), |index| {
        index["manifests"][0]["digest"] = Value::String(oci_digest(&bytes));
        index["manifests"][0]["size"] = Value::from(bytes.len());
    });
}

fn wasm_blob(dir: &Path) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(sha256_hex(MINIMAL_WASM_MODULE))
}

/// A change to a written layout.
type Tamper = Box<dyn Fn(&Path)>;

#[test]
fn tampered_layouts_are_rejected() {
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        write_layout(dir.path(), MINIMAL_WASM_MODULE, &ArtifactOptions::default()).unwrap();
        assert!(verify_layout(dir.path()).is_ok());
        dir
    };
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "hashes to",
            Box::new(|d| std::fs::write(wasm_blob(d), b"\0asm\x01\0\0\x01").unwrap()),
        ),
        (
            "the blob has 9 bytes",
            Box::new(|d| std::fs::write(wasm_blob(d), b"\0asm\x01\0\0\0\0").unwrap()),
        ),
        (
            "No such file",
            Box::new(|d| std::fs::remove_file(wasm_blob(d)).unwrap()),
        ),
        (
            "exactly 2",
            Box::new(|d| {
                edit_manifest(d, |m| {
                    m["layers"].as_array_mut().unwrap().remove(0);
                })
            }),
        ),
        (
            "is neither",
            Box::new(|d| {
                edit_manifest(d, |m| {
                    m["layers"][1]["mediaType"] =
                        "application/vnd.oci.image.layer.v1.tar+gzip".into()
                })
            }),
        ),
        (
            "config.mediaType",
            Box::new(|d| {
                edit_manifest(d, |m| {
                    m["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into()
                })
            }),
        ),
        (
            "manifests[0].mediaType",
            Box::new(|d| {
                rewrite_json(&d.join("index.json"), |i| {
                    i["manifests"][0]["mediaType"] = "application/json".into()
                })
            }),
        ),
        (
            "not a `sha256:` digest",
            Box::new(|d| {
                rewrite_json(&d.join("index.json"), |i| {
                    i["manifests"][0]["digest"] = "sha256:../../x".into()
                })
            }),
        ),
        (
            "imageLayoutVersion",
            Box::new(|d| {
                std::fs::write(d.join("oci-layout"), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap()
            }),
        ),
    ];
    for (expected, tamper) in cases {
        let dir = fresh();
        tamper(dir.path());
        let err = verify_layout(dir.path()).expect_err(expected).to_string();
        assert!(err.contains(expected), "expected `{expected}`, got `{err}`");
    }
}

#[test]
fn rewriting_a_layout_leaves_no_stale_blob_and_other_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = MINIMAL_WASM_MODULE.to_vec();
    other.extend_from_slice(&[0, 2, 1, b'x']); // a custom section named `x`
    write_layout(dir.path(), &other, &ArtifactOptions::default()).unwrap();
    write_layout(dir.path(), MINIMAL_WASM_MODULE, &ArtifactOptions::default()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        3
    );
    assert_eq!(verify_layout(dir.path()).unwrap().wasm, MINIMAL_WASM_MODULE);

    let busy = tempfile::tempdir().unwrap();
    std::fs::write(busy.path().join("notes.txt"), "keep me").unwrap();
    let err = write_layout(
        busy.path(),
        MINIMAL_WASM_MODULE,
        &ArtifactOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert!(write_layout(busy.path(), b"not wasm", &ArtifactOptions::default()).is_err());
}

/// `make oci` pins: the base's oci:// plugin and the ambient TrafficExtension get the manifest
/// digest, the k3s-demo http:// plugin gets the module digest in its `sha256` and in its blob
/// URL; checks still pass.
#[test]
fn pinning_writes_the_digests_istio_checks() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("manifests");
    copy_tree(&manifests(), &tree);
    let layout = work.path().join("oci");
    let mut module = MINIMAL_WASM_MODULE.to_vec();
    module.extend_from_slice(&[0, 5, 4, b'p', b'i', b'n', b'!']);
    let artifact = write_layout(&layout, &module, &ArtifactOptions::default()).unwrap();

    let pinned = pin_tree(&tree, &artifact).unwrap();
    assert_eq!(pinned.len(), 4, "{pinned:#?}");
    assert!(pinned.iter().all(|p| p.changed));
    assert!(
        pin_tree(&tree, &artifact)
            .unwrap()
            .iter()
            .all(|p| !p.changed),
        "pinning is idempotent"
    );

    let base = crate::support::kustomize(&tree.join("base"));
    let plugin = &find(&base, "WasmPlugin", "boifi-fault").value["spec"];
    assert!(plugin["url"].as_str().unwrap().starts_with("oci://"));
    assert_eq!(plugin["sha256"], artifact.manifest_sha256());

    let demo = crate::support::kustomize(&tree.join("overlays/k3s-demo"));
    let plugin = &find(&demo, "WasmPlugin", "boifi-fault").value["spec"];
    assert_eq!(plugin["sha256"], sha256_hex(&module));
    let url = plugin["url"].as_str().unwrap();
    assert!(url.starts_with("http://"), "{url}");
    assert!(
        url.ends_with(&format!("/blobs/sha256:{}", sha256_hex(&module))),
        "{url}"
    );

    let ambient = crate::support::kustomize(&tree.join("overlays/ambient-trafficextension"));
    let extension = &find(&ambient, "TrafficExtension", "boifi-fault").value["spec"]["wasm"];
    assert!(extension["url"].as_str().unwrap().starts_with("oci://"));
    assert_eq!(extension["sha256"], artifact.manifest_sha256());

    let mut checker = crate::support::checker();
    for docs in [&base, &demo, &ambient] {
        let problems = checker.check_bundle(docs, &Default::default());
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

/// The committed pins agree with each other (the blob URL and `sha256` name one module).
#[test]
fn committed_pins_are_consistent() {
    let demo = crate::support::k3s_demo();
    let plugin = &find(&demo, "WasmPlugin", "boifi-fault").value["spec"];
    let sha = plugin["sha256"].as_str().unwrap();
    assert!(boifi_deploy::digest::is_sha256_hex(sha));
    assert!(plugin["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("sha256:{sha}")));
    let (_, wasm) = built_wasm();
    if sha256_hex(&wasm) != sha {
        eprintln!("note: the committed pins are from another build of the filter; `make oci` re-pins them");
    }
}

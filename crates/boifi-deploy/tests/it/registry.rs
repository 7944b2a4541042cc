//! The artifact through a real registry, as in the guide: `make oci`'s layout pushed to a
//! distribution registry on the loopback (Debian's `docker-registry`) with `skopeo`, the
//! manifest digest unchanged by the push (Istio checks `sha256` against it for `oci://`), and
//! the pinned k3s-demo `http://` URL, aimed at that registry, serving the module whose digest
//! the WasmPlugin's `sha256` holds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boifi_deploy::digest::{oci_digest, sha256_hex};
use boifi_deploy::oci::{
    write_layout, ArtifactOptions, OCI_MANIFEST_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};
use boifi_deploy::pin::pin_tree;
use boifi_testkit::http;
use boifi_testkit::ports::free_port;
use boifi_testkit::process::ChildGuard;
use serde_json::Value;

use crate::support::{built_wasm, copy_tree, find, manifests, succeeds};

fn tool(name: &str) -> Option<PathBuf> {
    let path = Path::new("/usr/bin").join(name);
    path.is_file().then_some(path)
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

#[test]
fn pushed_artifact_keeps_its_digest_and_the_pinned_url_serves_the_module() {
    let (Some(skopeo), Some(registry)) = (tool("skopeo"), tool("docker-registry")) else {
        assert!(
            !required(),
            "CI: skopeo and docker-registry are installed by scripts/deps.sh"
        );
        eprintln!("skopeo or docker-registry missing: the push was not tried");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (_, wasm) = built_wasm();
    let layout = work.path().join("oci");
    let artifact = write_layout(&layout, &wasm, &ArtifactOptions::default()).unwrap();

    let port = free_port().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = work.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            work.path().join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new(registry)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new("docker-registry", child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while http::get(addr, "/v2/", Duration::from_secs(1))
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(
            guard.try_wait().unwrap().is_none(),
            "docker-registry exited"
        );
        assert!(Instant::now() < deadline, "docker-registry did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }

    let tag = &artifact.tag;
    succeeds(
        Command::new(skopeo)
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{addr}/boifi/boifi-wasm:{tag}")),
    );

    // The registry serves the very manifest the layout holds.
    let manifest = http::request(
        addr,
        "GET",
        &format!("/v2/boifi/boifi-wasm/manifests/{tag}"),
        &[("Accept", OCI_MANIFEST_MEDIA_TYPE)],
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    assert_eq!(oci_digest(&manifest.body), artifact.manifest_digest);
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(artifact.manifest_digest.as_str())
    );
    let parsed: Value = serde_json::from_slice(&manifest.body).unwrap();
    assert_eq!(parsed["layers"].as_array().unwrap().len(), 2);

    // The k3s-demo WasmPlugin, pinned to this artifact, names a blob URL that serves the module.
    let tree = work.path().join("manifests");
    copy_tree(&manifests(), &tree);
    pin_tree(&tree, &artifact).unwrap();
    let demo = crate::support::kustomize(&tree.join("overlays/k3s-demo"));
    let spec = &find(&demo, "WasmPlugin", "boifi-fault").value["spec"];
    let url = spec["url"].as_str().unwrap();
    let path = &url[url.find("/v2/").unwrap()..];
    let blob = http::get(addr, path, Duration::from_secs(5)).unwrap();
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body, wasm);
    assert_eq!(sha256_hex(&blob.body), spec["sha256"].as_str().unwrap());
    let layer = parsed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == WASM_LAYER_MEDIA_TYPE)
        .unwrap();
    assert_eq!(layer["digest"], artifact.wasm_digest);
}

//! The control-plane Deployment against the server it runs: probe paths are GET routes the
//! server serves, and the flags and environment variables the manifest sets are ones the
//! server accepts. When the server binary is built (`cargo test --workspace` builds it), it
//! is started with the manifest's own settings and its probes are called.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boifi_deploy::consistency::{container_setting, http_probes};
use boifi_testkit::http;
use boifi_testkit::ports::free_port;
use boifi_testkit::process::ChildGuard;
use serde_json::Value;

use crate::support::{base, find, repo_root, server_binary};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literal starting right after `prefix` at `at`.
fn literal_after<'a>(text: &'a str, at: usize, prefix: &str) -> Option<&'a str> {
    let rest = text.get(at + prefix.len()..)?;
    rest.get(..rest.find('"')?)
}

/// `(METHOD, path)` of every route the server's source registers: actix
/// `web::resource("/p").route(web::get()...)`, `.route("/p", web::get()...)`, `#[get("/p")]`,
/// and utoipa `#[utoipa::path(get, path = "/p")]`.
fn server_routes(src: &Path) -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("web::resource(\"") {
            let Some(path) = literal_after(&text, at, "web::resource(\"") else {
                continue;
            };
            let chain_end = text[at + 1..]
                .find("web::resource(")
                .map_or(text.len(), |i| at + 1 + i);
            let chain = &text[at..chain_end];
            for method in ["get", "post", "put", "delete", "head"] {
                if chain.contains(&format!("web::{method}()")) {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
        for (at, _) in text.match_indices(".route(\"") {
            let Some(path) = literal_after(&text, at, ".route(\"") else {
                continue;
            };
            let tail = &text[at..(at + 200).min(text.len())];
            for method in ["get", "post", "put", "delete", "head"] {
                if tail.contains(&format!("web::{method}()")) {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
        for method in ["get", "post", "put", "delete"] {
            let attr = format!("#[{method}(\"");
            for (at, _) in text.match_indices(&attr) {
                if let Some(path) = literal_after(&text, at, &attr) {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
            let utoipa = format!("#[utoipa::path({method}, path = \"");
            for (at, _) in text.match_indices(&utoipa) {
                if let Some(path) = literal_after(&text, at, &utoipa) {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

fn server_src() -> PathBuf {
    let src = repo_root().join("crates/boifi-server/src");
    assert!(src.is_dir(), "crates/boifi-server/src is missing");
    src
}

#[test]
fn probe_and_metrics_paths_are_get_routes_of_the_server() {
    let routes = server_routes(&server_src());
    assert!(
        routes.contains(&("GET".to_owned(), "/v1/policies".to_owned())),
        "the route scanner found no known route: {routes:?}"
    );
    let docs = base();
    let probes: Vec<_> = http_probes(&docs)
        .into_iter()
        .filter(|p| p.owner.name == "boifi-control-plane")
        .collect();
    assert_eq!(probes.len(), 3, "{probes:#?}");
    for probe in &probes {
        assert!(
            routes.contains(&("GET".to_owned(), probe.path.clone())),
            "{} path `{}` is not a GET route of boifi-server: {routes:?}",
            probe.kind,
            probe.path
        );
        assert_eq!(probe.port, Some(8080));
    }
    let kinds: BTreeSet<(&str, &str)> = probes
        .iter()
        .map(|p| (p.kind.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("startupProbe", "/v1/health"),
            ("livenessProbe", "/v1/health"),
            ("readinessProbe", "/v1/ready")
        ])
    );
    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    let annotations = &deployment.value["spec"]["template"]["metadata"]["annotations"];
    let metrics = annotations["prometheus.io/path"].as_str().unwrap();
    assert!(
        routes.contains(&("GET".to_owned(), metrics.to_owned())),
        "`{metrics}` is not served"
    );
}

fn control_plane_container() -> Value {
    let docs = base();
    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    deployment.value["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn manifest_flags_and_env_are_accepted_by_the_server() {
    let container = control_plane_container();
    let env: BTreeSet<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        BTreeSet::from(["LISTEN_ADDR", "STORAGE_BACKEND", "ETCD_ENDPOINTS"])
    );
    assert_eq!(
        container_setting(&container, "STORAGE_BACKEND", "--storage"),
        Some("etcd")
    );
    assert_eq!(
        container_setting(&container, "LISTEN_ADDR", "--listen"),
        Some("0.0.0.0:8080")
    );
    let flags: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().split('=').next().unwrap())
        .collect();
    assert_eq!(flags, ["--auth-token-file", "--target-namespaces"]);

    let Some(binary) = server_binary() else {
        eprintln!("boifi-server is not built next to this test: --help not checked");
        return;
    };
    let help = Command::new(&binary).arg("--help").output().unwrap();
    assert!(help.status.success(), "boifi-server --help failed");
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--auth-token-file",
        "--target-namespaces",
        "--listen",
        "--storage",
        "--etcd-endpoints",
        "LISTEN_ADDR",
        "STORAGE_BACKEND",
        "ETCD_ENDPOINTS",
    ] {
        assert!(
            help.contains(needle),
            "boifi-server --help does not mention `{needle}`:\n{help}"
        );
    }
}

/// Starts the built server the way the Deployment does (its env and args; the etcd backend
/// swapped for the in-memory one and the address for a loopback port) and calls the probes.
#[test]
fn server_started_with_the_manifest_settings_answers_its_probes() {
    answers_its_probes(
        &control_plane_container(),
        &[
            ("STORAGE_BACKEND", Some("memory")),
            ("ETCD_ENDPOINTS", None),
        ],
    );
}

/// The chart's default control plane, on its real embedded store: the server started with the
/// Deployment's env (the data volume's mount path mapped into a temporary folder) and args.
#[test]
fn server_started_with_the_charts_default_settings_answers_its_probes() {
    let docs = crate::support::chart_bundle("default");
    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    let container = &deployment.value["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container_setting(container, "STORAGE_BACKEND", "--storage"),
        Some("embedded")
    );
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data").display().to_string();
    answers_its_probes(container, &[("DATA_DIR", Some(data_dir.as_str()))]);
    assert!(
        std::fs::read_dir(data.path().join("data"))
            .unwrap()
            .next()
            .is_some(),
        "the embedded store wrote nothing into DATA_DIR"
    );
}

/// Starts the built server with `container`'s env and args (the address mapped to a loopback
/// port, the token file to a temporary one, `remap` applied: a value replaces a variable's,
/// `None` removes it) and calls its probes and `/metrics`.
fn answers_its_probes(container: &Value, remap: &[(&str, Option<&str>)]) {
    let Some(binary) = server_binary() else {
        eprintln!("boifi-server is not built next to this test: probes not called");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "test-token\n").unwrap();
    let port = free_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut command = Command::new(&binary);
    for var in container["env"].as_array().unwrap() {
        command.env(
            var["name"].as_str().unwrap(),
            var["value"].as_str().unwrap(),
        );
    }
    for (name, value) in remap {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .env("LISTEN_ADDR", addr.to_string())
        .arg(format!("--auth-token-file={}", token_file.display()))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = ChildGuard::new("boifi-server", command.spawn().unwrap());

    let deadline = Instant::now() + Duration::from_secs(15);
    let health = loop {
        match http::get(addr, "/v1/health", Duration::from_secs(2)) {
            Ok(response) => break response,
            Err(err) => {
                assert!(
                    server.try_wait().unwrap().is_none(),
                    "boifi-server exited: {err}"
                );
                assert!(
                    Instant::now() < deadline,
                    "boifi-server did not answer in 15 s: {err}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(health.status, 200, "/v1/health: {}", health.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = http::get(addr, "/v1/ready", Duration::from_secs(2)).unwrap();
        if ready.status == 200 {
            break;
        }
        assert_eq!(ready.status, 503, "/v1/ready: {}", ready.text());
        assert!(
            Instant::now() < deadline,
            "/v1/ready still 503: {}",
            ready.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = http::get(addr, "/metrics", Duration::from_secs(2)).unwrap();
    assert_eq!(metrics.status, 200);
}

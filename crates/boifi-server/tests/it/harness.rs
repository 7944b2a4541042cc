//! An in-process server on a loopback port, and a `boifi-server` child process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boifi_server::app::{start, RunningServer, ServerConfig};
use boifi_server::auth::Auth;
use boifi_server::store::local::LocalStore;
use boifi_server::store::PolicyStore;
use boifi_testkit::process::{spawn_logged, ChildGuard};

/// The token of servers started with auth.
pub const TOKEN: &str = "s3cret-test-token";

/// A server running inside the test process.
pub struct InProcess {
    pub server: Option<RunningServer>,
    pub store: Arc<dyn PolicyStore>,
    pub base: String,
    pub client: reqwest::Client,
}

impl InProcess {
    /// A server over a fresh memory store.
    pub async fn start(auth: Auth) -> InProcess {
        let store: Arc<dyn PolicyStore> = Arc::new(LocalStore::in_memory());
        InProcess::start_with(auth, store).await
    }

    pub async fn start_with(auth: Auth, store: Arc<dyn PolicyStore>) -> InProcess {
        let config = ServerConfig {
            auth,
            workers: Some(2),
            ..ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
        };
        let server = start(config, Arc::clone(&store)).await.unwrap();
        let base = format!("http://{}", server.addr());
        InProcess {
            server: Some(server),
            store,
            base,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(2048)
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The value of an unlabelled metric.
    /// `GET path`, without credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn metric(&self, name: &str) -> u64 {
        metric_at(&self.client, self.url("/metrics"), name).await
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// The value of the sample `name` on the Prometheus page at `url`; a missing one fails.
pub async fn metric_at(client: &reqwest::Client, url: impl reqwest::IntoUrl, name: &str) -> u64 {
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    metric_value(&text, name).unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}

/// Sends `request`; the answer's status and body.
pub async fn answer(request: reqwest::RequestBuilder) -> (reqwest::StatusCode, String) {
    let r = request.send().await.unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// Posts a policy (JSON) to `url` (`/v1/policies`, or `/v1/policies/create` for a strict
/// create); fails unless it is stored; the stored policy.
pub async fn create_at(client: &reqwest::Client, url: String, body: String) -> serde_json::Value {
    let (status, text) = answer(
        client
            .post(url)
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The names of the policies a store holds now.
pub async fn policy_names(store: &dyn PolicyStore) -> Vec<String> {
    store
        .snapshot()
        .await
        .unwrap()
        .policies
        .keys()
        .cloned()
        .collect()
}

/// Waits (bounded) until `n` long-polls are held, as the server's waiter gauge on the
/// Prometheus page at `metrics_url` says: a poll sent is not yet a poll waiting.
pub async fn until_waiting(client: &reqwest::Client, metrics_url: &str, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting = metric_at(client, metrics_url, "boifi_config_waiting_requests").await;
        if waiting >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {waiting} of {n} long-polls are waiting"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A `boifi-server` child process on `etcd` named `name` (`--replica-id`), logging into the
/// cluster's directory, with `extra` arguments.
pub fn etcd_replica(etcd: &boifi_testkit::etcd::EtcdCluster, name: &str, extra: &[&str]) -> Binary {
    let endpoints = etcd.endpoints_arg();
    let log = etcd.dir().join(format!("{name}.log"));
    let mut args = vec![
        "--storage",
        "etcd",
        "--etcd-endpoints",
        &endpoints,
        "--etcd-prefix",
        "/boifi-replicas/policies/",
        "--replica-id",
        name,
    ];
    args.extend_from_slice(extra);
    Binary::start(&args, &log)
}

/// The integer value of the sample `name` (with its labels written exactly) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// A policy as JSON text.
pub fn policy_json(name: &str, service: &str, extra_fault: &str) -> String {
    format!(
        r#"{{"metadata": {{"name": "{name}"}},
            "spec": {{"selector": {{"service": "{service}", "namespace": "demo"}},
                      "rules": [{{"match": {{"path": {{"prefix": "/"}}}},
                                  "fault": {{"percentage": 50, {extra_fault}
                                             "abort": {{"httpStatus": 503}}}}}}]}}}}"#
    )
}

/// A `boifi-server` child process (the real binary), killed on drop.
pub struct Binary {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
    pub log: std::path::PathBuf,
}

impl Binary {
    /// Starts the binary with `args` (plus `--listen` on a free port) and waits until
    /// `/v1/ready` answers 200. Output goes to `log` (appended).
    pub fn start(args: &[&str], log: &Path) -> Binary {
        let port = boifi_testkit::ports::free_port().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = spawn_logged(
            Command::new(env!("CARGO_BIN_EXE_boifi-server"))
                .args(args)
                .arg("--listen")
                .arg(addr.to_string())
                .env_remove("STORAGE_BACKEND")
                .env_remove("LISTEN_ADDR")
                .env_remove("DATA_DIR")
                .env_remove("AUTH_TOKEN_FILE")
                .env_remove("AUTH_READS")
                .env_remove("CREDENTIALS")
                .env_remove("TARGET_NAMESPACES")
                .env("RUST_LOG", "info"),
            out,
        )
        .unwrap();
        let mut binary = Binary {
            guard: ChildGuard::new("boifi-server", child),
            addr,
            log: log.to_owned(),
        };
        binary.wait_ready();
        binary
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://{}/v1/ready", self.addr);
        loop {
            if let Ok(r) = get_status(&url) {
                if r == 200 {
                    return;
                }
            }
            if let Some(status) = self.guard.try_wait().unwrap() {
                panic!(
                    "boifi-server exited with {status}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "boifi-server not ready:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The status of a blocking `GET` (std only, no runtime needed): readiness polling.
fn get_status(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// GETs `url` and reads the JSON answer; any failure fails the test.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
) -> T {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

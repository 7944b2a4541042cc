//! A real Prometheus (Debian's `prometheus`) on the loopback, scraping a mesh as a
//! Prometheus in Kubernetes scrapes an Istio mesh: every sidecar's `/stats/prometheus` with the
//! pod's `app`, `namespace` and `pod` labels (what Istio's sample Prometheus configuration maps
//! from pod metadata), and the control plane's `/metrics`. The sidecars keep only the stats
//! Istio's bootstrap keeps, plus the inclusion the chart documents for
//! `proxyStatsMatcher` ([`istio_stats_config`]), so what the dashboard finds here is what it
//! finds behind Istio. Used by the dashboard test and `make demo PROM=1`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::MeshError;
use crate::http::{HttpClient, RequestSpec};
use crate::mesh::Mesh;
use crate::process::{existing_file, wait_for, ManagedProcess};
use boifi_testkit::ports::free_port;

/// `meshConfig.defaultConfig.proxyStatsMatcher.inclusionRegexps` for boifi: the filter's
/// counters, and each sidecar's inbound request counters for the dashboard's mesh panels
/// (charts/boifi/values.yaml `metrics.proxyStatsInclusionRegexps` documents the same list).
pub const PROXY_STATS_INCLUSION_REGEXPS: &[&str] = &[
    ".*hfi.*",
    r"http\.inbound_.*\.downstream_rq_(total|[1-5]xx)",
];

/// The stats Istio's sidecar bootstrap keeps whatever `proxyStatsMatcher` says (its
/// `stats_matcher.inclusion_list`, pkg/bootstrap, as in Istio's golden bootstrap).
pub const ISTIO_DEFAULT_INCLUSION: &[(&str, &str)] = &[
    ("prefix", "reporter="),
    ("prefix", "cluster_manager"),
    ("prefix", "listener_manager"),
    ("prefix", "server"),
    ("prefix", "cluster.xds-grpc"),
    ("prefix", "wasm"),
    ("suffix", "rbac.allowed"),
    ("suffix", "rbac.denied"),
    ("suffix", "shadow_allowed"),
    ("suffix", "shadow_denied"),
    ("safe_regex", r"vhost\..*\.route\..*"),
    ("prefix", "component"),
    ("prefix", "istio"),
];

/// Istio's tags for HTTP status codes (its bootstrap turns Envoy's default tags off and sets
/// its own; these are the ones the dashboard's labels come from).
pub const ISTIO_RESPONSE_CODE_TAGS: &[(&str, &str)] = &[
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
];

/// The sidecars' `stats_config`: Istio's inclusion list plus
/// [`PROXY_STATS_INCLUSION_REGEXPS`], Istio's tags instead of Envoy's defaults, and the filter's
/// `policy` tag ([`boifi_engine::metrics::POLICY_TAG_REGEX`]; the chart adds it to Istio's
/// bootstrap through `sidecar.istio.io/bootstrapOverride`).
#[must_use]
pub fn istio_stats_config() -> Value {
    let mut patterns: Vec<Value> = ISTIO_DEFAULT_INCLUSION
        .iter()
        .map(|(kind, value)| match *kind {
            "safe_regex" => json!({"safe_regex": {"regex": value}}),
            kind => json!({ kind: value }),
        })
        .collect();
    patterns.extend(
        PROXY_STATS_INCLUSION_REGEXPS
            .iter()
            .map(|regex| json!({"safe_regex": {"regex": regex}})),
    );
    let mut tags: Vec<Value> = ISTIO_RESPONSE_CODE_TAGS
        .iter()
        .map(|(name, regex)| json!({"tag_name": name, "regex": regex}))
        .collect();
    tags.push(policy_stats_tag());
    json!({
        "use_all_default_tags": false,
        "stats_tags": tags,
        "stats_matcher": {"inclusion_list": {"patterns": patterns}},
    })
}

/// The Envoy `stats_tags` entry that turns `hfi.policy.<name>.<kind>` into
/// `hfi_policy_<kind>{policy="<name>"}`.
#[must_use]
pub fn policy_stats_tag() -> Value {
    json!({"tag_name": "policy", "regex": boifi_engine::metrics::POLICY_TAG_REGEX})
}

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The Prometheus job.
    pub job: String,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// The metrics path.
    pub metrics_path: String,
    /// Target labels.
    pub labels: BTreeMap<String, String>,
}

/// Every sidecar (`/stats/prometheus` on its admin port, labelled `app`, `namespace`, `pod`)
/// and every control-plane replica (`/metrics`) of `mesh`.
#[must_use]
pub fn mesh_targets(mesh: &Mesh) -> Vec<ScrapeTarget> {
    let mut out: Vec<ScrapeTarget> = mesh
        .pods()
        .map(|(spec, pod)| ScrapeTarget {
            job: "envoy-stats".to_owned(),
            address: format!("127.0.0.1:{}", pod.admin_port),
            metrics_path: "/stats/prometheus".to_owned(),
            labels: BTreeMap::from([
                ("app".to_owned(), spec.name.clone()),
                ("namespace".to_owned(), spec.namespace.clone()),
                ("pod".to_owned(), pod.name.clone()),
            ]),
        })
        .collect();
    out.extend(
        mesh.control_plane
            .replicas
            .iter()
            .map(|replica| ScrapeTarget {
                job: "boifi-control-plane".to_owned(),
                address: format!("127.0.0.1:{}", replica.port),
                metrics_path: "/metrics".to_owned(),
                labels: BTreeMap::from([("pod".to_owned(), replica.name.clone())]),
            }),
    );
    out
}

/// `prometheus.yml` for `targets`, one static config per target.
#[must_use]
pub fn config_yaml(targets: &[ScrapeTarget], scrape_interval: Duration) -> String {
    let interval = format!("{}ms", scrape_interval.as_millis().max(1));
    let mut jobs: BTreeMap<(&str, &str), Vec<&ScrapeTarget>> = BTreeMap::new();
    for target in targets {
        jobs.entry((&target.job, &target.metrics_path))
            .or_default()
            .push(target);
    }
    // JSON is YAML: every string is quoted and escaped by serde_json.
    let mut out = format!("global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\nscrape_configs:\n");
    for ((job, path), targets) in jobs {
        let _ = writeln!(out, "  - job_name: {}", json!(job));
        let _ = writeln!(out, "    metrics_path: {}", json!(path));
        let _ = writeln!(out, "    static_configs:");
        for target in targets {
            let _ = writeln!(
                out,
                "      - targets: [{}]\n        labels: {}",
                json!(target.address),
                json!(target.labels)
            );
        }
    }
    out
}

/// The Grafana dashboard whose queries are checked against this Prometheus, relative to the
/// repository root.
pub const DASHBOARD: &str = "charts/boifi/dashboards/boifi.json";

/// The `prometheus` binary: `$BOIFI_PROMETHEUS`, else Debian's.
///
/// # Errors
/// [`MeshError::Missing`] naming the package that provides it.
pub fn prometheus_binary() -> Result<PathBuf, MeshError> {
    let path = std::env::var_os("BOIFI_PROMETHEUS")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
    existing_file(
        path,
        "prometheus",
        "run `make deps` (it installs Debian's `prometheus` package)",
    )
}

/// One series of an instant query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (`NaN` where PromQL gives no number, e.g. a quantile of no observation).
    pub value: f64,
}

/// `/api/v1/query`'s answer, the parts read here.
#[derive(Debug, Deserialize)]
struct QueryAnswer {
    status: String,
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    data: QueryData,
}

#[derive(Debug, Default, Deserialize)]
struct QueryData {
    #[serde(default)]
    result: Vec<QueryResult>,
}

#[derive(Debug, Deserialize)]
struct QueryResult {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// A running Prometheus; killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    process: ManagedProcess,
    port: u16,
    config: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port with its data under `dir`, scraping
    /// `targets` every `scrape_interval`, and waits until it is ready.
    ///
    /// # Errors
    /// No binary, a write or start failure, or not ready within 30 s.
    pub fn start(
        dir: &Path,
        targets: &[ScrapeTarget],
        scrape_interval: Duration,
        client: &HttpClient,
    ) -> Result<Prometheus, MeshError> {
        let port = free_port().map_err(MeshError::Ports)?;
        Prometheus::start_on(dir, targets, scrape_interval, client, port)
    }

    /// [`Prometheus::start`] on `port` (reserved earlier, e.g. because the control plane's
    /// guards are told the address before Prometheus starts).
    ///
    /// # Errors
    /// As [`Prometheus::start`].
    pub fn start_on(
        dir: &Path,
        targets: &[ScrapeTarget],
        scrape_interval: Duration,
        client: &HttpClient,
        port: u16,
    ) -> Result<Prometheus, MeshError> {
        let binary = prometheus_binary()?;
        std::fs::create_dir_all(dir).map_err(|e| MeshError::io(dir, e))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets, scrape_interval))
            .map_err(|e| MeshError::io(&config, e))?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let process = ManagedProcess::spawn("prometheus", command, &dir.join("prometheus.log"))?;
        let mut prometheus = Prometheus {
            process,
            port,
            config,
        };
        let url = prometheus.url();
        wait_for(
            "prometheus ready",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                prometheus.process.check_running()?;
                Ok(client
                    .get(&url, "/-/ready")
                    .ok()
                    .filter(|a| a.status == 200)
                    .map(|_| ()))
            },
        )?;
        Ok(prometheus)
    }

    /// Starts Prometheus under the mesh's folder, scraping every sidecar and control-plane
    /// replica of `mesh` ([`mesh_targets`]) every `scrape_interval`, and waits until each
    /// target has been scraped once.
    ///
    /// # Errors
    /// As [`Prometheus::start`], or a target still down after 30 s.
    pub fn for_mesh(mesh: &Mesh, scrape_interval: Duration) -> Result<Prometheus, MeshError> {
        let port = free_port().map_err(MeshError::Ports)?;
        Prometheus::for_mesh_on(mesh, scrape_interval, port)
    }

    /// [`Prometheus::for_mesh`] on `port` (reserved before the mesh started, so the control
    /// plane's `--prometheus-url` could name it).
    ///
    /// # Errors
    /// As [`Prometheus::for_mesh`].
    pub fn for_mesh_on(
        mesh: &Mesh,
        scrape_interval: Duration,
        port: u16,
    ) -> Result<Prometheus, MeshError> {
        let targets = mesh_targets(mesh);
        let prometheus = Prometheus::start_on(
            &mesh.dir().join("prometheus"),
            &targets,
            scrape_interval,
            &mesh.client,
            port,
        )?;
        wait_for(
            "prometheus to scrape every sidecar and the control plane",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                Ok(prometheus
                    .all_up(&mesh.client, targets.len())?
                    .then_some(()))
            },
        )?;
        Ok(prometheus)
    }

    /// Kills Prometheus (a monitoring outage); it stays down.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its configuration file.
    #[must_use]
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Every series an instant query returns (`/api/v1/query`).
    ///
    /// # Errors
    /// An HTTP failure, or Prometheus refusing the query (its message is kept).
    pub fn query(&self, client: &HttpClient, expr: &str) -> Result<Vec<Sample>, MeshError> {
        let url = self.url();
        let mut spec = RequestSpec::get("/api/v1/query");
        spec.method = Method::POST;
        let body = format!("query={}", boifi_core::wire::percent_encode(expr));
        let answer = client.send(
            &url,
            &spec,
            Some(("application/x-www-form-urlencoded", body.into_bytes())),
            Duration::from_secs(10),
        )?;
        let refused = |reason: String| MeshError::Http {
            url: format!("{url}/api/v1/query ({expr})"),
            reason,
        };
        let parsed: QueryAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| refused(format!("status {}: {e}: {}", answer.status, answer.text())))?;
        if parsed.status != "success" {
            return Err(refused(format!("{}: {}", parsed.error_type, parsed.error)));
        }
        Ok(parsed
            .data
            .result
            .into_iter()
            .map(|r| Sample {
                labels: r.metric,
                // `[<time>, "<value>"]`; Prometheus writes NaN and ±Inf as strings too.
                value: r.value.1.parse().unwrap_or(f64::NAN),
            })
            .collect())
    }

    /// Whether every target is scraped successfully (`up == 1` for each).
    ///
    /// # Errors
    /// As [`Prometheus::query`].
    pub fn all_up(&self, client: &HttpClient, targets: usize) -> Result<bool, MeshError> {
        Ok(self.query(client, "up == 1")?.len() == targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden_bootstrap() -> Value {
        let path =
            crate::topology::repo_root().join("testdata/istio-bootstrap/default_golden.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The mesh keeps the stats a real Istio sidecar keeps, tagged as Istio tags them.
    #[test]
    fn stats_config_is_istios_plus_the_documented_inclusion() {
        let golden = &golden_bootstrap()["stats_config"];
        let config = istio_stats_config();
        assert_eq!(
            config["use_all_default_tags"],
            golden["use_all_default_tags"]
        );
        let istio = golden["stats_matcher"]["inclusion_list"]["patterns"]
            .as_array()
            .unwrap();
        let ours = config["stats_matcher"]["inclusion_list"]["patterns"]
            .as_array()
            .unwrap();
        let (defaults, added) = ours.split_at(istio.len());
        assert_eq!(defaults, istio.as_slice());
        let added: Vec<&str> = added
            .iter()
            .map(|p| p["safe_regex"]["regex"].as_str().unwrap())
            .collect();
        assert_eq!(added, PROXY_STATS_INCLUSION_REGEXPS);
        let golden_tags = golden["stats_tags"].as_array().unwrap();
        for (name, regex) in ISTIO_RESPONSE_CODE_TAGS {
            assert!(
                golden_tags.contains(&json!({"tag_name": name, "regex": regex})),
                "{name}"
            );
        }
    }

    /// The chart documents and ships exactly what the mesh runs the dashboard against.
    #[test]
    fn the_chart_documents_the_same_inclusion_and_policy_tag() {
        let values =
            std::fs::read_to_string(crate::topology::repo_root().join("charts/boifi/values.yaml"))
                .unwrap();
        let listed: Vec<&str> = values
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("proxyStatsInclusionRegexps:"))
            .skip(1)
            .map_while(|l| l.trim_start().strip_prefix("- '"))
            .map(|l| l.strip_suffix('\'').unwrap())
            .collect();
        assert_eq!(listed, PROXY_STATS_INCLUSION_REGEXPS);
        assert!(
            values.contains(&format!(
                "regex: '{}'",
                boifi_engine::metrics::POLICY_TAG_REGEX
            )),
            "charts/boifi/values.yaml metrics.policyStatsTag.regex"
        );
    }

    #[test]
    fn config_has_one_job_per_kind_of_target() {
        let target = |job: &str, port: u16, path: &str| ScrapeTarget {
            job: job.to_owned(),
            address: format!("127.0.0.1:{port}"),
            metrics_path: path.to_owned(),
            labels: BTreeMap::from([("app".to_owned(), "a\"b".to_owned())]),
        };
        let yaml = config_yaml(
            &[
                target("envoy-stats", 1, "/stats/prometheus"),
                target("envoy-stats", 2, "/stats/prometheus"),
                target("boifi-control-plane", 3, "/metrics"),
            ],
            Duration::from_millis(1500),
        );
        assert!(
            yaml.starts_with("global:\n  scrape_interval: 1500ms\n"),
            "{yaml}"
        );
        assert_eq!(yaml.matches("job_name").count(), 2, "{yaml}");
        assert!(yaml.contains(r#"labels: {"app":"a\"b"}"#), "{yaml}");
    }
}

//! The Grafana dashboard ([`DASHBOARD`]) against a real Prometheus:
//! Debian's `prometheus` scrapes a small mesh's sidecars (with Istio's stats inclusion and the
//! chart's `proxyStatsMatcher` additions) and the control plane while a fault runs, and every
//! query of every panel must return at least one series carrying the labels its legend shows.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use boifi_mesh::process::wait_for;
use boifi_mesh::prometheus::{istio_stats_config, Prometheus, Sample, DASHBOARD};
use boifi_mesh::topology::repo_root;
use boifi_mesh::Topology;
use serde_json::Value;

use crate::support::{apply, every_path, exclusive, options, send, start};

/// What Grafana substitutes before it sends a query: the rate window (4 scrape intervals or
/// more, as Grafana's `$__rate_interval` is) and the namespace variable's "All".
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "20s")
        .replace("$namespace", ".*")
}

/// One query of one panel, and the labels its legend names (`{{app}}` → `app`).
struct PanelQuery {
    panel: String,
    expr: String,
    labels: BTreeSet<String>,
}

fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            let labels = legend
                .split("{{")
                .skip(1)
                .filter_map(|rest| rest.split_once("}}"))
                .map(|(label, _)| label.trim().to_owned())
                .collect();
            out.push(PanelQuery {
                panel: panel["title"].as_str().unwrap().to_owned(),
                expr: target["expr"].as_str().unwrap().to_owned(),
                labels,
            });
        }
    }
    out
}

/// Every query that returns no series, or a series without a label its panel shows.
fn problems(prometheus: &Prometheus, mesh: &boifi_mesh::Mesh, dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for query in panel_queries(dashboard) {
        match prometheus.query(&mesh.client, &substitute(&query.expr)) {
            Err(e) => out.push(format!("{}: {e}", query.panel)),
            Ok(series) if series.is_empty() => {
                out.push(format!(
                    "{}: `{}` returned no series",
                    query.panel, query.expr
                ));
            }
            Ok(series) => {
                for s in &series {
                    for label in &query.labels {
                        if s.labels.get(label).is_none_or(String::is_empty) {
                            out.push(format!(
                                "{}: a series of `{}` has no `{label}` label: {:?}",
                                query.panel, query.expr, s.labels
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn value_for(samples: &[Sample], label: &str, value: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.labels.get(label).map(String::as_str) == Some(value))
        .map(|s| s.value)
}

/// 20 % of frontend's requests aborted, 25 % of the rest delayed: two policies, so the
/// per-policy panels have two names to show.
fn policies() -> String {
    let frontend = "{service: frontend, namespace: demo}";
    [
        every_path(
            "dash-frontend-abort",
            frontend,
            "{percentage: 20, abort: {httpStatus: 503}}",
        ),
        every_path(
            "dash-frontend-delay",
            frontend,
            "{percentage: 25, delay: {fixed_delay_ms: 20}}",
        ),
    ]
    .join("---\n")
}

#[test]
fn every_dashboard_query_returns_its_series_during_a_fault() {
    let _machine = exclusive();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join(DASHBOARD)).unwrap())
            .unwrap();
    let mut o = options(Topology::online_boutique().only(&["frontend", "cartservice"]));
    o.sidecar_stats_config = Some(istio_stats_config());
    let mesh = start(o);
    let prometheus =
        Prometheus::for_mesh(&mesh, Duration::from_secs(1)).unwrap_or_else(|e| panic!("{e}"));
    // Applied once Prometheus holds a sample of every sidecar's config version and of every
    // replica's fan-out histogram from before the change, so the propagation it causes is in
    // its data (a rate needs the sample before the increase).
    let (sidecars, replicas) = (mesh.pods().count(), mesh.control_plane.replicas.len());
    wait_for(
        "prometheus to hold a sample of every sidecar's config version and every replica's fan-out",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let versions = prometheus.query(&mesh.client, "hfi_config_version")?;
            let fanouts = prometheus.query(&mesh.client, "boifi_config_fanout_seconds_count")?;
            Ok((versions.len() == sidecars && fanouts.len() == replicas).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    apply(&mesh, &policies());

    // Traffic while Prometheus scrapes, until every query answers (or 90 s).
    let start_at = Instant::now();
    let mut left = loop {
        send(&mesh, "frontend", 150);
        send(&mesh, "cartservice", 50);
        let left = problems(&prometheus, &mesh, &dashboard);
        if left.is_empty() || start_at.elapsed() > Duration::from_secs(90) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if !left.is_empty() {
        left.push(format!(
            "prometheus config: {}",
            prometheus.config_path().display()
        ));
    }
    assert!(left.is_empty(), "{left:#?}");

    // The numbers say what the panels promise: frontend is faulted, cartservice is not, each
    // policy is counted under its own name, and the 5xx share is about the abort percentage.
    let aborts = prometheus
        .query(
            &mesh.client,
            &substitute(&panel_queries(&dashboard)[0].expr),
        )
        .unwrap();
    assert!(
        value_for(&aborts, "app", "frontend").unwrap() > 0.0,
        "{aborts:?}"
    );
    assert_eq!(
        value_for(&aborts, "app", "cartservice"),
        Some(0.0),
        "{aborts:?}"
    );
    let by_policy = prometheus
        .query(
            &mesh.client,
            r#"sum by (policy) (hfi_policy_aborts_total) + sum by (policy) (hfi_policy_delays_total)"#,
        )
        .unwrap();
    for policy in ["dash-frontend-abort", "dash-frontend-delay"] {
        assert!(
            value_for(&by_policy, "policy", policy).unwrap() > 0.0,
            "{by_policy:?}"
        );
    }
    let share = panel_queries(&dashboard)
        .into_iter()
        .find(|q| q.panel == "5xx share per service")
        .unwrap();
    let shares = prometheus
        .query(&mesh.client, &substitute(&share.expr))
        .unwrap();
    let frontend = value_for(&shares, "app", "frontend").unwrap();
    assert!((0.08..0.35).contains(&frontend), "{shares:?}");

    let fanout = panel_queries(&dashboard)
        .into_iter()
        .find(|q| q.panel == "Propagation fan-out")
        .unwrap();
    // Over 5 minutes, so the apply above is inside the window however long the loop took.
    let p50 = prometheus
        .query(
            &mesh.client,
            &substitute(&fanout.expr.replace("$__rate_interval", "5m")),
        )
        .unwrap();
    assert!(p50.iter().all(|s| s.value.is_finite()), "{p50:?}");

    // A copy with one wrong metric name fails, naming the panel.
    let mut wrong = dashboard.clone();
    let expr = &mut wrong["panels"][1]["targets"][0]["expr"];
    let renamed = expr
        .as_str()
        .unwrap()
        .replace("hfi_faults_aborts_total", "hfi_faults_abort_total");
    *expr = Value::String(renamed);
    let found = problems(&prometheus, &mesh, &wrong);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("Aborts per service: ") && found[0].contains("returned no series"),
        "{found:#?}"
    );
}

//! Bad plugin configuration: a clear log line and passthrough, never a failed `on_configure`.

use super::*;
use boifi_testkit::ports::free_port;
use serde_json::json;

pub fn bad_plugin_configuration_logs_and_passes_traffic_through(filter: FilterKind) {
    let p = Prereqs::find(filter);
    let _serial = serial();
    let upstream = Upstream::start();
    let mut o = p.envoy_options(
        Workload::new("frontend", "demo"),
        free_port().unwrap(),
        upstream.port,
    );
    o.plugin_config = json!({"long_poll_wait_ms": "soon", "colour": "blue"});
    let envoy = Envoy::start(&p.envoy, &o);
    let mut c = envoy.client();
    assert!(burst(&mut c, "/", 10)
        .iter()
        .all(|r| r.status == 200 && r.text() == "ok"));
    assert!(envoy.wait_for_log("passes all traffic through"));
    let log = envoy.log();
    assert!(
        log.contains("plugin configuration: colour: unknown field")
            && log.contains("long_poll_wait_ms")
            && log.contains("passes all traffic through"),
        "{log}"
    );
}

pub fn identity_overrides_serve_a_plain_envoy_without_istio_metadata(filter: FilterKind) {
    let mesh = Mesh::start(filter);
    let mut workload = Workload::new("ignored", "ignored");
    workload.labels.clear();
    let mut o = mesh.options(workload);
    o.plugin_config["identity"] =
        json!({"service": "checkout", "namespace": "shop", "pod": "checkout-0"});
    let envoy = Envoy::start(&mesh.prereqs.envoy, &o);
    mesh.put(
        "checkout",
        json!({"service": "checkout", "namespace": "shop"}),
        "/",
        abort(100, 503),
    );
    let mut c = envoy.client();
    assert!(wait_for_status(&mut c, "/x", 503, Duration::from_secs(5)).is_some());
    // Envoy flushes its log file every 20 ms here: wait for the line rather than race it.
    assert!(
        envoy.wait_for_log("identity service=checkout namespace=shop pod=checkout-0"),
        "{}",
        envoy.log()
    );
}

//! The orders in which Envoy calls back into the module from inside its own calls (see the
//! `abi` module's docs): a local reply (`send_response`) that completes and destroys the stream
//! before it returns, and a resumed request (`continue_decoding`) that the next filter answers,
//! ending the stream, before it returns. Each order is driven in a real Envoy, and the module's
//! debug line says the stream's `stream_complete` hook did come inside the call (so the test
//! cannot pass without reaching that order); Envoy must answer every request and stay up.
//! Envoy 1.40 completes an abort sent from the request-headers hook only after that hook
//! returns, and destroys filters after the hook in every case; the module does not rely on
//! either (the `abi` module's docs).

use boifi_filter_e2e::harness::envoy::Envoy;
use boifi_filter_e2e::harness::http::Client;
use boifi_filter_e2e::harness::net::loopback;
use boifi_filter_e2e::harness::FilterKind;
use boifi_filter_e2e::scenarios::{abort, wait_for_status, Mesh};
use serde_json::json;
use std::time::Duration;

/// How many times the module has logged (at debug level) that Envoy completed a stream inside
/// `call` (`send_response` or `continue_decoding`).
fn completed_inside(envoy: &Envoy, call: &str) -> usize {
    let log = envoy.log();
    log.lines()
        .filter(|l| l.contains("boifi: Envoy completed the stream") && l.ends_with(call))
        .count()
}

/// Waits until the log has more than `before` such lines for `call`.
fn wait_for_completed_inside(envoy: &Envoy, call: &str, before: usize) -> bool {
    boifi_filter_e2e::harness::wait_for(Duration::from_secs(5), || {
        (completed_inside(envoy, call) > before).then_some(())
    })
    .is_some()
}

/// Requests `path` (delayed 50 ms) once as a GET and once with a body that arrives while it is
/// held: each is answered `status` after the delay, and the module saw Envoy complete its stream
/// inside `call`.
fn assert_completes_inside(envoy: &Envoy, c: &mut Client, path: &str, status: u16, call: &str) {
    for body in [&b""[..], b"held body"] {
        let method = if body.is_empty() { "GET" } else { "POST" };
        let before = completed_inside(envoy, call);
        let r = c.request(method, path, &[], body).unwrap();
        assert_eq!(r.status, status, "{method} {path}");
        assert!(
            r.elapsed >= Duration::from_millis(50),
            "{method} {path}: {:?}",
            r.elapsed
        );
        assert!(
            wait_for_completed_inside(envoy, call, before),
            "{method} {path}: the stream did not complete inside {call}: {}",
            envoy.log()
        );
    }
}

#[test]
fn envoy_completes_the_stream_inside_send_response_and_continue_decoding() {
    let mesh = Mesh::start(FilterKind::Native);
    let mut options = mesh.options(boifi_filter_e2e::harness::envoy::Workload::new(
        "frontend", "demo",
    ));
    // The router answers `/direct` itself, inside the call that hands it the request.
    options.extra_routes = vec![json!({
        "match": {"prefix": "/direct"},
        "direct_response": {"status": 204},
    })];
    let envoy = Envoy::start(&mesh.prereqs.envoy, &options);
    let selector = json!({"service": "frontend"});
    mesh.put("r-abort", selector.clone(), "/abort", abort(100, 503));
    mesh.put(
        "r-direct",
        selector.clone(),
        "/direct",
        json!({"percentage": 100, "delay": {"fixed_delay_ms": 50}}),
    );
    // Put last: once it answers, the sidecar holds a set with the two before it.
    mesh.put(
        "r-both",
        selector,
        "/both",
        json!({"percentage": 100, "delay": {"fixed_delay_ms": 50}, "abort": {"httpStatus": 429}}),
    );
    let mut c = envoy.client();
    assert!(wait_for_status(&mut c, "/both", 429, Duration::from_secs(5)).is_some());
    let logging = Client::new(loopback(envoy.admin_port))
        .request("POST", "/logging?dynamic_modules=debug", &[], &[])
        .unwrap();
    assert_eq!(logging.status, 200, "{}", logging.text());

    // 1. An abort answered from the request-headers hook (Envoy completes it after the hook).
    assert_eq!(c.get("/abort").unwrap().status, 503);
    assert_eq!(
        c.request("POST", "/abort", &[], b"body").unwrap().status,
        503
    );

    // 2. A delay then an abort, answered from the scheduled hook: Envoy completes the stream
    //    inside `send_response`.
    assert_completes_inside(&envoy, &mut c, "/both", 429, "send_response");
    // 3. A delay released through `continue_decoding`, where the router answers at once.
    assert_completes_inside(&envoy, &mut c, "/direct", 204, "continue_decoding");

    // The same connection still serves, and Envoy is whole.
    assert_eq!(c.get("/").unwrap().status, 200);
    let mut envoy = envoy;
    assert!(envoy.is_running(), "envoy died: {}", envoy.log());
    let log = envoy.log();
    assert!(!log.contains("critical"), "{log}");
}

//! Faults after the app did its work (`target: response`) and stream resets, in Envoy: the app
//! serves every request of a response-phase abort while every caller sees the failure, a
//! request-phase abort keeps every request from it, a response delay holds an answer the app
//! gave at once, and a reset leaves the caller without an answer. The native module refuses
//! response delays and resets (its ABI binding has neither call): the test checks that it says
//! so and leaves the traffic unfaulted.

use super::*;
use crate::harness::envoy::parse_prometheus;
use crate::harness::http::Client;
use crate::harness::net::loopback;
use boifi_mesh::stats::quantile;

/// Calls per measured fault.
const CALLS: usize = 200;
/// Concurrent callers (keeps the 300 ms delays to a few seconds of wall time).
const CALLERS: usize = 20;

/// `CALLS` GETs of `path` from `CALLERS` threads, each with its own connection per call (a
/// reset connection is never reused, and the client's one retry on a reused connection never
/// resends a request).
fn concurrent(port: u16, path: &str) -> Vec<Result<Response, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(move || {
                    (0..CALLS / CALLERS)
                        .map(|_| {
                            Client::new(loopback(port))
                                .get(path)
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

pub fn the_app_does_the_work_and_the_caller_gets_the_fault(filter: FilterKind) {
    let mesh = Mesh::start(filter);
    let envoy = mesh.frontend();
    let selector = json!({"service": "frontend"});
    mesh.put(
        "lost-answer",
        selector.clone(),
        "/after",
        json!({"percentage": 100, "target": "response", "abort": {"httpStatus": 503}}),
    );
    mesh.put(
        "never-arrives",
        selector.clone(),
        "/before",
        abort(100, 503),
    );
    mesh.put(
        "held-answer",
        selector.clone(),
        "/held",
        json!({"percentage": 100, "target": "response", "delay": {"fixed_delay_ms": 300}}),
    );
    mesh.put(
        "reset-after",
        selector,
        "/reset",
        json!({"percentage": 100, "target": "response", "reset": true}),
    );
    let mut c = envoy.client();
    assert!(
        wait_for_status(&mut c, "/before", 503, Duration::from_secs(5)).is_some(),
        "the policies never applied"
    );
    let port = envoy.listener_port;

    // Request-phase abort: the app sees none of the requests.
    let served = mesh.upstream.requests();
    let before = concurrent(port, "/before");
    assert!(before
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| r.status == 503)));
    assert_eq!(
        mesh.upstream.requests() - served,
        0,
        "a request-phase abort reached the app"
    );

    // Response-phase abort: the app serves every request, and every caller gets the 503.
    let served = mesh.upstream.requests();
    let after = concurrent(port, "/after");
    let failed = after
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_ok_and(|r| r.status == 503 && r.header("x-boifi-fault") == Some("lost-answer"))
        })
        .count();
    assert_eq!(
        failed,
        CALLS,
        "every caller sees the failure: {:?}",
        after
            .iter()
            .find(|r| r.as_ref().map_or(true, |r| r.status != 503))
    );
    assert_eq!(
        mesh.upstream.requests() - served,
        CALLS as u64,
        "the app served every request whose answer was lost"
    );
    let text = envoy.prometheus();
    assert_eq!(
        parse_prometheus(&text, "hfi_faults_response_aborts_total"),
        Some(CALLS as f64)
    );

    match filter {
        FilterKind::Wasm => {
            response_delay_holds_the_answer(port);
            reset_leaves_the_caller_without_an_answer(&mesh, &envoy, port);
        }
        FilterKind::Native => {
            // Refused, with the reason in the log; the traffic passes unfaulted.
            assert!(
                envoy.wait_for_log("spec.rules[0].fault.delay: the native module cannot"),
                "the native module must say it refuses a response delay"
            );
            let held = Client::new(loopback(port)).get("/held").unwrap();
            assert_eq!(held.status, 200);
            assert!(
                held.elapsed < Duration::from_millis(250),
                "{:?}",
                held.elapsed
            );
            let reset = Client::new(loopback(port)).get("/reset").unwrap();
            assert_eq!(reset.status, 200);
        }
    }
}

/// The app answers at once; the caller gets the answer after the delay.
fn response_delay_holds_the_answer(port: u16) {
    let mut c = Client::new(loopback(port));
    let mut base: Vec<Duration> = burst(&mut c, "/plain", 20)
        .iter()
        .map(|r| r.elapsed)
        .collect();
    base.sort();
    let mut held: Vec<Duration> = concurrent(port, "/held")
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(r.status, 200, "a response delay must not fail the request");
            assert_eq!(r.text(), "ok", "the app's own answer, held");
            r.elapsed
        })
        .collect();
    held.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = ms(quantile(&held, 0.5).unwrap());
    eprintln!(
        "response delay 300 ms over {} calls: p50 {p50:.1} ms, min {:.1} ms, max {:.1} ms (no-fault p50 {:.2} ms)",
        held.len(),
        ms(held[0]),
        ms(held[held.len() - 1]),
        ms(quantile(&base, 0.5).unwrap())
    );
    assert!((280.0..=320.0).contains(&p50), "p50 {p50:.1} ms");
    assert!(ms(held[0]) >= 299.0, "released early: {:?}", held[0]);
}

/// The app served the request; the caller gets no HTTP answer, and Envoy counts the reset.
fn reset_leaves_the_caller_without_an_answer(mesh: &Mesh, envoy: &Envoy, port: u16) {
    let served = mesh.upstream.requests();
    let calls = 20;
    for _ in 0..calls {
        let outcome = Client::new(loopback(port)).get("/reset");
        assert!(
            outcome.is_err(),
            "a reset must leave no answer: {outcome:?}"
        );
    }
    assert_eq!(
        mesh.upstream.requests() - served,
        calls,
        "the app served each request"
    );
    let text = envoy.prometheus();
    assert_eq!(
        parse_prometheus(&text, "hfi_faults_resets_total"),
        Some(calls as f64)
    );
}

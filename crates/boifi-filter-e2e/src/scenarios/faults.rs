//! Delay accuracy, delay then abort, and gRPC aborts, in Envoy.

use super::*;
use crate::harness::envoy::parse_prometheus;
use crate::harness::http::Client;
use crate::harness::net::loopback;
use boifi_mesh::stats::quantile;
use serde_json::json;

pub fn delays_are_accurate_delay_then_abort_works_and_grpc_gets_a_grpc_status(filter: FilterKind) {
    let mesh = Mesh::start(filter);
    let envoy = mesh.frontend();
    let selector = json!({"service": "frontend"});
    mesh.put(
        "delay-300",
        selector.clone(),
        "/delay",
        json!({"percentage": 100, "delay": {"fixed_delay_ms": 300}}),
    );
    mesh.put(
        "delay-then-abort",
        selector.clone(),
        "/slow-fail",
        json!({"percentage": 100, "delay": {"fixed_delay_ms": 200}, "abort": {"httpStatus": 429}}),
    );
    mesh.put("grpc-unavailable", selector, "/shop.Cart/", abort(100, 503));
    let mut c = envoy.client();
    assert!(wait_for_status(&mut c, "/shop.Cart/Get", 503, Duration::from_secs(5)).is_some());

    // Baseline through Envoy without a fault, to show what the delay adds.
    let mut base: Vec<Duration> = burst(&mut c, "/plain", 50)
        .iter()
        .map(|r| r.elapsed)
        .collect();
    base.sort();

    // 50 delayed requests, 10 at a time (sequentially they would take 15 s).
    let port = envoy.listener_port;
    let mut delays: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(move || {
                    let mut c = Client::new(loopback(port));
                    (0..5)
                        .map(|_| {
                            let r = c.get("/delay").unwrap();
                            assert_eq!(r.status, 200, "a delay must not fail the request");
                            r.elapsed
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    delays.sort();
    let p50 = quantile(&delays, 0.5).unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "delay 300 ms over {} requests: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms (no-fault p50 {:.2} ms)",
        delays.len(),
        ms(p50),
        ms(quantile(&delays, 0.9).unwrap()),
        ms(delays[0]),
        ms(delays[delays.len() - 1]),
        ms(quantile(&base, 0.5).unwrap())
    );
    assert!(
        (280.0..=320.0).contains(&ms(p50)),
        "p50 of a 300 ms delay was {:.1} ms",
        ms(p50)
    );
    assert!(
        ms(delays[0]) >= 299.0,
        "no request may be released early: {:?}",
        delays[0]
    );

    for _ in 0..5 {
        let r = c.get("/slow-fail").unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("x-boifi-fault"), Some("delay-then-abort"));
        assert!(r.elapsed >= Duration::from_millis(199), "{:?}", r.elapsed);
    }

    let grpc = c
        .request(
            "POST",
            "/shop.Cart/Get",
            &[("content-type", "application/grpc"), ("te", "trailers")],
            &[0, 0, 0, 0, 0],
        )
        .unwrap();
    assert_eq!(grpc.status, 200, "gRPC errors travel in grpc-status");
    assert_eq!(
        grpc.header("grpc-status"),
        Some("14"),
        "503 maps to UNAVAILABLE"
    );
    assert!(grpc.header("grpc-message").is_some());
    assert_eq!(grpc.header("content-type"), Some("application/grpc"));
    assert_eq!(grpc.header("x-boifi-fault"), Some("grpc-unavailable"));

    let text = envoy.prometheus();
    assert_eq!(
        parse_prometheus(&text, "hfi_faults_delays_total"),
        Some(55.0)
    );
    assert_eq!(
        parse_prometheus(&text, "hfi_faults_delay_ms_total"),
        Some(50.0 * 300.0 + 5.0 * 200.0)
    );
}

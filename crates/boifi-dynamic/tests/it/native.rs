//! What only the native module needs shown: its threads (the poller, the delay timer) and
//! Envoy's per-stream schedulers under load, with `--concurrency 2`.

use boifi_filter_e2e::harness::http::Client;
use boifi_filter_e2e::harness::net::loopback;
use boifi_filter_e2e::harness::FilterKind;
use boifi_filter_e2e::scenarios::{abort, wait_for_status, Mesh};
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Stress: 64 clients at once, each 80 requests mixing a 150 ms delay, an abort, a 100 ms delay
/// then abort, plain requests, and a 2 s delay whose client hangs up at once (its scheduler is
/// committed after the stream is gone). Envoy must survive, answer every request with its
/// fault, and its allocator must hand back what the held requests took.
#[test]
fn concurrent_delays_aborts_and_hang_ups_with_two_workers() {
    let mesh = Mesh::start(FilterKind::Native);
    let mut envoy = mesh.frontend_with_workers(2);
    let selector = json!({"service": "frontend"});
    let delay = |ms: u64| json!({"percentage": 100, "delay": {"fixed_delay_ms": ms}});
    mesh.put("s-delay", selector.clone(), "/delay", delay(150));
    mesh.put("s-abort", selector.clone(), "/abort", abort(100, 503));
    mesh.put(
        "s-both",
        selector.clone(),
        "/both",
        json!({"percentage": 100, "delay": {"fixed_delay_ms": 100}, "abort": {"httpStatus": 429}}),
    );
    mesh.put("s-hangup", selector, "/hangup", delay(2_000));
    let mut c = envoy.client();
    assert!(wait_for_status(&mut c, "/both", 429, Duration::from_secs(5)).is_some());
    // Baseline after the policies are in and both workers have served requests.
    let mut warm: Vec<Client> = (0..8).map(|_| envoy.client()).collect();
    for c in &mut warm {
        for path in ["/", "/abort", "/delay", "/both"] {
            c.get(path).unwrap();
        }
    }
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let (heap_before, rss_before) = (envoy.memory_allocated(), envoy.rss_kib());

    let port = envoy.listener_port;
    let clients = 64;
    let per_client = 80;
    let started = Instant::now();
    let peak_heap = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|i| {
                scope.spawn(move || {
                    let mut c = Client::new(loopback(port));
                    let mut wrong = Vec::new();
                    for n in 0..per_client {
                        let (path, status, min_ms) = match (i + n) % 5 {
                            0 => ("/delay", 200, 150),
                            1 => ("/abort", 503, 0),
                            2 => ("/both", 429, 100),
                            3 => ("/", 200, 0),
                            _ => {
                                // Hang up while held: the request is sent, the socket closed.
                                let mut s = TcpStream::connect(loopback(port)).unwrap();
                                s.write_all(b"GET /hangup HTTP/1.1\r\nhost: x\r\n\r\n")
                                    .unwrap();
                                drop(s);
                                continue;
                            }
                        };
                        let r = c.get(path).unwrap();
                        if r.status != status || r.elapsed < Duration::from_millis(min_ms) {
                            wrong.push(format!("{path}: {} after {:?}", r.status, r.elapsed));
                        }
                    }
                    wrong
                })
            })
            .collect();
        let mut peak = 0;
        while workers.iter().any(|w| !w.is_finished()) {
            peak = peak.max(envoy.memory_allocated());
            std::thread::sleep(Duration::from_millis(100));
        }
        let wrong: Vec<String> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        assert!(
            wrong.is_empty(),
            "{} wrong answers: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        );
        peak
    });
    let took = started.elapsed();
    let hangups = clients * per_client / 5;
    // Every hung-up request's 2 s delay is over (its commit found no stream) once a request
    // held by the same 2 s delay, sent after every hang-up, is answered: the timer thread
    // commits in deadline order, so it committed every hung-up stream's scheduler first.
    let last = c.get("/hangup").unwrap();
    eprintln!(
        "stress: the request after the hang-ups was held {:?}",
        last.elapsed
    );
    assert_eq!(last.status, 200, "{last:?}");
    assert!(
        last.elapsed >= Duration::from_millis(2_000),
        "the request after the hang-ups was not held 2 s: {last:?}"
    );
    assert!(envoy.is_running(), "envoy died: {}", envoy.log());
    assert_eq!(c.get("/").unwrap().status, 200);
    let settled = boifi_filter_e2e::harness::wait_for(Duration::from_secs(10), || {
        let heap = envoy.memory_allocated();
        (heap <= heap_before + 1024 * 1024).then_some(heap)
    });
    let (heap_after, rss_after) = (envoy.memory_allocated(), envoy.rss_kib());
    eprintln!(
        "stress: {clients} clients x {per_client} requests ({hangups} hung up while held 2 s) in {:.1} s with --concurrency 2; \
         Envoy heap allocated {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after; RSS {} KiB before, {} KiB after",
        took.as_secs_f64(),
        heap_before as f64 / 1048576.0,
        peak_heap as f64 / 1048576.0,
        heap_after as f64 / 1048576.0,
        rss_before,
        rss_after,
    );
    assert!(
        settled.is_some(),
        "Envoy's heap did not come back to its baseline: {heap_before} bytes before, {heap_after} after"
    );
    let log = envoy.log();
    assert!(!log.contains("critical"), "{log}");
}

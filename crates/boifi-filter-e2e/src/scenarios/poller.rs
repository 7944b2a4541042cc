//! One Envoy, several Wasm VMs (main thread + 2 workers): exactly one long-poll loop.

use super::*;
use crate::harness::relay::CountingRelay;
use serde_json::json;

pub fn one_poller_per_envoy_with_two_workers(filter: FilterKind) {
    let mesh = Mesh::start(filter);
    // Count the config requests between this Envoy and the server.
    let relay = CountingRelay::start(mesh.server.port);
    let mut o = mesh.options(Workload::new("frontend", "demo"));
    o.control_plane_port = relay.port;
    o.concurrency = 2;
    o.plugin_config["long_poll_wait_ms"] = json!(1000);
    o.plugin_config["request_timeout_ms"] = json!(3000);
    let envoy = Envoy::start(&mesh.prereqs.envoy, &o);
    mesh.put(
        "poller-policy",
        json!({"service": "frontend"}),
        "/p",
        abort(100, 503),
    );
    let mut c = envoy.client();
    assert!(wait_for_status(&mut c, "/p", 503, Duration::from_secs(5)).is_some());

    // Traffic on several connections so both workers handle requests (and see the set). A
    // worker that does not poll adopts a new set on its root context's tick: within the
    // propagation budget (250 ms) of the first worker, and from then on always.
    let first = Instant::now();
    let mut clients: Vec<_> = (0..8).map(|_| envoy.client()).collect();
    for c in &mut clients {
        assert!(wait_for_status(c, "/p", 503, Duration::from_millis(250)).is_some());
    }
    assert!(
        first.elapsed() < Duration::from_millis(250),
        "workers adopted the set {:?} after the first",
        first.elapsed()
    );
    let window = Duration::from_secs(3);
    let before = relay.config_requests();
    let start = Instant::now();
    while start.elapsed() < window {
        for c in &mut clients {
            assert_eq!(c.get("/p").unwrap().status, 503);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let polls = relay.config_requests() - before;
    eprintln!(
        "pollers: {polls} config requests in {window:?} with 1 s long-polls and --concurrency 2 ({} connections to the control plane in all)",
        relay.connections()
    );
    // One poller with 1 s long-polls makes ~3 requests in 3 s; the three VMs of this Envoy
    // (main thread + 2 workers) polling each would make ~9.
    assert!(
        (1..=5).contains(&polls),
        "{polls} config requests in {window:?}"
    );
    // And the filter says so: one root context of the three took the poller lease.
    let log = envoy.log();
    assert_eq!(log.matches("boifi: polling ").count(), 1, "{log}");
}

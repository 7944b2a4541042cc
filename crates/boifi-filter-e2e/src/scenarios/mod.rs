//! End-to-end scenarios both filters share (issue 4's "Must show" list), each a
//! `pub fn name(filter: FilterKind)` that each filter crate's test binary runs as a `#[test]`
//! ([`crate::scenario_tests`]). They run one at a time (a global lock) so timing measurements
//! are not disturbed by another test's Envoy on a 2-core machine.

pub mod answers;
pub mod bytes;
pub mod config;
pub mod corpus;
pub mod enabled;
pub mod faults;
pub mod poller;
pub mod propagation;
pub mod rates;
pub mod read_credential;
pub mod reliability_control_plane;
pub mod resilience;
pub mod response;
pub mod startup;
pub mod targeting;
pub mod waypoint;

use crate::harness::envoy::{Envoy, EnvoyOptions, Workload};
use crate::harness::http::{Client, Response};
use crate::harness::server::Server;
use crate::harness::upstream::Upstream;
use crate::harness::{FilterKind, Prereqs};
use boifi_testkit::ports::free_port;
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the e2e lock (a panicked test must not block the others).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Plugin configuration for tests: short backoff so recovery is observable in seconds.
pub fn plugin_config() -> Value {
    json!({
        "long_poll_wait_ms": 30000,
        "request_timeout_ms": 35000,
        "backoff_initial_ms": 200,
        "backoff_max_ms": 1000,
        "delay_tick_ms": 5,
        "log_level": "info"
    })
}

/// One boifi-server, one upstream application, ready to start Envoys; it holds the e2e lock
/// for as long as it lives (dropped last, after its processes).
#[derive(Debug)]
pub struct Mesh {
    pub prereqs: Prereqs,
    pub server: Server,
    pub upstream: Upstream,
    _serial: MutexGuard<'static, ()>,
}

impl Mesh {
    /// Finds the prerequisites of the `filter` build, takes the e2e lock and starts the server
    /// and the upstream.
    pub fn start(filter: FilterKind) -> Mesh {
        let prereqs = Prereqs::find(filter);
        let serial = serial();
        let server = Server::start(&prereqs.server, free_port().unwrap());
        Mesh {
            prereqs,
            server,
            upstream: Upstream::start(),
            _serial: serial,
        }
    }

    /// Creates or replaces a policy with one rule matching the path prefix.
    pub fn put(&self, name: &str, selector: Value, prefix: &str, fault: Value) -> Response {
        self.server
            .put_policy(&policy(name, selector, prefix, fault))
    }

    /// An Envoy of workload `frontend` in namespace `demo`.
    pub fn frontend(&self) -> Envoy {
        self.envoy(Workload::new("frontend", "demo"))
    }

    /// An Envoy of workload `frontend` in namespace `demo` with `workers` worker threads.
    pub fn frontend_with_workers(&self, workers: u32) -> Envoy {
        let mut o = self.options(Workload::new("frontend", "demo"));
        o.concurrency = workers;
        Envoy::start(&self.prereqs.envoy, &o)
    }

    pub fn options(&self, workload: Workload) -> EnvoyOptions {
        let mut o = self
            .prereqs
            .envoy_options(workload, self.server.port, self.upstream.port);
        o.plugin_config = plugin_config();
        o
    }

    pub fn envoy(&self, workload: Workload) -> Envoy {
        Envoy::start(&self.prereqs.envoy, &self.options(workload))
    }
}

/// A policy with one rule matching the path prefix.
pub fn policy(name: &str, selector: Value, prefix: &str, fault: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "rules": [{"match": {"path": {"prefix": prefix}}, "fault": fault}]
        }
    })
}

/// `percentage`% aborts with `status`.
pub fn abort(percentage: u32, status: u16) -> Value {
    json!({"percentage": percentage, "abort": {"httpStatus": status}})
}

/// Sends GETs until one answers `status` (at most `timeout`); returns how long it took.
pub fn wait_for_status(
    client: &mut Client,
    path: &str,
    status: u16,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(r) = client.get(path) {
            if r.status == status {
                return Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Sends `n` GETs on one connection; returns the responses.
pub fn burst(client: &mut Client, path: &str, n: usize) -> Vec<Response> {
    (0..n).map(|_| client.get(path).unwrap()).collect()
}

/// How many responses carry the fault header.
pub fn faulted(responses: &[Response]) -> usize {
    responses
        .iter()
        .filter(|r| r.header("x-boifi-fault").is_some())
        .count()
}

/// Asserts `count` of `n` trials is within 4 standard deviations of rate `p`.
pub fn assert_within_4_sigma(count: usize, n: usize, p: f64, what: &str) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    let low = (mean - 4.0 * sigma).floor();
    let high = (mean + 4.0 * sigma).ceil();
    let c = count as f64;
    assert!(
        c >= low && c <= high,
        "{what}: {count} of {n} faulted, expected {mean:.0} ± {:.0} (4σ)",
        4.0 * sigma
    );
}

//! Issue 29: guards on the mesh's own SLOs, with the mesh's real Prometheus scraping every
//! sidecar (1 s scrapes) and a control plane started with `--prometheus-url`.
//!
//! One mesh (frontend and cartservice), three experiments in a row:
//! 1. **Breach stops the fault.** A 50 % abort on cartservice guarded on frontend's inbound
//!    success ratio (5 s window, every 1 s, 2 failures in a row). The guard passes once
//!    (verifying → running), the fault hurts the cart pages, the guard trips, and the policy
//!    is stopped within [`STOP_BOUND`]; pages recover (under 5 % failures) within that bound
//!    plus one window; the audit log and `boifi-cli status` name the guard and the value. While
//!    it runs, the config answers (JSON and compact) carry no guard.
//! 2. **No start on an unhealthy system.** A guarded policy whose guard already fails never
//!    injects: 0 aborts at every sidecar, and it ends tripped without ever running.
//! 3. **Blind guard.** Prometheus is killed while a guarded policy runs: the evaluations get no
//!    value (counted as failures) and the policy stops after the limit.
//!
//! And on an HA mesh of its own (2 replicas on a 3-member etcd, election TTL 2 s):
//! 4. **Failover.** The same breaching policy; the replica that evaluates its guard is SIGKILLed
//!    as soon as the guard passed, before the fault's failures can reach an evaluation; the
//!    other replica takes the election over, judges the breach and stops the policy within
//!    [`FAILOVER_BOUND`] of the kill, once (one trip, in its own audit log).
#![allow(non_snake_case)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use boifi_mesh::mesh::run_cli;
use boifi_mesh::process::wait_for;
use boifi_mesh::prometheus::{istio_stats_config, Prometheus};
use boifi_mesh::stats::metric_sum;
use boifi_mesh::{Mesh, MeshOptions, Topology};
use boifi_testkit::ports::free_port;
use serde_json::Value;

use crate::support::{apply_without_waiting, converge, exclusive, options, start};

/// The guard's evaluation interval, failure limit, query window and Prometheus' scrape
/// interval.
const INTERVAL: Duration = Duration::from_secs(1);
const LIMIT: u32 = 2;
const WINDOW: Duration = Duration::from_secs(5);
const SCRAPE: Duration = Duration::from_secs(1);
/// What reaching every sidecar may take once the stop is stored (the propagation e2e tests
/// hold it to 250 ms; 1 s leaves room for a loaded machine).
const PROPAGATION: Duration = Duration::from_secs(1);
/// Breach to stop: interval × limit + window + scrape interval + propagation = 9 s.
const STOP_BOUND: Duration = Duration::from_secs(
    INTERVAL.as_secs() * LIMIT as u64 + WINDOW.as_secs() + SCRAPE.as_secs() + PROPAGATION.as_secs(),
);

/// The guard election's lease TTL on the HA mesh (etcd's minimum).
const ELECTION_TTL: Duration = Duration::from_secs(2);
/// The evaluating replica's kill to the stop at every sidecar: its lease expires at most one
/// TTL after its last renewal, etcd's expiry check (every 500 ms) and the survivor's pending
/// `Campaign` answer add under 1 s, then the survivor's first round starts at once and judges
/// the breach within [`STOP_BOUND`] (which ends with the propagation to every sidecar); the
/// breach itself starts at most one propagation after the kill (the fault reaches sidecars
/// once the policy runs, and the replica dies as soon as it runs) = 2 + 1 + 9 + 1 = 13 s.
const FAILOVER_BOUND: Duration =
    Duration::from_secs(ELECTION_TTL.as_secs() + 1 + STOP_BOUND.as_secs() + PROPAGATION.as_secs());

/// Frontend's inbound success ratio over the window, as its sidecar counts it (no 5xx series
/// yet reads as none failed).
fn frontend_success_ratio() -> String {
    let window = WINDOW.as_secs();
    format!(
        "1 - ((sum(rate({{__name__=~\"envoy_http_(.*_)?downstream_rq\", response_code_class=\"5xx\", app=\"frontend\"}}[{window}s])) or vector(0)) / sum(rate({{__name__=~\"envoy_http_(.*_)?downstream_rq_total\", app=\"frontend\"}}[{window}s])))"
    )
}

fn boutique() -> Topology {
    Topology::online_boutique().only(&["frontend", "cartservice"])
}

/// Starts the mesh of `o` with its sidecars' Istio stats scraped by the mesh's Prometheus every
/// [`SCRAPE`] and the control plane pointed at it (with `o`'s own server flags after);
/// returns once frontend's success ratio has a healthy value (a guard with no data fails).
fn guarded_mesh(mut o: MeshOptions) -> (Mesh, Prometheus) {
    let prometheus_port = free_port().unwrap();
    o.sidecar_stats_config = Some(istio_stats_config());
    let own_args = std::mem::take(&mut o.server_args);
    o.server_args = vec![
        "--prometheus-url".to_owned(),
        format!("http://127.0.0.1:{prometheus_port}"),
        "--prometheus-timeout".to_owned(),
        "1s".to_owned(),
    ];
    o.server_args.extend(own_args);
    let mesh = start(o);
    let prometheus =
        Prometheus::for_mesh_on(&mesh, SCRAPE, prometheus_port).unwrap_or_else(|e| panic!("{e}"));
    let ratio = frontend_success_ratio();
    pages_until(&mesh, Duration::from_secs(20), || {
        prometheus
            .query(&mesh.client, &ratio)
            .is_ok_and(|s| s.first().is_some_and(|s| s.value > 0.99))
    })
    .expect("frontend's success ratio never showed in Prometheus");
    (mesh, prometheus)
}

fn guarded(name: &str, selector: &str, fault: &str, query: &str, condition: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\n\
         spec:\n  selector: {selector}\n  \
         rules: [{{match: {{path: {{prefix: /}}}}, fault: {fault}}}]\n  \
         guards:\n  - name: frontend-success\n    query: '{query}'\n    \
         success_condition: '{condition}'\n    interval_seconds: {}\n    failure_limit: {LIMIT}\n",
        INTERVAL.as_secs()
    )
}

/// The stored policy as the API returns it.
fn stored(mesh: &Mesh, name: &str) -> Value {
    stored_at(mesh, &mesh.control_plane.url(), name)
}

/// The stored policy as the control plane at `url` (the Service or one replica) returns it.
fn stored_at(mesh: &Mesh, url: &str, name: &str) -> Value {
    let answer = mesh
        .client
        .get(url, &format!("/v1/policies/{name}"))
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    serde_json::from_slice(&answer.body).unwrap()
}

fn guard_state(mesh: &Mesh, name: &str) -> String {
    guard_state_at(mesh, &mesh.control_plane.url(), name)
}

/// The guard state at `url`, or `None` while that replica's view does not hold the policy yet
/// (a write through the Service reaches the other replica's view a moment later).
fn guard_state_if_stored(mesh: &Mesh, url: &str, name: &str) -> Option<String> {
    let answer = mesh
        .client
        .get(url, &format!("/v1/policies/{name}"))
        .unwrap();
    if answer.status == 404 {
        return None;
    }
    assert_eq!(answer.status, 200, "{}", answer.text());
    let stored: Value = serde_json::from_slice(&answer.body).unwrap();
    Some(
        stored["status"]["guard"]["state"]
            .as_str()
            .unwrap_or("verifying")
            .to_owned(),
    )
}

fn guard_state_at(mesh: &Mesh, url: &str, name: &str) -> String {
    stored_at(mesh, url, name)["status"]["guard"]["state"]
        .as_str()
        .unwrap_or("verifying")
        .to_owned()
}

/// Sends frontend pages until `done` holds (or `limit` passes); returns when it held.
fn pages_until(mesh: &Mesh, limit: Duration, mut done: impl FnMut() -> bool) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < limit {
        mesh.run_pages("frontend", 4, 8).unwrap();
        if done() {
            return Some(Instant::now());
        }
    }
    None
}

/// Failed pages and pages of one round of every page type.
fn page_failures(mesh: &Mesh, per_page: usize) -> (usize, usize) {
    let run = mesh.run_pages("frontend", per_page, 8).unwrap();
    run.pages.iter().fold((0, 0), |(f, n), row| {
        (f + row.failed(), n + row.report.requests)
    })
}

fn aborts_everywhere(mesh: &Mesh) -> u64 {
    mesh.pods()
        .map(|(_, pod)| mesh.metric(pod, "hfi_faults_aborts_total").unwrap())
        .sum()
}

#[test]
fn GUARDS_stop_a_breaching_fault_refuse_to_start_on_an_unhealthy_mesh_and_stop_when_blind() {
    let _machine = exclusive();
    let test_start = Instant::now();
    let (mesh, mut prometheus) = guarded_mesh(options(boutique()));
    let ratio = frontend_success_ratio();

    // 1. Breach stops the fault.
    let policy = guarded(
        "guarded-cart-abort",
        "{service: cartservice, namespace: demo}",
        "{percentage: 50, abort: {httpStatus: 503}}",
        &ratio,
        "result >= 0.95",
    );
    apply_without_waiting(&mesh, &policy);
    let running = pages_until(&mesh, Duration::from_secs(20), || {
        guard_state(&mesh, "guarded-cart-abort") != "verifying"
    })
    .expect("the guard never passed");
    assert_eq!(guard_state(&mesh, "guarded-cart-abort"), "running");
    converge(&mesh);
    // Sidecars get the policy without its guards, in both encodings.
    for encoding in ["json", "compact"] {
        let answer = mesh
            .client
            .get(
                &mesh.control_plane.url(),
                &format!("/v1/config?service=cartservice&namespace=demo&encoding={encoding}"),
            )
            .unwrap();
        assert_eq!(answer.status, 200);
        let body = String::from_utf8_lossy(&answer.body);
        assert!(body.contains("guarded-cart-abort"), "{encoding}: {body}");
        assert!(
            !body.contains("frontend-success") && !body.contains("downstream_rq"),
            "{encoding}: the answer carries the guard: {body}"
        );
    }
    // The fault hurts the cart pages until the guard trips.
    let tripped = pages_until(&mesh, STOP_BOUND * 3, || {
        guard_state(&mesh, "guarded-cart-abort") == "tripped"
    })
    .expect("the guard never tripped");
    let stopped_after = tripped - running;
    eprintln!(
        "guards: running → tripped in {:.1} s (bound {} s from the breach)",
        stopped_after.as_secs_f64(),
        STOP_BOUND.as_secs()
    );
    assert!(
        aborts_everywhere(&mesh) > 0,
        "the fault never fired before the guard stopped it"
    );
    // The breach starts when the first faulted pages enter the window: at most one
    // propagation after running. The stop is measured from `running`, so it gets that too.
    assert!(
        stopped_after <= STOP_BOUND + PROPAGATION,
        "stopped {stopped_after:?} after it started; bound {STOP_BOUND:?} + propagation"
    );
    let trip = stored(&mesh, "guarded-cart-abort")["status"]["guard"].clone();
    assert_eq!(trip["guard"], "frontend-success", "{trip}");
    let value = trip["value"].as_f64().expect("a value");
    assert!(value < 0.95, "{trip}");
    // Pages recover within the bound plus one window of the stop.
    let recovered = pages_until(&mesh, STOP_BOUND + WINDOW, || {
        let (failed, pages) = page_failures(&mesh, 10);
        (failed as f64) < 0.05 * pages as f64
    })
    .expect("pages did not recover");
    eprintln!(
        "guards: pages under 5 % failures {:.1} s after the stop",
        (recovered - tripped).as_secs_f64()
    );
    let status = mesh.cli(&["status"]).unwrap();
    assert!(
        status.contains("stopped by guard `frontend-success` at value"),
        "{status}"
    );
    let audit = std::fs::read_to_string(mesh.dir().join("boifi-server-0.log")).unwrap();
    let line = audit
        .lines()
        .find(|l| l.contains("guard-trip"))
        .unwrap_or_else(|| panic!("no guard-trip audit line:\n{audit}"));
    assert!(
        line.contains("guarded-cart-abort") && line.contains("frontend-success"),
        "{line}"
    );
    let listed = mesh
        .cli(&["policy", "list", "--guard-state", "tripped"])
        .unwrap();
    assert!(listed.contains("guarded-cart-abort"), "{listed}");
    mesh.cli(&["policy", "delete", "guarded-cart-abort"])
        .unwrap();
    converge(&mesh);

    // 2. No start on an unhealthy system: the guard already fails (frontend does not serve
    // a billion requests a second), so the fault never starts.
    let aborts_before = aborts_everywhere(&mesh);
    let throughput =
        "sum(rate({__name__=~\"envoy_http_(.*_)?downstream_rq_total\", app=\"frontend\"}[5s]))";
    apply_without_waiting(
        &mesh,
        &guarded(
            "guarded-cold-start",
            "{service: cartservice, namespace: demo}",
            "{percentage: 100, abort: {httpStatus: 503}}",
            throughput,
            "result >= 1e9",
        ),
    );
    pages_until(&mesh, STOP_BOUND * 2, || {
        guard_state(&mesh, "guarded-cold-start") == "tripped"
    })
    .expect("the failing guard never stopped the policy");
    let (failed, _) = page_failures(&mesh, 10);
    assert_eq!(
        failed, 0,
        "pages failed while the guard held the fault back"
    );
    assert_eq!(
        aborts_everywhere(&mesh),
        aborts_before,
        "a sidecar injected a fault of a policy whose guard never passed"
    );
    mesh.cli(&["policy", "delete", "guarded-cold-start"])
        .unwrap();
    converge(&mesh);

    // 3. Blind guard: Prometheus goes away while a guarded policy runs.
    apply_without_waiting(
        &mesh,
        &guarded(
            "guarded-blind",
            "{service: cartservice, namespace: demo}",
            "{percentage: 1, delay: {fixed_delay_ms: 1}}",
            throughput,
            "result >= 0",
        ),
    );
    pages_until(&mesh, Duration::from_secs(20), || {
        guard_state(&mesh, "guarded-blind") == "running"
    })
    .expect("the blind-test guard never passed");
    prometheus.kill();
    let killed = Instant::now();
    let stopped = pages_until(&mesh, STOP_BOUND * 2, || {
        guard_state(&mesh, "guarded-blind") == "tripped"
    })
    .expect("a blind guard did not stop its policy");
    // Each blind evaluation fails at once (connection refused) or after the 1 s timeout.
    let blind_bound = (INTERVAL + Duration::from_secs(1)) * LIMIT + PROPAGATION;
    eprintln!(
        "guards: blind → tripped in {:.1} s (bound {} s)",
        (stopped - killed).as_secs_f64(),
        blind_bound.as_secs()
    );
    assert!(
        stopped - killed <= blind_bound + INTERVAL,
        "{:?}",
        stopped - killed
    );
    let trip = stored(&mesh, "guarded-blind")["status"]["guard"].clone();
    assert!(
        trip["value"].is_null(),
        "a blind guard saw no value: {trip}"
    );
    eprintln!(
        "guards: the whole test took {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
}

/// The running replicas whose `/metrics` say they evaluate guards (`boifi_guard_leader` 1).
fn guard_leaders(mesh: &Mesh) -> Vec<usize> {
    (0..mesh.control_plane.replicas.len())
        .filter(|i| mesh.control_plane.replicas[*i].process.is_some())
        .filter(|i| {
            let url = mesh.control_plane.replica_url(*i).unwrap();
            mesh.client
                .get(&url, "/metrics")
                .is_ok_and(|answer| metric_sum(&answer.text(), "boifi_guard_leader") == Some(1))
        })
        .collect()
}

/// Lines of replica `i`'s log with audit action `action` for policy `policy`.
fn audit_lines(mesh: &Mesh, i: usize, action: &str, policy: &str) -> Vec<String> {
    std::fs::read_to_string(mesh.dir().join(format!("boifi-server-{i}.log")))
        .unwrap()
        .lines()
        .filter(|l| l.contains(action) && l.contains(policy))
        .map(str::to_owned)
        .collect()
}

#[test]
fn GUARDS_failover_the_other_replica_stops_a_breaching_fault_when_the_evaluating_one_is_killed() {
    let _machine = exclusive();
    let test_start = Instant::now();
    let mut o = options(boutique()).ha();
    o.server_args = vec![
        "--guard-election-ttl".to_owned(),
        format!("{}s", ELECTION_TTL.as_secs()),
    ];
    let (mut mesh, _prometheus) = guarded_mesh(o);
    let leader = wait_for(
        "exactly one replica to lead the guard election",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || Ok(<[usize; 1]>::try_from(guard_leaders(&mesh)).ok()),
    )
    .unwrap_or_else(|e| panic!("{e}"))[0];
    let survivor = 1 - leader;
    let survivor_url = mesh.control_plane.replica_url(survivor).unwrap();
    // The test holds the leader's process, to kill it while traffic runs beside.
    let mut evaluating = mesh.control_plane.replicas[leader]
        .process
        .take()
        .expect("the leader runs");
    let name = "guarded-failover";
    apply_without_waiting(
        &mesh,
        &guarded(
            name,
            "{service: cartservice, namespace: demo}",
            "{percentage: 50, abort: {httpStatus: 503}}",
            &frontend_success_ratio(),
            "result >= 0.95",
        ),
    );
    let traffic_on = AtomicBool::new(true);
    let (killed, tripped) = std::thread::scope(|scope| {
        // Pages all along (a ratio with no traffic reads as no value), for at most a minute
        // should the test fail before turning them off.
        scope.spawn(|| {
            let start = Instant::now();
            while traffic_on.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
                mesh.run_pages("frontend", 2, 8).unwrap();
            }
        });
        let passed = wait_for(
            "the guard to pass",
            Duration::from_secs(20),
            Duration::from_millis(20),
            || {
                let state = guard_state_if_stored(&mesh, &survivor_url, name);
                Ok(state.filter(|s| s != "verifying"))
            },
        );
        // Killed at once: the leader would need `LIMIT` failed evaluations, seconds after the
        // fault reached the sidecars, to stop the policy itself.
        evaluating.kill();
        let killed = Instant::now();
        let tripped = passed.and_then(|state| {
            assert_eq!(state, "running", "the guard did not pass");
            wait_for(
                "the surviving replica to stop the policy",
                FAILOVER_BOUND * 2,
                Duration::from_millis(20),
                || Ok((guard_state_at(&mesh, &survivor_url, name) == "tripped").then(Instant::now)),
            )
        });
        traffic_on.store(false, Ordering::Relaxed);
        (killed, tripped.unwrap_or_else(|e| panic!("{e}")))
    });
    converge(&mesh);
    let stopped = Instant::now();
    eprintln!(
        "guards: evaluating replica killed → tripped by the other in {:.1} s, stopped at every \
         sidecar in {:.1} s (bound {} s)",
        (tripped - killed).as_secs_f64(),
        (stopped - killed).as_secs_f64(),
        FAILOVER_BOUND.as_secs()
    );
    assert!(
        stopped - killed <= FAILOVER_BOUND,
        "stopped {:?} after the kill; bound {FAILOVER_BOUND:?}",
        stopped - killed
    );
    assert!(
        aborts_everywhere(&mesh) > 0,
        "the fault never fired before the guard stopped it"
    );
    let trip = stored_at(&mesh, &survivor_url, name)["status"]["guard"].clone();
    assert_eq!(trip["guard"], "frontend-success", "{trip}");
    assert!(trip["value"].as_f64().expect("a value") < 0.95, "{trip}");
    // The killed replica evaluated the guard (it let the policy run) and never stopped it; the
    // survivor stopped it once.
    assert_eq!(audit_lines(&mesh, leader, "guard-run", name).len(), 1);
    assert_eq!(
        audit_lines(&mesh, leader, "guard-trip", name),
        Vec::<String>::new()
    );
    assert_eq!(audit_lines(&mesh, survivor, "guard-trip", name).len(), 1);
    assert_eq!(
        guard_leaders(&mesh),
        [survivor],
        "the survivor does not lead"
    );
    let metrics = mesh.client.get(&survivor_url, "/metrics").unwrap().text();
    assert_eq!(
        metric_sum(&metrics, "boifi_guard_trips_total"),
        Some(1),
        "{metrics}"
    );
    let status = run_cli(&survivor_url, &["status"]).unwrap();
    assert!(
        status.contains("stopped by guard `frontend-success` at value"),
        "{status}"
    );
    eprintln!(
        "guards: the failover test took {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
}

//! `/v1/config` as a long-poll: wake on change, 304 on timeout, and one write waking 1 000
//! waiting sidecars.

use std::time::{Duration, Instant};

use boifi_core::wire::ConfigResponse;
use boifi_server::auth::Auth;
use reqwest::StatusCode;

use crate::harness::{self, policy_json, InProcess};

async fn post(server: &InProcess, body: String) {
    harness::create_at(&server.client, server.url("/v1/policies"), body).await;
}

async fn until_waiting(server: &InProcess, n: u64) {
    harness::until_waiting(&server.client, &server.url("/metrics"), n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_change_and_answers_304_on_timeout() {
    let server = InProcess::start(Auth::open()).await;
    post(&server, policy_json("first-policy", "frontend", "")).await;
    let config = |q: &str| format!("/v1/config?service=frontend&namespace=demo&pod=fe-1&{q}");
    let url = |q: &str| server.url(&config(q));

    // An older version is answered at once.
    let started = Instant::now();
    let r = server.get(&config("version=0&wait=30s")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    let current: ConfigResponse = r.json().await.unwrap();
    assert_eq!(current.version, 1);

    // The current version and a short wait: 304 after the wait.
    let started = Instant::now();
    let r = server.get(&config("version=1&wait=300ms")).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.headers()["x-boifi-version"], "1");

    // The current version and a long wait: held until a write, then the new config.
    let waiter = tokio::spawn({
        let client = server.client.clone();
        let u = url("version=1&wait=30s");
        async move {
            let r = client.get(u).send().await.unwrap();
            (
                r.status(),
                r.json::<ConfigResponse>().await.unwrap(),
                Instant::now(),
            )
        }
    });
    until_waiting(&server, 1).await;
    let written = Instant::now();
    post(&server, policy_json("second-policy", "frontend", "")).await;
    let (status, config, answered) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config.version, 2);
    assert_eq!(config.policies.len(), 2);
    let took = answered.saturating_duration_since(written);
    assert!(took < Duration::from_secs(1), "woken after {took:?}");

    // The kill switch wakes waiters too, with no policies.
    let waiter = tokio::spawn({
        let client = server.client.clone();
        let u = url("version=2&wait=30s");
        async move {
            client
                .get(u)
                .send()
                .await
                .unwrap()
                .json::<ConfigResponse>()
                .await
                .unwrap()
        }
    });
    until_waiting(&server, 1).await;
    let r = server
        .client
        .delete(server.url("/v1/policies?confirm=all"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let config = waiter.await.unwrap();
    assert_eq!(config.version, 3);
    assert!(config.policies.is_empty());
    assert_eq!(server.metric("boifi_config_waiting_requests").await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_wakes_a_thousand_waiting_long_polls() {
    const WAITERS: usize = 1_000;
    let server = InProcess::start(Auth::open()).await;
    post(&server, policy_json("fanout-a", "frontend", "")).await;
    let mut tasks = Vec::with_capacity(WAITERS);
    for i in 0..WAITERS {
        let client = server.client.clone();
        let url = server.url(&format!(
            "/v1/config?service=frontend&namespace=demo&pod=frontend-{i}&version=1&wait=30s"
        ));
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            // Answered when the response head arrives; decoding is the client's own time.
            let at = Instant::now();
            let status = r.status();
            let config: ConfigResponse = r.json().await.unwrap();
            (status, config.version, config.policies.len(), at)
        }));
    }
    until_waiting(&server, WAITERS as u64).await;
    let written = Instant::now();
    post(&server, policy_json("fanout-b", "frontend", "")).await;
    let acked = written.elapsed();
    let mut last = Duration::ZERO;
    let mut first = Duration::MAX;
    for t in tasks {
        let (status, version, policies, at) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(version, 2);
        assert_eq!(policies, 2);
        let after = at.saturating_duration_since(written);
        last = last.max(after);
        first = first.min(after);
    }
    println!(
        "fan-out: {WAITERS} waiting long-polls woken by one write; write acknowledged after {acked:?}, \
         first answer after {first:?}, last answer after {last:?}"
    );
    // A sanity bound far above the printed figure, not a benchmark (the fan-out goal is
    // `boifi-bench scale`'s, docs/PERFORMANCE.md):
    // a waiter that was not woken would have answered 304 after its 30 s wait.
    assert!(
        last < Duration::from_secs(20),
        "last waiter answered after {last:?}"
    );
    server.stop().await;
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Prints request latencies over loopback (embedded store, so writes include the fsync of the
/// commit). A measurement printed for whoever runs it, not a timing assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_latency_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let store = boifi_server::store::local::LocalStore::open(dir.path())
        .await
        .unwrap();
    let server = InProcess::start_with(Auth::open(), std::sync::Arc::new(store)).await;
    let mut writes = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        post(
            &server,
            policy_json(&format!("latency-{i}"), "frontend", ""),
        )
        .await;
        writes.push(started.elapsed());
    }
    let mut reads = Vec::new();
    let url = server.url("/v1/config?service=frontend&namespace=demo&pod=fe-1");
    for _ in 0..200 {
        let started = Instant::now();
        let r = server.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let config: ConfigResponse = r.json().await.unwrap();
        assert_eq!(config.policies.len(), 50);
        reads.push(started.elapsed());
    }
    writes.sort_unstable();
    reads.sort_unstable();
    println!(
        "latency: POST /v1/policies (embedded, fsync) p50 {:?} p99 {:?}; GET /v1/config (50 policies) p50 {:?} p99 {:?}",
        percentile(&writes, 50),
        percentile(&writes, 99),
        percentile(&reads, 50),
        percentile(&reads, 99)
    );
    server.stop().await;
}

//! The rollout status is true from any replica: two real `boifi-server` processes on one etcd,
//! and simulated sidecars that long-poll `/v1/config` as the filter does (ask with the version
//! held, `wait`, switch to the other replica when theirs is gone, as a Kubernetes Service
//! would). Real Envoys are left out here: 13 or 1 000 of them would not fit a shared 2-core
//! machine; the filter's own long-poll is tested in Envoy by boifi-wasm's e2e tests.
//!
//! Without an etcd binary these tests fail and say how to install it (`make deps`).
//!

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boifi_core::identity::{Identity, ProxyKind};
use boifi_core::wire::{
    compact, ConfigEncoding, ConfigQuery, ConfigResponse, Refusal, SidecarStatusEntry,
    StatusResponse,
};
use boifi_testkit::etcd::EtcdCluster;
use reqwest::StatusCode;

use crate::harness::{
    create_at, etcd_replica, get_json, metric_at, policy_json, until_waiting, Binary,
};

/// A replica named `name` on `etcd`.
fn replica(etcd: &EtcdCluster, name: &str) -> Binary {
    etcd_replica(
        etcd,
        name,
        &["--etcd-sidecar-prefix", "/boifi-ha/sidecars/"],
    )
}

/// The `boifi-cli` binary beside the server's, built if it is not there yet.
fn cli_binary() -> PathBuf {
    boifi_testkit::process::workspace_binary(
        Path::new(env!("CARGO_BIN_EXE_boifi-server")),
        "boifi-cli",
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")),
    )
}

/// `boifi-cli status -o json` through `server`.
fn cli_status(server: &Binary) -> StatusResponse {
    let output = Command::new(cli_binary())
        .args(["status", "-o", "json", "--server"])
        .arg(server.url(""))
        .env_remove("BOIFI_SERVER")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "boifi-cli status: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// One simulated sidecar: long-polls `bases[start]`, and the other base when that one fails.
fn sidecar(
    client: reqwest::Client,
    bases: Arc<Vec<String>>,
    start: usize,
    pod: String,
    wait: &'static str,
    polls: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut at = start;
        let mut version: Option<u64> = None;
        let service = format!("svc-{}", pod.len() % 3);
        while !stop.load(Ordering::Relaxed) {
            let base = &bases[at % bases.len()];
            let held = version.map_or_else(String::new, |v| format!("&version={v}"));
            let url = format!(
                "{base}/v1/config?service={service}&namespace=demo&pod={pod}{held}&wait={wait}"
            );
            polls.fetch_add(1, Ordering::Relaxed);
            match client.get(&url).send().await {
                Ok(r) if r.status() == StatusCode::OK => {
                    if let Ok(answer) = r.json::<ConfigResponse>().await {
                        version = Some(answer.version);
                    }
                }
                Ok(r) if r.status() == StatusCode::NOT_MODIFIED => {}
                _ => {
                    // The replica is gone: the Service sends the next connection elsewhere.
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// `count` sidecars `pod-0`.., sidecar `i` starting on replica `i % bases.len()`, each
/// long-polling with `wait=2s`.
fn spawn_sidecars(
    count: usize,
    client: &reqwest::Client,
    bases: &Arc<Vec<String>>,
    polls: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|i| {
            sidecar(
                client.clone(),
                Arc::clone(bases),
                i % bases.len(),
                format!("pod-{i}"),
                "2s",
                Arc::clone(polls),
                Arc::clone(stop),
            )
        })
        .collect()
}

/// Waits (at most `limit`) until `check` holds; how long it took.
async fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_current_through(status: &StatusResponse, sidecars: usize, replica: Option<&str>) -> bool {
    status.sidecars.len() == sidecars
        && status
            .sidecars
            .iter()
            .all(|s| s.current && replica.is_none_or(|r| s.replica.as_deref() == Some(r)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_sidecar_from_either_replica_and_survives_a_kill() {
    let etcd = EtcdCluster::for_test(1);
    const SIDECARS: usize = 13;
    let mut a = replica(&etcd, "cp-a");
    let b = replica(&etcd, "cp-b");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let bases = Arc::new(vec![a.url(""), b.url("")]);
    let polls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // 7 sidecars poll A, 6 poll B.
    let tasks = spawn_sidecars(SIDECARS, &client, &bases, &polls, &stop);

    create_at(
        &client,
        a.url("/v1/policies/create"),
        policy_json("ha-rollout", "svc-1", ""),
    )
    .await;
    for server in [&a, &b] {
        let took = within(
            Duration::from_secs(15),
            "all 13 listed at the current version",
            || all_current_through(&cli_status(server), SIDECARS, None),
        )
        .await;
        let status = cli_status(server);
        let through_a = status
            .sidecars
            .iter()
            .filter(|s| s.replica.as_deref() == Some("cp-a"))
            .count();
        assert_eq!((through_a, SIDECARS - through_a), (7, 6));
        eprintln!(
            "status through {}: {SIDECARS} of {SIDECARS} sidecars at version {} (after {took:?})",
            server.addr, status.version
        );
    }

    // A dies; its sidecars reconnect to B, which reports them.
    a.guard.kill().unwrap();
    let killed = Instant::now();
    let took = within(
        Duration::from_secs(10),
        "every sidecar reporting through B",
        || all_current_through(&cli_status(&b), SIDECARS, Some("cp-b")),
    )
    .await;
    eprintln!(
        "after SIGKILL of cp-a: all {SIDECARS} sidecars listed through cp-b at the current version \
         within {took:?} ({:?} since the kill)",
        killed.elapsed()
    );

    // A's reports die with its lease (TTL 10 s), not before: no replica deletes them for it.
    let mut etcd_client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let dead_prefix = "/boifi-ha/sidecars/cp-a/";
    let count = |r: etcd_client::GetResponse| r.kvs().len();
    let options = || {
        Some(
            etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only(),
        )
    };
    let left = etcd_client
        .get(dead_prefix, options())
        .await
        .unwrap()
        .count();
    assert_eq!(
        left, 7,
        "cp-a's 7 reports outlive it until its lease expires"
    );
    let started = Instant::now();
    loop {
        let r = etcd_client
            .get(
                dead_prefix,
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        if count(r) == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "cp-a's reports outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "cp-a's reports expired with its lease {:?} after the kill",
        killed.elapsed()
    );
    assert!(all_current_through(&cli_status(&b), SIDECARS, Some("cp-b")));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
}

/// The path a `frontend` sidecar `pod` in `demo` polls, as the filter writes it: the version it
/// applied, the one it refused and why, its wait, the compact encoding.
fn frontend_poll(
    pod: &str,
    applied: Option<u64>,
    refused: Option<Refusal>,
    wait_ms: Option<u64>,
) -> String {
    let mut identity = Identity::for_service("frontend", "demo");
    identity.pod = Some(pod.to_owned());
    let query = ConfigQuery {
        identity,
        version: applied,
        wait_ms,
        encoding: ConfigEncoding::CompactV3,
        refused,
        ..ConfigQuery::default()
    };
    format!("/v1/config?{}", query.to_query_string())
}

/// Sends one poll to `server`; its status and, with 200, the version of the decoded answer.
async fn poll(client: &reqwest::Client, server: &Binary, path: &str) -> (StatusCode, Option<u64>) {
    let r = client.get(server.url(path)).send().await.unwrap();
    let status = r.status();
    let version = if status == StatusCode::OK {
        Some(compact::decode(&r.bytes().await.unwrap()).unwrap().version)
    } else {
        None
    };
    (status, version)
}

/// Each sidecar of `status` as (pod, state, applied version, refusal).
fn sidecar_states(status: &StatusResponse) -> Vec<(String, String, Option<u64>, Option<Refusal>)> {
    status
        .sidecars
        .iter()
        .map(|s: &SidecarStatusEntry| {
            (
                s.pod.clone().unwrap_or_default(),
                s.state.clone(),
                s.version,
                s.refused.clone(),
            )
        })
        .collect()
}

/// Creates a `frontend` policy `name` through `to`; returns its config version once `to` and
/// `other` both serve it.
async fn write_seen_by_both(
    client: &reqwest::Client,
    to: &Binary,
    other: &Binary,
    name: &str,
) -> u64 {
    let stored = create_at(
        client,
        to.url("/v1/policies/create"),
        policy_json(name, "frontend", ""),
    )
    .await;
    let version = stored["status"]["revision"].as_u64().unwrap();
    for server in [to, other] {
        let started = Instant::now();
        while get_json::<StatusResponse>(client, server.url("/v1/policies/status"))
            .await
            .version
            < version
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} does not serve version {version}",
                server.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_set_is_listed_refused_with_its_reason_through_either_replica() {
    let etcd = EtcdCluster::for_test(1);
    let a = replica(&etcd, "cp-a");
    let b = replica(&etcd, "cp-b");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    // fe-0 and fe-2 poll A, fe-1 polls B.
    let sidecars = [("fe-0", &a), ("fe-1", &b), ("fe-2", &a)];
    let v1 = write_seen_by_both(&client, &a, &b, "refusal-first").await;
    // Each fetches the first set and says on its next poll that it applied it.
    for (pod, server) in sidecars {
        let (status, version) = poll(&client, server, &frontend_poll(pod, None, None, None)).await;
        assert_eq!((status, version), (StatusCode::OK, Some(v1)), "{pod}");
        let (status, _) = poll(&client, server, &frontend_poll(pod, Some(v1), None, None)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{pod}");
    }

    // A second set, written through B; each sidecar is sent it.
    let v2 = write_seen_by_both(&client, &b, &a, "refusal-second").await;
    assert!(v2 > v1);
    for (pod, server) in sidecars {
        let (status, version) =
            poll(&client, server, &frontend_poll(pod, Some(v1), None, None)).await;
        assert_eq!((status, version), (StatusCode::OK, Some(v2)), "{pod}");
    }
    // Sent is not applied: until they say so, all three are pending at v1, on either replica.
    let pending_at_v1: Vec<_> = sidecars
        .iter()
        .map(|(pod, _)| ((*pod).to_owned(), "pending".to_owned(), Some(v1), None))
        .collect();
    for server in [&a, &b] {
        within(
            Duration::from_secs(15),
            "all three pending at the first version",
            || {
                let status = cli_status(server);
                status.version == v2 && sidecar_states(&status) == pending_at_v1
            },
        )
        .await;
    }

    // fe-0 and fe-1 apply it and long-poll for the next; fe-2 refuses it, with a reason.
    let held: Vec<_> = [("fe-0", &a), ("fe-1", &b)]
        .into_iter()
        .map(|(pod, server)| {
            let client = client.clone();
            let url = server.url(&frontend_poll(pod, Some(v2), None, Some(30_000)));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let refusal = Refusal::new(
        v2,
        "policy `refusal-second`: 2 policies is over this sidecar's limit of 1",
    );
    // Its long-poll does not answer at once with the version it refused: 304 after the wait.
    let started = Instant::now();
    let (status, version) = poll(
        &client,
        &a,
        &frontend_poll("fe-2", Some(v1), Some(refusal.clone()), Some(1_000)),
    )
    .await;
    assert_eq!(
        (status, version),
        (StatusCode::NOT_MODIFIED, None),
        "the refused version was sent again after {:?}",
        started.elapsed()
    );
    let expected = vec![
        ("fe-0".to_owned(), "applied".to_owned(), Some(v2), None),
        ("fe-1".to_owned(), "applied".to_owned(), Some(v2), None),
        (
            "fe-2".to_owned(),
            "refused".to_owned(),
            Some(v1),
            Some(refusal.clone()),
        ),
    ];
    for server in [&a, &b] {
        let took = within(
            Duration::from_secs(15),
            "fe-2 refused with its reason, the others applied",
            || sidecar_states(&cli_status(server)) == expected,
        )
        .await;
        let totals = cli_status(server).totals;
        assert_eq!(
            (
                totals.sidecars_applied,
                totals.sidecars_pending,
                totals.sidecars_refused,
                totals.sidecars_current
            ),
            (2, 0, 1, 2)
        );
        eprintln!(
            "status through {}: fe-2 refused version {v2}, fe-0 and fe-1 applied (after {took:?})",
            server.addr
        );
    }

    // The refusing sidecar's next long-poll waits for the next version, and gets it.
    let refuser = {
        let client = client.clone();
        let url = a.url(&frontend_poll(
            "fe-2",
            Some(v1),
            Some(refusal),
            Some(30_000),
        ));
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status();
            (
                status,
                compact::decode(&r.bytes().await.unwrap()).map(|c| c.version),
            )
        })
    };
    // fe-0's poll and fe-2's are held on A.
    until_waiting(&client, &a.url("/metrics"), 2).await;
    create_at(
        &client,
        b.url("/v1/policies/create"),
        policy_json("refusal-third", "frontend", ""),
    )
    .await;
    let (status, version) = refuser.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(version.unwrap() > v2);
    for poll in held {
        assert_eq!(poll.await.unwrap().unwrap(), StatusCode::OK);
    }
}

/// etcd's own count of key writes (puts and deletes, transactions included).
async fn etcd_writes(client: &reqwest::Client, etcd: &EtcdCluster) -> u64 {
    let url = format!("{}/metrics", etcd.member(0).unwrap().client_url());
    let puts = metric_at(client, &url, "etcd_mvcc_put_total").await;
    puts + metric_at(client, &url, "etcd_mvcc_delete_total").await
}

/// A moment of the load test: report writes, etcd writes, polls sent, and when.
struct Sample {
    writes: u64,
    etcd: u64,
    polls: u64,
    at: Instant,
}

async fn sample(
    client: &reqwest::Client,
    server: &Binary,
    etcd: &EtcdCluster,
    polls: &AtomicU64,
) -> Sample {
    Sample {
        writes: report_writes(client, server).await,
        etcd: etcd_writes(client, etcd).await,
        polls: polls.load(Ordering::Relaxed),
        at: Instant::now(),
    }
}

async fn report_writes(client: &reqwest::Client, server: &Binary) -> u64 {
    metric_at(
        client,
        server.url("/metrics"),
        "boifi_sidecar_report_writes",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_long_polling_sidecars_cost_one_etcd_write_per_change_not_per_poll() {
    let etcd = EtcdCluster::for_test(1);
    const SIDECARS: usize = 1_000;
    let server = replica(&etcd, "cp-load");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(2 * SIDECARS)
        .build()
        .unwrap();
    let bases = Arc::new(vec![server.url("")]);
    let polls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_sidecars(SIDECARS, &client, &bases, &polls, &stop);
    let known = Arc::new(AtomicUsize::new(0));
    // Every sidecar is known and has applied the current version. Each was shared when first
    // seen (holding nothing) and again when its next poll said it applied the set, unless both
    // fell into one flush: between one and two writes each.
    let started = Instant::now();
    loop {
        let status: StatusResponse = get_json(&client, server.url("/v1/policies/status")).await;
        known.store(status.sidecars.len(), Ordering::Relaxed);
        if all_current_through(&status, SIDECARS, None)
            && report_writes(&client, &server).await >= 1_000
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} sidecars known; not all of 1000 applied the current version",
            known.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = report_writes(&client, &server).await;
    assert!(
        (SIDECARS as u64..=2 * SIDECARS as u64).contains(&first),
        "{first} writes for {SIDECARS} new sidecars"
    );

    // Steady state: every sidecar keeps long-polling, nothing changes, nothing is written.
    let s0 = sample(&client, &server, &etcd, &polls).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let s1 = sample(&client, &server, &etcd, &polls).await;
    let seconds = s1.at.duration_since(s0.at).as_secs_f64();
    let polled = s1.polls - s0.polls;
    eprintln!(
        "1000 sidecars, steady: {polled} polls in {seconds:.1} s ({:.0}/s); sidecar report writes {} (etcd key writes {})",
        polled as f64 / seconds,
        s1.writes - s0.writes,
        s1.etcd - s0.etcd
    );
    assert!(
        polled >= 2 * SIDECARS as u64,
        "the sidecars did not keep polling"
    );
    assert_eq!(s1.writes - s0.writes, 0, "unchanged sidecars were written");
    assert_eq!(
        s1.etcd - s0.etcd,
        0,
        "etcd saw writes while nothing changed"
    );

    // One policy change: every sidecar's held version changes once, so one write each.
    create_at(
        &client,
        server.url("/v1/policies/create"),
        policy_json("load-change", "svc-1", ""),
    )
    .await;
    let started = Instant::now();
    loop {
        let status: StatusResponse = get_json(&client, server.url("/v1/policies/status")).await;
        if all_current_through(&status, SIDECARS, None) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the rollout did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s2 = sample(&client, &server, &etcd, &polls).await;
    eprintln!(
        "1000 sidecars, one policy change: {} polls in {:.1} s; sidecar report writes {} \
         (etcd key writes {}, the policy's included)",
        s2.polls - s1.polls,
        s2.at.duration_since(s1.at).as_secs_f64(),
        s2.writes - s1.writes,
        s2.etcd - s1.etcd
    );
    let per_change = SIDECARS as u64;
    assert_eq!(
        s2.writes - s1.writes,
        per_change,
        "one write per sidecar whose version changed"
    );
    assert_eq!(
        s2.etcd - s1.etcd,
        per_change + 1,
        "etcd: the reports and the policy, nothing else"
    );

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
}

/// Each shared proxy of `status` as (kind, pod, destinations, policies it is sent, replica).
fn shared_proxies(status: &StatusResponse) -> Vec<(ProxyKind, String, Option<u64>, usize, String)> {
    status
        .shared_proxies
        .iter()
        .map(|s| {
            (
                s.proxy,
                s.pod.clone().unwrap_or_default(),
                s.destinations,
                s.policies,
                s.replica.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waypoint_and_a_gateway_are_listed_with_what_they_serve_through_either_replica() {
    let etcd = EtcdCluster::for_test(1);
    let a = replica(&etcd, "cp-a");
    let b = replica(&etcd, "cp-b");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let version = write_seen_by_both(&client, &a, &b, "shared-frontend").await;
    // A waypoint of `demo` (which also serves `shop`) polls A; a gateway polls B. Plain HTTP,
    // as a filter in a shared proxy sends it.
    let waypoint = |destinations: u64| {
        format!(
            "/v1/config?service=waypoint&namespace=demo&pod=waypoint-7d9f&proxy=waypoint\
             &namespaces=shop&destinations={destinations}&version={version}"
        )
    };
    let gateway = format!(
        "/v1/config?service=istio-ingressgateway&namespace=istio-system&pod=ingress-5c8b\
         &proxy=gateway&destinations=3&version={version}"
    );
    assert_eq!(
        poll(&client, &a, &waypoint(5)).await.0,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        poll(&client, &b, &gateway).await.0,
        StatusCode::NOT_MODIFIED
    );
    let expected = |destinations: u64| {
        vec![
            (
                ProxyKind::Waypoint,
                "waypoint-7d9f".to_owned(),
                Some(destinations),
                1,
                "cp-a".to_owned(),
            ),
            (
                ProxyKind::Gateway,
                "ingress-5c8b".to_owned(),
                Some(3),
                1,
                "cp-b".to_owned(),
            ),
        ]
    };
    for server in [&a, &b] {
        let took = within(
            Duration::from_secs(15),
            "the waypoint and the gateway listed with their destinations",
            || {
                let status = cli_status(server);
                shared_proxies(&status) == expected(5) && status.sidecars.is_empty()
            },
        )
        .await;
        let totals = cli_status(server).totals.proxies;
        assert_eq!((totals.sidecar, totals.waypoint, totals.gateway), (0, 1, 1));
        eprintln!(
            "status through {}: waypoint (5 services) and gateway listed (after {took:?})",
            server.addr
        );
    }
    // The waypoint compiles a set for one more destination: both replicas show the new count.
    assert_eq!(
        poll(&client, &a, &waypoint(6)).await.0,
        StatusCode::NOT_MODIFIED
    );
    for server in [&b, &a] {
        within(
            Duration::from_secs(15),
            "the waypoint's new destinations count",
            || shared_proxies(&cli_status(server)) == expected(6),
        )
        .await;
    }
}

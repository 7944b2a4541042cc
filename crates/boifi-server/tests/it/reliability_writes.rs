//! Write campaign (issue 8): 1 000 policy writes from 4 concurrent clients through two real
//! `boifi-server` replicas on a real 3-member etcd, while one replica is SIGKILLed and later
//! restarted, then the etcd leader (found through etcd's status API) is SIGKILLed and later
//! restarted. Afterwards: every acknowledged write is present, on both replicas, with the
//! content that was acknowledged; every failed write failed with a clear error (a refused
//! connection to the dead replica, or an API error with a message — never a 500); and both
//! replicas serve the identical policy list and the identical sidecar config.
//!
//! Without an etcd binary this test fails and says how to install it (`make deps`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boifi_core::wire::{ApiError, ConfigResponse, PolicyList};
use boifi_testkit::etcd::EtcdCluster;
use serde_json::Value;

use crate::harness::{get_json, policy_json, Binary};

const CLIENTS: usize = 4;
const WRITES_PER_CLIENT: usize = 250;
const PREFIX: &str = "/boifi-campaign/policies/";

fn replica(etcd: &EtcdCluster, name: &str) -> Binary {
    let log = etcd.dir().join(format!("{name}.log"));
    Binary::start(
        &[
            "--storage",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoints_arg(),
            "--etcd-prefix",
            PREFIX,
        ],
        &log,
    )
}

/// The index of the etcd leader, through each member's `/v3/maintenance/status`.
async fn leader_index(client: &reqwest::Client, etcd: &EtcdCluster) -> Option<usize> {
    for (i, member) in etcd.members().iter().enumerate() {
        let url = format!("{}/v3/maintenance/status", member.client_url());
        let Ok(r) = client.post(url).body("{}").send().await else {
            continue;
        };
        let Ok(status) = r.json::<Value>().await else {
            continue;
        };
        let me = status["header"]["member_id"].as_str().map(str::to_owned);
        let leader = status["leader"].as_str().map(str::to_owned);
        if me.is_some() && me == leader {
            return Some(i);
        }
    }
    None
}

#[derive(Debug)]
enum Outcome {
    /// 2xx: the stored document as the server answered it.
    Acknowledged(Value),
    /// The reason, as a person would read it.
    Failed(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_a_replica_and_the_etcd_leader() {
    let mut etcd = EtcdCluster::for_test(3);
    let a = replica(&etcd, "replica-a");
    let b = replica(&etcd, "replica-b");
    // The URLs clients write to, swapped when a replica dies or comes back.
    let urls = Arc::new(Mutex::new([a.url(""), b.url("")]));
    let mut a = Some(a);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let mut writers = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, urls, done) = (client.clone(), urls.clone(), done.clone());
        writers.spawn(async move {
            let mut outcomes = Vec::with_capacity(WRITES_PER_CLIENT);
            for i in 0..WRITES_PER_CLIENT {
                let name = format!("w{c}-{i:03}");
                let base = urls.lock().unwrap()[(c + i) % 2].clone();
                let body = policy_json(&name, "frontend", "");
                let result = client
                    .post(format!("{base}/v1/policies"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let outcome = match result {
                    Ok(r) if r.status().is_success() => {
                        Outcome::Acknowledged(r.json::<Value>().await.unwrap())
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        let error: ApiError = serde_json::from_str(&text).unwrap_or_else(|e| {
                            panic!("{name}: {status} not an ApiError ({e}): {text}")
                        });
                        assert_ne!(status.as_u16(), 500, "{name}: a 500: {text}");
                        assert!(!error.message.is_empty(), "{name}: {text}");
                        Outcome::Failed(format!("{status}: {}", error.message))
                    }
                    Err(e) => {
                        assert!(
                            e.is_connect() || e.is_timeout() || e.is_request(),
                            "{name}: {e}"
                        );
                        Outcome::Failed(e.to_string())
                    }
                };
                outcomes.push((name, outcome));
                done.fetch_add(1, Ordering::SeqCst);
            }
            outcomes
        });
    }

    let total = CLIENTS * WRITES_PER_CLIENT;
    let wait_done = |n: usize| {
        let done = done.clone();
        async move {
            while done.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // 1. SIGKILL replica A a fifth of the way in; restart it (new port) a little later.
    wait_done(total / 5).await;
    a.as_mut().unwrap().guard.kill().unwrap();
    let killed_replica_at = done.load(Ordering::SeqCst);
    wait_done(total * 2 / 5).await;
    let a = replica(&etcd, "replica-a-restarted");
    urls.lock().unwrap()[0] = a.url("");
    // 2. SIGKILL the etcd leader; restart it a little later.
    wait_done(total * 3 / 5).await;
    let leader = leader_index(&client, &etcd)
        .await
        .expect("no etcd leader found");
    etcd.kill_member(leader).unwrap();
    let killed_leader_at = done.load(Ordering::SeqCst);
    wait_done(total * 4 / 5).await;
    etcd.restart_member(leader).unwrap();

    let mut outcomes = BTreeMap::new();
    while let Some(result) = writers.join_next().await {
        outcomes.extend(result.unwrap());
    }
    let writes_took = started.elapsed();
    assert_eq!(outcomes.len(), total);

    // Both replicas converge (watches catch up) to one list.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (on_a, on_b) = loop {
        let (on_a, on_b): (PolicyList, PolicyList) = (
            get_json(&client, a.url("/v1/policies")).await,
            get_json(&client, b.url("/v1/policies")).await,
        );
        if on_a == on_b || Instant::now() > deadline {
            break (on_a, on_b);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(on_a, on_b, "the replicas disagree after the campaign");
    let stored: BTreeMap<&str, &boifi_core::policy::PolicyDocument> =
        on_a.policies.iter().map(|p| (p.name(), p)).collect();

    let (mut acknowledged, mut failed) = (0, 0);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Acknowledged(answer) => {
                acknowledged += 1;
                let doc = stored
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("acknowledged write `{name}` lost"));
                let answered: boifi_core::policy::PolicyDocument =
                    serde_json::from_value(answer.clone()).unwrap();
                assert_eq!(
                    **doc, answered,
                    "`{name}` differs from what was acknowledged"
                );
            }
            Outcome::Failed(reason) => {
                failed += 1;
                // Keep the kind of error, not the port or the name.
                let kind: String = reason.chars().take(40).collect();
                *reasons.entry(kind).or_default() += 1;
            }
        }
    }
    // Sidecars of both replicas get the same config.
    const CONFIG: &str = "/v1/config?service=frontend&namespace=demo";
    let (config_a, config_b): (ConfigResponse, ConfigResponse) = (
        get_json(&client, a.url(CONFIG)).await,
        get_json(&client, b.url(CONFIG)).await,
    );
    assert_eq!(config_a, config_b);
    eprintln!(
        "write campaign: {total} writes in {writes_took:?}: {acknowledged} acknowledged (all present on both replicas), {failed} failed; replica killed after {killed_replica_at}, etcd leader (member {leader}) killed after {killed_leader_at}; failures: {reasons:?}"
    );
    assert!(
        acknowledged >= total / 2,
        "too few writes acknowledged: {acknowledged}"
    );
}

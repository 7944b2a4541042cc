//! Two real `boifi-server` processes on one etcd (started by the test): a write through one
//! replica wakes a long-poll waiting on the other in well under a second; SIGKILL of a replica
//! loses no acknowledged write and the other keeps serving; expiry agrees on both replicas and
//! across a restart; a compaction under live watches changes nothing.
//!
//! Without an etcd binary these tests fail and say how to install it (`make deps`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boifi_core::wire::{ConfigResponse, PolicyList};
use boifi_testkit::etcd::EtcdCluster;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{create_at, etcd_replica, get_json, policy_json, until_waiting, Binary};

const CONFIG: &str = "/v1/config?service=frontend&namespace=demo";

/// A replica on `etcd`, logging into the cluster's directory.
fn replica(etcd: &EtcdCluster, name: &str) -> Binary {
    etcd_replica(etcd, name, &[])
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn config(client: &reqwest::Client, server: &Binary) -> ConfigResponse {
    let r = client.get(server.url(CONFIG)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn create(client: &reqwest::Client, server: &Binary, body: String) -> Value {
    create_at(client, server.url("/v1/policies"), body).await
}

/// Starts a long-poll on `server` for a config newer than `version`; returns when it answers,
/// with the answer and the instant it arrived.
fn long_poll(
    client: &reqwest::Client,
    server: &Binary,
    version: u64,
) -> tokio::task::JoinHandle<(StatusCode, Option<ConfigResponse>, Instant)> {
    let url = server.url(&format!("{CONFIG}&version={version}&wait=10s"));
    let client = client.clone();
    tokio::spawn(async move {
        let r = client.get(url).send().await.unwrap();
        let arrived = Instant::now();
        let status = r.status();
        let body = if status == StatusCode::OK {
            Some(r.json().await.unwrap())
        } else {
            None
        };
        (status, body, arrived)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_one_replica_wakes_a_long_poll_on_the_other() {
    let etcd = EtcdCluster::for_test(1);
    let a = replica(&etcd, "replica-a");
    let b = replica(&etcd, "replica-b");
    let client = client();

    let mut from_request = Vec::new();
    let mut from_ack = Vec::new();
    for round in 0..8 {
        let held = config(&client, &b).await.version;
        let poll = long_poll(&client, &b, held);
        // The long-poll is parked on B (B's waiter gauge says so) before the write: a poll
        // that arrived late would get an immediate answer and prove nothing.
        until_waiting(&client, &b.url("/metrics"), 1).await;
        let sent = Instant::now();
        let stored = create(
            &client,
            &a,
            policy_json(&format!("wake-{round}"), "frontend", ""),
        )
        .await;
        let acked = Instant::now();
        let (status, answer, arrived) = poll.await.unwrap();
        assert_eq!(status, StatusCode::OK, "the long-poll on B was not woken");
        let answer = answer.unwrap();
        assert!(answer.version > held);
        assert!(answer.version >= stored["status"]["revision"].as_u64().unwrap());
        let got = answer
            .policies
            .iter()
            .find(|p| p.name() == format!("wake-{round}"))
            .expect("the new policy is in B's answer");
        assert_eq!(serde_json::to_value(got).unwrap(), stored);
        let latency = arrived.saturating_duration_since(sent);
        assert!(
            latency < Duration::from_secs(1),
            "round {round}: B answered {latency:?} after the write to A"
        );
        from_request.push(latency);
        from_ack.push(arrived.saturating_duration_since(acked));
    }
    from_request.sort();
    from_ack.sort();
    eprintln!(
        "cross-replica propagation (write sent to A -> long-poll on B answered), 8 rounds: \
         min {:?}, median {:?}, max {:?}; after A's acknowledgement: median {:?}, max {:?}",
        from_request[0], from_request[4], from_request[7], from_ack[4], from_ack[7]
    );

    // A compaction under live, synced watches changes nothing: the next write still arrives.
    let mut etcd_client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let head = etcd_client.get("/", None).await.unwrap();
    etcd_client
        .compact(
            head.header().unwrap().revision(),
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
    let held = config(&client, &b).await.version;
    let poll = long_poll(&client, &b, held);
    until_waiting(&client, &b.url("/metrics"), 1).await;
    let stored = create(&client, &a, policy_json("after-compaction", "frontend", "")).await;
    let (status, answer, _) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(answer
        .unwrap()
        .policies
        .iter()
        .any(|p| serde_json::to_value(p).unwrap() == stored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_replica_loses_no_acknowledged_write() {
    let etcd = EtcdCluster::for_test(1);
    let mut a = replica(&etcd, "replica-a");
    let b = replica(&etcd, "replica-b");
    let client = client();

    // A writer hammers A until A dies; it keeps every acknowledged answer.
    let acknowledged = Arc::new(Mutex::new(Vec::<Value>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        let url = a.url("/v1/policies");
        let client = client.clone();
        tokio::spawn(async move {
            let mut attempts = 0u32;
            while !stop.load(Ordering::Relaxed) && attempts < 2_000 {
                let body = policy_json(&format!("durable-{attempts}"), "frontend", "");
                attempts += 1;
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        if let Ok(v) = r.json::<Value>().await {
                            acknowledged.lock().unwrap().push(v);
                        }
                    }
                    // A is gone (or dying): the write was not acknowledged.
                    _ => break,
                }
            }
            attempts
        })
    };
    // Kill A mid-stream, once it has acknowledged a few writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acknowledged.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "A acknowledged too few writes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.guard.kill().unwrap();
    stop.store(true, Ordering::Relaxed);
    let attempts = writer.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();

    // Every acknowledged write is on B, exactly as A acknowledged it.
    let listed: PolicyList = get_json(&client, b.url("/v1/policies")).await;
    for acked in &acknowledged {
        let name = acked["metadata"]["name"].as_str().unwrap();
        let found = listed
            .policies
            .iter()
            .find(|p| p.name() == name)
            .unwrap_or_else(|| panic!("acknowledged write `{name}` lost"));
        assert_eq!(&serde_json::to_value(found).unwrap(), acked);
    }
    eprintln!(
        "sigkill: {} writes acknowledged by A before SIGKILL ({} attempted), all present on B",
        acknowledged.len(),
        attempts
    );

    // B keeps serving: ready, reads, writes, long-polls.
    let r = client.get(b.url("/v1/ready")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let held = config(&client, &b).await.version;
    let mut poll = long_poll(&client, &b, held);
    let stored = create(&client, &b, policy_json("after-kill", "frontend", "")).await;
    // A write A committed but never acknowledged may still reach B first: follow the versions.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer, _) = poll.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let answer = answer.unwrap();
        if answer
            .policies
            .iter()
            .any(|p| serde_json::to_value(p).unwrap() == stored)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's long-poll never showed its own write"
        );
        poll = long_poll(&client, &b, answer.version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_agrees_on_both_replicas_and_after_a_restart() {
    let etcd = EtcdCluster::for_test(1);
    let a = replica(&etcd, "replica-a");
    let mut b = replica(&etcd, "replica-b");
    let client = client();

    let stored = create(
        &client,
        &a,
        policy_json("short-lived", "frontend", r#""duration_seconds": 2,"#),
    )
    .await;
    let stored_at = stored["status"]["stored_at_ms"].as_u64().unwrap();
    let expires_at = stored["status"]["expires_at_ms"].as_u64().unwrap();
    assert_eq!(expires_at, stored_at + 2_000);
    for server in [&a, &b] {
        // B may need a moment for the watch; bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c = config(&client, server).await;
            if c.policies.len() == 1 {
                assert_eq!(serde_json::to_value(&c.policies[0]).unwrap(), stored);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the policy never reached {:?}",
                server.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Both replicas drop it from the sidecars' config at its expiry, not before, not much after.
    let mut gone = [false, false];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(gone[0] && gone[1]) {
        for (i, server) in [&a, &b].into_iter().enumerate() {
            if gone[i] {
                continue;
            }
            let c = config(&client, server).await;
            let now = boifi_server::store::now_ms();
            if c.policies.is_empty() {
                assert!(now >= expires_at, "left {} ms early", expires_at - now);
                gone[i] = true;
            } else {
                assert!(
                    now < expires_at + 1_000,
                    "still served {} ms after expiry",
                    now - expires_at
                );
            }
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A restarted replica agrees: expiry is data in etcd, not a timer in a process.
    b.guard.kill().unwrap();
    let b = replica(&etcd, "replica-b");
    let c = config(&client, &b).await;
    assert!(c.policies.is_empty(), "{c:?}");
    let listed: PolicyList = get_json(&client, b.url("/v1/policies")).await;
    assert_eq!(listed.policies.len(), 1, "expired policies stay listed");
    assert_eq!(serde_json::to_value(&listed.policies[0]).unwrap(), stored);
}

/// With etcd gone the replica stays ready (`degraded`, saying why): it keeps serving its last
/// view, and a readiness probe that failed would take every replica out of the Service at once,
/// cutting the sidecars off from even that. Writes are refused with 503 and `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_a_replica_ready_serving_its_view_and_saying_why() {
    let mut etcd = EtcdCluster::for_test(1);
    let a = replica(&etcd, "replica-a");
    let client = client();
    let stored = create(&client, &a, policy_json("kept", "frontend", "")).await;

    etcd.kill_member(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let r = client.get(a.url("/v1/ready")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "unready while serving its view");
        let body: Value = r.json().await.unwrap();
        if body["status"] == "degraded" {
            break body["detail"].as_str().unwrap().to_owned();
        }
        assert_eq!(body["status"], "ready");
        assert!(Instant::now() < deadline, "never said etcd is gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(detail.contains("etcd"), "{detail}");
    let refused = client
        .post(a.url("/v1/policies"))
        .header("content-type", "application/json")
        .body(policy_json("refused", "frontend", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    // Liveness holds, and sidecars keep getting the last configuration.
    let r = client.get(a.url("/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c = config(&client, &a).await;
    assert_eq!(serde_json::to_value(&c.policies[0]).unwrap(), stored);

    let etcd = tokio::task::spawn_blocking(move || {
        etcd.restart_member(0).unwrap();
        etcd
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client.get(a.url("/v1/ready")).send().await.unwrap();
        let body: Value = r.json().await.unwrap();
        if body["status"] == "ready" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still degraded after etcd came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = create(&client, &a, policy_json("after-outage", "frontend", "")).await;
    let c = config(&client, &a).await;
    assert_eq!(c.policies.len(), 2);
    assert!(c.version >= after["status"]["revision"].as_u64().unwrap());
    drop(etcd);
}

/// Two replicas on a 3-member etcd; the etcd leader is killed while A takes writes. Writes may
/// fail during the election (503), but every acknowledged one is on B, and both replicas stay
/// or become ready again on the surviving members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_loss_under_two_replicas_loses_no_acknowledged_write() {
    let mut etcd = EtcdCluster::for_test(3);
    let a = replica(&etcd, "replica-a");
    let b = replica(&etcd, "replica-b");
    let client = client();

    let mut leader = None;
    for (index, member) in etcd.members().iter().enumerate() {
        let mut c = etcd_client::Client::connect([member.client_url()], None)
            .await
            .unwrap();
        let status = c.status().await.unwrap();
        if status.header().unwrap().member_id() == status.leader() {
            leader = Some(index);
        }
    }
    let leader = leader.expect("the cluster has a leader");

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    let mut killed_at = None;
    let mut writable_again = None;
    while acknowledged.len() < 30 {
        assert!(Instant::now() < deadline, "too few writes went through");
        if acknowledged.len() == 10 && etcd.member(leader).is_some_and(|m| m.is_healthy()) {
            etcd.kill_member(leader).unwrap();
            killed_at = Some(Instant::now());
        }
        let r = client
            .post(a.url("/v1/policies"))
            .header("content-type", "application/json")
            .body(policy_json(&format!("ha-{i}"), "frontend", ""))
            .send()
            .await
            .unwrap();
        i += 1;
        if r.status().is_success() {
            if let (Some(killed), None) = (killed_at, writable_again) {
                writable_again = Some(killed.elapsed());
            }
            acknowledged.push(r.json::<Value>().await.unwrap());
        } else {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            refused += 1;
        }
    }
    eprintln!(
        "etcd leader loss: {} writes acknowledged, {refused} refused with 503 during the \
         election; writes went through again {:?} after the kill",
        acknowledged.len(),
        writable_again.unwrap()
    );
    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = client.get(server.url("/v1/ready")).send().await.unwrap();
            let listed: PolicyList = get_json(&client, server.url("/v1/policies")).await;
            let all = acknowledged.iter().all(|acked| {
                listed
                    .policies
                    .iter()
                    .any(|p| serde_json::to_value(p).unwrap() == *acked)
            });
            if all && ready.status() == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: ready {}, all acknowledged writes present: {all}",
                server.addr,
                ready.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

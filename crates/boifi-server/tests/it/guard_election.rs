//! The guard election on etcd, with the real binary: exactly one replica evaluates guards, it
//! keeps doing so through the loss of an etcd member, and when it is SIGKILLed the other replica
//! takes over within the election lease's TTL plus a second.

use std::time::{Duration, Instant};

use boifi_testkit::etcd::EtcdCluster;

use crate::harness::{metric_value, Binary};

/// The election lease's TTL the replicas run with (etcd's minimum with its default timing).
const TTL: Duration = Duration::from_secs(2);

/// How long after its leader's death a replica must lead: the lease's TTL, plus etcd's expiry
/// check (every 500 ms) and the `Campaign` answer.
const TAKEOVER_BOUND: Duration = Duration::from_secs(3);

/// A replica named `name` on `endpoints` (the first is where its etcd calls go first).
fn replica(etcd: &EtcdCluster, endpoints: &str, name: &str) -> Binary {
    let log = etcd.dir().join(format!("{name}.log"));
    let args = [
        "--storage",
        "etcd",
        "--etcd-endpoints",
        endpoints,
        "--replica-id",
        name,
        "--guard-election-ttl",
        "2s",
    ];
    Binary::start(&args, &log)
}

/// `boifi_guard_leader` of a replica; `None` when it does not answer (killed).
async fn leading(client: &reqwest::Client, replica: &Binary) -> Option<bool> {
    let text = client
        .get(replica.url("/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric_value(&text, "boifi_guard_leader").map(|v| v == 1)
}

/// Polls both replicas until exactly one leads (failing if both ever do); its index.
async fn until_one_leads(
    client: &reqwest::Client,
    replicas: &[&Binary],
    within: Duration,
) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut leaders = Vec::new();
        for (index, replica) in replicas.iter().enumerate() {
            if leading(client, replica).await == Some(true) {
                leaders.push(index);
            }
        }
        assert!(
            leaders.len() <= 1,
            "two replicas evaluate guards: {leaders:?}"
        );
        if let [leader] = leaders[..] {
            return leader;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
                .collect();
            panic!(
                "no replica evaluates guards after {within:?}; their logs:\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_evaluates_guards_and_another_takes_over_within_the_lease_ttl() {
    let mut etcd = EtcdCluster::for_test(3);
    // The member the replicas call first is not etcd's leader: its death is a member failure
    // the replicas' failover rides out, not an etcd election (during which no lease can be
    // renewed).
    let etcd_leader = etcd.leader().expect("etcd has a leader");
    let victim = (etcd_leader + 1) % 3;
    let endpoints = etcd.endpoints();
    let ordered: Vec<&str> = (0..3)
        .filter_map(|i| endpoints.get((victim + i) % 3).map(String::as_str))
        .collect();
    let ordered = ordered.join(",");
    let mut a = replica(&etcd, &ordered, "guard-a");
    let mut b = replica(&etcd, &ordered, "guard-b");
    let client = reqwest::Client::new();
    let leader = until_one_leads(&client, &[&a, &b], Duration::from_secs(10)).await;

    // An etcd member dies (the first endpoint, where both replicas' calls go first): the
    // leader's lease is renewed through another member, so leadership does not move during two
    // TTLs, and at no moment do both replicas lead.
    etcd.kill_member(victim).unwrap();
    let watch_until = Instant::now() + TTL * 2;
    while Instant::now() < watch_until {
        assert_eq!(
            until_one_leads(&client, &[&a, &b], Duration::ZERO).await,
            leader,
            "leadership moved when an etcd member died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A stop is a write conditioned on the revision the evaluation read: two replicas that
    // both judged the same revision (two leaders overlapping, or a dying leader's write applied
    // late) cannot both apply it.
    let policy = r#"{"metadata": {"name": "guarded"},
        "spec": {"selector": {"service": "cartservice"}, "heartbeat_seconds": 2,
                 "rules": [{"match": {"path": {"prefix": "/"}},
                            "fault": {"percentage": 50, "abort": {"httpStatus": 503}}}]}}"#;
    let created = client
        .post(a.url("/v1/policies"))
        .header("content-type", "application/json")
        .body(policy)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let stopped = policy.replace(r#""percentage": 50"#, r#""percentage": 0"#);
    let stop = |replica: &Binary| {
        client
            .put(replica.url("/v1/policies/guarded"))
            .header("content-type", "application/json")
            .header("if-match", &etag)
            .body(stopped.clone())
            .send()
    };
    let (from_a, from_b) = tokio::join!(stop(&a), stop(&b));
    let mut statuses = [from_a.unwrap().status(), from_b.unwrap().status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [
            reqwest::StatusCode::OK,
            reqwest::StatusCode::PRECONDITION_FAILED
        ],
        "a stop conditioned on one revision applied other than once"
    );

    // The leader is SIGKILLed: the other replica leads within the bound.
    let (dead, survivor) = if leader == 0 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.guard.kill().unwrap();
    let killed = Instant::now();
    loop {
        if leading(&client, survivor).await == Some(true) {
            break;
        }
        assert!(
            killed.elapsed() < TAKEOVER_BOUND * 2,
            "the surviving replica does not evaluate guards {:?} after the leader died:\n{}",
            killed.elapsed(),
            std::fs::read_to_string(&survivor.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = killed.elapsed();
    eprintln!(
        "guard election: takeover {} ms after SIGKILL (TTL {} ms)",
        took.as_millis(),
        TTL.as_millis()
    );
    assert!(
        took <= TAKEOVER_BOUND,
        "takeover took {took:?}, over the bound of {TAKEOVER_BOUND:?}"
    );
}

//! The etcd fault campaign: a real 3-member etcd and 2 real `boifi-server` replicas on
//! loopback, bounded concurrent writers (each through one replica) and one long-poll reader per
//! replica, through four faults in turn:
//! - the member the replicas use (the one serving their watches) SIGKILLed, then restarted;
//! - that member SIGSTOPped (hung, not dead) for longer than the request timeout, then
//!   continued;
//! - the leader SIGKILLed together with replica B (whose writers then go through A, as a
//!   Service would send them), both restarted; B comes back with every write;
//! - two members SIGKILLed (no quorum), then restarted.
//!
//! With one member down or hung at least 99.9 % of the writes must be acknowledged, every
//! refusal must be a 503 with `Retry-After`, and no request may take longer than the stated
//! bound. No acknowledged write may be lost: each is visible with its revision (or a later one)
//! through both replicas' `/v1/policies` and `/v1/config`. The long-polls must keep receiving
//! new versions during every fault. Without quorum writes are refused quickly, reads and
//! long-polls answer from the last view, the replicas stay ready, and everything resumes when
//! the members come back, with no restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boifi_core::wire::{ConfigResponse, PolicyList};
use boifi_testkit::etcd::EtcdCluster;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{etcd_replica, get_json, policy_json, Binary};

const CONFIG: &str = "/v1/config?service=frontend&namespace=demo";

/// Concurrent writers; each writes its own names, one write at a time.
const WRITERS: usize = 8;
/// Names each writer cycles through (create-or-replace with PUT).
const NAMES_PER_WRITER: usize = 8;
/// Writes per fault phase with one member down or hung.
const WRITES_PER_PHASE: usize = 2_000;
/// The store's bound of one operation on etcd (`EtcdOptions::request_timeout`): a refusal
/// comes within it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// An acknowledged write may also wait for the replica's view (`EtcdOptions::view_wait`).
const VIEW_WAIT: Duration = Duration::from_secs(5);
/// Scheduling slack on a loaded test machine.
const SLACK: Duration = Duration::from_secs(1);
/// How long a long-poll may go without a new version while writes go on: the watch's silence
/// check (1 s), one attempt timeout on the hung member (1.5 s), a leader election (about 1 s)
/// and slack.
const LONGEST_SILENCE: Duration = Duration::from_millis(4_500);

/// One write's outcome.
#[derive(Debug, Clone)]
struct Write {
    name: String,
    /// The replica it went through.
    replica: usize,
    sent: Instant,
    took: Duration,
    /// The revision acknowledged, or `None` if refused.
    revision: Option<u64>,
    status: u16,
    retry_after: Option<String>,
}

/// What every writer and reader records.
#[derive(Debug, Default)]
struct Record {
    writes: Vec<Write>,
    /// `(replica, version, when)` for every new version a long-poll answered with.
    versions: Vec<(usize, u64, Instant)>,
    /// Writes sent again through the other replica after their replica did not answer (as a
    /// Service would route them).
    rerouted: usize,
}

/// The replicas' base URLs; a restarted replica gets a new port.
type Servers = Arc<Mutex<[String; 2]>>;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(WRITERS)
        .build()
        .unwrap()
}

/// One PUT; `Err` when the replica did not answer (down or killed mid-request).
async fn put(
    client: &reqwest::Client,
    server: &str,
    replica: usize,
    name: &str,
    sequence: usize,
) -> Result<Write, reqwest::Error> {
    // Each write of a name differs from the one before (the delay carries its sequence).
    let delay = format!(r#""delay": {{"fixed_delay_ms": {}}},"#, sequence % 1000 + 1);
    let body = policy_json(name, "frontend", &delay);
    let sent = Instant::now();
    let r = client
        .put(format!("{server}/v1/policies/{name}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let revision = if r.status().is_success() {
        let v: Value = r.json().await?;
        v["status"]["revision"].as_u64()
    } else {
        None
    };
    Ok(Write {
        name: name.to_owned(),
        replica,
        sent,
        took: sent.elapsed(),
        revision,
        status,
        retry_after,
    })
}

/// Starts the writers: writer `w` writes through replica `w % 2` until `stop`, recording into
/// `record`; when its replica does not answer, it sends the write again through the other.
fn start_writers(
    servers: Servers,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let servers = Arc::clone(&servers);
            let record = Arc::clone(&record);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let client = client();
                let mut replica = w % 2;
                let mut sequence = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{w}-n{}", sequence % NAMES_PER_WRITER);
                    let server = servers.lock().unwrap()[replica].clone();
                    match put(&client, &server, replica, &name, sequence).await {
                        Ok(write) => {
                            record.lock().unwrap().writes.push(write);
                            sequence += 1;
                        }
                        Err(_) => {
                            record.lock().unwrap().rerouted += 1;
                            replica = 1 - replica;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Starts one long-poll reader per replica: each waits for a version newer than the last it
/// saw and records every answer.
fn start_readers(
    servers: Servers,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|replica| {
            let servers = Arc::clone(&servers);
            let record = Arc::clone(&record);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let client = client();
                let mut version = 0;
                while !stop.load(Ordering::Relaxed) {
                    let server = servers.lock().unwrap()[replica].clone();
                    let url = format!("{server}{CONFIG}&version={version}&wait=2s");
                    let Ok(r) = client.get(url).send().await else {
                        // The replica is down: like a sidecar, try again shortly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if r.status() != StatusCode::OK {
                        continue;
                    }
                    let Ok(config) = r.json::<ConfigResponse>().await else {
                        continue;
                    };
                    let now = Instant::now();
                    if config.version > version {
                        version = config.version;
                        record
                            .lock()
                            .unwrap()
                            .versions
                            .push((replica, version, now));
                    }
                }
            })
        })
        .collect()
}

/// Figures of one phase.
#[derive(Debug)]
struct Phase {
    name: &'static str,
    writes: usize,
    acknowledged: usize,
    slowest: Duration,
    /// p99 of write sent → the other replica's long-poll answered with it (the writer's own
    /// while the other is down), outside the first second of the fault.
    propagation_p99: Option<Duration>,
    versions_seen: [usize; 2],
    /// Per replica, the longest time its long-poll went without a new version during the
    /// phase (from the fault on).
    longest_silence: [Duration; 2],
}

/// Checks the writes and reads recorded from `from` on (the phase's fault started at `fault`);
/// the long-polls of replicas not `alive` through the phase are not judged.
fn judge(
    name: &'static str,
    record: &Record,
    from: usize,
    fault: Instant,
    alive: [bool; 2],
) -> Phase {
    let writes = &record.writes[from..];
    let mut slowest = Duration::ZERO;
    for w in writes {
        slowest = slowest.max(w.took);
        match w.revision {
            Some(_) => assert!(
                w.took <= REQUEST_TIMEOUT + VIEW_WAIT + SLACK,
                "{name}: an acknowledged write took {:?}",
                w.took
            ),
            None => {
                assert_eq!(
                    w.status, 503,
                    "{name}: a write was refused with {}",
                    w.status
                );
                assert_eq!(
                    w.retry_after.as_deref(),
                    Some("1"),
                    "{name}: a 503 without a retry hint"
                );
                assert!(
                    w.took <= REQUEST_TIMEOUT + SLACK,
                    "{name}: a refusal took {:?}",
                    w.took
                );
            }
        }
    }
    let acknowledged = writes.iter().filter(|w| w.revision.is_some()).count();
    let phase_versions: Vec<_> = record
        .versions
        .iter()
        .filter(|(_, _, at)| *at >= fault)
        .collect();
    let versions_seen = [0, 1].map(|r| phase_versions.iter().filter(|(x, _, _)| *x == r).count());
    let end = writes
        .iter()
        .map(|w| w.sent + w.took)
        .max()
        .unwrap_or(fault);
    let longest_silence = [0, 1].map(|r| {
        if !alive[r] {
            return Duration::ZERO;
        }
        let mut last = fault;
        let mut longest = Duration::ZERO;
        for (_, _, at) in phase_versions.iter().filter(|(x, _, _)| *x == r) {
            longest = longest.max(at.saturating_duration_since(last));
            last = *at;
        }
        longest.max(end.saturating_duration_since(last))
    });
    // Writer `w` writes through replica `w % 2`; its write reaches the sidecars of the other.
    let mut delays: Vec<Duration> = Vec::new();
    for w in writes
        .iter()
        .filter(|w| w.sent >= fault + Duration::from_secs(1))
    {
        let Some(revision) = w.revision else { continue };
        // The other replica's long-poll, or the writer's own while the other is down.
        let other = if alive[1 - w.replica] {
            1 - w.replica
        } else {
            w.replica
        };
        if let Some((_, _, at)) = phase_versions
            .iter()
            .find(|(r, v, _)| *r == other && *v >= revision)
        {
            delays.push(at.saturating_duration_since(w.sent));
        }
    }
    delays.sort();
    let propagation_p99 =
        (!delays.is_empty()).then(|| delays[(delays.len() * 99 / 100).min(delays.len() - 1)]);
    Phase {
        name,
        writes: writes.len(),
        acknowledged,
        slowest,
        propagation_p99,
        versions_seen,
        longest_silence,
    }
}

/// Runs the writers until `count` writes are recorded after `from` and at least `min` elapsed.
async fn write_until(record: &Mutex<Record>, from: usize, count: usize, min: Duration) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(240);
    loop {
        let done = record.lock().unwrap().writes.len() - from;
        if done >= count && start.elapsed() >= min {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} writes in {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Judges the phase since `from` with both replicas alive, asserting its availability.
fn available(
    name: &'static str,
    record: &Mutex<Record>,
    from: usize,
    fault: Instant,
    writes: usize,
) -> Phase {
    let phase = judge(name, &record.lock().unwrap(), from, fault, [true; 2]);
    assert_available(&phase, writes);
    phase
}

fn assert_available(phase: &Phase, writes: usize) {
    assert!(phase.writes >= writes, "{phase:?}");
    // ≥ 99.9 % acknowledged: at most one refusal per thousand writes.
    assert!(
        phase.acknowledged * 1000 >= phase.writes * 999,
        "{}: only {} of {} writes acknowledged",
        phase.name,
        phase.acknowledged,
        phase.writes
    );
    // Writes never stop, so a long-poll that goes silent longer than a failover takes (the
    // watch's silence check, one attempt timeout, and slack) was cut off from new versions.
    assert!(
        phase.longest_silence.iter().all(|d| *d <= LONGEST_SILENCE),
        "{}: a long-poll went without new versions too long: {phase:?}",
        phase.name
    );
    eprintln!(
        "{}: {} writes, {} acknowledged, slowest {:?}, propagation p99 {:?} (after the first second), new versions seen {:?}, long-polls silent at most {:?}",
        phase.name,
        phase.writes,
        phase.acknowledged,
        phase.slowest,
        phase.propagation_p99,
        phase.versions_seen,
        phase.longest_silence
    );
}

/// The member serving the most watches: the one the replicas follow and write through (each
/// replica keeps to the member that answered last), so the fault hits their connections.
fn busiest(etcd: &EtcdCluster) -> usize {
    let watchers = |i: usize| {
        etcd.member_metric(i, "etcd_debugging_mvcc_watcher_total")
            .unwrap_or(0.0)
    };
    let busiest = (0..3)
        .max_by(|x, y| watchers(*x).total_cmp(&watchers(*y)))
        .unwrap();
    assert!(watchers(busiest) >= 1.0, "no member serves a watch");
    busiest
}

/// Waits until the member at `index` is healthy again after a restart.
async fn restart(etcd: EtcdCluster, index: usize) -> EtcdCluster {
    tokio::task::spawn_blocking(move || {
        let mut etcd = etcd;
        etcd.restart_member(index).unwrap();
        etcd
    })
    .await
    .unwrap()
}

/// Every acknowledged write is there, at its revision or a later one, through both replicas'
/// lists and configs (the last write of each name wins; a refused write may have been applied
/// too, so a later revision is allowed).
async fn assert_no_acknowledged_write_lost(record: &Record, servers: &[&Binary; 2]) {
    let mut last_acknowledged: BTreeMap<&str, u64> = BTreeMap::new();
    for w in &record.writes {
        if let Some(revision) = w.revision {
            let entry = last_acknowledged.entry(&w.name).or_default();
            *entry = (*entry).max(revision);
        }
    }
    let client = client();
    for server in servers {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let listed: PolicyList = get_json(&client, server.url("/v1/policies")).await;
            let config: ConfigResponse = get_json(&client, server.url(CONFIG)).await;
            let revision_in = |policies: &[boifi_core::policy::PolicyDocument], name: &str| {
                policies
                    .iter()
                    .find(|p| p.name() == name)
                    .and_then(|p| p.status.as_ref())
                    .map(|s| s.revision)
            };
            let lost: Vec<_> = last_acknowledged
                .iter()
                .filter(|(name, acked)| {
                    revision_in(&listed.policies, name).is_none_or(|r| r < **acked)
                        || revision_in(&config.policies, name).is_none_or(|r| r < **acked)
                })
                .collect();
            if lost.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} misses acknowledged writes: {lost:?}",
                server.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_fault_campaign_keeps_writes_acknowledged_or_cleanly_refused() {
    let started = Instant::now();
    let mut etcd = EtcdCluster::for_test(3);
    let a = etcd_replica(&etcd, "replica-a", &[]);
    let mut b = etcd_replica(&etcd, "replica-b", &[]);
    let servers: Servers = Arc::new(Mutex::new([a.url(""), b.url("")]));
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = start_writers(Arc::clone(&servers), Arc::clone(&record), Arc::clone(&stop));
    tasks.extend(start_readers(
        Arc::clone(&servers),
        Arc::clone(&record),
        Arc::clone(&stop),
    ));
    let mut phases = Vec::new();

    // No fault: the figures the faults are compared with.
    let from = record.lock().unwrap().writes.len();
    let fault = Instant::now();
    write_until(&record, from, WRITES_PER_PHASE / 4, Duration::ZERO).await;
    phases.push(available(
        "no fault",
        &record,
        from,
        fault,
        WRITES_PER_PHASE / 4,
    ));

    // The member the replicas use SIGKILLed, then restarted.
    let follower = busiest(&etcd);
    eprintln!("killing m{follower} (leader: {:?})", etcd.leader());
    let from = record.lock().unwrap().writes.len();
    let fault = Instant::now();
    etcd.kill_member(follower).unwrap();
    write_until(&record, from, WRITES_PER_PHASE, Duration::ZERO).await;
    phases.push(available(
        "member killed",
        &record,
        from,
        fault,
        WRITES_PER_PHASE,
    ));
    etcd = restart(etcd, follower).await;

    // The member the replicas use SIGSTOPped for longer than the request timeout, then
    // continued.
    let follower = busiest(&etcd);
    eprintln!("stopping m{follower} (leader: {:?})", etcd.leader());
    let from = record.lock().unwrap().writes.len();
    let fault = Instant::now();
    etcd.stop_member(follower).unwrap();
    write_until(&record, from, WRITES_PER_PHASE, REQUEST_TIMEOUT + SLACK).await;
    etcd.continue_member(follower).unwrap();
    phases.push(available(
        "member hung",
        &record,
        from,
        fault,
        WRITES_PER_PHASE,
    ));

    // The leader SIGKILLed, and replica B with it; both restarted after the phase. B's writers
    // send their writes through A meanwhile (as the Service would).
    let leader = etcd.leader().expect("the cluster has a leader");
    let from = record.lock().unwrap().writes.len();
    let fault = Instant::now();
    etcd.kill_member(leader).unwrap();
    b.guard.kill().unwrap();
    write_until(&record, from, WRITES_PER_PHASE, Duration::ZERO).await;
    let phase = judge(
        "leader and replica B killed",
        &record.lock().unwrap(),
        from,
        fault,
        [true, false],
    );
    let refused_after_kill = record.lock().unwrap().writes[from..]
        .iter()
        .filter(|w| w.revision.is_none())
        .count();
    eprintln!(
        "leader killed: {refused_after_kill} writes refused, {} rerouted from replica B",
        record.lock().unwrap().rerouted
    );
    phases.push(phase);
    assert_available(phases.last().unwrap(), WRITES_PER_PHASE);
    // B comes back (on a new port) with everything written meanwhile; its long-poll resumes.
    b = etcd_replica(&etcd, "replica-b", &[]);
    let restarted = Instant::now();
    servers.lock().unwrap()[1] = b.url("");
    let deadline = restarted + Duration::from_secs(15);
    while !record
        .lock()
        .unwrap()
        .versions
        .iter()
        .any(|(r, _, at)| *r == 1 && *at > restarted)
    {
        assert!(
            Instant::now() < deadline,
            "replica B's long-poll never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    etcd = restart(etcd, leader).await;

    // Two members down: no quorum.
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let before: ConfigResponse = get_json(&client(), a.url(CONFIG)).await;
    let leader = etcd.leader().expect("the cluster has a leader");
    let downed = [leader, (leader + 1) % 3];
    for index in downed {
        etcd.kill_member(index).unwrap();
    }
    let client = client();
    // A refusal comes within the request timeout (the first ones may spend it: an election
    // could be under way).
    let refuse = |server: &Binary, i: usize| {
        let client = client.clone();
        let url = server.url("");
        async move {
            let w = put(&client, &url, 0, "no-quorum", i).await.unwrap();
            assert_eq!(w.status, 503, "a write went through without quorum");
            assert_eq!(w.retry_after.as_deref(), Some("1"));
            assert!(
                w.took <= REQUEST_TIMEOUT + SLACK,
                "refusal {i} took {:?}",
                w.took
            );
            w.took
        }
    };
    let mut first = Vec::new();
    for (i, server) in [&a, &b].into_iter().enumerate() {
        first.push(refuse(server, i).await);
    }
    // Once a replica says it is degraded, its refusals come at once.
    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready: Value = get_json(&client, server.url("/v1/ready")).await;
            if ready["status"] == "degraded" {
                break;
            }
            assert!(Instant::now() < deadline, "never degraded: {ready}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut then = Vec::new();
    for (i, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        let took = refuse(server, i + 2).await;
        assert!(
            took <= SLACK,
            "refusal {} took {took:?} while degraded",
            i + 2
        );
        then.push(took);
    }
    eprintln!("no quorum: first refusals took {first:?}, then {then:?}");
    for server in [&a, &b] {
        let ready: Value = get_json(&client, server.url("/v1/ready")).await;
        assert_eq!(ready["status"], "degraded", "{ready}");
        assert!(
            ready["detail"].as_str().unwrap().contains("etcd"),
            "{ready}"
        );
        let metrics = client.get(server.url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        assert!(text.contains("boifi_store_available 0"), "{text}");
        // `boifi-cli status` reads this: the loss of quorum is said where an SRE looks.
        let status: Value = get_json(&client, server.url("/v1/policies/status")).await;
        assert!(
            status["store_degraded"]
                .as_str()
                .is_some_and(|why| why.contains("etcd")),
            "{status}"
        );
        let config: ConfigResponse = get_json(&client, server.url(CONFIG)).await;
        assert_eq!(config.version, before.version);
        assert_eq!(config.policies, before.policies);
        // A long-poll at the current version waits and answers 304 (no change), not an error.
        let r = client
            .get(server.url(&format!("{CONFIG}&version={}&wait=1s", before.version)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    }
    let quorum_lost_for = Instant::now();
    for index in downed {
        etcd = restart(etcd, index).await;
    }
    // Everything resumes with no restart of the replicas.
    let deadline = Instant::now() + Duration::from_secs(30);
    for server in [&a, &b] {
        loop {
            let w = put(&client, &server.url(""), 0, "after-quorum", 0)
                .await
                .unwrap();
            if w.revision.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "writes did not resume: {w:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ready: Value = get_json(&client, server.url("/v1/ready")).await;
        assert_eq!(ready["status"], "ready", "{ready}");
    }
    eprintln!(
        "no quorum: writes resumed {:?} after the members were restarted",
        quorum_lost_for.elapsed()
    );

    let record = std::mem::take(&mut *record.lock().unwrap());
    assert_no_acknowledged_write_lost(&record, &[&a, &b]).await;
    for server in [&a, &b] {
        let text = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failovers = crate::harness::metric_value(&text, "boifi_store_failovers_total");
        eprintln!(
            "{:?}: retries {:?}, failovers {failovers:?}",
            server.addr,
            crate::harness::metric_value(&text, "boifi_store_retries_total")
        );
        assert!(failovers.is_some_and(|n| n > 0), "no failover counted");
    }
    eprintln!("campaign took {:?}", started.elapsed());
    drop(etcd);
}

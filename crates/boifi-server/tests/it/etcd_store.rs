//! The etcd store against a real etcd started by the test (boifi-testkit): the conformance
//! suite, two stores sharing one etcd, and a watch that recovers from losing its member while
//! the revision it would resume from is compacted.
//!
//! Without an etcd binary these tests fail and say how to install it (`make deps`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boifi_server::store::etcd::{EtcdOptions, EtcdStore};
use boifi_server::store::{PolicyStore, PutOutcome, Snapshot, StoreError, WriteCondition};
use boifi_testkit::etcd::EtcdCluster;
use etcd_client::{Client, CompactionOptions};

use crate::conformance::{self, lasting, mismatch, policy};

/// A fresh prefix per store, so one etcd serves many independent stores.
fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/boifi-test/{test}/{}/policies/",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits (bounded) until the view published by `store` satisfies `done`.
async fn view_until(
    store: &dyn PolicyStore,
    what: &str,
    done: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut rx = store.subscribe();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let view = rx.borrow_and_update().clone();
            if done(&view) {
                return view;
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    seen.unwrap_or_else(|_| panic!("the view never showed {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_conforms() {
    let etcd = EtcdCluster::for_test(1);
    let endpoints = etcd.endpoints();
    conformance::run(|| {
        let endpoints = endpoints.clone();
        async move {
            let store = EtcdStore::connect(&endpoints, &unique_prefix("conformance"))
                .await
                .unwrap();
            Arc::new(store) as Arc<dyn PolicyStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_etcd_see_each_others_writes() {
    let etcd = EtcdCluster::for_test(1);
    let (a, b) = two_stores(&etcd, "shared").await;

    let started = Instant::now();
    let out = a
        .put(policy("shared-one", 10), WriteCondition::MustNotExist)
        .await
        .unwrap();
    let view = view_until(&b, "the write through the other store", |s| {
        s.version >= out.version
    })
    .await;
    eprintln!(
        "etcd store: a write through store A visible in store B's view after {:?}",
        started.elapsed()
    );
    // Both replicas hold the same document, status included (the writer's clock, the key's
    // revision), so they serve the same bytes.
    assert_eq!(view.policies.get("shared-one"), Some(&out.policy));
    assert_eq!(
        a.snapshot().await.unwrap().policies,
        b.snapshot().await.unwrap().policies
    );

    // Optimistic concurrency across replicas: B replaces with A's revision, then A's stale
    // `If-Match` fails and names B's revision.
    let replaced = b
        .put(
            policy("shared-one", 20),
            WriteCondition::Revision(out.version),
        )
        .await
        .unwrap();
    let err = a
        .put(
            policy("shared-one", 30),
            WriteCondition::Revision(out.version),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        mismatch("shared-one", out.version, Some(replaced.version))
    );
    // `If-Match: 0` never matches a missing policy (etcd gives a missing key mod_revision 0).
    for err in [
        a.put(policy("never-written", 1), WriteCondition::Revision(0))
            .await
            .unwrap_err(),
        a.delete("never-written", WriteCondition::Revision(0))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err, mismatch("never-written", 0, None));
    }
    // Strict create races across replicas: exactly one wins.
    let (x, y) = tokio::join!(
        a.put(policy("shared-race", 1), WriteCondition::MustNotExist),
        b.put(policy("shared-race", 2), WriteCondition::MustNotExist)
    );
    assert!(x.is_ok() ^ y.is_ok(), "{x:?} {y:?}");
    // The kill switch through B empties A's view.
    let deleted = b.delete_all().await.unwrap();
    assert_eq!(deleted, 2);
    view_until(&a, "the kill switch", |s| s.policies.is_empty()).await;
    // Another prefix on the same etcd is another store.
    let other = EtcdStore::connect(&etcd.endpoints(), &unique_prefix("shared"))
        .await
        .unwrap();
    assert!(other.snapshot().await.unwrap().policies.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_reports_why_it_cannot_start_and_waits_for_etcd() {
    // Nothing listens on this port: the store starts, is not ready, and says why.
    let port = boifi_testkit::ports::free_port().unwrap();
    let mut options = EtcdOptions::new(&[format!("http://127.0.0.1:{port}")], "/boifi/policies/");
    options.ready_timeout = Duration::from_millis(300);
    // `connect` gives up after its ready timeout, with the reason.
    let err = EtcdStore::connect_with(options.clone()).await.unwrap_err();
    eprintln!("etcd store: connect to a dead endpoint: {err}");
    assert!(
        matches!(&err, StoreError::Unavailable(reason) if reason.contains("etcd")),
        "{err:?}"
    );
    let store = EtcdStore::start(options).await.unwrap();
    let err = store
        .wait_ready(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(reason) if reason.contains("etcd")),
        "{err:?}"
    );
    assert!(matches!(
        store.snapshot().await,
        Err(StoreError::Unavailable(_))
    ));
    let err = store
        .put(policy("nowhere", 1), WriteCondition::Any)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Bad options are refused up front.
    let none: [&str; 0] = [];
    assert!(EtcdStore::start(EtcdOptions::new(&none, "/p/"))
        .await
        .is_err());
}

/// Two stores (two replicas) on one prefix of `etcd`, unique to `test`.
async fn two_stores(etcd: &EtcdCluster, test: &str) -> (EtcdStore, EtcdStore) {
    let prefix = unique_prefix(test);
    let a = EtcdStore::connect(&etcd.endpoints(), &prefix)
        .await
        .unwrap();
    let b = EtcdStore::connect(&etcd.endpoints(), &prefix)
        .await
        .unwrap();
    (a, b)
}

/// A member that is not the leader, so killing it needs no election: its index, its client
/// URL and the other members' URLs.
async fn a_follower(etcd: &EtcdCluster) -> (usize, String, Vec<String>) {
    for (index, member) in etcd.members().iter().enumerate() {
        let mut client = Client::connect([member.client_url()], None).await.unwrap();
        let status = client.status().await.unwrap();
        if status.header().unwrap().member_id() != status.leader() {
            let others = etcd
                .members()
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, m)| m.client_url())
                .collect();
            return (index, member.client_url(), others);
        }
    }
    panic!("no follower in the cluster")
}

/// Retries a write that may meet a cluster still settling (bounded).
async fn put_retrying(store: &EtcdStore, name: &str) -> PutOutcome {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.put(policy(name, 20), WriteCondition::Any).await {
            Ok(out) => return out,
            Err(StoreError::Unavailable(reason)) if Instant::now() < deadline => {
                eprintln!("retrying `{name}`: {reason}");
            }
            Err(e) => panic!("write `{name}` failed: {e}"),
        }
    }
}

/// The store talks to one member (a follower) of three. That member dies; meanwhile the others
/// take writes and compact past the revision the store's watch would resume from. When the
/// member comes back, the resumed watch is refused as compacted, the store lists again, and its
/// view is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_recovers_from_member_loss_and_compaction() {
    let mut etcd = EtcdCluster::for_test(3);
    let prefix = unique_prefix("compaction");
    let (lost, own, others) = a_follower(&etcd).await;
    let store = EtcdStore::connect(&[own], &prefix).await.unwrap();
    let writer = EtcdStore::connect(&others, &prefix).await.unwrap();
    let before = put_retrying(&writer, "before-loss").await;
    view_until(&store, "the first write", |s| s.version >= before.version).await;
    store.ready().await.unwrap();
    let lists_before = store.stats().lists;

    etcd.kill_member(lost).unwrap();
    // The store notices and says why (it stays ready: it serves its last view).
    let deadline = Instant::now() + Duration::from_secs(10);
    let reason = loop {
        if let Some(reason) = store.backend_health().degraded {
            store.ready().await.unwrap();
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "the store never noticed the loss"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reason.contains("etcd"), "{reason}");
    // It keeps serving the last view meanwhile.
    assert!(store
        .snapshot()
        .await
        .unwrap()
        .policies
        .contains_key("before-loss"));

    // Writes and a compaction while the store cannot see them.
    let during = put_retrying(&writer, "during-loss").await;
    writer
        .delete("before-loss", WriteCondition::Any)
        .await
        .unwrap();
    let mut client = Client::connect(&others, None).await.unwrap();
    let head = client.get("/", None).await.unwrap();
    let revision = head.header().unwrap().revision();
    client
        .compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();

    let restarted = Instant::now();
    let restart = tokio::task::spawn_blocking(move || {
        etcd.restart_member(lost).unwrap();
        etcd
    });
    let view = view_until(&store, "the writes made while its member was down", |s| {
        s.policies.contains_key("during-loss") && !s.policies.contains_key("before-loss")
    })
    .await;
    eprintln!(
        "etcd store: view complete {:?} after restarting its member",
        restarted.elapsed()
    );
    assert_eq!(view.policies.get("during-loss"), Some(&during.policy));
    let stats = store.stats();
    assert!(stats.compactions >= 1, "{stats:?}");
    assert!(stats.lists > lists_before, "{stats:?}");
    assert!(stats.losses >= 1, "{stats:?}");
    store.wait_ready(Duration::from_secs(10)).await.unwrap();
    let _etcd = restart.await.unwrap();
}

/// A single etcd restarts under the store: writes meanwhile fail as unavailable (a 503, never a
/// hang), readiness says why, and the store comes back by itself with its view intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_rides_out_an_etcd_restart() {
    let mut etcd = EtcdCluster::for_test(1);
    let mut options = EtcdOptions::new(&etcd.endpoints(), &unique_prefix("restart"));
    options.request_timeout = Duration::from_secs(1);
    let store = EtcdStore::start(options).await.unwrap();
    store.wait_ready(Duration::from_secs(10)).await.unwrap();
    let kept = store
        .put(policy("kept", 10), WriteCondition::Any)
        .await
        .unwrap();

    etcd.kill_member(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.backend_health().degraded.is_none() {
        assert!(
            Instant::now() < deadline,
            "the store never noticed etcd is gone"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let err = store
        .put(policy("refused", 10), WriteCondition::Any)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        store.snapshot().await.unwrap().policies.get("kept"),
        Some(&kept.policy)
    );

    let etcd = tokio::task::spawn_blocking(move || {
        etcd.restart_member(0).unwrap();
        etcd
    })
    .await
    .unwrap();
    let restarted = Instant::now();
    store.wait_ready(Duration::from_secs(15)).await.unwrap();
    eprintln!(
        "etcd store: ready {:?} after etcd answered again",
        restarted.elapsed()
    );
    let after = put_retrying(&store, "after-restart").await;
    let view = store.snapshot().await.unwrap();
    assert_eq!(view.policies.get("after-restart"), Some(&after.policy));
    assert_eq!(view.policies.get("kept"), Some(&kept.policy));
    assert!(store.stats().losses >= 1);
    drop(etcd);
}

/// Keys under the prefix that this store did not write (another program, a hand edit) are
/// skipped with a warning, never served and never fatal; a real write replaces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_values_are_skipped_not_served() {
    let etcd = EtcdCluster::for_test(1);
    let prefix = unique_prefix("garbage");
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();
    client
        .put(format!("{prefix}broken"), "{not json", None)
        .await
        .unwrap();
    let store = EtcdStore::connect(&etcd.endpoints(), &prefix)
        .await
        .unwrap();
    assert!(store.snapshot().await.unwrap().policies.is_empty());
    // Arriving through the watch, too.
    client
        .put(format!("{prefix}other-name"), policy_value("alpha"), None)
        .await
        .unwrap();
    let out = store
        .put(policy("marker", 1), WriteCondition::Any)
        .await
        .unwrap();
    let view = store.snapshot().await.unwrap();
    assert!(view.version >= out.version);
    assert_eq!(view.policies.keys().collect::<Vec<_>>(), ["marker"]);
    // A real write over the broken key replaces it.
    let fixed = store
        .put(policy("broken", 1), WriteCondition::Any)
        .await
        .unwrap();
    assert!(!fixed.created);
    assert_eq!(
        store.snapshot().await.unwrap().policies.get("broken"),
        Some(&fixed.policy)
    );
}

/// A policy as this store writes it, for keys written behind its back.
fn policy_value(name: &str) -> String {
    serde_json::to_string(&policy(name, 1).stored(boifi_server::store::now_ms(), 0)).unwrap()
}

/// Every replica runs the expiry sweep; on etcd their deletes are conditional on the expired
/// revision, so two replicas sweeping at once delete the policy exactly once, and a policy
/// replaced after it expired is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sweep_an_expired_policy_exactly_once() {
    let etcd = EtcdCluster::for_test(1);
    let (a, b) = two_stores(&etcd, "sweep").await;
    let short = lasting("short", 1, 1);
    let out = a.put(short.clone(), WriteCondition::Any).await.unwrap();
    view_until(&b, "the short policy", |s| s.version >= out.version).await;
    let expired_at = out.policy.status.unwrap().expires_at_ms.unwrap();
    let grace = Duration::from_secs(1);
    // The sweeps run "later" (the clock is an argument): no waiting for real expiry.
    let later = expired_at + 5_000;
    let audit = boifi_server::audit::AuditLog::default();
    let (x, y) = tokio::join!(
        boifi_server::app::sweep_once(&a, &audit, grace, later),
        boifi_server::app::sweep_once(&b, &audit, grace, later)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 1, "{x:?} {y:?}");
    view_until(&a, "the sweep on A", |s| s.policies.is_empty()).await;
    view_until(&b, "the sweep on B", |s| s.policies.is_empty()).await;

    // B's view still holds the expired revision when A replaces the policy: B's sweep must
    // not delete the replacement.
    let old = a.put(short.clone(), WriteCondition::Any).await.unwrap();
    view_until(&b, "the second short policy", |s| s.version >= old.version).await;
    let stale = b.snapshot().await.unwrap();
    let fresh = a
        .put(policy("short", 2), WriteCondition::Any)
        .await
        .unwrap();
    let err = b
        .delete(
            "short",
            WriteCondition::Revision(stale.policies["short"].status.unwrap().revision),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RevisionMismatch { .. }),
        "{err:?}"
    );
    view_until(&b, "the replacement", |s| s.version >= fresh.version).await;
    assert_eq!(
        b.snapshot().await.unwrap().policies.get("short"),
        Some(&fresh.policy)
    );
}

/// More policy text than gRPC's default 4 MiB message limit: the list (and a watch catching up
/// on as much) still loads. Each policy carries the largest abort body a policy may have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_larger_than_a_default_grpc_message_loads() {
    let etcd = EtcdCluster::for_test(1);
    let prefix = unique_prefix("large");
    let watching = EtcdStore::connect(&etcd.endpoints(), &prefix)
        .await
        .unwrap();
    let body = "x".repeat(boifi_core::policy::MAX_BODY_BYTES);
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();
    let count = 300;
    let mut txn_ops = Vec::new();
    for i in 0..count {
        let name = format!("large-{i:03}");
        let mut p = policy(&name, 1);
        p.spec.rules[0].fault.abort.as_mut().unwrap().body = Some(body.clone());
        let value = serde_json::to_string(&p.stored(boifi_server::store::now_ms(), 0)).unwrap();
        txn_ops.push(etcd_client::TxnOp::put(
            format!("{prefix}{name}"),
            value,
            None,
        ));
    }
    // A few transactions (etcd takes up to 1.5 MiB per request), all behind the store's back.
    for chunk in txn_ops.chunks(60) {
        client
            .txn(etcd_client::Txn::new().and_then(chunk.to_vec()))
            .await
            .unwrap();
    }
    let listing = EtcdStore::connect(&etcd.endpoints(), &prefix)
        .await
        .unwrap();
    let view = listing.snapshot().await.unwrap();
    assert_eq!(view.policies.len(), count);
    let total: usize = view
        .policies
        .values()
        .map(|p| serde_json::to_vec(p).unwrap().len())
        .sum();
    assert!(total > 4 * 1024 * 1024, "{total} bytes");
    view_until(&watching, "every large policy", |s| {
        s.policies.len() == count
    })
    .await;
}

/// While its member is down, more than a thousand revisions of changes pile up; the resumed
/// watch catches up in several batches (etcd cuts a backlog every 1 000 revisions). No view
/// published meanwhile may carry a version whose changes it does not hold yet, else a sidecar
/// holding that version would never be told about the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_a_long_backlog_never_publishes_a_version_ahead_of_its_content() {
    let mut etcd = EtcdCluster::for_test(3);
    let prefix = unique_prefix("backlog");
    let (lost, own, others) = a_follower(&etcd).await;
    let store = EtcdStore::connect(&[own], &prefix).await.unwrap();
    etcd.kill_member(lost).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.backend_health().degraded.is_none() {
        assert!(
            Instant::now() < deadline,
            "the store never noticed the loss"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 1 200 writes (one revision each) by 6 writers, each cycling over its own 5 names.
    let mut writers = Vec::new();
    for w in 0..6 {
        let others = others.clone();
        let prefix = prefix.clone();
        writers.push(tokio::spawn(async move {
            let mut client = Client::connect(&others, None).await.unwrap();
            let mut last = std::collections::BTreeMap::new();
            let mut revision = 0;
            for j in 0..200u32 {
                let name = format!("backlog-{w}-{}", j % 5);
                let percentage = j % 100 + 1;
                let value = serde_json::to_string(
                    &policy(&name, percentage).stored(boifi_server::store::now_ms(), 0),
                )
                .unwrap();
                let put = client
                    .put(format!("{prefix}{name}"), value, None)
                    .await
                    .unwrap();
                revision = put.header().unwrap().revision();
                last.insert(name, percentage);
            }
            (last, revision)
        }));
    }
    let mut expected = std::collections::BTreeMap::new();
    let mut last_revision = 0;
    for writer in writers {
        let (last, revision) = writer.await.unwrap();
        expected.extend(last);
        last_revision = last_revision.max(u64::try_from(revision).unwrap());
    }

    // Record every view the store publishes while it catches up.
    let mut rx = store.subscribe();
    let recorder = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let view = rx.borrow_and_update().clone();
            let done = view.version >= last_revision;
            seen.push(view);
            if done {
                return seen;
            }
            if rx.changed().await.is_err() {
                return seen;
            }
        }
    });
    let restart = tokio::task::spawn_blocking(move || {
        etcd.restart_member(lost).unwrap();
        etcd
    });
    let seen = tokio::time::timeout(Duration::from_secs(30), recorder)
        .await
        .expect("the store never caught up")
        .unwrap();
    let last = seen.last().unwrap();
    assert_eq!(
        last.version, last_revision,
        "the version is the last change"
    );
    assert_eq!(last.policies.len(), expected.len());
    for (name, percentage) in &expected {
        assert_eq!(
            last.policies[name].spec,
            policy(name, *percentage).spec,
            "{name}"
        );
    }
    // Versions only grow, and each names exactly the content: no two different views share one.
    for pair in seen.windows(2) {
        assert!(pair[0].version <= pair[1].version);
        if pair[0].version == pair[1].version {
            assert_eq!(pair[0].policies, pair[1].policies);
        }
    }
    assert!(
        seen.iter()
            .filter(|v| v.version == last_revision)
            .all(|v| v.policies.len() == expected.len()),
        "a view carried the final version before holding every change"
    );
    assert!(store.stats().event_batches >= 2, "{:?}", store.stats());
    store.wait_ready(Duration::from_secs(10)).await.unwrap();
    let _etcd = restart.await.unwrap();
}

/// Freezes the member `store` uses (SIGSTOP), runs `write` (its first attempt hangs there and
/// goes to another member after the attempt timeout), then `after` on a live member, thaws the
/// member and returns once it has handled what it held (a write through it alone went through).
async fn with_the_used_member_frozen<T>(
    etcd: &mut EtcdCluster,
    store: &EtcdStore,
    write: impl std::future::Future<Output = T>,
    after: impl std::future::Future<Output = ()>,
) -> T {
    let used = store.endpoint_in_use().to_owned();
    let index = etcd
        .members()
        .iter()
        .position(|m| m.client_url() == used)
        .unwrap();
    let attempt_timeout = EtcdOptions::new(&[""], "/").attempt_timeout;
    etcd.stop_member(index).unwrap();
    let started = Instant::now();
    let answer = write.await;
    assert!(
        started.elapsed() >= attempt_timeout,
        "the first attempt did not go to the frozen member ({:?})",
        started.elapsed()
    );
    after.await;
    etcd.continue_member(index).unwrap();
    let mut thawed = Client::connect([used.as_str()], None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match thawed.put("/boifi-test/thawed-probe", "x", None).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "the thawed member: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answer
}

/// How many times the key of `name` was written since it was created (etcd's `version`), and
/// its revision; `None` if it does not exist.
async fn written(client: &mut Client, prefix: &str, name: &str) -> Option<(i64, u64)> {
    let got = client.get(format!("{prefix}{name}"), None).await.unwrap();
    got.kvs()
        .first()
        .map(|kv| (kv.version(), u64::try_from(kv.mod_revision()).unwrap()))
}

/// Every kind of write, its first attempt hung on a frozen member and sent again to another:
/// each is acknowledged with the right outcome, and when the frozen member wakes and handles
/// the stale attempt, that attempt's condition fails, so nothing is applied twice and no later
/// write is undone. An unconditioned write would put its old value back over the next write
/// (or delete the key created again after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_retried_past_a_hung_member_is_applied_once() {
    let mut etcd = EtcdCluster::for_test(3);
    let prefix = unique_prefix("hung");
    let store = EtcdStore::connect(&etcd.endpoints(), &prefix)
        .await
        .unwrap();
    put_retrying(&store, "warm-up").await;
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();

    // Create: acknowledged as created; a replace follows.
    let mut replaced = None;
    let created = with_the_used_member_frozen(
        &mut etcd,
        &store,
        store.put(policy("once", 10), WriteCondition::MustNotExist),
        async {
            replaced = Some(
                store
                    .put(policy("once", 30), WriteCondition::Any)
                    .await
                    .unwrap(),
            );
        },
    )
    .await
    .unwrap();
    assert!(created.created);
    let replaced = replaced.unwrap();
    assert_eq!(
        written(&mut client, &prefix, "once").await,
        Some((2, replaced.version))
    );

    // Create-or-replace: the stale attempt must not put 40 back over 50.
    let mut next = None;
    let first = with_the_used_member_frozen(
        &mut etcd,
        &store,
        store.put(policy("once", 40), WriteCondition::Any),
        async {
            next = Some(
                store
                    .put(policy("once", 50), WriteCondition::Any)
                    .await
                    .unwrap(),
            );
        },
    )
    .await
    .unwrap();
    assert!(!first.created);
    let next = next.unwrap();
    assert_eq!(
        written(&mut client, &prefix, "once").await,
        Some((4, next.version))
    );

    // If-Match: the same.
    let mut last = None;
    let matched = with_the_used_member_frozen(
        &mut etcd,
        &store,
        store.put(policy("once", 60), WriteCondition::Revision(next.version)),
        async {
            last = Some(
                store
                    .put(policy("once", 70), WriteCondition::Any)
                    .await
                    .unwrap(),
            );
        },
    )
    .await
    .unwrap();
    assert!(matched.version > next.version);
    let last = last.unwrap();
    assert_eq!(
        written(&mut client, &prefix, "once").await,
        Some((6, last.version))
    );

    // Delete: the stale attempt must not delete the policy created again after it.
    let mut again = None;
    let deleted = with_the_used_member_frozen(
        &mut etcd,
        &store,
        store.delete("once", WriteCondition::Any),
        async {
            again = Some(
                store
                    .put(policy("once", 80), WriteCondition::MustNotExist)
                    .await
                    .unwrap(),
            );
        },
    )
    .await
    .unwrap();
    assert_eq!(deleted.policy, last.policy);
    let again = again.unwrap();
    assert_eq!(
        written(&mut client, &prefix, "once").await,
        Some((1, again.version))
    );
    let view = view_until(&store, "the last write", |s| s.version >= again.version).await;
    assert_eq!(view.policies.get("once"), Some(&again.policy));
    assert!(store.stats().failovers >= 4, "{:?}", store.stats());
}

/// An idle watch stays on its member: every silent second the follower asks for a progress
/// notification, the member answers, and nothing fails over or is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_answers_its_silence_checks_and_stays_put() {
    let etcd = EtcdCluster::for_test(3);
    let store = EtcdStore::connect(&etcd.endpoints(), &unique_prefix("idle"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.stats().progress_notifications < 3 {
        assert!(
            Instant::now() < deadline,
            "no progress notifications: {:?}",
            store.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = store.stats();
    assert_eq!(
        (stats.failovers, stats.losses, stats.retries),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(store.backend_health().degraded.is_none());
}

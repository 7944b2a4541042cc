//! The storage conformance suite: every backend runs [`run`] with a factory of fresh, empty
//! stores (GreptimeDB's `kv_backend/test.rs` pattern). Add a backend by adding one `#[tokio::test]`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use boifi_core::policy::{parse_policy_json, PolicyDocument};
use boifi_server::sidecars::{SidecarChanges, SidecarRecord};
use boifi_server::store::{PolicyStore, StoreError, WriteCondition};

/// A valid policy named `name`; `percentage` tells versions of it apart.
pub fn policy(name: &str, percentage: u32) -> PolicyDocument {
    parse_policy_json(&format!(
        r#"{{"metadata": {{"name": "{name}"}},
            "spec": {{"selector": {{"service": "frontend", "namespace": "demo"}},
                      "rules": [{{"match": {{"path": {{"prefix": "/"}}}},
                                  "fault": {{"percentage": {percentage},
                                             "abort": {{"httpStatus": 503}}}}}}]}}}}"#
    ))
    .unwrap()
}

/// [`policy`] that expires `seconds` after it is stored.
pub fn lasting(name: &str, percentage: u32, seconds: u64) -> PolicyDocument {
    let mut p = policy(name, percentage);
    p.spec.rules[0].fault.duration_seconds = seconds;
    p
}

/// The refusal of a write whose `If-Match` revision `expected` is not the stored `actual`.
pub fn mismatch(name: &str, expected: u64, actual: Option<u64>) -> StoreError {
    StoreError::RevisionMismatch {
        name: name.into(),
        expected,
        actual,
    }
}

/// The refusal of a write to a policy the store does not hold.
fn not_found(name: &str) -> StoreError {
    StoreError::NotFound { name: name.into() }
}

/// Runs every check, each on a fresh store from `factory`.
pub async fn run<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn PolicyStore>>,
{
    empty_store(factory().await).await;
    put_then_get(factory().await).await;
    replace_keeps_one_and_bumps_version(factory().await).await;
    strict_create(factory().await).await;
    revision_conditions(factory().await).await;
    delete_semantics(factory().await).await;
    delete_all(factory().await).await;
    status_is_the_stores(factory().await).await;
    watch_sees_every_write(factory().await).await;
    failed_writes_change_nothing(factory().await).await;
    concurrent_creates_one_wins(factory().await).await;
    sidecar_reports_are_shared(factory().await).await;
}

/// A replica name no other check (or store on the same etcd) uses.
fn unique_replica() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("conformance-{}-{n}", std::process::id())
}

async fn sidecar_reports_are_shared(store: Arc<dyn PolicyStore>) {
    let replica = unique_replica();
    let record = |pod: &str, version: u64| {
        let mut identity = boifi_core::identity::Identity::for_service("cart", "demo");
        identity.pod = Some(pod.to_owned());
        SidecarRecord {
            identity,
            applied: Some(version),
            refused: None,
            last_seen_ms: 1_000,
            wait_ms: 30_000,
            destinations: None,
            namespaces: std::collections::BTreeSet::new(),
        }
    };
    let mine = |all: Vec<(String, String, SidecarRecord)>| {
        let mut mine: Vec<(String, SidecarRecord)> = all
            .into_iter()
            .filter(|(r, _, _)| *r == replica)
            .map(|(_, k, r)| (k, r))
            .collect();
        mine.sort_by(|a, b| a.0.cmp(&b.0));
        mine
    };
    let put = SidecarChanges {
        put: vec![
            ("k/a".into(), record("a", 1)),
            ("k/b".into(), record("b", 1)),
        ],
        delete: vec![],
    };
    store.share_sidecars(&replica, &put).await.unwrap();
    let shared = mine(store.shared_sidecars().await.unwrap());
    assert_eq!(shared, put.put);

    // A refusal travels with the record (version and reason), so every replica can list it.
    let refusing = SidecarRecord {
        refused: Some(boifi_core::wire::Refusal::new(3, "over the limit")),
        ..record("b", 2)
    };
    // A waypoint's kind, destinations count and namespaces travel with its record too.
    let mut waypoint = record("waypoint-7d9f", 2);
    waypoint.identity.proxy = boifi_core::identity::ProxyKind::Waypoint;
    waypoint.destinations = Some(5);
    waypoint.namespaces.insert("shop".to_owned());
    let change = SidecarChanges {
        put: vec![("k/b".into(), refusing), ("k/w".into(), waypoint)],
        delete: vec!["k/a".into(), "k/never-shared".into()],
    };
    store.share_sidecars(&replica, &change).await.unwrap();
    let shared = mine(store.shared_sidecars().await.unwrap());
    assert_eq!(shared, change.put);
    // Sharing sidecars is not a policy change: no new config version.
    let version = store.snapshot().await.unwrap().version;
    store.share_sidecars(&replica, &put).await.unwrap();
    assert_eq!(store.snapshot().await.unwrap().version, version);
}

async fn empty_store(store: Arc<dyn PolicyStore>) {
    store.ready().await.unwrap();
    let s = store.snapshot().await.unwrap();
    assert!(s.policies.is_empty());
    assert_eq!(store.delete_all().await.unwrap(), 0);
    assert_eq!(store.snapshot().await.unwrap().version, s.version);
}

async fn put_then_get(store: Arc<dyn PolicyStore>) {
    let before = store.snapshot().await.unwrap().version;
    let out = store
        .put(policy("alpha", 10), WriteCondition::Any)
        .await
        .unwrap();
    assert!(out.created);
    assert!(out.version > before);
    let status = out.policy.status.unwrap();
    assert_eq!(status.revision, out.version);
    let s = store.snapshot().await.unwrap();
    assert!(s.version >= out.version);
    assert_eq!(s.policies.get("alpha"), Some(&out.policy));
    assert_eq!(s.policies.len(), 1);
}

async fn replace_keeps_one_and_bumps_version(store: Arc<dyn PolicyStore>) {
    let first = store
        .put(policy("alpha", 10), WriteCondition::Any)
        .await
        .unwrap();
    let second = store
        .put(policy("alpha", 20), WriteCondition::Any)
        .await
        .unwrap();
    assert!(!second.created);
    assert!(second.version > first.version);
    let s = store.snapshot().await.unwrap();
    assert_eq!(s.policies.len(), 1);
    assert_eq!(s.policies.get("alpha"), Some(&second.policy));
    assert_eq!(second.policy.spec, policy("alpha", 20).spec);
}

async fn strict_create(store: Arc<dyn PolicyStore>) {
    let first = store
        .put(policy("alpha", 10), WriteCondition::MustNotExist)
        .await
        .unwrap();
    assert!(first.created);
    let err = store
        .put(policy("alpha", 20), WriteCondition::MustNotExist)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::AlreadyExists {
            name: "alpha".into()
        }
    );
    let s = store.snapshot().await.unwrap();
    assert_eq!(s.policies.get("alpha"), Some(&first.policy));
}

async fn revision_conditions(store: Arc<dyn PolicyStore>) {
    let first = store
        .put(policy("alpha", 10), WriteCondition::Any)
        .await
        .unwrap();
    let rev = first.version;
    let stale = rev + 1000;
    let err = store
        .put(policy("alpha", 20), WriteCondition::Revision(stale))
        .await
        .unwrap_err();
    assert_eq!(err, mismatch("alpha", stale, Some(rev)));
    let second = store
        .put(policy("alpha", 20), WriteCondition::Revision(rev))
        .await
        .unwrap();
    assert!(!second.created);
    // The old revision no longer matches.
    let err = store
        .delete("alpha", WriteCondition::Revision(rev))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RevisionMismatch { actual: Some(a), .. } if a == second.version)
    );
    // A revision condition on a missing policy.
    let err = store
        .put(policy("beta", 20), WriteCondition::Revision(rev))
        .await
        .unwrap_err();
    assert_eq!(err, mismatch("beta", rev, None));
    let out = store
        .delete("alpha", WriteCondition::Revision(second.version))
        .await
        .unwrap();
    assert_eq!(out.policy, second.policy);
    assert!(store.snapshot().await.unwrap().policies.is_empty());
}

async fn delete_semantics(store: Arc<dyn PolicyStore>) {
    let err = store
        .delete("ghost", WriteCondition::Any)
        .await
        .unwrap_err();
    assert_eq!(err, not_found("ghost"));
    let put = store
        .put(policy("alpha", 10), WriteCondition::Any)
        .await
        .unwrap();
    store
        .put(policy("beta", 10), WriteCondition::Any)
        .await
        .unwrap();
    let out = store.delete("alpha", WriteCondition::Any).await.unwrap();
    assert_eq!(out.policy, put.policy);
    let s = store.snapshot().await.unwrap();
    assert!(s.version >= out.version);
    assert!(!s.policies.contains_key("alpha"));
    assert!(s.policies.contains_key("beta"));
    let err = store
        .delete("alpha", WriteCondition::Any)
        .await
        .unwrap_err();
    assert_eq!(err, not_found("alpha"));
}

async fn delete_all(store: Arc<dyn PolicyStore>) {
    for (i, name) in ["alpha", "beta", "gamma"].into_iter().enumerate() {
        store
            .put(policy(name, 10 + i as u32), WriteCondition::Any)
            .await
            .unwrap();
    }
    let before = store.snapshot().await.unwrap().version;
    assert_eq!(store.delete_all().await.unwrap(), 3);
    let s = store.snapshot().await.unwrap();
    assert!(s.policies.is_empty());
    assert!(s.version > before);
    assert_eq!(store.delete_all().await.unwrap(), 0);
}

async fn status_is_the_stores(store: Arc<dyn PolicyStore>) {
    let mut p = lasting("alpha", 10, 60);
    p.status = Some(boifi_core::policy::PolicyStatus {
        stored_at_ms: 1,
        expires_at_ms: Some(2),
        revision: 999_999,
        guard: None,
    });
    let start = boifi_server::store::now_ms();
    let out = store.put(p, WriteCondition::Any).await.unwrap();
    let end = boifi_server::store::now_ms();
    let status = out.policy.status.unwrap();
    assert!(
        status.stored_at_ms >= start && status.stored_at_ms <= end,
        "{status:?}"
    );
    assert_eq!(status.expires_at_ms, Some(status.stored_at_ms + 60_000));
    assert_eq!(status.revision, out.version);
}

async fn watch_sees_every_write(store: Arc<dyn PolicyStore>) {
    let mut rx = store.subscribe();
    let out = store
        .put(policy("alpha", 10), WriteCondition::Any)
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if rx.borrow_and_update().version >= out.version {
                return rx.borrow().clone();
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the watch did not publish the write");
    assert_eq!(seen.policies.get("alpha"), Some(&out.policy));
    let del = store.delete("alpha", WriteCondition::Any).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if rx.borrow_and_update().version >= del.version {
                assert!(rx.borrow().policies.is_empty());
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the watch did not publish the delete");
}

async fn failed_writes_change_nothing(store: Arc<dyn PolicyStore>) {
    store
        .put(policy("alpha", 10), WriteCondition::Any)
        .await
        .unwrap();
    let before = store.snapshot().await.unwrap();
    let _ = store
        .put(policy("alpha", 20), WriteCondition::MustNotExist)
        .await
        .unwrap_err();
    let _ = store
        .put(policy("alpha", 20), WriteCondition::Revision(u64::MAX))
        .await
        .unwrap_err();
    let _ = store
        .delete("ghost", WriteCondition::Any)
        .await
        .unwrap_err();
    let _ = store
        .delete("alpha", WriteCondition::Revision(u64::MAX))
        .await
        .unwrap_err();
    let after = store.snapshot().await.unwrap();
    assert_eq!(before, after);
}

async fn concurrent_creates_one_wins(store: Arc<dyn PolicyStore>) {
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .put(policy("race", i + 1), WriteCondition::MustNotExist)
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
    // Versions are distinct and increasing under concurrent writers.
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .put(policy(&format!("p{i}-x"), 5), WriteCondition::Any)
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 8);
    assert_eq!(store.snapshot().await.unwrap().policies.len(), 9);
}

#[tokio::test]
async fn memory_store_conforms() {
    run(|| async {
        Arc::new(boifi_server::store::local::LocalStore::in_memory()) as Arc<dyn PolicyStore>
    })
    .await;
}

#[tokio::test]
async fn embedded_store_conforms() {
    // Each store gets its own directory; the directories live until the test ends.
    let dirs = std::sync::Mutex::new(Vec::new());
    run(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        dirs.lock().unwrap().push(dir);
        async move {
            Arc::new(
                boifi_server::store::local::LocalStore::open(&path)
                    .await
                    .unwrap(),
            ) as Arc<dyn PolicyStore>
        }
    })
    .await;
}

#[tokio::test]
async fn embedded_store_keeps_policies_and_version_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (version, stored) = {
        let store = boifi_server::store::local::LocalStore::open(dir.path())
            .await
            .unwrap();
        for name in ["alpha", "beta"] {
            store
                .put(policy(name, 10), WriteCondition::Any)
                .await
                .unwrap();
        }
        store.delete("beta", WriteCondition::Any).await.unwrap();
        let s = store.snapshot().await.unwrap();
        (s.version, s.policies.clone())
    };
    let store = boifi_server::store::local::LocalStore::open(dir.path())
        .await
        .unwrap();
    let s = store.snapshot().await.unwrap();
    assert_eq!(s.version, version);
    assert_eq!(s.policies, stored);
    let next = store
        .put(policy("gamma", 10), WriteCondition::Any)
        .await
        .unwrap();
    assert!(next.version > version);
}

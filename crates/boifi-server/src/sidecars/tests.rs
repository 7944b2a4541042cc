use super::*;
use boifi_core::identity::ProxyKind;

fn pod(name: &str) -> Identity {
    let mut identity = Identity::for_service("cart", "demo");
    identity.pod = Some(name.to_owned());
    identity
}

/// The query of pod `name` that applied `version` and may wait `wait_ms`.
fn poll(name: &str, version: Option<u64>, wait_ms: u64) -> ConfigQuery {
    ConfigQuery {
        identity: pod(name),
        version,
        wait_ms: Some(wait_ms),
        ..ConfigQuery::default()
    }
}

/// The same query with a refusal of `refused` for `reason`.
fn refusing(name: &str, version: Option<u64>, refused: u64, reason: &str) -> ConfigQuery {
    ConfigQuery {
        refused: Some(Refusal::new(refused, reason)),
        ..poll(name, version, 30_000)
    }
}

#[test]
fn a_full_registry_evicts_the_oldest_and_counts_it() {
    let registry = SidecarRegistry::with_limit(3);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        registry.seen(&poll(name, Some(1), 0), 1_000 + i as u64);
    }
    // `a` polls again: `b` is now the least recently seen.
    registry.seen(&poll("a", Some(1), 0), 2_000);
    registry.seen(&poll("d", Some(1), 0), 2_001);
    let mut pods: Vec<String> = registry
        .list()
        .into_iter()
        .filter_map(|(_, r)| r.identity.pod)
        .collect();
    pods.sort();
    assert_eq!(pods, ["a", "c", "d"]);
    assert_eq!(registry.evictions(), 1);
}

#[test]
fn a_sidecar_ages_out_after_its_wait_and_the_grace() {
    let registry = SidecarRegistry::default();
    registry.seen(&poll("a", Some(1), 30_000), 0);
    let stale_at = 30_000 + duration_ms(AGE_OUT);
    registry.age_out(stale_at - 1);
    assert_eq!(registry.len(), 1);
    registry.age_out(stale_at);
    assert!(registry.is_empty());
}

#[test]
fn only_changes_and_due_refreshes_are_shared_never_each_poll() {
    let registry = SidecarRegistry::default();
    registry.seen(&poll("a", Some(1), 30_000), 0);
    assert_eq!(registry.take_changes(0).put.len(), 1);
    // Polls at the same version: nothing to share until the refresh is due.
    for t in 1..100 {
        registry.seen(&poll("a", Some(1), 30_000), t * 100);
        assert!(registry.take_changes(t * 100).is_empty());
    }
    // A new version is shared at the next flush.
    registry.seen(&poll("a", Some(2), 30_000), 10_000);
    let changes = registry.take_changes(10_000);
    assert_eq!(changes.put.len(), 1);
    assert_eq!(changes.put.first().map(|(_, r)| r.applied), Some(Some(2)));
    // Unchanged, it is refreshed once REFRESH after it was last shared.
    let refresh = duration_ms(REFRESH);
    registry.seen(&poll("a", Some(2), 30_000), 10_000 + refresh - 1);
    assert!(registry.take_changes(10_000 + refresh - 1).is_empty());
    assert_eq!(registry.take_changes(10_000 + refresh).put.len(), 1);
}

#[test]
fn a_shared_record_that_ages_out_is_deleted_and_a_failed_flush_is_resent() {
    let registry = SidecarRegistry::default();
    registry.seen(&poll("a", Some(1), 0), 0);
    let changes = registry.take_changes(0);
    registry.requeue(changes);
    assert_eq!(registry.take_changes(1).put.len(), 1);
    let changes = registry.take_changes(duration_ms(AGE_OUT));
    assert_eq!(changes.delete, ["demo/pod/a"]);
}

#[test]
fn merged_keeps_the_most_recent_report_of_each_sidecar() {
    let record = |pod_name: &str, seen: u64| SidecarRecord {
        identity: pod(pod_name),
        applied: Some(1),
        refused: None,
        last_seen_ms: seen,
        wait_ms: 30_000,
        destinations: None,
        namespaces: BTreeSet::new(),
    };
    let local = vec![("demo/pod/a".to_owned(), record("a", 500))];
    let shared = vec![
        ("r2".to_owned(), "demo/pod/a".to_owned(), record("a", 400)),
        ("r2".to_owned(), "demo/pod/b".to_owned(), record("b", 450)),
        ("r3".to_owned(), "demo/pod/b".to_owned(), record("b", 480)),
        // Aged out long ago: left out.
        (
            "r3".to_owned(),
            "demo/pod/c".to_owned(),
            SidecarRecord {
                wait_ms: 0,
                ..record("c", 0)
            },
        ),
    ];
    let now = 100_000;
    let merged = merged(local, "r1", shared, now);
    let seen: Vec<(Option<String>, Option<String>)> = merged
        .into_iter()
        .map(|s| (s.identity.pod, s.replica))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("a".to_owned()), Some("r1".to_owned())),
            (Some("b".to_owned()), Some("r3".to_owned())),
        ]
    );
}

#[test]
fn what_the_request_says_is_recorded_and_a_changed_refusal_is_shared() {
    let registry = SidecarRegistry::default();
    registry.seen(&poll("a", Some(1), 30_000), 0);
    registry.take_changes(0);
    // Version 2 arrived and was refused: the record keeps 1 as applied and says why.
    registry.seen(&refusing("a", Some(1), 2, "over the limit"), 100);
    assert_eq!(
        shared(registry.take_changes(100)),
        [(Some(1), Some(Refusal::new(2, "over the limit")))]
    );
    // The same refusal again on every poll is no change.
    registry.seen(&refusing("a", Some(1), 2, "over the limit"), 200);
    assert!(registry.take_changes(200).is_empty());
    // Another reason, or a set applied, is.
    registry.seen(&refusing("a", Some(1), 2, "cannot decode"), 300);
    assert_eq!(registry.take_changes(300).put.len(), 1);
    registry.seen(&poll("a", Some(3), 30_000), 400);
    assert_eq!(shared(registry.take_changes(400)), [(Some(3), None)]);
}

/// The applied version and refusal of each record a flush sends.
fn shared(changes: SidecarChanges) -> Vec<(Option<u64>, Option<Refusal>)> {
    changes
        .put
        .into_iter()
        .map(|(_, r)| (r.applied, r.refused))
        .collect()
}

#[test]
fn a_record_shared_before_refusals_reads_and_new_ones_keep_its_keys() {
    let old = r#"{"identity":{"service":"cart","namespace":"demo","pod":"a","labels":{}},
        "version":4,"last_seen_ms":10,"wait_ms":30000}"#;
    let record: SidecarRecord = serde_json::from_str(old).unwrap();
    assert_eq!((record.applied, &record.refused), (Some(4), &None));
    // Written before shared proxies: a sidecar, with no destinations and no namespaces.
    assert_eq!(record.identity.proxy, ProxyKind::Sidecar);
    assert_eq!((record.destinations, record.namespaces.len()), (None, 0));
    // What an older replica reads: `version` is still the applied version.
    let written = serde_json::to_value(SidecarRecord {
        refused: Some(Refusal::new(5, "cannot decode")),
        ..record
    })
    .unwrap();
    assert_eq!(written["version"], 4);
    assert_eq!(
        written["refused"],
        serde_json::json!({"version": 5, "reason": "cannot decode"})
    );
}

#[test]
fn a_shared_proxys_kind_destinations_and_namespaces_are_shared_and_a_new_count_queues_it() {
    let registry = SidecarRegistry::default();
    let waypoint = |destinations: u64| {
        let mut query = poll("waypoint-7d9f", Some(3), 30_000);
        query.identity.proxy = ProxyKind::Waypoint;
        query.destinations = Some(destinations);
        query.namespaces.insert("shop".to_owned());
        query
    };
    registry.seen(&waypoint(4), 0);
    let first = registry.take_changes(0);
    let [(_, record)] = first.put.as_slice() else {
        panic!("one record expected: {first:?}")
    };
    assert_eq!(record.identity.proxy, ProxyKind::Waypoint);
    assert_eq!(record.destinations, Some(4));
    let json = serde_json::to_value(record).unwrap();
    assert_eq!(json["identity"]["proxy"], "waypoint");
    assert_eq!(json["destinations"], 4);
    assert_eq!(json["namespaces"], serde_json::json!(["shop"]));
    let back: SidecarRecord = serde_json::from_value(json).unwrap();
    assert_eq!(&back, record);
    // The same poll again changes nothing; a new destinations count is shared at the next flush.
    registry.seen(&waypoint(4), 10);
    assert!(registry.take_changes(10).is_empty());
    registry.seen(&waypoint(5), 20);
    let changed = registry.take_changes(20);
    assert_eq!(
        changed
            .put
            .iter()
            .map(|(_, r)| r.destinations)
            .collect::<Vec<_>>(),
        [Some(5)]
    );
}

//! The sidecars seen on `/v1/config`, for `GET /v1/policies/status` (a rollout view like
//! `istioctl proxy-status`), and what of them this replica must share with the others.
//!
//! # Bounds
//! Anyone who can reach `/v1/config` can report a sidecar, so the registry holds at most
//! [`MAX_SIDECARS`]; when a new one arrives at the limit, the one closest to aging out (the least
//! recently seen, for equal long-poll waits) is evicted and counted. Every operation is a hash
//! lookup plus `O(log n)` work on ordered indexes: a new identity never scans the known ones.
//!
//! # Aging out
//! A sidecar that stopped polling is forgotten [`AGE_OUT`] after its last request was due to end
//! (the time it was seen plus the `wait` it asked for), so a sidecar inside a long-poll of up to
//! 300 s never looks stale.
//!
//! # Sharing
//! A sidecar polls one replica; to make the status true from any replica each replica shares
//! its records through the store ([`crate::store::PolicyStore::share_sidecars`]). A record is
//! queued for sharing when the sidecar's identity, applied version or refusal (or a shared
//! proxy's destinations count or namespaces) changes, and
//! refreshed at most once per [`REFRESH`] otherwise; never once per poll.
//!
//! # What is recorded
//! What the sidecar's request says: the version it applied (`version=`) and the version it
//! refused, with the reason (`refused=`, `reason=`). Never the version the server sends it: an
//! answer sent is not a set applied. The flusher ([`flush_loop`]) sends the
//! queue every [`FLUSH_INTERVAL`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boifi_core::identity::Identity;
use boifi_core::wire::{ConfigQuery, Refusal, SidecarReport};
use serde::{Deserialize, Serialize};

use crate::store::{now_ms, PolicyStore};

/// At most this many sidecars are remembered per replica.
pub const MAX_SIDECARS: usize = 10_000;
/// A sidecar is forgotten this long after its last request was due to end.
pub const AGE_OUT: Duration = Duration::from_secs(60);
/// A shared record whose sidecar is unchanged is rewritten at most this often, so other
/// replicas see its `last_seen` move and do not age it out.
pub const REFRESH: Duration = Duration::from_secs(30);
/// How often queued records are sent to the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What is known of one sidecar or shared proxy; also the value shared through the store (JSON:
/// records written before refusals were reported have no `refused` and read as none; records
/// written before shared proxies have no `identity.proxy`, `destinations` or `namespaces` and read
/// as a sidecar's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarRecord {
    /// Its identity as it reported it.
    pub identity: Identity,
    /// The config version it applied, as its last request said (`version=`); stored under
    /// `version`, the key every replica has read.
    #[serde(rename = "version")]
    pub applied: Option<u64>,
    /// The version it last refused and why, as its last request said (`refused=`, `reason=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Last request (Unix ms).
    pub last_seen_ms: u64,
    /// The long-poll wait of its last request (ms).
    pub wait_ms: u64,
    /// A shared proxy: the destination services it has compiled sets for (`destinations=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<u64>,
    /// A waypoint: the namespaces it serves besides its own (`namespaces=`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub namespaces: BTreeSet<String>,
}

impl SidecarRecord {
    /// When this record ages out (Unix ms).
    pub fn stale_at_ms(&self) -> u64 {
        self.last_seen_ms
            .saturating_add(self.wait_ms)
            .saturating_add(duration_ms(AGE_OUT))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The key of a sidecar: namespace/pod (or namespace/service when no pod is given).
pub fn key(identity: &Identity) -> String {
    let ns = identity.namespace.as_deref().unwrap_or("");
    match (&identity.pod, &identity.service) {
        (Some(pod), _) => format!("{ns}/pod/{pod}"),
        (None, Some(service)) => format!("{ns}/service/{service}"),
        (None, None) => {
            let labels: Vec<String> = identity
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{ns}/labels/{}", labels.join(","))
        }
    }
}

/// What a flush sends: records to write and keys to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidecarChanges {
    /// Records to write, by key.
    pub put: Vec<(String, SidecarRecord)>,
    /// Keys to delete (aged out or evicted).
    pub delete: Vec<String>,
}

impl SidecarChanges {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

#[derive(Debug)]
struct Entry {
    record: SidecarRecord,
    /// Its place in `by_stale`.
    stale_slot: (u64, u64),
    /// Its place in `by_refresh` (when it was last shared), if it was.
    refresh_slot: Option<(u64, u64)>,
    /// Queued for the next flush.
    queued: bool,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// `(stale_at_ms, seq)` → key: the next to age out or be evicted first.
    by_stale: BTreeMap<(u64, u64), String>,
    /// `(shared_at_ms, seq)` → key: the next to refresh first.
    by_refresh: BTreeMap<(u64, u64), String>,
    /// Keys whose identity or version changed since they were last shared.
    queue: Vec<String>,
    /// Keys to delete from the store.
    deleted: Vec<String>,
    seq: u64,
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_stale.remove(&entry.stale_slot);
            if let Some(slot) = entry.refresh_slot {
                self.by_refresh.remove(&slot);
                // Only what was shared needs deleting from the store.
                self.deleted.push(key.to_owned());
            }
        }
    }
}

/// The sidecars this replica has seen.
#[derive(Debug)]
pub struct SidecarRegistry {
    inner: Mutex<Inner>,
    limit: usize,
    evictions: AtomicU64,
}

impl Default for SidecarRegistry {
    fn default() -> Self {
        SidecarRegistry::with_limit(MAX_SIDECARS)
    }
}

impl SidecarRegistry {
    /// A registry of at most `limit` sidecars (at least 1).
    pub fn with_limit(limit: usize) -> SidecarRegistry {
        SidecarRegistry {
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a config request: the sidecar's identity, the version it applied and the one it
    /// refused, as `query` says, and the wait it asked for.
    pub fn seen(&self, query: &ConfigQuery, now_ms: u64) {
        let k = key(&query.identity);
        let record = SidecarRecord {
            identity: query.identity.clone(),
            applied: query.version,
            refused: query.refused.clone(),
            last_seen_ms: now_ms,
            wait_ms: query.wait_ms.unwrap_or(0),
            destinations: query.destinations,
            namespaces: query.namespaces.clone(),
        };
        let mut inner = self.lock();
        let seq = inner.next_seq();
        let stale_slot = (record.stale_at_ms(), seq);
        if let Some(entry) = inner.entries.get_mut(&k) {
            // What status shows; `last_seen_ms` and `wait_ms` move on every poll and are
            // refreshed every REFRESH instead.
            let changed = entry.record.identity != record.identity
                || entry.record.applied != record.applied
                || entry.record.refused != record.refused
                || entry.record.destinations != record.destinations
                || entry.record.namespaces != record.namespaces;
            let old_slot = std::mem::replace(&mut entry.stale_slot, stale_slot);
            entry.record = record;
            let enqueue = changed && !entry.queued;
            entry.queued |= changed;
            inner.by_stale.remove(&old_slot);
            inner.by_stale.insert(stale_slot, k.clone());
            if enqueue {
                inner.queue.push(k);
            }
            return;
        }
        while inner.entries.len() >= self.limit {
            let Some((_, oldest)) = inner.by_stale.pop_first() else {
                break;
            };
            inner.remove(&oldest);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        inner.by_stale.insert(stale_slot, k.clone());
        inner.entries.insert(
            k.clone(),
            Entry {
                record,
                stale_slot,
                refresh_slot: None,
                queued: true,
            },
        );
        inner.queue.push(k);
    }

    /// Forgets the sidecars that aged out by `now_ms` (cheap: only those are visited).
    pub fn age_out(&self, now_ms: u64) {
        let mut inner = self.lock();
        while let Some((&(stale_at, _), key)) = inner.by_stale.first_key_value() {
            if stale_at > now_ms {
                break;
            }
            let key = key.clone();
            inner.remove(&key);
        }
    }

    /// Takes what the next flush sends at `now_ms`: changed records, those not shared for
    /// [`REFRESH`], and deletions. [`SidecarRegistry::requeue`] puts them back if sending fails.
    pub fn take_changes(&self, now_ms: u64) -> SidecarChanges {
        self.age_out(now_ms);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let refresh = duration_ms(REFRESH);
        let mut keys = std::mem::take(&mut inner.queue);
        while let Some((&(shared_at, _), _)) = inner.by_refresh.first_key_value() {
            if shared_at.saturating_add(refresh) > now_ms {
                break;
            }
            let Some((_, key)) = inner.by_refresh.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.get_mut(&key) {
                entry.refresh_slot = None;
                if !entry.queued {
                    keys.push(key);
                }
            }
        }
        let mut put = Vec::with_capacity(keys.len());
        for key in keys {
            let seq = inner.next_seq();
            let Some(entry) = inner.entries.get_mut(&key) else {
                continue;
            };
            entry.queued = false;
            if let Some(slot) = entry.refresh_slot.replace((now_ms, seq)) {
                inner.by_refresh.remove(&slot);
            }
            let record = entry.record.clone();
            inner.by_refresh.insert((now_ms, seq), key.clone());
            put.push((key, record));
        }
        SidecarChanges {
            put,
            delete: std::mem::take(&mut inner.deleted),
        }
    }

    /// Puts back changes a flush could not send, so the next flush sends them again.
    pub fn requeue(&self, changes: SidecarChanges) {
        let mut inner = self.lock();
        for (key, _) in changes.put {
            if let Some(entry) = inner.entries.get_mut(&key) {
                if !entry.queued {
                    entry.queued = true;
                    inner.queue.push(key);
                }
            }
        }
        inner.deleted.extend(changes.delete);
    }

    /// Queues every record (the store lost what was shared: a rare, whole resync).
    pub fn requeue_all(&self) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        for (key, entry) in &mut inner.entries {
            if !entry.queued {
                entry.queued = true;
                inner.queue.push(key.clone());
            }
        }
    }

    /// Every known sidecar, by key.
    pub fn list(&self) -> Vec<(String, SidecarRecord)> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.record.clone()))
            .collect()
    }

    /// How many sidecars are known.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many sidecars were evicted because the registry was full.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

/// The status view's sidecars: this replica's own records and those the other replicas shared,
/// one per sidecar (the most recently seen), aged-out ones left out, ordered by key.
pub fn merged(
    local: Vec<(String, SidecarRecord)>,
    replica: &str,
    shared: Vec<(String, String, SidecarRecord)>,
    now_ms: u64,
) -> Vec<SidecarReport> {
    let mut by_key: BTreeMap<String, (String, SidecarRecord)> = BTreeMap::new();
    // A shared copy may be up to REFRESH older than its sidecar's last request.
    let slack = duration_ms(REFRESH);
    let shared = shared
        .into_iter()
        .filter(|(_, _, r)| r.stale_at_ms().saturating_add(slack) > now_ms);
    // Local records come last and win ties: they are this replica's freshest knowledge.
    let local = local.into_iter().map(|(k, r)| (replica.to_owned(), k, r));
    for (from, k, record) in shared.chain(local) {
        let newer = by_key
            .get(&k)
            .is_none_or(|(_, known)| record.last_seen_ms >= known.last_seen_ms);
        if newer {
            by_key.insert(k, (from, record));
        }
    }
    by_key
        .into_values()
        .map(|(from, r)| SidecarReport {
            identity: r.identity,
            applied: r.applied,
            refused: r.refused,
            last_seen_ms: r.last_seen_ms,
            replica: Some(from),
            destinations: r.destinations,
            namespaces: r.namespaces,
        })
        .collect()
}

/// Sends this replica's queued sidecar records to the store every [`FLUSH_INTERVAL`], forever;
/// a failed send is retried on the next round.
pub async fn flush_loop(
    registry: Arc<SidecarRegistry>,
    store: Arc<dyn PolicyStore>,
    replica: String,
) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let changes = registry.take_changes(now_ms());
        if changes.is_empty() {
            continue;
        }
        match store.share_sidecars(&replica, &changes).await {
            Ok(outcome) if outcome.resync => {
                tracing::warn!("shared sidecar reports were lost; sharing every one again");
                registry.requeue_all();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "sharing sidecar reports failed; retrying");
                registry.requeue(changes);
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Policy storage: one async trait, several backends, one conformance suite
//! (`tests/it/conformance.rs`) that every backend passes.
//!
//! # Contract every backend keeps
//! - **Version.** [`Snapshot::version`] is the global config version. It increases on every
//!   successful write (`put`, `delete`, a `delete_all` that deleted something) and never goes
//!   back, also across restarts. A failed or refused write leaves it unchanged. Backends may skip
//!   numbers (etcd: other keys share the revision counter).
//! - **Revision.** A stored policy's `status.revision` is the version of its last write
//!   (memory/embedded: the generation after the write; etcd: the key's `mod_revision`).
//!   [`PutOutcome::version`] and [`DeleteOutcome::version`] are the version after the write;
//!   for `put` it equals the new policy's revision.
//! - **Status.** The store, not the client, fills `status` through
//!   [`PolicyDocument::stored`]`(stored_at_ms, revision)`, `stored_at_ms` being the wall-clock
//!   time of the write (Unix ms). A client's status is replaced. `expires_at_ms` is therefore
//!   absolute and survives restarts.
//! - **Conditions.** [`WriteCondition::Any`]: create or replace (delete: the policy must exist,
//!   else [`StoreError::NotFound`]). [`WriteCondition::MustNotExist`]: `put` fails with
//!   [`StoreError::AlreadyExists`] if the name is taken. [`WriteCondition::Revision`]`(r)`: the
//!   write happens only if the policy exists with revision `r`, else
//!   [`StoreError::RevisionMismatch`] (with `actual: None` when it does not exist).
//! - **Watch.** After a successful write returns, [`PolicyStore::subscribe`] receivers see a
//!   snapshot whose version is at least the write's version (for etcd: of this replica's own
//!   writes; other replicas' writes arrive through the etcd watch).
//! - **Snapshots** are immutable (`Arc`); the current one is cheap to get.
//!
//! Backends: [`local::LocalStore`], the view in this process, either in memory only
//! ([`LocalStore::in_memory`](local::LocalStore::in_memory), `--storage memory`) or mirrored in a
//! crash-safe redb file in `--data-dir` ([`LocalStore::open`](local::LocalStore::open),
//! `--storage embedded`); `etcd::EtcdStore` (etcd v3; `EtcdStore::connect(endpoints,
//! prefix)`; keys `<prefix><name>`, prefix `/boifi/policies/`).

pub mod etcd;
pub mod local;
pub mod redb_file;

use std::collections::BTreeMap;
use std::sync::Arc;

use boifi_core::policy::PolicyDocument;

use crate::sidecars::{SidecarChanges, SidecarRecord};

/// The key prefix of policies in etcd.
pub const ETCD_PREFIX: &str = "/boifi/policies/";
/// The key prefix of shared sidecar reports in etcd.
pub const ETCD_SIDECAR_PREFIX: &str = "/boifi/sidecars/";

/// What [`PolicyStore::share_sidecars`] tells the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShareOutcome {
    /// What was shared before is gone (etcd: a new lease): share every record again.
    pub resync: bool,
}

/// A shared sidecar report: the replica that wrote it, the sidecar's key, the record.
pub type SharedSidecar = (String, String, SidecarRecord);

/// Sidecar reports kept in this process (memory and embedded stores: one replica, as before).
#[derive(Debug, Default)]
pub(crate) struct LocalShare {
    reports: std::sync::Mutex<BTreeMap<(String, String), SidecarRecord>>,
}

impl LocalShare {
    pub(crate) fn share(&self, replica: &str, changes: &SidecarChanges) -> ShareOutcome {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        for (key, record) in &changes.put {
            reports.insert((replica.to_owned(), key.clone()), record.clone());
        }
        for key in &changes.delete {
            reports.remove(&(replica.to_owned(), key.clone()));
        }
        ShareOutcome::default()
    }

    pub(crate) fn list(&self) -> Vec<SharedSidecar> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        reports
            .iter()
            .map(|((replica, key), record)| (replica.clone(), key.clone(), record.clone()))
            .collect()
    }
}

/// The full view: every stored policy (status filled) and the global config version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The global config version.
    pub version: u64,
    /// Every stored policy by name.
    pub policies: BTreeMap<String, PolicyDocument>,
}

/// When a write may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCondition {
    /// Always (create or replace; for delete: if it exists).
    Any,
    /// Only if no policy has the name (strict create).
    MustNotExist,
    /// Only if the policy exists with this revision (`If-Match`).
    Revision(u64),
}

/// What a successful `put` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// `true` if the name was new, `false` if an existing policy was replaced.
    pub created: bool,
    /// The policy as stored, status filled.
    pub policy: PolicyDocument,
    /// The config version after the write (= the policy's revision).
    pub version: u64,
}

/// What a successful `delete` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The policy as it was before the delete.
    pub policy: PolicyDocument,
    /// The config version after the write.
    pub version: u64,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No policy has this name.
    #[error("policy `{name}` does not exist")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// Strict create of a name that is taken.
    #[error("policy `{name}` already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// `If-Match` did not hold.
    #[error("policy `{name}` is at revision {}, not {expected}", fmt_revision(*.actual))]
    RevisionMismatch {
        /// The name.
        name: String,
        /// The revision the caller expected.
        expected: u64,
        /// The current revision; `None` if the policy does not exist.
        actual: Option<u64>,
    },
    /// The backend cannot be reached or is not ready (maps to 503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend failed or holds data it cannot read (maps to 500; details are logged only).
    #[error("store failure: {0}")]
    Backend(String),
}

fn fmt_revision(actual: Option<u64>) -> String {
    actual.map_or_else(|| "absent".to_owned(), |r| r.to_string())
}

/// Storage of policies. Implementations are shared as `Arc<dyn PolicyStore>`.
#[async_trait::async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    /// Current full view: every stored policy (status filled) and the global config version.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError>;
    /// Creates or replaces `policy` (by `metadata.name`) if `condition` holds.
    async fn put(
        &self,
        policy: PolicyDocument,
        condition: WriteCondition,
    ) -> Result<PutOutcome, StoreError>;
    /// Deletes the policy `name` if it exists and `condition` holds
    /// ([`WriteCondition::MustNotExist`] is not meaningful here and behaves as `Any`).
    async fn delete(
        &self,
        name: &str,
        condition: WriteCondition,
    ) -> Result<DeleteOutcome, StoreError>;
    /// Deletes every policy (the kill switch); returns how many were deleted.
    async fn delete_all(&self) -> Result<u64, StoreError>;
    /// Every change publishes a new `Arc<Snapshot>` here (`tokio::sync::watch`): long-polls
    /// wait on it.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Snapshot>>;
    /// Readiness: the view is loaded and can be served; `Err(reason)` otherwise. A view that
    /// lost its backend (etcd without quorum) is still ready: see [`PolicyStore::backend_health`].
    async fn ready(&self) -> Result<(), StoreError>;
    /// Shares `replica`'s sidecar reports with the other replicas: writes `changes.put`,
    /// deletes `changes.delete` (etcd: under the replica's lease, so they vanish with it).
    async fn share_sidecars(
        &self,
        replica: &str,
        changes: &SidecarChanges,
    ) -> Result<ShareOutcome, StoreError>;
    /// Every sidecar report shared by a live replica.
    async fn shared_sidecars(&self) -> Result<Vec<SharedSidecar>, StoreError>;
    /// Keys written or deleted by [`PolicyStore::share_sidecars`] so far (0 when nothing
    /// leaves the process).
    fn sidecar_writes(&self) -> u64 {
        0
    }
    /// Joins the election of the replica that evaluates guards as `replica`, once (later calls
    /// return the same channel): `true` on the channel while this replica leads. `None`: this
    /// backend has one replica, which always evaluates.
    fn guard_election(&self, _replica: &str) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
    /// The name of the replica that evaluates guards now (`None`: nobody leads, or one replica).
    async fn guard_leader(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// Whether writes can go through now, and the backend's failover counters (etcd).
    fn backend_health(&self) -> BackendHealth {
        BackendHealth::default()
    }
}

/// The backend's state beyond readiness, for `/v1/ready` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendHealth {
    /// Why writes are refused now (etcd unreachable or without quorum), while the last view is
    /// still served; `None` when the backend answers.
    pub degraded: Option<String>,
    /// Calls sent again after a failed attempt.
    pub retries: u64,
    /// Calls and streams moved to another etcd member after a failure.
    pub failovers: u64,
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Checks `condition` against the current revision of a policy (`None`: absent) for a `put`.
/// Shared by the memory and embedded backends.
pub(crate) fn check_put(
    name: &str,
    current: Option<u64>,
    condition: WriteCondition,
) -> Result<(), StoreError> {
    match (condition, current) {
        (WriteCondition::Any, _) => Ok(()),
        (WriteCondition::MustNotExist, None) => Ok(()),
        (WriteCondition::MustNotExist, Some(_)) => Err(StoreError::AlreadyExists {
            name: name.to_owned(),
        }),
        (WriteCondition::Revision(expected), actual) if actual == Some(expected) => Ok(()),
        (WriteCondition::Revision(expected), actual) => Err(StoreError::RevisionMismatch {
            name: name.to_owned(),
            expected,
            actual,
        }),
    }
}

/// Checks `condition` for a `delete` of a policy at revision `current` (`None`: absent).
pub(crate) fn check_delete(
    name: &str,
    current: Option<u64>,
    condition: WriteCondition,
) -> Result<(), StoreError> {
    match (condition, current) {
        (WriteCondition::Revision(expected), actual) if actual != Some(expected) => {
            Err(StoreError::RevisionMismatch {
                name: name.to_owned(),
                expected,
                actual,
            })
        }
        (_, None) => Err(StoreError::NotFound {
            name: name.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// A planned change: the new snapshot and what to persist.
#[derive(Debug)]
pub(crate) struct Plan<T> {
    /// The view after the change.
    pub(crate) next: Snapshot,
    /// What the operation reports.
    pub(crate) outcome: T,
}

/// Plans a `put` on `current` at `now_ms` (memory and embedded backends).
pub(crate) fn plan_put(
    current: &Snapshot,
    policy: PolicyDocument,
    condition: WriteCondition,
    now_ms: u64,
) -> Result<Plan<PutOutcome>, StoreError> {
    let name = policy.name().to_owned();
    let existing = current.policies.get(&name);
    check_put(&name, existing.map(revision_of), condition)?;
    let version = next_version(current.version)?;
    let stored = policy.stored(now_ms, version);
    let mut next = current.clone();
    next.version = version;
    let created = next.policies.insert(name, stored.clone()).is_none();
    Ok(Plan {
        next,
        outcome: PutOutcome {
            created,
            policy: stored,
            version,
        },
    })
}

/// Plans a `delete` of `name` on `current`.
pub(crate) fn plan_delete(
    current: &Snapshot,
    name: &str,
    condition: WriteCondition,
) -> Result<Plan<DeleteOutcome>, StoreError> {
    check_delete(name, current.policies.get(name).map(revision_of), condition)?;
    let version = next_version(current.version)?;
    let mut next = current.clone();
    next.version = version;
    let policy = next
        .policies
        .remove(name)
        .ok_or_else(|| StoreError::NotFound {
            name: name.to_owned(),
        })?;
    Ok(Plan {
        next,
        outcome: DeleteOutcome { policy, version },
    })
}

/// Plans a `delete_all` on `current`; `None` when there is nothing to delete (no new version).
pub(crate) fn plan_delete_all(current: &Snapshot) -> Result<Option<Plan<u64>>, StoreError> {
    if current.policies.is_empty() {
        return Ok(None);
    }
    let deleted = u64::try_from(current.policies.len()).unwrap_or(u64::MAX);
    Ok(Some(Plan {
        next: Snapshot {
            version: next_version(current.version)?,
            policies: BTreeMap::new(),
        },
        outcome: deleted,
    }))
}

fn revision_of(policy: &PolicyDocument) -> u64 {
    policy.status.map_or(0, |s| s.revision)
}

fn next_version(version: u64) -> Result<u64, StoreError> {
    version
        .checked_add(1)
        .ok_or_else(|| StoreError::Backend("config version overflow".to_owned()))
}

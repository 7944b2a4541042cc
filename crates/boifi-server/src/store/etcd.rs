//! The etcd v3 backend (`--storage etcd`): several server replicas share one etcd, and each
//! keeps an in-memory view of every policy current through an etcd watch.
//!
//! # Why `etcd-client`
//! The older `etcd-rs` crate is the one usually named, but it is barely maintained: its latest
//! release (1.0.1) is still built on `tonic` 0.9, which would put a second, old gRPC stack in
//! the server. [`etcd_client`] (etcdv3/etcd-client, 0.21) is maintained and follows current
//! `tonic`/`prost` (0.14); it speaks the plain v3 gRPC API that Debian 12's etcd 3.4.23 serves
//! (KV, Txn, Watch with `compact_revision` and cancel reasons, Compact; we avoid its 3.7-only
//! `get_stream`), balances over several endpoints and reconnects by itself. It compiles etcd's
//! `.proto` files at build time, so the build needs `protoc` and the well-known protobuf types
//! (Debian's `protobuf-compiler` and `libprotobuf-dev`, installed by `scripts/deps.sh`).
//!
//! # Layout
//! One key per policy: `<prefix><name>` (prefix [`super::ETCD_PREFIX`] unless configured). The
//! value is the policy JSON with its `status`: `stored_at_ms` is the writing replica's clock at
//! write time and `expires_at_ms` follows from it, so every replica and every sidecar agree on
//! expiry and nothing needs a timer. `status.revision` cannot be known before the transaction
//! commits; it is written as 0 and filled on every read from the key's `mod_revision` (which is
//! the header revision of the transaction that wrote it).
//!
//! # Writes
//! Every write is a transaction conditioned on what it expects the key to be, so that sending
//! it again after a lost answer can never apply it twice (an attempt applied late, by a hung
//! member that wakes up or a proposal that outlived its leader, fails its condition instead):
//! - create (`MustNotExist`): on `create_revision == 0`;
//! - create-or-replace (`Any`): on the revision this replica's view holds for the key (or its
//!   absence); when the key moved on, the transaction's `else` branch reads it and the write
//!   goes again on the revision read, up to [`MAX_WRITE_ROUNDS`] times;
//! - `Revision(r)` (`If-Match`): on `create_revision > 0 && mod_revision == r`, whose failure
//!   branch reads the key, so the mismatch reports the actual revision atomically;
//! - delete: like create-or-replace, on the revision the view holds (`If-Match`: on `r`).
//!
//! When a failed condition follows an attempt whose answer was lost ([`members::Answer`]), the
//! key read back tells which: it holds exactly the bytes this write wrote (the writer's clock
//! included), or, for a delete, the targeted revision is gone, so the lost attempt applied it
//! and the write is reported done; anything else is a real conflict. Deleting every policy is
//! one unconditioned range delete: it is sent again only when it certainly never left.
//!
//! The config version is an etcd revision: the header revision of the list that loaded the
//! view, then the revision of each change the watch applies (for a write, the header revision
//! of its transaction). Other keys share the counter, so versions skip numbers; they never go
//! back.
//!
//! A write returns once this replica's view has caught up with it (at most
//! [`EtcdOptions::view_wait`], 5 s), so a client that writes and then reads the same replica
//! sees its write. Every etcd call goes through [`members::Members`]: one client per member,
//! each attempt bounded by [`EtcdOptions::attempt_timeout`] (1.5 s), failing over to the next
//! member until [`EtcdOptions::request_timeout`] (5 s) from the operation's start. A write is
//! thus refused (503) within 5 s, and acknowledged within 10 s (5 s of etcd, 5 s of view).

//! # The view
//! A background task lists the prefix (getting the header revision `R`), publishes the view, and
//! watches the prefix from `R + 1`, applying every event and publishing each new
//! [`Snapshot`] through a [`tokio::sync::watch`] channel (long-polls wait on it). When etcd
//! cancels the watch, or reports that the revision to resume from was compacted, the task lists
//! again. When the connection is lost, the task (module `view`) resumes the watch on another member after the last revision it
//! applied (relisting if that revision has been compacted meanwhile), backing off exponentially
//! once every member failed. Meanwhile [`PolicyStore::snapshot`] keeps serving the last view and
//! the store stays ready ([`PolicyStore::backend_health`] says why it is degraded): sidecars
//! keep the configuration they have rather than lose it.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use boifi_core::policy::PolicyDocument;
use etcd_client::{
    Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod election;
mod members;
mod sidecars;
mod view;

use members::{Members, Retry};
use view::{maintain_view, Counters, Health, Shared};

pub use election::{DEFAULT_ELECTION_TTL, GUARD_ELECTION_NAME};
pub use sidecars::MAX_TXN_OPS;

use crate::sidecars::SidecarChanges;

use super::{
    now_ms, BackendHealth, DeleteOutcome, PolicyStore, PutOutcome, ShareOutcome, SharedSidecar,
    Snapshot, StoreError, WriteCondition, ETCD_PREFIX,
};

/// Largest gRPC message the view accepts (a full list, a watch batch catching up). gRPC's
/// default of 4 MiB is a few hundred large policies; etcd's own bound is its database quota.
const MAX_VIEW_MESSAGE_BYTES: usize = 1 << 30;

/// Default TTL of a replica's lease on its sidecar reports.
pub const DEFAULT_SIDECAR_LEASE_TTL: Duration = Duration::from_secs(10);

/// How the store reaches etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix of the policies; keys are `<prefix><name>`.
    pub prefix: String,
    /// Bound of one store operation on etcd (a write with its retries on other members, a
    /// list): past it the operation is refused as unavailable.
    pub request_timeout: Duration,
    /// Bound of one attempt on one member: past it the member is taken as hung and the
    /// attempt goes to the next member (if the operation may be retried).
    pub attempt_timeout: Duration,
    /// Bound of establishing a connection to one endpoint.
    pub connect_timeout: Duration,
    /// How long [`EtcdStore::connect`] waits for the first view (a new etcd cluster may take a
    /// while to elect its first leader; the manifests' startup probe allows 2 minutes).
    pub ready_timeout: Duration,
    /// How long a write waits for this replica's view to show it before returning anyway.
    pub view_wait: Duration,
    /// Key prefix of the shared sidecar reports (must not overlap `prefix`).
    pub sidecar_prefix: String,
    /// TTL of each replica's lease on its sidecar reports: how long a dead replica's reports
    /// outlive it.
    pub sidecar_lease_ttl: Duration,
    /// TTL of a replica's lease in the guard election: how long a killed replica keeps the
    /// guards before another takes them over (etcd raises it to its minimum, 2 s by default).
    pub election_ttl: Duration,
    /// The guard election's name (a key prefix outside the policy and sidecar prefixes).
    pub election_name: String,
}

impl EtcdOptions {
    /// Defaults for `endpoints` under the standard prefix [`ETCD_PREFIX`].
    pub fn with_default_prefix<E: AsRef<str>>(endpoints: &[E]) -> EtcdOptions {
        EtcdOptions::new(endpoints, ETCD_PREFIX)
    }

    /// Defaults for `endpoints` and `prefix`: 5 s operations, 1.5 s attempts on one member,
    /// 2 s connects, 2 minutes to the first view.
    pub fn new<E: AsRef<str>>(endpoints: &[E], prefix: &str) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.iter().map(|e| e.as_ref().to_owned()).collect(),
            prefix: prefix.to_owned(),
            request_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_millis(1_500),
            connect_timeout: Duration::from_secs(2),
            ready_timeout: Duration::from_secs(120),
            view_wait: Duration::from_secs(5),
            sidecar_prefix: super::ETCD_SIDECAR_PREFIX.to_owned(),
            sidecar_lease_ttl: DEFAULT_SIDECAR_LEASE_TTL,
            election_ttl: DEFAULT_ELECTION_TTL,
            election_name: GUARD_ELECTION_NAME.to_owned(),
        }
    }
}

/// Counters of the view's life, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EtcdStats {
    /// Full lists of the prefix (the first load included).
    pub lists: u64,
    /// Watches that ended because their revision had been compacted.
    pub compactions: u64,
    /// Watches that etcd canceled for another reason.
    pub cancels: u64,
    /// Connections lost (watch errors, failed lists).
    pub losses: u64,
    /// Watch event batches applied.
    pub event_batches: u64,
    /// Progress notifications received: the watch's member answered a silence check.
    pub progress_notifications: u64,
    /// etcd attempts sent again after a failed one.
    pub retries: u64,
    /// etcd attempts (and watch or keep-alive streams) moved to another member after a failure.
    pub failovers: u64,
    /// etcd calls that no member answered before their deadline.
    pub exhausted: u64,
}

/// Policies in etcd, with a watched in-memory view. Dropping the store stops its watch.
pub struct EtcdStore {
    members: Arc<Members>,
    sidecars: sidecars::SidecarShare,
    shared: Arc<Shared>,
    request_timeout: Duration,
    view_wait: Duration,
    task: JoinHandle<()>,
    election: election::Election,
    /// The guard election, once [`PolicyStore::guard_election`] started it.
    elected: std::sync::OnceLock<(watch::Receiver<bool>, JoinHandle<()>)>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.shared.prefix)
            .field("version", &self.shared.version())
            .field("health", &*self.shared.health.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.task.abort();
        if let Some((_, election)) = self.elected.get() {
            election.abort();
        }
    }
}

impl EtcdStore {
    /// Connects to `endpoints` with keys under `prefix` and waits until the view is loaded,
    /// logging why every few seconds. Fails with [`StoreError::Unavailable`] if etcd has not
    /// answered after 2 minutes ([`EtcdOptions::ready_timeout`]).
    pub async fn connect<E: AsRef<str>>(
        endpoints: &[E],
        prefix: &str,
    ) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect_with(EtcdOptions::new(endpoints, prefix)).await
    }

    /// [`EtcdStore::connect`] with every option.
    pub async fn connect_with(options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        const NOTE_EVERY: Duration = Duration::from_secs(5);
        let ready_timeout = options.ready_timeout;
        let store = EtcdStore::start(options).await?;
        let started = tokio::time::Instant::now();
        loop {
            let left = ready_timeout.saturating_sub(started.elapsed());
            match store.wait_ready(left.min(NOTE_EVERY)).await {
                Ok(()) => return Ok(store),
                Err(e) if started.elapsed() >= ready_timeout => return Err(e),
                Err(e) => tracing::warn!(reason = %e, "waiting for etcd"),
            }
        }
    }

    /// Starts the store without waiting for etcd: the view loads in the background and
    /// [`PolicyStore::ready`] tells when it is there. Fails only on bad options.
    pub async fn start(options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Unavailable(
                "no etcd endpoints given (`--etcd-endpoints`)".to_owned(),
            ));
        }
        if options.prefix.is_empty() {
            return Err(StoreError::Unavailable(
                "the etcd key prefix must not be empty".to_owned(),
            ));
        }
        // Sidecar reports under the policy prefix would be read as policies, and the reverse.
        if options.sidecar_prefix.is_empty()
            || options.sidecar_prefix.starts_with(&options.prefix)
            || options.prefix.starts_with(&options.sidecar_prefix)
        {
            return Err(StoreError::Unavailable(format!(
                "the etcd sidecar prefix `{}` must be non-empty and must not overlap the policy prefix `{}`",
                options.sidecar_prefix, options.prefix
            )));
        }
        let overlaps = |prefix: &str| {
            options.election_name.starts_with(prefix) || prefix.starts_with(&options.election_name)
        };
        if options.election_name.is_empty()
            || overlaps(&options.prefix)
            || overlaps(&options.sidecar_prefix)
        {
            return Err(StoreError::Unavailable(format!(
                "the etcd guard election name `{}` must be non-empty and must not overlap the policy prefix `{}` or the sidecar prefix `{}`",
                options.election_name, options.prefix, options.sidecar_prefix
            )));
        }
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // Detects a silently dead member under the watch. etcd refuses pings more often than
            // every 5 s (`--grpc-keepalive-min-time`), and on connections without a stream at
            // all (no `PermitWithoutStream`): pinging the idle connections to the other
            // members would earn them a `too_many_pings` GOAWAY.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false)
            // A member cut off from the leader cancels our watch instead of going silent.
            .with_require_leader(true);
        let members = Arc::new(
            Members::connect(
                &options.endpoints,
                &connect,
                options.attempt_timeout.min(options.request_timeout),
            )
            .await?,
        );
        let shared = Arc::new(Shared {
            prefix: options.prefix.clone(),
            view: watch::Sender::new(Arc::new(Snapshot::default())),
            health: watch::Sender::new(Health::Loading(format!(
                "loading the policies under `{}` from etcd",
                options.prefix
            ))),
            counters: Counters::default(),
        });
        let task = tokio::spawn(maintain_view(
            Arc::clone(&members),
            Arc::clone(&shared),
            options.request_timeout,
        ));
        let sidecars = sidecars::SidecarShare::new(
            Arc::clone(&members),
            options.sidecar_prefix.clone(),
            options.sidecar_lease_ttl,
            options.request_timeout,
        );
        let election = election::Election {
            name: options.election_name.clone(),
            replica: String::new(),
            ttl: options.election_ttl,
            request_timeout: options.request_timeout,
        };
        Ok(EtcdStore {
            members,
            sidecars,
            shared,
            request_timeout: options.request_timeout,
            view_wait: options.view_wait,
            task,
            election,
            elected: std::sync::OnceLock::new(),
        })
    }

    /// Waits up to `timeout` until the view is loaded and followed by a live watch; the reason
    /// if not.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), StoreError> {
        let mut rx = self.shared.health.subscribe();
        let became_ready = tokio::time::timeout(timeout, rx.wait_for(|h| *h == Health::Ready))
            .await
            .is_ok_and(|r| r.is_ok());
        if became_ready {
            return Ok(());
        }
        match &*self.shared.health.borrow() {
            Health::Ready => Ok(()),
            Health::Loading(reason) | Health::Lost(reason) => {
                Err(StoreError::Unavailable(reason.clone()))
            }
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The endpoint calls go to first now: the member that answered last.
    pub fn endpoint_in_use(&self) -> &str {
        self.members.endpoint(self.members.preferred())
    }

    /// Counters of the view's life.
    pub fn stats(&self) -> EtcdStats {
        let c = &self.shared.counters;
        EtcdStats {
            lists: c.lists.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            cancels: c.cancels.load(Ordering::Relaxed),
            losses: c.losses.load(Ordering::Relaxed),
            event_batches: c.event_batches.load(Ordering::Relaxed),
            progress_notifications: c.progress_notifications.load(Ordering::Relaxed),
            retries: self.members.counters.retries.load(Ordering::Relaxed),
            failovers: self.members.counters.failovers.load(Ordering::Relaxed),
            exhausted: self.members.counters.exhausted.load(Ordering::Relaxed),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.shared.prefix)
    }

    /// The deadline of an operation starting now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.request_timeout
    }

    /// Runs `txn` on a member (failing over, see [`Members::call`]); the answer, its header
    /// revision, and whether an earlier attempt might have applied it too.
    async fn txn(
        &self,
        what: &str,
        txn: Txn,
        deadline: Instant,
    ) -> Result<(TxnResponse, u64, bool), StoreError> {
        let answer = self
            .members
            .call(what, Retry::Safe, deadline, |client| {
                let txn = txn.clone();
                async move { client.kv_client().txn(txn).await }
            })
            .await?;
        let revision = header_revision(answer.value.header())?;
        Ok((answer.value, revision, answer.uncertain))
    }

    /// The revision this replica's view holds for `name`, if it holds the policy.
    fn viewed_revision(&self, name: &str) -> Option<u64> {
        let view = self.shared.view.borrow();
        view.policies
            .get(name)
            .and_then(|p| p.status.as_ref())
            .map(|s| s.revision)
    }

    /// The policy `key` held at `revision` (a delete applied by an earlier attempt took it).
    async fn policy_at(
        &self,
        key: &str,
        revision: u64,
        deadline: Instant,
    ) -> Result<PolicyDocument, StoreError> {
        let at = i64::try_from(revision).unwrap_or(i64::MAX);
        let answer = self
            .members
            .call(
                &format!("get `{key}`@{revision}"),
                Retry::Safe,
                deadline,
                |client| {
                    let key = key.to_owned();
                    async move {
                        client
                            .kv_client()
                            .get(key, Some(GetOptions::new().with_revision(at)))
                            .await
                    }
                },
            )
            .await?;
        let kv = answer.value.kvs().first().cloned().ok_or_else(|| {
            StoreError::Unavailable(format!(
                "etcd delete `{key}`: the outcome is unknown (revision {revision} is no longer readable); read the policy again"
            ))
        })?;
        decode_or_backend(&self.shared.prefix, &kv)
    }

    /// Returns once this replica's view shows `revision` (or after `view_wait`: the write is
    /// committed in etcd either way, only this replica's view lags).
    async fn wait_view(&self, revision: u64) {
        let mut rx = self.shared.view.subscribe();
        let caught_up =
            tokio::time::timeout(self.view_wait, rx.wait_for(|view| view.version >= revision))
                .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            tracing::warn!(
                revision,
                view = self.shared.version(),
                "etcd view did not catch up with this replica's write in time"
            );
        }
    }
}

/// What a write expects the key to be: every write is a transaction conditioned on it, so an
/// attempt applied late (by a hung member that wakes up, by a proposal that outlived its leader)
/// after another attempt or another writer moved the key on fails its condition instead of
/// applying twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The key does not exist.
    Absent,
    /// The key exists at exactly this revision.
    At(u64),
}

impl Expect {
    fn of_revision(revision: Option<u64>) -> Expect {
        revision.map_or(Expect::Absent, Expect::At)
    }

    fn of(kv: Option<&KeyValue>) -> Expect {
        kv.and_then(revision_of).map_or(Expect::Absent, Expect::At)
    }

    fn compares(self, key: &str) -> Vec<Compare> {
        match self {
            Expect::Absent => vec![Compare::create_revision(key, CompareOp::Equal, 0)],
            Expect::At(revision) => at_revision(key, revision),
        }
    }
}

/// Most rounds of a write whose condition another writer keeps invalidating (a create-or-
/// replace or delete racing writes to the same name); the deadline bounds them too.
const MAX_WRITE_ROUNDS: usize = 16;

/// Compares that hold when the key exists at exactly `revision`.
fn at_revision(key: &str, revision: u64) -> Vec<Compare> {
    // A revision etcd cannot hold (above i64::MAX) never matches.
    let revision = i64::try_from(revision).unwrap_or(-1);
    vec![
        Compare::create_revision(key, CompareOp::Greater, 0),
        Compare::mod_revision(key, CompareOp::Equal, revision),
    ]
}

fn write_contention(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "etcd {what}: other writers changed the key {MAX_WRITE_ROUNDS} times in a row; try again"
    ))
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<u64, StoreError> {
    header
        .and_then(|h| u64::try_from(h.revision()).ok())
        .ok_or_else(|| StoreError::Backend("etcd answered without a header revision".to_owned()))
}

fn revision_of(kv: &KeyValue) -> Option<u64> {
    u64::try_from(kv.mod_revision()).ok()
}

/// The keys a failed transaction's `else` branch read.
fn read_back(response: &TxnResponse) -> Vec<KeyValue> {
    response
        .op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(mut get) => Some(get.take_kvs()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The policy a key-value pair holds, its revision filled from `mod_revision`.
fn decode(prefix: &str, kv: &KeyValue) -> Result<(String, PolicyDocument), String> {
    decode_parts(prefix, kv.key(), kv.value(), kv.mod_revision())
}

/// [`decode`] on the parts of a key-value pair. Values this store did not write (another
/// program's key under the prefix, a name that differs from the key, no `status`) are refused.
fn decode_parts(
    prefix: &str,
    key: &[u8],
    value: &[u8],
    mod_revision: i64,
) -> Result<(String, PolicyDocument), String> {
    let key = String::from_utf8_lossy(key);
    let name = key
        .strip_prefix(prefix)
        .ok_or_else(|| format!("key `{key}` is outside `{prefix}`"))?;
    let mut policy: PolicyDocument = serde_json::from_slice(value)
        .map_err(|e| format!("key `{key}` holds no valid policy: {e}"))?;
    if policy.name() != name {
        return Err(format!(
            "key `{key}` holds the policy `{}`",
            policy.metadata.name
        ));
    }
    let revision = u64::try_from(mod_revision)
        .map_err(|_| format!("key `{key}` has the revision `{mod_revision}`"))?;
    let mut status = policy
        .status
        .ok_or_else(|| format!("key `{key}` holds a policy without `status`"))?;
    status.revision = revision;
    policy.status = Some(status);
    Ok((name.to_owned(), policy))
}

fn decode_or_backend(prefix: &str, kv: &KeyValue) -> Result<PolicyDocument, StoreError> {
    decode(prefix, kv)
        .map(|(_, policy)| policy)
        .map_err(|reason| {
            StoreError::Backend(format!(
                "deleted, but the previous value was unreadable: {reason}"
            ))
        })
}

#[async_trait::async_trait]
impl PolicyStore for EtcdStore {
    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        if let Health::Loading(reason) = &*self.shared.health.borrow() {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        Ok(self.shared.view.borrow().clone())
    }

    async fn put(
        &self,
        policy: PolicyDocument,
        condition: WriteCondition,
    ) -> Result<PutOutcome, StoreError> {
        let name = policy.name().to_owned();
        let key = self.key(&name);
        let stored_at_ms = now_ms();
        let value = serde_json::to_vec(&policy.clone().stored(stored_at_ms, 0))
            .map_err(|e| StoreError::Backend(format!("encoding policy `{name}`: {e}")))?;
        let put = TxnOp::put(key.as_str(), value.clone(), None);
        let what = format!("put `{key}`");
        let deadline = self.deadline();
        let mut expect = match condition {
            // Conditioned on what this replica's view holds, so that a retry cannot apply twice;
            // a stale view costs one more round.
            WriteCondition::Any => Expect::of_revision(self.viewed_revision(&name)),
            WriteCondition::MustNotExist => Expect::Absent,
            WriteCondition::Revision(expected) => Expect::At(expected),
        };
        let mut uncertain = false;
        for _ in 0..MAX_WRITE_ROUNDS {
            let txn = Txn::new()
                .when(expect.compares(&key))
                .and_then([put.clone()])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let (response, revision, retried) = self.txn(&what, txn, deadline).await?;
            uncertain |= retried;
            if response.succeeded() {
                self.wait_view(revision).await;
                return Ok(PutOutcome {
                    created: expect == Expect::Absent,
                    policy: policy.stored(stored_at_ms, revision),
                    version: revision,
                });
            }
            let current = read_back(&response).into_iter().next();
            // The key holds exactly what this write wrote (its clock included): an attempt
            // whose answer was lost applied it.
            if let Some(kv) = current
                .as_ref()
                .filter(|kv| uncertain && kv.value() == value)
            {
                let revision = revision_of(kv).unwrap_or(revision);
                self.wait_view(revision).await;
                return Ok(PutOutcome {
                    created: kv.create_revision() == kv.mod_revision(),
                    policy: policy.stored(stored_at_ms, revision),
                    version: revision,
                });
            }
            match condition {
                WriteCondition::MustNotExist => return Err(StoreError::AlreadyExists { name }),
                WriteCondition::Revision(expected) => {
                    return Err(StoreError::RevisionMismatch {
                        name,
                        expected,
                        actual: current.as_ref().and_then(revision_of),
                    })
                }
                WriteCondition::Any => expect = Expect::of(current.as_ref()),
            }
        }
        Err(write_contention(&what))
    }

    async fn delete(
        &self,
        name: &str,
        condition: WriteCondition,
    ) -> Result<DeleteOutcome, StoreError> {
        let key = self.key(name);
        let what = format!("delete `{key}`");
        let deadline = self.deadline();
        let delete = TxnOp::delete(key.as_str(), Some(DeleteOptions::new().with_prev_key()));
        let mut expect = match condition {
            WriteCondition::Revision(expected) => Expect::At(expected),
            WriteCondition::Any | WriteCondition::MustNotExist => {
                Expect::of_revision(self.viewed_revision(name))
            }
        };
        let mut uncertain = false;
        // The last revision a delete was sent for.
        let mut targeted: Option<u64> = None;
        for _ in 0..MAX_WRITE_ROUNDS {
            let then = match expect {
                Expect::At(revision) => {
                    targeted = Some(revision);
                    vec![delete.clone()]
                }
                Expect::Absent => Vec::new(),
            };
            let txn = Txn::new()
                .when(expect.compares(&key))
                .and_then(then)
                .or_else([TxnOp::get(key.as_str(), None)]);
            let (response, revision, retried) = self.txn(&what, txn, deadline).await?;
            uncertain |= retried;
            let current = if response.succeeded() {
                None
            } else {
                read_back(&response).into_iter().next()
            };
            if response.succeeded() && expect != Expect::Absent {
                let previous = response
                    .op_responses()
                    .into_iter()
                    .find_map(|op| match op {
                        TxnOpResponse::Delete(mut deleted) => {
                            deleted.take_prev_kvs().into_iter().next()
                        }
                        _ => None,
                    })
                    .ok_or_else(|| StoreError::NotFound {
                        name: name.to_owned(),
                    })?;
                let policy = decode_or_backend(&self.shared.prefix, &previous)?;
                self.wait_view(revision).await;
                return Ok(DeleteOutcome {
                    policy,
                    version: revision,
                });
            }
            // The revision this write targeted is gone (the key is absent, or was created again
            // after it) while an attempt's answer was lost: that attempt deleted it.
            if let Some(target) = targeted.filter(|_| uncertain) {
                let recreated = current
                    .as_ref()
                    .is_some_and(|kv| u64::try_from(kv.create_revision()).unwrap_or(0) > target);
                if current.is_none() || recreated {
                    let policy = self.policy_at(&key, target, deadline).await?;
                    self.wait_view(revision).await;
                    return Ok(DeleteOutcome {
                        policy,
                        version: revision,
                    });
                }
            }
            match (condition, current.as_ref()) {
                (WriteCondition::Revision(expected), _) => {
                    return Err(StoreError::RevisionMismatch {
                        name: name.to_owned(),
                        expected,
                        actual: current.as_ref().and_then(revision_of),
                    })
                }
                (_, None) => {
                    return Err(StoreError::NotFound {
                        name: name.to_owned(),
                    })
                }
                (_, Some(kv)) => expect = Expect::of(Some(kv)),
            }
        }
        Err(write_contention(&what))
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let prefix = self.shared.prefix.clone();
        // Unconditioned: an attempt applied late would delete what was written since, so it is
        // sent again only when it certainly did not leave this replica.
        let response = self
            .members
            .call(
                &format!("delete `{prefix}*`"),
                Retry::IfNotSent,
                self.deadline(),
                |client| {
                    let prefix = prefix.clone();
                    async move {
                        client
                            .kv_client()
                            .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                            .await
                    }
                },
            )
            .await?
            .value;
        let deleted = u64::try_from(response.deleted()).unwrap_or(0);
        if deleted > 0 {
            self.wait_view(header_revision(response.header())?).await;
        }
        Ok(deleted)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.view.subscribe()
    }

    /// Ready once the view is loaded, also while etcd is lost: the replica keeps serving its
    /// last view to sidecars, which is better than no configuration at all (a readiness probe
    /// that failed would take every replica out of the Service at once when etcd loses its
    /// quorum). [`PolicyStore::backend_health`] tells that writes are refused.
    async fn ready(&self) -> Result<(), StoreError> {
        match &*self.shared.health.borrow() {
            Health::Ready | Health::Lost(_) => Ok(()),
            Health::Loading(reason) => Err(StoreError::Unavailable(reason.clone())),
        }
    }

    fn guard_election(&self, replica: &str) -> Option<watch::Receiver<bool>> {
        let (leading, _) = self.elected.get_or_init(|| {
            let (sender, receiver) = watch::channel(false);
            let election = election::Election {
                replica: replica.to_owned(),
                ..self.election.clone()
            };
            let task = tokio::spawn(election::run_election(
                Arc::clone(&self.members),
                election,
                sender,
            ));
            (receiver, task)
        });
        Some(leading.clone())
    }

    async fn guard_leader(&self) -> Result<Option<String>, StoreError> {
        let key = election::leader_key(&self.members, &self.election.name, self.deadline()).await?;
        Ok(key.map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    fn backend_health(&self) -> BackendHealth {
        let stats = self.stats();
        let degraded = match &*self.shared.health.borrow() {
            Health::Lost(reason) | Health::Loading(reason) => Some(reason.clone()),
            Health::Ready => self.members.failure(),
        };
        BackendHealth {
            degraded,
            retries: stats.retries,
            failovers: stats.failovers,
        }
    }
    async fn share_sidecars(
        &self,
        replica: &str,
        changes: &SidecarChanges,
    ) -> Result<ShareOutcome, StoreError> {
        self.sidecars.share(replica, changes).await
    }

    async fn shared_sidecars(&self) -> Result<Vec<SharedSidecar>, StoreError> {
        self.sidecars.list().await
    }

    fn sidecar_writes(&self) -> u64 {
        self.sidecars.writes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/boifi/policies/";

    fn stored(name: &str) -> Vec<u8> {
        let policy = boifi_core::policy::parse_policy_json(&format!(
            r#"{{"metadata": {{"name": "{name}"}},
                "spec": {{"rules": [{{"match": {{"path": {{"prefix": "/"}}}},
                                   "fault": {{"percentage": 5, "duration_seconds": 60,
                                                 "abort": {{"httpStatus": 503}}}}}}]}}}}"#
        ))
        .unwrap();
        serde_json::to_vec(&policy.stored(1_000, 0)).unwrap()
    }

    #[test]
    fn decode_fills_the_revision_from_the_key_and_keeps_the_writers_clock() {
        let (name, policy) =
            decode_parts(PREFIX, b"/boifi/policies/alpha", &stored("alpha"), 42).unwrap();
        assert_eq!(name, "alpha");
        let status = policy.status.unwrap();
        assert_eq!(status.revision, 42);
        assert_eq!(status.stored_at_ms, 1_000);
        assert_eq!(status.expires_at_ms, Some(61_000));
    }

    #[test]
    fn decode_refuses_what_this_store_did_not_write() {
        let cases: [(&[u8], Vec<u8>, &str); 5] = [
            (b"/other/alpha", stored("alpha"), "is outside"),
            (b"/boifi/policies/beta", stored("alpha"), "holds the policy `alpha`"),
            (b"/boifi/policies/alpha", b"{not json".to_vec(), "no valid policy"),
            (
                b"/boifi/policies/alpha",
                br#"{"metadata": {"name": "alpha"}, "spec": {"rules": []}}"#.to_vec(),
                "no valid policy",
            ),
            (
                b"/boifi/policies/alpha",
                br#"{"metadata": {"name": "alpha"}, "spec": {"rules": [{"match": {"method": {"exact": "GET"}}, "fault": {"percentage": 5, "abort": {"httpStatus": 503}}}]}}"#.to_vec(),
                "without `status`",
            ),
        ];
        for (key, value, expected) in cases {
            let err = decode_parts(PREFIX, key, &value, 7).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let err = decode_parts(PREFIX, b"/boifi/policies/alpha", &stored("alpha"), -1).unwrap_err();
        assert!(err.contains("revision"), "{err}");
    }
}

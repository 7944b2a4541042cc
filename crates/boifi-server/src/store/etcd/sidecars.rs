//! Sidecar reports shared through etcd, so `/v1/policies/status` is true from any replica.
//!
//! Each replica writes its sidecars under `<sidecar prefix><replica>/<sidecar key>`, every key
//! attached to one lease of that replica (TTL [`super::EtcdOptions::sidecar_lease_ttl`], kept
//! alive every third of it). When a replica dies, its lease expires and its reports vanish with
//! it; the sidecars it served reconnect to a survivor, which reports them. Writes are batched
//! (at most [`MAX_TXN_OPS`] operations per transaction, etcd's default `--max-txn-ops`), and
//! what to write is decided by [`crate::sidecars::SidecarRegistry`]: changes and bounded-rate
//! refreshes, never once per poll.
//!
//! # Failover
//! Every call goes through [`Members::call`]. A lease grant retried after a lost answer may
//! grant a second lease that nobody keeps alive: it expires after its TTL, holding nothing. A
//! report transaction only puts and deletes this replica's own keys with values that do not
//! depend on what is stored, so applying it twice leaves the same keys; a late application can
//! bring back a report deleted since, for at most the lease's TTL. The keep-alive asks one
//! member at a time and moves to another when that member fails; the lease is taken as lost
//! only when etcd says it expired or no member renewed it for a whole TTL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::members::{Members, Retry};

use crate::sidecars::{SidecarChanges, SidecarRecord};
use crate::store::{ShareOutcome, StoreError};

/// Most operations in one etcd transaction (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

#[derive(Debug)]
struct Lease {
    id: i64,
    keeper: JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// One replica's share of sidecar reports.
pub(super) struct SidecarShare {
    members: Arc<Members>,
    prefix: String,
    ttl: Duration,
    request_timeout: Duration,
    lease: Mutex<Option<Lease>>,
    /// Whether a lease was granted before (a later grant means reports were lost).
    granted: std::sync::atomic::AtomicBool,
    /// Set by the keep-alive task when the lease is gone (expired or revoked).
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writes: AtomicU64,
}

impl std::fmt::Debug for SidecarShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarShare")
            .field("prefix", &self.prefix)
            .field("writes", &self.writes())
            .finish_non_exhaustive()
    }
}

impl SidecarShare {
    pub(super) fn new(
        members: Arc<Members>,
        prefix: String,
        ttl: Duration,
        request_timeout: Duration,
    ) -> SidecarShare {
        SidecarShare {
            members,
            prefix,
            ttl,
            request_timeout,
            lease: Mutex::new(None),
            granted: std::sync::atomic::AtomicBool::new(false),
            lost: std::sync::Arc::default(),
            writes: AtomicU64::new(0),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.request_timeout
    }

    /// The live lease, granting one if there is none; `true` when it replaces a lost one.
    async fn lease(&self) -> Result<(i64, bool), StoreError> {
        let mut lease = self.lease.lock().await;
        if self.lost.swap(false, Ordering::AcqRel) {
            *lease = None;
        }
        if let Some(l) = lease.as_ref() {
            return Ok((l.id, false));
        }
        let ttl = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let granted = self
            .members
            .call(
                "lease grant",
                Retry::Safe,
                self.deadline(),
                |client| async move { client.lease_client().grant(ttl, None).await },
            )
            .await?
            .value;
        let id = granted.id();
        let keeper = tokio::spawn(keep_alive(
            Arc::clone(&self.members),
            id,
            self.ttl,
            std::sync::Arc::clone(&self.lost),
        ));
        *lease = Some(Lease { id, keeper });
        let replaced = self.granted.swap(true, Ordering::AcqRel);
        Ok((id, replaced))
    }

    fn key(&self, replica: &str, key: &str) -> String {
        format!("{}{replica}/{key}", self.prefix)
    }

    pub(super) async fn share(
        &self,
        replica: &str,
        changes: &SidecarChanges,
    ) -> Result<ShareOutcome, StoreError> {
        let (lease, replaced) = self.lease().await?;
        let mut ops = Vec::with_capacity(changes.put.len() + changes.delete.len());
        for (key, record) in &changes.put {
            let value = serde_json::to_vec(record)
                .map_err(|e| StoreError::Backend(format!("encoding a sidecar report: {e}")))?;
            ops.push(TxnOp::put(
                self.key(replica, key),
                value,
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        for key in &changes.delete {
            ops.push(TxnOp::delete(self.key(replica, key), None));
        }
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let txn = Txn::new().and_then(chunk.to_vec());
            self.members
                .call(
                    "sidecar report txn",
                    Retry::Safe,
                    self.deadline(),
                    |client| {
                        let txn = txn.clone();
                        async move { client.kv_client().txn(txn).await }
                    },
                )
                .await?;
            self.writes.fetch_add(
                u64::try_from(chunk.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        // A new lease means the old one's keys are gone: the registry shares everything again.
        Ok(ShareOutcome { resync: replaced })
    }

    pub(super) async fn list(&self) -> Result<Vec<(String, String, SidecarRecord)>, StoreError> {
        let prefix = self.prefix.as_str();
        let answer = self
            .members
            .call(
                "sidecar report list",
                Retry::Safe,
                self.deadline(),
                |client| async move {
                    client
                        .kv_client()
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                },
            )
            .await?
            .value;
        let mut out = Vec::with_capacity(answer.kvs().len());
        for kv in answer.kvs() {
            let Some(rest) = kv
                .key_str()
                .ok()
                .and_then(|k| k.strip_prefix(self.prefix.as_str()))
            else {
                continue;
            };
            let Some((replica, key)) = rest.split_once('/') else {
                continue;
            };
            match serde_json::from_slice::<SidecarRecord>(kv.value()) {
                Ok(record) => out.push((replica.to_owned(), key.to_owned(), record)),
                // Someone else's key under our prefix: not a report, not fatal.
                Err(e) => tracing::debug!(key = rest, error = %e, "skipping a sidecar report"),
            }
        }
        Ok(out)
    }

    pub(super) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

/// Keeps lease `id` alive every third of its TTL, each renewal on whichever member answers
/// ([`Members::call`]); flags the lease lost when etcd says it expired or no renewal got through
/// for a whole TTL, so the next share grants a new one.
async fn keep_alive(
    members: Arc<Members>,
    id: i64,
    ttl: Duration,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let every = (ttl / 3).max(Duration::from_millis(500));
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        // One renewal: a short stream, so a failed member costs this attempt only.
        let answer = members
            .call(
                "lease keep-alive",
                Retry::Safe,
                Instant::now() + every,
                |client| async move {
                    let (mut keeper, mut answers) = client.lease_client().keep_alive(id).await?;
                    keeper.keep_alive().await?;
                    answers.message().await
                },
            )
            .await;
        let expired = match answer {
            Ok(answer) => match answer.value {
                Some(renewal) if renewal.ttl() > 0 => {
                    renewed = Instant::now();
                    false
                }
                // etcd answered that the lease is gone.
                _ => true,
            },
            Err(e) => {
                tracing::debug!(lease = id, error = %e, "the sidecar report lease was not renewed");
                renewed.elapsed() >= ttl
            }
        };
        if expired {
            tracing::warn!(
                lease = id,
                "the sidecar report lease is gone; a new one will be granted"
            );
            lost.store(true, Ordering::Release);
            return;
        }
    }
}

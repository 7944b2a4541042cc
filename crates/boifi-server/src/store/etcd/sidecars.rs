//! Sidecar reports shared through etcd, so `/v1/policies/status` is true from any replica.
//!
//! Each replica writes its sidecars under `<sidecar prefix><replica>/<sidecar key>`, every key
//! attached to one lease of that replica (TTL [`super::EtcdOptions::sidecar_lease_ttl`], kept
//! alive every third of it). When a replica dies, its lease expires and its reports vanish with
//! it; the sidecars it served reconnect to a survivor, which reports them. Writes are batched
//! (at most [`MAX_TXN_OPS`] operations per transaction, etcd's default `--max-txn-ops`), and
//! what to write is decided by [`crate::sidecars::SidecarRegistry`]: changes and bounded-rate
//! refreshes, never once per poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

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
    client: Client,
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

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("etcd {what}: {e}"))
}

impl SidecarShare {
    pub(super) fn new(
        client: Client,
        prefix: String,
        ttl: Duration,
        request_timeout: Duration,
    ) -> SidecarShare {
        SidecarShare {
            client,
            prefix,
            ttl,
            request_timeout,
            lease: Mutex::new(None),
            granted: std::sync::atomic::AtomicBool::new(false),
            lost: std::sync::Arc::default(),
            writes: AtomicU64::new(0),
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.request_timeout, f).await {
            Ok(r) => r.map_err(|e| unavailable(what, e)),
            Err(_) => Err(unavailable(what, "no answer in time")),
        }
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
        let mut leases = self.client.lease_client();
        let granted = self.timed("lease grant", leases.grant(ttl, None)).await?;
        let id = granted.id();
        let keeper = tokio::spawn(keep_alive(
            self.client.clone(),
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
        let mut kv = self.client.kv_client();
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let txn = Txn::new().and_then(chunk.to_vec());
            self.timed("sidecar report txn", kv.txn(txn)).await?;
            self.writes.fetch_add(
                u64::try_from(chunk.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        // A new lease means the old one's keys are gone: the registry shares everything again.
        Ok(ShareOutcome { resync: replaced })
    }

    pub(super) async fn list(&self) -> Result<Vec<(String, String, SidecarRecord)>, StoreError> {
        let mut kv = self.client.kv_client();
        let answer = self
            .timed(
                "sidecar report list",
                kv.get(self.prefix.as_str(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
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

/// Keeps lease `id` alive every third of its TTL; flags it lost when etcd says it expired or the
/// stream cannot be kept, so the next share grants a new one.
async fn keep_alive(
    client: Client,
    id: i64,
    ttl: Duration,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let every = (ttl / 3).max(Duration::from_millis(500));
    let mut leases = client.lease_client();
    let Ok((mut keeper, mut answers)) = leases.keep_alive(id).await else {
        lost.store(true, Ordering::Release);
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let alive = match keeper.keep_alive().await {
            Ok(()) => matches!(answers.message().await, Ok(Some(a)) if a.ttl() > 0),
            Err(_) => false,
        };
        if !alive {
            tracing::warn!(
                lease = id,
                "the sidecar report lease is gone; a new one will be granted"
            );
            lost.store(true, Ordering::Release);
            return;
        }
    }
}

//! The store whose view lives in this process: [`LocalStore::in_memory`] (`--storage memory`,
//! nothing kept) or [`LocalStore::open`] (`--storage embedded`, mirrored in a redb file, see
//! [`super::redb_file`]). The two differ only in that file, so one type serves both: a writer
//! plans against the current view, persists the change when there is a file, then publishes the
//! next view.

use std::sync::Arc;

use boifi_core::policy::PolicyDocument;
use tokio::sync::{watch, Mutex};

use crate::sidecars::SidecarChanges;

use super::redb_file::{Change, Disk};
use super::{
    now_ms, plan_delete, plan_delete_all, plan_put, DeleteOutcome, LocalShare, PolicyStore,
    PutOutcome, ShareOutcome, SharedSidecar, Snapshot, StoreError, WriteCondition,
};

/// Policies in this process, optionally mirrored in a redb file.
#[derive(Debug)]
pub struct LocalStore {
    /// The file (`--storage embedded`); `None` keeps everything in memory.
    pub(super) disk: Option<Disk>,
    /// Serializes writers so a plan is made against the view it replaces.
    write: Mutex<()>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// Sidecar reports: kept in memory, as one replica needs nothing more.
    sidecars: LocalShare,
}

impl LocalStore {
    /// An empty store at version 0 that keeps nothing: everything is lost on exit.
    pub fn in_memory() -> LocalStore {
        LocalStore::with(None, Snapshot::default())
    }

    /// A store serving `snapshot`, persisting to `disk` if any.
    pub(super) fn with(disk: Option<Disk>, snapshot: Snapshot) -> LocalStore {
        LocalStore {
            disk,
            write: Mutex::new(()),
            tx: watch::Sender::new(Arc::new(snapshot)),
            sidecars: LocalShare::default(),
        }
    }

    /// Writes `change` (made only when there is a file) at `version` to the file, if any.
    async fn persist(
        &self,
        version: u64,
        change: impl FnOnce() -> Result<Change, StoreError>,
    ) -> Result<(), StoreError> {
        match &self.disk {
            Some(disk) => disk.commit(version, change()?).await,
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl PolicyStore for LocalStore {
    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        Ok(self.tx.borrow().clone())
    }

    async fn put(
        &self,
        policy: PolicyDocument,
        condition: WriteCondition,
    ) -> Result<PutOutcome, StoreError> {
        let _guard = self.write.lock().await;
        let current = self.tx.borrow().clone();
        let plan = plan_put(&current, policy, condition, now_ms())?;
        self.persist(plan.next.version, || {
            let json = serde_json::to_vec(&plan.outcome.policy)
                .map_err(|e| StoreError::Backend(format!("encoding the policy: {e}")))?;
            Ok(Change::Put(plan.outcome.policy.name().to_owned(), json))
        })
        .await?;
        self.tx.send_replace(Arc::new(plan.next));
        Ok(plan.outcome)
    }

    async fn delete(
        &self,
        name: &str,
        condition: WriteCondition,
    ) -> Result<DeleteOutcome, StoreError> {
        let _guard = self.write.lock().await;
        let current = self.tx.borrow().clone();
        let plan = plan_delete(&current, name, condition)?;
        self.persist(plan.next.version, || Ok(Change::Delete(name.to_owned())))
            .await?;
        self.tx.send_replace(Arc::new(plan.next));
        Ok(plan.outcome)
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let _guard = self.write.lock().await;
        let current = self.tx.borrow().clone();
        let Some(plan) = plan_delete_all(&current)? else {
            return Ok(0);
        };
        self.persist(plan.next.version, || Ok(Change::DeleteAll))
            .await?;
        self.tx.send_replace(Arc::new(plan.next));
        Ok(plan.outcome)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        match &self.disk {
            Some(disk) => disk.ready().await,
            None => Ok(()),
        }
    }

    async fn share_sidecars(
        &self,
        replica: &str,
        changes: &SidecarChanges,
    ) -> Result<ShareOutcome, StoreError> {
        Ok(self.sidecars.share(replica, changes))
    }

    async fn shared_sidecars(&self) -> Result<Vec<SharedSidecar>, StoreError> {
        Ok(self.sidecars.list())
    }
}
